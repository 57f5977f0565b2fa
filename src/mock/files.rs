//! The mock's Files API and cached contents, owned per key as Google owns them per project:
//! resumable uploads (`/upload/v1beta/files`), `files` get/list/delete, `cachedContents`
//! create/get/list/patch/delete, and the request-scoped 403 for a resource another key made.
#![expect(
    clippy::result_large_err,
    reason = "the error is the response to send; built once per request"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::{authenticate, google_error, key_failure, lock, Behavior, MockState};

/// Files live 48 hours at Google.
const FILE_TTL: Duration = Duration::from_secs(48 * 3600);
/// Google's public host, which file URIs name whatever address the API was called at.
const GOOGLE: &str = "https://generativelanguage.googleapis.com";

#[derive(Debug, Default)]
pub struct Resources {
    next: AtomicU64,
    /// `files/{id}` → (owning key, File resource).
    files: std::sync::Mutex<BTreeMap<String, (String, Value)>>,
    /// `cachedContents/{id}` → (owning key, CachedContent resource).
    caches: std::sync::Mutex<BTreeMap<String, (String, Value)>>,
    /// upload id → (owning key, File resource being uploaded, bytes received).
    uploads: std::sync::Mutex<HashMap<String, (String, Value, u64)>>,
}

impl Resources {
    fn id(&self, key: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:x}{n:04}", super::fnv(key.as_bytes()) % 0xff_ffff)
    }

    pub fn owner_of(&self, name: &str) -> Option<String> {
        let found = |map: &std::sync::Mutex<BTreeMap<String, (String, Value)>>| {
            lock(map).get(name).map(|(owner, _)| owner.clone())
        };
        found(&self.files).or_else(|| found(&self.caches))
    }

    /// The resource names a `generateContent`-like body refers to that `key` does not own.
    pub fn foreign(&self, key: &str, req: &Value) -> Option<Response> {
        if let Some(name) = req.get("cachedContent").and_then(Value::as_str) {
            let owned = lock(&self.caches).get(name).is_some_and(|(owner, _)| owner == key);
            if !owned {
                return Some(google_error(
                    403,
                    "PERMISSION_DENIED",
                    "CachedContent not found (or permission denied)",
                    json!([]),
                ));
            }
        }
        let contents = req.get("contents").and_then(Value::as_array)?;
        let files = lock(&self.files);
        for uri in contents
            .iter()
            .filter_map(|c| c.get("parts").and_then(Value::as_array))
            .flatten()
            .filter_map(|p| p.pointer("/fileData/fileUri").and_then(Value::as_str))
        {
            let Some(id) = uri.split("/files/").nth(1) else {
                continue; // other URIs (YouTube, …) are not Files API resources
            };
            let owned = files.get(&format!("files/{id}")).is_some_and(|(owner, _)| owner == key);
            if !owned {
                return Some(google_error(
                    403,
                    "PERMISSION_DENIED",
                    &format!("You do not have permission to access the File {id} or it may not exist."),
                    json!([]),
                ));
            }
        }
        None
    }
}

/// RFC 3339 in UTC with a `Z`, as Google writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::gateway::clock::civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Authenticates a resource call and applies the key's failure modes (no timing modes).
async fn caller(
    state: &MockState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    path: String,
    body: Option<&Value>,
) -> Result<String, Response> {
    let (key, behavior) = authenticate(state, headers, query, path, body)?;
    if behavior == Behavior::PermissionDenied {
        return Err(google_error(
            403,
            "PERMISSION_DENIED",
            &format!("Permission denied: Consumer 'api_key:{key}' has been suspended."),
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CONSUMER_SUSPENDED", "domain": "googleapis.com"}]),
        ));
    }
    if let Some(resp) = key_failure(&behavior, "", false).await {
        return Err(resp);
    }
    Ok(key)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn upload_status(resp: &mut Response, status: &'static str) {
    resp.headers_mut()
        .insert("x-goog-upload-status", HeaderValue::from_static(status));
}

/// `POST /upload/v1beta/files`: starts a resumable upload (`X-Goog-Upload-Command: start`), or
/// takes a chunk of one (`?upload_id=`; `upload`, `upload, finalize`, `finalize`).
pub async fn upload(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Some(upload_id) = query.get("upload_id") {
        return chunk(&state, &headers, upload_id, &body);
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let key = match caller(&state, &headers, &query, "upload/files".into(), parsed.as_ref()).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    if header(&headers, "x-goog-upload-protocol") != Some("resumable")
        || header(&headers, "x-goog-upload-command") != Some("start")
    {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "Upload protocol must be resumable with the command start.",
            json!([]),
        );
    }
    let Some(size) = header(&headers, "x-goog-upload-header-content-length").and_then(|v| v.parse::<u64>().ok()) else {
        return google_error(400, "INVALID_ARGUMENT", "Missing upload content length.", json!([]));
    };
    let mime = header(&headers, "x-goog-upload-header-content-type")
        .unwrap_or("application/octet-stream")
        .to_string();
    let meta = parsed
        .as_ref()
        .and_then(|v| v.get("file"))
        .cloned()
        .unwrap_or(json!({}));
    let res = &state.resources;
    let id = match meta.get("name").and_then(Value::as_str) {
        Some(name) => name.trim_start_matches("files/").to_string(),
        None => res.id(&key),
    };
    let now = SystemTime::now();
    let file = json!({
        "name": format!("files/{id}"),
        "displayName": meta.get("displayName").or_else(|| meta.get("display_name")).cloned().unwrap_or(Value::Null),
        "mimeType": mime,
        "sizeBytes": size.to_string(),
        "createTime": rfc3339(now),
        "updateTime": rfc3339(now),
        "expirationTime": rfc3339(now + FILE_TTL),
        "uri": format!("{GOOGLE}/v1beta/files/{id}"),
        "state": "ACTIVE",
        "source": "UPLOADED",
    });
    let upload_id = format!("mock-upload-{}", res.id(&key));
    lock(&res.uploads).insert(upload_id.clone(), (key, file, 0));
    let host = header(&headers, "host").unwrap_or("localhost");
    let url = format!("http://{host}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable");
    let mut resp = StatusCode::OK.into_response();
    upload_status(&mut resp, "active");
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert("x-goog-upload-url", v);
    }
    resp.headers_mut()
        .insert("x-goog-upload-chunk-granularity", HeaderValue::from_static("8388608"));
    resp
}

fn chunk(state: &MockState, headers: &HeaderMap, upload_id: &str, body: &Bytes) -> Response {
    let res = &state.resources;
    let mut uploads = lock(&res.uploads);
    let Some((key, file, received)) = uploads.get_mut(upload_id) else {
        return google_error(404, "NOT_FOUND", "Upload session not found.", json!([]));
    };
    let command = header(headers, "x-goog-upload-command").unwrap_or("");
    let offset = header(headers, "x-goog-upload-offset").and_then(|v| v.parse::<u64>().ok());
    if offset != Some(*received) {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "The upload offset does not match the bytes received.",
            json!([]),
        );
    }
    *received += body.len() as u64;
    let size: u64 = file
        .get("sizeBytes")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if !command.contains("finalize") {
        let mut resp = StatusCode::OK.into_response();
        upload_status(&mut resp, "active");
        return resp;
    }
    if *received != size {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "The uploaded size does not match the declared size.",
            json!([]),
        );
    }
    let (key, file) = (key.clone(), file.clone());
    uploads.remove(upload_id);
    drop(uploads);
    let name = file["name"].as_str().unwrap_or_default().to_string();
    lock(&res.files).insert(name, (key, file.clone()));
    let mut resp = Json(json!({ "file": file })).into_response();
    upload_status(&mut resp, "final");
    resp
}

fn no_file(id: &str) -> Response {
    google_error(
        403,
        "PERMISSION_DENIED",
        &format!("You do not have permission to access the File {id} or it may not exist."),
        json!([]),
    )
}

fn no_cache() -> Response {
    google_error(
        403,
        "PERMISSION_DENIED",
        "CachedContent not found (or permission denied)",
        json!([]),
    )
}

/// One page of `key`'s resources (`pageSize` up to 100, `pageToken` the last name served).
fn page(all: &BTreeMap<String, (String, Value)>, key: &str, query: &HashMap<String, String>, field: &str) -> Value {
    let size = query
        .get("pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let after = query.get("pageToken").cloned().unwrap_or_default();
    let mine: Vec<&Value> = all
        .iter()
        .filter(|(name, (owner, _))| owner == key && (after.is_empty() || name.as_str() > after.as_str()))
        .map(|(_, (_, v))| v)
        .collect();
    let mut out = json!({ field: mine.iter().take(size).collect::<Vec<_>>() });
    if mine.len() > size {
        if let Some(last) = mine[size - 1].get("name") {
            out["nextPageToken"] = last.clone();
        }
    }
    if mine.is_empty() {
        out = json!({});
    }
    out
}

pub async fn list_files(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let key = match caller(&state, &headers, &query, "files".into(), None).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    Json(page(&lock(&state.resources.files), &key, &query, "files")).into_response()
}

pub async fn get_file(
    State(state): State<Arc<MockState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let key = match caller(&state, &headers, &query, format!("files/{id}"), None).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    match lock(&state.resources.files).get(&format!("files/{id}")) {
        Some((owner, file)) if *owner == key => Json(file.clone()).into_response(),
        _ => no_file(&id),
    }
}

pub async fn delete_file(
    State(state): State<Arc<MockState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let key = match caller(&state, &headers, &query, format!("files/{id}"), None).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let mut files = lock(&state.resources.files);
    let name = format!("files/{id}");
    match files.get(&name) {
        Some((owner, _)) if *owner == key => {
            files.remove(&name);
            Json(json!({})).into_response()
        }
        _ => no_file(&id),
    }
}

/// `ttl` (`"300s"`) or `expireTime` → the expiry, one hour by default as at Google.
fn expiry(body: &Value) -> Result<String, Response> {
    if let Some(t) = body.get("expireTime").and_then(Value::as_str) {
        return Ok(t.to_string());
    }
    let ttl = match body.get("ttl").and_then(Value::as_str) {
        None => 3600.0,
        Some(t) => match t.strip_suffix('s').and_then(|n| n.parse::<f64>().ok()) {
            Some(secs) if secs.is_finite() && secs >= 0.0 => secs,
            _ => {
                return Err(google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid value at 'cached_content.ttl' ({t})"),
                    json!([]),
                ))
            }
        },
    };
    Ok(rfc3339(SystemTime::now() + Duration::from_secs_f64(ttl.min(1e9))))
}

pub async fn create_cache(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let key = match caller(&state, &headers, &query, "cachedContents".into(), parsed.as_ref()).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let Some(req) = parsed else {
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", json!([]));
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return google_error(400, "INVALID_ARGUMENT", "cachedContent.model is required.", json!([]));
    };
    if let Some(resp) = state.resources.foreign(&key, &req) {
        return resp;
    }
    let expire = match expiry(&req) {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let now = rfc3339(SystemTime::now());
    let name = format!("cachedContents/{}", state.resources.id(&key));
    let cache = json!({
        "name": name,
        "model": model,
        "displayName": req.get("displayName").cloned().unwrap_or(Value::Null),
        "createTime": now,
        "updateTime": now,
        "expireTime": expire,
        "usageMetadata": {"totalTokenCount": super::count_words(&req)},
    });
    lock(&state.resources.caches).insert(name, (key, cache.clone()));
    Json(cache).into_response()
}

pub async fn list_caches(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let key = match caller(&state, &headers, &query, "cachedContents".into(), None).await {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    Json(page(&lock(&state.resources.caches), &key, &query, "cachedContents")).into_response()
}

/// `GET`, `PATCH` (`ttl`/`expireTime`) and `DELETE` of `cachedContents/{id}`.
pub async fn cache(
    State(state): State<Arc<MockState>>,
    method: axum::http::Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let key = match caller(
        &state,
        &headers,
        &query,
        format!("cachedContents/{id}"),
        parsed.as_ref(),
    )
    .await
    {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let name = format!("cachedContents/{id}");
    let mut caches = lock(&state.resources.caches);
    let Some((owner, cache)) = caches.get_mut(&name) else {
        return no_cache();
    };
    if *owner != key {
        return no_cache();
    }
    match method {
        axum::http::Method::DELETE => {
            caches.remove(&name);
            Json(json!({})).into_response()
        }
        axum::http::Method::PATCH => {
            let expire = match expiry(parsed.as_ref().unwrap_or(&json!({}))) {
                Ok(t) => t,
                Err(resp) => return resp,
            };
            cache["expireTime"] = json!(expire);
            cache["updateTime"] = json!(rfc3339(SystemTime::now()));
            Json(cache.clone()).into_response()
        }
        _ => Json(cache.clone()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000Z");
    }
}
