"""XEP-0198 stream management across the nodes of a cluster (issue 20:
"Stream-management sessions of the dead node can be resumed on another
node without losing a message the server had acknowledged").

mod_smacks replicates each resumable session in Redis (docs/cluster.md,
"Stream management across nodes"): a client whose node was killed with
SIGKILL resumes on another node (XEP-0198 §5) and gets exactly the stanzas
it had not acknowledged, in order; a session detached on a live node is
handed over by that node; an unknown id, or another account's, gets
<failed><item-not-found/></failed> as on one node; with `smacks.cluster:
off` a session is resumable on its own node only. The same holds for a
<resume/> inline in a SASL2 <authenticate/> (XEP-0388 with XEP-0198): the
answer is inside <success/>, and a failure goes on with Bind2.
"""

import time

import pytest

import pg_cluster
import redis_server
from test_cluster import (got_body, message, new_accounts, login as polite_login, nodes,  # noqa: F401
                          pg_dsn, redis, wait_status, DELIVERY_TIMEOUT_MS)
from xmpptest import (NS_BIND2, NS_CLIENT, NS_SASL2, NS_STREAM, RawClient, XMPPTestError,
                      error_condition, q, scaled, tostr)

pytestmark = pytest.mark.skipif(not (redis_server.available() and pg_cluster.available()),
                                reason="redis-server or PostgreSQL not installed")

NS_SM = "urn:xmpp:sm:3"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STANZAS = (q(NS_CLIENT, "message"), q(NS_CLIENT, "presence"), q(NS_CLIENT, "iq"))


def sm_config(mode="replicate", resume_timeout="60s"):
    # no <r/> from the server: the tests acknowledge exactly what they mean to
    return {"modules": {"offline": True,
                        "smacks": {"resume_timeout": resume_timeout, "request_every": 1000,
                                   "request_after": "1h", "cluster": mode}}}


def is_sm(el, tag):
    return el.tag == q(NS_SM, tag)


class SM:
    """A raw client with stream management: counts the stanzas it receives
    (its h) and keeps the message bodies, in order."""

    def __init__(self, srv, account, resource=None):
        self.raw = RawClient(srv.port)
        self.raw.login(account.user, account.password, resource=resource, bind=resource is not None)
        self.h, self.bodies = 0, []

    def enable(self):
        self.raw.send("<enable xmlns='%s' resume='true'/>" % NS_SM)
        el = self.raw.wait_for(lambda e: is_sm(e, "enabled") or is_sm(e, "failed"))
        assert is_sm(el, "enabled") and el.get("id"), tostr(el)
        return el.get("id")

    def take(self, el):
        if el.tag in STANZAS:
            self.h += 1
            if el.tag == q(NS_CLIENT, "message") and el.find(q(NS_CLIENT, "body")) is not None:
                self.bodies.append(el.findtext(q(NS_CLIENT, "body")))

    def pump(self, until, timeout=None):
        deadline = time.monotonic() + (timeout or scaled(5))
        while not until(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("never got there; bodies %s" % self.bodies)
            try:
                self.take(self.raw.next_element(min(left, 0.5)))
            except XMPPTestError:
                pass
        return self

    def ack(self, h):
        self.raw.send("<a xmlns='%s' h='%d'/>" % (NS_SM, h))

    def server_h(self):
        self.raw.send("<r xmlns='%s'/>" % NS_SM)
        el = self.raw.wait_for(lambda e: is_sm(e, "a") or self.take(e))
        return int(el.get("h"))

    def resume(self, previd, h):
        """<resume/>; the answer (<resumed/> or <failed/>)."""
        self.raw.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (NS_SM, previd, h))
        return self.raw.wait_for(lambda e: is_sm(e, "resumed") or is_sm(e, "failed"),
                                 timeout=scaled(DELIVERY_TIMEOUT_MS / 1000 * 3 + 5))

    def drop(self):
        """The TCP connection is lost (no </stream:stream>)."""
        self.raw.sock.close()


def replica_keys(redis, cluster, previd):
    return [k for k in ("%s:sm:%s" % (cluster, previd), "%s:smq:%s" % (cluster, previd))
            if redis.command("EXISTS", k) == 1]


def failed_with(el, cond):
    return is_sm(el, "failed") and el.find(q(NS_STANZAS, cond)) is not None


def test_xep0198_5_resume_after_kill_9_on_another_node(nodes, redis):
    """XEP-0198 §5 across nodes, issue 20: the node of a session with
    unacknowledged messages is killed with SIGKILL; the client resumes on
    the other node with its h and gets <resumed/> with the server's h
    (what it had sent), then exactly the messages after its h, in order,
    none twice. A message sent to its full JID before the dead node was
    noticed comes back to its sender (recipient-unavailable, RFC 6120
    §8.3.3.13, as for any session on a dead node); one sent after is stored
    offline (RFC 6121 §8.5.3.2.1) and arrives after the resumption, since
    the session's presence is sent again as initial presence. The session
    goes on with the same full JID, both ways."""
    na, nb = nodes(2, extra=sm_config())
    alice, bob = new_accounts(na, 2)
    a = SM(na, alice, "phone")
    a.raw.send("<presence/>")
    previd = a.enable()
    cb = polite_login(nb, bob, "desk", priority=0)
    wait_status(nb, lambda st: any(n["node"] == "node0" and n.get("registered") == 1
                                   for n in st["nodes"]))
    a.raw.send("<message to='%s' type='chat'><body>from-alice</body></message>" % cb.jid)
    cb.wait_for(got_body("from-alice"))
    for i in range(1, 11):
        message(cb, a.raw.jid, "m%d" % i)
    a.pump(lambda s: len(s.bodies) == 10)
    assert a.bodies == ["m%d" % i for i in range(1, 11)]
    # acknowledge everything up to m4 (and the presence before it)
    h4 = a.h - 6
    a.ack(h4)
    assert a.server_h() == 1  # its message (the presence came before <enable/>)
    time.sleep(scaled(0.3))   # the acknowledgement reached the replica
    # the replica holds what was not acknowledged, no more
    assert redis.command("LLEN", "%s:smq:%s" % (nodes.cluster, previd)) == 6
    na.kill()
    a.drop()
    message(cb, a.raw.jid, "gap-full")       # to the dead node's stream
    wait_status(nb, lambda st: [n["node"] for n in st["nodes"]] == ["node1"],
                timeout=scaled(10))
    message(cb, a.raw.jid, "gap-offline")    # the session is gone: offline storage
    err = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "error",
                      timeout=scaled(DELIVERY_TIMEOUT_MS / 1000 * 3 + 2))
    assert err.findtext(q(NS_CLIENT, "body")) == "gap-full"
    assert error_condition(err)[1] == "recipient-unavailable"

    n = SM(nb, alice)
    el = n.resume(previd, h4)
    assert is_sm(el, "resumed"), tostr(el)
    assert el.get("previd") == previd and el.get("h") == "1"
    n.pump(lambda s: "gap-offline" in s.bodies)
    assert n.bodies == ["m%d" % i for i in range(5, 11)] + ["gap-offline"], n.bodies
    assert "resumed from another node (6 stanzas sent again)" in nb.read_log()

    # the same full JID, both ways, on the new node
    message(cb, a.raw.jid, "after")
    n.pump(lambda s: "after" in s.bodies)
    n.raw.send("<message to='%s' type='chat'><body>back</body></message>" % cb.jid)
    m = cb.wait_for(got_body("back"))
    assert m.get("from") == a.raw.jid
    # acknowledged stanzas leave the replica; a clean end erases it
    n.ack(n.h)
    n.raw.close_stream()
    deadline = time.monotonic() + scaled(5)
    while replica_keys(redis, nodes.cluster, previd) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert replica_keys(redis, nodes.cluster, previd) == []
    cb.__exit__(None, None, None)


def test_xep0198_5_resume_of_a_detached_session_on_a_live_node(nodes):
    """XEP-0198 §5 across nodes: a session whose connection was lost is
    waiting on its (live) node; its client comes back on the other node.
    That node asks the first to let it go: the client gets <resumed/> and
    what it missed (including a message that came while it was away), in
    order; its other resource sees no unavailable presence (as on one
    node); the first node ends its copy quietly."""
    na, nb = nodes(2, extra=sm_config())
    alice, bob = new_accounts(na, 2)
    a = SM(na, alice, "phone")
    a.raw.send("<presence/>")
    previd = a.enable()
    watcher = polite_login(na, alice, "desktop", priority=0)
    cb = polite_login(nb, bob, "desk", priority=0)
    wait_status(nb, lambda st: any(n["node"] == "node0" and n.get("registered") == 2
                                   for n in st["nodes"]))
    for i in range(1, 4):
        message(cb, a.raw.jid, "d%d" % i)
    a.pump(lambda s: len(s.bodies) == 3)
    h1 = a.h - 2  # it saw d1 only, say
    a.drop()
    time.sleep(scaled(0.3))
    message(cb, a.raw.jid, "while-away")
    time.sleep(scaled(0.3))

    n = SM(nb, alice)
    el = n.resume(previd, h1)
    assert is_sm(el, "resumed"), tostr(el)
    assert el.get("h") == "0"  # its presence came before <enable/>
    n.pump(lambda s: "while-away" in s.bodies)
    assert n.bodies == ["d2", "d3", "while-away"], n.bodies
    assert watcher.quiet(scaled(0.5), pred=lambda e: e.tag == q(NS_CLIENT, "presence") and
                         e.get("type") == "unavailable" and e.get("from") == a.raw.jid) == []
    assert "resumed on node node1: ending it here" in na.read_log()
    message(cb, a.raw.jid, "on-node1")
    n.pump(lambda s: "on-node1" in s.bodies)
    watcher.send("<message to='%s' type='chat'><body>from-desktop</body></message>" % a.raw.jid)
    n.pump(lambda s: "from-desktop" in s.bodies)
    for c in (watcher, cb):
        c.__exit__(None, None, None)
    n.raw.close()


def test_xep0198_5_resume_on_another_node_closes_the_half_open_connection(nodes):
    """XEP-0198 §5: resuming while the old connection is still open
    (half-open) closes that one with <conflict/>, here across nodes."""
    na, nb = nodes(2, extra=sm_config())
    (alice,) = new_accounts(na, 1)
    old = SM(na, alice, "laptop")
    previd = old.enable()
    n = SM(nb, alice)
    assert is_sm(n.resume(previd, 0), "resumed")
    old.raw.expect_stream_error("conflict")
    n.raw.close()


def test_xep0198_5_unknown_or_foreign_id_fails_across_nodes(nodes):
    """XEP-0198 §5: an unknown id gets <failed><item-not-found/></failed>
    on any node; another account's id is as unknown (its session is left
    alone); the login goes on (binding works after the failure)."""
    na, nb = nodes(2, extra=sm_config())
    alice, mallory = new_accounts(na, 2)
    a = SM(na, alice, "phone")
    previd = a.enable()
    n = SM(nb, alice)
    assert failed_with(n.resume("no-such-id", 0), "item-not-found")
    assert n.raw.bind("after-failure") == alice.jid + "/after-failure"
    n.raw.close()
    m = SM(nb, mallory)
    assert failed_with(m.resume(previd, 0), "item-not-found")
    m.raw.close()
    assert a.server_h() == 0  # still there, untouched


def test_issue20_switch_off_resumes_on_the_own_node_only(nodes, redis):
    """smacks.cluster: off: nothing is replicated; a session waiting on
    its node cannot be resumed on another (<failed><item-not-found/>),
    and is still resumable on its own node (XEP-0198 §5, one node)."""
    na, nb = nodes(2, extra=sm_config("off"))
    (alice,) = new_accounts(na, 1)
    a = SM(na, alice, "phone")
    previd = a.enable()
    time.sleep(scaled(0.2))
    assert replica_keys(redis, nodes.cluster, previd) == []
    a.drop()
    time.sleep(scaled(0.2))
    n = SM(nb, alice)
    assert failed_with(n.resume(previd, 0), "item-not-found")
    n.raw.close()
    back = SM(na, alice)
    assert is_sm(back.resume(previd, 0), "resumed")
    back.raw.close()


def test_xep0198_9_dead_nodes_session_not_resumed_in_time(nodes):
    """XEP-0198 §9 across nodes, issue 20's delivery rule: a session of a
    killed node that nobody resumes within its resume time ends on the node
    that found the death, as it would have ended on its own: a chat message
    it never acknowledged goes to the account's bare JID (offline storage,
    RFC 6121 §8.5.2.2) and arrives at the next login; an IQ request it held
    is answered with <service-unavailable/>; a resume after that fails with
    item-not-found."""
    na, nb = nodes(2, extra=sm_config(resume_timeout="2s"))
    alice, bob = new_accounts(na, 2)
    a = SM(na, alice, "phone")
    a.raw.send("<presence/>")
    previd = a.enable()
    cb = polite_login(nb, bob, "desk", priority=0)
    wait_status(nb, lambda st: any(n["node"] == "node0" and n.get("registered") == 1
                                   for n in st["nodes"]))
    message(cb, a.raw.jid, "never-acked")
    cb.send("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:version'/></iq>" % a.raw.jid)
    a.pump(lambda s: s.h == 2)
    time.sleep(scaled(0.3))
    na.kill()
    a.drop()
    err = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "v1",
                      timeout=scaled(20))
    assert err.get("type") == "error" and error_condition(err)[1] == "service-unavailable", tostr(err)
    assert "was not resumed in time: its 2 unacknowledged stanzas are handled here" in nb.read_log()
    n = SM(nb, alice)
    assert failed_with(n.resume(previd, 0), "item-not-found")
    n.raw.close()
    later = polite_login(nb, alice, "later")
    later.send("<presence/>")
    later.wait_for(got_body("never-acked"), timeout=scaled(5))
    for c in (later, cb):
        c.__exit__(None, None, None)


# ---- inline in SASL2 (XEP-0388 + XEP-0198) ---------------------------------------------

def sasl2_resume(srv, account, previd, h):
    """A new connection to srv whose SASL2 <authenticate/> carries Bind2 and
    <resume/>: (client, <success/>); the stream features that follow it
    are read."""
    c = RawClient(srv.port)
    c.secure_stream()
    res = c.sasl2_plain(account.user, account.password,
                        "<user-agent id='sm-dev'><software>xmpptest</software></user-agent>"
                        "<bind xmlns='%s'><tag>T</tag></bind>"
                        "<resume xmlns='%s' previd='%s' h='%d'/>" % (NS_BIND2, NS_SM, previd, h),
                        timeout=scaled(DELIVERY_TIMEOUT_MS / 1000 * 3 + 5))
    assert res.ok, res
    el = c.next_element()
    assert el.tag == q(NS_STREAM, "features"), tostr(el)
    return c, res.element


def inline_bodies(c, n):
    bodies = []
    while len(bodies) < n:
        el = c.next_element(scaled(5))
        if el.tag == q(NS_CLIENT, "message") and el.find(q(NS_CLIENT, "body")) is not None:
            bodies.append(el.findtext(q(NS_CLIENT, "body")))
    return bodies


def aid(success):
    return success.findtext(q(NS_SASL2, "authorization-identifier"))


def test_xep0198_xep0388_inline_resume_after_kill_9_on_another_node(nodes):
    """XEP-0198 §5 inline in XEP-0388 across nodes, issue 20: the node of a
    session with unacknowledged messages is killed with SIGKILL; a <resume/>
    inside the SASL2 <authenticate/> sent to the other node gets <resumed/>
    with the server's h inside <success/> (the authorization identifier is
    the old full JID, Bind2's <bind/> is ignored: no <bound/>, XEP-0386
    §2.2), then, after the stream features, exactly the messages after the
    client's h, in order; the session goes on with the same full JID."""
    na, nb = nodes(2, extra=sm_config())
    alice, bob = new_accounts(na, 2)
    a = SM(na, alice, "phone")
    a.raw.send("<presence/>")
    previd = a.enable()
    cb = polite_login(nb, bob, "desk", priority=0)
    wait_status(nb, lambda st: any(n["node"] == "node0" and n.get("registered") == 1
                                   for n in st["nodes"]))
    for i in range(1, 6):
        message(cb, a.raw.jid, "k%d" % i)
    a.pump(lambda s: len(s.bodies) == 5)
    h2 = a.h - 3
    a.ack(h2)
    assert a.server_h() == 0
    time.sleep(scaled(0.3))   # the acknowledgement reached the replica
    na.kill()
    a.drop()
    wait_status(nb, lambda st: [n["node"] for n in st["nodes"]] == ["node1"],
                timeout=scaled(10))
    c, success = sasl2_resume(nb, alice, previd, h2)
    resumed = success.find(q(NS_SM, "resumed"))
    assert resumed is not None, tostr(success)
    assert resumed.get("previd") == previd and resumed.get("h") == "0"
    assert success.find(q(NS_BIND2, "bound")) is None
    assert aid(success) == a.raw.jid
    assert inline_bodies(c, 3) == ["k3", "k4", "k5"]
    message(cb, a.raw.jid, "after")
    assert inline_bodies(c, 1) == ["after"]
    c.send("<message to='%s' type='chat'><body>back</body></message>" % cb.jid)
    assert cb.wait_for(got_body("back")).get("from") == a.raw.jid
    c.close()
    cb.__exit__(None, None, None)


def test_xep0198_xep0388_inline_resume_of_a_detached_session_on_a_live_node(nodes):
    """XEP-0198 §5 inline in XEP-0388: a session waiting on its live node
    for its client is handed over to the node the client's SASL2 request
    reaches: <resumed/> inside <success/>, then what it had not
    acknowledged, including a message that came while it was away; the
    first node ends its copy quietly."""
    na, nb = nodes(2, extra=sm_config())
    alice, bob = new_accounts(na, 2)
    a = SM(na, alice, "phone")
    a.raw.send("<presence/>")
    previd = a.enable()
    cb = polite_login(nb, bob, "desk", priority=0)
    wait_status(nb, lambda st: any(n["node"] == "node0" and n.get("registered") == 1
                                   for n in st["nodes"]))
    for i in range(1, 4):
        message(cb, a.raw.jid, "d%d" % i)
    a.pump(lambda s: len(s.bodies) == 3)
    h1 = a.h - 2
    a.drop()
    time.sleep(scaled(0.3))
    message(cb, a.raw.jid, "while-away")
    time.sleep(scaled(0.3))
    c, success = sasl2_resume(nb, alice, previd, h1)
    resumed = success.find(q(NS_SM, "resumed"))
    assert resumed is not None and resumed.get("h") == "0", tostr(success)
    assert aid(success) == a.raw.jid
    assert inline_bodies(c, 3) == ["d2", "d3", "while-away"]
    assert "resumed on node node1: ending it here" in na.read_log()
    message(cb, a.raw.jid, "on-node1")
    assert inline_bodies(c, 1) == ["on-node1"]
    c.close()
    cb.__exit__(None, None, None)


def test_xep0198_xep0388_inline_resume_failures_across_nodes_then_bind2(nodes):
    """XEP-0198 §5 and XEP-0386 §2.2 inline across nodes: an unknown id, or
    another account's session on the other node, gives <failed>
    <item-not-found/></failed> inside <success/>, and the login goes on
    with Bind2 (<bound/>, a new full JID); the other account's session is
    left alone."""
    na, nb = nodes(2, extra=sm_config())
    alice, mallory = new_accounts(na, 2)
    a = SM(na, alice, "phone")
    previd = a.enable()
    for who, pid in ((alice, "no-such-id"), (mallory, previd)):
        c, success = sasl2_resume(nb, who, pid, 0)
        failed = success.find(q(NS_SM, "failed"))
        assert failed is not None and failed.find(q(NS_STANZAS, "item-not-found")) is not None, \
            tostr(success)
        assert success.find(q(NS_BIND2, "bound")) is not None
        assert aid(success).startswith(who.jid + "/T/")
        c.close()
    assert a.server_h() == 0  # still there, untouched
