"""Avatars: XEP-0084 (PEP data and metadata nodes) and the XEP-0398
conversion to and from vcard-temp avatars (XEP-0054 PHOTO, XEP-0153 hashes
in presence), so old and new clients see each other's pictures."""

import asyncio
import base64
import hashlib

import pytest

from pep_helpers import (NS_DISCO_INFO, befriend, caps_presence, interested, iq, item_ids, items,
                         login, publish, sync, wait_event)
from xmpptest import NS_CLIENT, QUIET_PERIOD, connect, q, run, scaled, tostr

NS_DATA = "urn:xmpp:avatar:data"
NS_META = "urn:xmpp:avatar:metadata"
NS_VCARD = "vcard-temp"
NS_UPDATE = "vcard-temp:x:update"
IMAGE = bytes(range(256)) * 8 + b"xmppd avatar"  # not a real PNG: servers do not decode images


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"roster": True, "presence": True, "disco": True, "caps": True,
                        "ping": True, "vcard": {"max_size": "16k"}, "pep": True,
                        "avatar": True}}


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def publish_avatar(c, data, type_="image/png"):
    h = sha1(data)
    r = publish(c, NS_DATA, "<data xmlns='%s'>%s</data>" % (NS_DATA, base64.b64encode(data).decode()), h)
    assert r.get("type") == "result", tostr(r)
    r = publish(c, NS_META, "<metadata xmlns='%s'><info bytes='%d' id='%s' type='%s' width='64' "
                            "height='64'/></metadata>" % (NS_META, len(data), h, type_), h)
    assert r.get("type") == "result", tostr(r)
    return h


def vcard_of(c, jid):
    r = iq(c, "<vCard xmlns='%s'/>" % NS_VCARD, to=jid)
    assert r.get("type") == "result", tostr(r)
    return r.find(q(NS_VCARD, "vCard"))


def photo_of(vc):
    photo = vc.find(q(NS_VCARD, "PHOTO"))
    if photo is None:
        return None
    return (photo.findtext(q(NS_VCARD, "TYPE")),
            base64.b64decode("".join(photo.findtext(q(NS_VCARD, "BINVAL")).split())))


def settled_photo(c, jid, present=True, bound=5.0):
    """The vCard PHOTO of jid once the conversion (asynchronous) is done:
    polled until it is there (present) or gone, at most bound seconds."""
    import time
    deadline = time.monotonic() + scaled(bound)
    while True:
        ph = photo_of(vcard_of(c, jid))
        if (ph is not None) == present or time.monotonic() > deadline:
            return ph
        time.sleep(0.05)


def presence_photo(p):
    x = p.find(q(NS_UPDATE, "x"))
    if x is None:
        return None
    ph = x.find(q(NS_UPDATE, "photo"))
    return None if ph is None else (ph.text or "")


def test_xep0398_2_conversion_feature_on_account(server, accounts):
    """XEP-0398 §2: the account advertises urn:xmpp:pep-vcard-conversion:0."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = iq(c, "<query xmlns='%s'/>" % NS_DISCO_INFO, to=a.jid)
        assert "urn:xmpp:pep-vcard-conversion:0" in {f.get("var") for f in r.iter(q(NS_DISCO_INFO, "feature"))}


def test_xep0084_and_xep0398_3_1_pep_avatar_reaches_vcard_and_presence(server, accounts):
    """XEP-0084 §4: a contact interested in the metadata node hears of the
    new avatar and fetches the data; XEP-0398 §3.1: the account's vCard now
    has the image as PHOTO; §4: the account's next available presence
    carries its SHA-1, which contacts receive."""
    a, b = accounts(2)
    befriend(server, a, b)
    with login(server, b) as cb, login(server, a) as ca:
        caps_presence(cb, [NS_META + "+notify"])
        sync(cb)
        h = publish_avatar(ca, IMAGE)
        m = wait_event(cb, NS_META)
        info = m.find(".//" + q(NS_META, "info"))
        assert info.get("id") == h and info.get("bytes") == str(len(IMAGE))
        r = items(cb, NS_DATA, to=a.jid)
        assert item_ids(r) == [h]
        data = r.find(".//" + q(NS_DATA, "data")).text
        assert base64.b64decode(data) == IMAGE
        # XEP-0398 §3.1: PEP to vCard.
        assert settled_photo(cb, a.jid) == ("image/png", IMAGE)
        # XEP-0398 §4: the hash in presence, on behalf of the client.
        ca.send("<presence/>")
        p = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from", "").startswith(a.jid + "/"))
        assert presence_photo(p) == h
        # A client that says <photo/> (not ready) is left alone.
        ca.send("<presence><x xmlns='%s'><photo/></x></presence>" % NS_UPDATE)
        p = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from", "").startswith(a.jid + "/"))
        assert presence_photo(p) == ""


def test_xep0398_3_2_vcard_photo_reaches_pep(server, accounts):
    """XEP-0398 §3.2: an old client's vCard with a PHOTO publishes the data
    item (id: the image's SHA-1) and a metadata item naming it, which an
    interested contact hears of; the vCard keeps its other fields."""
    a, b = accounts(2)
    befriend(server, a, b)
    image = b"old-style avatar " * 40
    with login(server, b) as cb, login(server, a) as ca:
        caps_presence(cb, [NS_META + "+notify"])
        sync(cb)
        r = iq(ca, "<vCard xmlns='%s'><FN>Alice</FN><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>%s</BINVAL>"
                   "</PHOTO></vCard>" % (NS_VCARD, base64.encodebytes(image).decode()), type_="set")
        assert r.get("type") == "result", tostr(r)
        m = wait_event(cb, NS_META)
        info = m.find(".//" + q(NS_META, "info"))
        assert info.get("id") == sha1(image)
        assert info.get("type") == "image/jpeg" and info.get("bytes") == str(len(image))
        r = items(cb, NS_DATA, to=a.jid)
        assert item_ids(r) == [sha1(image)]
        assert base64.b64decode(r.find(".//" + q(NS_DATA, "data")).text) == image
        assert settled_photo(cb, a.jid) == ("image/jpeg", image)
        assert vcard_of(cb, a.jid).findtext(q(NS_VCARD, "FN")) == "Alice"


def test_xep0398_3_1_empty_metadata_removes_vcard_photo(server, accounts):
    """XEP-0084 §4.5 (avatar off: <metadata/> without info) with XEP-0398
    §3.1: the vCard loses its PHOTO, keeps the rest."""
    (a,) = accounts(1)
    with login(server, a) as ca:
        r = iq(ca, "<vCard xmlns='%s'><NICKNAME>al</NICKNAME></vCard>" % NS_VCARD, type_="set")
        assert r.get("type") == "result"
        publish_avatar(ca, IMAGE)
        assert settled_photo(ca, a.jid) is not None
        r = publish(ca, NS_META, "<metadata xmlns='%s'/>" % NS_META, "off")
        assert r.get("type") == "result", tostr(r)
        assert settled_photo(ca, a.jid, present=False) is None
        assert vcard_of(ca, a.jid).findtext(q(NS_VCARD, "NICKNAME")) == "al"


def test_xep0398_3_1_mismatching_data_not_converted(server, accounts):
    """XEP-0398 §3.1 (SHOULD verify the SHA-1): metadata naming data whose
    hash is not its id leaves the vCard alone."""
    (a,) = accounts(1)
    with login(server, a) as ca:
        fake = "0" * 40
        assert publish(ca, NS_DATA, "<data xmlns='%s'>%s</data>" % (
            NS_DATA, base64.b64encode(b"not this").decode()), fake).get("type") == "result"
        assert publish(ca, NS_META, "<metadata xmlns='%s'><info bytes='8' id='%s' type='image/png'/>"
                                    "</metadata>" % (NS_META, fake), fake).get("type") == "result"
        sync(ca)
        assert settled_photo(ca, a.jid, bound=QUIET_PERIOD) is None


def test_xep0084_with_slixmpp_plugins(server, accounts):
    """XEP-0084 through slixmpp's xep_0084 (and xep_0163) plugins: the
    publisher's client publishes data and metadata, the contact's client
    gets the metadata event and retrieves the image."""
    a, b = accounts(2)
    befriend(server, a, b)
    image = b"slixmpp avatar bytes" * 10

    async def scenario():
        cb, got = await interested(server, b, ["xep_0084"], "avatar_metadata_publish", NS_META)
        ca = await connect(server, a, presence=0)
        ca.register_plugin("xep_0084")
        h = sha1(image)
        await ca["xep_0084"].publish_avatar(image)
        await ca["xep_0084"].publish_avatar_metadata([{"id": h, "type": "image/png", "bytes": len(image)}])
        m = await asyncio.wait_for(got, 5)
        info = m["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
        assert info["id"] == h
        res = await cb["xep_0084"].retrieve_avatar(a.jid, h)
        assert base64.b64decode(res["pubsub"]["items"]["item"]["avatar_data"]["value"]) == image or \
            res["pubsub"]["items"]["item"]["avatar_data"]["value"] == image

    run(scenario())
    with login(server, b) as cb:  # and the vCard has it (XEP-0398 §3.1)
        assert settled_photo(cb, a.jid) == ("image/png", image)
