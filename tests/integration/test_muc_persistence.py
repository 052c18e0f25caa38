"""Persistent rooms across restarts (XEP-0045 §10.1.3 muc#roomconfig_
persistentroom): after a clean restart and after kill -9 the room is back
with its configuration, affiliations, reserved nicks, kept roles, subject,
history (same stanza-ids, tombstones included) and occupant ids; a
temporary room is not; a room that stops being persistent is forgotten.

Each test runs on its own server (server_factory), restarted in the test."""

import asyncio

from muc_util import (NS_ADMIN, NS_DISCO_INFO, NS_MODERATE1, NS_REGISTER, NS_REGISTER_FORM,
                      NS_RETRACT1, admin, admin_item, archived, codes, configure, create, drain,
                      error, groupchat, iq, iq_ok, item, join, join_ok, leave, message_from,
                      occupant_id, q, room_jid, stanza_id)
from xmpptest import connect, run

MUC = {"modules": {"muc": {}}}


def features(info):
    return {f.get("var") for f in info.xml.find(q(NS_DISCO_INFO, "query"))}


async def history_and_subject(c, room, nick, password=None):
    """Joins; returns (self-presence, [(stanza-id, body, stanza)], subject)."""
    drain(c)
    p = await join_ok(c, room, nick, password=password)
    hist = []
    while True:
        m = await message_from(c, room)
        if m.xml.find("{jabber:client}subject") is not None:
            return p, hist, m["subject"]
        hist.append((stanza_id(m, by=room), m["body"], m))


def test_persistent_room_survives_restart(server_factory, accounts):
    """Everything of a persistent room comes back after a restart: the
    configuration, the owner/admin/member/outcast lists with reserved nicks
    and reasons, the voice a moderator granted, the subject, the history
    with its stanza-ids and a moderated message's tombstone, occupant ids;
    new messages get later stanza-ids. A temporary room is gone."""
    srv = server_factory(MUC)
    own, adm, mem, out, vis = accounts(5, srv=srv)
    room, temp = room_jid("keep"), room_jid("temp")
    state = {}

    async def before():
        co, cm, cv = await connect(srv, own), await connect(srv, mem), await connect(srv, vis)
        await create(co, room, "owner", {"persistentroom": "1", "roomname": "Kept Room",
                                         "moderatedroom": "1", "whois": "anyone",
                                         "passwordprotectedroom": "1", "roomsecret": "s3cret"})
        await create(co, temp, "owner")
        for it in (admin_item(affiliation="admin", jid=adm.jid),
                   admin_item(affiliation="member", jid=mem.jid, nick="memnick"),
                   admin_item(affiliation="outcast", jid=out.jid, reason="troll")):
            assert (await admin(co, room, it))["type"] == "result"
        p = await join_ok(cv, room, "vis", password="s3cret")
        state["vis_oid"] = occupant_id(p)
        assert item(p)["role"] == "visitor"
        assert (await admin(co, room, admin_item(nick="vis", role="participant")))["type"] == "result"
        co.send_raw("<message to='%s' type='groupchat'><subject>Kept subject</subject></message>" % room)
        await message_from(co, room, lambda m: m["subject"] == "Kept subject")
        sids = []
        for body in ("one", "two", "three"):
            groupchat(co, room, body)
            m = await message_from(co, room, lambda m, b=body: m["body"] == b)
            sids.append(stanza_id(m, by=room))
        body = ("<moderate xmlns='%s' id='%s'><retract xmlns='%s'/></moderate>"
                % (NS_MODERATE1, sids[1], NS_RETRACT1))
        assert (await iq(co, room, body, "set"))["type"] == "result"
        state["sids"] = sids
    run(before())

    srv.restart()

    async def after():
        co, ca, cm, cx, cv = [await connect(srv, x) for x in (own, adm, mem, out, vis)]
        info = await iq_ok(co, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        ident = info.xml.find(q(NS_DISCO_INFO, "query")).find(q(NS_DISCO_INFO, "identity"))
        assert ident.get("name") == "Kept Room"
        assert {"muc_persistent", "muc_moderated", "muc_nonanonymous",
                "muc_passwordprotected"} <= features(info)
        assert error(await iq(co, temp, "<query xmlns='%s'/>" % NS_DISCO_INFO))[1] == "item-not-found"
        assert error(await join(cx, room, "x", password="s3cret"))[1] == "forbidden"
        assert error(await join(cm, room, "memnick"))[1] == "not-authorized"
        p, hist, subject = await history_and_subject(co, room, "owner", password="s3cret")
        assert item(p)["affiliation"] == "owner" and 201 not in codes(p)
        assert subject == "Kept subject"
        assert [h[0] for h in hist] == state["sids"]
        assert hist[0][1] == "one" and hist[2][1] == "three"
        assert hist[1][1] == "" and hist[1][2].xml.find(q(NS_RETRACT1, "retracted")) is not None
        p = await join_ok(cv, room, "vis", password="s3cret")
        assert item(p)["role"] == "participant" and occupant_id(p) == state["vis_oid"]
        p = await join_ok(ca, room, "adm", password="s3cret")
        assert item(p)["affiliation"] == "admin" and item(p)["role"] == "moderator"
        r = await admin(co, room, admin_item(affiliation="outcast"), type_="get")
        it = r.xml.find(q("http://jabber.org/protocol/muc#admin", "query"))[0]
        assert it.get("jid") == out.jid
        r = await admin(co, room, admin_item(affiliation="member"), type_="get")
        it = r.xml.find(q("http://jabber.org/protocol/muc#admin", "query"))[0]
        assert (it.get("jid"), it.get("nick")) == (mem.jid, "memnick")
        p = await join_ok(cm, room, "memnick", password="s3cret")
        assert item(p)["affiliation"] == "member" and item(p)["role"] == "participant"
        groupchat(co, room, "after")
        m = await message_from(co, room, lambda m: m["body"] == "after")
        assert stanza_id(m, by=room) > state["sids"][-1]  # ids ordered by time
    run(after())


def test_room_survives_kill_9(server_factory, accounts):
    """Crash-stop: what the room acknowledged (its configuration) and what it
    archived (a message, broadcast before its write completed) is on disk
    and comes back after kill -9."""
    srv = server_factory(MUC)
    a, = accounts(1, srv=srv)
    room = room_jid("crash")

    async def before():
        ca = await connect(srv, a)
        await create(ca, room, "o", {"persistentroom": "1", "roomname": "Crash Test"})
        groupchat(ca, room, "durable")
        await message_from(ca, room, lambda m: m["body"] == "durable")
        await archived(srv, room, 1)
    run(before())
    srv.kill()
    srv.start()

    async def after():
        ca = await connect(srv, a)
        _p, hist, _s = await history_and_subject(ca, room, "o")
        assert [h[1] for h in hist] == ["durable"]
    run(after())


def test_no_longer_persistent_room_is_forgotten(server_factory, accounts):
    """Turning persistence off forgets the stored room: once empty it goes,
    and a restart does not bring it back."""
    srv = server_factory(MUC)
    a, = accounts(1, srv=srv)
    room = room_jid("flip")

    async def before():
        ca = await connect(srv, a)
        await create(ca, room, "o", {"persistentroom": "1"})
        assert (await configure(ca, room, {"persistentroom": "0"}))["type"] == "result"
        leave(ca, room, "o")
        await asyncio.sleep(0.3)
    run(before())
    srv.restart()

    async def after():
        ca = await connect(srv, a)
        assert error(await iq(ca, room, "<query xmlns='%s'/>" % NS_DISCO_INFO))[1] == "item-not-found"
    run(after())


def test_empty_persistent_room_stays(server_factory, accounts):
    """A persistent room stays when its last occupant leaves (§10.1.3), and
    answers disco while empty."""
    srv = server_factory(MUC)
    a, = accounts(1, srv=srv)
    room = room_jid("empty")

    async def go():
        ca = await connect(srv, a)
        await create(ca, room, "o", {"persistentroom": "1"})
        leave(ca, room, "o")
        await asyncio.sleep(0.2)
        info = await iq_ok(ca, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        assert "muc_persistent" in features(info)
        p = await join_ok(ca, room, "o")
        assert 201 not in codes(p)
    run(go())


def test_waiting_registration_survives_restart(server_factory, accounts):
    """§9.9: a registration request waiting in a persistent members-only room
    is stored with it: after a restart the owner's approval (the form it got
    before) still makes the member with the requested nick."""
    srv = server_factory(MUC)
    own, usr = accounts(2, srv=srv)
    room = room_jid("keep")
    form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>%s</value></field>"
            "<field var='muc#register_roomnick'><value>later</value></field></x>" % NS_REGISTER_FORM)

    async def before():
        co, cu = await connect(srv, own), await connect(srv, usr)
        await create(co, room, "owner", {"persistentroom": "1", "membersonly": "1"})
        r = await iq(cu, room, "<query xmlns='%s'>%s</query>" % (NS_REGISTER, form), "set")
        assert r["type"] == "result"
    run(before())
    srv.restart()

    async def after():
        co, cu = await connect(srv, own), await connect(srv, usr)
        co.send_raw("<message to='%s'><x xmlns='jabber:x:data' type='submit'>"
                    "<field var='FORM_TYPE'><value>%s</value></field>"
                    "<field var='muc#jid'><value>%s</value></field>"
                    "<field var='muc#register_allow'><value>1</value></field></x></message>"
                    % (room, NS_REGISTER_FORM, usr.jid))
        # the room handles one sender's stanzas in order: the approval first
        r = await admin(co, room, admin_item(affiliation="member"), type_="get")
        got = [i.attrib for i in r.xml.find(q(NS_ADMIN, "query"))]
        assert [(i["jid"], i.get("nick")) for i in got] == [(usr.jid, "later")]
        p = await join_ok(cu, room, "later")
        assert item(p)["affiliation"] == "member"
    run(after())
