"""auth_external: accounts checked by an external program speaking
ejabberd's extauth protocol (2-byte big-endian length framing; auth,
isuser, setpass, tryregister, removeuser).

The contrib script (contrib/extauth/example.py) logs users in over PLAIN
(RFC 4616, offered only over TLS; no SCRAM: the program only checks
passwords); xmppctl creates, changes and deletes accounts through it. A
program that crashes or hangs costs that login a <temporary-auth-failure/>
(RFC 6120 §6.5.12), never the server, and the next login works.
"""

import os
import sys
import time

import pytest

from conftest import REPO
from xmpptest import RawClient, connect, run, scaled

EXAMPLE = REPO / "contrib" / "extauth" / "example.py"

# A misbehaving program: "crash" kills it, "hang" never answers, "noise"
# answers garbage; "good" with password "pw" is fine.
FLAKY = r'''
import struct, sys, time, os
inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    head = inp.read(2)
    if len(head) < 2:
        sys.exit(0)
    (n,) = struct.unpack(">H", head)
    req = inp.read(n).decode().split(":", 3)
    user = req[1]
    if user == "crash":
        os._exit(3)
    if user == "hang":
        time.sleep(3600)
    if user == "noise":
        out.write(b"\x00\x05hello")
        out.flush()
        continue
    ok = req[0] == "auth" and user == "good" and req[3] == "pw"
    out.write(struct.pack(">HH", 2, 1 if ok else 0))
    out.flush()
'''


def plain(srv, user, password, timeout=None):
    with RawClient(srv.port, timeout=timeout) as c:
        c.open_stream()
        c.starttls()
        f = c.open_stream()
        assert f["mechanisms"] == ["PLAIN"], f["mechanisms"]
        return c.auth_plain(user, password)


@pytest.fixture
def example_server(server_factory, tmp_path):
    users = tmp_path / "users"
    return server_factory({"modules": {"auth_internal": None, "auth_external": {
        "program": sys.executable, "args": [str(EXAMPLE), str(users)], "processes": 2}}}), users


def test_contrib_script_logs_users_in(example_server):
    """xmppctl adduser (tryregister) then slixmpp logs in with PLAIN; a wrong
    password and an unknown user get <not-authorized/>; passwd (setpass) and
    deluser (removeuser) go through the script; the file holds no password."""
    srv, users = example_server
    srv.adduser("alice@localhost", "secret-1")
    assert "secret-1" not in users.read_text()

    class A:
        jid, password = "alice@localhost", "secret-1"

    async def scenario():
        c = await connect(srv, A, mech="PLAIN")
        assert str(c.boundjid.bare) == "alice@localhost"
    run(scenario())
    r = plain(srv, "alice", "wrong")
    assert not r.ok and r.condition == "not-authorized"
    r = plain(srv, "nobody", "secret-1")
    assert not r.ok and r.condition == "not-authorized"
    r = srv.ctl("adduser", "alice@localhost", input="x\n")
    assert r.returncode == 1 and "user exists" in r.stderr
    srv.ctl("passwd", "alice@localhost", input="secret-2\n", check=True)
    assert plain(srv, "alice", "secret-2").ok
    assert not plain(srv, "alice", "secret-1").ok
    srv.ctl("deluser", "alice@localhost", check=True)
    assert not plain(srv, "alice", "secret-2").ok
    r = srv.ctl("users", "localhost")
    assert r.returncode == 1 and "read-only" in r.stderr


def test_read_only_option(server_factory, tmp_path):
    """read_only: xmppctl says in one line that the provider cannot create
    accounts."""
    users = tmp_path / "users"
    subprocess_input = "pw\n"
    import subprocess
    subprocess.run([sys.executable, str(EXAMPLE), str(users), "--set", "ro@localhost"],
                   input=subprocess_input, text=True, check=True)
    srv = server_factory({"modules": {"auth_internal": None, "auth_external": {
        "program": sys.executable, "args": [str(EXAMPLE), str(users)], "read_only": True}}})
    r = srv.ctl("adduser", "x@localhost", input="pw\n")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "read-only" in r.stderr
    assert plain(srv, "ro", "pw").ok


@pytest.fixture
def flaky_server(server_factory, tmp_path):
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY)
    return server_factory({"modules": {"auth_internal": None, "auth_external": {
        "program": sys.executable, "args": [str(script)], "processes": 2,
        "timeout": "1s", "restart_delay": "200ms"}}})


def test_crashing_program_does_not_hang_the_server(flaky_server):
    """A program that dies mid-request: that login gets
    <temporary-auth-failure/> at once, the program is restarted, the next
    login works."""
    srv = flaky_server
    assert plain(srv, "good", "pw").ok
    for _ in range(3):
        t0 = time.monotonic()
        r = plain(srv, "crash", "pw")
        assert not r.ok and r.condition == "temporary-auth-failure", r
        assert time.monotonic() - t0 < scaled(3)
        assert plain(srv, "good", "pw").ok
    r = plain(srv, "noise", "pw")
    assert not r.ok and r.condition == "temporary-auth-failure", r
    assert plain(srv, "good", "pw").ok
    log = srv.read_log()
    assert "exit status 3: restarting it" in log
    assert "answered outside the protocol" in log


def test_hanging_program_times_out(flaky_server):
    """A program that never answers: after `timeout` it is killed and that
    login gets <temporary-auth-failure/>; meanwhile the other process serves
    logins, and afterwards every process does."""
    srv = flaky_server
    hang = RawClient(srv.port)
    try:
        hang.open_stream()
        hang.starttls()
        hang.open_stream()
        t0 = time.monotonic()
        hang.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>"
                  % __import__("base64").b64encode(b"\0hang\0pw").decode())
        # while one program hangs, the other one answers
        assert plain(srv, "good", "pw").ok
        r = hang._sasl_outcome(timeout=scaled(5))
        took = time.monotonic() - t0
        assert not r.ok and r.condition == "temporary-auth-failure", r
        assert 0.8 < took < scaled(4), took
    finally:
        hang.close()
    for _ in range(4):
        assert plain(srv, "good", "pw").ok
    assert "did not answer in time" in srv.read_log()
