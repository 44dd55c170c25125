//! Certificate profiles (issue 16, item 1) through the `bmcert` binary against the real
//! pebble of `scripts/test-all`, which (Debian's pebble 2.4) advertises no profiles:
//! `bmcert acme profiles` says so; `--require-profile shortlived` exits 1 naming what the CA
//! offers, with nothing ordered (no account even); `--profile shortlived` falls back to the
//! CA's default with a warning, issues, and keeps the profile for the target, so the next
//! order without `--profile` (a renewal's) warns again; `--profile default` forgets it. The
//! profile actually sent in a newOrder is checked against the scripted CA
//! (`crates/bmcert-acme/tests/profiles.rs`).
//!
//! Pebble's validator connects to the fixed HTTP-01 port: run under
//! `flock /tmp/bmcert-pebble.lock` beside other pebble users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use bmcert::acme::keys;
use bmcert::block_on;
use bmcert::store::{DirStore, RecordKey, Store};
use bmcert_test::peers::{unique_name, Pebble};

/// Every variable that could route the child's requests, removed before each run so that
/// only what the scenario sets applies.
mod common;
use common::acme_site::*;

fn record(store: &str, key: &str) -> Option<String> {
    let store = DirStore::open(store).unwrap();
    block_on(store.get(&RecordKey::new(key).unwrap()))
        .unwrap()
        .map(|r| String::from_utf8(r.secret_value().to_vec()).unwrap())
}

#[test]
fn pebble_advertises_no_profiles_so_required_is_refused_and_preferred_falls_back() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let host = unique_name("profile-mail");
    let site = site(
        &pebble,
        dir.path(),
        &format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
    );
    let listed = site.acme("profiles", &[], &[]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "the CA's directory advertises no profiles: orders get its default\n"
    );
    let accepted = site.acme("accept", &[], &[]);
    assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted));

    // Required and not offered: exit 1, the message names what the CA offers, nothing
    // ordered (not even the account).
    let refused = site.issue("system", &["--require-profile", "shortlived"], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let all = text(&refused);
    assert!(
        all.contains("does not offer the certificate profile `shortlived` (it advertises no profiles); nothing was ordered"),
        "{all}"
    );
    assert!(!all.contains("acme: order placed"), "{all}");
    assert_eq!(
        record(&site.store, keys::ACCOUNT),
        None,
        "no account: {all}"
    );
    assert_eq!(record(&site.store, "profile/system"), None);

    // Preferred and not offered: the CA's default, with a warning; kept for the target.
    let issued = site.issue("system", &["--profile", "shortlived"], &[]);
    assert_eq!(issued.status.code(), Some(0), "{}", text(&issued));
    let stdout = String::from_utf8_lossy(&issued.stdout);
    let warning = "acme: warning: the CA does not offer the profile `shortlived` (it advertises no profiles); ordering its default profile";
    assert!(stdout.contains(warning), "{}", text(&issued));
    assert!(
        stdout.contains(&format!("issued and installed for system: {host} ")),
        "{}",
        text(&issued)
    );
    assert_eq!(
        record(&site.store, "profile/system").as_deref(),
        Some(r#"{"profile":"shortlived","required":false}"#)
    );

    // The next order without --profile (as a renewal's) uses the kept profile: warned again.
    let again = site.issue("system", &[], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(warning),
        "{}",
        text(&again)
    );

    // `--profile default` forgets it.
    let default = site.issue("system", &["--profile", "default"], &[]);
    assert_eq!(default.status.code(), Some(0), "{}", text(&default));
    assert!(
        !String::from_utf8_lossy(&default.stdout).contains("warning"),
        "{}",
        text(&default)
    );
    assert_eq!(record(&site.store, "profile/system"), None);
}
