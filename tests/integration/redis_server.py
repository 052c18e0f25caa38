"""A private redis-server (Debian's redis-server) for the cluster tests.

Each Redis gets a temporary folder, listens on 127.0.0.1 only on a free
port, with no persistence (no RDB, no AOF: tests only) and, when given, a
password (requirepass) or a certificate (TLS only: the plain port is off
and the helper's own commands go over TLS too). It runs in the foreground
as a child of the test process, never as the system service.
"""

import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from xmpptest import free_port, scaled

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def available():
    return Path(REDIS).exists()


class Redis:
    def __init__(self, password=None, tls=None):
        """tls: (cert, key) files naming "localhost"."""
        self.dir = Path(tempfile.mkdtemp(prefix="xmppd-redis-"))
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.proc = None

    @property
    def uri(self):
        auth = ":%s@" % self.password if self.password else ""
        if self.tls:
            return "rediss://%slocalhost:%d" % (auth, self.port)
        return "redis://%s127.0.0.1:%d" % (auth, self.port)

    def start(self):
        args = [REDIS, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", str(self.dir / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args[3:5] = ["--port", "0"]
            args += ["--tls-port", str(self.port), "--tls-cert-file", str(self.tls[0]),
                     "--tls-key-file", str(self.tls[1]), "--tls-ca-cert-file", str(self.tls[0]),
                     "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + scaled(10)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited at start:\n%s" % self.log_tail())
            try:
                if self.command("PING") in ("PONG", "NOAUTH Authentication required."):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer:\n%s" % self.log_tail())
            time.sleep(0.05)

    def command(self, *args):
        """One command over RESP; returns the reply as str, int, list or None
        (enough for the tests: no nested arrays)."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=scaled(5)) as raw:
            s = raw
            if self.tls:
                ctx = ssl.create_default_context(cafile=str(self.tls[0]))
                s = ctx.wrap_socket(raw, server_hostname="localhost")
            if self.password:
                auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(self.password), self.password.encode())
                s.sendall(auth)
                f = s.makefile("rb")
                f.readline()
            else:
                f = s.makefile("rb")
            s.sendall(out)
            return _read(f)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=30):
        try:
            return "\n".join((self.dir / "redis.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _read(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind in (b"+", b"-"):
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise RuntimeError("bad RESP line %r" % line)
