//! The background renewer under the real [`SystemClock`]: an overdue ACME certificate gets
//! an attempt soon after `start()`. (The other renewer tests drive a `ManualClock` set to
//! whole seconds, which hides a failure that only a sub-second `now` shows.)
//!
//! A regression test: a48e49e rounded planned times *up* to a whole second, and the
//! rate-limit plan puts an overdue certificate at `now`, so a pass at a sub-second `now`
//! found it due "in under a second", attempted nothing, woke at that second and rounded up
//! again, forever (4a94692 rounds down).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bmcert_renew::*;
use bmcert_store::{DirStore, Fence, Source, Store};
use bmcert_topology::Target;
use support::{bundle, install, unique};
use time::{Duration, OffsetDateTime};

/// An issuer that fails at once (no CA involved: this is about when the renewer attempts).
#[derive(Debug, Default)]
struct FailingIssuer {
    calls: AtomicU32,
}

impl Issuer for FailingIssuer {
    fn issue<'a>(
        &'a self,
        _target: &'a Target,
        _names: &'a [String],
        _replaces: Option<&'a str>,
        _fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), IssueError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(common::failure()) })
    }
}

#[tokio::test]
async fn an_overdue_certificate_is_attempted_soon_after_start_under_the_system_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let host = unique("system-clock");
    let now = OffsetDateTime::now_utc();
    // 70 days into 90: overdue (due when a third remains, day 60 at the latest).
    let old = bundle(
        &[&host],
        now - Duration::days(70),
        now + Duration::days(20),
        Source::Acme,
    );
    install(store.as_ref(), &Target::System, &old).await;
    let issuer = Arc::new(FailingIssuer::default());
    let renewer = Renewer::new(
        store.clone(),
        issuer.clone(),
        Arc::new(MemoryNotifier::default()),
        Arc::new(SystemClock),
        RenewerConfig {
            holder: "system-clock".into(),
            ..RenewerConfig::default()
        },
    );
    let running = renewer.start();
    let attempted = support::eventually(StdDuration::from_secs(10), || {
        issuer.calls.load(Ordering::SeqCst) > 0
    })
    .await;
    let status = renewer.status().await.unwrap();
    running.stop().await;
    assert!(attempted, "no attempt within 10 s of start(): {status:?}");
    assert_eq!(
        status[0].last_error,
        Some(common::failure().to_string()),
        "{status:?}"
    );
}
