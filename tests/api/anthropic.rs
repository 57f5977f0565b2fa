//! Anthropic Messages API through the server: a tool loop with the thought signature carried
//! in a thinking block, streaming in Anthropic's event sequence, count_tokens, aliases, and
//! errors in Anthropic's shape.

use serde_json::{json, Value};

use crate::helpers::*;

const KEY: &str = "AIzaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const TOKEN: &str = "claude-code-token";

async fn app() -> TestApp {
    spawn_app_with(
        &[KEY],
        &[("ALLOWED_TOKENS", TOKEN), ("MODEL_ALIASES", "claude-*=gemini-2.5-pro")],
    )
    .await
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("x-api-key", TOKEN)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14,some-future-beta")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn weather_tool() -> Value {
    json!([{"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

#[tokio::test]
async fn a_tool_loop_round_trips_the_thought_signature() {
    let app = app().await;
    let first = json!({"model": "claude-sonnet-4-5", "max_tokens": 128000, "tools": weather_tool(),
        "messages": [{"role": "user", "content": "weather in Paris? [[tool:get_weather]]"}]});
    let resp = post(&app, "/v1/messages", &first).await;
    assert_eq!(resp.status(), 200);
    let msg: Value = resp.json().await.unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["model"], "claude-sonnet-4-5");
    assert_eq!(msg["stop_reason"], "tool_use", "{msg}");
    let blocks = msg["content"].as_array().unwrap();
    let thinking = blocks
        .iter()
        .find(|b| b["type"] == "thinking")
        .expect("signature block");
    assert_eq!(thinking["signature"], "bW9jay1zaWduYXR1cmU=");
    let tool = blocks.iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(tool["name"], "get_weather");
    assert_eq!(tool["input"], json!({"city": "Paris"}));
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(
        sent["generationConfig"]["maxOutputTokens"], 65536,
        "capped, not rejected"
    );
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/gemini-2.5-pro:streamGenerateContent"
    );

    let second = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "tools": weather_tool(),
    "messages": [
        {"role": "user", "content": "weather in Paris? [[tool:get_weather]]"},
        {"role": "assistant", "content": blocks},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": "sunny, 21C"}]}
    ]});
    let resp = post(&app, "/v1/messages", &second).await;
    assert_eq!(resp.status(), 200);
    let msg: Value = resp.json().await.unwrap();
    assert_eq!(msg["stop_reason"], "end_turn");
    assert!(
        msg["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("get_weather returned"),
        "{msg}"
    );
    let sent = app.mock.stats().last_body.unwrap();
    let model_turn = &sent["contents"][1]["parts"];
    let call = model_turn
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("functionCall").is_some())
        .unwrap();
    assert_eq!(call["thoughtSignature"], "bW9jay1zaWduYXR1cmU=", "{sent}");
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"result": "sunny, 21C"}})
    );
}

#[tokio::test]
async fn streams_follow_anthropics_event_sequence() {
    let app = app().await;
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 256, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "hello there [[think]]"}]});
    let resp = post(&app, "/v1/messages", &body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events: Vec<Value> = read_sse(resp)
        .await
        .into_iter()
        .map(|(d, _)| serde_json::from_str(&d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(&types[types.len() - 2..], ["message_delta", "message_stop"]);
    let thinking: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "thinking_delta")
        .map(|e| e["delta"]["thinking"].as_str().unwrap())
        .collect();
    assert_eq!(thinking, "Thinking it over.");
    let text: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "text_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Echo: hello there [[think]]");
    let starts = types.iter().filter(|t| **t == "content_block_start").count();
    let stops = types.iter().filter(|t| **t == "content_block_stop").count();
    assert_eq!((starts, stops), (2, 2));
    let delta = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true, "thinkingBudget": 2048})
    );
}

#[tokio::test]
async fn streamed_tool_use_sends_the_input_as_json_deltas() {
    let app = app().await;
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": true, "tools": weather_tool(),
        "messages": [{"role": "user", "content": "[[tool:get_weather]]"}]});
    let events: Vec<Value> = read_sse(post(&app, "/v1/messages", &body).await)
        .await
        .into_iter()
        .map(|(d, _)| serde_json::from_str(&d).unwrap())
        .collect();
    let start = events
        .iter()
        .find(|e| e["content_block"]["type"] == "tool_use")
        .expect("a tool_use block");
    assert_eq!(start["content_block"]["name"], "get_weather");
    let json: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), json!({"city": "Paris"}));
    assert!(events.iter().any(|e| e["delta"]["type"] == "signature_delta"));
    assert_eq!(events[events.len() - 2]["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn count_tokens_and_errors_in_anthropics_shape() {
    let app = app().await;
    let resp = post(
        &app,
        "/v1/messages/count_tokens",
        &json!({"model": "claude-sonnet-4-5", "system": "be brief",
            "messages": [{"role": "user", "content": "one two three"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() >= 3, "{v}");

    // No token.
    let resp = app
        .http
        .post(app.url("/v1/messages"))
        .json(&json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["error"]["type"].as_str()),
        (Some("error"), Some("authentication_error"))
    );

    // max_tokens is required, as Anthropic requires it.
    let resp = post(
        &app,
        "/v1/messages",
        &json!({"model": "claude-x", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("max_tokens"), "{e}");

    // A model no alias maps: 404 in Anthropic's shape, naming the setting.
    let resp = post(
        &app,
        "/v1/messages",
        &json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "not_found_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("MODEL_ALIASES"));

    // Google refusing the request keeps its status, in Anthropic's shape.
    let resp = post(
        &app,
        "/v1/messages",
        &json!({"model": "gemini-nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["type"], "not_found_error");
}
