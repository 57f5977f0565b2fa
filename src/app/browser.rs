//! Browser-only effects for the UI: localStorage, the streaming chat request (fetch + SSE over
//! the raw axum route), aborting it, reading attached files, the clipboard. On the server these
//! are inert stand-ins, so components compile for both sides.

/// How a streamed reply ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEnd {
    Done,
    /// Finished with `finish_reason: content_filter`.
    Filtered,
    Stopped,
    Failed(String),
}

/// Pulls complete SSE events out of a byte buffer; returns each event's `data` payload.
pub fn take_events(buf: &mut Vec<u8>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
        let event: Vec<u8> = buf.drain(..pos + 2).collect();
        let text = String::from_utf8_lossy(&event);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if !data.is_empty() {
            out.push(data.join("\n"));
        }
    }
    out
}

/// The message of an OpenAI-shaped error body, or the body itself.
pub fn error_message(status: u16, body: &str) -> String {
    let parsed: Option<String> = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_string));
    match parsed {
        Some(m) => format!("{m} (HTTP {status})"),
        None if body.trim().is_empty() => format!("The gateway answered HTTP {status}"),
        None => format!("{} (HTTP {status})", body.trim()),
    }
}

#[cfg(feature = "hydrate")]
mod imp {
    use super::{error_message, take_events, StreamEnd};
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;

    fn storage() -> Option<web_sys::Storage> {
        web_sys::window()?.local_storage().ok()?
    }

    pub fn storage_get(key: &str) -> Option<String> {
        storage()?.get_item(key).ok()?
    }

    pub fn storage_set(key: &str, value: &str) {
        if let Some(s) = storage() {
            let _ = s.set_item(key, value);
        }
    }

    pub fn storage_remove(key: &str) {
        if let Some(s) = storage() {
            let _ = s.remove_item(key);
        }
    }

    pub fn copy_to_clipboard(text: &str) {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(text);
        }
    }

    pub fn prompt(message: &str, default: &str) -> Option<String> {
        web_sys::window()?
            .prompt_with_message_and_default(message, default)
            .ok()?
    }

    pub fn confirm(message: &str) -> bool {
        web_sys::window()
            .and_then(|w| w.confirm_with_message(message).ok())
            .unwrap_or(false)
    }

    /// A fresh id for a conversation.
    pub fn new_id() -> String {
        format!(
            "c{}{:06}",
            js_sys::Date::now() as u64,
            (js_sys::Math::random() * 1e6) as u64
        )
    }

    /// Scrolls the message list to its end.
    pub fn scroll_to_bottom() {
        let el = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector(".messages").ok().flatten());
        if let Some(el) = el {
            el.set_scroll_top(el.scroll_height());
        }
    }

    /// Handles clicks on the copy buttons of code blocks (event delegation on the message list).
    pub fn handle_copy_click(ev: &leptos::ev::MouseEvent) {
        let Some(target) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else {
            return;
        };
        if !target.class_list().contains("copy") {
            return;
        }
        let code = target
            .closest(".codeblock")
            .ok()
            .flatten()
            .and_then(|block| block.query_selector("pre").ok().flatten())
            .and_then(|pre| pre.text_content());
        if let Some(code) = code {
            copy_to_clipboard(&code);
            target.set_text_content(Some("Copied"));
        }
    }

    /// Cancels an in-flight request.
    #[derive(Clone)]
    pub struct Abort(web_sys::AbortController);

    impl Abort {
        pub fn new() -> Option<Self> {
            web_sys::AbortController::new().ok().map(Abort)
        }
        pub fn abort(&self) {
            self.0.abort();
        }
        fn aborted(&self) -> bool {
            self.0.signal().aborted()
        }
    }

    /// POSTs a chat request with `stream: true` and calls `on_delta` with each piece of text as
    /// it arrives.
    pub async fn stream_chat(
        body: String,
        token: Option<String>,
        abort: Abort,
        mut on_delta: impl FnMut(&str),
    ) -> StreamEnd {
        let mut builder = gloo_net::http::Request::post("/api/v1/chat/completions")
            .header("content-type", "application/json")
            .abort_signal(Some(&abort.0.signal()));
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            builder = builder.header("authorization", &format!("Bearer {t}"));
        }
        let request = match builder.body(body) {
            Ok(r) => r,
            Err(e) => return StreamEnd::Failed(e.to_string()),
        };
        let resp = match request.send().await {
            Ok(r) => r,
            Err(_) if abort.aborted() => return StreamEnd::Stopped,
            Err(e) => return StreamEnd::Failed(format!("Could not reach the gateway: {e}")),
        };
        if !resp.ok() {
            let text = resp.text().await.unwrap_or_default();
            return StreamEnd::Failed(error_message(resp.status(), &text));
        }
        let Some(stream) = resp.body() else {
            return StreamEnd::Failed("The gateway sent an empty answer".into());
        };
        let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let mut buf = Vec::new();
        let mut filtered = false;
        loop {
            let chunk = match JsFuture::from(reader.read()).await {
                Ok(c) => c,
                Err(_) if abort.aborted() => return StreamEnd::Stopped,
                Err(_) => return StreamEnd::Failed("The connection to the gateway was lost".into()),
            };
            let done = js_sys::Reflect::get(&chunk, &"done".into())
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true);
            if done {
                break;
            }
            if let Ok(value) = js_sys::Reflect::get(&chunk, &"value".into()) {
                buf.extend(js_sys::Uint8Array::new(&value).to_vec());
            }
            for data in take_events(&mut buf) {
                if data == "[DONE]" {
                    return if filtered { StreamEnd::Filtered } else { StreamEnd::Done };
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) else {
                    continue;
                };
                if let Some(message) = v.pointer("/error/message").and_then(|m| m.as_str()) {
                    return StreamEnd::Failed(message.to_string());
                }
                filtered |= v.pointer("/choices/0/finish_reason").and_then(|f| f.as_str()) == Some("content_filter");
                if let Some(text) = v.pointer("/choices/0/delta/content").and_then(|c| c.as_str()) {
                    if !text.is_empty() {
                        on_delta(text);
                    }
                }
            }
        }
        if abort.aborted() {
            StreamEnd::Stopped
        } else {
            StreamEnd::Failed("The reply ended before it was complete".into())
        }
    }

    /// A JSON request to the admin API with the admin token; returns status and body text.
    pub async fn admin_call(
        method: &str,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> Result<(u16, String), String> {
        let auth = format!("Bearer {token}");
        let builder = match method {
            "POST" => gloo_net::http::Request::post(path),
            "DELETE" => gloo_net::http::Request::delete(path),
            _ => gloo_net::http::Request::get(path),
        }
        .header("authorization", &auth);
        let resp = match body {
            Some(b) => {
                builder
                    .header("content-type", "application/json")
                    .body(b)
                    .map_err(|e| e.to_string())?
                    .send()
                    .await
            }
            None => builder.send().await,
        }
        .map_err(|e| format!("Could not reach the gateway: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, text))
    }

    /// Reads the files chosen in a file input as data URLs.
    pub async fn read_files(input: web_sys::HtmlInputElement) -> Vec<String> {
        let mut out = Vec::new();
        let Some(files) = input.files() else { return out };
        for i in 0..files.length() {
            let Some(file) = files.get(i) else { continue };
            let Ok(reader) = web_sys::FileReader::new() else {
                continue;
            };
            let promise = js_sys::Promise::new(&mut |resolve, reject| {
                reader.set_onload(Some(&resolve));
                reader.set_onerror(Some(&reject));
            });
            if reader.read_as_data_url(&file).is_err() {
                continue;
            }
            if JsFuture::from(promise).await.is_ok() {
                if let Some(url) = reader.result().ok().and_then(|r| r.as_string()) {
                    out.push(url);
                }
            }
        }
        input.set_value("");
        out
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::StreamEnd;

    pub fn storage_get(_key: &str) -> Option<String> {
        None
    }
    pub fn storage_set(_key: &str, _value: &str) {}
    pub fn storage_remove(_key: &str) {}
    pub fn copy_to_clipboard(_text: &str) {}
    pub fn prompt(_message: &str, _default: &str) -> Option<String> {
        None
    }
    pub fn confirm(_message: &str) -> bool {
        false
    }

    pub fn new_id() -> String {
        "c0".into()
    }
    pub fn scroll_to_bottom() {}
    pub fn handle_copy_click(_ev: &leptos::ev::MouseEvent) {}

    #[derive(Clone)]
    pub struct Abort;

    impl Abort {
        pub fn new() -> Option<Self> {
            None
        }
        pub fn abort(&self) {}
    }

    pub async fn admin_call(
        _method: &str,
        _path: &str,
        _token: &str,
        _body: Option<String>,
    ) -> Result<(u16, String), String> {
        Err("the admin view runs in the browser".into())
    }

    pub async fn stream_chat(
        _body: String,
        _token: Option<String>,
        _abort: Abort,
        _on_delta: impl FnMut(&str),
    ) -> StreamEnd {
        StreamEnd::Failed("streaming runs in the browser".into())
    }
}

pub use imp::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_blank_lines() {
        let mut buf = b"data: {\"a\":1}\n\ndata: [DONE]\n\ndata: par".to_vec();
        assert_eq!(take_events(&mut buf), vec!["{\"a\":1}", "[DONE]"]);
        assert_eq!(buf, b"data: par");
    }

    #[test]
    fn error_messages_come_from_openai_bodies() {
        assert_eq!(
            error_message(401, r#"{"error":{"message":"bad token"}}"#),
            "bad token (HTTP 401)"
        );
        assert_eq!(error_message(502, ""), "The gateway answered HTTP 502");
    }
}
