"""Migration from ejabberd (Debian's package) through XEP-0227.

A real ejabberd runs as a local Erlang node of its own name, with its own
configuration, Mnesia spool and logs in a folder owned by the ejabberd user
(ejabberdctl, started as root, runs everything as that user) on a free
loopback port. Accounts keep SCRAM-SHA-256 keys (auth_password_format:
scram), as a careful ejabberd operator has them. Two accounts are
registered with ejabberdctl; their clients make a mutual subscription with
names and groups, store a vCard and private XML, and one leaves the other
an offline message. `ejabberdctl export_piefxis` writes XEP-0227 files (a
main file that XIncludes the host's); `xmppctl import` reads them, and the
users log in to xmppd with their original passwords and find their data."""

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import pie_util
import xmpptest
from conftest import STORAGE
from pie_util import full_server_overrides, summary
from xmpptest import Client, RawClient, free_port, run, scaled

EJABBERDCTL = shutil.which("ejabberdctl") or ("/usr/sbin/ejabberdctl"
                                              if os.path.exists("/usr/sbin/ejabberdctl") else None)

pytestmark = [
    pytest.mark.skipif(not EJABBERDCTL, reason="Debian's ejabberd package is not installed "
                                               "(contrib/run-tests.sh installs it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="ejabberdctl runs ejabberd as its user: needs root"),
    pytest.mark.skipif(bool(os.environ.get("ASAN_OPTIONS")) and STORAGE != "sqlite",
                       reason="once per storage driver is enough"),
]

DOMAIN = "localhost"
PW = {"juliet": "Wherefore art thou", "romeo": "rose-by-any-other-name"}


class EjabberdSource:
    def __init__(self, folder, cert_dir):
        self.dir = Path(folder)
        for d in ("spool", "logs", "export"):
            (self.dir / d).mkdir()
        self.port = free_port()
        pem = self.dir / "localhost.pem"
        pem.write_bytes((Path(cert_dir) / "localhost.crt").read_bytes() +
                        (Path(cert_dir) / "localhost.key").read_bytes())
        (self.dir / "inetrc").write_text("")
        (self.dir / "ejabberd.yml").write_text("""hosts:
  - %(domain)s
loglevel: info
certfiles:
  - %(pem)s
listen:
  -
    port: %(port)d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
modules:
  mod_roster: {}
  mod_vcard: {}
  mod_private: {}
  mod_offline: {}
  mod_disco: {}
  mod_caps: {}
""" % {"domain": DOMAIN, "pem": pem, "port": self.port})
        # A node name of its own: nothing else's ejabberd is touched.
        (self.dir / "ejabberdctl.cfg").write_text(
            "ERLANG_NODE=xmppdtest%s@localhost\n" % secrets.token_hex(4))
        subprocess.run(["chown", "-R", "ejabberd:ejabberd", str(self.dir)], check=True)
        self.proc = None

    def ctl_args(self):
        return [EJABBERDCTL, "--config-dir", str(self.dir), "--config",
                str(self.dir / "ejabberd.yml"), "--ctl-config", str(self.dir / "ejabberdctl.cfg"),
                "--spool", str(self.dir / "spool"), "--logs", str(self.dir / "logs")]

    def ctl(self, *args, check=True):
        r = subprocess.run(self.ctl_args() + list(args), capture_output=True, text=True,
                           timeout=scaled(120), cwd=str(self.dir))
        if check:
            assert r.returncode == 0, "ejabberdctl %s: %s%s\n%s" % (args, r.stdout, r.stderr,
                                                                     self.tail())
        return r

    def start(self):
        self.out = open(self.dir / "foreground.log", "ab")
        self.proc = subprocess.Popen(self.ctl_args() + ["foreground"], stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.out, cwd=str(self.dir),
                                     start_new_session=True)
        pie_util.wait_listening(self.proc, self.port, scaled(90), "ejabberd", self.tail)
        # listening comes before every module is up
        deadline = time.monotonic() + scaled(60)
        while self.ctl("status", check=False).returncode != 0:
            assert time.monotonic() < deadline, "ejabberd not started: %s" % self.tail()
            time.sleep(1)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.ctl("stop", check=False)
            try:
                self.proc.wait(scaled(60))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        if self.proc:
            self.out.close()
            self.proc = None

    def tail(self):
        out = ""
        for p in (self.dir / "foreground.log", self.dir / "logs" / "ejabberd.log"):
            if p.exists():
                out += "--- %s ---\n%s\n" % (p.name, p.read_text(errors="replace")[-4000:])
        return out


@pytest.fixture(scope="module")
def ejabberd_export(cert_dir):
    # Outside pytest's private tmp: ejabberd runs as its own user.
    folder = Path(tempfile.mkdtemp(prefix="xmppd-ejabberd-"))
    os.chmod(folder, 0o755)
    src = EjabberdSource(folder, cert_dir)
    try:
        src.start()
        for user, pw in PW.items():
            src.ctl("register", user, DOMAIN, pw)

        async def populate():
            j = Client("juliet@%s/balcony" % DOMAIN, PW["juliet"], src.port, mech="PLAIN")
            r = Client("romeo@%s/orchard" % DOMAIN, PW["romeo"], src.port, mech="PLAIN")
            for c in (j, r):
                xmpptest._live.append(c)
                await c.start(timeout=scaled(15))
                c.send_presence()
            await pie_util.befriend(j, r, DOMAIN, timeout=scaled(15))
            await pie_util.set_vcard(j, "Juliet Capulet")
            await pie_util.set_private(j, "urn:example:prefs", "prefs", "balcony")
            await j.stop()
            # juliet is offline now: ejabberd keeps the message for her
            await asyncio.sleep(0.5)
            r.send_message(mto="juliet@%s" % DOMAIN, mbody="Parting is such sweet sorrow",
                           mtype="chat")
            await asyncio.sleep(1.0)
        run(populate(), timeout=scaled(90))
        src.ctl("export_piefxis", str(src.dir / "export"))
        files = sorted((src.dir / "export").glob("*.xml"))
        main = [f for f in files if "_" not in f.name]
        assert len(main) == 1, files
        copy = Path(tempfile.mkdtemp(prefix="xmppd-ejabberd-export-"))
        for f in files:
            shutil.copy(f, copy / f.name)
        yield copy / main[0].name
        shutil.rmtree(copy, ignore_errors=True)
    except BaseException:
        print(src.tail())
        raise
    finally:
        src.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def target(server_factory):
    return server_factory(full_server_overrides())


def test_import_from_ejabberd_and_log_in_with_old_passwords(ejabberd_export, target):
    """XEP-0227 import of ejabberd's export_piefxis output (a main file
    XIncluding the host's, XEP-0227 §5): accounts with their SCRAM-SHA-256
    keys, roster (names, groups, mutual subscription), vCard, private XML
    and the offline message, delivered at login (XEP-0160) with its
    XEP-0203 delay."""
    r = target.ctl("import", str(ejabberd_export), timeout=scaled(120))
    assert r.returncode == 0, r.stdout + r.stderr
    assert summary(r.stdout) == (2, 0, 0), r.stdout

    with RawClient(target.port) as c:
        c.open_stream()
        c.starttls()
        mechs = set(c.open_stream().get("mechanisms", []))
    # ejabberd kept SHA-256 keys only: SCRAM-SHA-1 would fail, so it is not offered
    assert "SCRAM-SHA-256" in mechs and "SCRAM-SHA-1" not in mechs, mechs

    async def check():
        j = Client("juliet@%s/new" % DOMAIN, PW["juliet"], target.port, mech="SCRAM-SHA-256")
        xmpptest._live.append(j)
        await j.start()
        items = await pie_util.roster_items(j)
        assert items.get("romeo@%s" % DOMAIN) == ("both", "Romeo", ["Montague"]), items
        assert await pie_util.get_vcard_fn(j) == "Juliet Capulet"
        assert await pie_util.get_private(j, "urn:example:prefs", "prefs") == "balcony"
        j.send_presence()
        msg = await j.next_message(pred=lambda m: m["body"] == "Parting is such sweet sorrow")
        assert msg["from"].bare == "romeo@%s" % DOMAIN
        assert msg.xml.find("{urn:xmpp:delay}delay") is not None
        r_ = Client("romeo@%s/new" % DOMAIN, PW["romeo"], target.port, mech="SCRAM-SHA-256")
        xmpptest._live.append(r_)
        await r_.start()
    run(check(), timeout=scaled(60))


def test_import_from_ejabberd_twice_changes_nothing(ejabberd_export, target):
    """An import run again skips every account that exists, and says so."""
    first = target.ctl("import", str(ejabberd_export), timeout=scaled(120))
    assert summary(first.stdout) == (2, 0, 0), first.stdout
    again = target.ctl("import", str(ejabberd_export), timeout=scaled(120))
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary(again.stdout) == (0, 2, 0), again.stdout
    assert again.stdout.count("the account exists already") == 2
