"""Federation peers for the s2s tests: a test certificate authority and a
real Prosody (Debian's package) with its own configuration, data folder and
log, listening on a second loopback address (127.0.0.2, which Linux routes
without any setup).

How the two servers find each other, without touching /etc/hosts or the
real DNS:
  * xmppd -> Prosody: a static route in xmppd's config (s2s.routes), or SRV
    records in the test DNS server (dns_fixture.DNSServer);
  * Prosody -> xmppd: Prosody resolves through libunbound, configured with
    `unbound = { forward = "127.0.0.1@PORT" }` to ask only the test DNS
    server, which holds _xmpp-server._tcp records for xmppd's domain.

Test domains end in .example: libunbound answers names under .test (and
.localhost, .invalid) itself as RFC 6761 special-use zones, never asking
the forwarder.

Prosody runs as root with run_as_root = true (the CI machine runs the
tests as root); as another user it simply runs as that user. Missing
Prosody is a failure, never a skip: CI installs it (contrib/run-tests.sh).
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import xmpptest

PROSODY = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"
PEER_ADDRESS = "127.0.0.2"


def require_prosody():
    if not (os.path.exists(PROSODY) and os.path.exists(PROSODYCTL)):
        pytest.fail("Prosody is not installed (apt-get install prosody; contrib/run-tests.sh "
                    "installs it): the federation tests need a real peer", pytrace=False)


free_port = xmpptest.free_port


def _run(args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


class TestCA:
    """A throw-away CA (EC P-256) issuing server certificates whose
    subjectAltName is the domain (RFC 6125 DNS-ID), usable for TLS server
    and client authentication (s2s presents the same certificate both
    ways)."""

    __test__ = False  # not a pytest class

    def __init__(self, folder):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.crt"
        self.key = self.dir / "ca.key"
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", "30",
              "-subj", "/CN=xmppd test CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def issue(self, domain, name=None):
        """(certificate, key) paths for domain."""
        name = name or domain
        crt, key = self.dir / (name + ".crt"), self.dir / (name + ".key")
        csr, ext = self.dir / (name + ".csr"), self.dir / (name + ".ext")
        ext.write_text("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n" % domain)
        _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", str(key), "-out", str(csr), "-subj", "/CN=%s" % domain])
        _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey",
              str(self.key), "-CAcreateserial", "-out", str(crt), "-days", "30",
              "-extfile", str(ext)])
        os.chmod(key, 0o644)  # Prosody may read it as its own user
        return crt, key


class ProsodyPeer:
    """One Prosody process serving `domain` on PEER_ADDRESS.

    trust_ca: Prosody trusts the test CA (then xmppd's certificate validates
    and Prosody offers/uses SASL EXTERNAL); without it xmppd's certificate is
    unknown to Prosody and the servers fall back to dialback.
    secure_auth: s2s_secure_auth (refuse dialback, demand valid certificates).
    bidi: load mod_s2s_bidi (XEP-0288).
    """

    def __init__(self, folder, domain, ca, dns_port, trust_ca=True, secure_auth=False,
                 direct_tls=False, bidi=False):
        require_prosody()
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        self.domain = domain
        self.address = PEER_ADDRESS
        self.c2s_port = free_port(PEER_ADDRESS)
        self.s2s_port = free_port(PEER_ADDRESS)
        self.s2s_tls_port = free_port(PEER_ADDRESS) if direct_tls else None
        self.cert, self.key = ca.issue(domain)
        self.config_path = self.dir / "prosody.cfg.lua"
        self.log_path = self.dir / "prosody.log"
        self.proc = None
        cafile = str(ca.cert) if trust_ca else str(self.dir / "empty-ca.pem")
        if not trust_ca:
            # An unrelated CA: nothing we present chains to it.
            other = TestCA(self.dir / "other-ca")
            shutil.copy(other.cert, cafile)
        lua = lambda s: '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
        self.config_path.write_text("\n".join([
            "run_as_root = true",
            "daemonize = false",
            "pidfile = %s" % lua(self.dir / "prosody.pid"),
            "data_path = %s" % lua(self.dir / "data"),
            "log = { debug = %s }" % lua(self.log_path),
            "interfaces = { %s }" % lua(PEER_ADDRESS),
            "local_interfaces = { %s }" % lua(PEER_ADDRESS),
            "c2s_ports = { %d }" % self.c2s_port,
            "c2s_direct_tls_ports = { }",
            "s2s_ports = { %d }" % self.s2s_port,
            "s2s_direct_tls_ports = { %s }" % (self.s2s_tls_port or ""),
            "http_ports = { }",
            "https_ports = { }",
            "c2s_require_encryption = true",
            "s2s_require_encryption = true",
            "s2s_secure_auth = %s" % ("true" if secure_auth else "false"),
            "s2s_timeout = 10",
            "authentication = \"internal_plain\"",
            "storage = \"internal\"",
            "modules_enabled = { \"roster\"; \"saslauth\"; \"tls\"; \"dialback\"; \"disco\"; "
            "\"ping\"; \"presence\"; \"message\"; \"iq\"%s }" % ("; \"s2s_bidi\"" if bidi else ""),
            "modules_disabled = { \"offline\" }",
            "unbound = { forward = %s; resolvconf = false; hoststxt = false }"
            % lua("127.0.0.1@%d" % dns_port),
            "ssl = { certificate = %s; key = %s; cafile = %s; capath = false }"
            % (lua(self.cert), lua(self.key), lua(cafile)),
            "VirtualHost %s" % lua(domain),
            "",
        ]))

    # -- process -------------------------------------------------------------
    def start(self, timeout=None):
        self._err = open(self.dir / "prosody.stderr", "ab")
        self.proc = subprocess.Popen([PROSODY, "--config", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._err, stderr=self._err,
                                     cwd=str(self.dir))
        deadline = time.monotonic() + (timeout or xmpptest.scaled(15))
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("prosody exited with %s at start:\n%s"
                                   % (self.proc.returncode, self.output_tail()))
            try:
                with socket.create_connection((PEER_ADDRESS, self.c2s_port), timeout=0.5):
                    with socket.create_connection((PEER_ADDRESS, self.s2s_port), timeout=0.5):
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("prosody did not listen in time:\n%s" % self.output_tail())
                time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(xmpptest.scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_err", None):
            self._err.close()
            self._err = None

    def adduser(self, user, password):
        r = subprocess.run([PROSODYCTL, "--config", str(self.config_path), "register", user,
                            self.domain, password], capture_output=True, text=True,
                           timeout=xmpptest.scaled(30))
        if r.returncode != 0:
            raise RuntimeError("prosodyctl register failed: %s%s" % (r.stdout, r.stderr))

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output_tail(self, n=150):
        err = ""
        try:
            err = (self.dir / "prosody.stderr").read_text(errors="replace")
        except FileNotFoundError:
            pass
        return err[-4000:] + "\n--- prosody log ---\n" + "\n".join(self.read_log().splitlines()[-n:])


if xmpptest.slixmpp is not None:
    class PeerClient(xmpptest.Client):
        """A slixmpp client of a server on another loopback address."""

        def __init__(self, jid, password, host, port):
            super().__init__(jid, password, port, mech="PLAIN")
            self.peer_host = host

        async def get_dns_records(self, domain, port=None):
            return [(self.boundjid.domain, self.peer_host, self.port)]

        async def start(self, timeout=None):
            self.default_domain = self.boundjid.domain
            self.connect((self.peer_host, self.port), force_starttls=True)
            try:
                await asyncio.wait_for(self._ready, timeout or xmpptest.DEFAULT_TIMEOUT)
            except asyncio.TimeoutError:
                raise xmpptest.XMPPTestError("timeout: %s did not reach session_start" % self.boundjid)
            return self


async def connect_peer(peer, user, password, resource=None, presence=None, timeout=None):
    """A logged-in slixmpp client of user@peer.domain on the Prosody peer."""
    jid = "%s@%s%s" % (user, peer.domain, "/" + resource if resource else "")
    c = PeerClient(jid, password, peer.address, peer.c2s_port)
    xmpptest._live.append(c)
    await c.start(timeout)
    if presence is not None:
        c.send_presence(ppriority=presence)
    return c
