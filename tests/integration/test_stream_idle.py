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
