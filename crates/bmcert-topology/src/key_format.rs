//! [`KeyFormat`]: the encoding of a private key's DER, shared by the bundle parser (what an
//! upload holds) and the store (how a key is kept), so both speak of one type.

/// The encoding of a private key's DER bytes.
///
/// Exhaustive on purpose: every `match` over it (PEM labels, rustls' `PrivateKeyDer`) must
/// be revisited if an encoding is ever added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyFormat {
    /// PKCS#8 `PrivateKeyInfo` (PEM label `PRIVATE KEY`).
    Pkcs8,
    /// PKCS#1 `RSAPrivateKey` (PEM label `RSA PRIVATE KEY`).
    Pkcs1,
    /// SEC1 `ECPrivateKey` (PEM label `EC PRIVATE KEY`).
    Sec1,
}

impl KeyFormat {
    /// The PEM label of this encoding.
    pub fn pem_label(self) -> &'static str {
        match self {
            Self::Pkcs8 => "PRIVATE KEY",
            Self::Pkcs1 => "RSA PRIVATE KEY",
            Self::Sec1 => "EC PRIVATE KEY",
        }
    }

    /// The encoding a PEM label names.
    pub fn from_pem_label(label: &str) -> Option<Self> {
        match label {
            "PRIVATE KEY" => Some(Self::Pkcs8),
            "RSA PRIVATE KEY" => Some(Self::Pkcs1),
            "EC PRIVATE KEY" => Some(Self::Sec1),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for f in [KeyFormat::Pkcs8, KeyFormat::Pkcs1, KeyFormat::Sec1] {
            assert_eq!(KeyFormat::from_pem_label(f.pem_label()), Some(f));
        }
        assert_eq!(KeyFormat::from_pem_label("ENCRYPTED PRIVATE KEY"), None);
    }
}
