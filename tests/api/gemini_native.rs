//! Gemini-native routes: byte-for-byte passthrough, Google-style auth and errors, failover.

use gemini_balance::mock::Behavior;
use serde_json::{json, Value};

use crate::helpers::*;

const A: &str = "AIzaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const B: &str = "AIzaKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const TOKEN: &str = "client-token-123";

fn body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}],
           "generationConfig": {"temperature": 0.5, "someFutureField": {"x": 1}},
           "futureTopLevel": [1, 2, 3]})
}

async fn app() -> TestApp {
    spawn_app_with(&[A, B], &[("ALLOWED_TOKENS", TOKEN)]).await
}

#[tokio::test]
async fn generate_passes_through_byte_for_byte() {
    let app = app().await;
    let req = body("sign this [[tool:lookup]] [[think]]");
    let via = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", TOKEN)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), 200);
    let via = via.bytes().await.unwrap();
    // The upstream got the client's body unchanged (unknown fields included).
    assert_eq!(app.mock.stats().last_body.unwrap(), req);
    let mock_base = app.mock.stats();
    assert!(mock_base.authorization_headers.is_empty());
    assert!(
        !mock_base.by_key.contains_key(TOKEN),
        "the client token never reaches Google"
    );
    // The same request straight to the mock gives the same bytes.
    let mock_url = format!(
        "{}/v1beta/models/gemini-2.5-flash:generateContent",
        mock_url(&app).await
    );
    let direct = app
        .http
        .post(mock_url)
        .header("x-goog-api-key", A)
        .json(&req)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(via, direct);
    let v: Value = serde_json::from_slice(&via).unwrap();
    let parts = v["candidates"][0]["content"]["parts"].as_array().unwrap();
    assert!(
        parts.iter().any(|p| p["thoughtSignature"] == "bW9jay1zaWduYXR1cmU="),
        "{v}"
    );
}

/// The mock's base URL, read back from the gateway's upstream calls.
async fn mock_url(app: &TestApp) -> String {
    app.mock_base.clone()
}

#[tokio::test]
async fn every_client_auth_form_works_and_wrong_tokens_fail_in_google_shape() {
    let app = app().await;
    let url = app.url("/v1beta/models/gemini-2.5-flash:generateContent");
    let ok = [
        app.http.post(&url).header("x-goog-api-key", TOKEN),
        app.http.post(format!("{url}?key={TOKEN}")),
        app.http.post(&url).bearer_auth(TOKEN),
    ];
    for req in ok {
        assert_eq!(req.json(&body("x")).send().await.unwrap().status(), 200);
    }
    let resp = app
        .http
        .post(&url)
        .header("x-goog-api-key", "nope")
        .json(&body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(err["error"]["code"], 401);
    assert_eq!(app.mock.stats().query_key_requests, 0, "pool keys go in the header");
}

#[tokio::test]
async fn streams_pass_events_through_in_both_framings() {
    let app = app().await;
    app.mock.set_chunk_delay(std::time::Duration::from_millis(30));
    let url = app.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    let resp = app
        .http
        .post(format!("{url}?alt=sse"))
        .header("x-goog-api-key", TOKEN)
        .json(&body("a b c"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = read_sse(resp).await;
    assert_eq!(events.len(), 4);
    let last: Value = serde_json::from_str(&events[3].0).unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert!(last["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);

    let resp = app
        .http
        .post(&url)
        .header("x-goog-api-key", TOKEN)
        .json(&body("a b c"))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let arr: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(arr.len(), 4);
    assert_eq!(arr[0]["candidates"][0]["content"]["parts"][0]["text"], "Echo: ");
}

#[tokio::test]
async fn failing_keys_are_skipped_and_client_errors_keep_googles_shape() {
    let app = app().await;
    app.mock.set(A, Behavior::ServerError { code: 503 });
    for _ in 0..4 {
        let resp = app
            .http
            .post(app.url("/gemini/v1beta/models/gemini-2.5-flash:generateContent"))
            .header("x-goog-api-key", TOKEN)
            .json(&body("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-nope:generateContent"))
        .header("x-goog-api-key", TOKEN)
        .json(&body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["status"], "NOT_FOUND");
    assert!(err["error"]["message"].as_str().unwrap().contains("gemini-nope"));
    // No key: Google-shaped 503 with RetryInfo.
    app.mock.set(B, Behavior::Invalid);
    for _ in 0..4 {
        app.http
            .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
            .header("x-goog-api-key", TOKEN)
            .json(&body("x"))
            .send()
            .await
            .unwrap();
    }
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", TOKEN)
        .json(&body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["status"], "UNAVAILABLE");
    assert_eq!(
        err["error"]["details"][0]["@type"],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
}

#[tokio::test]
async fn models_count_tokens_and_embeddings() {
    let app = app().await;
    let get = |path: &str| app.http.get(app.url(path)).header("x-goog-api-key", TOKEN).send();
    let list: Value = get("/v1beta/models?pageSize=50").await.unwrap().json().await.unwrap();
    assert!(list["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "models/gemini-2.5-flash"));
    // Google's v1 paths share `/v1/models` with OpenAI: the caller's credentials pick the dialect.
    let v1: Value = get("/v1/models").await.unwrap().json().await.unwrap();
    assert!(v1["models"].is_array(), "{v1}");
    let v1_one: Value = get("/v1/models/gemini-2.5-pro").await.unwrap().json().await.unwrap();
    assert_eq!(v1_one["name"], "models/gemini-2.5-pro");
    let openai: Value = app
        .http
        .get(app.url("/v1/models"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openai["object"], "list");
    let one: Value = get("/v1beta/models/gemini-2.5-pro")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "models/gemini-2.5-pro");
    let post = |path: &str, b: Value| {
        app.http
            .post(app.url(path))
            .header("x-goog-api-key", TOKEN)
            .json(&b)
            .send()
    };
    let count: Value = post("/v1beta/models/gemini-2.5-flash:countTokens", body("one two three"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["totalTokens"], 3);
    let emb: Value = post(
        "/v1beta/models/gemini-embedding-001:embedContent",
        json!({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 4}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(emb["embedding"]["values"].as_array().unwrap().len(), 4);
    let batch: Value = post(
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        json!({"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(batch["embeddings"].as_array().unwrap().len(), 2);
    // Google's v1 path works too, on the OpenAI prefix, with Google auth.
    let resp = post("/v1/models/gemini-2.5-flash:generateContent", body("v1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:deleteEverything"))
        .header("x-goog-api-key", TOKEN)
        .json(&body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
