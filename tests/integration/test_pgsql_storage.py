"""storage_pgsql: PostgreSQL storage through libpq's asynchronous API.

The whole integration suite also runs on PostgreSQL (XMPPD_TEST_STORAGE=pgsql,
contrib/run-tests.sh); these tests check what only this driver has: schema
migrations and their refusal of a newer schema, a clear error when the
database cannot be reached at start, and — with a private cluster stopped
and started under a running server — that sessions survive a database
outage, writes are refused with a stanza error (RFC 6120 §8.3.3.8
internal-server-error, type wait) rather than dropped or hung, and storage
works again once PostgreSQL is back, without restarting xmppd.
"""

import threading
import time

import pytest

import pg_cluster
from conftest import deep_merge
from xmpptest import QUIET_PERIOD, RawClient, error_condition, scaled, tostr

pytestmark = pytest.mark.skipif(not pg_cluster.available(),
                                reason="PostgreSQL server binaries not installed")

NS_ROSTER = "jabber:iq:roster"
NS_PING = "urn:xmpp:ping"


@pytest.fixture(scope="module")
def pg():
    """A private cluster for this module (it gets stopped and started)."""
    c = pg_cluster.Cluster().init().start()
    yield c
    c.destroy()


def pg_overrides(dsn, **opts):
    conf = {"connect": dsn, "reconnect_max": "300ms", "query_timeout": "3s"}
    conf.update(opts)
    return {"storage": "pgsql",
            "modules": {"storage_sqlite": None, "storage_pgsql": conf,
                        "roster": {}, "presence": {}, "offline": {}, "ping": {}}}


def login(srv, account, resource="r"):
    c = RawClient(srv.port)
    c.login(account.user, account.password, resource=resource)
    return c


def roster_set(c, jid, name):
    return c.iq("<query xmlns='%s'><item jid='%s' name='%s'/></query>" % (NS_ROSTER, jid, name),
                type_="set")


def test_schema_created_and_versioned(pg, server_factory, accounts):
    """A fresh database gets the documented tables at start, at schema
    version 3; a second start (xmppctl, then a restart) leaves it as is."""
    db = pg.create_db()
    srv = server_factory(pg_overrides(pg.dsn(db)))
    (a,) = accounts(1, srv=srv)
    assert pg.psql("SELECT version FROM xmppd_schema", db).split() == ["3"]
    indexes = pg.psql("SELECT indexname FROM pg_indexes WHERE tablename = 'xmppd_archive' "
                      "ORDER BY indexname", db).split()
    assert indexes == ["xmppd_archive_by_id", "xmppd_archive_by_key", "xmppd_archive_by_user",
                       "xmppd_archive_by_when", "xmppd_archive_by_with", "xmppd_archive_pkey"]
    tables = pg.psql("SELECT tablename FROM pg_tables WHERE tablename LIKE 'xmppd_%' "
                     "ORDER BY tablename", db).split()
    assert tables == ["xmppd_archive", "xmppd_kv", "xmppd_queue", "xmppd_schema"]
    # the queue of offline messages: one index besides the appenders' ids
    indexes = pg.psql("SELECT indexname FROM pg_indexes WHERE tablename = 'xmppd_queue' "
                      "ORDER BY indexname", db).split()
    assert indexes == ["xmppd_queue_by_id", "xmppd_queue_by_key", "xmppd_queue_pkey"]
    # the account is a keyval row, its value JSON (jsonb) holding SCRAM keys only
    row = pg.psql("SELECT store, value ? 'SCRAM-SHA-256' FROM xmppd_kv WHERE username = '%s'"
                  % a.user, db).split()
    assert row == ["accounts|t"]
    srv.restart()
    assert pg.psql("SELECT count(*) FROM xmppd_schema", db).split() == ["1"]
    with login(srv, a) as c:
        assert c.jid.startswith(a.jid)


def test_newer_schema_refused(pg, server_factory):
    """A database whose schema is newer than this binary knows is refused
    at start with a one-line reason; nothing in it is touched."""
    db = pg.create_db()
    pg.psql("CREATE TABLE xmppd_schema (version integer NOT NULL); "
            "INSERT INTO xmppd_schema VALUES (99)", db)
    srv = server_factory(pg_overrides(pg.dsn(db)), start=False)
    with pytest.raises(RuntimeError) as e:
        srv.start()
    assert "schema version 99 is newer than this xmppd supports (3)" in str(e.value)
    assert pg.psql("SELECT version FROM xmppd_schema", db).split() == ["99"]
    assert "xmppd_kv" not in pg.psql("SELECT tablename FROM pg_tables", db)


def test_schema_1_migrated_keeps_items(pg, server_factory, accounts):
    """A version 1 database (before archive items had chosen ids) is
    migrated at start: its items keep their driver ids, and a full JID in
    with_jid is split into bare JID and resource, which 'with' queries
    then match (read here through a MAM query)."""
    db = pg.create_db()
    srv = server_factory(deep_merge(pg_overrides(pg.dsn(db)), {"modules": {"mam": {}}}), start=False)
    (a,) = accounts(1, srv=srv)  # xmppctl creates the schema, at version 3
    pg.psql("DROP TABLE xmppd_queue; DROP INDEX xmppd_archive_by_key; DROP INDEX xmppd_archive_by_with; "
            "ALTER TABLE xmppd_archive DROP COLUMN key, DROP COLUMN with_res; "
            "UPDATE xmppd_schema SET version = 1", db)
    msg = ("<message xmlns='jabber:client' from='bob@example.org/phone' to='%s' type='chat'>"
           "<body>kept</body></message>" % a.jid)
    row = pg.psql("INSERT INTO xmppd_archive (host, store, username, with_jid, when_ms, value) "
                  "VALUES ('localhost', 'mam', '%s', 'bob@example.org/phone', 1, to_jsonb('%s'::text)) "
                  "RETURNING id" % (a.user, msg.replace("'", "''")), db).split()[0]
    srv.start()
    assert pg.psql("SELECT version FROM xmppd_schema", db).split() == ["3"]
    assert pg.psql("SELECT with_jid || ' ' || with_res FROM xmppd_archive", db).split() == \
        ["bob@example.org", "phone"]
    with login(srv, a) as c:
        for with_ in ("bob@example.org/phone", "bob@example.org"):
            c.send("<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' "
                   "type='submit'><field var='with'><value>%s</value></field></x></query></iq>" % with_)
            r = c.wait_for(lambda el: el.find("{urn:xmpp:mam:2}result") is not None)
            assert r.find("{urn:xmpp:mam:2}result").get("id") == row
            assert c.wait_for(lambda el: el.get("id") == "q").get("type") == "result"


def test_unreachable_database_at_start(server_factory):
    """No database at the configured address: xmppd does not start, and
    says why in one line."""
    port = pg_cluster._free_port()
    srv = server_factory(pg_overrides("host=127.0.0.1 port=%d user=postgres dbname=x connect_timeout=2"
                                      % port), start=False)
    with pytest.raises(RuntimeError) as e:
        srv.start()
    assert "cannot connect to the database" in str(e.value)


def test_outage_sessions_survive_and_storage_recovers(pg, server_factory, accounts):
    """PostgreSQL stopped under a running server with clients connected:
    sessions stay up and route (RFC 6120 §8), a roster set (RFC 6121 §2.3)
    gets an internal-server-error of type wait instead of hanging, a message
    for an offline account is bounced rather than dropped (RFC 6121 §8.5.2.2);
    once PostgreSQL is back, storage works again without a restart."""
    db = pg.create_db()
    srv = server_factory(pg_overrides(pg.dsn(db)))
    a, b, c_off = accounts(3, srv=srv)
    with login(srv, a) as ca, login(srv, b) as cb:
        r = roster_set(ca, b.jid, "before")
        assert r.get("type") == "result", tostr(r)

        pg.stop("fast")
        try:
            t0 = time.monotonic()
            r = roster_set(ca, b.jid, "during")
            assert r.get("type") == "error", tostr(r)
            assert error_condition(r) == ("wait", "internal-server-error")
            assert time.monotonic() - t0 < scaled(5)

            # the sessions are up: routing and IQs that need no storage work
            ca.send("<message to='%s/r' type='chat' id='m1'><body>still here</body></message>" % b.jid)
            m = cb.wait_for(lambda el: el.tag.endswith("message") and el.get("id") == "m1")
            assert m.find("{jabber:client}body").text == "still here"
            pong = ca.iq("<ping xmlns='%s'/>" % NS_PING, to="localhost")
            assert pong.get("type") == "result", tostr(pong)

            # a message that must be stored is refused, not lost
            ca.send("<message to='%s' type='chat' id='m2'><body>for later</body></message>" % c_off.jid)
            err = ca.wait_for(lambda el: el.tag.endswith("message") and el.get("id") == "m2")
            assert err.get("type") == "error", tostr(err)
        finally:
            pg.start()

        # storage comes back on its own
        deadline = time.monotonic() + scaled(15)
        while True:
            r = roster_set(ca, b.jid, "after")
            if r.get("type") == "result":
                break
            assert time.monotonic() < deadline, "storage did not recover: %s" % tostr(r)
            time.sleep(0.2)
        got = ca.iq("<query xmlns='%s'/>" % NS_ROSTER)
        item = got.find("{%s}query/{%s}item" % (NS_ROSTER, NS_ROSTER))
        assert item is not None and item.get("name") == "after", tostr(got)
        # the sessions never dropped
        assert ca.quiet(QUIET_PERIOD / 2, pred=lambda el: el.tag.endswith("error")) == []

    # the message for the offline account was not half-stored
    assert pg.psql("SELECT count(*) FROM xmppd_archive WHERE username = '%s'" % c_off.user, db).split() == ["0"]
    # new logins and account changes work
    (d,) = accounts(1, srv=srv)
    with login(srv, d) as cd:
        assert cd.jid.startswith(d.jid)
    log = srv.read_log()
    assert "database connection lost" in log
    assert "re-established" in log
    assert srv.running


def test_restart_under_load_drops_nothing_silently(pg, server_factory, accounts):
    """PostgreSQL restarted while two senders stream messages to offline
    accounts (issue 11.9): every message is either stored and delivered
    later (once) or bounced to its sender with an error (RFC 6120 §8.3,
    XEP-0160 §3); none disappears, none arrives twice, the server stays up."""
    import threading
    from xmpptest import NS_CLIENT, q
    db = pg.create_db()
    overrides = pg_overrides(pg.dsn(db), pool_size=2)
    overrides["modules"]["offline"] = {"max_messages": 100000}
    srv = server_factory(overrides)
    s1, s2, r1, r2 = accounts(4, srv=srv)
    senders = [login(srv, s1), login(srv, s2)]
    sent, bounced = [], []
    stop = threading.Event()

    def run_sender(i, c):
        n = 0
        while not stop.is_set() and n < 3000:
            mid = "pgr-%d-%d" % (i, n)
            c.send("<message to='%s' type='chat' id='%s'><body>%s</body></message>"
                   % ((r1 if n % 2 else r2).jid, mid, mid))
            sent.append(mid)
            n += 1
            if n % 20 == 0:
                time.sleep(0.01)
                bounced.extend(el.get("id") for el in c.quiet(0, pred=lambda el: el.get("type") == "error"))

    threads = [threading.Thread(target=run_sender, args=(i, c), daemon=True) for i, c in enumerate(senders)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    pg.stop("fast")
    time.sleep(0.5)
    pg.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(scaled(10))
    for c in senders:  # the last answers
        c.send("<iq type='get' id='fin' to='localhost'><ping xmlns='%s'/></iq>" % NS_PING)
        got = []
        while True:
            el = c.next_element(timeout=scaled(15))
            if el.get("id") == "fin":
                break
            got.append(el)
        bounced.extend(el.get("id") for el in got if el.get("type") == "error")
        c.close()
    assert srv.running
    assert bounced, "the restart caused no failure at all: the test did not test it"
    delivered = []
    for r in (r1, r2):
        deadline = time.monotonic() + scaled(20)
        with login(srv, r) as c:
            c.send("<presence/>")
            while True:
                msgs = c.quiet(1.0, pred=lambda el: el.tag == q(NS_CLIENT, "message"))
                delivered += [el.get("id") for el in msgs]
                if not msgs or time.monotonic() > deadline:
                    break
    dupes = sorted({m for m in delivered if delivered.count(m) > 1})
    assert dupes == [], dupes[:10]
    both = set(delivered) & set(bounced)
    assert not both, "bounced and delivered: %s" % sorted(both)[:10]
    missing = sorted(set(sent) - set(delivered) - set(bounced))
    assert missing == [], "%d of %d messages silently dropped: %s" % (len(missing), len(sent), missing[:10])
    print("pgsql restart: %d sent, %d stored and delivered, %d bounced" % (len(sent), len(delivered), len(bounced)))


def kill_backends(pg, db, app, rounds, pause, kills):
    """Terminates every backend of application app on db, rounds times."""
    def loop():
        for _ in range(rounds):
            out = pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE application_name = '%s' AND datname = '%s'" % (app, db), check=False)
            kills.append(int(out.strip() or 0))
            time.sleep(pause)
    return threading.Thread(target=loop)


def test_backends_killed_under_load(pg, server_factory, accounts):
    """The pool's failure behaviour (modules/pgpool/pgpool.h) with
    PostgreSQL terminating the server's connections again and again
    (pg_terminate_backend) while a client stores roster items (RFC 6121
    §2.3): every set is answered, with a result or an internal-server-error
    of type wait (the statement ran on a killed connection), never left
    hanging; the session stays up; each acknowledged item reads back (it or
    a later attempt); the log says connections were lost and re-established;
    once the killing stops every write succeeds again, without a restart."""
    db = pg.create_db()
    srv = server_factory(pg_overrides(pg.dsn(db), pool_size=2))
    (a,) = accounts(1, srv=srv)
    acked, tries, outcomes, kills = {}, {}, [], []
    with login(srv, a) as ca:
        killer = kill_backends(pg, db, "xmppd", rounds=25, pause=0.08, kills=kills)
        killer.start()
        i = 0
        while killer.is_alive() or i < 50:
            contact, name = "c%d@example.net" % (i % 4), "n%d" % i
            tries.setdefault(contact, []).append(name)
            r = roster_set(ca, contact, name)
            if r.get("type") == "result":
                outcomes.append("ok")
                acked[contact] = name
            else:
                outcomes.append(error_condition(r))
            i += 1
        killer.join()
        assert sum(kills) > 0, kills
        assert set(outcomes) <= {"ok", ("wait", "internal-server-error")}, set(outcomes)
        assert outcomes.count("ok") > 0
        # the killing is over: writes succeed (after at most a reconnect)
        deadline = time.monotonic() + scaled(10)
        while roster_set(ca, "last@example.net", "last").get("type") != "result":
            assert time.monotonic() < deadline, "storage did not come back"
            time.sleep(0.1)
        for _ in range(5):
            assert roster_set(ca, "last@example.net", "again").get("type") == "result"
        got = ca.iq("<query xmlns='%s'/>" % NS_ROSTER)
        items = {it.get("jid"): it.get("name")
                 for it in got.findall("{%s}query/{%s}item" % (NS_ROSTER, NS_ROSTER))}
        for contact, name in acked.items():
            assert items.get(contact) in tries[contact][tries[contact].index(name):], (contact, name, items)
        assert ca.quiet(QUIET_PERIOD / 2, pred=lambda el: el.tag.endswith("error")) == []
    log = srv.read_log()
    assert "database connection lost" in log
    assert "re-established" in log
    assert srv.running
