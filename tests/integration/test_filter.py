"""mod_filter: operator rules (drop, bounce with a stanza error, log) by
stanza kind and type, address patterns, body regular expression (PCRE2)
and size; rules checked at load with an error naming the rule and field.
"""

import asyncio

import pytest

from xmpptest import NS_STANZA_ERR as NS_STANZAS, connect, run

RULES = [
    {"name": "spam", "kind": "message", "body": "(?i)buy\\s+cheap\\s+\\w+", "action": "drop"},
    {"name": "nowhere", "kind": "message", "to": "*@blocked.example", "action": "bounce",
     "error": "not-allowed", "text": "Not to that domain"},
    {"name": "big", "kind": "message", "larger_than": "2k", "action": "bounce"},
    {"name": "headlines", "kind": "message", "type": "headline", "direction": "out", "action": "log"},
]


@pytest.fixture(scope="module")
def config_overrides():
    return {"modules": {"filter": {"rules": RULES}}}


def test_body_pattern_drops_and_others_pass(server, accounts):
    """A message whose body matches the rule's pattern is dropped without
    a word; other messages between the same parties pass."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, presence=1)
        cb = await connect(server, b, presence=1)
        ca.send_message(mto=cb.boundjid, mbody="BUY   cheap watches", mtype="chat")
        ca.send_message(mto=cb.boundjid, mbody="lunch at noon?", mtype="chat")
        m = await cb.next_message(pred=lambda m: m["type"] == "chat")
        assert m["body"] == "lunch at noon?"
        assert await cb.no_message() == []
        assert await ca.no_message() == []  # dropped: no error either
        # the pattern is matched case-insensitively as written ((?i)), anywhere
        ca.send_message(mto=b.jid, mbody="please buy cheap pills now", mtype="normal")
        ca.send_message(mto=b.jid, mbody="cheap to buy", mtype="normal")
        m = await cb.next_message()
        assert m["body"] == "cheap to buy"
        assert await cb.no_message() == []
    run(scenario())


def test_bounce_by_recipient_pattern(server, accounts):
    """A bounce rule answers with its stanza error and text (RFC 6120 §8.3)."""
    (a,) = accounts(1)

    async def scenario():
        ca = await connect(server, a)
        ca.send_message(mto="someone@blocked.example", mbody="hello", mtype="chat")
        e = await ca.next_message(pred=lambda m: m["type"] == "error")
        assert e["error"]["condition"] == "not-allowed"
        assert e["error"]["text"] == "Not to that domain"
        assert e["from"] == "someone@blocked.example"
    run(scenario())


def test_bounce_by_size(server, accounts):
    """larger_than: a message over 2 KiB bounces (default condition
    policy-violation); a small one passes."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, presence=1)
        cb = await connect(server, b, presence=1)
        ca.send_message(mto=cb.boundjid, mbody="x" * 3000, mtype="chat")
        e = await ca.next_message(pred=lambda m: m["type"] == "error")
        # slixmpp does not know this RFC 6120 condition: read the XML
        assert e.xml.find("{jabber:client}error/{%s}policy-violation" % NS_STANZAS) is not None
        ca.send_message(mto=cb.boundjid, mbody="y" * 100, mtype="chat")
        m = await cb.next_message()
        assert m["body"] == "y" * 100
    run(scenario())


def test_log_rule(server, accounts):
    """A log rule writes one line naming the rule and lets the stanza pass;
    the body is not in the line."""
    a, b = accounts(2)

    async def scenario():
        ca = await connect(server, a, presence=1)
        cb = await connect(server, b, presence=1)
        ca.send_message(mto=cb.boundjid, mbody="secret-headline-text", mtype="headline")
        m = await cb.next_message()
        assert m["body"] == "secret-headline-text"
        await asyncio.sleep(0.2)
    run(scenario())
    lines = [l for l in server.read_log().splitlines() if "headlines matched" in l]
    assert len(lines) == 1, lines
    assert a.jid in lines[0] and "secret-headline-text" not in lines[0]


@pytest.mark.parametrize("rules,expect", [
    ([{"action": "drop"}, {"kind": "message", "action": "explode"}], "rules[1].action"),
    ([{"body": "(unclosed", "action": "drop"}], "rules[0].body"),
    ([{"kind": "mesage", "action": "drop"}], "rules[0].kind"),
    ([{"action": "bounce", "error": "no-such-condition"}], "rules[0].error"),
    ([{"action": "drop", "colour": "red"}], "rules[0].colour"),
    ([{"to": "a@b@c", "action": "drop"}], "rules[0].to"),
    ({"action": "drop"}, "option rules"),
])
def test_bad_rules_refuse_start(server_factory, rules, expect):
    """A bad rule stops the server at start with one line naming the rule
    index and the field."""
    srv = server_factory({"modules": {"filter": {"rules": rules}}}, start=False)
    with pytest.raises(RuntimeError):
        srv.start(timeout=10)
    out = srv.read_log() + srv.read_stderr()
    lines = [l for l in out.splitlines() if expect in l]
    assert lines, out[-3000:]
    srv.stopped_by_test = True
