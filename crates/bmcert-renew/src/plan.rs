//! Planning renewals under the CA's rate limit, sans-I/O.
//!
//! Let's Encrypt allows 300 new orders per account per 3 hours. 100,000 certificates issued
//! on the same day all become due within a few days of each other, and 300 per 3 hours is
//! 2,400 a day: renewing them at their due time would take 42 days and leave most of them
//! past their last sixth. The plan spaces orders evenly (one every `window / limit`, which
//! keeps any window of that length at or under the limit) and fills the slots backwards from
//! the latest due time, so each certificate is renewed at its due time when capacity allows
//! and earlier when it does not, never later.

use time::{Duration, OffsetDateTime};

use crate::policy;

/// The CA's limit on new orders per account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Orders allowed per window.
    pub orders: u32,
    /// The sliding window.
    pub window: Duration,
}

impl RateLimit {
    /// Let's Encrypt's: 300 new orders per account per 3 hours.
    pub const LETS_ENCRYPT: Self = Self {
        orders: 300,
        window: Duration::hours(3),
    };

    /// The spacing between two orders that keeps every window at or under the limit.
    pub fn spacing(&self) -> Duration {
        self.window / self.orders.max(1)
    }
}

/// A certificate to plan for.
#[derive(Clone, Debug)]
pub struct PlanInput {
    /// The target's record key (its spread derives from it).
    pub key: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// One planned renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Index into the input.
    pub index: usize,
    /// When to place the order.
    pub at: OffsetDateTime,
    /// The due time by the lifetime rule.
    pub due: OffsetDateTime,
    /// When a sixth of the lifetime remains.
    pub deadline: OffsetDateTime,
}

/// A renewal plan, sorted by time.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Every input certificate once, in order of `at`.
    pub renewals: Vec<Planned>,
}

impl Plan {
    /// The renewals planned after their deadline (empty when the limit leaves enough room).
    pub fn late(&self) -> impl Iterator<Item = &Planned> {
        self.renewals.iter().filter(|p| p.at > p.deadline)
    }

    /// The largest number of orders in any window of `window` (a check of the plan).
    pub fn max_in_window(&self, window: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..self.renewals.len() {
            while self.renewals[hi].at - self.renewals[lo].at >= window {
                lo += 1;
            }
            best = best.max(hi + 1 - lo);
        }
        best
    }
}

/// Plans the renewal of `inputs` from `now` on under `limit`.
///
/// Slots are filled backwards from the latest due time: each certificate takes its due time
/// or the slot before the next one planned, whichever is earlier. Slots that fall before
/// `now` are moved forward to `now`, `now + spacing`, ... in order; those are the only ones
/// that can end up after their deadline ([`Plan::late`]).
pub fn plan(inputs: &[PlanInput], now: OffsetDateTime, limit: RateLimit) -> Plan {
    let spacing = limit.spacing();
    let mut items: Vec<Planned> = inputs
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let due = policy::due_at(c.not_before, c.not_after, &c.key);
            Planned {
                index,
                at: due,
                due,
                deadline: policy::deadline(c.not_before, c.not_after),
            }
        })
        .collect();
    items.sort_unstable_by(|a, b| b.due.cmp(&a.due).then(a.index.cmp(&b.index)));
    let mut next: Option<OffsetDateTime> = None;
    for item in &mut items {
        let at = match next {
            Some(n) => item.due.min(n - spacing),
            None => item.due,
        };
        item.at = at;
        next = Some(at);
    }
    items.reverse();
    // Slots in the past: as soon as possible, one spacing apart, in order.
    let mut slot = now;
    for item in &mut items {
        if item.at < slot {
            item.at = slot;
            slot += spacing;
        } else {
            break;
        }
    }
    Plan { renewals: items }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn certs(n: usize, issued: OffsetDateTime, lifetime: Duration) -> Vec<PlanInput> {
        (0..n)
            .map(|i| PlanInput {
                key: format!("renewal/domain/d{i}.example.test"),
                not_before: issued + Duration::seconds((i % 86_400) as i64),
                not_after: issued + Duration::seconds((i % 86_400) as i64) + lifetime,
            })
            .collect()
    }

    #[test]
    fn a_few_certificates_renew_at_their_due_time() {
        let issued = datetime!(2026-03-01 00:00 UTC);
        let inputs = certs(10, issued, Duration::days(90));
        let p = plan(&inputs, issued, RateLimit::LETS_ENCRYPT);
        assert_eq!(p.renewals.len(), 10);
        for r in &p.renewals {
            assert_eq!(r.at, r.due);
        }
    }

    #[test]
    fn overdue_certificates_are_spaced_from_now() {
        let issued = datetime!(2026-03-01 00:00 UTC);
        let inputs = certs(600, issued, Duration::days(90));
        let now = issued + Duration::days(70);
        let p = plan(&inputs, now, RateLimit::LETS_ENCRYPT);
        assert_eq!(p.renewals[0].at, now);
        assert_eq!(p.max_in_window(Duration::hours(3)), 300);
        assert_eq!(
            p.late().count(),
            0,
            "600 orders fit in 6 hours, before day 75"
        );
    }
}
