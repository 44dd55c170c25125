use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::types::Change;

/// A live feed of store changes, returned by [`Store::watch`](crate::Store::watch).
///
/// Await [`Watch::recv`] from any executor, or block on [`Watch::recv_timeout`] from a
/// plain thread: the feed needs no particular async runtime. Dropping it stops the
/// backend's watcher. An `Err` item (such as [`StoreError::Compacted`]) is followed by the
/// end of the feed: reload and watch again from the current revision.
pub struct Watch {
    shared: Arc<Shared>,
    _guard: Option<Box<dyn Send>>,
}

/// The backend's end of a [`Watch`].
pub struct WatchSender {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Result<Change, StoreError>>,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere while pushing: the queue is intact.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Watch {
    /// A new feed. `guard` is kept alive as long as the feed (for example the backend's
    /// file watcher); the sender is for the backend.
    pub fn channel(guard: Option<Box<dyn Send>>) -> (WatchSender, Self) {
        let shared = Arc::new(Shared::default());
        (
            WatchSender {
                shared: shared.clone(),
            },
            Self {
                shared,
                _guard: guard,
            },
        )
    }

    /// Keeps `guard` alive with the feed (replaces any earlier guard).
    pub fn set_guard(&mut self, guard: Box<dyn Send>) {
        self._guard = Some(guard);
    }

    /// The next change; `None` when the backend closed the feed.
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Change, StoreError>>> + '_ {
        Next { watch: self }
    }

    /// The next change already received, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Change, StoreError>> {
        self.shared.lock().queue.pop_front()
    }

    /// Blocks the calling thread until a change arrives, the feed ends, or `timeout` passes
    /// (then `None`; [`Watch::is_closed`] tells the two apart).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Result<Change, StoreError>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(item) = state.queue.pop_front() {
                return Some(item);
            }
            if state.sender_gone {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = match self.shared.ready.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Whether the backend closed the feed and everything was read.
    pub fn is_closed(&self) -> bool {
        let state = self.shared.lock();
        state.sender_gone && state.queue.is_empty()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.shared.lock().receiver_gone = true;
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Watch")
            .field("pending", &state.queue.len())
            .field("closed", &state.sender_gone)
            .finish()
    }
}

struct Next<'a> {
    watch: &'a mut Watch,
}

impl Future for Next<'_> {
    type Output = Option<Result<Change, StoreError>>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.watch.shared.lock();
        if let Some(item) = state.queue.pop_front() {
            return Poll::Ready(Some(item));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl WatchSender {
    /// Queues a change (or an error, after which the backend should close the feed).
    /// Returns `false` when the receiver is gone: the backend can stop watching.
    pub fn send(&self, item: Result<Change, StoreError>) -> bool {
        let mut state = self.shared.lock();
        if state.receiver_gone {
            return false;
        }
        state.queue.push_back(item);
        let waker = state.waker.take();
        drop(state);
        self.shared.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Whether the receiver was dropped.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }
}

impl Drop for WatchSender {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.sender_gone = true;
        let waker = state.waker.take();
        drop(state);
        self.shared.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl fmt::Debug for WatchSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchSender").finish_non_exhaustive()
    }
}
