//! An HTTPS and IMAPS-style server whose certificates come from a bmcert store, chosen per
//! SNI by `bmcert-resolve` and followed live.
//!
//! ```text
//! cargo run -p bmcert-examples --example https_server -- \
//!     --store DIR --topology FILE --https 127.0.0.1:8443 --mail 127.0.0.1:9993
//! cargo run -p bmcert-examples --features etcd --example https_server -- \
//!     --store etcds://10.0.0.1:2379,10.0.0.2:2379/bluemind/ --etcd-cacert ca.pem \
//!     --topology FILE --https 127.0.0.1:8443 --mail 127.0.0.1:9993
//! ```
//!
//! The store is a [`StoreConfig`]: a directory, or (built with the `etcd` feature) the etcd
//! store of several servers with the same options as the `bmcert` command (`--etcd-cacert`,
//! `--etcd-cert`, `--etcd-key`, `--etcd-user` with the password in `BMCERT_ETCD_PASSWORD`),
//! validated and opened by the same library calls ([`StoreConfig::from_settings`],
//! [`bmcert::open_store`]). Certificates installed by `bmcert install --store etcd://...` on
//! any server are served here on the next handshake.
//!
//! Every HTTPS request is answered with one line saying which target's certificate served
//! it and why (`target=domain:acme.test reason=dedicated ... sha256=...`). The mail port
//! speaks implicit TLS, as IMAPS on 993 does, with the mail resolver (always the system
//! certificate), and writes an IMAP-style greeting `* OK [bmcert] target=system ...`.
//! Installs, renewals, rollbacks and disables made in the store by any process take effect
//! on the next handshake. Runs until killed. When both listeners are up it prints one line
//! `ready https=ADDR mail=ADDR` on standard output.
//!
//! The answer is computed when the request arrives, from the index as it is then; a change
//! landing between the handshake and the request can make it name the newer certificate.
//!
//! Plain threads and rustls's blocking `StreamOwned` are enough for an example; a service
//! would use its own runtime (tokio-rustls) with the same resolvers.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bmcert::{Installation, LiveIndex, Service, StoreConfig, StoreSettings, Topology};
use clap::Parser;
use rustls::server::ResolvesServerCert;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use sha2::{Digest, Sha256};

/// Serve HTTPS and implicit-TLS mail with certificates from a bmcert store.
#[derive(Parser, Debug)]
struct Args {
    /// The store: a directory, or `etcd://HOST:PORT[,...][/PREFIX]` / `etcds://...`
    /// (feature `etcd`).
    #[arg(long)]
    store: String,
    /// etcds://: the CA that signed the etcd servers' certificates (default: the system's).
    #[arg(long, value_name = "FILE")]
    etcd_cacert: Option<PathBuf>,
    /// etcds://: a client certificate for etcd, with --etcd-key.
    #[arg(long, value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// The etcd user (its password in BMCERT_ETCD_PASSWORD).
    #[arg(long, value_name = "USER")]
    etcd_user: Option<String>,
    /// The topology file (TOML).
    #[arg(long)]
    topology: PathBuf,
    /// Where to serve HTTPS.
    #[arg(long)]
    https: SocketAddr,
    /// Where to serve implicit-TLS mail (IMAPS style).
    #[arg(long)]
    mail: SocketAddr,
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(message) = run(Args::parse()) {
        eprintln!("https_server: {message}");
        std::process::exit(2);
    }
}

fn run(args: Args) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.topology).map_err(|e| {
        format!(
            "cannot read the topology file {}: {e}",
            args.topology.display()
        )
    })?;
    let topology =
        Topology::from_toml_str(&text).map_err(|e| format!("{}: {e}", args.topology.display()))?;
    let config = StoreConfig::from_settings(StoreSettings {
        store: args.store.clone(),
        etcd_cacert: args.etcd_cacert,
        etcd_cert: args.etcd_cert,
        etcd_key: args.etcd_key,
        etcd_user: args.etcd_user,
        etcd_password: std::env::var("BMCERT_ETCD_PASSWORD")
            .ok()
            .map(zeroize::Zeroizing::new),
    })
    .map_err(|e| format!("--store {}: {e}", args.store))?;
    let store = bmcert::open_store(&config)
        .map_err(|e| format!("cannot open the store {}: {e}", args.store))?;
    let installation = Installation::new(store, topology);
    let _follower = installation
        .follow()
        .map_err(|e| format!("cannot load the store: {e}"))?;
    let index = installation.index().clone();
    for failure in index.failures() {
        eprintln!("https_server: warning: {failure}");
    }

    let https_config = server_config(installation.https_resolver())?;
    let mail_config = server_config(installation.mail_resolver(Service::Imap))?;
    let https = TcpListener::bind(args.https)
        .map_err(|e| format!("cannot listen on {}: {e}", args.https))?;
    let mail =
        TcpListener::bind(args.mail).map_err(|e| format!("cannot listen on {}: {e}", args.mail))?;
    println!(
        "ready https={} mail={}",
        https.local_addr().map_err(|e| e.to_string())?,
        mail.local_addr().map_err(|e| e.to_string())?
    );
    std::io::stdout().flush().map_err(|e| e.to_string())?;

    let mail_index = index.clone();
    std::thread::spawn(move || {
        accept_loop(mail, mail_config, move |tls| serve_mail(tls, &mail_index))
    });
    accept_loop(https, https_config, move |tls| serve_https(tls, &index));
    Ok(())
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type Tls = StreamOwned<ServerConnection, TcpStream>;

fn accept_loop(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    serve: impl Fn(&mut Tls) -> std::io::Result<()> + Send + Sync + Clone + 'static,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (config, serve) = (config.clone(), serve.clone());
        std::thread::spawn(move || {
            let peer = stream.peer_addr().ok();
            let result = (|| {
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                let conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
                let mut tls = StreamOwned::new(conn, stream);
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                serve(&mut tls)?;
                tls.conn.send_close_notify();
                tls.flush()
            })();
            if let Err(e) = result {
                tracing::debug!(?peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Which target served this connection and why, with the served leaf's SHA-256.
fn describe(index: &LiveIndex, service: Service, tls: &Tls) -> String {
    let sni = tls.conn.server_name();
    let why = index.explain(service, sni);
    let fingerprint = index
        .resolve(service, sni)
        .and_then(|cert| {
            cert.cert
                .first()
                .map(|leaf| hex::encode(Sha256::digest(leaf)))
        })
        .unwrap_or_else(|| "none".into());
    format!("{why} sni={} sha256={fingerprint}", sni.unwrap_or("-"))
}

fn serve_https(tls: &mut Tls, index: &LiveIndex) -> std::io::Result<()> {
    // Read the request head (bounded), then answer and close.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let body = format!("{}\n", describe(index, Service::Https, tls));
    write!(
        tls,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.flush()
}

fn serve_mail(tls: &mut Tls, index: &LiveIndex) -> std::io::Result<()> {
    let greeting = format!(
        "* OK [bmcert] {} IMAP4rev1 example ready\r\n",
        describe(index, Service::Imap, tls)
    );
    tls.write_all(greeting.as_bytes())?;
    tls.flush()?;
    // Answer every command with BYE: this is a greeting demo, not an IMAP server.
    let mut line = String::new();
    let mut reader = BufReader::new(tls);
    if reader.read_line(&mut line)? > 0 {
        let tag = line.split_whitespace().next().unwrap_or("*");
        let tls = reader.into_inner();
        tls.write_all(b"* BYE [bmcert] example server\r\n")?;
        tls.write_all(format!("{tag} OK LOGOUT completed\r\n").as_bytes())?;
        tls.flush()?;
    }
    Ok(())
}
