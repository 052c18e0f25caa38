"""Presence subscriptions and presence exchange (RFC 6121 §3, §4, App. A)
between local accounts, with the roster and presence modules.

Each test checks what every party receives: the subscription stanzas
(stamped bare JID to bare JID, §3.1.2), the roster pushes of each state
change (Appendix A), probes at login (§4.3), broadcasts (§4.2, §4.4,
§4.5), directed presence (§4.6) and delivery to a bare JID (§8.5.2.1.2).
"""

import asyncio
import xml.etree.ElementTree as ET

import pytest

from xmpptest import QUIET_PERIOD, XMPPTestError, connect, run

NS_ROSTER = "jabber:iq:roster"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True}}


# ---- helpers -----------------------------------------------------------------

async def login(server, account, resource=None, presence=None, roster=True):
    """A client that never answers subscription requests by itself and
    records roster pushes; asks for the roster (interested resource) and
    sends initial presence (a priority) when told."""
    c = await connect(server, account, resource=resource)
    c.auto_authorize = None
    c.auto_subscribe = False
    c.pushes = asyncio.Queue()
    c.add_event_handler("roster_update",
                        lambda iq: iq["type"] == "set" and c.pushes.put_nowait(iq))
    if roster:
        iq = c.Iq()
        iq["type"] = "get"
        iq.append(ET.fromstring("<query xmlns='%s'/>" % NS_ROSTER))
        await iq.send()
    if presence is not None:
        c.send_presence(ppriority=presence)
        await c.next_presence(pred=lambda p: p["from"] == c.boundjid and p["type"] == "available")
    return c


async def push(c, jid):
    """The next roster push about jid: (subscription, ask, approved)."""
    deadline = asyncio.get_event_loop().time() + 5
    while True:
        remaining = deadline - asyncio.get_event_loop().time()
        try:
            iq = await asyncio.wait_for(c.pushes.get(), max(remaining, 0.01))
        except asyncio.TimeoutError:
            raise XMPPTestError("timeout: %s got no roster push about %s" % (c.boundjid, jid))
        for it in iq.xml.iter("{%s}item" % NS_ROSTER):
            if it.get("jid") == jid:
                return (it.get("subscription"), it.get("ask"), it.get("approved"))


def of_type(t, frm=None):
    def pred(p):
        return p["type"] == t and (frm is None or str(p["from"]) == str(frm))
    return pred


async def quiet(c, pred):
    """Presences matching pred received within the quiet period."""
    await asyncio.sleep(QUIET_PERIOD)
    got = []
    while not c.presences.empty():
        p = c.presences.get_nowait()
        if pred(p):
            got.append(p)
    return got


async def subscribe_both(ca, a, cb, b):
    """Mutual subscription between a and b (both online and available)."""
    ca.send_presence(pto=b.jid, ptype="subscribe")
    await cb.next_presence(pred=of_type("subscribe", a.jid))
    cb.send_presence(pto=a.jid, ptype="subscribed")
    await ca.next_presence(pred=of_type("subscribed", b.jid))
    cb.send_presence(pto=a.jid, ptype="subscribe")
    await ca.next_presence(pred=of_type("subscribe", b.jid))
    ca.send_presence(pto=b.jid, ptype="subscribed")
    await cb.next_presence(pred=of_type("subscribed", a.jid))
    assert await push(ca, b.jid) == ("none", "subscribe", None)
    assert await push(ca, b.jid) == ("to", None, None)
    assert await push(ca, b.jid) == ("both", None, None)
    assert await push(cb, a.jid) == ("from", None, None)
    assert await push(cb, a.jid) == ("from", "subscribe", None)
    assert await push(cb, a.jid) == ("both", None, None)
    # drain what is left so later assertions start clean
    await asyncio.sleep(0.2)
    for c in (ca, cb):
        while not c.pushes.empty():
            c.pushes.get_nowait()
        while not c.presences.empty():
            c.presences.get_nowait()


# ---- §3.1: subscription request and approval -------------------------------------

def test_rfc6121_3_1_subscription_handshake(server, accounts):
    """§3.1.2-§3.1.6 / A.2-A.3: alice asks (push: none+ask), bob gets the
    request from alice's bare JID, approves (bob's push: from), alice gets
    'subscribed' (push: to) and bob's current presence; then the reverse
    direction makes both 'both'."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, "pc", presence=0)
        cb = await login(server, b, "pc", presence=0)
        ca.send_presence(pto=b.jid + "/pc", ptype="subscribe")
        assert await push(ca, b.jid) == ("none", "subscribe", None)
        req = await cb.next_presence(pred=of_type("subscribe"))
        assert str(req["from"]) == a.jid and str(req["to"]) == b.jid
        cb.send_presence(pto=a.jid, ptype="subscribed")
        assert await push(cb, a.jid) == ("from", None, None)
        assert await push(ca, b.jid) == ("to", None, None)
        ok = await ca.next_presence(pred=of_type("subscribed"))
        assert str(ok["from"]) == b.jid
        await ca.next_presence(pred=of_type("available", cb.boundjid))
        # and back
        cb.send_presence(pto=a.jid, ptype="subscribe")
        assert await push(cb, a.jid) == ("from", "subscribe", None)
        await ca.next_presence(pred=of_type("subscribe", b.jid))
        ca.send_presence(pto=b.jid, ptype="subscribed")
        assert await push(ca, b.jid) == ("both", None, None)
        assert await push(cb, a.jid) == ("both", None, None)
        await cb.next_presence(pred=of_type("available", ca.boundjid))
    run(scenario())


def test_rfc6121_3_1_3_pending_request_redelivered_at_login(server, accounts):
    """§3.1.3: a request for an account without available resources is kept
    and delivered when it next sends initial presence."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=0)
        ca.send_presence(pto=b.jid, ptype="subscribe")
        assert await push(ca, b.jid) == ("none", "subscribe", None)
        await asyncio.sleep(0.3)  # stored meanwhile
        cb = await login(server, b, roster=False)
        assert await quiet(cb, of_type("subscribe")) == []  # not yet available
        cb.send_presence()
        req = await cb.next_presence(pred=of_type("subscribe"))
        assert str(req["from"]) == a.jid
    run(scenario())


def test_rfc6121_3_4_pre_approval(server, accounts):
    """§3.4: bob approves before being asked (push: none, approved); alice's
    later request is answered at once without reaching bob, and bob's
    item becomes 'from'."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=0)
        cb = await login(server, b, presence=0)
        assert "preapproval" in cb.features
        cb.send_presence(pto=a.jid, ptype="subscribed")
        assert await push(cb, a.jid) == ("none", None, "true")
        assert await quiet(ca, of_type("subscribed")) == []  # not routed
        ca.send_presence(pto=b.jid, ptype="subscribe")
        assert await push(ca, b.jid) == ("none", "subscribe", None)
        await ca.next_presence(pred=of_type("subscribed", b.jid))
        assert await push(ca, b.jid) == ("to", None, None)
        assert await push(cb, a.jid) == ("from", None, None)
        assert await quiet(cb, of_type("subscribe")) == []
    run(scenario())


# ---- §3.2 / §3.3: cancelling ---------------------------------------------------

def test_rfc6121_3_3_unsubscribe_and_3_2_unsubscribed(server, accounts):
    """§3.3: alice's unsubscribe turns both→from for her and both→to for
    bob, who gets the stanza; §3.2: alice's unsubscribed then ends bob's
    subscription (to→none), bob gets it and alice's unavailable."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=0)
        cb = await login(server, b, presence=0)
        await subscribe_both(ca, a, cb, b)
        ca.send_presence(pto=b.jid, ptype="unsubscribe")
        assert await push(ca, b.jid) == ("from", None, None)
        assert await push(cb, a.jid) == ("to", None, None)
        p = await cb.next_presence(pred=of_type("unsubscribe"))
        assert str(p["from"]) == a.jid
        ca.send_presence(pto=b.jid, ptype="unsubscribed")
        assert await push(ca, b.jid) == ("none", None, None)
        assert await push(cb, a.jid) == ("none", None, None)
        await cb.next_presence(pred=of_type("unsubscribed", a.jid))
        await cb.next_presence(pred=of_type("unavailable", ca.boundjid))
    run(scenario())


def test_rfc6121_3_3_3_former_subscriber_gets_unavailable(server, accounts):
    """§3.3.3: when bob's server processes alice's unsubscribe, it sends
    alice unavailable presence from each of bob's available resources."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=0)
        cb = await login(server, b, presence=0)
        await subscribe_both(ca, a, cb, b)
        ca.send_presence(pto=b.jid, ptype="unsubscribe")
        await ca.next_presence(pred=of_type("unavailable", cb.boundjid))
    run(scenario())


# ---- §4: presence exchange --------------------------------------------------------

def test_rfc6121_4_2_initial_presence_broadcast_and_4_3_probe(server, accounts):
    """§4.2: a new resource's presence reaches subscribed contacts and the
    account's other resources, and it learns theirs; §4.3: probes sent at
    login bring the presence of contacts that were online before."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, "first", presence=0)
        cb = await login(server, b, presence=0)
        await subscribe_both(ca, a, cb, b)
        cb.send_presence(pstatus="here", ppriority=1)
        await ca.next_presence(pred=lambda p: p["status"] == "here")
        ca2 = await login(server, a, "second", roster=False)
        ca2.send_presence(pstatus="second is on")
        got = await ca2.next_presence(pred=of_type("available", cb.boundjid))
        assert got["status"] == "here"
        await ca2.next_presence(pred=of_type("available", ca.boundjid))
        await cb.next_presence(pred=lambda p: str(p["from"]) == str(ca2.boundjid) and p["status"] == "second is on")
        await ca.next_presence(pred=lambda p: str(p["from"]) == str(ca2.boundjid))
    run(scenario())


def test_rfc6121_4_3_2_probe_answers(server, accounts):
    """§4.3.2: a probe from a subscribed contact is answered with unavailable
    when the account is offline; a probe from a stranger is not answered."""
    a, b, x = accounts(3)

    async def scenario():
        ca = await login(server, a, presence=0)
        cb = await login(server, b, presence=0)
        await subscribe_both(ca, a, cb, b)
        await cb.stop()
        await ca.next_presence(pred=of_type("unavailable", cb.boundjid))
        ca.send_presence(pto=b.jid, ptype="probe")
        p = await ca.next_presence(pred=of_type("unavailable"))
        assert p["from"].bare == b.jid
        cx = await login(server, x, presence=0)
        cx.send_presence(pto=a.jid, ptype="probe")
        assert await quiet(cx, lambda p: p["from"].bare == a.jid) == []
    run(scenario())


def test_rfc6121_4_6_directed_presence_unavailable_at_logout(server, accounts):
    """§4.6: directed presence to a non-contact reaches it; when the sender
    goes offline, the server sends it unavailable."""
    a, x = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=0)
        cx = await login(server, x, presence=0)
        ca.send_presence(pto=str(cx.boundjid), pstatus="just for you")
        p = await cx.next_presence(pred=lambda p: p["status"] == "just for you")
        assert str(p["from"]) == str(ca.boundjid)
        await ca.stop()
        await cx.next_presence(pred=of_type("unavailable", ca.boundjid))
    run(scenario())


def test_rfc6121_4_5_unavailable_broadcast_on_connection_drop(server, accounts):
    """§4.5 / RFC 6120 §4.4: when a client's TCP connection drops without a
    stream close, its contacts get unavailable presence from it."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=0)
        cb = await login(server, b, presence=0)
        await subscribe_both(ca, a, cb, b)
        jid = ca.boundjid
        ca.abort()
        await cb.next_presence(pred=of_type("unavailable", jid))
    run(scenario())


def test_rfc6121_8_5_2_1_2_presence_to_bare_jid_reaches_all_resources(server, accounts):
    """RFC 6121 §8.5.2.1.2: presence addressed to the bare JID goes to every
    available resource of the account."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=0)
        b1 = await login(server, b, "one", presence=1)
        b2 = await login(server, b, "two", presence=-1)
        ca.send_presence(pto=b.jid, pstatus="to all")
        for c in (b1, b2):
            p = await c.next_presence(pred=lambda p: p["status"] == "to all")
            assert str(p["from"]) == str(ca.boundjid)
    run(scenario())


# ---- issue 18: an empty roster's tables are made on first use -----------------------

async def roster_of(c):
    """(version, {jid: subscription}) of c's roster."""
    iq = c.Iq()
    iq["type"] = "get"
    iq.append(ET.fromstring("<query xmlns='%s'/>" % NS_ROSTER))
    res = await iq.send()
    query = res.xml.find("{%s}query" % NS_ROSTER)
    return query.get("ver"), {it.get("jid"): it.get("subscription")
                              for it in query.iter("{%s}item" % NS_ROSTER)}


def test_issue18_rfc6121_3_1_idle_empty_roster_first_request_and_item(server, accounts):
    """issue 18: a roster without items or pending requests keeps neither
    table in memory while its account is online; the first use makes them.
    For b, online and idle (over a second: its stream parser is given back
    too) with an empty roster: §3.1.3 a's request reaches it and is kept
    (redelivered at b's next initial presence, after a restart: it was
    stored); §3.1.5 b's approval makes its first item, pushed ('from') with
    a new version (§2.6); §2.5 removing it leaves an empty roster whose
    version moved on, the same after a restart."""
    a, b = accounts(2)

    async def first():
        cb = await login(server, b, "pc", presence=0)
        v0, items = await roster_of(cb)
        assert items == {} and v0
        await asyncio.sleep(1.5)
        ca = await login(server, a, "pc", presence=0)
        ca.send_presence(pto=b.jid, ptype="subscribe")
        req = await cb.next_presence(pred=of_type("subscribe", a.jid))
        assert str(req["to"]) == b.jid
        assert await roster_of(cb) == (v0, {})  # a request alone is no item (§3.1.3)
        return v0

    async def second(v0):
        cb = await login(server, b, "pc", presence=0)
        await cb.next_presence(pred=of_type("subscribe", a.jid))  # still pending
        cb.send_presence(pto=a.jid, ptype="subscribed")
        assert await push(cb, a.jid) == ("from", None, None)
        v1, items = await roster_of(cb)
        assert items == {a.jid: "from"} and v1 != v0
        rm = cb.Iq()
        rm["type"] = "set"
        rm.append(ET.fromstring("<query xmlns='%s'><item jid='%s' subscription='remove'/></query>"
                                % (NS_ROSTER, a.jid)))
        await rm.send()
        assert await push(cb, a.jid) == ("remove", None, None)
        v2, items = await roster_of(cb)
        assert items == {} and v2 not in (v0, v1)
        return v2

    async def third(v2):
        cb = await login(server, b, "pc", presence=0)
        assert await roster_of(cb) == (v2, {})
        assert await quiet(cb, of_type("subscribe", a.jid)) == []  # answered: not pending

    v0 = run(first())
    server.restart()
    v2 = run(second(v0))
    server.restart()
    run(third(v2))


def test_issue18_rfc6121_4_2_4_3_bare_presences_kept_apart(server, accounts):
    """issue 18: sessions whose last presence is a bare <presence/> share
    one kept copy in the server; what others learn from it is still each
    session's own: §4.3.2 probe answers at a contact's login come from
    each full JID, §4.2.2 a new resource learns the other resource's
    presence from that resource, and a later presence with a status
    replaces the bare one for that session only."""
    a, b, c = accounts(3)

    async def bare(cl):
        cl.send_raw("<presence/>")
        await cl.next_presence(pred=lambda p: p["from"] == cl.boundjid and p["type"] == "available")

    async def scenario():
        ca = await login(server, a, "pc", presence=0)
        cb = await login(server, b, "pc", presence=0)
        cc = await login(server, c, "pc", presence=0)
        await subscribe_both(ca, a, cb, b)
        await subscribe_both(ca, a, cc, c)
        await ca.stop()
        for cl in (cb, cc):
            await bare(cl)
        cb2 = await login(server, b, "phone", roster=False)
        await bare(cb2)
        cc.send_presence(pstatus="busy c")
        await cc.next_presence(pred=lambda p: p["from"] == cc.boundjid and p["status"] == "busy c")
        # §4.2.2: b's new resource hears of b's first one, from it
        got = await cb2.next_presence(pred=of_type("available", cb.boundjid))
        assert str(got["to"]) == str(cb2.boundjid) and got["status"] == ""
        # §4.3.2: a logs in again; its probes are answered per resource
        ca = await login(server, a, "pc")
        ca.send_presence(ppriority=0)
        want = {str(cl.boundjid) for cl in (cb, cb2, cc)}
        seen = {}
        while set(seen) != want:
            got = await ca.next_presence(
                pred=lambda p: p["type"] == "available" and str(p["from"]) in want)
            assert str(got["to"]).startswith(a.jid)
            seen[str(got["from"])] = got["status"]
        assert seen == {str(cb.boundjid): "", str(cb2.boundjid): "", str(cc.boundjid): "busy c"}
    run(scenario())
