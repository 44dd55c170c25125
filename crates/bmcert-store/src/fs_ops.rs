//! The file-system operations [`DirStore`](crate::DirStore) writes through.
//!
//! Every step of a write that a crash or a full disk can interrupt goes through
//! [`FsOps`], so tests can inject failures at exactly that step ("the fsync of the key
//! fails", "the rename fails", "the disk is full") and check that the previous version stays
//! current. Production code uses [`RealFs`]. Reads do not go through this seam.

use core::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The write-side file-system operations of the directory store.
pub trait FsOps: Debug + Send + Sync {
    /// Creates (or truncates) `path` with permission `mode` and writes `bytes`, without
    /// syncing.
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()>;
    /// Appends `bytes` to `path` (created with `mode` if missing) and syncs it.
    fn append_sync(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()>;
    /// Flushes a file's data and metadata to disk (`fsync`).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Flushes a directory's entries to disk, making renames and creations in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to` if it is a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates a directory with permission `mode`; an existing one is not an error.
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and its content.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl FsOps for RealFs {
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        file.write_all(bytes)
    }

    fn append_sync(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .open(path)?;
        file.write_all(bytes)?;
        file.sync_data()
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        match fs::DirBuilder::new().mode(mode).create(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            other => other,
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
}
