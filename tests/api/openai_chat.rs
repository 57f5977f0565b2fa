//! Non-streaming chat completions and model listing through the gateway.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn chat_completion_is_translated_both_ways() {
    let app = spawn_app(&["key-aaaaaaaaaaaa1"]).await;
    let (status, body) = app
        .chat_json(&json!({
            "model": "gemini-2.5-flash",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Hello there friend"}
            ],
            "temperature": 0.2, "max_tokens": 100, "stop": ["\n\n"]
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "gemini-2.5-flash");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "Echo: Hello there friend");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 4);
    assert_eq!(body["usage"]["total_tokens"], 9);

    // What Gemini received.
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(sent["systemInstruction"], json!({"parts": [{"text": "Be terse."}]}));
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "Hello there friend"}]}])
    );
    assert_eq!(
        sent["generationConfig"],
        json!({"temperature": 0.2, "maxOutputTokens": 100, "stopSequences": ["\n\n"]})
    );
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/gemini-2.5-flash:streamGenerateContent"
    );
}

#[tokio::test]
async fn api_v1_prefix_and_finish_reasons() {
    let app = spawn_app(&["key-aaaaaaaaaaaa1"]).await;
    let resp = app
        .http
        .post(app.url("/api/v1/chat/completions"))
        .json(&json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "one two three four five"}], "max_completion_tokens": 2}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["choices"][0]["message"]["content"], "Echo: one");

    let (_, body) = app.chat_json(&chat_body("unsafe [[safety]] stuff")).await;
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");

    let (status, body) = app.chat_json(&chat_body("[[block]]")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "content_filter");

    let (status, body) = app
        .chat_json(&json!({"model": "gemini-2.5-flash", "n": 2, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
    assert_eq!(body["choices"][1]["index"], 1);
}

#[tokio::test]
async fn models_are_listed_in_openai_shape() {
    let app = spawn_app(&["key-aaaaaaaaaaaa1"]).await;
    for path in ["/v1/models", "/api/v1/models"] {
        let body: serde_json::Value = app.http.get(app.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["object"], "list");
        let ids: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"gemini-2.5-flash"), "{ids:?}");
        assert!(ids.iter().all(|id| !id.starts_with("models/")));
        assert_eq!(body["data"][0]["object"], "model");
    }
}

#[tokio::test]
async fn empty_answer_is_retried_once_on_another_key() {
    let app = spawn_app(&["key-aaaaaaaaaaaa1", "key-bbbbbbbbbbbb2"]).await;
    let (status, body) = app.chat_json(&chat_body("[[empty]]")).await;
    // Both answers are empty: the second is returned as is (no invented content).
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.mock.stats().total, 2);
    assert_eq!(app.mock.requests_for("key-aaaaaaaaaaaa1"), 1);
    assert_eq!(app.mock.requests_for("key-bbbbbbbbbbbb2"), 1);
}

#[tokio::test]
async fn tool_calls_come_back_as_openai_tool_calls() {
    let app = spawn_app(&["key-aaaaaaaaaaaa1"]).await;
    let (status, body) = app
        .chat_json(&json!({"model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "weather? [[tool:get_weather]]"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    // Send the result back: the signature and the function name reach Gemini.
    let id = call["id"].as_str().unwrap();
    let (status, body) = app
        .chat_json(&json!({"model": "gemini-2.5-flash", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "{\"temp\": 21}"}
        ]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "The tool get_weather returned {\"temp\":21}"
    );
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"],
        "bW9jay1zaWduYXR1cmU="
    );
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );
}

#[tokio::test]
async fn logprobs_and_grounding_reach_the_client() {
    let app = spawn_app(&["key-aaaaaaaaaaaa1"]).await;
    let (status, body) = app
        .chat_json(
            &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi there"}],
            "logprobs": true, "top_logprobs": 2, "google": {"tools": [{"google_search": {}}]}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(sent["generationConfig"]["responseLogprobs"], true);
    assert_eq!(sent["generationConfig"]["logprobs"], 2);
    assert_eq!(sent["tools"], json!([{"googleSearch": {}}]));
    let tokens: Vec<&str> = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["Echo:", "hi", "there"]);
    assert_eq!(
        body["choices"][0]["message"]["annotations"][0]["url_citation"]["url"],
        "https://example.com/source"
    );
}

#[tokio::test]
async fn model_aliases_map_foreign_names_on_every_route() {
    let app = spawn_app(&["key-aaaaaaaaaaaa1"]).await;
    let (status, err) = app
        .chat_json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], "model_not_found");
    assert!(err["error"]["message"].as_str().unwrap().contains("MODEL_ALIASES"));
    assert_eq!(app.mock.stats().total, 0);

    let app = spawn_app_with(
        &["key-aaaaaaaaaaaa1"],
        &[(
            "MODEL_ALIASES",
            "claude-*haiku*=gemini-2.0-flash,claude-*=gemini-2.5-pro,gpt-4o=gemini-2.5-flash",
        )],
    )
    .await;
    let (status, body) = app
        .chat_json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "gpt-4o", "answers report the name the client sent");
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/gemini-2.5-flash:streamGenerateContent"
    );
    let resp = app
        .http
        .post(app.url("/v1beta/models/claude-3-5-haiku:generateContent"))
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/gemini-2.0-flash:streamGenerateContent"
    );
    let models: serde_json::Value = app
        .http
        .get(app.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"gpt-4o") && ids.contains(&"gemini-2.5-pro"), "{ids:?}");
}

#[tokio::test]
async fn model_suffixes_ask_for_search_thinking_and_images() {
    let app = spawn_app_with(&["key-aaaaaaaaaaaa1"], &[("MODEL_ALIASES", "gpt-*=gemini-2.5-pro")]).await;
    let (status, body) = app
        .chat_json(&json!({"model": "gemini-2.5-flash-search-thinking",
            "messages": [{"role": "user", "content": "news?"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["model"], "gemini-2.5-flash-search-thinking",
        "the name the client sent"
    );
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/gemini-2.5-flash:streamGenerateContent"
    );
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(sent["tools"], json!([{"googleSearch": {}}]));
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true, "thinkingBudget": -1})
    );
    assert!(
        body["choices"][0]["message"]["annotations"].is_array(),
        "grounding came back: {body}"
    );

    // Suffixes on an aliased name; -nothinking on 2.5 Pro is its smallest budget.
    let (status, _) = app
        .chat_json(&json!({"model": "gpt-4o-nothinking", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 200);
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 128})
    );
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/gemini-2.5-pro:streamGenerateContent"
    );

    let list: serde_json::Value = app
        .http
        .get(app.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "gemini-2.5-flash-search",
        "gemini-2.5-flash-thinking",
        "gemini-2.5-flash-nothinking",
    ] {
        assert!(ids.contains(&id), "{id} listed: {ids:?}");
    }
    assert!(!ids
        .iter()
        .any(|i| i.starts_with("gemini-embedding") && i.ends_with("-search")));

    // Off: the name goes to Google as it is.
    let plain = spawn_app_with(&["key-aaaaaaaaaaaa1"], &[("MODEL_SUFFIXES", "false")]).await;
    let (status, _) = plain
        .chat_json(&json!({"model": "gemini-2.5-flash-search", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 404);
}
