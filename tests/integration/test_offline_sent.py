"""Stored offline messages (XEP-0160) are deleted only once the kernel's
socket has them (issue 11 point 8; xmppd_session_when_sent in
api/xmppd/router.h).

The recipient gets more than the kernel's socket buffers can hold (10 MB
of stored messages against at most a few MB of send and receive buffer
on loopback) and reads none of it, so most of the delivery waits in the
server's own memory. Then either the server is killed (kill -9) or the
connection is reset: in both cases every stored message must come again
at the next login. Before the change the messages were deleted as soon as
they were queued in memory, and such a crash or reset lost them.
"""

import re
import socket
import struct
import time

import pytest

from xmpptest import NS_CLIENT, RawClient, XMPPTestError, q, scaled

COUNT = 2500
BODY = "x" * 4000  # 2500 x ~4.1 KB: about 10 MB to deliver


@pytest.fixture(scope="module")
def config_overrides():
    # A slow reader is not cut off here: the backlog must stay in memory.
    return {"modules": {"offline": {"max_messages": 100000}, "presence": {}, "roster": {}},
            "limits": {"max_send_buffer": "256M"}}


def login(server, account, presence=True):
    c = RawClient(server.port, timeout=scaled(30))
    c.login(account.user, account.password)
    if presence:
        c.send_presence()
    return c


def store_messages(server, sender, rcpt, tag):
    """Sends COUNT messages to the offline rcpt; returns once all are stored."""
    mark = len(server.read_log())
    c = login(server, sender)
    for n in range(COUNT):
        c.send("<message to='%s' type='chat' id='%s-%d'><body>%s</body></message>" % (rcpt.jid, tag, n, BODY))
    pattern = re.compile(r"offline: stored a message for %s \(id %s-\d+\)" % (re.escape(rcpt.user), tag))
    deadline = time.monotonic() + scaled(120)
    while len(pattern.findall(server.read_log()[mark:])) < COUNT:
        assert time.monotonic() < deadline, "the messages were not all stored"
        time.sleep(0.2)
    c.close()


def received_ids(c, tag, want, timeout=60):
    """Reads until want messages with ids tag-N came (or the timeout)."""
    ids = set()
    deadline = time.monotonic() + scaled(timeout)
    while len(ids) < want and time.monotonic() < deadline:
        try:
            el = c.next_element(timeout=max(0.1, deadline - time.monotonic()), allow_eof=True)
        except XMPPTestError:  # timeout
            break
        if el is None:
            break
        if el.tag == q(NS_CLIENT, "message") and (el.get("id") or "").startswith(tag + "-"):
            ids.add(el.get("id"))
    return ids


def delivery_started(c, tag):
    """The first stored message arrived; the client reads no further."""
    assert received_ids(c, tag, 1), "the stored messages were not delivered"
    time.sleep(scaled(1))


def wait_log(server, mark, pattern, bound=10):
    deadline = time.monotonic() + scaled(bound)
    while not re.search(pattern, server.read_log()[mark:]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_xep0160_messages_in_server_memory_survive_kill_9(server, accounts):
    sender, rcpt = accounts(2, prefix="offk")
    store_messages(server, sender, rcpt, "kill")
    # The recipient logs in and reads nothing: the delivery cannot all
    # leave the server.
    mark = len(server.read_log())
    c = login(server, rcpt)
    delivery_started(c, "kill")
    server.kill()
    c.close()
    server.start()
    c = login(server, rcpt)
    ids = received_ids(c, "kill", COUNT)
    c.close()
    assert len(ids) == COUNT, "%d of %d stored messages lost by the kill" % (COUNT - len(ids), COUNT)


def test_xep0160_messages_kept_when_connection_resets_before_sent(server, accounts):
    sender, rcpt = accounts(2, prefix="offr")
    store_messages(server, sender, rcpt, "reset")
    mark = len(server.read_log())
    c = login(server, rcpt)
    delivery_started(c, "reset")
    # RST: what the server still holds for this connection cannot leave.
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    assert wait_log(server, mark, r"offline messages of %s kept" % re.escape(rcpt.user)), \
        "the module did not keep the messages of a connection that ended"
    c = login(server, rcpt)
    ids = received_ids(c, "reset", COUNT)
    assert len(ids) == COUNT, "%d of %d stored messages lost by the reset" % (COUNT - len(ids), COUNT)
    # This time everything was read: the messages are deleted.
    time.sleep(scaled(1))
    c.close()
    c = login(server, rcpt)
    again = received_ids(c, "reset", 1, timeout=2)
    c.close()
    assert again == set(), "delivered again after they were read: %d" % len(again)
