//! The edge: authentication before any body is read, the open-mode guard against web pages,
//! bounded request log (streams booked when they end, 401 floods not written), shutdown grace,
//! one port for HTTP/1.1 and HTTP/2.

use std::time::{Duration, Instant};

use gemini_balance::gateway::store::Store;
use gemini_balance::mock::Behavior;
use serde_json::{json, Value};

use crate::helpers::*;

const A: &str = "AIzaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const TOKEN: &str = "edge-token-1";

#[tokio::test]
async fn tokens_are_checked_before_any_body_is_read() {
    let app = spawn_app_with(&[A], &[("ALLOWED_TOKENS", TOKEN), ("MAX_BODY_BYTES", "2048")]).await;
    let big = json!({"contents": [{"parts": [{"text": "x".repeat(8192)}]}]});
    for path in [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        "/v1/models/gemini-2.5-flash:generateContent",
    ] {
        let resp = app.http.post(app.url(path)).json(&big).send().await.unwrap();
        assert_eq!(
            resp.status(),
            401,
            "{path}: no token gets 401 before the size is looked at"
        );
        let resp = app
            .http
            .post(app.url(path))
            .header("x-goog-api-key", TOKEN)
            .json(&big)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{path}");
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"]["status"].is_string(), "Google's shape: {err}");
    }
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .json(&chat_body(&"y".repeat(8192)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(app.mock.stats().total, 0);
}

#[tokio::test]
async fn open_mode_answers_only_this_machine_and_json() {
    let app = spawn_app(&[A]).await;
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1.
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .header("host", "evil.example:3000")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("ALLOWED_TOKENS"));
    // A cross-site form or text/plain POST (no CORS preflight needed by the browser).
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let resp = app
            .http
            .post(app.url("/v1/chat/completions"))
            .header("content-type", ct)
            .body(chat_body("hi").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415, "{ct}");
    }
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("content-type", "text/plain")
        .body(json!({"contents": [{"parts": [{"text": "hi"}]}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        err["error"]["status"], "INVALID_ARGUMENT",
        "Google's shape on Google's routes"
    );
    assert_eq!(app.mock.stats().total, 0);
    // The real thing still works, by name or by address.
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .header("host", "localhost")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.chat_json(&chat_body("hi")).await.0, 200);
}

#[tokio::test]
async fn streams_are_logged_when_they_end_and_401_floods_are_not_logged() {
    let data = temp_dir();
    let dir = data.to_string_lossy().into_owned();
    let app = spawn_app_with(&[A], &[("ALLOWED_TOKENS", TOKEN), ("DATA_DIR", &dir)]).await;
    app.mock.set(
        A,
        Behavior::Slow {
            delay_ms: 100,
            first_event_ms: Some(0),
        },
    );
    for _ in 0..50 {
        let resp = app
            .http
            .post(app.url("/v1/chat/completions"))
            .json(&chat_body("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let started = Instant::now();
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "gemini-2.5-flash", "stream": true,
            "messages": [{"role": "user", "content": "one two three four five six"}]}))
        .send()
        .await
        .unwrap();
    let events = read_sse(resp).await;
    let took = started.elapsed();
    assert_eq!(events.last().unwrap().0, "[DONE]");

    // A client that walks away mid-stream.
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "gemini-2.5-flash", "stream": true,
            "messages": [{"role": "user", "content": "a b c d e f g h i j k l m n o p"}]}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    use futures::StreamExt;
    let _ = body.next().await;
    drop(body);

    let mut rows = Vec::new();
    let found = eventually(Duration::from_secs(5), || {
        rows = Store::recent_log(&data, 100).unwrap_or_default();
        rows.len() >= 2
    })
    .await;
    assert!(found, "{rows:?}");
    assert!(rows.iter().all(|r| r.status != 401), "401s are not logged: {rows:?}");
    let done = rows
        .iter()
        .find(|r| r.error_class.is_empty())
        .expect("the finished stream");
    assert!(done.tokens > 0, "the stream's real token count: {done:?}");
    assert!(
        done.latency_ms as u128 >= took.as_millis() / 2 && done.latency_ms >= 400,
        "booked at its end: {done:?} vs {took:?}"
    );
    assert!(rows.iter().any(|r| r.error_class == "client_closed"), "{rows:?}");
}

#[tokio::test]
async fn shutdown_lets_streams_finish_within_the_grace_period() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (app, handle) = spawn_app_until(&[A], &[("SHUTDOWN_GRACE_SECS", "5")], async move {
        let _ = rx.await;
    })
    .await;
    app.mock.set(
        A,
        Behavior::Slow {
            delay_ms: 200,
            first_event_ms: Some(0),
        },
    );
    let resp = app
        .chat(&json!({"model": "gemini-2.5-flash", "stream": true,
            "messages": [{"role": "user", "content": "one two three four five six seven"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let _ = tx.send(());
    let events = read_sse(resp).await;
    assert_eq!(
        events.last().unwrap().0,
        "[DONE]",
        "the stream in flight finished: {events:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        app.http.get(app.url("/healthz")).send().await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_past_the_grace_period() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (app, handle) = spawn_app_until(&[A], &[("SHUTDOWN_GRACE_SECS", "1")], async move {
        let _ = rx.await;
    })
    .await;
    app.mock.set(
        A,
        Behavior::Slow {
            delay_ms: 1000,
            first_event_ms: Some(0),
        },
    );
    let resp = app
        .chat(&json!({"model": "gemini-2.5-flash", "stream": true,
            "messages": [{"role": "user", "content": "a b c d e f g h i j"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(4), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(&[A], &[("HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was left open");
    assert!(started.elapsed() < Duration::from_secs(4));
    // Others are served as usual.
    assert_eq!(app.chat_json(&chat_body("fine")).await.0, 200);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_deadline_and_at_shutdown() {
    use tokio::io::AsyncReadExt;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (app, handle) = spawn_app_until(
        &[A],
        &[("HEADER_READ_TIMEOUT_SECS", "1"), ("SHUTDOWN_GRACE_SECS", "20")],
        async move {
            let _ = rx.await;
        },
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Sends nothing at all: closed at the header deadline.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a connection that never spoke was left open");
    // A silent connection does not hold shutdown up for the grace period.
    let _held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("shutdown waited on a connection that had sent nothing")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// HTTP/1.1 and cleartext HTTP/2 share the port; a request that arrives a byte at a time is
/// still read as HTTP/1.1 (its first byte, `P`, could begin HTTP/2's preface).
#[tokio::test]
async fn http1_and_http2_prior_knowledge_share_the_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(&[A]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let body = chat_body("hello there").to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for (i, byte) in request.as_bytes().iter().enumerate() {
        conn.write_all(&[*byte]).await.unwrap();
        if i < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("chat.completion"), "{answer}");

    // HTTP/2 with prior knowledge: the preface (split too) is answered with the server's
    // SETTINGS frame (type 4 on stream 0).
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"PR").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    conn.write_all(b"I * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut frame))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame[3], 4, "a SETTINGS frame: {frame:?}");
    assert_eq!(&frame[5..9], &[0, 0, 0, 0], "on stream 0: {frame:?}");
}
