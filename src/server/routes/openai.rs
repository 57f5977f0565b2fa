//! OpenAI-compatible routes: `/v1/chat/completions`, `/v1/models` (also under `/api/v1`).

use axum::extract::rejection::BytesRejection;
use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::HeaderMap;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;

use crate::gateway::openai::ChatCompletionRequest;
use crate::server::auth::{bearer_from, check_bearer, is_google_style};
use crate::server::error::{openai_error, parse_body, ApiError};
use crate::server::observe::ModelLabel;
use crate::server::routes::gemini;
use crate::server::AppState;

pub async fn chat_completions(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: ChatCompletionRequest = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return ApiError(e).into_response(),
    };
    let mut resp = chat(&state, &req).await.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(ModelLabel(req.model.clone()));
    resp
}

async fn chat(state: &AppState, req: &ChatCompletionRequest) -> Result<Response, ApiError> {
    if !req.stream {
        return Ok(Json(state.gateway.chat(req).await?).into_response());
    }
    let stream = state.gateway.chat_stream(req).await?;
    Ok(super::sse_response(stream, None))
}

pub async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: crate::gateway::translate::embeddings::EmbeddingRequest = parse_body(body)?;
    Ok(Json(state.gateway.embeddings(&req).await?).into_response())
}

/// `GET /v1/models`: OpenAI's list, or Gemini's when a Google SDK asks (Google's v1 API).
pub async fn list_models(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if is_google_style(&headers, &query) {
        return Ok(gemini::list_models(State(state), uri, headers, Query(query)).await);
    }
    if let Err(resp) = check_bearer(&state, bearer_from(&headers)) {
        return Ok(resp);
    }
    Ok(Json(state.gateway.models().await?).into_response())
}

/// `GET /v1/models/{id}`: one model in OpenAI's shape.
/// `GET /v1/models/{id}`: one model in OpenAI's shape, or Gemini's for a Google SDK.
pub async fn get_model(
    State(state): State<AppState>,
    uri: OriginalUri,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if is_google_style(&headers, &query) {
        return Ok(gemini::get_model(State(state), uri, Path(id), headers, Query(query)).await);
    }
    if let Err(resp) = check_bearer(&state, bearer_from(&headers)) {
        return Ok(resp);
    }
    Ok(Json(state.gateway.model(&id).await?).into_response())
}

pub async fn not_found(method: Method, uri: Uri) -> Response {
    openai_error(
        StatusCode::NOT_FOUND,
        format!(
            "Unknown request URL: {method} {}. Please check the URL for typos.",
            uri.path()
        ),
        "invalid_request_error",
        Some("unknown_url"),
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    openai_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {method} is not allowed for {}.", uri.path()),
        "invalid_request_error",
        Some("method_not_allowed"),
    )
}
