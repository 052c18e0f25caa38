#!/usr/bin/env bash
# quickstart.sh — build xmppd and run it for "localhost" in ./run, in one go.
#
#   contrib/quickstart.sh
#
# Installs missing Debian build packages (as root; otherwise prints the
# apt-get line), builds in build/, creates ./run/{certs,data,xmppd.json}
# (an existing ./run/xmppd.json is kept), creates the demo accounts
# alice@localhost and bob@localhost with random passwords (printed once; kept
# when they already exist), each in the other's roster with a mutual presence
# subscription, and runs the server in the foreground (Ctrl-C stops it).
#
# The server loads the default modules: the lines between "BEGIN DEFAULT
# MODULES" and "END DEFAULT MODULES" of contrib/xmppd.example.json, the one
# place that list is kept.
# Environment: JOBS (default 2), XMPPD_C2S_PORT (5222), XMPPD_C2S_TLS_PORT (5223),
# XMPPD_HTTPS_PORT (5281: WebSocket, BOSH, file upload).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-2}
PORT=${XMPPD_C2S_PORT:-5222}
TLS_PORT=${XMPPD_C2S_TLS_PORT:-5223}
HTTPS_PORT=${XMPPD_HTTPS_PORT:-5281}
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
    listeners='    { "type": "c2s", "address": "127.0.0.1", "port": '$PORT', "tls": "starttls" },
    { "type": "c2s", "address": "127.0.0.1", "port": '$TLS_PORT', "tls": "direct" },
    { "type": "http", "address": "127.0.0.1", "port": '$HTTPS_PORT', "tls": "direct" }'
    if [ -s /proc/net/if_inet6 ]; then
        listeners="$listeners"',
    { "type": "c2s", "address": "::1", "port": '$PORT', "tls": "starttls" },
    { "type": "c2s", "address": "::1", "port": '$TLS_PORT', "tls": "direct" }'
    fi
    # The default modules, exactly as the example configuration lists them.
    modules=$(awk '/\/\/ END DEFAULT MODULES/ { exit }
                   on && !/^ *\/\// { print }
                   /\/\/ BEGIN DEFAULT MODULES/ { on = 1 }' contrib/xmppd.example.json)
    [ -n "$modules" ] || { echo "quickstart: no default modules in contrib/xmppd.example.json" >&2; exit 1; }
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
$modules
    "storage_sqlite": { "path": "xmppd.sqlite" },
    "auth_internal": {}
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
if [ ${#created[@]} -gt 0 ]; then
    # Each in the other's roster, seeing the other's presence.
    "$XMPPCTL" -c "$CONF" roster alice@localhost add bob@localhost --name Bob --group Demo --subscription both
    "$XMPPCTL" -c "$CONF" roster bob@localhost add alice@localhost --name Alice --group Demo --subscription both
fi

cat <<EOF

xmppd for localhost
  config:  $CONF
  data:    $RUN/data (database: $RUN/data/xmppd.sqlite)
  ports:   $PORT (STARTTLS), $TLS_PORT (direct TLS, XEP-0368), $HTTPS_PORT (HTTPS:
           WebSocket /xmpp-websocket, BOSH /http-bind, file upload) on 127.0.0.1
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
  profanity:  /connect alice@localhost server 127.0.0.1 port $PORT tls force
              (then /tls allow to accept the self-signed certificate)
  gajim:      add account alice@localhost, Advanced > host 127.0.0.1 port $PORT,
              accept the self-signed certificate when asked
More accounts: $XMPPCTL -c $CONF adduser carol@localhost
Web console: https://localhost:$HTTPS_PORT/admin/ for administrators; make one with
  "admins": ["alice@localhost"] at the top of $CONF, then kill -HUP the server

Starting xmppd (Ctrl-C to stop)...
EOF
exec "$XMPPD" -c "$CONF"
