//! `etcd://` and `etcds://` store addresses into [`EtcdOptions`], as `--store` takes them:
//! `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (plain HTTP) and
//! `etcds://HOST:PORT[,HOST:PORT...][/PREFIX]` (TLS to every endpoint).

use bmcert_store::{EtcdConfig, StoreConfigError};

use crate::store::{EtcdOptions, EtcdTls};

/// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` or
/// `etcds://HOST:PORT[,HOST:PORT...][/PREFIX]` into connection options. The prefix defaults
/// to `/bmcert/`; no authentication is set (fill [`EtcdOptions::user`] for it). The address
/// is validated by [`EtcdConfig::parse`], whose errors these are.
///
/// `etcd://` is plain HTTP ([`EtcdOptions::tls`] is `None`). `etcds://` means TLS to every
/// endpoint: [`EtcdOptions::tls`] is set with an **empty** [`EtcdTls::ca_pem`], which the
/// caller fills with the CA that signed the etcd servers' certificates (etcd's
/// `--trusted-ca-file`; `bmcert --etcd-cacert`) or with the platform's roots, and optionally
/// a client certificate ([`EtcdTls::identity`]). Parsing reads no file: an empty `ca_pem`
/// trusts no server, so a caller that forgets it gets a refused connection, never an
/// unverified one. [`EtcdStore::open`](crate::EtcdStore::open) does all of that from a
/// [`bmcert_store::StoreConfig`].
pub fn parse_store_url(url: &str) -> Result<EtcdOptions, StoreConfigError> {
    let config = EtcdConfig::parse(url)?;
    let mut options = EtcdOptions::new(config.endpoints);
    options.prefix = config.prefix;
    if config.tls.is_some() {
        options.tls = Some(EtcdTls {
            ca_pem: Vec::new(),
            identity: None,
            domain_name: None,
        });
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
        assert!(o.tls.is_none());
        let o = parse_store_url("etcd://h:1").unwrap();
        assert_eq!(o.prefix, "/bmcert/");
    }

    #[test]
    fn etcds_means_tls_to_every_endpoint_with_no_trust_chosen_yet() {
        let o = parse_store_url("etcds://10.0.0.1:2379,etcd-2.example:2379/prod/").unwrap();
        assert_eq!(o.endpoints, ["10.0.0.1:2379", "etcd-2.example:2379"]);
        assert_eq!(o.prefix, "/prod/");
        let tls = o.tls.unwrap();
        assert!(tls.ca_pem.is_empty());
        assert!(tls.identity.is_none() && tls.domain_name.is_none());
        assert!(o.user.is_none());
        assert_eq!(
            parse_store_url("etcds://h:1").unwrap().prefix,
            parse_store_url("etcd://h:1").unwrap().prefix
        );
    }

    #[test]
    fn messages_name_both_forms() {
        for bad in ["/var/lib/bmcert", "https://h:1", "etcd:/h:1", "ETCD://h:1"] {
            let e = parse_store_url(bad).unwrap_err();
            assert_eq!(e, StoreConfigError::NotAnAddress(bad.to_owned()));
            let text = e.to_string();
            assert!(
                text.contains("etcd://HOST:PORT") && text.contains("etcds://HOST:PORT"),
                "{text}"
            );
        }
        let text = parse_store_url("etcds://h").unwrap_err().to_string();
        assert!(
            text.contains("`h`") && text.contains("etcd://") && text.contains("etcds://"),
            "{text}"
        );
    }

    #[test]
    fn refuses_bad_addresses() {
        assert!(matches!(
            parse_store_url("/var/lib/bmcert"),
            Err(StoreConfigError::NotAnAddress(_))
        ));
        for bad in [
            "etcd://",
            "etcds://",
            "etcds://host",
            "etcds://https://h:1",
            "etcds://u:pw@h:1",
            "etcd://host",
            "etcd://h:99999",
            "etcd://:1",
            "etcd://a:1,",
        ] {
            assert!(
                matches!(parse_store_url(bad), Err(StoreConfigError::BadEndpoint(_))),
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
            proptest::prop_assert!(o.tls.is_none());
            proptest::prop_assert_eq!(&o.endpoints, &hosts);
            if prefix.len() > 1 {
                proptest::prop_assert_eq!(&o.prefix, &prefix);
            }
            // The same address with TLS: same endpoints and prefix, TLS on.
            let s = parse_store_url(&format!("etcds://{}{prefix}", hosts.join(","))).unwrap();
            proptest::prop_assert_eq!(&s.endpoints, &o.endpoints);
            proptest::prop_assert_eq!(&s.prefix, &o.prefix);
            proptest::prop_assert!(s.tls.is_some_and(|t| t.ca_pem.is_empty()));
        }

        #[test]
        fn tls_only_from_etcds(text in "(etcds?://)?\\PC{0,40}") {
            if let Ok(o) = parse_store_url(&text) {
                proptest::prop_assert_eq!(o.tls.is_some(), text.starts_with("etcds://"));
            }
        }
    }
}
