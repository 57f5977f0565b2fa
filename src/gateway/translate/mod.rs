//! Client dialects ⇄ Gemini translation: pure functions over the wire types, tested beside them.
//!
//! - [`request`]: chat-completions request → `generateContent` request.
//! - [`response`]: `generateContent` response → chat completion.
//! - [`stream`]: `streamGenerateContent` events → chat-completion chunks.
//! - [`json_out`]: the chat answers written as JSON by hand (what serde writes, faster).
//! - [`anthropic`]: the Anthropic Messages dialect (request, response, stream encoder).
//! - [`responses`]: the OpenAI Responses dialect (request, response, stream encoder).
//! - [`images`], [`speech`], [`embeddings`]: OpenAI's images, speech and embeddings APIs.
//!
//! Every dialect streams through one driver (`service::encode_stream`) by implementing
//! [`StreamEncoder`]; what they share (schemas, effort levels, signatures) lives here.

pub mod anthropic;
pub mod embeddings;
pub mod images;
pub mod json_out;
pub mod request;
pub mod response;
pub mod responses;
pub mod speech;
pub mod stream;

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Map, Value};

use super::error::GatewayError;

use super::gemini::{FinishReason, GenerateContentResponse, UsageMetadata};
use super::openai::Usage;
use super::openai::{CompletionTokensDetails, PromptTokensDetails};

/// Separates a tool-call id from the Gemini `thoughtSignature` carried inside it, so multi-turn
/// tool use with thinking models survives a round trip through OpenAI clients.
pub const SIGNATURE_SEPARATOR: char = '.';

/// Gemini's output-token ceiling: larger requests (Claude Code asks for 128,000) are capped.
pub const MAX_OUTPUT_TOKENS: u32 = 65_536;
/// The signature Google documents for function calls whose real signature was lost: Gemini 3
/// rejects a function-call turn without one.
pub const PLACEHOLDER_SIGNATURE: &str = "skip_thought_signature_validator";

/// Whether a (resolved) model rejects unsigned function calls.
pub fn needs_signatures(model: &str) -> bool {
    model.starts_with("gemini-3")
}

/// Gives every unsigned function call in the model's turns Google's placeholder signature when
/// the (resolved) model rejects unsigned calls; other models are left alone. Shared by every
/// dialect, after model aliases are resolved.
pub fn sign_calls(body: &mut super::gemini::GenerateContentRequest, model: &str) {
    if !needs_signatures(model) {
        return;
    }
    for turn in body.contents.iter_mut().filter(|t| t.role.as_deref() == Some("model")) {
        for part in turn.parts.iter_mut() {
            if part.function_call.is_some() && part.thought_signature.is_none() {
                part.thought_signature = Some(PLACEHOLDER_SIGNATURE.to_string());
            }
        }
    }
}

/// Removes JSON-schema keywords Gemini has no use for (`$schema`), at every level.
pub fn clean_schema(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| k != "$schema")
                .map(|(k, v)| (k, clean_schema(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_schema).collect()),
        other => other,
    }
}

/// OpenAI's reasoning effort as a Gemini `thinkingConfig`: a thinking level on Gemini 3, a
/// token budget before it. `param` names the field in errors.
pub fn thinking_for_effort(effort: &str, model: &str, param: &str) -> Result<Value, GatewayError> {
    let gemini3 = model.contains("gemini-3");
    Ok(match (effort, gemini3) {
        ("none", false) => json!({"thinkingBudget": 0}),
        ("minimal", false) => json!({"thinkingBudget": 512}),
        ("low", false) => json!({"thinkingBudget": 1024}),
        ("medium", false) => json!({"thinkingBudget": 8192}),
        ("high" | "xhigh", false) => json!({"thinkingBudget": 24576}),
        ("none" | "minimal" | "low", true) => json!({"thinkingLevel": "low"}),
        ("medium" | "high" | "xhigh", true) => json!({"thinkingLevel": "high"}),
        (other, _) => {
            return Err(GatewayError::invalid(
                format!("'{param}' must be one of none, minimal, low, medium, high, xhigh; got {other:?}"),
                Some(param),
            ))
        }
    })
}

/// Logs, once per process and at debug, the request fields a dialect accepted but has no use
/// for, so gaps in the translation are visible without flooding the log.
pub fn log_ignored<'a>(dialect: &str, fields: impl IntoIterator<Item = &'a str>) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Mutex::default);
    let Ok(mut seen) = seen.lock() else { return };
    for field in fields {
        // Bounded: a client inventing field names cannot grow the set without limit.
        if seen.len() < 1024 && seen.insert(format!("{dialect}.{field}")) {
            tracing::debug!(dialect, field, "ignoring a request field Gemini has no use for");
        }
    }
}

/// Maps Gemini's finish reason to OpenAI's.
pub fn finish_reason(reason: FinishReason, has_tool_calls: bool) -> &'static str {
    match reason {
        FinishReason::MaxTokens => "length",
        FinishReason::Safety
        | FinishReason::Recitation
        | FinishReason::Blocklist
        | FinishReason::ProhibitedContent
        | FinishReason::Spii
        | FinishReason::ImageSafety
        | FinishReason::Language => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Maps `usageMetadata` to OpenAI usage; thought tokens count as completion tokens. Sums
/// saturate: the counts come from upstream and may be anything up to `u32::MAX`.
pub fn usage(u: &UsageMetadata) -> Usage {
    let completion = u.candidates_token_count.saturating_add(u.thoughts_token_count);
    let total = if u.total_token_count > 0 {
        u.total_token_count
    } else {
        u.prompt_token_count.saturating_add(completion)
    };
    Usage {
        prompt_tokens: u.prompt_token_count,
        completion_tokens: completion,
        total_tokens: total,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: u.cached_content_token_count,
        }),
        completion_tokens_details: Some(CompletionTokensDetails {
            reasoning_tokens: u.thoughts_token_count,
        }),
    }
}

/// A fresh random id with a prefix (`chatcmpl-…`, `call_…`).
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    id.extend((0..24).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char));
    id
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One server-sent event for the client: an optional event name and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event: Option<&'static str>,
    pub data: String,
}

impl Frame {
    pub fn data(data: impl Into<String>) -> Self {
        Frame {
            event: None,
            data: data.into(),
        }
    }
}

/// What a dialect with one answer per response (Anthropic, Responses) follows across a stream:
/// the latest usage, the finish reason, whether the prompt was blocked.
#[derive(Debug, Default)]
pub struct OneAnswer {
    pub usage: Option<UsageMetadata>,
    pub finish: Option<FinishReason>,
    pub blocked: bool,
}

impl OneAnswer {
    /// Notes an event's usage, finish reason and blocked prompt; the parts of its first
    /// candidate, the one answer these dialects carry.
    pub fn observe<'a>(&mut self, event: &'a GenerateContentResponse) -> &'a [super::gemini::Part] {
        if let Some(u) = &event.usage_metadata {
            self.usage = Some(u.clone());
        }
        if event.candidates.is_empty() && event.prompt_feedback.as_ref().is_some_and(|f| f.block_reason.is_some()) {
            self.blocked = true;
            self.finish = Some(FinishReason::Safety);
        }
        let Some(c) = event.candidates.first() else {
            return &[];
        };
        if c.finish_reason.is_some() {
            self.finish = c.finish_reason;
        }
        c.content.as_ref().map(|c| c.parts.as_slice()).unwrap_or_default()
    }

    /// Total tokens, once the upstream has reported usage.
    pub fn total_tokens(&self) -> Option<u64> {
        self.usage.as_ref().map(|u| {
            let total = if u.total_token_count > 0 {
                u.total_token_count
            } else {
                u.prompt_token_count
                    .saturating_add(u.candidates_token_count)
                    .saturating_add(u.thoughts_token_count)
            };
            u64::from(total)
        })
    }
}

/// What a client dialect does with a committed Gemini stream: each upstream event becomes zero
/// or more frames as it arrives. The driver ([`encode_stream`]) is shared by every dialect: it
/// reads the events, books tokens and errors, and ends the stream after a fault.
pub trait StreamEncoder: Send + 'static {
    /// Frames for one upstream event.
    fn event(&mut self, event: &GenerateContentResponse, out: &mut Vec<Frame>);
    /// The upstream stream ended cleanly: closing frames, or `Err(message)` when it ended before
    /// the answer was complete.
    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), String>;
    /// The frame reporting a failure after the stream started; the stream ends after it.
    /// `code`: `upstream_timeout`, `upstream_stream_error`, `upstream_error`, `internal_error`.
    fn fault(&mut self, code: &'static str, message: &str) -> Frame;
    /// Total tokens, once the upstream has reported usage.
    fn total_tokens(&self) -> Option<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by tests/fuzz.rs: huge counts overflowed (a panic in debug builds).
    #[test]
    fn usage_sums_saturate() {
        let u = UsageMetadata {
            candidates_token_count: 4_294_966_295,
            thoughts_token_count: 1001,
            prompt_token_count: 7,
            ..Default::default()
        };
        let out = usage(&u);
        assert_eq!(out.completion_tokens, u32::MAX);
        assert_eq!(out.total_tokens, u32::MAX);
    }
}
