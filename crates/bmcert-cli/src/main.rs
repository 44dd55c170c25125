//! The `bmcert` command: check, convert, install and manage TLS certificates.
//!
//! Exit status: 0 done or bundle accepted; 1 refused (the report lists the problems);
//! 2 usage or I/O error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
enum Command {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {}
}
