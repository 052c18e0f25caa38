"""Reloading auth_sql and storage_pgsql while their queries are in flight.

Both run their queries on one asynchronous libpq pool (modules/pgpool).
When a module unloads, its pool answers every query still pending before
the module's unload() runs: auth_sql's lookups come back cancelled (the
kernel then fails the login), storage_pgsql's work is finished first, for
a bounded time. This runs test_reload_inflight's scenario (vCards, private
XML, rosters, offline messages, last activity; no acknowledged write and
no accepted message lost) with auth_sql as the auth provider, on a
writable user table, and storage_pgsql as the storage driver, both on a
private cluster, while other clients log in over and over with PLAIN
(password_query in flight) and auth_sql, storage_pgsql and the modules
using them are reloaded in turn. Every login ends, with success or
<temporary-auth-failure/> (RFC 6120 §6.5.12) when its lookup was cut off
by a reload, never <not-authorized/> for a right password and never
hanging; under LeakSanitizer nothing leaks (checked at shutdown).
"""

import time

import pytest

import pg_cluster
from test_reload_inflight import reload_under_load
from xmpptest import RawClient, XMPPTestError

pytestmark = pytest.mark.skipif(not pg_cluster.available(),
                                reason="PostgreSQL server binaries not installed")

RELOADED = ["auth_sql", "storage_pgsql", "roster", "presence", "offline", "vcard", "private", "last"]


@pytest.fixture(scope="module")
def pg():
    c = pg_cluster.Cluster().init().start()
    yield c
    c.destroy()


def sql_server_config(pg):
    users = pg.create_db("users")
    pg.psql("CREATE TABLE accounts (name text NOT NULL, dom text NOT NULL, hash text NOT NULL,"
            " s1 text, s256 text, PRIMARY KEY (name, dom))", users)
    auth = {"connect": pg.dsn(users), "pool_size": 2, "hash_scheme": "pbkdf2_sha256", "iterations": 4096,
            "password_query": "SELECT hash AS password, s1 AS scram_sha1, s256 AS scram_sha256 "
                              "FROM accounts WHERE name = %n AND dom = %d",
            "create_query": "INSERT INTO accounts VALUES (%n, %d, %{password_hash}, %{scram_sha1}, "
                            "%{scram_sha256})",
            "set_password_query": "UPDATE accounts SET hash = %{password_hash}, s1 = %{scram_sha1}, "
                                  "s256 = %{scram_sha256} WHERE name = %n AND dom = %d",
            "delete_query": "DELETE FROM accounts WHERE name = %n AND dom = %d"}
    return {"storage": "pgsql",
            "modules": {"storage_sqlite": None, "auth_internal": None,
                        "storage_pgsql": {"connect": pg.dsn(pg.create_db("store")), "pool_size": 2},
                        "auth_sql": auth, "roster": True, "presence": True,
                        "offline": {"max_messages": 100000}, "vcard": True, "private": True,
                        "last": True}}


def login_loop(srv, accs, outcomes):
    """PLAIN logins one after another until stop; each outcome recorded."""
    def loop(stop):
        i = 0
        while not stop.is_set():
            a = accs[i % len(accs)]
            i += 1
            try:
                with RawClient(srv.port) as c:
                    c.open_stream()
                    c.starttls()
                    c.open_stream()
                    r = c.auth_plain(a.user, a.password)
                outcomes.append("ok" if r.ok else r.condition)
            except (XMPPTestError, OSError) as e:
                outcomes.append("exception: %r" % e)
            time.sleep(0.02)
    return loop


def test_reload_auth_sql_and_storage_pgsql_with_queries_in_flight(pg, server_factory, accounts):
    """SDK async rule with auth_sql and storage_pgsql reloaded under load:
    nothing acknowledged lost, every login answered, nothing leaked."""
    srv = server_factory(sql_server_config(pg))
    users = accounts(3, srv=srv)
    (target,) = accounts(1, srv=srv)
    loggers = accounts(2, srv=srv)
    outcomes = []
    reload_under_load(srv, users, target, RELOADED, also=login_loop(srv, loggers, outcomes))
    assert outcomes, "no login was tried"
    odd = [o for o in outcomes if o not in ("ok", "temporary-auth-failure")]
    assert odd == [], odd[:10]
    assert outcomes.count("ok") > 0, outcomes[:20]
    # the provider is back: a login now works
    with RawClient(srv.port) as c:
        c.open_stream()
        c.starttls()
        c.open_stream()
        assert c.auth_plain(loggers[0].user, loggers[0].password).ok
