//! Folding the events of `streamGenerateContent` into the one answer `generateContent` would
//! have given: into JSON for the native route, or into the typed response for the dialects,
//! with an allocation-free reading of the common text-only event.

use serde_json::{Map, Value};

use super::gemini::{Candidate, Content, GenerateContentResponse, Part};
use super::text_event::{self, TextPart};

/// Folds the events of `streamGenerateContent` into the one response `generateContent` would
/// have given: per candidate, consecutive text parts of the same kind are joined, every other
/// part is kept in order, and the other fields (finish reason, safety ratings, grounding…) and
/// the top-level fields (usage, model version…) keep their last value. Fields the gateway does
/// not know pass through unchanged.
#[derive(Debug, Default)]
pub struct ResponseMerger {
    top: Map<String, Value>,
    candidates: Vec<Map<String, Value>>,
}

/// Gemini allows at most 8 candidates; anything far beyond is not a real answer.
const MAX_CANDIDATES: usize = 64;

impl ResponseMerger {
    fn merge_candidate(&mut self, c: Value) {
        let Value::Object(c) = c else { return };
        let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        if idx >= MAX_CANDIDATES {
            return;
        }
        while self.candidates.len() <= idx {
            let mut fresh = Map::new();
            fresh.insert("content".into(), serde_json::json!({"parts": [], "role": "model"}));
            fresh.insert("index".into(), Value::from(self.candidates.len()));
            self.candidates.push(fresh);
        }
        let target = &mut self.candidates[idx];
        for (k, v) in c {
            if k == "index" {
                continue;
            }
            if k != "content" {
                target.insert(k, v);
                continue;
            }
            let Value::Object(content) = v else { continue };
            let Some(Value::Object(into)) = target.get_mut("content") else {
                continue;
            };
            for (ck, cv) in content {
                if ck != "parts" {
                    into.insert(ck, cv);
                    continue;
                }
                let Value::Array(parts) = cv else { continue };
                if !matches!(into.get("parts"), Some(Value::Array(_))) {
                    into.insert("parts".into(), Value::Array(Vec::new()));
                }
                if let Some(Value::Array(merged)) = into.get_mut("parts") {
                    parts.into_iter().for_each(|p| merge_part(merged, p));
                }
            }
        }
    }
}

/// How a whole answer is folded from the events of `streamGenerateContent`: into JSON that keeps
/// every field ([`ResponseMerger`], the native route) or into the typed response the
/// translating routes read ([`TypedMerger`]).
pub trait Fold: Default + Send {
    type Output: Send;
    /// Adds one event's JSON.
    fn push(&mut self, event: &[u8]) -> Result<(), serde_json::Error>;
    /// The folded answer.
    fn finish(self) -> Self::Output;
}

impl Fold for ResponseMerger {
    type Output = Value;

    fn push(&mut self, event: &[u8]) -> Result<(), serde_json::Error> {
        let Value::Object(event) = serde_json::from_slice::<Value>(event)? else {
            return Ok(());
        };
        for (k, v) in event {
            match (k.as_str(), v) {
                ("candidates", Value::Array(cands)) => cands.into_iter().for_each(|c| self.merge_candidate(c)),
                (_, v) => {
                    self.top.insert(k, v);
                }
            }
        }
        Ok(())
    }

    /// The merged response, as a JSON value (read by the translators without printing it and
    /// parsing it again).
    fn finish(mut self) -> Value {
        if !self.candidates.is_empty() {
            let cands = self.candidates.into_iter().map(Value::Object).collect();
            self.top.insert("candidates".into(), Value::Array(cands));
        }
        Value::Object(self.top)
    }
}

/// The folding of [`ResponseMerger`] done on the typed response: each event is read once and
/// merged field by field, with no JSON tree in between. Fields the types do not name are merged
/// through their `extra` maps, last value first.
///
/// Most events of an answer hold only text. Those are read as a [`text_event::TextEvent`] that borrows from
/// the event's bytes, so folding them allocates nothing but the growth of the joined text. Any
/// other event is read into [`GenerateContentResponse`].
#[derive(Debug, Default)]
pub struct TypedMerger {
    merged: GenerateContentResponse,
    /// The bytes of the usage last read by the text path: an event repeating it is not parsed
    /// again. Emptied whenever the usage comes from elsewhere.
    usage_raw: Vec<u8>,
}

impl Fold for TypedMerger {
    type Output = GenerateContentResponse;

    fn push(&mut self, event: &[u8]) -> Result<(), serde_json::Error> {
        if self.merge_text_event(event) {
            return Ok(());
        }
        self.push_owned(event)
    }

    fn finish(self) -> GenerateContentResponse {
        self.merged
    }
}

impl TypedMerger {
    /// Adds one event read into the owned types, whatever it holds. [`Fold::push`] gives the
    /// same result; this is the reference the text path is tested against.
    pub fn push_owned(&mut self, event: &[u8]) -> Result<(), serde_json::Error> {
        let event: GenerateContentResponse = serde_json::from_slice(event)?;
        let m = &mut self.merged;
        if event.prompt_feedback.is_some() {
            m.prompt_feedback = event.prompt_feedback;
        }
        if event.usage_metadata.is_some() {
            m.usage_metadata = event.usage_metadata;
            self.usage_raw.clear();
        }
        if event.model_version.is_some() {
            m.model_version = event.model_version;
        }
        if event.response_id.is_some() {
            m.response_id = event.response_id;
        }
        m.extra.extend(event.extra);
        for c in event.candidates {
            let Some(target) = candidate_at(&mut m.candidates, c.index) else {
                continue;
            };
            if c.finish_reason.is_some() {
                target.finish_reason = c.finish_reason;
            }
            target.extra.extend(c.extra);
            let Some(content) = c.content else { continue };
            let into = target.content.get_or_insert_with(Content::default);
            if content.role.is_some() {
                into.role = content.role;
            }
            for p in content.parts {
                merge_typed_part(&mut into.parts, p);
            }
        }
        Ok(())
    }

    /// Merges `event` if it reads as a [`text_event::TextEvent`]; `false`, with nothing changed, if it
    /// needs the owned types (another field, an escaped name, a usage that does not parse).
    fn merge_text_event(&mut self, event: &[u8]) -> bool {
        let Some(event) = text_event::read(event) else {
            return false;
        };
        let m = &mut self.merged;
        if let Some(raw) = event.usage_metadata {
            if raw.as_bytes() != self.usage_raw.as_slice() {
                let Ok(usage) = serde_json::from_str(raw) else {
                    return false;
                };
                m.usage_metadata = Some(usage);
                self.usage_raw.clear();
                self.usage_raw.extend_from_slice(raw.as_bytes());
            }
        }
        set_if_changed(&mut m.model_version, event.model_version);
        set_if_changed(&mut m.response_id, event.response_id);
        for c in event.candidates {
            let Some(target) = candidate_at(&mut m.candidates, c.index) else {
                continue;
            };
            if c.finish_reason.is_some() {
                target.finish_reason = c.finish_reason;
            }
            let Some(content) = c.content else { continue };
            let into = target.content.get_or_insert_with(Content::default);
            set_if_changed(&mut into.role, content.role);
            for p in content.parts {
                merge_text_part(&mut into.parts, p);
            }
        }
        true
    }
}

/// The merged candidate at `index` (0 when absent), made with the ones before it if new; `None`
/// past [`MAX_CANDIDATES`].
fn candidate_at(candidates: &mut Vec<Candidate>, index: Option<u32>) -> Option<&mut Candidate> {
    let idx = index.unwrap_or(0) as usize;
    if idx >= MAX_CANDIDATES {
        return None;
    }
    while candidates.len() <= idx {
        candidates.push(Candidate {
            content: Some(Content {
                role: Some("model".into()),
                parts: Vec::new(),
            }),
            index: Some(candidates.len() as u32),
            ..Default::default()
        });
    }
    candidates.get_mut(idx)
}

/// `*field = value` when `value` is given, written into the string already there.
fn set_if_changed(field: &mut Option<String>, value: Option<&str>) {
    if value.is_some() {
        text_event::set_str(field, value);
    }
}

/// Whether a typed part holds only text (with its thought flag and signature).
fn is_plain_text_part(p: &Part) -> bool {
    p.text.is_some()
        && p.inline_data.is_none()
        && p.file_data.is_none()
        && p.function_call.is_none()
        && p.function_response.is_none()
        && p.extra.is_empty()
}

/// The last merged part, if a text part of this kind (thought or not) joins it: it is plain text
/// of the same kind and has no signature yet (a signature closes a part).
fn joins(parts: &mut [Part], thought: Option<bool>) -> Option<&mut Part> {
    parts
        .last_mut()
        .filter(|last| is_plain_text_part(last) && last.thought == thought && last.thought_signature.is_none())
}

/// [`merge_part`] on typed parts.
fn merge_typed_part(parts: &mut Vec<Part>, mut p: Part) {
    if is_plain_text_part(&p) {
        if let Some(last) = joins(parts, p.thought) {
            if let (Some(t), Some(more)) = (last.text.as_mut(), p.text.as_deref()) {
                t.push_str(more);
            }
            if p.thought_signature.is_some() {
                last.thought_signature = p.thought_signature.take();
            }
            return;
        }
        if p.text.as_deref().is_some_and(str::is_empty) && p.thought_signature.is_none() {
            return;
        }
    }
    parts.push(p);
}

/// The capacity a text part of a whole answer starts with.
const TEXT_ROOM: usize = 1024;

/// [`merge_typed_part`] on a part read by the text path.
fn merge_text_part(parts: &mut Vec<Part>, p: TextPart<'_>) {
    if let Some(last) = joins(parts, p.thought) {
        if let Some(t) = last.text.as_mut() {
            t.push_str(&p.text);
        }
        if let Some(sig) = p.thought_signature {
            last.thought_signature = Some(sig.to_owned());
        }
        return;
    }
    if p.text.is_empty() && p.thought_signature.is_none() {
        return;
    }
    // Room for the text that later events add to this part, so it is not regrown from a few
    // bytes up, one doubling at a time.
    let mut text = String::with_capacity(p.text.len().max(TEXT_ROOM));
    text.push_str(&p.text);
    parts.push(Part {
        text: Some(text),
        thought: p.thought,
        thought_signature: p.thought_signature.map(str::to_owned),
        ..Default::default()
    });
}

/// Whether a part holds only text (with its thought flag and signature).
fn is_plain_text(p: &Map<String, Value>) -> bool {
    p.get("text").is_some_and(Value::is_string)
        && p.keys()
            .all(|k| matches!(k.as_str(), "text" | "thought" | "thoughtSignature"))
}

fn merge_part(parts: &mut Vec<Value>, p: Value) {
    let Value::Object(p) = p else { return };
    if is_plain_text(&p) {
        let text = p.get("text").and_then(Value::as_str).unwrap_or("");
        let signature = p.get("thoughtSignature").cloned();
        if let Some(Value::Object(last)) = parts.last_mut() {
            let joinable = is_plain_text(last)
                && last.get("thought") == p.get("thought")
                && !last.contains_key("thoughtSignature");
            if joinable {
                if let Some(Value::String(t)) = last.get_mut("text") {
                    t.push_str(text);
                }
                if let Some(sig) = signature {
                    last.insert("thoughtSignature".into(), sig);
                }
                return;
            }
        }
        if text.is_empty() && signature.is_none() {
            return;
        }
    }
    parts.push(Value::Object(p));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merged_events_equal_one_answer() {
        let mut m = ResponseMerger::default();
        for ev in [
            json!({"candidates": [{"content": {"parts": [{"text": "Thinking", "thought": true}], "role": "model"}, "index": 0}], "responseId": "r"}),
            json!({"candidates": [{"content": {"parts": [{"text": "Hello "}], "role": "model"}, "index": 0}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "world", "thoughtSignature": "c2ln"}], "role": "model"}, "index": 0}]}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}], "role": "model"}, "index": 0, "futureField": 1}]}),
            json!({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"totalTokenCount": 9}, "modelVersion": "m"}),
        ] {
            m.push(ev.to_string().as_bytes()).unwrap();
        }
        let out = Fold::finish(m);
        assert_eq!(
            out,
            json!({"candidates": [{"content": {"parts": [
                {"text": "Thinking", "thought": true},
                {"text": "Hello world", "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "f", "args": {}}}], "role": "model"},
                "finishReason": "STOP", "futureField": 1, "index": 0}],
                "usageMetadata": {"totalTokenCount": 9}, "modelVersion": "m", "responseId": "r"})
        );
        assert!(Fold::push(&mut ResponseMerger::default(), b"not json").is_err());
    }

    #[test]
    fn typed_folding_matches_the_json_folding() {
        let events = [
            json!({"candidates": [{"content": {"parts": [{"text": "Thinking", "thought": true}], "role": "model"}, "index": 0}], "responseId": "r"}),
            json!({"candidates": [{"content": {"parts": [{"text": "Hello "}], "role": "model"}, "index": 0}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "world", "thoughtSignature": "c2ln"}], "role": "model"}, "index": 0}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "again"}]}, "index": 0}, {"content": {"parts": [{"text": "two"}]}, "index": 2}]}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}], "role": "model"}, "index": 0, "futureField": 1}]}),
            json!({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0,
                "groundingMetadata": {"webSearchQueries": ["q"]}}],
                   "usageMetadata": {"totalTokenCount": 9}, "modelVersion": "m", "promptFeedback": {"blockReason": "OTHER"}}),
        ];
        let (mut json_fold, mut typed) = (ResponseMerger::default(), TypedMerger::default());
        for ev in &events {
            let raw = ev.to_string();
            Fold::push(&mut json_fold, raw.as_bytes()).unwrap();
            typed.push(raw.as_bytes()).unwrap();
        }
        let want: GenerateContentResponse = serde_json::from_value(Fold::finish(json_fold)).unwrap();
        let got = typed.finish();
        assert_eq!(got, want);
        assert_eq!(got.candidates.len(), 3);
        assert_eq!(got.candidates[0].content.as_ref().unwrap().parts.len(), 4);
        assert!(TypedMerger::default().push(b"not json").is_err());
        assert!(TypedMerger::default().push(br#"{"candidates": 5}"#).is_err());
    }

    #[test]
    fn text_events_are_read_in_place_and_others_are_not() {
        let text_only = [
            // The mock's and Google's text events, escapes and thoughts included.
            r#"{"candidates":[{"content":{"parts":[{"text":"one \"two\"\n"}],"role":"model"},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"plan","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":3,"totalTokenCount":3,"promptTokensDetails":[{"modality":"TEXT","tokenCount":3}]}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"","thought":true,"thoughtSignature":"c2ln"}],"role":"model"},"finishReason":"STOP","index":0}]}"#,
        ];
        let mut m = TypedMerger::default();
        for e in text_only {
            assert!(m.merge_text_event(e.as_bytes()), "{e}");
        }
        let others = [
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}],"role":"model"},"index":0}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"safetyRatings":[]}]}"#,
            r#"{"candidates":[],"promptFeedback":{"blockReason":"SAFETY"}}"#,
            r#"{"candidates":[{"content":{"parts":[["x"]]}}]}"#,
            r#"[]"#,
            r#"{"modelVersion":"esc\"aped"}"#,
        ];
        for e in others {
            assert!(!m.merge_text_event(e.as_bytes()), "{e}");
        }
        let out = m.finish();
        let parts = &out.candidates[0].content.as_ref().unwrap().parts;
        assert_eq!(parts[0].text.as_deref(), Some("one \"two\"\n"));
        assert_eq!((parts[1].text.as_deref(), parts[1].thought), (Some("plan"), Some(true)));
        assert_eq!(parts[1].thought_signature.as_deref(), Some("c2ln"));
        assert_eq!(out.usage_metadata.map(|u| u.prompt_token_count), Some(3));
    }
}
