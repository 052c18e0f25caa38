"""The control socket and the xmppctl commands that use it.

The socket (docs/configuration.md "control_socket", default
DATA_DIR/xmppd.sock) is a Unix stream socket of mode 0600 speaking one JSON
object per line each way. xmppctl's status, sessions, module list, reload,
kick, hooks and features go through it; without a running server they fail
with one line. Module load/unload/reload have their own file (test_sdk.py).
Kicking ends a stream with <policy-violation/> (RFC 6120 §4.9.3.14: local
service policy; there is no "kicked" condition).
"""

import json
import os
import socket
import stat
import time

import pytest

from xmpptest import (NS_STREAM_ERR, RawClient, XMPPTestError, connect, local, run,
                      scaled)


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "disco": True, "ping": True}}


def sock_path(server):
    return str(server.data_dir / "xmppd.sock")


def request(server, obj_or_bytes, timeout=None):
    """Sends one raw request line; returns the decoded answer line."""
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else \
        (json.dumps(obj_or_bytes) + "\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout or scaled(10))
        s.connect(sock_path(server))
        s.sendall(data)
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def one_line(r):
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# ---- the socket ----------------------------------------------------------------

def test_socket_is_private(server):
    """The control socket exists while the server runs, is a socket, and is
    readable and writable by the server's user only (mode 0600)."""
    st = os.stat(sock_path(server))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()


def test_protocol_errors(server):
    """Bad requests get {"ok": false, "error": ...} and the server lives on:
    not JSON, no command, an unknown command (the answer lists the valid
    ones), and a line over the 32 MiB limit (xmppctl import sends batches
    of up to 8 MiB)."""
    r = request(server, b"this is not json\n")
    assert r["ok"] is False and "not JSON" in r["error"]
    r = request(server, {"cmd": "status"})
    assert r["ok"] is False and "command" in r["error"]
    r = request(server, {"command": "explode"})
    assert r["ok"] is False and "unknown command" in r["error"] and "status" in r["error"]
    r = request(server, b"{" + b" " * ((32 << 20) - 1))  # no newline: the limit reached
    assert r["ok"] is False and "longer than" in r["error"]
    assert request(server, {"command": "status"})["ok"] is True


def test_several_requests_on_one_connection(server):
    """A connection may carry several requests, answered in order."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(scaled(10))
        s.connect(sock_path(server))
        s.sendall(b'{"command":"status"}\n{"command":"module-list"}\n')
        buf = b""
        while buf.count(b"\n") < 2:
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
    a, b = [json.loads(x) for x in buf.split(b"\n")[:2]]
    assert "uptime" in a and "modules" in b


def test_not_running(server, tmp_path):
    """Against no server, a server command fails with one line naming the
    socket (exit 1)."""
    r = server.ctl("-s", str(tmp_path / "nothing.sock"), "status")
    assert r.returncode == 1
    line = one_line(r)
    assert "cannot reach xmppd" in line and "nothing.sock" in line


# ---- status, sessions, module list ------------------------------------------------

def test_status_and_sessions(server, accounts):
    """status counts hosts, sessions and modules; sessions lists each bound
    session with its address, TLS and presence (RFC 6121 §4.7.2.3 priority)."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, resource="desk", presence=5)
        cb = await connect(server, b, resource="phone")
        await ca.next_presence(pred=lambda p: p["from"] == ca.boundjid)
        r = server.ctl("status")
        assert r.returncode == 0, r.stderr
        assert "xmppd " in r.stdout and "host localhost:" in r.stdout
        j = json.loads(server.ctl("-j", "status").stdout)
        assert j["ok"] is True and j["sessions"] >= 2 and j["uptime"] >= 0
        assert j["hosts"][0]["host"] == "localhost"
        r = server.ctl("sessions")
        assert r.returncode == 0, r.stderr
        lines = {ln.split("\t")[0]: ln.split("\t") for ln in r.stdout.splitlines()}
        ja, jb = a.jid + "/desk", b.jid + "/phone"
        assert lines[ja][1:5] == ["127.0.0.1", "tls", "available", "priority 5"]
        assert lines[jb][1:4] == ["127.0.0.1", "tls", "unavailable"]
        await ca.stop()
        await cb.stop()
    run(scenario())


def test_module_list(server):
    """module list shows the global storage driver and the per-host modules
    with their version and file."""
    r = server.ctl("module", "list")
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines()]
    names = {(row[0], row[1]) for row in rows}
    driver = next(n for n in server.config["modules"] if n.startswith("storage_"))
    assert (driver, "(global)") in names
    assert ("roster", "localhost") in names and ("presence", "localhost") in names
    assert all(row[3].endswith(".so") for row in rows)


# ---- kick ------------------------------------------------------------------------

def test_kick_full_jid(server, accounts):
    """kick user@host/resource ends that stream with <policy-violation/>
    and the administrator's text; the account's other session stays."""
    (a,) = accounts(1)
    with RawClient(server.port) as one, RawClient(server.port) as two:
        one.login(a.user, a.password, resource="one")
        two.login(a.user, a.password, resource="two")
        r = server.ctl("kick", a.jid + "/one", "maintenance <now>")
        assert r.returncode == 0, r.stderr
        assert "1 session closed" in r.stdout
        err = one.expect_stream_error("policy-violation")
        assert err is not None
        # still served: a ping to the server is answered
        res = two.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost")
        assert res.get("type") == "result"


def test_kick_bare_jid_and_unknown(server, accounts):
    """kick user@host ends every resource; kicking a JID with no session,
    or of another domain, fails with one line (exit 1)."""
    (a,) = accounts(1)
    with RawClient(server.port) as one, RawClient(server.port) as two:
        one.login(a.user, a.password, resource="x")
        two.login(a.user, a.password, resource="y")
        r = server.ctl("kick", a.jid)
        assert r.returncode == 0 and "2 sessions closed" in r.stdout, r.stdout + r.stderr
        one.expect_stream_error("policy-violation")
        two.expect_stream_error("policy-violation")
    r = server.ctl("kick", a.jid + "/gone")
    assert r.returncode == 1 and "no such session" in one_line(r)
    r = server.ctl("kick", "someone@elsewhere.example")
    assert r.returncode == 1 and "not a host of this server" in one_line(r)
    r = server.ctl("kick", "not a jid@@")
    assert r.returncode == 1 and "not an account address" in one_line(r)


# ---- reload -----------------------------------------------------------------------

def test_reload_applies_and_refuses(server, accounts):
    """xmppctl reload is SIGHUP's reload: a module added to the file is
    loaded (XEP-0092 now answered); a file with an error is refused with its
    FILE:LINE message and the running configuration stays."""
    (a,) = accounts(1)
    server.config["modules"]["version"] = True
    server.write_config()
    r = server.ctl("reload")
    assert r.returncode == 0, r.stderr
    assert "configuration reloaded" in r.stdout
    with RawClient(server.port) as c:
        c.login(a.user, a.password)
        res = c.iq("<query xmlns='jabber:iq:version'/>", to="localhost")
        assert res.get("type") == "result"
    good = server.config_path.read_text()
    server.config_path.write_text(good.replace('"hosts"', '"hostz"', 1))
    try:
        r = server.ctl("reload")
        assert r.returncode == 1
        line = one_line(r)
        assert "reload refused" in line and "xmppd.json:" in line and "hostz" in line
        assert server.running
        with RawClient(server.port) as c:
            c.login(a.user, a.password)
            res = c.iq("<query xmlns='jabber:iq:version'/>", to="localhost")
            assert res.get("type") == "result"
    finally:
        del server.config["modules"]["version"]
        server.write_config()
        assert server.ctl("reload").returncode == 0


def test_sighup_still_reloads(server):
    """SIGHUP takes the same path (the log says so) and keeps the socket."""
    server.reload()
    deadline = time.monotonic() + scaled(5)
    while "configuration reloaded" not in server.read_log()[-4000:]:
        assert time.monotonic() < deadline, "no reload logged"
        time.sleep(0.05)
    assert server.ctl("status").returncode == 0


# ---- catalogue ----------------------------------------------------------------------

def test_hooks_lists_events_and_handlers(server):
    """hooks lists every kernel event with its stop semantics and the live
    handlers with module and priority, plus IQ handlers (module, target)."""
    j = json.loads(server.ctl("-j", "hooks").stdout)
    ev = {e["name"]: e for e in j["events"]}
    for name in ("stream-features", "pre-route", "message/offline", "presence/broadcast",
                 "deliver", "session-closed", "user-deleted", "module-loaded", "disco-info"):
        assert name in ev, name
    assert ev["pre-route"]["stop"] == "first" and ev["session-closed"]["stop"] == "all"
    handlers = {(h["module"], h["priority"]) for h in ev["session-closed"]["handlers"]}
    assert ("presence", 0) in handlers and ("roster", -100) in handlers
    iqs = {(i["type"], i["xmlns"], i["module"]) for i in j["iq_handlers"]}
    assert ("get", "jabber:iq:roster", "roster") in iqs
    assert ("get", "urn:xmpp:ping", "ping") in iqs
    r = server.ctl("hooks")
    assert r.returncode == 0 and "pre-route  (first; kernel)" in r.stdout


def test_features_lists_specs_and_compliance(server):
    """features lists the RFCs/XEPs of the running configuration with who
    implements them, and the XEP-0479 levels with what is missing."""
    j = json.loads(server.ctl("-j", "features").stdout)
    host = j["hosts"][0]
    specs = {s["spec"]: s["by"] for s in host["specs"]}
    assert specs["RFC 6120"] == ["kernel"]
    assert set(specs["RFC 6121"]) == {"roster", "presence"}
    assert specs["XEP-0199"] == ["ping"] and specs["XEP-0030"] == ["disco"]
    assert "XEP-0368" in specs  # the test server has a direct TLS listener
    suites = {(s["category"], s["level"]): s for s in host["suites"]}
    core = suites[("Core", "Server")]
    # no component listener in this configuration: XEP-0114 is what Core lacks
    assert not core["reached"]
    assert [m["providers"] for m in core["missing"]] == [["XEP-0114"]]
    im = suites[("IM", "Server")]
    missing = {p for m in im["missing"] for p in m["providers"]}
    assert "XEP-0280" in missing and "RFC 6121" not in missing
    r = server.ctl("features")
    assert r.returncode == 0 and "XEP-0479" in r.stdout


def test_hooks_markdown_needs_no_server(server, tmp_path):
    """hooks --markdown prints the event reference from the binary's own
    table (docs/modules.md), without a server."""
    r = server.ctl("-s", str(tmp_path / "none.sock"), "hooks", "--markdown")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("| event | stops |")
    assert "| `pre-route` | first | kernel |" in r.stdout


def test_catalogue_matches_the_kernel_source(server, tmp_path):
    """The event catalogue (server/core/catalogue.c, the one source of docs and
    `xmppctl hooks`) lists every event the kernel fires, and nothing it does
    not: the event names are read from the kernel's source."""
    import re
    from conftest import REPO
    src = {}
    for p in (REPO / "server").rglob("*.c"):
        if p.name != "catalogue.c":
            src[p.name] = p.read_text()
    fired = set()
    for text in src.values():
        fired |= set(re.findall(r'xmppd_event \w+ = \{\s*\.name = "([^"]+)"', text))
        fired |= set(re.findall(r'\b\w+(?:->|\.)name = "([^"]+)";', text))
        fired |= set(re.findall(r'xmppd_notify\([^;"]*"([^"]+)"', text))
        for arr in re.findall(r'const ev_\w+\[\] = \{([^}]*)\}', text):
            fired |= set(re.findall(r'"([^"]+)"', arr))
        fired |= set(re.findall(r'case A_\w+: return "([a-z-]+)";', text))
    r = server.ctl("-s", str(tmp_path / "none.sock"), "hooks", "--markdown")
    rows = re.findall(r"^\| `([^`]+)` \| (first|all) \| (\w+) \|", r.stdout, re.M)
    kernel = {name for name, _, source in rows if source == "kernel"}
    assert fired - kernel == set(), "fired by the kernel but missing from server/core/catalogue.c"
    everything = "\n".join(src.values())
    stale = {n for n in kernel if '"%s"' % n not in everything}
    assert stale == set(), "in server/core/catalogue.c but never fired by the kernel"


def test_socket_in_use_or_stale(server, server_factory, tmp_path):
    """A second server configured with the running one's socket refuses to
    start, naming it; a socket file left by a crashed server is replaced;
    a path holding something else than a socket is an error."""
    srv = server_factory({"control_socket": sock_path(server)}, start=False)
    with pytest.raises(RuntimeError) as e:
        srv.start()
    assert "a server is already running on %s" % sock_path(server) in str(e.value)

    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens
    srv2 = server_factory({"control_socket": str(stale)})
    r = srv2.ctl("status")
    assert r.returncode == 0, r.stderr
    srv2.stop()
    assert not stale.exists(), "the socket file is removed at a clean stop"

    plain = tmp_path / "plain-file"
    plain.write_text("not a socket")
    srv3 = server_factory({"control_socket": str(plain)}, start=False)
    with pytest.raises(RuntimeError) as e:
        srv3.start()
    assert "exists and is not a socket" in str(e.value)
    assert plain.read_text() == "not a socket"
