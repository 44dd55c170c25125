//! Conventional record keys and prefixes, so the ACME, renewal and warning code of every
//! server agree on where things live.

use bmcert_topology::Target;

use crate::types::{RecordKey, RecordKeyError};

/// The installation's ACME account credentials (secret: holds the account key).
pub const ACME_ACCOUNT: &str = "acme/account";
/// The terms-of-service URL the administrator accepted, and when.
pub const ACME_TERMS: &str = "acme/terms";
/// HTTP-01 key authorizations, one record per token: `acme/http01/TOKEN`.
pub const ACME_HTTP01_PREFIX: &str = "acme/http01";
/// Renewal state per target: `renewal/system`, `renewal/domain/NAME`.
pub const RENEWAL_PREFIX: &str = "renewal";
/// Warning e-mails sent per target: `warning/system`, `warning/domain/NAME`.
pub const WARNING_PREFIX: &str = "warning";
/// The contact address given when Let's Encrypt was activated for a target (warnings go
/// there): `contact/system`, `contact/domain/NAME`.
pub const CONTACT_PREFIX: &str = "contact";
/// The ACME profile chosen for a target (`--profile`, `--require-profile`), kept for its
/// renewals: `profile/system`, `profile/domain/NAME`.
pub const PROFILE_PREFIX: &str = "profile";
/// The renewal lock: only its holder orders certificates.
pub const RENEWAL_LOCK: &str = "renewal";

/// The record key of `target` under `prefix`: `PREFIX/system` or `PREFIX/domain/NAME`.
pub fn target_key(prefix: &str, target: &Target) -> Result<RecordKey, RecordKeyError> {
    match target {
        Target::System => RecordKey::new(&format!("{prefix}/system")),
        Target::Domain(name) => RecordKey::new(&format!("{prefix}/domain/{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keys_fit_the_longest_domain_name() {
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        let target = Target::Domain(long.parse().unwrap());
        let key = target_key(RENEWAL_PREFIX, &target).unwrap();
        assert!(key.as_str().ends_with(&long));
        assert_eq!(
            target_key(WARNING_PREFIX, &Target::System)
                .unwrap()
                .as_str(),
            "warning/system"
        );
    }
}
