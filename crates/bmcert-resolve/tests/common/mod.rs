//! Fixtures generated at test time with rcgen: one root, leaves per target.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

pub struct Pki {
    pub root: CertifiedIssuer<'static, KeyPair>,
}

pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bmcert test root");
        let root = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { root }
    }

    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.root).unwrap();
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    pub fn certified(&self) -> Arc<CertifiedKey> {
        bmcert_resolve::certified_key(vec![self.cert.clone()], &self.key()).unwrap()
    }
}

/// Installs `leaf` as the current bundle of `target` in `store`; its metadata is the
/// certificate's (names, expiry), as the store requires. `names` are the names the test
/// expects the certificate to cover.
pub fn install(
    store: &dyn bmcert_store::Store,
    target: &bmcert_topology::Target,
    leaf: &Leaf,
    names: &[&str],
) {
    use bmcert_store::{block_on, Bundle, BundleMeta, Condition, KeyFormat, SecretKey, Source};
    let meta =
        BundleMeta::for_leaf(Source::Files, time::OffsetDateTime::now_utc(), &leaf.cert).unwrap();
    for name in names {
        assert!(
            meta.names.iter().any(|n| n == name),
            "{name} not in {:?}",
            meta.names
        );
    }
    let bundle = Bundle::new(
        vec![leaf.cert.clone()],
        SecretKey::new(KeyFormat::Pkcs8, leaf.key_der.clone()),
        meta,
    )
    .unwrap();
    block_on(store.install(target, &bundle, &Condition::none())).unwrap();
}

/// Installs `cert_of` whole, then replaces its key on disk with `key_of`'s (the store
/// refuses such a bundle on install: only damage to its storage makes one).
pub fn install_mismatched(
    store: &dyn bmcert_store::Store,
    raw: &dyn bmcert_store::testing::RawStorage,
    target: &bmcert_topology::Target,
    cert_of: &Leaf,
    key_of: &Leaf,
) {
    use bmcert_store::{block_on, KeyFormat, SecretKey};
    install(store, target, cert_of, &[]);
    let key = SecretKey::new(KeyFormat::Pkcs8, key_of.key_der.clone());
    block_on(raw.swap_key(target, &key)).unwrap();
}

/// Whether `error` is the store's report of a key that does not sign for its certificate.
pub fn is_damaged_key(error: &bmcert_resolve::LoadError) -> bool {
    matches!(error, bmcert_resolve::LoadError::Damaged(d) if matches!(d.damage, bmcert_store::Damage::Key(_)))
}

/// The SHA-256 of a DER certificate, lower-case hex.
pub fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}
