//! OpenAI embeddings request ⇄ Gemini `batchEmbedContents`.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::request::model_id;
use crate::gateway::error::GatewayError;

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: Value,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingResponse {
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Clone, Serialize)]
pub struct Embedding {
    pub object: &'static str,
    pub index: usize,
    /// A list of floats, or a base64 string of little-endian f32s.
    pub embedding: Value,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Deserialize)]
struct BatchResponse {
    #[serde(default)]
    embeddings: Vec<Values>,
}

#[derive(Debug, Deserialize)]
struct Values {
    #[serde(default)]
    values: Vec<f32>,
}

/// The inputs as texts, the model id, and the Gemini body.
pub fn to_gemini(req: &EmbeddingRequest) -> Result<(String, Vec<String>, Value), GatewayError> {
    let model = model_id(&req.model)?;
    let texts: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        Value::Array(items) if items.is_empty() => {
            return Err(GatewayError::invalid("'input' must not be empty", Some("input")))
        }
        _ => {
            return Err(GatewayError::invalid(
                "'input' must be a string or a list of strings (token arrays are not supported by Gemini)",
                Some("input"),
            ))
        }
    };
    if let Some(f) = req
        .encoding_format
        .as_deref()
        .filter(|f| *f != "float" && *f != "base64")
    {
        return Err(GatewayError::invalid(
            format!("'encoding_format' must be float or base64, got {f:?}"),
            Some("encoding_format"),
        ));
    }
    let requests: Vec<Value> = texts
        .iter()
        .map(|t| {
            let mut r = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}});
            if let Some(d) = req.dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    Ok((model, texts, json!({ "requests": requests })))
}

/// Translates Gemini's answer. Gemini reports no token counts for embeddings, so usage is an
/// estimate of about four characters per token.
pub fn to_openai(body: &[u8], req: &EmbeddingRequest, texts: &[String]) -> Result<EmbeddingResponse, GatewayError> {
    let parsed: BatchResponse = serde_json::from_slice(body).map_err(|e| GatewayError::BadUpstreamResponse {
        message: format!("unreadable embeddings from Gemini: {e}"),
    })?;
    if parsed.embeddings.len() != texts.len() {
        return Err(GatewayError::BadUpstreamResponse {
            message: format!(
                "Gemini returned {} embeddings for {} inputs",
                parsed.embeddings.len(),
                texts.len()
            ),
        });
    }
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let data = parsed
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = e.values.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(e.values)
            };
            Embedding {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let tokens: u32 = texts.iter().map(|t| t.chars().count().div_ceil(4) as u32).sum();
    Ok(EmbeddingResponse {
        object: "list",
        data,
        model: req.model.clone(),
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> EmbeddingRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn string_and_list_inputs_with_dimensions() {
        let (model, texts, body) = to_gemini(&req(
            json!({"model": "text-embedding-004", "input": ["a", "b"], "dimensions": 3}),
        ))
        .unwrap();
        assert_eq!(model, "text-embedding-004");
        assert_eq!(texts, ["a", "b"]);
        assert_eq!(
            body["requests"][1],
            json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3})
        );
        let (_, texts, _) = to_gemini(&req(json!({"model": "m", "input": "one"}))).unwrap();
        assert_eq!(texts, ["one"]);
        assert!(to_gemini(&req(json!({"model": "m", "input": [1, 2, 3]}))).is_err());
        assert!(to_gemini(&req(json!({"model": "m", "input": []}))).is_err());
    }

    #[test]
    fn base64_encoding_is_little_endian_f32() {
        let r = req(json!({"model": "m", "input": "abcdefgh", "encoding_format": "base64"}));
        let out = to_openai(
            br#"{"embeddings": [{"values": [1.0, -2.0]}]}"#,
            &r,
            &["abcdefgh".into()],
        )
        .unwrap();
        let b64 = out.data[0].embedding.as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
        assert_eq!(out.usage.prompt_tokens, 2);
    }
}
