"""Byte-level clients for the web transports: WebSocket (RFC 6455 frames
by hand, RFC 7395 framing on top) and BOSH (XEP-0124/0206 bodies over
http.client), for tests where the exact bytes matter. Standard library
only; every wait is bounded (xmpptest.DEFAULT_TIMEOUT)."""

import base64
import http.client
import os
import socket
import ssl
import struct
import time
import xml.etree.ElementTree as ET

import xmpptest
from xmpptest import XMPPTestError, q

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_HTTPBIND = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def add_web_listeners(srv):
    """Adds a plain HTTP and an HTTPS listener to srv's configuration (before
    it starts): srv.http_port, srv.https_port."""
    srv.http_port = xmpptest.free_port()
    srv.https_port = xmpptest.free_port()
    srv.config["listeners"] = srv.config["listeners"] + [
        {"type": "http", "address": "127.0.0.1", "port": srv.http_port},
        {"type": "http", "address": "127.0.0.1", "port": srv.https_port, "tls": "direct"},
    ]
    srv.write_config()
    return srv


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def http_request(port, method, path, body=None, headers=None, tls=False, host="localhost",
                 timeout=None):
    """One request on a fresh connection: (status, headers dict lower-cased, body bytes)."""
    conn_cls = http.client.HTTPSConnection if tls else http.client.HTTPConnection
    kw = {"context": tls_context()} if tls else {}
    conn = conn_cls("127.0.0.1", port, timeout=timeout or xmpptest.DEFAULT_TIMEOUT, **kw)
    try:
        h = {"Host": host}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def raw_http(port, data, tls=False, timeout=None, until_close=True):
    """Sends bytes as they are and returns what comes back until the server
    closes (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout or xmpptest.DEFAULT_TIMEOUT)
    if tls:
        s = tls_context().wrap_socket(s, server_hostname="localhost")
    try:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + (timeout or xmpptest.DEFAULT_TIMEOUT)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()


class WSClosed(Exception):
    pass


class WebSocket:
    """A client WebSocket: the handshake, masked frames out, frames in."""

    def __init__(self, port, path="/xmpp-websocket", tls=False, protocol="xmpp", host="localhost",
                 extra_headers=None, key=None, version="13"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=xmpptest.DEFAULT_TIMEOUT)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock, server_hostname=host)
        self.buf = b""
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: %s" % self.key,
                 "Sec-WebSocket-Version: %s" % version]
        if protocol:
            lines.append("Sec-WebSocket-Protocol: %s" % protocol)
        lines += extra_headers or []
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status_line, *hdrs = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for h in hdrs:
            if ":" in h:
                k, v = h.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            length = int(self.headers.get("content-length", "0"))
            self.body = self._read_exact(length) if length else b""

    def _recv(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise XMPPTestError("timeout waiting for WebSocket data")
        if not data:
            raise WSClosed()
        self.buf += data

    def _read_until(self, marker, timeout=None):
        deadline = time.monotonic() + (timeout or xmpptest.DEFAULT_TIMEOUT)
        while marker not in self.buf:
            self._recv(deadline)
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _read_exact(self, n, deadline=None):
        deadline = deadline or time.monotonic() + xmpptest.DEFAULT_TIMEOUT
        while len(self.buf) < n:
            self._recv(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def accept_ok(self):
        digest = __import__("hashlib").sha1((self.key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                            .encode()).digest()
        return self.headers.get("sec-websocket-accept") == base64.b64encode(digest).decode()

    @staticmethod
    def frame(opcode, payload, fin=True, mask=True, rsv=0):
        head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head += bytes([mbit | n])
        elif n < 65536:
            head += bytes([mbit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([mbit | 127]) + struct.pack("!Q", n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    def send_frame(self, opcode, payload, **kw):
        self.sock.sendall(self.frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def recv_frame(self, timeout=None):
        """(opcode, payload) of the next frame, answering pings."""
        deadline = time.monotonic() + (timeout or xmpptest.DEFAULT_TIMEOUT)
        while True:
            b0, b1 = self._read_exact(2, deadline)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read_exact(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read_exact(8, deadline))[0]
            if b1 & 0x80:
                raise XMPPTestError("server frames must not be masked (RFC 6455 §5.1)")
            payload = self._read_exact(n, deadline)
            op = b0 & 0x0F
            if op == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            return op, payload

    def recv_text(self, timeout=None):
        op, payload = self.recv_frame(timeout)
        if op == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            raise WSClosed(code)
        if op != OP_TEXT:
            raise XMPPTestError("expected a text frame, got opcode %d" % op)
        return payload.decode()

    def recv_element(self, timeout=None):
        return ET.fromstring(self.recv_text(timeout))

    def expect_close_code(self, timeout=None):
        """Reads until a close frame; returns its status code."""
        deadline = time.monotonic() + (timeout or xmpptest.DEFAULT_TIMEOUT)
        while True:
            op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- XMPP over it (RFC 7395) --------------------------------------------
    def open(self, to="localhost"):
        self.send_text("<open xmlns='%s' to='%s' version='1.0'/>" % (NS_FRAMING, to))
        opened = self.recv_element()
        if opened.tag != q(NS_FRAMING, "open"):
            raise XMPPTestError("expected <open/>, got %s" % ET.tostring(opened))
        features = self.recv_element()
        return opened, features

    def login(self, user, password, to="localhost", resource=None):
        """SASL PLAIN, restart, bind; returns the bound JID."""
        _, features = self.open(to)
        msg = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        self.send_text("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % msg)
        res = self.recv_element()
        if res.tag != q(xmpptest.NS_SASL, "success"):
            raise XMPPTestError("SASL failed: %s" % ET.tostring(res))
        self.open(to)
        self.send_text("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='%s'>%s</bind></iq>"
                       % (xmpptest.NS_BIND, "<resource>%s</resource>" % resource if resource else ""))
        iq = self.recv_element()
        jid = iq.find(".//" + q(xmpptest.NS_BIND, "jid"))
        if jid is None:
            raise XMPPTestError("bind failed: %s" % ET.tostring(iq))
        return jid.text

    def wait_for(self, pred, timeout=None):
        deadline = time.monotonic() + (timeout or xmpptest.DEFAULT_TIMEOUT)
        while True:
            el = self.recv_element(max(0.01, deadline - time.monotonic()))
            if pred(el):
                return el


class Bosh:
    """A BOSH session: bodies over one keep-alive HTTP connection per
    request in flight (http.client)."""

    def __init__(self, port, path="/http-bind", tls=False, host="localhost"):
        self.port, self.path, self.tls, self.host = port, path, tls, host
        self.rid = int.from_bytes(os.urandom(4), "big")
        self.sid = None

    def post(self, body, timeout=None):
        """(status, root element or None, raw bytes)."""
        st, hdrs, data = http_request(self.port, "POST", self.path, body=body,
                                      headers={"Content-Type": "text/xml; charset=utf-8"},
                                      tls=self.tls, host=self.host,
                                      timeout=timeout or xmpptest.DEFAULT_TIMEOUT * 3)
        try:
            root = ET.fromstring(data) if data.strip() else None
        except ET.ParseError:
            root = None
        return st, root, data

    def body(self, inner="", rid=None, **attrs):
        if rid is None:
            self.rid += 1
            rid = self.rid
        a = {"rid": str(rid), "xmlns": NS_HTTPBIND}
        if self.sid:
            a["sid"] = self.sid
        a.update({k.replace("__", ":").replace("_", "-") if k.startswith("xmpp__") else k: v
                  for k, v in attrs.items()})
        at = " ".join("%s='%s'" % (k, v) for k, v in a.items())
        if any(k.startswith("xmpp:") for k in a):
            at += " xmlns:xmpp='%s'" % NS_XBOSH
        return "<body %s>%s</body>" % (at, inner)

    def create(self, to="localhost", wait="5", hold="1", **extra):
        st, root, raw = self.post(self.body(rid=self.rid, to=to, wait=wait, hold=hold, ver="1.6",
                                            xmpp__version="1.0", **extra))
        if root is not None and root.get("sid"):
            self.sid = root.get("sid")
        return st, root, raw

    def send(self, inner="", **attrs):
        return self.post(self.body(inner, **attrs))

    def login(self, user, password, to="localhost"):
        st, root, _ = self.create(to)
        if not self.sid:
            raise XMPPTestError("no BOSH session: %s" % ET.tostring(root))
        msg = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        st, root, _ = self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % msg)
        if root is None or root.find(q(xmpptest.NS_SASL, "success")) is None:
            raise XMPPTestError("SASL failed: %s" % (ET.tostring(root) if root is not None else None))
        self.send(to=to, xmpp__restart="true", **{"xml:lang": "en"})
        st, root, _ = self.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='%s'/></iq>"
                                % xmpptest.NS_BIND)
        jid = root.find(".//" + q(xmpptest.NS_BIND, "jid")) if root is not None else None
        if jid is None:
            raise XMPPTestError("bind failed: %s" % (ET.tostring(root) if root is not None else None))
        return jid.text
