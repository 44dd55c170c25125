//! `bmcert::deploy`: certbot's four files written as one set, only when the certificate
//! changed, removed when the target has none; a failed step leaves the previous set in
//! place; a reader never sees a mix of two sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bmcert::deploy::{DeployTarget, Deployed};
use bmcert::store::fs_ops::{FsOps, RealFs};
use bmcert::store::Installed;
use bmcert::{block_on, CertManager, Target, Topology};
use bmcert_test::fixtures::ChainSpec;
use rustls_pki_types::UnixTime;

/// Two successive system certificates of one store, as the store returns them.
fn two_bundles(dir: &Path) -> (Installed, Installed) {
    let topology =
        Topology::from_toml_str("[system]\nurl = \"https://mail.example.test\"\n").unwrap();
    let manager = CertManager::open_dir(&dir.join("store"), topology).unwrap();
    let mut out = Vec::new();
    for _ in 0..2 {
        let chain = ChainSpec::new(&["mail.example.test"]).build();
        let outcome = block_on(manager.install_files(
            &Target::System,
            chain.leaf.cert_pem.as_bytes(),
            chain.leaf.key_pem.as_bytes(),
            Some(chain.ca_pem().as_bytes()),
            UnixTime::now(),
        ))
        .unwrap();
        assert!(outcome.is_installed());
        out.push(
            block_on(manager.store().current(&Target::System))
                .unwrap()
                .unwrap(),
        );
    }
    let b = out.pop().unwrap();
    (out.pop().unwrap(), b)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn writes_once_keeps_unchanged_and_removes_when_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_bundles(dir.path());
    let t = DeployTarget::new(Target::System, dir.path().join("deploy/system"));
    assert!(matches!(
        t.sync(Some(&a)).unwrap(),
        Deployed::Written { .. }
    ));
    assert_eq!(read(&t.path("fullchain.pem")), a.bundle.chain_pem());
    assert_eq!(
        read(&t.path("privkey.pem")),
        *a.bundle.secret_key().secret_pem()
    );
    let blocks = |text: String| text.replace("\n\n", "\n");
    assert_eq!(
        blocks(read(&t.path("fullchain.pem"))),
        blocks(read(&t.path("cert.pem")) + &read(&t.path("chain.pem"))),
        "fullchain.pem is cert.pem then chain.pem"
    );
    assert!(t.is_current(Some(&a.bundle.meta().fingerprint)));
    // The same certificate again (a restart): nothing written.
    assert_eq!(t.sync(Some(&a)).unwrap(), Deployed::Unchanged);
    assert!(matches!(
        t.sync(Some(&b)).unwrap(),
        Deployed::Written { .. }
    ));
    assert!(t.is_current(Some(&b.bundle.meta().fingerprint)));
    assert!(!t.is_current(Some(&a.bundle.meta().fingerprint)));
    // A file removed by hand is put back at the next sync.
    std::fs::remove_file(t.path("chain.pem")).unwrap();
    assert!(!t.is_current(Some(&b.bundle.meta().fingerprint)));
    assert!(matches!(
        t.sync(Some(&b)).unwrap(),
        Deployed::Written { .. }
    ));
    // Disabled: every file goes; once gone, nothing to do.
    assert_eq!(t.sync(None).unwrap(), Deployed::Removed);
    for f in bmcert::deploy::FILES {
        assert!(std::fs::symlink_metadata(t.path(f)).is_err(), "{f} removed");
    }
    assert!(!t.dir().join("live").exists() && !t.dir().join("versions").exists());
    assert!(t.is_current(None));
    assert_eq!(t.sync(None).unwrap(), Deployed::Unchanged);
}

#[test]
fn old_sets_are_pruned_to_two() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_bundles(dir.path());
    let t = DeployTarget::new(Target::System, dir.path().join("d"));
    for i in 0..6 {
        t.write(if i % 2 == 0 { &a.bundle } else { &b.bundle })
            .unwrap();
    }
    let mut sets: Vec<String> = std::fs::read_dir(t.dir().join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    sets.sort();
    assert_eq!(
        sets,
        ["4", "5", "6"],
        "the current set and the two before it"
    );
    assert_eq!(
        std::fs::read_link(t.dir().join("live")).unwrap(),
        Path::new("versions/6")
    );
}

/// The real file system, failing the rename that puts a new set into place.
#[derive(Debug)]
struct FailingRename(AtomicBool);

impl FsOps for FailingRename {
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        RealFs.write_file(path, bytes, mode)
    }
    fn append_sync(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        RealFs.append_sync(path, bytes, mode)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.0.load(Ordering::SeqCst) && from.to_string_lossy().contains(".tmp-") {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "disk full (test)",
            ));
        }
        RealFs.rename(from, to)
    }
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        RealFs.create_dir(path, mode)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_dir_all(path)
    }
}

#[test]
fn a_failed_step_leaves_the_previous_set_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_bundles(dir.path());
    let fs = Arc::new(FailingRename(AtomicBool::new(false)));
    let t = DeployTarget::new(Target::System, dir.path().join("d")).with_fs(fs.clone());
    t.sync(Some(&a)).unwrap();
    fs.0.store(true, Ordering::SeqCst);
    let e = t.sync(Some(&b)).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("disk full") && text.contains("previous files stay"),
        "{text}"
    );
    assert!(t.is_current(Some(&a.bundle.meta().fingerprint)));
    let leftovers: Vec<_> = std::fs::read_dir(t.dir().join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["1"], "no half-written set left behind");
    fs.0.store(false, Ordering::SeqCst);
    assert!(matches!(
        t.sync(Some(&b)).unwrap(),
        Deployed::Written { .. }
    ));
    assert!(t.is_current(Some(&b.bundle.meta().fingerprint)));
}

/// While sets are switched as fast as possible, a reader that resolves `live` once and
/// reads the certificate and the key from there always gets a matching pair, and a reader
/// of `fullchain.pem` always gets one whole chain.
#[test]
fn readers_never_see_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_bundles(dir.path());
    let t = DeployTarget::new(Target::System, dir.path().join("d"));
    t.write(&a.bundle).unwrap();
    let pairs = [
        (
            a.bundle.chain_pem(),
            a.bundle.secret_key().secret_pem().to_string(),
        ),
        (
            b.bundle.chain_pem(),
            b.bundle.secret_key().secret_pem().to_string(),
        ),
    ];
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, d, pairs) = (done.clone(), t.dir().to_owned(), pairs.clone());
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !done.load(Ordering::SeqCst) {
                let full = read(&d.join("fullchain.pem"));
                assert!(pairs.iter().any(|(f, _)| *f == full), "a whole chain");
                // `live` resolved once: the set stays (two older sets are kept).
                let Ok(set) = std::fs::canonicalize(d.join("live")) else {
                    continue;
                };
                let (Ok(chain), Ok(key)) = (
                    std::fs::read_to_string(set.join("fullchain.pem")),
                    std::fs::read_to_string(set.join("privkey.pem")),
                ) else {
                    continue; // pruned meanwhile: absent, never mixed
                };
                assert!(pairs.contains(&(chain, key)), "a matching pair");
                reads += 1;
            }
            reads
        })
    };
    for i in 0..200 {
        t.write(if i % 2 == 0 { &b.bundle } else { &a.bundle })
            .unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();
    assert!(reads > 0, "the reader read pairs while sets were switched");
}
