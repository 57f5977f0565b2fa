//! The common event of `streamGenerateContent`, text only, read in place: its strings borrow
//! from the event's bytes. The fold of a whole answer and every stream read events this way
//! first, and fall back to the owned types of [`super::gemini`] for anything else.
//!
//! [`read`] scans the event by hand in one pass: reading events is the largest single cost of
//! a stream on the gateway. Whatever the scan is not sure of (a number it does not read, an
//! escape in a string that stays borrowed, a repeated field, a JSON error) it leaves to the
//! serde-derived reader, [`read_reference`], so that `read` answers exactly as that reader
//! does for every input.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use smallvec::SmallVec;

use super::gemini::{Candidate, Content, FinishReason, GenerateContentResponse, Part, UsageMetadata};

/// `event` as a [`TextEvent`], or `None` if it holds anything else (or is not JSON).
pub fn read(event: &[u8]) -> Option<TextEvent<'_>> {
    // One UTF-8 check of the whole event; no string is checked again.
    let event = std::str::from_utf8(event).ok()?;
    match scan::event(event) {
        Ok(e) => Some(e),
        Err(scan::Miss::NotText) => None,
        Err(scan::Miss::Unsure) => derived::read(event),
    }
}

/// The same answer as [`read`], from serde's derived reader alone: the reference the scan is
/// tested against.
pub fn read_reference(event: &[u8]) -> Option<TextEvent<'_>> {
    derived::read(std::str::from_utf8(event).ok()?)
}

/// What [`read`] gives without falling back to [`read_reference`]: `None` where the scan
/// leaves the event to it (tests use this to see that the common events take the fast path).
pub fn read_scanned(event: &[u8]) -> Option<TextEvent<'_>> {
    scan::event(std::str::from_utf8(event).ok()?).ok()
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
            Some(raw) if raw.as_bytes() == self.usage_raw.as_slice() => {
                match self.event.usage_metadata.take().or_else(|| self.usage_aside.take()) {
                    Some(u) => Some(u),
                    None => return false,
                }
            }
            Some(raw) => {
                let Ok(u) = serde_json::from_str::<UsageMetadata>(raw) else {
                    return false;
                };
                self.usage_raw.clear();
                self.usage_raw.extend_from_slice(raw.as_bytes());
                self.usage_aside = None;
                Some(u)
            }
        };
        // Every field is named (no `..`), so a field added to the owned types must be handled
        // here: the text path never keeps a value from an earlier event by mistake.
        let GenerateContentResponse {
            candidates,
            prompt_feedback,
            usage_metadata,
            model_version,
            response_id,
            extra,
        } = &mut self.event;
        clear(prompt_feedback);
        clear_map(extra);
        *usage_metadata = usage;
        set_str(model_version, ev.model_version);
        set_str(response_id, ev.response_id);
        candidates.truncate(ev.candidates.len());
        for (i, c) in ev.candidates.into_iter().enumerate() {
            let Some(Candidate {
                content,
                finish_reason,
                index,
                extra,
            }) = slot(candidates, i)
            else {
                return false;
            };
            clear_map(extra);
            *finish_reason = c.finish_reason;
            *index = c.index;
            let Some(text_content) = c.content else {
                clear(content);
                continue;
            };
            let Content { role, parts } = content.get_or_insert_with(Content::default);
            set_str(role, text_content.role);
            parts.truncate(text_content.parts.len());
            for (j, p) in text_content.parts.into_iter().enumerate() {
                let Some(Part {
                    text,
                    inline_data,
                    file_data,
                    function_call,
                    function_response,
                    thought,
                    thought_signature,
                    extra,
                }) = slot(parts, j)
                else {
                    return false;
                };
                let t = text.get_or_insert_with(String::new);
                t.clear();
                t.push_str(&p.text);
                clear(inline_data);
                clear(file_data);
                clear(function_call);
                clear(function_response);
                clear_map(extra);
                *thought = p.thought;
                set_str(thought_signature, p.thought_signature);
            }
        }
        true
    }
}

/// The `i`th element of `v`, appended (as its default) when `v` has just `i` elements: the
/// kept elements are rewritten in place and new ones added at the end.
fn slot<T: Default>(v: &mut Vec<T>, i: usize) -> Option<&mut T> {
    if i == v.len() {
        v.push(T::default());
    }
    v.get_mut(i)
}

/// `None`, dropping what was there (a store only when there was something).
fn clear<T>(field: &mut Option<T>) {
    if field.is_some() {
        *field = None;
    }
}

fn clear_map(map: &mut serde_json::Map<String, serde_json::Value>) {
    if !map.is_empty() {
        map.clear();
    }
}

/// `*field = value`, written into the string already there.
pub fn set_str(field: &mut Option<String>, value: Option<&str>) {
    match value {
        None => clear(field),
        Some(v) => {
            let s = field.get_or_insert_with(String::new);
            if s != v {
                s.clear();
                s.push_str(v);
            }
        }
    }
}

/// An event of `streamGenerateContent` that holds nothing but text parts (with their thought
/// flags and signatures), finish reasons, usage, the model version and the response id, read
/// in place. Any other field fails the read, and so does an escape in a string that is kept
/// borrowed (all but the text).
#[derive(Debug, Default, PartialEq)]
pub struct TextEvent<'a> {
    pub candidates: SmallVec<[TextCandidate<'a>; 1]>,
    /// The usage as JSON text, checked to be one JSON value.
    pub usage_metadata: Option<&'a str>,
    pub model_version: Option<&'a str>,
    pub response_id: Option<&'a str>,
}

#[derive(Debug, Default, PartialEq)]
pub struct TextCandidate<'a> {
    pub content: Option<TextContent<'a>>,
    pub finish_reason: Option<FinishReason>,
    pub index: Option<u32>,
}

#[derive(Debug, Default, PartialEq)]
pub struct TextContent<'a> {
    pub role: Option<&'a str>,
    pub parts: SmallVec<[TextPart<'a>; 2]>,
}

#[derive(Debug, Default, PartialEq)]
pub struct TextPart<'a> {
    /// Borrowed unless the text has escapes in it.
    pub text: Cow<'a, str>,
    pub thought: Option<bool>,
    pub thought_signature: Option<&'a str>,
}

/// The hand-written reader: one pass over the event, no allocation unless a text has escapes.
mod scan {
    use super::*;

    /// Why the scan gave no event.
    #[derive(Debug)]
    pub enum Miss {
        /// Certainly not a text event: a field the text event does not have, met where
        /// everything before it was read as serde reads it.
        NotText,
        /// Anything else: serde's reader decides.
        Unsure,
    }

    type Scanned<T> = Result<T, Miss>;

    /// The bytes that end a run of plain characters in a string: the closing quote, a
    /// backslash, a control character.
    static STOPS_STRING: [bool; 256] = {
        let mut t = [false; 256];
        let mut c = 0;
        while c < 0x20 {
            t[c] = true;
            c += 1;
        }
        t[b'"' as usize] = true;
        t[b'\\' as usize] = true;
        t
    };

    /// Nesting the scan follows inside a skipped value (the usage); deeper is left to serde.
    const MAX_DEPTH: usize = 32;

    pub fn event(s: &str) -> Scanned<TextEvent<'_>> {
        let mut p = Scan { s, at: 0 };
        let mut ev = TextEvent::default();
        let mut seen = Seen::default();
        p.object(|p, key| {
            match key {
                "candidates" => {
                    seen.once(0)?;
                    p.array(|p| {
                        ev.candidates.push(TextCandidate::default());
                        match ev.candidates.last_mut() {
                            Some(c) => p.candidate(c),
                            None => Err(Miss::Unsure),
                        }
                    })?;
                }
                "usageMetadata" => {
                    seen.once(1)?;
                    ev.usage_metadata = p.raw_or_null()?;
                }
                "modelVersion" => {
                    seen.once(2)?;
                    ev.model_version = p.borrowed_or_null()?;
                }
                "responseId" => {
                    seen.once(3)?;
                    ev.response_id = p.borrowed_or_null()?;
                }
                _ => return Err(Miss::NotText),
            }
            Ok(())
        })?;
        p.ws();
        if p.at != s.len() {
            return Err(Miss::Unsure);
        }
        Ok(ev)
    }

    /// The fields of one object met so far, to refuse a repeated one as serde does.
    #[derive(Default)]
    struct Seen(u8);

    impl Seen {
        fn once(&mut self, field: u8) -> Scanned<()> {
            let bit = 1 << field;
            if self.0 & bit != 0 {
                return Err(Miss::Unsure);
            }
            self.0 |= bit;
            Ok(())
        }

        fn has(&self, field: u8) -> bool {
            self.0 & (1 << field) != 0
        }
    }

    /// A string as found: its text between the quotes, and whether it has escapes.
    struct Str<'a> {
        inner: &'a str,
        escaped: bool,
    }

    impl<'a> Str<'a> {
        /// The string's value (escapes resolved by serde_json, which also refuses an
        /// unpaired surrogate as its reader does).
        fn value(&self) -> Scanned<Cow<'a, str>> {
            if !self.escaped {
                return Ok(Cow::Borrowed(self.inner));
            }
            let mut quoted = String::with_capacity(self.inner.len() + 2);
            quoted.push('"');
            quoted.push_str(self.inner);
            quoted.push('"');
            serde_json::from_str::<String>(&quoted)
                .map(Cow::Owned)
                .map_err(|_| Miss::Unsure)
        }
    }

    struct Scan<'a> {
        s: &'a str,
        at: usize,
    }

    impl<'a> Scan<'a> {
        fn bytes(&self) -> &'a [u8] {
            self.s.as_bytes()
        }

        fn peek(&self) -> Option<u8> {
            self.bytes().get(self.at).copied()
        }

        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
                self.at += 1;
            }
        }

        /// Consumes `b` (after any whitespace) if it comes next.
        fn eat(&mut self, b: u8) -> bool {
            self.ws();
            if self.peek() == Some(b) {
                self.at += 1;
                true
            } else {
                false
            }
        }

        fn expect(&mut self, b: u8) -> Scanned<()> {
            if self.eat(b) {
                Ok(())
            } else {
                Err(Miss::Unsure)
            }
        }

        /// `{ "key": value, … }`, calling `field` with each key, just before its value.
        fn object(&mut self, mut field: impl FnMut(&mut Self, &str) -> Scanned<()>) -> Scanned<()> {
            self.expect(b'{')?;
            if self.eat(b'}') {
                return Ok(());
            }
            loop {
                self.ws();
                let key = self.string()?;
                self.expect(b':')?;
                self.ws();
                if key.escaped {
                    field(self, &key.value()?)?;
                } else {
                    field(self, key.inner)?;
                }
                if self.eat(b',') {
                    continue;
                }
                return self.expect(b'}');
            }
        }

        /// `[ item, … ]`, calling `item` at the start of each.
        fn array(&mut self, mut item: impl FnMut(&mut Self) -> Scanned<()>) -> Scanned<()> {
            self.expect(b'[')?;
            if self.eat(b']') {
                return Ok(());
            }
            loop {
                self.ws();
                item(self)?;
                if self.eat(b',') {
                    continue;
                }
                return self.expect(b']');
            }
        }

        /// Consumes `null` if it comes next.
        fn null(&mut self) -> bool {
            if self.bytes()[self.at..].starts_with(b"null") {
                self.at += 4;
                true
            } else {
                false
            }
        }

        /// A string starting here, checked as serde_json checks it: no control characters,
        /// only JSON's escapes.
        fn string(&mut self) -> Scanned<Str<'a>> {
            let b = self.bytes();
            if b.get(self.at) != Some(&b'"') {
                return Err(Miss::Unsure);
            }
            let start = self.at + 1;
            let mut i = start;
            let mut escaped = false;
            loop {
                while b.get(i).is_some_and(|&c| !STOPS_STRING[usize::from(c)]) {
                    i += 1;
                }
                match b.get(i) {
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        i += match b.get(i + 1) {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
                            Some(b'u') if b.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => 6,
                            _ => return Err(Miss::Unsure),
                        };
                    }
                    // A control character, or the end of the event.
                    _ => return Err(Miss::Unsure),
                }
            }
            self.at = i + 1;
            // Quotes and backslashes are ASCII: these bounds fall between characters.
            let inner = self.s.get(start..i).ok_or(Miss::Unsure)?;
            Ok(Str { inner, escaped })
        }

        /// A string kept borrowed, or `null`. An escaped one cannot be borrowed: serde's
        /// reader refuses it, and so the event is not a text event.
        fn borrowed_or_null(&mut self) -> Scanned<Option<&'a str>> {
            if self.null() {
                return Ok(None);
            }
            let s = self.string()?;
            if s.escaped {
                return Err(Miss::Unsure);
            }
            Ok(Some(s.inner))
        }

        fn bool_or_null(&mut self) -> Scanned<Option<bool>> {
            let rest = &self.bytes()[self.at..];
            let (value, len) = if rest.starts_with(b"true") {
                (Some(true), 4)
            } else if rest.starts_with(b"false") {
                (Some(false), 5)
            } else if rest.starts_with(b"null") {
                (None, 4)
            } else {
                return Err(Miss::Unsure);
            };
            self.at += len;
            Ok(value)
        }

        /// A `u32` written as plain digits, or `null`; any other number is left to serde.
        fn u32_or_null(&mut self) -> Scanned<Option<u32>> {
            if self.null() {
                return Ok(None);
            }
            let b = self.bytes();
            let start = self.at;
            let mut end = start;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            let digits = &b[start..end];
            if digits.is_empty()
                || digits.len() > 10
                || (digits.len() > 1 && digits[0] == b'0')
                || matches!(b.get(end), Some(b'.' | b'e' | b'E'))
            {
                return Err(Miss::Unsure);
            }
            let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            self.at = end;
            u32::try_from(n).map(Some).map_err(|_| Miss::Unsure)
        }

        /// One JSON value of any kind, checked as serde_json's `ignore_value` checks it,
        /// returned as its text; `null` is `None`.
        fn raw_or_null(&mut self) -> Scanned<Option<&'a str>> {
            if self.null() {
                return Ok(None);
            }
            let start = self.at;
            self.skip(0)?;
            Ok(Some(self.s.get(start..self.at).ok_or(Miss::Unsure)?))
        }

        fn skip(&mut self, depth: usize) -> Scanned<()> {
            if depth > MAX_DEPTH {
                return Err(Miss::Unsure);
            }
            match self.peek() {
                Some(b'{') => self.object(|p, _| p.skip(depth + 1)),
                Some(b'[') => self.array(|p| p.skip(depth + 1)),
                Some(b'"') => self.string().map(drop),
                Some(b't' | b'f' | b'n') => {
                    let rest = &self.bytes()[self.at..];
                    let len = [&b"true"[..], b"false", b"null"]
                        .iter()
                        .find(|lit| rest.starts_with(lit))
                        .map(|lit| lit.len())
                        .ok_or(Miss::Unsure)?;
                    self.at += len;
                    Ok(())
                }
                _ => self.number(),
            }
        }

        /// A number in JSON's grammar (serde_json refuses the same ones).
        fn number(&mut self) -> Scanned<()> {
            let b = self.bytes();
            let mut i = self.at;
            let digits = |i: &mut usize| {
                let from = *i;
                while b.get(*i).is_some_and(u8::is_ascii_digit) {
                    *i += 1;
                }
                *i - from
            };
            if b.get(i) == Some(&b'-') {
                i += 1;
            }
            match b.get(i) {
                Some(b'0') => i += 1,
                Some(b'1'..=b'9') => {
                    digits(&mut i);
                }
                _ => return Err(Miss::Unsure),
            }
            if b.get(i) == Some(&b'.') {
                i += 1;
                if digits(&mut i) == 0 {
                    return Err(Miss::Unsure);
                }
            }
            if let Some(b'e' | b'E') = b.get(i) {
                i += 1;
                if let Some(b'+' | b'-') = b.get(i) {
                    i += 1;
                }
                if digits(&mut i) == 0 {
                    return Err(Miss::Unsure);
                }
            }
            // A digit right after a leading zero is refused by serde_json.
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(Miss::Unsure);
            }
            self.at = i;
            Ok(())
        }

        fn candidate(&mut self, c: &mut TextCandidate<'a>) -> Scanned<()> {
            let mut seen = Seen::default();
            self.object(|p, key| {
                match key {
                    "content" => {
                        seen.once(0)?;
                        c.content = None;
                        if !p.null() {
                            p.content(c.content.insert(TextContent::default()))?;
                        }
                    }
                    "finishReason" => {
                        seen.once(1)?;
                        c.finish_reason = if p.null() {
                            None
                        } else {
                            let name = p.string()?.value()?;
                            Some(finish_reason(&name)?)
                        };
                    }
                    "index" => {
                        seen.once(2)?;
                        c.index = p.u32_or_null()?;
                    }
                    _ => return Err(Miss::NotText),
                }
                Ok(())
            })
        }

        fn content(&mut self, c: &mut TextContent<'a>) -> Scanned<()> {
            let mut seen = Seen::default();
            self.object(|p, key| {
                match key {
                    "role" => {
                        seen.once(0)?;
                        c.role = p.borrowed_or_null()?;
                    }
                    "parts" => {
                        seen.once(1)?;
                        p.array(|p| {
                            c.parts.push(TextPart::default());
                            match c.parts.last_mut() {
                                Some(part) => p.part(part),
                                None => Err(Miss::Unsure),
                            }
                        })?;
                    }
                    _ => return Err(Miss::NotText),
                }
                Ok(())
            })
        }

        fn part(&mut self, part: &mut TextPart<'a>) -> Scanned<()> {
            let mut seen = Seen::default();
            self.object(|p, key| {
                match key {
                    "text" => {
                        seen.once(0)?;
                        part.text = p.string()?.value()?;
                    }
                    "thought" => {
                        seen.once(1)?;
                        part.thought = p.bool_or_null()?;
                    }
                    "thoughtSignature" => {
                        seen.once(2)?;
                        part.thought_signature = p.borrowed_or_null()?;
                    }
                    _ => return Err(Miss::NotText),
                }
                Ok(())
            })?;
            // The text is required.
            seen.has(0).then_some(()).ok_or(Miss::Unsure)
        }
    }

    /// A finish reason by its wire name, as its derived reader names it.
    fn finish_reason(name: &str) -> Scanned<FinishReason> {
        FinishReason::deserialize(BorrowedStrDeserializer::<serde_json::Error>::new(name)).map_err(|_| Miss::Unsure)
    }
}

/// serde's derived reader of the same event: [`read_reference`], and [`read`] where the scan
/// is unsure.
mod derived {
    use serde_json::value::RawValue;

    use super::*;

    pub fn read(event: &str) -> Option<TextEvent<'_>> {
        let ObjectOnly(e) = serde_json::from_str::<ObjectOnly<Event<'_>>>(event).ok()?;
        Some(TextEvent {
            candidates: e.candidates.into_iter().map(|ObjectOnly(c)| c.into()).collect(),
            usage_metadata: e.usage_metadata.map(RawValue::get),
            model_version: e.model_version,
            response_id: e.response_id,
        })
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Event<'a> {
        #[serde(borrow, default)]
        candidates: SmallVec<[ObjectOnly<Cand<'a>>; 1]>,
        #[serde(borrow, default)]
        usage_metadata: Option<&'a RawValue>,
        #[serde(borrow, default)]
        model_version: Option<&'a str>,
        #[serde(borrow, default)]
        response_id: Option<&'a str>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Cand<'a> {
        #[serde(borrow, default)]
        content: Option<ObjectOnly<Cont<'a>>>,
        #[serde(default)]
        finish_reason: Option<FinishReason>,
        #[serde(default)]
        index: Option<u32>,
    }

    impl<'a> From<Cand<'a>> for TextCandidate<'a> {
        fn from(c: Cand<'a>) -> Self {
            TextCandidate {
                content: c.content.map(|ObjectOnly(c)| TextContent {
                    role: c.role,
                    parts: c.parts.into_iter().map(|ObjectOnly(p)| p.into()).collect(),
                }),
                finish_reason: c.finish_reason,
                index: c.index,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Cont<'a> {
        #[serde(borrow, default)]
        role: Option<&'a str>,
        #[serde(borrow, default)]
        parts: SmallVec<[ObjectOnly<Prt<'a>>; 2]>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Prt<'a> {
        #[serde(borrow)]
        text: Cow<'a, str>,
        #[serde(default)]
        thought: Option<bool>,
        #[serde(borrow, default)]
        thought_signature: Option<&'a str>,
    }

    impl<'a> From<Prt<'a>> for TextPart<'a> {
        fn from(p: Prt<'a>) -> Self {
            TextPart {
                text: p.text,
                thought: p.thought,
                thought_signature: p.thought_signature,
            }
        }
    }

    /// A `T` read only from a JSON object, never from an array, as the owned types (which
    /// flatten the fields they do not name) are read.
    struct ObjectOnly<T>(T);

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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PART: &str = r#"{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"},"index":IDX}]}"#;

    /// Each case read by [`read`] and by [`read_reference`]: the same answer, text event or not.
    fn agree(event: &str) -> Option<TextEvent<'_>> {
        let (got, want) = (read(event.as_bytes()), read_reference(event.as_bytes()));
        assert_eq!(got, want, "{event}");
        if let Some(scanned) = read_scanned(event.as_bytes()) {
            assert_eq!(Some(scanned), want, "scanned {event}");
        }
        got
    }

    #[test]
    fn numbers_are_read_as_serde_reads_them() {
        for (idx, want) in [
            ("0", Some(0)),
            ("2", Some(2)),
            ("4294967295", Some(u32::MAX)),
            ("null", None),
            (" 7 ", Some(7)),
        ] {
            let event = PART.replace("IDX", idx);
            let got = agree(&event).unwrap_or_else(|| panic!("{event}"));
            assert_eq!(got.candidates[0].index, want, "{event}");
            assert!(read_scanned(event.as_bytes()).is_some(), "{event}");
        }
        for idx in [
            "01",
            "-1",
            "-0",
            "1.0",
            "1e0",
            "4294967296",
            "99999999999",
            "+1",
            "0x1",
            "",
            "1 2",
        ] {
            agree(&PART.replace("IDX", idx));
        }
        for usage in [
            "0",
            "-0",
            "12.5",
            "1e9",
            "1E-9",
            "-1.5e+3",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "[1,2.0,-3e1]",
            "{\"a\":[true,false,null]}",
            "tru",
            "nulll",
            "\"s\"",
            "\"\\u00e9\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\"\\uZZZZ\"",
            "\"\\q\"",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        ] {
            agree(&format!(r#"{{"usageMetadata":{usage}}}"#));
        }
    }

    #[test]
    fn strings_fields_and_layout_are_read_as_serde_reads_them() {
        let cases = [
            r#"{}"#,
            r#" { } "#,
            "{\n \"candidates\" : [ { \"content\" : { \"parts\" : [ { \"text\" : \"a\" , \"thought\" : true } ] } } ] \r\n}\t",
            r#"{"candidates":[{"content":{"parts":[{"text":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"\ud800"}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"\x"}]}}]}"#,
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"tab\there\"}]}}]}",
            r#"{"candidates":[{"content":{"parts":[{"thought":true}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":null}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"a","thought":null,"thoughtSignature":null}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"a","thought":"yes"}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"a","text":"b"}]}}]}"#,
            r#"{"candidates":[{"content":null,"finishReason":null,"index":null}]}"#,
            r#"{"candidates":[{"finishReason":"STOP"},{"finishReason":"SOMETHING_NEW","index":1}]}"#,
            r#"{"candidates":[{"finishReason":"ST\u004fP"}]}"#,
            r#"{"candidates":[{"finishReason":3}]}"#,
            r#"{"candidates":[{"finishReason":{"STOP":null}}]}"#,
            r#"{"candid\u0061tes":[]}"#,
            r#"{"candidates":null}"#,
            r#"{"candidates":[null]}"#,
            r#"{"candidates":[[]]}"#,
            r#"{"candidates":[],"candidates":[]}"#,
            r#"{"candidates":[{"content":{"parts":[],"role":"mo\"del"}}]}"#,
            r#"{"modelVersion":"m","responseId":"r","usageMetadata":null}"#,
            r#"{"modelVersion":"m\u0000"}"#,
            r#"{"modelVersion":"m"} x"#,
            r#"{"modelVersion":"m",}"#,
            r#"{"modelVersion":"m""#,
            r#"{"safetyRatings":[]}"#,
            r#"{"candidates":[{"safetyRatings":[]}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"a","functionCall":{}}]}}]}"#,
            r#"[]"#,
            r#""text""#,
            "",
            "{\"modelVersion\":\"\u{1}\"}",
        ];
        for event in cases {
            agree(event);
        }
        let escaped = agree(cases[3]).unwrap();
        let text = &escaped.candidates[0].content.as_ref().unwrap().parts[0].text;
        assert_eq!(text, "a\"b\\c/d\u{8}\u{c}\n\r\té😀");
        let spaced = agree(cases[2]).unwrap();
        assert_eq!(
            spaced.candidates[0].content.as_ref().unwrap().parts[0].thought,
            Some(true)
        );
        assert!(read_scanned(cases[2].as_bytes()).is_some());
    }
}
