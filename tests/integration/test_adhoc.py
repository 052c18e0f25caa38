"""Ad-hoc commands (XEP-0050, mod_adhoc) and service administration
(XEP-0133, mod_admin_adhoc): discovery of the commands node, multi-stage
runs with data forms, cancel, notes, the protocol's own errors, session
expiry and limits, and the administration set (run by slixmpp's xep_0050
plugin and by raw stanzas); non-admins get <forbidden/>."""

import json
import secrets
import time

import pytest

from adhoc_client import (NS_ADMIN, NS_CMD, NS_DATA, cmd_el, command, notes, run_admin,
                          spec_condition, submit, values)
from conftest import Account, Server, _finish, unique_user
from xmpptest import (NS_CLIENT, NS_STREAM, PoliteClient, XMPPTestError, connect, error_condition, q,
                      raw_login, run, scaled, tostr)

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
NS_ROSTER = "jabber:iq:roster"
ADMIN_NODES = {"add-user", "delete-user", "disable-user", "reenable-user", "end-user-session",
               "change-user-password", "get-user-roster", "get-registered-users-num", "get-online-users-num",
               "get-active-users-num", "get-registered-users-list", "get-online-users-list",
               "get-active-users", "announce"}


def modules(**extra):
    m = {"disco": {}, "presence": {}, "roster": {}, "adhoc": {}, "admin_adhoc": {}}
    m.update(extra)
    return m


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("adhoc"), cert_dir, {
        "admins": ["boss@localhost"],
        "access": {"service_admin": [{"allow": {"jid": "helper@localhost"}}]},
        "modules": modules(adhoc={"max_sessions_per_user": 3}),
    }, name="adhoc")
    srv.start()
    srv.adduser("boss@localhost", "boss-pw")
    srv.adduser("helper@localhost", "helper-pw")
    yield srv
    _finish(srv)


BOSS = Account("boss", "boss-pw")


def account(srv):
    a = Account(unique_user(), secrets.token_urlsafe(12))
    srv.adduser(a.jid, a.password)
    return a


def ended_with(c, condition):
    """The stream of c ends with a stream error condition (other stanzas
    before it are skipped)."""
    el = c.wait_for(lambda e: e.tag == q(NS_STREAM, "error"))
    assert error_condition(el) == condition, tostr(el)


# ---- XEP-0050 §2: discovery ----------------------------------------------------------

def test_disco_lists_admin_commands_to_admins_only(server):
    """XEP-0050 §2.1/§2.2: the host's disco#info has the commands feature;
    the commands node lists what the requester may run (XEP-0133 §3: admins
    see the admin set, others only the ping everyone may run); §2.3:
    disco#info of a command node, item-not-found for a hidden one."""
    user = account(server)
    with raw_login(server, BOSS) as boss, raw_login(server, user) as c:
        info = c.iq("<query xmlns='%s'/>" % NS_INFO, to="localhost")
        feats = {f.get("var") for f in info.iter(q(NS_INFO, "feature"))}
        assert NS_CMD in feats

        def nodes(cl):
            r = cl.iq("<query xmlns='%s' node='%s'/>" % (NS_ITEMS, NS_CMD), to="localhost")
            assert r.get("type") == "result", tostr(r)
            return {i.get("node"): i for i in r.iter(q(NS_ITEMS, "item"))}
        mine, boss_nodes = nodes(c), nodes(boss)
        assert set(mine) == {"ping"}
        assert {NS_ADMIN + "#" + n for n in ADMIN_NODES} | {"ping"} == set(boss_nodes)
        assert boss_nodes[NS_ADMIN + "#add-user"].get("jid") == "localhost"
        assert boss_nodes[NS_ADMIN + "#add-user"].get("name") == "Add a User"

        r = boss.iq("<query xmlns='%s' node='%s#add-user'/>" % (NS_INFO, NS_ADMIN), to="localhost")
        ident = r.find(".//" + q(NS_INFO, "identity"))
        assert (ident.get("category"), ident.get("type")) == ("automation", "command-node")
        feats = {f.get("var") for f in r.iter(q(NS_INFO, "feature"))}
        assert {NS_CMD, NS_DATA} <= feats
        r = c.iq("<query xmlns='%s' node='%s#add-user'/>" % (NS_INFO, NS_ADMIN), to="localhost")
        assert error_condition(r) == ("cancel", "item-not-found")


def test_non_admins_are_forbidden(server):
    """XEP-0133 §5 (security): only administrators may run the commands;
    others get <forbidden/> whatever the command or stage."""
    user = account(server)
    with raw_login(server, user) as c:
        for name in sorted(ADMIN_NODES):
            r = command(c, NS_ADMIN + "#" + name)
            assert error_condition(r) == ("auth", "forbidden"), (name, tostr(r))
        r = command(c, "http://example.org/no-such-command")
        assert error_condition(r) == ("cancel", "item-not-found")
        r = command(c, "ping")
        assert cmd_el(r).get("status") == "completed"
        assert notes(r) == [("info", "Pong")]


def test_service_admin_rule_lets_others_administer(server):
    """The access rule "service_admin" (docs/administration.md) names who
    may run the XEP-0133 set besides the administrators."""
    with raw_login(server, Account("helper", "helper-pw")) as c:
        r = run_admin(c, "get-online-users-num")
        assert cmd_el(r).get("status") == "completed", tostr(r)
        assert int(values(r, "onlineusersnum")[0]) >= 1


# ---- XEP-0050 §3/§4: runs, actions, errors --------------------------------------------

def test_protocol_errors_and_cancel(server):
    """XEP-0050 §4.4 errors: an unknown action is <bad-request/><bad-action/>,
    an action the stage did not offer too; an unknown sessionid or one of
    another requester <bad-request/><bad-sessionid/>; a form that is not a
    submission <bad-request/><bad-payload/>. §3.4.2: cancel ends the run
    with status "canceled", after which its sessionid is unknown."""
    with raw_login(server, BOSS) as boss, raw_login(server, BOSS, resource="other") as other:
        node = NS_ADMIN + "#add-user"
        r = command(boss, node, action="dance")
        assert error_condition(r) == ("modify", "bad-request") and spec_condition(r) == ["bad-action"]
        first = command(boss, node)
        el = cmd_el(first)
        sid = el.get("sessionid")
        assert el.get("status") == "executing"
        acts = el.find(q(NS_CMD, "actions"))
        assert acts.get("execute") == "complete"
        assert [a.tag for a in acts] == [q(NS_CMD, "complete")]
        x = el.find(q(NS_DATA, "x"))
        assert x.get("type") == "form"
        assert {f.get("var") for f in x.findall(q(NS_DATA, "field"))} >= {
            "FORM_TYPE", "accountjid", "password", "password-verify"}

        r = command(boss, node, action="next", sid=sid)
        assert spec_condition(r) == ["bad-action"]
        r = command(boss, node, sid="0123456789abcdef")
        assert error_condition(r) == ("modify", "bad-request") and spec_condition(r) == ["bad-sessionid"]
        r = command(other, node, sid=sid)  # the same account, another resource
        assert spec_condition(r) == ["bad-sessionid"]
        r = command(boss, node, sid=sid, form="<x xmlns='%s' type='result'/>" % NS_DATA)
        assert spec_condition(r) == ["bad-payload"]

        r = command(boss, node, action="cancel", sid=sid)
        assert r.get("type") == "result"
        assert cmd_el(r).get("status") == "canceled"
        r = command(boss, node, sid=sid, form=submit(accountjid="x@localhost", password="p"))
        assert spec_condition(r) == ["bad-sessionid"]


def test_sessions_per_user_are_limited(server):
    """A limit on open runs per account (max_sessions_per_user: 3 here):
    one more is <resource-constraint/> (type wait); ending one frees a
    place."""
    with raw_login(server, BOSS) as boss:
        sids = [cmd_el(command(boss, NS_ADMIN + "#announce")).get("sessionid") for _ in range(3)]
        r = command(boss, NS_ADMIN + "#announce")
        assert error_condition(r) == ("wait", "resource-constraint")
        command(boss, NS_ADMIN + "#announce", action="cancel", sid=sids[0])
        r = command(boss, NS_ADMIN + "#announce")
        assert cmd_el(r).get("status") == "executing"
    # the requester's stream ended: its runs are gone
    with raw_login(server, BOSS) as boss:
        for _ in range(3):
            assert cmd_el(command(boss, NS_ADMIN + "#announce")).get("status") == "executing"


def test_an_idle_run_expires(server_factory):
    """XEP-0050 §4.4: a run idle for the session timeout expires; its next
    request gets <not-allowed/><session-expired/>."""
    srv = server_factory({"admins": ["boss@localhost"],
                          "modules": modules(adhoc={"session_timeout": "1s"})})
    srv.adduser("boss@localhost", "boss-pw")
    with raw_login(srv, BOSS) as boss:
        sid = cmd_el(command(boss, NS_ADMIN + "#add-user")).get("sessionid")
        time.sleep(scaled(1.6))
        r = command(boss, NS_ADMIN + "#add-user", sid=sid,
                    form=submit(accountjid="late@localhost", password="x", password_verify="x"))
        assert error_condition(r) == ("cancel", "not-allowed"), tostr(r)
        assert spec_condition(r) == ["session-expired"]


# ---- XEP-0133: the administration set ---------------------------------------------------

def test_add_change_password_and_delete_user_with_slixmpp(server):
    """XEP-0133 §4.1 add-user, §4.7 change-user-password, §4.2 delete-user,
    run through slixmpp's XEP-0050 plugin as a client would: the account
    appears, its password changes (its sessions end with <reset/>), and it
    is deleted (its sessions end with <not-authorized/>)."""
    user = unique_user("made")
    jid = user + "@localhost"

    async def scenario():
        c = await connect(server, BOSS, plugins=("xep_0004", "xep_0030", "xep_0050"))
        adhoc = c["xep_0050"]

        async def run_cmd(name, **fields):
            first = await adhoc.send_command("localhost", NS_ADMIN + "#" + name)
            cmd = first["command"]
            assert cmd["status"] == "executing"
            form = c["xep_0004"].make_form(ftype="submit")
            form.add_field(var="FORM_TYPE", ftype="hidden", value=NS_ADMIN)
            for var, val in fields.items():
                form.add_field(var="password-verify" if var == "password_verify" else var,
                               value=val)
            return await adhoc.send_command("localhost", NS_ADMIN + "#" + name,
                                            sessionid=cmd["sessionid"], action="complete",
                                            payload=form)

        done = await run_cmd("add-user", accountjid=jid, password="first-pw",
                             password_verify="first-pw")
        assert done["command"]["status"] == "completed"
        assert done["command"]["notes"] == [("info", "Account %s created" % jid)]
        try:
            await run_cmd("add-user", accountjid=jid, password="x", password_verify="x")
            raise AssertionError("a second add-user succeeded")
        except Exception as e:  # slixmpp raises IqError
            assert getattr(e, "condition", None) == "conflict", e
        try:
            await run_cmd("add-user", accountjid="y@elsewhere.example", password="x",
                          password_verify="x")
            raise AssertionError("add-user on another host succeeded")
        except Exception as e:
            assert getattr(e, "condition", None) == "bad-request", e
        await c.stop()

    run(scenario())
    a = Account(user, "first-pw")
    with raw_login(server, a) as victim:
        async def change():
            c = await connect(server, BOSS, plugins=("xep_0004", "xep_0030", "xep_0050"))
            first = await c["xep_0050"].send_command("localhost", NS_ADMIN + "#change-user-password")
            form = c["xep_0004"].make_form(ftype="submit")
            form.add_field(var="accountjid", value=jid)
            form.add_field(var="password", value="second-pw")
            r = await c["xep_0050"].send_command("localhost", NS_ADMIN + "#change-user-password",
                                                 sessionid=first["command"]["sessionid"],
                                                 payload=form)
            assert r["command"]["status"] == "completed"
            await c.stop()
        run(change())
        ended_with(victim, "reset")
    with raw_login(server, Account(user, "second-pw")) as victim, raw_login(server, BOSS) as boss:
        r = run_admin(boss, "delete-user", accountjids=[jid, "nobody-here@localhost"])
        assert cmd_el(r).get("status") == "completed", tostr(r)
        assert ("info", "1 of 2 account(s) deleted") in notes(r)
        assert ("warn", "Not deleted: nobody-here (no such account)") in notes(r)
        ended_with(victim, "not-authorized")
    with pytest.raises(XMPPTestError):
        PoliteClient(server.port).login(user, "second-pw")


def test_add_user_form_errors(server):
    """XEP-0133 §4.1: the passwords must match; a JID that is no account of
    this host is refused (<bad-request/>); a missing form too."""
    with raw_login(server, BOSS) as boss:
        node = NS_ADMIN + "#add-user"
        for fields, text in (
                (dict(accountjid="a1@localhost", password="x", password_verify="y"),
                 "the passwords do not match"),
                (dict(accountjid="localhost", password="x", password_verify="x"),
                 "accountjid: localhost is not an account's JID"),
                (dict(accountjid=["a@localhost", "b@localhost"], password="x"),
                 "accountjid: expected one account JID")):
            sid = cmd_el(command(boss, node)).get("sessionid")
            r = command(boss, node, sid=sid, form=submit(**fields))
            assert error_condition(r) == ("modify", "bad-request"), tostr(r)
            assert r.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}text").text == text
        sid = cmd_el(command(boss, node)).get("sessionid")
        r = command(boss, node, sid=sid)
        assert error_condition(r) == ("modify", "bad-request")


def test_counts_lists_roster_and_end_session(server):
    """XEP-0133 §4.15/§4.17/§4.18 counts, §4.20/§4.22/§4.23 lists (bare
    JIDs, max_items), §4.9 get-user-roster (the roster inside the result
    form), §4.5 end-user-session (a full JID ends one session, a bare JID
    all of them)."""
    a, b = account(server), account(server)
    with raw_login(server, BOSS) as boss, \
            raw_login(server, a, resource="r1", presence=True) as a1, \
            raw_login(server, a, resource="r2") as a2, \
            raw_login(server, b, presence=True) as b1:
        a1.iq("<query xmlns='%s'><item jid='%s' name='Bee'/></query>" % (NS_ROSTER, b.jid),
              type_="set")
        online = int(values(run_admin(boss, "get-online-users-num"), "onlineusersnum")[0])
        active = int(values(run_admin(boss, "get-active-users-num"), "activeusersnum")[0])
        registered = int(values(run_admin(boss, "get-registered-users-num"),
                                "registeredusersnum")[0])
        assert online >= 3 and active >= 2 and registered >= online
        lst = values(run_admin(boss, "get-online-users-list", max_items="none"), "onlineuserjids")
        assert {a.jid, b.jid, "boss@localhost"} <= set(lst) and len(lst) == len(set(lst)) == online
        assert lst == sorted(lst)
        act = values(run_admin(boss, "get-active-users", max_items="none"), "activeuserjids")
        assert {a.jid, b.jid} <= set(act) and "boss@localhost" not in act
        reg = values(run_admin(boss, "get-registered-users-list", max_items="25"),
                     "registereduserjids")
        assert len(reg) == min(25, registered)
        r = run_admin(boss, "get-registered-users-list", max_items="many")
        assert error_condition(r) == ("modify", "bad-request")

        r = run_admin(boss, "get-user-roster", accountjid=a.jid)
        assert values(r, "accountjid") == [a.jid]
        items = r.findall(".//%s/%s" % (q(NS_ROSTER, "query"), q(NS_ROSTER, "item")))
        assert [(i.get("jid"), i.get("name"), i.get("subscription")) for i in items] == [
            (b.jid, "Bee", "none")]
        r = run_admin(boss, "get-user-roster", accountjid="ghost@localhost")
        assert error_condition(r) == ("cancel", "item-not-found")

        r = run_admin(boss, "end-user-session", accountjids=a1.jid)
        assert notes(r) == [("info", "1 session(s) ended")]
        ended_with(a1, "policy-violation")
        r = run_admin(boss, "end-user-session", accountjids=[a.jid, b.jid])
        assert notes(r) == [("info", "2 session(s) ended")]
        ended_with(a2, "policy-violation")
        ended_with(b1, "policy-violation")


def test_announce_reaches_every_online_session(server):
    """XEP-0133 §4.25: the announcement goes to every session of the host
    as a headline from the host, with its subject; an empty one is
    refused."""
    a, b = account(server), account(server)
    with raw_login(server, BOSS) as boss, raw_login(server, a, presence=True) as ca, \
            raw_login(server, b) as cb:
        r = run_admin(boss, "announce", subject="Maintenance",
                      announcement=["Down at 10:00", "for an hour"])
        assert cmd_el(r).get("status") == "completed"
        assert notes(r)[0][1].startswith("Announcement sent to ")
        for c in (ca, cb):  # (boss's arrived while it waited for the result)
            m = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "headline")
            assert m.get("from") == "localhost"
            assert m.findtext(q(NS_CLIENT, "subject")) == "Maintenance"
            assert m.findtext(q(NS_CLIENT, "body")) == "Down at 10:00\nfor an hour"
        r = run_admin(boss, "announce", announcement="")
        assert error_condition(r) == ("modify", "bad-request")


def test_reloads_keep_the_commands(server):
    """Reloading mod_adhoc (a new instance starts with no commands) and
    mod_admin_adhoc: the admin set is offered again (the "adhoc-ready"
    event), and a run open across the reload of its command's module
    ends (its next request: <bad-request/><bad-sessionid/>)."""
    with raw_login(server, BOSS) as boss:
        sid = cmd_el(command(boss, NS_ADMIN + "#announce")).get("sessionid")
        for mod in ("admin_adhoc", "adhoc"):
            out = server.ctl("module", "reload", mod, "localhost")
            assert out.returncode == 0, out.stdout + out.stderr
            r = boss.iq("<query xmlns='%s' node='%s'/>" % (NS_ITEMS, NS_CMD), to="localhost")
            got = {i.get("node") for i in r.iter(q(NS_ITEMS, "item"))}
            assert NS_ADMIN + "#add-user" in got, (mod, tostr(r))
        r = command(boss, NS_ADMIN + "#announce", sid=sid, form=submit(announcement="x"))
        assert spec_condition(r) == ["bad-sessionid"]
        r = run_admin(boss, "get-online-users-num")
        assert cmd_el(r).get("status") == "completed"


def test_xmppctl_features_lists_xep0050_and_xep0133(server):
    """`xmppctl features`: mod_adhoc provides XEP-0050, mod_admin_adhoc
    XEP-0133."""
    j = json.loads(server.ctl("-j", "features").stdout)
    specs = {s["spec"]: s["by"] for s in j["hosts"][0]["specs"]}
    assert specs["XEP-0050"] == ["adhoc"] and specs["XEP-0133"] == ["admin_adhoc"]
