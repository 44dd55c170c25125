//! The most bytes each entry point of this crate accepts, one constant per kind of input.
//!
//! The parsers take bytes (they do no I/O), so these limits are enforced on the slice they
//! are given, before any decoding: an over-long input is a typed error
//! ([`TextError::TooLarge`](crate::TextError::TooLarge),
//! [`Pkcs12Error::TooLarge`](crate::Pkcs12Error::TooLarge)), never a long parse. Programs
//! that read files should bound their reads with the same constants (the `bmcert` CLI does),
//! so that a device or a growing file is never read whole.

use core::fmt;

/// A private key or PKCS#12 file: 1 MiB. A real PKCS#12 bundle with a chain of a dozen
/// RSA-4096 certificates is under 30 KiB; anything larger is not what the option asks for (a
/// device, a log, a disk image).
pub const FILE: usize = 1 << 20;

/// A certificate or CA file: 16 MiB. A chain is a few KiB and a whole platform trust store
/// under 1 MiB, but a file crowded with thousands of certificates is still read, so that the
/// check can name what is wrong with it (`look_alikes`, `extra_certificates`) instead of
/// refusing it unread.
pub const CERTIFICATE_FILE: usize = 16 << 20;

/// A password (of a key file or a PKCS#12 file): 64 KiB.
pub const PASSWORD: usize = 64 << 10;

/// A byte count in the unit a person reads ("1 MiB", "16 MiB", "64 KiB").
pub(crate) struct Size(pub(crate) usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{} MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{} KiB", n >> 10),
            n => write!(f, "{n} bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_certificates, parse_pkcs12, parse_private_key, BundleCheck, Pkcs12Error};
    use crate::{CertError, KeyError, TextError};

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(Size(FILE).to_string(), "1 MiB");
        assert_eq!(Size(CERTIFICATE_FILE).to_string(), "16 MiB");
        assert_eq!(Size(PASSWORD).to_string(), "64 KiB");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
    }

    #[test]
    fn every_entry_point_refuses_input_over_its_limit_before_decoding() {
        // PEM-looking bytes: without the limit they would be scanned line by line.
        let big = vec![b'A'; CERTIFICATE_FILE + 1];
        match parse_certificates(&big) {
            Err(CertError::Text(TextError::TooLarge { len, limit, .. })) => {
                assert_eq!((len, limit), (CERTIFICATE_FILE + 1, CERTIFICATE_FILE));
            }
            other => panic!("{other:?}"),
        }
        let key = vec![b'A'; FILE + 1];
        match parse_private_key(&key, None) {
            Err(KeyError::Text(TextError::TooLarge { len, limit, what })) => {
                assert_eq!((len, limit, what), (FILE + 1, FILE, "a private key file"));
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an oversized key file was accepted"),
        }
        assert_eq!(
            parse_pkcs12(&key, "").err(),
            Some(Pkcs12Error::TooLarge {
                len: FILE + 1,
                limit: FILE
            })
        );
        let long = "p".repeat(PASSWORD + 1);
        assert_eq!(
            parse_pkcs12(b"\x30\x03\x02\x01\x03", &long).err(),
            Some(Pkcs12Error::PasswordTooLong { limit: PASSWORD })
        );
    }

    #[test]
    fn the_bundle_check_names_the_oversized_file_and_its_limit() {
        let now = rustls_pki_types::UnixTime::now();
        let cert = vec![b'A'; CERTIFICATE_FILE + 1];
        let key = vec![b'A'; FILE + 1];
        let report = BundleCheck::files(&cert, &key, Some(&cert)).check(now);
        let messages: Vec<(&str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.code.as_str(), p.message.as_str()))
            .collect();
        for (code, limit) in [
            (
                "cert_unreadable",
                "over the 16 MiB limit for a certificate file",
            ),
            (
                "key_unreadable",
                "over the 1 MiB limit for a private key file",
            ),
            ("ca_unreadable", "over the 16 MiB limit for a CA file"),
        ] {
            assert!(
                messages
                    .iter()
                    .any(|(c, m)| *c == code && m.contains(limit)),
                "{code}: {messages:?}"
            );
        }
        // Under the limits, 2 MiB of text is read (and found to hold no certificate), not
        // refused for its size.
        let big = vec![b'A'; 2 << 20];
        let report = BundleCheck::files(&big, b"", Some(&big)).check(now);
        assert!(
            report.problems.iter().all(|p| !p.message.contains("limit")),
            "{:?}",
            report.problems
        );
    }
}
