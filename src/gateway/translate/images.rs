//! OpenAI Images ⇄ Gemini: `images/generations` to Imagen (`:predict`) or to a Gemini image
//! model (`generateContent` with image output), chosen by model name; `images/edits` (images and
//! a prompt) to a Gemini image model. Answers are `b64_json` only: the gateway hosts no images.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::log_ignored;
use crate::gateway::error::GatewayError;
use crate::gateway::gemini::{Blob, Content, GenerateContentRequest, GenerateContentResponse, GenerationConfig, Part};

/// The model used when a request names none.
pub const DEFAULT_MODEL: &str = "imagen-4.0-generate-001";

#[derive(Debug, Clone, Deserialize)]
pub struct ImageRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
    /// `quality`, `style`, `user`, …: accepted, ignored.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An edit: the images to start from (MIME type, base64) and the same options.
#[derive(Debug, Clone)]
pub struct EditRequest {
    pub request: ImageRequest,
    pub images: Vec<(String, String)>,
}

/// Which API a model is served by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Imagen,
    Gemini,
}

pub fn backend(model: &str) -> Backend {
    if model.starts_with("imagen-") {
        Backend::Imagen
    } else {
        Backend::Gemini
    }
}

/// The number of images asked for (1 to 4, as Imagen allows) after checking the options.
pub fn check(req: &ImageRequest) -> Result<u32, GatewayError> {
    log_ignored("images", req.extra.keys().map(String::as_str));
    match req.response_format.as_deref() {
        None | Some("b64_json") => {}
        Some("url") => {
            return Err(GatewayError::invalid(
                "response_format \"url\" is not supported: the gateway does not host images; use \"b64_json\"",
                Some("response_format"),
            ))
        }
        Some(other) => {
            return Err(GatewayError::invalid(
                format!("response_format must be b64_json; got {other:?}"),
                Some("response_format"),
            ))
        }
    }
    if req.prompt.trim().is_empty() {
        return Err(GatewayError::invalid("prompt must not be empty", Some("prompt")));
    }
    let n = req.n.unwrap_or(1);
    if !(1..=4).contains(&n) {
        return Err(GatewayError::invalid("n must be between 1 and 4", Some("n")));
    }
    aspect_ratio(req.size.as_deref())?;
    Ok(n)
}

/// OpenAI's `size` (`1024x1536`, `auto`) as the nearest aspect ratio Google offers.
pub fn aspect_ratio(size: Option<&str>) -> Result<Option<&'static str>, GatewayError> {
    let Some(size) = size.filter(|s| *s != "auto") else {
        return Ok(None);
    };
    let parsed = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse::<f64>().ok()?, h.trim().parse::<f64>().ok()?)))
        .filter(|(w, h)| *w > 0.0 && *h > 0.0);
    let Some((w, h)) = parsed else {
        return Err(GatewayError::invalid(
            format!("size must be WIDTHxHEIGHT (e.g. 1024x1024) or auto; got {size:?}"),
            Some("size"),
        ));
    };
    const RATIOS: [(&str, f64); 5] = [
        ("1:1", 1.0),
        ("3:4", 0.75),
        ("4:3", 4.0 / 3.0),
        ("9:16", 0.5625),
        ("16:9", 16.0 / 9.0),
    ];
    let ratio = w / h;
    Ok(RATIOS
        .iter()
        .min_by(|a, b| (a.1 - ratio).abs().total_cmp(&(b.1 - ratio).abs()))
        .map(|(name, _)| *name))
}

/// The `:predict` body for Imagen.
pub fn imagen_body(req: &ImageRequest, n: u32) -> Result<Value, GatewayError> {
    let mut parameters = json!({ "sampleCount": n });
    if let Some(ratio) = aspect_ratio(req.size.as_deref())? {
        parameters["aspectRatio"] = json!(ratio);
    }
    Ok(json!({"instances": [{"prompt": req.prompt}], "parameters": parameters}))
}

/// The `generateContent` body for a Gemini image model: the prompt, any images to edit, and
/// image output.
pub fn gemini_body(req: &ImageRequest, images: &[(String, String)]) -> Result<GenerateContentRequest, GatewayError> {
    let mut parts: Vec<Part> = images
        .iter()
        .map(|(mime, data)| Part {
            inline_data: Some(Blob {
                mime_type: mime.clone(),
                data: data.clone(),
            }),
            ..Default::default()
        })
        .collect();
    parts.push(Part::text(req.prompt.clone()));
    let mut config = GenerationConfig::default();
    config
        .extra
        .insert("responseModalities".into(), json!(["TEXT", "IMAGE"]));
    if let Some(ratio) = aspect_ratio(req.size.as_deref())? {
        config
            .extra
            .insert("imageConfig".into(), json!({ "aspectRatio": ratio }));
    }
    Ok(GenerateContentRequest {
        contents: vec![Content {
            role: Some("user".into()),
            parts,
        }],
        generation_config: Some(config),
        ..Default::default()
    })
}

/// OpenAI's `data` items from Imagen's predictions; none at all means the prompt was filtered.
pub fn from_imagen(answer: &[u8]) -> Result<Vec<Value>, GatewayError> {
    let v: Value = serde_json::from_slice(answer).map_err(|e| GatewayError::BadUpstreamResponse {
        message: format!("unreadable Imagen answer: {e}"),
    })?;
    let data: Vec<Value> = v
        .get("predictions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("bytesBase64Encoded").and_then(Value::as_str))
        .map(|b64| json!({ "b64_json": b64 }))
        .collect();
    if data.is_empty() {
        return Err(filtered());
    }
    Ok(data)
}

fn filtered() -> GatewayError {
    GatewayError::ContentBlocked {
        message: "Google's safety filters blocked this prompt; no image was generated".into(),
    }
}

/// OpenAI's `data` items from a Gemini answer: each image part, with the model's text (if any)
/// as `revised_prompt`.
pub fn from_gemini(resp: &GenerateContentResponse) -> Result<Vec<Value>, GatewayError> {
    let parts = resp
        .candidates
        .first()
        .and_then(|c| c.content.as_ref())
        .map(|c| c.parts.as_slice())
        .unwrap_or_default();
    let text: String = parts
        .iter()
        .filter(|p| !p.is_thought())
        .filter_map(|p| p.text.as_deref())
        .collect::<Vec<_>>()
        .join("")
        .trim()
        .to_string();
    let data: Vec<Value> = parts
        .iter()
        .filter_map(|p| p.inline_data.as_ref())
        .filter(|b| b.mime_type.starts_with("image/"))
        .map(|b| {
            let mut item = json!({ "b64_json": b.data });
            if !text.is_empty() {
                item["revised_prompt"] = json!(text);
            }
            item
        })
        .collect();
    if data.is_empty() {
        return Err(filtered());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ImageRequest {
        serde_json::from_value(v).expect("request")
    }

    #[test]
    fn sizes_become_aspect_ratios() {
        assert_eq!(aspect_ratio(Some("1024x1024")).expect("ok"), Some("1:1"));
        assert_eq!(aspect_ratio(Some("1536x1024")).expect("ok"), Some("4:3"));
        assert_eq!(aspect_ratio(Some("1792x1024")).expect("ok"), Some("16:9"));
        assert_eq!(aspect_ratio(Some("1024x1792")).expect("ok"), Some("9:16"));
        assert_eq!(aspect_ratio(Some("auto")).expect("ok"), None);
        assert!(aspect_ratio(Some("big")).is_err());
    }

    #[test]
    fn requests_are_checked_and_mapped() {
        let r = req(json!({"prompt": "a cat", "n": 2, "size": "1792x1024", "quality": "hd"}));
        assert_eq!(check(&r).expect("valid"), 2);
        assert_eq!(
            imagen_body(&r, 2).expect("body"),
            json!({"instances": [{"prompt": "a cat"}], "parameters": {"sampleCount": 2, "aspectRatio": "16:9"}})
        );
        let g =
            serde_json::to_value(gemini_body(&r, &[("image/png".into(), "AAAA".into())]).expect("body")).expect("json");
        assert_eq!(g["contents"][0]["parts"][0]["inlineData"]["mimeType"], "image/png");
        assert_eq!(g["contents"][0]["parts"][1]["text"], "a cat");
        assert_eq!(g["generationConfig"]["responseModalities"], json!(["TEXT", "IMAGE"]));
        assert_eq!(g["generationConfig"]["imageConfig"]["aspectRatio"], "16:9");
        for (bad, param) in [
            (json!({"prompt": "x", "response_format": "url"}), "response_format"),
            (json!({"prompt": "x", "n": 9}), "n"),
            (json!({"prompt": " "}), "prompt"),
        ] {
            let e = check(&req(bad)).expect_err("rejected");
            assert_eq!(e.to_openai().error.param.as_deref(), Some(param));
        }
        assert_eq!(backend("imagen-4.0-generate-001"), Backend::Imagen);
        assert_eq!(backend("gemini-2.5-flash-image"), Backend::Gemini);
    }

    #[test]
    fn answers_become_b64_items_or_a_content_filter_error() {
        let data = from_imagen(br#"{"predictions": [{"bytesBase64Encoded": "QQ==", "mimeType": "image/png"}]}"#)
            .expect("data");
        assert_eq!(data, vec![json!({"b64_json": "QQ=="})]);
        assert_eq!(from_imagen(b"{}").expect_err("filtered").status(), 400);
        let resp: GenerateContentResponse = serde_json::from_value(json!({"candidates": [{"content": {"parts": [
            {"text": "A cat."}, {"inlineData": {"mimeType": "image/png", "data": "QQ=="}}]}}]}))
        .expect("response");
        assert_eq!(
            from_gemini(&resp).expect("data"),
            vec![json!({"b64_json": "QQ==", "revised_prompt": "A cat."})]
        );
    }
}
