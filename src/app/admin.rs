//! The admin page (`/admin`): the key pool at a glance (states, reasons, rates, a chart of the
//! last hour) and its management (add, remove, disable, enable, reset, validate), and the request
//! log (the Logs tab, see [`super::logs`]). It talks to the
//! admin JSON API with the admin token, which the browser keeps; the server checks it on every call
//! and never sends a full key.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::browser;
use super::logs::{KeyStatsPanel, LogsView};
use crate::api::admin::{AddKeysResult, KeyView, PinProxy, PoolSummary, ProxyRef, ProxyView, ValidationProgress};

const STORE_ADMIN_TOKEN: &str = "gb.admin-token";

fn ago(secs: Option<u64>) -> String {
    let Some(t) = secs else { return "never".into() };
    let now = (js_now() / 1000.0) as u64;
    let d = now.saturating_sub(t);
    match d {
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86_399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

fn js_now() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |r| format!("{:.0}%", r * 100.0))
}

fn state_label(state: &str) -> &'static str {
    match state {
        "active" => "Active",
        "half_open" => "Trial",
        "cooling_down" => "Cooling down",
        "rate_limited" => "Rate limited",
        "disabled" => "Disabled",
        "probing" => "Probing",
        "manual_disabled" => "Disabled by you",
        _ => "Unknown",
    }
}

#[derive(Clone, Copy, PartialEq)]
enum SortBy {
    State,
    Requests,
    Success,
    Failures,
    LastUsed,
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let token = RwSignal::new(None::<String>);
    let token_input = RwSignal::new(String::new());
    let login_error = RwSignal::new(None::<String>);
    let keys = RwSignal::new(Vec::<KeyView>::new());
    let summary = RwSignal::new(None::<PoolSummary>);
    let proxies = RwSignal::new(Vec::<ProxyView>::new());
    let progress = RwSignal::new(None::<ValidationProgress>);
    let message = RwSignal::new(None::<String>);
    let filter = RwSignal::new(String::new());
    let state_filter = RwSignal::new(String::new());
    let sort = RwSignal::new(SortBy::State);
    let new_keys = RwSignal::new(String::new());
    let loaded = RwSignal::new(false);
    let logs_tab = RwSignal::new(false);
    // The key (id, masked) whose last 24 hours the Logs tab shows, from the key list's "Stats".
    let stats_key = RwSignal::new(None::<(String, String)>);
    let log_key = RwSignal::new(String::new());

    let refresh = move || {
        let Some(t) = token.get_untracked() else { return };
        spawn_local(async move {
            match browser::admin_call("GET", "/admin/api/keys", &t, None).await {
                Ok((200, body)) => {
                    if let Ok(list) = serde_json::from_str::<Vec<KeyView>>(&body) {
                        keys.set(list);
                    }
                }
                Ok((401, _)) => {
                    browser::storage_remove(STORE_ADMIN_TOKEN);
                    token.set(None);
                    login_error.set(Some("The admin token is no longer accepted.".into()));
                    return;
                }
                Ok((status, body)) => message.set(Some(browser::error_message(status, &body))),
                Err(e) => message.set(Some(e)),
            }
            if let Ok((200, body)) = browser::admin_call("GET", "/admin/api/summary", &t, None).await {
                summary.set(serde_json::from_str(&body).ok());
            }
            if let Ok((200, body)) = browser::admin_call("GET", "/admin/api/proxies", &t, None).await {
                proxies.set(serde_json::from_str(&body).unwrap_or_default());
            }
            if let Ok((200, body)) = browser::admin_call("GET", "/admin/api/validate", &t, None).await {
                let p: Option<ValidationProgress> = serde_json::from_str(&body).ok();
                progress.set(p.filter(|p| p.total > 0));
            }
        });
    };

    Effect::new(move |_| {
        token.set(browser::storage_get(STORE_ADMIN_TOKEN));
        loaded.set(true);
        refresh();
        if let Ok(handle) = set_interval_with_handle(refresh, std::time::Duration::from_millis(2000)) {
            on_cleanup(move || handle.clear());
        }
    });

    let login = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let candidate = token_input.get_untracked().trim().to_string();
        spawn_local(async move {
            match browser::admin_call("GET", "/admin/api/summary", &candidate, None).await {
                Ok((200, _)) => {
                    browser::storage_set(STORE_ADMIN_TOKEN, &candidate);
                    token.set(Some(candidate));
                    login_error.set(None);
                    token_input.set(String::new());
                    refresh();
                }
                Ok((status, body)) => login_error.set(Some(browser::error_message(status, &body))),
                Err(e) => login_error.set(Some(e)),
            }
        });
    };

    let act = move |method: &'static str, path: String, body: Option<String>, done: &'static str| {
        let Some(t) = token.get_untracked() else { return };
        spawn_local(async move {
            match browser::admin_call(method, &path, &t, body).await {
                Ok((s, body)) if s < 300 => {
                    let text = match serde_json::from_str::<AddKeysResult>(&body) {
                        Ok(r) => format!("Added {} key(s), {} already present.", r.added, r.duplicates),
                        Err(_) => match serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v.get("works").and_then(|w| w.as_bool()))
                        {
                            Some(true) => "The key works.".to_string(),
                            Some(false) => "The key was rejected by Gemini.".to_string(),
                            None => done.to_string(),
                        },
                    };
                    message.set(Some(text));
                }
                Ok((s, body)) => message.set(Some(browser::error_message(s, &body))),
                Err(e) => message.set(Some(e)),
            }
            refresh();
        });
    };

    let visible = move || {
        let f = filter.get().to_lowercase();
        let sf = state_filter.get();
        let mut list: Vec<KeyView> = keys
            .get()
            .into_iter()
            .filter(|k| {
                f.is_empty()
                    || k.masked.to_lowercase().contains(&f)
                    || k.id.contains(&f)
                    || k.proxy.as_ref().is_some_and(|p| p.contains(&f))
                    || k.reason.as_ref().is_some_and(|r| r.message.to_lowercase().contains(&f))
            })
            .filter(|k| sf.is_empty() || k.state == sf)
            .collect();
        match sort.get() {
            SortBy::State => list.sort_by(|a, b| {
                (a.state != "active", &a.state)
                    .cmp(&(b.state != "active", &b.state))
                    .reverse()
            }),
            SortBy::Requests => list.sort_by_key(|k| std::cmp::Reverse(k.requests_day)),
            SortBy::Success => list.sort_by(|a, b| {
                a.success_rate_day
                    .unwrap_or(1.0)
                    .total_cmp(&b.success_rate_day.unwrap_or(1.0))
            }),
            SortBy::Failures => list.sort_by_key(|k| std::cmp::Reverse(k.consecutive_failures)),
            SortBy::LastUsed => list.sort_by_key(|k| std::cmp::Reverse(k.last_used)),
        }
        list
    };

    let header = move |label: &'static str, by: SortBy| {
        view! {
            <th scope="col" aria-sort=move || if sort.get() == by { "descending" } else { "none" }>
                <button class="sort" on:click=move |_| sort.set(by)>{label}</button>
            </th>
        }
    };

    // Proxy cell: the key's proxy (host:port only) and a choice to pin it to another.
    let proxy_cell = move |k: &KeyView| {
        let id = k.id.clone();
        let current = k.proxy.clone().unwrap_or_default();
        let pinned = k.proxy_pinned;
        let select_id = format!("proxy-{id}");
        let options = proxies
            .get_untracked()
            .into_iter()
            .map(|p| {
                let selected = pinned && p.host == current;
                view! { <option value=p.index.to_string() selected=selected>{format!("pin to {}", p.host)}</option> }
            })
            .collect_view();
        view! {
            <td class="proxy">
                <code>{current.clone()}</code>
                {pinned.then(|| view! { <span class="muted small">" pinned"</span> })}
                <label class="visually-hidden" for=select_id.clone()>"Proxy for this key"</label>
                <select id=select_id class="small" on:change=move |ev| {
                    let value = event_target_value(&ev);
                    let pin = PinProxy { proxy: value.parse::<usize>().ok().map(ProxyRef::Index) };
                    let body = serde_json::to_string(&pin).ok();
                    act("POST", format!("/admin/api/keys/{id}/proxy"), body, "Proxy changed.");
                }>
                    <option value="" selected=!pinned>"by hash"</option>
                    {options}
                </select>
            </td>
        }
    };

    let rows = move || {
        let show_proxy = !proxies.get().is_empty();
        visible()
            .into_iter()
            .map(|k| {
                let proxy = show_proxy.then(|| proxy_cell(&k));
                let id = k.id.clone();
                let (id_toggle, id_reset, id_validate, id_remove) = (id.clone(), id.clone(), id.clone(), id.clone());
                let stats_target = (id.clone(), k.masked.clone());
                let manual = k.state == "manual_disabled";
                let reason = k.reason.clone().map(|r| format!("{}: {}", r.class.replace('_', " "), r.message));
                let wait = k.available_in_secs.filter(|s| *s > 0).map(|s| format!("back in {s}s"));
                view! {
                    <tr data-key-id=id.clone() class=format!("state-{}", k.state)>
                        <td><code>{k.masked.clone()}</code></td>
                        <td>
                            <span class=format!("badge {}", k.state)>{state_label(&k.state)}</span>
                            {wait.map(|w| view! { <span class="muted small">" "{w}</span> })}
                            {reason.map(|r| view! { <div class="reason small">{r}</div> })}
                        </td>
                        <td class="num">{k.consecutive_failures}</td>
                        <td class="num">{k.requests_hour}" / "{k.requests_day}</td>
                        <td class="num">{pct(k.success_rate_hour)}" / "{pct(k.success_rate_day)}</td>
                        <td class="num">{k.tokens_total}</td>
                        <td class="num">{k.avg_latency_ms_hour.map_or_else(|| "–".to_string(), |l| format!("{l} ms"))}</td>
                        <td>{ago(k.last_used)}</td>
                        {proxy}
                        <td class="actions">
                            <button on:click=move |_| {
                                let action = if manual { "enable" } else { "disable" };
                                act("POST", format!("/admin/api/keys/{id_toggle}/{action}"), None, if manual { "Key enabled." } else { "Key disabled." })
                            }>{if manual { "Enable" } else { "Disable" }}</button>
                            <button on:click=move |_| act("POST", format!("/admin/api/keys/{id_reset}/reset"), None, "Key reset.")>"Reset"</button>
                            <button on:click=move |_| act("POST", format!("/admin/api/keys/{id_validate}/validate"), None, "Validated.")>"Validate"</button>
                            <button on:click=move |_| {
                                log_key.set(stats_target.1.clone());
                                stats_key.set(Some(stats_target.clone()));
                                logs_tab.set(true);
                            }>"Stats"</button>
                            <button class="danger" on:click=move |_| {
                                if browser::confirm("Remove this key from the pool?") {
                                    act("DELETE", format!("/admin/api/keys/{id_remove}"), None, "Key removed.")
                                }
                            }>"Remove"</button>
                        </td>
                    </tr>
                }
            })
            .collect_view()
    };

    let chart = move || {
        let s = summary.get()?;
        let max = s.timeline.iter().copied().max().unwrap_or(0).max(1) as f64;
        let n = s.timeline.len().max(1) as f64;
        let bars = s
            .timeline
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let h = (*v as f64 / max) * 56.0;
                view! { <rect x=format!("{:.1}", i as f64 * 300.0 / n) y=format!("{:.1}", 60.0 - h) width=format!("{:.1}", 300.0 / n - 1.0) height=format!("{h:.1}")></rect> }
            })
            .collect_view();
        Some(view! {
            <svg class="chart" viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="Requests per minute over the last hour">
                {bars}
            </svg>
        })
    };

    view! {
        <div class="admin" data-hydrated=move || loaded.get().then_some("true")>
            <header class="admin-top">
                <a href="/" class="brand">"Gemini Balance"</a>
                <h1>{move || if logs_tab.get() { "Request log" } else { "Key pool" }}</h1>
                <Show when=move || token.get().is_some()>
                    <button class="link" on:click=move |_| { browser::storage_remove(STORE_ADMIN_TOKEN); token.set(None); }>"Sign out"</button>
                </Show>
            </header>
            <Show
                when=move || token.get().is_some()
                fallback=move || view! {
                    <form class="modal admin-login" on:submit=login aria-labelledby="admin-login-title">
                        <h2 id="admin-login-title">"Admin sign-in"</h2>
                        <p>"Enter the gateway's ADMIN_TOKEN. It stays in this browser."</p>
                        <label for="admin-token">"Admin token"</label>
                        <input id="admin-token" type="password" autocomplete="off"
                            prop:value=move || token_input.get() on:input=move |ev| token_input.set(event_target_value(&ev))/>
                        {move || login_error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
                        <button type="submit" class="primary">"Sign in"</button>
                    </form>
                }
            >
                <nav class="tabs" role="tablist" aria-label="Admin views">
                    <button role="tab" aria-selected=move || (!logs_tab.get()).to_string() on:click=move |_| logs_tab.set(false)>"Keys"</button>
                    <button role="tab" aria-selected=move || logs_tab.get().to_string() on:click=move |_| logs_tab.set(true)>"Logs"</button>
                </nav>
                <Show when=move || logs_tab.get()>
                    {move || stats_key.get().map(|(id, _)| view! {
                        <KeyStatsPanel token=token key_id=id on_close=Callback::new(move |_| stats_key.set(None))/>
                    })}
                    <LogsView token=token key_filter=log_key/>
                </Show>
                <div class="keys-view" class:hidden=move || logs_tab.get()>
                <section class="cards" aria-label="Pool totals">
                    {move || summary.get().map(|s| {
                        let states = s.keys_by_state.iter().map(|(st, n)| view! { <span class=format!("badge {st}")>{state_label(st)}" "{*n}</span> }).collect_view();
                        let attempts: u64 = s.attempts_by_outcome.iter().map(|(_, n)| *n).sum::<u64>().max(1);
                        let errors = s
                            .attempts_by_outcome
                            .iter()
                            .filter(|(o, _)| o != "success")
                            .map(|(o, n)| {
                                let share = *n as f64 * 100.0 / attempts as f64;
                                view! { <li>{o.replace('_', " ")}": "{*n}" ("{format!("{share:.1}%")}" of attempts)"</li> }
                            })
                            .collect_view();
                        let replica = s.replica.clone().map(|r| {
                            let link = if r.redis_up { "shared through Redis" } else { "Redis unreachable: local view" };
                            view! { <p class="muted small replica">"Replica "<strong>{r.name}</strong>" · "{link}</p> }
                        });
                        view! {
                            <div class="card"><h3>"Keys"</h3><p class="big">{s.keys_total}</p><div class="states">{states}</div>{replica}</div>
                            <div class="card"><h3>"Requests / min"</h3><p class="big">{s.requests_last_minute}</p><p class="muted small">{s.requests_last_hour}" in the last hour"</p></div>
                            <div class="card"><h3>"Success (1h) · errors by class"</h3><p class="big">{pct(s.success_rate_last_hour)}</p><ul class="errors small">{errors}</ul></div>
                        }
                    })}
                    <div class="card wide"><h3>"Last hour"</h3>{chart}</div>
                    {move || {
                        let list = proxies.get();
                        (!list.is_empty()).then(|| {
                            let items = list
                                .into_iter()
                                .map(|p| {
                                    let cooling = p.cooling_in_secs.map(|s| format!(" · cooling down, {s}s left"));
                                    let last = p.last_error.map(|e| format!(" · last error: {}", e.message));
                                    view! {
                                        <li>
                                            <code>{p.host}</code>" · "{p.keys}" key(s) · "{p.successes}" ok · "{p.failures}" failed"
                                            {cooling}<span class="muted">{last}</span>
                                        </li>
                                    }
                                })
                                .collect_view();
                            view! { <div class="card wide"><h3>"Egress proxies"</h3><ul class="proxies small">{items}</ul></div> }
                        })
                    }}
                </section>
                {move || message.get().map(|m| view! { <p class="notice ok" role="status">{m}</p> })}
                <section class="toolbar" aria-label="Filter and actions">
                    <label class="visually-hidden" for="key-filter">"Filter keys"</label>
                    <input id="key-filter" type="search" placeholder="Filter by key, id or error" prop:value=move || filter.get() on:input=move |ev| filter.set(event_target_value(&ev))/>
                    <label class="visually-hidden" for="state-filter">"State"</label>
                    <select id="state-filter" on:change=move |ev| state_filter.set(event_target_value(&ev))>
                        <option value="">"All states"</option>
                        {["active", "half_open", "cooling_down", "rate_limited", "disabled", "probing", "manual_disabled"].into_iter().map(|s| view! { <option value=s>{state_label(s)}</option> }).collect_view()}
                    </select>
                    <button on:click=move |_| act("POST", "/admin/api/validate".into(), None, "Validation started.")>"Validate all"</button>
                    {move || progress.get().map(|p| view! {
                        <span class="progress" role="status">
                            {if p.running { "Validating " } else { "Validated " }}{p.done}" / "{p.total}" · "{p.working}" working · "{p.failing}" failing · "{p.inconclusive}" inconclusive"
                        </span>
                    })}
                </section>
                <div class="table-wrap">
                    <table class="keys">
                        <thead>
                            <tr>
                                <th scope="col">"Key"</th>
                                {header("State", SortBy::State)}
                                {header("Failures", SortBy::Failures)}
                                {header("Requests 1h / 24h", SortBy::Requests)}
                                {header("Success 1h / 24h", SortBy::Success)}
                                <th scope="col">"Tokens"</th>
                                <th scope="col">"Latency"</th>
                                {header("Last used", SortBy::LastUsed)}
                                {move || (!proxies.get().is_empty()).then(|| view! { <th scope="col">"Proxy"</th> })}
                                <th scope="col">"Actions"</th>
                            </tr>
                        </thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
                <form class="add-keys" on:submit=move |ev: leptos::ev::SubmitEvent| {
                    ev.prevent_default();
                    let text = new_keys.get_untracked();
                    if !text.trim().is_empty() {
                        let body = serde_json::json!({"keys": text}).to_string();
                        act("POST", "/admin/api/keys".into(), Some(body), "Keys added.");
                        new_keys.set(String::new());
                    }
                }>
                    <label for="new-keys">"Add keys (one per line or comma-separated)"</label>
                    <textarea id="new-keys" rows="3" prop:value=move || new_keys.get() on:input=move |ev| new_keys.set(event_target_value(&ev))></textarea>
                    <button type="submit" class="primary">"Add keys"</button>
                </form>
                </div>
            </Show>
        </div>
    }
}
