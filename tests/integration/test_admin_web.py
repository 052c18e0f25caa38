"""The web console (mod_admin_web, issue 17 "Web console"): static files
served at /admin/ with a Content-Security-Policy that allows no inline
script, X-Frame-Options DENY and nosniff on every answer; 404 for
anything that is not a flat file name of a known type (path traversal,
encoded or not, hidden files, links out of the root); the same address
rule as the admin API. The console's own requests are all admin API
commands (mod_admin_api) that an unauthenticated client cannot make; the
commands it added (login/logout tokens, audit_log, metrics,
s2s_connections) and the API's refusal of cross-site browser requests
(CSRF) are checked here too."""

import http.client
import json
import os
import re
import secrets
import shutil
import socket
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import MODULES, Account, Server, _finish, unique_user
from webclient import add_web_listeners, http_request
from xmpptest import NS_CLIENT, RawClient, free_port, raw_login

WWW = Path(__file__).resolve().parents[2] / "modules" / "admin_web" / "www"
BOSS = Account("boss", "boss-pw-" + secrets.token_hex(4))
CHIEF = Account("chief", "chief-pw", domain="other.example")
OTHER_IP = "192.0.2.2"  # a non-loopback address of the test machine, when it has one


def has_address(ip):
    try:
        with socket.socket() as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    base = tmp_path_factory.mktemp("admin_web")
    # A copy of the files with a link out of the root: it must not be served.
    root = base / "www"
    shutil.copytree(WWW, root)
    (base / "secret.js").write_text("secret = 1;\n")
    (root / "leak.js").symlink_to(base / "secret.js")
    srv = Server(base / "srv", cert_dir, {
        "admins": [BOSS.jid],
        # the tests' requests come faster than the default 50/s from one address
        "http": {"requests_per_second": 1000},
        "hosts": {"localhost": {}, "other.example": {"admins": [CHIEF.jid]}},
        "modules": {"disco": {}, "presence": {}, "roster": {},
                    "admin_api": {"recent_calls": 8},
                    "admin_web": {"root": str(root)}},
    }, name="admin_web")
    add_web_listeners(srv)
    srv.s2s_port = free_port()
    srv.config["listeners"].append({"type": "s2s", "address": "127.0.0.1", "port": srv.s2s_port})
    srv.other_port = None
    if has_address(OTHER_IP):
        srv.other_port = free_port()
        srv.config["listeners"].append({"type": "http", "address": OTHER_IP, "port": srv.other_port})
    srv.write_config()
    srv.start()
    srv.adduser(BOSS.jid, BOSS.password)
    srv.adduser(CHIEF.jid, CHIEF.password)
    srv.adduser("joe@localhost", "joe-pw")
    yield srv
    _finish(srv)


def get(srv, path, method="GET", tls=False, headers=None):
    port = srv.https_port if tls else srv.http_port
    return http_request(port, method, path, headers=headers, tls=tls)


def call(srv, command, args=None, token=None, headers=None):
    """POST /api/COMMAND as the console does: JSON, and a bearer token."""
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    st, hdrs, data = http_request(srv.http_port, "POST", "/api/" + command,
                                  body=json.dumps(args or {}), headers=h)
    try:
        return st, json.loads(data) if data else None, hdrs
    except ValueError:
        raise AssertionError("not JSON: %r" % data[:3000])


def login(srv, account):
    st, body, _ = call(srv, "login", {"jid": account.jid, "password": account.password})
    assert st == 200, body
    return body


def assert_security_headers(hdrs):
    csp = hdrs.get("content-security-policy", "")
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";") if d.strip())
    assert directives.get("script-src") == "'self'", csp
    assert directives.get("default-src") == "'none'", csp
    assert directives.get("frame-ancestors") == "'none'", csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert hdrs.get("x-frame-options") == "DENY"
    assert hdrs.get("x-content-type-options") == "nosniff"


# ---- static files ----------------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_console_files_are_served_with_their_types(server, tls):
    """Issue 17 "Web console": the static files at /admin/ (index.html for
    the folder), each with its Content-Type and the security headers;
    HEAD answers the same without a body; /admin redirects to /admin/."""
    expect = {"/admin/": ("text/html", "index.html"),
              "/admin/index.html": ("text/html", "index.html"),
              "/admin/console.js": ("text/javascript", "console.js"),
              "/admin/console.css": ("text/css", "console.css"),
              "/admin/favicon.svg": ("image/svg+xml", "favicon.svg")}
    for path, (ctype, name) in expect.items():
        st, hdrs, data = get(server, path, tls=tls)
        assert st == 200, path
        assert hdrs["content-type"].startswith(ctype), (path, hdrs["content-type"])
        assert data == (WWW / name).read_bytes(), path
        assert_security_headers(hdrs)
        st, hdrs, data = get(server, path, method="HEAD", tls=tls)
        assert (st, data) == (200, b"") and int(hdrs["content-length"]) == (WWW / name).stat().st_size
    st, hdrs, _ = get(server, "/admin", tls=tls)
    assert st == 301 and hdrs["location"] == "admin/"
    assert_security_headers(hdrs)
    st, hdrs, data = get(server, "/admin/config.json", tls=tls)
    assert st == 200 and json.loads(data) == {"api": "../api"}


def test_pages_have_no_inline_script_or_style(server):
    """CSP without 'unsafe-inline' (issue 17): the page's scripts are files
    (src, no body), no on* handler attributes, no style attributes, no
    inline <style>; the script puts server data into the page as text
    (textContent), never innerHTML."""
    st, _, data = get(server, "/admin/")

    class Check(HTMLParser):
        problems = []
        in_script = False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "script":
                if "src" not in a:
                    self.problems.append("inline <script>")
                self.in_script = True
            if tag == "style":
                self.problems.append("inline <style>")
            for k in a:
                if k.startswith("on") or k == "style":
                    self.problems.append("attribute %s on <%s>" % (k, tag))

        def handle_endtag(self, tag):
            if tag == "script":
                self.in_script = False

        def handle_data(self, d):
            if self.in_script and d.strip():
                self.problems.append("script body")

    c = Check()
    c.feed(data.decode())
    assert st == 200 and c.problems == []
    js = (WWW / "console.js").read_text()
    assert "innerHTML" not in js and "eval(" not in js and "document.write" not in js


@pytest.mark.parametrize("path", [
    "/admin/nothing.html", "/admin/.hidden.js", "/admin/index.php", "/admin/console.js.bak",
    "/admin/sub/console.js", "/admin/console", "/admin/leak.js",
    "/admin/../api/openapi.json", "/admin/..", "/admin/../", "/admin/./index.html",
    "/admin/%2e%2e/%2e%2e/etc/passwd", "/admin/%2e%2e%2fapi%2fopenapi.json",
    "/admin/..%2f..%2fetc%2fpasswd", "/admin/%2F..%2F..%2Fetc%2Fpasswd", "/admin/....//x.js",
    "/admin//etc/passwd", "/admin/%5c..%5cindex.html", "/admin/index.html%00.js",
])
def test_nothing_outside_the_files_is_served(server, path):
    """Path traversal, plain and percent-encoded (RFC 3986 §2.1), hidden
    and unknown files, and a symbolic link out of the root: 404 (400 for
    an encoded NUL, refused by the kernel), never a file, with the
    security headers on the console's own 404s."""
    st, hdrs, data = get(server, path)
    assert st in (400, 404), (path, st, data[:200])
    assert b"secret" not in data and b"root:" not in data
    if st == 404:
        assert_security_headers(hdrs)


def test_console_follows_the_api_address_rule(server):
    """Same access rule as the admin API: loopback clients only by default
    (rule admin_api); a client on another address gets 403 for the pages
    and the API."""
    if server.other_port is None:
        pytest.skip("the machine has no non-loopback address %s to test from" % OTHER_IP)
    for method, path in (("GET", "/admin/"), ("GET", "/admin/console.js"), ("POST", "/api/login")):
        conn = http.client.HTTPConnection(OTHER_IP, server.other_port, timeout=10)
        try:
            conn.request(method, path, body="{}" if method == "POST" else None,
                         headers={"Content-Type": "application/json"})
            st = conn.getresponse().status
        finally:
            conn.close()
        assert st == 403, (path, st)


# ---- what the console calls ------------------------------------------------------------

def console_commands():
    js = (WWW / "console.js").read_text()
    return sorted(set(re.findall(r"\bapi\('([a-z_0-9]+)'", js)))


def test_every_console_request_is_an_api_call_needing_credentials(server):
    """Issue 17: the console uses only the JSON API. Its script fetches
    config.json and API commands, nothing else; every command it calls is
    in the API's OpenAPI document, and without credentials each is 401 (a
    token for a wrong user, the login command with a wrong password too)."""
    js = (WWW / "console.js").read_text()
    fetches = re.findall(r"\bfetch\(([^,)]*)", js)
    assert sorted(f.strip() for f in fetches) == ["'config.json'", "apiBase + '/' + command"]
    cmds = console_commands()
    assert {"login", "logout", "status", "metrics", "s2s_connections", "modules", "module_reload",
            "reload_config", "registered_users", "register", "unregister", "change_password",
            "connected_users_info", "kick_session", "audit_log"} <= set(cmds)
    _, _, data = http_request(server.http_port, "GET", "/api/openapi.json")
    paths = json.loads(data)["paths"]
    for cmd in cmds:
        assert "/" + cmd in paths, cmd
        args = {"jid": BOSS.jid, "password": "wrong"} if cmd == "login" else {}
        st, body, hdrs = call(server, cmd, args)
        assert st == 401, (cmd, st, body)
        st, body, hdrs = call(server, cmd, args, token="f" * 64)
        assert st == 401, (cmd, st, body)


# ---- login tokens ----------------------------------------------------------------------

def test_login_token_stands_for_the_administrator(server):
    """The login command checks the JID and password with the host's auth
    (no second password store) and answers a bearer token (RFC 6750) for
    that administrator: it runs what the administrator may run, names the
    hosts it may act on, and ends with logout. A wrong password is 401
    with a Bearer-only challenge (a Basic one would make the browser
    prompt), an account that administers nothing 403 (no token)."""
    r = login(server, BOSS)
    assert r["jid"] == BOSS.jid and r["server_wide"] is True and r["expires_in"] == 3600
    assert sorted(r["hosts"]) == ["localhost", "other.example"] and len(r["token"]) == 64
    st, body, _ = call(server, "status", token=r["token"])
    assert st == 200 and body["sessions"] >= 0
    st, body, hdrs = call(server, "login", {"jid": BOSS.jid, "password": "wrong"})
    assert st == 401 and hdrs["www-authenticate"] == 'Bearer realm="xmppd"'
    assert call(server, "login", {"jid": "nobody@localhost", "password": "x"})[0] == 401
    assert call(server, "login", {"jid": "localhost", "password": "x"})[0] == 401
    assert call(server, "login", {"jid": BOSS.jid})[0] == 400
    st, body, _ = call(server, "login", {"jid": "joe@localhost", "password": "joe-pw"})
    assert st == 403 and "token" not in body
    chief = login(server, CHIEF)
    assert chief["server_wide"] is False and chief["hosts"] == ["other.example"]
    assert call(server, "registered_users", {"host": "other.example"}, token=chief["token"])[0] == 200
    assert call(server, "registered_users", {"host": "localhost"}, token=chief["token"])[0] == 403
    assert call(server, "status", token=chief["token"])[0] == 403
    st, body, _ = call(server, "logout", token=r["token"])
    assert (st, body) == (200, {"logged_out": True})
    st, _, hdrs = call(server, "status", token=r["token"])
    assert st == 401 and hdrs["www-authenticate"] == 'Bearer realm="xmppd"'
    assert call(server, "registered_users", {"host": "other.example"}, token=chief["token"])[0] == 200


def test_login_tokens_end_with_the_password(server):
    """A login token ends when its account's password is changed or the
    account deleted through the API (its other sessions end so too)."""
    tok = login(server, BOSS)["token"]
    chief = login(server, CHIEF)["token"]
    st, _, _ = call(server, "change_password", {"user": "chief", "host": "other.example",
                                                "newpass": CHIEF.password}, token=tok)
    assert st == 200
    assert call(server, "registered_users", {"host": "other.example"}, token=chief)[0] == 401
    assert call(server, "status", token=tok)[0] == 200


def test_login_tokens_end_whichever_way_the_account_changes(server):
    """A login token ends when its account's password is changed or the
    account is deleted outside the API too (xmppctl on the running server
    fires the kernel's password-changed / user-deleted events): a leaked
    password stops working for the console at once, not after
    login_lifetime."""
    temp = Account("temp-boss", "temp-pw-" + secrets.token_hex(4))
    server.adduser(temp.jid, temp.password)
    server.config["admins"] = server.config["admins"] + [temp.jid]
    server.write_config()
    server.ctl("reload", check=True)
    try:
        tok = login(server, temp)["token"]
        assert call(server, "status", token=tok)[0] == 200
        server.ctl("passwd", temp.jid, "--password", temp.password + "-new", check=True)
        assert call(server, "status", token=tok)[0] == 401
        tok = login(server, Account(temp.user, temp.password + "-new"))["token"]
        assert call(server, "status", token=tok)[0] == 200
        server.ctl("deluser", temp.jid, check=True)
        assert call(server, "status", token=tok)[0] == 401
    finally:
        server.config["admins"] = [a for a in server.config["admins"] if a != temp.jid]
        server.write_config()
        server.ctl("reload", check=True)


def test_cross_site_browser_requests_are_refused(server):
    """CSRF (issue 17 "not CSRF-able"): a POST carrying the Origin of
    another site, or Sec-Fetch-Site cross-site/same-site, is 403 even with
    valid credentials (a browser may have cached Basic ones); the
    console's own origin and scripts without Origin pass."""
    tok = login(server, BOSS)["token"]
    port = server.http_port
    evil = [{"Origin": "http://evil.example"}, {"Origin": "http://localhost:1"},
            {"Origin": "https://localhost:%d" % port}, {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}]
    for h in evil:
        st, body, _ = call(server, "status", token=tok, headers=h)
        assert st == 403, (h, st, body)
        st, body, _ = call(server, "login", {"jid": BOSS.jid, "password": BOSS.password}, headers=h)
        assert st == 403 and "token" not in body, h
    own = {"Origin": "http://localhost:%d" % port, "Host": "localhost:%d" % port,
           "Sec-Fetch-Site": "same-origin"}
    assert call(server, "status", token=tok, headers=own)[0] == 200


# ---- the commands the console added ------------------------------------------------------

def test_audit_log_keeps_the_latest_calls(server):
    """The audit page's source: audit_log lists the latest API calls newest
    first (time, command, caller, address, status), at most recent_calls
    (8 here), failed logins included; a server-wide command."""
    tok = login(server, BOSS)["token"]
    call(server, "login", {"jid": BOSS.jid, "password": "wrong"})
    call(server, "check_account", {"user": "joe", "host": "localhost"}, token=tok)
    st, log, _ = call(server, "audit_log", token=tok)
    assert st == 200 and len(log) <= 8
    assert [(e["command"], e["caller"], e["status"]) for e in log[:2]] == [
        ("check_account", BOSS.jid, 200), ("login", BOSS.jid, 401)]
    assert log[0]["ip"] == "127.0.0.1" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                                          log[0]["time"])
    for _ in range(10):
        call(server, "check_account", {"user": "joe", "host": "localhost"}, token=tok)
    assert len(call(server, "audit_log", token=tok)[1]) == 8
    st, log, _ = call(server, "audit_log", {"limit": "2"}, token=tok)
    assert st == 200 and len(log) == 2 and log[0]["command"] == "audit_log"
    assert call(server, "audit_log", {"limit": "zero"}, token=tok)[0] == 400
    assert call(server, "audit_log", token=login(server, CHIEF)["token"])[0] == 403


def test_metrics_command_counts_stanzas(server):
    """The dashboard's stanza rates: metrics {"name": "xmppd_stanzas_total"}
    answers the counters of /metrics as JSON (name, labels, value); a
    message a client sends raises the c2s/in/message counter."""
    tok = login(server, BOSS)["token"]

    def inbound_messages():
        st, samples, _ = call(server, "metrics", {"name": "xmppd_stanzas_total"}, token=tok)
        assert st == 200 and all(s["name"] == "xmppd_stanzas_total" for s in samples)
        return sum(s["value"] for s in samples if s["labels"].get("direction") == "in"
                   and s["labels"].get("kind") == "message")

    before = inbound_messages()
    a = Account(unique_user(), "pw-" + secrets.token_hex(4))
    server.adduser(a.jid, a.password)
    c = raw_login(server, a)
    try:
        for _ in range(3):
            c.send("<message xmlns='%s' to='%s' type='chat'><body>x</body></message>" % (NS_CLIENT, a.jid))
        deadline = time.monotonic() + 10
        while inbound_messages() < before + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert inbound_messages() >= before + 3
    finally:
        c.close()
    st, every, _ = call(server, "metrics", token=tok)
    names = {s["name"] for s in every}
    assert st == 200 and {"xmppd_stanzas_total", "xmppd_sessions"} <= names


def test_s2s_connections_lists_streams(server):
    """The dashboard's s2s peers: s2s_connections lists each stream
    (RFC 6120 §4 server-to-server), here one a peer opened and has not
    authenticated yet: incoming, negotiating, its 'from' domain."""
    tok = login(server, BOSS)["token"]
    st, streams, _ = call(server, "s2s_connections", token=tok)
    assert (st, streams) == (200, [])
    peer = RawClient(server.s2s_port, domain="localhost")
    try:
        peer.open_stream(xmlns="jabber:server", frm="peer.example", to="localhost")
        st, streams, _ = call(server, "s2s_connections", token=tok)
        assert st == 200 and len(streams) == 1, streams
        s = streams[0]
        assert (s["direction"], s["state"], s["remote"], s["authenticated"], s["ip"]) == \
            ("in", "negotiating", "peer.example", False, "127.0.0.1")
    finally:
        peer.close()


def test_default_root_and_options(server_factory, tmp_path):
    """Without root, a module loaded from a build tree (its .libs) serves
    the source tree's files (an installed one: PKGDATADIR/admin_web); path and
    api_path move the console and tell it where the API is
    (config.json, relative so that a listener's path_prefix works); a
    reload with a root holding no index.html, or a path that is not
    plain, is refused with the reason and the running console stays."""
    srv = server_factory({"admins": [BOSS.jid],
                          "modules": {"admin_api": {"path": "/ops/api"},
                                      "admin_web": {"path": "/ops/console", "api_path": "/ops/api"}}},
                         start=False)
    add_web_listeners(srv)
    srv.start()
    st, hdrs, data = get(srv, "/ops/console/")
    assert st == 200 and data == (WWW / "index.html").read_bytes()
    assert json.loads(get(srv, "/ops/console/config.json")[2]) == {"api": "../../ops/api"}
    assert get(srv, "/admin/")[0] == 404
    for bad, why in (({"root": str(tmp_path)}, "root: no index.html in %s" % tmp_path),
                     ({"path": "/a/../b"}, "path: expected a path such as /admin"),
                     ({"path": "/admin/"}, "path: expected a path such as /admin"),
                     ({"api_path": "api"}, "api_path: expected a path such as /api")):
        srv.config["modules"]["admin_web"] = bad
        srv.write_config()
        r = srv.ctl("reload")
        assert r.returncode == 1 and why in r.stdout + r.stderr, (bad, r.stdout + r.stderr)
        assert get(srv, "/ops/console/")[0] == 200


def test_an_installed_module_looks_only_in_its_data_folder(server_factory, tmp_path):
    """Outside a build tree (the module file not in libtool's .libs, as
    installed), the default root is the compiled-in PKGDATADIR/admin_web
    only, never a folder beside the module: here, where nothing is
    installed there, the module refuses to load and says where it looked."""
    mods = tmp_path / "mods"
    mods.mkdir()
    shutil.copy(MODULES / "admin_web" / ".libs" / "mod_admin_web.so", mods / "mod_admin_web.so")
    (mods / "www").mkdir()  # a decoy beside the module: never to be served
    (mods / "www" / "index.html").write_text("decoy")
    srv = server_factory({"module_path": [str(mods), str(MODULES)], "modules": {"admin_web": {}}},
                         start=False)
    add_web_listeners(srv)
    try:
        srv.start()
    except RuntimeError as err:
        e = err
    else:
        assert get(srv, "/admin/")[2] != b"decoy"
        pytest.skip("a console is installed in this machine's PKGDATADIR/admin_web")
    m = re.search(r"root: no index\.html in (\S+)/admin_web", str(e))
    assert m and m.group(1).endswith("/share/xmppd") and not m.group(1).startswith(str(tmp_path)), \
        str(e)[-2000:]
