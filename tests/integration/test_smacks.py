"""XEP-0198 Stream Management (mod_smacks): acknowledgements both ways,
resumption after a dropped connection, hibernation, and what happens to
unacknowledged stanzas when a lost session is not resumed (§9).

Raw-socket tests check the exact elements; the random-drop test resumes a
client whose TCP connection is cut at random moments during a stream of
messages and checks each arrives exactly once, in order.
"""

import random
import time

import pytest

from xmpptest import (NS_CLIENT, RawClient, XMPPTestError, connect, q, run, scaled, tostr,
                      xml_escape)

NS_SM = "urn:xmpp:sm:3"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
RESUME_TIMEOUT = 3
MAX_UNACKED = 200


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "offline": True,
                        "smacks": {"resume_timeout": "%ds" % RESUME_TIMEOUT, "max_unacked": MAX_UNACKED,
                                   "request_every": 5}}}


def sm(tag):
    return q(NS_SM, tag)


def is_sm(el, tag):
    return el.tag == sm(tag)


def expect_stream_error(c, condition, timeout=None):
    """Skips stanzas until <stream:error/>; asserts its condition."""
    el = c.wait_for(lambda e: e.tag == "{http://etherx.jabber.org/streams}error", timeout)
    conds = [ch.tag.split("}")[-1] for ch in el]
    assert condition in conds, tostr(el)


def login(server, account, resource, bind=True):
    c = RawClient(server.port)
    c.login(account.user, account.password, resource=resource, bind=bind)
    return c


def enable(c, resume=True, max_=None):
    attrs = " resume='true'" if resume else ""
    if max_:
        attrs += " max='%d'" % max_
    c.send("<enable xmlns='%s'%s/>" % (NS_SM, attrs))
    return c.wait_for(lambda e: is_sm(e, "enabled") or is_sm(e, "failed"))


def message(to, body, mid=None):
    return "<message to='%s' type='chat'%s><body>%s</body></message>" % (
        to, " id='%s'" % mid if mid else "", xml_escape(body))


class SMClient:
    """A raw client that counts what it receives and acknowledges on <r/>."""

    def __init__(self, raw):
        self.raw, self.h, self.bodies = raw, 0, []

    def pump(self, timeout=0.2, until=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until and until(self):
                return True
            try:
                el = self.raw.next_element(max(0.01, deadline - time.monotonic()))
            except XMPPTestError:
                break
            if el.tag in (q(NS_CLIENT, "message"), q(NS_CLIENT, "presence"), q(NS_CLIENT, "iq")):
                self.h += 1
                body = el.find(q(NS_CLIENT, "body"))
                if el.tag == q(NS_CLIENT, "message") and body is not None:
                    self.bodies.append(body.text)
            elif is_sm(el, "r"):
                self.raw.send("<a xmlns='%s' h='%d'/>" % (NS_SM, self.h))
            if until and until(self):
                return True
        return until(self) if until else True


# ---- features and enabling ---------------------------------------------------------------------

def test_feature_after_auth_and_enable_needs_bind(server, accounts):
    """XEP-0198 §2: <sm/> is offered with the post-SASL features; §3: an
    <enable/> before resource binding fails with unexpected-request."""
    (a,) = accounts(1)
    c = RawClient(server.port)
    f = c.open_stream()
    assert f["starttls"] is not None
    c.starttls()
    f = c.open_stream()
    assert sm("sm") not in f["children"]
    assert c.auth_plain(a.user, a.password).ok
    f = c.open_stream()
    assert sm("sm") in f["children"], f["children"]
    el = enable(c)
    assert is_sm(el, "failed") and el.find(q(NS_STANZAS, "unexpected-request")) is not None, tostr(el)
    c.bind("r1")
    el = enable(c)
    assert is_sm(el, "enabled") and el.get("resume") == "true" and el.get("id"), tostr(el)
    assert int(el.get("max")) == RESUME_TIMEOUT
    el = enable(c)
    assert is_sm(el, "failed") and el.find(q(NS_STANZAS, "unexpected-request")) is not None
    c.close()


def test_counting_both_ways(server, accounts):
    """XEP-0198 §4: <r/> is answered with the count of stanzas the server
    handled since <enable/>; the server asks with <r/> every request_every
    unacknowledged stanzas, and the client's <a/> empties its queue."""
    a, b = accounts(2)
    c = login(server, a, "counter")
    el = enable(c, resume=False)
    assert is_sm(el, "enabled") and el.get("id") is None
    for i in range(3):
        c.send(message("nobody-%d@localhost" % i, "x"))  # errors come back: received too
    c.send("<r xmlns='%s'/>" % NS_SM)
    el = c.wait_for(lambda e: is_sm(e, "a"))
    assert el.get("h") == "3"
    d = login(server, b, "sender")
    for i in range(5):
        d.send(message(a.jid + "/counter", "m%d" % i))
    r = c.wait_for(lambda e: is_sm(e, "r"), timeout=scaled(5))
    assert r is not None
    c.send("<a xmlns='%s' h='8'/>" % NS_SM)  # 3 bounces + 5 messages
    assert c.quiet(0.5, pred=lambda e: e.tag.endswith("error")) == []
    c.close()
    d.close()


def test_ack_above_sent_is_a_stream_error(server, accounts):
    """XEP-0198 §4: an h larger than what was sent ends the stream with
    <undefined-condition/>."""
    (a,) = accounts(1)
    c = login(server, a, "liar")
    enable(c, resume=False)
    c.send("<a xmlns='%s' h='7'/>" % NS_SM)
    c.expect_stream_error("undefined-condition")


def test_never_acknowledging_client_is_cut_off(server, accounts):
    """Bounded: a client that never acknowledges is closed with
    policy-violation once max_unacked stanzas wait for it."""
    a, b = accounts(2)
    c = login(server, a, "deaf")
    enable(c, resume=False)
    d = login(server, b, "flood")
    for i in range(MAX_UNACKED + 10):
        d.send(message(a.jid + "/deaf", "f%d" % i))
    expect_stream_error(c, "policy-violation", timeout=scaled(10))
    d.close()


# ---- resumption -----------------------------------------------------------------------------------

def test_resume_after_drop_resends_what_was_missed(server, accounts):
    """XEP-0198 §5: after a dropped TCP connection the session is kept; a
    <resume/> with the client's h on a new stream gets <resumed/> with the
    server's h, then every stanza the client had not acknowledged, in
    order, including those that came while it was away. Other resources
    of the account see no unavailable presence meanwhile."""
    a, b = accounts(2)
    c = login(server, a, "phone")
    c.send("<presence/>")
    el = enable(c)
    previd = el.get("id")
    watcher = login(server, a, "desktop")
    watcher.send("<presence/>")
    sc = SMClient(c)
    d = login(server, b, "friend")
    d.send(message(a.jid + "/phone", "before-1"))
    d.send(message(a.jid + "/phone", "before-2"))
    assert sc.pump(2, until=lambda s: len(s.bodies) == 2)
    c.send("<presence><status>still here</status></presence>")
    c.sock.close()  # no </stream:stream>: lost, not closed
    time.sleep(0.3)
    d.send(message(a.jid + "/phone", "while-away"))
    time.sleep(0.3)
    assert watcher.quiet(0.5, pred=lambda e: e.tag == q(NS_CLIENT, "presence")
                         and e.get("type") == "unavailable") == []

    # The client saw before-2 but acknowledges only what came before it.
    n = login(server, a, None, bind=False)
    n.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (NS_SM, previd, sc.h - 1))
    el = n.wait_for(lambda e: is_sm(e, "resumed") or is_sm(e, "failed"))
    assert is_sm(el, "resumed"), tostr(el)
    assert el.get("previd") == previd
    assert int(el.get("h")) == 1  # the presence it sent after <enable/>
    got = SMClient(n)
    got.pump(2, until=lambda s: s.bodies[-1:] == ["while-away"])
    assert got.bodies == ["before-2", "while-away"], got.bodies
    # The resumed stream is the bound session: it sends and receives.
    n.send(message(b.jid + "/friend", "back"))
    m = d.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    assert m.get("from") == a.jid + "/phone"
    for x in (n, d, watcher):
        x.close()


def test_resume_closes_half_open_connection_with_conflict(server, accounts):
    """XEP-0198 §5: a resumption while the old connection is still open
    (half-open, as after a network change) closes it with <conflict/>."""
    (a,) = accounts(1)
    old = login(server, a, "laptop")
    previd = enable(old).get("id")
    n = login(server, a, None, bind=False)
    n.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, previd))
    assert is_sm(n.wait_for(lambda e: is_sm(e, "resumed") or is_sm(e, "failed")), "resumed")
    old.expect_stream_error("conflict")
    n.close()


def test_resume_unknown_foreign_or_expired_fails(server, accounts):
    """XEP-0198 §5: an unknown id gets <failed/> with item-not-found;
    another account's id is as unknown; after resume_timeout the id is
    gone, the session ended (other resources see it unavailable), a chat
    message it never acknowledged went to offline storage and arrives at
    the next login, and an IQ request held for it was answered with an
    error."""
    a, b, other = accounts(3)
    n = login(server, a, None, bind=False)
    n.send("<resume xmlns='%s' previd='no-such-id' h='0'/>" % NS_SM)
    el = n.wait_for(lambda e: is_sm(e, "failed"))
    assert el.find(q(NS_STANZAS, "item-not-found")) is not None
    n.close()

    c = login(server, a, "gone")
    c.send("<presence/>")
    previd = enable(c).get("id")
    thief = login(server, other, None, bind=False)
    thief.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, previd))
    el = thief.wait_for(lambda e: is_sm(e, "failed"))
    assert el.find(q(NS_STANZAS, "item-not-found")) is not None
    thief.close()

    watcher = login(server, a, "watch")
    watcher.send("<presence/>")
    c.sock.close()
    d = login(server, b, "sender")
    time.sleep(0.3)
    d.send(message(a.jid + "/gone", "kept-for-you"))
    d.send("<iq type='get' id='q1' to='%s/gone'><query xmlns='jabber:iq:version'/></iq>" % a.jid)
    watcher.close()  # no other resource: the message goes offline at expiry
    err = d.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "q1",
                     timeout=scaled(RESUME_TIMEOUT + 5))
    assert err.get("type") == "error"
    n = login(server, a, None, bind=False)
    n.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, previd))
    assert n.wait_for(lambda e: is_sm(e, "failed")).find(q(NS_STANZAS, "item-not-found")) is not None
    n.close()
    e = login(server, a, "later")
    e.send("<presence/>")
    m = e.wait_for(lambda x: x.tag == q(NS_CLIENT, "message"), timeout=scaled(5))
    assert m.find(q(NS_CLIENT, "body")).text == "kept-for-you"
    e.close()
    d.close()


def test_random_drops_lose_nothing(server, accounts):
    """XEP-0198: a client whose connection is cut at random moments during
    a stream of thousands of messages, and that resumes each time, gets
    every message exactly once, in order (bounded: about ten seconds)."""
    a, b = accounts(2)
    rnd = random.Random(198)
    total = 3000
    c = login(server, a, "mobile")
    previd = enable(c).get("id")
    sc = SMClient(c)
    d = login(server, b, "blaster")
    sent = 0
    drops = 0
    while sent < total:
        burst = rnd.randint(10, 80)
        for _ in range(min(burst, total - sent)):
            d.send(message(a.jid + "/mobile", "n%04d" % sent))
            sent += 1
        sc.pump(rnd.uniform(0.0, 0.1))
        # acknowledge unasked too (XEP-0198 §4 allows it), so the queue
        # stays under max_unacked across bursts cut short by a drop
        sc.raw.send("<a xmlns='%s' h='%d'/>" % (NS_SM, sc.h))
        if rnd.random() < 0.4:
            sc.raw.sock.close()
            drops += 1
            n = login(server, a, None, bind=False)
            n.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (NS_SM, previd, sc.h))
            el = n.wait_for(lambda e: is_sm(e, "resumed") or is_sm(e, "failed"))
            assert is_sm(el, "resumed"), tostr(el)
            sc.raw = n
    sc.pump(scaled(20), until=lambda s: len(s.bodies) >= total)
    assert drops > 10
    assert sc.bodies == ["n%04d" % i for i in range(total)], (len(sc.bodies), sc.bodies[:5])
    sc.raw.close()
    d.close()


def test_slixmpp_stream_management(server, accounts):
    """slixmpp's XEP-0198 plugin negotiates stream management with this
    server (enable with resumption) and gets its acknowledgements."""
    import asyncio
    import xmpptest
    (a,) = accounts(1)

    async def scenario():
        c = xmpptest.Client(a.jid + "/sli", a.password, server.port)
        xmpptest._live.append(c)
        c.register_plugin("xep_0198")
        enabled = asyncio.get_event_loop().create_future()
        c.add_event_handler("sm_enabled", lambda e: enabled.done() or enabled.set_result(e))
        await c.start()
        st = await asyncio.wait_for(enabled, scaled(5))
        assert st["id"] and st["resume"]
        c.send_message(mto=a.jid + "/sli", mbody="self")
        await c.next_message(pred=lambda m: m["body"] == "self")
        c["xep_0198"].request_ack()
        deadline = time.monotonic() + scaled(5)
        while c["xep_0198"].last_ack < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert c["xep_0198"].last_ack >= 1
    run(scenario())
