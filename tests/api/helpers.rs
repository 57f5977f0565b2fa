//! Test harness: a mock Gemini upstream and the real gateway, each on a free loopback port.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gemini_balance::gateway::config::Settings;
use gemini_balance::gateway::sse::SseParser;
use gemini_balance::mock::MockGemini;
use gemini_balance::server::Application;
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    pub mock: MockGemini,
    pub mock_base: String,
    pub http: reqwest::Client,
}

pub async fn spawn_app(keys: &[&str]) -> TestApp {
    spawn_app_with(keys, &[]).await
}

pub async fn spawn_app_with(keys: &[&str], extra: &[(&str, &str)]) -> TestApp {
    spawn_app_until(keys, extra, std::future::pending()).await.0
}

/// Like [`spawn_app_with`], but the app stops when `shutdown` completes; the handle ends when
/// the app has finished shutting down.
pub async fn spawn_app_until(
    keys: &[&str],
    extra: &[(&str, &str)],
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    let mock = MockGemini::new();
    let mock_addr = mock.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    spawn_gateway(mock, mock_addr, keys, extra, shutdown).await
}

/// A gateway in front of an existing mock (several replicas may share one).
pub async fn spawn_gateway(
    mock: MockGemini,
    mock_addr: std::net::SocketAddr,
    keys: &[&str],
    extra: &[(&str, &str)],
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("GEMINI_API_KEYS".into(), keys.join(",")),
        ("GEMINI_BASE_URL".into(), format!("http://{mock_addr}")),
        ("LEPTOS_SITE_ADDR".into(), "127.0.0.1:0".into()),
        ("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS".into(), "2".into()),
        ("UPSTREAM_TOTAL_TIMEOUT_SECS".into(), "10".into()),
        ("DATA_DIR".into(), temp_dir().to_string_lossy().into_owned()),
    ]);
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_map(&vars).unwrap();
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let handle = tokio::spawn(app.run_until(shutdown));
    let app = TestApp {
        base,
        mock,
        mock_base: format!("http://{mock_addr}"),
        http: reqwest::Client::new(),
    };
    (app, handle)
}

/// A fresh, empty folder for one app's data.
pub fn temp_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("gb-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn chat_body(text: &str) -> Value {
    json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": text}]})
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Sends a chat request and returns (status, JSON body).
    pub async fn chat_json(&self, body: &Value) -> (u16, Value) {
        let resp = self.chat(body).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
}

/// Reads an SSE response to its end: each event's data and when it arrived.
pub async fn read_sse(resp: reqwest::Response) -> Vec<(String, Instant)> {
    let mut out = Vec::new();
    let mut parser = SseParser::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        parser.push(&chunk);
        while let Some(ev) = parser.next_event() {
            out.push((String::from_utf8(ev.to_vec()).unwrap(), Instant::now()));
        }
    }
    out
}

pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// The admin token tests configure with `ADMIN_TOKEN`.
pub const ADMIN: &str = "admin-secret-token";

/// An admin API call with the admin token: (status, JSON body or the text as a string).
pub async fn admin(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The admin view of every key.
pub async fn keys(app: &TestApp) -> Vec<Value> {
    admin(app, reqwest::Method::GET, "/admin/api/keys", None)
        .await
        .1
        .as_array()
        .unwrap()
        .clone()
}

/// The admin id of the key whose masked form ends with `masked_tail`.
pub fn id_of(keys: &[Value], masked_tail: &str) -> String {
    keys.iter()
        .find(|k| k["masked"].as_str().unwrap().ends_with(masked_tail))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}
