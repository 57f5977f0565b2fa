//! OpenAI Responses API through the server: tool loops (function and Codex-style custom tools)
//! with the thought signature in a reasoning item, the numbered stream event sequence,
//! `previous_response_id` per token, Gemini 3's signature rule, failures after the first event,
//! and errors in OpenAI's shape.

use std::time::Duration;

use gemini_balance::mock::Behavior;
use serde_json::{json, Value};

use crate::helpers::*;

const KEY: &str = "AIzaKeyRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR";
const DEAD: &str = "AIzaKeyinvalidRRRRRRRRRRRRRRRRRRRRRRRRR";
const TOKEN: &str = "codex-token";
const OTHER: &str = "other-token";

async fn app(keys: &[&str]) -> TestApp {
    spawn_app_with(
        keys,
        &[
            ("ALLOWED_TOKENS", &format!("{TOKEN},{OTHER}")),
            ("MODEL_ALIASES", "gpt-5*=gemini-2.5-pro,gpt-g3=gemini-3-pro-preview"),
        ],
    )
    .await
}

async fn post_as(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/responses"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn create(app: &TestApp, body: &Value) -> (u16, Value) {
    let resp = post_as(app, TOKEN, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// The SSE stream as (event name, data) pairs, read whole.
async fn stream(app: &TestApp, body: &Value) -> Vec<(String, Value)> {
    let resp = post_as(app, TOKEN, body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

fn tools() -> Value {
    json!([
        {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": true,
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}},
        {"type": "custom", "name": "apply_patch", "description": "Edit files",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    ])
}

#[tokio::test]
async fn a_function_tool_loop_round_trips_the_thought_signature() {
    let app = app(&[KEY]).await;
    let question = json!({"role": "user", "content": "weather in Paris? [[tool:get_weather]]"});
    let (status, first) = create(
        &app,
        &json!({"model": "gpt-5-codex", "input": [question], "tools": tools(),
                "reasoning": {"effort": "medium", "summary": "auto"}, "max_output_tokens": 100000}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["object"], "response");
    assert_eq!(first["model"], "gpt-5-codex", "the name the client sent");
    assert_eq!(first["status"], "completed");
    let output = first["output"].as_array().unwrap();
    let reasoning = output
        .iter()
        .find(|i| i["type"] == "reasoning")
        .expect("a reasoning item");
    assert_eq!(reasoning["encrypted_content"], "bW9jay1zaWduYXR1cmU=");
    let call = output.iter().find(|i| i["type"] == "function_call").expect("a call");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(
        sent["generationConfig"]["maxOutputTokens"], 65536,
        "capped, not rejected"
    );
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/gemini-2.5-pro:streamGenerateContent"
    );

    // The client sends everything back, as stateless clients (Codex with store: false) do.
    let mut input = vec![question];
    input.extend(output.iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21C"}));
    let (status, second) = create(
        &app,
        &json!({"model": "gpt-5-codex", "input": input, "tools": tools(), "store": false}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let text = second["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("get_weather returned"), "{second}");
    assert!(second["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let sent = app.mock.stats().last_body.unwrap();
    let model_turn = sent["contents"][1]["parts"].as_array().unwrap();
    let call_part = model_turn.iter().find(|p| p.get("functionCall").is_some()).unwrap();
    assert_eq!(call_part["thoughtSignature"], "bW9jay1zaWduYXR1cmU=", "{sent}");
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"result": "sunny, 21C"}})
    );
}

#[tokio::test]
async fn custom_tools_come_back_as_custom_tool_calls() {
    let app = app(&[KEY]).await;
    let question = json!({"role": "user", "content": [{"type": "input_text", "text": "fix it [[tool:apply_patch]]"}]});
    let (status, first) = create(&app, &json!({"model": "gpt-5", "input": [question], "tools": tools()})).await;
    assert_eq!(status, 200, "{first}");
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "custom_tool_call")
        .expect("a custom tool call")
        .clone();
    assert_eq!(call["name"], "apply_patch");
    assert!(call["input"].is_string());
    let sent = app.mock.stats().last_body.unwrap();
    let decl = &sent["tools"][0]["functionDeclarations"][1];
    assert_eq!(decl["name"], "apply_patch");
    assert!(decl["description"].as_str().unwrap().contains("lark grammar"));

    // Continued by previous_response_id: only the tool output is sent.
    let (status, second) = create(
        &app,
        &json!({"model": "gpt-5", "previous_response_id": first["id"], "tools": tools(),
                "input": [{"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done!"}]}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], first["id"]);
    let sent = app.mock.stats().last_body.unwrap();
    let turns = sent["contents"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "question, call, output: {sent}");
    assert_eq!(turns[0]["parts"][0]["text"], "fix it [[tool:apply_patch]]");
    assert_eq!(turns[2]["parts"][0]["functionResponse"]["name"], "apply_patch");

    // Another token cannot continue it.
    let resp = post_as(
        &app,
        OTHER,
        &json!({"model": "gpt-5", "previous_response_id": first["id"], "input": "hi"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "previous_response_id");
    assert_eq!(e["error"]["type"], "invalid_request_error");

    // store: false keeps nothing.
    let (_, unstored) = create(&app, &json!({"model": "gpt-5", "input": "hi", "store": false})).await;
    assert_eq!(unstored["store"], false);
    let (status, e) = create(
        &app,
        &json!({"model": "gpt-5", "previous_response_id": unstored["id"], "input": "again"}),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("not found"));
}

#[tokio::test]
async fn streams_follow_openais_event_sequence() {
    let app = app(&[KEY]).await;
    let events = stream(
        &app,
        &json!({"model": "gpt-5", "input": "hello there [[think]]", "stream": true,
                "reasoning": {"summary": "auto"}}),
    )
    .await;
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"].as_str(), Some(name.as_str()), "event name = data type");
        assert_eq!(data["sequence_number"], i as u64);
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["response.created", "response.in_progress", "response.output_item.added"]
    );
    assert_eq!(names.last(), Some(&"response.completed"));
    let summary: String = events
        .iter()
        .filter(|(n, _)| n == "response.reasoning_summary_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(summary, "Thinking it over.");
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Echo: hello there [[think]]");
    assert!(
        names.iter().filter(|n| **n == "response.output_text.delta").count() > 3,
        "event by event"
    );
    for kind in [
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
    ] {
        assert!(names.contains(&kind), "{kind} missing: {names:?}");
    }
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    let message = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "message")
        .unwrap();
    assert_eq!(message["content"][0]["text"], text);
    assert!(done["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        app.mock.stats().last_body.unwrap()["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true})
    );

    // Streamed calls: arguments as deltas, then done, then the item.
    let events = stream(
        &app,
        &json!({"model": "gpt-5", "input": "[[tool:get_weather]]", "stream": true, "tools": tools()}),
    )
    .await;
    let args: String = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "Paris"}));
    let done = &events.last().unwrap().1["response"];
    let kinds: Vec<&str> = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["message", "reasoning", "function_call"]);
}

#[tokio::test]
async fn max_tokens_make_an_incomplete_response() {
    let app = app(&[KEY]).await;
    let (status, r) = create(
        &app,
        &json!({"model": "gpt-5", "input": "one two three four five six", "max_output_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    let events = stream(
        &app,
        &json!({"model": "gpt-5", "input": "one two three four five six", "max_output_tokens": 2, "stream": true}),
    )
    .await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.incomplete");
    assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
}

#[tokio::test]
async fn gemini_3_gets_the_placeholder_when_a_client_dropped_the_signature() {
    let app = app(&[KEY]).await;
    // Without a signature the mock, like Gemini 3, refuses the call turn.
    let unsigned = json!({"contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "ok"}}}]}]});
    let direct = app
        .http
        .post(format!(
            "{}/v1beta/models/gemini-3-pro-preview:generateContent",
            app.mock_base
        ))
        .header("x-goog-api-key", KEY)
        .json(&unsigned)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 400);

    let (status, r) = create(
        &app,
        &json!({"model": "gpt-g3", "tools": tools(), "input": [
            {"role": "user", "content": "go"},
            {"type": "function_call", "call_id": "call_x", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_x", "output": "ok"}]}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"],
        "skip_thought_signature_validator"
    );
}

#[tokio::test]
async fn failover_before_the_first_event_and_response_failed_after_it() {
    let pool = app(&[DEAD, KEY]).await;
    pool.mock.set(DEAD, Behavior::Invalid);
    for _ in 0..2 {
        let (status, r) = create(&pool, &json!({"model": "gpt-5", "input": "hi"})).await;
        assert_eq!(status, 200, "the dead key is skipped: {r}");
    }

    let app = app(&[KEY]).await;
    app.mock.set(KEY, Behavior::DropMidStream { after: 2 });
    app.mock.set_chunk_delay(Duration::from_millis(20));
    let events = stream(
        &app,
        &json!({"model": "gpt-5", "input": "one two three four", "stream": true}),
    )
    .await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert!(!last["response"]["error"]["message"].as_str().unwrap().is_empty());
    let deltas = events.iter().filter(|(n, _)| n == "response.output_text.delta").count();
    assert_eq!(deltas, 2, "what was sent is not replayed");
    assert!(!events.iter().any(|(n, _)| n == "response.completed"));
    assert_eq!(app.mock.requests_for(KEY), 1, "no retry after the first event");
}

#[tokio::test]
async fn errors_in_openais_shape() {
    let app = app(&[KEY]).await;
    let resp = app
        .http
        .post(app.url("/v1/responses"))
        .json(&json!({"model": "gpt-5", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_api_key");

    let (status, e) = create(&app, &json!({"model": "claude-opus", "input": "x"})).await;
    assert_eq!(status, 404, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("MODEL_ALIASES"), "{e}");

    let (status, e) = create(
        &app,
        &json!({"model": "gpt-5", "input": "x", "tools": [{"type": "code_interpreter"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["param"], "tools[0].type");
    assert!(e["error"]["message"].as_str().unwrap().contains("code_interpreter"));

    let (status, e) = create(&app, &json!({"model": "gpt-5", "input": 42})).await;
    assert_eq!(status, 400, "{e}");
    let (status, _) = create(
        &app,
        &json!({"model": "gpt-5", "input": "x", "reasoning": {"effort": "extreme"}}),
    )
    .await;
    assert_eq!(status, 400);

    // The same route under /api/v1.
    let resp = app
        .http
        .post(app.url("/api/v1/responses"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "gemini-2.5-flash", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/gemini-2.5-flash:streamGenerateContent"
    );
}
