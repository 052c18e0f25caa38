"""Bind2 (XEP-0386 §2.2) with the message archive (XEP-0313, mod_mam) and
offline storage (XEP-0160, mod_offline): what <bound/> reports unasked and
which offline messages a Bind2 session is not flooded with.

Raw-socket tests (slixmpp 1.8 speaks no SASL2).
"""

import pytest

from xmpptest import NS_BIND2, NS_CLIENT, NS_STREAM, RawClient, q, scaled, tostr

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
UA = "<user-agent id='%s'><software>xmpptest</software></user-agent>"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "offline": True, "mam": True}}


def bind2_login(server, account, dev="phone", inner=""):
    """SASL2 PLAIN with Bind2; returns the client and the <bound/> element."""
    c = RawClient(server.port)
    c.secure_stream()
    res = c.sasl2_plain(account.user, account.password,
                        UA % dev + "<bind xmlns='%s'><tag>t</tag>%s</bind>" % (NS_BIND2, inner))
    assert res.ok, res
    bound = res.element.find(q(NS_BIND2, "bound"))
    assert bound is not None, tostr(res.element)
    f = c.next_element()
    assert f.tag == q(NS_STREAM, "features"), tostr(f)
    return c, bound


def legacy(server, account, resource):
    c = RawClient(server.port)
    c.login(account.user, account.password, resource=resource)
    return c


def chat(sender, to, body):
    sender.send("<message to='%s' type='chat'><body>%s</body></message>" % (to, body))


def stanza_id(msg, by):
    for sid in msg.findall(q(NS_SID, "stanza-id")):
        if sid.get("by") == by:
            return sid.get("id")
    return None


def mam_ids(c):
    """Every item id of the account's archive, oldest first."""
    c.send("<iq type='set' id='mq'><query xmlns='%s' queryid='qq'/></iq>" % NS_MAM)
    ids = []
    while True:
        el = c.next_element()
        if el.tag == q(NS_CLIENT, "iq") and el.get("id") == "mq":
            assert el.get("type") == "result", tostr(el)
            return ids
        r = el.find(q(NS_MAM, "result"))
        if r is not None:
            ids.append(r.get("id"))


def test_xep0386_2_2_bound_has_empty_metadata_for_empty_archive(server, accounts):
    """XEP-0386 §2.2: <bound/> carries XEP-0313's <metadata/>; an account
    with an empty archive gets an empty one (XEP-0313 archive metadata)."""
    (a,) = accounts(1)
    c, bound = bind2_login(server, a)
    md = bound.find(q(NS_MAM, "metadata"))
    assert md is not None, tostr(bound)
    assert len(md) == 0, tostr(md)
    c.close()


def test_xep0386_2_2_bound_metadata_first_and_last_archive_ids(server, accounts):
    """XEP-0386 §2.2: the <metadata/> in <bound/> names the archive's first
    and last items (<start/>, <end/> with id and XEP-0082 timestamp), the
    same ids the messages were stamped with (XEP-0359) and a MAM query
    returns; the <success/> follows the inline answers (SM <enabled/>)."""
    a, b = accounts(2)
    recv = legacy(server, a, "desk")
    recv.send_presence()
    sender = legacy(server, b, "x")
    ids = []
    for i in range(3):
        chat(sender, a.jid, "m%d" % i)
        m = recv.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.find(q(NS_CLIENT, "body")) is not None)
        ids.append(stanza_id(m, a.jid))
    assert all(ids), ids
    c, bound = bind2_login(server, a, dev="tablet")
    md = bound.find(q(NS_MAM, "metadata"))
    assert md is not None, tostr(bound)
    start, end = md.find(q(NS_MAM, "start")), md.find(q(NS_MAM, "end"))
    assert start.get("id") == ids[0] and end.get("id") == ids[-1], tostr(md)
    for e in (start, end):
        assert e.get("timestamp", "").endswith("Z") and "T" in e.get("timestamp"), tostr(e)
    assert mam_ids(c) == ids
    for x in (c, recv, sender):
        x.close()


def test_xep0386_2_2_archived_offline_messages_not_flooded(server, accounts):
    """XEP-0386 §2.2: a Bind2 session does not get the offline messages the
    archive holds (it reads them through MAM): none arrive after its
    initial presence, the MAM query has them, and they are gone from
    offline storage (a later RFC 6120 login gets none either)."""
    a, b = accounts(2)
    sender = legacy(server, b, "x")
    for i in range(3):
        chat(sender, a.jid, "offline %d" % i)
    sender.quiet(scaled(0.5))
    c, bound = bind2_login(server, a)
    end = bound.find(q(NS_MAM, "metadata") + "/" + q(NS_MAM, "end"))
    assert end is not None, tostr(bound)
    c.send_presence()
    assert c.quiet(scaled(1.0), pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []
    assert len(mam_ids(c)) == 3
    assert mam_ids(c)[-1] == end.get("id")
    c.close()
    later = legacy(server, a, "later")
    later.send_presence()
    assert later.quiet(scaled(1.0), pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []
    later.close()
    sender.close()


def test_xep0386_offline_messages_not_archived_are_delivered(server, accounts):
    """XEP-0386 §2.2 gives the reason for not sending offline messages (MAM
    provides them): a message the account's MAM preferences keep out of
    the archive (XEP-0313 preferences, <never/>) is delivered to the Bind2
    session at its initial presence, so nothing is lost."""
    a, b, d = accounts(3)
    setup = legacy(server, a, "setup")
    r = setup.iq("<prefs xmlns='%s' default='always'><always/><never><jid>%s</jid></never></prefs>"
                 % (NS_MAM, b.jid), type_="set")
    assert r.get("type") == "result", tostr(r)
    setup.close()
    sb, sd = legacy(server, b, "x"), legacy(server, d, "x")
    chat(sb, a.jid, "not archived")
    chat(sd, a.jid, "archived")
    sb.quiet(scaled(0.5))
    c, _ = bind2_login(server, a)
    c.send_presence()
    m = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    assert m.findtext(q(NS_CLIENT, "body")) == "not archived"
    assert c.quiet(scaled(1.0), pred=lambda e: e.tag == q(NS_CLIENT, "message")) == []
    for x in (c, sb, sd):
        x.close()


def test_rfc6120_login_still_gets_offline_messages(server, accounts):
    """XEP-0160 unchanged for RFC 6120 clients: with MAM loaded, an ordinary
    login's initial presence still delivers the stored messages."""
    a, b = accounts(2)
    sender = legacy(server, b, "x")
    chat(sender, a.jid, "stored")
    sender.quiet(scaled(0.5))
    c = legacy(server, a, "old")
    c.send_presence()
    m = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    assert m.findtext(q(NS_CLIENT, "body")) == "stored"
    c.close()
    sender.close()


def test_xep0386_without_mam_no_metadata_and_offline_flood(server_factory, accounts):
    """Without mod_mam there is no archive: <bound/> has no <metadata/> and
    a Bind2 session gets its offline messages at initial presence."""
    srv = server_factory({"modules": {"roster": True, "presence": True, "offline": True}})
    a, b = accounts(2, srv=srv)
    sender = legacy(srv, b, "x")
    chat(sender, a.jid, "kept for you")
    sender.quiet(scaled(0.5))
    c, bound = bind2_login(srv, a)
    assert bound.find(q(NS_MAM, "metadata")) is None, tostr(bound)
    c.send_presence()
    m = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
    assert m.findtext(q(NS_CLIENT, "body")) == "kept for you"
    c.close()
    sender.close()


def test_xep0386_client_gone_while_success_is_held(server, accounts):
    """The <success/> held while the archive is read (xmppd_bind2_hold):
    clients that send their Bind2 request and drop the connection at once,
    over and over, leave the server serving (under the sanitizers: without
    a leak or a use after free), and the next Bind2 login gets its
    <metadata/>."""
    (a,) = accounts(1)
    for i in range(20):
        c = RawClient(server.port)
        c.secure_stream()
        c.sasl2_authenticate("PLAIN", ("\0%s\0%s" % (a.user, a.password)).encode(),
                             UA % ("gone%d" % i) + "<bind xmlns='%s'/>" % NS_BIND2)
        c.close()
    c, bound = bind2_login(server, a)
    assert bound.find(q(NS_MAM, "metadata")) is not None, tostr(bound)
    c.close()
