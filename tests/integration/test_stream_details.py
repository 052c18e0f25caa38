"""Smaller protocol and operation points (issue 11.7): the stream's
xml:lang stamped on stanzas that declare none (RFC 6120 §8.1.5), JIDs
with unassigned code points refused as jid-malformed (RFC 6120 §8.3.3.8,
RFC 3454 §7), and log lines that tell connections apart and say, at debug
level, which SASL mechanism was used, how a stream ended and every bounce.
"""

import re

from xmpptest import NS_CLIENT, RawClient, error_condition, q, scaled


def login(server, account, lang="en"):
    c = RawClient(server.port)
    c.open_stream(lang=lang)
    c.starttls()
    c.open_stream(lang=lang)
    assert c.auth_plain(account.user, account.password).ok
    c.open_stream(lang=lang)
    c.bind()
    c.send_presence()
    return c


def test_rfc6120_8_1_5_stream_language_stamped(server, accounts):
    """A stanza without xml:lang gets the language of its sender's stream;
    one that declares its own keeps it."""
    a, b = accounts(2)
    with login(server, a, lang="de") as ca, login(server, b) as cb:
        ca.send("<message to='%s' type='chat' id='m1'><body>Hallo</body></message>" % b.jid)
        ca.send("<message to='%s' type='chat' id='m2' xml:lang='fr'><body>Salut</body></message>"
                % b.jid)
        got = {}
        while len(got) < 2:
            el = cb.wait_for(lambda e: e.tag == q(NS_CLIENT, "message"), timeout=scaled(5))
            got[el.get("id")] = el.get("{http://www.w3.org/XML/1998/namespace}lang")
        assert got == {"m1": "de", "m2": "fr"}


def test_rfc6120_8_3_3_8_unassigned_code_point_is_jid_malformed(server, accounts):
    """U+0221 was unassigned in Unicode 3.2 (stringprep's version): a JID
    holding it cannot be prepared stably, so the answer is jid-malformed
    (modify), not service-unavailable for an account that cannot exist."""
    (a,) = accounts(1)
    with login(server, a) as c:
        c.send("<message to='u\u0221x@localhost' type='chat' id='bad'><body>?</body></message>")
        el = c.wait_for(lambda e: e.get("id") == "bad", timeout=scaled(5))
        assert el.get("type") == "error" and error_condition(el) == ("modify", "jid-malformed")


def test_log_lines_name_the_connection_and_say_why(server, accounts):
    """Stream and session log lines carry "IP #N" (one number per
    connection); debug lines give the SASL mechanism, the clean close by
    the client and the end of the connection, and each bounce."""
    (a,) = accounts(1)
    mark = len(server.read_log())
    c = login(server, a)
    c.send("<message to='nobody-here@localhost' type='chat' id='b1'><body>x</body></message>"
           "<iq type='get' id='b2' to='localhost'><query xmlns='urn:example:none'/></iq>")
    c.wait_for(lambda e: e.get("id") == "b2", timeout=scaled(5))
    c.close_stream()
    c.wait_closed(scaled(5))
    c.close()
    # The session ends once its stored work is committed, which may be a
    # loop turn after the connection itself closed: wait for both lines.
    session_closed = r"session: 127\.0\.0\.1 #\d+: session %s@localhost/\S+ closed" % a.user
    import time
    end = time.monotonic() + scaled(5)
    while time.monotonic() < end:
        log = server.read_log()[mark:]
        if "connection closed" in log and re.search(session_closed, log):
            break
        time.sleep(0.05)
    m = re.search(r"c2s: (127\.0\.0\.1 #\d+): authenticated as %s@localhost" % a.user, log)
    assert m, log
    tag = m.group(1)
    assert "c2s: %s: SASL mechanism PLAIN" % tag in log
    assert "c2s: %s: bound %s@localhost/" % (tag, a.user) in log
    assert "c2s: %s: the client closed the stream" % tag in log
    assert "c2s: %s: connection closed (after the closing handshake)" % tag in log
    assert re.search(r"session: %s: session %s@localhost/\S+ closed" % (re.escape(tag), a.user), log)
    assert re.search(r"router: bounce: iq b2 from %s@localhost/\S+ to localhost: service-unavailable"
                     % a.user, log), log
    with RawClient(server.port) as c:
        c.login(a.user, a.password, mech="SCRAM-SHA-256-PLUS")
    assert "SASL mechanism SCRAM-SHA-256-PLUS" in server.read_log()[mark:]
