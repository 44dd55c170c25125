//! Issue 8: "the fencing token is the lease's revision, checked on every write a lock holder
//! makes", through the real issuing code, on the shared etcd cluster of
//! `scripts/peers/etcd.sh` and the real pebble of `scripts/peers/pebble.sh`:
//!
//! - a holder of the renewal lock that pauses in the middle of its order (after the
//!   certificate was downloaded and checked, before the install) past its lease: another
//!   server takes the lock, and when the paused holder goes on, its install through
//!   `AcmeClient::issue_fenced` → `StoreState::install_fenced` is refused as
//!   `AcmeError::Fenced`; the installed certificate is unchanged;
//! - the same through the renewer (`Renewer::renew_now` with `AcmeIssuer`): paused as a
//!   whole, its lease keep-alive stops too, another server takes the lock and installs, and
//!   the paused renewer ends with `RenewError::LeaseLost`, its certificate never installed;
//! - a renewer whose etcd is unreachable (a loopback TCP proxy in front of the real cluster,
//!   switched off) places no order and reports the store's error in its status; when the
//!   proxy is back it renews by itself (no wake-up from the test).
//!
//! Without the peers' variables each test prints why it is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use bmcert_acme::{AcmeError, ChallengeBoard, Http01Listener, IssueRequest, Progress, StoreState};
use bmcert_renew::{AcmeIssuer, ManualClock, MemoryNotifier, Renewer, RenewerConfig};
use bmcert_store::{keys, Bundle, Condition, Fingerprint, Lease, RecordKey, Source, Store};
use bmcert_store_etcd::{EtcdOptions, EtcdStore};
use bmcert_test::peers::{etcd_endpoints, unique_label, unique_name, Pebble};
use bmcert_test::renewal::{self_signed_bundle, topology};
use bmcert_topology::Target;
use time::{Duration, OffsetDateTime};

/// Pebble's validator connects to one fixed HTTP-01 port: the tests of this binary take
/// turns on it.
static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn peers() -> Option<(Pebble, Vec<String>)> {
    let pebble = Pebble::from_env()?;
    let endpoints = etcd_endpoints()?;
    Some((pebble, endpoints))
}

/// A store client of its own (one "server") on `endpoints` under `prefix`.
async fn connect(endpoints: Vec<String>, prefix: &str, timeout: StdDuration) -> Arc<dyn Store> {
    let mut options = EtcdOptions::new(endpoints);
    options.prefix = prefix.to_owned();
    options.request_timeout = timeout;
    options.connect_timeout = timeout;
    tokio::task::spawn_blocking(move || {
        Arc::new(EtcdStore::connect(options).expect("connect to etcd")) as Arc<dyn Store>
    })
    .await
    .unwrap()
}

/// Listens on pebble's HTTP-01 port for `board`, retrying (bounded) while the listener of a
/// test that just ended lets go of it.
async fn http01(pebble: &Pebble, board: &ChallengeBoard) -> Http01Listener {
    let addr = SocketAddr::from(([127, 0, 0, 1], pebble.http01));
    let deadline = Instant::now() + StdDuration::from_secs(15);
    loop {
        match Http01Listener::bind(addr, Arc::new(board.clone())).await {
            Ok(l) => return l,
            Err(e) => {
                assert!(Instant::now() < deadline, "HTTP-01 port stays busy: {e}");
                tokio::time::sleep(StdDuration::from_millis(100)).await;
            }
        }
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Installs (unconditionally) an ACME-issued-looking certificate for `host`, self-signed,
/// valid from `not_before` to `not_after`: the one to be replaced.
async fn install_old(
    store: &dyn Store,
    host: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Bundle {
    let old = self_signed_bundle(&[host], not_before, not_after, Source::Acme);
    store
        .install(&Target::System, &old, &Condition::none())
        .await
        .unwrap();
    old
}

/// A point where an ACME client's progress callback pauses (its thread blocked, as a
/// paused process) until the test resumes it.
struct Pause {
    reached: tokio::sync::mpsc::UnboundedReceiver<()>,
    resume: std::sync::mpsc::Sender<()>,
}

impl Pause {
    /// The pause and the function the callback calls to pause (for at most 60 s: then it
    /// fails with `never_resumed`).
    fn new(never_resumed: &'static str) -> (Self, impl Fn() + Send + Sync + 'static) {
        let (reached_tx, reached) = tokio::sync::mpsc::unbounded_channel();
        let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
        let resume_rx = std::sync::Mutex::new(resume_rx);
        let pause = move || {
            let _ = reached_tx.send(());
            let paused = resume_rx
                .lock()
                .unwrap()
                .recv_timeout(StdDuration::from_secs(60));
            assert!(paused.is_ok(), "{never_resumed}");
        };
        (Self { reached, resume }, pause)
    }

    /// Waits (at most 60 s) until the client pauses; fails with `what` otherwise.
    async fn reached(&mut self, what: &str) {
        tokio::time::timeout(StdDuration::from_secs(60), self.reached.recv())
            .await
            .expect(what)
            .unwrap();
    }

    fn resume(&self) {
        self.resume.send(()).unwrap();
    }
}

/// Takes `lock` for "survivor" once the paused holder's lease expires (retrying every
/// 200 ms, for at most 30 s).
async fn take_over(store: &dyn Store, lock: &RecordKey) -> Lease {
    let deadline = Instant::now() + StdDuration::from_secs(30);
    loop {
        match store
            .lock(lock, "survivor", StdDuration::from_secs(30))
            .await
        {
            Ok(lease) => return lease,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the paused lease never expired: {e}"
                );
                tokio::time::sleep(StdDuration::from_millis(200)).await;
            }
        }
    }
}

async fn fingerprint(store: &dyn Store) -> (Fingerprint, u64) {
    let current = store.current(&Target::System).await.unwrap().unwrap();
    (current.bundle.meta().fingerprint, current.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_has_its_install_refused_as_fenced() {
    init_tracing();
    let Some((pebble, endpoints)) = peers() else {
        return;
    };
    let _port = PORTS.lock().await;
    let prefix = format!("/{}/", unique_label("fencing"));
    let holder_store = connect(endpoints.clone(), &prefix, StdDuration::from_secs(5)).await;
    let survivor_store = connect(endpoints, &prefix, StdDuration::from_secs(5)).await;
    let host = unique_name("fenced");
    let now = OffsetDateTime::now_utc();
    install_old(
        holder_store.as_ref(),
        &host,
        now - Duration::days(80),
        now + Duration::days(10),
    )
    .await;
    let before = fingerprint(survivor_store.as_ref()).await;

    // The holder's ACME client stops after the certificate was downloaded and checked,
    // before the install, until the test lets it go on: a paused process.
    let config = pebble.acme_config(None).await;
    let board = ChallengeBoard::new();
    let (mut pause, paused_at_checked) = Pause::new("the test never resumed the holder");
    let client = bmcert_acme::AcmeClient::new(
        config,
        Arc::new(StoreState::new(holder_store.clone())),
        board.clone(),
    )
    .unwrap()
    .with_gate(Arc::new(bmcert::CertManager::new(
        holder_store.clone(),
        topology(&host),
    )))
    .with_progress(move |p| {
        if *p == Progress::Checked {
            paused_at_checked();
        }
    });
    let client = Arc::new(client);
    client.accept_terms().await.unwrap();
    let _listener = http01(&pebble, &board).await;

    // A short lease, kept alive (as the renewer does) until the holder pauses.
    let lock = RecordKey::new(keys::RENEWAL_LOCK).unwrap();
    let ttl = StdDuration::from_secs(2);
    let lease = holder_store
        .lock(&lock, "paused-holder", ttl)
        .await
        .unwrap();
    let fence = lease.fence();
    let keep_alive = {
        let (store, lease) = (holder_store.clone(), lease.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 4).await;
                store.renew(&lease, ttl).await.unwrap();
            }
        })
    };
    let topo = topology(&host);
    // The holder runs on a thread and runtime of its own, which the pause blocks whole,
    // as a paused process: the test's runtime goes on.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let client = client.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let result = rt.block_on(client.issue_fenced(
                &topo,
                &IssueRequest::new(Target::System),
                Some(&fence),
            ));
            let _ = done_tx.send(result);
        });
    }
    let started = Instant::now();
    pause.reached("the order reaches the install").await;
    eprintln!(
        "holder paused before its install after {:?}",
        started.elapsed()
    );
    // Paused: its keep-alive stops with it.
    keep_alive.abort();
    assert!(keep_alive.await.unwrap_err().is_cancelled());
    // While it is paused, its lease expires and another server takes the lock.
    let taken = take_over(survivor_store.as_ref(), &lock).await;
    eprintln!("lock taken over after {:?}", started.elapsed());
    assert!(taken.token > lease.token);
    pause.resume();
    let result = tokio::time::timeout(StdDuration::from_secs(30), done_rx)
        .await
        .expect("the holder finishes")
        .expect("the holder's thread ended without a result");
    match result {
        Err(AcmeError::Fenced {
            during,
            lock: l,
            token,
        }) => {
            assert_eq!(during, "installing the certificate");
            assert_eq!(l, lock.to_string());
            assert_eq!(token, lease.token);
        }
        other => panic!("the stale holder's install was not refused as fenced: {other:?}"),
    }
    // Nothing changed: the certificate, its version, and no HTTP-01 record left behind.
    assert_eq!(fingerprint(survivor_store.as_ref()).await, before);
    assert!(survivor_store.keys("acme/http01").await.unwrap().is_empty());
    // The lock's current holder still writes.
    survivor_store
        .install(
            &Target::System,
            &self_signed_bundle(&[&host], now, now + Duration::days(90), Source::Acme),
            &Condition::none().fenced_by(&taken),
        )
        .await
        .unwrap();
    survivor_store.unlock(&taken).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewer_paused_mid_attempt_loses_its_lock_and_installs_nothing() {
    init_tracing();
    let Some((pebble, endpoints)) = peers() else {
        return;
    };
    let _port = PORTS.lock().await;
    let prefix = format!("/{}/", unique_label("paused-renewer"));
    let paused_store = connect(endpoints.clone(), &prefix, StdDuration::from_secs(5)).await;
    let survivor_store = connect(endpoints, &prefix, StdDuration::from_secs(5)).await;
    let host = unique_name("paused");
    let now = OffsetDateTime::now_utc();
    install_old(
        paused_store.as_ref(),
        &host,
        now - Duration::days(80),
        now + Duration::days(10),
    )
    .await;

    // The renewer's ACME client stops after the certificate was downloaded and checked,
    // before the install. The renewer runs on a thread and runtime of its own, which the
    // pause blocks whole (its lease keep-alive included), as a paused process.
    let board = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let (mut pause, paused_at_checked) = Pause::new("the test never resumed the renewer");
    let counted = orders.clone();
    let client = bmcert_acme::AcmeClient::new(
        pebble.acme_config(None).await,
        Arc::new(StoreState::new(paused_store.clone())),
        board.clone(),
    )
    .unwrap()
    .with_gate(Arc::new(bmcert::CertManager::new(
        paused_store.clone(),
        topology(&host),
    )))
    .with_progress(move |p| match p {
        Progress::Ordered { .. } => {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        Progress::Checked => paused_at_checked(),
        _ => {}
    });
    client.accept_terms().await.unwrap();
    let _listener = http01(&pebble, &board).await;
    let renewer = Renewer::new(
        paused_store.clone(),
        Arc::new(AcmeIssuer::new(Arc::new(client), topology(&host))),
        Arc::new(MemoryNotifier::default()),
        Arc::new(ManualClock::new(now)),
        RenewerConfig {
            holder: "paused-renewer".into(),
            // Renewed every 2 s while the renewer runs (a loaded machine keeps it).
            lock_ttl: StdDuration::from_secs(6),
            ..RenewerConfig::default()
        },
    );
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done_tx.send(rt.block_on(renewer.renew_now(&Target::System)));
    });
    let started = Instant::now();
    pause.reached("the renewal reaches the install").await;
    eprintln!(
        "renewer paused before its install after {:?}",
        started.elapsed()
    );
    // Its lease is not kept alive while it is paused: another server takes the lock and
    // installs a certificate of its own under it.
    let lock = RecordKey::new(keys::RENEWAL_LOCK).unwrap();
    let taken = take_over(survivor_store.as_ref(), &lock).await;
    eprintln!("lock taken over after {:?}", started.elapsed());
    let survivors = self_signed_bundle(&[&host], now, now + Duration::days(90), Source::Acme);
    survivor_store
        .install(
            &Target::System,
            &survivors,
            &Condition::none().fenced_by(&taken),
        )
        .await
        .unwrap();
    let after_survivor = fingerprint(survivor_store.as_ref()).await;
    pause.resume();
    let result = tokio::time::timeout(StdDuration::from_secs(30), done_rx)
        .await
        .expect("the renewer finishes")
        .expect("the renewer's thread ended without a result");
    match result {
        Err(bmcert_renew::RenewError::LeaseLost { target, reason }) => {
            assert_eq!(target, Target::System);
            assert!(!reason.is_empty());
        }
        other => panic!("the paused renewer did not lose its lock: {other:?}"),
    }
    // It ordered once and installed nothing: the survivor's certificate stays, and the
    // renewal record is not the paused renewer's either.
    assert_eq!(orders.load(Ordering::SeqCst), 1);
    assert_eq!(fingerprint(survivor_store.as_ref()).await, after_survivor);
    assert_eq!(after_survivor.0, survivors.meta().fingerprint);
    assert!(survivor_store.keys("acme/http01").await.unwrap().is_empty());
    // Its renewal record (the outcome of its attempt) was refused too: none was written.
    let record = keys::target_key(keys::RENEWAL_PREFIX, &Target::System).unwrap();
    assert_eq!(survivor_store.get(&record).await.unwrap(), None);
    survivor_store.unlock(&taken).await.unwrap();
}

/// A loopback TCP proxy in front of one etcd member, switched off (listener closed and every
/// connection cut) and on again on the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    tasks: Option<tokio::task::JoinSet<()>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let mut proxy = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream: upstream.to_owned(),
            tasks: None,
        };
        proxy.on().await;
        proxy
    }

    async fn on(&mut self) {
        let deadline = Instant::now() + StdDuration::from_secs(15);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot bind {}: {e}", self.addr);
                    tokio::time::sleep(StdDuration::from_millis(100)).await;
                }
            }
        };
        self.addr = listener.local_addr().unwrap();
        let upstream = self.upstream.clone();
        let mut tasks = tokio::task::JoinSet::new();
        let conns = Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let held = conns.clone();
        tasks.spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let _held = held;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                conns.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }

    async fn off(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_wait_while_etcd_is_unreachable_and_resume_by_themselves() {
    init_tracing();
    let Some((pebble, endpoints)) = peers() else {
        return;
    };
    let _port = PORTS.lock().await;
    let prefix = format!("/{}/", unique_label("outage"));
    let mut proxy = Proxy::start(&endpoints[0]).await;
    let direct = connect(endpoints.clone(), &prefix, StdDuration::from_secs(5)).await;
    let proxied = connect(
        vec![proxy.addr.to_string()],
        &prefix,
        StdDuration::from_secs(1),
    )
    .await;
    let host = unique_name("outage");
    let now = OffsetDateTime::now_utc();
    let old = install_old(
        direct.as_ref(),
        &host,
        now - Duration::days(10),
        now + Duration::days(80),
    )
    .await;

    let orders = Arc::new(AtomicU32::new(0));
    let board = ChallengeBoard::new();
    let client = bmcert_test::pebble::store_client_counting_orders(
        pebble.acme_config(None).await,
        &proxied,
        &topology(&host),
        board.clone(),
        &orders,
    );
    client.accept_terms().await.unwrap();
    let _listener = http01(&pebble, &board).await;
    let clock = Arc::new(ManualClock::new(now));
    let renewer = Renewer::new(
        proxied.clone(),
        Arc::new(AcmeIssuer::new(client, topology(&host))),
        Arc::new(MemoryNotifier::default()),
        clock.clone(),
        RenewerConfig {
            holder: "outage-server".into(),
            lock_ttl: StdDuration::from_secs(10),
            pass_retry: StdDuration::from_millis(500),
            ..RenewerConfig::default()
        },
    );
    let first = renewer.status().await.unwrap();
    assert_eq!(first[0].last_error, None);
    let running = renewer.start();

    // etcd becomes unreachable, then the certificate becomes due.
    proxy.off().await;
    clock.advance(Duration::days(70));
    renewer.wake();
    let deadline = Instant::now() + StdDuration::from_secs(30);
    let during = loop {
        let rows = renewer.status().await.unwrap();
        if rows[0].last_error.is_some() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the outage never showed in the status"
        );
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    };
    // The rows last read, with the store's error.
    let error = during[0].last_error.as_deref().unwrap();
    assert!(error.contains("renewals wait"), "{error}");
    assert!(error.contains("unavailable"), "{error}");
    assert_eq!(during[0].names, first[0].names);
    assert_eq!(during[0].next_renewal, first[0].next_renewal);
    // Several passes fail meanwhile (one every 500 ms); none orders anything.
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    assert_eq!(orders.load(Ordering::SeqCst), 0);
    assert_eq!(fingerprint(direct.as_ref()).await.0, old.meta().fingerprint);

    // etcd is reachable again: the renewer renews without being woken.
    proxy.on().await;
    let deadline = Instant::now() + StdDuration::from_secs(120);
    loop {
        let (fp, _) = fingerprint(direct.as_ref()).await;
        if fp != old.meta().fingerprint {
            break;
        }
        if Instant::now() > deadline {
            let rows = renewer.status().await;
            panic!("no renewal after etcd came back: {rows:?}");
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    assert_eq!(orders.load(Ordering::SeqCst), 1);
    // The renewal record is written after the install (which the loop above saw): wait
    // for it, boundedly.
    let deadline = Instant::now() + StdDuration::from_secs(10);
    let rows = loop {
        let rows = renewer.status().await.unwrap();
        if rows[0].last_attempt.is_some() || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    };
    assert_eq!(rows[0].last_error, None);
    assert!(rows[0].last_attempt.is_some(), "{rows:?}");
    running.stop().await;
    proxy.off().await;
}
