"""XEP-0280 Message Carbons (mod_carbons) with XEP-0334 hints.

Raw-socket clients check the exact copies (XEP-0297 wrapping, addresses);
slixmpp's xep_0280 plugin checks a real client library's view.
"""

import pytest

from xmpptest import (NS_CLIENT, NS_STANZA_ERR, connect, error_condition, new_id, q, raw_login,
                      run, scaled, tostr)

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_DISCO = "http://jabber.org/protocol/disco#info"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "offline": True, "disco": True,
                        "carbons": True}}


def is_msg(e):
    return e.tag == q(NS_CLIENT, "message")


def enable(c, on=True):
    r = c.iq("<%s xmlns='%s'/>" % ("enable" if on else "disable", NS_CARBONS), type_="set")
    assert r.get("type") == "result", tostr(r)
    return r


def login(server, account, resource, priority=0, carbons=True):
    c = raw_login(server, account, resource)
    if carbons:
        enable(c)
    if priority is not None:
        c.send("<presence><priority>%d</priority></presence>" % priority)
        c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == c.jid)
    return c


def carbon(e, direction):
    """The forwarded <message/> inside a carbon of direction, or None."""
    w = e.find(q(NS_CARBONS, direction))
    if w is None:
        return None
    f = w.find(q(NS_FORWARD, "forwarded"))
    assert f is not None, tostr(e)
    inner = f.find(q(NS_CLIENT, "message"))
    assert inner is not None, "forwarded payload is not a jabber:client message: %s" % tostr(e)
    return inner


def chat(to, body, extra="", mid=None, type_="chat"):
    t = " type='%s'" % type_ if type_ else ""
    return "<message to='%s'%s id='%s'><body>%s</body>%s</message>" % (to, t, mid or new_id("m"), body, extra)


def messages(c, period=None):
    return c.quiet(period, pred=is_msg)


# ---- enabling ------------------------------------------------------------------------------

def test_disco_and_enable_disable(server, accounts):
    """XEP-0280 §3: the server advertises urn:xmpp:carbons:2; §4/§5: enable
    and disable answer with a result, repeated requests too (§10.1)."""
    (a,) = accounts(1)
    c = raw_login(server, a, "r1")
    r = c.iq("<query xmlns='%s'/>" % NS_DISCO, to="localhost")
    assert NS_CARBONS in [f.get("var") for f in r.iter(q(NS_DISCO, "feature"))]
    for on in (True, True, False, False, True):
        enable(c, on)
    # to the account's own bare JID is the same request
    r = c.iq("<enable xmlns='%s'/>" % NS_CARBONS, type_="set", to=a.jid)
    assert r.get("type") == "result"
    c.close()


def test_enable_errors(server, accounts):
    """XEP-0280 §4.1: enabling another account's carbons is not-allowed; an
    unknown child is a bad-request (RFC 6120 §8.3.3.1)."""
    a, b = accounts(2)
    c = raw_login(server, a, "r1")
    r = c.iq("<enable xmlns='%s'/>" % NS_CARBONS, type_="set", to=b.jid)
    assert error_condition(r) == ("cancel", "not-allowed"), tostr(r)
    r = c.iq("<toggle xmlns='%s'/>" % NS_CARBONS, type_="set")
    assert error_condition(r) == ("modify", "bad-request"), tostr(r)
    c.close()


# ---- received ---------------------------------------------------------------------------------

def test_received_copy_to_full_jid(server, accounts):
    """XEP-0280 §6: a chat message to one resource is copied, wrapped per
    XEP-0297 in <received/>, from the bare JID to each other carbons-enabled
    resource, and not to a resource that did not enable carbons."""
    a, b = accounts(2)
    r1, r2 = login(server, a, "r1"), login(server, a, "r2")
    r3 = login(server, a, "r3", carbons=False)
    sender = raw_login(server, b, "s")
    mid = new_id("m")
    sender.send(chat(a.jid + "/r1", "hello r1", "<thread>t7</thread>", mid=mid))
    orig = r1.wait_for(is_msg)
    assert orig.find(q(NS_CLIENT, "body")).text == "hello r1" and carbon(orig, "received") is None
    cp = r2.wait_for(is_msg)
    assert cp.get("from") == a.jid and cp.get("to") == a.jid + "/r2" and cp.get("type") == "chat"
    inner = carbon(cp, "received")
    assert inner is not None, tostr(cp)
    assert inner.get("from") == b.jid + "/s" and inner.get("to") == a.jid + "/r1"
    assert inner.get("id") == mid and inner.find(q(NS_CLIENT, "body")).text == "hello r1"
    assert inner.find(q(NS_CLIENT, "thread")).text == "t7"
    # the raw bytes: the forwarded stanza is in jabber:client
    assert b"<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'" in bytes(r2.raw)
    assert messages(r3) == [] and messages(r1, 0.3) == []
    for c in (r1, r2, r3, sender):
        c.close()


def test_received_copy_after_bare_delivery(server, accounts):
    """XEP-0280 §6 with RFC 6121 §8.5.2: a message to the bare JID goes to
    the resource of highest priority; the enabled resource that did not get
    it receives the copy."""
    a, b = accounts(2)
    hi, lo = login(server, a, "hi", priority=5), login(server, a, "lo", priority=1)
    sender = raw_login(server, b, "s")
    sender.send(chat(a.jid, "to the bare JID"))
    assert hi.wait_for(is_msg).find(q(NS_CLIENT, "body")).text == "to the bare JID"
    inner = carbon(lo.wait_for(is_msg), "received")
    assert inner is not None and inner.get("to") == a.jid
    assert messages(hi, 0.3) == []
    for c in (hi, lo, sender):
        c.close()


def test_which_messages_are_copied(server, accounts):
    """XEP-0280 §6: normal messages with a body are copied, those without
    (a receipt) are not; group chat and headline messages are not."""
    a, b = accounts(2)
    r1, r2 = login(server, a, "r1"), login(server, a, "r2")
    sender = raw_login(server, b, "s")
    sender.send(chat(a.jid + "/r1", "normal one", type_=None))
    sender.send("<message to='%s/r1' id='rc1'><received xmlns='urn:xmpp:receipts' id='x'/></message>" % a.jid)
    sender.send(chat(a.jid + "/r1", "headline", type_="headline"))
    sender.send("<message to='%s/r1' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
                "</message>" % a.jid)
    got = messages(r2)
    inner = [carbon(e, "received") for e in got]
    assert all(i is not None for i in inner), [tostr(e) for e in got]
    kinds = [(i.find(q(NS_CLIENT, "body")).text if i.find(q(NS_CLIENT, "body")) is not None else "state")
             for i in inner]
    assert kinds == ["normal one", "state"], kinds
    for c in (r1, r2, sender):
        c.close()


# ---- sent ---------------------------------------------------------------------------------------

def test_sent_copy(server, accounts):
    """XEP-0280 §8: a message a client sends is copied in <sent/> to the
    account's other enabled resources, not to the sender (even with carbons
    enabled), whatever the sender's own carbons state."""
    a, b = accounts(2)
    r1, r2 = login(server, a, "r1"), login(server, a, "r2")
    quiet = login(server, a, "r3", carbons=False)
    peer = raw_login(server, b, "p")
    for sender, others in ((r1, [r2]), (quiet, [r1, r2])):
        mid = new_id("s")
        sender.send(chat(b.jid + "/p", "from " + sender.jid, mid=mid))
        assert peer.wait_for(is_msg).get("id") == mid
        for o in others:
            cp = o.wait_for(is_msg)
            assert cp.get("from") == a.jid and cp.get("to") == o.jid, tostr(cp)
            inner = carbon(cp, "sent")
            assert inner is not None and inner.get("from") == sender.jid and inner.get("to") == b.jid + "/p"
            assert inner.get("id") == mid
        assert messages(sender, 0.3) == []
    for c in (r1, r2, quiet, peer):
        c.close()


def test_message_between_own_resources(server, accounts):
    """XEP-0280 §8: a message from one resource to another of the same
    account is a <sent/> copy for the third resource only."""
    (a,) = accounts(1)
    r1, r2, r3 = login(server, a, "r1"), login(server, a, "r2"), login(server, a, "r3")
    r1.send(chat(a.jid + "/r2", "note to self"))
    assert carbon(r2.wait_for(is_msg), "sent") is None
    inner = carbon(r3.wait_for(is_msg), "sent")
    assert inner is not None and inner.get("from") == r1.jid
    assert messages(r1) == [] and messages(r2, 0.3) == [] and messages(r3, 0.3) == []
    for c in (r1, r2, r3):
        c.close()


# ---- private, no-copy ------------------------------------------------------------------------

def test_private_and_no_copy(server, accounts):
    """XEP-0280 §7: <private/> prevents sent and received copies, and the
    receiving server removes it before delivery; XEP-0334 <no-copy/> also
    prevents copies."""
    a, b = accounts(2)
    r1, r2 = login(server, a, "r1"), login(server, a, "r2")
    peer = raw_login(server, b, "p")
    r1.send(chat(b.jid + "/p", "secret out", "<private xmlns='%s'/>" % NS_CARBONS))
    got = peer.wait_for(is_msg)
    assert got.find(q(NS_CARBONS, "private")) is None, tostr(got)
    peer.send(chat(a.jid + "/r1", "secret in", "<private xmlns='%s'/>" % NS_CARBONS))
    got = r1.wait_for(is_msg)
    assert got.find(q(NS_CLIENT, "body")).text == "secret in"
    assert got.find(q(NS_CARBONS, "private")) is None, tostr(got)
    peer.send(chat(a.jid + "/r1", "hinted", "<no-copy xmlns='%s'/>" % NS_HINTS))
    assert r1.wait_for(is_msg).find(q(NS_CLIENT, "body")).text == "hinted"
    assert messages(r2) == []
    for c in (r1, r2, peer):
        c.close()


# ---- trust ---------------------------------------------------------------------------------------

FORGED = ("<message to='%s' type='chat' id='%s'><received xmlns='urn:xmpp:carbons:2'>"
          "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='bank@localhost' "
          "to='%s' type='chat'><body>send money</body></message></forwarded></received></message>")


def test_forged_carbons_are_refused(server, accounts):
    """XEP-0280 §11: a carbon that does not come from the account's own bare
    JID never reaches it: the forger gets <forbidden/>, from another account
    or from another resource of the same account."""
    a, b = accounts(2)
    r1, r2 = login(server, a, "r1"), login(server, a, "r2")
    forger = raw_login(server, b, "f")
    for src, to in ((forger, a.jid + "/r1"), (forger, a.jid), (r2, a.jid + "/r1")):
        mid = new_id("f")
        src.send(FORGED % (to, mid, to))
        err = src.wait_for(lambda e: is_msg(e) and e.get("id") == mid)
        assert err.get("type") == "error" and error_condition(err) == ("cancel", "forbidden"), tostr(err)
    assert messages(r1) == []
    assert messages(r2, 0.3) == []
    for c in (r1, r2, forger):
        c.close()


# ---- offline ---------------------------------------------------------------------------------------

def test_offline_delivery_is_not_copied(server, accounts):
    """Messages delivered from offline storage (XEP-0160) are not carbon
    copies: the enabled resource without presence, which made the account
    unavailable when they were stored, does not get them again."""
    a, b = accounts(2)
    watcher = login(server, a, "watcher", priority=None)  # bound, carbons on, no presence
    sender = raw_login(server, b, "s")
    sender.send(chat(a.jid, "stored while away"))
    sender.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost")  # after the store
    assert messages(watcher, 0.5) == []
    later = raw_login(server, a, "later")
    later.send("<presence/>")
    got = later.wait_for(lambda e: is_msg(e) and e.find(q(NS_CLIENT, "body")) is not None, timeout=scaled(5))
    assert got.find(q(NS_CLIENT, "body")).text == "stored while away"
    assert messages(watcher) == []
    for c in (watcher, sender, later):
        c.close()


# ---- a real client library ------------------------------------------------------------------------

def test_slixmpp_carbons(server, accounts):
    """slixmpp's XEP-0280 plugin enables carbons and sees received and sent
    copies from the account's bare JID."""
    import asyncio
    a, b = accounts(2)

    async def scenario():
        phone = await connect(server, a, "phone", presence=5)
        desk = await connect(server, a, "desk", presence=1)
        desk.register_plugin("xep_0280")
        got = {"received": asyncio.Queue(), "sent": asyncio.Queue()}
        desk.add_event_handler("carbon_received", lambda m: got["received"].put_nowait(m))
        desk.add_event_handler("carbon_sent", lambda m: got["sent"].put_nowait(m))
        await desk["xep_0280"].enable()
        friend = await connect(server, b, "f")
        friend.send_message(mto=a.jid, mbody="hi phone", mtype="chat")
        await phone.next_message(pred=lambda m: m["body"] == "hi phone")
        m = await asyncio.wait_for(got["received"].get(), scaled(5))
        assert m["from"] == a.jid and m["carbon_received"]["body"] == "hi phone"
        phone.send_message(mto=b.jid, mbody="hi friend", mtype="chat")
        m = await asyncio.wait_for(got["sent"].get(), scaled(5))
        assert m["carbon_sent"]["body"] == "hi friend" and str(m["carbon_sent"]["to"]) == b.jid
    run(scenario())


def test_error_for_a_copied_message_is_copied(server_factory, accounts):
    """XEP-0280 §6: an error answering a message that was copied is copied
    too (to the resources that saw the <sent/> copy); an error for a
    message that was not copied is not. The peer here is an XEP-0114
    component that bounces what it gets."""
    from conftest import free_port
    from xmpptest import raw_component
    gw, secret = "gw.localhost", "carbons-gw-secret"
    srv = server_factory({"components": {gw: {"secret": secret}},
                          "modules": {"presence": True, "carbons": True}}, start=False)
    srv.comp_port = free_port()
    srv.config["listeners"].append({"type": "component", "address": "127.0.0.1", "port": srv.comp_port})
    srv.write_config()
    srv.start()
    (a,) = accounts(1, srv=srv)
    comp = raw_component(srv.comp_port, gw, secret)
    r1, r2 = login(srv, a, "r1"), login(srv, a, "r2")

    def bounce(mid):
        m = comp.wait_for(lambda e: e.tag.endswith("}message") and e.get("id") == mid)
        comp.send("<message type='error' id='%s' from='%s' to='%s'><error type='cancel'>"
                  "<item-not-found xmlns='%s'/></error></message>" % (mid, m.get("to"), m.get("from"), NS_STANZA_ERR))

    r1.send(chat("bot@" + gw, "copied", mid="c1"))
    assert carbon(r2.wait_for(is_msg), "sent").get("id") == "c1"
    bounce("c1")
    assert r1.wait_for(is_msg).get("type") == "error"
    inner = carbon(r2.wait_for(is_msg), "received")
    assert inner is not None and inner.get("type") == "error" and inner.get("id") == "c1"
    r1.send(chat("bot@" + gw, "private", "<private xmlns='%s'/>" % NS_CARBONS, mid="p1"))
    bounce("p1")
    assert r1.wait_for(is_msg).get("type") == "error"
    assert messages(r2) == []
    for c in (r1, r2, comp):
        c.close()


def test_reload_keeps_enabled_sessions(server, accounts):
    """xmppctl module reload carbons: sessions that enabled carbons still
    get copies."""
    a, b = accounts(2)
    r1, r2 = login(server, a, "r1"), login(server, a, "r2")
    r = server.ctl("module", "reload", "carbons")
    assert r.returncode == 0, r.stdout + r.stderr
    sender = raw_login(server, b, "s")
    sender.send(chat(a.jid + "/r1", "after the reload"))
    assert r1.wait_for(is_msg).find(q(NS_CLIENT, "body")).text == "after the reload"
    assert carbon(r2.wait_for(is_msg), "received") is not None
    for c in (r1, r2, sender):
        c.close()
