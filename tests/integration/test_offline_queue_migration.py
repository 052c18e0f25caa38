"""Offline messages move to the queue table with their order and ids
(issue 18: an offline queue not sharing the archive table's MAM indexes).

Schema version 3 of both SQL drivers keeps the "offline" store in a table
of its own (SQLite: queue, PostgreSQL: xmppd_queue) with one index. A
database at version 2 holds its offline messages in the archive table: at
start they are moved, keep their ids and order, and are delivered at the
next login (XEP-0160) before any message stored after the migration; each
comes once. Runs on SQLite, and on PostgreSQL with XMPPD_TEST_STORAGE=pgsql.
"""

import re
import sqlite3
import time

import pytest

import pg_cluster
from xmpptest import NS_CLIENT, RawClient, q, scaled

OLD = 5


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "offline": True}}


def pg_dsn(server):
    if server.config.get("storage") == "pgsql":
        return server.config["modules"]["storage_pgsql"]["connect"]
    return None


def sql(server, statement):
    """Runs statement on the server's database (stopped); rows as text."""
    dsn = pg_dsn(server)
    if dsn:
        return [line for line in pg_cluster.psql(dsn, statement).splitlines() if line]
    db = sqlite3.connect(str(server.data_dir / "xmppd.sqlite"), isolation_level=None)
    try:
        return ["|".join(str(c) for c in row) for row in db.execute(statement)]
    finally:
        db.close()


def downgrade_to_version_2(server):
    """What a version 2 database looks like: offline messages in the
    archive table, no queue table."""
    if pg_dsn(server):
        sql(server, "INSERT INTO xmppd_archive (host, store, username, with_jid, when_ms, value, key, with_res) "
                    "OVERRIDING SYSTEM VALUE SELECT host, store, username, with_jid, when_ms, value, key, with_res "
                    "FROM xmppd_queue ORDER BY id; DROP TABLE xmppd_queue; UPDATE xmppd_schema SET version = 2")
        return
    db = sqlite3.connect(str(server.data_dir / "xmppd.sqlite"), isolation_level=None)
    try:
        db.executescript("BEGIN; INSERT INTO archive (host, store, user, with_jid, when_ms, value, key, with_res) "
                         "SELECT host, store, user, with_jid, when_ms, value, key, with_res FROM queue ORDER BY id; "
                         "DROP TABLE queue; PRAGMA user_version = 2; COMMIT;")
    finally:
        db.close()


def store(server, sender, rcpt, ids):
    mark = len(server.read_log())
    c = RawClient(server.port)
    c.login(sender.user, sender.password)
    for mid in ids:
        c.send("<message to='%s' type='chat' id='%s'><body>%s</body></message>" % (rcpt.jid, mid, mid))
    pattern = re.compile(r"offline: stored a message for %s \(id (\S+)\)" % re.escape(rcpt.user))
    deadline = time.monotonic() + scaled(10)
    while len(pattern.findall(server.read_log()[mark:])) < len(ids):
        assert time.monotonic() < deadline, "not all stored"
        time.sleep(0.05)
    c.close()


def fetch(server, account):
    c = RawClient(server.port)
    c.login(account.user, account.password)
    c.send_presence()
    got = [m.get("id") for m in c.quiet(scaled(1.5), pred=lambda e: e.tag == q(NS_CLIENT, "message"))]
    c.close()
    return got


def test_version_2_offline_messages_migrated_in_order_and_delivered_once(server, accounts):
    """Issue 18 / XEP-0160: a version 2 database's queued offline messages
    survive the migration to the queue table (same ids, same order), are
    delivered before one stored after the migration, and only once."""
    sender, rcpt, other = accounts(3, prefix="mig")
    old = ["old-%d" % n for n in range(OLD)]
    store(server, sender, rcpt, old)
    store(server, sender, other, ["other-0"])
    server.stop()
    queue = "xmppd_queue" if pg_dsn(server) else "queue"
    user = "username" if pg_dsn(server) else "user"
    before = sql(server, "SELECT id FROM %s WHERE %s = '%s' ORDER BY id" % (queue, user, rcpt.user))
    assert len(before) == OLD
    downgrade_to_version_2(server)
    archive = "xmppd_archive" if pg_dsn(server) else "archive"
    assert sql(server, "SELECT count(*) FROM %s WHERE store = 'offline'" % archive) == [str(OLD + 1)]

    server.start()
    version = "SELECT version FROM xmppd_schema" if pg_dsn(server) else "PRAGMA user_version"
    assert sql(server, version) == ["3"]
    assert sql(server, "SELECT count(*) FROM %s WHERE store = 'offline'" % archive) == ["0"]
    after = sql(server, "SELECT id FROM %s WHERE %s = '%s' ORDER BY id" % (queue, user, rcpt.user))
    assert len(after) == OLD and after == sorted(after, key=int)
    store(server, sender, rcpt, ["new-0"])
    assert fetch(server, rcpt) == old + ["new-0"]
    assert fetch(server, rcpt) == []
    assert fetch(server, other) == ["other-0"]
