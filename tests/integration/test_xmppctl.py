"""The admin CLI: accounts and configuration checking.

`xmppctl -c FILE adduser|passwd|deluser JID` (password on stdin when not a
tty), `xmppctl -c FILE users HOST`, `xmppctl -c FILE check`. Changes made
while the server runs take effect for the next login.
Architecture rule: every config error is one line "FILE:LINE: KEY: message".
"""

import json
import re
import subprocess

import pytest

from conftest import XMPPCTL, XMPPD, unique_user
from xmpptest import RawClient, XMPPTestError


def can_login(server, jid, password, mech="SCRAM-SHA-256"):
    user = jid.split("@")[0]
    with RawClient(server.port) as c:
        try:
            c.login(user, password, mech=mech)
            return True
        except XMPPTestError as e:
            if "SASL" in str(e) and "not-authorized" in str(e):
                return False
            raise


def output_lines(r):
    return [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]


def test_adduser_then_login(server):
    """adduser creates an account that can log in (SCRAM and PLAIN)."""
    jid = unique_user("ctl") + "@localhost"
    r = server.ctl("adduser", jid, input="first-pass\n")
    assert r.returncode == 0, r.stderr
    assert can_login(server, jid, "first-pass")
    assert can_login(server, jid, "first-pass", mech="PLAIN")
    assert not can_login(server, jid, "other-pass")


def test_adduser_existing_fails(server):
    """adduser on an existing account fails (exit != 0) and keeps the old
    password."""
    jid = unique_user("ctl") + "@localhost"
    server.adduser(jid, "keep-me")
    r = server.ctl("adduser", jid, input="overwrite\n")
    assert r.returncode != 0
    assert output_lines(r), "no message on failure"
    assert can_login(server, jid, "keep-me")


@pytest.mark.parametrize("jid", ["bad@@localhost", "someone@not-served.example", "@localhost",
                                 "localhost"])
def test_adduser_invalid_jid_fails(server, jid):
    """adduser refuses JIDs that are invalid or not on a served host."""
    r = server.ctl("adduser", jid, input="pw-123456\n")
    assert r.returncode != 0
    assert output_lines(r)


def test_passwd_changes_password(server):
    """passwd sets a new password: the new one works, the old one not."""
    jid = unique_user("ctl") + "@localhost"
    server.adduser(jid, "old-password")
    r = server.ctl("passwd", jid, input="new-password\n")
    assert r.returncode == 0, r.stderr
    assert can_login(server, jid, "new-password")
    assert not can_login(server, jid, "old-password")


def test_passwd_unknown_user_fails(server):
    r = server.ctl("passwd", unique_user("nobody") + "@localhost", input="x-password\n")
    assert r.returncode != 0


def test_deluser_then_login_fails(server):
    """deluser removes the account: login fails with not-authorized."""
    jid = unique_user("ctl") + "@localhost"
    server.adduser(jid, "doomed-pw")
    assert can_login(server, jid, "doomed-pw")
    r = server.ctl("deluser", jid)
    assert r.returncode == 0, r.stderr
    assert not can_login(server, jid, "doomed-pw")


def test_deluser_unknown_user_fails(server):
    r = server.ctl("deluser", unique_user("nobody") + "@localhost")
    assert r.returncode != 0


def test_users_lists_accounts(server):
    """users HOST lists the accounts of the host, one per line."""
    u1, u2 = unique_user("list"), unique_user("list")
    server.adduser(u1 + "@localhost", "pw-one-1")
    server.adduser(u2 + "@localhost", "pw-two-2")
    server.ctl("deluser", u2 + "@localhost")
    r = server.ctl("users", "localhost")
    assert r.returncode == 0, r.stderr
    names = {ln.strip().split("@")[0] for ln in r.stdout.splitlines() if ln.strip()}
    assert u1 in names
    assert u2 not in names


def test_check_good_config(server):
    """check on the running server's config: exit 0."""
    r = server.ctl("check")
    assert r.returncode == 0, r.stdout + r.stderr


def _bad_config(server, tmp_path, mutate):
    cfg = json.loads(json.dumps(server.config))
    mutate(cfg)
    path = tmp_path / "bad.json"
    text = json.dumps(cfg, indent=2) + "\n"
    path.write_text(text)
    return path, text


def _line_of(text, needle):
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i
    raise AssertionError(needle)


def test_check_unknown_top_level_key(server, tmp_path):
    """check with an unknown key: exit 1 and one line FILE:LINE: KEY: ..."""
    path, text = _bad_config(server, tmp_path, lambda c: c.update({"bogus_key": True}))
    r = _ctl(path, "check")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = output_lines(r)
    assert len(lines) == 1, lines
    m = re.search(r"(\S*bad\.json):(\d+): (\S+?):", lines[0])
    assert m, lines[0]
    assert int(m.group(2)) == _line_of(text, '"bogus_key"')
    assert m.group(3).endswith("bogus_key")


def test_check_unknown_nested_key(server, tmp_path):
    """An unknown key inside limits names its dotted path and line."""
    path, text = _bad_config(server, tmp_path,
                             lambda c: c["limits"].update({"max_stanzas_typo": 5}))
    r = _ctl(path, "check")
    assert r.returncode == 1
    lines = output_lines(r)
    assert len(lines) == 1, lines
    m = re.search(r"(\S*bad\.json):(\d+): (\S+?):", lines[0])
    assert m, lines[0]
    assert int(m.group(2)) == _line_of(text, '"max_stanzas_typo"')
    assert "max_stanzas_typo" in m.group(3)


def test_check_invalid_json(server, tmp_path):
    """A JSON syntax error: exit 1, one line naming the file and line."""
    path = tmp_path / "broken.json"
    path.write_text('{\n  "data_dir": "/tmp",\n  "log": {,\n}\n')
    r = _ctl(path, "check")
    assert r.returncode == 1
    lines = output_lines(r)
    assert len(lines) == 1, lines
    assert re.search(r"\S*broken\.json:3\b", lines[0]), lines[0]


def test_check_error_lines_show_control_characters_escaped(server, tmp_path):
    """Found by fuzz_config: a key holding a newline (JSON "\\n") or an
    escape sequence made an error span two lines or reach the terminal;
    control characters are shown as \\xNN, one error per line."""
    path = tmp_path / "ctrl.json"
    path.write_text('{\n  "list\\ners": [],\n  "lo\\u001b[31mg": {}\n}\n')
    r = _ctl(path, "check")
    assert r.returncode == 1
    lines = output_lines(r)
    assert any("list\\x0aers: unknown key" in ln for ln in lines), lines
    assert any("lo\\x1b[31mg: unknown key" in ln for ln in lines), lines
    assert "\x1b" not in r.stderr


def test_check_reports_every_error(server, tmp_path):
    """check reports every error of the file at once, the server's keys and
    the modules' options alike, each as FILE:LINE: KEY (then a count), and
    xmppd refuses to start with the same lines."""
    def mutate(c):
        c["limits"]["max_depth"] = "deep"
        c["listeners"] = [{"type": "c2x"}]
        c["modules"]["roster"] = {"max_items": "many"}
        c["modules"]["no_such_module"] = True
    path, text = _bad_config(server, tmp_path, mutate)
    r = _ctl(path, "check")
    assert r.returncode == 1
    lines = output_lines(r)
    assert lines[-1] == "xmppctl: 4 errors", lines
    errors = lines[:-1]
    keys = [re.search(r"bad\.json:\d+: (\S+?):", ln).group(1) for ln in errors]
    assert sorted(keys) == sorted(["limits.max_depth", "listeners.0.type",
                                   "modules.roster.max_items", "modules.no_such_module"]), errors
    for ln in errors:
        key = re.search(r"bad\.json:(\d+): (\S+?):", ln)
        needle = '"%s"' % key.group(2).split(".")[-1]
        if key.group(2) == "listeners.0.type":
            needle = '"c2x"'
        assert int(key.group(1)) == _line_of(text, needle), ln
    p = subprocess.run([str(XMPPD), "-c", str(path)], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "limits.max_depth" in p.stderr and "listeners.0.type" in p.stderr, p.stderr


def test_options_lists_server_keys(server):
    """`xmppctl options` documents the server's own keys next to the
    modules' (one configuration system): nested keys with their types."""
    r = server.ctl("options", "server")
    assert r.returncode == 0, r.stderr
    for key in ("limits.max_depth", "listeners[].port", "hosts.<name>.tls.cert",
                "s2s.dialback_secret", "components.<name>.secret"):
        assert key in r.stdout, key
    r = server.ctl("options")
    assert r.returncode == 0
    assert r.stdout.startswith("server") and "\nroster" in r.stdout


def test_xmppd_refuses_bad_config(server, tmp_path):
    """xmppd itself refuses to start on an invalid config (exit != 0) with
    the same one-line message."""
    path, _ = _bad_config(server, tmp_path, lambda c: c.update({"bogus_key": True}))
    r = subprocess.run([str(XMPPD), "-c", str(path)], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "bogus_key" in r.stdout + r.stderr


def _ctl(path, *args):
    return subprocess.run([str(XMPPCTL), "-c", str(path)] + list(args),
                          capture_output=True, text=True, timeout=30)


# ---------------------------------------------------------------------------
# deluser / passwd reach the running server (control socket), and still work
# on a stopped server's data
# ---------------------------------------------------------------------------

ACCOUNT_MODULES = {"modules": {"vcard": {}, "private": {}, "last": {}}}


def logged_in(server, user, password, resource):
    c = RawClient(server.port)
    c.login(user, password, resource=resource)
    c.send_presence()
    return c


def store_vcard(c):
    r = c.iq("<vCard xmlns='vcard-temp'><FN>Doomed</FN></vCard>", type_="set")
    assert r.get("type") == "result"


def test_deluser_ends_sessions_and_purges_data(server_factory):
    """deluser on a running server ends each session of the account with
    <not-authorized/> (RFC 6120 §4.9.3.12, as Prosody), removes the account
    and purges what it stored, including what its sessions wrote as they
    ended (mod_last's logout time)."""
    srv = server_factory(ACCOUNT_MODULES)
    user = unique_user("del")
    srv.adduser(user + "@localhost", "doomed-pw")
    one = logged_in(srv, user, "doomed-pw", "one")
    two = logged_in(srv, user, "doomed-pw", "two")
    store_vcard(one)
    assert "vcard" in srv.stored_stores(user)
    r = srv.ctl("deluser", user + "@localhost")
    assert r.returncode == 0, r.stderr
    assert "2 sessions ended" in r.stdout
    for c in (one, two):
        el = c.expect_stream_error("not-authorized")
        assert "deleted" in (el.findtext("{urn:ietf:params:xml:ns:xmpp-streams}text") or "")
        c.close()
    assert srv.stored_stores(user) == []
    assert not can_login(srv, user + "@localhost", "doomed-pw")


def test_passwd_ends_the_accounts_sessions(server_factory):
    """passwd on a running server ends the account's sessions with <reset/>
    (RFC 6120 §4.9.3.16: the credentials changed; Prosody ends the sessions
    other than the one that changed it, and xmppctl has none); sessions of
    other accounts stay; the new password works."""
    srv = server_factory()
    user, other = unique_user("pw"), unique_user("pw")
    srv.adduser(user + "@localhost", "first-pw")
    srv.adduser(other + "@localhost", "other-pw")
    one = logged_in(srv, user, "first-pw", "one")
    two = logged_in(srv, user, "first-pw", "two")
    bystander = logged_in(srv, other, "other-pw", "x")
    r = srv.ctl("passwd", user + "@localhost", input="second-pw\n")
    assert r.returncode == 0, r.stderr
    for c in (one, two):
        c.expect_stream_error("reset")
        c.close()
    assert bystander.quiet(0.5) == [] and not bystander.eof
    bystander.close()
    assert can_login(srv, user + "@localhost", "second-pw")
    assert not can_login(srv, user + "@localhost", "first-pw")


def test_deluser_and_passwd_on_a_stopped_server(server_factory):
    """With the server stopped, xmppctl changes its data itself: passwd
    sets the password and deluser removes the account and its data, as the
    restarted server shows."""
    srv = server_factory(ACCOUNT_MODULES)
    keep, gone = unique_user("off"), unique_user("off")
    srv.adduser(keep + "@localhost", "keep-pw")
    srv.adduser(gone + "@localhost", "gone-pw")
    c = logged_in(srv, gone, "gone-pw", "r")
    store_vcard(c)
    c.close()
    srv.stop()
    r = srv.ctl("passwd", keep + "@localhost", input="changed-pw\n")
    assert r.returncode == 0, r.stderr
    r = srv.ctl("deluser", gone + "@localhost")
    assert r.returncode == 0, r.stderr
    assert srv.stored_stores(gone) == []
    srv.start()
    assert can_login(srv, keep + "@localhost", "changed-pw")
    assert not can_login(srv, gone + "@localhost", "gone-pw")
