//! Private keys: reading them in every format administrators upload, and keeping them secret.

use core::fmt;

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Reader as _, Tag, TagNumber, Tagged as _};
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use zeroize::Zeroizing;

use crate::cert::{bit_len, KeyAlgorithm, OID_EC, OID_RSA, OID_RSA_PSS};
use crate::text::{self, Block, Contents, TextError};

pub use bmcert_topology::KeyFormat;

/// A private key read from an upload.
///
/// The DER bytes are zeroized on drop; `Debug` prints the format and algorithm only.
/// Reach the bytes through [`PrivateKey::secret_der`] (grep for `secret` finds every use).
pub struct PrivateKey {
    der: Zeroizing<Vec<u8>>,
    format: KeyFormat,
    algorithm: KeyAlgorithm,
    bits: Option<u32>,
}

impl PrivateKey {
    /// The key as rustls wants it, borrowing the secret bytes.
    pub fn secret_der(&self) -> PrivateKeyDer<'_> {
        match self.format {
            KeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(&self.der[..])),
            KeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(&self.der[..])),
            KeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(&self.der[..])),
        }
    }

    /// An owned copy for rustls (`PrivateKeyDer` zeroizes itself on drop).
    pub fn clone_secret_der(&self) -> PrivateKeyDer<'static> {
        self.secret_der().clone_key()
    }

    /// The key as one PEM block in its own encoding, in a zeroizing buffer.
    pub fn to_secret_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(text::pem_encode(self.format.pem_label(), &self.der))
    }

    /// The encoding of the key bytes.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// The key algorithm, as far as the key structure tells.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The key size in bits (RSA modulus size, curve size), when known.
    pub fn bits(&self) -> Option<u32> {
        self.bits
    }

    fn new(
        der: Zeroizing<Vec<u8>>,
        format: KeyFormat,
        curve_hint: Option<ObjectIdentifier>,
    ) -> Self {
        let (algorithm, bits) = describe(&der, format, curve_hint);
        Self {
            der,
            format,
            algorithm,
            bits,
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("format", &self.format)
            .field("algorithm", &self.algorithm)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// Why a key file yields no usable private key. Messages never contain key material.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM, not DER, empty, or a damaged PEM block.
    #[error("{0}")]
    Text(#[from] TextError),
    /// The file holds a certificate, not a private key.
    #[error("the file holds a certificate, not a private key; check that the certificate and key files were not swapped")]
    CertificateInstead,
    /// PEM blocks, but none is a private key.
    #[error("the file holds no private key block (found: {found})")]
    NoKey {
        /// The labels found, comma separated: each once, escaped, the first five.
        found: String,
    },
    /// More than one private key.
    #[error("the file holds {0} private keys; keep only the one that belongs to the certificate")]
    SeveralKeys(usize),
    /// The bytes are not a key in the format the label announces.
    #[error("the {format} private key is damaged: {reason}")]
    Malformed {
        /// `PKCS#8`, `PKCS#1 RSA`, `SEC1 EC` or `DER`.
        format: &'static str,
        /// What the decoder says.
        reason: String,
    },
    /// Password protected, no password given.
    #[error("the private key is protected by a password; remove it with `openssl pkey -in KEYFILE -out key-nopass.pem` (openssl asks for the password) and upload key-nopass.pem, or give the password with --key-password-file")]
    Encrypted,
    /// Legacy OpenSSL (`Proc-Type: 4,ENCRYPTED`) encryption, which is not decrypted here.
    #[error("the private key uses the legacy OpenSSL encryption (`Proc-Type: 4,ENCRYPTED`); remove the password with `openssl pkey -in KEYFILE -out key-nopass.pem` and upload key-nopass.pem")]
    LegacyEncrypted,
    /// The password does not decrypt the key.
    #[error("the password given does not decrypt the private key (or its encryption scheme is not supported): check the password file, or remove the password with `openssl pkey -in KEYFILE -out key-nopass.pem`")]
    BadPassword,
}

/// True when DER bytes decode as one of the private key structures (used to explain
/// a key uploaded as a certificate).
pub(crate) fn looks_like_key_der(der: &[u8]) -> bool {
    classify_der(der).is_some() || EncryptedPrivateKeyInfoRef::from_der(der).is_ok()
}

/// Guesses the structure of unlabelled (DER) private key bytes.
fn classify_der(der: &[u8]) -> Option<KeyFormat> {
    if PrivateKeyInfoRef::from_der(der).is_ok() {
        return Some(KeyFormat::Pkcs8);
    }
    // RSAPrivateKey ::= SEQUENCE { version INTEGER, modulus INTEGER, ... }
    // ECPrivateKey  ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING, ... }
    let mut reader = der::SliceReader::new(der).ok()?;
    reader
        .sequence(|r| {
            let _version = UintRef::decode(r)?;
            let next = AnyRef::decode(r)?;
            let _ = r.read_slice(r.remaining_len())?;
            Ok::<_, der::Error>(match next.tag() {
                Tag::Integer => Some(KeyFormat::Pkcs1),
                Tag::OctetString => Some(KeyFormat::Sec1),
                _ => None,
            })
        })
        .ok()
        .flatten()
}

/// RSA modulus size of a PKCS#1 `RSAPrivateKey`.
fn pkcs1_bits(der: &[u8]) -> Option<u32> {
    let mut reader = der::SliceReader::new(der).ok()?;
    reader
        .sequence(|r| {
            let _version = UintRef::decode(r)?;
            let n = UintRef::decode(r)?;
            let _ = r.read_slice(r.remaining_len())?;
            Ok::<_, der::Error>(bit_len(n.as_bytes()))
        })
        .ok()
}

/// The curve named in a SEC1 `ECPrivateKey`'s `[0] parameters`, if present.
fn sec1_curve(der: &[u8]) -> Option<ObjectIdentifier> {
    let mut reader = der::SliceReader::new(der).ok()?;
    reader
        .sequence(|r| {
            let _version = UintRef::decode(r)?;
            let _key = <&OctetStringRef>::decode(r)?;
            let mut curve = None;
            while !r.is_finished() {
                let any = AnyRef::decode(r)?;
                if let Tag::ContextSpecific {
                    number: TagNumber(0),
                    ..
                } = any.tag()
                {
                    curve = ObjectIdentifier::from_der(any.value()).ok();
                }
            }
            Ok::<_, der::Error>(curve)
        })
        .ok()
        .flatten()
}

fn describe(
    der: &[u8],
    format: KeyFormat,
    curve_hint: Option<ObjectIdentifier>,
) -> (KeyAlgorithm, Option<u32>) {
    let (alg, bits) = match format {
        KeyFormat::Pkcs1 => (KeyAlgorithm::Rsa, pkcs1_bits(der)),
        KeyFormat::Sec1 => (
            KeyAlgorithm::from_curve(sec1_curve(der).or(curve_hint)),
            None,
        ),
        KeyFormat::Pkcs8 => match PrivateKeyInfoRef::from_der(der) {
            Ok(info) => {
                let oid = info.algorithm.oid;
                if oid == OID_RSA || oid == OID_RSA_PSS {
                    (KeyAlgorithm::Rsa, pkcs1_bits(info.private_key.as_bytes()))
                } else {
                    let curve = if oid == OID_EC {
                        info.algorithm
                            .parameters
                            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                            .or_else(|| sec1_curve(info.private_key.as_bytes()))
                    } else {
                        None
                    };
                    (KeyAlgorithm::from_oids(oid, curve), None)
                }
            }
            Err(_) => (KeyAlgorithm::Other, None),
        },
    };
    (alg, bits.or_else(|| alg.fixed_bits()))
}

fn check_structure(der: &[u8], format: KeyFormat) -> Result<(), KeyError> {
    let ok = match format {
        KeyFormat::Pkcs8 => PrivateKeyInfoRef::from_der(der).is_ok(),
        KeyFormat::Pkcs1 | KeyFormat::Sec1 => classify_der(der) == Some(format),
    };
    if ok {
        Ok(())
    } else {
        Err(KeyError::Malformed {
            format: match format {
                KeyFormat::Pkcs8 => "PKCS#8",
                KeyFormat::Pkcs1 => "PKCS#1 RSA",
                KeyFormat::Sec1 => "SEC1 EC",
            },
            reason: "its DER structure does not decode".into(),
        })
    }
}

fn decrypt(der: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
    let Some(password) = password else {
        return Err(KeyError::Encrypted);
    };
    let info = EncryptedPrivateKeyInfoRef::from_der(der).map_err(|e| KeyError::Malformed {
        format: "encrypted PKCS#8",
        reason: e.to_string(),
    })?;
    let doc = info.decrypt(password).map_err(|_| KeyError::BadPassword)?;
    let plain = Zeroizing::new(doc.as_bytes().to_vec());
    check_structure(&plain, KeyFormat::Pkcs8).map_err(|_| KeyError::BadPassword)?;
    Ok(PrivateKey::new(plain, KeyFormat::Pkcs8, None))
}

fn is_key_label(label: &str) -> bool {
    matches!(
        label,
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY"
    )
}

fn from_block(
    block: &Block,
    password: Option<&[u8]>,
    curve_hint: Option<ObjectIdentifier>,
) -> Result<PrivateKey, KeyError> {
    let legacy_encrypted = block
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Proc-Type") && v.contains("ENCRYPTED"));
    if legacy_encrypted {
        return Err(KeyError::LegacyEncrypted);
    }
    let format = match block.label.as_str() {
        "ENCRYPTED PRIVATE KEY" => return decrypt(&block.der, password),
        "PRIVATE KEY" => KeyFormat::Pkcs8,
        "RSA PRIVATE KEY" => KeyFormat::Pkcs1,
        _ => KeyFormat::Sec1,
    };
    check_structure(&block.der, format)?;
    Ok(PrivateKey::new(block.der.clone(), format, curve_hint))
}

/// Reads the private key of a key file: PKCS#8, PKCS#1 or SEC1, in PEM (among other
/// text, with an optional `EC PARAMETERS` block) or DER.
///
/// An `ENCRYPTED PRIVATE KEY` (PKCS#8 PBES2, the OpenSSL 3 default) is decrypted with
/// `password` when one is given; otherwise it is [`KeyError::Encrypted`].
///
/// Inputs over [`limits::FILE`](crate::limits::FILE) bytes are refused with
/// [`TextError::TooLarge`] before any decoding.
pub fn parse_private_key(input: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
    match text::read(input, crate::limits::FILE, "a private key file")? {
        Contents::Der(der) => {
            if let Some(format) = classify_der(&der) {
                return Ok(PrivateKey::new(der, format, None));
            }
            if EncryptedPrivateKeyInfoRef::from_der(&der).is_ok() {
                return decrypt(&der, password);
            }
            if x509_cert::Certificate::from_der(&der).is_ok() {
                return Err(KeyError::CertificateInstead);
            }
            Err(KeyError::Malformed {
                format: "DER",
                reason: "the bytes are not a PKCS#8, PKCS#1 or SEC1 private key".into(),
            })
        }
        Contents::Pem(blocks) => {
            let keys: Vec<&Block> = blocks.iter().filter(|b| is_key_label(&b.label)).collect();
            let curve_hint = blocks
                .iter()
                .find(|b| b.label == "EC PARAMETERS")
                .and_then(|b| ObjectIdentifier::from_der(&b.der).ok());
            match keys.as_slice() {
                [one] => from_block(one, password, curve_hint),
                [] if blocks.iter().any(|b| b.label.contains("CERTIFICATE")) => {
                    Err(KeyError::CertificateInstead)
                }
                [] => Err(KeyError::NoKey {
                    found: text::labels_in_short(&blocks),
                }),
                several => Err(KeyError::SeveralKeys(several.len())),
            }
        }
    }
}

/// Wraps PKCS#8 DER bytes (as found in a PKCS#12 file) after checking their structure.
pub(crate) fn from_pkcs8(der: Zeroizing<Vec<u8>>) -> Result<PrivateKey, KeyError> {
    check_structure(&der, KeyFormat::Pkcs8)?;
    Ok(PrivateKey::new(der, KeyFormat::Pkcs8, None))
}
