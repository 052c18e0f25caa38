"""XEP-0163 Personal Eventing Protocol on XEP-0060, with XEP-0223
publish-options, through mod_pep (and mod_caps for +notify filters).

Raw clients where the exact stanzas matter (errors, addressing), slixmpp's
xep_0060/xep_0163 plugins where a real client library is the point."""

import pytest

from pep_helpers import (NS_DELAY, NS_PUBSUB, NS_PUBSUB_EVENT, befriend, caps_presence, events,
                         item_ids, items, login, publish, pubsub_error, sync, wait_event)
from xmpptest import NS_CLIENT, q, tostr

TUNE = "http://jabber.org/protocol/tune"


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
        assert m.find(q("urn:xmpp:delay", "delay")) is not None
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
