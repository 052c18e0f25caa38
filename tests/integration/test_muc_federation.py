"""Rooms with occupants from another server: the room domain is served
locally for server-to-server streams too (xmppd_domain_serve). Two xmppd
servers with static s2s routes and a test CA whose certificate for A
names A's room service as well:

  a.example  xmppd A with mod_muc on conference.a.example
  b.example  xmppd B, its users join A's rooms

A user of B enters a room of A, talks in it, gets private messages, and
leaves when its session ends (B's presence module sends the unavailable
presence the room needs, XEP-0045 §7.14)."""

import pytest

from conftest import Account, Server, _finish, unique_user
from muc_util import codes, create, groupchat, item, join_ok, message_from, presence_from
from prosody_peer import TestCA, free_port
from xmpptest import connect, run, scaled

SECRET = "a fixed dialback secret for the muc tests"
ROOMS = "conference.a.example"


class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("muc-fed")
    e = Env()
    e.ca = TestCA(base / "ca")
    a_cert = e.ca.issue("a.example,DNS:%s" % ROOMS, name="a.example")
    b_cert = e.ca.issue("b.example")
    a_s2s, b_s2s = free_port(), free_port()

    def make(name, domain, cert, port, routes, modules):
        srv = Server(base / name, base, {
            "tls": {"cert": str(cert[0]), "key": str(cert[1])},
            "hosts": {"localhost": None, domain: {}},
            "modules": modules,
            "s2s": {"ca_file": str(e.ca.cert), "dialback_secret": SECRET, "routes": routes},
        }, name=name)
        srv.domain = domain
        srv.config["listeners"].append({"type": "s2s", "address": "127.0.0.1", "port": port})
        srv.write_config()
        srv.start()
        return srv

    e.a = make("xmppd-a", "a.example", a_cert, a_s2s, {"b.example": "127.0.0.1:%d" % b_s2s},
               {"muc": {}})
    e.b = make("xmppd-b", "b.example", b_cert, b_s2s,
               {"a.example": "127.0.0.1:%d" % a_s2s, ROOMS: "127.0.0.1:%d" % a_s2s},
               {"roster": {}, "presence": {}})
    yield e
    _finish(e.a)
    _finish(e.b)


def account(srv):
    a = Account(unique_user(), "pw-" + unique_user(), domain=srv.domain)
    srv.adduser(a.jid, a.password)
    return a


def test_remote_user_in_room(env):
    """§7.2, §7.4, §7.5, §7.14 across servers: B's user enters A's room (the
    roster and its self-presence arrive over s2s), messages and private
    messages flow both ways, and when its session ends B's server's
    unavailable presence takes it out of the room."""
    a, b = account(env.a), account(env.b)
    room = "fed@" + ROOMS

    async def go():
        ca = await connect(env.a, a)
        cb = await connect(env.b, b, presence=0)
        await create(ca, room, "local", {"whois": "anyone"})
        p = await join_ok(cb, room, "remote", timeout=scaled(15))
        assert item(p)["jid"] == str(cb.boundjid) and 100 in codes(p)
        pa = await presence_from(ca, room + "/remote")
        assert item(pa)["jid"] == str(cb.boundjid)
        groupchat(cb, room, "from b")
        await message_from(ca, room, lambda m: m["body"] == "from b")
        groupchat(ca, room, "from a")
        await message_from(cb, room, lambda m: m["body"] == "from a", timeout=scaled(10))
        ca.send_raw("<message to='%s/remote' type='chat'><body>psst</body></message>" % room)
        m = await message_from(cb, room, lambda m: m["body"] == "psst", timeout=scaled(10))
        assert str(m["from"]) == room + "/local"
        cb.abort()
        p = await presence_from(ca, room + "/remote", lambda p: p["type"] == "unavailable",
                                timeout=scaled(15))
        assert item(p)["role"] == "none"
    run(go())
