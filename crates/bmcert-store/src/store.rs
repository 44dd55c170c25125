use core::fmt::Debug;
use core::future::Future;
use core::pin::Pin;
use core::time::Duration;

use bmcert_topology::Target;

use crate::error::StoreError;
use crate::types::{Bundle, Condition, Installed, Lease, Listed, Record, RecordKey, Revision};
use crate::verify::Damaged;
use crate::watch::Watch;

/// The boxed future every [`Store`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a certificate installation keeps, wherever it keeps it.
///
/// Implementations: [`DirStore`](crate::DirStore) (one directory, the embedded default) and,
/// later, etcd. The contract, which the [conformance suite](crate#conformance) checks:
///
/// - **Revisions.** Every write gets the next store-wide [`Revision`]; a bundle or record
///   carries the revision of its last change.
/// - **Compare-and-swap.** Every write takes a [`Condition`]: an expected revision (or
///   absence) of the key written, and optionally a [`Fence`](crate::Fence) from a
///   [`Lease`]. Both are checked atomically with the write; a failed check changes nothing
///   and returns [`StoreError::Conflict`] or [`StoreError::Fenced`].
/// - **Bundles are atomic.** A reader sees a target's previous bundle or its new one, whole:
///   never a chain without its key, even across a crash of the writer.
/// - **Proven reads.** Every bundle handed out ([`current`](Self::current),
///   [`history`](Self::history), [`list`](Self::list)) is proven whole first; a damaged
///   target is reported alone ([`Damaged`]) and [`install`](Self::install) and
///   [`disable`](Self::disable) of it succeed and repair it. Store-wide bookkeeping
///   (revision counter, journal) is rebuilt from what is stored when damaged, and stray
///   entries are ignored with a warning.
/// - **History.** Installing keeps the last 3 previous versions; [`Store::rollback`] makes
///   the one before the current one current again; [`Store::disable`] deletes them all.
/// - **Watch.** [`Store::watch`] delivers every change after a revision, in order, including
///   changes made by other processes or servers, so a client can resume after a restart.
/// - **Locks** expire unless renewed; the fencing token of a grant is larger than any
///   earlier grant's.
///
/// Futures are `Send` and boxed, so the trait is object-safe and used as `Arc<dyn Store>`.
/// Callers need no particular runtime beyond what the backend documents:
/// [`DirStore`](crate::DirStore) does its (short, blocking) file I/O when a method is called
/// and returns a ready future, so [`block_on`](crate::block_on) drives it.
pub trait Store: Debug + Send + Sync {
    /// The current revision of the whole store (the last change's).
    fn revision(&self) -> StoreFuture<'_, Revision>;

    /// The current bundle of `target`, if one is installed, proven whole
    /// ([`Bundle::verified`]); [`StoreError::Damaged`] when it is not (or when the store
    /// cannot tell which version is current).
    fn current<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<Installed>>;

    /// The kept versions of `target` other than the current one, newest version first
    /// (at most 3), each proven whole. A kept version that fails the proof is left out with
    /// a warning in the log (rollback to it is refused). When the target's own state is
    /// damaged (the current version unknown), every version still kept is returned, with
    /// revision 0: they are what a reader may fall back on.
    fn history<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Vec<Installed>>;

    /// Every target that has a current bundle, sorted by target: its metadata, proven
    /// whole, or why it is [`Damaged`]. One damaged target does not fail the list: only a
    /// failure of the store as a whole (unreachable, the store directory unreadable) does.
    fn list(&self) -> StoreFuture<'_, Vec<Result<Listed, Damaged>>>;

    /// Every target that has a current bundle, sorted by target: its metadata as recorded,
    /// **not** proven whole, and without its key, in one read of the store (directory: each
    /// target's `state.json` and current `meta.json`, once; etcd: one range read). For
    /// planners that need no key and serve nothing ([`list`](Self::list) proves every
    /// bundle, which reads and checks every key): the renewal pass reads this, then reads
    /// with [`current`](Self::current), proven, only the bundle it acts on. A target whose
    /// state or metadata cannot be read is [`Damaged`]; damage only the proof would find
    /// (a key that does not match, a chain edited) is not seen here.
    fn list_meta(&self) -> StoreFuture<'_, Vec<Result<Listed, Damaged>>>;

    /// Makes `bundle` the current one of `target` (the previous one goes to the history).
    /// `condition.expect` is about the target's current bundle.
    fn install<'a>(
        &'a self,
        target: &'a Target,
        bundle: &'a Bundle,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed>;

    /// Makes the newest kept version older than the current one current again; returns it.
    fn rollback<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed>;

    /// Deletes the current bundle of `target` and every kept older version, private keys
    /// included (the administrator manual: disabling removes the domain's certificate from
    /// the servers); afterwards [`current`](Self::current) is `None`, [`history`](Self::history)
    /// is empty and [`rollback`](Self::rollback) finds no version. Version numbers are not
    /// reused by a later install. Returns the revision of the change, or `None` when there
    /// was nothing to delete. The store does not forbid disabling the system target: that
    /// policy is the facade's.
    fn disable<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>>;

    /// A record of the key-value area.
    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<Record>>;

    /// Writes a record; returns its new revision.
    fn put<'a>(
        &'a self,
        key: &'a RecordKey,
        value: &'a [u8],
        condition: &'a Condition,
    ) -> StoreFuture<'a, Revision>;

    /// Deletes a record; returns the revision of the change, or `None` if it was absent.
    fn delete<'a>(
        &'a self,
        key: &'a RecordKey,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>>;

    /// The keys of the records at or under `prefix` (see [`RecordKey::is_under`]), sorted.
    fn keys<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<RecordKey>>;

    /// The records at or under `prefix` with their values and revisions, sorted by key, in
    /// one read of the store (etcd: one range read), as [`keys`](Self::keys) then
    /// [`get`](Self::get) of each would give them when nothing changes in between.
    fn records<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(RecordKey, Record)>>;

    /// Changes after revision `after`, then live ones. `after` = [`Revision::ZERO`] replays
    /// every change still kept; pass the revision of the state you loaded to miss nothing.
    /// If changes after `after` were already discarded, the feed yields
    /// [`StoreError::Compacted`] and ends.
    fn watch(&self, after: Revision) -> StoreFuture<'_, Watch>;

    /// Takes the lock `name` for `ttl` if it is free or expired; otherwise
    /// [`StoreError::LockHeld`].
    fn lock<'a>(
        &'a self,
        name: &'a RecordKey,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease>;

    /// Extends a held lock by `ttl` from now; [`StoreError::Fenced`] if it was lost.
    fn renew<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, Lease>;

    /// Releases a held lock; releasing a lock already lost is not an error.
    fn unlock<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()>;
}
