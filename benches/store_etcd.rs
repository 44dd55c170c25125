//! The etcd store: install and read of one bundle, next to the raw etcd operations they are
//! built on, and to the directory store, in the same run.
//!
//! Run with a cluster (`scripts/peers/etcd.sh` exports `BMCERT_ETCD_ENDPOINTS`):
//! `BMCERT_ETCD_ENDPOINTS=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 cargo bench -p bmcert-benches --bench store_etcd`
//!
//! References: a single etcd-client `put` of a value of the same size (one Raft commit, the
//! floor for any etcd write) and a single `get`; `DirStore` install and read (the embedded
//! default, fsync'd). `EtcdStore::install` costs one read transaction plus one write
//! transaction (bundle, history and revision marker together).

use std::sync::Arc;

use bmcert_store::{block_on, Condition, DirStore, Store};
use bmcert_store_etcd::{EtcdOptions, EtcdStore};
use bmcert_topology::Target;
use criterion::{black_box, Criterion};

use bmcert_benches::store_bundle as bundle;

fn main() {
    let Ok(endpoints) = std::env::var("BMCERT_ETCD_ENDPOINTS") else {
        eprintln!(
            "store_etcd bench skipped: BMCERT_ETCD_ENDPOINTS is not set (scripts/peers/etcd.sh)"
        );
        return;
    };
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    let mut c = Criterion::default().configure_from_args();
    let b = bundle();
    let mut options = EtcdOptions::new(endpoints.clone());
    options.prefix = format!("/bench-{}/", std::process::id());
    let etcd: Arc<dyn Store> = Arc::new(EtcdStore::connect(options).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let dir_store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("s")).unwrap());
    // The raw reference: the same number of bytes in one put, through etcd-client directly.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut raw = rt
        .block_on(etcd_client::Client::connect(
            endpoints
                .iter()
                .map(|e| format!("http://{e}"))
                .collect::<Vec<_>>(),
            None,
        ))
        .unwrap();
    let value = vec![b'x'; b.chain().iter().map(|c| c.len() * 2).sum::<usize>() + 600];
    let raw_key = format!("/bench-raw-{}", std::process::id());

    let mut g = c.benchmark_group("install one bundle");
    g.bench_function("bmcert-store-etcd EtcdStore::install", |bench| {
        bench.iter(|| block_on(etcd.install(&Target::System, &b, &Condition::none())).unwrap())
    });
    g.bench_function("etcd-client put of the same size (reference)", |bench| {
        bench.iter(|| {
            rt.block_on(raw.put(raw_key.as_str(), value.clone(), None))
                .unwrap()
        })
    });
    g.bench_function("DirStore::install (reference)", |bench| {
        bench.iter(|| block_on(dir_store.install(&Target::System, &b, &Condition::none())).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("read the current bundle");
    g.bench_function("bmcert-store-etcd EtcdStore::current", |bench| {
        bench.iter(|| black_box(block_on(etcd.current(&Target::System)).unwrap()))
    });
    g.bench_function("etcd-client get (reference)", |bench| {
        bench.iter(|| black_box(rt.block_on(raw.get(raw_key.as_str(), None)).unwrap()))
    });
    g.bench_function("DirStore::current (reference)", |bench| {
        bench.iter(|| black_box(block_on(dir_store.current(&Target::System)).unwrap()))
    });
    g.finish();
    c.final_summary();
}
