"""Issue 17, what followed the first administration work: disabling
accounts (XEP-0133 §4.3 disable-user / §4.4 reenable-user, the admin API's
ban_account/unban_account, xmppctl disable/enable; a disabled account's
login is SASL <account-disabled/>, RFC 6120 §6.5.1, and its sessions end),
the message of the day and welcome message (XEP-0133 §4.26-§4.30,
mod_motd), the audit lines of every XEP-0133 command and API call
(mod_log), and `xmppctl check` of the admin API's tokens."""

import json
import secrets
import time

import pytest

from adhoc_client import NS_ADMIN, cmd_el, command, notes, run_admin, submit, values
from conftest import Account, Server, _finish, unique_user
from webclient import add_web_listeners, http_request
from xmpptest import (NS_CLIENT, NS_STREAM, RawClient, error_condition, q, raw_login, sasl_plain,
                      sasl_scram, scaled, tostr)

NS_REGISTER = "jabber:iq:register"
BOSS = Account("boss", "boss-pw")
TOKEN = "tok-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("admin_accounts"), cert_dir, {
        "admins": ["boss@localhost"],
        "modules": {"disco": {}, "presence": {}, "roster": {}, "offline": {}, "adhoc": {},
                    "admin_adhoc": {}, "motd": {}, "register": {"allow_registration": True},
                    "log": {"file": "audit.log", "stanzas": False},
                    "admin_api": {"tokens": {"ops": {"token": TOKEN}}}},
    }, name="admin_accounts")
    add_web_listeners(srv)
    srv.start()
    srv.adduser("boss@localhost", "boss-pw")
    yield srv
    _finish(srv)


def account(srv):
    a = Account(unique_user(), secrets.token_urlsafe(12))
    srv.adduser(a.jid, a.password)
    return a


# ---- helpers: ad-hoc runs, the API, the audit log ------------------------------------

def api(srv, command, args, token=TOKEN):
    st, _, data = http_request(srv.http_port, "POST", "/api/" + command, body=json.dumps(args),
                               headers={"Content-Type": "application/json",
                                        "Authorization": "Bearer " + token})
    return st, json.loads(data) if data else None


def audit_lines(srv):
    path = srv.dir / "audit.log"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def wait_audit(srv, pred, what):
    deadline = time.monotonic() + scaled(5)
    while time.monotonic() < deadline:
        hits = [l for l in audit_lines(srv) if l.get("event") == "admin" and pred(l)]
        if hits:
            return hits
        time.sleep(0.05)
    raise AssertionError("no audit line for %s; tail: %s" % (what, audit_lines(srv)[-5:]))


def stream_ended(c, condition):
    el = c.wait_for(lambda e: e.tag == q(NS_STREAM, "error"))
    assert error_condition(el) == condition, tostr(el)


def refused(srv, a):
    """RFC 6120 §6.5.1: PLAIN and SCRAM both answer <account-disabled/>."""
    r = sasl_plain(srv, a.user, a.password)
    assert not r.ok and r.condition == "account-disabled", r
    r = sasl_scram(srv, "SCRAM-SHA-256", a.user, a.password)
    assert not r.ok and r.condition == "account-disabled", r
    r = sasl_plain(srv, a.user, "wrong-" + a.password)
    assert not r.ok and r.condition == "not-authorized", "a wrong password learns nothing: %r" % r


# ---- disabling ---------------------------------------------------------------------------

def test_xep0133_4_3_disable_user_and_4_4_reenable_user(server):
    """XEP-0133 §4.3: disable-user bars the accounts named (jid-multi) from
    logging in (RFC 6120 §6.5.1 <account-disabled/>) and ends their
    sessions (<not-authorized/>); an unknown account is reported in a warn
    note; §4.4 reenable-user lets them in again with the same password."""
    a, b = account(server), account(server)
    with raw_login(server, BOSS) as boss, raw_login(server, a, presence=True) as ca:
        r = run_admin(boss, "disable-user", accountjids=[a.jid, b.jid, "ghost@localhost"])
        assert cmd_el(r).get("status") == "completed", tostr(r)
        assert notes(r) == [("info", "2 of 3 account(s) disabled"),
                            ("warn", "Not disabled: ghost (no such account)")]
        stream_ended(ca, "not-authorized")
    refused(server, a)
    refused(server, b)
    with raw_login(server, BOSS) as boss:
        r = run_admin(boss, "reenable-user", accountjids=[a.jid, b.jid])
        assert notes(r) == [("info", "2 of 2 account(s) re-enabled")]
    assert sasl_plain(server, a.user, a.password).ok
    assert sasl_scram(server, "SCRAM-SHA-256", b.user, b.password).ok


def test_xep0133_disable_user_errors_and_forbidden(server):
    """XEP-0133 §4.3: a JID of another host is <bad-request/>; a user who
    is no administrator gets <forbidden/> (§5) and stays enabled."""
    a = account(server)
    with raw_login(server, BOSS) as boss:
        r = run_admin(boss, "disable-user", accountjids="x@elsewhere.example")
        assert error_condition(r) == ("modify", "bad-request")
    with raw_login(server, a) as c:
        r = command(c, NS_ADMIN + "#disable-user")
        assert error_condition(r) == ("auth", "forbidden")
    assert sasl_plain(server, a.user, a.password).ok


def test_password_change_keeps_an_account_disabled(server):
    """A disabled account stays disabled when its password changes
    (xmppctl passwd): the flag is part of the account, not of its keys."""
    a = account(server)
    assert server.ctl("disable", a.jid).returncode == 0
    server.ctl("passwd", a.jid, input="new-pw-123\n", check=True)
    r = sasl_plain(server, a.user, "new-pw-123")
    assert r.condition == "account-disabled", r
    server.ctl("enable", a.jid, check=True)
    assert sasl_plain(server, a.user, "new-pw-123").ok


def test_xmppctl_disable_enable_running_and_stopped(server_factory):
    """xmppctl disable JID [--reason] ends the sessions of a running
    server's account and bars it (<account-disabled/>); enable lets it in;
    on a stopped server both change the stored account, which the next
    start honours (SQLite or PostgreSQL alike)."""
    srv = server_factory()
    a = Account(unique_user(), "pw-" + secrets.token_hex(4))
    srv.adduser(a.jid, a.password)
    with raw_login(srv, a) as c:
        r = srv.ctl("disable", a.jid, "--reason", "spam")
        assert r.returncode == 0 and "1 session ended" in r.stdout, r.stdout + r.stderr
        stream_ended(c, "not-authorized")
    assert sasl_plain(srv, a.user, a.password).condition == "account-disabled"
    srv.stop()
    srv.ctl("enable", a.jid, check=True)
    srv.start()
    assert sasl_plain(srv, a.user, a.password).ok
    srv.stop()
    srv.ctl("disable", a.jid, check=True)
    srv.start()
    assert sasl_plain(srv, a.user, a.password).condition == "account-disabled"
    r = srv.ctl("disable", "ghost@localhost")
    assert r.returncode == 1 and "no such user" in r.stderr
    assert srv.ctl("disable", a.jid, "--bogus").returncode == 2


def test_api_ban_account_and_unban_account(server):
    """Admin API ban_account (ejabberd's name and arguments: user, host,
    reason): the account's sessions end, its logins are
    <account-disabled/>; account_disabled tells; unban_account lets it
    in; an unknown account is 404; both are listed in the OpenAPI
    document."""
    a = account(server)
    with raw_login(server, a) as c:
        st, body = api(server, "ban_account", {"user": a.user, "host": "localhost",
                                               "reason": "abuse"})
        assert (st, body) == (200, {"sessions_closed": 1})
        stream_ended(c, "not-authorized")
    refused(server, a)
    acct = {"user": a.user, "host": "localhost"}
    assert api(server, "account_disabled", acct) == (200, {"disabled": True})
    assert api(server, "unban_account", acct) == (200, {"sessions_closed": 0})
    assert api(server, "account_disabled", acct) == (200, {"disabled": False})
    assert api(server, "account_disabled", {"user": "ghost", "host": "localhost"})[0] == 404
    assert sasl_plain(server, a.user, a.password).ok
    st, body = api(server, "ban_account", {"user": "ghost", "host": "localhost"})
    assert st == 404 and body["message"] == "no such user"
    st, _, data = http_request(server.http_port, "GET", "/api/openapi.json")
    paths = json.loads(data)["paths"]
    assert {"/ban_account", "/unban_account"} <= set(paths)
    assert paths["/ban_account"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["required"] == ["user", "host"]


# ---- audit log ------------------------------------------------------------------------------

def test_issue17_every_command_and_api_call_is_audited(server):
    """Issue 17: each XEP-0133 command run (completed, refused, failed) and
    each admin API call is one audit line (mod_log, event "admin"): who,
    command, target, result; never the password given to it."""
    a = Account(unique_user(), "audit-" + secrets.token_hex(8))
    user = account(server)
    with raw_login(server, BOSS) as boss:
        r = run_admin(boss, "add-user", accountjid=a.jid, password=a.password)
        assert cmd_el(r).get("status") == "completed", tostr(r)
    wait_audit(server, lambda l: l["command"] == NS_ADMIN + "#add-user" and l["target"] == a.jid
               and l["result"] == "completed" and l["actor"].startswith("boss@localhost/")
               and l["via"] == "adhoc" and l["ip"] == "127.0.0.1", "add-user")
    with raw_login(server, user) as c:
        command(c, NS_ADMIN + "#delete-user")
    wait_audit(server, lambda l: l["command"] == NS_ADMIN + "#delete-user" and
               l["actor"].startswith(user.jid + "/") and l["result"] == "error: forbidden",
               "a refused command")
    with raw_login(server, BOSS) as boss:
        run_admin(boss, "change-user-password", accountjid="ghost@localhost", password="zz-secret")
    wait_audit(server, lambda l: l["command"] == NS_ADMIN + "#change-user-password" and
               l["target"] == "ghost@localhost" and l["result"].startswith("error: item-not-found"),
               "a failed command")
    api(server, "change_password", {"user": user.user, "host": "localhost",
                                    "newpass": "api-secret-pw"})
    wait_audit(server, lambda l: l["via"] == "api" and l["command"] == "change_password" and
               l["actor"] == "token:ops" and l["target"] == user.jid and l["result"] == "ok",
               "an API call")
    api(server, "check_account", {"user": "x"})
    wait_audit(server, lambda l: l["via"] == "api" and l["command"] == "check_account" and
               l["result"].startswith("400: "), "a refused API call")
    text = (server.dir / "audit.log").read_text()
    for secret in (a.password, "zz-secret", "api-secret-pw", TOKEN):
        assert secret not in text


# ---- message of the day, welcome message -------------------------------------------------

def test_xep0133_4_26_set_motd_sent_now_and_at_each_login(server):
    """XEP-0133 §4.26 set-motd: stored and sent as a headline from the host
    to every available session now, and once to each later session on its
    initial presence (RFC 6121 §4.2, Prosody's mod_motd) — not on later
    presence updates; §4.27 edit-motd shows the current text and changes
    it without sending; §4.28 delete-motd stops it."""
    a, b = account(server), account(server)

    def motd(c):
        return c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and
                          e.get("type") == "headline" and e.get("from") == "localhost")

    with raw_login(server, BOSS) as boss, raw_login(server, a, presence=True) as ca:
        r = run_admin(boss, "set-motd", motd=["Welcome back", "Maintenance at 10:00"])
        assert cmd_el(r).get("status") == "completed", tostr(r)
        assert notes(r)[0][1].startswith("Message of the day set and sent to ")
        assert motd(ca).findtext(q(NS_CLIENT, "body")) == "Welcome back\nMaintenance at 10:00"
    with raw_login(server, b) as cb:
        cb.send_presence()
        assert motd(cb).findtext(q(NS_CLIENT, "body")) == "Welcome back\nMaintenance at 10:00"
        cb.send("<presence><show>away</show></presence>")
        assert cb.quiet(pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []
    with raw_login(server, BOSS) as boss:
        first = command(boss, NS_ADMIN + "#edit-motd")
        assert values(first, "motd") == ["Welcome back", "Maintenance at 10:00"]
        r = command(boss, NS_ADMIN + "#edit-motd", sid=cmd_el(first).get("sessionid"),
                    form=submit(motd="Edited"))
        assert notes(r) == [("info", "Message of the day changed")]
    with raw_login(server, b, presence=True) as cb:
        assert motd(cb).findtext(q(NS_CLIENT, "body")) == "Edited"
    with raw_login(server, BOSS) as boss:
        r = run_admin(boss, "delete-motd")
        assert notes(r) == [("info", "Message of the day deleted")]
        r = run_admin(boss, "set-motd", motd="")
        assert error_condition(r) == ("modify", "bad-request")
    with raw_login(server, b, presence=True) as cb:
        assert cb.quiet(pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []


def register(srv, user, pw):
    """XEP-0077 §3.1 in-band registration on a fresh stream."""
    with RawClient(srv.port) as c:
        c.open_stream()
        c.starttls()
        c.open_stream()
        res = c.iq("<query xmlns='%s'><username>%s</username><password>%s</password></query>"
                   % (NS_REGISTER, user, pw), type_="set")
        assert res.get("type") == "result", tostr(res)


def host_messages(c):
    return c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("from") == "localhost")


def test_motd_and_due_welcome_survive_a_restart(server_factory):
    """The MOTD is stored (keyval store "motd"): after a restart it is still
    sent on initial presence; so is a welcome message due to an account
    registered before the restart that had not logged in yet."""
    srv = server_factory({"admins": ["boss@localhost"],
                          "modules": {"presence": {}, "roster": {}, "adhoc": {}, "motd": {},
                                      "register": {"allow_registration": True}}})
    srv.adduser(BOSS.jid, BOSS.password)
    with raw_login(srv, BOSS) as boss:
        run_admin(boss, "set-motd", motd="Kept across restarts")
        run_admin(boss, "set-welcome", welcome="Welcome, newcomer")
    new = Account(unique_user(), "reg-" + secrets.token_hex(6))
    register(srv, new.user, new.password)
    srv.restart()
    with raw_login(srv, BOSS, presence=True) as boss:
        assert host_messages(boss).findtext(q(NS_CLIENT, "body")) == "Kept across restarts"
    with raw_login(srv, new, presence=True) as c:
        got = {host_messages(c).findtext(q(NS_CLIENT, "body")) for _ in range(2)}
        assert got == {"Welcome, newcomer", "Kept across restarts"}
    with raw_login(srv, new, presence=True) as c:  # once only
        assert host_messages(c).findtext(q(NS_CLIENT, "body")) == "Kept across restarts"
        assert c.quiet(pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []


def test_xep0133_4_29_welcome_message_to_registered_accounts(server):
    """XEP-0133 §4.29 set-welcome: an account registered in-band (XEP-0077
    §3.1) gets the welcome message, once, when it logs in right after
    (initial presence); accounts an administrator creates get none; §4.30
    delete-welcome stops it."""
    with raw_login(server, BOSS) as boss:
        r = run_admin(boss, "set-welcome", welcome="Hello and welcome")
        assert notes(r) == [("info", "Welcome message set")]
    new = Account(unique_user(), "reg-" + secrets.token_hex(6))
    register(server, new.user, new.password)
    with raw_login(server, new, presence=True) as c:
        assert host_messages(c).findtext(q(NS_CLIENT, "body")) == "Hello and welcome"
    with raw_login(server, new, presence=True) as c:
        assert c.quiet(pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []
    made = account(server)
    with raw_login(server, made, presence=True) as c:
        assert c.quiet(pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []
    with raw_login(server, BOSS) as boss:
        assert notes(run_admin(boss, "delete-welcome")) == [("info", "Welcome message deleted")]
    later = Account(unique_user(), "reg-" + secrets.token_hex(6))
    register(server, later.user, later.password)
    with raw_login(server, later, presence=True) as c:
        assert c.quiet(pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []


# ---- xmppctl check ------------------------------------------------------------------------------

@pytest.mark.parametrize("token, message", [
    ({"token": "x" * 30, "sha256": "ab" * 32}, "tokens.bad: give either token or sha256"),
    ({"sha256": "zz" * 32}, "tokens.bad.sha256: expected 64 hex digits"),
    ({"sha256": "ab" * 33}, "tokens.bad.sha256: expected 64 hex digits"),
    ({"token": "y" * 30, "expires": "next week"}, "tokens.bad.expires: expected a date"),
])
def test_issue17_xmppctl_check_validates_api_tokens(server_factory, token, message):
    """Issue 17: `xmppctl check` reports a token the admin API would refuse
    at load (the module's check runs on the parsed options), naming the
    option; a good token passes."""
    srv = server_factory({"modules": {"admin_api": {"tokens": {"bad": token}}}}, start=False)
    r = srv.ctl("check")
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "modules.admin_api" in r.stderr
    srv.config["modules"]["admin_api"] = {"tokens": {"good": {"sha256": "ab" * 32,
                                                              "expires": "2999-01-01"}}}
    srv.write_config()
    r = srv.ctl("check")
    assert r.returncode == 0, r.stderr


# ---- rosters: roster_api v4 through the API and XEP-0133 ----------------------------------

NS_ROSTER = "jabber:iq:roster"


def roster_push(c):
    """The next roster push (RFC 6121 §2.1.6): its single <item/>."""
    iq = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "set" and
                    e.find(q(NS_ROSTER, "query")) is not None)
    c.send("<iq type='result' id='%s'/>" % iq.get("id"))
    items = iq.findall("%s/%s" % (q(NS_ROSTER, "query"), q(NS_ROSTER, "item")))
    assert len(items) == 1, tostr(iq)
    return items[0]


def test_api_add_and_delete_rosteritem_push_to_online_resources(server):
    """ejabberd's add_rosteritem (localuser, localhost, user, host, nick,
    groups, subs) sets the item and pushes it to the account's interested
    resources (RFC 6121 §2.1.6); get_roster shows it with its groups;
    changing it again replaces name and groups; delete_rosteritem removes
    it with a push of subscription='remove' (§2.5); bad arguments are 400,
    an unknown account or item 404."""
    a = account(server)
    with raw_login(server, a) as c:
        c.iq("<query xmlns='%s'/>" % NS_ROSTER)  # interested resource (§2.1.6)
        st, body = api(server, "add_rosteritem", {
            "localuser": a.user, "localhost": "localhost", "user": "friend", "host": "example.net",
            "nick": "Friend", "groups": ["Work", "Chess"], "subs": "both"})
        assert (st, body) == (200, 0), body
        it = roster_push(c)
        assert (it.get("jid"), it.get("name"), it.get("subscription")) == (
            "friend@example.net", "Friend", "both")
        assert sorted(g.text for g in it.findall(q(NS_ROSTER, "group"))) == ["Chess", "Work"]
        st, body = api(server, "get_roster", {"user": a.user, "host": "localhost"})
        assert st == 200 and body == [{"jid": "friend@example.net", "nick": "Friend",
                                       "subscription": "both", "ask": "none",
                                       "groups": ["Work", "Chess"]}], body
        st, body = api(server, "add_rosteritem", {
            "localuser": a.user, "localhost": "localhost", "user": "friend", "host": "example.net",
            "groups": ["Home"]})
        assert st == 200
        it = roster_push(c)
        assert it.get("name") is None and it.get("subscription") == "none"
        assert [g.text for g in it.findall(q(NS_ROSTER, "group"))] == ["Home"]
        for bad in ({"groups": "Work"}, {"groups": ["a", "a"]}, {"groups": [""]},
                    {"subs": "maybe"}, {"nick": "n" * 1024}):
            args = {"localuser": a.user, "localhost": "localhost", "user": "x", "host": "example.net"}
            args.update(bad)
            st, body = api(server, "add_rosteritem", args)
            assert st == 400, (bad, body)
        st, body = api(server, "delete_rosteritem", {
            "localuser": a.user, "localhost": "localhost", "user": "friend", "host": "example.net"})
        assert (st, body) == (200, 0)
        assert roster_push(c).get("subscription") == "remove"
        st, body = api(server, "delete_rosteritem", {
            "localuser": a.user, "localhost": "localhost", "user": "friend", "host": "example.net"})
        assert st == 404
    assert api(server, "get_roster", {"user": a.user, "host": "localhost"}) == (200, [])
    st, _ = api(server, "add_rosteritem", {"localuser": "ghost", "localhost": "localhost",
                                           "user": "x", "host": "example.net"})
    assert st == 404


def test_api_rosteritem_of_an_offline_account_is_stored(server):
    """add_rosteritem for an account with no session: stored before the
    answer, so the account's next roster get (RFC 6121 §2.1.3) has it."""
    a = account(server)
    st, _ = api(server, "add_rosteritem", {"localuser": a.user, "localhost": "localhost",
                                           "user": "later", "host": "example.org", "nick": "L",
                                           "groups": ["G"]})
    assert st == 200
    with raw_login(server, a) as c:
        r = c.iq("<query xmlns='%s'/>" % NS_ROSTER)
        items = r.findall("%s/%s" % (q(NS_ROSTER, "query"), q(NS_ROSTER, "item")))
        assert [(i.get("jid"), i.get("name"), [g.text for g in i.findall(q(NS_ROSTER, "group"))])
                for i in items] == [("later@example.org", "L", ["G"])]


def test_xep0133_4_9_get_user_roster_has_groups(server):
    """XEP-0133 §4.9: the roster in the result carries each item's groups
    (RFC 6121 §2.1.2.4 <group/>)."""
    a = account(server)
    with raw_login(server, a) as c:
        c.iq("<query xmlns='%s'><item jid='pal@example.net' name='Pal'><group>Friends</group>"
             "<group>Climbing</group></item></query>" % NS_ROSTER, type_="set")
    with raw_login(server, BOSS) as boss:
        r = run_admin(boss, "get-user-roster", accountjid=a.jid)
        items = r.findall(".//%s/%s" % (q(NS_ROSTER, "query"), q(NS_ROSTER, "item")))
        assert [(i.get("jid"), i.get("name"), sorted(g.text for g in i.findall(q(NS_ROSTER, "group"))))
                for i in items] == [("pal@example.net", "Pal", ["Climbing", "Friends"])]


def test_disabling_an_administrator_ends_its_api_login(server):
    """An administrator disabled by any path (here xmppctl disable) loses
    the admin API's login token (the web console's) at once: 401, as its
    XMPP logins get <account-disabled/>."""
    st, _, data = http_request(server.http_port, "POST", "/api/login",
                               body=json.dumps({"jid": BOSS.jid, "password": BOSS.password}),
                               headers={"Content-Type": "application/json"})
    assert st == 200, data
    tok = json.loads(data)["token"]
    assert api(server, "status", {}, token=tok)[0] == 200
    try:
        assert server.ctl("disable", BOSS.jid).returncode == 0
        assert api(server, "status", {}, token=tok)[0] == 401
    finally:
        server.ctl("enable", BOSS.jid, check=True)
    assert api(server, "status", {}, token=tok)[0] == 401  # a new login is needed
