//! `--store etcd://...`: the same commands over the etcd store (cluster from
//! `scripts/peers/etcd.sh`, `BMCERT_ETCD_ENDPOINTS`; the address checks need no etcd).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::{Command, Output};

fn bmcert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args(args)
        .output()
        .unwrap()
}

fn topology(dir: &Path) -> String {
    let path = dir.join("topology.toml");
    std::fs::write(&path, "[system]\nurl = \"https://mail.example.test\"\n").unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_bad_etcd_address_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path());
    let out = bmcert(&["list", "--store", "etcd://no-port", "--topology", &topo]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-port") && err.contains("HOST:PORT"),
        "{err}"
    );
}

#[test]
fn install_through_one_endpoint_lists_through_another() {
    let Some(endpoints) = bmcert_test::peers::etcd_endpoints() else {
        return;
    };
    let prefix = format!("/cli-{}/", std::process::id());
    let first = format!("etcd://{}{prefix}", endpoints[0]);
    let last = format!("etcd://{}{prefix}", endpoints[endpoints.len() - 1]);
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path());
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let file = |name: &str| samples.join(name).to_str().unwrap().to_owned();
    let out = bmcert(&[
        "install",
        "--store",
        &first,
        "--topology",
        &topo,
        "--target",
        "system",
        "--cert",
        &file("cert.pem"),
        "--key",
        &file("key.pem"),
        "--ca",
        &file("ca.pem"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bmcert(&["list", "--json", "--store", &last, "--topology", &topo]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["target"], "system");
    assert_eq!(listed[0]["version"], 1);
    assert_eq!(listed[0]["source"], "files");
}
