//! Answering challenges: HTTP-01 (`/.well-known/acme-challenge/TOKEN`) and TLS-ALPN-01
//! (`acme-tls/1`), on any server of the installation.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::{AcmeError, ListenError};

/// The path prefix of HTTP-01 requests (RFC 8555 section 8.3).
pub const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Where a server looks up an HTTP-01 key authorization by token.
pub trait TokenLookup: Send + Sync {
    /// The key authorization for `token`, if a challenge with that token is pending.
    fn key_authorization(&self, token: &str) -> Option<String>;
}

/// The HTTP-01 handler any HTTP server can call: request path in, response body out.
///
/// Returns `Some(key authorization)` for `/.well-known/acme-challenge/TOKEN` when the token is
/// pending; `None` for every other path or an unknown token (answer 404). Tokens are
/// base64url (RFC 8555 section 8.1); anything else is refused without a lookup.
pub fn http01_response(path: &str, tokens: &dyn TokenLookup) -> Option<String> {
    let token = path.strip_prefix(HTTP01_PATH_PREFIX)?;
    let token = token.split(['?', '#']).next().unwrap_or(token);
    if token.is_empty()
        || token.len() > 256
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    tokens.key_authorization(token)
}

/// The HTTP-01 handler for a server that is not running the order itself: the key
/// authorization is read from the installation's store (`acme/http01/TOKEN`), where the
/// server running the order published it. Same contract as [`http01_response`].
pub async fn http01_response_from_state(
    path: &str,
    state: &dyn crate::AcmeState,
) -> Option<String> {
    struct Probe(std::sync::Mutex<Option<String>>);
    impl TokenLookup for Probe {
        fn key_authorization(&self, token: &str) -> Option<String> {
            if let Ok(mut t) = self.0.lock() {
                *t = Some(token.to_owned());
            }
            None
        }
    }
    // Validate the path and extract the token with the same rules as the sync handler.
    let probe = Probe(std::sync::Mutex::new(None));
    let _ = http01_response(path, &probe);
    let token = probe.0.into_inner().ok().flatten()?;
    let key = format!("{}{token}", crate::keys::HTTP01_PREFIX);
    let bytes = state.get(&key).await.ok()??;
    Http01Record::decode(&bytes).map(|r| r.key_authorization)
}

/// The stored form of an HTTP-01 token record (`acme/http01/TOKEN`): the key authorization,
/// and when it was published, so that the records a stopped server left behind can be
/// swept once no order can still need them ([`AcmeClient::sweep_challenges`](crate::AcmeClient::sweep_challenges)).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Http01Record {
    pub(crate) key_authorization: String,
    /// Seconds since the Unix epoch; `None` for a record of the key authorization alone
    /// (as versions before the sweep wrote it).
    #[serde(default)]
    pub(crate) published_at: Option<i64>,
}

impl Http01Record {
    pub(crate) fn encode(key_authorization: &str, published_at: i64) -> Vec<u8> {
        serde_json::json!({
            "key_authorization": key_authorization,
            "published_at": published_at,
        })
        .to_string()
        .into_bytes()
    }

    /// The record in `bytes`: JSON, or the key authorization alone (older records). `None`
    /// when it is neither (a damaged record answers nothing).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.first() == Some(&b'{') {
            return serde_json::from_slice(bytes).ok();
        }
        let text = std::str::from_utf8(bytes).ok()?;
        // A key authorization is `token.thumbprint`, base64url on both sides.
        let plain = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        plain.then(|| Self {
            key_authorization: text.to_owned(),
            published_at: None,
        })
    }
}

/// Where an HTTP-01 listener finds its answers when looking them up takes I/O: the
/// installation's store, where any server's order published its tokens
/// (`bmcert::Installation` implements it). Every [`TokenLookup`] is one too.
pub trait Http01Source: Send + Sync {
    /// The answer to a request for `path`: the key authorization of a pending token, or
    /// `None` (404). Same contract as [`http01_response`].
    fn answer<'a>(&'a self, path: &'a str) -> crate::BoxFuture<'a, Option<String>>;
}

impl<T: TokenLookup> Http01Source for T {
    fn answer<'a>(&'a self, path: &'a str) -> crate::BoxFuture<'a, Option<String>> {
        let answer = http01_response(path, self);
        Box::pin(async move { answer })
    }
}

/// The pending challenges of this process: HTTP-01 key authorizations by token and
/// TLS-ALPN-01 certificates by DNS name. Cheap to clone (shared).
///
/// The flow adds entries before telling the CA a challenge is ready and removes them when the
/// order ends, success or failure. HTTP-01 tokens are also written to the store so other
/// servers of the installation can answer (see [`crate::AcmeClient`]).
#[derive(Clone, Default)]
pub struct ChallengeBoard {
    inner: Arc<RwLock<Board>>,
}

#[derive(Default)]
struct Board {
    http01: HashMap<String, String>,
    tls_alpn: HashMap<String, Arc<CertifiedKey>>,
}

impl fmt::Debug for ChallengeBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, t) = self
            .inner
            .read()
            .map(|b| (b.http01.len(), b.tls_alpn.len()))
            .unwrap_or_default();
        f.debug_struct("ChallengeBoard")
            .field("http01_tokens", &h)
            .field("tls_alpn_names", &t)
            .finish()
    }
}

impl ChallengeBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes an HTTP-01 key authorization.
    pub fn add_http01(&self, token: &str, key_authorization: &str) {
        if let Ok(mut b) = self.inner.write() {
            b.http01
                .insert(token.to_owned(), key_authorization.to_owned());
        }
    }

    /// Removes an HTTP-01 token.
    pub fn remove_http01(&self, token: &str) {
        if let Ok(mut b) = self.inner.write() {
            b.http01.remove(token);
        }
    }

    /// Publishes a TLS-ALPN-01 certificate for `name`.
    pub fn add_tls_alpn(&self, name: &str, cert: Arc<CertifiedKey>) {
        if let Ok(mut b) = self.inner.write() {
            b.tls_alpn.insert(name.to_ascii_lowercase(), cert);
        }
    }

    /// Removes the TLS-ALPN-01 certificate of `name`.
    pub fn remove_tls_alpn(&self, name: &str) {
        if let Ok(mut b) = self.inner.write() {
            b.tls_alpn.remove(&name.to_ascii_lowercase());
        }
    }

    /// The number of pending HTTP-01 tokens and TLS-ALPN-01 names.
    pub fn pending(&self) -> (usize, usize) {
        self.inner
            .read()
            .map(|b| (b.http01.len(), b.tls_alpn.len()))
            .unwrap_or_default()
    }

    fn tls_alpn_cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.inner
            .read()
            .ok()?
            .tls_alpn
            .get(&name.to_ascii_lowercase())
            .cloned()
    }
}

impl TokenLookup for ChallengeBoard {
    fn key_authorization(&self, token: &str) -> Option<String> {
        self.inner.read().ok()?.http01.get(token).cloned()
    }
}

/// A rustls resolver that answers TLS-ALPN-01 validation handshakes (ClientHello offering only
/// `acme-tls/1`, RFC 8737) with the pending challenge certificate for the SNI name, and hands
/// every other handshake to `inner` (the installation's normal resolver).
///
/// The server's `ServerConfig::alpn_protocols` must include [`ACME_TLS_ALPN`] for rustls to
/// accept the protocol; the server closes such connections after the handshake.
#[derive(Debug)]
pub struct ResolvesServerCertWithAcme {
    inner: Arc<dyn ResolvesServerCert>,
    board: ChallengeBoard,
}

impl ResolvesServerCertWithAcme {
    /// Wraps `inner`, answering TLS-ALPN-01 from `board`.
    pub fn new(inner: Arc<dyn ResolvesServerCert>, board: ChallengeBoard) -> Self {
        Self { inner, board }
    }
}

impl ResolvesServerCert for ResolvesServerCertWithAcme {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let wants_acme = client_hello
            .alpn()
            .map(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
            .unwrap_or(false);
        if wants_acme {
            tracing::trace!(sni = ?client_hello.server_name(), "TLS-ALPN-01 validation handshake");
            // A validation handshake is never answered with the normal certificate.
            return self.board.tls_alpn_cert(client_hello.server_name()?);
        }
        self.inner.resolve(client_hello)
    }
}

/// A resolver with no certificate: the inner resolver for servers that only answer
/// TLS-ALPN-01 (tests, standalone issuance).
#[derive(Debug)]
pub struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// Reads the request target from the first line of an HTTP/1.x request (`GET /path HTTP/1.1`).
/// Sans-I/O; `None` for anything that is not a well-formed GET or HEAD request line.
pub fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = core::str::from_utf8(&head[..line_end]).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some()
        || !(method == "GET" || method == "HEAD")
        || !version.starts_with("HTTP/1.")
        || !target.starts_with('/')
    {
        return None;
    }
    Some((method, target))
}

/// How many connections a challenge listener serves at once; further ones wait in the
/// kernel's accept queue until one ends. A CA validates from a handful of vantage points, so
/// this is far above real use and only bounds what a flood of idle connections can hold.
pub(crate) const MAX_CHALLENGE_CONNECTIONS: usize = 256;

/// The longest a challenge connection may take, from accept to close (request read, answer
/// written, or TLS handshake done). An idle connection is closed then, freeing its slot.
pub(crate) const CHALLENGE_CONNECTION_TIME_LIMIT: core::time::Duration =
    core::time::Duration::from_secs(10);

/// The longest pause after a failed `accept` (see [`accept_loop`]).
const MAX_ACCEPT_BACKOFF: core::time::Duration = core::time::Duration::from_secs(1);

/// The bounded accept loop of the challenge listeners, for any small server of an
/// installation (the agent's metrics endpoint uses it too): runs until the task is dropped.
///
/// - At most 256 connections are open at once: a slot is taken
///   *before* `accept`, so a full listener leaves new connections in the kernel's queue
///   instead of accepting and dropping them.
/// - Each connection gets 10 s in all.
/// - A failed `accept` (out of file descriptors, `EMFILE`/`ENFILE`, or of memory) is
///   retried after a pause that doubles from 5 ms to 1 s while the
///   failures last, as Go's `net/http` and hyper's examples do: the loop never spins on an
///   error that only time (connections ending) can clear. A connection reset before it was
///   accepted is skipped without a pause.
pub async fn accept_loop<F, Fut>(listener: TcpListener, what: &'static str, serve: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: core::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CHALLENGE_CONNECTIONS));
    let mut backoff = core::time::Duration::ZERO;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                if !backoff.is_zero() {
                    tracing::info!(listener = what, "accepting connections again");
                    backoff = core::time::Duration::ZERO;
                }
                let connection = serve(stream);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CHALLENGE_CONNECTION_TIME_LIMIT, connection).await;
                    drop(slot);
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                drop(slot);
                if backoff.is_zero() {
                    tracing::warn!(listener = what, error = %e, "accept failed; retrying with back-off (out of file descriptors?)");
                }
                backoff = next_backoff(backoff);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// 5 ms, then doubled, at most [`MAX_ACCEPT_BACKOFF`].
fn next_backoff(previous: core::time::Duration) -> core::time::Duration {
    if previous.is_zero() {
        core::time::Duration::from_millis(5)
    } else {
        (previous * 2).min(MAX_ACCEPT_BACKOFF)
    }
}

/// The HTTP-01 answer to one request: 200 with the key authorization for a pending token,
/// 404 for anything else, 405 for methods other than GET and HEAD (hyper leaves out the body
/// of a HEAD answer).
async fn http01_answer(
    request: &http::Request<hyper::body::Incoming>,
    tokens: &dyn Http01Source,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, body) =
        if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
            (http::StatusCode::METHOD_NOT_ALLOWED, None)
        } else {
            match tokens.answer(request.uri().path()).await {
                Some(key_authorization) => (http::StatusCode::OK, Some(key_authorization)),
                None => (http::StatusCode::NOT_FOUND, None),
            }
        };
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
        body.clone().unwrap_or_default(),
    )));
    *response.status_mut() = status;
    if body.is_some() {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
    }
    response
}

/// An HTTP/1.1 listener answering only `/.well-known/acme-challenge/` from a
/// [`TokenLookup`] (like certbot's standalone mode). Stops when dropped or [`stop`]ped.
///
/// Requests are parsed by hyper's HTTP/1 server (one request per connection, at most 8 KiB
/// buffered). At most 256 connections are served at once (further ones wait in the kernel's
/// queue), each for at most 10 s from accept to close, and a failed `accept` (out of file
/// descriptors) is retried after a pause doubling from 5 ms to 1 s, so a flood of idle
/// connections neither exhausts the process nor makes it spin.
///
/// [`stop`]: Http01Listener::stop
#[derive(Debug)]
pub struct Http01Listener {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Http01Listener {
    /// Binds `addr` and serves tokens from `tokens` until stopped.
    pub async fn bind(addr: SocketAddr, tokens: Arc<dyn TokenLookup>) -> Result<Self, AcmeError> {
        struct Lookup(Arc<dyn TokenLookup>);
        impl Http01Source for Lookup {
            fn answer<'a>(&'a self, path: &'a str) -> crate::BoxFuture<'a, Option<String>> {
                let answer = http01_response(path, self.0.as_ref());
                Box::pin(async move { answer })
            }
        }
        Self::serve(addr, Arc::new(Lookup(tokens))).await
    }

    /// Binds `addr` and answers from `source` (which may read the store) until stopped.
    pub async fn serve(addr: SocketAddr, source: Arc<dyn Http01Source>) -> Result<Self, AcmeError> {
        let tokens = source;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| AcmeError::Listen {
                addr,
                source: ListenError::Bind(e),
            })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let task = tokio::spawn(accept_loop(listener, "http-01", move |stream| {
            let tokens = tokens.clone();
            async move {
                let service = hyper::service::service_fn(move |request| {
                    let tokens = tokens.clone();
                    async move {
                        Ok::<_, core::convert::Infallible>(
                            http01_answer(&request, tokens.as_ref()).await,
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(CHALLENGE_CONNECTION_TIME_LIMIT)
                    .max_buf_size(8192)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            }
        }));
        Ok(Self { addr, task })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections; the port is released when this returns.
    pub async fn stop(mut self) {
        self.task.abort();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for Http01Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS listener that answers only TLS-ALPN-01 validation handshakes from a
/// [`ChallengeBoard`] and closes every connection after the handshake (standalone issuance
/// when port 443 is not served by anything else). Connections are capped and `accept`
/// errors backed off as for [`Http01Listener`]. Stops when dropped or [`stop`]ped.
///
/// [`stop`]: TlsAlpn01Listener::stop
#[derive(Debug)]
pub struct TlsAlpn01Listener {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsAlpn01Listener {
    /// Binds `addr` and answers from `board` until stopped.
    pub async fn bind(addr: SocketAddr, board: ChallengeBoard) -> Result<Self, AcmeError> {
        let listen_err = |source: ListenError| AcmeError::Listen { addr, source };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| listen_err(ListenError::Tls(e)))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(ResolvesServerCertWithAcme::new(
                Arc::new(NoCertificate),
                board,
            )));
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| listen_err(ListenError::Bind(e)))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let task = tokio::spawn(accept_loop(listener, "tls-alpn-01", move |stream| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = tls.shutdown().await;
                }
            }
        }));
        Ok(Self { addr, task })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections; the port is released when this returns.
    pub async fn stop(mut self) {
        self.task.abort();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for TlsAlpn01Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn http01_answers_pending_tokens_only() {
        let board = ChallengeBoard::new();
        board.add_http01("tok_en-1", "tok_en-1.thumb");
        assert_eq!(
            http01_response("/.well-known/acme-challenge/tok_en-1", &board).as_deref(),
            Some("tok_en-1.thumb")
        );
        assert_eq!(
            http01_response("/.well-known/acme-challenge/other", &board),
            None
        );
        assert_eq!(
            http01_response("/.well-known/acme-challenge/", &board),
            None
        );
        assert_eq!(
            http01_response("/.well-known/acme-challenge/../x", &board),
            None
        );
        assert_eq!(http01_response("/tok_en-1", &board), None);
        board.remove_http01("tok_en-1");
        assert_eq!(
            http01_response("/.well-known/acme-challenge/tok_en-1", &board),
            None
        );
    }

    #[test]
    fn http01_from_the_store_for_other_servers() {
        let state = crate::MemoryState::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            crate::AcmeState::put(&*state, "acme/http01/tok", b"tok.thumb".to_vec(), false)
                .await
                .unwrap();
            assert_eq!(
                http01_response_from_state("/.well-known/acme-challenge/tok", &*state)
                    .await
                    .as_deref(),
                Some("tok.thumb")
            );
            assert_eq!(
                http01_response_from_state("/.well-known/acme-challenge/other", &*state).await,
                None
            );
            assert_eq!(
                http01_response_from_state("/.well-known/acme-challenge/../../x", &*state).await,
                None
            );
        });
    }

    #[test]
    fn request_line_parsing() {
        assert_eq!(
            parse_request_line(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/a"))
        );
        assert_eq!(parse_request_line(b"POST /a HTTP/1.1\r\n"), None);
        assert_eq!(parse_request_line(b"GET /a HTTP/1.1"), None, "no line end");
        assert_eq!(parse_request_line(b"GET a HTTP/1.1\r\n"), None);
        assert_eq!(parse_request_line(b"GET /a b HTTP/1.1\r\n"), None);
    }

    proptest! {
        #[test]
        fn request_line_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some((m, p)) = parse_request_line(&bytes) {
                prop_assert!(m == "GET" || m == "HEAD");
                prop_assert!(p.starts_with('/'));
            }
        }

        #[test]
        fn http01_never_answers_unknown_tokens(path in "\\PC{0,80}") {
            let board = ChallengeBoard::new();
            board.add_http01("known", "known.thumb");
            let answer = http01_response(&path, &board);
            prop_assert!(answer.is_none() || path.starts_with("/.well-known/acme-challenge/known"));
        }
    }
}
