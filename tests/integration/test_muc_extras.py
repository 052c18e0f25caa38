"""Around the rooms: mediated invitations and declines (XEP-0045 §7.8.2),
direct invitations (XEP-0249), self-ping (XEP-0410), occupant ids
(XEP-0421), IQs between occupants (XEP-0045 §17.4), ghost occupants
(§18.1.2) and a live module reload (occupants told with 332, §11.2)."""

import asyncio

import pytest

from muc_util import (NS_CONFERENCE, NS_DISCO_INFO, NS_OCCUPANT_ID, NS_PING, NS_USER, NS_VCARD,
                      admin, admin_item, bare, codes, configure, create, error, groupchat, iq,
                      iq_ok, item, join_ok, message_from, occupant_id, presence_from, q, room_jid)
from xmpptest import connect, run, xml_escape


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"muc": {}, "vcard": {}, "roster": {}, "presence": {}}}


def invite_of(m):
    x = m.xml.find(q(NS_USER, "x"))
    return x.find(q(NS_USER, "invite")) if x is not None else None


# ---- invitations ------------------------------------------------------------------------

def test_mediated_invitation_and_decline(server, accounts):
    """§7.8.2: an occupant invites through the room; the invitee gets the
    invitation from the room JID with the inviter, the reason and the room
    password; declining goes back to the inviter through the room."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca = await connect(server, a, presence=0)
        cb = await connect(server, b, presence=0)
        await create(ca, room, "crone", {"passwordprotectedroom": "1", "roomsecret": "cauldronburn"})
        ca.send_raw("<message to='%s'><x xmlns='%s'><invite to='%s'><reason>Hey Hecate</reason>"
                    "<continue thread='e0ffe42b'/></invite></x></message>" % (room, NS_USER, b.jid))
        m = await cb.next_message(pred=lambda m: invite_of(m) is not None)
        assert str(m["from"]) == room
        inv = invite_of(m)
        assert inv.get("from") == a.jid and inv.find(q(NS_USER, "reason")).text == "Hey Hecate"
        assert inv.find(q(NS_USER, "continue")).get("thread") == "e0ffe42b"
        assert m.xml.find(q(NS_USER, "x")).find(q(NS_USER, "password")).text == "cauldronburn"
        assert m["body"]  # a line for clients without MUC
        await join_ok(cb, room, "hecate", password="cauldronburn")
        cb.send_raw("<message to='%s'><x xmlns='%s'><decline to='%s'><reason>Too busy</reason>"
                    "</decline></x></message>" % (room, NS_USER, a.jid))
        d = await ca.next_message(pred=lambda m: m.xml.find(q(NS_USER, "x")) is not None and
                                  m.xml.find(q(NS_USER, "x")).find(q(NS_USER, "decline")) is not None)
        dec = d.xml.find(q(NS_USER, "x")).find(q(NS_USER, "decline"))
        assert str(d["from"]) == room and dec.get("from") == b.jid
        assert dec.find(q(NS_USER, "reason")).text == "Too busy"
    run(go())


def test_invitation_rules(server, accounts):
    """§7.8.2, §9.5: a non-occupant may not invite (<not-acceptable/>); in a
    members-only room a mere member may not (<forbidden/>) unless
    allowinvites, and the invitee then becomes a member; a bad JID is
    <jid-malformed/>."""
    a, b, c, d = accounts(4)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        cc = await connect(server, c, presence=0)
        await create(ca, room, "o", {"membersonly": "1"})

        def invite(who, to):
            who.send_raw("<message to='%s'><x xmlns='%s'><invite to='%s'/></x></message>"
                         % (room, NS_USER, xml_escape(to)))
        invite(cb, c.jid)
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("cancel", "not-acceptable")
        assert (await admin(ca, room, admin_item(affiliation="member", jid=b.jid)))["type"] == "result"
        await join_ok(cb, room, "b")
        invite(cb, c.jid)
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("auth", "forbidden")
        invite(ca, "bad@@jid")
        e = await message_from(ca, room, lambda m: m["type"] == "error")
        assert error(e)[1] == "jid-malformed"
        assert (await configure(ca, room, {"allowinvites": "1"}))["type"] == "result"
        invite(cb, c.jid)
        await cc.next_message(pred=lambda m: invite_of(m) is not None)
        p = await join_ok(cc, room, "c")
        assert item(p)["affiliation"] == "member"
    run(go())


def test_direct_invitation_xep_0249(server, accounts):
    """XEP-0249: a direct invitation goes from user to user unchanged (the
    room is not involved), and the invitee enters with the password it
    carries."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca = await connect(server, a, presence=0)
        cb = await connect(server, b, presence=0)
        cb.register_plugin("xep_0249")
        got = asyncio.get_event_loop().create_future()
        cb.add_event_handler("groupchat_direct_invite", lambda m: got.done() or got.set_result(m))
        await create(ca, room, "o", {"passwordprotectedroom": "1", "roomsecret": "pw1"})
        ca.send_raw("<message to='%s'><x xmlns='%s' jid='%s' password='pw1' reason='come'/></message>"
                    % (b.jid, NS_CONFERENCE, room))
        m = await asyncio.wait_for(got, 5)
        x = m.xml.find(q(NS_CONFERENCE, "x"))
        assert bare(m["from"]) == a.jid and x.get("jid") == room and x.get("reason") == "come"
        await join_ok(cb, room, "b", password=x.get("password"))
    run(go())


# ---- XEP-0410 self-ping -------------------------------------------------------------------------

def test_self_ping(server, accounts):
    """XEP-0410: a ping to one's own occupant JID is answered by the room
    while joined, <not-acceptable/> when not (for instance after a kick);
    the room advertises the optimisation."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        ping = "<ping xmlns='%s'/>" % NS_PING
        assert (await iq(cb, room + "/b", ping))["type"] == "result"
        info = await iq_ok(cb, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        feats = {f.get("var") for f in info.xml.find(q(NS_DISCO_INFO, "query"))}
        assert "http://jabber.org/protocol/muc#self-ping-optimization" in feats
        assert (await admin(ca, room, admin_item(nick="b", role="none")))["type"] == "result"
        r = await iq(cb, room + "/b", ping)
        assert error(r)[:2] == ("cancel", "not-acceptable")
        r = await iq(cb, room_jid() + "/b", ping)
        assert error(r)[1] == "item-not-found"
    run(go())


# ---- XEP-0421 occupant ids -------------------------------------------------------------------------

def test_occupant_id_stable_and_not_forgeable(server, accounts):
    """XEP-0421: presence and messages from an occupant carry the room's
    occupant id, stable across nick changes and visits, different for
    another user; one the client sends is replaced."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        owner = await create(ca, room, "o")
        p = await join_ok(cb, room, "b")
        oid = occupant_id(p)
        assert oid and occupant_id(owner) and oid != occupant_id(owner)
        groupchat(cb, room, "id?", extra="<occupant-id xmlns='%s' id='forged'/>" % NS_OCCUPANT_ID)
        m = await message_from(ca, room, lambda m: m["body"] == "id?")
        ids = [e.get("id") for e in m.xml.findall(q(NS_OCCUPANT_ID, "occupant-id"))]
        assert ids == [oid]
        cb.send_raw("<presence to='%s/renamed'/>" % room)
        p = await presence_from(ca, room + "/renamed")
        assert occupant_id(p) == oid
        cb.send_raw("<presence to='%s/renamed' type='unavailable'/>" % room)
        await presence_from(cb, room + "/renamed", lambda p: p["type"] == "unavailable")
        p = await join_ok(cb, room, "again")
        assert occupant_id(p) == oid
        info = await iq_ok(cb, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        assert NS_OCCUPANT_ID in {f.get("var") for f in info.xml.find(q(NS_DISCO_INFO, "query"))}
    run(go())


# ---- IQs through the room (§17.4) ------------------------------------------------------------------

def test_iq_between_occupants(server, accounts):
    """§17.4 rule 3: an IQ to another occupant's JID reaches that occupant
    from the sender's occupant JID (never a real JID) and the answer comes
    back from the target's occupant JID; a vCard request goes to the
    account (XEP-0054) and is answered by its server."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        seen = asyncio.get_event_loop().create_future()

        def answer(stanza):
            if not seen.done():
                seen.set_result(str(stanza["from"]))
            stanza.reply().send()
        cb.register_handler(Callback("probe", MatchXPath("{jabber:client}iq/{urn:example:probe}q"),
                                     answer))
        r = await iq(ca, room + "/b", "<q xmlns='urn:example:probe'/>")
        assert r["type"] == "result" and str(r["from"]) == room + "/b"
        assert await asyncio.wait_for(seen, 5) == room + "/o"
        await iq_ok(cb, None, "<vCard xmlns='%s'><FN>Bee</FN></vCard>" % NS_VCARD, "set")
        r = await iq(ca, room + "/b", "<vCard xmlns='%s'/>" % NS_VCARD)
        assert r["type"] == "result" and str(r["from"]) == room + "/b"
        assert r.xml.find(q(NS_VCARD, "vCard")).find(q(NS_VCARD, "FN")).text == "Bee"
        r = await iq(ca, room + "/nobody", "<q xmlns='urn:example:probe'/>")
        assert error(r)[1] == "item-not-found"
    run(go())


# ---- ghosts (§18.1.2) -------------------------------------------------------------------------------

def test_error_presence_removes_ghost_with_333(server, accounts):
    """§18.1.2, §11.1: a presence error from an occupant's real JID means the
    occupant is gone: the others see it leave with 333."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        cb.send_raw("<presence to='%s/b' type='error'><error type='cancel'><gone xmlns="
                    "'urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>" % room)
        p = await presence_from(ca, room + "/b", lambda p: p["type"] == "unavailable")
        assert codes(p) == {333}
    run(go())


# ---- reload ----------------------------------------------------------------------------------------

def test_module_reload_tells_occupants_332(server, accounts):
    """§11.2: when the room service goes away (here `xmppctl module reload
    muc`), occupants get unavailable with 110 and 332; the new instance
    serves the domain at once and they can enter again."""
    a, = accounts(1)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        await create(ca, room, "o")
        r = await asyncio.get_event_loop().run_in_executor(None, server.ctl, "module", "reload", "muc")
        assert r.returncode == 0, r.stdout + r.stderr
        p = await presence_from(ca, room + "/o", lambda p: p["type"] == "unavailable")
        assert codes(p) == {110, 332}
        p = await join_ok(ca, room, "o")
        assert 201 in codes(p)  # a temporary room: a new one
    run(go())
