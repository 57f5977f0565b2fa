//! Fuzzing on stable: proptest properties for everything in the crate that reads untrusted bytes.
//!
//! Client requests (chat, embeddings, Anthropic Messages, OpenAI Responses), Gemini responses and stream events, the response merger,
//! SSE framing and upstream error bodies. The first rule everywhere: whatever the input, nothing
//! panics. A few real properties ride along (SSE chunking, retry delays bounded by `MAX_WAIT`,
//! stream tool-call indexes).
//!
//! Each property runs 256 cases; `PROPTEST_CASES=5000` (or any count) runs longer, and
//! `PROPTEST_RNG_SEED` replays a seed. Failures are not persisted to files: a failure prints the
//! shrunk input, which belongs in a plain `#[test]` beside the code it broke.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::collections::HashMap;

use gemini_balance::gateway::fold::{Fold, ResponseMerger, TypedMerger};
use gemini_balance::gateway::gemini::{classify, parse_duration, GenerateContentResponse};
use gemini_balance::gateway::openai::ChatCompletionRequest;
use gemini_balance::gateway::pool::{Outcome, RetryAfter, MAX_WAIT};
use gemini_balance::gateway::sse::SseParser;
use gemini_balance::gateway::text_event::{self, EventReader};
use gemini_balance::gateway::translate::embeddings::{self, EmbeddingRequest};
use gemini_balance::gateway::translate::stream::StreamTranslator;
use gemini_balance::gateway::translate::{request, response};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestError, TestRunner};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------------------------

const DEFAULT_CASES: u32 = 256;

/// 256 cases unless `PROPTEST_CASES` says otherwise; no regression files.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        ..Config::default()
    }
}

/// Runs `test` on generated inputs. `test` returns how far the input got (an index into
/// `stages`), which is printed with the number of executions so a weak generator shows.
/// A panic or a failed `prop_assert!` fails the test with the shrunk input.
fn fuzz<S: Strategy>(
    name: &str,
    stages: &[&str],
    strategy: S,
    test: impl Fn(S::Value) -> Result<usize, TestCaseError>,
) {
    let reached: Vec<Cell<u64>> = stages.iter().map(|_| Cell::new(0)).collect();
    let runs = Cell::new(0u64);
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |input| {
        runs.set(runs.get() + 1);
        let stage = test(input)?;
        if let Some(c) = reached.get(stage) {
            c.set(c.get() + 1);
        }
        Ok(())
    });
    match result {
        Ok(()) => {
            let summary: Vec<String> = stages
                .iter()
                .zip(&reached)
                .map(|(s, c)| format!("{s} {}", c.get()))
                .collect();
            eprintln!("fuzz {name}: {} executions ({})", runs.get(), summary.join(", "));
        }
        Err(TestError::Fail(why, input)) => panic!("fuzz {name}: {why}\nminimal failing input: {input:#?}"),
        Err(TestError::Abort(why)) => panic!("fuzz {name}: aborted: {why}"),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON building blocks
// ---------------------------------------------------------------------------------------------

/// Marks a string that [`render`] writes as a bare JSON token.
const RAW: &str = "\u{0}raw:";

/// A number token written as-is: what `serde_json::Value` cannot hold (1e400, -0, 2^64) or what
/// is not JSON at all (NaN).
fn raw(token: &str) -> Value {
    Value::String(format!("{RAW}{token}"))
}

/// Serializes `v`, writing the tokens of [`raw`] bare.
fn render(v: &Value) -> String {
    let text = v.to_string();
    let marker = "\"\\u0000raw:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i]);
        let after = &rest[i + marker.len()..];
        let end = after.find('"').unwrap_or(after.len());
        out.push_str(&after[..end]);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

const RAW_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "1e-400",
    "-1e-400",
    "-0",
    "-0.0",
    "0e0",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999999999",
    "1.7976931348623157e308",
    "5e-324",
    "1E2",
    "2.0",
    "0.5",
];

/// Tokens in `RAW_NUMBERS` that a `serde_json::Value` reads (as 0, -0.0 or a float).
const JSON_NUMBERS: &[&str] = &[
    "1e-400",
    "-1e-400",
    "-0",
    "-0.0",
    "0e0",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999999999",
    "1.7976931348623157e308",
    "5e-324",
    "1E2",
];

/// Not JSON: a parser must say so, not crash.
const NOT_JSON_NUMBERS: &[&str] = &["NaN", "Infinity", "-Infinity", "+1", "01", ".5", "1.", "0x10", "1e"];

const NAN_ISH: &[&str] = &[
    "NaN", "nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "0x1p3", "", " 1",
];

const EDGE_INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    8,
    63,
    64,
    65,
    255,
    65_535,
    2_147_483_647,
    4_294_967_295,
    4_294_967_296,
    i64::MAX,
    i64::MIN,
];

const WORDS: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "x",
    "hi",
    "NaN",
    "null",
    "{",
    "{}",
    "[]",
    "{\"a\":1}",
    "[1,2",
    "\"",
    "\\",
    ".",
    "..",
    "../../etc/passwd",
    "call_",
    "call_abc",
    "call_abc.c2ln",
    "abc.def.ghi",
    ".sig",
    "c2lnbmF0dXJl",
    "models/",
    "models/gemini-2.5-flash",
    "gemini-2.5-flash",
    "gemini-2.0-flash",
    "gemini-3-pro-preview",
    "gemini:generateContent?x",
    "data:",
    "data:,",
    "data:;base64,",
    "data:image/png;base64,",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:text/plain,hello",
    "http://127.0.0.1/x.png",
    "https://example.com/a.jpg",
    "ftp://x/y.png",
    "file:///etc/passwd",
    "none",
    "minimal",
    "low",
    "medium",
    "high",
    "auto",
    "required",
    "function",
    "text",
    "json_object",
    "json_schema",
    "STOP",
    "SAFETY",
    "limit: 0",
    "limit: 0, model: x",
    "API key not valid",
    "report.pdf",
    "a.PNG",
    "noext",
    "é",
    "🦀",
    "\u{0}",
    "\u{202e}",
    "\u{feff}",
    "\r\n",
    "\n\n",
    "data: x\n\n",
];

/// Keys that some type in the gateway knows, to land on real fields at any depth.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "parts",
    "text",
    "type",
    "name",
    "id",
    "function",
    "arguments",
    "tool_calls",
    "tool_call_id",
    "image_url",
    "url",
    "file",
    "file_data",
    "input_audio",
    "data",
    "format",
    "properties",
    "$ref",
    "schema",
    "json_schema",
    "google",
    "thinking_config",
    "generation_config",
    "generationConfig",
    "contents",
    "candidates",
    "index",
    "finishReason",
    "thought",
    "thoughtSignature",
    "functionCall",
    "args",
    "inlineData",
    "mimeType",
    "usageMetadata",
    "promptFeedback",
    "blockReason",
    "error",
    "details",
    "@type",
    "retryDelay",
    "violations",
    "quotaId",
    "quotaValue",
    "reason",
    "web",
    "uri",
    "segment",
    "embeddings",
    "values",
];

fn odd_number() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (0u64..100).prop_map(Value::from),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        2 => any::<f64>().prop_map(Value::from),
        1 => (-2.0f64..2.0).prop_map(Value::from),
        2 => select(EDGE_INTS).prop_map(Value::from),
        3 => select(RAW_NUMBERS).prop_map(raw),
        1 => select(NOT_JSON_NUMBERS).prop_map(raw),
        1 => select(NAN_ISH).prop_map(|s| Value::String(s.into())),
    ]
    .boxed()
}

/// A number `serde_json` reads (into a `Value`), however odd.
fn json_number() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (0u64..100).prop_map(Value::from),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        2 => any::<f64>().prop_map(Value::from),
        2 => select(EDGE_INTS).prop_map(Value::from),
        1 => select(JSON_NUMBERS).prop_map(raw),
    ]
    .boxed()
}

fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(WORDS).prop_map(String::from),
        2 => any::<String>(),
        1 => vec(any::<char>(), 0..24).prop_map(|c| c.into_iter().collect()),
        2 => "[a-zA-Z0-9_./:;,=+ -]{0,16}",
        1 => (select(WORDS), select(WORDS)).prop_map(|(a, b)| format!("{a}{b}")),
        1 => (select(WORDS), 0usize..300).prop_map(|(w, n)| w.repeat(n)),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![3 => select(KEYS).prop_map(String::from), 1 => odd_string()].boxed()
}

/// Any JSON value, a few levels deep.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => json_number(),
        3 => odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((key(), inner), 0..5).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

fn string() -> BoxedStrategy<Value> {
    odd_string().prop_map(Value::String).boxed()
}

fn one_of(words: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![100 => select(words).prop_map(|s| Value::String(s.into())), 1 => string()].boxed()
}

fn boolean() -> BoxedStrategy<Value> {
    any::<bool>().prop_map(Value::Bool).boxed()
}

/// Mostly a small count, sometimes any number at all.
fn count() -> BoxedStrategy<Value> {
    prop_oneof![100 => (0u32..10).prop_map(Value::from), 3 => any::<u32>().prop_map(Value::from), 2 => odd_number()]
        .boxed()
}

/// Mostly a plausible float, sometimes any number at all.
fn float() -> BoxedStrategy<Value> {
    prop_oneof![50 => (-3.0f64..3.0).prop_map(Value::from), 1 => odd_number()].boxed()
}

/// Sampling parameters: often odd (huge, negative, out of range, `"NaN"`, not JSON at all).
fn sampling() -> BoxedStrategy<Value> {
    prop_oneof![3 => (-3.0f64..3.0).prop_map(Value::from), 1 => odd_number()].boxed()
}

/// Mostly any `i64`, sometimes any number at all.
fn integer() -> BoxedStrategy<Value> {
    prop_oneof![50 => any::<i64>().prop_map(Value::from), 1 => odd_number()].boxed()
}

fn array(item: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    vec(item, 0..max).prop_map(Value::Array).boxed()
}

fn constant(v: &'static str) -> BoxedStrategy<Value> {
    Just(Value::String(v.into())).boxed()
}

/// One field of a generated object: its name, its value, whether it is always there.
struct Field {
    name: &'static str,
    value: BoxedStrategy<Value>,
    required: bool,
}

/// A field that is usually there.
fn opt(name: &'static str, value: BoxedStrategy<Value>) -> Field {
    Field {
        name,
        value,
        required: false,
    }
}

/// A field the type cannot do without (a missing one only tests serde).
fn must(name: &'static str, value: BoxedStrategy<Value>) -> Field {
    Field {
        name,
        value,
        required: true,
    }
}

/// A JSON object with the given fields: each usually well typed, now and then any JSON at all,
/// optional ones sometimes missing; a stray key may come along.
fn object(fields: Vec<Field>) -> BoxedStrategy<Value> {
    let fields: Vec<BoxedStrategy<Option<(&'static str, Value)>>> = fields
        .into_iter()
        .map(|Field { name, value, required }| {
            let present = prop_oneof![
                400 => value.prop_map(move |v| Some((name, v))),
                1 => any_json().prop_map(move |v| Some((name, v))),
            ];
            if required {
                present.boxed()
            } else {
                // None first: shrinking drops the field.
                prop_oneof![1 => Just(None), 5 => present].boxed()
            }
        })
        .collect();
    let stray = prop_oneof![8 => Just(Vec::new()), 1 => vec((key(), any_json()), 1..3)];
    (fields, stray)
        .prop_map(|(fields, stray)| {
            let mut m: Map<String, Value> = stray.into_iter().collect();
            for (k, v) in fields.into_iter().flatten() {
                m.insert(k.to_string(), v);
            }
            Value::Object(m)
        })
        .boxed()
}

/// Edits to bytes: (where, what, which byte). Applied by [`mutate`].
type Edits = Vec<(Index, u8, u8)>;

fn edits() -> impl Strategy<Value = Edits> {
    let byte = prop_oneof![3 => select(b"{}[]\":,-.0123456789eEnul\\ ".to_vec()), 1 => any::<u8>()];
    vec((any::<Index>(), any::<u8>(), byte), 1..6)
}

/// Near-valid bytes: overwrites, inserts, deletes and (rarely) truncations.
fn mutate(mut bytes: Vec<u8>, edits: &Edits) -> Vec<u8> {
    for (at, op, b) in edits {
        let i = at.index(bytes.len() + 1);
        match op % 8 {
            0..=2 if i < bytes.len() => bytes[i] = *b,
            3..=5 => bytes.insert(i, *b),
            6 if i < bytes.len() => {
                bytes.remove(i);
            }
            7 => bytes.truncate(i),
            _ => {}
        }
    }
    bytes
}

/// Bytes under test, shown as an escaped byte string when an input fails.
#[derive(Clone, PartialEq)]
struct Raw(Vec<u8>);

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

fn json_bytes(v: &Value) -> Raw {
    Raw(render(v).into_bytes())
}

fn corrupted(v: &Value, e: &Edits) -> Raw {
    Raw(mutate(render(v).into_bytes(), e))
}

/// Arbitrary bytes, sometimes plain ASCII, sometimes with lots of JSON punctuation.
fn bytes(max: usize) -> BoxedStrategy<Raw> {
    prop_oneof![
        vec(any::<u8>(), 0..max),
        vec(select(b"{}[]\":,0123456789.eE-+ntruefalsnul \\\r\n".to_vec()), 0..max),
    ]
    .prop_map(Raw)
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// 1. OpenAI chat-completions requests
// ---------------------------------------------------------------------------------------------

fn data_url() -> BoxedStrategy<Value> {
    let mime = select(
        &[
            "image/png",
            "image/jpeg",
            "audio/wav",
            "application/pdf",
            "",
            "x",
            "image/png;charset=x",
        ][..],
    );
    let data = prop_oneof!["[A-Za-z0-9+/=]{0,24}", odd_string()];
    let sep = select(&[";base64,", ",", ";base64", ";BASE64,", ";base64,,", ""][..]);
    (mime, sep, data)
        .prop_map(|(m, s, d)| Value::String(format!("data:{m}{s}{d}")))
        .boxed()
}

fn url() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => data_url(),
        2 => select(&["http://127.0.0.1/x.png", "https://example.com/cat.jpg", "http://[::1]:80/a", "https://", "http://localhost:0/"][..])
            .prop_map(|s| Value::String(s.into())),
        1 => string(),
    ]
    .boxed()
}

fn content_part() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => object(vec![must("type", constant("text")), must("text", string())]),
        6 => object(vec![
            must("type", constant("image_url")),
            must("image_url", object(vec![must("url", url()), opt("detail", one_of(&["low", "high", "auto"]))])),
        ]),
        2 => object(vec![
            must("type", constant("input_audio")),
            must("input_audio", object(vec![must("data", string()), must("format", one_of(&["wav", "mp3", ""]))])),
        ]),
        4 => object(vec![
            must("type", constant("file")),
            must("file", object(vec![
                opt("file_data", prop_oneof![data_url(), string()].boxed()),
                opt("file_id", string()),
                opt("filename", one_of(&["a.pdf", "b.PNG", "c.jpeg", "d.txt", "noext", ".", "x."])),
            ])),
        ]),
        2 => object(vec![must("type", constant("refusal")), must("refusal", string())]),
        1 => object(vec![must("type", one_of(&["video", "image", "audio", "TEXT"])), opt("text", string())]),
    ]
    .boxed()
}

fn content() -> BoxedStrategy<Value> {
    prop_oneof![3 => string(), 3 => array(content_part(), 4), 1 => Just(Value::Null)].boxed()
}

fn call_id() -> BoxedStrategy<Value> {
    one_of(&[
        "call_abc",
        "call_abc.c2ln",
        "abc",
        "abc.def.ghi",
        "",
        ".",
        "call_x.",
        "fc-1",
    ])
}

fn tool_arguments() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => any_json().prop_map(|v| Value::String(render(&v))),
        1 => (any_json(), edits()).prop_map(|(v, e)| {
            Value::String(String::from_utf8_lossy(&mutate(render(&v).into_bytes(), &e)).into_owned())
        }),
        1 => string(),
    ]
    .boxed()
}

fn tool_call() -> BoxedStrategy<Value> {
    object(vec![
        opt("id", call_id()),
        must("type", one_of(&["function"])),
        must(
            "function",
            object(vec![
                must("name", one_of(&["get_weather", "f", ""])),
                opt("arguments", tool_arguments()),
            ]),
        ),
    ])
}

fn message() -> BoxedStrategy<Value> {
    object(vec![
        must(
            "role",
            one_of(&["system", "developer", "user", "user", "assistant", "tool", "function"]),
        ),
        opt("content", content()),
        opt("name", one_of(&["get_weather", "f", "bob"])),
        opt("tool_calls", array(tool_call(), 3)),
        opt("tool_call_id", call_id()),
    ])
}

fn schema() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => any_json(),
        2 => (vec((key(), any_json()), 0..3)).prop_map(|props| {
            json!({"type": "object", "properties": Value::Object(props.into_iter().collect())})
        }),
        1 => string().prop_map(|r| json!({"$ref": r})),
    ]
    .boxed()
}

fn tool() -> BoxedStrategy<Value> {
    object(vec![
        must(
            "type",
            one_of(&[
                "function",
                "function",
                "function",
                "function",
                "function",
                "code_interpreter",
            ]),
        ),
        must(
            "function",
            object(vec![
                must("name", one_of(&["get_weather", "f"])),
                opt("description", string()),
                opt("parameters", schema()),
                opt("strict", boolean()),
            ]),
        ),
    ])
}

fn tool_choice() -> BoxedStrategy<Value> {
    prop_oneof![
        one_of(&["none", "auto", "auto", "required", "required", "any"]),
        object(vec![
            must("type", one_of(&["function"])),
            must("function", object(vec![must("name", one_of(&["get_weather", "f"]))])),
        ]),
    ]
    .boxed()
}

fn response_format() -> BoxedStrategy<Value> {
    object(vec![
        must("type", one_of(&["text", "json_object", "json_schema"])),
        must(
            "json_schema",
            object(vec![
                opt("name", string()),
                opt("schema", schema()),
                opt("strict", boolean()),
            ]),
        ),
    ])
}

/// Gemini-only options: `google` (extra_body), with snake or camel keys.
fn google_options() -> BoxedStrategy<Value> {
    object(vec![
        opt(
            "thinking_config",
            object(vec![
                opt("thinking_budget", count()),
                opt("include_thoughts", boolean()),
            ]),
        ),
        opt(
            "safety_settings",
            array(object(vec![opt("category", string()), opt("threshold", string())]), 3),
        ),
        opt("cached_content", string()),
        opt("tools", prop_oneof![array(any_json(), 3), any_json()].boxed()),
        opt("tool_config", any_json()),
        opt(
            "generation_config",
            object(vec![opt("response_schema", schema()), opt("top_k", count())]),
        ),
        opt("contents", any_json()),
        opt("system_instruction", any_json()),
    ])
}

fn chat_request() -> BoxedStrategy<Value> {
    object(vec![
        must(
            "model",
            prop_oneof![
                12 => one_of(&["gemini-2.5-flash", "models/gemini-2.0-flash", "gemini-3-pro-preview", " gemini-2.5-pro@001 "]),
                1 => one_of(&["", "../x", "models/", "gemini 2.5"]),
            ]
            .boxed(),
        ),
        must("messages", prop_oneof![1 => Just(Vec::new()), 12 => vec(message(), 1..5)].prop_map(Value::Array).boxed()),
        opt("stream", boolean()),
        opt("stream_options", object(vec![opt("include_usage", boolean())])),
        opt("temperature", sampling()),
        opt("top_p", sampling()),
        opt("max_tokens", count()),
        opt("max_completion_tokens", count()),
        opt("stop", prop_oneof![string(), array(string(), 4)].boxed()),
        opt("n", count()),
        opt("seed", integer()),
        opt("presence_penalty", float()),
        opt("frequency_penalty", float()),
        opt("response_format", response_format()),
        opt("tools", array(tool(), 3)),
        opt("tool_choice", tool_choice()),
        opt("parallel_tool_calls", boolean()),
        opt(
            "reasoning_effort",
            one_of(&["none", "minimal", "low", "medium", "high"]),
        ),
        opt("logprobs", boolean()),
        opt("top_logprobs", count()),
        opt("user", string()),
        opt("google", google_options()),
        opt(
            "extra_body",
            prop_oneof![google_options().prop_map(|g| json!({ "google": g })), any_json()].boxed(),
        ),
        opt("thinking_config", any_json()),
        opt("safetySettings", any_json()),
    ])
}

/// What `to_gemini` made of a request, checked; `Ok(stage)` for [`fuzz`].
fn check_chat(text: &[u8]) -> Result<usize, TestCaseError> {
    let Ok(req) = serde_json::from_slice::<ChatCompletionRequest>(text) else {
        return Ok(0);
    };
    let Ok((model, body)) = request::to_gemini(&req) else {
        return Ok(1);
    };
    prop_assert!(!model.is_empty() && model.len() <= 200, "model id {model:?}");
    prop_assert!(
        model.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)),
        "model id {model:?}"
    );
    prop_assert!(!body.contents.is_empty());
    prop_assert!(serde_json::to_vec(&body).is_ok());
    Ok(2)
}

const CHAT_STAGES: &[&str] = &["unreadable", "refused", "translated"];

#[test]
fn chat_requests_translate_or_fail_cleanly() {
    let input = chat_request().prop_map(|v| json_bytes(&v));
    fuzz("chat request", CHAT_STAGES, input, |b| check_chat(&b));
}

#[test]
fn chat_requests_with_corrupted_bytes() {
    fuzz(
        "chat request, corrupted",
        CHAT_STAGES,
        (chat_request(), edits()).prop_map(|(v, e)| corrupted(&v, &e)),
        |b| check_chat(&b),
    );
}

#[test]
fn chat_requests_from_random_bytes() {
    fuzz("chat request, random bytes", CHAT_STAGES, bytes(512), |b| {
        check_chat(&b)
    });
}

#[test]
fn embeddings_requests_and_answers() {
    let req = object(vec![
        must(
            "model",
            one_of(&["text-embedding-004", "models/gemini-embedding-001", ""]),
        ),
        must("input", prop_oneof![string(), array(string(), 4), any_json()].boxed()),
        opt("dimensions", count()),
        opt("encoding_format", one_of(&["float", "base64"])),
        opt("user", string()),
    ]);
    let answer = prop_oneof![
        3 => object(vec![opt(
            "embeddings",
            array(object(vec![opt("values", array(prop_oneof![3 => float(), 1 => odd_number()].boxed(), 6))]), 4),
        )])
        .prop_map(|v| json_bytes(&v)),
        1 => bytes(128),
    ];
    fuzz(
        "embeddings",
        &["unreadable", "refused", "translated", "answered"],
        (req.prop_map(|v| json_bytes(&v)), answer),
        |(req, answer)| {
            let Ok(req) = serde_json::from_slice::<EmbeddingRequest>(&req) else {
                return Ok(0);
            };
            let Ok((_, texts, body)) = embeddings::to_gemini(&req) else {
                return Ok(1);
            };
            prop_assert!(serde_json::to_vec(&body).is_ok());
            let Ok(out) = embeddings::to_openai(&answer, &req, &texts) else {
                return Ok(2);
            };
            prop_assert_eq!(out.data.len(), texts.len());
            prop_assert!(serde_json::to_vec(&out).is_ok());
            Ok(3)
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Gemini responses, stream events and the merger
// ---------------------------------------------------------------------------------------------

fn token_count() -> BoxedStrategy<Value> {
    prop_oneof![
        40 => (0u32..5000).prop_map(Value::from),
        20 => (u32::MAX - 1000..=u32::MAX).prop_map(Value::from),
        10 => any::<u32>().prop_map(Value::from),
        1 => odd_number(),
    ]
    .boxed()
}

fn candidate_index() -> BoxedStrategy<Value> {
    prop_oneof![
        60 => (0u32..4).prop_map(Value::from),
        10 => (60u32..70).prop_map(Value::from),
        10 => select(&[u32::MAX, u32::MAX - 1, 1 << 31][..]).prop_map(Value::from),
        1 => odd_number(),
    ]
    .boxed()
}

fn gemini_part() -> BoxedStrategy<Value> {
    prop_oneof![
        5 => object(vec![opt("text", string()), opt("thought", boolean()), opt("thoughtSignature", string())]),
        2 => object(vec![
            opt("functionCall", object(vec![opt("id", call_id()), opt("name", one_of(&["f", "get_weather", ""])), opt("args", any_json())])),
            opt("thoughtSignature", string()),
        ]),
        1 => object(vec![opt("inlineData", object(vec![opt("mimeType", one_of(&["image/png", "audio/wav", ""])), opt("data", string())]))]),
        1 => object(vec![opt("executableCode", object(vec![opt("language", one_of(&["PYTHON"])), opt("code", string())]))]),
        1 => object(vec![opt("codeExecutionResult", object(vec![opt("outcome", one_of(&["OUTCOME_OK"])), opt("output", string())]))]),
        1 => object(vec![opt("fileData", object(vec![opt("mimeType", string()), must("fileUri", string())]))]),
        1 => object(vec![opt("functionResponse", object(vec![opt("name", string()), opt("response", any_json())]))]),
        1 => any_json(),
    ]
    .boxed()
}

fn logprob_entry() -> BoxedStrategy<Value> {
    object(vec![opt("token", string()), opt("logProbability", json_number())])
}

fn logprobs_result() -> BoxedStrategy<Value> {
    object(vec![
        opt(
            "topCandidates",
            array(object(vec![opt("candidates", array(logprob_entry(), 3))]), 4),
        ),
        opt("chosenCandidates", array(logprob_entry(), 4)),
    ])
}

fn grounding_metadata() -> BoxedStrategy<Value> {
    object(vec![
        opt(
            "groundingChunks",
            array(
                object(vec![opt(
                    "web",
                    object(vec![opt("uri", url()), opt("title", string())]),
                )]),
                4,
            ),
        ),
        opt(
            "groundingSupports",
            array(
                object(vec![
                    opt(
                        "segment",
                        object(vec![
                            opt("startIndex", json_number()),
                            opt("endIndex", json_number()),
                            opt("text", string()),
                        ]),
                    ),
                    opt("groundingChunkIndices", array(candidate_index(), 4)),
                ]),
                4,
            ),
        ),
        opt("webSearchQueries", array(string(), 2)),
    ])
}

fn candidate() -> BoxedStrategy<Value> {
    object(vec![
        opt(
            "content",
            object(vec![
                opt("parts", array(gemini_part(), 5)),
                opt("role", one_of(&["model"])),
            ]),
        ),
        opt(
            "finishReason",
            one_of(&[
                "STOP",
                "MAX_TOKENS",
                "SAFETY",
                "RECITATION",
                "MALFORMED_FUNCTION_CALL",
                "OTHER",
                "NEW_REASON",
                "",
            ]),
        ),
        opt("index", candidate_index()),
        opt("safetyRatings", any_json()),
        opt("logprobsResult", logprobs_result()),
        opt("groundingMetadata", grounding_metadata()),
        opt("avgLogprobs", json_number()),
    ])
}

fn gemini_response() -> BoxedStrategy<Value> {
    object(vec![
        opt("candidates", array(candidate(), 4)),
        opt(
            "promptFeedback",
            object(vec![
                opt(
                    "blockReason",
                    one_of(&["SAFETY", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT"]),
                ),
                opt("blockReasonMessage", string()),
                opt("safetyRatings", any_json()),
            ]),
        ),
        opt(
            "usageMetadata",
            object(vec![
                opt("promptTokenCount", token_count()),
                opt("candidatesTokenCount", token_count()),
                opt("thoughtsTokenCount", token_count()),
                opt("cachedContentTokenCount", token_count()),
                opt("totalTokenCount", token_count()),
                opt("promptTokensDetails", any_json()),
            ]),
        ),
        opt("modelVersion", string()),
        opt("responseId", string()),
    ])
}

/// One event's bytes: mostly response-shaped, sometimes corrupted or random.
fn event_bytes() -> BoxedStrategy<Raw> {
    prop_oneof![
        8 => gemini_response().prop_map(|v| json_bytes(&v)),
        1 => (gemini_response(), edits()).prop_map(|(v, e)| corrupted(&v, &e)),
        1 => any_json().prop_map(|v| json_bytes(&v)),
        1 => bytes(64),
    ]
    .boxed()
}

#[test]
fn responses_translate_or_fail_cleanly() {
    fuzz(
        "gemini response",
        &["unreadable", "refused", "translated"],
        event_bytes(),
        |bytes| {
            let Ok(resp) = serde_json::from_slice::<GenerateContentResponse>(&bytes) else {
                return Ok(0);
            };
            let _ = response::is_empty(&resp);
            let Ok(out) = response::to_openai(&resp, "model", 0) else {
                prop_assert!(resp.candidates.is_empty(), "only a blocked prompt is an error");
                return Ok(1);
            };
            prop_assert_eq!(out.choices.len(), resp.candidates.len());
            // The completion writer's text is serde_json's, byte for byte.
            let written = gemini_balance::gateway::translate::json_out::completion(&out);
            prop_assert_eq!(written.ok(), serde_json::to_vec(&out).ok());
            Ok(2)
        },
    );
}

#[test]
fn stream_events_translate_or_fail_cleanly() {
    fuzz(
        "stream",
        &["no chunk", "chunks"],
        (vec(event_bytes(), 0..8), any::<bool>()),
        |(events, include_usage)| {
            let mut t = StreamTranslator::new("chatcmpl-x".into(), "mo\"del/é".into(), 7, include_usage);
            let json = t.chunk_json();
            // Per choice: the index the next tool call must have (OpenAI clients append by it).
            let mut next_tool_index: HashMap<u32, u32> = HashMap::new();
            let mut chunks = 0;
            for data in &events {
                let Ok(event) = serde_json::from_slice::<GenerateContentResponse>(data) else {
                    continue;
                };
                let Some(chunk) = t.on_event(&event) else { continue };
                chunks += 1;
                prop_assert!(!chunk.choices.is_empty());
                // The chunk writer's text is serde_json's, byte for byte.
                prop_assert_eq!(json.write(&chunk).ok(), serde_json::to_string(&chunk).ok());
                for choice in &chunk.choices {
                    for call in choice.delta.tool_calls.iter().flatten() {
                        let next = next_tool_index.entry(choice.index).or_insert(0);
                        prop_assert_eq!(call.index, *next, "tool call index of choice {}", choice.index);
                        *next += 1;
                    }
                }
                let _ = t.is_finished();
            }
            let _ = t.usage();
            let usage = t.usage_chunk();
            prop_assert_eq!(usage.is_some(), include_usage);
            if let Some(u) = usage {
                prop_assert!(u.choices.is_empty());
                prop_assert!(serde_json::to_string(&u).is_ok());
                prop_assert_eq!(json.write(&u).ok(), serde_json::to_string(&u).ok());
            }
            Ok(usize::from(chunks > 0))
        },
    );
}

/// An event of a text answer, the kind the typed fold reads in place: text parts (some escaped,
/// some thoughts, some signed), finish reasons, usage, model version and response id, now and
/// then with a field that sends it down the owned path instead.
fn text_event() -> BoxedStrategy<Value> {
    let text = prop_oneof![
        4 => one_of(&["Hello ", "world", "", "two words ", "é ü 😀"]),
        2 => one_of(&["line\nbreak", "a \"quote\"", "tab\there", "back\\slash"]),
        1 => string(),
    ];
    let part = object(vec![
        must("text", text.boxed()),
        opt("thought", boolean()),
        opt("thoughtSignature", one_of(&["c2ln", "b3RoZXI=", "es\\caped"])),
    ]);
    let candidate = object(vec![
        opt(
            "content",
            object(vec![
                opt("parts", array(part, 3)),
                opt("role", one_of(&["model", "user"])),
            ]),
        ),
        opt("finishReason", one_of(&["STOP", "MAX_TOKENS", "NEW_REASON"])),
        opt(
            "index",
            prop_oneof![8 => (0u32..3).prop_map(Value::from), 1 => candidate_index()].boxed(),
        ),
    ]);
    let usage = prop_oneof![
        4 => constant_json(json!({"promptTokenCount": 3, "totalTokenCount": 3})),
        2 => object(vec![
            opt("promptTokenCount", token_count()),
            opt("candidatesTokenCount", token_count()),
            opt("promptTokensDetails", array(object(vec![opt("modality", one_of(&["TEXT"])), opt("tokenCount", token_count())]), 2)),
        ]),
        1 => any_json(),
    ];
    prop_oneof![
        8 => object(vec![
            opt("candidates", array(candidate, 2)),
            opt("usageMetadata", usage.boxed()),
            opt("modelVersion", one_of(&["gemini-2.5-flash", "gemini-2.5-pro", "esc\\aped"])),
            opt("responseId", one_of(&["r1", "r2"])),
        ]),
        1 => gemini_response(),
    ]
    .boxed()
}

fn constant_json(v: Value) -> BoxedStrategy<Value> {
    Just(v).boxed()
}

#[test]
fn the_typed_fold_reads_text_events_in_place_with_the_same_result() {
    fuzz(
        "typed fold",
        &["some event unreadable", "folded"],
        vec(
            prop_oneof![4 => text_event().prop_map(|v| json_bytes(&v)), 1 => event_bytes()],
            0..10,
        ),
        |events| {
            let (mut fast, mut owned) = (TypedMerger::default(), TypedMerger::default());
            let mut unreadable = false;
            for e in &events {
                let (a, b) = (fast.push(e), owned.push_owned(e));
                prop_assert_eq!(a.is_ok(), b.is_ok(), "event {}", String::from_utf8_lossy(e));
                unreadable |= a.is_err();
            }
            prop_assert_eq!(fast.finish(), owned.finish());
            Ok(usize::from(!unreadable))
        },
    );
}

#[test]
fn the_hand_scan_of_a_text_event_agrees_with_serde() {
    let forms = prop_oneof![
        3 => text_event().prop_map(|v| (json_bytes(&v), true)),
        1 => text_event().prop_map(|v| (Raw(serde_json::to_vec_pretty(&v).unwrap()), true)),
        3 => (text_event(), edits()).prop_map(|(v, e)| (corrupted(&v, &e), false)),
        1 => event_bytes().prop_map(|b| (b, false)),
    ];
    fuzz(
        "text event scan",
        &["not a text event", "text event"],
        forms,
        |(event, well_formed)| {
            let want = text_event::read_reference(&event);
            prop_assert_eq!(&text_event::read(&event), &want, "event {:?}", event);
            if well_formed {
                // Written as serde_json writes (or pretty-prints) JSON: the scan reads it alone.
                let scanned = text_event::read_scanned(&event);
                prop_assert_eq!(&scanned, &want, "scanned {:?}", event);
            }
            Ok(usize::from(want.is_some()))
        },
    );
}

#[test]
fn a_stream_reads_each_event_in_place_as_a_fresh_parse_would() {
    fuzz(
        "event reader",
        &["some event unreadable", "all read"],
        vec(
            prop_oneof![4 => text_event().prop_map(|v| json_bytes(&v)), 1 => event_bytes()],
            0..12,
        ),
        |events| {
            let mut reader = EventReader::default();
            let mut unreadable = false;
            for e in &events {
                let fresh = serde_json::from_slice::<GenerateContentResponse>(e);
                match (reader.read(e), fresh) {
                    (Ok(got), Ok(want)) => prop_assert_eq!(got, &want, "event {}", String::from_utf8_lossy(e)),
                    (Err(_), Err(_)) => unreadable = true,
                    (got, want) => prop_assert!(
                        false,
                        "event {}: read {:?}, parsed {:?}",
                        String::from_utf8_lossy(e),
                        got,
                        want
                    ),
                }
            }
            Ok(usize::from(!unreadable))
        },
    );
}

#[test]
fn merged_stream_events_are_one_json_answer() {
    fuzz(
        "merger",
        &["unreadable merge", "merged", "translated"],
        vec(event_bytes(), 0..8),
        |events| {
            let mut m = ResponseMerger::default();
            for e in &events {
                let is_json = serde_json::from_slice::<Value>(e).is_ok();
                prop_assert_eq!(m.push(e).is_ok(), is_json);
            }
            let out = serde_json::to_vec(&m.finish())
                .map_err(|e| TestCaseError::fail(format!("merged answer cannot be printed: {e}")))?;
            let merged: Value = serde_json::from_slice(&out)
                .map_err(|e| TestCaseError::fail(format!("merged output is not JSON: {e}")))?;
            prop_assert!(merged.is_object());
            let candidates = merged.get("candidates").and_then(Value::as_array).map_or(0, Vec::len);
            prop_assert!(candidates <= 64);
            let Ok(resp) = serde_json::from_slice::<GenerateContentResponse>(&out) else {
                return Ok(0);
            };
            if response::to_openai(&resp, "model", 0).is_err() {
                return Ok(1);
            }
            Ok(2)
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 3. SSE framing
// ---------------------------------------------------------------------------------------------

/// Everything the parser yields for `input` fed in pieces cut at `cuts`, then `finish`.
fn parse_sse(input: &[u8], cuts: &[Index]) -> Vec<Raw> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    at.push(0);
    at.push(input.len());
    at.sort_unstable();
    at.dedup();
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for w in at.windows(2) {
        p.push(&input[w[0]..w[1]]);
        let _ = p.has_partial();
        out.extend(std::iter::from_fn(|| p.next_event()).map(|b| Raw(b.to_vec())));
    }
    out.extend(p.finish().map(|b| Raw(b.to_vec())));
    out.extend(std::iter::from_fn(|| p.next_event()).map(|b| Raw(b.to_vec())));
    out
}

#[derive(Debug, Clone)]
enum Line {
    Data(String),
    /// A comment or a field other than `data`.
    Other(String),
}

/// A value without CR or LF: JSON as Gemini sends it, or any text.
fn sse_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => gemini_response().prop_map(|v| render(&v)),
        2 => "[^\r\n]{0,40}",
        1 => Just(String::new()),
    ]
    .boxed()
}

fn sse_line() -> BoxedStrategy<Line> {
    prop_oneof![
        4 => sse_value().prop_map(Line::Data),
        1 => prop_oneof![
            "(: ?|event: ?|id: ?|retry: ?)[^\r\n]{0,20}",
            Just("event".to_string()),
            Just("dat: x".to_string()),
            Just("datax".to_string()),
        ]
        .prop_map(Line::Other),
    ]
    .boxed()
}

/// A well-formed stream: events of data lines (and other lines), each line ended by CRLF or LF,
/// each event by a blank line; maybe keep-alive comments between; maybe no blank line after
/// the last event. Returns the bytes and the events' data.
fn sse_stream() -> BoxedStrategy<(Raw, Vec<String>)> {
    let event = (vec((sse_line(), any::<bool>()), 1..4), any::<bool>(), any::<bool>());
    (vec(event, 0..6), any::<bool>())
        .prop_map(|(events, open_end)| {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            let n = events.len();
            for (i, (lines, crlf_blank, keep_alive)) in events.into_iter().enumerate() {
                if keep_alive {
                    bytes.extend_from_slice(b": keep-alive\n\n");
                }
                let mut data: Vec<String> = Vec::new();
                for (line, crlf) in lines {
                    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
                    match line {
                        Line::Data(v) => {
                            bytes.extend_from_slice(b"data: ");
                            bytes.extend_from_slice(v.as_bytes());
                            data.push(v);
                        }
                        Line::Other(o) => bytes.extend_from_slice(o.as_bytes()),
                    }
                    bytes.extend_from_slice(eol);
                }
                if i + 1 < n || !open_end {
                    bytes.extend_from_slice(if crlf_blank { b"\r\n" } else { b"\n" });
                }
                if !data.is_empty() {
                    expected.push(data.join("\n"));
                }
            }
            (Raw(bytes), expected)
        })
        .boxed()
}

#[test]
fn sse_events_do_not_depend_on_chunk_boundaries() {
    fuzz(
        "sse well-formed",
        &["events"],
        (sse_stream(), vec(any::<Index>(), 0..12)),
        |((input, expected), cuts)| {
            let expected: Vec<Raw> = expected.into_iter().map(|e| Raw(e.into_bytes())).collect();
            let whole = parse_sse(&input, &[]);
            prop_assert_eq!(&whole, &expected);
            let pieces = parse_sse(&input, &cuts);
            prop_assert_eq!(&pieces, &expected);
            // Byte by byte, as a slow network might deliver it (small inputs: the parser looks
            // for a line end from the start of its buffer on each call, so this is quadratic).
            if input.len() > 4096 {
                return Ok(0);
            }
            let mut p = SseParser::new();
            let mut one_by_one = Vec::new();
            for b in input.iter() {
                p.push(std::slice::from_ref(b));
                one_by_one.extend(std::iter::from_fn(|| p.next_event()).map(|b| Raw(b.to_vec())));
            }
            one_by_one.extend(p.finish().map(|b| Raw(b.to_vec())));
            prop_assert_eq!(&one_by_one, &expected);
            Ok(0)
        },
    );
}

#[test]
fn sse_parser_takes_any_bytes() {
    let input = prop_oneof![
        bytes(256),
        vec(
            select(
                &[
                    "data: ",
                    "data:",
                    "data",
                    ":",
                    " ",
                    "\r",
                    "\n",
                    "\r\n",
                    "{\"a\":1}",
                    "x",
                    "event: e"
                ][..]
            ),
            0..40
        )
        .prop_map(|parts| Raw(parts.concat().into_bytes())),
    ];
    fuzz(
        "sse any bytes",
        &["events"],
        (input, vec(any::<Index>(), 0..12)),
        |(input, cuts)| {
            // Lines only end at LF, so where the bytes are cut cannot matter.
            prop_assert_eq!(parse_sse(&input, &cuts), parse_sse(&input, &[]));
            Ok(0)
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Upstream error bodies
// ---------------------------------------------------------------------------------------------

const RETRY_DELAYS: &[&str] = &[
    "43s",
    "0s",
    "0.5s",
    "1.5s",
    "0.000000001s",
    "1e-400s",
    "1e30s",
    "1e308s",
    "1e309s",
    "-5s",
    "-0s",
    "-0.0s",
    "NaNs",
    "nans",
    "infs",
    "-infs",
    "infinitys",
    "inf s",
    "99999999999999999999s",
    "604800s",
    "604801s",
    "604799.999999999s",
    "18446744073709551615s",
    " 12s ",
    "12 s",
    "12",
    "s",
    "",
    "12ms",
    "1h",
    "0x10s",
    "1_000s",
    "+3s",
    "3.s",
    ".5s",
];

fn retry_delay_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(RETRY_DELAYS).prop_map(String::from),
        2 => any::<f64>().prop_map(|f| format!("{f}s")),
        1 => any::<f64>().prop_map(|f| format!("{f:e}s")),
        2 => (0u64..2_000_000).prop_map(|n| format!("{n}s")),
        1 => any::<u64>().prop_map(|n| format!("{n}s")),
        1 => odd_string(),
    ]
    .boxed()
}

const ERROR_REASONS: &[&str] = &[
    "API_KEY_INVALID",
    "API_KEY_EXPIRED",
    "API_KEY_SERVICE_BLOCKED",
    "CONSUMER_SUSPENDED",
    "SERVICE_DISABLED",
    "BILLING_DISABLED",
    "RATE_LIMIT_EXCEEDED",
    "API_KEY_",
    "",
];

const QUOTA_IDS: &[&str] = &[
    "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    "GenerateRequestsPerMinutePerProject",
    "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    "PerDay",
    "",
];

fn quota_value() -> BoxedStrategy<Value> {
    prop_oneof![
        12 => select(&["15", "1000000", "0.0", "-0", "", "zero"][..]).prop_map(|s| Value::String(s.into())),
        1 => select(&["0", " 0 "][..]).prop_map(|s| Value::String(s.into())),
        2 => select(&[0.0, -0.0, 1.0, 15.0][..]).prop_map(Value::from),
        1 => Just(json!(0)),
        2 => odd_number(),
        1 => any_json(),
    ]
    .boxed()
}

fn detail_type(name: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![
        6 => Just(Value::String(format!("type.googleapis.com/google.rpc.{name}"))),
        1 => Just(Value::String(format!("google.rpc.{name}"))),
        1 => Just(Value::String(name.to_string())),
    ]
    .boxed()
}

fn retry_info() -> BoxedStrategy<Value> {
    object(vec![
        must("@type", detail_type("RetryInfo")),
        opt(
            "retryDelay",
            prop_oneof![6 => retry_delay_text().prop_map(Value::String), 1 => odd_number()].boxed(),
        ),
    ])
}

/// Details as Google sends them, half of the time led by a `RetryInfo`.
fn error_details() -> BoxedStrategy<Value> {
    prop_oneof![
        array(error_detail(), 5),
        (retry_info(), vec(error_detail(), 0..3))
            .prop_map(|(first, rest)| { Value::Array(std::iter::once(first).chain(rest).collect()) }),
    ]
    .boxed()
}

fn error_detail() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => object(vec![
            must("@type", detail_type("ErrorInfo")),
            opt("reason", one_of(ERROR_REASONS)),
            opt("domain", one_of(&["googleapis.com"])),
            opt("metadata", any_json()),
        ]),
        3 => object(vec![
            must("@type", detail_type("QuotaFailure")),
            opt(
                "violations",
                array(
                    object(vec![
                        opt("quotaMetric", string()),
                        opt("quotaId", one_of(QUOTA_IDS)),
                        opt("quotaDimensions", object(vec![opt("model", string()), opt("location", one_of(&["global"]))])),
                        opt("quotaValue", quota_value()),
                    ]),
                    3,
                ),
            ),
        ]),
        5 => retry_info(),
        1 => object(vec![must("@type", detail_type("Help")), opt("links", any_json())]),
        1 => any_json(),
    ]
    .boxed()
}

fn error_body() -> BoxedStrategy<Value> {
    object(vec![must(
        "error",
        object(vec![
            opt(
                "code",
                prop_oneof![8 => select(&[400u16, 403, 429, 500][..]).prop_map(Value::from), 1 => odd_number()].boxed(),
            ),
            opt(
                "message",
                one_of(&[
                    "You exceeded your current quota",
                    "You exceeded your current quota",
                    "You exceeded your current quota",
                    "Resource has been exhausted (e.g. check quota).",
                    "Quota exceeded for metric: x, limit: 0, model: y",
                    "limit: 0",
                    "API key not valid. Please pass a valid API key.",
                    "Method doesn't allow unregistered callers",
                    "API key expired. Please renew the API key.",
                ]),
            ),
            opt(
                "status",
                one_of(&[
                    "RESOURCE_EXHAUSTED",
                    "INVALID_ARGUMENT",
                    "PERMISSION_DENIED",
                    "UNAVAILABLE",
                ]),
            ),
            opt("details", error_details()),
        ]),
    )])
}

fn status() -> BoxedStrategy<u16> {
    prop_oneof![
        4 => Just(429u16),
        3 => select(&[400u16, 401, 403, 404, 408, 500, 503, 504, 200, 0, 999][..]),
        1 => any::<u16>(),
    ]
    .boxed()
}

fn error_bytes() -> BoxedStrategy<Raw> {
    prop_oneof![
        6 => error_body().prop_map(|v| json_bytes(&v)),
        1 => (error_body(), edits()).prop_map(|(v, e)| corrupted(&v, &e)),
        1 => bytes(600),
        1 => (select(WORDS), 0usize..400).prop_map(|(w, n)| Raw(w.repeat(n).into_bytes())),
    ]
    .boxed()
}

/// Which way an upstream error went, as an index into `OUTCOMES`.
fn outcome_kind(o: &Outcome) -> usize {
    match o {
        Outcome::ClientError => 0,
        Outcome::Transient { .. } => 1,
        Outcome::InvalidKey { .. } | Outcome::PermissionDenied { .. } => 2,
        Outcome::ModelUnavailable { .. } => 3,
        Outcome::RateLimited { retry_after, .. } => match retry_after {
            RetryAfter::Unspecified => 4,
            RetryAfter::DailyReset => 5,
            RetryAfter::Delay(_) => 6,
        },
        _ => 7,
    }
}

const OUTCOMES: &[&str] = &[
    "client error",
    "transient",
    "key blamed",
    "model unavailable",
    "rate limited (default wait)",
    "rate limited (daily reset)",
    "rate limited (delay)",
    "other",
];

#[test]
fn error_bodies_classify_without_panics_and_bounded_waits() {
    fuzz("classify", OUTCOMES, (status(), error_bytes()), |(status, body)| {
        let (outcome, parsed) = classify(status, &body);
        prop_assert!(serde_json::to_vec(&parsed).is_ok());
        if let Outcome::RateLimited {
            retry_after: RetryAfter::Delay(d),
            ..
        } = &outcome
        {
            prop_assert!(*d <= MAX_WAIT, "waits {d:?}");
        }
        Ok(outcome_kind(&outcome))
    });
}

#[test]
fn retry_delays_are_read_and_bounded() {
    fuzz("retry delay", &["refused", "accepted"], retry_delay_text(), |text| {
        let parsed = parse_duration(&text);
        // A 429 whose only detail is this RetryInfo waits exactly that long, or the default.
        let body = json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": text}]}});
        let (outcome, _) = classify(429, body.to_string().as_bytes());
        let expected = parsed.map_or(RetryAfter::Unspecified, RetryAfter::Delay);
        match &outcome {
            Outcome::RateLimited { retry_after, .. } => prop_assert_eq!(retry_after, &expected),
            other => prop_assert!(false, "a 429 is rate limiting, got {other:?}"),
        }
        let Some(d) = parsed else { return Ok(0) };
        prop_assert!(d <= MAX_WAIT, "{text:?} waits {d:?}");
        // A plain non-negative number of seconds is read as such (up to the clamp).
        if let Some(secs) = text.trim().strip_suffix('s').and_then(|s| s.parse::<f64>().ok()) {
            let want = secs.min(MAX_WAIT.as_secs_f64());
            prop_assert!(
                (d.as_secs_f64() - want).abs() <= 1e-6 * want.max(1.0),
                "{text:?} → {d:?}"
            );
        }
        Ok(1)
    });
}

// ---------------------------------------------------------------------------------------------
// 5. Anthropic Messages and OpenAI Responses requests
// ---------------------------------------------------------------------------------------------

fn model_name() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => one_of(&["gemini-2.5-flash", "gemini-2.5-pro", "claude-sonnet-4-5", "gpt-4o", "models/gemini-2.5-flash", "gemini-2.5-flash-thinking"]),
        1 => string(),
    ]
    .boxed()
}

fn anthropic_source() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => object(vec![
            must("type", constant("base64")),
            must("media_type", one_of(&["image/png", "image/jpeg", "application/pdf", "text/plain", ""])),
            must("data", prop_oneof!["[A-Za-z0-9+/=]{0,24}".prop_map(Value::String), string()].boxed()),
        ]),
        2 => object(vec![must("type", constant("url")), must("url", url())]),
        1 => object(vec![must("type", constant("text")), must("data", string())]),
        1 => object(vec![must("type", one_of(&["file", "content"])), opt("file_id", string())]),
    ]
    .boxed()
}

fn anthropic_block() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        8 => object(vec![must("type", constant("text")), must("text", string()), opt("cache_control", any_json())]),
        3 => object(vec![must("type", constant("image")), must("source", anthropic_source())]),
        2 => object(vec![must("type", constant("document")), must("source", anthropic_source())]),
        4 => object(vec![
            must("type", constant("tool_use")),
            must("id", call_id()),
            must("name", one_of(&["get_weather", "f", ""])),
            opt("input", any_json()),
        ]),
        2 => object(vec![
            must("type", constant("thinking")),
            opt("thinking", string()),
            opt("signature", prop_oneof![string(), Just(Value::Null)].boxed()),
        ]),
        1 => object(vec![must("type", constant("redacted_thinking")), opt("data", string())]),
        1 => object(vec![must("type", one_of(&["server_tool_use", "web_search_tool_result", "citation", ""]))]),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        object(vec![
            must("type", constant("tool_result")),
            must("tool_use_id", call_id()),
            opt(
                "content",
                prop_oneof![string(), vec(inner, 0..4).prop_map(Value::Array)].boxed(),
            ),
            opt("is_error", boolean()),
        ])
    })
    .boxed()
}

fn anthropic_content() -> BoxedStrategy<Value> {
    prop_oneof![2 => string(), 5 => array(anthropic_block(), 5)].boxed()
}

fn anthropic_tool() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => object(vec![
            must("name", one_of(&["get_weather", "f", ""])),
            opt("description", string()),
            opt("input_schema", schema()),
        ]),
        1 => object(vec![
            must("type", one_of(&["web_search_20250305", "code_execution_20250522", "bash_20250124", "custom"])),
            opt("name", one_of(&["web_search", "bash", "f"])),
            opt("max_uses", count()),
        ]),
    ]
    .boxed()
}

fn anthropic_request() -> BoxedStrategy<Value> {
    object(vec![
        must("model", model_name()),
        must("max_tokens", count()),
        must(
            "messages",
            array(
                object(vec![
                    must(
                        "role",
                        one_of(&["user", "user", "assistant", "assistant", "system", ""]),
                    ),
                    must("content", anthropic_content()),
                ]),
                6,
            ),
        ),
        opt("system", anthropic_content()),
        opt("stop_sequences", array(string(), 3)),
        opt("temperature", sampling()),
        opt("top_p", sampling()),
        opt("top_k", count()),
        opt("stream", boolean()),
        opt("tools", array(anthropic_tool(), 4)),
        opt(
            "tool_choice",
            object(vec![
                must("type", one_of(&["auto", "any", "tool", "none", ""])),
                opt("name", one_of(&["get_weather", "f", "missing"])),
                opt("disable_parallel_tool_use", boolean()),
            ]),
        ),
        opt(
            "thinking",
            object(vec![
                must("type", one_of(&["enabled", "disabled", "adaptive", ""])),
                opt("budget_tokens", integer()),
            ]),
        ),
        opt("output_config", any_json()),
        opt("metadata", any_json()),
    ])
}

/// A Messages request through everything the gateway does with it before it goes upstream:
/// the media scan and inlining, the translation, and `count_tokens`.
fn check_anthropic(text: &[u8]) -> Result<usize, TestCaseError> {
    use gemini_balance::gateway::translate::anthropic;
    if let Ok(count) = serde_json::from_slice::<anthropic::CountTokensRequest>(text) {
        let _ = anthropic::count_tokens_body(&count);
    }
    let Ok(mut req) = serde_json::from_slice::<anthropic::MessagesRequest>(text) else {
        return Ok(0);
    };
    let urls = anthropic::remote_media(&req.messages);
    let fetched = urls
        .iter()
        .enumerate()
        .map(|(i, _)| format!("data:image/png;base64,{}", "QUJD".repeat(i % 3)))
        .collect();
    anthropic::inline_media(&mut req.messages, fetched);
    let Ok((model, body)) = anthropic::to_gemini(&req) else {
        return Ok(1);
    };
    prop_assert!(!model.is_empty(), "empty model id");
    prop_assert!(serde_json::to_vec(&body).is_ok());
    Ok(2)
}

#[test]
fn anthropic_requests_translate_or_fail_cleanly() {
    let input = anthropic_request().prop_map(|v| json_bytes(&v));
    fuzz("anthropic request", CHAT_STAGES, input, |b| check_anthropic(&b));
}

#[test]
fn anthropic_requests_from_any_json_or_bytes() {
    let input = prop_oneof![
        3 => (anthropic_request(), edits()).prop_map(|(v, e)| corrupted(&v, &e)),
        2 => any_json().prop_map(|v| json_bytes(&v)),
        1 => bytes(512),
    ];
    fuzz("anthropic request, any input", CHAT_STAGES, input, |b| {
        check_anthropic(&b)
    });
}

fn responses_part() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => object(vec![
            must("type", one_of(&["input_text", "output_text", "text", "summary_text", "reasoning_text", "refusal"])),
            must("text", string()),
            opt("annotations", array(any_json(), 2)),
        ]),
        3 => object(vec![
            must("type", constant("input_image")),
            opt("image_url", url()),
            opt("file_id", string()),
            opt("detail", one_of(&["low", "high", "auto"])),
        ]),
        2 => object(vec![
            must("type", constant("input_file")),
            opt("file_data", url()),
            opt("file_url", url()),
            opt("filename", string()),
        ]),
        1 => object(vec![must("type", one_of(&["input_audio", "computer_screenshot", ""]))]),
    ]
    .boxed()
}

fn responses_item() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => object(vec![
            opt("type", constant("message")),
            must("role", one_of(&["user", "assistant", "system", "developer", "tool", ""])),
            must("content", prop_oneof![string(), array(responses_part(), 4)].boxed()),
            opt("id", call_id()),
            opt("status", one_of(&["completed", "in_progress"])),
        ]),
        3 => object(vec![
            must("type", one_of(&["function_call", "custom_tool_call"])),
            must("call_id", call_id()),
            must("name", one_of(&["get_weather", "f", ""])),
            opt("arguments", tool_arguments()),
            opt("input", string()),
        ]),
        3 => object(vec![
            must("type", one_of(&["function_call_output", "custom_tool_call_output"])),
            must("call_id", call_id()),
            must("output", prop_oneof![string(), array(responses_part(), 3)].boxed()),
        ]),
        2 => object(vec![
            must("type", constant("reasoning")),
            opt("id", call_id()),
            opt("summary", array(responses_part(), 2)),
            opt("content", array(responses_part(), 2)),
            opt("encrypted_content", string()),
        ]),
        1 => object(vec![must("type", one_of(&["item_reference", "web_search_call", "mcp_call", ""])), opt("id", string())]),
    ]
    .boxed()
}

fn responses_tool() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => object(vec![
            must("type", constant("function")),
            must("name", one_of(&["get_weather", "f", ""])),
            opt("description", string()),
            opt("parameters", schema()),
            opt("strict", boolean()),
        ]),
        2 => object(vec![
            must("type", constant("custom")),
            must("name", one_of(&["apply_patch", "f"])),
            opt(
                "format",
                object(vec![must("type", one_of(&["grammar", "text"])), opt("syntax", one_of(&["lark", "regex"])), opt("definition", string())]),
            ),
        ]),
        2 => object(vec![must(
            "type",
            one_of(&["web_search", "web_search_preview", "code_interpreter", "file_search", "image_generation", ""]),
        )]),
    ]
    .boxed()
}

fn responses_request() -> BoxedStrategy<Value> {
    object(vec![
        must("model", model_name()),
        opt(
            "input",
            prop_oneof![2 => string(), 5 => array(responses_item(), 6)].boxed(),
        ),
        opt("instructions", string()),
        opt("tools", array(responses_tool(), 4)),
        opt(
            "tool_choice",
            prop_oneof![
                one_of(&["none", "auto", "required"]),
                object(vec![
                    must("type", one_of(&["function", "custom", "allowed_tools"])),
                    opt("name", one_of(&["get_weather", "f"]))
                ]),
            ]
            .boxed(),
        ),
        opt("parallel_tool_calls", boolean()),
        opt(
            "text",
            object(vec![opt(
                "format",
                object(vec![
                    must("type", one_of(&["text", "json_object", "json_schema"])),
                    opt("name", string()),
                    opt("schema", schema()),
                    opt("strict", boolean()),
                ]),
            )]),
        ),
        opt(
            "reasoning",
            object(vec![
                opt("effort", one_of(&["minimal", "low", "medium", "high", "none", ""])),
                opt("summary", one_of(&["auto", "detailed", "concise"])),
            ]),
        ),
        opt("max_output_tokens", count()),
        opt("temperature", sampling()),
        opt("top_p", sampling()),
        opt("stream", boolean()),
        opt("store", boolean()),
        opt("metadata", any_json()),
        opt("include", array(string(), 3)),
        opt("previous_response_id", string()),
        opt("user", string()),
    ])
}

/// A Responses request through the media scan and inlining and the translation, after a stored
/// history that is itself arbitrary items.
fn check_responses(text: &[u8], history: &[Value]) -> Result<usize, TestCaseError> {
    use gemini_balance::gateway::translate::responses;
    let Ok(req) = serde_json::from_slice::<responses::ResponsesRequest>(text) else {
        return Ok(0);
    };
    let _ = req.stores();
    let mut input = req.input_items();
    let urls = responses::remote_media(&input);
    let fetched = urls
        .iter()
        .enumerate()
        .map(|(i, _)| format!("data:image/png;base64,{}", "QUJD".repeat(i % 3)))
        .collect();
    responses::inline_media(&mut input, fetched);
    let Ok((body, _ctx)) = responses::to_gemini(&req, "gemini-2.5-flash", history, &input) else {
        return Ok(1);
    };
    prop_assert!(serde_json::to_vec(&body).is_ok());
    Ok(2)
}

fn history() -> BoxedStrategy<Vec<Value>> {
    prop_oneof![3 => Just(Vec::new()), 2 => vec(responses_item(), 0..4), 1 => vec(any_json(), 0..3)].boxed()
}

#[test]
fn responses_requests_translate_or_fail_cleanly() {
    let input = (responses_request().prop_map(|v| json_bytes(&v)), history());
    fuzz("responses request", CHAT_STAGES, input, |(b, h)| {
        check_responses(&b, &h)
    });
}

#[test]
fn responses_requests_from_any_json_or_bytes() {
    let input = prop_oneof![
        3 => (responses_request(), edits()).prop_map(|(v, e)| corrupted(&v, &e)),
        2 => any_json().prop_map(|v| json_bytes(&v)),
        1 => bytes(512),
    ];
    fuzz("responses request, any input", CHAT_STAGES, input, |b| {
        check_responses(&b, &[])
    });
}
