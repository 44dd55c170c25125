//! The ACME client: directory and terms, the installation's account, and the order flow.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_bundle::CheckedBundle;
use bmcert_store::Fence;
use bmcert_topology::{DomainName, Target, Topology};
use bytes::Bytes;
use http::Request;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, BytesResponse, CertificateIdentifier, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
    RevocationRequest,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::challenge::ChallengeBoard;
use crate::error::{Problem, Subproblem};
use crate::http::{RequestCounts, RetryBudget, RetryingClient};
use crate::state::{keys, AcmeState, Issued, StateError};
use crate::{
    order_names, AcmeError, BadRoot, GateError, InstallGate, KeyGenError, ProtocolError, Transport,
};

/// Which ACME directory to use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Directory {
    /// Let's Encrypt production (browser-trusted certificates).
    #[default]
    LetsEncrypt,
    /// Let's Encrypt staging (untrusted test certificates, generous rate limits).
    LetsEncryptStaging,
    /// Any other ACME directory URL.
    Url(String),
}

impl Directory {
    /// The directory URL.
    pub fn url(&self) -> &str {
        match self {
            Self::LetsEncrypt => "https://acme-v02.api.letsencrypt.org/directory",
            Self::LetsEncryptStaging => "https://acme-staging-v02.api.letsencrypt.org/directory",
            Self::Url(url) => url,
        }
    }
}

/// The certificate key generated for an order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256 (the default: small and fast).
    #[default]
    EcdsaP256,
    /// RSA 2048 bits.
    Rsa2048,
    /// RSA 3072 bits.
    Rsa3072,
    /// RSA 4096 bits.
    Rsa4096,
}

/// The challenge type answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChallengeKind {
    /// HTTP-01 on port 80: `/.well-known/acme-challenge/TOKEN`.
    #[default]
    Http01,
    /// TLS-ALPN-01 on port 443 (`acme-tls/1`), for installations whose port 80 is closed.
    TlsAlpn01,
}

impl ChallengeKind {
    /// The challenge type's name: `http-01` or `tls-alpn-01`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// How order status is polled: fast at first, then exponentially slower, honouring the CA's
/// `Retry-After`, within a bounded total time.
#[derive(Clone, Copy, Debug)]
pub struct PollSchedule {
    /// The first delay.
    pub first_delay: Duration,
    /// The factor each next delay is multiplied by.
    pub backoff: f32,
    /// The longest an order may take from creation to download.
    pub total: Duration,
}

impl Default for PollSchedule {
    fn default() -> Self {
        // 100 ms, 150 ms, 225 ms, ... : a valid order is noticed within a few hundred
        // milliseconds, and a slow CA is polled about every 10 s after a minute.
        Self {
            first_delay: Duration::from_millis(100),
            backoff: 1.5,
            total: Duration::from_secs(300),
        }
    }
}

/// Configuration of an [`AcmeClient`].
#[derive(Clone, Debug, Default)]
pub struct AcmeConfig {
    /// The directory (Let's Encrypt production by default).
    pub directory: Directory,
    /// Extra roots trusted for the directory's HTTPS (a test CA such as pebble's). When
    /// empty, the system's trusted roots are used.
    pub directory_roots: Vec<CertificateDer<'static>>,
    /// Roots the issued chain must lead to. When empty, the system's trusted roots.
    pub chain_roots: Vec<CertificateDer<'static>>,
    /// The certificate key generated for orders.
    pub key: KeyKind,
    /// The challenge answered.
    pub challenge: ChallengeKind,
    /// Order polling.
    pub poll: PollSchedule,
    /// HTTP retries (connection errors, `5xx`, `429`).
    pub retry: RetryBudget,
    /// How requests reach the CA: the environment's `HTTPS_PROXY`/`NO_PROXY` by default,
    /// directly, or through a given proxy (HTTP `CONNECT`).
    pub proxy: crate::ProxySetting,
    /// External Account Binding credentials for a CA that requires them (its directory says
    /// `externalAccountRequired`): used once, when the account is created.
    pub external_account: Option<crate::ExternalAccountBinding>,
}

impl AcmeConfig {
    /// A configuration for `directory` with defaults for the rest.
    pub fn new(directory: Directory) -> Self {
        Self {
            directory,
            ..Self::default()
        }
    }

    /// Reads PEM certificates (e.g. the `--directory-ca` file); `what` names the source in errors.
    pub fn certificates_from_pem(
        pem_bytes: &[u8],
        what: &str,
    ) -> Result<Vec<CertificateDer<'static>>, AcmeError> {
        let blocks = pem::parse_many(pem_bytes).map_err(|source| {
            AcmeError::BadRoot(BadRoot::NotPem {
                what: what.to_owned(),
                source,
            })
        })?;
        let certs: Vec<_> = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| CertificateDer::from(b.into_contents()))
            .collect();
        if certs.is_empty() {
            return Err(AcmeError::BadRoot(BadRoot::NoCertificate {
                what: what.to_owned(),
            }));
        }
        Ok(certs)
    }
}

/// What to order.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The target the certificate is for.
    pub target: Target,
    /// The contact address given when Let's Encrypt is activated for the target: kept per
    /// target once the certificate is installed (`contact/<target>`: the renewer's expiry
    /// warnings for the target go there), used to register the installation's account when
    /// there is none yet (`no-reply@<default domain>` when absent), and made the account's
    /// contact when given for the system target.
    pub email: Option<String>,
    /// DNS names beyond the topology's URL host and additional names.
    pub extra_names: Vec<String>,
    /// The RFC 9773 identifier ([`ari_certificate_id`](crate::ari_certificate_id)) of the
    /// certificate this order replaces, sent as the order's `replaces` when the CA offers
    /// renewal information. A CA that refuses it (e.g. already replaced) does not block the
    /// renewal: the order is placed once more without it.
    pub replaces: Option<String>,
    /// The certificate profile to order (draft-aaron-acme-profiles). `None`: the one kept
    /// for the target by an earlier order (`profile/<target>`: renewals order what the
    /// administrator chose), else the CA's default. A choice given here is kept for the
    /// target once the certificate is installed.
    pub profile: Option<ProfileChoice>,
}

/// Which certificate profile to order ([`IssueRequest::profile`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileChoice {
    /// Ordered when the CA's directory advertises it; otherwise the CA's default profile,
    /// with a warning ([`Progress::ProfileFallback`] and a `tracing` warning).
    Preferred(String),
    /// Ordered when the CA's directory advertises it; otherwise
    /// [`AcmeError::ProfileNotOffered`] before anything is ordered.
    Required(String),
    /// The CA's default profile; the profile kept for the target is forgotten.
    CaDefault,
}

impl IssueRequest {
    /// An order for `target` with no extra names and the default contact.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            email: None,
            extra_names: Vec::new(),
            replaces: None,
            profile: None,
        }
    }

    /// The same order, naming the certificate it replaces (its RFC 9773 identifier).
    pub fn replacing(mut self, certificate_id: impl Into<String>) -> Self {
        self.replaces = Some(certificate_id.into());
        self
    }
}

/// Why a certificate is revoked ([`AcmeClient::revoke`]): the RFC 5280 section 5.3.1
/// reason codes ACME CAs accept (Let's Encrypt takes these five).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeReason {
    /// `unspecified` (0).
    Unspecified,
    /// `keyCompromise` (1): the private key leaked. Let's Encrypt then refuses the key for
    /// every later order (bmcert generates a new key for each order anyway).
    KeyCompromise,
    /// `affiliationChanged` (3): the names changed owner or purpose.
    AffiliationChanged,
    /// `superseded` (4): replaced by another certificate.
    Superseded,
    /// `cessationOfOperation` (5): the names are no longer used.
    CessationOfOperation,
}

/// A revocation reason name that is not one of [`RevokeReason`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a revocation reason: expected unspecified, keyCompromise, affiliationChanged, superseded or cessationOfOperation")]
pub struct UnknownRevokeReason(pub String);

impl RevokeReason {
    /// Every reason, in code order.
    pub const ALL: [Self; 5] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
    ];

    /// The RFC 5280 name (`keyCompromise`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
        }
    }

    /// The RFC 5280 reason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
        }
    }

    fn to_acme(self) -> instant_acme::RevocationReason {
        use instant_acme::RevocationReason as R;
        match self {
            Self::Unspecified => R::Unspecified,
            Self::KeyCompromise => R::KeyCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
        }
    }
}

impl fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RevokeReason {
    type Err = UnknownRevokeReason;

    /// The RFC 5280 name, case-insensitively (`keyCompromise`, `keycompromise`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownRevokeReason(s.to_owned()))
    }
}

/// A step of an order, for progress lines.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// The account was registered with the CA.
    AccountRegistered {
        /// The contact address.
        contact: String,
    },
    /// The preferred profile is not advertised by the CA: its default profile is ordered.
    ProfileFallback {
        /// The profile asked for.
        wanted: String,
        /// The profiles the CA advertises.
        offered: Vec<String>,
    },
    /// The order was placed.
    Ordered {
        /// The names ordered.
        names: Vec<String>,
    },
    /// A challenge is published and the CA was told to validate it.
    ChallengeReady {
        /// The name validated.
        name: String,
    },
    /// Waiting for the CA to validate.
    Validating,
    /// The CSR was sent.
    Finalizing,
    /// The certificate was downloaded and passed the checks.
    Checked,
    /// The certificate was installed.
    Installed,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccountRegistered { contact } => write!(f, "account registered ({contact})"),
            Self::ProfileFallback { wanted, offered } => write!(
                f,
                "warning: the CA does not offer the profile `{wanted}` ({}); ordering its default profile",
                offered_list(offered)
            ),
            Self::Ordered { names } => write!(f, "order placed for {}", names.join(", ")),
            Self::ChallengeReady { name } => write!(f, "challenge ready for {name}"),
            Self::Validating => f.write_str("waiting for the CA to validate"),
            Self::Finalizing => f.write_str("sending the certificate request"),
            Self::Checked => f.write_str("certificate downloaded and checked"),
            Self::Installed => f.write_str("certificate installed"),
        }
    }
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// `it offers: a, b` or `it offers none`.
pub(crate) fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "it advertises no profiles".to_owned()
    } else {
        format!("it offers: {}", offered.join(", "))
    }
}

#[derive(Serialize, Deserialize)]
struct TermsRecord {
    url: String,
    accepted_at: i64,
}

/// The `contact/<target>` record: the address given when Let's Encrypt was activated.
#[derive(Serialize, Deserialize)]
struct ContactRecord {
    contact: String,
}

#[derive(Serialize, Deserialize)]
struct AccountRecord {
    directory: String,
    contact: String,
    credentials: AccountCredentials,
}

/// What this client reads from the CA's directory itself (instant-acme reads the rest).
#[derive(Clone, Deserialize)]
struct DirectoryDoc {
    #[serde(default)]
    meta: DirectoryMeta,
    #[serde(rename = "renewalInfo", default)]
    renewal_info: Option<String>,
}

#[derive(Clone, Deserialize, Default)]
struct DirectoryMeta {
    #[serde(rename = "termsOfService")]
    terms_of_service: Option<String>,
    /// The profiles the CA advertises (draft-aaron-acme-profiles): name -> description.
    #[serde(default)]
    profiles: BTreeMap<String, String>,
    /// Whether new accounts need External Account Binding (RFC 8555 section 7.1.1).
    #[serde(rename = "externalAccountRequired", default)]
    external_account_required: bool,
}

/// The `profile/<target>` record: the profile chosen for a target, kept for its renewals.
#[derive(Serialize, Deserialize)]
struct ProfileRecord {
    profile: String,
    required: bool,
}

/// What the order published and must remove when it ends.
enum Published {
    Http01(String),
    TlsAlpn(String),
}

/// The ACME client of an installation: one per directory, shared by every order.
///
/// `issue` may run concurrently for different targets; the account is registered once.
pub struct AcmeClient {
    config: AcmeConfig,
    http: Arc<RetryingClient>,
    counts: Arc<RequestCounts>,
    state: Arc<dyn AcmeState>,
    board: ChallengeBoard,
    gate: Option<Arc<dyn InstallGate>>,
    chain_roots: Vec<CertificateDer<'static>>,
    account: tokio::sync::Mutex<Option<Account>>,
    directory_doc: tokio::sync::Mutex<Option<DirectoryDoc>>,
    progress: Option<ProgressFn>,
    /// HTTP-01 records of orders whose future was dropped (an interrupted command, a lost
    /// lock), not yet removed from the store: [`AcmeClient::sweep_challenges`] removes them.
    abandoned: Abandoned,
}

impl fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeClient")
            .field("directory", &self.config.directory)
            .field("board", &self.board)
            .finish_non_exhaustive()
    }
}

struct SharedHttp(Arc<RetryingClient>);

impl HttpClient for SharedHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        self.0.request(req)
    }
}

const NONCE_RETRIES: u32 = 16;

/// Runs an instant-acme call again while the CA rejects its nonce (each call already retries
/// three times; `PEBBLE_WFE_NONCEREJECT=50` or a busy CA can exhaust that).
macro_rules! nonce_retry {
    ($call:expr) => {{
        let mut tries = 0u32;
        loop {
            match $call {
                Err(instant_acme::Error::Api(p))
                    if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce")
                        && tries < NONCE_RETRIES =>
                {
                    tries += 1;
                    tracing::debug!(tries, "ACME: badNonce, sending again");
                }
                other => break other,
            }
        }
    }};
}

/// Whether a problem answering an order with `replaces` may be the `replaces` itself: not a
/// rate limit, an unknown account or a bad nonce (handled elsewhere, or made worse by asking
/// again).
fn replaces_refusal(p: &instant_acme::Problem) -> bool {
    !matches!(
        p.r#type.as_deref(),
        Some(
            "urn:ietf:params:acme:error:rateLimited"
                | "urn:ietf:params:acme:error:accountDoesNotExist"
                | "urn:ietf:params:acme:error:badNonce"
                | "urn:ietf:params:acme:error:userActionRequired"
        )
    )
}

fn is_bad_nonce(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(p) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce"))
}

impl AcmeClient {
    /// A client for `config`, keeping its records in `state` and publishing challenges on
    /// `board` (share the board with the servers' HTTP-01 handler and TLS resolver).
    pub fn new(
        config: AcmeConfig,
        state: Arc<dyn AcmeState>,
        board: ChallengeBoard,
    ) -> Result<Self, AcmeError> {
        let counts = Arc::new(RequestCounts::default());
        let route = config.proxy.route().map_err(AcmeError::ProxyUrl)?;
        if let Some(route) = &route {
            tracing::debug!(?route, "ACME: requests to the CA go through a proxy");
        }
        let http = Arc::new(RetryingClient::new(
            &config.directory_roots,
            config.retry,
            counts.clone(),
            route,
        )?);
        let chain_roots = if config.chain_roots.is_empty() {
            rustls_native_certs::load_native_certs().certs
        } else {
            config.chain_roots.clone()
        };
        Ok(Self {
            config,
            http,
            counts,
            state,
            board,
            gate: None,
            chain_roots,
            account: tokio::sync::Mutex::new(None),
            directory_doc: tokio::sync::Mutex::new(None),
            progress: None,
            abandoned: Abandoned::default(),
        })
    }

    /// Hands issued certificates to `gate` (the installation's: `bmcert::CertManager`).
    /// Without a gate, [`issue`](Self::issue) refuses before ordering anything
    /// ([`AcmeError::NoGate`]); terms, account and challenges need none.
    pub fn with_gate(mut self, gate: Arc<dyn InstallGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Reports each step of an order to `f` (progress lines in the CLI).
    pub fn with_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// The challenge board this client publishes on.
    pub fn board(&self) -> &ChallengeBoard {
        &self.board
    }

    /// Removes the HTTP-01 records that no order still needs, and returns how many went:
    /// those of this client's orders that were abandoned (their future dropped, for
    /// instance by a command interrupted with SIGINT or SIGTERM: call this before exiting),
    /// and those of any server older than [`AcmeClient::challenge_lifetime`] (a server that
    /// was killed, or stopped between publishing and removing).
    ///
    /// Every order calls it before it publishes anything, so a record left behind is gone
    /// by the next order of any server of the installation. Removals that fail are logged
    /// and retried by the next sweep; only a failure to list the records is an error.
    pub async fn sweep_challenges(&self) -> Result<usize, AcmeError> {
        let mut removed = flush_abandoned(self.state.as_ref(), &self.abandoned).await;
        let keys = self
            .state
            .keys(keys::HTTP01_PREFIX)
            .await
            .map_err(|e| state_err("listing the HTTP-01 records", e))?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let lifetime = i64::try_from(self.challenge_lifetime().as_secs()).unwrap_or(i64::MAX);
        for key in keys {
            let Ok(Some(bytes)) = self.state.get(&key).await else {
                continue;
            };
            let stale = match crate::challenge::Http01Record::decode(&bytes) {
                Some(record) => match record.published_at {
                    Some(at) => now.saturating_sub(at) > lifetime,
                    // Written before records carried their time: no order of this version
                    // can need it.
                    None => true,
                },
                // Damaged: it answers nothing.
                None => true,
            };
            if !stale {
                continue;
            }
            match self.state.delete(&key).await {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(record = %key, "removed a stale HTTP-01 record");
                }
                Err(e) => {
                    tracing::warn!(record = %key, error = %e, "could not remove a stale HTTP-01 record")
                }
            }
        }
        Ok(removed)
    }

    /// How long an HTTP-01 record may be needed after it was published: the order's whole
    /// allowance ([`PollSchedule::total`], from the order's creation to the download), but
    /// at least an hour, so that a server configured with a longer allowance than this one
    /// never loses its records to this one's sweep.
    pub fn challenge_lifetime(&self) -> Duration {
        self.config.poll.total.max(Duration::from_secs(3600))
    }

    /// What this client sent so far.
    pub fn counts(&self) -> &RequestCounts {
        &self.counts
    }

    /// The configuration.
    pub fn config(&self) -> &AcmeConfig {
        &self.config
    }

    fn report(&self, p: Progress) {
        tracing::info!(progress = %p, "ACME");
        if let Some(f) = &self.progress {
            f(&p);
        }
    }

    /// The terms-of-service URL from the CA's directory (`None` when it names none), so an
    /// admin console can link to it. Reads the directory once (a `GET`).
    pub async fn terms_url(&self) -> Result<Option<String>, AcmeError> {
        Ok(self.directory_doc().await?.meta.terms_of_service)
    }

    /// The certificate profiles the CA's directory advertises (`meta.profiles`: name ->
    /// description), sorted by name; empty when it advertises none (pebble 2.4). Reads the
    /// directory once (a `GET`); no account needed.
    pub async fn profiles(&self) -> Result<BTreeMap<String, String>, AcmeError> {
        Ok(self.directory_doc().await?.meta.profiles)
    }

    /// The directory, read once and kept.
    async fn directory_doc(&self) -> Result<DirectoryDoc, AcmeError> {
        let mut cached = self.directory_doc.lock().await;
        if let Some(doc) = cached.as_ref() {
            return Ok(doc.clone());
        }
        let dir = self.config.directory.url();
        let unreachable = |cause: Transport| AcmeError::Unreachable {
            url: dir.to_owned(),
            during: "reading the directory",
            cause,
        };
        let (status, headers, body) = self.http.get_full(dir).await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(unreachable(Transport::Status {
                status: status.as_u16(),
                retry_after: crate::http::retry_after(&headers, std::time::SystemTime::now()),
            }));
        }
        let doc: DirectoryDoc = serde_json::from_slice(&body).map_err(|e| AcmeError::Protocol {
            during: "reading the directory",
            cause: ProtocolError::Directory(e),
        })?;
        *cached = Some(doc.clone());
        Ok(doc)
    }

    /// The renewal window the CA suggests for the installed certificate `leaf_der` (ARI,
    /// RFC 9773), or `None` when the CA's directory offers no renewal information (then the
    /// lifetime rule applies).
    ///
    /// One unauthenticated `GET` of `renewalInfo/<certificate id>` ([`ari_certificate_id`]
    /// names the certificate), after reading the directory once; no account or accepted
    /// terms are needed. The CA's `Retry-After` comes back in
    /// [`RenewalWindow::retry_after`]. A certificate without an authority key identifier
    /// is [`AcmeError::AriIdentifier`]; a CA answer that is not a window is
    /// [`AcmeError::Refused`] (a problem document) or [`AcmeError::Protocol`].
    ///
    /// [`ari_certificate_id`]: crate::ari_certificate_id
    /// [`RenewalWindow::retry_after`]: crate::RenewalWindow::retry_after
    pub async fn renewal_window(
        &self,
        leaf_der: &[u8],
    ) -> Result<Option<crate::RenewalWindow>, AcmeError> {
        let id = crate::ari_certificate_id(leaf_der)?;
        let Some(base) = self.directory_doc().await?.renewal_info else {
            return Ok(None);
        };
        let url = format!("{}/{id}", base.trim_end_matches('/'));
        let during = "reading the renewal information";
        let (status, headers, body) =
            self.http
                .get_full(&url)
                .await
                .map_err(|cause| AcmeError::Unreachable {
                    url: url.clone(),
                    during,
                    cause,
                })?;
        let retry_after = crate::http::retry_after(&headers, std::time::SystemTime::now());
        if !status.is_success() {
            return Err(
                match serde_json::from_slice::<instant_acme::Problem>(&body) {
                    Ok(p) => AcmeError::Refused {
                        during,
                        problem: Problem {
                            retry_after,
                            ..Problem::from(&p)
                        },
                    },
                    Err(_) => AcmeError::Unreachable {
                        url,
                        during,
                        cause: Transport::Status {
                            status: status.as_u16(),
                            retry_after,
                        },
                    },
                },
            );
        }
        let window = crate::parse_renewal_info(&body, retry_after)?;
        tracing::debug!(certificate = %id, start = %window.start, end = %window.end, "ACME renewal information");
        Ok(Some(window))
    }

    /// Revokes the certificate `leaf_der` at the CA (RFC 8555 section 7.6), signed with the
    /// installation's account (loaded, or registered with `no-reply@<default domain>` when
    /// there is none: the CA accepts a revocation from the account that ordered the
    /// certificate). Requires the accepted terms. A CA that refuses (already revoked, not
    /// this account's certificate) is [`AcmeError::Refused`]. Installs nothing: the caller
    /// orders the replacement ([`issue`](Self::issue)).
    pub async fn revoke(
        &self,
        topology: &Topology,
        leaf_der: &[u8],
        reason: RevokeReason,
    ) -> Result<(), AcmeError> {
        with_retry_after_slot(async {
            let account = self.account_fenced(topology, None, None).await?;
            let certificate = CertificateDer::from(leaf_der.to_vec());
            let request = RevocationRequest {
                certificate: &certificate,
                reason: Some(reason.to_acme()),
            };
            nonce_retry!(account.revoke(&request).await)
                .map_err(|e| self.acme_err("revoking the certificate", e))?;
            tracing::info!(%reason, "ACME certificate revoked");
            Ok(())
        })
        .await
    }

    /// Records that the administrator accepted the CA's current terms; returns their URL.
    pub async fn accept_terms(&self) -> Result<Option<String>, AcmeError> {
        let url = self.terms_url().await?;
        let record = TermsRecord {
            url: url.clone().unwrap_or_default(),
            accepted_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        };
        let bytes =
            serde_json::to_vec(&record).map_err(|e| record_err("written", keys::TERMS, &e))?;
        self.state
            .put(keys::TERMS, bytes, false)
            .await
            .map_err(|e| state_err("recording the terms", e))?;
        Ok(url)
    }

    /// The URL of the accepted terms, if they were accepted. Store only, no network.
    pub async fn accepted_terms(&self) -> Result<Option<String>, AcmeError> {
        let Some(bytes) = self
            .state
            .get(keys::TERMS)
            .await
            .map_err(|e| state_err("reading the terms record", e))?
        else {
            return Ok(None);
        };
        let record: TermsRecord =
            serde_json::from_slice(&bytes).map_err(|e| record_err("read", keys::TERMS, &e))?;
        Ok(Some(record.url))
    }

    async fn require_terms(&self) -> Result<(), AcmeError> {
        if self.accepted_terms().await?.is_some() {
            return Ok(());
        }
        let terms_url = self
            .terms_url()
            .await?
            .unwrap_or_else(|| format!("the terms of {}", self.config.directory.url()));
        Err(AcmeError::TermsNotAccepted { terms_url })
    }

    fn builder(&self) -> instant_acme::AccountBuilder {
        Account::builder_with_http(Box::new(SharedHttp(self.http.clone())))
    }

    fn acme_err(&self, during: &'static str, e: instant_acme::Error) -> AcmeError {
        map_acme_error(self.config.directory.url(), during, e)
    }

    /// The installation's account: from memory, else from the store (when it was registered
    /// with this directory), else registered now with `email` or `no-reply@<default domain>`.
    /// Requires the terms to have been accepted.
    pub async fn account(
        &self,
        topology: &Topology,
        email: Option<&str>,
    ) -> Result<Account, AcmeError> {
        with_retry_after_slot(self.account_fenced(topology, email, None)).await
    }

    /// Makes `email` the contact of the installation's ACME account: at the CA (an account
    /// update, RFC 8555 section 7.3.2) and in the account record. Requires the accepted
    /// terms; an account is registered with `email` when there is none. Returns the
    /// address as kept. An address that is not `local@domain.name` is
    /// [`AcmeError::BadContact`], before anything is sent.
    pub async fn update_contact(
        &self,
        topology: &Topology,
        email: &str,
    ) -> Result<String, AcmeError> {
        let contact = contact_address(topology, Some(email))?;
        with_retry_after_slot(async {
            let account = self.account_fenced(topology, Some(&contact), None).await?;
            let Some(bytes) = self
                .state
                .get(keys::ACCOUNT)
                .await
                .map_err(|e| state_err("reading the ACME account", e))?
                .map(Zeroizing::new)
            else {
                return Ok(contact.clone());
            };
            let mut record: AccountRecord = serde_json::from_slice(&bytes)
                .map_err(|e| record_err("read", keys::ACCOUNT, &e))?;
            let mailto = format!("mailto:{contact}");
            nonce_retry!(account.update_contacts(&[mailto.as_str()]).await)
                .map_err(|e| self.acme_err("updating the account's contact", e))?;
            if record.contact != contact {
                tracing::info!(from = %record.contact, to = %contact, "ACME account contact updated");
                record.contact = contact.clone();
                let bytes = Zeroizing::new(
                    serde_json::to_vec(&record)
                        .map_err(|e| record_err("written", keys::ACCOUNT, &e))?,
                );
                self.state
                    .put(keys::ACCOUNT, bytes.to_vec(), true)
                    .await
                    .map_err(|e| state_err("saving the ACME account", e))?;
            }
            Ok(contact.clone())
        })
        .await
    }

    /// Replaces the installation's account key (RFC 8555 section 7.3.5, `keyChange`): a new
    /// key is generated, the CA is asked to bind the account to it (signed with both keys),
    /// and the account record in the store is rewritten with it; the account (its URL,
    /// contact and certificates) stays the same. For a key that may have leaked. Requires the
    /// accepted terms and an account (registered now when there is none). Returns the
    /// account URL.
    ///
    /// Should the store refuse the new record after the CA switched keys, the error says
    /// so ([`AcmeError::Store`] while "saving the rolled-over account key"): the stored key
    /// is then the old one, which the CA no longer accepts, and the next order registers a
    /// new account (the CA answers `accountDoesNotExist` or `unauthorized`).
    pub async fn rollover(&self, topology: &Topology) -> Result<String, AcmeError> {
        with_retry_after_slot(async {
            let account = self.account_fenced(topology, None, None).await?;
            let mut cached = self.account.lock().await;
            let mut rolled = account.clone();
            // A rejected nonce changed nothing at the CA: a new key is generated and sent
            // again.
            let credentials = nonce_retry!(rolled.update_key().await)
                .map_err(|e| self.acme_err("changing the account key", e))?;
            let contact = self
                .state
                .get(keys::ACCOUNT)
                .await
                .ok()
                .flatten()
                .map(Zeroizing::new)
                .and_then(|b| serde_json::from_slice::<AccountRecord>(&b).ok())
                .map(|r| r.contact)
                .unwrap_or_default();
            let record = AccountRecord {
                directory: self.config.directory.url().to_owned(),
                contact,
                credentials,
            };
            let bytes = Zeroizing::new(
                serde_json::to_vec(&record)
                    .map_err(|e| record_err("written", keys::ACCOUNT, &e))?,
            );
            *cached = Some(rolled.clone());
            self.state
                .put(keys::ACCOUNT, bytes.to_vec(), true)
                .await
                .map_err(|e| state_err("saving the rolled-over account key", e))?;
            tracing::info!(id = rolled.id(), "ACME account key rolled over");
            Ok(rolled.id().to_owned())
        })
        .await
    }

    /// [`account`](Self::account), registering (when needed) only while `fence` holds.
    async fn account_fenced(
        &self,
        topology: &Topology,
        email: Option<&str>,
        fence: Option<&Fence>,
    ) -> Result<Account, AcmeError> {
        self.require_terms().await?;
        let mut cached = self.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let stored = self
            .state
            .get(keys::ACCOUNT)
            .await
            .map_err(|e| state_err("reading the ACME account", e))?
            .map(Zeroizing::new);
        if let Some(bytes) = stored {
            match serde_json::from_slice::<AccountRecord>(&bytes) {
                Ok(record) if record.directory == self.config.directory.url() => {
                    let account = self
                        .builder()
                        .from_credentials(record.credentials)
                        .await
                        .map_err(|e| self.acme_err("loading the account", e))?;
                    tracing::debug!(id = account.id(), "ACME account loaded from the store");
                    *cached = Some(account.clone());
                    return Ok(account);
                }
                Ok(_) => {
                    tracing::info!("stored ACME account is for another directory; registering")
                }
                Err(e) => tracing::warn!(error = %e, "stored ACME account unreadable; registering"),
            }
        }
        let account = self.register(topology, email, fence).await?;
        *cached = Some(account.clone());
        Ok(account)
    }

    async fn register(
        &self,
        topology: &Topology,
        email: Option<&str>,
        fence: Option<&Fence>,
    ) -> Result<Account, AcmeError> {
        let contact = contact_address(topology, email)?;
        let mailto = format!("mailto:{contact}");
        let contacts = [mailto.as_str()];
        let new_account = NewAccount {
            contact: &contacts,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let required = self.directory_doc().await?.meta.external_account_required;
        let binding = match (&self.config.external_account, required) {
            (Some(b), _) => Some(b.instant_acme_key()),
            (None, true) => {
                return Err(AcmeError::ExternalAccountRequired {
                    directory: self.config.directory.url().to_owned(),
                })
            }
            (None, false) => None,
        };
        let (account, credentials) = nonce_retry!(
            self.builder()
                .create(
                    &new_account,
                    self.config.directory.url().to_owned(),
                    binding.as_ref()
                )
                .await
        )
        .map_err(|e| self.acme_err("creating the account", e))?;
        let record = AccountRecord {
            directory: self.config.directory.url().to_owned(),
            contact: contact.clone(),
            credentials,
        };
        let bytes = Zeroizing::new(
            serde_json::to_vec(&record).map_err(|e| record_err("written", keys::ACCOUNT, &e))?,
        );
        self.state
            .put_fenced(keys::ACCOUNT, bytes.to_vec(), true, fence)
            .await
            .map_err(|e| state_err("saving the ACME account", e))?;
        self.report(Progress::AccountRegistered { contact });
        Ok(account)
    }

    /// Orders, validates, downloads, checks and installs a certificate for `request.target`.
    ///
    /// On any failure the installed certificate is left as it was. Challenges published for
    /// the order are removed when it ends, success or failure, and also when the future is
    /// dropped before it ends (an abandoned attempt): the board at once, the store's
    /// HTTP-01 records by a task spawned on the current tokio runtime.
    ///
    /// Nothing here is fenced: use [`issue_fenced`](Self::issue_fenced) when the order runs
    /// under a lock of the store (as the renewer's do).
    pub async fn issue(
        &self,
        topology: &Topology,
        request: &IssueRequest,
    ) -> Result<Issued, AcmeError> {
        self.issue_fenced(topology, request, None).await
    }

    /// [`issue`](Self::issue) under a lock: every store write of the order carries `fence`
    /// (the account registration, the HTTP-01 tokens and the install), so the store refuses
    /// them with [`AcmeError::Fenced`] once the lock has expired or another server holds it.
    /// The install and the fence check are one atomic step: a holder that stalled past its
    /// lease cannot replace the certificate. `None` is [`issue`](Self::issue).
    ///
    /// The removal of the order's own HTTP-01 records when it ends is not fenced: the tokens
    /// are the CA's random values for this order alone, so removing them cannot touch
    /// another holder's work, and a refused removal would leave them behind.
    pub async fn issue_fenced(
        &self,
        topology: &Topology,
        request: &IssueRequest,
        fence: Option<&Fence>,
    ) -> Result<Issued, AcmeError> {
        with_retry_after_slot(self.issue_in_slot(topology, request, fence)).await
    }

    async fn issue_in_slot(
        &self,
        topology: &Topology,
        request: &IssueRequest,
        fence: Option<&Fence>,
    ) -> Result<Issued, AcmeError> {
        let names = order_names(topology, &request.target, &request.extra_names)?;
        let gate = self.gate.clone().ok_or(AcmeError::NoGate)?;
        let profile = self.order_profile(request).await?;
        let account = self
            .account_fenced(topology, request.email.as_deref(), fence)
            .await?;
        if let Err(e) = self.sweep_challenges().await {
            tracing::warn!(error = %e, "could not sweep stale HTTP-01 records before the order");
        }
        let mut published = Unpublish::new(
            self.board.clone(),
            self.state.clone(),
            self.abandoned.clone(),
        );
        let result = self
            .issue_with(
                &account,
                topology,
                request,
                (&names, profile.as_deref()),
                &mut published,
                fence,
            )
            .await;
        published.finish().await;
        let (issued, checked) = result?;
        gate.install_acme(&request.target, checked, fence)
            .await
            .map_err(|e| gate_err(&request.target, e))?;
        if let Some(email) = request.email.as_deref() {
            self.keep_contact(topology, &account, &request.target, email, fence)
                .await?;
        }
        if let Some(choice) = &request.profile {
            self.keep_profile(&request.target, choice, fence).await?;
        }
        self.report(Progress::Installed);
        tracing::info!(target = %request.target, names = ?issued.names, not_after = issued.not_after, "ACME certificate installed");
        Ok(issued)
    }

    /// The profile to name in the order: the request's choice, else the one kept for the
    /// target, checked against what the directory advertises (a required profile that is
    /// not offered is refused here, before the account or the order).
    async fn order_profile(&self, request: &IssueRequest) -> Result<Option<String>, AcmeError> {
        let choice = match &request.profile {
            Some(choice) => Some(choice.clone()),
            None => self.kept_profile(&request.target).await?,
        };
        let (name, required) = match choice {
            None | Some(ProfileChoice::CaDefault) => return Ok(None),
            Some(ProfileChoice::Preferred(name)) => (name, false),
            Some(ProfileChoice::Required(name)) => (name, true),
        };
        let offered = self.profiles().await?;
        if offered.contains_key(&name) {
            return Ok(Some(name));
        }
        let offered: Vec<String> = offered.into_keys().collect();
        if required {
            return Err(AcmeError::ProfileNotOffered {
                profile: name,
                offered,
            });
        }
        tracing::warn!(target = %request.target, profile = %name, offered = ?offered, "the CA does not offer the preferred profile; ordering its default profile");
        self.report(Progress::ProfileFallback {
            wanted: name,
            offered,
        });
        Ok(None)
    }

    fn profile_key(target: &Target) -> Result<bmcert_store::RecordKey, AcmeError> {
        bmcert_store::keys::target_key(bmcert_store::keys::PROFILE_PREFIX, target).map_err(
            |reason| {
                state_err(
                    "naming the profile record",
                    StateError::BadKey {
                        key: format!("{}/{target}", bmcert_store::keys::PROFILE_PREFIX),
                        reason,
                    },
                )
            },
        )
    }

    /// The profile kept for `target` by an earlier order (`profile/<target>`), if any.
    pub async fn kept_profile(&self, target: &Target) -> Result<Option<ProfileChoice>, AcmeError> {
        let key = Self::profile_key(target)?;
        let Some(bytes) = self
            .state
            .get(key.as_str())
            .await
            .map_err(|e| state_err("reading the profile record", e))?
        else {
            return Ok(None);
        };
        let record: ProfileRecord = serde_json::from_slice(&bytes)
            .map_err(|e| record_err("read", bmcert_store::keys::PROFILE_PREFIX, &e))?;
        Ok(Some(if record.required {
            ProfileChoice::Required(record.profile)
        } else {
            ProfileChoice::Preferred(record.profile)
        }))
    }

    /// Keeps the profile chosen for `target` for its renewals (forgets it for
    /// [`ProfileChoice::CaDefault`]).
    async fn keep_profile(
        &self,
        target: &Target,
        choice: &ProfileChoice,
        fence: Option<&Fence>,
    ) -> Result<(), AcmeError> {
        let key = Self::profile_key(target)?;
        let (profile, required) = match choice {
            ProfileChoice::Preferred(p) => (p.clone(), false),
            ProfileChoice::Required(p) => (p.clone(), true),
            ProfileChoice::CaDefault => {
                return self
                    .state
                    .delete(key.as_str())
                    .await
                    .map_err(|e| state_err("forgetting the profile", e));
            }
        };
        let value = serde_json::to_vec(&ProfileRecord { profile, required })
            .map_err(|e| record_err("written", bmcert_store::keys::PROFILE_PREFIX, &e))?;
        self.state
            .put_fenced(key.as_str(), value, false, fence)
            .await
            .map_err(|e| state_err("recording the profile", e))
    }

    /// Keeps the address given when Let's Encrypt was activated for `target` (the
    /// `contact/<target>` record: the renewer's warnings for the target go there) and, for
    /// the system target, makes it the ACME account's contact when it changed (the CA's
    /// expiry notices then reach the installation's administrator).
    async fn keep_contact(
        &self,
        topology: &Topology,
        account: &Account,
        target: &Target,
        email: &str,
        fence: Option<&Fence>,
    ) -> Result<(), AcmeError> {
        let contact = contact_address(topology, Some(email))?;
        let key = bmcert_store::keys::target_key(bmcert_store::keys::CONTACT_PREFIX, target)
            .map_err(|reason| {
                state_err(
                    "naming the contact record",
                    StateError::BadKey {
                        key: format!("{}/{target}", bmcert_store::keys::CONTACT_PREFIX),
                        reason,
                    },
                )
            })?;
        let value = serde_json::to_vec(&ContactRecord {
            contact: contact.clone(),
        })
        .map_err(|e| record_err("written", bmcert_store::keys::CONTACT_PREFIX, &e))?;
        self.state
            .put_fenced(key.as_str(), value, false, fence)
            .await
            .map_err(|e| state_err("recording the contact address", e))?;
        if !target.is_system() {
            return Ok(());
        }
        let Some(bytes) = self
            .state
            .get(keys::ACCOUNT)
            .await
            .map_err(|e| state_err("reading the ACME account", e))?
            .map(Zeroizing::new)
        else {
            return Ok(());
        };
        let Ok(mut record) = serde_json::from_slice::<AccountRecord>(&bytes) else {
            return Ok(());
        };
        if record.contact == contact {
            return Ok(());
        }
        let mailto = format!("mailto:{contact}");
        nonce_retry!(account.update_contacts(&[mailto.as_str()]).await)
            .map_err(|e| self.acme_err("updating the account's contact", e))?;
        tracing::info!(from = %record.contact, to = %contact, "ACME account contact updated");
        record.contact = contact;
        let bytes = Zeroizing::new(
            serde_json::to_vec(&record).map_err(|e| record_err("written", keys::ACCOUNT, &e))?,
        );
        self.state
            .put_fenced(keys::ACCOUNT, bytes.to_vec(), true, fence)
            .await
            .map_err(|e| state_err("saving the ACME account", e))
    }

    async fn issue_with(
        &self,
        account: &Account,
        topology: &Topology,
        request: &IssueRequest,
        (names, profile): (&[DomainName], Option<&str>),
        published: &mut Unpublish,
        fence: Option<&Fence>,
    ) -> Result<(Issued, CheckedBundle), AcmeError> {
        let deadline = Instant::now() + self.config.poll.total;
        let identifiers: Vec<Identifier> = names
            .iter()
            .map(|n| Identifier::Dns(n.as_str().to_owned()))
            .collect();
        let replaces = request
            .replaces
            .as_deref()
            .map(crate::ari::certificate_identifier)
            .transpose()?;
        let mut order = match self
            .place_order(account, &identifiers, replaces.as_ref(), profile)
            .await
        {
            Err(instant_acme::Error::Api(p))
                if p.r#type.as_deref()
                    == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
            {
                tracing::info!("the CA no longer knows the stored account; registering again");
                let account = {
                    let mut cached = self.account.lock().await;
                    match cached.as_ref() {
                        // A concurrent order already registered the replacement.
                        Some(current) if current.id() != account.id() => current.clone(),
                        _ => {
                            let fresh = self
                                .register(topology, request.email.as_deref(), fence)
                                .await?;
                            *cached = Some(fresh.clone());
                            fresh
                        }
                    }
                };
                self.place_order(&account, &identifiers, replaces.as_ref(), profile)
                    .await
            }
            other => other,
        }
        .map_err(|e| self.acme_err("placing the order", e))?;
        self.report(Progress::Ordered {
            names: names.iter().map(|n| n.as_str().to_owned()).collect(),
        });

        self.answer_challenges(&mut order, published, fence).await?;
        self.report(Progress::Validating);
        let status = self.poll(&mut order, deadline).await?;
        if status != OrderStatus::Ready {
            return Err(self.order_failure(&mut order).await);
        }

        let (key_der, key_pem, csr_der) = generate_key_and_csr(self.config.key, names)?;
        self.report(Progress::Finalizing);
        nonce_retry!(order.finalize_csr(&csr_der).await)
            .map_err(|e| self.acme_err("sending the certificate request", e))?;
        let chain = self.download(&mut order, deadline).await?;
        // The check an upload gets, for the target's URL host: the chain to the roots the
        // client trusts (the system's, or the configured test root), the key, the dates, the
        // host. The CA sends leaf + intermediates; the root comes from those roots.
        let host = topology.host_for(&request.target)?.clone();
        let checked = bmcert_bundle::BundleCheck::files(chain.as_bytes(), key_pem.as_bytes(), None)
            .platform_roots(&self.chain_roots)
            .check_for(host, UnixTime::now())
            .map_err(|report| AcmeError::Check {
                target: request.target.clone(),
                report,
            })?;
        // And it covers every name ordered (the CA may not drop one).
        let covered = checked.names();
        if let Some(missing) = names
            .iter()
            .find(|n| !covered.iter().any(|c| c == n.as_str()))
        {
            return Err(AcmeError::NotCovered {
                target: request.target.clone(),
                name: missing.as_str().to_owned(),
            });
        }
        self.report(Progress::Checked);
        let issued = Issued::new(
            names.to_vec(),
            chain,
            checked.not_after_unix(),
            key_der,
            key_pem,
        );
        Ok((issued, checked))
    }

    /// Places the order, naming the certificate it replaces when given. A CA that offers no
    /// renewal information, or refuses `replaces` (RFC 9773 section 5: e.g. the certificate
    /// was already replaced), gets the order once more without it, so renewal goes on.
    async fn place_order(
        &self,
        account: &Account,
        identifiers: &[Identifier],
        replaces: Option<&CertificateIdentifier<'static>>,
        profile: Option<&str>,
    ) -> Result<Order, instant_acme::Error> {
        let plain = || match profile {
            Some(p) => NewOrder::new(identifiers).profile(p),
            None => NewOrder::new(identifiers),
        };
        let Some(id) = replaces else {
            return nonce_retry!(account.new_order(&plain()).await);
        };
        let with = plain().replaces(id.clone());
        match nonce_retry!(account.new_order(&with).await) {
            Err(instant_acme::Error::Unsupported(_)) => {
                tracing::info!(replaces = %id, "the CA offers no renewal information; ordering without `replaces`");
            }
            Err(instant_acme::Error::Api(p)) if replaces_refusal(&p) => {
                tracing::warn!(
                    replaces = %id,
                    problem = %Problem::from(&p),
                    "the CA refused the order naming the certificate it replaces; ordering once more without `replaces`"
                );
            }
            // The CA took the order but did not echo `replaces` (RFC 9773 section 5 says it
            // must); instant-acme refuses such an order. Its message is matched: instant-acme
            // has no variant for it.
            Err(instant_acme::Error::Other(e))
                if e.to_string().starts_with("replaces field mismatch") =>
            {
                tracing::warn!(
                    replaces = %id,
                    error = %e,
                    "the CA ignored `replaces` in the order; ordering once more without it"
                );
            }
            other => return other,
        }
        nonce_retry!(account.new_order(&plain()).await)
    }

    async fn answer_challenges(
        &self,
        order: &mut Order,
        published: &mut Unpublish,
        fence: Option<&Fence>,
    ) -> Result<(), AcmeError> {
        let kind = match self.config.challenge {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut done: HashSet<String> = HashSet::new();
        let mut restarts = 0;
        'pass: loop {
            let mut authorizations = order.authorizations();
            while let Some(next) = authorizations.next().await {
                let mut authz = match next {
                    Ok(a) => a,
                    Err(e) if is_bad_nonce(&e) && restarts < NONCE_RETRIES => {
                        restarts += 1;
                        continue 'pass;
                    }
                    Err(e) => return Err(self.acme_err("reading the authorizations", e)),
                };
                let url = authz.url().to_owned();
                if done.contains(&url) {
                    continue;
                }
                let name = authz.identifier().to_string();
                match authz.status {
                    instant_acme::AuthorizationStatus::Pending => {}
                    instant_acme::AuthorizationStatus::Valid => {
                        done.insert(url);
                        continue;
                    }
                    other => {
                        return Err(AcmeError::Refused {
                            during: "reading the authorizations",
                            problem: Problem {
                                kind: None,
                                detail: Some(format!("the authorization for {name} is {other:?}")),
                                status: None,
                                subproblems: Vec::new(),
                                retry_after: None,
                            },
                        })
                    }
                }
                let Some(mut challenge) = authz.challenge(kind.clone()) else {
                    return Err(AcmeError::Protocol {
                        during: "reading the authorizations",
                        cause: ProtocolError::NoChallenge {
                            kind: self.config.challenge.as_str(),
                            name: name.to_string(),
                        },
                    });
                };
                let key_auth = challenge.key_authorization();
                match self.config.challenge {
                    ChallengeKind::Http01 => {
                        let token = challenge.token.clone();
                        self.board.add_http01(&token, key_auth.as_str());
                        published.push(Published::Http01(token.clone()));
                        let key = format!("{}{token}", keys::HTTP01_PREFIX);
                        let record = crate::challenge::Http01Record::encode(
                            key_auth.as_str(),
                            time::OffsetDateTime::now_utc().unix_timestamp(),
                        );
                        self.state
                            .put_fenced(&key, record, false, fence)
                            .await
                            .map_err(|e| state_err("publishing the HTTP-01 token", e))?;
                    }
                    ChallengeKind::TlsAlpn01 => {
                        let cert = tls_alpn_certificate(&name, key_auth.digest().as_ref())?;
                        self.board.add_tls_alpn(&name, cert);
                        published.push(Published::TlsAlpn(name.clone()));
                    }
                }
                nonce_retry!(challenge.set_ready().await)
                    .map_err(|e| self.acme_err("telling the CA the challenge is ready", e))?;
                self.report(Progress::ChallengeReady { name });
                done.insert(url);
            }
            return Ok(());
        }
    }

    fn retry_policy(&self, deadline: Instant) -> Result<RetryPolicy, AcmeError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(AcmeError::Timeout {
                during: "waiting for the order",
                seconds: self.config.poll.total.as_secs(),
            });
        }
        Ok(RetryPolicy::new()
            .initial_delay(self.config.poll.first_delay)
            .backoff(self.config.poll.backoff)
            .timeout(remaining))
    }

    async fn poll(&self, order: &mut Order, deadline: Instant) -> Result<OrderStatus, AcmeError> {
        let mut tries = 0;
        loop {
            let policy = self.retry_policy(deadline)?;
            match order.poll_ready(&policy).await {
                Err(e) if is_bad_nonce(&e) && tries < NONCE_RETRIES => tries += 1,
                Err(instant_acme::Error::Timeout(_)) => {
                    return Err(AcmeError::Timeout {
                        during: "waiting for the CA to validate",
                        seconds: self.config.poll.total.as_secs(),
                    })
                }
                Err(instant_acme::Error::Api(_)) => return Ok(OrderStatus::Invalid),
                Err(e) => return Err(self.acme_err("waiting for the CA to validate", e)),
                Ok(status) => return Ok(status),
            }
        }
    }

    async fn download(&self, order: &mut Order, deadline: Instant) -> Result<String, AcmeError> {
        let mut tries = 0;
        loop {
            let policy = self.retry_policy(deadline)?;
            match order.poll_certificate(&policy).await {
                Err(e) if is_bad_nonce(&e) && tries < NONCE_RETRIES => tries += 1,
                Err(instant_acme::Error::Timeout(_)) => {
                    return Err(AcmeError::Timeout {
                        during: "waiting for the certificate",
                        seconds: self.config.poll.total.as_secs(),
                    })
                }
                Err(e) => return Err(self.acme_err("downloading the certificate", e)),
                Ok(chain) => return Ok(chain),
            }
        }
    }

    /// Builds the problem of a failed order: the order's own error, plus each failed
    /// challenge's error as a subproblem for its identifier.
    async fn order_failure(&self, order: &mut Order) -> AcmeError {
        let mut problem = order
            .state()
            .error
            .as_ref()
            .map(Problem::from)
            .unwrap_or_default();
        let mut restarts = 0;
        let mut seen: HashSet<String> = HashSet::new();
        'pass: loop {
            let mut authorizations = order.authorizations();
            while let Some(next) = authorizations.next().await {
                let Ok(mut authz) = next else {
                    restarts += 1;
                    if restarts < NONCE_RETRIES {
                        continue 'pass;
                    }
                    break 'pass;
                };
                if !seen.insert(authz.url().to_owned()) {
                    continue;
                }
                let _ = nonce_retry!(authz.refresh().await);
                let name = authz.identifier().to_string();
                for ch in &authz.challenges {
                    if let Some(err) = &ch.error {
                        let p = Problem::from(err);
                        problem.subproblems.push(Subproblem {
                            identifier: Some(name.clone()),
                            kind: p.kind,
                            detail: p.detail,
                        });
                    }
                }
            }
            break;
        }
        if problem.kind.is_none() {
            problem.kind = problem.subproblems.first().and_then(|s| s.kind.clone());
        }
        if problem.detail.is_none() {
            problem.detail = Some(format!(
                "the CA could not validate {} name(s)",
                problem.subproblems.len().max(1)
            ));
        }
        AcmeError::Refused {
            during: "validating the challenges",
            problem,
        }
    }

    /// Reads a URL through this client's HTTPS (e.g. pebble's `/roots/0`).
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, AcmeError> {
        let (status, body) =
            self.http
                .get_bytes(url)
                .await
                .map_err(|cause| AcmeError::Unreachable {
                    url: url.to_owned(),
                    during: "fetching",
                    cause,
                })?;
        if !status.is_success() {
            return Err(AcmeError::Unreachable {
                url: url.to_owned(),
                during: "fetching",
                cause: Transport::Status {
                    status: status.as_u16(),
                    retry_after: None,
                },
            });
        }
        Ok(body.to_vec())
    }

    /// The number of requests sent that change state on the CA (`POST`s).
    pub fn posts_sent(&self) -> u64 {
        self.counts.post.load(Ordering::Relaxed)
    }
}

/// A record of the flow that does not encode or decode as JSON.
fn record_err(during: &'static str, key: &'static str, e: &serde_json::Error) -> AcmeError {
    AcmeError::Record {
        during,
        key,
        line: e.line(),
        column: e.column(),
    }
}

/// A gate refusal, keeping a fence refusal and the topology's typed.
fn gate_err(target: &Target, e: GateError) -> AcmeError {
    match e {
        GateError::Store(bmcert_store::StoreError::Fenced { lock, token }) => AcmeError::Fenced {
            during: "installing the certificate",
            lock,
            token,
        },
        GateError::Topology(t) => AcmeError::Topology(t),
        other => AcmeError::Gate {
            target: target.clone(),
            source: other,
        },
    }
}

/// A state error, keeping a fence refusal typed.
fn state_err(during: &'static str, e: StateError) -> AcmeError {
    match e {
        StateError::Fenced { lock, token } => AcmeError::Fenced {
            during,
            lock,
            token,
        },
        source => AcmeError::Store { during, source },
    }
}

/// The HTTP-01 records of abandoned orders, shared by a client and its orders' [`Unpublish`]
/// guards.
type Abandoned = Arc<std::sync::Mutex<Vec<String>>>;

/// The challenges an order published, removed when it ends ([`Unpublish::finish`]) or, if
/// the order's future is dropped first (an attempt abandoned by its caller), on drop: from
/// the board at once; the store records go to the client's abandoned list, and a task on
/// the current tokio runtime (if any) removes them. A caller that exits right after
/// dropping an order calls [`AcmeClient::sweep_challenges`] to remove them before it goes.
struct Unpublish {
    board: ChallengeBoard,
    state: Arc<dyn AcmeState>,
    abandoned: Abandoned,
    items: Vec<Published>,
}

impl Unpublish {
    fn new(board: ChallengeBoard, state: Arc<dyn AcmeState>, abandoned: Abandoned) -> Self {
        Self {
            board,
            state,
            abandoned,
            items: Vec::new(),
        }
    }

    fn push(&mut self, p: Published) {
        self.items.push(p);
    }

    /// Removes everything from the board; returns the store records to delete.
    fn take_from_board(&mut self) -> Vec<String> {
        let mut records = Vec::new();
        for p in self.items.drain(..) {
            match p {
                Published::Http01(token) => {
                    self.board.remove_http01(&token);
                    records.push(format!("{}{token}", keys::HTTP01_PREFIX));
                }
                Published::TlsAlpn(name) => self.board.remove_tls_alpn(&name),
            }
        }
        records
    }

    async fn finish(&mut self) {
        let records = self.take_from_board();
        delete_records(self.state.as_ref(), records).await;
    }
}

impl Drop for Unpublish {
    fn drop(&mut self) {
        let records = self.take_from_board();
        if records.is_empty() {
            return;
        }
        match self.abandoned.lock() {
            Ok(mut list) => list.extend(records),
            Err(_) => {
                tracing::warn!("the list of abandoned HTTP-01 records was poisoned; the sweep will remove them once stale");
                return;
            }
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let state = self.state.clone();
            let abandoned = self.abandoned.clone();
            rt.spawn(async move { flush_abandoned(state.as_ref(), &abandoned).await });
        }
    }
}

/// Deletes the abandoned records; the ones that fail go back on the list. Returns how many
/// were removed.
async fn flush_abandoned(state: &dyn AcmeState, abandoned: &Abandoned) -> usize {
    let records = match abandoned.lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(_) => return 0,
    };
    let mut removed = 0;
    let mut failed = Vec::new();
    for key in records {
        match state.delete(&key).await {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(record = %key, error = %e, "could not remove an abandoned HTTP-01 record");
                failed.push(key);
            }
        }
    }
    if !failed.is_empty() {
        if let Ok(mut list) = abandoned.lock() {
            list.extend(failed);
        }
    }
    removed
}

async fn delete_records(state: &dyn AcmeState, records: Vec<String>) {
    for key in records {
        if let Err(e) = state.delete(&key).await {
            tracing::warn!(error = %e, "could not remove an HTTP-01 token from the store");
        }
    }
}

/// Runs one operation of the client with its own slot for the last `Retry-After` (see
/// `http::FINAL_RETRY_AFTER`), so concurrent orders never see each other's.
async fn with_retry_after_slot<T>(operation: impl Future<Output = T>) -> T {
    crate::http::FINAL_RETRY_AFTER
        .scope(std::cell::Cell::new(None), operation)
        .await
}

fn map_acme_error(url: &str, during: &'static str, e: instant_acme::Error) -> AcmeError {
    match e {
        instant_acme::Error::Api(p) => {
            let mut problem = Problem::from(&p);
            // The answer's Retry-After, which instant-acme drops with the headers (a rate
            // limit's 429, a busy CA's 503): recorded by this crate's HTTP client.
            if matches!(problem.status, Some(429 | 503)) {
                problem.retry_after = crate::http::FINAL_RETRY_AFTER
                    .try_with(|slot| slot.take())
                    .ok()
                    .flatten();
            }
            AcmeError::Refused { during, problem }
        }
        instant_acme::Error::Timeout(_) => AcmeError::Timeout { during, seconds: 0 },
        e @ (instant_acme::Error::Hyper(_) | instant_acme::Error::Other(_)) => {
            AcmeError::Unreachable {
                url: url.to_owned(),
                during,
                cause: Transport::from_acme(e),
            }
        }
        other => AcmeError::Protocol {
            during,
            cause: ProtocolError::Acme(Box::new(other)),
        },
    }
}

/// The account contact: the address given, else `no-reply@<default domain>`.
fn contact_address(topology: &Topology, email: Option<&str>) -> Result<String, AcmeError> {
    match email.map(str::trim).filter(|e| !e.is_empty()) {
        Some(addr) => {
            let (local, domain) = addr
                .rsplit_once('@')
                .ok_or_else(|| AcmeError::BadContact(addr.to_owned()))?;
            if local.is_empty()
                || local
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ',')
                || DomainName::new(domain).is_err()
            {
                return Err(AcmeError::BadContact(addr.to_owned()));
            }
            Ok(addr.to_owned())
        }
        None => topology
            .default_domain
            .as_ref()
            .map(|d| format!("no-reply@{d}"))
            .ok_or(AcmeError::NoContact),
    }
}

type KeyAndCsr = (Zeroizing<Vec<u8>>, Zeroizing<String>, Vec<u8>);

fn generate_key_and_csr(kind: KeyKind, names: &[DomainName]) -> Result<KeyAndCsr, AcmeError> {
    let key_err = |e: rcgen::Error| AcmeError::Key(KeyGenError::Rcgen(e));
    let key = match kind {
        KeyKind::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyKind::Rsa3072 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
        KeyKind::Rsa4096 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
    }
    .map_err(key_err)?;
    let mut params = rcgen::CertificateParams::new(
        names
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .map_err(key_err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(key_err)?;
    Ok((
        Zeroizing::new(key.serialize_der()),
        Zeroizing::new(key.serialize_pem()),
        csr.der().to_vec(),
    ))
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737): self-signed, the name as its only SAN,
/// the critical acmeIdentifier extension holding SHA-256 of the key authorization.
fn tls_alpn_certificate(
    name: &str,
    key_auth_digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, AcmeError> {
    let key_err = |e: rcgen::Error| AcmeError::Key(KeyGenError::Rcgen(e));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(key_err)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(key_err)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(key_auth_digest)];
    let cert = params.self_signed(&key).map_err(key_err)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // (rightly, for a server certificate) refuses the critical acmeIdentifier extension.
    let signer = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| AcmeError::Key(KeyGenError::Rustls(e)))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmcert_topology::Site;

    #[test]
    fn contact_defaults_to_no_reply_at_default_domain() {
        let mut t = Topology::new(Site::new("https://mail.example.test", &[]).unwrap());
        assert!(matches!(
            contact_address(&t, None),
            Err(AcmeError::NoContact)
        ));
        assert!(matches!(
            contact_address(&t, Some("  ")),
            Err(AcmeError::NoContact)
        ));
        t.default_domain = Some(DomainName::new("example.test").unwrap());
        assert_eq!(contact_address(&t, None).unwrap(), "no-reply@example.test");
        assert_eq!(
            contact_address(&t, Some("admin@example.org")).unwrap(),
            "admin@example.org"
        );
        for bad in ["nobody", "@example.org", "a b@example.org", "a@bad_domain"] {
            assert!(
                matches!(
                    contact_address(&t, Some(bad)),
                    Err(AcmeError::BadContact(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_of_every_kind_make_a_csr() {
        let names = [DomainName::new("a.example.test").unwrap()];
        for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            let (der, pem, csr) = generate_key_and_csr(kind, &names).unwrap();
            assert!(!der.is_empty() && pem.contains("PRIVATE KEY") && !csr.is_empty());
        }
    }

    #[test]
    fn tls_alpn_certificate_carries_the_acme_identifier() {
        let digest = [7u8; 32];
        let ck = tls_alpn_certificate("a.example.test", &digest).unwrap();
        let der = ck.cert[0].as_ref();
        // id-pe-acmeIdentifier 1.3.6.1.5.5.7.1.31, then OCTET STRING(OCTET STRING(digest)).
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(der.windows(oid.len()).any(|w| w == oid));
        assert!(der.windows(32).any(|w| w == digest));
    }

    #[tokio::test]
    async fn an_abandoned_order_removes_what_it_published() {
        let state = crate::MemoryState::new();
        let board = ChallengeBoard::new();
        let path = |t: &str| format!("{}{t}", crate::HTTP01_PATH_PREFIX);
        let mut published = Unpublish::new(board.clone(), state.clone(), Abandoned::default());
        for token in ["tok1", "tok2"] {
            board.add_http01(token, &format!("{token}.thumb"));
            state
                .put(
                    &format!("{}{token}", keys::HTTP01_PREFIX),
                    b"ka".to_vec(),
                    false,
                )
                .await
                .unwrap();
            published.push(Published::Http01(token.to_owned()));
        }
        assert!(crate::http01_response(&path("tok1"), &board).is_some());
        // The order's future is dropped mid-way (the renewer lost its lock).
        drop(published);
        assert_eq!(crate::http01_response(&path("tok1"), &board), None);
        assert_eq!(crate::http01_response(&path("tok2"), &board), None);
        // The store records go by a task on the runtime.
        for _ in 0..100 {
            if state.record_keys().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(state.record_keys().is_empty(), "{:?}", state.record_keys());
    }

    #[tokio::test]
    async fn the_sweep_removes_abandoned_and_stale_records_and_keeps_live_ones() {
        use crate::challenge::Http01Record;
        let state = crate::MemoryState::new();
        let client =
            AcmeClient::new(AcmeConfig::default(), state.clone(), ChallengeBoard::new()).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let lifetime = i64::try_from(client.challenge_lifetime().as_secs()).unwrap();
        assert!(lifetime >= 3600);
        let records: [(&str, Vec<u8>); 6] = [
            ("fresh", Http01Record::encode("fresh.th", now - 60)),
            ("edge", Http01Record::encode("edge.th", now - lifetime + 60)),
            (
                "stale",
                Http01Record::encode("stale.th", now - lifetime - 60),
            ),
            ("legacy", b"legacy.th".to_vec()),
            ("damaged", b"\xff\x00{".to_vec()),
            ("dropped", Http01Record::encode("dropped.th", now)),
        ];
        for (token, value) in records {
            let key = format!("{}{token}", keys::HTTP01_PREFIX);
            state.put(&key, value, false).await.unwrap();
        }
        let answer = |t: &str| format!("{}{t}", crate::HTTP01_PATH_PREFIX);
        // Both forms are answered from the store while they are kept.
        for (token, expected) in [("fresh", "fresh.th"), ("legacy", "legacy.th")] {
            assert_eq!(
                crate::http01_response_from_state(&answer(token), &*state)
                    .await
                    .as_deref(),
                Some(expected)
            );
        }
        assert_eq!(
            crate::http01_response_from_state(&answer("damaged"), &*state).await,
            None
        );
        // An order of this client published "dropped", then its future was dropped (the
        // command was interrupted): nothing ran the removal task yet.
        {
            let mut published = Unpublish::new(
                client.board.clone(),
                state.clone(),
                client.abandoned.clone(),
            );
            client.board.add_http01("dropped", "dropped.th");
            published.push(Published::Http01("dropped".into()));
        }
        assert_eq!(client.sweep_challenges().await.unwrap(), 4);
        let mut left = state.record_keys();
        left.sort();
        assert_eq!(
            left,
            [
                format!("{}edge", keys::HTTP01_PREFIX),
                format!("{}fresh", keys::HTTP01_PREFIX)
            ]
        );
        // A second sweep finds nothing more to do.
        assert_eq!(client.sweep_challenges().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_finished_order_removes_what_it_published_and_leaves_nothing_to_drop() {
        let state = crate::MemoryState::new();
        let board = ChallengeBoard::new();
        let mut published = Unpublish::new(board.clone(), state.clone(), Abandoned::default());
        board.add_http01("tok", "tok.thumb");
        state
            .put(
                &format!("{}tok", keys::HTTP01_PREFIX),
                b"ka".to_vec(),
                false,
            )
            .await
            .unwrap();
        published.push(Published::Http01("tok".to_owned()));
        published.finish().await;
        assert!(state.record_keys().is_empty());
        assert!(published.items.is_empty());
    }

    #[test]
    fn revocation_reasons_parse_by_their_rfc_5280_names() {
        for r in RevokeReason::ALL {
            assert_eq!(r.as_str().parse::<RevokeReason>(), Ok(r));
            assert_eq!(r.to_acme() as u8, r.code());
        }
        assert_eq!(
            "KEYCOMPROMISE".parse::<RevokeReason>(),
            Ok(RevokeReason::KeyCompromise)
        );
        assert_eq!(
            "lost".parse::<RevokeReason>(),
            Err(UnknownRevokeReason("lost".into()))
        );
    }

    #[test]
    fn directory_urls() {
        assert!(Directory::default()
            .url()
            .starts_with("https://acme-v02.api.letsencrypt.org"));
        assert!(Directory::LetsEncryptStaging.url().contains("staging"));
        assert_eq!(
            Directory::Url("https://x/dir".into()).url(),
            "https://x/dir"
        );
    }
}
