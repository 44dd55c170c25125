//! The example server (`examples/https_server.rs`) as a separate process, driven by real
//! clients (`openssl s_client`, `curl`) over loopback, with certificates from a directory
//! store that this test process changes while the server runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bmcert_store::{block_on, Condition, DirStore, Store};
use bmcert_topology::{DomainName, Target};
use common::{install, sha256_hex, Pki};

const TOPOLOGY: &str = r#"
default_domain = "example.test"
[system]
url = "https://mail.example.test"
names = ["autodiscover.example.test"]
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
[[domain]]
name = "beta.test"
url = "https://webmail.beta.test"
"#;

/// Builds the example (a no-op when `cargo test --workspace --all-targets` already did) and
/// returns its path.
fn example_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let child = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "-p",
            "bmcert-examples",
            "--example",
            "https_server",
            "--message-format=json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run cargo");
    // Bounded: a build directory lock held elsewhere must not hang the test forever.
    let output = wait_bounded(
        child,
        Duration::from_secs(900),
        "cargo build of the example",
    );
    assert!(output.status.success(), "cargo build of the example failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["target"]["name"] == "https_server")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no executable for https_server")
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(store: &Path, topology: &Path, https: u16, mail: u16) -> Server {
    let mut child = Command::new(example_binary())
        .args(["--store".as_ref(), store.as_os_str()])
        .args(["--topology".as_ref(), topology.as_os_str()])
        .args(["--https", &format!("127.0.0.1:{https}")])
        .args(["--mail", &format!("127.0.0.1:{mail}")])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the example server");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not print its ready line within 60 s");
    assert!(line.starts_with("ready "), "unexpected first line: {line}");
    server
}

/// What `openssl s_client` received: the leaf's fingerprint and everything it printed.
struct Handshake {
    fingerprint: String,
    output: String,
}

fn s_client(port: u16, servername: Option<&str>) -> Handshake {
    s_client_sending(port, servername, None)
}

/// `openssl s_client`; with `input`, sends it and waits for the server to close (`-ign_eof`),
/// so the server's answers are in the output.
fn s_client_sending(port: u16, servername: Option<&str>, input: Option<&str>) -> Handshake {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match servername {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    cmd.arg("-showcerts");
    let output = match input {
        None => run_with_timeout(cmd.stdin(Stdio::null()), None),
        Some(input) => run_with_timeout(cmd.arg("-ign_eof").stdin(Stdio::piped()), Some(input)),
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let leaf = pem::parse_many(&text)
        .unwrap()
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .unwrap_or_else(|| panic!("openssl s_client got no certificate:\n{text}"));
    Handshake {
        fingerprint: sha256_hex(leaf.contents()),
        output: text,
    }
}

/// `curl` over TLS verified against `root`; returns (exit code, body, leaf fingerprint).
fn curl(port: u16, name: &str, root: &Path) -> (i32, String, Option<String>) {
    curl_with(port, name, Some(root))
}

/// `curl` without verification (`-k`), to see what a name that is not on the served
/// certificate gets: (exit code, body, leaf fingerprint).
fn curl_insecure(port: u16, name: &str) -> (i32, String, Option<String>) {
    curl_with(port, name, None)
}

fn curl_with(port: u16, name: &str, root: Option<&Path>) -> (i32, String, Option<String>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("{name}:{port}:127.0.0.1"));
    match root {
        Some(root) => cmd.arg("--cacert").arg(root),
        None => cmd.arg("-k"),
    };
    cmd.args(["-w", "\n%{certs}"])
        .arg(format!("https://{name}:{port}/"));
    let output = run_with_timeout(&mut cmd, None);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let body = text.lines().next().unwrap_or("").to_owned();
    let leaf = pem::parse_many(&text)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .map(|p| sha256_hex(p.contents()));
    (output.status.code().unwrap_or(-1), body, leaf)
}

fn run_with_timeout(cmd: &mut Command, input: Option<&str>) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    if let Some(input) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        // Dropping stdin sends EOF, which -ign_eof ignores.
    }
    wait_bounded(child, Duration::from_secs(20), &format!("{cmd:?}"))
}

/// Waits for `child` at most `limit`, reading its output meanwhile (so a full pipe cannot
/// stall it); kills it and fails the test on timeout.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(stdout.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err = read(stderr.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

#[test]
fn real_clients_get_the_right_certificate_and_changes_apply_live() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = DirStore::open(&store_dir).unwrap();
    let pki = Pki::new();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, pki.root_pem()).unwrap();
    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, TOPOLOGY).unwrap();

    let acme = Target::Domain(DomainName::new("acme.test").unwrap());
    let system_leaf = pki.leaf(&["mail.example.test", "autodiscover.example.test"]);
    let acme_leaf = pki.leaf(&["webmail.acme.test"]);
    install(
        &store,
        &Target::System,
        &system_leaf,
        &["mail.example.test"],
    );
    install(&store, &acme, &acme_leaf, &["webmail.acme.test"]);
    let system_fp = sha256_hex(&system_leaf.cert);
    let acme_fp = sha256_hex(&acme_leaf.cert);

    let (https, mail) = (free_port(), free_port());
    let mut server = start_server(&store_dir, &topology, https, mail);

    // openssl s_client: the served leaf per name.
    let cases = [
        (Some("mail.example.test"), &system_fp, "system-name"),
        (Some("autodiscover.example.test"), &system_fp, "system-name"),
        (Some("webmail.acme.test"), &acme_fp, "dedicated"),
        (Some("WebMail.ACME.test"), &acme_fp, "dedicated"),
        (Some("webmail.beta.test"), &system_fp, "fallback-to-system"),
        (Some("unknown.example.test"), &system_fp, "unknown-name"),
        (None, &system_fp, "no-sni"),
    ];
    for (name, expected, _) in cases {
        assert_eq!(
            &s_client(https, name).fingerprint,
            expected,
            "https, SNI {name:?}"
        );
    }

    // curl verifies the chain against the root and the name, and reads the server's answer.
    for (name, expected, reason) in [
        ("mail.example.test", &system_fp, "system-name"),
        ("webmail.acme.test", &acme_fp, "dedicated"),
    ] {
        let (code, body, leaf) = curl(https, name, &root);
        assert_eq!(code, 0, "curl {name}: {body}");
        assert_eq!(leaf.as_ref(), Some(expected), "curl {name}");
        assert!(
            body.contains(&format!("reason={reason}")),
            "curl {name}: {body}"
        );
        assert!(
            body.contains(&format!("sha256={expected}")),
            "curl {name}: {body}"
        );
    }
    // A name served the system certificate as a fallback does not verify: curl refuses it
    // (exit 60), as a browser would warn. That is the documented behaviour of the fallback.
    let (code, _, _) = curl(https, "webmail.beta.test", &root);
    assert_eq!(
        code, 60,
        "curl must refuse the system certificate for webmail.beta.test"
    );
    // Without verification, curl shows what the fallback and an unknown name are served.
    for (name, reason) in [
        ("webmail.beta.test", "fallback-to-system"),
        ("unknown.example.test", "unknown-name"),
    ] {
        let (code, body, leaf) = curl_insecure(https, name);
        assert_eq!(code, 0, "curl -k {name}: {body}");
        assert_eq!(leaf.as_ref(), Some(&system_fp), "curl -k {name}");
        assert!(
            body.contains(&format!("reason={reason}")),
            "curl -k {name}: {body}"
        );
    }

    // The mail port always presents the system certificate, whatever the SNI.
    let imap = s_client_sending(mail, Some("webmail.acme.test"), Some("a1 LOGOUT\r\n"));
    assert_eq!(imap.fingerprint, system_fp);
    assert!(
        imap.output
            .contains("* OK [bmcert] target=system reason=mail-always-system"),
        "{}",
        imap.output
    );
    assert!(
        imap.output.contains("a1 OK LOGOUT completed"),
        "{}",
        imap.output
    );

    // Disable the domain's certificate through the store, from this process: the next
    // handshakes get the system certificate, the server keeps running.
    block_on(store.disable(&acme, &Condition::none())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fp = s_client(https, Some("webmail.acme.test")).fingerprint;
        if fp == system_fp {
            break;
        }
        assert_eq!(fp, acme_fp);
        assert!(
            Instant::now() < deadline,
            "the disable was not applied within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.0.try_wait().unwrap().is_none(), "the server stopped");
    let (code, body, _) = curl(https, "mail.example.test", &root);
    assert_eq!(code, 0, "{body}");
    let fallback = s_client(https, Some("webmail.acme.test"));
    assert_eq!(fallback.fingerprint, system_fp);

    // And new installs are picked up the same way (disable deleted every older version:
    // two installs give the rollback below a version to return to).
    let reinstalled = pki.leaf(&["webmail.acme.test"]);
    install(&store, &acme, &reinstalled, &["webmail.acme.test"]);
    let renewed = pki.leaf(&["webmail.acme.test"]);
    install(&store, &acme, &renewed, &["webmail.acme.test"]);
    let renewed_fp = sha256_hex(&renewed.cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s_client(https, Some("webmail.acme.test")).fingerprint != renewed_fp {
        assert!(
            Instant::now() < deadline,
            "the install was not applied within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, body, leaf) = curl(https, "webmail.acme.test", &root);
    assert_eq!((code, leaf.as_ref()), (0, Some(&renewed_fp)), "{body}");

    // A rollback through the store, from this process: the restored version is served.
    let restored = block_on(store.rollback(&acme, &Condition::none())).unwrap();
    let restored_fp = sha256_hex(restored.bundle.leaf());
    assert_eq!(restored_fp, sha256_hex(&reinstalled.cert));
    let deadline = Instant::now() + Duration::from_secs(10);
    while s_client(https, Some("webmail.acme.test")).fingerprint != restored_fp {
        assert!(
            Instant::now() < deadline,
            "the rollback was not applied within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, body, leaf) = curl(https, "webmail.acme.test", &root);
    assert_eq!((code, leaf.as_ref()), (0, Some(&restored_fp)), "{body}");
    assert!(server.0.try_wait().unwrap().is_none(), "the server stopped");
}
