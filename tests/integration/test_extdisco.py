"""XEP-0215 external service discovery (mod_extdisco): STUN/TURN services
from the configuration, and time-limited TURN credentials with the
shared-secret scheme coturn implements (use-auth-secret: username
"expiry:user", password base64(HMAC-SHA1(secret, username)))."""

import base64
import calendar
import hashlib
import hmac
import json
import time

import pytest

from xmpptest import NS_CLIENT, RawClient, error_condition, q, scaled, tostr

NS_EXT = "urn:xmpp:extdisco:2"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
SECRET = "s3cret-shared-with-coturn"
TTL = 3600

SERVICES = [
    {"type": "stun", "host": "stun.example.org", "port": 3478, "transport": "udp"},
    {"type": "turn", "host": "turn.example.org", "port": 3478, "transport": "udp", "restricted": True},
    {"type": "turn", "host": "turn.example.org", "port": 5349, "transport": "tcp", "restricted": True,
     "name": "TURN over TLS"},
    {"type": "turn", "host": "legacy.example.org", "username": "u", "password": "p"},
]


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"disco": {}, "roster": {}, "presence": {}, "mam": {},
                        "extdisco": {"services": SERVICES, "turn_secret": SECRET,
                                     "credential_ttl": "%ds" % TTL}}}


def login(server, account):
    c = RawClient(server.port)
    c.login(account.user, account.password)
    return c


def services(el, name="services"):
    s = el.find(q(NS_EXT, name))
    assert s is not None, tostr(el)
    return [dict(e.attrib) for e in s.findall(q(NS_EXT, "service"))]


def check_credentials(svc, user):
    """coturn's check: the password is the HMAC of the username, which
    names an expiry about TTL seconds away, and 'expires' says the same."""
    expiry, name = svc["username"].split(":", 1)
    assert name == user
    assert abs(int(expiry) - (time.time() + TTL)) < scaled(30)
    mac = hmac.new(SECRET.encode(), svc["username"].encode(), hashlib.sha1).digest()
    assert svc["password"] == base64.b64encode(mac).decode()
    assert calendar.timegm(time.strptime(svc["expires"], "%Y-%m-%dT%H:%M:%SZ")) == int(expiry)
    assert svc["restricted"] in ("1", "true")


def test_xep0215_3_services_listed_with_turn_credentials(server, accounts):
    """XEP-0215 §3.1: every configured service; restricted TURN services
    carry fresh credentials, others their static ones or none; the host
    advertises urn:xmpp:extdisco:2 (§6)."""
    (a,) = accounts(1)
    with login(server, a) as c:
        got = services(c.iq("<services xmlns='%s'/>" % NS_EXT, to="localhost"))
        assert [(s["type"], s["host"], s.get("port")) for s in got] == [
            ("stun", "stun.example.org", "3478"), ("turn", "turn.example.org", "3478"),
            ("turn", "turn.example.org", "5349"), ("turn", "legacy.example.org", None)]
        assert "username" not in got[0] and got[0]["transport"] == "udp"
        check_credentials(got[1], a.user)
        check_credentials(got[2], a.user)
        assert got[2]["name"] == "TURN over TLS" and got[2]["transport"] == "tcp"
        assert (got[3]["username"], got[3]["password"]) == ("u", "p")
        info = c.iq("<query xmlns='%s'/>" % NS_DISCO_INFO, to="localhost")
        assert NS_EXT in {f.get("var") for f in info.iter(q(NS_DISCO_INFO, "feature"))}


def test_xep0215_3_2_services_of_one_type(server, accounts):
    """§3.2: a 'type' selects services of that type; none of it: empty."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = c.iq("<services xmlns='%s' type='stun'/>" % NS_EXT, to="localhost")
        assert r.find(q(NS_EXT, "services")).get("type") == "stun"
        assert [s["host"] for s in services(r)] == ["stun.example.org"]
        assert services(c.iq("<services xmlns='%s' type='ftp'/>" % NS_EXT, to="localhost")) == []


def test_xep0215_3_3_credentials_for_one_service(server, accounts):
    """§3.3: credentials for host and type (and port when several match);
    an unknown service is item-not-found, a request without host or type
    bad-request."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = c.iq("<credentials xmlns='%s'><service host='turn.example.org' type='turn'/></credentials>"
                 % NS_EXT, to="localhost")
        got = services(r, "credentials")
        assert [s["port"] for s in got] == ["3478", "5349"]
        for s in got:
            check_credentials(s, a.user)
        r = c.iq("<credentials xmlns='%s'><service host='turn.example.org' type='turn' port='5349'/>"
                 "</credentials>" % NS_EXT, to="localhost")
        assert [s["port"] for s in services(r, "credentials")] == ["5349"]
        r = c.iq("<credentials xmlns='%s'><service host='nowhere.example.org' type='turn'/></credentials>"
                 % NS_EXT, to="localhost")
        assert error_condition(r) == ("cancel", "item-not-found")
        r = c.iq("<credentials xmlns='%s'><service type='turn'/></credentials>" % NS_EXT, to="localhost")
        assert error_condition(r) == ("modify", "bad-request")
        r = c.iq("<credentials xmlns='%s'><service host='turn.example.org' type='turn' port='x'/>"
                 "</credentials>" % NS_EXT, to="localhost")
        assert error_condition(r) == ("modify", "bad-request")


def test_xep0215_set_is_not_allowed(server, accounts):
    """Only IQ-get is defined for requests: a set gets service-unavailable
    (nobody handles it)."""
    (a,) = accounts(1)
    with login(server, a) as c:
        r = c.iq("<services xmlns='%s'/>" % NS_EXT, type_="set", to="localhost")
        assert error_condition(r)[1] == "service-unavailable"


@pytest.mark.parametrize("services_, why", [
    ([{"type": "turn", "host": "t.example.org", "restricted": True}], "no turn_secret is configured"),
    ([{"type": "turn"}], "needs \"type\" and \"host\""),
    ([{"type": "stun", "host": "s.example.org", "port": 70000}], "\"port\" that is not from 1 to 65535"),
    ([{"type": "stun", "host": "s.example.org", "secret": "x"}], "unknown key"),
])
def test_extdisco_configuration_errors_refuse_the_module(server_factory, services_, why):
    """A wrong service description refuses the module with a reason that
    names the service."""
    srv = server_factory({"modules": {"extdisco": {"services": services_}}}, start=False)
    with pytest.raises(RuntimeError) as e:
        srv.start()
    assert "services[0]" in str(e.value) and why in str(e.value)


def test_xep0479_levels_with_archive_and_external_services(server):
    """`xmppctl features` (XEP-0479): mod_mam provides XEP-0313, XEP-0359
    and XEP-0441, mod_extdisco XEP-0215; A/V Calling is met at both levels
    and IM Advanced no longer lacks History Storage / Retrieval."""
    j = json.loads(server.ctl("-j", "features").stdout)
    host = j["hosts"][0]
    specs = {s["spec"]: s["by"] for s in host["specs"]}
    assert specs["XEP-0313"] == ["mam"] and specs["XEP-0359"] == ["mam"]
    assert specs["XEP-0441"] == ["mam"] and specs["XEP-0215"] == ["extdisco"]
    suites = {(s["category"], s["level"]): s for s in host["suites"]}
    for level in ("Server", "Advanced Server"):
        av = suites[("A/V Calling", level)]
        assert [m["feature"] for m in av["missing"] if m["category"] == "A/V Calling"] == []
    im = suites[("IM", "Advanced Server")]
    assert "History Storage / Retrieval" not in [m["feature"] for m in im["missing"]]
