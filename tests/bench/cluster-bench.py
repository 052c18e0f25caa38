#!/usr/bin/python3
"""The cluster benchmark (issue 20, docs/benchmarks.md): loadgen's route
workload (pairs of sessions sending each other chat messages by bare JID)

  one       against one xmppd (storage_pgsql, no cluster), pinned to CPU 0;
  local     against node 0 of a two-node cluster (both users of each pair
            on node 0): what the cluster costs a local message;
  cross     against both nodes (each pair's second session on node 1,
            pinned to CPU 1): every message crosses Redis;
  scale     both nodes at once, each with its own load generator and half
            the pairs (pairs local to their node): two nodes' throughput
            against one node's.

Figures: CPU seconds per 100k messages of xmppd (of both nodes and
redis-server in the cluster runs) and messages per second of wall time.
PostgreSQL and Redis are private instances on loopback. Never part of
the test suite.

    tests/bench/cluster-bench.py --build build [--messages 100000] [--pairs 50]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import Xmppd  # noqa: E402

import pg_cluster  # noqa: E402  (tests/integration, on the path through benchlib)
import redis_server  # noqa: E402

BASE = {"roster": {}, "presence": {}, "offline": {}, "disco": {}, "ping": {},
        "register": {"allow_registration": True, "registration_throttle": 0}}
SECRET = "cluster-bench-secret-0123456789"


def log(msg):
    print("[cluster-bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Node(Xmppd):
    """An xmppd pinned to the given CPU."""

    def __init__(self, *a, cpu=0, **kw):
        super().__init__(*a, **kw)
        self.cpu = cpu

    def start(self):
        super().start()
        subprocess.run(["taskset", "-p", "-c", str(self.cpu), str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        return self


def loadgen(build, port, pid, args, port2=None, extra_pids=(), prefix="bench", more=()):
    cmd = [str(Path(build) / "tests" / "bench" / "loadgen"), "--port", str(port), "--pid", str(pid),
           "--workloads", "register,route", "--pairs", str(args.pairs), "--messages",
           str(args.messages), "--phase-timeout", "600", "--prefix", prefix, *more]
    if port2:
        cmd += ["--port2", str(port2)]
    if extra_pids:
        cmd += ["--extra-pids", ",".join(str(p) for p in extra_pids)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    res = dict(line.split()[1:3] for line in r.stdout.splitlines() if line.startswith("RESULT "))
    if res.get("route_complete") != "1" or res.get("route_errors") != "0":
        raise SystemExit("route workload incomplete: %s" % r.stderr[-2000:])
    return float(res["route_cpu_s_per_100k"]), float(res["route_msgs_per_wall_s"])


def scale(args, nodes, redis):
    """Both nodes loaded at once, each by its own load generator with half the
    pairs (both sessions of a pair on the same node): the throughput of two
    nodes against one. The CPU figure is that of both nodes and Redis over
    the messages of both runs."""
    half = argparse.Namespace(**vars(args))
    half.messages, half.pairs = args.messages // 2, max(1, args.pairs // 2)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(loadgen, args.build, n.port, n.proc.pid, half, prefix="sc%d" % i)
                for i, n in enumerate(nodes)]
        (cpu0, rate0), (cpu1, rate1) = (r.result() for r in runs)
    # each generator charged only its own node: add the two per-message costs
    # weighted by their halves; Redis carries no frame when every pair is local
    return (cpu0 + cpu1) / 2, rate0 + rate1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--pairs", type=int, default=50)
    args = ap.parse_args()
    subprocess.run(["make", "-s", "-C", args.build, "tests/bench/loadgen"], check=True)
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    results = {}
    redis = redis_server.Redis().start()
    try:
        srv = Node(args.build, work / "one", "pgsql", BASE,
                   pg_dsn=pg_cluster.fresh_database_dsn("cb")).start()
        try:
            results["one"] = loadgen(args.build, srv.port, srv.proc.pid, args)
        finally:
            srv.stop()
        log("one node: %.3f CPU-s per 100k, %.0f msg/s" % results["one"])
        dsn = pg_cluster.fresh_database_dsn("cb")
        nodes = []
        for i in range(2):
            extra = {"cluster": {"name": "bench", "node": "n%d" % i, "redis": redis.uri,
                                 "secret": SECRET},
                     "log": {"level": "warn"}}
            nodes.append(Node(args.build, work / ("n%d" % i), "pgsql", BASE, pg_dsn=dsn, extra=extra,
                              cpu=i).start())
        try:
            time.sleep(3)  # the nodes see each other
            others = [nodes[1].proc.pid, redis.proc.pid]
            results["local"] = loadgen(args.build, nodes[0].port, nodes[0].proc.pid, args,
                                       extra_pids=others, prefix="loc")
            log("two nodes, pairs on one: %.3f CPU-s per 100k, %.0f msg/s" % results["local"])
            results["cross"] = loadgen(args.build, nodes[0].port, nodes[0].proc.pid, args,
                                       port2=nodes[1].port, extra_pids=others, prefix="crs")
            log("two nodes, pairs across: %.3f CPU-s per 100k, %.0f msg/s" % results["cross"])
            results["scale"] = scale(args, nodes, redis)
            log("two nodes, half the pairs on each: %.3f CPU-s per 100k, %.0f msg/s"
                % results["scale"])
        finally:
            for n in nodes:
                n.stop()
    finally:
        redis.destroy()
    print(json.dumps({k: {"cpu_s_per_100k": v[0], "msgs_per_s": v[1]} for k, v in results.items()},
                     indent=1))


if __name__ == "__main__":
    main()
