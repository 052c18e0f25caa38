"""Bookmarks: XEP-0402 PEP native bookmarks, kept alike with XEP-0048
bookmarks in private XML (XEP-0049, as XEP-0402 §5.3 describes) and in the
PEP node storage:bookmarks (XEP-0411), in every direction. slixmpp 1.8 has
no xep_0402 plugin: its xep_0060 plugin and raw stanzas stand in."""

import time

import pytest

from pep_helpers import (NS_DISCO_INFO, NS_PUBSUB, NS_PUBSUB_EVENT, caps_presence, iq, items, login,
                         publish, pubsub_iq, sync, wait_event)
from xmpptest import connect, q, run, scaled, tostr

NS_B2 = "urn:xmpp:bookmarks:1"
NS_B1 = "storage:bookmarks"
NS_PRIVATE = "jabber:iq:private"
B2_OPTIONS = {"pubsub#persist_items": "true", "pubsub#max_items": "max",
              "pubsub#send_last_published_item": "never", "pubsub#access_model": "whitelist"}

MODULES = {"roster": True, "presence": True, "disco": True, "caps": True, "ping": True,
           "private": True, "pep": True, "bookmarks": True}


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": dict(MODULES)}


def b2_conference(name, autojoin=True, nick=None, extra=""):
    n = "<nick>%s</nick>" % nick if nick else ""
    return "<conference xmlns='%s' name='%s' autojoin='%s'>%s%s</conference>" % (
        NS_B2, name, "true" if autojoin else "false", n, extra)


def private_get(c):
    r = iq(c, "<query xmlns='%s'><storage xmlns='%s'/></query>" % (NS_PRIVATE, NS_B1))
    assert r.get("type") == "result", tostr(r)
    return r.find("%s/%s" % (q(NS_PRIVATE, "query"), q(NS_B1, "storage")))


def private_set(c, body):
    r = iq(c, "<query xmlns='%s'><storage xmlns='%s'>%s</storage></query>" % (NS_PRIVATE, NS_B1, body),
           type_="set")
    assert r.get("type") == "result", tostr(r)


def legacy_conferences(storage):
    return {x.get("jid"): (x.get("name"), x.get("autojoin") in ("true", "1"), x.findtext(q(NS_B1, "nick")))
            for x in storage.findall(q(NS_B1, "conference"))} if storage is not None else {}


def b2_items(c):
    r = items(c, NS_B2)
    if r.get("type") == "error":
        return {}
    out = {}
    for it in r.iter(q(NS_PUBSUB, "item")):
        conf = it.find(q(NS_B2, "conference"))
        out[it.get("id")] = (conf.get("name"), conf.get("autojoin") in ("true", "1"),
                             conf.findtext(q(NS_B2, "nick")), conf)
    return out


def eventually(fn, want, bound=5.0):
    """fn() once it equals want (the copies are asynchronous), bounded."""
    deadline = time.monotonic() + scaled(bound)
    while True:
        got = fn()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_xep0402_6_compat_features_on_account(server, accounts):
    """XEP-0402 §6 and XEP-0411 §2: the account advertises the conversions."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = iq(c, "<query xmlns='%s'/>" % NS_DISCO_INFO, to=a.jid)
        feats = {f.get("var") for f in r.iter(q(NS_DISCO_INFO, "feature"))}
        assert {NS_B2 + "#compat", NS_B2 + "#compat-pep", "urn:xmpp:bookmarks-conversion:0"} <= feats


def test_xep0402_3_publish_notify_retract(server, accounts):
    """XEP-0402 §3, §4: a bookmark is an item with the room JID as id,
    published with the specified publish-options; the account's other
    interested resource is notified of additions and retractions."""
    (a,) = accounts(1)
    with login(server, a, "one") as c1, login(server, a, "two") as c2:
        caps_presence(c2, [NS_B2 + "+notify"])
        sync(c2)
        r = publish(c1, NS_B2, b2_conference("Coven", nick="Witch"), "coven@chat.example", B2_OPTIONS)
        assert r.get("type") == "result", tostr(r)
        m = wait_event(c2, NS_B2)
        assert m.find(".//" + q(NS_PUBSUB_EVENT, "item")).get("id") == "coven@chat.example"
        assert b2_items(c1)["coven@chat.example"][:3] == ("Coven", True, "Witch")
        r = pubsub_iq(c1, "<retract node='%s' notify='true'><item id='coven@chat.example'/></retract>" % NS_B2)
        assert r.get("type") == "result"
        m = wait_event(c2, NS_B2)
        assert m.find(".//" + q(NS_PUBSUB_EVENT, "retract")).get("id") == "coven@chat.example"


def test_xep0402_5_3_native_to_private(server, accounts):
    """XEP-0402 §5.3: bookmarks published with XEP-0402 show in the
    XEP-0048 private storage an old client reads; a retraction too."""
    (a,) = accounts(1)
    with login(server, a) as c:
        for jid, name in (("a@chat.example", "A"), ("b@chat.example", "B")):
            assert publish(c, NS_B2, b2_conference(name, nick="me"), jid, B2_OPTIONS).get("type") == "result"
        want = {"a@chat.example": ("A", True, "me"), "b@chat.example": ("B", True, "me")}
        assert eventually(lambda: legacy_conferences(private_get(c)), want) == want
        pubsub_iq(c, "<retract node='%s'><item id='a@chat.example'/></retract>" % NS_B2)
        want = {"b@chat.example": ("B", True, "me")}
        assert eventually(lambda: legacy_conferences(private_get(c)), want) == want


def test_xep0402_5_3_private_to_native_keeps_urls_and_extensions(server, accounts):
    """XEP-0402 §5.3 the other way: an old client's private bookmarks become
    items (only changed ones republished; removed ones retracted, which new
    clients hear of); its <url/> bookmarks stay in private storage; a
    XEP-0402 <extensions/> survives an edit by the old client."""
    (a,) = accounts(1)
    ext = "<extensions><pinned xmlns='urn:example:pin'/></extensions>"
    with login(server, a, "old") as c, login(server, a, "new") as n:
        caps_presence(n, [NS_B2 + "+notify"])
        sync(n)
        assert publish(c, NS_B2, b2_conference("Keep", extra=ext), "keep@chat.example",
                       B2_OPTIONS).get("type") == "result"
        wait_event(n, NS_B2)
        private_set(c, "<conference jid='keep@chat.example' name='Kept' autojoin='false'/>"
                       "<conference jid='x@chat.example' name='X' autojoin='1'><nick>xn</nick></conference>"
                       "<url name='site' url='https://example.org/'/>")
        want = {"keep@chat.example": "Kept", "x@chat.example": "X"}
        got = eventually(lambda: {k: v[0] for k, v in b2_items(c).items()}, want)
        assert got == want
        b2 = b2_items(c)
        assert b2["x@chat.example"][1:3] == (True, "xn")
        assert b2["keep@chat.example"][3].find(q(NS_B2, "extensions")) is not None
        storage = private_get(c)
        assert [u.get("url") for u in storage.findall(q(NS_B1, "url"))] == ["https://example.org/"]
        private_set(c, "<conference jid='x@chat.example' name='X' autojoin='1'><nick>xn</nick></conference>")
        m = wait_event(n, NS_B2)
        while m.find(".//" + q(NS_PUBSUB_EVENT, "retract")) is None:
            m = wait_event(n, NS_B2)
        assert m.find(".//" + q(NS_PUBSUB_EVENT, "retract")).get("id") == "keep@chat.example"
        assert eventually(lambda: sorted(b2_items(c)), ["x@chat.example"]) == ["x@chat.example"]


def test_xep0411_3_legacy_pep_node_both_ways(server, accounts):
    """XEP-0411 §3: bookmarks a client publishes to the PEP node
    storage:bookmarks reach private storage and XEP-0402 items; later
    XEP-0402 changes are republished to that node's item 'current'."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = publish(c, NS_B1, "<storage xmlns='%s'><conference jid='l@chat.example' name='L' "
                              "autojoin='true'/></storage>" % NS_B1, "current",
                    {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist"})
        assert r.get("type") == "result", tostr(r)
        want = {"l@chat.example": ("L", True, None)}
        assert eventually(lambda: legacy_conferences(private_get(c)), want) == want
        assert eventually(lambda: sorted(b2_items(c)), ["l@chat.example"]) == ["l@chat.example"]
        assert publish(c, NS_B2, b2_conference("M"), "m@chat.example", B2_OPTIONS).get("type") == "result"

        def legacy_pep():
            r = items(c, NS_B1)
            st = r.find(".//" + q(NS_B1, "storage"))
            return sorted(legacy_conferences(st))
        assert eventually(legacy_pep, ["l@chat.example", "m@chat.example"]) == [
            "l@chat.example", "m@chat.example"]


def test_xep0402_5_3_migration_at_login(server_factory, accounts):
    """An account with XEP-0048 private bookmarks from before the module was
    enabled gets XEP-0402 items at its next login."""
    mods = dict(MODULES)
    mods.pop("bookmarks")
    srv = server_factory({"modules": mods})
    (a,) = accounts(1, srv=srv)
    with login(srv, a) as c:
        private_set(c, "<conference jid='old@chat.example' name='Old' autojoin='true'/>")
    srv.config["modules"]["bookmarks"] = True
    srv.write_config()
    srv.restart()
    with login(srv, a) as c:
        assert eventually(lambda: sorted(b2_items(c)), ["old@chat.example"]) == ["old@chat.example"]


def test_xep0402_with_slixmpp_xep0060(server, accounts):
    """XEP-0402 through a client library (slixmpp's xep_0060 plugin, as
    slixmpp has no xep_0402 plugin): publish a bookmark with the
    publish-options the XEP gives, read it back."""
    (a,) = accounts(1)

    async def scenario():
        c = await connect(server, a)
        c.register_plugin("xep_0060")
        from slixmpp.xmlstream import ET
        opts = c["xep_0004"].make_form("submit")
        opts.add_field("FORM_TYPE", value=NS_PUBSUB + "#publish-options", ftype="hidden")
        for k, v in B2_OPTIONS.items():
            opts.add_field(k, value=v)
        payload = ET.fromstring(b2_conference("Slix", nick="s"))
        await c["xep_0060"].publish(a.jid, NS_B2, id="slix@chat.example", payload=payload, options=opts)
        res = await c["xep_0060"].get_items(a.jid, NS_B2)
        ids = [i["id"] for i in res["pubsub"]["items"]]
        assert ids == ["slix@chat.example"]

    run(scenario())
    with login(server, a) as c:  # old clients see it too (XEP-0402 §5.3)
        want = {"slix@chat.example": ("Slix", True, "s")}
        assert eventually(lambda: legacy_conferences(private_get(c)), want) == want


def test_shutdown_with_bookmark_calls_in_flight(server_factory, accounts):
    """Module API contract (docs/modules.md, pep_api.h, private_api.h): a
    login's bookmark migration waits on PEP, which waits on storage; the
    server stops meanwhile. Every pending call is answered once before its
    caller unloads: the server exits 0 with nothing leaked (the sanitizer
    runs check the output)."""
    import signal
    import sqlite3

    from conftest import STORAGE
    from xmpptest import RawClient
    if STORAGE != "sqlite":
        pytest.skip("holds SQLite's lock to keep storage calls in flight")
    srv = server_factory({"modules": dict(MODULES, vcard={}, storage_sqlite={"busy_timeout": "10m"})})
    a, b = accounts(2, srv=srv)
    busy = RawClient(srv.port)
    busy.login(a.user, a.password)
    late = RawClient(srv.port)
    late.secure_stream()
    late.auth_plain(b.user, b.password)
    late.open_stream()
    db = sqlite3.connect(str(srv.dir / "xmppd.sqlite"), timeout=10, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        busy.send("<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>x</FN></vCard></iq>")
        time.sleep(scaled(0.3))  # the storage thread now waits for the lock
        late.bind()  # "resource-bound": bookmarks asks PEP, PEP asks storage
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(scaled(0.5))
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert srv.proc.wait(timeout=scaled(30)) == 0, srv.output_tail()
    busy.close()
    late.close()
