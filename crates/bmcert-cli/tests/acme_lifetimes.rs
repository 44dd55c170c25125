//! Renewal timing follows the issued certificate's real lifetime (issue 16): against a
//! pebble of the test's own issuing 6-day and 45-day certificates (`certificateValidityPeriod`;
//! Debian's pebble 2.4 offers no ARI, so the lifetime rule applies), `bmcert acme issue`
//! then `bmcert status --json` gives the next renewal at half the lifetime before notAfter
//! for the 6-day certificate and at a third for the 45-day one, each brought forward by the
//! target's spread (at most a twentieth of the lifetime), to the second of what
//! `policy::due_at` computes from the certificate's own dates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::process::Output;
use std::time::Duration;

use bmcert::block_on;
use bmcert::renew::policy;
use bmcert::store::{keys, DirStore, Store};
use bmcert::Target;
use common::own_pebble::{binary, OwnPebble, OwnSite};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn bmcert(args: &[&str]) -> Output {
    common::acme_site::bmcert(args, &[])
}

/// Issues a system certificate valid for `validity` from a pebble of its own, and returns
/// the stored certificate's dates and `bmcert status --json`'s next renewal for it.
fn issue_and_plan(validity: Duration) -> Option<(OffsetDateTime, OffsetDateTime, OffsetDateTime)> {
    let pebble_bin = binary("pebble")?;
    let challtestsrv = binary("pebble-challtestsrv")?;
    let dir = tempfile::tempdir().unwrap();
    let http01 = bmcert_test::peers::free_port();
    let pebble = OwnPebble::start_with(
        &dir.path().join("pebble"),
        &pebble_bin,
        &challtestsrv,
        http01,
        serde_json::json!({ "certificateValidityPeriod": validity.as_secs() }),
    );
    let site = OwnSite::new(&pebble, dir.path(), "mail.lifetimes.test", http01);
    for out in [site.acme("accept", &[]), site.issue(&[])] {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            common::acme_site::text(&out)
        );
    }
    let (store, store_s, topology_s) = (
        &site.store,
        site.store.display().to_string(),
        site.topology.display().to_string(),
    );

    let current = block_on(DirStore::open(store).unwrap().current(&Target::System))
        .unwrap()
        .expect("installed");
    let meta = current.bundle.meta();
    let not_before = meta.not_before.expect("not_before recorded at install");
    let not_after = meta.not_after;

    let out = bmcert(&[
        "status",
        "--json",
        "--store",
        &store_s,
        "--topology",
        &topology_s,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        common::acme_site::text(&out)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == "system")
        .unwrap_or_else(|| panic!("no system row: {rows}"));
    let next = row["next_renewal"]
        .as_str()
        .unwrap_or_else(|| panic!("no next renewal: {row}"));
    let next = OffsetDateTime::parse(next, &Rfc3339).unwrap();
    Some((not_before, not_after, next))
}

fn spread_key() -> String {
    keys::target_key(keys::RENEWAL_PREFIX, &Target::System)
        .unwrap()
        .as_str()
        .to_owned()
}

fn check(validity_days: i64, left_at_due: time::Duration) {
    let Some((nb, na, next)) = issue_and_plan(Duration::from_secs(validity_days as u64 * 86_400))
    else {
        return;
    };
    let lifetime = na - nb;
    // Pebble dates the certificate from the order: the lifetime is what was configured, to
    // within a second or two of its own rounding.
    assert!(
        (lifetime - time::Duration::days(validity_days)).abs() <= time::Duration::seconds(2),
        "lifetime {lifetime}"
    );
    let expected = policy::due_at(nb, na, &spread_key());
    assert_eq!(
        next.unix_timestamp(),
        expected.unix_timestamp(),
        "next renewal {next}, policy {expected} (notBefore {nb}, notAfter {na})"
    );
    let before_expiry = na - next;
    assert!(
        before_expiry >= left_at_due
            && before_expiry <= left_at_due + lifetime / 20 + time::Duration::seconds(1),
        "{validity_days}-day certificate renewed {before_expiry} before its expiry"
    );
}

#[test]
fn a_six_day_certificate_is_renewed_at_half_its_lifetime() {
    check(6, time::Duration::days(3));
}

#[test]
fn a_forty_five_day_certificate_is_renewed_with_a_third_left() {
    check(45, time::Duration::days(15));
}
