"""Bounded memory for peers that stop reading (issue 11.1).

A peer that keeps a stream open but never reads what the server sends must
not make the server's memory grow: once more than limits.max_send_buffer
waits for it, the stream is closed with <policy-violation/> (RFC 6120
§4.9.3.14). Checked on every stream kind: c2s over STARTTLS (where the TLS
filter moves the bytes into the socket buffer below it, which must count
too) and over direct TLS, XEP-0114 components, and s2s outgoing streams to a
peer server that stopped (SIGSTOP) after STARTTLS and dialback.

Each test pushes tens of MiB at the stalled peer and checks that the
server's resident memory grew by a few MiB at most.
"""

import contextlib
import hashlib
import os
import secrets
import signal
import time

import pytest

from conftest import Server, _finish
from prosody_peer import free_port
from s2s_pair import make_pair, pair_accounts, say_hello, stop_pair
from xmpptest import RawClient, scaled

LIMIT = 256 * 1024
VCARD_PHOTO = 45000            # bytes of base64 in the vCard: ~45 kB per answer
PUSHED = 40 * 1024 * 1024      # what a test offers a stalled peer at most
RSS_SLACK = 8 * 1024 * 1024    # the growth allowed: well under what is pushed


@contextlib.contextmanager
def no_quarantine():
    """Under AddressSanitizer freed memory sits in a quarantine (256 MiB by
    default), so RSS measures churn, not what is held: servers started
    inside run without it."""
    old = os.environ.get("ASAN_OPTIONS")
    if old is not None:
        os.environ["ASAN_OPTIONS"] = old + ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    try:
        yield
    finally:
        if old is not None:
            os.environ["ASAN_OPTIONS"] = old


@pytest.fixture(scope="module", autouse=True)
def asan_without_quarantine():
    with no_quarantine():
        yield


def rss(proc):
    with open("/proc/%d/status" % proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % proc.pid)


def closed_for_slow_reader(srv, since):
    return "policy-violation" in srv.read_log()[since:]


def flood_until_closed(srv, send_batch, batches):
    """Calls send_batch() until the server's log reports the
    policy-violation close or `batches` ran out; returns (closed, peak RSS
    growth)."""
    mark = len(srv.read_log())
    base = rss(srv.proc)
    peak = 0
    for _ in range(batches):
        send_batch()
        time.sleep(0.02)
        peak = max(peak, rss(srv.proc) - base)
        if closed_for_slow_reader(srv, mark):
            time.sleep(0.2)
            return True, max(peak, rss(srv.proc) - base)
    time.sleep(0.5)
    return closed_for_slow_reader(srv, mark), max(peak, rss(srv.proc) - base)


def read_to_end(rc, timeout):
    """Everything the server still sends, until it closes the connection."""
    rc.wait_closed(timeout)
    return bytes(rc.raw)


@pytest.fixture(scope="module")
def config_overrides():
    return {"limits": {"max_send_buffer": LIMIT},
            "modules": {"vcard": {"max_size": "128k"}},
            "components": {"slow.localhost": {"secret": "slow-secret"}}}


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_c2s_client_that_stops_reading_is_cut_off(server, accounts, direct_tls):
    """RFC 6120 §4.9.3.14: a client asking for a 45 kB vCard again and again
    without reading the answers gets policy-violation once max_send_buffer
    is queued for it, below the STARTTLS filter as well as above it."""
    (a,) = accounts(1)
    rc = RawClient(server.direct_tls_port if direct_tls else server.port, direct_tls=direct_tls)
    rc.login(a.user, a.password)
    photo = secrets.token_urlsafe(VCARD_PHOTO)[:VCARD_PHOTO]
    res = rc.iq("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>%s</BINVAL>"
                "</PHOTO></vCard>" % photo, type_="set")
    assert res.get("type") == "result"
    get = "<iq type='get' id='v'><vCard xmlns='vcard-temp'/></iq>" * 10

    closed, growth = flood_until_closed(server, lambda: rc.send(get),
                                        PUSHED // (10 * VCARD_PHOTO))
    assert closed, "the server never closed the stream of a client that stopped reading " \
                   "(RSS grew by %d bytes)" % growth
    assert growth < RSS_SLACK, "RSS grew by %d bytes for one slow reader" % growth
    data = read_to_end(rc, scaled(10))
    assert b"<policy-violation" in data[-2000:], data[-500:]
    rc.close()


def test_component_that_stops_reading_is_cut_off(server, accounts):
    """XEP-0114 with RFC 6120 §4.9.3.14: a component that stops reading
    while users send it large messages is disconnected with
    policy-violation; the users' server keeps its memory."""
    (a,) = accounts(1)
    comp = RawClient(server.comp_port, domain="slow.localhost")
    comp.open_stream(features=False, to="slow.localhost", xmlns="jabber:component:accept",
                     version=None, lang=None)
    sid = comp.reader.header.get("id")
    comp.send("<handshake>%s</handshake>" % hashlib.sha1((sid + "slow-secret").encode()).hexdigest())
    comp.next_element()
    user = RawClient(server.port)
    user.login(a.user, a.password)
    body = "x" * 60000
    msg = "<message to='bot@slow.localhost' type='headline'><body>%s</body></message>" % body
    closed, growth = flood_until_closed(server, lambda: user.send(msg * 4),
                                        PUSHED // (4 * len(body)))
    assert closed, "a component that stopped reading was never closed (RSS +%d)" % growth
    assert growth < RSS_SLACK, "RSS grew by %d bytes for one slow component" % growth
    data = read_to_end(comp, scaled(10))
    assert b"<policy-violation" in data[-2000:], data[-500:]
    comp.close()
    user.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir, config_overrides):
    srv = Server(tmp_path_factory.mktemp("test_slow_reader"), cert_dir, config_overrides,
                 name="test_slow_reader")
    srv.comp_port = free_port()
    srv.config["listeners"].append({"type": "component", "address": "127.0.0.1",
                                    "port": srv.comp_port})
    srv.write_config()
    srv.start()
    yield srv
    _finish(srv)


# ---------------------------------------------------------------------------
# s2s: an outgoing stream to a peer server that stopped
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    servers = make_pair(tmp_path_factory.mktemp("slow-s2s"), {"limits": {"max_send_buffer": LIMIT}})
    yield servers
    for srv in servers:
        if srv.running:
            srv.proc.send_signal(signal.SIGCONT)
    stop_pair(servers)


def test_s2s_peer_that_stops_reading_is_cut_off(pair):
    """RFC 6120 §4.9.3.14 on an outgoing s2s stream (STARTTLS, dialback):
    when the receiving server stops reading, the stream is closed with
    policy-violation once max_send_buffer is queued, and A's memory stays
    bounded."""
    a_srv, b_srv = pair
    a, b = pair_accounts(a_srv, b_srv)
    say_hello(a_srv, b_srv, a, b)

    user = RawClient(a_srv.port, domain="a.example")
    user.login(a.user, a.password)
    os.kill(b_srv.proc.pid, signal.SIGSTOP)
    try:
        body = "y" * 60000
        msg = "<message to='%s' type='headline'><body>%s</body></message>" % (b.jid, body)
        closed, growth = flood_until_closed(a_srv, lambda: user.send(msg * 4),
                                            PUSHED // (4 * len(body)))
    finally:
        os.kill(b_srv.proc.pid, signal.SIGCONT)
    assert closed, "an s2s stream to a stalled peer was never closed (RSS +%d)" % growth
    assert growth < RSS_SLACK, "RSS grew by %d bytes for one stalled peer" % growth
    user.close()
