//! The gateway's one error type, with its HTTP status and its rendering in OpenAI's and Google's
//! error shapes. Messages never contain a pool key (upstream text is redacted before it lands here).

use std::time::Duration;

use super::{gemini, openai};

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The client's request is malformed or unsupported (400).
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
    /// No key can take the request now (503, or 429 when every key is rate-limited).
    #[error("no Gemini API key is available right now ({total_keys} configured); retry in {}s", retry_after_secs(*.retry_after))]
    NoKeyAvailable {
        retry_after: Option<Duration>,
        all_rate_limited: bool,
        total_keys: usize,
    },
    /// The call names a file or cached content whose owning key cannot take it now (or is gone).
    #[error("{message}")]
    OwnerUnavailable {
        message: String,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
    /// A model name of another vendor that no `MODEL_ALIASES` entry maps to a Gemini model.
    #[error("The model `{model}` does not exist on this gateway: it serves Gemini models. Map it to one with MODEL_ALIASES (e.g. MODEL_ALIASES=\"{model}=gemini-2.5-flash\"), or ask for a Gemini model.")]
    UnknownModel { model: String },
    /// Every key has a quota of 0 for this model: Google does not offer it to the pool's keys.
    #[error("The model `{model}` is not available to any key in the pool: Google reports a quota limit of 0 for it (tier or region). Validate the keys after upgrading them.")]
    ModelUnavailable { model: String },
    /// Google rejected the request for its content (4xx that is the client's fault): passed on.
    #[error("{}", .error.error.message)]
    UpstreamRejected { status: u16, error: gemini::ErrorBody },
    /// Every attempt failed for key or server reasons.
    #[error("{message}")]
    UpstreamFailed {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The prompt was blocked by Gemini's safety filters (400, code `content_filter`).
    #[error("{message}")]
    ContentBlocked { message: String },
    /// The request body is over `MAX_BODY_BYTES` (413).
    #[error("{message}")]
    PayloadTooLarge { message: String },
    /// Google answered with something we could not read (502).
    #[error("{message}")]
    BadUpstreamResponse { message: String },
}

/// Whole seconds for a `Retry-After` header: at least 1.
pub fn retry_after_secs(d: Option<Duration>) -> u64 {
    d.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64)
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    /// Short machine-readable class for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::NoKeyAvailable { .. } => "no_key_available",
            GatewayError::OwnerUnavailable { .. } => "owner_unavailable",
            GatewayError::ModelUnavailable { .. } => "model_unavailable",
            GatewayError::UnknownModel { .. } => "model_not_found",
            GatewayError::UpstreamRejected { .. } => "upstream_rejected",
            GatewayError::UpstreamFailed { status: 429, .. } => "rate_limited",
            GatewayError::UpstreamFailed { status: 504, .. } => "upstream_timeout",
            GatewayError::UpstreamFailed { .. } => "upstream_failed",
            GatewayError::ContentBlocked { .. } => "content_filter",
            GatewayError::BadUpstreamResponse { .. } => "bad_upstream_response",
            GatewayError::PayloadTooLarge { .. } => "too_large",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            GatewayError::InvalidRequest { .. } | GatewayError::ContentBlocked { .. } => 400,
            GatewayError::NoKeyAvailable {
                all_rate_limited: true, ..
            } => 429,
            GatewayError::NoKeyAvailable { .. } => 503,
            GatewayError::OwnerUnavailable { rate_limited: true, .. } => 429,
            GatewayError::OwnerUnavailable { .. } => 503,
            GatewayError::ModelUnavailable { .. } | GatewayError::UnknownModel { .. } => 404,
            GatewayError::UpstreamRejected { status, .. } | GatewayError::UpstreamFailed { status, .. } => *status,
            GatewayError::BadUpstreamResponse { .. } => 502,
            GatewayError::PayloadTooLarge { .. } => 413,
        }
    }

    /// Seconds the client should wait, for a `Retry-After` header.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::NoKeyAvailable { retry_after, .. } => Some(retry_after_secs(*retry_after)),
            GatewayError::OwnerUnavailable {
                retry_after: Some(d), ..
            } => Some(retry_after_secs(Some(*d))),
            GatewayError::UpstreamFailed {
                retry_after: Some(d), ..
            } => Some(retry_after_secs(Some(*d))),
            _ => None,
        }
    }

    pub fn to_openai(&self) -> openai::ErrorBody {
        let (kind, code, param) = match self {
            GatewayError::InvalidRequest { param, .. } => ("invalid_request_error", None, param.clone()),
            GatewayError::PayloadTooLarge { .. } => ("invalid_request_error", Some("request_too_large"), None),
            GatewayError::ContentBlocked { .. } => ("invalid_request_error", Some("content_filter"), None),
            GatewayError::NoKeyAvailable {
                all_rate_limited: true, ..
            } => ("rate_limit_error", Some("rate_limit_exceeded"), None),
            GatewayError::NoKeyAvailable { .. } => ("service_unavailable", Some("no_key_available"), None),
            GatewayError::OwnerUnavailable { rate_limited: true, .. } => {
                ("rate_limit_error", Some("rate_limit_exceeded"), None)
            }
            GatewayError::OwnerUnavailable { .. } => ("service_unavailable", Some("owner_key_unavailable"), None),
            GatewayError::ModelUnavailable { .. } | GatewayError::UnknownModel { .. } => (
                "invalid_request_error",
                Some("model_not_found"),
                Some("model".to_string()),
            ),
            GatewayError::UpstreamRejected { status: 404, .. } => {
                ("invalid_request_error", Some("model_not_found"), None)
            }
            GatewayError::UpstreamRejected { .. } => ("invalid_request_error", None, None),
            GatewayError::UpstreamFailed { status: 429, .. } => ("rate_limit_error", Some("rate_limit_exceeded"), None),
            GatewayError::UpstreamFailed { status: 504, .. } => ("upstream_error", Some("upstream_timeout"), None),
            GatewayError::UpstreamFailed { .. } | GatewayError::BadUpstreamResponse { .. } => {
                ("upstream_error", Some("upstream_error"), None)
            }
        };
        let code = match self {
            GatewayError::UpstreamRejected { error, .. } if code.is_none() && !error.error.status.is_empty() => {
                Some(error.error.status.clone())
            }
            _ => code.map(str::to_string),
        };
        openai::ErrorBody {
            error: openai::ErrorDetail {
                message: self.to_string(),
                kind: kind.to_string(),
                param,
                code,
            },
        }
    }

    pub fn to_google(&self) -> gemini::ErrorBody {
        if let GatewayError::UpstreamRejected { error, .. } = self {
            return error.clone();
        }
        let status = match self.status() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        };
        let mut body = gemini::ErrorBody::new(self.status(), status, self.to_string());
        if let Some(secs) = self.retry_after() {
            body.error.details.push(serde_json::json!({
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{secs}s"),
            }));
        }
        body
    }
}
