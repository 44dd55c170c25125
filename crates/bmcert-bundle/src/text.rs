//! Tolerant reading of uploaded files: PEM blocks among other text, or raw DER.
//!
//! Real uploads carry a UTF-8 byte order mark, CRLF line ends, and text before, between
//! and after the blocks (`openssl pkcs12` writes `Bag Attributes`, `subject=` and `issuer=`
//! lines there). This module finds the `-----BEGIN ...-----` / `-----END ...-----` blocks
//! line by line, ignores everything else, and hands each normalized block to the `pem`
//! crate for base64 decoding. Decoded bytes live in [`Zeroizing`] buffers because a block
//! may hold a private key.

use bmcert_topology::Escaped;
use zeroize::Zeroizing;

/// One decoded PEM block.
pub(crate) struct Block {
    /// The label between `BEGIN ` and the dashes, for instance `CERTIFICATE`.
    pub(crate) label: String,
    /// RFC 1421 headers (`Proc-Type`, `DEK-Info`), in order.
    pub(crate) headers: Vec<(String, String)>,
    /// The decoded contents.
    pub(crate) der: Zeroizing<Vec<u8>>,
    /// The 1-based line of the BEGIN line.
    pub(crate) line: usize,
}

/// What a file holds at the encoding level.
pub(crate) enum Contents {
    /// One or more PEM blocks (other text ignored).
    Pem(Vec<Block>),
    /// No PEM block, and the bytes look like DER (start with a SEQUENCE tag).
    Der(Zeroizing<Vec<u8>>),
}

/// Why a file is neither PEM nor DER.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The file has no bytes (or only white space).
    #[error("the file is empty")]
    Empty,
    /// No `-----BEGIN` line and not DER either.
    #[error("the file holds neither PEM blocks (no `-----BEGIN ...-----` line) nor DER data")]
    NotPemOrDer,
    /// A BEGIN line without its END line.
    #[error("the PEM block `{}` starting on line {line} has no `-----END {}-----` line (the file looks truncated)", Escaped(.label), Escaped(.label))]
    Unterminated {
        /// The block label.
        label: String,
        /// The 1-based line of the BEGIN line.
        line: usize,
    },
    /// The input is larger than the entry point accepts ([`crate::limits`]); nothing of it
    /// was decoded.
    #[error("the file is {len} bytes, over the {} limit for {what}; check that the right file was given (a device, a log or a disk image is not a certificate file)", crate::limits::Size(*.limit))]
    TooLarge {
        /// The input's length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
        /// The kind of file, for the message ("a certificate file").
        what: &'static str,
    },
    /// The base64 text of a block does not decode.
    #[error("the PEM block `{}` starting on line {line} is damaged (its base64 text does not decode)", Escaped(.label))]
    BadBase64 {
        /// The block label.
        label: String,
        /// The 1-based line of the BEGIN line.
        line: usize,
    },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The labels of `blocks` for a message: each once, escaped (they come from the file), the
/// first few and a count of the others.
pub(crate) fn labels_in_short(blocks: &[Block]) -> String {
    const SHOWN: usize = 5;
    let mut distinct: Vec<&str> = Vec::new();
    for b in blocks {
        if !distinct.contains(&b.label.as_str()) {
            distinct.push(&b.label);
            if distinct.len() > SHOWN {
                break;
            }
        }
    }
    let mut out = distinct
        .iter()
        .take(SHOWN)
        .map(|l| Escaped(l).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if distinct.len() > SHOWN {
        out.push_str(" and other labels");
    }
    out
}

fn trim(line: &[u8]) -> &[u8] {
    line.trim_ascii()
}

fn begin_label(line: &[u8]) -> Option<&[u8]> {
    line.strip_prefix(b"-----BEGIN ")?.strip_suffix(b"-----")
}

fn end_label(line: &[u8]) -> Option<&[u8]> {
    line.strip_prefix(b"-----END ")?.strip_suffix(b"-----")
}

/// Reads a file's bytes as PEM blocks or DER.
///
/// An input over `limit` bytes is refused at once, before any decoding (`what` names the
/// file kind in the message).
pub(crate) fn read(input: &[u8], limit: usize, what: &'static str) -> Result<Contents, TextError> {
    if input.len() > limit {
        return Err(TextError::TooLarge {
            len: input.len(),
            limit,
            what,
        });
    }
    let input = input.strip_prefix(BOM).unwrap_or(input);
    if trim(input).is_empty() {
        return Err(TextError::Empty);
    }
    let mut blocks = Vec::new();
    let mut lines = input.split(|&b| b == b'\n').enumerate();
    while let Some((i, raw)) = lines.next() {
        let Some(label) = begin_label(trim(raw)) else {
            continue;
        };
        let label = String::from_utf8_lossy(label).into_owned();
        let start = i + 1;
        // Rebuild the block with plain `\n` line ends and no stray spaces.
        let mut normalized = Zeroizing::new(String::new());
        normalized.push_str("-----BEGIN ");
        normalized.push_str(&label);
        normalized.push_str("-----\n");
        let mut closed = false;
        for (_, raw) in lines.by_ref() {
            let line = trim(raw);
            if let Some(end) = end_label(line) {
                if end == label.as_bytes() {
                    closed = true;
                    break;
                }
                return Err(TextError::Unterminated { label, line: start });
            }
            if begin_label(line).is_some() {
                return Err(TextError::Unterminated { label, line: start });
            }
            let Ok(text) = core::str::from_utf8(line) else {
                return Err(TextError::BadBase64 { label, line: start });
            };
            normalized.push_str(text);
            normalized.push('\n');
        }
        if !closed {
            return Err(TextError::Unterminated { label, line: start });
        }
        normalized.push_str("-----END ");
        normalized.push_str(&label);
        normalized.push_str("-----\n");
        let parsed = pem::parse(normalized.as_bytes()).map_err(|_| TextError::BadBase64 {
            label: label.clone(),
            line: start,
        })?;
        let headers = parsed
            .headers()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        blocks.push(Block {
            label,
            headers,
            der: Zeroizing::new(parsed.into_contents()),
            line: start,
        });
    }
    if !blocks.is_empty() {
        return Ok(Contents::Pem(blocks));
    }
    if input.first() == Some(&0x30) {
        return Ok(Contents::Der(Zeroizing::new(input.to_vec())));
    }
    Err(TextError::NotPemOrDer)
}

/// Encodes DER bytes as one PEM block with 64-column lines and `\n` line ends.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::read`] without a limit.
    fn read(input: &[u8]) -> Result<Contents, TextError> {
        super::read(input, usize::MAX, "a test file")
    }

    #[test]
    fn a_limit_refuses_before_reading_and_allows_up_to_it() {
        let pem = b"-----BEGIN X-----\nAAAA\n-----END X-----\n";
        assert!(super::read(pem, pem.len(), "x").is_ok());
        assert_eq!(
            super::read(pem, pem.len() - 1, "a certificate file").err(),
            Some(TextError::TooLarge {
                len: pem.len(),
                limit: pem.len() - 1,
                what: "a certificate file"
            })
        );
    }

    fn pem_blocks(input: &[u8]) -> Vec<Block> {
        match read(input).unwrap() {
            Contents::Pem(b) => b,
            Contents::Der(_) => panic!("expected PEM"),
        }
    }

    #[test]
    fn bom_crlf_and_surrounding_text() {
        let body = pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x05");
        let text = format!(
            "\u{feff}Bag Attributes\r\n    localKeyID: 01 02\r\nsubject=CN = x\r\n{}trailing\r\n",
            body.replace('\n', "\r\n")
        );
        let blocks = pem_blocks(text.as_bytes());
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(&blocks[0].der[..], b"\x30\x03\x02\x01\x05");
        assert_eq!(blocks[0].line, 4);
    }

    #[test]
    fn truncated_block_is_reported_with_line() {
        let err = read(b"hello\n-----BEGIN CERTIFICATE-----\nMIIB\n").err();
        assert_eq!(
            err,
            Some(TextError::Unterminated {
                label: "CERTIFICATE".into(),
                line: 2
            })
        );
    }

    #[test]
    fn bad_base64_is_reported() {
        let err = read(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").err();
        assert!(matches!(err, Some(TextError::BadBase64 { .. })), "{err:?}");
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(read(b"").err(), Some(TextError::Empty));
        assert_eq!(read(b" \r\n").err(), Some(TextError::Empty));
        assert_eq!(read(b"hello").err(), Some(TextError::NotPemOrDer));
        assert!(matches!(read(b"\x30\x00"), Ok(Contents::Der(_))));
    }

    #[test]
    fn legacy_encryption_headers_are_kept() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let blocks = pem_blocks(text.as_bytes());
        assert_eq!(blocks[0].headers[0].0, "Proc-Type");
        assert_eq!(blocks[0].headers[0].1, "4,ENCRYPTED");
    }
}
