//! Remote images: fetched server-side within limits, refused for non-public hosts by default.

use axum::routing::get;
use serde_json::{json, Value};

use crate::helpers::*;

const KEY: &str = "AIzaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfake-image-bytes";

async fn image_server() -> String {
    let app = axum::Router::new()
        .route("/cat.png", get(|| async { ([("content-type", "image/png")], PNG) }))
        .route(
            "/page.html",
            get(|| async { ([("content-type", "text/html")], "<html></html>") }),
        )
        .route(
            "/big.png",
            get(|| async { ([("content-type", "image/png")], vec![0u8; 5000]) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn with_image(url: &str) -> Value {
    json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is it"},
        {"type": "image_url", "image_url": {"url": url}}
    ]}]})
}

#[tokio::test]
async fn remote_images_are_fetched_and_inlined() {
    let images = image_server().await;
    let app = spawn_app_with(
        &[KEY],
        &[("MEDIA_FETCH_ALLOW_PRIVATE", "true"), ("MEDIA_FETCH_MAX_BYTES", "1000")],
    )
    .await;
    let (status, body) = app.chat_json(&with_image(&format!("{images}/cat.png"))).await;
    assert_eq!(status, 200, "{body}");
    let sent = app.mock.stats().last_body.unwrap();
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(PNG);
    assert_eq!(
        sent["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": expected}})
    );

    for (path, needle) in [
        ("/page.html", "could not be fetched"),
        ("/big.png", "could not be fetched"),
        ("/missing.png", "could not be fetched"),
    ] {
        let (status, body) = app.chat_json(&with_image(&format!("{images}{path}"))).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
        assert_eq!(body["error"]["param"], "messages[0].content[1].image_url.url");
    }
    assert_eq!(app.mock.stats().total, 1, "failed fetches never reach Gemini");
}

#[tokio::test]
async fn private_hosts_are_refused_by_default() {
    let images = image_server().await;
    let app = spawn_app(&[KEY]).await;
    let (status, body) = app.chat_json(&with_image(&format!("{images}/cat.png"))).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be fetched"),
        "{body}"
    );
    // The same text whether the host is refused or nothing listens there: no port scanning.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_, other) = app.chat_json(&with_image(&format!("http://{closed}/x.png"))).await;
    assert_eq!(other["error"]["message"], body["error"]["message"]);
    assert_eq!(app.mock.stats().total, 0);
}

#[tokio::test]
async fn media_urls_are_capped_per_request() {
    let images = image_server().await;
    let app = spawn_app_with(
        &[KEY],
        &[
            ("MEDIA_FETCH_ALLOW_PRIVATE", "true"),
            ("MEDIA_FETCH_MAX_URLS", "2"),
            ("MEDIA_FETCH_MAX_BYTES", "1000"),
            ("MEDIA_FETCH_MAX_TOTAL_BYTES", &(PNG.len() * 2 + 10).to_string()),
        ],
    )
    .await;
    let url = format!("{images}/cat.png");
    let many = |n: usize| {
        let mut parts = vec![json!({"type": "text", "text": "what are they"})];
        parts.extend((0..n).map(|_| json!({"type": "image_url", "image_url": {"url": url}})));
        json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": parts}]})
    };
    let (status, body) = app.chat_json(&many(3)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MEDIA_FETCH_MAX_URLS"),
        "{body}"
    );
    let (status, body) = app.chat_json(&many(2)).await;
    assert_eq!(status, 200, "{body}");
    // Two fit the total budget; a third message's worth does not.
    let mut three = many(2);
    three["messages"][0]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "image_url", "image_url": {"url": url}}));
    let app3 = spawn_app_with(
        &[KEY],
        &[
            ("MEDIA_FETCH_ALLOW_PRIVATE", "true"),
            ("MEDIA_FETCH_MAX_URLS", "5"),
            ("MEDIA_FETCH_MAX_BYTES", "1000"),
            ("MEDIA_FETCH_MAX_TOTAL_BYTES", &(PNG.len() * 2 + 10).to_string()),
        ],
    )
    .await;
    let (status, body) = app3.chat_json(&three).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MEDIA_FETCH_MAX_TOTAL_BYTES"),
        "{body}"
    );
}

#[tokio::test]
async fn anthropic_image_urls_go_through_the_same_guard() {
    let images = image_server().await;
    let body = json!({"model": "gemini-2.5-flash", "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is it"},
        {"type": "image", "source": {"type": "url", "url": format!("{images}/cat.png")}}]}]});
    let app = spawn_app_with(&[KEY], &[("MEDIA_FETCH_ALLOW_PRIVATE", "true")]).await;
    let resp = app.http.post(app.url("/v1/messages")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(PNG);
    assert_eq!(
        app.mock.stats().last_body.unwrap()["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": expected}})
    );
    let guarded = spawn_app(&[KEY]).await;
    let resp = guarded
        .http
        .post(guarded.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be fetched"),
        "{err}"
    );
    assert_eq!(guarded.mock.stats().total, 0);
}

#[tokio::test]
async fn a_host_name_resolving_to_a_private_address_is_refused_when_connecting() {
    // `localhost` is a name, not an address literal: only the resolver the media client
    // connects through can see that it points at 127.0.0.1.
    let images = image_server().await;
    let port = images.rsplit(':').next().unwrap();
    let by_name = format!("http://localhost:{port}/cat.png");
    let app = spawn_app(&[KEY]).await;
    let (status, body) = app.chat_json(&with_image(&by_name)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be fetched"),
        "{body}"
    );
    assert_eq!(app.mock.stats().total, 0);
    // The same name is fetched when private hosts are allowed: it was the guard that refused.
    let open = spawn_app_with(&[KEY], &[("MEDIA_FETCH_ALLOW_PRIVATE", "true")]).await;
    let (status, body) = open.chat_json(&with_image(&by_name)).await;
    assert_eq!(status, 200, "{body}");
}
