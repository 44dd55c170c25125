//! The `bmcert` command: check, convert, install and manage TLS certificates.
//!
//! Exit status ([`EXIT_STATUS`], also in `bmcert --help` and docs/admin-guide.md): 0 done or
//! bundle accepted; 1 refused; 2 usage or I/O error.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod acme_cmds;
mod agent_cmd;
mod check;
mod init_cmd;
mod input;
mod output;
mod p12;
mod renew_cmds;
mod settings;
mod sigpipe;
mod store_arg;
mod store_cmds;

/// The exit status convention of every command, as `bmcert --help` shows it.
const EXIT_STATUS: &str = "\
Exit status (every command):
  0  done, or bundle accepted
  1  refused: a problem in the bundle report, a policy refusal (the system certificate
     cannot be disabled, nothing to roll back), or a refusal of the ACME CA, terms of
     service not accepted included; the reason is printed and nothing changed
  2  usage or I/O error: bad options, a file that cannot be read, an unreachable store or CA

Settings: --store, --topology and the --etcd-* options are accepted by every command, and
also read from BMCERT_STORE, BMCERT_TOPOLOGY, BMCERT_ETCD_* and the configuration file
(--config, BMCERT_CONFIG, default /etc/bmcert/bmcert.toml); options win over the
environment, which wins over the file. `bmcert config` shows what is in effect.";

#[derive(Parser)]
#[command(
    name = "bmcert",
    version,
    about = "Check, convert, install and manage TLS certificates",
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(flatten)]
    global: settings::GlobalArgs,
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
    Init,
    /// Check a bundle against the target's URL and install it into the store when it passes.
    Install(store_cmds::InstallArgs),
    /// Remove a domain's certificate (the domain falls back to the system certificate).
    Disable(store_cmds::TargetArgs),
    /// List the installed certificates with their source, names, expiry and days left.
    List,
    /// Make the previous certificate of a target current again.
    Rollback(store_cmds::TargetArgs),
    /// Write a target's current cert.pem, key.pem (mode 0600) and ca.pem into a directory.
    Export(store_cmds::ExportArgs),
    /// Renewal state per target: source, names, expiry, next renewal, last attempt and error.
    Status,
    /// Renew a target's ACME certificate now, whether due or not.
    Renew(renew_cmds::RenewArgs),
    /// Run the agent of this server: follow the store, renew, answer HTTP-01, deploy
    /// certificate files and run a reload command, serve metrics (docs/agent.md).
    Agent(agent_cmd::AgentArgs),
    /// Print the settings in effect and where each came from (passwords show as `(set)`).
    Config,
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of bmcert, for `man -l -` or /usr/share/man/man1.
    Man,
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

/// The libraries' tracing events on standard error: `RUST_LOG` when set (an `EnvFilter`
/// directive such as `bmcert_store=debug`), else warnings, or more with `-v`.
fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&text)
            .unwrap_or_else(|e| {
                eprintln!(
                    "bmcert: RUST_LOG `{}` is not a valid filter ({e}); using `{level}`",
                    bmcert::topology::Escaped(&text)
                );
                tracing_subscriber::EnvFilter::new(level)
            }),
        _ => tracing_subscriber::EnvFilter::new(level),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn main() -> ExitCode {
    restore_sigpipe();
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_tracing(cli.global.verbose);
    let settings =
        match settings::Settings::resolve(cli.global, &matches, &|name| std::env::var_os(name)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bmcert: {e}");
                return ExitCode::from(2);
            }
        };
    let json = settings.json;
    let result = match cli.command {
        Command::Check(args) => check::run(args, json),
        Command::P12(args) => p12::run(args, json),
        Command::Acme(args) => acme_cmds::run(args, &settings),
        Command::Init => init_cmd::run(&settings),
        Command::Install(args) => store_cmds::install(args, &settings),
        Command::Disable(args) => store_cmds::disable(args, &settings),
        Command::List => store_cmds::list(&settings),
        Command::Rollback(args) => store_cmds::rollback(args, &settings),
        Command::Export(args) => store_cmds::export(args, &settings),
        Command::Status => renew_cmds::status(&settings),
        Command::Renew(args) => renew_cmds::renew(args, &settings),
        Command::Agent(args) => agent_cmd::run(args, &settings),
        Command::Config => settings::run(&settings),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "bmcert", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| input::UsageError(format!("cannot write the manual page: {e}"))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bmcert: {e}");
            ExitCode::from(2)
        }
    }
}
