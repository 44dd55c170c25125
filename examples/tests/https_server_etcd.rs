//! `examples/https_server --store etcd://...` as its own process serves what
//! `bmcert install --store etcd://...` installs from another process: the first certificate,
//! then the next one on a later handshake, without a restart. The etcd cluster is the
//! shared one of `scripts/test-all` (`BMCERT_ETCD_ENDPOINTS`), under a prefix of its own.
//! Both binaries are built with the `etcd` feature by this test, as
//! `tests/quickstart.rs` builds its example.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bmcert_test::fixtures::ChainSpec;

/// `cargo build --features etcd` of `args`, returning the executable named `name`.
fn build(args: &[&str], name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&root)
        .arg("build")
        .args(args)
        .args(["--features", "etcd", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "cargo build {args:?} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["target"]["name"] == name)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for {name}"))
}

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The leaf certificate (PEM) the server sends for SNI `mail.example.test`.
fn served_leaf(port: u16) -> Option<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "mail.example.test"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    Some(text[start..end].trim().to_owned())
}

/// Polls the server until it sends `pem`'s certificate; returns how long that took.
fn wait_for(port: u16, pem: &str, what: &str) -> Duration {
    let wanted = pem[..pem.find("-----END CERTIFICATE-----").unwrap()].trim();
    let start = Instant::now();
    // A liveness bound, not a performance assertion: the time taken is printed.
    while start.elapsed() < Duration::from_secs(30) {
        if served_leaf(port).as_deref() == Some(wanted) {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the server did not serve {what} within 30 s");
}

#[test]
fn https_server_on_etcd_serves_each_certificate_bmcert_installs() {
    let Some(endpoints) = bmcert_test::peers::etcd_endpoints() else {
        return;
    };
    let prefix = bmcert_test::peers::unique_label("https-server");
    let store = format!("etcd://{}/{prefix}/", endpoints.join(","));
    let bmcert = build(&["-p", "bmcert-cli"], "bmcert");
    let server_bin = build(
        &["-p", "bmcert-examples", "--example", "https_server"],
        "https_server",
    );

    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, "[system]\nurl = \"https://mail.example.test\"\n").unwrap();
    let mut leaves = Vec::new();
    for version in ["v1", "v2"] {
        let c = ChainSpec::new(&["mail.example.test"]).build();
        let d = dir.path().join(version);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("cert.pem"), &c.leaf.cert_pem).unwrap();
        std::fs::write(d.join("key.pem"), &c.leaf.key_pem).unwrap();
        std::fs::write(d.join("ca.pem"), c.ca_pem()).unwrap();
        leaves.push((d, c.leaf.cert_pem.clone()));
    }
    let install = |d: &Path| {
        let out = Command::new(&bmcert)
            .args(["install", "--store", &store, "--target", "system"])
            .arg("--topology")
            .arg(&topology)
            .arg("--cert")
            .arg(d.join("cert.pem"))
            .arg("--key")
            .arg(d.join("key.pem"))
            .arg("--ca")
            .arg(d.join("ca.pem"))
            .env("BMCERT_CONFIG", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bmcert install: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    install(&leaves[0].0);

    let https = bmcert_test::peers::free_port();
    let mail = bmcert_test::peers::free_port();
    let mut child = Command::new(&server_bin)
        .args(["--store", &store])
        .arg("--topology")
        .arg(&topology)
        .args(["--https", &format!("127.0.0.1:{https}")])
        .args(["--mail", &format!("127.0.0.1:{mail}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the example server");
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not print its ready line within 60 s");
    assert!(ready.starts_with("ready "), "{ready}");

    wait_for(
        https,
        &leaves[0].1,
        "the certificate installed before it started",
    );
    // The next install, from another process: served on a later handshake, no restart.
    install(&leaves[1].0);
    let took = wait_for(https, &leaves[1].1, "the next certificate");
    println!(
        "the next certificate was served {} ms after `bmcert install` returned",
        took.as_millis()
    );
}
