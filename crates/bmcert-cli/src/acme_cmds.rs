//! `bmcert acme terms|accept|profiles|issue|revoke|rollover|contact`: Let's Encrypt through
//! ACME.
//!
//! Exit status: 0 done (issued and installed); 1 refused by the CA or by the checks, or the
//! terms not accepted yet (the reason is printed); 2 usage or I/O error (no usable contact
//! address included), or an unreachable CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bmcert::acme::{
    client_for_store, AcmeClient, AcmeConfig, AcmeError, ChallengeKind, Directory, Http01Listener,
    IssueRequest, KeyKind, ProfileChoice, ProxySetting, ProxyUrl, RevokeReason, TlsAlpn01Listener,
};
use bmcert::store::Source;
use bmcert::topology::Target;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::input::{self, UsageError};
use crate::output::{print_json, refused};
use crate::settings::{Origin, Setting, Settings};

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
    /// List the certificate profiles the CA's directory advertises.
    Profiles(CaArgs),
    /// Replace the ACME account's key (the account and its certificates stay).
    Rollover(CaArgs),
    /// Change the ACME account's contact address (at the CA and in the store).
    Contact(ContactArgs),
    /// Order a certificate for a target, answer its challenges and install it.
    Issue(IssueArgs),
    /// Revoke a target's current certificate at the CA, then (ACME certificates) order and
    /// install its replacement.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
struct ContactArgs {
    #[command(flatten)]
    ca: CaArgs,
    /// The new contact address of the account.
    #[arg(long, value_name = "ADDR")]
    email: String,
}

#[derive(Args, Debug)]
struct RevokeArgs {
    #[command(flatten)]
    ca: CaArgs,
    #[command(flatten)]
    chain: ChainArgs,
    /// `system` or `domain:NAME`.
    #[arg(long)]
    target: String,
    /// Why (RFC 5280): unspecified, keyCompromise, affiliationChanged, superseded or
    /// cessationOfOperation.
    #[arg(long, value_name = "REASON")]
    reason: String,
    /// Answer HTTP-01 on this address while the replacement is ordered.
    #[arg(long, value_name = "ADDR")]
    http01_listen: Option<SocketAddr>,
    /// Answer TLS-ALPN-01 on this address instead of HTTP-01.
    #[arg(long, value_name = "ADDR", conflicts_with = "http01_listen")]
    tls_alpn01_listen: Option<SocketAddr>,
}

/// Which ACME CA: these options win over `[acme]` in the configuration file.
#[derive(Args)]
pub(crate) struct CaArgs {
    /// The ACME directory URL (Let's Encrypt production by default; `staging` for
    /// Let's Encrypt's staging). [config: acme.directory]
    #[arg(long, value_name = "URL")]
    directory: Option<String>,
    /// A PEM file with the root that signed the directory's HTTPS certificate (test CAs).
    /// [config: acme.directory_ca]
    #[arg(long, value_name = "FILE")]
    directory_ca: Option<PathBuf>,
    /// The HTTP proxy every request to the CA goes through (HTTP CONNECT):
    /// http://[user:password@]host:port, or `direct` to ignore HTTPS_PROXY. Default: the
    /// HTTPS_PROXY/https_proxy (or ALL_PROXY) environment variable; NO_PROXY/no_proxy exempts
    /// hosts either way. [config: acme.proxy]
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// External Account Binding key id, for a CA that requires it to create the account
    /// (commercial ACME CAs; not Let's Encrypt). [config: acme.eab_kid]
    #[arg(long, value_name = "ID", requires = "eab_hmac_key_file")]
    eab_kid: Option<String>,
    /// A file holding the External Account Binding HMAC key (base64url, as the CA gives
    /// it). [config: acme.eab_hmac_key_file]
    #[arg(long, value_name = "FILE", requires = "eab_kid")]
    eab_hmac_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for CaArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The proxy URL may hold a password.
        f.debug_struct("CaArgs")
            .field("directory", &self.directory)
            .field("directory_ca", &self.directory_ca)
            .field("proxy", &self.proxy.as_ref().map(|_| "(set)"))
            .field("eab_kid", &self.eab_kid)
            .field("eab_hmac_key_file", &self.eab_hmac_key_file)
            .finish()
    }
}

/// The roots the issued chain must lead to.
#[derive(Args, Debug)]
pub(crate) struct ChainArgs {
    /// A PEM file with the roots the issued chain must lead to (default: the system's).
    /// [config: acme.chain_ca]
    #[arg(long, value_name = "FILE")]
    chain_ca: Option<PathBuf>,
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
    #[command(flatten)]
    chain: ChainArgs,
    /// `system` or `domain:NAME`.
    #[arg(long)]
    target: String,
    /// The account's contact address (default: acme.contact in the configuration file,
    /// else no-reply@<default domain>).
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
    /// The certificate key type.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    key: KeyArg,
    /// Order this certificate profile when the CA offers it, else the CA's default (with a
    /// warning); `default` for the CA's default. Kept for the target's renewals (default:
    /// the profile kept by an earlier issue).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Order this certificate profile, refused (exit 1, nothing ordered) when the CA does
    /// not offer it. Kept for the target's renewals.
    #[arg(long, value_name = "NAME", conflicts_with = "profile")]
    require_profile: Option<String>,
}

/// The option if given, else the configuration file's setting.
fn flag_or<T: Clone>(
    flag: Option<&T>,
    name: &'static str,
    file: Option<&Setting<T>>,
) -> Option<Setting<T>> {
    match flag {
        Some(v) => Some(Setting::new(v.clone(), Origin::Flag(name))),
        None => file.cloned(),
    }
}

impl CaArgs {
    /// The configuration with the directory and its roots from the options or the file.
    pub(crate) fn config(
        &self,
        settings: &Settings,
        mut config: AcmeConfig,
    ) -> Result<AcmeConfig, UsageError> {
        let directory = flag_or(
            self.directory.as_ref(),
            "--directory",
            settings.acme.directory.as_ref(),
        );
        config.directory = match &directory {
            None => Directory::LetsEncrypt,
            Some(d) if d.value == "staging" => Directory::LetsEncryptStaging,
            Some(d) if d.value.starts_with("https://") => Directory::Url(d.value.clone()),
            Some(d) => {
                return Err(UsageError(format!(
                    "{} `{}` is not an https:// URL (or `staging`)",
                    d.origin, d.value
                )))
            }
        };
        let ca = flag_or(
            self.directory_ca.as_ref(),
            "--directory-ca",
            settings.acme.directory_ca.as_ref(),
        );
        if let Some(ca) = ca {
            config.directory_roots =
                input::read_certs(&ca.value, &format!("directory CA file ({})", ca.origin))?;
        }
        let proxy = match &self.proxy {
            Some(url) => Some(Setting::new(
                zeroize::Zeroizing::new(url.clone()),
                Origin::Flag("--proxy"),
            )),
            None => settings.acme.proxy.clone(),
        };
        config.proxy = match proxy {
            None => ProxySetting::Environment,
            Some(p) if p.value.trim() == "direct" => ProxySetting::Direct,
            Some(p) => ProxySetting::Url(
                ProxyUrl::parse(&p.value, &p.origin.to_string())
                    .map_err(|e| UsageError(e.to_string()))?,
            ),
        };
        let kid = flag_or(
            self.eab_kid.as_ref(),
            "--eab-kid",
            settings.acme.eab_kid.as_ref(),
        );
        let key_file = flag_or(
            self.eab_hmac_key_file.as_ref(),
            "--eab-hmac-key-file",
            settings.acme.eab_hmac_key_file.as_ref(),
        );
        config.external_account = match (kid, key_file) {
            (None, None) => None,
            (Some(kid), Some(file)) => {
                let what = format!("External Account Binding HMAC key file ({})", file.origin);
                let bytes = zeroize::Zeroizing::new(input::read(&file.value, &what)?);
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| UsageError(format!("the {what} is not text (base64url)")))?;
                Some(
                    bmcert::acme::ExternalAccountBinding::new(&kid.value, text)
                        .map_err(|e| UsageError(format!("{e} ({}, {what})", kid.origin)))?,
                )
            }
            (Some(kid), None) => {
                return Err(UsageError(format!(
                    "{} gives an External Account Binding key id but no HMAC key file (--eab-hmac-key-file or acme.eab_hmac_key_file)",
                    kid.origin
                )))
            }
            (None, Some(file)) => {
                return Err(UsageError(format!(
                    "{} gives an External Account Binding HMAC key file but no key id (--eab-kid or acme.eab_kid)",
                    file.origin
                )))
            }
        };
        Ok(config)
    }
}

impl ChainArgs {
    /// Sets the chain roots from the option or the file.
    pub(crate) fn apply(
        &self,
        settings: &Settings,
        config: &mut AcmeConfig,
    ) -> Result<(), UsageError> {
        let chain = flag_or(
            self.chain_ca.as_ref(),
            "--chain-ca",
            settings.acme.chain_ca.as_ref(),
        );
        if let Some(chain) = chain {
            config.chain_roots =
                input::read_certs(&chain.value, &format!("chain CA file ({})", chain.origin))?;
        }
        Ok(())
    }
}

/// The async runtime of the ACME and renewal commands.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, UsageError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(crate::sigpipe::block_in_this_thread)
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))
}

/// SIGINT and SIGTERM, listened for while an order runs: the command then abandons the order
/// and removes the challenge records it published before it exits, instead of dying with
/// them left in the store (every server of the installation would keep answering them).
pub(crate) struct Interrupt {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupt {
    /// Starts listening (before the order starts, so that no signal is missed).
    pub(crate) fn listen() -> Result<Self, UsageError> {
        use tokio::signal::unix::{signal, SignalKind};
        let err = |e: std::io::Error| UsageError(format!("cannot handle signals: {e}"));
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(err)?,
            term: signal(SignalKind::terminate()).map_err(err)?,
        })
    }

    /// The next SIGINT or SIGTERM, as the exit status a shell gives a command killed by it
    /// (130, 143) and its name.
    pub(crate) async fn recv(&mut self) -> (u8, &'static str) {
        tokio::select! {
            _ = self.int.recv() => (130, "SIGINT"),
            _ = self.term.recv() => (143, "SIGTERM"),
        }
    }
}

/// Runs `work` (an order, or a renewal that orders) until it ends or a SIGINT/SIGTERM
/// arrives. On a signal the work's future is dropped (its order abandoned), the challenge
/// records it published are removed through `client`, and the exit status is returned as
/// `Err`, the message on stderr.
pub(crate) async fn unless_interrupted<T>(
    client: &AcmeClient,
    work: impl std::future::Future<Output = T>,
) -> Result<Result<T, ExitCode>, UsageError> {
    let mut interrupt = Interrupt::listen()?;
    let signal = {
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => return Ok(Ok(done)),
            signal = interrupt.recv() => signal,
        }
        // `work` is dropped here: the order's records move to the client's abandoned list.
    };
    let (code, name) = signal;
    match client.sweep_challenges().await {
        Ok(n) => eprintln!(
            "bmcert: {name}: the order was abandoned; {n} challenge record(s) removed from the store"
        ),
        Err(e) => eprintln!(
            "bmcert: {name}: the order was abandoned, but its challenge records could not be removed ({e}); the next order of any server sweeps them"
        ),
    }
    Ok(Err(ExitCode::from(code)))
}

pub(crate) fn run(args: AcmeArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    runtime()?.block_on(async move {
        match args.command {
            AcmeCommand::Terms(ca) => {
                let client = client(&ca, settings, AcmeConfig::default())?;
                let url = match client.terms_url().await {
                    Ok(url) => url,
                    Err(e) => return fail(e, settings.json),
                };
                if settings.json {
                    print_json(&json!({ "terms_url": url }))?;
                } else {
                    match url {
                        Some(url) => println!("{url}"),
                        None => println!("the CA's directory names no terms of service"),
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            AcmeCommand::Accept(ca) => {
                let client = client(&ca, settings, AcmeConfig::default())?;
                match client.accept_terms().await {
                    Ok(url) => {
                        if settings.json {
                            print_json(&json!({ "done": true, "terms_url": url }))?;
                        } else {
                            println!(
                                "accepted the terms of service: {}",
                                url.as_deref().unwrap_or("(none named)")
                            );
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => fail(e, settings.json),
                }
            }
            AcmeCommand::Profiles(ca) => {
                let client = client(&ca, settings, AcmeConfig::default())?;
                let profiles = match client.profiles().await {
                    Ok(p) => p,
                    Err(e) => return fail(e, settings.json),
                };
                if settings.json {
                    print_json(&json!({ "profiles": profiles }))?;
                } else if profiles.is_empty() {
                    println!("the CA's directory advertises no profiles: orders get its default");
                } else {
                    let width = profiles.keys().map(String::len).max().unwrap_or(0);
                    for (name, description) in &profiles {
                        println!("{name:<width$}  {description}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            AcmeCommand::Rollover(ca) => {
                let topology = settings.topology()?;
                let client = client(&ca, settings, AcmeConfig::default())?;
                match client.rollover(&topology).await {
                    Ok(account) => {
                        if settings.json {
                            print_json(&json!({ "done": true, "account": account }))?;
                        } else {
                            println!("the key of the ACME account {account} was replaced");
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => fail(e, settings.json),
                }
            }
            AcmeCommand::Contact(args) => {
                let topology = settings.topology()?;
                let client = client(&args.ca, settings, AcmeConfig::default())?;
                match client.update_contact(&topology, &args.email).await {
                    Ok(contact) => {
                        if settings.json {
                            print_json(&json!({ "done": true, "contact": contact }))?;
                        } else {
                            println!("the ACME account's contact is now {contact}");
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => fail(e, settings.json),
                }
            }
            AcmeCommand::Issue(issue) => run_issue(issue, settings).await,
            AcmeCommand::Revoke(revoke) => run_revoke(revoke, settings).await,
        }
    })
}

fn client(ca: &CaArgs, settings: &Settings, config: AcmeConfig) -> Result<AcmeClient, UsageError> {
    let config = ca.config(settings, config)?;
    let store = crate::store_arg::open_store(settings)?;
    client_for_store(store, config).map_err(|e| UsageError(e.to_string()))
}

async fn run_issue(args: IssueArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    let topology = settings.topology()?;
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
    args.chain.apply(settings, &mut config)?;
    let json = settings.json;
    // One installation over one store: issued certificates go through its gate, checked
    // against its topology.
    let config = args.ca.config(settings, config)?;
    let installation = bmcert::Installation::new(crate::store_arg::open_store(settings)?, topology);
    let client = installation
        .acme_client(config)
        .map_err(|e| UsageError(e.to_string()))?
        .with_progress(move |p| {
            // With --json, standard output is the document alone: progress goes to stderr.
            if json {
                eprintln!("acme: {p}");
            } else {
                println!("acme: {p}");
            }
        });
    let _listeners = listen(&client, args.http01_listen, args.tls_alpn01_listen).await?;
    let email = args
        .email
        .or_else(|| settings.acme.contact.as_ref().map(|c| c.value.clone()));
    let request = IssueRequest {
        target: target.clone(),
        email,
        extra_names: args.names,
        replaces: None,
        profile: match (args.profile, args.require_profile) {
            (_, Some(name)) => Some(ProfileChoice::Required(name)),
            (Some(name), None) if name == "default" => Some(ProfileChoice::CaDefault),
            (Some(name), None) => Some(ProfileChoice::Preferred(name)),
            (None, None) => None,
        },
    };
    let topology = installation.topology();
    let outcome = match unless_interrupted(&client, client.issue(&topology, &request)).await? {
        Ok(outcome) => outcome,
        Err(code) => return Ok(code),
    };
    match outcome {
        Ok(issued) => {
            let names: Vec<&str> = issued.names.iter().map(|n| n.as_str()).collect();
            let until = rfc3339(issued.not_after);
            if json {
                print_json(&json!({
                    "target": target.to_string(),
                    "done": true,
                    "names": names,
                    "not_after": until,
                }))?;
            } else {
                println!(
                    "issued and installed for {target}: {} (valid until {until})",
                    names.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => fail(e, json),
    }
}

/// The challenge listeners of a command that orders, kept while it runs.
async fn listen(
    client: &AcmeClient,
    http01: Option<SocketAddr>,
    tls_alpn01: Option<SocketAddr>,
) -> Result<(Option<Http01Listener>, Option<TlsAlpn01Listener>), UsageError> {
    let http = match http01 {
        Some(addr) => Some(
            Http01Listener::bind(addr, std::sync::Arc::new(client.board().clone()))
                .await
                .map_err(|e| UsageError(e.to_string()))?,
        ),
        None => None,
    };
    let tls = match tls_alpn01 {
        Some(addr) => Some(
            TlsAlpn01Listener::bind(addr, client.board().clone())
                .await
                .map_err(|e| UsageError(e.to_string()))?,
        ),
        None => None,
    };
    Ok((http, tls))
}

/// The RFC 3339 form of a notAfter (seconds since the epoch).
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

async fn run_revoke(args: RevokeArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    let topology = settings.topology()?;
    let target: Target = args
        .target
        .parse()
        .map_err(|e| UsageError(format!("--target: {e}")))?;
    let reason: RevokeReason = args
        .reason
        .parse()
        .map_err(|e| UsageError(format!("--reason: {e}")))?;
    let json = settings.json;
    let mut config = AcmeConfig::default();
    if args.tls_alpn01_listen.is_some() {
        config.challenge = ChallengeKind::TlsAlpn01;
    }
    args.chain.apply(settings, &mut config)?;
    let config = args.ca.config(settings, config)?;
    let installation = bmcert::Installation::new(crate::store_arg::open_store(settings)?, topology);
    let current = installation
        .store()
        .current(&target)
        .await
        .map_err(|e| UsageError(format!("reading the certificate of {target}: {e}")))?;
    let Some(current) = current else {
        return refused(
            json,
            &format!("nothing is installed for {target}: there is no certificate to revoke"),
        );
    };
    let meta = current.bundle.meta().clone();
    let client = installation
        .acme_client(config)
        .map_err(|e| UsageError(e.to_string()))?
        .with_progress(move |p| {
            if json {
                eprintln!("acme: {p}");
            } else {
                println!("acme: {p}");
            }
        });
    if let Err(e) = client
        .revoke(
            &installation.topology(),
            current.bundle.leaf().as_ref(),
            reason,
        )
        .await
    {
        return fail(e, json);
    }
    let revoked = format!(
        "revoked the certificate of {target} ({}, sha256 {}, valid until {}) at the CA: {reason}",
        meta.names.join(", "),
        meta.fingerprint,
        rfc3339(meta.not_after.unix_timestamp())
    );
    if meta.source != Source::Acme {
        // Not ordered through ACME: nothing to order again here.
        if json {
            print_json(&json!({
                "target": target.to_string(),
                "done": true,
                "revoked": true,
                "reason": reason.as_str(),
                "renewed": false,
            }))?;
        } else {
            println!("{revoked}");
            println!(
                "the certificate of {target} was not obtained through ACME (source {}): install its replacement (bmcert install, or bmcert acme issue)",
                meta.source
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        eprintln!("{revoked}");
    } else {
        println!("{revoked}");
    }
    let _listeners = listen(&client, args.http01_listen, args.tls_alpn01_listen).await?;
    match client
        .issue(&installation.topology(), &IssueRequest::new(target.clone()))
        .await
    {
        Ok(issued) => {
            let names: Vec<&str> = issued.names.iter().map(|n| n.as_str()).collect();
            let until = rfc3339(issued.not_after);
            if json {
                print_json(&json!({
                    "target": target.to_string(),
                    "done": true,
                    "revoked": true,
                    "reason": reason.as_str(),
                    "renewed": true,
                    "names": names,
                    "not_after": until,
                }))?;
            } else {
                println!(
                    "issued and installed the replacement for {target}: {} (valid until {until})",
                    names.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "bmcert: the revoked certificate is still installed for {target}: its replacement failed"
            );
            fail(e, json)
        }
    }
}

/// Whether the CLI counts an ACME failure as a refusal (exit 1): the CA's or the checks'
/// refusals, and the terms of service not accepted yet. A missing or unusable contact
/// address is a usage error (exit 2, like a bad option), and so is an unreachable CA.
fn is_refusal(e: &AcmeError) -> bool {
    e.is_refusal() || matches!(e, AcmeError::TermsNotAccepted { .. })
}

fn fail(e: AcmeError, json: bool) -> Result<ExitCode, UsageError> {
    if is_refusal(&e) {
        refused(json, &e)
    } else {
        Err(UsageError(e.to_string()))
    }
}
