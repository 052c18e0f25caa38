"""mod_limits: token buckets per session (stanzas and bytes) and failed
logins per address.

A client over its rate gets <resource-constraint/> (type wait) for each
stanza that is not routed, and its session survives; one that keeps
flooding at several times the rate gets <policy-violation/> (RFC 6120
§4.9.3.13); an address with too many failed logins is locked out with a
policy-violation that says when to come back.
"""

import base64
import time

import pytest

from xmpptest import (NS_CLIENT, NS_STANZA_ERR, QUIET_PERIOD, RawClient, error_condition, q,
                      scaled)

LIMITS = {"stanzas_per_second": 5, "stanza_burst": 10, "abuse_factor": 3}


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"limits": LIMITS}}


def login(server, account, resource="r"):
    c = RawClient(server.port)
    c.login(account.user, account.password, resource=resource)
    return c


def send_burst(c, to, n, body="x", prefix="m"):
    c.send("".join("<message to='%s' id='%s%d' type='chat'><body>%s</body></message>"
                   % (to, prefix, i, body) for i in range(n)))


def collect(c, period):
    return c.quiet(period)


def test_flood_throttled_session_survives(server, accounts):
    """20 stanzas at once against a burst of 10: the first ones are routed,
    the others answered with resource-constraint (type wait) and not
    routed; the session stays, and after a pause it may send again."""
    a, b = accounts(2)
    ca, cb = login(server, a), login(server, b)
    try:
        send_burst(ca, cb.jid, 20)
        got_a = collect(ca, QUIET_PERIOD)
        got_b = collect(cb, QUIET_PERIOD)
        errors = [e for e in got_a if e.tag == q(NS_CLIENT, "message") and e.get("type") == "error"]
        delivered = [e for e in got_b if e.tag == q(NS_CLIENT, "message")]
        assert 10 <= len(delivered) < 20
        assert len(errors) + len(delivered) == 20
        for e in errors:
            assert error_condition(e) == ("wait", "resource-constraint")
        assert {e.get("id") for e in errors}.isdisjoint({m.get("id") for m in delivered})
        assert not ca.eof and not ca.reader.closed
        time.sleep(scaled(2.5))
        send_burst(ca, cb.jid, 3, prefix="after")
        got = [e for e in collect(cb, QUIET_PERIOD) if e.tag == q(NS_CLIENT, "message")]
        assert [m.get("id") for m in got] == ["after0", "after1", "after2"]
    finally:
        ca.close()
        cb.close()


def test_sustained_flood_ends_stream(server, accounts):
    """A client that keeps sending far above its rate is disconnected with
    <policy-violation/>; the recipient got no more than the bucket allows."""
    a, b = accounts(2)
    ca, cb = login(server, a), login(server, b)
    try:
        send_burst(ca, cb.jid, 80)
        # resource-constraint errors first, then the stream error
        el = ca.wait_for(lambda e: e.tag != q(NS_CLIENT, "message"), timeout=scaled(5))
        assert error_condition(el) == "policy-violation"
        assert ca.wait_closed(scaled(5))
        got = [e for e in collect(cb, QUIET_PERIOD) if e.tag == q(NS_CLIENT, "message")]
        assert len(got) <= 12
    finally:
        ca.close()
        cb.close()


def test_iq_result_not_answered(server, accounts):
    """Over the limit, stanzas that must not be answered (IQ results,
    errors) are dropped without an error (RFC 6120 §8.3.1)."""
    (a,) = accounts(1)
    ca = login(server, a)
    try:
        ca.send("".join("<iq type='result' id='r%d' to='%s'/>" % (i, a.jid) for i in range(14)))
        got = collect(ca, QUIET_PERIOD)
        assert [e for e in got if e.get("type") == "error"] == []
    finally:
        ca.close()


def test_byte_limit(server_factory):
    """bytes_per_second / byte_burst: large stanzas beyond the byte budget
    are refused with resource-constraint."""
    srv = server_factory({"modules": {"limits": {"bytes_per_second": "1k", "byte_burst": "4k"}}})
    acc = []
    for u in ("bytea", "byteb"):
        srv.adduser("%s@localhost" % u, "pw-" + u)
        acc.append(u)
    ca = RawClient(srv.port)
    ca.login("bytea", "pw-bytea", resource="r")
    cb = RawClient(srv.port)
    cb.login("byteb", "pw-byteb", resource="r")
    try:
        send_burst(ca, cb.jid, 8, body="z" * 1500)
        got_a = collect(ca, QUIET_PERIOD)
        got_b = [e for e in collect(cb, QUIET_PERIOD) if e.tag == q(NS_CLIENT, "message")]
        errors = [e for e in got_a if e.get("type") == "error"]
        assert 1 <= len(got_b) <= 4
        assert len(errors) == 8 - len(got_b)
        assert all(error_condition(e) == ("wait", "resource-constraint") for e in errors)
    finally:
        ca.close()
        cb.close()


def test_login_failures_lock_out_address(server_factory):
    """After login_failures failed logins from one address the stream ends
    with policy-violation; new streams from it are refused before
    authentication, with a text saying when to retry; after the lockout a
    correct login works."""
    srv = server_factory({"modules": {"limits": {"login_failures": 3, "lockout": "2s"}}})
    srv.adduser("locky@localhost", "right-password")
    c = RawClient(srv.port)
    try:
        c.open_stream()
        c.starttls()
        c.open_stream()
        for i in range(2):
            res = c.auth_plain("locky", "wrong-%d" % i)
            assert not res.ok and res.condition == "not-authorized"
        c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>"
               % base64.b64encode(b"\0locky\0wrong-3").decode())
        el = c.expect_stream_error("policy-violation")
        assert "try again" in (el.findtext("{urn:ietf:params:xml:ns:xmpp-streams}text") or "")
    finally:
        c.close()
    c = RawClient(srv.port)
    try:
        c.send(c.stream_header())
        el = c.expect_stream_error("policy-violation")
        assert "try again" in el.findtext("{urn:ietf:params:xml:ns:xmpp-streams}text")
    finally:
        c.close()
    time.sleep(scaled(2.2))
    c = RawClient(srv.port)
    try:
        assert c.login("locky", "right-password", resource="back")
    finally:
        c.close()
