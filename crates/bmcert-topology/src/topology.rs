use serde::Deserialize;

use crate::host::{Host, HostError};
use crate::name::{DomainName, NameError};
use crate::plain::Escaped;
use crate::target::Target;

/// The installation's sites: the system external URL and the domains, each with the extra DNS
/// names its certificate must also cover.
///
/// Services build it from their own configuration; the `bmcert` command reads it from a TOML
/// file of this shape:
///
/// ```toml
/// default_domain = "example.test"
/// [system]
/// url = "https://mail.example.test"
/// names = ["autodiscover.example.test"]   # optional additional DNS names
/// [[domain]]
/// name = "acme.test"
/// url = "https://webmail.acme.test"        # optional: a domain without url is served the system
///                                          # certificate and cannot have one of its own
/// names = []
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The installation's default domain (used for `no-reply@` addresses).
    pub default_domain: Option<DomainName>,
    /// The main external URL and its extra names.
    pub system: Site,
    /// The domains, in file order, names unique.
    pub domains: Vec<DomainSite>,
}

/// One external URL and the extra DNS names a certificate for it must cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The URL as configured.
    pub url: String,
    /// The host of [`Site::url`].
    pub host: Host,
    /// Additional DNS names, de-duplicated, in configuration order.
    pub names: Vec<DomainName>,
}

/// A domain of the installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSite {
    /// The domain's name (its identity, not necessarily a host name).
    pub name: DomainName,
    /// The domain's own external URL, if it has one. Without it the domain uses the system URL.
    pub site: Option<Site>,
}

/// Why a topology cannot be used.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The TOML text does not parse or lacks a field (toml's error: the line, column and
    /// what was expected).
    #[error("the topology file is not valid: {}", escape_lines(&.0.to_string()))]
    Syntax(#[source] toml::de::Error),
    /// The text is longer than [`Topology::MAX_BYTES`]: refused before parsing.
    #[error("the topology file is {0} bytes, over the {limit} MiB limit; check that the right file was given", limit = Topology::MAX_BYTES >> 20)]
    TooLarge(usize),
    /// A URL whose host cannot be read.
    #[error("the URL of {} is not usable: {reason}", Escaped(.whose))]
    BadUrl {
        /// `system` or `domain NAME`.
        whose: String,
        /// What is wrong.
        reason: HostError,
    },
    /// A name that is not a valid DNS name.
    #[error("`{}` ({}) is not a valid domain name: {reason}", Escaped(.name), Escaped(.whose))]
    BadName {
        /// `default_domain`, `system` or `domain NAME`.
        whose: String,
        /// The name as written.
        name: String,
        /// What is wrong.
        reason: NameError,
    },
    /// The same domain listed twice.
    #[error("the domain `{0}` is listed twice")]
    DuplicateDomain(DomainName),
    /// A target that the topology does not list.
    #[error("the topology has no domain `{0}`; add it as a [[domain]] first")]
    UnknownDomain(DomainName),
    /// A domain certificate for a domain that has no external URL of its own: such a domain
    /// is served the system certificate, so a certificate of its own would never be served.
    #[error("domain_without_url: the domain `{0}` has no external URL of its own, so it is served the system certificate and cannot have a dedicated one; set the domain's external URL first (`url = \"https://...\"` in its [[domain]] entry), then install or order its certificate")]
    DomainWithoutUrl(DomainName),
}

impl TopologyError {
    /// The stable problem code of a refusal of a target the topology lists
    /// (`domain_without_url`); `None` for a topology that cannot be used or a target it does
    /// not list (usage errors).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::DomainWithoutUrl(_) => Some("domain_without_url"),
            _ => None,
        }
    }
}

/// A parser's multi-line message with each line [`Escaped`].
fn escape_lines(text: &str) -> String {
    text.lines()
        .map(|l| Escaped(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    default_domain: Option<String>,
    system: SiteFile,
    #[serde(default)]
    domain: Vec<DomainFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    url: String,
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFile {
    name: String,
    url: Option<String>,
    #[serde(default)]
    names: Vec<String>,
}

impl Site {
    /// Builds a site from a URL (or bare host) and extra DNS names.
    pub fn new(url: &str, names: &[&str]) -> Result<Self, TopologyError> {
        Self::build("site", url, names.iter().map(|s| s.to_string()).collect())
    }

    fn build(whose: &str, url: &str, names: Vec<String>) -> Result<Self, TopologyError> {
        let host = Host::parse(url).map_err(|reason| TopologyError::BadUrl {
            whose: whose.to_owned(),
            reason,
        })?;
        let mut out: Vec<DomainName> = Vec::with_capacity(names.len());
        for n in names {
            let name = DomainName::new(&n).map_err(|reason| TopologyError::BadName {
                whose: whose.to_owned(),
                name: n.clone(),
                reason,
            })?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(Self {
            url: url.to_owned(),
            host,
            names: out,
        })
    }

    /// The DNS names a certificate for this site must cover: the URL's host (when it is a
    /// name) followed by the additional names, de-duplicated.
    pub fn dns_names(&self) -> Vec<DomainName> {
        let mut out: Vec<DomainName> = self.host.dns_name().into_iter().cloned().collect();
        for n in &self.names {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }
}

impl Topology {
    /// A topology with only a system URL.
    pub fn new(system: Site) -> Self {
        Self {
            default_domain: None,
            system,
            domains: Vec::new(),
        }
    }

    /// The longest topology text [`Topology::from_toml_str`] parses: 4 MiB, room for
    /// 100,000 domains with a URL each. Programs that read the file should bound their read
    /// with it (the `bmcert` CLI does).
    pub const MAX_BYTES: usize = 4 << 20;

    /// Parses the TOML topology file format shown in the type's documentation.
    ///
    /// A text over [`Topology::MAX_BYTES`] is [`TopologyError::TooLarge`], refused before
    /// parsing.
    pub fn from_toml_str(text: &str) -> Result<Self, TopologyError> {
        if text.len() > Self::MAX_BYTES {
            return Err(TopologyError::TooLarge(text.len()));
        }
        let file: File = toml::from_str(text).map_err(TopologyError::Syntax)?;
        let default_domain = file
            .default_domain
            .map(|d| {
                DomainName::new(&d).map_err(|reason| TopologyError::BadName {
                    whose: "default_domain".into(),
                    name: d.clone(),
                    reason,
                })
            })
            .transpose()?;
        let system = Site::build("system", &file.system.url, file.system.names)?;
        let mut domains: Vec<DomainSite> = Vec::with_capacity(file.domain.len());
        for d in file.domain {
            let name = DomainName::new(&d.name).map_err(|reason| TopologyError::BadName {
                whose: "domain".into(),
                name: d.name.clone(),
                reason,
            })?;
            if domains.iter().any(|x| x.name == name) {
                return Err(TopologyError::DuplicateDomain(name));
            }
            let whose = format!("domain {name}");
            let site = match d.url {
                Some(url) => Some(Site::build(&whose, &url, d.names)?),
                None if d.names.is_empty() => None,
                // Extra names without a URL: attach them to the system URL's host.
                None => Some(Site::build(&whose, &file.system.url, d.names)?),
            };
            domains.push(DomainSite { name, site });
        }
        Ok(Self {
            default_domain,
            system,
            domains,
        })
    }

    /// The domain entry named `name`.
    pub fn domain(&self, name: &DomainName) -> Option<&DomainSite> {
        self.domains.iter().find(|d| &d.name == name)
    }

    /// The site a target's certificate serves: the system site, or the domain's own site.
    ///
    /// A domain without an external URL of its own (no `url`, or one whose host is the
    /// system URL's) is served the system certificate: a certificate of its own would never
    /// be served, so it has no site here ([`TopologyError::DomainWithoutUrl`]). The manual:
    /// "if a specific URL is set for a domain, this domain can be associated with a
    /// dedicated certificate".
    pub fn site_for(&self, target: &Target) -> Result<&Site, TopologyError> {
        match target {
            Target::System => Ok(&self.system),
            Target::Domain(name) => {
                let d = self
                    .domain(name)
                    .ok_or_else(|| TopologyError::UnknownDomain(name.clone()))?;
                d.site
                    .as_ref()
                    .filter(|site| site.host != self.system.host)
                    .ok_or_else(|| TopologyError::DomainWithoutUrl(name.clone()))
            }
        }
    }

    /// The host of the external URL a target's certificate must match
    /// ([`site_for`](Self::site_for)'s refusals apply).
    pub fn host_for(&self, target: &Target) -> Result<&Host, TopologyError> {
        self.site_for(target).map(|s| &s.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_over_the_limit_is_refused_before_parsing() {
        // Valid TOML padded with a comment: only its size is wrong.
        let mut text = String::from("[system]\nurl = \"https://mail.example.test\"\n#");
        text.push_str(&"x".repeat(Topology::MAX_BYTES));
        assert_eq!(
            Topology::from_toml_str(&text),
            Err(TopologyError::TooLarge(text.len()))
        );
        assert!(TopologyError::TooLarge(text.len())
            .to_string()
            .contains("over the 4 MiB limit"));
        text.truncate(Topology::MAX_BYTES);
        assert!(Topology::from_toml_str(&text).is_ok());
    }

    const SAMPLE: &str = r#"
default_domain = "example.test"
[system]
url = "https://mail.example.test"
names = ["autodiscover.example.test", "AUTODISCOVER.example.test"]
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
names = []
[[domain]]
name = "other.test"
"#;

    #[test]
    fn parses_the_documented_shape() {
        let t = Topology::from_toml_str(SAMPLE).unwrap();
        assert_eq!(t.default_domain.unwrap().as_str(), "example.test");
        assert_eq!(t.system.names.len(), 1, "duplicates removed");
        assert_eq!(
            t.system
                .dns_names()
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>(),
            ["mail.example.test", "autodiscover.example.test"]
        );
        assert_eq!(t.domains.len(), 2);
    }

    #[test]
    fn a_domain_without_url_has_no_site_of_its_own() {
        let t = Topology::from_toml_str(SAMPLE).unwrap();
        let other: Target = "domain:other.test".parse().unwrap();
        let refused = t.host_for(&other).unwrap_err();
        assert_eq!(refused.code(), Some("domain_without_url"));
        assert!(refused
            .to_string()
            .contains("set the domain's external URL"));
        // Extra names without a URL borrow the system URL: still no site of its own.
        let borrowed = Topology::from_toml_str(
            "[system]\nurl='https://mail.example.test'\n[[domain]]\nname='b.test'\nnames=['x.b.test']\n",
        )
        .unwrap();
        let b: Target = "domain:b.test".parse().unwrap();
        assert!(matches!(
            borrowed.site_for(&b),
            Err(TopologyError::DomainWithoutUrl(_))
        ));
        let acme: Target = "domain:acme.test".parse().unwrap();
        assert_eq!(t.host_for(&acme).unwrap().to_string(), "webmail.acme.test");
        let unknown: Target = "domain:nope.test".parse().unwrap();
        assert!(matches!(
            t.host_for(&unknown),
            Err(TopologyError::UnknownDomain(_))
        ));
    }

    #[test]
    fn refuses_bad_files() {
        assert!(matches!(
            Topology::from_toml_str("x = 1"),
            Err(TopologyError::Syntax(_))
        ));
        let dup = "[system]\nurl='a.test'\n[[domain]]\nname='b.test'\n[[domain]]\nname='B.test'\n";
        assert!(matches!(
            Topology::from_toml_str(dup),
            Err(TopologyError::DuplicateDomain(_))
        ));
        let bad = "[system]\nurl='https://a b/'\n";
        assert!(matches!(
            Topology::from_toml_str(bad),
            Err(TopologyError::BadUrl { .. })
        ));
    }

    #[test]
    fn messages_escape_nul_and_esc_from_the_file() {
        let cases = [
            "[system]\nurl='https://a\u{1b}[2J.test/'\n",
            "[system]\nurl='https://a.test'\n[[domain]]\nname='x\u{0}\u{1b}]0;pwn\u{7}.test'\n",
            "[system]\nurl='https://a.test'\n[[domain]]\nname='b.test'\nurl='https://b.test:99999/'\n",
            "[system]\nurl='https://a.test'\nnames=['\u{1b}[31m.test']\n",
            "[sys\u{1b}tem]\n",
        ];
        for text in cases {
            let e = Topology::from_toml_str(text).unwrap_err().to_string();
            assert!(!e.chars().any(|c| c.is_control() && c != '\n'), "{e:?}");
        }
    }
}
