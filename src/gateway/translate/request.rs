//! Chat-completions request → Gemini `generateContent` request.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::SIGNATURE_SEPARATOR;
use crate::gateway::error::GatewayError;
use crate::gateway::gemini::{
    Blob, Content, FunctionCall, FunctionResponse, GenerateContentRequest, GenerationConfig, Part,
};
use crate::gateway::openai::{
    ChatCompletionRequest, ChatMessage, ContentPart, MessageContent, ResponseFormat, Role, ToolChoice,
};
use crate::gateway::owners;

/// The model id as Gemini's URL takes it: `models/` prefix removed, checked to be a plain name.
pub fn model_id(model: &str) -> Result<String, GatewayError> {
    let id = model.trim().trim_start_matches("models/");
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(id.to_string())
    } else {
        Err(GatewayError::invalid(
            format!("Invalid model name {model:?}"),
            Some("model"),
        ))
    }
}

/// Translates a chat-completions request. Returns the model id and the Gemini body.
pub fn to_gemini(req: &ChatCompletionRequest) -> Result<(String, GenerateContentRequest), GatewayError> {
    let model = model_id(&req.model)?;
    if req.messages.is_empty() {
        return Err(GatewayError::invalid(
            "'messages' must contain at least one message",
            Some("messages"),
        ));
    }
    let mut system_parts = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // tool_call_id → function name, from earlier assistant messages.
    let mut call_names: HashMap<&str, &str> = HashMap::new();

    for (i, msg) in req.messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        match msg.role {
            Role::System | Role::Developer => {
                system_parts.extend(content_parts(msg, &param)?);
            }
            Role::User => push_turn(&mut contents, "user", content_parts(msg, &param)?),
            Role::Assistant => {
                let mut parts = content_parts(msg, &param)?;
                for call in msg.tool_calls.iter().flatten() {
                    call_names.insert(call.id.as_str(), call.function.name.as_str());
                    parts.push(function_call_part(call, &param)?);
                }
                push_turn(&mut contents, "model", parts);
            }
            Role::Tool | Role::Function => {
                let name = match (&msg.tool_call_id, &msg.name) {
                    (Some(id), _) if call_names.contains_key(id.as_str()) => call_names[id.as_str()].to_string(),
                    (_, Some(name)) => name.clone(),
                    (Some(id), None) => {
                        return Err(GatewayError::invalid(
                            format!("tool message refers to unknown tool_call_id {id:?}"),
                            Some(&format!("{param}.tool_call_id")),
                        ))
                    }
                    (None, None) => {
                        return Err(GatewayError::invalid(
                            "tool messages need a 'tool_call_id'",
                            Some(&format!("{param}.tool_call_id")),
                        ))
                    }
                };
                let text = plain_text(msg);
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => Value::Object(map),
                    Ok(other) => json!({ "result": other }),
                    Err(_) => json!({ "result": text }),
                };
                let id = msg.tool_call_id.as_deref().map(|id| strip_signature(id).to_string());
                let part = Part {
                    function_response: Some(FunctionResponse {
                        id: id.filter(|i| !i.starts_with("call_")),
                        name,
                        response,
                    }),
                    ..Default::default()
                };
                push_turn(&mut contents, "user", vec![part]);
            }
        }
    }

    if contents.is_empty() {
        return Err(GatewayError::invalid(
            "'messages' must contain at least one user or assistant message besides system messages",
            Some("messages"),
        ));
    }

    let mut body = GenerateContentRequest {
        contents,
        system_instruction: (!system_parts.is_empty()).then_some(Content {
            role: None,
            parts: system_parts,
        }),
        generation_config: None,
        ..Default::default()
    };
    let mut config = generation_config(req)?;
    apply_tools(req, &mut body)?;
    apply_passthrough(req, &mut body, &mut config);
    if config != GenerationConfig::default() {
        body.generation_config = Some(config);
    }
    Ok((model, body))
}

/// Appends parts to the last turn when it has the same role (Gemini wants alternating turns),
/// else starts a new turn. Empty part lists are dropped.
pub(super) fn push_turn(contents: &mut Vec<Content>, role: &str, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_string()),
            parts,
        }),
    }
}

fn plain_text(msg: &ChatMessage) -> String {
    match &msg.content {
        None => String::new(),
        Some(MessageContent::Text(t)) => t.clone(),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(""),
    }
}

fn content_parts(msg: &ChatMessage, param: &str) -> Result<Vec<Part>, GatewayError> {
    match &msg.content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(t)) => Ok(vec![Part::text(t.clone())]),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let param = format!("{param}.content[{j}]");
                match p {
                    ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => Ok(Part::text(text.clone())),
                    ContentPart::ImageUrl { image_url } if owners::is_google_file(&image_url.url) => {
                        Ok(file_part(image_url.url.clone(), None))
                    }
                    ContentPart::ImageUrl { image_url } => data_url_part(&image_url.url, &param),
                    ContentPart::InputAudio { input_audio } => Ok(Part {
                        inline_data: Some(Blob {
                            mime_type: format!("audio/{}", input_audio.format),
                            data: input_audio.data.clone(),
                        }),
                        ..Default::default()
                    }),
                    ContentPart::File { file } => match &file.file_data {
                        Some(data) if data.starts_with("data:") => data_url_part(data, &param),
                        Some(data) => Ok(Part {
                            inline_data: Some(Blob {
                                mime_type: guess_mime(file.filename.as_deref()),
                                data: data.clone(),
                            }),
                            ..Default::default()
                        }),
                        None => match file
                            .file_id
                            .as_deref()
                            .and_then(crate::gateway::files::file_name_of_openai_id)
                        {
                            Some(name) => Ok(file_part(
                                format!("{}{}", owners::GOOGLE_FILES, name.trim_start_matches("files/")),
                                file.filename
                                    .as_deref()
                                    .map(|f| guess_mime(Some(f)))
                                    .filter(|m| m != "application/octet-stream"),
                            )),
                            None => Err(GatewayError::invalid(
                                "file parts need inline 'file_data' or a 'file_id' from POST /v1/files",
                                Some(&param),
                            )),
                        },
                    },
                }
            })
            .collect(),
    }
}

/// A part naming a Files API file (its type is filled in from the registry when known).
fn file_part(uri: String, mime_type: Option<String>) -> Part {
    Part {
        file_data: Some(crate::gateway::gemini::FileData {
            mime_type,
            file_uri: uri,
        }),
        ..Default::default()
    }
}

pub(super) fn guess_mime(filename: Option<&str>) -> String {
    let ext = filename
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("txt") => "text/plain",
        _ => "application/pdf",
    }
    .to_string()
}

/// `data:<mime>;base64,<data>` → `inlineData`.
pub(super) fn data_url_part(url: &str, param: &str) -> Result<Part, GatewayError> {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            if let Some(mime) = meta.strip_suffix(";base64") {
                let mime = if mime.is_empty() {
                    "application/octet-stream"
                } else {
                    mime
                };
                return Ok(Part {
                    inline_data: Some(Blob {
                        mime_type: mime.to_string(),
                        data: data.to_string(),
                    }),
                    ..Default::default()
                });
            }
        }
        return Err(GatewayError::invalid(
            "data URLs must be base64-encoded (data:<mime>;base64,<data>)",
            Some(param),
        ));
    }
    Err(GatewayError::invalid(
        "only data URLs (data:<mime>;base64,...) are supported for images and files",
        Some(param),
    ))
}

fn function_call_part(call: &crate::gateway::openai::ToolCall, param: &str) -> Result<Part, GatewayError> {
    let args: Value = if call.function.arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&call.function.arguments).map_err(|e| {
            GatewayError::invalid(
                format!("tool call arguments are not valid JSON: {e}"),
                Some(&format!("{param}.tool_calls")),
            )
        })?
    };
    let (id, signature) = match call.id.split_once(SIGNATURE_SEPARATOR) {
        Some((id, sig)) => (id, Some(sig.to_string())),
        None => (call.id.as_str(), None),
    };
    Ok(Part {
        function_call: Some(FunctionCall {
            id: (!id.starts_with("call_") && !id.is_empty()).then(|| id.to_string()),
            name: call.function.name.clone(),
            args,
        }),
        thought_signature: signature,
        ..Default::default()
    })
}

fn strip_signature(id: &str) -> &str {
    id.split_once(SIGNATURE_SEPARATOR).map_or(id, |(id, _)| id)
}

fn generation_config(req: &ChatCompletionRequest) -> Result<GenerationConfig, GatewayError> {
    let mut c = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
        stop_sequences: req.stop.clone().map(|s| s.into_vec()).filter(|v| !v.is_empty()),
        candidate_count: req.n.filter(|n| *n != 1),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        ..Default::default()
    };
    if req.n == Some(0) {
        return Err(GatewayError::invalid("'n' must be at least 1", Some("n")));
    }
    if req.logprobs == Some(true) {
        c.response_logprobs = Some(true);
        c.logprobs = req.top_logprobs;
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => c.response_mime_type = Some("application/json".into()),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            c.response_mime_type = Some("application/json".into());
            c.response_json_schema = json_schema.schema.clone();
        }
    }
    if let Some(effort) = &req.reasoning_effort {
        c.thinking_config = Some(super::thinking_for_effort(effort, &req.model, "reasoning_effort")?);
    }
    Ok(c)
}

fn apply_tools(req: &ChatCompletionRequest, body: &mut GenerateContentRequest) -> Result<(), GatewayError> {
    let mut declarations = Vec::new();
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        let Some(f) = tool.function.as_ref().filter(|_| tool.kind == "function") else {
            return Err(GatewayError::invalid(
                format!(
                    "unsupported tool type {:?}; only \"function\" tools are supported",
                    tool.kind
                ),
                Some(&format!("tools[{i}].type")),
            ));
        };
        let mut decl = Map::new();
        decl.insert("name".into(), Value::String(f.name.clone()));
        if let Some(d) = &f.description {
            decl.insert("description".into(), Value::String(d.clone()));
        }
        let has_params = f.parameters.as_ref().is_some_and(|p| {
            p.get("properties")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
                || p.get("$ref").is_some()
        });
        if let (true, Some(p)) = (has_params, &f.parameters) {
            decl.insert("parametersJsonSchema".into(), p.clone());
        }
        declarations.push(Value::Object(decl));
    }
    if !declarations.is_empty() {
        body.tools = Some(vec![json!({ "functionDeclarations": declarations })]);
    }
    if let Some(choice) = &req.tool_choice {
        let config = match choice {
            ToolChoice::Mode(m) if m == "none" => json!({"mode": "NONE"}),
            ToolChoice::Mode(m) if m == "auto" => json!({"mode": "AUTO"}),
            ToolChoice::Mode(m) if m == "required" => json!({"mode": "ANY"}),
            ToolChoice::Named(named) => json!({"mode": "ANY", "allowedFunctionNames": [named.function.name]}),
            ToolChoice::Mode(other) => {
                return Err(GatewayError::invalid(
                    format!("'tool_choice' must be none, auto, required or a named function; got {other:?}"),
                    Some("tool_choice"),
                ))
            }
        };
        if body.tools.is_some() {
            body.tool_config = Some(json!({ "functionCallingConfig": config }));
        }
    }
    Ok(())
}

/// Gemini-only options passed through an `extra_body` field named `google` (or a top-level
/// `thinking_config`): `thinking_config`, `safety_settings`, `cached_content`, extra `tools`
/// such as `{"google_search": {}}`, and any `generationConfig` field.
fn apply_passthrough(req: &ChatCompletionRequest, body: &mut GenerateContentRequest, config: &mut GenerationConfig) {
    let mut options: Map<String, Value> = Map::new();
    if let Some(Value::Object(google)) = req.extra.get("google") {
        options.extend(google.clone());
    }
    for key in ["thinking_config", "thinkingConfig", "safety_settings", "safetySettings"] {
        if let Some(v) = req.extra.get(key) {
            options.insert(key.to_string(), v.clone());
        }
    }
    for (key, value) in options {
        match camel(&key).as_str() {
            "thinkingConfig" => config.thinking_config = Some(camel_keys(value)),
            "safetySettings" => body.safety_settings = Some(camel_keys(value)),
            "cachedContent" => body.cached_content = value.as_str().map(str::to_string),
            "tools" => {
                let extra = match value {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                body.tools
                    .get_or_insert_with(Vec::new)
                    .extend(extra.into_iter().map(camel_keys));
            }
            "toolConfig" => body.tool_config = Some(camel_keys(value)),
            "generationConfig" => {
                // Merged through JSON so a field set both ways appears once (Google's wins).
                if let (Value::Object(map), Ok(Value::Object(mut merged))) =
                    (camel_keys(value), serde_json::to_value(&*config))
                {
                    merged.extend(map);
                    if let Ok(c) = serde_json::from_value(Value::Object(merged)) {
                        *config = c;
                    }
                }
            }
            "contents" | "systemInstruction" => {
                tracing::debug!(field = %key, "ignoring google.{key}: it comes from the messages");
            }
            other => {
                body.extra.insert(other.to_string(), camel_keys(value));
            }
        }
    }
    let ignored: Vec<&str> = req
        .extra
        .keys()
        .map(String::as_str)
        .filter(|k| {
            !matches!(
                *k,
                "google" | "thinking_config" | "thinkingConfig" | "safety_settings" | "safetySettings"
            )
        })
        .collect();
    super::log_ignored("chat", ignored);
}

fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Converts object keys from snake_case to camelCase, recursively (schemas are left alone).
fn camel_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if k.contains("schema") || k.contains("Schema") {
                        v
                    } else {
                        camel_keys(v)
                    };
                    (camel(&k), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn translate(v: Value) -> Value {
        let (_, body) = to_gemini(&req(v)).unwrap();
        serde_json::to_value(body).unwrap()
    }

    #[test]
    fn roles_system_prompt_and_turn_merging() {
        let out = translate(json!({
            "model": "models/gemini-2.0-flash",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [{"type": "text", "text": "there"}]},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"}
            ]
        }));
        assert_eq!(
            out,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use English."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
                    {"role": "model", "parts": [{"text": "Hello!"}]},
                    {"role": "user", "parts": [{"text": "Bye"}]}
                ]
            })
        );
    }

    #[test]
    fn sampling_parameters_map_to_generation_config() {
        let out = translate(json!({
            "model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}],
            "temperature": 0.3, "top_p": 0.9, "max_tokens": 50, "max_completion_tokens": 70,
            "stop": "END", "n": 2, "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.2,
            "user": "someone", "unknown_field": {"x": 1}
        }));
        assert_eq!(
            out["generationConfig"],
            json!({"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 70, "stopSequences": ["END"],
                   "candidateCount": 2, "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.2})
        );
        assert!(out.get("unknown_field").is_none());
    }

    #[test]
    fn model_names_are_checked() {
        assert_eq!(model_id("models/gemini-2.0-flash").unwrap(), "gemini-2.0-flash");
        assert!(model_id("../../etc").is_err());
        assert!(model_id("gemini:generateContent?x").is_err());
        assert!(model_id("").is_err());
    }

    #[test]
    fn empty_and_system_only_conversations_are_rejected() {
        let e = to_gemini(&req(json!({"model": "m", "messages": []}))).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = to_gemini(&req(
            json!({"model": "m", "messages": [{"role": "system", "content": "s"}]}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("user or assistant"));
    }

    #[test]
    fn images_as_data_urls_become_inline_data() {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}]}));
        assert_eq!(
            out["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        );
        let e = to_gemini(&req(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]})))
        .unwrap_err();
        assert_eq!(e.to_openai().error.param.as_deref(), Some("messages[0].content[0]"));
    }

    #[test]
    fn tool_calls_and_results_round_trip_with_signatures() {
        let out = translate(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc.c2lnbmF0dXJl", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_def", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_abc.c2lnbmF0dXJl", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_def", "content": "noon"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}}},
                  {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "required"}));
        assert_eq!(
            out["contents"][1]["parts"][0],
            json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"})
        );
        assert_eq!(
            out["contents"][1]["parts"][1],
            json!({"functionCall": {"name": "get_time", "args": {}}})
        );
        assert_eq!(
            out["contents"][2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}}
            ]})
        );
        assert_eq!(out["tools"][0]["functionDeclarations"][1], json!({"name": "get_time"}));
        assert_eq!(
            out["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"],
            json!(false)
        );
        assert_eq!(out["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    }

    #[test]
    fn json_modes_and_reasoning_and_passthrough() {
        let out = translate(
            json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}, "strict": true}},
            "reasoning_effort": "low",
            "google": {"safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}], "tools": [{"google_search": {}}]}}),
        );
        assert_eq!(out["generationConfig"]["responseMimeType"], "application/json");
        assert_eq!(
            out["generationConfig"]["responseJsonSchema"]["properties"]["a"]["type"],
            "integer"
        );
        assert_eq!(
            out["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 1024})
        );
        assert_eq!(out["safetySettings"][0]["threshold"], "BLOCK_NONE");
        assert_eq!(out["tools"], json!([{"googleSearch": {}}]));
        let e = to_gemini(&req(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}),
        ))
        .unwrap_err();
        assert_eq!(e.to_openai().error.param.as_deref(), Some("reasoning_effort"));
    }

    #[test]
    fn passthrough_never_duplicates_a_field() {
        let req: ChatCompletionRequest = serde_json::from_value(json!({"model": "m", "temperature": 0.3,
            "messages": [{"role": "user", "content": "x"}],
            "google": {"contents": [], "generation_config": {"temperature": 0.9, "top_k": 5}}}))
        .unwrap();
        let (_, body) = to_gemini(&req).unwrap();
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(text.matches("\"contents\"").count(), 1, "{text}");
        assert_eq!(text.matches("\"temperature\"").count(), 1, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["generationConfig"]["temperature"], 0.9);
        assert_eq!(v["generationConfig"]["topK"], 5);
    }
}
