"""XEP-0191 Blocking Command (mod_blocking over mod_privacy's lists).

Each test checks what both parties receive: the blocklist and its pushes
(§3.2 - §3.5), the errors of §3.3 for stanzas either way, the presence a
block and an unblock send, and that a block outlives the session and
applies while the account is offline.
"""

import asyncio
import xml.etree.ElementTree as ET

import pytest

from xmpptest import QUIET_PERIOD, XMPPTestError, connect, run

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_ROSTER = "jabber:iq:roster"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "privacy": True, "blocking": True,
                        "disco": True, "offline": True, "vcard": True}}


async def login(server, account, resource=None, blocklist=True, presence=None):
    c = await connect(server, account, resource=resource)
    c.register_plugin("xep_0191")
    c.auto_authorize = None
    c.auto_subscribe = False
    c.pushes = asyncio.Queue()
    c.add_event_handler("blocked", lambda iq: c.pushes.put_nowait(("block", iq)))
    c.add_event_handler("unblocked", lambda iq: c.pushes.put_nowait(("unblock", iq)))
    if blocklist:
        await c.plugin["xep_0191"].get_blocked(timeout=5)
    if presence is not None:
        c.send_presence(ppriority=presence)
        await c.next_presence(pred=lambda p: p["from"] == c.boundjid and p["type"] == "available")
    return c


async def next_push(c, timeout=5):
    try:
        what, iq = await asyncio.wait_for(c.pushes.get(), timeout)
    except asyncio.TimeoutError:
        raise XMPPTestError("timeout: %s got no blocking push" % c.boundjid)
    return what, sorted(str(j) for j in iq[what]["items"])


async def blocklist(c):
    res = await c.plugin["xep_0191"].get_blocked(timeout=5)
    return sorted(str(j) for j in res["blocklist"]["items"])


async def raw_iq(c, type_, xml, to=None):
    iq = c.Iq()
    iq["type"] = type_
    if to:
        iq["to"] = to
    iq.append(ET.fromstring(xml))
    return iq


def blocked_error(m):
    err = m.xml.find("{jabber:client}error")
    return err is not None and err.find("{%s}blocked" % NS_BLOCKING_ERRORS) is not None


async def subscribe_both(ca, cb):
    """Mutual presence subscription between two online, available clients."""
    for x, y in ((ca, cb), (cb, ca)):
        x.send_presence(pto=y.boundjid.bare, ptype="subscribe")
        await y.next_presence(pred=lambda p: p["type"] == "subscribe")
        y.send_presence(pto=x.boundjid.bare, ptype="subscribed")
        await x.next_presence(pred=lambda p: p["type"] == "subscribed")
    await asyncio.sleep(0.3)
    for c in (ca, cb):
        while not c.presences.empty():
            c.presences.get_nowait()


def test_disco_feature(server, accounts):
    """§3.1: the server advertises urn:xmpp:blocking."""
    (a,) = accounts(1)

    async def scenario():
        c = await connect(server, a)
        c.register_plugin("xep_0030")
        info = await c.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
        assert NS_BLOCKING in info["disco_info"]["features"]
    run(scenario())


def test_block_list_push_and_unblock(server, accounts):
    """§3.2 - §3.5: empty list, block (result + push to every resource that
    asked for the list, not to others), list, unblock, unblock all."""
    a, b, c_, d = accounts(4)

    async def scenario():
        one = await login(server, a, "one")
        two = await login(server, a, "two")
        three = await login(server, a, "three", blocklist=False)
        assert await blocklist(one) == []
        await one.plugin["xep_0191"].block([b.jid, c_.jid], timeout=5)
        for cl in (one, two):
            assert await next_push(cl) == ("block", sorted([b.jid, c_.jid]))
        assert three.pushes.empty()
        assert await blocklist(two) == sorted([b.jid, c_.jid])
        # blocking an already blocked JID again pushes only the new one
        await one.plugin["xep_0191"].block([d.jid, b.jid], timeout=5)
        for cl in (one, two):
            assert await next_push(cl) == ("block", [d.jid])
        await two.plugin["xep_0191"].unblock([c_.jid], timeout=5)
        for cl in (one, two):
            assert await next_push(cl) == ("unblock", [c_.jid])
        assert await blocklist(one) == sorted([b.jid, d.jid])
        # §3.5: an empty <unblock/> unblocks everyone; the push is empty too
        iq = await raw_iq(one, "set", "<unblock xmlns='%s'/>" % NS_BLOCKING)
        await iq.send(timeout=5)
        for cl in (one, two):
            assert await next_push(cl) == ("unblock", [])
        assert await blocklist(two) == []
        await asyncio.sleep(0.2)
        assert three.pushes.empty()
    run(scenario())


def test_unblocking_the_last_jid_pushes_its_item(server, accounts):
    """XEP-0191 §3.4: unblocking the only blocked JID pushes
    <unblock><item jid='...'/></unblock>, not the empty "unblock all" push of
    §3.5, although the list ends up empty."""
    a, b = accounts(2)

    async def scenario():
        one = await login(server, a, "one")
        two = await login(server, a, "two")
        await one.plugin["xep_0191"].block([b.jid], timeout=5)
        for cl in (one, two):
            assert await next_push(cl) == ("block", [b.jid])
        await one.plugin["xep_0191"].unblock([b.jid], timeout=5)
        for cl in (one, two):
            assert await next_push(cl) == ("unblock", [b.jid])
        assert await blocklist(two) == []
    run(scenario())


def test_bad_requests(server, accounts):
    """§3.3: a block without items is bad-request; a bad JID is
    jid-malformed; another account's list is forbidden."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a)
        cb = await login(server, b)
        iq = await raw_iq(ca, "set", "<block xmlns='%s'/>" % NS_BLOCKING)
        assert await ca.iq_error(iq) == ("modify", "bad-request")
        iq = await raw_iq(ca, "set", "<block xmlns='%s'><item jid='a@b@c'/></block>" % NS_BLOCKING)
        assert (await ca.iq_error(iq))[1] == "jid-malformed"
        iq = await raw_iq(cb, "get", "<blocklist xmlns='%s'/>" % NS_BLOCKING, to=a.jid)
        assert await cb.iq_error(iq) == ("auth", "forbidden")
    run(scenario())


def test_blocked_contact_message_and_errors(server, accounts):
    """§3.3: a blocked contact's message is not delivered and the contact
    gets service-unavailable; the user's message to the contact is not
    routed and the user gets not-acceptable with <blocked/>; IQ get from
    the contact gets service-unavailable. After unblocking both flow."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=1)
        cb = await login(server, b, presence=1)
        await ca.plugin["xep_0191"].block(b.jid, timeout=5)
        await next_push(ca)
        cb.send_message(mto=ca.boundjid, mbody="let me in", mtype="chat")
        err = await cb.next_message(pred=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "service-unavailable"
        assert err["from"] == ca.boundjid
        assert await ca.no_message(pred=lambda m: m["body"] == "let me in") == []
        # to the bare JID as well
        cb.send_message(mto=a.jid, mbody="bare", mtype="chat")
        err = await cb.next_message(pred=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "service-unavailable"
        # the user writing to the blocked contact
        ca.send_message(mto=b.jid, mbody="are you there", mtype="chat")
        err = await ca.next_message(pred=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "not-acceptable"
        assert blocked_error(err)
        assert await cb.no_message(pred=lambda m: m["body"] == "are you there") == []
        # IQ get from the contact
        iq = cb.Iq()
        iq["type"] = "get"
        iq["to"] = ca.boundjid
        iq.append(ET.fromstring("<query xmlns='jabber:iq:version'/>"))
        assert (await cb.iq_error(iq))[1] == "service-unavailable"
        # unblock: messages flow again
        await ca.plugin["xep_0191"].unblock(b.jid, timeout=5)
        cb.send_message(mto=ca.boundjid, mbody="now?", mtype="chat")
        m = await ca.next_message(pred=lambda m: m["body"] == "now?")
        assert m["from"] == cb.boundjid
    run(scenario())


def test_blocked_contact_cannot_query_bare_jid_services(server, accounts):
    """XEP-0191 §3.3 / XEP-0016 §2.1: an IQ get from a blocked contact to the
    user's bare JID gets service-unavailable even when a module (vcard-temp)
    answers it on the user's behalf; after unblocking it is answered."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=1)
        cb = await login(server, b, presence=1)
        await ca.plugin["xep_0191"].block(b.jid, timeout=5)
        await next_push(ca)
        iq = await raw_iq(cb, "get", "<vCard xmlns='vcard-temp'/>", to=a.jid)
        assert (await cb.iq_error(iq))[1] == "service-unavailable"
        await ca.plugin["xep_0191"].unblock(b.jid, timeout=5)
        await next_push(ca)
        iq = await raw_iq(cb, "get", "<vCard xmlns='vcard-temp'/>", to=a.jid)
        res = await iq.send(timeout=5)
        assert res["type"] == "result"
        assert res.xml.find("{vcard-temp}vCard") is not None
    run(scenario())


def test_block_presence(server, accounts):
    """§3.3 / §3.4: blocking sends unavailable presence to the contact (who
    is subscribed) and stops presence both ways; unblocking sends the
    current presence again."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=3)
        cb = await login(server, b, presence=3)
        iq = await raw_iq(ca, "get", "<query xmlns='%s'/>" % NS_ROSTER)
        await iq.send(timeout=5)
        iq = await raw_iq(cb, "get", "<query xmlns='%s'/>" % NS_ROSTER)
        await iq.send(timeout=5)
        await subscribe_both(ca, cb)
        await ca.plugin["xep_0191"].block(b.jid, timeout=5)
        p = await cb.next_presence(pred=lambda p: p["from"] == ca.boundjid)
        assert p["type"] == "unavailable"
        # the contact's presence does not reach the user
        cb.send_presence(pstatus="away now", pshow="away")
        await asyncio.sleep(QUIET_PERIOD)
        got = []
        while not ca.presences.empty():
            got.append(ca.presences.get_nowait())
        assert [p for p in got if p["from"].bare == b.jid] == []
        # the user's presence does not reach the contact
        ca.send_presence(pstatus="hidden", ppriority=3)
        await asyncio.sleep(QUIET_PERIOD)
        got = []
        while not cb.presences.empty():
            got.append(cb.presences.get_nowait())
        assert [p for p in got if p["from"].bare == a.jid] == []
        await ca.plugin["xep_0191"].unblock(b.jid, timeout=5)
        p = await cb.next_presence(pred=lambda p: p["from"] == ca.boundjid)
        assert p["type"] == "available" and p["status"] == "hidden"
    run(scenario())


def test_block_persists_and_applies_offline(server, accounts):
    """The block outlives the session (§3.3: 'applies across sessions'):
    while the user is offline the contact's message is refused, not
    stored; after login the list is still there."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a)
        await ca.plugin["xep_0191"].block(b.jid, timeout=5)
        await ca.stop()
        await asyncio.sleep(0.3)
        cb = await login(server, b)
        cb.send_message(mto=a.jid, mbody="while you sleep", mtype="chat")
        err = await cb.next_message(pred=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "service-unavailable"
        ca = await login(server, a, blocklist=False, presence=1)
        assert await ca.no_message(pred=lambda m: m["body"] == "while you sleep") == []
        assert await blocklist(ca) == [b.jid]
    run(scenario())


def test_domain_block(server, accounts):
    """§6 JID matching: a domain item blocks every address at it."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=1)
        cb = await login(server, b, presence=1)
        await ca.plugin["xep_0191"].block("example.net", timeout=5)
        cb.send_message(mto=ca.boundjid, mbody="local peer still fine", mtype="chat")
        m = await ca.next_message(pred=lambda m: m["body"] == "local peer still fine")
        assert m["type"] == "chat"
        ca.send_message(mto="someone@example.net", mbody="x", mtype="chat")
        err = await ca.next_message(pred=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "not-acceptable" and blocked_error(err)
    run(scenario())
