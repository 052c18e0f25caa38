#!/usr/bin/env bash
# run-tests.sh — the whole test suite, as CI runs it (.ci/run).
#
#   contrib/run-tests.sh [--quick] [--no-install] [-- PYTEST_ARGS...]
#
# Levels, each counted in the closing "N passed, N failed" line:
#   1. build/        ../configure --enable-werror; make; make check (cmocka);
#                    pytest tests/integration against that build, then
#                    again with every server on PostgreSQL (a private cluster);
#                    the tests that build the tree again from a clone
#                    (test_quickstart.py, test_package.py) run once, beside
#                    the PostgreSQL pass
#   2. build-asan/   --enable-sanitizers (ASan + UBSan): make check and the
#                    integration suite again (skipped with --quick)
#   3. build-fuzz/   clang + libFuzzer: every fuzz target 20 s over a copy of
#                    tests/fuzz/corpus/<name>/ (skipped with --quick or without clang)
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
libjansson-dev libevent-dev libc-ares-dev libidn-dev libyajl-dev libsqlite3-dev libpcre2-dev libcmocka-dev libpq-dev
python3-pytest python3-slixmpp openssl clang libclang-rt-dev postgresql libcrypt-dev
prosody lua-unbound ejabberd
debhelper lintian dpkg-dev fakeroot git"
# prosody: the federation peer of test_s2s_prosody.py (it resolves through libunbound
# pointed at the test DNS fixture: lua-unbound, a Recommends of prosody, and we install
# without recommends) and, with ejabberd, the source of the migration tests
# (test_migrate_*.py); debhelper, lintian, dpkg-dev: test_package.py builds, checks
# and (in CI, as root) installs the Debian package

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
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
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

# The tests that build the tree again from a clone (quickstart.sh, the Debian
# package): minutes of compiling that need nothing of the other tests, so they
# run beside the PostgreSQL pass, which mostly waits on sockets.
BUILD_TESTS=(tests/integration/test_quickstart.py tests/integration/test_package.py)
IGNORE_BUILD_TESTS=()
for t in "${BUILD_TESTS[@]}"; do IGNORE_BUILD_TESTS+=("--ignore=$t"); done

# pytest against build DIR; adds pytest's counts.
run_pytest() {
    local dir=$1 label=$2 out
    out=$(mktemp)
    say "integration tests ($label)"
    XMPPD_BUILD="$ROOT/$dir" "$PYTHON" -m pytest tests/integration -ra -p no:cacheprovider \
        "${IGNORE_BUILD_TESTS[@]}" "${PYTEST_ARGS[@]}" 2>&1 | tee "$out"
    count_pytest "$out" "${PIPESTATUS[0]}" "$label"
    rm -f "$out"
}

# Starts the BUILD_TESTS against build DIR in the background (output in
# $BUILD_TESTS_OUT); finish_build_tests waits for them and counts.
start_build_tests() {
    BUILD_TESTS_OUT=$(mktemp)
    say "quick start and package tests (in the background)"
    XMPPD_BUILD="$ROOT/$1" "$PYTHON" -m pytest "${BUILD_TESTS[@]}" -ra -p no:cacheprovider \
        "${PYTEST_ARGS[@]}" >"$BUILD_TESTS_OUT" 2>&1 &
    BUILD_TESTS_PID=$!
}
finish_build_tests() {
    [ -n "${BUILD_TESTS_PID:-}" ] || return 0
    wait "$BUILD_TESTS_PID"
    local rc=$?
    say "quick start and package tests (their output)"
    cat "$BUILD_TESTS_OUT"
    count_pytest "$BUILD_TESTS_OUT" "$rc" "quick start and package"
    rm -f "$BUILD_TESTS_OUT"
    BUILD_TESTS_PID=
}

# Adds the counts of pytest's closing line in FILE (exit status RC).
count_pytest() {
    local out=$1 rc=$2 label=$3
    local last n
    last=$(grep -E '^=+ .*(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$out" | tail -1)
    local p=0 f=0 e=0 s=0
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
    elif [ "$rc" != 0 ] && [ "$rc" != 5 ]; then  # 5: every test deselected by PYTEST_ARGS
        fail_step "integration ($label): pytest exit $rc"
    fi
}

# pytest against build DIR with every test server on PostgreSQL: one private
# cluster for the run (tests/integration/pg_cluster.py), a database per server.
run_pytest_pgsql() {
    local dir=$1 label=$2 pgdir dsn
    pgdir=$(mktemp -d /tmp/xmppd-pg-XXXXXX)
    if ! dsn=$("$PYTHON" tests/integration/pg_cluster.py start "$pgdir"); then
        fail_step "integration ($label): cannot start PostgreSQL"
        rm -rf "$pgdir"
        return
    fi
    export XMPPD_TEST_STORAGE=pgsql XMPPD_TEST_PG_DSN="$dsn"
    run_pytest "$dir" "$label"
    unset XMPPD_TEST_STORAGE XMPPD_TEST_PG_DSN
    "$PYTHON" tests/integration/pg_cluster.py stop "$pgdir"
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
    run_pytest build "default"
    start_build_tests build
    run_pytest_pgsql build "default, PostgreSQL storage"
    finish_build_tests
    # docs/configuration.md's option tables and docs/modules.md's event
    # table are generated from the code: fail when they are not current.
    say "generated documentation (contrib/gen-docs.sh --check)"
    if bash contrib/gen-docs.sh build --check; then pass_step; else fail_step "docs not current (run contrib/gen-docs.sh build)"; fi
fi

# ---- level 2: sanitizers ---------------------------------------------------------
if [ "$QUICK" = 0 ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if build_level build-asan "asan+ubsan" --enable-werror --enable-sanitizers; then
        run_make_check build-asan "asan+ubsan"
        run_pytest build-asan "asan+ubsan"
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
            export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
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
