"""XEP-0313 on group chat rooms (mod_muc_mam): a room's archive, kept by
mod_muc, is queried at the room's JID (XEP-0313 §3.3.2 MUC archives) with
mod_mam's engine; rooms that archive advertise urn:xmpp:mam:2; the room
decides who may read (not outcasts, members of a members-only room), and a
room that hides real JIDs refuses filtering by sender to those who may not
see them."""

import xml.etree.ElementTree as ET

import pytest

from muc_util import (NS_DATA, admin, admin_item, configure, create, groupchat, iq, message_from, q,
                      room_jid, stanza_id)
from xmpptest import connect, new_id, run, scaled

NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_STANZA = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": {}, "presence": {}, "disco": {}, "mam": {}, "muc": {"message_rate": 0},
                        "muc_mam": {}}}


async def room_with(c, room, bodies, fields=None):
    await create(c, room, "owner", fields)
    ids = []
    for b in bodies:
        groupchat(c, room, b)
        m = await message_from(c, room, lambda m, b=b: m["body"] == b)
        ids.append(stanza_id(m, by=room))
    return ids


async def mam_query(c, room, fields=None, max_=None):
    """A MAM query to the room; returns (reply IQ, [(result id, message)])."""
    qid = new_id("q")
    form = ""
    if fields:
        form = "<x xmlns='%s' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s</value>" \
               "</field>%s</x>" % (NS_DATA, NS_MAM, "".join(
                   "<field var='%s'><value>%s</value></field>" % kv for kv in fields.items()))
    rsm = "<set xmlns='http://jabber.org/protocol/rsm'><max>%d</max></set>" % max_ if max_ else ""
    reply = await iq(c, room, "<query xmlns='%s' queryid='%s'>%s%s</query>" % (NS_MAM, qid, form, rsm), "set")
    # the results come before the IQ's answer (§4.2)
    results, others = [], []
    while not c.messages.empty():
        msg = c.messages.get_nowait()
        r = msg.xml.find(q(NS_MAM, "result"))
        if r is None or r.get("queryid") != qid:
            others.append(msg)
            continue
        results.append((r.get("id"), r.find("%s/%s" % (q(NS_FORWARD, "forwarded"), q("jabber:client", "message")))))
    for msg in others:
        c.messages.put_nowait(msg)
    return reply, results


def condition(reply):
    err = reply.xml.find("{jabber:client}error")
    assert err is not None, reply
    return [el.tag.split("}")[1] for el in err if el.tag.startswith("{%s}" % NS_STANZA)][0]


async def features(c, room):
    r = await iq(c, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
    return {f.get("var") for f in r.xml.iter(q(NS_DISCO_INFO, "feature"))}


def test_xep0313_muc_archive_queried_at_room_jid(server, accounts):
    """§3.3.2: the room's messages come back from the room's JID, as the
    room sent them (from the occupant JID), each result id being the
    stanza-id the occupants got (XEP-0359 by=room); the room advertises
    urn:xmpp:mam:2 in disco#info (§7). Someone who never joined an open
    room may read it (the history any joiner would see)."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        ids = await room_with(ca, room, ["one", "two", "three"])
        assert NS_MAM in await features(cb, room)
        reply, results = await mam_query(cb, room)
        assert reply["type"] == "result", reply
        assert [r[0] for r in results] == ids
        assert [m.findtext("{jabber:client}body") for _, m in results] == ["one", "two", "three"]
        assert {m.get("from") for _, m in results} == {room + "/owner"}
        reply, results = await mam_query(cb, room, max_=2)
        assert [m.findtext("{jabber:client}body") for _, m in results] == ["one", "two"]
    run(go())


def test_xep0313_muc_members_only_and_outcasts(server, accounts):
    """XEP-0045 §7.2.5 carried to the archive: in a members-only room only
    members read the history; others and outcasts get forbidden."""
    a, b, m = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cm = await connect(server, a), await connect(server, b), await connect(server, m)
        await room_with(ca, room, ["secret"], {"membersonly": "1"})
        r = await admin(ca, room, admin_item(jid=m.jid, affiliation="member"))
        assert r["type"] == "result", r
        reply, _ = await mam_query(cb, room)
        assert reply["type"] == "error" and condition(reply) == "forbidden"
        reply, results = await mam_query(cm, room)
        assert reply["type"] == "result" and [x.findtext("{jabber:client}body") for _, x in results] == ["secret"]
        r = await admin(ca, room, admin_item(jid=m.jid, affiliation="outcast"))
        assert r["type"] == "result", r
        reply, _ = await mam_query(cm, room)
        assert reply["type"] == "error" and condition(reply) == "forbidden"
    run(go())


def test_xep0313_muc_semi_anonymous_room_refuses_with_filter(server, accounts):
    """A semi-anonymous room (whois moderators) must not tell who wrote
    what: a 'with' filter by real JID is refused to a mere visitor of the
    archive (not-acceptable), and works for the room's owner."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await room_with(ca, room, ["x", "y"], {"whois": "moderators"})
        reply, _ = await mam_query(cb, room, {"with": a.jid})
        assert reply["type"] == "error" and condition(reply) == "not-acceptable"
        reply, results = await mam_query(cb, room)
        assert reply["type"] == "result" and len(results) == 2
        reply, results = await mam_query(ca, room, {"with": a.jid})
        assert reply["type"] == "result" and len(results) == 2
    run(go())


def test_xep0313_muc_room_without_archiving(server, accounts):
    """A room with archiving off does not advertise MAM and answers a query
    like any unsupported namespace (RFC 6120 §8.3.3.19 service-unavailable);
    an unknown room is item-not-found."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await room_with(ca, room, ["gone"], {"enablearchiving": "0"})
        assert NS_MAM not in await features(cb, room)
        reply, _ = await mam_query(cb, room)
        assert reply["type"] == "error" and condition(reply) == "service-unavailable"
        reply, _ = await mam_query(cb, room_jid())
        assert reply["type"] == "error" and condition(reply) == "item-not-found"
    run(go())


def test_xep0313_muc_slixmpp_retrieves_room_history(server, accounts):
    """slixmpp's xep_0313 plugin, as a client catching up on a room."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        await room_with(ca, room, ["s%d" % i for i in range(4)])
        cb = await connect(server, b)
        cb.register_plugin("xep_0313")
        res = await cb["xep_0313"].retrieve(jid=room, rsm={"max": 10}, timeout=scaled(10))
        bodies = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in res["mam"]["results"]]
        assert bodies == ["s%d" % i for i in range(4)]
    run(go())
