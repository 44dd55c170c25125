//! A local HTTPS ACME server scripted for ACME Renewal Information (RFC 9773), since pebble
//! 2.4 has none: a directory with (or without) `renewalInfo`, a window for every
//! renewal-information GET, accounts, and orders it records (decoded JWS payloads) and then
//! fails (it validates nothing). Loopback only. Shared by bmcert-acme's `tests/ari.rs` and
//! `tests/faults.rs` (its [`loopback_tls`]) and bmcert-renew's `tests/ari.rs` (`#[path]`).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bmcert_acme::{AcmeClient, AcmeConfig, ChallengeBoard, Directory, MemoryState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The RFC 9773 section 4.1 example identifier, and the certificate it names.
pub const RFC_ID: &str = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";

pub fn rfc_example_leaf() -> Vec<u8> {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![
        0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE,
        0x2C, 0xDE, 0x01, 0xC8, 0xD4,
    ]);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec!["mail.example.test".to_owned()]).unwrap();
    leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[
        0x00, 0x87, 0x65, 0x43, 0x21,
    ]));
    leaf.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().unwrap();
    leaf.signed_by(&key, &issuer).unwrap().der().to_vec()
}

/// How the scripted CA behaves.
#[derive(Clone, Copy)]
pub struct Script {
    /// The directory has `renewalInfo`.
    pub ari: bool,
    /// The body answered to a renewal-information GET (status 200).
    pub ari_body: &'static str,
    /// The first newOrder naming `replaces` is refused with `alreadyReplaced` (409).
    pub refuse_replaces: bool,
    /// Orders are answered without echoing `replaces` (against RFC 9773 section 5).
    pub ignore_replaces: bool,
    /// The profiles the directory advertises (`meta.profiles`: name, description).
    pub profiles: &'static [(&'static str, &'static str)],
}

pub const WINDOW: &str = r#"{"suggestedWindow":{"start":"2030-01-02T04:00:00Z","end":"2030-01-03T04:00:00Z"},"explanationURL":"https://ca.example/why"}"#;

impl Default for Script {
    fn default() -> Self {
        Self {
            ari: true,
            ari_body: WINDOW,
            refuse_replaces: false,
            ignore_replaces: false,
            profiles: &[],
        }
    }
}

/// What the scripted CA saw.
#[derive(Default)]
pub struct Seen {
    /// Every request: method and path.
    pub requests: Vec<(String, String)>,
    /// The decoded JWS payload of each newOrder.
    pub new_orders: Vec<Value>,
    /// Whether the refusal was already given.
    pub refused: bool,
    /// The last order object answered.
    pub order: Option<Value>,
}

pub struct Ca {
    pub directory: String,
    pub ca_pem: Vec<u8>,
    pub seen: Arc<Mutex<Seen>>,
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Request {
        method,
        path,
        body: buf[head_end..head_end + length].to_vec(),
    })
}

fn jws_payload(body: &[u8]) -> Value {
    let jws: Value = serde_json::from_slice(body).unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(jws["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// Answers one request: status line, extra headers, body.
fn answer(
    script: Script,
    base: &str,
    seen: &Mutex<Seen>,
    req: &Request,
) -> (String, String, String) {
    let mut seen = seen.lock().unwrap();
    seen.requests.push((req.method.clone(), req.path.clone()));
    let json_ct = "Content-Type: application/json\r\n".to_owned();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/dir") => {
            let mut dir = json!({
                "newNonce": format!("{base}/nonce"),
                "newAccount": format!("{base}/account"),
                "newOrder": format!("{base}/order"),
                "meta": {"termsOfService": "https://ca.example/terms.pdf"},
            });
            if script.ari {
                dir["renewalInfo"] = json!(format!("{base}/ari"));
            }
            if !script.profiles.is_empty() {
                dir["meta"]["profiles"] = script
                    .profiles
                    .iter()
                    .map(|(name, description)| ((*name).to_owned(), json!(description)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            ("200 OK".into(), json_ct, dir.to_string())
        }
        ("HEAD" | "GET", "/nonce") => ("200 OK".into(), String::new(), String::new()),
        ("POST", "/account") => (
            "201 Created".into(),
            format!("{json_ct}Location: {base}/account/1\r\n"),
            json!({"status": "valid"}).to_string(),
        ),
        ("POST", "/order") => {
            let payload = jws_payload(&req.body);
            seen.new_orders.push(payload.clone());
            let replaces = payload.get("replaces").cloned();
            if script.refuse_replaces && replaces.is_some() && !seen.refused {
                seen.refused = true;
                let problem = json!({
                    "type": "urn:ietf:params:acme:error:alreadyReplaced",
                    "detail": "the certificate was already replaced by another order",
                    "status": 409,
                });
                return (
                    "409 Conflict".into(),
                    "Content-Type: application/problem+json\r\n".into(),
                    problem.to_string(),
                );
            }
            // An order the CA then fails: this CA validates nothing, the test is about
            // what the client sent.
            let mut order = json!({
                "status": "invalid",
                "identifiers": payload["identifiers"],
                "authorizations": [],
                "finalize": format!("{base}/finalize/1"),
                "error": {
                    "type": "urn:ietf:params:acme:error:unauthorized",
                    "detail": "scripted CA: no validation here",
                    "status": 403,
                },
            });
            if let Some(r) = replaces.filter(|_| !script.ignore_replaces) {
                order["replaces"] = r;
            }
            seen.order = Some(order.clone());
            (
                "201 Created".into(),
                format!("{json_ct}Location: {base}/order/1\r\n"),
                order.to_string(),
            )
        }
        ("POST", "/order/1") => match &seen.order {
            Some(order) => ("200 OK".into(), json_ct, order.to_string()),
            None => ("404 Not Found".into(), String::new(), String::new()),
        },
        ("GET", p) if p.starts_with("/ari/") => (
            "200 OK".into(),
            format!("{json_ct}Retry-After: 3600\r\n"),
            script.ari_body.to_owned(),
        ),
        _ => ("404 Not Found".into(), String::new(), String::new()),
    }
}

/// A TLS acceptor on a fresh 127.0.0.1 port, serving a certificate for `localhost` and
/// 127.0.0.1, and the PEM of the CA that signed it (for the client to trust).
pub async fn loopback_tls() -> (tokio_rustls::TlsAcceptor, tokio::net::TcpListener, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (acceptor, listener, ca.pem().into_bytes())
}

pub async fn scripted_ca(script: Script) -> Ca {
    let (acceptor, listener, ca_pem) = loopback_tls().await;
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (seen2, base2) = (seen.clone(), base.clone());
    tokio::spawn(async move {
        let mut nonce = 0u64;
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            nonce += 1;
            let (acceptor, seen, base) = (acceptor.clone(), seen2.clone(), base2.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                // Several requests per connection (keep-alive), each with a fresh nonce.
                let mut n = 0;
                while let Some(req) = read_request(&mut tls).await {
                    n += 1;
                    let (status, headers, body) = answer(script, &base, &seen, &req);
                    let body = if req.method == "HEAD" {
                        String::new()
                    } else {
                        body
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\n{headers}Replay-Nonce: nonce-{nonce}-{n}\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ca {
        directory: format!("{base}/dir"),
        ca_pem,
        seen,
    }
}

pub fn client(ca: &Ca) -> AcmeClient {
    client_with_state(ca, MemoryState::new())
}

/// [`client`] over a state the test keeps (to seed or read records).
pub fn client_with_state(ca: &Ca, state: Arc<MemoryState>) -> AcmeClient {
    let mut config = AcmeConfig::new(Directory::Url(ca.directory.clone()));
    config.directory_roots = AcmeConfig::certificates_from_pem(&ca.ca_pem, "test CA").unwrap();
    config.retry.total = Duration::from_secs(10);
    config.poll.first_delay = Duration::from_millis(10);
    config.poll.total = Duration::from_secs(10);
    AcmeClient::new(config, state.clone(), ChallengeBoard::new())
        .unwrap()
        .with_gate(state)
}
