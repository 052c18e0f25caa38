"""Provisioning from the shell and moving accounts between xmppd servers:
xmppctl adduser/passwd with --password-file and --password, xmppctl roster,
xmppctl export / import (XEP-0227) of every kind of data, import-csv in
batches, 20,000 accounts at once. Each runs on the running server (through
its control socket) and on a stopped server's data (the modules started in
xmppctl), both paths the commands have."""

import asyncio
import secrets
import time
import xml.etree.ElementTree as ET

import pytest

import pie_util
import xmpptest
from conftest import Account, DOMAIN
from pie_util import full_server_overrides, summary
from xmpptest import Client, connect, run, scaled


@pytest.fixture(scope="module")
def config_overrides():
    return full_server_overrides()


def new_account(server, prefix="p"):
    a = Account("%s%s" % (prefix, secrets.token_hex(4)), secrets.token_urlsafe(12))
    server.adduser(a.jid, a.password)
    return a


def can_login(server, account, mech="SCRAM-SHA-256", password=None):
    async def go():
        c = Client(account.jid + "/t", password or account.password, server.port, mech=mech)
        xmpptest._live.append(c)
        await c.start()
    try:
        run(go(), timeout=scaled(20))
        return True
    except xmpptest.XMPPTestError:
        return False


# ---- adduser / passwd -------------------------------------------------------------

def test_adduser_password_file_and_flag(server, tmp_path):
    """A script's ways to give the password: the first line of a file, a
    flag; passwd takes the same."""
    a = Account("pf" + secrets.token_hex(4), "from a file, with spaces")
    pwfile = tmp_path / "pw"
    pwfile.write_text(a.password + "\nsecond line ignored\n")
    r = server.ctl("adduser", a.jid, "--password-file", str(pwfile))
    assert r.returncode == 0, r.stderr
    assert can_login(server, a)
    b = Account("pw" + secrets.token_hex(4), "flag-password")
    r = server.ctl("adduser", b.jid, "--password", b.password)
    assert r.returncode == 0, r.stderr
    assert can_login(server, b)
    r = server.ctl("passwd", b.jid, "--password", "changed-by-flag")
    assert r.returncode == 0, r.stderr
    assert can_login(server, b, password="changed-by-flag")
    assert not can_login(server, b)


def test_adduser_password_file_errors(server, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    r = server.ctl("adduser", "nobody1@%s" % DOMAIN, "--password-file", str(empty))
    assert r.returncode == 1 and "no password on its first line" in r.stderr
    r = server.ctl("adduser", "nobody2@%s" % DOMAIN, "--password-file", str(tmp_path / "missing"))
    assert r.returncode == 1 and "No such file" in r.stderr
    r = server.ctl("adduser", "nobody3@%s" % DOMAIN, "--bogus", "x")
    assert r.returncode == 2


# ---- roster -------------------------------------------------------------------------

def test_roster_add_list_remove_pushes_to_online_client(server):
    """xmppctl roster on the running server: the account's interested
    resources get the roster push (RFC 6121 §2.1.6) for an add and for a
    remove; list shows the item with its name, groups and subscription."""
    a, b = new_account(server), new_account(server)

    async def scenario():
        c = await connect(server, a)
        await pie_util.roster_items(c)  # now an interested resource
        r = server.ctl("roster", a.jid, "add", b.jid, "--name", "Bee", "--group", "G1",
                       "--group", "G2", "--subscription", "both")
        assert r.returncode == 0, r.stderr

        def is_push(iq_el):
            return iq_el.find("{%s}query/{%s}item" % (pie_util.NS_ROSTER, pie_util.NS_ROSTER)) is not None
        pushes = asyncio.Queue()
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath
        c.register_handler(Callback("push", MatchXPath("{jabber:client}iq"),
                                    lambda s: pushes.put_nowait(s.xml) if is_push(s.xml) else None))
        items = await pie_util.roster_items(c)
        assert items[b.jid] == ("both", "Bee", ["G1", "G2"])
        listed = server.ctl("roster", a.jid, "list")
        assert listed.returncode == 0
        assert "%s\tboth\tBee\tG1,G2" % b.jid in listed.stdout
        r = server.ctl("roster", a.jid, "remove", b.jid)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + scaled(5)
        while True:  # the add's push may come first
            push = await asyncio.wait_for(pushes.get(), max(0.1, deadline - time.monotonic()))
            item = push.find(".//{%s}item" % pie_util.NS_ROSTER)
            if item.get("subscription") == "remove":
                break
        assert item.get("jid") == b.jid
        assert b.jid not in await pie_util.roster_items(c)
    run(scenario())


def test_roster_errors(server):
    a = new_account(server)
    r = server.ctl("roster", "ghost%s@%s" % (secrets.token_hex(3), DOMAIN), "list")
    assert r.returncode == 1 and "no such user" in r.stderr
    r = server.ctl("roster", a.jid, "remove", "nobody@example.org")
    assert r.returncode == 1 and "is not in the roster" in r.stderr
    r = server.ctl("roster", a.jid, "add", "x@example.org", "--subscription", "sideways")
    assert r.returncode == 1 and "--subscription" in r.stderr
    r = server.ctl("roster", a.jid, "frobnicate")
    assert r.returncode == 1 and "usage" in r.stderr


def test_roster_on_stopped_server(server_factory):
    """With no server running, the command runs on its data in xmppctl;
    the next start serves what it wrote."""
    srv = server_factory(full_server_overrides(), start=False)
    a, b = (Account("s" + secrets.token_hex(4), "pw-" + secrets.token_hex(4)) for _ in range(2))
    for x in (a, b):
        srv.adduser(x.jid, x.password)
    r = srv.ctl("roster", a.jid, "add", b.jid, "--subscription", "to")
    assert r.returncode == 0, r.stderr
    srv.start()

    async def check():
        c = await connect(srv, a)
        assert (await pie_util.roster_items(c))[b.jid][0] == "to"
    run(check())


# ---- export / import between xmppd servers --------------------------------------------

def test_export_import_every_kind_of_data(server, server_factory, tmp_path):
    """XEP-0227 round trip: SCRAM keys (the user logs in with the same
    password on every mechanism), roster item and a pending subscription
    request, vCard, private XML, PEP item (XEP-0163) with its node, an
    offline message (delivered at login with its delay) and the archive
    (XEP-0313): what the first server holds, the second serves."""
    a, b, c_ = new_account(server, "ex"), new_account(server, "ex"), new_account(server, "ex")

    async def populate():
        ca = await connect(server, a, presence=0)
        cb = await connect(server, b, presence=0)
        server.ctl("roster", a.jid, "add", b.jid, "--name", "Bee", "--group", "Friends",
                   "--subscription", "both")
        await pie_util.set_vcard(ca, "Alice Export")
        await pie_util.set_private(ca, "urn:example:settings", "settings", "dark")
        await pie_util.publish_nick(ca, "Ali")
        cb.send_message(mto=a.jid, mbody="archived hello", mtype="chat")
        await ca.next_message(pred=lambda m: m["body"] == "archived hello")
        await ca.stop()
        await asyncio.sleep(0.3)
        cb.send_message(mto=a.jid, mbody="while you were away", mtype="chat")
        cc = await connect(server, c_)
        cc.send_presence(pto=a.jid, ptype="subscribe")  # stays pending
        await asyncio.sleep(1.0)
    run(populate())

    out = tmp_path / "export.xml"
    r = server.ctl("export", a.jid, str(out))
    assert r.returncode == 0, r.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    users = pie_util.users_of(out)
    el = users[(DOMAIN, a.user)]
    assert len(el.findall("{urn:xmpp:pie:0#scram}scram-credentials")) == 3
    assert el.get("password") is None

    target = server_factory(full_server_overrides())
    r = target.ctl("import", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert summary(r.stdout) == (1, 0, 0), r.stdout
    # exported again, the imported account gives the same data back
    again = tmp_path / "again.xml"
    assert target.ctl("export", a.jid, str(again)).returncode == 0
    el2 = pie_util.users_of(again)[(DOMAIN, a.user)]
    assert sorted(ch.tag for ch in el2) == sorted(ch.tag for ch in el)
    for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        assert can_login(target, a, mech=mech), mech

    async def check():
        ca = await connect(target, a)
        items = await pie_util.roster_items(ca)
        assert items[b.jid] == ("both", "Bee", ["Friends"])
        assert await pie_util.get_vcard_fn(ca) == "Alice Export"
        assert await pie_util.get_private(ca, "urn:example:settings", "settings") == "dark"
        assert await pie_util.get_nick(ca, a.jid) == "Ali"
        assert "archived hello" in await pie_util.mam_bodies(ca)
        ca.send_presence()
        m = await ca.next_message(pred=lambda m: m["body"] == "while you were away")
        assert m.xml.find("{urn:xmpp:delay}delay") is not None
        # the pending request is presented again at login (RFC 6121 §3.1.3)
        p = await ca.next_presence(pred=lambda p: p["type"] == "subscribe")
        assert p["from"].bare == c_.jid
    run(check())


def test_import_is_all_or_nothing_per_account(server, tmp_path):
    """An account whose creation fails leaves nothing behind: its roster,
    vCard and archive written before are taken back; the other accounts
    of the file are imported, and the output says which failed and why."""
    good, bad = "ok" + secrets.token_hex(4), "bad" + secrets.token_hex(4)
    # U+E000 (private use) is prohibited by SASLprep (RFC 4013 §2.3): no
    # keys can be made, after the data was written.
    doc = ("<server-data xmlns='urn:xmpp:pie:0'><host jid='%s'>"
           "<user name='%s' password='fine password'/>"
           "<user name='%s' password='private&#xE000;use'>"
           "<query xmlns='jabber:iq:roster'><item jid='x@example.org' subscription='both'/></query>"
           "<vCard xmlns='vcard-temp'><FN>Nobody</FN></vCard>"
           "<archive xmlns='urn:xmpp:pie:0#mam'><result xmlns='urn:xmpp:mam:2' id='m1'>"
           "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/>"
           "<message xmlns='jabber:client' from='x@example.org' to='%s@%s' type='chat'><body>hi</body>"
           "</message></forwarded></result></archive>"
           "</user></host></server-data>") % (DOMAIN, good, bad, bad, DOMAIN)
    f = tmp_path / "mixed.xml"
    f.write_text(doc)
    r = server.ctl("import", str(f))
    assert r.returncode == 1, r.stdout
    assert summary(r.stdout) == (1, 0, 1), r.stdout
    assert "failed   %s@%s: creating the account" % (bad, DOMAIN) in r.stdout
    assert server.stored_stores(bad) == []
    assert can_login(server, Account(good, "fine password"))


def test_import_reports_what_it_leaves_out(server, tmp_path):
    """Unknown data, a bad roster item, a duplicate archive id and a
    user without credentials are reported with the reason."""
    u, n = "sk" + secrets.token_hex(4), "nc" + secrets.token_hex(4)
    doc = ("<server-data xmlns='urn:xmpp:pie:0'><host jid='%s'>"
           "<user name='%s' password='pw-%s'>"
           "<query xmlns='jabber:iq:privacy'><list name='x'/></query>"
           "<query xmlns='jabber:iq:roster'><item jid='@@bad' subscription='both'/>"
           "<item jid='ok@example.org' subscription='sideways'/></query>"
           "<archive xmlns='urn:xmpp:pie:0#mam'>"
           "<result xmlns='urn:xmpp:mam:2' id='same'><forwarded xmlns='urn:xmpp:forward:0'>"
           "<message xmlns='jabber:client' from='a@example.org'><body>1</body></message></forwarded></result>"
           "<result xmlns='urn:xmpp:mam:2' id='same'><forwarded xmlns='urn:xmpp:forward:0'>"
           "<message xmlns='jabber:client' from='a@example.org'><body>2</body></message></forwarded></result>"
           "</archive></user>"
           "<user name='%s'/>"
           "</host><host jid='elsewhere.example'><user name='z' password='p'/></host>"
           "</server-data>") % (DOMAIN, u, u, n)
    f = tmp_path / "odd.xml"
    f.write_text(doc)
    r = server.ctl("import", str(f))
    assert summary(r.stdout) == (1, 1, 1), r.stdout
    out = r.stdout
    assert "not imported: <query xmlns='jabber:iq:privacy'/> (no module imports it)" in out
    assert "not imported: roster item @@bad (not a JID)" in out
    assert "not imported: roster item ok@example.org (subscription 'sideways')" in out
    assert "not imported: archived message same (id used twice)" in out
    assert "failed   %s@%s: no credentials" % (n, DOMAIN) in out
    assert "skipped  host elsewhere.example: not a host of" in out


def test_import_csv(server, tmp_path):
    """JID,PASSWORD lines (RFC 4180 quoting: a password with a comma or a
    quote); a header line; bad lines and other domains reported; the
    accounts log in."""
    a = Account("csv" + secrets.token_hex(3), 'with, comma "and quote"')
    b = Account("csv" + secrets.token_hex(3), "plain")
    f = tmp_path / "users.csv"
    f.write_text('jid,password\n%s,"with, comma ""and quote"""\n%s,plain\r\nnot-a-jid\n'
                 'x@other.example,pw\n' % (a.jid, b.jid))
    r = server.ctl("import-csv", str(f), timeout=scaled(60))
    assert summary(r.stdout) == (2, 1, 1), r.stdout
    assert "failed   line 4" in r.stdout
    assert can_login(server, a) and can_login(server, b)
    again = server.ctl("import-csv", str(f), timeout=scaled(60))
    assert summary(again.stdout) == (0, 3, 1), again.stdout


def test_twenty_thousand_accounts_in_one_import(server_factory, tmp_path):
    """Bulk provisioning: 20,000 accounts with their SCRAM keys (a XEP-0227
    file, as `xmppctl export` writes one) go in through batches of one
    request each, not one process per account; the time is printed."""
    srv = server_factory(full_server_overrides())
    seed = Account("seed" + secrets.token_hex(3), "seed password")
    srv.adduser(seed.jid, seed.password)
    out = tmp_path / "seed.xml"
    assert srv.ctl("export", seed.jid, str(out)).returncode == 0
    el = pie_util.users_of(out)[(DOMAIN, seed.user)]
    body = "".join(ET.tostring(ch, encoding="unicode") for ch in el)
    n = 20000
    bulk = tmp_path / "bulk.xml"
    with open(bulk, "w") as f:
        f.write("<server-data xmlns='urn:xmpp:pie:0'><host jid='%s'>\n" % DOMAIN)
        for i in range(n):
            f.write("<user name='bulk%05d'>%s</user>\n" % (i, body))
        f.write("</host></server-data>\n")
    t0 = time.monotonic()
    r = srv.ctl("import", str(bulk), timeout=scaled(600))
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert summary(r.stdout) == (n, 0, 0)
    print("imported %d accounts in %.1f s" % (n, took))
    users = srv.ctl("users", DOMAIN, timeout=scaled(60)).stdout.split()
    assert len(users) == n + 1
    assert can_login(srv, Account("bulk%05d" % (n - 1), seed.password))


def test_group_chat_rooms_move_to_a_stopped_server(server, server_factory, tmp_path):
    """A persistent room (XEP-0045 §10.1.3) with its configuration, owner
    and archived messages goes into the export (an extension element of
    xmppd's inside <host/>, which other servers skip); it is imported into a
    stopped server's data, and the started server serves it with its
    history. A running server's import reports the room as skipped: its
    group chat service keeps rooms in memory."""
    from muc_util import NS_DISCO_INFO, create, groupchat, iq_ok, join_ok, message_from, q, room_jid
    owner = new_account(server, "mo")
    room = room_jid("moved")

    async def populate():
        c = await connect(server, owner)
        await create(c, room, "boss", {"persistentroom": "1", "roomname": "Moving Room"})
        for body in ("first words", "second words"):
            groupchat(c, room, body)
            await message_from(c, room, lambda m, b=body: m["body"] == b)
        await asyncio.sleep(0.5)  # the archive writes follow the broadcast
    run(populate())
    out = tmp_path / "rooms.xml"
    r = server.ctl("export", DOMAIN, str(out), timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "<room xmlns='urn:xmppd:pie:muc:0' jid='%s'>" % room in text

    running = server_factory(full_server_overrides())
    r = running.ctl("import", str(out), timeout=scaled(120))
    assert "skipped  room %s: rooms are imported into a stopped server's data" % room in r.stdout

    target = server_factory(full_server_overrides(), start=False)
    r = target.ctl("import", str(out), timeout=scaled(120))
    assert "imported room %s (archive 2)" % room in r.stdout, r.stdout
    target.start()

    async def check():
        c = await connect(target, owner)
        info = await iq_ok(c, room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        ident = info.xml.find(q(NS_DISCO_INFO, "query")).find(q(NS_DISCO_INFO, "identity"))
        assert ident.get("name") == "Moving Room"
        await join_ok(c, room, "boss")
        await message_from(c, room, lambda m: m["body"] == "first words")
        await message_from(c, room, lambda m: m["body"] == "second words")
    run(check())
