"""Shared pieces of the Python benchmarks (mam-bench.py, mobile-bench.py):
a private xmppd on a free loopback port, pinned to CPU 0, and the server's
CPU time and memory read from /proc. Never part of the test suite."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from xmpptest import free_port  # noqa: E402

HOST = "localhost"


def cpu_of(pid):
    """utime + stime of pid in seconds."""
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def io_of(pid):
    """(write system calls, bytes written) of pid so far (/proc/PID/io)."""
    d = dict(line.split(": ") for line in open("/proc/%d/io" % pid).read().splitlines())
    return int(d["syscw"]), int(d["wchar"])


def deep_merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Xmppd:
    """A private xmppd: its folder, certificate, configuration (modules on
    top of auth_internal and the storage driver; extra: more configuration
    merged in; components: XEP-0114 components, served on self.comp_port)
    and process pinned to CPU 0."""

    def __init__(self, build, work, storage, modules, pg_dsn=None, extra=None, components=None):
        self.build, self.dir = Path(build), Path(work)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        listeners = [{"type": "c2s", "address": "127.0.0.1", "port": self.port, "tls": "starttls"}]
        if components:
            self.comp_port = free_port()
            listeners.append({"type": "component", "address": "127.0.0.1", "port": self.comp_port})
            extra = deep_merge(extra or {}, {"components": components})
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
        self.config.write_text(json.dumps(deep_merge({
            "log": {"level": "warn", "file": str(self.dir / "xmppd.log")},
            "data_dir": str(self.dir), "module_path": [str(self.build / "modules")],
            "storage": storage,
            "tls": {"cert": str(cert / "localhost.crt"), "key": str(cert / "localhost.key"), "min_version": "1.2"},
            "limits": {"connections_per_ip": 20000, "max_resources": 100},
            "listeners": listeners,
            "modules": mods, "hosts": {HOST: {}}}, extra), indent=1))
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
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit("xmppd did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)




def pin_to_cpu1():
    """The benchmark's own process (the clients) on CPU 1, away from xmppd."""
    try:
        os.sched_setaffinity(0, {1})
    except OSError:
        pass


def route_cpu_per_100k(build, srv, messages, flags=(), label="route"):
    """tests/bench/loadgen's register and route workloads (50 pairs) against
    srv on CPU 1; the server's CPU seconds per 100k messages. Exits when the
    workload did not complete without errors."""
    r = subprocess.run(["taskset", "-c", "1", str(Path(build) / "tests" / "bench" / "loadgen"),
                        "--port", str(srv.port), "--pid", str(srv.proc.pid), "--workloads", "register,route",
                        "--pairs", "50", "--messages", str(messages), "--phase-timeout", "300"] + list(flags),
                       capture_output=True, text=True, timeout=900)
    res = dict(line.split()[1:3] for line in r.stdout.splitlines() if line.startswith("RESULT "))
    if res.get("route_complete") != "1" or res.get("route_errors") != "0":
        raise SystemExit("route workload incomplete (%s): %s" % (label, r.stderr[-2000:]))
    return float(res["route_cpu_s_per_100k"])
