"""Secure by default (issue 11.3): the configuration an operator starts
from -- contrib/xmppd.example.json and the one contrib/quickstart.sh
writes -- resists a stanza flood from one session, a password-guessing run
across many connections from one address, and a connection flood, while a
normal client never meets a limit.

Each configuration is used as shipped; only what must differ on a test
machine is replaced (paths, ports, the certificate, the domain "localhost",
and the component listener). Attacks come from their own loopback
addresses (127.0.0.2, 127.0.0.3) so that a lockout does not touch the
other tests' clients.
"""

import json
import re
import threading
import time

import pytest

import pie_util
from conftest import MODULES, REPO, Server, _finish
from xmpptest import (NS_CLIENT, NS_STREAM, RawClient, XMPPTestError, error_condition, q,
                      scaled)


def example_config():
    """The example (JSON with comments: the installed default)."""
    return pie_util.example_config()


def quickstart_config():
    """The JSON quickstart.sh writes, with its shell variables filled in:
    $modules is the example's block of default modules."""
    text = (REPO / "contrib" / "quickstart.sh").read_text()
    body = re.search(r'cat >"\$CONF" <<EOF\n(.*?)\nEOF\n', text, re.S).group(1)
    listeners = '{ "type": "c2s", "address": "127.0.0.1", "port": 5222, "tls": "starttls" }'
    body = body.replace("$listeners", listeners).replace("$RUN", "/run").replace("$ROOT", "/root")
    body = body.replace("$modules", pie_util.default_module_lines())
    return json.loads(body)


def adapt(cfg, srv):
    """cfg with this machine's paths, ports, certificate and domain."""
    domain = next(iter(cfg["hosts"]))
    host = cfg["hosts"].pop(domain)
    host.pop("tls", None)
    cfg["hosts"]["localhost"] = host
    cfg.pop("components", None)
    cfg.pop("control_socket", None)
    cfg["log"] = {"level": "debug", "file": str(srv.log_path)}
    cfg["data_dir"] = str(srv.data_dir)
    cfg["module_path"] = [str(MODULES)]
    cfg.setdefault("tls", {}).update({"cert": str(srv.cert), "key": str(srv.key)})
    cfg["listeners"] = [
        {"type": "c2s", "address": "127.0.0.1", "port": srv.port, "tls": "starttls"},
        {"type": "c2s", "address": "127.0.0.1", "port": srv.direct_tls_port, "tls": "direct"},
    ]
    if srv.config.get("storage") == "pgsql":  # XMPPD_TEST_STORAGE=pgsql
        cfg["storage"] = "pgsql"
        mods = cfg["modules"]
        mods.pop("storage_sqlite", None)
        cfg["modules"] = dict([("storage_pgsql", srv.config["modules"]["storage_pgsql"])] +
                              list(mods.items()))
    return cfg


@pytest.fixture(scope="module", params=["example", "quickstart"])
def server(request, tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("secure-" + request.param), cert_dir,
                 name="secure-" + request.param)
    shipped = example_config() if request.param == "example" else quickstart_config()
    srv.config = adapt(shipped, srv)
    srv.write_config()
    srv.start()
    yield srv
    _finish(srv)


def test_defaults_load_the_limits_module(server):
    """Both shipped configurations load mod_limits."""
    assert "limits" in server.config["modules"]


def test_normal_client_meets_no_limit(server, accounts):
    """A login with the usual burst (roster, presence, a few messages and
    pings, as a client does at start) meets no rate limit."""
    (a,) = accounts(1)
    with RawClient(server.port) as c:
        c.login(a.user, a.password)
        c.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        c.send_presence(priority=1)
        for i in range(30):
            c.send("<iq type='get' id='p%d' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>" % i)
        for i in range(10):
            c.send("<message to='%s' type='chat'><body>hello %d</body></message>" % (a.jid, i))
        got = c.quiet(scaled(1.5))
        # (the shipped configurations load no ping module: service-unavailable)
        limited = [e for e in got if e.get("type") == "error" and
                   error_condition(e) == ("wait", "resource-constraint")]
        assert limited == [] and not c.eof and not c.reader.closed


def test_stanza_flood_is_throttled_then_cut_off(server, accounts):
    """RFC 6120 §8.3.3.18 / §4.9.3.14: a session flooding messages gets
    resource-constraint (wait), then policy-violation; the recipient gets
    far fewer than were sent."""
    a, b = accounts(2)
    with RawClient(server.port, source="127.0.0.2") as flood, RawClient(server.port) as victim:
        victim.login(b.user, b.password)
        victim.send_presence()
        flood.login(a.user, a.password)
        sent = 0
        for _ in range(40):
            try:
                flood.send("".join("<message to='%s' type='chat'><body>flood</body></message>"
                                   % b.jid for _ in range(50)))
            except OSError:
                break
            sent += 50
            time.sleep(0.05)
        el = flood.wait_for(lambda e: e.tag == q(NS_STREAM, "error") or
                            (e.tag == q(NS_CLIENT, "message") and e.get("type") == "error"))
        if el.tag != q(NS_STREAM, "error"):
            assert error_condition(el) == ("wait", "resource-constraint")
            el = flood.wait_for(lambda e: e.tag == q(NS_STREAM, "error"), timeout=scaled(10))
        assert error_condition(el) == "policy-violation"
        got = victim.quiet(scaled(1), pred=lambda e: e.tag == q(NS_CLIENT, "message"))
        assert len(got) < sent / 4, "%d of %d flood messages delivered" % (len(got), sent)


def test_password_guessing_locks_the_address_out(server, accounts):
    """A guessing run over many connections from one address (each stream
    also limited to limits.auth_attempts) locks the address out: its next
    stream ends with policy-violation, even with the right password, while
    other addresses log in."""
    (a,) = accounts(1)
    results = []

    def guess(i):
        try:
            with RawClient(server.port, source="127.0.0.3") as c:
                c.open_stream()
                c.starttls()
                c.open_stream()
                results.append(c.auth_plain(a.user, "wrong-%d" % i).condition)
        except (XMPPTestError, OSError) as e:
            results.append("closed: %s" % e)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(30))
    assert results.count("not-authorized") >= 5, results
    with RawClient(server.port, source="127.0.0.3") as c:
        c.send(c.stream_header())
        el = c.expect_stream_error("policy-violation")
        assert "try again" in (el.findtext("{urn:ietf:params:xml:ns:xmpp-streams}text") or "")
    with RawClient(server.port) as ok:
        ok.login(a.user, a.password)


def test_connection_flood_is_capped_per_address(server, accounts):
    """limits.connections_per_ip: a flood of connections from one address
    is refused beyond the cap; another address still gets in."""
    (a,) = accounts(1)
    socks, refused = [], 0
    try:
        for _ in range(60):
            try:
                c = RawClient(server.port, source="127.0.0.4", timeout=scaled(3))
                c.send(c.stream_header())
                socks.append(c)
            except OSError:
                refused += 1
        # refused ones are closed by the server at once: no stream header
        open_ = 0
        for c in socks:
            try:
                c.wait_header(scaled(3))
                open_ += 1
            except XMPPTestError:
                refused += 1
        assert open_ <= 20 and refused >= 40, (open_, refused)
        with RawClient(server.port) as ok:
            ok.login(a.user, a.password)
    finally:
        for c in socks:
            c.close()
