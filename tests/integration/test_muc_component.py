"""The IRC gateway case: an external multi-user chat service (a component,
XEP-0114, as biboumi is) on irc.localhost next to the built-in room
service on conference.localhost. Both serve rooms at the same time to the
same client; the component cannot speak for the built-in service's
domain; a configuration giving both the same domain is refused at start.

The gateway here is a small fake written with slixmpp's ComponentXMPP: it
answers a join with XEP-0045 self-presence and reflects groupchat
messages, which is all the server has to route."""

import asyncio

import pytest

import xmpptest
from conftest import Server, _finish
from muc_util import (MUC, NS_MUC, NS_USER, codes, create, groupchat, join_ok, message_from,
                      room_jid)
from xmpptest import connect, run

IRC = "irc.localhost"
SECRET = "irc-gateway-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("test_muc_component"), cert_dir,
                 {"components": {IRC: {"secret": SECRET}}, "modules": {"muc": {}}},
                 name="test_muc_component")
    srv.add_component_listener()
    srv.start()
    yield srv
    _finish(srv)


class FakeGateway(xmpptest.slixmpp.ComponentXMPP):
    """A MUC service on a component stream: joins are answered with a
    self-presence, groupchat messages reflected to the sender."""

    def __init__(self, domain, port, claim_from=None):
        super().__init__(domain, SECRET, "127.0.0.1", port)
        self.port = port
        self.use_ipv6 = self.use_aiodns = self.whitespace_keepalive = self.auto_reconnect = False
        self.claim_from = claim_from
        self.stream_errors = []
        self._ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _: self._ready.done() or self._ready.set_result(True))
        self.add_event_handler("stream_error", lambda e: self.stream_errors.append(e["condition"]))
        self.add_event_handler("presence_available", self.on_join)
        self.add_event_handler("message", self.on_groupchat)

    async def get_dns_records(self, domain, port=None):
        return [(domain, "127.0.0.1", self.port)]

    def on_join(self, p):
        if p.xml.find("{%s}x" % NS_MUC) is None:
            return
        self.send_raw("<presence from='%s' to='%s'><x xmlns='%s'><item affiliation='none' "
                      "role='participant'/><status code='110'/></x></presence>"
                      % (self.claim_from or p["to"], p["from"], NS_USER))

    def on_groupchat(self, m):
        if m["type"] != "groupchat":
            return
        self.send_raw("<message type='groupchat' from='%s/%s' to='%s'><body>%s</body></message>"
                      % (m["to"].bare, "relay", m["from"], xmpptest.xml_escape(m["body"])))

    async def start(self):
        self.connect()
        await asyncio.wait_for(self._ready, xmpptest.DEFAULT_TIMEOUT)
        return self

    async def stop(self):
        try:
            self.disconnect(wait=1)
            await asyncio.wait_for(self.disconnected, 2)
        except Exception:
            self.abort()


def test_gateway_and_builtin_rooms_side_by_side(server, accounts):
    """A client is in a room of the built-in service and in a gateway channel
    at once: each service gets its own stanzas and answers them."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        gw = await FakeGateway(IRC, server.comp_port).start()
        try:
            ca, cb = await connect(server, a), await connect(server, b)
            await create(ca, room, "o")
            await join_ok(cb, room, "b")
            p = await join_ok(ca, "chan@%s" % IRC, "ircnick")
            assert 110 in codes(p) and str(p["from"]) == "chan@%s/ircnick" % IRC
            groupchat(ca, "chan@%s" % IRC, "to irc")
            m = await message_from(ca, "chan@%s" % IRC, lambda m: m["body"] == "to irc")
            assert str(m["from"]) == "chan@%s/relay" % IRC
            groupchat(ca, room, "to muc")
            m = await message_from(cb, room, lambda m: m["body"] == "to muc")
            assert str(m["from"]) == room + "/o"
        finally:
            await gw.stop()
    run(go())


def test_gateway_cannot_speak_for_the_room_service(server, accounts):
    """XEP-0114 §3: a component may send only from its own domain; claiming
    the built-in service's domain ends its stream with <invalid-from/>."""
    a, = accounts(1)

    async def go():
        gw = await FakeGateway(IRC, server.comp_port, claim_from="fake@%s/x" % MUC).start()
        try:
            ca = await connect(server, a)
            ca.send_raw("<presence to='chan@%s/n'><x xmlns='%s'/></presence>" % (IRC, NS_MUC))
            for _ in range(50):
                if gw.stream_errors:
                    break
                await asyncio.sleep(0.1)
            assert gw.stream_errors == ["invalid-from"]
        finally:
            await gw.stop()
    run(go())


def test_room_domain_taken_by_a_component_is_refused(tmp_path_factory, cert_dir):
    """A configuration where the room service's domain is also a configured
    component does not start: the module says the domain is taken."""
    srv = Server(tmp_path_factory.mktemp("clash"), cert_dir,
                 {"components": {MUC: {"secret": SECRET}}, "modules": {"muc": {}}}, name="clash")
    try:
        with pytest.raises(RuntimeError) as e:
            srv.start()
        assert "modules.muc" in str(e.value) and MUC in str(e.value)
    finally:
        _finish(srv)
