//! A renewal pass with nothing due at scale (issue 17), next to its floors in the same run.
//!
//! `cargo bench -p bmcert-benches --features etcd --bench renewal_pass` (10,000 targets;
//! `BMCERT_RENEWAL_PASS_100K=1` adds 100,000; the etcd half needs `BMCERT_ETCD_ENDPOINTS`,
//! `scripts/peers/etcd.sh`, and the feature `etcd`).
//!
//! Each target has a certificate of its own (three in four from ACME, one in four uploaded),
//! none due, none near expiry; the renewer has run one pass before (its planned times are
//! recorded), so what is measured is the steady state of `Renewer::run_once`: the snapshot
//! (`Store::list_meta` + `Store::records("renewal")`) and the plan over it.
//!
//! Floors, same run, same targets:
//! - directory store: `std::fs::read` of the same files once (each target's `state.json`
//!   and current `meta.json`, and each renewal record), the paths known in advance (no
//!   directory listing, no parsing);
//! - etcd: the same range reads through etcd-client (the bundle prefix and the
//!   `renewal` records), no decoding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench set-up

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bmcert_acme::RenewalWindow;
use bmcert_renew::{
    BoxFuture, IssueError, Issuer, ManualClock, NoNotifier, Renewer, RenewerConfig,
};
use bmcert_store::testing::NoSyncFs;
use bmcert_store::{Bundle, Condition, DirStore, DirStoreOptions, Fence, Source, Store};
use bmcert_topology::Target;
use criterion::{black_box, BenchmarkId, Criterion};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2027-01-01 0:00 UTC);

/// Nothing is due: an order would be a bug of the bench. No renewal windows (ARI): with
/// them the first pass reads each ACME bundle once to ask, later ones are the same as here.
#[derive(Debug)]
struct NothingDue;

impl Issuer for NothingDue {
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        _names: &'a [String],
        _replaces: Option<&'a str>,
        _fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), IssueError>> {
        panic!("{target} was ordered though nothing is due")
    }
    fn renewal_window<'a>(
        &'a self,
        _target: &'a Target,
        _leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<RenewalWindow>> {
        Box::pin(async { None })
    }
    fn offers_renewal_window(&self) -> bool {
        false
    }
}

fn target(i: usize) -> Target {
    Target::Domain(format!("d{i}.example.test").parse().unwrap())
}

/// Target `i`'s bundle: its own P-256 certificate, issued 10 days before T0.
fn bundle(i: usize) -> Bundle {
    let nb = T0 - Duration::days(10);
    let (source, days) = if i % 4 == 3 {
        (Source::Files, 365)
    } else {
        (Source::Acme, 90)
    };
    bmcert_test::renewal::self_signed_bundle(
        &[format!("d{i}.example.test").as_str()],
        nb,
        nb + Duration::days(days),
        source,
    )
}

fn renewer(store: Arc<dyn Store>) -> Renewer {
    Renewer::new(
        store,
        Arc::new(NothingDue),
        Arc::new(NoNotifier),
        Arc::new(ManualClock::new(T0)),
        RenewerConfig {
            warn_to: Some("admin@example.test".into()),
            ..RenewerConfig::default()
        },
    )
}

/// Runs one pass and checks that nothing was done.
fn pass(rt: &tokio::runtime::Runtime, renewer: &Renewer) {
    let report = rt.block_on(renewer.run_once()).unwrap();
    assert!(report.renewed.is_empty() && report.failed.is_empty() && report.warned.is_empty());
    black_box(report);
}

/// The files a pass reads on the directory store, found once (outside the measure).
fn pass_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.join("targets").join("system")];
    for entry in std::fs::read_dir(root.join("domains")).unwrap() {
        dirs.push(entry.unwrap().path());
    }
    for dir in dirs {
        let state = dir.join("state.json");
        let Ok(bytes) = std::fs::read(&state) else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let Some(current) = value["current"].as_u64() else {
            continue;
        };
        files.push(state);
        files.push(dir.join(format!("v{current:09}")).join("meta.json"));
    }
    let mut stack = vec![root.join("records").join("renewal+")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn sizes() -> Vec<usize> {
    let mut sizes = vec![10_000];
    if std::env::var_os("BMCERT_RENEWAL_PASS_100K").is_some() {
        sizes.push(100_000);
    }
    sizes
}

fn dir_store(c: &mut Criterion, rt: &tokio::runtime::Runtime, bundles: &[Bundle], n: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let options = DirStoreOptions {
        fs: Arc::new(NoSyncFs),
        ..DirStoreOptions::default()
    };
    let store = DirStore::open_with(&root, options).unwrap();
    for (i, b) in bundles.iter().enumerate().take(n) {
        bmcert_store::block_on(store.install(&target(i), b, &Condition::none())).unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(store);
    let renewer = renewer(store);
    // The first pass records the planned times; the measured ones write nothing.
    pass(rt, &renewer);
    let files = pass_files(&root);
    assert_eq!(
        files.len(),
        2 * n + n * 3 / 4,
        "state + meta per target, one record per ACME target"
    );

    let mut g = c.benchmark_group("renewal_pass/dir");
    g.sample_size(10);
    g.measurement_time(StdDuration::from_secs(if n > 10_000 { 60 } else { 15 }));
    g.bench_function(BenchmarkId::new("Renewer::run_once, nothing due", n), |b| {
        b.iter(|| pass(rt, &renewer))
    });
    g.bench_function(
        BenchmarkId::new("floor: std::fs::read of the same files once", n),
        |b| {
            b.iter(|| {
                for f in &files {
                    black_box(std::fs::read(f).unwrap());
                }
            })
        },
    );
    g.finish();
}

#[cfg(feature = "etcd")]
fn etcd_store(c: &mut Criterion, rt: &tokio::runtime::Runtime, bundles: &[Bundle], n: usize) {
    use bmcert_store_etcd::{EtcdOptions, EtcdStore};
    use etcd_client::GetOptions;

    let Ok(endpoints) = std::env::var("BMCERT_ETCD_ENDPOINTS") else {
        eprintln!(
            "renewal_pass/etcd skipped: BMCERT_ETCD_ENDPOINTS is not set (scripts/peers/etcd.sh)"
        );
        return;
    };
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    let prefix = format!("/bench-renewal-pass-{}-{n}/", std::process::id());
    let mut options = EtcdOptions::new(endpoints.clone());
    options.prefix = prefix.clone();
    options.request_timeout = StdDuration::from_secs(60);
    let etcd = Arc::new(EtcdStore::connect(options).unwrap());
    // Filled 64 installs at a time.
    rt.block_on(async {
        let mut next = 0;
        while next < n {
            let mut tasks = Vec::new();
            for (i, b) in bundles
                .iter()
                .enumerate()
                .take((next + 64).min(n))
                .skip(next)
            {
                let store = etcd.clone();
                let b = b.clone_bundle();
                tasks.push(tokio::spawn(async move {
                    store.install(&target(i), &b, &Condition::none()).await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            next += 64;
        }
    });
    let store: Arc<dyn Store> = etcd.clone();
    let renewer = renewer(store);
    pass(rt, &renewer);
    let mut raw = rt
        .block_on(etcd_client::Client::connect(
            endpoints
                .iter()
                .map(|e| format!("http://{e}"))
                .collect::<Vec<_>>(),
            None,
        ))
        .unwrap()
        .kv_client()
        .max_decoding_message_size(1 << 30);
    let bundles_prefix = format!("{prefix}bundle/");
    let records_prefix = format!("{prefix}record/renewal");
    let keys = rt
        .block_on(raw.get(
            bundles_prefix.as_str(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        ))
        .unwrap()
        .count();
    assert_eq!(keys as usize, n);

    let mut g = c.benchmark_group("renewal_pass/etcd");
    g.sample_size(10);
    g.measurement_time(StdDuration::from_secs(if n > 10_000 { 60 } else { 15 }));
    g.bench_function(BenchmarkId::new("Renewer::run_once, nothing due", n), |b| {
        b.iter(|| pass(rt, &renewer))
    });
    g.bench_function(
        BenchmarkId::new("floor: etcd-client range reads of the same keys", n),
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let bundles = raw
                        .get(
                            bundles_prefix.as_str(),
                            Some(GetOptions::new().with_prefix()),
                        )
                        .await
                        .unwrap();
                    let records = raw
                        .get(
                            records_prefix.as_str(),
                            Some(GetOptions::new().with_prefix()),
                        )
                        .await
                        .unwrap();
                    black_box((bundles, records))
                })
            })
        },
    );
    g.finish();
    // Leave the shared cluster as it was.
    rt.block_on(raw.delete(
        prefix.as_str(),
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    ))
    .unwrap();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let max = sizes().into_iter().max().unwrap_or(10_000);
    let bundles: Vec<Bundle> = (0..max).map(bundle).collect();
    for n in sizes() {
        dir_store(&mut c, &rt, &bundles, n);
        #[cfg(feature = "etcd")]
        etcd_store(&mut c, &rt, &bundles, n);
    }
    c.final_summary();
}
