"""Federation with a real Prosody (RFC 6120 §3.2, §5, §6; RFC 6121 §3, §4;
XEP-0178 SASL EXTERNAL; XEP-0220 Server Dialback; XEP-0185 keys).

xmppd serves xmppd.example on 127.0.0.1, Prosody serves prosody.example on
127.0.0.2. xmppd reaches Prosody through a static route (s2s.routes);
Prosody reaches xmppd through SRV records in the test DNS server
(dns_fixture), which it asks through libunbound. Both certificates come
from a test CA. Two set-ups, each run against the same scenarios:

  external  both servers trust the CA: each authenticates to the other
            with SASL EXTERNAL (XEP-0178 §3), no dialback;
  dialback  neither trusts the other's certificate: TLS still protects the
            streams (s2s require_encryption), and each side proves its
            domain with dialback, the receiving server asking the
            authoritative one over its own outgoing stream (XEP-0220 §2.3).

The scenarios: a message each way; a presence subscription each way with
presence exchange (RFC 6121 §3.1, §4.2) and a probe at login (§4.3).
"""

import re

import pytest

import prosody_peer
from conftest import Account, Server, _finish, unique_user
from dns_fixture import DNSServer
from prosody_peer import ProsodyPeer, TestCA, connect_peer, free_port
import federation_clients
from federation_clients import login_local, run_with_peer_log
from xmpptest import scaled

XMPPD_DOMAIN = "xmppd.example"
PEER_DOMAIN = "prosody.example"


@pytest.fixture(scope="module", params=["external", "dialback"])
def fed(request, tmp_path_factory):
    """(xmppd Server, ProsodyPeer, mode) federating with each other."""
    prosody_peer.require_prosody()
    mode = request.param
    base = tmp_path_factory.mktemp("s2s-" + mode)
    ca = TestCA(base / "ca")
    cert, key = ca.issue(XMPPD_DOMAIN)
    dns = DNSServer()
    s2s_port = free_port()
    dns.add_srv("_xmpp-server._tcp." + XMPPD_DOMAIN, 0, 0, s2s_port, "s2s." + XMPPD_DOMAIN)
    dns.add_a("s2s." + XMPPD_DOMAIN, "127.0.0.1")
    peer = ProsodyPeer(base / "prosody", PEER_DOMAIN, ca, dns.port, trust_ca=(mode == "external"))
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
        "modules": {"roster": True, "presence": True},
        "s2s": s2s,
    }, name="xmppd-" + mode)
    srv.config["listeners"].append({"type": "s2s", "address": "127.0.0.1", "port": s2s_port})
    srv.write_config()
    srv.start()
    peer.start()
    yield srv, peer, mode
    try:
        peer.stop()
        _finish(srv)
    finally:
        dns.close()


def new_pair(srv, peer):
    a = Account(unique_user("x"), "pw-" + unique_user("p"), domain=XMPPD_DOMAIN)
    srv.adduser(a.jid, a.password)
    b = Account(unique_user("p"), "pw-" + unique_user("p"), domain=PEER_DOMAIN)
    peer.adduser(b.user, b.password)
    return a, b


def check_auth_path(srv, peer, mode):
    """The streams in both directions used the set-up's mechanism."""
    log = srv.read_log()
    if mode == "external":
        assert re.search(r"s2s-out.*%s.*authenticated by SASL EXTERNAL" % PEER_DOMAIN, log), log[-3000:]
        assert re.search(r"s2s-in.*%s.*authenticated for %s by SASL EXTERNAL"
                         % (PEER_DOMAIN, XMPPD_DOMAIN), log), log[-3000:]
        assert "dialback" not in re.sub(r"<[^>]*>", "", "\n".join(
            l for l in log.splitlines() if "authenticated" in l))
    else:
        assert re.search(r"s2s-out.*%s.*authenticated by dialback" % PEER_DOMAIN, log), log[-3000:]
        assert re.search(r"s2s-in.*%s.*authenticated for %s by dialback\n"
                         % (PEER_DOMAIN, XMPPD_DOMAIN), log), log[-3000:]
        assert "SASL EXTERNAL" not in "\n".join(l for l in log.splitlines() if "authenticated" in l)


async def login_peer(peer, acct, presence=None):
    return await federation_clients.login_peer(connect_peer, peer, acct, presence)


def test_messages_both_ways(fed):
    """RFC 6120 §8.1, §10.4: a chat message from an xmppd account reaches a
    Prosody account and the answer comes back, with from/to intact."""
    srv, peer, mode = fed
    a, b = new_pair(srv, peer)

    async def scenario():
        ca = await login_local(srv, a, presence=0)
        cb = await login_peer(peer, b, presence=0)
        ca.send_message(mto=b.jid, mbody="hello prosody", mtype="chat")
        m = await cb.next_message(timeout=scaled(15), pred=lambda m: m["body"] == "hello prosody")
        assert m["from"] == ca.boundjid and m["type"] == "chat"
        cb.send_message(mto=ca.boundjid.full, mbody="hello xmppd", mtype="chat")
        m = await ca.next_message(timeout=scaled(15), pred=lambda m: m["body"] == "hello xmppd")
        assert m["from"] == cb.boundjid and m["to"] == ca.boundjid
        # Both streams are up now: the next message goes straight through.
        ca.send_message(mto=b.jid, mbody="again", mtype="chat")
        m = await cb.next_message(pred=lambda m: m["body"] == "again")
        assert m["from"] == ca.boundjid
    run_with_peer_log(peer, scenario(), scaled(45))
    check_auth_path(srv, peer, mode)


def test_subscriptions_both_ways_and_probe(fed):
    """RFC 6121 §3.1 across servers: xmppd's user subscribes to Prosody's
    and is approved, then the reverse; each side sees the other's presence
    (§3.1.5, §4.2), and a fresh login gets the contact's presence through a
    probe answered by the remote server (§4.3)."""
    srv, peer, mode = fed
    a, b = new_pair(srv, peer)

    async def scenario():
        ca = await login_local(srv, a, presence=1)
        cb = await login_peer(peer, b, presence=1)
        # a -> b
        ca.send_presence(pto=b.jid, ptype="subscribe")
        p = await cb.next_presence(timeout=scaled(15), pred=lambda p: p["type"] == "subscribe")
        assert p["from"].bare == a.jid
        cb.send_presence(pto=a.jid, ptype="subscribed")
        p = await ca.next_presence(timeout=scaled(15), pred=lambda p: p["type"] == "subscribed")
        assert p["from"].bare == b.jid
        p = await ca.next_presence(timeout=scaled(15),
                                   pred=lambda p: p["from"].bare == b.jid and p["type"] == "available")
        assert p["from"] == cb.boundjid
        # b -> a
        cb.send_presence(pto=a.jid, ptype="subscribe")
        p = await ca.next_presence(timeout=scaled(15), pred=lambda p: p["type"] == "subscribe")
        assert p["from"].bare == b.jid
        ca.send_presence(pto=b.jid, ptype="subscribed")
        p = await cb.next_presence(timeout=scaled(15), pred=lambda p: p["type"] == "subscribed")
        assert p["from"].bare == a.jid
        p = await cb.next_presence(timeout=scaled(15),
                                   pred=lambda p: p["from"].bare == a.jid and p["type"] == "available")
        assert p["from"] == ca.boundjid
        # b changes presence: a (subscribed to b) is told (§4.4).
        cb.send_presence(pstatus="busy", pshow="dnd", ppriority=1)
        p = await ca.next_presence(timeout=scaled(15),
                                   pred=lambda p: p["from"].bare == b.jid and p["show"] == "dnd")
        assert p["status"] == "busy"
        # a logs in again elsewhere: its server probes b's (§4.3).
        ca2 = await login_local(srv, a, presence=0)
        p = await ca2.next_presence(timeout=scaled(15), pred=lambda p: p["from"].bare == b.jid)
        assert p["show"] == "dnd" and p["to"] == ca2.boundjid  # slixmpp: type is the show
        # a goes offline entirely: b sees unavailable (§4.5).
        await ca2.stop()
        await ca.stop()
        p = await cb.next_presence(timeout=scaled(15),
                                   pred=lambda p: p["from"].bare == a.jid and p["type"] == "unavailable")
    run_with_peer_log(peer, scenario(), scaled(60))
    check_auth_path(srv, peer, mode)
