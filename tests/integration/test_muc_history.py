"""Group chat history and archive: discussion history on entering with
maxchars, maxstanzas, seconds and since (XEP-0045 §7.2.13, §7.2.14), the
room archive with room stanza-ids (XEP-0359), and message moderation with a
tombstone in the archive (XEP-0425, both the :1 protocol and the :0 one
slixmpp speaks).

The archive layout is checked in the storage itself (SQLite or PostgreSQL):
store "muc_archive", user = the room's bare JID, item id (chosen by the
room) = stanza-id, with = the author's real bare JID, value = the message's
XML as a JSON string (the layout mod_mam's engine reads)."""

import asyncio
import datetime
import xml.etree.ElementTree as ET

import pytest

from muc_util import (NS_DELAY, NS_FASTEN, NS_MODERATE0, NS_MODERATE1, NS_OCCUPANT_ID, NS_RETRACT0,
                      NS_RETRACT1, NS_SID, archive_items, archived, configure, create, drain, error,
                      groupchat, iq, join_ok, message_from, occupant_id, q, room_jid, stanza_id)
from xmpptest import connect, run


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"muc": {"max_history": 10, "message_rate": 0}}}


async def history_of(c, room, nick, history):
    """Joins with a <history/> request; returns the bodies of the delayed
    messages received before the subject."""
    drain(c)
    await join_ok(c, room, nick, history=history)
    bodies = []
    while True:
        m = await message_from(c, room)
        if m.xml.find("{jabber:client}subject") is not None:
            return bodies
        assert m.xml.find(q(NS_DELAY, "delay")) is not None
        bodies.append(m["body"])


async def room_with_messages(server, owner, room, n, **fields):
    await create(owner, room, "o", fields or None)
    for i in range(n):
        groupchat(owner, room, "m%d" % i)
        await message_from(owner, room, lambda m, i=i: m["body"] == "m%d" % i)


# ---- history (§7.2.13, §7.2.14) ------------------------------------------------------------

def test_history_default_and_maxstanzas(server, accounts):
    """§7.2.13: history comes before the subject, delayed from the room with
    the original stamps; its size is the room's maxhistoryfetch unless the
    client asks for fewer (maxstanzas); maxchars 0 means none."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await room_with_messages(server, ca, room, 6)
        assert (await configure(ca, room, {"muc#maxhistoryfetch": "4"}))["type"] == "result"
        assert await history_of(cb, room, "b", None) == ["m2", "m3", "m4", "m5"]
        cb.send_raw("<presence to='%s/b' type='unavailable'/>" % room)
        assert await history_of(cb, room, "b", {"maxstanzas": 2}) == ["m4", "m5"]
        cb.send_raw("<presence to='%s/b' type='unavailable'/>" % room)
        assert await history_of(cb, room, "b", {"maxchars": 0}) == []
    run(go())


def test_history_maxchars_counts_whole_stanzas(server, accounts):
    """§7.2.14: maxchars counts the characters of the complete stanzas, and
    only complete stanzas are sent."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await room_with_messages(server, ca, room, 5)
        # one history stanza is a few hundred characters: room for about two
        full = await history_of(cb, room, "b", {"maxstanzas": 1})
        assert full == ["m4"]
        cb.send_raw("<presence to='%s/b' type='unavailable'/>" % room)
        got = await history_of(cb, room, "b", {"maxchars": 900})
        assert 1 <= len(got) < 5 and got == ["m%d" % i for i in range(5 - len(got), 5)]
        cb.send_raw("<presence to='%s/b' type='unavailable'/>" % room)
        assert await history_of(cb, room, "b", {"maxchars": 20}) == []
    run(go())


def test_history_seconds_and_since(server, accounts):
    """§7.2.14: seconds and since (XEP-0082) send only newer messages; a
    malformed since is ignored rather than refusing the join."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await room_with_messages(server, ca, room, 2)
        await asyncio.sleep(2.2)
        mark = datetime.datetime.now(datetime.timezone.utc)
        await asyncio.sleep(0.1)
        groupchat(ca, room, "late")
        await message_from(ca, room, lambda m: m["body"] == "late")
        assert await history_of(cb, room, "b", {"seconds": 2}) == ["late"]
        cb.send_raw("<presence to='%s/b' type='unavailable'/>" % room)
        since = mark.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert await history_of(cb, room, "b", {"since": since}) == ["late"]
        cb.send_raw("<presence to='%s/b' type='unavailable'/>" % room)
        assert await history_of(cb, room, "b", {"since": "1970-01-01T00:00:00Z"}) == ["m0", "m1", "late"]
        cb.send_raw("<presence to='%s/b' type='unavailable'/>" % room)
        assert await history_of(cb, room, "b", {"since": "yesterday"}) == ["m0", "m1", "late"]
    run(go())


def test_history_is_capped_by_max_history(server, accounts):
    """max_history (10 here) bounds what a room keeps for joiners, whatever
    they ask."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await room_with_messages(server, ca, room, 13)
        got = await history_of(cb, room, "b", {"maxstanzas": 100})
        assert got == ["m%d" % i for i in range(3, 13)]
    run(go())


def test_chat_states_are_relayed_not_archived(server, accounts):
    """XEP-0313 §5 (what a room stores): a groupchat without a body (a chat
    state) is relayed but neither archived nor given a stanza-id."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        ca.send_raw("<message to='%s' type='groupchat'><composing xmlns='http://jabber.org/protocol/"
                    "chatstates'/></message>" % room)
        m = await message_from(cb, room, lambda m: m["body"] == "")
        assert stanza_id(m) is None
        groupchat(ca, room, "after")  # archived behind the chat state, if that were
        await message_from(cb, room, lambda m: m["body"] == "after")
        items = await archived(server, room, 1)
        assert len(items) == 1 and items[0][2].find("body").text == "after"
    run(go())


# ---- the archive (XEP-0359, layout for XEP-0313) ---------------------------------------------

def test_archive_layout_and_stanza_ids(server, accounts):
    """Every groupchat message is archived under the room's bare JID; its
    stanza-id (by the room) is the archive item id; the item keeps the
    author's real bare JID as 'with' and the message as broadcast (from the
    occupant JID, its id, its occupant id; no 'to', no stanza-id) as a JSON
    string, as mod_mam's engine reads archive items."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        groupchat(cb, room, "archived", id_="orig-1")
        m = await message_from(ca, room, lambda m: m["body"] == "archived")
        sid = stanza_id(m, by=room)
        assert sid
        items = await archived(server, room, 1)
        assert len(items) == 1
        iid, with_, x = items[0]
        assert iid == sid and with_ == b.jid
        # stored as mod_mam stores messages: jabber:client is the default namespace
        assert x.tag == "message" and x.get("type") == "groupchat"
        assert x.get("from") == room + "/b" and x.get("to") is None and x.get("id") == "orig-1"
        assert x.find("body").text == "archived"
        assert x.find(q(NS_OCCUPANT_ID, "occupant-id")).get("id") == occupant_id(m)
        assert x.find(q(NS_SID, "stanza-id")) is None
    run(go())


def test_room_without_archiving(server, accounts):
    """muc#roomconfig_enablearchiving off: nothing is stored, messages still
    carry a stanza-id of the room's and reach the history of joiners."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o", {"enablearchiving": "0"})
        groupchat(ca, room, "ephemeral")
        m = await message_from(ca, room, lambda m: m["body"] == "ephemeral")
        assert stanza_id(m, by=room)
        assert await history_of(cb, room, "b", None) == ["ephemeral"]
        await asyncio.sleep(0.3)  # time for a write, were there one
        assert archive_items(server, room) == []
    run(go())


def test_temporary_room_archive_goes_with_the_room(server, accounts):
    """A temporary room's archive is deleted when the room goes (no history
    leaks to a later room of the same name)."""
    a, = accounts(1)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        await create(ca, room, "o")
        groupchat(ca, room, "bye")
        await message_from(ca, room, lambda m: m["body"] == "bye")
        assert len(await archived(server, room, 1)) == 1
        ca.send_raw("<presence to='%s/o' type='unavailable'/>" % room)
        for _ in range(50):
            if not archive_items(server, room):
                break
            await asyncio.sleep(0.05)
        assert archive_items(server, room) == []
    run(go())


# ---- moderation (XEP-0425) --------------------------------------------------------------------

def test_moderation_v1_retract_with_tombstone(server, accounts):
    """XEP-0425 (urn:xmpp:message-moderate:1): a moderator retracts a message
    by its stanza-id; every occupant gets the retraction from the room (the
    moderator's occupant JID and occupant id, the reason); the archive item
    becomes a tombstone at the same id; joiners get the tombstone in the
    history. A participant's request is <forbidden/>, an unknown id
    <item-not-found/>."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "mod")
        await join_ok(cb, room, "spammer")
        groupchat(cb, room, "DM me for free magic potions!")
        m = await message_from(ca, room, lambda m: m["body"].startswith("DM me"))
        sid = stanza_id(m, by=room)
        body = ("<moderate xmlns='%s' id='%s'><retract xmlns='%s'/><reason>spam</reason></moderate>"
                % (NS_MODERATE1, sid, NS_RETRACT1))
        assert error(await iq(cb, room, body, "set"))[:2] == ("auth", "forbidden")
        missing = body.replace("id='%s'" % sid, "id='999999999'")
        assert error(await iq(ca, room, missing, "set"))[1] == "item-not-found"
        assert (await iq(ca, room, body, "set"))["type"] == "result"
        for who in (ca, cb):
            n = await message_from(who, room, lambda m: m.xml.find(q(NS_RETRACT1, "retract")) is not None)
            r = n.xml.find(q(NS_RETRACT1, "retract"))
            assert str(n["from"]) == room and r.get("id") == sid
            mod = r.find(q(NS_MODERATE1, "moderated"))
            assert mod.get("by") == room + "/mod"
            assert mod.find(q(NS_OCCUPANT_ID, "occupant-id")).get("id")
            assert r.find(q(NS_RETRACT1, "reason")).text == "spam"
        iid, with_, x = [i for i in archive_items(server, room) if i[0] == sid][0]
        assert with_ == b.jid and x.get("from") == room + "/spammer"
        assert x.find("body") is None and "magic potions" not in ET.tostring(x, "unicode")
        r = x.find(q(NS_RETRACT1, "retracted"))
        assert r.get("stamp") and r.find(q(NS_MODERATE1, "moderated")).get("by") == room + "/mod"
        drain(cc)
        await join_ok(cc, room, "late")
        h = await message_from(cc, room)
        assert stanza_id(h, by=room) == sid and h["body"] == ""
        assert h.xml.find(q(NS_RETRACT1, "retracted")) is not None
    run(go())


def test_moderation_v0_with_slixmpp(server, accounts):
    """XEP-0425 0.2 (urn:xmpp:message-moderate:0 inside fasten apply-to), as
    slixmpp's xep_0425 plugin sends it: the room answers and broadcasts the
    0.2 form too."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        ca.register_plugin("xep_0425")
        await create(ca, room, "mod")
        await join_ok(cb, room, "b")
        groupchat(cb, room, "oops")
        m = await message_from(ca, room, lambda m: m["body"] == "oops")
        sid = stanza_id(m, by=room)
        from slixmpp import JID
        await ca["xep_0425"].moderate(JID(room), sid, reason="oops indeed")
        n = await message_from(cb, room, lambda m: m.xml.find(q(NS_FASTEN, "apply-to")) is not None)
        ap = n.xml.find(q(NS_FASTEN, "apply-to"))
        assert ap.get("id") == sid
        mod = ap.find(q(NS_MODERATE0, "moderated"))
        assert mod.get("by") == room + "/mod" and mod.find(q(NS_RETRACT0, "retract")) is not None
    run(go())


def test_moderation_of_an_old_message_from_the_archive(server, accounts):
    """XEP-0425: a message older than the history the room keeps in memory is
    found in the archive and tombstoned there."""
    a, = accounts(1)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        await create(ca, room, "mod")
        sids = []
        for i in range(13):  # more than max_history (10)
            groupchat(ca, room, "n%d" % i)
            m = await message_from(ca, room, lambda m, i=i: m["body"] == "n%d" % i)
            sids.append(stanza_id(m, by=room))
        for target in (sids[0], sids[1]):
            body = ("<moderate xmlns='%s' id='%s'><retract xmlns='%s'/></moderate>"
                    % (NS_MODERATE1, target, NS_RETRACT1))
            assert (await iq(ca, room, body, "set"))["type"] == "result"
        stones = {i[0]: i[2].find(q(NS_RETRACT1, "retracted")) is not None
                  for i in archive_items(server, room)}
        assert stones[sids[0]] and stones[sids[1]] and not stones[sids[2]]
    run(go())
