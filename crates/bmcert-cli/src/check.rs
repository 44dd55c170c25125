//! `bmcert check`: read a bundle, print the report, exit 0 (accepted) or 1 (refused).

use std::path::PathBuf;
use std::process::ExitCode;

use bmcert_bundle::{BundleCheck, FileKind};
use bmcert_topology::Host;
use clap::{ArgGroup, Args};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::input::{self, UsageError};

/// Check a certificate bundle before installing it.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("bundle").required(true).args(["cert", "p12"])))]
pub(crate) struct CheckArgs {
    /// The server certificate (PEM or DER).
    #[arg(long, value_name = "FILE", requires = "key", conflicts_with = "p12")]
    cert: Option<PathBuf>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1; PEM or DER).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The issuing authority's certificate, then its root (PEM or DER).
    #[arg(long, value_name = "FILE", requires = "cert")]
    ca: Option<PathBuf>,
    /// A file holding the password of an encrypted PKCS#8 key.
    #[arg(long, value_name = "FILE", requires = "key")]
    key_password_file: Option<PathBuf>,
    /// A PKCS#12 file (.p12, .pfx) instead of --cert/--key/--ca.
    #[arg(long, value_name = "FILE", requires = "password_file")]
    p12: Option<PathBuf>,
    /// The file holding the PKCS#12 password (empty file: no password).
    #[arg(long, value_name = "FILE", requires = "p12")]
    password_file: Option<PathBuf>,
    /// The external URL or host name the certificate is for (scheme, port, path and case do not matter).
    #[arg(long, value_name = "URL")]
    url: String,
    /// Check at this time instead of now (RFC 3339, for example 2027-01-31T12:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
}

pub(crate) fn parse_at(at: Option<&str>) -> Result<UnixTime, UsageError> {
    let Some(at) = at else {
        return Ok(UnixTime::now());
    };
    let t = OffsetDateTime::parse(at, &Rfc3339).map_err(|e| {
        UsageError(format!(
            "--at `{at}` is not an RFC 3339 time such as 2027-01-31T12:00:00Z ({e})"
        ))
    })?;
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| UsageError(format!("--at `{at}` is before 1970")))?;
    Ok(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        secs,
    )))
}

/// The platform's trust store (on Debian, `/etc/ssl/certs` from `ca-certificates`). It only
/// completes a chain whose root the CA file lacks; a store that cannot be read just means
/// no such completion, so errors are logged to stderr and ignored.
pub(crate) fn platform_roots() -> Vec<CertificateDer<'static>> {
    let loaded = rustls_native_certs::load_native_certs();
    if loaded.certs.is_empty() && !loaded.errors.is_empty() {
        eprintln!(
            "note: the platform trust store could not be read ({}); a chain without its root is refused",
            loaded.errors[0]
        );
    }
    loaded.certs
}

pub(crate) fn run(args: CheckArgs, json: bool) -> Result<ExitCode, UsageError> {
    let host = Host::parse(&args.url).map_err(|e| {
        UsageError(format!(
            "--url `{}`: {e}",
            bmcert::topology::Escaped(&args.url)
        ))
    })?;
    let now = parse_at(args.at.as_deref())?;
    let roots = platform_roots();

    // Which path each `file` of the report refers to, shown to the administrator.
    let mut files: Vec<(FileKind, &PathBuf)> = Vec::new();
    let mut report = if let Some(p12_path) = &args.p12 {
        files.push((FileKind::P12, p12_path));
        let p12 = input::read(p12_path, "PKCS#12 file")?;
        let password = match &args.password_file {
            Some(p) => input::read_password(p, "password file")?,
            None => zeroize::Zeroizing::new(String::new()),
        };
        BundleCheck::pkcs12(&p12, &password)
            .host(host)
            .platform_roots(&roots)
            .check(now)
    } else {
        let (Some(cert_path), Some(key_path)) = (&args.cert, &args.key) else {
            return Err(UsageError("give --cert and --key, or --p12".to_owned()));
        };
        files.push((FileKind::Cert, cert_path));
        files.push((FileKind::Key, key_path));
        let cert = input::read(cert_path, "certificate file")?;
        let key = zeroize::Zeroizing::new(input::read(key_path, "key file")?);
        let ca = match &args.ca {
            Some(p) => {
                files.push((FileKind::Ca, p));
                Some(input::read_up_to(p, "CA file", input::CA_FILE_LIMIT)?)
            }
            None => None,
        };
        let key_password = match &args.key_password_file {
            Some(p) => Some(input::read_password(p, "key password file")?),
            None => None,
        };
        let mut check = BundleCheck::files(&cert, &key, ca.as_deref())
            .host(host)
            .platform_roots(&roots);
        if let Some(pw) = &key_password {
            check = check.key_password(pw.as_bytes());
        }
        check.check(now)
    };
    // The library does not know paths: name the key file in the openssl commands it suggests.
    if let Some((_, key_path)) = files.iter().find(|(k, _)| *k == FileKind::Key) {
        let shown = key_path.display().to_string();
        for f in report.problems.iter_mut().chain(report.warnings.iter_mut()) {
            f.message = f.message.replace("KEYFILE", &shown);
        }
    }

    if json {
        let mut value = crate::output::to_json(&report)?;
        if let serde_json::Value::Object(map) = &mut value {
            let paths = files
                .iter()
                .map(|(k, p)| (k.as_str().to_owned(), p.display().to_string().into()))
                .collect();
            map.insert("files".to_owned(), serde_json::Value::Object(paths));
        }
        crate::output::print_json(&value)?;
    } else {
        for (kind, path) in &files {
            println!("{kind} file: {}", path.display());
        }
        print!("{report}");
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
