//! The upstream client: sends a Gemini request with a key from the pool, classifies the answer,
//! and fails over to the next key while the failure is the key's or the server's.
//!
//! Keys go upstream only in the `x-goog-api-key` header. Streams commit to a key once its first
//! event has arrived; before that a failure moves on to the next key, after it the stream ends
//! with an error and nothing is replayed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Method;
use tokio::time::Instant;

use super::config::UpstreamSettings;
use super::error::GatewayError;
use super::gemini::{self, ErrorBody};
use super::metrics::{Metrics, RequestTrace};
use super::pool::{FailureClass, KeyPool, Lease, Outcome, RetryAfter};
use super::sse::SseParser;

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
}

impl Call {
    pub fn get(path: impl Into<String>) -> Self {
        Call {
            method: Method::GET,
            path: path.into(),
            query: None,
            body: None,
            model: String::new(),
        }
    }
    pub fn post(path: impl Into<String>, model: &str, body: Bytes) -> Self {
        Call {
            method: Method::POST,
            path: path.into(),
            query: None,
            body: Some(body),
            model: model.to_string(),
        }
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
}

/// Events of a committed stream: each item is one SSE event's data, or the error that ended it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

enum Attempt<T> {
    Done(T),
    Failed {
        outcome: Outcome,
        status: u16,
        error: ErrorBody,
        raw: Bytes,
    },
}

#[derive(Debug)]
pub struct Upstream {
    http: reqwest::Client,
    base_url: String,
    pool: Arc<KeyPool>,
    settings: UpstreamSettings,
    max_retries: u32,
    metrics: Arc<Metrics>,
}

impl Upstream {
    pub fn new(
        base_url: &str,
        pool: Arc<KeyPool>,
        settings: UpstreamSettings,
        max_retries: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("gemini-balance/", env!("CARGO_PKG_VERSION")));
        // One HTTP/2 connection caps concurrent streams (often at 100); HTTP/1.1 with a large pool
        // scales with the number of requests instead.
        if !settings.http2 {
            builder = builder.http1_only();
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            pool,
            settings,
            max_retries,
            metrics,
        })
    }

    pub fn pool(&self) -> &Arc<KeyPool> {
        &self.pool
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Books one attempt: per-key window, metrics, the request's trace.
    fn book(&self, call: &Call, key_id: u64, key: &str, outcome: &str, elapsed: Duration) {
        self.pool.record_attempt(key_id, outcome == "success", elapsed);
        self.metrics.attempt(&call.model, outcome, elapsed);
        RequestTrace::update(|t| {
            t.upstream += elapsed;
            t.key = Some(key.to_string());
        });
    }

    fn request(&self, call: &Call, lease: &Lease) -> reqwest::RequestBuilder {
        let mut url = format!("{}{}", self.base_url, call.path);
        if let Some(q) = &call.query {
            url.push('?');
            url.push_str(q);
        }
        let mut req = self
            .http
            .request(call.method.clone(), url)
            .header("x-goog-api-key", lease.key().expose());
        if let Some(body) = &call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        req
    }

    /// Sends a request and returns the whole 2xx body, failing over between keys.
    pub async fn send(&self, call: &Call) -> Result<Answer, GatewayError> {
        self.with_failover(call, |lease| self.attempt_plain(call, lease)).await
    }

    /// Opens a stream, failing over between keys until one delivers its first event.
    pub async fn open_stream(&self, call: &Call) -> Result<(EventStream, u64), GatewayError> {
        self.with_failover(call, |lease| self.attempt_stream(call, lease)).await
    }

    async fn with_failover<T, F, Fut>(&self, call: &Call, mut attempt: F) -> Result<T, GatewayError>
    where
        F: FnMut(Lease) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut tried: Vec<u64> = Vec::new();
        let mut last: Option<(Outcome, u16, ErrorBody)> = None;
        for n in 1..=self.max_retries {
            let lease = match self.pool.acquire(&call.model, &tried) {
                Ok(lease) => lease,
                Err(unavailable) if last.is_none() => {
                    tracing::warn!(model = %call.model, keys = unavailable.total_keys, "no key available");
                    return Err(GatewayError::NoKeyAvailable {
                        retry_after: unavailable.retry_after,
                        all_rate_limited: unavailable.all_rate_limited,
                        total_keys: unavailable.total_keys,
                    });
                }
                Err(_) => break,
            };
            let key_id = lease.key_id();
            tried.push(key_id);
            let key = lease.masked().to_string();
            let started = Instant::now();
            let result = attempt(lease).await;
            let class = match &result {
                Attempt::Done(_) => "success",
                Attempt::Failed { outcome, .. } => outcome.class(),
            };
            self.book(call, key_id, &key, class, started.elapsed());
            match result {
                Attempt::Done(value) => {
                    tracing::info!(key = %key, model = %call.model, attempt = n, outcome = "success",
                        latency_ms = started.elapsed().as_millis() as u64, "upstream attempt");
                    return Ok(value);
                }
                Attempt::Failed {
                    outcome,
                    status,
                    mut error,
                    raw,
                } => {
                    error.error.message = self.pool.redact(&error.error.message);
                    tracing::info!(key = %key, model = %call.model, attempt = n, outcome = outcome.class(), status,
                        latency_ms = started.elapsed().as_millis() as u64, message = %error.error.message, "upstream attempt");
                    if !outcome.is_retryable() {
                        let raw = if raw.is_empty() {
                            Bytes::new()
                        } else {
                            Bytes::from(self.pool.redact(&String::from_utf8_lossy(&raw)))
                        };
                        return Err(GatewayError::UpstreamRejected { status, error, raw });
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

    async fn attempt_plain(&self, call: &Call, mut lease: Lease) -> Attempt<Answer> {
        let deadline = Instant::now() + self.settings.total_timeout;
        let first_byte = Instant::now() + self.settings.first_byte_timeout;
        let resp = match tokio::time::timeout_at(first_byte, self.request(call, &lease).send()).await {
            Err(_) => {
                return failed(
                    &mut lease,
                    timeout_outcome("no response from Gemini within the first-byte timeout"),
                )
            }
            Ok(Err(e)) => return failed(&mut lease, transport_outcome(&e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        let body = match tokio::time::timeout_at(deadline, resp.bytes()).await {
            Err(_) => {
                return failed(
                    &mut lease,
                    timeout_outcome("Gemini's response did not complete within the total timeout"),
                )
            }
            Ok(Err(e)) => return failed(&mut lease, transport_outcome(&e)),
            Ok(Ok(body)) => body,
        };
        if (200..300).contains(&status) {
            lease.report(&Outcome::Success);
            return Attempt::Done(Answer {
                body,
                key: lease.masked().to_string(),
                key_id: lease.key_id(),
            });
        }
        let (outcome, error) = gemini::classify(status, &body);
        lease.report(&outcome);
        Attempt::Failed {
            outcome,
            status,
            error,
            raw: body,
        }
    }

    async fn attempt_stream(&self, call: &Call, mut lease: Lease) -> Attempt<(EventStream, u64)> {
        let started = Instant::now();
        let deadline = Instant::now() + self.settings.total_timeout;
        let first_byte = Instant::now() + self.settings.first_byte_timeout;
        let resp = match tokio::time::timeout_at(first_byte, self.request(call, &lease).send()).await {
            Err(_) => {
                return failed(
                    &mut lease,
                    timeout_outcome("no response from Gemini within the first-byte timeout"),
                )
            }
            Ok(Err(e)) => return failed(&mut lease, transport_outcome(&e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = match tokio::time::timeout_at(deadline, resp.bytes()).await {
                Ok(Ok(body)) => body,
                _ => Bytes::new(),
            };
            let (outcome, error) = gemini::classify(status, &body);
            lease.report(&outcome);
            return Attempt::Failed {
                outcome,
                status,
                error,
                raw: body,
            };
        }
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::new();
        let first = loop {
            if let Some(event) = parser.next_event() {
                break event;
            }
            match tokio::time::timeout_at(first_byte, body.next()).await {
                Err(_) => {
                    return failed(
                        &mut lease,
                        timeout_outcome("no stream event from Gemini within the first-byte timeout"),
                    )
                }
                Ok(Some(Ok(bytes))) => parser.push(&bytes),
                Ok(Some(Err(e))) => return failed(&mut lease, transport_outcome(&e)),
                Ok(None) => match parser.finish() {
                    Some(event) => break event,
                    None => {
                        return failed(
                            &mut lease,
                            Outcome::Transient {
                                class: FailureClass::ServerError,
                                message: "Gemini closed the stream before its first event".into(),
                            },
                        )
                    }
                },
            }
        };
        lease.report(&Outcome::Success);
        self.metrics.first_token(&call.model, started.elapsed());
        let key = lease.key_id();
        let state = Committed {
            body: Box::pin(body),
            parser,
            lease,
            deadline,
            done: false,
        };
        let rest = futures::stream::unfold(state, next_event);
        let stream = futures::stream::once(async move { Ok(first) }).chain(rest);
        Attempt::Done((Box::pin(stream), key))
    }

    /// Checks whether a disabled key works again (a cheap model-list call that uses no quota).
    pub async fn probe(&self, lease_key: &super::secret::Secret) -> bool {
        let url = format!("{}/v1beta/models?pageSize=1", self.base_url);
        let req = self.http.get(url).header("x-goog-api-key", lease_key.expose());
        matches!(tokio::time::timeout(self.settings.total_timeout, req.send()).await, Ok(Ok(r)) if r.status().is_success())
    }

    /// Re-validates disabled keys forever: each due key is probed; backoff doubles on failure.
    pub async fn run_revalidation(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for entry in self.pool.due_for_probe() {
                let works = self.probe(entry.secret()).await;
                tracing::info!(key = %entry.masked(), works, "re-validated disabled key");
                self.pool.probe_result(&entry, works);
            }
        }
    }
}

struct Committed {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: SseParser,
    lease: Lease,
    deadline: Instant,
    done: bool,
}

async fn next_event(mut st: Committed) -> Option<(Result<Bytes, String>, Committed)> {
    if st.done {
        return None;
    }
    loop {
        if let Some(event) = st.parser.next_event() {
            return Some((Ok(event), st));
        }
        match tokio::time::timeout_at(st.deadline, st.body.next()).await {
            Ok(Some(Ok(bytes))) => st.parser.push(&bytes),
            Ok(None) => {
                st.done = true;
                return st.parser.finish().map(|event| (Ok(event), st));
            }
            Ok(Some(Err(e))) => {
                let outcome = transport_outcome(&e);
                st.lease.report(&outcome);
                st.done = true;
                return Some((
                    Err(format!("the Gemini stream broke off: {}", outcome_message(&outcome))),
                    st,
                ));
            }
            Err(_) => {
                st.lease.report(&timeout_outcome("stream exceeded the total timeout"));
                st.done = true;
                return Some((Err("the Gemini stream exceeded the total timeout".to_string()), st));
            }
        }
    }
}

fn outcome_message(o: &Outcome) -> &str {
    match o {
        Outcome::Transient { message, .. }
        | Outcome::InvalidKey { message }
        | Outcome::PermissionDenied { message }
        | Outcome::RateLimited { message, .. } => message,
        _ => "",
    }
}

fn failed<T>(lease: &mut Lease, outcome: Outcome) -> Attempt<T> {
    lease.report(&outcome);
    let status = if matches!(
        outcome,
        Outcome::Transient {
            class: FailureClass::Timeout,
            ..
        }
    ) {
        504
    } else {
        502
    };
    let error = ErrorBody::new(status, "UNAVAILABLE", outcome_message(&outcome));
    Attempt::Failed {
        outcome,
        status,
        error,
        raw: Bytes::new(),
    }
}

fn timeout_outcome(message: &str) -> Outcome {
    Outcome::Transient {
        class: FailureClass::Timeout,
        message: message.to_string(),
    }
}

fn transport_outcome(e: &reqwest::Error) -> Outcome {
    let class = if e.is_timeout() {
        FailureClass::Timeout
    } else {
        FailureClass::Connection
    };
    // Without the URL: it carries no key, but keeps messages short.
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "Gemini");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    Outcome::Transient { class, message: text }
}
