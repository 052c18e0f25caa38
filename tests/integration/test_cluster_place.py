"""Components, group-chat rooms and s2s across the nodes of a cluster
(docs/cluster.md, "Components, rooms and s2s across nodes"; issue 20,
"Federation and components").

- A component (XEP-0114) attached to one node is reached from users on
  the other node, in order, and answers back; when it is gone, senders get
  service-unavailable as on one node; a second connection for its domain on
  another node gets <conflict/>.
- Every room JID of the MUC service lives on one live node, chosen by
  rendezvous hashing over the node names (the same function is computed
  here to pick rooms on a given node): users on two nodes share one room
  (XEP-0045 §7.2, §7.4, §8.1). When its node dies (kill -9) the survivor
  serves the persistent room from storage (configuration, affiliations,
  subject, history); a XEP-0410 self-ping answers <not-acceptable/>, and
  joining again works. When a node joins, the rooms it now owns leave
  their old node, whose occupants get 110 + 332 (XEP-0045 §11.2).
- s2s (RFC 6120 §13, XEP-0220): a separate xmppd on another domain talks
  to users on both nodes, with dialback keys made on one node verified by
  the other (the dialback secret derives from cluster.secret).
"""

import json
import secrets
import time

import pytest

import pg_cluster
import redis_server
from conftest import Account, unique_user
from prosody_peer import TestCA
from test_cluster import (cluster_config, got_body, pg_dsn,  # noqa: F401 (fixtures)
                          redis, wait_status)
from muc_util import (MUC, NS_ADMIN, NS_DELAY, NS_DISCO_INFO, NS_MUC, NS_OWNER, NS_PING, NS_USER,
                      codes)
from xmpptest import (NS_CLIENT, NS_COMPONENT, PoliteClient, RawClient, component_handshake_value,
                      error_condition, free_port, q, raw_component, scaled, tostr)

pytestmark = pytest.mark.skipif(not (redis_server.available() and pg_cluster.available()),
                                reason="redis-server or PostgreSQL not installed")

GW = "gw.localhost"
GW_SECRET = "gateway-secret-for-the-cluster"
M64 = (1 << 64) - 1


# ---- placement, computed as the nodes do (server/cluster/place.c) ------------------

def score(node, key):
    h = 1469598103934665603
    for b in node.encode() + b"\0" + key.encode():
        h = ((h ^ b) * 1099511628211) & M64
    h ^= h >> 30
    h = (h * 0xbf58476d1ce4e5b9) & M64
    h ^= h >> 27
    h = (h * 0x94d049bb133111eb) & M64
    h ^= h >> 31
    return h


def owner(nodes, bare):
    return max(sorted(nodes), key=lambda n: score(n, bare))


def room_on(node, live, prefix="r"):
    """A fresh room JID that the live node set places on node."""
    while True:
        jid = "%s%s@%s" % (prefix, secrets.token_hex(4), MUC)
        if owner(live, jid) == node:
            return jid


# ---- nodes --------------------------------------------------------------------------

def start_node(server_factory, redis, pg_dsn, cluster, node, overrides=None):
    """A started node of cluster with mod_muc, a component listener and the
    component GW configured (as every node of a cluster would be)."""
    srv = server_factory(overrides, start=False)
    cluster_config(srv, redis, pg_dsn, cluster, node)
    srv.comp_port = free_port()
    srv.config["listeners"].append({"type": "component", "address": "127.0.0.1",
                                    "port": srv.comp_port})
    srv.config["components"] = {GW: {"secret": GW_SECRET}}
    muc = srv.config["modules"].get("muc") or {}  # the overrides' options stay
    muc["room_defaults"] = dict(muc.get("room_defaults") or {}, persistent=True)
    srv.config["modules"]["muc"] = muc
    srv.write_config()
    srv.start()
    return srv


@pytest.fixture
def cluster(server_factory, redis, pg_dsn):
    """cluster(n) -> n started nodes (node0…) that see each other;
    cluster.add(name) starts one more."""
    name = "p" + secrets.token_hex(4)
    made = []

    def make(n=2, overrides=None):
        for i in range(n):
            made.append(start_node(server_factory, redis, pg_dsn, name, "node%d" % i, overrides))
        for srv in made:
            wait_status(srv, lambda st: len(st["nodes"]) == n)
        return list(made)

    def add(node, overrides=None):
        srv = start_node(server_factory, redis, pg_dsn, name, node, overrides)
        made.append(srv)
        for s in made:
            wait_status(s, lambda st: len(st["nodes"]) == len(made))
        return srv
    make.add = add
    return make


def accounts(srv, n, domain="localhost"):
    out = []
    for _ in range(n):
        a = Account(unique_user("p"), secrets.token_urlsafe(12), domain=domain)
        srv.adduser(a.jid, a.password)
        out.append(a)
    return out


def login(srv, account, resource):
    c = PoliteClient(srv.port, domain=account.domain)
    c.login(account.user, account.password, resource=resource)
    c.send_presence()
    c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == c.jid)
    return c


def synced(*servers):
    """Waits until each node's copy of the registry holds as many sessions
    of every other node as that node reported at its last heartbeat: a
    stanza routed to a session that just bound elsewhere then finds it."""
    for srv in servers:
        wait_status(srv, lambda st: all(n.get("registered") == n["sessions"]
                                        for n in st["nodes"] if not n["self"]))


def close(*clients):
    for c in clients:
        c.__exit__(None, None, None)


def live_nodes_seen(srv, n):
    wait_status(srv, lambda st: len(st["nodes"]) == n)


def wait_stored(pg_dsn, room, pred, archived=0):
    """Waits until PostgreSQL holds the room's state with pred(state) true
    and at least `archived` archived messages: storage writes are
    asynchronous, and a node killed before they land takes them along."""
    deadline = time.monotonic() + scaled(10)
    while True:
        doc = pg_cluster.psql(pg_dsn, "SELECT value FROM xmppd_kv WHERE store = 'muc_rooms' "
                              "AND username = '%s'" % room).strip()
        n = int(pg_cluster.psql(pg_dsn, "SELECT count(*) FROM xmppd_archive WHERE store = "
                                "'muc_archive' AND username = '%s'" % room).strip())
        if doc and pred(json.loads(doc)) and n >= archived:
            return
        assert time.monotonic() < deadline, "never stored: %s, %d archived" % (doc, n)
        time.sleep(0.1)


# ---- MUC stanzas ----------------------------------------------------------------------

def is_presence_from(jid, type_=None):
    return lambda e: (e.tag == q(NS_CLIENT, "presence") and e.get("from") == jid and
                      e.get("type") == type_)


def join(c, room, nick, history=None):
    """XEP-0045 §7.2: enters room as nick; the self-presence (110)."""
    hist = "<history maxstanzas='%d'/>" % history if history is not None else ""
    c.send("<presence to='%s/%s'><x xmlns='%s'>%s</x></presence>" % (room, nick, NS_MUC, hist))
    el = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and
                    e.get("from") == "%s/%s" % (room, nick))
    assert e_ok(el), "join refused: %s" % error_condition(el)[1]
    assert 110 in codes(el), codes(el)
    return el


def e_ok(el):
    return el.get("type") != "error"


def iq(c, to, payload, type_="set"):
    iid = "i" + secrets.token_hex(4)
    c.send("<iq type='%s' to='%s' id='%s'>%s</iq>" % (type_, to, iid, payload))
    return c.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid)


def configure(c, room, fields):
    """XEP-0045 §10.2: the owner submits the configuration form."""
    f = "".join("<field var='%s'><value>%s</value></field>" % kv for kv in fields.items())
    r = iq(c, room, "<query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>"
           "<field var='FORM_TYPE'><value>%s#roomconfig</value></field>%s</x></query>"
           % (NS_OWNER, NS_MUC, f))
    assert r.get("type") == "result", error_condition(r)


def groupchat(c, room, body):
    c.send("<message to='%s' type='groupchat'><body>%s</body></message>" % (room, body))


def self_ping(c, occupant):
    """XEP-0410: (type, condition) of the answer, ('result', None) when in."""
    r = iq(c, occupant, "<ping xmlns='%s'/>" % NS_PING, "get")
    return ("result", None) if r.get("type") == "result" else error_condition(r)


def bodies(els, room):
    return [e.findtext(q(NS_CLIENT, "body")) for e in els
            if e.tag == q(NS_CLIENT, "message") and e.get("type") == "groupchat" and
            (e.get("from") or "").startswith(room + "/") and
            e.findtext(q(NS_CLIENT, "body")) is not None]


# ---- components ----------------------------------------------------------------------

def test_xep0114_component_on_one_node_reached_from_the_other(cluster):
    """XEP-0114 §3 across nodes: a component attached to node0 gets, in
    order, what a user on node1 sends to its domain (messages and an IQ),
    and its answers reach that user; a second component for the domain on
    node1 gets <conflict/> (one stream per domain, as on one node)."""
    n0, n1 = cluster(2)
    (bob,) = accounts(n0, 1)
    comp = raw_component(n0.comp_port, GW, GW_SECRET)
    cb = login(n1, bob, "b")
    synced(n0, n1)
    # the attach travels to node1 in milliseconds; a stanza sent before it
    # would get service-unavailable, so the first one is retried
    deadline = time.monotonic() + scaled(5)
    while True:
        cb.send("<message to='echo@%s' id='m0'><body>first</body></message>" % GW)
        got = comp.quiet(0.3, lambda e: e.tag == q(NS_COMPONENT, "message"))
        if got:
            break
        assert time.monotonic() < deadline, "the component never got a message from node1"
    assert got[0].get("from") == cb.jid
    for i in range(40):
        cb.send("<message to='echo@%s' id='m%d'><body>n%d</body></message>" % (GW, i + 1, i))
    seen = []
    while len(seen) < 40:
        el = comp.wait_for(lambda e: e.tag == q(NS_COMPONENT, "message"))
        seen.append(el.findtext(q(NS_COMPONENT, "body")))
    assert seen == ["n%d" % i for i in range(40)], "out of order or lost: %s" % seen
    # it answers back: a message and an IQ round trip
    comp.send("<message from='echo@%s' to='%s' type='chat'><body>pong</body></message>"
              % (GW, cb.jid))
    m = cb.wait_for(got_body("pong"))
    assert m.get("from") == "echo@" + GW
    cb.send("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:version'/></iq>" % GW)
    req = comp.wait_for(lambda e: e.tag == q(NS_COMPONENT, "iq") and e.get("id") == "v1")
    assert req.get("from") == cb.jid
    comp.send("<iq type='result' id='v1' from='%s' to='%s'/>" % (GW, cb.jid))
    res = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "v1")
    assert res.get("type") == "result" and res.get("from") == GW
    # one stream per domain, cluster-wide
    second = raw_component_refused(n1.comp_port)
    assert second == "conflict", second
    close(cb)
    comp.close()


def test_xep0114_component_known_to_a_node_that_joins_later(cluster):
    """XEP-0114 across nodes: a node that joins after the component
    attached learns it from the registry in Redis (not from the attach
    announcement, sent before it existed), and routes to it."""
    (n0,) = cluster(1)
    comp = raw_component(n0.comp_port, GW, GW_SECRET)
    n1 = cluster.add("node1")
    (bob,) = accounts(n0, 1)
    cb = login(n1, bob, "b")
    cb.send("<iq type='get' id='j1' to='%s'><query xmlns='jabber:iq:version'/></iq>" % GW)
    req = comp.wait_for(lambda e: e.tag == q(NS_COMPONENT, "iq") and e.get("id") == "j1")
    assert req.get("from") == cb.jid
    close(cb)
    comp.close()


def test_issue20_cluster_status_lists_components(cluster):
    """issue 20, "Membership" and "components attached to one node":
    `xmppctl cluster status` on every node lists, for each node, the
    components attached to it (JSON `components`, and an indented
    `component DOMAIN` line under the node in the text form, whose node
    lines keep their form); a component that leaves is no longer listed."""
    n0, n1 = cluster(2)

    def comps(st):
        return {n["node"]: n["components"] for n in st["nodes"]}
    for srv in (n0, n1):
        assert comps(wait_status(srv, lambda st: True)) == {"node0": [], "node1": []}
    comp = raw_component(n0.comp_port, GW, GW_SECRET)
    for srv in (n0, n1):
        wait_status(srv, lambda st: comps(st) == {"node0": [GW], "node1": []})
    for srv in (n0, n1):
        text = srv.ctl("cluster", "status")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        at = [i for i, ln in enumerate(lines) if ln.startswith("node0\t")]
        assert len(at) == 1 and lines[at[0] + 1] == "\tcomponent " + GW, text.stdout
        assert sum(1 for ln in lines if "component" in ln) == 1, text.stdout
        assert all(ln.endswith("sessions") or ln.endswith("(this node)")
                   for ln in lines if ln.startswith("node")), text.stdout
    comp.close()
    for srv in (n0, n1):
        wait_status(srv, lambda st: comps(st) == {"node0": [], "node1": []})


def raw_component_refused(port):
    """The stream error a second component for GW gets."""
    with RawClient(port, domain=GW) as rc:
        rc.open_stream(features=False, to=GW, xmlns=NS_COMPONENT, version=None, lang=None)
        rc.send("<handshake>%s</handshake>"
                % component_handshake_value(rc.reader.header.get("id"), GW_SECRET))
        el = rc.next_element()
        return error_condition(el)


def test_xep0114_component_gone_answers_service_unavailable(cluster):
    """XEP-0114 / RFC 6120 §8.3.3.19: once the component attached to node0
    disconnected, a message to its domain from a user on node1 gets
    service-unavailable, as on one node; the same after its node died
    (kill -9) with the component attached."""
    n0, n1 = cluster(2)
    (bob,) = accounts(n0, 1)
    cb = login(n1, bob, "b")
    synced(n0, n1)

    def bounced(mid):
        cb.send("<message to='x@%s' id='%s' type='chat'><body>?</body></message>" % (GW, mid))
        el = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == mid)
        return el.get("type"), error_condition(el)[1]

    comp = raw_component(n0.comp_port, GW, GW_SECRET)
    comp.send("<message from='probe@%s' to='%s' type='chat'><body>up</body></message>"
              % (GW, cb.jid))
    cb.wait_for(got_body("up"))
    # a clean close: a stanza racing a dropped socket is lost on one node too
    comp.close_stream()
    assert comp.wait_closed(scaled(5))
    comp.close()
    assert bounced("g1") == ("error", "service-unavailable")
    # attached again, then its node dies under it
    comp = raw_component(n0.comp_port, GW, GW_SECRET)
    deadline = time.monotonic() + scaled(5)
    while True:
        cb.send("<message to='x@%s' id='probe' type='chat'><body>?</body></message>" % GW)
        if comp.quiet(0.3, lambda e: e.tag == q(NS_COMPONENT, "message")):
            break
        assert time.monotonic() < deadline, "the component was never reached again"
    n0.kill()
    live_nodes_seen(n1, 1)
    assert bounced("g2") == ("error", "service-unavailable")
    close(cb)


# ---- rooms --------------------------------------------------------------------------------

def test_xep0045_users_on_two_nodes_share_one_room(cluster):
    """XEP-0045 §7.2, §7.4, §8.1 across nodes: the room lives on node0;
    its creator is on node1 and a second occupant on node0. Each sees the
    other's presence, each message and the subject exactly once (one room,
    not one per node, and no copy twice)."""
    n0, n1 = cluster(2)
    room = room_on("node0", ["node0", "node1"])
    alice, bob = accounts(n0, 2)
    ca = login(n1, alice, "a")
    cb = login(n0, bob, "b")
    synced(n0, n1)
    el = join(ca, room, "alice")
    assert 201 in codes(el), "the room was not created: %s" % codes(el)
    configure(ca, room, {"muc#roomconfig_roomname": "Shared", "muc#roomconfig_changesubject": "1"})
    join(cb, room, "bob")
    ca.wait_for(is_presence_from(room + "/bob"))
    ca.send("<message to='%s' type='groupchat'><subject>Across nodes</subject></message>" % room)
    groupchat(ca, room, "from-alice")
    groupchat(cb, room, "from-bob")
    period = scaled(1.5)
    got_a, got_b = ca.quiet(period), cb.quiet(period)
    # sent at once from two nodes: either may come first, but one room
    # gives both occupants the same order
    assert sorted(bodies(got_a, room)) == ["from-alice", "from-bob"], bodies(got_a, room)
    assert bodies(got_a, room) == bodies(got_b, room)
    for got in (got_a, got_b):
        # (the empty subject of §7.2.15 that ends bob's join may be here too)
        subjects = [e for e in got if e.findtext(q(NS_CLIENT, "subject"))]
        assert [e.findtext(q(NS_CLIENT, "subject")) for e in subjects] == ["Across nodes"]
    # presence: bob leaving is seen once by alice
    cb.send("<presence to='%s/bob' type='unavailable'/>" % room)
    left = [e for e in ca.quiet(period) if is_presence_from(room + "/bob", "unavailable")(e)]
    assert len(left) == 1
    close(ca, cb)


def test_xep0045_room_survives_its_node_kill9(cluster, pg_dsn):
    """Issue 20: kill -9 of the node a persistent room lives on; the
    survivor serves it from storage: its configuration (name), its
    affiliations (owner, member), its subject and its history. A XEP-0410
    self-ping answers <not-acceptable/> (the occupant is no longer in it),
    and joining again works (XEP-0045 §7.2, history with <delay/>)."""
    n0, n1 = cluster(2)
    room = room_on("node0", ["node0", "node1"])
    alice, bob, carol = accounts(n1, 3)
    ca = login(n1, alice, "a")
    cb = login(n1, bob, "b")
    synced(n0, n1)
    join(ca, room, "alice")
    configure(ca, room, {"muc#roomconfig_roomname": "Survivor",
                         "muc#roomconfig_persistentroom": "1"})
    r = iq(ca, room, "<query xmlns='%s'><item affiliation='member' jid='%s'/></query>"
           % (NS_ADMIN, carol.jid))
    assert r.get("type") == "result", error_condition(r)
    join(cb, room, "bob")
    ca.send("<message to='%s' type='groupchat'><subject>Before the crash</subject></message>"
            % room)
    ca.wait_for(lambda e: e.findtext(q(NS_CLIENT, "subject")) == "Before the crash")
    for i in range(3):
        groupchat(cb, room, "h%d" % i)
        ca.wait_for(lambda e, i=i: e.findtext(q(NS_CLIENT, "body")) == "h%d" % i)
    assert self_ping(ca, room + "/alice") == ("result", None)
    wait_stored(pg_dsn, room, lambda d: (d["config"].get("name") == "Survivor" and
                                         carol.jid in d["affiliations"] and
                                         (d.get("subject") or {}).get("text") == "Before the crash"),
                archived=3)
    n0.kill()
    live_nodes_seen(n1, 1)
    # node0 said nothing when it died: the self-ping tells the client
    assert self_ping(ca, room + "/alice") == ("cancel", "not-acceptable")
    el = join(ca, room, "alice", history=10)
    assert 201 not in codes(el), "the room was made anew instead of restored"
    it = el.find(q(NS_USER, "x")).find(q(NS_USER, "item"))
    assert it.get("affiliation") == "owner"
    got = ca.quiet(scaled(1))
    hist = [e for e in got if e.find(q(NS_DELAY, "delay")) is not None]
    assert bodies(hist, room) == ["h0", "h1", "h2"], bodies(got, room)
    subj = [e for e in got if e.find(q(NS_CLIENT, "subject")) is not None]
    assert subj and subj[-1].findtext(q(NS_CLIENT, "subject")) == "Before the crash"
    info = iq(ca, room, "<query xmlns='%s'/>" % NS_DISCO_INFO, "get")
    ident = info.find(q(NS_DISCO_INFO, "query")).find(q(NS_DISCO_INFO, "identity"))
    assert ident.get("name") == "Survivor"
    features = {f.get("var") for f in info.iter(q(NS_DISCO_INFO, "feature"))}
    assert "muc_persistent" in features
    members = iq(ca, room, "<query xmlns='%s'><item affiliation='member'/></query>" % NS_ADMIN,
                 "get")
    assert [i.get("jid") for i in members.iter(q(NS_ADMIN, "item"))] == [carol.jid]
    # bob rejoins too, and they talk in the restored room
    assert self_ping(cb, room + "/bob") == ("cancel", "not-acceptable")
    join(cb, room, "bob")
    groupchat(cb, room, "after")
    ca.wait_for(lambda e: e.findtext(q(NS_CLIENT, "body")) == "after")
    close(ca, cb)


def test_xep0045_18_1_2_occupant_of_a_dead_node_leaves(cluster):
    """XEP-0045 §18.1.2 (ghosts) across nodes: of three nodes, the one an
    occupant is connected to dies (kill -9); the room, on another node,
    removes that occupant (unavailable presence to the others) whichever
    node spoke for the dead one, instead of keeping a ghost."""
    n0, n1, n2 = cluster(3)
    room = room_on("node0", ["node0", "node1", "node2"])
    alice, bob = accounts(n0, 2)
    ca = login(n1, alice, "a")
    cb = login(n2, bob, "b")
    synced(n0, n1, n2)
    join(ca, room, "alice")
    configure(ca, room, {})
    join(cb, room, "bob")
    ca.wait_for(is_presence_from(room + "/bob"))
    n2.kill()
    el = ca.wait_for(is_presence_from(room + "/bob", "unavailable"), timeout=scaled(10))
    assert 110 not in codes(el)
    close(ca)


def test_xep0045_11_2_room_moves_to_a_joining_node(cluster, pg_dsn):
    """Issue 20 "moved when the node set changes": node1 joins a running
    node0; a room the pair places on node1 leaves node0, whose occupant
    gets unavailable presence with 110 and 332 (XEP-0045 §11.2); joining
    again reaches the room on node1, restored from storage (still
    configured, not created anew)."""
    (n0,) = cluster(1)
    room = room_on("node1", ["node0", "node1"])
    (alice,) = accounts(n0, 1)
    ca = login(n0, alice, "a")
    join(ca, room, "alice")
    configure(ca, room, {"muc#roomconfig_roomname": "Mover",
                         "muc#roomconfig_persistentroom": "1"})
    wait_stored(pg_dsn, room, lambda d: d["config"].get("name") == "Mover")
    cluster.add("node1")
    el = ca.wait_for(is_presence_from(room + "/alice", "unavailable"), timeout=scaled(10))
    assert {110, 332} <= codes(el), codes(el)
    el = join(ca, room, "alice")
    assert 201 not in codes(el)
    info = iq(ca, room, "<query xmlns='%s'/>" % NS_DISCO_INFO, "get")
    ident = info.find(q(NS_DISCO_INFO, "query")).find(q(NS_DISCO_INFO, "identity"))
    assert ident.get("name") == "Mover"
    close(ca)


# ---- s2s ----------------------------------------------------------------------------------

def test_rfc6120_13_s2s_with_users_on_both_nodes(server_factory, redis, pg_dsn, tmp_path):
    """RFC 6120 §13 and XEP-0220 across nodes: b.example (a separate xmppd,
    dialback only, reaching a.example through node1) and users of a.example
    on node0 and node1 message each other both ways. Stanzas b.example
    sends over its one stream reach the user on node0 through node1, and
    node0's own outgoing stream is verified by node1 (dialback keys are
    the same on every node: the secret derives from cluster.secret)."""
    ca_a = TestCA(tmp_path / "ca-a")
    ca_b = TestCA(tmp_path / "ca-b")
    a_cert, b_cert = ca_a.issue("a.example"), ca_b.issue("b.example")
    ports = [free_port(), free_port()]
    b_port = free_port()
    overrides = []
    for i in range(2):
        overrides.append({"tls": {"cert": str(a_cert[0]), "key": str(a_cert[1])},
                      "hosts": {"localhost": None, "a.example": {}},
                      "s2s": {"authentication": "dialback",
                              "routes": {"b.example": "127.0.0.1:%d" % b_port}}})
    made = []
    name = "s" + secrets.token_hex(4)
    for i, ov in enumerate(overrides):
        srv = server_factory(ov, start=False)
        cluster_config(srv, redis, pg_dsn, name, "node%d" % i)
        srv.config["listeners"].append({"type": "s2s", "address": "127.0.0.1", "port": ports[i]})
        srv.write_config()
        srv.start()
        made.append(srv)
    for srv in made:
        live_nodes_seen(srv, 2)
    n0, n1 = made
    other = server_factory({"tls": {"cert": str(b_cert[0]), "key": str(b_cert[1])},
                            "hosts": {"localhost": None, "b.example": {}},
                            "s2s": {"authentication": "dialback", "bidi": False,
                                    "routes": {"a.example": "127.0.0.1:%d" % ports[1]}}},
                           start=False)
    other.config["listeners"].append({"type": "s2s", "address": "127.0.0.1", "port": b_port})
    other.config["modules"].update({"roster": True, "presence": True})
    other.write_config()
    other.start()
    u0, u1 = accounts(n0, 2, domain="a.example")
    (w,) = accounts(other, 1, domain="b.example")
    c0 = login(n0, u0, "n0")
    c1 = login(n1, u1, "n1")
    cw = login(other, w, "w")
    synced(n0, n1)
    timeout = scaled(20)
    for c, tag in ((c0, "from-node0"), (c1, "from-node1")):
        c.send("<message to='%s' type='chat'><body>%s</body></message>" % (cw.jid, tag))
        m = cw.wait_for(got_body(tag), timeout=timeout)
        assert m.get("from") == c.jid
    for c, tag in ((c0, "to-node0"), (c1, "to-node1")):
        cw.send("<message to='%s' type='chat'><body>%s</body></message>" % (c.jid, tag))
        m = c.wait_for(got_body(tag), timeout=timeout)
        assert m.get("from") == cw.jid
    close(c0, c1, cw)


def test_redis_away_room_on_other_node_answers_wait(server_factory, pg_dsn):
    """docs/cluster.md: with Redis stopped, a message to a room placed on
    another node gets <recipient-unavailable/> (RFC 6120 §8.3.3.13, type
    wait) instead of a second room made here; Redis back (restarted empty),
    the room is still on its node with its occupant, and talking works."""
    r = redis_server.Redis().start()
    try:
        name = "p" + secrets.token_hex(4)
        n0 = start_node(server_factory, r, pg_dsn, name, "node0")
        n1 = start_node(server_factory, r, pg_dsn, name, "node1")
        for srv in (n0, n1):
            live_nodes_seen(srv, 2)
        room = room_on("node0", ["node0", "node1"])
        (alice,) = accounts(n0, 1)
        ca = login(n1, alice, "a")
        synced(n0, n1)
        join(ca, room, "alice")
        configure(ca, room, {})
        r.stop()
        wait_status(n1, lambda st: not st["redis_up"])
        ca.send("<message to='%s' type='groupchat' id='down'><body>x</body></message>" % room)
        err = ca.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == "down")
        assert error_condition(err) == ("wait", "recipient-unavailable")
        r.start()
        for srv in (n0, n1):
            wait_status(srv, lambda st: st["redis_up"] and len(st["nodes"]) == 2,
                        timeout=scaled(15))
        synced(n0, n1)
        assert self_ping(ca, room + "/alice") == ("result", None)
        groupchat(ca, room, "back")
        ca.wait_for(lambda e: e.findtext(q(NS_CLIENT, "body")) == "back")
        close(ca)
    finally:
        r.destroy()


# ---- a pubsub service (XEP-0060) placed whole ------------------------------------------

PUBSUB = "pubsub.localhost"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = NS_PUBSUB + "#owner"
NS_PUBSUB_EVENT = NS_PUBSUB + "#event"


def ps_iq(c, body, type_="set", owner=False):
    r = c.iq("<pubsub xmlns='%s'>%s</pubsub>" % (NS_PUBSUB_OWNER if owner else NS_PUBSUB, body),
             type_=type_, to=PUBSUB)
    assert r.get("type") == "result", tostr(r)
    return r


def ps_event(kind, node):
    """An event notification (XEP-0060 §7.1.2.1 and following) of kind
    ('items', 'delete', 'configuration') about node."""
    def pred(e):
        ev = e.find(q(NS_PUBSUB_EVENT, "event")) if e.tag == q(NS_CLIENT, "message") else None
        return (ev is not None and e.get("from") == PUBSUB and
                any(x.tag == q(NS_PUBSUB_EVENT, kind) and x.get("node") == node for x in ev))
    return pred


def test_xep0060_service_placed_whole_notifies_once_across_nodes(cluster):
    """issue 20, served domains: mod_pubsub keeps its whole service in
    memory (nodes, subscriptions, items), so in a cluster the service
    domain lives on one node (rendezvous hash of its name) and every node
    sends it there. The publisher is on the other node, one subscriber on
    each node: a subscription (§6.1), a publish (§7.1.2.1), a retraction
    with notify (§7.2.2.1), a configuration change (§8.2.4) and a node
    deletion (§8.4.2) each reach each subscriber exactly once, and the
    items read back from either node are the same."""
    n0, n1 = cluster(2, overrides={"modules": {"disco": True, "pubsub": {}}})
    home = owner(["node0", "node1"], PUBSUB)
    srv = {"node0": n0, "node1": n1}
    other = srv["node1" if home == "node0" else "node0"]
    alice, bob, carol = accounts(n0, 3)
    pub = login(other, alice, "pub")
    near = login(srv[home], bob, "near")
    far = login(other, carol, "far")
    synced(n0, n1)
    node = "news-" + secrets.token_hex(3)
    ps_iq(pub, "<create node='%s'/>" % node)
    for c in (near, far):
        ps_iq(c, "<subscribe node='%s' jid='%s'/>" % (node, c.jid))

    def once(kind):
        for c in (near, far):
            c.wait_for(ps_event(kind, node))
        for c in (near, far):
            assert c.quiet(scaled(0.5), pred=ps_event(kind, node)) == [], \
                "a second %s notification reached %s" % (kind, c.jid)

    ps_iq(pub, "<publish node='%s'><item id='i1'><entry xmlns='urn:xmpp:tmp:e'/></item></publish>"
          % node)
    once("items")
    for c in (pub, near, far):
        r = ps_iq(c, "<items node='%s'/>" % node, type_="get")
        items = r.find(q(NS_PUBSUB, "pubsub")).find(q(NS_PUBSUB, "items"))
        assert [i.get("id") for i in items.findall(q(NS_PUBSUB, "item"))] == ["i1"]
    ps_iq(pub, "<retract node='%s' notify='true'><item id='i1'/></retract>" % node)
    once("items")  # the retraction is an <items><retract/></items> event
    ps_iq(pub, "<configure node='%s'><x xmlns='jabber:x:data' type='submit'>"
          "<field var='FORM_TYPE' type='hidden'><value>%s#node_config</value></field>"
          "<field var='pubsub#notify_config'><value>1</value></field>"
          "<field var='pubsub#title'><value>T</value></field></x></configure>"
          % (node, NS_PUBSUB), owner=True)
    once("configuration")
    ps_iq(pub, "<delete node='%s'/>" % node, owner=True)
    once("delete")
    close(pub, near, far)


def test_xep0060_service_moves_when_its_node_dies(cluster):
    """issue 20, served domains: kill -9 of the node the pubsub service
    lives on; once the survivor dropped it, the survivor serves the
    service from storage: the node, its item and the subscription made
    before are there, and a new publication notifies the subscriber once."""
    n0, n1 = cluster(2, overrides={"modules": {"disco": True, "pubsub": {}}})
    srv = {"node0": n0, "node1": n1}
    home = owner(["node0", "node1"], PUBSUB)
    survivor = srv["node1" if home == "node0" else "node0"]
    alice, bob = accounts(n0, 2)
    pub = login(survivor, alice, "pub")
    sub = login(survivor, bob, "sub")
    node = "moving-" + secrets.token_hex(3)
    ps_iq(pub, "<create node='%s'/>" % node)
    ps_iq(sub, "<subscribe node='%s' jid='%s'/>" % (node, sub.jid))
    ps_iq(pub, "<publish node='%s'><item id='before'><e xmlns='urn:xmpp:tmp:e'/></item></publish>"
          % node)
    sub.wait_for(ps_event("items", node))
    time.sleep(scaled(0.3))  # the service's writes reached PostgreSQL
    srv[home].kill()
    live_nodes_seen(survivor, 1)
    deadline = time.monotonic() + scaled(5)
    while True:
        r = pub.iq("<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PUBSUB, node), to=PUBSUB)
        if r.get("type") == "result":
            break
        assert error_condition(r)[1] == "recipient-unavailable", tostr(r)
        assert time.monotonic() < deadline, "the survivor never served the service"
        time.sleep(0.2)
    items = r.find(q(NS_PUBSUB, "pubsub")).find(q(NS_PUBSUB, "items"))
    assert [i.get("id") for i in items.findall(q(NS_PUBSUB, "item"))] == ["before"]
    ps_iq(pub, "<publish node='%s'><item id='after'><e xmlns='urn:xmpp:tmp:e'/></item></publish>"
          % node)
    sub.wait_for(ps_event("items", node))
    assert sub.quiet(scaled(0.5), pred=ps_event("items", node)) == []
    close(pub, sub)
