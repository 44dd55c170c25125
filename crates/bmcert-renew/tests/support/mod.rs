//! Helpers of the issue-7 checks against real peers (`outage.rs`, `events.rs`,
//! `smtp_auth.rs`, `system_clock.rs`): pebble's ACME configuration with a short retry budget,
//! a switchable loopback TCP proxy in front of pebble, a rustls server over `bmcert-resolve`
//! probed with the real `openssl s_client`, a `tracing` layer that keeps every event's fields,
//! certificates with chosen validity. `auth_smtpd.py` next to this file is the aiosmtpd with
//! authentication that `smtp_auth.rs` starts.
//!
//! The peers themselves are found through `bmcert-test`'s `peers` and `pebble` modules (one
//! skip policy: `SKIPPED: <variable> is not set ...` on standard error, then the test returns).
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bmcert_acme::{AcmeConfig, ChallengeBoard, Directory, Http01Listener, RetryBudget};
use bmcert_store::Store;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

// --- pebble through bmcert-test's peers (scripts/peers/pebble.sh, smtp.sh) -------------------

pub use bmcert_test::pebble::store_client_counting_orders as counting_client;
pub use bmcert_test::peers::{unique_name as unique, Pebble, Smtp};

/// A short HTTP retry budget: an unreachable directory fails within a second.
pub const FAST: RetryBudget = RetryBudget {
    first_delay: Duration::from_millis(50),
    max_delay: Duration::from_millis(200),
    total: Duration::from_millis(600),
};

/// `host:port` of pebble's ACME server.
pub fn pebble_addr(pebble: &Pebble) -> SocketAddr {
    let rest = pebble.directory.strip_prefix("https://").unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// Pebble's configuration (its HTTPS CA trusted, chains checked against its current root,
/// the [`FAST`] retry budget) for `directory`: pebble's own, through a proxy, or a dead one.
pub async fn acme_config(pebble: &Pebble, directory: &str) -> AcmeConfig {
    let mut config = pebble.acme_config(Some(FAST)).await;
    config.directory = Directory::Url(directory.to_owned());
    config
}

/// The HTTP-01 listener on pebble's validation port (waits while another test holds it).
pub async fn http01(port: u16, board: &ChallengeBoard) -> Http01Listener {
    for _ in 0..300 {
        if let Ok(l) = Http01Listener::bind(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Arc::new(board.clone()),
        )
        .await
        {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("HTTP-01 port {port} stays busy for 30 s");
}

/// A loopback port nobody listens on (bound, read, released): connections are refused.
pub fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (polling every 50 ms, at most `limit`) until `f` holds; returns whether it did.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- a switchable loopback TCP proxy ----------------------------------------------------------

/// A TCP proxy on a loopback port in front of `upstream`. [`Proxy::off`] closes the listening
/// socket and cuts every relayed connection, so connecting is refused (as with a stopped
/// server); [`Proxy::on`] listens on the same port again. The server behind it (pebble) keeps
/// running with its state and its root.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    accept: Option<JoinHandle<()>>,
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<AtomicU32>,
}

impl Proxy {
    /// A proxy on a free loopback port, switched on.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = Self {
            addr: listener.local_addr().unwrap(),
            upstream,
            accept: None,
            relays: Arc::default(),
            accepted: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted and relayed so far.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (upstream, relays, accepted) =
            (self.upstream, self.relays.clone(), self.accepted.clone());
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                relays.lock().unwrap().push(relay);
            }
        }));
    }

    /// Closes the port (connections refused) and cuts the relayed connections.
    pub async fn off(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await; // the listener is dropped with the task
        }
        let relays: Vec<_> = self.relays.lock().unwrap().drain(..).collect();
        for r in relays {
            r.abort();
            let _ = r.await;
        }
        let e = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .expect_err("the proxy is off: connecting must fail");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }

    /// Listens on the same port again.
    pub async fn on(&mut self) {
        assert!(self.accept.is_none(), "the proxy is already on");
        let mut bound = None;
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listener = bound.unwrap_or_else(|| panic!("cannot listen on {} again", self.addr));
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for r in self.relays.lock().unwrap().drain(..) {
            r.abort();
        }
    }
}

// --- a rustls server over bmcert-resolve, and the real openssl client --------------------------

/// A loopback HTTPS-like listener whose certificate is chosen by
/// `ResolvesServerCertUsingSniWithFallback` over `index`. Writes `hello` and closes.
pub struct TlsServer {
    pub port: u16,
    task: JoinHandle<()>,
}

impl TlsServer {
    pub async fn start(index: Arc<bmcert_resolve::LiveIndex>) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(
                bmcert_resolve::ResolvesServerCertUsingSniWithFallback::new(index),
            ));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let accepted =
                        tokio::time::timeout(Duration::from_secs(20), acceptor.accept(s)).await;
                    if let Ok(Ok(mut tls)) = accepted {
                        let _ = tls.write_all(b"hello\n").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Self { port, task }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What `openssl s_client` was served.
#[derive(Debug)]
pub struct Served {
    /// SHA-256 (hex) of the leaf certificate the server sent.
    pub leaf_sha256: String,
    /// `Verify return code: 0 (ok)` was printed (only meaningful with `ca_file`).
    pub verified: bool,
    /// Everything it printed.
    pub output: String,
}

/// Runs the real `openssl s_client` against `127.0.0.1:port` with SNI `name`; with `ca_file`,
/// it also verifies the chain and that the leaf names `name`. Bounded to 20 seconds.
pub async fn s_client(port: u16, name: &str, ca_file: Option<&Path>) -> Served {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", name, "-showcerts"]);
    if let Some(ca) = ca_file {
        cmd.arg("-CAfile").arg(ca).args(["-verify_hostname", name]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .spawn()
            .expect("run openssl (scripts/test-all installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("openssl s_client did not finish within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = text
        .find(begin)
        .unwrap_or_else(|| panic!("openssl s_client got no certificate:\n{text}"));
    let body = &text[start + begin.len()..];
    let end = body.find("-----END CERTIFICATE-----").unwrap();
    let b64: String = body[..end].split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Served {
        leaf_sha256: sha256_hex(&der),
        verified: text.contains("Verify return code: 0 (ok)"),
        output: text,
    }
}

pub fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// --- tracing events with their fields --------------------------------------------------------

/// One `tracing` event: its level and every field (`message` included) as text (`%` fields
/// with `Display`, `?` fields with `Debug`).
#[derive(Clone, Debug)]
pub struct Event {
    pub level: tracing::Level,
    pub fields: BTreeMap<String, String>,
}

impl Event {
    pub fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// A `tracing` layer keeping every event (install with [`Events::capture`]), next to the text
/// a `fmt` subscriber writes for them.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>, Text);

/// The capturing writer of the `fmt` layer.
#[derive(Clone, Default)]
pub struct Text(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Text {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Text {
    type Writer = Text;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Events {
    /// Captures the events of this thread until the guard is dropped (the renewer's futures
    /// run on this thread under `#[tokio::test]`'s current-thread runtime).
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        use tracing_subscriber::layer::SubscriberExt as _;
        let text = tracing_subscriber::fmt::layer()
            .with_writer(self.1.clone())
            .with_ansi(false);
        tracing::subscriber::set_default(
            tracing_subscriber::registry().with(self.clone()).with(text),
        )
    }

    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// What the `fmt` layer wrote.
    pub fn text(&self) -> String {
        String::from_utf8(self.1 .0.lock().unwrap().clone()).unwrap()
    }

    /// The events whose message is `message`.
    pub fn with_message(&self, message: &str) -> Vec<Event> {
        self.all()
            .into_iter()
            .filter(|e| e.message() == message)
            .collect()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Event {
            level: *event.metadata().level(),
            fields,
        });
    }
}

// --- certificates with chosen validity ---------------------------------------------------------

/// A self-signed bundle for `names`, valid from `not_before` to `not_after`, as if `source`
/// had installed it (with an authority key identifier, as CA-issued certificates have).
pub use bmcert_test::renewal::self_signed_bundle_with_aki as bundle;

/// Installs `b` for `target`, unconditionally.
pub async fn install(
    store: &dyn Store,
    target: &bmcert_topology::Target,
    b: &bmcert_store::Bundle,
) {
    store
        .install(target, b, &bmcert_store::Condition::none())
        .await
        .unwrap();
}

// --- a child process killed on drop ------------------------------------------------------------

pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
