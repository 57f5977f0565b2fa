//! The Files API and cached contents through the pool: a client's uploads gather on one key,
//! every read or change of a resource goes to the key that owns it ([`super::owners`]), and
//! listings walk every key's resources as one list with its own page tokens.

use base64::Engine;
use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value};

use super::error::GatewayError;
use super::gemini::ErrorBody;
use super::service::Gateway;
use super::upstream::Call;

/// `files` or `cachedContents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Files,
    CachedContents,
}

impl Kind {
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Files => "files",
            Kind::CachedContents => "cachedContents",
        }
    }
}

/// An answer to pass on: Google's body and the upload protocol's headers.
#[derive(Debug)]
pub struct Passed {
    pub body: Bytes,
    /// `x-goog-upload-*` headers, lowercase (the upload URL still Google's).
    pub upload_headers: Vec<(String, String)>,
}

/// The headers of the resumable upload protocol a client may send.
pub const UPLOAD_HEADERS: &[&str] = &[
    "x-goog-upload-protocol",
    "x-goog-upload-command",
    "x-goog-upload-offset",
    "x-goog-upload-header-content-length",
    "x-goog-upload-header-content-type",
];

fn not_found(message: &str) -> GatewayError {
    GatewayError::UpstreamRejected {
        status: 404,
        error: ErrorBody::new(404, "NOT_FOUND", message),
    }
}

/// The upload id in an upload URL's query.
pub fn upload_id(url: &str) -> Option<&str> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("upload_id="))
        .filter(|id| !id.is_empty())
}

/// A resource id as the client wrote it, checked: letters, digits, `-` and `_`.
pub fn resource_id(id: &str) -> Result<&str, GatewayError> {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(id)
    } else {
        Err(GatewayError::invalid(
            format!("`{id}` is not a valid resource id"),
            Some("name"),
        ))
    }
}

fn encode_page(key: &str, token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{key}\n{token}"))
}

fn decode_page(token: &str) -> Result<(String, String), GatewayError> {
    let bad = || GatewayError::invalid("pageToken is not one this gateway issued", Some("pageToken"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (key, upstream) = text.split_once('\n').ok_or_else(bad)?;
    Ok((key.to_string(), upstream.to_string()))
}

fn parse(body: &[u8]) -> Result<Value, GatewayError> {
    serde_json::from_slice(body).map_err(|e| GatewayError::BadUpstreamResponse {
        message: format!("unreadable answer from Gemini: {e}"),
    })
}

impl Gateway {
    /// Starts a resumable upload (`X-Goog-Upload-Command: start`) on the client's usual key, or
    /// the next one in rotation. Returns Google's answer and remembers the session's key.
    pub async fn upload_start(
        &self,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
        token: &str,
    ) -> Result<Passed, GatewayError> {
        let resources = self.upstream().resources();
        let mime = headers
            .iter()
            .find(|(n, _)| *n == "x-goog-upload-header-content-type")
            .map(|(_, v)| v.clone());
        let mut call = Call::post("/upload/v1beta/files", "", body);
        call.headers = headers;
        call.prefer = resources.preferred_key(token);
        let answer = self.upstream().send(&call).await?;
        if let Some(id) = answer
            .upload_headers
            .iter()
            .find(|(n, _)| n == "x-goog-upload-url")
            .and_then(|(_, url)| upload_id(url))
        {
            resources.start_upload(id, &answer.fingerprint, Some(token), mime.as_deref());
        }
        Ok(Passed {
            body: answer.body,
            upload_headers: answer.upload_headers,
        })
    }

    /// Sends a piece of an upload (`upload`, `upload, finalize`, `query`…) to the key the
    /// session started on. A finished upload's file is recorded as that key's.
    pub async fn upload_chunk(
        &self,
        upload_id: &str,
        headers: Vec<(&'static str, String)>,
        content_type: Option<String>,
        body: Bytes,
    ) -> Result<Passed, GatewayError> {
        let resources = self.upstream().resources();
        let Some(session) = resources.upload(upload_id) else {
            return Err(not_found(
                "Upload session not found: it was not started through this gateway, or it expired.",
            ));
        };
        let mut call = Call::post("/upload/v1beta/files", "", body)
            .with_query(format!("upload_id={upload_id}&upload_protocol=resumable"))
            .slow();
        call.headers = headers;
        call.content_type = content_type.or_else(|| Some("application/octet-stream".into()));
        call.pin = Some(session.key.clone());
        let answer = self.upstream().send(&call).await?;
        let finished = answer
            .upload_headers
            .iter()
            .any(|(n, v)| n == "x-goog-upload-status" && v == "final");
        if finished {
            resources.end_upload(upload_id);
            if let Some(file) = parse(&answer.body)?.get("file") {
                resources.learn(file, &session.key, session.token.as_deref());
            }
        }
        Ok(Passed {
            body: answer.body,
            upload_headers: answer.upload_headers,
        })
    }

    /// `GET`, `PATCH` or `DELETE` of one file or cached content, on the key that owns it (or,
    /// for a resource made elsewhere, on keys in rotation).
    pub async fn resource(
        &self,
        kind: Kind,
        id: &str,
        method: Method,
        query: Option<String>,
        body: Option<Bytes>,
    ) -> Result<Bytes, GatewayError> {
        let name = format!("{}/{}", kind.collection(), resource_id(id)?);
        let resources = self.upstream().resources();
        let mut call = Call::get(format!("/v1beta/{name}"));
        call.method = method.clone();
        call.query = query;
        call.body = body;
        call.pin = resources.owner(&name).map(|o| o.key);
        let answer = self.upstream().send(&call).await?;
        if method == Method::DELETE {
            resources.forget(&name);
        } else if let Ok(value) = serde_json::from_slice::<Value>(&answer.body) {
            resources.learn(&value, &answer.fingerprint, None);
        }
        Ok(answer.body)
    }

    /// Creates a cached content on the key that owns the files it names, else on the client's
    /// usual key, and records it as that key's.
    pub async fn create_cache(&self, body: Bytes, token: &str) -> Result<Bytes, GatewayError> {
        let resources = self.upstream().resources();
        let mut call = Call::post("/v1beta/cachedContents", "", body);
        call.prefer = resources.preferred_key(token);
        let answer = self.upstream().send(&call).await?;
        resources.learn(&parse(&answer.body)?, &answer.fingerprint, Some(token));
        Ok(answer.body)
    }

    /// One page of every key's files or cached contents, key after key. The page token names
    /// the key and Google's own token for it.
    pub async fn list_resources(
        &self,
        kind: Kind,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Value, GatewayError> {
        let collection = kind.collection();
        let keys = self.upstream().pool().fingerprints();
        let (mut index, mut token) = match page_token.filter(|t| !t.is_empty()) {
            None => (0, String::new()),
            Some(t) => {
                let (key, token) = decode_page(t)?;
                match keys.binary_search(&key) {
                    Ok(i) => (i, token),
                    // That key left the pool: go on with the next one.
                    Err(i) => (i, String::new()),
                }
            }
        };
        let size = page_size.unwrap_or(10).clamp(1, 100);
        let resources = self.upstream().resources();
        let mut items: Vec<Value> = Vec::new();
        let mut failure: Option<GatewayError> = None;
        let mut reached = 0;
        while index < keys.len() {
            let mut query = format!("pageSize={size}");
            if !token.is_empty() {
                query.push_str("&pageToken=");
                query.push_str(&urlencode(&token));
            }
            let mut call = Call::get(format!("/v1beta/{collection}")).with_query(query);
            call.pin = Some(keys[index].clone());
            match self.upstream().send(&call).await {
                Ok(answer) => {
                    reached += 1;
                    let page = parse(&answer.body)?;
                    if let Some(list) = page.get(collection).and_then(Value::as_array) {
                        for item in list {
                            resources.learn(item, &keys[index], None);
                        }
                        items.extend(list.iter().cloned());
                    }
                    if let Some(next) = page.get("nextPageToken").and_then(Value::as_str) {
                        return Ok(json!({ collection: items, "nextPageToken": encode_page(&keys[index], next) }));
                    }
                }
                Err(e) => {
                    // A key that cannot answer now (disabled, cooling) hides its resources from
                    // this page only.
                    tracing::debug!(error = %e, "a key's listing was skipped");
                    failure = Some(e);
                }
            }
            index += 1;
            token.clear();
            if !items.is_empty() && index < keys.len() {
                return Ok(json!({ collection: items, "nextPageToken": encode_page(&keys[index], "") }));
            }
        }
        match failure {
            Some(e) if reached == 0 => Err(e),
            _ if items.is_empty() => Ok(json!({})),
            _ => Ok(json!({ collection: items })),
        }
    }
}

impl Gateway {
    /// Uploads a whole file in one piece (the OpenAI `POST /v1/files` route), on the client's
    /// usual key, and returns Google's File resource.
    pub async fn upload_file(
        &self,
        bytes: Bytes,
        mime: &str,
        display_name: Option<&str>,
        token: &str,
    ) -> Result<Value, GatewayError> {
        let start = vec![
            ("x-goog-upload-protocol", "resumable".to_string()),
            ("x-goog-upload-command", "start".to_string()),
            ("x-goog-upload-header-content-length", bytes.len().to_string()),
            ("x-goog-upload-header-content-type", mime.to_string()),
        ];
        let meta = json!({ "file": { "displayName": display_name } });
        let started = self.upload_start(start, Bytes::from(meta.to_string()), token).await?;
        let id = started
            .upload_headers
            .iter()
            .find(|(n, _)| n == "x-goog-upload-url")
            .and_then(|(_, url)| upload_id(url))
            .ok_or_else(|| GatewayError::BadUpstreamResponse {
                message: "Gemini started no upload (no X-Goog-Upload-URL)".into(),
            })?
            .to_string();
        let finish = vec![
            ("x-goog-upload-command", "upload, finalize".to_string()),
            ("x-goog-upload-offset", "0".to_string()),
        ];
        let done = self.upload_chunk(&id, finish, Some(mime.to_string()), bytes).await?;
        parse(&done.body)?
            .get("file")
            .cloned()
            .ok_or_else(|| GatewayError::BadUpstreamResponse {
                message: "Gemini finished the upload without a file".into(),
            })
    }
}

/// Google's File resource as an OpenAI file object (`id` is `file-` and Google's id).
pub fn openai_file(file: &Value, purpose: &str) -> Value {
    let text = |field: &str| file.get(field).and_then(Value::as_str);
    let time = |field: &str| text(field).and_then(super::owners::parse_rfc3339);
    json!({
        "id": openai_file_id(text("name").unwrap_or_default()),
        "object": "file",
        "bytes": text("sizeBytes").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0),
        "created_at": time("createTime").unwrap_or(0),
        "expires_at": time("expirationTime"),
        "filename": text("displayName").unwrap_or_default(),
        "purpose": purpose,
        "status": if text("state") == Some("FAILED") { "error" } else { "processed" },
    })
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The upload headers of a client's request, as the upstream call carries them.
pub fn upload_headers<'a>(mut get: impl FnMut(&str) -> Option<&'a str>) -> Vec<(&'static str, String)> {
    UPLOAD_HEADERS
        .iter()
        .filter_map(|name| get(name).map(|v| (*name, v.to_string())))
        .collect()
}

/// The OpenAI-style file id (`file-…`) of a Files API name, and back.
pub fn openai_file_id(name: &str) -> String {
    format!("file-{}", name.trim_start_matches("files/"))
}

pub fn file_name_of_openai_id(id: &str) -> Option<String> {
    let bare = id.strip_prefix("file-").or_else(|| id.strip_prefix("files/"))?;
    resource_id(bare).ok().map(|b| format!("files/{b}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_strangers() {
        let t = encode_page("ab12", "next/page==");
        assert_eq!(
            decode_page(&t).ok(),
            Some(("ab12".to_string(), "next/page==".to_string()))
        );
        assert!(decode_page("not a token!").is_err());
    }

    #[test]
    fn upload_ids_and_resource_ids() {
        assert_eq!(
            upload_id("https://x/upload/v1beta/files?upload_id=AB-c_1&upload_protocol=resumable"),
            Some("AB-c_1")
        );
        assert_eq!(upload_id("https://x/upload/v1beta/files"), None);
        assert!(resource_id("abc-1_2").is_ok());
        assert!(resource_id("../models").is_err());
        assert_eq!(file_name_of_openai_id("file-abc").as_deref(), Some("files/abc"));
        assert_eq!(openai_file_id("files/abc"), "file-abc");
    }
}
