//! The directory backend.
//!
//! Layout under the root (mode 0700):
//!
//! ```text
//! .lock                    advisory lock (flock) serializing writers of all processes
//! revision                 the last revision handed out, with its change (write-ahead intent)
//! journal                  the change feed: one JSON line per change, compacted past 2048
//! targets/system/          the system target
//! domains/NAME/            a domain target (NAME is a validated DomainName: no `/`, `..`)
//!     state.json           which version is current, which are kept (the switch point)
//!     v000000001/          one installed version: cert.pem, key.pem (0600), meta.json
//! records/a+/b             record `a/b` (segments: letters, digits, `-_.`; dirs get `+`)
//! locks/renewal            lock `renewal` (JSON: holder, token, expiry)
//! ```
//!
//! Damage: every version read is proven whole ([`Bundle::verified`]); a target whose
//! `state.json` or current version is damaged is reported [`Damaged`] alone, and its next
//! install or disable rebuilds its state from the version directories on disk (keeping
//! them, and never reusing a version number). A damaged `journal` is rebuilt from its
//! readable lines (watchers further behind are told `Compacted`), a damaged `revision`
//! file from the highest revision found in the store. Entries the layout does not name
//! (a file under `domains/`, a directory that is not a version) are ignored with a
//! warning.
//!
//! An install, under the advisory lock: write the new version in a temporary directory,
//! fsync every file and the directory, rename it to `vN`, fsync the parent; write the new
//! revision number (write-ahead, so a crash can never hand out a revision twice); write
//! `state.json.tmp`, fsync it, rename it over `state.json` (the one atomic switch), fsync
//! the directory; append the change to the journal. A crash before the rename of
//! `state.json` leaves the old state, whole; after it, the new one. A change whose journal
//! line was lost in a crash is appended by the next writer (from the write-ahead revision),
//! so watchers are told.

mod watch;

use core::fmt;
use core::time::Duration;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bmcert_topology::{DomainName, Target};
use fs4::fs_std::FileExt;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::fs_ops::{FsOps, RealFs};
use crate::store::{Store, StoreFuture};
use crate::types::{
    Bundle, BundleMeta, Change, ChangeKey, ChangeKind, Condition, Expect, Fence, Installed,
    KeyFormat, Lease, Listed, Record, RecordKey, Revision, SecretKey,
};
use crate::verify::{Damage, Damaged, Part};
use crate::watch::Watch;
use crate::HISTORY_DEPTH;

const DIR_MODE: u32 = 0o700;
const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;
/// The journal is rewritten with its newest half once it is larger than
/// [`DirStoreOptions::journal_max_bytes`] (a watcher further behind gets `Compacted`).
const JOURNAL_MAX_BYTES: u64 = 192 * 1024;
/// How often a reader retries when a writer pruned the version it was reading.
const READ_RETRIES: usize = 8;

/// How to open a [`DirStore`]: the file-system seam and the clock, both replaceable in tests.
#[derive(Clone)]
pub struct DirStoreOptions {
    /// Where writes go ([`RealFs`] by default).
    pub fs: Arc<dyn FsOps>,
    /// The clock for lock expiry (the system clock by default).
    pub clock: Arc<dyn Clock>,
    /// The journal size (bytes) past which it is compacted to its newest half: 192 KiB by
    /// default, so a watcher can fall between about 1,300 and 2,700 changes behind and
    /// still resume.
    pub journal_max_bytes: u64,
}

impl Default for DirStoreOptions {
    fn default() -> Self {
        Self {
            fs: Arc::new(RealFs),
            clock: Arc::new(SystemClock),
            journal_max_bytes: JOURNAL_MAX_BYTES,
        }
    }
}

impl fmt::Debug for DirStoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirStoreOptions")
            .field("fs", &self.fs)
            .finish_non_exhaustive()
    }
}

/// The embedded default [`Store`]: one directory on the local file system.
///
/// - **Crash-safe installs.** A new version is written completely in a temporary directory,
///   every file and the directory are fsynced, and one `rename` of the target's `state.json`
///   switches to it: a crash at any instant leaves the old or the new version, whole.
/// - **Several processes.** Writers of all processes are serialized by an advisory `flock`
///   on `.lock`; readers never lock.
/// - **Permissions.** The directory is 0700, keys and records 0600; wider modes found on
///   open are repaired with a warning.
/// - **Names.** Targets are [`Target`]s, whose domain names are validated `DomainName`s
///   (A-labels, no `/`, `..` or NUL), so no caller-supplied text reaches a path unchecked.
/// - **Watch.** Through inotify (the `notify` crate) on the journal: changes of other
///   processes arrive within milliseconds.
///
/// The methods do their (blocking, short) file I/O when called and return a ready future:
/// drive them with [`block_on`](crate::block_on) or await them (from an async runtime,
/// prefer a blocking-capable thread for bulk work such as `list` over many targets).
/// The layout and protocol are described in `docs/store.md`.
#[derive(Clone)]
pub struct DirStore {
    root: PathBuf,
    fs: Arc<dyn FsOps>,
    clock: Arc<dyn Clock>,
    journal_max_bytes: u64,
}

impl fmt::Debug for DirStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct TargetState {
    /// The current version, `None` when disabled (or never installed).
    current: Option<u64>,
    /// The revision at which `current` became current.
    revision: u64,
    /// The kept versions (including the current one) with the revision of their install.
    versions: Vec<Kept>,
    /// The version number of the next install.
    next_version: u64,
}

impl TargetState {
    /// What makes the state unusable, if anything: it must name its current version among
    /// the kept ones, once each, all below `next_version`.
    fn inconsistency(&self) -> Option<String> {
        let mut seen = std::collections::BTreeSet::new();
        for kept in &self.versions {
            if !seen.insert(kept.version) {
                return Some(format!("version {} is listed twice", kept.version));
            }
            if kept.version >= self.next_version {
                return Some(format!(
                    "version {} is not below the next version number {}",
                    kept.version, self.next_version
                ));
            }
        }
        match self.current {
            Some(c) if !seen.contains(&c) => Some(format!(
                "the current version {c} is not among the kept versions"
            )),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Kept {
    version: u64,
    revision: u64,
}

/// `meta.json`: the bundle's metadata and the digest of its chain
/// ([`Bundle::chain_digest`]; absent in versions written before it was recorded).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct StoredMeta {
    #[serde(flatten)]
    meta: BundleMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain_sha256: Option<crate::types::Fingerprint>,
}

/// One journal line (also the write-ahead content of `revision`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Entry {
    revision: u64,
    key: String,
    kind: EntryKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum EntryKind {
    Put,
    Delete,
}

impl Entry {
    fn new(revision: Revision, key: &ChangeKey, kind: ChangeKind) -> Self {
        Self {
            revision: revision.0,
            key: key.to_string(),
            kind: match kind {
                ChangeKind::Delete => EntryKind::Delete,
                _ => EntryKind::Put,
            },
        }
    }

    fn to_change(&self) -> Option<Change> {
        let key = if let Some(t) = self.key.strip_prefix("bundle:") {
            ChangeKey::Bundle(t.parse().ok()?)
        } else if let Some(k) = self.key.strip_prefix("record:") {
            ChangeKey::Record(RecordKey::new(k).ok()?)
        } else if let Some(k) = self.key.strip_prefix("lock:") {
            ChangeKey::Lock(RecordKey::new(k).ok()?)
        } else {
            return None;
        };
        Some(Change {
            revision: Revision(self.revision),
            key,
            kind: match self.kind {
                EntryKind::Put => ChangeKind::Put,
                EntryKind::Delete => ChangeKind::Delete,
            },
        })
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct LockFile {
    holder: String,
    token: u64,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// The journal as read from disk.
struct Journal {
    entries: Vec<Entry>,
    /// Length of the well-formed prefix (a crash can leave a partial last line).
    valid_len: u64,
    total_len: u64,
}

impl DirStore {
    /// Opens (creating if needed) the store in directory `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(root, DirStoreOptions::default())
    }

    /// Opens the store with a custom file-system seam or clock.
    ///
    /// Creates the directory with mode 0700. A store directory or key file readable by
    /// others is repaired (0700 / 0600) with a warning in the log.
    pub fn open_with(
        root: impl Into<PathBuf>,
        options: DirStoreOptions,
    ) -> Result<Self, StoreError> {
        let root = root.into();
        let store = Self {
            root,
            fs: options.fs,
            clock: options.clock,
            journal_max_bytes: options.journal_max_bytes,
        };
        if let Some(parent) = store.root.parent() {
            if !parent.as_os_str().is_empty() && !parent.is_dir() {
                return Err(StoreError::Io {
                    action: "open the store in",
                    path: parent.to_owned(),
                    kind: io::ErrorKind::NotFound,
                    message: "the parent directory does not exist".into(),
                });
            }
        }
        match fs::metadata(&store.root) {
            Ok(meta) if !meta.is_dir() => {
                return Err(StoreError::Io {
                    action: "open the store in",
                    path: store.root.clone(),
                    kind: io::ErrorKind::InvalidInput,
                    message: "it is not a directory".into(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                store.mkdir(&store.root)?;
            }
            Err(e) => return Err(StoreError::io("open the store in", &store.root, &e)),
        }
        for sub in ["targets", "domains", "records", "locks"] {
            store.mkdir(&store.root.join(sub))?;
        }
        store.repair_permissions()?;
        // Runs crash recovery of the journal.
        drop(store.begin()?);
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn mkdir(&self, path: &Path) -> Result<(), StoreError> {
        self.fs
            .create_dir(path, DIR_MODE)
            .map_err(|e| StoreError::io("create the directory", path, &e))
    }

    fn target_dir(&self, target: &Target) -> PathBuf {
        match target {
            Target::System => self.root.join("targets").join("system"),
            // A DomainName is letters, digits, hyphens and dots with no empty label: it cannot
            // be `..`, contain `/` or NUL, or exceed 253 bytes, so it is a safe file name.
            Target::Domain(name) => self.root.join("domains").join(name.as_str()),
        }
    }

    fn key_path(&self, area: &str, key: &RecordKey) -> PathBuf {
        let mut path = self.root.join(area);
        let mut segments = key.as_str().split('/').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_some() {
                // `+` cannot occur in a key segment, so a directory never collides with a
                // record of the same name.
                path.push(format!("{segment}+"));
            } else {
                path.push(segment);
            }
        }
        path
    }

    // ----- permissions --------------------------------------------------------------------

    fn repair_permissions(&self) -> Result<(), StoreError> {
        repair_mode(&self.root, DIR_MODE)?;
        let mut target_dirs = vec![self.root.join("targets").join("system")];
        if let Ok(domains) = fs::read_dir(self.root.join("domains")) {
            target_dirs.extend(domains.flatten().map(|e| e.path()));
        }
        for dir in target_dirs {
            let Ok(versions) = fs::read_dir(&dir) else {
                continue;
            };
            for version in versions.flatten() {
                let key = version.path().join("key.pem");
                if key.exists() {
                    repair_mode(&key, SECRET_MODE)?;
                }
            }
        }
        for area in ["records", "locks"] {
            repair_tree(&self.root.join(area))?;
        }
        Ok(())
    }

    // ----- the write lock and the journal ---------------------------------------------------

    fn begin(&self) -> Result<WriteGuard<'_>, StoreError> {
        let path = self.root.join(".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io("open the lock file", &path, &e))?;
        FileExt::lock_exclusive(&file).map_err(|e| StoreError::io("lock", &path, &e))?;

        let journal_path = self.root.join("journal");
        let (journal, mut rebuilt) = match read_journal_tail(&journal_path)? {
            Some(tail) => (tail, false),
            None => (read_journal(&journal_path)?, true),
        };
        if rebuilt {
            tracing::warn!(path = %journal_path.display(), kept = journal.entries.len(), "the store journal is damaged: rebuilt from its readable lines (watchers further behind reload everything)");
            let mut text = Vec::new();
            for entry in &journal.entries {
                text.extend(
                    serde_json::to_vec(entry)
                        .map_err(|e| StoreError::corrupt(&journal_path, e.to_string()))?,
                );
                text.push(b'\n');
            }
            self.replace_file(
                &self.root.join(".journal.tmp"),
                &journal_path,
                &self.root,
                &text,
                PUBLIC_MODE,
            )?;
        } else if journal.valid_len < journal.total_len {
            tracing::warn!(path = %journal_path.display(), "dropping a partial last journal line left by a crash");
            let f = OpenOptions::new()
                .write(true)
                .open(&journal_path)
                .map_err(|e| StoreError::io("repair", &journal_path, &e))?;
            f.set_len(journal.valid_len)
                .map_err(|e| StoreError::io("repair", &journal_path, &e))?;
        }
        let mut last = journal.entries.last().map_or(0, |e| e.revision);
        let journal_bytes = if rebuilt {
            fs::metadata(&journal_path).map_or(0, |m| m.len())
        } else {
            journal.valid_len
        };
        let revision_path = self.root.join("revision");
        let intent = match read_intent(&revision_path) {
            Ok(intent) => intent,
            Err(e) => {
                tracing::warn!(error = %e, "the store's revision file is damaged: the revision counter is rebuilt from the highest revision in the store");
                rebuilt = true;
                None
            }
        };
        if rebuilt {
            // Never hand out a revision twice: start above everything the store holds.
            last = last.max(self.highest_revision_on_disk());
        }
        let mut guard = WriteGuard {
            store: self,
            _file: file,
            last: Revision(last),
            journal_bytes,
        };
        if let Some(intent) = intent {
            if intent.revision > last {
                // The change was (perhaps) made but its journal line was lost: tell watchers.
                guard.append(&intent)?;
                last = intent.revision;
                guard.last = Revision(last);
            }
        }
        Ok(guard)
    }

    // ----- bundles ------------------------------------------------------------------------

    /// The state of `target` as readers see it: `None` when nothing was ever installed,
    /// [`StoreError::Damaged`] when it cannot be read or is inconsistent (or is missing
    /// while versions exist).
    fn read_state(&self, target: &Target, dir: &Path) -> Result<Option<TargetState>, StoreError> {
        let path = dir.join("state.json");
        let unreadable = |reason: String| {
            damaged(
                target,
                None,
                &path,
                Damage::Unreadable {
                    part: Part::State,
                    reason,
                },
            )
        };
        match fs::read(&path) {
            Ok(bytes) => {
                let state: TargetState =
                    serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
                match state.inconsistency() {
                    Some(reason) => Err(unreadable(reason)),
                    None => Ok(Some(state)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if versions_on_disk(dir).is_empty() {
                    Ok(None)
                } else {
                    Err(damaged(target, None, &path, Damage::Missing(Part::State)))
                }
            }
            Err(e) => Err(unreadable(e.to_string())),
        }
    }

    /// The state a write starts from: the stored one, or, when it is damaged, one rebuilt
    /// from the version directories on disk (all kept, none current, the next version
    /// number above them all), so that an install or disable repairs the target.
    fn state_for_write(&self, target: &Target, dir: &Path) -> Result<TargetState, StoreError> {
        match self.read_state(target, dir) {
            Ok(state) => Ok(state.unwrap_or_default()),
            Err(StoreError::Damaged(d)) => {
                tracing::warn!(damage = %d, "rebuilding the target's state from the versions on disk");
                Ok(rebuilt_state(dir))
            }
            Err(e) => Err(e),
        }
    }

    fn write_state(&self, dir: &Path, state: &TargetState) -> Result<(), StoreError> {
        let path = dir.join("state.json");
        let tmp = dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
        self.replace_file(&tmp, &path, dir, &bytes, PUBLIC_MODE)
    }

    /// Writes `bytes` to `tmp`, fsyncs it, renames it over `path`, fsyncs `dir`.
    fn replace_file(
        &self,
        tmp: &Path,
        path: &Path,
        dir: &Path,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), StoreError> {
        let fs = &self.fs;
        fs.write_file(tmp, bytes, mode)
            .map_err(|e| StoreError::io("write", tmp, &e))?;
        fs.sync_file(tmp)
            .map_err(|e| StoreError::io("fsync", tmp, &e))?;
        fs.rename(tmp, path)
            .map_err(|e| StoreError::io("rename into place", path, &e))?;
        // The rename is the switch: readers already see the new file. Reporting a failure now
        // would tell the caller "not written" about a value every reader sees, so a failed
        // directory fsync is only logged (the change is whole either way; a power loss at
        // this point can only bring back the previous value, also whole).
        if let Err(e) = fs.sync_dir(dir) {
            tracing::warn!(path = %dir.display(), error = %e, "could not fsync the store directory after a switch");
        }
        Ok(())
    }

    /// Reads and proves one version. A missing file is returned as [`StoreError::Io`] with
    /// `NotFound` (a writer may have pruned the version meanwhile: callers read the state
    /// again, then call it damaged, see [`missing_is_damage`]); anything else wrong is
    /// [`StoreError::Damaged`] naming the file.
    fn read_version(
        &self,
        target: &Target,
        dir: &Path,
        version: u64,
        revision: u64,
    ) -> Result<Installed, StoreError> {
        let vdir = dir.join(version_name(version));
        let damaged_at = |part: Part, damage: Damage| {
            damaged(target, Some(version), &vdir.join(file_of(part)), damage)
        };
        let read = |part: Part| -> Result<Zeroizing<Vec<u8>>, StoreError> {
            let path = vdir.join(file_of(part));
            match fs::read(&path) {
                Ok(bytes) => Ok(Zeroizing::new(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(StoreError::io("read", &path, &e))
                }
                Err(e) => Err(damaged_at(
                    part,
                    Damage::Unreadable {
                        part,
                        reason: e.to_string(),
                    },
                )),
            }
        };
        let cert_text = read(Part::Certificate)?;
        let key_text = read(Part::Key)?;
        let meta_text = read(Part::Metadata)?;
        let unreadable =
            |part: Part, reason: String| damaged_at(part, Damage::Unreadable { part, reason });

        let chain = pem::parse_many(&*cert_text)
            .map_err(|e| unreadable(Part::Certificate, e.to_string()))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect::<Vec<_>>();
        let key_pem = pem::parse(&*key_text)
            .map_err(|_| unreadable(Part::Key, "not a PEM private key".into()))?;
        let Some(format) = KeyFormat::from_pem_label(key_pem.tag()) else {
            return Err(unreadable(
                Part::Key,
                format!("unexpected PEM label `{}`", key_pem.tag()),
            ));
        };
        let key = SecretKey::new(format, key_pem.into_contents());
        let meta: StoredMeta = serde_json::from_slice(&meta_text)
            .map_err(|e| unreadable(Part::Metadata, e.to_string()))?;
        let bundle = Bundle::verified_stored(chain, key, meta.meta, meta.chain_sha256.as_ref())
            .map_err(|d| damaged_at(d.part(), d))?;
        // The store writes canonical PEM: anything else (a block cut off at the end, which
        // the PEM reader skips, text added or edited) is damage, not a shorter chain.
        if bundle.chain_pem().as_bytes() != &cert_text[..] {
            return Err(unreadable(
                Part::Certificate,
                "it is not the PEM the store wrote (truncated or edited)".into(),
            ));
        }
        if bundle.secret_key().secret_pem().as_bytes() != &key_text[..] {
            return Err(unreadable(
                Part::Key,
                "it is not the PEM the store wrote (truncated or edited)".into(),
            ));
        }
        Ok(Installed {
            target: target.clone(),
            version,
            revision: Revision(revision),
            bundle,
        })
    }

    fn current_sync(&self, target: &Target) -> Result<Option<Installed>, StoreError> {
        let dir = self.target_dir(target);
        let mut attempt = 0;
        loop {
            let Some(state) = self.read_state(target, &dir)? else {
                return Ok(None);
            };
            let Some(version) = state.current else {
                return Ok(None);
            };
            match self.read_version(target, &dir, version, state.revision) {
                // A writer pruned the version between our two reads: read the state again.
                Err(StoreError::Io { kind, .. })
                    if kind == io::ErrorKind::NotFound && attempt < READ_RETRIES =>
                {
                    attempt += 1;
                }
                other => return missing_is_damage(target, version, other).map(Some),
            }
        }
    }

    fn history_sync(&self, target: &Target) -> Result<Vec<Installed>, StoreError> {
        let dir = self.target_dir(target);
        let mut attempt = 0;
        'again: loop {
            let state = match self.read_state(target, &dir) {
                Ok(Some(state)) => state,
                Ok(None) => return Ok(Vec::new()),
                // The current version is unknown: every version still on disk is a fallback.
                Err(StoreError::Damaged(d)) => {
                    tracing::warn!(damage = %d, "history read from the versions on disk");
                    rebuilt_state(&dir)
                }
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for kept in state.versions.iter().rev() {
                if Some(kept.version) == state.current {
                    continue;
                }
                match self.read_version(target, &dir, kept.version, kept.revision) {
                    Err(StoreError::Io { kind, .. })
                        if kind == io::ErrorKind::NotFound && attempt < READ_RETRIES =>
                    {
                        attempt += 1;
                        continue 'again;
                    }
                    other => match missing_is_damage(target, kept.version, other) {
                        Ok(installed) => out.push(installed),
                        Err(StoreError::Damaged(d)) => {
                            tracing::warn!(damage = %d, "a kept older version is damaged; it is left out of the history");
                        }
                        Err(e) => return Err(e),
                    },
                }
            }
            return Ok(out);
        }
    }

    /// Every target with a directory: the system target and each domain directory.
    fn targets_on_disk(&self) -> Result<Vec<Target>, StoreError> {
        let mut targets = vec![Target::System];
        let domains = self.root.join("domains");
        let entries = fs::read_dir(&domains).map_err(|e| StoreError::io("list", &domains, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &domains, &e))?;
            let name = entry.file_name();
            let domain = name
                .to_str()
                .and_then(|name| DomainName::new(name).ok().filter(|d| d.as_str() == name));
            match domain {
                Some(domain) if entry.path().is_dir() => targets.push(Target::Domain(domain)),
                _ => {
                    tracing::warn!(path = %entry.path().display(), "ignoring an entry of the store's domains directory that is not a domain's directory")
                }
            }
        }
        targets.sort();
        Ok(targets)
    }

    fn list_sync(&self) -> Result<Vec<Result<Listed, Damaged>>, StoreError> {
        let targets = self.targets_on_disk()?;
        let mut out = Vec::with_capacity(targets.len());
        for target in targets {
            match self.current_sync(&target) {
                Ok(Some(installed)) => out.push(Ok(Listed {
                    meta: installed.bundle.meta().clone(),
                    target,
                    version: installed.version,
                    revision: installed.revision,
                })),
                Ok(None) => {}
                Err(StoreError::Damaged(d)) => out.push(Err(*d)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// [`Store::list_meta`]: per target `state.json` and the current `meta.json`, read
    /// once each, nothing proven, no key read.
    fn list_meta_sync(&self) -> Result<Vec<Result<Listed, Damaged>>, StoreError> {
        let targets = self.targets_on_disk()?;
        let mut out = Vec::with_capacity(targets.len());
        for target in targets {
            match self.current_meta(&target) {
                Ok(Some(listed)) => out.push(Ok(listed)),
                Ok(None) => {}
                Err(StoreError::Damaged(d)) => out.push(Err(*d)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The recorded metadata of `target`'s current version (not proven, no key read).
    fn current_meta(&self, target: &Target) -> Result<Option<Listed>, StoreError> {
        let dir = self.target_dir(target);
        let mut attempt = 0;
        loop {
            let Some(state) = self.read_state(target, &dir)? else {
                return Ok(None);
            };
            let Some(version) = state.current else {
                return Ok(None);
            };
            let path = dir.join(version_name(version)).join("meta.json");
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                // A writer pruned the version between our two reads: read the state again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < READ_RETRIES => {
                    attempt += 1;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(damaged(
                        target,
                        Some(version),
                        &path,
                        Damage::Missing(Part::Metadata),
                    ));
                }
                Err(e) => {
                    return Err(damaged(
                        target,
                        Some(version),
                        &path,
                        Damage::Unreadable {
                            part: Part::Metadata,
                            reason: e.to_string(),
                        },
                    ))
                }
            };
            let meta: StoredMeta = serde_json::from_slice(&bytes).map_err(|e| {
                damaged(
                    target,
                    Some(version),
                    &path,
                    Damage::Unreadable {
                        part: Part::Metadata,
                        reason: e.to_string(),
                    },
                )
            })?;
            return Ok(Some(Listed {
                target: target.clone(),
                version,
                revision: Revision(state.revision),
                meta: meta.meta,
            }));
        }
    }

    fn install_sync(
        &self,
        target: &Target,
        bundle: &Bundle,
        condition: &Condition,
    ) -> Result<Installed, StoreError> {
        let mut guard = self.begin()?;
        let dir = self.target_dir(target);
        if let Some(parent) = dir.parent() {
            self.mkdir(parent)?;
        }
        self.mkdir(&dir)?;
        let mut state = self.state_for_write(target, &dir)?;
        let key = ChangeKey::Bundle(target.clone());
        check_expect(&key, condition.expect, current_revision(&state))?;
        guard.check_fence(condition.fence.as_ref())?;
        self.remove_unreferenced(&dir, &state);

        let version = state.next_version.max(1);
        let tmp = dir.join(format!(".tmp-{}", version_name(version)));
        let vdir = dir.join(version_name(version));
        let fs = &self.fs;
        self.mkdir(&tmp)?;
        let key_pem = bundle.secret_key().secret_pem();
        let meta = serde_json::to_vec_pretty(&StoredMeta {
            meta: bundle.meta().clone(),
            chain_sha256: Some(bundle.chain_digest()),
        })
        .map_err(|e| StoreError::corrupt(&tmp, e.to_string()))?;
        let chain_pem = bundle.chain_pem();
        let files: [(&str, &[u8], u32); 3] = [
            ("cert.pem", chain_pem.as_bytes(), PUBLIC_MODE),
            ("key.pem", key_pem.as_bytes(), SECRET_MODE),
            ("meta.json", &meta, PUBLIC_MODE),
        ];
        for (name, bytes, mode) in files {
            let path = tmp.join(name);
            fs.write_file(&path, bytes, mode)
                .map_err(|e| StoreError::io("write", &path, &e))?;
            fs.sync_file(&path)
                .map_err(|e| StoreError::io("fsync", &path, &e))?;
        }
        fs.sync_dir(&tmp)
            .map_err(|e| StoreError::io("fsync the directory", &tmp, &e))?;
        fs.rename(&tmp, &vdir)
            .map_err(|e| StoreError::io("rename into place", &vdir, &e))?;
        fs.sync_dir(&dir)
            .map_err(|e| StoreError::io("fsync the directory", &dir, &e))?;

        let revision = guard.next();
        guard.write_intent(revision, &key, ChangeKind::Put)?;
        state.current = Some(version);
        state.revision = revision.0;
        state.next_version = version + 1;
        state.versions.push(Kept {
            version,
            revision: revision.0,
        });
        let pruned = prune(&mut state);
        self.write_state(&dir, &state)?;
        guard.commit(revision, &key, ChangeKind::Put);
        for old in pruned {
            let path = dir.join(version_name(old));
            if let Err(e) = fs.remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove an old version; it is removed at the next install");
            }
        }
        tracing::info!(target = %target, version, revision = revision.0, fingerprint = %bundle.meta().fingerprint, names = ?bundle.meta().names, "installed a certificate");
        Ok(Installed {
            target: target.clone(),
            version,
            revision,
            bundle: bundle.clone_bundle(),
        })
    }

    /// Removes version directories the state does not reference (left by a failed or
    /// crashed install). Best effort: they are invisible to readers anyway.
    fn remove_unreferenced(&self, dir: &Path, state: &TargetState) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let referenced = state
                .versions
                .iter()
                .any(|k| version_name(k.version) == name);
            let temporary = name
                .strip_prefix(".tmp-")
                .and_then(parse_version_name)
                .is_some();
            let version = parse_version_name(name).is_some();
            if !(temporary || version || ["state.json", ".state.json.tmp"].contains(&name)) {
                tracing::warn!(path = %entry.path().display(), "ignoring an entry of a target's directory that the store did not make");
                continue;
            }
            let stale = temporary || (version && !referenced);
            if stale && entry.path().is_dir() {
                if let Err(e) = self.fs.remove_dir_all(&entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a stale version");
                }
            }
        }
    }

    fn rollback_sync(
        &self,
        target: &Target,
        condition: &Condition,
    ) -> Result<Installed, StoreError> {
        let mut guard = self.begin()?;
        let dir = self.target_dir(target);
        let key = ChangeKey::Bundle(target.clone());
        let mut state = self.state_for_write(target, &dir)?;
        check_expect(&key, condition.expect, current_revision(&state))?;
        guard.check_fence(condition.fence.as_ref())?;
        let candidate = state
            .versions
            .iter()
            .filter(|k| state.current.is_none_or(|c| k.version < c))
            .map(|k| k.version)
            .max();
        let Some(version) = candidate else {
            return Err(StoreError::NoPreviousVersion {
                target: target.to_string(),
            });
        };
        // Read and prove it first: never switch to a version that cannot be served.
        let mut installed =
            missing_is_damage(target, version, self.read_version(target, &dir, version, 0))?;
        let revision = guard.next();
        guard.write_intent(revision, &key, ChangeKind::Put)?;
        state.current = Some(version);
        state.revision = revision.0;
        self.write_state(&dir, &state)?;
        guard.commit(revision, &key, ChangeKind::Put);
        installed.revision = revision;
        tracing::info!(target = %target, version, revision = revision.0, "rolled back");
        Ok(installed)
    }

    fn disable_sync(
        &self,
        target: &Target,
        condition: &Condition,
    ) -> Result<Option<Revision>, StoreError> {
        let mut guard = self.begin()?;
        let dir = self.target_dir(target);
        let key = ChangeKey::Bundle(target.clone());
        if !dir.is_dir() {
            check_expect(&key, condition.expect, None)?;
            guard.check_fence(condition.fence.as_ref())?;
            return Ok(None);
        }
        let mut state = self.state_for_write(target, &dir)?;
        // Left over by a crash during an earlier disable or install.
        self.remove_unreferenced(&dir, &state);
        check_expect(&key, condition.expect, current_revision(&state))?;
        guard.check_fence(condition.fence.as_ref())?;
        if state.current.is_none() && state.versions.is_empty() {
            return Ok(None);
        }
        let revision = guard.next();
        guard.write_intent(revision, &key, ChangeKind::Delete)?;
        // First the state without any version (readers never see a version whose files are
        // going), then the files: certificates and private keys of every kept version. A
        // crash in between leaves unreferenced version directories, removed by the next
        // disable or install of the target (`remove_unreferenced`).
        state.current = None;
        state.versions.clear();
        state.revision = revision.0;
        self.write_state(&dir, &state)?;
        guard.commit(revision, &key, ChangeKind::Delete);
        self.remove_unreferenced(&dir, &state);
        tracing::info!(target = %target, revision = revision.0, "disabled: the certificate, its key and its older versions are deleted");
        Ok(Some(revision))
    }

    // ----- records -------------------------------------------------------------------------

    fn get_sync(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        read_record(&self.key_path("records", key))
    }

    fn put_sync(
        &self,
        key: &RecordKey,
        value: &[u8],
        condition: &Condition,
    ) -> Result<Revision, StoreError> {
        let mut guard = self.begin()?;
        let path = self.key_path("records", key);
        let change = ChangeKey::Record(key.clone());
        let actual = read_record(&path)?.map(|r| r.revision);
        check_expect(&change, condition.expect, actual)?;
        guard.check_fence(condition.fence.as_ref())?;
        let dir = self.ensure_parents(&path)?;
        let revision = guard.next();
        let mut bytes = Zeroizing::new(format!("BMREC1 {}\n", revision.0).into_bytes());
        bytes.extend_from_slice(value);
        guard.write_intent(revision, &change, ChangeKind::Put)?;
        self.replace_file(&tmp_for(&path), &path, &dir, &bytes, SECRET_MODE)?;
        guard.commit(revision, &change, ChangeKind::Put);
        Ok(revision)
    }

    fn delete_sync(
        &self,
        key: &RecordKey,
        condition: &Condition,
    ) -> Result<Option<Revision>, StoreError> {
        let mut guard = self.begin()?;
        let path = self.key_path("records", key);
        let change = ChangeKey::Record(key.clone());
        let actual = read_record(&path)?.map(|r| r.revision);
        check_expect(&change, condition.expect, actual)?;
        guard.check_fence(condition.fence.as_ref())?;
        if actual.is_none() {
            return Ok(None);
        }
        let revision = guard.next();
        guard.write_intent(revision, &change, ChangeKind::Delete)?;
        self.remove_and_sync(&path)?;
        guard.commit(revision, &change, ChangeKind::Delete);
        Ok(Some(revision))
    }

    fn remove_and_sync(&self, path: &Path) -> Result<(), StoreError> {
        self.fs
            .remove_file(path)
            .map_err(|e| StoreError::io("remove", path, &e))?;
        if let Some(dir) = path.parent() {
            self.fs
                .sync_dir(dir)
                .map_err(|e| StoreError::io("fsync the directory", dir, &e))?;
        }
        Ok(())
    }

    fn ensure_parents(&self, path: &Path) -> Result<PathBuf, StoreError> {
        let Some(dir) = path.parent() else {
            return Err(StoreError::corrupt(path, "no parent directory"));
        };
        let mut missing = Vec::new();
        let mut cur = dir;
        while !cur.is_dir() {
            missing.push(cur.to_owned());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        for d in missing.iter().rev() {
            self.mkdir(d)?;
        }
        Ok(dir.to_owned())
    }

    fn keys_sync(&self, prefix: &str) -> Result<Vec<RecordKey>, StoreError> {
        let mut out = Vec::new();
        collect_keys(&self.root.join("records"), "", &mut out)?;
        out.retain(|k| k.is_under(prefix));
        out.sort();
        Ok(out)
    }

    /// [`Store::records`]: walks the directory of `prefix` only, reading each record once.
    fn records_sync(&self, prefix: &str) -> Result<Vec<(RecordKey, Record)>, StoreError> {
        let trimmed = prefix.trim_end_matches('/');
        let mut keys = Vec::new();
        match RecordKey::new(trimmed) {
            // `a/b` lives in `records/a+/b`; the keys below it in `records/a+/b+/`.
            Ok(base) => {
                let file = self.key_path("records", &base);
                let mut below = file.clone().into_os_string();
                below.push("+");
                collect_keys(Path::new(&below), &format!("{trimmed}/"), &mut keys)?;
                if file.is_file() {
                    keys.push(base);
                }
            }
            Err(_) => collect_keys(&self.root.join("records"), "", &mut keys)?,
        }
        keys.retain(|k| k.is_under(prefix));
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Deleted since it was listed: left out, as a later `keys` would.
            if let Some(record) = read_record(&self.key_path("records", &key))? {
                out.push((key, record));
            }
        }
        Ok(out)
    }

    // ----- locks ---------------------------------------------------------------------------

    fn read_lock(&self, name: &RecordKey) -> Result<Option<LockFile>, StoreError> {
        let path = self.key_path("locks", name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::corrupt(&path, e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, &e)),
        }
    }

    fn write_lock(&self, name: &RecordKey, lock: &LockFile) -> Result<(), StoreError> {
        let path = self.key_path("locks", name);
        let dir = self.ensure_parents(&path)?;
        let bytes =
            serde_json::to_vec(lock).map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
        self.replace_file(&tmp_for(&path), &path, &dir, &bytes, SECRET_MODE)
    }

    fn lock_sync(
        &self,
        name: &RecordKey,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let mut guard = self.begin()?;
        let now = self.now();
        if let Some(held) = self.read_lock(name)? {
            if held.expires_at > now {
                return Err(StoreError::LockHeld {
                    lock: name.to_string(),
                    holder: held.holder,
                    expires_at: rfc3339(held.expires_at),
                });
            }
        }
        let change = ChangeKey::Lock(name.clone());
        let revision = guard.next();
        let lock = LockFile {
            holder: holder.to_owned(),
            token: revision.0,
            expires_at: now + ttl,
        };
        guard.write_intent(revision, &change, ChangeKind::Put)?;
        self.write_lock(name, &lock)?;
        guard.commit(revision, &change, ChangeKind::Put);
        Ok(Lease {
            lock: name.clone(),
            holder: lock.holder,
            token: lock.token,
            expires_at: lock.expires_at,
        })
    }

    fn renew_sync(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let mut guard = self.begin()?;
        guard.check_fence(Some(&lease.fence()))?;
        let change = ChangeKey::Lock(lease.lock.clone());
        let revision = guard.next();
        let lock = LockFile {
            holder: lease.holder.clone(),
            token: lease.token,
            expires_at: self.now() + ttl,
        };
        guard.write_intent(revision, &change, ChangeKind::Put)?;
        self.write_lock(&lease.lock, &lock)?;
        guard.commit(revision, &change, ChangeKind::Put);
        Ok(Lease {
            expires_at: lock.expires_at,
            ..lease.clone()
        })
    }

    fn unlock_sync(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut guard = self.begin()?;
        match self.read_lock(&lease.lock)? {
            Some(held) if held.token == lease.token => {}
            _ => return Ok(()),
        }
        let change = ChangeKey::Lock(lease.lock.clone());
        let revision = guard.next();
        guard.write_intent(revision, &change, ChangeKind::Delete)?;
        self.remove_and_sync(&self.key_path("locks", &lease.lock))?;
        guard.commit(revision, &change, ChangeKind::Delete);
        Ok(())
    }

    fn revision_sync(&self) -> Result<Revision, StoreError> {
        let path = self.root.join("journal");
        let read = || -> Result<Option<u64>, StoreError> {
            let Some(journal) = read_journal_tail(&path)? else {
                return Ok(None);
            };
            let last = journal.entries.last().map_or(0, |e| e.revision);
            // The journal must reach the last revision handed out (the write-ahead intent);
            // a journal behind it, or an unreadable intent, is repaired by the write lock.
            match read_intent(&self.root.join("revision")) {
                Ok(Some(intent)) if intent.revision > last => Ok(None),
                Ok(_) => Ok(Some(last)),
                Err(_) => Ok(None),
            }
        };
        if let Some(last) = read()? {
            return Ok(Revision(last));
        }
        let guard = self.begin()?;
        Ok(guard.last)
    }

    /// The highest revision any stored item carries: target states (and their kept
    /// versions), record headers and lock tokens. What the revision counter is rebuilt
    /// from.
    fn highest_revision_on_disk(&self) -> u64 {
        let mut highest = 0;
        let mut dirs = vec![self.root.join("targets").join("system")];
        if let Ok(entries) = fs::read_dir(self.root.join("domains")) {
            dirs.extend(entries.flatten().map(|e| e.path()));
        }
        for dir in dirs {
            if let Ok(bytes) = fs::read(dir.join("state.json")) {
                if let Ok(state) = serde_json::from_slice::<TargetState>(&bytes) {
                    highest = highest.max(state.revision);
                    highest =
                        highest.max(state.versions.iter().map(|k| k.revision).max().unwrap_or(0));
                }
            }
        }
        let mut files = Vec::new();
        collect_files(&self.root.join("records"), &mut files);
        for path in &files {
            if let Ok(Some(record)) = read_record(path) {
                highest = highest.max(record.revision.0);
            }
        }
        files.clear();
        collect_files(&self.root.join("locks"), &mut files);
        for path in &files {
            if let Ok(bytes) = fs::read(path) {
                if let Ok(lock) = serde_json::from_slice::<LockFile>(&bytes) {
                    highest = highest.max(lock.token);
                }
            }
        }
        highest
    }
}

/// The exclusive write lock of a store, with the last revision handed out.
struct WriteGuard<'a> {
    store: &'a DirStore,
    _file: File,
    last: Revision,
    journal_bytes: u64,
}

impl WriteGuard<'_> {
    fn next(&self) -> Revision {
        self.last.next()
    }

    fn check_fence(&self, fence: Option<&Fence>) -> Result<(), StoreError> {
        let Some(fence) = fence else { return Ok(()) };
        let held = self.store.read_lock(&fence.lock)?;
        match held {
            Some(lock) if lock.token == fence.token && lock.expires_at > self.store.now() => Ok(()),
            _ => Err(StoreError::Fenced {
                lock: fence.lock.to_string(),
                token: fence.token,
            }),
        }
    }

    /// Records, before the switch, that `revision` is handed out (so it is never reused).
    fn write_intent(
        &mut self,
        revision: Revision,
        key: &ChangeKey,
        kind: ChangeKind,
    ) -> Result<(), StoreError> {
        let root = &self.store.root;
        let entry = Entry::new(revision, key, kind);
        let bytes =
            serde_json::to_vec(&entry).map_err(|e| StoreError::corrupt(root, e.to_string()))?;
        self.store.replace_file(
            &root.join(".revision.tmp"),
            &root.join("revision"),
            root,
            &bytes,
            PUBLIC_MODE,
        )
    }

    /// Publishes the change to the journal, after the switch.
    ///
    /// The switch is done: a failure to append (disk full) is logged, not returned, and the
    /// next writer appends the line from the write-ahead revision, so watchers still learn
    /// about the change (late) and the revision is never reused.
    fn commit(&mut self, revision: Revision, key: &ChangeKey, kind: ChangeKind) {
        if let Err(e) = self.append(&Entry::new(revision, key, kind)) {
            tracing::warn!(error = %e, revision = revision.0, "could not append to the store journal; the next write repairs it");
        }
        self.last = revision;
    }

    fn append(&mut self, entry: &Entry) -> Result<(), StoreError> {
        let root = &self.store.root;
        let path = root.join("journal");
        let mut line =
            serde_json::to_vec(entry).map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
        line.push(b'\n');
        self.store
            .fs
            .append_sync(&path, &line, PUBLIC_MODE)
            .map_err(|e| StoreError::io("append to", &path, &e))?;
        self.journal_bytes += line.len() as u64;
        if self.journal_bytes > self.store.journal_max_bytes {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<(), StoreError> {
        let root = &self.store.root;
        let path = root.join("journal");
        let journal = read_journal(&path)?;
        // Keep the newest entries that fit in half the limit (at least one).
        let budget = self.store.journal_max_bytes / 2;
        let mut lines = Vec::new();
        let mut size = 0u64;
        for entry in journal.entries.iter().rev() {
            let mut line =
                serde_json::to_vec(entry).map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
            line.push(b'\n');
            size += line.len() as u64;
            if size > budget && !lines.is_empty() {
                break;
            }
            lines.push(line);
        }
        let text: Vec<u8> = lines.into_iter().rev().flatten().collect();
        self.store
            .replace_file(&root.join(".journal.tmp"), &path, root, &text, PUBLIC_MODE)?;
        self.journal_bytes = text.len() as u64;
        Ok(())
    }
}

/// Reads only the end of the journal: its last complete entry and where it ends; `None`
/// when that entry is damaged (then [`read_journal`] reads what is readable).
fn read_journal_tail(path: &Path) -> Result<Option<Journal>, StoreError> {
    use std::io::{Seek, SeekFrom};
    const TAIL: u64 = 8 * 1024;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Some(Journal {
                entries: Vec::new(),
                valid_len: 0,
                total_len: 0,
            }))
        }
        Err(e) => return Err(StoreError::io("read", path, &e)),
    };
    let total_len = file
        .metadata()
        .map_err(|e| StoreError::io("read", path, &e))?
        .len();
    let start = total_len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| StoreError::io("read", path, &e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("read", path, &e))?;
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        if start > 0 {
            // A journal line is longer than 8 KiB: not one this store wrote.
            return Ok(None);
        }
        return Ok(Some(Journal {
            entries: Vec::new(),
            valid_len: 0,
            total_len,
        }));
    };
    let line_start = bytes[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    if line_start == 0 && start > 0 {
        return Ok(None);
    }
    let Ok(entry) = serde_json::from_slice::<Entry>(&bytes[line_start..end]) else {
        return Ok(None);
    };
    Ok(Some(Journal {
        entries: vec![entry],
        valid_len: start + end as u64 + 1,
        total_len,
    }))
}

/// Reads the journal: the complete lines after the last damaged one (a damaged line, or
/// revisions out of order, end what can be trusted before it), with a warning when any
/// line was dropped. Only an I/O failure is an error.
fn read_journal(path: &Path) -> Result<Journal, StoreError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|e| StoreError::io("read", path, &e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("read", path, &e)),
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut valid_len = 0u64;
    let mut start = 0usize;
    let mut dropped = 0usize;
    while let Some(pos) = bytes[start..].iter().position(|&b| b == b'\n') {
        let line = &bytes[start..start + pos];
        match serde_json::from_slice::<Entry>(line) {
            Ok(entry) if entries.last().is_none_or(|l| l.revision < entry.revision) => {
                entries.push(entry)
            }
            _ => {
                dropped += entries.len() + 1;
                entries.clear();
            }
        }
        start += pos + 1;
        valid_len = start as u64;
    }
    if dropped > 0 {
        tracing::warn!(path = %path.display(), dropped, kept = entries.len(), "the store journal has damaged lines: only the lines after the last damaged one are used");
    }
    Ok(Journal {
        entries,
        valid_len,
        total_len: bytes.len() as u64,
    })
}

fn read_intent(path: &Path) -> Result<Option<Entry>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::corrupt(path, e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path, &e)),
    }
}

fn read_record(path: &Path) -> Result<Option<Record>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", path, &e)),
    };
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(StoreError::corrupt(path, "no record header"));
    };
    let header = core::str::from_utf8(&bytes[..nl]).unwrap_or("");
    let Some(revision) = header
        .strip_prefix("BMREC1 ")
        .and_then(|r| r.parse::<u64>().ok())
    else {
        return Err(StoreError::corrupt(path, "bad record header"));
    };
    Ok(Some(Record::new(
        Revision(revision),
        bytes[nl + 1..].to_vec(),
    )))
}

fn collect_keys(dir: &Path, prefix: &str, out: &mut Vec<RecordKey>) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("list", dir, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, &e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let is_dir = entry.path().is_dir();
        match name.strip_suffix('+') {
            Some(segment) if is_dir => {
                collect_keys(&entry.path(), &format!("{prefix}{segment}/"), out)?;
            }
            None if !is_dir => match RecordKey::new(&format!("{prefix}{name}")) {
                Ok(key) => out.push(key),
                Err(_) => {
                    tracing::warn!(path = %entry.path().display(), "ignoring a file of the records directory that is not a record")
                }
            },
            _ => {
                tracing::warn!(path = %entry.path().display(), "ignoring an entry of the records directory that the store did not make")
            }
        }
    }
    Ok(())
}

fn tmp_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

fn version_name(version: u64) -> String {
    format!("v{version:09}")
}

/// The version a directory name stands for (`v` and nine or more digits, as
/// [`version_name`] writes them).
fn parse_version_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?;
    if digits.len() < 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The version directories under a target's directory, ascending.
fn versions_on_disk(dir: &Path) -> Vec<u64> {
    let mut versions: Vec<u64> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(parse_version_name))
        .collect();
    versions.sort_unstable();
    versions
}

/// A target's state rebuilt from the version directories on disk: every one kept (at
/// revision 0, unknown), none current, the next version number above them all.
fn rebuilt_state(dir: &Path) -> TargetState {
    let versions = versions_on_disk(dir);
    TargetState {
        current: None,
        revision: 0,
        next_version: versions.last().map_or(1, |v| v + 1),
        versions: versions
            .into_iter()
            .map(|version| Kept {
                version,
                revision: 0,
            })
            .collect(),
    }
}

/// The file of a part of a stored version.
fn file_of(part: Part) -> &'static str {
    match part {
        Part::Certificate => "cert.pem",
        Part::Key => "key.pem",
        Part::Metadata => "meta.json",
        _ => "state.json",
    }
}

fn damaged(target: &Target, version: Option<u64>, path: &Path, damage: Damage) -> StoreError {
    StoreError::damaged(Damaged {
        target: target.clone(),
        version,
        location: path.display().to_string(),
        damage,
    })
}

/// A version file still missing after the reader's retries is damage, not an I/O error.
fn missing_is_damage<T>(
    target: &Target,
    version: u64,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Err(StoreError::Io {
            kind: io::ErrorKind::NotFound,
            path,
            ..
        }) => {
            let part = match path.file_name().and_then(|n| n.to_str()) {
                Some("cert.pem") => Part::Certificate,
                Some("key.pem") => Part::Key,
                _ => Part::Metadata,
            };
            Err(damaged(target, Some(version), &path, Damage::Missing(part)))
        }
        other => other,
    }
}

/// Every file under `dir`, recursively (for the revision rebuild).
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn current_revision(state: &TargetState) -> Option<Revision> {
    state.current.map(|_| Revision(state.revision))
}

fn check_expect(
    key: &ChangeKey,
    expect: Expect,
    actual: Option<Revision>,
) -> Result<(), StoreError> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => actual.is_none(),
        Expect::Revision(r) => actual == Some(r),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            key: key.to_string(),
            expected: expect,
            actual,
        })
    }
}

/// Keeps the current version and the `HISTORY_DEPTH` newest others; returns the dropped ones.
fn prune(state: &mut TargetState) -> Vec<u64> {
    let mut others: Vec<u64> = state
        .versions
        .iter()
        .map(|k| k.version)
        .filter(|v| Some(*v) != state.current)
        .collect();
    others.sort_unstable_by(|a, b| b.cmp(a));
    let dropped: Vec<u64> = others.into_iter().skip(HISTORY_DEPTH).collect();
    state.versions.retain(|k| !dropped.contains(&k.version));
    dropped
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn repair_mode(path: &Path, wanted: u32) -> Result<(), StoreError> {
    let meta = fs::metadata(path).map_err(|e| StoreError::io("inspect", path, &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), repaired = format!("{wanted:o}"), "store file was accessible to other users; permissions repaired");
        fs::set_permissions(path, fs::Permissions::from_mode(wanted))
            .map_err(|e| StoreError::io("repair the permissions of", path, &e))?;
    }
    Ok(())
}

fn repair_tree(dir: &Path) -> Result<(), StoreError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            repair_tree(&path)?;
        } else {
            repair_mode(&path, SECRET_MODE)?;
        }
    }
    Ok(())
}

fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(core::future::ready(result))
}

impl Store for DirStore {
    fn revision(&self) -> StoreFuture<'_, Revision> {
        ready(self.revision_sync())
    }

    fn current<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<Installed>> {
        ready(self.current_sync(target))
    }

    fn history<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Vec<Installed>> {
        ready(self.history_sync(target))
    }

    fn list(&self) -> StoreFuture<'_, Vec<Result<Listed, Damaged>>> {
        ready(self.list_sync())
    }

    fn list_meta(&self) -> StoreFuture<'_, Vec<Result<Listed, Damaged>>> {
        ready(self.list_meta_sync())
    }

    fn install<'a>(
        &'a self,
        target: &'a Target,
        bundle: &'a Bundle,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed> {
        ready(self.install_sync(target, bundle, condition))
    }

    fn rollback<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed> {
        ready(self.rollback_sync(target, condition))
    }

    fn disable<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>> {
        ready(self.disable_sync(target, condition))
    }

    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<Record>> {
        ready(self.get_sync(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a RecordKey,
        value: &'a [u8],
        condition: &'a Condition,
    ) -> StoreFuture<'a, Revision> {
        ready(self.put_sync(key, value, condition))
    }

    fn delete<'a>(
        &'a self,
        key: &'a RecordKey,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>> {
        ready(self.delete_sync(key, condition))
    }

    fn keys<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<RecordKey>> {
        ready(self.keys_sync(prefix))
    }

    fn records<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(RecordKey, Record)>> {
        ready(self.records_sync(prefix))
    }

    fn watch(&self, after: Revision) -> StoreFuture<'_, Watch> {
        ready(watch::start(&self.root, after))
    }

    fn lock<'a>(
        &'a self,
        name: &'a RecordKey,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease> {
        ready(self.lock_sync(name, holder, ttl))
    }

    fn renew<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, Lease> {
        ready(self.renew_sync(lease, ttl))
    }

    fn unlock<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        ready(self.unlock_sync(lease))
    }
}

#[cfg(feature = "testing")]
mod raw {
    //! [`RawStorage`] for the directory store: plain file writes, for the corruption suite.
    use std::fs;
    use std::path::PathBuf;

    use bmcert_topology::Target;

    use super::{ready, version_name, DirStore, TargetState};
    use crate::store::StoreFuture;
    use crate::testing::{RawItem, RawStorage};
    use crate::types::SecretKey;
    use crate::StoreError;

    impl DirStore {
        /// The file of `item` (the current version's, for version files).
        fn raw_path(&self, target: &Target, item: RawItem) -> Result<PathBuf, StoreError> {
            let dir = self.target_dir(target);
            let version_file = |name: &str| -> Result<PathBuf, StoreError> {
                let path = dir.join("state.json");
                let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, &e))?;
                let state: TargetState = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
                let current = state
                    .current
                    .ok_or_else(|| StoreError::NotFound(format!("{target}: no current version")))?;
                Ok(dir.join(version_name(current)).join(name))
            };
            match item {
                RawItem::Certificate => version_file("cert.pem"),
                RawItem::Key => version_file("key.pem"),
                RawItem::Metadata => version_file("meta.json"),
                RawItem::State => Ok(dir.join("state.json")),
                RawItem::RevisionCounter => Ok(self.root.join("revision")),
                RawItem::Journal => Ok(self.root.join("journal")),
                RawItem::Bundle => Err(StoreError::NotFound(
                    "the directory store keeps a bundle as three files".into(),
                )),
            }
        }

        fn raw_write(
            &self,
            target: &Target,
            item: RawItem,
            bytes: &[u8],
        ) -> Result<(), StoreError> {
            let path = self.raw_path(target, item)?;
            fs::write(&path, bytes).map_err(|e| StoreError::io("write", &path, &e))
        }
    }

    impl RawStorage for DirStore {
        fn items(&self) -> Vec<RawItem> {
            vec![
                RawItem::Certificate,
                RawItem::Key,
                RawItem::Metadata,
                RawItem::State,
                RawItem::RevisionCounter,
                RawItem::Journal,
            ]
        }

        fn read_raw<'a>(
            &'a self,
            target: &'a Target,
            item: RawItem,
        ) -> StoreFuture<'a, Option<Vec<u8>>> {
            ready(self.raw_path(target, item).map(|p| fs::read(p).ok()))
        }

        fn write_raw<'a>(
            &'a self,
            target: &'a Target,
            item: RawItem,
            bytes: &'a [u8],
        ) -> StoreFuture<'a, ()> {
            ready(self.raw_write(target, item, bytes))
        }

        fn swap_key<'a>(&'a self, target: &'a Target, key: &'a SecretKey) -> StoreFuture<'a, ()> {
            ready(self.raw_write(target, RawItem::Key, key.secret_pem().as_bytes()))
        }

        fn set_not_after<'a>(
            &'a self,
            target: &'a Target,
            not_after: time::OffsetDateTime,
        ) -> StoreFuture<'a, ()> {
            ready((|| {
                let path = self.raw_path(target, RawItem::Metadata)?;
                let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, &e))?;
                let mut meta: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
                meta["not_after"] = serde_json::Value::String(
                    not_after
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                );
                let bytes = serde_json::to_vec_pretty(&meta)
                    .map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
                fs::write(&path, bytes).map_err(|e| StoreError::io("write", &path, &e))
            })())
        }

        fn add_strays<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Vec<String>> {
            ready((|| {
                let dir = self.target_dir(target);
                let strays = [
                    (self.root.join("domains").join("stray-file.test"), false),
                    (self.root.join("domains").join("NOT A DOMAIN"), true),
                    (dir.join("notes.txt"), false),
                    (dir.join("vjunk"), true),
                    (self.root.join("records").join("stray+"), false),
                    (self.root.join("records").join("bad name"), false),
                ];
                let mut out = Vec::new();
                for (path, is_dir) in strays {
                    let done = if is_dir {
                        fs::create_dir_all(&path)
                    } else {
                        fs::write(&path, b"stray")
                    };
                    done.map_err(|e| StoreError::io("write", &path, &e))?;
                    out.push(path.display().to_string());
                }
                Ok(out)
            })())
        }
    }
}
