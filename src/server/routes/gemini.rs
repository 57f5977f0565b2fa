//! Gemini-native routes (`/v1beta/models…`, also under `/gemini/…`, and `POST /v1/models/…:action`):
//! requests and answers pass through byte for byte, with a pool key instead of the client's token.

use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use crate::gateway::error::GatewayError;
use crate::gateway::service::{NativeCall, NATIVE_ACTIONS};
use crate::gateway::translate::request::model_id;
use crate::server::auth::is_allowed;
use crate::server::error::GoogleError;
use crate::server::AppState;

/// The gateway token as Google's SDKs send a key: `x-goog-api-key`, `?key=`, or a bearer token.
pub(crate) fn client_token<'a>(headers: &'a HeaderMap, query: &'a HashMap<String, String>) -> Option<&'a str> {
    headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("key").map(String::as_str))
        .or_else(|| crate::server::auth::bearer_from(headers))
}

fn google_status(code: StatusCode, status: &str, message: &str) -> Response {
    let body = crate::gateway::gemini::ErrorBody::new(code.as_u16(), status, message);
    (code, axum::Json(body)).into_response()
}

#[expect(
    clippy::result_large_err,
    reason = "the error is the response to send; built once per request"
)]
pub(crate) fn check_auth(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(), Response> {
    if is_allowed(state, client_token(headers, query)) {
        Ok(())
    } else {
        Err(google_status(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Missing or invalid gateway token: send it as the API key (x-goog-api-key header or ?key=).",
        ))
    }
}

/// The client's query minus what the gateway decides itself (`key`, `alt`).
fn forwarded_query(query: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| *k != "key" && *k != "alt")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    q.sort();
    q
}

/// `v1beta` unless the client used Google's `v1` paths.
fn api_version(path: &str) -> String {
    if path.contains("/v1beta/") || path.ends_with("/v1beta") {
        "v1beta"
    } else {
        "v1"
    }
    .to_string()
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], body).into_response()
}

pub async fn list_models(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(resp) = check_auth(&state, &headers, &query) {
        return resp;
    }
    native_get(&state, uri.path(), None, &query).await
}

/// A native GET (`models`, `models/{model}`), answered with Gemini's body unchanged.
async fn native_get(state: &AppState, path: &str, model: Option<String>, query: &HashMap<String, String>) -> Response {
    let call = NativeCall {
        version: api_version(path),
        model,
        action: None,
        query: forwarded_query(query),
        body: None,
    };
    match state.gateway.native(&call).await {
        Ok(body) => json_response(body),
        Err(e) => GoogleError(e).into_response(),
    }
}

/// `GET models/{model}`.
pub async fn get_model(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(resp) = check_auth(&state, &headers, &query) {
        return resp;
    }
    match model_id(&name) {
        Ok(model) => native_get(&state, uri.path(), Some(model), &query).await,
        Err(e) => GoogleError(e).into_response(),
    }
}

/// `POST models/{model}:{action}`. The token is checked before a byte of the body is read.
pub async fn model_action(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    if let Err(resp) = check_auth(&state, &headers, &query) {
        return resp;
    }
    let version = api_version(uri.path());
    let body = match axum::body::to_bytes(req.into_body(), state.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = is_length_limit(&e);
            let error = if too_large {
                GatewayError::PayloadTooLarge {
                    message: "The request body is larger than MAX_BODY_BYTES allows".into(),
                }
            } else {
                GatewayError::invalid(format!("Could not read the request body: {e}"), None)
            };
            return GoogleError(error).into_response();
        }
    };
    let Some((model, action)) = name.split_once(':') else {
        return google_status(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Unknown method models/{name}; expected models/{{model}}:{{action}}"),
        );
    };
    if !NATIVE_ACTIONS.contains(&action) {
        return google_status(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Method {action} is not supported by the gateway"),
        );
    }
    let model = match model_id(model) {
        Ok(m) => m,
        Err(e) => return GoogleError(e).into_response(),
    };
    let stream = action == "streamGenerateContent";
    let sse = query.get("alt").is_some_and(|a| a == "sse");
    let call = NativeCall {
        version,
        model: Some(model),
        action: Some(action.to_string()),
        query: forwarded_query(&query),
        body: Some(body),
    };
    if !stream {
        return match state.gateway.native(&call).await {
            Ok(body) => json_response(body),
            Err(e) => GoogleError(e).into_response(),
        };
    }
    let events = match state.gateway.native_stream(&call).await {
        Ok(events) => events,
        Err(e) => return GoogleError(e).into_response(),
    };
    // Events pass through unchanged; only the framing follows what the client asked for: SSE, or
    // Google's streamed JSON array when `alt=sse` is absent.
    let mut first = true;
    let framed = events
        .map(move |item| {
            let frame = match item {
                Ok(data) if sse => [b"data: ".as_slice(), &data, b"\r\n\r\n"].concat(),
                Ok(data) => {
                    let sep: &[u8] = if first { b"[" } else { b",\r\n" };
                    first = false;
                    [sep, &data].concat()
                }
                Err(fault) => {
                    let (code, status) = if fault.is_stall() {
                        (504, "DEADLINE_EXCEEDED")
                    } else {
                        (502, "UNAVAILABLE")
                    };
                    let err =
                        serde_json::json!({"error": {"code": code, "message": fault.message(), "status": status}})
                            .to_string();
                    if sse {
                        format!("data: {err}\r\n\r\n").into_bytes()
                    } else {
                        format!(",\r\n{err}").into_bytes()
                    }
                }
            };
            Bytes::from(frame)
        })
        .chain(futures::stream::once(async move {
            if sse {
                Bytes::new()
            } else {
                Bytes::from_static(b"]")
            }
        }));
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json; charset=UTF-8"
    };
    let mut resp = Response::new(crate::server::sse::bytes_body(framed));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Whether reading a body failed on `MAX_BODY_BYTES` (axum reports it as a length limit).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.to_string().contains("length limit") {
            return true;
        }
        current = err.source();
    }
    false
}

pub async fn not_found() -> Response {
    google_status(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown Gemini API route.")
}
