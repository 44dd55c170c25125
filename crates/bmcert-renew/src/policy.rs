//! When a certificate is due, sans-I/O: every function takes the time it needs as an argument.

use bmcert_acme::RenewalWindow;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime, UtcOffset};

/// Certificates with a lifetime shorter than this are renewed at half of it, longer ones
/// when a third remains.
pub const SHORT_LIFETIME: Duration = Duration::days(10);

/// Warnings start at the latest when the certificate expires within this much time: the
/// manual's five days (for 90-day certificates). Shorter-lived ones are warned about sooner
/// ([`warning_window`]).
pub const WARNING_WINDOW: Duration = Duration::days(5);

/// The longest delay between two attempts while a certificate is due and renewal fails.
pub const MAX_RETRY_DELAY: Duration = Duration::hours(6);

/// The first delay after a failed attempt.
pub const FIRST_RETRY_DELAY: Duration = Duration::minutes(5);

/// When a certificate of this lifetime is due: how much of its lifetime is left then.
///
/// A third for ordinary certificates (60 days into a 90-day one, 30 into a 45-day one),
/// half for short-lived ones (3 days into a 6-day one), as Let's Encrypt recommends.
pub fn remaining_at_due(lifetime: Duration) -> Duration {
    if lifetime < SHORT_LIFETIME {
        lifetime / 2
    } else {
        lifetime / 3
    }
}

/// The spread of `target`: a fraction in `[0, 1)` derived from its key, the same on every
/// server and across restarts, so many certificates issued together do not all renew at the
/// same instant, and two servers agree on when each one is due.
pub fn spread_fraction(target_key: &str) -> f64 {
    let digest = Sha256::digest(target_key.as_bytes());
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

/// When the certificate valid from `not_before` to `not_after` is due for renewal, without
/// renewal information from the CA: when [`remaining_at_due`] remains, brought forward by
/// up to a twentieth of its lifetime by the target's [`spread_fraction`].
///
/// The due time is never later than the point where a third (a half) of the lifetime
/// remains, so a certificate is always renewed before its last sixth.
pub fn due_at(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    target_key: &str,
) -> OffsetDateTime {
    let lifetime = (not_after - not_before).max(Duration::ZERO);
    let spread = (lifetime / 20) * spread_fraction(target_key);
    not_after - remaining_at_due(lifetime) - spread
}

/// The latest acceptable renewal time: when a sixth of the lifetime remains. The rate-limit
/// [`plan`](crate::plan()) never schedules a renewal after it.
pub fn deadline(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    let lifetime = (not_after - not_before).max(Duration::ZERO);
    not_after - lifetime / 6
}

/// The delay before the next attempt after `failures` failed ones in a row: 5 minutes,
/// 15, 45, 2 h 15, then 6 hours (the cap) for as long as the certificate stays due.
pub fn retry_delay(failures: u32) -> Duration {
    let mut delay = FIRST_RETRY_DELAY;
    for _ in 1..failures.min(16) {
        delay = (delay * 3i32).min(MAX_RETRY_DELAY);
    }
    delay.min(MAX_RETRY_DELAY)
}

/// The start of the UTC day after `now` (when the next daily warning may go out).
pub fn next_utc_day(now: OffsetDateTime) -> OffsetDateTime {
    let today = now.to_offset(UtcOffset::UTC).date();
    match today.next_day() {
        Some(d) => d.midnight().assume_utc(),
        None => now + Duration::days(1),
    }
}

/// The renewal time within the CA's suggested window (ARI, RFC 9773) for `target_key`: a
/// point chosen by the target's [`spread_fraction`], as the RFC asks ("a uniform random time
/// within the window"). The window is bmcert-acme's [`RenewalWindow`], parsed there.
pub fn ari_due_at(window: &RenewalWindow, target_key: &str) -> OffsetDateTime {
    window.start + (window.end - window.start) * spread_fraction(target_key)
}

/// How a certificate came to be installed, as far as renewal is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Obtained through ACME: renewed automatically.
    Automatic,
    /// Uploaded by an administrator: never renewed automatically.
    Never,
}

/// The next renewal time of an ACME certificate: the CA's window when it offered one,
/// else [`due_at`].
pub fn next_renewal(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    target_key: &str,
    ari: Option<&RenewalWindow>,
) -> OffsetDateTime {
    match ari {
        Some(window) => ari_due_at(window, target_key),
        None => due_at(not_before, not_after, target_key),
    }
}

/// How long before its expiry a certificate valid for `lifetime` is warned about while its
/// renewal fails: [`WARNING_WINDOW`] (the manual's five days), or less when the certificate
/// is due for renewal closer to its expiry than that, so that the warnings start with the
/// first failed attempt. A 90-day or 45-day certificate (due with 30 or 15 days left) gets
/// the five days; a 6-day one (due with 3 days left, brought forward by up to a twentieth of
/// its lifetime by the spread) is warned about from its first failed attempt, once per
/// UTC day, as a failing renewal there leaves no time to wait.
pub fn warning_window(lifetime: Duration) -> Duration {
    let lifetime = lifetime.max(Duration::ZERO);
    let window: Duration = remaining_at_due(lifetime) + lifetime / 20;
    window.min(WARNING_WINDOW)
}

/// Whether a warning e-mail is called for at `now`: a renewal attempt failed since the
/// certificate (valid from `not_before` to `not_after`) was installed (or it is an uploaded
/// one the administrator asked to be warned about) and it expires within its
/// [`warning_window`].
///
/// Warnings go out once per UTC day (the caller keeps the per-day record), so the window is
/// counted in UTC dates: the five dates before the expiry date. Without that rule a
/// certificate expiring at noon would be warned about on six dates (the afternoon five days
/// before, and the morning of the expiry date). Once the certificate has expired, a failing
/// renewal keeps being reported every day until it is replaced.
pub fn warning_due(
    now: OffsetDateTime,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    failing: bool,
) -> bool {
    if !failing {
        return false;
    }
    if now >= not_after {
        return true;
    }
    let (today, expiry_day) = (
        now.to_offset(UtcOffset::UTC).date(),
        not_after.to_offset(UtcOffset::UTC).date(),
    );
    not_after - now <= warning_window(not_after - not_before) && today < expiry_day
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn warnings_fall_on_the_five_utc_dates_before_expiry() {
        let na = datetime!(2026-04-01 12:00 UTC);
        let nb = na - Duration::days(90);
        let warned = |t: OffsetDateTime| warning_due(t, nb, na, true);
        assert!(
            !warned(datetime!(2026-03-27 11:00 UTC)),
            "more than 5 days left"
        );
        assert!(warned(datetime!(2026-03-27 13:00 UTC)));
        assert!(warned(datetime!(2026-03-31 23:59 UTC)));
        assert!(!warned(datetime!(2026-04-01 08:00 UTC)), "a sixth date");
        assert!(
            warned(datetime!(2026-04-02 08:00 UTC)),
            "expired: still reported"
        );
        assert!(!warning_due(datetime!(2026-03-30 08:00 UTC), nb, na, false));
        let dates: std::collections::BTreeSet<_> = (0..24 * 10)
            .map(|h| datetime!(2026-03-25 00:00 UTC) + Duration::hours(h))
            .filter(|t| *t < na && warned(*t))
            .map(|t| t.date())
            .collect();
        assert_eq!(dates.len(), 5, "{dates:?}");
    }

    #[test]
    fn the_warning_window_scales_down_to_the_first_failed_attempt() {
        assert_eq!(warning_window(Duration::days(90)), WARNING_WINDOW);
        assert_eq!(warning_window(Duration::days(45)), WARNING_WINDOW);
        assert_eq!(warning_window(Duration::days(365)), WARNING_WINDOW);
        // A 6-day certificate: warned about from its earliest possible due time.
        let nb = datetime!(2026-04-01 00:00 UTC);
        let na = nb + Duration::days(6);
        let start = na - warning_window(na - nb);
        assert!(!warning_due(start - Duration::minutes(1), nb, na, true));
        for key in ["system", "domain/a.test", "domain/b.test", "domain/c.test"] {
            let due = due_at(nb, na, key);
            assert!(due >= start, "{key}: due {due} before the window {start}");
            assert!(warning_due(due, nb, na, true), "{key}: due {due}");
        }
        assert_eq!(
            warning_window(Duration::days(6)),
            Duration::days(3) + Duration::days(6) / 20
        );
        // Not before its renewal is due: a 6-day certificate on its first day is not warned
        // about, whatever the record says.
        assert!(!warning_due(nb + Duration::hours(12), nb, na, true));
    }

    #[test]
    fn ninety_days_is_due_with_a_third_left() {
        let nb = datetime!(2026-01-01 00:00 UTC);
        let na = nb + Duration::days(90);
        let due = due_at(nb, na, "renewal/system");
        assert!(due <= na - Duration::days(30), "{due}");
        assert!(
            due >= na - Duration::days(30) - Duration::days(90) / 20,
            "{due}"
        );
    }

    #[test]
    fn six_days_is_due_at_half() {
        let nb = datetime!(2026-01-01 00:00 UTC);
        let na = nb + Duration::days(6);
        let due = due_at(nb, na, "renewal/domain/a.test");
        assert!(
            due <= nb + Duration::days(3) && due >= nb + Duration::days(3) - Duration::days(6) / 20
        );
    }

    #[test]
    fn spread_is_deterministic_and_differs_between_targets() {
        assert_eq!(
            spread_fraction("renewal/system"),
            spread_fraction("renewal/system")
        );
        let many: std::collections::HashSet<u64> = (0..1000)
            .map(|i| (spread_fraction(&format!("renewal/domain/d{i}.test")) * 1e6) as u64)
            .collect();
        assert!(many.len() > 990, "spread collapses: {}", many.len());
    }

    #[test]
    fn retry_delays_grow_to_six_hours() {
        let d: Vec<i64> = (1..=7).map(|n| retry_delay(n).whole_minutes()).collect();
        assert_eq!(d, [5, 15, 45, 135, 360, 360, 360]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn the_ca_window_wins_over_the_lifetime_rule() {
        // The example response of RFC 9773 section 4.2, parsed by bmcert-acme.
        let body = br#"{
            "suggestedWindow": {
                "start": "2025-01-02T04:00:00Z",
                "end": "2025-01-03T04:00:00Z"
            },
            "explanationURL": "https://acme.example.com/docs/ari"
        }"#;
        let w = bmcert_acme::parse_renewal_info(body, None).unwrap();
        let due = ari_due_at(&w, "renewal/system");
        assert!(due >= w.start && due < w.end);
        let nb = datetime!(2024-12-01 00:00 UTC);
        let na = nb + Duration::days(90);
        assert_eq!(next_renewal(nb, na, "renewal/system", Some(&w)), due);
        assert_eq!(
            next_renewal(nb, na, "renewal/system", None),
            due_at(nb, na, "renewal/system")
        );
    }

    proptest! {
        #[test]
        fn due_is_between_issue_and_the_last_sixth(
            start in 0i64..4_000_000_000,
            lifetime_s in 3_600i64..(400 * 86_400),
            key in "[a-z0-9./]{1,40}",
        ) {
            let nb = OffsetDateTime::from_unix_timestamp(start).unwrap();
            let na = nb + Duration::seconds(lifetime_s);
            let due = due_at(nb, na, &key);
            prop_assert!(due >= nb);
            prop_assert!(due <= deadline(nb, na));
            prop_assert!(due <= na - remaining_at_due(na - nb));
        }
    }
}
