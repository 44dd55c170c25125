//! `bmcert acme terms|accept|issue`: Let's Encrypt through ACME.
//!
//! Exit status: 0 done (issued and installed); 1 refused by the CA or by the checks (the
//! reason is printed); 2 usage or I/O error, unreachable CA, or terms not accepted yet.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bmcert::acme::{
    client_for_store, AcmeClient, AcmeConfig, AcmeError, ChallengeKind, Directory, Http01Listener,
    IssueRequest, KeyKind, TlsAlpn01Listener,
};
use bmcert::topology::Target;
use clap::{Args, Subcommand, ValueEnum};

use crate::input::{self, UsageError};

/// Let's Encrypt through ACME: terms, account and certificates.
#[derive(Args, Debug)]
pub(crate) struct AcmeArgs {
    #[command(subcommand)]
    command: AcmeCommand,
}

#[derive(Subcommand, Debug)]
enum AcmeCommand {
    /// Print the URL of the CA's terms of service.
    Terms(CaArgs),
    /// Record that the administrator accepted the CA's terms of service.
    Accept(CaArgs),
    /// Order a certificate for a target, answer its challenges and install it.
    Issue(IssueArgs),
}

#[derive(Args, Debug)]
struct CaArgs {
    #[command(flatten)]
    store: crate::store_arg::StoreSpec,
    /// The ACME directory URL (Let's Encrypt production by default; `staging` for
    /// Let's Encrypt's staging).
    #[arg(long, value_name = "URL")]
    directory: Option<String>,
    /// A PEM file with the root that signed the directory's HTTPS certificate (test CAs).
    #[arg(long, value_name = "FILE")]
    directory_ca: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KeyArg {
    EcdsaP256,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

#[derive(Args, Debug)]
struct IssueArgs {
    #[command(flatten)]
    ca: CaArgs,
    /// The topology file (external URLs, default domain, additional names).
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// `system` or `domain:NAME`.
    #[arg(long)]
    target: String,
    /// The account's contact address (default: no-reply@<default domain>).
    #[arg(long, value_name = "ADDR")]
    email: Option<String>,
    /// An additional DNS name for the certificate (repeatable).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Answer HTTP-01 on this address while the order runs (like certbot --standalone).
    #[arg(long, value_name = "ADDR")]
    http01_listen: Option<SocketAddr>,
    /// Answer TLS-ALPN-01 on this address instead of HTTP-01 (port 80 closed).
    #[arg(long, value_name = "ADDR", conflicts_with = "http01_listen")]
    tls_alpn01_listen: Option<SocketAddr>,
    /// A PEM file with the roots the issued chain must lead to (default: the system's).
    #[arg(long, value_name = "FILE")]
    chain_ca: Option<PathBuf>,
    /// The certificate key type.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    key: KeyArg,
}

pub(crate) fn run(args: AcmeArgs) -> Result<ExitCode, UsageError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(crate::sigpipe::block_in_this_thread)
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        match args.command {
            AcmeCommand::Terms(ca) => {
                let client = client(&ca, AcmeConfig::default())?;
                match client.terms_url().await {
                    Ok(Some(url)) => println!("{url}"),
                    Ok(None) => println!("the CA's directory names no terms of service"),
                    Err(e) => return Ok(fail(&e)),
                }
                Ok(ExitCode::SUCCESS)
            }
            AcmeCommand::Accept(ca) => {
                let client = client(&ca, AcmeConfig::default())?;
                match client.accept_terms().await {
                    Ok(url) => {
                        println!(
                            "accepted the terms of service: {}",
                            url.as_deref().unwrap_or("(none named)")
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Ok(fail(&e)),
                }
            }
            AcmeCommand::Issue(issue) => run_issue(issue).await,
        }
    })
}

fn client(ca: &CaArgs, mut config: AcmeConfig) -> Result<AcmeClient, UsageError> {
    config.directory = match ca.directory.as_deref() {
        None => Directory::LetsEncrypt,
        Some("staging") => Directory::LetsEncryptStaging,
        Some(url) if url.starts_with("https://") => Directory::Url(url.to_owned()),
        Some(other) => {
            return Err(UsageError(format!(
                "--directory `{other}` is not an https:// URL (or `staging`)"
            )))
        }
    };
    if let Some(path) = &ca.directory_ca {
        config.directory_roots = input::read_certs(path, "directory CA file")?;
    }
    let store = crate::store_arg::open_store(&ca.store)?;
    client_for_store(store, config).map_err(|e| UsageError(e.to_string()))
}

async fn run_issue(args: IssueArgs) -> Result<ExitCode, UsageError> {
    let topology = input::read_topology(&args.topology)?;
    let target: Target = args
        .target
        .parse()
        .map_err(|e| UsageError(format!("--target: {e}")))?;
    let mut config = AcmeConfig {
        key: match args.key {
            KeyArg::EcdsaP256 => KeyKind::EcdsaP256,
            KeyArg::Rsa2048 => KeyKind::Rsa2048,
            KeyArg::Rsa3072 => KeyKind::Rsa3072,
            KeyArg::Rsa4096 => KeyKind::Rsa4096,
        },
        ..AcmeConfig::default()
    };
    if args.tls_alpn01_listen.is_some() {
        config.challenge = ChallengeKind::TlsAlpn01;
    }
    if let Some(path) = &args.chain_ca {
        config.chain_roots = input::read_certs(path, "chain CA file")?;
    }
    // Issued certificates go through the installation's gate, checked against `topology`.
    let gate = std::sync::Arc::new(bmcert::CertManager::new(
        crate::store_arg::open_store(&args.ca.store)?,
        topology.clone(),
    ));
    let client = client(&args.ca, config)?
        .with_gate(gate)
        .with_progress(|p| println!("acme: {p}"));
    let _http = match args.http01_listen {
        Some(addr) => Some(
            Http01Listener::bind(addr, std::sync::Arc::new(client.board().clone()))
                .await
                .map_err(|e| UsageError(e.to_string()))?,
        ),
        None => None,
    };
    let _tls = match args.tls_alpn01_listen {
        Some(addr) => Some(
            TlsAlpn01Listener::bind(addr, client.board().clone())
                .await
                .map_err(|e| UsageError(e.to_string()))?,
        ),
        None => None,
    };
    let request = IssueRequest {
        target: target.clone(),
        email: args.email,
        extra_names: args.names,
        replaces: None,
    };
    match client.issue(&topology, &request).await {
        Ok(issued) => {
            let names: Vec<&str> = issued.names.iter().map(|n| n.as_str()).collect();
            let until = time::OffsetDateTime::from_unix_timestamp(issued.not_after)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| issued.not_after.to_string());
            println!(
                "issued and installed for {target}: {} (valid until {until})",
                names.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&e)),
    }
}

fn fail(e: &AcmeError) -> ExitCode {
    eprintln!("bmcert: {e}");
    ExitCode::from(if e.is_refusal() { 1 } else { 2 })
}
