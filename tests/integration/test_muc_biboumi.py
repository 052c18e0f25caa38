"""The IRC gateway case with the real gateway: biboumi (Debian's package)
runs as an external component (XEP-0114) on xmppd's component listener,
next to the built-in room service (mod_muc on conference.localhost), and
connects to a tiny IRC server on loopback written here. A user joins the
IRC channel through biboumi as a XEP-0045 room, receives what is said on
IRC and speaks back, while also sitting in a built-in room.

Skipped only when biboumi is not installed (contrib/run-tests.sh installs
it)."""

import asyncio
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest

import xmpptest
from conftest import Server, _finish
from muc_util import (codes, create, groupchat, join_ok, message_from, room_jid)
from xmpptest import connect, run

BIBOUMI = shutil.which("biboumi")
GATEWAY = "biboumi.localhost"
SECRET = "biboumi-component-secret"
IRC_PORT = 6667           # biboumi's plain port (after 6697 and 6670 refuse); its
                          # ports are fixed, so each run takes its own loopback address
CHANNEL = "#chan"

pytestmark = pytest.mark.skipif(BIBOUMI is None, reason="biboumi is not installed "
                                "(apt-get install biboumi)")


class IrcServer:
    """A minimal RFC 1459/2812 server for one channel: registration
    (001-004, MOTD), JOIN with NAMES, PRIVMSG relayed to the channel's other
    members and recorded, PING. say() speaks in the channel as another IRC
    user."""

    def __init__(self, host, port):
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.lock = threading.Lock()
        self.clients = []         # [socket, nick, joined channels, welcomed]
        self.privmsgs = []        # (nick, target, text) received
        self.joined = threading.Event()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _send(self, conn, line):
        try:
            conn.sendall((line + "\r\n").encode())
        except OSError:
            pass

    def _serve(self, conn):
        me = [conn, None, set(), False]  # socket, nick, channels, welcomed
        with self.lock:
            self.clients.append(me)
        buf = b""
        user_seen = False
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                break
            if not data:
                break
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                user_seen = self._line(me, line, user_seen)
        with self.lock:
            self.clients.remove(me)
        conn.close()

    def _line(self, me, line, user_seen):
        conn = me[0]
        parts = line.split(" :", 1)
        words = parts[0].split()
        trailing = parts[1] if len(parts) > 1 else None
        if not words:
            return user_seen
        cmd = words[0].upper()
        if cmd == "CAP":
            if len(words) > 1 and words[1].upper() == "LS":
                self._send(conn, ":irc.test CAP * LS :")
            elif len(words) > 1 and words[1].upper() == "REQ":
                self._send(conn, ":irc.test CAP * NAK :%s" % (trailing or ""))
        elif cmd == "NICK":
            me[1] = trailing or words[1]
        elif cmd == "USER":
            user_seen = True
        elif cmd == "PING":
            self._send(conn, ":irc.test PONG irc.test :%s" % (trailing or (words[1] if len(words) > 1 else "")))
        elif cmd == "JOIN":
            chan = words[1] if len(words) > 1 else trailing
            me[2].add(chan)
            self._send(conn, ":%s!user@localhost JOIN :%s" % (me[1], chan))
            self._send(conn, ":irc.test 353 %s = %s :%s ircfriend" % (me[1], chan, me[1]))
            self._send(conn, ":irc.test 366 %s %s :End of /NAMES list." % (me[1], chan))
            self.joined.set()
        elif cmd == "PRIVMSG" and len(words) > 1:
            with self.lock:
                self.privmsgs.append((me[1], words[1], trailing))
        elif cmd == "QUIT":
            self._send(conn, "ERROR :Closing link")
        if cmd in ("NICK", "USER") and me[1] and user_seen and not me[3]:
            self._welcome(me)
        return user_seen

    def _welcome(self, me):
        conn, nick = me[0], me[1]
        for line in (":irc.test 001 %s :Welcome to the test IRC network %s" % (nick, nick),
                     ":irc.test 002 %s :Your host is irc.test" % nick,
                     ":irc.test 003 %s :This server was created today" % nick,
                     ":irc.test 004 %s irc.test test-1.0 io ntk" % nick,
                     ":irc.test 005 %s CHANTYPES=# PREFIX=(ov)@+ :are supported by this server" % nick,
                     ":irc.test 375 %s :- irc.test Message of the day -" % nick,
                     ":irc.test 372 %s :- loopback only" % nick,
                     ":irc.test 376 %s :End of /MOTD command." % nick):
            self._send(conn, line)
        me[3] = True

    def say(self, chan, text, nick="ircfriend"):
        with self.lock:
            members = [c for c in self.clients if chan in c[2]]
        for c in members:
            self._send(c[0], ":%s!friend@localhost PRIVMSG %s :%s" % (nick, chan, text))

    def received(self, text):
        with self.lock:
            return [m for m in self.privmsgs if m[2] == text]

    def close(self):
        self.stopping = True
        self.sock.close()
        with self.lock:
            for c in self.clients:
                try:
                    c[0].shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _port_is_free(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        return s.connect_ex((host, port)) != 0
    finally:
        s.close()


def _irc_server():
    """The IRC server on a random address of 127.0.0.0/8 (suites run side
    by side: each has its own), where the TLS ports biboumi tries first
    refuse."""
    for _ in range(20):
        host = "127.%d.%d.%d" % (random.randint(100, 250), random.randint(0, 255),
                                 random.randint(1, 254))
        if not all(_port_is_free(host, p) for p in (6697, 6670, IRC_PORT)):
            continue
        try:
            return IrcServer(host, IRC_PORT)
        except OSError:
            continue
    pytest.fail("no free loopback address for the IRC server")


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert_dir):
    srv = Server(tmp_path_factory.mktemp("test_muc_biboumi"), cert_dir,
                 {"components": {GATEWAY: {"secret": SECRET}}, "modules": {"muc": {}}},
                 name="test_muc_biboumi")
    srv.add_component_listener()
    srv.start()
    yield srv
    _finish(srv)


@pytest.fixture(scope="module")
def irc():
    ircd = _irc_server()
    yield ircd
    ircd.close()


@pytest.fixture(scope="module")
def biboumi(server, irc, tmp_path_factory):
    d = tmp_path_factory.mktemp("biboumi")
    cfg = d / "biboumi.cfg"
    cfg.write_text("\n".join([
        "hostname=%s" % GATEWAY,
        "password=%s" % SECRET,
        "xmpp_server_ip=127.0.0.1",
        "port=%d" % server.comp_port,
        "db_name=%s" % (d / "biboumi.sqlite"),
        "identd_port=0",
        "log_level=0",
        "log_file=%s" % (d / "biboumi.log"),
        "policy_directory=%s" % d,
        "realname_customization=false",
        "",
    ]))
    proc = subprocess.Popen([BIBOUMI, str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=open(d / "biboumi.out", "w"), stderr=subprocess.STDOUT)
    log = d / "biboumi.log"
    deadline = time.monotonic() + xmpptest.scaled(15)
    connected = False
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "Authenticated with the XMPP server" in log.read_text(errors="replace"):
            connected = True
            break
        time.sleep(0.1)
    if not connected:
        proc.kill()
        proc.wait()
        text = log.read_text(errors="replace") if log.exists() else ""
        pytest.fail("biboumi did not connect to the component listener:\n%s\n%s"
                    % (text[-3000:], (d / "biboumi.out").read_text(errors="replace")[-2000:]))
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_irc_channel_through_biboumi_next_to_builtin_rooms(server, accounts, irc, biboumi):
    """XEP-0114 component + XEP-0045 on the gateway: the user enters
    #chan%IRC-ADDRESS@biboumi.localhost (self-presence 110 from biboumi once
    the IRC JOIN completed), gets a message said on IRC as groupchat from
    the IRC nick, and a groupchat it sends reaches IRC as PRIVMSG; meanwhile
    the built-in service keeps serving its own room to the same client."""
    a, b = accounts(2)
    chan_room = "%s%%%s@%s" % (CHANNEL, irc.host, GATEWAY)
    room = room_jid()

    async def go():
        ca, cb = await connect(server, a), await connect(server, b)
        await create(ca, room, "owner")
        await join_ok(cb, room, "b")
        p = await join_ok(ca, chan_room, "xmppuser", timeout=xmpptest.scaled(20))
        assert 110 in codes(p)
        assert str(p["from"]) == chan_room + "/xmppuser"
        assert irc.joined.wait(5)

        irc.say(CHANNEL, "hello from irc")
        m = await message_from(ca, chan_room, lambda m: m["body"] == "hello from irc",
                               timeout=xmpptest.scaled(10))
        assert m["type"] == "groupchat"
        assert str(m["from"]) == chan_room + "/ircfriend"

        groupchat(ca, chan_room, "hello from xmpp")
        for _ in range(100):
            if irc.received("hello from xmpp"):
                break
            await asyncio.sleep(0.1)
        got = irc.received("hello from xmpp")
        assert got and got[0][1] == CHANNEL

        # the built-in room service works alongside
        groupchat(ca, room, "to the built-in room")
        m = await message_from(cb, room, lambda m: m["body"] == "to the built-in room")
        assert str(m["from"]) == room + "/owner"
    run(go(), timeout=60)

