"""XMPP over WebSocket (RFC 7395) on the http listeners: the handshake
(RFC 6455 §4.2), the framing, errors and close codes, and WebSocket
sessions as ordinary c2s sessions (routing to TCP clients, stream
management resumption, XEP-0198)."""

import base64
import struct
import time

import pytest

import xmpptest
from conftest import Server, _finish
from webclient import (NS_FRAMING, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                       WebSocket, WSClosed, add_web_listeners, http_request)
from xmpptest import NS_STREAM_ERR, q, raw_login

NS_SM = "urn:xmpp:sm:3"


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("websocket"), cert_dir,
                 {"modules": {"roster": {}, "presence": {}, "smacks": {"resume_timeout": "30s"}},
                  "limits": {"max_stanza_size": "64k"},
                  "http": {"websocket": {"ping_interval": "2s"}}}, name="websocket")
    add_web_listeners(srv)
    srv.start()
    yield srv
    _finish(srv)


def ws(server, **kw):
    return WebSocket(server.https_port, tls=True, **kw)


# ---- the handshake ----------------------------------------------------------------

def test_rfc6455_4_2_handshake_answers_101_with_accept_and_xmpp_protocol(server):
    w = ws(server)
    try:
        assert w.status == 101
        assert w.accept_ok()
        assert w.headers["sec-websocket-protocol"] == "xmpp"
        assert w.headers["upgrade"].lower() == "websocket"
    finally:
        w.close()


def test_rfc7395_3_1_missing_xmpp_protocol_is_refused_with_400(server):
    w = ws(server, protocol=None)
    assert w.status == 400
    assert b"xmpp" in w.body
    w = ws(server, protocol="chat, superchat")
    assert w.status == 400


def test_rfc6455_4_4_unsupported_version_gets_426_with_our_version(server):
    w = ws(server, version="8")
    assert w.status == 426
    assert w.headers["sec-websocket-version"] == "13"


def test_rfc6455_4_2_1_bad_key_is_400(server):
    w = ws(server, key="not-base64-of-16-bytes")
    assert w.status == 400


def test_plain_get_on_the_endpoint_is_426(server):
    st, hdrs, body = http_request(server.http_port, "GET", "/xmpp-websocket")
    assert st == 426 and hdrs["upgrade"] == "websocket"


def test_plain_http_listener_carries_websocket_too(server, accounts):
    (a,) = accounts(1)
    w = WebSocket(server.http_port)
    try:
        assert w.status == 101
        opened, features = w.open()
        # Not encrypted and c2s.require_encryption: no SASL before TLS (RFC 6120 §5.3.1),
        # and STARTTLS is never offered over WebSocket (RFC 7395 §3.7).
        assert features.find(q("urn:ietf:params:xml:ns:xmpp-tls", "starttls")) is None
        assert features.find(q(xmpptest.NS_SASL, "mechanisms")) is None
    finally:
        w.close()


# ---- the framing ------------------------------------------------------------------------

def test_rfc7395_3_4_open_is_answered_with_open_and_features(server):
    w = ws(server)
    try:
        opened, features = w.open()
        assert opened.get("from") == "localhost" and opened.get("version") == "1.0"
        assert opened.get("id")
        assert features.tag == q(xmpptest.NS_STREAM, "features")
        mechs = [m.text for m in features.iter(q(xmpptest.NS_SASL, "mechanism"))]
        assert "PLAIN" in mechs
    finally:
        w.close()


def test_rfc7395_login_bind_and_message_to_a_tcp_client(server, accounts):
    a, b = accounts(2)
    w = ws(server)
    tcp = raw_login(server, b, presence=True)
    try:
        jid = w.login(a.user, a.password)
        assert jid.startswith(a.jid + "/")
        w.send_text("<message xmlns='jabber:client' to='%s' type='chat'><body>over ws</body></message>"
                    % b.jid)
        msg = tcp.wait_for(lambda el: xmpptest.local(el.tag) == "message")
        assert msg.get("from") == jid
        assert msg.findtext(q(xmpptest.NS_CLIENT, "body")) == "over ws"
        tcp.send("<message to='%s' type='chat'><body>back</body></message>" % jid)
        got = w.wait_for(lambda el: xmpptest.local(el.tag) == "message")
        # RFC 7395 §3.3.3: every element names its namespace.
        assert got.tag == q(xmpptest.NS_CLIENT, "message")
        assert got.findtext(q(xmpptest.NS_CLIENT, "body")) == "back"
    finally:
        w.close()
        tcp.close()


def test_rfc7395_3_6_close_is_answered_with_close_then_close_frame_1000(server, accounts):
    (a,) = accounts(1)
    w = ws(server)
    try:
        w.login(a.user, a.password)
        w.send_text("<close xmlns='%s'/>" % NS_FRAMING)
        el = w.recv_element()
        assert el.tag == q(NS_FRAMING, "close")
        assert w.expect_close_code() == 1000
    finally:
        w.close()


def test_rfc7395_3_3_3_two_elements_in_one_message_is_not_well_formed(server):
    w = ws(server)
    try:
        w.open()
        w.send_text("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>")
        err = w.recv_element()
        assert err.find(q(NS_STREAM_ERR, "not-well-formed")) is not None
        assert w.recv_element().tag == q(NS_FRAMING, "close")
        assert w.expect_close_code() == 1000
    finally:
        w.close()


def test_rfc7395_3_3_3_partial_element_is_not_well_formed(server):
    w = ws(server)
    try:
        w.open()
        w.send_text("<presence xmlns='jabber:client'>")
        err = w.recv_element()
        assert err.find(q(NS_STREAM_ERR, "not-well-formed")) is not None
    finally:
        w.close()


def test_rfc6120_11_1_restricted_xml_in_a_message(server):
    w = ws(server)
    try:
        w.open()
        w.send_text("<!-- a comment -->")
        err = w.recv_element()
        assert err.find(q(NS_STREAM_ERR, "restricted-xml")) is not None
    finally:
        w.close()


def test_element_before_open_is_invalid_namespace(server):
    w = ws(server)
    try:
        w.send_text("<presence xmlns='jabber:client'/>")
        w.recv_element()  # our <open/>, then the error
        err = w.recv_element()
        assert err.find(q(NS_STREAM_ERR, "invalid-namespace")) is not None
    finally:
        w.close()


def test_rfc6455_5_4_fragmented_message_is_reassembled(server):
    w = ws(server)
    try:
        text = ("<open xmlns='%s' to='localhost' version='1.0'/>" % NS_FRAMING).encode()
        w.send_frame(OP_TEXT, text[:10], fin=False)
        w.send_frame(OP_CONT, text[10:20], fin=False)
        w.send_frame(OP_CONT, text[20:], fin=True)
        assert w.recv_element().tag == q(NS_FRAMING, "open")
    finally:
        w.close()


def test_rfc7395_3_2_binary_message_gets_close_1003(server):
    w = ws(server)
    try:
        w.open()
        w.send_frame(OP_BINARY, b"<presence xmlns='jabber:client'/>")
        assert w.expect_close_code() == 1003
    finally:
        w.close()


def test_rfc6455_8_1_invalid_utf8_gets_close_1007(server):
    w = ws(server)
    try:
        w.open()
        w.send_frame(OP_TEXT, b"<message xmlns='jabber:client'><body>\xc3\x28</body></message>")
        assert w.expect_close_code() == 1007
    finally:
        w.close()


def test_rfc6455_7_4_1_message_over_the_limit_gets_close_1009(server):
    w = ws(server)
    try:
        w.open()
        big = "<message xmlns='jabber:client'><body>%s</body></message>" % ("x" * 70000)
        w.send_text(big)
        assert w.expect_close_code() == 1009
    finally:
        w.close()


def test_rfc6455_5_5_2_ping_gets_pong(server):
    w = ws(server)
    try:
        w.open()
        w.send_frame(OP_PING, b"hello")
        op, payload = w.recv_frame()
        assert (op, payload) == (OP_PONG, b"hello")
    finally:
        w.close()


def test_server_pings_an_idle_connection(server):
    w = ws(server)
    try:
        w.open()
        deadline = time.monotonic() + xmpptest.scaled(8)
        while True:
            w.sock.settimeout(max(0.1, deadline - time.monotonic()))
            # recv_frame answers pings itself: read the raw header instead.
            b0 = w._read_exact(2, deadline)[0]
            if b0 & 0x0F == OP_PING:
                break
    finally:
        w.close()


# ---- a WebSocket session is a c2s session -------------------------------------------------

def test_xep0198_resumption_over_websocket(server, accounts):
    """A dropped WebSocket (no <close/>) leaves the session hibernated;
    <resume/> on a new WebSocket gets back what was sent meanwhile."""
    a, b = accounts(2)
    w = ws(server)
    w.login(a.user, a.password, resource="web")
    w.send_text("<enable xmlns='%s' resume='true'/>" % NS_SM)
    enabled = w.wait_for(lambda el: el.tag == q(NS_SM, "enabled"))
    previd = enabled.get("id")
    assert enabled.get("resume") == "true"
    w.send_text("<presence xmlns='jabber:client'/>")
    w.sock.close()  # the connection is lost, not closed
    time.sleep(0.3)
    tcp = raw_login(server, b)
    try:
        tcp.send("<message to='%s/web' type='chat'><body>while away</body></message>" % a.jid)
        time.sleep(0.3)
        w2 = ws(server)
        _, features = w2.open()
        msg = base64.b64encode(("\0%s\0%s" % (a.user, a.password)).encode()).decode()
        w2.send_text("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (xmpptest.NS_SASL, msg))
        assert w2.recv_element().tag == q(xmpptest.NS_SASL, "success")
        w2.open()
        w2.send_text("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, previd))
        w2.wait_for(lambda el: el.tag == q(NS_SM, "resumed"))
        got = w2.wait_for(lambda el: xmpptest.local(el.tag) == "message")
        assert got.findtext(q(xmpptest.NS_CLIENT, "body")) == "while away"
        w2.close()
    finally:
        tcp.close()


def test_rfc7395_3_6_1_see_other_uri(server_factory):
    srv = server_factory({"http": {"websocket": {"see_other_uri": "wss://elsewhere.example/ws"}}},
                         start=False)
    add_web_listeners(srv)
    srv.start()
    w = WebSocket(srv.https_port, tls=True)
    try:
        w.send_text("<open xmlns='%s' to='localhost' version='1.0'/>" % NS_FRAMING)
        assert w.recv_element().tag == q(NS_FRAMING, "open")
        close = w.recv_element()
        assert close.tag == q(NS_FRAMING, "close")
        assert close.get("see-other-uri") == "wss://elsewhere.example/ws"
        assert w.expect_close_code() == 1000
    finally:
        w.close()


def test_xep0388_sasl2_bind2_and_inline_sm_over_websocket(server, accounts):
    """SASL2 with Bind2 and XEP-0198 enabled inline (XEP-0388 §2.6.1,
    XEP-0386, XEP-0198 with XEP-0386) work on a carried stream as on TCP:
    <success/> with <bound/> holding <enabled/>, the features at once with
    no <open/> again, then stanzas, each in its own WebSocket message."""
    (a,) = accounts(1)
    w = ws(server)
    try:
        _, features = w.open()
        assert features.find(q(xmpptest.NS_SASL2, "authentication")) is not None
        initial = base64.b64encode(("\0%s\0%s" % (a.user, a.password)).encode()).decode()
        w.send_text("<authenticate xmlns='%s' mechanism='PLAIN'><initial-response>%s</initial-response>"
                    "<user-agent id='ws-device-1'><software>t</software></user-agent>"
                    "<bind xmlns='%s'><tag>web</tag><enable xmlns='%s'/></bind></authenticate>"
                    % (xmpptest.NS_SASL2, initial, xmpptest.NS_BIND2, NS_SM))
        success = w.recv_element()
        assert success.tag == q(xmpptest.NS_SASL2, "success"), success
        jid = success.findtext(q(xmpptest.NS_SASL2, "authorization-identifier"))
        assert jid.startswith(a.jid + "/web/")
        bound = success.find(q(xmpptest.NS_BIND2, "bound"))
        assert bound is not None and bound.find(q(NS_SM, "enabled")) is not None
        after = w.recv_element()
        assert after.tag == q(xmpptest.NS_STREAM, "features"), after
        w.send_text("<message xmlns='jabber:client' to='%s' type='chat'><body>me</body></message>" % jid)
        got = w.wait_for(lambda el: xmpptest.local(el.tag) == "message")
        assert got.findtext(q(xmpptest.NS_CLIENT, "body")) == "me"
    finally:
        w.close()
