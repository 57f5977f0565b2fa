//! The upstream client: sends a Gemini request with a key from the pool, classifies the answer,
//! and fails over to the next key while the failure is the key's or the server's.
//!
//! Keys go upstream only in the `x-goog-api-key` header. Streams commit to a key once its first
//! event has arrived; before that a failure moves on to the next key, after it the stream ends
//! with an error and nothing is replayed.
//!
//! Time: no response headers within the first-byte timeout means a dead key (next key, counted
//! against it). Once Google has sent the headers it owns the request: silence after that is
//! slowness, bounded by the idle timeout between a stream's events and, for whole answers, by
//! the total deadline alone (Google sends nothing while a model thinks, and the client is not
//! waiting on events); it ends the request with a 504 without blaming the key or retrying
//! elsewhere.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Method;
use tokio::time::Instant;

use super::config::UpstreamSettings;
use super::error::GatewayError;
use super::fold;
use super::gemini::{self, ErrorBody};
use super::http1;
use super::metrics::{AttemptRecord, Metrics, RequestTrace};
use super::owners::{self, Resources};
use super::pool::{Attribution, FailureClass, KeyPool, Lease, Outcome, RetryAfter, Unavailable, Verdict};
use super::proxy::{Proxies, ProxySpec};
use super::sse::SseParser;
use super::transport::{ErrorKind, Reply, ReplyBody, TransportError};

/// One request to Gemini, independent of the key that will carry it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Path below the base URL, e.g. `/v1beta/models/gemini-2.0-flash:generateContent`.
    pub path: String,
    /// Query string without the `?` (never a key).
    pub query: Option<String>,
    pub body: Option<Bytes>,
    /// The model, for per-model rate limits (empty for model-independent calls).
    pub model: String,
    /// A non-streaming call Google may take long to answer (image, speech generation): its
    /// headers are awaited up to the total timeout instead of the first-byte timeout.
    pub slow: bool,
    /// The call must go out on this key (fingerprint) and no other: the owner of a file, a
    /// cached content or an upload session. Calls that name owned resources in their body are
    /// pinned without asking ([`Resources::pin_for`]).
    pub pin: Option<String>,
    /// Try this key first, then rotate as usual (a client's uploads gather on one key).
    pub prefer: Option<String>,
    /// Extra request headers (the resumable upload protocol's `X-Goog-Upload-*`).
    pub headers: Vec<(&'static str, String)>,
    /// Body type when it is not JSON (an upload's bytes).
    pub content_type: Option<String>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Self {
        Call {
            method: Method::GET,
            path: path.into(),
            query: None,
            body: None,
            model: String::new(),
            slow: false,
            pin: None,
            prefer: None,
            headers: Vec::new(),
            content_type: None,
        }
    }
    pub fn post(path: impl Into<String>, model: &str, body: Bytes) -> Self {
        Call {
            method: Method::POST,
            path: path.into(),
            query: None,
            body: Some(body),
            model: model.to_string(),
            slow: false,
            pin: None,
            prefer: None,
            headers: Vec::new(),
            content_type: None,
        }
    }

    /// Marks a non-streaming call whose answer takes long (see [`Call::slow`]).
    pub fn slow(mut self) -> Self {
        self.slow = true;
        self
    }
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }
}

/// A successful, complete upstream answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Bytes,
    pub key: String,
    pub key_id: u64,
    /// Fingerprint of the key that answered (resources it made belong to it).
    pub fingerprint: String,
    /// Google's `X-Goog-Upload-*` response headers, lowercase (empty for other calls).
    pub upload_headers: Vec<(String, String)>,
}

/// A whole answer folded from a stream's events ([`Upstream::generate`]): JSON for the native
/// route, the typed response for the translating ones.
#[derive(Debug)]
pub struct Merged<T = serde_json::Value> {
    pub response: T,
    pub key: String,
    pub key_id: u64,
}

impl Merged<serde_json::Value> {
    /// The answer as JSON text (what `generateContent` would have sent).
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.response).unwrap_or_else(|_| b"{}".to_vec()))
    }
}

/// Why a committed stream ended early.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamFault {
    /// Google went silent longer than the idle timeout (or the deadline passed): slow, not the
    /// key's fault.
    Stalled(String),
    /// The connection broke or the body was unreadable.
    Broken(String),
}

impl StreamFault {
    pub fn message(&self) -> &str {
        match self {
            StreamFault::Stalled(m) | StreamFault::Broken(m) => m,
        }
    }
    pub fn is_stall(&self) -> bool {
        matches!(self, StreamFault::Stalled(_))
    }
}

impl std::fmt::Display for StreamFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Events of a committed stream: each item is one SSE event's data, or the fault that ended it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Bytes, StreamFault>> + Send>>;

/// A stream that has delivered its first event, and the key it is bound to.
pub struct Opened {
    pub events: Events,
    pub key_id: u64,
    pub key: String,
}

/// The events of a committed stream, read straight from its connection: each is one SSE
/// event's data, or the fault that ended the stream. Its readers call [`Events::next`] rather
/// than go through a boxed stream of adapters, which would cost a few calls per event.
pub struct Events {
    first: Option<Bytes>,
    rest: Box<Committed>,
}

impl Events {
    /// The first event, until it has been taken by [`Events::next`].
    pub fn first(&self) -> Option<&Bytes> {
        self.first.as_ref()
    }

    /// The next event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Result<Bytes, StreamFault>> {
        match self.first.take() {
            Some(first) => Some(Ok(first)),
            None => self.rest.next().await,
        }
    }

    /// The events as a `Stream`.
    pub fn into_stream(self) -> EventStream {
        Box::pin(futures::stream::unfold(self, |mut events| async move {
            events.next().await.map(|item| (item, events))
        }))
    }
}

enum Attempt<T> {
    Done(T),
    Failed {
        outcome: Outcome,
        status: u16,
        error: ErrorBody,
    },
}

impl<T> Attempt<T> {
    /// The value of a successful attempt, or the failure as an attempt of another kind.
    #[expect(
        clippy::result_large_err,
        reason = "the failure is returned as it is, once per attempt"
    )]
    fn into_done<U>(self) -> Result<T, Attempt<U>> {
        match self {
            Attempt::Done(value) => Ok(value),
            Attempt::Failed { outcome, status, error } => Err(Attempt::Failed { outcome, status, error }),
        }
    }

    fn failed_without_report(outcome: Outcome) -> Self {
        if matches!(outcome, Outcome::ClientError) {
            // Only a request that cannot be written gets here (see `send_headers`).
            let error = ErrorBody::new(400, "INVALID_ARGUMENT", "the request has characters HTTP cannot carry");
            return Attempt::Failed {
                outcome,
                status: 400,
                error,
            };
        }
        let (status, code) = match &outcome {
            Outcome::Stalled { .. }
            | Outcome::Transient {
                class: FailureClass::Timeout,
                ..
            } => (504, "DEADLINE_EXCEEDED"),
            _ => (502, "UNAVAILABLE"),
        };
        let error = ErrorBody::new(status, code, outcome.message());
        Attempt::Failed { outcome, status, error }
    }
}

#[derive(Debug)]
pub struct Upstream {
    /// The direct route to Google.
    direct: Direct,
    base_url: String,
    pool: Arc<KeyPool>,
    settings: UpstreamSettings,
    max_retries: u32,
    metrics: Arc<Metrics>,
    probe_model: String,
    resources: Arc<Resources>,
    /// Egress proxies (`GEMINI_PROXIES`); empty: `http` goes straight to Google.
    proxies: Proxies,
}

/// The HTTP client's settings, shared by the direct client and each proxy's.
fn client_builder(settings: &UpstreamSettings) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .user_agent(USER_AGENT);
    // One HTTP/2 connection caps concurrent streams (often at 100); HTTP/1.1 with a large pool
    // scales with the number of requests instead.
    if settings.http2 {
        builder
    } else {
        builder.http1_only()
    }
}

/// The client on the direct route: the lean HTTP/1.1 one, or reqwest when HTTP/2 is asked for
/// (`UPSTREAM_HTTP2`).
#[derive(Debug)]
enum Direct {
    Http1(http1::Client),
    Reqwest(reqwest::Client),
}

const USER_AGENT: &str = concat!("gemini-balance/", env!("CARGO_PKG_VERSION"));

impl Upstream {
    pub fn new(
        base_url: &str,
        pool: Arc<KeyPool>,
        settings: UpstreamSettings,
        max_retries: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let direct = if settings.http2 {
            let client = client_builder(&settings)
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
            Direct::Reqwest(client)
        } else {
            Direct::Http1(http1::Client::new(base_url, settings.connect_timeout, USER_AGENT)?)
        };
        Ok(Self {
            direct,
            base_url: base_url.trim_end_matches('/').to_string(),
            pool,
            settings,
            max_retries,
            metrics,
            probe_model: "gemini-2.5-flash".to_string(),
            resources: Arc::new(Resources::default()),
            proxies: Proxies::default(),
        })
    }

    /// Sends each key's requests through one of these proxies (none: directly).
    pub fn with_proxies(mut self, specs: &[ProxySpec]) -> Result<Self, String> {
        self.proxies = Proxies::new(specs, || client_builder(&self.settings))?;
        Ok(self)
    }

    pub fn proxies(&self) -> &Proxies {
        &self.proxies
    }

    /// The model probes and validations ask `countTokens` of.
    pub fn with_probe_model(mut self, model: &str) -> Self {
        if !model.trim().is_empty() {
            self.probe_model = model.trim().to_string();
        }
        self
    }

    /// The registry of which key owns which file and cached content.
    pub fn with_resources(mut self, resources: Arc<Resources>) -> Self {
        self.resources = resources;
        self
    }

    pub fn resources(&self) -> &Arc<Resources> {
        &self.resources
    }

    pub fn pool(&self) -> &Arc<KeyPool> {
        &self.pool
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Books one attempt: metrics, and the request's trace (its attempts for the request log).
    fn book(&self, call: &Call, lease_key: &str, outcome: &'static str, status: u16, elapsed: Duration) {
        self.metrics.attempt(&call.model, outcome, elapsed);
        RequestTrace::update(|t| {
            t.upstream += elapsed;
            t.attempts.push(AttemptRecord {
                key: lease_key.to_string(),
                outcome,
                status,
                latency_ms: elapsed.as_millis() as u64,
            });
        });
    }

    /// Sends a call with a key, on the key's route (its proxy, or directly), and returns the
    /// answer's head.
    async fn dispatch(
        &self,
        call: &Call,
        key: &super::secret::Secret,
        route: Option<usize>,
    ) -> Result<Reply, TransportError> {
        match (route.and_then(|i| self.proxies.client(i)), &self.direct) {
            (Some(client), _) | (None, Direct::Reqwest(client)) => self.send_reqwest(client, call, key).await,
            (None, Direct::Http1(client)) => send_http1(client, call, key).await,
        }
    }

    async fn send_reqwest(
        &self,
        client: &reqwest::Client,
        call: &Call,
        key: &super::secret::Secret,
    ) -> Result<Reply, TransportError> {
        let mut url = format!("{}{}", self.base_url, call.path);
        if let Some(q) = &call.query {
            url.push('?');
            url.push_str(q);
        }
        let mut req = client
            .request(call.method.clone(), url)
            .header("x-goog-api-key", key.expose());
        for (name, value) in &call.headers {
            req = req.header(*name, value);
        }
        if let Some(body) = &call.body {
            req = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    call.content_type.as_deref().unwrap_or("application/json"),
                )
                .body(body.clone());
        }
        match req.send().await {
            Ok(resp) => Ok(Reply::from(resp)),
            Err(e) => Err(TransportError::from_reqwest(&e)),
        }
    }

    /// Masks the key that made the call, and any other pool key, wherever it appears in
    /// Google's text.
    fn redact(&self, key: &super::secret::Secret, text: &str) -> String {
        let raw = key.expose();
        let text = if raw.len() >= 4 && text.contains(raw) {
            text.replace(raw, &key.masked())
        } else {
            text.to_string()
        };
        self.pool.redact(&text)
    }

    /// Classifies an error answer. The whole body is masked before it is parsed, so no field of
    /// the error (message, `details`, their metadata) holds a pool key when anything stores,
    /// logs or returns it.
    fn classify(&self, lease: &Lease, status: u16, body: &[u8]) -> (Outcome, ErrorBody) {
        let text = String::from_utf8_lossy(body);
        let masked = self.redact(lease.key(), &text);
        gemini::classify(status, masked.as_bytes())
    }

    /// Sends a request and returns the whole 2xx body, failing over between keys. For quick
    /// calls (model list, countTokens, embeddings): Google answers them at once.
    pub async fn send(&self, call: &Call) -> Result<Answer, GatewayError> {
        self.with_failover(call, |lease| self.attempt_plain(call, lease)).await
    }

    /// A whole `generateContent` answer, fetched as `streamGenerateContent?alt=sse` and folded
    /// into one response. Google sends a stream's headers at once, so a key that sends nothing
    /// is abandoned after the first-byte timeout, while a long answer (minutes of thinking)
    /// completes on its first key within `UPSTREAM_TOTAL_TIMEOUT_SECS`. `call` must be the
    /// streaming call.
    pub async fn generate<F: fold::Fold>(&self, call: &Call) -> Result<Merged<F::Output>, GatewayError> {
        self.with_failover(call, |lease| self.attempt_assembled::<F>(call, lease))
            .await
    }

    /// Opens a stream, failing over between keys until one delivers its first event.
    pub async fn open_stream(&self, call: &Call) -> Result<Opened, GatewayError> {
        self.with_failover(call, |lease| self.attempt_stream(call, lease)).await
    }

    async fn with_failover<T, F, Fut>(&self, call: &Call, mut attempt: F) -> Result<T, GatewayError>
    where
        F: FnMut(Lease) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut tried: Vec<u64> = Vec::new();
        let mut last: Option<(Outcome, u16, ErrorBody)> = None;
        // A call that names a file or cached content goes to the key that owns it, only there.
        let pin = match (&call.pin, &call.body) {
            (Some(key), _) => Some(owners::Pin {
                key: key.clone(),
                resource: String::new(),
            }),
            (None, Some(body)) => self.resources.pin_for(body)?,
            (None, None) => None,
        };
        let attempts = if pin.is_some() { 1 } else { self.max_retries };
        for n in 1..=attempts {
            let acquired = match &pin {
                Some(pin) => Ok(self.pinned_lease(pin, &call.model).await?),
                None => match call
                    .prefer
                    .as_deref()
                    .filter(|_| n == 1)
                    .and_then(|key| self.pool.acquire_key(key, &call.model))
                {
                    Some(Ok(lease)) => Ok(lease),
                    _ => self.acquire(&call.model, &tried),
                },
            };
            let lease = match acquired {
                Ok(lease) => lease,
                Err(unavailable) if last.is_none() => {
                    tracing::warn!(model = %call.model, keys = unavailable.total_keys, "no key available");
                    if unavailable.model_unavailable {
                        return Err(GatewayError::ModelUnavailable {
                            model: call.model.clone(),
                        });
                    }
                    return Err(GatewayError::NoKeyAvailable {
                        retry_after: unavailable.retry_after,
                        all_rate_limited: unavailable.all_rate_limited,
                        total_keys: unavailable.total_keys,
                    });
                }
                Err(_) => break,
            };
            tried.push(lease.key_id());
            let key = lease.masked().to_string();
            let entry = lease.entry();
            let route = self.proxies.route(lease.fingerprint());
            let started = Instant::now();
            let result = attempt(lease).await;
            let elapsed = started.elapsed();
            let (class, status) = match &result {
                Attempt::Done(_) => ("success", 200),
                Attempt::Failed { outcome, status, .. } => (outcome.class(), *status),
            };
            self.book(call, &key, class, status, elapsed);
            if let Some(proxy) = route {
                self.book_proxy(proxy, &key, &result);
            }
            // The key's success rate counts only its own failures: a stall (Google slow on an
            // accepted request), a request Google refused or a failing proxy is no mark against
            // the key.
            let attribution = match &result {
                Attempt::Done(_) => Attribution::Served,
                Attempt::Failed { outcome, .. } if outcome.counts_against_key() => Attribution::KeyFault,
                Attempt::Failed { .. } => Attribution::NotTheKeys,
            };
            self.pool.record(&entry, attribution, elapsed);
            match result {
                Attempt::Done(value) => {
                    self.metrics.served(&call.model);
                    tracing::info!(key = %key, model = %call.model, attempt = n, outcome = "success",
                        latency_ms = elapsed.as_millis() as u64, "upstream attempt");
                    return Ok(value);
                }
                Attempt::Failed { outcome, status, error } => {
                    tracing::info!(key = %key, model = %call.model, attempt = n, outcome = outcome.class(), status,
                        latency_ms = elapsed.as_millis() as u64, message = %error.error.message, "upstream attempt");
                    // Already redacted by `classify`; capped for the request log.
                    RequestTrace::update(|t| t.message = Some(cap_message(&error.error.message)));
                    if let Outcome::Stalled { message } = outcome {
                        // Google has the request and is working on it: another key would only
                        // repeat the same slow work.
                        return Err(GatewayError::UpstreamFailed {
                            status: 504,
                            message,
                            retry_after: None,
                        });
                    }
                    if !outcome.is_retryable() {
                        return Err(GatewayError::UpstreamRejected { status, error });
                    }
                    last = Some((outcome, status, error));
                }
            }
        }
        let attempts = tried.len();
        let Some((outcome, _, error)) = last else {
            return Err(GatewayError::NoKeyAvailable {
                retry_after: None,
                all_rate_limited: false,
                total_keys: self.pool.len(),
            });
        };
        if matches!(outcome, Outcome::ModelUnavailable { .. }) {
            return Err(GatewayError::ModelUnavailable {
                model: call.model.clone(),
            });
        }
        let (status, retry_after) = match &outcome {
            Outcome::RateLimited {
                retry_after: RetryAfter::Delay(d),
                ..
            } => (429, Some(*d)),
            Outcome::RateLimited { .. } => (429, None),
            Outcome::Transient {
                class: FailureClass::Timeout,
                ..
            } => (504, None),
            _ => (502, None),
        };
        Err(GatewayError::UpstreamFailed {
            status,
            message: format!(
                "Gemini request failed on {attempts} key(s); last error ({}): {}",
                outcome.class(),
                error.error.message
            ),
            retry_after,
        })
    }

    /// The lease on the one key a pinned call may use. A key that is cooling down is waited for
    /// when its wait is short; otherwise the client hears when to come back.
    async fn pinned_lease(&self, pin: &owners::Pin, model: &str) -> Result<Lease, GatewayError> {
        const OWNER_WAIT: Duration = Duration::from_secs(20);
        let what = if pin.resource.is_empty() {
            "This resource".to_string()
        } else {
            format!("`{}`", pin.resource)
        };
        let mut waited = false;
        loop {
            let unavailable = match self.pool.acquire_key(&pin.key, model) {
                Some(Ok(lease)) => return Ok(lease),
                None => {
                    return Err(GatewayError::OwnerUnavailable {
                        message: format!(
                            "{what} belongs to a Gemini API key that is no longer in the pool; no other key can use it. Upload it again."
                        ),
                        retry_after: None,
                        rate_limited: false,
                    })
                }
                Some(Err(unavailable)) => unavailable,
            };
            match unavailable.retry_after {
                Some(wait) if !waited && wait <= OWNER_WAIT.min(self.settings.total_timeout) => {
                    waited = true;
                    tokio::time::sleep(wait).await;
                }
                retry_after => {
                    let reason = if unavailable.model_unavailable {
                        format!("it has no quota for {model}")
                    } else if unavailable.all_rate_limited {
                        "it is rate-limited".to_string()
                    } else {
                        "it is disabled or cooling down".to_string()
                    };
                    return Err(GatewayError::OwnerUnavailable {
                        message: format!(
                            "{what} belongs to one Gemini API key of the pool, and only that key can use it; {reason} now."
                        ),
                        retry_after,
                        rate_limited: unavailable.all_rate_limited,
                    });
                }
            }
        }
    }

    /// The next key to try. While an egress proxy cools down after failures, keys behind the
    /// other proxies go first; keys behind it are used only when no other key can serve.
    fn acquire(&self, model: &str, tried: &[u64]) -> Result<Lease, Unavailable> {
        if !self.proxies.is_empty() {
            let now = std::time::Instant::now();
            if self.proxies.any_cooling(now) {
                let healthy = |e: &super::pool::KeyEntry| !self.proxies.is_cooling(e.fingerprint(), now);
                if let Ok(lease) = self.pool.acquire_where(model, tried, healthy) {
                    return Ok(lease);
                }
            }
        }
        self.pool.acquire(model, tried)
    }

    /// Books an attempt's effect on the proxy it went through: a proxy failure cools it down;
    /// any answer from Google proves it works.
    fn book_proxy<T>(&self, proxy: usize, key: &str, result: &Attempt<T>) {
        match result {
            Attempt::Done(_) => self.proxies.succeeded(proxy),
            Attempt::Failed {
                outcome: Outcome::ProxyFailed { message },
                ..
            } => {
                self.proxies.failed(proxy, message, std::time::Instant::now());
                tracing::warn!(proxy = self.proxies.label(proxy).unwrap_or(""), key = %key, message = %message,
                    "egress proxy failed; the key is not blamed");
            }
            Attempt::Failed { outcome, .. } if answered(outcome) => self.proxies.succeeded(proxy),
            Attempt::Failed { .. } => {}
        }
    }

    /// Classifies an error of the HTTP client. Through a proxy, failing to connect (to the proxy,
    /// its handshake, its authentication, or its tunnel to Google) is the proxy's failure.
    fn transport_failure(&self, e: &TransportError, route: Option<usize>) -> Outcome {
        let outcome = transport_outcome(e);
        match route {
            Some(proxy) => {
                let message = self.proxies.scrub(proxy, outcome.message());
                if e.kind == ErrorKind::Connect {
                    Outcome::ProxyFailed {
                        message: format!("the egress proxy failed: {message}"),
                    }
                } else {
                    let mut outcome = outcome;
                    outcome.set_message(message);
                    outcome
                }
            }
            None => outcome,
        }
    }

    /// Sends and waits for the response headers, within the first-byte timeout (and `deadline`).
    async fn send_headers(&self, call: &Call, lease: &mut Lease, deadline: Option<Instant>) -> Result<Reply, Outcome> {
        let wait = if call.slow {
            self.settings.total_timeout
        } else {
            self.settings.first_byte_timeout
        };
        let first_byte = Instant::now() + wait;
        let limit = deadline.map_or(first_byte, |d| d.min(first_byte));
        let route = self.proxies.route(lease.fingerprint());
        // A kept-alive connection the other end closed while it sat in the pool fails before
        // anything is answered (some proxies advertise keep-alive, then close): nothing was
        // processed, so the same key is asked again once, on a new connection.
        let mut fresh_tries = 1;
        loop {
            return match tokio::time::timeout_at(limit, self.dispatch(call, lease.key(), route)).await {
                Err(_) => Err(timeout_outcome("no response from Gemini within the first-byte timeout")),
                Ok(Err(e)) if fresh_tries > 0 && e.kind == ErrorKind::Stale => {
                    fresh_tries -= 1;
                    tracing::debug!(key = %lease.masked(), "pooled connection was closed; sending again");
                    continue;
                }
                // The request's fault: no key is blamed, none is tried next.
                Ok(Err(e)) if e.kind == ErrorKind::Invalid => Err(Outcome::ClientError),
                Ok(Err(e)) => Err(self.transport_failure(&e, route)),
                Ok(Ok(resp)) => Ok(resp),
            };
        }
    }

    /// Reads an error body (bounded in time and size) and classifies it.
    async fn read_error<T>(&self, lease: &mut Lease, resp: Reply) -> Attempt<T> {
        let status = resp.status;
        let limit = Instant::now() + self.settings.first_byte_timeout;
        let body = match tokio::time::timeout_at(limit, resp.body.capped(1 << 20)).await {
            Ok(Some(body)) => body,
            _ => Bytes::new(),
        };
        if self.proxies.route(lease.fingerprint()).is_some() && proxy_refusal(status, &body) {
            let outcome = Outcome::ProxyFailed {
                message: format!("the egress proxy refused its credentials (HTTP {status})"),
            };
            return failed(lease, outcome);
        }
        let (outcome, error) = self.classify(lease, status, &body);
        lease.report(&outcome);
        Attempt::Failed { outcome, status, error }
    }

    async fn attempt_plain(&self, call: &Call, mut lease: Lease) -> Attempt<Answer> {
        let started = Instant::now();
        let deadline = started + self.settings.total_timeout;
        let resp = match self.send_headers(call, &mut lease, None).await {
            Ok(resp) => resp,
            Err(outcome) => return failed(&mut lease, outcome),
        };
        if !resp.is_success() {
            return self.read_error(&mut lease, resp).await;
        }
        let upload_headers: Vec<(String, String)> = if call.headers.is_empty() {
            Vec::new()
        } else {
            resp.headers
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("x-goog-upload-"))
                .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
                .collect()
        };
        let body = match tokio::time::timeout_at(deadline, resp.body.bytes()).await {
            Err(_) => {
                let outcome = Outcome::Stalled {
                    message: format!(
                        "Gemini accepted the request but did not complete it within {} s (UPSTREAM_TOTAL_TIMEOUT_SECS)",
                        self.settings.total_timeout.as_secs()
                    ),
                };
                return failed(&mut lease, outcome);
            }
            Ok(Err(e)) => return failed(&mut lease, transport_outcome(&e)),
            Ok(Ok(body)) => body,
        };
        lease.report(&Outcome::Success);
        Attempt::Done(Answer {
            body,
            key: lease.masked().to_string(),
            key_id: lease.key_id(),
            fingerprint: lease.entry().fingerprint().to_string(),
            upload_headers,
        })
    }

    /// Opens a stream on one key (see [`Upstream::attempt_open`]).
    async fn attempt_stream(&self, call: &Call, lease: Lease) -> Attempt<Opened> {
        let (first, state) = match self.attempt_open(call, lease, None).await.into_done() {
            Ok(started) => started,
            Err(failed) => return failed,
        };
        let key_id = state.lease.key_id();
        let key = state.lease.masked().to_string();
        Attempt::Done(Opened {
            events: Events {
                first: Some(first),
                rest: state,
            },
            key_id,
            key,
        })
    }

    /// Sends a streaming call on one key and waits for its first event: the event, and the
    /// stream's state to read the rest with. Before the headers, silence is the key's problem
    /// (first-byte timeout, retried elsewhere); after them, Google has accepted the request and
    /// silence is slowness: it ends the request with a 504 and blames no one.
    async fn attempt_open(
        &self,
        call: &Call,
        mut lease: Lease,
        deadline: Option<Instant>,
    ) -> Attempt<(Bytes, Box<Committed>)> {
        let started = Instant::now();
        let resp = match self.send_headers(call, &mut lease, deadline).await {
            Ok(resp) => resp,
            Err(outcome) => return failed(&mut lease, outcome),
        };
        if !resp.is_success() {
            return self.read_error(&mut lease, resp).await;
        }
        let idle = self.settings.idle_timeout;
        let mut body = resp.body;
        let mut parser = SseParser::new();
        let first = loop {
            if let Some(event) = parser.next_event() {
                break event;
            }
            let wait = wait_limit(idle, deadline);
            match tokio::time::timeout_at(wait, body.read_into(parser.input())).await {
                Err(_) => {
                    let outcome = Outcome::Stalled {
                        message: stall_message(idle, deadline, self.settings.total_timeout, false),
                    };
                    return failed(&mut lease, outcome);
                }
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => return failed(&mut lease, transport_outcome(&e)),
                Ok(None) => match parser.finish() {
                    Some(event) => break event,
                    None => {
                        let outcome = Outcome::Transient {
                            class: FailureClass::ServerError,
                            message: "Gemini closed the stream before its first event".into(),
                        };
                        return failed(&mut lease, outcome);
                    }
                },
            }
        };
        lease.report(&Outcome::Success);
        self.metrics.served(&call.model);
        self.metrics.first_token(&call.model, started.elapsed());
        // Boxed: the stream hands its state from event to event, and a pointer moves cheaply.
        let state = Box::new(Committed {
            body,
            parser,
            lease,
            idle,
            deadline,
            total: self.settings.total_timeout,
            done: false,
        });
        Attempt::Done((first, state))
    }

    /// A streamed answer read to its end and folded into one `generateContent` response.
    async fn attempt_assembled<F: fold::Fold>(&self, call: &Call, lease: Lease) -> Attempt<Merged<F::Output>> {
        let deadline = Instant::now() + self.settings.total_timeout;
        let (first, mut state) = match self.attempt_open(call, lease, Some(deadline)).await.into_done() {
            Ok(started) => started,
            Err(failed) => return failed,
        };
        let key_id = state.lease.key_id();
        let key = state.lease.masked().to_string();
        let mut merger = F::default();
        // The events are read straight from the stream's state, not through a boxed stream.
        let mut event = Ok(first);
        loop {
            match event {
                Ok(data) => {
                    if let Err(e) = merger.push(&data) {
                        return Attempt::failed_without_report(Outcome::Transient {
                            class: FailureClass::ServerError,
                            message: format!("unreadable stream event from Gemini: {e}"),
                        });
                    }
                }
                // Nothing has reached the client yet: a broken connection is retried on the
                // next key (already counted against this one); a stall is not.
                Err(StreamFault::Stalled(message)) => {
                    return Attempt::failed_without_report(Outcome::Stalled { message })
                }
                Err(StreamFault::Broken(message)) => {
                    return Attempt::failed_without_report(Outcome::Transient {
                        class: FailureClass::Connection,
                        message,
                    })
                }
            }
            match state.next().await {
                Some(next) => event = next,
                None => break,
            }
        }
        Attempt::Done(Merged {
            response: merger.finish(),
            key,
            key_id,
        })
    }

    /// Checks a key without spending generation quota: `countTokens` on the probe model.
    /// Works, rejected (the key's own fault), or inconclusive (Google busy, slow or unreachable).
    pub async fn probe(&self, key: &super::secret::Secret) -> Verdict {
        let path = format!("/v1beta/models/{}:countTokens", self.probe_model);
        let call = Call::post(
            path,
            "",
            Bytes::from_static(br#"{"contents":[{"role":"user","parts":[{"text":"ping"}]}]}"#),
        );
        let route = if self.proxies.is_empty() {
            None
        } else {
            self.proxies.route(&super::pool::fingerprint(key))
        };
        let limit = self.settings.probe_timeout;
        let resp = match tokio::time::timeout(limit, self.dispatch(&call, key, route)).await {
            Err(_) => return Verdict::Inconclusive("the probe timed out".into()),
            Ok(Err(e)) => return Verdict::Inconclusive(self.transport_failure(&e, route).message().to_string()),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status;
        if resp.is_success() {
            // Read to its end, so the connection can be used again.
            let _ = tokio::time::timeout(limit, resp.body.capped(1 << 20)).await;
            return Verdict::Works;
        }
        let body = tokio::time::timeout(limit, resp.body.capped(1 << 20))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let (outcome, _) = gemini::classify(status, &body);
        let message = self.redact(key, outcome.message());
        match outcome {
            Outcome::InvalidKey { .. } | Outcome::PermissionDenied { .. } => Verdict::Rejected(message),
            // A 429 still proves the key is known to Google; the rest says nothing.
            _ => Verdict::Inconclusive(if message.is_empty() {
                format!("HTTP {status}")
            } else {
                message
            }),
        }
    }

    /// Re-validates disabled keys forever: due keys are probed concurrently (a bounded number at
    /// once); a rejection doubles the wait, an inconclusive probe keeps it.
    pub async fn run_revalidation(self: Arc<Self>) {
        const CONCURRENT_PROBES: usize = 8;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due = self.pool.due_for_probe();
            if due.is_empty() {
                continue;
            }
            futures::stream::iter(due)
                .for_each_concurrent(CONCURRENT_PROBES, |(entry, generation)| {
                    let this = self.clone();
                    async move {
                        let verdict = this.probe(entry.secret()).await;
                        tracing::info!(key = %entry.masked(), verdict = ?verdict, "re-validated disabled key");
                        this.pool.probe_result(&entry, generation, &verdict);
                    }
                })
                .await;
        }
    }
}

async fn send_http1(client: &http1::Client, call: &Call, key: &super::secret::Secret) -> Result<Reply, TransportError> {
    let target = match &call.query {
        Some(q) => format!("{}?{q}", call.path),
        None => call.path.clone(),
    };
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(2 + call.headers.len());
    headers.push(("x-goog-api-key", key.expose()));
    if call.body.is_some() {
        headers.push((
            "content-type",
            call.content_type.as_deref().unwrap_or("application/json"),
        ));
    }
    headers.extend(call.headers.iter().map(|(name, value)| (*name, value.as_str())));
    let req = http1::Request {
        method: &call.method,
        target: &target,
        headers: &headers,
        body: call.body.as_ref(),
    };
    client.send(&req).await.map(Reply::from)
}

/// At most this many bytes of an error message go into the request log.
pub const MAX_LOGGED_MESSAGE: usize = 2048;

/// A message cut to [`MAX_LOGGED_MESSAGE`] bytes (on a character boundary).
pub fn cap_message(message: &str) -> String {
    if message.len() <= MAX_LOGGED_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_LOGGED_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// How long to wait for the next bytes: a stream waits the idle timeout; a whole answer
/// (`deadline` set) waits until its deadline, however long Google stays silent before it.
fn wait_limit(idle: Duration, deadline: Option<Instant>) -> Instant {
    deadline.unwrap_or_else(|| Instant::now() + idle)
}

fn stall_message(idle: Duration, deadline: Option<Instant>, total: Duration, started: bool) -> String {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        format!(
            "Gemini accepted the request but did not complete it within {} s (UPSTREAM_TOTAL_TIMEOUT_SECS)",
            total.as_secs()
        )
    } else if started {
        format!(
            "Gemini sent nothing for {} s in the middle of the answer (UPSTREAM_IDLE_TIMEOUT_SECS)",
            idle.as_secs()
        )
    } else {
        format!(
            "Gemini accepted the request but sent nothing for {} s (UPSTREAM_IDLE_TIMEOUT_SECS)",
            idle.as_secs()
        )
    }
}

struct Committed {
    body: ReplyBody,
    parser: SseParser,
    lease: Lease,
    idle: Duration,
    deadline: Option<Instant>,
    total: Duration,
    done: bool,
}

impl Committed {
    /// The stream's next event, read from the connection when none is buffered.
    async fn next(&mut self) -> Option<Result<Bytes, StreamFault>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(Ok(event));
            }
            let wait = wait_limit(self.idle, self.deadline);
            match tokio::time::timeout_at(wait, self.body.read_into(self.parser.input())).await {
                Ok(Some(Ok(()))) => {}
                Ok(None) => {
                    self.done = true;
                    return self.parser.finish().map(Ok);
                }
                Ok(Some(Err(e))) => {
                    let outcome = transport_outcome(&e);
                    self.lease.report(&outcome);
                    self.done = true;
                    let message = format!("the Gemini stream broke off: {}", outcome.message());
                    return Some(Err(StreamFault::Broken(message)));
                }
                Err(_) => {
                    // Slow is not dead: no blame on the key.
                    self.done = true;
                    let message = stall_message(self.idle, self.deadline, self.total, true);
                    return Some(Err(StreamFault::Stalled(message)));
                }
            }
        }
    }
}

fn failed<T>(lease: &mut Lease, outcome: Outcome) -> Attempt<T> {
    lease.report(&outcome);
    Attempt::failed_without_report(outcome)
}

/// Whether an error answer came from a plain-HTTP proxy refusing our credentials rather than
/// from Google: a 407, or a 401 without Google's JSON error body (some proxies send 401).
fn proxy_refusal(status: u16, body: &[u8]) -> bool {
    let json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    status == 407 || (status == 401 && !json)
}

/// Whether an outcome came from an answer by Google (so the way there works).
fn answered(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::InvalidKey { .. }
            | Outcome::PermissionDenied { .. }
            | Outcome::ModelUnavailable { .. }
            | Outcome::RateLimited { .. }
            | Outcome::ClientError
            | Outcome::Transient {
                class: FailureClass::ServerError,
                ..
            }
    )
}

fn timeout_outcome(message: &str) -> Outcome {
    Outcome::Transient {
        class: FailureClass::Timeout,
        message: message.to_string(),
    }
}

fn transport_outcome(e: &TransportError) -> Outcome {
    let class = if e.kind == ErrorKind::Timeout {
        FailureClass::Timeout
    } else {
        FailureClass::Connection
    };
    Outcome::Transient {
        class,
        message: e.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_refusing_credentials_is_told_from_google() {
        assert!(proxy_refusal(407, b""));
        assert!(proxy_refusal(401, b"<html>Unauthorized</html>"));
        assert!(proxy_refusal(401, b""));
        assert!(!proxy_refusal(
            401,
            br#" {"error":{"code":401,"status":"UNAUTHENTICATED"}}"#
        ));
        assert!(!proxy_refusal(403, b"<html>Forbidden</html>"));
    }

    use crate::gateway::clock::SystemClock;
    use crate::gateway::config::PoolSettings;
    use crate::gateway::secret::Secret;

    const KEY: &str = "AIzaUpstreamTestKey000000000000000000q1";
    const OTHER: &str = "AIzaUpstreamTestKey111111111111111111q2";

    fn upstream() -> Upstream {
        let settings = PoolSettings {
            max_failures: 3,
            cooldown: Duration::from_secs(10),
            cooldown_max: Duration::from_secs(60),
            revalidate: Duration::from_secs(60),
            revalidate_max: Duration::from_secs(600),
            default_rate_limit: Duration::from_secs(30),
        };
        let pool = Arc::new(KeyPool::new(
            vec![Secret::new(KEY), Secret::new(OTHER)],
            settings,
            Arc::new(SystemClock),
        ));
        let timeouts = UpstreamSettings {
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            http2: false,
        };
        Upstream::new("http://127.0.0.1:9", pool, timeouts, 2, Arc::default()).unwrap()
    }

    /// Every field of Google's error (details and their metadata included) is masked before
    /// it is parsed: the error passed back to clients holds no key, this lease's or another's.
    #[test]
    fn classify_masks_keys_in_every_field_of_the_error() {
        let up = upstream();
        let lease = up.pool.acquire("m", &[]).unwrap();
        let key = lease.key().expose().to_string();
        let body = serde_json::json!({"error": {
            "code": 403,
            "message": format!("Permission denied: Consumer 'api_key:{key}' has been suspended."),
            "status": "PERMISSION_DENIED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SOMETHING_NEW",
                 "metadata": {"consumer": format!("api_key:{key}"), "other": OTHER}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                 "message": format!("Consumer 'api_key:{key}' has been suspended.")}
            ]
        }});
        let (outcome, error) = up.classify(&lease, 403, body.to_string().as_bytes());
        // An unknown reason: about the request, so the error would go back to the client.
        assert_eq!(outcome, Outcome::ClientError);
        let shown = serde_json::to_string(&error).unwrap();
        assert!(!shown.contains(KEY) && !shown.contains(OTHER), "{shown}");
        assert!(shown.contains("AIza…0q1"), "{shown}");
        assert_eq!(error.error.details.len(), 2);
    }
}
