//! Fixtures shared by the directory-store tests: real rcgen key pairs and certificates.
#![allow(dead_code)]
// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use bmcert_store::{Bundle, BundleMeta, KeyFormat, SecretKey, Source};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

/// A real certificate with its key, and the key's public half for checking the pair.
pub(crate) struct Pair {
    pub(crate) cert_der: Vec<u8>,
    pub(crate) key_der: Vec<u8>,
    pub(crate) public_key_der: Vec<u8>,
}

impl Pair {
    pub(crate) fn generate(name: &str) -> Self {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        Self {
            cert_der: ck.cert.der().to_vec(),
            key_der: ck.signing_key.serialize_der(),
            public_key_der: rcgen::PublicKeyData::der_bytes(&ck.signing_key).to_vec(),
        }
    }

    pub(crate) fn bundle(&self, installed_at: i64) -> Bundle {
        let leaf = CertificateDer::from(self.cert_der.clone());
        let meta = BundleMeta::for_leaf(
            Source::Files,
            OffsetDateTime::from_unix_timestamp(installed_at).unwrap(),
            &leaf,
        )
        .unwrap();
        Bundle::new(
            vec![leaf],
            SecretKey::new(KeyFormat::Pkcs8, self.key_der.clone()),
            meta,
        )
        .unwrap()
    }

    /// Serializes the pair for a child process (hex, one field a line).
    pub(crate) fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            hex::encode(&self.cert_der),
            hex::encode(&self.key_der),
            hex::encode(&self.public_key_der)
        )
    }

    pub(crate) fn from_text(text: &str) -> Self {
        let mut lines = text.lines().map(|l| hex::decode(l).unwrap());
        Self {
            cert_der: lines.next().unwrap(),
            key_der: lines.next().unwrap(),
            public_key_der: lines.next().unwrap(),
        }
    }
}

/// Checks that the key of `bundle` is the private half of its leaf's public key, using the
/// table of known pairs: the certificate picks the pair, the key's public half must be that
/// pair's.
pub(crate) fn key_matches_certificate(bundle: &Bundle, pairs: &[Pair]) -> bool {
    let Some(pair) = pairs.iter().find(|p| p.cert_der == bundle.leaf().as_ref()) else {
        return false;
    };
    let Ok(key) = rcgen::KeyPair::try_from(bundle.secret_key().secret_der()) else {
        return false;
    };
    rcgen::PublicKeyData::der_bytes(&key) == pair.public_key_der.as_slice()
}

/// A `tracing` writer capturing everything logged, to check that no secret is in the log.
#[derive(Clone, Default)]
pub(crate) struct LogCapture(pub Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
