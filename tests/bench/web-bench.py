#!/usr/bin/python3
"""The web side, side by side (docs/benchmarks.md, "The web side"):

  ws-route   server CPU-seconds per 100k messages routed between two
             WebSocket sessions (RFC 7395), xmppd vs Prosody vs ejabberd
  ws-idle    resident memory per idle authenticated WebSocket session
  upload     throughput of one 100 MB file: PUT and GET through mod_upload
             (XEP-0363) vs nginx serving (and taking, WebDAV PUT) the same file

Each server runs pinned to CPU 0 on a free loopback port with its own
configuration and data in a temporary folder; this script (the load) runs on
CPU 1. Bounded: every phase has a deadline; only 127.0.0.1 is used.

  tests/bench/web-bench.py --build build-bench [--quick] [--servers "xmppd prosody ejabberd"]
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
os.environ.setdefault("XMPPD_TIMEOUT_FACTOR", "6")
from webclient import NS_FRAMING, WebSocket, http_request  # noqa: E402
import xmpptest  # noqa: E402

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, secs, proc=None):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if proc and proc.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nothing listens on %d" % port)


def cpu_seconds(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- servers ------------------------------------------------------------------------------------

class Xmppd:
    name = "xmppd"
    ws_path = "/xmpp-websocket"

    def __init__(self, build, work):
        self.build, self.work = Path(build).resolve(), Path(work)

    def start(self):
        self.port, self.c2s = free_port(), free_port()
        cfg = {"log": {"level": "warn", "file": str(self.work / "xmppd.log")},
               "data_dir": str(self.work), "module_path": [str(self.build / "modules")],
               "c2s": {"require_encryption": False},
               "limits": {"connections_per_ip": 100000, "max_resources": 10000},
               "http": {"requests_per_second": 1000000, "burst": 1000000},
               "listeners": [{"type": "c2s", "address": "127.0.0.1", "port": self.c2s},
                             {"type": "http", "address": "127.0.0.1", "port": self.port}],
               "modules": {"storage_sqlite": {}, "auth_internal": {"iterations": 4096},
                           "roster": {}, "presence": {}, "disco": {}, "ping": {},
                           "upload": {"max_file_size": "200M", "quota": "1G"}},
               "hosts": {"localhost": {}}}
        (self.work / "xmppd.json").write_text(json.dumps(cfg))
        self.proc = subprocess.Popen(["taskset", "-c", "0", str(self.build / "server" / "xmppd"),
                                      "-c", str(self.work / "xmppd.json")],
                                     stdout=open(self.work / "stderr", "w"), stderr=subprocess.STDOUT)
        wait_port(self.port, 20, self.proc)
        self.pid = self.proc.pid
        self.version = subprocess.run([str(self.build / "server" / "xmppd"), "-V"],
                                      capture_output=True, text=True).stdout.strip()

    def adduser(self, user, password):
        subprocess.run([str(self.build / "server" / "xmppctl"), "-c", str(self.work / "xmppd.json"),
                        "adduser", "%s@localhost" % user], input=password + "\n", text=True,
                       check=True, capture_output=True)

    def stop(self):
        stop_proc(self.proc)


def stop_proc(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Prosody:
    name = "prosody"
    ws_path = "/xmpp-websocket"

    def __init__(self, build, work):
        self.work = Path(work)

    def start(self):
        self.port, c2s = free_port(), free_port()
        (self.work / "data").mkdir()
        (self.work / "prosody.cfg.lua").write_text("""
run_as_root = true
daemonize = false
pidfile = "%(w)s/prosody.pid"
data_path = "%(w)s/data"
log = { warn = "%(w)s/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { %(c2s)d }
s2s_ports = { }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
http_ports = { %(port)d }
http_interfaces = { "127.0.0.1" }
https_ports = { }
component_ports = { }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
authentication = "internal_hashed"
default_iteration_count = 4096
storage = "internal"
limits = { c2s = { rate = "100mb/s" } }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "presence"; "message"; "iq"; "websocket" }
modules_disabled = { "s2s"; "tls" }
VirtualHost "localhost"
""" % {"w": self.work, "c2s": c2s, "port": self.port})
        self.proc = subprocess.Popen(["taskset", "-c", "0", "prosody", "--config",
                                      str(self.work / "prosody.cfg.lua")],
                                     stdout=open(self.work / "stderr", "w"), stderr=subprocess.STDOUT,
                                     cwd=str(self.work))
        wait_port(self.port, 20, self.proc)
        self.pid = self.proc.pid
        self.version = "Prosody " + subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "prosody"],
                                                   capture_output=True, text=True).stdout

    def adduser(self, user, password):
        subprocess.run(["prosodyctl", "--config", str(self.work / "prosody.cfg.lua"), "register",
                        user, "localhost", password], check=True, capture_output=True)

    def stop(self):
        stop_proc(self.proc)


class Ejabberd:
    name = "ejabberd"
    ws_path = "/ws"

    def __init__(self, build, work):
        self.work = Path(work)

    def ctl(self, *args, **kw):
        return subprocess.run(["env", "HOME=%s" % self.work, "setpriv", "--reuid=ejabberd",
                               "--regid=ejabberd", "--init-groups", "ejabberdctl", "--config-dir",
                               str(self.work / "etc"), "--spool", str(self.work / "spool"), "--logs",
                               str(self.work / "logs"), "--node", self.node] + list(args), **kw)

    def start(self):
        self.port, c2s, dist = free_port(), free_port(), free_port()
        self.node = "webbench%d@localhost" % os.getpid()
        for d in ("etc", "spool", "logs"):
            (self.work / d).mkdir()
        shutil.copy("/etc/ejabberd/inetrc", self.work / "etc" / "inetrc")
        (self.work / "etc" / "ejabberd.yml").write_text("""
hosts: [localhost]
loglevel: warning
log_rotate_count: 0
default_db: mnesia
auth_method: internal
auth_password_format: scram
listen:
  - port: %(c2s)d
    ip: "127.0.0.1"
    module: ejabberd_c2s
  - port: %(port)d
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /ws: ejabberd_http_ws
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 100000
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
""" % {"c2s": c2s, "port": self.port})
        (self.work / "etc" / "ejabberdctl.cfg").write_text(
            "ERLANG_NODE=%s\nERL_DIST_PORT=%d\nERL_MAX_PORTS=32000\n"
            "ERL_OPTIONS=\"+sbwt none +sbwtdcpu none +sbwtdio none\"\n"
            "EJABBERD_PID_PATH=%s/ejabberd.pid\nEJABBERD_BYPASS_WARNINGS=true\n"
            % (self.node, dist, self.work))
        subprocess.run(["chown", "-R", "ejabberd:ejabberd", str(self.work)], check=True)
        self.proc = subprocess.Popen(["taskset", "-c", "0", "env", "HOME=%s" % self.work, "setpriv",
                                      "--reuid=ejabberd", "--regid=ejabberd", "--init-groups",
                                      "ejabberdctl", "--config-dir", str(self.work / "etc"), "--spool",
                                      str(self.work / "spool"), "--logs", str(self.work / "logs"),
                                      "--node", self.node, "foreground"],
                                     stdout=open(self.work / "stderr", "w"), stderr=subprocess.STDOUT)
        wait_port(self.port, 60, self.proc)
        for _ in range(100):
            if self.ctl("status", capture_output=True).returncode == 0:
                break
            time.sleep(0.3)
        out = subprocess.run(["pgrep", "-f", "beam.smp.*%s" % self.node], capture_output=True, text=True)
        self.pid = int(out.stdout.split()[0])
        self.version = "ejabberd " + subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "ejabberd"],
                                                    capture_output=True, text=True).stdout

    def adduser(self, user, password):
        self.ctl("register", user, "localhost", password, check=True, capture_output=True)

    def stop(self):
        self.ctl("stop", capture_output=True)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


SERVERS = {"xmppd": Xmppd, "prosody": Prosody, "ejabberd": Ejabberd}


# ---- WebSocket sessions -------------------------------------------------------------------------

def ws_login(srv, user, password):
    w = WebSocket(srv.port, path=srv.ws_path)
    assert w.status == 101, "no WebSocket upgrade from %s" % srv.name
    w.open()
    # SCRAM-SHA-1 on all three: no server offers PLAIN on an unencrypted stream by default.
    sc = xmpptest.ScramClient("SCRAM-SHA-1", user, password)
    w.send_text("<auth xmlns='%s' mechanism='SCRAM-SHA-1'>%s</auth>"
                % (NS_SASL, base64.b64encode(sc.first()).decode()))
    ch = w.recv_element()
    assert ch.tag == "{%s}challenge" % NS_SASL, ET.tostring(ch)
    w.send_text("<response xmlns='%s'>%s</response>"
                % (NS_SASL, base64.b64encode(sc.final(base64.b64decode(ch.text))).decode()))
    res = w.recv_element()
    assert res.tag == "{%s}success" % NS_SASL, ET.tostring(res)
    w.open()
    w.send_text("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='%s'/></iq>" % NS_BIND)
    iq = w.wait_for(lambda el: el.get("id") == "b")
    w.jid = iq.find(".//{%s}jid" % NS_BIND).text
    return w


def ws_route(srv, n):
    srv.adduser("sender", "pw")
    srv.adduser("receiver", "pw")
    a, b = ws_login(srv, "sender", "pw"), ws_login(srv, "receiver", "pw")
    frame = WebSocket.frame(1, ("<message xmlns='jabber:client' to='%s' type='chat'>"
                                "<body>benchmark message body of moderate length</body></message>"
                                % b.jid).encode(), mask=True)
    batch = 200
    cpu0, t0 = cpu_seconds(srv.pid), time.monotonic()
    for i in range(0, n, batch):
        a.sock.sendall(frame * batch)
        for _ in range(batch):
            op, _ = b.recv_frame(60)
    cpu1, t1 = cpu_seconds(srv.pid), time.monotonic()
    a.close()
    b.close()
    return {"cpu_per_100k": (cpu1 - cpu0) * 100000 / n, "wall": t1 - t0, "n": n}


def ws_idle(srv, k):
    srv.adduser("idle", "pw")
    base = ws_login(srv, "idle", "pw")  # warm: code and caches paged in
    time.sleep(1)
    r0 = rss_kib(srv.pid)
    socks = [ws_login(srv, "idle", "pw") for _ in range(k)]
    time.sleep(2)
    r1 = rss_kib(srv.pid)
    for w in socks + [base]:
        w.close()
    return {"kib_per_session": (r1 - r0) / k, "k": k}


# ---- upload vs nginx ------------------------------------------------------------------------------

def curl(*args):
    out = subprocess.run(["taskset", "-c", "1", "curl", "-s", "-o", "/dev/null", "-w",
                          "%{http_code} %{time_total}", *args], capture_output=True, text=True,
                         timeout=300).stdout.split()
    return int(out[0]), float(out[1])


def upload_xmppd(srv, path, size):
    srv.adduser("up", "pw")
    w = ws_login(srv, "up", "pw")
    w.send_text("<iq xmlns='jabber:client' type='get' id='s' to='upload.localhost'><request "
                "xmlns='urn:xmpp:http:upload:0' filename='big.bin' size='%d' "
                "content-type='application/octet-stream'/></iq>" % size)
    iq = w.wait_for(lambda el: el.get("id") == "s")
    put = iq.find(".//{urn:xmpp:http:upload:0}put").get("url")
    get = iq.find(".//{urn:xmpp:http:upload:0}get").get("url")
    res = lambda u: ["--resolve", "upload.localhost:%d:127.0.0.1" % urllib.parse.urlsplit(u).port, u]
    st, tput = curl("-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary",
                    "@" + str(path), *res(put))
    assert st == 201, st
    st, tget = curl(*res(get))
    assert st == 200, st
    w.close()
    return tput, tget


def upload_nginx(work, path):
    port = free_port()
    root = Path(work) / "www"
    root.mkdir()
    (Path(work) / "tmp").mkdir()
    for d in (work, root, Path(work) / "tmp"):  # nginx's workers run as www-data
        os.chmod(d, 0o777)
    (Path(work) / "nginx.conf").write_text("""
worker_processes 1;
daemon off;
pid %(w)s/nginx.pid;
error_log %(w)s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %(w)s/tmp;
  client_max_body_size 200m;
  sendfile on;
  server {
    listen 127.0.0.1:%(p)d;
    root %(w)s/www;
    location / { dav_methods PUT; create_full_put_path on; }
  }
}
""" % {"w": work, "p": port})
    proc = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", str(Path(work) / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 10, proc)
        st, tput = curl("-X", "PUT", "--data-binary", "@" + str(path), "http://127.0.0.1:%d/big.bin" % port)
        assert st in (201, 204), st
        st, tget = curl("http://127.0.0.1:%d/big.bin" % port)
        assert st == 200, st
        return tput, tget
    finally:
        proc.terminate()
        proc.wait(10)


# ---- main -----------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--servers", default="xmppd prosody ejabberd")
    ap.add_argument("--out")
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    n = 20000 if args.quick else 100000
    k = 300 if args.quick else 1000
    results = {}
    for name in args.servers.split():
        work = tempfile.mkdtemp(prefix="web-bench-%s-" % name)
        os.chmod(work, 0o755)
        srv = SERVERS[name](args.build, work)
        srv.start()
        try:
            r = {"version": srv.version}
            r.update(ws_route(srv, n))
            r.update(ws_idle(srv, k))
            if name == "xmppd":
                size = 100 * 1024 * 1024
                big = Path(work) / "big.bin"
                with open(big, "wb") as f:
                    f.write(os.urandom(1024 * 1024) * 100)
                r["up_put_s"], r["up_get_s"] = upload_xmppd(srv, big, size)
                r["nginx_put_s"], r["nginx_get_s"] = upload_nginx(tempfile.mkdtemp(prefix="web-bench-nginx-"), big)
                r["mb"] = size / 1e6
            results[name] = r
            print(name, json.dumps(r), flush=True)
        finally:
            srv.stop()
            shutil.rmtree(work, ignore_errors=True)
    lines = ["| server | CPU-s per 100k WebSocket messages | KiB per idle WebSocket session |",
             "|---|---|---|"]
    for name, r in results.items():
        lines.append("| %s | %.2f | %.1f |" % (r["version"], r["cpu_per_100k"], r["kib_per_session"]))
    x = results.get("xmppd")
    if x and "up_put_s" in x:
        lines += ["", "| 100 MB file | xmppd mod_upload | nginx (the limit) |", "|---|---|---|",
                  "| PUT | %.0f MB/s | %.0f MB/s |" % (x["mb"] / x["up_put_s"], x["mb"] / x["nginx_put_s"]),
                  "| GET | %.0f MB/s | %.0f MB/s |" % (x["mb"] / x["up_get_s"], x["mb"] / x["nginx_get_s"])]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
