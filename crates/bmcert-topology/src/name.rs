use core::fmt;
use core::str::FromStr;

use crate::plain::Escaped;

/// A validated DNS domain name: lower-case, A-labels only (IDNA applied), no trailing dot.
///
/// Every label is 1 to 63 characters of letters, digits and hyphens, not starting or ending
/// with a hyphen; the whole name is at most 253 characters and has at least one label. An
/// internationalized name given in U-labels (`bücher.example`) is converted to its A-label
/// form (`xn--bcher-kva.example`). A single trailing dot is accepted on input and dropped.
///
/// Because the value is checked on construction, holding a `DomainName` proves it is safe to
/// use as a file name component or a store key: it cannot contain `/`, `..`, NUL or
/// white space. Wildcards (`*.example.test`) are not domain names; they are presented names
/// and live in `bmcert-verify`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

/// Why a string is not a usable domain name.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the domain name is empty")]
    Empty,
    /// The name is longer than 253 characters.
    #[error("the domain name is {0} characters long; DNS allows at most 253")]
    TooLong(usize),
    /// One label is longer than 63 characters.
    #[error("the label `{}` is longer than the 63 characters DNS allows", Escaped(.0))]
    LabelTooLong(String),
    /// Two dots in a row, or a leading dot.
    #[error("the domain name has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    /// A character outside letters, digits, hyphen and dot.
    #[error("the domain name contains {0:?}, which is not allowed in a host name (letters, digits, hyphens and dots only)")]
    BadCharacter(char),
    /// A label starts or ends with a hyphen.
    #[error("the label `{}` starts or ends with a hyphen", Escaped(.0))]
    BadHyphen(String),
    /// IDNA processing of an internationalized name failed.
    #[error("the internationalized name `{}` cannot be converted to its ASCII (A-label) form", Escaped(.0))]
    Idna(String),
    /// The last label is all digits, so the name looks like an IP address.
    #[error("`{}` looks like an IP address, not a domain name", Escaped(.0))]
    Numeric(String),
}

impl DomainName {
    /// Checks and normalizes `input` into a domain name.
    pub fn new(input: &str) -> Result<Self, NameError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        // Reject ASCII troublemakers before IDNA, so the error names the real character
        // (IDNA would otherwise fail with a less useful message or map them away).
        if let Some(c) = trimmed
            .chars()
            .find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
        {
            return Err(NameError::BadCharacter(c));
        }
        let ascii = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(trimmed).map_err(|_| NameError::Idna(trimmed.to_owned()))?
        };
        Self::check_ascii(&ascii)?;
        Ok(Self(ascii))
    }

    fn check_ascii(name: &str) -> Result<(), NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        let mut last = "";
        for label in name.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong(label.to_owned()));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            {
                return Err(NameError::BadCharacter(c));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(NameError::BadHyphen(label.to_owned()));
            }
            last = label;
        }
        if name.len() > 253 {
            return Err(NameError::TooLong(name.len()));
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NameError::Numeric(name.to_owned()));
        }
        Ok(())
    }

    /// The name as lower-case A-labels, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels of the name, left to right.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DomainName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for DomainName {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_and_drops_trailing_dot() {
        assert_eq!(
            DomainName::new("Mail.Example.TEST.").unwrap().as_str(),
            "mail.example.test"
        );
    }

    #[test]
    fn converts_u_labels_to_a_labels() {
        assert_eq!(
            DomainName::new("bücher.example.test").unwrap().as_str(),
            "xn--bcher-kva.example.test"
        );
    }

    #[test]
    fn refuses_path_traversal_and_hostile_names() {
        assert_eq!(
            DomainName::new("../../etc"),
            Err(NameError::BadCharacter('/'))
        );
        assert_eq!(DomainName::new("a/b"), Err(NameError::BadCharacter('/')));
        assert_eq!(DomainName::new("a\0b"), Err(NameError::BadCharacter('\0')));
        assert_eq!(DomainName::new(".."), Err(NameError::EmptyLabel));
        assert_eq!(DomainName::new("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(DomainName::new(""), Err(NameError::Empty));
        assert_eq!(DomainName::new("a b"), Err(NameError::BadCharacter(' ')));
        assert_eq!(
            DomainName::new("*.example.test"),
            Err(NameError::BadCharacter('*'))
        );
        let long_label = "a".repeat(300);
        assert!(matches!(
            DomainName::new(&format!("{long_label}.test")),
            Err(NameError::LabelTooLong(_))
        ));
        let long_name = ["abcdefghij"; 30].join(".");
        assert_eq!(DomainName::new(&long_name), Err(NameError::TooLong(329)));
    }

    #[test]
    fn refuses_hyphen_edges_and_numeric_names() {
        assert!(matches!(
            DomainName::new("-a.test"),
            Err(NameError::BadHyphen(_))
        ));
        assert!(matches!(
            DomainName::new("127.0.0.1"),
            Err(NameError::Numeric(_))
        ));
        assert!(matches!(
            DomainName::new("127.1"),
            Err(NameError::Numeric(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_output_revalidates(s in "\\PC{0,80}") {
            if let Ok(name) = DomainName::new(&s) {
                proptest::prop_assert_eq!(DomainName::new(name.as_str()).unwrap(), name.clone());
                proptest::prop_assert!(!name.as_str().contains(".."));
                proptest::prop_assert!(!name.as_str().contains('/'));
            }
        }
    }
}
