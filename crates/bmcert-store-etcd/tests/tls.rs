//! TLS and authentication: a one-member etcd of its own serving HTTPS with a certificate
//! from a test CA (`BMCERT_ETCD_BIN`). The store connects with that CA and refuses a server
//! it cannot verify; with etcd's authentication on, only the right user and password get in,
//! and the password shows in no output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

use bmcert_store::{block_on, Condition, RecordKey, Store, StoreError, UnavailableCause};
use bmcert_store_etcd::{EtcdOptions, EtcdStore, EtcdTls};
use bmcert_test::etcd::{issue_loopback, start_tls_member, test_ca};

fn options(port: u16, ca_pem: &str) -> EtcdOptions {
    let mut o = EtcdOptions::new(vec![format!("127.0.0.1:{port}")]);
    o.prefix = "/tls/".into();
    o.request_timeout = Duration::from_secs(2);
    o.tls = Some(EtcdTls {
        ca_pem: ca_pem.as_bytes().to_vec(),
        identity: None,
        domain_name: None,
    });
    o
}

#[test]
fn the_store_talks_to_etcd_over_verified_tls_with_authentication() {
    let Some(bin) = bmcert_test::peers::etcd_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = test_ca("bmcert etcd tls test CA");
    let (cert, key) = issue_loopback(&root, None, dir.path(), "server");
    let member = start_tls_member(bin.as_ref(), dir.path(), &cert, &key, None);
    let client = member.client_port();

    let store = EtcdStore::connect(options(client, &root.pem())).unwrap();
    let key = RecordKey::new("acme/terms").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let revision = loop {
        match block_on(store.put(&key, b"accepted", &Condition::none())) {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "etcd over TLS never answered: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let got = block_on(store.get(&key)).unwrap().unwrap();
    assert_eq!(
        (got.revision, got.secret_value()),
        (revision, &b"accepted"[..])
    );

    // Authentication: enable etcd's auth with a root user, then only the right password
    // gets in.
    enable_auth(client, &root.pem());
    let mut with_user = options(client, &root.pem());
    with_user.user = Some(("root".into(), "s3cret-pw".to_owned().into()));
    let authed = EtcdStore::connect(with_user.clone()).unwrap();
    assert_eq!(
        block_on(authed.get(&key)).unwrap().unwrap().secret_value(),
        b"accepted"
    );
    assert!(!format!("{with_user:?}").contains("s3cret-pw"));
    let mut wrong = with_user;
    wrong.user = Some(("root".into(), "wrong".to_owned().into()));
    match EtcdStore::connect(wrong) {
        Err(StoreError::Unavailable(u)) => {
            assert!(!u.detail.contains("wrong"), "{u}");
            assert_eq!(u.cause, UnavailableCause::CredentialsRefused, "{u}");
        }
        other => panic!("expected the wrong password refused, got {other:?}"),
    }
    let anonymous = EtcdStore::connect(options(client, &root.pem())).unwrap();
    match block_on(anonymous.get(&key)) {
        Err(StoreError::Unavailable(u)) => {
            assert_eq!(u.cause, UnavailableCause::PermissionDenied, "{u}")
        }
        other => panic!("expected the anonymous client refused, got {other:?}"),
    }

    // A client trusting another CA refuses the server: a typed error, nothing read.
    let other = test_ca("some other CA");
    let stranger = EtcdStore::connect(options(client, &other.pem())).unwrap();
    match block_on(stranger.get(&key)) {
        Err(StoreError::Unavailable(u)) => {
            assert!(u.detail.contains(&format!("127.0.0.1:{client}")), "{u}");
            assert_eq!(u.cause, UnavailableCause::TlsUntrusted, "{u}");
        }
        other => panic!("expected Unavailable from an unverified server, got {other:?}"),
    }
}

/// Creates the root user and enables authentication, with etcd's own client.
fn enable_auth(port: u16, ca_pem: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(ca_pem));
        let options = etcd_client::ConnectOptions::new().with_tls(tls);
        let mut c =
            etcd_client::Client::connect([format!("https://127.0.0.1:{port}")], Some(options))
                .await
                .unwrap();
        c.user_add("root", "s3cret-pw", None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.auth_enable().await.unwrap();
    });
}
