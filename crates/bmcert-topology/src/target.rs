use core::fmt;
use core::str::FromStr;

use crate::name::{DomainName, NameError};
use crate::plain::Escaped;

/// What a certificate is installed for: the system certificate, or one domain's.
///
/// The text form, used on the command line and in store keys, is `system` or
/// `domain:NAME` with `NAME` a [`DomainName`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The certificate of the main external URL; also the one IMAP and SMTP always use.
    System,
    /// A domain's dedicated certificate, for its own external URL.
    Domain(DomainName),
}

/// Why a string is not a target.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Neither `system` nor `domain:NAME`.
    #[error("`{}` is not a target: write `system` or `domain:NAME`", Escaped(.0))]
    Syntax(String),
    /// `domain:NAME` with an invalid name.
    #[error("`{}` is not a valid domain name: {reason}", Escaped(.name))]
    BadDomain {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
}

impl Target {
    /// The domain name of a domain target.
    pub fn domain(&self) -> Option<&DomainName> {
        match self {
            Self::System => None,
            Self::Domain(name) => Some(name),
        }
    }

    /// Whether this is the system target.
    pub fn is_system(&self) -> bool {
        matches!(self, Self::System)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::Domain(name) => write!(f, "domain:{name}"),
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("system") {
            return Ok(Self::System);
        }
        let Some(name) = s.strip_prefix("domain:") else {
            return Err(TargetError::Syntax(s.to_owned()));
        };
        DomainName::new(name)
            .map(Self::Domain)
            .map_err(|reason| TargetError::BadDomain {
                name: name.to_owned(),
                reason,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for s in ["system", "domain:acme.test"] {
            assert_eq!(s.parse::<Target>().unwrap().to_string(), s);
        }
        assert_eq!(
            "domain:ACME.test".parse::<Target>().unwrap().to_string(),
            "domain:acme.test"
        );
    }

    #[test]
    fn refuses_bad_targets() {
        assert!(matches!(
            "sys".parse::<Target>(),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            "domain:../x".parse::<Target>(),
            Err(TargetError::BadDomain { .. })
        ));
    }
}
