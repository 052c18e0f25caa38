#!/usr/bin/env bash
# run-tests.sh — the whole test suite, as CI runs it (.ci/run).
#
#   contrib/run-tests.sh [--quick] [--no-install] [-- PYTEST_ARGS...]
#
# Levels, each counted in the closing "N passed, N failed" line:
#   1. build/        ../configure --enable-werror; make; make check (cmocka);
#                    make distcheck;
#                    pytest tests/integration against that build, and
#                    again with every server on PostgreSQL (a private cluster)
#   2. build-asan/   --enable-sanitizers (ASan + UBSan): make check and the
#                    integration suite again (skipped with --quick)
# The integration suites run side by side in the background (each in its
# own port range) while the later levels build; their logs are printed
# when they end.
#   3. build-fuzz/   clang + libFuzzer: every fuzz target 20 s over a copy of
#                    tests/fuzz/corpus/<name>/ (skipped with --quick or without clang)
#   4. browser       tests/browser: Converse.js (npm) in headless Chromium against
#                    build/ over WebSocket and BOSH, with file upload (npm ci first)
# Missing Debian packages are installed first (as root; otherwise the
# apt-get line is printed and the script fails).
# Environment: JOBS (default 2), FUZZ_SECONDS (default 20), PYTHON (default /usr/bin/python3).
set -uo pipefail

# Run from a private copy: bash reads a script while it runs, and the tree's
# copy may be edited during a long run.
if [ -z "${XMPPD_RUN_TESTS_ROOT:-}" ]; then
    XMPPD_RUN_TESTS_ROOT=$(cd "$(dirname "$0")/.." && pwd)
    export XMPPD_RUN_TESTS_ROOT
    copy=$(mktemp "${TMPDIR:-/tmp}/run-tests.XXXXXX")
    cp "$0" "$copy"
    exec bash "$copy" "$@"
fi
case "$0" in "${TMPDIR:-/tmp}"/run-tests.*) rm -f "$0" ;; esac  # bash keeps it open
cd "$XMPPD_RUN_TESTS_ROOT"
unset XMPPD_RUN_TESTS_ROOT
ROOT=$(pwd)
JOBS=${JOBS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHONDONTWRITEBYTECODE=1  # keep the tree clean
QUICK=0
INSTALL=1
PYTEST_ARGS=()

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-install) INSTALL=0 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
                       "$ROOT/contrib/run-tests.sh"; exit 0 ;;
        *) echo "run-tests.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

PASSED=0
FAILED=0
SKIPPED=0
FAILURES=()
T0=$(date +%s)

say() { printf '\n==== %s ====\n' "$*"; }
fail_step() { FAILED=$((FAILED + 1)); FAILURES+=("$1"); echo "FAILED: $1"; }
pass_step() { PASSED=$((PASSED + 1)); }

# ---- packages -------------------------------------------------------------
PACKAGES="build-essential autoconf automake libtool pkg-config libxml2-dev libssl-dev
libjansson-dev libevent-dev libhttp-parser-dev libwslay-dev libc-ares-dev libidn-dev libyajl-dev libsqlite3-dev libpcre2-dev libcmocka-dev libpq-dev
libhiredis-dev redis-server haproxy
python3-pytest python3-slixmpp openssl clang libclang-rt-dev postgresql libcrypt-dev
libldap-dev slapd ldap-utils
prosody lua-unbound ejabberd chromium
debhelper lintian dpkg-dev fakeroot git go-sendxmpp sendxmpp profanity biboumi"
# prosody, ejabberd: the federation peers of test_s2s_prosody.py and test_s2s_ejabberd.py
# (Prosody resolves through libunbound pointed at the test DNS fixture: a Recommends of
# prosody, and we install without recommends), and the sources of the migration tests
# (test_migrate_*.py); chromium: the browser test (tests/browser); debhelper, lintian,
# dpkg-dev: test_package.py builds, checks and (in CI, as root) installs the Debian
# package; libldap-dev, slapd, ldap-utils: the directory modules and their slapd; git:
# test_quickstart.py and test_package.py work in fresh clones; go-sendxmpp, sendxmpp:
# the real clients of test_real_clients.py; profanity: test_profanity.py; biboumi: the IRC gateway of test_muc_biboumi.py;
# redis-server: the cluster tests (test_cluster*.py) run private instances of it; haproxy:
# test_cluster.py checks contrib/haproxy/xmppd.cfg and runs two nodes behind one (PROXY v2)

ensure_packages() {
    local missing=() p
    for p in $PACKAGES; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$INSTALL" = 0 ]; then
        echo "missing Debian packages (not installing, --no-install): ${missing[*]}"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages; run as root:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        return 1
    fi
    say "installing ${missing[*]}"
    # RUNLEVEL=1: the packages' services (ejabberd, prosody, postgresql, biboumi) are not
    # started; the tests run private instances of each.
    apt-get update && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_packages || { echo "0 passed, 1 failed (missing packages)"; exit 1; }

# ---- build system ------------------------------------------------------------
need_autogen() {
    [ -x configure ] && [ -f Makefile.in ] || return 0
    [ configure.ac -nt configure ] && return 0
    [ Makefile.am -nt Makefile.in ] && return 0
    return 1
}
if need_autogen; then
    say "autogen.sh"
    ./autogen.sh || { echo "0 passed, 1 failed (autogen.sh)"; exit 1; }
fi

# configure DIR ARGS...: (re)configures DIR when it has never been configured
# with exactly these arguments.
configure_in() {
    local dir=$1; shift
    mkdir -p "$dir"
    local want stamp="$dir/.run-tests-configure"
    want=$(printf '%s\n' "$@")
    if [ -f "$dir/config.status" ] && [ -f "$dir/Makefile" ] && [ -f "$stamp" ] && \
       [ "$(cat "$stamp")" = "$want" ] && [ "$dir/config.status" -nt "$ROOT/configure" ]; then
        return 0
    fi
    echo "configure in $dir: $*"
    rm -f "$stamp"
    (cd "$dir" && "$ROOT/configure" "$@" >configure.out 2>&1) || { tail -40 "$dir/configure.out"; return 1; }
    printf '%s\n' "$want" >"$stamp"
}

# make check in DIR; adds the automake test-suite counts.
run_make_check() {
    local dir=$1 label=$2 out
    out=$(mktemp)
    say "make check ($label)"
    (cd "$dir" && make -j"$JOBS" check 2>&1) | tee "$out"
    local rc=${PIPESTATUS[0]}
    local p f e x s
    p=$(sed -n 's/^# PASS: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    f=$(sed -n 's/^# FAIL: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    e=$(sed -n 's/^# ERROR: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    x=$(sed -n 's/^# XPASS: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    s=$(sed -n 's/^# SKIP: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    PASSED=$((PASSED + ${p:-0}))
    FAILED=$((FAILED + ${f:-0} + ${e:-0} + ${x:-0}))
    SKIPPED=$((SKIPPED + ${s:-0}))
    if [ $(( ${f:-0} + ${e:-0} + ${x:-0} )) -gt 0 ]; then
        FAILURES+=("make check ($label)")
    elif [ "$rc" != 0 ]; then
        fail_step "make check ($label): exit $rc (build error?)"
        for l in "$dir"/tests/unit/*.log; do [ -f "$l" ] && tail -20 "$l"; done
    fi
    rm -f "$out"
}

# Integration suites run side by side (most of their time is spent waiting
# on sockets and timers): each in the background with its own log and its
# own port range (tests/integration/xmpptest.py free_port), collected at the
# end. Their timeouts are scaled up because they share the CPU.
SUITE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/xmppd-suites.XXXXXX")
SUITES=()
NEXT_PORT=10000
PG_DIRS=()

# start_pytest BUILD_DIR LABEL [VAR=VALUE...]: the suite against that build.
start_pytest() {
    local dir=$1 label=$2; shift 2
    local n=${#SUITES[@]} lo=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 4000))
    say "integration tests ($label): started in the background"
    (
        for kv in "$@"; do export "${kv?}"; done
        export XMPPD_BUILD="$ROOT/$dir" XMPPD_TEST_PORTS="$lo-$((lo + 3999))"
        export XMPPD_TIMEOUT_FACTOR=${XMPPD_TIMEOUT_FACTOR:-$( [ -n "${ASAN_OPTIONS:-}" ] && echo 4 || echo 2 )}
        "$PYTHON" -m pytest tests/integration -ra -p no:cacheprovider "${PYTEST_ARGS[@]}" \
            >"$SUITE_DIR/$n.log" 2>&1
        echo $? >"$SUITE_DIR/$n.rc"
    ) &
    SUITES+=("$!|$label")
}

# The same with every test server on PostgreSQL: one private cluster for
# the suite (tests/integration/pg_cluster.py), a database per server.
start_pytest_pgsql() {
    local dir=$1 label=$2; shift 2
    local pgdir dsn
    pgdir=$(mktemp -d /tmp/xmppd-pg-XXXXXX)
    if ! dsn=$("$PYTHON" tests/integration/pg_cluster.py start "$pgdir"); then
        fail_step "integration ($label): cannot start PostgreSQL"
        rm -rf "$pgdir"
        return
    fi
    PG_DIRS+=("$pgdir")
    start_pytest "$dir" "$label" XMPPD_TEST_STORAGE=pgsql XMPPD_TEST_PG_DSN="$dsn" "$@"
}

# Waits for every suite started, prints its log and adds pytest's counts.
collect_pytest() {
    local i entry pid label out rc last n
    for i in "${!SUITES[@]}"; do
        entry=${SUITES[$i]}
        pid=${entry%%|*}
        label=${entry#*|}
        wait "$pid"
        out="$SUITE_DIR/$i.log"
        rc=$(cat "$SUITE_DIR/$i.rc" 2>/dev/null || echo 1)
        say "integration tests ($label)"
        cat "$out"
        last=$(grep -E '^=+ .*(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$out" | tail -1)
        local p=0 f=0 e=0 s=0 kind
        for kind in passed failed error errors skipped xfailed xpassed; do
            n=$(printf '%s' "$last" | grep -oE "[0-9]+ $kind\b" | grep -oE '^[0-9]+' || true)
            n=${n:-0}
            case $kind in
                passed|xfailed) p=$((p + n)) ;;
                failed|xpassed) f=$((f + n)) ;;
                error|errors) e=$((e + n)) ;;
                skipped) s=$((s + n)) ;;
            esac
        done
        PASSED=$((PASSED + p)); FAILED=$((FAILED + f + e)); SKIPPED=$((SKIPPED + s))
        if [ $((f + e)) -gt 0 ]; then
            FAILURES+=("integration ($label): $f failed, $e errors")
        elif [ "$rc" != 0 ]; then
            fail_step "integration ($label): pytest exit $rc"
        fi
    done
    SUITES=()
    for d in "${PG_DIRS[@]}"; do "$PYTHON" tests/integration/pg_cluster.py stop "$d"; done
    PG_DIRS=()
    rm -rf "$SUITE_DIR"
}

build_level() {
    local dir=$1 label=$2; shift 2
    say "build ($label) in $dir"
    if ! configure_in "$dir" "$@"; then
        fail_step "configure ($label)"; return 1
    fi
    if ! (cd "$dir" && make -j"$JOBS"); then
        fail_step "build ($label)"; return 1
    fi
}

# ---- level 1: plain build ------------------------------------------------------
if build_level build "default" --enable-werror; then
    # The architecture, enforced: layers use only the layers below them, and
    # the programs export exactly the SDK's functions.
    say "layers (contrib/ci/check-layers.py) and exports (contrib/ci/check-exports.sh)"
    if "$PYTHON" contrib/ci/check-layers.py build; then pass_step; else fail_step "layering"; fi
    if bash contrib/ci/check-exports.sh build; then pass_step; else fail_step "exported symbols"; fi
    run_make_check build "default"
    # docs/configuration.md's option tables and docs/modules.md's event
    # table are generated from the code: fail when they are not current.
    say "generated documentation (contrib/gen-docs.sh --check)"
    if bash contrib/gen-docs.sh build --check; then pass_step; else fail_step "docs not current (run contrib/gen-docs.sh build)"; fi
    start_pytest build "default"
    start_pytest_pgsql build "default, PostgreSQL storage"
    # The release tarball builds, passes make check, installs and uninstalls
    # cleanly (while the suites above run).
    say "make distcheck"
    if (cd build && make -j"$JOBS" distcheck >distcheck.log 2>&1); then
        pass_step
    else
        tail -40 build/distcheck.log
        fail_step "make distcheck (build/distcheck.log)"
    fi
fi

# ---- level 2: sanitizers ---------------------------------------------------------
if [ "$QUICK" = 0 ]; then
    # intercept_tls_get_addr=0: GCC 12's LeakSanitizer tracer sometimes crashes
    # reading other threads' dynamic TLS at exit ("Tracer caught signal 11",
    # google/sanitizers#1267, fixed in later LLVM); seen in short xmppctl runs.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:intercept_tls_get_addr=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if build_level build-asan "asan+ubsan" --enable-werror --enable-sanitizers; then
        run_make_check build-asan "asan+ubsan"
        start_pytest build-asan "asan+ubsan"
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

# ---- level 3: fuzz ---------------------------------------------------------------
if [ "$QUICK" = 0 ]; then
    if command -v clang >/dev/null; then
        say "fuzz targets (clang, libFuzzer, ${FUZZ_SECONDS}s each)"
        if configure_in build-fuzz CC=clang --enable-fuzz \
               "CFLAGS=-fsanitize=fuzzer-no-link,address,undefined -g -O1" && \
           (cd build-fuzz && make -j"$JOBS" fuzz); then
            FUZZ_TMP=$(mktemp -d)
            export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:intercept_tls_get_addr=0
            export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
            found=0
            for bin in build-fuzz/tests/fuzz/fuzz_*; do
                [ -x "$bin" ] && [ -f "$bin" ] || continue
                case "$bin" in *.o|*.log) continue ;; esac
                found=1
                name=$(basename "$bin")
                short=${name#fuzz_}
                corpus=""
                for c in "tests/fuzz/corpus/$name" "tests/fuzz/corpus/$short"; do
                    [ -d "$c" ] && corpus=$c && break
                done
                work="$FUZZ_TMP/$name"
                mkdir -p "$work/corpus" "$work/artifacts"
                [ -n "$corpus" ] && cp -r "$corpus/." "$work/corpus/" 2>/dev/null
                echo "--- $name (corpus: ${corpus:-none}) ---"
                if "$bin" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
                        -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1; then
                    grep -E "stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$work/log"
                    pass_step
                else
                    tail -60 "$work/log"
                    ls "$work/artifacts"
                    fail_step "fuzz $name (artifacts in $work/artifacts)"
                    KEEP_FUZZ_TMP=1
                fi
            done
            [ "$found" = 1 ] || fail_step "fuzz: no targets built"
            unset ASAN_OPTIONS UBSAN_OPTIONS
            [ "${KEEP_FUZZ_TMP:-0}" = 1 ] || rm -rf "$FUZZ_TMP"
        else
            fail_step "fuzz build"
        fi
    else
        echo "clang not found: fuzz level skipped"
        SKIPPED=$((SKIPPED + 1))
    fi
fi

# ---- level 4: the browser ------------------------------------------------------------
# Converse.js from npm in Debian's Chromium (tests/browser). npm reaches its
# registry in CI; node's test runner prints "# pass N" / "# fail N".
run_browser() {
    local out rc p f
    # Every tests/browser/*.test.mjs: Converse.js, and the web console (its
    # screenshots go to $XMPPD_ARTEFACTS/browser, else tests/browser/artefacts/).
    say "browser tests (Converse.js and the web console in headless Chromium)"
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        fail_step "browser: node and npm are needed (tests/browser)"; return
    fi
    if ! (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error); then
        fail_step "browser: npm ci"; return
    fi
    out=$(mktemp)
    (cd tests/browser && XMPPD_BUILD="$ROOT/build" timeout 480 node --test 2>&1) | tee "$out"
    rc=${PIPESTATUS[0]}
    p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -1)
    f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -1)
    PASSED=$((PASSED + ${p:-0})); FAILED=$((FAILED + ${f:-0}))
    if [ "${f:-0}" -gt 0 ]; then
        FAILURES+=("browser: ${f} failed")
    elif [ "$rc" != 0 ] || [ -z "$p" ]; then
        fail_step "browser: node --test exit $rc"
    fi
    rm -f "$out"
}
if [ -x build/server/xmppd ] && [ -x /usr/bin/chromium ]; then
    run_browser
elif [ -x build/server/xmppd ]; then
    fail_step "browser: /usr/bin/chromium missing (apt-get install chromium)"
fi

# ---- the integration suites started above ------------------------------------------
collect_pytest

# ---- summary ---------------------------------------------------------------------
T1=$(date +%s)
echo
if [ ${#FAILURES[@]} -gt 0 ]; then
    echo "failures:"
    for f in "${FAILURES[@]}"; do echo "  - $f"; done
fi
echo "total time: $((T1 - T0)) s"
summary="$PASSED passed, $FAILED failed"
[ "$SKIPPED" -gt 0 ] && summary="$summary, $SKIPPED skipped"
echo "$summary"
[ "$FAILED" = 0 ] && [ ${#FAILURES[@]} = 0 ]
