"""A message acknowledged to its sender survives kill -9 (issue 18:
offline storage is committed before the sender's stanza is acknowledged).

XEP-0198 §4: the server's <a h/> counts the client's stanzas it handled.
A chat message to an account without a resource is handled by storing it
(XEP-0160, RFC 6121 §8.5.2.2.1); mod_offline holds the sender's session
(xmppd_session_hold_commit, api/xmppd/router.h) until the write commits,
and mod_smacks answers <r/> only when the holds taken before it are
released. The server is killed (SIGKILL) the moment the <a/> arrives:
every acknowledged message must be delivered at the next login. Before the
change the <a/> went out as soon as the messages were routed, while the
storage thread was still writing them, and the kill lost them.
With XMPPD_TEST_STORAGE=pgsql it runs against PostgreSQL.
"""

import pytest

from xmpptest import NS_CLIENT, RawClient, q, scaled

NS_SM = "urn:xmpp:sm:3"
COUNT = 1500
BODY = "y" * 2000  # ~3 MB in all: the writes take a while to commit


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "offline": {"max_messages": 100000},
                        "smacks": {"max_unacked": 100000, "request_every": 1000}},
            # the whole queue is written at once at the next login
            "limits": {"max_send_buffer": "64M"}}


def sm_login(server, account):
    c = RawClient(server.port, timeout=scaled(30))
    c.login(account.user, account.password)
    c.send("<enable xmlns='%s'/>" % NS_SM)
    el = c.wait_for(lambda e: e.tag in (q(NS_SM, "enabled"), q(NS_SM, "failed")))
    assert el.tag == q(NS_SM, "enabled")
    return c


def send_batch(c, to, tag):
    c.send("".join("<message to='%s' type='chat' id='%s-%d'><body>%s</body></message>"
                   % (to, tag, n, BODY) for n in range(COUNT)))


def fetch_ids(server, account, tag, want):
    c = RawClient(server.port, timeout=scaled(30))
    c.login(account.user, account.password)
    c.send_presence()
    ids = []
    while len(ids) < want:
        got = c.quiet(scaled(2), pred=lambda e: e.tag == q(NS_CLIENT, "message"))
        if not got:
            break
        ids += [m.get("id") for m in got if (m.get("id") or "").startswith(tag + "-")]
    c.close()
    return ids


def test_acknowledged_offline_message_survives_kill_9(server, accounts):
    """Issue 18 / XEP-0198 §4 / XEP-0160: <a h='N'/> is sent only once the
    N messages stored offline are committed; kill -9 right after it loses
    none of them, and each comes once at the next login."""
    sender, rcpt = accounts(2, prefix="dur")
    c = sm_login(server, sender)
    send_batch(c, rcpt.jid, "dur")
    c.send("<r xmlns='%s'/>" % NS_SM)
    a = c.wait_for(lambda e: e.tag == q(NS_SM, "a"), timeout=scaled(60))
    server.kill()
    assert a.get("h") == str(COUNT)
    c.close()
    server.start()
    ids = fetch_ids(server, rcpt, "dur", COUNT)
    assert sorted(set(ids)) == sorted("dur-%d" % n for n in range(COUNT)), \
        "%d of %d acknowledged messages delivered after kill -9" % (len(set(ids)), COUNT)
    assert len(ids) == COUNT, "some delivered twice"


def test_answers_waiting_for_commits_keep_their_order(server, accounts):
    """XEP-0198 §4: h never goes back. Two <r/> after messages being
    stored, then one after a stanza that stores nothing: the three <a/>
    come in order, the first two with the count of the stored messages."""
    sender, rcpt = accounts(2, prefix="ord")
    c = sm_login(server, sender)
    send_batch(c, rcpt.jid, "ord")
    c.send("<r xmlns='%s'/><r xmlns='%s'/>" % (NS_SM, NS_SM))
    c.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq><r xmlns='%s'/>" % NS_SM)
    hs = []
    while len(hs) < 3:
        el = c.wait_for(lambda e: e.tag == q(NS_SM, "a"), timeout=scaled(60))
        hs.append(int(el.get("h")))
    assert hs == [COUNT, COUNT, COUNT + 1]
    c.close()
    assert len(fetch_ids(server, rcpt, "ord", COUNT)) == COUNT
