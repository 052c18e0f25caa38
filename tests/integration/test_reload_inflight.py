"""Reloading modules while their asynchronous work is in flight.

The SDK's rule (api/xmppd/storage.h, auth.h, loop.h, router.h): every
asynchronous call a module makes is tied to it, and when the module
unloads each pending call comes back once, CANCELLED, before its unload()
so it can free what it holds; nothing is silently dropped. This test keeps
clients busy with storage and account work (vCards, private XML, rosters,
offline messages to an account that exists, last activity) while every
module, the storage driver in use (storage_sqlite, or storage_pgsql with
XMPPD_TEST_STORAGE=pgsql) and the auth provider included, is reloaded
over and over (test_reload_sql.py does the same with auth_sql and logins
in flight). Under AddressSanitizer/LeakSanitizer (the sanitizer pass of
the suite) a leak fails the server's shutdown check; on every build:

* no acknowledged write is lost: each client's vCard read back is the last
  one the server acknowledged or a later attempt (a write whose answer was
  an error because its module unloaded may still have landed: storage.h),
  and likewise each roster item;
* no accepted offline message is lost: every message to the offline
  account that was not bounced to its sender arrives when it logs in, once.
"""

import asyncio
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import STORAGE
from xmpptest import XMPPTestError, IqError, IqTimeout, connect, run, scaled

NS_VCARD = "vcard-temp"
NS_PRIVATE = "jabber:iq:private"
NS_ROSTER = "jabber:iq:roster"
NS_LAST = "jabber:iq:last"

RELOADED = ["roster", "presence", "offline", "vcard", "private", "last", "privacy",
            "blocking", "ping", "caps", "disco", "mam", "smacks", "pep", "avatar", "bookmarks",
            "muc", "muc_mam", "storage_pgsql" if STORAGE == "pgsql" else "storage_sqlite",
            "auth_internal"]


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "offline": {"max_messages": 100000},
                        "vcard": True, "private": True, "last": True, "privacy": True,
                        "blocking": True, "ping": {"keepalive_interval": "1s"}, "caps": True,
                        "disco": True, "mam": {"default_policy": "roster"}, "smacks": True,
                        "pep": True, "avatar": True, "bookmarks": True, "muc": True, "muc_mam": True}}


def iq(c, type_, child):
    i = c.Iq()
    i["type"] = type_
    i.append(child)
    return i


async def ok(c, type_, xml, to=None):
    """Sends an IQ; True when it was answered with a result."""
    i = iq(c, type_, ET.fromstring(xml))
    if to:
        i["to"] = to
    try:
        return await i.send(timeout=scaled(10))
    except (IqError, IqTimeout):
        return None


async def busy(c, name, target, stop, state):
    """One client's loop: vCard, private XML, roster, last activity of the
    offline account, and a message to it, each acknowledged or not."""
    i = 0
    while not stop.is_set():
        i += 1
        tag = "%s-%d" % (name, i)
        state["vcard_tries"].append(tag)
        if await ok(c, "set", "<vCard xmlns='%s'><NICKNAME>%s</NICKNAME></vCard>" % (NS_VCARD, tag)):
            state["vcard"] = tag
        await ok(c, "set", "<query xmlns='%s'><x xmlns='urn:test:%s'>%s</x></query>"
                 % (NS_PRIVATE, name, tag))
        contact = "contact-%s@example.net" % (i % 5)
        state["roster_tries"].setdefault(contact, []).append(tag)
        if await ok(c, "set", "<query xmlns='%s'><item jid='%s' name='%s'/></query>"
                    % (NS_ROSTER, contact, tag)):
            state["roster"][contact] = tag
        await ok(c, "get", "<query xmlns='%s'/>" % NS_LAST, to=target)
        body = "m-" + tag
        state["sent"].append(body)
        m = c.make_message(mto=target, mbody=body, mtype="chat")
        m["id"] = body  # a bounce may come back without the body (offline's do)
        m.send()
        await asyncio.sleep(0.01)


def reloader(server, reloaded, stop, errors, done):
    n = 0
    while not stop.is_set():
        mod = reloaded[n % len(reloaded)]
        r = server.ctl("module", "reload", mod)
        if r.returncode != 0:
            errors.append("reload %s: %s%s" % (mod, r.stdout, r.stderr))
        n += 1
        done[0] = n
    errors.append(n)


def reload_under_load(server, users, target, reloaded, also=None):
    """users keep busy() while a thread reloads the modules of reloaded in
    turn; then the checks above. also: a function run in a thread of its
    own meanwhile, given the stop event (more work in flight)."""
    states = [{"vcard": None, "vcard_tries": [], "roster": {}, "roster_tries": {}, "sent": []}
              for _ in users]
    stop = threading.Event()
    errors = []

    async def scenario():
        clients = [await connect(server, u, resource="busy") for u in users]
        reloads = [0]
        t = threading.Thread(target=reloader, args=(server, reloaded, stop, errors, reloads))
        t.start()
        extra = threading.Thread(target=also, args=(stop,)) if also else None
        if extra:
            extra.start()
        work = [asyncio.ensure_future(busy(c, "c%d" % k, target.jid, stop, states[k]))
                for k, c in enumerate(clients)]
        # At least 8 s, and enough work and reloads to mean something on a
        # loaded machine (bounded: a minute, scaled).
        t0 = time.monotonic()
        while time.monotonic() - t0 < scaled(60) and (
                time.monotonic() - t0 < scaled(8) or reloads[0] < 2 * len(reloaded) or
                sum(len(s["sent"]) for s in states) <= 30):
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*work)
        t.join()
        if extra:
            extra.join()
        # Bounces tell the senders which messages were not taken.
        await asyncio.sleep(1)
        bounced = []
        for k, c in enumerate(clients):
            while not c.messages.empty():
                m = c.messages.get_nowait()
                if m["type"] == "error" and (m["body"] or m["id"]):
                    bounced.append(m["body"] or m["id"])
        # Acknowledged writes read back.
        for k, c in enumerate(clients):
            if states[k]["vcard"]:
                r = await ok(c, "get", "<vCard xmlns='%s'/>" % NS_VCARD)
                assert r is not None, "vCard get failed after the reloads"
                nick = r.xml.find("{%s}vCard/{%s}NICKNAME" % (NS_VCARD, NS_VCARD))
                tries = states[k]["vcard_tries"]
                assert nick is not None and nick.text in tries[tries.index(states[k]["vcard"]):], \
                    (nick.text if nick is not None else None, states[k]["vcard"])
            r = await ok(c, "get", "<query xmlns='%s'/>" % NS_ROSTER)
            assert r is not None
            items = {it.get("jid"): it.get("name")
                     for it in r.xml.findall("{%s}query/{%s}item" % (NS_ROSTER, NS_ROSTER))}
            for contact, name in states[k]["roster"].items():
                tries = states[k]["roster_tries"][contact]
                assert items.get(contact) in tries[tries.index(name):], (contact, name, items.get(contact))
        # Every message not bounced reaches the account when it comes online.
        d = await connect(server, target, presence=0)
        got = []
        sent = {b for s in states for b in s["sent"]} - set(bounced)
        deadline = time.monotonic() + scaled(20)
        while len(set(got)) < len(sent) and time.monotonic() < deadline:
            try:
                m = await d.next_message(timeout=max(0.1, deadline - time.monotonic()))
            except XMPPTestError:
                break
            if m["body"]:
                got.append(m["body"])
        assert sent - set(got) == set(), "lost: %s" % sorted(sent - set(got))[:10]
        assert len(got) == len(set(got)), "delivered twice: %s" % [b for b in got if got.count(b) > 1][:5]
        return sum(len(s["sent"]) for s in states)

    total = run(scenario(), timeout=scaled(90))
    reloads = errors.pop()
    assert errors == [], errors
    assert reloads >= len(reloaded), reloads
    assert total > 30, total


def test_reload_every_module_with_work_in_flight(server, accounts):
    """SDK async rule: reloads during storage/auth work lose nothing
    acknowledged and (checked at shutdown under LeakSanitizer) leak
    nothing."""
    users = accounts(3)
    (target,) = accounts(1)
    reload_under_load(server, users, target, RELOADED)
