//! Chaos soak: the release gateway in front of the release mock Gemini, under 1,000 concurrent
//! streams and a steady flow of whole answers, while half of its keys fail in rotating ways.
//! Run with `scripts/chaos.sh` (a script, never part of the test suite or CI).
//!
//! Eight keys: four always healthy, four whose mock behaviour a controller reassigns every few
//! seconds (5xx, 429 with a short `RetryInfo`, hang, drop mid-stream after 2 events, invalid
//! until the next phase, ok), with counted rules or a reset to ok so every key can recover.
//! Every client-visible outcome is classified; the gateway's resident memory is sampled every
//! second; at the end every key is set to ok and the pool is read back through the admin API.
//!
//! Exits non-zero when a request got an error status before its first byte, a stream ended
//! without `[DONE]` or an error event, a stream's first event was an error, a client connection
//! failed, broke or timed out, a 200 whole answer was unusable, the resident memory grew (median
//! of the last 10 s above 1.2 × the median of the 10 s after the warm-up), or one of the healthy
//! keys is left disabled. Targets 127.0.0.1 only; bounded in time (`CHAOS_SECS`, default
//! 60) and in concurrency (`CHAOS_STREAMS`, default 1000; `CHAOS_PLAIN`, default 32).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::{cpu, free_port, release_bin, rss_kib, wait_ready, Proc};

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gemini_balance::gateway::pool::fingerprint;
use gemini_balance::gateway::secret::Secret;
use serde_json::{json, Value};

const HEALTHY: [&str; 4] = [
    "chaos-steady-key-0001",
    "chaos-steady-key-0002",
    "chaos-steady-key-0003",
    "chaos-steady-key-0004",
];
const ROTATING: [&str; 4] = [
    "chaos-rotating-key-0001",
    "chaos-rotating-key-0002",
    "chaos-rotating-key-0003",
    "chaos-rotating-key-0004",
];
const ADMIN_TOKEN: &str = "chaos-admin-token";
/// Six words: the mock echoes them as seven stream events.
const PROMPT: &str = "soak the gateway under rotating faults";
/// How many error samples of each kind are kept for the report.
const SAMPLES: usize = 8;
/// How much the gateway's resident memory may grow from the start of the load (after its
/// warm-up) to its end.
const RSS_GROWTH_LIMIT: f64 = 1.2;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn clip(text: &str, n: usize) -> String {
    let one_line = text.replace(['\r', '\n'], " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

/// What the client saw of one request.
#[derive(Debug)]
enum Seen {
    /// 200, and for a stream: ended with `data: [DONE]`.
    Success,
    /// An error status instead of an answer (before its first byte).
    Status(u16, String),
    /// A stream that had sent content and then ended with an error event (allowed).
    DropAfterFirstByte(String),
    /// A 200 stream whose first event was an error event (no content at all).
    ErrorEventBeforeContent(String),
    /// A stream that ended with neither `[DONE]` nor an error event (a bug).
    Truncated(String),
    /// The client could not send the request or get response headers.
    Connect(String),
    /// The connection broke while the body was being read.
    BodyBroken(String),
    /// A 200 whole answer that was not a chat completion with content.
    BadBody(String),
    /// No end within the client's own timeout.
    ClientTimeout,
}

#[derive(Default)]
struct Tally {
    total: u64,
    success: u64,
    status: BTreeMap<u16, u64>,
    drop_after_first_byte: u64,
    error_before_content: u64,
    truncated: u64,
    connect: u64,
    body_broken: u64,
    bad_body: u64,
    client_timeout: u64,
    /// Streams: time to response headers; whole answers: time to the end of the body.
    latency_ms: Vec<u32>,
    status_samples: Vec<String>,
    drop_samples: Vec<String>,
    other_samples: Vec<String>,
}

impl Tally {
    fn record(&mut self, seen: Seen, latency: Option<Duration>) {
        self.total += 1;
        if let Some(l) = latency {
            self.latency_ms.push(l.as_millis().min(u32::MAX as u128) as u32);
        }
        let keep = |v: &mut Vec<String>, s: String| {
            if v.len() < SAMPLES {
                v.push(s);
            }
        };
        match seen {
            Seen::Success => self.success += 1,
            Seen::Status(code, body) => {
                *self.status.entry(code).or_default() += 1;
                keep(&mut self.status_samples, format!("HTTP {code}: {}", clip(&body, 400)));
            }
            Seen::DropAfterFirstByte(ev) => {
                self.drop_after_first_byte += 1;
                keep(&mut self.drop_samples, clip(&ev, 240));
            }
            Seen::ErrorEventBeforeContent(ev) => {
                self.error_before_content += 1;
                keep(
                    &mut self.other_samples,
                    format!("error event before content: {}", clip(&ev, 300)),
                );
            }
            Seen::Truncated(tail) => {
                self.truncated += 1;
                keep(
                    &mut self.other_samples,
                    format!("truncated stream, tail: {}", clip(&tail, 300)),
                );
            }
            Seen::Connect(e) => {
                self.connect += 1;
                keep(&mut self.other_samples, format!("connection error: {}", clip(&e, 300)));
            }
            Seen::BodyBroken(e) => {
                self.body_broken += 1;
                keep(&mut self.other_samples, format!("body broken: {}", clip(&e, 300)));
            }
            Seen::BadBody(b) => {
                self.bad_body += 1;
                keep(&mut self.other_samples, format!("bad 200 body: {}", clip(&b, 300)));
            }
            Seen::ClientTimeout => {
                self.client_timeout += 1;
                keep(&mut self.other_samples, "client timeout".into());
            }
        }
    }

    fn status_total(&self) -> u64 {
        self.status.values().sum()
    }
}

struct Client {
    http: reqwest::Client,
    gateway: String,
    mock: String,
    timeout: Duration,
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "gemini-2.5-flash", "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
}

fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Client {
    async fn error_response(resp: reqwest::Response) -> Seen {
        let status = resp.status().as_u16();
        let id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!(" retry-after={v}"))
            .unwrap_or_default();
        let body = match resp.text().await {
            Ok(t) => t,
            Err(e) => format!("(unreadable body: {})", error_text(&e)),
        };
        Seen::Status(status, format!("[{id}{retry}] {body}"))
    }

    /// One streamed chat completion, read to its end. Returns the time to response headers.
    async fn stream(&self) -> (Seen, Option<Duration>) {
        let started = Instant::now();
        let resp = match self
            .http
            .post(format!("{}/v1/chat/completions", self.gateway))
            .json(&chat_body(true))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return (Seen::Connect(error_text(&e)), None),
        };
        let headers_at = started.elapsed();
        if resp.status().as_u16() != 200 {
            return (Self::error_response(resp).await, Some(headers_at));
        }
        let mut body = resp.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut tail: Vec<u8> = Vec::new();
        let (mut content, mut done) = (false, false);
        let mut error: Option<String> = None;
        while let Some(chunk) = body.next().await {
            let bytes = match chunk {
                Ok(b) => b,
                Err(e) => {
                    let what = format!(
                        "{} (content before: {content}, error event before: {})",
                        error_text(&e),
                        error.is_some()
                    );
                    return (Seen::BodyBroken(what), Some(headers_at));
                }
            };
            tail.extend_from_slice(&bytes);
            if tail.len() > 600 {
                tail.drain(..tail.len() - 600);
            }
            pending.extend_from_slice(&bytes);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let Some(data) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let data = data.strip_prefix(b" ").unwrap_or(data);
                if data == b"[DONE]" {
                    done = true;
                } else if find(data, b"\"error\"").is_some()
                    && serde_json::from_slice::<Value>(data).is_ok_and(|v| v.get("error").is_some())
                {
                    error.get_or_insert_with(|| String::from_utf8_lossy(data).into_owned());
                } else if !data.is_empty() {
                    content = true;
                }
            }
        }
        let seen = match (error, done) {
            (Some(ev), _) if content => Seen::DropAfterFirstByte(ev),
            (Some(ev), _) => Seen::ErrorEventBeforeContent(ev),
            (None, true) => Seen::Success,
            (None, false) => Seen::Truncated(String::from_utf8_lossy(&tail).into_owned()),
        };
        (seen, Some(headers_at))
    }

    /// One whole (non-streaming) chat completion. Returns the time to the end of the body.
    async fn plain(&self) -> (Seen, Option<Duration>) {
        let started = Instant::now();
        let resp = match self
            .http
            .post(format!("{}/v1/chat/completions", self.gateway))
            .json(&chat_body(false))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return (Seen::Connect(error_text(&e)), None),
        };
        if resp.status().as_u16() != 200 {
            let at = started.elapsed();
            return (Self::error_response(resp).await, Some(at));
        }
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return (Seen::BodyBroken(error_text(&e)), None),
        };
        let at = started.elapsed();
        let ok = serde_json::from_slice::<Value>(&body).is_ok_and(|v| {
            v.pointer("/choices/0/message/content")
                .and_then(Value::as_str)
                .is_some_and(|c| c.contains("soak"))
        });
        if ok {
            (Seen::Success, Some(at))
        } else {
            (Seen::BadBody(String::from_utf8_lossy(&body).into_owned()), Some(at))
        }
    }

    async fn bounded(&self, stream: bool) -> (Seen, Option<Duration>) {
        let fut = async {
            if stream {
                self.stream().await
            } else {
                self.plain().await
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or((Seen::ClientTimeout, None))
    }

    async fn set_rule(&self, key: &str, rule: &Value) {
        let r = self
            .http
            .post(format!("{}/mock/keys/{key}", self.mock))
            .json(rule)
            .send()
            .await
            .expect("mock control API");
        assert!(r.status().is_success(), "mock rejected rule {rule}: {}", r.status());
    }

    /// `(fingerprint, state)` of every key, from the admin API.
    async fn key_states(&self) -> Option<Vec<(String, String)>> {
        let r = self
            .http
            .get(format!("{}/admin/api/keys", self.gateway))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let keys: Vec<Value> = r.json().await.ok()?;
        Some(
            keys.iter()
                .map(|k| {
                    (
                        k["id"].as_str().unwrap_or("?").to_string(),
                        k["state"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect(),
        )
    }

    async fn admin_json(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.gateway))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match r {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }
}

/// The failure modes a rotating key cycles through, in order (invalid is followed by ok, so a
/// key that was invalid for a phase is fixed and its re-validation probe brings it back).
fn mode(index: usize, phase: u64) -> (String, Value) {
    match index % 6 {
        0 => {
            let code = [503u16, 500, 504][(phase % 3) as usize];
            (
                format!("{code} x10"),
                json!({"mode": "server_error", "code": code, "times": 10}),
            )
        }
        1 => (
            "429 (retry 3s) x10".into(),
            json!({"mode": "rate_limited", "retry_delay_secs": 3, "times": 10}),
        ),
        2 => ("hang x10".into(), json!({"mode": "hang", "times": 10})),
        3 => (
            "drop after 2 x20".into(),
            json!({"mode": "drop_mid_stream", "after": 2, "times": 20}),
        ),
        4 => ("invalid".into(), json!({"mode": "invalid"})),
        _ => ("ok".into(), json!({"mode": "ok"})),
    }
}

/// Counts of each state, e.g. `active 6, cooling_down 1, disabled 1`.
fn state_counts<'a>(states: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in states {
        *counts.entry(s).or_default() += 1;
    }
    counts
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn left_out(state: &str) -> bool {
    matches!(state, "disabled" | "probing" | "manual_disabled")
}

#[tokio::main]
async fn main() {
    let secs = env_u64("CHAOS_SECS", 60).max(1);
    let streams = env_u64("CHAOS_STREAMS", 1000) as usize;
    let plain_loops = env_u64("CHAOS_PLAIN", 32) as usize;
    let phase_secs = env_u64("CHAOS_PHASE_SECS", 5).max(1);
    let first_event_ms = env_u64("CHAOS_FIRST_EVENT_MS", 300);
    let between_ms = env_u64("CHAOS_BETWEEN_MS", 50);
    let recovery_secs = env_u64("CHAOS_RECOVERY_SECS", 15);
    // Seconds of load before the memory baseline is taken (10 s medians are compared after it).
    let rss_warmup_secs = env_u64("CHAOS_RSS_WARMUP_SECS", 10);
    let duration = Duration::from_secs(secs);

    let (mock_port, gw_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("gb-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mock = Proc(
        Command::new(release_bin("mock-gemini"))
            .arg(format!("127.0.0.1:{mock_port}"))
            .env("MOCK_CHUNK_DELAY_MS", between_ms.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("build the release mock first (scripts/chaos.sh does)"),
    );
    let all_keys: Vec<&str> = HEALTHY.iter().chain(ROTATING.iter()).copied().collect();
    let gateway_log = dir.join("gateway.log");
    let gateway = Proc(
        Command::new(release_bin("gemini-balance"))
            .current_dir(&dir)
            .env("GEMINI_API_KEYS", all_keys.join(","))
            .env("GEMINI_BASE_URL", format!("http://127.0.0.1:{mock_port}"))
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{gw_port}"))
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("DATA_DIR", dir.join("data"))
            .env("MAX_RETRIES", "8")
            .env("MAX_FAILURES", "3")
            .env("UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "2")
            .env("UPSTREAM_IDLE_TIMEOUT_SECS", "10")
            .env("UPSTREAM_TOTAL_TIMEOUT_SECS", "30")
            .env("KEY_COOLDOWN_SECS", "2")
            .env("KEY_COOLDOWN_MAX_SECS", "8")
            .env("KEY_REVALIDATE_SECS", "2")
            .env("KEY_REVALIDATE_MAX_SECS", "4")
            .env("KEY_PROBE_TIMEOUT_SECS", "2")
            .env("LOG_FORMAT", "text")
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&gateway_log).unwrap())
            .spawn()
            .expect("start the gateway"),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let client = Arc::new(Client {
        http,
        gateway: format!("http://127.0.0.1:{gw_port}"),
        mock: format!("http://127.0.0.1:{mock_port}"),
        timeout: Duration::from_secs(env_u64("CHAOS_REQUEST_TIMEOUT_SECS", 60)),
    });
    wait_ready(&client.http, &format!("{}/healthz", client.gateway)).await;
    wait_ready(&client.http, &format!("{}/mock/stats", client.mock)).await;
    let (gw_pid, mock_pid) = (gateway.0.id(), mock.0.id());
    let r = client
        .http
        .post(format!("{}/mock/timing", client.mock))
        .json(&json!({"first_event_ms": first_event_ms, "between_ms": between_ms}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // The report names keys by position; the admin API by fingerprint.
    let names: BTreeMap<String, String> = HEALTHY
        .iter()
        .enumerate()
        .map(|(i, k)| (fingerprint(&Secret::new(*k)), format!("healthy-{}", i + 1)))
        .chain(
            ROTATING
                .iter()
                .enumerate()
                .map(|(i, k)| (fingerprint(&Secret::new(*k)), format!("rotating-{}", i + 1))),
        )
        .collect();
    for _ in 0..8 {
        let (seen, _) = client.bounded(false).await;
        assert!(matches!(seen, Seen::Success), "warm-up request failed: {seen:?}");
    }
    let rss_idle = rss_kib(gw_pid);

    println!(
        "== chaos soak: {secs} s, {streams} concurrent streams + {plain_loops} whole-answer loops, \
         8 keys (4 rotating faults every {phase_secs} s)"
    );
    println!(
        "   mock timing: first event {first_event_ms} ms, then {between_ms} ms apart; gateway: \
         MAX_RETRIES 8, first-byte 2 s, cooldown 2 s, revalidate 2 s; log {}",
        gateway_log.display()
    );

    let stream_tally = Arc::new(Mutex::new(Tally::default()));
    let plain_tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let end = start + duration;
    let gw_cpu0 = cpu(gw_pid);

    // Resident memory, once a second, while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples: Vec<(f64, u64)> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                samples.push((start.elapsed().as_secs_f64(), rss_kib(gw_pid)));
            }
            samples
        })
    };

    // The controller: reassigns the rotating keys' failure modes every phase.
    let controller = {
        let (client, stream_tally, plain_tally, names) =
            (client.clone(), stream_tally.clone(), plain_tally.clone(), names.clone());
        tokio::spawn(async move {
            // Shifted so that the last phase leaves the first rotating key invalid: the final
            // recovery then has a disabled key to bring back through its re-validation probe.
            let last_phase = (secs - 1) / phase_secs;
            let offset = (4 + 6 - (last_phase % 6) as usize) % 6;
            let mut phase = 0u64;
            loop {
                let mut labels = Vec::new();
                for (i, key) in ROTATING.iter().enumerate() {
                    let (label, rule) = mode(offset + phase as usize + i, phase);
                    client.set_rule(key, &rule).await;
                    labels.push(format!("r{}={label}", i + 1));
                }
                let states = client.key_states().await.unwrap_or_default();
                let healthy_states: Vec<&str> = states
                    .iter()
                    .filter(|(id, _)| names.get(id).is_some_and(|n| n.starts_with("healthy")))
                    .map(|(_, s)| s.as_str())
                    .collect();
                let (s_ok, s_total, s_err) = {
                    let t = stream_tally.lock().unwrap();
                    (t.success, t.total, t.status_total())
                };
                let (p_ok, p_total, p_err) = {
                    let t = plain_tally.lock().unwrap();
                    (t.success, t.total, t.status_total())
                };
                println!(
                    "[{:>5.1}s] phase {phase}: {} | streams {s_ok}/{s_total} ok, {s_err} err-status | \
                     whole {p_ok}/{p_total} ok, {p_err} err-status | rss {:.1} MiB | keys: {} (healthy: {})",
                    start.elapsed().as_secs_f64(),
                    labels.join(" "),
                    mib(rss_kib(gw_pid)),
                    state_counts(states.iter().map(|(_, s)| s.as_str())),
                    state_counts(healthy_states.into_iter()),
                );
                phase += 1;
                let next = start + Duration::from_secs(phase * phase_secs);
                if next >= end {
                    break;
                }
                tokio::time::sleep_until(next.into()).await;
            }
        })
    };

    // The load: each task runs requests back to back until the end of the run.
    let mut workers = Vec::new();
    for i in 0..streams {
        let (client, tally) = (client.clone(), stream_tally.clone());
        workers.push(tokio::spawn(async move {
            // Spread the first connections over the first second.
            tokio::time::sleep(Duration::from_micros(i as u64 * 1000)).await;
            while Instant::now() < end {
                let (seen, latency) = client.bounded(true).await;
                tally.lock().unwrap().record(seen, latency);
            }
        }));
    }
    for _ in 0..plain_loops {
        let (client, tally) = (client.clone(), plain_tally.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < end {
                let (seen, latency) = client.bounded(false).await;
                tally.lock().unwrap().record(seen, latency);
            }
        }));
    }
    tokio::time::sleep_until(end.into()).await;
    let _ = controller.await;
    stop.store(true, Ordering::Relaxed);
    let rss = sampler.await.unwrap_or_default();
    // In-flight requests finish (each is bounded by the client timeout).
    for w in workers {
        let _ = w.await;
    }
    let drained_in = Instant::now().saturating_duration_since(end);
    let wall = start.elapsed();
    let gw_cpu = cpu(gw_pid).saturating_sub(gw_cpu0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(gw_pid);
    let summary_during = client.admin_json("/admin/api/summary").await;
    let states_at_end_of_load = client.key_states().await.unwrap_or_default();

    // Recovery: every key set to ok; a trickle of requests lets half-open keys run their
    // trials; the re-validation probes bring disabled keys back.
    for key in &all_keys {
        client.set_rule(key, &json!({"mode": "ok"})).await;
    }
    let recovery_started = Instant::now();
    let mut recovery = Tally::default();
    let mut states = Vec::new();
    while recovery_started.elapsed() < Duration::from_secs(recovery_secs) {
        let trickle: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.bounded(false).await })
            })
            .collect();
        for t in trickle {
            if let Ok((seen, latency)) = t.await {
                recovery.record(seen, latency);
            }
        }
        states = client.key_states().await.unwrap_or_default();
        if !states.is_empty() && states.iter().all(|(_, s)| s == "active") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let recovered_in = recovery_started.elapsed();
    let mock_stats: Value = match client.http.get(format!("{}/mock/stats", client.mock)).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let mock_cpu = cpu(mock_pid);
    drop(gateway);
    drop(mock);

    // ---- report ----
    let st = stream_tally.lock().unwrap();
    let pl = plain_tally.lock().unwrap();
    let row = |name: &str, s: u64, p: u64| println!("{name:<52}{s:>12}{p:>12}{:>12}", s + p);
    println!(
        "\n== outcomes (load ran {secs} s; the last in-flight requests ended {:.1} s later)",
        drained_in.as_secs_f64()
    );
    println!("{:<52}{:>12}{:>12}{:>12}", "", "streams", "whole", "total");
    row("requests", st.total, pl.total);
    row("success (200; streams ended with [DONE])", st.success, pl.success);
    row(
        "ERROR STATUS BEFORE FIRST BYTE (must be 0)",
        st.status_total(),
        pl.status_total(),
    );
    let codes: std::collections::BTreeSet<u16> = st.status.keys().chain(pl.status.keys()).copied().collect();
    for code in codes {
        row(
            &format!("  HTTP {code}"),
            st.status.get(&code).copied().unwrap_or(0),
            pl.status.get(&code).copied().unwrap_or(0),
        );
    }
    row(
        "drop after first byte (error event after content)",
        st.drop_after_first_byte,
        0,
    );
    row("ERROR EVENT BEFORE ANY CONTENT (must be 0)", st.error_before_content, 0);
    row(
        "STREAM ENDED WITHOUT [DONE] OR ERROR EVENT (must be 0)",
        st.truncated,
        0,
    );
    row("CLIENT CONNECTION ERROR (must be 0)", st.connect, pl.connect);
    row(
        "CONNECTION BROKEN WHILE READING BODY (must be 0)",
        st.body_broken,
        pl.body_broken,
    );
    row("200 WITHOUT A USABLE COMPLETION (must be 0)", 0, pl.bad_body);
    row(
        &format!("CLIENT TIMEOUT ({} s, must be 0)", client.timeout.as_secs()),
        st.client_timeout,
        pl.client_timeout,
    );
    let secs_f = duration.as_secs_f64();
    println!(
        "throughput: {:.0} streams/s, {:.0} whole answers/s; gateway CPU {:.1} s ({:.0}% of one core), mock CPU {:.1} s",
        st.total as f64 / secs_f,
        pl.total as f64 / secs_f,
        gw_cpu.as_secs_f64(),
        100.0 * gw_cpu.as_secs_f64() / wall.as_secs_f64(),
        mock_cpu.as_secs_f64()
    );
    let mut sl = st.latency_ms.clone();
    sl.sort_unstable();
    let mut pll = pl.latency_ms.clone();
    pll.sort_unstable();
    println!(
        "latency: stream headers p50 {} ms, p99 {} ms, max {} ms; whole answer p50 {} ms, p99 {} ms, max {} ms",
        pct(&sl, 0.5),
        pct(&sl, 0.99),
        sl.last().copied().unwrap_or(0),
        pct(&pll, 0.5),
        pct(&pll, 0.99),
        pll.last().copied().unwrap_or(0)
    );

    // Memory must stay flat under steady load: the median of the last 10 s may exceed the
    // median of the first 10 s after the warm-up (connections opening, buffers growing to their
    // working size) by at most RSS_GROWTH_LIMIT.
    let median = |mut v: Vec<u64>| -> Option<u64> {
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let window = |from: f64, to: f64| -> Vec<u64> {
        rss.iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, k)| *k)
            .collect()
    };
    let warmup_f = rss_warmup_secs as f64;
    let rss_start = median(window(warmup_f, warmup_f + 10.0));
    let rss_end = median(window(secs_f - 10.0, f64::INFINITY));
    let max = rss.iter().map(|(_, k)| *k).max().unwrap_or(0);
    println!("\n== gateway resident memory (VmRSS, {} samples, 1/s)", rss.len());
    println!("idle before load               {:>10.1} MiB", mib(rss_idle));
    let show = |v: Option<u64>| v.map_or_else(|| "n/a".to_string(), |k| format!("{:.1} MiB", mib(k)));
    println!(
        "RSS start (median {}-{} s)      {:>14}",
        rss_warmup_secs,
        rss_warmup_secs + 10,
        show(rss_start)
    );
    println!("RSS end (median of last 10 s)  {:>14}", show(rss_end));
    println!("max                            {:>10.1} MiB", mib(max));
    println!("after drain (no open requests) {:>10.1} MiB", mib(rss_after));
    let rss_flat = match (rss_start, rss_end) {
        (Some(start), Some(end)) if secs_f >= warmup_f + 20.0 => {
            let ok = end as f64 <= RSS_GROWTH_LIMIT * start as f64;
            println!(
                "RSS end/start {:.2} (limit {RSS_GROWTH_LIMIT}): {}",
                end as f64 / start.max(1) as f64,
                if ok { "flat" } else { "GROWING" }
            );
            Some(ok)
        }
        _ => {
            println!("RSS flatness not checked: the run is shorter than warm-up + 20 s");
            None
        }
    };

    println!("\n== upstream attempts by outcome (gateway /admin/api/summary)");
    if let Some(list) = summary_during.get("attempts_by_outcome").and_then(Value::as_array) {
        let line: Vec<String> = list
            .iter()
            .filter_map(|p| Some(format!("{} {}", p.get(0)?.as_str()?, p.get(1)?)))
            .collect();
        println!("{}", line.join(", "));
    } else {
        println!("{summary_during}");
    }
    if let Some(by_key) = mock_stats.get("by_key").and_then(Value::as_object) {
        let mut line = Vec::new();
        for (i, k) in all_keys.iter().enumerate() {
            let n = by_key.get(*k).and_then(Value::as_u64).unwrap_or(0);
            let name = if i < 4 {
                format!("healthy-{}", i + 1)
            } else {
                format!("rotating-{}", i - 3)
            };
            line.push(format!("{name} {n}"));
        }
        println!("mock requests by key: {}", line.join(", "));
        println!(
            "mock streams: started {}, completed {}, cancelled {}",
            mock_stats["streams_started"], mock_stats["streams_completed"], mock_stats["streams_cancelled"]
        );
    }

    let describe = |states: &[(String, String)]| {
        let named: Vec<String> = states
            .iter()
            .map(|(id, s)| format!("{}={s}", names.get(id).map_or(id.as_str(), String::as_str)))
            .collect();
        named.join(" ")
    };
    let healthy_out = states
        .iter()
        .filter(|(id, s)| names.get(id).is_some_and(|n| n.starts_with("healthy")) && left_out(s))
        .count();
    let all_out = states.iter().filter(|(_, s)| left_out(s)).count();
    println!("\n== key states");
    println!("end of load:  {}", describe(&states_at_end_of_load));
    println!(
        "after all keys set to ok + {:.1} s of recovery ({} trickle requests: {} ok, {} error status): {}",
        recovered_in.as_secs_f64(),
        recovery.total,
        recovery.success,
        recovery.status_total(),
        describe(&states)
    );
    println!(
        "left disabled/probing: healthy {healthy_out} of 4, all {all_out} of 8 (all 8: {})",
        state_counts(states.iter().map(|(_, s)| s.as_str()))
    );

    let samples = |title: &str, v: &[String]| {
        if !v.is_empty() {
            println!("\n{title}:");
            for s in v {
                println!("  {s}");
            }
        }
    };
    samples("error statuses (streams), samples", &st.status_samples);
    samples("error statuses (whole answers), samples", &pl.status_samples);
    samples("error statuses (recovery trickle), samples", &recovery.status_samples);
    samples("other stream problems, samples", &st.other_samples);
    samples("other whole-answer problems, samples", &pl.other_samples);
    samples(
        "drops after first byte (allowed), samples",
        &st.drop_samples[..st.drop_samples.len().min(3)],
    );

    let errors_before_first_byte = st.status_total() + pl.status_total();
    let mut failures = Vec::new();
    if errors_before_first_byte > 0 {
        failures.push(format!(
            "{errors_before_first_byte} error status(es) before the first byte"
        ));
    }
    let problems = [
        (st.truncated, "stream(s) ended without [DONE] or an error event"),
        (
            st.error_before_content,
            "stream(s) whose first event was an error (nothing else sent)",
        ),
        (st.connect + pl.connect, "client connection error(s)"),
        (
            st.body_broken + pl.body_broken,
            "connection(s) broken while reading the body",
        ),
        (pl.bad_body, "200 whole answer(s) without a usable completion"),
        (st.client_timeout + pl.client_timeout, "client timeout(s)"),
    ];
    for (count, what) in problems {
        if count > 0 {
            failures.push(format!("{count} {what}"));
        }
    }
    if rss_flat == Some(false) {
        failures.push(format!(
            "resident memory grew: last 10 s median {:.1} MiB > {RSS_GROWTH_LIMIT} × {:.1} MiB",
            mib(rss_end.unwrap_or(0)),
            mib(rss_start.unwrap_or(0))
        ));
    }
    if states.len() != 8 {
        failures.push("could not read the key states".into());
    }
    if healthy_out > 0 {
        failures.push(format!("{healthy_out} healthy key(s) left disabled"));
    }
    if failures.is_empty() {
        println!("\nPASS");
        std::fs::remove_dir_all(&dir).ok();
    } else {
        println!(
            "\nFAIL: {} (gateway log kept: {})",
            failures.join("; "),
            gateway_log.display()
        );
        std::process::exit(1);
    }
}
