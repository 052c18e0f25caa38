"""Stanza routing between local sessions and to the server.

RFC 6120 §8 (stanza semantics, §8.1.2.1 'from' stamping, §8.3 errors,
§8.4 unknown IQ namespaces), §7.7.2.2 (resource conflicts);
RFC 6121 §8.5 (delivery rules for bare and full JIDs).

The server of this module loads no offline-storage module, so a message
to an account without available resources is answered per RFC 6121
§8.5.2.2.1 with <service-unavailable/> (types normal/chat) or dropped
(headline).
"""

import asyncio

from xmpptest import (NS_CLIENT, QUIET_PERIOD, RawClient, connect, error_condition, q, run,
                      scaled, tostr)


def body_is(text):
    return lambda m: m["body"] == text


# ---- message delivery --------------------------------------------------------

def test_rfc6120_8_1_2_1_message_delivered_with_from_stamped(server, accounts):
    """RFC 6120 §8.1.2.1: a message between two accounts arrives with
    'from' set by the server to the sender's full JID."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, resource="a1", presence=0)
        cb = await connect(server, b, resource="b1", presence=0)
        ca.send_message(mto=str(cb.boundjid), mbody="hello", mtype="chat")
        m = await cb.next_message(pred=body_is("hello"))
        assert m["type"] == "chat"
        assert str(m["from"]) == str(ca.boundjid)
        assert m["to"].bare == b.jid
    run(scenario())


def test_rfc6120_8_1_2_1_spoofed_from_overwritten(server, accounts):
    """RFC 6120 §8.1.2.1: a 'from' naming someone else is replaced by the
    sender's full JID (never routed as given)."""
    a, b, c = accounts(3)

    async def scenario():
        ca = await connect(server, a, resource="a1", presence=0)
        cb = await connect(server, b, resource="b1", presence=0)
        m = ca.make_message(mto=str(cb.boundjid), mbody="spoof", mtype="chat")
        m["from"] = c.jid + "/evil"
        m.send()
        got = await cb.next_message(pred=body_is("spoof"))
        assert str(got["from"]) == str(ca.boundjid)
    run(scenario())


def test_rfc6121_8_5_3_1_full_jid_delivered_to_that_resource_only(server, accounts):
    """RFC 6121 §8.5.3.1: a message to a full JID goes to that resource
    only."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, presence=0)
        b1 = await connect(server, b, resource="one", presence=5)
        b2 = await connect(server, b, resource="two", presence=1)
        ca.send_message(mto=b.jid + "/two", mbody="to-two", mtype="chat")
        m = await b2.next_message(pred=body_is("to-two"))
        assert str(m["from"]) == str(ca.boundjid)
        assert await b1.no_message(pred=body_is("to-two")) == []
    run(scenario())


def test_rfc6121_8_5_2_1_1_bare_jid_to_highest_priority(server, accounts):
    """RFC 6121 §8.5.2.1.1: a chat message to the bare JID goes to the
    available resource with the highest priority, not to lower ones, and
    never to a resource with negative priority."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, presence=0)
        hi = await connect(server, b, resource="hi", presence=5)
        lo = await connect(server, b, resource="lo", presence=1)
        neg = await connect(server, b, resource="neg", presence=-1)
        await asyncio.sleep(scaled(0.3))  # presences processed
        ca.send_message(mto=b.jid, mbody="bare", mtype="chat")
        m = await hi.next_message(pred=body_is("bare"))
        assert str(m["from"]) == str(ca.boundjid)
        assert await lo.no_message(pred=body_is("bare")) == []
        assert await neg.no_message(period=0, pred=body_is("bare")) == []
    run(scenario())


def test_rfc6121_8_5_2_1_1_bare_jid_equal_priorities(server, accounts):
    """RFC 6121 §8.5.2.1.1: with equal highest priorities the message goes
    to at least one of those resources (all or one is the server's
    choice)."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, presence=0)
        b1 = await connect(server, b, resource="x", presence=3)
        b2 = await connect(server, b, resource="y", presence=3)
        await asyncio.sleep(scaled(0.3))
        ca.send_message(mto=b.jid, mbody="eq", mtype="normal")
        await asyncio.sleep(QUIET_PERIOD)
        got1 = await b1.no_message(period=0, pred=body_is("eq"))
        got2 = await b2.no_message(period=0, pred=body_is("eq"))
        assert len(got1) + len(got2) >= 1, "delivered to no resource"
        assert len(got1) <= 1 and len(got2) <= 1, "duplicate delivery"
    run(scenario())


def test_rfc6121_8_5_2_2_1_chat_to_offline_account_service_unavailable(server, accounts):
    """RFC 6121 §8.5.2.2.1: no available resource and no offline storage:
    a chat message is answered with <service-unavailable/>."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, presence=0)
        ca.send_message(mto=b.jid, mbody="anyone?", mtype="chat")
        m = await ca.next_message(pred=lambda m: m["type"] == "error")
        assert m["from"].bare == b.jid
        assert m["error"]["condition"] == "service-unavailable"
    run(scenario())


def test_rfc6121_8_5_2_2_1_headline_to_offline_account_dropped(server, accounts):
    """RFC 6121 §8.5.2.2.1: a headline message to an account with no
    available resource is silently dropped (no error)."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, presence=0)
        ca.send_message(mto=b.jid, mbody="news", mtype="headline")
        assert await ca.no_message() == []
    run(scenario())


def test_rfc6121_8_5_1_message_to_nonexistent_user_service_unavailable(server, accounts):
    """RFC 6121 §8.5.1: message to an account that does not exist ->
    <service-unavailable/>."""
    (a,) = accounts(1)

    async def scenario():
        ca = await connect(server, a, presence=0)
        ca.send_message(mto="nobody-here@localhost", mbody="hi", mtype="chat")
        m = await ca.next_message(pred=lambda m: m["type"] == "error")
        assert m["from"].bare == "nobody-here@localhost"
        assert m["error"]["condition"] == "service-unavailable"
    run(scenario())


def test_rfc6121_8_5_1_iq_to_nonexistent_user_service_unavailable(server, accounts):
    """RFC 6121 §8.5.1: IQ to an account that does not exist ->
    <service-unavailable/>."""
    (a,) = accounts(1)

    async def scenario():
        ca = await connect(server, a)
        iq = ca.make_iq_get(queryxmlns="jabber:iq:version", ito="nobody-here@localhost")
        typ, cond = await ca.iq_error(iq)
        assert cond == "service-unavailable"
    run(scenario())


def test_rfc6120_8_4_iq_unknown_namespace_to_server_service_unavailable(server, accounts):
    """RFC 6120 §8.4: an IQ get to the server with a payload namespace
    nobody handles -> <service-unavailable/> (type cancel)."""
    (a,) = accounts(1)

    async def scenario():
        ca = await connect(server, a)
        iq = ca.make_iq_get(queryxmlns="urn:example:no-such-namespace", ito="localhost")
        typ, cond = await ca.iq_error(iq)
        assert (typ, cond) == ("cancel", "service-unavailable")
    run(scenario())


def test_rfc6121_8_5_3_2_1_iq_to_offline_full_jid_service_unavailable(server, accounts):
    """RFC 6121 §8.5.3.2.1: IQ to a full JID with no such session (the
    account exists) -> <service-unavailable/>."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a)
        iq = ca.make_iq_get(queryxmlns="jabber:iq:version", ito=b.jid + "/gone")
        typ, cond = await ca.iq_error(iq)
        assert cond == "service-unavailable"
    run(scenario())


def test_rfc6120_8_3_3_remote_domain_remote_server_not_found(server, accounts):
    """RFC 6120 §8.3.3.16: a stanza for a domain that cannot be reached
    (no s2s, or no such domain) -> <remote-server-not-found/>."""
    (a,) = accounts(1)

    async def scenario():
        ca = await connect(server, a, presence=0)
        ca.send_message(mto="someone@nonexistent.invalid", mbody="far", mtype="chat")
        m = await ca.next_message(timeout=scaled(15), pred=lambda m: m["type"] == "error")
        assert m["from"].bare == "someone@nonexistent.invalid"
        assert m["error"]["condition"] == "remote-server-not-found"
    run(scenario(), timeout=scaled(40))


def test_rfc6120_8_2_iq_reply_routed_to_requester(server, accounts):
    """RFC 6120 §8.2.3: an IQ between two clients reaches the target full
    JID and the target's result comes back to the requester, both with
    stamped 'from'."""
    a, b = accounts(2)
    with RawClient(server.port) as ca, RawClient(server.port) as cb:
        ja = ca.login(a.user, a.password, resource="r")
        jb = cb.login(b.user, b.password, resource="r")
        ca.send("<iq type='get' id='ping1' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % jb)
        req = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "ping1")
        assert req.get("from") == ja
        cb.send("<iq type='result' id='ping1' to='%s'/>" % ja)
        res = ca.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "ping1")
        assert res.get("type") == "result", tostr(res)
        assert res.get("from") == jb


# ---- resource conflict ---------------------------------------------------------

def test_rfc6120_7_7_2_2_resource_conflict_replaces_old_session(server, accounts):
    """RFC 6120 §7.7.2.2: a second login with the same resource wins; the
    first session gets a <conflict/> stream error and is closed."""
    (a,) = accounts(1)
    with RawClient(server.port) as first:
        assert first.login(a.user, a.password, resource="same") == a.jid + "/same"
        with RawClient(server.port) as second:
            assert second.login(a.user, a.password, resource="same") == a.jid + "/same"
            first.expect_stream_error("conflict")
            # the new session works
            r = second.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost")
            assert r.get("type") in ("result", "error"), tostr(r)


def test_rfc6120_7_7_2_2_new_session_receives_after_conflict(server, accounts):
    """RFC 6120 §7.7.2.2: after the takeover, stanzas to the full JID go to
    the new session."""
    a, b = accounts(2)
    with RawClient(server.port) as old, RawClient(server.port) as new, \
            RawClient(server.port) as sender:
        old.login(a.user, a.password, resource="res")
        new.login(a.user, a.password, resource="res")
        old.expect_stream_error("conflict")
        sender.login(b.user, b.password, resource="s")
        sender.send("<message to='%s/res' type='chat'><body>after</body></message>" % a.jid)
        m = new.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
        assert m.findtext(q(NS_CLIENT, "body")) == "after"


def test_rfc6120_10_3_stanza_without_to_is_for_own_account(server, accounts):
    """RFC 6120 §10.3: an IQ without 'to' is handled on behalf of the
    sender's account; an unknown payload -> <service-unavailable/>, and the
    reply comes back to the sender."""
    (a,) = accounts(1)
    with RawClient(server.port) as c:
        jid = c.login(a.user, a.password)
        r = c.iq("<query xmlns='urn:example:unknown'/>")
        assert r.get("type") == "error", tostr(r)
        assert error_condition(r) == ("cancel", "service-unavailable"), tostr(r)
        assert r.get("to") in (None, jid)

