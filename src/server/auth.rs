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
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn is_allowed(state: &AppState, token: Option<&str>) -> bool {
    let tokens = &state.settings.allowed_tokens;
    tokens.is_empty() || token.is_some_and(|t| tokens.iter().any(|s| s.matches(t)))
}

/// Middleware for the OpenAI routes.
pub async fn require_bearer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let token = bearer(&req);
    if is_allowed(&state, token) {
        return next.run(req).await;
    }
    let message = if token.is_none() {
        "Missing API key: send your gateway token as 'Authorization: Bearer <token>'."
    } else {
        "Incorrect API key provided: the token is not in ALLOWED_TOKENS."
    };
    openai_error(
        StatusCode::UNAUTHORIZED,
        message,
        "invalid_request_error",
        Some("invalid_api_key"),
    )
}
