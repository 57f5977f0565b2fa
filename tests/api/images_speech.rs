//! OpenAI images and speech through the server: Imagen and Gemini image models, edits from a
//! multipart form, zero-quota image models, WAV and PCM speech, errors in OpenAI's shape.

use base64::Engine as _;
use gemini_balance::mock::Behavior;
use serde_json::{json, Value};

use crate::helpers::*;

const A: &str = "AIzaMediaKeyAAAAAAAAAAAAAAAAAAAAAAAAAAA1";
const B: &str = "AIzaMediaKeyBBBBBBBBBBBBBBBBBBBBBBBBBBB2";

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.http.post(app.url(path)).json(body).send().await.unwrap()
}

fn is_png(b64: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .is_ok_and(|b| b.starts_with(b"\x89PNG"))
}

#[tokio::test]
async fn images_from_imagen_and_gemini_image_models() {
    let app = spawn_app_with(&[A, B], &[("MODEL_ALIASES", "dall-e-3=imagen-4.0-generate-001")]).await;
    let resp = post(
        &app,
        "/v1/images/generations",
        &json!({"model": "dall-e-3", "prompt": "a red fox", "n": 2, "size": "1792x1024"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert!(data.iter().all(|d| is_png(d["b64_json"].as_str().unwrap())), "{v}");
    assert_eq!(
        app.mock.stats().last_path.unwrap(),
        "models/imagen-4.0-generate-001:predict"
    );
    assert_eq!(
        app.mock.stats().last_body.unwrap()["parameters"],
        json!({"sampleCount": 2, "aspectRatio": "16:9"})
    );

    let resp = post(
        &app,
        "/v1/images/generations",
        &json!({"model": "gemini-2.5-flash-image", "prompt": "a blue fox", "n": 2}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
    assert!(is_png(v["data"][0]["b64_json"].as_str().unwrap()));
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(sent["generationConfig"]["responseModalities"], json!(["TEXT", "IMAGE"]));

    // Errors in OpenAI's shape.
    let resp = post(
        &app,
        "/v1/images/generations",
        &json!({"prompt": "x", "response_format": "url"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "response_format");
    let resp = post(
        &app,
        "/v1/images/generations",
        &json!({"prompt": "something [[block]]"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "content_filter", "{e}");
    let resp = post(
        &app,
        "/v1/images/generations",
        &json!({"model": "dall-e-2", "prompt": "x"}),
    )
    .await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn an_image_model_without_quota_on_one_key_is_served_by_the_others() {
    let app = spawn_app(&[A, B]).await;
    app.mock.set(
        A,
        Behavior::ZeroQuota {
            model: Some("gemini-2.5-flash-image".into()),
        },
    );
    for _ in 0..4 {
        let resp = post(
            &app,
            "/v1/images/generations",
            &json!({"model": "gemini-2.5-flash-image", "prompt": "x"}),
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    let before = app.mock.requests_for(A);
    for _ in 0..4 {
        post(
            &app,
            "/v1/images/generations",
            &json!({"model": "gemini-2.5-flash-image", "prompt": "y"}),
        )
        .await;
    }
    assert_eq!(app.mock.requests_for(A), before, "A is out for the image model");
    let (status, _) = app.chat_json(&chat_body("text still works on A")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn image_edits_from_a_multipart_form() {
    let app = spawn_app(&[A]).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(gemini_balance::mock::PNG_1X1)
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(png)
                .file_name("in.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("prompt", "make it blue")
        .text("model", "gemini-2.5-flash-image")
        .text("n", "1");
    let resp = app
        .http
        .post(app.url("/v1/images/edits"))
        .bearer_auth("any")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(is_png(v["data"][0]["b64_json"].as_str().unwrap()), "{v}");
    let sent = app.mock.stats().last_body.unwrap();
    let parts = &sent["contents"][0]["parts"];
    assert_eq!(parts[0]["inlineData"]["mimeType"], "image/png");
    assert_eq!(parts[1]["text"], "make it blue");

    let form = reqwest::multipart::Form::new()
        .text("prompt", "no image")
        .text("model", "gemini-2.5-flash-image");
    let resp = app
        .http
        .post(app.url("/v1/images/edits"))
        .bearer_auth("any")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn speech_as_wav_or_pcm_in_gemini_voices() {
    let app = spawn_app_with(&[A], &[("MODEL_ALIASES", "tts-1=gemini-2.5-flash-preview-tts")]).await;
    let resp = post(
        &app,
        "/v1/audio/speech",
        &json!({"model": "tts-1", "input": "hello there", "voice": "alloy"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    let wav = resp.bytes().await.unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 24_000);
    assert_eq!(wav.len(), 44 + 2 * 2400 * 2, "0.1 s per word, 16-bit");
    let sent = app.mock.stats().last_body.unwrap();
    assert_eq!(
        sent["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
        "Zephyr"
    );
    let resp = post(
        &app,
        "/v1/audio/speech",
        &json!({"model": "gemini-2.5-flash-preview-tts", "input": "hi", "voice": "kore", "response_format": "pcm"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/pcm");
    assert_eq!(resp.bytes().await.unwrap().len(), 2400 * 2);

    let resp = post(
        &app,
        "/v1/audio/speech",
        &json!({"model": "tts-1", "input": "x", "voice": "alloy", "response_format": "mp3"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "response_format");
    // An unknown voice is Google's 400, passed on.
    let resp = post(
        &app,
        "/v1/audio/speech",
        &json!({"model": "tts-1", "input": "x", "voice": "robot"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("Robot"), "{e}");
}

#[tokio::test]
async fn speech_abandons_a_dead_key_after_the_first_byte_timeout() {
    // Speech goes upstream as a stream: a key that sends no headers is given up after the
    // first-byte timeout (1 s), not after the total timeout (300 s, beyond the client's patience).
    let app = spawn_app_with(
        &[A, B],
        &[
            ("MODEL_ALIASES", "tts-1=gemini-2.5-flash-preview-tts"),
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "1"),
            ("UPSTREAM_TOTAL_TIMEOUT_SECS", "300"),
        ],
    )
    .await;
    app.mock.set(A, Behavior::Hang);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let resp = client
        .post(app.url("/v1/audio/speech"))
        .json(&json!({"model": "tts-1", "input": "hello there", "voice": "alloy", "response_format": "pcm"}))
        .send()
        .await
        .expect("answered before the client gave up");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 2 * 2400 * 2);
    assert_eq!(app.mock.requests_for(A), 1);
    assert_eq!(app.mock.requests_for(B), 1);
    assert!(
        app.mock.stats().last_path.unwrap().ends_with(":streamGenerateContent"),
        "asked as a stream"
    );
}
