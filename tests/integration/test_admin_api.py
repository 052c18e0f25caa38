"""The JSON HTTP admin API (mod_admin_api, ejabberd mod_http_api style):
HTTP Basic with an administrator's JID and password (RFC 7617) or a
bearer token (RFC 6750) from the configuration; 401/403 for others; the
access rule "admin_api" and per-host administrators; accounts, sessions,
messages and stanzas, rosters, statistics, modules and reloads."""

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path

import pytest

from conftest import Account, Server, _finish, unique_user
from webclient import add_web_listeners, http_request
from xmpptest import NS_CLIENT, NS_STREAM, PoliteClient, XMPPTestError, error_condition, q, \
    raw_login, tostr

TOKEN = "tok-" + secrets.token_hex(16)
CHECK_TOKEN = "chk-" + secrets.token_hex(16)
OTHER_TOKEN = "oth-" + secrets.token_hex(16)
HASHED_TOKEN = "hsh-" + secrets.token_hex(16)
OLD_TOKEN = "old-" + secrets.token_hex(16)
BOSS = Account("boss", "boss-pw")


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("admin_api"), cert_dir, {
        "admins": ["boss@localhost"],
        "hosts": {"localhost": {}, "other.example": {"admins": ["chief@other.example"]}},
        "modules": {"disco": {}, "presence": {}, "roster": {},
                    "admin_api": {"tokens": {
                        "ops": {"token": TOKEN},
                        "checker": {"token": CHECK_TOKEN, "commands": ["check_account"]},
                        "other": {"token": OTHER_TOKEN, "hosts": ["other.example"]},
                        "hashed": {"sha256": hashlib.sha256(HASHED_TOKEN.encode()).hexdigest(),
                                   "expires": "2999-12-31T23:59:59Z"},
                        "old": {"token": OLD_TOKEN, "expires": "2020-01-01"}}}},
    }, name="admin_api")
    add_web_listeners(srv)
    srv.start()
    srv.adduser("boss@localhost", "boss-pw")
    srv.adduser("chief@other.example", "chief-pw")
    srv.adduser("joe@localhost", "joe-pw")
    yield srv
    _finish(srv)


def basic(jid, pw):
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (jid, pw)).encode()).decode()}


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def call(srv, command, args=None, auth=None, raw=None):
    """POST /api/COMMAND -> (status, decoded JSON body, headers)."""
    h = {"Content-Type": "application/json"}
    h.update(auth if auth is not None else basic("boss@localhost", "boss-pw"))
    body = raw if raw is not None else json.dumps(args or {})
    st, hdrs, data = http_request(srv.http_port, "POST", "/api/" + command, body=body, headers=h)
    return st, json.loads(data) if data else None, hdrs


def account(srv):
    a = Account(unique_user(), secrets.token_urlsafe(12))
    srv.adduser(a.jid, a.password)
    return a


def stream_error(c):
    el = c.wait_for(lambda e: e.tag == q(NS_STREAM, "error"))
    return error_condition(el)


def test_who_may_call(server):
    """RFC 7235 §3.1: no or wrong credentials are 401 with
    WWW-Authenticate; an account that is no administrator is 403 (the
    rule admin_api's default); a host's administrator acts on that host
    only, never server-wide; an unknown command is 404, a body that is no
    JSON object 400, GET 405 (POST only)."""
    st, body, hdrs = call(server, "status", auth={})
    assert st == 401 and "Basic" in hdrs["www-authenticate"] and "Bearer" in hdrs["www-authenticate"]
    assert body == {"status": "error", "code": 401,
                    "message": "credentials required (HTTP Basic with an administrator's JID, "
                               "or a token)"}
    assert call(server, "status", auth=basic("boss@localhost", "wrong"))[0] == 401
    assert call(server, "status", auth=basic("nobody@localhost", "x"))[0] == 401
    assert call(server, "status", auth=bearer("not-a-token"))[0] == 401
    assert call(server, "status", auth=basic("joe@localhost", "joe-pw"))[0] == 403
    assert call(server, "check_account", {"user": "joe", "host": "localhost"},
                auth=basic("joe@localhost", "joe-pw"))[0] == 403
    chief = basic("chief@other.example", "chief-pw")
    st, body, _ = call(server, "check_account", {"user": "chief", "host": "other.example"}, auth=chief)
    assert (st, body) == (200, {"exists": True})
    assert call(server, "check_account", {"user": "joe", "host": "localhost"}, auth=chief)[0] == 403
    assert call(server, "status", auth=chief)[0] == 403
    assert call(server, "no_such_command")[0] == 404
    st, body, _ = call(server, "status", raw="[1, 2")
    assert st == 400 and body["message"].startswith("expected a JSON object")
    st, hdrs, _ = http_request(server.http_port, "GET", "/api/status",
                               headers=basic("boss@localhost", "boss-pw"))
    assert st == 405 and hdrs["allow"] == "POST"


def test_tokens_are_scoped(server):
    """RFC 6750 bearer tokens from the configuration: one limited to a
    command runs only that; one limited to a host acts only there and
    runs no server-wide command."""
    st, body, _ = call(server, "check_account", {"user": "joe", "host": "localhost"},
                       auth=bearer(CHECK_TOKEN))
    assert (st, body) == (200, {"exists": True})
    assert call(server, "registered_users", {"host": "localhost"}, auth=bearer(CHECK_TOKEN))[0] == 403
    assert call(server, "registered_users", {"host": "localhost"}, auth=bearer(OTHER_TOKEN))[0] == 403
    st, body, _ = call(server, "registered_users", {"host": "other.example"}, auth=bearer(OTHER_TOKEN))
    assert (st, body) == (200, ["chief"])
    assert call(server, "connected_users", auth=bearer(OTHER_TOKEN))[0] == 403
    assert call(server, "connected_users", auth=bearer(TOKEN))[0] == 200
    # kept hashed at rest; an expired one is refused
    assert call(server, "connected_users", auth=bearer(HASHED_TOKEN))[0] == 200
    st, body, _ = call(server, "connected_users", auth=bearer(OLD_TOKEN))
    assert (st, body["message"]) == (401, "the token old expired")


def test_xmppctl_token_makes_a_hashed_token(server_factory):
    """`xmppctl token NAME` prints a new token once and the SHA-256 to
    configure; configured so, the token works; a reload with a malformed
    sha256 or expiry is refused (the module's load says why) and the
    running tokens stay."""
    srv = server_factory({"admins": ["boss@localhost"], "modules": {"admin_api": {}}}, start=False)
    add_web_listeners(srv)
    srv.start()
    r = srv.ctl("-j", "token", "deploy")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert hashlib.sha256(made["token"].encode()).hexdigest() == made["sha256"]
    assert call(srv, "status", auth=bearer(made["token"]))[0] == 401
    srv.config["modules"]["admin_api"] = {"tokens": {"deploy": {"sha256": made["sha256"]}}}
    srv.write_config()
    out = srv.ctl("reload")
    assert out.returncode == 0, out.stdout + out.stderr
    assert call(srv, "status", auth=bearer(made["token"]))[0] == 200
    for bad, why in (({"sha256": "abc"}, "tokens.x.sha256: expected 64 hex digits"),
                     ({"token": "t" * 30, "expires": "soon"}, "tokens.x.expires: expected a date"),
                     ({}, "tokens.x: give either token or sha256")):
        srv.config["modules"]["admin_api"] = {"tokens": {"x": bad}}
        srv.write_config()
        r = srv.ctl("reload")
        assert r.returncode == 1 and why in r.stdout + r.stderr, (bad, r.stdout + r.stderr)
        assert call(srv, "status", auth=bearer(made["token"]))[0] == 200


def test_accounts(server):
    """register (409 for an existing account, 404 for an unknown host, 400
    for a missing argument), check_account, registered_users,
    change_password (the account's sessions end with <reset/>) and
    unregister (sessions end with <not-authorized/>, the account is
    gone)."""
    user = unique_user("api")
    args = {"user": user, "host": "localhost", "password": "pw-one"}
    st, body, _ = call(server, "register", args, auth=bearer(TOKEN))
    assert (st, body) == (200, "User %s@localhost successfully registered" % user)
    st, body, _ = call(server, "register", args)
    assert st == 409 and body["code"] == 409
    assert call(server, "register", dict(args, host="nowhere.example"))[0] == 404
    st, body, _ = call(server, "register", {"user": user, "host": "localhost"})
    assert (st, body["message"]) == (400, "\"password\": a string is required")
    assert call(server, "check_account", {"user": user, "host": "localhost"})[1] == {"exists": True}
    st, body, _ = call(server, "registered_users", {"host": "localhost"})
    assert st == 200 and user in body and "boss" in body and body == sorted(body)

    with raw_login(server, Account(user, "pw-one")) as c:
        st, body, _ = call(server, "change_password",
                           {"user": user, "host": "localhost", "newpass": "pw-two"})
        assert (st, body) == (200, {"sessions_closed": 1})
        assert stream_error(c) == "reset"
    with raw_login(server, Account(user, "pw-two")) as c:
        st, body, _ = call(server, "unregister", {"user": user, "host": "localhost"})
        assert (st, body) == (200, {"sessions_closed": 1})
        assert stream_error(c) == "not-authorized"
    assert call(server, "check_account", {"user": user, "host": "localhost"})[1] == {"exists": False}
    with pytest.raises(XMPPTestError):
        PoliteClient(server.port).login(user, "pw-two")
    st, body, _ = call(server, "unregister", {"user": user, "host": "localhost"})
    assert st == 404, body


def test_sessions_messages_and_rosters(server):
    """connected_users(_info, _number), send_message and send_stanza
    (routed as from the given address), get_roster, kick_session (one
    resource, <policy-violation/>) and kick_user (all of them)."""
    a, b = account(server), account(server)
    with raw_login(server, a, resource="one", presence=True) as a1, \
            raw_login(server, a, resource="two") as a2, raw_login(server, b) as b1:
        st, users, _ = call(server, "connected_users")
        assert st == 200 and {a.jid + "/one", a.jid + "/two", b1.jid} <= set(users)
        st, info, _ = call(server, "connected_users_info")
        mine = [s for s in info if s["jid"] == a.jid + "/one"][0]
        assert mine["host"] == "localhost" and mine["available"] is True and mine["ip"] == "127.0.0.1"
        st, num, _ = call(server, "connected_users_number")
        assert num["num_sessions"] == len(users)
        st, body, _ = call(server, "stats", {"name": "onlineusers", "host": "localhost"})
        assert st == 200 and body["stat"] >= 3

        st, body, _ = call(server, "send_message", {"type": "chat", "from": "localhost",
                                                    "to": b1.jid, "subject": "S", "body": "hello"})
        assert (st, body) == (200, 0)
        m = b1.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
        assert (m.get("from"), m.get("type"), m.findtext(q(NS_CLIENT, "body")),
                m.findtext(q(NS_CLIENT, "subject"))) == ("localhost", "chat", "hello", "S")
        st, body, _ = call(server, "send_stanza", {
            "from": a.jid, "to": b1.jid,
            "stanza": "<message xmlns='jabber:client' id='raw1'><body>raw</body></message>"})
        assert st == 200, body
        m = b1.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == "raw1")
        assert m.get("from") == a.jid
        assert call(server, "send_stanza", {"from": a.jid, "to": b.jid,
                                            "stanza": "<stream:x/>"})[0] == 400
        assert call(server, "send_message", {"from": "x@elsewhere.example", "to": b.jid,
                                             "body": "x"})[0] == 400

        a1.iq("<query xmlns='jabber:iq:roster'><item jid='%s' name='B'/></query>" % b.jid,
              type_="set")
        st, body, _ = call(server, "get_roster", {"user": a.user, "host": "localhost"})
        assert (st, body) == (200, [{"jid": b.jid, "nick": "B", "subscription": "none",
                                     "ask": "none", "groups": []}])
        assert call(server, "get_roster", {"user": "ghost", "host": "localhost"})[0] == 404

        st, body, _ = call(server, "kick_session", {"user": a.user, "host": "localhost",
                                                    "resource": "one", "reason": "bye"})
        assert (st, body) == (200, {"kicked": 1})
        assert stream_error(a1) == "policy-violation"
        st, body, _ = call(server, "kick_user", {"user": b.user, "host": "localhost"})
        assert (st, body) == (200, {"kicked": 1})
        assert stream_error(b1) == "policy-violation"
        assert call(server, "kick_session", {"user": a.user, "host": "localhost",
                                             "resource": "one"})[0] == 404
    st, body, _ = call(server, "kick_user", {"user": b.user, "host": "localhost"})
    assert (st, body) == (200, {"kicked": 0})


def test_server_commands(server):
    """stats, status, modules, module_reload and reload_config: what
    `xmppctl` does, through the same control commands."""
    st, body, _ = call(server, "stats", {"name": "registeredusers", "host": "localhost"})
    assert st == 200 and body["stat"] >= 2
    st, body, _ = call(server, "stats", {"name": "uptimeseconds"})
    assert st == 200 and body["stat"] >= 0
    assert call(server, "stats", {"name": "nonsense"})[0] == 400
    st, body, _ = call(server, "status")
    assert st == 200 and {h["host"] for h in body["hosts"]} == {"localhost", "other.example"}
    st, body, _ = call(server, "modules")
    assert st == 200 and any(m["module"] == "admin_api" for m in body["modules"]), body
    st, body, _ = call(server, "module_reload", {"module": "roster", "host": "localhost"})
    assert (st, body) == (200, {"message": "module roster reloaded on localhost"})
    st, body, _ = call(server, "module_reload", {"module": "nosuchmodule"})
    assert st in (400, 404) and body["code"] == st
    st, body, _ = call(server, "reload_config")
    assert st == 200, body
    # the API reloading itself: the old instance unloads with the request
    # in flight, which the kernel answers 503; the new instance serves
    st, body, _ = call(server, "module_reload", {"module": "admin_api"})
    assert st == 503, body
    assert call(server, "status")[0] == 200


DOC = Path(__file__).resolve().parents[2] / "docs" / "admin-api.openapi.json"


def test_openapi_document_matches_every_endpoint(server):
    """The OpenAPI 3.0 document at GET /api/openapi.json is the one kept in
    docs/ (XMPPD_WRITE_OPENAPI=1 rewrites that copy), lists every command
    (others are 404), and each endpoint enforces the arguments it marks
    required (400 naming the first one missing) and answers 200 without
    them when it has none."""
    st, hdrs, data = http_request(server.http_port, "GET", "/api/openapi.json")
    assert st == 200 and hdrs["content-type"] == "application/json"
    doc = json.loads(data)
    if os.environ.get("XMPPD_WRITE_OPENAPI") == "1":
        DOC.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    assert doc == json.loads(DOC.read_text()), "docs/admin-api.openapi.json is not current"
    assert doc["openapi"].startswith("3.0") and doc["servers"] == [{"url": "/api"}]
    assert set(doc["components"]["securitySchemes"]) == {"basic", "bearer"}
    assert len(doc["paths"]) >= 18
    safe = {"reload_config", "module_reload"}  # run elsewhere: they change the server
    for path, item in doc["paths"].items():
        op = item["post"]
        assert op["operationId"] == path[1:]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        required = schema.get("required", [])
        assert set(required) <= set(schema["properties"])
        if path[1:] in safe and not required:
            continue
        st, body, _ = call(server, path[1:], {})
        if required:
            assert (st, body["message"]) == (400, "\"%s\": a string is required" % required[0]), path
        else:
            assert st == 200, (path, body)
        if op.get("security") == []:  # login: the credentials are its arguments
            assert call(server, path[1:], {k: "x@localhost" for k in required}, auth={})[0] == 401
        else:
            assert call(server, path[1:], {}, auth={})[0] == 401
    assert call(server, "openapi.json")[0] == 404
    st, hdrs, _ = http_request(server.http_port, "GET", "/api/register")
    assert st == 405 and hdrs["allow"] == "POST"
