"""Per-session and per-account state across the nodes of a cluster
(docs/cluster.md, "State across nodes"; issue 20): carbons (XEP-0280) and
client state indication (XEP-0352) for a session on another node, a
blocklist (XEP-0191) and a roster (RFC 6121 §2.1.6) changed on one node
and in force on the other, a server-originated IQ request (XEP-0357
publish) answered by a client on another node, and a reload that applies
the cluster's timing and refuses hosts the other nodes do not serve.

Two nodes on PostgreSQL and a private redis-server, with the fixtures of
test_cluster.py.
"""

import secrets
import time

import pytest

from test_cluster import (HEARTBEAT_MS, NODE_TIMEOUT_MS, got_body, login, message, new_accounts,  # noqa: F401
                          node_sessions, nodes, pg_dsn, redis, registered, start_nodes, status,
                          subscribe, wait_status)
from xmpptest import NS_CLIENT, error_condition, q, scaled

import pg_cluster
import redis_server

pytestmark = pytest.mark.skipif(not (redis_server.available() and pg_cluster.available()),
                                reason="redis-server or PostgreSQL not installed")

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_CSI = "urn:xmpp:csi:0"
NS_BLOCKING = "urn:xmpp:blocking"
NS_ROSTER = "jabber:iq:roster"
NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PING = "urn:xmpp:ping"
NS_PRIVACY = "jabber:iq:privacy"

MODULES = {"modules": {"carbons": True, "csi": True, "privacy": True, "blocking": True,
                       "offline": True, "ping": True}}


def carbon(direction, body):
    """A carbon copy (XEP-0280 §6/§8) of the message with body."""
    def pred(e):
        if e.tag != q(NS_CLIENT, "message"):
            return False
        w = e.find(q(NS_CARBONS, direction))
        fwd = w.find(q(NS_FORWARD, "forwarded")) if w is not None else None
        inner = fwd.find(q(NS_CLIENT, "message")) if fwd is not None else None
        return inner is not None and inner.findtext(q(NS_CLIENT, "body")) == body
    return pred


def any_carbon(e):
    return e.tag == q(NS_CLIENT, "message") and (
        e.find(q(NS_CARBONS, "received")) is not None or e.find(q(NS_CARBONS, "sent")) is not None)


def enable_carbons(c):
    r = c.iq("<enable xmlns='%s'/>" % NS_CARBONS, type_="set")
    assert r.get("type") == "result", r


def test_xep0280_carbons_across_nodes_both_directions(nodes):
    """XEP-0280 §6 and §8 across nodes: alice has R1 on node0 and R2 on
    node1, both with carbons enabled, and R3 on node1 without. A message
    to either resource is copied (<received/>) to the other, whichever
    node it is on; a message either one sends is copied (<sent/>) to the
    other; R3 gets no copy of any of them."""
    na, nb = nodes(2, extra=MODULES)
    alice, bob = new_accounts(na, 2)
    r1 = login(na, alice, "r1", priority=0)
    r2 = login(nb, alice, "r2", priority=0)
    r3 = login(nb, alice, "r3", priority=0)
    cb = login(na, bob, "pc", priority=0)
    registered(na, 2, "node1")
    registered(nb, 2, "node0")
    enable_carbons(r1)
    enable_carbons(r2)
    def copied(frm, to_client, to_jid, body, direction, copy_to):
        """frm sends body to to_jid; to_client gets it, copy_to its carbon."""
        message(frm, to_jid, body)
        to_client.wait_for(got_body(body))
        return copy_to.wait_for(carbon(direction, body))

    # a node applies a remote session's mark once it has routed what that
    # session's node sent after it (one stream, in order): r1 writes to r3
    # on node1, r2 to r1 on node0, so each node knows the other's marks
    message(r1, r3.jid, "order-r1")
    r3.wait_for(got_body("order-r1"))
    message(r2, r1.jid, "order-r2")
    r1.wait_for(got_body("order-r2"))
    copied(r2, cb, bob.jid, "sync-from-r2", "sent", r1)
    copied(r1, cb, bob.jid, "sync-from-r1", "sent", r2)
    # received: to r1 (node0), copied to r2 (node1); to r2, copied to r1
    w = copied(cb, r1, r1.jid, "to-r1", "received", r2)
    assert w.get("from") == alice.jid and w.get("to") == r2.jid
    copied(cb, r2, r2.jid, "to-r2", "received", r1)
    # sent: by r2 (node1), copied to r1 (node0); by r1, copied to r2
    copied(r2, cb, bob.jid, "from-r2", "sent", r1)
    copied(r1, cb, bob.jid, "from-r1", "sent", r2)
    # r3 never enabled carbons: nothing was copied to it
    assert r3.quiet(scaled(0.5), pred=any_carbon) == []
    # disabling on r2 reaches node0 too: r1's next message is not copied
    r = r2.iq("<disable xmlns='%s'/>" % NS_CARBONS, type_="set")
    assert r.get("type") == "result"
    message(r2, bob.jid, "sync-again")
    cb.wait_for(got_body("sync-again"))
    message(r1, bob.jid, "after-disable")
    cb.wait_for(got_body("after-disable"))
    assert r2.quiet(scaled(0.5), pred=carbon("sent", "after-disable")) == []
    for c in (r1, r2, r3, cb):
        c.__exit__(None, None, None)


def test_xep0352_csi_holds_what_another_node_sends(nodes):
    """XEP-0352 §5.2/§6 across nodes: alice on node1 says <inactive/>;
    bob's presence change, broadcast from node0, is held for her; his
    chat message (urgent) flushes it: she gets the presence, then the
    message, in that order, as when both are on one node."""
    na, nb = nodes(2, extra=MODULES)
    alice, bob = new_accounts(na, 2)
    ca = login(nb, alice, "phone", priority=0)
    cb = login(na, bob, "pc", priority=0)
    registered(na, 1, "node1")
    registered(nb, 1, "node0")
    subscribe(ca, cb, alice, bob)
    ca.send("<inactive xmlns='%s'/>" % NS_CSI)
    # an answer from node1 after it: the state is in force there
    assert ca.iq("<ping xmlns='%s'/>" % NS_PING).get("type") == "result"
    cb.send("<presence><show>away</show></presence>")
    away = lambda e: e.tag == q(NS_CLIENT, "presence") and e.findtext(q(NS_CLIENT, "show")) == "away"
    assert ca.quiet(scaled(1.0), pred=away) == [], "held while inactive"
    message(cb, alice.jid, "wake-up")
    got = []
    ca.wait_for(lambda e: got.append(e) or got_body("wake-up")(e))
    kinds = [("away" if away(e) else "msg") for e in got if away(e) or got_body("wake-up")(e)]
    assert kinds == ["away", "msg"], kinds
    for c in (ca, cb):
        c.__exit__(None, None, None)


def test_xep0191_block_on_one_node_is_in_force_on_the_other(nodes):
    """XEP-0191 §3.3 and §3.5 across nodes: alice's resource on node0
    blocks bob; her resource on node1, which asked for the blocklist, gets
    the push, and a message bob then sends to it is refused there with
    <service-unavailable/> (node1 dropped its copy of alice's lists and
    read them again), not delivered. Unblocking likewise lets him through."""
    na, nb = nodes(2, extra=MODULES)
    alice, bob = new_accounts(na, 2)
    r1 = login(na, alice, "r1", priority=0)
    r2 = login(nb, alice, "r2", priority=0)
    cb = login(na, bob, "pc", priority=0)
    registered(na, 1, "node1")
    registered(nb, 2, "node0")
    r = r2.iq("<blocklist xmlns='%s'/>" % NS_BLOCKING)
    assert r.get("type") == "result"
    message(cb, r2.jid, "before-block")
    r2.wait_for(got_body("before-block"))  # node1 has alice's (empty) lists in memory
    # node0 knows r2 asked for the blocklist once it routed what r2 sent next
    message(r2, bob.jid, "sync")
    cb.wait_for(got_body("sync"))

    r = r1.iq("<block xmlns='%s'><item jid='%s'/></block>" % (NS_BLOCKING, bob.jid), type_="set")
    assert r.get("type") == "result", r
    push = r2.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "set" and
                       e.find(q(NS_BLOCKING, "block")) is not None)
    items = push.find(q(NS_BLOCKING, "block")).findall(q(NS_BLOCKING, "item"))
    assert [i.get("jid") for i in items] == [bob.jid]
    message(cb, r2.jid, "while-blocked")
    err = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "error")
    assert error_condition(err)[1] == "service-unavailable"
    assert r2.quiet(scaled(0.5), pred=got_body("while-blocked")) == []

    r = r1.iq("<unblock xmlns='%s'><item jid='%s'/></unblock>" % (NS_BLOCKING, bob.jid), type_="set")
    assert r.get("type") == "result", r
    r2.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.find(q(NS_BLOCKING, "unblock")) is not None)
    message(cb, r2.jid, "after-unblock")
    r2.wait_for(got_body("after-unblock"))
    for c in (r1, r2, cb):
        c.__exit__(None, None, None)


def privacy_set(c, body):
    """A jabber:iq:privacy set (XEP-0016): None on success, else the error
    condition."""
    r = c.iq("<query xmlns='%s'>%s</query>" % (NS_PRIVACY, body), type_="set")
    return None if r.get("type") == "result" else error_condition(r)[1]


def privacy_list(name):
    return ("<list name='%s'><item action='deny' order='1' type='jid' value='x@nowhere'/></list>"
            % name)


def test_xep0016_list_in_use_on_another_node_is_a_conflict(nodes):
    """XEP-0016 §2.6 and §2.9 across nodes: a list that alice's resource on
    node1 has active cannot be removed from her resource on node0, nor can
    node0 change the default list while node1's resource has it active
    (<conflict/>, as for two resources of one node); once node1's resource
    declines its active list both changes succeed."""
    na, nb = nodes(2, extra=MODULES)
    (alice,) = new_accounts(na, 1)
    r1 = login(na, alice, "r1", priority=0)
    r2 = login(nb, alice, "r2", priority=0)
    registered(na, 1, "node1")
    registered(nb, 1, "node0")

    def synced():
        """node0 applied what node1 sent before now, and node1 what node0 did
        (one stream each way, in order): marks and invalidations included."""
        body = "sync-" + secrets.token_hex(4)
        message(r2, r1.jid, body)
        r1.wait_for(got_body(body))
        message(r1, r2.jid, body)
        r2.wait_for(got_body(body))

    assert privacy_set(r1, privacy_list("home")) is None
    assert privacy_set(r1, "<default name='home'/>") is None
    # the lists are one stored document per account: node1 stores its change
    # on top of node0's once it has read them again
    synced()
    assert privacy_set(r2, privacy_list("work")) is None
    synced()
    assert privacy_set(r2, "<active name='work'/>") is None
    synced()
    # §2.9: removing a list another resource (on node1) has active
    assert privacy_set(r1, "<list name='work'/>") == "conflict"
    # §2.6: changing the default while another resource has it active
    assert privacy_set(r2, "<active name='home'/>") is None
    synced()
    assert privacy_set(r1, "<default name='work'/>") == "conflict"
    assert privacy_set(r1, "<default/>") == "conflict"
    # node1's resource switches back: 'home' is free, 'work' is not
    assert privacy_set(r2, "<active name='work'/>") is None
    synced()
    assert privacy_set(r1, "<default/>") is None
    assert privacy_set(r1, "<list name='work'/>") == "conflict"
    # it declines its active list (§2.5): 'work' can go
    assert privacy_set(r2, "<active/>") is None
    synced()
    assert privacy_set(r1, "<list name='work'/>") is None
    for c in (r1, r2):
        c.__exit__(None, None, None)


def test_issue20_block_while_redis_is_away_is_told_when_it_is_back(server_factory, pg_dsn):
    """XEP-0191 across nodes and a Redis outage: alice's resource on node0
    blocks bob while Redis is stopped (the change is stored, the other
    node cannot be told); once Redis is back, node0 tells node1, and a
    message bob sends to alice's resource there is refused
    (<service-unavailable/>), not delivered from node1's old copy."""
    r = redis_server.Redis().start()
    try:
        na, nb = start_nodes(server_factory, r, pg_dsn, "t" + secrets.token_hex(4), 2, extra=MODULES)
        alice, bob = new_accounts(na, 2)
        r1 = login(na, alice, "r1", priority=0)
        r2 = login(nb, alice, "r2", priority=0)
        cb = login(na, bob, "pc", priority=0)
        registered(na, 1, "node1")
        message(cb, r2.jid, "before")
        r2.wait_for(got_body("before"))  # node1 has alice's lists in memory
        r.stop()
        wait_status(na, lambda st: not st["redis_up"])
        res = r1.iq("<block xmlns='%s'><item jid='%s'/></block>" % (NS_BLOCKING, bob.jid), type_="set")
        assert res.get("type") == "result", res
        r.start()
        for srv, other, n in ((na, "node1", 1), (nb, "node0", 2)):
            wait_status(srv, lambda st: st["redis_up"] and node_sessions(st, other) == n,
                        timeout=scaled(15))
        message(cb, r2.jid, "after-outage")
        err = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "error",
                          timeout=scaled(3))
        assert error_condition(err)[1] == "service-unavailable"
        assert r2.quiet(scaled(0.5), pred=got_body("after-outage")) == []
        assert "told of 1 accounts' changes made meanwhile" in na.read_log()
        for c in (r1, r2, cb):
            c.__exit__(None, None, None)
    finally:
        r.destroy()


def roster_jids(c):
    r = c.iq("<query xmlns='%s'/>" % NS_ROSTER)
    assert r.get("type") == "result", r
    return sorted(i.get("jid") for i in r.find(q(NS_ROSTER, "query")).findall(q(NS_ROSTER, "item")))


def test_rfc6121_2_1_6_roster_push_to_a_resource_on_the_other_node(nodes):
    """RFC 6121 §2.1.6 across nodes: alice's resources on node0 and node1
    both asked for the roster; an item r1 adds on node0 is pushed to both,
    and r2's next roster get on node1 has it (node1's copy was dropped
    when node0 stored the change). A resource that never asked for the
    roster gets no push (§2.1.6: interested resources only)."""
    na, nb = nodes(2, extra=MODULES)
    alice, carol = new_accounts(na, 2)
    r1 = login(na, alice, "r1", priority=0)
    r2 = login(nb, alice, "r2", priority=0)
    r3 = login(nb, alice, "r3", priority=0)
    registered(na, 2, "node1")
    assert roster_jids(r1) == [] and roster_jids(r2) == []
    message(r2, r1.jid, "sync")  # node0 has r2's interest once this arrives
    r1.wait_for(got_body("sync"))

    r = r1.iq("<query xmlns='%s'><item jid='%s' name='Carol'/></query>" % (NS_ROSTER, carol.jid),
              type_="set")
    assert r.get("type") == "result", r
    for c in (r1, r2):
        push = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "set" and
                          e.find(q(NS_ROSTER, "query")) is not None)
        item = push.find(q(NS_ROSTER, "query")).find(q(NS_ROSTER, "item"))
        assert item.get("jid") == carol.jid and item.get("name") == "Carol"
        c.send("<iq type='result' id='%s'/>" % push.get("id"))
    pushed = lambda e: e.tag == q(NS_CLIENT, "iq") and e.find(q(NS_ROSTER, "query")) is not None
    assert r3.quiet(scaled(0.5), pred=pushed) == []
    # the invalidation follows the store: within a moment node1 reads it
    deadline = time.monotonic() + scaled(3)
    while roster_jids(r2) != [carol.jid]:
        assert time.monotonic() < deadline, "node1 kept its old copy of the roster"
        time.sleep(0.1)
    for c in (r1, r2, r3):
        c.__exit__(None, None, None)


def pep_items(c, node):
    """The item ids of the account's own PEP node (XEP-0060 §6.5), or None
    when the node does not exist."""
    r = c.iq("<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PUBSUB, node))
    if r.get("type") == "error":
        return None
    items = r.find(q(NS_PUBSUB, "pubsub")).find(q(NS_PUBSUB, "items"))
    return sorted(i.get("id") for i in items.findall(q(NS_PUBSUB, "item")))


def test_xep0163_pep_published_on_one_node_is_read_on_the_other(nodes):
    """XEP-0163 §4 / XEP-0060 §6.5 across nodes: alice's resource on node1
    reads her own PEP node (node1 loads her service); her resource on
    node0 publishes a new item (a PEP node keeps the last one, XEP-0163
    §6.1.1); r2's next read on node1 has it (node1 dropped its copy once
    node0 stored the item), and so does a retraction."""
    extra = {"modules": dict(MODULES["modules"], pep=True)}
    na, nb = nodes(2, extra=extra)
    alice, = new_accounts(na, 1)
    r1 = login(na, alice, "r1", priority=0)
    r2 = login(nb, alice, "r2", priority=0)
    registered(na, 1, "node1")
    node = "urn:xmpp:tmp:cstate"
    publish = ("<pubsub xmlns='%s'><publish node='%s'><item id='%%s'><x xmlns='urn:xmpp:tmp:x'/>"
               "</item></publish></pubsub>" % (NS_PUBSUB, node))

    def until(items, why):
        deadline = time.monotonic() + scaled(3)
        while pep_items(r2, node) != items:
            assert time.monotonic() < deadline, why
            time.sleep(0.1)

    assert r1.iq(publish % "one", type_="set").get("type") == "result"
    until(["one"], "node1 never saw the first item")  # node1 has the service in memory now
    assert r1.iq(publish % "two", type_="set").get("type") == "result"
    until(["two"], "node1 kept its old copy of the PEP service")
    r = r1.iq("<pubsub xmlns='%s'><retract node='%s' notify='true'><item id='two'/></retract>"
              "</pubsub>" % (NS_PUBSUB, node), type_="set")
    assert r.get("type") == "result", r
    until([], "node1 kept the retracted item")
    for c in (r1, r2):
        c.__exit__(None, None, None)


def test_issue20_invalidation_reaches_a_node_without_a_session(nodes):
    """issue 20, per-account caches (docs/cluster.md, why invalidations go
    to every live node): node0 keeps alice's PEP service in its cache after
    she left it (XEP-0163 §4, a contact's read of her node). She then
    publishes from node1 only, where her only session is, and leaves; bob's
    read on node0 (the account is offline: node0 answers from its cache)
    has the new item. An invalidation sent only to the nodes with a session
    of the account would have left node0's copy stale."""
    extra = {"modules": dict(MODULES["modules"], pep=True)}
    na, nb = nodes(2, extra=extra)
    alice, bob = new_accounts(na, 2)
    ra = login(na, alice, "r1", priority=0)
    cb = login(na, bob, "pc", priority=0)
    subscribe(cb, ra, bob, alice)
    node = "urn:xmpp:tmp:lastseen"
    publish = ("<pubsub xmlns='%s'><publish node='%s'><item id='%%s'><x xmlns='urn:xmpp:tmp:x'/>"
               "</item></publish></pubsub>" % (NS_PUBSUB, node))
    get = "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PUBSUB, node)

    def read():
        r = cb.iq(get, to=alice.jid)
        assert r.get("type") == "result", r
        items = r.find(q(NS_PUBSUB, "pubsub")).find(q(NS_PUBSUB, "items"))
        return [i.get("id") for i in items.findall(q(NS_PUBSUB, "item"))]

    assert ra.iq(publish % "one", type_="set").get("type") == "result"
    ra.__exit__(None, None, None)
    wait_status(na, lambda st: node_sessions(st, "node0") == 1)
    assert read() == ["one"]  # node0 answers from its cache: alice is offline
    rb = login(nb, alice, "r2", priority=0)
    registered(na, 1, "node1")
    assert rb.iq(publish % "two", type_="set").get("type") == "result"
    # node0 routed what node1 sent after the change (its inval first)
    message(rb, bob.jid, "after-publish")
    cb.wait_for(got_body("after-publish"))
    rb.__exit__(None, None, None)
    registered(na, 0, "node1")
    assert read() == ["two"], "node0 answered from a stale copy"
    cb.__exit__(None, None, None)


def test_xep0357_server_iq_request_answered_on_another_node(nodes):
    """A server-originated IQ request (xmppd_iq_request: here XEP-0357 §6
    publish from node0) to a client on node1 gets its answer on node0,
    which asked: the id names the node, node1 sends the answer there. With
    push.max_failures 1, an answer lost on node1 would remove the
    registration after push.timeout, and the second message would wake
    nobody; both are published and answered."""
    extra = {"modules": dict(MODULES["modules"],
                             push={"timeout": "1s", "min_interval": "0s", "max_failures": 1})}
    na, nb = nodes(2, extra=extra)
    alice, bob, app = new_accounts(na, 3)
    svc = login(nb, app, "service", priority=0)
    ca = login(na, alice, "phone", priority=0)
    registered(na, 1, "node1")
    r = ca.iq("<enable xmlns='%s' jid='%s' node='n1'/>" % (NS_PUSH, svc.jid), type_="set")
    assert r.get("type") == "result", r
    ca.__exit__(None, None, None)
    cb = login(na, bob, "pc", priority=0)
    time.sleep(scaled(0.3))  # alice's session is gone on node0
    ids = []
    for n in range(2):
        message(cb, alice.jid, "wake-%d" % n)
        pub = svc.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "set" and
                           e.find(q(NS_PUBSUB, "pubsub")) is not None, timeout=scaled(5))
        assert pub.get("from") == alice.jid
        assert pub.get("id").startswith("xmppd-node0-"), pub.get("id")
        ids.append(pub.get("id"))
        svc.send("<iq type='result' id='%s' to='%s'/>" % (pub.get("id"), alice.jid))
        time.sleep(scaled(1.5))  # past push.timeout: a lost answer counts as a failure
    assert len(set(ids)) == 2
    log = na.read_log()
    assert "did not answer" not in log and "answered with an error" not in log
    for c in (svc, cb):
        c.__exit__(None, None, None)


def pttl_range(redis, key, period):
    """The least and greatest PTTL of key seen over period seconds."""
    seen = []
    end = time.monotonic() + period
    while time.monotonic() < end:
        seen.append(int(redis.command("PTTL", key)))
        time.sleep(0.01)
    return min(seen), max(seen)


def test_issue20_reload_applies_timing_and_refuses_other_hosts(nodes, redis):
    """A reload applies a changed cluster timing at once: node0's
    registration is renewed with the new node_timeout at the new heartbeat
    (seen in its key's TTL in Redis); a changed secret is logged as not
    applied (restart). A reload that adds a host the other node does not
    serve is refused as a whole, logged with both lists, and node0 keeps
    serving the old hosts and routing with node1."""
    na, nb = nodes(2, extra=MODULES)
    alice, bob = new_accounts(na, 2)
    ca = login(na, alice, "pc", priority=0)
    cb = login(nb, bob, "pc", priority=0)
    registered(na, 1, "node1")
    key = "%s:node:node0" % nodes.cluster
    lo, hi = pttl_range(redis, key, scaled(1.0))
    assert hi <= NODE_TIMEOUT_MS and lo > NODE_TIMEOUT_MS - 3 * HEARTBEAT_MS, (lo, hi)

    cl = na.config["cluster"]
    cl.update({"heartbeat": "700ms", "node_timeout": "3s", "delivery_timeout": "4s",
               "secret": "another-secret-0123456789"})
    na.write_config()
    mark = len(na.read_log())
    r = na.ctl("reload")
    assert r.returncode == 0, r.stdout + r.stderr
    lo, hi = pttl_range(redis, key, scaled(2.0))
    assert hi > NODE_TIMEOUT_MS, "the new node_timeout is not applied: %d" % hi
    assert lo < 3000 - 2 * HEARTBEAT_MS, "renewed as often as before: %d" % lo
    assert "cluster.secret changed: not applied" in na.read_log()[mark:]
    message(ca, cb.jid, "after-timing-reload")  # the old secret is still in use
    cb.wait_for(got_body("after-timing-reload"))

    na.config["hosts"]["other.example"] = {}
    na.write_config()
    r = na.ctl("reload")
    assert r.returncode != 0
    assert "other.example" in r.stdout + r.stderr and "node1" in r.stdout + r.stderr
    assert "reload refused" in na.read_log()
    del na.config["hosts"]["other.example"]
    na.write_config()
    st = status(na)
    assert sorted(n["node"] for n in st["nodes"]) == ["node0", "node1"]
    message(ca, cb.jid, "after-refused-reload")
    cb.wait_for(got_body("after-refused-reload"))
    message(cb, ca.jid, "back")
    ca.wait_for(got_body("back"))
    for c in (ca, cb):
        c.__exit__(None, None, None)
