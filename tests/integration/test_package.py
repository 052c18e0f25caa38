"""The Debian package, built from a fresh clone with `dpkg-buildpackage -b`
and checked with lintian; then, where the test may change the machine (CI,
or XMPPD_TEST_PACKAGE=1, as root), installed with dpkg and run as its
systemd unit runs it: as the xmppd user, with a $NOTIFY_SOCKET the test
listens on (readiness, reload, stop: sd_notify(3)); then upgraded to a newer
version with the account, its data and the operator's configuration kept;
then purged.

The machines here have no systemd as PID 1: `systemd-analyze verify`
checks the unit instead of systemctl starting it."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import xmpptest
from conftest import REPO, STORAGE
from xmpptest import Client, run, scaled

INSTALL = os.environ.get("XMPPD_TEST_PACKAGE") == "1" or (
    os.environ.get("CI") == "true" and os.geteuid() == 0)

pytestmark = [
    pytest.mark.skipif(not shutil.which("dpkg-buildpackage") or not shutil.which("dh"),
                       reason="dpkg-dev and debhelper are not installed (contrib/run-tests.sh "
                              "installs them)"),
    pytest.mark.skipif(bool(os.environ.get("ASAN_OPTIONS")) or STORAGE != "sqlite",
                       reason="the package is built and installed once, in the default pass"),
]


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    work = tmp_path_factory.mktemp("deb")
    src = work / "xmppd"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(src)], check=True)
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2")
    r = subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=str(src), env=env,
                       capture_output=True, text=True, timeout=scaled(1200))
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    found = {p.name.split("_")[0]: p for p in work.glob("*.deb")}
    assert {"xmppd", "xmppd-dev"} <= set(found), found
    found["changes"] = next(work.glob("*.changes"))
    return found


def test_package_contents(debs):
    """What the package holds: programs, modules without .la files, the
    configuration as a conffile, unit, logrotate, man pages, SDK apart."""
    files = subprocess.run(["dpkg-deb", "-c", str(debs["xmppd"])], capture_output=True,
                           text=True, check=True).stdout
    for f in ("./usr/bin/xmppd", "./usr/bin/xmppctl", "./etc/xmppd/xmppd.json",
              "./lib/systemd/system/xmppd.service", "./etc/logrotate.d/xmppd",
              "./usr/share/man/man8/xmppd.8.gz", "./usr/share/man/man8/xmppctl.8.gz",
              "./usr/share/man/man5/xmppd.json.5.gz", "/xmppd/mod_roster.so",
              "/xmppd/mod_xep0227.so", "/xmppd/mod_admin_web.so",
              "./usr/share/xmppd/admin_web/index.html", "./usr/share/xmppd/admin_web/console.js"):
        assert f in files, f
    assert ".la\n" not in files
    info = subprocess.run(["dpkg-deb", "-I", str(debs["xmppd"]), "conffiles"],
                          capture_output=True, text=True, check=True).stdout
    assert "/etc/xmppd/xmppd.json" in info
    dev = subprocess.run(["dpkg-deb", "-c", str(debs["xmppd-dev"])], capture_output=True,
                         text=True, check=True).stdout
    assert "./usr/include/xmppd/module.h" in dev and "xmppd.pc" in dev


@pytest.mark.skipif(not shutil.which("lintian"), reason="lintian is not installed")
def test_lintian_is_clean(debs):
    r = subprocess.run(["lintian", "--fail-on", "error,warning", str(debs["changes"])],
                       capture_output=True, text=True, timeout=scaled(300))
    problems = [l for l in r.stdout.splitlines() if re.match(r"^[EW]: ", l)]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def bump_version(deb, version, out):
    """The same package under a newer version: what an upgrade installs."""
    tree = Path(tempfile.mkdtemp(prefix="xmppd-deb-"))
    try:
        subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
        ctl = tree / "DEBIAN" / "control"
        ctl.write_text(re.sub(r"^Version: .*$", "Version: %s" % version, ctl.read_text(), flags=re.M))
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return out


class Notifications:
    """A $NOTIFY_SOCKET as systemd has one: datagrams of VAR=value lines."""

    def __init__(self, folder):
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(folder, 0o755)
        os.chmod(self.path, 0o777)

    def wait_for(self, var, timeout=None):
        deadline = time.monotonic() + (timeout or scaled(20))
        seen = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            seen.append(msg)
            if var in msg.split("\n"):
                return seen
        raise AssertionError("no %s from xmppd; got %r" % (var, seen))


def dpkg(*args):
    r = subprocess.run(["dpkg", "--force-confold"] + list(args), capture_output=True, text=True,
                       timeout=scaled(300), env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert r.returncode == 0, "dpkg %s: %s%s" % (args, r.stdout, r.stderr)
    return r


def as_xmppd(*cmd, **kw):
    return subprocess.run(["runuser", "-u", "xmppd", "--"] + list(cmd), capture_output=True,
                          text=True, timeout=scaled(60), **kw)


@pytest.mark.skipif(not INSTALL, reason="installs into the system: CI (as root) or "
                                        "XMPPD_TEST_PACKAGE=1 only")
def test_install_run_upgrade_purge(debs, tmp_path):
    """dpkg -i: user, folders, certificate, a configuration that passes
    `xmppctl check`; the server runs as the unit runs it and tells systemd
    READY=1, RELOADING=1/READY=1 on SIGHUP, STOPPING=1; an account made
    with xmppctl logs in; an upgrade keeps the account, its roster and the
    operator's change to the configuration; purge removes the rest."""
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "xmppd"], capture_output=True,
                               text=True).stdout
    if "install ok installed" in installed:
        pytest.skip("an xmppd package is installed on this machine already: not touching it")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 5222)) == 0:
            pytest.skip("port 5222 is in use: the installed configuration could not start")
    proc = notify_dir = None
    try:
        dpkg("-i", str(debs["xmppd"]))
        assert subprocess.run(["getent", "passwd", "xmppd"], capture_output=True).returncode == 0
        for d in ("/var/lib/xmppd", "/var/log/xmppd"):
            st = os.stat(d)
            assert st.st_uid != 0 and oct(st.st_mode & 0o777) == "0o750", d
        assert Path("/etc/xmppd/certs/localhost.crt").exists()
        unit = subprocess.run(["systemd-analyze", "verify", "/lib/systemd/system/xmppd.service"],
                              capture_output=True, text=True)
        assert unit.returncode == 0, unit.stderr
        check = as_xmppd("xmppctl", "check")
        assert check.returncode == 0, check.stdout + check.stderr

        # where the xmppd user reaches it (pytest's folders are root's only)
        notify_dir = Path(tempfile.mkdtemp(prefix="xmppd-notify-"))
        notify = Notifications(notify_dir)
        env = dict(os.environ, NOTIFY_SOCKET=notify.path)
        # as systemd runs it: the unit's user and group, the process itself
        proc = subprocess.Popen(["/usr/bin/xmppd", "-c", "/etc/xmppd/xmppd.json"],
                                user="xmppd", group="xmppd", extra_groups=[],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "xmppd.stderr", "wb"), env=env,
                                cwd="/")
        notify.wait_for("READY=1")
        r = as_xmppd("xmppctl", "adduser", "pkg@localhost", "--password", "package test")
        assert r.returncode == 0, r.stderr
        r = as_xmppd("xmppctl", "roster", "pkg@localhost", "add", "friend@example.org",
                     "--name", "Friend")
        assert r.returncode == 0, r.stderr

        async def login():
            c = Client("pkg@localhost/t", "package test", 5222, mech="SCRAM-SHA-256")
            xmpptest._live.append(c)
            await c.start()
        run(login())

        proc.send_signal(signal.SIGHUP)
        got = notify.wait_for("READY=1")
        assert any("RELOADING=1" in m.split("\n") for m in got), got
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert proc.wait(scaled(30)) == 0
        proc = None

        # the operator's change to the configuration survives an upgrade
        conf = Path("/etc/xmppd/xmppd.json")
        conf.write_text(conf.read_text().replace('"log": { "level": "info"', '"log": { "level": "warn"'))
        newer = bump_version(debs["xmppd"], "0.1.0+upgrade1", tmp_path / "xmppd_upgrade.deb")
        dpkg("-i", str(newer))
        assert '"log": { "level": "warn"' in conf.read_text()
        users = as_xmppd("xmppctl", "users", "localhost")
        assert "pkg@localhost" in users.stdout.split(), users.stdout + users.stderr
        roster = as_xmppd("xmppctl", "roster", "pkg@localhost", "list")
        assert "friend@example.org" in roster.stdout, roster.stdout + roster.stderr
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        if notify_dir:
            shutil.rmtree(notify_dir, ignore_errors=True)
        subprocess.run(["dpkg", "--purge", "xmppd"], capture_output=True, timeout=scaled(300))
    assert not Path("/var/lib/xmppd").exists()
    assert not Path("/etc/xmppd/xmppd.json").exists()
