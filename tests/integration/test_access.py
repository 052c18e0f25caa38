"""Administrators and access rules (api/xmppd/access.h, docs/administration.md):
`xmppctl check` validates the rules; the kernel applies "send" (RFC 6120
§8.3.3.9 <not-allowed/> for a denied address) and "s2s" (RFC 6120
§4.9.3.14 <policy-violation/> for a denied peer, <not-allowed/> for
stanzas to it); modules apply "register" (XEP-0077 §3.1 <not-allowed/>),
"create_room" (XEP-0045 §10.1.1 <not-allowed/>) and "upload" (XEP-0363
§4.1 <forbidden/>); a host's rule replaces the server-wide one; groups
and admins; a reload applies new rules at once."""

import json
import secrets

import pytest

from conftest import Account, Server, _finish, unique_user
from muc_util import room_jid
from s2s_pair import make_pair, pair_accounts, stop_pair
from test_im_modules import open_tls_stream, register_set
from xmpptest import NS_CLIENT, PoliteClient, error_condition, q, raw_login, scaled, tostr

NS_MUC = "http://jabber.org/protocol/muc"
NS_UP = "urn:xmpp:http:upload:0"


def check(srv):
    r = srv.ctl("check")
    return r.returncode, r.stdout + r.stderr


def test_xmppctl_check_reports_each_bad_rule_with_its_line(server_factory):
    srv = server_factory({
        "admins": ["root@localhost", "not a jid@@"],
        "groups": {"staff": ["a@localhost"]},
        "access": {
            "regster": [{"allow": "all"}],
            "send": [{"allow": {"ip": "10.0.0.0/33"}}, {"deny": {"group": "nobody"}},
                     {"permit": "all"}, {"allow": "everyone"}, {"deny": {"domian": "x.org"}}],
            "hello.greet": [{"allow": "local"}],
        },
        "hosts": {"localhost": {"access": {"s2s": {"deny": "all"}}}},
    }, start=False)
    rc, out = check(srv)
    assert rc == 1
    text = srv.config_path.read_text().splitlines()

    def line_of(needle):
        return next(i + 1 for i, line in enumerate(text) if needle in line)

    assert "admins.1: expected an account's bare JID" in out
    assert 'access.regster: unknown action "regster"; did you mean "register"?' in out
    assert "access.send.0.allow.ip: expected an IP address or CIDR" in out
    assert ':%d: access.send.0.allow.ip' % line_of("10.0.0.0/33") in out
    assert 'access.send.1.deny.group: no group "nobody"' in out
    assert "access.send.2: expected {\"allow\": MATCH} or {\"deny\": MATCH}" in out
    assert 'access.send.3.allow: unknown keyword "everyone"' in out
    assert 'unknown condition "domian"; did you mean "domain"?' in out
    assert "hosts.localhost.access.s2s: expected a list" in out
    assert "hello.greet" not in out  # a module's own action is accepted
    # the server refuses to start with them
    srv.config["access"] = {"send": [{"allow": "all"}]}
    srv.config["admins"] = ["root@localhost"]
    srv.config["hosts"] = {"localhost": {"admins": "boss@localhost"}}
    srv.write_config()
    rc, out = check(srv)  # (warnings about modules this test leaves out may follow)
    assert rc == 0 and out.startswith("%s: OK\n" % srv.config_path), out


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir):
    """A closed company server: localhost talks to itself and to the two
    partners only; registration only for names of the form staff-* from
    loopback; rooms only by the group "creators"."""
    srv = Server(tmp_path_factory.mktemp("access"), cert_dir, {
        "admins": ["boss@localhost"],
        "groups": {"creators": []},
        "access": {
            "send": [{"allow": {"to_local": True}},
                     {"allow": {"to_domain": ["partner-a.example", "*.partner-b.example"]}},
                     {"deny": "all"}],
            "register": [{"deny": {"jid": "root@localhost"}},
                         {"allow": {"ip": "127.0.0.0/8"}}],
            "create_room": [{"allow": "admin"}, {"allow": {"group": "creators"}},
                            {"deny": "all"}],
            "upload": [{"deny": {"jid": "noupload@localhost"}}],
        },
        "modules": {"disco": {}, "presence": {}, "roster": {},
                    "register": {"registration_throttle": 1000},
                    "muc": {"create_rooms": "access"},
                    "upload": {}},
    }, name="access")
    srv.start()
    yield srv
    _finish(srv)


def account(srv, user=None):
    a = Account(user or unique_user(), secrets.token_urlsafe(12))
    srv.adduser(a.jid, a.password)
    return a


def test_send_rule_closes_the_server_to_all_but_partners(server):
    """The access rule "send": a denied address gets <not-allowed/> (RFC
    6120 §8.3.3.9) before routing; local and partner addresses pass (the
    partners have no route here, so they get remote-server-not-found)."""
    a, b = account(server), account(server)
    with raw_login(server, a, presence=True) as ca, raw_login(server, b, presence=True) as cb:
        ca.send("<message to='%s' id='m1' type='chat'><body>hi</body></message>" % b.jid)
        got = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == "m1")
        assert got.findtext(q(NS_CLIENT, "body")) == "hi"
        for to, cond in (("x@elsewhere.example", "not-allowed"),
                         ("x@partner-a.example", "remote-server-not-found"),
                         ("x@chat.partner-b.example", "remote-server-not-found"),
                         ("partner-b.example", "not-allowed")):
            iq = ca.iq("<query xmlns='jabber:iq:version'/>", to=to)
            assert error_condition(iq)[1] == cond, (to, tostr(iq))
        ca.send("<message to='x@elsewhere.example' id='m2'><body>leak</body></message>")
        err = ca.wait_for(lambda e: e.get("id") == "m2")
        assert error_condition(err) == ("cancel", "not-allowed")
        # presence to the account itself (no 'to') is never judged
        ca.send_presence()


def test_register_rule_decides_before_allow_registration(server):
    """XEP-0077 §3.1: registration is offered because a rule exists
    (allow_registration is false); the rule's denial is <not-allowed/>."""
    c, features = open_tls_stream(server)
    with c:
        assert features.find(q("http://jabber.org/features/iq-register", "register")) is not None
        assert error_condition(register_set(c, "root", "pw-1")) == ("cancel", "not-allowed")
        user = unique_user("reg")
        assert register_set(c, user, "pw-2").get("type") == "result"
    with PoliteClient(server.port) as c2:
        assert c2.login(user, "pw-2").startswith(user + "@localhost/")


def join(c, room, nick):
    c.send("<presence to='%s/%s'><x xmlns='%s'/></presence>" % (room, nick, NS_MUC))
    return c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and
                      e.get("from", "").startswith(room))


def test_create_room_rule_admins_and_groups(server):
    """XEP-0045 §10.1.1 with create_rooms "access": the rule
    "create_room" allows admins and the group "creators"; others get
    <not-allowed/>. A reload that adds a member applies at once."""
    boss = account(server, "boss")
    joe = account(server)
    with raw_login(server, joe) as cj:
        p = join(cj, room_jid(), "joe")
        assert p.get("type") == "error" and error_condition(p)[1] == "not-allowed"
    with raw_login(server, boss) as cb:
        p = join(cb, room_jid(), "boss")
        assert p.get("type") != "error", tostr(p)
    server.config["groups"]["creators"] = [joe.jid]
    server.write_config()
    assert server.ctl("reload").returncode == 0
    with raw_login(server, joe) as cj:
        p = join(cj, room_jid(), "joe")
        assert p.get("type") != "error", tostr(p)


def test_upload_rule_denies_one_account(server):
    """XEP-0363 §4.1: a user the rule "upload" denies gets <forbidden/>;
    the module's default (the host's accounts) holds for the rest."""
    no = account(server, "noupload")
    yes = account(server)
    req = "<request xmlns='%s' filename='a.txt' size='3'/>" % NS_UP
    with raw_login(server, no) as c:
        assert error_condition(c.iq(req, to="upload.localhost")) == ("auth", "forbidden")
    with raw_login(server, yes) as c:
        r = c.iq(req, to="upload.localhost")
        assert r.get("type") == "error" or r.find(q(NS_UP, "slot")) is not None
        # no http listener here: the slot cannot be built, but it was allowed
        assert error_condition(r) != ("auth", "forbidden")


def test_host_rule_replaces_the_server_wide_one(server_factory):
    srv = server_factory({
        "access": {"send": [{"deny": "all"}]},
        "hosts": {"localhost": {"access": {"send": [{"allow": "local"}]}}},
    })
    a, b = account(srv), account(srv)
    with raw_login(srv, a, presence=True) as ca, raw_login(srv, b, presence=True) as cb:
        ca.send("<message to='%s' type='chat'><body>ok</body></message>" % b.jid)
        assert cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message")) is not None


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("access-s2s")
    a_srv, b_srv = make_pair(base)
    yield a_srv, b_srv
    stop_pair((a_srv, b_srv))


def test_s2s_rule_denies_a_domain_both_ways(pair):
    """The access rule "s2s" on A denies b.example: A's users get
    <not-allowed/> for stanzas to it; B's incoming stream is ended with
    <policy-violation/> (RFC 6120 §4.9.3.14), so B's user gets an error and
    A's user nothing."""
    a_srv, b_srv = pair
    a_srv.config["access"] = {"s2s": [{"deny": {"domain": "b.example"}}]}
    a_srv.write_config()
    assert a_srv.ctl("reload").returncode == 0
    a, b = pair_accounts(a_srv, b_srv)
    with PoliteClient(a_srv.port, domain=a_srv.domain) as ca, \
            PoliteClient(b_srv.port, domain=b_srv.domain) as cb:
        ca.login(a.user, a.password)
        cb.login(b.user, b.password)
        ca.send("<message to='%s' id='out1'><body>x</body></message>" % b.jid)
        err = ca.wait_for(lambda e: e.get("id") == "out1")
        assert error_condition(err) == ("cancel", "not-allowed")
        cb.send("<message to='%s' id='in1'><body>y</body></message>" % a.jid)
        err = cb.wait_for(lambda e: e.get("id") == "in1", timeout=scaled(20))
        assert err.get("type") == "error"
        ca.quiet(scaled(1), lambda e: e.tag == q(NS_CLIENT, "message"))
    assert "policy-violation" in a_srv.read_log() or "denied by the access rule" in a_srv.read_log()
