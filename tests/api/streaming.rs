//! Streaming: incremental delivery, framing, failover before the first event, mid-stream
//! failures, client disconnects.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gemini_balance::mock::Behavior;
use serde_json::{json, Value};

use crate::helpers::*;

const A: &str = "AIzaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const B: &str = "AIzaKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

fn stream_body(text: &str, usage: bool) -> Value {
    json!({"model": "gemini-2.5-flash", "stream": true, "stream_options": {"include_usage": usage},
           "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn chunks_arrive_as_they_are_generated() {
    let app = spawn_app(&[A]).await;
    app.mock.set_chunk_delay(Duration::from_millis(150));
    let started = Instant::now();
    let resp = app.chat(&stream_body("one two three four five", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = read_sse(resp).await;
    let data: Vec<&str> = events.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // 6 words → 6 content chunks, then the usage chunk.
    assert_eq!(chunks.len(), 7, "{data:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Echo: one two three four five");
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..5].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
    assert_eq!(chunks[6]["choices"], json!([]));
    assert_eq!(chunks[6]["usage"]["completion_tokens"], 6);
    let ids: std::collections::HashSet<&str> = chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one id for the whole stream");
    // Spread in time: the first chunk long before the last.
    let first = events[0].1 - started;
    let spread = events[5].1 - events[0].1;
    assert!(first < Duration::from_millis(400), "first chunk after {first:?}");
    assert!(spread >= Duration::from_millis(600), "chunks spread over {spread:?}");
}

#[tokio::test]
async fn stream_without_usage_option_has_no_usage_chunk() {
    let app = spawn_app(&[A]).await;
    let events = read_sse(app.chat(&stream_body("hi", false)).await).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|(d, _)| !d.contains("\"usage\"")));
}

#[tokio::test]
async fn failover_before_the_first_event_is_invisible() {
    for behavior in [
        Behavior::ServerError { code: 503 },
        Behavior::DropMidStream { after: 0 },
        Behavior::Hang,
    ] {
        let app = spawn_app_with(&[A, B], &[("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "0.3")]).await;
        app.mock.set(A, behavior.clone());
        let resp = app.chat(&stream_body("a b", false)).await;
        assert_eq!(resp.status(), 200, "{behavior:?}");
        let events = read_sse(resp).await;
        assert_eq!(events.last().unwrap().0, "[DONE]", "{behavior:?}");
        let text: String = events[..events.len() - 1]
            .iter()
            .filter_map(|(d, _)| {
                serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(text, "Echo: a b", "{behavior:?}");
    }
}

#[tokio::test]
async fn failure_after_first_event_ends_with_error_and_no_replay() {
    let app = spawn_app(&[A, B]).await;
    app.mock.set(A, Behavior::DropMidStream { after: 2 });
    app.mock.set_chunk_delay(Duration::from_millis(100));
    let events = read_sse(app.chat(&stream_body("one two three four", false)).await).await;
    let data: Vec<&str> = events.iter().map(|(d, _)| d.as_str()).collect();
    assert!(!data.contains(&"[DONE]"), "{data:?}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].as_str().unwrap().contains("broke off"),
        "{last}"
    );
    assert_eq!(data.len(), 3, "two chunks, then the error: {data:?}");
    assert_eq!(app.mock.requests_for(B), 0, "no replay on another key");
}

#[tokio::test]
async fn stream_errors_before_commit_are_normal_error_responses() {
    let app = spawn_app(&[A]).await;
    app.mock.set(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 5.0,
            per_day: false,
        },
    );
    let resp = app.chat(&stream_body("x", false)).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let app = spawn_app(&[A]).await;
    app.mock.set_chunk_delay(Duration::from_millis(100));
    let words = (0..50).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let resp = app.chat(&stream_body(&words, false)).await;
    let mut body = resp.bytes_stream();
    use futures::StreamExt;
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    let state = app.mock.state().clone();
    let cancelled = eventually(Duration::from_secs(3), || {
        state.streams_cancelled.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(cancelled, "upstream stream was not cancelled");
    assert_eq!(state.streams_completed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn streamed_tool_calls_have_index_and_id() {
    let app = spawn_app(&[A]).await;
    let mut body = stream_body("weather [[tool:get_weather]]", false);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let events = read_sse(app.chat(&body).await).await;
    let chunks: Vec<Value> = events
        .iter()
        .filter(|(d, _)| d != "[DONE]")
        .map(|(d, _)| serde_json::from_str(d).unwrap())
        .collect();
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .unwrap();
    assert_eq!(call["index"], 0);
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn a_blocked_prompt_is_a_400_before_the_stream_starts() {
    let app = spawn_app(&[A]).await;
    let resp = app.chat(&stream_body("[[block]] bad", false)).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_filter");
    // A safety stop mid-answer is a normal stream ending in content_filter.
    let events = read_sse(app.chat(&stream_body("some [[safety]] text", false)).await).await;
    let last: Value = serde_json::from_str(&events[events.len() - 2].0).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(events.last().unwrap().0, "[DONE]");
}
