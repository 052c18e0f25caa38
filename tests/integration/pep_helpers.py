"""Helpers shared by the PEP, pubsub, avatar and bookmarks tests: raw
clients that log in, make contacts through the presence protocol, and speak
XEP-0060 by hand where the exact bytes matter."""

import time

from xmpptest import NS_CLIENT, PoliteClient, connect, error_condition, new_id, q, scaled, tostr

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = NS_PUBSUB + "#owner"
NS_PUBSUB_EVENT = NS_PUBSUB + "#event"
NS_PUBSUB_ERRORS = NS_PUBSUB + "#errors"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_PING = "urn:xmpp:ping"
NS_DELAY = "urn:xmpp:delay"


class Client(PoliteClient):
    """PoliteClient that answers the server's disco#info queries for its
    caps whenever it reads (the server asks once per verification string)
    and keeps what it reads but does not want yet in `held`."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.held = []

    def take(self, timeout):
        """The next element that is not a disco query, held ones first; None
        on timeout."""
        if self.held:
            return self.held.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                el = self.next_element(max(0.01, deadline - time.monotonic()))
            except AssertionError:
                return None
            if not answer_disco(self, el):
                return el
            if time.monotonic() >= deadline:
                return None


async def interested(server, account, plugins, event, namespace):
    """A slixmpp client (its plugins registered) that announces NAMESPACE
    +notify in its caps (xep_0163), is available, and resolves the returned
    future with the first `event` it gets."""
    import asyncio
    c = await connect(server, account)
    for p in plugins:
        c.register_plugin(p)
    got = asyncio.get_event_loop().create_future()
    c.add_event_handler(event, lambda m: got.done() or got.set_result(m))
    c["xep_0163"].add_interest(namespace)
    await asyncio.sleep(0.2)  # the caps update is asynchronous in slixmpp
    c.send_presence()
    return c, got


def login(server, account, resource=None):
    c = Client(server.port)
    c.login(account.user, account.password, resource=resource)
    return c


def sync(c):
    """An IQ round trip: everything c sent before is handled."""
    r = iq(c, "<ping xmlns='%s'/>" % NS_PING, to="localhost")
    assert r.get("type") == "result", tostr(r)


def befriend(server, a, b, both=True):
    """a subscribes to b's presence (b approves); both: and back. Done
    through the protocol (RFC 6121 §3.1), neither needs to stay online."""
    with login(server, a) as ca, login(server, b) as cb:
        pairs = [(ca, b, cb, a)] + ([(cb, a, ca, b)] if both else [])
        for c1, t2, c2, t1 in pairs:
            c1.send("<presence to='%s' type='subscribe'/>" % t2.jid)
            sync(c1)
            c2.send("<presence to='%s' type='subscribed'/>" % t1.jid)
            sync(c2)


def caps_presence(c, features, node="https://xmpptest.example/client", priority=None):
    """Sends available presence with XEP-0115 caps for an identity
    client/pc/test and features; the client answers the server's
    disco#info query itself (answer_disco). Returns the ver."""
    import base64
    import hashlib
    feats = sorted(set(features) | {NS_DISCO_INFO, NS_CAPS})
    s = "client/pc//test<" + "".join(f + "<" for f in feats)
    ver = base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()
    c.caps = (node, ver, feats)
    prio = "<priority>%d</priority>" % priority if priority is not None else ""
    c.send("<presence>%s<c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>"
           % (prio, NS_CAPS, node, ver))
    return ver


def answer_disco(c, el):
    """Answers a disco#info query for c's caps node; True when el was one."""
    qel = el.find(q(NS_DISCO_INFO, "query"))
    if el.tag != q(NS_CLIENT, "iq") or el.get("type") != "get" or qel is None:
        return False
    node, ver, feats = getattr(c, "caps", (None, None, []))
    body = "<identity category='client' type='pc' name='test'/>" + "".join(
        "<feature var='%s'/>" % f for f in feats)
    c.send("<iq type='result' id='%s' to='%s'><query xmlns='%s' node='%s'>%s</query></iq>"
           % (el.get("id"), el.get("from"), NS_DISCO_INFO, qel.get("node") or "", body))
    return True


def events(c, period=None, node=None):
    """PubSub event messages received within period, optionally only those
    about node (others stay held)."""
    out, keep = [], []
    deadline = time.monotonic() + (period if period is not None else scaled(1.0))
    while True:
        remaining = deadline - time.monotonic()
        el = c.take(remaining) if remaining > 0 else (c.held.pop(0) if c.held else None)
        if el is None:
            break
        ev = el.find(q(NS_PUBSUB_EVENT, "event"))
        if el.tag == q(NS_CLIENT, "message") and ev is not None and (
                node is None or any(x.get("node") == node for x in ev)):
            out.append(el)
        else:
            keep.append(el)
    c.held = keep + c.held
    return out


def wait_event(c, node, timeout=None):
    """The next event message about node (raises on timeout)."""
    deadline = time.monotonic() + (timeout or scaled(5))
    while time.monotonic() < deadline:
        got = events(c, min(0.2, max(0.01, deadline - time.monotonic())), node)
        if got:
            c.held = got[1:] + c.held
            return got[0]
    raise AssertionError("no event about %s reached %s" % (node, getattr(c, "jid", "?")))


def pubsub_iq(c, body, type_="set", to=None, owner=False):
    ns = NS_PUBSUB_OWNER if owner else NS_PUBSUB
    return iq(c, "<pubsub xmlns='%s'>%s</pubsub>" % (ns, body), type_, to)


def iq(c, body, type_="get", to=None, timeout=None):
    """Sends an IQ and returns its answer; what arrives meanwhile is held."""
    iid = new_id("iq")
    attrs = " type='%s' id='%s'" % (type_, iid) + (" to='%s'" % to if to else "")
    c.send("<iq%s>%s</iq>" % (attrs, body))
    deadline = time.monotonic() + (timeout or scaled(5))
    keep = []
    while True:
        el = c.take(max(0.01, deadline - time.monotonic()))
        if el is None:
            c.held = keep + c.held
            raise AssertionError("no answer to %s" % body)
        if el.tag == q(NS_CLIENT, "iq") and el.get("id") == iid:
            c.held = keep + c.held
            return el
        keep.append(el)


def form(form_type, fields, type_="submit"):
    """A data form with FORM_TYPE and fields {var: value or [values]}."""
    out = "<x xmlns='%s' type='%s'><field var='FORM_TYPE' type='hidden'><value>%s</value></field>" % (
        NS_DATA, type_, form_type)
    for var, v in fields.items():
        vals = v if isinstance(v, list) else [v]
        out += "<field var='%s'>%s</field>" % (var, "".join("<value>%s</value>" % x for x in vals))
    return out + "</x>"


def publish(c, node, payload, item_id=None, options=None, to=None):
    item = "<item%s>%s</item>" % (" id='%s'" % item_id if item_id else "", payload)
    po = ""
    if options is not None:
        po = "<publish-options>%s</publish-options>" % form(NS_PUBSUB + "#publish-options", options)
    return pubsub_iq(c, "<publish node='%s'>%s</publish>%s" % (node, item, po), to=to)


def items(c, node, to=None, max_items=None):
    attr = " max_items='%d'" % max_items if max_items else ""
    return pubsub_iq(c, "<items node='%s'%s/>" % (node, attr), type_="get", to=to)


def item_ids(reply):
    its = reply.find("%s/%s" % (q(NS_PUBSUB, "pubsub"), q(NS_PUBSUB, "items")))
    assert its is not None, tostr(reply)
    return [i.get("id") for i in its.findall(q(NS_PUBSUB, "item"))]


def pubsub_error(reply):
    """(type, condition, pubsub#errors condition or None) of an error reply."""
    assert reply.get("type") == "error", tostr(reply)
    t, cond = error_condition(reply)
    err = reply.find(q(NS_CLIENT, "error"))
    ps = [c.tag.split("}")[1] for c in err if c.tag.startswith("{%s}" % NS_PUBSUB_ERRORS)]
    return (t, cond, ps[0] if ps else None)


def config_fields(reply, owner_el="configure"):
    """{var: [values]} of the node configuration form in reply."""
    x = reply.find("%s/%s/%s" % (q(NS_PUBSUB_OWNER, "pubsub"), q(NS_PUBSUB_OWNER, owner_el),
                                 q(NS_DATA, "x")))
    assert x is not None, tostr(reply)
    return {f.get("var"): [v.text or "" for v in f.findall(q(NS_DATA, "value"))]
            for f in x.findall(q(NS_DATA, "field"))}
