//! Helpers shared by the etcd tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use bmcert_store_etcd::{EtcdOptions, EtcdStore};

/// The endpoints of the shared test cluster, or `None` (with a message) when the tests run
/// without `scripts/test-all`.
pub(crate) fn endpoints() -> Option<Vec<String>> {
    bmcert_test::peers::etcd_endpoints()
}

/// A store under `prefix` on `endpoints`.
pub(crate) fn connect(endpoints: &[String], prefix: &str) -> EtcdStore {
    let mut options = EtcdOptions::new(endpoints.to_vec());
    options.prefix = prefix.to_owned();
    EtcdStore::connect(options).expect("connect to etcd")
}

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bmcert_resolve::{FollowerThread, LiveIndex, ResolvesServerCertUsingSniWithFallback};
use bmcert_store::{
    block_on, Bundle, BundleMeta, Condition, Installed, KeyFormat, SecretKey, Source, Store,
    StoreError,
};
use bmcert_test::peers::free_port;
use bmcert_topology::{Target, Topology};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;

pub(crate) const NAME: &str = "mail.example.test";
const TOPOLOGY: &str = "[system]\nurl = \"https://mail.example.test\"\n";

/// A test CA and leaves for `mail.example.test`.
pub(crate) struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bmcert etcd test root");
        let root = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { root }
    }

    pub(crate) fn root_der(&self) -> CertificateDer<'static> {
        self.root.der().clone()
    }

    /// A fresh leaf (new key, new certificate) as a store bundle.
    pub(crate) fn bundle(&self) -> Bundle {
        let params = CertificateParams::new(vec![NAME.to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.root).unwrap();
        let leaf = cert.der().clone();
        // The store proves what it holds: the metadata is the certificate's.
        let meta = BundleMeta::for_leaf(Source::Files, OffsetDateTime::now_utc(), &leaf).unwrap();
        Bundle::new(
            vec![leaf],
            SecretKey::new(KeyFormat::Pkcs8, key.serialize_der()),
            meta,
        )
        .unwrap()
    }
}

/// One "server" of the installation: its own store client, live index following the store,
/// and a rustls listener on loopback serving from the index.
pub(crate) struct Server {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) index: Arc<LiveIndex>,
    pub(crate) addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    follower: Option<FollowerThread>,
}

impl Server {
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let index = Arc::new(LiveIndex::new(&Topology::from_toml_str(TOPOLOGY).unwrap()));
        let follower = FollowerThread::start(store.clone(), index.clone()).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(ResolvesServerCertUsingSniWithFallback::new(
                    index.clone(),
                ))),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut sock, _)) => {
                        sock.set_nonblocking(false).unwrap();
                        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        sock.set_write_timeout(Some(Duration::from_secs(2)))
                            .unwrap();
                        let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
                        while conn.is_handshaking() {
                            if conn.complete_io(&mut sock).is_err() {
                                break;
                            }
                        }
                        let _ = conn.complete_io(&mut sock);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            store,
            index,
            addr,
            stop,
            listener: Some(thread),
            follower: Some(follower),
        }
    }

    /// The leaf certificate the listener serves for `mail.example.test`, through a real TLS
    /// handshake (verified against the test root).
    pub(crate) fn served(&self, root: &CertificateDer<'static>) -> Option<CertificateDer<'static>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        let config = Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let mut conn =
            rustls::ClientConnection::new(config, ServerName::try_from(NAME).unwrap()).ok()?;
        let mut sock = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        sock.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).ok()?;
        }
        conn.peer_certificates()?.first().cloned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.listener.take() {
            let _ = t.join();
        }
        if let Some(f) = self.follower.take() {
            f.stop();
        }
    }
}

/// Waits (bounded by `limit`) until `server` serves `leaf`; returns how long it took.
pub(crate) fn wait_served(
    server: &Server,
    root: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
    start: Instant,
    limit: Duration,
) -> Duration {
    loop {
        if server.served(root).as_ref() == Some(leaf) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "server {} did not serve the new certificate within {limit:?}",
            server.addr
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Installs `bundle` for the system target, retrying (bounded) while the store is
/// unavailable (a member just died, the cluster is electing a leader).
pub(crate) fn install_retrying(store: &dyn Store, bundle: &Bundle, limit: Duration) -> Installed {
    let start = Instant::now();
    loop {
        match block_on(store.install(&Target::System, bundle, &Condition::none())) {
            Ok(i) => return i,
            Err(StoreError::Unavailable(e)) if start.elapsed() < limit => {
                eprintln!("install retried: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("install failed: {e}"),
        }
    }
}

/// An etcd cluster of its own (own ports, own data directory) for the tests that kill
/// members. Every member process is killed on drop.
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    client: Vec<u16>,
    peer: Vec<u16>,
    members: Vec<Option<Child>>,
}

impl Cluster {
    /// Starts `n` members, or `None` (with a message) without `BMCERT_ETCD_BIN`.
    pub(crate) fn start(n: usize) -> Option<Self> {
        let bin = bmcert_test::peers::etcd_bin()?;
        let mut cluster = Self {
            bin,
            dir: tempfile::tempdir().unwrap(),
            client: (0..n).map(|_| free_port()).collect(),
            peer: (0..n).map(|_| free_port()).collect(),
            members: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            cluster.start_member(i);
        }
        for i in 0..n {
            cluster.wait_healthy(i);
        }
        Some(cluster)
    }

    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.client
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    pub(crate) fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.client[i])
    }

    pub(crate) fn start_member(&mut self, i: usize) {
        assert!(self.members[i].is_none(), "member {i} already runs");
        let initial: Vec<String> = self
            .peer
            .iter()
            .enumerate()
            .map(|(j, p)| format!("m{j}=http://127.0.0.1:{p}"))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{i}.log")))
            .unwrap();
        let client = format!("http://127.0.0.1:{}", self.client[i]);
        let peer = format!("http://127.0.0.1:{}", self.peer[i]);
        let child = Command::new(&self.bin)
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("m{i}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                &format!("bmcert-{}", std::process::id()),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[i] = Some(child);
    }

    /// SIGKILLs member `i` and reaps it.
    pub(crate) fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (bounded) until member `i` answers `/health` with `true`.
    pub(crate) fn wait_healthy(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if health(self.client[i]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {i} did not become healthy; log in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn health(port: u16) -> bool {
    let Ok(mut sock) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    ) else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    if sock
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = sock.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }
}

/// The p-th percentile (0..=100) of sorted durations.
pub(crate) fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}
