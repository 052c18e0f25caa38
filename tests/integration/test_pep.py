"""XEP-0163 Personal Eventing Protocol on XEP-0060, with XEP-0223
publish-options, through mod_pep (and mod_caps for +notify filters).

Raw clients where the exact stanzas matter (errors, addressing), slixmpp's
xep_0060/xep_0163 plugins where a real client library is the point."""

import asyncio
import time

import pytest

from pep_helpers import (NS_DATA, NS_DELAY, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PUBSUB, NS_PUBSUB_EVENT,
                         NS_PUBSUB_OWNER, befriend, caps_presence, config_fields, events, form, interested, iq,
                         item_ids, items, login, publish, pubsub_error, pubsub_iq, sync, wait_event)
from xmpptest import NS_CLIENT, connect, error_condition, q, run, tostr

TUNE = "http://jabber.org/protocol/tune"
FORM_NODE_CONFIG = NS_PUBSUB + "#node_config"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "disco": True, "caps": True, "ping": True,
                        "pep": {"max_nodes": 8, "max_items": 20, "max_item_size": "4k",
                                "max_total_items": 30}}}


def tune(title):
    return "<tune xmlns='%s'><title>%s</title></tune>" % (TUNE, title)


def test_xep0163_3_publish_autocreates_and_owner_reads(server, accounts):
    """XEP-0163 §3 / XEP-0060 §7.1.4: a publication to a missing node
    creates it (auto-create); the result names the generated item id; the
    owner reads it back (§6.5)."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = publish(c, TUNE, tune("Finzi"))
        assert r.get("type") == "result", tostr(r)
        item = r.find("%s/%s/%s" % (q(NS_PUBSUB, "pubsub"), q(NS_PUBSUB, "publish"), q(NS_PUBSUB, "item")))
        assert item is not None and item.get("id")
        r = items(c, TUNE)
        assert item_ids(r) == [item.get("id")]


def test_xep0163_4_contacts_with_interest_notified(server, accounts):
    """XEP-0163 §4: a contact sharing presence whose caps announce
    NODE+notify gets the event from the owner's bare JID as a headline; a
    contact without the interest and a stranger get nothing; the owner's
    own interested resource gets it too."""
    a, b, c, d = accounts(4)
    befriend(server, a, b)
    befriend(server, a, c)
    with login(server, a, "pub") as ca, login(server, a, "own") as ca2, \
            login(server, b) as cb, login(server, c) as cc, login(server, d) as cd:
        caps_presence(ca2, [TUNE + "+notify"])
        caps_presence(cb, [TUNE + "+notify"])
        caps_presence(cc, ["urn:example:other+notify"])
        caps_presence(cd, [TUNE + "+notify"])
        for x in (ca2, cb, cc, cd):
            sync(x)
        r = publish(ca, TUNE, tune("Introduction"), item_id="current")
        assert r.get("type") == "result", tostr(r)
        for x in (cb, ca2):
            m = wait_event(x, TUNE)
            assert m.get("from") == a.jid
            assert m.get("type") == "headline"
            it = m.find("%s/%s/%s" % (q(NS_PUBSUB_EVENT, "event"), q(NS_PUBSUB_EVENT, "items"),
                                      q(NS_PUBSUB_EVENT, "item")))
            assert it.get("id") == "current"
            assert it.find(q(TUNE, "tune")) is not None
        assert events(cc, node=TUNE) == []
        assert events(cd, node=TUNE) == []


def test_xep0163_4_3_4_last_item_on_initial_presence(server, accounts):
    """XEP-0163 §4.3.4: a contact's newly available resource with the
    interest gets the last published item, with a XEP-0203 delay."""
    a, b = accounts(2)
    befriend(server, a, b)
    with login(server, a) as ca:
        assert publish(ca, TUNE, tune("old"), item_id="1").get("type") == "result"
        assert publish(ca, TUNE, tune("new"), item_id="2").get("type") == "result"
    with login(server, b) as cb:
        caps_presence(cb, [TUNE + "+notify"])
        m = wait_event(cb, TUNE)
        assert m.get("from") == a.jid
        it = m.find(".//" + q(NS_PUBSUB_EVENT, "item"))
        assert it.get("id") == "2"
        assert m.find(q(NS_DELAY, "delay")) is not None
        assert events(cb, node=TUNE) == []


def test_xep0060_6_5_presence_access_refuses_strangers(server, accounts):
    """XEP-0060 §6.5.9.? / XEP-0163 §5: the default access model is
    presence: a stranger's item retrieval is not-authorized with
    presence-subscription-required; a contact reads."""
    a, b, d = accounts(3)
    befriend(server, a, b)
    with login(server, a) as ca:
        assert publish(ca, TUNE, tune("x")).get("type") == "result"
    with login(server, d) as cd:
        assert pubsub_error(items(cd, TUNE, to=a.jid)) == (
            "auth", "not-authorized", "presence-subscription-required")
    with login(server, b) as cb:
        assert len(item_ids(items(cb, TUNE, to=a.jid))) == 1


# ---- access models (XEP-0060 §4.5, XEP-0163 §5) ------------------------------------------

def test_xep0060_4_5_open_access_anyone_reads(server, accounts):
    """XEP-0060 §4.5 open: anyone may retrieve the items."""
    a, d = accounts(2)
    with login(server, a) as ca:
        r = publish(ca, "urn:example:open", "<x xmlns='urn:example:open'/>", item_id="i1",
                    options={"pubsub#access_model": "open"})
        assert r.get("type") == "result", tostr(r)
    with login(server, d) as cd:
        assert item_ids(items(cd, "urn:example:open", to=a.jid)) == ["i1"]


def test_xep0060_4_5_roster_access_by_group(server, accounts):
    """XEP-0060 §4.5 roster: contacts in an allowed roster group read;
    others get not-authorized with not-in-roster-group."""
    a, b, c = accounts(3)
    befriend(server, a, b)
    befriend(server, a, c)
    with login(server, a) as ca:
        r = iq(ca, "<query xmlns='jabber:iq:roster'><item jid='%s'><group>Friends</group></item>"
                   "</query>" % b.jid, type_="set")
        assert r.get("type") == "result", tostr(r)
        assert publish(ca, "urn:example:r", "<x xmlns='urn:example:r'/>").get("type") == "result"
        r = pubsub_iq(ca, "<configure node='urn:example:r'>%s</configure>" % form(
            FORM_NODE_CONFIG, {"pubsub#access_model": "roster",
                               "pubsub#roster_groups_allowed": ["Friends"]}), owner=True)
        assert r.get("type") == "result", tostr(r)
    with login(server, b) as cb:
        assert len(item_ids(items(cb, "urn:example:r", to=a.jid))) == 1
    with login(server, c) as cc:
        assert pubsub_error(items(cc, "urn:example:r", to=a.jid)) == (
            "auth", "not-authorized", "not-in-roster-group")


def test_xep0060_4_5_whitelist_members_only(server, accounts):
    """XEP-0060 §4.5 whitelist, §8.9: a contact is refused (not-allowed,
    closed-node) until the owner makes it a member; the owner lists the
    affiliations."""
    a, b = accounts(2)
    befriend(server, a, b)
    with login(server, a) as ca:
        r = publish(ca, "urn:example:w", "<x xmlns='urn:example:w'/>",
                    options={"pubsub#access_model": "whitelist"})
        assert r.get("type") == "result", tostr(r)
        with login(server, b) as cb:
            assert pubsub_error(items(cb, "urn:example:w", to=a.jid)) == (
                "cancel", "not-allowed", "closed-node")
            r = pubsub_iq(ca, "<affiliations node='urn:example:w'><affiliation jid='%s' "
                              "affiliation='member'/></affiliations>" % b.jid, owner=True)
            assert r.get("type") == "result", tostr(r)
            assert len(item_ids(items(cb, "urn:example:w", to=a.jid))) == 1
        r = pubsub_iq(ca, "<affiliations node='urn:example:w'/>", type_="get", owner=True)
        affs = {x.get("jid"): x.get("affiliation") for x in r.iter(q(NS_PUBSUB_OWNER, "affiliation"))}
        assert affs == {a.jid: "owner", b.jid: "member"}
        r = pubsub_iq(ca, "<affiliations node='urn:example:w'><affiliation jid='%s' "
                          "affiliation='owner'/></affiliations>" % b.jid, owner=True)
        assert pubsub_error(r)[1] == "not-acceptable"


# ---- publish-options and configuration (XEP-0060 §7.1.5, §8.2; XEP-0223) -----------------

def test_xep0223_publish_options_create_then_precondition_not_met(server, accounts):
    """XEP-0223 §4 / XEP-0060 §7.1.5: publish-options configure a new node;
    later publications whose preconditions match succeed, those that do not
    fail with <conflict/> and <precondition-not-met/> (type cancel), and
    nothing is stored by them."""
    (a,) = accounts(1)
    opts = {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist",
            "pubsub#max_items": "max", "pubsub#send_last_published_item": "never"}
    with login(server, a) as ca:
        assert publish(ca, "storage:x", "<s xmlns='storage:x'>1</s>", "current", opts).get("type") == "result"
        cfg = config_fields(pubsub_iq(ca, "<configure node='storage:x'/>", type_="get", owner=True))
        assert cfg["pubsub#access_model"] == ["whitelist"]
        assert cfg["pubsub#persist_items"] in (["1"], ["true"])
        assert cfg["pubsub#max_items"] == ["max"]
        assert cfg["pubsub#send_last_published_item"] == ["never"]
        assert publish(ca, "storage:x", "<s xmlns='storage:x'>2</s>", "current", opts).get("type") == "result"
        for field, value in (("pubsub#access_model", "presence"), ("pubsub#persist_items", "false"),
                             ("pubsub#max_items", "1"),
                             ("pubsub#send_last_published_item", "on_sub_and_presence")):
            r = publish(ca, "storage:x", "<s xmlns='storage:x'>3</s>", "current", {field: value})
            assert pubsub_error(r) == ("cancel", "conflict", "precondition-not-met"), field
        r = items(ca, "storage:x")
        assert [i.find(q("storage:x", "s")).text for i in r.iter(q(NS_PUBSUB, "item"))] == ["2"]


def test_xep0060_7_1_5_bad_publish_options(server, accounts):
    """XEP-0060 §7.1.5: publish-options with an unknown field, a bad value,
    or another FORM_TYPE are refused with <bad-request/>; an access model
    not offered with <not-acceptable/> and <unsupported-access-model/>."""
    (a,) = accounts(1)
    with login(server, a) as ca:
        assert pubsub_error(publish(ca, "n1", "<x xmlns='n1'/>", options={"pubsub#bogus": "1"}))[1] == "bad-request"
        assert pubsub_error(publish(ca, "n1", "<x xmlns='n1'/>", options={"pubsub#max_items": "-3"}))[1] == "bad-request"
        assert pubsub_error(publish(ca, "n1", "<x xmlns='n1'/>",
                                    options={"pubsub#access_model": "authorize"})) == (
            "modify", "not-acceptable", "unsupported-access-model")
        r = pubsub_iq(ca, "<publish node='n1'><item><x xmlns='n1'/></item></publish><publish-options>%s"
                          "</publish-options>" % form(FORM_NODE_CONFIG, {"pubsub#max_items": "1"}))
        assert pubsub_error(r)[1] == "bad-request"
        assert pubsub_error(items(ca, "n1"))[1] == "item-not-found"


def test_xep0060_8_2_configure_and_max_items_trims(server, accounts):
    """XEP-0060 §8.2: the owner reads the configuration form and submits
    changes; lowering max_items drops the oldest items; a value above the
    service's limit is <not-acceptable/>; another's node: <forbidden/>."""
    a, b = accounts(2)
    befriend(server, a, b)
    with login(server, a) as ca:
        for i in range(4):
            assert publish(ca, "n2", "<x xmlns='n2'>%d</x>" % i, "i%d" % i,
                           {"pubsub#max_items": "10"}).get("type") == "result"
        assert item_ids(items(ca, "n2")) == ["i0", "i1", "i2", "i3"]
        assert item_ids(items(ca, "n2", max_items=2)) == ["i2", "i3"]
        r = pubsub_iq(ca, "<configure node='n2'>%s</configure>" % form(
            FORM_NODE_CONFIG, {"pubsub#max_items": "2", "pubsub#title": "Two"}), owner=True)
        assert r.get("type") == "result", tostr(r)
        assert item_ids(items(ca, "n2")) == ["i2", "i3"]
        cfg = config_fields(pubsub_iq(ca, "<configure node='n2'/>", type_="get", owner=True))
        assert cfg["pubsub#title"] == ["Two"] and cfg["pubsub#max_items"] == ["2"]
        r = pubsub_iq(ca, "<configure node='n2'>%s</configure>" % form(
            FORM_NODE_CONFIG, {"pubsub#max_items": "21"}), owner=True)
        assert pubsub_error(r)[1] == "not-acceptable"
        d = config_fields(pubsub_iq(ca, "<default/>", type_="get", owner=True), owner_el="default")
        assert d["pubsub#access_model"] == ["presence"]
    with login(server, b) as cb:
        r = pubsub_iq(cb, "<configure node='n2'/>", type_="get", owner=True, to=a.jid)
        assert pubsub_error(r)[1] == "forbidden"
        assert pubsub_error(publish(cb, "n2", "<x xmlns='n2'/>", to=a.jid))[1] == "forbidden"
        assert pubsub_error(publish(cb, "new", "<x xmlns='new'/>", to=a.jid))[1] == "item-not-found"


# ---- retract, purge, delete (XEP-0060 §7.2, §8.4, §8.5) -----------------------------------

def test_xep0060_7_2_8_4_8_5_retract_purge_delete_notified(server, accounts):
    """XEP-0060 §7.2.2.1, §8.5.2, §8.4.2: an interested contact hears of a
    retraction, a purge and the node's deletion; the items go with them."""
    a, b = accounts(2)
    befriend(server, a, b)
    with login(server, a) as ca, login(server, b) as cb:
        caps_presence(cb, [TUNE + "+notify"])
        sync(cb)
        events(cb, 0.3)
        for i in ("1", "2"):
            assert publish(ca, TUNE, tune(i), item_id=i, options={"pubsub#max_items": "5"}).get("type") == "result"
            wait_event(cb, TUNE)
        r = pubsub_iq(ca, "<retract node='%s' notify='true'><item id='1'/></retract>" % TUNE)
        assert r.get("type") == "result", tostr(r)
        m = wait_event(cb, TUNE)
        assert m.find(".//" + q(NS_PUBSUB_EVENT, "retract")).get("id") == "1"
        assert item_ids(items(ca, TUNE)) == ["2"]
        r = pubsub_iq(ca, "<retract node='%s'><item id='nope'/></retract>" % TUNE)
        assert pubsub_error(r)[1] == "item-not-found"
        assert pubsub_iq(ca, "<purge node='%s'/>" % TUNE, owner=True).get("type") == "result"
        assert wait_event(cb, TUNE).find(".//" + q(NS_PUBSUB_EVENT, "purge")) is not None
        assert item_ids(items(ca, TUNE)) == []
        assert pubsub_iq(ca, "<delete node='%s'/>" % TUNE, owner=True).get("type") == "result"
        assert wait_event(cb, TUNE).find(".//" + q(NS_PUBSUB_EVENT, "delete")) is not None
        assert pubsub_error(items(ca, TUNE)) == ("cancel", "item-not-found", None)
        r = pubsub_iq(ca, "<delete node='%s'/>" % TUNE, owner=True)
        assert pubsub_error(r)[1] == "item-not-found"


# ---- persistence and limits ---------------------------------------------------------------

def test_xep0060_persistent_items_survive_restart(server, accounts):
    """XEP-0060 persistent-items: items, configuration and affiliations are
    stored (the storage driver in use) and come back after a restart."""
    a, b = accounts(2)
    with login(server, a) as ca:
        assert publish(ca, "urn:example:p", "<p xmlns='urn:example:p'>kept</p>", "k",
                       {"pubsub#access_model": "whitelist", "pubsub#max_items": "3"}).get("type") == "result"
        r = pubsub_iq(ca, "<affiliations node='urn:example:p'><affiliation jid='%s' "
                          "affiliation='member'/></affiliations>" % b.jid, owner=True)
        assert r.get("type") == "result"
    server.restart()
    with login(server, b) as cb:
        r = items(cb, "urn:example:p", to=a.jid)
        assert item_ids(r) == ["k"]
        assert r.find(".//" + q("urn:example:p", "p")).text == "kept"
    with login(server, a) as ca:
        cfg = config_fields(pubsub_iq(ca, "<configure node='urn:example:p'/>", type_="get", owner=True))
        assert cfg["pubsub#access_model"] == ["whitelist"] and cfg["pubsub#max_items"] == ["3"]


def test_xep0060_limits_nodes_items_size(server, accounts):
    """Per-account limits with clear errors: a node beyond max_nodes is
    <not-allowed/> with <max-nodes-exceeded/>; a payload beyond
    max_item_size <not-acceptable/> with <payload-too-big/>; items beyond
    max_total_items <not-allowed/> with <max-items-exceeded/>; a node keeps
    at most max_items ("max"), dropping the oldest."""
    (a,) = accounts(1)
    with login(server, a) as ca:
        for i in range(8):
            assert publish(ca, "lim%d" % i, "<x xmlns='l'/>").get("type") == "result"
        assert pubsub_error(publish(ca, "lim8", "<x xmlns='l'/>")) == (
            "cancel", "not-allowed", "max-nodes-exceeded")
        big = "<x xmlns='l'>%s</x>" % ("a" * 5000)
        assert pubsub_error(publish(ca, "lim0", big)) == ("modify", "not-acceptable", "payload-too-big")
        for node in ("lim1", "lim2"):
            r = pubsub_iq(ca, "<configure node='%s'>%s</configure>" % (
                node, form(FORM_NODE_CONFIG, {"pubsub#max_items": "max"})), owner=True)
            assert r.get("type") == "result", tostr(r)
        for i in range(21):
            r = publish(ca, "lim1", "<x xmlns='l'>%d</x>" % i, "i%d" % i, {"pubsub#max_items": "max"})
            assert r.get("type") == "result", tostr(r)
        ids = item_ids(items(ca, "lim1"))
        assert len(ids) == 20 and ids[0] == "i1" and ids[-1] == "i20"
        # 8 nodes: 7 hold one item, lim1 holds 20: 27 of 30; lim2 takes 3 more.
        for i in range(3):
            assert publish(ca, "lim2", "<x xmlns='l'/>", "m%d" % i,
                           {"pubsub#max_items": "max"}).get("type") == "result"
        r = publish(ca, "lim2", "<x xmlns='l'/>", "m3", {"pubsub#max_items": "max"})
        assert pubsub_error(r) == ("cancel", "not-allowed", "max-items-exceeded")
        r = publish(ca, "lim2", "<x xmlns='l'>again</x>", "m2", {"pubsub#max_items": "max"})
        assert r.get("type") == "result"  # replacing an item stores nothing more


# ---- subscriptions (XEP-0060 §6) ----------------------------------------------------------

def test_xep0060_6_1_explicit_subscription_open_node(server, accounts):
    """XEP-0060 §6.1, §6.3, §6.2: a stranger subscribes to an open node (a
    subid comes back, then the last item, §6.1.7), hears of publications,
    turns delivery off with subscription options, and unsubscribes; errors
    for another's JID, for a presence node and for not being subscribed."""
    a, d = accounts(2)
    node = "urn:example:feed"
    with login(server, a) as ca, login(server, d) as cd:
        assert publish(ca, node, "<e xmlns='urn:example:feed'>1</e>", "1",
                       {"pubsub#access_model": "open"}).get("type") == "result"
        r = pubsub_iq(cd, "<subscribe node='%s' jid='%s'/>" % (node, cd.jid), to=a.jid)
        sub = r.find(".//" + q(NS_PUBSUB, "subscription"))
        assert sub is not None and sub.get("subscription") == "subscribed" and sub.get("subid"), tostr(r)
        assert wait_event(cd, node).get("from") == a.jid
        assert publish(ca, node, "<e xmlns='urn:example:feed'>2</e>", "2").get("type") == "result"
        m = wait_event(cd, node)
        assert m.find(".//" + q(NS_PUBSUB_EVENT, "item")).get("id") == "2"
        r = pubsub_iq(cd, "<options node='%s' jid='%s'/>" % (node, cd.jid), type_="get", to=a.jid)
        assert r.find(".//" + q(NS_DATA, "x")) is not None, tostr(r)
        r = pubsub_iq(cd, "<options node='%s' jid='%s'>%s</options>" % (
            node, cd.jid, form(NS_PUBSUB + "#subscribe_options", {"pubsub#deliver": "false"})), to=a.jid)
        assert r.get("type") == "result", tostr(r)
        assert publish(ca, node, "<e xmlns='urn:example:feed'>3</e>", "3").get("type") == "result"
        assert events(cd, node=node) == []
        r = pubsub_iq(cd, "<subscriptions/>", type_="get", to=a.jid)
        assert [s.get("node") for s in r.iter(q(NS_PUBSUB, "subscription"))] == [node]
        r = pubsub_iq(cd, "<unsubscribe node='%s' jid='%s'/>" % (node, cd.jid), to=a.jid)
        assert r.get("type") == "result", tostr(r)
        r = pubsub_iq(cd, "<unsubscribe node='%s' jid='%s'/>" % (node, cd.jid), to=a.jid)
        assert pubsub_error(r) == ("cancel", "unexpected-request", "not-subscribed")
        r = pubsub_iq(cd, "<subscribe node='%s' jid='%s'/>" % (node, a.jid), to=a.jid)
        assert pubsub_error(r) == ("modify", "bad-request", "invalid-jid")
        assert publish(ca, "urn:example:closed", "<e xmlns='urn:example:closed'/>").get("type") == "result"
        r = pubsub_iq(cd, "<subscribe node='urn:example:closed' jid='%s'/>" % cd.jid, to=a.jid)
        assert pubsub_error(r) == ("auth", "not-authorized", "presence-subscription-required")


def test_rfc6121_8_5_1_pep_of_unknown_account(server, accounts):
    """RFC 6121 §8.5.1: PEP requests to an account that does not exist get
    <service-unavailable/>."""
    (a,) = accounts(1)
    with login(server, a) as ca:
        r = items(ca, "urn:example:n", to="nobody%s@localhost" % a.user)
        assert pubsub_error(r)[:2] == ("cancel", "service-unavailable")


def test_xep0163_6_1_disco_of_own_account(server, accounts):
    """XEP-0163 §6.1, XEP-0060 §5.2: the account's disco#info shows the
    pubsub/pep identity and the features (publish-options among them);
    disco#items lists the account's nodes."""
    (a,) = accounts(1)
    with login(server, a) as ca:
        assert publish(ca, "urn:example:d", "<x xmlns='urn:example:d'/>").get("type") == "result"
        r = iq(ca, "<query xmlns='%s'/>" % NS_DISCO_INFO, to=a.jid)
        ids = [(i.get("category"), i.get("type")) for i in r.iter(q(NS_DISCO_INFO, "identity"))]
        assert ("pubsub", "pep") in ids
        feats = {f.get("var") for f in r.iter(q(NS_DISCO_INFO, "feature"))}
        for f in ("", "#publish-options", "#auto-create", "#filtered-notifications",
                  "#access-whitelist", "#persistent-items"):
            assert NS_PUBSUB + f in feats, f
        r = iq(ca, "<query xmlns='%s'/>" % NS_DISCO_ITEMS, to=a.jid)
        assert [(i.get("jid"), i.get("node")) for i in r.iter(q(NS_DISCO_ITEMS, "item"))] == [
            (a.jid, "urn:example:d")]
        r = iq(ca, "<query xmlns='%s' node='urn:example:d'/>" % NS_DISCO_INFO, to=a.jid)
        ids = [(i.get("category"), i.get("type")) for i in r.iter(q(NS_DISCO_INFO, "identity"))]
        assert ids == [("pubsub", "leaf")], tostr(r)


def test_xep0163_6_2_contact_disco_of_account(server, accounts):
    """XEP-0163 §6.2: a contact with a presence subscription discovers the
    account's nodes (disco#items) and a node's identity, while the account
    is offline (its service and roster are loaded for the answer); a
    stranger gets <service-unavailable/> (RFC 6121 §8.5.1 rules, as
    Prosody)."""
    a, b, d = accounts(3)
    befriend(server, a, b)
    with login(server, a) as ca:
        assert publish(ca, "urn:example:c", "<x xmlns='urn:example:c'/>").get("type") == "result"
        assert publish(ca, "urn:example:w2", "<x xmlns='urn:example:w2'/>",
                       options={"pubsub#access_model": "whitelist"}).get("type") == "result"
    server.restart()  # nothing of a's in memory
    with login(server, b) as cb:
        r = iq(cb, "<query xmlns='%s'/>" % NS_DISCO_ITEMS, to=a.jid)
        assert r.get("type") == "result", tostr(r)
        assert [i.get("node") for i in r.iter(q(NS_DISCO_ITEMS, "item"))] == ["urn:example:c"]
        r = iq(cb, "<query xmlns='%s' node='urn:example:c'/>" % NS_DISCO_INFO, to=a.jid)
        assert [(i.get("category"), i.get("type")) for i in r.iter(q(NS_DISCO_INFO, "identity"))] == [
            ("pubsub", "leaf")]
        r = iq(cb, "<query xmlns='%s'/>" % NS_DISCO_INFO, to=a.jid)
        assert ("pubsub", "pep") in [(i.get("category"), i.get("type"))
                                     for i in r.iter(q(NS_DISCO_INFO, "identity"))]
        r = iq(cb, "<query xmlns='%s' node='urn:example:w2'/>" % NS_DISCO_INFO, to=a.jid)
        assert error_condition(r) == ("cancel", "item-not-found")
    with login(server, d) as cd:
        r = iq(cd, "<query xmlns='%s'/>" % NS_DISCO_ITEMS, to=a.jid)
        assert error_condition(r) == ("cancel", "service-unavailable")


# ---- what clients build on PEP: nickname (XEP-0172), OMEMO (XEP-0384) ----------------------

NS_NICK = "http://jabber.org/protocol/nick"
OMEMO_OLD = "eu.siacs.conversations.axolotl"
OMEMO_V2 = "urn:xmpp:omemo:2"


def test_xep0172_nickname_with_slixmpp(server, accounts):
    """XEP-0172 §4 through slixmpp's xep_0172/xep_0163 plugins: the nick is
    published with open access, a contact's client gets the event
    (user_nick_publish), and a stranger fetches it (§4.4)."""
    a, b, d = accounts(3)
    befriend(server, a, b)

    async def scenario():
        cb, got = await interested(server, b, ["xep_0172"], "user_nick_publish", NS_NICK)
        ca = await connect(server, a, presence=0)
        ca.register_plugin("xep_0172")
        opts = ca["xep_0004"].make_form("submit")
        opts.add_field("FORM_TYPE", value=NS_PUBSUB + "#publish-options", ftype="hidden")
        opts.add_field("pubsub#access_model", value="open")
        await ca["xep_0172"].publish_nick("Ali", options=opts)
        m = await asyncio.wait_for(got, 5)
        assert m["pubsub_event"]["items"]["item"]["nick"]["nick"] == "Ali"
        cd = await connect(server, d)
        cd.register_plugin("xep_0060")
        res = await cd["xep_0060"].get_items(a.jid, NS_NICK)
        assert [i.xml.findtext(q(NS_NICK, "nick")) for i in res["pubsub"]["items"]] == ["Ali"]

    run(scenario())


def test_xep0384_omemo_device_lists_and_bundles_open_access(server, accounts):
    """OMEMO (XEP-0384, both the legacy eu.siacs.conversations.axolotl
    profile and urn:xmpp:omemo:2) works because PEP does: device lists and
    bundles published with access_model open (publish-options, as clients
    do) are fetched by a stranger; omemo:2 keeps one bundle item per
    device in one node (max_items max)."""
    a, d = accounts(2)
    open_opts = {"pubsub#access_model": "open"}
    bundle = ("<bundle xmlns='%s'><signedPreKeyPublic signedPreKeyId='1'>BQ==</signedPreKeyPublic>"
              "<signedPreKeySignature>c2ln</signedPreKeySignature><identityKey>aWs=</identityKey>"
              "<prekeys><preKeyPublic preKeyId='1'>BQE=</preKeyPublic></prekeys></bundle>" % OMEMO_OLD)
    with login(server, a) as ca:
        r = publish(ca, OMEMO_OLD + ".devicelist", "<list xmlns='%s'><device id='1234'/></list>" % OMEMO_OLD,
                    "current", open_opts)
        assert r.get("type") == "result", tostr(r)
        r = publish(ca, OMEMO_OLD + ".bundles:1234", bundle, "current", open_opts)
        assert r.get("type") == "result", tostr(r)
        v2_opts = dict(open_opts, **{"pubsub#max_items": "max"})
        r = publish(ca, OMEMO_V2 + ":devices", "<devices xmlns='%s'><device id='11'/><device id='22'/>"
                    "</devices>" % OMEMO_V2, "current", v2_opts)
        assert r.get("type") == "result", tostr(r)
        for dev in ("11", "22"):
            r = publish(ca, OMEMO_V2 + ":bundles", "<bundle xmlns='%s'><spk id='1'>AA==</spk>"
                        "<spks>AA==</spks><ik>AA==</ik><prekeys><pk id='%s'>AA==</pk></prekeys>"
                        "</bundle>" % (OMEMO_V2, dev), dev, v2_opts)
            assert r.get("type") == "result", tostr(r)
    with login(server, d) as cd:
        r = items(cd, OMEMO_OLD + ".devicelist", to=a.jid)
        assert r.find(".//" + q(OMEMO_OLD, "device")).get("id") == "1234"
        r = items(cd, OMEMO_OLD + ".bundles:1234", to=a.jid)
        assert r.find(".//" + q(OMEMO_OLD, "identityKey")).text == "aWs="
        r = items(cd, OMEMO_V2 + ":devices", to=a.jid)
        assert [x.get("id") for x in r.iter(q(OMEMO_V2, "device"))] == ["11", "22"]
        r = pubsub_iq(cd, "<items node='%s:bundles'><item id='22'/></items>" % OMEMO_V2, type_="get", to=a.jid)
        assert item_ids(r) == ["22"]
        assert sorted(item_ids(items(cd, OMEMO_V2 + ":bundles", to=a.jid))) == ["11", "22"]


def test_xep0163_with_slixmpp_generic_publish(server, accounts):
    """XEP-0163 through slixmpp's xep_0163 plugin: a contact whose client
    declares interest (+notify in its caps, which the server asks for) gets
    the owner's publications; the owner's items are read with xep_0060."""
    a, b = accounts(2)
    befriend(server, a, b)

    async def scenario():
        cb, got = await interested(server, b, ["xep_0163"], "pubsub_publish", TUNE)
        ca = await connect(server, a, presence=0)
        ca.register_plugin("xep_0118")
        await ca["xep_0118"].publish_tune(artist="Finzi", title="Introduction")
        m = await asyncio.wait_for(got, 5)
        assert m["pubsub_event"]["items"]["item"]["tune"]["title"] == "Introduction"
        res = await cb["xep_0060"].get_items(a.jid, TUNE)
        assert [i.xml.findtext("%s/%s" % (q(TUNE, "tune"), q(TUNE, "artist")))
                for i in res["pubsub"]["items"]] == ["Finzi"]

    run(scenario())


# ---- other servers' entities (XEP-0163 §4.3.1, §4.3.4) ----------------------------------

def test_xep0163_4_remote_entity_tracked_from_presence(server_factory, accounts):
    """XEP-0163 §4: an entity of another domain (here an external component,
    XEP-0114, standing in for a remote server) that the account shares
    presence with sends available presence with caps to the account: the
    server asks it for its features, sends it the last item it wants
    (§4.3.4), then each new publication; after its unavailable presence,
    nothing more."""
    import hashlib as _h
    from conftest import free_port
    from xmpptest import RawClient
    gw, secret = "gw.localhost", "gw-secret-value-1"
    srv = server_factory(start=False, overrides={
        "components": {gw: {"secret": secret}},
        "modules": {"roster": True, "presence": True, "disco": True, "caps": True,
                    "ping": True, "pep": True}})
    srv.comp_port = free_port()
    srv.config["listeners"].append({"type": "component", "address": "127.0.0.1", "port": srv.comp_port})
    srv.write_config()
    srv.start()
    (a,) = accounts(1, srv=srv)
    ncomp = "jabber:component:accept"
    rc = RawClient(srv.comp_port, domain=gw)
    rc.open_stream(features=False, to=gw, xmlns=ncomp, version=None, lang=None)
    sid = rc.reader.header.get("id")
    rc.send("<handshake>%s</handshake>" % _h.sha1((sid + secret).encode()).hexdigest())
    assert rc.next_element().tag == q(ncomp, "handshake")
    remote = "romeo@" + gw
    feats = sorted({TUNE + "+notify", "http://jabber.org/protocol/caps",
                    "http://jabber.org/protocol/disco#info"})
    import base64 as _b
    ver = _b.b64encode(_h.sha1(("client/pc//gw<" + "".join(f + "<" for f in feats)).encode()).digest()).decode()

    def next_of(tag, pred=lambda e: True):
        return rc.wait_for(lambda e: e.tag == q(ncomp, tag) and pred(e))

    try:
        with login(srv, a) as ca:
            ca.send("<presence/>")
            assert publish(ca, TUNE, tune("first"), "1").get("type") == "result"
            # The remote contact asks for, and gets, a subscription to a's presence.
            rc.send("<presence from='%s' to='%s' type='subscribe'/>" % (remote, a.jid))
            ca.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribe")
            ca.send("<presence to='%s' type='subscribed'/>" % remote)
            sync(ca)
            rc.send("<presence from='%s/balcony' to='%s'><c xmlns='http://jabber.org/protocol/caps' "
                    "hash='sha-1' node='urn:gw' ver='%s'/></presence>" % (remote, a.jid, ver))
            query = next_of("iq", lambda e: e.get("type") == "get")
            assert query.get("to") == remote + "/balcony" and query.get("from") == "localhost"
            rc.send("<iq type='result' id='%s' from='%s/balcony' to='localhost'><query xmlns='%s' "
                    "node='urn:gw#%s'><identity category='client' type='pc' name='gw'/>%s</query></iq>"
                    % (query.get("id"), remote, NS_DISCO_INFO, ver,
                       "".join("<feature var='%s'/>" % f for f in feats)))
            m = next_of("message", lambda e: e.find(".//" + q(NS_PUBSUB_EVENT, "item")) is not None)
            assert m.get("to") == remote + "/balcony" and m.get("from") == a.jid
            assert m.find(".//" + q(NS_PUBSUB_EVENT, "item")).get("id") == "1"
            assert publish(ca, TUNE, tune("second"), "2").get("type") == "result"
            m = next_of("message", lambda e: e.find(".//" + q(NS_PUBSUB_EVENT, "item")) is not None)
            assert m.find(".//" + q(NS_PUBSUB_EVENT, "item")).get("id") == "2"
            assert m.find(".//" + q("http://jabber.org/protocol/address", "address")).get("type") == "replyto"
            rc.send("<presence from='%s/balcony' to='%s' type='unavailable'/>" % (remote, a.jid))
            sync(ca)
            assert publish(ca, TUNE, tune("third"), "3").get("type") == "result"
            assert rc.quiet(pred=lambda e: e.tag == q(ncomp, "message")) == []
    finally:
        rc.close()


def test_xep0479_features_report_pep_and_what_builds_on_it(server_factory):
    """`xmppctl features`: the modules' specifications (XEP-0060, 0163,
    0223, 0172; 0084, 0153, 0398; 0402, 0411, 0048) and the XMPP
    Compliance Suites 2023 rows they satisfy (Core Advanced: event
    publishing; IM Advanced: avatar compatibility, private data via PubSub)."""
    import json
    srv = server_factory({"modules": {"roster": True, "presence": True, "disco": True, "caps": True,
                                      "vcard": True, "private": True, "pep": True, "avatar": True,
                                      "bookmarks": True, "pubsub": True}})
    j = json.loads(srv.ctl("-j", "features").stdout)
    host = j["hosts"][0]
    specs = {s["spec"]: set(s["by"]) for s in host["specs"]}
    want = {"XEP-0060": {"pep", "pubsub"}, "XEP-0163": {"pep"}, "XEP-0223": {"pep"},
            "XEP-0172": {"pep"}, "XEP-0084": {"avatar"}, "XEP-0153": {"avatar"},
            "XEP-0398": {"avatar"}, "XEP-0402": {"bookmarks"}, "XEP-0411": {"bookmarks"},
            "XEP-0048": {"bookmarks", "private"}, "XEP-0115": {"caps"}}
    for spec, by in want.items():
        assert specs.get(spec) == by, spec
    suites = {(s["category"], s["level"]): s for s in host["suites"]}
    missing = {f["feature"] for key in (("Core", "Advanced Server"), ("IM", "Advanced Server"))
               for f in suites[key]["missing"]}
    for feature in ("Event publishing", "User Avatar Compatibility",
                    "Persistent Storage of Private Data via PubSub"):
        assert feature not in missing, feature


# ---- issue 18: an account's service is made on first use, not at login ---------------------

def test_issue18_xep0163_services_loaded_on_first_use(server, accounts):
    """issue 18: a resource binding no longer loads its account's PEP
    service; each use loads it. XEP-0163 §6.1 the account's disco#items,
    asked first thing after login (and after a restart), lists its stored
    nodes; §4 a publish by an account idle for over a second reaches its
    interested contact, and a contact's publish reaches the idle account's
    interested resource (XEP-0163 §4.3.4: with no last item to send first,
    the idle account got nothing before)."""
    a, b = accounts(2)
    befriend(server, a, b)
    server.restart()  # nothing of a's or b's in memory
    with login(server, a, "idle") as ca, login(server, b) as cb:
        r = iq(ca, "<query xmlns='%s'/>" % NS_DISCO_ITEMS, to=a.jid)
        assert r.get("type") == "result", tostr(r)
        assert list(r.iter(q(NS_DISCO_ITEMS, "item"))) == []
        caps_presence(cb, [TUNE + "+notify"])
        caps_presence(ca, [TUNE + "+notify"])
        sync(cb)
        sync(ca)
        assert events(ca) == [] and events(cb) == []
        time.sleep(1.5)
        assert publish(ca, TUNE, tune("from the idle one"), item_id="a1").get("type") == "result"
        m = wait_event(cb, TUNE)
        assert m.get("from") == a.jid
        assert m.find(".//" + q(NS_PUBSUB_EVENT, "item")).get("id") == "a1"
        time.sleep(1.5)
        assert publish(cb, TUNE, tune("to the idle one"), item_id="b1").get("type") == "result"
        got = [e for e in (wait_event(ca, TUNE), wait_event(ca, TUNE))]
        assert sorted((e.get("from"), e.find(".//" + q(NS_PUBSUB_EVENT, "item")).get("id"))
                      for e in got) == sorted([(a.jid, "a1"), (b.jid, "b1")])
    server.restart()
    with login(server, a) as ca:
        r = iq(ca, "<query xmlns='%s'/>" % NS_DISCO_ITEMS, to=a.jid)
        assert [(i.get("jid"), i.get("node")) for i in r.iter(q(NS_DISCO_ITEMS, "item"))] == [
            (a.jid, TUNE)]
