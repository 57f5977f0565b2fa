//! OpenAI Responses routes: `POST /v1/responses` (whole or streamed), for Codex CLI, the OpenAI
//! Agents SDK and `client.responses.create`. Stored responses are scoped to the caller's token.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;

use crate::gateway::response_store::Owner;
use crate::gateway::translate::responses::ResponsesRequest;
use crate::server::auth::bearer_from;
use crate::server::error::{parse_body, ApiError};
use crate::server::observe::ModelLabel;
use crate::server::AppState;

pub async fn create(
    _: crate::server::auth::OpenAiCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: ResponsesRequest = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return ApiError(e).into_response(),
    };
    let owner = Owner::of_token(bearer_from(&headers));
    let mut resp = answer(&state, &req, &owner)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(ModelLabel(req.model.clone()));
    resp
}

async fn answer(state: &AppState, req: &ResponsesRequest, owner: &Owner) -> Result<Response, ApiError> {
    if !req.stream {
        return Ok(Json(state.gateway.responses(req, owner).await?).into_response());
    }
    let frames = state.gateway.responses_stream(req, owner).await?;
    Ok(super::sse_response(frames, None))
}
