//! [`Clock`]: the time source of the store's locks and of the renewer.

use core::fmt;

use time::OffsetDateTime;

/// The time source. Validation and planning never read the system clock themselves; the
/// directory store's lock expiry and `bmcert-renew`'s renewer read this one.
pub trait Clock: fmt::Debug + Send + Sync {
    /// Now.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
