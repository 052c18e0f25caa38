#!/usr/bin/python3
"""mam-bench.py - MAM figures: query latency on a million archived messages
(SQLite and PostgreSQL) and the cost of archiving on message routing.

  tests/bench/mam-bench.py --build DIR [--items 1000000] [--queries 200]
                           [--backends sqlite,pgsql] [--route-messages 100000]
                           [--skip-route] [--skip-query] [--out FILE]

Query latency: for each back end, a fresh xmppd (pinned to CPU 0) gets an
account whose archive is filled with --items messages (written straight into
the storage tables, in the layout mod_mam writes, with 50 peers and a few other
accounts' items around), then a client on CPU 1 runs MAM queries over XMPP
(STARTTLS, loopback) and times each from sending the IQ to receiving its
result, all 50 <result/> messages parsed: the 50 newest, a page after and a
page before an id in the middle, the 50 newest with one peer, one item by
'ids'. Also prints the database's plan for the statements the driver runs.

Routing cost: tests/bench/loadgen's 'route' workload (--route-messages chat
messages between 50 pairs of online accounts) against xmppd without and with
mod_mam (every message then archived twice: sender's and recipient's
archive); the figure is the server's CPU seconds per 100k messages.

Never part of the test suite. PostgreSQL runs as a private cluster
(tests/integration/pg_cluster.py). Everything listens on 127.0.0.1 only.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import pg_cluster  # noqa: E402
import xmpptest  # noqa: E402
from xmpptest import RawClient, free_port, new_id, q  # noqa: E402

NS_MAM = "urn:xmpp:mam:2"
USER, PASSWORD, HOST = "bench", "bench-password", "localhost"
PEERS = 50


def log(*a):
    print("[mam-bench %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def cpu_of(pid):
    """utime + stime of pid in seconds."""
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Xmppd:
    def __init__(self, build, work, storage, modules, pg_dsn=None):
        self.build, self.dir = Path(build), Path(work)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        mods = {"auth_internal": {"iterations": 4096}}
        if storage == "pgsql":
            mods = {"storage_pgsql": {"connect": pg_dsn, "pool_size": 4}, **mods}
        else:
            mods = {"storage_sqlite": {"path": "xmppd.sqlite"}, **mods}
        mods.update(modules)
        cert = self.dir / "certs"
        if not (cert / "localhost.crt").exists():
            subprocess.run(["bash", str(REPO / "contrib" / "gen-cert.sh"), str(cert), HOST], check=True,
                           stdout=subprocess.DEVNULL)
        self.config = self.dir / "xmppd.json"
        self.config.write_text(json.dumps({
            "log": {"level": "warn", "file": str(self.dir / "xmppd.log")},
            "data_dir": str(self.dir), "module_path": [str(self.build / "modules")],
            "storage": storage,
            "tls": {"cert": str(cert / "localhost.crt"), "key": str(cert / "localhost.key"), "min_version": "1.2"},
            "limits": {"connections_per_ip": 20000, "max_resources": 100},
            "listeners": [{"type": "c2s", "address": "127.0.0.1", "port": self.port, "tls": "starttls"}],
            "modules": mods, "hosts": {HOST: {}}}, indent=1))
        self.proc = None

    def ctl(self, *args, input=None):
        subprocess.run([str(self.build / "server" / "xmppctl"), "-c", str(self.config)] + list(args),
                       input=input, text=True, check=True, capture_output=True)

    def start(self):
        self.proc = subprocess.Popen(["taskset", "-c", "0", str(self.build / "server" / "xmppd"), "-c",
                                      str(self.config)], cwd=str(self.dir), stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "stderr.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("xmppd exited: see %s" % self.dir)
            try:
                import socket
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit("xmppd did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


# ---- filling an archive --------------------------------------------------------------------

OTHERS = 500  # other accounts whose items are interleaved with the measured one's


def owner(i):
    """Row i of a fill belongs to the measured account two times in three,
    else to one of OTHERS accounts (n of its items among n / 2 others')."""
    return USER if i % 3 else "other%d" % (i % OTHERS)


def message(i, user):
    return json.dumps("<message xmlns='jabber:client' from='peer%d@%s/r' to='%s@%s' type='chat' id='b%d'>"
                      "<body>Benchmark archive message %d: the quick brown fox jumps over the lazy dog."
                      "</body></message>" % (i % PEERS, HOST, user, HOST, i, i))


def fill_sqlite(path, n, t0):
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    rows = ((HOST, "mam", owner(i), "peer%d@%s" % (i % PEERS, HOST), "r", t0 + i, message(i, owner(i)),
             secrets.token_urlsafe(12)) for i in range(n * 3 // 2))
    db.executemany("INSERT INTO archive (host, store, user, with_jid, with_res, when_ms, value, key)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    ids = [r[0] for r in db.execute("SELECT key FROM archive WHERE host=? AND store='mam' AND user=?"
                                    " ORDER BY id", (HOST, USER))]
    db.close()
    return ids


def psql(dsn, sql):
    """pg_cluster.psql without its 60 s bound (filling takes longer)."""
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit("psql failed: %s\n%s" % (sql[:200], r.stderr))
    return r.stdout


# The same rows as fill_sqlite, generated by the server (ids: md5 prefixes).
PG_FILL = """
INSERT INTO xmppd_archive (host, store, username, with_jid, with_res, when_ms, value, key)
SELECT '{h}', 'mam', u, 'peer' || (i % {p}) || '@{h}', 'r', {t0} + i,
       to_jsonb(format('<message xmlns=''jabber:client'' from=''peer%s@{h}/r'' to=''%s@{h}'' type=''chat'' '
                       'id=''b%s''><body>Benchmark archive message %s: the quick brown fox jumps over the '
                       'lazy dog.</body></message>', i % {p}, u, i, i)),
       substr(md5(i::text), 1, 16)
FROM (SELECT i, CASE WHEN i % 3 <> 0 THEN '{u}' ELSE 'other' || (i % {o}) END AS u
      FROM generate_series(0, {c} - 1) AS i) AS g
"""


def fill_pgsql(dsn, n, t0):
    psql(dsn, PG_FILL.format(h=HOST, u=USER, p=PEERS, o=OTHERS, t0=t0, c=n * 3 // 2))
    psql(dsn, "VACUUM ANALYZE xmppd_archive")
    out = psql(dsn, "SELECT key FROM xmppd_archive WHERE username = '%s' ORDER BY id" % USER)
    return [line for line in out.splitlines() if line]


# ---- the plans the drivers use --------------------------------------------------------------

SQLITE_PLANS = {  # the statements storage_sqlite prepares (?N as it binds them)
    "newest 50": "SELECT id, when_ms, with_jid, value, key, with_res FROM archive WHERE host=?1 AND store=?2"
                 " AND user=?3 ORDER BY id DESC LIMIT ?9",
    "id lookup": "SELECT id FROM archive WHERE host=?1 AND store=?2 AND user=?3 AND key=?4",
    "page after id": "SELECT id, when_ms, with_jid, value, key, with_res FROM archive WHERE host=?1"
                     " AND store=?2 AND user=?3 AND id>?7 ORDER BY id ASC LIMIT ?9",
    "newest 50 with a peer": "SELECT id, when_ms, with_jid, value, key, with_res FROM archive WHERE host=?1"
                             " AND store=?2 AND user=?3 AND with_jid=?4 ORDER BY id DESC LIMIT ?9",
}


def sqlite_plans(path):
    db = sqlite3.connect(path)
    out = {}
    for name, sql in SQLITE_PLANS.items():
        n = max(int(m) for m in re.findall(r"\?(\d+)", sql))
        vals = {1: HOST, 2: "mam", 3: USER, 4: "peer7@" + HOST, 7: 500000, 9: 51}
        plan = db.execute("EXPLAIN QUERY PLAN " + re.sub(r"\?(\d+)", "?", sql),
                          [vals[int(m)] for m in re.findall(r"\?(\d+)", sql)][:n]).fetchall()
        out[name] = "; ".join(r[-1] for r in plan)
    db.close()
    return out


def pgsql_plans(dsn, ids):
    """The plans of the driver's statements as it runs them: prepared, with
    the generic plan PostgreSQL settles on after a few executions."""
    mid = ids[len(ids) // 2]
    where = "host=$1 AND store=$2 AND username=$3"
    stmts = {
        "newest 50": "SELECT * FROM xmppd_archive WHERE %s ORDER BY id DESC LIMIT 51" % where,
        "id lookup": "SELECT id FROM xmppd_archive WHERE %s AND key=$4" % where,
        "page after id": "SELECT * FROM xmppd_archive WHERE %s AND id > (SELECT id FROM xmppd_archive"
                         " WHERE %s AND key=$4) ORDER BY id ASC LIMIT 51" % (where, where),
        "newest 50 with a peer": "SELECT * FROM xmppd_archive WHERE %s AND with_jid=$5 ORDER BY id DESC"
                                 " LIMIT 51" % where,
    }
    out = {}
    for name, sql in stmts.items():
        plan = psql(dsn, "SET plan_cache_mode = force_generic_plan; PREPARE p(text, text, text, text, text) AS %s;"
                         " EXPLAIN (ANALYZE, COSTS OFF) EXECUTE p('%s', 'mam', '%s', '%s', 'peer7@%s')"
                    % (sql, HOST, USER, mid, HOST))
        lines = [line.strip() for line in plan.splitlines() if line.strip()]
        out[name] = "; ".join(lines)
    return out


# ---- queries over XMPP ---------------------------------------------------------------------------

def query(c, inner, expect):
    iid = new_id("mam")
    t0 = time.perf_counter()
    c.send("<iq type='set' id='%s'><query xmlns='%s'>%s</query></iq>" % (iid, NS_MAM, inner))
    n = 0
    while True:
        el = c.next_element()
        if el.tag == q("jabber:client", "iq") and el.get("id") == iid:
            break
        if el.find(q(NS_MAM, "result")) is not None:
            n += 1
    dt = time.perf_counter() - t0
    assert el.get("type") == "result" and n == expect, (el.get("type"), n)
    return dt


def form(fields):
    return ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s</value>"
            "</field>%s</x>" % (NS_MAM, "".join("<field var='%s'><value>%s</value></field>" % f for f in fields)))


def rsm(inner):
    return "<set xmlns='http://jabber.org/protocol/rsm'><max>50</max>%s</set>" % inner


def measure(srv, ids, n):
    mid = ids[len(ids) // 2]
    cases = [
        ("newest 50 (empty <before/>)", rsm("<before/>"), 50),
        ("page after an id (RSM <after/>)", rsm("<after>%s</after>" % mid), 50),
        ("page before an id (RSM <before/>)", rsm("<before>%s</before>" % mid), 50),
        ("newest 50 with one peer", form([("with", "peer7@%s" % HOST)]) + rsm("<before/>"), 50),
        ("one item by 'ids'", form([("ids", ids[len(ids) // 3])]), 1),
    ]
    c = RawClient(srv.port, timeout=60)
    c.login(USER, PASSWORD)
    out = []
    for name, inner, expect in cases:
        for _ in range(5):  # warm the caches (a server that ran a while has them warm)
            query(c, inner, expect)
        cpu0 = cpu_of(srv.proc.pid)
        times = sorted(query(c, inner, expect) for _ in range(n))
        cpu = (cpu_of(srv.proc.pid) - cpu0) / n
        out.append((name, statistics.median(times) * 1000, times[int(len(times) * 0.95) - 1] * 1000,
                    cpu * 1000))
        log("  %-36s median %.2f ms  p95 %.2f ms  server CPU %.2f ms/query" % out[-1])
    c.close()
    return out


def run_queries(args, backend, work):
    log("%s: %d items" % (backend, args.items))
    dsn = None
    if backend == "pgsql":
        # the test cluster's settings, but fsync on and shared_buffers a
        # production-like 256MB (the tests' 16MB would measure the OS cache)
        c = pg_cluster.Cluster(work / "pg").init()
        c._run([os.path.join(c.bin, "pg_ctl"), "-D", str(c.data), "-l", str(c.log), "-w", "-t", "60", "-o",
                "-c listen_addresses=127.0.0.1 -p %d -k %s -c shared_buffers=256MB" % (c.port, c.base),
                "start"])
        args.cluster = c
        dsn = c.dsn("postgres")
    srv = Xmppd(args.build, work / backend, backend, {"mam": {}}, pg_dsn=dsn)
    srv.start()
    srv.stop()
    srv.ctl("adduser", "%s@%s" % (USER, HOST), input=PASSWORD + "\n")
    t = time.time()
    t0 = int(time.time() * 1000) - 2 * args.items
    ids = (fill_sqlite(str(srv.dir / "xmppd.sqlite"), args.items, t0) if backend == "sqlite"
           else fill_pgsql(dsn, args.items, t0))
    log("  filled in %.0f s" % (time.time() - t))
    plans = sqlite_plans(str(srv.dir / "xmppd.sqlite")) if backend == "sqlite" else pgsql_plans(dsn, ids)
    srv.start()
    try:
        res = measure(srv, ids, args.queries)
    finally:
        srv.stop()
    return res, plans


# ---- routing cost -----------------------------------------------------------------------------

def run_route(args, work):
    subprocess.run(["make", "-s", "-C", str(args.build), "tests/bench/loadgen"], check=True)
    out = {}
    base = {"roster": {}, "presence": {}, "offline": {"max_messages": 100000}, "disco": {}, "ping": {},
            "register": {"allow_registration": True, "registration_throttle": 0}}
    for label, extra in (("without mod_mam", {}), ("with mod_mam", {"mam": {}})):
        srv = Xmppd(args.build, work / ("route-" + label.split()[0]), "sqlite", {**base, **extra}).start()
        try:
            r = subprocess.run(["taskset", "-c", "1", str(args.build / "tests" / "bench" / "loadgen"),
                                "--port", str(srv.port), "--pid", str(srv.proc.pid), "--workloads",
                                "register,route", "--pairs", "50", "--messages", str(args.route_messages),
                                "--phase-timeout", "300"], capture_output=True, text=True, timeout=900)
        finally:
            srv.stop()
        res = dict(line.split()[1:3] for line in r.stdout.splitlines() if line.startswith("RESULT "))
        if res.get("route_complete") != "1":
            raise SystemExit("route workload incomplete (%s): %s" % (label, r.stderr[-2000:]))
        out[label] = float(res["route_cpu_s_per_100k"])
        log("  route %-16s %.3f CPU-s per 100k messages" % (label, out[label]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, type=lambda p: Path(p).resolve())
    ap.add_argument("--items", type=int, default=1000000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--backends", default="sqlite,pgsql")
    ap.add_argument("--route-messages", type=int, default=100000)
    ap.add_argument("--skip-route", action="store_true")
    ap.add_argument("--skip-query", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {1})
    except OSError:
        pass
    work = Path(tempfile.mkdtemp(prefix="mam-bench-"))
    os.chmod(work, 0o755)  # the PostgreSQL cluster runs as its own user
    report = ["# MAM benchmark (%s)" % time.strftime("%Y-%m-%d %H:%M"), ""]
    try:
        if not args.skip_query:
            for backend in args.backends.split(","):
                res, plans = run_queries(args, backend, work)
                report += ["## %s: %d messages in one archive, %d of %d other accounts interleaved" % (
                    backend, args.items, args.items // 2, OTHERS), "",
                    "| query (max 50) | median | p95 | server CPU |", "|---|---|---|---|"]
                report += ["| %s | %.2f ms | %.2f ms | %.2f ms |" % r for r in res]
                report += ["", "Plans:", ""] + ["- %s: `%s`" % kv for kv in plans.items()] + [""]
        if not args.skip_route:
            r = run_route(args, work)
            report += ["## Archiving cost on routing (%d chat messages, 50 pairs)" % args.route_messages, "",
                       "| xmppd | CPU-s per 100k messages |", "|---|---|"]
            report += ["| %s | %.3f |" % kv for kv in r.items()]
            report += ["", "mod_mam costs %.3f CPU-s per 100k messages (%.0f%%)."
                       % (r["with mod_mam"] - r["without mod_mam"],
                          100 * (r["with mod_mam"] / r["without mod_mam"] - 1)), ""]
    finally:
        if getattr(args, "cluster", None):
            args.cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(report)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
