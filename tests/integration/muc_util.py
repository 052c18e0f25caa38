"""Helpers for the group chat tests (mod_muc): raw MUC stanzas over slixmpp
clients (xmpptest.Client), so each test says exactly what it sends, and
readers for what comes back (status codes, items, errors).

Every wait is bounded (xmpptest.DEFAULT_TIMEOUT); "nothing arrives" is a
bounded quiet period (xmpptest.QUIET_PERIOD)."""

import asyncio
import json
import sqlite3
import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError, IqTimeout

import pg_cluster
import xmpptest
from xmpptest import XMPPTestError, new_id, xml_escape

MUC = "conference.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = NS_MUC + "#user"
NS_ADMIN = NS_MUC + "#admin"
NS_OWNER = NS_MUC + "#owner"
NS_ROOMCONFIG = NS_MUC + "#roomconfig"
NS_ROOMINFO = NS_MUC + "#roominfo"
NS_REQUEST = NS_MUC + "#request"
NS_REGISTER_FORM = NS_MUC + "#register"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_REGISTER = "jabber:iq:register"
NS_PING = "urn:xmpp:ping"
NS_DELAY = "urn:xmpp:delay"
NS_SID = "urn:xmpp:sid:0"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_MODERATE0 = "urn:xmpp:message-moderate:0"
NS_MODERATE1 = "urn:xmpp:message-moderate:1"
NS_RETRACT0 = "urn:xmpp:message-retract:0"
NS_RETRACT1 = "urn:xmpp:message-retract:1"
NS_FASTEN = "urn:xmpp:fasten:0"
NS_CONFERENCE = "jabber:x:conference"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_VCARD = "vcard-temp"

_rooms = [0]


def room_jid(prefix="room"):
    """A fresh room JID on the test service."""
    _rooms[0] += 1
    return "%s%d%s@%s" % (prefix, _rooms[0], new_id("")[:6], MUC)


def q(ns, tag):
    return "{%s}%s" % (ns, tag)


# ---- reading stanzas ----------------------------------------------------------

def xml_of(st):
    return st.xml if hasattr(st, "xml") else st


def user_x(st):
    return xml_of(st).find(q(NS_USER, "x"))


def codes(st):
    """The muc#user status codes of a stanza, as a set of ints."""
    x = user_x(st)
    if x is None:
        return set()
    return {int(s.get("code")) for s in x.findall(q(NS_USER, "status"))}


def item(st):
    """The attributes of the muc#user <item/> (plus 'reason' and 'actor' when
    present), or None."""
    x = user_x(st)
    it = x.find(q(NS_USER, "item")) if x is not None else None
    if it is None:
        return None
    d = dict(it.attrib)
    r = it.find(q(NS_USER, "reason"))
    if r is not None:
        d["reason"] = r.text or ""
    a = it.find(q(NS_USER, "actor"))
    if a is not None:
        d["actor"] = a.get("nick") or a.get("jid")
    return d


def error(st):
    """(type, condition, 'by') of a stanza error, or (None, None, None)."""
    for c in xml_of(st):
        if c.tag.endswith("}error"):
            cond = None
            for e in c:
                if e.tag.startswith("{%s}" % NS_STANZAS) and not e.tag.endswith("}text"):
                    cond = e.tag.split("}", 1)[1]
            return (c.get("type"), cond, c.get("by"))
    return (None, None, None)


def occupant_id(st):
    el = xml_of(st).find(q(NS_OCCUPANT_ID, "occupant-id"))
    return el.get("id") if el is not None else None


def stanza_id(st, by=None):
    for el in xml_of(st).findall(q(NS_SID, "stanza-id")):
        if by is None or el.get("by") == by:
            return el.get("id")
    return None


def form_values(x):
    """{var: [values]} of a jabber:x:data element."""
    out = {}
    for f in x.findall(q(NS_DATA, "field")):
        out[f.get("var")] = [v.text or "" for v in f.findall(q(NS_DATA, "value"))]
    return out


def bare(jid):
    return str(jid).split("/", 1)[0]


def resource(jid):
    s = str(jid)
    return s.split("/", 1)[1] if "/" in s else None


# ---- waiting ----------------------------------------------------------------------

def from_room(room):
    return lambda st: bare(st["from"]) == room


async def presence_from(c, occupant_jid, pred=None, timeout=None):
    """The next presence from room/nick (optionally matching pred)."""
    return await c.next_presence(timeout=timeout, pred=lambda p: str(p["from"]) == occupant_jid and
                                 (pred is None or pred(p)))


async def message_from(c, room, pred=None, timeout=None):
    return await c.next_message(timeout=timeout, pred=lambda m: bare(m["from"]) == room and
                                (pred is None or pred(m)))


async def quiet_presences(c, room, period=None):
    """Presences from room received during a quiet period."""
    await asyncio.sleep(period if period is not None else xmpptest.QUIET_PERIOD)
    got = []
    while not c.presences.empty():
        p = c.presences.get_nowait()
        if bare(p["from"]) == room:
            got.append(p)
    return got


def drain(c):
    """Forget everything received so far."""
    while not c.presences.empty():
        c.presences.get_nowait()
    while not c.messages.empty():
        c.messages.get_nowait()


# ---- sending ------------------------------------------------------------------------

def join_xml(room, nick, password=None, history=None, mucx=True, extra=""):
    inner = ""
    if password is not None:
        inner += "<password>%s</password>" % xml_escape(password)
    if history:
        inner += "<history %s/>" % " ".join("%s='%s'" % (k, xml_escape(str(v)))
                                           for k, v in history.items())
    x = "<x xmlns='%s'>%s</x>" % (NS_MUC, inner) if mucx else ""
    return "<presence to='%s/%s'>%s%s</presence>" % (xml_escape(room), xml_escape(nick), x, extra)


async def join(c, room, nick, password=None, history=None, extra="", timeout=None):
    """Sends a MUC join and returns the answer: the self-presence (110) or
    a presence error from the room."""
    c.send_raw(join_xml(room, nick, password, history, extra=extra))
    return await c.next_presence(timeout=timeout, pred=lambda p: bare(p["from"]) == room and (
        p["type"] == "error" or 110 in codes(p)))


async def join_ok(c, room, nick, **kw):
    p = await join(c, room, nick, **kw)
    if p["type"] == "error":
        raise XMPPTestError("join of %s as %s failed: %s" % (room, nick, p))
    return p


async def iq(c, to, payload, type_="get", timeout=None):
    """Sends an IQ with payload (XML text) and returns the reply stanza,
    result or error."""
    i = c.make_iq(ito=to, itype=type_)
    i.append(ET.fromstring(payload))
    try:
        return await i.send(timeout=timeout or xmpptest.DEFAULT_TIMEOUT)
    except IqError as e:
        return e.iq
    except IqTimeout:
        raise XMPPTestError("timeout: no reply to %s" % payload)


async def iq_ok(c, to, payload, type_="get"):
    r = await iq(c, to, payload, type_)
    if r["type"] != "result":
        raise XMPPTestError("IQ %s to %s failed: %s" % (payload, to, r))
    return r


def submit_form(fields, form_type=NS_ROOMCONFIG, ftype="submit"):
    """A jabber:x:data submission: fields is {var: value or [values]}."""
    out = ["<x xmlns='%s' type='%s'>" % (NS_DATA, ftype)]
    if form_type:
        out.append("<field var='FORM_TYPE'><value>%s</value></field>" % form_type)
    for var, v in fields.items():
        vals = v if isinstance(v, (list, tuple)) else [v]
        out.append("<field var='%s'>%s</field>" % (
            xml_escape(var), "".join("<value>%s</value>" % xml_escape(str(x)) for x in vals)))
    out.append("</x>")
    return "".join(out)


async def configure(c, room, fields=None):
    """Submits the room configuration form (fields {var suffix or var: value});
    an empty dict makes an instant room. Returns the reply."""
    full = {}
    for k, v in (fields or {}).items():
        full[k if "#" in k else "muc#roomconfig_" + k] = v
    body = submit_form(full) if fields else "<x xmlns='%s' type='submit'/>" % NS_DATA
    return await iq(c, room, "<query xmlns='%s'>%s</query>" % (NS_OWNER, body), "set")


async def create(c, room, nick="owner", fields=None):
    """Creates a room (join, then the configuration: instant when fields is
    empty) and returns the creator's self-presence."""
    p = await join_ok(c, room, nick)
    if 201 not in codes(p):
        raise XMPPTestError("room %s existed already: %s" % (room, p))
    r = await configure(c, room, fields)
    if r["type"] != "result":
        raise XMPPTestError("configuration of %s failed: %s" % (room, r))
    return p


def admin_item(**attrs):
    reason = attrs.pop("reason", None)
    a = " ".join("%s='%s'" % (k, xml_escape(v)) for k, v in attrs.items())
    inner = "<reason>%s</reason>" % xml_escape(reason) if reason is not None else ""
    return "<item %s>%s</item>" % (a, inner)


async def admin(c, room, *items, type_="set"):
    return await iq(c, room, "<query xmlns='%s'>%s</query>" % (NS_ADMIN, "".join(items)), type_)


def groupchat(c, room, body, extra="", id_=None):
    c.send_raw("<message to='%s' type='groupchat'%s><body>%s</body>%s</message>" % (
        room, " id='%s'" % id_ if id_ else "", xml_escape(body), extra))


def leave(c, room, nick, status=None):
    st = "<status>%s</status>" % xml_escape(status) if status else ""
    c.send_raw("<presence to='%s/%s' type='unavailable'>%s</presence>" % (room, xml_escape(nick), st))


# ---- the room archive, read from the storage driver's tables ---------------------------------

def archive_items(server, room):
    """(id, with, message element) of the room's archive, oldest first, read
    from the storage driver's tables (the id is the one the room chose)."""
    if server.config.get("storage") == "pgsql":
        dsn = server.config["modules"]["storage_pgsql"]["connect"]
        out = pg_cluster.psql(dsn, "SELECT key, with_jid, value FROM xmppd_archive WHERE store = "
                                   "'muc_archive' AND username = '%s' ORDER BY id" % room)
        rows = [line.split("|", 2) for line in out.splitlines() if line]
        return [(r[0], r[1] or None, ET.fromstring(json.loads(r[2]))) for r in rows]
    db = sqlite3.connect(str(server.data_dir / "xmppd.sqlite"))
    try:
        return [(k, w, ET.fromstring(json.loads(v))) for k, w, v in db.execute(
            "SELECT key, with_jid, value FROM archive WHERE store = 'muc_archive' AND user = ? "
            "ORDER BY id", (room,))]
    finally:
        db.close()


async def archived(server, room, n):
    """The room's archive once it holds n items (the write completes after
    the broadcast)."""
    for _ in range(100):
        items = archive_items(server, room)
        if len(items) >= n:
            return items
        await asyncio.sleep(0.05)
    raise AssertionError("the archive of %s holds %d items, not %d" % (room, len(items), n))
