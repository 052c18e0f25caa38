"""Roster management (RFC 6121 §2) with the roster and presence modules.

Covers roster get (§2.1.3), set with name and groups (§2.3), pushes to
interested resources only (§2.1.6, §2.2), removal (§2.5), the error cases
of §2.3.3 and §2.1.5, versioning (§2.6), persistence across a restart, the
roster size limit (modules.roster.max_items) and the behaviour without the
module (RFC 6120 §8.4: service-unavailable).
"""

import asyncio
import xml.etree.ElementTree as ET

import pytest

from xmpptest import QUIET_PERIOD, XMPPTestError, connect, run

NS_ROSTER = "jabber:iq:roster"
MAX_ITEMS = 5


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": {"max_items": MAX_ITEMS}, "presence": True}}


# ---- helpers -----------------------------------------------------------------

async def login(server, account, resource=None):
    """A client that records roster pushes and never answers subscription
    requests on its own."""
    c = await connect(server, account, resource=resource)
    c.auto_authorize = None
    c.auto_subscribe = False
    c.pushes = asyncio.Queue()
    c.add_event_handler("roster_update",
                        lambda iq: iq["type"] == "set" and c.pushes.put_nowait(iq))
    return c


def roster_iq(c, type_, body="", to=None, ver=None):
    iq = c.Iq()
    iq["type"] = type_
    if to:
        iq["to"] = to
    attrs = " ver='%s'" % ver if ver is not None else ""
    iq.append(ET.fromstring("<query xmlns='%s'%s>%s</query>" % (NS_ROSTER, attrs, body)))
    return iq


async def roster_get(c, ver=None):
    res = await roster_iq(c, "get", ver=ver).send()
    return res.xml.find("{%s}query" % NS_ROSTER)


async def roster_set(c, body):
    return await roster_iq(c, "set", body).send()


def items_of(query):
    """{jid: (name, sorted groups, subscription, ask)} of a <query/>."""
    out = {}
    for it in query.findall("{%s}item" % NS_ROSTER):
        groups = sorted(g.text or "" for g in it.findall("{%s}group" % NS_ROSTER))
        out[it.get("jid")] = (it.get("name"), groups, it.get("subscription"), it.get("ask"))
    return out


async def next_push(c, timeout=None):
    try:
        iq = await asyncio.wait_for(c.pushes.get(), timeout or 5)
    except asyncio.TimeoutError:
        raise XMPPTestError("timeout: %s received no roster push" % c.boundjid)
    return iq.xml.find("{%s}query" % NS_ROSTER)


async def no_push(c):
    await asyncio.sleep(QUIET_PERIOD)
    return c.pushes.qsize()


# ---- §2.1.3 / §2.3: get and set ------------------------------------------------

def test_rfc6121_2_1_3_roster_get_empty(server, accounts):
    """§2.1.3: a new account's roster is empty; the result carries a version."""
    a, = accounts(1)

    async def scenario():
        c = await login(server, a)
        q = await roster_get(c)
        assert q is not None
        assert items_of(q) == {}
        assert q.get("ver")
    run(scenario())


def test_rfc6121_2_3_roster_set_name_and_groups(server, accounts):
    """§2.3: a roster set adds an item with its name and groups; a later
    get returns it with subscription 'none'; a second set replaces them."""
    a, b = accounts(2)

    async def scenario():
        c = await login(server, a)
        await roster_get(c)
        await roster_set(c, "<item jid='%s' name='Bob'><group>Friends</group><group>Work</group></item>" % b.jid)
        assert items_of(await roster_get(c)) == {b.jid: ("Bob", ["Friends", "Work"], "none", None)}
        await roster_set(c, "<item jid='%s' name='Robert'><group>Family</group></item>" % b.jid.upper())
        assert items_of(await roster_get(c)) == {b.jid: ("Robert", ["Family"], "none", None)}
    run(scenario())


def test_rfc6121_2_1_6_push_to_interested_resources_only(server, accounts):
    """§2.1.6 / §2.2: a roster set is pushed to every resource that asked for
    the roster (the one that made the change too), not to the others."""
    a, b = accounts(2)

    async def scenario():
        c1 = await login(server, a, "one")
        c2 = await login(server, a, "two")
        c3 = await login(server, a, "three")  # never asks for the roster
        await roster_get(c1)
        await roster_get(c2)
        await roster_set(c1, "<item jid='%s' name='B'><group>G</group></item>" % b.jid)
        for c in (c1, c2):
            q = await next_push(c)
            assert items_of(q) == {b.jid: ("B", ["G"], "none", None)}
            assert q.get("ver")
        assert await no_push(c3) == 0
    run(scenario())


def test_rfc6121_2_5_roster_remove(server, accounts):
    """§2.5: subscription='remove' deletes the item and pushes the removal;
    removing a missing item is item-not-found (§2.5.3)."""
    a, b = accounts(2)

    async def scenario():
        c1 = await login(server, a, "one")
        c2 = await login(server, a, "two")
        await roster_get(c1)
        await roster_get(c2)
        await roster_set(c1, "<item jid='%s'/>" % b.jid)
        await next_push(c2)
        await roster_set(c1, "<item jid='%s' subscription='remove'/>" % b.jid)
        q = await next_push(c2)
        assert items_of(q) == {b.jid: (None, [], "remove", None)}
        assert items_of(await roster_get(c1)) == {}
        err = await c1.iq_error(roster_iq(c1, "set", "<item jid='%s' subscription='remove'/>" % b.jid))
        assert err == ("cancel", "item-not-found")
    run(scenario())


# ---- §2.3.3 / §2.1.5: errors ----------------------------------------------------

def test_rfc6121_2_3_3_roster_set_errors(server, accounts):
    """§2.3.3: two items or duplicate groups are bad-request, an empty group
    is not-acceptable, an invalid JID jid-malformed, an unknown subscription
    value bad-request; 'ask' from the client is ignored."""
    a, b, x = accounts(3)

    async def scenario():
        c = await login(server, a)
        cases = [
            ("<item jid='%s'/><item jid='%s'/>" % (b.jid, x.jid), "bad-request"),
            ("<item jid='%s'><group>A</group><group>A</group></item>" % b.jid, "bad-request"),
            ("<item jid='%s'><group></group></item>" % b.jid, "not-acceptable"),
            ("<item jid='a@b@c'/>", "jid-malformed"),
            ("<item jid='%s' subscription='bogus'/>" % b.jid, "bad-request"),
            ("<item/>", "bad-request"),
        ]
        for body, cond in cases:
            _, got = await c.iq_error(roster_iq(c, "set", body))
            assert got == cond, body
        await roster_set(c, "<item jid='%s' ask='subscribe' subscription='both'/>" % b.jid)
        assert items_of(await roster_get(c)) == {b.jid: (None, [], "none", None)}
    run(scenario())


def test_rfc6121_2_1_5_other_accounts_roster_forbidden(server, accounts):
    """§2.1.5 / §2.3.3: a roster get or set addressed to another account's
    bare JID is refused with forbidden."""
    a, b = accounts(2)

    async def scenario():
        c = await login(server, a)
        for type_, body in (("get", ""), ("set", "<item jid='%s'/>" % a.jid)):
            _, cond = await c.iq_error(roster_iq(c, type_, body, to=b.jid))
            assert cond == "forbidden"
        # the own bare JID as 'to' is the same as no 'to'
        res = await roster_iq(c, "get", to=a.jid).send()
        assert res["type"] == "result"
    run(scenario())


# ---- §2.6: versioning ------------------------------------------------------------

def test_rfc6121_2_6_roster_versioning(server, accounts):
    """§2.6: the stream feature is offered; a get with the current version
    returns an empty result; changes move the version on, carried by the
    pushes; an old version gets the full roster."""
    a, b = accounts(2)

    async def scenario():
        c = await login(server, a)
        assert "rosterver" in c.features
        v0 = (await roster_get(c)).get("ver")
        res = await roster_iq(c, "get", ver=v0).send()
        assert res["type"] == "result"
        assert res.xml.find("{%s}query" % NS_ROSTER) is None
        await roster_set(c, "<item jid='%s' name='B'/>" % b.jid)
        v1 = (await next_push(c)).get("ver")
        assert v1 and v1 != v0
        q = await roster_get(c, ver=v0)
        assert q.get("ver") == v1
        assert list(items_of(q)) == [b.jid]
        res = await roster_iq(c, "get", ver=v1).send()
        assert res.xml.find("{%s}query" % NS_ROSTER) is None
    run(scenario())


# ---- persistence and limits ------------------------------------------------------

def test_rfc6121_2_roster_survives_restart(server, accounts):
    """§2: the roster is stored: it is the same after a server restart."""
    a, b = accounts(2)

    async def before():
        c = await login(server, a)
        await roster_set(c, "<item jid='%s' name='Kept'><group>G</group></item>" % b.jid)

    async def after():
        c = await login(server, a)
        assert items_of(await roster_get(c)) == {b.jid: ("Kept", ["G"], "none", None)}
    run(before())
    server.restart()
    run(after())


def test_rfc6121_2_3_roster_size_limit(server, accounts):
    """modules.roster.max_items: an item beyond the limit is refused
    (not-allowed); updating an existing item still works."""
    a, = accounts(1)

    async def scenario():
        c = await login(server, a)
        for i in range(MAX_ITEMS):
            await roster_set(c, "<item jid='c%d@example.org'/>" % i)
        _, cond = await c.iq_error(roster_iq(c, "set", "<item jid='over@example.org'/>"))
        assert cond == "not-allowed"
        await roster_set(c, "<item jid='c0@example.org' name='still'/>")
        assert len(items_of(await roster_get(c))) == MAX_ITEMS
    run(scenario())


def test_rfc6120_8_4_roster_module_off(server_factory, accounts):
    """RFC 6120 §8.4: without the roster module a roster get is answered
    with service-unavailable."""
    srv = server_factory({"modules": {"roster": None, "presence": None}})
    a, = accounts(1, srv=srv)

    async def scenario():
        c = await connect(srv, a)
        _, cond = await c.iq_error(roster_iq(c, "get"))
        assert cond == "service-unavailable"
    run(scenario())
