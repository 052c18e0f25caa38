"""Fixtures for the xmppd integration tests.

Environment:
  XMPPD_BUILD     build folder holding server/xmppd, server/xmppctl and
                  modules/ (default: the repository root)
  XMPPD_WRAPPER   command prefix for xmppd, e.g. "valgrind --error-exitcode=99 -q"
  ASAN_OPTIONS    set by the runner for sanitizer builds: the server's stderr
                  and log are checked for sanitizer reports
  XMPPD_TIMEOUT_FACTOR  scale every timeout (slow machines)
  XMPPD_TEST_STORAGE    "sqlite" (default) or "pgsql": the storage driver of
                  every test server; with pgsql each server gets a fresh
                  database on the cluster XMPPD_TEST_PG_DSN names (a base
                  DSN such as "host=127.0.0.1 port=5432 user=postgres"), or
                  on a private cluster started for the run (pg_cluster.py)

Fixtures:
  server          module-scoped running xmppd; a module changes its config by
                  overriding the `config_overrides` fixture (deep-merged)
  server_factory  function-scoped: make_server(overrides) -> started Server
                  (for tests needing a config of their own)
  accounts        accounts(n) -> [Account] created with `xmppctl adduser`
"""

import copy
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xmpptest  # noqa: E402
from xmpptest import free_port  # noqa: E402
import pg_cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("XMPPD_BUILD") or REPO)
if not BUILD.is_absolute():
    BUILD = (REPO / BUILD).resolve()
XMPPD = BUILD / "server" / "xmppd"
XMPPCTL = BUILD / "server" / "xmppctl"
MODULES = BUILD / "modules"
GEN_CERT = REPO / "contrib" / "gen-cert.sh"
DOMAIN = "localhost"
STORAGE = os.environ.get("XMPPD_TEST_STORAGE") or "sqlite"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: MemorySanitizer")


def deep_merge(base, over):
    """Returns base with over merged in: dicts recursively, anything else
    replaced; a value None in over deletes the key."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class Account:
    def __init__(self, user, password, domain=DOMAIN):
        self.user, self.password, self.domain = user, password, domain
        self.jid = "%s@%s" % (user, domain)

    def __repr__(self):
        return "Account(%s)" % self.jid


class Server:
    """One xmppd process with its own folder, ports and configuration."""

    def __init__(self, workdir, cert_dir, overrides=None, name="xmppd"):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.direct_tls_port = free_port()
        self.cert = Path(cert_dir) / (DOMAIN + ".crt")
        self.key = Path(cert_dir) / (DOMAIN + ".key")
        self.config_path = self.dir / "xmppd.json"
        self.log_path = self.dir / "xmppd.log"
        self.stderr_path = self.dir / "xmppd.stderr"
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.config = deep_merge(self.use_test_storage(self.default_config()), overrides)
        self.proc = None
        self.stopped_by_test = False
        self._stderr = None
        self.write_config()

    def default_config(self):
        return {
            "log": {"level": "debug", "file": str(self.log_path)},
            "data_dir": str(self.data_dir),
            "module_path": [str(MODULES)],
            "storage": "sqlite",
            "tls": {"cert": str(self.cert), "key": str(self.key), "min_version": "1.2"},
            "c2s": {"require_encryption": True},
            "limits": {
                "negotiation_timeout": "30s",
                "auth_failure_delay": "0s",
                "connections_per_ip": 1000,
            },
            "listeners": [
                {"type": "c2s", "address": "127.0.0.1", "port": self.port, "tls": "starttls"},
                {"type": "c2s", "address": "127.0.0.1", "port": self.direct_tls_port, "tls": "direct"},
            ],
            "modules": {
                "storage_sqlite": {"path": "xmppd.sqlite"},
                # low cost: tests create many accounts
                "auth_internal": {"iterations": 4096},
            },
            "hosts": {DOMAIN: {}},
        }

    def use_test_storage(self, cfg):
        """With XMPPD_TEST_STORAGE=pgsql: storage_pgsql on a fresh database
        instead of storage_sqlite (self.pg_dsn)."""
        if STORAGE != "pgsql":
            return cfg
        self.pg_dsn = pg_cluster.fresh_database_dsn()
        cfg["storage"] = "pgsql"
        mods = cfg["modules"]
        mods.pop("storage_sqlite", None)
        cfg["modules"] = dict([("storage_pgsql", {"connect": self.pg_dsn, "pool_size": 2})] +
                              list(mods.items()))
        return cfg

    def stored_stores(self, user):
        """Names of the stores (keyval and archive) holding data of user on
        this server's storage, whichever driver it uses."""
        if self.config.get("storage") == "pgsql":
            dsn = self.config["modules"]["storage_pgsql"]["connect"]
            u = user.replace("'", "''")
            out = pg_cluster.psql(dsn, "SELECT store FROM xmppd_kv WHERE username = '%s' UNION ALL "
                                  "SELECT store FROM xmppd_archive WHERE username = '%s' UNION ALL "
                                  "SELECT store FROM xmppd_queue WHERE username = '%s'" % (u, u, u))
            return [line for line in out.splitlines() if line]
        import sqlite3
        db = sqlite3.connect(str(self.data_dir / "xmppd.sqlite"))
        try:
            return [r[0] for r in db.execute("SELECT store FROM kv WHERE user = ? UNION ALL "
                                             "SELECT store FROM archive WHERE user = ? UNION ALL "
                                             "SELECT store FROM queue WHERE user = ?", (user, user, user))]
        finally:
            db.close()

    def stored_kv(self, user, store):
        """The JSON text of each keyval value of user in store on this
        server's storage (either driver)."""
        if self.config.get("storage") == "pgsql":
            dsn = self.config["modules"]["storage_pgsql"]["connect"]
            out = pg_cluster.psql(dsn, "SELECT value::text FROM xmppd_kv WHERE username = '%s' AND store = '%s'"
                                  % (user.replace("'", "''"), store.replace("'", "''")))
            return [line for line in out.splitlines() if line]
        import sqlite3
        db = sqlite3.connect(str(self.data_dir / "xmppd.sqlite"))
        try:
            return [r[0] for r in db.execute("SELECT value FROM kv WHERE user = ? AND store = ?", (user, store))]
        finally:
            db.close()

    def write_config(self):
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")

    def add_component_listener(self):
        """A XEP-0114 component listener on a free loopback port
        (self.comp_port); the configuration is written."""
        self.comp_port = free_port()
        self.config["listeners"].append({"type": "component", "address": "127.0.0.1",
                                         "port": self.comp_port})
        self.write_config()

    # -- process -------------------------------------------------------------
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=None):
        if self.running:
            return
        if not XMPPD.exists():
            pytest.fail("xmppd not built: %s missing (set XMPPD_BUILD)" % XMPPD, pytrace=False)
        wrapper = shlex.split(os.environ.get("XMPPD_WRAPPER", ""))
        self._stderr = open(self.stderr_path, "ab")
        self._stderr.write(b"\n=== start %s ===\n" % time.strftime("%H:%M:%S").encode())
        self._stderr.flush()
        self.proc = subprocess.Popen(wrapper + [str(XMPPD), "-c", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=self._stderr, cwd=str(self.dir))
        self.stopped_by_test = False
        deadline = time.monotonic() + (timeout or xmpptest.scaled(15))
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("xmppd exited with %s at start:\n%s"
                                   % (self.proc.returncode, self.output_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("xmppd did not accept on port %d:\n%s" % (self.port, self.output_tail()))
                time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Stops with sig (SIGTERM: clean shutdown); returns the exit code."""
        self.stopped_by_test = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout or xmpptest.scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if self._stderr:
                    self._stderr.close()
                raise RuntimeError("xmppd did not exit within the timeout after signal %d" % sig)
        if self._stderr:
            self._stderr.close()
            self._stderr = None
        return self.proc.returncode

    def kill(self):
        """kill -9: crash-stop."""
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        self.start()

    def reload(self):
        """SIGHUP: reread the configuration."""
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)

    # -- output ----------------------------------------------------------------
    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def read_stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output_tail(self, n=200):
        lines = (self.read_stderr().splitlines()[-n // 2:] + ["--- log ---"] +
                 self.read_log().splitlines()[-n:])
        return "\n".join(lines)

    def sanitizer_reports(self):
        """Output (stderr and log) holding sanitizer reports that were not
        returned before, or None."""
        err, log = self.read_stderr(), self.read_log()
        pe, pl = getattr(self, "_san_pos", (0, 0))
        self._san_pos = (len(err), len(log))
        text = err[pe:] + "\n" + log[pl:]
        found = [m for m in SANITIZER_MARKERS if m in text]
        return text if found else None

    # -- accounts ------------------------------------------------------------
    def ctl(self, *args, input=None, check=False, timeout=None):
        """Runs xmppctl -c CONFIG args...; returns CompletedProcess (text)."""
        if not XMPPCTL.exists():
            pytest.fail("xmppctl not built: %s missing" % XMPPCTL, pytrace=False)
        r = subprocess.run([str(XMPPCTL), "-c", str(self.config_path)] + list(args),
                           input=input, capture_output=True, text=True,
                           timeout=timeout or xmpptest.scaled(30), cwd=str(self.dir))
        if check and r.returncode != 0:
            raise RuntimeError("xmppctl %s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def adduser(self, jid, password):
        return self.ctl("adduser", jid, input=password + "\n", check=True)


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(GEN_CERT), str(d), DOMAIN], check=True,
                   stdout=subprocess.DEVNULL)
    return d


@pytest.fixture(scope="module")
def config_overrides():
    """Overridden by a test module to change its server's configuration."""
    return {}


def _finish(srv):
    """Stops srv (SIGTERM) if running; fails on a non-zero exit status (a
    clean shutdown exits 0; valgrind's --error-exitcode and LeakSanitizer
    show up here) or on sanitizer reports."""
    rc = None
    try:
        if srv.running:
            rc = srv.stop()
    finally:
        rep = srv.sanitizer_reports()
        if rep:
            pytest.fail("sanitizer report in xmppd output (%s):\n%s" % (srv.dir, rep[-20000:]),
                        pytrace=False)
    if rc not in (None, 0):
        pytest.fail("xmppd exited with status %s on SIGTERM:\n%s" % (rc, srv.output_tail()),
                    pytrace=False)


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, cert_dir, config_overrides):
    name = request.module.__name__.rsplit(".", 1)[-1]
    srv = Server(tmp_path_factory.mktemp(name), cert_dir, config_overrides, name=name)
    srv.start()
    yield srv
    _finish(srv)


@pytest.fixture
def server_factory(request, tmp_path_factory, cert_dir):
    made = []

    def make(overrides=None, start=True):
        srv = Server(tmp_path_factory.mktemp("srv"), cert_dir, overrides,
                     name=request.node.name)
        made.append(srv)
        if start:
            srv.start()
        return srv
    make.servers = made
    yield make
    errors = []
    for srv in made:
        try:
            _finish(srv)
        except BaseException as e:  # report after stopping every server
            errors.append(e)
    if errors:
        raise errors[0]


_counter = [0]


def unique_user(prefix="u"):
    _counter[0] += 1
    return "%s%d%s" % (prefix, _counter[0], secrets.token_hex(3))


@pytest.fixture
def accounts(request):
    """accounts(n, srv=None) -> n fresh accounts on srv (default: `server`)."""
    def make(n=1, srv=None, prefix="u"):
        srv = srv or request.getfixturevalue("server")
        out = []
        for _ in range(n):
            a = Account(unique_user(prefix), secrets.token_urlsafe(12))
            srv.adduser(a.jid, a.password)
            out.append(a)
        return out
    return make


@pytest.fixture(autouse=True)
def _server_health(request):
    """After a test using `server`: a crash or a sanitizer report fails the
    test, and the server is (re)started for the next test of the module."""
    if "server" not in request.fixturenames:
        yield
        return
    srv = request.getfixturevalue("server")
    yield
    crashed = not srv.running and not srv.stopped_by_test
    code = srv.proc.returncode if srv.proc else None
    rep = srv.sanitizer_reports()
    if not srv.running:
        try:
            srv.start()
        except Exception as e:  # the next test shows it
            print("restart failed: %s" % e)
    if rep:
        pytest.fail("sanitizer report in xmppd output:\n%s" % rep[-20000:], pytrace=False)
    if crashed:
        pytest.fail("xmppd died during the test (exit %s):\n%s" % (code, srv.output_tail()),
                    pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    servers = []
    for v in getattr(item, "funcargs", {}).values():
        if isinstance(v, Server):
            servers.append(v)
        servers.extend(getattr(v, "servers", []))
    if rep.when == "setup" and rep.passed:
        for s in servers:
            s._log_mark = len(s.read_log())
            s._err_mark = len(s.read_stderr())
    if rep.failed and rep.when in ("call", "teardown"):
        for s in servers:
            log = s.read_log()[getattr(s, "_log_mark", 0):]
            err = s.read_stderr()[getattr(s, "_err_mark", 0):]
            text = ("--- stderr ---\n" + err[-8000:] + "\n--- log (this test) ---\n" + log[-30000:])
            rep.sections.append(("xmppd %s (%s)" % (s.name, s.dir), text))


def pytest_report_header(config):
    return "xmppd build: %s (xmppd %s)%s" % (
        BUILD, "present" if XMPPD.exists() else "MISSING",
        ", wrapper: " + os.environ["XMPPD_WRAPPER"] if os.environ.get("XMPPD_WRAPPER") else "")
