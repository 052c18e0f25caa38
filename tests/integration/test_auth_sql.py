"""auth_sql: logging in the users of an existing ("legacy") user table.

The table below was not created by xmppd and holds the password formats
such sites have: bcrypt ($2b$, $2y$), sha512-crypt ($6$), yescrypt ($y$),
Django's pbkdf2_sha256$iter$salt$hash, a {PLAIN} row, a disabled row.
Hashes are made here with Python's own libraries (hashlib, crypt), not by
xmppd. Checked: RFC 6120 §6 SASL outcomes (success, <not-authorized/>,
<account-disabled/>, <temporary-auth-failure/>), RFC 4616 PLAIN offered
only over TLS, RFC 5802/7677 SCRAM from stored keys, from a Django PBKDF2
hash (its output is SCRAM-SHA-256's SaltedPassword), and after the
upgrade a PLAIN login triggers; bound parameters (a name with a quote);
read-only providers in xmppctl; create/passwd/delete through operator
queries and XEP-0077 in-band registration.
"""

import base64
import ctypes
import hashlib
import os
import secrets
import threading
import time
import warnings

import pytest

import pg_cluster
from xmpptest import RawClient, Client, connect, run, scaled
from xmpptest import sasl_plain as plain, sasl_scram as scram

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # libcrypt through Python: an independent hash maker

pytestmark = pytest.mark.skipif(not pg_cluster.available(),
                                reason="PostgreSQL server binaries not installed")

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_REGISTER = "jabber:iq:register"


def yescrypt(password):
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    setting = lib.crypt_gensalt(b"$y$", 0, None, 0).decode()
    return crypt.crypt(password, setting)


def django(password, iterations=12000, salt=None):
    salt = salt or secrets.token_hex(8)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return "pbkdf2_sha256$%d$%s$%s" % (iterations, salt, base64.b64encode(dk).decode())


# user -> (password, stored value, disabled)
def legacy_rows():
    bf = crypt.crypt("bcrypt-pw", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))
    return {
        "bob": ("bcrypt-pw", bf, False),
        "bob2y": ("bcrypt-2y", crypt.crypt("bcrypt-2y", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))
                  .replace("$2b$", "$2y$", 1), False),
        "sam": ("sha512-pw", crypt.crypt("sha512-pw", crypt.mksalt(crypt.METHOD_SHA512)), False),
        "yes": ("yes-pw", yescrypt("yes-pw"), False),
        "dj": ("django-pw", django("django-pw"), False),
        "bob)--;%n$1": ("quote-pw", crypt.crypt("quote-pw", crypt.mksalt(crypt.METHOD_SHA512)), False),
        "plain": ("plain-pw", "{PLAIN}plain-pw", False),
        "off": ("off-pw", crypt.crypt("off-pw", crypt.mksalt(crypt.METHOD_SHA512)), True),
        "up": ("upgrade-pw", crypt.crypt("upgrade-pw", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32)), False),
    }


ROWS = legacy_rows()

PASSWORD_QUERY = ("SELECT pw AS password, is_disabled AS disabled, scram1 AS scram_sha1, "
                  "scram256 AS scram_sha256 FROM legacy_users WHERE login = %n AND realm = %d")


def sq(s):
    return "'%s'" % s.replace("'", "''")


@pytest.fixture(scope="module")
def pg():
    c = pg_cluster.Cluster().init().start()
    yield c
    c.destroy()


@pytest.fixture(scope="module")
def legacy_db(pg):
    db = pg.create_db("legacy")
    sql = ["CREATE TABLE legacy_users (id serial PRIMARY KEY, login text NOT NULL, realm text NOT NULL,"
           " pw text, is_disabled boolean NOT NULL DEFAULT false, scram1 text, scram256 text,"
           " UNIQUE (login, realm))"]
    for user, (_, stored, disabled) in ROWS.items():
        sql.append("INSERT INTO legacy_users (login, realm, pw, is_disabled) VALUES (%s, 'localhost', %s, %s)"
                   % (sq(user), sq(stored), "true" if disabled else "false"))
    pg.psql("; ".join(sql), db)
    return db


def sql_overrides(pg, db, **extra):
    conf = {"connect": pg.dsn(db), "password_query": PASSWORD_QUERY,
            "list_query": "SELECT login FROM legacy_users WHERE realm = %d ORDER BY login",
            "reconnect_max": "300ms", "query_timeout": "3s"}
    conf.update(extra)
    return {"modules": {"auth_internal": None, "auth_sql": conf}}


@pytest.fixture(scope="module")
def srv(pg, legacy_db, tmp_path_factory, cert_dir):
    import conftest
    s = conftest.Server(tmp_path_factory.mktemp("auth_sql"), cert_dir, sql_overrides(pg, legacy_db),
                        name="auth_sql")
    s.start()
    yield s
    conftest._finish(s)


def test_rfc6120_6_slixmpp_logs_in_with_every_legacy_format(srv):
    """RFC 6120 §6 / RFC 4616: slixmpp logs in with PLAIN over TLS against
    bcrypt ($2b$ and $2y$), sha512-crypt, yescrypt and Django PBKDF2 rows,
    and against a name with a quote (bound, never spliced)."""
    async def scenario():
        for user in ("bob", "bob2y", "sam", "yes", "dj"):
            acc = type("A", (), {"jid": "%s@localhost" % user, "password": ROWS[user][0]})
            c = await connect(srv, acc, mech="PLAIN")
            assert str(c.boundjid.bare) == "%s@localhost" % user
            await c.stop()
    run(scenario(), timeout=scaled(60))
    # characters that mean something in SQL or to the query compiler
    assert plain(srv, "bob)--;%n$1", ROWS["bob)--;%n$1"][0]).ok
    assert not plain(srv, "bob)--;%n$1", "' OR '1'='1").ok


def test_rfc6120_6_5_wrong_password_unknown_user_disabled(srv):
    """RFC 6120 §6.5: a wrong password and an unknown user both get
    <not-authorized/>; a disabled row gets <account-disabled/>; {PLAIN}
    rows are refused unless allow_plaintext."""
    for user in ("bob", "sam", "yes", "dj"):
        r = plain(srv, user, ROWS[user][0] + "x")
        assert not r.ok and r.condition == "not-authorized", (user, r)
    r = plain(srv, "nobody", "whatever")
    assert not r.ok and r.condition == "not-authorized", r
    r = plain(srv, "off", ROWS["off"][0])
    assert not r.ok and r.condition == "account-disabled", r
    r = plain(srv, "plain", "plain-pw")
    assert not r.ok and r.condition == "not-authorized", r
    assert "cannot be verified: plaintext passwords need allow_plaintext" in srv.read_log()


def test_rfc6120_6_mechanisms_follow_stored_format(srv):
    """RFC 6120 §6.3.3: PLAIN is offered only on TLS; SCRAM-SHA-1/-256 are
    offered because the password query returns scram_sha1/scram_sha256
    columns; SCRAM-SHA-512 is not (no such column)."""
    with RawClient(srv.port) as c:
        f = c.open_stream()
        assert "PLAIN" not in f["mechanisms"]
        c.starttls()
        f = c.open_stream()
        assert "PLAIN" in f["mechanisms"]
        assert "SCRAM-SHA-256" in f["mechanisms"] and "SCRAM-SHA-1" in f["mechanisms"]
        assert not any(m.startswith("SCRAM-SHA-512") for m in f["mechanisms"])


def test_rfc7677_scram_sha256_from_django_pbkdf2(srv):
    """RFC 7677: a Django pbkdf2_sha256 row serves SCRAM-SHA-256 directly:
    its hash is PBKDF2-HMAC-SHA-256(password, salt, i), which is SCRAM's
    SaltedPassword; the server signature checks out. A wrong password fails."""
    r = scram(srv, "SCRAM-SHA-256", "dj", ROWS["dj"][0])
    assert r.ok and r.server_verified, r
    r = scram(srv, "SCRAM-SHA-256", "dj", "nope")
    assert not r.ok and r.condition == "not-authorized", r


def test_upgrade_to_scram_after_plain_login(pg, legacy_db, server_factory):
    """A bcrypt row has no SCRAM keys: SCRAM-SHA-256 fails (not-authorized)
    and slixmpp falls back to PLAIN; that login stores SCRAM-SHA-1/-256 keys
    through upgrade_query, after which SCRAM-SHA-256, SCRAM-SHA-256-PLUS and
    SCRAM-SHA-1 succeed; the bcrypt hash is untouched."""
    srv = server_factory(sql_overrides(
        pg, legacy_db,
        upgrade_query="UPDATE legacy_users SET scram1 = %{scram_sha1}, scram256 = %{scram_sha256} "
                      "WHERE login = %n AND realm = %d"))
    user, pw = "up", ROWS["up"][0]
    r = scram(srv, "SCRAM-SHA-256", user, pw)
    assert not r.ok and r.condition == "not-authorized", r

    async def scenario():
        acc = type("A", (), {"jid": "up@localhost", "password": pw})
        c = await connect(srv, acc, mech=None)  # slixmpp picks SCRAM first, then PLAIN
        assert "not-authorized" in c.auth_failures, c.auth_failures  # SCRAM tried first
        await c.stop()
    run(scenario())

    deadline = time.monotonic() + scaled(5)
    while True:
        row = pg.psql("SELECT scram1 IS NOT NULL, scram256 IS NOT NULL, pw FROM legacy_users "
                      "WHERE login = 'up'", legacy_db).strip().split("|")
        if row[:2] == ["t", "t"]:
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.1)
    assert row[2] == ROWS["up"][1]
    stored = pg.psql("SELECT scram256 FROM legacy_users WHERE login = 'up'", legacy_db).strip()
    it, salt, sk, svk = stored.split(",")
    assert int(it) >= 4096 and len(base64.b64decode(sk)) == 32
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1"):
        r = scram(srv, mech, user, pw)
        assert r.ok and r.server_verified, (mech, r)
    assert "stored SCRAM keys for up@localhost (was BLF-CRYPT)" in srv.read_log()


def test_unknown_user_scram_reveals_nothing(srv):
    """RFC 5802 §9: an unknown user gets a challenge like anyone else and
    fails at the proof with <not-authorized/>."""
    r = scram(srv, "SCRAM-SHA-256", "ghost", "pw")
    assert not r.ok and r.condition == "not-authorized", r


def test_xmppctl_users_and_read_only(srv):
    """xmppctl lists the table's users (list_query); adduser, passwd and
    deluser say in one line that the provider cannot do that."""
    r = srv.ctl("users", "localhost")
    assert r.returncode == 0, r.stderr
    assert "bob@localhost" in r.stdout.split() and "bob)--;%n$1@localhost" in r.stdout.split()
    for args in (("adduser", "new@localhost"), ("passwd", "bob@localhost"), ("deluser", "bob@localhost")):
        r = srv.ctl(*args, input="pw\n")
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "read-only" in lines[0], r.stderr
    assert plain(srv, "bob", ROWS["bob"][0]).ok


def test_writable_provider_create_passwd_delete_register(pg, server_factory):
    """With create/set_password/delete queries the table is writable:
    xmppctl adduser stores a bcrypt hash plus SCRAM keys (SCRAM works at
    once), passwd changes it, XEP-0077 registration creates a row, deluser
    removes it; a duplicate is refused."""
    db = pg.create_db("rw")
    pg.psql("CREATE TABLE accounts (name text NOT NULL, dom text NOT NULL, hash text NOT NULL,"
            " s1 text, s256 text, PRIMARY KEY (name, dom))", db)
    pq = ("SELECT hash AS password, s1 AS scram_sha1, s256 AS scram_sha256 FROM accounts "
          "WHERE name = %n AND dom = %d")
    srv = server_factory({
        "modules": {"auth_internal": None, "register": {"allow_registration": True},
                    "auth_sql": {"connect": pg.dsn(db), "password_query": pq,
                                 "create_query": "INSERT INTO accounts VALUES (%n, %d, %{password_hash}, "
                                                 "%{scram_sha1}, %{scram_sha256})",
                                 "set_password_query": "UPDATE accounts SET hash = %{password_hash}, "
                                                       "s1 = %{scram_sha1}, s256 = %{scram_sha256} "
                                                       "WHERE name = %n AND dom = %d",
                                 "delete_query": "DELETE FROM accounts WHERE name = %n AND dom = %d",
                                 "list_query": "SELECT name FROM accounts WHERE dom = %d"}}})
    srv.adduser("carol@localhost", "first-pw")
    h = pg.psql("SELECT hash FROM accounts WHERE name = 'carol'", db).strip()
    assert h.startswith("$2b$") and crypt.crypt("first-pw", h) == h
    assert scram(srv, "SCRAM-SHA-256", "carol", "first-pw").ok
    r = srv.ctl("adduser", "carol@localhost", input="x\n")
    assert r.returncode == 1 and "user exists" in r.stderr
    srv.ctl("passwd", "carol@localhost", input="second-pw\n", check=True)
    assert not plain(srv, "carol", "first-pw").ok
    assert plain(srv, "carol", "second-pw").ok
    assert scram(srv, "SCRAM-SHA-1", "carol", "second-pw").ok

    with RawClient(srv.port) as c:  # XEP-0077 §3.1 in-band registration
        c.open_stream()
        c.starttls()
        c.open_stream()
        res = c.iq("<query xmlns='%s'><username>dave</username><password>dave-pw</password></query>"
                   % NS_REGISTER, type_="set")
        assert res.get("type") == "result"
    assert plain(srv, "dave", "dave-pw").ok
    assert srv.ctl("users", "localhost", check=True).stdout.split() == ["carol@localhost", "dave@localhost"] or \
        sorted(srv.ctl("users", "localhost", check=True).stdout.split()) == ["carol@localhost", "dave@localhost"]
    srv.ctl("deluser", "dave@localhost", check=True)
    assert pg.psql("SELECT count(*) FROM accounts WHERE name = 'dave'", db).strip() == "0"
    r = srv.ctl("deluser", "dave@localhost")
    assert r.returncode == 1 and "no such user" in r.stderr


def test_config_errors_name_the_option(pg, legacy_db, server_factory):
    """Query problems stop the start with a line naming the option: an
    unknown variable, a %{password} the module never binds, and SQL the
    database rejects (its own message)."""
    cases = [
        ({"password_query": "SELECT pw AS password FROM legacy_users WHERE login = %x"},
         "option password_query: unknown variable %x"),
        ({"password_query": "SELECT pw AS password FROM legacy_users WHERE pw = %{password}"},
         "option password_query: %{password} is not available"),
        ({"password_query": "SELECT pw AS password FROM no_such_table WHERE login = %n"},
         'option password_query: relation "no_such_table" does not exist'),
        ({"password_query": "SELECT pw FROM legacy_users WHERE login = %n"},
         'returns no column named "password"'),
        ({"delete_query": "DELETE FROM legacy_users WHERE login = %{scram_sha1}"},
         "option delete_query: variable %{scram_sha1} cannot be used in this query"),
    ]
    for extra, msg in cases:
        s = server_factory(sql_overrides(pg, legacy_db, **extra), start=False)
        with pytest.raises(RuntimeError) as e:
            s.start()
        assert msg in str(e.value), str(e.value)[-2000:]


def test_quoted_variable_accepted_with_notice(pg, legacy_db, server_factory):
    """'%n' written in quotes still binds the value (the quotes are
    dropped, with an info line)."""
    q = PASSWORD_QUERY.replace("login = %n", "login = '%n'")
    s = server_factory(sql_overrides(pg, legacy_db, password_query=q))
    assert plain(s, "sam", ROWS["sam"][0]).ok
    assert "variables need no quotes" in s.read_log()


def test_user_database_down_then_back(pg, legacy_db, server_factory):
    """RFC 6120 §6.5.12: while the user database is down, logins get
    <temporary-auth-failure/> quickly; once it is back they work, without
    restarting xmppd."""
    s = server_factory(sql_overrides(pg, legacy_db))
    assert plain(s, "sam", ROWS["sam"][0]).ok
    pg.stop("fast")
    try:
        t0 = time.monotonic()
        r = plain(s, "sam", ROWS["sam"][0])
        assert not r.ok and r.condition == "temporary-auth-failure", r
        assert time.monotonic() - t0 < scaled(5)
    finally:
        pg.start()
    deadline = time.monotonic() + scaled(10)
    while not plain(s, "sam", ROWS["sam"][0]).ok:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_plain_timing_does_not_tell_whether_an_account_exists(pg, server_factory):
    """RFC 6120 §13.9.4 / RFC 4616 §6: with auth_sql, a PLAIN login of a
    user the password_query does not find costs what a wrong password of an
    existing row costs (hashing with hash_scheme: PBKDF2 here, at an
    iteration count that makes the cost measurable), not a fast
    "no such user"."""
    from login_timing import assert_same_cost, failure_times
    db = pg.create_db("timing")
    pg.psql("CREATE TABLE accounts (name text NOT NULL, dom text NOT NULL, hash text NOT NULL,"
            " PRIMARY KEY (name, dom))", db)
    srv = server_factory({
        "modules": {"auth_internal": None,
                    "auth_sql": {"connect": pg.dsn(db),
                                 "password_query": "SELECT hash AS password FROM accounts "
                                                   "WHERE name = %n AND dom = %d",
                                 "create_query": "INSERT INTO accounts VALUES (%n, %d, %{password_hash})",
                                 "hash_scheme": "pbkdf2_sha256", "iterations": 150000,
                                 "offer_scram": "never"}}})
    srv.adduser("erin@localhost", "the-right-password")
    wrong, missing = failure_times(srv, "erin", "nobody-here")
    assert_same_cost(wrong, missing, floor=0.015)


def test_user_database_backends_killed_during_logins(pg, legacy_db, server_factory):
    """RFC 6120 §6.5.12 with the pool's failure behaviour
    (modules/pgpool/pgpool.h): PostgreSQL terminates the user database
    connections (pg_terminate_backend) again and again while clients log
    in. Every login is answered: success, or <temporary-auth-failure/> for
    one whose lookup ran on a killed connection; never <not-authorized/>
    for the right password, never a hang. The pool reconnects on its own:
    once the killing stops, logins work."""
    s = server_factory(sql_overrides(pg, legacy_db))
    kills, outcomes = [], []

    def killer():
        for _ in range(20):
            out = pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE application_name = 'xmppd-auth'", check=False)
            kills.append(int(out.strip() or 0))
            time.sleep(0.08)

    t = threading.Thread(target=killer)
    t.start()
    while t.is_alive() or len(outcomes) < 10:
        r = plain(s, "sam", ROWS["sam"][0])
        outcomes.append("ok" if r.ok else r.condition)
    t.join()
    assert sum(kills) > 0, kills
    assert set(outcomes) <= {"ok", "temporary-auth-failure"}, set(outcomes)
    deadline = time.monotonic() + scaled(10)
    while not plain(s, "sam", ROWS["sam"][0]).ok:
        assert time.monotonic() < deadline, "logins did not come back"
        time.sleep(0.1)
    assert all(plain(s, "sam", ROWS["sam"][0]).ok for _ in range(3))
    log = s.read_log()
    assert "user database connection lost" in log
    assert "re-established" in log


def test_issue17_disable_and_enable_through_queries(pg, server_factory):
    """Issue 17 (XEP-0133 §4.3/§4.4, xmppctl disable/enable): with
    disable_query and enable_query the provider bars an account (its row's
    disabled column, so PLAIN and SCRAM get RFC 6120 §6.5.1
    <account-disabled/>) and lets it in again; an unknown account is "no
    such user"; without the queries the provider says it cannot."""
    db = pg.create_db("dis")
    pg.psql("CREATE TABLE people (name text PRIMARY KEY, hash text NOT NULL, s256 text,"
            " off boolean NOT NULL DEFAULT false)", db)
    pq = "SELECT hash AS password, s256 AS scram_sha256, off AS disabled FROM people WHERE name = %n"
    conf = {"connect": pg.dsn(db), "password_query": pq,
            "create_query": "INSERT INTO people (name, hash, s256) VALUES (%n, %{password_hash}, "
                            "%{scram_sha256})",
            "disable_query": "UPDATE people SET off = true WHERE name = %n",
            "enable_query": "UPDATE people SET off = false WHERE name = %n"}
    srv = server_factory({"modules": {"auth_internal": None, "auth_sql": conf}})
    srv.adduser("erin@localhost", "erin-pw")
    assert plain(srv, "erin", "erin-pw").ok
    r = srv.ctl("disable", "erin@localhost")
    assert r.returncode == 0, r.stderr
    assert pg.psql("SELECT off FROM people WHERE name = 'erin'", db).strip() == "t"
    assert plain(srv, "erin", "erin-pw").condition == "account-disabled"
    assert scram(srv, "SCRAM-SHA-256", "erin", "erin-pw").condition == "account-disabled"
    srv.ctl("enable", "erin@localhost", check=True)
    assert plain(srv, "erin", "erin-pw").ok
    r = srv.ctl("disable", "ghost@localhost")
    assert r.returncode == 1 and "no such user" in r.stderr

    del conf["disable_query"], conf["enable_query"]
    ro = server_factory({"modules": {"auth_internal": None, "auth_sql": conf}})
    r = ro.ctl("disable", "erin@localhost")
    assert r.returncode == 1 and "cannot disable accounts" in r.stderr, r.stderr
