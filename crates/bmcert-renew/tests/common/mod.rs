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

use bmcert_renew::{BoxFuture, IssueError, Issuer};
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
    pub window: std::sync::Mutex<Option<bmcert_acme::RenewalWindow>>,
    /// When set, failures are this instead of [`failure`] (built anew for each call).
    pub failing_with: std::sync::Mutex<Option<fn() -> IssueError>>,
    /// What [`Issuer::order_key`] answers.
    pub key: std::sync::Mutex<Option<String>>,
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
            failing_with: Default::default(),
            key: Default::default(),
        }
    }
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The failure a failing [`ScriptedIssuer`] returns: the CA cannot be reached.
pub fn failure() -> IssueError {
    IssueError::Transient {
        retry_after: None,
        source: bmcert_acme::AcmeError::Unreachable {
            url: "https://127.0.0.1:1/dir".into(),
            during: "reading the directory",
            cause: bmcert_acme::Transport::NoAnswer { seconds: 60 },
        },
    }
}

/// A permanent refusal: the CA's CAA check forbids it.
pub fn caa_refusal() -> IssueError {
    IssueError::from_acme(bmcert_acme::AcmeError::Refused {
        during: "validating the challenges",
        problem: bmcert_acme::Problem {
            kind: Some("urn:ietf:params:acme:error:caa".into()),
            detail: Some("CAA record for example.test prevents issuance".into()),
            status: Some(403),
            subproblems: Vec::new(),
            retry_after: None,
        },
    })
}

/// The CA's rate limit, with a `Retry-After` of two hours, sorted as the ACME issuer sorts
/// it (the `Retry-After` travels in the problem document).
pub fn rate_limited() -> IssueError {
    let e = IssueError::from_acme(bmcert_acme::AcmeError::Refused {
        during: "placing the order",
        problem: bmcert_acme::Problem {
            kind: Some("urn:ietf:params:acme:error:rateLimited".into()),
            detail: Some("too many new orders".into()),
            status: Some(429),
            subproblems: Vec::new(),
            retry_after: Some(std::time::Duration::from_secs(7200)),
        },
    });
    assert!(
        matches!(&e, IssueError::RateLimited { retry_after: Some(d), .. } if *d == time::Duration::hours(2)),
        "{e:?}"
    );
    e
}

/// A store error of a test issuer's install, as the ACME issuer sorts it.
pub fn install_error(e: bmcert_store::StoreError) -> IssueError {
    IssueError::from_acme(match e {
        bmcert_store::StoreError::Fenced { lock, token } => bmcert_acme::AcmeError::Fenced {
            during: "installing the certificate",
            lock,
            token,
        },
        other => bmcert_acme::AcmeError::Store {
            during: "installing the certificate",
            source: bmcert_acme::StateError::Store(other),
        },
    })
}

impl Issuer for ScriptedIssuer {
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        names: &'a [String],
        replaces: Option<&'a str>,
        fence: &'a bmcert_store::Fence,
    ) -> BoxFuture<'a, Result<(), IssueError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut r) = self.replaced.lock() {
                r.push(replaces.map(str::to_owned));
            }
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self.fail.load(Ordering::SeqCst) {
                let make = self.failing_with.lock().unwrap().unwrap_or(failure);
                return Err(make());
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
                .map_err(install_error)?;
            Ok(())
        })
    }

    fn order_key(&self, _target: &Target) -> Option<String> {
        self.key.lock().unwrap().clone()
    }

    fn renewal_window<'a>(
        &'a self,
        _target: &'a Target,
        _leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<bmcert_acme::RenewalWindow>> {
        let w = self.window.lock().unwrap().clone();
        Box::pin(async move { w })
    }
}
