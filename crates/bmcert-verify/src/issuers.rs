//! Which certificate can have signed which: the index that keeps path building near-linear.
//!
//! rustls-webpki looks for the issuer of each certificate by scanning (and parsing) the whole
//! untrusted pool, and checks signatures only when a candidate path reaches a trust anchor.
//! A CA file of thousands of certificates that share an intermediate's name makes that
//! search quadratic, and its signature budget then refuses the bundle although the valid
//! chain is in the file (issue 13). So before webpki runs, this module finds the
//! certificates that can be on a valid path at all:
//!
//! * candidates are indexed by subject name (byte for byte, as webpki compares them), so
//!   finding the possible issuers of a certificate costs one lookup, not a scan;
//! * a candidate whose subject key identifier differs from the child's authority key
//!   identifier is set aside in a first pass (RFC 5280 4.2.1.1: the AKI names the signing
//!   key); only when no valid path is found among the others does a second pass try them;
//! * signatures choose between candidates: a certificate with a single candidate issuer
//!   (the usual chain) costs no check here, as webpki checks the path anyway; where there
//!   are several, each signature is checked at most once per (certificate, issuer key)
//!   pair, and a budget caps the checks: when it runs out the search stops and says so,
//!   instead of spending seconds of CPU on a hostile file.
//!
//! webpki then validates over the anchors and intermediates selected here only. Certificates
//! on a valid path are linked by matching names and verifying signatures, so every one of
//! them is selected: the verdict is the one webpki gives on the whole input, minus the
//! candidates that could only fail.

use core::cell::{Cell, RefCell};
use std::collections::HashMap;

use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Reader, SliceReader, Tag, TagNumber};
use rustls_pki_types::CertificateDer;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};

use crate::light::CertRef;
use crate::Cache;

/// The most signatures one verification checks in its own search (webpki's own search over
/// what is selected has its budget too). At about 50 µs a check (P-256; RSA-2048 is faster)
/// this bounds the search to a few tens of milliseconds.
pub(crate) const SIGNATURE_BUDGET: usize = 1024;

/// The pool size up to which a certificate this module cannot read makes it hand the whole
/// input to webpki.
pub(crate) const SMALL_POOL: usize = 64;

/// The signed part of a certificate, borrowed from its DER.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signed<'a> {
    /// The whole tbsCertificate TLV: the signed bytes.
    tbs: &'a [u8],
    /// The contents of the signature AlgorithmIdentifier.
    alg: &'a [u8],
    /// The signature (a BIT STRING without unused bits).
    sig: &'a [u8],
}

/// A certificate's subject public key, borrowed from its DER.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PublicKey<'a> {
    /// The whole SubjectPublicKeyInfo TLV (the memo key: equal keys verify alike).
    spki: &'a [u8],
    /// The contents of its AlgorithmIdentifier.
    alg: &'a [u8],
    /// The key bits.
    key: &'a [u8],
}

/// Splits a certificate into what signature checks need, without copying.
pub(crate) fn parts(der: &[u8]) -> Option<(Signed<'_>, PublicKey<'_>)> {
    let outer = AnyRef::from_der(der).ok()?;
    let mut r = SliceReader::new(outer.value()).ok()?;
    let tbs = r.tlv_bytes().ok()?;
    let alg = AnyRef::from_der(r.tlv_bytes().ok()?).ok()?.value();
    let sig = BitStringRef::from_der(r.tlv_bytes().ok()?).ok()?;
    if sig.unused_bits() != 0 {
        return None;
    }
    let mut t = SliceReader::new(AnyRef::from_der(tbs).ok()?.value()).ok()?;
    if Tag::peek(&t).ok()?
        == (Tag::ContextSpecific {
            constructed: true,
            number: TagNumber(0),
        })
    {
        t.tlv_bytes().ok()?; // version
    }
    for _ in 0..5 {
        // serialNumber, signature, issuer, validity, subject
        t.tlv_bytes().ok()?;
    }
    let spki = t.tlv_bytes().ok()?;
    let mut s = SliceReader::new(AnyRef::from_der(spki).ok()?.value()).ok()?;
    let key_alg = AnyRef::from_der(s.tlv_bytes().ok()?).ok()?.value();
    let bits = BitStringRef::from_der(s.tlv_bytes().ok()?).ok()?;
    if bits.unused_bits() != 0 {
        return None;
    }
    Some((
        Signed {
            tbs,
            alg,
            sig: sig.raw_bytes(),
        },
        PublicKey {
            spki,
            alg: key_alg,
            key: bits.raw_bytes(),
        },
    ))
}

/// A signature check: the child's signed bytes and the issuer's SubjectPublicKeyInfo.
type Pair<'a> = (&'a [u8], &'a [u8]);

/// Signature checks with a memo and a budget, shared by the search and the diagnosis.
#[derive(Debug, Default)]
pub(crate) struct Signatures<'a> {
    memo: RefCell<HashMap<Pair<'a>, bool>>,
    checks: Cell<usize>,
}

impl<'a> Signatures<'a> {
    /// Whether `child` is signed by `issuer`'s key: `None` once the budget is spent.
    pub(crate) fn verifies(&self, child: &Signed<'a>, issuer: &PublicKey<'a>) -> Option<bool> {
        let key = (child.tbs, issuer.spki);
        if let Some(&known) = self.memo.borrow().get(&key) {
            return Some(known);
        }
        if self.checks.get() >= SIGNATURE_BUDGET {
            return None;
        }
        self.checks.set(self.checks.get() + 1);
        // As webpki's verify_signed_data: the algorithm must match both the signature's
        // identifier and the key's.
        let ok = webpki::ALL_VERIFICATION_ALGS
            .iter()
            .filter(|a| {
                a.signature_alg_id().as_ref() == child.alg
                    && a.public_key_alg_id().as_ref() == issuer.alg
            })
            .any(|a| a.verify_signature(issuer.key, child.tbs, child.sig).is_ok());
        self.memo.borrow_mut().insert(key, ok);
        Some(ok)
    }

    /// How many signatures were verified (memo hits not counted).
    #[cfg(test)]
    pub(crate) fn checks(&self) -> usize {
        self.checks.get()
    }
}

/// One certificate of the search.
struct Node<'a> {
    subject: &'a [u8],
    issuer: &'a [u8],
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
    signed: Signed<'a>,
    key: PublicKey<'a>,
}

impl<'a> Node<'a> {
    /// `None` when the certificate cannot be read here (webpki then decides about it).
    fn new(der: &'a [u8], cert: Option<&CertRef<'a>>) -> Option<Self> {
        let cert = cert?;
        let (signed, key) = parts(der)?;
        let ski = match cert.get::<SubjectKeyIdentifier>() {
            Some(Ok((_, ski))) => Some(ski.0.as_bytes().to_vec()),
            _ => None,
        };
        let aki = match cert.get::<AuthorityKeyIdentifier>() {
            Some(Ok((_, aki))) => aki.key_identifier.map(|k| k.as_bytes().to_vec()),
            _ => None,
        };
        Some(Self {
            subject: cert.tbs.subject.value(),
            issuer: cert.tbs.issuer.value(),
            ski,
            aki,
            signed,
            key,
        })
    }
}

/// True unless both key identifiers are present and differ.
fn keys_agree(child_aki: Option<&[u8]>, issuer_ski: Option<&[u8]>) -> bool {
    match (child_aki, issuer_ski) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    }
}

/// The anchors and intermediates a path can use, as indices into the given lists.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    pub(crate) anchors: Vec<usize>,
    pub(crate) pool: Vec<usize>,
    /// Some candidate was set aside because its key identifier differs from the AKI.
    pub(crate) set_aside: bool,
    /// The budget ran out: the name whose candidates were being checked, and how many
    /// certificates carry it.
    pub(crate) stopped_at: Option<(Vec<u8>, usize)>,
}

/// The search space: the leaf, the anchors and the untrusted pool, indexed by subject.
pub(crate) struct Issuers<'a> {
    leaf: Option<Node<'a>>,
    anchors: Vec<Option<Node<'a>>>,
    pool: Vec<Option<Node<'a>>>,
    anchors_by_subject: HashMap<&'a [u8], Vec<usize>>,
    pool_by_subject: HashMap<&'a [u8], Vec<usize>>,
}

impl<'a> Issuers<'a> {
    /// Indexes the inputs, read through `cache`.
    pub(crate) fn new(
        (leaf, leaf_cert): (&'a [u8], &CertRef<'a>),
        anchors: &[&'a CertificateDer<'a>],
        pool: &[&'a CertificateDer<'a>],
        cache: &Cache<'a>,
    ) -> Self {
        let node = |der: &'a [u8]| Node::new(der, cache.get(der));
        let anchors: Vec<Option<Node<'a>>> = anchors.iter().map(|&d| node(d.as_ref())).collect();
        let pool: Vec<Option<Node<'a>>> = pool.iter().map(|&d| node(d.as_ref())).collect();
        Self {
            leaf: Node::new(leaf, Some(leaf_cert)),
            anchors_by_subject: by_subject(&anchors),
            pool_by_subject: by_subject(&pool),
            anchors,
            pool,
        }
    }

    /// Selects the anchors and intermediates reachable from the leaf through issuer links
    /// whose signature verifies. With `trust_aki`, candidates whose key identifier differs
    /// from the child's AKI are set aside. A certificate this module cannot read is always
    /// selected: webpki decides about it. Its own issuers cannot be looked up, so with such
    /// a certificate in a pool of at most [`SMALL_POOL`] the whole input is selected
    /// (webpki's own budgets bound that); in a larger pool, a path through it is found only
    /// when its issuers are reachable otherwise.
    pub(crate) fn select(&self, sigs: &Signatures<'a>, trust_aki: bool) -> Selection {
        let mut out = Selection::default();
        if self.pool.len() <= SMALL_POOL && self.pool.iter().any(Option::is_none) {
            out.anchors = (0..self.anchors.len()).collect();
            out.pool = (0..self.pool.len()).collect();
            return out;
        }
        let mut anchor_used = vec![false; self.anchors.len()];
        let mut pool_used = vec![false; self.pool.len()];
        for (i, n) in self.anchors.iter().enumerate() {
            anchor_used[i] = n.is_none();
        }
        for (i, n) in self.pool.iter().enumerate() {
            pool_used[i] = n.is_none();
        }
        // Children to expand: None is the leaf, Some(i) the pool certificate i.
        let mut queue: Vec<Option<usize>> = vec![None];
        'search: while let Some(child_index) = queue.pop() {
            let child = match child_index {
                None => self.leaf.as_ref(),
                Some(i) => self.pool[i].as_ref(),
            };
            let Some(child) = child else { continue };
            let aki = child.aki.as_deref();
            // The candidates: every certificate named as the child's issuer, without those
            // the key identifiers rule out (first pass). (true, i) is anchor i.
            let mut candidates: Vec<(bool, usize)> = Vec::new();
            for (is_anchor, nodes, index) in [
                (true, &self.anchors, &self.anchors_by_subject),
                (false, &self.pool, &self.pool_by_subject),
            ] {
                for &c in index
                    .get(child.issuer)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let Some(issuer) = nodes[c].as_ref() else {
                        continue;
                    };
                    if trust_aki && !keys_agree(aki, issuer.ski.as_deref()) {
                        out.set_aside = true;
                    } else {
                        candidates.push((is_anchor, c));
                    }
                }
            }
            // A single candidate needs no signature check to be selected: webpki checks it.
            // Only a choice between candidates is made by their signatures.
            let choose = candidates.len() > 1;
            for (is_anchor, c) in candidates {
                let (nodes, used) = if is_anchor {
                    (&self.anchors, &mut anchor_used)
                } else {
                    (&self.pool, &mut pool_used)
                };
                if used[c] {
                    continue;
                }
                let Some(issuer) = nodes[c].as_ref() else {
                    continue;
                };
                let signed = if choose {
                    sigs.verifies(&child.signed, &issuer.key)
                } else {
                    Some(true)
                };
                match signed {
                    Some(true) => {
                        used[c] = true;
                        if !is_anchor {
                            queue.push(Some(c));
                        }
                    }
                    Some(false) => {}
                    None => {
                        let count = self
                            .anchors_by_subject
                            .get(child.issuer)
                            .map_or(0, Vec::len)
                            + self.pool_by_subject.get(child.issuer).map_or(0, Vec::len);
                        out.stopped_at = Some((child.issuer.to_vec(), count));
                        break 'search;
                    }
                }
            }
        }
        out.anchors = positions(&anchor_used);
        out.pool = positions(&pool_used);
        out
    }
}

fn by_subject<'a>(nodes: &[Option<Node<'a>>]) -> HashMap<&'a [u8], Vec<usize>> {
    let mut map: HashMap<&'a [u8], Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(n) = n {
            map.entry(n.subject).or_default().push(i);
        }
    }
    map
}

fn positions(used: &[bool]) -> Vec<usize> {
    used.iter()
        .enumerate()
        .filter(|(_, u)| **u)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_identifiers_disagree_only_when_both_present_and_different() {
        assert!(keys_agree(None, None));
        assert!(keys_agree(Some(b"a"), None));
        assert!(keys_agree(None, Some(b"a")));
        assert!(keys_agree(Some(b"a"), Some(b"a")));
        assert!(!keys_agree(Some(b"a"), Some(b"b")));
    }

    use bmcert_test::chains::{look_alikes, Alg, Chain3};

    /// The file: look-alikes first, then the real intermediate, the root apart.
    struct Hostile {
        leaf: Vec<u8>,
        anchors: Vec<CertificateDer<'static>>,
        pool: Vec<CertificateDer<'static>>,
    }

    fn hostile(n: usize) -> Hostile {
        let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
        let mut pool: Vec<CertificateDer<'static>> =
            look_alikes(&chain.intermediate, &chain.root, n)
                .into_iter()
                .map(CertificateDer::from)
                .collect();
        pool.push(chain.intermediate.der.clone().into());
        Hostile {
            leaf: chain.leaf.der.clone(),
            anchors: vec![chain.root.der.clone().into()],
            pool,
        }
    }

    fn select<'a>(h: &'a Hostile, sigs: &Signatures<'a>, trust_aki: bool) -> Selection {
        let cache = Cache::new(&[&h.anchors, &h.pool]);
        let leaf = CertRef::parse(&h.leaf).unwrap();
        let anchors: Vec<&CertificateDer<'_>> = h.anchors.iter().collect();
        let pool: Vec<&CertificateDer<'_>> = h.pool.iter().collect();
        let issuers = Issuers::new((&h.leaf, &leaf), &anchors, &pool, &cache);
        issuers.select(sigs, trust_aki)
    }

    #[test]
    fn key_identifiers_cut_the_search_to_one_signature_check_per_link() {
        let h = hostile(1_000);
        let sigs = Signatures::default();
        let sel = select(&h, &sigs, true);
        // One candidate per link once the key identifiers are read: no check needed to
        // select them (webpki checks the path), whatever the file holds.
        assert_eq!(sigs.checks(), 0);
        assert_eq!(sel.pool, vec![1_000]);
        assert_eq!(sel.anchors, vec![0]);
        assert!(sel.set_aside && sel.stopped_at.is_none());
    }

    #[test]
    fn each_signature_is_checked_once_per_pair() {
        let h = hostile(500);
        let sigs = Signatures::default();
        let sel = select(&h, &sigs, false);
        // Every look-alike and the intermediate once against the leaf; the root, the only
        // candidate for the intermediate, needs no check.
        assert_eq!(sigs.checks(), 501);
        assert_eq!(sel.pool, vec![500]);
        // Asking again costs nothing: the memo answers.
        let again = select(&h, &sigs, false);
        assert_eq!(sigs.checks(), 501);
        assert_eq!(again.pool, vec![500]);
    }

    #[test]
    fn the_budget_stops_the_search_and_names_the_crowded_name() {
        let h = hostile(SIGNATURE_BUDGET + 10);
        let sigs = Signatures::default();
        let sel = select(&h, &sigs, false);
        assert_eq!(sigs.checks(), SIGNATURE_BUDGET);
        let (name, count) = sel.stopped_at.expect("stopped");
        assert_eq!(count, SIGNATURE_BUDGET + 11);
        assert!(crate::light::name_text(&name).contains("bmcert Test Intermediate"));
    }

    #[test]
    fn an_unreadable_certificate_in_a_small_pool_hands_everything_to_webpki() {
        let mut h = hostile(3);
        h.pool
            .insert(0, CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]));
        let sigs = Signatures::default();
        let sel = select(&h, &sigs, true);
        assert_eq!(sel.pool, vec![0, 1, 2, 3, 4]);
        assert_eq!(sigs.checks(), 0);
        // In a large pool it is kept, and the search goes on as usual.
        let mut h = hostile(SMALL_POOL);
        h.pool.insert(0, CertificateDer::from(vec![0x30, 0x00]));
        let sel = select(&h, &sigs, true);
        assert_eq!(sel.pool, vec![0, SMALL_POOL + 1]);
    }

    #[test]
    fn parts_refuses_what_is_not_a_certificate() {
        assert!(parts(&[]).is_none());
        assert!(parts(&[0x30, 0x00]).is_none());
        assert!(parts(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
    }
}
