"""The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) on
listeners with "proxy_protocol": true (issue 20, operations).

Raw sockets send the header, then an XMPP stream header: the stream goes on
as usual, and the server's log and its per-address limit
(limits.connections_per_ip) see the client address from the header, not
the balancer's. A malformed header closes the connection; a source outside
trusted_proxies is refused; `xmppctl check` wants trusted_proxies.
"""

import socket
import struct
import time

from xmpptest import free_port, scaled

STREAM = (b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
          b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, sport=40000, dst=None, dport=5222):
    fam = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, sport=40000, dst=None, dport=5222, cmd=1, tlvs=b""):
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    if ":" in src:
        fam, addrs = 0x21, socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam, addrs = 0x11, socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
    body = addrs + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


def proxied_server(server_factory, trusted=("127.0.0.1",), per_ip=None):
    srv = server_factory(start=False)
    srv.proxy_port = free_port()
    srv.config["listeners"].append({"type": "c2s", "address": "127.0.0.1", "port": srv.proxy_port,
                                    "proxy_protocol": True, "trusted_proxies": list(trusted)})
    if per_ip:
        srv.config["limits"]["connections_per_ip"] = per_ip
    srv.write_config()
    srv.start()
    return srv


def open_stream(srv, header, split=False):
    """Connects to the PROXY listener, sends header (in two writes with
    split) and a stream header; returns (socket, what the server sent
    within a second)."""
    s = socket.create_connection(("127.0.0.1", srv.proxy_port), timeout=scaled(5))
    if split:
        s.sendall(header[:7])
        time.sleep(0.1)
        s.sendall(header[7:])
    else:
        s.sendall(header)
    try:
        s.sendall(STREAM)
    except (ConnectionResetError, BrokenPipeError):
        pass
    return s, read_some(s)


def read_some(s, wait=1.0):
    s.settimeout(scaled(wait))
    out = b""
    try:
        while b"</stream:features>" not in out:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def closed(s):
    s.settimeout(scaled(3))
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def wait_log(srv, text, timeout=5):
    deadline = time.monotonic() + scaled(timeout)
    while text not in srv.read_log():
        assert time.monotonic() < deadline, "not in the log: %s" % text
        time.sleep(0.05)


def test_issue20_proxy_v1_and_v2_give_the_client_address(server_factory):
    """Version 1 (text, TCP4 and TCP6) and version 2 (binary, TCP4 with a
    TLV, and split over two writes): the stream starts after the header,
    and the log names the client address from the header."""
    srv = proxied_server(server_factory)
    cases = [(v1("203.0.113.7"), "203.0.113.7", False),
             (v1("2001:db8::7"), "2001:db8::7", False),
             (v2("198.51.100.9", tlvs=b"\x04\x00\x03abc"), "198.51.100.9", True),
             (v2("2001:db8::9"), "2001:db8::9", False)]
    socks = []
    for header, ip, split in cases:
        s, got = open_stream(srv, header, split)
        assert b"<stream:features" in got, (ip, got)
        wait_log(srv, "127.0.0.1: PROXY protocol v%s: client %s" % ("2" if header[0] == 13 else "1", ip))
        socks.append(s)
    for s in socks:
        s.close()
    for _, ip, _ in cases:  # the c2s layer names the connection by the client too
        wait_log(srv, "c2s: %s #" % ip)


def test_issue20_proxy_v2_local_keeps_the_balancers_address(server_factory):
    """A v2 LOCAL header (the balancer's own health check) carries no
    client: the connection goes on with the balancer's address."""
    srv = proxied_server(server_factory)
    s, got = open_stream(srv, V2_SIG + bytes([0x20, 0x00]) + b"\x00\x00")
    assert b"<stream:features" in got
    wait_log(srv, "PROXY protocol v2: client not given")
    s.close()


def test_issue20_limits_count_the_proxied_address(server_factory):
    """limits.connections_per_ip counts the address from the header: two
    clients behind one balancer get a connection each; a second one from
    the same client address is refused."""
    srv = proxied_server(server_factory, per_ip=1)
    a, got_a = open_stream(srv, v2("192.0.2.10"))
    b, got_b = open_stream(srv, v1("192.0.2.11"))
    assert b"<stream:features" in got_a and b"<stream:features" in got_b
    c, got_c = open_stream(srv, v1("192.0.2.10", sport=40001))
    assert b"<stream:features" not in got_c
    assert closed(c)
    wait_log(srv, "192.0.2.10: too many connections from this address")
    for s in (a, b, c):
        s.close()


def test_issue20_malformed_header_closes_the_connection(server_factory):
    """A listener with proxy_protocol takes nothing but a header first: a
    plain stream header, a v1 line with a bad address, an unknown v2
    version, and a v1 line longer than 107 bytes each close the
    connection."""
    srv = proxied_server(server_factory)
    bad = [STREAM,
           b"PROXY TCP4 999.1.2.3 127.0.0.1 1 2\r\n",
           V2_SIG + bytes([0x30, 0x11]) + b"\x00\x0c" + b"\x00" * 12,
           b"PROXY TCP4 " + b"1" * 120 + b"\r\n"]
    for header in bad:
        s = socket.create_connection(("127.0.0.1", srv.proxy_port), timeout=scaled(5))
        s.sendall(header)
        assert closed(s), header
        s.close()
    assert srv.read_log().count("PROXY protocol: malformed header") == len(bad)
    # the server still serves a good one
    s, got = open_stream(srv, v1("203.0.113.8"))
    assert b"<stream:features" in got
    s.close()


def test_issue20_untrusted_source_is_refused(server_factory):
    """Only trusted_proxies may speak the PROXY protocol: a connection from
    another address is closed before anything is read, whatever it sends."""
    srv = proxied_server(server_factory, trusted=("192.0.2.0/24",))
    s = socket.create_connection(("127.0.0.1", srv.proxy_port), timeout=scaled(5))
    try:
        s.sendall(v1("203.0.113.7") + STREAM)
    except (ConnectionResetError, BrokenPipeError):
        pass
    assert closed(s)
    s.close()
    wait_log(srv, "127.0.0.1: refused: not a trusted proxy")
    assert "203.0.113.7 #" not in srv.read_log()


def test_issue20_check_wants_trusted_proxies(server_factory):
    """`xmppctl check`: proxy_protocol without trusted_proxies is an
    error (anyone could claim any address)."""
    srv = server_factory(start=False)
    srv.config["listeners"].append({"type": "c2s", "address": "127.0.0.1", "port": free_port(),
                                    "proxy_protocol": True})
    srv.write_config()
    r = srv.ctl("check")
    assert r.returncode != 0
    assert "proxy_protocol" in r.stdout + r.stderr and "trusted_proxies" in r.stdout + r.stderr
