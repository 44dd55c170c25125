# Sourced by scripts/test-all: starts pebble (Let's Encrypt's ACME test server) and
# pebble-challtestsrv on loopback for the bmcert-acme tests, and exports where they listen.
# Every process started is appended to the caller's PIDS array, which its EXIT trap stops.
#
# Exported to the tests:
#   BMCERT_PEBBLE_DIRECTORY      ACME directory URL of the main pebble (nonce rejection 5 %, its default)
#   BMCERT_PEBBLE_NR_DIRECTORY   ACME directory URL of a second pebble with PEBBLE_WFE_NONCEREJECT=50
#   BMCERT_PEBBLE_MANAGEMENT     management URL of the main pebble (/roots/0, /intermediates/0)
#   BMCERT_PEBBLE_NR_MANAGEMENT  management URL of the second pebble
#   BMCERT_PEBBLE_CA             PEM file of the CA that signed pebble's HTTPS certificate
#   BMCERT_PEBBLE_HTTP01_PORT    port pebble's validator connects to for HTTP-01 (tests listen there)
#   BMCERT_PEBBLE_TLSALPN01_PORT port pebble's validator connects to for TLS-ALPN-01
# challtestsrv answers every A query with 127.0.0.1 (and no AAAA), so any name validates
# against the tests' listeners on loopback.

pebble_dir="$(mktemp -d /tmp/bmcert-pebble.XXXXXX)"
pebble_http01_port=5002
pebble_tlsalpn01_port=5001

# Pebble's own HTTPS certificate: a small CA and a separate server certificate (rustls refuses a
# CA certificate used as a server certificate). The Debian package does not ship test certs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bmcert pebble test CA" -keyout "$pebble_dir/ca.key" -out "$pebble_dir/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout "$pebble_dir/key.pem" -out "$pebble_dir/server.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' \
    >"$pebble_dir/server.ext"
openssl x509 -req -in "$pebble_dir/server.csr" -CA "$pebble_dir/ca.pem" -CAkey "$pebble_dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$pebble_dir/server.ext" -out "$pebble_dir/cert.pem" 2>/dev/null

pebble_config() { # $1 listen port, $2 management port
    cat <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:$1",
    "managementListenAddress": "127.0.0.1:$2",
    "certificate": "$pebble_dir/cert.pem",
    "privateKey": "$pebble_dir/key.pem",
    "httpPort": $pebble_http01_port,
    "tlsPort": $pebble_tlsalpn01_port,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON
}
pebble_config 14000 15000 >"$pebble_dir/main.json"
pebble_config 14001 15001 >"$pebble_dir/nonce-reject.json"

# DNS only: the empty flags keep challtestsrv off ports 5001-5003 and stop it answering AAAA.
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 127.0.0.1:8053 \
    -http01 "" -https01 "" -tlsalpn01 "" -management 127.0.0.1:8055 \
    >"$pebble_dir/challtestsrv.log" 2>&1 &
PIDS+=($!)
PEBBLE_VA_NOSLEEP=1 pebble -config "$pebble_dir/main.json" -dnsserver 127.0.0.1:8053 \
    >"$pebble_dir/pebble.log" 2>&1 &
PIDS+=($!)
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=50 pebble -config "$pebble_dir/nonce-reject.json" \
    -dnsserver 127.0.0.1:8053 >"$pebble_dir/pebble-nonce-reject.log" 2>&1 &
PIDS+=($!)

# Wait (bounded) until both directories answer.
for port in 14000 14001; do
    ok=
    for _ in $(seq 1 100); do
        if curl -fsS --cacert "$pebble_dir/ca.pem" "https://127.0.0.1:$port/dir" >/dev/null 2>&1; then
            ok=1
            break
        fi
        sleep 0.1
    done
    if [ -z "$ok" ]; then
        echo "pebble.sh: pebble on port $port did not start; logs in $pebble_dir" >&2
        return 1
    fi
done

# The answers must come from the processes started here, not from a pebble someone else
# left on these ports (ours would then have exited: "address already in use").
for pid in "${PIDS[@]: -3}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "pebble.sh: a pebble process exited at start (ports 14000/14001/15000/15001/8053 busy?); logs in $pebble_dir" >&2
        return 1
    fi
done

export BMCERT_PEBBLE_DIRECTORY="https://127.0.0.1:14000/dir"
export BMCERT_PEBBLE_NR_DIRECTORY="https://127.0.0.1:14001/dir"
export BMCERT_PEBBLE_MANAGEMENT="https://127.0.0.1:15000"
export BMCERT_PEBBLE_NR_MANAGEMENT="https://127.0.0.1:15001"
export BMCERT_PEBBLE_CA="$pebble_dir/ca.pem"
export BMCERT_PEBBLE_HTTP01_PORT="$pebble_http01_port"
export BMCERT_PEBBLE_TLSALPN01_PORT="$pebble_tlsalpn01_port"
echo "pebble.sh: pebble at $BMCERT_PEBBLE_DIRECTORY (logs in $pebble_dir)"
