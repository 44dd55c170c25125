//! PKCS#12 (`.p12`, `.pfx`) files, through `p12-keystore`.
//!
//! Both the OpenSSL 3 default (PBES2 with AES-256-CBC, PBKDF2, SHA-256 MAC) and the legacy
//! encodings (RC2-40 or 3DES, SHA-1 MAC, `openssl pkcs12 -legacy`) are read.

use core::fmt;

use p12_keystore::Pkcs12Archive;
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::key::{self, PrivateKey};

/// The contents of a PKCS#12 file.
pub struct Pkcs12Contents {
    /// The certificates in file order.
    pub certs: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKey,
}

impl fmt::Debug for Pkcs12Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs12Contents")
            .field("certs", &self.certs.len())
            .field("key", &self.key)
            .finish()
    }
}

/// Why a PKCS#12 file cannot be used.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs12Error {
    /// The file is empty.
    #[error("the file is empty")]
    Empty,
    /// The password does not open the file (MAC or decryption failure).
    #[error("the password does not open the PKCS#12 file; check the password file (an empty file means no password)")]
    BadPassword,
    /// Not a PKCS#12 structure, or one using an unsupported algorithm.
    #[error("the file is not a readable PKCS#12 file ({reason}); export it again, for instance with `openssl pkcs12 -export -in cert.pem -inkey key.pem -certfile ca.pem -out bundle.p12`")]
    Malformed {
        /// What the decoder says.
        reason: String,
    },
    /// No private key inside.
    #[error("the PKCS#12 file holds no private key; export it again including the key (`-inkey key.pem`)")]
    NoKey,
    /// Several private keys inside.
    #[error("the PKCS#12 file holds {0} private keys; export it again with only the server's key")]
    SeveralKeys(usize),
    /// No certificate inside.
    #[error("the PKCS#12 file holds no certificate; export it again including the certificate (`-in cert.pem`)")]
    NoCertificate,
    /// The key inside is damaged.
    #[error("the private key inside the PKCS#12 file is damaged: {0}")]
    BadKey(String),
}

/// Opens a PKCS#12 file with `password` (empty for none).
pub fn parse_pkcs12(input: &[u8], password: &str) -> Result<Pkcs12Contents, Pkcs12Error> {
    if input.is_empty() {
        return Err(Pkcs12Error::Empty);
    }
    let archive = Pkcs12Archive::from_pkcs12(input, password).map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) | p12_keystore::error::Error::UnpadError => {
            Pkcs12Error::BadPassword
        }
        other => Pkcs12Error::Malformed {
            reason: other.to_string(),
        },
    })?;
    let mut keys = archive.keys;
    let key_bag = match keys.len() {
        0 => return Err(Pkcs12Error::NoKey),
        1 => keys.remove(0),
        n => return Err(Pkcs12Error::SeveralKeys(n)),
    };
    let key = key::from_pkcs8(Zeroizing::new(key_bag.key.as_der().to_vec()))
        .map_err(|e| Pkcs12Error::BadKey(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = archive
        .certs
        .iter()
        .map(|c| CertificateDer::from(c.cert.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(Pkcs12Error::NoCertificate);
    }
    Ok(Pkcs12Contents { certs, key })
}
