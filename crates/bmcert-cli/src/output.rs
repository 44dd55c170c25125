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

/// The problem code of a target whose stored certificate is damaged.
pub(crate) const STORE_DAMAGED: &str = "store_damaged";

/// A damaged target's row in `list` and `status` (`--json`): which target, where, what is
/// wrong, and the advice that repairs it.
pub(crate) fn damaged_json(d: &bmcert::Damaged) -> serde_json::Value {
    json!({
        "target": d.target.to_string(),
        "code": STORE_DAMAGED,
        "version": d.version,
        "location": d.location,
        "problem": d.damage.to_string(),
        "advice": d.advice(),
    })
}

/// A damaged target's row in `list` and `status` (text).
pub(crate) fn print_damaged(d: &bmcert::Damaged) {
    println!(
        "{}	DAMAGED ({STORE_DAMAGED})	{}: {}",
        d.target, d.location, d.damage
    );
    println!("    fix: {}", d.advice());
}
