"""mod_metrics and the kernel's metrics registry (api/xmppd/metrics.h):
/metrics in the Prometheus text format 0.0.4 and in OpenMetrics 1.0, the
counters the kernel keeps (sessions by transport and host, stanzas by
kind, bytes, authentications by mechanism, storage latency per driver,
event-loop lag, process memory, module reloads) and those of modules
(offline queue lengths, rate-limit hits); bounded labels (no per-user
label); access by address (loopback by default, the rule "metrics") or
bearer token."""

import re
import time

import pytest

from conftest import Server, _finish
from webclient import add_web_listeners, http_request
from xmpptest import NS_CLIENT, PoliteClient, q, raw_login, scaled

TOKEN = "a-metrics-token-of-some-length"


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("metrics"), cert_dir, {
        "modules": {"presence": {}, "roster": {}, "offline": {}, "limits": {},
                    "metrics": {"token": TOKEN}},
    }, name="metrics")
    add_web_listeners(srv)
    srv.start()
    yield srv
    _finish(srv)


def scrape(srv, headers=None):
    st, hdrs, body = http_request(srv.http_port, "GET", "/metrics", headers=headers)
    assert st == 200, (st, body)
    return hdrs, body.decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, labels-string): value} plus the TYPE of each family, checking
    the format line by line."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
        elif line.startswith("# HELP ") or line == "# EOF":
            continue
        else:
            m = SAMPLE.match(line)
            assert m, "not an exposition line: %r" % line
            samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples, types


def value(samples, name, **labels):
    want = {k: v for k, v in labels.items()}
    total = None
    for (n, ls), v in samples.items():
        if n != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', ls))
        if all(got.get(k) == v2 for k, v2 in want.items()):
            total = (total or 0) + v
    return total


def test_prometheus_text_format_and_kernel_metrics(server, accounts):
    a, b = accounts(2)
    with raw_login(server, a, presence=True) as ca, raw_login(server, b, presence=True) as cb:
        ca.send("<message to='%s' type='chat'><body>hello</body></message>" % b.jid)
        cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"))
        hdrs, text = scrape(server)
        assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
        samples, types = parse(text)
        assert value(samples, "xmppd_sessions", transport="c2s", host="localhost") == 2
        assert value(samples, "xmppd_sessions", transport="websocket", host="localhost") == 0
        assert types["xmppd_stanzas_total"] == "counter"
        assert value(samples, "xmppd_stanzas_total", transport="c2s", direction="in",
                     kind="message") >= 1
        assert value(samples, "xmppd_stanzas_total", transport="c2s", direction="out",
                     kind="presence") >= 1
        assert value(samples, "xmppd_stream_bytes_total", direction="in") > 0
        assert value(samples, "xmppd_auth_total", mechanism="PLAIN", result="success") >= 2
        assert types["xmppd_storage_seconds"] == "histogram"
        driver = server.config["storage"]  # sqlite, or pgsql with XMPPD_TEST_STORAGE=pgsql
        assert value(samples, "xmppd_storage_seconds_count", driver=driver) > 0
        inf = value(samples, "xmppd_storage_seconds_bucket", driver=driver, le="+Inf")
        assert inf == value(samples, "xmppd_storage_seconds_count", driver=driver)
        assert value(samples, "process_resident_memory_bytes") > 1e6
        assert value(samples, "process_open_fds") > 3
        assert value(samples, "xmppd_s2s_streams", direction="out") == 0
        # no label carries an account: cardinality stays bounded by design
        assert a.user not in text and b.user not in text


def test_event_loop_lag_and_module_reloads(server):
    time.sleep(scaled(1.2))
    samples, _ = parse(scrape(server)[1])
    assert value(samples, "xmppd_event_loop_lag_seconds") is not None
    assert value(samples, "xmppd_event_loop_lag_distribution_seconds_count") >= 1
    assert server.ctl("module", "reload", "offline", "localhost").returncode == 0
    samples, _ = parse(scrape(server)[1])
    assert value(samples, "xmppd_module_reloads_total", module="offline") == 1


def scrape_until(srv, ok, what):
    """Samples once ok(samples) holds, scraping again for a bounded time:
    a message the router passed is stored once the recipient's queue
    length has loaded, which on PostgreSQL may be after the ping's
    answer."""
    deadline = time.monotonic() + scaled(5)
    while True:
        samples, _ = parse(scrape(srv)[1])
        if ok(samples) or time.monotonic() > deadline:
            assert ok(samples), what
            return samples
        time.sleep(0.05)


def test_offline_queue_and_failed_auth(server, accounts):
    """The offline queue histogram counts each stored message (mod_offline
    observes the recipient's queue length), failed PLAIN logins count as
    failures."""
    a, b = accounts(2)
    with raw_login(server, a, presence=True) as ca:
        for i in range(3):
            ca.send("<message to='%s' type='chat'><body>%d</body></message>" % (b.jid, i))
        ca.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost")
    with PoliteClient(server.port) as c:
        c.open_stream()
        c.starttls()
        c.open_stream()
        assert not c.auth_plain(b.user, "wrong").ok
    samples = scrape_until(
        server, lambda s: (value(s, "xmppd_offline_queue_length_count") or 0) >= 3,
        "three messages stored offline")
    assert value(samples, "xmppd_offline_queue_length_bucket", le="2") >= 2
    assert value(samples, "xmppd_auth_total", mechanism="PLAIN", result="failure") >= 1
    assert "xmppd_rate_limit_hits_total" in scrape(server)[1]


def test_openmetrics_when_asked(server):
    hdrs, text = scrape(server, {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert hdrs["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith("# EOF\n")
    assert "# TYPE xmppd_stanzas counter\n" in text  # family without _total
    assert "\nxmppd_stanzas_total{" in text


def test_access_by_address_rule_and_token(server):
    """Loopback may scrape by default; a rule "metrics" denying it, and then
    only the bearer token opens it (401 with WWW-Authenticate without)."""
    server.config["access"] = {"metrics": [{"deny": {"ip": "127.0.0.0/8"}}]}
    server.write_config()
    assert server.ctl("reload").returncode == 0
    try:
        st, hdrs, _ = http_request(server.http_port, "GET", "/metrics")
        assert st == 401 and hdrs["www-authenticate"].startswith("Bearer")
        st, _, _ = http_request(server.http_port, "GET", "/metrics",
                                headers={"Authorization": "Bearer wrong-token-wrong-token"})
        assert st == 401
        scrape(server, {"Authorization": "Bearer " + TOKEN})
    finally:
        del server.config["access"]
        server.write_config()
        assert server.ctl("reload").returncode == 0
    scrape(server)
