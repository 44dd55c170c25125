//! The seed corpus of the `verify_path` fuzz target (`fuzz/corpus/verify_path/`, written by
//! `fuzz/make-corpus.sh`) on stable: each seed decodes as the target decodes it and gets the
//! verdict its file name says (`valid`, or the code it must carry, after an optional
//! `group-` prefix), so the seeds really reach path building and diagnosis.

// Test code: a failed fixture step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use bmcert_topology::Host;
use bmcert_verify::{verify, ChainCode, ChainInput};
use rustls_pki_types::{CertificateDer, UnixTime};

/// The target's input format (fuzz/fuzz_targets/verify_path.rs): records of a 2-byte
/// big-endian header (top 2 bits the destination, low 14 bits the length) and the DER.
fn records(mut data: &[u8]) -> Vec<(u8, CertificateDer<'static>)> {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = data {
        let len = (usize::from(*hi & 0x3f) << 8 | usize::from(*lo)).min(rest.len());
        out.push((*hi >> 6, CertificateDer::from(rest[..len].to_vec())));
        data = &rest[len..];
    }
    out
}

#[test]
fn every_seed_gets_the_verdict_its_name_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/verify_path");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(entry.path()).unwrap();
        let mut recs = records(&data).into_iter();
        let (_, leaf) = recs.next().unwrap();
        let (mut extras, mut ca, mut platform) = (Vec::new(), Vec::new(), Vec::new());
        for (dest, cert) in recs {
            // Every record is a whole certificate: the header's length is exact.
            assert!(cert.len() > 300, "{name}: record of {} bytes", cert.len());
            match dest {
                1 => extras.push(cert),
                2 => platform.push(cert),
                _ => ca.push(cert),
            }
        }
        let host = Host::parse("mail.example.test").unwrap();
        let v = verify(&ChainInput {
            leaf: &leaf,
            cert_file_extras: &extras,
            ca_file: &ca,
            platform_roots: &platform,
            reference: Some(&host),
            // The target's time, 2026-06-01.
            time: UnixTime::since_unix_epoch(core::time::Duration::from_secs(1_780_272_000)),
        });
        let expected = name.rsplit('-').next().unwrap();
        if expected == "valid" {
            assert!(v.is_valid(), "{name}: {:?}", v.findings);
            assert!(v.findings.is_empty(), "{name}: {:?}", v.findings);
        } else {
            let code = ChainCode::ALL
                .iter()
                .find(|c| c.as_str() == expected)
                .unwrap_or_else(|| panic!("{name}: no code {expected}"));
            assert!(v.has(*code), "{name}: {:?}", v.findings);
        }
        seen.push(expected.to_owned());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "ca_expired",
            "chain_in_cert_file",
            "chain_incomplete",
            "chain_invalid",
            "chain_reordered",
            "extra_certificates",
            "root_from_platform",
            "root_missing",
            "valid",
            "valid",
            "weak_signature",
        ],
        "the seeds make-corpus.sh writes"
    );
}
