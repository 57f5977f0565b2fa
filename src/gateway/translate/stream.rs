//! Gemini stream events → chat-completion chunks, one chunk per event, as they arrive.

use super::json_out::{write_chunk_choice, write_usage};
use super::response::{annotations, logprobs, translate_parts};
use super::{finish_reason, usage};
use crate::gateway::gemini::GenerateContentResponse;
use crate::gateway::openai::{ChatCompletionChunk, ChunkChoice, Delta, ToolCallDelta, Usage};

/// Per-stream state: which choices have sent their role, tool-call counters, the last usage.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    role_sent: Vec<u32>,
    tool_calls: Vec<(u32, u32)>,
    finished: Vec<u32>,
    usage: Option<Usage>,
}

impl StreamTranslator {
    pub fn new(id: String, model: String, created: u64, include_usage: bool) -> Self {
        Self {
            id,
            model,
            created,
            include_usage,
            role_sent: Vec::new(),
            tool_calls: Vec::new(),
            finished: Vec::new(),
            usage: None,
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> ChatCompletionChunk<'_> {
        ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        }
    }

    /// Whether every choice seen so far has received its finish reason.
    pub fn is_finished(&self) -> bool {
        !self.finished.is_empty() && self.role_sent.iter().all(|i| self.finished.contains(i))
    }

    /// Translates one upstream event into the chunk to send now, if it carries anything.
    pub fn on_event(&mut self, event: &GenerateContentResponse) -> Option<ChatCompletionChunk<'_>> {
        if let Some(u) = &event.usage_metadata {
            self.usage = Some(usage(u));
        }
        let mut choices = Vec::new();
        let blocked = event
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_ref())
            .is_some();
        if event.candidates.is_empty() && blocked {
            {
                // The prompt itself was blocked: end the (single) choice with content_filter.
                self.role_sent.push(0);
                self.finished.push(0);
                choices.push(ChunkChoice {
                    index: 0,
                    delta: Delta {
                        role: Some("assistant"),
                        content: Some(String::new()),
                        ..Default::default()
                    },
                    finish_reason: Some("content_filter"),
                    logprobs: None,
                });
            }
        }
        for (pos, c) in event.candidates.iter().enumerate() {
            let index = c.index.unwrap_or(pos as u32);
            let parts = c.content.as_ref().map(|c| c.parts.as_slice()).unwrap_or_default();
            let t = translate_parts(parts);
            let mut delta = Delta {
                content: t.content,
                reasoning_content: t.reasoning,
                annotations: annotations(c),
                ..Default::default()
            };
            if !self.role_sent.contains(&index) {
                self.role_sent.push(index);
                delta.role = Some("assistant");
                if delta.content.is_none() && delta.reasoning_content.is_none() && t.tool_calls.is_empty() {
                    delta.content = Some(String::new());
                }
            }
            if !t.tool_calls.is_empty() {
                let counter = match self.tool_calls.iter_mut().find(|(i, _)| *i == index) {
                    Some((_, n)) => n,
                    None => {
                        self.tool_calls.push((index, 0));
                        let last = self.tool_calls.len() - 1;
                        &mut self.tool_calls[last].1
                    }
                };
                let mut deltas = Vec::with_capacity(t.tool_calls.len());
                for call in t.tool_calls {
                    deltas.push(ToolCallDelta {
                        index: *counter,
                        id: call.id,
                        kind: "function",
                        function: call.function,
                    });
                    *counter += 1;
                }
                delta.tool_calls = Some(deltas);
            }
            let had_tools = self.tool_calls.iter().any(|(i, n)| *i == index && *n > 0);
            let reason = c.finish_reason.map(|r| finish_reason(r, had_tools));
            if reason.is_some() && !self.finished.contains(&index) {
                self.finished.push(index);
            }
            let empty = delta.role.is_none()
                && delta.content.is_none()
                && delta.reasoning_content.is_none()
                && delta.tool_calls.is_none()
                && delta.annotations.is_none();
            if empty && reason.is_none() {
                continue;
            }
            choices.push(ChunkChoice {
                index,
                delta,
                finish_reason: reason,
                logprobs: logprobs(c),
            });
        }
        (!choices.is_empty()).then(|| self.chunk(choices, None))
    }

    /// The last usage reported by the stream.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The usage chunk (`choices: []`) to send before `[DONE]`, when the client asked for it.
    pub fn usage_chunk(&self) -> Option<ChatCompletionChunk<'_>> {
        self.include_usage
            .then(|| self.chunk(Vec::new(), Some(self.usage.unwrap_or_default())))
    }

    /// A writer of this stream's chunks as JSON.
    pub fn chunk_json(&self) -> ChunkJson {
        ChunkJson::new(&self.chunk(Vec::new(), None))
    }
}

/// Writes chunks as JSON text, exactly as `serde_json::to_string` does, with the fields that
/// open every chunk of a stream (`id`, `object`, `created`, `model`) serialized once: only the
/// choices (and usage) are serialized per event.
#[derive(Debug)]
pub struct ChunkJson {
    id: String,
    object: &'static str,
    model: String,
    created: u64,
    /// `{"id":…,"object":…,"created":…,"model":…,"choices":`
    head: Vec<u8>,
}

impl ChunkJson {
    /// For the chunks that share `sample`'s opening fields.
    fn new(sample: &ChatCompletionChunk<'_>) -> Self {
        let opening = ChatCompletionChunk {
            choices: Vec::new(),
            usage: None,
            ..*sample
        };
        // `choices` is serialized last when there is no usage: cut its empty list and the
        // closing brace. Anything else (a changed layout) leaves the head empty, and every
        // chunk is then serialized whole.
        let head = serde_json::to_vec(&opening)
            .ok()
            .and_then(|mut v| {
                v.ends_with(br#""choices":[]}"#).then(|| {
                    v.truncate(v.len() - 3);
                    v
                })
            })
            .unwrap_or_default();
        Self {
            id: sample.id.to_owned(),
            object: sample.object,
            model: sample.model.to_owned(),
            created: sample.created,
            head,
        }
    }

    /// `chunk` as `serde_json::to_string(chunk)` writes it.
    pub fn write(&self, chunk: &ChatCompletionChunk<'_>) -> Result<String, serde_json::Error> {
        let shares_head = !self.head.is_empty()
            && chunk.object == self.object
            && chunk.created == self.created
            && chunk.id == self.id
            && chunk.model == self.model;
        if !shares_head {
            return serde_json::to_string(chunk);
        }
        let text: usize = chunk
            .choices
            .iter()
            .map(|c| {
                c.delta.content.as_ref().map_or(0, String::len)
                    + c.delta.reasoning_content.as_ref().map_or(0, String::len)
            })
            .sum();
        let mut out = Vec::with_capacity(self.head.len() + 96 + text + text / 8);
        out.extend_from_slice(&self.head);
        out.push(b'[');
        for (i, choice) in chunk.choices.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_chunk_choice(&mut out, choice)?;
        }
        out.push(b']');
        if let Some(usage) = &chunk.usage {
            out.extend_from_slice(br#","usage":"#);
            write_usage(&mut out, usage)?;
        }
        out.push(b'}');
        String::from_utf8(out).map_err(serde::ser::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ev(v: Value) -> GenerateContentResponse {
        serde_json::from_value(v).unwrap()
    }

    fn out(c: Option<ChatCompletionChunk<'_>>) -> Value {
        serde_json::to_value(c.unwrap()).unwrap()
    }

    #[test]
    fn first_chunk_has_role_last_has_finish_reason_then_usage() {
        let mut t = StreamTranslator::new("chatcmpl-1".into(), "m".into(), 5, true);
        let a = out(t.on_event(&ev(
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}]}),
        )));
        assert_eq!(a["object"], "chat.completion.chunk");
        assert_eq!(a["choices"][0]["delta"], json!({"role": "assistant", "content": "Hel"}));
        assert_eq!(a["choices"][0]["finish_reason"], Value::Null);
        let b = out(t.on_event(&ev(
            json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "MAX_TOKENS", "index": 0}],
            "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2, "totalTokenCount": 4}}),
        )));
        assert_eq!(b["choices"][0]["delta"], json!({"content": "lo"}));
        assert_eq!(b["choices"][0]["finish_reason"], "length");
        assert!(t.is_finished());
        let u = serde_json::to_value(t.usage_chunk().unwrap()).unwrap();
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["total_tokens"], 4);
    }

    #[test]
    fn chunks_are_written_as_serde_writes_them() {
        let mut t = StreamTranslator::new("chatcmpl-\"q\"".into(), "m\u{1}é".into(), 5, true);
        let json = t.chunk_json();
        assert!(!json.head.is_empty(), "the opening fields are written once");
        let events = [
            json!({"candidates": [{"content": {"parts": [{"text": "Hel\"lo\n"}], "role": "model"}, "index": 0}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "plan", "thought": true}, {"text": "é😀"}]}, "index": 1}]}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": [1, "x"]}}}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 2, "totalTokenCount": 4}}),
        ];
        for e in events {
            let chunk = t.on_event(&ev(e)).unwrap();
            assert_eq!(json.write(&chunk).unwrap(), serde_json::to_string(&chunk).unwrap());
        }
        let usage = t.usage_chunk().unwrap();
        assert_eq!(json.write(&usage).unwrap(), serde_json::to_string(&usage).unwrap());
        // A chunk of another stream is written whole.
        let other = StreamTranslator::new("chatcmpl-2".into(), "m".into(), 5, true);
        let foreign = other.usage_chunk().unwrap();
        assert_eq!(json.write(&foreign).unwrap(), serde_json::to_string(&foreign).unwrap());
        // Every field of a choice, set and unset, and several choices in one chunk.
        let full = ChunkChoice {
            index: 4_294_967_295,
            delta: Delta {
                role: Some("assistant"),
                content: Some("a\"b\\c/\u{0}\u{8}\u{c}\u{1f}\u{7f}\t\r\né😀".into()),
                reasoning_content: Some(String::new()),
                tool_calls: Some(vec![ToolCallDelta {
                    index: 0,
                    id: "call_\"1".into(),
                    kind: "function",
                    function: crate::gateway::openai::FunctionCallOut {
                        name: "f".into(),
                        arguments: "{\"a\":1}".into(),
                    },
                }]),
                annotations: Some(vec![json!({"type": "url_citation", "x": [1, null]})]),
            },
            finish_reason: Some("tool_calls"),
            logprobs: Some(json!({"content": [{"token": "a", "logprob": -0.5}]})),
        };
        let bare = ChunkChoice {
            index: 0,
            delta: Delta::default(),
            finish_reason: None,
            logprobs: None,
        };
        let sample = t.chunk(Vec::new(), None);
        for choices in [vec![full.clone()], vec![bare.clone()], vec![bare, full], Vec::new()] {
            let chunk = ChatCompletionChunk {
                choices,
                ..sample.clone()
            };
            assert_eq!(json.write(&chunk).unwrap(), serde_json::to_string(&chunk).unwrap());
        }
    }

    #[test]
    fn streamed_tool_calls_carry_index_and_id() {
        let mut t = StreamTranslator::new("c".into(), "m".into(), 0, false);
        let a = out(t.on_event(&ev(
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "a", "args": {}}}]}}]}),
        )));
        let b = out(t.on_event(&ev(json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "b", "args": {"x": 1}}}]}, "finishReason": "STOP"}]}))));
        assert_eq!(a["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert!(a["choices"][0]["delta"]["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("call_"));
        assert_eq!(b["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(
            b["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(b["choices"][0]["finish_reason"], "tool_calls");
        assert!(t.usage_chunk().is_none());
    }

    #[test]
    fn several_candidates_keep_their_index() {
        let mut t = StreamTranslator::new("c".into(), "m".into(), 0, false);
        let a = out(t.on_event(&ev(json!({"candidates": [
            {"content": {"parts": [{"text": "x"}]}, "index": 0}, {"content": {"parts": [{"text": "y"}]}, "index": 1}]}))));
        assert_eq!(a["choices"][1]["index"], 1);
        assert_eq!(a["choices"][1]["delta"]["role"], "assistant");
        assert!(!t.is_finished());
    }

    #[test]
    fn thoughts_stream_as_reasoning_content() {
        let mut t = StreamTranslator::new("c".into(), "m".into(), 0, false);
        let a = out(t.on_event(&ev(
            json!({"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}]}}]}),
        )));
        assert_eq!(
            a["choices"][0]["delta"],
            json!({"role": "assistant", "reasoning_content": "hmm"})
        );
    }
}
