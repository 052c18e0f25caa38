"""The HTTP listener: what the kernel answers itself (404, 405 with Allow,
413 before the body, 431, 429, 400), keep-alive and pipelining, the idle
timeout, trusted proxies (X-Forwarded-For/-Proto only from them), the path
prefix, and XEP-0156 host-meta (XRD and JSON)."""

import json
import socket
import time
import xml.etree.ElementTree as ET

import pytest

import xmpptest
from conftest import Server, _finish
from webclient import add_web_listeners, http_request, raw_http


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("http"), cert_dir,
                 {"modules": {"upload": {"max_file_size": "1k"}},
                  "http": {"max_header_size": "2k", "idle_timeout": "2s",
                           "requests_per_second": 5, "burst": 20}}, name="http")
    add_web_listeners(srv)
    srv.proxy_port = xmpptest.free_port()
    srv.config["listeners"].append({"type": "http", "address": "127.0.0.1", "port": srv.proxy_port,
                                    "trusted_proxies": ["127.0.0.0/8"], "path_prefix": "/xmpp"})
    srv.write_config()
    srv.start()
    yield srv
    _finish(srv)


def test_unknown_path_is_404(server):
    st, _, _ = http_request(server.http_port, "GET", "/no/such/thing")
    assert st == 404


def test_rfc7231_6_5_5_method_not_allowed_lists_allow(server):
    st, hdrs, _ = http_request(server.http_port, "DELETE", "/http-bind")
    assert st == 405 and hdrs["allow"] == "POST"


def test_rfc7231_6_5_11_body_over_the_route_limit_is_413_before_it_is_read(server):
    # upload's max_file_size (1k) is the route's limit: refused on the head.
    head = ("PUT /upload/0000000000000000-000000000000000000000000/x HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Length: 100000000\r\n\r\n").encode()
    out = raw_http(server.http_port, head, until_close=False)
    assert out.startswith(b"HTTP/1.1 413 ")


def test_rfc6585_5_headers_over_the_limit_are_431(server):
    head = ("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: %s\r\n\r\n" % ("a" * 3000)).encode()
    out = raw_http(server.http_port, head)
    assert out.startswith(b"HTTP/1.1 431 ")


def test_malformed_request_is_400_and_closes(server):
    out = raw_http(server.http_port, b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out


def test_rfc7231_6_6_2_unknown_method_is_501(server):
    out = raw_http(server.http_port, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 501 ")


def test_encoded_nul_in_the_path_is_400(server):
    st, _, _ = http_request(server.http_port, "GET", "/upload/%00")
    assert st == 400


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server):
    reqs = b"".join(b"GET /.well-known/host-meta%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % s
                    for s in (b"", b".json", b""))
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=5)
    s.sendall(reqs)
    data = b""
    deadline = time.monotonic() + 5
    while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
        data += s.recv(65536)
    s.close()
    parts = data.split(b"HTTP/1.1 200")
    assert len(parts) == 4
    assert b"application/xrd+xml" in parts[1] and b"application/json" in parts[2]


def test_idle_connection_is_closed(server):
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    s.sendall(b"GET /.well-known/host-meta HTTP/1.1\r\nHost: loc")
    t0 = time.monotonic()
    assert s.recv(100) == b""  # closed without an answer
    assert time.monotonic() - t0 < xmpptest.scaled(6)
    s.close()


def test_rfc6585_4_too_many_requests_is_429_per_address(server):
    codes = [http_request(server.http_port, "GET", "/.well-known/host-meta")[0] for _ in range(40)]
    assert 429 in codes
    time.sleep(1.5)


def test_xep0156_3_host_meta_xrd_lists_websocket_and_bosh(server):
    time.sleep(1)
    st, hdrs, body = http_request(server.https_port, "GET", "/.well-known/host-meta", tls=True)
    assert st == 200 and hdrs["content-type"].startswith("application/xrd+xml")
    xrd = ET.fromstring(body)
    links = {l.get("rel"): l.get("href") for l in xrd.iter("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")}
    assert links["urn:xmpp:alt-connections:websocket"] == "wss://localhost/xmpp-websocket"
    assert links["urn:xmpp:alt-connections:xbosh"] == "https://localhost/http-bind"


def test_xep0156_3_host_meta_json(server):
    st, hdrs, body = http_request(server.https_port, "GET", "/.well-known/host-meta.json", tls=True,
                                  headers={"Origin": "https://app.example"})
    assert st == 200 and hdrs["content-type"] == "application/json"
    assert hdrs["access-control-allow-origin"] == "*"
    links = {l["rel"]: l["href"] for l in json.loads(body)["links"]}
    assert links["urn:xmpp:alt-connections:websocket"] == "wss://localhost/xmpp-websocket"


def test_trusted_proxy_scheme_and_path_prefix(server):
    """Behind a TLS-terminating proxy on loopback: X-Forwarded-Proto is
    believed, URLs carry the prefix, and paths outside it are 404."""
    st, _, body = http_request(server.proxy_port, "GET", "/xmpp/.well-known/host-meta.json",
                               headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"})
    assert st == 200
    links = {l["rel"]: l["href"] for l in json.loads(body)["links"]}
    assert links["urn:xmpp:alt-connections:websocket"] == "wss://localhost/xmpp/xmpp-websocket"
    assert http_request(server.proxy_port, "GET", "/.well-known/host-meta")[0] == 404


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(server):
    st, _, body = http_request(server.http_port, "GET", "/.well-known/host-meta.json",
                               headers={"X-Forwarded-Proto": "https"})
    links = {l["rel"]: l["href"] for l in json.loads(body)["links"]}
    assert links["urn:xmpp:alt-connections:websocket"].startswith("ws://")


def test_config_rejects_starttls_on_http_listeners(server_factory):
    srv = server_factory(start=False)
    srv.config["listeners"].append({"type": "http", "port": xmpptest.free_port(), "tls": "starttls"})
    srv.write_config()
    r = srv.ctl("check")
    assert r.returncode != 0 and "HTTP has no STARTTLS" in (r.stdout + r.stderr)


def test_xep0479_web_suite_is_reached_with_http_listeners(server):
    """xmppctl features: RFC 7395, XEP-0124/0206 and XEP-0156 from the kernel,
    XEP-0363 from mod_upload, and the XEP-0479 Web levels met."""
    out = json.loads(server.ctl("-j", "features", check=True).stdout)
    host = next(h for h in out["hosts"] if h["host"] == "localhost")
    specs = {s["spec"]: s["by"] for s in host["specs"]}
    for spec in ("RFC 7395", "XEP-0124", "XEP-0206", "XEP-0156"):
        assert specs[spec] == ["kernel"], spec
    assert specs["XEP-0363"] == ["upload"]
    web = {s["level"]: s for s in host["suites"] if s["category"] == "Web"}
    missing = {m["feature"] for m in web["Server"]["missing"]}
    assert "Web Connection Mechanisms" not in missing
    assert "Connection Mechanism Discovery" not in missing
