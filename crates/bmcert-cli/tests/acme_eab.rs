//! External Account Binding (issue 16, item 2's first part) against a pebble of the test's
//! own that requires it (`externalAccountBindingRequired`, one `externalAccountMACKeys`
//! entry): without credentials `bmcert acme issue` stops before sending anything (typed
//! error, exit 2, no account); with a wrong HMAC key pebble refuses the account; with the key
//! id and key pebble issued, the account is bound and the certificate issued.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use bmcert::acme::keys;
use bmcert::block_on;
use bmcert::store::{DirStore, RecordKey, Store};
use bmcert::Target;
use common::acme_site::text;
use common::own_pebble::{binary, OwnPebble, OwnSite};

/// Pebble's sample EAB key (base64url, 48 bytes).
const HMAC_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
const OTHER_KEY: &str = "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM8BIt2XrJMDSLLmjUz7yjvg";

#[test]
fn a_ca_that_requires_external_account_binding_gets_it_and_only_then_issues() {
    let (Some(pebble_bin), Some(challtestsrv)) = (binary("pebble"), binary("pebble-challtestsrv"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http01 = bmcert_test::peers::free_port();
    let pebble = OwnPebble::start_with(
        &dir.path().join("pebble"),
        &pebble_bin,
        &challtestsrv,
        http01,
        serde_json::json!({
            "externalAccountBindingRequired": true,
            "externalAccountMACKeys": { "kid-1": HMAC_KEY },
        }),
    );
    let site = OwnSite::new(&pebble, dir.path(), "mail.eab.test", http01);
    let (good, bad) = (dir.path().join("eab.key"), dir.path().join("other.key"));
    std::fs::write(&good, format!("{HMAC_KEY}\n")).unwrap();
    std::fs::write(&bad, OTHER_KEY).unwrap();
    let store = &site.store;
    let acme = |sub: &str, extra: &[&str]| site.acme(sub, extra);
    let issue = |extra: &[&str]| site.issue(extra);
    let account = || {
        block_on(
            DirStore::open(store)
                .unwrap()
                .get(&RecordKey::new(keys::ACCOUNT).unwrap()),
        )
        .unwrap()
    };
    let out = acme("accept", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // No credentials: refused before any account request.
    let out = issue(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("requires External Account Binding") && stderr.contains("--eab-kid"),
        "{stderr}"
    );
    assert!(account().is_none());
    assert_eq!(pebble.orders(), 0);

    // Half the credentials: a usage error naming the missing half.
    let out = issue(&["--eab-kid", "kid-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A wrong HMAC key: pebble refuses the binding; no account is kept.
    let bad_s = bad.display().to_string();
    let out = issue(&["--eab-kid", "kid-1", "--eab-hmac-key-file", &bad_s]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(account().is_none());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(OTHER_KEY),
        "the key is never printed: {}",
        text(&out)
    );

    // The key pebble issued: bound, ordered, installed.
    let good_s = good.display().to_string();
    let out = issue(&["--eab-kid", "kid-1", "--eab-hmac-key-file", &good_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(account().is_some());
    assert_eq!(pebble.orders(), 1);
    assert!(
        block_on(DirStore::open(store).unwrap().current(&Target::System))
            .unwrap()
            .is_some()
    );
}
