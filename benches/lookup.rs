//! SNI lookup at scale against the strongest fair reference (issue 17): `bmcert-resolve`'s
//! name table next to `hashbrown` and std `HashMap`, both with foldhash (seeded,
//! non-cryptographic: the fastest maintained general-purpose hashing), at 1,000 to 1,000,000
//! domains (1,000,000 with `BMCERT_LOOKUP_1M=1`), on two workloads:
//!
//! - `uniform`: every iteration looks up the next 1,000 names of a shuffled list of all N
//!   names (one in ten unknown), so over a run every domain is looked up equally often and
//!   nothing stays hot in the caches unless the table itself is small;
//! - `hot`: the same 1,000 names every iteration (about 900 distinct domains), the workload
//!   of `benches/resolve.rs`, kept for comparison.
//!
//! The references only do an exact-match `get` of a lower-case name; bmcert's `resolve` also
//! answers the service, upper-case names, the wildcard and the system fallback. Lookups are
//! for names already in lower case, as browsers send them.
//!
//! Run: `cargo bench -p bmcert-benches --bench lookup`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // bench code

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bmcert_benches::sni::{host, hot_names, live_index};
use bmcert_resolve::{certified_key, Service};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// 1,000,000 is measured only with `BMCERT_LOOKUP_1M=1`: building a million-domain
/// topology and index takes minutes here (first run: over ten minutes of CPU, not yet broken
/// down), which `cargo test --all-targets` (one pass of every bench) must not pay.
fn sizes() -> Vec<usize> {
    let mut sizes = vec![1_000, 10_000, 100_000];
    if std::env::var_os("BMCERT_LOOKUP_1M").is_some() {
        sizes.push(1_000_000);
    }
    sizes
}
/// Names looked up per iteration.
const BATCH: usize = 1_000;

fn shared_certificate() -> Arc<CertifiedKey> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let params = CertificateParams::new(vec![
        "*.bench.test".to_owned(),
        "mail.example.test".to_owned(),
    ])
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &root).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    certified_key(vec![cert.der().clone()], &key).unwrap()
}

/// A deterministic shuffle (xorshift), so every run measures the same order.
fn shuffled(mut names: Vec<String>) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..names.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        names.swap(i, (x % (i as u64 + 1)) as usize);
    }
    names
}

/// All N names and N/9 unknown ones (one lookup in ten misses), shuffled.
fn uniform_names(n: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..n).map(host).collect();
    names.extend((0..n.div_ceil(9)).map(|k| format!("unknown{k}.bench.test")));
    let mut names = shuffled(names);
    // A whole number of batches, so that `walk` visits every name in each cycle.
    let pad = (BATCH - names.len() % BATCH) % BATCH;
    names.extend_from_within(..pad);
    names
}

/// Runs `lookup` over the next `BATCH` names of `names` each iteration, cycling.
fn walk<'a>(names: &'a [String], cursor: &mut usize) -> &'a [String] {
    if *cursor + BATCH > names.len() {
        *cursor = 0;
    }
    let batch = &names[*cursor..*cursor + BATCH];
    *cursor += BATCH;
    batch
}

fn lookup(c: &mut Criterion) {
    let cert = shared_certificate();
    for (workload, make) in [
        ("uniform", uniform_names as fn(usize) -> Vec<String>),
        ("hot", |n| hot_names(n, BATCH)),
    ] {
        let mut group = c.benchmark_group(format!("lookup_{workload}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1))
            .throughput(Throughput::Elements(BATCH as u64));
        for n in sizes() {
            let index = live_index(n, &cert);
            let snapshot = index.snapshot();
            let state = foldhash::fast::RandomState::default();
            let mut hb: hashbrown::HashMap<Box<str>, Arc<CertifiedKey>, _> =
                hashbrown::HashMap::with_capacity_and_hasher(n, state.clone());
            let mut std_map: std::collections::HashMap<Box<str>, Arc<CertifiedKey>, _> =
                std::collections::HashMap::with_capacity_and_hasher(n, state);
            for i in 0..n {
                hb.insert(host(i).into(), cert.clone());
                std_map.insert(host(i).into(), cert.clone());
            }
            let names = make(n);
            let mut cursor = 0;
            group.bench_function(BenchmarkId::new("bmcert", n), |b| {
                b.iter(|| {
                    for name in walk(&names, &mut cursor) {
                        black_box(index.resolve(Service::Https, Some(black_box(name))));
                    }
                })
            });
            group.bench_function(BenchmarkId::new("bmcert_snapshot", n), |b| {
                b.iter(|| {
                    for name in walk(&names, &mut cursor) {
                        black_box(snapshot.resolve(Service::Https, Some(black_box(name))));
                    }
                })
            });
            group.bench_function(BenchmarkId::new("hashbrown_foldhash", n), |b| {
                b.iter(|| {
                    for name in walk(&names, &mut cursor) {
                        black_box(hb.get(black_box(name.as_str())).cloned());
                    }
                })
            });
            group.bench_function(BenchmarkId::new("std_hashmap_foldhash", n), |b| {
                b.iter(|| {
                    for name in walk(&names, &mut cursor) {
                        black_box(std_map.get(black_box(name.as_str())).cloned());
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, lookup);
criterion_main!(benches);
