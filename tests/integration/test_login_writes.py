"""A login's writes leave in the loop turn that makes them (issue 18:
login latency). The TLS handshake's flights (ServerHello..Finished, then
the session ticket with the next stream header and features) used to wait
a loop turn for the socket to report itself writable, twice per login
(server/net/xstream_out.c). The server counts every time a stream's
output waits for its socket, xmppd_stream_write_waits_total; a client that
reads everything at once on loopback never fills a socket, so full logins
(RFC 6120 §5 STARTTLS, §6 SASL, §7 bind) must leave the counter as it
was."""

import re

import pytest

from conftest import Server, _finish
from webclient import add_web_listeners, http_request
from xmpptest import RawClient


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("loginwrites"), cert_dir, {
        "modules": {"presence": {}, "roster": {}, "metrics": {}},
    }, name="loginwrites")
    add_web_listeners(srv)
    srv.start()
    yield srv
    _finish(srv)


def write_waits(srv, traffic_seen=True):
    """The counter; the kernel registers its traffic counters with the
    first traffic, so before any it may be absent (0)."""
    st, _, body = http_request(srv.http_port, "GET", "/metrics")
    assert st == 200, (st, body)
    m = re.search(r"^xmppd_stream_write_waits_total (\S+)$", body.decode(), re.M)
    assert m or not traffic_seen, "xmppd_stream_write_waits_total is not exported"
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_tls_login_writes_without_waiting_for_the_socket(server, accounts, mech):
    """RFC 6120 §5.4.3.3 (TLS negotiation) and §6.4 (SASL): each handshake
    flight and each answer is written at once, not on a later
    writability event."""
    before = write_waits(server, traffic_seen=False)
    for a in accounts(3):
        c = RawClient(server.port)
        try:
            jid = c.login(a.user, a.password, mech=mech)
            assert str(jid).startswith(a.user + "@")
            c.send_presence()
            c.next_element()  # the own presence (RFC 6121 §4.2.2)
            c.close_stream()
        finally:
            c.close()
    assert write_waits(server) == before
