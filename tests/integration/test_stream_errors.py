"""Stream-level errors and stream closing, checked on the raw bytes.

RFC 6120 §4.4 (closing), §4.9 (stream errors), §4.7.5 (version),
§5.4.3.3 / CVE-2011-1431 class (plaintext pipelined after STARTTLS),
§11.1 (restricted XML).
"""

import socket
import time

import pytest

from xmpptest import (NS_CLIENT, NS_STREAM, NS_TLS, RawClient, q, scaled, tostr)

MAX_STANZA = 16 * 1024


@pytest.fixture(scope="module")
def config_overrides():
    return {"limits": {"max_stanza_size": "16k"}}


def opened(server):
    """A plaintext stream with the server's header and features read."""
    c = RawClient(server.port)
    c.open_stream()
    return c


def logged_in(server, account):
    c = RawClient(server.port)
    c.login(account.user, account.password)
    return c


# ---- well-formedness and restricted XML --------------------------------------

@pytest.mark.parametrize("junk", [
    "<message><body>x</message>",            # mismatched end tag
    "<message to='a@localhost' to='b@localhost'/>",  # duplicate attribute
    "<message><body>\xff</body></message>",  # invalid UTF-8 (sent as byte 0xff)
    "<a:message xmlns='jabber:client'/>",    # unbound prefix
])
def test_rfc6120_4_9_3_13_not_well_formed(server, junk):
    """RFC 6120 §4.9.3.13: XML that is not well-formed (or not
    namespace-well-formed) -> <not-well-formed/>."""
    with opened(server) as c:
        c.send(junk.encode("latin-1"))
        c.expect_stream_error("not-well-formed")


def test_rfc6120_4_9_1_error_survives_input_sent_after_the_close(server):
    """RFC 6120 §4.9.1.1: the entity that detects the error sends the stream
    error and closes. A client that keeps sending after it (pipelined
    stanzas, a flood) must still read why: input arriving at a closed
    socket makes the kernel answer with a reset, and the reset drops what
    the client had not read yet. The server keeps the socket a while after
    its FIN, reading and discarding, so the error and the close arrive."""
    with opened(server) as c:
        c.send(b"<message><body>x</message>")
        time.sleep(scaled(0.5))  # the server has sent the error and ended the stream
        for _ in range(20):
            c.send(b"<message to='a@localhost'><body>more</body></message>" * 50)
        time.sleep(scaled(0.3))  # a reset, if one comes, is here before we read
        c.expect_stream_error("not-well-formed")


@pytest.mark.parametrize("junk", [
    "<!-- a comment -->",
    "<?foo bar?>",
    "<message><!-- inside --></message>",
])
def test_rfc6120_11_1_restricted_xml(server, junk):
    """RFC 6120 §11.1: comments and processing instructions ->
    <restricted-xml/>."""
    with opened(server) as c:
        c.send(junk)
        c.expect_stream_error("restricted-xml")


def test_rfc6120_11_1_doctype_in_prolog_restricted_xml(server):
    """RFC 6120 §11.1: a DOCTYPE before the stream header ->
    <restricted-xml/> (the server sends its own header first)."""
    with RawClient(server.port) as c:
        c.send("<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY boom 'x'>]>"
               + c.stream_header())
        c.expect_stream_error("restricted-xml")


def test_rfc6120_11_5_xml_declaration_accepted(server):
    """RFC 6120 §11.5: an XML declaration before the header is allowed."""
    with RawClient(server.port) as c:
        f = c.open_stream(decl=True)
        assert f["starttls"] is not None


def test_rfc6120_4_9_3_18_stanza_too_big_policy_violation(server, accounts):
    """RFC 6120 §4.9.3.18 / §13.12: a stanza over limits.max_stanza_size
    (16k here) -> <policy-violation/>, and it is not delivered."""
    a, b = accounts(2)
    with logged_in(server, a) as ca, logged_in(server, b) as cb:
        cb.send_presence(priority=1)
        big = "A" * (MAX_STANZA * 2)
        ca.send("<message to='%s' type='chat'><body>%s</body></message>" % (b.jid, big))
        ca.expect_stream_error("policy-violation")
        got = cb.quiet(pred=lambda e: e.tag == q(NS_CLIENT, "message"))
        assert got == [], "oversized stanza was delivered"


def test_rfc6120_4_9_3_18_stanza_under_limit_delivered(server, accounts):
    """Counterpart: a stanza just under max_stanza_size is delivered."""
    a, b = accounts(2)
    with logged_in(server, a) as ca, logged_in(server, b) as cb:
        cb.send_presence(priority=1)
        cb.quiet(period=scaled(0.3))
        body = "B" * (MAX_STANZA // 2)
        ca.send("<message to='%s' type='chat'><body>%s</body></message>" % (b.jid, body))
        m = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
        assert m.findtext(q(NS_CLIENT, "body")) == body


# ---- stream header errors ------------------------------------------------------

def test_rfc6120_4_9_3_10_wrong_stream_namespace(server):
    """RFC 6120 §4.9.3.10: a stream element in a namespace other than
    http://etherx.jabber.org/streams -> <invalid-namespace/>."""
    with RawClient(server.port) as c:
        c.send(c.stream_header(stream_ns="http://etherx.jabber.org/streamsX"))
        c.expect_stream_error("invalid-namespace")


def test_rfc6120_4_9_3_10_wrong_content_namespace(server):
    """RFC 6120 §4.8.2 / §4.9.3.10: a default content namespace other than
    jabber:client on a c2s stream -> <invalid-namespace/>."""
    with RawClient(server.port) as c:
        c.send(c.stream_header(xmlns="urn:example:wrong"))
        c.expect_stream_error("invalid-namespace")


def test_rfc6120_4_9_3_6_host_unknown(server):
    """RFC 6120 §4.9.3.6: 'to' names a domain this server does not serve ->
    <host-unknown/> (after the server's own header)."""
    with RawClient(server.port) as c:
        c.send(c.stream_header(to="not-served.example"))
        c.expect_stream_error("host-unknown")
        assert c.reader.header is not None, "no stream header before the error (RFC 6120 §4.9.1.2)"


def test_rfc6120_4_7_5_higher_version(server):
    """RFC 6120 §4.7.5: a client announcing version 2.0 gets either a
    version-1.0 stream (the highest both support) or <unsupported-version/>."""
    with RawClient(server.port) as c:
        c.send(c.stream_header(version="2.0"))
        h = c.wait_header()
        if h.get("version") == "1.0":
            el = c.next_element()
            assert el.tag in (q(NS_STREAM, "features"), q(NS_STREAM, "error")), tostr(el)
            if el.tag == q(NS_STREAM, "error"):
                c.reader.elements.insert(0, el)
                c.expect_stream_error("unsupported-version")
        else:
            c.expect_stream_error("unsupported-version")


def test_rfc6120_4_9_3_12_stanza_before_auth_not_authorized(server):
    """RFC 6120 §4.9.3.12: a stanza after TLS but before SASL ->
    <not-authorized/>."""
    with RawClient(server.port) as c:
        c.open_stream()
        c.starttls()
        c.open_stream()
        c.send("<message to='someone@localhost'><body>early</body></message>")
        c.expect_stream_error("not-authorized")


# ---- timeouts and shutdown ---------------------------------------------------------

def test_rfc6120_4_9_3_4_negotiation_timeout_connection_timeout(server_factory):
    """RFC 6120 §4.9.3.4: a stream that does not finish negotiation within
    limits.negotiation_timeout gets <connection-timeout/>."""
    srv = server_factory({"limits": {"negotiation_timeout": "2s"}})
    with RawClient(srv.port) as c:
        c.open_stream()
        t0 = time.monotonic()
        c.expect_stream_error("connection-timeout", timeout=scaled(2) + 5)
        assert time.monotonic() - t0 >= 1.0, "closed too early"


def test_negotiation_timeout_silent_tcp_connection_closed(server_factory):
    """limits.negotiation_timeout also covers a TCP connection that never
    sends a stream header: it is closed."""
    srv = server_factory({"limits": {"negotiation_timeout": "2s"}})
    with RawClient(srv.port) as c:
        assert c.wait_closed(timeout=scaled(2) + 5)


def test_rfc6120_4_9_3_22_sigterm_system_shutdown(server_factory, accounts):
    """RFC 6120 §4.9.3.22: on SIGTERM connected clients get
    <system-shutdown/> and </stream:stream>; the server exits 0."""
    srv = server_factory()
    (a,) = accounts(1, srv=srv)
    with RawClient(srv.port) as c, RawClient(srv.port) as pre:
        c.login(a.user, a.password)
        pre.open_stream()
        rc = srv.stop()
        c.expect_stream_error("system-shutdown")
        pre.expect_stream_error("system-shutdown")
    assert rc == 0, "xmppd exited with %s on SIGTERM" % rc


# ---- closing ---------------------------------------------------------------------

def test_rfc6120_4_4_closing_handshake(server, accounts):
    """RFC 6120 §4.4: when the client sends </stream:stream> the server
    answers </stream:stream> and closes the TCP connection."""
    (a,) = accounts(1)
    with logged_in(server, a) as c:
        c.close_stream()
        assert c.wait_closed(), "TCP connection not closed"
        assert c.reader.closed, "no </stream:stream> from the server: %r" % bytes(c.raw[-200:])


def test_rfc6120_4_4_closing_handshake_before_tls(server):
    """RFC 6120 §4.4 on a fresh plaintext stream."""
    with opened(server) as c:
        c.close_stream()
        assert c.wait_closed()
        assert c.reader.closed


# ---- STARTTLS pipelining ------------------------------------------------------------

def test_rfc6120_5_4_3_3_bytes_pipelined_after_starttls_discarded(server):
    """RFC 6120 §5.4.3.3 (CVE-2011-1431 class): bytes sent in plaintext
    right after <starttls/> are discarded: the TLS handshake succeeds and
    the pipelined IQ is never answered, neither in plaintext nor over TLS."""
    with opened(server) as c:
        c.send("<starttls xmlns='%s'/><iq type='get' id='pipelined' to='localhost'>"
               "<query xmlns='jabber:iq:version'/></iq>" % NS_TLS)
        el = c.next_element()
        assert el.tag == q(NS_TLS, "proceed"), tostr(el)
        # nothing else arrives in plaintext
        c.sock.settimeout(scaled(0.5))
        try:
            extra = c.sock.recv(4096, socket.MSG_PEEK)
        except (socket.timeout, TimeoutError):
            extra = b""
        assert extra == b"", "plaintext after <proceed/>: %r" % extra
        assert not c.reader.elements, [tostr(e) for e in c.reader.elements]
        c._wrap_tls()  # the handshake must succeed
        f = c.open_stream()
        assert "SCRAM-SHA-1" in f["mechanisms"]
        got = c.quiet(pred=lambda e: e.get("id") == "pipelined")
        assert got == [], "pipelined IQ was processed"


# ---- limits -------------------------------------------------------------------------

def test_rfc6120_4_9_3_18_too_deep_nesting_policy_violation(server):
    """Reliability rule (limits.max_depth, default 64): nesting deeper than
    the limit ends the stream with <policy-violation/> before it can
    exhaust memory or stack."""
    with opened(server) as c:
        c.send("<message>" + "<x>" * 200)
        c.expect_stream_error("policy-violation")


def test_rfc6120_4_3_stream_restart_cannot_change_host(server_factory, accounts):
    """Architecture rule (RFC 6120 §4.3.3, §6.4.6): after SASL on host A,
    a restarted stream naming host B is refused (<host-unknown/>), it does
    not give a session on B."""
    srv = server_factory({"hosts": {"localhost": {}, "other.test": {}}})
    (a,) = accounts(1, srv=srv)
    with RawClient(srv.port) as c:
        c.open_stream()
        c.starttls()
        c.open_stream()
        assert c.auth_plain(a.user, a.password).ok
        c.reader = type(c.reader)()
        c.send(c.stream_header(to="other.test"))
        c.expect_stream_error("host-unknown")


def test_limits_connections_per_ip(server_factory):
    """limits.connections_per_ip: connections over the limit from one address
    are closed at once; a slot frees when a connection closes."""
    srv = server_factory({"limits": {"connections_per_ip": 2}})
    time.sleep(scaled(0.3))  # the fixture's readiness probe connection is released
    c1, c2 = RawClient(srv.port), RawClient(srv.port)
    try:
        c1.open_stream()
        c2.open_stream()
        with RawClient(srv.port) as c3:
            try:
                c3.send(c3.stream_header())
            except OSError:
                pass
            assert c3.wait_closed(timeout=scaled(3)), "third connection accepted"
            assert c3.reader.header is None
        c1.close()
        time.sleep(scaled(0.3))
        with RawClient(srv.port) as c4:
            assert c4.open_stream()["starttls"] is not None
    finally:
        c1.close()
        c2.close()
