//! Without a reachable cluster every operation fails with a typed, bounded error (no panic,
//! no hang), and a watch keeps waiting instead of ending. Needs no etcd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::TcpListener;
use std::time::Duration;

use bmcert_store::{block_on, Condition, RecordKey, Revision, Store, StoreError, UnavailableCause};
use bmcert_store_etcd::{parse_store_url, EtcdStore};
use bmcert_topology::Target;

#[test]
fn an_unreachable_cluster_gives_unavailable_errors() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = parse_store_url(&format!("etcd://127.0.0.1:{port}/x/")).unwrap();
    options.request_timeout = Duration::from_millis(500);
    options.connect_timeout = Duration::from_millis(200);
    let store = EtcdStore::connect(options).unwrap();
    let key = RecordKey::new("acme/terms").unwrap();
    let results = [
        block_on(store.revision()).map(|_| ()),
        block_on(store.current(&Target::System)).map(|_| ()),
        block_on(store.list()).map(|_| ()),
        block_on(store.get(&key)).map(|_| ()),
        block_on(store.put(&key, b"v", &Condition::none())).map(|_| ()),
        block_on(store.lock(&key, "me", Duration::from_secs(1))).map(|_| ()),
    ];
    for r in results {
        match r {
            Err(StoreError::Unavailable(u)) => {
                assert!(u.detail.contains(&format!("127.0.0.1:{port}")), "{u}");
                // Nothing listens there: unreachable, or (a dropped SYN) no answer in time.
                assert!(
                    matches!(
                        u.cause,
                        UnavailableCause::Unreachable | UnavailableCause::Timeout
                    ),
                    "{u:?}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    // The watch does not end while etcd is away: it retries in the background.
    let mut watch = block_on(store.watch(Revision::ZERO)).unwrap();
    assert!(watch.recv_timeout(Duration::from_millis(800)).is_none());
    assert!(!watch.is_closed());
    // No secret in the store's Debug output, only where it connects.
    assert!(format!("{store:?}").contains("/x/"));
}
