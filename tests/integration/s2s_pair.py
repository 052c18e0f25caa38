"""Two xmppd servers federating over loopback (a.example and b.example),
with certificates from a throw-away CA and static s2s routes to each other:
for tests that need a second server but no DNS and no foreign peer."""

from conftest import Server, _finish
from prosody_peer import TestCA, free_port

DOMAINS = ("a.example", "b.example")


def make_pair(base, overrides=None):
    """Starts and returns (A, B); each has .domain and .s2s_port. overrides
    (deep-merged) apply to both. Stop them with stop_pair."""
    ca = TestCA(base / "ca")
    ports = {d: free_port() for d in DOMAINS}
    servers = []
    for domain in DOMAINS:
        other = DOMAINS[1] if domain == DOMAINS[0] else DOMAINS[0]
        cert, key = ca.issue(domain)
        srv = Server(base / domain, base, {
            "tls": {"cert": str(cert), "key": str(key)},
            "hosts": {"localhost": None, domain: {}},
            "s2s": {"ca_file": str(ca.cert), "dialback_secret": "a dialback secret for the s2s pair",
                    "routes": {other: "127.0.0.1:%d" % ports[other]}},
        }, name="xmppd-" + domain)
        srv.config = __import__("conftest").deep_merge(srv.config, overrides or {})
        srv.domain = domain
        srv.s2s_port = ports[domain]
        srv.config["listeners"].append({"type": "s2s", "address": "127.0.0.1",
                                        "port": ports[domain]})
        srv.write_config()
        srv.start()
        servers.append(srv)
    return servers[0], servers[1]


def stop_pair(pair):
    for srv in pair:
        _finish(srv)


def pair_accounts(a_srv, b_srv):
    """A fresh account on each server: (on A, on B)."""
    import secrets
    from conftest import Account, unique_user
    a = Account(unique_user(), secrets.token_urlsafe(12), domain=a_srv.domain)
    b = Account(unique_user(), secrets.token_urlsafe(12), domain=b_srv.domain)
    a_srv.adduser(a.jid, a.password)
    b_srv.adduser(b.jid, b.password)
    return a, b


def say_hello(a_srv, b_srv, a, b):
    """a messages b across the servers and b receives it: the streams
    between A and B are up afterwards."""
    from xmpptest import connect, run, scaled

    async def hello():
        ca = await connect(a_srv, a, presence=0)
        cb = await connect(b_srv, b, presence=0)
        ca.send_message(mto=b.jid, mbody="hello", mtype="chat")
        await cb.next_message(timeout=scaled(15), pred=lambda m: m["body"] == "hello")
    run(hello())
