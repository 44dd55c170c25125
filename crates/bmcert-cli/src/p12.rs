//! `bmcert p12`: split a PKCS#12 file into cert.pem, key.pem (0600) and ca.pem.

use std::path::PathBuf;
use std::process::ExitCode;

use bmcert_bundle::{pem_encode, BundleCheck};
use clap::Args;
use rustls_pki_types::UnixTime;
use serde_json::json;

use crate::input::{self, UsageError};

/// Split a PKCS#12 file into PEM files (replaces two openssl commands).
#[derive(Args, Debug)]
pub(crate) struct P12Args {
    /// The PKCS#12 file (.p12, .pfx).
    #[arg(long, value_name = "FILE")]
    p12: PathBuf,
    /// The file holding its password (empty file: no password).
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
    /// Where to write cert.pem, key.pem (mode 0600) and ca.pem; created if missing.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
}

pub(crate) fn run(args: P12Args, json: bool) -> Result<ExitCode, UsageError> {
    let p12 = input::read(&args.p12, "PKCS#12 file")?;
    let password = input::read_password(&args.password_file, "password file")?;
    let report = BundleCheck::pkcs12(&p12, &password).check(UnixTime::now());
    let Some(bundle) = &report.bundle else {
        let reasons: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        return crate::output::refused(json, &reasons.join("; "));
    };
    // With --json the document replaces the readable lines.
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    input::ensure_dir(&args.out_dir)?;
    let cert_path = args.out_dir.join("cert.pem");
    let key_path = args.out_dir.join("key.pem");
    let ca_path = args.out_dir.join("ca.pem");
    input::write(
        &cert_path,
        pem_encode("CERTIFICATE", &bundle.leaf).as_bytes(),
        false,
    )?;
    input::write(&key_path, bundle.key.to_secret_pem().as_bytes(), true)?;
    let mut written = vec![
        cert_path.display().to_string(),
        key_path.display().to_string(),
    ];
    say(format!("wrote {}", cert_path.display()));
    say(format!("wrote {} (mode 0600)", key_path.display()));
    if bundle.chain.is_empty() {
        say(format!(
            "no CA certificate in the PKCS#12 file: {} not written",
            ca_path.display()
        ));
    } else {
        let ca: String = bundle
            .chain
            .iter()
            .map(|c| pem_encode("CERTIFICATE", c))
            .collect();
        input::write(&ca_path, ca.as_bytes(), false)?;
        written.push(ca_path.display().to_string());
        say(format!(
            "wrote {} ({} certificate(s))",
            ca_path.display(),
            bundle.chain.len()
        ));
    }
    for f in report.problems.iter().chain(&report.warnings) {
        eprintln!("bmcert: note: {f}");
    }
    if json {
        let notes: Vec<String> = report
            .problems
            .iter()
            .chain(&report.warnings)
            .map(ToString::to_string)
            .collect();
        crate::output::print_json(&json!({
            "done": true,
            "files": written,
            "chain_certificates": bundle.chain.len(),
            "notes": notes,
        }))?;
    }
    Ok(ExitCode::SUCCESS)
}
