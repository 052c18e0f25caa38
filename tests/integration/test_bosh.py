"""XMPP over BOSH (XEP-0124, XEP-0206): session creation, rid order and
the window, sid validation, stream restart, pause, terminate, terminal
conditions, inactivity, and BOSH sessions as ordinary c2s sessions."""

import threading
import time

import pytest

import xmpptest
from conftest import Server, _finish
from webclient import NS_HTTPBIND, Bosh, add_web_listeners, http_request
from xmpptest import q, raw_login


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("bosh"), cert_dir,
                 {"modules": {"roster": {}, "presence": {}},
                  "http": {"bosh": {"max_inactivity": "5s", "max_wait": "10s", "max_pause": "20s"}}},
                 name="bosh")
    add_web_listeners(srv)
    srv.start()
    yield srv
    _finish(srv)


def bosh(server):
    return Bosh(server.https_port, tls=True)


def test_xep0124_7_1_session_creation_attributes_and_features(server):
    b = bosh(server)
    st, root, raw = b.create(wait="7", hold="1")
    assert st == 200 and root.tag == q(NS_HTTPBIND, "body")
    assert root.get("sid") and root.get("authid")
    assert root.get("wait") == "7" and root.get("hold") == "1" and root.get("requests") == "2"
    assert root.get("inactivity") == "5" and root.get("maxpause") == "20"
    assert root.get("from") == "localhost" and root.get("secure") == "true"
    assert root.get("{urn:xmpp:xbosh}version") == "1.0"
    feats = root.find(q(xmpptest.NS_STREAM, "features"))
    assert feats is not None and feats.find(q(xmpptest.NS_SASL, "mechanisms")) is not None


def test_xep0124_7_1_wait_and_hold_are_capped(server):
    b = bosh(server)
    st, root, _ = b.create(wait="3600", hold="5")
    assert root.get("wait") == "10" and root.get("hold") == "1"


def test_xep0206_login_restart_bind_and_messages_both_ways(server, accounts):
    a, t = accounts(2)
    b = bosh(server)
    jid = b.login(a.user, a.password)
    assert jid.startswith(a.jid + "/")
    tcp = raw_login(server, t, presence=True)
    try:
        b.send("<presence xmlns='jabber:client'/>")
        b.send("<message xmlns='jabber:client' to='%s' type='chat'><body>from bosh</body></message>" % t.jid)
        msg = tcp.wait_for(lambda el: xmpptest.local(el.tag) == "message")
        assert msg.get("from") == jid and msg.findtext(q(xmpptest.NS_CLIENT, "body")) == "from bosh"
        # A held request gets the message as soon as it arrives (§7.1).
        result = {}
        th = threading.Thread(target=lambda: result.update(r=b.send()))
        th.start()
        time.sleep(0.5)
        tcp.send("<message to='%s' type='chat'><body>to bosh</body></message>" % jid)
        th.join(xmpptest.scaled(10))
        st, root, raw = result["r"]
        body = root.find(".//" + q(xmpptest.NS_CLIENT, "body"))
        assert body is not None and body.text == "to bosh"
    finally:
        tcp.close()


def test_xep0124_17_2_unknown_sid_is_item_not_found(server):
    b = bosh(server)
    b.sid = "nosuchsession"
    st, root, _ = b.send()
    assert st == 200
    assert root.get("type") == "terminate" and root.get("condition") == "item-not-found"


def test_xep0124_7_1_unknown_host_is_host_unknown(server):
    b = bosh(server)
    st, root, _ = b.create(to="nowhere.example")
    assert root.get("type") == "terminate" and root.get("condition") == "host-unknown"


def test_xep0124_17_1_malformed_body_is_bad_request(server):
    for body in (b"<body xmlns='http://jabber.org/protocol/httpbind'", b"<nobody/>",
                 b"<body xmlns='http://jabber.org/protocol/httpbind'/><body xmlns='http://jabber.org/protocol/httpbind'/>",
                 b"<!DOCTYPE x><body xmlns='http://jabber.org/protocol/httpbind'/>"):
        st, hdrs, data = http_request(server.https_port, "POST", "/http-bind", body=body, tls=True)
        assert st == 400 and b"condition='bad-request'" in data, body


def test_xep0124_14_3_rid_beyond_the_window_ends_the_session(server):
    b = bosh(server)
    b.create(wait="1")
    st, root, _ = b.send(rid=b.rid + 10)
    assert root.get("type") == "terminate" and root.get("condition") == "item-not-found"
    st, root, _ = b.send()
    assert root.get("condition") == "item-not-found"


def test_xep0124_14_3_repeated_rid_gets_the_same_answer(server, accounts):
    (a,) = accounts(1)
    b = bosh(server)
    b.create(wait="1")
    msg = __import__("base64").b64encode(("\0%s\0%s" % (a.user, a.password)).encode()).decode()
    st, first, raw1 = b.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (xmpptest.NS_SASL, msg))
    assert first.find(q(xmpptest.NS_SASL, "success")) is not None
    st, again, raw2 = b.send(rid=b.rid)
    assert raw2 == raw1


def test_xep0124_14_2_requests_are_processed_in_rid_order(server, accounts):
    a, t = accounts(2)
    b = bosh(server)
    b.login(a.user, a.password)
    tcp = raw_login(server, t, presence=True)
    try:
        base = b.rid
        results = {}

        def post(rid, inner):
            results[rid] = b.post(b.body(inner, rid=rid))
        later = threading.Thread(target=post, args=(base + 2, "<message xmlns='jabber:client' to='%s'>"
                                                    "<body>second</body></message>" % t.jid))
        later.start()
        time.sleep(0.5)
        # The later rid waits for the gap: nothing delivered yet.
        tcp.quiet(0.3, pred=lambda el: xmpptest.local(el.tag) == "message")
        post(base + 1, "<message xmlns='jabber:client' to='%s'><body>first</body></message>" % t.jid)
        later.join(xmpptest.scaled(15))
        b.rid = base + 2
        m1 = tcp.wait_for(lambda el: xmpptest.local(el.tag) == "message")
        m2 = tcp.wait_for(lambda el: xmpptest.local(el.tag) == "message")
        assert [m1.findtext(q(xmpptest.NS_CLIENT, "body")), m2.findtext(q(xmpptest.NS_CLIENT, "body"))] \
            == ["first", "second"]
    finally:
        tcp.close()


def test_xep0124_10_pause_answers_held_requests_and_is_capped(server):
    b = bosh(server)
    b.create(wait="5")
    t0 = time.monotonic()
    st, root, _ = b.send(pause="10")
    assert st == 200 and time.monotonic() - t0 < 3
    st, root, _ = b.send(pause="3600")
    assert root.get("type") == "terminate" and root.get("condition") == "policy-violation"


def test_xep0124_13_terminate_ends_the_session(server, accounts):
    (a,) = accounts(1)
    b = bosh(server)
    b.login(a.user, a.password)
    st, root, _ = b.send("<presence xmlns='jabber:client' type='unavailable'/>", type="terminate")
    assert root.get("type") == "terminate"
    st, root, _ = b.send()
    assert root.get("condition") == "item-not-found"


def test_xep0124_inactivity_ends_the_session(server, accounts):
    (a,) = accounts(1)
    b = bosh(server)
    b.login(a.user, a.password)
    time.sleep(xmpptest.scaled(1) + 6)
    st, root, _ = b.send()
    assert root.get("type") == "terminate" and root.get("condition") == "item-not-found"


def test_xep0206_stream_error_travels_in_a_terminate_body(server):
    b = bosh(server)
    b.create(wait="1")
    st, root, _ = b.send("<message xmlns='jabber:client' to='x@localhost'><body>before auth</body></message>")
    assert root.get("type") == "terminate" and root.get("condition") == "remote-stream-error"
    err = root.find(q(xmpptest.NS_STREAM, "error"))
    assert err is not None and err.find(q(xmpptest.NS_STREAM_ERR, "not-authorized")) is not None


def test_cors_preflight_for_browser_clients(server):
    st, hdrs, _ = http_request(server.https_port, "OPTIONS", "/http-bind", tls=True,
                               headers={"Origin": "https://app.example",
                                        "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "content-type"})
    assert st == 204
    assert hdrs["access-control-allow-origin"] == "*"
    assert "POST" in hdrs["access-control-allow-methods"]
    assert "Content-Type" in hdrs["access-control-allow-headers"]
