"""mod_upload, XEP-0363 HTTP File Upload: disco (§3), slots and their
errors (§4), the PUT checks and GET/HEAD/ranges (§5, RFC 7233), headers
against content sniffing, quota, expiry, and account deletion; the HTTP
side with Python's http.client."""

import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

import xmpptest
from conftest import Server, _finish
from webclient import add_web_listeners, http_request
from xmpptest import NS_STANZA_ERR, q, raw_login

NS_UP = "urn:xmpp:http:upload:0"
UPLOAD = "upload.localhost"


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("upload"), cert_dir,
                 {"modules": {"disco": {}, "upload": {"max_file_size": "64k", "quota": "100k",
                                                      "expire_after": "4s",
                                                      "cleanup_interval": "1s"}}},
                 name="upload")
    add_web_listeners(srv)
    srv.start()
    yield srv
    _finish(srv)


def request_slot(c, name, size, ctype=None):
    attrs = "filename='%s' size='%s'" % (xmpptest.xml_escape(name), size)
    if ctype:
        attrs += " content-type='%s'" % ctype
    return c.iq("<request xmlns='%s' %s/>" % (NS_UP, attrs), to=UPLOAD)


def slot_urls(iq):
    slot = iq.find(q(NS_UP, "slot"))
    assert slot is not None, ET.tostring(iq)
    return slot.find(q(NS_UP, "put")).get("url"), slot.find(q(NS_UP, "get")).get("url")


def call(url, method, body=None, headers=None):
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    return http_request(u.port, method, path, body=body, headers=headers, tls=u.scheme == "https",
                        host=u.hostname)


def upload(c, name, data, ctype="application/octet-stream"):
    put, get = slot_urls(request_slot(c, name, len(data), ctype))
    st, _, _ = call(put, "PUT", data, {"Content-Type": ctype})
    assert st == 201
    return get


def test_xep0363_3_disco_announces_the_service_and_max_size(server, accounts):
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        items = c.iq("<query xmlns='http://jabber.org/protocol/disco#items'/>", to="localhost")
        assert UPLOAD in [i.get("jid") for i in items.iter("{http://jabber.org/protocol/disco#items}item")]
        info = c.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=UPLOAD)
        feats = [f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")]
        assert NS_UP in feats
        ident = info.find(".//{http://jabber.org/protocol/disco#info}identity")
        assert (ident.get("category"), ident.get("type")) == ("store", "file")
        fields = {f.get("var"): f.findtext("{jabber:x:data}value")
                  for f in info.iter("{jabber:x:data}field")}
        assert fields["FORM_TYPE"] == NS_UP and fields["max-file-size"] == str(64 * 1024)


def test_xep0363_5_put_then_get_head_and_range(server, accounts):
    (a,) = accounts(1)
    data = bytes(range(256)) * 10
    with raw_login(server, a) as c:
        put, get = slot_urls(request_slot(c, "pic ture.png", len(data), "image/png"))
        assert put.startswith("https://%s:%d/upload/" % (UPLOAD, server.https_port))
        st, _, _ = call(put, "PUT", data, {"Content-Type": "image/png"})
        assert st == 201
        st, hdrs, body = call(get, "GET")
        assert st == 200 and body == data
        assert hdrs["content-type"] == "image/png" and hdrs["content-length"] == str(len(data))
        assert hdrs["x-content-type-options"] == "nosniff"
        assert hdrs["content-disposition"].startswith("inline")
        st, hdrs, body = call(get, "HEAD")
        assert st == 200 and body == b"" and hdrs["content-length"] == str(len(data))
        st, hdrs, body = call(get, "GET", headers={"Range": "bytes=100-199"})
        assert st == 206 and body == data[100:200]
        assert hdrs["content-range"] == "bytes 100-199/%d" % len(data)
        st, hdrs, body = call(get, "GET", headers={"Range": "bytes=-10"})
        assert st == 206 and body == data[-10:]
        st, hdrs, _ = call(get, "GET", headers={"Range": "bytes=99999-"})
        assert st == 416 and hdrs["content-range"] == "bytes */%d" % len(data)


def test_types_a_browser_runs_are_served_as_attachments(server, accounts):
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        get = upload(c, "page.html", b"<script>alert(1)</script>", "text/html")
        st, hdrs, _ = call(get, "GET")
        assert st == 200 and hdrs["content-disposition"].startswith("attachment")
        assert hdrs["x-content-type-options"] == "nosniff"


def test_xep0363_5_put_must_match_the_slot(server, accounts):
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        put, get = slot_urls(request_slot(c, "a.txt", 5, "text/plain"))
        assert call(put, "PUT", b"123456", {"Content-Type": "text/plain"})[0] == 403  # size
        assert call(put, "PUT", b"12345", {"Content-Type": "image/png"})[0] == 403  # type
        bad = put.replace("&s=", "&s=0")
        assert call(bad, "PUT", b"12345", {"Content-Type": "text/plain"})[0] == 403  # signature
        assert call(put, "PUT", b"12345", {"Content-Type": "text/plain"})[0] == 201
        assert call(put, "PUT", b"12345", {"Content-Type": "text/plain"})[0] == 409  # used
        assert call(get, "GET")[0] == 200
        assert call(get + "x", "GET")[0] == 404  # another name


def test_xep0363_4_1_file_too_large(server, accounts):
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        err = request_slot(c, "big.bin", 64 * 1024 + 1)
        assert xmpptest.error_condition(err) == ("modify", "not-acceptable")
        ftl = err.find(".//" + q(NS_UP, "file-too-large"))
        assert ftl.findtext(q(NS_UP, "max-file-size")) == str(64 * 1024)


def test_xep0363_4_bad_requests(server, accounts):
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        for name, size in (("", 5), ("a/b", 5), ("x", 0), ("x", -3), ("x", "many")):
            err = request_slot(c, name, size)
            assert xmpptest.error_condition(err) == ("modify", "bad-request"), (name, size)


def test_xep0363_4_1_quota_is_resource_constraint(server, accounts):
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        for i in range(2):
            upload(c, "f%d" % i, b"x" * 40000)
        err = request_slot(c, "one-too-many", 40000)
        assert xmpptest.error_condition(err) == ("wait", "resource-constraint")


def test_allow_limits_who_may_upload(server_factory, accounts):
    srv = server_factory({"modules": {"upload": {"allow": ["boss@localhost"]}}}, start=False)
    add_web_listeners(srv)
    srv.start()
    (a,) = accounts(1, srv=srv)
    with raw_login(srv, a) as c:
        err = request_slot(c, "x", 1)
        assert xmpptest.error_condition(err) == ("auth", "forbidden")


def test_files_expire(server, accounts):
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        get = upload(c, "short-lived", b"bye")
        assert call(get, "GET")[0] == 200
        deadline = time.monotonic() + xmpptest.scaled(12)
        while call(get, "GET")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert call(get, "GET")[0] == 404


def test_deleting_an_account_deletes_its_files(server, accounts):
    (a,) = accounts(1)
    with raw_login(server, a) as c:
        get = upload(c, "mine", b"secret")
    assert call(get, "GET")[0] == 200
    server.ctl("deluser", a.jid, check=True)
    deadline = time.monotonic() + xmpptest.scaled(5)
    while call(get, "GET")[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert call(get, "GET")[0] == 404


def test_cors_lets_browser_clients_put_and_get(server):
    st, hdrs, _ = http_request(server.https_port, "OPTIONS", "/upload/x/y", tls=True, host=UPLOAD,
                               headers={"Origin": "https://app.example",
                                        "Access-Control-Request-Method": "PUT",
                                        "Access-Control-Request-Headers": "content-type"})
    assert st == 204 and hdrs["access-control-allow-origin"] == "*"
    assert "PUT" in hdrs["access-control-allow-methods"]
