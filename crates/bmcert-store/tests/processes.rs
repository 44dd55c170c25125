//! The directory store across real processes: SIGKILL at random instants during installs,
//! two processes installing concurrently, and a change made by another process reaching a
//! watcher.
//!
//! The child processes are this test binary itself, re-run with `--exact NAME` and
//! `BMCERT_CHILD_ROLE` set: the same test function then plays the child's part.
// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bmcert_store::{block_on, ChangeKey, Condition, DirStore, Revision, Store};
use bmcert_topology::Target;
use common::{key_matches_certificate, Pair};

const ROLE: &str = "BMCERT_CHILD_ROLE";
const DIR: &str = "BMCERT_CHILD_DIR";
const COUNT: &str = "BMCERT_CHILD_COUNT";
const TAG: &str = "BMCERT_CHILD_TAG";

/// A child never outlives this, even if its parent died.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

fn spawn_child(test: &str, role: &str, dir: &Path, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The first line the child marked with `@` (libtest prints its own lines too).
fn marked_line(child: &mut Child) -> (String, BufReader<std::process::ChildStdout>) {
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..20 {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(marked) = line.trim().strip_prefix('@') {
            return (marked.to_owned(), reader);
        }
    }
    (String::new(), reader)
}

fn child_role() -> Option<(String, PathBuf)> {
    let role = std::env::var(ROLE).ok()?;
    let dir = std::env::var(DIR).ok()?;
    Some((role, PathBuf::from(dir)))
}

fn read_pairs(dir: &Path) -> Vec<Pair> {
    let text = std::fs::read_to_string(dir.join("pairs.txt")).unwrap();
    text.split("\n\n")
        .filter(|t| !t.trim().is_empty())
        .map(Pair::from_text)
        .collect()
}

fn write_pairs(dir: &Path, pairs: &[Pair]) {
    let text: Vec<String> = pairs.iter().map(Pair::to_text).collect();
    std::fs::write(dir.join("pairs.txt"), text.join("\n")).unwrap();
}

/// Child: installs alternating bundles into the system target until killed.
fn crash_child(dir: &Path) {
    let pairs = read_pairs(dir);
    let store = DirStore::open(dir.join("store")).unwrap();
    // Prove both pairs before the parent starts its kill timer (a bundle's proof is
    // remembered by its bytes, so the installs below cost what they did without it).
    drop((pairs[0].bundle(0), pairs[1].bundle(0)));
    println!("@ready");
    std::io::stdout().flush().unwrap();
    let started = Instant::now();
    let mut i: i64 = 0;
    while started.elapsed() < CHILD_LIFETIME {
        let bundle = pairs[(i % 2) as usize].bundle(1_700_000_000 + i);
        block_on(store.install(&Target::System, &bundle, &Condition::none())).unwrap();
        i += 1;
    }
}

struct XorShift(u64);

impl XorShift {
    fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Self(nanos | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Leftovers of an interrupted install, seen before a reader opens the store: temporary
/// version directories, version directories the state does not list, a temporary state
/// file, or a revision handed out without its journal line. `None` when there are none.
fn interrupted_install_evidence(store_dir: &Path) -> Option<String> {
    let target = store_dir.join("targets/system");
    let entries = std::fs::read_dir(&target).ok()?;
    let state = std::fs::read_to_string(target.join("state.json")).unwrap_or_default();
    let mut evidence = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name == ".state.json.tmp" {
            evidence.push(name);
        } else if let Some(number) = name.strip_prefix('v') {
            let number: u64 = number.parse().unwrap();
            if !state.contains(&format!("\"version\": {number}")) {
                evidence.push(name);
            }
        }
    }
    let intent = std::fs::read_to_string(store_dir.join("revision")).unwrap_or_default();
    let journal = std::fs::read_to_string(store_dir.join("journal")).unwrap_or_default();
    let last_line = journal.lines().last().unwrap_or("");
    if !intent.is_empty() && intent.trim() != last_line.trim() {
        evidence.push(format!("unjournaled {}", intent.trim()));
    }
    evidence.sort();
    (!evidence.is_empty()).then(|| evidence.join(" "))
}

#[test]
fn crash_safety_under_sigkill() {
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "crash");
        crash_child(&dir);
        return;
    }
    const KILLS: usize = 500;
    let tmp = tempfile::tempdir().unwrap();
    let pairs = vec![
        Pair::generate("a.example.test"),
        Pair::generate("b.example.test"),
    ];
    write_pairs(tmp.path(), &pairs);
    let store_dir = tmp.path().join("store");
    // Kill instants spread over about three installs, however fast the disk is.
    let scratch = DirStore::open(tmp.path().join("calibration")).unwrap();
    let calibration = Instant::now();
    for i in 0..5 {
        let bundle = pairs[i % 2].bundle(1);
        block_on(scratch.install(&Target::System, &bundle, &Condition::none())).unwrap();
    }
    let window = (calibration.elapsed() * 3 / 5)
        .as_micros()
        .clamp(1_000, 60_000) as u64;
    let mut rng = XorShift::seeded();
    let mut last_version = 0;
    let mut mid_write = 0;
    let mut previous_evidence = None;
    let mut versions_seen = BTreeSet::new();
    for kill in 0..KILLS {
        let mut child = spawn_child("crash_safety_under_sigkill", "crash", tmp.path(), &[]);
        let (line, _stdout) = marked_line(&mut child);
        assert_eq!(line, "ready", "child did not start");
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // Leftovers stay until the next install cleans them: count each state once.
        let evidence = interrupted_install_evidence(&store_dir);
        if evidence.is_some() && evidence != previous_evidence {
            mid_write += 1;
        }
        previous_evidence = evidence;
        let store = DirStore::open(&store_dir).unwrap();
        let current = block_on(store.current(&Target::System)).unwrap();
        let Some(current) = current else {
            assert_eq!(
                last_version, 0,
                "kill {kill}: the installed certificate disappeared"
            );
            continue;
        };
        assert!(
            key_matches_certificate(&current.bundle, &pairs),
            "kill {kill}: the current key does not belong to the current certificate"
        );
        // The version was written by the child: installed_at encodes its loop index, whose
        // parity says which pair it installed.
        let index = current.bundle.meta().installed_at.unix_timestamp() - 1_700_000_000;
        assert!(index >= 0);
        assert_eq!(
            current.bundle.leaf().as_ref(),
            pairs[(index % 2) as usize].cert_der
        );
        assert!(
            current.version >= last_version,
            "kill {kill}: went back in time"
        );
        last_version = current.version;
        versions_seen.insert(current.version);
        for old in block_on(store.history(&Target::System)).unwrap() {
            assert!(
                key_matches_certificate(&old.bundle, &pairs),
                "kill {kill}: bad history entry"
            );
            assert!(old.version < current.version || old.revision < current.revision);
        }
        // The revision counter never goes back either.
        assert!(block_on(store.revision()).unwrap() >= current.revision);
    }
    println!(
        "crash safety: {KILLS} SIGKILLs, {mid_write} interrupted an install mid-write, \
         {} distinct versions observed, last version {last_version} (kill window {window} µs); \
         every time the key matched the certificate",
        versions_seen.len()
    );
    assert!(last_version > 0, "the child never completed an install");
    // The test proves something only if the kills land inside installs.
    assert!(
        mid_write >= KILLS / 10,
        "only {mid_write} of {KILLS} kills interrupted an install mid-write: the kill window \
         ({window} µs) missed the writes"
    );
}

/// Child: installs `COUNT` bundles, printing `version revision installed_at` for each.
fn concurrent_child(dir: &Path) {
    let pairs = read_pairs(dir);
    let count: i64 = std::env::var(COUNT).unwrap().parse().unwrap();
    let tag: i64 = std::env::var(TAG).unwrap().parse().unwrap();
    let store = DirStore::open(dir.join("store")).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let stamp = 1_700_000_000 + tag * 100_000 + i;
        let bundle = pairs[(i % 2) as usize].bundle(stamp);
        let installed =
            block_on(store.install(&Target::System, &bundle, &Condition::none())).unwrap();
        let committed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        writeln!(
            out,
            "@{} {} {stamp} {committed}",
            installed.version, installed.revision.0
        )
        .unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn two_processes_install_200_times_each() {
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "concurrent");
        concurrent_child(&dir);
        return;
    }
    const EACH: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let pairs = vec![
        Pair::generate("a.example.test"),
        Pair::generate("b.example.test"),
    ];
    write_pairs(tmp.path(), &pairs);
    let store = DirStore::open(tmp.path().join("store")).unwrap();
    let mut watch = block_on(store.watch(Revision::ZERO)).unwrap();

    let children: Vec<Child> = (0..2)
        .map(|tag| {
            spawn_child(
                "two_processes_install_200_times_each",
                "concurrent",
                tmp.path(),
                &[(COUNT, EACH.to_string()), (TAG, tag.to_string())],
            )
        })
        .collect();
    // version -> (revision, stamp)
    let mut installs: BTreeMap<u64, (u64, i64)> = BTreeMap::new();
    for mut child in children {
        let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
        assert!(child.wait().unwrap().success());
        let mut lines = 0;
        for line in out.lines().filter_map(|l| l.strip_prefix('@')) {
            let f: Vec<&str> = line.split(' ').collect();
            let prev = installs.insert(
                f[0].parse().unwrap(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            );
            assert!(prev.is_none(), "version {} handed out twice", f[0]);
            lines += 1;
        }
        assert_eq!(lines, EACH, "a child did not finish its installs");
    }
    let total = (2 * EACH) as u64;
    assert_eq!(
        installs.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let revisions: BTreeSet<u64> = installs.values().map(|v| v.0).collect();
    assert_eq!(revisions.len(), 2 * EACH, "revisions are unique");
    // Versions and revisions are ordered the same way: installs were serialized.
    let by_version: Vec<u64> = installs.values().map(|v| v.0).collect();
    assert!(by_version.windows(2).all(|w| w[0] < w[1]));

    let current = block_on(store.current(&Target::System)).unwrap().unwrap();
    assert_eq!(current.version, total);
    assert_eq!(
        current.bundle.meta().installed_at.unix_timestamp(),
        installs[&total].1
    );
    assert!(key_matches_certificate(&current.bundle, &pairs));
    let history = block_on(store.history(&Target::System)).unwrap();
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        [total - 1, total - 2, total - 3]
    );
    for h in &history {
        assert_eq!(
            h.bundle.meta().installed_at.unix_timestamp(),
            installs[&h.version].1
        );
        assert_eq!(h.revision.0, installs[&h.version].0);
        assert!(key_matches_certificate(&h.bundle, &pairs));
    }
    // The change feed saw every install, once, in revision order.
    let mut seen = Vec::new();
    while seen.len() < 2 * EACH {
        let change = watch
            .recv_timeout(Duration::from_secs(5))
            .expect("the watch delivers every install")
            .unwrap();
        assert_eq!(change.key, ChangeKey::Bundle(Target::System));
        seen.push(change.revision.0);
    }
    assert_eq!(seen, by_version);
}

#[test]
fn watch_sees_another_process_within_one_second() {
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "concurrent");
        concurrent_child(&dir);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    write_pairs(
        tmp.path(),
        &[
            Pair::generate("a.example.test"),
            Pair::generate("b.example.test"),
        ],
    );
    let store = DirStore::open(tmp.path().join("store")).unwrap();
    let start = block_on(store.revision()).unwrap();
    let mut watch = block_on(store.watch(start)).unwrap();
    let mut child = spawn_child(
        "watch_sees_another_process_within_one_second",
        "concurrent",
        tmp.path(),
        &[(COUNT, "1".into()), (TAG, "0".into())],
    );
    // The child prints the wall-clock time right after its install returned.
    let (line, mut stdout) = marked_line(&mut child);
    let change = watch
        .recv_timeout(Duration::from_secs(1))
        .expect("a change by another process arrives within one second")
        .unwrap();
    // An upper bound: the change may have been queued before this thread looked.
    let seen = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let committed: u128 = line.split(' ').nth(3).unwrap().parse().unwrap();
    let latency = Duration::from_nanos((seen.saturating_sub(committed)) as u64);
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    std::io::copy(&mut stdout, &mut std::io::sink()).unwrap();
    assert!(child.wait().unwrap().success());
    let revision: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(change.revision, Revision(revision));
    assert_eq!(change.key, ChangeKey::Bundle(Target::System));
    println!("a change by another process reached the watch at most {latency:?} after its install returned");
}
