//! Model-name suffixes for clients that can set only a model name (`MODEL_SUFFIXES`, on by
//! default): `-search` (Google Search grounding), `-thinking` (thinking on, thoughts shown),
//! `-nothinking` (thinking off, or the smallest budget where off is impossible), `-image`
//! (image output), in any combination and order, e.g. `gemini-2.5-flash-search-thinking`.

use serde_json::{json, Value};

use super::gemini::{GenerateContentRequest, GenerationConfig};

/// What the suffixes of a model name ask for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Suffixes {
    pub search: bool,
    /// `Some(true)`: `-thinking`; `Some(false)`: `-nothinking`.
    pub thinking: Option<bool>,
    pub image: bool,
}

/// The suffixes offered in `/v1/models` for each Gemini generation model.
pub const LISTED: &[&str] = &["-search", "-thinking", "-nothinking"];

/// Whether Google's own model names end in `-image` here (`gemini-2.5-flash-image`): then the
/// name stays whole, and image output is asked for all the same.
fn is_image_model(name: &str) -> bool {
    name.ends_with("-flash-image") || name.ends_with("-image-preview")
}

/// Splits a model name into the Gemini model and its suffixes.
pub fn split(model: &str) -> (String, Suffixes) {
    let mut base = model;
    let mut s = Suffixes::default();
    loop {
        if let Some(rest) = base.strip_suffix("-search") {
            s.search = true;
            base = rest;
        } else if let Some(rest) = base.strip_suffix("-nothinking") {
            s.thinking = Some(false);
            base = rest;
        } else if let Some(rest) = base.strip_suffix("-thinking") {
            s.thinking = Some(true);
            base = rest;
        } else if is_image_model(base) {
            s.image = true;
            break;
        } else if let Some(rest) = base.strip_suffix("-image") {
            s.image = true;
            base = rest;
        } else {
            break;
        }
    }
    if base.is_empty() {
        return (model.to_string(), Suffixes::default());
    }
    (base.to_string(), s)
}

impl Suffixes {
    pub fn is_empty(&self) -> bool {
        *self == Suffixes::default()
    }

    /// Applies them to a request for `model` (the base name).
    pub fn apply(&self, body: &mut GenerateContentRequest, model: &str) {
        if self.search {
            let tools = body.tools.get_or_insert_with(Vec::new);
            if !tools.iter().any(|t| t.get("googleSearch").is_some()) {
                tools.push(json!({"googleSearch": {}}));
            }
        }
        let config = body.generation_config.get_or_insert_with(GenerationConfig::default);
        if let Some(on) = self.thinking {
            let mut thinking = match config.thinking_config.take() {
                Some(Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            thinking.remove("thinkingBudget");
            thinking.remove("thinkingLevel");
            let gemini3 = model.starts_with("gemini-3");
            if on {
                thinking.insert("includeThoughts".into(), json!(true));
                if gemini3 {
                    thinking.insert("thinkingLevel".into(), json!("high"));
                } else {
                    thinking.insert("thinkingBudget".into(), json!(-1));
                }
            } else {
                thinking.remove("includeThoughts");
                if gemini3 {
                    thinking.insert("thinkingLevel".into(), json!("low"));
                } else if model.contains("2.5-pro") {
                    // 2.5 Pro cannot stop thinking; 128 tokens is its least.
                    thinking.insert("thinkingBudget".into(), json!(128));
                } else {
                    thinking.insert("thinkingBudget".into(), json!(0));
                }
            }
            config.thinking_config = Some(Value::Object(thinking));
        }
        if self.image {
            config
                .extra
                .insert("responseModalities".into(), json!(["TEXT", "IMAGE"]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_in_any_order() {
        assert_eq!(
            split("gemini-2.5-flash"),
            ("gemini-2.5-flash".into(), Suffixes::default())
        );
        let (m, s) = split("gemini-2.5-flash-search-thinking");
        assert_eq!(m, "gemini-2.5-flash");
        assert!(s.search && s.thinking == Some(true) && !s.image);
        let (m, s) = split("gemini-2.5-pro-nothinking-search");
        assert_eq!(
            (m.as_str(), s.thinking, s.search),
            ("gemini-2.5-pro", Some(false), true)
        );
        let (m, s) = split("gemini-2.0-flash-exp-image");
        assert_eq!((m.as_str(), s.image), ("gemini-2.0-flash-exp", true));
        // Google's own image models keep their names.
        let (m, s) = split("gemini-2.5-flash-image");
        assert_eq!((m.as_str(), s.image), ("gemini-2.5-flash-image", true));
        let (m, s) = split("gemini-3-pro-image-preview-search");
        assert_eq!(
            (m.as_str(), s.image, s.search),
            ("gemini-3-pro-image-preview", true, true)
        );
        assert_eq!(split("-search").0, "-search");
    }

    #[test]
    fn suffixes_shape_the_request() {
        let mut body = GenerateContentRequest::default();
        let (m, s) = split("gemini-2.5-pro-nothinking-search-image");
        s.apply(&mut body, &m);
        let v = serde_json::to_value(&body).expect("json");
        assert_eq!(v["tools"], json!([{"googleSearch": {}}]));
        assert_eq!(v["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 128}));
        assert_eq!(v["generationConfig"]["responseModalities"], json!(["TEXT", "IMAGE"]));
        let mut body = GenerateContentRequest {
            generation_config: Some(GenerationConfig {
                thinking_config: Some(json!({"thinkingBudget": 1024})),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (m, s) = split("gemini-3-pro-preview-thinking");
        s.apply(&mut body, &m);
        let v = serde_json::to_value(&body).expect("json");
        assert_eq!(
            v["generationConfig"]["thinkingConfig"],
            json!({"includeThoughts": true, "thinkingLevel": "high"})
        );
    }
}
