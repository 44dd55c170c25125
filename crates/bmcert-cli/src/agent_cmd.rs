//! `bmcert agent`: the long-running agent of one server (`bmcert::agent::Agent`), from the
//! command line and the configuration file. Everything it does is the library's; this
//! module reads the options, handles the signals and says when it is ready.
//!
//! Exit status: 0 after SIGTERM or SIGINT (stopped cleanly); 2 usage error (bad option,
//! unreadable topology, unreachable store, address in use).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bmcert::acme::AcmeConfig;
use bmcert::agent::{Agent, AgentConfig, Renewal};
use bmcert::deploy::DeployTarget;
use bmcert::renew::{NoNotifier, Notifier, RenewerConfig, SmtpConfig, SmtpNotifier};
use bmcert::topology::Target;
use bmcert::Installation;
use clap::Args;

use crate::acme_cmds::{runtime, CaArgs, ChainArgs};
use crate::input::{self, UsageError};
use crate::settings::{Settings, SmtpSecurity};

/// `bmcert agent`.
#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    /// Deploy TARGET's certificate into DIR as cert.pem, chain.pem, fullchain.pem and
    /// privkey.pem (repeatable; TARGET is `system` or `domain:NAME`). The files change
    /// together (DIR/live is switched atomically; see docs/agent.md).
    #[arg(long = "deploy", value_name = "TARGET=DIR")]
    deploy: Vec<String>,
    /// The owner of the deployed files (user name or uid; needs root).
    #[arg(long, value_name = "USER|UID")]
    deploy_owner: Option<String>,
    /// The group of the deployed files (group name or gid; needs root).
    #[arg(long, value_name = "GROUP|GID")]
    deploy_group: Option<String>,
    /// The command run (by /bin/sh -c) once after each batch of changed files, e.g.
    /// `systemctl reload nginx postfix`; retried with back-off while it fails.
    #[arg(long, value_name = "COMMAND")]
    reload: Option<String>,
    /// How long changes are gathered into one batch before deploying and reloading.
    #[arg(long, value_name = "MILLISECONDS", default_value_t = 500)]
    debounce_ms: u64,
    /// Answer HTTP-01 on this address, from the store (for nginx to proxy
    /// /.well-known/acme-challenge/ to, or :80 itself).
    #[arg(long, value_name = "ADDR")]
    http01_listen: Option<SocketAddr>,
    /// Serve /metrics (Prometheus) and /healthz on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Do not renew ACME certificates on this server (another server's agent does).
    #[arg(long)]
    no_renew: bool,
    /// The lease of the installation's renewal lock while this agent renews: kept alive every
    /// third of it, so an agent killed during a renewal (or cut off from the store) gives
    /// the renewal up to another server's agent this long after it stopped. Use the same
    /// value on every server.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    lock_ttl: u64,
    #[command(flatten)]
    ca: CaArgs,
    #[command(flatten)]
    chain: ChainArgs,
}

/// `TARGET=DIR`.
fn parse_deploy(text: &str) -> Result<(Target, PathBuf), UsageError> {
    let Some((target, dir)) = text.split_once('=') else {
        return Err(UsageError(format!(
            "--deploy `{}`: write TARGET=DIR, e.g. --deploy system=/etc/bmcert/deploy/system",
            bmcert::topology::Escaped(text)
        )));
    };
    let target: Target = target.parse().map_err(|e| {
        UsageError(format!(
            "--deploy `{}`: {e}",
            bmcert::topology::Escaped(text)
        ))
    })?;
    if dir.is_empty() {
        return Err(UsageError(format!(
            "--deploy `{}`: the directory is empty",
            bmcert::topology::Escaped(text)
        )));
    }
    Ok((target, PathBuf::from(dir)))
}

/// A user or group given by name or number.
fn id(option: &str, text: &str, user: bool) -> Result<u32, UsageError> {
    if let Ok(n) = text.parse() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(text)
        .map_err(|_| UsageError(format!("{option}: `{}` is not a name", text.escape_debug())))?;
    // SAFETY: `name` is a valid C string; the returned records are read at once, before any
    // other call that could reuse their static storage (the agent is single-threaded here).
    let found = unsafe {
        if user {
            let p = libc::getpwnam(name.as_ptr());
            (!p.is_null()).then(|| (*p).pw_uid)
        } else {
            let g = libc::getgrnam(name.as_ptr());
            (!g.is_null()).then(|| (*g).gr_gid)
        }
    };
    found.ok_or_else(|| {
        UsageError(format!(
            "{option}: no {} named `{}` on this system",
            if user { "user" } else { "group" },
            text.escape_debug()
        ))
    })
}

/// The warnings' notifier from `[smtp]`, or none.
fn notifier(settings: &Settings) -> Result<(Arc<dyn Notifier>, Option<String>), UsageError> {
    let Some(smtp) = &settings.smtp else {
        return Ok((Arc::new(NoNotifier), None));
    };
    let s = &smtp.value;
    let security = match s.security.unwrap_or_default() {
        SmtpSecurity::Starttls => bmcert::renew::SmtpSecurity::StartTls,
        SmtpSecurity::Tls => bmcert::renew::SmtpSecurity::Tls,
        SmtpSecurity::Plain => bmcert::renew::SmtpSecurity::Plain,
    };
    let from = s
        .from
        .clone()
        .unwrap_or_else(|| format!("bmcert@{}", host_name()));
    let mut config = SmtpConfig::new(&s.host, s.port(), security, &from);
    if let (Some(user), Some(password)) = (&s.user, s.secret_password()) {
        config.credentials = Some((user.clone(), zeroize::Zeroizing::new(password.to_owned())));
    }
    if let Some(ca) = &s.ca {
        config
            .extra_roots_pem
            .push(input::read(ca, "[smtp] ca file")?);
    }
    let notifier = SmtpNotifier::new(config)
        .map_err(|e| UsageError(format!("[smtp] in {}: {e}", smtp.origin)))?;
    Ok((Arc::new(notifier), s.to.first().cloned()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub(crate) fn run(args: AgentArgs, settings: &Settings) -> Result<ExitCode, UsageError> {
    let topology = settings.topology()?;
    let uid = args
        .deploy_owner
        .as_deref()
        .map(|u| id("--deploy-owner", u, true))
        .transpose()?;
    let gid = args
        .deploy_group
        .as_deref()
        .map(|g| id("--deploy-group", g, false))
        .transpose()?;
    let mut deploy = Vec::with_capacity(args.deploy.len());
    for d in &args.deploy {
        let (target, dir) = parse_deploy(d)?;
        deploy.push(DeployTarget::new(target, dir).with_owner(uid, gid));
    }
    let renewal = match args.no_renew {
        true => None,
        false => {
            let mut acme = args.ca.config(settings, AcmeConfig::default())?;
            args.chain.apply(settings, &mut acme)?;
            let (notifier, warn_to) = notifier(settings)?;
            Some(Renewal {
                acme,
                notifier,
                config: RenewerConfig {
                    holder: format!("agent-{}-{}", host_name(), std::process::id()),
                    warn_to,
                    lock_ttl: Duration::from_secs(args.lock_ttl),
                    ..RenewerConfig::default()
                },
            })
        }
    };
    let config = AgentConfig {
        deploy,
        reload: args.reload,
        debounce: Duration::from_millis(args.debounce_ms),
        http01_listen: args.http01_listen,
        metrics_listen: args.metrics_listen,
        renewal,
        ..AgentConfig::default()
    };
    runtime()?.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let signal_err = |e: std::io::Error| UsageError(format!("cannot handle signals: {e}"));
        let mut hup = signal(SignalKind::hangup()).map_err(signal_err)?;
        let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_err)?;
        let store = crate::store_arg::open_store(settings)?;
        let installation = Installation::new(store, topology);
        let agent = Agent::start(&installation, config)
            .await
            .map_err(|e| UsageError(e.to_string()))?;
        let mut ready = String::from("bmcert agent: ready");
        if let Some(a) = agent.http01_addr() {
            ready.push_str(&format!("; HTTP-01 on {a}"));
        }
        if let Some(a) = agent.metrics_addr() {
            ready.push_str(&format!("; metrics on http://{a}/metrics"));
        }
        println!("{ready}");
        tracing::info!("{ready}");
        // systemd (Type=notify): ready now. Without NOTIFY_SOCKET this does nothing.
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                    match settings.topology() {
                        Ok(topology) => agent.set_topology(topology),
                        Err(e) => tracing::error!(error = %e, "agent: SIGHUP: the topology could not be read; the previous one stays"),
                    }
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        tracing::info!("agent: stopping");
        agent.shutdown().await;
        println!("bmcert agent: stopped");
        Ok(ExitCode::SUCCESS)
    })
}
