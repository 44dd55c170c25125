//! Issue 16, item 3: every request to the CA through an outgoing HTTP proxy, checked with a
//! real forward proxy (Debian's tinyproxy, started here on a free loopback port with a
//! configuration and log of its own, requiring a user and password) and the real pebble of
//! `scripts/test-all`.
//!
//! - `HTTPS_PROXY=http://user:password@proxy`: `bmcert acme accept` and `bmcert acme issue`
//!   succeed, and the proxy's log has the `CONNECT` to pebble's port;
//! - `NO_PROXY=127.0.0.1` with the same `HTTPS_PROXY`: the next issue goes directly (no new
//!   `CONNECT` in the log);
//! - `--proxy` with a wrong password wins over `HTTPS_PROXY`: exit 2 at once (not retried),
//!   the message names the proxy without the password.
//!
//! Pebble's validator connects to the fixed HTTP-01 port: run under
//! `flock /tmp/bmcert-pebble.lock` beside other pebble users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use bmcert_test::peers::{unique_name, Pebble};
use bmcert_test::tinyproxy::Tinyproxy;

/// Every variable that could route the child's requests, removed before each run so that
/// only what the scenario sets applies.
mod common;
use common::acme_site::*;

#[test]
fn requests_to_the_ca_go_through_the_proxy_unless_no_proxy_exempts_the_host() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let password = format!("pw{}", std::process::id());
    let Some(proxy) = Tinyproxy::start(dir.path(), Some(("bmcert", &password))) else {
        return;
    };
    let pebble_authority = pebble
        .directory
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let (system, domain, web) = (
        unique_name("proxy-mail"),
        unique_name("proxy-dom"),
        unique_name("proxy-webmail"),
    );
    let site = site(
        &pebble,
        dir.path(),
        &format!(
            "default_domain = \"example.test\"\n[system]\nurl = \"https://{system}\"\n[[domain]]\nname = \"{domain}\"\nurl = \"https://{web}\"\n"
        ),
    );
    let proxy_url = format!("http://bmcert:{password}@{}", proxy.addr);
    let via_proxy = [("HTTPS_PROXY", proxy_url.as_str())];

    // Through the proxy: the terms, the account, the order, the download.
    let accepted = site.acme("accept", &[], &via_proxy);
    assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted));
    let issued = site.issue("system", &[], &via_proxy);
    assert_eq!(issued.status.code(), Some(0), "{}", text(&issued));
    assert!(
        String::from_utf8_lossy(&issued.stdout)
            .contains(&format!("issued and installed for system: {system} ")),
        "{}",
        text(&issued)
    );
    let connects = proxy.connects();
    assert!(
        !connects.is_empty() && connects.iter().all(|c| *c == pebble_authority),
        "every CONNECT is to pebble ({pebble_authority}): {connects:?}\n{}",
        proxy.log_text()
    );
    assert!(
        !text(&accepted).contains(&password) && !text(&issued).contains(&password),
        "the proxy password was printed"
    );

    // NO_PROXY covering 127.0.0.1: directly, the proxy sees nothing more.
    let before = proxy.connects().len();
    let target = format!("domain:{domain}");
    let direct = site.issue(
        &target,
        &[],
        &[
            ("HTTPS_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    assert_eq!(direct.status.code(), Some(0), "{}", text(&direct));
    assert_eq!(
        proxy.connects().len(),
        before,
        "NO_PROXY exempts 127.0.0.1: {}",
        proxy.log_text()
    );

    // --proxy wins over HTTPS_PROXY; the proxy refuses the wrong password: exit 2 (the CA
    // could not be reached), the proxy named, its password not, and not retried.
    let wrong = format!("http://bmcert:wrong{password}@{}", proxy.addr);
    let before = proxy.connects().len();
    let refused = site.acme("terms", &["--proxy", &wrong], &via_proxy);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "through the proxy http://bmcert:***@{}",
            proxy.addr
        )) && stderr.contains("did not open the tunnel"),
        "{}",
        text(&refused)
    );
    assert!(
        !stderr.contains(&format!("wrong{password}")),
        "{}",
        text(&refused)
    );
    assert_eq!(
        proxy.connects().len(),
        before + 1,
        "one CONNECT, not retried: {}",
        proxy.log_text()
    );

    // `--proxy direct` ignores HTTPS_PROXY.
    let before = proxy.connects().len();
    let direct = site.acme("terms", &["--proxy", "direct"], &via_proxy);
    assert_eq!(direct.status.code(), Some(0), "{}", text(&direct));
    assert_eq!(proxy.connects().len(), before, "{}", proxy.log_text());
}

#[test]
fn a_malformed_proxy_url_is_a_usage_error_that_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let out = bmcert(
        &[
            "acme",
            "terms",
            "--store",
            &store,
            "--directory",
            "https://127.0.0.1:9/dir",
        ],
        &[("HTTPS_PROXY", "socks5://u:topsecret@127.0.0.1:1080")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTPS_PROXY") && stderr.contains("not an http:// proxy"),
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("topsecret"), "{}", text(&out));
}
