"""The IM modules of a XEP-0479 server: offline, disco, caps, register,
vcard, private, ping, version, time, last.

XEP-0160 (offline messages, XEP-0203 delay), XEP-0030/XEP-0128/XEP-0157
(service discovery, contact addresses), XEP-0115 (entity capabilities),
XEP-0077 (in-band registration), XEP-0054 (vcard-temp), XEP-0049 (private
XML storage), XEP-0199 (ping), XEP-0092 (software version), XEP-0202
(entity time), XEP-0012 (last activity).

The module-scoped server loads every module; tests that need another
configuration (registration off, a module left out, keepalive) start their
own with server_factory.
"""

import base64
import hashlib
import re
import sqlite3
import time

import pytest

from xmpptest import (NS_CLIENT, NS_STREAM, PoliteClient, RawClient, error_condition, local, new_id, q,
                      raw_login, scaled, tostr, xml_escape)

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DATA = "jabber:x:data"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_DELAY = "urn:xmpp:delay"
NS_REGISTER = "jabber:iq:register"
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"
NS_VCARD = "vcard-temp"
NS_PRIVATE = "jabber:iq:private"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
NS_TIME = "urn:xmpp:time"
NS_LAST = "jabber:iq:last"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

MAX_OFFLINE = 3
CONTACTS = {
    "admin-addresses": ["mailto:admin@example.org", "xmpp:admin@localhost"],
    "abuse-addresses": ["mailto:abuse@example.org"],
}
ITEMS = ["conference.localhost", {"jid": "upload.localhost", "name": "File upload"}]

# Features each module registers on the host.
MODULE_FEATURES = {
    "disco": {NS_DISCO_INFO, NS_DISCO_ITEMS},
    "offline": {"msgoffline"},
    "caps": {NS_CAPS},
    "register": {NS_REGISTER},
    "vcard": {NS_VCARD},
    "private": {NS_PRIVATE},
    "ping": {NS_PING},
    "version": {NS_VERSION},
    "time": {NS_TIME},
    "last": {NS_LAST},
}


def all_modules(**over):
    mods = {
        "offline": {"max_messages": MAX_OFFLINE},
        "disco": {"contact_info": CONTACTS, "items": ITEMS},
        "caps": True,
        "register": {"allow_registration": True, "registration_throttle": 1000},
        "vcard": {"max_size": "1k"},
        "private": True,
        "ping": True,
        "version": True,
        "time": True,
        "last": True,
    }
    mods.update(over)
    return {"modules": mods}


@pytest.fixture(scope="module")
def config_overrides():
    return all_modules()


# ---- helpers -------------------------------------------------------------------

def sync(c):
    """An IQ round trip: the server has handled everything c sent before."""
    r = c.iq("<ping xmlns='%s'/>" % NS_PING, to="localhost")
    assert r.get("type") == "result", tostr(r)


def child(el, ns, name):
    found = el.find(q(ns, name))
    assert found is not None, "no <%s xmlns='%s'/> in %s" % (name, ns, tostr(el))
    return found


def is_message(el):
    return el.tag == q(NS_CLIENT, "message")


def messages(c, n, timeout=None):
    out = []
    deadline = time.monotonic() + (timeout or scaled(5))
    while len(out) < n:
        out.append(c.wait_for(is_message, max(0.1, deadline - time.monotonic())))
    return out


def send_chat(c, to, body, type_="chat"):
    c.send("<message to='%s' type='%s' id='%s'><body>%s</body></message>"
           % (to, type_, new_id("m"), xml_escape(body)))


def body_of(m):
    b = m.find(q(NS_CLIENT, "body"))
    return b.text if b is not None else None


def disco_info(c, to="localhost", node=None):
    attr = " node='%s'" % node if node else ""
    r = c.iq("<query xmlns='%s'%s/>" % (NS_DISCO_INFO, attr), to=to)
    assert r.get("type") == "result", tostr(r)
    return child(r, NS_DISCO_INFO, "query")


def features_of(query):
    return {f.get("var") for f in query.findall(q(NS_DISCO_INFO, "feature"))}


def caps_ver(query):
    """XEP-0115 §5.1 verification string of a disco#info <query/>."""
    ids = []
    for i in query.findall(q(NS_DISCO_INFO, "identity")):
        ids.append((i.get("category", ""), i.get("type", ""),
                    i.get("{http://www.w3.org/XML/1998/namespace}lang", ""), i.get("name", "")))
    s = "".join("%s/%s/%s/%s<" % i for i in sorted(ids))
    s += "".join("%s<" % f for f in sorted(features_of(query)))
    forms = []
    for x in query.findall(q(NS_DATA, "x")):
        fields = {}
        for f in x.findall(q(NS_DATA, "field")):
            fields[f.get("var")] = sorted(v.text or "" for v in f.findall(q(NS_DATA, "value")))
        if "FORM_TYPE" in fields:
            forms.append(fields)
    for form in sorted(forms, key=lambda f: f["FORM_TYPE"][0]):
        s += form["FORM_TYPE"][0] + "<"
        for var in sorted(k for k in form if k != "FORM_TYPE"):
            s += var + "<" + "".join(v + "<" for v in form[var])
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def open_tls_stream(server):
    """A stream after STARTTLS, before authentication; returns (client,
    features element)."""
    c = PoliteClient(server.port)
    c.open_stream()
    c.starttls()
    f = c.open_stream()
    return c, f["element"]


# ---- XEP-0160 offline messages ------------------------------------------------------

def test_xep0160_3_offline_messages_kept_across_restart_in_order_with_delay(server, accounts):
    """XEP-0160 §3 / XEP-0203: chat and normal messages to an account with
    no available resource are stored (surviving a restart), delivered in
    order on initial presence with <delay from=HOST stamp=UTC/>, then
    deleted; headlines are not stored."""
    a, b = accounts(2)
    with raw_login(server, a) as ca:
        before = time.time()
        send_chat(ca, b.jid, "one")
        send_chat(ca, b.jid, "two", type_="normal")
        send_chat(ca, b.jid + "/gone", "three")  # full JID of no session: as bare
        send_chat(ca, b.jid, "news", type_="headline")
        sync(ca)
        assert ca.quiet(0.3, pred=is_message) == []
    server.restart()
    with raw_login(server, b, presence=True) as cb:
        got = messages(cb, 3)
        assert [body_of(m) for m in got] == ["one", "two", "three"]
        for m in got:
            assert m.get("from").startswith(a.jid + "/")
            d = child(m, NS_DELAY, "delay")
            assert d.get("from") == "localhost"
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", d.get("stamp"))
            stamp = time.mktime(time.strptime(d.get("stamp")[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            assert before - 5 <= stamp <= time.time() + 5
        assert cb.quiet(0.5, pred=is_message) == []
    # Delivered once: gone from storage.
    with raw_login(server, b, presence=True) as cb:
        assert cb.quiet(1.0, pred=is_message) == []


def test_xep0160_3_offline_quota_full_bounced_service_unavailable(server, accounts):
    """XEP-0160 §3 (storage limits): beyond max_messages the sender gets
    <service-unavailable/> with a text; what was stored is delivered."""
    a, b = accounts(2)
    with raw_login(server, a) as ca:
        for i in range(MAX_OFFLINE):
            send_chat(ca, b.jid, "m%d" % i)
        sync(ca)
        assert ca.quiet(0.3, pred=is_message) == []
        send_chat(ca, b.jid, "overflow")
        err = ca.wait_for(is_message)
        assert err.get("type") == "error"
        assert err.get("from") == b.jid
        assert error_condition(err) == ("cancel", "service-unavailable")
        text = err.find("%s/%s" % (q(NS_CLIENT, "error"), q(NS_STANZAS, "text")))
        assert text is not None and "full" in text.text
    with raw_login(server, b, presence=True) as cb:
        assert [body_of(m) for m in messages(cb, MAX_OFFLINE)] == ["m%d" % i for i in range(MAX_OFFLINE)]
        assert cb.quiet(0.5, pred=is_message) == []


def test_xep0160_message_without_body_not_stored(server, accounts):
    """XEP-0160: only messages with a body are stored; a bodiless chat
    message to an offline account is answered per RFC 6121 §8.5.2.2.1."""
    a, b = accounts(2)
    with raw_login(server, a) as ca:
        ca.send("<message to='%s' type='chat' id='x1'><active xmlns='http://jabber.org/protocol/chatstates'/></message>" % b.jid)
        err = ca.wait_for(is_message)
        assert error_condition(err)[1] == "service-unavailable"
    with raw_login(server, b, presence=True) as cb:
        assert cb.quiet(0.5, pred=is_message) == []


def test_xep0160_nothing_stored_for_unknown_account(server, accounts):
    """RFC 6121 §8.5.2.2.1 with XEP-0160: a message to an account that does
    not exist is answered <service-unavailable/>, not stored."""
    (a,) = accounts(1)
    with raw_login(server, a) as ca:
        send_chat(ca, "nobody%s@localhost" % new_id(""), "lost?")
        err = ca.wait_for(is_message)
        assert err.get("type") == "error"
        assert error_condition(err) == ("cancel", "service-unavailable")


# ---- XEP-0030 / XEP-0128 / XEP-0157 service discovery --------------------------------

def test_xep0030_3_1_host_info_lists_every_enabled_module(server, accounts):
    """XEP-0030 §3.1: the host's disco#info has the server/im identity and
    the features of every loaded module."""
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        info = disco_info(c)
        ids = [(i.get("category"), i.get("type")) for i in info.findall(q(NS_DISCO_INFO, "identity"))]
        assert ("server", "im") in ids
        want = set().union(*MODULE_FEATURES.values())
        assert want <= features_of(info), want - features_of(info)


def test_xep0030_3_1_features_only_of_loaded_modules(server_factory, accounts):
    """XEP-0030 §3.1: a module left out of the configuration is not
    announced; the list is exactly the loaded modules' features."""
    srv = server_factory({"modules": {"disco": True, "ping": True, "time": True}})
    (a,) = accounts(1, srv=srv)
    with raw_login(srv, a) as c:
        feats = features_of(disco_info(c))
        assert feats == MODULE_FEATURES["disco"] | MODULE_FEATURES["ping"] | MODULE_FEATURES["time"]
        assert NS_VCARD not in feats and "msgoffline" not in feats
        r = c.iq("<vCard xmlns='%s'/>" % NS_VCARD)
        assert error_condition(r) == ("cancel", "service-unavailable")


def test_xep0157_contact_addresses_in_serverinfo_form(server, accounts):
    """XEP-0157 §2 / XEP-0128: the configured addresses appear as a
    jabber:x:data result form with FORM_TYPE serverinfo."""
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        info = disco_info(c)
        forms = info.findall(q(NS_DATA, "x"))
        assert len(forms) == 1
        x = forms[0]
        assert x.get("type") == "result"
        fields = {f.get("var"): f for f in x.findall(q(NS_DATA, "field"))}
        assert fields["FORM_TYPE"].get("type") == "hidden"
        assert [v.text for v in fields["FORM_TYPE"].findall(q(NS_DATA, "value"))] == [
            "http://jabber.org/network/serverinfo"]
        for var, values in CONTACTS.items():
            assert [v.text for v in fields[var].findall(q(NS_DATA, "value"))] == values
        assert set(fields) == {"FORM_TYPE"} | set(CONTACTS)


def test_xep0030_4_host_items_from_configuration(server, accounts):
    """XEP-0030 §4.1: disco#items of the host lists the configured items."""
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        r = c.iq("<query xmlns='%s'/>" % NS_DISCO_ITEMS, to="localhost")
        assert r.get("type") == "result", tostr(r)
        items = child(r, NS_DISCO_ITEMS, "query").findall(q(NS_DISCO_ITEMS, "item"))
        assert [(i.get("jid"), i.get("name")) for i in items] == [
            ("conference.localhost", None), ("upload.localhost", "File upload")]
        r = c.iq("<query xmlns='%s' node='nope'/>" % NS_DISCO_INFO, to="localhost")
        assert error_condition(r) == ("cancel", "item-not-found")


def test_xep0030_account_info_own_account_only(server, accounts):
    """XEP-0030 / RFC 6121 §8.5.1: disco#info of one's own bare JID is
    answered by the server (account/registered); another account's is
    refused (no subscription check yet)."""
    a, b = accounts(2)
    with raw_login(server, a) as c:
        for to in (None, a.jid):
            r = c.iq("<query xmlns='%s'/>" % NS_DISCO_INFO, to=to)
            assert r.get("type") == "result", tostr(r)
            ids = [(i.get("category"), i.get("type"))
                   for i in child(r, NS_DISCO_INFO, "query").findall(q(NS_DISCO_INFO, "identity"))]
            assert ids == [("account", "registered")]
        r = c.iq("<query xmlns='%s'/>" % NS_DISCO_INFO, to=b.jid)
        assert error_condition(r) == ("cancel", "service-unavailable")


# ---- XEP-0115 entity capabilities ------------------------------------------------------

def test_xep0115_6_3_stream_features_caps_match_disco_info(server, accounts):
    """XEP-0115 §6.3 / §5.1: the <c/> in the stream features carries the
    SHA-1 verification string of the host's disco#info (forms included),
    and disco#info to node#ver returns the same info."""
    (a,) = accounts(1)
    c = RawClient(server.port)
    try:
        c.open_stream()
        c.starttls()
        f = c.open_stream()
        assert f["element"].find(q(NS_CAPS, "c")) is None  # not before authentication
        assert c.auth_plain(a.user, a.password).ok
        f = c.open_stream()
        cel = child(f["element"], NS_CAPS, "c")
        assert cel.get("hash") == "sha-1"
        assert cel.get("node") == "https://xmppd.example/caps"
        c.bind()
        info = disco_info(c)
        assert cel.get("ver") == caps_ver(info)
        node = "%s#%s" % (cel.get("node"), cel.get("ver"))
        again = disco_info(c, node=node)
        assert again.get("node") == node
        assert features_of(again) == features_of(info)
        assert caps_ver(again) == cel.get("ver")
    finally:
        c.close()


# ---- XEP-0077 in-band registration ---------------------------------------------------------

def register_get(c):
    return c.iq("<query xmlns='%s'/>" % NS_REGISTER)


def register_set(c, user, password):
    return c.iq("<query xmlns='%s'><username>%s</username><password>%s</password></query>"
                % (NS_REGISTER, xml_escape(user), xml_escape(password)), type_="set")


def test_xep0077_3_1_register_account_then_log_in(server):
    """XEP-0077 §3.1: the stream feature, the form, account creation,
    <conflict/> for an existing account, <not-acceptable/> for an empty
    password or bad user name; the new account logs in."""
    user = "reg" + new_id("")
    c, features = open_tls_stream(server)
    with c:
        assert features.find(q(NS_REGISTER_FEATURE, "register")) is not None
        form = child(register_get(c), NS_REGISTER, "query")
        for name in ("instructions", "username", "password"):
            child(form, NS_REGISTER, name)
        assert register_set(c, user, "").get("type") == "error"
        assert error_condition(register_set(c, user, ""))[1] == "not-acceptable"
        assert error_condition(register_set(c, "bad user@x", "pw"))[1] == "not-acceptable"
        r = register_set(c, user, "s3cret-pass")
        assert r.get("type") == "result", tostr(r)
        assert error_condition(register_set(c, user, "other")) == ("cancel", "conflict")
    with RawClient(server.port) as c2:
        assert c2.login(user, "s3cret-pass").startswith(user + "@localhost/")


def test_xep0077_registration_off_by_default(server_factory):
    """XEP-0077 §3 with allow_registration false (the default): no stream
    feature, and a registration IQ before authentication ends the stream
    like any other stanza there."""
    srv = server_factory({"modules": {"register": True, "disco": True}})
    c, features = open_tls_stream(srv)
    with c:
        assert features.find(q(NS_REGISTER_FEATURE, "register")) is None
        c.send("<iq type='get' id='r1'><query xmlns='%s'/></iq>" % NS_REGISTER)
        c.expect_stream_error("not-authorized")


def test_xep0077_registration_throttled_per_address(server_factory):
    """XEP-0077 §3.1 (abuse): at most registration_throttle accounts per IP
    address per period; then <resource-constraint/>."""
    srv = server_factory({"modules": {"register": {"allow_registration": True,
                                                   "registration_throttle": 2}}})
    c, _ = open_tls_stream(srv)
    with c:
        for i in range(2):
            assert register_set(c, "t%d%s" % (i, new_id("")), "pw").get("type") == "result"
        assert error_condition(register_set(c, "t3" + new_id(""), "pw")) == ("wait", "resource-constraint")
        # A failed attempt does not count.
    c, _ = open_tls_stream(srv)
    with c:
        assert error_condition(register_set(c, "t4" + new_id(""), "pw"))[1] == "resource-constraint"


def test_xep0077_3_3_password_change_then_log_in_again(server, accounts):
    """XEP-0077 §3.3: a logged-in account changes its password; the new one
    works and the old one no longer does."""
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        r = register_get(c)
        assert child(r, NS_REGISTER, "query").find(q(NS_REGISTER, "registered")) is not None
        assert error_condition(register_set(c, "someoneelse", "x"))[1] == "bad-request"
        r = register_set(c, a.user, "new-password-1")
        assert r.get("type") == "result", tostr(r)
    with RawClient(server.port) as c2:
        assert c2.login(a.user, "new-password-1").startswith(a.jid)
    with RawClient(server.port) as c3:
        c3.open_stream()
        c3.starttls()
        c3.open_stream()
        assert not c3.auth_plain(a.user, a.password).ok


def test_xep0077_3_2_account_removal_closes_sessions(server, accounts):
    """XEP-0077 §3.2: <remove/> is answered with a result, then every
    session of the account ends with <not-authorized/>; it can no longer
    log in."""
    (a,) = accounts(1)
    other = raw_login(server, a, resource="other")
    with raw_login(server, a, resource="main") as c, other:
        assert c.iq("<vCard xmlns='%s'><FN>A</FN></vCard>" % NS_VCARD, type_="set").get("type") == "result"
        r = c.iq("<query xmlns='%s'><remove/></query>" % NS_REGISTER, type_="set")
        assert r.get("type") == "result", tostr(r)
        c.expect_stream_error("not-authorized")
        other.expect_stream_error("not-authorized")
    # Nothing of the account is left (nor written back by its closing sessions).
    time.sleep(0.3)
    assert server.stored_stores(a.user) == []
    with RawClient(server.port) as c2:
        c2.open_stream()
        c2.starttls()
        c2.open_stream()
        assert not c2.auth_plain(a.user, a.password).ok


# ---- XEP-0054 vcard-temp ---------------------------------------------------------------------

def test_xep0054_vcard_round_trip_and_read_by_others(server, accounts):
    """XEP-0054 §3.1-3.3: set one's vCard, read it back, another account
    reads it; an account without one gives an empty <vCard/>; nobody sets
    someone else's."""
    a, b = accounts(2)
    vcard = "<vCard xmlns='%s'><FN>Alice &amp; Co</FN><NICKNAME>al</NICKNAME></vCard>" % NS_VCARD
    with raw_login(server, a) as ca:
        r = ca.iq(vcard, type_="set")
        assert r.get("type") == "result", tostr(r)
        got = child(ca.iq("<vCard xmlns='%s'/>" % NS_VCARD), NS_VCARD, "vCard")
        assert child(got, NS_VCARD, "FN").text == "Alice & Co"
    with raw_login(server, b) as cb:
        r = cb.iq("<vCard xmlns='%s'/>" % NS_VCARD, to=a.jid)
        assert r.get("from") == a.jid
        assert child(child(r, NS_VCARD, "vCard"), NS_VCARD, "NICKNAME").text == "al"
        own = child(cb.iq("<vCard xmlns='%s'/>" % NS_VCARD), NS_VCARD, "vCard")
        assert len(own) == 0
        r = cb.iq(vcard, type_="set", to=a.jid)
        assert error_condition(r) == ("auth", "forbidden")
        r = cb.iq("<vCard xmlns='%s'/>" % NS_VCARD, to="nobody%s@localhost" % new_id(""))
        assert error_condition(r)[1] == "service-unavailable"


def test_xep0054_vcard_over_max_size_refused(server, accounts):
    """XEP-0054 §3.2 with a size limit (max_size 1k here): a larger vCard
    is refused with <not-acceptable/> and the stored one is kept."""
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        assert c.iq("<vCard xmlns='%s'><FN>small</FN></vCard>" % NS_VCARD, type_="set").get("type") == "result"
        big = "<vCard xmlns='%s'><DESC>%s</DESC></vCard>" % (NS_VCARD, "x" * 2000)
        assert error_condition(c.iq(big, type_="set")) == ("modify", "not-acceptable")
        got = child(c.iq("<vCard xmlns='%s'/>" % NS_VCARD), NS_VCARD, "vCard")
        assert child(got, NS_VCARD, "FN").text == "small"


# ---- XEP-0049 private XML storage --------------------------------------------------------------

def test_xep0049_private_storage_round_trip(server, accounts):
    """XEP-0049 §2-3: store and retrieve a fragment (bookmarks); an empty
    element when none; reserved namespaces refused; own account only."""
    a, b = accounts(2)
    bm = ("<storage xmlns='storage:bookmarks'><conference jid='room@conference.localhost' "
          "autojoin='true' name='Room'><nick>al</nick></conference></storage>")
    with raw_login(server, a) as c:
        empty = c.iq("<query xmlns='%s'><storage xmlns='storage:bookmarks'/></query>" % NS_PRIVATE)
        st = child(child(empty, NS_PRIVATE, "query"), "storage:bookmarks", "storage")
        assert len(st) == 0
        r = c.iq("<query xmlns='%s'>%s</query>" % (NS_PRIVATE, bm), type_="set")
        assert r.get("type") == "result", tostr(r)
        r = c.iq("<query xmlns='%s'><storage xmlns='storage:bookmarks'/></query>" % NS_PRIVATE)
        conf = child(child(child(r, NS_PRIVATE, "query"), "storage:bookmarks", "storage"),
                     "storage:bookmarks", "conference")
        assert conf.get("jid") == "room@conference.localhost"
        assert child(conf, "storage:bookmarks", "nick").text == "al"
        r = c.iq("<query xmlns='%s'><foo xmlns='jabber:client'/></query>" % NS_PRIVATE, type_="set")
        assert error_condition(r) == ("modify", "not-acceptable")
        r = c.iq("<query xmlns='%s'><storage xmlns='storage:bookmarks'/></query>" % NS_PRIVATE,
                 to=b.jid)
        assert error_condition(r) == ("auth", "forbidden")


# ---- XEP-0199 ping ---------------------------------------------------------------------------------

def test_xep0199_4_2_ping_answered_by_server_and_own_account(server, accounts):
    """XEP-0199 §4.2 (client-to-server ping) and §4.3: the host and one's
    own bare JID answer with a result."""
    a, b = accounts(2)
    with raw_login(server, a) as c:
        for to in ("localhost", a.jid, None):
            r = c.iq("<ping xmlns='%s'/>" % NS_PING, to=to)
            assert r.get("type") == "result", tostr(r)
        r = c.iq("<ping xmlns='%s'/>" % NS_PING, to=b.jid)
        assert error_condition(r)[1] == "service-unavailable"


def test_xep0199_4_1_idle_session_pinged_then_closed(server_factory, accounts):
    """XEP-0199 §4.1 (server-to-client ping): an idle session is pinged;
    one that answers stays, one that never does is closed with
    <connection-timeout/>."""
    srv = server_factory({"modules": {"ping": {"keepalive_interval": "1s", "ping_timeout": "1s"}}})
    a, b = accounts(2, srv=srv)
    with raw_login(srv, a) as good, raw_login(srv, b) as silent:
        ping = good.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.find(q(NS_PING, "ping")) is not None,
                             scaled(4))
        assert ping.get("type") == "get" and ping.get("from") == "localhost"
        good.send("<iq type='result' id='%s' to='localhost'/>" % ping.get("id"))
        silent.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq"), scaled(4))
        silent.expect_stream_error("connection-timeout", timeout=scaled(4))
        assert sync(good) is None  # still there


# ---- XEP-0092 / XEP-0202 / XEP-0012 ----------------------------------------------------------------

def test_xep0092_software_version(server, accounts):
    """XEP-0092 §2: name, version, os of the server."""
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        r = c.iq("<query xmlns='%s'/>" % NS_VERSION, to="localhost")
        qel = child(r, NS_VERSION, "query")
        assert child(qel, NS_VERSION, "name").text == "xmppd"
        assert child(qel, NS_VERSION, "version").text
        assert child(qel, NS_VERSION, "os").text


def test_xep0092_show_os_false_hides_os(server_factory, accounts):
    """XEP-0092 §2: the os element is optional; show_os false leaves it out."""
    srv = server_factory({"modules": {"version": {"show_os": False}}})
    (a,) = accounts(1, srv=srv)
    with raw_login(srv, a) as c:
        qel = child(c.iq("<query xmlns='%s'/>" % NS_VERSION, to="localhost"), NS_VERSION, "query")
        assert qel.find(q(NS_VERSION, "os")) is None


def test_xep0202_4_entity_time(server, accounts):
    """XEP-0202 §4: <tzo/> and <utc/> (XEP-0082) of the server, close to now."""
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        t = child(c.iq("<time xmlns='%s'/>" % NS_TIME, to="localhost"), NS_TIME, "time")
        assert child(t, NS_TIME, "tzo").text == "+00:00"
        utc = child(t, NS_TIME, "utc").text
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", utc)
        when = time.mktime(time.strptime(utc[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert abs(when - time.time()) < 60


def test_xep0012_server_uptime_and_account_last_logout(server, accounts):
    """XEP-0012 §5 (server uptime), §4 (offline account: seconds since
    logout and its status), online account: 0."""
    a, b = accounts(2)
    with raw_login(server, a) as ca:
        r = ca.iq("<query xmlns='%s'/>" % NS_LAST, to="localhost")
        assert int(child(r, NS_LAST, "query").get("seconds")) >= 0
        with raw_login(server, b, presence=True) as cb:
            r = ca.iq("<query xmlns='%s'/>" % NS_LAST, to=b.jid)
            assert child(r, NS_LAST, "query").get("seconds") == "0"
            cb.send("<presence type='unavailable'><status>gone fishing</status></presence>")
            cb.close_stream()
            assert cb.wait_closed()
        time.sleep(1.2)
        r = ca.iq("<query xmlns='%s'/>" % NS_LAST, to=b.jid)
        assert r.get("type") == "result", tostr(r)
        qel = child(r, NS_LAST, "query")
        assert 1 <= int(qel.get("seconds")) <= 30
        assert qel.text == "gone fishing"
