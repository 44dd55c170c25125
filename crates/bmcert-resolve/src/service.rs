use core::fmt;
use core::str::FromStr;

/// The protocol a TLS listener serves, which decides how its certificate is chosen.
///
/// Only [`Service::Https`] chooses by SNI: web, API and MAPI clients ask for a domain's own
/// URL and get that domain's certificate. The mail protocols always present the system
/// certificate, whatever name the client sends, because mail clients are configured with the
/// installation's main host name.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// HTTPS: web mail, API, MAPI. Chooses by SNI, falling back to the system certificate.
    Https,
    /// IMAP (implicit TLS on 993 or STARTTLS). Always the system certificate.
    Imap,
    /// SMTP (submission, STARTTLS, implicit TLS on 465). Always the system certificate.
    Smtp,
    /// POP3. Always the system certificate.
    Pop3,
    /// ManageSieve (RFC 5804). Always the system certificate.
    ManageSieve,
}

impl Service {
    /// Every service, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Https,
        Self::Imap,
        Self::Smtp,
        Self::Pop3,
        Self::ManageSieve,
    ];

    /// Whether the certificate depends on the name the client asks for (SNI).
    pub fn selects_by_sni(self) -> bool {
        matches!(self, Self::Https)
    }

    /// The lower-case name used in logs and on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Imap => "imap",
            Self::Smtp => "smtp",
            Self::Pop3 => "pop3",
            Self::ManageSieve => "managesieve",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of the service names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a service: write https, imap, smtp, pop3 or managesieve")]
pub struct UnknownService(pub String);

impl FromStr for Service {
    type Err = UnknownService;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|svc| svc.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownService(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_selects_by_sni() {
        let by_sni: Vec<_> = Service::ALL
            .into_iter()
            .filter(|s| s.selects_by_sni())
            .collect();
        assert_eq!(by_sni, [Service::Https]);
    }

    #[test]
    fn names_round_trip() {
        for s in Service::ALL {
            assert_eq!(s.to_string().parse::<Service>(), Ok(s));
        }
        assert_eq!("IMAP".parse::<Service>(), Ok(Service::Imap));
        assert!("ftp".parse::<Service>().is_err());
    }
}
