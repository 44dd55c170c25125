//! What every command prints: JSON documents (`--json`, schemas in docs/cli-json.md) and
//! refusals (exit status 1).

use std::process::ExitCode;

use serde_json::json;

use crate::input::UsageError;

/// Exit status 1: refused (the reason is printed; nothing changed).
pub(crate) const REFUSED: u8 = 1;

/// Prints `value` as one pretty JSON document on standard output.
pub(crate) fn print_json(value: &serde_json::Value) -> Result<(), UsageError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| UsageError(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Serializes `value` (a library report or row) for [`print_json`].
pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<serde_json::Value, UsageError> {
    serde_json::to_value(value).map_err(|e| UsageError(format!("cannot write JSON: {e}")))
}

/// A refusal: `{"done": false, "refused": REASON}` with `--json`, and the reason on
/// standard error; exit status 1.
pub(crate) fn refused(json: bool, reason: &dyn std::fmt::Display) -> Result<ExitCode, UsageError> {
    if json {
        print_json(&json!({ "done": false, "refused": reason.to_string() }))?;
    }
    eprintln!("bmcert: refused: {reason}");
    Ok(ExitCode::from(REFUSED))
}
