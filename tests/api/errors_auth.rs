//! Error shapes and statuses, client authentication, key secrecy.

use serde_json::{json, Value};

use crate::helpers::*;

const KEY: &str = "AIzaSecretKeyDoNotLeak000000000000000x7Q";

#[tokio::test]
async fn malformed_requests_get_openai_shaped_400s() {
    let app = spawn_app(&[KEY]).await;
    let url = app.url("/v1/chat/completions");
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("{not json", None),
        ("", None),
        (
            r#"{"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]} trailing"#,
            None,
        ),
        (r#"{"messages": []}"#, None),
        (
            r#"{"model": "gemini-2.5-flash", "messages": [{"role": "wizard", "content": "x"}]}"#,
            Some("messages[0].role"),
        ),
        (
            r#"{"model": "gemini-2.5-flash", "messages": [], "stream": false}"#,
            Some("messages"),
        ),
        (
            r#"{"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#,
            Some("temperature"),
        ),
        (
            r#"{"model": "../secret", "messages": [{"role": "user", "content": "x"}]}"#,
            Some("model"),
        ),
    ];
    for (body, param) in cases {
        let resp = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["type"], "invalid_request_error", "{body}");
        assert!(!err["error"]["message"].as_str().unwrap().is_empty());
        if let Some(p) = param {
            assert_eq!(err["error"]["param"], p, "{body}: {err}");
        }
    }
    assert_eq!(app.mock.stats().total, 0, "nothing bad reaches Gemini");
}

#[tokio::test]
async fn unknown_routes_and_methods_and_oversized_bodies() {
    let app = spawn_app_with(&[KEY], &[("MAX_BODY_BYTES", "2048")]).await;
    let resp = app.http.post(app.url("/v1/nonsense")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unknown_url");
    let resp = app.http.get(app.url("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.json::<Value>().await.unwrap()["error"]["message"].is_string());
    let big = chat_body(&"x".repeat(4096));
    let resp = app.chat(&big).await;
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "request_too_large");
    // The server is still up.
    assert_eq!(app.chat_json(&chat_body("still here")).await.0, 200);
}

#[tokio::test]
async fn tokens_are_required_when_configured() {
    let app = spawn_app_with(&[KEY], &[("ALLOWED_TOKENS", "tok-one,tok-two")]).await;
    let url = app.url("/v1/chat/completions");
    let resp = app.http.post(&url).json(&chat_body("x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_api_key");
    let resp = app
        .http
        .post(&url)
        .bearer_auth("tok-three")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app.http.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .http
        .post(&url)
        .bearer_auth("tok-two")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Gemini sees the pool key in its header, never the client's token.
    let stats = app.mock.stats();
    assert!(
        stats.authorization_headers.is_empty(),
        "{:?}",
        stats.authorization_headers
    );
    assert_eq!(stats.query_key_requests, 0);
    assert_eq!(stats.by_key.get(KEY), Some(&1));
}

#[tokio::test]
async fn keys_never_appear_in_responses() {
    let app = spawn_app(&[KEY]).await;
    app.mock.set(KEY, gemini_balance::mock::Behavior::Invalid);
    let resp = app.chat(&chat_body("x")).await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains(KEY), "{text}");
    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!health.contains(KEY));
    assert!(health.contains("\"available\":0"), "{health}");
}

/// Runs the release binary against the mock with `KEY` and a second key behaving as `bad`,
/// sends a few chat requests, and returns whether the first succeeded and everything it logged.
async fn binary_log(bad: &str, behavior: gemini_balance::mock::Behavior) -> (bool, String) {
    use std::io::Read;
    let mock = gemini_balance::mock::MockGemini::new();
    let addr = mock.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gemini-balance"))
        .current_dir(&dir)
        .env("GEMINI_API_KEYS", format!("{KEY},{bad}"))
        .env("GEMINI_BASE_URL", format!("http://{addr}"))
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    mock.set(bad, behavior);
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(resp) = http.post(&url).json(&chat_body("hello")).send().await {
            ok = resp.status() == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        http.post(&url)
            .json(&json!({"model": "gemini-2.5-flash", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    child.kill().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (ok, out)
}

#[tokio::test]
async fn the_binary_never_logs_keys() {
    let bad = "AIzaInvalidKeyZZZZZZZZZZZZZZZZZZZZZZZ9k";
    let (ok, out) = binary_log(bad, gemini_balance::mock::Behavior::Invalid).await;
    assert!(ok, "server did not answer: {out}");
    assert!(out.contains("upstream attempt"), "attempts are logged: {out}");
    assert!(
        out.lines()
            .any(|l| l.contains("request{id=req_") && l.contains("upstream attempt")),
        "log lines carry the request id: {out}"
    );
    assert!(out.contains("AIza…x7Q"), "masked form is logged");
    assert!(
        !out.contains(KEY) && !out.contains(bad),
        "a full key was logged:\n{out}"
    );
}

#[tokio::test]
async fn the_binary_never_logs_a_key_that_googles_message_names() {
    // A suspended consumer: Google's message (and its LocalizedMessage detail) holds the key.
    let bad = "AIzaSuspendedKeyYYYYYYYYYYYYYYYYYYYYY8m";
    let (ok, out) = binary_log(bad, gemini_balance::mock::Behavior::PermissionDenied).await;
    assert!(ok, "server did not answer: {out}");
    assert!(out.contains("permission_denied"), "the denial is logged: {out}");
    assert!(out.contains("AIza…Y8m"), "masked form is logged: {out}");
    assert!(
        !out.contains(KEY) && !out.contains(bad),
        "a full key was logged:\n{out}"
    );
}
