"""SASL2 (XEP-0388), Bind2 (XEP-0386), FAST (XEP-0484) and SCRAM downgrade
protection (XEP-0474), in the kernel's c2s layer, and XEP-0198 inline in
SASL2 and Bind2 (mod_smacks).

Raw-socket tests: the exact bytes matter here. slixmpp 1.8 (Debian's)
speaks neither SASL2 nor FAST, so it only shows below that RFC 6120 SASL
(now with XEP-0474's h= attribute) keeps working for such clients.
"""

import base64
import json
import ssl
import time

import pytest

from xmpptest import (NS_BIND2, NS_CLIENT, NS_FAST, NS_SASL, NS_SASL2, NS_STANZA_ERR, NS_STREAM,
                      RawClient, ScramClient, client_ssl_context, connect, ht_hash, q, run,
                      scaled, ssdp_hash, tostr, xml_escape)

NS_SM = "urn:xmpp:sm:3"
UA = "<user-agent id='%s'><software>xmpptest</software><device>bench</device></user-agent>"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "offline": True,
                        "smacks": {"resume_timeout": "30s"}}}


def ua(dev):
    return UA % dev


def bind2(tag=None, inner=""):
    t = "<tag>%s</tag>" % xml_escape(tag) if tag else ""
    return "<bind xmlns='%s'>%s%s</bind>" % (NS_BIND2, t, inner)


def request_token(mech="HT-SHA-256-NONE"):
    return "<request-token xmlns='%s' mechanism='%s'/>" % (NS_FAST, mech)


def fast_el(count=None, invalidate=False):
    attrs = ""
    if count is not None:
        attrs += " count='%d'" % count
    if invalidate:
        attrs += " invalidate='true'"
    return "<fast xmlns='%s'%s/>" % (NS_FAST, attrs)


def new_client(server, **kw):
    c = RawClient(server.port, **kw)
    f = c.secure_stream()
    return c, f


def aid(res):
    return res.element.find(q(NS_SASL2, "authorization-identifier")).text


def token_of(res):
    t = res.element.find(q(NS_FAST, "token"))
    return t.get("token") if t is not None else None


def features_after(c):
    """§2.6.1: <stream:features/> follows <success/> at once, no restart."""
    el = c.next_element()
    assert el.tag == q(NS_STREAM, "features"), tostr(el)
    return el


def get_token(server, account, dev="dev-1", mech="HT-SHA-256-NONE", tag=None):
    """A FAST token from a SCRAM login (the session stays bound)."""
    c, _ = new_client(server)
    res, _, _ = c.sasl2_scram("SCRAM-SHA-256", account.user, account.password,
                              ua(dev) + bind2(tag) + request_token(mech))
    assert res.ok and res.server_verified, res
    features_after(c)
    tok = res.element.find(q(NS_FAST, "token"))
    assert tok is not None, tostr(res.element)
    return c, tok.get("token"), tok.get("expiry")


def fast_login(server, account, token, dev="dev-1", mech="HT-SHA-256-NONE", inner="", cb=b"", **kw):
    c, _ = new_client(server, **kw)
    res = c.sasl2_ht(mech, account.user, token, ua(dev) + inner, cb_data=cb)
    return c, res


# ---- XEP-0388: the feature and the exchange -----------------------------------------------------

def test_xep0388_2_1_feature_mirrors_rfc6120_mechanisms(server):
    """§2.1: <authentication/> offers the mechanisms RFC 6120 SASL offers
    (the SCRAM family with -PLUS where channel binding exists, PLAIN over
    TLS), with Bind2, FAST and XEP-0198 inline; nothing before TLS when TLS
    is required (RFC 6120 §5.3.1)."""
    c = RawClient(server.port)
    f = c.open_stream()
    assert f["sasl2"] is None and not f["mechanisms"]
    c.starttls()
    f = c.open_stream()
    s2 = f["sasl2"]
    assert s2["mechanisms"] == f["mechanisms"]
    assert "SCRAM-SHA-256-PLUS" in s2["mechanisms"] and "PLAIN" in s2["mechanisms"]
    assert q(NS_BIND2, "bind") in s2["inline"] and q(NS_SM, "sm") in s2["inline"]
    assert s2["bind2"] == [NS_SM]
    assert s2["fast"] == ["HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE"]
    c.close()


def test_xep0388_2_1_plain_and_fast_only_over_tls(server_factory):
    """PLAIN (RFC 6120 §13.8.3) and FAST (XEP-0484 §7) need TLS: a server
    that allows plaintext offers neither before STARTTLS."""
    srv = server_factory({"c2s": {"require_encryption": False}})
    c = RawClient(srv.port)
    f = c.open_stream()
    assert "PLAIN" not in f["sasl2"]["mechanisms"] and f["sasl2"]["mechanisms"]
    assert f["sasl2"]["fast"] is None
    c.starttls()
    f = c.open_stream()
    assert "PLAIN" in f["sasl2"]["mechanisms"] and "HT-SHA-256-NONE" in f["sasl2"]["fast"]
    c.close()


def test_xep0388_off_leaves_rfc6120_only(server_factory):
    """c2s.sasl2 false: no <authentication/>, RFC 6120 SASL as before."""
    srv = server_factory({"c2s": {"sasl2": False}})
    a = srv_account(srv)
    c, f = new_client(srv)
    assert f["sasl2"] is None and "SCRAM-SHA-256" in f["mechanisms"]
    c.close()
    c = RawClient(srv.port)
    assert c.login(a.user, a.password, mech="SCRAM-SHA-1").startswith(a.jid + "/")
    c.close()


def srv_account(srv):
    from conftest import Account, unique_user
    import secrets
    a = Account(unique_user("s"), secrets.token_urlsafe(12))
    srv.adduser(a.jid, a.password)
    return a


def test_xep0388_2_6_1_scram_success_without_restart(server, accounts):
    """§2.4, §2.6.1: SCRAM-SHA-256 in <challenge/>/<response/>; <success/>
    carries the server signature in <additional-data/> and the bare JID in
    <authorization-identifier/>; the features follow without a stream
    restart and RFC 6120 binding works on the same stream."""
    (a,) = accounts(1)
    c, _ = new_client(server)
    header = c.reader.header
    res, sc, sf = c.sasl2_scram("SCRAM-SHA-256", a.user, a.password, ua("d1"))
    assert res.ok and res.server_verified, res
    assert aid(res) == a.jid
    assert [x.tag for x in res.element] == [q(NS_SASL2, "additional-data"),
                                             q(NS_SASL2, "authorization-identifier")]
    f = features_after(c)
    assert f.find(q("urn:ietf:params:xml:ns:xmpp-bind", "bind")) is not None
    assert c.reader.header is header  # the same stream
    assert c.bind("r1") == a.jid + "/r1"
    c.close()


def test_xep0388_scram_plus_endpoint(server, accounts):
    """-PLUS with tls-server-end-point channel binding (RFC 5929) via SASL2."""
    (a,) = accounts(1)
    c, _ = new_client(server)
    res, _, _ = c.sasl2_scram("SCRAM-SHA-512-PLUS", a.user, a.password)
    assert res.ok and res.server_verified, res
    c.close()


def test_xep0388_scram_without_initial_response(server, accounts):
    """§2.2: no <initial-response/>: an empty <challenge/> asks for it."""
    (a,) = accounts(1)
    c, _ = new_client(server)
    mark = len(c.raw)
    c.sasl2_authenticate("SCRAM-SHA-1")
    assert c.next_element().tag == q(NS_SASL2, "challenge")
    assert bytes(c.raw[mark:]) == b"<challenge xmlns='urn:xmpp:sasl:2'/>"
    sc = ScramClient("SCRAM-SHA-1", a.user, a.password)
    c.send("<response xmlns='%s'>%s</response>" % (NS_SASL2, base64.b64encode(sc.first()).decode()))
    sf = base64.b64decode(c.next_element().text)
    c.send("<response xmlns='%s'>%s</response>" % (NS_SASL2, base64.b64encode(sc.final(sf)).decode()))
    res = c.sasl2_outcome(scram=sc)
    assert res.ok and res.server_verified
    c.close()


def test_xep0388_2_6_2_failure_conditions(server, accounts):
    """§2.6.2: <failure/> with an RFC 6120 §6.5 condition: wrong password,
    unknown mechanism, bad base64, unknown account with PLAIN."""
    (a,) = accounts(1)
    c, _ = new_client(server)
    mark = len(c.raw)
    res, _, _ = c.sasl2_scram("SCRAM-SHA-256", a.user, "wrong")
    assert not res.ok and res.condition == "not-authorized"
    assert bytes(c.raw).endswith(b"<failure xmlns='urn:xmpp:sasl:2'><not-authorized "
                                 b"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>")
    mark = len(c.raw)
    c.sasl2_authenticate("DIGEST-MD5", b"x")
    assert c.sasl2_outcome().condition == "invalid-mechanism"
    assert bytes(c.raw[mark:]) == (b"<failure xmlns='urn:xmpp:sasl:2'><invalid-mechanism "
                                   b"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>")
    c.send("<authenticate xmlns='%s' mechanism='PLAIN'><initial-response>!!</initial-response>"
           "</authenticate>" % NS_SASL2)
    res = c.sasl2_outcome()
    assert res.condition == "incorrect-encoding" and res.text
    res = c.sasl2_plain("nobody-here", "x")
    assert res.condition == "not-authorized"
    # the stream still works: the right password now
    res = c.sasl2_plain(a.user, a.password)
    assert res.ok and aid(res) == a.jid
    c.close()


def test_xep0388_5_abort(server, accounts):
    """§3.5: <abort/> ends the exchange with <aborted/>; a new one may start."""
    (a,) = accounts(1)
    c, _ = new_client(server)
    c.sasl2_authenticate("SCRAM-SHA-1", ScramClient("SCRAM-SHA-1", a.user, a.password).first())
    assert c.next_element().tag == q(NS_SASL2, "challenge")
    mark = len(c.raw)
    c.send("<abort xmlns='%s'/>" % NS_SASL2)
    res = c.sasl2_outcome()
    assert res.condition == "aborted"
    assert bytes(c.raw[mark:]) == (b"<failure xmlns='urn:xmpp:sasl:2'><aborted "
                                   b"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>")
    res, _, _ = c.sasl2_scram("SCRAM-SHA-1", a.user, a.password)
    assert res.ok
    c.close()


def test_xep0388_limits_attempts_and_sizes(server, accounts):
    """Limits as RFC 6120 SASL: limits.auth_attempts failures end the stream
    with <policy-violation/>; a <user-agent/> id over 128 bytes is a
    malformed request."""
    (a,) = accounts(1)
    c, _ = new_client(server)
    res = c.sasl2_plain(a.user, a.password, "<user-agent id='%s'/>" % ("x" * 129))
    assert res.condition == "malformed-request", res
    for _ in range(4):
        assert c.sasl2_plain(a.user, "wrong").condition == "not-authorized"
    c.sasl2_plain(a.user, "wrong")
    c.expect_stream_error("policy-violation")


def test_xep0388_2_5_only_sasl2_during_exchange(server, accounts):
    """§2.5: during the exchange only SASL2 elements; anything else ends the
    stream. §3.8: a second <authenticate/> after success is a stream error."""
    (a,) = accounts(1)
    c, _ = new_client(server)
    c.sasl2_authenticate("SCRAM-SHA-1", ScramClient("SCRAM-SHA-1", a.user, a.password).first())
    assert c.next_element().tag == q(NS_SASL2, "challenge")
    c.send("<presence/>")
    c.expect_stream_error("policy-violation")
    c, _ = new_client(server)
    assert c.sasl2_plain(a.user, a.password).ok
    features_after(c)
    c.sasl2_authenticate("PLAIN", ("\0%s\0%s" % (a.user, a.password)).encode())
    c.expect_stream_error("policy-violation")


def test_xep0388_authzid_must_match_stream_from(server, accounts):
    """§3.4: a non-empty authorization identity must match the stream's
    'from'; RFC 6120 §6.4.6: and name the authenticating account."""
    a, b = accounts(2)
    c = RawClient(server.port)
    c.open_stream()
    c.starttls()
    c.open_stream(frm=b.jid)
    c.sasl2_authenticate("PLAIN", ("%s\0%s\0%s" % (a.jid, a.user, a.password)).encode())
    assert c.sasl2_outcome().condition == "invalid-authzid"
    c.close()
    c = RawClient(server.port)
    c.open_stream()
    c.starttls()
    c.open_stream(frm=a.jid)
    c.sasl2_authenticate("PLAIN", ("%s\0%s\0%s" % (a.jid, a.user, a.password)).encode())
    assert c.sasl2_outcome().ok
    c.close()


def test_rfc6120_sasl_unchanged_for_slixmpp(server, accounts):
    """Clients without SASL2 (slixmpp 1.8) log in with RFC 6120 SASL and
    binding as before; the extra SCRAM attribute h= (XEP-0474) is ignored."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a)
        cb = await connect(server, b)
        ca.send_message(mto=cb.boundjid, mbody="hi", mtype="chat")
        msg = await cb.next_message()
        assert msg["body"] == "hi"
    run(scenario())


# ---- XEP-0386: Bind2 ------------------------------------------------------------------------------

def bind2_login(server, account, dev=None, tag=None, inner="", mech="PLAIN"):
    c, _ = new_client(server)
    extra = (ua(dev) if dev else "") + bind2(tag, inner)
    if mech == "PLAIN":
        res = c.sasl2_plain(account.user, account.password, extra)
    else:
        res, _, _ = c.sasl2_scram(mech, account.user, account.password, extra)
    assert res.ok, res
    return c, res


def test_xep0386_bound_full_jid_and_routing(server, accounts):
    """§2.2: <success/> carries <bound/> and the full JID; the stream is
    bound at once (no RFC 6120 bind offered) and stanzas flow both ways."""
    a, b = accounts(2)
    c, res = bind2_login(server, a, dev="phone", tag="AwesomeXMPP")
    jid = aid(res)
    assert jid.startswith(a.jid + "/AwesomeXMPP/")
    assert res.element.find(q(NS_BIND2, "bound")) is not None
    f = features_after(c)
    assert f.find(q("urn:ietf:params:xml:ns:xmpp-bind", "bind")) is None
    other = RawClient(server.port)
    other.login(b.user, b.password, resource="x")
    other.send("<message to='%s' type='chat'><body>to the bound one</body></message>" % jid)
    m = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    assert m.find(q(NS_CLIENT, "body")).text == "to the bound one"
    c.send("<message to='%s' type='chat'><body>back</body></message>" % other.jid)
    m = other.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    assert m.get("from") == jid
    c.close()
    other.close()


def test_xep0386_2_2_1_resource_stable_per_device(server, accounts):
    """§2.2.1: the same <user-agent/> id and tag give the same resource at
    every login; another device another one; the id does not show in it;
    without an id the resource is random. The earlier session of the same
    device ends with <conflict/> (§2.2)."""
    (a,) = accounts(1)
    dev = "0b1b5f4a-3c2e-4f6a-9d2b-7e8f9a0b1c2d"
    c1, r1 = bind2_login(server, a, dev=dev, tag="Conv")
    features_after(c1)
    c2, r2 = bind2_login(server, a, dev=dev, tag="Conv")
    assert aid(r1) == aid(r2) and dev not in aid(r1)
    c1.expect_stream_error("conflict")
    c3, r3 = bind2_login(server, a, dev="another-device", tag="Conv")
    assert aid(r3) != aid(r2) and aid(r3).startswith(a.jid + "/Conv/")
    # the same device with another tag: a new resource with the same device
    # part, and the earlier session goes
    features_after(c2)
    c4, r4 = bind2_login(server, a, dev=dev, tag="Other")
    assert aid(r4).rsplit("/", 1)[1] == aid(r2).rsplit("/", 1)[1] and "/Other/" in aid(r4)
    c2.expect_stream_error("conflict")
    _, r5 = bind2_login(server, a)
    _, r6 = bind2_login(server, a)
    assert aid(r5) != aid(r6)
    # a tag that makes no valid resource is left out
    _, r7 = bind2_login(server, a, dev="d7", tag="bad\ue000tag")  # private use: no resourceprep
    assert "/" not in aid(r7)[len(a.jid) + 1:]


def test_xep0386_2_2_inline_sm_enable(server, accounts):
    """XEP-0386 §2.2 with XEP-0198: <enable/> inside <bind/> answers
    <enabled/> inside <bound/>; acknowledgements then work."""
    a, b = accounts(2)
    c, res = bind2_login(server, a, dev="sm", inner="<enable xmlns='%s' resume='true'/>" % NS_SM)
    bound = res.element.find(q(NS_BIND2, "bound"))
    en = bound.find(q(NS_SM, "enabled"))
    assert en is not None and en.get("resume") == "true" and en.get("id"), tostr(res.element)
    assert int(en.get("max")) == 30
    features_after(c)
    c.send("<r xmlns='%s'/>" % NS_SM)
    a_el = c.wait_for(lambda e: e.tag == q(NS_SM, "a"))
    assert a_el.get("h") == "0"
    c.close()


def resumable(server, account, dev):
    c, res = bind2_login(server, account, dev=dev, inner="<enable xmlns='%s' resume='true'/>" % NS_SM)
    en = res.element.find(q(NS_BIND2, "bound")).find(q(NS_SM, "enabled"))
    features_after(c)
    return c, aid(res), en.get("id")


def test_xep0198_sasl2_inline_resume(server, accounts):
    """XEP-0198 with XEP-0388: <resume/> inside <authenticate/> answers
    <resumed/> inside <success/> with the old full JID and no <bound/>
    (XEP-0386: the <bind/> is ignored); what the client missed follows the
    features, in order."""
    a, b = accounts(2)
    c, jid, sm_id = resumable(server, a, "res-dev")
    other = RawClient(server.port)
    other.login(b.user, b.password, resource="o")
    for i in range(3):
        other.send("<message to='%s' type='chat'><body>m%d</body></message>" % (jid, i))
    for i in range(3):
        c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    c.close()  # the TCP connection drops: the session hibernates
    time.sleep(scaled(0.3))
    for i in range(3, 5):
        other.send("<message to='%s' type='chat'><body>m%d</body></message>" % (jid, i))
    time.sleep(scaled(0.3))
    c2, _ = new_client(server)
    mark = len(c2.raw)
    res = c2.sasl2_plain(a.user, a.password, ua("res-dev") + bind2("T") +
                         "<resume xmlns='%s' previd='%s' h='1'/>" % (NS_SM, sm_id))
    assert res.ok, res
    assert aid(res) == jid
    resumed = res.element.find(q(NS_SM, "resumed"))
    assert resumed is not None and resumed.get("previd") == sm_id and resumed.get("h") == "0"
    assert res.element.find(q(NS_BIND2, "bound")) is None
    features_after(c2)
    assert (b"<resumed xmlns='urn:xmpp:sm:3' h='0' previd='%s'/></success><stream:features>"
            % sm_id.encode()) in bytes(c2.raw[mark:])
    bodies = []
    while len(bodies) < 4:
        el = c2.next_element()
        if el.tag == q(NS_CLIENT, "message"):
            bodies.append(el.find(q(NS_CLIENT, "body")).text)
    assert bodies == ["m1", "m2", "m3", "m4"]
    # the resumed session carries on
    c2.send("<message to='%s' type='chat'><body>after</body></message>" % other.jid)
    assert other.wait_for(lambda e: e.tag == q(NS_CLIENT, "message")).get("from") == jid
    c2.close()
    other.close()


def test_xep0198_sasl2_inline_resume_failed_then_bind(server, accounts):
    """XEP-0386 §2.2: a resumption that fails puts <failed/> in <success/>
    and the server goes on with the <bind/> request."""
    (a,) = accounts(1)
    c, _ = new_client(server)
    res = c.sasl2_plain(a.user, a.password, ua("x") + bind2("T") +
                        "<resume xmlns='%s' previd='no-such-id' h='0'/>" % NS_SM)
    assert res.ok, res
    failed = res.element.find(q(NS_SM, "failed"))
    assert failed is not None and failed.find(q(NS_STANZA_ERR, "item-not-found")) is not None
    assert res.element.find(q(NS_BIND2, "bound")) is not None
    assert aid(res).startswith(a.jid + "/T/")
    assert (b"<failed xmlns='urn:xmpp:sm:3'><item-not-found "
            b"xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>") in bytes(c.raw)
    c.close()


def test_xep0198_sasl2_resume_someone_elses_session(server, accounts):
    """XEP-0198 §5: another account cannot resume a session, inline either."""
    a, b = accounts(2)
    c, jid, sm_id = resumable(server, a, "mine")
    c.close()
    c2, _ = new_client(server)
    res = c2.sasl2_plain(b.user, b.password, "<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, sm_id))
    assert res.ok and res.element.find(q(NS_SM, "failed")) is not None
    assert aid(res) == b.jid  # not bound, not a's session
    c2.close()


# ---- XEP-0484: FAST -------------------------------------------------------------------------------

def test_xep0484_3_3_token_issued_and_used(server, accounts):
    """§3.2-3.4: <request-token/> with a password login gives <token/> with
    an XEP-0082 expiry; a login with HT-SHA-256-NONE and the token succeeds
    in one round trip, with the responder hash in <additional-data/>."""
    (a,) = accounts(1)
    c, tok, expiry = get_token(server, a)
    assert len(tok) >= 40
    assert time.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ")
    c.close()
    c, res = fast_login(server, a, tok, inner=fast_el())
    assert res.ok and res.server_verified, res
    assert aid(res) == a.jid
    assert token_of(res) is None  # not due for rotation
    c.close()
    # the first use moved the token to the current slot; using it again
    # without a count changes nothing stored
    before = server.stored_kv(a.user, "fast")
    assert '"cur"' in before[0] and '"new"' not in before[0]
    c, res = fast_login(server, a, tok)
    assert res.ok
    c.close()
    assert server.stored_kv(a.user, "fast") == before


def test_xep0484_tokens_stored_hashed(server, accounts):
    """The storage layer never holds a token: the record keeps a salt the
    token is derived from with the server's key."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a)
    c.close()
    values = server.stored_kv(a.user, "fast")
    assert len(values) == 1
    assert tok not in values[0]
    rec = json.loads(values[0])
    (entry,) = rec.values()
    assert entry["new"]["mech"] == "HT-SHA-256-NONE" and "salt" in entry["new"]
    assert "dev-1" not in values[0]  # the client id is hashed too


def test_xep0484_endp_channel_binding(server, accounts):
    """HT-SHA-256-ENDP: the token bound to tls-server-end-point; a proof
    without the channel binding fails."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a, mech="HT-SHA-256-ENDP")
    c.close()
    c, _ = new_client(server)
    res = c.sasl2_ht("HT-SHA-256-ENDP", a.user, tok, ua("dev-1"), cb_data=b"wrong cb data")
    assert res.condition == "not-authorized"
    c.close()
    c, _ = new_client(server)
    res = c.sasl2_ht("HT-SHA-256-ENDP", a.user, tok, ua("dev-1"), cb_data=c.tls_server_end_point())
    assert res.ok and res.server_verified, res
    c.close()


def test_xep0484_3_4_token_bound_to_mechanism(server, accounts):
    """§3.4: a token issued for -ENDP does not work with -NONE."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a, mech="HT-SHA-256-ENDP")
    c.close()
    c, res = fast_login(server, a, tok, mech="HT-SHA-256-NONE")
    assert res.condition == "not-authorized"
    c.close()


class TLS12Client(RawClient):
    def _wrap_tls(self):
        ctx = client_ssl_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.domain)
        self.tls = True


def test_xep0484_uniq_over_tls12(server, accounts):
    """HT-SHA-256-UNIQ (tls-unique, RFC 5929) is offered over TLS 1.2 only,
    where it is defined; -EXPR only over TLS 1.3 (RFC 9266)."""
    (a,) = accounts(1)
    c = TLS12Client(server.port)
    f = c.secure_stream()
    assert f["sasl2"]["fast"] == ["HT-SHA-256-ENDP", "HT-SHA-256-UNIQ", "HT-SHA-256-NONE"]
    res = c.sasl2_plain(a.user, a.password, ua("tls12") + request_token("HT-SHA-256-UNIQ"))
    tok = token_of(res)
    c.close()
    c = TLS12Client(server.port)
    c.secure_stream()
    res = c.sasl2_ht("HT-SHA-256-UNIQ", a.user, tok, ua("tls12"),
                     cb_data=c.sock.get_channel_binding("tls-unique"))
    assert res.ok and res.server_verified, res
    c.close()


def test_xep0484_4_1_needs_user_agent_and_offered_mechanism(server, accounts):
    """§4.1: FAST needs the <user-agent/> id; <request-token/> must name an
    offered FAST mechanism (malformed-request otherwise)."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a)
    c.close()
    c, _ = new_client(server)
    res = c.sasl2_ht("HT-SHA-256-NONE", a.user, tok)
    assert res.condition == "malformed-request" and "user-agent" in res.text
    res = c.sasl2_plain(a.user, a.password, ua("d") + request_token("HT-SHA-256-MD5"))
    assert res.condition == "malformed-request"
    c.close()


def test_xep0484_3_5_invalidate(server, accounts):
    """§3.6: invalidate='true' logs in and kills the token; no new one
    unless asked for."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a)
    c.close()
    c, res = fast_login(server, a, tok, inner=fast_el(invalidate=True))
    assert res.ok and token_of(res) is None
    c.close()
    c, res = fast_login(server, a, tok)
    assert res.condition == "not-authorized"
    c.close()


def test_xep0484_3_4_replayed_count_refused(server, accounts):
    """§3.4: a count must grow from login to login with one token; a count
    seen before is refused (the 0-RTT replay guard)."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a)
    c.close()
    for count, ok in ((5, True), (5, False), (6, True), (4, False), (7, True)):
        c, res = fast_login(server, a, tok, inner=fast_el(count=count))
        assert res.ok is ok, (count, res)
        if not ok:
            assert res.condition == "not-authorized" and "count" in res.text
        c.close()


def test_xep0484_revoked_on_password_change(server, accounts):
    """A password change (xmppctl passwd) revokes every token of the account."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a)
    c.close()
    server.ctl("passwd", a.jid, input="new-password-1\n", check=True)
    c, res = fast_login(server, a, tok)
    assert res.condition == "not-authorized"
    assert server.stored_kv(a.user, "fast") == []
    c.close()


def test_xep0484_revoked_on_account_deletion(server, accounts):
    """Deleting the account revokes its tokens with the rest of its data."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a)
    c.close()
    server.ctl("deluser", a.jid, check=True)
    assert server.stored_kv(a.user, "fast") == []
    server.adduser(a.jid, a.password)  # same name again: the old token is dead
    c, res = fast_login(server, a, tok)
    assert res.condition == "not-authorized"
    c.close()


def test_xep0484_rotation_and_expiry(server_factory):
    """§3.5: a token used with less than rotate_before left gets a successor
    in <success/>; the old one works until the new one is used, then dies;
    an expired token fails with credentials-expired (§4.2)."""
    srv = server_factory({"c2s": {"fast": {"token_lifetime": "4s", "rotate_before": "3s"}}})
    a = srv_account(srv)
    c, tok, _ = get_token(srv, a)
    c.close()
    c, res = fast_login(srv, a, tok)
    assert res.ok and token_of(res) is None  # 4s left: not yet due
    c.close()
    time.sleep(1.5)
    c, res = fast_login(srv, a, tok)
    assert res.ok
    new = token_of(res)
    assert new and new != tok
    c.close()
    # the client lost the new token: the old one still works and gets a
    # successor again, which replaces the one never used (§3.5)
    c, res = fast_login(srv, a, tok)
    assert res.ok
    newer = token_of(res)
    assert newer and newer not in (tok, new)
    c.close()
    c, res = fast_login(srv, a, new)
    assert res.condition == "not-authorized"
    c.close()
    c, res = fast_login(srv, a, newer)
    assert res.ok and token_of(res) is None
    c.close()
    c, res = fast_login(srv, a, tok)  # the newer token is in use: the old one died
    assert res.condition == "not-authorized"
    c.close()
    new = newer
    time.sleep(4.5)
    c, res = fast_login(srv, a, new)
    assert res.condition == "credentials-expired", res
    c.close()


def test_xep0484_max_tokens_per_account(server_factory):
    """At most c2s.fast.max_tokens tokens per account, one per client: a
    third client's token replaces the least recently issued one; the same
    client asking again replaces its own."""
    srv = server_factory({"c2s": {"fast": {"max_tokens": 2}}})
    a = srv_account(srv)
    toks = {}
    for dev in ("d1", "d2", "d3"):
        c, toks[dev], _ = get_token(srv, a, dev=dev)
        c.close()
        time.sleep(0.05)
    assert len(json.loads(srv.stored_kv(a.user, "fast")[0])) == 2
    c, res = fast_login(srv, a, toks["d1"], dev="d1")
    assert res.condition == "not-authorized"
    for dev in ("d2", "d3"):
        c, res = fast_login(srv, a, toks[dev], dev=dev)
        assert res.ok, (dev, res)
        c.close()
    # a token works only for the client it was issued to
    c, res = fast_login(srv, a, toks["d2"], dev="d3")
    assert res.condition == "not-authorized"


def test_xep0484_off(server_factory):
    """c2s.fast.enabled false: no <fast/>, no HT mechanism, no token."""
    srv = server_factory({"c2s": {"fast": {"enabled": False}}})
    a = srv_account(srv)
    c, f = new_client(srv)
    assert f["sasl2"]["fast"] is None
    res = c.sasl2_plain(a.user, a.password, ua("x") + request_token())
    assert res.condition == "malformed-request"
    c.sasl2_authenticate("HT-SHA-256-NONE", b"x\0" + b"0" * 32, ua("x"))
    assert c.sasl2_outcome().condition == "invalid-mechanism"
    c.close()


# ---- XEP-0474: SCRAM downgrade protection -------------------------------------------------------------

def server_first_attrs(sf):
    return dict(kv.split("=", 1) for kv in sf.decode().split(","))


def legacy_server_first(c, mech, user, password):
    sc = ScramClient(mech, user, password)
    c.send("<auth xmlns='%s' mechanism='%s'>%s</auth>" % (NS_SASL, mech, base64.b64encode(sc.first()).decode()))
    el = c.next_element()
    assert el.tag == q(NS_SASL, "challenge"), tostr(el)
    return sc, base64.b64decode(el.text)


def test_xep0474_5_1_hash_in_rfc6120_sasl(server, accounts):
    """§5.1/§5.2 with RFC 6120 SASL: h= in the server-first-message is the
    hash of the mechanisms and channel bindings the client received; a
    stripped list (what a man in the middle shows) does not match it."""
    (a,) = accounts(1)
    c, f = new_client(server)
    sc, sf = legacy_server_first(c, "SCRAM-SHA-256", a.user, a.password)
    h = server_first_attrs(sf)["h"]
    assert h == ssdp_hash("sha256", f["mechanisms"], f["channel_bindings"])
    stripped = [m for m in f["mechanisms"] if not m.endswith("-PLUS")]
    assert h != ssdp_hash("sha256", stripped, f["channel_bindings"])
    assert h != ssdp_hash("sha256", f["mechanisms"], f["channel_bindings"][:1])
    c.send("<response xmlns='%s'>%s</response>" % (NS_SASL, base64.b64encode(sc.final(sf)).decode()))
    assert c._sasl_outcome(scram=sc).ok
    c.close()


def test_xep0474_5_1_hash_in_sasl2(server, accounts):
    """§5.1 with SASL2: the list hashed is SASL2's (the same mechanisms), in
    SHA-1 for SCRAM-SHA-1."""
    (a,) = accounts(1)
    c, f = new_client(server)
    res, _, sf = c.sasl2_scram("SCRAM-SHA-1", a.user, a.password)
    assert res.ok
    assert server_first_attrs(sf)["h"] == ssdp_hash("sha1", f["sasl2"]["mechanisms"], f["channel_bindings"])
    c.close()


def test_xep0474_7_tampered_hash_fails_the_proof(server, accounts):
    """§7: h= is signed: a man in the middle who rewrites it (to match his
    stripped list) makes the client's proof fail at the server."""
    (a,) = accounts(1)
    c, f = new_client(server)
    sc, sf = legacy_server_first(c, "SCRAM-SHA-256", a.user, a.password)
    stripped = [m for m in f["mechanisms"] if not m.endswith("-PLUS")]
    forged = sf.replace(server_first_attrs(sf)["h"].encode(),
                        ssdp_hash("sha256", stripped, f["channel_bindings"]).encode())
    assert forged != sf
    c.send("<response xmlns='%s'>%s</response>" % (NS_SASL, base64.b64encode(sc.final(forged)).decode()))
    res = c._sasl_outcome(scram=sc)
    assert not res.ok and res.condition == "not-authorized"
    c.close()


def test_xep0474_off(server_factory):
    """c2s.ssdp false: the server-first-message has no h=."""
    srv = server_factory({"c2s": {"ssdp": False}})
    a = srv_account(srv)
    c, f = new_client(srv)
    _, sf = legacy_server_first(c, "SCRAM-SHA-1", a.user, a.password)
    assert "h" not in server_first_attrs(sf)
    c.close()


# ---- the catalogue ------------------------------------------------------------------------------------

def test_features_lists_sasl2_bind2_fast_ssdp(server):
    """xmppctl features names the kernel for XEP-0388, 0386, 0484, 0474."""
    j = json.loads(server.ctl("-j", "features").stdout)
    specs = {s["spec"]: s["by"] for s in j["hosts"][0]["specs"]}
    for x in ("XEP-0388", "XEP-0386", "XEP-0484", "XEP-0474"):
        assert specs.get(x) == ["kernel"], (x, specs.get(x))
    hooks = server.ctl("hooks").stdout
    for ev in ("sasl2-features", "sasl2-inline", "bind2-features", "bind2-inline"):
        assert ev in hooks


def test_xep0386_inline_carbons_and_csi_from_modules(server_factory):
    """XEP-0386 §2.1/§2.2 with XEP-0280 and XEP-0352: mod_carbons and mod_csi
    list their features inside Bind2's <inline/> ("bind2-features") and act
    on their elements in the <bind/> request ("bind2-inline"): a session
    that enabled carbons inline gets a <received/> copy of a message another
    resource of the account got, right away."""
    srv = server_factory({"modules": {"roster": True, "presence": True, "carbons": True, "csi": True,
                                      "smacks": True}})
    a, b = srv_account(srv), srv_account(srv)
    c, f = new_client(srv)
    assert "urn:xmpp:carbons:2" in f["sasl2"]["bind2"] and "urn:xmpp:csi:0" in f["sasl2"]["bind2"]
    res = c.sasl2_plain(a.user, a.password, ua("phone") + bind2(
        "phone", "<enable xmlns='urn:xmpp:carbons:2'/><active xmlns='urn:xmpp:csi:0'/>"))
    assert res.ok, res
    features_after(c)
    c.send("<presence/>")
    other = RawClient(srv.port)
    other.login(a.user, a.password, resource="desk")
    other.send("<presence><priority>10</priority></presence>")
    sender = RawClient(srv.port)
    sender.login(b.user, b.password, resource="x")
    sender.send("<message to='%s/desk' type='chat'><body>to desk</body></message>" % a.jid)
    got = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and
                     e.find("{urn:xmpp:carbons:2}received") is not None)
    fwd = got.find("{urn:xmpp:carbons:2}received/{urn:xmpp:forward:0}forwarded/{jabber:client}message")
    assert fwd is not None and fwd.findtext(q(NS_CLIENT, "body")) == "to desk"
    assert got.get("from") == a.jid
    for x in (c, other, sender):
        x.close()


def test_issue17_disabling_revokes_fast_tokens(server, accounts):
    """Issue 17 (xmppctl disable, XEP-0133 disable-user): disabling an
    account revokes its FAST tokens (XEP-0484), so a token cannot log in a
    disabled account — nor, once it is enabled again, the old token: a
    password login is needed."""
    (a,) = accounts(1)
    c, tok, _ = get_token(server, a)
    c.close()
    r = server.ctl("disable", a.jid)
    assert r.returncode == 0, r.stderr
    c, res = fast_login(server, a, tok)
    assert not res.ok, res
    c.close()
    server.ctl("enable", a.jid, check=True)
    c, res = fast_login(server, a, tok)
    assert not res.ok and res.condition == "not-authorized", res
    c.close()
