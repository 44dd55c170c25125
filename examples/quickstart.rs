//! The first command: the whole path of a certificate, on the embedded default, in seconds.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Needs no service and no network beyond loopback. It
//! 1. creates a directory store in a temporary folder (removed at the end);
//! 2. makes a local authority and certificates for the system URL `https://mail.example.test`
//!    and the domain `acme.test` (`https://webmail.acme.test`); the domain `beta.test`
//!    (`https://mail.beta.test`) has its own URL but no certificate;
//! 3. installs them through the checks of [`bmcert::CertManager`], and shows one bundle the
//!    checks refuse (a certificate for the wrong name) with its report;
//! 4. starts an HTTPS listener and implicit-TLS IMAP and SMTP listeners on 127.0.0.1
//!    ephemeral ports, with the resolvers of `bmcert-resolve`;
//! 5. connects to each name with a rustls client that trusts the local authority, and prints
//!    one table row per connection: name, service, certificate served, why, and whether the
//!    client's own check of the served certificate for that name passed.
//!
//! The client records its verdict instead of aborting, so the table can show what a
//! fallback means for a browser: `mail.beta.test` gets the system certificate, which does
//! not name it.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcert::resolve::load_all;
use bmcert::topology::{Target, Topology};
use bmcert::{block_on, CertManager};
use bmcert::{LiveIndex, ResolvesServerCertUsingSniWithFallback, ResolvesSystemCert, Service};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ResolvesServerCert;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};
use sha2::{Digest, Sha256};

type Error = Box<dyn std::error::Error + Send + Sync>;

const TOPOLOGY: &str = r#"
default_domain = "example.test"
[system]
url = "https://mail.example.test"
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
[[domain]]
name = "beta.test"
url = "https://mail.beta.test"
"#;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    if let Err(e) = run() {
        eprintln!("quickstart: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    // 1. A directory store in a temporary folder.
    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("store");
    let topology = Topology::from_toml_str(TOPOLOGY)?;
    let manager = CertManager::open_dir(&store_dir, topology.clone())?;
    println!("Store: {} (directory store)", store_dir.display());

    // 2. A local authority and two certificates.
    let ca = LocalCa::new()?;
    let system = ca.issue("mail.example.test")?;
    let acme = ca.issue("webmail.acme.test")?;
    let wrong = ca.issue("www.other.test")?;

    // 3. Install through the checks; one bundle is refused.
    let now = UnixTime::now();
    let root_pem = ca.root_pem.as_bytes();
    for (target, leaf) in [
        (Target::System, &system),
        ("domain:acme.test".parse()?, &acme),
    ] {
        let outcome = block_on(manager.install_files(
            &target,
            leaf.cert_pem.as_bytes(),
            leaf.key_pem.as_bytes(),
            Some(root_pem),
            now,
        ))?;
        let Some(installed) = &outcome.installed else {
            return Err(format!("{target} was refused:\n{}", outcome.report).into());
        };
        println!(
            "Installed {target}: version {}, sha256 {}",
            installed.version,
            prefix(&installed.meta.fingerprint.to_string())
        );
    }
    let beta: Target = "domain:beta.test".parse()?;
    let refused = block_on(manager.install_files(
        &beta,
        wrong.cert_pem.as_bytes(),
        wrong.key_pem.as_bytes(),
        Some(root_pem),
        now,
    ))?;
    if refused.is_installed() {
        return Err("the certificate for www.other.test was installed for beta.test".into());
    }
    let codes: Vec<&str> = refused
        .report
        .problems
        .iter()
        .map(|p| p.code.as_str())
        .collect();
    println!(
        "\nRefused {beta} (certificate for www.other.test), problem codes: {}",
        codes.join(", ")
    );
    for line in refused.report.to_string().lines() {
        println!("  | {line}");
    }

    // 4. HTTPS and mail listeners with the resolvers, loaded from the store.
    let index = Arc::new(LiveIndex::new(&topology));
    block_on(load_all(manager.store().as_ref(), &index))?;
    let https = listen(
        Arc::new(ResolvesServerCertUsingSniWithFallback::new(index.clone())),
        index.clone(),
        Service::Https,
    )?;
    let imap = listen(
        Arc::new(ResolvesSystemCert::new(index.clone(), Service::Imap)),
        index.clone(),
        Service::Imap,
    )?;
    let smtp = listen(
        Arc::new(ResolvesSystemCert::new(index.clone(), Service::Smtp)),
        index.clone(),
        Service::Smtp,
    )?;
    println!("\nListening: https={https} imap={imap} smtp={smtp} (implicit TLS)\n");

    // 5. Connect to each name and print the table.
    // A target whose stored certificate is damaged is listed as such; none is here.
    let installed: Vec<bmcert::TargetStatus> =
        block_on(manager.list(now))?.into_iter().flatten().collect();
    let served_by = |fingerprint: &str| {
        installed
            .iter()
            .find(|row| row.fingerprint == fingerprint)
            .map(|row| format!("{} ({})", row.target, row.names.join(",")))
            .unwrap_or_else(|| "not installed".to_owned())
    };
    println!(
        "{:<20} {:<8} {:<38} {:<10} {:<20} client check",
        "name", "service", "certificate served", "sha256", "why"
    );
    for (name, service, addr) in [
        ("mail.example.test", "https", https),
        ("webmail.acme.test", "https", https),
        ("mail.beta.test", "https", https),
        ("mail.example.test", "imap", imap),
        ("webmail.acme.test", "imap", imap),
        ("mail.example.test", "smtp", smtp),
    ] {
        let seen = connect(addr, name, &ca.root_der)?;
        println!(
            "{:<20} {:<8} {:<38} {:<10} {:<20} {}",
            name,
            service,
            served_by(&seen.fingerprint),
            prefix(&seen.fingerprint),
            seen.reason,
            seen.check
        );
    }
    println!(
        "\nA domain without a certificate falls back to the system one, which browsers refuse \
         for its name:\ninstall one for it (bmcert install --target domain:beta.test ...) or \
         enable Let's Encrypt.\nMail always gets the system certificate: mail clients must \
         use the system name.\nDone: the temporary store is removed."
    );
    Ok(())
}

fn prefix(fingerprint: &str) -> &str {
    fingerprint.get(..8).unwrap_or(fingerprint)
}

/// A root that signs the server certificates directly.
struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    root_der: CertificateDer<'static>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl LocalCa {
    fn new() -> Result<Self, Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "bmcert quickstart local authority");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            root_pem: cert.pem(),
            root_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    fn issue(&self, name: &str) -> Result<Leaf, Error> {
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(90);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Listens on an ephemeral loopback port; each connection gets one line
/// `* OK [bmcert] target=... reason=...` saying which certificate it got and why.
fn listen(
    resolver: Arc<dyn ResolvesServerCert>,
    index: Arc<LiveIndex>,
    service: Service,
) -> Result<SocketAddr, Error> {
    let config = Arc::new(
        ServerConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver),
    );
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    // The threads end with the process.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (config, index) = (config.clone(), index.clone());
            std::thread::spawn(move || {
                let _ = serve(stream, config, &index, service);
            });
        }
    });
    Ok(addr)
}

fn serve(
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

/// What the client saw on one connection.
struct Seen {
    fingerprint: String,
    reason: String,
    check: String,
}

fn connect(addr: SocketAddr, name: &str, root: &CertificateDer<'static>) -> Result<Seen, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(root.clone())?;
    let verifier = Arc::new(Recording {
        inner: WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()?,
        verdict: Mutex::new(None),
        leaf: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from(name.to_owned())?)?;
    let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut tls = StreamOwned::new(conn, sock);
    let mut line = String::new();
    BufReader::new(&mut tls).read_line(&mut line)?;
    let reason = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("reason="))
        .ok_or_else(|| format!("{name}: unexpected greeting {line:?}"))?
        .to_owned();
    let leaf = lock(&verifier.leaf).take().ok_or("no certificate served")?;
    let check = match lock(&verifier.verdict).take() {
        Some(Ok(())) => "ok".to_owned(),
        Some(Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ))) => "fails: does not name this host".to_owned(),
        Some(Err(e)) => format!("fails: {e}"),
        None => "not run".to_owned(),
    };
    Ok(Seen {
        fingerprint: hex::encode(Sha256::digest(&leaf)),
        reason,
        check,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The standard webpki check, recorded instead of enforced, so that the table can show
/// the served certificate even when it does not name the host (a fallback).
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    verdict: Mutex<Option<Result<(), rustls::Error>>>,
    leaf: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ());
        *lock(&self.verdict) = Some(verdict);
        *lock(&self.leaf) = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
