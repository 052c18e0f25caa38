"""Multi-user chat (XEP-0045) roles and affiliations: kick, voice, moderator
(§8, §9.6-9.8), ban, membership, admin and owner lists (§9.1-9.5, §10.3-10.8)
with the presence pushes they cause, voice requests (§7.13, §8.6) and room
registration with reserved nicks (§7.10, §7.12) and its approval by the
room's admins in members-only rooms (§9.9).

Every change asserts both sides: the answer to the requester (result or the
XEP's error) and what the occupants receive."""

import asyncio

import pytest

import xmpptest

from muc_util import (NS_ADMIN, NS_DATA, NS_DISCO_INFO, NS_REGISTER, NS_REGISTER_FORM, NS_REQUEST,
                      NS_USER, admin, admin_item, codes, configure, create, error, form_values,
                      groupchat, iq, iq_ok, item, join, join_ok, message_from, presence_from, q,
                      room_jid, submit_form)
from xmpptest import connect, run

ADMIN = "mucadmin"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"muc": {"admins": ["%s@localhost" % ADMIN]}, "disco": {}}}


def items_of(r):
    return [dict(i.attrib) for i in r.xml.find(q(NS_ADMIN, "query")).findall(q(NS_ADMIN, "item"))]


# ---- roles (§8) ------------------------------------------------------------------------

def test_kick(server, accounts):
    """§8.2: the kicked occupant gets unavailable with 110 and 307, actor and
    reason; the others 307; the moderator a result. A participant may not
    kick (<forbidden/>); a moderator may not kick an owner (<not-allowed/>)
    nor itself (<conflict/>)."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "fluellen")
        await join_ok(cb, room, "pistol")
        await join_ok(cc, room, "gower")
        r = await admin(cb, room, admin_item(nick="gower", role="none"))
        assert error(r)[:2] == ("auth", "forbidden")
        r = await admin(ca, room, admin_item(nick="fluellen", role="none"))
        assert error(r)[:2] == ("cancel", "conflict")
        r = await admin(ca, room, admin_item(nick="pistol", role="none", reason="Avaunt, you cullion!"))
        assert r["type"] == "result"
        p = await presence_from(cb, room + "/pistol", lambda p: p["type"] == "unavailable")
        assert codes(p) == {110, 307}
        assert item(p)["role"] == "none" and item(p)["reason"] == "Avaunt, you cullion!"
        assert item(p)["actor"] == "fluellen"
        p = await presence_from(cc, room + "/pistol", lambda p: p["type"] == "unavailable")
        assert codes(p) == {307}
        # a kicked user may come back
        await join_ok(cb, room, "pistol")
        # an admin (not owner) moderator cannot kick the owner
        assert (await admin(ca, room, admin_item(affiliation="admin", jid=c.jid)))["type"] == "result"
        r = await admin(cc, room, admin_item(nick="fluellen", role="none"))
        assert error(r)[:2] == ("cancel", "not-allowed")
    run(go())


def test_voice_in_moderated_room(server, accounts):
    """§7.4, §8.3, §8.4: in a moderated room a newcomer is a visitor whose
    groupchat gets <forbidden/>; a moderator grants voice (presence push with
    role participant) and revokes it; voice of an admin cannot be revoked
    (<not-allowed/>). §5.1: the voice decision is kept across visits."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o", {"moderatedroom": "1"})
        p = await join_ok(cb, room, "v")
        assert item(p)["role"] == "visitor"
        groupchat(cb, room, "may I?")
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("auth", "forbidden")
        assert (await admin(ca, room, admin_item(nick="v", role="participant")))["type"] == "result"
        p = await presence_from(cb, room + "/v", lambda p: item(p) and item(p)["role"] == "participant")
        assert 110 in codes(p)
        groupchat(cb, room, "thanks")
        await message_from(ca, room, lambda m: m["body"] == "thanks")
        # the voice list
        r = await admin(ca, room, admin_item(role="participant"), type_="get")
        assert [(i["nick"], i["role"], i["jid"]) for i in items_of(r)] == [("v", "participant", str(cb.boundjid))]
        # leaving and coming back keeps the voice
        cb.send_raw("<presence to='%s/v' type='unavailable'/>" % room)
        await presence_from(cb, room + "/v", lambda p: p["type"] == "unavailable")
        p = await join_ok(cb, room, "v")
        assert item(p)["role"] == "participant"
        assert (await admin(ca, room, admin_item(nick="v", role="visitor")))["type"] == "result"
        await presence_from(ca, room + "/v", lambda p: item(p) and item(p)["role"] == "visitor")
        # an admin keeps its voice
        assert (await admin(ca, room, admin_item(affiliation="admin", jid=c.jid)))["type"] == "result"
        await join_ok(cc, room, "adm")
        r = await admin(ca, room, admin_item(nick="adm", role="visitor"))
        assert error(r)[:2] == ("cancel", "not-allowed")
        r = await admin(cb, room, admin_item(role="participant"), type_="get")
        assert error(r)[:2] == ("auth", "forbidden")
    run(go())


def test_moderator_role_by_admin(server, accounts):
    """§9.6-9.8: an admin grants and revokes the moderator role and reads the
    moderator list; a mere moderator may not grant it (<forbidden/>)."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        await join_ok(cc, room, "c")
        assert (await admin(ca, room, admin_item(nick="b", role="moderator")))["type"] == "result"
        p = await presence_from(cc, room + "/b", lambda p: item(p) and item(p)["role"] == "moderator")
        assert item(p)["affiliation"] == "none"
        r = await admin(cb, room, admin_item(nick="c", role="moderator"))
        assert error(r)[:2] == ("auth", "forbidden")
        r = await admin(ca, room, admin_item(role="moderator"), type_="get")
        assert sorted(i["nick"] for i in items_of(r)) == ["b", "o"]
        assert (await admin(ca, room, admin_item(nick="b", role="participant")))["type"] == "result"
        await presence_from(cc, room + "/b", lambda p: item(p) and item(p)["role"] == "participant")
    run(go())


def test_role_and_affiliation_together_is_bad_request(server, accounts):
    """§17.4 rule 4: one item may not change both role and affiliation; an
    unknown nick is <item-not-found/>; a get asks for exactly one list."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        r = await admin(ca, room, admin_item(nick="b", role="visitor", affiliation="member", jid=b.jid))
        assert error(r)[:2] == ("modify", "bad-request")
        r = await admin(ca, room, admin_item(nick="nobody", role="visitor"))
        assert error(r)[:2] == ("cancel", "item-not-found")
        r = await admin(ca, room, admin_item(role="none"), type_="get")
        assert error(r)[:2] == ("modify", "bad-request")
        r = await admin(ca, room, admin_item(affiliation="member", jid="not a jid@@"))
        assert error(r)[1] == "jid-malformed"
    run(go())


# ---- affiliations (§9, §10) ---------------------------------------------------------------

def test_ban_and_ban_list(server, accounts):
    """§9.1, §9.2: a ban removes the occupant with 301 (and the reason), the
    ban list shows it, an admin may not ban itself (<conflict/>) nor an
    owner (<not-allowed/>), and removing the ban lets the user back in."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o")
        await join_ok(cb, room, "cambridge")
        await join_ok(cc, room, "exeter")
        r = await admin(ca, room, admin_item(affiliation="outcast", jid=b.jid + "/any", reason="Treason"))
        assert r["type"] == "result"
        p = await presence_from(cb, room + "/cambridge", lambda p: p["type"] == "unavailable")
        assert codes(p) == {110, 301} and item(p)["affiliation"] == "outcast"
        assert item(p)["reason"] == "Treason" and item(p)["actor"] == "o"
        p = await presence_from(cc, room + "/cambridge", lambda p: p["type"] == "unavailable")
        assert codes(p) == {301}
        r = await admin(ca, room, admin_item(affiliation="outcast"), type_="get")
        assert items_of(r) == [{"affiliation": "outcast", "jid": b.jid}]
        assert r.xml.find(q(NS_ADMIN, "query")).find(q(NS_ADMIN, "item")).find(
            q(NS_ADMIN, "reason")).text == "Treason"
        assert error(await join(cb, room, "again"))[1] == "forbidden"
        assert error(await admin(ca, room, admin_item(affiliation="outcast", jid=a.jid)))[:2] == (
            "cancel", "conflict")
        assert (await admin(ca, room, admin_item(affiliation="admin", jid=c.jid)))["type"] == "result"
        r = await admin(cc, room, admin_item(affiliation="outcast", jid=a.jid))
        assert error(r)[:2] == ("cancel", "not-allowed")
        assert (await admin(cc, room, admin_item(affiliation="none", jid=b.jid)))["type"] == "result"
        await join_ok(cb, room, "cambridge")
    run(go())


def test_membership_grant_revoke_and_member_list(server, accounts):
    """§9.3-9.5: granting membership pushes presence with affiliation member;
    in a members-only room revoking it removes the occupant with 321 and a
    new member is invited by the room; the member list carries the reserved
    nick; members may read it in a non-anonymous room only."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cc = await connect(server, a), await connect(server, c)
        cb = await connect(server, b, presence=0)  # available: invitations go to the bare JID
        await create(ca, room, "o", {"membersonly": "1"})
        r = await admin(ca, room, admin_item(affiliation="member", jid=b.jid, nick="thirdwitch"))
        assert r["type"] == "result"
        inv = await cb.next_message(pred=lambda m: m.xml.find(q(NS_USER, "x")) is not None)
        assert str(inv["from"]) == room
        assert inv.xml.find(q(NS_USER, "x")).find(q(NS_USER, "invite")).get("from") == a.jid
        await join_ok(cb, room, "thirdwitch")
        r = await admin(ca, room, admin_item(affiliation="member"), type_="get")
        assert items_of(r) == [{"affiliation": "member", "jid": b.jid, "nick": "thirdwitch"}]
        # semi-anonymous: a member may not read the list
        assert error(await admin(cb, room, admin_item(affiliation="member"), type_="get"))[1] == "forbidden"
        assert (await configure(ca, room, {"whois": "anyone"}))["type"] == "result"
        assert (await admin(cb, room, admin_item(affiliation="member"), type_="get"))["type"] == "result"
        # a member may not edit the list
        r = await admin(cb, room, admin_item(affiliation="member", jid=c.jid))
        assert error(r)[:2] == ("auth", "forbidden")
        r = await admin(ca, room, admin_item(affiliation="none", jid=b.jid))
        assert r["type"] == "result"
        for who in (cb, ca):
            p = await presence_from(who, room + "/thirdwitch", lambda p: p["type"] == "unavailable")
            assert 321 in codes(p)
    run(go())


def test_membership_push_in_open_room(server, accounts):
    """§9.3: in an open room a member added while present gets a presence push
    with affiliation member (no invitation); §9.4: removal pushes none."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        assert (await admin(ca, room, admin_item(affiliation="member", jid=b.jid)))["type"] == "result"
        p = await presence_from(ca, room + "/b", lambda p: item(p)["affiliation"] == "member")
        assert p["type"] == "available"
        assert (await admin(ca, room, admin_item(affiliation="none", jid=b.jid)))["type"] == "result"
        p = await presence_from(cb, room + "/b", lambda p: item(p)["affiliation"] == "none")
        assert p["type"] == "available" and 110 in codes(p)
    run(go())


def test_admin_and_owner_lists(server, accounts):
    """§10.3-10.8: an owner grants admin (push: affiliation admin, role
    moderator) and owner; an admin may not edit the admin list
    (<forbidden/>); the last owner may not step down (<conflict/>), one of two
    may; a change for someone absent is told to the room."""
    a, b, c, d = accounts(4)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o", {"whois": "anyone"})
        await join_ok(cb, room, "b")
        assert (await admin(ca, room, admin_item(affiliation="admin", jid=b.jid)))["type"] == "result"
        p = await presence_from(cb, room + "/b", lambda p: item(p)["affiliation"] == "admin")
        assert item(p)["role"] == "moderator"
        r = await admin(cb, room, admin_item(affiliation="admin", jid=c.jid))
        assert error(r)[:2] == ("auth", "forbidden")
        r = await admin(ca, room, admin_item(affiliation="none", jid=a.jid))
        assert error(r)[:2] == ("cancel", "conflict")
        # someone not in the room: the room hears of it
        assert (await admin(ca, room, admin_item(affiliation="owner", jid=d.jid)))["type"] == "result"
        m = await message_from(cb, room, lambda m: item(m) is not None)
        assert item(m) == {"affiliation": "owner", "jid": d.jid, "role": "none"}
        r = await admin(ca, room, admin_item(affiliation="owner"), type_="get")
        assert sorted(i["jid"] for i in items_of(r)) == sorted([a.jid, d.jid])
        r = await admin(cb, room, admin_item(affiliation="admin"), type_="get")
        assert [i["jid"] for i in items_of(r)] == [b.jid]  # non-anonymous: readable
        # with another owner, stepping down is allowed
        assert (await admin(ca, room, admin_item(affiliation="admin", jid=a.jid)))["type"] == "result"
        p = await presence_from(cb, room + "/o", lambda p: item(p)["affiliation"] == "admin")
        assert item(p)["role"] == "moderator"
        # a non-owner may not configure any more
        r = await configure(ca, room, {"roomname": "x"})
        assert error(r)[:2] == ("auth", "forbidden")
    run(go())


def test_owner_and_admin_lists_in_config_form(server, accounts):
    """§10.1.3, §10.2: muc#roomconfig_roomowners and _roomadmins are full
    lists: people added get the affiliation (pushed when present), people
    left out lose it; an empty owner list is <not-acceptable/>."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        r = await configure(ca, room, {"roomowners": [a.jid], "roomadmins": [b.jid, c.jid]})
        assert r["type"] == "result"
        p = await presence_from(cb, room + "/b", lambda p: item(p)["affiliation"] == "admin")
        assert item(p)["role"] == "moderator"
        r = await admin(ca, room, admin_item(affiliation="admin"), type_="get")
        assert sorted(i["jid"] for i in items_of(r)) == sorted([b.jid, c.jid])
        r = await configure(ca, room, {"roomadmins": [c.jid]})
        assert r["type"] == "result"
        p = await presence_from(cb, room + "/b", lambda p: item(p)["affiliation"] == "none")
        assert item(p)["role"] == "participant"
        assert error(await configure(ca, room, {"roomowners": []}))[1] == "not-acceptable"
    run(go())


def test_service_admin_owns_every_room(server, accounts):
    """The admins option: a service admin is an owner of every room (it may
    configure a room it did not create) and no owner can remove that."""
    a, = accounts(1)
    room = room_jid()
    server.adduser("%s@localhost" % ADMIN, "admin-pass-1")

    class Adm:
        jid, password = "%s@localhost" % ADMIN, "admin-pass-1"

    async def go():
        ca, cadm = await connect(server, a), await connect(server, Adm)
        await create(ca, room, "o")
        p = await join_ok(cadm, room, "root")
        assert item(p)["affiliation"] == "owner" and item(p)["role"] == "moderator"
        assert (await configure(cadm, room, {"roomname": "taken over"}))["type"] == "result"
        r = await admin(ca, room, admin_item(affiliation="outcast", jid=Adm.jid))
        assert error(r)[:2] == ("cancel", "not-allowed")
    run(go())


# ---- voice requests (§7.13, §8.6) ------------------------------------------------------------

def test_voice_request_and_approval(server, accounts):
    """§7.13: a visitor asks for voice with a muc#request form; §8.6: every
    moderator gets the approval form (with the visitor's nick and JID), and
    approving it makes the visitor a participant. A participant's request is
    refused; a non-moderator's approval is <forbidden/>."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "mod", {"moderatedroom": "1"})
        await join_ok(cb, room, "thirdwitch")
        ask = submit_form({"muc#role": "participant"}, form_type=NS_REQUEST)
        cb.send_raw("<message to='%s'>%s</message>" % (room, ask))
        m = await message_from(ca, room, lambda m: m.xml.find(q(NS_DATA, "x")) is not None)
        x = m.xml.find(q(NS_DATA, "x"))
        assert x.get("type") == "form"
        vals = form_values(x)
        assert vals["FORM_TYPE"] == [NS_REQUEST] and vals["muc#roomnick"] == ["thirdwitch"]
        assert vals["muc#jid"] == [str(cb.boundjid)] and vals["muc#request_allow"] == ["false"]
        # a non-moderator cannot approve
        await join_ok(cc, room, "other")
        approve = submit_form({"muc#role": "participant", "muc#jid": str(cb.boundjid),
                               "muc#roomnick": "thirdwitch", "muc#request_allow": "true"},
                              form_type=NS_REQUEST)
        cc.send_raw("<message to='%s'>%s</message>" % (room, approve))
        e = await message_from(cc, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("auth", "forbidden")
        ca.send_raw("<message to='%s'>%s</message>" % (room, approve))
        p = await presence_from(cb, room + "/thirdwitch",
                                lambda p: item(p) and item(p)["role"] == "participant")
        assert 110 in codes(p)
        cb.send_raw("<message to='%s'>%s</message>" % (room, ask))
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("cancel", "not-allowed")
    run(go())


# ---- registration and reserved nicks (§7.10, §7.12) ---------------------------------------------

def test_register_with_room_and_reserved_nick(server, accounts):
    """§7.10: the registration form (muc#register), registering makes a member
    with a reserved nick, asking again says registered with the username;
    §7.12: x-roomuser-item returns it; another user may not take the nick
    (<conflict/>), nor register it; XEP-0077 remove unregisters."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o")
        r = await iq_ok(cb, room, "<query xmlns='%s'/>" % NS_REGISTER)
        x = r.xml.find(q(NS_REGISTER, "query")).find(q(NS_DATA, "x"))
        assert form_values(x)["FORM_TYPE"] == [NS_REGISTER_FORM]
        assert "muc#register_roomnick" in form_values(x)
        form = submit_form({"muc#register_roomnick": "thirdwitch"}, form_type=NS_REGISTER_FORM)
        assert (await iq(cb, room, "<query xmlns='%s'>%s</query>" % (NS_REGISTER, form), "set"))["type"] == "result"
        r = await iq_ok(cb, room, "<query xmlns='%s'/>" % NS_REGISTER)
        qq = r.xml.find(q(NS_REGISTER, "query"))
        assert qq.find(q(NS_REGISTER, "registered")) is not None
        assert qq.find(q(NS_REGISTER, "username")).text == "thirdwitch"
        r = await iq_ok(cb, room, "<query xmlns='%s' node='x-roomuser-item'/>" % NS_DISCO_INFO)
        ident = r.xml.find(q(NS_DISCO_INFO, "query")).find(q(NS_DISCO_INFO, "identity"))
        assert ident.get("name") == "thirdwitch"
        r = await iq_ok(cc, room, "<query xmlns='%s' node='x-roomuser-item'/>" % NS_DISCO_INFO)
        assert list(r.xml.find(q(NS_DISCO_INFO, "query"))) == []
        assert error(await join(cc, room, "thirdwitch"))[:2] == ("cancel", "conflict")
        r = await iq(cc, room, "<query xmlns='%s'>%s</query>" % (NS_REGISTER, form), "set")
        assert error(r)[:2] == ("cancel", "conflict")
        p = await join_ok(cb, room, "thirdwitch")
        assert item(p)["affiliation"] == "member"
        r = await iq(cb, room, "<query xmlns='%s'><remove/></query>" % NS_REGISTER, "set")
        assert r["type"] == "result"
        p = await presence_from(ca, room + "/thirdwitch", lambda p: item(p)["affiliation"] == "none")
        r = await iq(cb, room, "<query xmlns='%s'/>" % NS_REGISTER, "set")
        assert error(r)[:2] == ("modify", "bad-request")
    run(go())


def approval_form(m):
    """The §9.9 muc#register approval form of a message, as {var: [values]}
    (None when the message carries none)."""
    x = m.xml.find(q(NS_DATA, "x"))
    return form_values(x) if x is not None and x.get("type") == "form" else None


async def register(c, room, nick):
    form = submit_form({"muc#register_roomnick": nick}, form_type=NS_REGISTER_FORM)
    return await iq(c, room, "<query xmlns='%s'>%s</query>" % (NS_REGISTER, form), "set")


def decide(c, room, user, allow, nick="thirdwitch"):
    c.send_raw("<message to='%s'>%s</message>" % (room, submit_form(
        {"muc#jid": user, "muc#register_roomnick": nick, "muc#register_allow": "1" if allow else "0"},
        form_type=NS_REGISTER_FORM)))


async def quiet_messages(c, room):
    """Messages from room received during a quiet period."""
    await asyncio.sleep(xmpptest.QUIET_PERIOD)
    got = []
    while not c.messages.empty():
        m = c.messages.get_nowait()
        if str(m["from"]).split("/")[0] == room:
            got.append(m)
    return got


def test_register_with_members_only_room_needs_approval(server, accounts):
    """§7.10 and §9.9: in a members-only room a registration request is
    received (result) but makes no member: every admin and owner gets a
    muc#register approval form (muc#jid, nick, muc#register_allow false)
    at their bare JID; the same request again sends nothing new, another
    nick while one waits is a <conflict/>, another user may not request the
    waiting nick; a non-admin's approval is <forbidden/>; an admin's
    approval makes a member with the reserved nick, who is invited (§9.5);
    a second approval of the same request is <item-not-found/>."""
    own, adm, b, d = accounts(4)
    room = room_jid()

    async def go():
        # available: the approval forms and invitations go to bare JIDs
        co, ca, cb, cd = (await connect(server, own, presence=0), await connect(server, adm, presence=0),
                          await connect(server, b, presence=0), await connect(server, d))
        await create(co, room, "o", {"membersonly": "1"})
        assert (await admin(co, room, admin_item(affiliation="admin", jid=adm.jid)))["type"] == "result"
        r = await iq_ok(cb, room, "<query xmlns='%s'/>" % NS_REGISTER)
        x = r.xml.find(q(NS_REGISTER, "query")).find(q(NS_DATA, "x"))
        assert form_values(x)["FORM_TYPE"] == [NS_REGISTER_FORM]

        assert (await register(cb, room, "thirdwitch"))["type"] == "result"
        for c in (co, ca):
            m = await message_from(c, room, lambda m: approval_form(m) is not None)
            f = approval_form(m)
            assert f["FORM_TYPE"] == [NS_REGISTER_FORM]
            assert f["muc#jid"] == [b.jid] and f["muc#register_roomnick"] == ["thirdwitch"]
            assert f["muc#register_allow"] == ["0"]
            assert m["body"]
        # not a member until approved
        assert error(await join(cb, room, "thirdwitch"))[:2] == ("auth", "registration-required")
        assert (await register(cb, room, "thirdwitch"))["type"] == "result"
        assert error(await register(cb, room, "otherwitch"))[:2] == ("cancel", "conflict")
        assert error(await register(cd, room, "thirdwitch"))[:2] == ("cancel", "conflict")
        assert await quiet_messages(co, room) == []

        decide(cd, room, b.jid, True)
        m = await message_from(cd, room, lambda m: m["type"] == "error")
        assert error(m)[:2] == ("auth", "forbidden")

        decide(ca, room, b.jid, True)
        inv = await message_from(cb, room, lambda m: m.xml.find(q(NS_USER, "x")) is not None)
        assert inv.xml.find(q(NS_USER, "x")).find(q(NS_USER, "invite")).get("from") == adm.jid
        p = await join_ok(cb, room, "thirdwitch")
        assert item(p)["affiliation"] == "member"
        r = await iq_ok(cb, room, "<query xmlns='%s'/>" % NS_REGISTER)
        assert r.xml.find(q(NS_REGISTER, "query")).find(q(NS_REGISTER, "username")).text == "thirdwitch"
        r = await admin(co, room, admin_item(affiliation="member"), type_="get")
        assert [(i["jid"], i.get("nick")) for i in items_of(r)] == [(b.jid, "thirdwitch")]

        decide(co, room, b.jid, True)
        m = await message_from(co, room, lambda m: m["type"] == "error")
        assert error(m)[:2] == ("cancel", "item-not-found")
    run(go())


def test_register_denied_cancelled_and_banned(server, accounts):
    """§9.9: an approval form submitted with muc#register_allow false denies
    the request (no member; the request is gone: a later approval is
    <item-not-found/>); a cancelled form leaves it waiting; the user may
    withdraw a waiting request with XEP-0077 <remove/>; after a denial or a
    withdrawal, asking again at once is <resource-constraint/> (wait), so
    the admins cannot be flooded; an approval without
    muc#jid is <bad-request/>; an outcast may not register (<not-allowed/>);
    a room that does not exist answers <item-not-found/>."""
    own, b, c, e = accounts(4)
    room = room_jid()

    async def go():
        co, cb, cc, ce = (await connect(server, own, presence=0), await connect(server, b),
                          await connect(server, c), await connect(server, e))
        await create(co, room, "o", {"membersonly": "1"})
        assert (await register(cb, room, "bee"))["type"] == "result"
        await message_from(co, room, lambda m: approval_form(m) is not None)
        co.send_raw("<message to='%s'>%s</message>" % (room, submit_form({}, NS_REGISTER_FORM, "cancel")))
        decide(co, room, b.jid, False)
        assert [m for m in await quiet_messages(co, room) if m["type"] == "error"] == []
        assert error(await join(cb, room, "bee"))[:2] == ("auth", "registration-required")
        decide(co, room, b.jid, True)
        m = await message_from(co, room, lambda m: m["type"] == "error")
        assert error(m)[:2] == ("cancel", "item-not-found")
        # a denied user may not ask again at once (no flooding the admins)
        assert error(await register(cb, room, "bee"))[:2] == ("wait", "resource-constraint")
        assert await quiet_messages(co, room) == []

        assert (await register(cc, room, "sea"))["type"] == "result"
        await message_from(co, room, lambda m: approval_form(m) is not None)
        r = await iq(cc, room, "<query xmlns='%s'><remove/></query>" % NS_REGISTER, "set")
        assert r["type"] == "result"
        r = await iq(cc, room, "<query xmlns='%s'><remove/></query>" % NS_REGISTER, "set")
        assert error(r)[:2] == ("cancel", "item-not-found")
        decide(co, room, c.jid, True, nick="sea")
        m = await message_from(co, room, lambda m: m["type"] == "error")
        assert error(m)[:2] == ("cancel", "item-not-found")
        assert error(await register(cc, room, "sea"))[:2] == ("wait", "resource-constraint")

        co.send_raw("<message to='%s'>%s</message>" % (room, submit_form(
            {"muc#register_allow": "1"}, form_type=NS_REGISTER_FORM)))
        m = await message_from(co, room, lambda m: m["type"] == "error")
        assert error(m)[:2] == ("modify", "bad-request")

        assert (await admin(co, room, admin_item(affiliation="outcast", jid=e.jid)))["type"] == "result"
        assert error(await iq(ce, room, "<query xmlns='%s'/>" % NS_REGISTER))[:2] == ("cancel", "not-allowed")
        assert error(await register(ce, room, "eve"))[:2] == ("cancel", "not-allowed")
        assert error(await iq(cb, room_jid(), "<query xmlns='%s'/>" % NS_REGISTER))[1] == "item-not-found"
    run(go())
