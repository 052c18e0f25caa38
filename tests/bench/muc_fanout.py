#!/usr/bin/env python3
"""Group chat fan-out cost of xmppd alone: server CPU per delivered groupchat
message, the time until the last occupant has a message, and the memory per
occupant. Not part of the pass/fail suite; the side-by-side comparison with
Prosody and ejabberd belongs in run-bench.sh (docs/benchmarks.md).

    tests/bench/muc_fanout.py --build BUILD_DIR [--occupants 200] [--messages 50]

It starts its own xmppd (loopback, free ports, log level warn) with mod_muc,
creates the accounts, logs every occupant in over TLS (raw sockets, SCRAM),
joins them to one room, then one occupant sends the messages one by one and
the script waits until every occupant has each. CPU is the server's
utime + stime from /proc (all threads), read once it stopped growing, so the
figure holds on a busy machine; resolution one clock tick."""

import argparse
import os
import select
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def settled_ticks(pid):
    """The server's CPU ticks once they stopped growing for 300 ms."""
    last = cpu_ticks(pid)
    while True:
        time.sleep(0.3)
        now = cpu_ticks(pid)
        if now == last:
            return now
        last = now


def read_some(c):
    """Feeds what c's socket has (TLS records included) to its reader."""
    while True:
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, TimeoutError):
            return
        except Exception as e:  # ssl.SSLWantReadError
            if "WantRead" in type(e).__name__:
                return
            raise
        c.reader.feed(data)
        if not data or not c.sock.pending():
            return


def readable(socks, timeout):
    """The sockets of socks with something to read within timeout seconds
    (poll: select() stops at file descriptor 1023, and 1,000 occupants pass it)."""
    p = select.poll()
    by_fd = {}
    for sk in socks:
        by_fd[sk.fileno()] = sk
        p.register(sk, select.POLLIN)
    return [by_fd[fd] for fd, _ in p.poll(timeout * 1000)]


def pump(clients, want, count, deadline):
    """Reads every client until count(client) >= want for all; returns the
    time each reached it."""
    done = {}
    by_sock = {c.sock: c for c in clients}
    while len(done) < len(clients):
        if time.monotonic() > deadline:
            raise SystemExit("timeout: %d of %d occupants complete" % (len(done), len(clients)))
        ready = readable([c.sock for c in clients if c not in done], 1.0)
        for s in ready:
            c = by_sock[s]
            read_some(c)
            if count(c) >= want:
                done[c] = time.monotonic()
    return done


def drain(clients, quiet, deadline):
    """Reads every client until none has had anything for `quiet` seconds."""
    by_sock = {c.sock: c for c in clients}
    while time.monotonic() < deadline:
        ready = readable(list(by_sock), quiet)
        if not ready:
            return
        for s in ready:
            read_some(by_sock[s])
            by_sock[s].reader.elements.clear()
    raise SystemExit("timeout: the join presences kept coming")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--occupants", type=int, default=200)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--perf", metavar="FILE", help="record the message phase with perf record -g")
    ap.add_argument("--no-archive", action="store_true",
                    help="rooms without archiving (messages leave at once, no storage write)")
    args = ap.parse_args()
    os.environ["XMPPD_BUILD"] = str(Path(args.build).resolve())
    import conftest
    import xmpptest
    from muc_util import MUC, NS_MUC

    work = Path(tempfile.mkdtemp(prefix="muc-bench-"))
    certs = work / "certs"
    certs.mkdir()
    import subprocess
    subprocess.run(["bash", str(conftest.GEN_CERT), str(certs), conftest.DOMAIN], check=True,
                   stdout=subprocess.DEVNULL)
    srv = conftest.Server(work / "srv", certs, {
        "log": {"level": "warn"},
        "limits": {"connections_per_ip": 100000},
        "modules": {"muc": {"message_rate": 0, "max_occupants": args.occupants + 10,
                            "room_defaults": {"archiving": not args.no_archive}}}})
    srv.start()
    try:
        pid = srv.proc.pid
        n = args.occupants
        users = ["bench%d" % i for i in range(n)]
        for u in users:
            srv.adduser("%s@localhost" % u, "bench-password")
        clients = []
        for u in users:
            c = xmpptest.RawClient(srv.port)
            c.login(u, "bench-password", mech="SCRAM-SHA-1")
            clients.append(c)
        room = "bench@%s" % MUC
        rss_before = rss_kib(pid)
        for i, c in enumerate(clients):
            c.send("<presence to='%s/n%d'><x xmlns='%s'><history maxchars='0'/></x></presence>"
                   % (room, i, NS_MUC))
            c.wait_for(lambda e: e.tag.endswith("presence") and "110" in xmpptest.tostr(e))
            if i == 0:
                c.iq("<query xmlns='%s#owner'><x xmlns='jabber:x:data' type='submit'/></query>"
                     % NS_MUC, type_="set", to=room)
        time.sleep(1.0)
        for c in clients:
            c.sock.setblocking(False)
        # drain the join presences everyone got (until the sockets are quiet:
        # a client may have read all of its share while waiting for its own
        # self-presence, and never become readable again)
        drain(clients, quiet=2.0, deadline=time.monotonic() + 300)
        for c in clients:
            c.reader.elements.clear()
        rss_after = rss_kib(pid)
        for c in clients:
            c.got = 0

        def count(c):
            for el in c.reader.elements:
                if el.tag.endswith("}message") and el.get("type") == "groupchat":
                    c.got += 1
            c.reader.elements.clear()
            return c.got

        sender = clients[0]
        start = settled_ticks(pid)
        perf = subprocess.Popen(["perf", "record", "-g", "-q", "-p", str(pid), "-o", args.perf],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if args.perf else None
        latencies = []
        body = "x" * 70
        for k in range(args.messages):
            t0 = time.monotonic()
            sender.sock.setblocking(True)
            sender.send("<message to='%s' type='groupchat' id='b%d'><body>%s</body></message>"
                        % (room, k, body))
            sender.sock.setblocking(False)
            done = pump(clients, k + 1, count, time.monotonic() + 60)
            latencies.append(max(done.values()) - t0)
        end = settled_ticks(pid)
        if perf:
            perf.send_signal(2)
            perf.wait()
        hz = os.sysconf("SC_CLK_TCK")
        deliveries = args.messages * n
        cpu_us = (end - start) / hz * 1e6 / deliveries
        print("occupants %d, messages %d, deliveries %d" % (n, args.messages, deliveries))
        print("server CPU per delivered groupchat message: %.2f us" % cpu_us)
        print("time until the last occupant has a message: median %.1f ms, max %.1f ms"
              % (statistics.median(latencies) * 1000, max(latencies) * 1000))
        print("memory per occupant (RSS growth from joining): %.1f KiB"
              % ((rss_after - rss_before) / n))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
