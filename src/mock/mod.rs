//! A mock of Google's Gemini REST API for tests, benchmarks and keyless demos.
//!
//! It speaks the real wire format: `/v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent` (`alt=sse` framed as `data: …\r\n\r\n`, or a streamed JSON array),
//! `:countTokens`, `:embedContent`, `:batchEmbedContents`, model listing; keys in the
//! `x-goog-api-key` header or `?key=`; errors as `{"error":{code,message,status,details}}`.
//!
//! Each key's behaviour can be set at run time ([`MockGemini::set`], or `POST /mock/keys/{key}`)
//! and defaults from its name: keys containing `invalid`, `denied`, `ratelimit`, `flaky`, `hang`
//! or `slow` misbehave accordingly. Prompts can ask for special answers: `[[safety]]`, `[[block]]`,
//! `[[empty]]`, `[[think]]`, `[[tool:NAME]]`, `[[image]]`.
//!
//! Timing is Google's: a non-streaming answer sends its headers only when the whole answer is
//! ready; a stream sends its headers at once, then its first event after the "thinking" delay,
//! then the others one delay apart (`POST /mock/timing`, or per key with the `slow` mode).
//!
//! Errors follow Google's semantics: a 403 is either about the key (suspended, with the key in
//! the message as Google writes it) or about the request (a file or cached content the key's
//! project does not own). Files and cached contents belong to the key that made them
//! ([`files`]).

mod files;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How a key behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Behavior {
    Ok,
    /// 400 `INVALID_ARGUMENT` with `ErrorInfo.reason = API_KEY_INVALID`.
    Invalid,
    /// 403 `PERMISSION_DENIED`.
    PermissionDenied,
    /// 429 `RESOURCE_EXHAUSTED` with `QuotaFailure` and `RetryInfo`.
    RateLimited {
        retry_delay_secs: f64,
        #[serde(default)]
        per_day: bool,
    },
    /// A 5xx with Google's error body (500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED).
    ServerError {
        code: u16,
    },
    /// 429 whose `QuotaFailure` has a limit of 0: the model is not offered to this key (all
    /// models, or only `model`).
    ZeroQuota {
        #[serde(default)]
        model: Option<String>,
    },
    /// Never answers: no headers at all (a dead key).
    Hang,
    /// Sends a stream's headers, then nothing ever (non-streaming: no headers, like `Hang`).
    StallAfterHeaders,
    /// Streams `after` events, then breaks the connection.
    DropMidStream {
        after: u32,
    },
    /// A slow answer: the first event after `first_event_ms` (default `delay_ms`: thinking),
    /// the others `delay_ms` apart. Non-streaming headers come when all of it is done.
    Slow {
        delay_ms: u64,
        #[serde(default)]
        first_event_ms: Option<u64>,
    },
    /// Waits `delay_ms`, then behaves as `then` (e.g. an error that comes late, while the
    /// request is in flight).
    Late {
        delay_ms: u64,
        then: Box<Behavior>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    #[serde(flatten)]
    pub behavior: Behavior,
    /// Apply to this many requests, then behave normally again (absent: for good).
    #[serde(default)]
    pub times: Option<u32>,
}

/// What the mock has seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub total: u64,
    pub by_key: HashMap<String, u64>,
    /// `Authorization` headers that reached the mock (a gateway must never forward its client's).
    pub authorization_headers: Vec<String>,
    /// Requests that carried the key in `?key=` rather than the header.
    pub query_key_requests: u64,
    pub last_body: Option<Value>,
    pub last_path: Option<String>,
}

#[derive(Debug, Default)]
pub struct MockState {
    rules: Mutex<HashMap<String, Rule>>,
    stats: Mutex<Stats>,
    /// Default delay between stream events.
    chunk_delay_ms: AtomicU64,
    /// Default delay before the first event ("thinking").
    first_event_delay_ms: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_cancelled: AtomicU64,
    resources: files::Resources,
}

#[derive(Debug, Clone, Default)]
pub struct MockGemini {
    state: Arc<MockState>,
}

pub const MODELS: &[&str] = &[
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.0-flash",
    "gemini-2.5-flash-image",
    "gemini-3-pro-preview",
    "gemini-3-flash-preview",
];
pub const EMBEDDING_MODELS: &[&str] = &["gemini-embedding-001", "text-embedding-004"];
/// Imagen models: `:predict` only.
pub const IMAGEN_MODELS: &[&str] = &["imagen-4.0-generate-001", "imagen-4.0-fast-generate-001"];
/// Text-to-speech models: audio output only.
pub const TTS_MODELS: &[&str] = &["gemini-2.5-flash-preview-tts", "gemini-2.5-pro-preview-tts"];
/// Google's prebuilt voices (a subset is enough for the mock to refuse others).
pub const VOICES: &[&str] = &[
    "Zephyr",
    "Puck",
    "Charon",
    "Kore",
    "Fenrir",
    "Leda",
    "Orus",
    "Aoede",
    "Callirrhoe",
    "Autonoe",
    "Enceladus",
    "Iapetus",
    "Umbriel",
    "Algieba",
    "Despina",
    "Erinome",
    "Algenib",
    "Rasalgethi",
    "Laomedeia",
    "Achernar",
    "Alnilam",
    "Schedar",
    "Gacrux",
    "Pulcherrima",
    "Achird",
    "Zubenelgenubi",
    "Vindemiatrix",
    "Sadachbia",
    "Sadaltager",
    "Sulafat",
];
/// A 1×1 PNG, the mock's every image.
pub const PNG_1X1: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

impl MockGemini {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how `key` behaves from now on.
    pub fn set(&self, key: &str, behavior: Behavior) {
        self.set_rule(key, Rule { behavior, times: None });
    }

    /// Sets how `key` behaves for its next `times` requests.
    pub fn set_times(&self, key: &str, behavior: Behavior, times: u32) {
        self.set_rule(
            key,
            Rule {
                behavior,
                times: Some(times),
            },
        );
    }

    pub fn set_rule(&self, key: &str, rule: Rule) {
        lock(&self.state.rules).insert(key.to_string(), rule);
    }

    pub fn set_chunk_delay(&self, delay: Duration) {
        self.state
            .chunk_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Delay before every answer's first event, for every key ("thinking").
    pub fn set_first_event_delay(&self, delay: Duration) {
        self.state
            .first_event_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        lock(&self.state.stats).clone()
    }

    pub fn requests_for(&self, key: &str) -> u64 {
        lock(&self.state.stats).by_key.get(key).copied().unwrap_or(0)
    }

    /// The key that owns a file or cached content (`files/…`, `cachedContents/…`).
    pub fn owner_of(&self, name: &str) -> Option<String> {
        self.state.resources.owner_of(name)
    }

    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }

    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/models", get(list_models))
            .route("/models/{name}", get(get_model).post(model_action))
            .route("/files", get(files::list_files))
            .route("/files/{id}", get(files::get_file).delete(files::delete_file))
            .route("/cachedContents", get(files::list_caches).post(files::create_cache))
            .route(
                "/cachedContents/{id}",
                get(files::cache).patch(files::cache).delete(files::cache),
            );
        Router::new()
            .nest("/v1beta", api.clone())
            .nest("/v1", api)
            .route("/upload/v1beta/files", post(files::upload))
            .route("/upload/v1/files", post(files::upload))
            .route("/mock/keys/{key}", post(control_set))
            .route("/mock/timing", post(control_timing))
            .route("/mock/stats", get(control_stats))
            .with_state(self.state.clone())
    }

    /// Serves the mock on `addr` (port 0 for any free port) in the background.
    pub async fn spawn(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(local)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn default_behavior(key: &str) -> Behavior {
    if key.contains("invalid") {
        Behavior::Invalid
    } else if key.contains("denied") {
        Behavior::PermissionDenied
    } else if key.contains("ratelimit") {
        Behavior::RateLimited {
            retry_delay_secs: 30.0,
            per_day: false,
        }
    } else if key.contains("flaky") {
        Behavior::ServerError { code: 503 }
    } else if key.contains("hang") {
        Behavior::Hang
    } else if key.contains("slow") {
        Behavior::Slow {
            delay_ms: 200,
            first_event_ms: None,
        }
    } else {
        Behavior::Ok
    }
}

/// The behaviour for this request, consuming one use of a counted rule.
fn behavior_for(state: &MockState, key: &str) -> Behavior {
    let mut rules = lock(&state.rules);
    match rules.get_mut(key) {
        Some(rule) => {
            let behavior = rule.behavior.clone();
            if let Some(n) = rule.times.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    rules.remove(key);
                }
            }
            behavior
        }
        None => default_behavior(key),
    }
}

fn google_error(code: u16, status: &str, message: &str, details: Value) -> Response {
    let mut error = json!({"code": code, "message": message, "status": status});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({ "error": error })),
    )
        .into_response()
}

/// Authenticates like Google: key from `x-goog-api-key` or `?key=`; records what it saw.
#[expect(
    clippy::result_large_err,
    reason = "the error is the response to send; built once per request"
)]
fn authenticate(
    state: &MockState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    path: String,
    body: Option<&Value>,
) -> Result<(String, Behavior), Response> {
    let header_key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key = header_key.clone().or_else(|| query.get("key").cloned());
    {
        let mut stats = lock(&state.stats);
        stats.total += 1;
        if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            stats.authorization_headers.push(auth.to_string());
        }
        if header_key.is_none() && key.is_some() {
            stats.query_key_requests += 1;
        }
        if let Some(k) = &key {
            *stats.by_key.entry(k.clone()).or_insert(0) += 1;
        }
        stats.last_path = Some(path);
        if let Some(b) = body {
            stats.last_body = Some(b.clone());
        }
    }
    let Some(key) = key else {
        return Err(google_error(403, "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            json!([])));
    };
    let behavior = behavior_for(state, &key);
    Ok((key, behavior))
}

/// The error response a misbehaving key gets, if any (timing behaviours of generate calls are
/// applied by the caller and return `None` here).
async fn key_failure(behavior: &Behavior, model: &str, generating: bool) -> Option<Response> {
    match behavior {
        Behavior::Invalid => Some(google_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            json!([
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                 "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "API key not valid. Please pass a valid API key."}
            ]),
        )),
        Behavior::PermissionDenied => Some(google_error(
            403,
            "PERMISSION_DENIED",
            "Permission denied: Consumer 'api_key:mock' has been suspended.",
            json!([
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CONSUMER_SUSPENDED", "domain": "googleapis.com"}
            ]),
        )),
        Behavior::ZeroQuota { model: only } if only.as_deref().is_none_or(|m| m == model) => Some(google_error(
            429,
            "RESOURCE_EXHAUSTED",
            &format!("You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: {model}"),
            json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": model}, "quotaValue": "0"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}
            ]),
        )),
        Behavior::ZeroQuota { .. } => None,
        Behavior::RateLimited {
            retry_delay_secs,
            per_day,
        } => {
            let quota_id = if *per_day {
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
            } else {
                "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
            };
            Some(google_error(429, "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
                json!([
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": model}, "quotaValue": "10"}]},
                    {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{retry_delay_secs}s")}
                ])))
        }
        Behavior::ServerError { code } => {
            let (status, message) = match code {
                500 => ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
                504 => ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
                _ => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
            };
            Some(google_error(*code, status, message, json!([])))
        }
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Some(google_error(504, "DEADLINE_EXCEEDED", "Deadline expired", json!([])))
        }
        Behavior::StallAfterHeaders if !generating => None,
        Behavior::Slow { delay_ms, .. } if !generating => {
            tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
            None
        }
        // Applied by `model_action` before it gets here; elsewhere the key answers normally.
        Behavior::Late { .. } => None,
        Behavior::Ok | Behavior::DropMidStream { .. } | Behavior::Slow { .. } | Behavior::StallAfterHeaders => None,
    }
}

fn model_json(name: &str) -> Value {
    let embedding = EMBEDDING_MODELS.contains(&name);
    json!({
        "name": format!("models/{name}"),
        "version": "001",
        "displayName": name,
        "description": format!("Mock of {name}"),
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": if embedding { 1 } else { 65_536 },
        "supportedGenerationMethods": if embedding { json!(["embedContent", "batchEmbedContents"]) }
            else { json!(["generateContent", "countTokens", "streamGenerateContent"]) },
    })
}

async fn list_models(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (_, behavior) = match authenticate(&state, &headers, &query, "models".into(), None) {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    if let Some(resp) = key_failure(&behavior, "", false).await {
        return resp;
    }
    let models: Vec<Value> = MODELS.iter().chain(EMBEDDING_MODELS).map(|m| model_json(m)).collect();
    Json(json!({ "models": models })).into_response()
}

async fn get_model(
    State(state): State<Arc<MockState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (_, behavior) = match authenticate(&state, &headers, &query, format!("models/{name}"), None) {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    if let Some(resp) = key_failure(&behavior, &name, false).await {
        return resp;
    }
    if MODELS.contains(&name.as_str()) || EMBEDDING_MODELS.contains(&name.as_str()) {
        Json(model_json(&name)).into_response()
    } else {
        not_found(&name)
    }
}

fn not_found(model: &str) -> Response {
    google_error(404, "NOT_FOUND", &format!("models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."), json!([]))
}

async fn model_action(
    State(state): State<Arc<MockState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (key, mut behavior) = match authenticate(&state, &headers, &query, format!("models/{name}"), parsed.as_ref()) {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    while let Behavior::Late { delay_ms, then } = behavior {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        behavior = *then;
    }
    let Some((model, action)) = name.split_once(':') else {
        return google_error(404, "NOT_FOUND", "Method not found.", json!([]));
    };
    let generating = matches!(action, "generateContent" | "streamGenerateContent");
    if behavior == Behavior::PermissionDenied {
        // Google names the consumer, key included, in this message, and repeats the message in
        // a LocalizedMessage detail.
        let message = format!("Permission denied: Consumer 'api_key:{key}' has been suspended.");
        return google_error(
            403,
            "PERMISSION_DENIED",
            &message,
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CONSUMER_SUSPENDED", "domain": "googleapis.com",
                    "metadata": {"consumer": format!("projects/mock-{}", fnv(key.as_bytes()) % 100_000), "service": "generativelanguage.googleapis.com"}},
                   {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}]),
        );
    }
    if let Some(resp) = key_failure(&behavior, model, generating).await {
        return resp;
    }
    let Some(req) = parsed else {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            &format!(
                "Invalid JSON payload received. Unexpected token.\n{}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            ),
            json!([]),
        );
    };
    let known = match action {
        "embedContent" | "batchEmbedContents" => EMBEDDING_MODELS.contains(&model),
        "predict" => IMAGEN_MODELS.contains(&model),
        "generateContent" | "streamGenerateContent" if TTS_MODELS.contains(&model) => true,
        _ => MODELS.contains(&model),
    };
    if !known {
        return not_found(model);
    }
    if let Some(resp) = state.resources.foreign(&key, &req) {
        return resp;
    }
    let (first_delay, delay) = match behavior {
        Behavior::Slow {
            delay_ms,
            first_event_ms,
        } => (
            Duration::from_millis(first_event_ms.unwrap_or(delay_ms)),
            Duration::from_millis(delay_ms),
        ),
        _ => (
            Duration::from_millis(state.first_event_delay_ms.load(Ordering::Relaxed)),
            Duration::from_millis(state.chunk_delay_ms.load(Ordering::Relaxed)),
        ),
    };
    if TTS_MODELS.contains(&model) {
        return match speech(&req) {
            Ok(answer) if action == "generateContent" => Json(answer).into_response(),
            Ok(answer) => stream_response(
                state.clone(),
                vec![answer],
                query.get("alt").is_some_and(|a| a == "sse"),
                (first_delay, delay),
                None,
            ),
            Err(resp) => resp,
        };
    }
    match action {
        "predict" => predict(&req),
        "generateContent" => match generate(&req, model) {
            Ok(events) => {
                if behavior == Behavior::StallAfterHeaders {
                    // Without a stream there are no early headers: silence.
                    std::future::pending::<()>().await;
                }
                // Headers only when the whole answer is ready, as Google sends them.
                let total = first_delay + delay * (events.len().saturating_sub(1) as u32);
                if !total.is_zero() {
                    tokio::time::sleep(total).await;
                }
                Json(merge_events(&events)).into_response()
            }
            Err(resp) => resp,
        },
        "streamGenerateContent" => match generate(&req, model) {
            Ok(events) => {
                let drop_after = match behavior {
                    Behavior::DropMidStream { after } => Some(after as usize),
                    Behavior::StallAfterHeaders => Some(usize::MAX),
                    _ => None,
                };
                stream_response(
                    state.clone(),
                    events,
                    query.get("alt").is_some_and(|a| a == "sse"),
                    (first_delay, delay),
                    drop_after,
                )
            }
            Err(resp) => resp,
        },
        "countTokens" => {
            let contents = req
                .get("contents")
                .or_else(|| req.pointer("/generateContentRequest/contents"));
            Json(json!({"totalTokens": contents.map(count_words).unwrap_or(0)})).into_response()
        }
        "embedContent" => {
            let dims = req.get("outputDimensionality").and_then(Value::as_u64).unwrap_or(8) as usize;
            Json(json!({"embedding": {"values": embed(req.get("content").unwrap_or(&Value::Null), dims)}}))
                .into_response()
        }
        "batchEmbedContents" => {
            let items = req
                .get("requests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let embeddings: Vec<Value> = items
                .iter()
                .map(|r| {
                    let dims = r.get("outputDimensionality").and_then(Value::as_u64).unwrap_or(8) as usize;
                    json!({"values": embed(r.get("content").unwrap_or(&Value::Null), dims)})
                })
                .collect();
            Json(json!({"embeddings": embeddings})).into_response()
        }
        _ => google_error(404, "NOT_FOUND", "Method not found.", json!([])),
    }
}

fn texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "text" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    texts(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| texts(i, out)),
        _ => {}
    }
}

fn count_words(v: &Value) -> u64 {
    let mut all = Vec::new();
    texts(v, &mut all);
    all.iter().map(|t| t.split_whitespace().count() as u64).sum()
}

/// Splits text into words that keep their trailing whitespace, so joined pieces give back the
/// text exactly (newlines included) while each piece is one stream event.
fn pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in text.chars() {
        if !c.is_whitespace() && in_space {
            out.push(std::mem::take(&mut current));
            in_space = false;
        }
        in_space |= c.is_whitespace();
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(1469598103934665603u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(1099511628211)
    })
}

fn embed(content: &Value, dims: usize) -> Vec<f64> {
    let mut all = Vec::new();
    texts(content, &mut all);
    let text = all.join(" ");
    let mut h: u64 = 1469598103934665603;
    (0..dims)
        .map(|i| {
            for b in text.bytes().chain([i as u8]) {
                h ^= b as u64;
                h = h.wrapping_mul(1099511628211);
            }
            ((h % 2000) as f64 / 1000.0) - 1.0
        })
        .collect()
}

/// Imagen's `:predict`: `sampleCount` images for the prompt (a prompt containing `[[block]]` is
/// filtered, as Imagen filters unsafe prompts: no predictions).
fn predict(req: &Value) -> Response {
    let Some(prompt) = req.pointer("/instances/0/prompt").and_then(Value::as_str) else {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "Missing required field: instances[0].prompt",
            json!([]),
        );
    };
    let n = req
        .pointer("/parameters/sampleCount")
        .and_then(Value::as_u64)
        .unwrap_or(4);
    if !(1..=4).contains(&n) {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "sampleCount must be between 1 and 4.",
            json!([]),
        );
    }
    if let Some(ratio) = req.pointer("/parameters/aspectRatio").and_then(Value::as_str) {
        if !["1:1", "3:4", "4:3", "9:16", "16:9"].contains(&ratio) {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                &format!("Unsupported aspect ratio: {ratio}"),
                json!([]),
            );
        }
    }
    if prompt.contains("[[block]]") {
        return Json(json!({})).into_response();
    }
    let predictions: Vec<Value> = (0..n)
        .map(|_| json!({"bytesBase64Encoded": PNG_1X1, "mimeType": "image/png"}))
        .collect();
    Json(json!({ "predictions": predictions })).into_response()
}

/// A TTS model's answer: 24 kHz 16-bit mono PCM, 0.1 s per word, in the voice asked for.
#[expect(clippy::result_large_err, reason = "the error is the response to send")]
fn speech(req: &Value) -> Result<Value, Response> {
    let modalities = req.pointer("/generationConfig/responseModalities");
    if modalities != Some(&json!(["AUDIO"])) {
        return Err(google_error(
            400,
            "INVALID_ARGUMENT",
            "The requested combination of response modalities (TEXT) is not supported by the model. models/gemini-2.5-flash-preview-tts accepts the following combination of response modalities:\n* AUDIO\n",
            json!([]),
        ));
    }
    let voice = req
        .pointer("/generationConfig/speechConfig/voiceConfig/prebuiltVoiceConfig/voiceName")
        .and_then(Value::as_str)
        .unwrap_or("Kore");
    if !VOICES.contains(&voice) {
        return Err(google_error(
            400,
            "INVALID_ARGUMENT",
            &format!("Voice name {voice} is not supported."),
            json!([]),
        ));
    }
    let words = req.get("contents").map(count_words).unwrap_or(0).max(1);
    let samples = (words * 2400) as usize;
    let mut pcm = Vec::with_capacity(samples * 2);
    for i in 0..samples {
        let v = ((i as f64 * 440.0 * std::f64::consts::TAU / 24_000.0).sin() * 8000.0) as i16;
        pcm.extend_from_slice(&v.to_le_bytes());
    }
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(pcm);
    Ok(
        json!({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "audio/L16;codec=pcm;rate=24000", "data": data}}], "role": "model"},
        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": words, "candidatesTokenCount": words * 25, "totalTokenCount": words * 26},
        "modelVersion": "gemini-2.5-flash-preview-tts"}),
    )
}

/// Gemini 3 validates the current turn (the model steps after the last user text): the first
/// function call of each step must carry its thought signature. The unsigned call's name and
/// 1-based content position, if any.
fn unsigned_call(contents: &[Value]) -> Option<(String, usize)> {
    let parts = |c: &Value| c.get("parts").and_then(Value::as_array).cloned().unwrap_or_default();
    let turn_start = contents
        .iter()
        .rposition(|c| {
            c.get("role").and_then(Value::as_str) != Some("model") && parts(c).iter().any(|p| p.get("text").is_some())
        })
        .unwrap_or(0);
    for (i, c) in contents.iter().enumerate().skip(turn_start) {
        if c.get("role").and_then(Value::as_str) != Some("model") {
            continue;
        }
        let first_call = parts(c).into_iter().find(|p| p.get("functionCall").is_some());
        if let Some(call) = first_call.filter(|p| p.get("thoughtSignature").is_none()) {
            let name = call
                .pointer("/functionCall/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Some((name, i + 1));
        }
    }
    None
}

/// The answer to a generate request, as the list of stream events Gemini would send.
#[expect(
    clippy::result_large_err,
    reason = "the error is the response to send; built once per request"
)]
fn generate(req: &Value, model: &str) -> Result<Vec<Value>, Response> {
    let contents = req.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty());
    let Some(contents) = contents else {
        return Err(google_error(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified\n",
            json!([]),
        ));
    };
    if model.starts_with("gemini-3") {
        if let Some((name, position)) = unsigned_call(contents) {
            return Err(google_error(
                400,
                "INVALID_ARGUMENT",
                &format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {position}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."),
                json!([]),
            ));
        }
    }
    let prompt_tokens =
        count_words(&Value::Array(contents.clone())) + req.get("systemInstruction").map(count_words).unwrap_or(0);
    let last = contents.last().cloned().unwrap_or(Value::Null);
    let parts = last.get("parts").and_then(Value::as_array).cloned().unwrap_or_default();
    let last_text: String = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let tool_result = parts.iter().find_map(|p| p.get("functionResponse")).cloned();
    let config = req.get("generationConfig").cloned().unwrap_or(Value::Null);
    let max_tokens = config
        .get("maxOutputTokens")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let candidates = config
        .get("candidateCount")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 8) as usize;
    let version = json!(model);
    // Deterministic per request, so identical requests get byte-identical answers.
    let response_id = format!("mock{:016x}", fnv(req.to_string().as_bytes()));

    if last_text.contains("[[block]]") {
        return Ok(vec![
            json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}, "modelVersion": version, "responseId": response_id}),
        ]);
    }
    if last_text.contains("[[empty]]") {
        return Ok(vec![
            json!({"candidates": [{"content": {"parts": [], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}, "modelVersion": version, "responseId": response_id}),
        ]);
    }

    let reply = match &tool_result {
        Some(r) => format!(
            "The tool {} returned {}",
            r.get("name").and_then(Value::as_str).unwrap_or("?"),
            r.get("response").unwrap_or(&Value::Null)
        ),
        None => format!("Echo: {}", last_text.trim()),
    };
    let mut words = pieces(&reply);
    let mut finish = "STOP";
    if last_text.contains("[[safety]]") {
        finish = "SAFETY";
        words.truncate(2);
    }
    if let Some(max) = max_tokens {
        if words.len() > max {
            words.truncate(max);
            finish = "MAX_TOKENS";
        }
    }
    if let Some(last) = words.last_mut() {
        *last = last.trim_end().to_string();
    }
    let thinks = last_text.contains("[[think]]");
    let thoughts_tokens = if thinks { 3 } else { 0 };
    let tool = last_text
        .split("[[tool:")
        .nth(1)
        .and_then(|rest| rest.split("]]").next())
        .map(str::to_string);
    let image = last_text.contains("[[image]]")
        || config
            .get("responseModalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|v| v == "IMAGE"));

    let mut events = Vec::new();
    if thinks {
        events.push(json!({"candidates": (0..candidates).map(|i| json!({"content": {"parts": [{"text": "Thinking it over.", "thought": true}], "role": "model"}, "index": i})).collect::<Vec<_>>(),
            "modelVersion": version, "responseId": response_id}));
    }
    let n = words.len();
    for (w, word) in words.iter().enumerate() {
        let text = word.clone();
        events.push(json!({"candidates": (0..candidates).map(|i| {
            let text = if candidates > 1 && w == 0 { format!("[{i}] {text}") } else { text.clone() };
            json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": i})
        }).collect::<Vec<_>>(), "modelVersion": version, "responseId": response_id}));
    }
    if let Some(name) = tool {
        events.push(json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": name, "args": {"city": "Paris"}}, "thoughtSignature": "bW9jay1zaWduYXR1cmU="}], "role": "model"}, "index": 0}],
            "modelVersion": version, "responseId": response_id}));
    }
    if image {
        events.push(json!({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_1X1}}], "role": "model"}, "index": 0}],
            "modelVersion": version, "responseId": response_id}));
    }
    let completion = (n * candidates) as u64;
    let usage = json!({"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion, "thoughtsTokenCount": thoughts_tokens,
        "totalTokenCount": prompt_tokens + completion + thoughts_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]});
    // The last event carries the finish reason and the usage, as Gemini's does.
    let finals: Vec<Value> = (0..candidates)
        .map(|i| json!({"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": finish, "index": i}))
        .collect();
    match events.last_mut() {
        Some(last) => {
            if let Some(cands) = last.get_mut("candidates").and_then(Value::as_array_mut) {
                for c in cands.iter_mut() {
                    c["finishReason"] = json!(finish);
                }
                let have: Vec<u64> = cands
                    .iter()
                    .filter_map(|c| c.get("index").and_then(Value::as_u64))
                    .collect();
                for f in finals {
                    if !have.contains(&f["index"].as_u64().unwrap_or(0)) {
                        cands.push(f);
                    }
                }
            }
            last["usageMetadata"] = usage;
            if config.get("responseLogprobs") == Some(&json!(true)) {
                let chosen: Vec<Value> = words
                    .iter()
                    .map(|w| json!({"token": w.trim(), "logProbability": -0.25}))
                    .collect();
                let top: Vec<Value> = words
                    .iter()
                    .map(|w| json!({"candidates": [{"token": w.trim(), "logProbability": -0.25}, {"token": "alt", "logProbability": -3.5}]}))
                    .collect();
                last["candidates"][0]["logprobsResult"] = json!({"topCandidates": top, "chosenCandidates": chosen});
            }
            let search = req
                .get("tools")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|t| t.get("googleSearch").is_some()));
            if search {
                last["candidates"][0]["groundingMetadata"] = json!({
                    "webSearchQueries": [last_text],
                    "groundingChunks": [{"web": {"uri": "https://example.com/source", "title": "example.com"}}],
                    "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": 5, "text": "Echo:"}, "groundingChunkIndices": [0]}]
                });
            }
        }
        None => events.push(
            json!({"candidates": finals, "usageMetadata": usage, "modelVersion": version, "responseId": response_id}),
        ),
    }
    Ok(events)
}

/// Folds stream events into one `generateContent` response.
fn merge_events(events: &[Value]) -> Value {
    let mut candidates: Vec<Value> = Vec::new();
    let mut out = json!({});
    for ev in events {
        for c in ev.get("candidates").and_then(Value::as_array).into_iter().flatten() {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            while candidates.len() <= idx {
                candidates.push(json!({"content": {"parts": [], "role": "model"}, "index": candidates.len()}));
            }
            let target = &mut candidates[idx];
            for p in c
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if p.get("text").and_then(Value::as_str) == Some("") {
                    continue;
                }
                let parts = target.pointer_mut("/content/parts").and_then(Value::as_array_mut);
                if let Some(parts) = parts {
                    let merge = p.get("text").is_some()
                        && parts
                            .last()
                            .is_some_and(|l| l.get("text").is_some() && l.get("thought") == p.get("thought"));
                    if merge {
                        if let (Some(last), Some(t)) = (parts.last_mut(), p.get("text").and_then(Value::as_str)) {
                            let joined = format!("{}{t}", last["text"].as_str().unwrap_or(""));
                            last["text"] = json!(joined);
                        }
                    } else {
                        parts.push(p.clone());
                    }
                }
            }
            // Everything else on the candidate (finishReason, logprobsResult, groundingMetadata…).
            for (k, v) in c.as_object().into_iter().flatten() {
                if k != "content" && k != "index" {
                    target[k.as_str()] = v.clone();
                }
            }
        }
        for key in ["usageMetadata", "modelVersion", "responseId", "promptFeedback"] {
            if let Some(v) = ev.get(key) {
                out[key] = v.clone();
            }
        }
    }
    if !candidates.is_empty() {
        out["candidates"] = json!(candidates);
    }
    out
}

/// Counts a stream as cancelled if it is dropped before its last event was sent.
struct StreamGuard {
    state: Arc<MockState>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.finished {
            self.state.streams_completed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.state.streams_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `drop_after`: break the connection before event `n` (`usize::MAX`: go silent after the
/// headers instead). `delays`: before the first event, and between the others.
fn stream_response(
    state: Arc<MockState>,
    events: Vec<Value>,
    sse: bool,
    delays: (Duration, Duration),
    drop_after: Option<usize>,
) -> Response {
    state.streams_started.fetch_add(1, Ordering::Relaxed);
    let guard = StreamGuard { state, finished: false };
    let total = events.len();
    let (first_delay, delay) = delays;
    let stream = futures::stream::unfold(
        (events.into_iter().enumerate(), guard),
        move |(mut it, mut guard)| async move {
            let (i, ev) = it.next()?;
            if drop_after == Some(usize::MAX) {
                std::future::pending::<()>().await;
            }
            let wait = if i == 0 { first_delay } else { delay };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if drop_after == Some(i) {
                return Some((
                    Err(std::io::Error::other("mock: connection dropped mid-stream")),
                    (it, guard),
                ));
            }
            let json = ev.to_string();
            let frame = if sse {
                format!("data: {json}\r\n\r\n")
            } else if i == 0 {
                if total == 1 {
                    format!("[{json}]")
                } else {
                    format!("[{json}")
                }
            } else if i + 1 == total {
                format!(",\r\n{json}]")
            } else {
                format!(",\r\n{json}")
            };
            if i + 1 == total {
                guard.finished = true;
            }
            Some((Ok::<_, std::io::Error>(Bytes::from(frame)), (it, guard)))
        },
    );
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json; charset=UTF-8"
    };
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn control_set(
    State(state): State<Arc<MockState>>,
    Path(key): Path<String>,
    Json(rule): Json<Rule>,
) -> StatusCode {
    lock(&state.rules).insert(key, rule);
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct Timing {
    #[serde(default)]
    first_event_ms: u64,
    #[serde(default)]
    between_ms: u64,
}

/// `POST /mock/timing {"first_event_ms", "between_ms"}`: delays for every key.
async fn control_timing(State(state): State<Arc<MockState>>, Json(t): Json<Timing>) -> StatusCode {
    state.first_event_delay_ms.store(t.first_event_ms, Ordering::Relaxed);
    state.chunk_delay_ms.store(t.between_ms, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn control_stats(State(state): State<Arc<MockState>>) -> Json<Value> {
    let mut v = serde_json::to_value(lock(&state.stats).clone()).unwrap_or_default();
    v["streams_started"] = json!(state.streams_started.load(Ordering::Relaxed));
    v["streams_completed"] = json!(state.streams_completed.load(Ordering::Relaxed));
    v["streams_cancelled"] = json!(state.streams_cancelled.load(Ordering::Relaxed));
    Json(v)
}
