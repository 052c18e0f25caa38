"""Clustering (docs/cluster.md): two xmppd nodes on this machine serving one
domain, sharing one PostgreSQL database and one private redis-server.

Users on different nodes reach each other by full JID (RFC 6121 §8.5.3.1)
and bare JID (§8.5.2.1.1, the highest priority across both nodes), IQs
cross nodes, presence subscriptions and presence too (RFC 6121 §3, §4); a
resource bound on the other node replaces the older session with
<conflict/> (RFC 6120 §7.7.2.2); a node killed with SIGKILL vanishes from
the others' view after cluster.node_timeout; frames that are not signed
with the cluster's secret are dropped; `xmppctl cluster status` lists the
live nodes and `xmppctl check` refuses a cluster on SQLite.
"""

import json
import shutil
import subprocess
import secrets
import socket
import time
from pathlib import Path

import pytest

import pg_cluster
import redis_server
from conftest import Account, unique_user
from xmpptest import free_port, NS_CLIENT, PoliteClient, XMPPTestError, error_condition, q, scaled, tostr

pytestmark = pytest.mark.skipif(not (redis_server.available() and pg_cluster.available()),
                                reason="redis-server or PostgreSQL not installed")

SECRET = "cluster-test-secret-0123456789"
HEARTBEAT_MS = 200
NODE_TIMEOUT_MS = 1000
DELIVERY_TIMEOUT_MS = 1600
NS_PING = "urn:xmpp:ping"


@pytest.fixture(scope="module")
def redis():
    r = redis_server.Redis(password="redis-pw-" + secrets.token_hex(4)).start()
    yield r
    r.destroy()


@pytest.fixture(scope="module")
def pg_dsn():
    return pg_cluster.fresh_database_dsn("xcl")


def cluster_config(srv, redis, pg_dsn, cluster, node, secret=SECRET):
    """srv's configuration turned into a node of cluster: storage_pgsql on
    the shared database, roster and presence, the cluster section."""
    cfg = srv.config
    cfg["storage"] = "pgsql"
    mods = {k: v for k, v in cfg["modules"].items() if k not in ("storage_sqlite", "storage_pgsql")}
    cfg["modules"] = dict([("storage_pgsql", {"connect": pg_dsn, "pool_size": 2})] + list(mods.items()))
    cfg["modules"].update({"roster": True, "presence": True})
    cfg["cluster"] = {"name": cluster, "node": node, "redis": redis.uri, "secret": secret,
                      "heartbeat": "%dms" % HEARTBEAT_MS, "node_timeout": "%dms" % NODE_TIMEOUT_MS,
                      "delivery_timeout": "%dms" % DELIVERY_TIMEOUT_MS}
    srv.write_config()


def start_nodes(server_factory, redis, pg_dsn, name, n, extra=None):
    """n started nodes of cluster name that see each other (extra: more
    configuration, merged at the top level)."""
    out = []
    for i in range(n):
        srv = server_factory(start=False)
        cluster_config(srv, redis, pg_dsn, name, "node%d" % i)
        for k, v in (extra or {}).items():
            srv.config.setdefault(k, {}).update(v)
        srv.write_config()
        srv.start()
        out.append(srv)
    for srv in out:
        wait_status(srv, lambda st: len(st["nodes"]) == n)
    return out


@pytest.fixture
def nodes(server_factory, redis, pg_dsn):
    """nodes(n) -> n started nodes of a fresh cluster that see each other."""
    name = "t" + secrets.token_hex(4)

    def make(n=2, extra=None):
        return start_nodes(server_factory, redis, pg_dsn, name, n, extra)
    make.cluster = name
    return make


def status(srv):
    r = srv.ctl("-j", "cluster", "status")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def wait_status(srv, pred, timeout=None):
    deadline = time.monotonic() + (timeout or scaled(10))
    while True:
        st = status(srv)
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError("cluster status never matched: %s" % json.dumps(st))
        time.sleep(0.1)


def node_sessions(st, node):
    for n in st["nodes"]:
        if n["node"] == node:
            return n.get("registered", n["sessions"])
    return None


def new_accounts(srv, n):
    out = []
    for _ in range(n):
        a = Account(unique_user("c"), secrets.token_urlsafe(12))
        srv.adduser(a.jid, a.password)
        out.append(a)
    return out


def login(srv, account, resource, priority=None):
    c = PoliteClient(srv.port)
    c.login(account.user, account.password, resource=resource)
    if priority is not None:
        c.send_presence(priority=priority)
        c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == c.jid)
    return c


def registered(srv, full_jids, node):
    """Waits until srv's copy of the registry holds exactly n sessions of
    node (its heartbeat count and its registry entries)."""
    wait_status(srv, lambda st: node_sessions(st, node) == full_jids)


def message(frm, to, body, type_="chat"):
    frm.send("<message to='%s' type='%s'><body>%s</body></message>" % (to, type_, body))


def got_body(body):
    return lambda e: (e.tag == q(NS_CLIENT, "message") and
                      e.findtext(q(NS_CLIENT, "body")) == body)


def test_cluster_status_lists_live_nodes(nodes):
    """`xmppctl cluster status` on either node lists both, with version
    and session count; the text form names this node."""
    a, b = nodes(2)
    for srv in (a, b):
        st = status(srv)
        assert st["cluster"] == nodes.cluster
        assert sorted(n["node"] for n in st["nodes"]) == ["node0", "node1"]
        assert all(n["version"] for n in st["nodes"])
        assert [n["node"] for n in st["nodes"] if n["self"]] == [srv.config["cluster"]["node"]]
    text = a.ctl("cluster", "status")
    assert text.returncode == 0, text.stderr
    assert "node0" in text.stdout and "node1" in text.stdout and "(this node)" in text.stdout


def test_rfc6121_8_5_3_1_chat_and_iq_between_nodes(nodes):
    """RFC 6121 §8.5.3.1 and §8.5.2.1.1: a message to a full JID and to a
    bare JID whose session is on the other node is delivered there, with
    the 'from' stamped by the sender's node; an IQ to a full JID on the
    other node gets its answer back across."""
    na, nb = nodes(2)
    alice, bob = new_accounts(na, 2)
    ca = login(na, alice, "pc", priority=0)
    cb = login(nb, bob, "phone", priority=0)
    registered(na, 1, "node1")
    registered(nb, 1, "node0")
    message(ca, cb.jid, "hello-full")
    m = cb.wait_for(got_body("hello-full"))
    assert m.get("from") == ca.jid
    message(cb, alice.jid, "hello-bare")
    m = ca.wait_for(got_body("hello-bare"))
    assert m.get("from") == cb.jid
    ca.send("<iq type='get' id='p1' to='%s'><ping xmlns='%s'/></iq>" % (cb.jid, NS_PING))
    ping = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "p1")
    assert ping.get("from") == ca.jid
    cb.send("<iq type='result' id='p1' to='%s'/>" % ca.jid)
    res = ca.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "p1")
    assert res.get("type") == "result" and res.get("from") == cb.jid
    for c in (ca, cb):
        c.__exit__(None, None, None)


def test_rfc6121_8_5_2_1_1_bare_jid_highest_priority_across_nodes(nodes):
    """RFC 6121 §8.5.2.1.1: a message to a bare JID goes to the available
    resource with the highest priority, whichever node it is on, and not
    to the lower one."""
    na, nb = nodes(2)
    alice, bob = new_accounts(na, 2)
    ca = login(na, alice, "pc", priority=0)
    lo = login(na, bob, "lo", priority=1)
    hi = login(nb, bob, "hi", priority=5)
    registered(na, 1, "node1")
    message(ca, bob.jid, "to-the-highest")
    hi.wait_for(got_body("to-the-highest"))
    assert lo.quiet(scaled(0.5), pred=got_body("to-the-highest")) == []
    for c in (ca, lo, hi):
        c.__exit__(None, None, None)


def pres(typ, frm):
    """A presence of type typ (None: available) from bare JID frm."""
    return lambda e: (e.tag == q(NS_CLIENT, "presence") and e.get("type") == typ and
                      (e.get("from") or "").split("/")[0] == frm)


def subscribe(ca, cb, a, b):
    """a (client ca) subscribes to b's presence (client cb approves):
    RFC 6121 §3.1; returns b's available presence as a receives it."""
    ca.send("<presence to='%s' type='subscribe'/>" % b.jid)
    cb.wait_for(pres("subscribe", a.jid))
    cb.send("<presence to='%s' type='subscribed'/>" % a.jid)
    ca.wait_for(pres("subscribed", b.jid))
    # b's current presence follows the approval (RFC 6121 §3.1.5)
    return ca.wait_for(pres(None, b.jid))


def test_rfc6121_3_presence_subscription_and_presence_across_nodes(nodes):
    """RFC 6121 §3.1 and §4.2: a subscription request, its approval, and
    the available and unavailable presence of a contact on the other node
    arrive; a user logging in later gets the contact's presence through
    the probe (§4.3), answered from the replicated registry."""
    na, nb = nodes(2)
    alice, bob = new_accounts(na, 2)
    ca = login(na, alice, "pc", priority=0)
    cb = login(nb, bob, "pc", priority=0)
    registered(na, 1, "node1")
    registered(nb, 1, "node0")
    avail = subscribe(ca, cb, alice, bob)
    assert avail.get("from") == cb.jid
    cb.send("<presence type='unavailable'/>")
    ca.wait_for(pres("unavailable", bob.jid))
    cb.send("<presence><priority>2</priority></presence>")
    ca.wait_for(pres(None, bob.jid))
    ca.__exit__(None, None, None)
    time.sleep(scaled(0.3))
    # a new login of alice on node0 probes bob (on node1): node0 answers
    # from the presence bob's node registered
    ca2 = login(na, alice, "laptop")
    ca2.send("<presence/>")
    p = ca2.wait_for(pres(None, bob.jid))
    assert p.get("from") == cb.jid and p.findtext(q(NS_CLIENT, "priority")) == "2"
    for c in (ca2, cb):
        c.__exit__(None, None, None)


def test_rfc6120_7_7_2_2_resource_conflict_across_nodes(nodes):
    """RFC 6120 §7.7.2.2: binding a resource that is bound on the other
    node ends the older session with the <conflict/> stream error; the
    new session is the one reached afterwards."""
    na, nb = nodes(2)
    alice, bob = new_accounts(na, 2)
    old = login(na, bob, "same", priority=0)
    registered(nb, 1, "node0")
    new = login(nb, bob, "same", priority=0)
    old.expect_stream_error("conflict", timeout=scaled(5))
    old.close()
    ca = login(na, alice, "pc", priority=0)
    registered(na, 1, "node1")
    message(ca, bob.jid + "/same", "after-conflict")
    new.wait_for(got_body("after-conflict"))
    for c in (ca, new):
        c.__exit__(None, None, None)


def test_rfc6120_7_6_2_1_resource_limit_counts_every_node(nodes):
    """limits.max_resources counts an account's resources on every node: a
    bind beyond it, whichever node it is on, is refused with
    <resource-constraint/> (RFC 6120 §7.6.2.1, type wait)."""
    na, nb = nodes(2, extra={"limits": {"max_resources": 2}})
    bob, = new_accounts(na, 1)
    c1 = login(na, bob, "one", priority=0)
    c2 = login(nb, bob, "two", priority=0)
    registered(na, 1, "node1")
    c3 = PoliteClient(na.port)
    with pytest.raises(XMPPTestError) as e:
        c3.login(bob.user, bob.password, resource="three")
    assert "resource-constraint" in str(e.value)
    c3.close()
    for c in (c1, c2):
        c.__exit__(None, None, None)


def test_killed_node_sessions_disappear(nodes):
    """A node killed with SIGKILL stops renewing its registration: within
    cluster.node_timeout (plus a heartbeat) the other nodes drop it and its
    sessions, and the one that noticed first sends <presence
    type='unavailable'/> on their behalf to their contacts (RFC 6121
    §4.5.2), once; a chat message to such a session is then handled as for
    any resource that is gone (RFC 6121 §8.5.3.2.1: here, with no offline
    storage, <service-unavailable/>)."""
    na, nb, nc = nodes(3)
    alice, bob, carol = new_accounts(na, 3)
    ca = login(na, alice, "pc", priority=0)
    cc = login(nc, carol, "pc", priority=0)
    cb = login(nb, bob, "pc", priority=0)
    registered(na, 1, "node1")
    registered(nc, 1, "node1")
    subscribe(ca, cb, alice, bob)
    subscribe(cc, cb, carol, bob)
    bob_jid = cb.jid
    message(ca, bob_jid, "before-kill")
    cb.wait_for(got_body("before-kill"))
    time.sleep(scaled(0.3))  # bob's roster, changed by the subscriptions, is stored
    nb.kill()
    cb.close()
    t0 = time.monotonic()
    st = wait_status(na, lambda st: [n["node"] for n in st["nodes"]] == ["node0", "node2"],
                     timeout=scaled(NODE_TIMEOUT_MS / 1000 * 5))
    took = time.monotonic() - t0
    assert took <= scaled((NODE_TIMEOUT_MS + 3 * HEARTBEAT_MS) / 1000 + 1), took
    assert st["nodes"][0]["self"]
    wait_status(nc, lambda st: [n["node"] for n in st["nodes"]] == ["node2", "node0"])
    for c in (ca, cc):
        gone = c.wait_for(pres("unavailable", bob.jid))
        assert gone.get("from") == bob_jid
        assert c.quiet(scaled(0.5), pred=pres("unavailable", bob.jid)) == [], "sent twice"
    message(ca, bob_jid, "after-kill")
    err = ca.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "error")
    assert error_condition(err)[1] == "service-unavailable"
    assert any("node node1 missed its heartbeats" in s.read_log() for s in (na, nc))
    told = [s for s in (na, nc) if "its 1 sessions are gone (their contacts are told)" in s.read_log()]
    assert len(told) == 1, "exactly one node speaks for the dead node's sessions"
    for c in (ca, cc):
        c.__exit__(None, None, None)


def redis_clients(redis, name_prefix):
    """Redis's client IDs whose connection name starts with name_prefix."""
    out = []
    for line in redis.command("CLIENT", "LIST").splitlines():
        f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
        if f.get("name", "").startswith(name_prefix):
            out.append(f["id"])
    return out


def kill_clients(redis, name_prefix):
    ids = redis_clients(redis, name_prefix)
    assert ids, "no Redis connection named %s*" % name_prefix
    for i in ids:
        assert redis.command("CLIENT", "KILL", "ID", i) == 1


def bodies(c, prefix, n, timeout):
    """The bodies starting with prefix that c receives until it has n (or
    the time is out), in order of arrival."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        for e in c.quiet(0.2, pred=lambda e: e.tag == q(NS_CLIENT, "message") and
                         (e.findtext(q(NS_CLIENT, "body")) or "").startswith(prefix)):
            got.append(e.findtext(q(NS_CLIENT, "body")))
    return got


def test_issue20_delivery_survives_the_readers_reconnection(nodes, redis):
    """Issue 20, delivery rule: frames for a node wait in its Redis stream
    while its reading connection is re-established. Node B's stream reader
    and subscriber connections are killed in Redis (CLIENT KILL) twice while
    A sends 200 messages to B's user, by full and by bare JID (RFC 6121
    §8.5.3.1, §8.5.2.1.1): all 200 arrive, once each, in the order sent."""
    na, nb = nodes(2)
    alice, bob = new_accounts(na, 2)
    ca = login(na, alice, "pc", priority=0)
    cb = login(nb, bob, "phone", priority=0)
    registered(na, 1, "node1")
    prefix = "%s:node1:" % nodes.cluster
    for i in range(200):
        message(ca, cb.jid if i % 2 else bob.jid, "seq-%03d" % i)
        if i in (40, 120):
            kill_clients(redis, prefix + "stream")
            kill_clients(redis, prefix + "subscriber")
        if i % 20 == 0:
            time.sleep(0.05)  # the kills land while frames are in flight
    got = bodies(cb, "seq-", 200, scaled(20))
    assert got == ["seq-%03d" % i for i in range(200)]
    assert cb.quiet(scaled(0.5), pred=got_body("seq-000")) == [], "delivered twice"
    assert "lost the Redis stream reader" in nb.read_log()
    for c in (ca, cb):
        c.__exit__(None, None, None)


def test_issue20_frames_for_a_dead_node_are_bounced_or_stored(nodes):
    """Issue 20, delivery rule: node B is killed with SIGKILL; what A had
    already sent into B's stream is taken back after cluster.delivery_timeout:
    messages and IQs to B's full JID get <recipient-unavailable/> (RFC 6120
    §8.3.3.13, type wait), messages to the account's bare JID go to offline
    storage as when the account is offline (RFC 6121 §8.5.2.2.1), and the
    user gets them when logging in again on A. Nothing is silently lost."""
    na, nb = nodes(2, extra={"modules": {"offline": True}})
    alice, bob = new_accounts(na, 2)
    ca = login(na, alice, "pc", priority=0)
    cb = login(nb, bob, "phone", priority=0)
    registered(na, 1, "node1")
    bob_full = cb.jid
    nb.kill()
    cb.close()
    t0 = time.monotonic()
    for i in range(10):
        message(ca, bob_full, "full-%d" % i)
        message(ca, bob.jid, "bare-%d" % i)
    ca.send("<iq type='get' id='dead-ping' to='%s'><ping xmlns='%s'/></iq>" % (bob_full, NS_PING))
    errors = []
    deadline = time.monotonic() + scaled(DELIVERY_TIMEOUT_MS / 1000 + 5)
    while len(errors) < 11 and time.monotonic() < deadline:
        errors += ca.quiet(0.2, pred=lambda e: e.get("type") == "error")
    took = time.monotonic() - t0
    msgs = sorted(e.findtext(q(NS_CLIENT, "body")) for e in errors
                  if e.tag == q(NS_CLIENT, "message"))
    assert msgs == sorted("full-%d" % i for i in range(10)), [tostr(e) for e in errors]
    iq = [e for e in errors if e.tag == q(NS_CLIENT, "iq")]
    assert len(iq) == 1 and iq[0].get("id") == "dead-ping"
    for e in errors:
        assert error_condition(e) == ("wait", "recipient-unavailable")
        assert e.get("from") == bob_full
    assert took >= DELIVERY_TIMEOUT_MS / 1000 - 0.3, "bounced before the timeout: %.2f s" % took
    assert took <= scaled(DELIVERY_TIMEOUT_MS / 1000 + 2), took
    # the bare-JID messages were stored: bob finds them on node A
    time.sleep(scaled(0.5))
    cb2 = PoliteClient(na.port)
    cb2.login(bob.user, bob.password, resource="again")
    cb2.send_presence(priority=0)
    got = bodies(cb2, "bare-", 10, scaled(10))
    assert sorted(got) == sorted("bare-%d" % i for i in range(10))
    assert ca.quiet(scaled(0.5), pred=lambda e: e.get("type") == "error") == [], "bounced twice"
    for c in (ca, cb2):
        c.__exit__(None, None, None)


def test_frames_not_signed_with_the_secret_are_dropped(nodes, redis):
    """Nothing but a node holding cluster.secret can inject a stanza: a
    frame added to a node's stream or published on the registry channel
    with a wrong HMAC is dropped and logged."""
    na, nb = nodes(2)
    alice, = new_accounts(na, 1)
    ca = login(na, alice, "pc", priority=0)
    forged = ("deliver\nnode1\n1\n%s\n<message xmlns='jabber:client' from='admin@localhost' to='%s' "
              "type='chat'><body>forged</body></message>" % (ca.jid, ca.jid))
    for attempt in (
            lambda f: redis.command("XADD", "%s:q:node0" % nodes.cluster, "*", "f", f),
            lambda f: redis.command("PUBLISH", "%s:reg" % nodes.cluster, f)):
        attempt("0" * 64 + " " + forged)
    assert ca.quiet(scaled(0.5), pred=got_body("forged")) == []
    deadline = time.monotonic() + scaled(5)
    while na.read_log().count("bad signature was dropped") < 2:
        assert time.monotonic() < deadline, "no log line for the forged frame"
        time.sleep(0.1)
    ca.__exit__(None, None, None)


def test_node_leaving_cleanly_is_dropped_at_once(nodes):
    """A node stopped with SIGTERM removes its registration and tells the
    others, which drop it without waiting for node_timeout."""
    na, nb = nodes(2)
    t0 = time.monotonic()
    assert nb.stop() == 0
    wait_status(na, lambda st: [n["node"] for n in st["nodes"]] == ["node0"],
                timeout=scaled(NODE_TIMEOUT_MS / 1000 / 2))
    assert time.monotonic() - t0 < scaled(NODE_TIMEOUT_MS / 1000)


def test_check_refuses_cluster_on_sqlite(server_factory, redis):
    """`xmppctl check`: a cluster needs storage its nodes share, a valid
    Redis URI, and a node_timeout of at least three heartbeats."""
    srv = server_factory(start=False)
    srv.config["cluster"] = {"node": "n1", "redis": "http://127.0.0.1", "secret": SECRET,
                             "heartbeat": "1s", "node_timeout": "2s"}
    srv.config["storage"] = "sqlite"
    srv.write_config()
    r = srv.ctl("check")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "a cluster needs storage its nodes share" in out
    assert "cluster.redis" in out
    assert "cluster.node_timeout" in out
    assert SECRET not in out
    srv.config["cluster"] = {"node": "bad name"}
    srv.write_config()
    out = srv.ctl("check").stdout + srv.ctl("check").stderr
    assert "cluster.node" in out and "cluster.secret" in out and "cluster.redis" in out


def test_redis_restart_keeps_local_delivery_and_reregisters(server_factory, pg_dsn):
    """Redis stopped: each node goes on delivering between its own users
    and says so in its log and status, and a message for a session on
    another node is bounced rather than lost; Redis back (restarted empty): the
    nodes reconnect, register themselves and their sessions again, and
    stanzas cross nodes again."""
    r = redis_server.Redis().start()
    try:
        na, nb = start_nodes(server_factory, r, pg_dsn, "t" + secrets.token_hex(4), 2)
        alice, bob, carol = new_accounts(na, 3)
        ca = login(na, alice, "pc", priority=0)
        cc = login(na, carol, "pc", priority=0)
        cb = login(nb, bob, "pc", priority=0)
        registered(na, 1, "node1")
        r.stop()
        wait_status(na, lambda st: not st["redis_up"])
        message(ca, cc.jid, "local-while-down")
        cc.wait_for(got_body("local-while-down"))
        assert "lost Redis" in na.read_log()
        # a message for a session on the other node is not lost in silence:
        # recipient-unavailable, type wait (RFC 6120 §8.3.3.13)
        message(ca, cb.jid, "unreachable")
        err = ca.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "error")
        assert error_condition(err) == ("wait", "recipient-unavailable")
        assert err.get("from") == cb.jid
        r.start()
        for srv, other in ((na, "node1"), (nb, "node0")):
            wait_status(srv, lambda st: st["redis_up"] and node_sessions(st, other) ==
                        (1 if other == "node1" else 2), timeout=scaled(15))
        message(ca, cb.jid, "after-restart")
        cb.wait_for(got_body("after-restart"))
        message(cb, cc.jid, "back-across")
        cc.wait_for(got_body("back-across"))
        for c in (ca, cb, cc):
            c.__exit__(None, None, None)
    finally:
        r.destroy()


def test_reload_keeps_the_node_in_the_cluster(nodes):
    """SIGHUP re-reads the configuration; the node stays in the cluster
    (what a changed cluster section does: test_cluster_state.py) and
    stanzas still cross nodes both ways."""
    na, nb = nodes(2)
    alice, bob = new_accounts(na, 2)
    ca = login(na, alice, "pc", priority=0)
    cb = login(nb, bob, "pc", priority=0)
    registered(na, 1, "node1")
    mark = len(na.read_log())
    na.reload()
    deadline = time.monotonic() + scaled(10)
    while "reload" not in na.read_log()[mark:]:
        assert time.monotonic() < deadline, "no reload in the log"
        time.sleep(0.1)
    time.sleep(scaled(3 * HEARTBEAT_MS / 1000))  # heartbeats after the reload
    message(ca, cb.jid, "after-reload")
    cb.wait_for(got_body("after-reload"))
    message(cb, ca.jid, "back")
    ca.wait_for(got_body("back"))
    assert [n["node"] for n in status(na)["nodes"]] == ["node0", "node1"]
    for c in (ca, cb):
        c.__exit__(None, None, None)


def test_redis_over_tls(server_factory, pg_dsn, cert_dir):
    """rediss://: the nodes talk to Redis over TLS, verifying its
    certificate against cluster.ca_file and its name (localhost); a node
    with another trust anchor does not connect and says why."""
    crt, key = cert_dir / "localhost.crt", cert_dir / "localhost.key"
    r = redis_server.Redis(password="tls-pw", tls=(crt, key)).start()
    try:
        name = "t" + secrets.token_hex(4)
        out = []
        for i in range(2):
            srv = server_factory(start=False)
            cluster_config(srv, r, pg_dsn, name, "node%d" % i)
            srv.config["cluster"]["ca_file"] = str(crt)
            srv.write_config()
            srv.start()
            out.append(srv)
        na, nb = out
        for srv in out:
            wait_status(srv, lambda st: len(st["nodes"]) == 2 and st["redis_up"])
        alice, bob = new_accounts(na, 2)
        ca = login(na, alice, "pc", priority=0)
        cb = login(nb, bob, "pc", priority=0)
        registered(na, 1, "node1")
        message(ca, cb.jid, "over-tls")
        cb.wait_for(got_body("over-tls"))
        for c in (ca, cb):
            c.__exit__(None, None, None)
        # the system's trust anchors do not know the test certificate
        bad = server_factory(start=False)
        cluster_config(bad, r, pg_dsn, name, "node9")
        bad.start()
        time.sleep(scaled(1))
        assert not status(bad)["redis_up"]
        assert "certificate verify failed" in bad.read_log()
    finally:
        r.destroy()


HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
EXAMPLE_CFG = Path(__file__).resolve().parents[2] / "contrib" / "haproxy" / "xmppd.cfg"


@pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy not installed")
def test_issue20_two_nodes_behind_haproxy_with_proxy_v2(nodes, tmp_path):
    """Issue 20, operations: contrib/haproxy/xmppd.cfg passes `haproxy -c`;
    a real HAProxy built from its backend settings (TCP, send-proxy-v2,
    health checks with the header) spreads clients over two nodes whose
    c2s listeners take the PROXY protocol: both log in through it, land on
    different nodes, and chat across them; each node logged the client
    address HAProxy gave it."""
    r = subprocess.run([HAPROXY, "-c", "-f", str(EXAMPLE_CFG)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    extra_ports = []
    na, nb = nodes(2)
    for srv in (na, nb):
        port = free_port()
        srv.config["listeners"].append({"type": "c2s", "address": "127.0.0.1", "port": port,
                                        "proxy_protocol": True, "trusted_proxies": ["127.0.0.1"]})
        srv.write_config()
        srv.restart()
        extra_ports.append(port)
    for srv in (na, nb):
        wait_status(srv, lambda st: len(st["nodes"]) == 2)
    front = free_port()
    cfg = tmp_path / "haproxy.cfg"
    servers = "\n".join("    server n%d 127.0.0.1:%d" % (i, p) for i, p in enumerate(extra_ports))
    cfg.write_text("""global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 30m
    timeout server 30m
frontend xmpp_c2s
    bind 127.0.0.1:%d
    default_backend xmppd_c2s
backend xmppd_c2s
    balance roundrobin
    default-server send-proxy-v2 check check-send-proxy inter 200ms fall 2 rise 1
%s
""" % (front, servers))
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + scaled(10)
        while True:
            try:
                socket.create_connection(("127.0.0.1", front), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "haproxy did not listen"
                time.sleep(0.1)
        time.sleep(scaled(0.5))  # health checks mark both servers up
        alice, bob = new_accounts(na, 2)
        ca = login_at(front, alice, "pc")
        cb = login_at(front, bob, "phone")
        # round robin: one on each node
        wait_status(na, lambda st: sum(n.get("registered", n["sessions"]) for n in st["nodes"]) >= 2)
        where = [n["node"] for n in status(na)["nodes"] if n.get("registered", n["sessions"])]
        assert sorted(where) == ["node0", "node1"], status(na)
        message(ca, cb.jid, "through-haproxy")
        cb.wait_for(got_body("through-haproxy"))
        message(cb, ca.jid, "and-back")
        ca.wait_for(got_body("and-back"))
        for srv in (na, nb):
            assert "PROXY protocol v2: client 127.0.0.1" in srv.read_log()
        for c in (ca, cb):
            c.__exit__(None, None, None)
    finally:
        proc.terminate()
        proc.wait(10)


def login_at(port, account, resource):
    c = PoliteClient(port)
    c.login(account.user, account.password, resource=resource)
    c.send_presence(priority=0)
    c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == c.jid)
    return c


def collect(c, period):
    """Every message (bodies) and error (bodies of the bounced messages) c
    receives within period."""
    got, errors = [], []
    for e in c.quiet(period, pred=lambda e: e.tag == q(NS_CLIENT, "message")):
        (errors if e.get("type") == "error" else got).append(e.findtext(q(NS_CLIENT, "body")))
    return got, errors


def test_issue20_kill_9_under_load_every_accepted_message_is_accounted_for(nodes):
    """Issue 20, done means: three nodes, clients on nodes 0 and 2 sending
    across nodes, node 1 killed with SIGKILL in the middle. The survivors
    keep serving: every message between users of nodes 0 and 2 arrives, in
    order. Every message for the user of node 1 is accounted for: received
    before the kill, stored offline (RFC 6121 §8.5.2.2.1; read when the user
    logs in again on node 0), or bounced to its sender (RFC 6120 §8.3.3.13)
    - and none twice."""
    na, nb, nc = nodes(3, extra={"modules": {"offline": True}})
    sa, sc, ra, rc, rb = new_accounts(na, 5)
    csa, csc = login(na, sa, "s", priority=0), login(nc, sc, "s", priority=0)
    cra, crc = login(na, ra, "r", priority=0), login(nc, rc, "r", priority=0)
    crb = login(nb, rb, "r", priority=0)
    for srv in (na, nc):
        registered(srv, 1, "node1")
    registered(na, 2, "node2")
    rb_full = crb.jid
    n = 150
    for i in range(n):
        message(csa, crc.jid, "a2c-%03d" % i)
        message(csc, ra.jid, "c2a-%03d" % i)
        message(csa, rb.jid, "a2b-bare-%03d" % i)
        message(csc, rb_full, "c2b-full-%03d" % i)
        if i == n // 3:
            nb.kill()
        time.sleep(0.01)
    t_end = time.monotonic()
    # survivors: all of it, in order
    assert bodies(crc, "a2c-", n, scaled(20)) == ["a2c-%03d" % i for i in range(n)]
    assert bodies(cra, "c2a-", n, scaled(20)) == ["c2a-%03d" % i for i in range(n)]
    # node 1's user: what reached its client before the kill
    before, _ = collect(crb, 0.5)
    crb.close()
    # the senders' bounces come after delivery_timeout
    wait = DELIVERY_TIMEOUT_MS / 1000 + 3 * HEARTBEAT_MS / 1000 + 1 - (time.monotonic() - t_end)
    _, bounced_a = collect(csa, scaled(max(wait, 0.5)))
    _, bounced_c = collect(csc, scaled(0.5))
    again = PoliteClient(na.port)
    again.login(rb.user, rb.password, resource="again")
    again.send_presence(priority=0)
    stored, _ = collect(again, scaled(3))
    stored = [b for b in stored if b and "2b-" in b]
    accounted = before + bounced_a + bounced_c + stored
    sent = ["a2b-bare-%03d" % i for i in range(n)] + ["c2b-full-%03d" % i for i in range(n)]
    missing = sorted(set(sent) - set(accounted))
    assert missing == [], "lost: %s" % missing
    dupes = sorted(b for b in set(accounted) if accounted.count(b) > 1)
    assert dupes == [], "twice: %s" % dupes
    # the kill happened under load: each way was used
    assert before and stored, (len(before), len(bounced_a + bounced_c), len(stored))
    for c in (csa, csc, cra, crc, again):
        c.__exit__(None, None, None)


def test_issue20_node_added_to_a_running_cluster(nodes, server_factory, redis, pg_dsn):
    """Issue 20, done means: a node started while the cluster runs loads the
    registry (every session of the running nodes), and stanzas route both
    ways between its users and theirs, by full and bare JID (RFC 6121
    §8.5.3.1, §8.5.2.1.1)."""
    na, nb = nodes(2)
    alice, bob, carol = new_accounts(na, 3)
    ca = login(na, alice, "pc", priority=0)
    cb = login(nb, bob, "pc", priority=0)
    registered(na, 1, "node1")
    nn = server_factory(start=False)
    cluster_config(nn, redis, pg_dsn, nodes.cluster, "node2")
    nn.start()
    st = wait_status(nn, lambda st: len(st["nodes"]) == 3 and node_sessions(st, "node0") == 1 and
                     node_sessions(st, "node1") == 1)
    assert [n["node"] for n in st["nodes"] if n["self"]] == ["node2"]
    for srv in (na, nb):
        wait_status(srv, lambda st: len(st["nodes"]) == 3)
    cc = login(nn, carol, "pc", priority=0)
    registered(na, 1, "node2")
    registered(nb, 1, "node2")
    message(cc, ca.jid, "new-to-full")
    ca.wait_for(got_body("new-to-full"))
    message(cc, bob.jid, "new-to-bare")
    cb.wait_for(got_body("new-to-bare"))
    message(ca, carol.jid, "old-to-new")
    assert cc.wait_for(got_body("old-to-new")).get("from") == ca.jid
    for c in (ca, cb, cc):
        c.__exit__(None, None, None)


def test_issue20_node_with_other_hosts_is_refused(nodes, server_factory, redis, pg_dsn):
    """Issue 20, configuration: the nodes of a cluster serve the same hosts.
    Each node publishes its host list with its registration; a node whose
    list differs from a live node's refuses to start (before it opens a
    port), naming both lists."""
    na, nb = nodes(2)
    bad = server_factory(start=False)
    cluster_config(bad, redis, pg_dsn, nodes.cluster, "node7")
    bad.config["hosts"]["other.example"] = {}
    bad.write_config()
    with pytest.raises(RuntimeError) as e:
        bad.start()
    out = str(e.value) + bad.read_log() + bad.read_stderr()
    assert "the nodes of a cluster serve the same hosts" in out, out
    assert '"localhost other.example"' in out and 'serves "localhost"' in out
    assert [n["node"] for n in status(na)["nodes"]] == ["node0", "node1"]


def test_issue20_node_with_other_hosts_does_not_join_when_redis_comes_late(nodes, server_factory,
                                                                           redis, pg_dsn):
    """A node that could not reach Redis at start checks the hosts when
    Redis answers: with another host list it stays out of the cluster (not
    registered, its sessions not published) and says why in its log. (Its
    Redis user is created only after it started: until then AUTH fails.)"""
    na, = nodes(1)
    user, pw = "late" + secrets.token_hex(3), secrets.token_hex(8)
    bad = server_factory(start=False)
    cluster_config(bad, redis, pg_dsn, nodes.cluster, "node1")
    bad.config["cluster"]["redis"] = "redis://%s:%s@127.0.0.1:%d" % (user, pw, redis.port)
    bad.config["hosts"]["other.example"] = {}
    bad.write_config()
    bad.start()  # Redis refuses it for now: it starts all the same
    assert "Redis did not answer at start" in bad.read_log()
    assert redis.command("ACL", "SETUSER", user, "on", ">" + pw, "~*", "&*", "+@all") == "OK"
    deadline = time.monotonic() + scaled(15)
    while "not joining" not in bad.read_log():
        assert time.monotonic() < deadline, "the late check did not happen"
        time.sleep(0.1)
    assert 'serves "localhost"' in bad.read_log()
    time.sleep(scaled(3 * HEARTBEAT_MS / 1000))
    assert [n["node"] for n in status(na)["nodes"]] == ["node0"]
    assert redis.command("SISMEMBER", "%s:nodes" % nodes.cluster, "node1") == 0


def xadd_calls(redis):
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_xadd:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_issue20_presence_broadcast_is_one_frame_per_node(nodes, redis):
    """Issue 20, routing: a presence broadcast (RFC 6121 §4.4.2) to twelve
    contacts online on another node leaves as one frame naming the twelve
    recipients in one stream entry, not twelve; each contact gets the
    presence, with its own 'to'."""
    na, nb = nodes(2)
    alice, *contacts = new_accounts(na, 13)
    ca = login(na, alice, "pc", priority=0)
    clients = [login(nb, c, "pc", priority=0) for c in contacts]
    registered(na, 12, "node1")
    for cl, acc in zip(clients, contacts):
        subscribe(cl, ca, acc, alice)
    before = xadd_calls(redis)
    while True:  # the subscriptions' traffic is over
        time.sleep(scaled(0.5))
        now = xadd_calls(redis)
        if now == before:
            break
        before = now
    for cl in clients:
        cl.quiet(0.05)
    ca.send("<presence><status>fan-out</status></presence>")
    for cl in clients:
        p = cl.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and
                        e.findtext(q(NS_CLIENT, "status")) == "fan-out")
        assert p.get("from") == ca.jid and p.get("to") == cl.jid.split("/")[0]
    # the broadcast's entry, and the registry change of alice's presence
    # (which travels in node1's stream too) unless it left in the same turn
    assert xadd_calls(redis) - before <= 2
    assert "a fan-out for 12 recipients from node node0" in nb.read_log()
    for c in [ca] + clients:
        c.__exit__(None, None, None)
