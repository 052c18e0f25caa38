"""A second federation peer: Debian's ejabberd with its own configuration,
spool (Mnesia) and logs, on another loopback address (127.0.0.3), started
through ejabberdctl as the ejabberd user (it refuses to run as root).

How the two servers find each other:
  * xmppd -> ejabberd: a static route in xmppd's config (s2s.routes);
  * ejabberd -> xmppd: Erlang's resolver, configured by the node's inetrc
    to ask only the test DNS server (dns_fixture), which holds the
    _xmpp-server._tcp record of xmppd's domain with the target "127.0.0.1"
    (ejabberd resolves targets with getaddrinfo, which reads it as an
    address and asks no DNS).

Everything ejabberd reads lives in a folder of its own under /tmp (the
pytest folders are private to root), owned by the ejabberd user, removed
after. Missing ejabberd is a failure, never a skip: CI installs it
(contrib/run-tests.sh).
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import xmpptest
from prosody_peer import PeerClient, TestCA  # a slixmpp client of a server on another address

EJABBERDCTL = shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"
PEER_ADDRESS = "127.0.0.3"
free_port = xmpptest.free_port


def require_ejabberd():
    try:
        pwd.getpwnam("ejabberd")
    except KeyError:
        pytest.fail("ejabberd is not installed (apt-get install ejabberd; contrib/run-tests.sh "
                    "installs it): the federation tests need a real peer", pytrace=False)
    if not os.path.exists(EJABBERDCTL):
        pytest.fail("ejabberdctl missing: install ejabberd", pytrace=False)


class EjabberdPeer:
    """One ejabberd node serving `domain` on PEER_ADDRESS.

    trust_ca: ejabberd trusts the test CA (s2s_cafile), so xmppd's
    certificate validates and the streams use SASL EXTERNAL; without it
    ejabberd falls back to dialback (mod_s2s_dialback), and so does xmppd,
    which is then not given the CA either.

    ejabberd looks SRV records up with Erlang's resolver (the test DNS
    server, through inetrc) but the targets' addresses with the system's
    getaddrinfo: give SRV records a numeric target ("127.0.0.1")."""

    def __init__(self, domain, ca, dns_port, trust_ca=True):
        require_ejabberd()
        self.dir = Path(tempfile.mkdtemp(prefix="xmppd-ejabberd-"))
        for sub in ("etc", "spool", "logs"):
            (self.dir / sub).mkdir()
        self.domain = domain
        self.address = PEER_ADDRESS
        self.c2s_port = free_port(PEER_ADDRESS)
        self.s2s_port = free_port(PEER_ADDRESS)
        self.dist_port = free_port()
        self.node = "xmppdtest%d@localhost" % os.getpid()
        cert, key = ca.issue(domain)
        pem = self.dir / "etc" / "peer.pem"
        pem.write_text(Path(cert).read_text() + Path(key).read_text())
        cafile = self.dir / "etc" / "ca.pem"
        if trust_ca:
            shutil.copy(ca.cert, cafile)
        else:
            shutil.copy(TestCA(self.dir / "other-ca").cert, cafile)
        (self.dir / "etc" / "inetrc").write_text(
            "{lookup, [file, dns]}.\n"
            "{resolv_conf, \"\"}.\n"   # the system's resolver would win otherwise
            "{hosts_file, \"\"}.\n"
            "{nameserver, {127,0,0,1}, %d}.\n"
            "{host, {127,0,0,1}, [\"localhost\"]}.\n" % dns_port)  # the node's own name
        (self.dir / "etc" / "ejabberd.yml").write_text("""\
hosts:
  - "%(domain)s"
loglevel: debug
log_rotate_count: 0
certfiles:
  - "%(pem)s"
ca_file: "%(ca)s"
s2s_cafile: "%(ca)s"
s2s_use_starttls: required
s2s_dns_timeout: 5
s2s_timeout: 30
default_db: mnesia
auth_method: internal
auth_password_format: scram
listen:
  -
    port: %(c2s)d
    ip: "%(ip)s"
    module: ejabberd_c2s
    starttls_required: true
  -
    port: %(s2s)d
    ip: "%(ip)s"
    module: ejabberd_s2s_in
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_s2s_dialback: {}
  mod_version: {}
""" % {
            "domain": domain, "pem": pem, "ca": cafile, "c2s": self.c2s_port,
            "s2s": self.s2s_port, "ip": PEER_ADDRESS})
        (self.dir / "etc" / "ejabberdctl.cfg").write_text(
            "ERLANG_NODE=%s\nERL_DIST_PORT=%d\nEJABBERD_PID_PATH=%s\nEJABBERD_BYPASS_WARNINGS=true\n"
            % (self.node, self.dist_port, self.dir / "ejabberd.pid"))
        shutil.chown(self.dir, "ejabberd", "ejabberd")
        for root, dirs, files in os.walk(self.dir):
            for n in dirs + files:
                shutil.chown(os.path.join(root, n), "ejabberd", "ejabberd")
        self.proc = None

    def _ctl(self):
        return ["env", "HOME=%s" % self.dir, "setpriv", "--reuid=ejabberd", "--regid=ejabberd",
                "--init-groups", EJABBERDCTL, "--config-dir", str(self.dir / "etc"),
                "--spool", str(self.dir / "spool"), "--logs", str(self.dir / "logs"),
                "--node", self.node]

    # -- process -------------------------------------------------------------
    def start(self, timeout=None):
        self._err = open(self.dir / "stderr.log", "ab")
        self.proc = subprocess.Popen(self._ctl() + ["foreground"], stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err, cwd=str(self.dir),
                                     start_new_session=True)
        deadline = time.monotonic() + (timeout or xmpptest.scaled(60))
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("ejabberd exited with %s at start:\n%s"
                                   % (self.proc.returncode, self.output_tail()))
            try:
                with socket.create_connection((PEER_ADDRESS, self.c2s_port), timeout=0.5):
                    with socket.create_connection((PEER_ADDRESS, self.s2s_port), timeout=0.5):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("ejabberd did not listen in time:\n%s" % self.output_tail())
                time.sleep(0.2)
        # listening comes before the node answers ejabberdctl (adduser)
        while subprocess.run(self._ctl() + ["ping"], capture_output=True, text=True,
                             cwd=str(self.dir), timeout=xmpptest.scaled(30)).stdout.strip() != "pong":
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ejabberd's node does not answer:\n%s" % self.output_tail())
            time.sleep(0.5)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # the whole session: ejabberdctl, erl and the beam it started
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(xmpptest.scaled(20))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if getattr(self, "_err", None):
            self._err.close()
            self._err = None

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def adduser(self, user, password):
        r = subprocess.run(self._ctl() + ["register", user, self.domain, password],
                           capture_output=True, text=True, timeout=xmpptest.scaled(60),
                           cwd=str(self.dir))
        if r.returncode != 0:
            raise RuntimeError("ejabberdctl register failed: %s%s" % (r.stdout, r.stderr))

    def read_log(self):
        try:
            return (self.dir / "logs" / "ejabberd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output_tail(self, n=150):
        err = ""
        try:
            err = (self.dir / "stderr.log").read_text(errors="replace")
        except FileNotFoundError:
            pass
        return err[-4000:] + "\n--- ejabberd log ---\n" + "\n".join(self.read_log().splitlines()[-n:])


async def connect_peer(peer, user, password, resource=None, presence=None, timeout=None):
    """A logged-in slixmpp client of user@peer.domain on the ejabberd peer."""
    jid = "%s@%s%s" % (user, peer.domain, "/" + resource if resource else "")
    c = PeerClient(jid, password, peer.address, peer.c2s_port)
    xmpptest._live.append(c)
    await c.start(timeout)
    if presence is not None:
        c.send_presence(ppriority=presence)
    return c
