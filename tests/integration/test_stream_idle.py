"""Idle streams give their parser's memory back (issue 18: idle session
memory). A socket stream without input for a second frees its libxml2
parser context (server/net/xstream_idle.c) and rebuilds it at the next
input by replaying the stream root's namespace declarations
(server/xml/xmlstream.c, xs_shrink). The stream must go on exactly as
before (RFC 6120 §4.2-4.4): prefixes the root declared stay declared,
whitespace keepalives (§4.6.1) and stanzas split across the pause still
parse, and the closing tag still matches the root. Each test checks the
counter xmppd_stream_parser_shrinks_total, so it knows the rebuild path
really ran."""

import re
import time

import pytest

from conftest import Server, _finish
from webclient import add_web_listeners, http_request
from xmpptest import (NS_CLIENT, NS_STREAM, RawClient, StreamReader, parse_features, q,
                      scaled)

NS_PING = "urn:xmpp:ping"


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("idle"), cert_dir, {
        "modules": {"presence": {}, "roster": {}, "ping": {}, "metrics": {}},
    }, name="idle")
    add_web_listeners(srv)
    srv.start()
    yield srv
    _finish(srv)


def shrinks(srv):
    st, _, body = http_request(srv.http_port, "GET", "/metrics")
    assert st == 200, (st, body)
    m = re.search(r"^xmppd_stream_parser_shrinks_total (\S+)$", body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


def wait_shrink(srv, before):
    """Waits until the server shrank a parser since `before`."""
    end = time.monotonic() + scaled(10)
    while time.monotonic() < end:
        now = shrinks(srv)
        if now > before:
            return now
        time.sleep(0.2)
    raise AssertionError("no parser was shrunk within %.0f s" % scaled(10))


def login_with_prefix(srv, account):
    """Logs in; the last stream header also declares the prefix p for
    urn:xmpp:ping (RFC 6120 §4.8.4: the root's declarations are in scope
    for every stanza)."""
    c = RawClient(srv.port)
    c.open_stream()
    c.starttls()
    c.open_stream()
    assert c.auth_plain(account.user, account.password).ok
    c.reader = StreamReader()
    c.send("<stream:stream to='localhost' version='1.0' xml:lang='en' xmlns='%s' "
           "xmlns:stream='%s' xmlns:p='%s'>" % (NS_CLIENT, NS_STREAM, NS_PING))
    c.wait_header()
    c.features = parse_features(c.next_element())
    c.bind()
    return c


def ping(c, iid):
    """XEP-0199 ping to the server with the root's prefix; the result."""
    c.send("<iq type='get' id='%s' to='localhost'><p:ping/></iq>" % iid)
    el = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid,
                    timeout=scaled(5))
    return el.get("type")


def test_issue18_idle_stream_keeps_root_prefixes_and_closes(server, accounts):
    """After the shrink, a stanza using a prefix the root declared parses
    (an undeclared prefix would be not-well-formed), more than once, and
    </stream:stream> still closes the stream cleanly (RFC 6120 §4.4)."""
    (a,) = accounts(1)
    c = login_with_prefix(server, a)
    before = shrinks(server)
    assert ping(c, "before") == "result"
    n = wait_shrink(server, before)
    assert ping(c, "after1") == "result"
    wait_shrink(server, n)
    c.send("<message to='%s' type='chat' id='self'><body>still here</body></message>" % c.jid)
    el = c.wait_for(lambda e: e.get("id") == "self", timeout=scaled(5))
    assert el.findtext(q(NS_CLIENT, "body")) == "still here"
    assert ping(c, "after2") == "result"
    c.close_stream()
    assert c.wait_closed(scaled(5))
    assert c.reader.error is None
    c.close()


def test_issue18_rfc6120_4_6_1_keepalive_while_idle(server, accounts):
    """Whitespace keepalives sent to a shrunk stream, or pending when it
    is shrunk, are whitespace between stanzas as before."""
    (a,) = accounts(1)
    c = login_with_prefix(server, a)
    n = wait_shrink(server, shrinks(server))
    c.send(" \n ")
    n = wait_shrink(server, n)
    c.send("\t")
    assert ping(c, "ka") == "result"
    c.close()


def test_issue18_stanza_split_across_the_pause(server, accounts):
    """A stanza that stops halfway is not shrunk under (the count does not
    move while it is open) and completes when the rest comes."""
    (a,) = accounts(1)
    c = login_with_prefix(server, a)
    n = wait_shrink(server, shrinks(server))
    c.send("<iq type='get' id='split' to='localhost'><p:pi")
    time.sleep(2.5)  # over two idle periods of the server (1 s)
    assert shrinks(server) == n  # the only stream here is mid-element
    c.send("ng/></iq>")
    el = c.wait_for(lambda e: e.get("id") == "split", timeout=scaled(5))
    assert el.get("type") == "result"
    c.close()


# ---- parked streams: an idle socket stream gives its bufferevent back -----

def parks(srv):
    st, _, body = http_request(srv.http_port, "GET", "/metrics")
    assert st == 200, (st, body)
    m = re.search(r"^xmppd_stream_parks_total (\S+)$", body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


def wait_parks(srv, target):
    """Waits until the server parked at least `target` streams in all."""
    end = time.monotonic() + scaled(10)
    while time.monotonic() < end:
        now = parks(srv)
        if now >= target:
            return now
        time.sleep(0.2)
    raise AssertionError("parks stayed at %s, wanted %s" % (parks(srv), target))


def tls_login(srv, account, resource):
    c = RawClient(srv.port)
    c.login(account.user, account.password, resource=resource)
    return c


def ping_ns(c, iid):
    """XEP-0199 ping with its own xmlns (tls_login declares no prefix)."""
    c.send("<iq type='get' id='%s' to='localhost'><ping xmlns='%s'/></iq>" % (iid, NS_PING))
    el = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid,
                    timeout=scaled(5))
    return el.get("type")


def chat(frm, to, iid, body):
    frm.send("<message to='%s' type='chat' id='%s'><body>%s</body></message>" % (to.jid, iid, body))
    el = to.wait_for(lambda e: e.get("id") == iid, timeout=scaled(5))
    assert el.findtext(q(NS_CLIENT, "body")) == body
    assert el.get("from") == frm.jid


def test_issue18_parked_streams_deliver_both_ways(server, accounts):
    """Two quiet TLS sessions are parked (bufferevent freed, the socket
    kept); a message to a parked stream wakes it for the write, a stanza
    from a parked stream wakes it for the read, both over the same TLS
    session (RFC 6120 §5: the TLS layer goes on unchanged), and they are
    parked again once quiet."""
    a, b = accounts(2)
    ca, cb = tls_login(server, a, "pa"), tls_login(server, b, "pb")
    n = wait_parks(server, parks(server) + 2)
    chat(cb, ca, "p1", "to a parked stream")
    n = wait_parks(server, n + 2)
    chat(ca, cb, "p2", "from a parked stream")
    assert ping_ns(ca, "p3") == "result"
    wait_parks(server, n + 2)
    ca.close_stream()  # RFC 6120 §4.4: the parked stream closes cleanly
    assert ca.wait_closed(scaled(5))
    assert ca.reader.error is None
    ca.close()
    cb.close()


def test_issue18_parked_stream_gets_stream_error(server, accounts):
    """The server closing a parked stream (RFC 6120 §7.7.2.2: a new
    login with the same resource replaces it with <conflict/>) writes the
    error and the closing tag, then closes the socket."""
    (a,) = accounts(1)
    old = tls_login(server, a, "same")
    wait_parks(server, parks(server) + 1)
    new = tls_login(server, a, "same")
    old.expect_stream_error("conflict", timeout=scaled(5))
    assert ping_ns(new, "after-conflict") == "result"
    new.close()
    old.close()


def test_issue18_parked_stream_peer_vanishes(server, accounts):
    """A parked stream whose peer closes its socket without a closing tag
    wakes on the EOF and its session ends: an IQ to its full JID then
    gets service-unavailable (RFC 6121 §8.5.3.2.1), where before it was
    delivered to the session."""
    a, b = accounts(2)
    ca, cb = tls_login(server, a, "gone"), tls_login(server, b, "stays")
    wait_parks(server, parks(server) + 2)
    jid = ca.jid
    ca.sock.close()
    end = time.monotonic() + scaled(10)
    for i in range(1000):
        iid = "bounce%d" % i
        cb.send("<iq type='get' id='%s' to='%s'><query xmlns='jabber:iq:version'/></iq>"
                % (iid, jid))
        got = cb.quiet(0.5, pred=lambda e: e.get("id") == iid)
        if got and got[0].get("type") == "error":
            assert got[0].find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") \
                is not None
            break
        assert time.monotonic() < end, "the parked session outlived its socket"
    cb.close()
