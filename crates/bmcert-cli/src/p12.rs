//! `bmcert p12`: split a PKCS#12 file into cert.pem, key.pem (0600) and ca.pem.

use std::path::PathBuf;
use std::process::ExitCode;

use bmcert_bundle::{pem_encode, BundleCheck};
use clap::Args;
use rustls_pki_types::UnixTime;

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

pub(crate) fn run(args: P12Args) -> Result<ExitCode, UsageError> {
    let p12 = input::read(&args.p12, "PKCS#12 file")?;
    let password = input::read_password(&args.password_file, "password file")?;
    let report = BundleCheck::pkcs12(&p12, &password).check(UnixTime::now());
    let Some(bundle) = &report.bundle else {
        for p in &report.problems {
            eprintln!("bmcert: {p}");
        }
        return Ok(ExitCode::from(1));
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
    println!("wrote {}", cert_path.display());
    println!("wrote {} (mode 0600)", key_path.display());
    if bundle.chain.is_empty() {
        println!(
            "no CA certificate in the PKCS#12 file: {} not written",
            ca_path.display()
        );
    } else {
        let ca: String = bundle
            .chain
            .iter()
            .map(|c| pem_encode("CERTIFICATE", c))
            .collect();
        input::write(&ca_path, ca.as_bytes(), false)?;
        println!(
            "wrote {} ({} certificate(s))",
            ca_path.display(),
            bundle.chain.len()
        );
    }
    for f in report.problems.iter().chain(&report.warnings) {
        eprintln!("bmcert: note: {f}");
    }
    Ok(ExitCode::SUCCESS)
}
