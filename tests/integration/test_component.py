"""External components (XEP-0114, the "gateway" role).

A component connects to the component listener, opens a
jabber:component:accept stream to its domain and proves the shared secret
with <handshake>hex(SHA-1(stream id + secret))</handshake>. Then stanzas to
its domain are written to its stream and stanzas it sends are routed, as
long as their 'from' is at its domain.

The components here: slixmpp's ComponentXMPP (a real component library) for
the conversations, and the raw socket client where the exact bytes matter
(stream errors).
"""

import asyncio
import signal
import time

import pytest

import xmpptest
from conftest import Server, _finish, free_port
from xmpptest import (NS_CLIENT, NS_STANZA_ERR, NS_STREAM, RawClient, XMPPTestError, connect,
                      error_condition, q, run)

NS_COMPONENT = "jabber:component:accept"
GATEWAY = "gateway.localhost"
SECRET = "s3cr3t-Gateway-Value"
SUBDOMAINS = "sub.localhost"          # "subdomains": true
SUB_SECRET = "another-secret-for-sub"
OFFLINE = "offline.localhost"         # configured, never connected
OFFLINE_SECRET = "offline-secret-value"

COMPONENTS = {
    GATEWAY: {"secret": SECRET},
    SUBDOMAINS: {"secret": SUB_SECRET, "subdomains": True},
    OFFLINE: {"secret": OFFLINE_SECRET, "subdomains": False},
}


def add_component_listener(srv):
    srv.comp_port = free_port()
    srv.config["listeners"].append({"type": "component", "address": "127.0.0.1",
                                    "port": srv.comp_port})
    srv.write_config()


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    """The conftest server plus a component listener and three components."""
    srv = Server(tmp_path_factory.mktemp("test_component"), cert_dir,
                 {"components": COMPONENTS}, name="test_component")
    add_component_listener(srv)
    srv.start()
    yield srv
    _finish(srv)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

class Component(xmpptest.slixmpp.ComponentXMPP):
    """slixmpp component on 127.0.0.1:port recording what it receives."""

    def __init__(self, domain, secret, port):
        super().__init__(domain, secret, "127.0.0.1", port)
        self.port = port
        self.use_ipv6 = False
        self.use_aiodns = False
        self.whitespace_keepalive = False
        self.auto_reconnect = False
        self.messages = asyncio.Queue()
        self.iqs = asyncio.Queue()
        self.stream_errors = []
        self._ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _: self._settle(None))
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("disconnected", lambda _: self._settle("disconnected"))
        self.add_event_handler("connection_failed", lambda e: self._settle("connection failed: %r" % (e,)))
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))

    async def get_dns_records(self, domain, port=None):
        return [(domain, "127.0.0.1", self.port)]

    def _on_stream_error(self, err):
        self.stream_errors.append(err["condition"])
        self._settle("stream error <%s/>" % err["condition"])

    def _settle(self, failure):
        if self._ready.done():
            return
        if failure is None:
            self._ready.set_result(True)
        else:
            self._ready.set_exception(XMPPTestError(failure))

    async def start(self, timeout=None):
        self.connect()
        try:
            await asyncio.wait_for(self._ready, timeout or xmpptest.DEFAULT_TIMEOUT)
        except asyncio.TimeoutError:
            raise XMPPTestError("timeout: component %s did not reach session_start" % self.boundjid)
        return self

    async def next_message(self, timeout=None):
        try:
            return await asyncio.wait_for(self.messages.get(), timeout or xmpptest.DEFAULT_TIMEOUT)
        except asyncio.TimeoutError:
            raise XMPPTestError("timeout: component %s received no message" % self.boundjid)

    async def stop(self, timeout=2.0):
        try:
            if self.transport is not None:
                self.disconnect(wait=timeout)
                await asyncio.wait_for(self.disconnected, timeout + 1)
        except Exception:
            self.abort()


def component(server, domain=GATEWAY, secret=SECRET):
    c = Component(domain, secret, server.comp_port)
    xmpptest._live.append(c)  # torn down by run()
    return c


handshake_value = xmpptest.component_handshake_value


def raw_component(server, domain=GATEWAY, secret=SECRET, to=None):
    """A RawClient that completed the XEP-0114 handshake for domain."""
    return xmpptest.raw_component(server.comp_port, domain, secret, to)


def raw_user(server, account):
    rc = RawClient(server.port)
    rc.login(account.user, account.password)
    rc.send_presence()
    return rc


def wait_message(rc, pred=lambda e: True, timeout=None):
    return rc.wait_for(lambda e: local_name(e) == "message" and pred(e), timeout)


def local_name(el):
    return el.tag.rsplit("}", 1)[-1]


def body(el):
    for ns in (NS_CLIENT, NS_COMPONENT):
        b = el.find(q(ns, "body"))
        if b is not None:
            return b.text
    return None


def assert_no_secret(server):
    assert SECRET not in server.read_log() and SECRET not in server.read_stderr()


# ---------------------------------------------------------------------------
# XEP-0114 §3: connecting, with slixmpp's ComponentXMPP
# ---------------------------------------------------------------------------

def test_component_receives_message_and_answers(server, accounts):
    """XEP-0114 §3: after the handshake, a message from a user to a JID at
    the component's domain reaches the component with the user's full JID
    as 'from'; the component's answer reaches the user."""
    alice, = accounts(1)

    async def scenario():
        gw = await component(server).start()
        a = await connect(server, alice, resource="phone", presence=0)
        a.send_message(mto="bot@" + GATEWAY, mbody="hello gateway", mtype="chat")
        got = await gw.next_message()
        assert got["body"] == "hello gateway"
        assert str(got["from"]) == alice.jid + "/phone"
        assert str(got["to"]) == "bot@" + GATEWAY
        gw.send_message(mto=got["from"], mfrom=got["to"], mbody="hello user", mtype="chat")
        reply = await a.next_message(pred=lambda m: m["type"] != "error")
        assert reply["body"] == "hello user"
        assert str(reply["from"]) == "bot@" + GATEWAY
    run(scenario())
    assert_no_secret(server)


def test_client_iq_gets_component_answer(server, accounts):
    """RFC 6120 §8.2.3 through a component: a user's IQ get to the
    component's domain is answered by the component, not by the server."""
    alice, = accounts(1)

    async def scenario():
        gw = component(server)

        def on_version(iq):
            r = iq.reply()
            r.set_payload(xmpptest.slixmpp.xmlstream.ET.fromstring(
                "<query xmlns='jabber:iq:version'><name>testgw</name><version>1</version></query>"))
            r.send()
        gw.register_handler(xmpptest.slixmpp.xmlstream.handler.Callback(
            "version", xmpptest.slixmpp.xmlstream.matcher.MatchXPath(
                "{%s}iq/{jabber:iq:version}query" % NS_COMPONENT), on_version))
        await gw.start()
        a = await connect(server, alice)
        iq = a.make_iq_get(queryxmlns="jabber:iq:version", ito=GATEWAY)
        res = await iq.send(timeout=xmpptest.DEFAULT_TIMEOUT)
        assert res["type"] == "result"
        assert str(res["from"]) == GATEWAY
        name = res.xml.find("{jabber:iq:version}query/{jabber:iq:version}name")
        assert name is not None and name.text == "testgw"
    run(scenario())


def test_wrong_secret_refused(server):
    """XEP-0114 §3: a handshake with the wrong secret ends the stream with
    <not-authorized/>; the component never starts."""
    async def scenario():
        gw = component(server, secret="not-the-secret")
        with pytest.raises(XMPPTestError):
            await gw.start()
        assert gw.stream_errors == ["not-authorized"]
    run(scenario())
    assert_no_secret(server)


# ---------------------------------------------------------------------------
# XEP-0114 §3 / RFC 6120 §4.9.3: stream errors, exact bytes
# ---------------------------------------------------------------------------

def test_handshake_raw_and_wrong_value(server):
    """XEP-0114 §3: the server answers the header with from = the component
    domain and a fresh id, and no features; a wrong digest is
    <not-authorized/>."""
    with RawClient(server.comp_port, domain=GATEWAY) as rc:
        rc.open_stream(features=False, to=GATEWAY, xmlns=NS_COMPONENT, version=None, lang=None)
        h = rc.reader.header
        assert h.get("from") == GATEWAY and h.get("id")
        rc.send("<handshake>%s</handshake>" % handshake_value(h.get("id"), SECRET + "x"))
        rc.expect_stream_error("not-authorized")
    with RawClient(server.comp_port, domain=GATEWAY) as rc:
        rc.open_stream(features=False, to=GATEWAY, xmlns=NS_COMPONENT, version=None, lang=None)
        rc.send("<handshake>not even hex</handshake>")
        rc.expect_stream_error("not-authorized")
    assert_no_secret(server)


def test_stanza_before_handshake_refused(server):
    """RFC 6120 §4.9.3.12: a stanza before the handshake is <not-authorized/>
    and is not routed."""
    with RawClient(server.comp_port, domain=GATEWAY) as rc:
        rc.open_stream(features=False, to=GATEWAY, xmlns=NS_COMPONENT, version=None, lang=None)
        rc.send("<message from='%s' to='someone@localhost'><body>x</body></message>" % GATEWAY)
        rc.expect_stream_error("not-authorized")


def test_unknown_domain_and_namespace(server):
    """RFC 6120 §4.9.3.6 / §4.9.3.10: a domain that is no component is
    <host-unknown/> (a host of the server is none either); a client
    namespace on the component port is <invalid-namespace/>."""
    for to in ("nothere.localhost", "localhost"):
        with RawClient(server.comp_port, domain=to) as rc:
            rc.open_stream(features=False, to=to, xmlns=NS_COMPONENT, version=None, lang=None)
            rc.expect_stream_error("host-unknown")
    with RawClient(server.comp_port, domain=GATEWAY) as rc:
        rc.open_stream(features=False, to=GATEWAY, xmlns=NS_CLIENT, version=None, lang=None)
        rc.expect_stream_error("invalid-namespace")


def test_second_connection_conflict(server, accounts):
    """A second component for a domain that is connected gets <conflict/>
    (after proving the secret); the first keeps receiving."""
    alice, = accounts(1)
    first = raw_component(server)
    try:
        with RawClient(server.comp_port, domain=GATEWAY) as rc:
            rc.open_stream(features=False, to=GATEWAY, xmlns=NS_COMPONENT, version=None, lang=None)
            rc.send("<handshake>%s</handshake>" % handshake_value(rc.reader.header.get("id"), SECRET))
            rc.expect_stream_error("conflict")
        user = raw_user(server, alice)
        user.send("<message to='bot@%s' type='chat'><body>still there</body></message>" % GATEWAY)
        m = wait_message(first)
        assert body(m) == "still there"
        user.close()
    finally:
        first.close()


def test_from_spoofing_refused(server, accounts):
    """RFC 6120 §4.9.3.9: a stanza whose 'from' is not at the component's
    domain (a user of the server, another component) ends the stream with
    <invalid-from/> and is not delivered."""
    alice, = accounts(1)
    user = raw_user(server, alice)
    try:
        for spoof in (alice.jid, "localhost", "x@" + OFFLINE, "x@evil." + GATEWAY):
            rc = raw_component(server)
            try:
                rc.send("<message from='%s' to='%s' type='chat'><body>spoof</body></message>"
                        % (spoof, alice.jid))
                rc.expect_stream_error("invalid-from")
            finally:
                rc.close()
        assert user.quiet(pred=lambda e: local_name(e) == "message") == []
    finally:
        user.close()


def test_missing_addresses_refused(server):
    """RFC 6120 §4.9.3.7: a component stanza without 'from' or 'to' is
    <improper-addressing/>."""
    for stanza in ("<message to='a@localhost'><body>x</body></message>",
                   "<message from='%s'><body>x</body></message>" % GATEWAY):
        rc = raw_component(server)
        try:
            rc.send(stanza)
            rc.expect_stream_error("improper-addressing")
        finally:
            rc.close()


# ---------------------------------------------------------------------------
# Routing to and from components
# ---------------------------------------------------------------------------

def test_unconnected_component_service_unavailable(server, accounts):
    """RFC 6120 §8.3.3.19: a message or IQ to a configured component that is
    not connected is answered <service-unavailable/> from its domain;
    presence to it is dropped."""
    alice, = accounts(1)
    user = raw_user(server, alice)
    try:
        user.send("<message id='m1' to='bot@%s' type='chat'><body>anyone?</body></message>" % OFFLINE)
        m = wait_message(user, lambda e: e.get("id") == "m1")
        assert m.get("type") == "error" and m.get("from") == "bot@" + OFFLINE
        assert error_condition(m) == ("cancel", "service-unavailable")
        res = user.iq("<query xmlns='jabber:iq:version'/>", to=OFFLINE)
        assert res.get("type") == "error" and res.get("from") == OFFLINE
        assert error_condition(res)[1] == "service-unavailable"
        user.send("<presence to='bot@%s' type='subscribe'/>" % OFFLINE)
        assert user.quiet(pred=lambda e: local_name(e) == "presence" and e.get("type") == "error") == []
    finally:
        user.close()


def test_component_disconnect_makes_it_unavailable(server, accounts):
    """After the component's stream ends, its domain answers
    service-unavailable again (nothing is queued for it)."""
    alice, = accounts(1)
    rc = raw_component(server)
    rc.close_stream()
    assert rc.wait_closed()
    rc.close()
    user = raw_user(server, alice)
    try:
        deadline = time.monotonic() + xmpptest.scaled(2)
        while True:  # the server notices the close within a loop turn
            user.send("<message id='g1' to='%s'><body>x</body></message>" % GATEWAY)
            m = wait_message(user, lambda e: e.get("id") == "g1")
            if error_condition(m)[1] == "service-unavailable" or time.monotonic() > deadline:
                break
        assert error_condition(m) == ("cancel", "service-unavailable")
    finally:
        user.close()


def test_component_error_from_router(server):
    """RFC 6121 §8.5.2: a component's message to an unknown local account is
    bounced back to the component as <service-unavailable/>; an IQ
    without id is answered <bad-request/>; a malformed 'to' <jid-malformed/>."""
    rc = raw_component(server)
    try:
        rc.send("<message id='b1' from='bot@%s' to='nobody-here@localhost' type='chat'>"
                "<body>x</body></message>" % GATEWAY)
        m = rc.wait_for(lambda e: e.get("id") == "b1")
        assert m.tag == q(NS_COMPONENT, "message") and m.get("type") == "error"
        assert m.get("to") == "bot@" + GATEWAY
        assert error_condition(m)[1] == "service-unavailable"
        rc.send("<iq type='get' from='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>" % GATEWAY)
        e = rc.next_element()
        assert e.get("type") == "error" and error_condition(e) == ("modify", "bad-request")
        rc.send("<message id='b2' from='%s' to='a@b@c'><body>x</body></message>" % GATEWAY)
        e = rc.wait_for(lambda el: el.get("id") == "b2")
        assert error_condition(e) == ("modify", "jid-malformed")
    finally:
        rc.close()


def test_subdomains_routed_when_configured(server, accounts):
    """Configuration "subdomains": true routes every subdomain to the
    component, which may send from them; without it a subdomain of the
    component is not the component's (remote-server-not-found)."""
    alice, = accounts(1)
    rc = raw_component(server, SUBDOMAINS, SUB_SECRET)
    user = raw_user(server, alice)
    try:
        user.send("<message id='s1' to='room@conf.%s' type='chat'><body>deep</body></message>" % SUBDOMAINS)
        m = rc.wait_for(lambda e: e.get("id") == "s1")
        assert m.get("to") == "room@conf." + SUBDOMAINS and m.get("from", "").startswith(alice.jid + "/")
        rc.send("<message id='s2' from='room@conf.%s' to='%s' type='chat'><body>back</body></message>"
                % (SUBDOMAINS, m.get("from")))
        r = wait_message(user, lambda e: e.get("id") == "s2")
        assert body(r) == "back" and r.get("from") == "room@conf." + SUBDOMAINS

        user.send("<message id='s3' to='x@deeper.%s'><body>x</body></message>" % GATEWAY)
        e = wait_message(user, lambda el: el.get("id") == "s3")
        assert error_condition(e)[1] == "remote-server-not-found"
    finally:
        user.close()
        rc.close()


def test_components_between_each_other(server):
    """A component reaches another component through the router."""
    a = raw_component(server)
    b = raw_component(server, SUBDOMAINS, SUB_SECRET)
    try:
        a.send("<message id='c1' from='x@%s' to='y@%s'><body>hi b</body></message>"
               % (GATEWAY, SUBDOMAINS))
        m = b.wait_for(lambda e: e.get("id") == "c1")
        assert body(m) == "hi b" and m.get("from") == "x@" + GATEWAY
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------
# configuration reload
# ---------------------------------------------------------------------------

def test_reload_removing_component_closes_it(server_factory):
    """RFC 6120 §4.9.3.5: a component removed from the configuration by
    SIGHUP gets <host-gone/>; a new connection for it is <host-unknown/>."""
    srv = server_factory({"components": {GATEWAY: {"secret": SECRET}}}, start=False)
    add_component_listener(srv)
    srv.start()
    rc = raw_component(srv)
    try:
        srv.config["components"] = {}
        srv.reload()
        rc.expect_stream_error("host-gone", timeout=xmpptest.scaled(5))
    finally:
        rc.close()
    with RawClient(srv.comp_port, domain=GATEWAY) as r2:
        r2.open_stream(features=False, to=GATEWAY, xmlns=NS_COMPONENT, version=None, lang=None)
        r2.expect_stream_error("host-unknown")


def test_shutdown_closes_components(server_factory):
    """RFC 6120 §4.9.3.17: on SIGTERM a connected component gets
    <system-shutdown/> and the server exits cleanly."""
    srv = server_factory({"components": {GATEWAY: {"secret": SECRET}}}, start=False)
    add_component_listener(srv)
    srv.start()
    rc = raw_component(srv)
    try:
        srv.proc.send_signal(signal.SIGTERM)
        rc.expect_stream_error("system-shutdown", timeout=xmpptest.scaled(5))
        assert srv.proc.wait(xmpptest.scaled(10)) == 0
        srv.stop()
    finally:
        rc.close()
    log = srv.read_log()
    assert "component %s connected" % GATEWAY in log and SECRET not in log


def test_handshake_timeout_and_failure_delay(server_factory):
    """RFC 6120 §4.9.3.4: a component that does not complete the handshake
    within limits.negotiation_timeout gets <connection-timeout/>; a wrong
    handshake is answered <not-authorized/> only after
    limits.auth_failure_delay (guessing is slowed down)."""
    srv = server_factory({"components": {GATEWAY: {"secret": SECRET}},
                          "limits": {"negotiation_timeout": "1s", "auth_failure_delay": "0.5s"}},
                         start=False)
    add_component_listener(srv)
    srv.start()
    with RawClient(srv.comp_port, domain=GATEWAY) as rc:
        rc.open_stream(features=False, to=GATEWAY, xmlns=NS_COMPONENT, version=None, lang=None)
        rc.expect_stream_error("connection-timeout", timeout=xmpptest.scaled(4))
    with RawClient(srv.comp_port, domain=GATEWAY) as rc:
        rc.open_stream(features=False, to=GATEWAY, xmlns=NS_COMPONENT, version=None, lang=None)
        t0 = time.monotonic()
        rc.send("<handshake>%s</handshake>" % handshake_value(rc.reader.header.get("id"), "wrong"))
        rc.expect_stream_error("not-authorized", timeout=xmpptest.scaled(4))
        assert time.monotonic() - t0 >= 0.4
