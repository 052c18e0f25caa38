"""vcard_ldap: vCards (XEP-0054 vcard-temp) from the directory.

The test directory (modules/auth_ldap/testdata/directory.ldif, served by
a private slapd) holds alice with a full inetOrgPerson entry and a JPEG
jpegPhoto, and dave as an Active Directory user. Checked: the mapping of
attributes to vCard fields (XEP-0054 §3.1 layout), the two modes (merge:
the directory's fields over the account's own; directory: read-only,
sets <not-allowed/> per XEP-0054 §3.2's error rules), user_fields, the
cache and its time to live, a changed entry announced so the XEP-0153 /
XEP-0398 §4 photo hash in presence follows, an unreachable directory
(the last read is served), an unknown account (<service-unavailable/>).
"""

import base64
import hashlib
import time

import pytest

import slapd_server
from slapd_server import PEOPLE, SERVICE_DN, SERVICE_PW
from xmpptest import RawClient, q, scaled, tostr

pytestmark = pytest.mark.skipif(not slapd_server.available(),
                                reason="slapd not installed (apt-get install slapd ldap-utils)")

NS_VCARD = "vcard-temp"
NS_UPDATE = "vcard-temp:x:update"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ALICE_PHOTO = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////"
    "////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA=")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture(scope="module")
def slapd():
    s = slapd_server.Slapd().start()
    yield s
    s.destroy()


def overrides(slapd, vcard_ldap=None, **auth):
    a = {"uris": [slapd.uri()], "base": PEOPLE, "bind_dn": SERVICE_DN, "bind_password": SERVICE_PW,
         "timeout": "2s", "reconnect_max": "300ms"}
    a.update(auth)
    return {"modules": {"auth_internal": None, "auth_ldap": a, "vcard": {},
                        "vcard_ldap": vcard_ldap if vcard_ldap is not None else {}}}


def login(srv, user):
    c = RawClient(srv.port)
    c.login(user, user + "-pw", mech="PLAIN")
    return c


def vcard_of(c, jid=None):
    res = c.iq("<vCard xmlns='%s'/>" % NS_VCARD, to=jid)
    assert res.get("type") == "result", tostr(res)
    vc = res.find(q(NS_VCARD, "vCard"))
    assert vc is not None, tostr(res)
    return vc


def text(vc, path):
    el = vc.find("/".join(q(NS_VCARD, p) for p in path.split("/")))
    return el.text if el is not None else None


def set_vcard(c, inner):
    return c.iq("<vCard xmlns='%s'>%s</vCard>" % (NS_VCARD, inner), type_="set")


def test_xep0054_fields_mapped_from_the_entry(slapd, server_factory):
    """XEP-0054 §3.1: bob asks for alice's vCard and gets her entry mapped
    with the default inetOrgPerson mapping: FN, N, EMAIL (INTERNET,
    USERID), TEL WORK and CELL, ORG, TITLE, PHOTO (TYPE image/jpeg, the
    jpegPhoto bytes in BINVAL)."""
    srv = server_factory(overrides(slapd))
    with login(srv, "bob") as c:
        vc = vcard_of(c, "alice@localhost")
    assert text(vc, "FN") == "Alice Liddell"
    assert text(vc, "N/FAMILY") == "Liddell" and text(vc, "N/GIVEN") == "Alice"
    em = vc.find(q(NS_VCARD, "EMAIL"))
    assert em.find(q(NS_VCARD, "INTERNET")) is not None and text(vc, "EMAIL/USERID") == "alice@example.org"
    tels = {("WORK" if t.find(q(NS_VCARD, "WORK")) is not None else "CELL"): t.find(q(NS_VCARD, "NUMBER")).text
            for t in vc.findall(q(NS_VCARD, "TEL"))}
    assert tels == {"WORK": "+44 1865 270000", "CELL": "+44 7700 900001"}, tels
    assert text(vc, "ORG/ORGNAME") == "Example Org" and text(vc, "ORG/ORGUNIT") == "Engineering"
    assert text(vc, "TITLE") == "Chief Explorer"
    assert text(vc, "PHOTO/TYPE") == "image/jpeg"
    assert base64.b64decode(text(vc, "PHOTO/BINVAL")) == ALICE_PHOTO


def test_active_directory_mapping(slapd, server_factory):
    """An Active Directory mapping (README example): FN from displayName,
    ORGNAME from company, ORGUNIT from department; an AD user entry found
    by sAMAccountName."""
    srv = server_factory(overrides(
        slapd, {"map": {"fn": "displayName", "org": "company", "orgunit": "department", "photo": "thumbnailPhoto"}},
        base="ou=ad,dc=example,dc=org", filter="(&(objectClass=user)(sAMAccountName=%u))",
        user_attribute="sAMAccountName", active_directory=True))
    with login(srv, "dave") as c:
        vc = vcard_of(c)
    assert text(vc, "FN") == "Dave Doe"
    assert text(vc, "ORG/ORGNAME") == "Example Corp" and text(vc, "ORG/ORGUNIT") == "IT"
    assert text(vc, "TITLE") == "Administrator"
    assert text(vc, "EMAIL/USERID") == "dave@corp.example.org"


def test_merge_mode_directory_fields_win(slapd, server_factory):
    """mode merge: the account stores its own vCard; the served vCard
    keeps its fields the directory lacks (NICKNAME, DESC) and takes the
    directory's for those it has (FN, TITLE). With TITLE in user_fields
    the account's TITLE wins."""
    srv = server_factory(overrides(slapd))
    with login(srv, "bob") as c:
        r = set_vcard(c, "<FN>Not Bob</FN><NICKNAME>Bobby</NICKNAME><TITLE>King</TITLE><DESC>hi</DESC>")
        assert r.get("type") == "result", tostr(r)
        vc = vcard_of(c)
    assert text(vc, "FN") == "Bob Builder" and text(vc, "TITLE") == "Engineer"
    assert text(vc, "NICKNAME") == "Bobby" and text(vc, "DESC") == "hi"
    assert len(vc.findall(q(NS_VCARD, "FN"))) == 1

    srv2 = server_factory(overrides(slapd, {"user_fields": ["TITLE"]}))
    with login(srv2, "bob") as c:
        assert set_vcard(c, "<TITLE>King</TITLE>").get("type") == "result"
        vc = vcard_of(c)
    assert text(vc, "TITLE") == "King" and text(vc, "FN") == "Bob Builder"


def test_xep0054_directory_mode_is_read_only(slapd, server_factory):
    """mode directory: the vCard is the directory's alone; a set is
    refused with <not-allowed/> (XEP-0054 §3.2: the server does not let
    the user change it) and nothing is stored."""
    srv = server_factory(overrides(slapd, {"mode": "directory"}))
    with login(srv, "bob") as c:
        r = set_vcard(c, "<NICKNAME>Bobby</NICKNAME>")
        assert r.get("type") == "error", tostr(r)
        assert r.find(".//{%s}not-allowed" % NS_STANZAS) is not None, tostr(r)
        vc = vcard_of(c)
    assert text(vc, "FN") == "Bob Builder" and text(vc, "NICKNAME") is None
    assert "vcard" not in srv.stored_stores("bob")


def test_rfc6121_unknown_account(slapd, server_factory):
    """RFC 6121 §8.5.1: the vCard of an account the directory does not
    have is <service-unavailable/>."""
    srv = server_factory(overrides(slapd))
    with login(srv, "bob") as c:
        res = c.iq("<vCard xmlns='%s'/>" % NS_VCARD, to="nobody@localhost")
    assert res.get("type") == "error"
    assert res.find(".//{%s}service-unavailable" % NS_STANZAS) is not None, tostr(res)


def test_cache_ttl_and_unreachable_directory(server_factory):
    """Entries are cached for cache_ttl: a change in the directory shows
    once that time has passed. With the directory killed the last read is
    still served."""
    own = slapd_server.Slapd().start()
    try:
        srv = server_factory(overrides(own, {"cache_ttl": "1s"}))
        with login(srv, "alice") as c:
            assert text(vcard_of(c), "TITLE") == "Chief Explorer"
            own.set_attr("uid=alice," + PEOPLE, "title", "Queen of Hearts")
            assert text(vcard_of(c), "TITLE") == "Chief Explorer"  # cached
            time.sleep(1.2)
            assert text(vcard_of(c), "TITLE") == "Queen of Hearts"
            own.kill()
            time.sleep(1.2)
            assert text(vcard_of(c), "TITLE") == "Queen of Hearts"
    finally:
        own.destroy()


def presence_hash(srv, sender, receiver):
    """sender sends directed presence to receiver; the XEP-0153 photo
    hash receiver gets in it."""
    sender.send("<presence to='%s@localhost'/>" % receiver.user_name)
    p = receiver.wait_for(lambda e: e.tag == q("jabber:client", "presence") and
                          e.get("from", "").startswith(sender.user_name + "@"))
    x = p.find("{%s}x/{%s}photo" % (NS_UPDATE, NS_UPDATE))
    return None if x is None else x.text or ""


def wait_hash(srv, sender, receiver, want):
    """mod_avatar reads the photo when the account authenticates: until it
    has, presence carries no hash; then it must be want."""
    deadline = time.monotonic() + scaled(5)
    while True:
        got = presence_hash(srv, sender, receiver)
        if got == want:
            return
        assert time.monotonic() < deadline, (got, want)
        time.sleep(0.2)


def test_xep0153_photo_hash_follows_the_directory(server_factory):
    """XEP-0153 §3.1 / XEP-0398 §4: with mod_avatar, alice's presence
    carries the SHA-1 of her jpegPhoto; after the photo changes in the
    directory and her entry is read again (cache_ttl passed), the change
    is announced and her next presence carries the new hash."""
    own = slapd_server.Slapd().start()
    try:
        over = overrides(own, {"cache_ttl": "1s"})
        over["modules"].update({"roster": True, "presence": True, "disco": True, "caps": True,
                                "pep": True, "avatar": True})
        srv = server_factory(over)
        with login(srv, "bob") as bob, login(srv, "alice") as alice:
            bob.user_name, alice.user_name = "bob", "alice"
            bob.send("<presence/>")  # available before alice's directed presence arrives
            bob.wait_for(lambda e: e.tag == q("jabber:client", "presence") and e.get("from", "").startswith("bob@"))
            wait_hash(srv, alice, bob, hashlib.sha1(ALICE_PHOTO).hexdigest())
            own.modify("dn: uid=alice,%s\nchangetype: modify\nreplace: jpegPhoto\njpegPhoto:: %s\n"
                       % (PEOPLE, base64.b64encode(PNG).decode()))
            time.sleep(1.2)
            vc = vcard_of(bob, "alice@localhost")  # reads the entry again: changed
            assert text(vc, "PHOTO/TYPE") == "image/png"
            wait_hash(srv, alice, bob, hashlib.sha1(PNG).hexdigest())
    finally:
        own.destroy()
