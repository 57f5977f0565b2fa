//! The common event of `streamGenerateContent`, text only, read in place: its strings borrow
//! from the event's bytes. The fold of a whole answer and every stream read events this way
//! first, and fall back to the owned types of [`super::gemini`] for anything else.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use smallvec::SmallVec;

use super::gemini::{Candidate, Content, FinishReason, GenerateContentResponse, Part, UsageMetadata};

/// `event` as a [`TextEvent`], or `None` if it holds anything else (or is not JSON).
pub fn read(event: &[u8]) -> Option<TextEvent<'_>> {
    // One UTF-8 check of the whole event, then a read from `str` that checks no string again
    // (from bytes, serde_json checks each borrowed string on its own).
    let event = std::str::from_utf8(event).ok()?;
    serde_json::from_str::<ObjectOnly<TextEvent<'_>>>(event)
        .ok()
        .map(|e| e.0)
}

/// Reads each event of a stream into one [`GenerateContentResponse`] kept between events: a
/// text event overwrites it in place, reusing its strings and lists, so reading one allocates
/// nothing once the first events have sized them. Any other event is parsed afresh. Either way
/// the result equals `serde_json::from_slice::<GenerateContentResponse>(event)`.
#[derive(Debug, Default)]
pub struct EventReader {
    event: GenerateContentResponse,
    /// The bytes of the usage last parsed by the text path, and that usage while the current
    /// event has none (it moves back in when an event repeats it).
    usage_raw: Vec<u8>,
    usage_aside: Option<UsageMetadata>,
}

impl EventReader {
    pub fn read(&mut self, data: &[u8]) -> Result<&GenerateContentResponse, serde_json::Error> {
        if !self.read_text(data) {
            self.event = serde_json::from_slice(data)?;
            self.usage_raw.clear();
            self.usage_aside = None;
        }
        Ok(&self.event)
    }

    /// Overwrites the kept event with `data` if it is a text event; `false` otherwise.
    fn read_text(&mut self, data: &[u8]) -> bool {
        let Some(ev) = read(data) else { return false };
        let usage = match ev.usage_metadata {
            None => {
                if let Some(u) = self.event.usage_metadata.take() {
                    self.usage_aside = Some(u);
                }
                None
            }
            Some(raw) if raw.get().as_bytes() == self.usage_raw.as_slice() => {
                match self.event.usage_metadata.take().or_else(|| self.usage_aside.take()) {
                    Some(u) => Some(u),
                    None => return false,
                }
            }
            Some(raw) => {
                let Ok(u) = serde_json::from_str::<UsageMetadata>(raw.get()) else {
                    return false;
                };
                self.usage_raw.clear();
                self.usage_raw.extend_from_slice(raw.get().as_bytes());
                self.usage_aside = None;
                Some(u)
            }
        };
        let old = std::mem::take(&mut self.event);
        let mut candidates = old.candidates;
        candidates.truncate(ev.candidates.len());
        for (i, ObjectOnly(c)) in ev.candidates.into_iter().enumerate() {
            if i == candidates.len() {
                candidates.push(Candidate::default());
            }
            let Some(slot) = candidates.get_mut(i) else {
                return false;
            };
            let content = c.content.map(|ObjectOnly(content)| {
                let kept = slot.content.take().unwrap_or_default();
                let mut parts = kept.parts;
                parts.truncate(content.parts.len());
                for (j, ObjectOnly(p)) in content.parts.into_iter().enumerate() {
                    if j == parts.len() {
                        parts.push(Part::default());
                    }
                    if let Some(part) = parts.get_mut(j) {
                        let mut text = part.text.take().unwrap_or_default();
                        text.clear();
                        text.push_str(&p.text);
                        *part = Part {
                            text: Some(text),
                            thought: p.thought,
                            thought_signature: reuse(part.thought_signature.take(), p.thought_signature),
                            ..Default::default()
                        };
                    }
                }
                Content {
                    role: reuse(kept.role, content.role),
                    parts,
                }
            });
            *slot = Candidate {
                content,
                finish_reason: c.finish_reason,
                index: c.index,
                ..Default::default()
            };
        }
        self.event = GenerateContentResponse {
            candidates,
            usage_metadata: usage,
            model_version: reuse(old.model_version, ev.model_version),
            response_id: reuse(old.response_id, ev.response_id),
            ..Default::default()
        };
        true
    }
}

/// `value` as an owned string, written into `kept`'s buffer when there is one.
pub fn reuse(kept: Option<String>, value: Option<&str>) -> Option<String> {
    let v = value?;
    let mut s = kept.unwrap_or_default();
    if s != v {
        s.clear();
        s.push_str(v);
    }
    Some(s)
}

/// An event of `streamGenerateContent` that holds nothing but text parts (with their thought
/// flags and signatures), finish reasons, usage, the model version and the response id, read
/// in place. Any other field, or a name with an escape in it, fails the read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TextEvent<'a> {
    #[serde(borrow, default)]
    pub candidates: SmallVec<[ObjectOnly<TextCandidate<'a>>; 1]>,
    #[serde(borrow, default)]
    pub usage_metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub model_version: Option<&'a str>,
    #[serde(borrow, default)]
    pub response_id: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TextCandidate<'a> {
    #[serde(borrow, default)]
    pub content: Option<ObjectOnly<TextContent<'a>>>,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TextContent<'a> {
    #[serde(borrow, default)]
    pub role: Option<&'a str>,
    #[serde(borrow, default)]
    pub parts: SmallVec<[ObjectOnly<TextPart<'a>>; 2]>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TextPart<'a> {
    /// Borrowed unless the text has escapes in it.
    #[serde(borrow)]
    pub text: Cow<'a, str>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(borrow, default)]
    pub thought_signature: Option<&'a str>,
}

/// A `T` read only from a JSON object, never from an array, as the owned types (which flatten
/// the fields they do not name) are read.
pub struct ObjectOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Object(PhantomData)).map(ObjectOnly)
    }
}
