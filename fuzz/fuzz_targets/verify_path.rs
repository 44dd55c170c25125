//! Path building over arbitrary certificate lists: `verify` (an upload: leaf, certificate file,
//! CA file, platform roots) and `verify_path` (anchors and a pool, pedantic) must return a
//! verdict, never panic, and a valid verdict must hold a chain made of the given certificates.
//!
//! Input: a list of records, each a 2-byte big-endian header then the certificate's DER. The
//! header's low 14 bits are the length (a last record shorter than its length takes what is
//! left); its top 2 bits say where the certificate goes: 0 the CA file, 1 the certificate file
//! (after the leaf), 2 the platform roots, 3 the CA file as well. The first record is the
//! leaf. For `verify_path`, 2 and 3 are the anchors, 0 and 1 the untrusted pool (the seeds
//! mark roots with 3).
//! Real DER contains every byte value, so a length prefix (not a separator byte) is what lets
//! real chains be seeds: `fuzz/make-corpus.sh` writes them to `fuzz/corpus/verify_path/`,
//! and `crates/bmcert-verify/tests/fuzz_seeds.rs` checks each seed's verdict on stable.
#![no_main]

use bmcert_verify::{verify, verify_path, ChainInput, Options, PathInput, Strictness, Verdict};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::{CertificateDer, UnixTime};

/// Splits `data` into (destination, certificate) records.
fn records(mut data: &[u8]) -> Vec<(u8, CertificateDer<'static>)> {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = data {
        let len = (usize::from(*hi & 0x3f) << 8 | usize::from(*lo)).min(rest.len());
        out.push((*hi >> 6, CertificateDer::from(rest[..len].to_vec())));
        data = &rest[len..];
    }
    out
}

/// Every certificate of a valid verdict's chain is one of the inputs.
fn check_chain(verdict: &Verdict, given: &[&CertificateDer<'_>]) {
    if verdict.is_valid() {
        assert!(
            !verdict.chain.is_empty(),
            "valid without a chain: {verdict:?}"
        );
    }
    for c in &verdict.chain {
        assert!(
            given.iter().any(|g| g.as_ref() == c.as_ref()),
            "chain holds a certificate not given"
        );
    }
    for f in &verdict.findings {
        assert!(
            !f.message.is_empty(),
            "finding {:?} without a message",
            f.code
        );
        // Plain and bounded: names from certificates are escaped, long lists cut.
        assert!(
            !f.message.chars().any(bmcert_topology::is_unsafe_char),
            "{:?}",
            f.message
        );
        assert!(f.message.len() < 8192, "{} bytes: {:?}", f.message.len(), f.code);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut records = records(data).into_iter();
    let Some((_, leaf)) = records.next() else {
        return;
    };
    let (mut extras, mut ca, mut platform) = (Vec::new(), Vec::new(), Vec::new());
    let (mut anchors, mut pool) = (Vec::new(), Vec::new());
    for (dest, cert) in records {
        match dest {
            0 | 1 => pool.push(cert.clone()),
            _ => anchors.push(cert.clone()),
        }
        match dest {
            1 => extras.push(cert),
            2 => platform.push(cert),
            _ => ca.push(cert),
        }
    }
    let all: Vec<&CertificateDer<'_>> = extras.iter().chain(&ca).chain(&platform).collect();
    let host = bmcert_topology::Host::parse("mail.example.test").ok();
    // 2026-06-01, inside the validity of the seeds (2020 to 2040; expired seeds end in 2025).
    let time = UnixTime::since_unix_epoch(core::time::Duration::from_secs(1_780_272_000));
    let verdict = verify(&ChainInput {
        leaf: &leaf,
        cert_file_extras: &extras,
        ca_file: &ca,
        platform_roots: &platform,
        reference: host.as_ref(),
        time,
    });
    check_chain(&verdict, &all);
    // The TLS-client view of the same certificates, every profile rule a problem.
    let verdict = verify_path(
        &PathInput {
            leaf: &leaf,
            anchors: &anchors,
            intermediates: &pool,
            crls: &[],
            reference: host.as_ref(),
            time,
        },
        &Options::with_strictness(Strictness::Pedantic),
    );
    check_chain(&verdict, &all);
});
