"""XEP-0357 Push Notifications (mod_push), against a small push service.

The push service is an XEP-0114 component written here (PushService): it
records every publish it gets and answers with a result, an error, or
nothing, as the test says. Registrations, triggers (offline message,
message to a hibernated session, subscription request), the summary form,
publish-options, the rate limit and the removal after repeated failures
are checked on what the service receives.
"""

import queue
import threading
import time

import pytest

import xmpptest
from conftest import Server, _finish, free_port
from xmpptest import (NS_CLIENT, RawClient, XMPPTestError, error_condition, new_id, q,
                      raw_component, raw_login, scaled, tostr)

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
NS_SM = "urn:xmpp:sm:3"
PUSH = "push.localhost"
SECRET = "push-component-secret"
MAX_FAILURES = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("test_push"), cert_dir, {
        "components": {PUSH: {"secret": SECRET}},
        "modules": {"roster": True, "presence": True, "offline": True, "disco": True,
                    "smacks": {"resume_timeout": "30s"}, "carbons": True, "csi": True,
                    "push": {"max_registrations": 2, "max_failures": MAX_FAILURES,
                             "min_interval": "1s", "timeout": "1s"}}}, name="test_push")
    srv.comp_port = free_port()
    srv.config["listeners"].append({"type": "component", "address": "127.0.0.1", "port": srv.comp_port})
    srv.write_config()
    srv.start()
    yield srv
    _finish(srv)


class PushService(threading.Thread):
    """An XEP-0114 component acting as an app's push service (XEP-0357
    §3): every pubsub publish it gets is queued as (node, summary dict,
    publish-options dict, the iq) and answered per self.mode: "ok"
    (result), "error" (<item-not-found/>), "silent" (no answer)."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.rc = raw_component(server.comp_port, PUSH, SECRET)
        self.mode = "ok"
        self.published = queue.Queue()
        self.stop = False
        self.start()

    def run(self):
        while not self.stop:
            try:
                el = self.rc.next_element(0.1)
            except XMPPTestError:
                if self.rc.eof or self.rc.reader.closed:
                    return
                continue
            if el.tag != q(xmpptest.NS_COMPONENT, "iq") or el.get("type") != "set":
                continue
            pub = el.find("%s/%s" % (q(NS_PUBSUB, "pubsub"), q(NS_PUBSUB, "publish")))
            if pub is None:
                continue
            self.published.put((pub.get("node"), form_values(pub.find(".//" + q(NS_PUSH, "notification"))),
                                form_values(el.find(".//" + q(NS_PUBSUB, "publish-options"))), el))
            if self.mode == "ok":
                self.rc.send("<iq type='result' id='%s' from='%s' to='%s'/>" % (el.get("id"), PUSH, el.get("from")))
            elif self.mode == "error":
                self.rc.send("<iq type='error' id='%s' from='%s' to='%s'><error type='cancel'>"
                             "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                             % (el.get("id"), PUSH, el.get("from")))

    def next(self, timeout=None):
        try:
            return self.published.get(timeout=timeout or scaled(5))
        except queue.Empty:
            raise XMPPTestError("the push service got no publish")

    def none(self, period=None):
        time.sleep(period or xmpptest.QUIET_PERIOD)
        got = []
        while not self.published.empty():
            got.append(self.published.get_nowait())
        return got

    def close(self):
        self.stop = True
        self.join(2)
        self.rc.close()


def form_values(parent):
    """{var: value or [values]} of the data form inside parent."""
    if parent is None:
        return None
    x = parent.find(q(NS_DATA, "x"))
    out = {}
    for f in x.findall(q(NS_DATA, "field")):
        vals = [v.text or "" for v in f.findall(q(NS_DATA, "value"))]
        out[f.get("var")] = vals[0] if len(vals) == 1 else vals
    return out


@pytest.fixture
def push_service(server):
    ps = PushService(server)
    yield ps
    ps.close()


OPTIONS = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
           "http://jabber.org/protocol/pubsub#publish-options</value></field>"
           "<field var='secret'><value>%s</value></field></x>")


def enable(c, node, secret=None, jid=PUSH):
    r = c.iq("<enable xmlns='%s' jid='%s' node='%s'>%s</enable>"
             % (NS_PUSH, jid, node, OPTIONS % secret if secret else ""), type_="set")
    return r


def register(server, account, node, secret="s3cr3t"):
    """Logs in, registers node, logs out."""
    with raw_login(server, account, "phone") as c:
        r = enable(c, node, secret)
        assert r.get("type") == "result", tostr(r)


def chat(to, body):
    return "<message to='%s' type='chat' id='%s'><body>%s</body></message>" % (to, new_id("m"), body)


def test_account_disco_feature(server, accounts):
    """XEP-0357 §4.1: the account's disco#info lists urn:xmpp:push:0."""
    (a,) = accounts(1)
    with raw_login(server, a, "r") as c:
        r = c.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=a.jid)
        feats = [f.get("var") for f in r.iter("{http://jabber.org/protocol/disco#info}feature")]
        assert NS_PUSH in feats, tostr(r)


def test_compliance_levels(server):
    """xmppctl features: with smacks, csi and push the XEP-0479 Mobile
    Server level is reached, and Mobile Advanced Server lacks nothing of
    its own category; carbons fill the IM row Outbound Message
    Synchronization (XEP-0280)."""
    import json
    j = json.loads(server.ctl("-j", "features").stdout)
    host = j["hosts"][0]
    specs = {s["spec"]: s["by"] for s in host["specs"]}
    assert specs["XEP-0280"] == ["carbons"] and specs["XEP-0352"] == ["csi"]
    assert specs["XEP-0357"] == ["push"] and specs["XEP-0198"] == ["smacks"]
    suites = {(s["category"], s["level"]): s for s in host["suites"]}
    assert suites[("Mobile", "Server")]["reached"], suites[("Mobile", "Server")]["missing"]
    adv = suites[("Mobile", "Advanced Server")]
    assert [m for m in adv["missing"] if m["category"] == "Mobile"] == [], adv["missing"]
    im = suites[("IM", "Server")]
    assert "XEP-0280" not in {p for m in im["missing"] for p in m["providers"]}


def test_enable_errors(server, accounts):
    """XEP-0357 §5: 'jid' and 'node' are required and the form must be a
    publish-options form (bad-request, RFC 6120 §8.3.3.1); registering for
    another account is forbidden."""
    a, b = accounts(2)
    with raw_login(server, a, "r") as c:
        r = c.iq("<enable xmlns='%s' node='n'/>" % NS_PUSH, type_="set")
        assert error_condition(r) == ("modify", "bad-request")
        r = c.iq("<enable xmlns='%s' jid='%s'/>" % (NS_PUSH, PUSH), type_="set")
        assert error_condition(r) == ("modify", "bad-request")
        r = c.iq("<enable xmlns='%s' jid='%s' node='n'><x xmlns='jabber:x:data' type='submit'>"
                 "<field var='FORM_TYPE'><value>urn:x</value></field></x></enable>" % (NS_PUSH, PUSH), type_="set")
        assert error_condition(r) == ("modify", "bad-request")
        r = c.iq("<disable xmlns='%s'/>" % NS_PUSH, type_="set")
        assert error_condition(r) == ("modify", "bad-request")
        r = c.iq("<enable xmlns='%s' jid='%s' node='n'/>" % (NS_PUSH, PUSH), type_="set", to=b.jid)
        assert error_condition(r) == ("auth", "forbidden")


def test_offline_message_is_pushed(server, accounts, push_service):
    """XEP-0357 §7: a message stored offline for an account with no session
    triggers a publish from the account's bare JID to the service's node,
    with the urn:xmpp:push:summary form (count, last sender, no body unless
    the operator allows it) and the registration's publish-options; the
    message itself is still stored and delivered at the next login."""
    a, b = accounts(2)
    register(server, a, "node-a", "sec-a")
    assert "push" in server.stored_stores(a.user)
    with raw_login(server, b, "s") as s:
        s.send(chat(a.jid, "are you there?"))
        node, summary, options, iq = push_service.next()
    assert node == "node-a" and iq.get("from") == a.jid and iq.get("to") == PUSH
    assert summary == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1",
                       "last-message-sender": b.jid}, summary
    assert options == {"FORM_TYPE": "http://jabber.org/protocol/pubsub#publish-options", "secret": "sec-a"}
    with raw_login(server, a, "back", presence=True) as c:
        m = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
        assert m.find(q(NS_CLIENT, "body")).text == "are you there?"


def test_hibernated_session_is_pushed_and_connected_is_not(server, accounts, push_service):
    """XEP-0357 with XEP-0198: a message to an account whose only session
    is hibernated is pushed; while a session is connected nothing is; chat
    states never are."""
    a, b = accounts(2)
    c = raw_login(server, a, "phone", presence=True)
    assert enable(c, "node-h").get("type") == "result"
    s = raw_login(server, b, "s")
    s.send(chat(a.jid + "/phone", "you are online"))
    c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    assert push_service.none(0.5) == []
    c.send("<enable xmlns='%s' resume='true'/>" % NS_SM)
    previd = c.wait_for(lambda e: e.tag == q(NS_SM, "enabled")).get("id")
    c.sock.close()
    time.sleep(0.3)
    s.send("<message to='%s/phone' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
           "</message>" % a.jid)
    assert push_service.none(0.5) == []
    s.send(chat(a.jid + "/phone", "wake up"))
    node, summary, _, _ = push_service.next()
    assert node == "node-h" and summary["message-count"] == "1"
    n = RawClient(server.port)
    n.login(a.user, a.password, bind=False)
    n.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, previd))
    assert n.wait_for(lambda e: e.tag in (q(NS_SM, "resumed"), q(NS_SM, "failed"))).tag == q(NS_SM, "resumed")
    bodies = [e.find(q(NS_CLIENT, "body")).text for e in n.quiet(0.5)
              if e.tag == q(NS_CLIENT, "message") and e.find(q(NS_CLIENT, "body")) is not None]
    assert "wake up" in bodies
    n.close()
    s.close()


def test_subscription_request_is_pushed(server, accounts, push_service):
    """XEP-0357 §7: a subscription request for an absent account is pushed
    with pending-subscription-count."""
    a, b = accounts(2)
    register(server, a, "node-s")
    with raw_login(server, b, "s") as s:
        s.send("<presence to='%s' type='subscribe'/>" % a.jid)
        _, summary, _, _ = push_service.next()
    assert summary.get("pending-subscription-count") == "1" and summary["last-message-sender"] == b.jid


def test_rate_limit_and_count(server, accounts, push_service):
    """A registration gets at most one notification per min_interval; the
    count keeps growing while the user is away."""
    a, b = accounts(2)
    register(server, a, "node-r")
    with raw_login(server, b, "s") as s:
        s.send(chat(a.jid, "one"))
        s.send(chat(a.jid, "two"))
        assert push_service.next()[1]["message-count"] == "1"
        assert push_service.none(0.5) == []
        time.sleep(1.0)
        s.send(chat(a.jid, "three"))
        assert push_service.next()[1]["message-count"] == "3"


def test_failures_disable_the_registration(server, accounts, push_service):
    """XEP-0357 §7.1: after max_failures errors or timeouts in a row from
    the service, the registration is removed; nothing is published any
    more."""
    a, b = accounts(2)
    register(server, a, "node-f")
    push_service.mode = "error"
    with raw_login(server, b, "s") as s:
        s.send(chat(a.jid, "e1"))
        push_service.next()
        time.sleep(1.1)
        push_service.mode = "silent"
        s.send(chat(a.jid, "e2"))
        push_service.next()
        time.sleep(2.5)  # the timeout, then past min_interval
        s.send(chat(a.jid, "e3"))
        assert push_service.none(1.0) == []
    assert "push" not in server.stored_stores(a.user)


def test_registrations_disable_and_limit(server, accounts, push_service):
    """XEP-0357 §5/§6: the same JID and node registered again replaces its
    options; a third registration replaces the oldest (max 2); disable
    with a node removes that one, without a node every node of the
    service."""
    a, b = accounts(2)
    with raw_login(server, a, "phone") as c:
        for node, secret in (("n1", "a"), ("n2", "b"), ("n2", "b2"), ("n3", "c")):
            assert enable(c, node, secret).get("type") == "result"
            time.sleep(0.01)
    with raw_login(server, b, "s") as s:
        s.send(chat(a.jid, "x"))
        got = {push_service.next()[0]: None, push_service.next()[0]: None}
        assert set(got) == {"n2", "n3"}
        assert push_service.none(0.3) == []
    with raw_login(server, a, "phone") as c:
        assert c.iq("<disable xmlns='%s' jid='%s' node='n2'/>" % (NS_PUSH, PUSH), type_="set").get("type") == "result"
    time.sleep(1.0)
    with raw_login(server, b, "s") as s:
        s.send(chat(a.jid, "y"))
        node, _, options, _ = push_service.next()
        assert node == "n3" and options["secret"] == "c"
        assert push_service.none(0.3) == []
    with raw_login(server, a, "phone") as c:
        assert c.iq("<disable xmlns='%s' jid='%s'/>" % (NS_PUSH, PUSH), type_="set").get("type") == "result"
    assert "push" not in server.stored_stores(a.user)


def test_body_only_when_the_operator_allows(server_factory, accounts):
    """XEP-0357 §10: the body leaves the server only with include_body."""
    srv = server_factory({"components": {PUSH: {"secret": SECRET}},
                          "modules": {"offline": True, "push": {"include_body": True}}}, start=False)
    srv.comp_port = free_port()
    srv.config["listeners"].append({"type": "component", "address": "127.0.0.1", "port": srv.comp_port})
    srv.write_config()
    srv.start()
    a, b = accounts(2, srv=srv)
    ps = PushService(srv)
    try:
        register(srv, a, "nb")
        with raw_login(srv, b, "s") as s:
            s.send(chat(a.jid, "the secret plan"))
            assert ps.next()[1]["last-message-body"] == "the secret plan"
    finally:
        ps.close()
