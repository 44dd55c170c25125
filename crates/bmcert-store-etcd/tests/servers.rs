//! Three "servers" (each its own store client, live index and rustls listener) on the
//! shared etcd cluster of `scripts/peers/etcd.sh`: propagation of installs with p50/p99,
//! fencing of a holder whose lease expired, HTTP-01 answered by another server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_acme::{http01_response_from_state, AcmeState, StoreState};
use bmcert_store::{block_on, Condition, RecordKey, Store, StoreError};
use bmcert_topology::Target;
use common::{percentile, wait_served, Pki, Server};

fn three_servers(endpoints: &[String], prefix: &str) -> Vec<Server> {
    (0..3)
        .map(|_| {
            let store: Arc<dyn Store> = Arc::new(common::connect(endpoints, prefix));
            Server::start(store)
        })
        .collect()
}

#[test]
fn an_install_through_one_server_is_served_by_the_others() {
    let Some(endpoints) = common::endpoints() else {
        return;
    };
    let prefix = format!("/servers-{}/", std::process::id());
    let servers = three_servers(&endpoints, &prefix);
    let pki = Pki::new();
    let root = pki.root_der();
    let mut latencies = Vec::new();
    for n in 0..100 {
        let bundle = pki.bundle();
        let leaf = bundle.leaf().clone();
        let via = n % 3;
        let start = Instant::now();
        block_on(
            servers[via]
                .store
                .install(&Target::System, &bundle, &Condition::none()),
        )
        .unwrap();
        for (i, server) in servers.iter().enumerate() {
            if i != via {
                // The bound only keeps a broken run finite; the speed is what is printed.
                latencies.push(wait_served(
                    server,
                    &root,
                    &leaf,
                    start,
                    Duration::from_secs(10),
                ));
            }
        }
    }
    latencies.sort();
    let over_1s = latencies
        .iter()
        .filter(|d| **d > Duration::from_secs(1))
        .count();
    println!(
        "etcd propagation over {} (install -> served by another server's TLS listener): p50 {:?}, p99 {:?}, max {:?}, over 1 s: {over_1s}",
        latencies.len(),
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies[latencies.len() - 1],
    );
    assert_eq!(latencies.len(), 200);
    // Each server's store reads the same current version.
    let versions: Vec<u64> = servers
        .iter()
        .map(|s| {
            block_on(s.store.current(&Target::System))
                .unwrap()
                .unwrap()
                .version
        })
        .collect();
    assert_eq!(versions, [100, 100, 100]);
}

#[test]
fn a_holder_whose_lease_expired_cannot_write_with_its_old_token() {
    let Some(endpoints) = common::endpoints() else {
        return;
    };
    let prefix = format!("/fence-{}/", std::process::id());
    let a = common::connect(&endpoints, &prefix);
    let b = common::connect(&endpoints, &prefix);
    let lock = RecordKey::new("renewal").unwrap();
    let state = RecordKey::new("renewal/system").unwrap();
    let lease = block_on(a.lock(&lock, "server-a", Duration::from_secs(1))).unwrap();
    block_on(a.put(&state, b"ordering", &Condition::none().fenced_by(&lease))).unwrap();
    assert!(matches!(
        block_on(b.lock(&lock, "server-b", Duration::from_secs(1))),
        Err(StoreError::LockHeld { .. })
    ));
    // Server A stops renewing (it hangs, or was killed): etcd ends the lease and deletes the
    // lock key; from then on A's writes are refused even though nobody took over yet.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match block_on(a.put(
            &state,
            b"still ordering",
            &Condition::none().fenced_by(&lease),
        )) {
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the expired lease still fences writes in"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(StoreError::Fenced { token, .. }) => {
                assert_eq!(token, lease.token);
                break;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    // Server B takes over with a larger token; A's old token stays refused for every write.
    let taken = block_on(b.lock(&lock, "server-b", Duration::from_secs(5))).unwrap();
    assert!(taken.token > lease.token);
    let pki = Pki::new();
    assert!(matches!(
        block_on(a.install(
            &Target::System,
            &pki.bundle(),
            &Condition::none().fenced_by(&lease)
        )),
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        block_on(a.delete(&state, &Condition::none().fenced_by(&lease))),
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        block_on(a.renew(&lease, Duration::from_secs(1))),
        Err(StoreError::Fenced { .. })
    ));
    assert!(block_on(a.current(&Target::System)).unwrap().is_none());
    block_on(b.put(&state, b"b ordering", &Condition::none().fenced_by(&taken))).unwrap();
    assert_eq!(
        block_on(a.get(&state)).unwrap().unwrap().secret_value(),
        b"b ordering"
    );
    // The holder keeps its lock alive with renewals (etcd keep-alive) past the TTL.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        block_on(b.renew(&taken, Duration::from_secs(1))).unwrap();
    }
    block_on(b.put(&state, b"b done", &Condition::none().fenced_by(&taken))).unwrap();
    block_on(b.unlock(&taken)).unwrap();
}

#[test]
fn an_http01_token_published_by_one_server_is_answered_by_another() {
    let Some(endpoints) = common::endpoints() else {
        return;
    };
    let prefix = format!("/http01-{}/", std::process::id());
    let ordering: Arc<dyn Store> = Arc::new(common::connect(&endpoints, &prefix));
    let answering: Arc<dyn Store> = Arc::new(common::connect(&endpoints, &prefix));
    let ordering = StoreState::new(ordering);
    let answering = StoreState::new(answering);
    let token = "Xy-9_tokenABC";
    let path = format!("/.well-known/acme-challenge/{token}");
    assert_eq!(
        block_on(http01_response_from_state(&path, &answering)),
        None
    );
    block_on(ordering.put(
        &format!("acme/http01/{token}"),
        b"Xy-9_tokenABC.thumbprint".to_vec(),
        false,
    ))
    .unwrap();
    assert_eq!(
        block_on(http01_response_from_state(&path, &answering)).as_deref(),
        Some("Xy-9_tokenABC.thumbprint")
    );
    block_on(ordering.delete(&format!("acme/http01/{token}"))).unwrap();
    assert_eq!(
        block_on(http01_response_from_state(&path, &answering)),
        None
    );
}
