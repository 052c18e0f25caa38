#!/usr/bin/python3
"""mobile-bench.py - what mobile features cost and save (docs/benchmarks.md,
"Mobile sessions").

  tests/bench/mobile-bench.py --build DIR [--route-messages 100000] [--repeat 5]
                              [--hibernated 1000] [--contacts 200] [--rounds 5]
                              [--skip-route] [--skip-memory] [--skip-csi] [--out FILE]

Stream management on routing: tests/bench/loadgen's 'route' workload
(chat messages between 50 pairs of sessions) against xmppd without
mod_smacks, with it loaded but unused, and with every session enabling it
(resumable, acknowledging each <r/>, which the server sends every 20
stanzas, the default, or every 5); the figure is the server's CPU seconds per 100k
messages, the least and the median of --repeat runs of each.

Memory of a hibernated session: sessions of one account log in (STARTTLS,
PLAIN, bind, <enable resume='true'/>), then lose their TCP connection;
after a warm-up batch, the RSS growth over --hibernated more such sessions,
one at a time (each connection's memory is reused by the next), is the
memory a hibernated session keeps. The same number of connected idle
sessions with stream management is measured for comparison.

Client state indication: one client session gets --rounds presence
changes of each of --contacts contacts (from an XEP-0114 component, one
update every few milliseconds), once active and once inactive (XEP-0352,
then <active/>); the server's write system calls and bytes written
(/proc/PID/io: only that client's socket is written to) are the wake-ups
and bytes the client's radio sees.

Everything runs on 127.0.0.1; xmppd is pinned to CPU 0, the clients to CPU 1.
Never part of the test suite.
"""

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import REPO, Xmppd, cpu_of, io_of, pin_to_cpu1, route_cpu_per_100k, rss_kib  # noqa: E402
sys.path.insert(0, str(REPO / "tests" / "integration"))
from xmpptest import RawClient, raw_component  # noqa: E402

USER, PASSWORD = "phone", "bench-password"
CONTACTS = "contacts.localhost"
COMP_SECRET = "bench-component-secret"


def log(*a):
    print("[mobile-bench %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def settle(pid, quiet=0.5, bound=10):
    """Waits until the server's CPU time stops growing (bounded)."""
    end = time.monotonic() + bound
    last = cpu_of(pid)
    while time.monotonic() < end:
        time.sleep(quiet)
        now = cpu_of(pid)
        if now == last:
            return now
        last = now
    return last


# ---- stream management on routing ------------------------------------------------------------

ROUTE_CONFIGS = (
    ("without mod_smacks", {}, []),
    ("mod_smacks loaded, not enabled", {"smacks": {}}, []),
    ("stream management enabled (request_every 20, request_after 3s: the defaults)", {"smacks": {}}, ["--sm"]),
    ("stream management enabled, request_every 5", {"smacks": {"request_every": 5}}, ["--sm"]),
)


def run_route(args, work):
    """Each configuration --repeat times, interleaved; the minimum and the
    median of the server CPU per 100k messages (the minimum is the figure
    least disturbed by other work on the machine)."""
    subprocess.run(["make", "-s", "-C", str(args.build), "tests/bench/loadgen"], check=True)
    base = {"roster": {}, "presence": {}, "offline": {}, "disco": {}, "ping": {},
            "register": {"allow_registration": True, "registration_throttle": 0}}
    runs = {label: [] for label, _, _ in ROUTE_CONFIGS}
    for rep in range(args.repeat):
        for i, (label, extra, flags) in enumerate(ROUTE_CONFIGS):
            srv = Xmppd(args.build, work / ("route-%d-%d" % (rep, i)), "sqlite", {**base, **extra}).start()
            try:
                runs[label].append(route_cpu_per_100k(args.build, srv, args.route_messages, flags, label))
            finally:
                srv.stop()
            log("  route %-58s %.3f CPU-s per 100k messages" % (label, runs[label][-1]))
    return {label: (min(v), statistics.median(v)) for label, v in runs.items()}


# ---- memory of a hibernated session -------------------------------------------------------------

def sm_session(srv, resource):
    c = RawClient(srv.port)
    c.login(USER, PASSWORD, resource=resource)
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    c.wait_for(lambda e: e.tag == "{urn:xmpp:sm:3}enabled")
    return c


def drop(c):
    """Loses the connection (no </stream:stream>): the session hibernates."""
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()


def run_memory(args, work):
    srv = Xmppd(args.build, work / "memory", "sqlite", {"smacks": {"resume_timeout": "1h"}},
                extra={"limits": {"max_resources": 3 * args.hibernated + 1000}}).start()
    try:
        srv.ctl("adduser", "%s@localhost" % USER, input=PASSWORD + "\n")
        pid = srv.proc.pid
        for i in range(200):  # warm-up: allocator pools, TLS, caches
            drop(sm_session(srv, "warm%d" % i))
        settle(pid)
        rss0 = rss_kib(pid)
        for i in range(args.hibernated):
            drop(sm_session(srv, "h%d" % i))
        settle(pid)
        rss1 = rss_kib(pid)
        live = [sm_session(srv, "c%d" % i) for i in range(args.hibernated)]
        settle(pid)
        rss2 = rss_kib(pid)
        for c in live:
            c.close_stream()
            c.close()
        n = args.hibernated
        res = {"hibernated": (rss1 - rss0) / n, "connected": (rss2 - rss1) / n, "n": n}
        log("  %d hibernated sessions: %.1f KiB each; %d connected idle sessions with SM: %.1f KiB each"
            % (n, res["hibernated"], n, res["connected"]))
        return res
    finally:
        srv.stop()


# ---- client state indication ----------------------------------------------------------------------

class Reader(threading.Thread):
    """Reads the client's socket as fast as it can, counting elements."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c, self.presences, self.stop = c, 0, False
        self.start()

    def run(self):
        while not self.stop:
            try:
                el = self.c.next_element(0.2)
            except Exception:
                continue
            if el.tag == "{jabber:client}presence":
                self.presences += 1


def run_csi(args, work):
    srv = Xmppd(args.build, work / "csi", "sqlite", {"csi": {}},
                components={CONTACTS: {"secret": COMP_SECRET}}).start()
    out = {}
    try:
        srv.ctl("adduser", "%s@localhost" % USER, input=PASSWORD + "\n")
        pid = srv.proc.pid
        comp = raw_component(srv.comp_port, CONTACTS, COMP_SECRET)
        shows = ["away", "xa", "dnd", "chat", ""]
        for label, inactive in (("active", False), ("inactive", True)):
            phone = RawClient(srv.port)
            phone.login(USER, PASSWORD, resource=label)
            if inactive:
                phone.send("<inactive xmlns='urn:xmpp:csi:0'/>")
            reader = Reader(phone)
            settle(pid)
            w0, b0 = io_of(pid)
            for r in range(args.rounds):
                for k in range(args.contacts):
                    show = shows[(r + k) % len(shows)]
                    comp.send("<presence from='contact%d@%s/mobile' to='%s'>%s<status>Round %d of the "
                              "benchmark: a status message of ordinary length</status><priority>5</priority>"
                              "</presence>" % (k, CONTACTS, phone.jid,
                                               "<show>%s</show>" % show if show else "", r))
                    time.sleep(args.gap)
            settle(pid)
            if inactive:
                phone.send("<active xmlns='urn:xmpp:csi:0'/>")
                settle(pid)
            time.sleep(0.5)
            w1, b1 = io_of(pid)
            reader.stop = True
            reader.join(2)
            phone.close_stream()
            phone.close()
            settle(pid)
            out[label] = {"writes": w1 - w0, "bytes": b1 - b0, "presences": reader.presences}
            log("  %-8s %5d write calls, %8d bytes, %5d presences received"
                % (label, w1 - w0, b1 - b0, reader.presences))
        comp.close()
    finally:
        srv.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, type=lambda p: Path(p).resolve())
    ap.add_argument("--route-messages", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each routing configuration")
    ap.add_argument("--hibernated", type=int, default=1000)
    ap.add_argument("--contacts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gap", type=float, default=0.004, help="seconds between two presence changes")
    ap.add_argument("--skip-route", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-csi", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    pin_to_cpu1()
    work = Path(tempfile.mkdtemp(prefix="mobile-bench-"))
    report = ["# Mobile sessions benchmark (%s)" % time.strftime("%Y-%m-%d %H:%M"), ""]
    try:
        if not args.skip_route:
            r = run_route(args, work)
            unused, on = r[ROUTE_CONFIGS[1][0]][0], r[ROUTE_CONFIGS[2][0]][0]
            report += ["## Stream management on routing (%d chat messages, 50 pairs, %d runs each)"
                       % (args.route_messages, args.repeat), "",
                       "| xmppd | CPU-s per 100k messages, least | median |", "|---|---|---|"]
            report += ["| %s | %.3f | %.3f |" % (k, v[0], v[1]) for k, v in r.items()]
            report += ["", "Enabling stream management (default settings) costs %.0f%% more than the same "
                       "server with nobody enabling it (least of each)." % (100 * (on / unused - 1)), ""]
        if not args.skip_memory:
            m = run_memory(args, work)
            report += ["## Memory of a session (%d sessions)" % m["n"], "",
                       "| session | KiB each |", "|---|---|",
                       "| hibernated (connection lost, resumable) | %.1f |" % m["hibernated"],
                       "| connected, idle, stream management on | %.1f |" % m["connected"], ""]
        if not args.skip_csi:
            c = run_csi(args, work)
            a, i = c["active"], c["inactive"]
            report += ["## Client state indication (%d contacts x %d presence changes)" % (args.contacts, args.rounds),
                       "", "| client | write calls (wake-ups) | bytes written | presences received |",
                       "|---|---|---|---|"]
            report += ["| %s | %d | %d | %d |" % (k, v["writes"], v["bytes"], v["presences"]) for k, v in c.items()]
            report += ["", "Inactive saves %.1f%% of the wake-ups and %.1f%% of the bytes." % (
                100 * (1 - i["writes"] / max(1, a["writes"])), 100 * (1 - i["bytes"] / max(1, a["bytes"]))), ""]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(report)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
