#!/usr/bin/env bash
# quickstart.sh — build xmppd and run it for "localhost" in ./run, in one go.
#
#   contrib/quickstart.sh
#
# Installs missing Debian build packages (as root; otherwise prints the
# apt-get line), builds in build/, creates ./run/{certs,data,xmppd.json}
# (an existing ./run/xmppd.json is kept), creates the demo accounts
# alice@localhost and bob@localhost with random passwords (printed once; kept
# when they already exist) and runs the server in the foreground (Ctrl-C stops it).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-2}
RUN="$ROOT/run"
CONF="$RUN/xmppd.json"

PACKAGES="build-essential autoconf automake libtool pkg-config libxml2-dev libssl-dev
libjansson-dev libevent-dev libc-ares-dev libidn-dev libsqlite3-dev libpcre2-dev libpq-dev libcrypt-dev libldap-dev openssl"
missing=()
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages; run as root:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# ---- build -------------------------------------------------------------------
if [ ! -x configure ] || [ ! -f Makefile.in ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
    ./autogen.sh
fi
mkdir -p build
if [ ! -f build/Makefile ]; then
    (cd build && ../configure)
fi
make -C build -j"$JOBS"

XMPPD="$ROOT/build/server/xmppd"
XMPPCTL="$ROOT/build/server/xmppctl"

# ---- certificate, config ----------------------------------------------------------
mkdir -p "$RUN/certs" "$RUN/data"
bash contrib/gen-cert.sh "$RUN/certs" localhost

if [ ! -f "$CONF" ]; then
    listeners='    { "type": "c2s", "address": "127.0.0.1", "port": 5222, "tls": "starttls" },
    { "type": "c2s", "address": "127.0.0.1", "port": 5223, "tls": "direct" }'
    if [ -s /proc/net/if_inet6 ]; then
        listeners="$listeners"',
    { "type": "c2s", "address": "::1", "port": 5222, "tls": "starttls" },
    { "type": "c2s", "address": "::1", "port": 5223, "tls": "direct" }'
    fi
    cat >"$CONF" <<EOF
{
  "log": { "level": "info", "file": null },
  "data_dir": "$RUN/data",
  "module_path": ["$ROOT/build/modules"],
  "storage": "sqlite",
  "tls": {
    "cert": "$RUN/certs/localhost.crt",
    "key": "$RUN/certs/localhost.key"
  },
  "c2s": { "require_encryption": true },
  "listeners": [
$listeners
  ],
  "modules": {
    "storage_sqlite": { "path": "xmppd.sqlite" },
    "auth_internal": {},
    "limits": {}
  },
  "hosts": {
    "localhost": {}
  }
}
EOF
    echo "wrote $CONF"
fi
"$XMPPCTL" -c "$CONF" check

# ---- demo accounts ------------------------------------------------------------------
existing=$("$XMPPCTL" -c "$CONF" users localhost 2>/dev/null || true)
created=()
for u in alice bob; do
    if printf '%s\n' "$existing" | grep -qE "^($u|$u@localhost)\$"; then
        continue
    fi
    pw=$(openssl rand -base64 12 | tr -d '/+=' | cut -c1-14)
    printf '%s\n' "$pw" | "$XMPPCTL" -c "$CONF" adduser "$u@localhost"
    created+=("$u@localhost  password: $pw")
done

cat <<EOF

xmppd for localhost
  config:  $CONF
  data:    $RUN/data
  ports:   5222 (STARTTLS), 5223 (direct TLS, XEP-0368)
EOF
if [ ${#created[@]} -gt 0 ]; then
    echo "  accounts created (passwords shown only now):"
    for c in "${created[@]}"; do echo "    $c"; done
else
    echo "  accounts alice@localhost and bob@localhost already exist"
    echo "  (new password: $XMPPCTL -c $CONF passwd alice@localhost)"
fi
cat <<EOF

Log in with any XMPP client, e.g.
  profanity:  /connect alice@localhost server 127.0.0.1 port 5222 tls force
              (then /tls allow to accept the self-signed certificate)
  gajim:      add account alice@localhost, Advanced > host 127.0.0.1 port 5222,
              accept the self-signed certificate when asked
More accounts: $XMPPCTL -c $CONF adduser carol@localhost

Starting xmppd (Ctrl-C to stop)...
EOF
exec "$XMPPD" -c "$CONF"
