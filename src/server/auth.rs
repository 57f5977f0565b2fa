//! Client authentication: gateway tokens from `ALLOWED_TOKENS`, sent as `Authorization: Bearer`
//! (and, on Gemini-style routes, as `x-goog-api-key` or `?key=`). No tokens configured: open API.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::openai_error;
use super::AppState;

/// The bearer token of a request, if any.
pub fn bearer(req: &Request) -> Option<&str> {
    bearer_from(req.headers())
}

pub fn is_allowed(state: &AppState, token: Option<&str>) -> bool {
    let tokens = &state.settings.allowed_tokens;
    tokens.is_empty() || token.is_some_and(|t| tokens.iter().any(|s| s.matches(t)))
}

/// Middleware for the OpenAI routes.
pub async fn require_bearer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check_bearer(&state, bearer(&req)) {
        Ok(()) => next.run(req).await,
        Err(resp) => resp,
    }
}

/// Checks an OpenAI-style bearer token; the error is the OpenAI-shaped 401 to send.
#[expect(clippy::result_large_err, reason = "the error is the response to send")]
pub fn check_bearer(state: &AppState, token: Option<&str>) -> Result<(), Response> {
    if is_allowed(state, token) {
        return Ok(());
    }
    let message = if token.is_none() {
        "Missing API key: send your gateway token as 'Authorization: Bearer <token>'."
    } else {
        "Incorrect API key provided: the token is not in ALLOWED_TOKENS."
    };
    Err(openai_error(
        StatusCode::UNAUTHORIZED,
        message,
        "invalid_request_error",
        Some("invalid_api_key"),
    ))
}

/// Whether a request comes from a Google SDK (its key header or `?key=`, or its client header)
/// rather than an OpenAI client; decides the dialect of the shared `GET /v1/models…` routes.
pub fn is_google_style(headers: &axum::http::HeaderMap, query: &std::collections::HashMap<String, String>) -> bool {
    headers.contains_key("x-goog-api-key") || headers.contains_key("x-goog-api-client") || query.contains_key("key")
}

/// The bearer token from a header map.
pub fn bearer_from(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
