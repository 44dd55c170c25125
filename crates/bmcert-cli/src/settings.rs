//! The settings every command shares: the store, the topology, the etcd connection, the
//! ACME CA and SMTP, from the command line, the environment or the configuration file, in
//! that order of precedence.
//!
//! `--store`, `--topology`, `--config`, `--json`, `-v` and the `--etcd-*` options are global:
//! every subcommand accepts them (and ignores those it does not use). The environment is
//! clap's `env` support; [`Settings::resolve`] asks clap where each value came from
//! (`value_source`) and completes it from the configuration file:
//!
//! | option | environment | configuration file |
//! |---|---|---|
//! | `--config FILE` | `BMCERT_CONFIG` | (default `/etc/bmcert/bmcert.toml` when it exists) |
//! | `--store` | `BMCERT_STORE` | `store` |
//! | `--topology` | `BMCERT_TOPOLOGY` | `topology` |
//! | `--etcd-cacert`, `--etcd-cert`, `--etcd-key` | `BMCERT_ETCD_CACERT`, `_CERT`, `_KEY` | `[etcd] cacert`, `cert`, `key` |
//! | `--etcd-user USER[:PASSWORD]` | `BMCERT_ETCD_USER`, `BMCERT_ETCD_PASSWORD` | `[etcd] user`, `password` |
//! | `--directory`, `--directory-ca`, `--chain-ca`, `--email` | | `[acme] directory`, `directory_ca`, `chain_ca`, `contact` |
//! | `--proxy` | `HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`, `all_proxy` (after the file); `NO_PROXY`, `no_proxy` | `[acme] proxy` |
//! | `--eab-kid`, `--eab-hmac-key-file` | | `[acme] eab_kid`, `eab_hmac_key_file` |
//! | | | `[smtp] host`, `port`, `security`, `from`, `to`, `user`, `password`, `ca` |
//!
//! Relative paths in the file are relative to the file's directory.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::input::{self, UsageError};

/// The configuration file read when neither `--config` nor `BMCERT_CONFIG` names one.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/bmcert/bmcert.toml";
/// The environment variable holding the etcd password for `--etcd-user USER`.
pub(crate) const PASSWORD_VAR: &str = "BMCERT_ETCD_PASSWORD";

/// The help section of the etcd options.
const ETCD_HEADING: &str = "etcd store (--store etcds://... or etcd://...)";
/// The help section of the other global options.
const GLOBAL_HEADING: &str = "Global options (every command)";

/// The options every subcommand accepts.
#[derive(Args, Debug)]
pub(crate) struct GlobalArgs {
    /// The configuration file (TOML: store, topology, [etcd], [acme], [smtp]; see
    /// docs/admin-guide.md). Default: /etc/bmcert/bmcert.toml when it exists.
    #[arg(long, global = true, env = "BMCERT_CONFIG", value_name = "FILE", help_heading = GLOBAL_HEADING)]
    config: Option<PathBuf>,
    /// The certificate store: a directory (created with mode 0700 if missing),
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` for the etcd store of a multi-server
    /// installation, or `etcds://...` for the same over TLS.
    #[arg(long, global = true, env = "BMCERT_STORE", value_name = "DIR|etcd://...|etcds://...", help_heading = GLOBAL_HEADING)]
    store: Option<String>,
    /// The installation topology (TOML: system URL, default domain, domains).
    #[arg(long, global = true, env = "BMCERT_TOPOLOGY", value_name = "FILE", help_heading = GLOBAL_HEADING)]
    topology: Option<PathBuf>,
    /// Print one JSON document on standard output instead of readable text (one schema per
    /// command: docs/cli-json.md).
    #[arg(long, global = true, help_heading = GLOBAL_HEADING)]
    pub(crate) json: bool,
    /// Log more on standard error: -v info, -vv debug, -vvv trace (RUST_LOG, when set,
    /// chooses instead; by default warnings are shown).
    #[arg(short, long, global = true, action = ArgAction::Count, help_heading = GLOBAL_HEADING)]
    pub(crate) verbose: u8,
    /// The CA certificate(s) (PEM) that signed the etcd servers' certificates, as etcd's
    /// --trusted-ca-file; etcds:// only. Without it the system's CA certificates are used.
    #[arg(long, global = true, env = "BMCERT_ETCD_CACERT", value_name = "FILE", help_heading = ETCD_HEADING)]
    etcd_cacert: Option<PathBuf>,
    /// A client certificate (PEM, chain allowed) for an etcd that requires one
    /// (--client-cert-auth); etcds:// only, with --etcd-key.
    #[arg(long, global = true, env = "BMCERT_ETCD_CERT", value_name = "FILE", help_heading = ETCD_HEADING)]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, global = true, env = "BMCERT_ETCD_KEY", value_name = "FILE", help_heading = ETCD_HEADING)]
    etcd_key: Option<PathBuf>,
    /// The etcd user; the password is taken from BMCERT_ETCD_PASSWORD (preferred: it does not
    /// show in the process list), or written USER:PASSWORD as etcdctl's --user.
    #[arg(long, global = true, env = "BMCERT_ETCD_USER", hide_env_values = true, value_name = "USER[:PASSWORD]", help_heading = ETCD_HEADING)]
    etcd_user: Option<UserArg>,
}

/// `--etcd-user` as given: it may hold a password, so it is zeroized on drop and its Debug
/// shows the user name only.
#[derive(Clone)]
pub(crate) struct UserArg(Zeroizing<String>);

impl std::str::FromStr for UserArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(Zeroizing::new(s.to_owned())))
    }
}

impl fmt::Debug for UserArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.0.split_once(':').map_or(self.0.as_str(), |(u, _)| u);
        f.debug_tuple("UserArg").field(&user).finish()
    }
}

/// Where a setting came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The command line option, as written (`--store`).
    Flag(&'static str),
    /// The environment variable.
    Env(&'static str),
    /// The configuration file, with the setting's key (`etcd.cacert`).
    File {
        /// The file.
        path: PathBuf,
        /// The key in it.
        key: &'static str,
    },
    /// No one chose it.
    Default,
}

impl Origin {
    /// Given on this command line (as opposed to inherited from the environment or a file).
    pub(crate) fn is_flag(&self) -> bool {
        matches!(self, Self::Flag(_))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(name) | Self::Env(name) => f.write_str(name),
            Self::File { path, key } => write!(f, "{key} in {}", path.display()),
            Self::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Setting<T> {
    pub(crate) value: T,
    pub(crate) origin: Origin,
}

impl<T> Setting<T> {
    pub(crate) fn new(value: T, origin: Origin) -> Self {
        Self { value, origin }
    }
}

/// The etcd connection settings (used with `--store etcd://` or `etcds://` only).
#[derive(Default)]
pub(crate) struct EtcdSettings {
    pub(crate) cacert: Option<Setting<PathBuf>>,
    pub(crate) cert: Option<Setting<PathBuf>>,
    pub(crate) key: Option<Setting<PathBuf>>,
    /// The user name (a `USER:PASSWORD` form is split when resolved).
    pub(crate) user: Option<Setting<String>>,
    pub(crate) password: Option<Setting<Zeroizing<String>>>,
}

impl fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// The ACME CA settings of the configuration file; each command's own options win.
#[derive(Default)]
pub(crate) struct AcmeSettings {
    pub(crate) directory: Option<Setting<String>>,
    pub(crate) directory_ca: Option<Setting<PathBuf>>,
    pub(crate) chain_ca: Option<Setting<PathBuf>>,
    pub(crate) contact: Option<Setting<String>>,
    /// The proxy URL (may hold a password: never shown).
    pub(crate) proxy: Option<Setting<Zeroizing<String>>>,
    /// The External Account Binding key id.
    pub(crate) eab_kid: Option<Setting<String>>,
    /// The file holding the External Account Binding HMAC key (the key stays in its file).
    pub(crate) eab_hmac_key_file: Option<Setting<PathBuf>>,
}

impl fmt::Debug for AcmeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeSettings")
            .field("directory", &self.directory)
            .field("directory_ca", &self.directory_ca)
            .field("chain_ca", &self.chain_ca)
            .field("contact", &self.contact)
            .field("proxy", &self.proxy.as_ref().map(|_| "(set)"))
            .field("eab_kid", &self.eab_kid)
            .field("eab_hmac_key_file", &self.eab_hmac_key_file)
            .finish()
    }
}

/// How to reach the SMTP server of the expiry warnings (configuration file only).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SmtpSettings {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    /// `None`: STARTTLS.
    pub(crate) security: Option<SmtpSecurity>,
    pub(crate) from: Option<String>,
    #[serde(default)]
    pub(crate) to: Vec<String>,
    pub(crate) user: Option<String>,
    password: Option<String>,
    pub(crate) ca: Option<PathBuf>,
}

impl SmtpSettings {
    /// The password, when the file gives one (never shown).
    pub(crate) fn secret_password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The port, or the usual one for the security chosen.
    pub(crate) fn port(&self) -> u16 {
        self.port
            .unwrap_or(match self.security.unwrap_or_default() {
                SmtpSecurity::Starttls => 587,
                SmtpSecurity::Tls => 465,
                SmtpSecurity::Plain => 25,
            })
    }
}

impl Drop for SmtpSettings {
    fn drop(&mut self) {
        if let Some(p) = self.password.take() {
            drop(Zeroizing::new(p));
        }
    }
}

/// `[smtp] security`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SmtpSecurity {
    /// STARTTLS on the submission port (587).
    #[default]
    Starttls,
    /// Implicit TLS (465).
    Tls,
    /// No TLS (a local relay on 25).
    Plain,
}

/// The configuration file, as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    store: Option<String>,
    topology: Option<PathBuf>,
    #[serde(default)]
    etcd: bmcert::store::EtcdFileSettings,
    #[serde(default)]
    acme: FileAcme,
    smtp: Option<SmtpSettings>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAcme {
    directory: Option<String>,
    directory_ca: Option<PathBuf>,
    chain_ca: Option<PathBuf>,
    contact: Option<String>,
    proxy: Option<String>,
    eab_kid: Option<String>,
    eab_hmac_key_file: Option<PathBuf>,
}

/// Every shared setting, resolved.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// The configuration file read, if any.
    pub(crate) config: Option<Setting<PathBuf>>,
    pub(crate) store: Option<Setting<String>>,
    pub(crate) topology: Option<Setting<PathBuf>>,
    pub(crate) etcd: EtcdSettings,
    pub(crate) acme: AcmeSettings,
    pub(crate) smtp: Option<Setting<SmtpSettings>>,
    /// `--json`.
    pub(crate) json: bool,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

/// The deepest subcommand's matches: global options are propagated down to it.
fn leaf(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => leaf(sub),
        None => matches,
    }
}

/// Where clap took the value of `id` from.
fn origin(matches: &ArgMatches, id: &str, flag: &'static str, var: &'static str) -> Origin {
    match leaf(matches)
        .value_source(id)
        .or_else(|| matches.value_source(id))
    {
        Some(ValueSource::CommandLine) => Origin::Flag(flag),
        Some(ValueSource::EnvVariable) => Origin::Env(var),
        _ => Origin::Default,
    }
}

/// `value` from the command line or the environment, else the file's.
fn pick<T>(
    value: Option<T>,
    origin: Origin,
    file: Option<T>,
    file_path: Option<&Path>,
    key: &'static str,
) -> Option<Setting<T>> {
    match (value, file, file_path) {
        (Some(v), _, _) => Some(Setting::new(v, origin)),
        (None, Some(v), Some(path)) => Some(Setting::new(
            v,
            Origin::File {
                path: path.to_owned(),
                key,
            },
        )),
        _ => None,
    }
}

/// A path of the file made absolute against the file's directory.
fn relative_to(file: &Path, path: Option<PathBuf>) -> Option<PathBuf> {
    path.map(|p| match file.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    })
}

impl Settings {
    /// Resolves the global options (`args`, with `matches` for where clap found them),
    /// the environment (`env`: `BMCERT_ETCD_PASSWORD`, which has no option) and the
    /// configuration file.
    pub(crate) fn resolve(
        args: GlobalArgs,
        matches: &ArgMatches,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Self, UsageError> {
        let config = match args.config {
            Some(path) => Some(Setting::new(
                path,
                origin(matches, "config", "--config", "BMCERT_CONFIG"),
            )),
            None if Path::new(DEFAULT_CONFIG).exists() => {
                Some(Setting::new(PathBuf::from(DEFAULT_CONFIG), Origin::Default))
            }
            None => None,
        };
        let file = match &config {
            Some(c) => read_file(&c.value, &c.origin)?,
            None => FileSettings::default(),
        };
        let path = config.as_ref().map(|c| c.value.as_path());
        let rel = |p: Option<PathBuf>| path.and_then(|f| relative_to(f, p));
        let file_etcd = match path.and_then(Path::parent) {
            Some(dir) => file.etcd.relative_to(dir),
            None => file.etcd,
        };
        let file_password = file_etcd.secret_password().cloned();
        let at = |id, flag, var| origin(matches, id, flag, var);

        let mut etcd = EtcdSettings {
            cacert: pick(
                args.etcd_cacert,
                at("etcd_cacert", "--etcd-cacert", "BMCERT_ETCD_CACERT"),
                file_etcd.cacert,
                path,
                "etcd.cacert",
            ),
            cert: pick(
                args.etcd_cert,
                at("etcd_cert", "--etcd-cert", "BMCERT_ETCD_CERT"),
                file_etcd.cert,
                path,
                "etcd.cert",
            ),
            key: pick(
                args.etcd_key,
                at("etcd_key", "--etcd-key", "BMCERT_ETCD_KEY"),
                file_etcd.key,
                path,
                "etcd.key",
            ),
            user: None,
            password: None,
        };
        // `USER:PASSWORD` (etcdctl's form) is split at the first colon: the password may
        // hold colons.
        let user = pick(
            args.etcd_user.map(|u| u.0),
            at("etcd_user", "--etcd-user", "BMCERT_ETCD_USER"),
            file_etcd.user.map(Zeroizing::new),
            path,
            "etcd.user",
        );
        if let Some(user) = user {
            match user.value.split_once(':') {
                Some((name, password)) => {
                    etcd.password = Some(Setting::new(
                        Zeroizing::new(password.to_owned()),
                        user.origin.clone(),
                    ));
                    etcd.user = Some(Setting::new(name.to_owned(), user.origin));
                }
                None => etcd.user = Some(Setting::new(user.value.to_string(), user.origin)),
            }
        }
        if etcd.password.is_none() {
            etcd.password = match env(PASSWORD_VAR).filter(|v| !v.is_empty()) {
                Some(p) => Some(Setting::new(
                    Zeroizing::new(p.into_string().map_err(|_| {
                        UsageError(format!("{PASSWORD_VAR} is not valid UTF-8 text"))
                    })?),
                    Origin::Env(PASSWORD_VAR),
                )),
                None => pick(None, Origin::Default, file_password, path, "etcd.password"),
            };
        }
        let acme = AcmeSettings {
            directory: pick(
                None,
                Origin::Default,
                file.acme.directory,
                path,
                "acme.directory",
            ),
            directory_ca: pick(
                None,
                Origin::Default,
                rel(file.acme.directory_ca),
                path,
                "acme.directory_ca",
            ),
            chain_ca: pick(
                None,
                Origin::Default,
                rel(file.acme.chain_ca),
                path,
                "acme.chain_ca",
            ),
            contact: pick(
                None,
                Origin::Default,
                file.acme.contact,
                path,
                "acme.contact",
            ),
            proxy: pick(
                None,
                Origin::Default,
                file.acme.proxy.map(Zeroizing::new),
                path,
                "acme.proxy",
            ),
            eab_kid: pick(
                None,
                Origin::Default,
                file.acme.eab_kid,
                path,
                "acme.eab_kid",
            ),
            eab_hmac_key_file: pick(
                None,
                Origin::Default,
                rel(file.acme.eab_hmac_key_file),
                path,
                "acme.eab_hmac_key_file",
            ),
        };
        let smtp = file.smtp.map(|mut s| {
            s.ca = rel(s.ca.take());
            s
        });
        Ok(Self {
            store: pick(
                args.store,
                at("store", "--store", "BMCERT_STORE"),
                // A directory written relative to the file; an address stays as written.
                file.store.map(|s| match s.contains("://") {
                    true => s,
                    false => rel(Some(PathBuf::from(&s))).map_or(s, |p| p.display().to_string()),
                }),
                path,
                "store",
            ),
            topology: pick(
                args.topology,
                at("topology", "--topology", "BMCERT_TOPOLOGY"),
                rel(file.topology),
                path,
                "topology",
            ),
            etcd,
            acme,
            smtp: pick(None, Origin::Default, smtp, path, "smtp"),
            config,
            json: args.json,
        })
    }

    /// The store setting; the command needs one.
    pub(crate) fn store(&self) -> Result<&Setting<String>, UsageError> {
        self.store.as_ref().ok_or_else(|| {
            UsageError(format!(
                "this command needs the certificate store: give --store DIR (or etcds://...), \
                 set BMCERT_STORE, or write `store = \"...\"` in the configuration file \
                 ({})",
                self.config_shown()
            ))
        })
    }

    /// Reads the topology file; the command needs one.
    pub(crate) fn topology(&self) -> Result<bmcert::topology::Topology, UsageError> {
        let topology = self.topology.as_ref().ok_or_else(|| {
            UsageError(format!(
                "this command needs the installation topology: give --topology FILE, set \
                 BMCERT_TOPOLOGY, or write `topology = \"...\"` in the configuration file \
                 ({})",
                self.config_shown()
            ))
        })?;
        input::read_topology(&topology.value)
    }

    fn config_shown(&self) -> String {
        match &self.config {
            Some(c) => format!("{}, from {}", c.value.display(), c.origin),
            None => format!("none read: --config FILE, BMCERT_CONFIG or {DEFAULT_CONFIG}"),
        }
    }
}

/// Reads and parses the configuration file.
fn read_file(path: &Path, origin: &Origin) -> Result<FileSettings, UsageError> {
    let what = format!("configuration file (from {origin})");
    let bytes = Zeroizing::new(input::read(path, &what)?);
    let text = core::str::from_utf8(&bytes)
        .map_err(|_| UsageError(format!("the {what} `{}` is not UTF-8 text", path.display())))?;
    let file: FileSettings = toml::from_str(text).map_err(|e| {
        // toml's message quotes the line; a password line would be echoed, so only the
        // position and the reason are kept.
        let reason = e.message();
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        UsageError(format!(
            "the {what} `{}` is not a valid bmcert configuration{at}: {reason}; see the \
             configuration file section of docs/admin-guide.md",
            path.display()
        ))
    })?;
    #[cfg(unix)]
    if file.etcd.secret_password().is_some()
        || file.smtp.as_ref().is_some_and(|s| s.password.is_some())
        // A proxy URL with userinfo (`user:password@`).
        || file.acme.proxy.as_ref().is_some_and(|p| {
            p.split_once("://")
                .map_or(p.as_str(), |(_, rest)| rest)
                .split('/')
                .next()
                .is_some_and(|authority| authority.contains('@'))
        })
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the configuration file holds a password and other users may read it; \
                     chmod 600 it"
                );
            }
        }
    }
    Ok(file)
}

/// One row of `bmcert config`.
pub(crate) struct Shown {
    pub(crate) name: &'static str,
    /// `None`: unset. Secrets are shown as `(set)`.
    pub(crate) value: Option<String>,
    pub(crate) origin: Option<String>,
}

fn shown<T>(name: &'static str, s: Option<&Setting<T>>, show: impl Fn(&T) -> String) -> Shown {
    Shown {
        name,
        value: s.map(|s| show(&s.value)),
        origin: s.map(|s| s.origin.to_string()),
    }
}

#[allow(clippy::ptr_arg)] // used as `Fn(&PathBuf) -> String` on `Setting<PathBuf>`
fn path(p: &PathBuf) -> String {
    p.display().to_string()
}

impl Settings {
    /// Every setting with its value and origin, for `bmcert config` (no secret: passwords
    /// are `(set)`).
    pub(crate) fn rows(&self) -> Vec<Shown> {
        let secret = |_: &Zeroizing<String>| "(set)".to_owned();
        let smtp = self.smtp.as_ref();
        // `f` gives the value and whether the file wrote it (or it is the default).
        let smtp_field = |name, f: &dyn Fn(&SmtpSettings) -> Option<(String, bool)>| {
            let found = smtp.and_then(|s| f(&s.value).map(|(v, written)| (v, written, s)));
            Shown {
                name,
                value: found.as_ref().map(|(v, _, _)| v.clone()),
                origin: found.map(|(_, written, s)| match (&s.origin, written) {
                    (Origin::File { path, .. }, true) => Origin::File {
                        path: path.clone(),
                        key: name,
                    }
                    .to_string(),
                    (_, false) => Origin::Default.to_string(),
                    (other, true) => other.to_string(),
                }),
            }
        };
        let written = |v: Option<String>| v.map(|v| (v, true));
        vec![
            shown("config", self.config.as_ref(), path),
            shown("store", self.store.as_ref(), String::clone),
            shown("topology", self.topology.as_ref(), path),
            shown("etcd.cacert", self.etcd.cacert.as_ref(), path),
            shown("etcd.cert", self.etcd.cert.as_ref(), path),
            shown("etcd.key", self.etcd.key.as_ref(), path),
            shown("etcd.user", self.etcd.user.as_ref(), String::clone),
            shown("etcd.password", self.etcd.password.as_ref(), secret),
            shown(
                "acme.directory",
                self.acme.directory.as_ref(),
                String::clone,
            ),
            shown("acme.directory_ca", self.acme.directory_ca.as_ref(), path),
            shown("acme.chain_ca", self.acme.chain_ca.as_ref(), path),
            shown("acme.contact", self.acme.contact.as_ref(), String::clone),
            shown(
                "acme.proxy",
                self.acme.proxy.as_ref(),
                |p: &Zeroizing<String>| {
                    bmcert::acme::ProxyUrl::parse(p, "acme.proxy")
                        .map_or_else(|_| "(not a usable URL)".to_owned(), |u| u.to_string())
                },
            ),
            shown("acme.eab_kid", self.acme.eab_kid.as_ref(), String::clone),
            shown(
                "acme.eab_hmac_key_file",
                self.acme.eab_hmac_key_file.as_ref(),
                path,
            ),
            smtp_field("smtp.host", &|s| written(Some(s.host.clone()))),
            smtp_field("smtp.port", &|s| {
                Some((s.port().to_string(), s.port.is_some()))
            }),
            smtp_field("smtp.security", &|s| {
                let security = format!("{:?}", s.security.unwrap_or_default()).to_lowercase();
                Some((security, s.security.is_some()))
            }),
            smtp_field("smtp.from", &|s| written(s.from.clone())),
            smtp_field("smtp.to", &|s| {
                written((!s.to.is_empty()).then(|| s.to.join(",")))
            }),
            smtp_field("smtp.user", &|s| written(s.user.clone())),
            smtp_field("smtp.password", &|s| {
                written(s.password.as_ref().map(|_| "(set)".to_owned()))
            }),
            smtp_field("smtp.ca", &|s| written(s.ca.as_ref().map(path))),
        ]
    }
}

/// `bmcert config`: the effective settings and where each came from.
pub(crate) fn run(settings: &Settings) -> Result<std::process::ExitCode, UsageError> {
    let rows = settings.rows();
    if settings.json {
        let value: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|r| {
                (
                    r.name.to_owned(),
                    serde_json::json!({ "value": r.value, "from": r.origin }),
                )
            })
            .collect();
        crate::output::print_json(&serde_json::Value::Object(value))?;
    } else {
        let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &rows {
            match (&r.value, &r.origin) {
                (Some(v), Some(o)) => println!("{:<width$}  {v}  (from {o})", r.name),
                _ => println!("{:<width$}  (unset)", r.name),
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
