"""shared_roster: members of groups in each other's rosters.

Groups from the configuration (listed members, every account of the
host, groups shown to other groups) and from the directory (group
entries with member DNs, posixGroup memberUid values, an attribute on
user entries; slapd with the test directory). Checked against RFC 6121:
§2.1.3 roster results holding the shared contacts with their groups and
the implied subscription, §4.2.2 / §4.3 presence flowing without any
subscription request, §2.1.6 pushes when a refresh changes membership
(and presence following), §2.5 removal of a shared contact refused,
§2.6 the roster version changing with the groups; the groups staying
when the directory is away.
"""

import time

import pytest

import slapd_server
from slapd_server import PEOPLE, SERVICE_DN, SERVICE_PW
from xmpptest import RawClient, q, scaled, tostr

NS_ROSTER = "jabber:iq:roster"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
CLIENT = "jabber:client"


def roster(c, ver=None):
    """{jid: (subscription, name, sorted groups)} and the version of a
    roster get (None for the empty result of §2.6.3)."""
    attr = " ver='%s'" % ver if ver is not None else ""
    res = c.iq("<query xmlns='%s'%s/>" % (NS_ROSTER, attr))
    assert res.get("type") == "result", tostr(res)
    query = res.find(q(NS_ROSTER, "query"))
    if query is None:
        return None, None
    items = {}
    for it in query.findall(q(NS_ROSTER, "item")):
        items[it.get("jid")] = (it.get("subscription"), it.get("name"),
                                sorted(g.text for g in it.findall(q(NS_ROSTER, "group"))))
    return items, query.get("ver")


def login(srv, acc, presence=False):
    c = RawClient(srv.port)
    c.login(acc.user, acc.password, mech="PLAIN")
    if presence:  # available once its own presence comes back (RFC 6121 §4.2.2)
        c.send("<presence/>")
        presence_from(c, acc.jid)
    return c


def push_for(c, jid, timeout=10):
    """The next roster push (§2.1.6) about jid; acknowledged."""
    def pred(e):
        if e.tag != q(CLIENT, "iq") or e.get("type") != "set":
            return False
        it = e.find("%s/%s" % (q(NS_ROSTER, "query"), q(NS_ROSTER, "item")))
        return it is not None and it.get("jid") == jid
    iq = c.wait_for(pred, scaled(timeout))
    c.send("<iq type='result' id='%s'/>" % iq.get("id"))
    it = iq.find("%s/%s" % (q(NS_ROSTER, "query"), q(NS_ROSTER, "item")))
    return it.get("subscription"), sorted(g.text for g in it.findall(q(NS_ROSTER, "group")))


def presence_from(c, bare, type_=None, timeout=10):
    return c.wait_for(lambda e: e.tag == q(CLIENT, "presence") and e.get("from", "").split("/")[0] == bare
                      and e.get("type") == type_, scaled(timeout))


# ---------------------------------------------------------------------------
# groups from the configuration
# ---------------------------------------------------------------------------

def config_server(server_factory, accounts, n=4):
    """A server with accounts a, b (group staff), m (group managers, which
    shows staff and itself) and x (in no group)."""
    srv = server_factory({"modules": {"roster": True, "presence": True}})
    a, b, m, x = accounts(n, srv=srv)
    srv.config["modules"]["shared_roster"] = {
        "refresh": "1s",
        "groups": {"staff": {"name": "Staff", "members": [a.user, b.jid]},
                   "managers": {"name": "Managers", "members": [m.user], "shows": ["staff", "managers"]}}}
    srv.write_config()
    srv.restart()
    return srv, a, b, m, x


def test_rfc6121_2_1_3_shared_contacts_in_roster_results(server_factory, accounts):
    """§2.1.3: a and b (group Staff, shown to itself) have each other with
    subscription both in group Staff; m (Managers shows Staff) has a and b
    with subscription to, and a and b have m with from; x has nobody.
    Nothing of it is stored."""
    srv, a, b, m, x = config_server(server_factory, accounts)
    with login(srv, a) as c:
        items, ver = roster(c)
    assert items == {b.jid: ("both", None, ["Staff"]), m.jid: ("from", None, [])}, items
    with login(srv, m) as c:
        items, _ = roster(c)
    assert items == {a.jid: ("to", None, ["Staff"]), b.jid: ("to", None, ["Staff"])}, items
    with login(srv, x) as c:
        assert roster(c)[0] == {}
    assert "roster" not in srv.stored_stores(a.user)


def test_rfc6121_4_presence_without_subscription_requests(server_factory, accounts):
    """§4.2.2 and §4.3: b's initial presence reaches a (a has b with
    from... both) and m (who sees Staff), without any subscribe/subscribed
    exchange; a's initial presence probes b and gets b's presence; x
    gets nothing."""
    srv, a, b, m, x = config_server(server_factory, accounts)
    with login(srv, a, presence=True) as ca, login(srv, m, presence=True) as cm, \
            login(srv, x, presence=True) as cx, login(srv, b) as cb:
        cb.send("<presence><status>here</status></presence>")
        p = presence_from(ca, b.jid)
        assert p.find(q(CLIENT, "status")).text == "here"
        presence_from(cm, b.jid)
        assert not cx.quiet(pred=lambda e: e.tag == q(CLIENT, "presence") and e.get("from", "").startswith(b.user))
    with login(srv, b, presence=True) as cb, login(srv, a) as ca:
        ca.send("<presence/>")  # the initial presence probes a's contacts (§4.3)
        presence_from(ca, b.jid)


def test_rfc6121_2_5_shared_contact_cannot_be_removed(server_factory, accounts):
    """§2.5: removing a shared contact would not last (the group puts it
    back): <not-allowed/>. Renaming it works (stored as the account's
    own) and the shared group stays next to the account's own group."""
    srv, a, b, m, x = config_server(server_factory, accounts)
    with login(srv, a) as c:
        res = c.iq("<query xmlns='%s'><item jid='%s' subscription='remove'/></query>" % (NS_ROSTER, b.jid),
                   type_="set")
        assert res.get("type") == "error", tostr(res)
        assert res.find(".//{%s}not-allowed" % NS_STANZAS) is not None
        res = c.iq("<query xmlns='%s'><item jid='%s' name='Bee'><group>Mine</group></item></query>"
                   % (NS_ROSTER, b.jid), type_="set")
        assert res.get("type") == "result", tostr(res)
        items, _ = roster(c)
    assert items[b.jid] == ("both", "Bee", ["Mine", "Staff"]), items


def test_all_users_group_follows_new_accounts(server_factory, accounts):
    """An all_users group holds every account of the host (the auth
    provider's list): an account created later appears in the others'
    rosters after the next refresh, pushed to an interested resource
    (§2.1.6), and the roster version changes (§2.6)."""
    srv = server_factory({"modules": {"roster": True, "presence": True,
                                      "shared_roster": {"refresh": "1s",
                                                        "groups": {"everyone": {"name": "Everyone",
                                                                                "all_users": True}}}}})
    a, b = accounts(2, srv=srv)
    time.sleep(scaled(1.5))
    with login(srv, a) as c:
        items, ver = roster(c)
        assert items == {b.jid: ("both", None, ["Everyone"])}, items
        (n,) = accounts(1, srv=srv)
        assert push_for(c, n.jid) == ("both", ["Everyone"])
        items2, ver2 = roster(c, ver)
        assert items2 is not None and n.jid in items2 and ver2 != ver


# ---------------------------------------------------------------------------
# groups from the directory
# ---------------------------------------------------------------------------

pytestmark_ldap = pytest.mark.skipif(not slapd_server.available(),
                                     reason="slapd not installed (apt-get install slapd ldap-utils)")


class DirAccount:
    def __init__(self, user):
        self.user, self.password, self.jid = user, user + "-pw", user + "@localhost"


def ldap_overrides(slapd, **sr_ldap):
    ldap = {"enabled": True, "base": "ou=groups,dc=example,dc=org"}
    ldap.update(sr_ldap)
    return {"modules": {"auth_internal": None, "roster": True, "presence": True,
                        "auth_ldap": {"uris": [slapd.uri()], "base": PEOPLE, "bind_dn": SERVICE_DN,
                                      "bind_password": SERVICE_PW, "timeout": "2s", "reconnect_max": "300ms"},
                        "shared_roster": {"refresh": "1s", "ldap": ldap}}}


@pytest.fixture
def own_slapd():
    s = slapd_server.Slapd().start()
    yield s
    s.destroy()


def wait_roster(srv, acc, pred, what):
    deadline = time.monotonic() + scaled(10)
    while True:
        with login(srv, acc) as c:
            items, _ = roster(c)
        if pred(items):
            return items
        assert time.monotonic() < deadline, "%s: %r" % (what, items)
        time.sleep(0.3)


@pytestmark_ldap
def test_ldap_group_entries_member_and_memberuid(own_slapd, server_factory):
    """Group entries: groupOfNames engineering (member DNs: alice, bob;
    display name from description) and posixGroup sales (memberUid: dan,
    carol). Contacts get their directory display names. alice has bob in
    Engineering (both); dan has carol in Sales."""
    srv = server_factory(ldap_overrides(own_slapd))
    items = wait_roster(srv, DirAccount("alice"), lambda i: "bob@localhost" in i, "no shared contacts")
    assert items == {"bob@localhost": ("both", "Bob Builder", ["Engineering"])}, items
    items = wait_roster(srv, DirAccount("dan"), lambda i: "carol@localhost" in i, "no memberUid contacts")
    assert items == {"carol@localhost": ("both", None, ["Sales"])}, items


@pytestmark_ldap
def test_ldap_attribute_groups(own_slapd, server_factory):
    """Groups from an attribute of user entries (departmentNumber): alice
    and bob share "engineering", carol and dan "sales"."""
    srv = server_factory(ldap_overrides(own_slapd, filter=None, user_group_attribute="departmentNumber",
                                        contact_name_attribute=None, base=None))
    items = wait_roster(srv, DirAccount("dan"), lambda i: "carol@localhost" in i, "no attribute groups")
    assert items == {"carol@localhost": ("both", None, ["sales"])}, items


@pytestmark_ldap
def test_rfc6121_2_1_6_pushes_and_presence_on_membership_change(own_slapd, server_factory):
    """§2.1.6: dan joins engineering in the directory; after the next
    refresh alice's interested resource gets a push adding dan (both,
    Engineering) and, dan being online, dan's presence without any
    request. bob leaves engineering: alice gets a push removing him and
    his unavailable presence (§4.5.2 in spirit: he no longer may see her
    and she no longer sees him)."""
    srv = server_factory(ldap_overrides(own_slapd))
    alice, bob, dan = DirAccount("alice"), DirAccount("bob"), DirAccount("dan")
    wait_roster(srv, alice, lambda i: "bob@localhost" in i, "no shared contacts")
    eng = "cn=engineering,ou=groups,dc=example,dc=org"
    with login(srv, alice) as ca:
        roster(ca)  # interested (§2.2)
        ca.send("<presence/>")
        presence_from(ca, alice.jid)
        cb = login(srv, bob, presence=True)
        presence_from(ca, bob.jid)
        cd = login(srv, dan)
        cd.send("<presence><status>dan here</status></presence>")
        own_slapd.modify("dn: %s\nchangetype: modify\nadd: member\nmember: uid=dan,%s\n" % (eng, PEOPLE))
        assert push_for(ca, dan.jid) == ("both", ["Engineering"])
        p = presence_from(ca, dan.jid)
        assert p.find(q(CLIENT, "status")).text == "dan here"
        own_slapd.modify("dn: %s\nchangetype: modify\ndelete: member\nmember: uid=bob,%s\n" % (eng, PEOPLE))
        assert push_for(ca, bob.jid) == ("remove", [])
        presence_from(ca, bob.jid, type_="unavailable")
        items, _ = roster(ca)
        assert set(items) == {dan.jid}, items
        cb.close()
        cd.close()


@pytestmark_ldap
def test_ldap_groups_stay_while_the_directory_is_away(own_slapd, server_factory):
    """The directory killed: refreshes fail (logged), the last groups stay
    in force (accounts logged in keep their shared contacts)."""
    srv = server_factory(ldap_overrides(own_slapd))
    alice = DirAccount("alice")
    wait_roster(srv, alice, lambda i: "bob@localhost" in i, "no shared contacts")
    with login(srv, alice) as c:
        own_slapd.kill()
        deadline = time.monotonic() + scaled(10)
        while "reading the directory's users failed" not in srv.read_log():
            assert time.monotonic() < deadline, "no failed refresh"
            time.sleep(0.2)
        items, _ = roster(c)
    assert "bob@localhost" in items, items


@pytestmark_ldap
def test_active_directory_group(own_slapd, server_factory):
    """An Active Directory group (objectClass group, member DNs) with AD
    accounts (sAMAccountName): dave has frank in Support."""
    over = ldap_overrides(own_slapd, base="ou=ad,dc=example,dc=org")
    over["modules"]["auth_ldap"].update({"base": "ou=ad,dc=example,dc=org", "user_attribute": "sAMAccountName",
                                         "filter": "(&(objectClass=user)(sAMAccountName=%u))",
                                         "active_directory": True})
    srv = server_factory(over)
    items = wait_roster(srv, DirAccount("dave"), lambda i: "frank@localhost" in i, "no AD group")
    assert items == {"frank@localhost": ("both", None, ["Support"])}, items


def test_config_errors(server_factory):
    """A member that is not an account of the host stops the start with a
    line naming the group."""
    s = server_factory({"modules": {"roster": True, "shared_roster": {
        "groups": {"g": {"members": ["alice@elsewhere.example"]}}}}}, start=False)
    with pytest.raises(RuntimeError) as e:
        s.start()
    assert 'option groups.g.members: "alice@elsewhere.example" is not an account of localhost' in str(e.value)


@pytestmark_ldap
def test_reload_and_unload_with_directory_requests_in_flight(own_slapd, server_factory):
    """The async contract with work waiting on the directory: slapd stops
    answering (SIGSTOP) while a PLAIN login waits for its bind, a vCard
    read waits in vcard_ldap and a group refresh waits in shared_roster;
    then auth_ldap, vcard_ldap and shared_roster are reloaded and vcard_ldap
    unloaded. Every waiting request comes back once (the login:
    <temporary-auth-failure/>, the vCard read: an answer), xmppd stays up
    (and, under the sanitizers, clean), and once slapd answers again logins
    and directory vCards work on the new instances."""
    import signal
    import threading
    over = ldap_overrides(own_slapd)
    over["modules"]["vcard"] = {}
    over["modules"]["vcard_ldap"] = {"cache_ttl": "1s"}
    over["modules"]["auth_ldap"]["timeout"] = "30s"  # the requests wait until the reloads
    srv = server_factory(over)
    bob = DirAccount("bob")
    wait_roster(srv, DirAccount("alice"), lambda i: "bob@localhost" in i, "no shared contacts")
    with login(srv, bob) as cb:
        time.sleep(1.2)  # alice's cached vCard expires: the next read goes to the directory
        own_slapd.signal(signal.SIGSTOP)
        outcome = {}

        def stalled_login():
            with RawClient(srv.port) as c:
                c.open_stream()
                c.starttls()
                c.open_stream()
                outcome["login"] = c.auth_plain("alice", "alice-pw")
        t = threading.Thread(target=stalled_login)
        t.start()
        cb.send("<iq type='get' id='vc1' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
        time.sleep(scaled(1.5))  # a refresh of the groups is waiting too now
        for args in (("reload", "auth_ldap"), ("reload", "vcard_ldap"), ("reload", "shared_roster"),
                     ("unload", "vcard_ldap")):
            r = srv.ctl("module", *args, "localhost")
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        t.join(scaled(20))
        assert not t.is_alive()
        assert not outcome["login"].ok and outcome["login"].condition == "temporary-auth-failure", outcome
        res = cb.wait_for(lambda e: e.tag == q(CLIENT, "iq") and e.get("id") == "vc1", scaled(10))
        assert res.get("type") in ("result", "error"), tostr(res)
    own_slapd.signal(signal.SIGCONT)
    assert srv.running
    deadline = time.monotonic() + scaled(15)
    while True:
        try:
            with login(srv, bob) as c:
                break
        except Exception:
            assert time.monotonic() < deadline, "logins did not come back"
            time.sleep(0.3)
    srv.ctl("module", "load", "vcard_ldap", "localhost", check=True)
    with login(srv, bob) as c:
        res = c.iq("<vCard xmlns='vcard-temp'/>", to="alice@localhost")
        assert res.find(".//{vcard-temp}FN").text == "Alice Liddell", tostr(res)
