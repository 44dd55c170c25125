//! A borrowing X.509 view: the fields this crate reads, without copying or decoding names.
//!
//! x509-cert's owned `Certificate` decodes every name attribute and copies every extension;
//! that was most of this crate's cost over webpki's own verification. Here names stay raw
//! DER (compared byte for byte, decoded with x509-cert only to print them) and extensions
//! are borrowed; each extension value is decoded with x509-cert's types when checked.

use bmcert_topology::Escaped;
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode, Sequence};
use x509_cert::name::Name;
use x509_cert::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use x509_cert::time::Validity;

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct CertRef<'a> {
    pub(crate) tbs: TbsRef<'a>,
    pub(crate) signature_algorithm: AlgorithmIdentifierRef<'a>,
    pub(crate) signature: BitStringRef<'a>,
}

/// `TBSCertificate` (RFC 5280 4.1), names and serial left raw.
#[derive(Clone, Debug, Sequence)]
pub(crate) struct TbsRef<'a> {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) version: Option<u8>,
    pub(crate) serial_number: AnyRef<'a>,
    pub(crate) signature: AnyRef<'a>,
    pub(crate) issuer: AnyRef<'a>,
    pub(crate) validity: Validity,
    pub(crate) subject: AnyRef<'a>,
    pub(crate) subject_public_key_info: SubjectPublicKeyInfoRef<'a>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub(crate) issuer_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    pub(crate) subject_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) extensions: Option<Vec<ExtRef<'a>>>,
}

/// `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct ExtRef<'a> {
    pub(crate) extn_id: ObjectIdentifier,
    #[asn1(default = "Default::default")]
    pub(crate) critical: bool,
    pub(crate) extn_value: &'a OctetStringRef,
}

impl<'a> CertRef<'a> {
    pub(crate) fn parse(der: &'a [u8]) -> der::Result<Self> {
        Self::from_der(der)
    }

    pub(crate) fn extensions(&self) -> &[ExtRef<'a>] {
        self.tbs.extensions.as_deref().unwrap_or(&[])
    }

    pub(crate) fn extension(&self, oid: ObjectIdentifier) -> Option<&ExtRef<'a>> {
        self.extensions().iter().find(|e| e.extn_id == oid)
    }

    /// Decodes the extension `T`, if present: `Some(Ok((critical, value)))`.
    pub(crate) fn get<T>(&self) -> Option<der::Result<(bool, T)>>
    where
        T: Decode<'a, Error = der::Error> + der::oid::AssociatedOid,
    {
        self.extension(T::OID)
            .map(|e| T::from_der(e.extn_value.as_bytes()).map(|v| (e.critical, v)))
    }

    pub(crate) fn is_self_issued(&self) -> bool {
        self.tbs.subject == self.tbs.issuer
    }

    pub(crate) fn subject_is_empty(&self) -> bool {
        self.tbs.subject.value().is_empty()
    }

    /// The subject for messages (RFC 4514 text).
    pub(crate) fn subject_text(&self) -> String {
        text_of(self.tbs.subject)
    }

    /// The issuer for messages (RFC 4514 text).
    pub(crate) fn issuer_text(&self) -> String {
        text_of(self.tbs.issuer)
    }

    /// The subject's common names as text, read from the raw name (UTF8String,
    /// PrintableString, IA5String or T61String bytes that are valid UTF-8).
    pub(crate) fn common_names(&self) -> Vec<String> {
        const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
        let mut out = Vec::new();
        let Ok(mut rdns) = der::SliceReader::new(self.tbs.subject.value()) else {
            return out;
        };
        while let Ok(rdn) = AnyRef::decode(&mut rdns) {
            let Ok(mut atvs) = der::SliceReader::new(rdn.value()) else {
                break;
            };
            while let Ok(atv) = AnyRef::decode(&mut atvs) {
                let Ok(mut fields) = der::SliceReader::new(atv.value()) else {
                    break;
                };
                if let (Ok(oid), Ok(value)) = (
                    ObjectIdentifier::decode(&mut fields),
                    AnyRef::decode(&mut fields),
                ) {
                    if oid == CN {
                        if let Ok(text) = core::str::from_utf8(value.value()) {
                            out.push(text.to_owned());
                        }
                    }
                }
            }
        }
        out
    }

    /// The DER encoding of the subject Name, header included.
    pub(crate) fn subject_der(&self) -> Option<Vec<u8>> {
        self.tbs.subject.to_der().ok()
    }
}

/// A Name's text (RFC 4514) from the contents of its SEQUENCE, for messages.
pub(crate) fn name_text(contents: &[u8]) -> String {
    match AnyRef::new(der::Tag::Sequence, contents) {
        Ok(any) => text_of(any),
        Err(_) => "(an unreadable name)".to_owned(),
    }
}

fn name_of(any: AnyRef<'_>) -> Option<Name> {
    any.decode_as::<Name>().ok()
}

/// RFC 4514 text, with control characters escaped: names come from the certificate.
fn text_of(any: AnyRef<'_>) -> String {
    match name_of(any) {
        Some(n) => Escaped(&n.to_string()).to_string(),
        None => "(an unreadable name)".to_owned(),
    }
}
