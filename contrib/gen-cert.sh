#!/usr/bin/env bash
# gen-cert.sh DIR DOMAIN [DOMAIN...]
#
# Writes a self-signed certificate and its key for the given domains:
#   DIR/FIRST_DOMAIN.crt  (PEM, EC P-256 / SHA-256, 10 years,
#                          subjectAltName DNS: entry for every DOMAIN given)
#   DIR/FIRST_DOMAIN.key  (PEM, mode 0600)
# Idempotent: when both files exist, the certificate is valid for at least
# another 30 days and already names every requested domain, nothing is done.
# For tests and first steps only; use a real CA (e.g. Let's Encrypt) in production.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 DIR DOMAIN [DOMAIN...]" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl not found (apt-get install openssl)" >&2; exit 1; }

dir=$1; shift
first=$1
crt="$dir/$first.crt"
key="$dir/$first.key"
mkdir -p "$dir"

san=""
for d in "$@"; do
    case "$d" in
        ''|*[!A-Za-z0-9.*-]*) echo "$0: invalid domain name: '$d'" >&2; exit 2 ;;
    esac
    san="${san:+$san,}DNS:$d"
done

if [ -s "$crt" ] && [ -s "$key" ] && openssl x509 -in "$crt" -noout -checkend 2592000 >/dev/null 2>&1; then
    names=$(openssl x509 -in "$crt" -noout -ext subjectAltName 2>/dev/null || true)
    ok=1
    for d in "$@"; do
        case "$names" in *"DNS:$d,"*|*"DNS:$d") ;; *) ok=0 ;; esac
    done
    if [ "$ok" = 1 ]; then
        exit 0
    fi
fi

tmpkey=$(mktemp "$dir/.key.XXXXXX")
tmpcrt=$(mktemp "$dir/.crt.XXXXXX")
trap 'rm -f "$tmpkey" "$tmpcrt"' EXIT
(umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmpkey" 2>/dev/null)
openssl req -new -x509 -sha256 -days 3650 -key "$tmpkey" -out "$tmpcrt" \
    -subj "/CN=$first" \
    -addext "subjectAltName=$san" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=serverAuth,clientAuth" 2>/dev/null
chmod 600 "$tmpkey"
chmod 644 "$tmpcrt"
mv -f "$tmpkey" "$key"
mv -f "$tmpcrt" "$crt"
trap - EXIT
echo "wrote $crt and $key (self-signed, SAN: $san)"
