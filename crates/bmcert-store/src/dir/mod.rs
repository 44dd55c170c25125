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

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Kept {
    version: u64,
    revision: u64,
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
        let journal = read_journal_tail(&journal_path)?;
        if journal.valid_len < journal.total_len {
            tracing::warn!(path = %journal_path.display(), "dropping a partial last journal line left by a crash");
            let f = OpenOptions::new()
                .write(true)
                .open(&journal_path)
                .map_err(|e| StoreError::io("repair", &journal_path, &e))?;
            f.set_len(journal.valid_len)
                .map_err(|e| StoreError::io("repair", &journal_path, &e))?;
        }
        let mut last = journal.entries.last().map_or(0, |e| e.revision);
        let mut guard = WriteGuard {
            store: self,
            _file: file,
            last: Revision(last),
            journal_bytes: journal.valid_len,
        };
        if let Some(intent) = read_intent(&self.root.join("revision"))? {
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

    fn read_state(&self, dir: &Path) -> Result<Option<TargetState>, StoreError> {
        let path = dir.join("state.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::corrupt(&path, e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, &e)),
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

    fn read_version(
        &self,
        target: &Target,
        dir: &Path,
        version: u64,
        revision: u64,
    ) -> Result<Installed, StoreError> {
        let vdir = dir.join(version_name(version));
        let cert_path = vdir.join("cert.pem");
        let key_path = vdir.join("key.pem");
        let meta_path = vdir.join("meta.json");
        let cert_text = fs::read(&cert_path).map_err(|e| StoreError::io("read", &cert_path, &e))?;
        let key_text =
            Zeroizing::new(fs::read(&key_path).map_err(|e| StoreError::io("read", &key_path, &e))?);
        let meta_text = fs::read(&meta_path).map_err(|e| StoreError::io("read", &meta_path, &e))?;

        let chain = pem::parse_many(&cert_text)
            .map_err(|e| StoreError::corrupt(&cert_path, e.to_string()))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect::<Vec<_>>();
        let key_pem = pem::parse(&*key_text)
            .map_err(|_| StoreError::corrupt(&key_path, "not a PEM private key"))?;
        let Some(format) = KeyFormat::from_pem_label(key_pem.tag()) else {
            return Err(StoreError::corrupt(
                &key_path,
                format!("unexpected PEM label `{}`", key_pem.tag()),
            ));
        };
        let key = SecretKey::new(format, key_pem.into_contents());
        let meta: BundleMeta = serde_json::from_slice(&meta_text)
            .map_err(|e| StoreError::corrupt(&meta_path, e.to_string()))?;
        let bundle =
            Bundle::new(chain, key, meta).map_err(|e| StoreError::corrupt(&vdir, e.to_string()))?;
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
            let Some(state) = self.read_state(&dir)? else {
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
                other => return other.map(Some),
            }
        }
    }

    fn history_sync(&self, target: &Target) -> Result<Vec<Installed>, StoreError> {
        let dir = self.target_dir(target);
        let mut attempt = 0;
        'again: loop {
            let Some(state) = self.read_state(&dir)? else {
                return Ok(Vec::new());
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
                    other => out.push(other?),
                }
            }
            return Ok(out);
        }
    }

    fn list_sync(&self) -> Result<Vec<Listed>, StoreError> {
        let mut targets = vec![Target::System];
        let domains = self.root.join("domains");
        let entries = fs::read_dir(&domains).map_err(|e| StoreError::io("list", &domains, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &domains, &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match DomainName::new(name) {
                Ok(domain) if domain.as_str() == name => targets.push(Target::Domain(domain)),
                _ => {
                    tracing::warn!(path = %entry.path().display(), "ignoring a directory that is not a domain name")
                }
            }
        }
        targets.sort();
        let mut out = Vec::with_capacity(targets.len());
        for target in targets {
            let dir = self.target_dir(&target);
            let mut attempt = 0;
            while let Some(state) = self.read_state(&dir)? {
                let Some(version) = state.current else { break };
                let meta_path = dir.join(version_name(version)).join("meta.json");
                match fs::read(&meta_path) {
                    Ok(bytes) => {
                        let meta: BundleMeta = serde_json::from_slice(&bytes)
                            .map_err(|e| StoreError::corrupt(&meta_path, e.to_string()))?;
                        out.push(Listed {
                            target,
                            version,
                            revision: Revision(state.revision),
                            meta,
                        });
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < READ_RETRIES => {
                        attempt += 1;
                    }
                    Err(e) => return Err(StoreError::io("read", &meta_path, &e)),
                }
            }
        }
        Ok(out)
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
        let mut state = self.read_state(&dir)?.unwrap_or_default();
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
        let meta = serde_json::to_vec_pretty(bundle.meta())
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
            let stale = name.starts_with(".tmp-v") || (name.starts_with('v') && !referenced);
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
        let mut state = self.read_state(&dir)?.unwrap_or_default();
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
        // Read it first: never switch to a version that cannot be read.
        let mut installed = self.read_version(target, &dir, version, 0)?;
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
        let Some(mut state) = self.read_state(&dir)? else {
            check_expect(&key, condition.expect, None)?;
            guard.check_fence(condition.fence.as_ref())?;
            return Ok(None);
        };
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
        let journal = read_journal_tail(&self.root.join("journal"))?;
        let last = journal.entries.last().map_or(0, |e| e.revision);
        Ok(Revision(last))
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

/// Reads only the end of the journal: its last complete entry and where it ends.
fn read_journal_tail(path: &Path) -> Result<Journal, StoreError> {
    use std::io::{Seek, SeekFrom};
    const TAIL: u64 = 8 * 1024;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Journal {
                entries: Vec::new(),
                valid_len: 0,
                total_len: 0,
            })
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
            return Err(StoreError::corrupt(
                path,
                "a journal line is longer than 8 KiB",
            ));
        }
        return Ok(Journal {
            entries: Vec::new(),
            valid_len: 0,
            total_len,
        });
    };
    let line_start = bytes[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    if line_start == 0 && start > 0 {
        return Err(StoreError::corrupt(
            path,
            "a journal line is longer than 8 KiB",
        ));
    }
    let entry: Entry = serde_json::from_slice(&bytes[line_start..end])
        .map_err(|e| StoreError::corrupt(path, format!("last line: {e}")))?;
    Ok(Journal {
        entries: vec![entry],
        valid_len: start + end as u64 + 1,
        total_len,
    })
}

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
    let mut entries = Vec::new();
    let mut valid_len = 0u64;
    let mut start = 0usize;
    while let Some(pos) = bytes[start..].iter().position(|&b| b == b'\n') {
        let line = &bytes[start..start + pos];
        match serde_json::from_slice::<Entry>(line) {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                return Err(StoreError::corrupt(
                    path,
                    format!("line {}: {e}", entries.len() + 1),
                ));
            }
        }
        start += pos + 1;
        valid_len = start as u64;
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
        if let Some(segment) = name.strip_suffix('+') {
            collect_keys(&entry.path(), &format!("{prefix}{segment}/"), out)?;
        } else if let Ok(key) = RecordKey::new(&format!("{prefix}{name}")) {
            out.push(key);
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

    fn list(&self) -> StoreFuture<'_, Vec<Listed>> {
        ready(self.list_sync())
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
