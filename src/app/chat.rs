//! The chat page: conversation list, messages with streamed replies, composer, settings, and the
//! access-token prompt. State lives in signals and is persisted to localStorage in the browser.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::browser::{self, Abort, StreamEnd};
use super::markdown;
use crate::api::{check_token, get_ui_config, list_models, Conversation, Speaker, Turn, DEFAULT_MODEL};

const STORE_CONVERSATIONS: &str = "gb.conversations.v1";
const STORE_CURRENT: &str = "gb.current.v1";
const STORE_TOKEN: &str = "gb.token";
const STORE_SETTINGS: &str = "gb.settings.v1";

/// Per-browser chat settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ChatSettings {
    model: String,
    system: String,
    temperature: f64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            model: DEFAULT_MODEL.to_string(),
            system: String::new(),
            temperature: 1.0,
        }
    }
}

/// The OpenAI request for a conversation.
fn request_body(turns: &[Turn], settings: &ChatSettings) -> String {
    let mut messages = Vec::new();
    if !settings.system.trim().is_empty() {
        messages.push(json!({"role": "system", "content": settings.system}));
    }
    for t in turns
        .iter()
        .filter(|t| t.error.is_none() && !(t.speaker == Speaker::Assistant && t.text.is_empty()))
    {
        let role = match t.speaker {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
        };
        let content = if t.images.is_empty() {
            Value::String(t.text.clone())
        } else {
            let mut parts = vec![json!({"type": "text", "text": t.text})];
            parts.extend(
                t.images
                    .iter()
                    .map(|url| json!({"type": "image_url", "image_url": {"url": url}})),
            );
            Value::Array(parts)
        };
        messages.push(json!({"role": role, "content": content}));
    }
    json!({"model": settings.model, "messages": messages, "stream": true, "temperature": settings.temperature})
        .to_string()
}

fn title_from(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut title: String = line.chars().take(48).collect();
    if line.chars().count() > 48 {
        title.push('…');
    }
    if title.is_empty() {
        "New chat".into()
    } else {
        title
    }
}

#[component]
pub fn ChatPage() -> impl IntoView {
    let conversations = RwSignal::new(Vec::<Conversation>::new());
    let current = RwSignal::new(None::<String>);
    let draft = RwSignal::new(String::new());
    let pending_images = RwSignal::new(Vec::<String>::new());
    let streaming = RwSignal::new(None::<String>);
    let abort = StoredValue::new_local(None::<Abort>);
    let models = RwSignal::new(vec![DEFAULT_MODEL.to_string()]);
    let settings = RwSignal::new(ChatSettings::default());
    let token = RwSignal::new(None::<String>);
    let token_required = RwSignal::new(false);
    let token_dialog = RwSignal::new(false);
    let token_input = RwSignal::new(String::new());
    let token_error = RwSignal::new(None::<String>);
    let loaded = RwSignal::new(false);
    let sidebar_open = RwSignal::new(false);
    let settings_open = RwSignal::new(false);
    let notice = RwSignal::new(None::<String>);

    let load_models = move || {
        let t = token.get_untracked().unwrap_or_default();
        spawn_local(async move {
            match list_models(t).await {
                Ok(list) if !list.is_empty() => {
                    let chosen = settings.get_untracked().model;
                    if !list.contains(&chosen) {
                        let fallback = if list.iter().any(|m| m == DEFAULT_MODEL) {
                            DEFAULT_MODEL.to_string()
                        } else {
                            list[0].clone()
                        };
                        settings.update(|s| s.model = fallback);
                    }
                    models.set(list);
                }
                Ok(_) => {}
                Err(e) if e.to_string().contains("invalid_token") => {
                    token_error.set(Some(
                        "The stored token is no longer accepted. Enter a valid one.".into(),
                    ));
                    token_dialog.set(true);
                }
                Err(e) => notice.set(Some(format!("Could not load the model list: {e}"))),
            }
        });
    };

    // Load what the browser kept, then ask the server what it needs.
    Effect::new(move |_| {
        if let Some(list) = browser::storage_get(STORE_CONVERSATIONS).and_then(|s| serde_json::from_str(&s).ok()) {
            conversations.set(list);
        }
        if let Some(id) = browser::storage_get(STORE_CURRENT) {
            if conversations.with_untracked(|c| c.iter().any(|x| x.id == id)) {
                current.set(Some(id));
            }
        }
        if let Some(s) = browser::storage_get(STORE_SETTINGS).and_then(|s| serde_json::from_str(&s).ok()) {
            settings.set(s);
        }
        token.set(browser::storage_get(STORE_TOKEN));
        loaded.set(true);
        spawn_local(async move {
            match get_ui_config().await {
                Ok(cfg) => {
                    token_required.set(cfg.token_required);
                    if cfg.token_required && token.get_untracked().is_none() {
                        token_dialog.set(true);
                    } else {
                        load_models();
                    }
                }
                Err(e) => notice.set(Some(format!("The gateway is not reachable: {e}"))),
            }
        });
    });

    // Persist every change once loaded.
    Effect::new(move |_| {
        let list = conversations.get();
        let cur = current.get();
        let s = settings.get();
        if !loaded.get() {
            return;
        }
        if let Ok(json) = serde_json::to_string(&list) {
            browser::storage_set(STORE_CONVERSATIONS, &json);
        }
        match cur {
            Some(id) => browser::storage_set(STORE_CURRENT, &id),
            None => browser::storage_remove(STORE_CURRENT),
        }
        if let Ok(json) = serde_json::to_string(&s) {
            browser::storage_set(STORE_SETTINGS, &json);
        }
    });

    // Keep the newest text in view while a reply streams.
    Effect::new(move |_| {
        streaming.track();
        current.track();
        conversations.track();
        browser::scroll_to_bottom();
    });

    let turns = move || {
        current
            .get()
            .and_then(|id| conversations.with(|c| c.iter().find(|x| x.id == id).map(|x| x.turns.clone())))
            .unwrap_or_default()
    };
    let is_streaming = move || streaming.with(Option::is_some);

    let with_current = move |f: &dyn Fn(&mut Conversation)| {
        if let Some(id) = current.get_untracked() {
            conversations.update(|list| {
                if let Some(c) = list.iter_mut().find(|c| c.id == id) {
                    f(c);
                }
            });
        }
    };

    // Streams the assistant's reply to the conversation as it stands.
    let run_reply = move || {
        let Some(id) = current.get_untracked() else { return };
        let Some(turn_list) = conversations.with_untracked(|c| c.iter().find(|x| x.id == id).map(|x| x.turns.clone()))
        else {
            return;
        };
        let body = request_body(&turn_list, &settings.get_untracked());
        let Some(handle) = Abort::new() else { return };
        abort.set_value(Some(handle.clone()));
        streaming.set(Some(String::new()));
        let t = token.get_untracked();
        spawn_local(async move {
            let end = browser::stream_chat(body, t, handle, |delta| {
                streaming.update(|s| {
                    if let Some(s) = s {
                        s.push_str(delta);
                    }
                })
            })
            .await;
            let text = streaming.get_untracked().unwrap_or_default();
            streaming.set(None);
            abort.set_value(None);
            let mut turn = Turn::assistant(text);
            match end {
                StreamEnd::Done => {}
                StreamEnd::Filtered => {
                    turn.error = Some("Gemini's safety filters stopped this reply.".into());
                }
                StreamEnd::Stopped => turn.stopped = true,
                StreamEnd::Failed(message) => {
                    if message.contains("(HTTP 401)") {
                        token_error.set(Some("The gateway did not accept your token. Enter a valid one.".into()));
                        token_dialog.set(true);
                    }
                    turn.error = Some(message);
                }
            }
            conversations.update(|list| {
                if let Some(c) = list.iter_mut().find(|c| c.id == id) {
                    c.turns.push(turn);
                }
            });
        });
    };

    let send = move || {
        let text = draft.get_untracked().trim().to_string();
        let images = pending_images.get_untracked();
        if (text.is_empty() && images.is_empty()) || is_streaming() {
            return;
        }
        if token_required.get_untracked() && token.get_untracked().is_none() {
            token_dialog.set(true);
            return;
        }
        if current.get_untracked().is_none() {
            let id = browser::new_id();
            let model = Some(settings.get_untracked().model);
            conversations.update(|list| {
                list.push(Conversation {
                    id: id.clone(),
                    title: title_from(&text),
                    turns: Vec::new(),
                    model,
                })
            });
            current.set(Some(id));
        }
        with_current(&|c| {
            if c.turns.is_empty() {
                c.title = title_from(&text);
            }
            c.turns.push(Turn::user(text.clone(), images.clone()));
        });
        draft.set(String::new());
        pending_images.set(Vec::new());
        run_reply();
    };

    let stop = move |_| {
        abort.with_value(|a| {
            if let Some(a) = a {
                a.abort()
            }
        })
    };

    let retry = move |_| {
        if is_streaming() {
            return;
        }
        with_current(&|c| {
            if c.turns.last().is_some_and(|t| t.speaker == Speaker::Assistant) {
                c.turns.pop();
            }
        });
        run_reply();
    };

    let edit_last = move |_| {
        if is_streaming() {
            return;
        }
        with_current(&|c| {
            if let Some(pos) = c.turns.iter().rposition(|t| t.speaker == Speaker::User) {
                let turn = c.turns[pos].clone();
                c.turns.truncate(pos);
                draft.set(turn.text);
                pending_images.set(turn.images);
            }
        });
    };

    let new_chat = move |_| {
        if is_streaming() {
            return;
        }
        current.set(None);
        draft.set(String::new());
        sidebar_open.set(false);
    };

    let submit_token = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let candidate = token_input.get_untracked().trim().to_string();
        if candidate.is_empty() {
            token_error.set(Some(
                "Enter the access token your gateway administrator gave you.".into(),
            ));
            return;
        }
        spawn_local(async move {
            match check_token(candidate.clone()).await {
                Ok(true) => {
                    browser::storage_set(STORE_TOKEN, &candidate);
                    token.set(Some(candidate));
                    token_error.set(None);
                    token_dialog.set(false);
                    token_input.set(String::new());
                    load_models();
                }
                Ok(false) => token_error.set(Some("That token is not accepted by this gateway.".into())),
                Err(e) => token_error.set(Some(format!("Could not check the token: {e}"))),
            }
        });
    };

    let on_files = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            if let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) {
                spawn_local(async move {
                    let urls = browser::read_files(input).await;
                    pending_images.update(|p| p.extend(urls));
                });
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };

    let conversation_list = move || {
        let cur = current.get();
        conversations
            .get()
            .into_iter()
            .rev()
            .map(|c| {
                let active = cur.as_deref() == Some(c.id.as_str());
                let (id_select, id_rename, id_delete) = (c.id.clone(), c.id.clone(), c.id.clone());
                let title = c.title.clone();
                let delete_label = format!("Delete conversation {title}");
                view! {
                    <li class="conversation" class:active=active>
                        <button
                            class="conversation-title"
                            aria-current=if active { Some("page") } else { None }
                            on:click=move |_| {
                                if !is_streaming() {
                                    current.set(Some(id_select.clone()));
                                    sidebar_open.set(false);
                                }
                            }
                        >
                            {c.title}
                        </button>
                        <button
                            class="icon"
                            title="Rename"
                            aria-label=format!("Rename conversation {title}")
                            on:click=move |_| {
                                let old = conversations.with_untracked(|l| l.iter().find(|x| x.id == id_rename).map(|x| x.title.clone())).unwrap_or_default();
                                if let Some(name) = browser::prompt("Rename conversation", &old) {
                                    let name = name.trim().to_string();
                                    if !name.is_empty() {
                                        conversations.update(|l| {
                                            if let Some(x) = l.iter_mut().find(|x| x.id == id_rename) {
                                                x.title = name.clone();
                                            }
                                        });
                                    }
                                }
                            }
                        >
                            "✎"
                        </button>
                        <button
                            class="icon"
                            title="Delete"
                            aria-label=delete_label
                            on:click=move |_| {
                                if is_streaming() || !browser::confirm("Delete this conversation?") {
                                    return;
                                }
                                conversations.update(|l| l.retain(|x| x.id != id_delete));
                                if current.get_untracked().as_deref() == Some(id_delete.as_str()) {
                                    current.set(None);
                                }
                            }
                        >
                            "✕"
                        </button>
                    </li>
                }
            })
            .collect_view()
    };

    let messages = move || {
        let list = turns();
        let last_user = list.iter().rposition(|t| t.speaker == Speaker::User);
        let n = list.len();
        list.into_iter()
            .enumerate()
            .map(|(i, t)| {
                let is_last = i + 1 == n;
                let user = t.speaker == Speaker::User;
                let images = t.images.clone();
                let body = if user {
                    view! { <div class="bubble plain">{t.text.clone()}</div> }.into_any()
                } else {
                    view! { <div class="bubble markdown" inner_html=markdown::render(&t.text)></div> }.into_any()
                };
                view! {
                    <article class="message" class:user=user class:assistant=!user aria-label=if user { "You" } else { "Gemini" }>
                        <div class="avatar" aria-hidden="true">{if user { "You" } else { "G" }}</div>
                        <div class="content">
                            {(!images.is_empty()).then(|| view! {
                                <div class="attachments">
                                    {images.into_iter().map(|src| view! { <img src=src alt="Attached image"/> }).collect_view()}
                                </div>
                            })}
                            {body}
                            {t.stopped.then(|| view! { <p class="meta">"Stopped"</p> })}
                            {t.error.clone().map(|e| view! {
                                <div class="error-box" role="alert">
                                    <strong>"Error: "</strong><span class="error-text">{e}</span>
                                    {is_last.then(|| view! { <button class="retry" on:click=retry>"Retry"</button> })}
                                </div>
                            })}
                            {(user && Some(i) == last_user && !is_streaming()).then(|| view! {
                                <button class="link edit" on:click=edit_last aria-label="Edit and resend your last message">"Edit"</button>
                            })}
                        </div>
                    </article>
                }
            })
            .collect_view()
    };

    view! {
        <div class="app" data-hydrated=move || loaded.get().then_some("true")>
            <aside class="sidebar" class:open=move || sidebar_open.get() aria-label="Conversations">
                <div class="brand">"Gemini Balance"</div>
                <button class="primary new-chat" on:click=new_chat>"+ New chat"</button>
                <nav aria-label="Saved conversations">
                    <ul class="conversations">{conversation_list}</ul>
                </nav>
                <p class="sidebar-note">"Chats are stored in this browser only."</p>
            </aside>
            <div class="scrim" class:open=move || sidebar_open.get() on:click=move |_| sidebar_open.set(false)></div>
            <main class="chat">
                <header class="topbar">
                    <button class="icon menu" aria-label="Show conversations" on:click=move |_| sidebar_open.update(|o| *o = !*o)>"☰"</button>
                    <label class="model-picker">
                        <span class="visually-hidden">"Model"</span>
                        <select
                            aria-label="Model"
                            on:change=move |ev| {
                                let m = event_target_value(&ev);
                                settings.update(|s| s.model = m);
                            }
                        >
                            {move || {
                                let chosen = settings.with(|s| s.model.clone());
                                models.get().into_iter().map(|m| {
                                    let selected = m == chosen;
                                    view! { <option value=m.clone() selected=selected>{m.clone()}</option> }
                                }).collect_view()
                            }}
                        </select>
                    </label>
                    <button
                        class="icon"
                        aria-label="Settings"
                        aria-expanded=move || settings_open.get().to_string()
                        on:click=move |_| settings_open.update(|o| *o = !*o)
                    >
                        "⚙"
                    </button>
                </header>
                <Show when=move || settings_open.get()>
                    <section class="settings" aria-label="Chat settings">
                        <label for="system-prompt">"System prompt"</label>
                        <textarea
                            id="system-prompt"
                            rows="3"
                            placeholder="You are a helpful assistant."
                            prop:value=move || settings.with(|s| s.system.clone())
                            on:input=move |ev| {
                                let v = event_target_value(&ev);
                                settings.update(|s| s.system = v);
                            }
                        ></textarea>
                        <label for="temperature">
                            "Temperature " <output>{move || format!("{:.1}", settings.with(|s| s.temperature))}</output>
                        </label>
                        <input
                            id="temperature"
                            type="range"
                            min="0"
                            max="2"
                            step="0.1"
                            prop:value=move || settings.with(|s| s.temperature.to_string())
                            on:input=move |ev| {
                                if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                                    settings.update(|s| s.temperature = v);
                                }
                            }
                        />
                        <button class="link" on:click=move |_| { browser::storage_remove(STORE_TOKEN); token.set(None); if token_required.get_untracked() { token_dialog.set(true); } }>
                            "Forget access token"
                        </button>
                    </section>
                </Show>
                {move || notice.get().map(|n| view! { <p class="notice" role="status">{n}</p> })}
                <div class="messages" role="log" aria-live="polite" aria-label="Messages" on:click=move |ev| browser::handle_copy_click(&ev)>
                    <Show when=move || turns().is_empty() && !is_streaming()>
                        <div class="empty">
                            <h1>"How can I help?"</h1>
                            <p>"Ask anything. Replies stream from Gemini through your gateway's key pool."</p>
                        </div>
                    </Show>
                    {messages}
                    {move || streaming.get().map(|text| view! {
                        <article class="message assistant streaming" aria-label="Gemini" aria-busy="true">
                            <div class="avatar" aria-hidden="true">"G"</div>
                            <div class="content">
                                <div class="bubble markdown" inner_html=markdown::render(&text)></div>
                                {text.is_empty().then(|| view! { <span class="typing" aria-label="Gemini is replying">"●●●"</span> })}
                            </div>
                        </article>
                    })}
                </div>
                <form class="composer" on:submit=move |ev: leptos::ev::SubmitEvent| { ev.prevent_default(); send(); }>
                    {move || {
                        let imgs = pending_images.get();
                        (!imgs.is_empty()).then(|| view! {
                            <div class="pending">
                                {imgs.into_iter().enumerate().map(|(i, src)| view! {
                                    <span class="thumb">
                                        <img src=src alt=format!("Attachment {}", i + 1)/>
                                        <button type="button" class="icon remove" aria-label=format!("Remove attachment {}", i + 1)
                                            on:click=move |_| pending_images.update(|p| { if i < p.len() { p.remove(i); } })>"✕"</button>
                                    </span>
                                }).collect_view()}
                            </div>
                        })
                    }}
                    <div class="composer-row">
                        <label class="icon attach" title="Attach images">
                            <span class="visually-hidden">"Attach images"</span>
                            <input type="file" accept="image/*" multiple on:change=on_files/>
                            <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
                                <path d="M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.5 3.5 0 0 1 5 5l-8.6 8.6a2 2 0 0 1-2.8-2.8l7.9-7.9"/>
                            </svg>
                        </label>
                        <label for="prompt" class="visually-hidden">"Message"</label>
                        <textarea
                            id="prompt"
                            rows="1"
                            placeholder="Message Gemini (Enter to send, Shift+Enter for a new line)"
                            prop:value=move || draft.get()
                            on:input=move |ev| draft.set(event_target_value(&ev))
                            on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                                if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                                    ev.prevent_default();
                                    send();
                                }
                            }
                        ></textarea>
                        <Show
                            when=is_streaming
                            fallback=move || view! { <button type="submit" class="primary send" aria-label="Send">"Send"</button> }
                        >
                            <button type="button" class="stop" on:click=stop aria-label="Stop generating">"Stop"</button>
                        </Show>
                    </div>
                </form>
            </main>
            <Show when=move || token_dialog.get()>
                <div class="modal-backdrop">
                    <form class="modal" role="dialog" aria-modal="true" aria-labelledby="token-title" on:submit=submit_token>
                        <h2 id="token-title">"Access token required"</h2>
                        <p>"This gateway only answers clients with an access token. It is kept in this browser."</p>
                        <label for="token-input">"Access token"</label>
                        <input
                            id="token-input"
                            type="password"
                            autocomplete="off"
                            prop:value=move || token_input.get()
                            on:input=move |ev| token_input.set(event_target_value(&ev))
                        />
                        {move || token_error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
                        <button type="submit" class="primary">"Continue"</button>
                    </form>
                </div>
            </Show>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_carries_system_model_images_and_skips_failed_turns() {
        let mut failed = Turn::assistant(String::new());
        failed.error = Some("boom".into());
        let turns = vec![
            Turn::user("hi".into(), vec!["data:image/png;base64,AAA=".into()]),
            Turn::assistant("hello".into()),
            Turn::user("again".into(), vec![]),
            failed,
        ];
        let s = ChatSettings {
            model: "gemini-2.5-pro".into(),
            system: "Be brief".into(),
            temperature: 0.5,
        };
        let body: Value = serde_json::from_str(&request_body(&turns, &s)).unwrap();
        assert_eq!(body["model"], "gemini-2.5-pro");
        assert_eq!(body["stream"], true);
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "Be brief"}));
        assert_eq!(
            body["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAA="
        );
        assert_eq!(body["messages"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn titles_are_short_first_lines() {
        assert_eq!(title_from("hello\nworld"), "hello");
        assert_eq!(title_from(""), "New chat");
        assert!(title_from(&"x".repeat(100)).ends_with('…'));
    }
}
