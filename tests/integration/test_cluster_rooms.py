"""The room service across the nodes of a cluster gives the answers of one
server (issue 20, "group-chat rooms placed on one node at a time";
docs/cluster.md, "Components, rooms and s2s across nodes").

- The room list (XEP-0045 §6.3, disco#items, paged with XEP-0059) asked of
  any node holds the public rooms of every node, persistent and temporary.
- max_rooms and max_rooms_per_user (§10.1.1) count the rooms of every node.
- A temporary room whose placement moves to a node that joins is handed
  over with its state (configuration, affiliations, subject, occupants,
  history): its occupants stay in it without a 332 kick (XEP-0045 §11.2
  is for rooms that end), and a newcomer on the new node sees them all;
  the new node holds the room's stanzas until the old one let it go.
- Deleting an account (XEP-0077 §3.2 / xmppctl deluser; XEP-0045 rules of
  mod_muc's README) on one node cleans it from the rooms every node holds:
  its affiliations go, a room it owned passes to its admins, a room with
  neither is destroyed.

The nodes, Redis and PostgreSQL are started by test_cluster_place's fixtures.
"""

import json
import time

import pytest

import pg_cluster
import redis_server
from test_cluster import pg_dsn, redis  # noqa: F401 (fixtures)
from test_cluster_place import (accounts, bodies, close, cluster, configure, groupchat,  # noqa
                                iq, is_presence_from, join, login, room_on, self_ping, synced,
                                wait_stored)
from muc_util import NS_ADMIN, NS_DISCO_ITEMS, NS_RSM, NS_USER, codes
from xmpptest import NS_CLIENT, error_condition, q, scaled

pytestmark = pytest.mark.skipif(not (redis_server.available() and pg_cluster.available()),
                                reason="redis-server or PostgreSQL not installed")

TWO = ["node0", "node1"]


def stored_room(pg_dsn, room):
    doc = pg_cluster.psql(pg_dsn, "SELECT value FROM xmppd_kv WHERE store = 'muc_rooms' "
                          "AND username = '%s'" % room).strip()
    return json.loads(doc) if doc else None


def wait_for(pred, what):
    deadline = time.monotonic() + scaled(10)
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def room_list(c, rsm=""):
    """XEP-0045 §6.3: (jid, name) of the service's items, and the RSM <set/>."""
    r = iq(c, "conference.localhost", "<query xmlns='%s'>%s</query>" % (NS_DISCO_ITEMS, rsm), "get")
    assert r.get("type") == "result", error_condition(r)
    query = r.find(q(NS_DISCO_ITEMS, "query"))
    return [(i.get("jid"), i.get("name")) for i in query.findall(q(NS_DISCO_ITEMS, "item"))], \
        query.find(q(NS_RSM, "set"))


def make_room(c, room, name, persistent=True, public=True):
    join(c, room, "owner")
    configure(c, room, {"muc#roomconfig_roomname": name,
                        "muc#roomconfig_persistentroom": "1" if persistent else "0",
                        "muc#roomconfig_publicroom": "1" if public else "0"})


def test_xep0045_6_3_room_list_holds_the_rooms_of_every_node(cluster):
    """Issue 20 (rooms), XEP-0045 §6.3 with XEP-0059: alice, on node0, makes
    public rooms placed on both nodes, persistent and temporary, and one
    hidden room. disco#items of the service asked on node0 and on node1
    lists the same four public rooms in JID order with their names; a page
    of two (<max/>2) counts four, and <after/> its last gives the other
    two."""
    n0, n1 = cluster(2)
    alice, bob = accounts(n0, 2)
    ca = login(n0, alice, "a")
    cb = login(n1, bob, "b")
    rooms = {room_on("node0", TWO): ("P0", True), room_on("node0", TWO): ("T0", False),
             room_on("node1", TWO): ("P1", True), room_on("node1", TWO): ("T1", False)}
    for room, (name, persistent) in rooms.items():
        make_room(ca, room, name, persistent)
    make_room(ca, room_on("node1", TWO), "Hidden", public=False)
    want = sorted((room, name) for room, (name, _) in rooms.items())
    for c in (ca, cb):
        items, _ = room_list(c)
        assert items == want
    items, page = room_list(cb, "<set xmlns='%s'><max>2</max></set>" % NS_RSM)
    assert items == want[:2]
    assert page.findtext(q(NS_RSM, "count")) == "4"
    assert page.findtext(q(NS_RSM, "last")) == want[1][0]
    items, page = room_list(cb, "<set xmlns='%s'><max>2</max><after>%s</after></set>"
                            % (NS_RSM, want[1][0]))
    assert items == want[2:]
    assert page.find(q(NS_RSM, "first")).get("index") == "2"
    close(ca, cb)


def create_refused(c, room, nick):
    """XEP-0045 §10.1.1: the creation is refused with <not-allowed/>."""
    c.send("<presence to='%s/%s'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
           % (room, nick))
    el = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and
                    e.get("from") == "%s/%s" % (room, nick))
    assert el.get("type") == "error"
    return error_condition(el)


def test_xep0045_10_1_1_room_limits_count_every_node(cluster, pg_dsn):
    """Issue 20 (rooms), XEP-0045 §10.1.1 with max_rooms_per_user 1 and
    max_rooms 2: alice, on node0, owns a room on node0 and may not create
    one that the cluster places on node1 (not-allowed there, though node1
    holds none of hers); bob then creates one on node1, which makes two,
    and carol may create none on node0 (the service is full). The rooms
    earlier tests stored in the module's database go first: they count."""
    pg_cluster.psql(pg_dsn, "DELETE FROM xmppd_kv WHERE store = 'muc_rooms'", check=False)
    n0, n1 = cluster(2, {"modules": {"muc": {"max_rooms_per_user": 1, "max_rooms": 2}}})
    alice, bob, carol = accounts(n0, 3)
    ca, cb, cc = login(n0, alice, "a"), login(n1, bob, "b"), login(n0, carol, "c")
    make_room(ca, room_on("node0", TWO), "Alice's")
    assert create_refused(ca, room_on("node1", TWO), "alice")[1] == "not-allowed"
    make_room(cb, room_on("node1", TWO), "Bob's")
    assert create_refused(cc, room_on("node0", TWO), "carol")[1] == "not-allowed"
    close(ca, cb, cc)


def test_xep0077_3_2_deleted_account_leaves_rooms_of_every_node(cluster, pg_dsn):
    """Issue 20 (rooms): alice, on node0, owns two persistent rooms that the
    cluster places on node1, one with bob as admin. Deleting her account on
    node0 (xmppctl deluser) reaches node1: in the first room her owner
    affiliation goes and bob, its admin, owns it now (muc#admin owner
    list, XEP-0045 §10.5); the second, with nobody left to run it, is
    destroyed (its stored state is deleted)."""
    n0, n1 = cluster(2)
    alice, bob = accounts(n0, 2)
    kept, gone = room_on("node1", TWO), room_on("node1", TWO)
    ca = login(n0, alice, "a")
    cb = login(n1, bob, "b")
    synced(n0, n1)
    for room in (kept, gone):
        join(ca, room, "alice")
        configure(ca, room, {"muc#roomconfig_roomname": "Kept" if room == kept else "Gone"})
    r = iq(ca, kept, "<query xmlns='%s'><item affiliation='admin' jid='%s'/></query>"
           % (NS_ADMIN, bob.jid))
    assert r.get("type") == "result"
    wait_stored(pg_dsn, kept, lambda d: d["affiliations"].get(bob.jid, {}).get("affiliation")
                == "admin")
    wait_stored(pg_dsn, gone, lambda d: alice.jid in d["affiliations"])
    close(ca)
    n0.ctl("deluser", alice.jid, check=True)
    wait_for(lambda: stored_room(pg_dsn, gone) is None, "the room without owner nor admin stays")
    wait_for(lambda: alice.jid not in stored_room(pg_dsn, kept)["affiliations"],
             "the deleted owner keeps her affiliation")
    assert stored_room(pg_dsn, kept)["affiliations"][bob.jid]["affiliation"] == "owner"
    r = iq(cb, kept, "<query xmlns='%s'><item affiliation='owner'/></query>" % NS_ADMIN, "get")
    assert r.get("type") == "result"
    owners = [i.get("jid") for i in r.iter("{%s}item" % NS_ADMIN)]
    assert owners == [bob.jid]
    close(cb)


def test_issue20_temporary_room_handed_over_to_a_joining_node(cluster):
    """Issue 20 (rooms): a temporary room on node0 with alice (owner) and
    bob, a subject and two messages; node1 joins and wins the room. The
    room is handed over, not ended: neither occupant gets unavailable
    presence (no 332, XEP-0045 §11.2); both are still in it (XEP-0410
    self-ping answers on node1); carol, joining on node1, gets both
    occupants with their roles (§7.2.3), the history (§7.2.13) and the
    subject (§7.2.15); a message from bob reaches alice and carol."""
    (n0,) = cluster(1)
    alice, bob, carol = accounts(n0, 3)
    room = room_on("node1", TWO)
    ca, cb = login(n0, alice, "a"), login(n0, bob, "b")
    join(ca, room, "alice")
    configure(ca, room, {"muc#roomconfig_roomname": "Moving",
                         "muc#roomconfig_persistentroom": "0",
                         "muc#roomconfig_changesubject": "1"})
    join(cb, room, "bob")
    ca.send("<message to='%s' type='groupchat'><subject>Travels</subject></message>" % room)
    groupchat(ca, room, "before-1")
    period = scaled(1.5)
    assert bodies(cb.quiet(period), room) == ["before-1"]
    groupchat(cb, room, "before-2")
    assert bodies(cb.quiet(period), room) == ["before-2"]
    ca.quiet(0.2)
    n1 = cluster.add("node1")
    wait_for(lambda: "handed over from another node" in n1.read_log(), "no handover on node1")
    left = [e for c in (ca, cb) for e in c.quiet(period)
            if e.get("type") == "unavailable" and (e.get("from") or "").startswith(room + "/")]
    assert not left, [codes(e) for e in left]
    assert self_ping(ca, room + "/alice") == ("result", None)
    cc = login(n1, carol, "c")
    synced(n0, n1)
    carol_join = "<presence to='%s/carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    cc.send(carol_join % room)
    got = cc.quiet(scaled(2))
    roles = {}
    for e in got:
        item = e.find(q(NS_USER, "x") + "/" + q(NS_USER, "item")) \
            if e.tag == q(NS_CLIENT, "presence") else None
        if item is not None:
            roles[e.get("from")] = (item.get("role"), item.get("affiliation"))
    assert roles.get(room + "/alice") == ("moderator", "owner")
    assert roles.get(room + "/bob") == ("participant", "none")
    assert 201 not in [c for e in got if e.get("from") == room + "/carol" for c in codes(e)]
    assert bodies(got, room) == ["before-1", "before-2"]
    assert [e.findtext(q(NS_CLIENT, "subject")) for e in got
            if e.findtext(q(NS_CLIENT, "subject"))] == ["Travels"]
    groupchat(cb, room, "after")
    assert bodies(ca.quiet(period), room) == ["after"]
    assert bodies(cc.quiet(0.5), room) == ["after"]
    close(ca, cb, cc)
