//! Which pool key owns each uploaded file and cached content: Google binds them to the project
//! of the key that made them, so every later call that names one must go out on that key.
//!
//! The registry lives in memory, is written through to SQLite ([`super::store`]), and forgets an
//! entry when Google does (files after 48 h, caches at their `expireTime`). Calls find their owner
//! here ([`Resources::pin_for`]); the upload sessions of the resumable protocol are kept here too.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::error::GatewayError;
use super::store::{Store, StoredResource};

/// Google's host, which every file URI names.
pub const GOOGLE_FILES: &str = "https://generativelanguage.googleapis.com/v1beta/files/";
/// How long Google keeps a file.
pub const FILE_TTL: Duration = Duration::from_secs(48 * 3600);
/// Upload sessions older than this are forgotten (Google keeps them about a week; clients finish
/// in minutes).
const UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Bound on open upload sessions (each a few bytes; the bound only stops a flood).
const MAX_UPLOADS: usize = 10_000;

/// One owned resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    /// Fingerprint of the owning key.
    pub key: String,
    /// Digest of the client token that made it, to keep one client's resources on one key.
    pub token: Option<String>,
    pub mime: Option<String>,
    /// Unix seconds.
    pub expires: u64,
    /// When it was recorded (Unix seconds), to prefer the newest.
    pub created: u64,
}

/// A resumable upload under way: Google's upload id → the key it was started on.
#[derive(Debug, Clone)]
pub struct Upload {
    pub key: String,
    pub token: Option<String>,
    pub mime: Option<String>,
    started: SystemTime,
}

/// The key a call must use, and the resource that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    pub key: String,
    pub resource: String,
}

#[derive(Debug, Default)]
pub struct Resources {
    owned: RwLock<HashMap<String, Owned>>,
    uploads: Mutex<HashMap<String, Upload>>,
    store: Option<Store>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Resources {
    /// A registry that writes through to `store`, starting from what it held.
    pub fn new(store: Option<Store>, stored: Vec<StoredResource>) -> Self {
        let now = now_secs();
        let owned = stored
            .into_iter()
            .filter(|r| r.expires > now)
            .map(|r| {
                (
                    r.name,
                    Owned {
                        key: r.key,
                        token: r.token,
                        mime: r.mime,
                        expires: r.expires,
                        created: r.created,
                    },
                )
            })
            .collect();
        Resources {
            owned: RwLock::new(owned),
            uploads: Mutex::new(HashMap::new()),
            store,
        }
    }

    pub fn record(&self, name: &str, owned: Owned) {
        if let Some(store) = &self.store {
            store.save_resource(StoredResource {
                name: name.to_string(),
                key: owned.key.clone(),
                token: owned.token.clone(),
                mime: owned.mime.clone(),
                expires: owned.expires,
                created: owned.created,
            });
        }
        let mut map = self.owned.write().unwrap_or_else(|e| e.into_inner());
        if map.len() % 1024 == 1023 {
            let now = now_secs();
            map.retain(|_, o| o.expires > now);
        }
        map.insert(name.to_string(), owned);
    }

    /// Records what a Google resource (a File or CachedContent) says about itself, owned by
    /// `key`. Keeps the token and creation time of an entry already known.
    pub fn learn(&self, resource: &Value, key: &str, token: Option<&str>) {
        let Some(name) = resource.get("name").and_then(Value::as_str) else {
            return;
        };
        let expires = resource
            .get("expirationTime")
            .or_else(|| resource.get("expireTime"))
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
            .unwrap_or_else(|| now_secs() + FILE_TTL.as_secs());
        let known = self.owner(name);
        let owned = Owned {
            key: key.to_string(),
            token: token
                .map(str::to_string)
                .or_else(|| known.as_ref().and_then(|k| k.token.clone())),
            mime: resource
                .get("mimeType")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| known.as_ref().and_then(|k| k.mime.clone())),
            expires,
            created: known.as_ref().map_or_else(now_secs, |k| k.created),
        };
        if known.as_ref() != Some(&owned) {
            self.record(name, owned);
        }
    }

    pub fn forget(&self, name: &str) {
        let removed = self
            .owned
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some();
        if removed {
            if let Some(store) = &self.store {
                store.forget_resource(name.to_string());
            }
        }
    }

    /// The living owner of `name` (`files/…` or `cachedContents/…`).
    pub fn owner(&self, name: &str) -> Option<Owned> {
        let owned = self.owned.read().unwrap_or_else(|e| e.into_inner());
        owned.get(name).filter(|o| o.expires > now_secs()).cloned()
    }

    /// The key of this token's newest living resource: new uploads go there, so that one
    /// client's files end up on one key and can be used together.
    pub fn preferred_key(&self, token: &str) -> Option<String> {
        let now = now_secs();
        let owned = self.owned.read().unwrap_or_else(|e| e.into_inner());
        owned
            .values()
            .filter(|o| o.expires > now && o.token.as_deref() == Some(token))
            .max_by_key(|o| o.created)
            .map(|o| o.key.clone())
    }

    /// The key that must carry a call whose body names owned resources: `None` when it names
    /// none the gateway knows; a 400 naming them when they belong to different keys.
    pub fn pin_for(&self, body: &[u8]) -> Result<Option<Pin>, GatewayError> {
        let names = referenced(body);
        if names.is_empty() {
            return Ok(None);
        }
        let mut pin: Option<Pin> = None;
        let mut conflict: Vec<String> = Vec::new();
        for name in names {
            let Some(owned) = self.owner(&name) else {
                continue; // not made through this gateway: any key may try
            };
            match &pin {
                None => {
                    pin = Some(Pin {
                        key: owned.key,
                        resource: name,
                    })
                }
                Some(p) if p.key == owned.key => {}
                Some(p) => {
                    if conflict.is_empty() {
                        conflict.push(p.resource.clone());
                    }
                    conflict.push(name);
                }
            }
        }
        if !conflict.is_empty() {
            return Err(GatewayError::invalid(
                format!(
                    "These resources belong to different Gemini API keys of the pool and cannot be used in one request: {}. Upload them again with the same gateway token (its uploads share a key), or use them in separate requests.",
                    conflict.join(", ")
                ),
                None,
            ));
        }
        Ok(pin)
    }

    /// Fills in the type of each file part that lacks one, from what the upload declared.
    pub fn fill_file_types(&self, body: &mut super::gemini::GenerateContentRequest) {
        for part in body.contents.iter_mut().flat_map(|c| c.parts.iter_mut()) {
            if let Some(data) = part.file_data.as_mut().filter(|d| d.mime_type.is_none()) {
                data.mime_type = file_name(&data.file_uri)
                    .and_then(|name| self.owner(&name))
                    .and_then(|o| o.mime);
            }
        }
    }

    pub fn start_upload(&self, upload_id: &str, key: &str, token: Option<&str>, mime: Option<&str>) {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if uploads.len() >= MAX_UPLOADS {
            uploads.retain(|_, u| u.started.elapsed().is_ok_and(|age| age < UPLOAD_TTL));
            if uploads.len() >= MAX_UPLOADS {
                // Still full of live sessions: the oldest goes.
                if let Some(oldest) = uploads.iter().min_by_key(|(_, u)| u.started).map(|(k, _)| k.clone()) {
                    uploads.remove(&oldest);
                }
            }
        }
        uploads.insert(
            upload_id.to_string(),
            Upload {
                key: key.to_string(),
                token: token.map(str::to_string),
                mime: mime.map(str::to_string),
                started: SystemTime::now(),
            },
        );
    }

    pub fn upload(&self, upload_id: &str) -> Option<Upload> {
        let uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads
            .get(upload_id)
            .filter(|u| u.started.elapsed().is_ok_and(|age| age < UPLOAD_TTL))
            .cloned()
    }

    pub fn end_upload(&self, upload_id: &str) {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(upload_id);
    }
}

/// Whether a URL is a Google Files API file (used as it is, never fetched).
pub fn is_google_file(url: &str) -> bool {
    url.starts_with("https://generativelanguage.googleapis.com/") && file_name(url).is_some()
}

/// The Files API name (`files/abc`) of a file URI (`https://…/v1beta/files/abc`), if it is one.
pub fn file_name(uri: &str) -> Option<String> {
    let rest = uri.split_once("/files/")?.1;
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (!id.is_empty() && uri.starts_with("http")).then(|| format!("files/{id}"))
}

/// Every file and cached content a request body names (`fileData.fileUri` anywhere,
/// `cachedContent` at the top), in either of the JSON spellings Google accepts. Bodies that
/// mention neither are not parsed.
pub fn referenced(body: &[u8]) -> Vec<String> {
    // Built once: a finder's set-up costs more than searching a short body.
    static NEEDLES: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 4]> = std::sync::LazyLock::new(|| {
        [b"fileUri".as_slice(), b"file_uri", b"cachedContent", b"cached_content"].map(memchr::memmem::Finder::new)
    });
    if !NEEDLES.iter().any(|n| n.find(body).is_some()) {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for field in ["cachedContent", "cached_content"] {
        if let Some(name) = value.get(field).and_then(Value::as_str) {
            names.push(name.to_string());
        }
    }
    collect_file_uris(&value, &mut names, 0);
    names.dedup();
    names
}

fn collect_file_uris(v: &Value, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "fileUri" || k == "file_uri" {
                    if let Some(name) = v.as_str().and_then(file_name) {
                        if !out.contains(&name) {
                            out.push(name);
                        }
                    }
                } else {
                    collect_file_uris(v, out, depth + 1);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_file_uris(v, out, depth + 1)),
        _ => {}
    }
}

/// Unix seconds of an RFC 3339 UTC timestamp as Google writes them (`2026-12-03T10:00:00.123Z`).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(key: &str, token: Option<&str>, created: u64) -> Owned {
        Owned {
            key: key.into(),
            token: token.map(str::to_string),
            mime: None,
            expires: now_secs() + 3600,
            created,
        }
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59.123456Z"), Some(1_709_251_199));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("soon"), None);
    }

    #[test]
    fn bodies_name_their_files_and_caches() {
        let body = br#"{"cachedContent":"cachedContents/c1","contents":[{"parts":[
            {"fileData":{"fileUri":"https://generativelanguage.googleapis.com/v1beta/files/abc-1","mimeType":"image/png"}},
            {"file_data":{"file_uri":"https://generativelanguage.googleapis.com/v1beta/files/def"}},
            {"fileData":{"fileUri":"https://www.youtube.com/watch?v=x"}}]}]}"#;
        assert_eq!(referenced(body), vec!["cachedContents/c1", "files/abc-1", "files/def"]);
        assert!(referenced(br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#).is_empty());
    }

    #[test]
    fn calls_are_pinned_to_the_one_owner_or_refused() {
        let r = Resources::new(None, Vec::new());
        r.record("files/a", owned("k1", None, 1));
        r.record("files/b", owned("k1", None, 2));
        r.record("files/c", owned("k2", None, 3));
        let uri = |id: &str| format!("{GOOGLE_FILES}{id}");
        let body = |ids: &[&str]| {
            let parts: Vec<Value> = ids
                .iter()
                .map(|id| serde_json::json!({"fileData": {"fileUri": uri(id)}}))
                .collect();
            serde_json::to_vec(&serde_json::json!({"contents": [{"parts": parts}]})).unwrap_or_default()
        };
        assert_eq!(
            r.pin_for(&body(&["a", "b", "unknown"])).ok().flatten().map(|p| p.key),
            Some("k1".into())
        );
        assert_eq!(r.pin_for(&body(&["unknown"])).ok().flatten(), None);
        let err = r
            .pin_for(&body(&["a", "c"]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("files/a") && err.contains("files/c"), "{err}");
        r.forget("files/c");
        assert!(r.pin_for(&body(&["a", "c"])).is_ok());
    }

    #[test]
    fn a_token_keeps_to_its_newest_key_and_expired_entries_do_not_count() {
        let r = Resources::new(None, Vec::new());
        r.record("files/a", owned("k1", Some("t"), 1));
        r.record("files/b", owned("k2", Some("t"), 2));
        r.record("files/c", owned("k3", Some("other"), 3));
        assert_eq!(r.preferred_key("t").as_deref(), Some("k2"));
        let mut gone = owned("k9", Some("t"), 9);
        gone.expires = now_secs() - 1;
        r.record("files/d", gone);
        assert_eq!(r.preferred_key("t").as_deref(), Some("k2"));
        assert!(r.owner("files/d").is_none());
    }
}
