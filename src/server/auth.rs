//! Client authentication: gateway tokens from `ALLOWED_TOKENS`, sent as `Authorization: Bearer`
//! (and, on Gemini-style routes, as `x-goog-api-key` or `?key=`). No tokens configured: open API.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures::future::{Either, Ready};

use super::error::openai_error;
use super::AppState;

pub fn is_allowed(state: &AppState, token: Option<&str>) -> bool {
    let tokens = &state.settings.allowed_tokens;
    tokens.is_empty() || token.is_some_and(|t| tokens.iter().any(|s| s.matches(t)))
}

/// A caller of an OpenAI route, checked: a handler that takes one answers only a bearer token in
/// `ALLOWED_TOKENS` (anyone in open mode); anything else gets OpenAI's 401 before the body is
/// read.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiCaller;

impl FromRequestParts<AppState> for OpenAiCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        check_bearer(state, bearer_from(&parts.headers)).map(|()| OpenAiCaller)
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

/// A caller of an Anthropic route, checked: the gateway token as `x-api-key` (Anthropic's SDKs
/// and Claude Code) or a bearer token; the 401 in Anthropic's shape.
#[derive(Debug, Clone, Copy)]
pub struct AnthropicCaller;

impl FromRequestParts<AppState> for AnthropicCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| bearer_from(&parts.headers));
        if is_allowed(state, token) {
            return Ok(AnthropicCaller);
        }
        let message = if token.is_none() {
            "Missing API key: send your gateway token as 'x-api-key' (or 'Authorization: Bearer')."
        } else {
            "Invalid API key: the token is not in ALLOWED_TOKENS."
        };
        Err(super::error::anthropic_error(StatusCode::UNAUTHORIZED, message))
    }
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

/// Whether a `Host` header names this machine (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`).
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    let name = name.trim_end_matches('.').as_bytes();
    let localhost = |n: &[u8]| n.eq_ignore_ascii_case(b"localhost");
    localhost(name)
        || name.len() > 10 && name[name.len() - 10] == b'.' && localhost(&name[name.len() - 9..])
        || std::str::from_utf8(name)
            .ok()
            .and_then(|n| n.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback())
}

/// Open mode (no `ALLOWED_TOKENS`): only this machine may drive the API, so a web page open in
/// the user's browser cannot. The `Host` must be a loopback name (defeats DNS rebinding), and a
/// POST must be `application/json` (a cross-site page can only send that after a CORS
/// preflight, which the gateway never grants). The UI's own read-only server functions under
/// `/api/ui` keep their form encoding.
#[derive(Clone)]
pub struct OpenModeLayer {
    state: AppState,
}

impl OpenModeLayer {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for OpenModeLayer {
    type Service = OpenMode<S>;

    fn layer(&self, inner: S) -> OpenMode<S> {
        OpenMode {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`OpenModeLayer`]: a plain check in front of `inner`, with nothing cloned or
/// boxed per request.
#[derive(Clone)]
pub struct OpenMode<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for OpenMode<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match open_mode_refusal(&self.state, &req) {
            Some(refusal) => Either::Left(futures::future::ready(Ok(refusal))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

/// Why open mode turns a request away, as the response to send; `None` lets it through.
fn open_mode_refusal(state: &AppState, req: &Request) -> Option<Response> {
    if !state.settings.allowed_tokens.is_empty() {
        return None;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let path = req.uri().path();
    let google = path.starts_with("/v1beta") || path.starts_with("/gemini/") || path.starts_with("/upload/");
    if !host.is_some_and(is_loopback_host) {
        let message = "This gateway runs without ALLOWED_TOKENS, so it only answers requests addressed to localhost. Set ALLOWED_TOKENS to serve other hosts.";
        return Some(refuse(google, StatusCode::FORBIDDEN, message, "PERMISSION_DENIED"));
    }
    let headers = req.headers();
    // A header a page could only add after a CORS preflight proves the caller is not a plain
    // cross-site form; so does an empty body.
    let credentialed = headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key("x-goog-api-key")
        || headers.contains_key("x-api-key")
        || headers.contains_key("x-goog-upload-command");
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let has_body = content_type.is_some()
        || headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n.trim() != "0");
    if req.method() == axum::http::Method::POST && !credentialed && has_body && !path.starts_with("/api/ui/") {
        let json = content_type.is_some_and(|ct| {
            let ct = ct.trim_start().as_bytes();
            ct.get(..16)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"application/json"))
        });
        if !json {
            let message = "Send the request body as JSON with 'Content-Type: application/json'.";
            return Some(refuse(
                google,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message,
                "INVALID_ARGUMENT",
            ));
        }
    }
    None
}

fn refuse(google: bool, code: StatusCode, message: &str, google_status: &str) -> Response {
    use axum::response::IntoResponse;
    if google {
        let body = crate::gateway::gemini::ErrorBody::new(code.as_u16(), google_status, message);
        (code, axum::Json(body)).into_response()
    } else {
        openai_error(code, message, "invalid_request_error", Some("forbidden"))
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:3000",
            "127.0.0.1:8080",
            "[::1]:3000",
            "app.localhost",
            "A.LocalHost:80",
            "LOCALHOST.",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.com",
            "127.0.0.1.evil.com",
            "localhost.evil.com:80",
            "evillocalhost",
            "10.0.0.1",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
