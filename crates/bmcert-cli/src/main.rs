//! The `bmcert` command: check, convert, install and manage TLS certificates.
//!
//! Exit status: 0 done or bundle accepted; 1 refused (the report lists the problems);
//! 2 usage or I/O error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod acme_cmds;
mod check;
mod input;
mod p12;

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
}

fn main() -> ExitCode {
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bmcert: {e}");
            ExitCode::from(2)
        }
    }
}
