//! The directory store: install and read of one bundle, and `list()` over 10,000 targets.
//!
//! Run: `cargo bench -p bmcert-benches --bench store`
//!
//! References in the same run: installing is compared with writing the same cert.pem and
//! key.pem with `std::fs::write` (what a naive installer does: no fsync, not atomic, a crash
//! can leave a new certificate with an old key) and with the minimal durable write
//! (write, fsync, rename, fsync the directory, for each of the two files). Reading is
//! compared with `std::fs::read` of the two files.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use bmcert_store::fs_ops::{FsOps, RealFs};
use bmcert_store::{block_on, Condition, DirStore, DirStoreOptions, Store};
use bmcert_topology::Target;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

use bmcert_benches::store_bundle as bundle;

fn durable_write(dir: &Path, name: &str, bytes: &[u8], mode: u32) {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

fn install_and_read(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::open(tmp.path().join("store")).unwrap();
    let bundle = bundle();
    let cert_pem = bundle.chain_pem();
    let key_pem = bundle.secret_key().secret_pem();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();

    let mut group = c.benchmark_group("store/install");
    group.bench_function("DirStore::install (crash-safe, fsynced)", |b| {
        b.iter(|| {
            block_on(store.install(&Target::System, black_box(&bundle), &Condition::none()))
                .unwrap()
        })
    });
    group.bench_function(
        "reference: two durable writes (write+fsync+rename+fsync dir)",
        |b| {
            b.iter(|| {
                durable_write(&plain, "cert.pem", cert_pem.as_bytes(), 0o644);
                durable_write(&plain, "key.pem", key_pem.as_bytes(), 0o600);
            })
        },
    );
    group.bench_function(
        "reference: std::fs::write of cert.pem and key.pem (not crash-safe)",
        |b| {
            b.iter(|| {
                std::fs::write(plain.join("cert.pem"), cert_pem.as_bytes()).unwrap();
                std::fs::write(plain.join("key.pem"), key_pem.as_bytes()).unwrap();
            })
        },
    );
    group.finish();

    let mut group = c.benchmark_group("store/read");
    group.bench_function("DirStore::current (parse PEM, check fingerprint)", |b| {
        b.iter(|| block_on(store.current(black_box(&Target::System))).unwrap())
    });
    group.bench_function("reference: std::fs::read of cert.pem and key.pem", |b| {
        b.iter(|| {
            (
                std::fs::read(plain.join("cert.pem")).unwrap(),
                std::fs::read(plain.join("key.pem")).unwrap(),
            )
        })
    });
    group.finish();
}

/// Real file operations without the fsyncs: only to populate the 10,000-target store
/// quickly (the layout is the same; `list` only reads).
#[derive(Debug)]
struct NoSyncFs;

impl FsOps for NoSyncFs {
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
        RealFs.write_file(path, bytes, mode)
    }
    fn append_sync(&self, path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
        RealFs.append_sync(path, bytes, mode)
    }
    fn sync_file(&self, _: &Path) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _: &Path) -> std::io::Result<()> {
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.rename(from, to)
    }
    fn create_dir(&self, path: &Path, mode: u32) -> std::io::Result<()> {
        RealFs.create_dir(path, mode)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_dir_all(path)
    }
}

fn list_10k(c: &mut Criterion) {
    // `cargo test --all-targets` runs benches once without `--bench`: keep that run small.
    let targets = if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        100
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let filler = DirStore::open_with(
        &root,
        DirStoreOptions {
            fs: Arc::new(NoSyncFs),
            ..DirStoreOptions::default()
        },
    )
    .unwrap();
    let bundle = bundle();
    for i in 0..targets {
        let target: Target = format!("domain:d{i}.example.test").parse().unwrap();
        block_on(filler.install(&target, &bundle, &Condition::none())).unwrap();
    }
    let store = DirStore::open(&root).unwrap();
    let listed = block_on(store.list()).unwrap();
    assert_eq!(listed.len(), targets);
    assert!(
        listed.iter().all(Result::is_ok),
        "every benchmark bundle is whole"
    );
    let mut group = c.benchmark_group("store/list");
    group.sample_size(10);
    group.bench_function(format!("DirStore::list over {targets} targets"), |b| {
        b.iter(|| block_on(store.list()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, install_and_read, list_10k);
criterion_main!(benches);
