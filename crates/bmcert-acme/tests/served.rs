//! Issue 6's "served afterwards by the resolver" and "TLS-ALPN-01 through the resolver of the
//! resolution issue", against the real pebble of `scripts/test-all` and with the real
//! `openssl s_client` as the TLS client.
//!
//! The whole path of a server of the installation: the ACME client installs into a
//! [`DirStore`]; a [`FollowerThread`] keeps a [`LiveIndex`] in step with that store; a
//! loopback rustls listener resolves with [`ResolvesServerCertUsingSniWithFallback`] (wrapped
//! in [`ResolvesServerCertWithAcme`] for TLS-ALPN-01); `openssl s_client -servername NAME`
//! connects, and the SHA-256 of the certificate it was served (computed by
//! `openssl x509 -fingerprint -sha256`) is compared with the fingerprint of the bundle
//! installed in the store. A second order for the domain (a renewal) is served by the same
//! listener on the next handshake, with no restart.
//!
//! Without the `BMCERT_PEBBLE_*` variables (plain `cargo test`) each test prints why it is
//! skipped and returns. Pebble's validator connects to fixed ports, so the tests run one at a
//! time (`PORTS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bmcert_acme::{
    AcmeClient, AcmeConfig, ChallengeBoard, ChallengeKind, Http01Listener, IssueRequest,
    ResolvesServerCertWithAcme, StoreState, ACME_TLS_ALPN,
};
use bmcert_resolve::{FollowerThread, LiveIndex, ResolvesServerCertUsingSniWithFallback};
use bmcert_store::{DirStore, Fingerprint, Store};
use bmcert_test::peers::{unique_name, Pebble};
use bmcert_topology::{Target, Topology};
use rustls::server::ResolvesServerCert;
use tokio::io::AsyncWriteExt;

static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long one `openssl` process may run (`timeout`), and how long the follower may take to
/// bring an install into the index. Bounds for a stuck test, not speed claims.
const PROCESS_LIMIT: &str = "60";
const FOLLOW_LIMIT: Duration = Duration::from_secs(60);

fn tracing_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits (bounded) until nothing listens on `port` (a previous test's listener may still be
/// closing).
async fn wait_port_free(port: u16) {
    for _ in 0..200 {
        if std::net::TcpListener::bind(loopback(port)).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("port {port} stays busy");
}

/// One server of the installation: its store, the index following it, and the thread that
/// follows.
struct Server {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    topology: Topology,
    index: Arc<LiveIndex>,
    follower: Option<FollowerThread>,
}

impl Server {
    async fn start(topology: &Topology) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
        let index = Arc::new(LiveIndex::new(topology));
        // `start` loads with the store's own executor: off the runtime's thread.
        let follower = tokio::task::spawn_blocking({
            let (store, index) = (store.clone(), index.clone());
            move || FollowerThread::start(store, index).unwrap()
        })
        .await
        .unwrap();
        Self {
            _dir: dir,
            store,
            topology: topology.clone(),
            index,
            follower: Some(follower),
        }
    }

    /// An ACME client installing into this server's store (through the installation's
    /// gate) and publishing on `board`.
    fn acme(&self, config: AcmeConfig, board: ChallengeBoard) -> AcmeClient {
        let gate = bmcert::CertManager::new(self.store.clone(), self.topology.clone());
        AcmeClient::new(config, Arc::new(StoreState::new(self.store.clone())), board)
            .unwrap()
            .with_gate(Arc::new(gate))
    }

    /// The fingerprint (lower-case hex SHA-256 of the leaf) of `target`'s installed bundle,
    /// checked against the leaf's bytes.
    async fn installed_fingerprint(&self, target: &Target) -> String {
        let current = self
            .store
            .current(target)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("nothing installed for {target}"));
        let bundle = &current.bundle;
        assert_eq!(bundle.meta().source, bmcert_store::Source::Acme);
        assert_eq!(bundle.meta().fingerprint, Fingerprint::of(bundle.leaf()));
        bundle.meta().fingerprint.to_string()
    }

    /// Waits (bounded) until the follower has put `target`'s installed leaf into the index.
    async fn wait_followed(&self, target: &Target) {
        let current = self.store.current(target).await.unwrap().unwrap();
        let leaf = current.bundle.leaf().clone();
        let start = std::time::Instant::now();
        loop {
            if self
                .index
                .certificate(target)
                .is_some_and(|ck| ck.cert.first() == Some(&leaf))
            {
                return;
            }
            assert!(
                start.elapsed() < FOLLOW_LIMIT,
                "the follower did not bring {target}'s install into the index"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(f) = self.follower.take() {
            f.stop();
        }
    }
}

/// A loopback TLS listener resolving with `resolver`, offering `alpn`. Writes `hello` on a
/// normal connection and closes; closes an `acme-tls/1` connection after the handshake.
async fn serve(
    listener: tokio::net::TcpListener,
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: Vec<Vec<u8>>,
) -> tokio::task::JoinHandle<()> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let accepted =
                    tokio::time::timeout(Duration::from_secs(20), acceptor.accept(s)).await;
                if let Ok(Ok(mut tls)) = accepted {
                    if tls.get_ref().1.alpn_protocol() != Some(ACME_TLS_ALPN) {
                        let _ = tls.write_all(b"hello\n").await;
                    }
                    let _ = tls.shutdown().await;
                }
            });
        }
    })
}

/// `openssl s_client` to `127.0.0.1:port` asking for `name`, verifying against `root` and the
/// host name, run as a real process (bounded by `timeout`). `strict`: a failed verification
/// aborts the handshake (`-verify_return_error`); otherwise it is only reported. Extra
/// arguments after.
async fn s_client(port: u16, name: &str, root: &Path, strict: bool, extra: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", PROCESS_LIMIT, "openssl", "s_client"])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", name, "-verify_hostname", name])
        .arg("-CAfile")
        .arg(root)
        .args(extra)
        .stdin(Stdio::null());
    if strict {
        cmd.arg("-verify_return_error");
    }
    tokio::task::spawn_blocking(move || {
        cmd.output()
            .expect("run openssl (scripts/test-all installs it)")
    })
    .await
    .unwrap()
}

/// The SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` computes it (lower-case
/// hex, no colons), of the server certificate `s_client` printed.
fn served_fingerprint(s_client_stdout: &[u8]) -> String {
    let mut child = Command::new("timeout")
        .args([
            "-k",
            "5",
            PROCESS_LIMIT,
            "openssl",
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl x509");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(s_client_stdout).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl x509: {}", text(&out));
    let line = String::from_utf8(out.stdout).unwrap();
    // "sha256 Fingerprint=AB:CD:..." (OpenSSL 3) or "SHA256 Fingerprint=..." (1.1).
    let (_, hex) = line
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("no fingerprint in {line:?}"));
    hex.replace(':', "").to_ascii_lowercase()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that `openssl s_client` for `name` completed a verified handshake and was served
/// the certificate whose fingerprint is `expected`.
async fn assert_served(port: u16, name: &str, root: &Path, expected: &str) {
    let out = s_client(port, name, root, true, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openssl s_client for {name}: {}",
        text(&out)
    );
    assert!(
        stdout.contains("Verify return code: 0 (ok)"),
        "{name}: {}",
        text(&out)
    );
    assert_eq!(
        served_fingerprint(&out.stdout),
        expected,
        "{name} was served another certificate than the installed one"
    );
}

/// Pebble's current issuing root (from the client's configuration, read from management
/// `/roots/0`) as a PEM file for `openssl -CAfile`.
fn root_file(acme: &AcmeClient, dir: &Path) -> PathBuf {
    let path = dir.join("pebble-root.pem");
    let root = &acme.config().chain_roots[0];
    std::fs::write(
        &path,
        pem::encode(&pem::Pem::new("CERTIFICATE", root.to_vec())),
    )
    .unwrap();
    path
}

/// The system with its own URL, a domain whose site has its URL and two additional names,
/// every name new to this pebble.
fn topology() -> (Topology, String, Target, [String; 3]) {
    let system = unique_name("served-mail");
    let domain = unique_name("served-dom");
    let names = [
        unique_name("served-webmail"),
        unique_name("served-autoconfig"),
        unique_name("served-autodiscover"),
    ];
    let topology = Topology::from_toml_str(&format!(
        r#"
        default_domain = "example.test"
        [system]
        url = "https://{system}/"
        [[domain]]
        name = "{domain}"
        url = "https://{}/webmail"
        names = ["{}", "{}"]
        "#,
        names[0], names[1], names[2]
    ))
    .unwrap();
    let target: Target = format!("domain:{domain}").parse().unwrap();
    (topology, system, target, names)
}

#[tokio::test]
async fn a_domain_certificate_with_two_names_is_served_by_the_resolver_to_openssl() {
    let Some(p) = Pebble::from_env() else { return };
    tracing_init();
    let _ports = PORTS.lock().await;
    let (topology, system_host, domain, names) = topology();
    let server = Server::start(&topology).await;
    let board = ChallengeBoard::new();
    let acme = server.acme(p.acme_config(None).await, board.clone());
    wait_port_free(p.http01).await;
    let http = Http01Listener::bind(loopback(p.http01), Arc::new(board.clone()))
        .await
        .unwrap();
    acme.accept_terms().await.unwrap();

    // The domain: its URL host and its two additional names, in topology order.
    let issued = acme
        .issue(&topology, &IssueRequest::new(domain.clone()))
        .await
        .unwrap();
    let ordered: Vec<&str> = issued.names.iter().map(|n| n.as_str()).collect();
    assert_eq!(ordered, names.each_ref().map(String::as_str));
    // The system, so that the system URL (and every name no domain owns) has a certificate.
    acme.issue(&topology, &IssueRequest::new(Target::System))
        .await
        .unwrap();

    // Both installs reach the index through the store's change feed, not by a reload.
    server.wait_followed(&domain).await;
    server.wait_followed(&Target::System).await;
    let domain_fp = server.installed_fingerprint(&domain).await;
    let system_fp = server.installed_fingerprint(&Target::System).await;
    assert_ne!(domain_fp, system_fp);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let resolver = Arc::new(ResolvesServerCertUsingSniWithFallback::new(
        server.index.clone(),
    ));
    let serving = serve(listener, resolver, vec![b"http/1.1".to_vec()]).await;
    let dir = tempfile::tempdir().unwrap();
    let root = root_file(&acme, dir.path());

    for name in &names {
        assert_served(port, name, &root, &domain_fp).await;
        // The same name in another case is the same name (SNI compares case-insensitively).
        assert_served(port, &name.to_ascii_uppercase(), &root, &domain_fp).await;
    }
    assert_served(port, &system_host, &root, &system_fp).await;

    // A name nobody owns falls back to the system certificate, which does not name it:
    // openssl reports the host name mismatch, and what it was served is the system's.
    let stranger = unique_name("served-stranger");
    let out = s_client(port, &stranger, &root, false, &[]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verify return code: 62 (hostname mismatch)"),
        "{}",
        text(&out)
    );
    assert_eq!(served_fingerprint(&out.stdout), system_fp);

    // A renewal reaches the same listener, with no restart: the next handshake for each
    // name gets the new certificate; the system's stays.
    acme.issue(&topology, &IssueRequest::new(domain.clone()))
        .await
        .unwrap();
    http.stop().await;
    server.wait_followed(&domain).await;
    let renewed_fp = server.installed_fingerprint(&domain).await;
    assert_ne!(renewed_fp, domain_fp, "a new certificate was installed");
    for name in &names {
        assert_served(port, name, &root, &renewed_fp).await;
    }
    assert_served(port, &system_host, &root, &system_fp).await;
    serving.abort();
}

#[tokio::test]
async fn tls_alpn01_through_the_resolver_then_the_same_listener_serves_the_certificate() {
    let Some(p) = Pebble::from_env() else { return };
    tracing_init();
    let _ports = PORTS.lock().await;
    let (topology, _, domain, names) = topology();
    let server = Server::start(&topology).await;
    let board = ChallengeBoard::new();
    let mut config = p.acme_config(None).await;
    config.challenge = ChallengeKind::TlsAlpn01;
    let acme = server.acme(config, board.clone());

    // Nothing listens on the HTTP-01 port: binding it proves it is free right now, and this
    // test binds nothing there afterwards.
    wait_port_free(p.http01).await;
    // The installation's HTTPS listener on pebble's TLS-ALPN-01 port: the resolution crate's
    // resolver, wrapped so that `acme-tls/1` handshakes get the challenge certificate.
    wait_port_free(p.tls_alpn01_port()).await;
    let listener = tokio::net::TcpListener::bind(loopback(p.tls_alpn01_port()))
        .await
        .unwrap();
    let https = Arc::new(ResolvesServerCertUsingSniWithFallback::new(
        server.index.clone(),
    ));
    let resolver = Arc::new(ResolvesServerCertWithAcme::new(https, board.clone()));
    let serving = serve(
        listener,
        resolver,
        vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = root_file(&acme, dir.path());

    // Before the order the installation has no certificate: a normal client is refused.
    let before = s_client(p.tls_alpn01_port(), &names[0], &root, true, &[]).await;
    assert!(!before.status.success(), "{}", text(&before));
    assert!(
        !String::from_utf8_lossy(&before.stdout).contains("BEGIN CERTIFICATE"),
        "{}",
        text(&before)
    );

    acme.accept_terms().await.unwrap();
    let issued = acme
        .issue(&topology, &IssueRequest::new(domain.clone()))
        .await
        .unwrap();
    assert_eq!(issued.names.len(), 3);
    assert_eq!(board.pending(), (0, 0), "challenge certificates removed");

    // The same listener, unchanged, now serves the new certificate to normal clients.
    server.wait_followed(&domain).await;
    let installed = server.installed_fingerprint(&domain).await;
    for name in &names {
        assert_served(p.tls_alpn01_port(), name, &root, &installed).await;
    }
    // A validation handshake after the order gets nothing, never the normal certificate.
    let late = s_client(
        p.tls_alpn01_port(),
        &names[0],
        &root,
        false,
        &["-alpn", "acme-tls/1"],
    )
    .await;
    assert!(!late.status.success(), "{}", text(&late));
    assert!(
        !String::from_utf8_lossy(&late.stdout).contains("BEGIN CERTIFICATE"),
        "{}",
        text(&late)
    );
    serving.abort();
}
