use core::fmt;
use std::net::IpAddr;

use crate::name::{DomainName, NameError};

/// The host an external URL points at: a domain name or an IP address.
///
/// [`Host::parse`] accepts what administrators type in a configuration field: a full URL
/// (`https://Mail.Example.test:8443/webmail/`), a host with a port (`mail.example.test:443`),
/// a bare host, a bracketed or bare IPv6 address. Scheme, user information, port, path,
/// query, fragment and case do not matter. An IPv4 address must be in dotted-quad form:
/// `127.1` is not read as `127.0.0.1`, as RFC 9525 section 6.2 wants for reference
/// identifiers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name.
    Dns(DomainName),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

/// Why a URL or host string does not name a host.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing but white space, or a URL without a host part.
    #[error("the URL `{0}` has no host name")]
    NoHost(String),
    /// A `[` without its `]`.
    #[error("the URL `{0}` has an unterminated IPv6 address (missing `]`)")]
    BadBracket(String),
    /// The text in brackets is not an IPv6 address.
    #[error("`{0}` is not a valid IPv6 address")]
    BadIpv6(String),
    /// The host part is not a valid domain name.
    #[error("the host `{host}` is not a valid domain name: {reason}")]
    BadName {
        /// The host part as found in the input.
        host: String,
        /// What is wrong with it.
        reason: NameError,
    },
}

impl Host {
    /// Extracts the host from a URL or a bare host name; see the type's documentation.
    pub fn parse(input: &str) -> Result<Self, HostError> {
        let s = input.trim();
        let rest = match s.find("://") {
            Some(i) => &s[i + 3..],
            None => s,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let hostport = match authority.rfind('@') {
            Some(i) => &authority[i + 1..],
            None => authority,
        };
        if hostport.is_empty() {
            return Err(HostError::NoHost(input.to_owned()));
        }
        if let Some(inner) = hostport.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| HostError::BadBracket(input.to_owned()))?;
            let addr = &inner[..end];
            return addr
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| Self::Ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::BadIpv6(addr.to_owned()));
        }
        // A bare IPv6 address (several colons, no brackets).
        if hostport.matches(':').count() > 1 {
            return hostport
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| Self::Ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::BadIpv6(hostport.to_owned()));
        }
        let host = match hostport.rfind(':') {
            Some(i) => &hostport[..i],
            None => hostport,
        };
        if host.is_empty() {
            return Err(HostError::NoHost(input.to_owned()));
        }
        if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            return Ok(Self::Ip(IpAddr::V4(ip)));
        }
        DomainName::new(host)
            .map(Self::Dns)
            .map_err(|reason| HostError::BadName {
                host: host.to_owned(),
                reason,
            })
    }

    /// The domain name, when the host is one.
    pub fn dns_name(&self) -> Option<&DomainName> {
        match self {
            Self::Dns(name) => Some(name),
            Self::Ip(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => name.fmt(f),
            Self::Ip(ip) => ip.fmt(f),
        }
    }
}

impl From<DomainName> for Host {
    fn from(name: DomainName) -> Self {
        Self::Dns(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> String {
        Host::parse(s).unwrap().to_string()
    }

    #[test]
    fn scheme_port_path_and_case_do_not_matter() {
        assert_eq!(
            host("https://Mail.Example.test:8443/webmail/?x=1#y"),
            "mail.example.test"
        );
        assert_eq!(host("mail.example.test:443"), "mail.example.test");
        assert_eq!(host("MAIL.example.test"), "mail.example.test");
        assert_eq!(
            host("https://user:pw@mail.example.test/"),
            "mail.example.test"
        );
        assert_eq!(host("mail.example.test."), "mail.example.test");
    }

    #[test]
    fn reads_ip_addresses() {
        assert_eq!(
            Host::parse("https://127.0.0.1:8443/").unwrap(),
            Host::Ip([127, 0, 0, 1].into())
        );
        assert_eq!(host("https://[::1]:8443/"), "::1");
        assert_eq!(host("0:0::1"), "::1");
        assert_eq!(host("[2001:db8::1]"), "2001:db8::1");
    }

    #[test]
    fn short_ipv4_forms_are_not_addresses() {
        assert!(matches!(
            Host::parse("127.1"),
            Err(HostError::BadName { .. })
        ));
    }

    #[test]
    fn idna_u_labels_become_a_labels() {
        assert_eq!(
            host("https://bücher.example.test/"),
            "xn--bcher-kva.example.test"
        );
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(Host::parse(""), Err(HostError::NoHost(_))));
        assert!(matches!(
            Host::parse("https:///path"),
            Err(HostError::NoHost(_))
        ));
        assert!(matches!(Host::parse("[::1"), Err(HostError::BadBracket(_))));
        assert!(matches!(Host::parse("[zz]"), Err(HostError::BadIpv6(_))));
        assert!(matches!(
            Host::parse("a b.test"),
            Err(HostError::BadName { .. })
        ));
    }
}
