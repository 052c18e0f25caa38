"""mod_log: the audit log (JSON lines), and the rule that no log ever
holds a secret.

Every audit line parses as JSON with the documented fields; bodies appear
only when the operator enables them; the file is reopened on SIGHUP (log
rotation). After logins with PLAIN and every SCRAM mechanism (and a failed
one), with the kernel log at debug and the audit log recording bodies, no
password, and no base64 of a PLAIN exchange, is in any log or on stderr.
"""

import base64
import json
import os
import secrets
import time

import pytest

from xmpptest import NS_CLIENT, QUIET_PERIOD, RawClient, connect, q, run, scaled

STANZA_FIELDS = {"ts", "host", "event", "dir", "from", "to", "kind", "type", "id", "size"}


@pytest.fixture(scope="module")
def config_overrides():
    return {"log": {"level": "debug"},
            "modules": {"roster": True, "presence": True, "log": {"file": "audit.log", "bodies": True}}}


def audit_path(server):
    return server.dir / "audit.log"


def audit_lines(server, path=None):
    path = path or audit_path(server)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text == "" or text.endswith("\n"), "last line incomplete"
    return [json.loads(l) for l in text.splitlines()]   # every line is JSON


def wait_for_line(server, pred, timeout=5):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        lines = audit_lines(server)
        hits = [l for l in lines if pred(l)]
        if hits:
            return hits
        time.sleep(0.05)
    raise AssertionError("no matching audit line; tail: %s" % audit_lines(server)[-10:])


def test_lines_are_json_with_fields(server, accounts):
    """Each stanza line carries ts, host, direction, from, to, kind, type,
    id, size; session events carry ip and user/jid; bodies are recorded
    when enabled."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, resource="ra", presence=1)
        cb = await connect(server, b, resource="rb", presence=1)
        msg = ca.make_message(mto=cb.boundjid, mbody="audited words", mtype="chat")
        msg["id"] = "audit-1"
        msg.send()
        m = await cb.next_message(pred=lambda m: m["body"] == "audited words")
        assert m["id"] == "audit-1"
        await ca.stop()
    run(scenario())
    wait_for_line(server, lambda l: l["event"] == "session-closed" and l.get("jid") == a.jid + "/ra")
    lines = audit_lines(server)
    for l in lines:
        assert {"ts", "host", "event"} <= set(l)
        assert l["ts"].endswith("Z") and "T" in l["ts"]
        if l["event"] == "stanza":
            assert STANZA_FIELDS <= set(l), l
            assert l["dir"] in ("in", "out")
            assert l["kind"] in ("message", "presence", "iq")
            assert isinstance(l["size"], int) and l["size"] > 0
            assert l["host"] == "localhost"
    sent = [l for l in lines if l["event"] == "stanza" and l["id"] == "audit-1"]
    ins = [l for l in sent if l["dir"] == "in"]
    outs = [l for l in sent if l["dir"] == "out"]
    assert len(ins) == 1 and len(outs) == 1
    assert ins[0]["from"] == a.jid + "/ra" and ins[0]["to"] == b.jid + "/rb"
    assert outs[0]["from"] == a.jid + "/ra" and outs[0]["to"] == b.jid + "/rb"
    assert ins[0]["kind"] == "message" and ins[0]["type"] == "chat"
    assert ins[0]["body"] == "audited words" and outs[0]["body"] == "audited words"
    events = {(l["event"], l.get("user") or l.get("jid")) for l in lines if l["event"] != "stanza"}
    assert ("auth-success", a.user) in events
    assert ("resource-bound", a.jid + "/ra") in events
    assert ("session-closed", a.jid + "/ra") in events
    assert all(l.get("ip") == "127.0.0.1" for l in lines if l["event"] != "stanza")


def test_bodies_off_by_default(server_factory):
    """Without `bodies`, message bodies never reach the audit log."""
    srv = server_factory({"modules": {"log": True}})
    srv.adduser("quiet1@localhost", "pw-q1")
    c = RawClient(srv.port)
    try:
        c.login("quiet1", "pw-q1", resource="r")
        c.send("<message to='quiet1@localhost/r' id='nb1' type='chat'><body>private body</body></message>")
        c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    finally:
        c.close()
    time.sleep(0.3)
    text = (srv.dir / "audit.log").read_text()
    assert "nb1" in text and "private body" not in text
    for line in text.splitlines():
        assert "body" not in json.loads(line)


def test_reopen_on_sighup(server, accounts):
    """SIGHUP: the audit file is reopened, so rotation by renaming works."""
    (a,) = accounts(1)
    rotated = server.dir / "audit.log.1"
    os.rename(audit_path(server), rotated)
    server.reload()
    deadline = time.monotonic() + scaled(5)
    while not audit_path(server).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert audit_path(server).exists()
    c = RawClient(server.port)
    try:
        c.login(a.user, a.password, resource="rot")
        c.send("<message to='%s/rot' id='after-rotate' type='chat'><body>x</body></message>" % a.jid)
        c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    finally:
        c.close()
    wait_for_line(server, lambda l: l.get("id") == "after-rotate")
    assert "after-rotate" not in rotated.read_text()


def test_syslog_output_starts(server_factory):
    """output "syslog": the module loads and the server works."""
    srv = server_factory({"modules": {"log": {"output": "syslog", "facility": "local3"}}})
    srv.adduser("sys1@localhost", "pw-sys1")
    c = RawClient(srv.port)
    try:
        assert c.login("sys1", "pw-sys1", resource="r")
    finally:
        c.close()


MECHS = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "SCRAM-SHA-256-PLUS"]


def test_no_secret_in_any_log(server, accounts):
    """RFC 6120 §13.8 spirit / our rule: after logins with every mechanism
    (and a failed one), neither the passwords nor the base64 of a PLAIN
    exchange appear in the server log (debug level), the audit log (with
    bodies) or stderr."""
    secrets_used = []
    for mech in MECHS:
        # a distinctive password (base64-safe, so its encodings are easy to find)
        pw = "Pw%s%s" % (mech.replace("-", ""), secrets.token_hex(8))
        acc2_user = "sec%s%s" % (mech.replace("-", "").lower(), secrets.token_hex(3))
        server.adduser("%s@localhost" % acc2_user, pw)
        c = RawClient(server.port)
        try:
            assert c.login(acc2_user, pw, mech=mech, resource="s")
            c.send("<message to='%s@localhost/s' id='sec-%s' type='chat'><body>hello</body></message>"
                   % (acc2_user, mech))
            c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
        finally:
            c.close()
        plain = ("\0%s\0%s" % (acc2_user, pw)).encode()
        secrets_used += [pw, base64.b64encode(plain).decode(),
                         base64.b64encode(pw.encode()).decode().rstrip("=")]
    # a failed login with a distinctive wrong password
    wrong = "WrongPw" + secrets.token_hex(8)
    c = RawClient(server.port)
    try:
        c.open_stream()
        c.starttls()
        c.open_stream()
        res = c.auth_plain("nobody" + secrets.token_hex(3), wrong)
        assert not res.ok
    finally:
        c.close()
    secrets_used += [wrong, base64.b64encode(wrong.encode()).decode().rstrip("=")]
    time.sleep(QUIET_PERIOD / 2)
    logs = {"log": server.read_log(), "stderr": server.read_stderr()}
    for p in server.dir.glob("audit.log*"):
        logs[p.name] = p.read_text(errors="replace")
    assert "authentication failed" in logs["log"]      # the failure itself is logged
    assert any('"auth-failure"' in t for k, t in logs.items() if k.startswith("audit"))
    for name, text in logs.items():
        for s in secrets_used:
            assert s not in text, "secret %r found in %s" % (s, name)
