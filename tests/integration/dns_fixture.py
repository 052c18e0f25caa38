"""A tiny authoritative DNS server on a loopback UDP port, for s2s tests.

It answers SRV, A and AAAA questions from a table the test fills, NXDOMAIN
for names it does not know, and an empty NOERROR answer for known names
(and their parents) asked with another type. Every question is recorded in order, so a test can
see which targets a server looked up (RFC 6120 §3.2.1 order). Nothing here
touches the real DNS: xmppd is pointed at it with s2s.dns_servers, Prosody
with unbound = { forward = "127.0.0.1@PORT" }.

    dns = DNSServer()
    dns.add_srv("_xmpp-server._tcp.b.test", 10, 0, 5269, "host.b.test")
    dns.add_a("host.b.test", "127.0.0.1")
    ... s2s.dns_servers = ["127.0.0.1:%d" % dns.port]
    dns.close()
"""

import socket
import struct
import threading

T_A, T_AAAA, T_SRV, T_OPT = 1, 28, 33, 41
TYPE_NAMES = {T_A: "A", T_AAAA: "AAAA", T_SRV: "SRV"}


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("idna") if any(ord(c) > 127 for c in label) else label.encode()
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def _read_name(msg, off):
    """Reads a (possibly compressed) name at off; returns (name, next_off)."""
    labels, jumped, end = [], False, off
    for _ in range(128):
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack("!H", msg[off:off + 2])[0] & 0x3FFF
            if not jumped:
                end = off + 2
            jumped, off = True, ptr
            continue
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return ".".join(labels).lower(), (end if jumped else off)


class DNSServer:
    def __init__(self, host="127.0.0.1"):
        self.records = {}       # (name, type) -> [rdata bytes]
        self.names = set()
        self.queries = []       # (name, type name) in arrival order
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # -- table -------------------------------------------------------------
    def _add(self, name, rtype, rdata):
        name = name.rstrip(".").lower()
        with self.lock:
            self.records.setdefault((name, rtype), []).append(rdata)
            self.names.add(name)

    def add_srv(self, name, priority, weight, port, target):
        self._add(name, T_SRV, struct.pack("!HHH", priority, weight, port) + _encode_name(target))

    def add_a(self, name, ip):
        self._add(name, T_A, socket.inet_pton(socket.AF_INET, ip))

    def add_aaaa(self, name, ip):
        self._add(name, T_AAAA, socket.inet_pton(socket.AF_INET6, ip))

    def seen(self, rtype=None):
        """Names asked so far (optionally only of one type name, e.g. "A")."""
        with self.lock:
            return [n for n, t in self.queries if rtype is None or t == rtype]

    def clear_log(self):
        with self.lock:
            self.queries.clear()

    # -- protocol --------------------------------------------------------------
    def _answer(self, msg):
        if len(msg) < 12:
            return None
        qid, flags, qd, _an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
        if qd != 1 or flags & 0x8000:
            return None
        name, off = _read_name(msg, 12)
        qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        with self.lock:
            self.queries.append((name, TYPE_NAMES.get(qtype, str(qtype))))
            # A parent of a known name exists too (an empty non-terminal,
            # RFC 8020): resolvers minimising names ask for those first.
            known = name in self.names or any(n.endswith("." + name) for n in self.names)
            rdatas = list(self.records.get((name, qtype), []))
        rcode = 0 if known else 3  # NXDOMAIN
        # QR, AA, RD copied, RA
        rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        answers = b""
        for rd in rdatas:
            answers += _encode_name(name) + struct.pack("!HHIH", qtype, 1, 5, len(rd)) + rd
        header = struct.pack("!HHHHHH", qid, rflags, 1, len(rdatas), 0, 0)
        return header + question + answers

    def _serve(self):
        while not self._stop:
            try:
                msg, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                out = self._answer(msg)
            except (IndexError, struct.error):
                out = None
            if out:
                try:
                    self.sock.sendto(out, addr)
                except OSError:
                    pass

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()
