//! The names an order covers. Sans-I/O.

use bmcert_topology::{DomainName, Host, Target, Topology};

use crate::AcmeError;

/// The DNS names a certificate for `target` must cover, as ACME identifiers: the host of the
/// target's external URL, then the topology's additional names, then `extra`; lower-case
/// A-labels, de-duplicated, in that order.
///
/// IP addresses and wildcards are refused: HTTP-01 and TLS-ALPN-01 cannot validate them here
/// (a wildcard needs DNS-01).
pub fn order_names(
    topology: &Topology,
    target: &Target,
    extra: &[String],
) -> Result<Vec<DomainName>, AcmeError> {
    let site = topology.site_for(target)?;
    if let Host::Ip(ip) = &site.host {
        return Err(AcmeError::BadName {
            target: target.clone(),
            name: ip.to_string(),
            reason: "the external URL's host is an IP address; Let's Encrypt certificates are ordered for DNS names: give the URL a DNS name",
        });
    }
    let mut out = site.dns_names();
    for raw in extra {
        let name = parse_extra(target, raw)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn parse_extra(target: &Target, raw: &str) -> Result<DomainName, AcmeError> {
    let bad = |reason| AcmeError::BadName {
        target: target.clone(),
        name: raw.to_owned(),
        reason,
    };
    let trimmed = raw.trim();
    if trimmed.starts_with("*.") || trimmed.contains('*') {
        return Err(bad("wildcard names need the DNS-01 challenge, which this installation does not use; list each name instead"));
    }
    if trimmed.parse::<std::net::IpAddr>().is_ok()
        || (trimmed.starts_with('[') && trimmed.ends_with(']'))
    {
        return Err(bad(
            "IP addresses cannot be validated by HTTP-01 or TLS-ALPN-01 here; give a DNS name",
        ));
    }
    DomainName::new(trimmed).map_err(|_| bad("not a valid DNS name (letters, digits, hyphens and dots; internationalized names are converted)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmcert_topology::Site;
    use proptest::prelude::*;

    fn topo(url: &str, names: &[&str]) -> Topology {
        Topology::new(Site::new(url, names).unwrap())
    }

    #[test]
    fn url_host_then_site_names_then_extra_deduplicated() {
        let t = topo(
            "https://Mail.Example.test:8443/x",
            &["autoconfig.example.test"],
        );
        let names = order_names(
            &t,
            &Target::System,
            &[
                "MAIL.example.test".into(),
                "bücher.example.test".into(),
                "autoconfig.example.test".into(),
            ],
        )
        .unwrap();
        let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "mail.example.test",
                "autoconfig.example.test",
                "xn--bcher-kva.example.test"
            ]
        );
    }

    #[test]
    fn ip_url_is_refused() {
        let t = topo("https://192.0.2.1", &[]);
        let e = order_names(&t, &Target::System, &[]).unwrap_err();
        assert!(
            matches!(e, AcmeError::BadName { ref name, .. } if name == "192.0.2.1"),
            "{e}"
        );
    }

    #[test]
    fn wildcard_and_ip_extras_are_refused() {
        let t = topo("https://mail.example.test", &[]);
        for bad in ["*.example.test", "192.0.2.7", "::1", "[::1]", "a b"] {
            let e = order_names(&t, &Target::System, &[bad.into()]).unwrap_err();
            assert!(matches!(e, AcmeError::BadName { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_domain_is_a_topology_error() {
        let t = topo("https://mail.example.test", &[]);
        let target: Target = "domain:nope.test".parse().unwrap();
        assert!(matches!(
            order_names(&t, &target, &[]),
            Err(AcmeError::Topology(_))
        ));
    }

    proptest! {
        #[test]
        fn names_are_unique_lowercase_and_never_panic(extra in proptest::collection::vec("[a-zA-Z0-9.*-]{0,20}", 0..6)) {
            let t = topo("https://mail.example.test", &[]);
            if let Ok(names) = order_names(&t, &Target::System, &extra) {
                let mut seen = std::collections::HashSet::new();
                for n in &names {
                    prop_assert!(seen.insert(n.as_str().to_owned()));
                    prop_assert_eq!(n.as_str(), n.as_str().to_ascii_lowercase());
                    prop_assert!(!n.as_str().contains('*'));
                }
                prop_assert_eq!(names[0].as_str(), "mail.example.test");
            }
        }
    }
}
