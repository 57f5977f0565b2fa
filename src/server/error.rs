//! HTTP rendering of gateway errors: OpenAI's `{"error":{…}}` shape on OpenAI routes, Google's on
//! Gemini routes, with the right status and a `Retry-After` header when waiting helps.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::gateway::error::GatewayError;
use crate::gateway::openai;

/// An error answered in OpenAI's shape.
#[derive(Debug)]
pub struct ApiError(pub GatewayError);

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        ApiError(e)
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// Notes the error's class, and its message unless an upstream attempt left Google's, in the
/// request's trace (for metrics and the request log).
fn note(e: &GatewayError) {
    crate::gateway::metrics::RequestTrace::update(|t| {
        t.error_class = Some(e.class());
        if t.message.is_none() {
            t.message = Some(crate::gateway::upstream::cap_message(&e.to_string()));
        }
    });
}

fn with_retry_after(mut resp: Response, e: &GatewayError) -> Response {
    if let Some(secs) = e.retry_after() {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        note(&self.0);
        let resp = (status(self.0.status()), Json(self.0.to_openai())).into_response();
        with_retry_after(resp, &self.0)
    }
}

/// An error answered in Google's shape.
#[derive(Debug)]
pub struct GoogleError(pub GatewayError);

impl From<GatewayError> for GoogleError {
    fn from(e: GatewayError) -> Self {
        GoogleError(e)
    }
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        note(&self.0);
        let resp = (status(self.0.status()), Json(self.0.to_google())).into_response();
        with_retry_after(resp, &self.0)
    }
}

/// An error answered in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
#[derive(Debug)]
pub struct AnthropicError(pub GatewayError);

impl From<GatewayError> for AnthropicError {
    fn from(e: GatewayError) -> Self {
        AnthropicError(e)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        note(&self.0);
        let code = self.0.status();
        let body = crate::gateway::translate::anthropic::ErrorBody::new(code, self.0.to_string());
        let resp = (status(code), Json(body)).into_response();
        with_retry_after(resp, &self.0)
    }
}

/// An Anthropic-shaped error that is not a gateway error (auth, routing).
pub fn anthropic_error(code: StatusCode, message: impl Into<String>) -> Response {
    let body = crate::gateway::translate::anthropic::ErrorBody::new(code.as_u16(), message);
    (code, Json(body)).into_response()
}

/// An OpenAI-shaped error that is not a gateway error (auth, routing).
pub fn openai_error(code: StatusCode, message: impl Into<String>, kind: &str, error_code: Option<&str>) -> Response {
    let body = openai::ErrorBody {
        error: openai::ErrorDetail {
            message: message.into(),
            kind: kind.to_string(),
            param: None,
            code: error_code.map(str::to_string),
        },
    };
    (code, Json(body)).into_response()
}

/// Reads a JSON body into `T`, turning every failure into a 400 (or 413 for an oversized body)
/// whose message and `param` name the offending field.
pub fn parse_body<T: DeserializeOwned>(body: Result<bytes::Bytes, BytesRejection>) -> Result<T, GatewayError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            GatewayError::PayloadTooLarge {
                message: "The request body is larger than MAX_BODY_BYTES allows".into(),
            }
        } else {
            GatewayError::invalid(format!("Could not read the request body: {rejection}"), None)
        }
    })?;
    if bytes.is_empty() {
        return Err(GatewayError::invalid(
            "The request body is empty; expected a JSON object",
            None,
        ));
    }
    // Read without tracking the path first: tracking costs an allocation per key, and only a
    // refused body needs the path, for its message.
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    if let Ok(value) = T::deserialize(&mut de) {
        return de.end().map(|()| value).map_err(|e| {
            GatewayError::invalid(format!("We could not parse the JSON body of your request: {e}"), None)
        });
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            GatewayError::invalid(
                format!("We could not parse the JSON body of your request: {inner}"),
                None,
            )
        } else if path == "." {
            GatewayError::invalid(format!("Invalid request body: {inner}"), None)
        } else {
            GatewayError::invalid(format!("Invalid value for '{path}': {inner}"), Some(&path))
        }
    })
}
