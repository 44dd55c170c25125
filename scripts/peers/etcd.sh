# Sourced by scripts/test-all: starts a three-member etcd cluster on 127.0.0.1 for the
# bmcert-store-etcd tests, and exports where it listens. Every process started is appended to
# the caller's PIDS array, which its EXIT trap stops. (scripts/install-deps installs
# `etcd-server`.) Tests that stop or kill members start their own cluster with BMCERT_ETCD_BIN
# instead of touching this one.
#
# Exported to the tests:
#   BMCERT_ETCD_ENDPOINTS  client endpoints, comma-separated host:port
#   BMCERT_ETCD_BIN        the etcd binary (for tests that run their own cluster)

etcd_dir="$(mktemp -d /tmp/bmcert-etcd.XXXXXX)"
etcd_bin="$(command -v etcd || true)"
if [ -z "$etcd_bin" ]; then
    echo "etcd.sh: no etcd binary (apt-get install etcd-server)" >&2
    return 1
fi
etcd_cluster="m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802,m3=http://127.0.0.1:23803"
etcd_pids=()
for i in 1 2 3; do
    "$etcd_bin" --name "m$i" --data-dir "$etcd_dir/m$i" \
        --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
        --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
        --initial-cluster "$etcd_cluster" --initial-cluster-state new \
        --initial-cluster-token "bmcert-test-$$" >"$etcd_dir/m$i.log" 2>&1 &
    etcd_pids+=($!)
    PIDS+=($!)
done

# Wait (bounded) until every member reports healthy.
etcd_ok=
for _ in $(seq 1 150); do
    if curl -fsS http://127.0.0.1:23791/health 2>/dev/null | grep -q '"health":"true"' &&
        curl -fsS http://127.0.0.1:23792/health 2>/dev/null | grep -q '"health":"true"' &&
        curl -fsS http://127.0.0.1:23793/health 2>/dev/null | grep -q '"health":"true"'; then
        etcd_ok=1
        break
    fi
    sleep 0.2
done
if [ -z "$etcd_ok" ]; then
    echo "etcd.sh: the etcd cluster did not become healthy; logs in $etcd_dir" >&2
    return 1
fi
# The answers must come from the members started here (ports 23791-23793/23801-23803 free).
for pid in "${etcd_pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "etcd.sh: an etcd member exited at start (ports 23791-23793/23801-23803 busy?); logs in $etcd_dir" >&2
        return 1
    fi
done

export BMCERT_ETCD_ENDPOINTS="127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793"
export BMCERT_ETCD_BIN="$etcd_bin"
echo "etcd.sh: etcd cluster at $BMCERT_ETCD_ENDPOINTS (logs in $etcd_dir)"
