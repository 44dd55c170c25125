//! Fixtures for tests of renewal over a store (feature `store`): a self-signed [`Bundle`]
//! as a store holds it, and the one-site [`Topology`] the renewal tests serve.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers

use bmcert_store::{Bundle, BundleMeta, Fingerprint, KeyFormat, SecretKey, Source};
use bmcert_topology::{Site, Topology};
use time::OffsetDateTime;

/// A self-signed bundle for `names` (the first is the subject), valid from `not_before` to
/// `not_after`, as if `source` had installed it at `not_before`.
///
/// ```
/// use bmcert_store::Source;
/// use time::{Duration, OffsetDateTime};
///
/// let now = OffsetDateTime::now_utc();
/// let b = bmcert_test::renewal::self_signed_bundle(
///     &["mail.example.test"], now, now + Duration::days(90), Source::Acme);
/// assert_eq!(b.meta().names, ["mail.example.test"]);
/// ```
pub fn self_signed_bundle(
    names: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    source: Source,
) -> Bundle {
    build(names, not_before, not_after, source, false)
}

/// [`self_signed_bundle`] with an authority key identifier, as CA-issued certificates have
/// (ACME renewal information (ARI) names a certificate by it).
pub fn self_signed_bundle_with_aki(
    names: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    source: Source,
) -> Bundle {
    build(names, not_before, not_after, source, true)
}

fn build(
    names: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    source: Source,
    aki: bool,
) -> Bundle {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
    params.not_before = not_before;
    params.not_after = not_after;
    params.use_authority_key_identifier_extension = aki;
    let key = rcgen::KeyPair::generate().unwrap();
    let der = params.self_signed(&key).unwrap().der().clone();
    let meta = BundleMeta {
        source,
        names,
        not_after,
        not_before: Some(not_before),
        installed_at: not_before,
        fingerprint: Fingerprint::of(&der),
    };
    Bundle::new(
        vec![der],
        SecretKey::new(KeyFormat::Pkcs8, key.serialize_der()),
        meta,
    )
    .unwrap()
}

/// A topology of one site, `https://{host}`, whose default domain is `example.test`.
pub fn topology(host: &str) -> Topology {
    let mut t = Topology::new(Site::new(&format!("https://{host}"), &[]).unwrap());
    t.default_domain = Some("example.test".parse().unwrap());
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn bundles_carry_what_they_were_asked_for() {
        let (from, to) = (
            datetime!(2027-01-01 0:00 UTC),
            datetime!(2027-04-01 0:00 UTC),
        );
        let plain = self_signed_bundle(&["a.test", "b.test"], from, to, Source::Acme);
        let meta = plain.meta();
        assert_eq!(meta.names, ["a.test", "b.test"]);
        assert_eq!((meta.not_after, meta.installed_at), (to, from));
        assert_eq!(meta.source, Source::Acme);
        assert_eq!(meta.fingerprint, Fingerprint::of(&plain.chain()[0]));
        let with_aki = self_signed_bundle_with_aki(&["a.test"], from, to, Source::Acme);
        // The AKI extension (OID 2.5.29.35) is only in the second one.
        let aki_oid = [0x06, 0x03, 0x55, 0x1d, 0x23];
        let has = |der: &[u8]| der.windows(aki_oid.len()).any(|w| w == aki_oid);
        assert!(!has(&plain.chain()[0]));
        assert!(has(&with_aki.chain()[0]));
    }

    #[test]
    fn topology_serves_the_host_under_example_test() {
        let t = topology("mail.example.test");
        assert_eq!(t.system.url, "https://mail.example.test");
        assert_eq!(t.default_domain.unwrap().as_str(), "example.test");
    }
}
