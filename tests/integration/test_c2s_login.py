"""Client login: STARTTLS, direct TLS, SASL, resource binding, session.

RFC 6120 §5 (STARTTLS), §6 (SASL), §7 (binding); RFC 5802 / RFC 7677
(SCRAM); RFC 5929 (tls-server-end-point); XEP-0368 (direct TLS);
XEP-0440 (SASL channel-binding type capability); RFC 3921 §3 (session).
"""

import base64
import ssl

import pytest

from xmpptest import (NS_BIND, NS_SASL, NS_STREAM, NS_TLS, RawClient, client_ssl_context,
                      connect, error_condition, q,
                      run, tostr)

AUTH_ATTEMPTS = 3


@pytest.fixture(scope="module")
def config_overrides():
    return {"limits": {"auth_attempts": AUTH_ATTEMPTS}}


def tls_stream(server, direct=False):
    """A RawClient with TLS done and the post-TLS features read."""
    c = RawClient(server.direct_tls_port if direct else server.port, direct_tls=direct)
    f = c.open_stream()
    if not direct:
        assert f["starttls"] is not None, "no <starttls/> offered: %s" % f["children"]
        c.starttls()
        f = c.open_stream()
    return c, f


# ---- STARTTLS and require_encryption (RFC 6120 §5.3.1, §6.4) -------------

def test_rfc6120_5_3_1_starttls_required_and_no_mechanisms_before_tls(server):
    """RFC 6120 §5.3.1: with require_encryption, STARTTLS is
    mandatory-to-negotiate: <starttls><required/></starttls> and no SASL
    mechanisms (nor bind) before TLS."""
    with RawClient(server.port) as c:
        f = c.open_stream()
        assert f["starttls"] == "required"
        assert f["mechanisms"] == []
        assert not f["bind"]


def test_rfc6120_4_7_stream_header_from_server(server):
    """RFC 6120 §4.7: the response header carries from=<our host>, a
    fresh id and version='1.0'."""
    with RawClient(server.port) as c:
        c.open_stream()
        h = c.reader.header
        assert h.tag == q(NS_STREAM, "stream")
        assert h.get("from") == "localhost"
        assert h.get("version") == "1.0"
        assert h.get("id")
    with RawClient(server.port) as c2:
        c2.open_stream()
        assert c2.reader.header.get("id") != h.get("id")


def test_rfc6120_6_4_auth_before_tls_encryption_required(server, accounts):
    """RFC 6120 §6.5.4: <auth/> before TLS while encryption is required ->
    <failure><encryption-required/></failure> (or the stream is refused);
    never success."""
    (a,) = accounts(1)
    with RawClient(server.port) as c:
        c.open_stream()
        c.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>"
               % (NS_SASL, base64.b64encode(b"\0" + a.user.encode() + b"\0" + a.password.encode()).decode()))
        el = c.next_element(allow_eof=True)
        assert el is not None, "connection closed without an answer"
        if el.tag == q(NS_STREAM, "error"):
            return  # refusing the whole stream is acceptable too
        assert el.tag == q(NS_SASL, "failure"), tostr(el)
        assert el.find(q(NS_SASL, "encryption-required")) is not None, tostr(el)


def test_rfc6120_4_9_3_12_stanza_before_tls_refused(server, accounts):
    """RFC 6120 §4.9.3.12: a stanza before the stream is authenticated (here
    even before TLS) -> <not-authorized/> stream error; nothing is routed."""
    (a,) = accounts(1)
    with RawClient(server.port) as c:
        c.open_stream()
        c.send("<message to='%s' type='chat'><body>plain</body></message>" % a.jid)
        c.expect_stream_error("not-authorized")


def test_rfc6120_5_4_3_3_features_after_starttls(server):
    """RFC 6120 §5.4.3.3: after TLS the restarted stream offers SASL and no
    longer offers STARTTLS; all kernel mechanisms are listed."""
    c, f = tls_stream(server)
    with c:
        assert f["starttls"] is None
        for m in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512",
                  "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS", "PLAIN"):
            assert m in f["mechanisms"], "%s not offered: %s" % (m, f["mechanisms"])
        assert not f["bind"]


def test_xep0440_channel_binding_types_advertised(server):
    """XEP-0440 §2: <sasl-channel-binding xmlns='urn:xss:sasl-cb:0'> lists
    tls-exporter and tls-server-end-point on a TLS 1.3 stream."""
    c, f = tls_stream(server)
    with c:
        assert c.sock.version() == "TLSv1.3"
        assert "tls-exporter" in f["channel_bindings"], tostr(f["element"])
        assert "tls-server-end-point" in f["channel_bindings"], tostr(f["element"])


# ---- SASL mechanisms -----------------------------------------------------

@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_rfc5802_rfc7677_scram_login(server, accounts, mech):
    """RFC 5802 §5 / RFC 7677: SCRAM exchange succeeds and the server
    proves knowledge of the password (v= in <success/>, RFC 6120 §6.4.6)."""
    (a,) = accounts(1)
    c, _ = tls_stream(server)
    with c:
        res = c.auth_scram(mech, a.user, a.password)
        assert res.ok, res
        assert res.server_verified, "server signature missing or wrong"
        c.open_stream()
        assert c.bind().startswith(a.jid + "/")


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"])
def test_rfc5929_scram_plus_tls_server_end_point(server, accounts, mech):
    """RFC 5802 §6 + RFC 5929 §4: -PLUS with tls-server-end-point channel
    binding (hash of the server certificate) succeeds."""
    (a,) = accounts(1)
    c, f = tls_stream(server)
    with c:
        assert mech in f["mechanisms"]
        res = c.auth_scram(mech, a.user, a.password, cb_type="tls-server-end-point")
        assert res.ok, res
        assert res.server_verified
        c.open_stream()
        assert c.bind().startswith(a.jid + "/")


def test_rfc5802_6_scram_plus_wrong_channel_binding_fails(server, accounts):
    """RFC 5802 §6: channel binding data that does not match the TLS
    connection makes the exchange fail."""
    (a,) = accounts(1)
    c, _ = tls_stream(server)
    with c:
        res = c.auth_scram("SCRAM-SHA-256-PLUS", a.user, a.password,
                           cb_type="tls-server-end-point", cb_data=b"\0" * 32)
        assert not res.ok
        assert res.condition == "not-authorized", res


def test_rfc5802_6_scram_y_flag_when_plus_offered_fails(server, accounts):
    """RFC 5802 §6: gs2 flag 'y' (client thinks the server lacks channel
    binding) while the server offered -PLUS is a downgrade: must fail."""
    (a,) = accounts(1)
    c, f = tls_stream(server)
    with c:
        assert "SCRAM-SHA-1-PLUS" in f["mechanisms"]
        res = c.auth_scram("SCRAM-SHA-1", a.user, a.password, flag="y")
        assert not res.ok, "downgrade accepted"


def test_rfc4616_plain_over_tls(server, accounts):
    """RFC 4616 / RFC 6120 §6.4: PLAIN over TLS succeeds."""
    (a,) = accounts(1)
    c, _ = tls_stream(server)
    with c:
        res = c.auth_plain(a.user, a.password)
        assert res.ok, res
        c.open_stream()
        assert c.bind().startswith(a.jid + "/")


def test_rfc6120_6_4_6_plain_authzid_own_jid_accepted(server, accounts):
    """RFC 6120 §6.4.6: an authzid equal to the account's own bare JID is
    accepted."""
    (a,) = accounts(1)
    c, _ = tls_stream(server)
    with c:
        res = c.auth_plain(a.user, a.password, authzid=a.jid)
        assert res.ok, res


def test_rfc6120_6_5_6_plain_authzid_other_jid_invalid_authzid(server, accounts):
    """RFC 6120 §6.5.6: an authzid naming another account ->
    <invalid-authzid/>."""
    a, b = accounts(2)
    c, _ = tls_stream(server)
    with c:
        res = c.auth_plain(a.user, a.password, authzid=b.jid)
        assert not res.ok
        assert res.condition == "invalid-authzid", res


def test_rfc6120_6_5_6_scram_authzid_other_jid_invalid_authzid(server, accounts):
    """RFC 6120 §6.5.6 with SCRAM (a= in the GS2 header naming another
    account) -> <invalid-authzid/>."""
    a, b = accounts(2)
    c, _ = tls_stream(server)
    with c:
        res = c.auth_scram("SCRAM-SHA-256", a.user, a.password, authzid=b.jid)
        assert not res.ok
        assert res.condition == "invalid-authzid", res


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_rfc6120_6_5_10_wrong_password_not_authorized(server, accounts, mech):
    """RFC 6120 §6.5.10: wrong password -> <not-authorized/>."""
    (a,) = accounts(1)
    c, _ = tls_stream(server)
    with c:
        if mech == "PLAIN":
            res = c.auth_plain(a.user, a.password + "x")
        else:
            res = c.auth_scram(mech, a.user, a.password + "x")
        assert not res.ok
        assert res.condition == "not-authorized", res


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_rfc6120_6_5_10_unknown_user_not_authorized(server, mech):
    """RFC 6120 §6.5.10: unknown user -> <not-authorized/>, the same answer
    as a wrong password (SCRAM: a challenge with a fake salt first)."""
    c, _ = tls_stream(server)
    with c:
        if mech == "PLAIN":
            res = c.auth_plain("nosuchuser", "whatever")
        else:
            res = c.auth_scram(mech, "nosuchuser", "whatever")
        assert not res.ok
        assert res.condition == "not-authorized", res


def test_rfc6120_6_5_9_unknown_mechanism_invalid_mechanism(server):
    """RFC 6120 §6.5.9: a mechanism not offered -> <invalid-mechanism/>."""
    c, _ = tls_stream(server)
    with c:
        c.send("<auth xmlns='%s' mechanism='X-NOT-A-MECH'>=</auth>" % NS_SASL)
        el = c.next_element()
        assert el.tag == q(NS_SASL, "failure"), tostr(el)
        assert el.find(q(NS_SASL, "invalid-mechanism")) is not None, tostr(el)


def test_rfc6120_6_4_5_too_many_failed_auths_close_stream(server, accounts):
    """RFC 6120 §6.4.5: after the configured number of failed attempts
    (limits.auth_attempts) the server closes the stream with a stream
    error (<policy-violation/>; <not-authorized/> tolerated) and the TCP
    connection."""
    (a,) = accounts(1)
    c, _ = tls_stream(server)
    with c:
        failures, stream_error = 0, None
        for i in range(AUTH_ATTEMPTS):
            c.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (
                NS_SASL, base64.b64encode(("\0%s\0wrong%d" % (a.user, i)).encode()).decode()))
            el = c.next_element(allow_eof=True)
            if el is None or el.tag == q(NS_STREAM, "error"):
                stream_error = el
                break
            assert el.tag == q(NS_SASL, "failure"), tostr(el)
            failures += 1
        if stream_error is None:
            stream_error = c.next_element(allow_eof=True)
        assert failures >= AUTH_ATTEMPTS - 1, "stream closed after only %d failures" % failures
        assert stream_error is not None, "connection dropped without a stream error"
        assert stream_error.tag == q(NS_STREAM, "error"), tostr(stream_error)
        # RFC 6120 §6.4.5: SHOULD be policy-violation; some servers send not-authorized
        assert error_condition(stream_error) in ("policy-violation", "not-authorized"), tostr(stream_error)
        assert c.wait_closed()


# ---- direct TLS (XEP-0368) -----------------------------------------------

def test_xep0368_direct_tls_login(server, accounts):
    """XEP-0368: TLS from the first byte on the direct TLS port; the stream
    then offers SASL directly (no STARTTLS)."""
    (a,) = accounts(1)
    c, f = tls_stream(server, direct=True)
    with c:
        assert f["starttls"] is None
        assert "SCRAM-SHA-256" in f["mechanisms"]
        res = c.auth_scram("SCRAM-SHA-256-PLUS", a.user, a.password)
        assert res.ok, res
        c.open_stream()
        assert c.bind("direct").endswith("/direct")


def _login_with_tls_session(server, account, ctx, session):
    """A full login over STARTTLS with ctx, offering session (or None) for
    resumption; returns the TLS session the server left us and whether
    this one was resumed."""
    c = RawClient(server.port)
    with c:
        c.open_stream()
        c.send("<starttls xmlns='%s'/>" % NS_TLS)
        assert c.next_element().tag == q(NS_TLS, "proceed")
        c.sock = ctx.wrap_socket(c.sock, server_hostname=c.domain, session=session)
        c.tls = True
        c.open_stream()
        res = c.auth_scram("SCRAM-SHA-256-PLUS", account.user, account.password)
        assert res.ok, res
        c.open_stream()
        assert c.bind().startswith(account.jid + "/")
        # TLS 1.3 tickets come after the handshake: they have been read
        # with the stream's answers by now.
        return c.sock.session, c.sock.session_reused


def test_issue18_rfc8446_2_2_reconnecting_client_resumes_tls(server, accounts):
    """Issue 18 (login cost) / RFC 8446 §2.2, §4.6.1: the server issues
    TLS session tickets, so a reconnecting client resumes its TLS session
    (no certificate signature, no full key exchange) and logs in as
    usual, channel binding included, and gets a new ticket each time."""
    (a,) = accounts(1)
    ctx = client_ssl_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    session, reused = _login_with_tls_session(server, a, ctx, None)
    assert not reused
    assert session is not None and session.has_ticket, "no session ticket issued"
    for _ in range(2):
        session, reused = _login_with_tls_session(server, a, ctx, session)
        assert reused, "the TLS session was not resumed"


def test_xep0368_direct_tls_slixmpp(server, accounts):
    """XEP-0368 with a real client library (slixmpp, use_ssl)."""
    (a,) = accounts(1)

    async def scenario():
        cl = await connect(server, a, resource="d", direct_tls=True)
        assert str(cl.boundjid) == a.jid + "/d"
    run(scenario())


# ---- slixmpp logins --------------------------------------------------------

@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_rfc6120_6_slixmpp_login(server, accounts, mech):
    """RFC 6120 §6: a real client (slixmpp) logs in with each mechanism over
    STARTTLS."""
    (a,) = accounts(1)

    async def scenario():
        cl = await connect(server, a, mech=mech)
        assert cl.boundjid.bare == a.jid
        assert cl.boundjid.resource
    run(scenario())


# ---- resource binding, session ------------------------------------------

def test_rfc6120_7_6_client_chosen_resource(server, accounts):
    """RFC 6120 §7.6: a client-submitted resource is used as given."""
    (a,) = accounts(1)
    with RawClient(server.port) as c:
        assert c.login(a.user, a.password, resource="laptop") == a.jid + "/laptop"


def test_rfc6120_7_6_server_generated_resource(server, accounts):
    """RFC 6120 §7.6: with an empty <bind/> the server generates a
    resource; two bindings get different ones."""
    (a,) = accounts(1)
    with RawClient(server.port) as c1, RawClient(server.port) as c2:
        j1 = c1.login(a.user, a.password)
        j2 = c2.login(a.user, a.password)
        for j in (j1, j2):
            assert j.startswith(a.jid + "/") and len(j) > len(a.jid) + 1
        assert j1 != j2


def test_rfc6120_7_3_bind_before_sasl_refused(server):
    """RFC 6120 §7.3: binding only after SASL; before it the stream is
    refused (<not-authorized/>)."""
    c, _ = tls_stream(server)
    with c:
        c.send("<iq type='set' id='b1'><bind xmlns='%s'/></iq>" % NS_BIND)
        c.expect_stream_error("not-authorized")


def test_rfc3921_3_legacy_session_answered(server, accounts):
    """RFC 3921 §3 (kept by RFC 6121 compat, draft-cridland-xmpp-session):
    the session IQ is answered with a result."""
    (a,) = accounts(1)
    with RawClient(server.port) as c:
        c.login(a.user, a.password)
        r = c.session()
        assert r.get("type") == "result", tostr(r)


def test_rfc6120_7_session_feature_optional(server, accounts):
    """draft-cridland-xmpp-session: if the session feature is offered
    after SASL it is marked <optional/>."""
    (a,) = accounts(1)
    with RawClient(server.port) as c:
        c.login(a.user, a.password, bind=False)
        if c.features["session"] is not None:
            assert c.features["session"] == "optional"


# ---- optional encryption ---------------------------------------------------

def test_rfc6120_5_3_1_optional_tls_scram_in_plaintext(server_factory):
    """RFC 6120 §5.3.1: with require_encryption false, STARTTLS is offered
    without <required/> and SCRAM works on a plaintext stream."""
    srv = server_factory({"c2s": {"require_encryption": False}})
    user, pw = "plainuser", "secret-pw-1"
    srv.adduser(user + "@localhost", pw)
    with RawClient(srv.port) as c:
        f = c.open_stream()
        assert f["starttls"] == "optional"
        assert "SCRAM-SHA-256" in f["mechanisms"]
        assert not any(m.endswith("-PLUS") for m in f["mechanisms"]), "-PLUS without TLS"
        res = c.auth_scram("SCRAM-SHA-256", user, pw)
        assert res.ok, res
        c.open_stream()
        assert c.bind("x") == user + "@localhost/x"


# ---- persistence -------------------------------------------------------------

def test_accounts_survive_kill9(server, accounts):
    """Reliability rule: an account created before a crash-stop (kill -9)
    can still log in after restart."""
    (a,) = accounts(1)
    server.kill()
    server.start()
    with RawClient(server.port) as c:
        assert c.login(a.user, a.password, mech="SCRAM-SHA-1").startswith(a.jid + "/")


# ---- SASL edge cases and limits ------------------------------------------------

def test_rfc6120_6_4_4_abort_then_retry(server, accounts):
    """RFC 6120 §6.4.4 / §6.5.1: <abort/> during SCRAM -> <failure><aborted/>;
    the client may then authenticate again on the same stream."""
    (a,) = accounts(1)
    c, _ = tls_stream(server)
    with c:
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>"
               % (NS_SASL, base64.b64encode(("n,,n=%s,r=abcdefghijklmnop" % a.user).encode()).decode()))
        ch = c.next_element()
        assert ch.tag == q(NS_SASL, "challenge"), tostr(ch)
        c.send("<abort xmlns='%s'/>" % NS_SASL)
        el = c.next_element()
        assert el.tag == q(NS_SASL, "failure"), tostr(el)
        assert el.find(q(NS_SASL, "aborted")) is not None, tostr(el)
        res = c.auth_scram("SCRAM-SHA-256", a.user, a.password)
        assert res.ok, res


def test_rfc6120_6_5_2_bad_base64_incorrect_encoding(server):
    """RFC 6120 §6.5.2: data that is not valid base64 (RFC 4648 §4) ->
    <failure><incorrect-encoding/></failure>."""
    c, _ = tls_stream(server)
    with c:
        c.send("<auth xmlns='%s' mechanism='PLAIN'>!!not*base64!!</auth>" % NS_SASL)
        el = c.next_element()
        assert el.tag == q(NS_SASL, "failure"), tostr(el)
        assert el.find(q(NS_SASL, "incorrect-encoding")) is not None, tostr(el)


def test_rfc6120_6_5_8_scram_malformed_client_first(server):
    """RFC 6120 §6.5.8 / RFC 5802 §7: a client-first-message that does not
    parse -> <failure><malformed-request/></failure>."""
    c, _ = tls_stream(server)
    with c:
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-1'>%s</auth>"
               % (NS_SASL, base64.b64encode(b"this is not scram").decode()))
        el = c.next_element()
        assert el.tag == q(NS_SASL, "failure"), tostr(el)
        assert el.find(q(NS_SASL, "malformed-request")) is not None, tostr(el)


def test_rfc6120_7_6_2_1_max_resources_resource_constraint(server_factory):
    """RFC 6120 §7.6.2.1: over limits.max_resources sessions for one
    account, binding fails with <resource-constraint/> (type wait); the
    existing sessions stay."""
    srv = server_factory({"limits": {"max_resources": 2}})
    srv.adduser("many@localhost", "many-pass-1")
    with RawClient(srv.port) as c1, RawClient(srv.port) as c2, RawClient(srv.port) as c3:
        c1.login("many", "many-pass-1", resource="one")
        c2.login("many", "many-pass-1", resource="two")
        c3.login("many", "many-pass-1", bind=False)
        c3.send("<iq type='set' id='b3'><bind xmlns='%s'><resource>three</resource></bind></iq>"
                % NS_BIND)
        r = c3.wait_for(lambda e: e.get("id") == "b3")
        assert r.get("type") == "error", tostr(r)
        assert error_condition(r) == ("wait", "resource-constraint"), tostr(r)
        assert c1.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost") is not None


def test_rfc6120_13_plain_timing_does_not_tell_whether_an_account_exists(server_factory):
    """RFC 6120 §13.9.4 / RFC 4616 §6 (no information to an attacker): with
    auth_internal, a PLAIN login of an unknown user costs what a wrong
    password of an existing account costs (a PBKDF2 derivation at the
    configured iterations), not a fast "no such user"."""
    from conftest import unique_user
    from login_timing import assert_same_cost, failure_times
    srv = server_factory({"modules": {"auth_internal": {"iterations": 150000}}})
    user = unique_user("timing")
    srv.adduser(user + "@localhost", "the-right-password")
    wrong, missing = failure_times(srv, user, unique_user("nobody"))
    assert_same_cost(wrong, missing, floor=0.015)
