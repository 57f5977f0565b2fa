//! Rotation, failover per error class, health tracking and recovery, exhaustion.

use std::time::{Duration, Instant};

use gemini_balance::mock::Behavior;

use crate::helpers::*;

const A: &str = "AIzaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const B: &str = "AIzaKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const C: &str = "AIzaKeyCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";

#[tokio::test]
async fn requests_rotate_over_all_keys() {
    let app = spawn_app(&[A, B, C]).await;
    for _ in 0..30 {
        let (status, _) = app.chat_json(&chat_body("hi")).await;
        assert_eq!(status, 200);
    }
    for key in [A, B, C] {
        assert_eq!(app.mock.requests_for(key), 10, "{key}");
    }
}

#[tokio::test]
async fn concurrent_requests_spread_evenly() {
    let app = spawn_app(&[A, B]).await;
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let http = app.http.clone();
            let url = app.url("/v1/chat/completions");
            tokio::spawn(async move {
                http.post(url)
                    .json(&chat_body("x"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(app.mock.requests_for(A), 20);
    assert_eq!(app.mock.requests_for(B), 20);
}

/// Each key-or-server failure class fails over to the next key without the client noticing.
#[tokio::test]
async fn each_failure_class_fails_over_transparently() {
    let cases = [
        Behavior::Invalid,
        Behavior::PermissionDenied,
        Behavior::RateLimited {
            retry_delay_secs: 30.0,
            per_day: false,
        },
        Behavior::ServerError { code: 500 },
        Behavior::ServerError { code: 503 },
        Behavior::ServerError { code: 504 },
        Behavior::Hang,
    ];
    for behavior in cases {
        let app = spawn_app_with(&[A, B], &[("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "0.3")]).await;
        app.mock.set(A, behavior.clone());
        let (status, body) = app.chat_json(&chat_body("hello")).await;
        assert_eq!(status, 200, "{behavior:?}: {body}");
        assert_eq!(body["choices"][0]["message"]["content"], "Echo: hello");
        assert_eq!(app.mock.requests_for(A), 1, "{behavior:?}");
        assert_eq!(app.mock.requests_for(B), 1, "{behavior:?}");
    }
}

#[tokio::test]
async fn client_errors_are_not_retried_and_not_blamed() {
    let app = spawn_app(&[A, B]).await;
    for _ in 0..5 {
        let (status, body) = app
            .chat_json(&serde_json::json!({"model": "gemini-nope", "messages": [{"role": "user", "content": "x"}]}))
            .await;
        assert_eq!(status, 404);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("models/gemini-nope is not found"),
            "{body}"
        );
        assert_eq!(body["error"]["code"], "model_not_found");
    }
    assert_eq!(app.mock.stats().total, 5, "one upstream call per request, no retries");
    let health: serde_json::Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["keys"]["available"], 2, "400/404 never take a key out");
}

#[tokio::test]
async fn invalid_key_leaves_rotation_until_revalidated() {
    let app = spawn_app_with(&[A, B], &[("KEY_REVALIDATE_SECS", "0.3")]).await;
    app.mock.set(A, Behavior::Invalid);
    for _ in 0..6 {
        assert_eq!(app.chat_json(&chat_body("x")).await.0, 200);
    }
    // One failed request, then the probe(s); never a generate call again while invalid.
    let a_calls = app.mock.requests_for(A);
    assert!(app.mock.stats().by_key.contains_key(A));
    assert_eq!(app.mock.requests_for(B), 6);
    // The key works again: the periodic probe puts it back.
    app.mock.set(A, Behavior::Ok);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health: serde_json::Value = app
            .http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["keys"]["available"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "probe did not re-validate the key: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.mock.requests_for(A) > a_calls, "re-validated by a probe request");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = app.mock.requests_for(A);
    for _ in 0..4 {
        assert_eq!(app.chat_json(&chat_body("x")).await.0, 200);
    }
    assert_eq!(app.mock.requests_for(A) - before, 2, "back in rotation");
}

#[tokio::test]
async fn consecutive_failures_cool_a_key_down_then_one_trial_restores_it() {
    let app = spawn_app_with(&[A, B], &[("MAX_FAILURES", "2"), ("KEY_COOLDOWN_SECS", "0.5")]).await;
    app.mock.set(A, Behavior::ServerError { code: 503 });
    for _ in 0..8 {
        assert_eq!(app.chat_json(&chat_body("x")).await.0, 200);
    }
    assert_eq!(app.mock.requests_for(A), 2, "out of rotation after MAX_FAILURES");
    app.mock.set(A, Behavior::Ok);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..4 {
        assert_eq!(app.chat_json(&chat_body("x")).await.0, 200);
    }
    assert_eq!(app.mock.requests_for(A), 4, "trial succeeded, key trusted again");
}

#[tokio::test]
async fn rate_limited_key_waits_out_retry_delay() {
    let app = spawn_app(&[A, B]).await;
    app.mock.set_times(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 1.0,
            per_day: false,
        },
        1,
    );
    for _ in 0..5 {
        assert_eq!(app.chat_json(&chat_body("x")).await.0, 200);
    }
    assert_eq!(app.mock.requests_for(A), 1, "cooling down for the RetryInfo delay");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..2 {
        assert_eq!(app.chat_json(&chat_body("x")).await.0, 200);
    }
    assert_eq!(app.mock.requests_for(A), 2, "back after the delay");
    // Per-model: another model still uses the key during a model's cooldown.
    app.mock.set_times(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 30.0,
            per_day: false,
        },
        1,
    );
    let mut other = chat_body("x");
    other["model"] = "gemini-2.5-pro".into();
    for _ in 0..4 {
        assert_eq!(app.chat_json(&chat_body("x")).await.0, 200);
        assert_eq!(app.chat_json(&other).await.0, 200);
    }
    let a_after = app.mock.requests_for(A);
    assert!(a_after >= 4, "gemini-2.5-pro still rotates through A ({a_after})");
}

#[tokio::test]
async fn all_keys_dead_gives_quick_503_with_retry_after() {
    let app = spawn_app(&[A, B]).await;
    app.mock.set(A, Behavior::Invalid);
    app.mock.set(B, Behavior::ServerError { code: 503 });
    let resp = app.chat(&chat_body("x")).await;
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("overloaded"), "upstream message carried: {msg}");
    assert!(!msg.contains(A) && !msg.contains(B));

    // Trip B too, then no key is left.
    for _ in 0..3 {
        app.chat(&chat_body("x")).await;
    }
    let started = Instant::now();
    let resp = app.chat(&chat_body("x")).await;
    assert!(started.elapsed() < Duration::from_millis(200), "fails fast, no hang");
    assert_eq!(resp.status(), 503);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_key_available");
    let before = app.mock.stats().total;
    app.chat(&chat_body("x")).await;
    assert_eq!(
        app.mock.stats().total,
        before,
        "no request is sent on a key known to be dead"
    );
}

#[tokio::test]
async fn all_keys_rate_limited_gives_429_with_retry_after() {
    let app = spawn_app(&[A, B]).await;
    app.mock.set(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 20.0,
            per_day: false,
        },
    );
    app.mock.set(
        B,
        Behavior::RateLimited {
            retry_delay_secs: 40.0,
            per_day: false,
        },
    );
    let resp = app.chat(&chat_body("x")).await;
    assert_eq!(resp.status(), 429);
    let resp = app.chat(&chat_body("x")).await;
    assert_eq!(resp.status(), 429);
    let secs: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((19..=20).contains(&secs), "earliest key back in ~20 s, got {secs}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(app.mock.stats().total, 2);
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let app = spawn_app_with(&[A], &[("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "0.3")]).await;
    app.mock.set(A, Behavior::Hang);
    let started = Instant::now();
    let resp = app.chat(&chat_body("x")).await;
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn max_retries_bounds_attempts() {
    let app = spawn_app_with(&[A, B, C], &[("MAX_RETRIES", "2")]).await;
    for k in [A, B, C] {
        app.mock.set(k, Behavior::ServerError { code: 500 });
    }
    assert_eq!(app.chat(&chat_body("x")).await.status(), 502);
    assert_eq!(app.mock.stats().total, 2);
}
