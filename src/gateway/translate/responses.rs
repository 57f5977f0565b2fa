//! OpenAI Responses API ⇄ Gemini: the request (`input` items, `instructions`, function and
//! Codex's free-form `custom` tools, `text.format`, `reasoning`), the `response` object, and the
//! stream encoder (`response.created` … `response.completed`, every event numbered).
//!
//! Gemini's `thoughtSignature` rides in a `reasoning` item's `encrypted_content`: every signed
//! part is preceded by a reasoning item carrying its signature (with the thoughts as its
//! summary), and a reasoning item sent back attaches its signature to the next part of the same
//! model turn. (Unsigned calls get Google's placeholder later, for every dialect alike.)
//!
//! A whole answer is the stream encoder fed the folded answer as one event, so both shapes
//! always agree.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::request::{data_url_part, guess_mime, push_turn};
use super::{clean_schema, log_ignored, new_id, Frame, OneAnswer, StreamEncoder, MAX_OUTPUT_TOKENS};
use crate::gateway::error::GatewayError;
use crate::gateway::gemini::{
    Content, FinishReason, FunctionCall, FunctionResponse, GenerateContentRequest, GenerateContentResponse,
    GenerationConfig, Part, UsageMetadata,
};

/// `POST /v1/responses`. Items stay JSON values: they are checked one by one (errors name
/// `input[i]`) and kept as sent for `previous_response_id`.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<Input>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub reasoning: Option<Reasoning>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub include: Option<Vec<String>>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Everything else (`prompt_cache_key`, `service_tier`, `truncation`, …): accepted, ignored.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct Reasoning {
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

impl ResponsesRequest {
    /// This turn's input as items: a string is one user message.
    pub fn input_items(&self) -> Vec<Value> {
        match &self.input {
            None => Vec::new(),
            Some(Input::Text(t)) => vec![json!({"type": "message", "role": "user", "content": t})],
            Some(Input::Items(items)) => items.clone(),
        }
    }

    /// Whether the response is kept for `previous_response_id` (the default, as at OpenAI).
    pub fn stores(&self) -> bool {
        self.store != Some(false)
    }
}

/// The http(s) URLs of `input_image` and `input_file` parts, with their field paths, in order.
pub fn remote_media(items: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    visit_media(items, |url, param| {
        out.push((url.to_string(), param));
        None
    });
    out
}

/// Replaces the URLs [`remote_media`] listed with the fetched data URLs, in order.
pub fn inline_media(items: &mut [Value], data_urls: Vec<String>) {
    let mut fetched = data_urls.into_iter();
    visit_media_mut(items, &mut |_| fetched.next());
}

fn remote_url(part: &Value) -> Option<(&'static str, &str)> {
    let field = match part.get("type").and_then(Value::as_str) {
        Some("input_image") => "image_url",
        Some("input_file") => "file_url",
        _ => return None,
    };
    let url = part.get(field).and_then(Value::as_str)?;
    (url.starts_with("http://") || url.starts_with("https://")).then_some((field, url))
}

fn content_lists(item: &Value) -> Option<&Vec<Value>> {
    match item.get("type").and_then(Value::as_str) {
        None | Some("message") => item.get("content").and_then(Value::as_array),
        Some("function_call_output" | "custom_tool_call_output") => item.get("output").and_then(Value::as_array),
        _ => None,
    }
}

fn visit_media(items: &[Value], mut f: impl FnMut(&str, String) -> Option<String>) {
    for (i, item) in items.iter().enumerate() {
        let field = if item.get("content").is_some() {
            "content"
        } else {
            "output"
        };
        for (j, part) in content_lists(item).into_iter().flatten().enumerate() {
            if let Some((name, url)) = remote_url(part) {
                f(url, format!("input[{i}].{field}[{j}].{name}"));
            }
        }
    }
}

fn visit_media_mut(items: &mut [Value], f: &mut impl FnMut(&str) -> Option<String>) {
    for item in items.iter_mut() {
        let key = match item.get("type").and_then(Value::as_str) {
            None | Some("message") => "content",
            Some("function_call_output" | "custom_tool_call_output") => "output",
            _ => continue,
        };
        let Some(parts) = item.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for part in parts.iter_mut() {
            let Some((field, url)) = remote_url(part).map(|(f, u)| (f, u.to_string())) else {
                continue;
            };
            let Some(data_url) = f(&url) else { return };
            if field == "file_url" {
                if let Some(obj) = part.as_object_mut() {
                    obj.remove("file_url");
                    obj.insert("file_data".into(), Value::String(data_url));
                }
            } else {
                part[field] = Value::String(data_url);
            }
        }
    }
}

/// What the encoder needs to know about the request to shape its answer.
#[derive(Debug, Clone)]
pub struct ResponseContext {
    pub id: String,
    pub created_at: u64,
    /// The response object's fields echoed from the request (model as the client named it).
    pub echo: Map<String, Value>,
    /// Names of `custom` tools: their calls are answered as `custom_tool_call` items.
    pub custom_tools: HashSet<String>,
    /// The namespace of each namespaced tool: its calls name it.
    pub namespaces: HashMap<String, String>,
}

/// Translates a Responses request into the Gemini body for `model` (the resolved Gemini model),
/// after the stored conversation `history` (from `previous_response_id`) and this turn's `input`.
pub fn to_gemini(
    req: &ResponsesRequest,
    model: &str,
    history: &[Value],
    input: &[Value],
) -> Result<(GenerateContentRequest, ResponseContext), GatewayError> {
    let ignored: Vec<&str> = req.extra.keys().map(String::as_str).collect();
    log_ignored("responses", ignored);
    if req.parallel_tool_calls == Some(false) {
        log_ignored("responses", ["parallel_tool_calls"]);
    }
    let mut body = contents(req.instructions.as_deref(), history, input)?;
    super::sign_calls(&mut body, model);
    let (gemini_tools, declared) = tools(req.tools.as_deref().unwrap_or_default())?;
    body.tools = gemini_tools;
    if let (Some(choice), Some(_)) = (&req.tool_choice, &body.tools) {
        body.tool_config = tool_config(choice)?;
    }
    body.generation_config = Some(generation_config(req, model)?);
    let ctx = ResponseContext {
        id: new_id("resp_"),
        created_at: super::unix_now(),
        echo: echo(req),
        custom_tools: declared.custom,
        namespaces: declared.namespaces,
    };
    Ok((body, ctx))
}

fn generation_config(req: &ResponsesRequest, model: &str) -> Result<GenerationConfig, GatewayError> {
    let mut c = GenerationConfig {
        max_output_tokens: req.max_output_tokens.map(|n| n.clamp(1, MAX_OUTPUT_TOKENS)),
        temperature: req.temperature,
        top_p: req.top_p,
        ..Default::default()
    };
    if let Some(format) = req.text.as_ref().and_then(|t| t.get("format")) {
        match format.get("type").and_then(Value::as_str) {
            None | Some("text") => {}
            Some("json_object") => c.response_mime_type = Some("application/json".into()),
            Some("json_schema") => {
                c.response_mime_type = Some("application/json".into());
                c.response_json_schema = format.get("schema").cloned().map(clean_schema);
            }
            Some(other) => {
                return Err(GatewayError::invalid(
                    format!("text.format.type must be text, json_object or json_schema; got {other:?}"),
                    Some("text.format.type"),
                ))
            }
        }
    }
    if let Some(r) = &req.reasoning {
        let mut thinking = match &r.effort {
            Some(effort) => super::thinking_for_effort(effort, model, "reasoning.effort")?,
            None => json!({}),
        };
        // Thoughts come back as reasoning summaries only when a summary is asked for.
        if r.summary.as_deref().is_some_and(|s| s != "none") {
            thinking["includeThoughts"] = json!(true);
        }
        if thinking.as_object().is_some_and(|m| !m.is_empty()) {
            c.thinking_config = Some(thinking);
        }
    }
    Ok(c)
}

fn echo(req: &ResponsesRequest) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("model".into(), json!(req.model));
    m.insert("instructions".into(), json!(req.instructions));
    m.insert("max_output_tokens".into(), json!(req.max_output_tokens));
    m.insert(
        "parallel_tool_calls".into(),
        json!(req.parallel_tool_calls.unwrap_or(true)),
    );
    m.insert("previous_response_id".into(), json!(req.previous_response_id));
    m.insert(
        "reasoning".into(),
        json!({
            "effort": req.reasoning.as_ref().and_then(|r| r.effort.clone()),
            "summary": req.reasoning.as_ref().and_then(|r| r.summary.clone()),
        }),
    );
    m.insert("store".into(), json!(req.stores()));
    m.insert("temperature".into(), json!(req.temperature.unwrap_or(1.0)));
    m.insert(
        "text".into(),
        req.text.clone().unwrap_or_else(|| json!({"format": {"type": "text"}})),
    );
    m.insert(
        "tool_choice".into(),
        req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
    );
    m.insert("tools".into(), json!(req.tools.clone().unwrap_or_default()));
    m.insert("top_p".into(), json!(req.top_p.unwrap_or(1.0)));
    m.insert("truncation".into(), json!("disabled"));
    m.insert("user".into(), json!(req.user));
    m.insert("metadata".into(), req.metadata.clone().unwrap_or_else(|| json!({})));
    m
}

fn str_field<'a>(item: &'a Value, field: &str) -> Option<&'a str> {
    item.get(field).and_then(Value::as_str)
}

fn required<'a>(item: &'a Value, field: &str, param: &str) -> Result<&'a str, GatewayError> {
    str_field(item, field).ok_or_else(|| {
        GatewayError::invalid(
            format!("{param}.{field} is required and must be a string"),
            Some(&format!("{param}.{field}")),
        )
    })
}

/// Text and media parts of a message's or a tool output's content (a string or a part list).
fn content_parts(content: Option<&Value>, param: &str) -> Result<Vec<Part>, GatewayError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(t)) if t.is_empty() => return Ok(Vec::new()),
        Some(Value::String(t)) => return Ok(vec![Part::text(t.clone())]),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(GatewayError::invalid(
                format!("{param} must be a string or a list of content parts"),
                Some(param),
            ))
        }
    };
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let param = format!("{param}[{j}]");
        match str_field(part, "type") {
            Some("input_text" | "output_text" | "text" | "summary_text" | "reasoning_text") => {
                if let Some(t) = str_field(part, "text").filter(|t| !t.is_empty()) {
                    out.push(Part::text(t));
                }
            }
            Some("refusal") => {
                if let Some(t) = str_field(part, "refusal").filter(|t| !t.is_empty()) {
                    out.push(Part::text(t));
                }
            }
            Some("input_image") => match str_field(part, "image_url") {
                Some(url) => out.push(data_url_part(url, &format!("{param}.image_url"))?),
                None => {
                    return Err(GatewayError::invalid(
                        format!("{param}: give the image as image_url (a data URL or an http(s) URL); file_id is not supported"),
                        Some(&param),
                    ))
                }
            },
            Some("input_file") => match str_field(part, "file_data") {
                Some(data) if data.starts_with("data:") => out.push(data_url_part(data, &format!("{param}.file_data"))?),
                Some(data) => out.push(Part {
                    inline_data: Some(crate::gateway::gemini::Blob {
                        mime_type: guess_mime(str_field(part, "filename")),
                        data: data.to_string(),
                    }),
                    ..Default::default()
                }),
                None => {
                    return Err(GatewayError::invalid(
                        format!("{param}: give the file as file_data (base64 or a data URL) or file_url; file_id is not supported"),
                        Some(&param),
                    ))
                }
            },
            other => {
                return Err(GatewayError::invalid(
                    format!("{param}.type {other:?} is not supported; use input_text, input_image or input_file"),
                    Some(&format!("{param}.type")),
                ))
            }
        }
    }
    Ok(out)
}

fn texts_only(parts: Vec<Part>) -> Vec<Part> {
    parts.into_iter().filter(|p| p.text.is_some()).collect()
}

/// A model turn's part, carrying the pending signature.
fn push_model(turns: &mut Vec<Content>, mut part: Part, pending: &mut Option<String>) {
    part.thought_signature = pending.take();
    push_turn(turns, "model", vec![part]);
}

/// A signature no later part of its model turn took (Gemini put it on an empty closing part):
/// sent back the same way.
fn flush_signature(turns: &mut Vec<Content>, pending: &mut Option<String>) {
    if let Some(sig) = pending.take() {
        let part = Part {
            text: Some(String::new()),
            thought_signature: Some(sig),
            ..Default::default()
        };
        push_turn(turns, "model", vec![part]);
    }
}

fn contents(
    instructions: Option<&str>,
    history: &[Value],
    input: &[Value],
) -> Result<GenerateContentRequest, GatewayError> {
    let mut system: Vec<Part> = instructions
        .filter(|t| !t.is_empty())
        .map(|t| vec![Part::text(t)])
        .unwrap_or_default();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut turns: Vec<Content> = Vec::new();
    let mut pending: Option<String> = None;
    let items = history
        .iter()
        .map(|v| (None, v))
        .chain(input.iter().enumerate().map(|(i, v)| (Some(i), v)));
    for (index, item) in items {
        let param = match index {
            Some(i) => format!("input[{i}]"),
            None => "previous_response_id".to_string(),
        };
        if !item.is_object() {
            return Err(GatewayError::invalid(
                format!("{param} must be an object (an input item)"),
                Some(&param),
            ));
        }
        match str_field(item, "type").unwrap_or("message") {
            "message" => {
                let content = item.get("content");
                let content_param = format!("{param}.content");
                match str_field(item, "role") {
                    Some("system" | "developer") => system.extend(texts_only(content_parts(content, &content_param)?)),
                    Some("user") => {
                        flush_signature(&mut turns, &mut pending);
                        push_turn(&mut turns, "user", content_parts(content, &content_param)?);
                    }
                    Some("assistant") => {
                        for part in texts_only(content_parts(content, &content_param)?) {
                            push_model(&mut turns, part, &mut pending);
                        }
                    }
                    other => {
                        return Err(GatewayError::invalid(
                            format!("{param}.role must be user, assistant, system or developer; got {other:?}"),
                            Some(&format!("{param}.role")),
                        ))
                    }
                }
            }
            kind @ ("function_call" | "custom_tool_call") => {
                let call_id = required(item, "call_id", &param)?;
                let name = required(item, "name", &param)?;
                let args = if kind == "function_call" {
                    let raw = str_field(item, "arguments").unwrap_or("");
                    if raw.trim().is_empty() {
                        json!({})
                    } else {
                        match serde_json::from_str::<Value>(raw) {
                            Ok(v @ Value::Object(_)) => v,
                            _ => {
                                return Err(GatewayError::invalid(
                                    format!("{param}.arguments must be a JSON object encoded as a string"),
                                    Some(&format!("{param}.arguments")),
                                ))
                            }
                        }
                    }
                } else {
                    json!({ "input": str_field(item, "input").unwrap_or("") })
                };
                names.insert(call_id.to_string(), name.to_string());
                let part = Part {
                    function_call: Some(FunctionCall {
                        id: None,
                        name: name.to_string(),
                        args,
                    }),
                    ..Default::default()
                };
                push_model(&mut turns, part, &mut pending);
            }
            "function_call_output" | "custom_tool_call_output" => {
                flush_signature(&mut turns, &mut pending);
                let call_id = required(item, "call_id", &param)?;
                let Some(name) = names.get(call_id).cloned() else {
                    return Err(GatewayError::invalid(
                        format!("{param}: no function_call with call_id {call_id:?} precedes this output; send the call too, or continue with previous_response_id"),
                        Some(&format!("{param}.call_id")),
                    ));
                };
                let parts = content_parts(item.get("output"), &format!("{param}.output"))?;
                let (text_parts, media): (Vec<Part>, Vec<Part>) = parts.into_iter().partition(|p| p.text.is_some());
                let text: String = text_parts.into_iter().filter_map(|p| p.text).collect::<Vec<_>>().join("\n");
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => Value::Object(map),
                    _ => json!({ "result": text }),
                };
                let mut parts = vec![Part {
                    function_response: Some(FunctionResponse {
                        id: None,
                        name,
                        response,
                    }),
                    ..Default::default()
                }];
                parts.extend(media);
                push_turn(&mut turns, "user", parts);
            }
            "reasoning" => {
                if let Some(sig) = str_field(item, "encrypted_content").filter(|s| !s.is_empty()) {
                    flush_signature(&mut turns, &mut pending);
                    pending = Some(sig.to_string());
                }
            }
            "item_reference" => {
                return Err(GatewayError::invalid(
                    format!("{param}: item_reference is not supported; send the item itself, or continue with previous_response_id"),
                    Some(&param),
                ))
            }
            other => log_ignored("responses.input", [other]),
        }
    }
    flush_signature(&mut turns, &mut pending);
    if !turns.iter().any(|t| t.role.as_deref() == Some("user")) {
        return Err(GatewayError::invalid(
            "input: at least one user message or tool output with content is required",
            Some("input"),
        ));
    }
    Ok(GenerateContentRequest {
        contents: turns,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        ..Default::default()
    })
}

/// The tools of a request as Gemini sees them.
#[derive(Debug, Default)]
struct Tools {
    declarations: Vec<Value>,
    search: bool,
    custom: HashSet<String>,
    namespaces: HashMap<String, String>,
}

impl Tools {
    /// A function or custom tool as a declaration; `false` for any other type.
    fn declare(&mut self, tool: &Value, param: &str) -> Result<bool, GatewayError> {
        match str_field(tool, "type").unwrap_or("") {
            "function" => {
                let name = required(tool, "name", param)?;
                let mut d = json!({ "name": name });
                if let Some(desc) = str_field(tool, "description") {
                    d["description"] = json!(desc);
                }
                let has_params = tool.get("parameters").is_some_and(|p| {
                    p.get("properties")
                        .and_then(Value::as_object)
                        .is_some_and(|m| !m.is_empty())
                        || p.get("$ref").is_some()
                });
                if has_params {
                    d["parametersJsonSchema"] = clean_schema(tool["parameters"].clone());
                }
                self.declarations.push(d);
            }
            "custom" => {
                let name = required(tool, "name", param)?;
                let mut description = str_field(tool, "description").unwrap_or("").to_string();
                if let Some(format) = tool.get("format").filter(|f| str_field(f, "type") == Some("grammar")) {
                    description.push_str(&format!(
                        "\n\nThe input is free-form text that must follow this {} grammar:\n{}",
                        str_field(format, "syntax").unwrap_or(""),
                        str_field(format, "definition").unwrap_or("")
                    ));
                }
                self.custom.insert(name.to_string());
                self.declarations.push(json!({
                    "name": name,
                    "description": description.trim(),
                    "parametersJsonSchema": {
                        "type": "object",
                        "properties": {"input": {"type": "string", "description": "The tool's free-form input."}},
                        "required": ["input"],
                    },
                }));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Function and custom tools as Gemini declarations (a `namespace`'s tools by their own names);
/// web search as Google Search when no function is declared beside it (Gemini refuses the mix
/// unless asked specially); any other hosted tool is a 400 naming it.
fn tools(tools: &[Value]) -> Result<(Option<Vec<Value>>, Tools), GatewayError> {
    let mut out = Tools::default();
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        if out.declare(tool, &param)? {
            continue;
        }
        match str_field(tool, "type").unwrap_or("") {
            "namespace" => {
                let namespace = required(tool, "name", &param)?;
                for (j, inner) in tool.get("tools").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let inner_param = format!("{param}.tools[{j}]");
                    if !out.declare(inner, &inner_param)? {
                        return Err(GatewayError::invalid(
                            format!("{inner_param}: only function and custom tools can be in a namespace"),
                            Some(&format!("{inner_param}.type")),
                        ));
                    }
                    if let Some(name) = str_field(inner, "name") {
                        out.namespaces.insert(name.to_string(), namespace.to_string());
                    }
                }
            }
            k if k.starts_with("web_search") => out.search = true,
            other => {
                return Err(GatewayError::invalid(
                    format!("{param}: the hosted tool {other:?} has no Gemini equivalent; use function tools (web_search maps to Google Search)"),
                    Some(&format!("{param}.type")),
                ))
            }
        }
    }
    let mut gemini = Vec::new();
    if !out.declarations.is_empty() {
        gemini.push(json!({ "functionDeclarations": std::mem::take(&mut out.declarations) }));
        if out.search {
            log_ignored("responses.tools", ["web_search beside function tools"]);
        }
    } else if out.search {
        gemini.push(json!({"googleSearch": {}}));
    }
    Ok(((!gemini.is_empty()).then_some(gemini), out))
}

fn tool_config(choice: &Value) -> Result<Option<Value>, GatewayError> {
    let bad = || {
        GatewayError::invalid(
            "tool_choice must be none, auto, required, {\"type\": \"function\"|\"custom\", \"name\"} or allowed_tools",
            Some("tool_choice"),
        )
    };
    let config = match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            _ => return Err(bad()),
        },
        Value::Object(obj) => match obj.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                let name = obj.get("name").and_then(Value::as_str).ok_or_else(bad)?;
                json!({"mode": "ANY", "allowedFunctionNames": [name]})
            }
            Some("allowed_tools") => {
                let names: Vec<&str> = obj
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.get("name").and_then(Value::as_str))
                    .collect();
                match obj.get("mode").and_then(Value::as_str) {
                    Some("required") if !names.is_empty() => json!({"mode": "ANY", "allowedFunctionNames": names}),
                    Some("required") => json!({"mode": "ANY"}),
                    _ => json!({"mode": "AUTO"}),
                }
            }
            // Hosted-tool choices (web search…): let the model decide.
            Some(_) => json!({"mode": "AUTO"}),
            None => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

/// OpenAI's Responses usage from Gemini's: thoughts count as output, and as reasoning tokens.
pub fn usage_json(u: &UsageMetadata) -> Value {
    let output = u.candidates_token_count.saturating_add(u.thoughts_token_count);
    let total = if u.total_token_count > 0 {
        u.total_token_count
    } else {
        u.prompt_token_count.saturating_add(output)
    };
    json!({
        "input_tokens": u.prompt_token_count,
        "input_tokens_details": {"cached_tokens": u.cached_content_token_count},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": u.thoughts_token_count},
        "total_tokens": total,
    })
}

/// The item being streamed, still open.
#[derive(Debug)]
enum Open {
    None,
    Message { id: String, text: String },
    Reasoning { id: String, text: String },
}

/// Called once with the final response object (completed or incomplete), e.g. to store it.
pub type OnComplete = Box<dyn FnOnce(&Value) + Send>;

/// Gemini stream events → Responses API events, numbered from 0; also builds the final
/// `response` object, which is the whole (non-streaming) answer.
pub struct ResponsesEncoder {
    ctx: ResponseContext,
    emit: bool,
    seq: u64,
    started: bool,
    output: Vec<Value>,
    open: Open,
    answer: OneAnswer,
    on_complete: Option<OnComplete>,
}

impl std::fmt::Debug for ResponsesEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponsesEncoder")
            .field("id", &self.ctx.id)
            .finish_non_exhaustive()
    }
}

impl ResponsesEncoder {
    pub fn new(ctx: ResponseContext) -> Self {
        ResponsesEncoder {
            ctx,
            emit: true,
            seq: 0,
            started: false,
            output: Vec::new(),
            open: Open::None,
            answer: OneAnswer::default(),
            on_complete: None,
        }
    }

    pub fn on_complete(mut self, f: OnComplete) -> Self {
        self.on_complete = Some(f);
        self
    }

    /// A whole answer as a `response` object (the same one `response.completed` carries).
    pub fn whole(mut self, resp: &GenerateContentResponse) -> Value {
        self.emit = false;
        let mut sink = Vec::new();
        self.event(resp, &mut sink);
        if self.answer.finish.is_none() {
            // A folded answer without a finish reason still ends here.
            self.answer.finish = Some(FinishReason::Stop);
        }
        self.close(&mut sink, None);
        let response = self.response(self.status().0);
        if let Some(f) = self.on_complete.take() {
            f(&response);
        }
        response
    }

    fn push(&mut self, out: &mut Vec<Frame>, kind: &'static str, mut data: Value) {
        if !self.emit {
            return;
        }
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(Frame {
            event: Some(kind),
            data: data.to_string(),
        });
    }

    /// The response object as it stands, with `status`.
    fn response(&self, status: &str) -> Value {
        let mut r = Map::new();
        r.insert("id".into(), json!(self.ctx.id));
        r.insert("object".into(), json!("response"));
        r.insert("created_at".into(), json!(self.ctx.created_at));
        r.insert("status".into(), json!(status));
        r.insert("background".into(), json!(false));
        r.insert("error".into(), Value::Null);
        let incomplete = (status == "incomplete").then(|| json!({"reason": self.status().1}));
        r.insert("incomplete_details".into(), incomplete.unwrap_or(Value::Null));
        r.extend(self.ctx.echo.clone());
        r.insert("output".into(), json!(self.output));
        let usage = match (&self.answer.usage, status) {
            (Some(u), "completed" | "incomplete" | "failed") => usage_json(u),
            _ => Value::Null,
        };
        r.insert("usage".into(), usage);
        Value::Object(r)
    }

    /// `completed`, or `incomplete` with its reason.
    fn status(&self) -> (&'static str, &'static str) {
        match self.answer.finish {
            _ if self.answer.blocked => ("incomplete", "content_filter"),
            Some(FinishReason::MaxTokens) => ("incomplete", "max_output_tokens"),
            Some(
                FinishReason::Safety
                | FinishReason::Recitation
                | FinishReason::Blocklist
                | FinishReason::ProhibitedContent
                | FinishReason::Spii
                | FinishReason::ImageSafety,
            ) => ("incomplete", "content_filter"),
            _ => ("completed", ""),
        }
    }

    fn start(&mut self, out: &mut Vec<Frame>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.response("in_progress");
        self.push(out, "response.created", json!({ "response": response }));
        self.push(out, "response.in_progress", json!({ "response": response }));
    }

    /// Closes the open item; `signature` becomes a reasoning item's `encrypted_content`.
    fn close(&mut self, out: &mut Vec<Frame>, signature: Option<&str>) {
        let index = self.output.len();
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Message { id, text } => {
                let part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.push(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.push(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                let item =
                    json!({"id": id, "type": "message", "status": "completed", "role": "assistant", "content": [part]});
                self.push(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.output.push(item);
            }
            Open::Reasoning { id, text } => {
                let mut summary = Vec::new();
                if !text.is_empty() {
                    let part = json!({"type": "summary_text", "text": text});
                    self.push(
                        out,
                        "response.reasoning_summary_text.done",
                        json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                    );
                    self.push(
                        out,
                        "response.reasoning_summary_part.done",
                        json!({"item_id": id, "output_index": index, "summary_index": 0, "part": part}),
                    );
                    summary.push(part);
                }
                let item = json!({"id": id, "type": "reasoning", "summary": summary, "encrypted_content": signature});
                self.push(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.output.push(item);
            }
        }
    }

    fn open_reasoning(&mut self, out: &mut Vec<Frame>) {
        if matches!(self.open, Open::Reasoning { .. }) {
            return;
        }
        self.close(out, None);
        let id = new_id("rs_");
        let item = json!({"id": id, "type": "reasoning", "summary": []});
        self.push(
            out,
            "response.output_item.added",
            json!({"output_index": self.output.len(), "item": item}),
        );
        self.open = Open::Reasoning {
            id,
            text: String::new(),
        };
    }

    fn reasoning_text(&mut self, delta: &str, out: &mut Vec<Frame>) {
        self.open_reasoning(out);
        let index = self.output.len();
        let Open::Reasoning { id, text } = &mut self.open else {
            return;
        };
        let first = text.is_empty();
        text.push_str(delta);
        let id = id.clone();
        if first {
            self.push(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""}}),
            );
        }
        self.push(
            out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": delta}),
        );
    }

    /// A signature closes the reasoning item (opening an empty one when no thoughts were shown).
    fn signature(&mut self, sig: &str, out: &mut Vec<Frame>) {
        self.open_reasoning(out);
        self.close(out, Some(sig));
    }

    fn text(&mut self, delta: &str, out: &mut Vec<Frame>) {
        if !matches!(self.open, Open::Message { .. }) {
            self.close(out, None);
            let id = new_id("msg_");
            let index = self.output.len();
            let item =
                json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
            self.push(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.push(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
            );
            self.open = Open::Message {
                id,
                text: String::new(),
            };
        }
        let index = self.output.len();
        if let Open::Message { id, text } = &mut self.open {
            text.push_str(delta);
            let id = id.clone();
            self.push(
                out,
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}),
            );
        }
    }

    fn call(&mut self, call: &FunctionCall, out: &mut Vec<Frame>) {
        self.close(out, None);
        let index = self.output.len();
        let call_id = new_id("call_");
        if self.ctx.custom_tools.contains(&call.name) {
            let input = match call.args.get("input") {
                Some(Value::String(s)) => s.clone(),
                _ => call.args.to_string(),
            };
            let id = new_id("ctc_");
            let item = json!({"id": id, "type": "custom_tool_call", "status": "in_progress", "call_id": call_id, "name": call.name, "input": ""});
            self.push(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.push(
                out,
                "response.custom_tool_call_input.delta",
                json!({"item_id": id, "output_index": index, "delta": input}),
            );
            self.push(
                out,
                "response.custom_tool_call_input.done",
                json!({"item_id": id, "output_index": index, "input": input}),
            );
            let item = json!({"id": id, "type": "custom_tool_call", "status": "completed", "call_id": call_id, "name": call.name, "input": input});
            self.push(
                out,
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            );
            self.output.push(item);
            return;
        }
        let arguments = if call.args.is_object() {
            call.args.to_string()
        } else {
            "{}".to_string()
        };
        let id = new_id("fc_");
        let mut item = json!({"id": id, "type": "function_call", "status": "in_progress", "call_id": call_id, "name": call.name, "arguments": ""});
        if let Some(namespace) = self.ctx.namespaces.get(&call.name) {
            item["namespace"] = json!(namespace);
        }
        self.push(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        self.push(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": index, "delta": arguments}),
        );
        self.push(
            out,
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "name": call.name, "arguments": arguments}),
        );
        item["status"] = json!("completed");
        item["arguments"] = json!(arguments);
        self.push(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        self.output.push(item);
    }

    fn part(&mut self, part: &Part, out: &mut Vec<Frame>) {
        if part.is_thought() {
            if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                self.reasoning_text(text, out);
            }
            if let Some(sig) = &part.thought_signature {
                self.signature(sig, out);
            }
            return;
        }
        if let Some(sig) = &part.thought_signature {
            self.signature(sig, out);
        }
        if let Some(call) = &part.function_call {
            self.call(call, out);
        } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
            self.text(text, out);
        }
    }
}

impl StreamEncoder for ResponsesEncoder {
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
        self.close(out, None);
        let (status, _) = self.status();
        let response = self.response(status);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.push(out, kind, json!({ "response": response }));
        if let Some(f) = self.on_complete.take() {
            f(&response);
        }
        Ok(())
    }

    fn fault(&mut self, code: &'static str, message: &str) -> Frame {
        let mut response = self.response("failed");
        response["error"] = json!({"code": code, "message": message});
        let mut out = Vec::new();
        self.push(&mut out, "response.failed", json!({ "response": response }));
        out.pop().unwrap_or_else(|| Frame::data(response.to_string()))
    }

    fn total_tokens(&self) -> Option<u64> {
        self.answer.total_tokens()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ResponsesRequest {
        serde_json::from_value(v).expect("request")
    }

    fn translate(v: Value, model: &str) -> (Value, ResponseContext) {
        let r = req(v);
        let (body, ctx) = to_gemini(&r, model, &[], &r.input_items()).expect("translates");
        (serde_json::to_value(body).expect("json"), ctx)
    }

    fn events(frames: &[Frame]) -> Vec<Value> {
        frames
            .iter()
            .map(|f| serde_json::from_str::<Value>(&f.data).expect("json data"))
            .collect()
    }

    /// A Codex-style request: instructions, developer message, a function tool, a free-form
    /// custom tool with a grammar, web search, reasoning with a summary, a tool loop in the input.
    #[test]
    fn codex_style_request_maps_to_gemini() {
        let (body, ctx) = translate(
            json!({
                "model": "gpt-5-codex",
                "instructions": "You are a coding agent.",
                "input": [
                    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List files"}]},
                    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "SIG1"},
                    {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "a.txt\nb.txt"},
                    {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
                    {"type": "custom_tool_call_output", "call_id": "call_2", "output": "{\"ok\":true}"}
                ],
                "tools": [
                    {"type": "function", "name": "shell", "description": "Run a command", "strict": false,
                     "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                                    "required": ["command"], "additionalProperties": false, "$schema": "x"}},
                    {"type": "custom", "name": "apply_patch", "description": "Edit files",
                     "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"}},
                    {"type": "web_search"}
                ],
                "tool_choice": "auto",
                "parallel_tool_calls": false,
                "reasoning": {"effort": "high", "summary": "auto"},
                "store": false,
                "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": "abc",
                "stream": true
            }),
            "gemini-3-pro-preview",
        );
        assert_eq!(
            body["systemInstruction"]["parts"],
            json!([{"text": "You are a coding agent."}, {"text": "Be brief."}])
        );
        let contents = body["contents"].as_array().expect("contents");
        assert_eq!(contents.len(), 5, "{contents:#?}");
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(contents[1]["parts"][0]["thoughtSignature"], "SIG1");
        assert_eq!(
            contents[1]["parts"][0]["functionCall"]["args"],
            json!({"command": ["ls"]})
        );
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"],
            json!({"name": "shell", "response": {"result": "a.txt\nb.txt"}})
        );
        // The unsigned custom call gets the placeholder on Gemini 3; its output is JSON.
        use crate::gateway::translate::PLACEHOLDER_SIGNATURE;
        assert_eq!(contents[3]["parts"][0]["thoughtSignature"], PLACEHOLDER_SIGNATURE);
        assert_eq!(
            contents[3]["parts"][0]["functionCall"]["args"],
            json!({"input": "*** Begin Patch"})
        );
        assert_eq!(
            contents[4]["parts"][0]["functionResponse"]["response"],
            json!({"ok": true})
        );
        let decls = &body["tools"][0]["functionDeclarations"];
        assert!(decls[0]["parametersJsonSchema"].get("$schema").is_none());
        assert_eq!(decls[1]["parametersJsonSchema"]["required"], json!(["input"]));
        assert!(decls[1]["description"].as_str().expect("d").contains("start: patch"));
        assert_eq!(
            body["tools"].as_array().expect("tools").len(),
            1,
            "no search beside functions"
        );
        assert_eq!(body["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
        assert_eq!(
            body["generationConfig"]["thinkingConfig"],
            json!({"thinkingLevel": "high", "includeThoughts": true})
        );
        assert!(ctx.custom_tools.contains("apply_patch"));
        assert_eq!(ctx.echo["model"], "gpt-5-codex");
        assert_eq!(ctx.echo["store"], false);
    }

    #[test]
    fn plain_string_input_json_schema_and_limits() {
        let (body, _) = translate(
            json!({"model": "gemini-2.5-flash", "input": "Hi", "max_output_tokens": 200000,
                   "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": true}},
                   "temperature": 0.2, "reasoning": {"effort": "low"}}),
            "gemini-2.5-flash",
        );
        assert_eq!(body["contents"], json!([{"role": "user", "parts": [{"text": "Hi"}]}]));
        let c = &body["generationConfig"];
        assert_eq!(c["maxOutputTokens"], MAX_OUTPUT_TOKENS);
        assert_eq!(c["responseMimeType"], "application/json");
        assert_eq!(c["responseJsonSchema"], json!({"type": "object"}));
        assert_eq!(c["temperature"], 0.2);
        assert_eq!(c["thinkingConfig"], json!({"thinkingBudget": 1024}));
    }

    /// Codex's multi-agent tools come in a namespace; web search alone is Google Search.
    #[test]
    fn namespaces_are_flattened_and_search_stands_alone() {
        let (body, ctx) = translate(
            json!({"model": "gpt-5", "input": "x", "tools": [
                {"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [
                    {"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}},
                    {"type": "function", "name": "wait_agent", "defer_loading": true}]}]}),
            "gemini-2.5-pro",
        );
        let names: Vec<&str> = body["tools"][0]["functionDeclarations"]
            .as_array()
            .expect("declarations")
            .iter()
            .map(|d| d["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["spawn_agent", "wait_agent"]);
        assert_eq!(ctx.namespaces["wait_agent"], "multi_agent_v1");
        let (body, _) = translate(
            json!({"model": "gpt-5", "input": "x", "tools": [{"type": "web_search", "external_web_access": false}]}),
            "gemini-2.5-pro",
        );
        assert_eq!(body["tools"], json!([{"googleSearch": {}}]));
        let call = gemini(
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "spawn_agent", "args": {}}}]}, "finishReason": "STOP"}]}),
        );
        let out = ResponsesEncoder::new(self::ctx(&[])).whole(&call);
        assert_eq!(out["output"][0]["namespace"], "multi_agent_v1");
        assert_eq!(out["output"][0]["name"], "spawn_agent");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases = [
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "file_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"model": "m", "input": "x", "reasoning": {"effort": "max"}}),
                "reasoning.effort",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1"}]}),
                "input[0].arguments",
            ),
            (json!({"model": "m"}), "input"),
        ];
        for (v, param) in cases {
            let r = req(v.clone());
            let err = to_gemini(&r, "gemini-2.5-flash", &[], &r.input_items()).expect_err("rejected");
            assert_eq!(err.to_openai().error.param.as_deref(), Some(param), "{v}");
            assert_eq!(err.status(), 400);
        }
    }

    fn ctx(custom: &[&str]) -> ResponseContext {
        ResponseContext {
            id: "resp_1".into(),
            created_at: 1,
            echo: echo(&req(json!({"model": "gpt-5", "input": "x"}))),
            custom_tools: custom.iter().map(|s| s.to_string()).collect(),
            namespaces: HashMap::from([("spawn_agent".to_string(), "multi_agent_v1".to_string())]),
        }
    }

    fn gemini(v: Value) -> GenerateContentResponse {
        serde_json::from_value(v).expect("gemini response")
    }

    #[test]
    fn whole_answer_with_reasoning_signature_and_calls() {
        let resp = gemini(json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "Thinking…", "thought": true},
            {"functionCall": {"name": "shell", "args": {"command": ["ls"]}}, "thoughtSignature": "SIG"},
            {"functionCall": {"name": "apply_patch", "args": {"input": "*** Begin Patch"}}}
        ]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3, "totalTokenCount": 18}}));
        let out = ResponsesEncoder::new(ctx(&["apply_patch"])).whole(&resp);
        assert_eq!(out["status"], "completed");
        assert_eq!(out["object"], "response");
        assert_eq!(out["model"], "gpt-5");
        let items = out["output"].as_array().expect("output");
        assert_eq!(items[0]["type"], "reasoning");
        assert_eq!(
            items[0]["summary"],
            json!([{"type": "summary_text", "text": "Thinking…"}])
        );
        assert_eq!(items[0]["encrypted_content"], "SIG");
        assert_eq!(items[1]["type"], "function_call");
        assert_eq!(items[1]["arguments"], "{\"command\":[\"ls\"]}");
        assert!(items[1]["call_id"].as_str().expect("id").starts_with("call_"));
        assert_eq!(items[2]["type"], "custom_tool_call");
        assert_eq!(items[2]["input"], "*** Begin Patch");
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 8,
                   "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 18})
        );

        // Sent back as input, the items give back the signed call and the placeholder-free
        // custom call (Gemini 2.5 does not require signatures).
        let mut input = vec![json!({"role": "user", "content": "go"})];
        input.extend(items.iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": items[1]["call_id"], "output": "ok"}));
        let r = req(json!({"model": "gpt-5", "input": input}));
        let (body, _) = to_gemini(&r, "gemini-2.5-pro", &[], &r.input_items()).expect("translates");
        let body = serde_json::to_value(body).expect("json");
        assert_eq!(body["contents"][1]["parts"][0]["thoughtSignature"], "SIG");
        assert!(body["contents"][1]["parts"][1].get("thoughtSignature").is_none());
        assert_eq!(body["contents"][2]["parts"][0]["functionResponse"]["name"], "shell");
    }

    #[test]
    fn max_tokens_and_blocked_prompts_are_incomplete() {
        let cut =
            gemini(json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}, "finishReason": "MAX_TOKENS"}]}));
        let out = ResponsesEncoder::new(ctx(&[])).whole(&cut);
        assert_eq!(out["status"], "incomplete");
        assert_eq!(out["incomplete_details"], json!({"reason": "max_output_tokens"}));
        assert_eq!(out["output"][0]["content"][0]["text"], "Hel");
        let blocked = gemini(json!({"promptFeedback": {"blockReason": "SAFETY"}}));
        let out = ResponsesEncoder::new(ctx(&[])).whole(&blocked);
        assert_eq!(out["incomplete_details"], json!({"reason": "content_filter"}));
    }

    #[test]
    fn stream_events_follow_openais_sequence() {
        let mut enc = ResponsesEncoder::new(ctx(&[]));
        let mut out = Vec::new();
        for ev in [
            json!({"candidates": [{"content": {"parts": [{"text": "Hmm", "thought": true}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "Hel", "thoughtSignature": "S"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}}),
        ] {
            enc.event(&gemini(ev), &mut out);
        }
        enc.finish(&mut out).expect("finished");
        let evs = events(&out);
        let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().expect("type")).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        for (f, e) in out.iter().zip(&evs) {
            assert_eq!(f.event, e["type"].as_str());
        }
        assert_eq!(evs[7]["item"]["encrypted_content"], "S");
        assert_eq!(evs[12]["text"], "Hello");
        let done = &evs[19]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"].as_array().expect("output").len(), 3);
        assert_eq!(done["usage"]["total_tokens"], 3);
        assert_eq!(evs[0]["response"]["status"], "in_progress");
    }

    #[test]
    fn a_fault_after_the_start_is_response_failed() {
        let mut enc = ResponsesEncoder::new(ctx(&[]));
        let mut out = Vec::new();
        enc.event(
            &gemini(json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})),
            &mut out,
        );
        let failed: Value = serde_json::from_str(&enc.fault("upstream_stream_error", "broken").data).expect("json");
        assert_eq!(failed["type"], "response.failed");
        assert_eq!(failed["sequence_number"], out.len() as u64);
        assert_eq!(failed["response"]["status"], "failed");
        assert_eq!(failed["response"]["error"]["message"], "broken");
        let mut unfinished = ResponsesEncoder::new(ctx(&[]));
        assert!(unfinished.finish(&mut Vec::new()).is_err());
    }

    #[test]
    fn remote_media_is_found_and_replaced() {
        let mut items = vec![json!({"role": "user", "content": [
            {"type": "input_text", "text": "see"},
            {"type": "input_image", "image_url": "https://example.com/a.png"},
            {"type": "input_file", "file_url": "https://example.com/b.pdf"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
        ]})];
        let urls = remote_media(&items);
        assert_eq!(
            urls,
            vec![
                (
                    "https://example.com/a.png".to_string(),
                    "input[0].content[1].image_url".to_string()
                ),
                (
                    "https://example.com/b.pdf".to_string(),
                    "input[0].content[2].file_url".to_string()
                ),
            ]
        );
        inline_media(
            &mut items,
            vec![
                "data:image/png;base64,BBBB".into(),
                "data:application/pdf;base64,CCCC".into(),
            ],
        );
        assert_eq!(items[0]["content"][1]["image_url"], "data:image/png;base64,BBBB");
        assert_eq!(items[0]["content"][2]["file_data"], "data:application/pdf;base64,CCCC");
        assert!(items[0]["content"][2].get("file_url").is_none());
    }
}
