//! Runs every SERVER case of the vendored x509-limbo suite through `verify_path`, twice: with
//! `Strictness::Pedantic` (every profile rule a problem, as the suite expects) and with
//! `Strictness::Standard` (the default, which `bmcert check` and `CertManager` use: CA/Browser
//! Forum profile rules are warnings). Each run has its own recorded baseline and fails when
//! the number of agreeing verdicts drops below it.
//!
//! `cargo test -p bmcert-verify --test limbo -- --nocapture` prints every disagreement of
//! both runs; set `LIMBO_CASE=<id>` to print the findings of one case.

// Test code: a failed fixture step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;

use bmcert_topology::{DomainName, Host};
use bmcert_verify::{verify_path, Options, PathInput, Strictness};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use serde_json::Value;

/// Cases that must agree under `Strictness::Pedantic`; raise it when conformance improves
/// (docs/conformance.md).
const BASELINE_PASS: usize = 186;

/// Cases that must agree under `Strictness::Standard`, the product's default; raise it when
/// conformance improves (docs/conformance.md).
const BASELINE_PASS_STANDARD: usize = 160;

/// Feature tags this crate does not implement; such cases are recorded as SKIPPED.
const UNSUPPORTED_FEATURES: &[&str] = &[];

fn load() -> Value {
    let gz = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/limbo-server.json.gz"
    ))
    .unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut json)
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

fn certs(v: &Value) -> Vec<CertificateDer<'static>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_str().unwrap().as_bytes()).unwrap())
        .collect()
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Success,
    Failure,
    Skipped,
}

struct Run {
    id: String,
    expected: Outcome,
    actual: Outcome,
    importance: String,
    detail: String,
}

fn run_case(case: &Value, strictness: Strictness) -> Run {
    let id = case["id"].as_str().unwrap().to_owned();
    let expected = match case["expected_result"].as_str().unwrap() {
        "SUCCESS" => Outcome::Success,
        _ => Outcome::Failure,
    };
    let importance = case["importance"].as_str().unwrap_or("").to_owned();
    let features: Vec<&str> = case["features"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(f) = features.iter().find(|f| UNSUPPORTED_FEATURES.contains(f)) {
        return Run {
            id,
            expected,
            actual: Outcome::Skipped,
            importance,
            detail: format!("feature {f}"),
        };
    }
    let leaf =
        CertificateDer::from_pem_slice(case["peer_certificate"].as_str().unwrap().as_bytes())
            .unwrap();
    let anchors = certs(&case["trusted_certs"]);
    let pool = certs(&case["untrusted_intermediates"]);
    let crls: Vec<CertificateRevocationListDer<'static>> = case["crls"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    CertificateRevocationListDer::from_pem_slice(p.as_str().unwrap().as_bytes())
                        .unwrap()
                })
                .collect()
        })
        .unwrap_or_default();
    let time = match case["validation_time"].as_str() {
        Some(t) => {
            let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .unwrap();
            UnixTime::since_unix_epoch(core::time::Duration::from_secs(t.unix_timestamp() as u64))
        }
        None => UnixTime::now(),
    };
    // The reference name. A name this crate's `Host` refuses cannot match anything.
    let reference = match &case["expected_peer_name"] {
        Value::Null => None,
        peer => {
            let value = peer["value"].as_str().unwrap();
            let host = match peer["kind"].as_str().unwrap() {
                "DNS" => DomainName::new(value).map(Host::Dns).ok(),
                "IP" => value.parse().map(Host::Ip).ok(),
                _ => None,
            };
            match host {
                Some(h) => Some(h),
                None => {
                    return Run {
                        id,
                        expected,
                        actual: Outcome::Failure,
                        importance,
                        detail: format!("reference {value:?} is not a host name"),
                    }
                }
            }
        }
    };
    // Only the serverAuth EKU and digitalSignature-style KU appear here; verify_path always
    // requires serverAuth (when an EKU is present), as a TLS client does.
    let mut options = Options::with_strictness(strictness);
    options.max_chain_depth = case["max_chain_depth"].as_u64().map(|d| d as usize);
    let verdict = verify_path(
        &PathInput {
            leaf: &leaf,
            anchors: &anchors,
            intermediates: &pool,
            crls: &crls,
            reference: reference.as_ref(),
            time,
        },
        &options,
    );
    let actual = if verdict.is_valid() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let detail = verdict
        .findings
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(" | ");
    Run {
        id,
        expected,
        actual,
        importance,
        detail,
    }
}

/// Runs every case (or only `LIMBO_CASE`) with `strictness`, prints the disagreements, and
/// returns the runs, or `None` when `LIMBO_CASE` selects one case.
fn run_all(strictness: Strictness) -> Option<Vec<Run>> {
    let suite = load();
    let cases = suite["testcases"].as_array().unwrap();
    assert_eq!(cases.len(), 198);
    let only = std::env::var("LIMBO_CASE").ok();
    let mut runs = Vec::new();
    for case in cases {
        if only
            .as_deref()
            .is_some_and(|o| o != case["id"].as_str().unwrap())
        {
            continue;
        }
        runs.push(run_case(case, strictness));
    }
    let pass = runs.iter().filter(|r| r.actual == r.expected).count();
    let skipped = runs.iter().filter(|r| r.actual == Outcome::Skipped).count();
    for r in &runs {
        if r.actual != r.expected || only.is_some() {
            println!(
                "{strictness:?} {:<8} {} expected {:?} got {:?} [{}] {}",
                if r.actual == r.expected {
                    "AGREE"
                } else {
                    "DISAGREE"
                },
                r.id,
                r.expected,
                r.actual,
                r.importance,
                r.detail
            );
        }
    }
    println!(
        "limbo ({strictness:?}): {pass} of {} agree, {skipped} skipped",
        runs.len()
    );
    only.is_none().then_some(runs)
}

fn pass_count(runs: &[Run]) -> usize {
    runs.iter().filter(|r| r.actual == r.expected).count()
}

/// Valid chains refused (expected SUCCESS, got FAILURE).
fn refused_valid(runs: &[Run]) -> Vec<&str> {
    runs.iter()
        .filter(|r| r.expected == Outcome::Success && r.actual == Outcome::Failure)
        .map(|r| r.id.as_str())
        .collect()
}

/// Cases of importance high or critical that disagree.
fn important_missed(runs: &[Run]) -> Vec<&str> {
    runs.iter()
        .filter(|r| matches!(r.importance.as_str(), "high" | "critical") && r.actual != r.expected)
        .map(|r| r.id.as_str())
        .collect()
}

#[test]
fn limbo_server_cases_meet_the_baseline() {
    let Some(runs) = run_all(Strictness::Pedantic) else {
        return;
    };
    let pass = pass_count(&runs);
    let important_missed = important_missed(&runs);
    assert!(
        important_missed.is_empty(),
        "high/critical cases missed: {important_missed:?}"
    );
    let refused_valid = refused_valid(&runs);
    assert!(
        refused_valid
            .iter()
            .all(|id| KNOWN_REFUSED_VALID.contains(id)),
        "valid chains refused beyond the documented ones: {refused_valid:?}"
    );
    assert!(
        pass >= BASELINE_PASS,
        "only {pass} limbo cases agree; the recorded baseline is {BASELINE_PASS}"
    );
}

/// The same cases in the mode the product uses (`bmcert check`, `CertManager`).
#[test]
fn limbo_server_cases_meet_the_standard_baseline() {
    let Some(runs) = run_all(Strictness::Standard) else {
        return;
    };
    let pass = pass_count(&runs);
    let important_missed = important_missed(&runs);
    assert!(
        important_missed.is_empty(),
        "high/critical cases missed in Standard mode: {important_missed:?}"
    );
    let refused_valid = refused_valid(&runs);
    assert!(
        refused_valid
            .iter()
            .all(|id| KNOWN_REFUSED_VALID.contains(id)),
        "valid chains refused in Standard mode beyond the documented ones: {refused_valid:?}"
    );
    assert!(
        pass >= BASELINE_PASS_STANDARD,
        "only {pass} limbo cases agree in Standard mode; the recorded baseline is {BASELINE_PASS_STANDARD}"
    );
}

/// Valid chains webpki refuses and this crate therefore refuses too (docs/conformance.md).
/// Every one is refused by rustls-webpki itself (so by every rustls client), and the first two
/// are also the product rule `leaf_is_ca`; accepting them would need weakening webpki.
const KNOWN_REFUSED_VALID: &[&str] = &[
    "rfc5280::ca-as-leaf",
    "pathlen::validation-ignores-pathlen-in-leaf",
    "pathlen::self-issued-certs-pathlen",
    "rfc5280::nc::permitted-self-issued",
    "rfc5280::nc::permitted-dn-match",
];
