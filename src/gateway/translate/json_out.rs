//! Hand-written JSON for the chat answers sent on every request (a whole completion, each chunk
//! of a stream): byte for byte what `serde_json` writes, without its per-key calls. The types'
//! rarer parts (tool calls, annotations, log probabilities, token details) still go through
//! serde; tests hold each writer to `serde_json::to_string`.

use serde_json::Value;

use crate::gateway::openai::{AssistantMessage, ChatCompletion, Choice, ChunkChoice, Delta, Usage};

/// `"key":`, after a comma unless it opens its object.
pub(crate) struct Keys {
    first: bool,
}

impl Keys {
    pub(crate) fn new() -> Self {
        Self { first: true }
    }

    pub(crate) fn key(&mut self, out: &mut Vec<u8>, name: &[u8]) {
        if !std::mem::take(&mut self.first) {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
    }
}

/// An unsigned integer in decimal.
pub(crate) fn write_uint(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control characters as `\n`-style
/// escapes or `\u00xx`, everything else (DEL and non-ASCII included) as it is.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A string, or `null`.
pub(crate) fn write_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => write_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// Any serializable value, or `null`, through serde.
pub(crate) fn write_opt_value<T: serde::Serialize>(
    out: &mut Vec<u8>,
    value: Option<&T>,
) -> Result<(), serde_json::Error> {
    match value {
        Some(value) => serde_json::to_writer(&mut *out, value),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// The usage object. Every field is named, so one added to the type cannot be missed.
pub(crate) fn write_usage(out: &mut Vec<u8>, usage: &Usage) -> Result<(), serde_json::Error> {
    let Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens,
        prompt_tokens_details,
        completion_tokens_details,
    } = usage;
    out.extend_from_slice(br#"{"prompt_tokens":"#);
    write_uint(out, u64::from(*prompt_tokens));
    out.extend_from_slice(br#","completion_tokens":"#);
    write_uint(out, u64::from(*completion_tokens));
    out.extend_from_slice(br#","total_tokens":"#);
    write_uint(out, u64::from(*total_tokens));
    if let Some(details) = prompt_tokens_details {
        out.extend_from_slice(br#","prompt_tokens_details":"#);
        serde_json::to_writer(&mut *out, details)?;
    }
    if let Some(details) = completion_tokens_details {
        out.extend_from_slice(br#","completion_tokens_details":"#);
        serde_json::to_writer(&mut *out, details)?;
    }
    out.push(b'}');
    Ok(())
}

/// A whole chat completion, as `serde_json::to_vec` writes it.
pub fn completion(completion: &ChatCompletion) -> Result<Vec<u8>, serde_json::Error> {
    let ChatCompletion {
        id,
        object,
        created,
        model,
        choices,
        usage,
    } = completion;
    let text: usize = choices
        .iter()
        .map(|c| {
            c.message.content.as_ref().map_or(0, String::len)
                + c.message.reasoning_content.as_ref().map_or(0, String::len)
        })
        .sum();
    let mut out = Vec::with_capacity(384 + text + text / 8);
    out.extend_from_slice(br#"{"id":"#);
    write_str(&mut out, id);
    out.extend_from_slice(br#","object":"#);
    write_str(&mut out, object);
    out.extend_from_slice(br#","created":"#);
    write_uint(&mut out, *created);
    out.extend_from_slice(br#","model":"#);
    write_str(&mut out, model);
    out.extend_from_slice(br#","choices":["#);
    for (i, choice) in choices.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_choice(&mut out, choice)?;
    }
    out.push(b']');
    if let Some(usage) = usage {
        out.extend_from_slice(br#","usage":"#);
        write_usage(&mut out, usage)?;
    }
    out.push(b'}');
    Ok(out)
}

fn write_choice(out: &mut Vec<u8>, choice: &Choice) -> Result<(), serde_json::Error> {
    let Choice {
        index,
        message,
        finish_reason,
        logprobs,
    } = choice;
    let AssistantMessage {
        role,
        content,
        reasoning_content,
        tool_calls,
        refusal,
        annotations,
    } = message;
    out.extend_from_slice(br#"{"index":"#);
    write_uint(out, u64::from(*index));
    out.extend_from_slice(br#","message":{"role":"#);
    write_str(out, role);
    out.extend_from_slice(br#","content":"#);
    write_opt_str(out, content.as_deref());
    if let Some(text) = reasoning_content {
        out.extend_from_slice(br#","reasoning_content":"#);
        write_str(out, text);
    }
    if let Some(calls) = tool_calls {
        out.extend_from_slice(br#","tool_calls":"#);
        serde_json::to_writer(&mut *out, calls)?;
    }
    out.extend_from_slice(br#","refusal":"#);
    write_opt_str(out, refusal.as_deref());
    if let Some(list) = annotations {
        out.extend_from_slice(br#","annotations":"#);
        serde_json::to_writer(&mut *out, list)?;
    }
    out.push(b'}');
    write_choice_end(out, *finish_reason, logprobs.as_ref())
}

/// What closes every choice: `,"finish_reason":…,"logprobs":…}`.
fn write_choice_end(
    out: &mut Vec<u8>,
    finish_reason: Option<&str>,
    logprobs: Option<&Value>,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(br#","finish_reason":"#);
    write_opt_str(out, finish_reason);
    out.extend_from_slice(br#","logprobs":"#);
    write_opt_value(out, logprobs)?;
    out.push(b'}');
    Ok(())
}

/// A chunk's choice. Every field is named, so one added to the types cannot be missed.
pub(crate) fn write_chunk_choice(out: &mut Vec<u8>, choice: &ChunkChoice) -> Result<(), serde_json::Error> {
    let ChunkChoice {
        index,
        delta,
        finish_reason,
        logprobs,
    } = choice;
    let Delta {
        role,
        content,
        reasoning_content,
        tool_calls,
        annotations,
    } = delta;
    out.extend_from_slice(br#"{"index":"#);
    write_uint(out, u64::from(*index));
    out.extend_from_slice(br#","delta":{"#);
    let mut keys = Keys::new();
    if let Some(role) = role {
        keys.key(out, b"role");
        write_str(out, role);
    }
    if let Some(text) = content {
        keys.key(out, b"content");
        write_str(out, text);
    }
    if let Some(text) = reasoning_content {
        keys.key(out, b"reasoning_content");
        write_str(out, text);
    }
    if let Some(calls) = tool_calls {
        keys.key(out, b"tool_calls");
        serde_json::to_writer(&mut *out, calls)?;
    }
    if let Some(list) = annotations {
        keys.key(out, b"annotations");
        serde_json::to_writer(&mut *out, list)?;
    }
    out.push(b'}');
    write_choice_end(out, *finish_reason, logprobs.as_ref())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::openai::{CompletionTokensDetails, FunctionCallOut, PromptTokensDetails, ToolCall};

    #[test]
    fn strings_and_numbers_are_written_as_serde_writes_them() {
        let every_byte: String = (0u8..=0x7f).map(char::from).collect();
        for text in [every_byte.as_str(), "", "plain", "é😀\u{2028}\u{85}", "\\\"\\"] {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
        for n in [0, 7, 10, 99, 100, 65_536, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_uint(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes(), "{n}");
        }
    }

    #[test]
    fn completions_are_written_as_serde_writes_them() {
        let full = Choice {
            index: 3,
            message: AssistantMessage {
                role: "assistant",
                content: Some("a\"b\\c\u{1}\n é😀".into()),
                reasoning_content: Some("think\t".into()),
                tool_calls: Some(vec![ToolCall {
                    id: "call_\"1".into(),
                    kind: "function".into(),
                    function: FunctionCallOut {
                        name: "f".into(),
                        arguments: "{\"a\":1}".into(),
                    },
                }]),
                refusal: Some("no".into()),
                annotations: Some(vec![json!({"type": "url_citation", "x": [1, null]})]),
            },
            finish_reason: Some("tool_calls"),
            logprobs: Some(json!({"content": []})),
        };
        let bare = Choice {
            index: 0,
            message: AssistantMessage::default(),
            finish_reason: None,
            logprobs: None,
        };
        let usages = [
            None,
            Some(Usage::default()),
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 22,
                total_tokens: 4_000_000_000,
                prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: 5 }),
                completion_tokens_details: Some(CompletionTokensDetails::default()),
            }),
        ];
        for usage in usages {
            for choices in [
                vec![full.clone()],
                vec![bare.clone()],
                vec![bare.clone(), full.clone()],
                Vec::new(),
            ] {
                let c = ChatCompletion {
                    id: "chatcmpl-\"x\"".into(),
                    object: "chat.completion",
                    created: 1_764_000_000,
                    model: "m\u{1}é".into(),
                    choices,
                    usage,
                };
                assert_eq!(
                    String::from_utf8(completion(&c).unwrap()).unwrap(),
                    serde_json::to_string(&c).unwrap()
                );
            }
        }
    }
}
