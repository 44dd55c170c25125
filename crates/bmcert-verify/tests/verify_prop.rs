//! Path building never panics: arbitrary bytes, and real chains with bytes flipped.

// Test code: a failed fixture step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use bmcert_test::chains::{Alg, Chain3, TEST_TIME};
use bmcert_topology::Host;
use bmcert_verify::{verify, ChainInput};
use proptest::prelude::*;
use rustls_pki_types::{CertificateDer, UnixTime};

fn chain() -> &'static Chain3 {
    static CHAIN: OnceLock<Chain3> = OnceLock::new();
    CHAIN.get_or_init(|| Chain3::new(Alg::P256, &["mail.example.test"]))
}

fn run(leaf: Vec<u8>, ca: Vec<Vec<u8>>) -> bool {
    let leaf = CertificateDer::from(leaf);
    let ca: Vec<CertificateDer<'static>> = ca.into_iter().map(CertificateDer::from).collect();
    let host = Host::parse("mail.example.test").unwrap();
    let v = verify(&ChainInput {
        leaf: &leaf,
        cert_file_extras: &[],
        ca_file: &ca,
        platform_roots: &[],
        reference: Some(&host),
        time: UnixTime::since_unix_epoch(core::time::Duration::from_secs(TEST_TIME)),
    });
    // Every refusal explains itself.
    v.is_valid() || v.first_problem().is_some_and(|f| !f.message.is_empty())
}

proptest! {
    #[test]
    fn arbitrary_bytes_give_a_verdict(
        leaf in prop::collection::vec(any::<u8>(), 0..200),
        ca in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4),
    ) {
        prop_assert!(run(leaf, ca));
    }

    #[test]
    fn flipped_bytes_in_a_real_chain_give_a_verdict(
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let c = chain();
        let mut certs = [c.leaf.der.clone(), c.intermediate.der.clone(), c.root.der.clone()];
        let i = at.index(certs[which].len());
        certs[which][i] ^= xor;
        let [leaf, inter, root] = certs;
        prop_assert!(run(leaf, vec![inter, root]));
    }
}
