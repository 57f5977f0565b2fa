//! Anthropic Messages API ⇄ Gemini: the request (`system`, `messages` with text, image,
//! document, tool_use, tool_result and thinking blocks, `tools`, `tool_choice`, `thinking`), the
//! whole response, and the stream encoder (`message_start` … `message_stop`).
//!
//! Gemini's `thoughtSignature` rides in a `thinking` block's `signature`: every signed part is
//! preceded by a thinking block carrying its signature, and a thinking block sent back attaches
//! its signature to the next part of the same turn. A function call sent back without one gets
//! Google's documented placeholder on Gemini 3 models, which reject unsigned calls.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{clean_schema, new_id, Frame, OneAnswer, StreamEncoder};
pub use super::{MAX_OUTPUT_TOKENS, PLACEHOLDER_SIGNATURE};
use crate::gateway::error::GatewayError;
use crate::gateway::gemini::{
    Blob, Content, FinishReason, FunctionCall, FunctionResponse, GenerateContentRequest, GenerateContentResponse,
    GenerationConfig, Part, UsageMetadata,
};

#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub system: Option<System>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub thinking: Option<Thinking>,
    #[serde(default)]
    pub output_config: Option<Value>,
    /// Everything else (`metadata`, `context_management`, `service_tier`, …): accepted, ignored.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// `count_tokens` takes the same fields without `max_tokens`.
#[derive(Debug, Clone, Deserialize)]
pub struct CountTokensRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub system: Option<System>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: MessageContent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<ToolResultContent>,
        #[serde(default)]
        is_error: bool,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    /// Blocks Gemini has no use for (server tool results, citations…): accepted and skipped.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    Text {
        data: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tool {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Server tools carry a versioned type, e.g. `web_search_20250305`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub budget_tokens: Option<i64>,
}

/// The http(s) URLs of `image` and `document` blocks, with their field paths, in order.
pub fn remote_media(messages: &[Message]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        if let MessageContent::Blocks(blocks) = &msg.content {
            for (j, block) in blocks.iter().enumerate() {
                if let Block::Image {
                    source: Source::Url { url },
                }
                | Block::Document {
                    source: Source::Url { url },
                } = block
                {
                    if url.starts_with("http://") || url.starts_with("https://") {
                        out.push((url.clone(), format!("messages.{i}.content.{j}.source.url")));
                    }
                }
            }
        }
    }
    out
}

/// Replaces the URL sources [`remote_media`] listed with the fetched data URLs, in order.
pub fn inline_media(messages: &mut [Message], data_urls: Vec<String>) {
    let mut fetched = data_urls.into_iter();
    for msg in messages.iter_mut() {
        if let MessageContent::Blocks(blocks) = &mut msg.content {
            for block in blocks.iter_mut() {
                if let Block::Image { source } | Block::Document { source } = block {
                    let remote = matches!(source, Source::Url { url } if url.starts_with("http://") || url.starts_with("https://"));
                    if !remote {
                        continue;
                    }
                    let Some(data_url) = fetched.next() else { return };
                    let parsed = data_url
                        .strip_prefix("data:")
                        .and_then(|rest| rest.split_once(";base64,"))
                        .map(|(mime, data)| (mime.to_string(), data.to_string()));
                    if let Some((media_type, data)) = parsed {
                        *source = Source::Base64 { media_type, data };
                    }
                }
            }
        }
    }
}

/// Translates a Messages request (`max_tokens` given) into the model name and the Gemini body.
pub fn to_gemini(req: &MessagesRequest) -> Result<(String, GenerateContentRequest), GatewayError> {
    let model = super::request::model_id(&req.model)?;
    super::log_ignored("messages", req.extra.keys().map(String::as_str));
    let mut body = contents(req.system.as_ref(), &req.messages)?;
    body.tools = tools(req.tools.as_deref())?;
    if let Some(choice) = &req.tool_choice {
        body.tool_config = tool_config(choice)?;
    }
    let mut config = GenerationConfig {
        max_output_tokens: Some(req.max_tokens.clamp(1, MAX_OUTPUT_TOKENS)),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop_sequences: req
            .stop_sequences
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| s.iter().take(5).cloned().collect()),
        ..Default::default()
    };
    config.thinking_config = thinking_config(req);
    body.generation_config = Some(config);
    Ok((model, body))
}

/// The body of Gemini's `countTokens` for a `count_tokens` request.
pub fn count_tokens_body(req: &CountTokensRequest) -> Result<(String, Value), GatewayError> {
    let model = super::request::model_id(&req.model)?;
    let mut body = contents(req.system.as_ref(), &req.messages)?;
    body.tools = tools(req.tools.as_deref())?;
    let mut inner = serde_json::to_value(&body).map_err(|e| GatewayError::invalid(e.to_string(), None))?;
    inner["model"] = json!(format!("models/{model}"));
    Ok((model, json!({ "generateContentRequest": inner })))
}

fn thinking_config(req: &MessagesRequest) -> Option<Value> {
    let effort = req
        .output_config
        .as_ref()
        .and_then(|c| c.get("effort"))
        .and_then(Value::as_str);
    match (req.thinking.as_ref().map(|t| t.kind.as_str()), effort) {
        (Some("enabled"), _) => {
            let budget = req.thinking.as_ref().and_then(|t| t.budget_tokens).unwrap_or(-1);
            Some(json!({"includeThoughts": true, "thinkingBudget": budget.clamp(-1, 32_768)}))
        }
        (_, Some(effort)) => {
            let budget = match effort {
                "low" => 1024,
                "medium" => 8192,
                "high" | "max" => 24_576,
                _ => -1,
            };
            Some(json!({"includeThoughts": true, "thinkingBudget": budget}))
        }
        (Some("adaptive"), None) => Some(json!({"includeThoughts": true, "thinkingBudget": -1})),
        _ => None,
    }
}

fn text_of(content: &Option<ToolResultContent>) -> (String, Vec<Part>) {
    match content {
        None => (String::new(), Vec::new()),
        Some(ToolResultContent::Text(t)) => (t.clone(), Vec::new()),
        Some(ToolResultContent::Blocks(blocks)) => {
            let mut text = String::new();
            let mut media = Vec::new();
            for b in blocks {
                match b {
                    Block::Text { text: t } => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(t);
                    }
                    Block::Image { source } | Block::Document { source } => {
                        if let Some(p) = source_part(source) {
                            media.push(p);
                        }
                    }
                    _ => {}
                }
            }
            (text, media)
        }
    }
}

fn source_part(source: &Source) -> Option<Part> {
    match source {
        Source::Base64 { media_type, data } => Some(Part {
            inline_data: Some(Blob {
                mime_type: media_type.clone(),
                data: data.clone(),
            }),
            ..Default::default()
        }),
        Source::Url { url } => Some(Part {
            file_data: Some(crate::gateway::gemini::FileData {
                mime_type: None,
                file_uri: url.clone(),
            }),
            ..Default::default()
        }),
        Source::Text { data } => Some(Part::text(data.clone())),
        Source::Other => None,
    }
}

fn contents(system: Option<&System>, messages: &[Message]) -> Result<GenerateContentRequest, GatewayError> {
    let mut system_parts: Vec<Part> = match system {
        None => Vec::new(),
        Some(System::Text(t)) if t.is_empty() => Vec::new(),
        Some(System::Text(t)) => vec![Part::text(t.clone())],
        Some(System::Blocks(blocks)) => blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text { text } => Some(Part::text(text.clone())),
                _ => None,
            })
            .collect(),
    };
    let mut names: HashMap<String, String> = HashMap::new();
    let mut turns: Vec<Content> = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let role = match msg.role.as_str() {
            "user" => "user",
            "assistant" => "model",
            "system" => {
                // A system message anywhere folds into the system instruction.
                match &msg.content {
                    MessageContent::Text(t) => system_parts.push(Part::text(t.clone())),
                    MessageContent::Blocks(blocks) => system_parts.extend(blocks.iter().filter_map(|b| match b {
                        Block::Text { text } => Some(Part::text(text.clone())),
                        _ => None,
                    })),
                }
                continue;
            }
            other => {
                return Err(GatewayError::invalid(
                    format!("messages.{i}.role: unexpected role {other:?}; expected user or assistant"),
                    Some(&format!("messages.{i}.role")),
                ))
            }
        };
        let mut parts: Vec<Part> = Vec::new();
        let mut extra_after: Vec<Part> = Vec::new();
        let mut pending_signature: Option<String> = None;
        let blocks: Vec<Block> = match &msg.content {
            MessageContent::Text(t) => vec![Block::Text { text: t.clone() }],
            MessageContent::Blocks(b) => b.clone(),
        };
        for block in blocks {
            let mut part = match block {
                Block::Text { text } => {
                    if text.is_empty() {
                        continue;
                    }
                    Part::text(text)
                }
                Block::Image { source } | Block::Document { source } => match source_part(&source) {
                    Some(p) => p,
                    None => continue,
                },
                Block::ToolUse { id, name, input } => {
                    names.insert(id.clone(), name.clone());
                    let args = if input.is_object() { input } else { json!({}) };
                    Part {
                        function_call: Some(FunctionCall { id: None, name, args }),
                        ..Default::default()
                    }
                }
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    let Some(name) = names.get(&tool_use_id).cloned() else {
                        return Err(GatewayError::invalid(
                            format!("messages.{i}: tool_result refers to unknown tool_use_id {tool_use_id:?}"),
                            Some(&format!("messages.{i}.content")),
                        ));
                    };
                    let (text, media) = text_of(&content);
                    extra_after.extend(media);
                    let response = if is_error {
                        json!({ "error": text })
                    } else {
                        match serde_json::from_str::<Value>(&text) {
                            Ok(Value::Object(map)) => Value::Object(map),
                            _ => json!({ "result": text }),
                        }
                    };
                    Part {
                        function_response: Some(FunctionResponse {
                            id: None,
                            name,
                            response,
                        }),
                        ..Default::default()
                    }
                }
                Block::Thinking { signature, .. } => {
                    pending_signature = signature.filter(|s| !s.is_empty());
                    continue;
                }
                Block::RedactedThinking { .. } | Block::Other => continue,
            };
            if role == "model" {
                part.thought_signature = pending_signature.take();
            }
            parts.push(part);
        }
        parts.extend(extra_after);
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => turns.push(Content {
                role: Some(role.to_string()),
                parts,
            }),
        }
    }
    if turns.is_empty() {
        return Err(GatewayError::invalid(
            "messages: at least one user or assistant message with content is required",
            Some("messages"),
        ));
    }
    Ok(GenerateContentRequest {
        contents: turns,
        system_instruction: (!system_parts.is_empty()).then_some(Content {
            role: None,
            parts: system_parts,
        }),
        ..Default::default()
    })
}

fn tools(tools: Option<&[Tool]>) -> Result<Option<Vec<Value>>, GatewayError> {
    let Some(tools) = tools.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut declarations = Vec::new();
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        match (&tool.input_schema, tool.kind.as_deref()) {
            (Some(schema), _) => {
                let mut d = json!({"name": tool.name, "parametersJsonSchema": clean_schema(schema.clone())});
                if let Some(desc) = &tool.description {
                    d["description"] = json!(desc);
                }
                declarations.push(d);
            }
            (None, Some(kind)) if kind.starts_with("web_search") => out.push(json!({"googleSearch": {}})),
            (None, kind) => {
                return Err(GatewayError::invalid(
                    format!(
                        "tools.{i}: the tool {:?} ({}) has no Gemini equivalent; give it an input_schema",
                        tool.name,
                        kind.unwrap_or("no type")
                    ),
                    Some(&format!("tools.{i}")),
                ))
            }
        }
    }
    if !declarations.is_empty() {
        out.insert(0, json!({ "functionDeclarations": declarations }));
    }
    Ok(Some(out))
}

fn tool_config(choice: &ToolChoice) -> Result<Option<Value>, GatewayError> {
    let config = match (choice.kind.as_str(), &choice.name) {
        ("auto", _) => json!({"mode": "AUTO"}),
        ("any", _) => json!({"mode": "ANY"}),
        ("none", _) => json!({"mode": "NONE"}),
        ("tool", Some(name)) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        (other, _) => {
            return Err(GatewayError::invalid(
                format!("tool_choice.type must be auto, any, tool (with a name) or none; got {other:?}"),
                Some("tool_choice"),
            ))
        }
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

/// Anthropic's usage from Gemini's: thoughts count as output, cached prompt tokens apart.
pub fn usage_json(u: Option<&UsageMetadata>) -> Value {
    let u = u.cloned().unwrap_or_default();
    json!({
        "input_tokens": u.prompt_token_count.saturating_sub(u.cached_content_token_count),
        "output_tokens": u.candidates_token_count.saturating_add(u.thoughts_token_count),
        "cache_read_input_tokens": u.cached_content_token_count,
        "cache_creation_input_tokens": 0,
    })
}

fn stop_reason(reason: Option<FinishReason>, tool_use: bool, blocked: bool) -> &'static str {
    match reason {
        _ if blocked => "refusal",
        Some(FinishReason::MaxTokens) => "max_tokens",
        Some(
            FinishReason::Safety
            | FinishReason::Recitation
            | FinishReason::Blocklist
            | FinishReason::ProhibitedContent
            | FinishReason::Spii
            | FinishReason::ImageSafety,
        ) => "refusal",
        _ if tool_use => "tool_use",
        _ => "end_turn",
    }
}

fn tool_use_id(call: &FunctionCall) -> String {
    call.id
        .clone()
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        .unwrap_or_else(|| new_id("toolu_"))
}

/// A whole Gemini answer as an Anthropic `message`, named as the client asked.
pub fn to_anthropic(resp: &GenerateContentResponse, model: &str) -> Value {
    let mut content: Vec<Value> = Vec::new();
    let candidate = resp.candidates.first();
    let parts = candidate
        .and_then(|c| c.content.as_ref())
        .map(|c| c.parts.as_slice())
        .unwrap_or_default();
    let mut tool_use = false;
    for part in parts {
        if part.is_thought() {
            content.push(
                json!({"type": "thinking", "thinking": part.text.clone().unwrap_or_default(),
                "signature": part.thought_signature.clone().unwrap_or_default()}),
            );
            continue;
        }
        if let Some(sig) = &part.thought_signature {
            content.push(json!({"type": "thinking", "thinking": "", "signature": sig}));
        }
        if let Some(call) = &part.function_call {
            tool_use = true;
            let input = if call.args.is_object() {
                call.args.clone()
            } else {
                json!({})
            };
            content.push(json!({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": input}));
        } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
            match content.last_mut() {
                Some(last) if last["type"] == "text" => {
                    let joined = format!("{}{text}", last["text"].as_str().unwrap_or(""));
                    last["text"] = json!(joined);
                }
                _ => content.push(json!({"type": "text", "text": text})),
            }
        }
    }
    let blocked = resp.candidates.is_empty() && resp.prompt_feedback.as_ref().is_some_and(|f| f.block_reason.is_some());
    json!({
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(candidate.and_then(|c| c.finish_reason), tool_use, blocked),
        "stop_sequence": null,
        "usage": usage_json(resp.usage_metadata.as_ref()),
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    None,
    Text,
    Thinking,
}

/// Gemini stream events → Anthropic's named events, one block at a time.
#[derive(Debug)]
pub struct AnthropicEncoder {
    id: String,
    model: String,
    started: bool,
    index: usize,
    open: Open,
    tool_use: bool,
    answer: OneAnswer,
}

fn frame(event: &'static str, data: Value) -> Frame {
    Frame {
        event: Some(event),
        data: data.to_string(),
    }
}

impl AnthropicEncoder {
    pub fn new(model: &str) -> Self {
        AnthropicEncoder {
            id: new_id("msg_"),
            model: model.to_string(),
            started: false,
            index: 0,
            open: Open::None,
            tool_use: false,
            answer: OneAnswer::default(),
        }
    }

    fn start(&mut self, out: &mut Vec<Frame>) {
        if self.started {
            return;
        }
        self.started = true;
        let mut usage = usage_json(self.answer.usage.as_ref());
        usage["output_tokens"] = json!(0);
        out.push(frame(
            "message_start",
            json!({"type": "message_start", "message": {"id": self.id, "type": "message", "role": "assistant",
                "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage}}),
        ));
    }

    fn close(&mut self, out: &mut Vec<Frame>) {
        if self.open != Open::None {
            out.push(frame(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            ));
            self.index += 1;
            self.open = Open::None;
        }
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<Frame>) {
        if self.open == kind {
            return;
        }
        self.close(out);
        out.push(frame(
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        ));
        self.open = kind;
    }

    fn delta(&self, delta: Value) -> Frame {
        frame(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
        )
    }

    fn signature_block(&mut self, sig: &str, out: &mut Vec<Frame>) {
        self.open_block(Open::Thinking, json!({"type": "thinking", "thinking": ""}), out);
        out.push(self.delta(json!({"type": "signature_delta", "signature": sig})));
        self.close(out);
    }

    fn part(&mut self, part: &Part, out: &mut Vec<Frame>) {
        if part.is_thought() {
            self.open_block(Open::Thinking, json!({"type": "thinking", "thinking": ""}), out);
            if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                out.push(self.delta(json!({"type": "thinking_delta", "thinking": text})));
            }
            if let Some(sig) = &part.thought_signature {
                out.push(self.delta(json!({"type": "signature_delta", "signature": sig})));
                self.close(out);
            }
            return;
        }
        if let Some(sig) = &part.thought_signature {
            self.close(out);
            self.signature_block(sig, out);
        }
        if let Some(call) = &part.function_call {
            self.close(out);
            self.tool_use = true;
            out.push(frame(
                "content_block_start",
                json!({"type": "content_block_start", "index": self.index,
                    "content_block": {"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {}}}),
            ));
            let args = if call.args.is_object() {
                call.args.to_string()
            } else {
                "{}".to_string()
            };
            out.push(self.delta(json!({"type": "input_json_delta", "partial_json": args})));
            out.push(frame(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            ));
            self.index += 1;
        } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
            self.open_block(Open::Text, json!({"type": "text", "text": ""}), out);
            out.push(self.delta(json!({"type": "text_delta", "text": text})));
        }
    }
}

impl StreamEncoder for AnthropicEncoder {
    fn event(&mut self, event: &GenerateContentResponse, out: &mut Vec<Frame>) {
        let parts = self.answer.observe(event);
        self.start(out);
        for part in parts {
            self.part(part, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), String> {
        if self.answer.finish.is_none() {
            return Err("the Gemini stream ended before a finish reason".into());
        }
        self.start(out);
        self.close(out);
        let usage = usage_json(self.answer.usage.as_ref());
        out.push(frame(
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.answer.finish, self.tool_use, self.answer.blocked), "stop_sequence": null},
                "usage": usage}),
        ));
        out.push(frame("message_stop", json!({"type": "message_stop"})));
        Ok(())
    }

    fn fault(&mut self, code: &'static str, message: &str) -> Frame {
        let kind = match code {
            "upstream_timeout" => "timeout_error",
            "upstream_stream_error" => "overloaded_error",
            _ => "api_error",
        };
        frame(
            "error",
            json!({"type": "error", "error": {"type": kind, "message": message}}),
        )
    }

    fn total_tokens(&self) -> Option<u64> {
        self.answer.total_tokens()
    }
}

/// Anthropic's error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 413 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// Anthropic's error body.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
}

impl ErrorBody {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ErrorBody {
            kind: "error",
            error: ErrorDetail {
                kind: error_type(status),
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> MessagesRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn claude_code_style_request_maps_to_gemini() {
        let r = req(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 128000, "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "u"}, "context_management": {"edits": []},
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "tools": [{"name": "Read", "description": "Read a file", "defer_loading": false,
            "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                "properties": {"path": {"type": "string"}}, "required": ["path"], "additionalProperties": false}}],
        "tool_choice": {"type": "auto"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "read a.txt", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should read it", "signature": "c2lnLTE="},
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"path": "a.txt"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "hello"}]},
                {"type": "text", "text": "and?"}]},
            {"role": "system", "content": "Be brief."}
        ]}));
        let (model, body) = to_gemini(&r).unwrap();
        assert_eq!(model, "claude-sonnet-4-5");
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v["systemInstruction"]["parts"],
            json!([{"text": "You are Claude Code."}, {"text": "Be brief."}])
        );
        assert_eq!(v["generationConfig"]["maxOutputTokens"], 65536);
        assert_eq!(
            v["generationConfig"]["thinkingConfig"],
            json!({"includeThoughts": true, "thinkingBudget": 4000})
        );
        let decl = &v["tools"][0]["functionDeclarations"][0];
        assert_eq!(decl["name"], "Read");
        assert!(decl["parametersJsonSchema"].get("$schema").is_none());
        assert_eq!(v["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
        assert_eq!(
            v["contents"][1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "Read", "args": {"path": "a.txt"}}, "thoughtSignature": "c2lnLTE="}]})
        );
        assert_eq!(
            v["contents"][2]["parts"],
            json!([{"functionResponse": {"name": "Read", "response": {"result": "hello"}}}, {"text": "and?"}])
        );
    }

    #[test]
    fn unsigned_calls_get_the_placeholder_on_gemini_3_only() {
        let msgs = json!([{"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok", "is_error": true}]}]);
        let (model, mut b3) = to_gemini(&req(
            json!({"model": "gemini-3-pro-preview", "max_tokens": 10, "messages": msgs}),
        ))
        .unwrap();
        crate::gateway::translate::sign_calls(&mut b3, &model);
        assert_eq!(
            b3.contents[1].parts[0].thought_signature.as_deref(),
            Some(PLACEHOLDER_SIGNATURE)
        );
        assert_eq!(
            b3.contents[2].parts[0].function_response.as_ref().unwrap().response,
            json!({"error": "ok"})
        );
        let (model, mut b25) = to_gemini(&req(
            json!({"model": "gemini-2.5-pro", "max_tokens": 10, "messages": msgs}),
        ))
        .unwrap();
        crate::gateway::translate::sign_calls(&mut b25, &model);
        assert!(b25.contents[1].parts[0].thought_signature.is_none());
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e = to_gemini(&req(json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}]})))
        .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("nope"));
        assert!(
            serde_json::from_value::<MessagesRequest>(json!({"model": "m", "messages": []})).is_err(),
            "max_tokens is required"
        );
        let e = to_gemini(&req(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "bash_20250124", "name": "bash"}]}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("bash"));
    }

    #[test]
    fn whole_answer_with_thinking_and_tool_use() {
        let resp: GenerateContentResponse = serde_json::from_value(json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let me look.", "thought": true},
            {"text": "Reading "}, {"text": "now."},
            {"functionCall": {"name": "Read", "args": {"path": "a"}}, "thoughtSignature": "U0lH"}]},
            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3, "cachedContentTokenCount": 4}}))
        .unwrap();
        let m = to_anthropic(&resp, "claude-x");
        assert_eq!(m["model"], "claude-x");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["content"][0],
            json!({"type": "thinking", "thinking": "Let me look.", "signature": ""})
        );
        assert_eq!(m["content"][1], json!({"type": "text", "text": "Reading now."}));
        assert_eq!(
            m["content"][2],
            json!({"type": "thinking", "thinking": "", "signature": "U0lH"})
        );
        assert_eq!(m["content"][3]["type"], "tool_use");
        assert!(m["content"][3]["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 6, "output_tokens": 8, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0})
        );
    }

    #[test]
    fn stream_events_follow_anthropics_sequence() {
        let mut enc = AnthropicEncoder::new("claude-x");
        let mut out = Vec::new();
        for ev in [
            json!({"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": " there"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "U0lH"}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}}),
        ] {
            enc.event(&serde_json::from_value(ev).unwrap(), &mut out);
        }
        enc.finish(&mut out).unwrap();
        let names: Vec<&str> = out.iter().map(|f| f.event.unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta", // thinking 0
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta", // text 1
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop", // signature 2
                "content_block_start",
                "content_block_delta",
                "content_block_stop", // tool_use 3
                "message_delta",
                "message_stop"
            ]
        );
        let data: Vec<Value> = out.iter().map(|f| serde_json::from_str(&f.data).unwrap()).collect();
        assert_eq!(
            data[9]["delta"],
            json!({"type": "signature_delta", "signature": "U0lH"})
        );
        assert_eq!(
            data[12]["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"a\":1}"})
        );
        assert_eq!(data[12]["index"], 3);
        assert_eq!(data[14]["delta"]["stop_reason"], "tool_use");
        assert_eq!(data[14]["usage"]["output_tokens"], 4);
        assert_eq!(enc.total_tokens(), Some(7));
        let mut unfinished = AnthropicEncoder::new("m");
        assert!(unfinished.finish(&mut Vec::new()).is_err());
        assert_eq!(unfinished.fault("upstream_timeout", "slow").event, Some("error"));
    }
}
