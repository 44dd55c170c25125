//! The `bmcert` command: check, convert, install and manage TLS certificates.
//!
//! Exit status: 0 done or bundle accepted; 1 refused (the report lists the problems);
//! 2 usage or I/O error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod acme_cmds;
mod check;
mod init_cmd;
mod input;
mod p12;
mod renew_cmds;
mod sigpipe;
mod store_arg;
mod store_cmds;

#[derive(Parser)]
#[command(
    name = "bmcert",
    version,
    about = "Check, convert, install and manage TLS certificates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a certificate bundle (certificate, key, CA file, or PKCS#12) before installing it.
    Check(check::CheckArgs),
    /// Split a PKCS#12 file into cert.pem, key.pem (mode 0600) and ca.pem.
    P12(p12::P12Args),
    /// Let's Encrypt through ACME: `terms`, `accept`, `issue`.
    Acme(acme_cmds::AcmeArgs),
    /// Make the self-signed system certificate when the system target has none (the servers
    /// then answer from their first start; replace it with the real one).
    Init(init_cmd::InitArgs),
    /// Check a bundle against the target's URL and install it into the store when it passes.
    Install(store_cmds::InstallArgs),
    /// Remove a domain's certificate (the domain falls back to the system certificate).
    Disable(store_cmds::TargetArgs),
    /// List the installed certificates with their source, names, expiry and days left.
    List(store_cmds::ListArgs),
    /// Make the previous certificate of a target current again.
    Rollback(store_cmds::TargetArgs),
    /// Write a target's current cert.pem, key.pem (mode 0600) and ca.pem into a directory.
    Export(store_cmds::ExportArgs),
    /// Renewal state per target: source, names, expiry, next renewal, last attempt and error.
    Status(renew_cmds::StatusArgs),
    /// Renew a target's ACME certificate now, whether due or not.
    Renew(renew_cmds::RenewArgs),
}

/// Rust ignores SIGPIPE, so `println!` into a closed pipe (`bmcert list | head -1`) would
/// panic. Restore the default disposition: the process ends quietly, as Unix tools do
/// (threads that write to sockets block it: see `sigpipe`).
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::P12(args) => p12::run(args),
        Command::Acme(args) => acme_cmds::run(args),
        Command::Init(args) => init_cmd::run(args),
        Command::Install(args) => store_cmds::install(args),
        Command::Disable(args) => store_cmds::disable(args),
        Command::List(args) => store_cmds::list(args),
        Command::Rollback(args) => store_cmds::rollback(args),
        Command::Export(args) => store_cmds::export(args),
        Command::Status(args) => renew_cmds::status(args),
        Command::Renew(args) => renew_cmds::renew(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bmcert: {e}");
            ExitCode::from(2)
        }
    }
}
