"""XEP-0313 Message Archive Management (urn:xmpp:mam:2 and #extended),
XEP-0359 stanza-ids, XEP-0441 archiving preferences, retention, and the
consistency of offline storage (XEP-0160) with the archive.

Raw checks where the exact stanzas matter, slixmpp's xep_0313/xep_0441
plugins where a real client's use matters. Every test creates its own
accounts, so the module-scoped server's archives do not mix.
"""

import time

import pytest

from xmpptest import (NS_CLIENT, RawClient, connect, error_condition, new_id, q, run, scaled,
                      tostr, xml_escape)

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

class Client(RawClient):
    def __exit__(self, *exc):
        try:
            if not self.eof and not self.reader.closed:
                self.close_stream()
                self.wait_closed(scaled(2))
        except (OSError, ValueError):
            pass
        self.close()


def login(server, account, resource=None, presence=True):
    c = Client(server.port)
    c.login(account.user, account.password, resource=resource)
    if presence:
        c.send_presence()
    return c


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
    return error_condition(page.iq)


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
