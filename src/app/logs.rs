//! The admin page's log view: the request log newest first with filters and keyset paging, a
//! request's detail (Google's message with keys masked, and its attempts), and one key's last 24
//! hours. It reads the admin JSON API with the admin token; keys only ever appear masked.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::browser;
use crate::api::admin::{KeyStats, LogDetail, LogEntry, LogPage};

/// Percent-encodes a query value (UTF-8 bytes; unreserved characters stay).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
pub fn utc(secs: u64) -> String {
    let secs = secs as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

/// Unix seconds of a `datetime-local` value (`YYYY-MM-DDTHH:MM[:SS]`), read as UTC.
fn parse_utc(v: &str) -> Option<u64> {
    let (date, time) = v.trim().split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min) = (t.next()??, t.next()??);
    let s = t.next().flatten().unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 59 {
        return None;
    }
    u64::try_from(days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s).ok()
}

/// The filters as typed in the form.
#[derive(Clone, Default, PartialEq)]
struct Filters {
    from: String,
    to: String,
    key: String,
    model: String,
    route: String,
    status: String,
    error_class: String,
}

impl Filters {
    /// The query string (without `before`), or what is wrong with the form.
    fn query(&self) -> Result<String, String> {
        let mut parts: Vec<String> = Vec::new();
        for (name, value) in [("from", &self.from), ("to", &self.to)] {
            if !value.trim().is_empty() {
                let secs = parse_utc(value).ok_or_else(|| format!("'{value}' is not a date and time."))?;
                parts.push(format!("{name}={secs}"));
            }
        }
        if !self.status.trim().is_empty() {
            let status: u16 = self
                .status
                .trim()
                .parse()
                .map_err(|_| format!("'{}' is not an HTTP status.", self.status.trim()))?;
            parts.push(format!("status={status}"));
        }
        for (name, value) in [
            ("key", &self.key),
            ("model", &self.model),
            ("route", &self.route),
            ("error_class", &self.error_class),
        ] {
            if !value.trim().is_empty() {
                parts.push(format!("{name}={}", encode(value.trim())));
            }
        }
        Ok(parts.join("&"))
    }
}

/// The request error classes the gateway logs (`success`: none).
const ERROR_CLASSES: &[&str] = &[
    "success",
    "rate_limited",
    "upstream_failed",
    "upstream_timeout",
    "upstream_rejected",
    "no_key_available",
    "model_unavailable",
    "model_not_found",
    "invalid_request",
    "content_filter",
    "bad_upstream_response",
    "too_large",
    "upstream_stream_error",
    "client_closed",
    "http_error",
];

/// One key's last 24 hours: totals, errors by class and requests per hour.
#[component]
pub fn KeyStatsPanel(token: RwSignal<Option<String>>, key_id: String, on_close: Callback<()>) -> impl IntoView {
    let stats = RwSignal::new(None::<KeyStats>);
    let error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let Some(t) = token.get_untracked() else { return };
        let id = key_id.clone();
        spawn_local(async move {
            match browser::admin_call("GET", &format!("/admin/api/keys/{}/stats", encode(&id)), &t, None).await {
                Ok((200, body)) => stats.set(serde_json::from_str(&body).ok()),
                Ok((status, body)) => error.set(Some(browser::error_message(status, &body))),
                Err(e) => error.set(Some(e)),
            }
        });
    });
    view! {
        <section class="card key-stats" aria-label="Key statistics">
            <div class="panel-head">
                <h3>"Last 24 hours"</h3>
                <button class="link" on:click=move |_| on_close.run(())>"Close"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
            {move || stats.get().map(|s| {
                let max = s.hours.iter().map(|h| h.requests).max().unwrap_or(0).max(1) as f64;
                let bars = s.hours.iter().enumerate().map(|(i, h)| {
                    let total = h.requests as f64 / max * 56.0;
                    let bad = h.errors as f64 / max * 56.0;
                    let x = i as f64 * 300.0 / 24.0;
                    let w = 300.0 / 24.0 - 1.0;
                    view! {
                        <rect x=format!("{x:.1}") y=format!("{:.1}", 60.0 - total) width=format!("{w:.1}") height=format!("{total:.1}")>
                            <title>{format!("{} UTC: {} requests, {} errors", utc(h.start), h.requests, h.errors)}</title>
                        </rect>
                        <rect class="bad" x=format!("{x:.1}") y=format!("{:.1}", 60.0 - bad) width=format!("{w:.1}") height=format!("{bad:.1}")></rect>
                    }
                }).collect_view();
                let classes = s.errors_by_class.iter().map(|(c, n)| view! { <li>{c.replace('_', " ")}": "{*n}</li> }).collect_view();
                view! {
                    <p><code>{s.masked.clone()}</code>" · "<strong class="stat-requests">{s.requests}</strong>" requests · "
                        <strong class="stat-errors">{s.errors}</strong>" errors"</p>
                    <svg class="chart" viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="Requests and errors per hour over the last 24 hours">
                        {bars}
                    </svg>
                    <ul class="errors small">{classes}</ul>
                }
            })}
        </section>
    }
}

/// The request log: filters, a page of rows, older/newer, and the detail of the chosen row.
#[component]
pub fn LogsView(token: RwSignal<Option<String>>, key_filter: RwSignal<String>) -> impl IntoView {
    let filters = RwSignal::new(Filters::default());
    let page = RwSignal::new(None::<LogPage>);
    // The `before` cursor of each page shown so far: the last is the current page's.
    let cursors = RwSignal::new(vec![None::<String>]);
    let error = RwSignal::new(None::<String>);
    let detail = RwSignal::new(None::<LogDetail>);
    let loading = RwSignal::new(false);

    let load = move |before: Option<String>| {
        let Some(t) = token.get_untracked() else { return };
        let mut query = match filters.get_untracked().query() {
            Ok(q) => q,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        if let Some(b) = &before {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!("before={}", encode(b)));
        }
        loading.set(true);
        spawn_local(async move {
            match browser::admin_call("GET", &format!("/admin/api/logs?{query}"), &t, None).await {
                Ok((200, body)) => match serde_json::from_str::<LogPage>(&body) {
                    Ok(p) => {
                        page.set(Some(p));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(e.to_string())),
                },
                Ok((status, body)) => error.set(Some(browser::error_message(status, &body))),
                Err(e) => error.set(Some(e)),
            }
            loading.set(false);
        });
    };

    let search = move || {
        cursors.set(vec![None]);
        detail.set(None);
        load(None);
    };

    // The key list's "Stats" sets the key filter: show that key's requests.
    Effect::new(move |_| {
        let key = key_filter.get();
        filters.update(|f| f.key = key);
        search();
    });

    let open = move |id: i64| {
        let Some(t) = token.get_untracked() else { return };
        spawn_local(async move {
            match browser::admin_call("GET", &format!("/admin/api/logs/{id}"), &t, None).await {
                Ok((200, body)) => detail.set(serde_json::from_str(&body).ok()),
                Ok((status, body)) => error.set(Some(browser::error_message(status, &body))),
                Err(e) => error.set(Some(e)),
            }
        });
    };

    let field = move |id: &'static str,
                      label: &'static str,
                      placeholder: &'static str,
                      get: fn(&Filters) -> String,
                      set: fn(&mut Filters, String)| {
        view! {
            <label class="field">
                <span class="small muted">{label}</span>
                <input id=id type="text" placeholder=placeholder prop:value=move || get(&filters.get())
                    on:input=move |ev| { let v = event_target_value(&ev); filters.update(|f| set(f, v)); }/>
            </label>
        }
    };

    let rows = move || {
        page.get()
            .map(|p| p.rows)
            .unwrap_or_default()
            .into_iter()
            .map(|r: LogEntry| {
                let id = r.id;
                let failed = !r.error_class.is_empty();
                let selected = move || detail.get().is_some_and(|d| d.entry.id == id);
                view! {
                    <tr class=move || format!("log-row{}{}", if failed { " failed" } else { "" }, if selected() { " selected" } else { "" })
                        data-log-id=id tabindex="0" on:click=move |_| open(id)
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Enter" { open(id) }>
                        <td class="nowrap">{utc(r.at)}</td>
                        <td><code>{r.route.clone()}</code></td>
                        <td>{r.model.clone()}</td>
                        <td><code>{r.key.clone()}</code></td>
                        <td class="num">{r.status}</td>
                        <td>{if failed { view! { <span class="badge disabled">{r.error_class.replace('_', " ")}</span> }.into_any() } else { view! { <span class="muted">"ok"</span> }.into_any() }}</td>
                        <td class="num">{r.attempts}</td>
                        <td class="num">{format!("{} ms", r.latency_ms)}</td>
                        <td class="num">{r.tokens}</td>
                    </tr>
                }
            })
            .collect_view()
    };

    let detail_view = move || {
        detail.get().map(|d| {
            let attempts = d
                .attempts
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    view! {
                        <tr class="attempt">
                            <td class="num">{i + 1}</td>
                            <td><code>{a.key.clone()}</code></td>
                            <td>{a.outcome.replace('_', " ")}</td>
                            <td class="num">{a.status}</td>
                            <td class="num">{format!("{} ms", a.latency_ms)}</td>
                        </tr>
                    }
                })
                .collect_view();
            let message = (!d.message.is_empty()).then(|| view! { <pre class="log-message">{d.message.clone()}</pre> });
            view! {
                <section class="card log-detail" aria-label="Request detail">
                    <div class="panel-head">
                        <h3>"Request "<code>{d.entry.request_id.clone()}</code></h3>
                        <button class="link" on:click=move |_| detail.set(None)>"Close"</button>
                    </div>
                    <p class="small muted">{utc(d.entry.at)}" UTC · "{d.entry.route.clone()}" · "{d.entry.model.clone()}" · HTTP "{d.entry.status}" · "{d.entry.latency_ms}" ms"</p>
                    {message}
                    <table class="keys attempts">
                        <thead><tr><th scope="col">"#"</th><th scope="col">"Key"</th><th scope="col">"Outcome"</th><th scope="col">"Status"</th><th scope="col">"Latency"</th></tr></thead>
                        <tbody>{attempts}</tbody>
                    </table>
                </section>
            }
        })
    };

    view! {
        <section class="logs">
            <form class="toolbar log-filters" aria-label="Filter the request log" on:submit=move |ev: leptos::ev::SubmitEvent| { ev.prevent_default(); search(); }>
                <label class="field">
                    <span class="small muted">"From (UTC)"</span>
                    <input id="log-from" type="datetime-local" prop:value=move || filters.get().from on:input=move |ev| { let v = event_target_value(&ev); filters.update(|f| f.from = v); }/>
                </label>
                <label class="field">
                    <span class="small muted">"To (UTC)"</span>
                    <input id="log-to" type="datetime-local" prop:value=move || filters.get().to on:input=move |ev| { let v = event_target_value(&ev); filters.update(|f| f.to = v); }/>
                </label>
                {field("log-key", "Key", "AIza…x7Q or id", |f| f.key.clone(), |f, v| f.key = v)}
                {field("log-model", "Model", "gemini-2.5-flash", |f| f.model.clone(), |f, v| f.model = v)}
                {field("log-route", "Route", "/v1/chat/completions", |f| f.route.clone(), |f, v| f.route = v)}
                {field("log-status", "Status", "429", |f| f.status.clone(), |f, v| f.status = v)}
                <label class="field">
                    <span class="small muted">"Error class"</span>
                    <select id="log-class" on:change=move |ev| { let v = event_target_value(&ev); filters.update(|f| f.error_class = v); }>
                        <option value="">"Any"</option>
                        {ERROR_CLASSES.iter().map(|c| view! { <option value=*c>{c.replace('_', " ")}</option> }).collect_view()}
                    </select>
                </label>
                <button type="submit" class="primary">"Search"</button>
                <button type="button" on:click=move |_| { filters.set(Filters::default()); key_filter.set(String::new()); search(); }>"Clear"</button>
            </form>
            {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
            <div class="log-layout">
                <div class="table-wrap">
                    <table class="keys log">
                        <thead>
                            <tr>
                                <th scope="col">"Time (UTC)"</th>
                                <th scope="col">"Route"</th>
                                <th scope="col">"Model"</th>
                                <th scope="col">"Key"</th>
                                <th scope="col">"Status"</th>
                                <th scope="col">"Error"</th>
                                <th scope="col">"Attempts"</th>
                                <th scope="col">"Latency"</th>
                                <th scope="col">"Tokens"</th>
                            </tr>
                        </thead>
                        <tbody>{rows}</tbody>
                    </table>
                    {move || (page.get().is_some_and(|p| p.rows.is_empty()) && !loading.get()).then(|| view! { <p class="muted empty">"No requests match."</p> })}
                </div>
                {detail_view}
            </div>
            <nav class="pager" aria-label="Pages">
                <button disabled=move || cursors.get().len() <= 1 on:click=move |_| {
                    let mut stack = cursors.get_untracked();
                    stack.pop();
                    let before = stack.last().cloned().flatten();
                    cursors.set(stack);
                    load(before);
                }>"Newer"</button>
                <span class="small muted">{move || format!("Page {}", cursors.get().len())}</span>
                <button disabled=move || page.get().and_then(|p| p.next).is_none() on:click=move |_| {
                    let Some(next) = page.get_untracked().and_then(|p| p.next) else { return };
                    cursors.update(|c| c.push(Some(next.clone())));
                    load(Some(next));
                }>"Older"</button>
            </nav>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_round_trip() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_764_585_000), "2025-12-01 10:30:00");
        assert_eq!(parse_utc("2025-12-01T10:30"), Some(1_764_585_000));
        assert_eq!(parse_utc("2024-02-29T23:59:59"), Some(1_709_251_199));
        assert_eq!(parse_utc("nonsense"), None);
        assert_eq!(encode("AIza…x7Q"), "AIza%E2%80%A6x7Q");
    }
}
