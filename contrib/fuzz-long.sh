#!/usr/bin/env bash
# fuzz-long.sh — run every libFuzzer target for a long time (default one
# hour each) and report what was found and how much of the code the corpus
# covers.
#
#   contrib/fuzz-long.sh [--seconds N] [--targets "jid sasl ..."] [--merge] [--out FILE]
#
# Builds build-fuzz/ (clang, libFuzzer, ASan + UBSan: what CI runs briefly)
# and build-fuzzcov/ (the same targets with clang source-based coverage),
# then for each target:
#   1. fuzzes a copy of tests/fuzz/corpus/NAME for N seconds (one process,
#      one core: the machine is shared);
#   2. replays the resulting corpus once in the coverage build and reports
#      the line and function coverage of the files the target reaches
#      (llvm-profdata, llvm-cov);
#   3. keeps any crash, leak or timeout input in the report folder.
# --merge adds the new inputs, minimised (-merge=1), to tests/fuzz/corpus/NAME
# so that they can be committed. The report (markdown) goes to --out
# (default fuzz-report-DATE.md) and to standard output; the exit status is 1
# when a target found something.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECONDS_EACH=3600
TARGETS=""
MERGE=0
OUT="fuzz-report-$(date +%Y%m%d-%H%M).md"
JOBS=${JOBS:-2}

while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_EACH=$2; shift 2 ;;
        --targets) TARGETS=$2; shift 2 ;;
        --merge) MERGE=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "fuzz-long.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

for tool in clang llvm-profdata llvm-cov; do
    command -v "$tool" >/dev/null || { echo "fuzz-long.sh: $tool is missing (apt-get install clang llvm)" >&2; exit 1; }
done

configure_in() {  # DIR CONFIGURE-ARGS...
    local dir=$1; shift
    mkdir -p "$dir"
    [ -f "$dir/Makefile" ] || (cd "$dir" && "$ROOT/configure" "$@" >/dev/null)
}

[ -x configure ] || ./autogen.sh >/dev/null
echo "building build-fuzz and build-fuzzcov ..." >&2
configure_in build-fuzz CC=clang --enable-fuzz "CFLAGS=-fsanitize=fuzzer-no-link,address,undefined -g -O1"
make -C build-fuzz -j"$JOBS" fuzz >/dev/null
configure_in build-fuzzcov CC=clang --enable-fuzz \
    "CFLAGS=-fsanitize=fuzzer-no-link -fprofile-instr-generate -fcoverage-mapping -g -O1" \
    "LDFLAGS=-fprofile-instr-generate"
make -C build-fuzzcov -j"$JOBS" fuzz >/dev/null

if [ -z "$TARGETS" ]; then
    for bin in build-fuzz/tests/fuzz/fuzz_*; do
        [ -x "$bin" ] && [ -f "$bin" ] || continue
        case "$bin" in *.o) continue ;; esac
        TARGETS="$TARGETS ${bin##*/fuzz_}"
    done
fi

WORK=$(mktemp -d /tmp/xmppd-fuzz-long.XXXXXX)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
found=0
{
    echo "# Fuzzing report ($(date -u '+%Y-%m-%d %H:%M UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo "Each target ran ${SECONDS_EACH} s on one core. Coverage: the final corpus replayed in a"
    echo "clang coverage build; lines and functions of the files it reaches."
    echo
    echo "| target | runs | corpus before → after | libFuzzer cov / ft | lines covered | functions covered | findings |"
    echo "|---|---|---|---|---|---|---|"
} >"$OUT"

for t in $TARGETS; do
    bin=build-fuzz/tests/fuzz/fuzz_$t
    cov=build-fuzzcov/tests/fuzz/fuzz_$t
    seed=tests/fuzz/corpus/$t
    w=$WORK/$t
    mkdir -p "$w/corpus" "$w/artifacts"
    [ -d "$seed" ] && cp -r "$seed/." "$w/corpus/"
    before=$(find "$w/corpus" -type f | wc -l)
    echo "fuzzing $t for ${SECONDS_EACH}s ..." >&2
    status=0
    "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$w/artifacts/" "$w/corpus" >"$w/log" 2>&1 || status=$?
    after=$(find "$w/corpus" -type f | wc -l)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -1)
    covft=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$w/log" | tail -1 | sed 's/cov: \([0-9]*\) ft: \([0-9]*\)/\1 \/ \2/')
    findings=$(find "$w/artifacts" -type f | wc -l)
    # coverage of the final corpus
    LLVM_PROFILE_FILE="$w/cov-%p.profraw" "$cov" -runs=0 "$w/corpus" >"$w/cov.log" 2>&1 || true
    lines="?" funcs="?"
    if ls "$w"/cov-*.profraw >/dev/null 2>&1; then
        llvm-profdata merge -sparse "$w"/cov-*.profraw -o "$w/cov.profdata"
        llvm-cov report "$cov" -instr-profile="$w/cov.profdata" -ignore-filename-regex='tests/' \
            >"$w/cov-report.txt" 2>/dev/null || true
        # TOTAL: regions, missed, cover, functions, missed, executed, lines, missed, cover
        read -r _ _ _ _ f fm _ l lm _ <<<"$(grep '^TOTAL' "$w/cov-report.txt" | awk '{print $1,$2,$3,$4,$5,$6,$7,$8,$9,$10}')" || true
        if [ -n "${l:-}" ]; then
            lines="$((l - lm)) / $l"
            funcs="$((f - fm)) / $f"
        fi
    fi
    if [ "$status" != 0 ] || [ "$findings" != 0 ]; then
        found=1
        mkdir -p "fuzz-findings/$t"
        cp -r "$w/artifacts/." "fuzz-findings/$t/" 2>/dev/null || true
        cp "$w/log" "fuzz-findings/$t/log"
        what="**$findings input(s), exit $status** (fuzz-findings/$t)"
    else
        what="none"
    fi
    echo "| $t | ${runs:-?} | $before → $after | ${covft:-?} | $lines | $funcs | $what |" >>"$OUT"
    if [ "$MERGE" = 1 ]; then
        mkdir -p "$seed"
        "$bin" -merge=1 "$seed" "$w/corpus" >"$w/merge.log" 2>&1 || true
    fi
done

cat "$OUT"
rm -rf "$WORK"
exit "$found"
