"""XEP-0060 publish-subscribe service at its own domain (mod_pubsub), served
through xmppd_domain_serve: discovery, node creation and ownership,
affiliations, subscriptions and their options, persistence. Raw clients for
the exact errors, slixmpp's xep_0060 plugin for a client library's view."""

import asyncio

import pytest

from pep_helpers import (NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PUBSUB, NS_PUBSUB_EVENT, NS_PUBSUB_OWNER,
                         events, form, iq, item_ids, items, login, publish, pubsub_error, pubsub_iq,
                         wait_event)
from xmpptest import NS_CLIENT, connect, error_condition, q, run, tostr

PS = "pubsub.localhost"
FORM_NODE_CONFIG = NS_PUBSUB + "#node_config"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"disco": True, "ping": True,
                        "pubsub": {"admins": ["admin@localhost"], "max_nodes": 50,
                                   "max_items": 5}}}


def create(c, node, config=None):
    body = "<create node='%s'/>" % node
    if config:
        body += "<configure>%s</configure>" % form(FORM_NODE_CONFIG, config)
    return pubsub_iq(c, body, to=PS)


def test_xep0030_service_listed_and_described(server, accounts):
    """XEP-0030 / XEP-0060 §5.1: the host's disco#items lists the service;
    its disco#info has identity pubsub/service and the pubsub features."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = iq(c, "<query xmlns='%s'/>" % NS_DISCO_ITEMS, to="localhost")
        assert PS in [i.get("jid") for i in r.iter(q(NS_DISCO_ITEMS, "item"))], tostr(r)
        r = iq(c, "<query xmlns='%s'/>" % NS_DISCO_INFO, to=PS)
        ids = [(i.get("category"), i.get("type")) for i in r.iter(q(NS_DISCO_INFO, "identity"))]
        assert ids == [("pubsub", "service")]
        feats = {f.get("var") for f in r.iter(q(NS_DISCO_INFO, "feature"))}
        for f in ("", "#create-nodes", "#publish", "#subscribe", "#subscription-options",
                  "#modify-affiliations", "#manage-subscriptions", "#retrieve-items"):
            assert NS_PUBSUB + f in feats, f
        assert NS_PUBSUB + "#access-presence" not in feats


def test_rfc6120_8_3_other_addresses_at_the_service(server, accounts):
    """RFC 6120 §8.3.3.19: an IQ to a JID at the service's domain that is
    no entity, an unknown IQ payload and a chat message get
    <service-unavailable/>."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = iq(c, "<query xmlns='%s'/>" % NS_DISCO_INFO, to="someone@" + PS)
        assert error_condition(r) == ("cancel", "service-unavailable")
        r = iq(c, "<query xmlns='jabber:iq:version'/>", to=PS)
        assert error_condition(r) == ("cancel", "service-unavailable")
        c.send("<message to='%s' type='chat' id='m1'><body>hi</body></message>" % PS)
        m = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
        assert m.get("type") == "error" and error_condition(m)[1] == "service-unavailable"


def test_xep0060_8_1_create_owner_and_errors(server, accounts):
    """XEP-0060 §8.1: a local account creates a node and owns it (§8.9);
    the same name again is <conflict/>; an instant node gets a generated
    name (§8.1.2); another account may not configure or delete it
    (<forbidden/>); a node with the presence access model is not offered."""
    a, b = accounts(2)
    with login(server, a) as ca, login(server, b) as cb:
        assert create(ca, "news-a").get("type") == "result"
        assert pubsub_error(create(cb, "news-a"))[:2] == ("cancel", "conflict")
        r = pubsub_iq(ca, "<create/>", to=PS)
        c = r.find(".//" + q(NS_PUBSUB, "create"))
        assert c is not None and c.get("node"), tostr(r)
        r = pubsub_iq(cb, "<delete node='news-a'/>", to=PS, owner=True)
        assert pubsub_error(r)[1] == "forbidden"
        r = pubsub_iq(cb, "<configure node='news-a'/>", type_="get", to=PS, owner=True)
        assert pubsub_error(r)[1] == "forbidden"
        r = create(ca, "news-p", {"pubsub#access_model": "presence"})
        assert pubsub_error(r) == ("modify", "not-acceptable", "unsupported-access-model")
        r = pubsub_iq(ca, "<affiliations node='news-a'/>", type_="get", to=PS, owner=True)
        assert [(x.get("jid"), x.get("affiliation")) for x in r.iter(q(NS_PUBSUB_OWNER, "affiliation"))] == [
            (a.jid, "owner")]


def test_xep0060_4_1_affiliations_publisher_outcast_member(server, accounts):
    """XEP-0060 §4.1, §8.9.2: a publisher may publish, a publish-only
    affiliate may publish but not read, an outcast may neither subscribe nor
    read (<forbidden/>), a whitelist node admits members only; the last
    owner cannot go (<not-acceptable/>)."""
    a, b, c, d = accounts(4)
    with login(server, a) as ca, login(server, b) as cb, login(server, c) as cc, login(server, d) as cd:
        assert create(ca, "aff").get("type") == "result"
        assert pubsub_error(publish(cb, "aff", "<e xmlns='x'/>", to=PS))[1] == "forbidden"
        r = pubsub_iq(ca, "<affiliations node='aff'><affiliation jid='%s' affiliation='publisher'/>"
                          "<affiliation jid='%s' affiliation='publish-only'/><affiliation jid='%s' "
                          "affiliation='outcast'/></affiliations>" % (b.jid, c.jid, d.jid),
                      to=PS, owner=True)
        assert r.get("type") == "result", tostr(r)
        assert publish(cb, "aff", "<e xmlns='x'>b</e>", "b1", to=PS).get("type") == "result"
        assert publish(cc, "aff", "<e xmlns='x'>c</e>", "c1", to=PS).get("type") == "result"
        assert pubsub_error(items(cc, "aff", to=PS))[1] == "forbidden"
        assert pubsub_error(items(cd, "aff", to=PS))[1] == "forbidden"
        r = pubsub_iq(cd, "<subscribe node='aff' jid='%s'/>" % cd.jid, to=PS)
        assert pubsub_error(r)[1] == "forbidden"
        assert item_ids(items(cb, "aff", to=PS)) == ["b1", "c1"]
        r = pubsub_iq(ca, "<affiliations node='aff'><affiliation jid='%s' affiliation='none'/>"
                          "</affiliations>" % a.jid, to=PS, owner=True)
        assert pubsub_error(r)[1] == "not-acceptable"
        assert create(ca, "wl", {"pubsub#access_model": "whitelist"}).get("type") == "result"
        assert pubsub_error(items(cb, "wl", to=PS)) == ("cancel", "not-allowed", "closed-node")
        r = pubsub_iq(ca, "<affiliations node='wl'><affiliation jid='%s' affiliation='member'/>"
                          "</affiliations>" % b.jid, to=PS, owner=True)
        assert r.get("type") == "result"
        assert item_ids(items(cb, "wl", to=PS)) == []


def test_xep0060_6_subscribe_notify_options_and_owner_management(server, accounts):
    """XEP-0060 §6.1, §7.1.2.1, §6.3, §8.8: subscribers hear of
    publications (with the publisher, as a service exposes it), one with
    delivery off does not; the owner lists subscriptions and removes one;
    max_items keeps the newest."""
    a, b, c = accounts(3)
    with login(server, a) as ca, login(server, b) as cb, login(server, c) as cc:
        assert create(ca, "feed", {"pubsub#max_items": "3"}).get("type") == "result"
        for cl in (cb, cc):
            r = pubsub_iq(cl, "<subscribe node='feed' jid='%s'/>" % cl.jid, to=PS)
            assert r.find(".//" + q(NS_PUBSUB, "subscription")).get("subscription") == "subscribed"
        r = pubsub_iq(cc, "<options node='feed' jid='%s'>%s</options>" % (
            cc.jid, form(NS_PUBSUB + "#subscribe_options", {"pubsub#deliver": "0"})), to=PS)
        assert r.get("type") == "result", tostr(r)
        assert publish(ca, "feed", "<e xmlns='x'>1</e>", "1", to=PS).get("type") == "result"
        m = wait_event(cb, "feed")
        assert m.get("from") == PS
        it = m.find(".//" + q(NS_PUBSUB_EVENT, "item"))
        assert it.get("id") == "1" and it.get("publisher") == a.jid
        assert events(cc, node="feed") == []
        r = pubsub_iq(cc, "<options node='feed' jid='%s'>%s</options>" % (
            cc.jid, form(NS_PUBSUB + "#subscribe_options", {"pubsub#bogus": "0"})), to=PS)
        assert pubsub_error(r) == ("modify", "bad-request", "invalid-options")
        r = pubsub_iq(ca, "<subscriptions node='feed'/>", type_="get", to=PS, owner=True)
        subs = sorted(s.get("jid") for s in r.iter(q(NS_PUBSUB_OWNER, "subscription")))
        assert subs == sorted([cb.jid, cc.jid])
        r = pubsub_iq(ca, "<subscriptions node='feed'><subscription jid='%s' subscription='none'/>"
                          "</subscriptions>" % cb.jid, to=PS, owner=True)
        assert r.get("type") == "result", tostr(r)
        for i in range(2, 6):
            assert publish(ca, "feed", "<e xmlns='x'>%d</e>" % i, str(i), to=PS).get("type") == "result"
        assert events(cb, node="feed") == []
        assert item_ids(items(cb, "feed", to=PS)) == ["3", "4", "5"]


def test_xep0060_admins_own_every_node_and_service_survives_restart(server, accounts):
    """Configured admins own every node (they may delete another's); nodes,
    items and affiliations are stored and come back after a restart."""
    (a,) = accounts(1)
    server.adduser("admin@localhost", "admin-pass") if not getattr(server, "_admin", False) else None
    server._admin = True
    with login(server, a) as ca:
        assert create(ca, "kept").get("type") == "result"
        assert create(ca, "doomed").get("type") == "result"
        assert publish(ca, "kept", "<e xmlns='x'>k</e>", "k", to=PS).get("type") == "result"
    server.restart()
    with login(server, a) as ca:
        assert item_ids(items(ca, "kept", to=PS)) == ["k"]
    from conftest import Account
    admin = Account("admin", "admin-pass")
    with login(server, admin) as cz:
        r = pubsub_iq(cz, "<delete node='doomed'/>", to=PS, owner=True)
        assert r.get("type") == "result", tostr(r)
        assert pubsub_error(items(cz, "doomed", to=PS))[1] == "item-not-found"


def test_xep0060_with_slixmpp_plugin(server, accounts):
    """XEP-0060 through slixmpp's xep_0060 plugin: create with a
    configuration, publish, subscribe, receive the event, read items."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a)
        cb = await connect(server, b, presence=0)  # a bare-JID subscription reaches available resources
        for cl in (ca, cb):
            cl.register_plugin("xep_0060")
        got = asyncio.get_event_loop().create_future()
        cb.add_event_handler("pubsub_publish", lambda m: got.done() or got.set_result(m))
        cfg = ca["xep_0004"].make_form("submit")
        cfg.add_field("FORM_TYPE", value=FORM_NODE_CONFIG, ftype="hidden")
        cfg.add_field("pubsub#title", value="Slixmpp feed")
        await ca["xep_0060"].create_node(PS, "slix", config=cfg)
        await cb["xep_0060"].subscribe(PS, "slix")
        from slixmpp.xmlstream import ET
        payload = ET.fromstring("<entry xmlns='http://www.w3.org/2005/Atom'><title>hi</title></entry>")
        await ca["xep_0060"].publish(PS, "slix", id="e1", payload=payload)
        m = await asyncio.wait_for(got, 5)
        assert m["pubsub_event"]["items"]["node"] == "slix"
        assert m["pubsub_event"]["items"]["item"]["id"] == "e1"
        res = await cb["xep_0060"].get_items(PS, "slix")
        assert [i["id"] for i in res["pubsub"]["items"]] == ["e1"]
        cfg = await ca["xep_0060"].get_node_config(PS, "slix")
        values = cfg["pubsub_owner"]["configure"]["form"].get_values()
        assert values["pubsub#title"] == "Slixmpp feed"

    run(scenario())
