//! [`EtcdStore::open`]: from a validated [`EtcdConfig`] to a connected, checked store.

use std::path::Path;

use bmcert_store::{EtcdConfig, EtcdSetting, Store as _, StoreConfigError};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::store::{EtcdOptions, EtcdStore, EtcdTls};

impl EtcdStore {
    /// Opens the store `config` names: reads its TLS files (the CA file, or the platform's
    /// CA certificates without one; the client certificate and key), connects, and checks
    /// the cluster with one request, so that a wrong address, CA, client certificate,
    /// password or permission is reported here, typed
    /// ([`StoreConfigError::Store`] with an [`UnavailableCause`](bmcert_store::UnavailableCause)),
    /// rather than by the first operation. Blocks for at most the connect and request
    /// timeouts.
    pub fn open(config: &EtcdConfig) -> Result<Self, StoreConfigError> {
        let store = Self::connect(options_of(config)?)?;
        bmcert_store::block_on(store.revision())?;
        Ok(store)
    }
}

/// The connection options of `config`, with its files read.
pub(crate) fn options_of(config: &EtcdConfig) -> Result<EtcdOptions, StoreConfigError> {
    let mut options = EtcdOptions::new(config.endpoints.clone());
    options.prefix = config.prefix.clone();
    options.user = config.user.as_ref().map(|u| {
        (
            u.name.clone(),
            Zeroizing::new(u.secret_password().to_owned()),
        )
    });
    if let Some(tls) = &config.tls {
        let ca_pem = match &tls.ca_file {
            Some(path) => read_certificates(path, EtcdSetting::CaCert)?,
            // Like etcdctl without --cacert: the system's trust store (an internal CA
            // installed with update-ca-certificates, or a public one). The server is still
            // verified, so this default is safe; a private etcd CA needs a CA file.
            None => platform_roots_pem()?,
        };
        let identity = match &tls.client_cert {
            Some((cert, key)) => {
                let cert_pem = read_certificates(cert, EtcdSetting::Cert)?;
                let key_pem = Zeroizing::new(read(key, EtcdSetting::Key)?);
                if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
                    return Err(StoreConfigError::NoPrivateKey(key.clone()));
                }
                Some((cert_pem, key_pem))
            }
            None => None,
        };
        options.tls = Some(EtcdTls {
            ca_pem,
            identity,
            domain_name: None,
        });
    }
    Ok(options)
}

fn read(path: &Path, what: EtcdSetting) -> Result<Vec<u8>, StoreConfigError> {
    std::fs::read(path).map_err(|e| StoreConfigError::Read {
        what,
        path: path.to_owned(),
        kind: e.kind(),
        message: e.to_string(),
    })
}

/// Reads a PEM file of certificates; at least one is required.
fn read_certificates(path: &Path, what: EtcdSetting) -> Result<Vec<u8>, StoreConfigError> {
    let bytes = read(path, what)?;
    let refused = |reason: String| StoreConfigError::NoCertificate {
        what,
        path: path.to_owned(),
        reason,
    };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        match cert {
            Ok(_) => count += 1,
            Err(e) => return Err(refused(format!("a damaged PEM certificate: {e}"))),
        }
    }
    if count == 0 {
        return Err(refused("no -----BEGIN CERTIFICATE----- block".to_owned()));
    }
    Ok(bytes)
}

/// The platform's CA certificates as PEM, for `etcds://` without a CA file.
fn platform_roots_pem() -> Result<Vec<u8>, StoreConfigError> {
    let loaded = rustls_native_certs::load_native_certs();
    if loaded.certs.is_empty() {
        let why = loaded
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), |e| e.to_string());
        return Err(StoreConfigError::NoPlatformRoots(why));
    }
    let mut out = Vec::new();
    for cert in &loaded.certs {
        out.extend_from_slice(pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec())).as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use bmcert_store::{StoreConfig, StoreSettings};

    fn config(settings: StoreSettings) -> EtcdConfig {
        match StoreConfig::from_settings(settings).unwrap() {
            StoreConfig::Etcd(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_the_files_and_says_which_setting_failed() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["bmcert-client".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))
            .unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (ca, cert, key) = (
            write("ca.pem", &ca_cert.pem()),
            write("c.pem", &leaf.pem()),
            write("k.pem", &leaf_key.serialize_pem()),
        );
        let settings = |ca: &Path, cert: &Path, key: &Path| StoreSettings {
            store: "etcds://h:1/p/".into(),
            etcd_cacert: Some(ca.to_owned()),
            etcd_cert: Some(cert.to_owned()),
            etcd_key: Some(key.to_owned()),
            ..StoreSettings::default()
        };
        let o = options_of(&config(settings(&ca, &cert, &key))).unwrap();
        let tls = o.tls.unwrap();
        assert_eq!(tls.ca_pem, ca_cert.pem().as_bytes());
        assert_eq!(tls.identity.unwrap().0, leaf.pem().as_bytes());
        assert_eq!(o.prefix, "/p/");

        let missing = dir.path().join("nope.pem");
        let e = options_of(&config(settings(&missing, &cert, &key))).unwrap_err();
        assert!(
            matches!(
                &e,
                StoreConfigError::Read {
                    what: EtcdSetting::CaCert,
                    kind: std::io::ErrorKind::NotFound,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("nope.pem") && e.to_string().contains("does not exist"),
            "{e}"
        );
        let der = write("ca.der", "\u{30}\u{82}binary");
        let e = options_of(&config(settings(&der, &cert, &key))).unwrap_err();
        assert!(
            matches!(
                e,
                StoreConfigError::NoCertificate {
                    what: EtcdSetting::CaCert,
                    ..
                }
            ),
            "{e:?}"
        );
        // A certificate where the key should be: named, and its content is not echoed.
        let e = options_of(&config(settings(&ca, &cert, &cert))).unwrap_err();
        assert_eq!(e, StoreConfigError::NoPrivateKey(cert.clone()));
        assert!(!e.to_string().contains("BEGIN CERTIFICATE-----\n"));
    }

    #[test]
    fn without_a_ca_file_the_platform_roots_are_trusted_and_plain_needs_no_file() {
        let settings = StoreSettings {
            store: "etcds://h:1".into(),
            ..StoreSettings::default()
        };
        match options_of(&config(settings)) {
            Ok(o) => assert!(CertificateDer::pem_slice_iter(&o.tls.unwrap().ca_pem).count() > 0),
            // A machine without a trust store: the message says what to give instead.
            Err(e) => assert!(matches!(e, StoreConfigError::NoPlatformRoots(_)), "{e:?}"),
        }
        let settings = StoreSettings {
            store: "etcd://h:1/x".into(),
            ..StoreSettings::default()
        };
        let o = options_of(&config(settings)).unwrap();
        assert!(o.tls.is_none());
        assert_eq!(o.prefix, "/x");
    }
}
