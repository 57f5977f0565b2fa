//! The request log through the admin API: rows with their attempts and Google's message (keys
//! masked), each filter, keyset paging, a request's detail, a key's last 24 hours, the token.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gemini_balance::mock::Behavior;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const A: &str = "AIzaKeyLogsAAAAAAAAAAAAAAAAAAAAAAAAAAAA1";
const B: &str = "AIzaKeyLogsBBBBBBBBBBBBBBBBBBBBBBBBBBBB2";

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = admin(app, Method::GET, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    let text = body.to_string();
    for key in [A, B] {
        assert!(!text.contains(key), "{path} shows a full key: {text}");
    }
    body
}

/// Waits until the log holds `n` rows (it is written in batches) and returns them, newest first.
async fn rows(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = get(app, "/admin/api/logs?limit=500").await;
        let rows = page["rows"].as_array().cloned().unwrap_or_default();
        if rows.len() >= n || Instant::now() > deadline {
            assert_eq!(rows.len(), n, "{page}");
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_failed_over_request_shows_its_attempts_in_order_with_masked_keys() {
    let app = spawn_app_with(&[A, B], &[("ADMIN_TOKEN", ADMIN)]).await;
    // Google names the key in a suspended key's message; the log must only show it masked.
    app.mock.set(A, Behavior::PermissionDenied);
    for _ in 0..2 {
        let (status, body) = app.chat_json(&chat_body("hi")).await;
        assert_eq!(status, 200, "{body}");
    }
    let rows = rows(&app, 2).await;
    let failed_over = rows
        .iter()
        .find(|r| r["attempts"] == 2)
        .expect("one request went to the suspended key first");
    assert_eq!(failed_over["status"], 200);
    assert_eq!(failed_over["error_class"], "");
    assert_eq!(failed_over["key"], "AIza…BB2", "the key that served");
    assert!(failed_over["request_id"].as_str().unwrap().starts_with("req_"));
    let detail = get(&app, &format!("/admin/api/logs/{}", failed_over["id"])).await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (&attempts[0]["key"], &attempts[0]["outcome"], &attempts[0]["status"]),
        (&json!("AIza…AA1"), &json!("permission_denied"), &json!(403))
    );
    assert_eq!(
        (&attempts[1]["key"], &attempts[1]["outcome"], &attempts[1]["status"]),
        (&json!("AIza…BB2"), &json!("success"), &json!(200))
    );
    assert!(attempts.iter().all(|a| a["latency_ms"].is_u64()));
    let message = detail["message"].as_str().unwrap();
    assert!(
        message.contains("api_key:AIza…AA1"),
        "Google's message, key masked: {message}"
    );
    assert_eq!(detail["entry"], *failed_over);

    // The request id of the row is the one the client got.
    let resp = app.chat(&chat_body("again")).await;
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let rows = self::rows(&app, 3).await;
    assert_eq!(rows[0]["request_id"], request_id.as_str());
}

#[tokio::test]
async fn a_request_failing_on_every_key_keeps_the_redacted_message() {
    let app = spawn_app_with(&[A, B], &[("ADMIN_TOKEN", ADMIN)]).await;
    app.mock.set(A, Behavior::PermissionDenied);
    app.mock.set(B, Behavior::PermissionDenied);
    let (status, _) = app.chat_json(&chat_body("hi")).await;
    assert!(status >= 500, "{status}");
    let rows = rows(&app, 1).await;
    assert_eq!(rows[0]["attempts"], 2);
    assert_eq!(rows[0]["error_class"], "upstream_failed");
    let detail = get(&app, &format!("/admin/api/logs/{}", rows[0]["id"])).await;
    let tried: HashSet<&str> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(tried, HashSet::from(["AIza…AA1", "AIza…BB2"]));
    let message = detail["message"].as_str().unwrap();
    assert!(
        message.contains("Permission denied") && message.contains("api_key:AIza…"),
        "{message}"
    );
    // Per key: the request counts for the key tried last, with its error class.
    let list = keys(&app).await;
    let mut total = 0;
    for masked in ["AA1", "BB2"] {
        let stats = get(&app, &format!("/admin/api/keys/{}/stats", id_of(&list, masked))).await;
        assert_eq!(stats["hours"].as_array().unwrap().len(), 24);
        total += stats["requests"].as_u64().unwrap();
        if stats["requests"] == 1 {
            assert_eq!(stats["errors"], 1);
            assert_eq!(stats["errors_by_class"], json!([["upstream_failed", 1]]));
        }
    }
    assert_eq!(total, 1);
}

#[tokio::test]
async fn each_filter_narrows_the_log_and_pages_cover_it_once() {
    let app = spawn_app_with(&[A, B], &[("ADMIN_TOKEN", ADMIN)]).await;
    for i in 0..6 {
        let (status, _) = app.chat_json(&chat_body(&format!("hi {i}"))).await;
        assert_eq!(status, 200);
    }
    let (status, _) = app
        .chat_json(&json!({"model": "gemini-2.0-flash", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .chat_json(&json!({"model": "gemini-nope", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 404);
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:countTokens"))
        .header("x-goog-api-key", "anything")
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let all = rows(&app, 9).await;
    assert!(all
        .windows(2)
        .all(|w| (w[0]["at"].as_u64(), w[0]["id"].as_i64()) > (w[1]["at"].as_u64(), w[1]["id"].as_i64())));

    let count = |filter: &str| {
        let all = all.clone();
        let filter = filter.to_string();
        let app = &app;
        async move {
            let page = get(app, &format!("/admin/api/logs?limit=500&{filter}")).await;
            let rows = page["rows"].as_array().unwrap().clone();
            assert!(rows.len() < all.len(), "{filter} narrows nothing");
            rows
        }
    };
    let by_model = count("model=gemini-2.0-flash").await;
    assert_eq!(by_model.len(), 1);
    let by_route = count("route=/v1beta/models/{name}").await;
    assert_eq!(by_route.len(), 1);
    assert!(by_route[0]["route"].as_str().unwrap().starts_with("/v1beta"));
    let by_status = count("status=404").await;
    assert_eq!(by_status.len(), 1);
    assert_eq!(by_status[0]["error_class"], "upstream_rejected");
    let by_class = count("error_class=upstream_rejected").await;
    assert_eq!(ids(&json!({"rows": by_class})), ids(&json!({"rows": by_status})));
    let ok = count("error_class=success").await;
    assert_eq!(ok.len(), 8);
    let masked_b = "AIza%E2%80%A6BB2";
    let by_key = count(&format!("key={masked_b}")).await;
    assert!(!by_key.is_empty() && by_key.iter().all(|r| r["key"] == "AIza…BB2"));
    let b_id = id_of(&keys(&app).await, "BB2");
    let by_key_id = count(&format!("key={b_id}")).await;
    assert_eq!(ids(&json!({"rows": by_key_id})), ids(&json!({"rows": by_key})));
    let both = count(&format!("key={masked_b}&model=gemini-2.5-flash")).await;
    assert!(both
        .iter()
        .all(|r| r["key"] == "AIza…BB2" && r["model"] == "gemini-2.5-flash"));
    let later = get(&app, &format!("/admin/api/logs?from={}", now() + 3600)).await;
    assert_eq!(later["rows"], json!([]));
    let earlier = get(&app, &format!("/admin/api/logs?to={}", now() - 3600)).await;
    assert_eq!(earlier["rows"], json!([]));
    let window = get(
        &app,
        &format!("/admin/api/logs?limit=500&from={}&to={}", now() - 3600, now() + 1),
    )
    .await;
    assert_eq!(window["rows"].as_array().unwrap().len(), 9);

    // Keyset pages of 2: disjoint, newest first, together the whole log.
    let mut seen = Vec::new();
    let mut path = "/admin/api/logs?limit=2".to_string();
    for _ in 0..10 {
        let page = get(&app, &path).await;
        assert!(page["rows"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/api/logs?limit=2&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&json!({ "rows": all })));
    // Paging within a filter.
    let first = get(&app, "/admin/api/logs?limit=3&error_class=success").await;
    let next = first["next"].as_str().unwrap();
    let second = get(
        &app,
        &format!("/admin/api/logs?limit=3&error_class=success&before={next}"),
    )
    .await;
    let a: HashSet<i64> = ids(&first).into_iter().collect();
    assert!(ids(&second).iter().all(|id| !a.contains(id)));
    assert_eq!(second["rows"].as_array().unwrap().len(), 3);

    let (status, _) = admin(&app, Method::GET, "/admin/api/logs?status=abc", None).await;
    assert_eq!(status, 400);
    let (status, _) = admin(&app, Method::GET, "/admin/api/logs/999999", None).await;
    assert_eq!(status, 404);
    let (status, _) = admin(&app, Method::GET, "/admin/api/keys/nope/stats", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_log_api_needs_the_admin_token() {
    let app = spawn_app_with(&[A], &[("ADMIN_TOKEN", ADMIN)]).await;
    let (status, _) = app.chat_json(&chat_body("hi")).await;
    assert_eq!(status, 200);
    let id = id_of(&keys(&app).await, "AA1");
    for path in [
        "/admin/api/logs".to_string(),
        "/admin/api/logs/1".to_string(),
        format!("/admin/api/keys/{id}/stats"),
    ] {
        let none = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        let wrong = app.http.get(app.url(&path)).bearer_auth("nope").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
    }
    let stats = get(&app, &format!("/admin/api/keys/{id}/stats")).await;
    assert_eq!(stats["masked"], "AIza…AA1");
}
