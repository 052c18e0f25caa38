"""Nothing the server took responsibility for is lost on a crash (issue
11.8): kill -9 at a random moment under load, restart, and check.

Two senders stream messages (unique ids) to an online recipient, which
reads them, and to two accounts that are offline (mod_offline stores
them). At a random moment during the run the server is killed with
SIGKILL and started again. Then:

  * every message whose offline store reported a commit (the module's
    debug line "stored a message for USER (id ID)", written in the store's
    callback, which storage_sqlite and storage_pgsql run only after the
    transaction committed) reaches its recipient after the restart,
    exactly once;
  * no message reaches anyone twice (online messages are never stored,
    stored ones are delivered once and deleted);
  * the offline recipients, logging in again, get nothing more.

The run is bounded: a few thousand messages over at most a few seconds.
With XMPPD_TEST_STORAGE=pgsql it runs against PostgreSQL.
"""

import random
import re
import threading
import time

import pytest

from xmpptest import NS_CLIENT, RawClient, q, scaled

SENDERS = 2
PER_SENDER = 1500


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"offline": {"max_messages": 100000}, "presence": {}, "roster": {}}}


def login(server, account, presence=True):
    c = RawClient(server.port, timeout=scaled(20))
    c.login(account.user, account.password)
    if presence:
        c.send_presence()
    return c


def message_ids(elements, prefix):
    return [el.get("id") for el in elements
            if el.tag == q(NS_CLIENT, "message") and (el.get("id") or "").startswith(prefix)]


def drain(c, period):
    """Every message received within period (until the stream ends)."""
    return c.quiet(period, pred=lambda e: e.tag == q(NS_CLIENT, "message"))


def test_kill_9_under_load_loses_nothing_committed_and_delivers_once(server, accounts):
    senders = accounts(SENDERS, prefix="snd")
    online, off1, off2 = accounts(3, prefix="rcv")
    offline = [off1, off2]
    receiver = login(server, online)
    received_online = []
    stop = threading.Event()

    def read_online():
        while not stop.is_set() and not receiver.eof:
            received_online.extend(drain(receiver, 0.2))

    reader = threading.Thread(target=read_online, daemon=True)
    reader.start()
    clients = [login(server, s) for s in senders]
    mark = len(server.read_log())
    sent = {}

    def send(i, c):
        rnd = random.Random(i)
        for n in range(PER_SENDER):
            to = online if rnd.random() < 0.4 else rnd.choice(offline)
            mid = "crash-%d-%d" % (i, n)
            try:
                c.send("<message to='%s' type='chat' id='%s'><body>%s</body></message>"
                       % (to.jid, mid, mid))
            except OSError:
                return  # the server is gone
            sent[mid] = to
            if n % 10 == 9:
                time.sleep(0.01)  # ~1.5 s per sender: the kill lands mid-run

    threads = [threading.Thread(target=send, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    time.sleep(random.uniform(0.3, 1.2))
    server.kill()
    for t in threads:
        t.join(scaled(10))
    stop.set()
    reader.join(scaled(5))
    for c in clients + [receiver]:
        c.close()
    log = server.read_log()[mark:]
    committed = set(re.findall(r"offline: stored a message for \S+ \(id (crash-\d+-\d+)\)", log))
    assert committed and len(sent) < SENDERS * PER_SENDER, \
        "the kill did not land mid-run (%d sent, %d committed)" % (len(sent), len(committed))

    server.start()
    delivered = message_ids(received_online, "crash-")
    for acct in offline:
        c = login(server, acct)
        delivered += message_ids(drain(c, scaled(2)), "crash-")
        c.close()
    # the stored messages were deleted once delivered: nothing comes again
    for acct in offline + [online]:
        c = login(server, acct)
        again = message_ids(drain(c, scaled(1)), "crash-")
        c.close()
        assert again == [], "delivered twice to %s: %s" % (acct.jid, again[:10])

    print("crash test: %d sent before the kill, %d committed offline, %d delivered online before "
          "the kill, %d delivered in all" % (len(sent), len(committed), len(message_ids(received_online,
                                             "crash-")), len(delivered)))
    dupes = sorted({m for m in delivered if delivered.count(m) > 1})
    assert dupes == [], "messages delivered twice: %s" % dupes[:10]
    lost = sorted(committed - set(delivered))
    assert lost == [], "%d committed messages lost: %s" % (len(lost), lost[:10])
