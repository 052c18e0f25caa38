"""Federation with a real ejabberd (Debian's 23.01) next to Prosody
(test_s2s_prosody.py): RFC 6120 §3.2, §5, §8; RFC 6121 §3, §4; XEP-0178
SASL EXTERNAL; XEP-0220 Server Dialback, which ejabberd recognises only as
db:result / db:verify with the prefix declared on the stream.

xmppd serves xmppd.example on 127.0.0.1, ejabberd serves ejabberd.example
on 127.0.0.3 (ejabberd_peer.py). Two set-ups, each run against the same
scenarios:

  external  both servers trust the test CA: SASL EXTERNAL both ways;
  dialback  neither trusts the other's certificate: dialback both ways,
            the receiving server asking the authoritative one.

Scenarios: a message each way; a presence subscription each way with
presence exchange and a probe at login; an IQ each way (XEP-0199 ping and
XEP-0092 version to the other server, answered there).
"""

import re
import xml.etree.ElementTree as ET

import pytest

from conftest import Account, Server, _finish, unique_user
from dns_fixture import DNSServer
from ejabberd_peer import EjabberdPeer, connect_peer, require_ejabberd
from prosody_peer import TestCA, free_port
import federation_clients
from federation_clients import login_local, run_with_peer_log
from xmpptest import scaled

XMPPD_DOMAIN = "xmppd.example"
PEER_DOMAIN = "ejabberd.example"


@pytest.fixture(scope="module", params=["external", "dialback"])
def fed(request, tmp_path_factory):
    """(xmppd Server, EjabberdPeer, mode) federating with each other."""
    require_ejabberd()
    mode = request.param
    base = tmp_path_factory.mktemp("s2s-ej-" + mode)
    ca = TestCA(base / "ca")
    cert, key = ca.issue(XMPPD_DOMAIN)
    dns = DNSServer()
    s2s_port = free_port()
    # a numeric target: see ejabberd_peer
    dns.add_srv("_xmpp-server._tcp." + XMPPD_DOMAIN, 0, 0, s2s_port, "127.0.0.1")
    peer = EjabberdPeer(PEER_DOMAIN, ca, dns.port, trust_ca=(mode == "external"))
    s2s = {
        "routes": {PEER_DOMAIN: "%s:%d" % (peer.address, peer.s2s_port)},
        "dns_servers": ["127.0.0.1:%d" % dns.port],
        "connect_timeout": "5s",
    }
    if mode == "external":
        s2s["ca_file"] = str(ca.cert)
    srv = Server(base / "xmppd", base, {
        "tls": {"cert": str(cert), "key": str(key)},
        "hosts": {"localhost": None, XMPPD_DOMAIN: {}},
        "modules": {"roster": True, "presence": True, "ping": True, "version": True},
        "s2s": s2s,
    }, name="xmppd-ej-" + mode)
    srv.config["listeners"].append({"type": "s2s", "address": "127.0.0.1", "port": s2s_port})
    srv.write_config()
    srv.start()
    try:
        peer.start()
        yield srv, peer, mode
    finally:
        try:
            peer.stop()
            peer.cleanup()
            _finish(srv)
        finally:
            dns.close()


def new_pair(srv, peer):
    a = Account(unique_user("x"), "pw-" + unique_user("p"), domain=XMPPD_DOMAIN)
    srv.adduser(a.jid, a.password)
    b = Account(unique_user("e"), "pw-" + unique_user("p"), domain=PEER_DOMAIN)
    peer.adduser(b.user, b.password)
    return a, b


def check_auth_path(srv, mode):
    """The streams in both directions used the set-up's mechanism."""
    log = srv.read_log()
    how = "SASL EXTERNAL" if mode == "external" else "dialback"
    assert re.search(r"s2s-out.*%s.*authenticated by %s" % (PEER_DOMAIN, how), log), log[-3000:]
    assert re.search(r"s2s-in.*%s.*authenticated for %s by %s" % (PEER_DOMAIN, XMPPD_DOMAIN, how),
                     log), log[-3000:]


async def login_peer(peer, acct, presence=None):
    return await federation_clients.login_peer(connect_peer, peer, acct, presence, timeout=15)


async def iq_get(c, to, payload):
    iq = c.Iq()
    iq["type"], iq["to"] = "get", to
    iq.append(ET.fromstring(payload))
    return await iq.send(timeout=scaled(20))


def test_messages_both_ways(fed):
    """RFC 6120 §8.1, §10.4: a chat message each way, from/to intact."""
    srv, peer, mode = fed
    a, b = new_pair(srv, peer)

    async def scenario():
        ca = await login_local(srv, a, presence=0)
        cb = await login_peer(peer, b, presence=0)
        ca.send_message(mto=b.jid, mbody="hello ejabberd", mtype="chat")
        m = await cb.next_message(timeout=scaled(20), pred=lambda m: m["body"] == "hello ejabberd")
        assert m["from"] == ca.boundjid and m["type"] == "chat"
        cb.send_message(mto=ca.boundjid.full, mbody="hello xmppd", mtype="chat")
        m = await ca.next_message(timeout=scaled(20), pred=lambda m: m["body"] == "hello xmppd")
        assert m["from"] == cb.boundjid and m["to"] == ca.boundjid
    run_with_peer_log(peer, scenario(), scaled(60))
    check_auth_path(srv, mode)


def test_iq_both_ways(fed):
    """RFC 6120 §8.2.3 across servers: xmppd's user pings ejabberd.example
    and asks its version (XEP-0199, XEP-0092); ejabberd's user does the same
    to xmppd.example; each answer comes back with the request's id."""
    srv, peer, mode = fed
    a, b = new_pair(srv, peer)

    async def scenario():
        ca = await login_local(srv, a)
        cb = await login_peer(peer, b)
        r = await iq_get(ca, PEER_DOMAIN, "<ping xmlns='urn:xmpp:ping'/>")
        assert r["type"] == "result" and r["from"] == PEER_DOMAIN
        r = await iq_get(ca, PEER_DOMAIN, "<query xmlns='jabber:iq:version'/>")
        assert "ejabberd" in (r.xml.findtext("{jabber:iq:version}query/{jabber:iq:version}name") or "")
        r = await iq_get(cb, XMPPD_DOMAIN, "<ping xmlns='urn:xmpp:ping'/>")
        assert r["type"] == "result" and r["from"] == XMPPD_DOMAIN
        r = await iq_get(cb, XMPPD_DOMAIN, "<query xmlns='jabber:iq:version'/>")
        assert "xmppd" in (r.xml.findtext("{jabber:iq:version}query/{jabber:iq:version}name") or "")
    run_with_peer_log(peer, scenario(), scaled(60))


def test_subscriptions_both_ways_and_probe(fed):
    """RFC 6121 §3.1 across servers each way with presence exchange
    (§3.1.5, §4.2), a change (§4.4), a probe at a new login (§4.3) and
    unavailable at logout (§4.5)."""
    srv, peer, mode = fed
    a, b = new_pair(srv, peer)

    async def scenario():
        ca = await login_local(srv, a, presence=1)
        cb = await login_peer(peer, b, presence=1)
        ca.send_presence(pto=b.jid, ptype="subscribe")
        p = await cb.next_presence(timeout=scaled(20), pred=lambda p: p["type"] == "subscribe")
        assert p["from"].bare == a.jid
        cb.send_presence(pto=a.jid, ptype="subscribed")
        p = await ca.next_presence(timeout=scaled(20), pred=lambda p: p["type"] == "subscribed")
        assert p["from"].bare == b.jid
        await ca.next_presence(timeout=scaled(20),
                               pred=lambda p: p["from"] == cb.boundjid and p["type"] == "available")
        cb.send_presence(pto=a.jid, ptype="subscribe")
        p = await ca.next_presence(timeout=scaled(20), pred=lambda p: p["type"] == "subscribe")
        assert p["from"].bare == b.jid
        ca.send_presence(pto=b.jid, ptype="subscribed")
        p = await cb.next_presence(timeout=scaled(20), pred=lambda p: p["type"] == "subscribed")
        assert p["from"].bare == a.jid
        await cb.next_presence(timeout=scaled(20),
                               pred=lambda p: p["from"] == ca.boundjid and p["type"] == "available")
        cb.send_presence(pstatus="busy", pshow="dnd", ppriority=1)
        p = await ca.next_presence(timeout=scaled(20),
                                   pred=lambda p: p["from"].bare == b.jid and p["show"] == "dnd")
        ca2 = await login_local(srv, a, presence=0)
        p = await ca2.next_presence(timeout=scaled(20), pred=lambda p: p["from"].bare == b.jid)
        assert p["show"] == "dnd"
        await ca2.stop()
        await ca.stop()
        await cb.next_presence(timeout=scaled(20),
                               pred=lambda p: p["from"].bare == a.jid and p["type"] == "unavailable")
    run_with_peer_log(peer, scenario(), scaled(90))
    check_auth_path(srv, mode)
