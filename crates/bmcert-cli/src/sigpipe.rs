//! SIGPIPE and sockets.
//!
//! `main` restores SIGPIPE's default disposition so that `bmcert list | head -1` ends quietly
//! instead of panicking in `println!`. The disposition is process-wide, and while `send` on a
//! socket is given `MSG_NOSIGNAL`, the vectored writes of hyper and tonic (`writev`) are not:
//! an etcd or ACME server that closes a connection mid-write would kill the whole command
//! with SIGPIPE (status 141, no message) instead of letting it report the error. Seen with
//! `--store etcd://` pointed at an etcd that serves TLS.
//!
//! The signal mask is per thread and inherited by new threads, so the threads that talk to
//! servers are started with SIGPIPE blocked: their writes then fail with `EPIPE`, an ordinary
//! error. The main thread, which prints, keeps the default.

/// Runs `f` with SIGPIPE blocked in this thread, so that the threads `f` starts (the etcd
/// store's runtime) inherit the block; the calling thread's mask is restored afterwards.
#[cfg(unix)]
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(crate) fn with_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: plain libc calls on stack values initialised by sigemptyset; pthread_sigmask
    // only changes this thread's mask, which is restored before returning.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        let mut old: libc::sigset_t = core::mem::zeroed();
        let blocked = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) == 0;
        let out = f();
        if blocked {
            // A SIGPIPE raised in this thread meanwhile (none is expected: it only waits)
            // is consumed rather than delivered when the mask is restored.
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&set, core::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        }
        out
    }
}

#[cfg(not(unix))]
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(crate) fn with_blocked<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// Blocks SIGPIPE in the calling thread for good: `on_thread_start` of the command's own
/// tokio runtimes (ACME, renewal).
pub(crate) fn block_in_this_thread() {
    #[cfg(unix)]
    // SAFETY: as in `with_blocked`; the mask of this (runtime) thread only.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut());
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sigpipe_blocked_here() -> bool {
        // SAFETY: reads this thread's mask into a zeroed sigset_t.
        unsafe {
            let mut current: libc::sigset_t = core::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut current);
            libc::sigismember(&current, libc::SIGPIPE) == 1
        }
    }

    #[test]
    fn threads_started_inside_inherit_the_block_and_the_caller_gets_its_mask_back() {
        std::thread::spawn(|| {
            assert!(!sigpipe_blocked_here());
            let inner = with_blocked(|| {
                assert!(sigpipe_blocked_here());
                std::thread::spawn(sigpipe_blocked_here).join().unwrap()
            });
            assert!(inner, "a thread started inside did not inherit the block");
            assert!(
                !sigpipe_blocked_here(),
                "the caller's mask was not restored"
            );
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .on_thread_start(block_in_this_thread)
                .build()
                .unwrap();
            let in_worker = rt.block_on(async {
                tokio::spawn(async { sigpipe_blocked_here() })
                    .await
                    .unwrap()
            });
            assert!(in_worker);
            assert!(!sigpipe_blocked_here());
        })
        .join()
        .unwrap();
    }
}
