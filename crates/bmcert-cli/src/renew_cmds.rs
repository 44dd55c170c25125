//! `bmcert status` and `bmcert renew`: the renewal state of every target, and a renewal by
//! hand.
//!
//! Exit status: 0 done; 1 the renewal failed (the CA refused or could not be reached; the
//! current certificate stays, the reason is printed) or was refused (`not_acme`: the
//! certificate was uploaded; `nothing_installed`); 2 usage or I/O error, or another server
//! holding the renewal lock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bmcert::acme::{client_for_manager, AcmeConfig, Directory, Http01Listener};
use bmcert::renew::{
    AcmeIssuer, NoNotifier, Outcome, RenewError, Renewer, RenewerConfig, SystemClock,
};
use bmcert::topology::Target;
use bmcert::CertManager;
use clap::Args;

use crate::input::{self, UsageError};

/// `bmcert status`.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    store: crate::store_arg::StoreSpec,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `bmcert renew`.
#[derive(Args, Debug)]
pub(crate) struct RenewArgs {
    #[command(flatten)]
    store: crate::store_arg::StoreSpec,
    /// The topology file (external URLs, default domain, additional names).
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// `system` or `domain:NAME`.
    #[arg(long)]
    target: String,
    /// The ACME directory URL (Let's Encrypt production by default; `staging` for
    /// Let's Encrypt's staging).
    #[arg(long, value_name = "URL")]
    directory: Option<String>,
    /// A PEM file with the root that signed the directory's HTTPS certificate (test CAs).
    #[arg(long, value_name = "FILE")]
    directory_ca: Option<PathBuf>,
    /// A PEM file with the roots the issued chain must lead to (default: the system's).
    #[arg(long, value_name = "FILE")]
    chain_ca: Option<PathBuf>,
    /// Answer HTTP-01 on this address while the order runs.
    #[arg(long, value_name = "ADDR")]
    http01_listen: Option<SocketAddr>,
}

fn runtime() -> Result<tokio::runtime::Runtime, UsageError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(crate::sigpipe::block_in_this_thread)
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))
}

pub(crate) fn status(args: StatusArgs) -> Result<ExitCode, UsageError> {
    let store = crate::store_arg::open_store(&args.store)?;
    let rows = runtime()?
        .block_on(bmcert::renew::status(store.as_ref()))
        .map_err(|e| UsageError(e.to_string()))?;
    if args.json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| UsageError(format!("cannot write JSON: {e}")))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No certificate installed.");
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "TARGET",
        "SOURCE",
        "EXPIRES",
        "NEXT RENEWAL",
        "LAST ATTEMPT",
        "NAMES",
    ];
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.target.clone(),
                r.source.clone(),
                r.not_after.clone(),
                r.next_renewal
                    .clone()
                    .unwrap_or_else(|| format!("never ({})", r.source)),
                r.last_attempt.clone().unwrap_or_else(|| "-".into()),
                r.names.join(","),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(&header.map(str::to_owned)));
    for (row, r) in table.iter().zip(&rows) {
        println!("{}", line(row));
        if let Some(e) = &r.last_error {
            println!("    last error: {e}");
        }
        if let Some(w) = r.warning {
            println!("    warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn renew(args: RenewArgs) -> Result<ExitCode, UsageError> {
    let topology = input::read_topology(&args.topology)?;
    let target: Target = args
        .target
        .parse()
        .map_err(|e| UsageError(format!("--target: {e}")))?;
    let directory = match args.directory.as_deref() {
        None => Directory::LetsEncrypt,
        Some("staging") => Directory::LetsEncryptStaging,
        Some(url) if url.starts_with("https://") => Directory::Url(url.to_owned()),
        Some(other) => {
            return Err(UsageError(format!(
                "--directory `{other}` is not an https:// URL (or `staging`)"
            )))
        }
    };
    let mut config = AcmeConfig::new(directory);
    if let Some(path) = &args.directory_ca {
        config.directory_roots = input::read_certs(path, "directory CA file")?;
    }
    if let Some(path) = &args.chain_ca {
        config.chain_roots = input::read_certs(path, "chain CA file")?;
    }
    runtime()?.block_on(async move {
        let store = crate::store_arg::open_store(&args.store)?;
        let client = Arc::new(
            client_for_manager(&CertManager::new(store.clone(), topology.clone()), config)
                .map_err(|e| UsageError(e.to_string()))?
                .with_progress(|p| println!("acme: {p}")),
        );
        let _http = match args.http01_listen {
            Some(addr) => Some(
                Http01Listener::bind(addr, Arc::new(client.board().clone()))
                    .await
                    .map_err(|e| UsageError(e.to_string()))?,
            ),
            None => None,
        };
        let renewer = Renewer::new(
            store.clone(),
            Arc::new(AcmeIssuer::new(client, topology)),
            // A renewal by hand sends no warning: the administrator sees the result.
            Arc::new(NoNotifier),
            Arc::new(SystemClock),
            RenewerConfig {
                holder: format!("bmcert-cli-{}", std::process::id()),
                ..RenewerConfig::default()
            },
        );
        match renewer.renew_now(&target).await {
            Ok(Outcome::Renewed) | Ok(Outcome::AlreadyRenewed) => {
                let rows = bmcert::renew::status(store.as_ref())
                    .await
                    .map_err(|e| UsageError(e.to_string()))?;
                let arg = bmcert::renew::target_arg(&target);
                if let Some(row) = rows.iter().find(|r| r.target == arg) {
                    println!(
                        "renewed {arg}: {} (valid until {})",
                        row.names.join(", "),
                        row.not_after
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ RenewError::Failed { .. }) => {
                eprintln!("bmcert: {e}");
                Ok(ExitCode::from(1))
            }
            Err(e) if e.code().is_some() => {
                eprintln!("bmcert: refused: {e}");
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(UsageError(e.to_string())),
        }
    })
}
