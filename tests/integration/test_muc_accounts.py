"""Deleted accounts in rooms (mod_muc on the kernel's "user-deleted"):
`xmppctl deluser` against the running server removes the account's owner,
admin and member affiliations and its reserved nicks from every room, keeps
its ban (without a nick: a new account of that name is still banned), gives
a room whose only owner it was to the room's admins, and destroys a room
left with neither owner nor admin (§10.9 destroy presence to its
occupants). All of it is stored: a restart finds the same. A deletion that
comes before the stored rooms are loaded waits for them.

Each test runs on its own server (server_factory)."""

import time

from muc_util import (NS_ADMIN, NS_DISCO_INFO, NS_USER, admin, admin_item, create, error, iq,
                      join, join_ok, presence_from, q, room_jid)
from xmpptest import connect, run

MUC = {"modules": {"muc": {}}}
KEEP = {"persistentroom": "1"}


def items_of(r):
    return [dict(i.attrib) for i in r.xml.find(q(NS_ADMIN, "query")).findall(q(NS_ADMIN, "item"))]


async def aff_list(c, room, aff):
    r = await admin(c, room, admin_item(affiliation=aff), type_="get")
    assert r["type"] == "result", r
    return sorted((i["jid"], i.get("nick")) for i in items_of(r))


async def gone(c, room):
    r = await iq(c, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
    return error(r)[1] == "item-not-found"


def test_deleted_account_leaves_every_room(server_factory, accounts):
    """The member's affiliation and reserved nick go (the nick is free for
    others), the outcast stays banned with its reason (also when the name
    is registered again), a room whose only owner was deleted passes to its
    admin, a room with no one else to run it is destroyed with its occupants
    told; after a restart everything is as it was left."""
    srv = server_factory(MUC)
    own, adm, mem, out, solo, other = accounts(6, srv=srv)
    room, solo_room, handed = room_jid("keep"), room_jid("solo"), room_jid("handed")

    async def before():
        co, cm, cs = await connect(srv, own), await connect(srv, mem), await connect(srv, solo)
        await create(co, room, "owner", KEEP)
        for it in (admin_item(affiliation="admin", jid=adm.jid),
                   admin_item(affiliation="member", jid=mem.jid, nick="memnick"),
                   admin_item(affiliation="outcast", jid=out.jid, reason="troll")):
            assert (await admin(co, room, it))["type"] == "result"
        await join_ok(cm, room, "memnick")
        await create(cs, solo_room, "solo", KEEP)
        await join_ok(co, solo_room, "visitor")
        await create(cs, handed, "solo", KEEP)
        assert (await admin(cs, handed, admin_item(affiliation="admin", jid=adm.jid)))["type"] == "result"

        for acct in (mem, out, solo):
            srv.ctl("deluser", acct.jid, check=True)

        # the destroyed room told its remaining occupant (§10.9)
        p = await presence_from(co, solo_room + "/visitor", lambda p: p["type"] == "unavailable")
        d = p.xml.find(q(NS_USER, "x")).find(q(NS_USER, "destroy"))
        assert d is not None and d.find(q(NS_USER, "reason")).text
    run(before())

    async def check(c_own, c_adm):
        assert await aff_list(c_own, room, "member") == []
        assert await aff_list(c_own, room, "owner") == [(own.jid, None)]
        assert await aff_list(c_own, room, "admin") == [(adm.jid, None)]
        r = await admin(c_own, room, admin_item(affiliation="outcast"), type_="get")
        banned = items_of(r)
        assert [i["jid"] for i in banned] == [out.jid]
        assert r.xml.find(q(NS_ADMIN, "query")).find(q(NS_ADMIN, "item")).findtext(
            q(NS_ADMIN, "reason")) == "troll"
        assert await gone(c_own, solo_room)
        assert await aff_list(c_adm, handed, "owner") == [(adm.jid, None)]
        assert await aff_list(c_adm, handed, "admin") == []

    async def after():
        co, ca, cx = await connect(srv, own), await connect(srv, adm), await connect(srv, other)
        await check(co, ca)
        # the deleted member's reserved nick is free
        await join_ok(cx, room, "memnick")
        # a new account under the banned name is still banned (§9.1)
        srv.adduser(out.jid, out.password)
        cn = await connect(srv, out)
        assert error(await join(cn, room, "again"))[:2] == ("auth", "forbidden")
    run(after())

    srv.restart()

    async def restarted():
        co, ca = await connect(srv, own), await connect(srv, adm)
        await check(co, ca)
    run(restarted())


def test_deletion_before_rooms_are_loaded(server_factory, accounts):
    """Right after a start nothing has reached the room service yet, so its
    stored rooms are not loaded: a deletion then waits for the restore and
    applies to every stored room: the admin's affiliation goes, and a room
    it owned alone is destroyed."""
    srv = server_factory(MUC)
    own, adm = accounts(2, srv=srv)
    room, owned = room_jid("keep"), room_jid("owned")

    async def before():
        co, ca = await connect(srv, own), await connect(srv, adm)
        await create(co, room, "owner", KEEP)
        assert (await admin(co, room, admin_item(affiliation="admin", jid=adm.jid)))["type"] == "result"
        await create(ca, owned, "adm", KEEP)
    run(before())

    srv.restart()
    start = len(srv.read_log())
    srv.ctl("deluser", adm.jid, check=True)
    # the deletion itself made the service load its stored rooms
    for _ in range(50):
        if "ready: 2 stored rooms" in srv.read_log()[start:]:
            break
        time.sleep(0.1)
    assert "ready: 2 stored rooms" in srv.read_log()[start:]

    async def after():
        co = await connect(srv, own)
        assert await aff_list(co, room, "admin") == []
        assert await gone(co, owned)
    run(after())
