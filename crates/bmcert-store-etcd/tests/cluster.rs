//! Failures of etcd itself, on a cluster this test starts (own ports and data directory,
//! `BMCERT_ETCD_BIN`), so the shared cluster other tests use is never touched. One test
//! function runs the scenarios in sequence:
//!
//! 1. three servers serve what is installed through any of them;
//! 2. one member killed: installs and watches go on; brought back, it catches up;
//! 3. the whole cluster stopped: every server keeps serving its last certificate and store
//!    operations fail with `Unavailable`; restarted: the watches resume by themselves and a
//!    change made then reaches every server;
//! 4. compaction: a watch from a compacted revision with changes meanwhile reports
//!    `Compacted`; without changes under the prefix it resumes silently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_store::{block_on, Condition, RecordKey, Revision, Store, StoreError};
use bmcert_topology::Target;
use common::{install_retrying, wait_served, Cluster, Pki, Server};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn servers_ride_out_member_and_cluster_failures() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    let endpoints = cluster.endpoints();
    let servers: Vec<Server> = (0..3)
        .map(|_| {
            let store: Arc<dyn Store> = Arc::new(common::connect(&endpoints, "/bmcert/"));
            Server::start(store)
        })
        .collect();
    let pki = Pki::new();
    let root = pki.root_der();
    let check_all = |leaf: &rustls::pki_types::CertificateDer<'static>, start: Instant| {
        for s in &servers {
            wait_served(s, &root, leaf, start, LIMIT);
        }
    };

    // 1. Normal operation.
    let first = pki.bundle();
    install_retrying(&*servers[0].store, &first, LIMIT);
    check_all(first.leaf(), Instant::now());

    // 2. Kill one member: installs and watches go on.
    cluster.kill_member(0);
    for via in &servers {
        let bundle = pki.bundle();
        let start = Instant::now();
        install_retrying(&*via.store, &bundle, LIMIT);
        check_all(bundle.leaf(), start);
    }
    let while_down = pki.bundle();
    let installed = install_retrying(&*servers[1].store, &while_down, LIMIT);
    check_all(while_down.leaf(), Instant::now());
    // Bring it back: it catches up (a client talking to that member alone reads the latest).
    cluster.start_member(0);
    cluster.wait_healthy(0);
    let only_m0 = common::connect(&[cluster.endpoint(0)], "/bmcert/");
    let deadline = Instant::now() + LIMIT;
    loop {
        match block_on(only_m0.current(&Target::System)) {
            Ok(Some(current)) if current.revision == installed.revision => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "member 0 did not catch up: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    assert_eq!(
        block_on(only_m0.current(&Target::System))
            .unwrap()
            .unwrap()
            .bundle,
        while_down
    );

    // 3. Stop the whole cluster: everyone keeps serving; operations fail with a typed error.
    for i in 0..3 {
        cluster.kill_member(i);
    }
    std::thread::sleep(Duration::from_millis(500));
    for s in &servers {
        assert_eq!(s.served(&root).as_ref(), Some(while_down.leaf()));
    }
    match block_on(
        servers[2]
            .store
            .install(&Target::System, &pki.bundle(), &Condition::none()),
    ) {
        Err(StoreError::Unavailable(message)) => println!("while etcd is down: {message}"),
        other => panic!("expected Unavailable while etcd is down, got {other:?}"),
    }
    std::thread::sleep(Duration::from_secs(2));
    for s in &servers {
        assert_eq!(s.served(&root).as_ref(), Some(while_down.leaf()));
    }
    // Restart it: the servers' watches reconnect by themselves, and a change reaches all.
    for i in 0..3 {
        cluster.start_member(i);
    }
    for i in 0..3 {
        cluster.wait_healthy(i);
    }
    let after_restart = pki.bundle();
    let start = Instant::now();
    install_retrying(&*servers[2].store, &after_restart, LIMIT);
    check_all(after_restart.leaf(), start);
    println!(
        "after a full cluster restart the change reached all servers in {:?}",
        start.elapsed()
    );

    // 4. Compaction.
    let store = common::connect(&endpoints, "/compaction/");
    let key = RecordKey::new("warning/system").unwrap();
    let before = block_on(store.revision()).unwrap();
    let written = block_on(store.put(&key, b"sent", &Condition::none())).unwrap();
    block_on(store.put(&key, b"sent twice", &Condition::none())).unwrap();
    compact(&cluster, written.0 + 1);
    let mut watch = block_on(store.watch(before)).unwrap();
    match watch.recv_timeout(LIMIT) {
        Some(Err(StoreError::Compacted { requested, oldest })) => {
            assert_eq!(requested, before);
            assert!(oldest.0 > written.0, "{oldest}");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // A prefix without changes since the compacted revision resumes without an error.
    let quiet = common::connect(&endpoints, "/quiet/");
    let quiet_key = RecordKey::new("acme/terms").unwrap();
    let mut watch = block_on(quiet.watch(Revision(1))).unwrap();
    // The watch meets the compaction, sees nothing under its prefix changed, and goes on.
    assert!(watch.recv_timeout(Duration::from_secs(1)).is_none());
    assert!(!watch.is_closed());
    let put = block_on(quiet.put(&quiet_key, b"accepted", &Condition::none())).unwrap();
    match watch.recv_timeout(LIMIT) {
        Some(Ok(change)) => assert_eq!(change.revision, put),
        other => panic!("expected the put, got {other:?}"),
    }
}

/// Compacts the cluster's history up to `revision` with etcd's own client.
fn compact(cluster: &Cluster, revision: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = etcd_client::Client::connect(cluster.endpoints(), None)
            .await
            .unwrap();
        client
            .compact(i64::try_from(revision).unwrap(), None)
            .await
            .unwrap();
    });
}
