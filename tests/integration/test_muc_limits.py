"""Group chat limits and service policy: rooms per user, occupants per room,
message rate per occupant, subject and nick length (each with the error
XEP-0045 gives for it), nick lock-down with reserved nicks (code 210), the
lock timeout of unconfigured rooms (§10.1.1), who may create rooms
(§10.1.1), room defaults, multi-session nicks off, and the options checked
at start."""

import asyncio

import pytest

from muc_util import (NS_REGISTER, NS_REGISTER_FORM, codes, configure, create, error, groupchat, iq,
                      item, join, join_ok, message_from, presence_from, room_jid, submit_form)
from xmpptest import connect, run

LIMITS = {"max_rooms_per_user": 2, "max_occupants": 3, "message_rate": 6, "message_burst": 3,
          "max_subject_length": 10, "max_nick_length": 8, "enforce_reserved_nicks": True,
          "lock_timeout": "1s"}


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"muc": LIMITS}}


def test_rooms_per_user(server, accounts):
    """§10.1.1, §14.6: creating a room beyond max_rooms_per_user is
    <not-allowed/>; the rooms a user owns count, another user is not
    affected."""
    a, b = accounts(2)

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        for _ in range(2):
            await create(ca, room_jid(), "o")
        r = await join(ca, room_jid(), "o")
        assert error(r)[:2] == ("cancel", "not-allowed")
        await create(cb, room_jid(), "o")
    run(go())


def test_occupants_per_room(server, accounts):
    """§7.2.9: max_occupants bounds every room: a fourth occupant gets
    <service-unavailable/> (wait) and maxusers above it is <not-acceptable/>."""
    a, b, c, d = accounts(4)
    room = room_jid()

    async def go():
        ca, cb, cc, cd = [await connect(server, x) for x in (a, b, c, d)]
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        await join_ok(cc, room, "c")
        assert error(await join(cd, room, "d"))[:2] == ("wait", "service-unavailable")
        assert error(await configure(ca, room, {"maxusers": "4"}))[1] == "not-acceptable"
    run(go())


def test_message_rate(server, accounts):
    """message_rate and message_burst: beyond the burst an occupant's messages
    get <resource-constraint/> (wait) and are not relayed; tokens come back
    with time (6 per minute here)."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        for i in range(3):
            groupchat(cb, room, "r%d" % i)
            await message_from(ca, room, lambda m, i=i: m["body"] == "r%d" % i)
        groupchat(cb, room, "too fast")
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("wait", "resource-constraint")
        cb.send_raw("<message to='%s/o' type='chat'><body>pm</body></message>" % room)
        e = await message_from(cb, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("wait", "resource-constraint")
        await asyncio.sleep(10.5)  # one token back
        groupchat(cb, room, "later")
        await message_from(ca, room, lambda m: m["body"] == "later")
    run(go())


def test_presence_flood_is_not_broadcast(server, accounts):
    """§14.6 (rapid presence changes): presence updates share the occupant's
    rate; beyond it they are kept but not broadcast, so the others see at
    most the burst."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        from muc_util import quiet_presences
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        await join_ok(cb, room, "b")
        await quiet_presences(ca, room, 0.3)
        for i in range(8):
            cb.send_raw("<presence to='%s/b'><status>s%d</status></presence>" % (room, i))
        seen = [p["status"] for p in await quiet_presences(ca, room)]
        assert seen == ["s0", "s1", "s2"]
    run(go())


def test_subject_and_nick_length(server, accounts):
    """max_subject_length: a longer subject is <not-acceptable/>;
    max_nick_length: a longer nick is <not-acceptable/> on entering and on a
    nick change."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        ca.send_raw("<message to='%s' type='groupchat'><subject>%s</subject></message>" % (room, "x" * 11))
        e = await message_from(ca, room, lambda m: m["type"] == "error")
        assert error(e)[:2] == ("modify", "not-acceptable")
        ca.send_raw("<message to='%s' type='groupchat'><subject>%s</subject></message>" % (room, "é" * 10))
        await message_from(ca, room, lambda m: m["subject"] == "é" * 10)
        assert error(await join(cb, room, "n" * 9))[:2] == ("modify", "not-acceptable")
        await join_ok(cb, room, "n" * 8)
        cb.send_raw("<presence to='%s/%s'/>" % (room, "m" * 9))
        p = await presence_from(cb, "%s/%s" % (room, "m" * 9), lambda p: p["type"] == "error")
        assert error(p)[1] == "not-acceptable"
    run(go())


def test_reserved_nick_lock_down(server, accounts):
    """enforce_reserved_nicks (§7.2.2, §7.6, §7.10): a user with a reserved
    nick enters with it whatever it asks, with code 210, and may not change
    it (<not-acceptable/>)."""
    a, b = accounts(2)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "o")
        form = submit_form({"muc#register_roomnick": "witch"}, form_type=NS_REGISTER_FORM)
        assert (await iq(cb, room, "<query xmlns='%s'>%s</query>" % (NS_REGISTER, form), "set"))["type"] == "result"
        cb.send_raw("<presence to='%s/whatever'><x xmlns='http://jabber.org/protocol/muc'/></presence>" % room)
        p = await presence_from(cb, room + "/witch", lambda p: 110 in codes(p))
        assert 210 in codes(p) and item(p)["affiliation"] == "member"
        cb.send_raw("<presence to='%s/other'/>" % room)
        p = await presence_from(cb, room + "/other", lambda p: p["type"] == "error")
        assert error(p)[1] == "not-acceptable"
    run(go())


def test_unconfigured_room_is_destroyed(server, accounts):
    """§10.1.1 and lock_timeout: a room its creator never configures goes,
    with <destroy/> to the creator."""
    a, = accounts(1)
    room = room_jid()

    async def go():
        ca = await connect(server, a)
        await join_ok(ca, room, "o")
        p = await presence_from(ca, room + "/o", lambda p: p["type"] == "unavailable", timeout=5)
        from muc_util import user_x, NS_USER, q
        assert user_x(p).find(q(NS_USER, "destroy")) is not None
        p = await join_ok(ca, room, "o")
        assert 201 in codes(p)
    run(go())


# ---- service policy: configurations of their own -------------------------------------------------

def test_create_rooms_admins_only(server_factory, accounts):
    """create_rooms = admins (§10.1.1): other users get <not-allowed/>; an
    admin creates, and then anyone may enter."""
    srv = server_factory({"modules": {"muc": {"create_rooms": "admins", "admins": ["boss@localhost"]}}})
    srv.adduser("boss@localhost", "boss-password")
    a, = accounts(1, srv=srv)
    room = room_jid()

    class Boss:
        jid, password = "boss@localhost", "boss-password"

    async def go():
        ca, cboss = await connect(srv, a), await connect(srv, Boss)
        r = await join(ca, room, "a")
        assert error(r)[:2] == ("cancel", "not-allowed")
        await create(cboss, room, "boss")
        await join_ok(ca, room, "a")
    run(go())


def test_room_defaults_and_single_session(server_factory, accounts):
    """room_defaults sets the configuration of new rooms (here persistent and
    non-anonymous: 100 on entering); multi_session off makes a second
    resource with the same nick a <conflict/>."""
    srv = server_factory({"modules": {"muc": {"room_defaults": {"persistent": True, "whois": "anyone",
                                                                 "name": "Default Name"},
                                              "multi_session": False}}})
    a, b = accounts(2, srv=srv)
    room = room_jid()

    async def go():
        ca, cb = await connect(srv, a), await connect(srv, b)
        await create(ca, room, "o")
        p = await join_ok(cb, room, "b")
        assert 100 in codes(p)
        from muc_util import NS_DISCO_INFO, q, iq_ok
        info = await iq_ok(cb, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        feats = {f.get("var") for f in info.xml.find(q(NS_DISCO_INFO, "query"))}
        assert {"muc_persistent", "muc_nonanonymous"} <= feats
        cb2 = await connect(srv, b, resource="two")
        assert error(await join(cb2, room, "b"))[1] == "conflict"
    run(go())


@pytest.mark.parametrize("muc, why", [
    ({"room_defaults": {"bogus": True}}, "room_defaults: bad value or unknown key: \"bogus\""),
    ({"room_defaults": {"max_users": 5000}}, "above the service's"),
    ({"admins": ["not a jid@@"]}, "admins: not a bare JID"),
    ({"domain": "localhost"}, "has the domain"),
])
def test_bad_options_refused_at_start(server_factory, muc, why):
    """Options are checked before the service runs: a bad room_defaults key
    or value, an admin that is not a JID, or a domain that is already a host
    stop the start with one line naming the module."""
    srv = server_factory({"modules": {"muc": muc}}, start=False)
    with pytest.raises(RuntimeError) as e:
        srv.start()
    assert "modules.muc" in str(e.value) and why in str(e.value)
