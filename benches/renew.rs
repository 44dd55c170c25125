//! Renewal planning for many certificates under Let's Encrypt's rate limit (300 new orders
//! per account per 3 hours), next to its floor: computing every certificate's due time and
//! sorting them (what any per-certificate scheduler pays, without the rate limit).
//!
//! `cargo bench -p bmcert-benches --bench renew`

use bmcert_renew::{plan, policy, PlanInput, RateLimit};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use time::macros::datetime;
use time::Duration;

fn inputs(n: usize) -> Vec<PlanInput> {
    let issued = datetime!(2026-03-01 00:00 UTC);
    (0..n)
        .map(|i| {
            let nb = issued + Duration::seconds((i % 86_400) as i64);
            PlanInput {
                key: format!("renewal/domain/d{i}.example.test"),
                not_before: nb,
                not_after: nb + Duration::days(90),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("renew_plan");
    group.sample_size(10);
    for n in [10_000usize, 100_000] {
        let certs = inputs(n);
        let now = datetime!(2026-03-01 00:00 UTC);
        group.bench_with_input(
            BenchmarkId::new("bmcert-renew plan", n),
            &certs,
            |b, certs| b.iter(|| plan(certs, now, RateLimit::LETS_ENCRYPT)),
        );
        group.bench_with_input(
            BenchmarkId::new("due times + sort (floor)", n),
            &certs,
            |b, certs| {
                b.iter(|| {
                    let mut due: Vec<_> = certs
                        .iter()
                        .map(|c| policy::due_at(c.not_before, c.not_after, &c.key))
                        .collect();
                    due.sort_unstable();
                    due
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
