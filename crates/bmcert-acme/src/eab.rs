//! External Account Binding (RFC 8555 section 7.3.4): the key id and HMAC key a commercial
//! ACME CA hands out, so that the ACME account it creates is bound to the customer's account
//! there. Only the account's creation uses it (instant-acme signs the binding).

use std::fmt;

use base64::Engine as _;
use zeroize::Zeroizing;

/// The External Account Binding credentials of a CA: its key id and its HMAC key.
///
/// The HMAC key is a secret: never shown by `Debug`, zeroized when dropped.
#[derive(Clone)]
pub struct ExternalAccountBinding {
    key_id: String,
    hmac_key: Zeroizing<Vec<u8>>,
}

impl ExternalAccountBinding {
    /// The credentials as CAs publish them: the key id, and the HMAC key in base64url
    /// (padding and surrounding white space allowed; standard base64 too).
    pub fn new(key_id: &str, hmac_key_base64: &str) -> Result<Self, BadBinding> {
        let key_id = key_id.trim();
        if key_id.is_empty() {
            return Err(BadBinding::NoKeyId);
        }
        let text = hmac_key_base64.trim().trim_end_matches('=');
        let engine = if text.contains(['+', '/']) {
            &base64::engine::general_purpose::STANDARD_NO_PAD
        } else {
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
        };
        let hmac_key = Zeroizing::new(engine.decode(text).map_err(|_| BadBinding::NotBase64)?);
        if hmac_key.is_empty() {
            return Err(BadBinding::EmptyKey);
        }
        Ok(Self {
            key_id: key_id.to_owned(),
            hmac_key,
        })
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn instant_acme_key(&self) -> instant_acme::ExternalAccountKey {
        instant_acme::ExternalAccountKey::new(self.key_id.clone(), &self.hmac_key)
    }
}

impl fmt::Debug for ExternalAccountBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccountBinding")
            .field("key_id", &self.key_id)
            .field("hmac_key", &"[secret elided]")
            .finish()
    }
}

/// Why External Account Binding credentials are not usable.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadBinding {
    /// The key id is empty.
    #[error("the External Account Binding key id is empty")]
    NoKeyId,
    /// The HMAC key is not base64 (the CA gives it as base64url text).
    #[error(
        "the External Account Binding HMAC key is not base64url text; paste it as the CA gave it"
    )]
    NotBase64,
    /// The HMAC key decodes to nothing.
    #[error("the External Account Binding HMAC key is empty")]
    EmptyKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_in_both_alphabets_and_never_show() {
        let b = ExternalAccountBinding::new(
            " kid-1 ",
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n",
        )
        .unwrap();
        assert_eq!(b.key_id(), "kid-1");
        assert_eq!(b.hmac_key.len(), 48);
        let debug = format!("{b:?}");
        assert!(
            debug.contains("kid-1") && !debug.contains("zWND"),
            "{debug}"
        );
        assert_eq!(
            ExternalAccountBinding::new("k", "a+b/")
                .unwrap()
                .hmac_key
                .as_slice(),
            [0x6b, 0xe6, 0xff]
        );
        assert_eq!(
            ExternalAccountBinding::new("", "abcd").err(),
            Some(BadBinding::NoKeyId)
        );
        assert_eq!(
            ExternalAccountBinding::new("k", "not base64!").err(),
            Some(BadBinding::NotBase64)
        );
        assert_eq!(
            ExternalAccountBinding::new("k", "==").err(),
            Some(BadBinding::EmptyKey)
        );
    }
}
