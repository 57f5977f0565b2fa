//! Types of the admin JSON API (`/admin/api/…`), shared by the server and the admin page.

use serde::{Deserialize, Serialize};

/// One key as the admin view shows it: masked, never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    /// Stable id (first 12 hex digits of the key's SHA-256).
    pub id: String,
    pub masked: String,
    /// active, half_open, cooling_down, rate_limited, disabled, probing, manual_disabled.
    pub state: String,
    /// Seconds until the key is expected back, when it is waiting.
    pub available_in_secs: Option<u64>,
    pub reason: Option<KeyReason>,
    pub consecutive_failures: u32,
    pub rate_limited_models: Vec<String>,
    /// Models this key has a quota of 0 for (out for them until re-validated).
    #[serde(default)]
    pub unavailable_models: Vec<String>,
    pub requests_hour: u32,
    pub success_rate_hour: Option<f64>,
    pub requests_day: u32,
    pub success_rate_day: Option<f64>,
    pub avg_latency_ms_hour: Option<u64>,
    pub tokens_total: u64,
    pub requests_total: u64,
    /// Seconds since the Unix epoch.
    pub last_used: Option<u64>,
    /// The egress proxy this key goes through, as `host:port` (never its credentials); `None`
    /// when no proxies are configured.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Whether an operator pinned the key to that proxy (otherwise a hash of the key chose it).
    #[serde(default)]
    pub proxy_pinned: bool,
}

/// One egress proxy (`GEMINI_PROXIES`) as the admin view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyView {
    /// Position in `GEMINI_PROXIES`, from 0.
    pub index: usize,
    /// `host:port` only: credentials in the URL are never shown.
    pub host: String,
    /// Keys going through this proxy now.
    pub keys: usize,
    /// Requests that failed to get through this proxy, and that did, since start.
    pub failures: u64,
    pub successes: u64,
    pub consecutive_failures: u32,
    /// Seconds until keys behind it are tried first again, while it cools down after failures.
    pub cooling_in_secs: Option<u64>,
    pub last_error: Option<KeyReason>,
}

/// A proxy named by its index in `GEMINI_PROXIES` or its `host:port`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProxyRef {
    Index(usize),
    Host(String),
}

/// Body of `POST /admin/api/keys/{id}/proxy`: pin the key to a proxy, or `null` to return it
/// to the proxy its hash chooses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinProxy {
    pub proxy: Option<ProxyRef>,
}

/// The last error a key saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyReason {
    pub class: String,
    pub message: String,
    pub at: u64,
}

/// Pool-wide figures for the admin view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSummary {
    pub keys_total: usize,
    pub keys_by_state: Vec<(String, usize)>,
    pub requests_last_minute: u32,
    pub requests_last_hour: u32,
    pub success_rate_last_hour: Option<f64>,
    /// Upstream attempts by outcome class since start.
    pub attempts_by_outcome: Vec<(String, u64)>,
    /// Requests per minute over the last hour, oldest first.
    pub timeline: Vec<u32>,
    /// With several replicas sharing the pool (Redis): the replica serving this page, and
    /// whether it reaches Redis now.
    #[serde(default)]
    pub replica: Option<ReplicaInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    pub name: String,
    pub redis_up: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddKeys {
    /// Keys separated by commas, spaces or new lines.
    pub keys: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddKeysResult {
    pub added: usize,
    pub duplicates: usize,
}

/// Progress of a "validate all" run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationProgress {
    pub running: bool,
    pub done: usize,
    pub total: usize,
    pub working: usize,
    pub failing: usize,
    /// Probes that told nothing (Google busy, slow or unreachable): those keys kept their state.
    #[serde(default)]
    pub inconclusive: usize,
}

/// Filters and paging of `GET /admin/api/logs` (all optional; they combine with AND).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogQuery {
    /// Seconds since the Unix epoch, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Seconds since the Unix epoch, exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    /// The masked key (`AIza…x7Q`) or the key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The route pattern, e.g. `/v1/chat/completions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// The `next` cursor of the previous page: rows older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Rows per page (default 50, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One request of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: i64,
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub request_id: String,
    pub route: String,
    pub model: String,
    /// The key that served (or last tried), masked.
    pub key: String,
    pub status: u16,
    pub latency_ms: u64,
    pub tokens: u64,
    /// Empty for a success.
    pub error_class: String,
    /// How many upstream attempts the request made.
    pub attempts: u32,
}

/// A page of the log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    pub rows: Vec<LogEntry>,
    /// Cursor for the next (older) page, when there may be one.
    pub next: Option<String>,
}

/// One upstream attempt of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogAttempt {
    /// Masked.
    pub key: String,
    pub outcome: String,
    pub status: u16,
    pub latency_ms: u64,
}

/// One request with its error message (keys masked) and its attempts in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogDetail {
    pub entry: LogEntry,
    pub message: String,
    pub attempts: Vec<LogAttempt>,
}

/// One hour of a key's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourStats {
    /// Start of the hour, seconds since the Unix epoch.
    pub start: u64,
    pub requests: u64,
    pub errors: u64,
}

/// A key's requests over the last 24 hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyStats {
    pub id: String,
    pub masked: String,
    pub requests: u64,
    pub errors: u64,
    /// Error class → requests, most frequent first.
    pub errors_by_class: Vec<(String, u64)>,
    /// 24 hourly buckets, oldest first.
    pub hours: Vec<HourStats>,
}
