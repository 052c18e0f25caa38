"""auth_ldap: logging in the accounts of an LDAP directory.

A private slapd (slapd_server.py) serves the test directory
modules/auth_ldap/testdata/directory.ldif over LDAP and LDAPS with a CA
made for the run. Checked: RFC 6120 §6 SASL outcomes (<not-authorized/>,
<account-disabled/>, <temporary-auth-failure/>) for search-then-bind and
direct binds (RFC 4513 §5.1.3 simple bind), RFC 4515 §3 filter escaping
(injection attempts), RFC 4514 DN escaping, StartTLS (RFC 4513 §3) and
LDAPS with certificate and hostname checks (RFC 6125), fail-over between
URIs, a directory killed and restarted under load, a stalled directory,
Active Directory entries (sAMAccountName, userPrincipalName,
userAccountControl), paged listing (RFC 2696), and the SCRAM rule: keys
stored after a PLAIN login serve only while the directory still has the
account, enabled, with the same password.
"""

import threading
import time

import pytest

import slapd_server
from slapd_server import PEOPLE, SERVICE_DN, SERVICE_PW
from xmpptest import RawClient, connect, run, scaled
from xmpptest import sasl_plain as plain, sasl_scram as scram

pytestmark = pytest.mark.skipif(not slapd_server.available(),
                                reason="slapd not installed (apt-get install slapd ldap-utils)")

NS_VCARD = "vcard-temp"


@pytest.fixture(scope="module")
def slapd():
    s = slapd_server.Slapd().start()
    yield s
    s.destroy()


def ldap_conf(slapd, **extra):
    conf = {"uris": [slapd.uri()], "base": PEOPLE, "bind_dn": SERVICE_DN, "bind_password": SERVICE_PW,
            "disabled_attribute": "employeeType", "disabled_values": ["disabled"],
            "timeout": "2s", "connect_timeout": "2s", "reconnect_max": "500ms"}
    conf.update(extra)
    return {"modules": {"auth_internal": None, "auth_ldap": conf}}


def wait_until(pred, what, timeout=10):
    deadline = time.monotonic() + scaled(timeout)
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_rfc4513_search_then_bind_slixmpp(slapd, server_factory):
    """RFC 4513 §5.1.3: the service account finds alice's entry with the
    filter, then her DN is bound with her password (an {SSHA} hash in the
    directory); slixmpp logs in with PLAIN over TLS and binds a resource.
    Only PLAIN is offered (no SCRAM keys without the scram option)."""
    srv = server_factory(ldap_conf(slapd))

    async def scenario():
        acc = type("A", (), {"jid": "alice@localhost", "password": "alice-pw"})
        c = await connect(srv, acc, mech="PLAIN")
        assert str(c.boundjid.bare) == "alice@localhost"
        await c.stop()
    run(scenario())
    with RawClient(srv.port) as c:
        c.open_stream()
        c.starttls()
        assert c.open_stream()["mechanisms"] == ["PLAIN"]
    assert "accounts from the directory" in srv.read_log()


def test_rfc6120_6_5_wrong_password_unknown_user_disabled(slapd, server_factory):
    """RFC 6120 §6.5.10 / §6.5.1: a wrong password and an unknown account
    get <not-authorized/>; an entry whose disabled_attribute holds one of
    disabled_values gets <account-disabled/>, even with its right
    password."""
    srv = server_factory(ldap_conf(slapd))
    r = plain(srv, "alice", "alice-pw-wrong")
    assert not r.ok and r.condition == "not-authorized", r
    r = plain(srv, "nobody", "whatever")
    assert not r.ok and r.condition == "not-authorized", r
    r = plain(srv, "carol", "carol-pw")
    assert not r.ok and r.condition == "account-disabled", r
    assert plain(srv, "bob", "bob-pw").ok


def test_rfc4515_filter_injection(slapd, server_factory):
    """RFC 4515 §3: the localpart is an assertion value, escaped: names
    built to widen the filter ("*", "alice)(uid=*", "*)(|(uid=*") match
    nothing and fail with another account's password; accounts whose
    names hold filter characters (star*, x(y)) log in with their own."""
    srv = server_factory(ldap_conf(slapd))
    for user in ("*", "alice)(uid=*", "*)(|(uid=*", "al*", "alice\\29"):
        for pw in ("alice-pw", "bob-pw"):
            r = plain(srv, user, pw)
            assert not r.ok and r.condition == "not-authorized", (user, r)
    assert plain(srv, "star*", "star*-pw").ok
    assert plain(srv, "x(y)", "x(y)-pw").ok
    assert not plain(srv, "star*", "alice-pw").ok
    assert "more than one entry" not in srv.read_log()


def test_rfc4514_direct_bind_with_dn_template(slapd, server_factory):
    """Direct bind (no service account, no search): the DN template gets
    the localpart escaped per RFC 4514 §2.4, so names with a comma or a
    backslash bind as their own entry; a wrong password and an unknown
    account get <not-authorized/>; the disabled entry is read after the
    bind (as the user) and refused."""
    srv = server_factory(ldap_conf(slapd, bind_dn=None, bind_password=None,
                                   bind_dn_template="uid=%u," + PEOPLE))
    assert plain(srv, "alice", "alice-pw").ok
    assert plain(srv, "comma,user", "comma,user-pw").ok
    assert plain(srv, "back\\slash", "back\\slash-pw").ok
    r = plain(srv, "alice", "bob-pw")
    assert not r.ok and r.condition == "not-authorized", r
    r = plain(srv, "nobody", "x")
    assert not r.ok and r.condition == "not-authorized", r
    r = plain(srv, "carol", "carol-pw")
    assert not r.ok and r.condition == "account-disabled", r
    r = plain(srv, "alice,ou=people", "alice-pw")
    assert not r.ok and r.condition == "not-authorized", r


def test_rfc4513_3_starttls_with_the_suites_ca(slapd, server_factory):
    """RFC 4513 §3: StartTLS on ldap://, the server's certificate checked
    against tls_ca_file: logins work. With a CA that did not sign it, no
    connection comes up: the login fails with <temporary-auth-failure/>
    and the log names the certificate."""
    srv = server_factory(ldap_conf(slapd, starttls=True, tls_ca_file=slapd.ca_file,
                                   uris=[slapd.uri(host="localhost")]))
    assert plain(srv, "alice", "alice-pw").ok
    bad = server_factory(ldap_conf(slapd, starttls=True, tls_ca_file=slapd.other_ca_file,
                                   uris=[slapd.uri(host="localhost")]))
    wait_until(lambda: "certificate not accepted" in bad.read_log(), "no certificate error logged")
    r = plain(bad, "alice", "alice-pw")
    assert not r.ok and r.condition == "temporary-auth-failure", r


def test_rfc6125_ldaps_hostname_check(slapd, server_factory):
    """LDAPS (TLS from the first byte): the certificate names localhost
    only. ldaps://localhost with the suite's CA works; ldaps://127.0.0.1
    fails the name check (RFC 6125 §6: an IP reference needs an iPAddress
    SAN), so logins get <temporary-auth-failure/>."""
    srv = server_factory(ldap_conf(slapd, tls_ca_file=slapd.ca_file,
                                   uris=[slapd.uri("ldaps", host="localhost")]))
    assert plain(srv, "alice", "alice-pw").ok
    assert plain(srv, "x(y)", "x(y)-pw").ok
    bad = server_factory(ldap_conf(slapd, tls_ca_file=slapd.ca_file,
                                   uris=[slapd.uri("ldaps", host="127.0.0.1")]))
    wait_until(lambda: "certificate not accepted" in bad.read_log(), "no certificate error logged")
    assert "mismatch" in bad.read_log()
    r = plain(bad, "alice", "alice-pw")
    assert not r.ok and r.condition == "temporary-auth-failure", r


def test_failover_to_the_next_uri(slapd, server_factory):
    """Several URIs: the first has no server behind it (connection
    refused), so every connection goes on to the second; logins work."""
    from xmpptest import free_port
    dead = "ldap://127.0.0.1:%d" % free_port()
    srv = server_factory(ldap_conf(slapd, uris=[dead, slapd.uri()]))
    assert plain(srv, "alice", "alice-pw").ok
    assert plain(srv, "bob", "bob-pw").ok


def test_active_directory_accounts(slapd, server_factory):
    """Active Directory entries (objectClass user): the account is
    sAMAccountName, userAccountControl with ACCOUNTDISABLE (514) gives
    <account-disabled/>; listing by userPrincipalName takes the part
    before '@' as the localpart."""
    srv = server_factory(ldap_conf(slapd, base="ou=ad,dc=example,dc=org", disabled_attribute=None,
                                   filter="(&(objectClass=user)(sAMAccountName=%u))",
                                   user_attribute="userPrincipalName", active_directory=True))
    assert plain(srv, "dave", "dave-pw").ok
    r = plain(srv, "frank", "frank-pw")
    assert not r.ok and r.condition == "account-disabled", r
    r = plain(srv, "dave", "frank-pw")
    assert not r.ok and r.condition == "not-authorized", r
    out = srv.ctl("users", "localhost", check=True).stdout.split()
    assert sorted(out) == ["dave@localhost", "frank@localhost"], out


def test_rfc2696_paged_listing_and_read_only(slapd, server_factory):
    """xmppctl users lists the directory's accounts through a paged search
    (page_size 2, RFC 2696 simple paged results), each once; adduser,
    passwd and deluser say the provider is read-only."""
    srv = server_factory(ldap_conf(slapd, page_size=2))
    out = srv.ctl("users", "localhost", check=True).stdout.split()
    for u in ("alice", "bob", "carol", "dan", "eve", "star*", "x(y)", "comma,user", "back\\slash"):
        assert "%s@localhost" % u in out, out
    assert len(out) == len(set(out))
    for args in (("adduser", "new@localhost"), ("passwd", "alice@localhost"), ("deluser", "alice@localhost")):
        r = srv.ctl(*args, input="pw\n")
        assert r.returncode == 1 and "read-only" in r.stderr, r.stderr


def test_rfc6121_exists_through_the_directory(slapd, server_factory):
    """Account existence comes from the directory: a vCard request to a
    directory account that never stored one is an empty vCard, to an
    account the directory lacks <service-unavailable/> (RFC 6121 §8.5.1)."""
    over = ldap_conf(slapd)
    over["modules"]["vcard"] = {}
    srv = server_factory(over)
    with RawClient(srv.port) as c:
        c.login("alice", "alice-pw", mech="PLAIN")
        res = c.iq("<vCard xmlns='%s'/>" % NS_VCARD, to="bob@localhost")
        assert res.get("type") == "result", res
        res = c.iq("<vCard xmlns='%s'/>" % NS_VCARD, to="nobody@localhost")
        assert res.get("type") == "error"
        assert res.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None


def test_scram_upgrade_rule(slapd, server_factory):
    """The SCRAM rule (README, "SCRAM"): SCRAM fails until a PLAIN login
    stored keys; then SCRAM-SHA-256 and -1 (RFC 7677, RFC 5802, with
    channel binding too) work. A password changed in
    the directory ends the old keys at once (the old password fails over
    SCRAM, the new one works over PLAIN, which stores new keys). A
    disabled entry gets <account-disabled/> over SCRAM; with
    modifyTimestamp as the password's version any later change of the
    entry retires the keys until the next PLAIN login. An entry removed
    from the directory can no longer log in with its keys, which are
    deleted."""
    dn = slapd.add_person("sam", "sam-pw-1")
    srv = server_factory(ldap_conf(slapd, scram=True, iterations=4096))
    r = scram(srv, "SCRAM-SHA-256", "sam", "sam-pw-1")
    assert not r.ok and r.condition == "not-authorized", r

    async def scenario():  # slixmpp tries SCRAM, then falls back to PLAIN
        acc = type("A", (), {"jid": "sam@localhost", "password": "sam-pw-1"})
        c = await connect(srv, acc, mech=None)
        assert "not-authorized" in c.auth_failures, c.auth_failures
        await c.stop()
    run(scenario())
    wait_until(lambda: "stored SCRAM keys for sam@localhost" in srv.read_log(), "no keys stored")
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"):
        r = scram(srv, mech, "sam", "sam-pw-1")
        assert r.ok and r.server_verified, (mech, r)
    with RawClient(srv.port) as c:  # the two hashes clients implement, so a fallback to PLAIN
        c.open_stream()             # stays within auth_attempts
        c.starttls()
        mechs = c.open_stream()["mechanisms"]
        assert "SCRAM-SHA-256" in mechs and "PLAIN" in mechs
        assert not any(m.startswith("SCRAM-SHA-512") for m in mechs), mechs

    time.sleep(1.1)  # modifyTimestamp has a resolution of a second
    slapd.set_attr(dn, "userPassword", "sam-pw-2")
    r = scram(srv, "SCRAM-SHA-256", "sam", "sam-pw-1")
    assert not r.ok and r.condition == "not-authorized", r
    assert not plain(srv, "sam", "sam-pw-1").ok
    assert plain(srv, "sam", "sam-pw-2").ok
    wait_until(lambda: srv.read_log().count("stored SCRAM keys for sam@localhost") == 2, "no new keys")
    assert scram(srv, "SCRAM-SHA-256", "sam", "sam-pw-2").ok
    assert not scram(srv, "SCRAM-SHA-256", "sam", "sam-pw-1").ok

    time.sleep(1.1)
    slapd.set_attr(dn, "employeeType", "disabled")
    r = scram(srv, "SCRAM-SHA-256", "sam", "sam-pw-2")
    assert not r.ok and r.condition == "account-disabled", r
    # Enabled again: with modifyTimestamp as the password's version, any
    # change of the entry retires the keys until the next PLAIN login.
    time.sleep(1.1)
    slapd.modify("dn: %s\nchangetype: modify\ndelete: employeeType\n" % dn)
    assert not scram(srv, "SCRAM-SHA-256", "sam", "sam-pw-2").ok
    assert plain(srv, "sam", "sam-pw-2").ok
    wait_until(lambda: srv.read_log().count("stored SCRAM keys for sam@localhost") == 3, "no new keys")
    assert scram(srv, "SCRAM-SHA-256", "sam", "sam-pw-2").ok

    assert "auth_ldap" in srv.stored_stores("sam")
    slapd.delete(dn)
    r = scram(srv, "SCRAM-SHA-256", "sam", "sam-pw-2")
    assert not r.ok and r.condition == "not-authorized", r
    wait_until(lambda: "auth_ldap" not in srv.stored_stores("sam"), "keys of a removed account kept")


def test_directory_stalled_then_back(slapd, server_factory):
    """A directory that stops answering (SIGSTOP: connections stay open,
    nothing comes back): a login fails with <temporary-auth-failure/>
    after `timeout`, not later; once it answers again (SIGCONT) logins
    work without restarting xmppd."""
    import signal
    own = slapd_server.Slapd().start()
    try:
        srv = server_factory(ldap_conf(own, timeout="1s"))
        assert plain(srv, "alice", "alice-pw").ok
        own.signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            r = plain(srv, "alice", "alice-pw")
            assert not r.ok and r.condition == "temporary-auth-failure", r
            assert time.monotonic() - t0 < scaled(4)
        finally:
            own.signal(signal.SIGCONT)
        wait_until(lambda: plain(srv, "alice", "alice-pw").ok, "logins did not come back", 15)
    finally:
        own.destroy()


def test_directory_killed_and_restarted_under_load(server_factory):
    """slapd is killed (-9) while four clients log in over and over, then
    started again on the same port: logins during the outage fail fast
    with <temporary-auth-failure/> (never another condition, never a
    hang), xmppd stays up, and logins succeed again once slapd is back,
    on new connections, without restarting xmppd."""
    own = slapd_server.Slapd().start()
    results = []
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = plain(srv, "bob", "bob-pw")
                results.append((time.monotonic(), r.ok, r.condition, time.monotonic() - t0))
            except Exception as e:  # a client-side failure is a test failure
                results.append((time.monotonic(), False, "exception: %r" % e, time.monotonic() - t0))
    try:
        srv = server_factory(ldap_conf(own, reconnect_max="300ms"))
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(scaled(1.5))
        killed_at = time.monotonic()  # logins failing as it dies count as during
        own.kill()
        time.sleep(scaled(1.5))
        # slapd answers before start() returns: a login that succeeds while
        # it comes up belongs to neither window
        restarting_at = time.monotonic()
        own.start()
        back_at = time.monotonic()
        time.sleep(scaled(2.5))
        stop.set()
        for t in threads:
            t.join(scaled(20))
    finally:
        stop.set()
        own.destroy()
    assert srv.running
    before = [r for r in results if r[0] < killed_at]
    during = [r for r in results if killed_at + 0.3 < r[0] < restarting_at]
    after = [r for r in results if r[0] > back_at + scaled(1)]
    assert before and all(r[1] for r in before), before[:5]
    assert during, results
    assert all(r[2] == "temporary-auth-failure" for r in during), \
        [r for r in during if r[2] != "temporary-auth-failure"][:5]
    assert max(r[3] for r in during) < scaled(3), max(r[3] for r in during)
    assert after and all(r[1] for r in after), after[:5]
    assert all(r[1] or r[2] == "temporary-auth-failure" for r in results), \
        [r for r in results if not r[1] and r[2] != "temporary-auth-failure"][:5]


def test_config_errors_name_the_option(slapd, server_factory):
    """Broken options stop the start with a line naming them: an unknown
    variable, a filter that is not one parenthesised expression, a
    filter without the user, an ldapi:// URI, an unreadable CA file."""
    cases = [
        ({"filter": "(uid=%x)"}, "option filter: unknown variable %x"),
        ({"filter": "(uid=%u"}, "option filter: \"(uid=%u\" is not one parenthesised LDAP filter"),
        ({"filter": "(objectClass=person)"}, "option filter: it must name the user"),
        ({"uris": ["ldapi:///run/slapd.sock"]}, "only ldap:// and ldaps:// are supported"),
        ({"uris": ["ldaps://localhost"], "tls_ca_file": "/nonexistent/ca.pem"},
         "cannot read the CA certificates /nonexistent/ca.pem"),
        ({"bind_dn_template": "uid=%{nope},dc=x"}, "option bind_dn_template: unknown variable %{nope}"),
    ]
    for extra, msg in cases:
        s = server_factory(ldap_conf(slapd, **extra), start=False)
        with pytest.raises(RuntimeError) as e:
            s.start()
        assert msg in str(e.value), str(e.value)[-2000:]
