//! The store commands over the built binary: install, list, disable, rollback, export,
//! their exit statuses and JSON output.
// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use bmcert_test::fixtures::{Chain, ChainSpec};

const TOPOLOGY: &str = r#"
default_domain = "example.test"
[system]
url = "https://mail.example.test"
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("topology.toml"), TOPOLOGY).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Writes a chain's files under `prefix` and returns the install arguments.
    fn files(&self, prefix: &str, chain: &Chain) -> Vec<String> {
        let write = |name: &str, text: &str| {
            let path = self.path(&format!("{prefix}-{name}"));
            std::fs::write(&path, text).unwrap();
            path
        };
        vec![
            "--cert".into(),
            write("cert.pem", &chain.leaf.cert_pem),
            "--key".into(),
            write("key.pem", &chain.leaf.key_pem),
            "--ca".into(),
            write("ca.pem", &chain.ca_pem()),
        ]
    }

    fn run(&self, command: &str, extra: &[String]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_bmcert"))
            .arg(command)
            .args([
                "--store",
                &self.path("store"),
                "--topology",
                &self.path("topology.toml"),
            ])
            .args(extra)
            .output()
            .unwrap()
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            out.insert(path.display().to_string(), std::fs::read(&path).unwrap());
        }
    }
    out
}

#[test]
fn install_list_export_rollback_and_disable() {
    let s = Setup::new();
    let first = ChainSpec::new(&["mail.example.test"]).build();
    let mut install = args(&["--target", "system"]);
    install.extend(s.files("first", &first));
    let out = s.run("install", &install);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("Installed for system as version 1"),
        "{}",
        stdout(&out)
    );

    let second = ChainSpec::new(&["mail.example.test"]).build();
    let mut install = args(&["--target", "system", "--json"]);
    install.extend(s.files("second", &second));
    let out = s.run("install", &install);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["installed"], true);
    assert_eq!(json["version"], 2);
    assert_eq!(json["report"]["valid"], true);

    let domain = ChainSpec::new(&["webmail.acme.test"]).build();
    let mut install = args(&["--target", "domain:acme.test"]);
    install.extend(s.files("domain", &domain));
    assert_eq!(s.run("install", &install).status.code(), Some(0));

    let out = s.run("list", &args(&["--json"]));
    assert_eq!(out.status.code(), Some(0));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["target"], "system");
    assert_eq!(rows[0]["version"], 2);
    assert_eq!(rows[1]["target"], "domain:acme.test");
    assert!(rows[1]["days_left"].as_i64().unwrap() > 0);
    assert!(stdout(&s.run("list", &[])).contains("domain:acme.test\tfiles\texpires"));

    let out_dir = s.path("export");
    let out = s.run(
        "export",
        &args(&["--target", "system", "--out-dir", &out_dir]),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = std::fs::read_to_string(s.dir.path().join("export/cert.pem")).unwrap();
    assert_eq!(cert.trim(), second.leaf.cert_pem.trim());
    let key_path = s.dir.path().join("export/key.pem");
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap().trim(),
        second.leaf.key_pem.trim()
    );
    assert!(std::fs::read_to_string(s.dir.path().join("export/ca.pem"))
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    let out = s.run("rollback", &args(&["--target", "system", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["version"], 1);
    // Only one older version exists: the second rollback is refused.
    assert_eq!(
        s.run("rollback", &args(&["--target", "system"]))
            .status
            .code(),
        Some(1)
    );

    let out = s.run("disable", &args(&["--target", "system"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("install a replacement"));
    let out = s.run(
        "disable",
        &args(&["--target", "domain:acme.test", "--json"]),
    );
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["disabled"], true);
    let out = s.run(
        "export",
        &args(&["--target", "domain:acme.test", "--out-dir", &out_dir]),
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_refused_install_exits_1_with_the_report_and_changes_nothing() {
    let s = Setup::new();
    let good = ChainSpec::new(&["mail.example.test"]).build();
    let mut install = args(&["--target", "system"]);
    install.extend(s.files("good", &good));
    assert_eq!(s.run("install", &install).status.code(), Some(0));
    let before = snapshot(&s.dir.path().join("store"));

    // Another chain's certificate with the installed chain's key.
    let wrong_key = ChainSpec::new(&["mail.example.test"]).build();
    let mut files = s.files("bad", &wrong_key);
    files[3] = s.files("good", &good)[3].clone(); // the good chain's key: key_mismatch
    let mut install = args(&["--target", "system", "--json"]);
    install.extend(files);
    let out = s.run("install", &install);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["installed"], false);
    assert_eq!(json["report"]["problems"][0]["code"], "key_mismatch");
    assert_eq!(snapshot(&s.dir.path().join("store")), before);
}

#[test]
fn usage_and_io_errors_exit_2() {
    let s = Setup::new();
    let chain = ChainSpec::new(&["mail.example.test"]).build();
    for target in ["domain:../../etc", "domain:a/b", "sys"] {
        let mut install = args(&["--target", target]);
        install.extend(s.files("x", &chain));
        let out = s.run("install", &install);
        assert_eq!(out.status.code(), Some(2), "{target}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--target"));
    }
    let mut install = args(&["--target", "domain:unknown.test"]);
    install.extend(s.files("x", &chain));
    let out = s.run("install", &install);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[[domain]]"));
    let out = s.run(
        "install",
        &args(&[
            "--target",
            "system",
            "--cert",
            &s.path("missing.pem"),
            "--key",
            &s.path("missing.pem"),
        ]),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!s.dir.path().join("etc").exists());
}

/// Installs the system certificate and one for `domain:acme.test`.
fn install_two(s: &Setup) {
    for (prefix, target, name) in [
        ("sys", "system", "mail.example.test"),
        ("dom", "domain:acme.test", "webmail.acme.test"),
    ] {
        let chain = ChainSpec::new(&[name]).build();
        let mut install = args(&["--target", target]);
        install.extend(s.files(prefix, &chain));
        let out = s.run("install", &install);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    }
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `list --json`: the rows by target.
fn rows_by_target(out: &Output) -> BTreeMap<String, serde_json::Value> {
    json_of(out)
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["target"].as_str().unwrap().to_owned(), row.clone()))
        .collect()
}

#[test]
fn a_key_replaced_by_another_valid_key_is_reported_alone_as_store_damaged() {
    let s = Setup::new();
    install_two(&s);
    // The domain's current key replaced by a valid key of another certificate.
    let other = ChainSpec::new(&["webmail.acme.test"]).build();
    let key_path = Path::new(&s.path("store")).join("domains/acme.test/v000000001/key.pem");
    std::fs::write(&key_path, &other.leaf.key_pem).unwrap();

    let out = s.run("list", &args(&["--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let rows = rows_by_target(&out);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows["system"]["source"], "files", "{rows:?}");
    let damaged = &rows["domain:acme.test"];
    assert_eq!(damaged["code"], "store_damaged", "{damaged}");
    assert!(
        damaged["location"].as_str().unwrap().ends_with("key.pem"),
        "{damaged}"
    );
    assert!(
        damaged["advice"]
            .as_str()
            .unwrap()
            .contains("bmcert disable"),
        "{damaged}"
    );
    let text = s.run("list", &[]);
    assert_eq!(text.status.code(), Some(1));
    assert!(
        stdout(&text).contains("system\tfiles\texpires"),
        "{}",
        stdout(&text)
    );
    assert!(
        stdout(&text).contains("domain:acme.test\tDAMAGED (store_damaged)"),
        "{}",
        stdout(&text)
    );

    // `status` too: the damaged row and the healthy one.
    let out = s.run("status", &args(&["--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let rows = rows_by_target(&out);
    assert_eq!(rows["domain:acme.test"]["code"], "store_damaged");
    assert_eq!(rows["system"]["source"], "uploaded");

    // Export refuses the damaged target (nothing written), and exports the other.
    let out_dir = s.path("export-damaged");
    let out = s.run(
        "export",
        &args(&[
            "--target",
            "domain:acme.test",
            "--out-dir",
            &out_dir,
            "--json",
        ]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let refused = json_of(&out);
    assert_eq!(refused["code"], "store_damaged", "{refused}");
    assert!(!Path::new(&out_dir).join("key.pem").exists());
    let out_dir = s.path("export-system");
    let out = s.run(
        "export",
        &args(&["--target", "system", "--out-dir", &out_dir]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // Disable repairs it.
    let out = s.run("disable", &args(&["--target", "domain:acme.test"]));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = s.run("list", &args(&["--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(rows_by_target(&out).len(), 1);
}

#[test]
fn an_empty_state_file_is_reported_alone_and_install_repairs_it() {
    let s = Setup::new();
    install_two(&s);
    let state = Path::new(&s.path("store")).join("domains/acme.test/state.json");
    std::fs::write(&state, b"").unwrap();

    let out = s.run("list", &args(&["--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let rows = rows_by_target(&out);
    assert_eq!(rows["system"]["version"], 1, "{rows:?}");
    let damaged = &rows["domain:acme.test"];
    assert_eq!(damaged["code"], "store_damaged", "{damaged}");
    assert!(
        damaged["location"]
            .as_str()
            .unwrap()
            .ends_with("state.json"),
        "{damaged}"
    );

    let chain = ChainSpec::new(&["webmail.acme.test"]).build();
    let mut install = args(&["--target", "domain:acme.test", "--json"]);
    install.extend(s.files("fresh", &chain));
    let out = s.run("install", &install);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // The version on disk was kept: the new one gets the next number.
    assert_eq!(json_of(&out)["version"], 2);

    let out = s.run("list", &args(&["--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let rows = rows_by_target(&out);
    assert_eq!(rows["domain:acme.test"]["version"], 2, "{rows:?}");
    assert_eq!(rows["system"]["version"], 1, "{rows:?}");
    // What was intact is not lost: the first version is there to roll back to.
    let out = s.run("rollback", &args(&["--target", "domain:acme.test"]));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
