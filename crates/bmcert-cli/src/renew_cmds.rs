//! `bmcert status` and `bmcert renew`: the renewal state of every target, and a renewal by
//! hand.
//!
//! Exit status: 0 done; 1 refused: the renewal failed (the CA refused or could not be
//! reached; the current certificate stays, the reason is printed), another server is
//! renewing, the target has no certificate, or its certificate was uploaded (`not_acme`);
//! 2 usage or I/O error.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bmcert::acme::{AcmeConfig, Http01Listener};
use bmcert::renew::{NoNotifier, Outcome, RenewError, RenewerConfig};
use bmcert::topology::Target;
use clap::Args;
use serde_json::json;

use crate::acme_cmds::{runtime, CaArgs, ChainArgs};
use crate::input::UsageError;
use crate::output::{damaged_json, print_damaged, print_json, refused, to_json, STORE_DAMAGED};
use crate::settings::Settings;

/// `bmcert renew`.
#[derive(Args, Debug)]
pub(crate) struct RenewArgs {
    /// `system` or `domain:NAME`.
    #[arg(long)]
    target: String,
    #[command(flatten)]
    ca: CaArgs,
    #[command(flatten)]
    chain: ChainArgs,
    /// Answer HTTP-01 on this address while the order runs.
    #[arg(long, value_name = "ADDR")]
    http01_listen: Option<SocketAddr>,
}

/// Exit 1 when a target is damaged (`store_damaged`, listed after the others).
pub(crate) fn status(settings: &Settings) -> Result<ExitCode, UsageError> {
    let store = crate::store_arg::open_store(settings)?;
    let (rows, listed) = runtime()?.block_on(async {
        let rows = bmcert::renew::status(store.as_ref()).await;
        (rows, store.list().await)
    });
    let rows = rows.map_err(|e| UsageError(e.to_string()))?;
    let damaged: Vec<bmcert::Damaged> = listed
        .map_err(|e| UsageError(e.to_string()))?
        .into_iter()
        .filter_map(Result::err)
        .collect();
    let code = if damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "bmcert: {} damaged certificate(s) in the store ({STORE_DAMAGED}); the other targets are not affected",
            damaged.len()
        );
        ExitCode::from(crate::output::REFUSED)
    };
    if settings.json {
        let mut items = match to_json(&rows)? {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        items.extend(damaged.iter().map(damaged_json));
        print_json(&serde_json::Value::Array(items))?;
        return Ok(code);
    }
    if rows.is_empty() && damaged.is_empty() {
        println!("No certificate installed.");
        return Ok(code);
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
    for d in &damaged {
        print_damaged(d);
    }
    Ok(code)
}

pub(crate) fn renew(args: RenewArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    let topology = settings.topology()?;
    let target: Target = args
        .target
        .parse()
        .map_err(|e| UsageError(format!("--target: {e}")))?;
    let mut config = args.ca.config(settings, AcmeConfig::default())?;
    args.chain.apply(settings, &mut config)?;
    let json = settings.json;
    runtime()?.block_on(async move {
        let store = crate::store_arg::open_store(settings)?;
        // One installation: the gate, the issuer and the renewer share its one topology.
        let installation = bmcert::Installation::new(store.clone(), topology);
        let client = Arc::new(
            installation
                .acme_client(config)
                .map_err(|e| UsageError(e.to_string()))?
                .with_progress(move |p| {
                    // With --json, standard output is the document alone.
                    if json {
                        eprintln!("acme: {p}");
                    } else {
                        println!("acme: {p}");
                    }
                }),
        );
        let _http = match args.http01_listen {
            Some(addr) => Some(
                Http01Listener::bind(addr, Arc::new(client.board().clone()))
                    .await
                    .map_err(|e| UsageError(e.to_string()))?,
            ),
            None => None,
        };
        let renewer = installation.renewer(
            client.clone(),
            // A renewal by hand sends no warning: the administrator sees the result.
            Arc::new(NoNotifier),
            RenewerConfig {
                holder: format!("bmcert-cli-{}", std::process::id()),
                ..RenewerConfig::default()
            },
        );
        let outcome = match crate::acme_cmds::unless_interrupted(
            &client,
            renewer.renew_now(&target),
        )
        .await?
        {
            Ok(outcome) => outcome,
            Err(code) => return Ok(code),
        };
        match outcome {
            Ok(Outcome::Renewed) | Ok(Outcome::AlreadyRenewed) => {
                let rows = bmcert::renew::status(store.as_ref())
                    .await
                    .map_err(|e| UsageError(e.to_string()))?;
                let arg = bmcert::renew::target_arg(&target);
                let row = rows.iter().find(|r| r.target == arg);
                if json {
                    print_json(&json!({
                        "target": arg,
                        "done": true,
                        "names": row.map(|r| r.names.clone()).unwrap_or_default(),
                        "not_after": row.map(|r| r.not_after.clone()),
                    }))?;
                } else if let Some(row) = row {
                    println!(
                        "renewed {arg}: {} (valid until {})",
                        row.names.join(", "),
                        row.not_after
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(
                e @ (RenewError::Failed { .. }
                | RenewError::Busy { .. }
                | RenewError::NotInstalled(_)
                | RenewError::LeaseLost { .. }),
            ) => refused(json, &e),
            Err(e) if e.code().is_some() => refused(json, &e),
            Err(e) => Err(UsageError(e.to_string())),
        }
    })
}
