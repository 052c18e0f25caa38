"""A private PostgreSQL cluster for the tests.

PostgreSQL refuses to run as root: when the tests run as root, initdb and
pg_ctl run as the `postgres` user (runuser) in a temporary folder that user
owns. The cluster listens on 127.0.0.1 only, on a free port, with trust
authentication and durability switched off (tests only).

Used three ways:
  * by conftest.py when XMPPD_TEST_STORAGE=pgsql: every test server gets a
    fresh database on one cluster, given by XMPPD_TEST_PG_DSN or started
    here for the session;
  * by tests that stop and start PostgreSQL (a cluster of their own);
  * from the shell (contrib/run-tests.sh):
        python3 pg_cluster.py start DIR   -> prints the base DSN
        python3 pg_cluster.py stop DIR
"""

import atexit
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xmpptest import free_port

PG_USER = "postgres"


def bin_dir():
    """The newest /usr/lib/postgresql/*/bin holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def available():
    return bin_dir() is not None


_free_port = free_port


class Cluster:
    def __init__(self, base=None, port=None):
        self.bin = bin_dir()
        if not self.bin:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.as_root = os.geteuid() == 0
        self.base = Path(base or tempfile.mkdtemp(prefix="xmppd-pg-"))
        self.base.mkdir(parents=True, exist_ok=True)
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = port or _free_port()
        self.user = PG_USER if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        if self.as_root:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            os.chmod(self.base, 0o700)

    # -- running commands as the cluster's owner ---------------------------------
    def _run(self, args, check=True, timeout=60):
        cmd = ([("runuser"), "-u", PG_USER, "--"] if self.as_root else []) + args
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           cwd=str(self.base))
        if check and r.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s%s\n%s" % (" ".join(args), r.returncode, r.stdout,
                                                            r.stderr, self.log_tail()))
        return r

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- lifecycle ---------------------------------------------------------------
    def init(self):
        if not (self.data / "PG_VERSION").exists():
            self._run([os.path.join(self.bin, "initdb"), "-D", str(self.data), "-A", "trust",
                       "-U", self.user, "-E", "UTF8", "--no-sync", "--locale=C"])
        return self

    def start(self):
        opts = ("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=300 -c shared_buffers=16MB"
                % (self.port, self.base))
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                   "-w", "-t", "60", "-o", opts, "start"])
        return self

    def stop(self, mode="fast"):
        if (self.data / "postmaster.pid").exists():
            self._run([os.path.join(self.bin, "pg_ctl"), "-D", str(self.data), "-m", mode,
                       "-w", "-t", "60", "stop"], check=False)

    def running(self):
        r = self._run([os.path.join(self.bin, "pg_ctl"), "-D", str(self.data), "status"], check=False)
        return r.returncode == 0

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # -- databases ---------------------------------------------------------------
    def dsn(self, dbname="postgres"):
        return "host=127.0.0.1 port=%d user=%s dbname=%s" % (self.port, self.user, dbname)

    def psql(self, sql, dbname="postgres", check=True):
        return psql(self.dsn(dbname), sql, check=check)

    def create_db(self, prefix="xt"):
        name = "%s_%s" % (prefix, secrets.token_hex(6))
        self.psql("CREATE DATABASE %s" % name)
        return name


def psql(dsn, sql, check=True):
    """Runs sql through psql on dsn; returns stdout (unaligned, tuples only,
    fields separated by '|')."""
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError("psql failed: %s\n%s" % (sql, r.stderr))
    return r.stdout


# ---- the shared cluster of a pgsql test run ----------------------------------------

_shared = {"dsn": None, "cluster": None}


def _base_dsn():
    if _shared["dsn"] is None:
        env = os.environ.get("XMPPD_TEST_PG_DSN")
        if env:
            _shared["dsn"] = env
        else:
            c = Cluster().init().start()
            _shared["cluster"] = c
            _shared["dsn"] = c.dsn("postgres")
            atexit.register(c.destroy)
    return _shared["dsn"]


def fresh_database_dsn(prefix="xt"):
    """A new, empty database on the shared test cluster; returns its DSN."""
    base = _base_dsn()
    name = "%s_%s" % (prefix, secrets.token_hex(6))
    psql(base, "CREATE DATABASE %s" % name)
    parts = [p for p in base.split() if not p.startswith("dbname=")]
    return " ".join(parts + ["dbname=" + name])


def stop_shared():
    c = _shared["cluster"]
    if c is not None:
        c.destroy()
        _shared["cluster"] = None
        _shared["dsn"] = None


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print("usage: pg_cluster.py start|stop DIR", file=sys.stderr)
        return 2
    base = Path(argv[2])
    if argv[1] == "start":
        port = _free_port()
        c = Cluster(base, port).init().start()
        (base / "port").write_text(str(port))
        print(c.dsn("postgres"))
        return 0
    port_file = base / "port"
    if port_file.exists():
        c = Cluster(base, int(port_file.read_text()))
        c.destroy()
    return 0


if __name__ == "__main__":
    time.tzset()
    sys.exit(main(sys.argv))
