//! TLS and authentication: a one-member etcd of its own serving HTTPS with a certificate
//! from a test CA (`BMCERT_ETCD_BIN`). The store connects with that CA and refuses a server
//! it cannot verify; with etcd's authentication on, only the right user and password get in,
//! and the password shows in no output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bmcert_store::{block_on, Condition, RecordKey, Store, StoreError};
use bmcert_store_etcd::{EtcdOptions, EtcdStore, EtcdTls};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

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
    let Ok(bin) = std::env::var("BMCERT_ETCD_BIN") else {
        eprintln!("skipped: BMCERT_ETCD_BIN is not set (scripts/test-all sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = ca("bmcert etcd tls test CA");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &root).unwrap();
    std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let _member = Member(
        Command::new(bin)
            .args(["--name", "tls", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("tls={peer_url}")])
            .arg("--cert-file")
            .arg(dir.path().join("server.pem"))
            .arg("--key-file")
            .arg(dir.path().join("server.key"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

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
        Err(StoreError::Unavailable(message)) => assert!(!message.contains("wrong"), "{message}"),
        other => panic!("expected the wrong password refused, got {other:?}"),
    }
    let anonymous = EtcdStore::connect(options(client, &root.pem())).unwrap();
    assert!(matches!(
        block_on(anonymous.get(&key)),
        Err(StoreError::Unavailable(_))
    ));

    // A client trusting another CA refuses the server: a typed error, nothing read.
    let other = ca("some other CA");
    let stranger = EtcdStore::connect(options(client, &other.pem())).unwrap();
    match block_on(stranger.get(&key)) {
        Err(StoreError::Unavailable(message)) => {
            assert!(
                message.contains(&format!("127.0.0.1:{client}")),
                "{message}"
            )
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
