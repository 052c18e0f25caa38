#!/usr/bin/env bash
# run-bench.sh — xmppd vs Prosody vs ejabberd, side by side on this machine.
#
#   tests/bench/run-bench.sh [--quick] [--build DIR] [--servers "xmppd prosody ejabberd relay"]
#                            [--workloads LIST] [--out FILE] [--sessions N]
#                            [--muc-occupants N] [--keep] [--no-install]
#                            [--loadgen-args "ARGS"]
#
# Each server gets its own configuration and data folder in a temporary folder,
# a free loopback port and the same self-signed certificate (contrib/gen-cert.sh);
# it runs pinned to CPU 0 (taskset -c 0), the load generator to CPU 1. The same
# workloads (tests/bench/loadgen.c) run against each server in turn, one server
# at a time; figures are the server's CPU time (utime+stime of the process) and
# RSS. Prints a table with ratios and writes it to --out (default
# bench-results-DATE.md in the current folder).
# "relay" is the floor of the routing row: tests/bench/tls-relay.c, a raw TLS
# relay speaking just enough XMPP for the load generator (SASL PLAIN, any
# password); it runs the route and login workloads only.
#
# --workloads: a comma list of the load generator's workloads (default all:
# register,route,login,idle,fanout,pep,muc,offline; register is always run).
# --muc-occupants: occupants of the group chat room (default 1,000, quick 200).
# --loadgen-args: extra options for the load generator, after the defaults
# (e.g. "--pep-contacts 20 --pep-rounds 5" to try one workload small).
# Default run: about 25-30 minutes; --quick: about 10 minutes (smaller counts).
# Needs root for apt-get (Prosody, ejabberd) and to run ejabberd as its own user.
# Never part of the pass/fail test suite.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${XMPPD_BUILD:-}
SERVERS="xmppd prosody ejabberd relay"
QUICK=0
KEEP=0
INSTALL=1
OUT=""
SESSIONS=""
MUC_OCCUPANTS=""
WORKLOADS=""
EXTRA_LG_ARGS=""
LOGLEVEL=${BENCH_LOGLEVEL:-info}

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; shift ;;
        --build) BUILD=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --sessions) SESSIONS=$2; shift 2 ;;
        --muc-occupants) MUC_OCCUPANTS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-install) INSTALL=0; shift ;;
        --loadgen-args) EXTRA_LG_ARGS=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run-bench.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { printf 'run-bench.sh: %s\n' "$*" >&2; exit 1; }

# ---- workload sizes -------------------------------------------------------
if [ "$QUICK" = 1 ]; then
    LG_ARGS=(--pairs 25 --messages 20000 --logins 200 --login-concurrency 20 --sessions "${SESSIONS:-600}"
             --contacts 100 --rounds 50 --pep-contacts 200 --pep-rounds 20
             --muc-occupants "${MUC_OCCUPANTS:-200}" --muc-messages 50
             --offline-messages 3000 --offline-recipients 5
             --offline-senders 5 --phase-timeout 60)
    SERVER_BUDGET=240       # seconds a server's whole run may take
else
    LG_ARGS=(--pairs 50 --messages 100000 --logins 1000 --login-concurrency 20 --sessions "${SESSIONS:-5000}"
             --contacts 500 --rounds 100 --pep-contacts 1000 --pep-rounds 50
             --muc-occupants "${MUC_OCCUPANTS:-1000}" --muc-messages 50
             --offline-messages 20000 --offline-recipients 10
             --offline-senders 10 --phase-timeout 600)
    SERVER_BUDGET=1500      # the muc joins alone take Prosody about 5 minutes
fi
[ -n "$WORKLOADS" ] && LG_ARGS+=(--workloads "register,$WORKLOADS")
# shellcheck disable=SC2206 # split on purpose: a list of options
[ -n "$EXTRA_LG_ARGS" ] && LG_ARGS+=($EXTRA_LG_ARGS)

# ---- dependencies -------------------------------------------------------------
need_pkgs=()
case " $SERVERS " in *" prosody "*) command -v prosody >/dev/null || need_pkgs+=(prosody) ;; esac
case " $SERVERS " in *" ejabberd "*) command -v ejabberdctl >/dev/null || need_pkgs+=(ejabberd) ;; esac
command -v taskset >/dev/null || need_pkgs+=(util-linux)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v cc >/dev/null || need_pkgs+=(gcc)
[ -f /usr/include/openssl/ssl.h ] || need_pkgs+=(libssl-dev)
command -v python3 >/dev/null || need_pkgs+=(python3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$INSTALL" = 1 ] || fail "missing: ${need_pkgs[*]} (run without --no-install, as root)"
    log "installing ${need_pkgs[*]}"
    # the Debian packages start their system services; keep them stopped
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2
    for svc in prosody ejabberd; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
            systemctl stop "$svc" || true
        fi
    done
fi
[ "$(nproc)" -ge 2 ] || fail "needs 2 CPUs (server on CPU 0, load generator on CPU 1)"

# ---- xmppd and the load generator -------------------------------------------
if [ -z "$BUILD" ]; then
    for d in "$REPO/build-bench" "$REPO/build" "$REPO"; do
        if [ -x "$d/server/xmppd" ]; then BUILD=$d; break; fi
    done
fi
case " $SERVERS " in
    *" xmppd "*) [ -n "$BUILD" ] && [ -x "$BUILD/server/xmppd" ] ||
        fail "xmppd not built: mkdir build-bench && cd build-bench && ../configure CFLAGS='-O2 -g' && make -j2 (or --build DIR)" ;;
esac
[ -z "$BUILD" ] || BUILD=$(cd "$BUILD" && pwd)  # the servers run from their own folders
WORK=$(mktemp -d /tmp/xmppd-bench.XXXXXX)
chmod 755 "$WORK"
LOADGEN="$WORK/loadgen"
RELAY="$WORK/tls-relay"
if [ -n "$BUILD" ] && [ -f "$BUILD/Makefile" ]; then
    make -C "$BUILD" bench >&2
    cp "$BUILD/tests/bench/loadgen" "$LOADGEN"
    cp "$BUILD/tests/bench/tls-relay" "$RELAY"
else
    cc -O2 -g -Wall -Wextra -o "$LOADGEN" "$HERE/loadgen.c" -lssl -lcrypto
    cc -O2 -g -Wall -Wextra -o "$RELAY" "$HERE/tls-relay.c" -lssl -lcrypto
fi

# ---- common state -------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 12000 ] || log "warning: open-files limit $(ulimit -n) is low for --sessions"
bash "$REPO/contrib/gen-cert.sh" "$WORK/certs" localhost >/dev/null
CRT="$WORK/certs/localhost.crt"
KEY="$WORK/certs/localhost.key"
STAMP=$(date -u +%Y-%m-%dT%H:%M:%SZ)
OUT=${OUT:-"$PWD/bench-results-$(date +%Y%m%d-%H%M%S).md"}
SRV_PID=""
EJ_CTL=()

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {  # PORT SECONDS PID
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then return 1; fi
        sleep 0.2
    done
    return 1
}

cleanup() {
    set +e
    if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
        if [ ${#EJ_CTL[@]} -gt 0 ]; then "${EJ_CTL[@]}" stop >/dev/null 2>&1; sleep 2; fi
        kill "$SRV_PID" 2>/dev/null; sleep 1; kill -9 "$SRV_PID" 2>/dev/null
    fi
    if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servers ------------------------------------------------------------------------
start_xmppd() {  # PORT DIR
    local port=$1 dir=$2
    mkdir -p "$dir/data"
    cat > "$dir/xmppd.json" <<EOF
{
  "log": { "level": "$LOGLEVEL", "file": "$dir/xmppd.log" },
  "data_dir": "$dir/data",
  "module_path": ["$BUILD/modules"],
  "storage": "sqlite",
  "tls": { "cert": "$CRT", "key": "$KEY", "min_version": "1.2" },
  "c2s": { "require_encryption": true },
  "limits": { "connections_per_ip": 20000, "max_resources": 100 },
  "listeners": [ { "type": "c2s", "address": "127.0.0.1", "port": $port, "tls": "starttls" } ],
  "modules": {
    "storage_sqlite": { "path": "xmppd.sqlite" },
    "auth_internal": { "iterations": 4096 },
    "roster": {}, "presence": {}, "offline": { "max_messages": 100000 },
    "disco": {}, "ping": {}, "caps": {}, "pep": {},
    "register": { "allow_registration": true, "registration_throttle": 0 },
    "muc": { "domain": "conference.localhost", "message_rate": 0, "max_occupants": 20000,
             "room_defaults": { "archiving": false } }
  },
  "hosts": { "localhost": {} }
}
EOF
    (cd "$dir" && exec taskset -c 0 "$BUILD/server/xmppd" -c "$dir/xmppd.json" \
        >"$dir/stderr.log" 2>&1 </dev/null) &
    SRV_PID=$!
    wait_port "$port" 20 "$SRV_PID" || { tail -n 20 "$dir/stderr.log" "$dir/xmppd.log" >&2; fail "xmppd did not start"; }
    SRV_VERSION="$("$BUILD/server/xmppd" -V 2>/dev/null | head -1 || echo 'xmppd (version unknown)')"
    SRV_VERSION="$SRV_VERSION, git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes'), build $(basename "$BUILD")"
    SRV_NOTES="storage_sqlite (WAL, synchronous=full), auth_internal (SCRAM-SHA-1/256/512 keys, 4096 iterations), modules roster presence offline disco ping register caps pep muc (conference.localhost: no message rate limit, max_occupants 20000, rooms not archived)"
}

# lg_opt NAME DEFAULT: the value the load generator gets for --NAME (the last
# one in LG_ARGS wins, as in its getopt loop).
lg_opt() {
    local v=$2 i
    for ((i = 0; i < ${#LG_ARGS[@]} - 1; i++)); do
        [ "${LG_ARGS[$i]}" = "--$1" ] && v=${LG_ARGS[$((i + 1))]}
    done
    echo "$v"
}
runs_workload() {  # NAME: does the load generator run it?
    local w
    w=$(lg_opt workloads "register,route,login,idle,fanout,pep,muc,offline")
    case ",$w," in *",$1,"*) return 0 ;; *) return 1 ;; esac
}

# Prosody's rosters for the fanout and pep workloads, written into its
# storage before it starts: the hub (account N, N = contacts) and accounts
# 0..N-1 with subscription both. Made through the protocol, 1,000 contacts
# take Prosody far too long: its internal storage rewrites the user's whole
# roster file on every change (four per contact), so the hub's handshakes
# are quadratic (see docs/benchmarks.md, "PEP fan-out side by side"). The
# load generator reads the rosters and subscribes only what is missing;
# in-band registration leaves the roster files alone.
prosody_rosters() {  # ROSTER_DIR
    local hubs=()
    runs_workload fanout && hubs+=("$(lg_opt contacts 500)")
    runs_workload pep && hubs+=("$(lg_opt pep-contacts 1000)")
    PROSODY_ROSTERS=""
    [ ${#hubs[@]} -gt 0 ] || return 0
    PROSODY_ROSTERS=", rosters of the fan-out hubs (${hubs[*]} contacts) written into its storage before it starts"
    mkdir -p "$1"
    python3 - "$1" "$(lg_opt prefix bench)" "$(lg_opt domain localhost)" "${hubs[@]}" <<'PY'
import sys
folder, prefix, domain, hubs = sys.argv[1], sys.argv[2], sys.argv[3], [int(h) for h in sys.argv[4:]]
rosters = {}
for n in hubs:
    hub = "%su%d" % (prefix, n)
    for i in range(n):
        contact = "%su%d" % (prefix, i)
        rosters.setdefault(hub, set()).add(contact)
        rosters.setdefault(contact, set()).add(hub)
for user, contacts in rosters.items():
    lines = ["return {", "\t[false] = {", '\t\t["version"] = 1;', '\t\t["pending"] = {};', "\t};"]
    for c in sorted(contacts):
        lines += ['\t["%s@%s"] = {' % (c, domain), '\t\t["subscription"] = "both";',
                  '\t\t["groups"] = {};', "\t};"]
    lines.append("};")
    with open("%s/%s.dat" % (folder, user), "w") as f:
        f.write("\n".join(lines) + "\n")
PY
}

start_prosody() {  # PORT DIR
    local port=$1 dir=$2
    mkdir -p "$dir/data"
    prosody_rosters "$dir/data/localhost/roster"
    cat > "$dir/prosody.cfg.lua" <<EOF
-- benchmark configuration (tests/bench/run-bench.sh)
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { $LOGLEVEL = "$dir/prosody.log" }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_direct_tls_ports = { }
s2s_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
component_ports = { }
c2s_require_encryption = true
authentication = "internal_hashed"
default_iteration_count = 4096
storage = "internal"
allow_registration = true
registration_throttle_max = 1000000
registration_throttle_period = 1
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "register"; "presence"; "message"; "iq"; "offline"; "pep" }
modules_disabled = { "s2s" }
ssl = { certificate = "$CRT"; key = "$KEY" }
VirtualHost "localhost"
Component "conference.localhost" "muc"
EOF
    (cd "$dir" && exec taskset -c 0 prosody --config "$dir/prosody.cfg.lua" \
        >"$dir/stderr.log" 2>&1 </dev/null) &
    SRV_PID=$!
    wait_port "$port" 20 "$SRV_PID" || { tail -n 20 "$dir/stderr.log" "$dir/prosody.log" >&2; fail "prosody did not start"; }
    SRV_VERSION="Prosody $(dpkg-query -W -f '${Version}' prosody 2>/dev/null) ($(lua5.4 -v 2>&1 | head -1 | cut -d' ' -f1-2), network_backend epoll)"
    SRV_NOTES="storage internal (files), authentication internal_hashed (SCRAM-SHA-1, 4096 iterations), modules roster saslauth tls disco ping register presence message iq offline pep, Component conference.localhost muc (defaults: new rooms locked until configured, no occupant limit)$PROSODY_ROSTERS"
}

start_ejabberd() {  # PORT DIR
    local port=$1 dir=$2 node="bench$$@localhost" distport
    distport=$(free_port)
    mkdir -p "$dir/etc" "$dir/spool" "$dir/logs"
    cat "$CRT" "$KEY" > "$dir/etc/localhost.pem"
    cp /etc/ejabberd/inetrc "$dir/etc/inetrc"
    local ejlevel=$LOGLEVEL
    [ "$ejlevel" = warn ] && ejlevel=warning
    cat > "$dir/etc/ejabberd.yml" <<EOF
# benchmark configuration (tests/bench/run-bench.sh)
hosts:
  - localhost
loglevel: $ejlevel
log_rotate_count: 0
certfiles:
  - "$dir/etc/localhost.pem"
default_db: mnesia
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
registration_timeout: infinity
listen:
  -
    port: $port
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls_required: true
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  max_user_sessions: 100
  max_user_offline_messages: 100000
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_register:
    access: register
    ip_access: all
  mod_caps: {}
  mod_pubsub:
    plugins: ["flat", "pep"]
  mod_muc:
    hosts: ["conference.localhost"]
    access_create: all
    max_users: 20000
    max_users_presence: 20000
    default_room_options:
      max_users: 20000
EOF
    cat > "$dir/etc/ejabberdctl.cfg" <<EOF
ERLANG_NODE=$node
ERL_DIST_PORT=$distport
ERL_MAX_PORTS=32000
ERL_OPTIONS="+sbwt none +sbwtdcpu none +sbwtdio none -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_PID_PATH=$dir/ejabberd.pid
EJABBERD_BYPASS_WARNINGS=true
EOF
    chown -R ejabberd:ejabberd "$dir"
    # Run as the ejabberd user without su: su's PAM session would reset the
    # open-files limit to 1024; setpriv keeps ours (needed for --sessions).
    EJ_CTL=(env HOME="$dir" setpriv --reuid=ejabberd --regid=ejabberd --init-groups
            ejabberdctl --config-dir "$dir/etc" --spool "$dir/spool" --logs "$dir/logs" --node "$node")
    (exec taskset -c 0 "${EJ_CTL[@]}" foreground >"$dir/stderr.log" 2>&1 </dev/null) &
    local wrapper=$!
    if ! wait_port "$port" 60 "$wrapper"; then
        tail -n 30 "$dir/stderr.log" "$dir/logs/ejabberd.log" >&2 || true
        fail "ejabberd did not start"
    fi
    local end=$((SECONDS + 20))
    while [ ! -s "$dir/ejabberd.pid" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
    SRV_PID=$(cat "$dir/ejabberd.pid" 2>/dev/null || true)
    [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null || fail "ejabberd: no beam process id in $dir/ejabberd.pid"
    SRV_VERSION="ejabberd $(dpkg-query -W -f '${Version}' ejabberd 2>/dev/null) (Erlang/OTP $(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null | sed 's/^1://; s/+.*//'))"
    SRV_NOTES="mnesia, auth internal with SCRAM-SHA-1 stored keys (4096 iterations), modules mod_disco mod_ping mod_roster mod_offline mod_register mod_caps mod_pubsub (pep) mod_muc (conference.localhost, max_users and max_users_presence 20000); schedulers without busy-wait (+sbwt none)"
}

# The floor: a raw TLS relay (tests/bench/tls-relay.c) with the same
# certificate, on the same CPU; the load generator logs in with SASL PLAIN.
start_relay() {  # PORT DIR
    local port=$1 dir=$2
    (cd "$dir" && exec taskset -c 0 "$RELAY" --port "$port" --cert "$CRT" --key "$KEY" \
        --domain "$(lg_opt domain localhost)" >"$dir/stderr.log" 2>&1 </dev/null) &
    SRV_PID=$!
    wait_port "$port" 10 "$SRV_PID" || { tail -n 20 "$dir/stderr.log" >&2; fail "tls-relay did not start"; }
    SRV_VERSION="tls-relay (tests/bench/tls-relay.c, git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')), $(openssl version 2>/dev/null | cut -d' ' -f1-2)"
    SRV_NOTES="the floor, not a server: one epoll loop, TLS in and out with xmppd's TLS settings, SASL PLAIN accepting any password, each stanza's bytes forwarded by its \`to\` with a \`from\` inserted, no XML parsing, no JID preparation, no storage (see tests/bench/tls-relay.c)"
}

# The relay's workloads: route and login of those asked for (none: not run).
relay_workloads() {
    local w out=""
    for w in route login; do runs_workload "$w" && out="$out,$w"; done
    echo "${out#,}"
}

stop_server() {
    local name=$1
    if [ "$name" = ejabberd ] && [ ${#EJ_CTL[@]} -gt 0 ]; then
        "${EJ_CTL[@]}" stop >/dev/null 2>&1 || true
        local end=$((SECONDS + 20))
        while kill -0 "$SRV_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.3; done
        EJ_CTL=()
    else
        kill "$SRV_PID" 2>/dev/null || true
        local end=$((SECONDS + 15))
        while kill -0 "$SRV_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
    fi
    kill -9 "$SRV_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    SRV_PID=""
}

declare -A R VERSION NOTES
for name in $SERVERS; do
    case $name in xmppd|prosody|ejabberd|relay) ;; *) fail "unknown server '$name'" ;; esac
    SRV_ARGS=("${LG_ARGS[@]}")
    if [ "$name" = relay ]; then
        rw=$(relay_workloads)
        [ -n "$rw" ] || { log "relay: neither route nor login asked for, skipped"; continue; }
        SRV_ARGS+=(--plain --workloads "register,$rw")   # the last --workloads wins
        # --quick routes 20,000 messages: 0.1 CPU-s per 100k would be two clock
        # ticks; the relay gets 100,000 (a figure per 100k either way)
        [ "$QUICK" = 0 ] || SRV_ARGS+=(--messages 100000)
    fi
    port=$(free_port)
    dir="$WORK/$name"
    mkdir -p "$dir"
    log "$name: starting on 127.0.0.1:$port (CPU 0)"
    "start_$name" "$port" "$dir"
    VERSION[$name]=$SRV_VERSION
    NOTES[$name]=$SRV_NOTES
    log "$name: pid $SRV_PID, running the load generator (CPU 1)"
    set +e
    timeout "$SERVER_BUDGET" taskset -c 1 "$LOADGEN" --port "$port" --pid "$SRV_PID" \
        "${SRV_ARGS[@]}" > "$dir/results.txt" 2> >(tee "$dir/loadgen.log" >&2)
    rc=$?
    set -e
    [ $rc = 0 ] || log "$name: load generator exited with $rc (partial results; see $dir/loadgen.log)"
    while read -r tag key value; do
        [ "$tag" = RESULT ] && R[$name.$key]=$value
    done < "$dir/results.txt"
    R[$name.rc]=$rc
    stop_server "$name"
    log "$name: stopped"
done

# ---- report --------------------------------------------------------------------------
get() { echo "${R[$1.$2]:-}"; }
# ratio OTHER XMPPD HIB: how many times better xmppd is (other's cost / xmppd's;
# for rates xmppd's / other's). verdict VALUE TARGET: ✔ or ✘ against "≤ N" / "≥ N".
ratio() {
    python3 - "$1" "$2" "$3" <<'EOF'
import sys
o, x, hib = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
try:
    o, x = float(o), float(x)
    r = (x / o) if hib else (o / x)
    print("%.1f×" % r)
except (ValueError, ZeroDivisionError):
    print("—")
EOF
}
verdict() {
    python3 - "$1" "$2" <<'EOF'
import sys
v, t = sys.argv[1], sys.argv[2].replace(",", "")
try:
    v, op, lim = float(v), t.split()[0], float(t.split()[1])
    print(" ✔" if (v <= lim if op == "≤" else v >= lim) else " ✘")
except (ValueError, IndexError):
    print("")
EOF
}
has_server() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
row() {  # label key higher_is_better target
    local label=$1 key=$2 hib=$3 target=$4 line x floor
    x=$(get xmppd "$key")
    line="| $label |"
    for s in xmppd prosody ejabberd relay; do
        if has_server "$s"; then line="$line $(get "$s" "$key" | sed 's/^$/—/') |"; else line="$line — |"; fi
    done
    floor=$(get relay "$key")
    line="$line $target$(verdict "$x" "$target") | $(ratio "$(get prosody "$key")" "$x" "$hib") | $(ratio "$(get ejabberd "$key")" "$x" "$hib") |"
    if [ -n "$floor" ] && [ -n "$x" ]; then
        line="$line $(python3 -c 'import sys; print("%.2f×" % (float(sys.argv[1]) / float(sys.argv[2])))' "$x" "$floor" 2>/dev/null || echo —) |"
    else
        line="$line — |"
    fi
    echo "$line"
}

{
    echo "# xmppd benchmark — $STAMP"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Servers pinned to CPU 0, load generator to CPU 1; TLS on every connection (STARTTLS, TLS 1.3);"
    echo "SASL $(get xmppd sasl | sed 's/^$/SCRAM-SHA-1/') (the relay: PLAIN, any password); figures are server CPU time (utime+stime) and RSS."
    [ "$QUICK" = 1 ] && echo "Mode: --quick (smaller counts; noisier)."
    echo
    echo "| workload | xmppd | Prosody | ejabberd | relay (floor) | target (issue 18) | xmppd vs Prosody | xmppd vs ejabberd | xmppd ÷ floor |"
    echo "|---|---|---|---|---|---|---|---|---|"
    row "message routing, CPU-s per 100k messages" route_cpu_s_per_100k 0 "≤ 0.23"
    row "full login, CPU-ms per login ($(lg_opt login-concurrency 8) at a time)" login_cpu_ms_per 0 "≤ 0.45"
    row "login latency p99, ms ($(lg_opt login-concurrency 8) concurrent logins)" login_latency_ms_p99 0 "≤ 15"
    row "login latency p50, ms" login_latency_ms_p50 0 "—"
    row "idle TLS session, KiB per session (RSS delta / $(lg_opt sessions 5000) sessions)" idle_kib_per_session 0 "≤ 16"
    row "idle TLS session, KiB per session (marginal, last 80 %)" idle_kib_per_session_marginal 0 "≤ 16"
    row "presence fan-out, CPU-µs per delivered presence ($(lg_opt contacts 500) contacts)" fanout_cpu_us_per_delivery 0 "≤ 8"
    row "PEP fan-out, CPU-µs per delivered notification" pep_cpu_us_per_delivery 0 "≤ 8"
    row "PEP fan-out, ms until the last contact has a notification (median)" pep_last_ms_p50 0 "—"
    row "PEP fan-out, ms until the last contact has a notification (p99)" pep_last_ms_p99 0 "—"
    row "PEP fan-out, server RSS at the end, KiB (contacts and hub online)" pep_rss_end_kib 0 "—"
    row "group chat fan-out, CPU-µs per delivered message" muc_cpu_us_per_delivery 0 "≤ 8"
    row "group chat, ms until the last occupant has a message (median)" muc_last_ms_p50 0 "—"
    row "group chat, ms until the last occupant has a message (p99)" muc_last_ms_p99 0 "—"
    row "group chat, KiB per occupant (RSS growth from joining)" muc_kib_per_occupant 0 "—"
    row "offline messages stored per CPU-second" offline_stored_per_cpu_s 1 "≥ 20,000"
    row "offline messages fetched per CPU-second" offline_fetched_per_cpu_s 1 "≥ 100,000"
    row "offline delivery on login, messages per wall second, first to last ($(lg_opt offline-messages 20000) queued)" offline_delivered_per_wall_s 1 "≥ 150,000"
    row "offline delivery on login, messages per wall second, logins included" offline_fetched_per_wall_s 1 "—"
    row "messages lost (route + offline; bounces not counted)" messages_lost 0 "≤ 0"
    echo
    echo "Ratios: how many times better xmppd is (other's cost / xmppd's cost; for rates xmppd / other);"
    echo "xmppd ÷ floor: xmppd's cost as a multiple of the raw TLS relay's (the issue's aim: ≤ 2×)."
    echo
    echo "Context (wall clock, counts):"
    echo
    echo "| | xmppd | Prosody | ejabberd | relay |"
    echo "|---|---|---|---|---|"
    for k in route_messages route_lost route_errors route_msgs_per_wall_s login_count login_failed login_wall_s login_latency_ms_p90 login_latency_ms_max idle_sessions idle_rss_before_kib idle_rss_after_kib idle_login_cpu_ms_per fanout_contacts fanout_deliveries pep_contacts pep_disco_answered pep_disco_during_measure pep_first_complete pep_deliveries pep_duplicates pep_complete pep_wall_s pep_loadgen_cpu_ms_per_round pep_rss_before_caps_kib pep_rss_after_first_kib muc_occupants muc_deliveries muc_join_wall_s muc_last_ms_max offline_sent offline_stored_per_wall_s offline_fetched offline_fetch_loadgen_cpu_s offline_lost rc; do
        line="| $k |"
        for s in xmppd prosody ejabberd relay; do line="$line $(get "$s" "$k" | sed 's/^$/—/') |"; done
        echo "$line"
    done
    echo
    for s in $SERVERS; do
        [ -z "${VERSION[$s]:-}" ] || echo "- **$s**: ${VERSION[$s]}; ${NOTES[$s]}."
    done
} > "$OUT"
cat "$OUT"
log "report written to $OUT"
