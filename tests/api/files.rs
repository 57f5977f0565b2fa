//! Files and cached contents stay with the key that made them: resumable uploads through the
//! gateway, calls that name them pinned to their owner (never another key), one client's files
//! gathered on one key, merged listings, ownership that survives a restart, and OpenAI's
//! `/v1/files` with chat `file` parts.

use gemini_balance::mock::Behavior;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const A: &str = "AIzaFileKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const B: &str = "AIzaFileKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const C: &str = "AIzaFileKeyCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
const KEYS: &[&str] = &[A, B, C];
const ALICE: &str = "token-alice";
const BOB: &str = "token-bob";

async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("ALLOWED_TOKENS", "token-alice,token-bob"), ("ADMIN_TOKEN", ADMIN)];
    vars.extend_from_slice(extra);
    spawn_app_with(KEYS, &vars).await
}

/// Uploads `data` with the resumable protocol as google-genai does; returns the File resource.
async fn upload(app: &TestApp, token: &str, data: &[u8], mime: &str) -> Value {
    let start = app
        .http
        .post(app.url("/upload/v1beta/files"))
        .header("x-goog-api-key", token)
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("x-goog-upload-header-content-length", data.len().to_string())
        .header("x-goog-upload-header-content-type", mime)
        .json(&json!({"file": {"display_name": "notes"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200, "{}", start.text().await.unwrap());
    let url = start.headers()["x-goog-upload-url"].to_str().unwrap().to_string();
    assert!(
        url.starts_with(&app.base),
        "the upload URL points at the gateway: {url}"
    );
    assert!(!url.contains(&app.mock_base), "{url}");
    // Two pieces, the second one finalizing, with no key at all: the upload id is the credential.
    let half = data.len() / 2;
    let first = app
        .http
        .post(&url)
        .header("x-goog-upload-command", "upload")
        .header("x-goog-upload-offset", "0")
        .body(data[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-goog-upload-status"], "active");
    let last = app
        .http
        .post(&url)
        .header("x-goog-upload-command", "upload, finalize")
        .header("x-goog-upload-offset", half.to_string())
        .body(data[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 200);
    assert_eq!(last.headers()["x-goog-upload-status"], "final");
    last.json::<Value>().await.unwrap()["file"].clone()
}

fn uses(files: &[&Value]) -> Value {
    let mut parts: Vec<Value> = files
        .iter()
        .map(|f| json!({"fileData": {"fileUri": f["uri"], "mimeType": f["mimeType"]}}))
        .collect();
    parts.push(json!({"text": "describe these"}));
    json!({"contents": [{"role": "user", "parts": parts}]})
}

async fn generate(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", token)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

fn generate_calls(app: &TestApp) -> Vec<u64> {
    KEYS.iter().map(|k| app.mock.requests_for(k)).collect()
}

#[tokio::test]
async fn a_file_is_used_only_on_the_key_that_uploaded_it() {
    let app = app_with(&[]).await;
    let file = upload(&app, ALICE, b"hello file", "text/plain").await;
    let name = file["name"].as_str().unwrap();
    let owner = app.mock.owner_of(name).unwrap();
    let before = generate_calls(&app);
    // Rotation would give each key its turn; every call goes to the owner, and succeeds.
    for _ in 0..6 {
        let (status, body) = generate(&app, ALICE, &uses(&[&file])).await;
        assert_eq!(status, 200, "{body}");
    }
    let after = generate_calls(&app);
    for (i, key) in KEYS.iter().enumerate() {
        let calls = after[i] - before[i];
        if *key == owner {
            assert_eq!(calls, 6);
        } else {
            assert_eq!(calls, 0, "a call naming the file reached another key");
        }
    }
    // The OpenAI route too, with the file's URI as an image_url.
    let chat = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": file["uri"]}}]}]});
    for _ in 0..3 {
        let resp = app
            .http
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(ALICE)
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let last = app.mock.stats().last_body.unwrap();
    assert_eq!(
        last["contents"][0]["parts"][1]["fileData"]["mimeType"], "text/plain",
        "{last}"
    );
}

#[tokio::test]
async fn one_clients_files_gather_on_one_key_and_mixed_owners_get_a_clear_400() {
    let app = app_with(&[]).await;
    let a1 = upload(&app, ALICE, b"one", "text/plain").await;
    let a2 = upload(&app, ALICE, b"two", "text/plain").await;
    let a3 = upload(&app, ALICE, b"three", "text/plain").await;
    let owner = |f: &Value| app.mock.owner_of(f["name"].as_str().unwrap()).unwrap();
    assert_eq!(owner(&a1), owner(&a2));
    assert_eq!(owner(&a1), owner(&a3));
    let (status, body) = generate(&app, ALICE, &uses(&[&a1, &a2, &a3])).await;
    assert_eq!(status, 200, "{body}");

    // Bob's first upload lands elsewhere in rotation (Alice's uploads did not move the cursor
    // past the other keys forever): find one on another key, then mix them.
    let mut other = None;
    for _ in 0..4 {
        let f = upload(&app, BOB, b"bob", "text/plain").await;
        if owner(&f) != owner(&a1) {
            other = Some(f);
            break;
        }
    }
    let Some(b1) = other else {
        panic!("all of Bob's uploads went to Alice's key")
    };
    let (status, body) = generate(&app, ALICE, &uses(&[&a1, &b1])).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(a1["name"].as_str().unwrap()) && message.contains(b1["name"].as_str().unwrap()),
        "{message}"
    );
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn a_cooling_owner_is_waited_for_or_answered_with_retry_after_never_replaced() {
    let app = app_with(&[]).await;
    let file = upload(&app, ALICE, b"data", "text/plain").await;
    let owner = app.mock.owner_of(file["name"].as_str().unwrap()).unwrap();
    app.mock.set(
        &owner,
        Behavior::RateLimited {
            retry_delay_secs: 60.0,
            per_day: false,
        },
    );
    let before = generate_calls(&app);
    let (status, body) = generate(&app, ALICE, &uses(&[&file])).await;
    assert_eq!(status, 429, "{body}");
    // The owner is now known to be cooling: the next call is answered at once, with Retry-After.
    let resp = app
        .http
        .post(app.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", ALICE)
        .json(&uses(&[&file]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 20 && retry <= 60, "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(file["name"].as_str().unwrap()),
        "{body}"
    );
    let after = generate_calls(&app);
    for (i, key) in KEYS.iter().enumerate() {
        let calls = after[i] - before[i];
        assert_eq!(calls, u64::from(*key == owner), "key {i} got {calls} calls");
    }
    // Calls that name no file still go everywhere else.
    let (status, _) = generate(&app, ALICE, &json!({"contents": [{"parts": [{"text": "hi"}]}]})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_unknown_file_is_the_requests_fault_and_disables_nothing() {
    let app = app_with(&[]).await;
    let stranger = json!({"name": "files/elsewhere", "uri": "https://generativelanguage.googleapis.com/v1beta/files/elsewhere", "mimeType": "text/plain"});
    let (status, body) = generate(&app, ALICE, &uses(&[&stranger])).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("elsewhere"));
    for key in keys(&app).await {
        assert_eq!(key["state"], "active", "{key}");
    }
}

#[tokio::test]
async fn files_are_read_listed_and_deleted_on_their_owners() {
    let app = app_with(&[]).await;
    let mut names = Vec::new();
    for token in [ALICE, BOB, ALICE, BOB, BOB] {
        names.push(
            upload(&app, token, b"x", "text/plain").await["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let owners: std::collections::HashSet<String> = names.iter().map(|n| app.mock.owner_of(n).unwrap()).collect();
    assert!(owners.len() >= 2, "uploads landed on {owners:?}");
    // Reading one works every time, whichever key rotation would pick.
    let id = names[0].trim_start_matches("files/");
    for _ in 0..4 {
        let resp = app
            .http
            .get(app.url(&format!("/v1beta/files/{id}")))
            .header("x-goog-api-key", BOB)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.json::<Value>().await.unwrap()["name"], names[0]);
    }
    // The list merges every key's files, page by page, each once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..20 {
        let mut url = app.url("/gemini/v1beta/files?pageSize=1");
        if let Some(t) = &token {
            url.push_str(&format!("&pageToken={t}"));
        }
        let page: Value = app
            .http
            .get(url)
            .header("x-goog-api-key", ALICE)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for f in page["files"].as_array().into_iter().flatten() {
            seen.push(f["name"].as_str().unwrap().to_string());
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    seen.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(seen, expected);
    // Delete goes to the owner; afterwards the file is gone for everyone.
    let resp = app
        .http
        .delete(app.url(&format!("/v1beta/files/{id}")))
        .header("x-goog-api-key", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .http
        .get(app.url(&format!("/v1beta/files/{id}")))
        .header("x-goog-api-key", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Without a token, nothing.
    let resp = app.http.get(app.url("/v1beta/files")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn cached_contents_live_on_the_key_of_their_files() {
    let app = app_with(&[]).await;
    let file = upload(&app, ALICE, b"a long document", "text/plain").await;
    let owner = app.mock.owner_of(file["name"].as_str().unwrap()).unwrap();
    let create = json!({"model": "models/gemini-2.5-flash", "ttl": "600s",
        "contents": [{"role": "user", "parts": [{"fileData": {"fileUri": file["uri"], "mimeType": "text/plain"}}]}]});
    // Bob's token has no usual key: the file decides.
    let resp = app
        .http
        .post(app.url("/v1beta/cachedContents"))
        .header("x-goog-api-key", BOB)
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let cache: Value = resp.json().await.unwrap();
    let name = cache["name"].as_str().unwrap();
    assert_eq!(app.mock.owner_of(name).unwrap(), owner);
    let id = name.trim_start_matches("cachedContents/");
    for _ in 0..4 {
        let body = json!({"cachedContent": name, "contents": [{"role": "user", "parts": [{"text": "summarize"}]}]});
        let (status, body) = generate(&app, BOB, &body).await;
        assert_eq!(status, 200, "{body}");
        let resp = app
            .http
            .get(app.url(&format!("/v1beta/cachedContents/{id}")))
            .header("x-goog-api-key", BOB)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = app
        .http
        .patch(app.url(&format!("/v1beta/cachedContents/{id}?updateMask=ttl")))
        .header("x-goog-api-key", BOB)
        .json(&json!({"ttl": "7200s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = app
        .http
        .get(app.url("/v1beta/cachedContents"))
        .header("x-goog-api-key", BOB)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["cachedContents"].as_array().map(Vec::len), Some(1), "{list}");
    let resp = app
        .http
        .delete(app.url(&format!("/v1beta/cachedContents/{id}")))
        .header("x-goog-api-key", BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(app.mock.owner_of(name).is_none());
}

#[tokio::test]
async fn ownership_survives_a_restart() {
    let dir = temp_dir();
    let dir_s = dir.to_string_lossy().to_string();
    let mock = gemini_balance::mock::MockGemini::new();
    let mock_addr = mock.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let vars = [("ALLOWED_TOKENS", ALICE), ("DATA_DIR", dir_s.as_str())];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (first, handle) = spawn_gateway(mock.clone(), mock_addr, KEYS, &vars, async move {
        let _ = rx.await;
    })
    .await;
    let file = upload(&first, ALICE, b"keep me", "text/plain").await;
    let _ = tx.send(());
    handle.await.unwrap().unwrap();
    let (second, _h) = spawn_gateway(mock, mock_addr, KEYS, &vars, std::future::pending()).await;
    for _ in 0..4 {
        let (status, body) = generate(&second, ALICE, &uses(&[&file])).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn openai_files_upload_and_chat_file_parts() {
    let app = app_with(&[]).await;
    let form = reqwest::multipart::Form::new().text("purpose", "user_data").part(
        "file",
        reqwest::multipart::Part::bytes(b"%PDF-1.4 tiny".to_vec())
            .file_name("report.pdf")
            .mime_str("application/pdf")
            .unwrap(),
    );
    let resp = app
        .http
        .post(app.url("/v1/files"))
        .bearer_auth(ALICE)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let file: Value = resp.json().await.unwrap();
    assert_eq!(file["object"], "file");
    assert_eq!(file["filename"], "report.pdf");
    assert_eq!(file["bytes"], 13);
    let id = file["id"].as_str().unwrap();
    assert!(id.starts_with("file-"), "{id}");
    let chat = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": id}}, {"type": "text", "text": "summarize"}]}]});
    for _ in 0..3 {
        let resp = app
            .http
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(ALICE)
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(
        sent["contents"][0]["parts"][0]["fileData"]["mimeType"], "application/pdf",
        "{sent}"
    );
    let (status, got) = admin_free_get(&app, &format!("/v1/files/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["id"], id);
    let resp = app
        .http
        .request(Method::DELETE, app.url(&format!("/v1/files/{id}")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["deleted"], true);
    // An unknown id is a 400 in OpenAI's shape.
    let chat = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "not/an id"}}]}]});
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(ALICE)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.json::<Value>().await.unwrap()["error"]["message"].is_string());
}

async fn admin_free_get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.http.get(app.url(path)).bearer_auth(ALICE).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}
