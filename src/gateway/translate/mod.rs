//! OpenAI ⇄ Gemini translation: pure functions over the wire types, tested beside them.
//!
//! - [`request`]: chat-completions request → `generateContent` request.
//! - [`response`]: `generateContent` response → chat completion.
//! - [`stream`]: `streamGenerateContent` events → chat-completion chunks.
//! - [`anthropic`]: the Anthropic Messages dialect (request, response, stream encoder).
//!
//! Every dialect streams through one driver (`service::encode_stream`) by implementing
//! [`StreamEncoder`].

pub mod anthropic;
pub mod embeddings;
pub mod request;
pub mod response;
pub mod stream;

use super::gemini::{FinishReason, GenerateContentResponse, UsageMetadata};
use super::openai::Usage;
use super::openai::{CompletionTokensDetails, PromptTokensDetails};

/// Separates a tool-call id from the Gemini `thoughtSignature` carried inside it, so multi-turn
/// tool use with thinking models survives a round trip through OpenAI clients.
pub const SIGNATURE_SEPARATOR: char = '.';

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
    let tail: String = (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{tail}")
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
