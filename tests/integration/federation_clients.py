"""Clients for the federation tests with a real peer (test_s2s_prosody.py,
test_s2s_ejabberd.py): logins that leave subscription answers to the test
and ask for the roster (an interested resource, RFC 6121 §2.1.6, is sent
subscription stanzas), and run() with the peer's log on failure."""

import xml.etree.ElementTree as ET

from xmpptest import connect, run, scaled


async def prepare(c, presence):
    """No automatic answers to subscriptions; the roster is requested; an
    initial presence with priority `presence` unless None."""
    c.auto_authorize = None
    c.auto_subscribe = False
    iq = c.Iq()
    iq["type"] = "get"
    iq.append(ET.fromstring("<query xmlns='jabber:iq:roster'/>"))
    await iq.send(timeout=scaled(10))
    if presence is not None:
        c.send_presence(ppriority=presence)
    return c


async def login_local(srv, acct, presence=None):
    return await prepare(await connect(srv, acct), presence)


async def login_peer(connect_peer, peer, acct, presence=None, timeout=10):
    """connect_peer: the peer module's own (prosody_peer / ejabberd_peer)."""
    return await prepare(await connect_peer(peer, acct.user, acct.password, timeout=scaled(timeout)),
                         presence)


def run_with_peer_log(peer, coro, timeout):
    """run(), with the peer's log added to a failure."""
    try:
        return run(coro, timeout=timeout)
    except BaseException as e:
        raise AssertionError("%s\n--- peer log ---\n%s" % (e, peer.output_tail(200))) from e
