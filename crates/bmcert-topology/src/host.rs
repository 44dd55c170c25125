use core::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::name::{DomainName, NameError};
use crate::plain::Escaped;

/// The host an external URL points at: a domain name or an IP address.
///
/// [`Host::parse`] accepts what administrators type in a configuration field: a full URL
/// (`https://Mail.Example.test:8443/webmail/`), a host with a port (`mail.example.test:443`),
/// a bare host, a bracketed or bare IPv6 address. Scheme case, user information, port, path,
/// query, fragment and case do not matter.
///
/// The URL is parsed by the `url` crate, which implements the WHATWG URL standard that
/// browsers follow, so the host bmcert checks a certificate against is the host a browser
/// connects to: `https://evil.test\@mail.example.test` is `evil.test` (a backslash ends the
/// authority in an `http(s)` URL), percent-escapes and IDNA are applied as browsers apply
/// them, and a port that is not a number up to 65535 is refused. What the WHATWG parser
/// reads more loosely than RFC 9525 allows for reference identifiers is refused rather than
/// reinterpreted: an IPv4 address must be written in dotted-quad form (`127.1` and
/// `0x7f.0.0.1`, which browsers read as `127.0.0.1`, are refused), and only `http` and
/// `https` URLs are accepted (other schemes have no host rules browsers agree on).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name.
    Dns(DomainName),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

/// Why a URL or host string does not name a host. Messages repeat the input through
/// [`Escaped`], so control characters in it are shown as escapes.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing but white space, or a URL without a host part.
    #[error("the URL `{}` has no host name", Escaped(.0))]
    NoHost(String),
    /// A `[` without its `]`.
    #[error("the URL `{}` has an unterminated IPv6 address (missing `]`)", Escaped(.0))]
    BadBracket(String),
    /// The text in brackets is not an IPv6 address.
    #[error("`{}` is not a valid IPv6 address", Escaped(.0))]
    BadIpv6(String),
    /// The host part is not a valid domain name.
    #[error("the host `{}` is not a valid domain name: {reason}", Escaped(.host))]
    BadName {
        /// The host part as found in the input.
        host: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// The port is not a number from 0 to 65535.
    #[error("the URL `{}` has an invalid port: write a number from 1 to 65535 after the colon, or no port", Escaped(.0))]
    BadPort(String),
    /// A scheme other than `http` or `https`.
    #[error("the URL `{}` is not an https:// (or http://) URL", Escaped(.0))]
    Scheme(String),
}

impl Host {
    /// Extracts the host from a URL or a bare host name; see the type's documentation.
    pub fn parse(input: &str) -> Result<Self, HostError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(HostError::NoHost(input.to_owned()));
        }
        let has_scheme = s.find("://").is_some_and(|i| {
            let scheme = &s[..i];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        // A bare IPv6 address (several colons, no brackets) is not URL syntax.
        if !has_scheme && !s.contains('[') && s.matches(':').count() > 1 {
            return s
                .parse::<Ipv6Addr>()
                .map(|ip| Self::Ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::BadIpv6(s.to_owned()));
        }
        // `https:///path`: browsers skip the extra slashes and take `path` as the host;
        // an empty authority is a mistake, not a host name.
        if has_scheme && naive_host(s).is_empty() {
            return Err(HostError::NoHost(input.to_owned()));
        }
        let url_text = if has_scheme {
            s.to_owned()
        } else {
            format!("https://{s}")
        };
        let url = match url::Url::parse(&url_text) {
            Ok(url) => url,
            Err(e) => return Err(url_error(e, input, &url_text)),
        };
        if !matches!(url.scheme(), "https" | "http") {
            return Err(HostError::Scheme(input.to_owned()));
        }
        match url.host() {
            None => Err(HostError::NoHost(input.to_owned())),
            Some(url::Host::Ipv6(ip)) => Ok(Self::Ip(IpAddr::V6(ip))),
            Some(url::Host::Ipv4(ip)) => {
                // Only the dotted-quad form the browser would also print (RFC 9525 6.2).
                let typed = naive_host(&url_text);
                if typed == ip.to_string() {
                    Ok(Self::Ip(IpAddr::V4(ip)))
                } else {
                    Err(HostError::BadName {
                        reason: DomainName::new(&typed)
                            .err()
                            .unwrap_or_else(|| NameError::Numeric(typed.clone())),
                        host: typed,
                    })
                }
            }
            Some(url::Host::Domain(name)) => {
                DomainName::new(name)
                    .map(Self::Dns)
                    .map_err(|reason| HostError::BadName {
                        host: name.to_owned(),
                        reason,
                    })
            }
        }
    }

    /// The domain name, when the host is one.
    pub fn dns_name(&self) -> Option<&DomainName> {
        match self {
            Self::Dns(name) => Some(name),
            Self::Ip(_) => None,
        }
    }
}

/// The host part as a naive split reads it (authority up to the first `/`, `?` or `#`,
/// after the last `@`, before the port): used only to word errors, never as the answer.
fn naive_host(url: &str) -> String {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let hostport = authority
        .rfind('@')
        .map_or(authority, |i| &authority[i + 1..]);
    let host = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => &hostport[..i],
        _ => hostport,
    };
    host.to_owned()
}

/// The error for a URL the WHATWG parser refuses, worded with our own checks where they
/// say more.
fn url_error(e: url::ParseError, input: &str, url_text: &str) -> HostError {
    use url::ParseError as P;
    let host = naive_host(url_text);
    match e {
        P::InvalidPort => HostError::BadPort(input.to_owned()),
        P::EmptyHost => HostError::NoHost(input.to_owned()),
        P::InvalidIpv6Address => match host.strip_prefix('[') {
            Some(inner) if !inner.contains(']') => HostError::BadBracket(input.to_owned()),
            Some(inner) => HostError::BadIpv6(inner.trim_end_matches(']').to_owned()),
            None => HostError::BadIpv6(host),
        },
        _ if host.is_empty() => HostError::NoHost(input.to_owned()),
        _ => HostError::BadName {
            reason: DomainName::new(&host)
                .err()
                .unwrap_or_else(|| NameError::Idna(host.clone())),
            host,
        },
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
    fn the_host_is_the_one_a_browser_connects_to() {
        // WHATWG: a backslash ends the authority of an http(s) URL.
        assert_eq!(host("https://evil.test\\@mail.example.test"), "evil.test");
        assert_eq!(host("https://evil.test\\.mail.example.test/"), "evil.test");
        assert_eq!(host("https://mail%2Eexample.test/"), "mail.example.test");
        assert_eq!(host("https://a@b@mail.example.test/"), "mail.example.test");
    }

    #[test]
    fn ports_must_be_numbers_up_to_65535() {
        assert_eq!(
            host("https://mail.example.test:65535/"),
            "mail.example.test"
        );
        for bad in [
            "https://mail.example.test:99999/",
            "https://mail.example.test:abc/",
            "mail.example.test:99999",
            "mail.example.test:-1",
        ] {
            assert!(
                matches!(Host::parse(bad), Err(HostError::BadPort(_))),
                "{bad}: {:?}",
                Host::parse(bad)
            );
        }
    }

    #[test]
    fn loose_ipv4_forms_and_other_schemes_are_refused() {
        for bad in [
            "https://0x7f.0.0.1/",
            "https://127.0.0.01/",
            "https://2130706433/",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad}: {:?}", Host::parse(bad));
        }
        assert!(matches!(
            Host::parse("imap://mail.example.test"),
            Err(HostError::Scheme(_))
        ));
    }

    #[test]
    fn errors_escape_control_characters() {
        let e = Host::parse("https://a\u{1b}[31m.test/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
        let e = Host::parse("https://mail.example.test:9\u{0}/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\0') && e.contains("\\u{0}"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_errors_echo_no_control_characters(text in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
            match Host::parse(&text) {
                Ok(h) => proptest::prop_assert_eq!(Host::parse(&h.to_string()), Ok(h)),
                Err(e) => {
                    let shown = e.to_string();
                    proptest::prop_assert!(!shown.chars().any(crate::is_unsafe_char), "{:?}", shown);
                }
            }
        }

        #[test]
        fn the_host_survives_userinfo_port_path_and_case(
            labels in proptest::collection::vec("[a-z][a-z0-9]{0,8}", 1..4),
            user in proptest::option::of("[a-z]{1,6}(:[a-z]{1,6})?"),
            port in proptest::option::of(0u32..=65535),
            path in "(/[a-z0-9@:.]{0,8}){0,3}",
        ) {
            let name = format!("{}.test", labels.join("."));
            let url = format!(
                "HTTPS://{}{}{}{}",
                user.map(|u| format!("{u}@")).unwrap_or_default(),
                name.to_uppercase(),
                port.map(|p| format!(":{p}")).unwrap_or_default(),
                path
            );
            proptest::prop_assert_eq!(host(&url), name);
        }

        #[test]
        fn ports_above_65535_are_refused(port in 65536u64..10_000_000) {
            let url = format!("https://mail.example.test:{port}/");
            proptest::prop_assert!(matches!(Host::parse(&url), Err(HostError::BadPort(_))));
        }
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
