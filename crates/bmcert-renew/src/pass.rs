//! One renewal pass as data: the snapshot it starts from (read in a constant number of
//! store calls) and the pure plan over it (no I/O), which the renewer then carries out.
//!
//! A pass with nothing due costs two store calls whatever the number of targets:
//! [`Store::list_meta`] (every target's metadata, no key) and [`Store::records`] of the
//! `renewal/` prefix. Only the actions read more: the bundle of a target being renewed
//! (proven whole, key included, under the renewal lock), the planned time written into a
//! record when it changed, a warning's records.

use std::collections::HashMap;

use bmcert_acme::RenewalWindow;
use bmcert_store::{keys, Listed, Revision, Source, Store, StoreError};
use bmcert_topology::Target;
use time::OffsetDateTime;

use crate::plan::{PlanInput, RateLimit};
use crate::policy;
use crate::renewer::{from_unix, hex, key_str, unix, whole_second, RenewError, RenewalRecord};

/// What a pass starts from: every target's current metadata (damaged ones left out) and
/// every renewal record, by record key.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The targets with a current bundle, sorted by target, `not_before` filled in.
    pub(crate) rows: Vec<Listed>,
    /// The renewal records (`renewal/...`) by key, with their revisions; records that do
    /// not parse are left out (a fresh record replaces them).
    pub(crate) records: HashMap<String, (Revision, RenewalRecord)>,
}

impl Snapshot {
    /// Reads the snapshot: [`Store::list_meta`] and [`Store::records`] of `renewal/`. A row
    /// stored before `not_before` was recorded costs one more read ([`Store::current`])
    /// until the target is next installed.
    pub(crate) async fn read(store: &dyn Store) -> Result<Self, RenewError> {
        let store_err = |during: &'static str| move |source| RenewError::Store { during, source };
        let listed = store
            .list_meta()
            .await
            .map_err(store_err("listing the targets"))?;
        let mut rows = Vec::with_capacity(listed.len());
        for row in listed {
            match row {
                Ok(mut l) => {
                    if l.meta.not_before.is_none() {
                        match store.current(&l.target).await {
                            Ok(Some(installed)) => {
                                l.meta.not_before = Some(crate::renewer::validity(&installed).0);
                            }
                            Ok(None) => continue,
                            Err(StoreError::Damaged(damaged)) => {
                                tracing::error!(%damaged, "renewal: skipping a damaged certificate");
                                continue;
                            }
                            Err(e) => return Err(store_err("reading a certificate")(e)),
                        }
                    }
                    rows.push(l);
                }
                Err(damaged) => {
                    tracing::error!(%damaged, "renewal: skipping a damaged certificate");
                }
            }
        }
        let records = store
            .records(keys::RENEWAL_PREFIX)
            .await
            .map_err(store_err("reading the renewal records"))?
            .into_iter()
            .filter_map(|(key, record)| {
                let parsed = serde_json::from_slice::<RenewalRecord>(record.secret_value()).ok()?;
                Some((key.as_str().to_owned(), (record.revision, parsed)))
            })
            .collect();
        Ok(Self { rows, records })
    }

    /// The stored renewal record of `target` with its revision, whatever certificate it is
    /// about.
    pub(crate) fn stored(&self, target: &Target) -> Option<&(Revision, RenewalRecord)> {
        self.records.get(&key_str(target))
    }

    /// The record for `row`'s certificate: the stored one when it is about it, else fresh.
    pub(crate) fn record_for(&self, row: &Listed) -> RenewalRecord {
        record_for(self.stored(&row.target), row)
    }
}

fn record_for(stored: Option<&(Revision, RenewalRecord)>, row: &Listed) -> RenewalRecord {
    let fp = hex(&row.meta.fingerprint.0);
    match stored {
        Some((_, r)) if r.fingerprint == fp => r.clone(),
        _ => RenewalRecord {
            fingerprint: fp,
            ..RenewalRecord::default()
        },
    }
}

/// The validity of a row: `not_before` as recorded (the renewer fills it in from the leaf
/// for bundles stored before it was), else the install time.
pub(crate) fn validity(row: &Listed) -> (OffsetDateTime, OffsetDateTime) {
    (
        row.meta.not_before.unwrap_or(row.meta.installed_at),
        row.meta.not_after,
    )
}

/// What the planner is given besides the snapshot.
#[derive(Debug)]
pub(crate) struct PlanContext<'a> {
    /// The pass's time.
    pub(crate) now: OffsetDateTime,
    /// The CA's order limit.
    pub(crate) rate_limit: RateLimit,
    /// Whether uploaded certificates are warned about (an administrator address is set).
    pub(crate) warn_uploaded: bool,
    /// The CA's renewal windows (ARI) by certificate fingerprint (hex); a certificate not
    /// in the map has none.
    pub(crate) windows: &'a HashMap<String, Option<RenewalWindow>>,
}

/// What the pass does about one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TargetPlan {
    /// A certificate not from ACME: never renewed; warned about when it nears expiry and
    /// an administrator address is set.
    Uploaded {
        /// Send today's warning now.
        warn: bool,
        /// When to look again (`None`: never, no address).
        wake: Option<OffsetDateTime>,
    },
    /// An ACME certificate.
    Acme(AcmePlan),
}

/// The plan for one ACME certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AcmePlan {
    /// When it is due, to the whole second: the CA's window, else its slot in the
    /// rate-limit plan, else the lifetime rule.
    pub(crate) due: OffsetDateTime,
    /// The record for this certificate (fresh when the stored one is about another).
    pub(crate) record: RenewalRecord,
    /// Write `due` into the record as its planned time (it changed).
    pub(crate) note: bool,
    /// Attempt a renewal now.
    pub(crate) attempt: bool,
    /// Without an attempt: when to look again and whether a warning is due now.
    pub(crate) follow_up: FollowUp,
}

/// After an ACME certificate was looked at (and perhaps attempted): when to look again and
/// whether to warn now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FollowUp {
    /// The earliest time something changes for it (`None`: nothing is waited for).
    pub(crate) wake: Option<OffsetDateTime>,
    /// A failure is recorded and the expiry is near: send today's warning.
    pub(crate) warn: bool,
}

/// When to look again at an ACME certificate due at `due` with record `rec`, and whether a
/// warning is due at `now`.
pub(crate) fn follow_up(
    due: OffsetDateTime,
    rec: &RenewalRecord,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    now: OffsetDateTime,
) -> FollowUp {
    let mut wake = None;
    let mut at = |t: OffsetDateTime| wake = Some(wake.map_or(t, |w: OffsetDateTime| w.min(t)));
    if now < due {
        at(due);
    } else if let Some(n) = rec.next_attempt {
        at(from_unix(n));
    }
    let mut warn = false;
    if rec.last_error.is_some() {
        if policy::warning_due(now, not_before, not_after, true) {
            warn = true;
        } else {
            at(not_after - policy::warning_window(not_after - not_before));
        }
    }
    FollowUp { wake, warn }
}

/// Plans a pass over `snapshot`, without I/O: per row (same order), what to do.
/// `refused(target, record)` says whether a permanent refusal recorded for the target still
/// holds (the issuer would order the same thing again).
///
/// The plan depends on the set of rows, not their order: the rate-limit plan is made over
/// the certificates sorted by target.
pub(crate) fn plan_pass(
    snapshot: &Snapshot,
    cx: &PlanContext<'_>,
    refused: &dyn Fn(&Target, &RenewalRecord) -> bool,
) -> Vec<TargetPlan> {
    let now = cx.now;
    // Per row, once: its record key, its certificate's fingerprint (hex), its record.
    let keys: Vec<String> = snapshot.rows.iter().map(|r| key_str(&r.target)).collect();
    let fps: Vec<String> = snapshot
        .rows
        .iter()
        .map(|r| hex(&r.meta.fingerprint.0))
        .collect();
    let records: Vec<RenewalRecord> = (0..snapshot.rows.len())
        .map(|i| match snapshot.records.get(&keys[i]) {
            Some((_, r)) if r.fingerprint == fps[i] => r.clone(),
            _ => RenewalRecord {
                fingerprint: fps[i].clone(),
                ..RenewalRecord::default()
            },
        })
        .collect();
    let window = |i: usize| match cx.windows.is_empty() {
        true => None,
        false => cx.windows.get(&fps[i]).and_then(Option::as_ref),
    };
    // The rate-limit plan, over the ACME certificates not waiting for a retry (their
    // back-off decides) and without a window from the CA, in target order.
    let mut candidates: Vec<usize> = (0..snapshot.rows.len())
        .filter(|&i| {
            let row = &snapshot.rows[i];
            row.meta.source == Source::Acme
                && records[i].next_attempt.is_none_or(|n| from_unix(n) <= now)
                && window(i).is_none()
        })
        .collect();
    candidates.sort_by(|&a, &b| snapshot.rows[a].target.cmp(&snapshot.rows[b].target));
    let inputs: Vec<PlanInput> = candidates
        .iter()
        .map(|&i| {
            let row = &snapshot.rows[i];
            let (not_before, not_after) = validity(row);
            PlanInput {
                key: keys[i].clone(),
                not_before,
                not_after,
            }
        })
        .collect();
    let mut planned: HashMap<usize, OffsetDateTime> = HashMap::with_capacity(inputs.len());
    for p in crate::plan::plan(&inputs, now, cx.rate_limit).renewals {
        planned.insert(candidates[p.index], p.at);
    }

    snapshot
        .rows
        .iter()
        .zip(records)
        .enumerate()
        .map(|(i, (row, record))| {
            let (not_before, not_after) = validity(row);
            if row.meta.source != Source::Acme {
                let (warn, wake) = match cx.warn_uploaded {
                    false => (false, None),
                    true if policy::warning_due(now, not_before, not_after, true) => (true, None),
                    true => (
                        false,
                        Some(not_after - policy::warning_window(not_after - not_before)),
                    ),
                };
                return TargetPlan::Uploaded { warn, wake };
            }
            let key = &keys[i];
            let due = whole_second(match window(i) {
                Some(w) => policy::ari_due_at(w, key),
                None => planned
                    .get(&i)
                    .copied()
                    .unwrap_or_else(|| policy::due_at(not_before, not_after, key)),
            });
            // The planned time is recorded when it changed; an overdue certificate's slot
            // is "now" at every pass: one past time says it.
            let overdue = due <= now && record.planned.is_some_and(|p| from_unix(p) <= now);
            let note = !(record.planned == Some(unix(due)) || overdue);
            let attempt = now >= due
                && record.next_attempt.is_none_or(|n| from_unix(n) <= now)
                && !refused(&row.target, &record);
            let follow_up = follow_up(due, &record, (not_before, not_after), now);
            TargetPlan::Acme(AcmePlan {
                due,
                record,
                note,
                attempt,
                follow_up,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmcert_store::{BundleMeta, Fingerprint};
    use time::macros::datetime;
    use time::Duration;

    const T0: OffsetDateTime = datetime!(2027-01-01 0:00 UTC);

    fn row(name: &str, source: Source, nb: OffsetDateTime, days: i64) -> Listed {
        let target = match name {
            "system" => Target::System,
            _ => Target::Domain(name.parse().unwrap()),
        };
        Listed {
            target,
            version: 1,
            revision: Revision(1),
            meta: BundleMeta {
                source,
                names: vec![name.to_owned()],
                not_after: nb + Duration::days(days),
                not_before: Some(nb),
                installed_at: nb,
                fingerprint: Fingerprint::of(name.as_bytes()),
            },
        }
    }

    fn cx(
        windows: &HashMap<String, Option<RenewalWindow>>,
        now: OffsetDateTime,
    ) -> PlanContext<'_> {
        PlanContext {
            now,
            rate_limit: RateLimit::LETS_ENCRYPT,
            warn_uploaded: true,
            windows,
        }
    }

    fn never(_: &Target, _: &RenewalRecord) -> bool {
        false
    }

    fn acme(p: &TargetPlan) -> &AcmePlan {
        match p {
            TargetPlan::Acme(a) => a,
            other => panic!("not ACME: {other:?}"),
        }
    }

    #[test]
    fn nothing_due_means_no_action_and_a_wake_at_the_first_due_time() {
        let rows = vec![
            row("system", Source::Acme, T0 - Duration::days(10), 90),
            row("a.example.test", Source::Acme, T0 - Duration::days(20), 90),
            row(
                "b.example.test",
                Source::Files,
                T0 - Duration::days(20),
                365,
            ),
        ];
        let snapshot = Snapshot {
            rows,
            records: HashMap::new(),
        };
        let windows = HashMap::new();
        let plan = plan_pass(&snapshot, &cx(&windows, T0), &never);
        assert_eq!(plan.len(), 3);
        for p in &plan[..2] {
            let a = acme(p);
            assert!(!a.attempt && !a.follow_up.warn, "{a:?}");
            assert!(a.due > T0);
            assert_eq!(a.follow_up.wake, Some(a.due));
            // First pass: the planned time is recorded.
            assert!(a.note);
        }
        assert_eq!(
            plan[2],
            TargetPlan::Uploaded {
                warn: false,
                wake: Some(T0 - Duration::days(20) + Duration::days(365) - policy::WARNING_WINDOW)
            }
        );
        // With the planned times recorded, a second pass writes nothing either.
        let records = snapshot
            .rows
            .iter()
            .zip(&plan)
            .filter_map(|(row, p)| match p {
                TargetPlan::Acme(a) => Some((
                    key_str(&row.target),
                    (
                        Revision(9),
                        RenewalRecord {
                            planned: Some(unix(a.due)),
                            ..a.record.clone()
                        },
                    ),
                )),
                TargetPlan::Uploaded { .. } => None,
            })
            .collect();
        let snapshot = Snapshot {
            rows: snapshot.rows,
            records,
        };
        let again = plan_pass(&snapshot, &cx(&windows, T0 + Duration::hours(1)), &never);
        assert!(again.iter().all(|p| match p {
            TargetPlan::Acme(a) => !a.note && !a.attempt,
            TargetPlan::Uploaded { warn, .. } => !warn,
        }));
    }

    #[test]
    fn due_back_off_refusal_and_ari_decide_the_attempt() {
        let nb = T0 - Duration::days(80);
        let rows = vec![
            row("a.example.test", Source::Acme, nb, 90),
            row("b.example.test", Source::Acme, nb, 90),
            row("c.example.test", Source::Acme, nb, 90),
            row("d.example.test", Source::Acme, nb, 90),
        ];
        let fp = |i: usize| hex(&rows[i].meta.fingerprint.0);
        let mut records = HashMap::new();
        // b: waiting for its back-off; c: refused; d: the CA's window is later.
        records.insert(
            key_str(&rows[1].target),
            (
                Revision(3),
                RenewalRecord {
                    fingerprint: fp(1),
                    next_attempt: Some(unix(T0 + Duration::minutes(5))),
                    last_error: Some("down".into()),
                    ..RenewalRecord::default()
                },
            ),
        );
        records.insert(
            key_str(&rows[2].target),
            (
                Revision(4),
                RenewalRecord {
                    fingerprint: fp(2),
                    refused_for: Some("x".into()),
                    ..RenewalRecord::default()
                },
            ),
        );
        let mut windows = HashMap::new();
        let window = RenewalWindow::new(T0 + Duration::days(3), T0 + Duration::days(4)).unwrap();
        windows.insert(fp(3), Some(window));
        let snapshot = Snapshot {
            rows: rows.clone(),
            records,
        };
        let refused =
            |t: &Target, r: &RenewalRecord| r.refused_for.is_some() && t == &rows[2].target;
        let plan = plan_pass(&snapshot, &cx(&windows, T0), &refused);
        let attempts: Vec<bool> = plan.iter().map(|p| acme(p).attempt).collect();
        assert_eq!(attempts, [true, false, false, false]);
        assert_eq!(
            acme(&plan[1]).follow_up.wake,
            Some(T0 + Duration::minutes(5))
        );
        let d = acme(&plan[3]);
        assert!(d.due >= T0 + Duration::days(3) && d.due <= T0 + Duration::days(4));
        // A record about an older certificate is not this one's.
        let mut stale = snapshot;
        stale
            .records
            .get_mut(&key_str(&rows[1].target))
            .unwrap()
            .1
            .fingerprint = "old".into();
        let plan = plan_pass(&stale, &cx(&windows, T0), &refused);
        assert!(acme(&plan[1]).attempt);
        assert_eq!(acme(&plan[1]).record.fingerprint, fp(1));
    }

    proptest::proptest! {
        #[test]
        fn due_times_do_not_depend_on_the_order_of_targets(
            certs in proptest::collection::vec((0u32..50, 0i64..120, 1i64..100, proptest::bool::ANY), 1..40),
            seed in proptest::num::u64::ANY,
            limit in 1u32..5,
        ) {
            let mut rows: Vec<Listed> = Vec::new();
            for (n, age, days, from_acme) in certs {
                let name = format!("d{n}.example.test");
                if rows.iter().any(|r| r.meta.names[0] == name) {
                    continue;
                }
                let source = if from_acme { Source::Acme } else { Source::Files };
                rows.push(row(&name, source, T0 - Duration::days(age), days));
            }
            let windows = HashMap::new();
            let context = PlanContext {
                now: T0,
                rate_limit: RateLimit { orders: limit, window: Duration::days(2) },
                warn_uploaded: true,
                windows: &windows,
            };
            let by_target = |rows: Vec<Listed>| {
                let snapshot = Snapshot { rows, records: HashMap::new() };
                let plan = plan_pass(&snapshot, &context, &never);
                let mut out: Vec<(Target, TargetPlan)> = snapshot
                    .rows
                    .iter()
                    .map(|r| r.target.clone())
                    .zip(plan)
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            };
            let mut shuffled = rows.clone();
            // A deterministic shuffle from the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let a = by_target(rows);
            let b = by_target(shuffled);
            proptest::prop_assert_eq!(&a, &b);
            // Nothing is attempted before it is due, and a due one is attempted.
            for (_, p) in &a {
                if let TargetPlan::Acme(p) = p {
                    proptest::prop_assert_eq!(p.attempt, p.due <= T0);
                    proptest::prop_assert!(p.attempt || p.follow_up.wake == Some(p.due));
                }
            }
        }

        #[test]
        fn nothing_due_plans_no_action(
            ages in proptest::collection::vec(0i64..50, 0..30),
        ) {
            // 90-day certificates younger than 50 days: none is due (day 55.5 at the
            // earliest), none nears expiry.
            let rows: Vec<Listed> = ages
                .iter()
                .enumerate()
                .map(|(i, age)| {
                    let source = if i % 3 == 0 { Source::Files } else { Source::Acme };
                    row(&format!("d{i}.example.test"), source, T0 - Duration::days(*age), 90)
                })
                .collect();
            let windows = HashMap::new();
            let snapshot = Snapshot { rows, records: HashMap::new() };
            let plan = plan_pass(&snapshot, &cx(&windows, T0), &never);
            proptest::prop_assert_eq!(plan.len(), ages.len());
            for p in plan {
                match p {
                    TargetPlan::Acme(a) => {
                        proptest::prop_assert!(!a.attempt && !a.follow_up.warn);
                        proptest::prop_assert!(a.due > T0);
                    }
                    TargetPlan::Uploaded { warn, wake } => {
                        proptest::prop_assert!(!warn);
                        proptest::prop_assert!(wake.is_some_and(|w| w > T0));
                    }
                }
            }
        }
    }
}
