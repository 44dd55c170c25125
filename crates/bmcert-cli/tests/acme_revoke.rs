//! Revocation (issue 16, item 4) through the `bmcert` binary against the real pebble of
//! `scripts/test-all`: `bmcert acme revoke --target system --reason keyCompromise` revokes the
//! installed certificate (pebble's management interface, `/cert-status-by-serial/SERIAL`,
//! then reports it `Revoked`), then orders and installs a new one (another fingerprint,
//! `Valid` at pebble). An unknown reason is a usage error before anything is sent; a target
//! with nothing installed is refused. `bmcert acme rollover` replaces the account key: the
//! account record keeps its URL with another key, and the next order is signed with the
//! new key (no new registration). `bmcert acme contact --email` then changes the account's
//! contact at the CA and in the record.
//!
//! Pebble's validator connects to the fixed HTTP-01 port: run under
//! `flock /tmp/bmcert-pebble.lock` beside other pebble users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::io::Write as _;
use std::process::{Command, Stdio};

use bmcert::block_on;
use bmcert::store::{DirStore, Store};
use bmcert::topology::Target;
use bmcert_test::peers::{unique_name, Pebble};

/// Both scenarios answer HTTP-01 on pebble's fixed port: one at a time.
static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ports(pebble: &Pebble) -> std::sync::MutexGuard<'static, ()> {
    // A failed scenario must not fail the next one with a poisoned lock.
    let guard = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    // The other scenario's listener has gone (bounded wait).
    for _ in 0..200 {
        if std::net::TcpListener::bind(("127.0.0.1", pebble.http01)).is_ok() {
            return guard;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("port {} stays busy", pebble.http01);
}

/// Every variable that could route the child's requests, removed before each run so that
/// only what the scenario sets applies.
mod common;
use common::acme_site::*;

/// The installed leaf of the system target: its serial (hex, as openssl prints it) and its
/// fingerprint.
fn installed_leaf(store: &str) -> (String, String) {
    let store = DirStore::open(store).unwrap();
    let current = block_on(store.current(&Target::System))
        .unwrap()
        .expect("a certificate is installed");
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(current.bundle.chain_pem().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let serial = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .strip_prefix("serial=")
        .unwrap()
        .to_owned();
    (serial, current.bundle.meta().fingerprint.to_string())
}

/// Pebble's record of a certificate: its management interface's
/// `/cert-status-by-serial/SERIAL` (JSON with `Status`: `Valid` or `Revoked`).
fn pebble_status(pebble: &Pebble, serial: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
        .arg(&pebble.ca_path)
        .arg(format!(
            "{}/cert-status-by-serial/{serial}",
            pebble.management
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn revoke_with_key_compromise_revokes_at_pebble_and_installs_a_new_certificate() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let host = unique_name("revoke-mail");
    let site = site(
        &pebble,
        dir.path(),
        &format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
    );
    // Nothing installed yet: refused, nothing sent.
    let nothing = site.acme(
        "revoke",
        &[
            "--topology",
            &site.topology,
            "--target",
            "system",
            "--reason",
            "superseded",
        ],
        &[],
    );
    assert_eq!(nothing.status.code(), Some(1), "{}", text(&nothing));
    assert!(
        text(&nothing).contains("nothing is installed for system"),
        "{}",
        text(&nothing)
    );
    // An unknown reason: a usage error.
    let bad = site.acme(
        "revoke",
        &[
            "--topology",
            &site.topology,
            "--target",
            "system",
            "--reason",
            "lost",
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("`lost` is not a revocation reason"),
        "{}",
        text(&bad)
    );

    let accepted = site.acme("accept", &[], &[]);
    assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted));
    let _ports = ports(&pebble);
    let issued = site.issue("system", &[], &[]);
    assert_eq!(issued.status.code(), Some(0), "{}", text(&issued));
    let (old_serial, old_fingerprint) = installed_leaf(&site.store);
    assert_eq!(pebble_status(&pebble, &old_serial)["Status"], "Valid");

    let listen = pebble.http01_listen();
    let revoked = site.acme(
        "revoke",
        &[
            "--topology",
            &site.topology,
            "--target",
            "system",
            "--reason",
            "keyCompromise",
            "--chain-ca",
            &site.root,
            "--http01-listen",
            &listen,
        ],
        &[],
    );
    assert_eq!(revoked.status.code(), Some(0), "{}", text(&revoked));
    let stdout = String::from_utf8_lossy(&revoked.stdout);
    assert!(
        stdout.contains(&format!(
            "revoked the certificate of system ({host}, sha256 {old_fingerprint}"
        )) && stdout.contains(": keyCompromise")
            && stdout.contains(&format!(
                "issued and installed the replacement for system: {host} "
            )),
        "{}",
        text(&revoked)
    );
    // Pebble: the old certificate revoked, the new one valid.
    let old = pebble_status(&pebble, &old_serial);
    assert_eq!(old["Status"], "Revoked", "{old}");
    let (new_serial, new_fingerprint) = installed_leaf(&site.store);
    assert_ne!(new_fingerprint, old_fingerprint);
    assert_ne!(new_serial, old_serial);
    assert_eq!(pebble_status(&pebble, &new_serial)["Status"], "Valid");
}

/// The account record's id (URL) and key, as stored.
fn account(store: &str) -> (String, String) {
    let store = DirStore::open(store).unwrap();
    let key = bmcert::store::RecordKey::new(bmcert::acme::keys::ACCOUNT).unwrap();
    let record = block_on(store.get(&key)).unwrap().expect("an account");
    let v: serde_json::Value = serde_json::from_slice(record.secret_value()).unwrap();
    let creds = &v["credentials"];
    (
        creds["id"].as_str().unwrap().to_owned(),
        creds["key_pkcs8"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn rollover_replaces_the_account_key_the_next_order_uses_it_and_the_contact_changes() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let host = unique_name("rollover-mail");
    let site = site(
        &pebble,
        dir.path(),
        &format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
    );
    let accepted = site.acme("accept", &[], &[]);
    assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted));
    let _ports = ports(&pebble);
    let first = site.issue("system", &[], &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let (id, key) = account(&site.store);

    let rolled = site.acme("rollover", &["--topology", &site.topology], &[]);
    assert_eq!(rolled.status.code(), Some(0), "{}", text(&rolled));
    assert_eq!(
        String::from_utf8_lossy(&rolled.stdout),
        format!("the key of the ACME account {id} was replaced\n")
    );
    let (id_after, key_after) = account(&site.store);
    assert_eq!(id_after, id, "the same account");
    assert_ne!(key_after, key, "another key");

    // The next order is signed with the new key: accepted, and no new registration.
    let second = site.issue("system", &[], &[]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        !String::from_utf8_lossy(&second.stdout).contains("account registered"),
        "{}",
        text(&second)
    );
    assert_eq!(account(&site.store), (id_after, key_after));

    // The contact: changed at the CA (signed with the new key) and in the record; a bad
    // address is a usage error before anything is sent.
    let changed = site.acme(
        "contact",
        &["--topology", &site.topology, "--email", "ops@example.org"],
        &[],
    );
    assert_eq!(changed.status.code(), Some(0), "{}", text(&changed));
    assert_eq!(
        String::from_utf8_lossy(&changed.stdout),
        "the ACME account's contact is now ops@example.org\n"
    );
    assert_eq!(contact(&site.store), "ops@example.org");
    let bad = site.acme(
        "contact",
        &["--topology", &site.topology, "--email", "nobody"],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert_eq!(contact(&site.store), "ops@example.org");
}

/// The account record's contact.
fn contact(store: &str) -> String {
    let store = DirStore::open(store).unwrap();
    let key = bmcert::store::RecordKey::new(bmcert::acme::keys::ACCOUNT).unwrap();
    let record = block_on(store.get(&key)).unwrap().expect("an account");
    let v: serde_json::Value = serde_json::from_slice(record.secret_value()).unwrap();
    v["contact"].as_str().unwrap().to_owned()
}
