"""Real clients people use, as a new user would run them against xmppd:
go-sendxmpp (Go, go-xmpp: SCRAM, STARTTLS or direct TLS, XEP-0045 join,
XEP-0363 upload, listening) and sendxmpp (Perl, Net::XMPP: PLAIN over
STARTTLS). Each one's message must reach a client logged in with the
RFC 6120/6121 rules: stamped `from`, delivered to the available resource.
Both are Debian packages that contrib/run-tests.sh installs."""

import os
import shutil
import subprocess
import time
import urllib.parse

import pytest

from conftest import Server, _finish
from webclient import add_web_listeners, http_request
from xmpptest import NS_CLIENT, q, raw_login, scaled

GO_SENDXMPP = shutil.which("go-sendxmpp")
SENDXMPP = shutil.which("sendxmpp")
ROOM_SERVICE = "conference.localhost"

pytestmark = pytest.mark.skipif(not (GO_SENDXMPP and SENDXMPP),
                                reason="go-sendxmpp and sendxmpp are not installed "
                                       "(contrib/run-tests.sh installs them)")


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("clients"), cert_dir,
                 {"modules": {"roster": {}, "presence": {}, "offline": {}, "disco": {},
                              "muc": {"create_rooms": "local"},
                              "upload": {"max_file_size": "1M"}}},
                 name="clients")
    add_web_listeners(srv)
    # upload.localhost has no address here: links go to the name that has one
    srv.config["http"] = {"external_url": "https://localhost:%d" % srv.https_port}
    srv.write_config()
    srv.start()
    yield srv
    _finish(srv)


def run_client(argv, stdin=None, timeout=30, env=None):
    return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                          timeout=scaled(timeout), env=dict(os.environ, **(env or {})))


def go_sendxmpp(server, account, *args, direct_tls=False, stdin=None, timeout=30):
    port = server.direct_tls_port if direct_tls else server.port
    argv = [GO_SENDXMPP, "-n", "-u", account.jid, "-p", account.password,
            "-j", "127.0.0.1:%d" % port, "--timeout", str(int(scaled(10)))]
    if direct_tls:
        argv.append("-t")
    # -n covers XMPP's TLS only; HTTPS uploads trust the test certificate
    # the way a user adds a CA (Go reads SSL_CERT_FILE)
    return run_client(argv + list(args), stdin=stdin, timeout=timeout,
                      env={"SSL_CERT_FILE": str(server.cert)})


def body_from(c, sender_bare, timeout=None):
    m = c.wait_for(lambda el: el.tag == q(NS_CLIENT, "message") and
                   (el.get("from") or "").split("/")[0] == sender_bare and
                   el.findtext(q(NS_CLIENT, "body")) is not None, timeout=timeout or scaled(15))
    return m


def test_go_sendxmpp_starttls_scram_message(server, accounts):
    """RFC 6120 §5 STARTTLS, §6 SASL (go-xmpp picks SCRAM), §8.1.2.1 the
    server stamps `from` with the sender's full JID; RFC 6121 §8.5.2.1.1
    delivery of a bare-JID chat message to the available resource."""
    a, b = accounts(2)
    with raw_login(server, b, presence=True) as rb:
        r = go_sendxmpp(server, a, b.jid, stdin="hello from go-sendxmpp\n")
        assert r.returncode == 0, r.stderr + r.stdout
        m = body_from(rb, a.jid)
        assert m.findtext(q(NS_CLIENT, "body")).strip() == "hello from go-sendxmpp"
        assert "/" in m.get("from")


def test_go_sendxmpp_direct_tls(server, accounts):
    """XEP-0368 direct TLS on the second c2s port."""
    a, b = accounts(2)
    with raw_login(server, b, presence=True) as rb:
        r = go_sendxmpp(server, a, b.jid, direct_tls=True, stdin="over direct TLS\n")
        assert r.returncode == 0, r.stderr + r.stdout
        assert body_from(rb, a.jid).findtext(q(NS_CLIENT, "body")).strip() == "over direct TLS"


def test_go_sendxmpp_listens_and_receives(server, accounts):
    """go-sendxmpp -l stays online (RFC 6121 §4.2 initial presence) and
    prints what another user sends it."""
    a, b = accounts(2)
    argv = [GO_SENDXMPP, "-n", "-l", "-u", a.jid, "-p", a.password, "-j", "127.0.0.1:%d" % server.port]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with raw_login(server, b) as rb:
            deadline = time.monotonic() + scaled(15)
            # wait until its session is available, then send
            while server.ctl("-j", "sessions", check=False).stdout.find(a.jid) < 0:
                assert time.monotonic() < deadline, "go-sendxmpp -l never came online"
                time.sleep(0.2)
            time.sleep(scaled(0.5))
            rb.send("<message to='%s' type='chat'><body>ping from raw</body></message>" % a.jid)
            out = ""
            deadline = time.monotonic() + scaled(15)
            while "ping from raw" not in out:
                assert time.monotonic() < deadline, out
                line = p.stdout.readline()
                assert line, "go-sendxmpp -l exited: %s" % out
                out += line
            assert b.jid in out
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_go_sendxmpp_group_chat(server, accounts):
    """XEP-0045 §7.2 join (go-sendxmpp -c creates the room with its
    presence) and §7.4 a groupchat message seen by another occupant."""
    a, b = accounts(2)
    room = "gosend-%s@%s" % (a.user.lower(), ROOM_SERVICE)
    with raw_login(server, b, presence=True) as rb:
        rb.send("<presence to='%s/watcher'><x xmlns='http://jabber.org/protocol/muc'/></presence>" % room)
        rb.wait_for(lambda el: el.tag == q(NS_CLIENT, "presence") and
                    el.get("from") == "%s/watcher" % room, timeout=scaled(15))
        # a created room is locked until configured (XEP-0045 §10.1): make it instant
        rb.send("<iq type='set' id='cfg' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                "<x xmlns='jabber:x:data' type='submit'/></query></iq>" % room)
        rb.wait_for(lambda el: el.get("id") == "cfg", timeout=scaled(15))
        r = go_sendxmpp(server, a, "-c", "-a", "gobot", room, stdin="hello room\n")
        assert r.returncode == 0, r.stderr + r.stdout
        m = rb.wait_for(lambda el: el.tag == q(NS_CLIENT, "message") and el.get("type") == "groupchat"
                        and el.get("from") == "%s/gobot" % room, timeout=scaled(15))
        assert m.findtext(q(NS_CLIENT, "body")).strip() == "hello room"


def test_go_sendxmpp_http_upload(server, accounts, tmp_path):
    """XEP-0363: go-sendxmpp finds the upload service by disco, PUTs the
    file over HTTPS and sends its GET URL (XEP-0066 out-of-band data); the
    recipient downloads the same bytes."""
    a, b = accounts(2)
    f = tmp_path / "picture.png"
    data = bytes(range(256)) * 100
    f.write_bytes(data)
    with raw_login(server, b, presence=True) as rb:
        r = go_sendxmpp(server, a, "-h", str(f), b.jid, timeout=60)
        assert r.returncode == 0, r.stderr + r.stdout
        m = body_from(rb, a.jid)
        url = m.findtext(q(NS_CLIENT, "body")).strip()
        u = urllib.parse.urlsplit(url)
        assert u.scheme == "https" and u.path.endswith("picture.png"), url
        st, _, got = http_request(u.port, "GET", u.path, tls=True, host=u.hostname)
        assert st == 200 and got == data


def test_sendxmpp_plain_over_starttls(server, accounts, tmp_path):
    """sendxmpp (Net::XMPP) logs in with PLAIN over STARTTLS (RFC 6120
    §6.3.1: PLAIN is offered only once TLS is on) and its message arrives."""
    a, b = accounts(2)
    rc = tmp_path / "sendxmpprc"
    rc.write_text("username: %s\njserver: 127.0.0.1:%d\ncomponent: localhost\npassword: %s\n"
                  % (a.user, server.port, a.password))
    rc.chmod(0o600)
    with raw_login(server, b, presence=True) as rb:
        r = run_client([SENDXMPP, "-f", str(rc), "-t", "-n", "-s", "note", b.jid],
                       stdin="hello from sendxmpp\n")
        assert r.returncode == 0, r.stderr + r.stdout
        assert body_from(rb, a.jid).findtext(q(NS_CLIENT, "body")).strip() == "hello from sendxmpp"
