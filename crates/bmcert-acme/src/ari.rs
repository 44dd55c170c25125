//! ACME Renewal Information (ARI, RFC 9773), sans-I/O: the certificate identifier and the
//! parsing of the CA's answer. [`AcmeClient::renewal_window`](crate::AcmeClient::renewal_window)
//! does the request.
//!
//! The identifier is computed here with `x509-cert` rather than with instant-acme's
//! `TryFrom<&CertificateDer>`, which needs its `x509-parser` feature (a second X.509 parser
//! in the build for one extension and one serial number).

use std::borrow::Cow;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use der::Decode as _;
use instant_acme::CertificateIdentifier;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::{AcmeError, AriIdError, ProtocolError};

/// How long to wait before asking again when the CA sends no usable `Retry-After` (RFC 9773
/// section 4.3.3 suggests servers use about six hours).
pub const DEFAULT_ARI_RETRY: Duration = Duration::from_secs(6 * 3600);
/// The shortest wait before asking again, whatever the CA says (once a minute at most).
pub const MIN_ARI_RETRY: Duration = Duration::from_secs(60);
/// The longest wait before asking again, whatever the CA says (at least once a day).
pub const MAX_ARI_RETRY: Duration = Duration::from_secs(24 * 3600);

/// The renewal window the CA suggests for one certificate (RFC 9773 section 4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenewalWindow {
    /// The start of the suggested window.
    pub start: OffsetDateTime,
    /// The end of the suggested window (after `start`).
    pub end: OffsetDateTime,
    /// When to ask again: the CA's `Retry-After`, else [`DEFAULT_ARI_RETRY`], kept within
    /// [`MIN_ARI_RETRY`] ..= [`MAX_ARI_RETRY`].
    pub retry_after: Duration,
    /// A page explaining the window (e.g. after a mass revocation), when the CA gives one.
    pub explanation_url: Option<String>,
}

impl RenewalWindow {
    /// A window from `start` to `end` with the default [`retry_after`](Self::retry_after) and
    /// no explanation (a CA's answer is read with [`parse_renewal_info`]). `None` when `end`
    /// is not after `start`.
    pub fn new(start: OffsetDateTime, end: OffsetDateTime) -> Option<Self> {
        (end > start).then_some(Self {
            start,
            end,
            retry_after: DEFAULT_ARI_RETRY,
            explanation_url: None,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewalInfoJson {
    suggested_window: WindowJson,
    #[serde(rename = "explanationURL", default)]
    explanation_url: Option<String>,
}

#[derive(Deserialize)]
struct WindowJson {
    start: String,
    end: String,
}

/// Parses the body of a renewal-information response (RFC 9773 section 4.2) with the
/// response's `Retry-After` (already converted to a delay). Sans-I/O.
///
/// ```
/// use std::time::Duration;
/// let body = br#"{"suggestedWindow":{"start":"2025-01-02T04:00:00Z","end":"2025-01-03T04:00:00Z"}}"#;
/// let w = bmcert_acme::parse_renewal_info(body, Some(Duration::from_secs(3600))).unwrap();
/// assert_eq!(w.end - w.start, time::Duration::days(1));
/// assert_eq!(w.retry_after, Duration::from_secs(3600));
/// assert!(bmcert_acme::parse_renewal_info(b"{}", None).is_err());
/// ```
pub fn parse_renewal_info(
    body: &[u8],
    retry_after: Option<Duration>,
) -> Result<RenewalWindow, AcmeError> {
    let bad = |cause: ProtocolError| AcmeError::Protocol {
        during: "reading the renewal information",
        cause,
    };
    let doc: RenewalInfoJson =
        serde_json::from_slice(body).map_err(|e| bad(ProtocolError::RenewalInfo(e)))?;
    let parse = |s: &str| {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|source| {
            bad(ProtocolError::RenewalInfoTime {
                value: s.to_owned(),
                source,
            })
        })
    };
    let start = parse(&doc.suggested_window.start)?;
    let end = parse(&doc.suggested_window.end)?;
    if end <= start {
        return Err(bad(ProtocolError::RenewalInfoWindow { start, end }));
    }
    Ok(RenewalWindow {
        start,
        end,
        retry_after: retry_after
            .unwrap_or(DEFAULT_ARI_RETRY)
            .clamp(MIN_ARI_RETRY, MAX_ARI_RETRY),
        explanation_url: doc.explanation_url,
    })
}

/// The RFC 9773 identifier of a certificate: `base64url(AKI keyIdentifier) "."
/// base64url(serial)`, the serial as its DER content octets (a leading zero kept). It names
/// the certificate in the renewal-information request and in an order's `replaces`. Sans-I/O.
///
/// A certificate without an authority key identifier has no identifier: the error says so.
pub fn ari_certificate_id(leaf_der: &[u8]) -> Result<String, AcmeError> {
    use x509_cert::ext::pkix::AuthorityKeyIdentifier;
    let bad = AcmeError::AriIdentifier;
    let cert =
        x509_cert::Certificate::from_der(leaf_der).map_err(|e| bad(AriIdError::NotX509(e)))?;
    let tbs = cert.tbs_certificate();
    let no_aki = || bad(AriIdError::NoAuthorityKeyId);
    let aki = match tbs.get_extension::<AuthorityKeyIdentifier>() {
        Ok(Some((_, aki))) => aki,
        Ok(None) => return Err(no_aki()),
        Err(e) => return Err(bad(AriIdError::AuthorityKeyIdUnreadable(e))),
    };
    let key_id = aki.key_identifier.ok_or_else(no_aki)?;
    if key_id.as_bytes().is_empty() || tbs.serial_number().as_bytes().is_empty() {
        return Err(bad(AriIdError::Empty));
    }
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(key_id.as_bytes()),
        URL_SAFE_NO_PAD.encode(tbs.serial_number().as_bytes())
    ))
}

/// Checks an identifier given for `replaces` and turns it into instant-acme's type.
pub(crate) fn certificate_identifier(
    id: &str,
) -> Result<CertificateIdentifier<'static>, AcmeError> {
    let bad = || AcmeError::AriIdentifier(AriIdError::Malformed(id.to_owned()));
    let (aki, serial) = id.split_once('.').ok_or_else(bad)?;
    let b64url = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !b64url(aki) || !b64url(serial) {
        return Err(bad());
    }
    Ok(CertificateIdentifier {
        authority_key_identifier: Cow::Owned(aki.to_owned()),
        serial: Cow::Owned(serial.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identifier_matches_the_rfc_example() {
        // RFC 9773 section 4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:
        // DE:01:C8:D4, serial 0x00 87 65 43 21.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ]);
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example.test".to_owned()]).unwrap();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[
            0x00, 0x87, 0x65, 0x43, 0x21,
        ]));
        let cert = params.signed_by(&key, &issuer).unwrap();
        assert_eq!(
            ari_certificate_id(cert.der()).unwrap(),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        let id = certificate_identifier("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").unwrap();
        assert_eq!(id.to_string(), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    }

    #[test]
    fn no_authority_key_identifier_is_a_typed_error() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example.test".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let e = ari_certificate_id(cert.der()).unwrap_err();
        assert!(matches!(e, AcmeError::AriIdentifier(_)), "{e}");
        assert!(e.to_string().contains("authority key identifier"), "{e}");
        let e = ari_certificate_id(b"not a certificate").unwrap_err();
        assert!(e.to_string().contains("not DER X.509"), "{e}");
    }

    #[test]
    fn malformed_replaces_identifiers_are_refused() {
        for bad in ["", "abc", ".abc", "abc.", "a.b.c", "a+b.c", "a b.c"] {
            assert!(
                matches!(
                    certificate_identifier(bad),
                    Err(AcmeError::AriIdentifier(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn windows_are_parsed_and_checked() {
        let body = br#"{"suggestedWindow":{"start":"2025-01-02T04:00:00Z","end":"2025-01-03T04:00:00Z"},"explanationURL":"https://ca.example/why"}"#;
        let w = parse_renewal_info(body, None).unwrap();
        assert_eq!(w.start.unix_timestamp(), 1_735_790_400);
        assert_eq!(w.end.unix_timestamp(), 1_735_876_800);
        assert_eq!(w.retry_after, DEFAULT_ARI_RETRY);
        assert_eq!(w.explanation_url.as_deref(), Some("https://ca.example/why"));
        // The CA's Retry-After is kept within a minute and a day.
        let w = parse_renewal_info(body, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(w.retry_after, MIN_ARI_RETRY);
        let w = parse_renewal_info(body, Some(Duration::from_secs(10 * 86_400))).unwrap();
        assert_eq!(w.retry_after, MAX_ARI_RETRY);

        let reversed =
            br#"{"suggestedWindow":{"start":"2025-01-03T04:00:00Z","end":"2025-01-02T04:00:00Z"}}"#;
        let e = parse_renewal_info(reversed, None).unwrap_err();
        assert!(e.to_string().contains("before it starts"), "{e}");
        let e = parse_renewal_info(
            br#"{"suggestedWindow":{"start":"yesterday","end":"2025-01-02T04:00:00Z"}}"#,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        let e = parse_renewal_info(b"<html>", None).unwrap_err();
        assert!(e.to_string().contains("suggestedWindow"), "{e}");
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_window_or_a_typed_error(body in proptest::collection::vec(any::<u8>(), 0..200), secs in any::<u64>()) {
            if let Ok(w) = parse_renewal_info(&body, Some(Duration::from_secs(secs))) {
                prop_assert!(w.start < w.end);
                prop_assert!(w.retry_after >= MIN_ARI_RETRY && w.retry_after <= MAX_ARI_RETRY);
            }
            if let Ok(id) = ari_certificate_id(&body) {
                prop_assert!(certificate_identifier(&id).is_ok());
            }
        }

        #[test]
        fn well_formed_identifiers_round_trip(aki in "[A-Za-z0-9_-]{1,40}", serial in "[A-Za-z0-9_-]{1,30}") {
            let id = format!("{aki}.{serial}");
            prop_assert_eq!(certificate_identifier(&id).unwrap().to_string(), id);
        }
    }
}
