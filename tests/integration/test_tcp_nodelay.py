"""TCP_NODELAY on every socket the server accepts or opens (issue 11.6).

XMPP is a request/answer protocol of small writes (a TLS record, one
stanza); with Nagle's algorithm a write waits for the peer's delayed ACK
(~40 ms on Linux), which made the tail of login latency. The test copies
the server's own sockets into this process (pidfd_getfd, Linux 5.6; needs
ptrace rights over the server: the tests run as root or as its user) and
reads the option there.
"""

import ctypes
import os
import socket

import pytest

from s2s_pair import make_pair, pair_accounts, say_hello, stop_pair
from xmpptest import RawClient

SYS_PIDFD_GETFD = 438


def server_tcp_sockets(pid):
    """Duplicates of the TCP sockets of process pid, connected ones only:
    [(socket, peer address)]. The caller closes them."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    out = []
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            try:
                if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                    continue
            except FileNotFoundError:
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                continue  # closed meanwhile
            s = socket.socket(fileno=fd)
            try:
                if s.type == socket.SOCK_STREAM:
                    out.append((s, s.getpeername()))
                    continue
            except OSError:
                pass  # a listener, or not connected
            s.close()
    finally:
        os.close(pidfd)
    return out


def nodelay_towards(pid, match):
    """TCP_NODELAY of each socket of pid whose peer address matches."""
    socks = server_tcp_sockets(pid)
    try:
        return [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                for s, peer in socks if match(peer)]
    finally:
        for s, _ in socks:
            s.close()


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_accepted_c2s_socket_has_nodelay(server, direct_tls):
    """Accepted client sockets (both listener kinds) have TCP_NODELAY."""
    with RawClient(server.direct_tls_port if direct_tls else server.port,
                   direct_tls=direct_tls) as rc:
        rc.open_stream()
        mine = rc.sock.getsockname()
        found = nodelay_towards(server.proc.pid, lambda peer: peer == mine)
    assert found == [True], "accepted c2s socket: TCP_NODELAY %r" % found


def test_s2s_sockets_have_nodelay(tmp_path_factory):
    """Both ends of an s2s stream: the sender's outgoing socket and the
    receiver's accepted one have TCP_NODELAY."""
    pair = make_pair(tmp_path_factory.mktemp("nodelay-s2s"))
    a_srv, b_srv = pair
    try:
        say_hello(a_srv, b_srv, *pair_accounts(a_srv, b_srv))
        out = nodelay_towards(a_srv.proc.pid, lambda peer: peer[1] == b_srv.s2s_port)
        assert out and all(out), "A's outgoing s2s sockets: TCP_NODELAY %r" % out
        # the sockets B accepted (not its own streams to A's s2s port)
        accepted = nodelay_towards(b_srv.proc.pid, lambda peer: peer[1] != a_srv.s2s_port)
        assert accepted and all(accepted), "B's accepted sockets: TCP_NODELAY %r" % accepted
    finally:
        stop_pair(pair)
