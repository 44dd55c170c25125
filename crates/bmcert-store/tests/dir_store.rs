//! The directory backend's own guarantees: injected file-system faults, hostile names,
//! permissions, and secrets kept out of every output.
// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcert_store::fs_ops::{FsOps, RealFs};
use bmcert_store::{
    block_on, Condition, DirStore, DirStoreOptions, RecordKey, Revision, Store, StoreError,
};
use bmcert_topology::Target;
use common::{key_matches_certificate, LogCapture, Pair};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Write,
    Append,
    SyncFile,
    SyncDir,
    Rename,
    CreateDir,
}

#[derive(Clone, Copy, Debug)]
enum Failure {
    /// EIO.
    Io,
    /// ENOSPC; for a write, after writing half the bytes.
    DiskFull,
}

/// Real file system operations, with one chosen call failing.
#[derive(Debug, Default)]
struct FaultyFs {
    counts: Mutex<BTreeMap<Op, usize>>,
    fault: Mutex<Option<(Op, usize, Failure)>>,
}

impl FaultyFs {
    fn arm(&self, op: Op, nth: usize, failure: Failure) {
        self.counts.lock().unwrap().clear();
        *self.fault.lock().unwrap() = Some((op, nth, failure));
    }

    fn disarm(&self) {
        *self.fault.lock().unwrap() = None;
    }

    fn reset_counts(&self) -> BTreeMap<Op, usize> {
        std::mem::take(&mut *self.counts.lock().unwrap())
    }

    /// Counts the call; returns the failure if this is the chosen one.
    fn hit(&self, op: Op) -> Option<Failure> {
        let mut counts = self.counts.lock().unwrap();
        let n = counts.entry(op).or_default();
        let this = *n;
        *n += 1;
        match *self.fault.lock().unwrap() {
            Some((fop, nth, failure)) if fop == op && nth == this => Some(failure),
            _ => None,
        }
    }
}

fn error(failure: Failure) -> io::Error {
    match failure {
        Failure::Io => io::Error::from_raw_os_error(5),
        Failure::DiskFull => io::Error::from_raw_os_error(28),
    }
}

impl FsOps for FaultyFs {
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        if let Some(f) = self.hit(Op::Write) {
            RealFs.write_file(path, &bytes[..bytes.len() / 2], mode)?;
            return Err(error(f));
        }
        RealFs.write_file(path, bytes, mode)
    }
    fn append_sync(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        if let Some(f) = self.hit(Op::Append) {
            RealFs.append_sync(path, &bytes[..bytes.len() / 2], mode)?;
            return Err(error(f));
        }
        RealFs.append_sync(path, bytes, mode)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        match self.hit(Op::SyncFile) {
            Some(f) => Err(error(f)),
            None => RealFs.sync_file(path),
        }
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match self.hit(Op::SyncDir) {
            Some(f) => Err(error(f)),
            None => RealFs.sync_dir(path),
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.hit(Op::Rename) {
            Some(f) => Err(error(f)),
            None => RealFs.rename(from, to),
        }
    }
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        match self.hit(Op::CreateDir) {
            Some(f) => Err(error(f)),
            None => RealFs.create_dir(path, mode),
        }
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_dir_all(path)
    }
}

fn open_faulty(dir: &Path) -> (DirStore, Arc<FaultyFs>) {
    let fs = Arc::new(FaultyFs::default());
    let options = DirStoreOptions {
        fs: fs.clone(),
        ..DirStoreOptions::default()
    };
    (DirStore::open_with(dir, options).unwrap(), fs)
}

#[test]
fn injected_faults_leave_the_previous_version_current() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = vec![
        Pair::generate("a.example.test"),
        Pair::generate("b.example.test"),
    ];
    let (old, new) = (pairs[0].bundle(1), pairs[1].bundle(2));

    // How many calls of each kind one install makes.
    let (store, fs) = open_faulty(&tmp.path().join("count"));
    block_on(store.install(&Target::System, &old, &Condition::none())).unwrap();
    fs.reset_counts();
    block_on(store.install(&Target::System, &new, &Condition::none())).unwrap();
    let counts = fs.reset_counts();
    assert!(
        counts[&Op::SyncFile] >= 5 && counts[&Op::Rename] >= 3,
        "{counts:?}"
    );

    let mut refused = 0;
    let mut after_switch = 0;
    let mut scenario = 0;
    for (&op, &count) in &counts {
        for nth in 0..count {
            for failure in [Failure::Io, Failure::DiskFull] {
                scenario += 1;
                let (store, fs) = open_faulty(&tmp.path().join(format!("s{scenario}")));
                let first =
                    block_on(store.install(&Target::System, &old, &Condition::none())).unwrap();
                let mut watch = block_on(store.watch(first.revision)).unwrap();
                fs.arm(op, nth, failure);
                let result = block_on(store.install(&Target::System, &new, &Condition::none()));
                fs.disarm();
                let current = block_on(store.current(&Target::System)).unwrap().unwrap();
                assert!(key_matches_certificate(&current.bundle, &pairs));
                match &result {
                    Err(e) => {
                        refused += 1;
                        assert_eq!(
                            current.bundle, old,
                            "{op:?}#{nth} {failure:?}: the error left a new version current"
                        );
                        assert_eq!(current.revision, first.revision);
                        assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
                        let text = e.to_string();
                        assert!(
                            text.contains("could not")
                                && text.contains(tmp.path().to_str().unwrap()),
                            "{text}"
                        );
                    }
                    Ok(installed) => {
                        // Only the steps after the switch may fail without failing the install:
                        // the directory fsync after the final rename, and the journal append.
                        after_switch += 1;
                        assert!(
                            matches!(op, Op::SyncDir | Op::Append),
                            "{op:?}#{nth} failed silently"
                        );
                        assert_eq!(current.bundle, new);
                        assert_eq!(current.revision, installed.revision);
                    }
                }
                // Every write-side step except those two fails the install.
                if !matches!(op, Op::SyncDir | Op::Append) {
                    assert!(
                        result.is_err(),
                        "{op:?}#{nth}: a failure before the switch was not reported"
                    );
                }
                // The store works on afterwards, history intact, and watchers learn about
                // every change that happened (a lost journal line arrives with the next write).
                let third = pairs[0].bundle(3);
                let next =
                    block_on(store.install(&Target::System, &third, &Condition::none())).unwrap();
                let history = block_on(store.history(&Target::System)).unwrap();
                assert_eq!(
                    history[0].bundle,
                    if result.is_ok() {
                        new.clone_bundle()
                    } else {
                        old.clone_bundle()
                    }
                );
                let mut seen = Vec::new();
                while let Some(change) = watch.recv_timeout(Duration::from_secs(2)) {
                    let change = change.unwrap();
                    seen.push(change.revision);
                    if change.revision == next.revision {
                        break;
                    }
                }
                assert_eq!(seen.last(), Some(&next.revision), "{op:?}#{nth}: {seen:?}");
                if let Ok(installed) = &result {
                    assert!(
                        seen.contains(&installed.revision),
                        "{op:?}#{nth}: the install was never announced"
                    );
                }
                assert!(seen.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
    println!("fault injection: {scenario} scenarios, {refused} refused with the previous version current, {after_switch} after the switch (new version current, install reported done)");
    assert!(refused > 0 && after_switch > 0);
}

#[test]
fn a_full_disk_on_a_record_write_keeps_the_old_value() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = open_faulty(tmp.path());
    let key = RecordKey::new("acme/account").unwrap();
    let rev = block_on(store.put(&key, b"old credentials", &Condition::none())).unwrap();
    for nth in 0..2 {
        fs.arm(Op::Write, nth, Failure::DiskFull);
        let err = block_on(store.put(&key, b"new credentials", &Condition::none())).unwrap_err();
        fs.disarm();
        assert!(
            matches!(err, StoreError::Io { kind, .. } if kind == io::ErrorKind::StorageFull),
            "{err:?}"
        );
        let got = block_on(store.get(&key)).unwrap().unwrap();
        assert_eq!(
            (got.revision, got.secret_value()),
            (rev, &b"old credentials"[..])
        );
    }
}

#[test]
fn hostile_names_are_refused_before_touching_a_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let _store = DirStore::open(&root).unwrap();
    let before = tree(tmp.path());
    let long_label = "a".repeat(300);
    for hostile in [
        "domain:../../etc",
        "domain:..",
        "domain:a/b",
        "domain:a\0b",
        "domain:a..b",
        "domain:",
        "domain:.",
        &format!("domain:{long_label}.test"),
        "domain:a\\b",
        "domain:%2e%2e",
        "../../etc",
    ] {
        let err = hostile.parse::<Target>().unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    for hostile in [
        "../etc",
        "a/../../b",
        "a//b",
        "/abs",
        "a\0b",
        ".hidden",
        &long_label,
    ] {
        assert!(RecordKey::new(hostile).is_err(), "{hostile:?} accepted");
    }
    assert_eq!(tree(tmp.path()), before, "a refused name created a file");
    // Internationalized names are stored as lower-case A-labels.
    let store = DirStore::open(&root).unwrap();
    let target: Target = "domain:Bücher.Example.TEST".parse().unwrap();
    let pair = Pair::generate("xn--bcher-kva.example.test");
    block_on(store.install(&target, &pair.bundle(1), &Condition::none())).unwrap();
    assert!(root
        .join("domains/xn--bcher-kva.example.test/state.json")
        .is_file());
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(entry.path().display().to_string());
        if entry.path().is_dir() {
            out.extend(tree(&entry.path()));
        }
    }
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_are_private_and_open_repairs_loose_permissions_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = DirStore::open(&root).unwrap();
    let pair = Pair::generate("a.example.test");
    block_on(store.install(&Target::System, &pair.bundle(1), &Condition::none())).unwrap();
    let account = RecordKey::new("acme/account").unwrap();
    block_on(store.put(&account, b"creds", &Condition::none())).unwrap();
    let key = root.join("targets/system/v000000001/key.pem");
    let record = root.join("records/acme+/account");
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&record), 0o600);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let logs = LogCapture::default();
    tracing::subscriber::with_default(logs.subscriber(), || {
        DirStore::open(&root).unwrap();
    });
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&record), 0o600);
    assert_eq!(mode(&root), 0o700);
    let text = logs.text();
    assert_eq!(text.matches("permissions repaired").count(), 3, "{text}");
    assert!(text.contains("WARN") && text.contains("key.pem"), "{text}");
}

#[test]
fn a_private_key_never_appears_in_debug_display_errors_or_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let pair = Pair::generate("a.example.test");
    let bundle = pair.bundle(1);
    let pem_body: String = {
        let pem = bundle.secret_key().secret_pem();
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    };
    let needles = [
        hex::encode(&pair.key_der),
        pem_body.clone(),
        pem_body[10..50].to_owned(),
        format!("{:?}", &pair.key_der[..16]),
    ];
    let logs = LogCapture::default();
    let mut outputs = Vec::new();
    tracing::subscriber::with_default(logs.subscriber(), || {
        let store = DirStore::open(&root).unwrap();
        let installed =
            block_on(store.install(&Target::System, &bundle, &Condition::none())).unwrap();
        outputs.push(format!("{installed:?}"));
        outputs.push(format!("{bundle:?}"));
        outputs.push(format!("{:?}", bundle.secret_key()));
        let current = block_on(store.current(&Target::System)).unwrap();
        outputs.push(format!("{current:?}"));
        outputs.push(format!("{:?}", block_on(store.list()).unwrap()));
        outputs.push(format!(
            "{:?}",
            block_on(store.history(&Target::System)).unwrap()
        ));
        // Errors around the key: a lost compare-and-swap, a damaged key file, a record.
        let err =
            block_on(store.install(&Target::System, &bundle, &Condition::absent())).unwrap_err();
        outputs.push(format!("{err} {err:?}"));
        let account = RecordKey::new("acme/account").unwrap();
        block_on(store.put(&account, &pair.key_der, &Condition::none())).unwrap();
        outputs.push(format!("{:?}", block_on(store.get(&account)).unwrap()));
        let key_file = root.join("targets/system/v000000001/key.pem");
        let original = std::fs::read_to_string(&key_file).unwrap();
        std::fs::write(&key_file, original.replace("PRIVATE KEY", "SECRET THING")).unwrap();
        let err = block_on(store.current(&Target::System)).unwrap_err();
        outputs.push(format!("{err} {err:?}"));
        std::fs::write(&key_file, &original[..original.len() / 2]).unwrap();
        let err = block_on(store.current(&Target::System)).unwrap_err();
        outputs.push(format!("{err} {err:?}"));
    });
    outputs.push(logs.text());
    assert!(
        logs.text().contains("installed a certificate"),
        "logging was captured"
    );
    for output in &outputs {
        for needle in &needles {
            assert!(
                !output.contains(needle.as_str()),
                "key material leaked into: {output}"
            );
        }
    }
}

#[test]
fn a_watch_far_behind_a_compacted_journal_is_told_to_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let options = DirStoreOptions {
        journal_max_bytes: 8 * 1024,
        ..DirStoreOptions::default()
    };
    let store = DirStore::open_with(tmp.path().join("store"), options).unwrap();
    let key = RecordKey::new("renewal/system").unwrap();
    let mut last = Revision::ZERO;
    // About 70 bytes a line: 300 changes pass the 8 KiB mark at least twice.
    for i in 0..300u32 {
        last = block_on(store.put(&key, &i.to_be_bytes(), &Condition::none())).unwrap();
    }
    let mut stale = block_on(store.watch(Revision(5))).unwrap();
    match stale.recv_timeout(Duration::from_secs(2)) {
        Some(Err(StoreError::Compacted { requested, oldest })) => {
            assert_eq!(requested, Revision(5));
            assert!(oldest > requested && oldest < last);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // A recent revision still resumes.
    let mut recent = block_on(store.watch(Revision(last.0 - 3))).unwrap();
    let revisions: Vec<u64> = (0..3)
        .map(|_| {
            recent
                .recv_timeout(Duration::from_secs(2))
                .unwrap()
                .unwrap()
                .revision
                .0
        })
        .collect();
    assert_eq!(revisions, [last.0 - 2, last.0 - 1, last.0]);
}

fn write_damaged_store(root: &Path, parts: &[Vec<u8>; 6]) {
    let target_dir = root.join("targets/system");
    let version = target_dir.join("v000000001");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::create_dir_all(root.join("records")).unwrap();
    let files = [
        target_dir.join("state.json"),
        version.join("cert.pem"),
        version.join("key.pem"),
        version.join("meta.json"),
        root.join("journal"),
        root.join("records/account"),
    ];
    for (file, bytes) in files.iter().zip(parts) {
        std::fs::write(file, bytes).unwrap();
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// The `store_files` fuzz target's property on stable: damaged files give values or
    /// typed errors, never a panic, and a damaged key file's bytes are not echoed.
    #[test]
    fn damaged_store_files_never_panic(
        parts in proptest::array::uniform6(proptest::collection::vec(proptest::num::u8::ANY, 0..200)),
        valid_state in proptest::bool::ANY,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        let mut parts = parts;
        if valid_state {
            parts[0] = br#"{"current":1,"revision":1,"versions":[{"version":1,"revision":1}],"next_version":2}"#.to_vec();
        }
        write_damaged_store(&root, &parts);
        if let Ok(store) = DirStore::open(&root) {
            for result in [
                block_on(store.current(&Target::System)).map(|_| ()),
                block_on(store.history(&Target::System)).map(|_| ()),
                block_on(store.list()).map(|_| ()),
                block_on(store.revision()).map(|_| ()),
                block_on(store.get(&RecordKey::new("account").unwrap())).map(|_| ()),
            ] {
                if let Err(e) = result {
                    let text = e.to_string();
                    proptest::prop_assert!(!text.is_empty());
                    if parts[2].len() > 16 {
                        let key_text = String::from_utf8_lossy(&parts[2]).into_owned();
                        proptest::prop_assert!(!text.contains(key_text.as_str()));
                    }
                }
            }
        }
    }

    /// Record values round-trip whatever their bytes.
    #[test]
    fn record_values_round_trip(value in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::open(tmp.path().join("store")).unwrap();
        let key = RecordKey::new("acme/http01/token").unwrap();
        let rev = block_on(store.put(&key, &value, &Condition::none())).unwrap();
        let got = block_on(store.get(&key)).unwrap().unwrap();
        proptest::prop_assert_eq!(got.revision, rev);
        proptest::prop_assert_eq!(got.secret_value(), value.as_slice());
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn disable_deletes_every_file_holding_the_targets_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    let target: Target = "domain:acme.test".parse().unwrap();
    let pairs: Vec<Pair> = (0..5)
        .map(|_| Pair::generate("webmail.acme.test"))
        .collect();
    for (i, pair) in pairs.iter().enumerate() {
        block_on(store.install(&target, &pair.bundle(i as i64), &Condition::none())).unwrap();
    }
    // The PEM body of each key as the store writes it (the last four are kept).
    let pem_bodies: Vec<String> = pairs
        .iter()
        .map(|p| {
            let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", p.key_der.clone()));
            pem.lines().nth(1).unwrap().to_owned()
        })
        .collect();
    let holding = |body: &str| {
        files_under(dir.path())
            .into_iter()
            .filter(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).contains(body))
            .count()
    };
    assert_eq!(holding(&pem_bodies[4]), 1, "the check sees the stored key");

    assert!(block_on(store.disable(&target, &Condition::none()))
        .unwrap()
        .is_some());
    for body in &pem_bodies {
        assert_eq!(holding(body), 0, "a private key is still in the store");
    }
    assert!(block_on(store.history(&target)).unwrap().is_empty());
    assert!(matches!(
        block_on(store.rollback(&target, &Condition::none())),
        Err(StoreError::NoPreviousVersion { .. })
    ));
}
