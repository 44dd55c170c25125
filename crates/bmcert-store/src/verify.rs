//! The proof that a bundle is whole, run on every bundle a store writes or hands out.
//!
//! # Where it lives, and why
//!
//! A [`Bundle`](crate::Bundle) can only be made by [`Bundle::new`](crate::Bundle::new) or
//! [`Bundle::verified`](crate::Bundle::verified), and both run [`prove`]: every certificate
//! of the chain parses as X.509, the private key signs for the leaf (the upload's own key
//! proof, [`bmcert_bundle::prove_key`]: a real signature verified with the leaf's public
//! key), and the metadata agrees with the leaf (its fingerprint, names and notAfter are
//! the certificate's). Every backend builds the bundles it reads through that constructor,
//! so holding a `Bundle` proves it, whatever the backend, and a backend cannot forget the
//! check on one read path: the directory store and the etcd store share this one function.
//!
//! The store depends on `bmcert-bundle` for this (not the other way round: the bundle crate
//! is sans-I/O and knows nothing of stores), rather than the facade checking what the store
//! returns: the resolver, the renewer and the ACME client read the store directly, and
//! must get the same guarantee as `bmcert list` and `bmcert export`.
//!
//! # Cost
//!
//! A proof costs one signature (tens of microseconds for ECDSA, about a millisecond for
//! RSA 2048) plus parsing. Proven bundles are remembered by a SHA-256 digest of their
//! bytes (chain, key encoding and key), with the leaf's facts, so reading the same bytes
//! again (the resolver's reload, a renewal pass, `list` in a long-running service) costs a
//! hash. The memo holds digests only, never key bytes, and is bounded.

use core::fmt;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use bmcert_bundle::{CertError, CertSummary, KeyProofError};
use bmcert_topology::Target;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::types::{BundleMeta, Fingerprint, SecretKey};

/// Which part of a stored bundle is damaged: each backend maps it to its file or value.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The certificate chain (directory store: `cert.pem`).
    Certificate,
    /// The private key (directory store: `key.pem`).
    Key,
    /// The metadata (directory store: `meta.json`).
    Metadata,
    /// Which version is current (directory store: the target's `state.json`; etcd: the
    /// target's history value).
    State,
    /// The bundle as one stored value (etcd keeps chain, key and metadata together).
    Whole,
}

/// What is wrong with a stored bundle. Messages never contain key material.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// A part the store's state refers to is missing.
    #[error("it is missing")]
    Missing(Part),
    /// A part cannot be read or decoded (I/O error, bad PEM or JSON, truncated value).
    #[error("it cannot be read: {reason}")]
    Unreadable {
        /// The part.
        part: Part,
        /// What the reader said (never the content).
        reason: String,
    },
    /// The chain has no certificate.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// The key has no bytes.
    #[error("the private key is empty")]
    EmptyKey,
    /// A certificate of the chain is not a valid X.509 certificate.
    #[error("certificate {index} of the chain (counting from 1) is not valid: {error}")]
    Certificate {
        /// 1-based position in the chain (1: the leaf).
        index: usize,
        /// What the parser found.
        error: Box<CertError>,
    },
    /// The private key does not sign for the leaf certificate, or cannot be used.
    #[error("{0}")]
    Key(KeyProofError),
    /// The chain is not the one installed: its digest is not the one recorded with it
    /// (a certificate edited or damaged in a way that still parses).
    #[error(
        "the certificate chain is not the one installed (SHA-256 {actual}, {recorded} recorded)"
    )]
    Chain {
        /// The digest recorded at install.
        recorded: Box<str>,
        /// The digest of the chain read.
        actual: Box<str>,
    },
    /// The metadata says something else than the leaf certificate.
    #[error("the recorded {field} ({recorded}) is not the certificate's ({actual})")]
    Metadata {
        /// `fingerprint`, `names`, `not_after` or `not_before`.
        field: &'static str,
        /// What the metadata says.
        recorded: Box<str>,
        /// What the certificate says.
        actual: Box<str>,
    },
}

impl Damage {
    /// The part of the bundle that is damaged.
    pub fn part(&self) -> Part {
        match self {
            Self::Missing(part) | Self::Unreadable { part, .. } => *part,
            Self::EmptyChain | Self::Certificate { .. } | Self::Chain { .. } => Part::Certificate,
            Self::EmptyKey | Self::Key(_) => Part::Key,
            Self::Metadata { .. } => Part::Metadata,
        }
    }
}

/// A target whose stored certificate failed the proof: which target, where, and what is
/// wrong. [`StoreError::Damaged`](crate::StoreError::Damaged) carries it from
/// [`Store::current`](crate::Store::current), and [`Store::list`](crate::Store::list) lists
/// it in the target's place, so that every other target keeps working.
///
/// The message ends with the advice that repairs it: installing a fresh certificate
/// (`bmcert install`, or `bmcert acme issue`) replaces the damaged version, and
/// `bmcert disable` (domains) deletes it; both work on a damaged target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damaged {
    /// The target.
    pub target: Target,
    /// The damaged version, when the store could tell which.
    pub version: Option<u64>,
    /// Where: the file (directory store) or the etcd key.
    pub location: String,
    /// What is wrong.
    pub damage: Damage,
}

impl Damaged {
    /// What repairs it, in words (commands of the `bmcert` tool).
    pub fn advice(&self) -> String {
        let target = &self.target;
        match target {
            Target::System => format!(
                "install a fresh certificate (bmcert install --target {target} ..., or bmcert acme issue --target {target}); the damaged version is then replaced"
            ),
            Target::Domain(_) => format!(
                "install a fresh certificate (bmcert install --target {target} ..., or bmcert acme issue --target {target}) or disable the domain (bmcert disable --target {target}); either replaces the damaged version"
            ),
        }
    }
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the stored certificate of {} is damaged", self.target)?;
        if let Some(v) = self.version {
            write!(f, " (version {v})")?;
        }
        write!(f, ": {}: {}; {}", self.location, self.damage, self.advice())
    }
}

impl std::error::Error for Damaged {}

// `Store::list` returns `Result<Listed, Damaged>` rows: keep the error small.
const _: () = assert!(size_of::<Damaged>() < 128);

/// What the store needs to know about a leaf certificate: its fingerprint, the names it
/// covers, its notAfter and notBefore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeafFacts {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) names: Vec<String>,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) not_before: OffsetDateTime,
}

impl LeafFacts {
    /// Reads them from the leaf's DER.
    pub(crate) fn of(leaf: &CertificateDer<'_>) -> Result<Self, Damage> {
        let summary = parse(1, leaf)?;
        Ok(Self {
            fingerprint: Fingerprint::of(leaf),
            names: summary.names(),
            not_after: OffsetDateTime::from_unix_timestamp(summary.not_after_unix)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            not_before: OffsetDateTime::from_unix_timestamp(summary.not_before_unix)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        })
    }
}

fn parse(index: usize, der: &CertificateDer<'_>) -> Result<CertSummary, Damage> {
    // The bundle crate's reader (a DER input is one certificate), so the store accepts
    // exactly what an upload accepts.
    bmcert_bundle::parse_certificates(der).map_err(|error| Damage::Certificate {
        index,
        error: Box::new(error),
    })?;
    CertSummary::from_der(der).ok_or_else(|| Damage::Certificate {
        index,
        error: Box::new(CertError::BadCertificate {
            index: 1,
            line: None,
            reason: "it cannot be summarised".into(),
        }),
    })
}

/// How many proven bundles are remembered before the memo starts afresh.
const MEMO_MAX: usize = 16 * 1024;

static PROVEN: Mutex<Option<HashMap<[u8; 32], LeafFacts>>> = Mutex::new(None);

fn digest(chain: &[CertificateDer<'_>], key: &SecretKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"bmcert proven bundle v1\0");
    for cert in chain {
        h.update((cert.len() as u64).to_be_bytes());
        h.update(cert);
    }
    h.update([key.format() as u8]);
    h.update((key.secret_der().len() as u64).to_be_bytes());
    h.update(key.secret_der());
    h.finalize().into()
}

/// Proves chain and key (memoized by digest) and returns the leaf's facts.
fn prove_parts(chain: &[CertificateDer<'_>], key: &SecretKey) -> Result<LeafFacts, Damage> {
    let Some(leaf) = chain.first() else {
        return Err(Damage::EmptyChain);
    };
    if key.secret_der().is_empty() {
        return Err(Damage::EmptyKey);
    }
    let digest = digest(chain, key);
    if let Some(facts) = PROVEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(&digest))
    {
        return Ok(facts.clone());
    }
    let facts = LeafFacts::of(leaf)?;
    for (i, cert) in chain.iter().enumerate().skip(1) {
        parse(i + 1, cert)?;
    }
    bmcert_bundle::prove_key(&key.secret_key_der_ref(), leaf).map_err(Damage::Key)?;
    let mut memo = PROVEN.lock().unwrap_or_else(PoisonError::into_inner);
    let memo = memo.get_or_insert_with(HashMap::new);
    if memo.len() >= MEMO_MAX {
        memo.clear();
    }
    memo.insert(digest, facts.clone());
    Ok(facts)
}

/// The digest a backend records with a chain, so that a later read tells the chain
/// installed from one changed in a way that still parses: SHA-256 over each
/// certificate's length and bytes.
pub(crate) fn chain_digest(chain: &[CertificateDer<'_>]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(b"bmcert chain v1\0");
    for cert in chain {
        h.update((cert.len() as u64).to_be_bytes());
        h.update(cert);
    }
    Fingerprint(h.finalize().into())
}

/// Checks `chain` against the digest recorded with it (none recorded: stores written
/// before the digest existed).
pub(crate) fn check_chain(
    chain: &[CertificateDer<'_>],
    recorded: Option<&Fingerprint>,
) -> Result<(), Damage> {
    let Some(recorded) = recorded else {
        return Ok(());
    };
    let actual = chain_digest(chain);
    if actual == *recorded {
        Ok(())
    } else {
        Err(Damage::Chain {
            recorded: recorded.to_string().into(),
            actual: actual.to_string().into(),
        })
    }
}

/// The proof: every certificate parses, the key signs for the leaf, and `meta` agrees with
/// the leaf (fingerprint, names, notAfter to the second).
pub(crate) fn prove(
    chain: &[CertificateDer<'_>],
    key: &SecretKey,
    meta: &BundleMeta,
) -> Result<(), Damage> {
    let facts = prove_parts(chain, key)?;
    if facts.fingerprint != meta.fingerprint {
        return Err(Damage::Metadata {
            field: "fingerprint",
            recorded: meta.fingerprint.to_string().into(),
            actual: facts.fingerprint.to_string().into(),
        });
    }
    if facts.names != meta.names {
        return Err(Damage::Metadata {
            field: "names",
            recorded: meta.names.join(",").into(),
            actual: facts.names.join(",").into(),
        });
    }
    if facts.not_after.unix_timestamp() != meta.not_after.unix_timestamp() {
        return Err(Damage::Metadata {
            field: "not_after",
            recorded: rfc3339(meta.not_after).into(),
            actual: rfc3339(facts.not_after).into(),
        });
    }
    if let Some(not_before) = meta.not_before {
        if facts.not_before.unix_timestamp() != not_before.unix_timestamp() {
            return Err(Damage::Metadata {
                field: "not_before",
                recorded: rfc3339(not_before).into(),
                actual: rfc3339(facts.not_before).into(),
            });
        }
    }
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
