//! Keys judged the way Google behaves: slow answers complete on their first key, dead keys are
//! still abandoned quickly, silence after Google accepted a request is a 504 that blames no one,
//! only key-scoped errors count against a key, zero-quota models, three-way validation,
//! operator actions that traffic cannot undo, and keys that never leak through error messages.

use std::time::{Duration, Instant};

use gemini_balance::mock::Behavior;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const A: &str = "AIzaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const B: &str = "AIzaKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const C: &str = "AIzaKeyCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";

fn slow(first_event_ms: u64, delay_ms: u64) -> Behavior {
    Behavior::Slow {
        delay_ms,
        first_event_ms: Some(first_event_ms),
    }
}

async fn app(keys: &[&str], extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("ADMIN_TOKEN", ADMIN)];
    vars.extend_from_slice(extra);
    spawn_app_with(keys, &vars).await
}

fn stream_body(text: &str) -> Value {
    json!({"model": "gemini-2.5-flash", "stream": true, "messages": [{"role": "user", "content": text}]})
}

fn native_body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

/// Every key active, no failure counted, no reason recorded.
async fn assert_nobody_blamed(app: &TestApp) {
    for k in keys(app).await {
        assert_eq!(k["state"], "active", "{k}");
        assert_eq!(k["consecutive_failures"], 0, "{k}");
        assert!(k["reason"].is_null(), "{k}");
    }
}

fn key_view<'a>(keys: &'a [Value], tail: &str) -> &'a Value {
    keys.iter()
        .find(|k| k["masked"].as_str().unwrap().ends_with(tail))
        .unwrap()
}

#[tokio::test]
async fn a_slow_whole_answer_completes_on_its_first_key() {
    // Thinking for 2.5 s with a 1 s first-byte timeout: Google would send a non-streaming
    // answer's headers only at the end; the gateway must not take that for a dead key.
    let app = app(&[A, B], &[("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "1")]).await;
    app.mock.set(A, slow(2500, 50));
    app.mock.set(B, slow(2500, 50));
    let (status, body) = app.chat_json(&chat_body("hello there")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Echo: hello there");
    assert_eq!(app.mock.stats().total, 1, "answered by the first key, never retried");
    assert_nobody_blamed(&app).await;

    // The same for the native route, whose answer equals what generateContent gives.
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .json(&native_body("slow native"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let via: Value = resp.json().await.unwrap();
    app.mock.set(A, Behavior::Ok);
    let direct: Value = app
        .http
        .post(format!(
            "{}/v1beta/models/gemini-2.5-flash:generateContent",
            app.mock_base
        ))
        .header("x-goog-api-key", A)
        .json(&native_body("slow native"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via, direct);
    assert_eq!(app.mock.stats().total, 3);
    assert_nobody_blamed(&app).await;
}

#[tokio::test]
async fn a_late_first_stream_event_succeeds() {
    let app = app(&[A, B], &[("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "1")]).await;
    app.mock.set(A, slow(2500, 20));
    app.mock.set(B, slow(2500, 20));
    let resp = app.chat(&stream_body("think first")).await;
    assert_eq!(resp.status(), 200);
    let events = read_sse(resp).await;
    assert_eq!(events.last().unwrap().0, "[DONE]");
    assert_eq!(app.mock.stats().total, 1);
    assert_nobody_blamed(&app).await;
}

#[tokio::test]
async fn a_stream_that_keeps_talking_outlives_the_total_deadline() {
    // 12 events 300 ms apart (≈3.6 s) against a 2 s total deadline: only silence ends a stream.
    let app = app(
        &[A],
        &[
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "1"),
            ("UPSTREAM_TOTAL_TIMEOUT_SECS", "2"),
            ("UPSTREAM_IDLE_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    app.mock.set(A, slow(0, 300));
    let resp = app
        .chat(&stream_body("one two three four five six seven eight nine ten eleven"))
        .await;
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let events = read_sse(resp).await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(events.last().unwrap().0, "[DONE]", "{events:?}");
    assert_nobody_blamed(&app).await;
}

#[tokio::test]
async fn a_dead_key_is_still_abandoned_within_the_first_byte_timeout() {
    let app = app(&[A, B], &[("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "0.5")]).await;
    app.mock.set(A, Behavior::Hang);
    for body in [chat_body("whole"), stream_body("streamed")] {
        let started = Instant::now();
        let resp = app.chat(&body).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("Echo"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
    let keys = keys(&app).await;
    let a = key_view(&keys, "AAA");
    assert!(
        a["consecutive_failures"].as_u64().unwrap() >= 1,
        "a key that sends nothing is blamed: {a}"
    );
    assert_eq!(a["reason"]["class"], "timeout");
}

#[tokio::test]
async fn silence_after_google_accepted_is_a_504_without_blame_or_retry() {
    let app = app(
        &[A, B],
        &[
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "1"),
            ("UPSTREAM_IDLE_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    app.mock.set(A, Behavior::StallAfterHeaders);
    app.mock.set(B, Behavior::StallAfterHeaders);

    // OpenAI stream: headers came, the first event never does.
    let resp = app.chat(&stream_body("stall")).await;
    assert_eq!(resp.status(), 504);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "upstream_timeout", "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("UPSTREAM_IDLE_TIMEOUT_SECS"));
    assert_eq!(app.mock.stats().total, 1, "not repeated on another key");

    // OpenAI whole answer.
    let (status, err) = app.chat_json(&chat_body("stall")).await;
    assert_eq!(status, 504, "{err}");
    assert_eq!(app.mock.stats().total, 2);

    // Native stream, in Google's shape.
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"))
        .json(&native_body("stall"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["status"], "DEADLINE_EXCEEDED", "{err}");
    assert_eq!(app.mock.stats().total, 3);
    assert_nobody_blamed(&app).await;
}

#[tokio::test]
async fn a_whole_answer_past_the_total_deadline_is_a_504_without_blame() {
    let app = app(
        &[A, B],
        &[
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "1"),
            ("UPSTREAM_TOTAL_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    app.mock.set(A, slow(4000, 10));
    app.mock.set(B, slow(4000, 10));
    let started = Instant::now();
    let (status, err) = app.chat_json(&chat_body("too slow")).await;
    assert_eq!(status, 504, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("UPSTREAM_TOTAL_TIMEOUT_SECS"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(app.mock.stats().total, 1);
    assert_nobody_blamed(&app).await;
}

#[tokio::test]
async fn silence_in_the_middle_of_a_stream_ends_it_with_an_error_event_and_no_blame() {
    let app = app(&[A], &[("UPSTREAM_IDLE_TIMEOUT_SECS", "1")]).await;
    app.mock.set(A, slow(0, 1500));
    let resp = app.chat(&stream_body("one two three")).await;
    assert_eq!(resp.status(), 200);
    let events = read_sse(resp).await;
    let last: Value = serde_json::from_str(&events.last().unwrap().0).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{events:?}");
    assert!(events.iter().all(|(e, _)| e != "[DONE]"));
    assert!(events.len() >= 2, "the first event got through: {events:?}");
    assert_nobody_blamed(&app).await;
}

#[tokio::test]
async fn a_403_about_the_request_goes_back_to_the_client_and_disables_nothing() {
    let app = app(&[A, B, C], &[]).await;
    let file = json!({"contents": [{"role": "user", "parts": [
        {"text": "summarise"},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}}
    ]}]});
    for _ in 0..5 {
        let resp = app
            .http
            .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
            .json(&file)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["status"], "PERMISSION_DENIED");
        assert!(
            err["error"]["message"].as_str().unwrap().contains("File abc123"),
            "{err}"
        );
    }
    // A cached content of another project, through the OpenAI route.
    let mut body = chat_body("with cache");
    body["google"] = json!({"cached_content": "cachedContents/xyz"});
    let (status, err) = app.chat_json(&body).await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("CachedContent"),
        "{err}"
    );
    assert_eq!(app.mock.stats().total, 6, "one attempt each: not retried on other keys");
    assert_nobody_blamed(&app).await;
}

#[tokio::test]
async fn a_key_scoped_403_disables_the_key_and_its_value_never_leaks() {
    let data = temp_dir();
    let data_dir = data.to_string_lossy().into_owned();
    let app = app(&[A, B], &[("DATA_DIR", &data_dir)]).await;
    app.mock.set(A, Behavior::PermissionDenied);
    for _ in 0..3 {
        let (status, body) = app.chat_json(&chat_body("hi")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, listing) = admin(&app, Method::GET, "/admin/api/keys", None).await;
    let text = listing.to_string();
    assert!(!text.contains(A), "the admin API shows the key: {text}");
    let keys = listing.as_array().unwrap();
    let a = key_view(keys, "AAA");
    assert_eq!(a["state"], "disabled");
    assert_eq!(a["reason"]["class"], "permission_denied");
    let reason = a["reason"]["message"].as_str().unwrap();
    assert!(reason.contains("AIza…AAA") && reason.contains("suspended"), "{reason}");

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(A));
    // Nothing on disk holds it except the keys table's own copy, which only the owner reads.
    let (_, summary) = admin(&app, Method::GET, "/admin/api/summary", None).await;
    assert!(!summary.to_string().contains(A));
    tokio::time::sleep(Duration::from_millis(800)).await;
    for row in gemini_balance::gateway::store::Store::recent_log(&data, 100).unwrap() {
        assert!(!row.key.contains(A) && !row.error_class.contains(A));
    }
}

#[tokio::test]
async fn a_zero_quota_takes_a_key_out_for_that_model_only() {
    let app = app(&[A, B], &[]).await;
    app.mock.set(
        A,
        Behavior::ZeroQuota {
            model: Some("gemini-2.5-pro".into()),
        },
    );
    let pro = |text: &str| json!({"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": text}]});
    for i in 0..4 {
        let (status, body) = app.chat_json(&pro(&format!("pro {i}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(app.mock.requests_for(A), 1, "asked once for pro, then never again");
    // Flash still rotates over both keys.
    for _ in 0..4 {
        assert_eq!(app.chat_json(&chat_body("flash")).await.0, 200);
    }
    assert_eq!(app.mock.requests_for(A), 3);
    let listing = keys(&app).await;
    let a = key_view(&listing, "AAA");
    assert_eq!(a["unavailable_models"], json!(["gemini-2.5-pro"]));
    assert_eq!(a["state"], "active");

    // No key can serve the model: a clear 404, not an endless 429.
    app.mock.set(
        B,
        Behavior::ZeroQuota {
            model: Some("gemini-2.5-pro".into()),
        },
    );
    let (status, _) = app.chat_json(&pro("b too")).await;
    assert_eq!(status, 404);
    let (status, err) = app.chat_json(&pro("none left")).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], "model_not_found");

    // Re-validated after an upgrade: the key serves the model again.
    app.mock.set(A, Behavior::Ok);
    let id = id_of(&listing, "AAA");
    let (status, v) = admin(&app, Method::POST, &format!("/admin/api/keys/{id}/validate"), None).await;
    assert_eq!((status, v["result"].as_str()), (200, Some("works")), "{v}");
    let before = app.mock.requests_for(A);
    let (status, _) = app.chat_json(&pro("after upgrade")).await;
    assert_eq!(status, 200);
    assert_eq!(app.mock.requests_for(A), before + 1);
}

async fn validate_all(app: &TestApp) -> Value {
    let (status, _) = admin(app, Method::POST, "/admin/api/validate", None).await;
    assert_eq!(status, 202);
    for _ in 0..200 {
        let (_, p) = admin(app, Method::GET, "/admin/api/validate", None).await;
        if p["running"] == false {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("validation never finished");
}

#[tokio::test]
async fn validating_during_an_outage_disables_nothing() {
    let app = app(&[A, B, C], &[]).await;
    for k in [A, B, C] {
        app.mock.set(k, Behavior::ServerError { code: 503 });
    }
    let p = validate_all(&app).await;
    assert_eq!(
        (p["inconclusive"].as_u64(), p["failing"].as_u64()),
        (Some(3), Some(0)),
        "{p}"
    );
    assert_nobody_blamed(&app).await;
    // Validation asks countTokens: no generation quota is spent.
    assert!(app.mock.stats().last_path.unwrap().ends_with(":countTokens"));

    // A key Google rejects is disabled; a rate-limited one only proves the key is known.
    app.mock.set(A, Behavior::Ok);
    app.mock.set(B, Behavior::Invalid);
    app.mock.set(
        C,
        Behavior::RateLimited {
            retry_delay_secs: 5.0,
            per_day: false,
        },
    );
    let p = validate_all(&app).await;
    assert_eq!(
        (p["working"].as_u64(), p["failing"].as_u64(), p["inconclusive"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{p}"
    );
    let listing = keys(&app).await;
    assert_eq!(key_view(&listing, "BBB")["state"], "disabled");
    assert_eq!(key_view(&listing, "CCC")["state"], "active");
}

#[tokio::test]
async fn an_answer_already_on_its_way_never_undoes_a_manual_disable() {
    let app = app(&[A], &[]).await;
    app.mock.set(A, slow(1200, 10));
    let id = id_of(&keys(&app).await, "AAA");
    let http = app.http.clone();
    let url = app.url("/v1/chat/completions");
    let pending = tokio::spawn(async move { http.post(url).json(&chat_body("slow")).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = admin(&app, Method::POST, &format!("/admin/api/keys/{id}/disable"), None).await;
    assert_eq!(status, 200);
    assert_eq!(pending.await.unwrap(), 200, "the request in flight finishes");
    assert_eq!(key_view(&keys(&app).await, "AAA")["state"], "manual_disabled");
    let (status, _) = app.chat_json(&chat_body("now")).await;
    assert_eq!(status, 503, "the disabled key is not used");
}

#[tokio::test]
async fn an_absurd_retry_delay_is_clamped_and_the_server_stays_up() {
    let app = app(&[A, B], &[]).await;
    app.mock.set(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 1e30,
            per_day: false,
        },
    );
    for _ in 0..4 {
        assert_eq!(app.chat_json(&chat_body("hi")).await.0, 200);
    }
    let listing = keys(&app).await;
    let a = key_view(&listing, "AAA");
    assert_eq!(a["rate_limited_models"], json!(["gemini-2.5-flash"]), "{a}");
    assert_eq!(app.mock.requests_for(A), 1, "waits out the (clamped) delay");
    assert_eq!(app.chat_json(&chat_body("still up")).await.0, 200);
}

#[tokio::test]
async fn a_whole_answer_thinking_past_the_idle_timeout_completes_within_the_total_deadline() {
    // Google sends a whole answer's stream headers at once and then nothing while the model
    // thinks: only the total deadline bounds that silence, not the idle timeout of streams.
    let app = app(
        &[A, B],
        &[
            ("UPSTREAM_IDLE_TIMEOUT_SECS", "1"),
            ("UPSTREAM_TOTAL_TIMEOUT_SECS", "5"),
        ],
    )
    .await;
    app.mock.set(A, slow(2500, 20));
    app.mock.set(B, slow(2500, 20));
    let (status, body) = app.chat_json(&chat_body("think long")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Echo: think long");
    assert_eq!(app.mock.stats().total, 1, "answered by the first key, never retried");
    assert_nobody_blamed(&app).await;
    for k in keys(&app).await {
        assert_ne!(k["success_rate_hour"], json!(0.0), "no failure counted: {k}");
    }
}

#[tokio::test]
async fn a_reset_during_a_request_in_flight_stands_when_that_request_fails() {
    let app = app(&[A, B], &[]).await;
    // A key that had been failing: the operator resets it while a request on it is in flight,
    // and that request then comes back invalid (a verdict about the key before the reset).
    app.mock.set(A, Behavior::ServerError { code: 503 });
    assert_eq!(app.chat_json(&chat_body("fails over")).await.0, 200);
    let before = key_view(&keys(&app).await, "AAA").clone();
    assert_eq!(before["consecutive_failures"], 1, "{before}");
    app.mock.set(
        A,
        Behavior::Late {
            delay_ms: 1200,
            then: Box::new(Behavior::Invalid),
        },
    );
    let id = id_of(&keys(&app).await, "AAA");
    let http = app.http.clone();
    let url = app.url("/v1/chat/completions");
    // Two requests at once: the rotation hands one of them to A.
    let first = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { http.post(url).json(&chat_body("one")).send().await.unwrap().status() })
    };
    let pending = tokio::spawn(async move { http.post(url).json(&chat_body("two")).send().await.unwrap().status() });
    assert!(
        eventually(Duration::from_secs(5), || app.mock.requests_for(A) >= 2).await,
        "a request reached A"
    );
    let (status, view) = admin(&app, Method::POST, &format!("/admin/api/keys/{id}/reset"), None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["consecutive_failures"], 0, "{view}");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(pending.await.unwrap(), 200, "the request failed over to B");
    // The answer that came back invalid was about the key before the reset: it is ignored.
    let a = key_view(&keys(&app).await, "AAA").clone();
    assert_eq!(a["state"], "active", "{a}");
    assert_eq!(a["consecutive_failures"], 0, "{a}");
    assert!(a["reason"].is_null(), "{a}");
    // After the reset, the same answer counts.
    app.mock.set(A, Behavior::Invalid);
    for _ in 0..2 {
        assert_eq!(app.chat_json(&chat_body("again")).await.0, 200);
    }
    assert_eq!(key_view(&keys(&app).await, "AAA")["state"], "disabled");
}

#[tokio::test]
async fn a_key_in_the_details_of_googles_error_never_reaches_clients_or_the_admin_api() {
    // Google repeats a suspended consumer's message, key included, in a LocalizedMessage detail.
    let app = app(&[A], &[]).await;
    app.mock.set(A, Behavior::PermissionDenied);
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .json(&native_body("hi"))
        .send()
        .await
        .unwrap();
    assert!(!resp.status().is_success());
    let text = resp.text().await.unwrap();
    assert!(!text.contains(A), "the native route shows the key: {text}");
    let (_, listing) = admin(&app, Method::GET, "/admin/api/keys", None).await;
    assert!(!listing.to_string().contains(A), "{listing}");
    assert_eq!(key_view(listing.as_array().unwrap(), "AAA")["state"], "disabled");
    let (_, summary) = admin(&app, Method::GET, "/admin/api/summary", None).await;
    assert!(!summary.to_string().contains(A), "{summary}");
}

#[tokio::test]
async fn stalls_and_request_faults_do_not_lower_a_keys_success_rate() {
    let app = app(&[A], &[("UPSTREAM_IDLE_TIMEOUT_SECS", "1")]).await;
    assert_eq!(app.chat_json(&chat_body("fine")).await.0, 200);
    // A file of another project: the request's fault.
    let file = json!({"contents": [{"role": "user", "parts": [
        {"text": "summarise"},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}}
    ]}]});
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .json(&file)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Google accepted the request and went silent: slow, not the key's fault.
    app.mock.set(A, Behavior::StallAfterHeaders);
    let resp = app.chat(&stream_body("stall")).await;
    assert_eq!(resp.status(), 504);
    let a = key_view(&keys(&app).await, "AAA").clone();
    assert_eq!(a["success_rate_hour"], json!(1.0), "{a}");
    assert_eq!(a["requests_hour"], 3, "{a}");

    // A failure that is the key's own does count.
    app.mock.set(A, Behavior::ServerError { code: 503 });
    let (status, _) = app.chat_json(&chat_body("503")).await;
    assert_eq!(status, 502);
    let a = key_view(&keys(&app).await, "AAA").clone();
    assert!(a["success_rate_hour"].as_f64().unwrap() < 1.0, "{a}");
}

/// An upstream that keeps connections alive on paper but drops each one at its second request,
/// unanswered (what proxies and servers that time idle connections out do): the gateway sends
/// again once on a new connection, so the only key is neither failed nor blamed.
#[tokio::test]
async fn a_kept_alive_connection_closed_by_the_other_end_is_not_an_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                for answered in 0.. {
                    // One whole request: headers, then Content-Length bytes of body.
                    let mut got = Vec::new();
                    let (head_end, length) = loop {
                        let Ok(n) = socket.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while got.len() < head_end + length {
                        let Ok(n) = socket.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    if answered == 1 {
                        return; // the second request on this connection: closed, unanswered
                    }
                    let event = json!({
                        "candidates": [{"content": {"role": "model", "parts": [{"text": "pong"}]}, "finishReason": "STOP", "index": 0}],
                        "modelVersion": "gemini-2.5-flash"
                    });
                    let body = format!("data: {event}\r\n\r\n");
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if socket.write_all(head.as_bytes()).await.is_err()
                        || socket.write_all(body.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let (app, _handle) = spawn_gateway(
        gemini_balance::mock::MockGemini::new(),
        addr,
        &[A],
        &[("ADMIN_TOKEN", ADMIN), ("MAX_FAILURES", "1")],
        std::future::pending(),
    )
    .await;
    for i in 0..4 {
        let (status, body) = app.chat_json(&chat_body("ping")).await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["choices"][0]["message"]["content"], "pong");
    }
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) >= 4);
    let view = keys(&app).await;
    assert_eq!(view[0]["state"], "active", "{view:?}");
    assert_eq!(view[0]["consecutive_failures"], 0, "{view:?}");
    assert_eq!(view[0]["success_rate_hour"], json!(1.0), "{view:?}");
}

/// `UPSTREAM_HTTP2=true` sends through reqwest instead of the built-in HTTP/1.1 client (the mock
/// speaks HTTP/1.1, so reqwest falls back to it): same failover, same whole answers and streams.
#[tokio::test]
async fn the_reqwest_route_fails_over_and_streams_like_the_built_in_client() {
    const BAD: &str = "AIzaKeyHTTP2BADAAAAAAAAAAAAAAAAAAAAAAAAA";
    const GOOD: &str = "AIzaKeyHTTP2GOODAAAAAAAAAAAAAAAAAAAAAAAA";
    let app = spawn_app_with(&[BAD, GOOD], &[("UPSTREAM_HTTP2", "true")]).await;
    app.mock.set(BAD, Behavior::ServerError { code: 503 });
    for _ in 0..2 {
        let (status, body) = app.chat_json(&chat_body("over reqwest")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], "Echo: over reqwest");
    }
    let stream = json!({"model": "gemini-2.5-flash", "stream": true,
        "messages": [{"role": "user", "content": "a b c"}]});
    let events = read_sse(app.chat(&stream).await).await;
    assert_eq!(events.last().map(|(d, _)| d.as_str()), Some("[DONE]"), "{events:?}");
    assert!(app.mock.requests_for(GOOD) >= 3);
}
