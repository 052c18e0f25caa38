#!/usr/bin/python3
"""What replicating stream-management sessions in Redis costs (issue 20,
docs/cluster.md "Stream management across nodes", docs/benchmarks.md).

loadgen's route workload with every session enabling XEP-0198 resumption
(--sm: the server asks <r/> every request_every stanzas, loadgen answers
<a/>), on a two-node cluster, with smacks.cluster "off" and then
"replicate", each with the pairs on one node (local: the replication is
the only Redis traffic) and with each pair across the nodes (cross).
Figures: CPU seconds per 100k messages of both nodes and redis-server,
messages per wall second, and redis-server's own share (over the whole
run, logins included). Never part of the test suite.

    tests/bench/cluster-sm-bench.py --build build [--messages 50000] [--pairs 50] [--rounds 1]
"""

import argparse
import importlib.util
import json
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("cluster_bench", HERE / "cluster-bench.py")
cb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cb)
import benchlib  # noqa: E402  (on the path through cluster-bench)


def measured(args, redis, *a, **kw):
    """loadgen's figures, and redis-server's own CPU-s per 100k messages
    over the whole run (logins included: an upper bound)."""
    r0 = benchlib.cpu_of(redis.proc.pid)
    cpu, rate = cb.loadgen(*a, **kw)
    return cpu, rate, (benchlib.cpu_of(redis.proc.pid) - r0) * 100000 / args.messages


def run(args, redis, work, mode, tag):
    dsn = cb.pg_cluster.fresh_database_dsn("csm")
    mods = dict(cb.BASE, smacks={"cluster": mode})
    nodes = []
    try:
        for i in range(2):
            extra = {"cluster": {"name": "smb" + tag, "node": "n%d" % i, "redis": redis.uri,
                                 "secret": cb.SECRET},
                     "log": {"level": "warn"}}
            nodes.append(cb.Node(args.build, work / ("%s-n%d" % (tag, i)), "pgsql", mods, pg_dsn=dsn,
                                 extra=extra, cpu=i).start())
        time.sleep(3)  # the nodes see each other
        others = [nodes[1].proc.pid, redis.proc.pid]
        out = {}
        out["local"] = measured(args, redis, args.build, nodes[0].port, nodes[0].proc.pid, args,
                                extra_pids=others, prefix="l" + tag, more=["--sm"])
        cb.log("%s, pairs on one node: %.3f CPU-s per 100k, %.0f msg/s (Redis %.3f)"
               % ((mode,) + out["local"]))
        out["cross"] = measured(args, redis, args.build, nodes[0].port, nodes[0].proc.pid, args,
                                port2=nodes[1].port, extra_pids=others, prefix="c" + tag,
                                more=["--sm"])
        cb.log("%s, pairs across nodes: %.3f CPU-s per 100k, %.0f msg/s (Redis %.3f)"
               % ((mode,) + out["cross"]))
        return out
    finally:
        for n in nodes:
            n.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    subprocess.run(["make", "-s", "-C", args.build, "tests/bench/loadgen"], check=True)
    work = Path(tempfile.mkdtemp(prefix="cluster-sm-bench-"))
    results = {}
    redis = cb.redis_server.Redis().start()
    try:
        for r in range(args.rounds):  # off and replicate in turn: the machine's load hits both
            for mode in ("off", "replicate"):
                res = run(args, redis, work, mode, "%s%d" % (mode[0], r))
                for k, v in res.items():
                    results.setdefault("%s/%s" % (mode, k), []).append(v)
    finally:
        redis.destroy()
    print(json.dumps({k: {"cpu_s_per_100k": [x[0] for x in v], "msgs_per_s": [x[1] for x in v],
                          "redis_cpu_s_per_100k": [round(x[2], 3) for x in v]}
                      for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
