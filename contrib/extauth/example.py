#!/usr/bin/python3
"""Example external authentication program for xmppd's auth_external (and
ejabberd's extauth): accounts in a plain text file, one per line,

    user@host pbkdf2_sha256$ITERATIONS$SALT$BASE64HASH

(Django's password format, so the file never holds a password).

Protocol on stdin/stdout: each request is a 2-byte big-endian length and
that many bytes of UTF-8, "auth:USER:HOST:PASSWORD", "isuser:USER:HOST",
"setpass:USER:HOST:PASSWORD", "tryregister:USER:HOST:PASSWORD",
"removeuser:USER:HOST" or "removeuser3:USER:HOST:PASSWORD"; each answer is
the 2-byte length 2 and a 2-byte result, 1 (yes / done) or 0 (no).
Errors go to stderr (xmppd's log of the process), never to stdout.

Usage:
    example.py FILE                     speak the protocol (what xmppd runs)
    example.py FILE --set USER@HOST     set a password read from stdin
    example.py FILE --delete USER@HOST

Configuration:
    "auth_external": { "program": "/usr/share/xmppd/extauth/example.py",
                       "args": ["/var/lib/xmppd/extauth-users"] }
"""

import base64
import fcntl
import hashlib
import hmac
import os
import secrets
import struct
import sys

ITERATIONS = 100000


def make_hash(password):
    salt = secrets.token_urlsafe(12)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), ITERATIONS)
    return "pbkdf2_sha256$%d$%s$%s" % (ITERATIONS, salt, base64.b64encode(dk).decode())


def check_hash(stored, password):
    try:
        algo, iterations, salt, b64 = stored.split("$", 3)
        if algo != "pbkdf2_sha256":
            return False
        want = base64.b64decode(b64)
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations), len(want))
        return hmac.compare_digest(want, got)
    except (ValueError, TypeError):
        return False


class UserFile:
    """The account file; every change rewrites it atomically under a lock."""

    def __init__(self, path):
        self.path = path

    def _read(self):
        users = {}
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2:
                        users[parts[0]] = parts[1]
        except FileNotFoundError:
            pass
        return users

    def get(self, jid):
        return self._read().get(jid)

    def change(self, fn):
        """Applies fn(users) -> bool under an exclusive lock; writes when true."""
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            users = self._read()
            if not fn(users):
                return False
            tmp = "%s.%d.tmp" % (self.path, os.getpid())
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for jid in sorted(users):
                    f.write("%s %s\n" % (jid, users[jid]))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            return True


def handle(users, request):
    """One request -> True (1) or False (0)."""
    parts = request.split(":", 3)
    cmd = parts[0]
    if len(parts) < 3 or not parts[1] or not parts[2]:
        return False
    jid = "%s@%s" % (parts[1], parts[2])
    password = parts[3] if len(parts) == 4 else None
    if cmd == "auth" and password is not None:
        stored = users.get(jid)
        return stored is not None and check_hash(stored, password)
    if cmd == "isuser":
        return users.get(jid) is not None
    if cmd == "setpass" and password:
        def setpass(u):
            if jid not in u:
                return False
            u[jid] = make_hash(password)
            return True
        return users.change(setpass)
    if cmd == "tryregister" and password:
        def register(u):
            if jid in u:
                return False
            u[jid] = make_hash(password)
            return True
        return users.change(register)
    if cmd in ("removeuser", "removeuser3"):
        def remove(u):
            stored = u.get(jid)
            if stored is None or (cmd == "removeuser3" and not check_hash(stored, password or "")):
                return False
            del u[jid]
            return True
        return users.change(remove)
    return False


def read_exact(stream, n):
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(users):
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = read_exact(inp, 2)
        if head is None:
            return 0  # xmppd closed our stdin: stop
        (length,) = struct.unpack(">H", head)
        body = read_exact(inp, length)
        if body is None:
            return 0
        try:
            ok = handle(users, body.decode("utf-8"))
        except Exception as e:  # answer no, keep serving
            print("extauth: %s" % e, file=sys.stderr, flush=True)
            ok = False
        out.write(struct.pack(">HH", 2, 1 if ok else 0))
        out.flush()


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    users = UserFile(argv[1])
    if len(argv) == 2:
        return serve(users)
    if len(argv) == 4 and argv[2] in ("--set", "--delete") and "@" in argv[3]:
        jid = argv[3]
        if argv[2] == "--set":
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                print("empty password", file=sys.stderr)
                return 1
            users.change(lambda u: u.__setitem__(jid, make_hash(password)) or True)
            return 0
        return 0 if users.change(lambda u: u.pop(jid, None) is not None) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
