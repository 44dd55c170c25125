//! The real peers `scripts/test-all` starts, as the tests find them: pebble and
//! pebble-challtestsrv (`scripts/peers/pebble.sh`, `BMCERT_PEBBLE_*`), the etcd cluster
//! (`scripts/peers/etcd.sh`, `BMCERT_ETCD_*`) and aiosmtpd (`scripts/peers/smtp.sh`,
//! `BMCERT_SMTP_*`).
//!
//! One policy for every peer, the one each test had on its own before:
//!
//! - the variable that names the peer (`BMCERT_PEBBLE_DIRECTORY`, `BMCERT_ETCD_ENDPOINTS`,
//!   `BMCERT_ETCD_BIN`, `BMCERT_SMTP_PORT`) is unset, as under a plain `cargo test`: the
//!   `*from_env` functions print `SKIPPED: <variable> is not set; run scripts/test-all to start
//!   <peer>` on standard error and return `None`, and the test returns early. Nothing is skipped
//!   silently, and under `scripts/test-all` nothing is skipped at all: it stops with an error
//!   when a peer does not start, before any test runs, and it sets `BMCERT_REQUIRE_PEERS`, so
//!   a test that still finds its peer missing fails instead of returning early.
//! - that variable is set but a companion variable is missing or malformed, or pebble's CA file
//!   cannot be read: the helper panics naming the variable. A half-configured peer is a broken
//!   set-up, not a reason to skip.
//!
//! This module reads only the environment (and pebble's CA file, and `curl` for
//! [`Pebble::root_with_curl`]); it needs no bmcert crate. The `AcmeConfig` for pebble is in
//! the `pebble` module, behind the `pebble` feature.

// Test helpers fail loudly: a peer that is half configured is a broken test set-up.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A peer whose variable is unset: the reason a test is skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The unset variable.
    pub variable: &'static str,
    /// What `scripts/test-all` starts to set it.
    pub peer: &'static str,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not set; run scripts/test-all to start {}",
            self.variable, self.peer
        )
    }
}

/// Set by `scripts/test-all`: a missing peer then fails the test instead of skipping it.
pub const REQUIRE_PEERS: &str = "BMCERT_REQUIRE_PEERS";

/// The peer, or `None` after printing `SKIPPED: <why>` on standard error (the test harness
/// shows it). Under the test command ([`REQUIRE_PEERS`] set) a missing peer panics: a test
/// whose peer is missing fails there, it does not pass by returning early.
pub(crate) fn or_skip<T>(found: Result<T, Missing>) -> Option<T> {
    match found {
        Ok(peer) => Some(peer),
        Err(missing) if std::env::var_os(REQUIRE_PEERS).is_some_and(|v| !v.is_empty()) => {
            panic!("{REQUIRE_PEERS} is set (scripts/test-all) and a peer is missing: {missing}")
        }
        Err(missing) => {
            eprintln!("SKIPPED: {missing}");
            None
        }
    }
}

/// Which of the two pebbles of `scripts/peers/pebble.sh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PebbleInstance {
    /// The main pebble (`BMCERT_PEBBLE_DIRECTORY`, `BMCERT_PEBBLE_MANAGEMENT`), rejecting 5 %
    /// of the nonces (pebble's default).
    Main,
    /// The second pebble (`BMCERT_PEBBLE_NR_DIRECTORY`, `BMCERT_PEBBLE_NR_MANAGEMENT`),
    /// rejecting half of the nonces (`PEBBLE_WFE_NONCEREJECT=50`).
    NonceReject,
}

impl PebbleInstance {
    fn variables(self) -> (&'static str, &'static str) {
        match self {
            Self::Main => ("BMCERT_PEBBLE_DIRECTORY", "BMCERT_PEBBLE_MANAGEMENT"),
            Self::NonceReject => ("BMCERT_PEBBLE_NR_DIRECTORY", "BMCERT_PEBBLE_NR_MANAGEMENT"),
        }
    }
}

/// A pebble of `scripts/peers/pebble.sh`: where it listens and what its validator connects to.
///
/// The fields are public so that a test can point a copy at a pebble of its own
/// (`Pebble { directory, management, ..pebble }`).
#[derive(Clone, Debug)]
pub struct Pebble {
    /// The ACME directory URL (`https://127.0.0.1:14000/dir` for the main one).
    pub directory: String,
    /// The management URL (`/roots/0`, `/intermediates/0`).
    pub management: String,
    /// The PEM file of the CA that signed pebble's HTTPS certificate (`BMCERT_PEBBLE_CA`).
    pub ca_path: PathBuf,
    /// The contents of [`Self::ca_path`].
    pub ca_pem: Vec<u8>,
    /// The port pebble's validator connects to for HTTP-01 (`BMCERT_PEBBLE_HTTP01_PORT`).
    pub http01: u16,
    /// The port pebble's validator connects to for TLS-ALPN-01
    /// (`BMCERT_PEBBLE_TLSALPN01_PORT`), when set; see [`Self::tls_alpn01_port`].
    pub tls_alpn01: Option<u16>,
}

impl Pebble {
    /// The main pebble, or `None` after printing why the test is skipped.
    pub fn from_env() -> Option<Self> {
        or_skip(Self::try_from_env(PebbleInstance::Main))
    }

    /// The pebble rejecting half of the nonces, or `None` after printing why the test is
    /// skipped.
    pub fn nonce_reject_from_env() -> Option<Self> {
        or_skip(Self::try_from_env(PebbleInstance::NonceReject))
    }

    /// `instance` from the environment, or which variable is missing (nothing printed: for a
    /// test that skips only part of its work and says so itself).
    pub fn try_from_env(instance: PebbleInstance) -> Result<Self, Missing> {
        Self::from_lookup(instance, env)
    }

    /// `instance` from the variables `var` gives (the environment for [`Self::try_from_env`]).
    ///
    /// # Panics
    ///
    /// When the directory variable is set but another one is missing or malformed, or the CA
    /// file cannot be read.
    pub fn from_lookup(
        instance: PebbleInstance,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Missing> {
        let (directory_var, management_var) = instance.variables();
        let Some(directory) = var(directory_var) else {
            return Err(Missing {
                variable: directory_var,
                peer: "pebble",
            });
        };
        let required = |k: &str| {
            var(k).unwrap_or_else(|| {
                panic!(
                    "{directory_var} is set but {k} is not (scripts/peers/pebble.sh exports both)"
                )
            })
        };
        let ca_path = PathBuf::from(required("BMCERT_PEBBLE_CA"));
        let ca_pem = std::fs::read(&ca_path).unwrap_or_else(|e| {
            panic!(
                "cannot read pebble's CA file {} (BMCERT_PEBBLE_CA): {e}",
                ca_path.display()
            )
        });
        Ok(Self {
            directory,
            management: required(management_var),
            ca_path,
            ca_pem,
            http01: port(
                "BMCERT_PEBBLE_HTTP01_PORT",
                &required("BMCERT_PEBBLE_HTTP01_PORT"),
            ),
            tls_alpn01: var("BMCERT_PEBBLE_TLSALPN01_PORT")
                .map(|v| port("BMCERT_PEBBLE_TLSALPN01_PORT", &v)),
        })
    }

    /// The TLS-ALPN-01 port.
    ///
    /// # Panics
    ///
    /// When `BMCERT_PEBBLE_TLSALPN01_PORT` was not set.
    pub fn tls_alpn01_port(&self) -> u16 {
        self.tls_alpn01.unwrap_or_else(|| {
            panic!("BMCERT_PEBBLE_TLSALPN01_PORT is not set (scripts/peers/pebble.sh exports it)")
        })
    }

    /// `127.0.0.1:<HTTP-01 port>`: where a test listens for pebble's HTTP-01 validation (as
    /// `--http01-listen` of the `bmcert` command).
    pub fn http01_listen(&self) -> String {
        format!("127.0.0.1:{}", self.http01)
    }

    /// The URL of pebble's current issuing root (management `/roots/0`). Pebble makes a new
    /// root at every start, so tests read it rather than keep one.
    pub fn root_url(&self) -> String {
        format!("{}/roots/0", self.management)
    }

    /// Fetches pebble's issuing root ([`Self::root_url`]) with the real `curl`, trusting
    /// pebble's CA, into the file `to`, and returns `to`. For tests that hand the root to the
    /// `bmcert` command (`--chain-ca`).
    ///
    /// # Panics
    ///
    /// When `curl` cannot run or fails (within 60 seconds).
    pub fn root_with_curl(&self, to: &Path) -> PathBuf {
        let status = Command::new("curl")
            .args(["-fsS", "--max-time", "60", "--cacert"])
            .arg(&self.ca_path)
            .arg("-o")
            .arg(to)
            .arg(self.root_url())
            .status()
            .unwrap_or_else(|e| panic!("cannot run curl (scripts/test-all installs it): {e}"));
        assert!(
            status.success(),
            "curl could not fetch pebble's root from {}: {status}",
            self.root_url()
        );
        to.to_path_buf()
    }
}

/// The aiosmtpd of `scripts/peers/smtp.sh`, which writes every message it receives to a
/// directory.
#[derive(Clone, Debug)]
pub struct Smtp {
    /// The port it listens on, on 127.0.0.1 (`BMCERT_SMTP_PORT`).
    pub port: u16,
    /// The directory holding one `.eml` file per delivered message (`BMCERT_SMTP_MAILDIR`).
    pub maildir: PathBuf,
}

impl Smtp {
    /// The SMTP server, or `None` after printing why the test is skipped.
    pub fn from_env() -> Option<Self> {
        or_skip(Self::from_lookup(env))
    }

    /// The SMTP server from the variables `var` gives.
    ///
    /// # Panics
    ///
    /// When `BMCERT_SMTP_PORT` is set but is not a port, or `BMCERT_SMTP_MAILDIR` is missing.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, Missing> {
        let Some(port_text) = var("BMCERT_SMTP_PORT") else {
            return Err(Missing {
                variable: "BMCERT_SMTP_PORT",
                peer: "aiosmtpd",
            });
        };
        let maildir = var("BMCERT_SMTP_MAILDIR").unwrap_or_else(|| {
            panic!("BMCERT_SMTP_PORT is set but BMCERT_SMTP_MAILDIR is not (scripts/peers/smtp.sh exports both)")
        });
        Ok(Self {
            port: port("BMCERT_SMTP_PORT", &port_text),
            maildir: maildir.into(),
        })
    }

    /// The messages delivered to `to` so far, whole (headers and body), in no set order. The
    /// mailbox writes the envelope recipient as the first line, `X-Envelope-To: <to>`.
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        let first_line = format!("X-Envelope-To: {to}");
        let entries = std::fs::read_dir(&self.maildir).unwrap_or_else(|e| {
            panic!(
                "cannot list the SMTP maildir {}: {e}",
                self.maildir.display()
            )
        });
        let mut out = Vec::new();
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", self.maildir.display()))
                .path();
            if path.extension().is_some_and(|x| x == "eml") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                if text.lines().next() == Some(first_line.as_str()) {
                    out.push(text);
                }
            }
        }
        out
    }
}

/// The client endpoints (`host:port`) of the shared etcd cluster, or `None` after printing
/// why the test is skipped.
pub fn etcd_endpoints() -> Option<Vec<String>> {
    or_skip(etcd_endpoints_from_lookup(env))
}

/// The etcd endpoints from the variables `var` gives: `BMCERT_ETCD_ENDPOINTS` split at commas;
/// an empty or blank value counts as unset.
pub fn etcd_endpoints_from_lookup(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Missing> {
    match var("BMCERT_ETCD_ENDPOINTS") {
        Some(v) if !v.trim().is_empty() => Ok(v.split(',').map(str::to_owned).collect()),
        _ => Err(Missing {
            variable: "BMCERT_ETCD_ENDPOINTS",
            peer: "the etcd cluster",
        }),
    }
}

/// The etcd binary, for tests that run a cluster of their own (`BMCERT_ETCD_BIN`), or `None`
/// after printing why the test is skipped.
pub fn etcd_bin() -> Option<PathBuf> {
    match env("BMCERT_ETCD_BIN") {
        Some(bin) => Some(bin.into()),
        None => or_skip(Err(Missing {
            variable: "BMCERT_ETCD_BIN",
            peer: "the etcd cluster",
        })),
    }
}

/// `<label>-<process id>-<counter>-<nanoseconds>`: a label no earlier test of this pebble's
/// life used, so that no authorization is reused and no key prefix is shared.
pub fn unique_label(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000);
    format!("{label}-{}-{n}-{t}", std::process::id())
}

/// [`unique_label`] under `example.test` (challtestsrv resolves every name to 127.0.0.1).
pub fn unique_name(label: &str) -> String {
    format!("{}.example.test", unique_label(label))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the system's pick for port 0), for a
/// peer a test starts itself. Another process may take it before the peer binds it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"))
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn port(variable: &str, text: &str) -> u16 {
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{variable}={text:?} is not a port number: {e}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn pebble_vars(ca: &Path) -> Vec<(&'static str, String)> {
        vec![
            (
                "BMCERT_PEBBLE_DIRECTORY",
                "https://127.0.0.1:14000/dir".into(),
            ),
            ("BMCERT_PEBBLE_MANAGEMENT", "https://127.0.0.1:15000".into()),
            (
                "BMCERT_PEBBLE_NR_DIRECTORY",
                "https://127.0.0.1:14001/dir".into(),
            ),
            (
                "BMCERT_PEBBLE_NR_MANAGEMENT",
                "https://127.0.0.1:15001".into(),
            ),
            ("BMCERT_PEBBLE_CA", ca.display().to_string()),
            ("BMCERT_PEBBLE_HTTP01_PORT", "5002".into()),
            ("BMCERT_PEBBLE_TLSALPN01_PORT", "5001".into()),
        ]
    }

    fn ca_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        (dir, path)
    }

    fn lookup(pairs: &[(&'static str, String)]) -> impl Fn(&str) -> Option<String> {
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        vars(&borrowed)
    }

    #[test]
    fn pebble_reads_every_variable_of_pebble_sh() {
        let (_dir, ca) = ca_file();
        let p = Pebble::from_lookup(PebbleInstance::Main, lookup(&pebble_vars(&ca))).unwrap();
        assert_eq!(p.directory, "https://127.0.0.1:14000/dir");
        assert_eq!(p.management, "https://127.0.0.1:15000");
        assert_eq!(p.ca_path, ca);
        assert_eq!(p.ca_pem, b"-----BEGIN CERTIFICATE-----\n");
        assert_eq!((p.http01, p.tls_alpn01_port()), (5002, 5001));
        assert_eq!(p.http01_listen(), "127.0.0.1:5002");
        assert_eq!(p.root_url(), "https://127.0.0.1:15000/roots/0");
    }

    #[test]
    fn the_nonce_rejecting_pebble_has_its_own_urls() {
        let (_dir, ca) = ca_file();
        let p =
            Pebble::from_lookup(PebbleInstance::NonceReject, lookup(&pebble_vars(&ca))).unwrap();
        assert_eq!(p.directory, "https://127.0.0.1:14001/dir");
        assert_eq!(p.management, "https://127.0.0.1:15001");
    }

    #[test]
    fn pebble_without_its_directory_is_missing_not_a_panic() {
        let missing = Pebble::from_lookup(PebbleInstance::Main, vars(&[])).unwrap_err();
        assert_eq!(missing.variable, "BMCERT_PEBBLE_DIRECTORY");
        assert_eq!(
            missing.to_string(),
            "BMCERT_PEBBLE_DIRECTORY is not set; run scripts/test-all to start pebble"
        );
        let nr = Pebble::from_lookup(PebbleInstance::NonceReject, vars(&[])).unwrap_err();
        assert_eq!(nr.variable, "BMCERT_PEBBLE_NR_DIRECTORY");
    }

    #[test]
    fn tls_alpn01_port_is_optional_until_asked_for() {
        let (_dir, ca) = ca_file();
        let mut pairs = pebble_vars(&ca);
        pairs.retain(|(k, _)| *k != "BMCERT_PEBBLE_TLSALPN01_PORT");
        let p = Pebble::from_lookup(PebbleInstance::Main, lookup(&pairs)).unwrap();
        assert_eq!(p.tls_alpn01, None);
        let asked = std::panic::catch_unwind(|| p.tls_alpn01_port());
        assert!(asked.is_err());
    }

    #[test]
    #[should_panic(expected = "BMCERT_PEBBLE_DIRECTORY is set but BMCERT_PEBBLE_CA is not")]
    fn pebble_half_configured_panics_naming_the_variable() {
        let _ = Pebble::from_lookup(
            PebbleInstance::Main,
            vars(&[("BMCERT_PEBBLE_DIRECTORY", "https://127.0.0.1:14000/dir")]),
        );
    }

    #[test]
    #[should_panic(expected = "BMCERT_PEBBLE_HTTP01_PORT=\"eighty\" is not a port number")]
    fn a_malformed_port_panics_naming_the_variable() {
        let (_dir, ca) = ca_file();
        let mut pairs = pebble_vars(&ca);
        for (k, v) in &mut pairs {
            if *k == "BMCERT_PEBBLE_HTTP01_PORT" {
                *v = "eighty".into();
            }
        }
        let _ = Pebble::from_lookup(PebbleInstance::Main, lookup(&pairs));
    }

    #[test]
    #[should_panic(expected = "cannot read pebble's CA file")]
    fn an_unreadable_ca_file_panics_naming_it() {
        let pairs = pebble_vars(Path::new("/nonexistent/bmcert-test/ca.pem"));
        let _ = Pebble::from_lookup(PebbleInstance::Main, lookup(&pairs));
    }

    #[test]
    fn etcd_endpoints_split_at_commas_and_blank_is_unset() {
        let eps = etcd_endpoints_from_lookup(vars(&[(
            "BMCERT_ETCD_ENDPOINTS",
            "127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793",
        )]))
        .unwrap();
        assert_eq!(
            eps,
            ["127.0.0.1:23791", "127.0.0.1:23792", "127.0.0.1:23793"]
        );
        for unset in [vars(&[]), vars(&[("BMCERT_ETCD_ENDPOINTS", "  ")])] {
            let missing = etcd_endpoints_from_lookup(unset).unwrap_err();
            assert_eq!(missing.variable, "BMCERT_ETCD_ENDPOINTS");
        }
    }

    #[test]
    fn smtp_reads_port_and_maildir() {
        let s = Smtp::from_lookup(vars(&[
            ("BMCERT_SMTP_PORT", "2525"),
            ("BMCERT_SMTP_MAILDIR", "/tmp/mail"),
        ]))
        .unwrap();
        assert_eq!(
            (s.port, s.maildir.as_path()),
            (2525, Path::new("/tmp/mail"))
        );
        let missing = Smtp::from_lookup(vars(&[])).unwrap_err();
        assert_eq!(missing.variable, "BMCERT_SMTP_PORT");
    }

    #[test]
    fn mails_to_keeps_the_messages_of_one_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("1.eml", "X-Envelope-To: a@example.test\nSubject: one\n");
        write("2.eml", "X-Envelope-To: b@example.test\nSubject: two\n");
        write("3.eml", "X-Envelope-To: a@example.test\nSubject: three\n");
        write("4.tmp", "X-Envelope-To: a@example.test\nSubject: partial\n");
        let smtp = Smtp {
            port: 2525,
            maildir: dir.path().to_path_buf(),
        };
        let mut subjects: Vec<String> = smtp
            .mails_to("a@example.test")
            .iter()
            .map(|m| m.lines().nth(1).unwrap().to_owned())
            .collect();
        subjects.sort();
        assert_eq!(subjects, ["Subject: one", "Subject: three"]);
        assert!(smtp.mails_to("c@example.test").is_empty());
    }

    #[test]
    fn free_ports_are_bindable_on_loopback() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn unique_labels_differ_within_one_process() {
        let (a, b) = (unique_label("x"), unique_label("x"));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("x-{}-", std::process::id())), "{a}");
        assert!(unique_name("y").ends_with(".example.test"));
    }
}
