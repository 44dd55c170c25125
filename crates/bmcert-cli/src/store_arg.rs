//! Opening the store the settings name (`--store`, `BMCERT_STORE` or `store` in the
//! configuration file), with the etcd connection settings (see [`crate::settings`]).
//!
//! Validation and opening are the library's ([`StoreConfig::from_settings`],
//! [`bmcert::open_store`]), the same for every program that opens a store. This module adds
//! what only the command knows:
//!
//! - where each setting came from: an etcd option given on the command line with a
//!   directory store is refused, the same setting from the environment or the configuration
//!   file is ignored (settings exported for the etcd store do not break a command run on a
//!   directory store), and messages say which option, variable or file gave a setting;
//! - a `hint:` line after a failure to open an etcd store, chosen from the typed cause
//!   ([`UnavailableCause`]) and the settings used.
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

use std::path::PathBuf;
use std::sync::Arc;

use bmcert::store::{
    EtcdConfig, EtcdSetting, Store, StoreConfig, StoreConfigError, StoreError, StoreSettings,
    UnavailableCause,
};

use crate::input::UsageError;
use crate::settings::{Origin, Setting, Settings};

/// The setting behind `what`, if given.
fn setting_of(settings: &Settings, what: EtcdSetting) -> Option<&Origin> {
    let etcd = &settings.etcd;
    match what {
        EtcdSetting::CaCert => etcd.cacert.as_ref().map(|s| &s.origin),
        EtcdSetting::Cert => etcd.cert.as_ref().map(|s| &s.origin),
        EtcdSetting::Key => etcd.key.as_ref().map(|s| &s.origin),
        EtcdSetting::User => etcd.user.as_ref().map(|s| &s.origin),
        _ => None,
    }
}

/// Where the settings an error names came from, as `(from BMCERT_ETCD_KEY)`.
fn origins(settings: &Settings, e: &StoreConfigError) -> String {
    let named: Vec<EtcdSetting> = match e {
        StoreConfigError::EtcdSettingsWithDirectory { settings, .. }
        | StoreConfigError::TlsSettingsWithPlainEtcd { settings, .. } => settings.clone(),
        StoreConfigError::IncompleteClientCert { given, .. } => vec![*given],
        StoreConfigError::EmptyUserName | StoreConfigError::NoPassword(_) => {
            vec![EtcdSetting::User]
        }
        StoreConfigError::Read { what, .. } | StoreConfigError::NoCertificate { what, .. } => {
            vec![*what]
        }
        StoreConfigError::NoPrivateKey(_) => vec![EtcdSetting::Key],
        _ => Vec::new(),
    };
    let from: Vec<String> = named
        .iter()
        .filter_map(|w| setting_of(settings, *w))
        .map(ToString::to_string)
        .collect();
    if from.is_empty() {
        String::new()
    } else {
        format!(" (from {})", from.join(", "))
    }
}

/// The validated store configuration of `settings`.
pub(crate) fn store_config(settings: &Settings) -> Result<StoreConfig, UsageError> {
    let store = settings.store()?;
    let etcd = &settings.etcd;
    // With a directory, only what this command line says counts (see the module doc).
    let counts = |origin: &Origin| StoreConfig::is_etcd_address(&store.value) || origin.is_flag();
    let path = |s: &Option<Setting<PathBuf>>| {
        s.as_ref()
            .filter(|s| counts(&s.origin))
            .map(|s| s.value.clone())
    };
    let user = etcd.user.as_ref().filter(|s| counts(&s.origin));
    let input = StoreSettings {
        store: store.value.clone(),
        etcd_cacert: path(&etcd.cacert),
        etcd_cert: path(&etcd.cert),
        etcd_key: path(&etcd.key),
        etcd_user: user.map(|u| u.value.clone()),
        etcd_password: user.and(etcd.password.as_ref()).map(|p| p.value.clone()),
    };
    let config = StoreConfig::from_settings(input).map_err(|e| {
        UsageError(format!(
            "the store ({}): {e}{}",
            store.origin,
            origins(settings, &e)
        ))
    })?;
    if let StoreConfig::Etcd(EtcdConfig {
        tls: None,
        user: Some(user),
        ..
    }) = &config
    {
        tracing::warn!(
            "the etcd password of `{}` travels unencrypted over etcd://; write etcds:// if the \
             cluster serves TLS",
            user.name
        );
    }
    Ok(config)
}

/// Opens the store the settings name: `etcd://` and `etcds://` are the etcd store (checked
/// with one request, so a wrong address, CA or password is reported here, with a hint),
/// anything else a directory.
pub(crate) fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, UsageError> {
    let config = store_config(settings)?;
    let store = settings.store()?;
    tracing::info!(store = %store.value, from = %store.origin, "opening the store");
    // The etcd store's runtime threads write to etcd's sockets: started with SIGPIPE blocked.
    crate::sigpipe::with_blocked(|| bmcert::open_store(&config)).map_err(|e| {
        let mut text = format!(
            "the store {} ({}): {e}{}",
            store.value,
            store.origin,
            origins(settings, &e)
        );
        if let (StoreConfig::Etcd(etcd), StoreConfigError::Store(StoreError::Unavailable(u))) =
            (&config, &e)
        {
            text.push_str("\nhint: ");
            text.push_str(&hint(etcd, u.cause));
        }
        UsageError(text)
    })
}

/// What to check after the etcd store could not be opened, from the cause and the settings
/// used (never a secret).
fn hint(etcd: &EtcdConfig, cause: UnavailableCause) -> String {
    let tls = etcd.tls.as_ref();
    match cause {
        UnavailableCause::CredentialsRefused => {
            return "etcd refused the user or its password: check --etcd-user and the password \
                    (BMCERT_ETCD_PASSWORD, or USER:PASSWORD)"
                .to_owned()
        }
        UnavailableCause::PermissionDenied => {
            return match &etcd.user {
                None => "etcd has authentication on: give --etcd-user USER with the password \
                         in BMCERT_ETCD_PASSWORD"
                    .to_owned(),
                Some(user) => format!(
                    "the etcd user `{}` may not use the store's keys: grant its role read and \
                     write on the prefix `{}` (etcdctl role grant-permission ROLE readwrite {} \
                     --prefix=true)",
                    user.name, etcd.prefix, etcd.prefix
                ),
            }
        }
        UnavailableCause::TlsNameMismatch if tls.is_some() => {
            return "the etcd server's certificate does not name the host written in --store: \
                    write a host its certificate names (see `openssl x509 -noout -ext \
                    subjectAltName` on etcd's --cert-file)"
                .to_owned()
        }
        UnavailableCause::TlsUntrusted if tls.is_some() => {
            return "the etcd server's certificate is not signed by a trusted CA: give \
                    --etcd-cacert FILE with the CA that signed it (etcd's --trusted-ca-file); \
                    without that option the system's CA certificates are used"
                .to_owned()
        }
        _ => {}
    }
    let mut hint = match tls {
        Some(t) if t.client_cert.is_none() => {
            "if etcd requires client certificates (--client-cert-auth), give --etcd-cert and \
             --etcd-key; check --etcd-cacert and that the servers' certificates name the hosts \
             written in --store"
                .to_owned()
        }
        Some(_) => "check that the etcd servers accept the client certificate (--etcd-cert, \
                    signed by etcd's --trusted-ca-file) and that their certificates name the \
                    hosts written in --store"
            .to_owned(),
        None => format!(
            "if the cluster serves TLS (etcd's --cert-file), write {} with --etcd-cacert",
            etcd.url().replacen("etcd://", "etcds://", 1)
        ),
    };
    hint.push_str("; check that the cluster is up and that the addresses and ports are right");
    hint
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::settings::GlobalArgs;
    use clap::{CommandFactory as _, FromArgMatches as _, Parser};
    use zeroize::Zeroizing;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        global: GlobalArgs,
    }

    /// The settings of `bmcert ARGS` with the environment `env` (given here rather than
    /// set in the process, which the tests share).
    fn settings_of(args: &[&str], env: &[(&'static str, &str)]) -> Settings {
        let mut argv = vec!["bmcert"];
        argv.extend_from_slice(args);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let vars: Vec<(&str, OsString)> =
            env.iter().map(|(k, v)| (*k, OsString::from(v))).collect();
        let var = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        let mut s = Settings::resolve(cli.global, &matches, &var).unwrap();
        // What clap's `env` would have read.
        for (name, value) in env {
            let path = || Some(Setting::new(PathBuf::from(value), Origin::Env(name)));
            match *name {
                "BMCERT_ETCD_CACERT" if s.etcd.cacert.is_none() => s.etcd.cacert = path(),
                "BMCERT_ETCD_CERT" if s.etcd.cert.is_none() => s.etcd.cert = path(),
                "BMCERT_ETCD_KEY" if s.etcd.key.is_none() => s.etcd.key = path(),
                "BMCERT_ETCD_USER" if s.etcd.user.is_none() => {
                    s.etcd.user = Some(Setting::new((*value).to_owned(), Origin::Env(name)));
                }
                _ => {}
            }
        }
        s
    }

    fn error(args: &[&str], env: &[(&'static str, &str)]) -> String {
        match store_config(&settings_of(args, env)) {
            Err(e) => e.0,
            Ok(c) => panic!("expected an error, got {c:?}"),
        }
    }

    #[test]
    fn etcd_settings_from_the_environment_do_not_break_a_directory_store() {
        let env = [
            ("BMCERT_ETCD_CACERT", "/etc/etcd/ca.pem"),
            ("BMCERT_ETCD_USER", "bm"),
        ];
        let c = store_config(&settings_of(&["--store", "/srv/certs"], &env)).unwrap();
        assert_eq!(c, StoreConfig::Dir("/srv/certs".into()));
        // ...but an option there is a mistake, named with where it came from.
        let e = error(
            &[
                "--store",
                "/srv/certs",
                "--etcd-cacert",
                "ca.pem",
                "--etcd-user",
                "bm",
            ],
            &[],
        );
        assert!(
            e.contains("--etcd-cacert")
                && e.contains("(from --etcd-cacert, --etcd-user)")
                && e.contains("etcds://"),
            "{e}"
        );
    }

    #[test]
    fn messages_say_where_a_setting_came_from() {
        let e = error(
            &["--store", "etcd://h:1", "--etcd-cert", "c.pem"],
            &[("BMCERT_ETCD_KEY", "k.pem")],
        );
        assert!(
            e.contains("are for TLS") && e.contains("(from --etcd-cert, BMCERT_ETCD_KEY)"),
            "{e}"
        );
        let e = error(&["--store", "etcds://h:1", "--etcd-user", "bm"], &[]);
        assert!(
            e.contains("`bm` has no password") && e.contains("(from --etcd-user)"),
            "{e}"
        );
        let e = error(&["--store", "https://h:1"], &[("BMCERT_STORE", "x")]);
        assert!(
            e.contains("(--store)") && e.contains("etcds://HOST:PORT"),
            "{e}"
        );
    }

    #[test]
    fn the_user_and_password_come_from_options_environment_or_file() {
        let c = store_config(&settings_of(
            &["--store", "etcds://h:1", "--etcd-user", "root:a:b c"],
            &[(crate::settings::PASSWORD_VAR, "ignored")],
        ))
        .unwrap();
        let StoreConfig::Etcd(e) = c else { panic!() };
        let user = e.user.unwrap();
        // Split at the first colon, as etcdctl does: the password may hold colons.
        assert_eq!(
            (user.name.as_str(), user.secret_password()),
            ("root", "a:b c")
        );
        let c = store_config(&settings_of(
            &["--store", "etcds://h:1"],
            &[
                ("BMCERT_ETCD_USER", "envuser"),
                (crate::settings::PASSWORD_VAR, "envpw"),
            ],
        ))
        .unwrap();
        let StoreConfig::Etcd(e) = c else { panic!() };
        let user = e.user.unwrap();
        assert_eq!(
            (user.name.as_str(), user.secret_password()),
            ("envuser", "envpw")
        );
        let s = settings_of(
            &["--store", "etcds://h:1", "--etcd-user", "root:hunter2"],
            &[],
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = error(&["--store", "etcds://h:1", "--etcd-user", ":hunter2"], &[]);
        assert!(
            e.contains("user name is empty") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn hints_follow_the_typed_cause() {
        let config = |url: &str, client: bool, user: Option<&str>| {
            let settings = StoreSettings {
                store: url.to_owned(),
                etcd_cert: client.then(|| "c.pem".into()),
                etcd_key: client.then(|| "k.pem".into()),
                etcd_user: user.map(str::to_owned),
                etcd_password: user.map(|_| Zeroizing::new("pw".to_owned())),
                ..StoreSettings::default()
            };
            match StoreConfig::from_settings(settings).unwrap() {
                StoreConfig::Etcd(e) => e,
                other => panic!("{other:?}"),
            }
        };
        let tls = "etcds://h:1/bm/";
        let cases = [
            (config(tls, false, Some("u")), UnavailableCause::CredentialsRefused, "--etcd-user and the password"),
            (config(tls, false, None), UnavailableCause::PermissionDenied, "give --etcd-user USER"),
            (config(tls, false, Some("u")), UnavailableCause::PermissionDenied, "`u` may not use the store's keys: grant its role read and write on the prefix `/bm/`"),
            (config(tls, false, None), UnavailableCause::TlsUntrusted, "give --etcd-cacert FILE"),
            (config(tls, false, None), UnavailableCause::TlsNameMismatch, "does not name the host"),
            (config(tls, false, None), UnavailableCause::TlsHandshake, "give --etcd-cert and --etcd-key"),
            (config(tls, true, None), UnavailableCause::TlsHandshake, "accept the client certificate"),
            (config("etcd://h:1/bm/", false, None), UnavailableCause::Unreachable, "write etcds://h:1/bm/"),
            (config("etcd://h:1/bm/", false, None), UnavailableCause::TlsHandshake, "write etcds://h:1/bm/"),
        ];
        for (config, cause, expected) in cases {
            let hint = hint(&config, cause);
            assert!(hint.contains(expected), "{cause:?}: {hint}");
        }
    }
}
