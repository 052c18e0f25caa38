"""Profanity (libstrophe), the terminal client, as a user runs it: it logs
in over STARTTLS, enables Message Carbons (XEP-0280 §4, profanity's
default) and gets the <received/> copy of a message sent to the user's
other resource (XEP-0280 §6). Profanity has no batch mode: it runs in a
pseudo-terminal; its debug log (-l DEBUG) shows the stanzas it sent and
received."""

import os
import pty
import select
import shutil
import signal
import subprocess
import time

import pytest

from xmpptest import raw_login, scaled

PROFANITY = shutil.which("profanity")

pytestmark = pytest.mark.skipif(not PROFANITY, reason="profanity is not installed "
                                "(contrib/run-tests.sh installs it)")


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": {}, "presence": {}, "disco": {}, "carbons": {}}}


def start_profanity(home, server, account):
    cfg = home / ".config" / "profanity"
    data = home / ".local" / "share" / "profanity"
    cfg.mkdir(parents=True)
    data.mkdir(parents=True)
    (cfg / "profrc").write_text("[connection]\naccount=%s\n" % account.jid)
    accounts = ("[%s]\nenabled=true\njid=%s\nserver=127.0.0.1\nport=%d\nresource=profanity\n"
                "password=%s\ntls.policy=trust\n" % (account.jid, account.jid, server.port, account.password))
    (data / "accounts").write_text(accounts)
    (data / "accounts").chmod(0o600)
    pid, fd = pty.fork()
    if pid == 0:
        env = dict(os.environ, HOME=str(home), TERM="xterm", XDG_CONFIG_HOME=str(home / ".config"),
                   XDG_DATA_HOME=str(home / ".local" / "share"))
        os.execve(PROFANITY, [PROFANITY, "-l", "DEBUG"], env)
    return pid, fd, data / "logs" / "profanity.log"


def pump(fd, seconds):
    """Reads the terminal (profanity blocks when nobody does)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                os.read(fd, 65536)
            except OSError:
                return


def wait_log(fd, log, needle, timeout):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        pump(fd, 0.2)
        if log.exists() and needle in log.read_text(errors="replace"):
            return True
    return False


def test_profanity_enables_carbons_and_gets_a_received_copy(server, accounts, tmp_path):
    a, b = accounts(2)
    pid, fd, log = start_profanity(tmp_path, server, a)
    try:
        assert wait_log(fd, log, '<enable xmlns="urn:xmpp:carbons:2"', 30), \
            "profanity never enabled carbons:\n" + (log.read_text(errors="replace")[-3000:] if log.exists() else "no log")
        with raw_login(server, a, resource="other", presence=True) as other, \
                raw_login(server, b, presence=True) as rb:
            rb.send("<message to='%s/other' type='chat' id='c1'><body>carbon check</body></message>" % a.jid)
            other.wait_for(lambda el: el.get("id") == "c1", timeout=scaled(10))
            assert wait_log(fd, log, '<received xmlns="urn:xmpp:carbons:2"', 15), \
                log.read_text(errors="replace")[-3000:]
    finally:
        os.kill(pid, signal.SIGTERM)
        pump(fd, 0.5)
        os.waitpid(pid, 0)
        os.close(fd)
