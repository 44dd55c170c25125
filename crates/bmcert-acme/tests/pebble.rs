//! Against the real pebble started by `scripts/test-all` (scripts/peers/pebble.sh).
//!
//! Without the `BMCERT_PEBBLE_*` variables (plain `cargo test`) each test prints why it is
//! skipped and returns. Pebble's validator connects to fixed ports, so the tests that listen on
//! them run one at a time (`PORTS`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcert_acme::*;
use bmcert_test::pebble::{bind_http01, PortWait};
use bmcert_test::peers::Pebble;
use bmcert_topology::{DomainName, DomainSite, Site, Target, Topology};
use rustls_pki_types::CertificateDer;

static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pebble(nonce_reject: bool) -> Option<Pebble> {
    if nonce_reject {
        Pebble::nonce_reject_from_env()
    } else {
        Pebble::from_env()
    }
}

async fn ports() -> tokio::sync::MutexGuard<'static, ()> {
    PORTS.lock().await
}

fn tracing_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A name nobody ordered before in this pebble's life (so no authorization is reused).
fn unique(label: &str) -> String {
    bmcert_test::peers::unique_name(label)
}

fn topology(url_host: &str, default_domain: Option<&str>) -> Topology {
    let mut t = Topology::new(Site::new(&format!("https://{url_host}"), &[]).unwrap());
    t.default_domain = default_domain.map(|d| DomainName::new(d).unwrap());
    t
}

async fn config(p: &Pebble) -> AcmeConfig {
    p.acme_config(None).await
}

async fn client(config: AcmeConfig, state: Arc<MemoryState>) -> AcmeClient {
    AcmeClient::new(config, state.clone(), ChallengeBoard::new())
        .unwrap()
        .with_gate(state)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn assert_no_tokens_left(client: &AcmeClient, state: &MemoryState) {
    assert_eq!(
        client.board().pending(),
        (0, 0),
        "challenges left on the board"
    );
    assert!(
        !state
            .record_keys()
            .iter()
            .any(|k| k.starts_with(keys::HTTP01_PREFIX)),
        "HTTP-01 tokens left in the store: {:?}",
        state.record_keys()
    );
}

fn pem_certs(pem_text: &str) -> Vec<CertificateDer<'static>> {
    AcmeConfig::certificates_from_pem(pem_text.as_bytes(), "chain").unwrap()
}

#[tokio::test]
async fn system_certificate_over_http01() {
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let state = MemoryState::new();
    let host = unique("system");
    let topo = topology(&host, Some("example.test"));
    let acme = client(config(&p).await, state.clone()).await;
    let _http = http01(p.http01, acme.board().clone()).await;
    let terms = acme.accept_terms().await.unwrap();
    assert!(terms.unwrap().starts_with("data:text/plain"));

    let issued = acme
        .issue(&topo, &IssueRequest::new(Target::System))
        .await
        .unwrap();
    assert_eq!(issued.names.len(), 1);
    assert_eq!(issued.names[0].as_str(), host);
    // What the CA sent, then the root the check completed it with (root_from_platform).
    let installed = state.installed_chain(&Target::System).unwrap();
    assert!(
        installed.starts_with(issued.chain_pem.as_str()),
        "{installed}"
    );
    assert_eq!(
        state
            .installed_secret_key_pem(&Target::System)
            .unwrap()
            .as_str(),
        issued.secret_key_pem()
    );
    // The chain validates against pebble's root from /roots/0 (the flow checked it; check
    // again here, independently of the client, with the root fetched by this test).
    let roots = acme.config().chain_roots.clone();
    let now = rustls_pki_types::UnixTime::now();
    let host_of_url = bmcert_topology::Host::parse(&host).unwrap();
    bmcert_bundle::BundleCheck::files(
        issued.chain_pem.as_bytes(),
        issued.secret_key_pem().as_bytes(),
        None,
    )
    .platform_roots(&roots)
    .check_for(host_of_url, now)
    .unwrap();
    // The CA sent leaf + pebble's current intermediate (management /intermediates/0).
    let chain = pem_certs(&issued.chain_pem);
    let intermediate = acme
        .fetch(&format!("{}/intermediates/0", p.management))
        .await
        .unwrap();
    let intermediate = AcmeConfig::certificates_from_pem(&intermediate, "intermediate").unwrap();
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    assert_eq!(chain[1], intermediate[0]);
    // The key never shows in Debug.
    let debug = format!("{issued:?}");
    assert!(
        !debug.contains("PRIVATE KEY") && debug.contains("elided"),
        "{debug}"
    );
    assert_no_tokens_left(&acme, &state);
}

#[tokio::test]
async fn domain_certificate_with_two_names_is_served_to_openssl() {
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let state = MemoryState::new();
    let domain = DomainName::new(&unique("dom")).unwrap();
    let web = unique("webmail");
    let (n1, n2) = (unique("autoconfig"), unique("autodiscover"));
    let mut topo = topology(&unique("mail"), Some("example.test"));
    topo.domains.push(DomainSite {
        name: domain.clone(),
        site: Some(Site::new(&format!("https://{web}/"), &[n1.as_str()]).unwrap()),
    });
    let target = Target::Domain(domain);
    let acme = client(config(&p).await, state.clone()).await;
    let _http = http01(p.http01, acme.board().clone()).await;
    acme.accept_terms().await.unwrap();
    let mut req = IssueRequest::new(target.clone());
    req.extra_names = vec![n2.to_uppercase(), n1.clone()];
    req.email = Some("admin@example.org".into());
    let issued = acme.issue(&topo, &req).await.unwrap();
    let names: Vec<&str> = issued.names.iter().map(|n| n.as_str()).collect();
    assert_eq!(names, [web.as_str(), n1.as_str(), n2.as_str()]);
    assert_no_tokens_left(&acme, &state);

    // Serve it with rustls (SNI resolver behind the ACME wrapper) and connect with openssl.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(issued.secret_key_pkcs8_der().to_vec().into());
    let ck =
        rustls::sign::CertifiedKey::from_der(pem_certs(&issued.chain_pem), key, &provider).unwrap();
    let mut sni = rustls::server::ResolvesServerCertUsingSni::new();
    for n in &names {
        sni.add(n, ck.clone()).unwrap();
    }
    let resolver = ResolvesServerCertWithAcme::new(Arc::new(sni), acme.board().clone());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    use tokio::io::AsyncWriteExt;
                    let _ = tls.write_all(b"hello\n").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let dir = tempfile_dir();
    let root_path = dir.join("root.pem");
    let root = acme.config().chain_roots[0].clone();
    std::fs::write(
        &root_path,
        pem::encode(&pem::Pem::new("CERTIFICATE", root.to_vec())),
    )
    .unwrap();
    for name in &names {
        let out = tokio::task::spawn_blocking({
            let root_path = root_path.clone();
            let name = name.to_string();
            move || {
                Command::new("openssl")
                    .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
                    .args(["-servername", &name, "-verify_hostname", &name])
                    .args([
                        "-CAfile",
                        root_path.to_str().unwrap(),
                        "-verify_return_error",
                    ])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "openssl for {name}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("Verify return code: 0 (ok)"),
            "{name}: {stdout}"
        );
    }
    serve.abort();
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(bmcert_test::peers::unique_label("bmcert-acme-test"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn tls_alpn01_with_nothing_on_the_http01_port() {
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    // Nothing listens on the HTTP-01 port: binding it proves it is free right now.
    wait_port_free(p.http01).await;
    let state = MemoryState::new();
    let mut config = config(&p).await;
    config.challenge = ChallengeKind::TlsAlpn01;
    let acme = client(config, state.clone()).await;
    let _tls = TlsAlpn01Listener::bind(loopback(p.tls_alpn01_port()), acme.board().clone())
        .await
        .unwrap();
    acme.accept_terms().await.unwrap();
    let host = unique("alpn");
    let issued = acme
        .issue(
            &topology(&host, Some("example.test")),
            &IssueRequest::new(Target::System),
        )
        .await
        .unwrap();
    assert_eq!(issued.names[0].as_str(), host);
    assert!(state.installed_chain(&Target::System).is_some());
    assert_no_tokens_left(&acme, &state);
}

#[tokio::test]
async fn terms_not_accepted_sends_nothing() {
    let Some(p) = pebble(false) else { return };
    let state = MemoryState::new();
    let acme = client(config(&p).await, state.clone()).await;
    let e = acme
        .issue(
            &topology(&unique("terms"), Some("example.test")),
            &IssueRequest::new(Target::System),
        )
        .await
        .unwrap_err();
    match &e {
        AcmeError::TermsNotAccepted { terms_url } => {
            assert!(terms_url.starts_with("data:text/plain"), "{terms_url}")
        }
        other => panic!("expected TermsNotAccepted, got {other}"),
    }
    assert!(e.to_string().contains("bmcert acme accept"), "{e}");
    assert_eq!(acme.posts_sent(), 0, "no account or order request was sent");
    assert!(state.record_keys().is_empty(), "{:?}", state.record_keys());
}

#[tokio::test]
async fn no_address_and_no_default_domain() {
    let Some(p) = pebble(false) else { return };
    let state = MemoryState::new();
    let acme = client(config(&p).await, state.clone()).await;
    acme.accept_terms().await.unwrap();
    let e = acme
        .issue(
            &topology(&unique("nocontact"), None),
            &IssueRequest::new(Target::System),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, AcmeError::NoContact), "{e}");
    assert!(e.to_string().contains("default_domain"), "{e}");
    assert_eq!(acme.posts_sent(), 0);
    assert_eq!(state.record_keys(), [keys::TERMS]);
}

#[tokio::test]
async fn account_is_reused_across_orders_and_restarts() {
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let state = MemoryState::new();
    let config = config(&p).await;
    let registrations = Arc::new(AtomicU32::new(0));
    let counter = registrations.clone();
    let acme = client(config.clone(), state.clone())
        .await
        .with_progress(move |p| {
            if matches!(p, Progress::AccountRegistered { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    let board = acme.board().clone();
    let _http = http01(p.http01, board.clone()).await;
    acme.accept_terms().await.unwrap();
    let topo = topology(&unique("reuse"), Some("example.test"));
    acme.issue(&topo, &IssueRequest::new(Target::System))
        .await
        .unwrap();
    let account = state_record(&state, keys::ACCOUNT).await;
    acme.issue(&topo, &IssueRequest::new(Target::System))
        .await
        .unwrap();
    assert_eq!(registrations.load(Ordering::Relaxed), 1);

    // A restart: a new client over the same store uses the stored account.
    let counter = registrations.clone();
    let again = AcmeClient::new(config, state.clone(), board)
        .unwrap()
        .with_gate(state.clone())
        .with_progress(move |p| {
            if matches!(p, Progress::AccountRegistered { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    again
        .issue(&topo, &IssueRequest::new(Target::System))
        .await
        .unwrap();
    assert_eq!(
        registrations.load(Ordering::Relaxed),
        1,
        "registered only once"
    );
    assert_eq!(state_record(&state, keys::ACCOUNT).await, account);
}

/// How long a test waits for pebble's HTTP-01 port: every 50 ms for 5 s (a previous test's
/// listener may still be closing when its runtime shuts down).
const PORT_WAIT: PortWait = PortWait::new(Duration::from_millis(50), Duration::from_secs(5));

/// The HTTP-01 responder on pebble's port.
async fn http01(port: u16, board: ChallengeBoard) -> Http01Listener {
    bind_http01(port, &board, PORT_WAIT).await
}

/// Waits until nothing listens on `port`.
async fn wait_port_free(port: u16) {
    bmcert_test::pebble::wait_port_free(port, PORT_WAIT).await;
}

async fn state_record(state: &MemoryState, key: &str) -> Vec<u8> {
    state.get(key).await.unwrap().expect("record")
}

#[tokio::test]
async fn an_account_the_server_does_not_know_is_registered_again() {
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let state = MemoryState::new();
    let config = config(&p).await;
    // Credentials for an account pebble never saw: a fresh key and a made-up account URL.
    let rng = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_b64 = base64url(&rng.serialize_der());
    let origin = p.directory.trim_end_matches("/dir");
    let record = format!(
        r#"{{"directory":"{dir}","contact":"x@example.test","credentials":{{"id":"{origin}/my-account/987654321","key_pkcs8":"{key_b64}","directory":"{dir}"}}}}"#,
        dir = p.directory
    );
    state
        .put(keys::ACCOUNT, record.clone().into_bytes(), true)
        .await
        .unwrap();
    let acme = client(config, state.clone()).await;
    let _http = http01(p.http01, acme.board().clone()).await;
    acme.accept_terms().await.unwrap();
    acme.issue(
        &topology(&unique("forgotten"), Some("example.test")),
        &IssueRequest::new(Target::System),
    )
    .await
    .unwrap();
    let stored = state_record(&state, keys::ACCOUNT).await;
    assert_ne!(stored, record.into_bytes(), "a new account was stored");
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn issues_with_half_the_nonces_rejected() {
    let Some(p) = pebble(true) else { return };
    tracing_init();
    let _ports = ports().await;
    let state = MemoryState::new();
    let acme = client(config(&p).await, state.clone()).await;
    let _http = http01(p.http01, acme.board().clone()).await;
    acme.accept_terms().await.unwrap();
    let topo = topology(&unique("nonce"), Some("example.test"));
    let mut req = IssueRequest::new(Target::System);
    req.extra_names = vec![unique("nonce2"), unique("nonce3")];
    acme.issue(&topo, &req).await.unwrap();
    assert!(state.installed_chain(&Target::System).is_some());
}

#[tokio::test]
async fn an_unanswered_challenge_fails_and_keeps_the_installed_certificate() {
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let state = MemoryState::new();
    let before_chain = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let before_key = "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n";
    state.preinstall(&Target::System, before_chain, before_key);
    let acme = client(config(&p).await, state.clone()).await;
    acme.accept_terms().await.unwrap();
    // The responder was stopped: nothing listens on the HTTP-01 port.
    let http = http01(p.http01, acme.board().clone()).await;
    http.stop().await;
    wait_port_free(p.http01).await;
    let host = unique("unanswered");
    let e = acme
        .issue(
            &topology(&host, Some("example.test")),
            &IssueRequest::new(Target::System),
        )
        .await
        .unwrap_err();
    let problem = e
        .problem()
        .unwrap_or_else(|| panic!("expected a CA problem, got {e}"));
    assert!(
        problem
            .subproblems
            .iter()
            .any(|s| s.identifier.as_deref() == Some(host.as_str())),
        "{problem:?}"
    );
    assert!(e.is_refusal());
    let text = e.to_string();
    assert!(text.contains(&host) && text.contains("port 80"), "{text}");
    assert_eq!(
        state.installed_chain(&Target::System).as_deref(),
        Some(before_chain)
    );
    assert_eq!(
        state
            .installed_secret_key_pem(&Target::System)
            .unwrap()
            .as_str(),
        before_key
    );
    assert_no_tokens_left(&acme, &state);
}

/// A pebble of this test's own (another port), killed once the order is placed.
#[tokio::test]
async fn pebble_stopped_mid_order_ends_in_a_typed_error_and_leaves_nothing() {
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let dir = std::path::Path::new(&p.ca_path)
        .parent()
        .unwrap()
        .to_path_buf();
    let work = tempfile_dir();
    let conf = work.join("pebble.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"pebble":{{"listenAddress":"127.0.0.1:14009","managementListenAddress":"127.0.0.1:15009","certificate":"{c}","privateKey":"{k}","httpPort":{h},"tlsPort":{t},"ocspResponderURL":"","externalAccountBindingRequired":false}}}}"#,
            c = dir.join("cert.pem").display(),
            k = dir.join("key.pem").display(),
            h = p.http01,
            t = p.tls_alpn01_port()
        ),
    )
    .unwrap();
    let child: Child = Command::new("pebble")
        .args([
            "-config",
            conf.to_str().unwrap(),
            "-dnsserver",
            "127.0.0.1:8053",
        ])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pebble");
    let child = Arc::new(Mutex::new(Some(child)));
    let own = Pebble {
        directory: "https://127.0.0.1:14009/dir".into(),
        management: "https://127.0.0.1:15009".into(),
        ..p
    };
    // Wait (bounded) for it to answer.
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect("127.0.0.1:14009").is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "own pebble did not start");
    let mut config = config(&own).await;
    config.retry.total = Duration::from_secs(3);
    config.poll.total = Duration::from_secs(20);
    let state = MemoryState::new();
    let killer = child.clone();
    let acme = client(config, state.clone()).await.with_progress(move |p| {
        if matches!(p, Progress::Ordered { .. }) {
            if let Some(mut c) = killer.lock().unwrap().take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    });
    let _http = http01(own.http01, acme.board().clone()).await;
    acme.accept_terms().await.unwrap();
    // A hang guard far above the budgets (3 s of retries, 20 s of polling), not a speed
    // claim: a client that kept waiting for the dead CA would never return.
    let e = tokio::time::timeout(
        Duration::from_secs(300),
        acme.issue(
            &topology(&unique("stopped"), Some("example.test")),
            &IssueRequest::new(Target::System),
        ),
    )
    .await
    .expect("the order never ended after pebble stopped")
    .unwrap_err();
    if let Some(mut c) = child.lock().unwrap().take() {
        let _ = c.kill();
        let _ = c.wait();
        panic!("pebble was never stopped: the order did not get placed ({e})");
    }
    assert!(
        matches!(e, AcmeError::Unreachable { .. } | AcmeError::Timeout { .. }),
        "{e}"
    );
    assert!(state.installed_chain(&Target::System).is_none());
    assert_no_tokens_left(&acme, &state);
    let _ = std::fs::remove_dir_all(work);
}

/// The real store: the bundle lands with source `acme`, the account record is 0600 and
/// survives reopening the store (a restart).
#[tokio::test]
async fn installs_into_the_directory_store_and_reuses_the_account_after_reopening() {
    use std::os::unix::fs::PermissionsExt;
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let config = config(&p).await;
    let topo = topology(&unique("store"), Some("example.test"));
    let registrations = Arc::new(AtomicU32::new(0));
    for round in 0..2 {
        let store: Arc<dyn bmcert_store::Store> =
            Arc::new(bmcert_store::DirStore::open(&root).unwrap());
        let counter = registrations.clone();
        let acme = AcmeClient::new(
            config.clone(),
            Arc::new(StoreState::new(store.clone())),
            ChallengeBoard::new(),
        )
        .unwrap()
        .with_gate(Arc::new(bmcert::CertManager::new(
            store.clone(),
            topo.clone(),
        )))
        .with_progress(move |p| {
            if matches!(p, Progress::AccountRegistered { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let http = http01(p.http01, acme.board().clone()).await;
        if round == 0 {
            acme.accept_terms().await.unwrap();
        }
        let issued = acme
            .issue(&topo, &IssueRequest::new(Target::System))
            .await
            .unwrap();
        http.stop().await;
        let current = store.current(&Target::System).await.unwrap().unwrap();
        let meta = current.bundle.meta();
        assert_eq!(meta.source, bmcert_store::Source::Acme);
        assert_eq!(meta.names, [issued.names[0].as_str()]);
        // What the CA sent, then the root the check completed it with.
        let sent = pem_certs(&issued.chain_pem);
        assert_eq!(&current.bundle.chain()[..sent.len()], sent.as_slice());
        assert_eq!(
            current.bundle.secret_key().secret_der(),
            issued.secret_key_pkcs8_der()
        );
        assert_eq!(
            store
                .keys(keys::HTTP01_PREFIX.trim_end_matches('/'))
                .await
                .unwrap(),
            Vec::<bmcert_store::RecordKey>::new(),
            "tokens removed"
        );
    }
    assert_eq!(registrations.load(Ordering::Relaxed), 1, "registered once");
    // Every file holding the account key is private.
    let mut found = 0;
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(9)
                .any(|w| w == b"key_pkcs8")
            {
                found += 1;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
            }
        }
    }
    assert!(found >= 1, "the account record is in the store directory");
}

#[tokio::test]
async fn rsa_keys_by_option() {
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let state = MemoryState::new();
    let mut config = config(&p).await;
    config.key = KeyKind::Rsa2048;
    let acme = client(config, state.clone()).await;
    let _http = http01(p.http01, acme.board().clone()).await;
    acme.accept_terms().await.unwrap();
    let issued = acme
        .issue(
            &topology(&unique("rsa"), Some("example.test")),
            &IssueRequest::new(Target::System),
        )
        .await
        .unwrap();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = provider
        .key_provider
        .load_private_key(rustls_pki_types::PrivateKeyDer::Pkcs8(
            issued.secret_key_pkcs8_der().to_vec().into(),
        ))
        .unwrap();
    assert_eq!(key.algorithm(), rustls::SignatureAlgorithm::RSA);
}

#[tokio::test]
async fn no_renewal_information_on_pebble_and_replaces_falls_back() {
    // Pebble 2.4 has no `renewalInfo` in its directory: the window is `None` (the lifetime
    // rule applies) and an order naming the certificate it replaces is placed without it.
    let Some(p) = pebble(false) else { return };
    tracing_init();
    let _ports = ports().await;
    let state = MemoryState::new();
    let host = unique("ari");
    let topo = topology(&host, Some("example.test"));
    let acme = client(config(&p).await, state.clone()).await;
    let _http = http01(p.http01, acme.board().clone()).await;
    acme.accept_terms().await.unwrap();
    let first = acme
        .issue(&topo, &IssueRequest::new(Target::System))
        .await
        .unwrap();
    let leaf = pem_certs(&first.chain_pem).remove(0);
    let id = ari_certificate_id(&leaf).unwrap();
    assert!(id.contains('.') && !id.contains('='), "{id}");
    assert_eq!(acme.renewal_window(&leaf).await.unwrap(), None);

    let second = acme
        .issue(&topo, &IssueRequest::new(Target::System).replacing(id))
        .await
        .unwrap();
    assert_ne!(second.chain_pem, first.chain_pem, "a new certificate");
    // What the CA sent, then the root the check completed it with (root_from_platform).
    let installed = state.installed_chain(&Target::System).unwrap();
    assert!(
        installed.starts_with(second.chain_pem.as_str()),
        "{installed}"
    );
    assert_no_tokens_left(&acme, &state);
}
