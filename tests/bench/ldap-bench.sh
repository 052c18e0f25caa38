#!/usr/bin/env bash
# ldap-bench.sh — the login workload against auth_ldap next to auth_internal.
#
#   tests/bench/ldap-bench.sh [--build DIR] [--logins N] [--concurrency N] [--out FILE] [--keep]
#
# Four runs of the load generator's login workload (tests/bench/loadgen.c:
# TCP, STARTTLS, SASL, bind, initial presence, </stream:stream>), each on a
# fresh xmppd pinned to CPU 0, the load generator and slapd on CPU 1:
#   internal/SCRAM-SHA-1   auth_internal, accounts registered in-band (4096 iterations)
#   internal/PLAIN         the same accounts, PLAIN (the server runs PBKDF2 per login)
#   ldap/PLAIN             auth_ldap, search then bind against a private slapd
#                          holding the same accounts ({SSHA} passwords)
#   ldap/SCRAM-SHA-1       auth_ldap with scram on, after one PLAIN round stored
#                          the keys (4096 iterations): a directory lookup per login
# Reported per login: xmppd CPU-ms, slapd CPU-ms, latency (connect to the
# echo of the initial presence) p50 and p99. Needs slapd (apt-get install
# slapd ldap-utils); never part of the pass/fail suite (docs/benchmarks.md).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${XMPPD_BUILD:-$REPO/build}
LOGINS=1000
CONC=8
OUT=""
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --logins) LOGINS=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
[ -x "$BUILD/server/xmppd" ] || { echo "xmppd not built in $BUILD" >&2; exit 1; }
[ -x /usr/sbin/slapd ] || { echo "slapd not installed (apt-get install slapd ldap-utils)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs" >&2; exit 1; }

make -C "$BUILD" bench >/dev/null
WORK=$(mktemp -d /tmp/xmppd-ldap-bench.XXXXXX)
SRV_PID=""
SLAPD_PID=""
log() { printf '[ldap-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cleanup() {
    set +e
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    /usr/bin/python3 "$REPO/tests/integration/slapd_server.py" stop "$WORK/slapd"
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# ---- the directory: the test directory plus the load generator's accounts ----
USERS=300 # the load generator's benchu0..benchu299 (--sessions 300)
PW=benchpw
HASH=$(slappasswd -s "$PW")
LDIF="$WORK/bench.ldif"
cat "$REPO/modules/auth_ldap/testdata/directory.ldif" >"$LDIF"
for i in $(seq 0 $((USERS - 1))); do
    printf '\ndn: uid=benchu%d,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: benchu%d\ncn: Bench %d\nsn: Bench\nuserPassword: %s\n' \
        "$i" "$i" "$i" "$HASH" >>"$LDIF"
done
read -r SLAPD_PORT SLAPD_PID < <(taskset -c 1 /usr/bin/python3 "$REPO/tests/integration/slapd_server.py" start "$WORK/slapd" "$LDIF")
log "slapd on port $SLAPD_PORT (pid $SLAPD_PID)"

bash "$REPO/contrib/gen-cert.sh" "$WORK/certs" localhost >/dev/null

start_xmppd() {  # NAME AUTH_MODULES_JSON
    local dir="$WORK/$1" port
    port=$(free_port)
    mkdir -p "$dir/data"
    cat >"$dir/xmppd.json" <<EOF
{
  "log": { "level": "info", "file": "$dir/xmppd.log" },
  "data_dir": "$dir/data", "module_path": ["$BUILD/modules"], "storage": "sqlite",
  "tls": { "cert": "$WORK/certs/localhost.crt", "key": "$WORK/certs/localhost.key", "min_version": "1.2" },
  "limits": { "connections_per_ip": 20000, "auth_failure_delay": "0s" },
  "listeners": [ { "type": "c2s", "address": "127.0.0.1", "port": $port, "tls": "starttls" } ],
  "modules": { "storage_sqlite": { "path": "xmppd.sqlite" }, $2,
               "roster": {}, "presence": {}, "disco": {}, "ping": {},
               "register": { "allow_registration": true, "registration_throttle": 0 } },
  "hosts": { "localhost": {} }
}
EOF
    (cd "$dir" && exec taskset -c 0 "$BUILD/server/xmppd" -c "$dir/xmppd.json" >"$dir/stderr.log" 2>&1 </dev/null) &
    SRV_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    SRV_PORT=$port
}

stop_xmppd() {
    kill "$SRV_PID"
    wait "$SRV_PID" || true
    SRV_PID=""
}

# run NAME WORKLOADS [--plain]: one load generator run; prints its RESULT lines
run() {
    local name=$1 workloads=$2; shift 2
    taskset -c 1 "$BUILD/tests/bench/loadgen" --port "$SRV_PORT" --pid "$SRV_PID" --prefix bench \
        --password "$PW" --workloads "$workloads" --sessions $USERS --pairs 1 --contacts 1 --logins "$LOGINS" \
        --login-concurrency "$CONC" --phase-timeout 300 "$@" 2>"$WORK/$name.loadgen.log"
}

ROWS=()
# measure NAME WORKLOADS [--plain]: a run, with slapd's CPU around it
measure() {
    local name=$1 t0 t1 out hz
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$SLAPD_PID")
    out=$(run "$@")
    t1=$(cpu_ticks "$SLAPD_PID")
    local n cpu p50 p99 failed
    n=$(awk '$2 == "login_count" { print $3 }' <<<"$out")
    failed=$(awk '$2 == "login_failed" { print $3 }' <<<"$out")
    cpu=$(awk '$2 == "login_cpu_ms_per" { print $3 }' <<<"$out")
    p50=$(awk '$2 == "login_latency_ms_p50" { print $3 }' <<<"$out")
    p99=$(awk '$2 == "login_latency_ms_p99" { print $3 }' <<<"$out")
    local slapd_ms
    slapd_ms=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.3f", (b - a) * 1000 / hz / n }')
    log "$name: $n logins ($failed failed), xmppd $cpu CPU-ms, slapd $slapd_ms CPU-ms, latency p50 $p50 ms, p99 $p99 ms"
    ROWS+=("| $name | $n | $cpu | $slapd_ms | $p50 | $p99 |")
}

log "auth_internal"
start_xmppd internal '"auth_internal": { "iterations": 4096 }'
run internal-register register >/dev/null
measure "auth_internal, SCRAM-SHA-1" login
measure "auth_internal, PLAIN" login --plain
stop_xmppd

LDAP_CONF="\"auth_ldap\": { \"uris\": [\"ldap://127.0.0.1:$SLAPD_PORT\"], \"base\": \"ou=people,dc=example,dc=org\",
  \"bind_dn\": \"cn=xmppd,ou=services,dc=example,dc=org\", \"bind_password\": \"service-pw\""
log "auth_ldap"
start_xmppd ldap "$LDAP_CONF }"
measure "auth_ldap, PLAIN (search then bind)" login --plain
stop_xmppd
start_xmppd ldap-scram "$LDAP_CONF, \"scram\": true, \"iterations\": 4096 }"
run ldap-scram-warm login --plain >/dev/null # every account's first PLAIN login stores its keys
sleep 2
measure "auth_ldap with scram, SCRAM-SHA-1 (lookup + stored keys)" login
stop_xmppd

TABLE=$(printf '%s\n' "| run | logins | xmppd CPU-ms per login | slapd CPU-ms per login | latency p50 (ms) | latency p99 (ms) |" \
    "|---|---|---|---|---|---|" "${ROWS[@]}")
echo "$TABLE"
[ -n "$OUT" ] && echo "$TABLE" >"$OUT"
exit 0
