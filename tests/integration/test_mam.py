"""XEP-0313 Message Archive Management (urn:xmpp:mam:2 and #extended),
XEP-0359 stanza-ids, XEP-0441 archiving preferences, retention, and the
consistency of offline storage (XEP-0160) with the archive.

Raw checks where the exact stanzas matter, slixmpp's xep_0313/xep_0441
plugins where a real client's use matters. Every test creates its own
accounts, so the module-scoped server's archives do not mix.
"""

import subprocess
import time

import pytest

from conftest import MODULES, REPO
from xmpptest import (NS_CLIENT, connect, error_condition, new_id, q, raw_login, run, scaled, tostr,
                      xml_escape)

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_HINTS = "urn:xmpp:hints"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_ROSTER = "jabber:iq:roster"


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": {}, "presence": {}, "offline": {}, "disco": {}, "ping": {},
                        "mam": {"page_size": 5, "max_page_size": 20}}}


# ---- helpers -------------------------------------------------------------------

def login(server, account, resource=None, presence=True):
    return raw_login(server, account, resource=resource, presence=presence)


def is_chat(el):
    return el.tag == q(NS_CLIENT, "message") and el.find(q(NS_CLIENT, "body")) is not None


def send(c, to, body, extra="", type_="chat", mid=None):
    mid = mid or new_id("m")
    c.send("<message to='%s' type='%s' id='%s'><body>%s</body>%s</message>"
           % (to, type_, mid, xml_escape(body), extra))
    return mid


def sync(c):
    r = c.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost")
    assert r.get("type") == "result", tostr(r)


def stanza_ids(m):
    return [(s.get("by"), s.get("id")) for s in m.findall(q(NS_SID, "stanza-id"))]


def form(fields):
    """A MAM query form; fields: list of (var, value or [values])."""
    out = ["<x xmlns='%s' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s</value>"
           "</field>" % (NS_DATA, NS_MAM)]
    for var, val in fields:
        vals = val if isinstance(val, list) else [val]
        out.append("<field var='%s'>%s</field>" % (var, "".join(
            "<value>%s</value>" % xml_escape(v) for v in vals)))
    out.append("</x>")
    return "".join(out)


def rsm(max_=None, after=None, before=None):
    parts = []
    if max_ is not None:
        parts.append("<max>%d</max>" % max_)
    if after is not None:
        parts.append("<after>%s</after>" % after)
    if before is not None:
        parts.append("<before>%s</before>" % before if before else "<before/>")
    return "<set xmlns='%s'>%s</set>" % (NS_RSM, "".join(parts)) if parts else ""


class Page:
    def __init__(self, iq, results):
        self.iq = iq
        self.results = results  # [(archive id, forwarded message, delay stamp)]
        fin = iq.find(q(NS_MAM, "fin"))
        self.fin = fin
        self.complete = fin is not None and fin.get("complete") == "true"
        s = fin.find(q(NS_RSM, "set")) if fin is not None else None
        self.first = s.findtext(q(NS_RSM, "first")) if s is not None else None
        self.last = s.findtext(q(NS_RSM, "last")) if s is not None else None

    @property
    def ids(self):
        return [r[0] for r in self.results]

    @property
    def bodies(self):
        return [r[1].findtext(q(NS_CLIENT, "body")) for r in self.results]


def mam(c, fields=(), set_="", extra="", queryid=None, to=None):
    """Runs a MAM query on c; returns a Page (or the error IQ: .iq type)."""
    iid, qid = new_id("mam"), queryid or new_id("q")
    body = "<query xmlns='%s' queryid='%s'>%s%s%s</query>" % (
        NS_MAM, qid, form(fields) if fields else "", set_, extra)
    c.send("<iq type='set' id='%s'%s>%s</iq>" % (iid, " to='%s'" % to if to else "", body))
    results = []
    while True:
        el = c.next_element()
        if el.tag == q(NS_CLIENT, "iq") and el.get("id") == iid:
            return Page(el, results)
        r = el.find(q(NS_MAM, "result")) if el.tag == q(NS_CLIENT, "message") else None
        if r is None:
            continue
        assert r.get("queryid") == qid, tostr(el)
        f = r.find(q(NS_FORWARD, "forwarded"))
        results.append((r.get("id"), f.find(q(NS_CLIENT, "message")),
                        f.find(q(NS_DELAY, "delay")).get("stamp")))


def error_of(page):
    assert page.iq.get("type") == "error", tostr(page.iq)
    return error_condition(page.iq)[1]


# ---- archiving -------------------------------------------------------------------

def test_xep0313_5_1_1_both_directions_stamped_and_archived(server, accounts):
    """A chat message between two accounts is in both archives (outgoing
    for the sender, incoming for the recipient); the recipient gets it
    with the server's <stanza-id by=own bare JID/> (XEP-0359, XEP-0313 §3.5)
    whose id is its archive id, and the sender's origin-id is kept."""
    a, b = accounts(2)
    with login(server, a) as ca, login(server, b) as cb:
        send(ca, b.jid, "hello", extra="<origin-id xmlns='%s' id='orig-1'/>" % NS_SID)
        got = cb.wait_for(is_chat)
        ids = stanza_ids(got)
        assert len(ids) == 1 and ids[0][0] == b.jid, tostr(got)
        assert got.find(q(NS_SID, "origin-id")).get("id") == "orig-1"
        pb = mam(cb)
        assert pb.bodies == ["hello"] and pb.ids == [ids[0][1]] and pb.complete
        fwd = pb.results[0][1]
        assert fwd.get("from").startswith(a.jid + "/") and fwd.get("to") == b.jid
        assert fwd.find(q(NS_SID, "origin-id")).get("id") == "orig-1"
        pa = mam(ca)
        assert pa.bodies == ["hello"] and pa.ids[0] != ids[0][1]
        assert pa.results[0][1].get("to") == b.jid


def fill(server, a, b, n, prefix="m"):
    """a sends n chat messages to b (online); returns b's stanza-ids in order."""
    out = []
    with login(server, a) as ca, login(server, b) as cb:
        for i in range(n):
            send(ca, b.jid, "%s%d" % (prefix, i))
        for i in range(n):
            m = cb.wait_for(is_chat)
            assert m.findtext(q(NS_CLIENT, "body")) == "%s%d" % (prefix, i)
            out.append(stanza_ids(m)[0][1])
    return out


def test_xep0313_4_1_3_paging_forward_backward_last_page_and_flip(server, accounts):
    """RSM paging (XEP-0059) both ways: <max/> pages forward with <after/>,
    an empty <before/> is the last page, <before>id</before> the page
    before it; results are in chronological order in every page (§4.1.4),
    <fin complete='true'/> only on the page that reaches the end; a page
    larger than max_page_size is cut; <flip-page/> reverses the order of
    one page only (§4.3.2)."""
    a, b = accounts(2)
    ids = fill(server, a, b, 12)
    bodies = ["m%d" % i for i in range(12)]
    with login(server, b) as c:
        p = mam(c, set_=rsm(max_=5))
        assert p.bodies == bodies[:5] and not p.complete
        assert (p.first, p.last) == (ids[0], ids[4])
        p = mam(c, set_=rsm(max_=5, after=p.last))
        assert p.bodies == bodies[5:10] and not p.complete
        p = mam(c, set_=rsm(max_=5, after=p.last))
        assert p.bodies == bodies[10:] and p.complete
        # the last page, then backwards
        p = mam(c, set_=rsm(max_=5, before=""))
        assert p.bodies == bodies[7:] and not p.complete and (p.first, p.last) == (ids[7], ids[11])
        p = mam(c, set_=rsm(max_=5, before=p.first))
        assert p.bodies == bodies[2:7] and not p.complete
        p = mam(c, set_=rsm(max_=5, before=p.first))
        assert p.bodies == bodies[:2] and p.complete
        # no <max/>: page_size (5); a larger max is lowered to max_page_size (20)
        assert len(mam(c).results) == 5
        assert len(mam(c, set_=rsm(max_=1000)).results) == 12
        # flipped: the same page, newest first
        p = mam(c, set_=rsm(max_=3, before=""), extra="<flip-page/>")
        assert p.bodies == ["m11", "m10", "m9"] and (p.first, p.last) == (ids[9], ids[11])
        # <max>0</max>: no items, only whether the result is complete
        p = mam(c, set_=rsm(max_=0))
        assert p.results == [] and not p.complete


def test_xep0313_4_1_filters_with_start_end_and_extended_ids(server, accounts):
    """Form fields: 'with' (bare JID matches every resource, full JID only
    itself), 'start'/'end' (XEP-0082, inclusive), and the #extended fields
    'after-id', 'before-id' and 'ids', combined with RSM."""
    a, b, c3 = accounts(3)
    with login(server, a, resource="phone") as ca, login(server, c3) as cc, \
            login(server, b) as cb:
        send(ca, b.jid, "from-a-1")
        cb.wait_for(is_chat)
        time.sleep(0.05)
        mid = time.time()
        time.sleep(0.05)
        send(cc, b.jid, "from-c")
        cb.wait_for(is_chat)
        send(ca, b.jid, "from-a-2")
        cb.wait_for(is_chat)
        send(cb, a.jid + "/phone", "to-a-phone")
        send(cb, a.jid, "to-a-bare")
        sync(cb)
        every = mam(cb, set_=rsm(max_=20))
        assert every.bodies == ["from-a-1", "from-c", "from-a-2", "to-a-phone", "to-a-bare"]
        ids = every.ids
        assert mam(cb, [("with", a.jid)]).bodies == ["from-a-1", "from-a-2", "to-a-phone", "to-a-bare"]
        assert mam(cb, [("with", a.jid + "/phone")]).bodies == ["from-a-1", "from-a-2", "to-a-phone"]
        assert mam(cb, [("with", c3.jid)]).bodies == ["from-c"]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid)) + ".%03dZ" % (int(mid * 1000) % 1000)
        assert mam(cb, [("end", stamp)]).bodies == ["from-a-1"]
        assert mam(cb, [("start", stamp)], set_=rsm(max_=20)).bodies[0] == "from-c"
        assert mam(cb, [("start", "2000-01-01T00:00:00+02:00"), ("end", "2000-01-02T00:00:00Z")]).bodies == []
        # delay stamps are the archive times, in UTC
        assert all(r[2].endswith("Z") for r in every.results)
        # #extended
        assert mam(cb, [("after-id", ids[1])]).bodies == ["from-a-2", "to-a-phone", "to-a-bare"]
        assert mam(cb, [("before-id", ids[2])]).bodies == ["from-a-1", "from-c"]
        assert mam(cb, [("after-id", ids[0]), ("before-id", ids[4])]).bodies == \
            ["from-c", "from-a-2", "to-a-phone"]
        assert mam(cb, [("ids", [ids[3], ids[0]])]).bodies == ["from-a-1", "to-a-phone"]
        assert mam(cb, [("ids", [ids[3], ids[0]]), ("with", c3.jid)]).bodies == []
        # after-id with an RSM <after/>: the later bound applies, either way round
        p = mam(cb, [("after-id", ids[0])], set_=rsm(max_=2, after=ids[2]))
        assert p.bodies == ["to-a-phone", "to-a-bare"] and p.complete
        p = mam(cb, [("after-id", ids[2])], set_=rsm(max_=2, after=ids[0]))
        assert p.bodies == ["to-a-phone", "to-a-bare"]
        # before-id with RSM <before/>: the earlier bound, paging backwards
        p = mam(cb, [("before-id", ids[4])], set_=rsm(max_=2, before=ids[3]))
        assert p.bodies == ["from-c", "from-a-2"] and not p.complete
        p = mam(cb, [("before-id", ids[3])], set_=rsm(max_=10, before=""))
        assert p.bodies == ["from-a-1", "from-c", "from-a-2"] and p.complete


def test_xep0313_errors_malformed_forms_and_unknown_ids(server, accounts):
    """Errors (XEP-0313 §4.1, §4.1.5, §4.3.1): unknown ids in after-id,
    before-id, ids or RSM after/before are item-not-found; a wrong
    FORM_TYPE, a malformed form, a bad date or JID are bad-request; an
    unknown field is feature-not-implemented; RSM <index/> is not
    supported; another account's archive is forbidden."""
    a, b = accounts(2)
    fill(server, a, b, 2)
    with login(server, b) as c:
        for fields, set_ in (([("after-id", "nope")], ""), ([("before-id", "nope")], ""),
                             ([("ids", ["nope"])], ""), ((), rsm(after="nope")),
                             ((), rsm(max_=2, before="nope"))):
            p = mam(c, fields, set_=set_)
            assert error_of(p) == "item-not-found", tostr(p.iq)
            assert p.iq.find("{%s}error" % NS_CLIENT).get("type") == "cancel"
        bad_type = ("<x xmlns='%s' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value>"
                    "</field></x>" % NS_DATA)
        dup = ("<x xmlns='%s' type='submit'><field var='with'><value>%s</value></field>"
               "<field var='with'><value>%s</value></field></x>" % (NS_DATA, a.jid, a.jid))
        for extra in (bad_type, dup, form([("start", "yesterday")]), form([("end", "2024-13-01T00:00:00Z")]),
                      form([("with", "a@b@c")]), form([("after-id", "")]),
                      "<set xmlns='%s'><max>-1</max></set>" % NS_RSM):
            assert error_of(mam(c, extra=extra)) == "bad-request", extra
        assert error_of(mam(c, [("{urn:example}full-text", "x")])) == "feature-not-implemented"
        assert error_of(mam(c, extra="<set xmlns='%s'><index>3</index></set>" % NS_RSM)) == \
            "feature-not-implemented"
        assert error_of(mam(c, [("ids", ["x%d" % i for i in range(101)])])) == "policy-violation"
        assert error_of(mam(c, to=a.jid)) == "forbidden"


def test_xep0313_4_1_5_query_form_and_disco_features(server, accounts):
    """The query form lists every supported field (ids as an open
    list-multi, XEP-0122 validate); the account's bare JID advertises
    urn:xmpp:mam:2 and #extended (XEP-0313 §7)."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = c.iq("<query xmlns='%s'/>" % NS_MAM)
        x = r.find("%s/%s" % (q(NS_MAM, "query"), q(NS_DATA, "x")))
        fields = {f.get("var"): f.get("type") for f in x.findall(q(NS_DATA, "field"))}
        assert fields == {"FORM_TYPE": "hidden", "with": "jid-single", "start": "text-single",
                          "end": "text-single", "before-id": "text-single", "after-id": "text-single",
                          "ids": "list-multi"}
        ids = [f for f in x.findall(q(NS_DATA, "field")) if f.get("var") == "ids"][0]
        v = ids.find("{http://jabber.org/protocol/xdata-validate}validate")
        assert v is not None and v.find("{http://jabber.org/protocol/xdata-validate}open") is not None
        info = c.iq("<query xmlns='%s'/>" % NS_DISCO_INFO, to=a.jid)
        feats = {f.get("var") for f in info.iter(q(NS_DISCO_INFO, "feature"))}
        assert {NS_MAM, NS_MAM + "#extended"} <= feats


def test_xep0313_5_metadata_first_and_last(server, accounts):
    """<metadata/> gives the first and last item's id and time; an empty
    archive an empty <metadata/>."""
    a, b = accounts(2)
    with login(server, b) as c:
        md = c.iq("<metadata xmlns='%s'/>" % NS_MAM).find(q(NS_MAM, "metadata"))
        assert md is not None and len(md) == 0
    ids = fill(server, a, b, 3)
    with login(server, b) as c:
        md = c.iq("<metadata xmlns='%s'/>" % NS_MAM).find(q(NS_MAM, "metadata"))
        start, end = md.find(q(NS_MAM, "start")), md.find(q(NS_MAM, "end"))
        assert (start.get("id"), end.get("id")) == (ids[0], ids[2])
        assert start.get("timestamp") <= end.get("timestamp")


def test_xep0359_forged_stanza_id_removed_and_not_stored(server, accounts):
    """XEP-0359 §6: a stanza-id claiming to be from the recipient's archive
    that the sender put in is removed; others' stanza-ids pass; the stored
    copy has no forged id either."""
    a, b = accounts(2)
    with login(server, a) as ca, login(server, b) as cb:
        send(ca, b.jid, "forged", extra="<stanza-id xmlns='%s' by='%s' id='fake'/>"
             "<stanza-id xmlns='%s' by='other@example.org' id='kept'/>" % (NS_SID, b.jid, NS_SID))
        m = cb.wait_for(is_chat)
        ids = stanza_ids(m)
        assert ("other@example.org", "kept") in ids
        mine = [i for by, i in ids if by == b.jid]
        assert len(mine) == 1 and mine[0] != "fake"
        stored = mam(cb).results[0][1]
        assert [s.get("id") for s in stored.findall(q(NS_SID, "stanza-id"))] == ["kept"]
        # a message that is not archived still loses the forgery
        ca.send("<message to='%s' type='headline'><body>h</body><stanza-id xmlns='%s' by='%s' id='f2'/>"
                "</message>" % (b.jid, NS_SID, b.jid))
        m = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "headline")
        assert stanza_ids(m) == []


def test_xep0313_5_1_1_only_storable_messages(server, accounts):
    """Not archived: headlines, errors, chat states without a body,
    messages with a no-store / no-permanent-store hint (XEP-0334);
    archived: a <store/> hint without body, OMEMO payloads without body."""
    a, b = accounts(2)
    with login(server, a) as ca, login(server, b) as cb:
        send(ca, b.jid, "headline", type_="headline")
        ca.send("<message to='%s' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/>"
                "</message>" % b.jid)
        send(ca, b.jid, "nostore", extra="<no-store xmlns='%s'/>" % NS_HINTS)
        send(ca, b.jid, "nopermanent", extra="<no-permanent-store xmlns='%s'/>" % NS_HINTS)
        ca.send("<message to='%s' type='chat' id='s1'><store xmlns='%s'/>"
                "<received xmlns='urn:xmpp:receipts' id='x'/></message>" % (b.jid, NS_HINTS))
        ca.send("<message to='%s' type='chat' id='o1'><encrypted xmlns='eu.siacs.conversations.axolotl'>"
                "<payload>AAAA</payload></encrypted></message>" % b.jid)
        send(ca, b.jid, "normal", type_="normal")
        sync(ca)
        last = cb.wait_for(lambda e: e.findtext(q(NS_CLIENT, "body")) == "normal")
        assert stanza_ids(last)
        got = [(r[1].get("id"), r[1].findtext(q(NS_CLIENT, "body"))) for r in mam(cb, set_=rsm(max_=20)).results]
        assert [g[1] for g in got] == [None, None, "normal"] and [g[0] for g in got][:2] == ["s1", "o1"]


def test_xep0160_offline_message_archived_once_with_stanza_id(server, accounts):
    """A message to an account without sessions is archived when it
    arrives and stored offline already stamped: delivered on login with
    the same stanza-id as its archive item, and in the archive once (also
    when it was sent to an unavailable full JID, which goes on to the bare
    JID)."""
    a, b = accounts(2)
    with login(server, a) as ca:
        send(ca, b.jid, "while-away")
        send(ca, b.jid + "/gone", "to-full")
        sync(ca)
    with login(server, b) as cb:
        got = [cb.wait_for(is_chat) for _ in range(2)]
        assert [g.findtext(q(NS_CLIENT, "body")) for g in got] == ["while-away", "to-full"]
        delivered = [stanza_ids(g) for g in got]
        assert all(len(d) == 1 and d[0][0] == b.jid for d in delivered), delivered
        p = mam(cb)
        assert p.bodies == ["while-away", "to-full"]
        assert p.ids == [d[0][1] for d in delivered]


def test_xep0313_nothing_archived_for_unknown_account(server, accounts):
    """A message to an account that does not exist is bounced and creates
    no archive (RFC 6121 §8.5.2.2.1)."""
    (a,) = accounts(1)
    ghost = "ghost%s" % new_id("")
    with login(server, a) as ca:
        send(ca, ghost + "@localhost", "hello?")
        err = ca.wait_for(lambda e: e.get("type") == "error")
        assert error_condition(err)[1] == "service-unavailable"
    assert [s for s in server.stored_stores(ghost) if s == "mam"] == []


def test_xep0313_account_deletion_removes_archive(server, accounts):
    """Deleting an account deletes its archive and preferences; an account
    created again with that name starts empty."""
    a, b = accounts(2)
    fill(server, a, b, 2)
    with login(server, b) as c:
        c.iq("<prefs xmlns='%s' default='always'><always><jid>x@y</jid></always></prefs>" % NS_MAM,
             type_="set")
    assert "mam" in server.stored_stores(b.user) and "mam_prefs" in server.stored_stores(b.user)
    server.ctl("deluser", b.jid, check=True)
    assert [s for s in server.stored_stores(b.user) if s.startswith("mam")] == []
    server.adduser(b.jid, b.password)
    with login(server, b) as c:
        assert mam(c).results == []


# ---- preferences (XEP-0441) -----------------------------------------------------------

def prefs(c, default=None, always=(), never=()):
    if default is None:
        r = c.iq("<prefs xmlns='%s'/>" % NS_MAM)
    else:
        r = c.iq("<prefs xmlns='%s' default='%s'><always>%s</always><never>%s</never></prefs>"
                 % (NS_MAM, default, "".join("<jid>%s</jid>" % j for j in always),
                    "".join("<jid>%s</jid>" % j for j in never)), type_="set")
    p = r.find(q(NS_MAM, "prefs"))
    assert p is not None, tostr(r)
    lists = [[j.text for j in p.find(q(NS_MAM, n)).findall(q(NS_MAM, "jid"))] for n in ("always", "never")]
    return p.get("default"), lists[0], lists[1]


def test_xep0441_preferences_always_never_roster_lists(server, accounts):
    """Preferences: the default is 'always' (module option); 'never' with an
    always-list archives only those JIDs; a never-list entry wins; 'roster'
    archives contacts in the roster only (both directions); a bad default
    is bad-request."""
    a, b, c3, d = accounts(4)
    with login(server, b) as cb, login(server, a) as ca, login(server, c3) as cc, login(server, d) as cd:
        assert prefs(cb) == ("always", [], [])
        assert prefs(cb, "never", always=[a.jid], never=[c3.jid + "/res"]) == \
            ("never", [a.jid], [c3.jid + "/res"])
        assert prefs(cb) == ("never", [a.jid], [c3.jid + "/res"])
        # each sender's messages are in before the next one sends: one order
        send(ca, b.jid, "from-a")
        sync(ca)
        send(cc, b.jid, "from-c")
        sync(cc)
        send(cb, c3.jid, "to-c")
        send(cb, a.jid, "to-a")
        sync(cb)
        assert mam(cb, set_=rsm(max_=20)).bodies == ["from-a", "to-a"]
        # the never list wins over the always list
        prefs(cb, "always", always=[a.jid], never=[a.jid])
        send(ca, b.jid, "from-a-2")
        sync(ca)
        send(cc, b.jid, "from-c-2")
        sync(cc)
        assert mam(cb, set_=rsm(max_=20)).bodies == ["from-a", "to-a", "from-c-2"]
        # roster: only contacts (d is put in b's roster)
        r = cb.iq("<query xmlns='%s'><item jid='%s'/></query>" % (NS_ROSTER, d.jid), type_="set")
        assert r.get("type") == "result"
        prefs(cb, "roster")
        send(cd, b.jid, "from-d")
        sync(cd)
        send(ca, b.jid, "from-a-3")
        sync(ca)
        send(cb, d.jid, "to-d")
        send(cb, a.jid, "to-a-3")
        sync(cb)
        assert mam(cb, set_=rsm(max_=20)).bodies[-2:] == ["from-d", "to-d"]
        r = cb.iq("<prefs xmlns='%s' default='sometimes'/>" % NS_MAM, type_="set")
        assert error_condition(r) == ("modify", "bad-request")


def test_xep0441_roster_default_for_account_offline(server, accounts):
    """default='roster' also holds for messages to an account without
    sessions (its roster is loaded to decide): a contact's message is
    archived and delivered, a stranger's only delivered."""
    a, b, s = accounts(3)
    with login(server, b) as cb:
        cb.iq("<query xmlns='%s'><item jid='%s'/></query>" % (NS_ROSTER, a.jid), type_="set")
        prefs(cb, "roster")
    with login(server, a) as ca, login(server, s) as cs:
        send(ca, b.jid, "contact")
        send(cs, b.jid, "stranger")
        sync(ca)
        sync(cs)
    with login(server, b) as cb:
        got = sorted(cb.wait_for(is_chat).findtext(q(NS_CLIENT, "body")) for _ in range(2))
        assert got == ["contact", "stranger"]
        assert mam(cb).bodies == ["contact"]


def test_xep0313_slixmpp_client_reads_archive_and_prefs(server, accounts):
    """slixmpp's xep_0313 (retrieve, iterate backwards over pages) and
    xep_0441 (preferences) against the server."""
    a, b = accounts(2)
    ids = fill(server, a, b, 7, prefix="s")

    async def scenario():
        c = await connect(server, b)
        c.register_plugin("xep_0313")
        c.register_plugin("xep_0441")
        res = await c["xep_0313"].retrieve(with_jid=a.jid, rsm={"max": 10})
        bodies = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in res["mam"]["results"]]
        assert bodies == ["s%d" % i for i in range(7)]
        assert [m["mam_result"]["id"] for m in res["mam"]["results"]] == ids
        seen = []
        async for m in c["xep_0313"].iterate(reverse=True, rsm={"max": 3}):
            seen.append(m["mam_result"]["forwarded"]["stanza"]["body"])
        assert seen == ["s%d" % i for i in reversed(range(7))]
        md = await c["xep_0313"].get_archive_metadata()
        assert md["mam_metadata"]["start"]["id"] == ids[0] and md["mam_metadata"]["end"]["id"] == ids[-1]
        await c["xep_0441"].set_preferences(default="roster", always=[a.jid])
        default, always, never = await c["xep_0441"].get_preferences()
        assert default == "roster" and [str(j) for j in always] == [a.jid] and list(never) == []
    run(scenario())


def test_xep0441_roster_default_with_privacy_each_message_once(server_factory, accounts):
    """Two modules holding the same message (api/xmppd/router.h
    xmppd_hold): mod_privacy while the offline account's lists load,
    mod_mam while its roster loads for default='roster' (the list needs no
    roster, so the two loads are apart). Each lets the message go on after
    itself, so every message reaches the account once (RFC 6121 §8.5.2.2.1
    via offline storage), the contact's is archived once, and the privacy
    list still refuses what it denies (XEP-0016 §2.13: service-unavailable)."""
    srv = server_factory({"modules": {"roster": {}, "presence": {}, "offline": {}, "ping": {},
                                      "privacy": {}, "mam": {"default_policy": "roster"}}})
    a, b, s, x = accounts(4, srv=srv)
    with login(srv, b) as cb:
        cb.iq("<query xmlns='%s'><item jid='%s'><group>friends</group></item></query>"
              % (NS_ROSTER, a.jid), type_="set")
        r = cb.iq("<query xmlns='jabber:iq:privacy'><list name='l'>"
                  "<item type='jid' value='%s' action='deny' order='1'/>"
                  "</list></query>" % x.jid, type_="set")
        assert r.get("type") == "result", tostr(r)
        r = cb.iq("<query xmlns='jabber:iq:privacy'><default name='l'/></query>", type_="set")
        assert r.get("type") == "result", tostr(r)
    with login(srv, a) as ca, login(srv, s) as cs, login(srv, x) as cx:
        for i in range(5):
            send(ca, b.jid, "contact-%d" % i)
            send(cs, b.jid, "stranger-%d" % i)
        refused = send(cx, b.jid, "denied")
        sync(ca)
        sync(cs)
        err = cx.wait_for(lambda el: el.get("id") == refused and el.get("type") == "error")
        assert error_condition(err)[1] == "service-unavailable"
    with login(srv, b) as cb:
        got = [cb.wait_for(is_chat).findtext(q(NS_CLIENT, "body")) for _ in range(10)]
        assert sorted(got) == sorted(["contact-%d" % i for i in range(5)] +
                                     ["stranger-%d" % i for i in range(5)])
        assert cb.quiet(pred=is_chat) == [], "a message came twice"
        assert mam(cb, set_=rsm(max_=20)).bodies == ["contact-%d" % i for i in range(5)]


# ---- retention ----------------------------------------------------------------------------

def test_xep0313_3_2_retention_item_limit_and_age(server_factory, accounts):
    """Retention (XEP-0313 §3.2: the oldest go first, ids are never
    reused): beyond max_items the oldest items are deleted; items older
    than expire_after go in the next retention pass."""
    srv = server_factory({"modules": {"roster": {}, "presence": {}, "offline": {}, "ping": {},
                                      "mam": {"max_items": 5, "expire_after": "2s",
                                              "cleanup_interval": "1s"}}})
    a, b = accounts(2, srv=srv)
    ids = fill(srv, a, b, 8)
    with login(srv, b) as c:
        deadline = time.monotonic() + scaled(10)
        while True:
            p = mam(c, set_=rsm(max_=20))
            if p.ids == ids[3:] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert p.ids == ids[3:], p.bodies
        deadline = time.monotonic() + scaled(10)
        while mam(c, set_=rsm(max_=20)).results and time.monotonic() < deadline:
            time.sleep(0.3)
        assert mam(c).results == []
        assert error_of(mam(c, [("after-id", ids[5])])) == "item-not-found"


# ---- the engine for other archives (mam_api.h) -----------------------------------------



@pytest.fixture(scope="module")
def mamroom_dir(tmp_path_factory):
    """tests/integration/modules/mamroom.c built against the SDK headers."""
    d = tmp_path_factory.mktemp("mamroom")
    subprocess.run(["cc", "-I", str(REPO / "api"), "-I", str(REPO / "modules" / "mam"), "-Wall", "-Werror",
                    "-fPIC", "-fvisibility=hidden", "-shared", "-o", str(d / "mod_mamroom.so"),
                    str(REPO / "tests" / "integration" / "modules" / "mamroom.c")],
                   check=True, timeout=scaled(60))
    return d


def test_mam_api_serves_another_modules_archive(server_factory, mamroom_dir, accounts):
    """A module with its own archive store (a room, as group chat would)
    uses mod_mam's published engine ("mam", mam_api.h): messages are
    stamped with <stanza-id by=room JID/> (a forged one removed), and MAM
    queries to the room JID page through that archive with the same
    rules; the account's own archive is another one."""
    srv = server_factory({"module_path": [str(mamroom_dir), str(MODULES)],
                          "modules": {"roster": {}, "presence": {}, "ping": {}, "mam": {},
                                      "mamroom": {}}})
    a, b = accounts(2, srv=srv)
    room = "room@localhost"
    with login(srv, a) as ca, login(srv, b) as cb:
        ids = []
        for i, c in enumerate((ca, cb, ca)):
            c.send("<message to='%s' type='groupchat'><body>r%d</body>"
                   "<stanza-id xmlns='%s' by='%s' id='forged'/></message>" % (room, i, NS_SID, room))
            echo = c.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "groupchat")
            sid = stanza_ids(echo)
            assert len(sid) == 1 and sid[0][0] == room and sid[0][1] != "forged", tostr(echo)
            ids.append(sid[0][1])
        p = mam(ca, to=room)
        assert p.bodies == ["r0", "r1", "r2"] and p.ids == ids and p.complete
        assert p.results[0][1].get("from") == room + "/" + a.user
        assert all(r[1].get("to") is None for r in p.results)
        assert mam(cb, [("with", b.jid)], to=room).bodies == ["r1"]
        p = mam(cb, set_=rsm(max_=2, before=""), to=room)
        assert p.bodies == ["r1", "r2"] and not p.complete
        assert error_of(mam(cb, [("after-id", "nope")], to=room)) == "item-not-found"
        md = cb.iq("<metadata xmlns='%s'/>" % NS_MAM, to=room).find(q(NS_MAM, "metadata"))
        assert md.find(q(NS_MAM, "end")).get("id") == ids[2]
        assert mam(ca).results == []  # groupchat is not in the account's archive
