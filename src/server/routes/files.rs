//! Gemini-native Files API and cached contents (`/upload/v1beta/files`, `/v1beta/files…`,
//! `/v1beta/cachedContents…`, also under `/gemini`): the resources stay on the key that made them.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::gateway::error::GatewayError;
use crate::gateway::files::{self, Kind, Passed};
use crate::gateway::response_store::Owner;
use crate::server::auth::{bearer_from, check_bearer, is_google_style};
use crate::server::error::{ApiError, GoogleError};
use crate::server::routes::gemini::{check_auth, client_token};
use crate::server::AppState;

/// Largest upload piece read at once (Google's SDKs send 8 MiB pieces).
const MAX_UPLOAD_PIECE: usize = 64 << 20;

fn json(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], body).into_response()
}

async fn read_body(req: Request, limit: usize) -> Result<Bytes, GatewayError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| GatewayError::PayloadTooLarge {
            message: format!("The request body could not be read, or is larger than {limit} bytes"),
        })
}

/// The address clients reached the gateway at, for the upload URL it hands out.
fn public_base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Google's answer with its upload headers; the upload URL now points at this gateway.
fn passed(answer: Passed, base: &str) -> Response {
    let mut resp = json(answer.body);
    for (name, value) in answer.upload_headers {
        let value = if name == "x-goog-upload-url" {
            match files::upload_id(&value) {
                Some(id) => format!("{base}/upload/v1beta/files?upload_id={id}&upload_protocol=resumable"),
                None => continue,
            }
        } else {
            value
        };
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}

fn upload_headers(headers: &HeaderMap) -> Vec<(&'static str, String)> {
    files::upload_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
}

fn token_digest(headers: &HeaderMap, query: &HashMap<String, String>) -> String {
    Owner::of_token(client_token(headers, query)).digest().to_string()
}

/// `POST /upload/{v1beta|v1}/files`: starts an upload (token required), or carries a piece of one
/// (`?upload_id=`: the id Google issued is the credential, as at Google).
pub async fn upload(
    State(state): State<AppState>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    if version != "v1beta" && version != "v1" {
        return GoogleError(GatewayError::UpstreamRejected {
            status: 404,
            error: crate::gateway::gemini::ErrorBody::new(404, "NOT_FOUND", "Unknown upload API version."),
        })
        .into_response();
    }
    let base = public_base(&headers);
    if let Some(id) = query.get("upload_id") {
        let body = match read_body(req, MAX_UPLOAD_PIECE).await {
            Ok(b) => b,
            Err(e) => return GoogleError(e).into_response(),
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return match state
            .gateway
            .upload_chunk(id, upload_headers(&headers), content_type, body)
            .await
        {
            Ok(answer) => passed(answer, &base),
            Err(e) => GoogleError(e).into_response(),
        };
    }
    if let Err(resp) = check_auth(&state, &headers, &query) {
        return resp;
    }
    let body = match read_body(req, state.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return GoogleError(e).into_response(),
    };
    let token = token_digest(&headers, &query);
    match state.gateway.upload_start(upload_headers(&headers), body, &token).await {
        Ok(answer) => passed(answer, &base),
        Err(e) => GoogleError(e).into_response(),
    }
}

fn page_params(query: &HashMap<String, String>) -> (Option<u32>, Option<&str>) {
    (
        query.get("pageSize").and_then(|s| s.parse().ok()),
        query.get("pageToken").map(String::as_str),
    )
}

async fn list(state: &AppState, kind: Kind, headers: &HeaderMap, query: &HashMap<String, String>) -> Response {
    if let Err(resp) = check_auth(state, headers, query) {
        return resp;
    }
    let (size, token) = page_params(query);
    match state.gateway.list_resources(kind, size, token).await {
        Ok(page) => axum::Json(page).into_response(),
        Err(e) => GoogleError(e).into_response(),
    }
}

/// `GET files`: every key's files, one list.
pub async fn list_files(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list(&state, Kind::Files, &headers, &query).await
}

/// `GET cachedContents`: every key's cached contents, one list.
pub async fn list_caches(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list(&state, Kind::CachedContents, &headers, &query).await
}

async fn one(
    state: &AppState,
    kind: Kind,
    id: &str,
    method: Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    req: Request,
) -> Response {
    if let Err(resp) = check_auth(state, headers, query) {
        return resp;
    }
    let body = if method == Method::PATCH {
        match read_body(req, state.settings.max_body_bytes).await {
            Ok(b) => Some(b),
            Err(e) => return GoogleError(e).into_response(),
        }
    } else {
        None
    };
    let forwarded = query.get("updateMask").map(|m| format!("updateMask={m}"));
    match state.gateway.resource(kind, id, method, forwarded, body).await {
        Ok(body) => json(body),
        Err(e) => GoogleError(e).into_response(),
    }
}

/// `GET` / `DELETE files/{id}`.
pub async fn file(
    State(state): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    one(&state, Kind::Files, &id, method, &headers, &query, req).await
}

/// `GET` / `PATCH` / `DELETE cachedContents/{id}`.
pub async fn cache(
    State(state): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    one(&state, Kind::CachedContents, &id, method, &headers, &query, req).await
}

/// `POST cachedContents`.
pub async fn create_cache(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    if let Err(resp) = check_auth(&state, &headers, &query) {
        return resp;
    }
    let body = match read_body(req, state.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return GoogleError(e).into_response(),
    };
    let token = token_digest(&headers, &query);
    match state.gateway.create_cache(body, &token).await {
        Ok(body) => json(body),
        Err(e) => GoogleError(e).into_response(),
    }
}

/// `POST /v1/files` (OpenAI, multipart `file` + `purpose`): the file goes to Google's Files API
/// and its id can be used in a chat `file` part.
pub async fn openai_upload(
    _: crate::server::auth::OpenAiCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let bad = |message: String| ApiError(GatewayError::invalid(message, None));
    let mut form = multipart.map_err(|e| bad(format!("expected a multipart/form-data body: {e}")))?;
    let (mut file, mut purpose) = (None, String::from("user_data"));
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("unreadable form: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        let filename = field.file_name().map(str::to_string);
        let mime = field.content_type().map(str::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|e| bad(format!("unreadable form field {name:?}: {e}")))?;
        match name.as_str() {
            "file" => file = Some((filename, mime, data)),
            "purpose" => purpose = String::from_utf8_lossy(&data).trim().to_string(),
            _ => {}
        }
    }
    let Some((filename, mime, data)) = file else {
        return Err(bad("a file is required (form field \"file\")".into()));
    };
    if !matches!(purpose.as_str(), "user_data" | "assistants" | "vision") {
        return Err(ApiError(GatewayError::invalid(
            format!("purpose `{purpose}` is not served: files here are for chat input (purpose user_data)"),
            Some("purpose"),
        )));
    }
    let mime = mime
        .filter(|m| m != "application/octet-stream")
        .or_else(|| {
            filename
                .as_deref()
                .and_then(|f| mime_guess::from_path(f).first_raw())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let token = Owner::of_token(crate::server::auth::bearer_from(&headers))
        .digest()
        .to_string();
    let uploaded = state
        .gateway
        .upload_file(data, &mime, filename.as_deref(), &token)
        .await?;
    Ok(axum::Json(files::openai_file(&uploaded, &purpose)).into_response())
}

fn openai_name(id: &str) -> Result<String, ApiError> {
    files::file_name_of_openai_id(id)
        .map(|name| name.trim_start_matches("files/").to_string())
        .ok_or_else(|| ApiError(GatewayError::invalid(format!("No such file: {id}"), Some("file_id"))))
}

/// `GET`/`DELETE /v1/files/{id}`: OpenAI's, or Google's v1 for a Google SDK (its key header).
pub async fn v1_file(
    State(state): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    if is_google_style(&headers, &query) {
        return Ok(one(&state, Kind::Files, &id, method, &headers, &query, req).await);
    }
    if let Err(resp) = check_bearer(&state, bearer_from(&headers)) {
        return Ok(resp);
    }
    if method == Method::DELETE {
        openai_delete(state, id).await
    } else {
        openai_get(state, id).await
    }
}

/// `GET /v1/files`: OpenAI's list, or Google's v1 for a Google SDK.
pub async fn v1_files(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if is_google_style(&headers, &query) {
        return Ok(list(&state, Kind::Files, &headers, &query).await);
    }
    if let Err(resp) = check_bearer(&state, bearer_from(&headers)) {
        return Ok(resp);
    }
    openai_list(state).await
}

async fn openai_get(state: AppState, id: String) -> Result<Response, ApiError> {
    let bare = openai_name(&id)?;
    let body = state
        .gateway
        .resource(Kind::Files, &bare, Method::GET, None, None)
        .await?;
    let file: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Ok(axum::Json(files::openai_file(&file, "user_data")).into_response())
}

async fn openai_delete(state: AppState, id: String) -> Result<Response, ApiError> {
    let bare = openai_name(&id)?;
    state
        .gateway
        .resource(Kind::Files, &bare, Method::DELETE, None, None)
        .await?;
    Ok(axum::Json(serde_json::json!({"id": id, "object": "file", "deleted": true})).into_response())
}

/// OpenAI's file list: the first 100 files of every key.
async fn openai_list(state: AppState) -> Result<Response, ApiError> {
    let page = state.gateway.list_resources(Kind::Files, Some(100), None).await?;
    let data: Vec<serde_json::Value> = page
        .get("files")
        .and_then(serde_json::Value::as_array)
        .map(|list| list.iter().map(|f| files::openai_file(f, "user_data")).collect())
        .unwrap_or_default();
    Ok(axum::Json(serde_json::json!({
        "object": "list",
        "data": data,
        "has_more": page.get("nextPageToken").is_some(),
    }))
    .into_response())
}
