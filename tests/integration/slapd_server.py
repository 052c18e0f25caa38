"""A private OpenLDAP server (Debian's slapd) for the directory tests.

Each Slapd gets a temporary folder with its own slapd.conf (Debian's
schemas plus the Active Directory elements of testdata/ad.schema), an MDB
database loaded with slapadd from an LDIF (by default the test directory
modules/auth_ldap/testdata/directory.ldif), and a test CA made here with
openssl: the server certificate names "localhost" only (DNS SAN, no IP),
so ldaps://localhost passes the hostname check and ldaps://127.0.0.1 does
not; another, unrelated CA is made for the wrong-CA cases. slapd listens
on 127.0.0.1 only, plain LDAP and LDAPS on two free ports, in the
foreground (-d 0) as a child of the test process, never as a system
service. It runs as the user running the tests: root in CI works, slapd
needs no dedicated user for a folder it owns.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from xmpptest import free_port, scaled

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = "/etc/ldap/schema"
REPO = Path(__file__).resolve().parents[2]
TEST_LDIF = REPO / "modules" / "auth_ldap" / "testdata" / "directory.ldif"
AD_SCHEMA = REPO / "modules" / "auth_ldap" / "testdata" / "ad.schema"

SUFFIX = "dc=example,dc=org"
PEOPLE = "ou=people," + SUFFIX
ADMIN_DN = "cn=admin," + SUFFIX
ADMIN_PW = "admin-secret"
SERVICE_DN = "cn=xmppd,ou=services," + SUFFIX
SERVICE_PW = "service-pw"


def available():
    return os.path.exists(SLAPD) and os.path.exists(SLAPADD) and shutil.which("ldapmodify") is not None


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=str(cwd), check=True, capture_output=True, timeout=60)


def make_ca(folder, name):
    """A self-signed CA: folder/name.key, folder/name.crt."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=xmppd test CA %s" % name, "-keyout", name + ".key", "-out", name + ".crt",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=folder)


def make_server_cert(folder, ca, name, san):
    """A server certificate for san (e.g. "DNS:localhost") signed by ca."""
    ext = folder / (name + ".ext")
    ext.write_text("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % san)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", name + ".key",
             "-out", name + ".csr", cwd=folder)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
             "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", name + ".crt", cwd=folder)


class Slapd:
    def __init__(self, ldif=TEST_LDIF, base=None):
        self.base = Path(base or tempfile.mkdtemp(prefix="xmppd-slapd-"))
        self.db = self.base / "db"
        self.db.mkdir(parents=True, exist_ok=True)
        self.conf = self.base / "slapd.conf"
        self.log = self.base / "slapd.log"
        self.port = free_port()
        self.ldaps_port = free_port()
        self.proc = None
        make_ca(self.base, "ca")
        make_ca(self.base, "other-ca")
        make_server_cert(self.base, "ca", "server", "DNS:localhost")
        self.ca_file = str(self.base / "ca.crt")
        self.other_ca_file = str(self.base / "other-ca.crt")
        self.write_conf()
        r = subprocess.run([SLAPADD, "-f", str(self.conf), "-l", str(ldif)], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("slapadd failed:\n%s%s" % (r.stdout, r.stderr))

    def write_conf(self):
        schemas = "".join("include %s/%s.schema\n" % (SCHEMA_DIR, s)
                          for s in ("core", "cosine", "inetorgperson", "nis"))
        schemas += "include %s\n" % AD_SCHEMA
        b = self.base
        self.conf.write_text(
            schemas +
            "pidfile %s/slapd.pid\nargsfile %s/slapd.args\n" % (b, b) +
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            "TLSCACertificateFile %s/ca.crt\nTLSCertificateFile %s/server.crt\n"
            "TLSCertificateKeyFile %s/server.key\n" % (b, b, b) +
            "sizelimit unlimited\n"
            "database mdb\nmaxsize 104857600\n"
            "suffix \"%s\"\nrootdn \"%s\"\nrootpw %s\ndirectory %s\n" % (SUFFIX, ADMIN_DN, ADMIN_PW, self.db) +
            "index objectClass eq\nindex uid eq\n"
            # users bind with their password and read everything else; the
            # passwords themselves are readable by nobody
            "access to attrs=userPassword by self write by anonymous auth by * none\n"
            "access to * by * read\n")

    # -- addresses ---------------------------------------------------------------
    def uri(self, scheme="ldap", host="127.0.0.1"):
        return "%s://%s:%d" % (scheme, host, self.ldaps_port if scheme == "ldaps" else self.port)

    # -- process -----------------------------------------------------------------
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if self.running:
            return self
        listen = "ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/" % (self.port, self.ldaps_port)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([SLAPD, "-f", str(self.conf), "-h", listen, "-d", "0"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=str(self.base))
        out.close()
        deadline = time.monotonic() + scaled(15)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("slapd exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("slapd did not accept on %d:\n%s" % (self.port, self.log_tail()))
                time.sleep(0.05)

    def signal(self, sig):
        if self.running:
            self.proc.send_signal(sig)

    def kill(self):
        """kill -9: the directory server disappears mid-conversation."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped slapd must see the TERM
            self.proc.terminate()
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- changes -----------------------------------------------------------------
    def modify(self, ldif):
        """Applies LDIF change records as the directory's administrator."""
        r = subprocess.run(["ldapmodify", "-x", "-H", self.uri(), "-D", ADMIN_DN, "-w", ADMIN_PW],
                           input=ldif, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("ldapmodify failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))

    def set_attr(self, dn, attr, value):
        self.modify("dn: %s\nchangetype: modify\nreplace: %s\n%s: %s\n" % (dn, attr, attr, value))

    def add_person(self, uid, password, **attrs):
        dn = "uid=%s,%s" % (uid, PEOPLE)
        lines = ["dn: " + dn, "changetype: add", "objectClass: inetOrgPerson", "uid: " + uid,
                 "cn: " + attrs.pop("cn", uid), "sn: " + attrs.pop("sn", uid), "userPassword: " + password]
        for k, v in attrs.items():
            for one in (v if isinstance(v, list) else [v]):
                lines.append("%s: %s" % (k, one))
        self.modify("\n".join(lines) + "\n")
        return dn

    def delete(self, dn):
        self.modify("dn: %s\nchangetype: delete\n" % dn)


def main(argv):
    """For scripts (tests/bench/ldap-bench.sh):
        slapd_server.py start DIR [LDIF]   starts slapd in DIR, prints "PORT PID"
        slapd_server.py stop DIR           stops it"""
    import sys
    if len(argv) < 3 or argv[1] not in ("start", "stop"):
        print("usage: slapd_server.py start DIR [LDIF] | stop DIR", file=sys.stderr)
        return 2
    base = Path(argv[2])
    if argv[1] == "start":
        s = Slapd(ldif=argv[3] if len(argv) > 3 else TEST_LDIF, base=base).start()
        print(s.port, s.proc.pid)
        return 0
    pid_file = base / "slapd.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        except (OSError, ValueError):
            pass
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv))
