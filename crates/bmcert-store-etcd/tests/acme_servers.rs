//! Whole ACME flows across the servers of one installation, on the shared etcd cluster of
//! `scripts/peers/etcd.sh` and the real pebble of `scripts/peers/pebble.sh`:
//!
//! - the order is placed by one server and its HTTP-01 challenge answered by another, which
//!   reads the token from the store;
//! - the server holding the renewal lock is SIGKILLed in the middle of its order (a separate
//!   process, `examples/renewal_holder.rs`); the two other servers are refused while it
//!   lives, and once its lease has expired exactly one of them completes the renewal (one
//!   more order at pebble, not two); a write with the killed holder's fencing token is
//!   refused.
//!
//! Without the peers' variables each test prints why it is skipped.
//!
//! Pebble's validator always connects to one fixed HTTP-01 port: the tests of this binary
//! take turns on it (`PORTS`), and binding retries (bounded) while the listener of a test
//! that just ended (here or in another test binary, which cargo runs one after the other)
//! lets go of it — the same arrangement as `bmcert-acme/tests/pebble.rs` and
//! `bmcert-renew/tests/peers.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use bmcert_acme::{
    http01_response_from_state, parse_request_line, AcmeClient, AcmeConfig, ChallengeBoard,
    IssueRequest, RetryBudget, StoreState,
};
use bmcert_renew::{AcmeIssuer, ManualClock, MemoryNotifier, Renewer, RenewerConfig};
use bmcert_resolve::{FollowerThread, LiveIndex};
use bmcert_store::{keys, Condition, Lease, RecordKey, Source, Store, StoreError};
// An ACME client of one server on its store, counting the orders it places.
use bmcert_test::pebble::store_client_counting_orders as acme_client;
use bmcert_test::pebble::{bind_loopback, PortWait};
use bmcert_test::peers::{unique_label as unique, Pebble};
use bmcert_test::renewal::{self_signed_bundle, topology};
use bmcert_topology::Target;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Both peers, or `None` with the message of the missing one.
fn peers() -> Option<(Pebble, Vec<String>)> {
    let p = Pebble::from_env()?;
    let endpoints = common::endpoints()?;
    Some((p, endpoints))
}

/// A store client of its own (one "server") under `prefix`.
async fn server_store(endpoints: &[String], prefix: &str) -> Arc<dyn Store> {
    let (endpoints, prefix) = (endpoints.to_vec(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        Arc::new(common::connect(&endpoints, &prefix)) as Arc<dyn Store>
    })
    .await
    .unwrap()
}

/// The ACME configuration for pebble: its HTTPS CA, and its issuing root for the chain check.
async fn acme_config(p: &Pebble) -> AcmeConfig {
    p.acme_config(Some(RetryBudget {
        first_delay: StdDuration::from_millis(50),
        max_delay: StdDuration::from_millis(500),
        total: StdDuration::from_secs(5),
    }))
    .await
}

/// Binds pebble's HTTP-01 port, retrying every 100 ms for 15 s while a previous listener
/// lets go.
async fn bind_http01_port(port: u16) -> tokio::net::TcpListener {
    let wait = PortWait::new(StdDuration::from_millis(100), StdDuration::from_secs(15));
    bind_loopback(port, wait).await
}

/// The HTTP-01 listener of a server that does not run the order: every answer is read from
/// the installation's store through `bmcert_acme::http01_response_from_state`. Records the
/// tokens it answered with `200`.
struct StoreHttp01 {
    answered: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StoreHttp01 {
    async fn start(port: u16, state: Arc<StoreState>) -> Self {
        let listener = bind_http01_port(port).await;
        let answered = Arc::new(Mutex::new(Vec::new()));
        let log = answered.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, log) = (state.clone(), log.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut len = 0;
                    let read = tokio::time::timeout(StdDuration::from_secs(10), async {
                        while len < buf.len() {
                            match stream.read(&mut buf[len..]).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => len += n,
                            }
                            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    })
                    .await;
                    if read.is_err() {
                        return;
                    }
                    let path = parse_request_line(&buf[..len]).map(|(_, path)| path.to_owned());
                    let answer = match &path {
                        Some(path) => http01_response_from_state(path, state.as_ref()).await,
                        None => None,
                    };
                    let response = match (answer, path) {
                        (Some(body), Some(path)) => {
                            let token = path.rsplit('/').next().unwrap_or_default().to_owned();
                            log.lock().unwrap().push(token);
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_owned(),
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { answered, task }
    }

    fn answered(&self) -> Vec<String> {
        self.answered.lock().unwrap().clone()
    }
}

impl Drop for StoreHttp01 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn leaf_of(chain_pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .expect("a certificate in the issued chain")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_by_one_server_is_answered_by_another_and_installed_for_all() {
    let Some((p, endpoints)) = peers() else {
        return;
    };
    let _ports = PORTS.lock().await;
    let prefix = format!("/acme-servers-{}/", unique("http01"));
    let host = format!("{}.example.test", unique("http01"));
    let topo = topology(&host);
    // Server A places the order. It has no HTTP-01 listener: its challenge board is answered
    // by nobody (this test holds pebble's HTTP-01 port for server B).
    let store_a = server_store(&endpoints, &prefix).await;
    let board_a = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let client_a = acme_client(
        acme_config(&p).await,
        &store_a,
        &topo,
        board_a.clone(),
        &orders,
    );
    client_a.accept_terms().await.unwrap();
    // Server B answers pebble's validator from the store, and serves what the store holds.
    let store_b = server_store(&endpoints, &prefix).await;
    let state_b = Arc::new(StoreState::new(store_b.clone()));
    let http01_b = StoreHttp01::start(p.http01, state_b.clone()).await;
    let index_b = Arc::new(LiveIndex::new(&topo));
    let follower_b = FollowerThread::start(store_b.clone(), index_b.clone()).unwrap();
    assert!(index_b.certificate(&Target::System).is_none());

    let issued = client_a
        .issue(&topo, &IssueRequest::new(Target::System))
        .await
        .unwrap_or_else(|e| panic!("the order placed by A failed: {e}"));
    assert_eq!(orders.load(Ordering::SeqCst), 1);
    assert_eq!(
        issued.names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        [host.as_str()]
    );

    // B answered the validation, with the token A published in the store.
    let answered = http01_b.answered();
    assert!(
        !answered.is_empty(),
        "pebble validated without reaching server B's HTTP-01 listener"
    );
    // A removed the token when the order ended: B answers 404 for it now.
    for token in &answered {
        let path = format!("/.well-known/acme-challenge/{token}");
        assert_eq!(
            http01_response_from_state(&path, state_b.as_ref()).await,
            None
        );
    }
    assert_eq!(board_a.pending(), (0, 0));

    // Installed once, for every server: B's store reads it and B's resolver serves it.
    let leaf = leaf_of(&issued.chain_pem);
    let on_b = store_b.current(&Target::System).await.unwrap().unwrap();
    assert_eq!(on_b.bundle.leaf(), &leaf);
    assert_eq!(on_b.bundle.meta().source, Source::Acme);
    assert_eq!(on_b.bundle.meta().names, [host.as_str()]);
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while index_b
        .certificate(&Target::System)
        .map(|ck| ck.cert[0].clone())
        != Some(leaf.clone())
    {
        assert!(
            Instant::now() < deadline,
            "B's resolver does not serve the new certificate"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    follower_b.stop();
}

/// `examples/renewal_holder.rs`, (re)built with the running test's cargo and profile.
fn holder_binary() -> PathBuf {
    bmcert_test::bins::example_binary("bmcert-store-etcd", "renewal_holder", &[])
}

/// The helper process; SIGKILLed (and reaped) when dropped.
struct Holder {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    /// The next line the helper prints, waiting at most `limit`.
    fn next_line(&mut self, limit: StdDuration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the renewal holder said nothing within {limit:?}; its stderr: {err}");
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_killed_mid_order_is_replaced_after_its_lease_and_fenced_out() {
    let Some((p, endpoints)) = peers() else {
        return;
    };
    let _ports = PORTS.lock().await;
    let prefix = format!("/acme-servers-{}/", unique("kill"));
    let host = format!("{}.example.test", unique("kill"));
    let topo = topology(&host);
    let now = OffsetDateTime::now_utc();
    // Servers B and C survive. The store holds a due ACME certificate (10 days left of 90).
    let stores = [
        server_store(&endpoints, &prefix).await,
        server_store(&endpoints, &prefix).await,
    ];
    let old = self_signed_bundle(
        &[&host],
        now - Duration::days(80),
        now + Duration::days(10),
        Source::Acme,
    );
    stores[0]
        .install(&Target::System, &old, &Condition::none())
        .await
        .unwrap();
    let config = acme_config(&p).await;
    let orders: [Arc<AtomicU32>; 2] = Default::default();
    let clients: Vec<Arc<AcmeClient>> = (0..2)
        .map(|i| {
            acme_client(
                config.clone(),
                &stores[i],
                &topo,
                ChallengeBoard::new(),
                &orders[i],
            )
        })
        .collect();
    // The account and the accepted terms live in the store: every server uses them.
    clients[0].accept_terms().await.unwrap();
    let store_b = stores[0].clone();
    let orders_total = || orders[0].load(Ordering::SeqCst) + orders[1].load(Ordering::SeqCst);

    // Server A, a process of its own, takes the renewal lock and places the order.
    const HOLDER: &str = "server-a-killed";
    const HOLDER_TTL_SECS: u64 = 15;
    let mut child = Command::new(holder_binary())
        .args([
            endpoints.join(","),
            prefix.clone(),
            host.clone(),
            HOLDER.to_owned(),
            HOLDER_TTL_SECS.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (send, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let mut holder = Holder { child, lines };
    let locked = holder.next_line(StdDuration::from_secs(60));
    let fields: Vec<&str> = locked.split(' ').collect();
    assert_eq!(fields.len(), 3, "unexpected line from the holder: {locked}");
    assert_eq!(
        fields[0], "LOCKED",
        "unexpected line from the holder: {locked}"
    );
    let token: u64 = fields[1].parse().unwrap();
    let expires_at = OffsetDateTime::from_unix_timestamp_nanos(fields[2].parse().unwrap()).unwrap();
    let ordered = holder.next_line(StdDuration::from_secs(60));
    assert_eq!(ordered, "ORDERED", "the holder did not place its order");

    // Whichever survivor orders, the HTTP-01 answer comes from the store (B's listener).
    let _http = StoreHttp01::start(p.http01, Arc::new(StoreState::new(store_b.clone()))).await;
    let clock = Arc::new(ManualClock::new(now));
    let renewers: Vec<Renewer> = (0..2)
        .map(|i| {
            Renewer::new(
                stores[i].clone(),
                Arc::new(AcmeIssuer::new(clients[i].clone(), topo.clone())),
                Arc::new(MemoryNotifier::default()),
                clock.clone(),
                RenewerConfig {
                    holder: format!("server-{}", ["b", "c"][i]),
                    lock_ttl: StdDuration::from_secs(120),
                    ..RenewerConfig::default()
                },
            )
        })
        .collect();
    // While A is alive (stuck in its order), B and C find the lock taken and order nothing.
    let (b, c) = tokio::join!(renewers[0].run_once(), renewers[1].run_once());
    assert!(
        OffsetDateTime::now_utc() < expires_at,
        "the machine is too slow for this test: A's lease ended before the first passes"
    );
    let (b, c) = (b.unwrap(), c.unwrap());
    assert!(b.renewed.is_empty() && c.renewed.is_empty(), "{b:?} {c:?}");
    assert_eq!(orders_total(), 0);
    let lock = RecordKey::new(keys::RENEWAL_LOCK).unwrap();
    match store_b
        .lock(&lock, "server-b", StdDuration::from_secs(5))
        .await
    {
        Err(StoreError::LockHeld { holder, .. }) => assert_eq!(holder, HOLDER),
        other => panic!("the renewal lock should be A's: {other:?}"),
    }

    // Kill A (SIGKILL: no unlock, no clean-up) in the middle of its order.
    let killed_at = OffsetDateTime::now_utc();
    holder.child.kill().unwrap();
    let status = holder.child.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "A was killed, not exited: {status}"
        );
    }

    // B and C keep trying together (as their background tasks would, every minute; here
    // every 500 ms): refused until A's lease has expired, then one of them renews.
    let deadline = Instant::now() + StdDuration::from_secs(HOLDER_TTL_SECS + 60);
    let mut busy_passes = 0;
    let renewed_by = loop {
        let (b, c) = tokio::join!(renewers[0].run_once(), renewers[1].run_once());
        let (b, c) = (b.unwrap(), c.unwrap());
        assert!(
            b.failed.is_empty() && c.failed.is_empty(),
            "a renewal failed: {b:?} {c:?}"
        );
        match (b.renewed.as_slice(), c.renewed.as_slice()) {
            ([], []) => {}
            ([Target::System], []) => break "B",
            ([], [Target::System]) => break "C",
            _ => panic!("both survivors renewed: {b:?} {c:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "nobody completed the renewal: {b:?} {c:?}"
        );
        busy_passes += 1;
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    };
    let renewed_at = OffsetDateTime::now_utc();
    assert!(
        renewed_at >= expires_at,
        "{renewed_by} renewed at {renewed_at}, before A's lease ended at {expires_at}"
    );
    assert!(
        busy_passes > 0,
        "the first passes after the kill should have found A's lock still held"
    );
    println!(
        "A (token {token}) killed mid-order {:.1} before its lease ended; B and C refused {busy_passes} time(s), then {renewed_by} renewed {:.1} after the lease ended",
        expires_at - killed_at,
        renewed_at - expires_at
    );
    assert_eq!(orders_total(), 1, "the survivors placed one order");
    // Afterwards nobody orders again.
    for r in &renewers {
        r.run_once().await.unwrap();
    }
    assert_eq!(orders_total(), 1);
    let new = store_b.current(&Target::System).await.unwrap().unwrap();
    assert_ne!(new.bundle.leaf(), old.leaf());
    assert_eq!(new.bundle.meta().source, Source::Acme);
    assert_eq!(new.bundle.meta().names, [host.as_str()]);

    // A write by the killed holder with its old fencing token is refused, whatever it writes.
    let dead = Lease {
        lock: lock.clone(),
        holder: HOLDER.into(),
        token,
        expires_at,
    };
    let record = RecordKey::new("renewal/system").unwrap();
    match store_b
        .put(
            &record,
            b"{\"from\":\"the killed holder\"}",
            &Condition::none().fenced_by(&dead),
        )
        .await
    {
        Err(StoreError::Fenced { token: t, .. }) => assert_eq!(t, token),
        other => panic!("a write with the dead holder's token went through: {other:?}"),
    }
    let stale = self_signed_bundle(&[&host], now, now + Duration::days(90), Source::Acme);
    assert!(matches!(
        store_b
            .install(&Target::System, &stale, &Condition::none().fenced_by(&dead))
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        store_b
            .current(&Target::System)
            .await
            .unwrap()
            .unwrap()
            .bundle
            .leaf(),
        new.bundle.leaf(),
        "the refused install changed nothing"
    );
    // B released the lock; the next grant's token is larger than the dead one.
    let next = store_b
        .lock(&lock, "server-b", StdDuration::from_secs(5))
        .await
        .unwrap();
    assert!(next.token > token);
    store_b.unlock(&next).await.unwrap();
}
