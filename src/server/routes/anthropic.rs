//! Anthropic Messages routes: `POST /v1/messages` (whole or streamed) and
//! `POST /v1/messages/count_tokens`, for Claude Code and the `anthropic` SDKs. `anthropic-version`
//! and `anthropic-beta` headers are accepted whatever their value.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::json;

use crate::gateway::service::Frame;
use crate::gateway::translate::anthropic::{CountTokensRequest, MessagesRequest};
use crate::server::auth::AnthropicCaller;
use crate::server::error::{parse_body, AnthropicError};
use crate::server::observe::ModelLabel;
use crate::server::AppState;

pub async fn messages(
    _: AnthropicCaller,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: MessagesRequest = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return AnthropicError(e).into_response(),
    };
    let mut resp = answer(&state, &req).await.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(ModelLabel(req.model.clone()));
    resp
}

async fn answer(state: &AppState, req: &MessagesRequest) -> Result<Response, AnthropicError> {
    if !req.stream {
        return Ok(Json(state.gateway.messages(req).await?).into_response());
    }
    let frames = state.gateway.messages_stream(req).await?;
    let ping = Frame {
        event: Some("ping"),
        data: r#"{"type":"ping"}"#.into(),
    };
    Ok(super::sse_response(frames, Some(ping)))
}

pub async fn count_tokens(
    _: AnthropicCaller,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let req: CountTokensRequest = parse_body(body)?;
    let tokens = state.gateway.count_tokens(&req).await?;
    Ok(Json(json!({ "input_tokens": tokens })).into_response())
}
