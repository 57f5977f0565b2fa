//! OpenAI-compatible routes: `/v1/chat/completions`, `/v1/models` (also under `/api/v1`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;

use crate::gateway::openai::ChatCompletionRequest;
use crate::gateway::service::StreamItem;
use crate::server::error::{openai_error, parse_body, ApiError};
use crate::server::AppState;

pub async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatCompletionRequest = parse_body(body)?;
    if !req.stream {
        return Ok(Json(state.gateway.chat(&req).await?).into_response());
    }
    let stream = state.gateway.chat_stream(&req).await?;
    let events = stream.map(|item| {
        Ok::<_, Infallible>(match item {
            StreamItem::Chunk(json) | StreamItem::Error(json) => Event::default().data(json),
            StreamItem::Done => Event::default().data("[DONE]"),
        })
    });
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Ask reverse proxies (nginx) not to buffer the stream.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

pub async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: crate::gateway::translate::embeddings::EmbeddingRequest = parse_body(body)?;
    Ok(Json(state.gateway.embeddings(&req).await?).into_response())
}

pub async fn list_models(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.gateway.models().await?).into_response())
}

/// `GET /v1/models/{id}`: one model in OpenAI's shape.
pub async fn get_model(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
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
