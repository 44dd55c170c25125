//! The store commands: `install`, `disable`, `list`, `rollback`, `export`.
//!
//! Each takes `--store DIR` (the directory store) or `--store etcd://HOST:PORT,...[/PREFIX]`
//! (the etcd store shared by several servers; `etcds://` with the `--etcd-*` options for TLS
//! and authentication, see [`crate::store_arg`]) and `--topology FILE` (the installation's
//! TOML topology). Exit status: 0 done; 1 refused (the bundle report's problems, a domain
//! without its own URL, disabling the system certificate, nothing to roll back or export);
//! 2 usage or I/O error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bmcert::topology::Target;
use bmcert::{block_on, CertManager, ManagerError};
use clap::{ArgGroup, Args};
use rustls_pki_types::UnixTime;
use serde_json::json;

use crate::input::{self, UsageError};
use crate::store_arg::{open_store, StoreSpec};

/// Where the store is and what the installation looks like.
#[derive(Args, Debug)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    store: StoreSpec,
    /// The installation topology (TOML: system URL, default domain, domains).
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// Print one JSON object instead of readable text.
    #[arg(long)]
    json: bool,
}

/// Install a certificate bundle after checking it against the target's external URL.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("bundle").required(true).args(["cert", "p12"])))]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// `system` or `domain:NAME`.
    #[arg(long, value_name = "TARGET")]
    target: String,
    /// The server certificate (PEM or DER).
    #[arg(long, value_name = "FILE", requires = "key", conflicts_with = "p12")]
    cert: Option<PathBuf>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1; PEM or DER).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The issuing authority's certificate, then its root (PEM or DER).
    #[arg(long, value_name = "FILE", requires = "cert")]
    ca: Option<PathBuf>,
    /// A PKCS#12 file (.p12, .pfx) instead of --cert/--key/--ca.
    #[arg(long, value_name = "FILE", requires = "password_file")]
    p12: Option<PathBuf>,
    /// The file holding the PKCS#12 password (empty file: no password).
    #[arg(long, value_name = "FILE", requires = "p12")]
    password_file: Option<PathBuf>,
}

/// A command acting on one target.
#[derive(Args, Debug)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    common: StoreArgs,
    /// `system` or `domain:NAME`.
    #[arg(long, value_name = "TARGET")]
    target: String,
}

/// List the installed certificates.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    common: StoreArgs,
}

/// Write the current certificate of a target as files.
#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The directory to write cert.pem, key.pem (mode 0600) and ca.pem into.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
}

fn parse_target(text: &str) -> Result<Target, UsageError> {
    text.parse()
        .map_err(|e| UsageError(format!("--target `{text}`: {e}")))
}

fn open(common: &StoreArgs) -> Result<CertManager, UsageError> {
    let topology = input::read_topology(&common.topology)?;
    Ok(CertManager::new(open_store(&common.store)?, topology))
}

/// Like [`open`], with the platform trust store for the bundle report (as `bmcert check`).
fn open_for_install(common: &StoreArgs) -> Result<CertManager, UsageError> {
    Ok(open(common)?.with_platform_roots(crate::check::platform_roots()))
}

/// Store errors are I/O or usage errors (2); refusals with a problem code
/// ([`ManagerError::code`]: `domain_without_url`, `nothing_installed`, ...) are 1.
fn refused_or_error(e: ManagerError, json: bool) -> Result<ExitCode, UsageError> {
    let Some(code) = e.code() else {
        return Err(UsageError(e.to_string()));
    };
    if json {
        println!(
            "{}",
            json!({ "done": false, "code": code, "refused": e.to_string() })
        );
    }
    eprintln!("bmcert: refused: {e}");
    Ok(ExitCode::from(1))
}

fn print_json(value: &serde_json::Value) -> Result<(), UsageError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| UsageError(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub(crate) fn install(args: InstallArgs) -> Result<ExitCode, UsageError> {
    let target = parse_target(&args.target)?;
    let manager = open_for_install(&args.common)?;
    let now = UnixTime::now();
    let result = if let Some(p12_path) = &args.p12 {
        let p12 = input::read(p12_path, "PKCS#12 file")?;
        let password = match &args.password_file {
            Some(p) => input::read_password(p, "password file")?,
            None => zeroize::Zeroizing::new(String::new()),
        };
        block_on(manager.install_p12(&target, &p12, &password, now))
    } else {
        let (Some(cert_path), Some(key_path)) = (&args.cert, &args.key) else {
            return Err(UsageError("give --cert and --key, or --p12".to_owned()));
        };
        let cert = input::read(cert_path, "certificate file")?;
        let key = zeroize::Zeroizing::new(input::read(key_path, "key file")?);
        let ca = match &args.ca {
            Some(p) => Some(input::read(p, "CA file")?),
            None => None,
        };
        block_on(manager.install_files(&target, &cert, &key, ca.as_deref(), now))
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => return refused_or_error(e, args.common.json),
    };
    if args.common.json {
        let report = serde_json::to_value(&outcome.report)
            .map_err(|e| UsageError(format!("cannot write the JSON report: {e}")))?;
        print_json(&json!({
            "target": target.to_string(),
            "installed": outcome.is_installed(),
            "version": outcome.installed.as_ref().map(|i| i.version),
            "revision": outcome.installed.as_ref().map(|i| i.revision.0),
            "report": report,
        }))?;
    } else {
        print!("{}", outcome.report);
        match &outcome.installed {
            Some(i) => println!(
                "\nInstalled for {target} as version {} (fingerprint {}).",
                i.version, i.meta.fingerprint
            ),
            None => println!("\nNothing installed: the certificate of {target} is unchanged."),
        }
    }
    Ok(if outcome.is_installed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn disable(args: TargetArgs) -> Result<ExitCode, UsageError> {
    let target = parse_target(&args.target)?;
    let manager = open(&args.common)?;
    let revision = match block_on(manager.disable(&target)) {
        Ok(r) => r,
        Err(e) => return refused_or_error(e, args.common.json),
    };
    if args.common.json {
        print_json(&json!({
            "target": target.to_string(),
            "done": true,
            "disabled": revision.is_some(),
            "revision": revision.map(|r| r.0),
        }))?;
    } else if revision.is_some() {
        println!("Disabled the certificate of {target}; it now uses the system certificate.");
    } else {
        println!("{target} had no certificate of its own; nothing to do.");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn list(args: ListArgs) -> Result<ExitCode, UsageError> {
    let manager = open(&args.common)?;
    let rows = block_on(manager.list(UnixTime::now())).map_err(|e| UsageError(e.to_string()))?;
    if args.common.json {
        let value = serde_json::to_value(&rows)
            .map_err(|e| UsageError(format!("cannot write JSON: {e}")))?;
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No certificate installed.");
    }
    for row in rows {
        let expiry = row
            .not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!(
            "{}\t{}\texpires {expiry} ({} days left)\tversion {}\t{}",
            row.target,
            row.source,
            row.days_left,
            row.version,
            row.names.join(",")
        );
        if let Some(warning) = row.warning {
            println!("    warning: {warning}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn rollback(args: TargetArgs) -> Result<ExitCode, UsageError> {
    let target = parse_target(&args.target)?;
    let manager = open(&args.common)?;
    let back = match block_on(manager.rollback(&target)) {
        Ok(v) => v,
        Err(e) => return refused_or_error(e, args.common.json),
    };
    if args.common.json {
        print_json(&json!({
            "target": target.to_string(),
            "done": true,
            "version": back.version,
            "revision": back.revision.0,
            "fingerprint": back.meta.fingerprint.to_string(),
        }))?;
    } else {
        println!(
            "Rolled {target} back to version {} (fingerprint {}).",
            back.version, back.meta.fingerprint
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn export(args: ExportArgs) -> Result<ExitCode, UsageError> {
    let target = parse_target(&args.target.target)?;
    let manager = open(&args.target.common)?;
    let exported = match block_on(manager.export(&target)) {
        Ok(e) => e,
        Err(e) => return refused_or_error(e, args.target.common.json),
    };
    input::ensure_dir(&args.out_dir)?;
    let files: [(&str, &[u8], bool); 3] = [
        ("cert.pem", exported.cert_pem.as_bytes(), false),
        ("key.pem", exported.secret_key_pem.as_bytes(), true),
        ("ca.pem", exported.ca_pem.as_bytes(), false),
    ];
    let mut written = Vec::new();
    for (name, bytes, secret) in files {
        let path: PathBuf = Path::new(&args.out_dir).join(name);
        input::write(&path, bytes, secret)?;
        written.push(path.display().to_string());
    }
    if args.target.common.json {
        print_json(&json!({
            "target": target.to_string(),
            "done": true,
            "version": exported.version,
            "files": written,
        }))?;
    } else {
        println!(
            "Wrote version {} of {target}: {}",
            exported.version,
            written.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
