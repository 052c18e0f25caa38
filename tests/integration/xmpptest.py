"""Client-side helpers for the xmppd integration tests.

Two ways to talk to the server:

* RawClient: a blocking socket with an incremental XML reader, for tests
  where the exact bytes matter (stream errors, SASL edge cases, STARTTLS
  pipelining). It implements STARTTLS, direct TLS, SASL PLAIN and SCRAM
  (with tls-server-end-point channel binding) by hand.

* Client (slixmpp) + run(): a real client library on its own asyncio loop
  with bounded timeouts, for routing tests:

      async def scenario():
          a = await connect(server, alice)
          b = await connect(server, bob)
          a.send_message(mto=b.boundjid, mbody="hi", mtype="chat")
          msg = await b.next_message()
      run(scenario())

Everything here waits a bounded time (DEFAULT_TIMEOUT, scaled by
XMPPD_TIMEOUT_FACTOR or a wrapper such as valgrind) and raises on timeout.
"""

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
import ssl
import time
import xml.etree.ElementTree as ET

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SASL_CB = "urn:xss:sasl-cb:0"  # XEP-0440
NS_SASL2 = "urn:xmpp:sasl:2"      # XEP-0388
NS_BIND2 = "urn:xmpp:bind:0"      # XEP-0386
NS_FAST = "urn:xmpp:fast:0"       # XEP-0484
NS_XML = "http://www.w3.org/XML/1998/namespace"


def _timeout_factor():
    f = os.environ.get("XMPPD_TIMEOUT_FACTOR")
    if f:
        return float(f)
    if os.environ.get("XMPPD_WRAPPER"):
        return 10.0  # valgrind & co.
    if os.environ.get("ASAN_OPTIONS"):
        return 2.0
    return 1.0


TIMEOUT_FACTOR = _timeout_factor()
DEFAULT_TIMEOUT = 5.0 * TIMEOUT_FACTOR
# How long "nothing arrives" is observed before it is believed.
QUIET_PERIOD = 1.0 * TIMEOUT_FACTOR


_ports_given = set()


def _port_range():
    """XMPPD_TEST_PORTS=LO-HI: the ports this run may listen on. Suites run
    side by side (contrib/run-tests.sh) each get their own range below the
    kernel's ephemeral ports (32768 and up), so neither another suite nor
    an outgoing connection can take a port between its choice and the
    server's bind. pytest-xdist workers split the range further."""
    spec = os.environ.get("XMPPD_TEST_PORTS")
    if not spec:
        return None
    lo, hi = (int(x) for x in spec.split("-"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and count > 1:
        size = (hi - lo + 1) // count
        lo += int(worker[2:]) * size
        hi = lo + size - 1
    return lo, hi


def free_port(host="127.0.0.1"):
    """A TCP port free on host now and never handed out before in this test
    run: several ports are picked before any server binds them, and the
    kernel may offer a just-released port again."""
    rng = _port_range()
    candidates = range(rng[0], rng[1] + 1) if rng else [0] * 100
    for want in candidates:
        if want and want in _ports_given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, want))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise XMPPTestError("no unused port found on %s" % host)


def scaled(seconds):
    return seconds * TIMEOUT_FACTOR


def q(ns, tag):
    return "{%s}%s" % (ns, tag)


def local(tag):
    """Local name of an ElementTree tag ('{ns}name' -> 'name')."""
    return tag.rsplit("}", 1)[-1]


def ns_of(tag):
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def tostr(el):
    return ET.tostring(el, encoding="unicode")


def new_id(prefix="t"):
    return "%s%s" % (prefix, secrets.token_hex(4))


def xml_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
             .replace("'", "&apos;").replace('"', "&quot;"))


class XMPPTestError(AssertionError):
    pass


# ---------------------------------------------------------------------------
# Stream reader
# ---------------------------------------------------------------------------

class StreamReader:
    """Incremental reader of one XML stream: the header, then each
    top-level child as a complete Element, then the stream end."""

    def __init__(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.header = None        # the <stream:stream> Element (attributes only)
        self.elements = []        # complete top-level children not yet consumed
        self.closed = False       # </stream:stream> seen
        self.error = None         # ParseError on the server's output

    def feed(self, data):
        if self.closed or self.error or not data:
            return
        if self.header is None:
            self.prefix = getattr(self, "prefix", b"") + data
        try:
            self.parser.feed(data)
            for event, el in self.parser.read_events():
                if event == "start":
                    if self.depth == 0:
                        self.header = el
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.elements.append(el)
                        if self.header is not None and el in list(self.header):
                            self.header.remove(el)
                    elif self.depth == 0:
                        self.closed = True
        except ET.ParseError as e:
            if self.header is None and b"<stream:error" in getattr(self, "prefix", b""):
                e = ET.ParseError("%s: <stream:error/> without an opening <stream:stream> "
                                  "first (RFC 6120 §4.9.1.2 requires the header)" % e)
            self.error = e


class SaslResult:
    def __init__(self, ok, element=None, condition=None, text=None, server_verified=None):
        self.ok = ok
        self.element = element
        self.condition = condition   # local name of the <failure/> child
        self.text = text
        self.server_verified = server_verified  # SCRAM: server signature checked

    def __repr__(self):
        return "SaslResult(ok=%r, condition=%r, text=%r)" % (self.ok, self.condition, self.text)


def sasl_failure(el):
    """SaslResult of a <failure/> (RFC 6120 or SASL2): the condition is its
    child in the RFC 6120 SASL namespace, text its <text/>."""
    cond, text = None, None
    for c in el:
        if local(c.tag) == "text":
            text = c.text
        elif ns_of(c.tag) == NS_SASL:
            cond = local(c.tag)
    return SaslResult(False, el, cond, text)


def parse_features(el):
    """Summary of a <stream:features/> element."""
    if el is None or el.tag != q(NS_STREAM, "features"):
        raise XMPPTestError("expected <stream:features/>, got %s" % (tostr(el) if el is not None else None))
    info = {"starttls": None, "mechanisms": [], "bind": False, "session": None,
            "channel_bindings": [], "children": [c.tag for c in el], "element": el}
    st = el.find(q(NS_TLS, "starttls"))
    if st is not None:
        info["starttls"] = "required" if st.find(q(NS_TLS, "required")) is not None else "optional"
    mechs = el.find(q(NS_SASL, "mechanisms"))
    if mechs is not None:
        info["mechanisms"] = [(m.text or "").strip() for m in mechs.findall(q(NS_SASL, "mechanism"))]
    info["bind"] = el.find(q(NS_BIND, "bind")) is not None
    sess = el.find(q(NS_SESSION, "session"))
    if sess is not None:
        info["session"] = "optional" if sess.find(q(NS_SESSION, "optional")) is not None else "present"
    cb = el.find(q(NS_SASL_CB, "sasl-channel-binding"))
    if cb is not None:
        info["channel_bindings"] = [c.get("type") for c in cb.findall(q(NS_SASL_CB, "channel-binding"))]
    # XEP-0388: <authentication/> with its <inline/> features
    info["sasl2"] = None
    auth = el.find(q(NS_SASL2, "authentication"))
    if auth is not None:
        inline = auth.find(q(NS_SASL2, "inline"))
        fast = inline.find(q(NS_FAST, "fast")) if inline is not None else None
        bind2 = inline.find(q(NS_BIND2, "bind")) if inline is not None else None
        b2inline = bind2.find(q(NS_BIND2, "inline")) if bind2 is not None else None
        info["sasl2"] = {
            "mechanisms": [(m.text or "").strip() for m in auth.findall(q(NS_SASL2, "mechanism"))],
            "inline": [c.tag for c in inline] if inline is not None else [],
            "fast": [(m.text or "").strip() for m in fast.findall(q(NS_FAST, "mechanism"))]
            if fast is not None else None,
            "bind2": [f.get("var") for f in b2inline.findall(q(NS_BIND2, "feature"))]
            if b2inline is not None else None,
        }
    return info


def error_condition(el, ns=NS_STANZA_ERR):
    """(type, condition) of a stanza error (or condition of a stream error)."""
    if el.tag == q(NS_STREAM, "error"):
        for c in el:
            if ns_of(c.tag) == NS_STREAM_ERR and local(c.tag) != "text":
                return local(c.tag)
        return None
    err = None
    for c in el:
        if local(c.tag) == "error":
            err = c
    if err is None:
        return (None, None)
    cond = None
    for c in err:
        if ns_of(c.tag) == ns and local(c.tag) != "text":
            cond = local(c.tag)
    return (err.get("type"), cond)


# ---------------------------------------------------------------------------
# SCRAM (RFC 5802 / RFC 7677) client side, by hand
# ---------------------------------------------------------------------------

_SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


def ht_hash(token, initiator, cb_data=b""):
    """HT-SHA-256-* (draft-schmaus-kitten-sasl-ht): HMAC-SHA-256 of
    "Initiator" or "Responder" and the channel binding, keyed by the token."""
    return hmac.new(token.encode(), (b"Initiator" if initiator else b"Responder") + cb_data,
                    "sha256").digest()


def ssdp_hash(hashname, mechanisms, channel_bindings=None):
    """XEP-0474 §5.1: what a client computes from the lists it received."""
    s = "\x1e".join(sorted(mechanisms, key=lambda m: m.encode()))
    if channel_bindings is not None:
        s += "\x1f" + "\x1e".join(sorted(channel_bindings, key=lambda m: m.encode()))
    return base64.b64encode(hashlib.new(hashname, s.encode()).digest()).decode()


def saslname(s):
    return s.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """One SCRAM exchange. cb_type/cb_data for -PLUS; flag 'y'/'n' otherwise."""

    def __init__(self, mech, user, password, authzid=None, cb_type=None, cb_data=b"",
                 flag=None, cnonce=None):
        base = mech[:-5] if mech.endswith("-PLUS") else mech
        self.plus = mech.endswith("-PLUS")
        self.hashname = _SCRAM_HASHES[base]
        self.user, self.password = user, password
        if self.plus:
            gs2_flag = "p=" + (cb_type or "tls-server-end-point")
        else:
            gs2_flag = flag or "n"
        self.gs2_header = gs2_flag + "," + ("a=" + saslname(authzid) if authzid else "") + ","
        self.cb_data = cb_data if self.plus else b""
        self.cnonce = cnonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self.client_first_bare = "n=%s,r=%s" % (saslname(user), self.cnonce)
        self.server_signature = None

    def first(self):
        return (self.gs2_header + self.client_first_bare).encode()

    def _hmac(self, key, msg):
        return hmac.new(key, msg, self.hashname).digest()

    def final(self, server_first):
        sf = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.cnonce) or len(nonce) <= len(self.cnonce):
            raise XMPPTestError("server nonce does not extend client nonce: %r" % sf)
        if iters < 1:
            raise XMPPTestError("bad iteration count %r" % sf)
        salted = hashlib.pbkdf2_hmac(self.hashname, self.password.encode(), salt, iters)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hashname, client_key).digest()
        cbind = base64.b64encode(self.gs2_header.encode() + self.cb_data).decode()
        without_proof = "c=%s,r=%s" % (cbind, nonce)
        auth_message = ("%s,%s,%s" % (self.client_first_bare, sf, without_proof)).encode()
        sig = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = self._hmac(salted, b"Server Key")
        self.server_signature = self._hmac(server_key, auth_message)
        return ("%s,p=%s" % (without_proof, base64.b64encode(proof).decode())).encode()

    def verify(self, server_final):
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        if "e" in attrs:
            return False
        return base64.b64decode(attrs.get("v", "")) == self.server_signature


# ---------------------------------------------------------------------------
# Raw socket client
# ---------------------------------------------------------------------------

def client_ssl_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RawClient:
    """A blocking XMPP client socket that shows exactly what the server sends."""

    def __init__(self, port, host="127.0.0.1", domain="localhost", direct_tls=False,
                 timeout=None, source=None):
        """source: local address to connect from (another loopback address
        such as 127.0.0.2 is a different client address to the server)."""
        self.port, self.host, self.domain = port, host, domain
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.sock = socket.create_connection((host, port), timeout=self.timeout,
                                             source_address=(source, 0) if source else None)
        self.raw = bytearray()        # every byte received, across TLS upgrades
        self.reader = StreamReader()
        self.eof = False
        self.tls = False
        self.features = None          # last parse_features() result
        self.jid = None
        if direct_tls:
            self._wrap_tls()

    # -- transport --------------------------------------------------------
    def _wrap_tls(self):
        ctx = client_ssl_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.domain)
        self.tls = True

    def peer_cert_der(self):
        return self.sock.getpeercert(binary_form=True)

    def tls_server_end_point(self):
        """RFC 5929 §4: hash of the server certificate (SHA-256 for our
        SHA-256 / SHA-1 / MD5 signed certificates)."""
        return hashlib.sha256(self.peer_cert_der()).digest()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _recv_some(self, deadline):
        """Reads once; False on timeout, True when data or EOF came."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except ssl.SSLWantReadError:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            return True
        self.raw += data
        self.reader.feed(data)
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading ----------------------------------------------------------
    def wait_header(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while self.reader.header is None:
            if self.reader.error:
                raise XMPPTestError("server sent malformed XML: %s; bytes: %r" % (self.reader.error, bytes(self.raw[-2000:])))
            if self.eof:
                raise XMPPTestError("connection closed before a stream header; bytes: %r" % bytes(self.raw[-2000:]))
            if not self._recv_some(deadline):
                raise XMPPTestError("timeout waiting for the stream header; bytes: %r" % bytes(self.raw[-2000:]))
        return self.reader.header

    def next_element(self, timeout=None, allow_eof=False):
        """The next complete top-level element. None when the stream ended
        (</stream:stream> or EOF) and allow_eof; raises on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.reader.elements:
            if self.reader.error:
                raise XMPPTestError("server sent malformed XML: %s; bytes: %r" % (self.reader.error, bytes(self.raw[-2000:])))
            if self.reader.closed or self.eof:
                if allow_eof:
                    return None
                raise XMPPTestError("stream closed while waiting for an element; bytes: %r" % bytes(self.raw[-2000:]))
            if not self._recv_some(deadline):
                raise XMPPTestError("timeout waiting for an element; bytes: %r" % bytes(self.raw[-2000:]))
        return self.reader.elements.pop(0)

    def expect(self, tag, timeout=None):
        el = self.next_element(timeout)
        if el.tag != tag:
            raise XMPPTestError("expected %s, got %s" % (tag, tostr(el)))
        return el

    def wait_for(self, pred, timeout=None):
        """Skips elements until pred(el) is true; returns that element."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        skipped = []
        while True:
            el = self.next_element(max(0.0, deadline - time.monotonic()))
            if pred(el):
                return el
            skipped.append(el)

    def quiet(self, period=None, pred=None):
        """Elements received during period (optionally only those matching
        pred); tests assert this is empty for 'nothing is delivered'."""
        deadline = time.monotonic() + (period if period is not None else QUIET_PERIOD)
        got = []
        while time.monotonic() < deadline:
            while self.reader.elements:
                el = self.reader.elements.pop(0)
                if pred is None or pred(el):
                    got.append(el)
            if self.eof or self.reader.closed:
                break
            self._recv_some(deadline)
        while self.reader.elements:
            el = self.reader.elements.pop(0)
            if pred is None or pred(el):
                got.append(el)
        return got

    def wait_closed(self, timeout=None):
        """Reads until the TCP connection is closed by the server; True if
        it was within timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.eof:
            if not self._recv_some(deadline):
                return False
        return True

    def expect_stream_error(self, condition, timeout=None, closed=True):
        """Waits for <stream:error/> with the given condition (ignoring a
        server stream header and features first), then the closing
        </stream:stream> and the TCP close. Returns the error element."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            el = self.next_element(max(0.0, deadline - time.monotonic()))
            if el.tag == q(NS_STREAM, "error"):
                break
            if el.tag == q(NS_STREAM, "features"):
                continue
            raise XMPPTestError("expected <stream:error><%s/>, got %s" % (condition, tostr(el)))
        cond = error_condition(el)
        if cond != condition:
            raise XMPPTestError("expected stream error <%s/>, got %s" % (condition, tostr(el)))
        if closed:
            end = time.monotonic() + max(0.5, deadline - time.monotonic())
            while not (self.reader.closed and self.eof):
                if not self._recv_some(end):
                    break
            if not self.reader.closed:
                raise XMPPTestError("no </stream:stream> after the stream error; bytes: %r" % bytes(self.raw[-500:]))
            if not self.eof and not self.wait_closed(max(0.5, end - time.monotonic())):
                raise XMPPTestError("server did not close the TCP connection after the stream error")
        return el

    # -- stream negotiation ------------------------------------------------
    def stream_header(self, to=None, version="1.0", xmlns=NS_CLIENT, stream_ns=NS_STREAM,
                      frm=None, lang="en", decl=False):
        to = self.domain if to is None else to
        parts = ["<stream:stream"]
        if to is not False:
            parts.append(" to='%s'" % to)
        if frm:
            parts.append(" from='%s'" % frm)
        if version:
            parts.append(" version='%s'" % version)
        if lang:
            parts.append(" xml:lang='%s'" % lang)
        parts.append(" xmlns='%s' xmlns:stream='%s'>" % (xmlns, stream_ns))
        return ("<?xml version='1.0'?>" if decl else "") + "".join(parts)

    def open_stream(self, features=True, timeout=None, **kw):
        """Sends a stream header (new reader: a restart), waits for the
        server's header and, if features, the <stream:features/>."""
        self.reader = StreamReader()
        self.send(self.stream_header(**kw))
        self.wait_header(timeout)
        if not features:
            return None
        el = self.next_element(timeout)
        self.features = parse_features(el)
        return self.features

    def starttls(self):
        """RFC 6120 §5.4.2: <starttls/>, <proceed/>, TLS handshake."""
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        el = self.next_element()
        if el.tag != q(NS_TLS, "proceed"):
            raise XMPPTestError("expected <proceed/>, got %s" % tostr(el))
        self._wrap_tls()

    def auth_plain(self, user, password, authzid="", mech="PLAIN"):
        msg = ("%s\0%s\0%s" % (authzid, user, password)).encode()
        self.send("<auth xmlns='%s' mechanism='%s'>%s</auth>"
                  % (NS_SASL, mech, base64.b64encode(msg).decode() or "="))
        return self._sasl_outcome()

    def _sasl_outcome(self, scram=None, timeout=None):
        el = self.next_element(timeout)
        if el.tag == q(NS_SASL, "challenge") and scram is not None:
            # additional data as a challenge: empty response then success
            data = base64.b64decode(el.text or "")
            verified = scram.verify(data)
            self.send("<response xmlns='%s'/>" % NS_SASL)
            el = self.next_element(timeout)
            if el.tag == q(NS_SASL, "success"):
                return SaslResult(True, el, server_verified=verified)
        if el.tag == q(NS_SASL, "success"):
            verified = None
            if scram is not None:
                verified = scram.verify(base64.b64decode((el.text or "").strip() or ""))
            return SaslResult(True, el, server_verified=verified)
        if el.tag == q(NS_SASL, "failure"):
            return sasl_failure(el)
        raise XMPPTestError("unexpected SASL answer %s" % tostr(el))

    def auth_scram(self, mech, user, password, authzid=None, cb_type=None, cb_data=None,
                   flag=None, timeout=None):
        """SCRAM exchange. For -PLUS, cb_type defaults to tls-server-end-point
        computed from the server certificate."""
        if mech.endswith("-PLUS") and cb_data is None:
            cb_type = cb_type or "tls-server-end-point"
            if cb_type != "tls-server-end-point":
                raise ValueError("only tls-server-end-point can be computed in Python 3.11")
            cb_data = self.tls_server_end_point()
        sc = ScramClient(mech, user, password, authzid=authzid, cb_type=cb_type,
                         cb_data=cb_data or b"", flag=flag)
        self.send("<auth xmlns='%s' mechanism='%s'>%s</auth>"
                  % (NS_SASL, mech, base64.b64encode(sc.first()).decode()))
        el = self.next_element(timeout)
        if el.tag != q(NS_SASL, "challenge"):
            self.reader.elements.insert(0, el)
            return self._sasl_outcome(timeout=timeout)
        sf = base64.b64decode(el.text or "")
        self.send("<response xmlns='%s'>%s</response>"
                  % (NS_SASL, base64.b64encode(sc.final(sf)).decode()))
        return self._sasl_outcome(scram=sc, timeout=timeout)

    # -- SASL2 (XEP-0388) --------------------------------------------------
    def sasl2_outcome(self, scram=None, timeout=None):
        """Reads the end of a SASL2 exchange: SaslResult with the <success/>
        (server_verified for SCRAM) or <failure/> element."""
        el = self.next_element(timeout)
        if el.tag == q(NS_SASL2, "success"):
            verified = None
            if scram is not None:
                data = el.find(q(NS_SASL2, "additional-data"))
                verified = data is not None and scram.verify(base64.b64decode((data.text or "").strip()))
            return SaslResult(True, el, server_verified=verified)
        if el.tag == q(NS_SASL2, "failure"):
            return sasl_failure(el)
        raise XMPPTestError("unexpected SASL2 answer %s" % tostr(el))

    def sasl2_authenticate(self, mech, initial=None, inner=""):
        """Sends <authenticate/>; initial: bytes of the initial response (None:
        no <initial-response/>); inner: more XML inside."""
        ir = ("<initial-response>%s</initial-response>" % base64.b64encode(initial).decode()
              if initial is not None else "")
        self.send("<authenticate xmlns='%s' mechanism='%s'>%s%s</authenticate>" % (NS_SASL2, mech, ir, inner))

    def sasl2_scram(self, mech, user, password, inner="", cb_type=None, cb_data=None, timeout=None):
        """A SASL2 SCRAM exchange; returns (SaslResult, ScramClient, server-first bytes)."""
        if mech.endswith("-PLUS") and cb_data is None:
            cb_type = cb_type or "tls-server-end-point"
            cb_data = self.tls_server_end_point()
        sc = ScramClient(mech, user, password, cb_type=cb_type, cb_data=cb_data or b"")
        self.sasl2_authenticate(mech, sc.first(), inner)
        el = self.next_element(timeout)
        if el.tag != q(NS_SASL2, "challenge"):
            self.reader.elements.insert(0, el)
            return self.sasl2_outcome(timeout=timeout), sc, None
        sf = base64.b64decode((el.text or "").strip())
        self.send("<response xmlns='%s'>%s</response>" % (NS_SASL2, base64.b64encode(sc.final(sf)).decode()))
        return self.sasl2_outcome(scram=sc, timeout=timeout), sc, sf

    def sasl2_plain(self, user, password, inner="", timeout=None):
        self.sasl2_authenticate("PLAIN", ("\0%s\0%s" % (user, password)).encode(), inner)
        return self.sasl2_outcome(timeout=timeout)

    def sasl2_ht(self, mech, user, token, inner="", cb_data=b"", timeout=None):
        """FAST login (XEP-0484) with an HT mechanism; returns the SaslResult
        with server_verified: the responder hash checked."""
        self.sasl2_authenticate(mech, user.encode() + b"\0" + ht_hash(token, True, cb_data), inner)
        res = self.sasl2_outcome(timeout=timeout)
        if res.ok:
            data = res.element.find(q(NS_SASL2, "additional-data"))
            res.server_verified = (data is not None and
                                   base64.b64decode((data.text or "").strip()) == ht_hash(token, False, cb_data))
        return res

    def secure_stream(self, **kw):
        """Stream header, STARTTLS (unless direct TLS), header again: the
        features of the secure, unauthenticated stream."""
        f = self.open_stream(**kw)
        if not self.tls:
            self.starttls()
            f = self.open_stream(**kw)
        return f

    def bind(self, resource=None):
        iid = new_id("bind")
        inner = "<resource>%s</resource>" % xml_escape(resource) if resource else ""
        self.send("<iq type='set' id='%s'><bind xmlns='%s'>%s</bind></iq>" % (iid, NS_BIND, inner))
        el = self.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid)
        if el.get("type") != "result":
            raise XMPPTestError("bind failed: %s" % tostr(el))
        jid = el.find("%s/%s" % (q(NS_BIND, "bind"), q(NS_BIND, "jid")))
        if jid is None or not jid.text:
            raise XMPPTestError("bind result without <jid/>: %s" % tostr(el))
        self.jid = jid.text.strip()
        return self.jid

    def iq(self, xml_body, type_="get", to=None, timeout=None, frm=None):
        """Sends an IQ and returns the response with the same id."""
        iid = new_id("iq")
        attrs = " type='%s' id='%s'" % (type_, iid)
        if to:
            attrs += " to='%s'" % to
        if frm:
            attrs += " from='%s'" % frm
        self.send("<iq%s>%s</iq>" % (attrs, xml_body))
        return self.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid, timeout)

    def session(self):
        """RFC 3921 §3 legacy session establishment."""
        return self.iq("<session xmlns='%s'/>" % NS_SESSION, type_="set")

    def login(self, user, password, mech="PLAIN", resource=None, bind=True, authzid=None,
              direct_tls=None):
        """Full negotiation: stream, STARTTLS (unless already TLS), SASL,
        restart, bind. Returns the bound JID (or the SaslResult if SASL failed)."""
        f = self.open_stream()
        if not self.tls:
            if f["starttls"] is None:
                raise XMPPTestError("server offers no STARTTLS: %s" % f["children"])
            self.starttls()
            f = self.open_stream()
        if mech not in f["mechanisms"]:
            raise XMPPTestError("mechanism %s not offered: %s" % (mech, f["mechanisms"]))
        if mech in ("PLAIN",):
            res = self.auth_plain(user, password, authzid=authzid or "")
        else:
            res = self.auth_scram(mech, user, password, authzid=authzid)
        if not res.ok:
            raise XMPPTestError("SASL %s failed: %r" % (mech, res))
        f = self.open_stream()
        if not bind:
            return res
        if not f["bind"]:
            raise XMPPTestError("no <bind/> offered after SASL: %s" % f["children"])
        return self.bind(resource)

    def send_presence(self, priority=None, to=None, type_=None):
        attrs = ""
        if to:
            attrs += " to='%s'" % to
        if type_:
            attrs += " type='%s'" % type_
        body = "<priority>%d</priority>" % priority if priority is not None else ""
        self.send("<presence%s>%s</presence>" % (attrs, body))

    def close_stream(self):
        self.send("</stream:stream>")


class PoliteClient(RawClient):
    """RawClient that, leaving a with block, ends its stream politely and
    waits (bounded) for the server to close."""

    def __exit__(self, *exc):
        try:
            if not self.eof and not self.reader.closed:
                self.close_stream()
                self.wait_closed(scaled(2))
        except (OSError, ValueError):
            pass
        self.close()


def raw_login(server, account, resource=None, presence=False):
    """A PoliteClient logged in as account (conftest.Account) on server,
    optionally with an initial presence."""
    c = PoliteClient(server.port)
    c.login(account.user, account.password, resource=resource)
    if presence:
        c.send_presence()
    return c


NS_COMPONENT = "jabber:component:accept"


def component_handshake_value(stream_id, secret):
    """XEP-0114 §3: hex(SHA-1(stream id + secret))."""
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


def raw_component(port, domain, secret, to=None):
    """A RawClient on a component listener that completed the XEP-0114
    handshake for domain."""
    rc = RawClient(port, domain=domain)
    rc.open_stream(features=False, to=to or domain, xmlns=NS_COMPONENT, version=None, lang=None)
    sid = rc.reader.header.get("id")
    assert sid, "the server's header has no id"
    rc.send("<handshake>%s</handshake>" % component_handshake_value(sid, secret))
    el = rc.next_element()
    assert el.tag == q(NS_COMPONENT, "handshake"), tostr(el)
    assert len(el) == 0 and not (el.text or "").strip(), "success is an empty <handshake/>"
    return rc


def _sasl_stream(server):
    c = RawClient(server.port)
    c.open_stream()
    c.starttls()
    return c, c.open_stream()


def sasl_plain(server, user, password):
    """A fresh connection to server, STARTTLS, one PLAIN attempt (RFC 4616):
    its SaslResult."""
    c, _ = _sasl_stream(server)
    with c:
        return c.auth_plain(user, password)


def sasl_scram(server, mech, user, password):
    """As sasl_plain with a SCRAM mechanism, which must be offered."""
    c, f = _sasl_stream(server)
    with c:
        assert mech in f["mechanisms"], f["mechanisms"]
        return c.auth_scram(mech, user, password)


def user_of(jid):
    return jid.split("@", 1)[0]


# ---------------------------------------------------------------------------
# slixmpp helpers
# ---------------------------------------------------------------------------

_live = []  # slixmpp clients created inside run(), torn down at its end

try:
    import slixmpp
    from slixmpp.exceptions import IqError, IqTimeout
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
except ImportError:  # pragma: no cover - reported by conftest
    slixmpp = None
    IqError = IqTimeout = Exception


if slixmpp is not None:
    class Client(slixmpp.ClientXMPP):
        """slixmpp client on 127.0.0.1:port, STARTTLS (or direct TLS),
        self-signed certificate accepted, chosen SASL mechanism, recording
        what it receives in queues."""

        def __init__(self, jid, password, port, mech="SCRAM-SHA-1", direct_tls=False):
            super().__init__(jid, password, sasl_mech=mech)
            self.port = port
            self.direct_tls = direct_tls
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.ssl_context = ctx
            self.use_ipv6 = False
            self.use_aiodns = False
            self.whitespace_keepalive = False
            self.auto_reconnect = False
            # No channel binding: slixmpp only knows tls-unique (not defined
            # for TLS 1.3) and would otherwise send the 'y' flag, which a
            # server advertising -PLUS must refuse (RFC 5802 §6).
            mechs = self["feature_mechanisms"]
            orig = mechs.sasl_callback

            def creds(required, optional):
                r = orig(required, optional)
                if "channel_binding" in r:
                    r["channel_binding"] = b""
                return r
            mechs.sasl_callback = creds
            self.messages = asyncio.Queue()
            self.presences = asyncio.Queue()
            self.stream_errors = []
            self.auth_failures = []
            self._ready = asyncio.get_event_loop().create_future()
            self.add_event_handler("session_start", self._on_start)
            self.add_event_handler("failed_all_auth", lambda e: self._fail("authentication failed: %r" % self.auth_failures))
            self.add_event_handler("failed_auth", lambda s: self.auth_failures.append(s["condition"]))
            self.add_event_handler("connection_failed", lambda e: self._fail("connection failed: %r" % (e,)))
            self.add_event_handler("disconnected", lambda e: self._fail("disconnected before session start"))
            self.add_event_handler("stream_error", lambda e: self.stream_errors.append(e))
            # Every <message/>, also those without <body/> (slixmpp's own
            # 'message' event needs a body: bounces without payload would be
            # missed).
            self.register_handler(Callback(
                "xmpptest all messages", MatchXPath("{%s}message" % self.default_ns),
                lambda m: self.messages.put_nowait(m)))
            self.add_event_handler("presence", lambda p: self.presences.put_nowait(p))

        async def get_dns_records(self, domain, port=None):
            # Never resolve: always the test server.
            return [(self.boundjid.domain, "127.0.0.1", self.port)]

        def _on_start(self, _):
            if not self._ready.done():
                self._ready.set_result(True)

        def _fail(self, why):
            if not self._ready.done():
                self._ready.set_exception(XMPPTestError(why))

        async def start(self, timeout=None):
            self.default_domain = self.boundjid.domain  # SNI
            self.connect(("127.0.0.1", self.port), use_ssl=self.direct_tls,
                         force_starttls=not self.direct_tls)
            try:
                await asyncio.wait_for(self._ready, timeout or DEFAULT_TIMEOUT)
            except asyncio.TimeoutError:
                raise XMPPTestError("timeout: %s did not reach session_start" % self.boundjid)
            return self

        async def next_message(self, timeout=None, pred=None):
            """Next received message (including type='error'), optionally the
            next matching pred; raises on timeout."""
            deadline = time.monotonic() + (timeout or DEFAULT_TIMEOUT)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise XMPPTestError("timeout: %s received no (matching) message" % self.boundjid)
                try:
                    m = await asyncio.wait_for(self.messages.get(), remaining)
                except asyncio.TimeoutError:
                    raise XMPPTestError("timeout: %s received no (matching) message" % self.boundjid)
                if pred is None or pred(m):
                    return m

        async def no_message(self, period=None, pred=None):
            """Messages received within a quiet period (tests assert [])."""
            await asyncio.sleep(period if period is not None else QUIET_PERIOD)
            got = []
            while not self.messages.empty():
                m = self.messages.get_nowait()
                if pred is None or pred(m):
                    got.append(m)
            return got

        async def next_presence(self, timeout=None, pred=None):
            deadline = time.monotonic() + (timeout or DEFAULT_TIMEOUT)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise XMPPTestError("timeout: %s received no (matching) presence" % self.boundjid)
                try:
                    p = await asyncio.wait_for(self.presences.get(), remaining)
                except asyncio.TimeoutError:
                    raise XMPPTestError("timeout: %s received no (matching) presence" % self.boundjid)
                if pred is None or pred(p):
                    return p

        async def iq_error(self, iq, timeout=None):
            """Sends iq; returns (type, condition) of its error reply; raises if
            the reply is a result or nothing comes."""
            try:
                res = await iq.send(timeout=timeout or DEFAULT_TIMEOUT)
            except IqError as e:
                return (e.iq["error"]["type"], e.iq["error"]["condition"])
            except IqTimeout:
                raise XMPPTestError("timeout: no reply to %s" % iq)
            raise XMPPTestError("expected an error, got %s" % res)

        async def stop(self, timeout=2.0):
            try:
                if self.transport is not None:
                    self.disconnect(wait=timeout)
                    await asyncio.wait_for(self.disconnected, timeout + 1)
            except Exception:
                self.abort()


async def connect(server, account, resource=None, mech="SCRAM-SHA-1", direct_tls=False,
                  presence=None, timeout=None, plugins=()):
    """A logged-in slixmpp Client for account (conftest.Account) on server.
    presence: None (send nothing) or a priority (int) for an initial
    available presence; plugins: slixmpp plugins registered before the
    stream starts (those that negotiate stream features)."""
    jid = account.jid + ("/" + resource if resource else "")
    port = server.direct_tls_port if direct_tls else server.port
    c = Client(jid, account.password, port, mech=mech, direct_tls=direct_tls)
    for p in plugins:
        c.register_plugin(p)
    _live.append(c)
    await c.start(timeout)
    if presence is not None:
        c.send_presence(ppriority=presence)
    return c


def run(coro, timeout=None):
    """Runs a test scenario on a fresh asyncio loop with a global bound and
    tears down every slixmpp client it created."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    start = len(_live)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout or scaled(30)))
    finally:
        clients = _live[start:]
        del _live[start:]
        try:
            loop.run_until_complete(asyncio.wait_for(
                asyncio.gather(*(c.stop(0.5) for c in clients), return_exceptions=True), 5))
        except Exception:
            for c in clients:
                try:
                    c.abort()
                except Exception:
                    pass
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        asyncio.set_event_loop(None)


logging.getLogger("slixmpp").setLevel(logging.WARNING)
