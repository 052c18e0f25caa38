"""Multi-user chat (XEP-0045), occupant and owner use cases, on the room
service mod_muc serves at conference.localhost (a domain of its own, not a
host: xmppd_domain_serve).

Each test names the XEP-0045 section it checks, creates its own accounts
and rooms, and asserts what every party receives (or, for "nothing", a
bounded quiet period). Stanzas are sent as raw XML through slixmpp clients
so the test shows the protocol; slixmpp's own xep_0045 plugin is used where
a client library's view matters (test_slixmpp_plugin_*).
"""

import pytest

from muc_util import (MUC, NS_DATA, NS_DELAY, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_OWNER,
                      NS_USER, bare, codes, configure, create, drain, error, form_values, groupchat,
                      iq, iq_ok, item, join, join_ok, leave, message_from, occupant_id,
                      presence_from, q, quiet_presences, room_jid)
from xmpptest import connect, run


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"muc": {"max_occupants": 50}, "disco": {}, "roster": {}, "presence": {}}}


# ---- entering (§7.2) -----------------------------------------------------------------

def test_create_instant_room_codes_and_lock(server, accounts):
    """§10.1.1, §10.1.2: the first presence creates the room (110, 201, owner,
    moderator); it stays locked (item-not-found for others, §7.2.10) until the
    owner accepts the default configuration."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        p = await join_ok(ca, room, "first")
        assert {110, 201} <= codes(p)
        assert item(p)["affiliation"] == "owner" and item(p)["role"] == "moderator"
        r = await join(cb, room, "second")
        assert r["type"] == "error" and error(r)[:2] == ("cancel", "item-not-found")
        assert error(r)[2] == room  # the room generated the error
        assert (await configure(ca, room))["type"] == "result"
        p2 = await join_ok(cb, room, "second")
        assert codes(p2) == {110}
        assert item(p2)["affiliation"] == "none" and item(p2)["role"] == "participant"
    run(go())


def test_join_order_roster_self_history_subject(server, accounts):
    """§7.1, §7.2.2: others' presence, then self-presence (110), then history,
    then the subject (an empty <subject/> when none is set)."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "anne")
        await join_ok(cb, room, "ben")
        groupchat(ca, room, "before carl")
        await message_from(cb, room, lambda m: m["body"] == "before carl")
        drain(cc)
        cc.send_raw("<presence to='%s/carl'><x xmlns='%s'/></presence>" % (room, NS_MUC))
        seen = []
        while True:
            p = await cc.next_presence(pred=lambda p: bare(p["from"]) == room)
            seen.append(p["from"].resource)
            if 110 in codes(p):
                break
        assert sorted(seen[:-1]) == ["anne", "ben"] and seen[-1] == "carl"
        hist = await message_from(cc, room)
        assert hist["body"] == "before carl"
        assert hist.xml.find(q(NS_DELAY, "delay")).get("from") == room
        subj = await message_from(cc, room)
        el = subj.xml.find("{jabber:client}subject")
        assert el is not None and not (el.text or "") and subj["body"] == ""
    run(go())


def test_join_without_nick_is_jid_malformed(server, accounts):
    """§7.2.1: presence to the bare room JID gets <jid-malformed/>."""
    a, = accounts(1)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        ca.send_raw("<presence to='%s'><x xmlns='%s'/></presence>" % (room, NS_MUC))
        p = await ca.next_presence(pred=lambda p: bare(p["from"]) == room)
        assert p["type"] == "error" and error(p)[:2] == ("modify", "jid-malformed")
        # the error echoes the MUC extension (§7.2.5 examples)
        assert p.xml.find(q(NS_MUC, "x")) is not None
    run(go())


def test_nick_conflict_and_invisible_nick(server, accounts):
    """§7.2.8: a nick in use by another user is <conflict/>; §17.1: a nick of
    spaces only is refused."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "taken")
        r = await join(cb, room, "taken")
        assert error(r)[:2] == ("cancel", "conflict")
        r = await join(cb, room, "   ")
        assert r["type"] == "error" and error(r)[1] == "jid-malformed"
    run(go())


def test_password_protected_room(server, accounts):
    """§7.2.5: no or a wrong password is <not-authorized/>; the right one
    enters."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o", {"passwordprotectedroom": "1", "roomsecret": "cauldronburn"})
        assert error(await join(cb, room, "b"))[:2] == ("auth", "not-authorized")
        assert error(await join(cb, room, "b", password="wrong"))[:2] == ("auth", "not-authorized")
        await join_ok(cb, room, "b", password="cauldronburn")
        info = await iq_ok(cb, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        assert "muc_passwordprotected" in features(info)
    run(go())


def features(info):
    return {f.get("var") for f in info.xml.find(q(NS_DISCO_INFO, "query")).findall(q(NS_DISCO_INFO, "feature"))}


def test_password_required_without_password_is_refused(server, accounts):
    """§10.1.3: a configuration that violates policy (a password-protected
    room without a password) is <not-acceptable/>; a malformed value is
    <bad-request/>."""
    a, = accounts(1)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        await join_ok(ca, room, "o")
        r = await configure(ca, room, {"passwordprotectedroom": "1"})
        assert error(r)[:2] == ("modify", "not-acceptable")
        r = await configure(ca, room, {"moderatedroom": "perhaps"})
        assert error(r)[:2] == ("modify", "bad-request")
        r = await configure(ca, room, {"maxusers": "51"})  # above max_occupants
        assert error(r)[:2] == ("modify", "not-acceptable")
    run(go())


def test_members_only_room(server, accounts):
    """§7.2.6: a non-member gets <registration-required/>; a member enters."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o", {"membersonly": "1"})
        assert error(await join(cb, room, "b"))[:2] == ("auth", "registration-required")
        from muc_util import admin, admin_item
        assert (await admin(ca, room, admin_item(affiliation="member", jid=c.jid)))["type"] == "result"
        p = await join_ok(cc, room, "c")
        assert item(p)["affiliation"] == "member"
    run(go())


def test_banned_user_cannot_enter(server, accounts):
    """§7.2.7: an outcast gets <forbidden/>."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        from muc_util import admin, admin_item
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        assert (await admin(ca, room, admin_item(affiliation="outcast", jid=b.jid)))["type"] == "result"
        assert error(await join(cb, room, "b"))[:2] == ("auth", "forbidden")
    run(go())


def test_max_users_and_owner_beyond_it(server, accounts):
    """§7.2.9: a full room answers <service-unavailable/> of type wait; an
    owner may still enter (a reasonable number beyond)."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o", {"maxusers": "2"})
        await join_ok(cb, room, "b")
        assert error(await join(cc, room, "c"))[:2] == ("wait", "service-unavailable")
        # the owner from a second resource, as a second occupant
        ca2 = await connect(server, a, resource="second")
        await join_ok(ca2, room, "o2")
    run(go())


def test_non_anonymous_and_semi_anonymous(server, accounts):
    """§7.2.3, §7.2.4: in a non-anonymous room everyone sees full JIDs and the
    joiner gets 100; in a semi-anonymous room only moderators see them."""
    a, b, c = accounts(3)
    semi, nonanon = room_jid(), room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, semi, "o")
        await create(ca, nonanon, "o", {"whois": "anyone"})
        await join_ok(cb, semi, "b")
        p = await join_ok(cc, semi, "c")
        assert 100 not in codes(p)
        # the participant b sees c's presence without a jid, the owner with one
        pb = await presence_from(cb, semi + "/c")
        assert "jid" not in item(pb)
        pa = await presence_from(ca, semi + "/c")
        assert item(pa)["jid"] == str(cc.boundjid)
        p = await join_ok(cb, nonanon, "b")
        assert 100 in codes(p)
        p = await join_ok(cc, nonanon, "c")
        pb = await presence_from(cb, nonanon + "/c")
        assert item(pb)["jid"] == str(cc.boundjid)
        info = await iq_ok(cc, nonanon, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        assert "muc_nonanonymous" in features(info)
    run(go())


def test_presence_without_muc_x_from_non_occupant_is_kicked(server, accounts):
    """§7.2.18 (1.32): presence without the MUC extension from someone not in
    the room gets an explicit kick with 110, 307 and 333."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        cb.send_raw("<presence to='%s/b'/>" % room)
        p = await presence_from(cb, room + "/b")
        assert p["type"] == "unavailable" and codes(p) == {110, 307, 333}
        assert item(p)["role"] == "none"
        assert await quiet_presences(ca, room, 0.3) == []  # nobody saw a join
    run(go())


def test_resync_join_resends_everything(server, accounts):
    """§17.3 rule 3: a join from a client already in the room is a resync:
    roster, self-presence, history and subject again."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        drain(cb)
        p = await join_ok(cb, room, "b")
        assert 110 in codes(p) and 201 not in codes(p)
        await message_from(cb, room, lambda m: m.xml.find("{jabber:client}subject") is not None)
    run(go())


# ---- nickname, availability, exit (§7.6, §7.7, §7.14) ----------------------------------

def test_nick_change_303(server, accounts):
    """§7.6: unavailable from the old nick with 303 and the new nick, then
    available from the new one, to everyone (110 for the changer)."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "thirdwitch")
        cb.send_raw("<presence to='%s/oldhag'/>" % room)
        for c, self_ in ((cb, True), (ca, False)):
            out = await presence_from(c, room + "/thirdwitch", lambda p: p["type"] == "unavailable")
            assert 303 in codes(out) and item(out)["nick"] == "oldhag"
            assert (110 in codes(out)) == self_
            new = await presence_from(c, room + "/oldhag")
            assert new["type"] == "available" and (110 in codes(new)) == self_
    run(go())


def test_nick_change_conflict(server, accounts):
    """§7.6: changing to a nick in use is <conflict/>."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        cb.send_raw("<presence to='%s/o'/>" % room)
        p = await presence_from(cb, room + "/o", lambda p: p["type"] == "error")
        assert error(p)[:2] == ("cancel", "conflict")
    run(go())


def test_status_change_broadcast(server, accounts):
    """§7.7: a presence update reaches every occupant with the item."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        cb.send_raw("<presence to='%s/b'><show>xa</show><status>goblins</status></presence>" % room)
        p = await presence_from(ca, room + "/b", lambda p: p["show"] == "xa")
        assert p["status"] == "goblins" and item(p)["role"] == "participant"
    run(go())


def test_exit_room(server, accounts):
    """§7.14: unavailable with 110 to the leaver, role none to the others, with
    the custom status; a temporary room goes with its last occupant."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        leave(cb, room, "b", "gone where the goblins go")
        mine = await presence_from(cb, room + "/b", lambda p: p["type"] == "unavailable")
        assert 110 in codes(mine) and item(mine)["role"] == "none"
        theirs = await presence_from(ca, room + "/b", lambda p: p["type"] == "unavailable")
        assert 110 not in codes(theirs) and theirs["status"] == "gone where the goblins go"
        leave(ca, room, "o")
        await presence_from(ca, room + "/o", lambda p: p["type"] == "unavailable")
        # the temporary room is gone: disco says item-not-found
        r = await iq(cb, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        assert error(r)[1] == "item-not-found"
    run(go())


def test_disconnect_removes_occupant(server, accounts):
    """§7.14: a client that goes offline leaves its rooms (its server sends
    unavailable; here the session's end removes it at once)."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        cb.abort()
        p = await presence_from(ca, room + "/b", lambda p: p["type"] == "unavailable")
        assert item(p)["role"] == "none"
    run(go())


# ---- messages (§7.4, §7.5, §8.1) -----------------------------------------------------------

def test_groupchat_reflection_stable_id_and_stanza_id(server, accounts):
    """§7.4: the message comes back to everyone from the occupant JID with the
    sender's id; XEP-0359: a room stanza-id, the same for everyone; a
    stanza-id the sender claimed in the room's name is dropped."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        groupchat(cb, room, "harpier", id_="hysf1v37",
                  extra="<stanza-id xmlns='urn:xmpp:sid:0' id='fake' by='%s'/>" % room)
        got = []
        for c in (ca, cb):
            m = await message_from(c, room, lambda m: m["body"] == "harpier")
            assert str(m["from"]) == room + "/b" and m["id"] == "hysf1v37" and m["type"] == "groupchat"
            ids = [e.get("id") for e in m.xml.findall(q("urn:xmpp:sid:0", "stanza-id"))]
            assert len(ids) == 1 and ids[0] != "fake"
            got.append(ids[0])
        assert got[0] == got[1]
    run(go())


def test_groupchat_from_non_occupant_and_wrong_type(server, accounts):
    """§7.4: a non-occupant gets <not-acceptable/>; §17.2 rule 1: a message to
    the room that is not groupchat gets <bad-request/>; §17.2 rule 3: a room
    that does not exist gets <item-not-found/>."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        groupchat(cb, room, "hi")
        m = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(m)[:2] == ("cancel", "not-acceptable")
        await join_ok(cb, room, "b")
        cb.send_raw("<message to='%s' type='chat'><body>x</body></message>" % room)
        m = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(m)[:2] == ("modify", "bad-request")
        groupchat(cb, room_jid(), "nobody home")
        m = await cb.next_message(pred=lambda m: m["type"] == "error")
        assert error(m)[1] == "item-not-found"
    run(go())


def test_subject(server, accounts):
    """§8.1: a moderator sets the subject (reflected from its occupant JID);
    a participant may not (<forbidden/>) unless changesubject; a joiner gets
    the subject last with a delay from the room (§7.2.15)."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        ca.send_raw("<message to='%s' type='groupchat'><subject>Fire Burn</subject></message>" % room)
        m = await message_from(cb, room, lambda m: m["subject"] == "Fire Burn")
        assert str(m["from"]) == room + "/o"
        cb.send_raw("<message to='%s' type='groupchat'><subject>Mine</subject></message>" % room)
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("auth", "forbidden")
        drain(cc)
        await join_ok(cc, room, "c")
        s = await message_from(cc, room, lambda m: m["subject"] == "Fire Burn")
        d = s.xml.find(q(NS_DELAY, "delay"))
        assert d is not None and d.get("from") == room
        assert (await configure(ca, room, {"changesubject": "1"}))["type"] == "result"
        cb.send_raw("<message to='%s' type='groupchat'><subject>Mine</subject></message>" % room)
        await message_from(cc, room, lambda m: m["subject"] == "Mine")
    run(go())


def test_private_messages(server, accounts):
    """§7.5: a private message reaches the occupant from the sender's occupant
    JID with <x xmlns=muc#user/>; type groupchat is <bad-request/>, an unknown
    nick <item-not-found/>, a non-occupant <not-acceptable/>; with allowpm
    none, <not-allowed/>."""
    a, b, c = accounts(3)
    room = room_jid()

    async def go():
        ca, cb, cc = await connect(server, a), await connect(server, b), await connect(server, c)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        cb.send_raw("<message to='%s/o' type='chat'><body>psst</body></message>" % room)
        m = await message_from(ca, room, lambda m: m["body"] == "psst")
        assert str(m["from"]) == room + "/b" and m["type"] == "chat"
        assert m.xml.find(q(NS_USER, "x")) is not None
        assert occupant_id(m)
        cb.send_raw("<message to='%s/o' type='groupchat'><body>x</body></message>" % room)
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("modify", "bad-request")
        cb.send_raw("<message to='%s/nobody' type='chat'><body>x</body></message>" % room)
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("cancel", "item-not-found")
        cc.send_raw("<message to='%s/o' type='chat'><body>x</body></message>" % room)
        e = await message_from(cc, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("cancel", "not-acceptable")
        assert (await configure(ca, room, {"allowpm": "none"}))["type"] == "result"
        cb.send_raw("<message to='%s/o' type='chat'><body>x</body></message>" % room)
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("cancel", "not-allowed")
    run(go())


def test_multi_session_nick(server, accounts):
    """§7.2.8: the same user may enter with the same nick from two resources;
    groupchat and private messages reach both; one leaving keeps the nick."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        b1, b2 = await connect(server, b, resource="one"), await connect(server, b, resource="two")
        await create(ca, room, "o")
        await join_ok(b1, room, "bee")
        await join_ok(b2, room, "bee")
        ca.send_raw("<message to='%s/bee' type='chat'><body>both?</body></message>" % room)
        for c in (b1, b2):
            await message_from(c, room, lambda m: m["body"] == "both?")
        groupchat(ca, room, "all")
        for c in (b1, b2):
            await message_from(c, room, lambda m: m["body"] == "all")
        drain(ca)
        leave(b1, room, "bee")
        await presence_from(b1, room + "/bee", lambda p: p["type"] == "unavailable")
        assert [p for p in await quiet_presences(ca, room, 0.5) if p["type"] == "unavailable"] == []
        groupchat(b2, room, "still here")
        await message_from(ca, room, lambda m: m["body"] == "still here")
    run(go())


# ---- creation, configuration, destruction (§10) ------------------------------------------

def test_reserved_room_configuration(server, accounts):
    """§10.1.3: the owner asks for the form, gets the muc#roomconfig fields
    with their current values, submits, and the room takes them (disco shows
    the name and the room type features)."""
    a, = accounts(1)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        await join_ok(ca, room, "o")
        r = await iq_ok(ca, room, "<query xmlns='%s'/>" % NS_OWNER)
        x = r.xml.find(q(NS_OWNER, "query")).find(q(NS_DATA, "x"))
        vals = form_values(x)
        assert vals["FORM_TYPE"] == ["http://jabber.org/protocol/muc#roomconfig"]
        for var in ("roomname", "persistentroom", "membersonly", "moderatedroom", "whois",
                    "passwordprotectedroom", "roomsecret", "maxusers", "allowpm", "roomowners"):
            assert "muc#roomconfig_" + var in vals
        assert vals["muc#roomconfig_roomowners"] == [a.jid]
        assert (await configure(ca, room, {"roomname": "A Dark Cave", "moderatedroom": "1",
                                           "publicroom": "0", "roomdesc": "witches"}))["type"] == "result"
        info = await iq_ok(ca, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        ident = info.xml.find(q(NS_DISCO_INFO, "query")).find(q(NS_DISCO_INFO, "identity"))
        assert ident.get("name") == "A Dark Cave" and ident.get("category") == "conference"
        f = features(info)
        assert {"muc_moderated", "muc_hidden", "muc_temporary", "muc_open", "muc_semianonymous",
                "muc_unsecured", "http://jabber.org/protocol/muc"} <= f
        rx = info.xml.find(q(NS_DISCO_INFO, "query")).find(q(NS_DATA, "x"))
        rv = form_values(rx)
        assert rv["FORM_TYPE"] == ["http://jabber.org/protocol/muc#roominfo"]
        assert rv["muc#roominfo_description"] == ["witches"]
        assert rv["muc#roominfo_occupants"] == ["1"]
    run(go())


def test_cancel_initial_configuration_destroys_room(server, accounts):
    """§10.1.3: cancelling the first configuration destroys the room (the
    owner gets unavailable with <destroy/>)."""
    a, = accounts(1)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        await join_ok(ca, room, "o")
        r = await iq(ca, room, "<query xmlns='%s'><x xmlns='%s' type='cancel'/></query>"
                     % (NS_OWNER, NS_DATA), "set")
        assert r["type"] == "result"
        p = await presence_from(ca, room + "/o", lambda p: p["type"] == "unavailable")
        assert user_destroy(p) is not None
        r = await iq(ca, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        assert error(r)[1] == "item-not-found"
    run(go())


def user_destroy(p):
    from muc_util import user_x
    x = user_x(p)
    return x.find(q(NS_USER, "destroy")) if x is not None else None


def test_configuration_only_by_owner(server, accounts):
    """§10.2: a non-owner asking for or submitting the form gets <forbidden/>."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        r = await iq(cb, room, "<query xmlns='%s'/>" % NS_OWNER)
        assert error(r)[:2] == ("auth", "forbidden")
        assert error(await configure(cb, room, {"roomname": "mine"}))[:2] == ("auth", "forbidden")
    run(go())


def test_configuration_change_notices(server, accounts):
    """§10.2.1: occupants are told of a change: 172 when the room becomes
    non-anonymous, 173 when it becomes semi-anonymous, 104 for others."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        for fields, code in (({"whois": "anyone"}, 172), ({"whois": "moderators"}, 173),
                             ({"roomname": "renamed"}, 104)):
            assert (await configure(ca, room, fields))["type"] == "result"
            m = await message_from(cb, room, lambda m: codes(m))
            assert codes(m) == {code} and str(m["from"]) == room
    run(go())


def test_members_only_switch_removes_non_members(server, accounts):
    """§10.2: when the room becomes members-only, non-members are removed with
    322 (to them and to everyone)."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        assert (await configure(ca, room, {"membersonly": "1"}))["type"] == "result"
        for c in (cb, ca):
            p = await presence_from(c, room + "/b", lambda p: p["type"] == "unavailable")
            assert 322 in codes(p)
    run(go())


def test_destroy_with_alternate_venue(server, accounts):
    """§10.9: a non-owner gets <forbidden/>; the owner's destroy removes every
    occupant with <destroy jid=.../> and the reason, and the room is gone."""
    a, b = accounts(2)
    room, alt = room_jid(), room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        body = ("<query xmlns='%s'><destroy jid='%s'><reason>Macbeth doth come.</reason>"
                "<password>pw</password></destroy></query>" % (NS_OWNER, alt))
        assert error(await iq(cb, room, body, "set"))[:2] == ("auth", "forbidden")
        assert (await iq(ca, room, body, "set"))["type"] == "result"
        for c, nick in ((cb, "b"), (ca, "o")):
            p = await presence_from(c, "%s/%s" % (room, nick), lambda p: p["type"] == "unavailable")
            d = user_destroy(p)
            assert d is not None and d.get("jid") == alt
            assert d.find(q(NS_USER, "reason")).text == "Macbeth doth come."
        r = await iq(cb, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        assert error(r)[1] == "item-not-found"
    run(go())


# ---- discovery (§6) -----------------------------------------------------------------------

def test_disco_service_and_host_items(server, accounts):
    """§6.1, §6.2: the host lists the service; the service is conference/text
    with the MUC feature."""
    a, = accounts(1)

    async def go():
        ca = await connect(server, a)
        r = await iq_ok(ca, "localhost", "<query xmlns='%s'/>" % NS_DISCO_ITEMS)
        jids = [i.get("jid") for i in r.xml.find(q(NS_DISCO_ITEMS, "query"))]
        assert MUC in jids
        r = await iq_ok(ca, MUC, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        qq = r.xml.find(q(NS_DISCO_INFO, "query"))
        ident = qq.find(q(NS_DISCO_INFO, "identity"))
        assert (ident.get("category"), ident.get("type")) == ("conference", "text")
        assert "http://jabber.org/protocol/muc" in features(r)
        r = await iq(ca, MUC, "<query xmlns='jabber:iq:version'/>")
        assert error(r)[1] == "service-unavailable"
    run(go())


def test_disco_items_public_rooms_with_rsm(server, accounts):
    """§6.3: disco#items lists public rooms, not hidden or locked ones; a
    large list pages with XEP-0059."""
    a, = accounts(1)
    public = sorted(room_jid("pub") for _ in range(3))
    hidden, locked = room_jid("hid"), room_jid("lck")

    async def go():
        ca = await connect(server, a)
        for r in public:
            await create(ca, r, "o", {"roomname": "Room " + r[:5]})
        await create(ca, hidden, "o", {"publicroom": "0"})
        await join_ok(ca, locked, "o")
        r = await iq_ok(ca, MUC, "<query xmlns='%s'/>" % NS_DISCO_ITEMS)
        items = {i.get("jid"): i.get("name") for i in r.xml.find(q(NS_DISCO_ITEMS, "query"))}
        for p in public:
            assert items[p] == "Room " + p[:5]
        assert hidden not in items and locked not in items
        # a page of two, then the page after it
        from muc_util import NS_RSM
        r = await iq_ok(ca, MUC, "<query xmlns='%s'><set xmlns='%s'><max>2</max></set></query>"
                        % (NS_DISCO_ITEMS, NS_RSM))
        qq = r.xml.find(q(NS_DISCO_ITEMS, "query"))
        page = [i.get("jid") for i in qq.findall(q(NS_DISCO_ITEMS, "item"))]
        st = qq.find(q(NS_RSM, "set"))
        assert len(page) == 2 and st.find(q(NS_RSM, "last")).text == page[-1]
        assert int(st.find(q(NS_RSM, "count")).text) >= 3
        r = await iq_ok(ca, MUC, "<query xmlns='%s'><set xmlns='%s'><max>50</max><after>%s</after>"
                        "</set></query>" % (NS_DISCO_ITEMS, NS_RSM, page[-1]))
        rest = [i.get("jid") for i in r.xml.find(q(NS_DISCO_ITEMS, "query")).findall(q(NS_DISCO_ITEMS, "item"))]
        assert not set(rest) & set(page) and all(x > page[-1] for x in rest)
        r = await iq(ca, MUC, "<query xmlns='%s'><set xmlns='%s'><max>-1</max></set></query>"
                     % (NS_DISCO_ITEMS, NS_RSM))
        assert error(r)[:2] == ("modify", "bad-request")
    run(go())


def test_disco_occupant_from_outside_is_bad_request(server, accounts):
    """§6.6: disco of an occupant JID from a non-occupant is <bad-request/>."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        r = await iq(cb, room + "/o", "<query xmlns='%s'/>" % NS_DISCO_INFO)
        assert error(r)[:2] == ("modify", "bad-request")
    run(go())


# ---- slixmpp's client plugin ----------------------------------------------------------------

def test_slixmpp_plugin_join_config_and_roster(server, accounts):
    """A real client library's flow: slixmpp's xep_0045 creates and configures
    a room, another client joins and sees the roster and the history."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        for c in (ca, cb):
            c.register_plugin("xep_0045")
        pres, _subject, _occupants, _hist = await ca["xep_0045"].join_muc_wait(room, "alice", timeout=5)
        assert {110, 201} <= codes(pres)
        form = await ca["xep_0045"].get_room_config(room)
        form.get_fields()["muc#roomconfig_roomname"]["value"] = "Lib Room"
        await ca["xep_0045"].set_room_config(room, form)
        ca.send_message(mto=room, mbody="for the record", mtype="groupchat")
        await message_from(ca, room, lambda m: m["body"] == "for the record")
        pres, _subject, occupants, hist = await cb["xep_0045"].join_muc_wait(room, "bob", maxstanzas=5,
                                                                            timeout=5)
        assert pres["from"].resource == "bob"
        assert "alice" in [o["from"].resource for o in occupants]
        assert [h["body"] for h in hist] == ["for the record"]
        assert "alice" in cb["xep_0045"].get_roster(room)
    run(go())


# ---- xmppctl features (XEP-0479) -----------------------------------------------------------

def test_features_list_group_chat(server):
    """`xmppctl features`: mod_muc implements XEP-0045, 0249, 0410, 0421 and
    0425, which meets XEP-0479's Group Chat row (IM, Server and Advanced)
    and the self-ping part of Advanced Group Chat (whose row stays unmet
    without bookmarks and MAM, which other modules bring)."""
    import json
    j = json.loads(server.ctl("-j", "features").stdout)
    host = j["hosts"][0]
    specs = {s["spec"]: s["by"] for s in host["specs"]}
    for spec in ("XEP-0045", "XEP-0249", "XEP-0410", "XEP-0421", "XEP-0425"):
        assert specs[spec] == ["muc"], spec
    suites = {(s["category"], s["level"]): s for s in host["suites"]}
    for level in ("Server", "Advanced Server"):
        missing = {m["feature"]: m["providers"] for m in suites[("IM", level)]["missing"]}
        assert "Group Chat" not in missing
    adv = {m["feature"]: m["providers"] for m in suites[("IM", "Advanced Server")]["missing"]}
    assert "Advanced Group Chat" in adv
