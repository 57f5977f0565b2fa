//! OpenAI-compatible routes: `/v1/chat/completions`, `/v1/models`, `/v1/embeddings`,
//! `/v1/images/generations`, `/v1/images/edits`, `/v1/audio/speech` (also under `/api/v1`).

use axum::extract::rejection::BytesRejection;
use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;

use crate::gateway::openai::ChatCompletionRequest;
use crate::server::auth::{bearer_from, check_bearer, is_google_style, OpenAiCaller};
use crate::server::error::{openai_error, parse_body, ApiError};
use crate::server::observe::ModelLabel;
use crate::server::routes::gemini;
use crate::server::AppState;

pub async fn chat_completions(
    _: OpenAiCaller,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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
        let completion = state.gateway.chat(req).await?;
        return Ok(match crate::gateway::translate::json_out::completion(&completion) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(_) => Json(completion).into_response(),
        });
    }
    let stream = state.gateway.chat_stream(req).await?;
    Ok(super::sse_response(stream, None))
}

pub async fn embeddings(
    _: OpenAiCaller,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: crate::gateway::translate::embeddings::EmbeddingRequest = parse_body(body)?;
    Ok(Json(state.gateway.embeddings(&req).await?).into_response())
}

pub async fn images_generations(
    _: OpenAiCaller,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: crate::gateway::translate::images::ImageRequest = parse_body(body)?;
    let mut resp = Json(state.gateway.images(&req, &[]).await?).into_response();
    resp.extensions_mut().insert(ModelLabel(req.model.unwrap_or_default()));
    Ok(resp)
}

/// `POST /v1/images/edits`: multipart form with `image` (or `image[]`) files and a `prompt`.
pub async fn images_edits(
    _: OpenAiCaller,
    State(state): State<AppState>,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let bad = |message: String| ApiError(crate::gateway::error::GatewayError::invalid(message, None));
    let mut form = multipart.map_err(|e| bad(format!("expected a multipart/form-data body: {e}")))?;
    let mut fields = serde_json::Map::new();
    let mut images = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("unreadable form: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        let mime = field.content_type().unwrap_or("image/png").to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| bad(format!("unreadable form field {name:?}: {e}")))?;
        match name.as_str() {
            "image" | "image[]" => {
                if !mime.starts_with("image/") {
                    return Err(bad(format!("the image must be an image file; got {mime}")));
                }
                images.push((mime, base64::engine::general_purpose::STANDARD.encode(&data)));
            }
            "n" => {
                let n: u32 = String::from_utf8_lossy(&data)
                    .trim()
                    .parse()
                    .map_err(|_| bad("n must be a number".into()))?;
                fields.insert(name, serde_json::json!(n));
            }
            "mask" => {
                crate::gateway::translate::log_ignored("images.edits", ["mask"]);
            }
            _ => {
                fields.insert(name, serde_json::json!(String::from_utf8_lossy(&data)));
            }
        }
    }
    if images.is_empty() {
        return Err(bad("an image file is required (form field \"image\")".into()));
    }
    let req: crate::gateway::translate::images::ImageRequest =
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| bad(format!("invalid form: {e}")))?;
    let mut resp = Json(state.gateway.images(&req, &images).await?).into_response();
    resp.extensions_mut().insert(ModelLabel(req.model.unwrap_or_default()));
    Ok(resp)
}

pub async fn audio_speech(
    _: OpenAiCaller,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: crate::gateway::translate::speech::SpeechRequest = parse_body(body)?;
    let (audio, content_type) = state.gateway.speech(&req).await?;
    let mut resp = ([(axum::http::header::CONTENT_TYPE, content_type)], audio).into_response();
    resp.extensions_mut().insert(ModelLabel(req.model));
    Ok(resp)
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
