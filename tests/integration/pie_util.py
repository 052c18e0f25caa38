"""Helpers for the import/export and provisioning tests: the default module
set (the block of contrib/xmppd.example.json, the one list quickstart.sh and
the installed configuration use), XEP-0227 parsing, and small XMPP actions
done with slixmpp's raw IQs."""

import json
import re
import xml.etree.ElementTree as ET

from conftest import REPO

PIE = "urn:xmpp:pie:0"
NS_ROSTER = "jabber:iq:roster"
NS_PRIVATE = "jabber:iq:private"
NS_VCARD = "vcard-temp"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_MAM = "urn:xmpp:mam:2"
NS_NICK = "http://jabber.org/protocol/nick"


def strip_comments(text):
    """JSON with // and /* */ comments (outside strings) to JSON."""
    out, i, n, in_str = [], 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def example_config():
    return json.loads(strip_comments((REPO / "contrib" / "xmppd.example.json").read_text()))


def default_module_lines():
    """The lines of the example's BEGIN/END DEFAULT MODULES block without
    its comments, as contrib/quickstart.sh copies them (each ends with a
    comma)."""
    text = (REPO / "contrib" / "xmppd.example.json").read_text()
    block = text.split("// BEGIN DEFAULT MODULES", 1)[1].split("// END DEFAULT MODULES", 1)[0]
    return "\n".join(l for l in block.splitlines()[1:] if l.strip() and not l.strip().startswith("//"))


def default_modules():
    """{name: options} of the example's BEGIN/END DEFAULT MODULES block."""
    block = strip_comments(default_module_lines()).strip().rstrip(",")
    return json.loads("{" + block + "}")


def full_server_overrides(**extra):
    """Overrides for server_factory: every default module (auth and storage
    stay the fixture's)."""
    mods = default_modules()
    # tests connect often from one address
    mods["limits"] = {"stanzas_per_second": 1000, "stanza_burst": 10000,
                      "login_failures": 1000}
    mods.update(extra)
    return {"modules": mods}


def users_of(path):
    """{(host, user): <user/> element} of a XEP-0227 file."""
    root = ET.parse(str(path)).getroot()
    out = {}
    for host in root:
        for user in host:
            out[(host.get("jid"), user.get("name"))] = user
    return out


def summary(output):
    m = re.search(r"^(\d+) imported, (\d+) skipped, (\d+) failed$", output, re.M)
    assert m, output
    return tuple(int(x) for x in m.groups())


async def iq(client, type_, payload, to=None, timeout=10):
    """Sends an IQ carrying payload (an ET element); returns the reply."""
    i = client.make_iq(ito=to, itype=type_)
    i.append(payload)
    return await i.send(timeout=timeout)


async def set_vcard(client, fn):
    v = ET.Element("{%s}vCard" % NS_VCARD)
    ET.SubElement(v, "{%s}FN" % NS_VCARD).text = fn
    return await iq(client, "set", v)


async def get_vcard_fn(client, to=None):
    r = await iq(client, "get", ET.Element("{%s}vCard" % NS_VCARD), to=to)
    fn = r.xml.find("{%s}vCard/{%s}FN" % (NS_VCARD, NS_VCARD))
    return fn.text if fn is not None else None


async def set_private(client, ns, name, text):
    q = ET.Element("{%s}query" % NS_PRIVATE)
    el = ET.SubElement(q, "{%s}%s" % (ns, name))
    el.text = text
    return await iq(client, "set", q)


async def get_private(client, ns, name):
    q = ET.Element("{%s}query" % NS_PRIVATE)
    ET.SubElement(q, "{%s}%s" % (ns, name))
    r = await iq(client, "get", q)
    el = r.xml.find("{%s}query/{%s}%s" % (NS_PRIVATE, ns, name))
    return el.text if el is not None else None


async def publish_nick(client, nick):
    ps = ET.Element("{%s}pubsub" % NS_PUBSUB)
    pub = ET.SubElement(ps, "{%s}publish" % NS_PUBSUB, node=NS_NICK)
    item = ET.SubElement(pub, "{%s}item" % NS_PUBSUB, id="current")
    ET.SubElement(item, "{%s}nick" % NS_NICK).text = nick
    return await iq(client, "set", ps)


async def get_nick(client, owner):
    ps = ET.Element("{%s}pubsub" % NS_PUBSUB)
    ET.SubElement(ps, "{%s}items" % NS_PUBSUB, node=NS_NICK)
    r = await iq(client, "get", ps, to=owner)
    n = r.xml.find(".//{%s}nick" % NS_NICK)
    return n.text if n is not None else None


async def mam_bodies(client):
    """Bodies of every message in the account's archive (XEP-0313 §4):
    the results arrive before the IQ result that ends the query."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    got = []
    qid = "q%d" % id(got)

    def on_msg(m):
        r = m.xml.find("{%s}result" % NS_MAM)
        if r is not None and r.get("queryid") == qid:
            b = r.find(".//{jabber:client}body")
            got.append(b.text if b is not None else None)
    client.register_handler(Callback("mam %s" % qid, MatchXPath("{jabber:client}message"), on_msg))
    try:
        await iq(client, "set", ET.Element("{%s}query" % NS_MAM, queryid=qid))
    finally:
        client.remove_handler("mam %s" % qid)
    return got


async def roster_items(client):
    """{jid: (subscription, name, [groups])} of a roster get without a
    version (RFC 6121 §2.1.3: the whole roster)."""
    r = await iq(client, "get", ET.Element("{%s}query" % NS_ROSTER))
    out = {}
    for it in r.xml.findall("{%s}query/{%s}item" % (NS_ROSTER, NS_ROSTER)):
        out[it.get("jid")] = (it.get("subscription"), it.get("name"),
                              sorted(g.text for g in it.findall("{%s}group" % NS_ROSTER)))
    return out


async def befriend(j, r, domain, timeout=15):
    """juliet and romeo, each in the other's roster with a name and a group,
    and a mutual presence subscription (RFC 6121 §3), on whatever server
    the two clients are connected to."""
    import asyncio
    import time
    jid_j, jid_r = "juliet@%s" % domain, "romeo@%s" % domain
    await j.update_roster(jid_r, name="Romeo", groups=["Montague"])
    await r.update_roster(jid_j, name="Juliet", groups=["Capulet"])
    j.send_presence(pto=jid_r, ptype="subscribe")
    r.send_presence(pto=jid_j, ptype="subscribe")
    deadline = time.monotonic() + timeout
    while (await roster_items(j)).get(jid_r, ("",))[0] != "both":
        assert time.monotonic() < deadline, "no mutual subscription"
        await asyncio.sleep(0.2)


def wait_listening(proc, port, timeout, name, tail):
    """Waits until proc accepts on 127.0.0.1:port; fails with tail() if it
    exits or does not listen within timeout seconds."""
    import socket
    import time
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "%s exited: %s" % (name, tail())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            assert time.monotonic() < deadline, "%s did not listen: %s" % (name, tail())
            time.sleep(0.2)
