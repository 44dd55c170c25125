//! Test support (feature `testing`): [`FaultyStore`], a [`Store`] that forwards every call
//! to an inner store, counts the calls, fails the operations a test switches to failing,
//! and lets a test observe each lock grant.
//!
//! Tests of code built on a [`Store`] use it to play a store that cannot be reached (etcd
//! down), a lease that is lost (fenced), or to watch which locks are granted, without
//! writing the fifteen forwarding methods again.
//!
//! ```
//! use bmcert_store::testing::{Fault, FaultyStore, Op};
//! use bmcert_store::{block_on, DirStore, Store, StoreError};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = FaultyStore::new(DirStore::open(dir.path().join("store")).unwrap());
//! store.fail(Op::List, Fault::Unavailable("connection refused".into()));
//! assert!(matches!(block_on(store.list()), Err(StoreError::Unavailable(_))));
//! store.heal(Op::List);
//! assert!(block_on(store.list()).unwrap().is_empty());
//! assert_eq!(store.calls(Op::List), 2);
//! ```

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::sync::Mutex;

use bmcert_topology::Target;

use crate::error::StoreError;
use crate::store::{Store, StoreFuture};
use crate::types::{
    Bundle, Condition, Installed, Lease, Listed, Record, RecordKey, Revision, SecretKey,
};
use crate::verify::Damaged;
use crate::watch::Watch;

/// One [`Store`] method, as named to [`FaultyStore::fail`] and [`FaultyStore::calls`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the `Store` method of the same name
pub enum Op {
    Revision,
    Current,
    History,
    List,
    ListMeta,
    Install,
    Rollback,
    Disable,
    Get,
    Put,
    Delete,
    Keys,
    Records,
    Watch,
    Lock,
    Renew,
    Unlock,
}

impl Op {
    /// Every operation, in the order of the [`Store`] trait.
    pub const ALL: [Self; 17] = [
        Self::Revision,
        Self::Current,
        Self::History,
        Self::List,
        Self::ListMeta,
        Self::Install,
        Self::Rollback,
        Self::Disable,
        Self::Get,
        Self::Put,
        Self::Delete,
        Self::Keys,
        Self::Records,
        Self::Watch,
        Self::Lock,
        Self::Renew,
        Self::Unlock,
    ];

    const COUNT: usize = Self::ALL.len();

    fn index(self) -> usize {
        self as usize
    }
}

/// How a failing operation of a [`FaultyStore`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// [`StoreError::Unavailable`] with this message: the store cannot be reached.
    Unavailable(String),
    /// [`StoreError::Fenced`]: the lease is no longer held. [`Store::renew`] and
    /// [`Store::unlock`] name the lease's lock and token; other operations name their
    /// operation and token 0.
    Fenced,
}

/// Called with each lease [`Store::lock`] grants (see [`FaultyStore::on_lock`]).
type LockHook = Box<dyn Fn(&Lease) + Send + Sync>;

/// A [`Store`] that forwards to `S`, except for the operations switched to fail.
///
/// Every call is counted ([`calls`](Self::calls)) whether it fails or not. A failing
/// operation answers its [`Fault`] without calling the inner store.
pub struct FaultyStore<S> {
    inner: S,
    faults: Mutex<[Option<Fault>; Op::COUNT]>,
    calls: [AtomicU32; Op::COUNT],
    on_lock: Option<LockHook>,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner`, with every operation passing through.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            faults: Mutex::new(Default::default()),
            calls: Default::default(),
            on_lock: None,
        }
    }

    /// Calls `hook` with every lease [`Store::lock`] grants, before the caller gets it.
    pub fn on_lock(mut self, hook: impl Fn(&Lease) + Send + Sync + 'static) -> Self {
        self.on_lock = Some(Box::new(hook));
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes `op` answer `fault` from now on.
    pub fn fail(&self, op: Op, fault: Fault) {
        self.set(op, Some(fault));
    }

    /// Makes `op` pass through to the inner store again.
    pub fn heal(&self, op: Op) {
        self.set(op, None);
    }

    /// Makes every operation answer `fault` (a store that cannot be reached at all).
    pub fn fail_all(&self, fault: Fault) {
        for op in Op::ALL {
            self.fail(op, fault.clone());
        }
    }

    /// Makes every operation pass through again.
    pub fn heal_all(&self) {
        for op in Op::ALL {
            self.heal(op);
        }
    }

    /// How `op` answers now: `None` when it passes through.
    pub fn fault(&self, op: Op) -> Option<Fault> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())[op.index()]
        .clone()
    }

    /// How many times `op` was called, failing or not.
    pub fn calls(&self, op: Op) -> u32 {
        self.calls[op.index()].load(Ordering::SeqCst)
    }

    /// How many calls of any operation were made, failing or not: the store round trips
    /// of the code under test.
    pub fn total_calls(&self) -> u32 {
        Op::ALL.iter().map(|op| self.calls(*op)).sum()
    }

    /// The calls made so far of every operation that was called, in the order of
    /// [`Op::ALL`] (for assertions and their messages).
    pub fn call_counts(&self) -> Vec<(Op, u32)> {
        Op::ALL
            .iter()
            .map(|op| (*op, self.calls(*op)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn set(&self, op: Op, fault: Option<Fault>) {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())[op.index()] = fault;
    }

    /// Counts the call; the error to answer when `op` is failing.
    fn check(&self, op: Op, lease: Option<&Lease>) -> Option<StoreError> {
        self.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        self.fault(op).map(|fault| match fault {
            Fault::Unavailable(message) => StoreError::Unavailable(message.into()),
            Fault::Fenced => match lease {
                Some(lease) => StoreError::Fenced {
                    lock: lease.lock.to_string(),
                    token: lease.token,
                },
                None => StoreError::Fenced {
                    lock: format!("{op:?} (test fault)"),
                    token: 0,
                },
            },
        })
    }
}

/// Answers the fault of `$op`, if it is failing, else forwards `$call`.
macro_rules! forward {
    ($self:ident, $op:expr, $lease:expr, $call:expr) => {
        match $self.check($op, $lease) {
            Some(error) => Box::pin(core::future::ready(Err(error))),
            None => $call,
        }
    };
}

impl<S: Store> Store for FaultyStore<S> {
    fn revision(&self) -> StoreFuture<'_, Revision> {
        forward!(self, Op::Revision, None, self.inner.revision())
    }
    fn current<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<Installed>> {
        forward!(self, Op::Current, None, self.inner.current(target))
    }
    fn history<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Vec<Installed>> {
        forward!(self, Op::History, None, self.inner.history(target))
    }
    fn list(&self) -> StoreFuture<'_, Vec<Result<Listed, Damaged>>> {
        forward!(self, Op::List, None, self.inner.list())
    }
    fn list_meta(&self) -> StoreFuture<'_, Vec<Result<Listed, Damaged>>> {
        forward!(self, Op::ListMeta, None, self.inner.list_meta())
    }
    fn install<'a>(
        &'a self,
        target: &'a Target,
        bundle: &'a Bundle,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed> {
        forward!(
            self,
            Op::Install,
            None,
            self.inner.install(target, bundle, condition)
        )
    }
    fn rollback<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed> {
        forward!(
            self,
            Op::Rollback,
            None,
            self.inner.rollback(target, condition)
        )
    }
    fn disable<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>> {
        forward!(
            self,
            Op::Disable,
            None,
            self.inner.disable(target, condition)
        )
    }
    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<Record>> {
        forward!(self, Op::Get, None, self.inner.get(key))
    }
    fn put<'a>(
        &'a self,
        key: &'a RecordKey,
        value: &'a [u8],
        condition: &'a Condition,
    ) -> StoreFuture<'a, Revision> {
        forward!(self, Op::Put, None, self.inner.put(key, value, condition))
    }
    fn delete<'a>(
        &'a self,
        key: &'a RecordKey,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>> {
        forward!(self, Op::Delete, None, self.inner.delete(key, condition))
    }
    fn keys<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<RecordKey>> {
        forward!(self, Op::Keys, None, self.inner.keys(prefix))
    }
    fn records<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(RecordKey, Record)>> {
        forward!(self, Op::Records, None, self.inner.records(prefix))
    }
    fn watch(&self, after: Revision) -> StoreFuture<'_, Watch> {
        forward!(self, Op::Watch, None, self.inner.watch(after))
    }
    fn lock<'a>(
        &'a self,
        name: &'a RecordKey,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease> {
        forward!(self, Op::Lock, None, {
            let granted = self.inner.lock(name, holder, ttl);
            match &self.on_lock {
                None => granted,
                Some(hook) => Box::pin(async move {
                    let lease = granted.await?;
                    hook(&lease);
                    Ok(lease)
                }),
            }
        })
    }
    fn renew<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, Lease> {
        forward!(self, Op::Renew, Some(lease), self.inner.renew(lease, ttl))
    }
    fn unlock<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        forward!(self, Op::Unlock, Some(lease), self.inner.unlock(lease))
    }
}

impl<S: fmt::Debug> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults = self
            .faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let failing: Vec<(Op, &Fault)> = Op::ALL
            .iter()
            .zip(faults.iter())
            .filter_map(|(op, fault)| fault.as_ref().map(|fault| (*op, fault)))
            .collect();
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("failing", &failing)
            .field("on_lock", &self.on_lock.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::DirStore;
    use std::sync::Arc;

    fn store(dir: &tempfile::TempDir) -> FaultyStore<DirStore> {
        FaultyStore::new(DirStore::open(dir.path().join("store")).unwrap())
    }

    #[test]
    fn op_index_follows_all() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?}");
        }
    }

    #[test]
    fn a_failing_operation_answers_its_fault_and_heals() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let key = RecordKey::new("acme/terms").unwrap();
        store.fail(Op::Put, Fault::Unavailable("etcd is down (test)".into()));
        assert_eq!(
            store.fault(Op::Put),
            Some(Fault::Unavailable("etcd is down (test)".into()))
        );
        let error = block_on(store.put(&key, b"v", &Condition::absent())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the store is unavailable: etcd is down (test)"
        );
        // Nothing reached the inner store; other operations pass.
        assert!(block_on(store.get(&key)).unwrap().is_none());
        store.heal(Op::Put);
        assert_eq!(store.fault(Op::Put), None);
        block_on(store.put(&key, b"v", &Condition::absent())).unwrap();
        assert!(block_on(store.inner().get(&key)).unwrap().is_some());
        assert_eq!((store.calls(Op::Put), store.calls(Op::Get)), (2, 1));
        assert_eq!(store.calls(Op::Delete), 0);
    }

    #[test]
    fn fenced_renewals_name_the_lease_and_lock_grants_are_observed() {
        let dir = tempfile::tempdir().unwrap();
        let granted = Arc::new(Mutex::new(Vec::new()));
        let seen = granted.clone();
        let store = store(&dir).on_lock(move |lease| seen.lock().unwrap().push(lease.token));
        let name = RecordKey::new("locks/renewal").unwrap();
        let lease = block_on(store.lock(&name, "a", Duration::from_secs(30))).unwrap();
        assert_eq!(*granted.lock().unwrap(), vec![lease.token]);

        store.fail(Op::Renew, Fault::Fenced);
        match block_on(store.renew(&lease, Duration::from_secs(30))) {
            Err(StoreError::Fenced { lock, token }) => {
                assert_eq!((lock, token), (lease.lock.to_string(), lease.token));
            }
            other => panic!("expected Fenced, got {other:?}"),
        }
        store.fail(Op::Lock, Fault::Fenced);
        assert!(matches!(
            block_on(store.lock(&name, "b", Duration::from_secs(30))),
            Err(StoreError::Fenced { token: 0, .. })
        ));
        // A refused lock is not a grant.
        assert_eq!(granted.lock().unwrap().len(), 1);
        store.heal_all();
        assert_eq!(store.fault(Op::Renew), None);
        store.fail_all(Fault::Unavailable("down".into()));
        assert!(Op::ALL.iter().all(|op| store.fault(*op).is_some()));
        let debug = format!("{store:?}");
        assert!(debug.contains("Renew") && debug.contains("Lock"), "{debug}");
    }
}

/// A raw item of a backend's storage, named for [`RawStorage`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RawItem {
    /// A target's current certificate chain on its own (directory store: `cert.pem`).
    Certificate,
    /// A target's current private key on its own (directory store: `key.pem`).
    Key,
    /// A target's current metadata on its own (directory store: `meta.json`).
    Metadata,
    /// A target's current bundle as one value (etcd: `bundle/TARGET`).
    Bundle,
    /// Which version of a target is current (directory store: `state.json`; etcd:
    /// `history/TARGET`, the version counter and the kept versions).
    State,
    /// Store-wide: the revision counter (directory store: `revision`).
    RevisionCounter,
    /// Store-wide: the change journal (directory store: `journal`).
    Journal,
}

impl RawItem {
    /// Whether the item belongs to one target (else it is store-wide).
    pub fn is_per_target(self) -> bool {
        !matches!(self, Self::RevisionCounter | Self::Journal)
    }
}

/// The test-only hook through which the corruption suite
/// ([`conformance::corruption`](crate::conformance::corruption)) damages a backend's raw
/// storage, as a disk error, a hand edit or an attacker would, without the backend exposing
/// raw writes in its public API (feature `testing`).
pub trait RawStorage: Send + Sync {
    /// The raw items the backend keeps: per target and store-wide.
    fn items(&self) -> Vec<RawItem>;
    /// The bytes of `item` of `target` (`target` is ignored for store-wide items), `None`
    /// when it is absent.
    fn read_raw<'a>(
        &'a self,
        target: &'a Target,
        item: RawItem,
    ) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Overwrites `item` of `target` with `bytes`, bypassing every check.
    fn write_raw<'a>(
        &'a self,
        target: &'a Target,
        item: RawItem,
        bytes: &'a [u8],
    ) -> StoreFuture<'a, ()>;
    /// Replaces the current private key of `target` with `key` (a valid key of another
    /// certificate), changing nothing else.
    fn swap_key<'a>(&'a self, target: &'a Target, key: &'a SecretKey) -> StoreFuture<'a, ()>;
    /// Rewrites the `not_after` of the current metadata of `target`, changing nothing else.
    fn set_not_after<'a>(
        &'a self,
        target: &'a Target,
        not_after: time::OffsetDateTime,
    ) -> StoreFuture<'a, ()>;
    /// Adds entries the store's layout does not name (stray files, directories or keys)
    /// next to `target`'s; returns where, for messages.
    fn add_strays<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Vec<String>>;
}

/// The real file system without fsync, for tests and benches that fill a directory store
/// with many targets and need durability no more than speed (installing thousands of targets
/// need not wait for the disk). Never for a real store: a crash can lose what it wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSyncFs;

impl crate::fs_ops::FsOps for NoSyncFs {
    fn write_file(&self, path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
        crate::fs_ops::RealFs.write_file(path, bytes, mode)
    }
    fn append_sync(&self, path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
        crate::fs_ops::RealFs.append_sync(path, bytes, mode)
    }
    fn sync_file(&self, _path: &std::path::Path) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _path: &std::path::Path) -> std::io::Result<()> {
        Ok(())
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        crate::fs_ops::RealFs.rename(from, to)
    }
    fn create_dir(&self, path: &std::path::Path, mode: u32) -> std::io::Result<()> {
        crate::fs_ops::RealFs.create_dir(path, mode)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        crate::fs_ops::RealFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        crate::fs_ops::RealFs.remove_dir_all(path)
    }
}
