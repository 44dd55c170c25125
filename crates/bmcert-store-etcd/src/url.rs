//! `etcd://host:port,host:port[/prefix]` store addresses, as `--store` takes them.

use crate::store::EtcdOptions;

/// Why a `--store etcd://...` address was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    /// Not an `etcd://` address.
    #[error("`{0}` is not an etcd address: write etcd://HOST:PORT[,HOST:PORT...][/PREFIX]")]
    NotEtcd(String),
    /// An endpoint is not `host:port`.
    #[error("the etcd endpoint `{0}` is not HOST:PORT (for example 127.0.0.1:2379)")]
    BadEndpoint(String),
}

/// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` into connection options (plain HTTP,
/// no authentication; set [`EtcdOptions::tls`] and [`EtcdOptions::user`] for those).
/// The prefix defaults to `/bmcert/`.
pub fn parse_store_url(url: &str) -> Result<EtcdOptions, StoreUrlError> {
    let Some(rest) = url.strip_prefix("etcd://") else {
        return Err(StoreUrlError::NotEtcd(url.to_owned()));
    };
    let (hosts, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let mut endpoints = Vec::new();
    for endpoint in hosts.split(',') {
        let ok = endpoint
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok || endpoint.chars().any(|c| c.is_whitespace() || c == '@') {
            return Err(StoreUrlError::BadEndpoint(endpoint.to_owned()));
        }
        endpoints.push(endpoint.to_owned());
    }
    let mut options = EtcdOptions::new(endpoints);
    if let Some(prefix) = prefix.filter(|p| *p != "/") {
        options.prefix = prefix.to_owned();
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints_and_prefix() {
        let o = parse_store_url("etcd://127.0.0.1:2379,[::1]:2380/tenant-a/").unwrap();
        assert_eq!(o.endpoints, ["127.0.0.1:2379", "[::1]:2380"]);
        assert_eq!(o.prefix, "/tenant-a/");
        let o = parse_store_url("etcd://h:1").unwrap();
        assert_eq!(o.prefix, "/bmcert/");
    }

    #[test]
    fn refuses_bad_addresses() {
        assert!(matches!(
            parse_store_url("/var/lib/bmcert"),
            Err(StoreUrlError::NotEtcd(_))
        ));
        for bad in [
            "etcd://",
            "etcd://host",
            "etcd://h:99999",
            "etcd://:1",
            "etcd://a:1,",
        ] {
            assert!(
                matches!(parse_store_url(bad), Err(StoreUrlError::BadEndpoint(_))),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_cleanly(text in "\\PC{0,80}") {
            if let Ok(o) = parse_store_url(&text) {
                proptest::prop_assert!(!o.endpoints.is_empty());
                proptest::prop_assert!(o.endpoints.iter().all(|e| e.contains(':')));
                proptest::prop_assert!(o.prefix.starts_with('/'));
            }
        }

        #[test]
        fn generated_addresses_round_trip(ports in proptest::collection::vec(1u16.., 1..4), prefix in "(/[a-z0-9-]{1,10}){0,2}/?") {
            let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            let o = parse_store_url(&format!("etcd://{}{prefix}", hosts.join(","))).unwrap();
            proptest::prop_assert_eq!(o.endpoints, hosts);
            if prefix.len() > 1 {
                proptest::prop_assert_eq!(o.prefix, prefix);
            }
        }
    }
}
