//! `bmcert init`: the bootstrap certificate, so the servers answer from their first start.
//!
//! Exit status: 0 done (made, or the system target already had a certificate); 2 usage or
//! I/O error.

use std::process::ExitCode;

use bmcert::{block_on, CertManager};
use rustls_pki_types::UnixTime;
use serde_json::json;

use crate::input::UsageError;
use crate::settings::Settings;
use crate::store_arg::open_store;

/// Makes the self-signed system certificate when the system target has none; the store
/// and the topology are the global settings.
pub(crate) fn run(settings: &Settings) -> Result<ExitCode, UsageError> {
    let manager = CertManager::new(open_store(settings)?, settings.topology()?);
    let made =
        block_on(manager.bootstrap(UnixTime::now())).map_err(|e| UsageError(e.to_string()))?;
    let installed = made.as_ref().and_then(|o| o.installed.as_ref());
    if settings.json {
        println!(
            "{}",
            json!({
                "done": true,
                "bootstrapped": installed.is_some(),
                "version": installed.map(|i| i.version),
                "fingerprint": installed.map(|i| i.meta.fingerprint.to_string()),
                "names": installed.map(|i| i.meta.names.clone()),
                "warning": installed.and_then(|i| i.meta.source.warning()),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    match installed {
        Some(i) => {
            let until = i
                .meta
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            println!(
                "Made the bootstrap certificate of system for {} (valid until {until}, fingerprint {}).",
                i.meta.names.join(", "),
                i.meta.fingerprint
            );
            if let Some(w) = i.meta.source.warning() {
                println!("warning: {w}");
            }
        }
        None => println!("system already has a certificate; nothing to do."),
    }
    Ok(ExitCode::SUCCESS)
}
