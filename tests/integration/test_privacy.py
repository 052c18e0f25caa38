"""XEP-0016 Privacy Lists (mod_privacy), and its interplay with XEP-0191
blocking (XEP-0191 §5: the blocklist is a view of the default list).

Checks list management (§2.3 - §2.9 answers and errors), that items are
applied in ascending order with the first match deciding (§2.1 rules 5 and
6), the default list (also while the account is offline) against a
session's active list, JID / group / subscription items, stanza kinds, and
the list pushes.
"""

import asyncio
import xml.etree.ElementTree as ET

import pytest

from xmpptest import QUIET_PERIOD, XMPPTestError, connect, run

NS_PRIVACY = "jabber:iq:privacy"
NS_ROSTER = "jabber:iq:roster"
Q = "{%s}" % NS_PRIVACY


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "privacy": {"max_lists": 5},
                        "blocking": True, "offline": True}}


async def login(server, account, resource=None, presence=None):
    c = await connect(server, account, resource=resource)
    c.auto_authorize = None
    c.auto_subscribe = False
    c.pushes = asyncio.Queue()

    def on_iq(iq):
        q = iq.xml.find(Q + "query")
        if iq["type"] == "set" and q is not None:
            c.pushes.put_nowait(q.find(Q + "list").get("name"))
            iq.reply().send()
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    c.register_handler(Callback("privacy push", MatchXPath("{jabber:client}iq/%squery" % Q), on_iq))
    if presence is not None:
        c.send_presence(ppriority=presence)
        await c.next_presence(pred=lambda p: p["from"] == c.boundjid and p["type"] == "available")
    return c


def iq_of(c, type_, inner):
    iq = c.Iq()
    iq["type"] = type_
    iq.append(ET.fromstring("<query xmlns='%s'>%s</query>" % (NS_PRIVACY, inner)))
    return iq


async def ok(c, type_, inner):
    return await iq_of(c, type_, inner).send(timeout=5)


async def err(c, type_, inner):
    return (await c.iq_error(iq_of(c, type_, inner)))[1]


def item(order, action, type_=None, value=None, kinds=()):
    attrs = "order='%d' action='%s'" % (order, action)
    if type_:
        attrs += " type='%s' value='%s'" % (type_, value)
    return "<item %s>%s</item>" % (attrs, "".join("<%s/>" % k for k in kinds))


def list_xml(name, *items):
    return "<list name='%s'>%s</list>" % (name, "".join(items))


async def delivered(sender, receiver, to, body):
    """True when body reached receiver, False when the sender got an error
    for it (service-unavailable expected) and receiver got nothing."""
    sender.send_message(mto=to, mbody=body, mtype="chat")
    rx = asyncio.ensure_future(receiver.next_message(pred=lambda m: m["body"] == body, timeout=3))
    ex = asyncio.ensure_future(sender.next_message(
        pred=lambda m: m["type"] == "error" and m["body"] == body, timeout=3))
    done, pending = await asyncio.wait({rx, ex}, return_when=asyncio.FIRST_COMPLETED)
    for p in pending:
        p.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if rx in done and not rx.exception():
        return True
    if ex in done and not ex.exception():
        assert ex.result()["error"]["condition"] == "service-unavailable"
        assert await receiver.no_message(pred=lambda m: m["body"] == body) == []
        return False
    raise XMPPTestError("neither delivery nor error for %r" % body)


def test_manage_lists(server, accounts):
    """§2.3 - §2.9: names, one list, errors for unknown or several lists,
    bad items, exactly one element in a set, pushes, removal rules."""
    a, b = accounts(2)

    async def scenario():
        c = await login(server, a, "one")
        other = await login(server, a, "two")
        res = await ok(c, "get", "")
        q = res.xml.find(Q + "query")
        assert q.find(Q + "list") is None
        assert q.find(Q + "default").get("name") is None
        await ok(c, "set", list_xml("friends", item(20, "deny"), item(10, "allow", "jid", b.jid)))
        for cl in (c, other):
            assert await asyncio.wait_for(cl.pushes.get(), 5) == "friends"
        res = await ok(c, "get", "<list name='friends'/>")
        items = res.xml.find(Q + "query").find(Q + "list").findall(Q + "item")
        assert [(i.get("order"), i.get("action"), i.get("value")) for i in items] == \
            [("10", "allow", b.jid), ("20", "deny", None)]
        assert await err(c, "get", "<list name='nope'/>") == "item-not-found"
        assert await err(c, "get", "<list name='friends'/><list name='x'/>") == "bad-request"
        # bad items: missing action, duplicate order, unknown type, bad subscription
        assert await err(c, "set", list_xml("bad", "<item order='1'/>")) == "bad-request"
        assert await err(c, "set", list_xml("bad", item(1, "deny"), item(1, "allow"))) == "bad-request"
        assert await err(c, "set", list_xml("bad", item(1, "deny", "colour", "red"))) == "bad-request"
        assert await err(c, "set", list_xml("bad", item(1, "deny", "subscription", "maybe"))) == "bad-request"
        assert await err(c, "set", "<active name='friends'/><default name='friends'/>") == "bad-request"
        assert await err(c, "set", "<active name='nope'/>") == "item-not-found"
        assert await err(c, "set", "<default name='nope'/>") == "item-not-found"
        # the list limit of this server is 5
        for i in range(4):
            await ok(c, "set", list_xml("l%d" % i, item(1, "deny")))
        assert await err(c, "set", list_xml("l9", item(1, "deny"))) == "resource-constraint"
        # the default list cannot be removed; an unused one can
        await ok(c, "set", "<default name='friends'/>")
        assert await err(c, "set", list_xml("friends")) == "conflict"
        await ok(c, "set", list_xml("l0"))
        res = await ok(c, "get", "")
        q = res.xml.find(Q + "query")
        assert sorted(x.get("name") for x in q.findall(Q + "list")) == ["friends", "l1", "l2", "l3"]
        assert q.find(Q + "default").get("name") == "friends"
        assert await err(c, "set", list_xml("l0")) == "item-not-found"
        # a list another resource uses as its active list cannot be removed
        await ok(other, "set", "<active name='l1'/>")
        assert await err(c, "set", list_xml("l1")) == "conflict"
    run(scenario())


def test_order_first_match_decides(server, accounts):
    """§2.1 rules 5/6: items apply in ascending order; the first match
    decides, whatever the order of the items in the XML."""
    a, b, c_ = accounts(3)

    async def scenario():
        ca = await login(server, a, presence=1)
        cb = await login(server, b, presence=1)
        cc = await login(server, c_, presence=1)
        await ok(ca, "set", list_xml("only-b", item(2, "deny", kinds=["message"]),
                                     item(1, "allow", "jid", b.jid)))
        await ok(ca, "set", "<active name='only-b'/>")
        assert await delivered(cb, ca, ca.boundjid, "b first")
        assert not await delivered(cc, ca, ca.boundjid, "c refused")
        # same items, orders swapped: the catch-all deny now comes first
        await ok(ca, "set", list_xml("only-b", item(1, "deny", kinds=["message"]),
                                     item(2, "allow", "jid", b.jid)))
        assert not await delivered(cb, ca, ca.boundjid, "b refused now")
        # declining the active list: nothing applies any more
        await ok(ca, "set", "<active/>")
        assert await delivered(cc, ca, ca.boundjid, "c again")
    run(scenario())


def test_default_and_active(server, accounts):
    """§2.5/§2.6: the default list applies to sessions without an active
    list and while the account is offline; a session's active list
    overrides it for that session only; declining the default ends it."""
    a, b = accounts(2)

    async def scenario():
        one = await login(server, a, "one", presence=1)
        two = await login(server, a, "two", presence=1)
        cb = await login(server, b, presence=1)
        await ok(one, "set", list_xml("deny-b", item(1, "deny", "jid", b.jid, kinds=["message"])))
        await ok(one, "set", list_xml("open", item(1, "allow")))
        await ok(one, "set", "<default name='deny-b'/>")
        await ok(one, "set", "<active name='open'/>")
        assert await delivered(cb, one, one.boundjid, "to one")
        assert not await delivered(cb, two, two.boundjid, "to two")
        await one.stop()
        await two.stop()
        await asyncio.sleep(0.3)
        # offline: the default list refuses the message (not stored)
        cb.send_message(mto=a.jid, mbody="offline", mtype="chat")
        e = await cb.next_message(pred=lambda m: m["type"] == "error" and m["body"] == "offline")
        assert e["error"]["condition"] == "service-unavailable"
        three = await login(server, a, "three", presence=1)
        assert await three.no_message(pred=lambda m: m["body"] == "offline") == []
        res = await ok(three, "get", "")
        q = res.xml.find(Q + "query")
        assert q.find(Q + "default").get("name") == "deny-b"
        assert q.find(Q + "active").get("name") is None
        await ok(three, "set", "<default/>")
        assert await delivered(cb, three, a.jid, "default declined")
    run(scenario())


def test_group_and_subscription_items(server, accounts):
    """§2.1: group items match the contact's roster groups; subscription
    'none' matches contacts not in the roster."""
    a, b, c_ = accounts(3)

    async def scenario():
        ca = await login(server, a, presence=1)
        cb = await login(server, b, presence=1)
        cc = await login(server, c_, presence=1)
        roster = ("<query xmlns='%s'><item jid='%s'><group>enemies</group></item></query>"
                  % (NS_ROSTER, b.jid))
        iq = ca.Iq()
        iq["type"] = "set"
        iq.append(ET.fromstring(roster))
        await iq.send(timeout=5)
        await ok(ca, "set", list_xml("g", item(1, "deny", "group", "enemies", kinds=["message"])))
        await ok(ca, "set", "<active name='g'/>")
        assert not await delivered(cb, ca, ca.boundjid, "enemy")
        assert await delivered(cc, ca, ca.boundjid, "stranger")
        await ok(ca, "set", list_xml("s", item(1, "deny", "subscription", "none", kinds=["message"])))
        await ok(ca, "set", "<active name='s'/>")
        # b is in the roster with subscription none, c is not in it: both 'none'
        assert not await delivered(cc, ca, ca.boundjid, "stranger refused")
        assert not await delivered(cb, ca, ca.boundjid, "none refused")
    run(scenario())


def test_presence_in_only(server, accounts):
    """§2.12: a presence-in item stops the contact's presence but not its
    messages."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=1)
        cb = await login(server, b, presence=1)
        await ok(ca, "set", list_xml("quiet", item(1, "deny", "jid", b.jid, kinds=["presence-in"])))
        await ok(ca, "set", "<active name='quiet'/>")
        cb.send_presence(pto=ca.boundjid, pstatus="directed")
        await asyncio.sleep(QUIET_PERIOD)
        got = []
        while not ca.presences.empty():
            got.append(ca.presences.get_nowait())
        assert [p for p in got if p["from"].bare == b.jid] == []
        assert await delivered(cb, ca, ca.boundjid, "messages still pass")
    run(scenario())


def test_blocklist_is_the_default_list(server, accounts):
    """XEP-0191 §5: blocking adds a jid/deny item at the top of the default
    list (creating one when there is none); a jid/deny item added to the
    default list through XEP-0016 shows in the blocklist."""
    a, b, c_ = accounts(3)

    async def scenario():
        ca = await login(server, a)
        ca.register_plugin("xep_0191")
        await ca.plugin["xep_0191"].block(b.jid, timeout=5)
        res = await ok(ca, "get", "")
        name = res.xml.find(Q + "query").find(Q + "default").get("name")
        assert name
        res = await ok(ca, "get", "<list name='%s'/>" % name)
        items = res.xml.find(Q + "query").find(Q + "list").findall(Q + "item")
        assert [(i.get("type"), i.get("value"), i.get("action")) for i in items] == [("jid", b.jid, "deny")]
        await ok(ca, "set", list_xml(name, item(1, "deny", "jid", b.jid), item(2, "deny", "jid", c_.jid),
                                     item(3, "allow")))
        res = await ca.plugin["xep_0191"].get_blocked(timeout=5)
        assert sorted(str(j) for j in res["blocklist"]["items"]) == sorted([b.jid, c_.jid])
    run(scenario())


def test_unload_on_reload(server_factory):
    """SIGHUP with the filtering modules removed unloads them while
    sessions hold their state; sessions stay, blocks no longer apply, and
    the server shuts down cleanly (sanitizer builds: no leak)."""
    mods = {"roster": True, "presence": True, "privacy": True, "blocking": True,
            "filter": {"rules": [{"kind": "message", "body": "never", "action": "drop"}]},
            "limits": True, "log": True}
    srv = server_factory({"modules": mods})
    from conftest import Account
    a, b = Account("unla", "pw-unla"), Account("unlb", "pw-unlb")
    for acc in (a, b):
        srv.adduser(acc.jid, acc.password)

    async def scenario():
        ca = await login(srv, a, presence=1)
        cb = await login(srv, b, presence=1)
        await ok(ca, "set", list_xml("x", item(1, "deny", "jid", b.jid)))
        await ok(ca, "set", "<active name='x'/>")
        assert not await delivered(cb, ca, ca.boundjid, "blocked before")
        for m in ("privacy", "blocking", "filter", "limits", "log"):
            srv.config["modules"].pop(m)
        srv.reload()
        deadline = asyncio.get_event_loop().time() + 5
        while "unloaded" not in srv.read_log() and asyncio.get_event_loop().time() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        assert await delivered(cb, ca, ca.boundjid, "free now")
    run(scenario())
