//! Opening the store the settings name (`--store`, `BMCERT_STORE` or `store` in the
//! configuration file), with the etcd connection settings (see [`crate::settings`]).
//!
//! The etcd options follow etcdctl's so that administrators recognise them:
//!
//! | bmcert | etcdctl | environment |
//! |---|---|---|
//! | `--store etcds://HOST:PORT,...` | `--endpoints https://...` | `BMCERT_STORE` |
//! | `--etcd-cacert FILE` | `--cacert` | `BMCERT_ETCD_CACERT` |
//! | `--etcd-cert FILE` | `--cert` | `BMCERT_ETCD_CERT` |
//! | `--etcd-key FILE` | `--key` | `BMCERT_ETCD_KEY` |
//! | `--etcd-user USER[:PASSWORD]` | `--user` | `BMCERT_ETCD_USER`, password `BMCERT_ETCD_PASSWORD` |
//!
//! Settings exported for the etcd store (or written in the configuration file) do not break
//! a command run on a directory store: an etcd option given on the command line with a
//! directory store is refused, the same setting from the environment or the file is ignored.
//!
//! Resolution is split in two: [`plan`] decides from the settings alone (no file read,
//! unit-tested), [`load`] reads the files it names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "etcd")]
use bmcert::store::StoreError;
use bmcert::store::{DirStore, Store};
#[cfg(feature = "etcd")]
use bmcert_store_etcd::{EtcdOptions, EtcdStore};
#[cfg(feature = "etcd")]
use rustls_pki_types::pem::PemObject as _;
#[cfg(feature = "etcd")]
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
#[cfg(feature = "etcd")]
use zeroize::Zeroizing;

#[cfg(feature = "etcd")]
use crate::input;
use crate::input::UsageError;
#[cfg(feature = "etcd")]
use crate::settings::PASSWORD_VAR;
use crate::settings::{EtcdSettings, Setting, Settings};

/// What [`plan`] decided, before any file is read.
#[derive(Debug)]
pub(crate) enum StorePlan {
    /// The directory store.
    Dir(PathBuf),
    /// The etcd store.
    #[cfg(feature = "etcd")]
    Etcd(Box<EtcdPlan>),
}

/// An etcd store to open: options from the address and the user, files still to read.
#[cfg(feature = "etcd")]
#[derive(Debug)]
pub(crate) struct EtcdPlan {
    /// The store address as given (it holds no secret: `@` is refused in endpoints).
    pub(crate) url: String,
    /// Endpoints, prefix, user; `tls` is set (with no CA yet) for `etcds://`.
    pub(crate) options: EtcdOptions,
    /// `--etcd-cacert`; `None` with `etcds://` means the platform's CA certificates.
    pub(crate) cacert: Option<Setting<PathBuf>>,
    /// `--etcd-cert` and `--etcd-key`.
    pub(crate) identity: Option<(Setting<PathBuf>, Setting<PathBuf>)>,
    /// Things worth telling the administrator (printed on stderr), never an error.
    pub(crate) warnings: Vec<String>,
}

/// Decides how to open the store from the store setting and the etcd settings, reading no
/// file.
pub(crate) fn plan(store: &Setting<String>, etcd: &EtcdSettings) -> Result<StorePlan, UsageError> {
    let url = &store.value;
    let is_etcd = url.starts_with("etcd://") || url.starts_with("etcds://");
    if !is_etcd && url.contains("://") {
        // An address of another kind, or a misspelt scheme: not a directory to create.
        return Err(UsageError(format!(
            "{}: `{url}` is not an etcd address (etcd://HOST:PORT[,HOST:PORT...][/PREFIX] \
             or etcds://HOST:PORT[,HOST:PORT...][/PREFIX] for TLS), or a directory path",
            store.origin
        )));
    }
    if !is_etcd {
        let origins = [
            etcd.cacert.as_ref().map(|s| &s.origin),
            etcd.cert.as_ref().map(|s| &s.origin),
            etcd.key.as_ref().map(|s| &s.origin),
            etcd.user.as_ref().map(|s| &s.origin),
        ];
        let explicit = origins
            .into_iter()
            .flatten()
            .filter(|o| o.is_flag())
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        if !explicit.is_empty() {
            return Err(UsageError(format!(
                "{} only apply to an etcd store, and the store `{url}` ({}) is a directory; \
                 write --store etcds://HOST:PORT[,...][/PREFIX] for an etcd cluster, or drop {}",
                explicit.join(", "),
                store.origin,
                if explicit.len() == 1 { "it" } else { "them" },
            )));
        }
        // Settings from the environment or the file are meant for the etcd store: a
        // directory store ignores them.
        return Ok(StorePlan::Dir(PathBuf::from(url)));
    }
    plan_etcd(store, etcd)
}

/// Without the `etcd` feature an etcd address is refused with the way to get a build that
/// has it.
#[cfg(not(feature = "etcd"))]
fn plan_etcd(store: &Setting<String>, _etcd: &EtcdSettings) -> Result<StorePlan, UsageError> {
    Err(UsageError(format!(
        "{} {}: this bmcert was built without the etcd store; build it with \
         `cargo build --release -p bmcert-cli --features etcd` (needs protoc, Debian package \
         protobuf-compiler), or give a directory",
        store.origin, store.value
    )))
}

/// The etcd half of [`plan`].
#[cfg(feature = "etcd")]
fn plan_etcd(store: &Setting<String>, etcd: &EtcdSettings) -> Result<StorePlan, UsageError> {
    let url = &store.value;
    let mut options = bmcert_store_etcd::parse_store_url(url)
        .map_err(|e| UsageError(format!("{}: {e}", store.origin)))?;
    let tls = options.tls.is_some();
    if !tls {
        // A TLS setting, even from the environment, says the cluster is expected to be
        // reached over TLS: going plain instead would send keys and password in clear.
        let given: Vec<String> = [&etcd.cacert, &etcd.cert, &etcd.key]
            .iter()
            .filter_map(|s| s.as_ref().map(|s| s.origin.to_string()))
            .collect();
        if !given.is_empty() {
            return Err(UsageError(format!(
                "{} {} TLS to etcd, but the store `{url}` is a plain etcd:// address; write \
                 etcds://{} to use TLS, or drop {}",
                given.join(", "),
                if given.len() == 1 {
                    "is for"
                } else {
                    "are for"
                },
                &url["etcd://".len()..],
                if given.len() == 1 { "it" } else { "them" },
            )));
        }
    }
    let identity = match (&etcd.cert, &etcd.key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(UsageError(format!(
                "{} `{}` needs its private key: give --etcd-key FILE too (etcdctl's --key)",
                cert.origin,
                cert.value.display()
            )))
        }
        (None, Some(key)) => {
            return Err(UsageError(format!(
                "{} `{}` needs its certificate: give --etcd-cert FILE too (etcdctl's --cert)",
                key.origin,
                key.value.display()
            )))
        }
    };

    let mut warnings = Vec::new();
    if let Some(user) = &etcd.user {
        let name = &user.value;
        if name.is_empty() {
            return Err(UsageError(format!(
                "{}: the user name is empty; write USER or USER:PASSWORD",
                user.origin
            )));
        }
        let Some(password) = &etcd.password else {
            return Err(UsageError(format!(
                "{} `{name}` has no password: set the environment variable \
                 {PASSWORD_VAR} (preferred: it does not show in the process list), \
                 or write --etcd-user {name}:PASSWORD",
                user.origin
            )));
        };
        if !tls {
            warnings.push(format!(
                "the etcd password of `{name}` travels unencrypted over etcd://; \
                 write etcds:// if the cluster serves TLS"
            ));
        }
        options.user = Some((name.clone(), Zeroizing::new(password.value.to_string())));
    }
    Ok(StorePlan::Etcd(Box::new(EtcdPlan {
        url: url.clone(),
        options,
        cacert: if tls { etcd.cacert.clone() } else { None },
        identity: if tls { identity } else { None },
        warnings,
    })))
}

#[cfg(feature = "etcd")]
fn what(setting: &Setting<PathBuf>, thing: &str) -> String {
    format!("{thing} ({})", setting.origin)
}

#[cfg(feature = "etcd")]
/// Reads a PEM file of certificates; at least one is required.
fn read_pem_certs(setting: &Setting<PathBuf>, thing: &str) -> Result<Vec<u8>, UsageError> {
    let what = what(setting, thing);
    let path = &setting.value;
    let bytes = input::read(path, &what)?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        match cert {
            Ok(_) => count += 1,
            Err(e) => {
                return Err(UsageError(format!(
                    "the {what} `{}` has a damaged PEM certificate ({e}); write the \
                     certificates as PEM (-----BEGIN CERTIFICATE-----)",
                    path.display()
                )))
            }
        }
    }
    if count == 0 {
        return Err(UsageError(format!(
            "the {what} `{}` holds no PEM certificate; give a PEM file \
             (-----BEGIN CERTIFICATE-----), for DER convert it with \
             `openssl x509 -inform der -in FILE -out FILE.pem`",
            path.display()
        )));
    }
    Ok(bytes)
}

#[cfg(feature = "etcd")]
/// The platform's CA certificates as PEM, for `etcds://` without `--etcd-cacert`.
fn platform_roots_pem() -> Result<Vec<u8>, UsageError> {
    let loaded = rustls_native_certs::load_native_certs();
    if loaded.certs.is_empty() {
        let why = loaded
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), |e| e.to_string());
        return Err(UsageError(format!(
            "etcds:// without --etcd-cacert trusts the system's CA certificates, and they \
             could not be loaded ({why}); give --etcd-cacert FILE, the CA that signed the \
             etcd servers' certificates (etcd's --trusted-ca-file)"
        )));
    }
    let mut out = Vec::new();
    for cert in &loaded.certs {
        out.extend_from_slice(pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec())).as_bytes());
    }
    Ok(out)
}

#[cfg(feature = "etcd")]
/// Reads the files an [`EtcdPlan`] names and completes its TLS settings.
pub(crate) fn load(plan: EtcdPlan) -> Result<EtcdOptions, UsageError> {
    let mut options = plan.options;
    let Some(tls) = options.tls.as_mut() else {
        return Ok(options);
    };
    tls.ca_pem = match &plan.cacert {
        Some(cacert) => read_pem_certs(cacert, "etcd CA file")?,
        // Like etcdctl without --cacert: the system's trust store (an internal CA installed
        // with update-ca-certificates, or a public one). The server is still verified, so
        // this default is safe; a private etcd CA simply needs --etcd-cacert.
        None => platform_roots_pem()?,
    };
    if let Some((cert, key)) = &plan.identity {
        let cert_pem = read_pem_certs(cert, "etcd client certificate")?;
        let key_what = what(key, "etcd client key");
        let key_pem = Zeroizing::new(input::read(&key.value, &key_what)?);
        if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
            return Err(UsageError(format!(
                "the {key_what} `{}` holds no PEM private key; give the key of {} `{}` as \
                 PEM (PKCS#8, PKCS#1 or SEC1: -----BEGIN ... PRIVATE KEY-----)",
                key.value.display(),
                cert.origin,
                cert.value.display()
            )));
        }
        tls.identity = Some((cert_pem, key_pem));
    }
    Ok(options)
}

#[cfg(feature = "etcd")]
/// What [`hint`] needs of the settings used: no secret.
#[derive(Debug)]
struct Used {
    tls: bool,
    client_certificate: bool,
    user: Option<String>,
    prefix: String,
}

#[cfg(feature = "etcd")]
impl Used {
    fn of(options: &EtcdOptions) -> Self {
        Self {
            tls: options.tls.is_some(),
            client_certificate: options.tls.as_ref().is_some_and(|t| t.identity.is_some()),
            user: options.user.as_ref().map(|(u, _)| u.clone()),
            prefix: options.prefix.clone(),
        }
    }
}

#[cfg(feature = "etcd")]
/// What to check after the etcd store could not be opened, from the settings used and the
/// failure's text (etcd's and tonic's messages; the most specific cause first).
fn hint(url: &str, options: &Used, failure: &str) -> String {
    let tls = options.tls;
    let has = |needle: &str| failure.contains(needle);
    if has("authentication failed") {
        return "etcd refused the user or its password: check --etcd-user and the password \
                (BMCERT_ETCD_PASSWORD, or USER:PASSWORD)"
            .to_owned();
    }
    if has("permission denied") {
        return match &options.user {
            None => "etcd has authentication on: give --etcd-user USER with the password in \
                     BMCERT_ETCD_PASSWORD"
                .to_owned(),
            Some(user) => format!(
                "the etcd user `{user}` may not use the store's keys: grant its role \
                 read and write on the prefix `{}` (etcdctl role grant-permission ROLE \
                 readwrite {} --prefix=true)",
                options.prefix, options.prefix
            ),
        };
    }
    if tls && (has("NotValidForName") || has("not valid for name")) {
        return "the etcd server's certificate does not name the host written in --store: \
                write a host its certificate names (see `openssl x509 -noout -ext \
                subjectAltName` on etcd's --cert-file)"
            .to_owned();
    }
    if tls && (has("invalid peer certificate") || has("UnknownIssuer") || has("certificate")) {
        return "the etcd server's certificate is not signed by a trusted CA: give \
                --etcd-cacert FILE with the CA that signed it (etcd's --trusted-ca-file); \
                without that option the system's CA certificates are used"
            .to_owned();
    }
    let mut hint = if tls {
        if !options.client_certificate {
            "if etcd requires client certificates (--client-cert-auth), give --etcd-cert \
             and --etcd-key; check --etcd-cacert and that the servers' certificates name \
             the hosts written in --store"
                .to_owned()
        } else {
            "check that the etcd servers accept the client certificate (--etcd-cert, signed \
             by etcd's --trusted-ca-file) and that their certificates name the hosts written \
             in --store"
                .to_owned()
        }
    } else {
        format!(
            "if the cluster serves TLS (etcd's --cert-file), write etcds://{} with \
             --etcd-cacert",
            url.strip_prefix("etcd://").unwrap_or(url)
        )
    };
    hint.push_str("; check that the cluster is up and that the addresses and ports are right");
    hint
}

/// Opens the store the settings name: `etcd://` and `etcds://` are the etcd store (checked
/// with one request, so a wrong address, CA or password is reported here, with a hint),
/// anything else a directory.
pub(crate) fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, UsageError> {
    let store = settings.store()?;
    tracing::info!(store = %store.value, from = %store.origin, "opening the store");
    match plan(store, &settings.etcd)? {
        StorePlan::Dir(path) => {
            let store = DirStore::open(Path::new(&path))
                .map_err(|e| UsageError(format!("the store {}: {e}", path.display())))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "etcd")]
        StorePlan::Etcd(plan) => open_etcd(*plan),
    }
}

/// Opens the etcd store of an [`EtcdPlan`].
#[cfg(feature = "etcd")]
fn open_etcd(plan: EtcdPlan) -> Result<Arc<dyn Store>, UsageError> {
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    let url = plan.url.clone();
    let options = load(plan)?;
    let used = Used::of(&options);
    let failed = |e: StoreError, used: &Used| {
        let text = e.to_string();
        let hint = hint(&url, used, &text);
        UsageError(format!("--store {url}: {text}\nhint: {hint}"))
    };
    // The store's runtime threads write to etcd's sockets: started with SIGPIPE blocked.
    let store = crate::sigpipe::with_blocked(|| EtcdStore::connect(options))
        .map_err(|e| failed(e, &used))?;
    // One request now, so that a wrong address, CA or password is reported here, with the
    // hint, rather than as the first command's failure.
    bmcert::block_on(store.revision()).map_err(|e| failed(e, &used))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
#[cfg(feature = "etcd")]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::settings::{GlobalArgs, Origin};
    use clap::{CommandFactory as _, FromArgMatches as _, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        global: GlobalArgs,
    }

    /// The settings of `bmcert ARGS` with the environment `env` (given here rather than
    /// set in the process, which the tests share).
    fn settings_of(args: &[&str], env: &[(&str, &str)]) -> Settings {
        let mut argv = vec!["bmcert"];
        argv.extend_from_slice(args);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let vars: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let var = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut s = Settings::resolve(cli.global, &matches, &var).unwrap();
        // What clap's `env` would have read.
        let from_env = |name: &'static str| {
            var(name).map(|v| Setting::new(PathBuf::from(v), Origin::Env(name)))
        };
        s.etcd.cacert = s
            .etcd
            .cacert
            .take()
            .or_else(|| from_env("BMCERT_ETCD_CACERT"));
        s.etcd.cert = s.etcd.cert.take().or_else(|| from_env("BMCERT_ETCD_CERT"));
        s.etcd.key = s.etcd.key.take().or_else(|| from_env("BMCERT_ETCD_KEY"));
        if s.etcd.user.is_none() {
            if let Some(user) = var("BMCERT_ETCD_USER") {
                let user = user.into_string().unwrap();
                let origin = Origin::Env("BMCERT_ETCD_USER");
                match user.split_once(':') {
                    Some((name, pw)) => {
                        s.etcd.user = Some(Setting::new(name.to_owned(), origin.clone()));
                        s.etcd.password = Some(Setting::new(Zeroizing::new(pw.to_owned()), origin));
                    }
                    None => s.etcd.user = Some(Setting::new(user, origin)),
                }
            }
        }
        s
    }

    fn plan_of(args: &[&str], env: &[(&str, &str)]) -> Result<StorePlan, UsageError> {
        let s = settings_of(args, env);
        plan(s.store.as_ref().unwrap(), &s.etcd)
    }

    fn etcd(plan: Result<StorePlan, UsageError>) -> EtcdPlan {
        match plan {
            Ok(StorePlan::Etcd(p)) => *p,
            other => panic!("expected an etcd plan, got {other:?}"),
        }
    }

    fn error(plan: Result<StorePlan, UsageError>) -> String {
        match plan {
            Err(e) => e.0,
            Ok(p) => panic!("expected an error, got {p:?}"),
        }
    }

    #[test]
    fn a_directory_stays_a_directory() {
        match plan_of(&["--store", "/var/lib/bmcert"], &[]).unwrap() {
            StorePlan::Dir(p) => assert_eq!(p, Path::new("/var/lib/bmcert")),
            other => panic!("{other:?}"),
        }
        // Settings exported for etcd do not break a directory store...
        let p = plan_of(
            &["--store", "/srv/certs"],
            &[
                ("BMCERT_ETCD_CACERT", "/etc/etcd/ca.pem"),
                ("BMCERT_ETCD_USER", "bm:pw"),
            ],
        );
        assert!(matches!(p, Ok(StorePlan::Dir(_))));
        // ...but a flag there is a mistake.
        let e = error(plan_of(
            &[
                "--store",
                "/srv/certs",
                "--etcd-cacert",
                "ca.pem",
                "--etcd-user",
                "bm",
            ],
            &[],
        ));
        assert!(
            e.contains("--etcd-cacert, --etcd-user")
                && e.contains("/srv/certs")
                && e.contains("etcds://"),
            "{e}"
        );
    }

    #[test]
    fn an_address_of_another_kind_is_not_taken_for_a_directory() {
        for store in ["https://10.0.0.1:2379", "etcs://h:1", "ETCD://h:1"] {
            let e = error(plan_of(&["--store", store], &[]));
            assert!(
                e.contains(store)
                    && e.contains("etcd://HOST:PORT")
                    && e.contains("etcds://HOST:PORT"),
                "{e}"
            );
        }
    }

    #[test]
    fn etcds_with_the_etcdctl_options() {
        let p = etcd(plan_of(
            &[
                "--store",
                "etcds://10.0.0.1:2379,10.0.0.2:2379/prod/",
                "--etcd-cacert",
                "/etc/etcd/ca.pem",
                "--etcd-cert",
                "/etc/etcd/client.pem",
                "--etcd-key",
                "/etc/etcd/client.key",
                "--etcd-user",
                "bluemind",
            ],
            &[(PASSWORD_VAR, "pw-from-env")],
        ));
        assert_eq!(p.options.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(p.options.prefix, "/prod/");
        assert!(p.options.tls.is_some());
        let cacert = p.cacert.unwrap();
        assert_eq!(
            (cacert.value.to_str(), cacert.origin.to_string().as_str()),
            (Some("/etc/etcd/ca.pem"), "--etcd-cacert")
        );
        let (cert, key) = p.identity.unwrap();
        assert_eq!(cert.value, Path::new("/etc/etcd/client.pem"));
        assert_eq!(key.value, Path::new("/etc/etcd/client.key"));
        let (user, password) = p.options.user.unwrap();
        assert_eq!(
            (user.as_str(), password.as_str()),
            ("bluemind", "pw-from-env")
        );
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn user_colon_password_as_etcdctl_and_flags_win_over_the_environment() {
        let p = etcd(plan_of(
            &["--store", "etcds://h:1", "--etcd-user", "root:a:b c"],
            &[
                (PASSWORD_VAR, "ignored"),
                ("BMCERT_ETCD_USER", "other:x"),
                ("BMCERT_ETCD_CACERT", "/env/ca.pem"),
            ],
        ));
        let (user, password) = p.options.user.unwrap();
        // Split at the first colon, as etcdctl does: the password may hold colons.
        assert_eq!((user.as_str(), password.as_str()), ("root", "a:b c"));
        let cacert = p.cacert.unwrap();
        assert_eq!(
            (cacert.value.to_str(), cacert.origin.to_string().as_str()),
            (Some("/env/ca.pem"), "BMCERT_ETCD_CACERT")
        );

        let p = etcd(plan_of(
            &["--store", "etcds://h:1"],
            &[("BMCERT_ETCD_USER", "envuser"), (PASSWORD_VAR, "envpw")],
        ));
        let (user, password) = p.options.user.unwrap();
        assert_eq!((user.as_str(), password.as_str()), ("envuser", "envpw"));
        // No CA given: the platform's roots (decided by `load`).
        assert!(p.cacert.is_none());
    }

    #[test]
    fn a_user_without_password_is_refused_without_echoing_anything_secret() {
        let e = error(plan_of(
            &["--store", "etcds://h:1", "--etcd-user", "bm"],
            &[],
        ));
        assert!(
            e.contains("`bm`") && e.contains(PASSWORD_VAR) && e.contains("bm:PASSWORD"),
            "{e}"
        );
        let e = error(plan_of(
            &["--store", "etcds://h:1", "--etcd-user", ":hunter2"],
            &[],
        ));
        assert!(
            e.contains("user name is empty") && !e.contains("hunter2"),
            "{e}"
        );
        // An empty variable counts as unset.
        let e = error(plan_of(
            &["--store", "etcds://h:1", "--etcd-user", "bm"],
            &[(PASSWORD_VAR, "")],
        ));
        assert!(e.contains(PASSWORD_VAR), "{e}");
    }

    #[test]
    fn tls_options_with_a_plain_address_are_refused() {
        let e = error(plan_of(
            &[
                "--store",
                "etcd://10.0.0.1:2379/p/",
                "--etcd-cacert",
                "ca.pem",
            ],
            &[],
        ));
        assert!(
            e.contains("--etcd-cacert is for TLS")
                && e.contains("etcd://10.0.0.1:2379/p/")
                && e.contains("etcds://10.0.0.1:2379/p/"),
            "{e}"
        );
        // From the environment too: plain etcd would silently drop the TLS it asks for.
        let e = error(plan_of(
            &["--store", "etcd://h:1", "--etcd-cert", "c.pem"],
            &[("BMCERT_ETCD_KEY", "k.pem")],
        ));
        assert!(
            e.contains("--etcd-cert, BMCERT_ETCD_KEY are for TLS"),
            "{e}"
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_the_reverse() {
        let e = error(plan_of(
            &["--store", "etcds://h:1", "--etcd-cert", "c.pem"],
            &[],
        ));
        assert!(
            e.contains("--etcd-cert `c.pem`") && e.contains("--etcd-key"),
            "{e}"
        );
        let e = error(plan_of(
            &["--store", "etcds://h:1", "--etcd-key", "k.pem"],
            &[],
        ));
        assert!(
            e.contains("--etcd-key `k.pem`") && e.contains("--etcd-cert"),
            "{e}"
        );
    }

    #[test]
    fn a_password_over_plain_etcd_is_allowed_with_a_warning() {
        let p = etcd(plan_of(
            &["--store", "etcd://h:1", "--etcd-user", "u:secret-pw"],
            &[],
        ));
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("unencrypted") && !p.warnings[0].contains("secret-pw"));
        assert!(p.options.tls.is_none() && p.cacert.is_none());
    }

    #[test]
    fn bad_addresses_name_both_forms() {
        let e = error(plan_of(&["--store", "etcds://no-port"], &[]));
        assert!(e.contains("no-port") && e.contains("etcds://"), "{e}");
    }

    #[test]
    fn the_password_is_in_no_debug_output() {
        let s = settings_of(
            &["--store", "etcds://h:1", "--etcd-user", "root:hunter2"],
            &[],
        );
        let text = format!("{s:?}");
        assert!(text.contains("root") && !text.contains("hunter2"), "{text}");
        let p = etcd(plan(s.store.as_ref().unwrap(), &s.etcd));
        let text = format!("{p:?}");
        assert!(text.contains("root") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn hints_follow_the_cause() {
        let used = |tls: bool, client_certificate: bool, user: Option<&str>| Used {
            tls,
            client_certificate,
            user: user.map(str::to_owned),
            prefix: "/bm/".to_owned(),
        };
        let url = "etcds://h:1/bm/";
        let cases: [(Used, &str, &str); 8] = [
            (used(true, false, Some("u")), "etcdserver: authentication failed, invalid user ID or password", "--etcd-user and the password"),
            (used(true, false, None), "etcdserver: permission denied", "give --etcd-user USER"),
            (used(true, false, Some("u")), "etcdserver: permission denied", "`u` may not use the store's keys: grant its role read and write on the prefix `/bm/`"),
            (used(true, false, None), "invalid peer certificate: UnknownIssuer", "give --etcd-cacert FILE"),
            (used(true, false, None), "invalid peer certificate: NotValidForName", "does not name the host"),
            (used(true, false, None), "hyper::Error(Canceled, \"connection closed\")", "give --etcd-cert and --etcd-key"),
            (used(true, true, None), "connection closed", "accept the client certificate"),
            (used(false, false, None), "transport error: broken pipe", "write etcds://h:1/bm/"),
        ];
        for (used, failure, expected) in cases {
            let url = if used.tls { url } else { "etcd://h:1/bm/" };
            let hint = hint(url, &used, failure);
            assert!(hint.contains(expected), "{failure}: {hint}");
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> Setting<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Setting::new(path, Origin::Flag("--etcd-test"))
    }

    fn tls_plan(
        cacert: Option<Setting<PathBuf>>,
        identity: Option<(Setting<PathBuf>, Setting<PathBuf>)>,
    ) -> EtcdPlan {
        let mut p = etcd(plan_of(&["--store", "etcds://h:1"], &[]));
        p.cacert = cacert;
        p.identity = identity;
        p
    }

    #[test]
    fn load_reads_the_files_and_says_which_option_failed() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_cert = rcgen::CertificateParams::new(vec!["bmcert-client".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))
            .unwrap();
        let (ca_pem, cert_pem, key_pem) =
            (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem());
        let ca_file = write(dir.path(), "ca.pem", &ca_pem);
        let cert_file = write(dir.path(), "c.pem", &cert_pem);
        let key_file = write(dir.path(), "k.pem", &key_pem);
        let o = load(tls_plan(
            Some(ca_file.clone()),
            Some((cert_file.clone(), key_file.clone())),
        ))
        .unwrap();
        let tls = o.tls.unwrap();
        assert_eq!(tls.ca_pem, ca_pem.as_bytes());
        let (c, k) = tls.identity.unwrap();
        assert_eq!(
            (c.as_slice(), k.as_slice()),
            (cert_pem.as_bytes(), key_pem.as_bytes())
        );

        let missing = Setting::new(dir.path().join("nope.pem"), Origin::Flag("--etcd-cacert"));
        let e = load(tls_plan(Some(missing), None)).unwrap_err().0;
        assert!(
            e.contains("--etcd-cacert") && e.contains("nope.pem") && e.contains("does not exist"),
            "{e}"
        );

        let not_pem = write(dir.path(), "ca.der", "\u{30}\u{82}binary");
        let e = load(tls_plan(Some(not_pem), None)).unwrap_err().0;
        assert!(
            e.contains("ca.der") && e.contains("no PEM certificate"),
            "{e}"
        );

        // A certificate where the key should be: named, and its content is not echoed.
        let e = load(tls_plan(
            Some(ca_file),
            Some((cert_file.clone(), cert_file)),
        ))
        .unwrap_err()
        .0;
        assert!(
            e.contains("c.pem")
                && e.contains("no PEM private key")
                && !e.contains("BEGIN CERTIFICATE-----\n"),
            "{e}"
        );
    }

    #[test]
    fn without_a_ca_file_the_platform_roots_are_trusted() {
        let o = load(tls_plan(None, None));
        match o {
            Ok(o) => {
                let pem = o.tls.unwrap().ca_pem;
                assert!(CertificateDer::pem_slice_iter(&pem).count() > 0);
            }
            // A machine without a trust store: the message says what to give instead.
            Err(e) => assert!(e.0.contains("--etcd-cacert"), "{}", e.0),
        }
    }

    #[test]
    fn plain_options_need_no_file() {
        let o = load(etcd(plan_of(&["--store", "etcd://h:1/x"], &[]))).unwrap();
        assert!(o.tls.is_none());
        assert_eq!(o.prefix, "/x");
    }

    proptest::proptest! {
        #[test]
        fn any_store_text_plans_or_is_refused_cleanly(store in "\\PC{0,60}", user in proptest::option::of("\\PC{0,20}")) {
            let mut args = vec!["--store".to_owned(), store.clone()];
            if let Some(u) = &user {
                args.push(format!("--etcd-user={u}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if Cli::try_parse_from(std::iter::once("bmcert").chain(args.iter().copied())).is_err() {
                return Ok(());
            }
            let s = settings_of(&args, &[(PASSWORD_VAR, "pw")]);
            match plan(s.store.as_ref().unwrap(), &s.etcd) {
                Ok(StorePlan::Dir(p)) => {
                    proptest::prop_assert!(!store.contains("://"));
                    proptest::prop_assert_eq!(p, PathBuf::from(&store));
                }
                Ok(StorePlan::Etcd(p)) => {
                    proptest::prop_assert!(store.starts_with("etcd"));
                    proptest::prop_assert_eq!(p.options.tls.is_some(), store.starts_with("etcds://"));
                }
                Err(e) => {
                    if let Some((name, password)) = user.as_deref().and_then(|u| u.split_once(':')) {
                        // (unless the same text is also in the address or the user name)
                        if password.len() > 3 && !store.contains(password) && !name.contains(password) {
                            proptest::prop_assert!(!e.0.contains(password));
                        }
                    }
                }
            }
        }
    }
}
