//! Three `bmcert agent` processes on one etcd store (issue 14, the third real-peer scenario):
//!
//! - one renewal for the installation: the three renewers see the same certificate due at
//!   the same moment, pebble receives exactly one order and issues one certificate (counted
//!   in pebble's own log), the three deploy directories hold the same new files and each
//!   agent's reload command ran once for it;
//! - the agent holding the renewal lock is killed (`kill -9`) in the middle of its renewal:
//!   another agent takes the renewal over once the dead one's lease ran out, pebble issues
//!   one certificate (two orders: the abandoned one and the finished one), and both surviving
//!   agents deploy it.
//!
//! The store is the shared etcd cluster (`BMCERT_ETCD_ENDPOINTS`) under a key prefix of the
//! test's own. The CA is a pebble (with its DNS, pebble-challtestsrv) the test starts for
//! itself on free loopback ports, so that its log holds this test's orders and nobody
//! else's, and so that its HTTP-01 validation port is a gate the test controls: a TCP relay
//! to the agents' `--http01-listen` that can also hold pebble's validation request, which
//! catches the lock holder deterministically in the middle of its renewal (order placed,
//! challenge answered, waiting for pebble). The gate is not pebble's shared port 5002, so
//! no `flock /tmp/bmcert-pebble.lock` is needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::Read as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bmcert::store::{Condition, Source, StoreConfig};
use bmcert::Target;
use common::agent::{read, sample, within, AgentProcess};
use common::own_pebble::{binary, serial, OwnPebble};
use common::Setup;
use time::OffsetDateTime;

/// The lease of the renewal lock the agents run with (`--lock-ttl`).
const LOCK_TTL_SECS: u64 = 5;

/// The serial of the first certificate of the PEM file `path`, as [`serial`] writes it.
fn file_serial(path: &Path) -> Option<String> {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .expect("run openssl");
    let text = String::from_utf8(out.stdout).unwrap();
    out.status
        .success()
        .then(|| text.trim().strip_prefix("serial=").map(serial))
        .flatten()
}

/// Pebble's HTTP-01 validation port: relays each connection to the first agent of
/// `upstreams` that accepts it, or, while held, keeps the connection open unanswered (pebble
/// waits), counting it.
struct Gate {
    port: u16,
    state: Arc<Mutex<GateState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct GateState {
    hold: bool,
    upstreams: Vec<String>,
    held: Vec<TcpStream>,
}

impl Gate {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(GateState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let mut state = s.lock().unwrap();
                        if state.hold {
                            state.held.push(client);
                        } else {
                            let upstreams = state.upstreams.clone();
                            std::thread::spawn(move || relay(client, &upstreams));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, hold: bool, upstreams: Vec<String>) {
        let mut state = self.state.lock().unwrap();
        state.hold = hold;
        state.upstreams = upstreams;
    }

    /// How many connections are held.
    fn held(&self) -> usize {
        self.state.lock().unwrap().held.len()
    }

    /// Closes the held connections (pebble sees the validation fail).
    fn drop_held(&self) {
        for c in self.state.lock().unwrap().held.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.drop_held();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Relays `client` to the first of `upstreams` that accepts a connection (at most 10 s each
/// way without data).
fn relay(client: TcpStream, upstreams: &[String]) {
    let Some(upstream) = upstreams
        .iter()
        .find_map(|u| TcpStream::connect_timeout(&u.parse().unwrap(), Duration::from_secs(1)).ok())
    else {
        return;
    };
    for s in [&client, &upstream] {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    }
    let (mut c, mut u) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c, &mut u);
        let _ = u.shutdown(Shutdown::Write);
    });
    let (mut u, mut c) = (upstream, client);
    let _ = std::io::copy(&mut u, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = up.join();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
}

/// One installation: the etcd store under a prefix of its own, pebble, the gate, a
/// topology for one host, and an accepted ACME account.
struct Cluster {
    setup: Setup,
    store: String,
    host: String,
    pebble: OwnPebble,
    gate: Gate,
}

impl Cluster {
    /// `None` when a peer is missing (skipped; a failure under the test command).
    fn new(label: &str) -> Option<Self> {
        let endpoints = bmcert_test::peers::etcd_endpoints()?;
        let pebble_bin = binary("pebble")?;
        let challtestsrv = binary("pebble-challtestsrv")?;
        let setup = Setup::new();
        let unique = bmcert_test::peers::unique_label(label);
        let store = format!("etcd://{}/{unique}/", endpoints.join(","));
        let host = format!("{unique}.example.test");
        std::fs::write(
            setup.path("topo.toml"),
            format!("default_domain = \"example.test\"\n[system]\nurl = \"https://{host}\"\n"),
        )
        .unwrap();
        let gate = Gate::start();
        let pebble = OwnPebble::start(&setup.path("pebble"), &pebble_bin, &challtestsrv, gate.port);
        let cluster = Self {
            setup,
            store,
            host,
            pebble,
            gate,
        };
        let accept = cluster.setup.run(&[
            "acme",
            "accept",
            "--store",
            &cluster.store,
            "--directory",
            &cluster.pebble.directory,
            "--directory-ca",
            cluster.pebble.listener_ca.to_str().unwrap(),
        ]);
        assert_eq!(accept.code, 0, "{}", accept.context());
        Some(cluster)
    }

    fn deploy_dir(&self, n: usize) -> PathBuf {
        self.setup.path(&format!("deploy-{n}/system"))
    }

    fn reload_log(&self, n: usize) -> PathBuf {
        self.setup.path(&format!("reloads-{n}.log"))
    }

    /// Agent `n`: renews with `--lock-ttl 5`, answers HTTP-01, deploys the system certificate
    /// into its own directory and its reload command appends the deployed certificate's
    /// serial to its own log.
    fn agent(&self, n: usize) -> AgentProcess {
        let (dir, log) = (self.deploy_dir(n), self.reload_log(n));
        let reload = format!(
            "openssl x509 -noout -serial -in '{}' >> '{}'",
            dir.join("cert.pem").display(),
            log.display()
        );
        let lock_ttl = LOCK_TTL_SECS.to_string();
        AgentProcess::start_named(
            &self.setup,
            &format!("agent-{n}"),
            &[
                "--store",
                &self.store,
                "--topology",
                "topo.toml",
                "--deploy",
                &format!("system={}", dir.display()),
                "--reload",
                &reload,
                "--http01-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--lock-ttl",
                &lock_ttl,
                "--directory",
                &self.pebble.directory,
                "--directory-ca",
                self.pebble.listener_ca.to_str().unwrap(),
                "--chain-ca",
                self.pebble.root.to_str().unwrap(),
            ],
        )
    }

    /// Installs, as if an earlier order had, an ACME certificate for the host that is due
    /// now (90 days, 10 left), straight into the store; returns its serial.
    fn install_due_certificate(&self) -> String {
        let now = OffsetDateTime::now_utc();
        let bundle = bmcert_test::renewal::self_signed_bundle(
            &[&self.host],
            now - time::Duration::days(80),
            now + time::Duration::days(10),
            Source::Acme,
        );
        let store = bmcert::open_store(&StoreConfig::parse(&self.store).unwrap()).unwrap();
        bmcert::block_on(store.install(&Target::System, &bundle, &Condition::none())).unwrap();
        let pem = bmcert_test::fixtures::pem_block("CERTIFICATE", bundle.leaf().as_ref());
        let path = self.setup.path("due-cert.pem");
        std::fs::write(&path, pem).unwrap();
        file_serial(&path).unwrap()
    }

    /// The serials the reload command of agent `n` saw, one per run.
    fn reloads(&self, n: usize) -> Vec<String> {
        read(&self.reload_log(n))
            .lines()
            .filter_map(|l| l.trim().strip_prefix("serial=").map(serial))
            .collect()
    }

    /// What went on, for a failure message.
    fn context(&self, agents: &[&AgentProcess]) -> String {
        let mut out = format!("pebble log:\n{}\n", read(&self.pebble.log));
        for (n, a) in agents.iter().enumerate() {
            out.push_str(&format!("--- agent {n}:\n{}\n", a.stderr_text()));
        }
        out
    }
}

/// The lines of the agent's log saying the renewal lock was held by the agent `pid`
/// (`bmcert agent` holds it as `agent-HOSTNAME-PID`).
fn refused_by(agent: &AgentProcess, pid: u32) -> usize {
    let end = format!("-{pid}");
    agent
        .stderr_text()
        .lines()
        .filter(|l| {
            l.contains("another server holds the renewal lock")
                && l.split_whitespace().any(|w| {
                    let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
                    w.starts_with("holder=agent-") && w.ends_with(&end)
                })
        })
        .count()
}

/// How many renewal attempts the agent started (the renewer's `renewal: attempt`).
fn attempts(agent: &AgentProcess) -> usize {
    agent
        .stderr_text()
        .lines()
        .filter(|l| l.contains("renewal: attempt"))
        .count()
}

#[test]
fn three_agents_renew_once_for_the_installation_and_all_deploy_it() {
    let Some(cluster) = Cluster::new("agents-once") else {
        return;
    };
    let agents: Vec<AgentProcess> = (0..3).map(|n| cluster.agent(n)).collect();
    cluster.gate.set(
        false,
        agents.iter().map(|a| a.http01.clone()).collect::<Vec<_>>(),
    );
    assert!(agents.iter().all(|a| !a.http01.is_empty()));
    let all: Vec<&AgentProcess> = agents.iter().collect();

    // The three renewers see the certificate due at the same moment (the store's change).
    let due = cluster.install_due_certificate();
    let converged = within(Duration::from_secs(60), || {
        let issued = cluster.pebble.issued();
        issued.len() == 1
            && (0..3).all(|n| {
                file_serial(&cluster.deploy_dir(n).join("cert.pem")).as_ref() == issued.first()
                    && cluster.reloads(n).contains(&issued[0])
            })
    });
    assert!(
        converged,
        "one certificate issued and deployed by all three agents; {}",
        cluster.context(&all)
    );
    // No second reload or order trails behind (a batch is 500 ms).
    std::thread::sleep(Duration::from_millis(1500));

    // Pebble's side: one order, one certificate, for the installation.
    let issued = cluster.pebble.issued();
    assert_eq!(issued.len(), 1, "{}", cluster.context(&all));
    assert_eq!(cluster.pebble.orders(), 1, "{}", cluster.context(&all));
    let new = &issued[0];
    assert_ne!(new, &due);
    // One agent ordered it; the others were refused the renewal lock it held (they saw
    // the certificate due at the same moment).
    let counts: Vec<usize> = agents.iter().map(attempts).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        1,
        "attempts per agent {counts:?}"
    );
    let renewer = counts.iter().position(|&c| c == 1).unwrap();
    assert!(
        (0..3)
            .filter(|&n| n != renewer)
            .any(|n| refused_by(&agents[n], agents[renewer].pid()) > 0),
        "another agent was refused the lock; {}",
        cluster.context(&all)
    );

    // The same files in the three directories, the new certificate and its key.
    let files = |n: usize, name: &str| std::fs::read(cluster.deploy_dir(n).join(name)).unwrap();
    for name in ["fullchain.pem", "privkey.pem", "cert.pem", "chain.pem"] {
        assert!(!files(0, name).is_empty());
        assert_eq!(files(0, name), files(1, name), "{name} of agents 0 and 1");
        assert_eq!(files(0, name), files(2, name), "{name} of agents 0 and 2");
    }
    assert_eq!(
        file_serial(&cluster.deploy_dir(0).join("fullchain.pem")).as_ref(),
        Some(new)
    );
    // The key is the certificate's: the leaf and the key make a working server pair.
    let pair = Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(cluster.deploy_dir(0).join("cert.pem"))
        .output()
        .unwrap();
    let key = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(cluster.deploy_dir(0).join("privkey.pem"))
        .output()
        .unwrap();
    assert!(pair.status.success() && key.status.success());
    assert_eq!(
        pair.stdout, key.stdout,
        "privkey.pem is the key of cert.pem"
    );

    // Each reload ran once for the new certificate (and at most once before it, for the
    // certificate that was due, unless that batch already held the new one).
    for n in 0..3 {
        let runs = cluster.reloads(n);
        assert_eq!(
            runs.iter().filter(|s| *s == new).count(),
            1,
            "agent {n}: {runs:?}"
        );
        assert!(
            runs.iter().all(|s| s == new || s == &due) && runs.len() <= 2,
            "agent {n}: {runs:?}"
        );
        assert_eq!(runs.last(), Some(new), "agent {n}: {runs:?}");
    }
    for a in &agents {
        let (code, body) = a.get("/healthz");
        assert_eq!((code, body.as_str()), (200, "ok\n"), "{}", a.stderr_text());
    }
    for a in agents {
        assert_eq!(a.terminate().code(), Some(0));
    }
}

#[test]
fn an_agent_killed_while_it_renews_is_taken_over_after_its_lease_expires() {
    let Some(cluster) = Cluster::new("agents-kill") else {
        return;
    };
    let mut agents: Vec<AgentProcess> = (0..3).map(|n| cluster.agent(n)).collect();
    // Pebble's validation request waits at the gate: whoever renews stays in the middle of
    // its renewal (lock held, order placed, challenge answered) until the test lets it go.
    cluster.gate.set(true, Vec::new());
    let due = cluster.install_due_certificate();
    let caught = within(Duration::from_secs(60), || cluster.gate.held() > 0);
    assert!(
        caught,
        "pebble's validation reached the gate; {}",
        cluster.context(&agents.iter().collect::<Vec<_>>())
    );
    // Exactly one agent renews now: the one holding the lock.
    let renewing: Vec<usize> = (0..3)
        .filter(|&n| {
            sample(
                &agents[n].get("/metrics").1,
                "bmcert_renewal_in_progress{target=\"system\"}",
            ) == Some(1.0)
        })
        .collect();
    assert_eq!(
        renewing.len(),
        1,
        "one agent renews; {}",
        cluster.context(&agents.iter().collect::<Vec<_>>())
    );
    let holder = renewing[0];
    let holder_pid = agents[holder].pid();
    assert_eq!(cluster.pebble.orders(), 1);

    agents[holder].kill9();
    assert!(!agents[holder].running());
    let killed_at = Instant::now();
    // The dead agent's validation fails; from now on pebble reaches a live agent.
    cluster.gate.drop_held();
    let survivors: Vec<usize> = (0..3).filter(|&n| n != holder).collect();
    cluster.gate.set(
        false,
        survivors
            .iter()
            .map(|&n| agents[n].http01.clone())
            .collect(),
    );

    // Taken over once the dead agent's lease ran out (5 s), not a minute later: the
    // renewers refused the lock look again when the holder's lease expires.
    let done = within(Duration::from_secs(40), || {
        let issued = cluster.pebble.issued();
        issued.len() == 1
            && survivors.iter().all(|&n| {
                file_serial(&cluster.deploy_dir(n).join("cert.pem")).as_ref() == issued.first()
                    && cluster.reloads(n).contains(&issued[0])
            })
    });
    let all: Vec<&AgentProcess> = agents.iter().collect();
    assert!(
        done,
        "a surviving agent finished the renewal and both deployed it; {}",
        cluster.context(&all)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let issued = cluster.pebble.issued();
    let new = &issued[0];
    assert_eq!(issued.len(), 1, "{}", cluster.context(&all));
    assert_ne!(new, &due);
    // The abandoned order and the one that finished; nothing else.
    assert_eq!(cluster.pebble.orders(), 2, "{}", cluster.context(&all));

    // The survivors were refused the lock while the dead agent's lease ran: the store named
    // it as the holder. Only one of them renewed, once.
    assert!(
        survivors
            .iter()
            .any(|&n| refused_by(&agents[n], holder_pid) > 0),
        "a survivor was refused the lock held by the killed agent {holder_pid}; {}",
        cluster.context(&all)
    );
    let finished: Vec<usize> = survivors
        .iter()
        .copied()
        .filter(|&n| attempts(&agents[n]) > 0)
        .collect();
    assert_eq!(finished.len(), 1, "{}", cluster.context(&all));
    assert_eq!(attempts(&agents[finished[0]]), 1);
    eprintln!(
        "renewal finished {:?} after the holder was killed (lease {LOCK_TTL_SECS} s)",
        killed_at.elapsed()
    );

    // Both survivors deployed the same new files, each reloading once for them.
    let files = |n: usize, name: &str| std::fs::read(cluster.deploy_dir(n).join(name)).unwrap();
    for name in ["fullchain.pem", "privkey.pem"] {
        assert_eq!(
            files(survivors[0], name),
            files(survivors[1], name),
            "{name}"
        );
    }
    for &n in &survivors {
        let runs = cluster.reloads(n);
        assert_eq!(
            runs.iter().filter(|s| *s == new).count(),
            1,
            "agent {n}: {runs:?}"
        );
        assert!(
            runs.iter().all(|s| s == new || s == &due),
            "agent {n}: {runs:?}"
        );
        let (code, body) = agents[n].get("/healthz");
        assert_eq!((code, body.as_str()), (200, "ok\n"));
    }
    let killed = agents.remove(holder);
    drop(killed);
    for a in agents {
        assert_eq!(a.terminate().code(), Some(0));
    }
}
