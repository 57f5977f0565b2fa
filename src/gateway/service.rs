//! The gateway's operations as handlers call them: chat (whole or streamed), model listing.
//! Glue between translation and the upstream client; still free of HTTP-framework types.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::aliases::ModelAliases;
use super::error::GatewayError;
use super::fold::{ResponseMerger, TypedMerger};
use super::gemini::{GenerateContentResponse, ModelList};
use super::media::MediaFetcher;
use super::openai::{ChatCompletion, ChatCompletionRequest, ModelListResponse, ModelObject};
use super::response_store::{Owner, ResponseStore};
use super::suffixes::{self, Suffixes};
use super::text_event::EventReader;
use super::translate::responses::{self, ResponsesEncoder, ResponsesRequest};
use super::translate::stream::{ChunkJson, StreamTranslator};
use super::translate::{self, anthropic, request, response};
use super::upstream::{Call, Upstream};

pub use super::translate::{Frame, StreamEncoder};

/// Chat Completions chunks: `data: {chunk}` per event, a usage chunk on request, `[DONE]`.
struct ChatEncoder(StreamTranslator, ChunkJson);

impl ChatEncoder {
    fn new(translator: StreamTranslator) -> Self {
        let json = translator.chunk_json();
        Self(translator, json)
    }
}

impl StreamEncoder for ChatEncoder {
    fn event(&mut self, event: &GenerateContentResponse, out: &mut Vec<Frame>) {
        if let Some(chunk) = self.0.on_event(event) {
            match self.1.write(&chunk) {
                Ok(json) => out.push(Frame::data(json)),
                Err(e) => out.push(self.fault("internal_error", &e.to_string())),
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), String> {
        if !self.0.is_finished() {
            return Err("the Gemini stream ended before a finish reason".into());
        }
        if let Some(json) = self.0.usage_chunk().and_then(|c| serde_json::to_string(&c).ok()) {
            out.push(Frame::data(json));
        }
        out.push(Frame::data("[DONE]"));
        Ok(())
    }

    fn fault(&mut self, code: &'static str, message: &str) -> Frame {
        Frame::data(error_json(message, code))
    }

    fn total_tokens(&self) -> Option<u64> {
        self.0.usage().map(|u| u64::from(u.total_tokens))
    }
}

#[derive(Debug, Clone)]
pub struct Gateway {
    upstream: Arc<Upstream>,
    media: MediaFetcher,
    aliases: Arc<ModelAliases>,
    responses: Arc<ResponseStore>,
    /// Whether model-name suffixes (`-search`, `-thinking`, …) are read (`MODEL_SUFFIXES`).
    suffixes: bool,
}

fn generate_path(model: &str, action: &str) -> String {
    format!("/v1beta/models/{model}:{action}")
}

/// The streaming call every generation goes upstream as.
fn stream_call<T: serde::Serialize>(model: &str, body: &T) -> Result<Call, GatewayError> {
    Ok(Call::post(generate_path(model, "streamGenerateContent"), model, json_bytes(body)?).with_query("alt=sse"))
}

fn json_bytes<T: serde::Serialize>(value: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::invalid(format!("cannot encode the request: {e}"), None))
}

impl Gateway {
    pub fn new(upstream: Arc<Upstream>, media: MediaFetcher) -> Self {
        Self {
            upstream,
            media,
            aliases: Arc::default(),
            responses: Arc::default(),
            suffixes: true,
        }
    }

    /// Reads model-name suffixes (on by default).
    pub fn with_suffixes(mut self, on: bool) -> Self {
        self.suffixes = on;
        self
    }

    /// The Gemini model for a client's model name and what its suffixes ask for: suffixes are
    /// read off the name, the rest goes through the aliases, and the alias target may carry
    /// suffixes of its own (`claude-*=gemini-2.5-pro-thinking`).
    fn target(&self, requested: &str) -> Result<(String, Suffixes), GatewayError> {
        if !self.suffixes {
            return Ok((self.aliases.resolve(requested)?, Suffixes::default()));
        }
        let (base, asked) = suffixes::split(requested);
        let (model, implied) = suffixes::split(&self.aliases.resolve(&base)?);
        Ok((
            model,
            Suffixes {
                search: asked.search || implied.search,
                thinking: asked.thinking.or(implied.thinking),
                image: asked.image || implied.image,
            },
        ))
    }

    /// Resolves a translated request's model and finishes its body for that model: suffixes
    /// applied, unsigned function calls signed where the model requires it.
    fn prepare(
        &self,
        requested: &str,
        body: &mut super::gemini::GenerateContentRequest,
    ) -> Result<String, GatewayError> {
        let (model, wanted) = self.target(requested)?;
        wanted.apply(body, &model);
        translate::sign_calls(body, &model);
        self.upstream.resources().fill_file_types(body);
        Ok(model)
    }

    /// Where Responses API answers are kept for `previous_response_id`.
    pub fn with_response_store(mut self, store: ResponseStore) -> Self {
        self.responses = Arc::new(store);
        self
    }

    /// Maps client model names to Gemini models on every route.
    pub fn with_aliases(mut self, aliases: ModelAliases) -> Self {
        self.aliases = Arc::new(aliases);
        self
    }

    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// A whole (non-streaming) chat completion.
    pub async fn chat(&self, req: &ChatCompletionRequest) -> Result<ChatCompletion, GatewayError> {
        let resolved = self.media.inline_remote_media(req).await?;
        let req = resolved.as_ref().unwrap_or(req);
        let (model, mut body) = request::to_gemini(req)?;
        let model = self.prepare(&model, &mut body)?;
        // Asked as a stream and assembled: a slow answer is not mistaken for a dead key.
        let call = stream_call(&model, &body)?;
        // An empty answer is retried once (on the next key in rotation) before it is returned.
        // (One call site: each `.await` of `generate` would take its own room in this future.)
        let mut retried = false;
        let answer = loop {
            let answer = self.upstream.generate::<TypedMerger>(&call).await?;
            if retried || !response::is_empty(&answer.response) {
                break answer;
            }
            tracing::warn!(key = %answer.key, model = %model, "empty answer from Gemini; retrying once");
            retried = true;
        };
        let parsed = &answer.response;
        let completion = response::to_openai(parsed, &req.model, translate::unix_now())?;
        if let Some(u) = &completion.usage {
            self.upstream
                .pool()
                .record_tokens(answer.key_id, u64::from(u.total_tokens));
            super::metrics::RequestTrace::update(|t| t.tokens = u64::from(u.total_tokens));
        }
        Ok(completion)
    }

    /// A streamed chat completion. Errors before the first upstream event are returned as `Err`
    /// (the client gets a normal error response); later ones end the stream with an error item.
    pub async fn chat_stream(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<impl Stream<Item = Frame> + Send + 'static, GatewayError> {
        let resolved = self.media.inline_remote_media(req).await?;
        let req = resolved.as_ref().unwrap_or(req);
        let (model, mut body) = request::to_gemini(req)?;
        let model = self.prepare(&model, &mut body)?;
        let call = stream_call(&model, &body)?;
        let opened = self.upstream.open_stream(&call).await?;
        let (events, key_id) = (opened.events, opened.key_id);
        // A prompt blocked outright is known from the first event, before anything was sent to
        // the client: answer it like the non-streaming route does (400 content_filter).
        if let Some(data) = events.first() {
            if let Ok(event) = EventReader::default().read(data) {
                if event.candidates.is_empty() {
                    response::to_openai(event, &req.model, 0)?;
                }
            }
        }
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        let translator = StreamTranslator::new(
            translate::new_id("chatcmpl-"),
            req.model.clone(),
            translate::unix_now(),
            include_usage,
        );
        Ok(encode_stream(
            events,
            ChatEncoder::new(translator),
            self.upstream.pool().clone(),
            key_id,
            super::metrics::RequestTrace::stream_end(),
        ))
    }

    /// Fetches the http(s) media an Anthropic request names (within the media limits and the
    /// private-address guard); `None` when it names none.
    async fn anthropic_media(
        &self,
        req: &anthropic::MessagesRequest,
    ) -> Result<Option<anthropic::MessagesRequest>, GatewayError> {
        let urls = anthropic::remote_media(&req.messages);
        if urls.is_empty() {
            return Ok(None);
        }
        let data = self.media.inline_urls(&urls).await?;
        let mut req = req.clone();
        anthropic::inline_media(&mut req.messages, data);
        Ok(Some(req))
    }

    /// An Anthropic Messages answer, whole.
    pub async fn messages(&self, req: &anthropic::MessagesRequest) -> Result<serde_json::Value, GatewayError> {
        let resolved = self.anthropic_media(req).await?;
        let req = resolved.as_ref().unwrap_or(req);
        let (model, mut body) = anthropic::to_gemini(req)?;
        let model = self.prepare(&model, &mut body)?;
        let answer = self
            .upstream
            .generate::<TypedMerger>(&stream_call(&model, &body)?)
            .await?;
        let parsed = answer.response;
        if let Some(tokens) = parsed.usage_metadata.as_ref().map(|u| u64::from(u.total_token_count)) {
            self.upstream.pool().record_tokens(answer.key_id, tokens);
            super::metrics::RequestTrace::update(|t| t.tokens = tokens);
        }
        Ok(anthropic::to_anthropic(&parsed, &req.model))
    }

    /// An Anthropic Messages stream: `message_start` … `message_stop`, event by event.
    pub async fn messages_stream(
        &self,
        req: &anthropic::MessagesRequest,
    ) -> Result<impl Stream<Item = Frame> + Send + 'static, GatewayError> {
        let resolved = self.anthropic_media(req).await?;
        let req = resolved.as_ref().unwrap_or(req);
        let (model, mut body) = anthropic::to_gemini(req)?;
        let model = self.prepare(&model, &mut body)?;
        let opened = self.upstream.open_stream(&stream_call(&model, &body)?).await?;
        Ok(encode_stream(
            opened.events,
            anthropic::AnthropicEncoder::new(&req.model),
            self.upstream.pool().clone(),
            opened.key_id,
            super::metrics::RequestTrace::stream_end(),
        ))
    }

    /// A Responses request made ready: the stored conversation it continues, its media fetched,
    /// translated for the resolved model, with an encoder that stores the answer when asked to.
    async fn prepare_responses(
        &self,
        req: &ResponsesRequest,
        owner: &Owner,
    ) -> Result<(Call, ResponsesEncoder), GatewayError> {
        let (model, wanted) = self.target(&request::model_id(&req.model)?)?;
        let history = match &req.previous_response_id {
            Some(id) => self.responses.history(owner, id)?,
            None => Vec::new(),
        };
        let mut input = req.input_items();
        let urls = responses::remote_media(&input);
        if !urls.is_empty() {
            let data = self.media.inline_urls(&urls).await?;
            responses::inline_media(&mut input, data);
        }
        let (mut body, ctx) = responses::to_gemini(req, &model, &history, &input)?;
        wanted.apply(&mut body, &model);
        let call = stream_call(&model, &body)?;
        let mut encoder = ResponsesEncoder::new(ctx);
        if req.stores() {
            let store = self.responses.clone();
            let owner = owner.clone();
            let previous = req.previous_response_id.clone();
            encoder = encoder.on_complete(Box::new(move |response: &serde_json::Value| {
                let Some(id) = response["id"].as_str() else { return };
                let mut items = input;
                items.extend(response["output"].as_array().into_iter().flatten().cloned());
                store.put(&owner, id, previous.as_deref(), items);
            }));
        }
        Ok((call, encoder))
    }

    /// A Responses API answer, whole. `owner` scopes stored responses to the client's token.
    pub async fn responses(&self, req: &ResponsesRequest, owner: &Owner) -> Result<serde_json::Value, GatewayError> {
        let (call, encoder) = self.prepare_responses(req, owner).await?;
        let answer = self.upstream.generate::<TypedMerger>(&call).await?;
        let parsed = answer.response;
        let response = encoder.whole(&parsed);
        if let Some(tokens) = response["usage"]["total_tokens"].as_u64() {
            self.upstream.pool().record_tokens(answer.key_id, tokens);
            super::metrics::RequestTrace::update(|t| t.tokens = tokens);
        }
        Ok(response)
    }

    /// A Responses API stream: `response.created` … `response.completed`, event by event.
    pub async fn responses_stream(
        &self,
        req: &ResponsesRequest,
        owner: &Owner,
    ) -> Result<impl Stream<Item = Frame> + Send + 'static, GatewayError> {
        let (call, encoder) = self.prepare_responses(req, owner).await?;
        let opened = self.upstream.open_stream(&call).await?;
        Ok(encode_stream(
            opened.events,
            encoder,
            self.upstream.pool().clone(),
            opened.key_id,
            super::metrics::RequestTrace::stream_end(),
        ))
    }

    /// Anthropic `count_tokens` through Gemini's `countTokens`.
    pub async fn count_tokens(&self, req: &anthropic::CountTokensRequest) -> Result<u64, GatewayError> {
        let (model, mut body) = anthropic::count_tokens_body(req)?;
        let model = self.target(&model)?.0;
        body["generateContentRequest"]["model"] = serde_json::Value::String(format!("models/{model}"));
        let answer = self
            .upstream
            .send(&Call::post(
                generate_path(&model, "countTokens"),
                &model,
                json_bytes(&body)?,
            ))
            .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| GatewayError::BadUpstreamResponse {
                message: format!("unreadable countTokens answer from Gemini: {e}"),
            })?;
        Ok(v.get("totalTokens").and_then(serde_json::Value::as_u64).unwrap_or(0))
    }

    /// OpenAI image generation (and edits, given `edit` images): Imagen's `:predict` or a Gemini
    /// image model, by model name. Several images from a Gemini model are asked for at once.
    pub async fn images(
        &self,
        req: &translate::images::ImageRequest,
        edit: &[(String, String)],
    ) -> Result<serde_json::Value, GatewayError> {
        use translate::images::{self, Backend};
        let n = images::check(req)?;
        let requested = req.model.clone().unwrap_or_else(|| images::DEFAULT_MODEL.to_string());
        let model = self.target(&request::model_id(&requested)?)?.0;
        let data = match images::backend(&model) {
            Backend::Imagen if !edit.is_empty() => {
                return Err(GatewayError::invalid(
                    "Imagen models cannot edit images; use a Gemini image model such as gemini-2.5-flash-image",
                    Some("model"),
                ))
            }
            Backend::Imagen => {
                let body = images::imagen_body(req, n)?;
                // `:predict` has no streaming form: Google sends the headers only with the
                // images, so they are awaited up to the total timeout (a dead key is found out
                // only then).
                let call = Call::post(generate_path(&model, "predict"), &model, json_bytes(&body)?).slow();
                images::from_imagen(&self.upstream.send(&call).await?.body)?
            }
            Backend::Gemini => {
                let call = stream_call(&model, &images::gemini_body(req, edit)?)?;
                let answers =
                    futures::future::try_join_all((0..n).map(|_| self.upstream.generate::<TypedMerger>(&call))).await?;
                let mut data = Vec::new();
                for answer in answers {
                    data.extend(images::from_gemini(&answer.response)?);
                }
                data
            }
        };
        Ok(serde_json::json!({ "created": translate::unix_now(), "data": data }))
    }

    /// OpenAI speech through a Gemini TTS model: the audio and its content type.
    pub async fn speech(
        &self,
        req: &translate::speech::SpeechRequest,
    ) -> Result<(Vec<u8>, &'static str), GatewayError> {
        let model = self.target(&request::model_id(&req.model)?)?.0;
        let (body, format) = translate::speech::to_gemini(req)?;
        // Asked as a stream and folded, like chat: a key that sends no headers is given up after
        // the first-byte timeout, while a long text still completes within the total timeout.
        let answer = self
            .upstream
            .generate::<TypedMerger>(&stream_call(&model, &body)?)
            .await?;
        let parsed = answer.response;
        if let Some(tokens) = parsed.usage_metadata.as_ref().map(|u| u64::from(u.total_token_count)) {
            self.upstream.pool().record_tokens(answer.key_id, tokens);
        }
        Ok((translate::speech::audio(&parsed, format)?, format.content_type()))
    }

    /// OpenAI embeddings through `batchEmbedContents`.
    pub async fn embeddings(
        &self,
        req: &translate::embeddings::EmbeddingRequest,
    ) -> Result<translate::embeddings::EmbeddingResponse, GatewayError> {
        let (model, texts, body) = translate::embeddings::to_gemini(req)?;
        let model = self.target(&model)?.0;
        let call = Call::post(generate_path(&model, "batchEmbedContents"), &model, json_bytes(&body)?);
        let answer = self.upstream.send(&call).await?;
        let out = translate::embeddings::to_openai(&answer.body, req, &texts)?;
        self.upstream
            .pool()
            .record_tokens(answer.key_id, u64::from(out.usage.total_tokens));
        Ok(out)
    }

    /// One model in OpenAI's shape.
    pub async fn model(&self, id: &str) -> Result<ModelObject, GatewayError> {
        let requested = request::model_id(id)?;
        let target = self.target(&requested)?.0;
        let answer = self
            .upstream
            .send(&Call::get(format!("/v1beta/models/{target}")))
            .await?;
        let m: super::gemini::Model =
            serde_json::from_slice(&answer.body).map_err(|e| GatewayError::BadUpstreamResponse {
                message: format!("unreadable model from Gemini: {e}"),
            })?;
        let id = if requested == target {
            m.name.trim_start_matches("models/").to_string()
        } else {
            requested
        };
        Ok(ModelObject {
            id,
            object: "model",
            created: 0,
            owned_by: "google",
        })
    }

    /// The upstream's models in OpenAI's list shape (ids without `models/`).
    pub async fn models(&self) -> Result<ModelListResponse, GatewayError> {
        let mut data = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..20 {
            let mut query = "pageSize=1000".to_string();
            if let Some(t) = &page_token {
                query.push_str("&pageToken=");
                query.push_str(&urlencode(t));
            }
            let answer = self
                .upstream
                .send(&Call::get("/v1beta/models").with_query(query))
                .await?;
            let list: ModelList =
                serde_json::from_slice(&answer.body).map_err(|e| GatewayError::BadUpstreamResponse {
                    message: format!("unreadable model list from Gemini: {e}"),
                })?;
            // Models Google lists are real names: they may become metric labels.
            for m in &list.models {
                self.upstream.metrics().served(m.name.trim_start_matches("models/"));
            }
            for m in list.models {
                let id = m.name.trim_start_matches("models/").to_string();
                // Generation models also under their suffixed names.
                let generates = m.supported_generation_methods.iter().any(|g| g == "generateContent");
                if self.suffixes && generates && id.starts_with("gemini-") {
                    data.extend(suffixes::LISTED.iter().map(|suffix| ModelObject {
                        id: format!("{id}{suffix}"),
                        object: "model",
                        created: 0,
                        owned_by: "google",
                    }));
                }
                data.push(ModelObject {
                    id,
                    object: "model",
                    created: 0,
                    owned_by: "google",
                });
            }
            page_token = list.next_page_token.filter(|t| !t.is_empty());
            if page_token.is_none() {
                break;
            }
        }
        // Exact aliases are names clients may use too.
        data.extend(self.aliases.exact().map(|alias| ModelObject {
            id: alias.to_string(),
            object: "model",
            created: 0,
            owned_by: "gemini-balance",
        }));
        Ok(ModelListResponse { object: "list", data })
    }
}

/// A Gemini-native call passed through unchanged: the client's path, query and body go upstream
/// with a pool key instead of the client's token.
#[derive(Debug, Clone)]
pub struct NativeCall {
    /// `v1beta` or `v1`.
    pub version: String,
    /// `None` for the model list.
    pub model: Option<String>,
    /// `generateContent`, `streamGenerateContent`, …; `None` for GET.
    pub action: Option<String>,
    /// The client's query without `key` and `alt`.
    pub query: Vec<(String, String)>,
    pub body: Option<Bytes>,
}

pub const NATIVE_ACTIONS: &[&str] = &[
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
];

impl NativeCall {
    fn to_call(&self, stream: bool) -> Call {
        let mut path = format!("/{}/models", self.version);
        if let Some(m) = &self.model {
            path.push('/');
            path.push_str(m);
        }
        if let Some(a) = &self.action {
            path.push(':');
            path.push_str(a);
        }
        let mut query: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        if stream {
            query.push("alt=sse".into());
        }
        Call {
            method: if self.body.is_some() {
                reqwest::Method::POST
            } else {
                reqwest::Method::GET
            },
            path,
            query: (!query.is_empty()).then(|| query.join("&")),
            body: self.body.clone(),
            model: self.model.clone().unwrap_or_default(),
            slow: false,
            pin: None,
            prefer: None,
            headers: Vec::new(),
            content_type: None,
        }
    }
}

impl Gateway {
    /// A native, non-streaming call: the upstream's 2xx body. `generateContent` is asked as a
    /// stream and folded into the same response (slow answers are not taken for dead keys);
    /// every other call passes through unchanged.
    pub async fn native(&self, call: &NativeCall) -> Result<Bytes, GatewayError> {
        let aliased = self.aliased(call)?;
        let call = aliased.as_ref().unwrap_or(call);
        if call.action.as_deref() == Some("generateContent") {
            let mut streamed = call.clone();
            streamed.action = Some("streamGenerateContent".into());
            return Ok(self
                .upstream
                .generate::<ResponseMerger>(&streamed.to_call(true))
                .await?
                .into_bytes());
        }
        Ok(self.upstream.send(&call.to_call(false)).await?.body)
    }

    /// A native stream: each upstream event's data, unchanged, as it arrives.
    pub async fn native_stream(&self, call: &NativeCall) -> Result<super::upstream::EventStream, GatewayError> {
        let aliased = self.aliased(call)?;
        let call = aliased.as_ref().unwrap_or(call);
        let opened = self.upstream.open_stream(&call.to_call(true)).await?;
        let end = super::metrics::RequestTrace::stream_end();
        let events = opened.events.into_stream().inspect(move |item| {
            if let Err(fault) = item {
                end.set_error(if fault.is_stall() {
                    "upstream_timeout"
                } else {
                    "upstream_stream_error"
                });
            }
        });
        Ok(Box::pin(events))
    }
}

impl Gateway {
    /// The call with its model alias resolved, when that changes it.
    fn aliased(&self, call: &NativeCall) -> Result<Option<NativeCall>, GatewayError> {
        let Some(model) = &call.model else {
            return Ok(None);
        };
        let target = self.aliases.resolve(model)?;
        Ok((target != *model).then(|| NativeCall {
            model: Some(target),
            ..call.clone()
        }))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn error_json(message: &str, code: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": code}})
        .to_string()
}

/// Encodes upstream events for the client as each arrives: nothing is held back or re-chunked.
/// Shared by every dialect; the encoder decides the frames.
pub fn encode_stream<E: StreamEncoder>(
    events: super::upstream::Events,
    encoder: E,
    pool: Arc<super::pool::KeyPool>,
    key_id: u64,
    end: Arc<super::metrics::StreamEnd>,
) -> impl Stream<Item = Frame> + Send + 'static {
    struct State<E> {
        events: super::upstream::Events,
        reader: EventReader,
        encoder: E,
        ended: bool,
        pending: std::collections::VecDeque<Frame>,
        out: Vec<Frame>,
        pool: Arc<super::pool::KeyPool>,
        key_id: u64,
        end: Arc<super::metrics::StreamEnd>,
    }
    let state = State {
        events,
        reader: EventReader::default(),
        encoder,
        ended: false,
        pending: std::collections::VecDeque::new(),
        out: Vec::new(),
        pool,
        key_id,
        end,
    };
    // Boxed: the state (the last event read among it) passes from frame to frame, and a pointer
    // moves cheaply.
    futures::stream::unfold(Box::new(state), |mut st| async move {
        loop {
            if let Some(frame) = st.pending.pop_front() {
                return Some((frame, st));
            }
            if st.ended {
                return None;
            }
            match st.events.next().await {
                Some(Ok(data)) => match st.reader.read(&data) {
                    Ok(event) => {
                        st.encoder.event(event, &mut st.out);
                        st.pending.extend(st.out.drain(..));
                    }
                    Err(e) => {
                        st.ended = true;
                        st.end.set_error("bad_upstream_response");
                        let msg = format!("unreadable stream event from Gemini: {e}");
                        return Some((st.encoder.fault("upstream_error", &msg), st));
                    }
                },
                Some(Err(fault)) => {
                    st.ended = true;
                    let code = if fault.is_stall() {
                        "upstream_timeout"
                    } else {
                        "upstream_stream_error"
                    };
                    st.end.set_error(code);
                    return Some((st.encoder.fault(code, fault.message()), st));
                }
                None => {
                    st.ended = true;
                    if let Some(tokens) = st.encoder.total_tokens() {
                        st.pool.record_tokens(st.key_id, tokens);
                        st.end.set_tokens(tokens);
                    }
                    if let Err(msg) = st.encoder.finish(&mut st.out) {
                        st.end.set_error("upstream_stream_error");
                        return Some((st.encoder.fault("upstream_stream_error", &msg), st));
                    }
                    st.pending.extend(st.out.drain(..));
                }
            }
        }
    })
}
