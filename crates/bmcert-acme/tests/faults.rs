//! The HTTP layer's fault handling against a local HTTPS server scripted to fail: `429` and
//! `503` are retried after `Retry-After`, `5xx` and connection errors back off, and a CA
//! failing for longer than the budget ends in a typed error. Loopback only; no pebble needed.
//!
//! No test asserts how long anything took. What is observed instead:
//! - the scripted CA's own record of when each request arrived, compared with the
//!   `Retry-After` it sent: a retry that came before the CA allowed it is a misbehaving client
//!   (a lower bound on behaviour, not a speed claim);
//! - the delays the client chose, from its `tracing` events (`wait` / `delay` fields of
//!   "ACME request: ... retrying"): they follow the documented schedule (the CA's
//!   `Retry-After`, else `first_delay` doubling) and add up to no more than the budget, and
//!   the client says when it gave up because the budget was spent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bmcert_acme::{
    AcmeClient, AcmeConfig, AcmeError, ChallengeBoard, Directory, MemoryState, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::layer::SubscriberExt;

#[path = "support/scripted_ca.rs"]
mod support;

const DIRECTORY: &str = r#"{"newNonce":"https://127.0.0.1/n","newAccount":"https://127.0.0.1/a","newOrder":"https://127.0.0.1/o","meta":{"termsOfService":"https://ca.example/terms.pdf"}}"#;

/// The first delay after a failure in these tests ([`bmcert_acme::RetryBudget::first_delay`]).
const FIRST_DELAY: Duration = Duration::from_millis(50);

/// What the scripted CA saw: the hit counter and the instant each request arrived (read
/// whole), in order.
#[derive(Clone, Default)]
struct Seen {
    hits: Arc<AtomicUsize>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Seen {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The time between each request and the next one, as the CA saw them.
    fn gaps(&self) -> Vec<Duration> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Serves HTTPS on loopback: the first `failures` requests get `status` (with `retry_after`
/// if given), the rest the directory. Returns the URL, the CA to trust and what it saw.
async fn scripted_ca(
    failures: usize,
    status: &'static str,
    retry_after: Option<&'static str>,
) -> (String, Vec<u8>, Seen) {
    let (acceptor, listener, ca_pem) = support::loopback_tls().await;
    let url = format!(
        "https://127.0.0.1:{}/dir",
        listener.local_addr().unwrap().port()
    );
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let n = {
                    // Counter and arrival under one lock, so that arrival i is request i.
                    let mut arrivals = record.arrivals.lock().unwrap();
                    arrivals.push(Instant::now());
                    record.hits.fetch_add(1, Ordering::SeqCst)
                };
                let response = if n < failures {
                    let extra = retry_after
                        .map(|r| format!("Retry-After: {r}\r\n"))
                        .unwrap_or_default();
                    format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{DIRECTORY}",
                        DIRECTORY.len()
                    )
                };
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, ca_pem, seen)
}

fn client(url: &str, ca: &[u8], total: Duration) -> AcmeClient {
    let mut config = AcmeConfig::new(Directory::Url(url.to_owned()));
    config.directory_roots = AcmeConfig::certificates_from_pem(ca, "test CA").unwrap();
    config.retry.first_delay = FIRST_DELAY;
    config.retry.total = total;
    let state = MemoryState::new();
    AcmeClient::new(config, state.clone(), ChallengeBoard::new())
        .unwrap()
        .with_gate(state)
}

/// One `tracing` event: its message and its other fields, formatted with `Debug`.
#[derive(Clone, Debug)]
struct Event {
    message: String,
    fields: HashMap<String, String>,
}

/// Records every event emitted on this thread while its guard lives (`#[tokio::test]` runs
/// the client's futures on the test's thread).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

struct Visitor<'a>(&'a mut Event);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0.message = format!("{value:?}");
        } else {
            self.0
                .fields
                .insert(field.name().to_owned(), format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut e = Event {
            message: String::new(),
            fields: HashMap::new(),
        };
        event.record(&mut Visitor(&mut e));
        self.0.lock().unwrap().push(e);
    }
}

impl Events {
    /// Starts recording on this thread.
    fn record() -> (Self, tracing::subscriber::DefaultGuard) {
        let events = Self::default();
        let subscriber = tracing_subscriber::registry().with(events.clone());
        (events, tracing::subscriber::set_default(subscriber))
    }

    fn with_message(&self, prefix: &str) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.message.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The delays the client chose before retrying (field `field` of the events whose message
    /// starts with `prefix`), in order.
    fn delays(&self, prefix: &str, field: &str) -> Vec<Duration> {
        self.with_message(prefix)
            .iter()
            .map(|e| {
                let text = e
                    .fields
                    .get(field)
                    .unwrap_or_else(|| panic!("no `{field}` in {e:?}"));
                parse_debug_duration(text)
            })
            .collect()
    }
}

/// Reads a `Duration` back from its `Debug` form (`1s`, `1.6s`, `50ms`, `100µs`, `10ns`),
/// exactly (integer arithmetic).
fn parse_debug_duration(text: &str) -> Duration {
    let (number, scale) = [
        ("ns", 1u128),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
    ]
    .iter()
    .find_map(|(u, scale)| text.strip_suffix(u).map(|n| (n, *scale)))
    .unwrap_or_else(|| panic!("not a Duration: {text:?}"));
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = whole
        .parse()
        .unwrap_or_else(|e| panic!("not a Duration: {text:?}: {e}"));
    let mut nanos = whole * scale;
    if !fraction.is_empty() {
        let digits: u128 = fraction
            .parse()
            .unwrap_or_else(|e| panic!("not a Duration: {text:?}: {e}"));
        nanos += digits * scale / 10u128.pow(fraction.len() as u32);
    }
    Duration::from_nanos(u64::try_from(nanos).unwrap())
}

/// `first_delay` doubling: the schedule without `Retry-After` (well below `max_delay` here).
fn doubling(n: usize) -> Vec<Duration> {
    (0..n).map(|i| FIRST_DELAY * (1 << i)).collect()
}

const BUSY: &str = "ACME request: CA busy, retrying";
const SPENT: &str = "ACME request: retry budget spent";
const CONNECTION: &str = "ACME request: connection failed, retrying";

#[test]
fn debug_durations_read_back() {
    for d in [
        Duration::from_secs(1),
        Duration::from_millis(1600),
        Duration::from_millis(50),
        Duration::from_micros(100),
        Duration::from_nanos(10),
        Duration::from_nanos(1_234_567_891),
    ] {
        assert_eq!(parse_debug_duration(&format!("{d:?}")), d);
    }
}

#[tokio::test]
async fn rate_limited_requests_wait_for_retry_after() {
    let (events, _guard) = Events::record();
    let (url, ca, seen) = scripted_ca(2, "429 Too Many Requests", Some("1")).await;
    let acme = client(&url, &ca, Duration::from_secs(20));
    let terms = acme.terms_url().await.unwrap();
    assert_eq!(terms.as_deref(), Some("https://ca.example/terms.pdf"));
    assert_eq!(seen.hits(), 3);
    assert_eq!(acme.counts().retried.load(Ordering::SeqCst), 2);
    // The client chose the CA's Retry-After, not its own back-off (50 ms, 100 ms).
    assert_eq!(
        events.delays(BUSY, "wait"),
        [Duration::from_secs(1), Duration::from_secs(1)]
    );
    // And the CA saw no retry before the Retry-After it sent had passed.
    let gaps = seen.gaps();
    assert_eq!(gaps.len(), 2);
    for gap in gaps {
        assert!(
            gap >= Duration::from_secs(1),
            "a retry came {gap:?} after a 429 with Retry-After: 1"
        );
    }
}

#[tokio::test]
async fn service_unavailable_honours_retry_after_too() {
    let (events, _guard) = Events::record();
    let (url, ca, seen) = scripted_ca(1, "503 Service Unavailable", Some("1")).await;
    let acme = client(&url, &ca, Duration::from_secs(20));
    assert!(acme.terms_url().await.unwrap().is_some());
    assert_eq!(seen.hits(), 2);
    assert_eq!(events.delays(BUSY, "wait"), [Duration::from_secs(1)]);
    let gaps = seen.gaps();
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
}

#[tokio::test]
async fn server_errors_back_off_then_succeed() {
    let (events, _guard) = Events::record();
    let (url, ca, seen) = scripted_ca(3, "503 Service Unavailable", None).await;
    let acme = client(&url, &ca, Duration::from_secs(20));
    assert!(acme.terms_url().await.unwrap().is_some());
    assert_eq!(seen.hits(), 4);
    // No Retry-After: first_delay, doubling.
    assert_eq!(events.delays(BUSY, "wait"), doubling(3));
    let gaps = seen.gaps();
    for (gap, wait) in gaps.iter().zip(doubling(3)) {
        assert!(
            *gap >= wait,
            "a retry came {gap:?} after a 503, before {wait:?}"
        );
    }
    assert!(events.with_message(SPENT).is_empty());
}

#[tokio::test]
async fn a_ca_failing_beyond_the_budget_ends_with_the_budget_spent() {
    let (events, _guard) = Events::record();
    let budget = Duration::from_secs(2);
    let (url, ca, seen) = scripted_ca(usize::MAX, "500 Internal Server Error", None).await;
    let acme = client(&url, &ca, budget);
    let e = acme.terms_url().await.unwrap_err();
    assert!(
        matches!(
            e,
            AcmeError::Unreachable {
                cause: Transport::Status { status: 500, .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("500"), "{e}");

    // The delays chosen follow the schedule and fit in the budget; the client stopped
    // because the next one would not have.
    let waits = events.delays(BUSY, "wait");
    assert!(waits.len() >= 2, "retried with back-off: {waits:?}");
    assert_eq!(waits, doubling(waits.len()));
    assert!(waits.iter().sum::<Duration>() <= budget, "{waits:?}");
    assert_eq!(events.with_message(SPENT).len(), 1, "the budget was spent");
    assert_eq!(seen.hits(), waits.len() + 1, "one request per attempt");
    assert_eq!(
        acme.counts().retried.load(Ordering::SeqCst),
        waits.len() as u64
    );
}

#[tokio::test]
async fn an_unreachable_ca_ends_with_the_budget_spent() {
    let (events, _guard) = Events::record();
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, ca, _) = scripted_ca(0, "200 OK", None).await;
    let budget = Duration::from_secs(2);
    let acme = client(&format!("https://127.0.0.1:{port}/dir"), &ca, budget);
    let e = acme.terms_url().await.unwrap_err();
    // hyper's connection error, kept typed, its causes in the message.
    assert!(
        matches!(
            e,
            AcmeError::Unreachable {
                cause: Transport::Connect(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("Connection refused"), "{e}");
    let delays = events.delays(CONNECTION, "delay");
    assert!(delays.len() >= 2, "retried with back-off: {delays:?}");
    assert_eq!(delays, doubling(delays.len()));
    assert!(delays.iter().sum::<Duration>() <= budget, "{delays:?}");
    assert_eq!(
        acme.counts().retried.load(Ordering::SeqCst),
        delays.len() as u64
    );
}

#[tokio::test]
async fn a_wrong_directory_url_is_reported_with_its_status_and_not_retried() {
    let (events, _guard) = Events::record();
    let (url, ca, seen) = scripted_ca(usize::MAX, "404 Not Found", None).await;
    let acme = client(&url, &ca, Duration::from_secs(2));
    let e = acme.terms_url().await.unwrap_err();
    assert!(matches!(e, AcmeError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string().contains("404") && e.to_string().contains("directory URL"),
        "{e}"
    );
    assert_eq!(seen.hits(), 1, "a 404 is not retried");
    assert!(events.with_message(BUSY).is_empty());
}

/// Serves a CA whose directory and nonces work and whose `newAccount` always answers `429`
/// with a `rateLimited` problem document and `Retry-After: 7200`. Returns the directory URL,
/// the CA to trust and how many `newAccount` requests arrived.
async fn rate_limiting_ca() -> (String, Vec<u8>, Arc<AtomicUsize>) {
    let (acceptor, listener, ca_pem) = support::loopback_tls().await;
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let directory = format!(
        r#"{{"newNonce":"{base}/n","newAccount":"{base}/a","newOrder":"{base}/o","meta":{{"termsOfService":"https://ca.example/terms.pdf"}}}}"#
    );
    let accounts = Arc::new(AtomicUsize::new(0));
    let seen = accounts.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let (acceptor, directory, seen) = (acceptor.clone(), directory.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 16384];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let nonce = "Replay-Nonce: bm-nonce\r\n";
                let response = match path.as_str() {
                    "/dir" => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{directory}",
                        directory.len()
                    ),
                    "/n" => format!("HTTP/1.1 200 OK\r\n{nonce}Content-Length: 0\r\nConnection: close\r\n\r\n"),
                    _ => {
                        seen.fetch_add(1, Ordering::SeqCst);
                        let problem = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new registrations from this address","status":429}"#;
                        format!(
                            "HTTP/1.1 429 Too Many Requests\r\n{nonce}Retry-After: 7200\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{problem}",
                            problem.len()
                        )
                    }
                };
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (format!("{base}/dir"), ca_pem, accounts)
}

#[tokio::test]
async fn a_final_rate_limit_carries_the_cas_retry_after_out_of_instant_acme() {
    let (url, ca, accounts) = rate_limiting_ca().await;
    let acme = client(&url, &ca, Duration::from_secs(2));
    acme.accept_terms().await.unwrap();
    let site = bmcert_topology::Site::new("https://mail.example.test", &[]).unwrap();
    let topology = bmcert_topology::Topology::new(site);
    let Err(e) = acme.account(&topology, Some("admin@example.test")).await else {
        panic!("the account was created although the CA answered 429");
    };
    let problem = e.problem().unwrap_or_else(|| panic!("a refusal: {e:?}"));
    assert_eq!(problem.short_kind(), Some("rateLimited"), "{e}");
    assert_eq!(problem.status, Some(429));
    // Retry-After (two hours) is longer than the budget: not waited for, handed out.
    assert_eq!(
        problem.retry_after,
        Some(Duration::from_secs(7200)),
        "{e:?}"
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7200)));
    assert_eq!(
        accounts.load(Ordering::SeqCst),
        1,
        "not retried within the budget"
    );
}
