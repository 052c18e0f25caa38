"""XEP-0288 bidirectional server-to-server streams.

Between two xmppd servers (s2s_pair) and between xmppd and Prosody (its
mod_s2s_bidi): the server that connects asks for bidi (<bidi
xmlns='urn:xmpp:bidi'/>, §2.2) when the other offers it (§2.1), and after
authentication the receiving server sends its stanzas back on that same
stream instead of opening a second connection. Checked over SASL EXTERNAL
and over dialback; a slow reader on such a stream is cut off like any
other (issue 11.1).
"""

import os
import re
import signal
import time

import pytest

import prosody_peer
from conftest import Account, Server, _finish, unique_user
from dns_fixture import DNSServer
from prosody_peer import ProsodyPeer, TestCA, connect_peer, free_port
from s2s_pair import make_pair, pair_accounts, say_hello, stop_pair
from xmpptest import RawClient, connect, run, scaled


@pytest.fixture(scope="module", params=["external", "dialback"])
def pair(request, tmp_path_factory):
    over = {"s2s": {"authentication": "dialback"}} if request.param == "dialback" else {}
    servers = make_pair(tmp_path_factory.mktemp("bidi-" + request.param), over)
    yield servers + (request.param,)
    stop_pair(servers)


def test_xep0288_one_stream_carries_both_directions(pair):
    """A messages B (A connects, asks for bidi); B's answer and its own
    message come back on A's stream: B opens no connection to A (with
    SASL EXTERNAL; with dialback B connects to A only as the authoritative
    server, and even then the stanzas ride on the bidirectional stream)."""
    a_srv, b_srv, mode = pair
    a, b = pair_accounts(a_srv, b_srv)
    mark_a, mark_b = len(a_srv.read_log()), len(b_srv.read_log())

    async def scenario():
        ca = await connect(a_srv, a, presence=0)
        cb = await connect(b_srv, b, presence=0)
        ca.send_message(mto=b.jid, mbody="to b", mtype="chat")
        await cb.next_message(timeout=scaled(15), pred=lambda m: m["body"] == "to b")
        cb.send_message(mto=ca.boundjid.full, mbody="to a", mtype="chat")
        m = await ca.next_message(timeout=scaled(15), pred=lambda m: m["body"] == "to a")
        assert m["from"] == cb.boundjid
    run(scenario())
    log_a, log_b = a_srv.read_log()[mark_a:], b_srv.read_log()[mark_b:]
    assert "bidirectional stream (XEP-0288)" in log_b, log_b[-2000:]
    if mode == "external":
        assert not re.search(r"s2s-out: a\.example: connecting", log_b), log_b[-3000:]
        assert not re.search(r"s2s-in: b\.example .*authenticated for a\.example", log_a), log_a[-3000:]


def test_xep0288_slow_reader_on_a_bidirectional_stream(tmp_path_factory):
    """Issue 11.1 on an incoming stream: B sends to A over the stream A
    opened; when A stops reading (SIGSTOP), B closes that stream with
    policy-violation once max_send_buffer waits, and B's memory stays
    bounded."""
    from test_slow_reader import LIMIT, RSS_SLACK, flood_until_closed, no_quarantine
    with no_quarantine():
        pair = make_pair(tmp_path_factory.mktemp("bidi-slow"), {"limits": {"max_send_buffer": LIMIT}})
    a_srv, b_srv = pair
    try:
        a, b = pair_accounts(a_srv, b_srv)
        say_hello(a_srv, b_srv, a, b)
        user = RawClient(b_srv.port, domain="b.example")
        user.login(b.user, b.password)
        os.kill(a_srv.proc.pid, signal.SIGSTOP)
        try:
            # headlines: A drops them for an offline account without a bounce
            # (RFC 6121 §8.5.2.2.1), so its own stream to B stays quiet
            msg = "<message to='%s' type='headline'><body>%s</body></message>" % (a.jid, "z" * 60000)
            closed, growth = flood_until_closed(b_srv, lambda: user.send(msg * 4),
                                                40 * 1024 * 1024 // (4 * 60000))
        finally:
            os.kill(a_srv.proc.pid, signal.SIGCONT)
        log = b_srv.read_log()
        assert closed, "the bidirectional stream to a stalled peer was never closed:\n" + log[-3000:]
        assert growth < RSS_SLACK, "RSS grew by %d bytes" % growth
        assert re.search(r"s2s-in: a\.example .*stream error policy-violation", log), log[-3000:]
        user.close()
        # A reads its backlog before it is stopped (its shutdown would
        # otherwise wait for streams still full of what B sent)
        deadline = time.monotonic() + scaled(20)
        while not re.search(r"s2s-in: a\.example .*stream closed", b_srv.read_log()):
            assert time.monotonic() < deadline, "B never finished closing the stream"
            time.sleep(0.1)
    finally:
        stop_pair(pair)


@pytest.fixture(scope="module")
def with_prosody(tmp_path_factory):
    prosody_peer.require_prosody()
    base = tmp_path_factory.mktemp("bidi-prosody")
    ca = TestCA(base / "ca")
    cert, key = ca.issue("xmppd.example")
    dns = DNSServer()
    s2s_port = free_port()
    dns.add_srv("_xmpp-server._tcp.xmppd.example", 0, 0, s2s_port, "s2s.xmppd.example")
    dns.add_a("s2s.xmppd.example", "127.0.0.1")
    peer = ProsodyPeer(base / "prosody", "prosody.example", ca, dns.port, bidi=True)
    srv = Server(base / "xmppd", base, {
        "tls": {"cert": str(cert), "key": str(key)},
        "hosts": {"localhost": None, "xmppd.example": {}},
        "s2s": {"routes": {"prosody.example": "%s:%d" % (peer.address, peer.s2s_port)},
                "dns_servers": ["127.0.0.1:%d" % dns.port], "ca_file": str(ca.cert)},
    }, name="xmppd-bidi")
    srv.domain = "xmppd.example"
    srv.config["listeners"].append({"type": "s2s", "address": "127.0.0.1", "port": s2s_port})
    srv.write_config()
    srv.start()
    peer.start()
    yield srv, peer
    try:
        peer.stop()
        _finish(srv)
    finally:
        dns.close()


def test_xep0288_with_prosody(with_prosody):
    """xmppd connects to Prosody (mod_s2s_bidi) and asks for bidi; Prosody's
    answer comes back on that stream, Prosody opens no stream of its own."""
    srv, peer = with_prosody
    a = Account(unique_user("x"), "pw-" + unique_user("p"), domain="xmppd.example")
    srv.adduser(a.jid, a.password)
    b = Account(unique_user("p"), "pw-" + unique_user("p"), domain="prosody.example")
    peer.adduser(b.user, b.password)

    async def scenario():
        ca = await connect(srv, a, presence=0)
        cb = await connect_peer(peer, b.user, b.password, timeout=scaled(10))
        cb.send_presence(ppriority=0)
        ca.send_message(mto=b.jid, mbody="to prosody", mtype="chat")
        await cb.next_message(timeout=scaled(15), pred=lambda m: m["body"] == "to prosody")
        cb.send_message(mto=ca.boundjid.full, mbody="to xmppd", mtype="chat")
        await ca.next_message(timeout=scaled(15), pred=lambda m: m["body"] == "to xmppd")
    try:
        run(scenario(), timeout=scaled(45))
    except BaseException as e:
        raise AssertionError("%s\n--- prosody ---\n%s" % (e, peer.output_tail(150))) from e
    log = srv.read_log()
    assert not re.search(r"s2s-in: prosody\.example .*authenticated", log), \
        "Prosody opened a stream of its own:\n" + log[-3000:]
