//! Stable smoke path for the fuzz targets (cargo-fuzz needs nightly): every seed in
//! `fuzz/corpus/{certificate,key,ca,pkcs12}` goes through the same calls as the targets, and
//! the seeds that are valid encodings must be accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use bmcert_bundle::{
    key_matches, parse_certificates, parse_pkcs12, parse_private_key, BundleCheck, CertSummary,
    Code, FileKind,
};
use bmcert_verify::ChainCode as VerifyCode;
use rustls_pki_types::{CertificateDer, UnixTime};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz/corpus").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 3, "{target}: seed corpus too small");
    out
}

fn at() -> UnixTime {
    UnixTime::since_unix_epoch(core::time::Duration::from_secs(1_900_000_000))
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(root().join("samples").join(name)).unwrap()
}

#[test]
fn certificate_seeds() {
    let (key, ca) = (sample("key.pem"), sample("ca.pem"));
    for (name, data) in seeds("certificate") {
        let parsed = parse_certificates(&data);
        let report = BundleCheck::files(&data, &key, Some(&ca)).check(at());
        if name == "swapped-key" {
            assert!(parsed.is_err());
            continue;
        }
        let certs = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(certs.iter().all(|c| CertSummary::from_der(c).is_some()));
        assert!(report.is_valid(), "{name}: {:?}", report.problems);
    }
}

#[test]
fn key_seeds() {
    let cert = CertificateDer::from(sample("cert.der"));
    for (name, data) in seeds("key") {
        let plain = parse_private_key(&data, None);
        let with_pw = parse_private_key(&data, Some(b"pw"));
        match name.as_str() {
            "swapped-cert" | "legacy-encrypted" => assert!(with_pw.is_err(), "{name}"),
            "encrypted" => {
                assert!(plain.is_err());
                assert!(key_matches(&with_pw.unwrap(), &cert));
            }
            "pkcs1" | "ed25519" => {
                let key = plain.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!key_matches(&key, &cert), "{name}");
            }
            _ => {
                let key = plain.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(key_matches(&key, &cert), "{name}");
            }
        }
    }
}

#[test]
fn ca_seeds() {
    let (cert, key) = (sample("cert.pem"), sample("key.pem"));
    for (name, data) in seeds("ca") {
        let report = BundleCheck::files(&cert, &key, Some(&data)).check(at());
        assert!(report.problems.iter().all(|p| p.file == FileKind::Ca));
        assert!(!report.chain.is_empty());
        if name == "der" {
            // A DER file holds one certificate: the intermediate, without its root.
            assert_eq!(report.codes(), vec![Code::Chain(VerifyCode::RootMissing)]);
        } else {
            assert!(report.is_valid(), "{name}: {:?}", report.problems);
        }
    }
}

#[test]
fn pkcs12_seeds() {
    for (name, data) in seeds("pkcs12") {
        let password = if name == "no-password" { "" } else { "pw" };
        let contents = parse_pkcs12(&data, password).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!contents.certs.is_empty());
        let report = BundleCheck::pkcs12(&data, password).check(at());
        if contents.certs.len() == 1 {
            // Exported without `-certfile`: the authority is missing.
            assert_eq!(
                report.codes(),
                vec![Code::Chain(VerifyCode::ChainIncomplete)]
            );
        } else {
            assert!(report.is_valid(), "{name}: {:?}", report.problems);
        }
    }
}
