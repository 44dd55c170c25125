//! A server that dies in the middle of a renewal: the helper process of the
//! `kill_the_holder_mid_order` test in `tests/acme_servers.rs` (not a tool for production).
//!
//! It opens the etcd store, runs one pass of the ordinary [`Renewer`] with an
//! [`AcmeIssuer`] against pebble, and reports on stdout, one line each:
//!
//! - `LOCKED <token> <expires_at_unix_ns>` when the renewer took the renewal lock (the
//!   fencing token etcd granted, and when the lease ends);
//! - `ORDERED` when pebble accepted the new order.
//!
//! After `ORDERED` it stops making progress (the order stays pending at pebble, the lock
//! stays taken) so that the test can SIGKILL it there. If nobody kills it, it exits with
//! status 3 after two minutes.
//!
//! ```text
//! renewal_holder ENDPOINTS PREFIX HOST HOLDER LOCK_TTL_SECS
//! ```
//!
//! ENDPOINTS is comma-separated `host:port`; pebble comes from `BMCERT_PEBBLE_DIRECTORY` and
//! `BMCERT_PEBBLE_CA` (set by `scripts/test-all`). The ACME terms must already be accepted
//! in the store.

use std::error::Error;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bmcert_acme::{AcmeClient, AcmeConfig, ChallengeBoard, Directory, Progress, StoreState};
use bmcert_renew::{AcmeIssuer, MemoryNotifier, Renewer, RenewerConfig, SystemClock};
use bmcert_store::testing::FaultyStore;
use bmcert_store::Store;
use bmcert_store_etcd::{EtcdOptions, EtcdStore};
use bmcert_topology::{Site, Topology};

/// How long the process waits to be killed once the order is placed.
const WAIT_FOR_KILL: Duration = Duration::from_secs(120);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn env(name: &str) -> Result<String, Box<dyn Error>> {
    std::env::var(name).map_err(|_| format!("{name} is not set (scripts/test-all sets it)").into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoints, prefix, host, holder, ttl] = args.as_slice() else {
        return Err("usage: renewal_holder ENDPOINTS PREFIX HOST HOLDER LOCK_TTL_SECS".into());
    };
    let ttl = Duration::from_secs(ttl.parse()?);
    let mut options = EtcdOptions::new(endpoints.split(',').map(str::to_owned).collect());
    options.prefix = prefix.clone();
    let etcd = tokio::task::spawn_blocking(move || EtcdStore::connect(options)).await??;
    // The etcd store, reporting each lock it is granted (its fencing token) on stdout.
    let store: Arc<dyn Store> = Arc::new(FaultyStore::new(etcd).on_lock(|lease| {
        say(&format!(
            "LOCKED {} {}",
            lease.token,
            lease.expires_at.unix_timestamp_nanos()
        ))
    }));

    let ca = std::fs::read(env("BMCERT_PEBBLE_CA")?)?;
    let mut config = AcmeConfig::new(Directory::Url(env("BMCERT_PEBBLE_DIRECTORY")?));
    config.directory_roots = AcmeConfig::certificates_from_pem(&ca, "pebble CA")?;
    let mut topology = Topology::new(Site::new(&format!("https://{host}"), &[])?);
    topology.default_domain = Some("example.test".parse()?);
    let client = AcmeClient::new(
        config,
        Arc::new(StoreState::new(store.clone())),
        // Nobody answers this process's challenges: it never gets that far.
        ChallengeBoard::new(),
    )?
    .with_gate(Arc::new(bmcert::CertManager::new(
        store.clone(),
        topology.clone(),
    )))
    .with_progress(|p| {
        if matches!(p, Progress::Ordered { .. }) {
            say("ORDERED");
            // Stuck in the middle of the order, holding the lock, until killed.
            std::thread::sleep(WAIT_FOR_KILL);
            say("NOT KILLED");
            std::process::exit(3);
        }
    });
    let issuer = Arc::new(AcmeIssuer::new(Arc::new(client), topology));
    let config = RenewerConfig {
        holder: holder.clone(),
        lock_ttl: ttl,
        ..RenewerConfig::default()
    };
    let renewer = Renewer::new(
        store,
        issuer,
        Arc::new(MemoryNotifier::default()),
        Arc::new(SystemClock),
        config,
    );
    let report = renewer.run_once().await?;
    // Reaching this line means the pass ended without placing an order (not due, or the
    // lock was held elsewhere): the test reads it as a failure.
    say(&format!("PASS ENDED {report:?}"));
    Ok(())
}
