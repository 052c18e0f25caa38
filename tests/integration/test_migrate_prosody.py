"""Migration from Prosody (Debian's package) through XEP-0227.

A real Prosody runs as a local process with its own configuration and data
folder on a free loopback port (internal_hashed accounts: SCRAM-SHA-1 keys,
no passwords). Two accounts are created with prosodyctl; their clients make
a mutual subscription with names and groups, store a vCard and private XML,
publish a PEP item and exchange a message (Prosody's archive). Prosody's own
migrator (prosody-migrator, internal -> xep0227 storage) writes the
XEP-0227 files; `xmppctl import` reads them into xmppd, and the users log
in with their original passwords and find their data.

prosody-migrator writes XEP-0227 files into its data path, which it takes
from the CFG_DATADIR constant of the script: the test runs a copy of the
script with that constant pointing to a folder of its own."""

import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

import pie_util
import xmpptest
from conftest import STORAGE
from pie_util import full_server_overrides, summary
from xmpptest import Client, RawClient, free_port, run, scaled

PROSODY = shutil.which("prosody")
PROSODYCTL = shutil.which("prosodyctl")
MIGRATOR = shutil.which("prosody-migrator")

pytestmark = [
    pytest.mark.skipif(not (PROSODY and PROSODYCTL and MIGRATOR),
                       reason="Debian's prosody package is not installed (contrib/run-tests.sh "
                              "installs it)"),
    pytest.mark.skipif(bool(os.environ.get("ASAN_OPTIONS")) and STORAGE != "sqlite",
                       reason="once per storage driver is enough"),
]

DOMAIN = "localhost"
PW = {"juliet": "Wherefore-art-thou-1", "romeo": "a rose by any other name"}


def lua(s):
    return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"')


class ProsodySource:
    def __init__(self, folder, cert_dir):
        self.dir = Path(folder)
        self.data = self.dir / "data"
        self.data.mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.config = self.dir / "prosody.cfg.lua"
        self.config.write_text("\n".join([
            "run_as_root = true",
            "daemonize = false",
            "pidfile = %s" % lua(self.dir / "prosody.pid"),
            "data_path = %s" % lua(self.data),
            "log = { debug = %s }" % lua(self.dir / "prosody.log"),
            "interfaces = { \"127.0.0.1\" }",
            "c2s_ports = { %d }" % self.port,
            "c2s_direct_tls_ports = { }",
            "s2s_ports = { }", "s2s_direct_tls_ports = { }",
            "http_ports = { }", "https_ports = { }",
            "c2s_require_encryption = true",
            "authentication = \"internal_hashed\"",
            "storage = \"internal\"",
            "archive_expires_after = \"never\"",
            "default_archive_policy = true",
            "modules_enabled = { \"roster\"; \"saslauth\"; \"tls\"; \"disco\"; \"vcard\"; "
            "\"private\"; \"mam\"; \"pep\"; \"presence\"; \"message\"; \"iq\"; \"ping\" }",
            "ssl = { certificate = %s; key = %s }" % (lua(Path(cert_dir) / "localhost.crt"),
                                                     lua(Path(cert_dir) / "localhost.key")),
            "VirtualHost %s" % lua(DOMAIN),
            "",
        ]))
        self.proc = None

    def prosodyctl(self, *args):
        r = subprocess.run([PROSODYCTL, "--config", str(self.config)] + list(args),
                           capture_output=True, text=True, timeout=scaled(60))
        assert r.returncode == 0, "prosodyctl %s: %s%s" % (args, r.stdout, r.stderr)

    def start(self):
        self.err = open(self.dir / "prosody.stderr", "ab")
        self.proc = subprocess.Popen([PROSODY, "--config", str(self.config)], stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err, cwd=str(self.dir))
        pie_util.wait_listening(self.proc, self.port, scaled(20), "prosody", self.tail)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(15))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.err.close()
            self.proc = None

    def tail(self):
        out = ""
        for f in ("prosody.stderr", "prosody.log"):
            p = self.dir / f
            if p.exists():
                out += "--- %s ---\n%s\n" % (f, p.read_text(errors="replace")[-4000:])
        return out

    def export_xep0227(self):
        """prosody-migrator: internal storage -> XEP-0227 files; returns them."""
        out = self.dir / "xep0227"
        out.mkdir()
        script = self.dir / "prosody-migrator"
        text = Path(MIGRATOR).read_text()
        text, n = re.subn(r"^CFG_DATADIR=.*$", "CFG_DATADIR=%s;" % lua(out), text, count=1,
                          flags=re.M)
        assert n == 1, "prosody-migrator has no CFG_DATADIR line"
        script.write_text(text)
        cfg = self.dir / "migrator.cfg.lua"
        stores = ["accounts", "roster", "vcard", "private", "archive-archive", "pep-pubsub"]
        cfg.write_text("input { type = \"internal\"; path = %s; hosts = { [%s] = { %s } } }\n"
                       "output { type = \"xep0227\"; path = %s; }\n"
                       % (lua(self.data), lua(DOMAIN), "; ".join(lua(s) for s in stores), lua(out)))
        first = Path(MIGRATOR).read_text().splitlines()[0]
        cmd = first[2:].split() + [str(script), "--config", str(cfg), "input", "output"]
        if os.geteuid() == 0:
            # The migrator drops root for the prosody user (it has no
            # run_as_root): it runs as that user on files it owns.
            subprocess.run(["chown", "-R", "prosody:prosody", str(self.dir)], check=True)
            cmd = ["runuser", "-u", "prosody", "--"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(120), cwd=str(self.dir))
        assert r.returncode == 0, "prosody-migrator: %s%s" % (r.stdout, r.stderr)
        files = sorted(out.glob("*@%s.xml" % DOMAIN))
        assert len(files) == 2, (list(out.iterdir()), r.stdout, r.stderr)
        return files


@pytest.fixture(scope="module")
def prosody_export(cert_dir):
    # Outside pytest's private tmp: the migrator runs as the prosody user.
    folder = Path(tempfile.mkdtemp(prefix="xmppd-prosody-"))
    os.chmod(folder, 0o755)
    try:
        yield from _prosody_export(folder, cert_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _prosody_export(folder, cert_dir):
    src = ProsodySource(folder / "src", cert_dir)
    for user, pw in PW.items():
        src.prosodyctl("register", user, DOMAIN, pw)
    src.start()
    try:
        async def populate():
            j = Client("juliet@%s/balcony" % DOMAIN, PW["juliet"], src.port)
            r = Client("romeo@%s/orchard" % DOMAIN, PW["romeo"], src.port)
            for c in (j, r):
                xmpptest._live.append(c)
                await c.start(timeout=scaled(15))
                c.send_presence()
            await pie_util.befriend(j, r, DOMAIN, timeout=scaled(15))
            await pie_util.set_vcard(j, "Juliet Capulet")
            await pie_util.set_private(j, "urn:example:prefs", "prefs", "balcony")
            await pie_util.publish_nick(j, "Jules")
            r.send_message(mto="juliet@%s" % DOMAIN, mbody="But soft, what light", mtype="chat")
            await j.next_message(pred=lambda m: m["body"] == "But soft, what light")
            await asyncio.sleep(0.5)  # the archive write
        run(populate(), timeout=scaled(60))
    except BaseException:
        print(src.tail())
        raise
    finally:
        src.stop()
    files = src.export_xep0227()
    # copies the tests may read after the folder is gone
    yield files


@pytest.fixture
def target(server_factory):
    return server_factory(full_server_overrides())


def test_prosody_files_hold_the_data(prosody_export):
    """The files Prosody wrote are XEP-0227 v1.1 (urn:xmpp:pie:0) with SCRAM
    credentials and no password: what the import must handle."""
    users = {}
    for f in prosody_export:
        users.update(pie_util.users_of(f))
    juliet = users[(DOMAIN, "juliet")]
    assert juliet.find("{urn:xmpp:pie:0#scram}scram-credentials") is not None
    assert juliet.get("password") is None
    assert juliet.find("{jabber:iq:roster}query") is not None


def test_import_from_prosody_and_log_in_with_old_passwords(prosody_export, target):
    """XEP-0227 import of Prosody's export: both accounts, their roster
    (names, groups, mutual subscription), vCard, private XML, PEP item and
    archive; the users log in with their Prosody passwords (SCRAM-SHA-1
    keys, as Prosody keeps them)."""
    r = target.ctl("import", *[str(f) for f in prosody_export], timeout=scaled(120))
    assert r.returncode == 0, r.stdout + r.stderr
    assert summary(r.stdout) == (2, 0, 0), r.stdout

    # Only SCRAM-SHA-1 keys exist: no mechanism a client would fail with is
    # offered (RFC 6120 §6.4.1), SCRAM-SHA-1 and PLAIN are.
    with RawClient(target.port) as c:
        c.open_stream()
        c.starttls()
        feats = c.open_stream()
        mechs = set(feats.get("mechanisms", []))
    assert "SCRAM-SHA-1" in mechs and "PLAIN" in mechs, mechs
    assert "SCRAM-SHA-256" not in mechs and "SCRAM-SHA-512" not in mechs, mechs

    async def check():
        j = Client("juliet@%s/new" % DOMAIN, PW["juliet"], target.port, mech="SCRAM-SHA-1")
        xmpptest._live.append(j)
        await j.start()
        items = await pie_util.roster_items(j)
        assert items.get("romeo@%s" % DOMAIN) == ("both", "Romeo", ["Montague"]), items
        assert await pie_util.get_vcard_fn(j) == "Juliet Capulet"
        assert await pie_util.get_private(j, "urn:example:prefs", "prefs") == "balcony"
        assert await pie_util.get_nick(j, "juliet@%s" % DOMAIN) == "Jules"
        assert "But soft, what light" in await pie_util.mam_bodies(j)
        r_ = Client("romeo@%s/new" % DOMAIN, PW["romeo"], target.port, mech="PLAIN")
        xmpptest._live.append(r_)
        await r_.start()
    run(check(), timeout=scaled(60))


def test_plain_login_completes_keys_then_every_mechanism(prosody_export, target):
    """After each imported account logged in once with its password (PLAIN,
    over TLS), it has keys for every hash, and SCRAM-SHA-256 is offered and
    works (RFC 7677)."""
    r = target.ctl("import", *[str(f) for f in prosody_export], timeout=scaled(120))
    assert summary(r.stdout) == (2, 0, 0), r.stdout

    async def login(user, mech):
        c = Client("%s@%s/x" % (user, DOMAIN), PW[user], target.port, mech=mech)
        xmpptest._live.append(c)
        await c.start()
        await c.stop()

    async def plain_all():
        for u in PW:
            await login(u, "PLAIN")
    run(plain_all())
    with RawClient(target.port) as c:
        c.open_stream()
        c.starttls()
        mechs = set(c.open_stream().get("mechanisms", []))
    assert "SCRAM-SHA-256" in mechs, mechs
    run(login("juliet", "SCRAM-SHA-256"))
