#!/usr/bin/env bash
# The module boundary: the programs export exactly the functions api/xmppd/*.h
# declares, no more (kernel internals stay hidden from modules and from the
# libraries they load) and no fewer (a module linked against the SDK loads).
#
#   contrib/ci/check-exports.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: check-exports.sh BUILD_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Function declarations in the SDK headers: "name(" after a return type,
# at the start of a declaration (not inside comments or typedefs).
cat "$root"/api/xmppd/*.h |
    sed -e 's://.*$::' |
    perl -0777 -pe 's{/\*.*?\*/}{}gs' |
    perl -0777 -ne 'while (/^(?!typedef)[A-Za-z_][\w \t\*]*?\b(xmppd_\w+)\s*\(/mg) { print "$1\n" }' |
    sort -u >"$tmp/api"

status=0
for prog in xmppd xmppctl; do
    bin="$build/server/$prog"
    nm -D --defined-only "$bin" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' |
        grep -v -E '@|^(_start|_init|_fini|_edata|_end|__bss_start|_IO_stdin_used|__data_start|data_start|__dso_handle)$' |
        sort -u >"$tmp/$prog"
    extra=$(comm -13 "$tmp/api" "$tmp/$prog")
    missing=$(comm -23 "$tmp/api" "$tmp/$prog")
    if [ -n "$extra" ]; then
        echo "$prog exports symbols that api/xmppd/*.h does not declare:"
        echo "$extra" | sed 's/^/  /'
        status=1
    fi
    if [ -n "$missing" ]; then
        echo "$prog lacks API functions that api/xmppd/*.h declares:"
        echo "$missing" | sed 's/^/  /'
        status=1
    fi
done
[ $status = 0 ] && echo "exports: $(wc -l <"$tmp/api") API functions, nothing else"
exit $status
