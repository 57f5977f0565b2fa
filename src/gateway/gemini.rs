//! Gemini REST wire types (`generateContent`, `streamGenerateContent`, models, errors) and the
//! classification of upstream errors into pool [`Outcome`]s.
//!
//! Types keep fields they do not model in a flattened `extra` map, so nothing is lost when a
//! value is read and written back.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pool::{FailureClass, Outcome, RetryAfter, MAX_WAIT};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    pub contents: Vec<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_settings: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part of a content. Gemini's `Part` is a union; the fields are optional and at most one of
/// the data fields is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part {
            text: Some(text.into()),
            ..Default::default()
        }
    }
    pub fn is_thought(&self) -> bool {
        self.thought == Some(true)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    pub mime_type: String,
    pub data: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub file_uri: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub response: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FinishReason {
    FinishReasonUnspecified,
    Stop,
    MaxTokens,
    Safety,
    Recitation,
    Language,
    Other,
    Blocklist,
    ProhibitedContent,
    Spii,
    MalformedFunctionCall,
    ImageSafety,
    UnexpectedToolCall,
    TooManyToolCalls,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_reason_message: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u32,
    #[serde(default)]
    pub candidates_token_count: u32,
    #[serde(default)]
    pub thoughts_token_count: u32,
    #[serde(default)]
    pub cached_content_token_count: u32,
    #[serde(default)]
    pub total_token_count: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelList {
    #[serde(default)]
    pub models: Vec<Model>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub supported_generation_methods: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Google's error body: `{"error": {"code", "message", "status", "details": [...]}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ErrorStatus {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Value>,
}

impl ErrorBody {
    pub fn new(code: u16, status: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorStatus {
                code,
                message: message.into(),
                status: status.to_string(),
                details: Vec::new(),
            },
        }
    }

    fn detail<'a>(&'a self, type_suffix: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.error.details.iter().filter(move |d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(type_suffix))
        })
    }

    /// `ErrorInfo.reason`, e.g. `API_KEY_INVALID`.
    pub fn reason(&self) -> Option<&str> {
        self.detail("google.rpc.ErrorInfo")
            .find_map(|d| d.get("reason").and_then(Value::as_str))
    }

    /// `RetryInfo.retryDelay` ("43s", "1.5s").
    pub fn retry_delay(&self) -> Option<Duration> {
        self.detail("google.rpc.RetryInfo")
            .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
            .and_then(parse_duration)
    }

    /// The `quotaId`s, whether any violation names a model, and whether any limit is 0, from
    /// `QuotaFailure`.
    fn quota_violations(&self) -> (Vec<&str>, bool, bool) {
        let mut ids = Vec::new();
        let mut per_model = false;
        let mut zero = false;
        for d in self.detail("google.rpc.QuotaFailure") {
            for v in d.get("violations").and_then(Value::as_array).into_iter().flatten() {
                if let Some(id) = v.get("quotaId").and_then(Value::as_str) {
                    ids.push(id);
                    per_model |= id.contains("PerModel");
                }
                per_model |= v.pointer("/quotaDimensions/model").is_some();
                zero |= match v.get("quotaValue") {
                    Some(Value::String(q)) => q.trim() == "0",
                    Some(Value::Number(n)) => n.as_f64() == Some(0.0),
                    _ => false,
                };
            }
        }
        (ids, per_model, zero)
    }

    /// Whether a 403 is about the key or its project rather than about the request: Google says
    /// so in `ErrorInfo.reason`, or (for callers without a key) in the message.
    pub fn is_key_scoped_denial(&self) -> bool {
        const KEY_REASONS: &[&str] = &[
            "API_KEY_INVALID",
            "API_KEY_EXPIRED",
            "API_KEY_SERVICE_BLOCKED",
            "API_KEY_HTTP_REFERRER_BLOCKED",
            "API_KEY_IP_ADDRESS_BLOCKED",
            "API_KEY_ANDROID_APP_BLOCKED",
            "API_KEY_IOS_APP_BLOCKED",
            "CONSUMER_SUSPENDED",
            "CONSUMER_INVALID",
            "SERVICE_DISABLED",
            "BILLING_DISABLED",
            "PROJECT_DENIED",
        ];
        if self.reason().is_some_and(|r| KEY_REASONS.contains(&r)) {
            return true;
        }
        let m = self.error.message.to_ascii_lowercase();
        m.contains("unregistered callers")
            || m.contains("api key was reported as leaked")
            || m.contains("api key not valid")
            || m.contains("api key expired")
    }
}

/// Parses a protobuf JSON `Duration` ("43s", "0.250s"), clamped to [`MAX_WAIT`] so that no
/// value Google (or anyone on the path) sends can overflow time arithmetic.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
}

/// Decides what an upstream error response says about the key that got it.
pub fn classify(status: u16, body: &[u8]) -> (Outcome, ErrorBody) {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let text: String = text.chars().take(500).collect();
        ErrorBody::new(
            status,
            "",
            if text.trim().is_empty() {
                format!("upstream returned HTTP {status}")
            } else {
                text
            },
        )
    });
    let message = parsed.error.message.clone();
    let reason = parsed.reason().unwrap_or("");
    let outcome = match status {
        400 if reason.starts_with("API_KEY_") => Outcome::InvalidKey { message },
        401 => Outcome::InvalidKey { message },
        403 if parsed.is_key_scoped_denial() => Outcome::PermissionDenied { message },
        // Any other 403 is about the request (a file or cache of another project): not the key's.
        403 => Outcome::ClientError,
        429 if parsed.quota_violations().2 || message.contains("limit: 0,") || message.ends_with("limit: 0") => {
            Outcome::ModelUnavailable { message }
        }
        429 => {
            let (ids, per_model, _) = parsed.quota_violations();
            let daily = ids.iter().any(|id| id.contains("PerDay"));
            let retry_after = match parsed.retry_delay() {
                // A per-day quota comes back after the daily reset, whatever the hint says.
                _ if daily => RetryAfter::DailyReset,
                Some(d) => RetryAfter::Delay(d),
                None => RetryAfter::Unspecified,
            };
            Outcome::RateLimited {
                retry_after,
                per_model,
                message,
            }
        }
        500..=599 => Outcome::Transient {
            class: FailureClass::ServerError,
            message,
        },
        408 => Outcome::Transient {
            class: FailureClass::Timeout,
            message,
        },
        _ => Outcome::ClientError,
    };
    (outcome, parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invalid_key_from_error_info() {
        let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID", "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"}}]}});
        let (o, e) = classify(400, body.to_string().as_bytes());
        assert!(matches!(o, Outcome::InvalidKey { .. }));
        assert_eq!(e.error.status, "INVALID_ARGUMENT");
    }

    #[test]
    fn plain_bad_request_is_the_clients_fault() {
        let body =
            json!({"error": {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}});
        assert_eq!(classify(400, body.to_string().as_bytes()).0, Outcome::ClientError);
        let body = json!({"error": {"code": 404, "message": "models/nope is not found", "status": "NOT_FOUND"}});
        assert_eq!(classify(404, body.to_string().as_bytes()).0, Outcome::ClientError);
    }

    #[test]
    fn rate_limit_reads_retry_info_and_quota_scope() {
        let body = json!({"error": {"code": 429, "message": "You exceeded your current quota",
            "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"}, "quotaValue": "15"}]},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "43s"}]}});
        let (o, _) = classify(429, body.to_string().as_bytes());
        assert_eq!(
            o,
            Outcome::RateLimited {
                retry_after: RetryAfter::Delay(Duration::from_secs(43)),
                per_model: true,
                message: "You exceeded your current quota".into()
            }
        );
    }

    #[test]
    fn per_day_quota_waits_for_the_daily_reset() {
        let body = json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}});
        let (o, _) = classify(429, body.to_string().as_bytes());
        assert!(matches!(
            o,
            Outcome::RateLimited {
                retry_after: RetryAfter::DailyReset,
                per_model: true,
                ..
            }
        ));
    }

    #[test]
    fn server_errors_and_garbage_bodies_are_transient() {
        assert!(matches!(
            classify(503, b"<html>oops</html>").0,
            Outcome::Transient { .. }
        ));
        let (o, e) = classify(500, b"");
        assert!(o.is_retryable());
        assert_eq!(e.error.message, "upstream returned HTTP 500");
        assert_eq!(classify(403, b"{}").0, Outcome::ClientError);
    }

    #[test]
    fn only_key_scoped_403s_blame_the_key() {
        let suspended = json!({"error": {"code": 403, "message": "Permission denied: Consumer 'api_key:AIzaX' has been suspended.",
            "status": "PERMISSION_DENIED", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CONSUMER_SUSPENDED"}]}});
        assert!(matches!(
            classify(403, suspended.to_string().as_bytes()).0,
            Outcome::PermissionDenied { .. }
        ));
        let disabled = json!({"error": {"code": 403, "message": "Generative Language API has not been used in project 1 before or it is disabled.",
            "status": "PERMISSION_DENIED", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}]}});
        assert!(matches!(
            classify(403, disabled.to_string().as_bytes()).0,
            Outcome::PermissionDenied { .. }
        ));
        let unregistered = json!({"error": {"code": 403, "message": "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", "status": "PERMISSION_DENIED"}});
        assert!(matches!(
            classify(403, unregistered.to_string().as_bytes()).0,
            Outcome::PermissionDenied { .. }
        ));
        let file = json!({"error": {"code": 403, "message": "You do not have permission to access the File abc123 or it may not exist.", "status": "PERMISSION_DENIED"}});
        assert_eq!(classify(403, file.to_string().as_bytes()).0, Outcome::ClientError);
        let cache = json!({"error": {"code": 403, "message": "CachedContent not found (or permission denied)", "status": "PERMISSION_DENIED"}});
        assert_eq!(classify(403, cache.to_string().as_bytes()).0, Outcome::ClientError);
    }

    #[test]
    fn zero_quota_is_model_unavailable_not_a_wait() {
        let body = json!({"error": {"code": 429, "message": "You exceeded your current quota. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro",
            "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                    "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": "gemini-2.5-pro"}, "quotaValue": "0"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}]}});
        assert!(matches!(
            classify(429, body.to_string().as_bytes()).0,
            Outcome::ModelUnavailable { .. }
        ));
    }

    #[test]
    fn absurd_retry_delays_are_clamped() {
        assert_eq!(parse_duration("1e30s"), Some(MAX_WAIT));
        assert_eq!(parse_duration("inf s"), None);
        assert_eq!(parse_duration("NaNs"), None);
    }

    #[test]
    fn durations_parse_like_protobuf() {
        assert_eq!(parse_duration("43s"), Some(Duration::from_secs(43)));
        assert_eq!(parse_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn parts_keep_unknown_fields_and_signatures() {
        let raw = json!({"text": "hi", "thoughtSignature": "c2ln", "videoMetadata": {"fps": 1}});
        let p: Part = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(p.thought_signature.as_deref(), Some("c2ln"));
        assert_eq!(serde_json::to_value(&p).unwrap(), raw);
    }

    #[test]
    fn unknown_finish_reasons_do_not_fail_parsing() {
        let c: Candidate = serde_json::from_value(json!({"finishReason": "SOMETHING_NEW", "index": 0})).unwrap();
        assert_eq!(c.finish_reason, Some(FinishReason::Unknown));
    }
}
