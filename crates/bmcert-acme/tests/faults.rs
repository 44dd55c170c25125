//! The HTTP layer's fault handling against a local HTTPS server scripted to fail: `429` and
//! `503` are retried after `Retry-After`, `5xx` for longer than the budget ends in a typed
//! error in bounded time. Loopback only; no pebble needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_acme::{AcmeClient, AcmeConfig, AcmeError, ChallengeBoard, Directory, MemoryState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/scripted_ca.rs"]
mod support;

const DIRECTORY: &str = r#"{"newNonce":"https://127.0.0.1/n","newAccount":"https://127.0.0.1/a","newOrder":"https://127.0.0.1/o","meta":{"termsOfService":"https://ca.example/terms.pdf"}}"#;

/// Serves HTTPS on loopback: the first `failures` requests get `status` (with `retry_after`
/// if given), the rest the directory. Returns the URL, the CA to trust and the hit counter.
async fn scripted_ca(
    failures: usize,
    status: &'static str,
    retry_after: Option<&'static str>,
) -> (String, Vec<u8>, Arc<AtomicUsize>) {
    let (acceptor, listener, ca_pem) = support::loopback_tls().await;
    let url = format!(
        "https://127.0.0.1:{}/dir",
        listener.local_addr().unwrap().port()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let counter = counter.clone();
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
                let n = counter.fetch_add(1, Ordering::SeqCst);
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
    (url, ca_pem, hits)
}

fn client(url: &str, ca: &[u8], total: Duration) -> AcmeClient {
    let mut config = AcmeConfig::new(Directory::Url(url.to_owned()));
    config.directory_roots = AcmeConfig::certificates_from_pem(ca, "test CA").unwrap();
    config.retry.first_delay = Duration::from_millis(50);
    config.retry.total = total;
    AcmeClient::new(config, MemoryState::new(), ChallengeBoard::new()).unwrap()
}

#[tokio::test]
async fn rate_limited_requests_wait_for_retry_after() {
    let (url, ca, hits) = scripted_ca(2, "429 Too Many Requests", Some("1")).await;
    let acme = client(&url, &ca, Duration::from_secs(20));
    let start = Instant::now();
    let terms = acme.terms_url().await.unwrap();
    assert_eq!(terms.as_deref(), Some("https://ca.example/terms.pdf"));
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 honoured twice, took {:?}",
        start.elapsed()
    );
    assert_eq!(acme.counts().retried.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn server_errors_back_off_then_succeed() {
    let (url, ca, hits) = scripted_ca(3, "503 Service Unavailable", None).await;
    let acme = client(&url, &ca, Duration::from_secs(20));
    assert!(acme.terms_url().await.unwrap().is_some());
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_ca_failing_beyond_the_budget_ends_in_bounded_time() {
    let (url, ca, hits) = scripted_ca(usize::MAX, "500 Internal Server Error", None).await;
    let acme = client(&url, &ca, Duration::from_secs(2));
    let start = Instant::now();
    let e = acme.terms_url().await.unwrap_err();
    assert!(matches!(e, AcmeError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("500"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(hits.load(Ordering::SeqCst) >= 3, "retried with back-off");
}

#[tokio::test]
async fn an_unreachable_ca_ends_in_bounded_time() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, ca, _) = scripted_ca(0, "200 OK", None).await;
    let acme = client(
        &format!("https://127.0.0.1:{port}/dir"),
        &ca,
        Duration::from_secs(2),
    );
    let start = Instant::now();
    let e = acme.terms_url().await.unwrap_err();
    assert!(matches!(e, AcmeError::Unreachable { .. }), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(acme.counts().retried.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_wrong_directory_url_is_reported_with_its_status_and_not_retried() {
    let (url, ca, hits) = scripted_ca(usize::MAX, "404 Not Found", None).await;
    let acme = client(&url, &ca, Duration::from_secs(2));
    let e = acme.terms_url().await.unwrap_err();
    assert!(matches!(e, AcmeError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string().contains("404") && e.to_string().contains("directory URL"),
        "{e}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "a 404 is not retried");
}
