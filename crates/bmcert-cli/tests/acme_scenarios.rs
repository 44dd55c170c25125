//! Issue 6's checks through the `bmcert` command, against the real pebble started by
//! `scripts/test-all`: a domain certificate with two `--name`, TLS-ALPN-01
//! (`--tls-alpn01-listen`) with nothing on the HTTP-01 port, no `--email` and no default
//! domain, and the account reused on a second issue.
//!
//! Each scenario runs the real binary (bounded by `timeout`) on a store of its own and reads
//! what it installed back through the store API. Without the `BMCERT_PEBBLE_*` variables
//! (plain `cargo test`) each test prints why it is skipped and returns. Pebble's validator
//! connects to fixed ports, so the scenarios that answer challenges run one at a time
//! (`PORTS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bmcert::acme::{keys, AcmeError};
use bmcert::block_on;
use bmcert::store::{DirStore, RecordKey, Source, Store};
use bmcert::topology::Target;
use bmcert_test::peers::{unique_name, Pebble};

static PORTS: Mutex<()> = Mutex::new(());

fn ports() -> MutexGuard<'static, ()> {
    // A failed scenario must not fail the next one with a poisoned lock.
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// One installation: a store, a topology file and pebble's root, in a temporary directory.
struct Installation {
    dir: tempfile::TempDir,
    pebble_dir: String,
    pebble_ca: String,
    root: PathBuf,
    topology: PathBuf,
}

impl Installation {
    fn new(pebble: &Pebble, topology: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = pebble.root_with_curl(&dir.path().join("root.pem"));
        let topology_path = dir.path().join("topology.toml");
        std::fs::write(&topology_path, topology).unwrap();
        Self {
            pebble_dir: pebble.directory.clone(),
            pebble_ca: pebble.ca_path.display().to_string(),
            root,
            topology: topology_path,
            dir,
        }
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `bmcert acme SUBCOMMAND --store ... --directory <pebble> --directory-ca <pebble CA>`,
    /// then `extra`.
    fn acme(&self, subcommand: &str, extra: &[&str]) -> Output {
        let store = self.store_path();
        let mut args = vec![
            "acme",
            subcommand,
            "--store",
            store.to_str().unwrap(),
            "--directory",
            &self.pebble_dir,
            "--directory-ca",
            &self.pebble_ca,
        ];
        args.extend_from_slice(extra);
        bmcert(&args)
    }

    fn accept(&self) {
        let out = self.acme("accept", &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    /// `bmcert acme issue --topology ... --target TARGET --chain-ca <pebble root>`, then
    /// `extra`.
    fn issue(&self, target: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "--topology",
            self.topology.to_str().unwrap(),
            "--target",
            target,
            "--chain-ca",
            self.root.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.acme("issue", &args)
    }

    /// The store as a server of the installation would open it.
    fn store(&self) -> DirStore {
        DirStore::open(self.store_path()).unwrap()
    }

    /// The account record, as stored.
    fn account_record(&self) -> Option<Vec<u8>> {
        let key = RecordKey::new(keys::ACCOUNT).unwrap();
        block_on(self.store().get(&key))
            .unwrap()
            .map(|r| r.secret_value().to_vec())
    }
}

/// Runs the real `bmcert` binary, bounded by `timeout` (a stuck order cannot hang the test).
fn bmcert(args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "5", "180"])
        .arg(env!("CARGO_BIN_EXE_bmcert"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bmcert")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits (bounded) until nothing listens on `port` on loopback.
fn wait_port_free(port: u16) {
    for _ in 0..200 {
        if std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("port {port} stays busy");
}

/// The DNS names of the certificate installed for `target`, as `openssl x509` reads them
/// from the leaf the store holds.
fn installed_san(installation: &Installation, target: &Target) -> Vec<String> {
    let current = block_on(installation.store().current(target))
        .unwrap()
        .unwrap_or_else(|| panic!("nothing installed for {target}"));
    let leaf = current.bundle.chain_pem();
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(leaf.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl x509: {}", text(&out));
    let listing = String::from_utf8(out.stdout).unwrap();
    listing
        .split([',', '\n'])
        .filter_map(|part| part.trim().strip_prefix("DNS:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_domain_certificate_with_two_names_and_the_account_reused_on_a_second_issue() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let (system, domain, web) = (
        unique_name("cli-mail"),
        unique_name("cli-dom"),
        unique_name("cli-webmail"),
    );
    let (a, b) = (
        unique_name("cli-autoconfig"),
        unique_name("cli-autodiscover"),
    );
    let installation = Installation::new(
        &pebble,
        &format!(
            "default_domain = \"example.test\"\n[system]\nurl = \"https://{system}\"\n[[domain]]\nname = \"{domain}\"\nurl = \"https://{web}/webmail\"\n"
        ),
    );
    installation.accept();
    let _ports = ports();
    wait_port_free(pebble.http01);
    let listen = pebble.http01_listen();
    let target = format!("domain:{domain}");

    // Two --name, the second in upper case: lower-cased, after the URL host, in order.
    let upper_b = b.to_ascii_uppercase();
    let first = installation.issue(
        &target,
        &["--http01-listen", &listen, "--name", &a, "--name", &upper_b],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains(&format!(
            "issued and installed for {target}: {web}, {a}, {b} (valid until "
        )),
        "{}",
        text(&first)
    );
    let registered: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("acme: account registered"))
        .collect();
    assert_eq!(
        registered,
        ["acme: account registered (no-reply@example.test)"],
        "{}",
        text(&first)
    );
    let domain_target: Target = target.parse().unwrap();
    let current = block_on(installation.store().current(&domain_target))
        .unwrap()
        .unwrap();
    assert_eq!(current.bundle.meta().source, Source::Acme);
    assert_eq!(
        current.bundle.meta().names,
        [web.as_str(), a.as_str(), b.as_str()]
    );
    let mut san = installed_san(&installation, &domain_target);
    san.sort();
    let mut expected = vec![web.clone(), a.clone(), b.clone()];
    expected.sort();
    assert_eq!(
        san, expected,
        "the certificate names the URL host and both --name"
    );
    let account = installation
        .account_record()
        .expect("the account is in the store");

    // A second issue on the same store (another target, another process): no registration,
    // the account record byte for byte as it was.
    let second = installation.issue("system", &["--http01-listen", &listen]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("acme: order placed") && stdout.contains("acme: certificate installed"),
        "{}",
        text(&second)
    );
    assert!(
        !stdout.contains("account registered"),
        "registered again: {}",
        text(&second)
    );
    assert_eq!(installation.account_record().unwrap(), account);
    assert_eq!(installed_san(&installation, &Target::System), [system]);
}

#[test]
fn tls_alpn01_with_nothing_on_the_http01_port() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let host = unique_name("cli-alpn");
    let installation = Installation::new(
        &pebble,
        &format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
    );
    installation.accept();
    let _ports = ports();
    // Binding the HTTP-01 port proves nothing listens there; this test starts nothing there.
    wait_port_free(pebble.http01);
    wait_port_free(pebble.tls_alpn01_port());
    let listen = format!("127.0.0.1:{}", pebble.tls_alpn01_port());
    let out = installation.issue("system", &["--tls-alpn01-listen", &listen]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("acme: challenge ready for {host}"))
            && stdout.contains(&format!("issued and installed for system: {host} ")),
        "{}",
        text(&out)
    );
    assert_eq!(installed_san(&installation, &Target::System), [host]);
    // The HTTP-01 tokens area of the store was never used.
    let tokens = block_on(
        installation
            .store()
            .keys(keys::HTTP01_PREFIX.trim_end_matches('/')),
    )
    .unwrap();
    assert!(tokens.is_empty(), "{tokens:?}");
}

#[test]
fn no_email_and_no_default_domain_is_the_typed_error() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let host = unique_name("cli-nocontact");
    // No `default_domain`.
    let installation = Installation::new(&pebble, &format!("[system]\nurl = \"https://{host}\"\n"));
    installation.accept();
    // No listener is needed: the error comes before any order.
    let out = installation.issue("system", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("bmcert: {}\n", AcmeError::NoContact),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--email")
            && String::from_utf8_lossy(&out.stderr).contains("default_domain"),
        "says how to fix it: {}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("acme: "),
        "{}",
        text(&out)
    );
    assert_eq!(
        installation.account_record(),
        None,
        "no account was created"
    );
    assert!(block_on(installation.store().current(&Target::System))
        .unwrap()
        .is_none());
}

/// Issue 13: an `acme issue` stopped by SIGTERM while the CA validates removes the HTTP-01
/// record it published to the store before it exits (143), so no other server keeps
/// answering a dead order's token.
#[test]
fn sigterm_during_an_order_removes_its_http01_records() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let host = unique_name("cli-sigterm");
    let installation = Installation::new(
        &pebble,
        &format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
    );
    installation.accept();
    let _ports = ports();
    wait_port_free(pebble.http01);
    // A tar pit on pebble's validation port: it accepts and never answers, so the order
    // stays pending (its record published) until pebble's validation times out.
    let tarpit = std::net::TcpListener::bind(pebble.http01_listen()).unwrap();
    tarpit.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut conns = Vec::new();
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < until
            {
                match tarpit.accept() {
                    Ok((c, _)) if conns.len() < 64 => conns.push(c),
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    });
    let store = installation.store_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmcert"))
        .args([
            "acme",
            "issue",
            "--store",
            store.to_str().unwrap(),
            "--directory",
            &installation.pebble_dir,
            "--directory-ca",
            &installation.pebble_ca,
            "--topology",
            installation.topology.to_str().unwrap(),
            "--target",
            "system",
            "--chain-ca",
            installation.root.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let records = || {
        block_on(
            installation
                .store()
                .keys(keys::HTTP01_PREFIX.trim_end_matches('/')),
        )
        .unwrap()
    };
    let mut published = Vec::new();
    for _ in 0..300 {
        published = records();
        if !published.is_empty() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !published.is_empty(),
        "the order never published its HTTP-01 record"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..200 {
        exited = child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if exited.is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("challenge record") && stderr.contains("removed"),
        "{stderr}"
    );
    assert!(records().is_empty(), "left behind: {:?}", records());
    assert!(block_on(installation.store().current(&Target::System))
        .unwrap()
        .is_none());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    held.join().unwrap();
}
