"""XEP-0352 Client State Indication (mod_csi), with stream management.

An inactive client gets what it needs at once (messages with a body, IQs,
subscription requests), and the rest (presence, chat states, receipts)
later, in order, with only the newest presence and chat state of each
sender, when it becomes active or something urgent comes.
"""

import time

import pytest

from xmpptest import (NS_CLIENT, RawClient, connect, new_id, q, raw_login, run, scaled, tostr)

NS_CSI = "urn:xmpp:csi:0"
NS_SM = "urn:xmpp:sm:3"
NS_STATES = "http://jabber.org/protocol/chatstates"
MAX_QUEUE = 20


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "offline": True, "carbons": True,
                        "csi": {"max_queue": MAX_QUEUE},
                        "smacks": {"resume_timeout": "20s"}}}


INACTIVE = "<inactive xmlns='%s'/>" % NS_CSI
ACTIVE = "<active xmlns='%s'/>" % NS_CSI


def stanzas(c, period=None):
    return c.quiet(period, pred=lambda e: e.tag in (q(NS_CLIENT, "message"), q(NS_CLIENT, "presence"),
                                                      q(NS_CLIENT, "iq")))


def pres(to, show, extra=""):
    return "<presence to='%s'><show>%s</show>%s</presence>" % (to, show, extra)


def state(to, st):
    return "<message to='%s' type='chat'><%s xmlns='%s'/></message>" % (to, st, NS_STATES)


def summary(e):
    """('presence', from, show) / ('message', from, body or chat state)."""
    kind = e.tag.split("}")[1]
    if kind == "presence":
        show = e.find(q(NS_CLIENT, "show"))
        return (kind, e.get("from"), show.text if show is not None else e.get("type"))
    if kind == "message":
        body = e.find(q(NS_CLIENT, "body"))
        if body is not None:
            return (kind, e.get("from"), body.text)
        st = [c.tag.split("}")[1] for c in e if c.tag.startswith("{%s}" % NS_STATES)]
        return (kind, e.get("from"), st[0] if st else tostr(e))
    return (kind, e.get("from"), e.get("type"))


def sync(c):
    """A round trip: everything the client sent before was handled."""
    c.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost")


def test_feature_after_authentication(server, accounts):
    """XEP-0352 §5.1: <csi/> is advertised after authentication, not
    before."""
    (a,) = accounts(1)
    c = RawClient(server.port)
    c.open_stream()
    c.starttls()
    f = c.open_stream()
    assert q(NS_CSI, "csi") not in f["children"]
    assert c.auth_plain(a.user, a.password).ok
    f = c.open_stream()
    assert q(NS_CSI, "csi") in f["children"], f["children"]
    c.close()


def test_presence_held_newest_per_contact(server, accounts):
    """XEP-0352 §4.2: while inactive, presence updates wait; only the newest
    of each contact's full JID is kept, and <active/> sends them in the
    order of those newest updates (nothing else is sent: no reply to CSI
    nonzas)."""
    a, b, c = accounts(3)
    me = raw_login(server, a, "phone")
    me.send(INACTIVE)
    sync(me)
    bc, cc = raw_login(server, b, "b"), raw_login(server, c, "c")
    for show in ("away", "xa", "dnd"):
        bc.send(pres(me.jid, show))
    cc.send(pres(me.jid, "chat"))
    bc.send(pres(me.jid, "away"))
    sync(bc)
    sync(cc)
    assert stanzas(me) == []
    me.send(ACTIVE)
    got = [summary(e) for e in stanzas(me)]
    assert got == [("presence", cc.jid, "chat"), ("presence", bc.jid, "away")], got
    # active again: presence goes at once
    bc.send(pres(me.jid, "xa"))
    assert summary(me.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence"))) == ("presence", bc.jid, "xa")
    for x in (me, bc, cc):
        x.close()


def test_urgent_stanza_flushes_in_order(server, accounts):
    """XEP-0352 §4.2: chat states are held (the newest per sender kept),
    a message with a body makes everything held go first, in order, then
    itself; an IQ does the same."""
    a, b = accounts(2)
    me = raw_login(server, a, "phone")
    me.send(INACTIVE)
    sync(me)
    bc = raw_login(server, b, "b")
    bc.send(state(me.jid, "composing"))
    bc.send(pres(me.jid, "away"))
    bc.send(state(me.jid, "paused"))
    sync(bc)
    assert stanzas(me) == []
    bc.send("<message to='%s' type='chat'><body>wake up</body><active xmlns='%s'/></message>"
            % (me.jid, NS_STATES))
    got = [summary(e) for e in stanzas(me)]
    assert got == [("presence", bc.jid, "away"), ("message", bc.jid, "paused"),
                   ("message", bc.jid, "wake up")], got
    bc.send(pres(me.jid, "dnd"))
    sync(bc)
    assert stanzas(me, 0.5) == []
    iid = new_id("v")
    bc.send("<iq type='get' id='%s' to='%s'><query xmlns='jabber:iq:version'/></iq>" % (iid, me.jid))
    got = stanzas(me)
    assert [summary(e)[0] for e in got] == ["presence", "iq"] and got[1].get("id") == iid
    for x in (me, bc):
        x.close()


def test_queue_limit_flushes(server, accounts):
    """Bounded: when max_queue stanzas wait, they are all sent; receipts
    are held but never replace each other."""
    a, b = accounts(2)
    me = raw_login(server, a, "phone")
    me.send(INACTIVE)
    sync(me)
    bc = raw_login(server, b, "b")
    for i in range(MAX_QUEUE + 5):
        bc.send("<message to='%s' id='r%d'><received xmlns='urn:xmpp:receipts' id='x%d'/></message>"
                % (me.jid, i, i))
    sync(bc)
    got = stanzas(me)
    assert [e.get("id") for e in got] == ["r%d" % i for i in range(MAX_QUEUE)]
    me.send(ACTIVE)
    got = stanzas(me)
    assert [e.get("id") for e in got] == ["r%d" % i for i in range(MAX_QUEUE, MAX_QUEUE + 5)]
    for x in (me, bc):
        x.close()


def test_active_flushes_before_next_request(server, accounts):
    """XEP-0352 §6.1: what <active/> releases is on the wire before the
    answer to the client's next request."""
    a, b = accounts(2)
    me = raw_login(server, a, "phone")
    me.send(INACTIVE)
    sync(me)
    bc = raw_login(server, b, "b")
    bc.send(pres(me.jid, "away"))
    sync(bc)
    iid = new_id("p")
    me.send(ACTIVE + "<iq type='get' id='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>" % iid)
    got = stanzas(me)
    assert [summary(e)[0] for e in got] == ["presence", "iq"] and got[1].get("id") == iid
    for x in (me, bc):
        x.close()


def test_carbons_of_chat_states_wait(server, accounts):
    """A carbon (XEP-0280) is as urgent as the message it carries: copies
    of chat states wait, copies of messages with a body go at once."""
    a, b = accounts(2)
    me = raw_login(server, a, "phone")
    me.iq("<enable xmlns='urn:xmpp:carbons:2'/>", type_="set")
    me.send(INACTIVE)
    sync(me)
    desk = raw_login(server, a, "desk")
    bc = raw_login(server, b, "b")
    desk.send(state(bc.jid, "composing"))
    sync(desk)
    assert stanzas(me, 0.5) == []
    desk.send("<message to='%s' type='chat'><body>typed</body></message>" % bc.jid)
    got = stanzas(me)
    assert len(got) == 2 and all(e.find("{urn:xmpp:carbons:2}sent") is not None for e in got)
    for x in (me, desk, bc):
        x.close()


def test_hibernation_moves_held_stanzas_to_sm_queue(server, accounts):
    """With XEP-0198: when the connection of an inactive client is lost,
    what CSI held goes into stream management's queue, in order, and a
    resumption gets it back after <resumed/> (nothing else came meanwhile
    to push it out); the resumed session is still inactive."""
    a, b = accounts(2)
    me = raw_login(server, a, "phone")
    me.send("<enable xmlns='%s' resume='true'/>" % NS_SM)
    previd = me.wait_for(lambda e: e.tag == q(NS_SM, "enabled")).get("id")
    me.send(INACTIVE)
    bc = raw_login(server, b, "b")
    bc.send(pres(me.jid, "away"))
    bc.send(state(me.jid, "composing"))
    bc.send(pres(me.jid, "xa"))
    sync(bc)
    me.send("<r xmlns='%s'/>" % NS_SM)
    h = int(me.wait_for(lambda e: e.tag == q(NS_SM, "a")).get("h"))
    assert stanzas(me, 0.3) == []
    me.sock.close()  # lost, not closed
    time.sleep(0.5)
    n = RawClient(server.port)
    n.login(a.user, a.password, bind=False)
    n.send("<resume xmlns='%s' previd='%s' h='0'/>" % (NS_SM, previd))
    el = n.wait_for(lambda e: e.tag in (q(NS_SM, "resumed"), q(NS_SM, "failed")))
    assert el.tag == q(NS_SM, "resumed"), tostr(el)
    assert int(el.get("h")) == h
    got = [summary(e) for e in stanzas(n)]
    assert got == [("message", bc.jid, "composing"), ("presence", bc.jid, "xa")], got
    bc.send(pres(me.jid, "dnd"))
    sync(bc)
    assert stanzas(n, 0.5) == []
    n.send(ACTIVE)
    assert [summary(e) for e in stanzas(n)] == [("presence", bc.jid, "dnd")]
    for x in (n, bc):
        x.close()


def test_slixmpp_client_state_indication(server, accounts):
    """slixmpp's XEP-0352 plugin sees the feature and its <inactive/> holds
    a contact's presence until <active/>."""
    import asyncio
    a, b = accounts(2)

    async def scenario():
        me = await connect(server, a, "sli", plugins=["xep_0352"])
        assert me["xep_0352"].enabled
        me["xep_0352"].send_inactive()
        await asyncio.sleep(0.2)
        other = await connect(server, b, "o")
        other.send_presence(pto=str(me.boundjid), pshow="away")
        await asyncio.sleep(scaled(0.5))
        assert me.presences.empty()
        me["xep_0352"].send_active()
        p = await me.next_presence(pred=lambda p: p["from"] == other.boundjid)
        assert p["show"] == "away"
    run(scenario())


def test_reload_keeps_state_and_held_stanzas(server, accounts):
    """xmppctl module reload csi: an inactive client stays inactive and
    what was held before the reload comes, in order, with what was held
    after it, on <active/>."""
    a, b = accounts(2)
    me = raw_login(server, a, "phone")
    me.send(INACTIVE)
    sync(me)
    bc = raw_login(server, b, "b")
    bc.send(pres(me.jid, "away"))
    sync(bc)
    r = server.ctl("module", "reload", "csi")
    assert r.returncode == 0, r.stdout + r.stderr
    bc.send(state(me.jid, "composing"))
    sync(bc)
    assert stanzas(me, 0.5) == []
    me.send(ACTIVE)
    got = [summary(e) for e in stanzas(me)]
    assert got == [("presence", bc.jid, "away"), ("message", bc.jid, "composing")], got
    for x in (me, bc):
        x.close()
