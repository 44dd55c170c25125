//! The embedding guide, compiled and run: every line of every Rust snippet of
//! `docs/embedding.md`, in the guide's order, inside functions that give the snippets their
//! variables, driven by a `main` that does something real on the embedded default.
//!
//! ```text
//! cargo run --example embedding
//! ```
//!
//! `tests/embedding_guide.rs` checks that each code line of the guide's snippets appears here
//! in the same order, and runs this program and checks what it prints: change the guide and
//! this file together.
//!
//! What it does, on 127.0.0.1 and in a temporary folder (removed at the end):
//! 1. opens a topology file and a directory store (snippet 1);
//! 2. starts the store follower and the HTTPS and IMAP listeners (snippets 2 and 3), builds
//!    the renewer over the same store and a third listener whose resolver answers
//!    TLS-ALPN-01 around the HTTPS one (snippet 5);
//! 3. installs uploads for the system target through `CertManager` (snippet 4): one for the
//!    wrong name, refused with its report, then the right one, whose CA file lacks the root
//!    that the platform roots supply;
//! 4. waits until the follower applied it (no restart), connects to each listener with a
//!    rustls client that checks the served certificate, and prints what was served and why;
//! 5. with `BMCERT_ETCD_ENDPOINTS` (set by `scripts/peers/etcd.sh`): the same over an etcd
//!    store under a fresh key prefix;
//! 6. with `BMCERT_PEBBLE_DIRECTORY` (set by `scripts/peers/pebble.sh`): the renewer's
//!    lifecycle (snippet 5) against pebble: terms, start, a renewal by hand answered over
//!    HTTP-01 by this process, status, stop; then the pebble certificate is served on the
//!    next handshake.
//!
//! Without those variables steps 5 and 6 say they are skipped: the renewer is then built for
//! Let's Encrypt but never started, so nothing leaves the machine.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use bmcert::acme::{AcmeClient, Directory, IssueRequest};
use bmcert::renew::Renewer;
use bmcert::Fingerprint;
use bmcert::{InstallOutcome, LiveIndex};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection, StreamOwned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

const TOPOLOGY: &str = r#"
default_domain = "example.test"
[system]
url = "https://mail.example.test"
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
"#;

const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the follower may take to apply a change (it polls every 200 ms).
const APPLY_TIMEOUT: Duration = Duration::from_secs(15);

// ---- docs/embedding.md, 1. Open the store and the topology -----------------------------

use std::sync::Arc;

use bmcert::{DirStore, Store, Topology};

/// Snippet 1 on one server: the topology file and the directory store.
fn open_topology_and_dir_store(
    topology_file: &Path,
    store_dir: &Path,
) -> Result<(Topology, Arc<dyn Store>), Error> {
    // The service's configuration names them: topology_file = /etc/bmcert/topology.toml,
    // store_dir = /var/lib/bmcert/store, store_url = "etcd://10.0.0.1:2379,10.0.0.2:2379/bmcert/".
    let topology = Topology::from_toml_str(&std::fs::read_to_string(topology_file)?)?;

    // One server: the directory store (created with mode 0700 if missing).
    let store: Arc<dyn Store> = Arc::new(DirStore::open(store_dir)?);
    Ok((topology, store))
}

/// Snippet 1 on several servers: the etcd store.
fn open_etcd_store(store_url: &str) -> Result<Arc<dyn Store>, Error> {
    // Several servers: one etcd store shared by all (TLS and authentication in EtcdOptions).
    let options = bmcert::store_etcd::parse_store_url(store_url)?;
    let store: Arc<dyn Store> = Arc::new(bmcert::store_etcd::EtcdStore::connect(options)?);
    Ok(store)
}

// ---- docs/embedding.md, 2. A rustls HTTPS server --------------------------------------

use bmcert::{FollowerThread, Installation, ResolvesServerCertUsingSniWithFallback};
use rustls::ServerConfig;

/// What snippet 2 builds and a server process keeps.
struct HttpsServer {
    follower: FollowerThread,
    installation: Installation,
    index: Arc<LiveIndex>,
    provider: Arc<CryptoProvider>,
    https_resolver: Arc<ResolvesServerCertUsingSniWithFallback>,
    https_config: ServerConfig,
}

/// Snippet 2: the live index, its follower and the HTTPS configuration.
fn https_server(topology: Topology, store: Arc<dyn Store>) -> Result<HttpsServer, Error> {
    // One per process: it owns the topology and hands out what the servers need.
    let installation = Installation::new(store.clone(), topology.clone());
    let follower = installation.follow()?; // keep it alive
    for failure in installation.index().failures() {
        tracing::warn!(%failure, "a certificate could not be loaded; the previous one stays");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let https_resolver = installation.https_resolver();
    let https_config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(https_resolver.clone());
    // ... accept with tokio-rustls or rustls::StreamOwned as usual.
    // installation.index().explain(Service::Https, conn.server_name()): who served, and why.
    Ok(HttpsServer {
        follower,
        index: installation.index().clone(),
        installation,
        provider,
        https_resolver,
        https_config,
    })
}

// ---- docs/embedding.md, 3. An IMAP (or SMTP, POP3, ManageSieve) server -----------------

use bmcert::Service;

/// Snippet 3: the mail configuration over the same index.
fn imap_server_config(
    installation: &Installation,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig, Error> {
    let imap_resolver = installation.mail_resolver(Service::Imap);
    let imap_config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(imap_resolver);
    Ok(imap_config)
}

// ---- docs/embedding.md, 4. Installing certificates: CertManager ------------------------

use bmcert::Target;
use rustls_pki_types::UnixTime;

/// Snippet 4: what the admin API does with an upload for the system target.
async fn install_system(
    installation: Installation,
    platform_roots: Vec<CertificateDer<'static>>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
) -> Result<InstallOutcome, Error> {
    // cert_pem, key_pem, ca_pem: the uploaded files; platform_roots (optional): the system's
    // trust anchors (rustls-native-certs), to complete a chain whose CA file lacks the root.
    let installation = installation.with_platform_roots(platform_roots);
    let manager = installation.manager(); // every install goes through its gate
    let now = UnixTime::now();
    let outcome = manager
        .install_files(&Target::System, &cert_pem, &key_pem, Some(&ca_pem), now)
        .await?; // or bmcert::block_on(...) outside async code
    if let Some(installed) = &outcome.installed {
        // Every server serves it from the next handshake on.
        println!(
            "installed version {}, sha256 {}",
            installed.version, installed.meta.fingerprint
        );
    } else {
        // The report's Display is the administrator's text; serde gives the JSON with codes.
        println!("refused:\n{}", outcome.report);
    }
    Ok(outcome)
}

// ---- docs/embedding.md, 5. Let's Encrypt and the renewer's lifecycle -------------------

use bmcert::acme::AcmeConfig;
use bmcert::renew::{RenewerConfig, SmtpConfig, SmtpNotifier, SmtpSecurity};

/// Snippet 5: the expiry warnings' relay and the renewer with its ACME client.
fn renewer(
    installation: &Installation,
    acme_config: AcmeConfig,
) -> Result<(Renewer, Arc<AcmeClient>), Error> {
    let smtp = SmtpConfig::new(
        "smtp.example.test",
        587,
        SmtpSecurity::StartTls,
        "no-reply@example.test",
    );
    let notifier = Arc::new(SmtpNotifier::new(smtp)?);
    // acme_config: AcmeConfig::default() is Let's Encrypt, AcmeConfig::new(..) another CA.
    let acme = Arc::new(installation.acme_client(acme_config)?); // installs through the gate
    let renewer = installation.renewer(acme.clone(), notifier, RenewerConfig::default());
    Ok((renewer, acme))
}

/// Snippet 5, port 80: the HTTP-01 answer, as a whole HTTP/1.1 response.
async fn http01_answer(path: &str, installation: &Installation) -> String {
    // port 80: answer /.well-known/acme-challenge/TOKEN (Some(body) -> 200, None -> 404)
    let body = installation.http01_response(path).await;
    match body {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    }
}

/// Snippet 5, port 443: the HTTPS configuration that also answers TLS-ALPN-01.
fn acme_https_config(
    https_resolver: Arc<ResolvesServerCertUsingSniWithFallback>,
    installation: &Installation,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig, Error> {
    // port 443 (TLS-ALPN-01): wrap the HTTPS resolver, add b"acme-tls/1" to alpn_protocols
    let resolver = installation.tls_alpn01(https_resolver);
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"acme-tls/1".to_vec()];
    Ok(config)
}

/// Snippet 5: the renewer's lifecycle, from accepted terms to shutdown.
async fn renewer_lifecycle(
    renewer: &Renewer,
    acme: &AcmeClient,
    installation: &Installation,
) -> Result<Vec<bmcert::renew::RenewalStatus>, Error> {
    acme.accept_terms().await?; // once, when the administrator accepts the CA's terms
    let first = IssueRequest::new(Target::System); // activating Let's Encrypt for a target
    acme.issue(&installation.topology(), &first).await?; // (renew_now refuses uploads)
    let running = renewer.start(); // a task on the current tokio runtime
    renewer.renew_now(&Target::System).await?; // by hand, e.g. from the admin API
    let rows = renewer.status().await?; // what `bmcert status` prints
    running.stop().await; // at shutdown: waits for the task
    Ok(rows)
}

// ---- the program: the snippets above, run on 127.0.0.1 ---------------------------------

fn main() {
    if let Err(e) = run() {
        eprintln!("embedding: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let topology_file = dir.path().join("topology.toml");
    std::fs::write(&topology_file, TOPOLOGY)?;
    let store_dir = dir.path().join("store");

    // Snippet 1.
    let (topology, store) = open_topology_and_dir_store(&topology_file, &store_dir)?;
    println!("Store: {} (directory store)", store_dir.display());

    let pebble = Pebble::from_env()?;
    let acme_config = match &pebble {
        Some(pebble) => runtime.block_on(pebble.acme_config())?,
        None => AcmeConfig::default(),
    };
    let uploads = Uploads::new()?;
    let servers = serve_and_install(&runtime, &topology, &store, acme_config, &uploads)?;

    match std::env::var("BMCERT_ETCD_ENDPOINTS") {
        Ok(endpoints) if !endpoints.trim().is_empty() => {
            let unique = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos();
            let url = format!(
                "etcd://{}/bmcert-embedding-{}-{unique}/",
                endpoints.trim(),
                std::process::id()
            );
            let etcd = open_etcd_store(&url)?;
            println!("\nStore: {url} (etcd store)");
            let on_etcd =
                serve_and_install(&runtime, &topology, &etcd, AcmeConfig::default(), &uploads)?;
            on_etcd.server.follower.stop();
        }
        _ => println!(
            "\netcd: skipped (BMCERT_ETCD_ENDPOINTS is not set; see scripts/peers/etcd.sh)"
        ),
    }

    match &pebble {
        Some(pebble) => renew_with_pebble(&runtime, pebble, &servers)?,
        None => println!(
            "ACME: renewer built for {} but not started (BMCERT_PEBBLE_DIRECTORY is not set; \
             see scripts/peers/pebble.sh)",
            Directory::LetsEncrypt.url()
        ),
    }
    servers.server.follower.stop();
    println!("Done: the temporary store is removed.");
    Ok(())
}

/// The certificates the administrator uploads: one for the system URL, one for another name.
struct Uploads {
    system: Chain,
    wrong: Chain,
}

impl Uploads {
    fn new() -> Result<Self, Error> {
        Ok(Self {
            system: Chain::new("mail.example.test")?,
            wrong: Chain::new("www.other.test")?,
        })
    }
}

/// A local authority's root and intermediate, and a server certificate they issued.
struct Chain {
    root_der: CertificateDer<'static>,
    root_pem: String,
    intermediate_pem: String,
    leaf_pem: String,
    key_pem: String,
}

impl Chain {
    fn new(name: &str) -> Result<Self, Error> {
        let now = time::OffsetDateTime::now_utc();
        let authority = |cn: &str| {
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(3650);
            params
        };
        let root_key = KeyPair::generate()?;
        let root_params = authority("bmcert embedding example root");
        let root = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);
        let intermediate_key = KeyPair::generate()?;
        let intermediate_params = authority("bmcert embedding example intermediate");
        let intermediate = intermediate_params.signed_by(&intermediate_key, &root_issuer)?;
        let intermediate_issuer = Issuer::new(intermediate_params, intermediate_key);

        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(90);
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, &intermediate_issuer)?;
        Ok(Self {
            root_der: root.der().clone(),
            root_pem: root.pem(),
            intermediate_pem: intermediate.pem(),
            leaf_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What one server runs over a store.
struct Servers {
    store: Arc<dyn Store>,
    server: HttpsServer,
    renewer: Renewer,
    acme: Arc<AcmeClient>,
    https: SocketAddr,
    acme_https: SocketAddr,
}

/// Snippets 2, 3 and 5 to serve, snippet 4 to install, then a rustls client on each listener.
fn serve_and_install(
    runtime: &tokio::runtime::Runtime,
    topology: &Topology,
    store: &Arc<dyn Store>,
    acme_config: AcmeConfig,
    uploads: &Uploads,
) -> Result<Servers, Error> {
    let server = https_server(topology.clone(), store.clone())?;
    let loaded = server.index.snapshot().certificate_count();
    println!("Follower started: {loaded} certificates loaded, the store is followed live");
    let imap_config = imap_server_config(&server.installation, &server.provider)?;
    let (renewer, acme) = renewer(&server.installation, acme_config)?;
    let acme_tls_config = acme_https_config(
        server.https_resolver.clone(),
        &server.installation,
        &server.provider,
    )?;
    let https = listen(server.https_config.clone(), &server.index, Service::Https)?;
    let imap = listen(imap_config, &server.index, Service::Imap)?;
    let acme_https = listen(acme_tls_config, &server.index, Service::Https)?;
    println!("Listening: https={https} imap={imap} https+acme-tls/1={acme_https}");

    // An upload for the wrong name is refused with its report; nothing changes.
    println!("\nUpload for system: a certificate for www.other.test");
    let wrong = &uploads.wrong;
    let refused = runtime.block_on(install_system(
        server.installation.clone(),
        Vec::new(),
        wrong.leaf_pem.clone().into_bytes(),
        wrong.key_pem.clone().into_bytes(),
        format!("{}{}", wrong.intermediate_pem, wrong.root_pem).into_bytes(),
    ))?;
    if refused.is_installed() {
        return Err("the certificate for www.other.test was installed for the system".into());
    }
    println!("problem codes: {}", codes(&refused.report.problems));

    // The right one, with a CA file that holds the intermediate only.
    println!("\nUpload for system: mail.example.test, CA file without its root");
    let system = &uploads.system;
    let platform_roots = vec![system.root_der.clone()];
    let outcome = runtime.block_on(install_system(
        server.installation.clone(),
        platform_roots,
        system.leaf_pem.clone().into_bytes(),
        system.key_pem.clone().into_bytes(),
        system.intermediate_pem.clone().into_bytes(),
    ))?;
    let installed = outcome
        .installed
        .ok_or_else(|| format!("the system certificate was refused:\n{}", outcome.report))?;
    println!("warning codes: {}", codes(&outcome.report.warnings));

    let waited = wait_until_served(&server.index, installed.meta.fingerprint)?;
    println!(
        "The follower applied version {} within {} ms: no restart",
        installed.version,
        waited.as_millis()
    );

    // What each listener serves, checked by a client that trusts the system chain's root.
    let roots = [system.root_der.clone()];
    let expected = installed.meta.fingerprint.to_string();
    for (listener, addr, name) in [
        ("https", https, "mail.example.test"),
        ("imap", imap, "mail.example.test"),
        ("https+acme", acme_https, "mail.example.test"),
    ] {
        let seen = connect(addr, name, &roots)?;
        if seen.fingerprint != expected {
            return Err(format!(
                "{listener} served {} instead of {expected}",
                seen.fingerprint
            )
            .into());
        }
        println!(
            "served {listener:<10} {name:<18} sha256 {} client check ok, server says: {}",
            prefix(&seen.fingerprint),
            seen.greeting
        );
    }
    let why = server
        .index
        .explain(Service::Https, Some("webmail.acme.test"));
    println!("explain https webmail.acme.test: {why}");
    let answer = runtime.block_on(http01_answer(
        "/.well-known/acme-challenge/no-such-token",
        &server.installation,
    ));
    println!(
        "HTTP-01 GET /.well-known/acme-challenge/no-such-token: {}",
        answer.lines().next().unwrap_or_default()
    );
    Ok(Servers {
        store: store.clone(),
        server,
        renewer,
        acme,
        https,
        acme_https,
    })
}

fn codes(findings: &[bmcert::bundle::Finding]) -> String {
    let codes: Vec<&str> = findings.iter().map(|f| f.code.as_str()).collect();
    codes.join(", ")
}

fn prefix(fingerprint: &str) -> &str {
    fingerprint.get(..8).unwrap_or(fingerprint)
}

/// Waits (bounded) until the index serves the certificate `fingerprint` for the system.
fn wait_until_served(index: &LiveIndex, fingerprint: Fingerprint) -> Result<Duration, Error> {
    let start = Instant::now();
    loop {
        let served = index
            .certificate(&Target::System)
            .and_then(|key| key.cert.first().map(|leaf| Fingerprint::of(leaf.as_ref())));
        if served == Some(fingerprint) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > APPLY_TIMEOUT {
            return Err(format!(
                "the follower did not apply {fingerprint} within {APPLY_TIMEOUT:?}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where `scripts/peers/pebble.sh` runs pebble.
struct Pebble {
    directory: String,
    management: String,
    ca_pem: Vec<u8>,
    http01_port: u16,
}

impl Pebble {
    fn from_env() -> Result<Option<Self>, Error> {
        let Ok(directory) = std::env::var("BMCERT_PEBBLE_DIRECTORY") else {
            return Ok(None);
        };
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| format!("BMCERT_PEBBLE_DIRECTORY is set but {name} is not"))
        };
        let ca_file = var("BMCERT_PEBBLE_CA")?;
        Ok(Some(Self {
            directory,
            management: var("BMCERT_PEBBLE_MANAGEMENT")?,
            ca_pem: std::fs::read(&ca_file).map_err(|e| format!("{ca_file}: {e}"))?,
            http01_port: var("BMCERT_PEBBLE_HTTP01_PORT")?.parse()?,
        }))
    }

    /// pebble's directory, trusted through its test CA; issued chains lead to its root.
    async fn acme_config(&self) -> Result<AcmeConfig, Error> {
        let mut config = AcmeConfig::new(Directory::Url(self.directory.clone()));
        config.directory_roots = AcmeConfig::certificates_from_pem(&self.ca_pem, "pebble CA")?;
        config.poll.total = Duration::from_secs(60);
        // A client over a scratch store, only to read pebble's management API.
        let scratch = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(DirStore::open(scratch.path())?);
        let probe = bmcert::acme::client_for_store(store, config.clone())?;
        let root = probe.fetch(&format!("{}/roots/0", self.management)).await?;
        config.chain_roots = AcmeConfig::certificates_from_pem(&root, "pebble root")?;
        Ok(config)
    }
}

/// Snippet 5's lifecycle against pebble, then a client that trusts pebble's root.
fn renew_with_pebble(
    runtime: &tokio::runtime::Runtime,
    pebble: &Pebble,
    servers: &Servers,
) -> Result<(), Error> {
    println!("\nACME: pebble at {}", pebble.directory);
    let rows = runtime.block_on(async {
        let http01 = serve_http01(pebble.http01_port, servers.server.installation.clone()).await?;
        let rows = renewer_lifecycle(
            &servers.renewer,
            &servers.acme,
            &servers.server.installation,
        )
        .await;
        http01.abort();
        rows
    })?;
    for row in &rows {
        println!(
            "status: {} source={} names={} not_after={} next_renewal={}",
            row.target,
            row.source,
            row.names.join(","),
            row.not_after,
            row.next_renewal.as_deref().unwrap_or("-")
        );
    }
    let installed = runtime
        .block_on(servers.store.current(&Target::System))?
        .ok_or("no system certificate after the renewal")?;
    let fingerprint = installed.bundle.meta().fingerprint;
    let waited = wait_until_served(&servers.server.index, fingerprint)?;
    println!(
        "The follower applied the renewed certificate within {} ms",
        waited.as_millis()
    );
    let roots = &servers.acme.config().chain_roots;
    for (listener, addr) in [("https", servers.https), ("https+acme", servers.acme_https)] {
        let seen = connect(addr, "mail.example.test", roots)?;
        if seen.fingerprint != fingerprint.to_string() {
            return Err(format!("{listener} still serves {}", seen.fingerprint).into());
        }
        println!(
            "served {listener:<10} {:<18} sha256 {} client check ok (pebble's root), server says: {}",
            "mail.example.test",
            prefix(&seen.fingerprint),
            seen.greeting
        );
    }
    Ok(())
}

/// Answers pebble's HTTP-01 requests on `port` with [`http01_answer`] until aborted.
async fn serve_http01(
    port: u16,
    installation: Installation,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            // Another test of the run may still hold the port for a moment.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(format!("HTTP-01 listener on {addr}: {e}").into()),
        }
    };
    Ok(tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let installation = installation.clone();
            tokio::spawn(async move {
                let answer = async {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        let n = stream.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        head.extend_from_slice(&buf[..n]);
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    stream
                        .write_all(http01_answer(path, &installation).await.as_bytes())
                        .await?;
                    stream.shutdown().await
                };
                let _ = tokio::time::timeout(IO_TIMEOUT, answer).await;
            });
        }
    }))
}

/// Listens on an ephemeral loopback port; each connection gets one line
/// `* OK [bmcert] target=... reason=...` saying which certificate it got and why.
fn listen(
    config: ServerConfig,
    index: &Arc<LiveIndex>,
    service: Service,
) -> Result<SocketAddr, Error> {
    let config = Arc::new(config);
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let index = index.clone();
    // The threads end with the process.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (config, index) = (config.clone(), index.clone());
            std::thread::spawn(move || {
                let _ = greet(stream, config, &index, service);
            });
        }
    });
    Ok(addr)
}

fn greet(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    index: &LiveIndex,
    service: Service,
) -> Result<(), Error> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut tls = StreamOwned::new(ServerConnection::new(config)?, stream);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let why = index.explain(service, tls.conn.server_name());
    write!(tls, "* OK [bmcert] {why}\r\n")?;
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(())
}

/// What a client saw on one connection.
struct Seen {
    fingerprint: String,
    greeting: String,
}

/// Connects with SNI `name`, checks the served certificate against `roots` (webpki, as a
/// browser or mail client would) and reads the greeting.
fn connect(addr: SocketAddr, name: &str, roots: &[CertificateDer<'static>]) -> Result<Seen, Error> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from(name.to_owned())?)?;
    let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut tls = StreamOwned::new(conn, sock);
    let mut line = String::new();
    BufReader::new(&mut tls)
        .read_line(&mut line)
        .map_err(|e| format!("{name} on {addr}: {e}"))?;
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no certificate served")?;
    Ok(Seen {
        fingerprint: Fingerprint::of(leaf.as_ref()).to_string(),
        greeting: line.trim_end().to_owned(),
    })
}
