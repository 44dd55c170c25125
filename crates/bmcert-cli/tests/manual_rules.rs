//! The administrator manual's rules through the binary: a domain without its own URL gets
//! no certificate of its own, `disable` deletes, an uploaded certificate is not renewed.
// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bmcert_test::fixtures::{Chain, ChainSpec};

const TOPOLOGY: &str = r#"
default_domain = "example.test"
[system]
url = "https://mail.example.test"
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
[[domain]]
name = "nourl.test"
"#;

/// A CA directory nobody answers: a command that reached it would fail with exit 2.
const NO_CA: &str = "https://127.0.0.1:1/directory";

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("topology.toml"), TOPOLOGY).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self, prefix: &str, chain: &Chain) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, name, text) in [
            ("--cert", "cert.pem", chain.leaf.cert_pem.clone()),
            ("--key", "key.pem", chain.leaf.key_pem.clone()),
            ("--ca", "ca.pem", chain.ca_pem()),
        ] {
            let path = self.path(&format!("{prefix}-{name}"));
            std::fs::write(&path, text).unwrap();
            out.push(flag.to_owned());
            out.push(path.display().to_string());
        }
        out
    }

    fn run(&self, args: &[&str], extra: &[String]) -> Output {
        let store = self.path("store");
        let topology = self.path("topology.toml");
        Command::new(env!("CARGO_BIN_EXE_bmcert"))
            .args(args)
            .args(["--store", store.to_str().unwrap()])
            .args(extra)
            .args(
                (args != ["status"])
                    .then_some(["--topology", topology.to_str().unwrap()])
                    .into_iter()
                    .flatten(),
            )
            .output()
            .unwrap()
    }

    fn store_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        walk(&self.path("store"), &mut out);
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_domain_without_url_is_refused_for_files_and_acme_before_anything_happens() {
    let s = Setup::new();
    let system = ChainSpec::new(&["mail.example.test"]).build();
    let ok = s.run(&["install", "--target", "system"], &s.files("sys", &system));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let before = s.store_files();

    let out = s.run(
        &["install", "--target", "domain:nourl.test"],
        &s.files("sys", &system),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("domain_without_url"), "{}", text(&out));
    assert!(text(&out).contains("external URL"), "{}", text(&out));
    let json = s.run(
        &["install", "--target", "domain:nourl.test", "--json"],
        &s.files("sys", &system),
    );
    assert_eq!(json.status.code(), Some(1), "{}", text(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["code"], "domain_without_url");

    // ACME: refused before the CA is contacted (an unreachable CA would be exit 2).
    let out = s.run(
        &["acme", "issue", "--target", "domain:nourl.test"],
        &strings(&["--directory", NO_CA]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("domain_without_url"), "{}", text(&out));
    assert_eq!(s.store_files(), before, "the store is unchanged");
}

#[test]
fn disable_deletes_every_key_and_rollback_and_export_find_nothing() {
    let s = Setup::new();
    let chains: Vec<Chain> = (0..3)
        .map(|_| ChainSpec::new(&["webmail.acme.test"]).build())
        .collect();
    for (i, c) in chains.iter().enumerate() {
        let out = s.run(
            &["install", "--target", "domain:acme.test"],
            &s.files(&format!("d{i}"), c),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let out = s.run(&["disable", "--target", "domain:acme.test"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for c in &chains {
        let body = c.leaf.key_pem.lines().nth(1).unwrap();
        assert!(
            !s.store_files()
                .values()
                .any(|b| String::from_utf8_lossy(b).contains(body)),
            "a private key of the disabled domain is still in the store"
        );
    }
    let out = s.run(&["rollback", "--target", "domain:acme.test"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no installed certificate"),
        "{}",
        text(&out)
    );
    let out_dir = s.path("export").display().to_string();
    let out = s.run(
        &["export", "--target", "domain:acme.test"],
        &strings(&["--out-dir", &out_dir]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no installed certificate"),
        "{}",
        text(&out)
    );
}

#[test]
fn renewing_an_uploaded_certificate_is_refused_and_changes_nothing() {
    let s = Setup::new();
    let system = ChainSpec::new(&["mail.example.test"]).build();
    let ok = s.run(&["install", "--target", "system"], &s.files("sys", &system));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let list = |s: &Setup| {
        let out = s.run(&["list", "--json"], &[]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            rows[0]["source"].as_str().unwrap().to_owned(),
            rows[0]["fingerprint"].as_str().unwrap().to_owned(),
        )
    };
    let before = list(&s);
    assert_eq!(before.0, "files");
    let files = s.store_files();

    let out = s.run(
        &["renew", "--target", "system"],
        &strings(&["--directory", NO_CA]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not_acme"), "{}", text(&out));
    assert_eq!(list(&s), before);
    assert_eq!(s.store_files(), files, "nothing changed");
}

#[test]
fn init_makes_the_bootstrap_certificate_that_the_first_upload_replaces() {
    let s = Setup::new();
    let out = s.run(&["init"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("browsers"), "{}", text(&out));
    let list = s.run(&["list"], &[]);
    let listed = text(&list);
    assert!(listed.contains("system\tbootstrap\t"), "{listed}");
    assert!(
        listed.contains("warning: self-signed bootstrap certificate"),
        "{listed}"
    );
    let status = s.run(&["status"], &[]);
    assert!(text(&status).contains("bootstrap"), "{}", text(&status));
    assert!(
        text(&status).contains("warning: self-signed"),
        "{}",
        text(&status)
    );
    // Only once: the system target has a certificate now.
    let again = s.run(&["init", "--json"], &[]);
    let value: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(value["bootstrapped"], false);
    // It is not renewed as an ACME certificate.
    let renew = s.run(
        &["renew", "--target", "system"],
        &strings(&["--directory", NO_CA]),
    );
    assert_eq!(renew.status.code(), Some(1), "{}", text(&renew));
    assert!(text(&renew).contains("not_acme"), "{}", text(&renew));

    // The first upload replaces it.
    let system = ChainSpec::new(&["mail.example.test"]).build();
    let ok = s.run(&["install", "--target", "system"], &s.files("sys", &system));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let list = text(&s.run(&["list"], &[]));
    assert!(
        list.contains("system\tfiles\t") && !list.contains("warning"),
        "{list}"
    );
}

#[test]
fn a_domain_neither_listed_nor_stored_is_refused_but_a_removed_one_can_be_cleaned_up() {
    let s = Setup::new();
    for command in ["disable", "rollback"] {
        let out = s.run(&[command, "--target", "domain:absent.test", "--json"], &[]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(value["code"], "unknown_target", "{command}: {value}");
    }
    let export = s.run(
        &["export", "--target", "domain:absent.test"],
        &strings(&["--out-dir", s.path("out").to_str().unwrap()]),
    );
    assert_eq!(export.status.code(), Some(1), "{}", text(&export));
    assert!(
        text(&export).contains("not in the topology"),
        "{}",
        text(&export)
    );

    // A listed domain without a certificate is still `nothing_installed`, and disabling it
    // is still "nothing to do".
    let out = s.run(&["rollback", "--target", "domain:acme.test", "--json"], &[]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["code"], "nothing_installed", "{value}");
    let out = s.run(&["disable", "--target", "domain:acme.test"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A domain with a certificate, then removed from the topology, can still be disabled.
    let acme = ChainSpec::new(&["webmail.acme.test"]).build();
    let ok = s.run(
        &["install", "--target", "domain:acme.test"],
        &s.files("acme", &acme),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    std::fs::write(
        s.path("topology.toml"),
        "[system]\nurl = \"https://mail.example.test\"\n",
    )
    .unwrap();
    let out = s.run(&["disable", "--target", "domain:acme.test", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["disabled"], true, "{value}");
}
