#!/usr/bin/env bash
# gen-docs.sh BUILD_DIR [--check]
#
# Regenerates the documentation that comes from the code, between the
# "BEGIN GENERATED" / "END GENERATED" markers:
#   docs/configuration.md  every key: `xmppctl options --markdown` (the server's own
#                          keys, then every module built in BUILD_DIR/modules)
#   docs/modules.md        the event catalogue: `xmppctl hooks --markdown`
#   docs/man/xmppd.json.5  contrib/man/xmppd.json.5.in with the same option
#                          tables as man(7) text (contrib/man/options2man.py)
# With --check nothing is written: the script prints a diff and exits 1 when
# a file is not current (CI runs this). Exit 2: bad usage or xmppctl failed.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [--check]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
BUILD=$(cd "$1" && pwd) || usage
CHECK=0
if [ $# -eq 2 ]; then
    [ "$2" = "--check" ] || usage
    CHECK=1
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
XMPPCTL="$BUILD/server/xmppctl"
[ -x "$XMPPCTL" ] || { echo "gen-docs: $XMPPCTL not built" >&2; exit 2; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# A configuration only for the module path: nothing is started.
printf '{ "module_path": ["%s/modules"], "control_socket": false, "hosts": { "localhost": {} } }\n' \
    "$BUILD" >"$TMP/xmppd.json"

"$XMPPCTL" -c "$TMP/xmppd.json" options --markdown >"$TMP/options.md" ||
    { echo "gen-docs: xmppctl options --markdown failed" >&2; exit 2; }
"$XMPPCTL" -c "$TMP/xmppd.json" hooks --markdown >"$TMP/events.md" ||
    { echo "gen-docs: xmppctl hooks --markdown failed" >&2; exit 2; }

# splice FILE MARKER GENERATED: FILE with the lines between the markers
# "<!-- BEGIN GENERATED MARKER" and "<!-- END GENERATED MARKER -->" replaced.
splice() {
    local file=$1 marker=$2 gen=$3 out=$TMP/$(basename "$1").new
    awk -v begin="<!-- BEGIN GENERATED $marker" -v end="<!-- END GENERATED $marker -->" \
        -v gen="$gen" '
        index($0, begin) == 1 {
            print; print ""
            blank = 0
            while ((getline l < gen) > 0) {
                if (l == "") { blank++; continue }
                for (; blank > 0; blank--) print ""
                print l
            }
            print ""
            skip = 1; found++; next
        }
        index($0, end) == 1 { skip = 0 }
        !skip { print }
        END { if (found != 1) exit 3 }' "$file" >"$out" ||
        { echo "gen-docs: $file: markers for \"$marker\" missing" >&2; exit 2; }
    publish "$out" "$file"
}

# publish NEW FILE: FILE becomes NEW; with --check, says whether it is.
publish() {
    local new=$1 file=$2
    if [ "$CHECK" = 1 ]; then
        if ! diff -u "$file" "$new"; then
            echo "gen-docs: $file is not current: run contrib/gen-docs.sh BUILD_DIR and commit it" >&2
            return 1
        fi
    else
        cp "$new" "$file"
    fi
}

# fill FILE.in's @OPTIONS@ line with GENERATED into FILE (or, with --check,
# compare).
fill() {
    local template=$1 file=$2 gen=$3 out=$TMP/$(basename "$2").new
    awk -v gen="$gen" '$0 == "@OPTIONS@" { while ((getline l < gen) > 0) print l; next } { print }' \
        "$template" >"$out"
    publish "$out" "$file"
}

# xmppd.json(5): the same option tables, as man(7) text
python3 "$ROOT/contrib/man/options2man.py" "$TMP/options.md" >"$TMP/options.man" ||
    { echo "gen-docs: options2man.py failed" >&2; exit 2; }

rc=0
splice "$ROOT/docs/configuration.md" "OPTIONS" "$TMP/options.md" || rc=1
splice "$ROOT/docs/modules.md" "EVENTS" "$TMP/events.md" || rc=1
fill "$ROOT/contrib/man/xmppd.json.5.in" "$ROOT/docs/man/xmppd.json.5" "$TMP/options.man" || rc=1
[ "$CHECK" = 1 ] && [ "$rc" = 0 ] && echo "gen-docs: documentation is current"
exit $rc
