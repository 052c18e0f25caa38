"""When the server asks for acknowledgements (XEP-0198 §4, mod_smacks
request_every / request_after), and that the request travels with the
stanzas it follows: everything a loop turn writes to a stream leaves in
one TLS record (the kernel's write coalescing, server/net/xstream_out.c).
"""

import time

import pytest

from xmpptest import RawClient, q, scaled

NS_SM = "urn:xmpp:sm:3"
REQUEST_EVERY = 5


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True,
                        "smacks": {"request_every": REQUEST_EVERY, "request_after": "500ms"}}}


def sm_client(server, account, resource):
    c = RawClient(server.port)
    c.login(account.user, account.password, resource=resource)
    c.send("<enable xmlns='%s'/>" % NS_SM)
    c.wait_for(lambda e: e.tag == q(NS_SM, "enabled"))
    return c


def messages(to, n, tag):
    return "".join("<message to='%s' type='chat' id='%s-%d'><body>%s %d</body></message>" % (to, tag, i, tag, i)
                   for i in range(n))


def test_xep0198_4_request_after_quiet_period(server, accounts):
    """Fewer stanzas than request_every: the server still asks, once
    request_after has passed, and not before."""
    a, b = accounts(2)
    c = sm_client(server, a, "phone")
    d = RawClient(server.port)
    d.login(b.user, b.password)
    sent = time.monotonic()
    d.send(messages(a.jid + "/phone", 2, "quiet"))
    r = c.wait_for(lambda e: e.tag == q(NS_SM, "r"), timeout=scaled(5))
    waited = time.monotonic() - sent
    assert r is not None
    assert waited >= 0.45, "asked after %.2f s, before request_after" % waited
    c.send("<a xmlns='%s' h='2'/>" % NS_SM)
    # Acknowledged: nothing is left to ask for.
    assert c.quiet(1.2, pred=lambda e: e.tag == q(NS_SM, "r")) == []
    c.close()
    d.close()


def test_xep0198_4_request_leaves_in_the_record_of_the_stanzas(server, accounts):
    """request_every stanzas handled in one turn reach the client in one TLS
    record, the <r/> after the last of them."""
    a, b = accounts(2)
    c = sm_client(server, a, "laptop")
    c.quiet(0.3)
    d = RawClient(server.port)
    d.login(b.user, b.password)
    d.send(messages(a.jid + "/laptop", REQUEST_EVERY, "burst"))  # one record: one loop turn
    c.sock.settimeout(scaled(5))
    record = c.sock.recv(65536).decode()  # SSL_read returns one record at most
    last = "burst %d</body></message>" % (REQUEST_EVERY - 1)
    assert record.count("<message") == REQUEST_EVERY, record
    assert last in record and "<r xmlns='%s'/>" % NS_SM in record.split(last, 1)[1], record
    c.close()
    d.close()
