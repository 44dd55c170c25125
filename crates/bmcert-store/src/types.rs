use core::fmt;
use core::str::FromStr;

use bmcert_topology::Target;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::StoreError;
use crate::verify::Damage;

/// A point in the store's history.
///
/// Every write (install, rollback, disable, record put or delete, lock acquisition) gets the
/// next revision of the *whole store*, so revisions order all changes; a record carries the
/// revision of its last modification. This is etcd's `mod_revision` model, which a
/// distributed backend maps to directly. Revision 0 means "before any change".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(pub u64);

impl Revision {
    /// The revision before any change.
    pub const ZERO: Self = Self(0);

    /// The revision that follows this one.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// How a bundle came into the store.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Uploaded by an administrator (certificate, key and CA files, or PKCS#12).
    Files,
    /// Obtained through ACME (Let's Encrypt).
    Acme,
    /// The self-signed system certificate made at installation (`bmcert init`) so the
    /// servers answer from the first start; browsers do not trust it. The first upload or
    /// ACME certificate replaces it.
    Bootstrap,
}

impl Source {
    /// What an administrator must know about a certificate of this source, for listings
    /// (`bmcert list`, `bmcert status`): the bootstrap certificate is not trusted by browsers.
    pub fn warning(self) -> Option<&'static str> {
        match self {
            Self::Bootstrap => Some("self-signed bootstrap certificate: browsers and mail clients do not trust it; install the real certificate (bmcert install) or activate Let's Encrypt (bmcert acme issue)"),
            Self::Files | Self::Acme => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Files => "files",
            Self::Acme => "acme",
            Self::Bootstrap => "bootstrap",
        })
    }
}

/// The SHA-256 fingerprint of a certificate's DER encoding, as `openssl x509 -fingerprint
/// -sha256` prints it (without the colons).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `der`.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the store knows about a bundle besides its bytes.
///
/// `fingerprint`, `names`, `not_after` (and `not_before` when recorded) are the leaf
/// certificate's: [`Bundle::new`]
/// refuses metadata that says otherwise, and a stored bundle whose metadata disagrees with
/// its leaf (edited by hand, damaged) is reported damaged rather than believed.
/// [`BundleMeta::for_leaf`] derives them from the certificate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleMeta {
    /// How the bundle was obtained.
    pub source: Source,
    /// The DNS names (and IP addresses) the leaf certificate covers.
    pub names: Vec<String>,
    /// The leaf's notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The leaf's notBefore, recorded so that planning a renewal needs no certificate
    /// parsing ([`Store::list_meta`](crate::Store::list_meta)); `None` in bundles stored
    /// before it was recorded (a reader then takes it from the leaf).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// When the bundle was installed (the installer's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub installed_at: OffsetDateTime,
    /// SHA-256 of the leaf certificate's DER.
    pub fingerprint: Fingerprint,
}

impl BundleMeta {
    /// The metadata of `leaf`: its fingerprint, names (`DNS:` and `IP:` subject alternative
    /// names) and notAfter read from the certificate, with `source` and `installed_at`.
    pub fn for_leaf(
        source: Source,
        installed_at: OffsetDateTime,
        leaf: &CertificateDer<'_>,
    ) -> Result<Self, Damage> {
        let facts = crate::verify::LeafFacts::of(leaf)?;
        Ok(Self {
            source,
            names: facts.names,
            not_after: facts.not_after,
            not_before: Some(facts.not_before),
            installed_at,
            fingerprint: facts.fingerprint,
        })
    }
}

pub use bmcert_topology::KeyFormat;

/// A private key held by the store.
///
/// Its bytes are zeroized on drop and never printed: `Debug` shows `[secret key elided]`.
/// There is no `Clone`; [`SecretKey::clone_key`] makes copies visible. Every accessor that
/// exposes the bytes has `secret` in its name.
pub struct SecretKey {
    der: Zeroizing<Vec<u8>>,
    format: KeyFormat,
}

impl SecretKey {
    /// Wraps DER bytes of the given encoding.
    pub fn new(format: KeyFormat, der: Vec<u8>) -> Self {
        Self {
            der: Zeroizing::new(der),
            format,
        }
    }

    /// Copies a rustls private key.
    pub fn from_private_key_der(key: &PrivateKeyDer<'_>) -> Option<Self> {
        let format = match key {
            PrivateKeyDer::Pkcs8(_) => KeyFormat::Pkcs8,
            PrivateKeyDer::Pkcs1(_) => KeyFormat::Pkcs1,
            PrivateKeyDer::Sec1(_) => KeyFormat::Sec1,
            _ => return None,
        };
        Some(Self::new(format, key.secret_der().to_vec()))
    }

    /// The key's encoding.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// The key's DER bytes.
    pub fn secret_der(&self) -> &[u8] {
        &self.der
    }

    /// The key as PEM text (zeroized on drop).
    pub fn secret_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode_config(
            &pem::Pem::new(self.format.pem_label(), self.der.to_vec()),
            pem_config(),
        ))
    }

    /// A copy of the key as the rustls type (which does not zeroize: keep it short-lived or
    /// hand it to rustls straight away).
    pub fn secret_private_key_der(&self) -> PrivateKeyDer<'static> {
        let der = self.der.to_vec();
        match self.format {
            KeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(der).into(),
            KeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(der).into(),
            KeyFormat::Sec1 => PrivateSec1KeyDer::from(der).into(),
        }
    }

    /// The key as the rustls type, borrowing the secret bytes.
    pub(crate) fn secret_key_der_ref(&self) -> PrivateKeyDer<'_> {
        let der = &self.der[..];
        match self.format {
            KeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(der).into(),
            KeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(der).into(),
            KeyFormat::Sec1 => PrivateSec1KeyDer::from(der).into(),
        }
    }

    /// An explicit copy.
    pub fn clone_key(&self) -> Self {
        Self::new(self.format, self.der.to_vec())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({:?}, [secret key elided])", self.format)
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.format == other.format && *self.der == *other.der
    }
}

impl Eq for SecretKey {}

/// A certificate chain with its private key and metadata: what one target serves.
///
/// A bundle is written and read as one unit: a backend never stores the chain without the
/// key or the other way round.
#[derive(Debug, PartialEq, Eq)]
pub struct Bundle {
    chain: Vec<CertificateDer<'static>>,
    key: SecretKey,
    meta: BundleMeta,
}

impl Bundle {
    /// Builds a bundle: `chain` is the leaf followed by its intermediates.
    ///
    /// Proves it whole first (see [`Bundle::verified`]) and refuses it with
    /// [`StoreError::InvalidBundle`] otherwise. Whether the certificate is trusted, current
    /// and right for a host is the bundle report's job (`bmcert-bundle`), run before
    /// installing.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: SecretKey,
        meta: BundleMeta,
    ) -> Result<Self, StoreError> {
        Self::verified(chain, key, meta).map_err(StoreError::InvalidBundle)
    }

    /// Builds a bundle after proving it whole, the check every backend runs on what it
    /// reads: the chain is not empty and every certificate of it parses as X.509, the key
    /// signs for the leaf (a real signature verified with the leaf's public key, the
    /// upload's key proof), and `meta`'s fingerprint, names and notAfter are the leaf's.
    /// Proofs are remembered by a digest of the bytes, so reading the same bundle again
    /// costs a hash (module `verify`).
    pub fn verified(
        chain: Vec<CertificateDer<'static>>,
        key: SecretKey,
        meta: BundleMeta,
    ) -> Result<Self, Damage> {
        crate::verify::prove(&chain, &key, &meta)?;
        Ok(Self { chain, key, meta })
    }

    /// [`Bundle::verified`] for a bundle read back from storage, which also checks the
    /// chain against the digest the backend recorded with it at install
    /// ([`Bundle::chain_digest`]; `None` for bundles stored before digests were recorded),
    /// so that a chain certificate damaged in a way that still parses is caught too.
    pub fn verified_stored(
        chain: Vec<CertificateDer<'static>>,
        key: SecretKey,
        meta: BundleMeta,
        chain_digest: Option<&Fingerprint>,
    ) -> Result<Self, Damage> {
        crate::verify::check_chain(&chain, chain_digest)?;
        Self::verified(chain, key, meta)
    }

    /// The digest of the chain that backends record with it and pass back to
    /// [`Bundle::verified_stored`] (SHA-256 over each certificate's length and bytes).
    pub fn chain_digest(&self) -> Fingerprint {
        crate::verify::chain_digest(&self.chain)
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `new` refuses an empty chain.
        &self.chain[0]
    }

    /// The leaf followed by its intermediates.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The chain as PEM text (leaf first).
    pub fn chain_pem(&self) -> String {
        let pems: Vec<pem::Pem> = self
            .chain
            .iter()
            .map(|c| pem::Pem::new("CERTIFICATE", c.to_vec()))
            .collect();
        pem::encode_many_config(&pems, pem_config())
    }

    /// The private key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.key
    }

    /// The metadata.
    pub fn meta(&self) -> &BundleMeta {
        &self.meta
    }

    /// An explicit copy (the key is copied too).
    pub fn clone_bundle(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            meta: self.meta.clone(),
        }
    }

    /// Splits the bundle into its parts.
    pub fn into_parts(self) -> (Vec<CertificateDer<'static>>, SecretKey, BundleMeta) {
        (self.chain, self.key, self.meta)
    }
}

/// PEM as files on Unix have it: `\n` line endings.
pub(crate) fn pem_config() -> pem::EncodeConfig {
    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF)
}

/// A bundle as the store holds it: which version of the target it is and at which revision
/// it became current.
#[derive(Debug, PartialEq, Eq)]
pub struct Installed {
    /// The target it is installed for.
    pub target: Target,
    /// Per-target install counter: 1 for the first bundle ever installed, then 2, 3...
    /// A rollback makes an older version current again; versions are never reused.
    pub version: u64,
    /// The store revision at which this bundle became the target's current one (for a
    /// history entry: the revision at which it was installed).
    pub revision: Revision,
    /// The bundle.
    pub bundle: Bundle,
}

/// One row of [`Store::list`](crate::Store::list): a target's current bundle without its
/// key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The target.
    pub target: Target,
    /// The current version.
    pub version: u64,
    /// The revision at which it became current.
    pub revision: Revision,
    /// Its metadata.
    pub meta: BundleMeta,
}

/// The key of a small record in the store's key-value area (ACME account, terms acceptance,
/// HTTP-01 tokens, renewal and warning state...).
///
/// One to eight `/`-separated segments of ASCII letters, digits, `-`, `_` and `.`; a segment
/// is 1 to 253 characters (a whole domain name fits) and does not start with a dot (so `.`
/// and `..` are impossible); the whole key is at most 1024 characters. Case is kept (ACME tokens are base64url).
/// The conventional prefixes are listed in [`crate::keys`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(String);

/// Why a string is not a record key.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordKeyError {
    /// Empty key or empty segment (`a//b`, leading or trailing `/`).
    #[error("the record key `{0}` is empty or has an empty segment")]
    Empty(String),
    /// Longer than 1024 characters, a segment over 253, or more than 8 segments.
    #[error("the record key `{0}` is too long (at most 1024 characters, 8 segments of 253)")]
    TooLong(String),
    /// A character outside `A-Z a-z 0-9 - _ .`.
    #[error("the record key contains {0:?}; use letters, digits, `-`, `_`, `.` and `/` only")]
    BadCharacter(char),
    /// A segment starting with a dot.
    #[error("a segment of the record key `{0}` starts with a dot")]
    LeadingDot(String),
}

impl RecordKey {
    /// Checks `key`.
    pub fn new(key: &str) -> Result<Self, RecordKeyError> {
        if key.len() > 1024 {
            return Err(RecordKeyError::TooLong(key.chars().take(40).collect()));
        }
        if let Some(c) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            return Err(RecordKeyError::BadCharacter(c));
        }
        let segments: Vec<&str> = key.split('/').collect();
        if segments.len() > 8 || segments.iter().any(|s| s.len() > 253) {
            return Err(RecordKeyError::TooLong(key.to_owned()));
        }
        if segments.iter().any(|s| s.is_empty()) {
            return Err(RecordKeyError::Empty(key.to_owned()));
        }
        if segments.iter().any(|s| s.starts_with('.')) {
            return Err(RecordKeyError::LeadingDot(key.to_owned()));
        }
        Ok(Self(key.to_owned()))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the key is `prefix` or below it (`acme/http01` covers `acme/http01/TOKEN`).
    pub fn is_under(&self, prefix: &str) -> bool {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || self.0 == prefix
            || (self.0.starts_with(prefix) && self.0.as_bytes().get(prefix.len()) == Some(&b'/'))
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RecordKey {
    type Err = RecordKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A record's value with its revision.
///
/// Record values may hold credentials (the ACME account key), so they are zeroized on drop
/// and `Debug` prints only their length.
#[derive(PartialEq, Eq)]
pub struct Record {
    /// The revision of the record's last modification.
    pub revision: Revision,
    value: Zeroizing<Vec<u8>>,
}

impl Record {
    /// A record value at a revision.
    pub fn new(revision: Revision, value: Vec<u8>) -> Self {
        Self {
            revision,
            value: Zeroizing::new(value),
        }
    }

    /// The value bytes (may be secret: do not log them).
    pub fn secret_value(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("revision", &self.revision)
            .field(
                "value",
                &format_args!("[{} bytes elided]", self.value.len()),
            )
            .finish()
    }
}

/// What a conditional write expects to find (compare-and-swap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    #[default]
    Any,
    /// Write only if nothing is there (create).
    Absent,
    /// Write only if the current value has this revision.
    Revision(Revision),
}

/// A fencing token: proof that the writer holds a lock, checked by the store on every write
/// that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The lock's name.
    pub lock: RecordKey,
    /// The token the lock was granted with ([`Lease::token`]).
    pub token: u64,
}

/// The conditions a write must meet, checked atomically with the write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Condition {
    /// What the written key must currently hold.
    pub expect: Expect,
    /// If set, the write succeeds only while this lock is still held with this token.
    pub fence: Option<Fence>,
}

impl Condition {
    /// No condition: last writer wins.
    pub fn none() -> Self {
        Self::default()
    }

    /// Only if the key is absent.
    pub fn absent() -> Self {
        Self {
            expect: Expect::Absent,
            fence: None,
        }
    }

    /// Only if the key is at `revision`.
    pub fn at(revision: Revision) -> Self {
        Self {
            expect: Expect::Revision(revision),
            fence: None,
        }
    }

    /// Also require the lease to be still held.
    pub fn fenced_by(mut self, lease: &Lease) -> Self {
        self.fence = Some(lease.fence());
        self
    }
}

/// A lock held for a limited time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lock's name.
    pub lock: RecordKey,
    /// Who holds it (free text: host name, process id).
    pub holder: String,
    /// The fencing token: the store revision at which the lock was granted. A later grant
    /// of the same lock always has a larger token.
    pub token: u64,
    /// When the lock expires unless renewed (the store's clock).
    pub expires_at: OffsetDateTime,
}

impl Lease {
    /// The fence to attach to writes made under this lease.
    pub fn fence(&self) -> Fence {
        Fence {
            lock: self.lock.clone(),
            token: self.token,
        }
    }
}

/// What changed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKey {
    /// A target's current bundle (install, rollback or disable).
    Bundle(Target),
    /// A record of the key-value area.
    Record(RecordKey),
    /// A lock (granted, renewed or released).
    Lock(RecordKey),
}

impl fmt::Display for ChangeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bundle(t) => write!(f, "bundle:{t}"),
            Self::Record(k) => write!(f, "record:{k}"),
            Self::Lock(k) => write!(f, "lock:{k}"),
        }
    }
}

/// Whether the key now has a value or not.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Written (install, rollback, put, lock grant or renewal).
    Put,
    /// Removed (disable, delete, lock release).
    Delete,
}

/// One entry of the change feed. Values are not included: re-read the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// The store revision of the change.
    pub revision: Revision,
    /// What changed.
    pub key: ChangeKey,
    /// How.
    pub kind: ChangeKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_refuse_traversal_and_odd_characters() {
        assert!(RecordKey::new("acme/account").is_ok());
        assert!(RecordKey::new("acme/http01/Ab-_9").is_ok());
        assert!(matches!(
            RecordKey::new("../etc"),
            Err(RecordKeyError::LeadingDot(_))
        ));
        assert!(matches!(
            RecordKey::new("a//b"),
            Err(RecordKeyError::Empty(_))
        ));
        assert!(matches!(
            RecordKey::new("a\0b"),
            Err(RecordKeyError::BadCharacter('\0'))
        ));
        assert!(matches!(
            RecordKey::new(&"a".repeat(300)),
            Err(RecordKeyError::TooLong(_))
        ));
        assert!(matches!(RecordKey::new(""), Err(RecordKeyError::Empty(_))));
    }

    #[test]
    fn is_under_respects_segment_boundaries() {
        let k = RecordKey::new("acme/http01/tok").unwrap();
        assert!(k.is_under("acme/http01"));
        assert!(k.is_under("acme/http01/"));
        assert!(k.is_under(""));
        assert!(!k.is_under("acme/http0"));
    }

    #[test]
    fn secrets_are_elided_from_debug() {
        let key = SecretKey::new(KeyFormat::Pkcs8, b"TOPSECRETKEYBYTES".to_vec());
        let shown = format!("{key:?}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("elided"));
        let rec = Record::new(Revision(3), b"TOPSECRETKEYBYTES".to_vec());
        let shown = format!("{rec:?}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
    }

    #[test]
    fn fingerprint_round_trips_through_text() {
        let fp = Fingerprint::of(b"hello");
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
    }

    proptest::proptest! {
        #[test]
        fn record_key_never_panics_and_accepted_keys_are_path_safe(s in "\\PC{0,300}") {
            if let Ok(k) = RecordKey::new(&s) {
                proptest::prop_assert!(!k.as_str().split('/').any(|seg| seg == ".." || seg.is_empty()));
                proptest::prop_assert!(!k.as_str().contains('\0'));
            }
        }
    }
}
