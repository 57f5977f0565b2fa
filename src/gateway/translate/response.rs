//! Gemini `generateContent` response → chat completion.

use serde_json::{json, Value};

use super::{finish_reason, new_id, usage, SIGNATURE_SEPARATOR};
use crate::gateway::error::GatewayError;
use crate::gateway::gemini::{Candidate, GenerateContentResponse, Part};
use crate::gateway::openai::{AssistantMessage, ChatCompletion, Choice, FunctionCallOut, ToolCall};

/// The pieces of one candidate's parts, in OpenAI's terms.
#[derive(Debug, Default, PartialEq)]
pub struct Translated {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

/// Translates every part of a candidate: text, thoughts, function calls, inline images.
pub fn translate_parts(parts: &[Part]) -> Translated {
    let mut out = Translated::default();
    for part in parts {
        if let Some(call) = &part.function_call {
            let base = call.id.clone().unwrap_or_else(|| new_id("call_"));
            let id = match &part.thought_signature {
                Some(sig) => format!("{base}{SIGNATURE_SEPARATOR}{sig}"),
                None => base,
            };
            out.tool_calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCallOut {
                    name: call.name.clone(),
                    arguments: call.args.to_string(),
                },
            });
        } else if let Some(text) = &part.text {
            let target = if part.is_thought() {
                &mut out.reasoning
            } else {
                &mut out.content
            };
            target.get_or_insert_with(String::new).push_str(text);
        } else if let Some(blob) = &part.inline_data {
            let md = if blob.mime_type.starts_with("image/") {
                format!("![image](data:{};base64,{})", blob.mime_type, blob.data)
            } else {
                format!("[attachment](data:{};base64,{})", blob.mime_type, blob.data)
            };
            out.content.get_or_insert_with(String::new).push_str(&md);
        }
    }
    out
}

/// Gemini's `logprobsResult` in OpenAI's `logprobs.content` shape.
pub fn logprobs(c: &Candidate) -> Option<Value> {
    let result = c.extra.get("logprobsResult")?;
    let chosen = result.get("chosenCandidates")?.as_array()?;
    let top = result.get("topCandidates").and_then(Value::as_array);
    let entry = |v: &Value| {
        let token = v.get("token").and_then(Value::as_str).unwrap_or("");
        json!({
            "token": token,
            "logprob": v.get("logProbability").and_then(Value::as_f64).unwrap_or(0.0),
            "bytes": token.as_bytes(),
        })
    };
    let content: Vec<Value> = chosen
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut e = entry(v);
            let alternatives = top
                .and_then(|t| t.get(i))
                .and_then(|t| t.get("candidates"))
                .and_then(Value::as_array)
                .map(|alts| alts.iter().map(entry).collect::<Vec<_>>())
                .unwrap_or_default();
            e["top_logprobs"] = Value::Array(alternatives);
            e
        })
        .collect();
    Some(json!({ "content": content, "refusal": null }))
}

/// Google Search grounding as `url_citation` annotations (one per supported segment and source).
pub fn annotations(c: &Candidate) -> Option<Vec<Value>> {
    let meta = c.extra.get("groundingMetadata")?;
    let chunks = meta.get("groundingChunks").and_then(Value::as_array)?;
    let source = |i: usize| {
        let web = chunks.get(i)?.get("web")?;
        Some((
            web.get("uri")?.as_str()?.to_string(),
            web.get("title").and_then(Value::as_str).unwrap_or("").to_string(),
        ))
    };
    let cite = |url: String, title: String, start: u64, end: u64| json!({"type": "url_citation", "url_citation": {"url": url, "title": title, "start_index": start, "end_index": end}});
    let mut out = Vec::new();
    for support in meta
        .get("groundingSupports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let start = support
            .pointer("/segment/startIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let end = support
            .pointer("/segment/endIndex")
            .and_then(Value::as_u64)
            .unwrap_or(start);
        for idx in support
            .get("groundingChunkIndices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some((url, title)) = idx.as_u64().and_then(|i| source(i as usize)) {
                out.push(cite(url, title, start, end));
            }
        }
    }
    if out.is_empty() {
        out = (0..chunks.len())
            .filter_map(source)
            .map(|(u, t)| cite(u, t, 0, 0))
            .collect();
    }
    (!out.is_empty()).then_some(out)
}

fn blocked_message(resp: &GenerateContentResponse) -> Option<String> {
    let feedback = resp.prompt_feedback.as_ref()?;
    let reason = feedback.block_reason.as_deref()?;
    let detail = feedback
        .block_reason_message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Some(format!(
        "The prompt was blocked by Gemini's safety filters (blockReason {reason}){detail}"
    ))
}

/// Whether a response carries nothing a client could use (no candidate has any part).
pub fn is_empty(resp: &GenerateContentResponse) -> bool {
    blocked_message(resp).is_none()
        && resp
            .candidates
            .iter()
            .all(|c| c.content.as_ref().is_none_or(|c| c.parts.is_empty()) && c.finish_reason.is_none())
}

fn choice(position: usize, c: &Candidate) -> Choice {
    let t = translate_parts(c.content.as_ref().map(|c| c.parts.as_slice()).unwrap_or_default());
    let reason = c.finish_reason.map(|r| finish_reason(r, !t.tool_calls.is_empty()));
    let reason = reason.or(if t.tool_calls.is_empty() {
        Some("stop")
    } else {
        Some("tool_calls")
    });
    Choice {
        index: c.index.unwrap_or(position as u32),
        message: AssistantMessage {
            role: "assistant",
            content: t.content,
            reasoning_content: t.reasoning,
            tool_calls: (!t.tool_calls.is_empty()).then_some(t.tool_calls),
            refusal: None,
            annotations: annotations(c),
        },
        finish_reason: reason,
        logprobs: logprobs(c),
    }
}

/// Translates a whole response. A blocked prompt becomes a 400 `content_filter` error.
pub fn to_openai(resp: &GenerateContentResponse, model: &str, created: u64) -> Result<ChatCompletion, GatewayError> {
    if resp.candidates.is_empty() {
        if let Some(message) = blocked_message(resp) {
            return Err(GatewayError::ContentBlocked { message });
        }
    }
    Ok(ChatCompletion {
        id: resp
            .response_id
            .as_ref()
            .map_or_else(|| new_id("chatcmpl-"), |id| format!("chatcmpl-{id}")),
        object: "chat.completion",
        created,
        model: model.to_string(),
        choices: resp.candidates.iter().enumerate().map(|(i, c)| choice(i, c)).collect(),
        usage: resp.usage_metadata.as_ref().map(usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(v: Value) -> Value {
        let resp: GenerateContentResponse = serde_json::from_value(v).unwrap();
        serde_json::to_value(to_openai(&resp, "gemini-2.5-flash", 1).unwrap()).unwrap()
    }

    #[test]
    fn text_answer_with_usage() {
        let out = translate(json!({
            "candidates": [{"content": {"parts": [{"text": "Hello"}, {"text": " world"}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 9, "thoughtsTokenCount": 3},
            "modelVersion": "gemini-2.5-flash", "responseId": "abc"
        }));
        assert_eq!(out["id"], "chatcmpl-abc");
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(
            out["choices"][0]["message"],
            json!({"role": "assistant", "content": "Hello world", "refusal": null})
        );
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert_eq!(out["usage"]["prompt_tokens"], 4);
        assert_eq!(out["usage"]["completion_tokens"], 5);
        assert_eq!(out["usage"]["total_tokens"], 9);
        assert_eq!(out["usage"]["completion_tokens_details"]["reasoning_tokens"], 3);
    }

    #[test]
    fn finish_reasons_map() {
        for (gemini, openai) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("OTHER", "stop"),
            ("NEW_THING", "stop"),
        ] {
            let out =
                translate(json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": gemini}]}));
            assert_eq!(out["choices"][0]["finish_reason"], openai, "{gemini}");
        }
    }

    #[test]
    fn thoughts_function_calls_and_candidates() {
        let out = translate(json!({"candidates": [
            {"content": {"parts": [{"text": "Let me think", "thought": true}, {"text": "Calling."},
                {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "U0lH"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "Other"}]}, "finishReason": "STOP", "index": 1}
        ]}));
        let m = &out["choices"][0]["message"];
        assert_eq!(m["content"], "Calling.");
        assert_eq!(m["reasoning_content"], "Let me think");
        assert_eq!(
            m["tool_calls"][0]["function"],
            json!({"name": "f", "arguments": "{\"a\":1}"})
        );
        assert!(m["tool_calls"][0]["id"].as_str().unwrap().ends_with(".U0lH"));
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["choices"][1]["index"], 1);
        assert_eq!(out["choices"][1]["message"]["content"], "Other");
    }

    #[test]
    fn blocked_prompt_is_an_error_not_an_empty_success() {
        let resp: GenerateContentResponse = serde_json::from_value(
            json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}),
        )
        .unwrap();
        let e = to_openai(&resp, "m", 0).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.to_openai().error.code.as_deref(), Some("content_filter"));
        assert!(!is_empty(&resp));
        let empty: GenerateContentResponse =
            serde_json::from_value(json!({"candidates": [{"content": {"parts": []}}]})).unwrap();
        assert!(is_empty(&empty));
    }

    #[test]
    fn logprobs_and_grounding_are_kept() {
        let out = translate(
            json!({"candidates": [{"content": {"parts": [{"text": "Hi there"}]}, "finishReason": "STOP",
            "logprobsResult": {"topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Hey", "logProbability": -2.5}]}],
                               "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}]},
            "groundingMetadata": {"groundingChunks": [{"web": {"uri": "https://example.com/a", "title": "A"}}],
                                  "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": 2, "text": "Hi"}, "groundingChunkIndices": [0]}]}}]}),
        );
        let lp = &out["choices"][0]["logprobs"]["content"][0];
        assert_eq!(lp["token"], "Hi");
        assert_eq!(lp["logprob"], -0.1);
        assert_eq!(lp["bytes"], json!([72, 105]));
        assert_eq!(lp["top_logprobs"][1]["token"], "Hey");
        assert_eq!(
            out["choices"][0]["message"]["annotations"][0],
            json!({"type": "url_citation", "url_citation": {"url": "https://example.com/a", "title": "A", "start_index": 0, "end_index": 2}})
        );
    }

    #[test]
    fn inline_images_become_markdown() {
        let out = translate(
            json!({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "QUJD"}}]}, "finishReason": "STOP"}]}),
        );
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "![image](data:image/png;base64,QUJD)"
        );
    }
}
