//! Deploying a target's certificate to files, for the programs that read files (nginx,
//! postfix, IMAP servers): certbot's four names, replaced as one set.
//!
//! # Layout
//!
//! A [`DeployTarget`] owns one directory `DIR`:
//!
//! ```text
//! DIR/versions/7/{cert,chain,fullchain,privkey}.pem   one complete set per deployed certificate
//! DIR/live -> versions/7                              the current set (a symbolic link)
//! DIR/cert.pem -> live/cert.pem                       the stable names servers are configured with
//! DIR/chain.pem -> live/chain.pem
//! DIR/fullchain.pem -> live/fullchain.pem
//! DIR/privkey.pem -> live/privkey.pem                 mode 0600
//! ```
//!
//! `cert.pem` is the leaf, `chain.pem` the intermediates (empty when the chain is the leaf
//! alone), `fullchain.pem` both (what nginx's `ssl_certificate` and postfix's
//! `smtpd_tls_chain_files` want), `privkey.pem` the key (PEM, the store's encoding).
//!
//! # The guarantee
//!
//! A new set is written whole into a new `versions/N` (every file synced, then the
//! directory renamed into place and synced), and only then does `live` move to it, by
//! renaming a new symbolic link over the old one: one atomic `rename(2)`. So every path
//! lookup through `live` sees the old set or the new set, whole, never a mix and never a
//! half-written file, whatever crashes when. The two previous sets are kept, so a reader
//! that resolved `live` just before a swap still finds its files. A program that opens
//! two files by name (the certificate, then the key) reads one set unless two swaps happen
//! between its two opens; the agent runs the reload command after the last swap of a batch,
//! so the servers it reloads read one set. A program that must be immune even to that can
//! open `DIR/live` once and read the files relative to it (`openat`).
//!
//! Files are written only when the store's certificate differs from the deployed one (by
//! SHA-256 fingerprint of the leaf, read back from `DIR/live/cert.pem`), also at start-up.
//! A target without a current certificate (disabled) has its files removed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bmcert_store::fs_ops::{FsOps, RealFs};
use bmcert_store::{Bundle, Fingerprint, Installed, Store, StoreError};
use bmcert_topology::Target;

/// The four files of a deployed set, in the order they are written.
pub const FILES: [&str; 4] = ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"];

/// How many sets older than the current one are kept under `versions/`.
pub const KEPT_VERSIONS: usize = 2;

/// Why deploying failed. The previously deployed set (if any) stays in place.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A file-system operation failed.
    #[error("deploying {target} into {dir}: cannot {during} {path}: {source}; check that the directory exists and is writable by this user (and the disk is not full): the previous files stay in place", dir = dir.display(), path = path.display())]
    Io {
        /// The target deployed.
        target: Target,
        /// The deploy directory.
        dir: PathBuf,
        /// What was being done.
        during: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The store could not be read.
    #[error("deploying {target}: the store could not be read: {source}; the deployed files stay as they are")]
    Store {
        /// The target.
        target: Target,
        /// The store's error.
        source: StoreError,
    },
}

/// What [`DeployTarget::sync`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deployed {
    /// The deployed files already hold the store's certificate (or nothing is deployed and
    /// the target has none): nothing written.
    Unchanged,
    /// A new set was written and made current.
    Written {
        /// The leaf's fingerprint.
        fingerprint: Fingerprint,
        /// The set's directory under `versions/`.
        set: PathBuf,
    },
    /// The target has no certificate any more (disabled): the files were removed.
    Removed,
}

impl Deployed {
    /// Whether files changed (the servers reading them need a reload).
    pub fn changed(&self) -> bool {
        !matches!(self, Self::Unchanged)
    }
}

/// One deploy directory for one target: `--deploy TARGET=DIR`.
#[derive(Clone)]
pub struct DeployTarget {
    target: Target,
    dir: PathBuf,
    owner: Option<u32>,
    group: Option<u32>,
    fs: Arc<dyn FsOps>,
}

impl fmt::Debug for DeployTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeployTarget")
            .field("target", &self.target)
            .field("dir", &self.dir)
            .field("owner", &self.owner)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DeployTarget {
    /// Deploys `target` into `dir` (created, mode 0755, when missing), files owned by the
    /// process's user.
    pub fn new(target: Target, dir: impl Into<PathBuf>) -> Self {
        Self {
            target,
            dir: dir.into(),
            owner: None,
            group: None,
            fs: Arc::new(RealFs),
        }
    }

    /// Gives the files (and the set directories) to user `uid` and/or group `gid` (the
    /// process needs the right to: root, or `CAP_CHOWN`). The key stays mode 0600.
    pub fn with_owner(mut self, uid: Option<u32>, gid: Option<u32>) -> Self {
        self.owner = uid;
        self.group = gid;
        self
    }

    /// Writes through `fs` (tests inject failures at one step).
    pub fn with_fs(mut self, fs: Arc<dyn FsOps>) -> Self {
        self.fs = fs;
        self
    }

    /// The target deployed.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The deploy directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stable path of one of the [`FILES`] (`DIR/fullchain.pem`).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn io<'a>(
        &'a self,
        during: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> DeployError + 'a {
        move |source| DeployError::Io {
            target: self.target.clone(),
            dir: self.dir.clone(),
            during,
            path: path.to_owned(),
            source,
        }
    }

    /// The fingerprint of the deployed leaf (`DIR/live/cert.pem`), `None` when nothing is
    /// deployed or the file holds no certificate.
    pub fn deployed_fingerprint(&self) -> Result<Option<Fingerprint>, DeployError> {
        let path = self.dir.join("live").join("cert.pem");
        first_certificate(&path).map_err(self.io("read", &path))
    }

    /// Whether every deployed file is current for `expected` (the store's leaf; `None`: the
    /// target has no certificate, and nothing may be deployed): `cert.pem` and the first
    /// certificate of `fullchain.pem`, read through the stable names, are that leaf, and
    /// `chain.pem` and a non-empty `privkey.pem` exist.
    pub fn is_current(&self, expected: Option<&Fingerprint>) -> bool {
        let cert = first_certificate(&self.path("cert.pem")).ok().flatten();
        let full = first_certificate(&self.path("fullchain.pem"))
            .ok()
            .flatten();
        match expected {
            None => cert.is_none() && full.is_none() && !self.dir.join("live").exists(),
            Some(fp) => {
                cert.as_ref() == Some(fp)
                    && full.as_ref() == Some(fp)
                    && self.path("chain.pem").is_file()
                    && std::fs::metadata(self.path("privkey.pem")).is_ok_and(|m| m.len() > 0)
            }
        }
    }

    /// Brings the files in line with `installed` (the target's current bundle, `None` when
    /// it has none): writes a new set when the deployed leaf differs, removes the files
    /// when the target has no certificate, otherwise does nothing.
    pub fn sync(&self, installed: Option<&Installed>) -> Result<Deployed, DeployError> {
        let deployed = self.deployed_fingerprint()?;
        match installed {
            Some(installed) => {
                let fingerprint = installed.bundle.meta().fingerprint;
                // All four names must be there too (an administrator may have removed one).
                if deployed == Some(fingerprint) && self.is_current(Some(&fingerprint)) {
                    return Ok(Deployed::Unchanged);
                }
                let set = self.write(&installed.bundle)?;
                Ok(Deployed::Written { fingerprint, set })
            }
            None if deployed.is_none() && !self.dir.join("live").exists() => {
                Ok(Deployed::Unchanged)
            }
            None => {
                self.remove()?;
                Ok(Deployed::Removed)
            }
        }
    }

    /// Reads the target's current bundle from `store` and [`sync`](Self::sync)s.
    pub async fn sync_from(&self, store: &dyn Store) -> Result<Deployed, DeployError> {
        let installed = store
            .current(&self.target)
            .await
            .map_err(|source| DeployError::Store {
                target: self.target.clone(),
                source,
            })?;
        self.sync(installed.as_ref())
    }

    /// Writes `bundle` as a new set and makes it current (see the [module](self) doc);
    /// returns the set's directory.
    pub fn write(&self, bundle: &Bundle) -> Result<PathBuf, DeployError> {
        let fs = &*self.fs;
        let versions = self.dir.join("versions");
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&self.dir)
                .map_err(self.io("create", &self.dir))?;
        }
        fs.create_dir(&versions, 0o755)
            .map_err(self.io("create", &versions))?;
        let number = next_version(&versions).map_err(self.io("list", &versions))?;
        let name = number.to_string();
        let set = versions.join(&name);
        let tmp = versions.join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            fs.remove_dir_all(&tmp).map_err(self.io("remove", &tmp))?;
        }
        fs.create_dir(&tmp, 0o755)
            .map_err(self.io("create", &tmp))?;
        let result = self.write_set(bundle, &tmp, &set, &versions, &name);
        if result.is_err() && tmp.exists() {
            // Nothing was made current; a half-written set is of no use to anyone.
            let _ = fs.remove_dir_all(&tmp);
        }
        result?;
        self.prune(&versions, number);
        tracing::info!(target = %self.target, dir = %self.dir.display(), set = %set.display(),
            fingerprint = %bundle.meta().fingerprint, "deploy: new certificate files in place");
        Ok(set)
    }

    fn write_set(
        &self,
        bundle: &Bundle,
        tmp: &Path,
        set: &Path,
        versions: &Path,
        name: &str,
    ) -> Result<(), DeployError> {
        let fs = &*self.fs;
        let chain = bundle.chain();
        let pem = |certs: &[rustls_pki_types::CertificateDer<'static>]| {
            let pems: Vec<pem::Pem> = certs
                .iter()
                .map(|c| pem::Pem::new("CERTIFICATE", c.to_vec()))
                .collect();
            pem::encode_many_config(
                &pems,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        };
        let key = bundle.secret_key().secret_pem();
        let files: [(&str, zeroize::Zeroizing<Vec<u8>>, u32); 4] = [
            ("cert.pem", pem(&chain[..1]).into_bytes().into(), 0o644),
            ("chain.pem", pem(&chain[1..]).into_bytes().into(), 0o644),
            (
                "fullchain.pem",
                bundle.chain_pem().into_bytes().into(),
                0o644,
            ),
            ("privkey.pem", key.as_bytes().to_vec().into(), 0o600),
        ];
        for (file, bytes, mode) in &files {
            let path = tmp.join(file);
            fs.write_file(&path, bytes, *mode)
                .map_err(self.io("write", &path))?;
            self.chown(&path)?;
            fs.sync_file(&path).map_err(self.io("sync", &path))?;
        }
        self.chown(tmp)?;
        fs.sync_dir(tmp).map_err(self.io("sync", tmp))?;
        fs.rename(tmp, set)
            .map_err(self.io("rename into place", set))?;
        fs.sync_dir(versions).map_err(self.io("sync", versions))?;
        // The swap: a new link, renamed over `live`.
        let link = self.dir.join(".live.tmp");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("versions").join(name), &link)
            .map_err(self.io("create the link", &link))?;
        let live = self.dir.join("live");
        fs.rename(&link, &live)
            .map_err(self.io("switch the link", &live))?;
        // The stable names, once (they point through `live`).
        for file in FILES {
            let path = self.path(file);
            let wanted = Path::new("live").join(file);
            if std::fs::read_link(&path).is_ok_and(|t| t == wanted) {
                continue;
            }
            let tmp_link = self.dir.join(format!(".{file}.tmp"));
            let _ = std::fs::remove_file(&tmp_link);
            std::os::unix::fs::symlink(&wanted, &tmp_link)
                .map_err(self.io("create the link", &tmp_link))?;
            fs.rename(&tmp_link, &path)
                .map_err(self.io("create the link", &path))?;
        }
        fs.sync_dir(&self.dir).map_err(self.io("sync", &self.dir))?;
        Ok(())
    }

    fn chown(&self, path: &Path) -> Result<(), DeployError> {
        if self.owner.is_none() && self.group.is_none() {
            return Ok(());
        }
        std::os::unix::fs::chown(path, self.owner, self.group).map_err(self.io("chown", path))
    }

    /// Removes every set but the current one and the [`KEPT_VERSIONS`] before it; a
    /// failure is only logged (the current set is in place).
    fn prune(&self, versions: &Path, current: u64) {
        let Ok(numbers) = set_numbers(versions) else {
            return;
        };
        let mut older: Vec<u64> = numbers.into_iter().filter(|n| *n < current).collect();
        older.sort_unstable_by(|a, b| b.cmp(a));
        for n in older.into_iter().skip(KEPT_VERSIONS) {
            let path = versions.join(n.to_string());
            if let Err(e) = self.fs.remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "deploy: an old certificate set could not be removed");
            }
        }
    }

    /// Removes the deployed files: the stable names first (a server starting now finds no
    /// file rather than an old one), then `live`, then every set.
    pub fn remove(&self) -> Result<(), DeployError> {
        let fs = &*self.fs;
        for file in FILES {
            let path = self.path(file);
            if std::fs::symlink_metadata(&path).is_ok() {
                fs.remove_file(&path).map_err(self.io("remove", &path))?;
            }
        }
        let live = self.dir.join("live");
        if std::fs::symlink_metadata(&live).is_ok() {
            fs.remove_file(&live).map_err(self.io("remove", &live))?;
        }
        let versions = self.dir.join("versions");
        if versions.exists() {
            fs.remove_dir_all(&versions)
                .map_err(self.io("remove", &versions))?;
        }
        if self.dir.exists() {
            fs.sync_dir(&self.dir).map_err(self.io("sync", &self.dir))?;
        }
        tracing::info!(target = %self.target, dir = %self.dir.display(), "deploy: certificate files removed (the target has no certificate)");
        Ok(())
    }
}

/// The numbered sets under `versions`.
fn set_numbers(versions: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(versions)? {
        if let Some(n) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(n);
        }
    }
    Ok(out)
}

/// One more than the largest set number (1 for the first).
fn next_version(versions: &Path) -> io::Result<u64> {
    Ok(set_numbers(versions)?
        .into_iter()
        .max()
        .unwrap_or(0)
        .saturating_add(1))
}

/// The fingerprint of the first certificate of the PEM file `path`; `None` when the file
/// is missing or holds none.
fn first_certificate(path: &Path) -> io::Result<Option<Fingerprint>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(pem::parse_many(&text)
        .ok()
        .and_then(|blocks| blocks.into_iter().find(|b| b.tag() == "CERTIFICATE"))
        .map(|b| Fingerprint::of(b.contents())))
}
