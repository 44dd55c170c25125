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
    /// The file is larger than [`limits::FILE`](crate::limits::FILE): not a PKCS#12 bundle
    /// of one server (a real one is a few KiB).
    #[error("the file is {len} bytes, over the {} limit for a PKCS#12 file; check that the right file was given", crate::limits::Size(*.limit))]
    TooLarge {
        /// The file's length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The password is longer than [`limits::PASSWORD`](crate::limits::PASSWORD) bytes.
    #[error("the password is over the {} limit; check the password file", crate::limits::Size(*.limit))]
    PasswordTooLong {
        /// The limit in bytes.
        limit: usize,
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
    /// The file asks for more password-hashing work than is accepted, or its encryption
    /// parameters are missing.
    #[error("{}; export it again with the default settings (`openssl pkcs12 -export` uses 2,048 iterations)", match mac_iterations {
        Some(n) => format!("the PKCS#12 file asks for {n} password-hashing iterations for its integrity check, more than the {PKCS12_MAX_ITERATIONS} accepted (a damaged or hostile file would make each check take minutes)"),
        None => format!("the PKCS#12 file's encryption parameters are missing or ask for more password-hashing work than accepted (more than {PKCS12_MAX_ITERATIONS} iterations, or a costly scrypt setting)"),
    })]
    TooCostly {
        /// The MAC iteration count, when that is what is over the limit.
        mac_iterations: Option<u64>,
    },
}

/// The most password-hashing iterations accepted, for the MAC and for key encryption
/// (p12-keystore's limit; OpenSSL 3 exports with 2,048).
pub const PKCS12_MAX_ITERATIONS: u64 = 1_000_000;

/// The MAC iteration count of a PFX (RFC 7292: `PFX ::= SEQUENCE { version, authSafe,
/// macData MacData OPTIONAL }`, `MacData ::= SEQUENCE { mac, macSalt, iterations INTEGER
/// DEFAULT 1 }`), read without decrypting anything.
fn mac_iterations(input: &[u8]) -> Option<u64> {
    use der::{Decode, Reader, SliceReader};
    let pfx = der::asn1::AnyRef::from_der(input).ok()?;
    let mut r = SliceReader::new(pfx.value()).ok()?;
    r.tlv_bytes().ok()?; // version
    r.tlv_bytes().ok()?; // authSafe
    let mac_data = der::asn1::AnyRef::from_der(r.tlv_bytes().ok()?).ok()?;
    let mut m = SliceReader::new(mac_data.value()).ok()?;
    m.tlv_bytes().ok()?; // mac
    m.tlv_bytes().ok()?; // macSalt
    if m.is_finished() {
        return Some(1);
    }
    u64::decode(&mut m).ok()
}

/// Opens a PKCS#12 file with `password` (empty for none).
///
/// A file over [`limits::FILE`](crate::limits::FILE) bytes, or a password over
/// [`limits::PASSWORD`](crate::limits::PASSWORD) bytes, is refused before any decoding.
pub fn parse_pkcs12(input: &[u8], password: &str) -> Result<Pkcs12Contents, Pkcs12Error> {
    if input.is_empty() {
        return Err(Pkcs12Error::Empty);
    }
    if input.len() > crate::limits::FILE {
        return Err(Pkcs12Error::TooLarge {
            len: input.len(),
            limit: crate::limits::FILE,
        });
    }
    if password.len() > crate::limits::PASSWORD {
        return Err(Pkcs12Error::PasswordTooLong {
            limit: crate::limits::PASSWORD,
        });
    }
    let archive = Pkcs12Archive::from_pkcs12(input, password).map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) | p12_keystore::error::Error::UnpadError => {
            Pkcs12Error::BadPassword
        }
        // p12-keystore's word for "over the iteration limit" (and for missing parameters).
        p12_keystore::error::Error::InvalidParameters => Pkcs12Error::TooCostly {
            mac_iterations: mac_iterations(input).filter(|&n| n > PKCS12_MAX_ITERATIONS),
        },
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
