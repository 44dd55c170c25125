//! [`StoreConfig`]: where the store is and how to reach it, validated, as plain data.
//!
//! One type for every program that opens a store (the `bmcert` command, the examples, a
//! service or an agent): parsed from the address form (`/var/lib/bmcert`,
//! `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, `etcds://...`) and completed with the etcd
//! connection settings ([`StoreSettings`], as a command line or a configuration file gives
//! them). It reads no file and needs no etcd client: `bmcert_store_etcd::EtcdStore::open`
//! (or the facade's `bmcert::open_store`) reads the files it names and connects.

use std::fmt;
use std::io;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::StoreError;

/// The default etcd key prefix.
pub const DEFAULT_ETCD_PREFIX: &str = "/bmcert/";

/// Where the store is: a directory, or an etcd cluster.
///
/// Deliberately exhaustive: every program that opens stores must decide what to do with
/// each kind (a build without the etcd store refuses [`StoreConfig::Etcd`] with
/// [`StoreConfigError::EtcdNotBuilt`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// The directory store ([`crate::DirStore`]).
    Dir(PathBuf),
    /// The etcd store of a multi-server installation.
    Etcd(EtcdConfig),
}

/// An etcd cluster, the store's key prefix in it, TLS and authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The client endpoints, `HOST:PORT`.
    pub endpoints: Vec<String>,
    /// The key prefix (default `/bmcert/`).
    pub prefix: String,
    /// TLS to every endpoint (`etcds://`); `None` is plain HTTP (`etcd://`).
    pub tls: Option<EtcdTlsConfig>,
    /// Authentication.
    pub user: Option<EtcdUser>,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .finish()
    }
}

/// TLS files for the connection to etcd (read when the store is opened).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdTlsConfig {
    /// The CA that signed the etcd servers' certificates (etcd's `--trusted-ca-file`), PEM;
    /// `None` trusts the platform's CA certificates.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM, chain allowed) and its private key, for an etcd that
    /// requires one (`--client-cert-auth`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// An etcd user and its password (zeroized on drop; Debug shows the name only).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdUser {
    /// The user name.
    pub name: String,
    password: Zeroizing<String>,
}

impl EtcdUser {
    /// The password, for the connection.
    pub fn secret_password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One of the etcd connection settings, as errors name them.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdSetting {
    /// The etcd CA file (`--etcd-cacert`, `etcd.cacert`).
    CaCert,
    /// The client certificate (`--etcd-cert`, `etcd.cert`).
    Cert,
    /// The client certificate's key (`--etcd-key`, `etcd.key`).
    Key,
    /// The user (`--etcd-user`, `etcd.user`).
    User,
}

impl fmt::Display for EtcdSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CaCert => "the etcd CA file (--etcd-cacert)",
            Self::Cert => "the etcd client certificate (--etcd-cert)",
            Self::Key => "the etcd client key (--etcd-key)",
            Self::User => "the etcd user (--etcd-user)",
        })
    }
}

/// The `[etcd]` section of a configuration file, as the `bmcert` command's
/// (`/etc/bmcert/bmcert.toml`) and a service's write it: `cacert`, `cert`, `key`, `user`,
/// `password` (any serde format; unknown keys are refused, so a typo is not ignored).
/// Relative paths are the caller's to resolve ([`EtcdFileSettings::relative_to`]).
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdFileSettings {
    /// The etcd CA file.
    pub cacert: Option<PathBuf>,
    /// The client certificate.
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// The etcd user.
    pub user: Option<String>,
    #[serde(default, deserialize_with = "secret")]
    password: Option<Zeroizing<String>>,
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(text.map(Zeroizing::new))
}

impl EtcdFileSettings {
    /// The password, if the file holds one (it should then be readable by its owner only).
    pub fn secret_password(&self) -> Option<&Zeroizing<String>> {
        self.password.as_ref()
    }

    /// The paths made absolute against `dir` (the configuration file's directory).
    pub fn relative_to(mut self, dir: &std::path::Path) -> Self {
        for path in [&mut self.cacert, &mut self.cert, &mut self.key]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
        self
    }
}

impl fmt::Debug for EtcdFileSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdFileSettings")
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// The store settings as a command line or a configuration file gives them, before
/// validation by [`StoreConfig::from_settings`].
#[derive(Clone, Default)]
pub struct StoreSettings {
    /// A directory, or `etcd://...` / `etcds://...`.
    pub store: String,
    /// The etcd CA file.
    pub etcd_cacert: Option<PathBuf>,
    /// The etcd client certificate.
    pub etcd_cert: Option<PathBuf>,
    /// Its private key.
    pub etcd_key: Option<PathBuf>,
    /// The etcd user.
    pub etcd_user: Option<String>,
    /// Its password.
    pub etcd_password: Option<Zeroizing<String>>,
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("store", &self.store)
            .field("etcd_cacert", &self.etcd_cacert)
            .field("etcd_cert", &self.etcd_cert)
            .field("etcd_key", &self.etcd_key)
            .field("etcd_user", &self.etcd_user)
            .finish_non_exhaustive()
    }
}

impl StoreSettings {
    /// The settings of a configuration file: its `store` and its `[etcd]` section.
    pub fn from_file(store: String, etcd: EtcdFileSettings) -> Self {
        Self {
            store,
            etcd_password: etcd.secret_password().cloned(),
            etcd_cacert: etcd.cacert,
            etcd_cert: etcd.cert,
            etcd_key: etcd.key,
            etcd_user: etcd.user,
        }
    }

    /// The etcd settings given, in order.
    pub fn etcd_settings_given(&self) -> Vec<EtcdSetting> {
        [
            (self.etcd_cacert.is_some(), EtcdSetting::CaCert),
            (self.etcd_cert.is_some(), EtcdSetting::Cert),
            (self.etcd_key.is_some(), EtcdSetting::Key),
            (self.etcd_user.is_some(), EtcdSetting::User),
        ]
        .into_iter()
        .filter_map(|(given, s)| given.then_some(s))
        .collect()
    }
}

/// Why store settings were refused, or the store they name could not be opened.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreConfigError {
    /// An address with a scheme other than `etcd://` or `etcds://`.
    #[error(
        "`{0}` is not an etcd address: write etcd://HOST:PORT[,HOST:PORT...][/PREFIX] \
         (plain) or etcds://HOST:PORT[,HOST:PORT...][/PREFIX] (TLS), or a directory path"
    )]
    NotAnAddress(String),
    /// An endpoint is not `HOST:PORT`.
    #[error(
        "the etcd endpoint `{0}` is not HOST:PORT (for example 127.0.0.1:2379); write \
         etcd://HOST:PORT[,HOST:PORT...][/PREFIX] or etcds://... for TLS"
    )]
    BadEndpoint(String),
    /// etcd settings given with a directory store.
    #[error("{} only apply to an etcd store, and the store `{store}` is a directory; write etcds://HOST:PORT[,...][/PREFIX] for an etcd cluster, or drop {}", list(.settings), them(.settings))]
    EtcdSettingsWithDirectory {
        /// The settings given.
        settings: Vec<EtcdSetting>,
        /// The directory.
        store: String,
    },
    /// TLS files with a plain `etcd://` address (keys and password would go in clear).
    #[error("{} {} TLS to etcd, but the store `{url}` is a plain etcd:// address; write etcds://{} to use TLS, or drop {}", list(.settings), if .settings.len() == 1 { "is for" } else { "are for" }, .url.trim_start_matches("etcd://"), them(.settings))]
    TlsSettingsWithPlainEtcd {
        /// The TLS settings given.
        settings: Vec<EtcdSetting>,
        /// The address.
        url: String,
    },
    /// A client certificate without its key, or the reverse.
    #[error("{given} `{}` needs {missing} too (etcdctl's --cert and --key go together)", .path.display())]
    IncompleteClientCert {
        /// The one given.
        given: EtcdSetting,
        /// Its file.
        path: PathBuf,
        /// The one missing.
        missing: EtcdSetting,
    },
    /// An empty user name (`--etcd-user :PASSWORD`).
    #[error("the etcd user name is empty; write USER or USER:PASSWORD")]
    EmptyUserName,
    /// A user without a password.
    #[error("the etcd user `{0}` has no password: set BMCERT_ETCD_PASSWORD (it does not show in the process list), write `password` in the configuration file's [etcd] section, or --etcd-user {0}:PASSWORD")]
    NoPassword(String),
    /// An etcd address, and a build without the etcd store.
    #[error("the store `{0}` is on etcd, and this program was built without the etcd store: build it with the cargo feature `etcd` (`cargo build --release -p bmcert-cli --features etcd`; needs protoc, Debian package protobuf-compiler), or give a directory")]
    EtcdNotBuilt(String),
    /// A file the settings name could not be read.
    #[error("cannot read {what} `{}`: {}", .path.display(), describe(*.kind, .message))]
    Read {
        /// Which setting.
        what: EtcdSetting,
        /// Its file.
        path: PathBuf,
        /// The OS error kind.
        kind: io::ErrorKind,
        /// The OS error text.
        message: String,
    },
    /// A certificate file holds no usable PEM certificate.
    #[error("{what} `{}` holds no usable PEM certificate ({reason}); give the certificates as PEM (-----BEGIN CERTIFICATE-----); for DER convert with `openssl x509 -inform der -in FILE -out FILE.pem`", .path.display())]
    NoCertificate {
        /// Which setting.
        what: EtcdSetting,
        /// Its file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The client key file holds no PEM private key.
    #[error("{} `{}` holds no PEM private key; give the key of the client certificate as PEM (PKCS#8, PKCS#1 or SEC1: -----BEGIN ... PRIVATE KEY-----)", EtcdSetting::Key, .0.display())]
    NoPrivateKey(PathBuf),
    /// `etcds://` without a CA file, and the platform's CA certificates cannot be loaded.
    #[error("etcds:// without --etcd-cacert trusts the system's CA certificates, and they could not be loaded ({0}); give --etcd-cacert FILE, the CA that signed the etcd servers' certificates (etcd's --trusted-ca-file)")]
    NoPlatformRoots(String),
    /// The store could not be opened (unreachable, refused credentials, TLS...).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn list(settings: &[EtcdSetting]) -> String {
    let names: Vec<String> = settings.iter().map(ToString::to_string).collect();
    names.join(", ")
}

fn them(settings: &[EtcdSetting]) -> &'static str {
    if settings.len() == 1 {
        "it"
    } else {
        "them"
    }
}

fn describe(kind: io::ErrorKind, message: &str) -> String {
    match kind {
        io::ErrorKind::NotFound => "it does not exist; check the path".to_owned(),
        io::ErrorKind::PermissionDenied => {
            "permission denied; run as a user that may read it, or fix its permissions".to_owned()
        }
        _ => message.to_owned(),
    }
}

impl StoreConfig {
    /// Whether `store` is written as an etcd address (`etcd://` or `etcds://`).
    pub fn is_etcd_address(store: &str) -> bool {
        store.starts_with("etcd://") || store.starts_with("etcds://")
    }

    /// Parses the address form: a directory, `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` or
    /// `etcds://...` (TLS with the platform's CA certificates, no client certificate, no
    /// user: see [`StoreConfig::from_settings`] for those).
    pub fn parse(store: &str) -> Result<Self, StoreConfigError> {
        if Self::is_etcd_address(store) {
            return EtcdConfig::parse(store).map(Self::Etcd);
        }
        if store.contains("://") {
            // An address of another kind, or a misspelt scheme: not a directory to create.
            return Err(StoreConfigError::NotAnAddress(store.to_owned()));
        }
        if store.is_empty() {
            return Err(StoreConfigError::NotAnAddress(store.to_owned()));
        }
        Ok(Self::Dir(PathBuf::from(store)))
    }

    /// Validates settings: the address, and the etcd settings against it (TLS files only
    /// with `etcds://`, a client certificate with its key, a user with a password). Nothing
    /// is read.
    pub fn from_settings(settings: StoreSettings) -> Result<Self, StoreConfigError> {
        let mut config = Self::parse(&settings.store)?;
        let etcd = match &mut config {
            Self::Dir(_) => {
                let given = settings.etcd_settings_given();
                if !given.is_empty() {
                    return Err(StoreConfigError::EtcdSettingsWithDirectory {
                        settings: given,
                        store: settings.store,
                    });
                }
                return Ok(config);
            }
            Self::Etcd(etcd) => etcd,
        };
        let tls_given: Vec<EtcdSetting> = settings
            .etcd_settings_given()
            .into_iter()
            .filter(|s| *s != EtcdSetting::User)
            .collect();
        match &mut etcd.tls {
            None if !tls_given.is_empty() => {
                return Err(StoreConfigError::TlsSettingsWithPlainEtcd {
                    settings: tls_given,
                    url: settings.store,
                })
            }
            None => {}
            Some(tls) => {
                tls.ca_file = settings.etcd_cacert;
                tls.client_cert = match (settings.etcd_cert, settings.etcd_key) {
                    (Some(cert), Some(key)) => Some((cert, key)),
                    (None, None) => None,
                    (Some(path), None) => {
                        return Err(StoreConfigError::IncompleteClientCert {
                            given: EtcdSetting::Cert,
                            path,
                            missing: EtcdSetting::Key,
                        })
                    }
                    (None, Some(path)) => {
                        return Err(StoreConfigError::IncompleteClientCert {
                            given: EtcdSetting::Key,
                            path,
                            missing: EtcdSetting::Cert,
                        })
                    }
                };
            }
        }
        if let Some(name) = settings.etcd_user {
            if name.is_empty() {
                return Err(StoreConfigError::EmptyUserName);
            }
            let Some(password) = settings.etcd_password else {
                return Err(StoreConfigError::NoPassword(name));
            };
            etcd.user = Some(EtcdUser { name, password });
        }
        Ok(config)
    }
}

impl EtcdConfig {
    /// The address form, `etcd[s]://HOST:PORT[,...]PREFIX` (no secret: the user is not
    /// part of it).
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls.is_some() { "etcds" } else { "etcd" },
            self.endpoints.join(","),
            self.prefix
        )
    }

    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` or `etcds://...`; the prefix
    /// defaults to `/bmcert/`.
    pub fn parse(url: &str) -> Result<Self, StoreConfigError> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("etcd://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            (rest, true)
        } else {
            return Err(StoreConfigError::NotAnAddress(url.to_owned()));
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
            // `@` is refused: a `user:password@` in an address would end up in messages.
            if !ok || endpoint.chars().any(|c| c.is_whitespace() || c == '@') {
                return Err(StoreConfigError::BadEndpoint(endpoint.to_owned()));
            }
            endpoints.push(endpoint.to_owned());
        }
        Ok(Self {
            endpoints,
            prefix: prefix
                .filter(|p| *p != "/")
                .unwrap_or(DEFAULT_ETCD_PREFIX)
                .to_owned(),
            tls: tls.then(EtcdTlsConfig::default),
            user: None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn settings(store: &str) -> StoreSettings {
        StoreSettings {
            store: store.to_owned(),
            ..StoreSettings::default()
        }
    }

    #[test]
    fn parses_directories_and_both_etcd_forms() {
        assert_eq!(
            StoreConfig::parse("/var/lib/bmcert").unwrap(),
            StoreConfig::Dir("/var/lib/bmcert".into())
        );
        let StoreConfig::Etcd(e) =
            StoreConfig::parse("etcd://127.0.0.1:2379,[::1]:2380/tenant-a/").unwrap()
        else {
            panic!()
        };
        assert_eq!(e.endpoints, ["127.0.0.1:2379", "[::1]:2380"]);
        assert_eq!((e.prefix.as_str(), e.tls.is_none()), ("/tenant-a/", true));
        let StoreConfig::Etcd(e) = StoreConfig::parse("etcds://h:1").unwrap() else {
            panic!()
        };
        assert_eq!(e.prefix, DEFAULT_ETCD_PREFIX);
        assert_eq!(e.tls, Some(EtcdTlsConfig::default()));
        assert_eq!(e.url(), "etcds://h:1/bmcert/");
        assert_eq!(EtcdConfig::parse(&e.url()).unwrap(), e);
    }

    #[test]
    fn refuses_other_schemes_and_bad_endpoints() {
        for bad in ["https://10.0.0.1:2379", "etcs://h:1", "ETCD://h:1", ""] {
            let e = StoreConfig::parse(bad).unwrap_err();
            assert_eq!(e, StoreConfigError::NotAnAddress(bad.to_owned()));
            let text = e.to_string();
            assert!(
                text.contains("etcd://HOST:PORT") && text.contains("etcds://HOST:PORT"),
                "{text}"
            );
        }
        for bad in [
            "etcd://",
            "etcds://host",
            "etcds://u:pw@h:1",
            "etcd://h:99999",
            "etcd://:1",
            "etcd://a:1,",
        ] {
            assert!(
                matches!(
                    StoreConfig::parse(bad),
                    Err(StoreConfigError::BadEndpoint(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn etcd_settings_are_refused_with_a_directory() {
        let mut s = settings("/srv/certs");
        s.etcd_cacert = Some("ca.pem".into());
        s.etcd_user = Some("bm".into());
        let e = StoreConfig::from_settings(s).unwrap_err();
        assert_eq!(
            e,
            StoreConfigError::EtcdSettingsWithDirectory {
                settings: vec![EtcdSetting::CaCert, EtcdSetting::User],
                store: "/srv/certs".into()
            }
        );
        let text = e.to_string();
        assert!(
            text.contains("--etcd-cacert")
                && text.contains("--etcd-user")
                && text.contains("etcds://"),
            "{text}"
        );
    }

    #[test]
    fn tls_files_need_etcds_and_a_certificate_needs_its_key() {
        let mut s = settings("etcd://10.0.0.1:2379/p/");
        s.etcd_cacert = Some("ca.pem".into());
        let text = StoreConfig::from_settings(s).unwrap_err().to_string();
        assert!(
            text.contains("--etcd-cacert) is for TLS") && text.contains("etcds://10.0.0.1:2379/p/"),
            "{text}"
        );
        let mut s = settings("etcds://h:1");
        s.etcd_cert = Some("c.pem".into());
        assert!(matches!(
            StoreConfig::from_settings(s),
            Err(StoreConfigError::IncompleteClientCert {
                given: EtcdSetting::Cert,
                missing: EtcdSetting::Key,
                ..
            })
        ));
        let mut s = settings("etcds://h:1/bm/");
        s.etcd_cacert = Some("ca.pem".into());
        s.etcd_cert = Some("c.pem".into());
        s.etcd_key = Some("k.pem".into());
        let StoreConfig::Etcd(e) = StoreConfig::from_settings(s).unwrap() else {
            panic!()
        };
        let tls = e.tls.unwrap();
        assert_eq!(tls.ca_file, Some("ca.pem".into()));
        assert_eq!(tls.client_cert, Some(("c.pem".into(), "k.pem".into())));
    }

    #[test]
    fn a_user_needs_a_name_and_a_password_which_no_debug_shows() {
        let mut s = settings("etcds://h:1");
        s.etcd_user = Some("bm".into());
        assert_eq!(
            StoreConfig::from_settings(s.clone()).unwrap_err(),
            StoreConfigError::NoPassword("bm".into())
        );
        s.etcd_user = Some(String::new());
        s.etcd_password = Some(Zeroizing::new("hunter2".into()));
        let e = StoreConfig::from_settings(s.clone()).unwrap_err();
        assert_eq!(e, StoreConfigError::EmptyUserName);
        assert!(!e.to_string().contains("hunter2"));
        s.etcd_user = Some("bm".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        let config = StoreConfig::from_settings(s).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        let StoreConfig::Etcd(e) = config else {
            panic!()
        };
        assert_eq!(e.user.unwrap().secret_password(), "hunter2");
    }

    #[test]
    fn a_configuration_file_section_validates_like_options() {
        let etcd: EtcdFileSettings = serde_json::from_str(
            r#"{"cacert": "pki/ca.pem", "user": "bm", "password": "file-secret"}"#,
        )
        .unwrap();
        assert!(!format!("{etcd:?}").contains("file-secret"));
        let etcd = etcd.relative_to(std::path::Path::new("/etc/bmcert"));
        let config =
            StoreConfig::from_settings(StoreSettings::from_file("etcds://h:1".into(), etcd))
                .unwrap();
        let StoreConfig::Etcd(e) = config else {
            panic!()
        };
        assert_eq!(
            e.tls.unwrap().ca_file,
            Some("/etc/bmcert/pki/ca.pem".into())
        );
        assert_eq!(e.user.unwrap().secret_password(), "file-secret");
        // A typo is refused, not ignored.
        let typo = serde_json::from_str::<EtcdFileSettings>(r#"{"cacrt": "ca.pem"}"#);
        assert!(typo.unwrap_err().to_string().contains("cacrt"));
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_cleanly(text in "\\PC{0,80}") {
            match StoreConfig::parse(&text) {
                Ok(StoreConfig::Dir(p)) => proptest::prop_assert!(!text.contains("://") && p.as_os_str() == text.as_str()),
                Ok(StoreConfig::Etcd(e)) => {
                    proptest::prop_assert!(!e.endpoints.is_empty());
                    proptest::prop_assert!(e.prefix.starts_with('/'));
                    proptest::prop_assert_eq!(e.tls.is_some(), text.starts_with("etcds://"));
                }
                Err(_) => {}
            }
        }
    }
}
