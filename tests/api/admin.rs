//! Admin API (token enforced on every call), runtime key management, persistence across a
//! restart, metrics after a known sequence of requests, request ids.

use gemini_balance::gateway::config::Settings;
use gemini_balance::gateway::store::Store;
use gemini_balance::mock::{Behavior, MockGemini};
use gemini_balance::server::Application;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::helpers::*;

const A: &str = "AIzaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const B: &str = "AIzaKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const C: &str = "AIzaKeyCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
#[tokio::test]
async fn every_admin_call_needs_the_token() {
    let app = spawn_app_with(&[A], &[("ADMIN_TOKEN", ADMIN)]).await;
    let calls: Vec<(Method, &str)> = vec![
        (Method::GET, "/admin/api/keys"),
        (Method::POST, "/admin/api/keys"),
        (Method::DELETE, "/admin/api/keys/abc"),
        (Method::POST, "/admin/api/keys/abc/disable"),
        (Method::POST, "/admin/api/keys/abc/enable"),
        (Method::POST, "/admin/api/keys/abc/reset"),
        (Method::POST, "/admin/api/keys/abc/validate"),
        (Method::GET, "/admin/api/summary"),
        (Method::GET, "/admin/api/validate"),
        (Method::POST, "/admin/api/validate"),
        (Method::GET, "/metrics"),
    ];
    for (method, path) in &calls {
        let none = app.http.request(method.clone(), app.url(path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a token");
        let wrong = app
            .http
            .request(method.clone(), app.url(path))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
        let client_token = app
            .http
            .request(method.clone(), app.url(path))
            .header("x-goog-api-key", ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            client_token.status(),
            401,
            "{method} {path}: only the bearer admin token counts"
        );
    }
    // No ADMIN_TOKEN: the admin API is off altogether.
    let off = spawn_app(&[A]).await;
    let resp = off
        .http
        .get(off.url("/admin/api/keys"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn keys_are_managed_at_run_time() {
    let app = spawn_app_with(&[A, B], &[("ADMIN_TOKEN", ADMIN), ("KEY_REVALIDATE_SECS", "60")]).await;
    let (status, list) = admin(&app, Method::GET, "/admin/api/keys", None).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(
        !text.contains(A) && !text.contains(B),
        "the admin API never returns a full key"
    );
    assert_eq!(list.as_array().unwrap().len(), 2);

    // Add: one new key, one duplicate, pasted with new lines and commas.
    let (status, added) = admin(
        &app,
        Method::POST,
        "/admin/api/keys",
        Some(json!({"keys": format!("{C}\n{A}, ")})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(added, json!({"added": 1, "duplicates": 1}));
    for _ in 0..6 {
        assert_eq!(app.chat_json(&chat_body("x")).await.0, 200);
    }
    assert_eq!(app.mock.requests_for(C), 2, "the new key is in rotation at once");

    // Disable / enable.
    let ks = keys(&app).await;
    let c = id_of(&ks, &C[C.len() - 3..]);
    let (status, view) = admin(&app, Method::POST, &format!("/admin/api/keys/{c}/disable"), None).await;
    assert_eq!((status, view["state"].as_str()), (200, Some("manual_disabled")));
    for _ in 0..4 {
        app.chat_json(&chat_body("x")).await;
    }
    assert_eq!(app.mock.requests_for(C), 2, "a disabled key gets no traffic");
    admin(&app, Method::POST, &format!("/admin/api/keys/{c}/enable"), None).await;
    for _ in 0..3 {
        app.chat_json(&chat_body("x")).await;
    }
    assert_eq!(app.mock.requests_for(C), 3);

    // A failing key shows its reason; validate and reset bring it back when it works again.
    app.mock.set(A, Behavior::Invalid);
    for _ in 0..3 {
        app.chat_json(&chat_body("x")).await;
    }
    let ks = keys(&app).await;
    let a = id_of(&ks, "AAA");
    let a_view = ks.iter().find(|k| k["id"] == a.as_str()).unwrap();
    assert_eq!(a_view["state"], "disabled");
    assert_eq!(a_view["reason"]["class"], "invalid_key");
    assert!(a_view["reason"]["message"]
        .as_str()
        .unwrap()
        .contains("API key not valid"));
    let (_, v) = admin(&app, Method::POST, &format!("/admin/api/keys/{a}/validate"), None).await;
    assert_eq!(v["works"], false);
    app.mock.set(A, Behavior::Ok);
    let (_, v) = admin(&app, Method::POST, &format!("/admin/api/keys/{a}/validate"), None).await;
    assert_eq!(v["works"], true);
    assert_eq!(
        keys(&app).await.iter().find(|k| k["id"] == a.as_str()).unwrap()["state"],
        "active"
    );
    let (status, v) = admin(&app, Method::POST, &format!("/admin/api/keys/{a}/reset"), None).await;
    assert_eq!((status, v["consecutive_failures"].as_u64()), (200, Some(0)));

    // Validate all, with progress.
    app.mock.set(B, Behavior::Invalid);
    let (status, started) = admin(&app, Method::POST, "/admin/api/validate", None).await;
    assert_eq!(status, 202);
    assert_eq!(started["total"], 3);
    let mut progress = started;
    for _ in 0..100 {
        progress = admin(&app, Method::GET, "/admin/api/validate", None).await.1;
        if progress["running"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(progress["done"], 3);
    assert_eq!(progress["failing"], 1);

    // Remove.
    let (status, _) = admin(&app, Method::DELETE, &format!("/admin/api/keys/{c}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(keys(&app).await.len(), 2);
    let (status, _) = admin(&app, Method::DELETE, &format!("/admin/api/keys/{c}"), None).await;
    assert_eq!(status, 404);

    let (_, summary) = admin(&app, Method::GET, "/admin/api/summary", None).await;
    assert_eq!(summary["keys_total"], 2);
    assert_eq!(summary["timeline"].as_array().unwrap().len(), 60);
    assert!(summary["requests_last_hour"].as_u64().unwrap() >= 10, "{summary}");
}

async fn start(
    dir: &std::path::Path,
    mock_addr: std::net::SocketAddr,
    keys: &str,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let vars: HashMap<String, String> = HashMap::from([
        ("GEMINI_API_KEYS".into(), keys.into()),
        ("GEMINI_BASE_URL".into(), format!("http://{mock_addr}")),
        ("LEPTOS_SITE_ADDR".into(), "127.0.0.1:0".into()),
        ("DATA_DIR".into(), dir.to_string_lossy().into_owned()),
        ("ADMIN_TOKEN".into(), ADMIN.into()),
    ]);
    let app = Application::build(Settings::from_map(&vars).unwrap()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (base, tx, handle)
}

#[tokio::test]
async fn keys_state_counters_and_log_survive_a_restart() {
    let mock = MockGemini::new();
    let mock_addr = mock.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = temp_dir();
    let http = reqwest::Client::new();
    let (base, stop, handle) = start(&dir, mock_addr, &format!("{A},{B}")).await;
    let add = http
        .post(format!("{base}/admin/api/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"keys": C}))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), 200);
    for _ in 0..6 {
        let r = http
            .post(format!("{base}/v1/chat/completions"))
            .json(&chat_body("persist"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let list: Vec<Value> = http
        .get(format!("{base}/admin/api/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (a, c) = (id_of(&list, "AAA"), id_of(&list, "CCC"));
    // An operator disables the runtime key C and removes the environment key A.
    http.post(format!("{base}/admin/api/keys/{c}/disable"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    http.delete(format!("{base}/admin/api/keys/{a}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();

    let (base, stop, handle) = start(&dir, mock_addr, &format!("{A},{B}")).await;
    let list: Vec<Value> = http
        .get(format!("{base}/admin/api/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_id = |id: &str| list.iter().find(|k| k["id"] == id).cloned();
    let c_view = by_id(&c).expect("a key added at run time survives a restart");
    assert_eq!(c_view["state"], "manual_disabled", "its operator state too");
    assert_eq!(c_view["requests_total"], 2, "and its counters");
    let a_view = by_id(&a).expect("GEMINI_API_KEYS wins over a stored removal");
    assert_eq!(a_view["state"], "active");
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();

    let log = Store::recent_log(&dir, 100).unwrap();
    let chats: Vec<_> = log.iter().filter(|r| r.route == "/v1/chat/completions").collect();
    assert_eq!(chats.len(), 6);
    assert!(chats
        .iter()
        .all(|r| r.status == 200 && r.model == "gemini-2.5-flash" && r.key.contains('…') && r.tokens > 0));
    assert!(chats.iter().all(|r| !r.key.contains(A) && !r.key.contains(B)));
}

#[tokio::test]
async fn metrics_count_a_known_sequence() {
    let app = spawn_app_with(&[A, B], &[("ADMIN_TOKEN", ADMIN)]).await;
    app.mock.set(A, Behavior::Invalid);
    for _ in 0..3 {
        let resp = app.chat(&chat_body("x")).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    }
    let (status, _) = app
        .chat_json(&json!({"model": "gemini-nope", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 404);
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .header("x-request-id", "my-id-1")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-request-id"],
        "my-id-1",
        "a client's request id is kept"
    );
    let text = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(
            r#"gb_requests_total{route="/v1/chat/completions",model="gemini-2.5-flash",status="200",error_class=""} 4"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"gb_requests_total{route="/v1/chat/completions",model="other",status="404",error_class="upstream_rejected"} 1"#
        ),
        "{text}"
    );
    assert!(
        // Before Google has served a model once, its name is not a label yet.
        has(r#"gb_upstream_attempts_total{model="other",outcome="invalid_key"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"gb_upstream_attempts_total{model="gemini-2.5-flash",outcome="success"} 4"#),
        "{text}"
    );
    assert!(
        has(r#"gb_upstream_latency_seconds_count{model="gemini-2.5-flash"} 4"#),
        "{text}"
    );
    assert!(has(r#"gb_gateway_overhead_seconds_count{} 5"#), "{text}");
    assert!(
        has(r#"gb_keys{state="disabled"} 1"#) && has(r#"gb_keys{state="active"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"key="AIza…AAA",state="disabled"} 1"#), "{text}");
    assert!(!text.contains(A) && !text.contains(B));
}
