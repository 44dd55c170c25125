//! Shared test helpers: certificates with chosen validity, a scripted issuer.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bmcert_renew::{BoxFuture, Issuer};
use bmcert_store::{Bundle, Condition, Source, Store};
use bmcert_topology::Target;

/// A self-signed bundle for `names`, valid from `not_before` to `not_after`, with an
/// authority key identifier as CA-issued certificates have (ARI needs it).
pub use bmcert_test::renewal::self_signed_bundle_with_aki as bundle;

pub async fn install(store: &dyn Store, target: &Target, b: &Bundle) {
    store.install(target, b, &Condition::none()).await.unwrap();
}

/// An issuer that installs a fresh certificate (validity chosen by `lifetime` from the
/// clock of the test) or fails with a fixed message, and counts its calls.
#[derive(Debug)]
pub struct ScriptedIssuer {
    pub store: Arc<dyn Store>,
    pub calls: AtomicU32,
    pub fail: AtomicBool,
    pub delay: StdDuration,
    pub clock: Arc<bmcert_renew::ManualClock>,
    /// The `replaces` argument of each call.
    pub replaced: std::sync::Mutex<Vec<Option<String>>>,
    /// The renewal window the CA offers (ARI), if any.
    pub window: std::sync::Mutex<Option<bmcert_renew::policy::AriWindow>>,
}

impl ScriptedIssuer {
    pub fn new(store: Arc<dyn Store>, clock: Arc<bmcert_renew::ManualClock>) -> Self {
        Self {
            store,
            calls: AtomicU32::new(0),
            fail: AtomicBool::new(false),
            delay: StdDuration::ZERO,
            clock,
            replaced: Default::default(),
            window: Default::default(),
        }
    }
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

pub const FAILURE: &str =
    "connecting to the ACME directory https://127.0.0.1:1/dir failed: connection refused";

impl Issuer for ScriptedIssuer {
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        names: &'a [String],
        replaces: Option<&'a str>,
        fence: &'a bmcert_store::Fence,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut r) = self.replaced.lock() {
                r.push(replaces.map(str::to_owned));
            }
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(FAILURE.to_owned());
            }
            use bmcert_renew::Clock as _;
            let now = self.clock.now();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let b = bundle(&names, now, now + time::Duration::days(90), Source::Acme);
            self.store
                .install(
                    target,
                    &b,
                    &Condition {
                        fence: Some(fence.clone()),
                        ..Condition::none()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }

    fn renewal_window<'a>(
        &'a self,
        _target: &'a Target,
        _leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<bmcert_renew::policy::AriWindow>> {
        let w = *self.window.lock().unwrap();
        Box::pin(async move { w })
    }
}
