#!/usr/bin/env bash
# Wall time to obtain 1 certificate and 20 certificates (20 names) from one pebble:
# bmcert-acme (library, the 20 concurrently) next to certbot and lego (one after another, as
# their command lines work), all against the same pebble in the same run, HTTP-01 on the same
# port, each tool's account registered before the timings. Prints a Markdown table for
# docs/benchmarks.md.
#
#   benches/acme/compare.sh            # starts its own pebble (scripts/peers/pebble.sh)
#   BMCERT_PEBBLE_DIRECTORY=... benches/acme/compare.sh   # or uses the one exported
#
# Installs the Debian packages certbot and lego when missing (root).
set -euo pipefail
cd "$(dirname "$0")/../.."

PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
if [ -z "${BMCERT_PEBBLE_DIRECTORY:-}" ]; then
    source scripts/peers/pebble.sh
fi
need=()
command -v certbot >/dev/null || need+=(certbot)
command -v lego >/dev/null || need+=(lego)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

work="$(mktemp -d /tmp/bmcert-acme-bench.XXXXXX)"
dir="$BMCERT_PEBBLE_DIRECTORY"
port="$BMCERT_PEBBLE_HTTP01_PORT"
stamp="$(date +%s)"
export REQUESTS_CA_BUNDLE="$BMCERT_PEBBLE_CA"    # certbot
export LEGO_CA_CERTIFICATES="$BMCERT_PEBBLE_CA"  # lego

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

certbot_one() { # $1 name
    certbot certonly --standalone --non-interactive --agree-tos -m bench@example.test \
        --server "$dir" --http-01-port "$port" --http-01-address 127.0.0.1 \
        --config-dir "$work/certbot" --work-dir "$work/certbot-work" --logs-dir "$work/certbot-logs" \
        -d "$1" >>"$work/certbot.out" 2>&1
}
lego_one() { # $1 name
    lego --accept-tos --email bench@example.test --server "$dir" --http --http.port "127.0.0.1:$port" \
        --path "$work/lego" -d "$1" run >>"$work/lego.out" 2>&1
}

# certbot 2.1 sometimes dies on a second badNonce in a row (josepy AttributeError), which
# pebble's nonce rejection provokes: a failed attempt is retried (up to 3 times) and counted,
# and only the successful attempt's time is added.
failures=0
elapsed=0
timed() { # $1 function, $2 name: adds the successful attempt's time to $elapsed
    local attempt t
    for attempt in 1 2 3; do
        t=$(now)
        if "$1" "$2"; then
            elapsed=$(awk -v e="$elapsed" -v d="$(since "$t")" 'BEGIN { printf "%.2f", e + d }')
            return 0
        fi
        failures=$((failures + 1))
        echo "acme bench: $1 $2 failed (attempt $attempt)" >&2
    done
    echo "acme bench: $1 $2 failed 3 times; see $work" >&2
    exit 1
}
run() { # $1 function, $2 tag, $3 count: prints the total time of the successful runs
    elapsed=0
    local i
    for i in $(seq 1 "$3"); do timed "$1" "$2$i-$stamp.example.test"; done
}

echo "acme bench: warming up (accounts) ..." >&2
timed certbot_one "warm-certbot-$stamp.example.test"
timed lego_one "warm-lego-$stamp.example.test"

median3() { # $1 function, $2 tag: sets $med to the median of three single-certificate runs
    local a b c
    run "$1" "$2a" 1; a=$elapsed
    run "$1" "$2b" 1; b=$elapsed
    run "$1" "$2c" 1; c=$elapsed
    med=$(printf '%s\n' "$a" "$b" "$c" | sort -n | sed -n 2p)
}
median3 certbot_one one-certbot-; certbot1=$med
run certbot_one c-certbot- 20; certbot20=$elapsed
median3 lego_one one-lego-; lego1=$med
run lego_one c-lego- 20; lego20=$elapsed

BMCERT_ACME_BENCH_ROUNDS="${BMCERT_ACME_BENCH_ROUNDS:-3}" \
    cargo bench -q -p bmcert-benches --bench acme 2>/dev/null | tee "$work/bmcert.out" >&2
bm1=$(sed -n 's/^bmcert-acme 1 certificate: \([0-9.]*\) s$/\1/p' "$work/bmcert.out")
bm20=$(sed -n 's/^bmcert-acme 20 certificates (concurrent): \([0-9.]*\) s$/\1/p' "$work/bmcert.out")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
certbot_ver="$(dpkg-query -W -f '${Version}' certbot 2>/dev/null || certbot --version)"
lego_ver="$(dpkg-query -W -f '${Version}' lego 2>/dev/null || lego --version)"
nr="${PEBBLE_WFE_NONCEREJECT:-5 (default)}"
cat <<TABLE
| client | 1 certificate (s, median of 3) | 20 certificates (s) |
|---|---|---|
| bmcert-acme (20 concurrent) | $bm1 | $bm20 |
| certbot $certbot_ver (sequential) | $certbot1 | $certbot20 |
| lego $lego_ver (sequential) | $lego1 | $lego20 |

bmcert-acme / certbot per certificate: $(ratio "$bm1" "$certbot1") (goal < 0.25);
bmcert-acme 20 / lego 20: $(ratio "$bm20" "$lego20") (goal < 0.1).
Pebble at $dir, nonce rejection $nr %, PEBBLE_VA_NOSLEEP=1; failed certbot/lego attempts
retried (not timed): $failures; logs in $work.
TABLE
