//! The store commands: `install`, `disable`, `list`, `rollback`, `export`.
//!
//! Each uses the store (`--store DIR`, or `--store etcd://HOST:PORT,...[/PREFIX]` for the
//! etcd store shared by several servers, see [`crate::store_arg`]) and the topology
//! (`--topology FILE`), global settings that may also come from the environment or the
//! configuration file ([`crate::settings`]). Exit status: 0 done; 1 refused (the bundle
//! report's problems, a domain without its own URL, disabling the system certificate,
//! nothing to roll back or export, a damaged certificate in the store: `store_damaged`,
//! for `export` of it and for `list` when any target is damaged);
//! 2 usage or I/O error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bmcert::topology::Target;
use bmcert::{block_on, CertManager, ManagerError};
use clap::{ArgGroup, Args};
use rustls_pki_types::UnixTime;
use serde_json::json;

use crate::input::{self, UsageError};
use crate::output::{damaged_json, print_damaged, print_json, to_json, STORE_DAMAGED};
use crate::settings::Settings;
use crate::store_arg::open_store;

/// Install a certificate bundle after checking it against the target's external URL.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("bundle").required(true).args(["cert", "p12"])))]
pub(crate) struct InstallArgs {
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
    /// `system` or `domain:NAME`.
    #[arg(long, value_name = "TARGET")]
    target: String,
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
    text.parse().map_err(|e| {
        UsageError(format!(
            "--target `{}`: {e}",
            bmcert::topology::Escaped(text)
        ))
    })
}

fn open(settings: &Settings) -> Result<CertManager, UsageError> {
    let store = open_store(settings)?;
    Ok(CertManager::new(store, settings.topology()?))
}

/// Like [`open`], with the platform trust store for the bundle report (as `bmcert check`).
fn open_for_install(settings: &Settings) -> Result<CertManager, UsageError> {
    Ok(open(settings)?.with_platform_roots(crate::check::platform_roots()))
}

/// Store errors are I/O or usage errors (2); refusals with a problem code
/// ([`ManagerError::code`]: `domain_without_url`, `nothing_installed`, ...) are 1.
fn refused_or_error(e: ManagerError, json: bool) -> Result<ExitCode, UsageError> {
    let Some(code) = e.code() else {
        return Err(UsageError(e.to_string()));
    };
    if json {
        print_json(&json!({ "done": false, "code": code, "refused": e.to_string() }))?;
    }
    eprintln!("bmcert: refused: {e}");
    Ok(ExitCode::from(crate::output::REFUSED))
}

pub(crate) fn install(args: InstallArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    let target = parse_target(&args.target)?;
    let manager = open_for_install(settings)?;
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
            Some(p) => Some(input::read_up_to(p, "CA file", input::CA_FILE_LIMIT)?),
            None => None,
        };
        block_on(manager.install_files(&target, &cert, &key, ca.as_deref(), now))
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => return refused_or_error(e, settings.json),
    };
    if settings.json {
        let report = to_json(&outcome.report)?;
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

pub(crate) fn disable(args: TargetArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    let target = parse_target(&args.target)?;
    let manager = open(settings)?;
    let revision = match block_on(manager.disable(&target)) {
        Ok(r) => r,
        Err(e) => return refused_or_error(e, settings.json),
    };
    if settings.json {
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

/// Exit 1 when a target is damaged (after listing every target).
pub(crate) fn list(settings: &Settings) -> Result<ExitCode, UsageError> {
    let manager = open(settings)?;
    let rows = block_on(manager.list(UnixTime::now())).map_err(|e| UsageError(e.to_string()))?;
    let damaged = rows.iter().filter(|r| r.is_err()).count();
    let code = if damaged > 0 {
        eprintln!("bmcert: {damaged} damaged certificate(s) in the store ({STORE_DAMAGED}); the other targets are not affected");
        ExitCode::from(crate::output::REFUSED)
    } else {
        ExitCode::SUCCESS
    };
    if settings.json {
        let items = rows
            .iter()
            .map(|row| match row {
                Ok(status) => to_json(status),
                Err(d) => Ok(damaged_json(d)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        print_json(&serde_json::Value::Array(items))?;
        return Ok(code);
    }
    if rows.is_empty() {
        println!("No certificate installed.");
    }
    for row in rows {
        let row = match row {
            Ok(row) => row,
            Err(d) => {
                print_damaged(&d);
                continue;
            }
        };
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
    Ok(code)
}

pub(crate) fn rollback(args: TargetArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    let target = parse_target(&args.target)?;
    let manager = open(settings)?;
    let back = match block_on(manager.rollback(&target)) {
        Ok(v) => v,
        Err(e) => return refused_or_error(e, settings.json),
    };
    if settings.json {
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

pub(crate) fn export(args: ExportArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    let target = parse_target(&args.target.target)?;
    let manager = open(settings)?;
    let exported = match block_on(manager.export(&target)) {
        Ok(e) => e,
        Err(e) => return refused_or_error(e, settings.json),
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
    if settings.json {
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
