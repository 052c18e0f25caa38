"""Server-to-server behaviour that needs no Prosody: two xmppd servers
federating through SRV records of a test DNS server, and scripted peers
for the error paths.

  a.example  xmppd A: s2s on STARTTLS and direct TLS ports; static routes
             to the scripted peers
  b.example  xmppd B
  DNS        _xmpp-server._tcp.b.example: priority 5 -> a closed port,
             priority 10 -> B;  _xmpps-server._tcp.a.example -> A's direct
             TLS port (XEP-0368);  refused.example: target "." ;
             nx.example and nosrv.example: nothing at all

Covered: RFC 6120 §3.2.1 (SRV order, fallback to the domain, "."),
XEP-0368 (direct TLS), RFC 6120 §8.3.3 bounces (remote-server-not-found,
remote-server-timeout, resource-constraint for a full queue), idle close and
one stream reused per domain, and on the receiving side RFC 6120 §4.9.3
stream errors (not-authorized, policy-violation, invalid-from,
host-unknown), XEP-0220 dialback through the authoritative server
(including type='invalid' and dialback errors), the authoritative answers
with XEP-0185 keys, and configuration errors.
"""

import asyncio
import hashlib
import hmac
import json
import queue
import re
import secrets
import socket
import ssl
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import XMPPCTL, Account, Server, _finish, unique_user
from dns_fixture import DNSServer
from prosody_peer import TestCA, free_port
from xmpptest import (NS_STREAM, NS_TLS, RawClient, StreamReader, XMPPTestError, connect,
                      error_condition, q, run, scaled, xml_escape)

NS_SERVER = "jabber:server"
NS_DB = "jabber:server:dialback"
SECRET = "a fixed dialback secret for the tests"


def db_key(secret, receiving, originating, stream_id):
    """XEP-0185 §2: HMAC-SHA256(hex(SHA256(secret)), 'recv orig id'), hex."""
    k = hashlib.sha256(secret.encode()).hexdigest().encode()
    return hmac.new(k, ("%s %s %s" % (receiving, originating, stream_id)).encode(),
                    hashlib.sha256).hexdigest()


def closed_port():
    """A loopback port where nothing listens (connections are refused)."""
    return free_port()


# ---------------------------------------------------------------------------
# a scripted receiving + authoritative server (for xmppd's outgoing streams)
# ---------------------------------------------------------------------------

class FakeRemote:
    """Listens on 127.0.0.1 for `domain`. mode "peer": STARTTLS (required),
    dialback offered with errors, every db:result accepted, db:verify
    answered by verify(key, id, from) -> bool, stanzas recorded. mode
    "silent": accepts TCP and never says a word."""

    def __init__(self, domain, cert, key, mode="peer", verify=None):
        self.domain, self.mode = domain, mode
        self.verify = verify or (lambda key, sid, frm: False)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.events = queue.Queue()
        self.raw = bytearray()  # every byte received (after TLS)
        self.accepted = 0
        self._stop = False
        self._threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def close(self):
        self._stop = True
        for t in self._threads:
            t.join(3)
        self.sock.close()

    def next_event(self, kind, timeout=None):
        deadline = time.monotonic() + (timeout or scaled(5))
        while True:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise XMPPTestError("timeout: %s saw no %s" % (self.domain, kind))
            if ev[0] == kind:
                return ev

    def _accept_loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.events.put(("connected",))
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _recv(self, conn, reader):
        while not self._stop:
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                return False
            self.raw += data
            reader.feed(data)
            return True
        return False

    def _next(self, conn, reader):
        while not reader.elements:
            if reader.closed or not self._recv(conn, reader):
                return None
        return reader.elements.pop(0)

    def _header(self, conn, reader, features):
        while reader.header is None:
            if not self._recv(conn, reader):
                return False
        sid = secrets.token_hex(8)
        conn.sendall(("<stream:stream xmlns='jabber:server' xmlns:stream='%s' "
                      "xmlns:db='%s' id='%s' from='%s' version='1.0'>"
                      "<stream:features>%s</stream:features>"
                      % (NS_STREAM, NS_DB, sid, self.domain, features)).encode())
        return True

    def _serve(self, conn):
        conn.settimeout(0.2)
        try:
            if self.mode == "silent":
                while not self._stop and self._recv(conn, StreamReader()):
                    pass
                return
            reader = StreamReader()
            if not self._header(conn, reader, "<starttls xmlns='%s'><required/></starttls>" % NS_TLS):
                return
            el = self._next(conn, reader)
            if el is None or el.tag != q(NS_TLS, "starttls"):
                return
            conn.sendall(("<proceed xmlns='%s'/>" % NS_TLS).encode())
            conn.settimeout(5)
            conn = self.ctx.wrap_socket(conn, server_side=True)
            conn.settimeout(0.2)
            reader = StreamReader()
            if not self._header(conn, reader, "<dialback xmlns='urn:xmpp:features:dialback'>"
                                              "<errors/></dialback>"):
                return
            while True:
                el = self._next(conn, reader)
                if el is None:
                    self.events.put(("closed",))
                    try:
                        conn.sendall(b"</stream:stream>")
                    except OSError:
                        pass
                    return
                if el.tag == q(NS_DB, "result") and el.get("type") is None:
                    self.events.put(("db-result", el))
                    conn.sendall(("<db:result from='%s' to='%s' type='valid'/>"
                                  % (el.get("to"), el.get("from"))).encode())
                elif el.tag == q(NS_DB, "verify") and el.get("type") is None:
                    ok = self.verify(el.text or "", el.get("id"), el.get("from"))
                    self.events.put(("db-verify", el))
                    conn.sendall(("<db:verify from='%s' to='%s' id='%s' type='%s'/>"
                                  % (el.get("to"), el.get("from"), xml_escape(el.get("id") or ""),
                                     "valid" if ok else "invalid")).encode())
                else:
                    self.events.put(("stanza", el))
        except (OSError, ssl.SSLError):
            self.events.put(("closed",))
        finally:
            try:
                conn.close()
            except OSError:
                pass


class Dropper:
    """Accepts TCP connections on 127.0.0.1 and closes them at once,
    counting them: a peer that is down in the way that costs the most."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop = True
        self._t.join(3)
        self.sock.close()


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("s2s-fed")
    e = Env()
    e.ca = TestCA(base / "ca")
    e.dns = DNSServer()
    e.closed = closed_port()
    certs = {d: e.ca.issue(d) for d in ("a.example", "b.example", "fake.example")}
    e.good_keys = set()
    e.fake = FakeRemote("fake.example", *certs["fake.example"],
                        verify=lambda key, sid, frm: key in e.good_keys)
    e.silent = FakeRemote("silent.example", *certs["fake.example"], mode="silent")
    e.dropper = Dropper()
    a_s2s, a_tls, b_s2s = free_port(), free_port(), free_port()
    dns = e.dns
    dns.add_srv("_xmpp-server._tcp.b.example", 5, 0, e.closed, "dead.b.example")
    dns.add_srv("_xmpp-server._tcp.b.example", 10, 0, b_s2s, "s2s.b.example")
    dns.add_a("dead.b.example", "127.0.0.1")
    dns.add_a("s2s.b.example", "127.0.0.1")
    dns.add_srv("_xmpps-server._tcp.a.example", 0, 0, a_tls, "tls.a.example")
    dns.add_a("tls.a.example", "127.0.0.1")
    dns.add_srv("_xmpp-server._tcp.refused.example", 0, 0, 0, ".")

    def make(name, domain, s2s_listeners, s2s_conf):
        cert, key = certs[domain]
        srv = Server(base / name, base, {
            "tls": {"cert": str(cert), "key": str(key)},
            "hosts": {"localhost": None, domain: {}},
            "s2s": dict({"dns_servers": ["127.0.0.1:%d" % dns.port], "ca_file": str(e.ca.cert),
                         "dialback_secret": SECRET}, **s2s_conf),
            # a peer that stalls its negotiation is cut off soon
            "limits": {"negotiation_timeout": "3s", "max_stanza_size": "64k"},
        }, name=name)
        srv.domain = domain
        srv.config["listeners"] += s2s_listeners
        srv.write_config()
        srv.start()
        return srv

    e.a = make("xmppd-a", "a.example", [
        {"type": "s2s", "address": "127.0.0.1", "port": a_s2s},
        {"type": "s2s", "address": "127.0.0.1", "port": a_tls, "tls": "direct"},
    ], {"routes": {"fake.example": "127.0.0.1:%d" % e.fake.port,
                   "silent.example": "127.0.0.1:%d" % e.silent.port,
                   "closed.example": "127.0.0.1:%d" % e.closed,
                   "dropper.example": "127.0.0.1:%d" % e.dropper.port},
        "connect_timeout": "1s", "idle_timeout": "2s", "max_queue": 3,
        "retry_delay": "1s", "max_retry_delay": "4s", "stanza_rate": 20, "stanza_burst": 40})
    e.a.s2s_port = a_s2s
    # no XEP-0288 on B: its own outgoing streams (direct TLS to A) are under
    # test here; bidirectional streams are in test_s2s_bidi.py
    e.b = make("xmppd-b", "b.example", [{"type": "s2s", "address": "127.0.0.1", "port": b_s2s}],
               {"bidi": False})
    yield e
    try:
        _finish(e.a)
        _finish(e.b)
    finally:
        e.fake.close()
        e.silent.close()
        e.dropper.close()
        e.dns.close()


def account(srv):
    a = Account(unique_user(), secrets.token_urlsafe(12), domain=srv.domain)
    srv.adduser(a.jid, a.password)
    return a


async def bounced(c, to, timeout=None):
    """Sends a chat message to `to`; returns (type, condition) of the error
    that comes back."""
    body = "to " + to + " " + secrets.token_hex(4)
    c.send_message(mto=to, mbody=body, mtype="chat")
    m = await c.next_message(timeout=timeout or scaled(10),
                             pred=lambda m: m["type"] == "error" and m["from"].bare == to)
    return m["error"]["type"], m["error"]["condition"]


# ---------------------------------------------------------------------------
# xmppd <-> xmppd through DNS
# ---------------------------------------------------------------------------

def test_srv_order_direct_tls_and_messages_both_ways(env):
    """RFC 6120 §3.2.1: B's SRV targets are tried by priority (the closed
    port first, then B); XEP-0368: A is reached on its _xmpps-server target
    with direct TLS. Messages cross both ways."""
    a, b = account(env.a), account(env.b)
    env.dns.clear_log()

    async def scenario():
        ca = await connect(env.a, a, presence=0)
        cb = await connect(env.b, b, presence=0)
        ca.send_message(mto=b.jid, mbody="hi b", mtype="chat")
        m = await cb.next_message(timeout=scaled(10), pred=lambda m: m["body"] == "hi b")
        assert m["from"] == ca.boundjid
        cb.send_message(mto=ca.boundjid.full, mbody="hi a", mtype="chat")
        m = await ca.next_message(timeout=scaled(10), pred=lambda m: m["body"] == "hi a")
        assert m["from"] == cb.boundjid
    run(scenario())
    seen = env.dns.seen()
    assert "_xmpp-server._tcp.b.example" in seen and "_xmpps-server._tcp.b.example" in seen
    a_lookups = env.dns.seen("A")
    assert a_lookups.index("dead.b.example") < a_lookups.index("s2s.b.example"), seen
    assert "tls.a.example" in a_lookups, seen
    assert re.search(r"s2s-out: a\.example: connecting to \[127\.0\.0\.1\]:\d+ \(direct TLS\)",
                     env.b.read_log())


def test_unknown_domain_falls_back_then_bounces(env):
    """RFC 6120 §3.2.1 step 4 / §3.2.2: without SRV records the domain itself
    is looked up; when it has no address either, the message bounces with
    remote-server-not-found (§8.3.3.15)."""
    a = account(env.a)
    env.dns.clear_log()

    async def scenario():
        ca = await connect(env.a, a)
        assert await bounced(ca, "someone@nosrv.example") == ("cancel", "remote-server-not-found")
    run(scenario())
    assert "nosrv.example" in env.dns.seen("A") or "nosrv.example" in env.dns.seen("AAAA")


def test_srv_dot_means_no_service(env):
    """RFC 6120 §3.2.1: a single SRV record with target "." means the domain
    offers no XMPP service: bounce without looking up the domain."""
    a = account(env.a)
    env.dns.clear_log()

    async def scenario():
        ca = await connect(env.a, a)
        assert await bounced(ca, "x@refused.example") == ("cancel", "remote-server-not-found")
    run(scenario())
    assert "refused.example" not in env.dns.seen("A") + env.dns.seen("AAAA")


def test_refused_connection_bounces_not_found(env):
    """A static route to a closed port: the connection attempt fails and
    the stanza bounces with remote-server-not-found; an IQ gets the same
    error (RFC 6120 §8.3.3.15)."""
    a = account(env.a)

    async def scenario():
        ca = await connect(env.a, a)
        assert await bounced(ca, "x@closed.example") == ("cancel", "remote-server-not-found")
        iq = ca.Iq()
        iq["type"], iq["to"] = "get", "closed.example"
        iq.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        assert await ca.iq_error(iq, timeout=scaled(10)) == ("cancel", "remote-server-not-found")
    run(scenario())


def test_failing_peer_backs_off_exponentially(env):
    """A peer whose connections drop at once: the first stanza costs an
    attempt and bounces (remote-server-not-found); for s2s.retry_delay (1 s,
    plus up to a quarter of jitter) further stanzas bounce at once without a
    new connection; then one attempt again, after which the wait doubles
    (2 s), up to s2s.max_retry_delay. Other domains are not affected."""
    a = account(env.a)
    b = account(env.b)

    async def scenario():
        ca = await connect(env.a, a)
        cb = await connect(env.b, b, presence=0)
        to = "x@dropper.example"
        assert await bounced(ca, to) == ("cancel", "remote-server-not-found")
        assert env.dropper.accepted == 1
        t0 = time.monotonic()
        for _ in range(5):
            assert await bounced(ca, to) == ("cancel", "remote-server-not-found")
        assert time.monotonic() - t0 < 0.9, "bounces during the back-off should be immediate"
        assert env.dropper.accepted == 1, "a new attempt during the back-off"
        # federation with b.example goes on meanwhile
        ca.send_message(mto=b.jid, mbody="still here", mtype="chat")
        await cb.next_message(timeout=scaled(10), pred=lambda m: m["body"] == "still here")
        await asyncio.sleep(1.3)  # past 1 s + 25 %
        assert await bounced(ca, to) == ("cancel", "remote-server-not-found")
        assert env.dropper.accepted == 2
        await asyncio.sleep(1.3)  # the wait is 2 s now: still backing off
        assert await bounced(ca, to) == ("cancel", "remote-server-not-found")
        assert env.dropper.accepted == 2
        await asyncio.sleep(1.3)
        assert await bounced(ca, to) == ("cancel", "remote-server-not-found")
        assert env.dropper.accepted == 3
    run(scenario(), timeout=scaled(40))
    assert "backing off for" in env.a.read_log()


def test_silent_peer_times_out_and_queue_is_bounded(env):
    """A peer that accepts TCP but never answers: queued stanzas bounce with
    remote-server-timeout once s2s.connect_timeout (1 s) passes
    (§8.3.3.16); beyond s2s.max_queue (3) a stanza bounces at once with
    resource-constraint."""
    a = account(env.a)

    async def scenario():
        ca = await connect(env.a, a)
        t0 = time.monotonic()
        for i in range(4):
            ca.send_message(mto="x@silent.example", mbody="m%d" % i, mtype="chat")
        errors = []
        for _ in range(4):
            m = await ca.next_message(timeout=scaled(10), pred=lambda m: m["type"] == "error")
            errors.append((m["body"], m["error"]["type"], m["error"]["condition"],
                           time.monotonic() - t0))
        assert errors[0][:3] == ("m3", "wait", "resource-constraint"), errors
        assert errors[0][3] < 0.9, errors
        assert sorted(e[0] for e in errors[1:]) == ["m0", "m1", "m2"], errors
        assert all(e[2] == "remote-server-timeout" and e[3] >= 0.9 for e in errors[1:]), errors
    run(scenario())
    assert env.silent.accepted >= 1


def test_one_stream_per_domain_and_idle_close(env):
    """All stanzas for a domain share one stream (RFC 6120 §4.2); after
    s2s.idle_timeout (2 s) without traffic xmppd closes it cleanly
    (</stream:stream>), and the next stanza opens a new one."""
    a = account(env.a)

    async def scenario():
        ca = await connect(env.a, a)
        before = env.fake.accepted
        ca.send_message(mto="u1@fake.example", mbody="one", mtype="chat")
        ca.send_message(mto="u2@fake.example", mbody="two", mtype="chat")
        got = []
        while len(got) < 2:
            ev = await asyncio.to_thread(env.fake.next_event, "stanza")
            got.append((ev[1].get("to"), ev[1].findtext("{jabber:server}body")))
        assert sorted(got) == [("u1@fake.example", "one"), ("u2@fake.example", "two")]
        assert env.fake.accepted == before + 1
        t0 = time.monotonic()
        await asyncio.to_thread(env.fake.next_event, "closed", scaled(6))
        assert time.monotonic() - t0 >= 1.0
        ca.send_message(mto="u1@fake.example", mbody="three", mtype="chat")
        ev = await asyncio.to_thread(env.fake.next_event, "stanza")
        assert ev[1].findtext("{jabber:server}body") == "three"
        assert env.fake.accepted == before + 2
    run(scenario())


# ---------------------------------------------------------------------------
# the receiving side, driven by a scripted originating server
# ---------------------------------------------------------------------------

def open_s2s(env, frm="fake.example", to="a.example", tls=True):
    c = RawClient(env.a.s2s_port, domain=to)
    f = c.open_stream(xmlns=NS_SERVER, frm=frm, to=to)
    assert f["starttls"] == "required"
    if tls:
        c.starttls()
        c.open_stream(xmlns=NS_SERVER, frm=frm, to=to)
    return c


def dialback(c, key, frm="fake.example", to="a.example"):
    c.send("<db:result xmlns:db='%s' from='%s' to='%s'>%s</db:result>" % (NS_DB, frm, to, key))
    return c.wait_for(lambda el: el.tag == q(NS_DB, "result"), timeout=scaled(10))


def test_tls_required_before_dialback(env):
    """RFC 6120 §5.3.1: with TLS mandatory only STARTTLS is offered, and a
    dialback request in plaintext ends the stream with policy-violation."""
    c = open_s2s(env, tls=False)
    assert c.features["children"] == [q(NS_TLS, "starttls")]
    c.send("<db:result xmlns:db='%s' from='fake.example' to='a.example'>k</db:result>" % NS_DB)
    c.expect_stream_error("policy-violation")


def test_stanza_before_authentication(env):
    """RFC 6120 §4.9.3.12: stanzas before any domain is authenticated end
    the stream with not-authorized."""
    c = open_s2s(env)
    assert "{urn:xmpp:features:dialback}dialback" in c.features["children"]
    c.send("<message from='u@fake.example' to='x@a.example'><body>early</body></message>")
    c.expect_stream_error("not-authorized")


def test_dialback_through_authoritative_server_then_address_checks(env):
    """XEP-0220 §2.1-2.3: the key is checked with the authoritative server
    of fake.example (reached over xmppd's own outgoing stream, with the id
    of this stream); type='valid' authenticates the pair. Stanzas from the
    domain reach local users; one from another domain ends the stream with
    invalid-from (RFC 6120 §4.9.3.10)."""
    a = account(env.a)
    key = "key-" + secrets.token_hex(8)
    env.good_keys.add(key)

    async def scenario():
        ca = await connect(env.a, a, presence=0)
        # A round trip: the initial presence has been processed after it.
        iq = ca.Iq()
        iq["type"], iq["to"] = "get", "a.example"
        iq.append(ET.fromstring("<query xmlns='urn:example:nothing'/>"))
        await ca.iq_error(iq)
        c = await asyncio.to_thread(open_s2s, env)
        sid = c.reader.header.get("id")
        r = await asyncio.to_thread(dialback, c, key)
        assert r.get("type") == "valid" and r.get("from") == "a.example" and r.get("to") == "fake.example"
        ev = await asyncio.to_thread(env.fake.next_event, "db-verify")
        assert ev[1].get("id") == sid and ev[1].text == key
        assert ev[1].get("from") == "a.example" and ev[1].get("to") == "fake.example"
        c.send("<message from='u@fake.example/r' to='%s' type='chat'><body>via dialback</body>"
               "</message>" % a.jid)
        m = await ca.next_message(pred=lambda m: m["body"] == "via dialback")
        assert m["from"] == "u@fake.example/r"
        c.send("<message from='u@evil.example' to='%s'><body>spoof</body></message>" % a.jid)
        await asyncio.to_thread(c.expect_stream_error, "invalid-from")
        assert await ca.no_message(pred=lambda m: m["body"] == "spoof") == []
    run(scenario())


def test_dialback_written_with_db_prefix_both_forms_accepted(env):
    """XEP-0220 examples (and ejabberd, which knows no other form): dialback
    elements are written as db:result / db:verify with the prefix the
    stream header declares, on the receiving side (the answer) and the
    originating side (the verification sent to the authoritative server);
    a request in the default-namespace form is understood too."""
    key = "key-" + secrets.token_hex(8)
    env.good_keys.add(key)
    c = open_s2s(env)
    header_end = len(c.raw)
    c.send("<result xmlns='%s' from='fake.example' to='a.example'>%s</result>" % (NS_DB, key))
    r = c.wait_for(lambda el: el.tag == q(NS_DB, "result"), timeout=scaled(10))
    assert r.get("type") == "valid"
    answer = bytes(c.raw[header_end:])
    assert b"<db:result " in answer and NS_DB.encode() not in answer, answer
    sent = bytes(env.fake.raw)
    assert b"<db:verify " in sent and b"xmlns='%s'" % NS_DB.encode() not in sent, sent[-600:]
    c2 = open_s2s(env)
    r = dialback(c2, "k", to="nothere.example")
    assert r.get("type") == "error" and error_condition(r) == ("cancel", "item-not-found")
    assert b"<error type='cancel'>" in bytes(c2.raw), bytes(c2.raw)[-300:]


def test_dialback_to_foreign_domain_is_host_unknown(env):
    """After dialback, a stanza for a domain not served here ends the stream
    with host-unknown (RFC 6120 §4.9.3.6): xmppd relays nothing."""
    key = "key-" + secrets.token_hex(8)
    env.good_keys.add(key)
    c = open_s2s(env)
    assert dialback(c, key).get("type") == "valid"
    c.send("<message from='u@fake.example' to='x@b.example'><body>relay?</body></message>")
    c.expect_stream_error("host-unknown")


def test_dialback_invalid_key(env):
    """XEP-0220 §2.1.3: a key the authoritative server denies gives
    type='invalid', and the stream without an authenticated domain closes
    with not-authorized."""
    c = open_s2s(env)
    r = dialback(c, "wrong-" + secrets.token_hex(8))
    assert r.get("type") == "invalid"
    c.expect_stream_error("not-authorized")


def test_dialback_for_domain_not_served(env):
    """XEP-0220 §2.4 (errors announced in the features): a request for a
    domain we do not serve gets a dialback error item-not-found."""
    c = open_s2s(env)
    r = dialback(c, "k", to="nothere.example")
    assert r.get("type") == "error"
    assert error_condition(r) == ("cancel", "item-not-found")


def test_authoritative_verify_uses_xep0185_keys(env):
    """XEP-0220 §2.3 / XEP-0185: as authoritative server xmppd confirms a key
    computed with the configured secret over (receiving, originating, id),
    denies any other key, and answers a verification for a domain it does
    not serve with item-not-found."""
    c = open_s2s(env)
    sid = "stream-" + secrets.token_hex(6)
    good = db_key(SECRET, "fake.example", "a.example", sid)
    for key, want in ((good, "valid"), (db_key(SECRET, "fake.example", "a.example", sid + "x"), "invalid"),
                      (good[:-1], "invalid")):
        c.send("<db:verify xmlns:db='%s' from='fake.example' to='a.example' id='%s'>%s</db:verify>"
               % (NS_DB, sid, key))
        r = c.wait_for(lambda el: el.tag == q(NS_DB, "verify"))
        assert (r.get("type"), r.get("id"), r.get("from"), r.get("to")) == \
            (want, sid, "a.example", "fake.example")
    c.send("<db:verify xmlns:db='%s' from='fake.example' to='other.example' id='%s'>%s</db:verify>"
           % (NS_DB, sid, good))
    r = c.wait_for(lambda el: el.tag == q(NS_DB, "verify"))
    assert r.get("type") == "error" and error_condition(r) == ("cancel", "item-not-found")


def test_bad_peers_are_cut_off_without_affecting_others(env):
    """Issue 11.10: a peer that sends garbage (RFC 6120 §4.9.3.13
    not-well-formed), one that stalls in the middle of its stream header
    (§4.9.3.4 connection-timeout after limits.negotiation_timeout, 3 s
    here), an authenticated one that floods a stanza over
    limits.max_stanza_size (§4.9.3.14 policy-violation) and one that sends
    stanzas faster than s2s.stanza_rate allows (20/s, burst 40 here:
    policy-violation) are each disconnected, while messages between A and
    B go on all along."""
    a, b = account(env.a), account(env.b)
    key = "key-" + secrets.token_hex(8)
    env.good_keys.add(key)

    async def scenario():
        ca = await connect(env.a, a, presence=0)
        cb = await connect(env.b, b, presence=0)

        async def still_federating(tag):
            ca.send_message(mto=b.jid, mbody=tag, mtype="chat")
            await cb.next_message(timeout=scaled(10), pred=lambda m: m["body"] == tag)
            cb.send_message(mto=ca.boundjid.full, mbody=tag + " back", mtype="chat")
            await ca.next_message(timeout=scaled(10), pred=lambda m: m["body"] == tag + " back")

        await still_federating("before")
        # a stalled peer: half a stream header, then nothing
        stalled = RawClient(env.a.s2s_port, domain="a.example")
        stalled.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stre")
        t0 = time.monotonic()
        # garbage after a proper header
        garbage = RawClient(env.a.s2s_port, domain="a.example")
        garbage.open_stream(xmlns=NS_SERVER, frm="fake.example", to="a.example")
        garbage.send("<<<\x01 not xml at all >>>")
        await asyncio.to_thread(garbage.expect_stream_error, "not-well-formed")
        await still_federating("after garbage")
        # an authenticated peer sends a stanza over the size limit
        flood = await asyncio.to_thread(open_s2s, env)
        assert (await asyncio.to_thread(dialback, flood, key)).get("type") == "valid"
        flood.send("<message from='u@fake.example' to='%s'><body>%s</body></message>"
                   % (a.jid, "f" * 70000))
        await asyncio.to_thread(flood.expect_stream_error, "policy-violation")
        await still_federating("after flood")
        # an authenticated peer sends many small stanzas at once
        rate = await asyncio.to_thread(open_s2s, env)
        assert (await asyncio.to_thread(dialback, rate, key)).get("type") == "valid"
        rate.send("".join("<message from='u@fake.example' to='nobody@a.example' type='headline'>"
                          "<body>%d</body></message>" % i for i in range(200)))
        await asyncio.to_thread(rate.expect_stream_error, "policy-violation")
        await still_federating("after a stanza flood")
        closed = await asyncio.to_thread(stalled.wait_closed, scaled(10))
        assert closed and 2.5 < time.monotonic() - t0 < scaled(10), time.monotonic() - t0
        await still_federating("after stall")
        for c in (stalled, garbage, flood, rate):
            c.close()
    run(scenario(), timeout=scaled(60))


def test_header_to_unknown_host(env):
    """RFC 6120 §4.9.3.6: a stream to a domain not served here."""
    c = RawClient(env.a.s2s_port, domain="nothere.example")
    c.send(c.stream_header(xmlns=NS_SERVER, frm="fake.example", to="nothere.example"))
    c.expect_stream_error("host-unknown")


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("s2s,key,msg", [
    ({"authentication": "tls"}, "s2s.authentication", "expected one of \"both\", \"dialback\", \"external\""),
    ({"routes": {"x.example": "host:99999"}}, "s2s.routes.x.example", "expected \"host:port\""),
    ({"dns_servers": ["dns.example"]}, "s2s.dns_servers.0", "expected an IP address"),
    ({"dialback_secret": "short"}, "s2s.dialback_secret", "at least 16 characters"),
    ({"idle_timeout": "0s"}, "s2s.idle_timeout", ""),
    ({"ca_file": "/nonexistent/ca.pem"}, "s2s.ca_file", "cannot read"),
    ({"require_encyption": True}, "s2s.require_encyption", "did you mean \"require_encryption\""),
])
def test_config_errors(tmp_path, s2s, key, msg):
    """Bad s2s settings are refused with one line naming file, line and key."""
    cfg = {"data_dir": str(tmp_path), "hosts": {"a.example": {}}, "s2s": s2s}
    path = tmp_path / "xmppd.json"
    path.write_text(json.dumps(cfg, indent=2))
    r = subprocess.run([str(XMPPCTL), "-c", str(path), "check"], capture_output=True, text=True,
                       timeout=scaled(10))
    out = (r.stdout + r.stderr).strip()
    assert r.returncode != 0, out
    assert len(out.splitlines()) == 1, out
    assert re.search(r"%s:\d+: %s: " % (re.escape(str(path)), re.escape(key)), out), out
    assert msg in out, out


def test_no_s2s_listener_means_no_federation(server_factory, accounts):
    """A server configured without any s2s listener does not federate:
    a message to another domain bounces at once with
    remote-server-not-found (RFC 6120 §8.3.3.15), no DNS is asked."""
    dns = DNSServer()
    try:
        srv = server_factory({"s2s": {"dns_servers": ["127.0.0.1:%d" % dns.port]}})
        (a,) = accounts(1, srv=srv)

        async def scenario():
            c = await connect(srv, a)
            t0 = time.monotonic()
            assert await bounced(c, "x@b.example") == ("cancel", "remote-server-not-found")
            assert time.monotonic() - t0 < scaled(1)
        run(scenario())
        assert dns.seen() == []
    finally:
        dns.close()
