//! Load benchmark: the release gateway in front of the release mock Gemini, measured against the
//! same mock called directly in the same run. Run with `scripts/bench.sh`.
//!
//! Reports added latency (p50/p99, non-streaming), time-to-first-event overhead for streams,
//! requests per CPU-second of the gateway process, and resident memory per open stream with
//! 1,000 concurrent streams. Every loop is bounded in count and time and targets 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::{cpu, free_port, rss_kib, wait_ready, Proc};

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

const KEYS: [&str; 4] = ["bench-key-0001", "bench-key-0002", "bench-key-0003", "bench-key-0004"];

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Target {
    gateway: String,
    mock: String,
    http: reqwest::Client,
}

fn gemini_body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

fn openai_body(text: &str, stream: bool) -> Value {
    json!({"model": "gemini-2.5-flash", "stream": stream, "messages": [{"role": "user", "content": text}]})
}

impl Target {
    async fn direct(&self, text: &str) {
        let r = self
            .http
            .post(format!("{}/v1beta/models/gemini-2.5-flash:generateContent", self.mock))
            .header("x-goog-api-key", KEYS[0])
            .json(&gemini_body(text))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
    }

    async fn via(&self, text: &str) {
        let r = self
            .http
            .post(format!("{}/v1/chat/completions", self.gateway))
            .json(&openai_body(text, false))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().await.unwrap();
    }

    /// Time until the first `data:` event of a stream; then reads the stream to its end.
    async fn first_event(&self, direct: bool, text: &str) -> Duration {
        let started = Instant::now();
        let req = if direct {
            self.http
                .post(format!(
                    "{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                    self.mock
                ))
                .header("x-goog-api-key", KEYS[0])
                .json(&gemini_body(text))
        } else {
            self.http
                .post(format!("{}/v1/chat/completions", self.gateway))
                .json(&openai_body(text, true))
        };
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success());
        let mut body = resp.bytes_stream();
        let mut first = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap();
            if first.is_none() && chunk.windows(5).any(|w| w == b"data:") {
                first = Some(started.elapsed());
            }
        }
        first.unwrap()
    }
}

#[tokio::main]
async fn main() {
    let target_dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let bin = |name: &str| format!("{target_dir}/release/{name}");
    let (mock_port, gw_port) = (free_port(), free_port());
    let mock = Proc(
        Command::new(bin("mock-gemini"))
            .arg(format!("127.0.0.1:{mock_port}"))
            .env("MOCK_CHUNK_DELAY_MS", "0")
            .stdout(Stdio::null())
            .spawn()
            .expect("build the release mock first (scripts/bench.sh does)"),
    );
    let dir = std::env::temp_dir().join(format!("gb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gateway = Proc(
        Command::new(bin("gemini-balance"))
            .current_dir(&dir)
            .env("GEMINI_API_KEYS", KEYS.join(","))
            .env("GEMINI_BASE_URL", format!("http://127.0.0.1:{mock_port}"))
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{gw_port}"))
            .env(
                "RUST_LOG",
                std::env::var("BENCH_GATEWAY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("build the release gateway first (scripts/bench.sh does)"),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let t = Arc::new(Target {
        gateway: format!("http://127.0.0.1:{gw_port}"),
        mock: format!("http://127.0.0.1:{mock_port}"),
        http,
    });
    wait_ready(&t.http, &format!("{}/healthz", t.gateway)).await;
    wait_ready(&t.http, &format!("{}/mock/stats", t.mock)).await;
    let (gw_pid, mock_pid) = (gateway.0.id(), mock.0.id());
    let n: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let prompt = "the quick brown fox jumps over the lazy dog";

    for _ in 0..200 {
        t.direct(prompt).await;
        t.via(prompt).await;
    }

    // 1. Added latency, non-streaming, sequential and interleaved so both see the same noise.
    let (mut direct, mut via) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let s = Instant::now();
        t.direct(prompt).await;
        direct.push(s.elapsed());
        let s = Instant::now();
        t.via(prompt).await;
        via.push(s.elapsed());
    }
    direct.sort();
    via.sort();
    println!("== non-streaming latency, {n} sequential requests each");
    println!("{:<22}{:>12}{:>12}", "", "p50 (µs)", "p99 (µs)");
    println!(
        "{:<22}{:>12.0}{:>12.0}",
        "mock directly",
        us(pct(&direct, 0.5)),
        us(pct(&direct, 0.99))
    );
    println!(
        "{:<22}{:>12.0}{:>12.0}",
        "through gateway",
        us(pct(&via, 0.5)),
        us(pct(&via, 0.99))
    );
    println!(
        "{:<22}{:>12.0}{:>12.0}   (ratio p50 {:.2}x, p99 {:.2}x)",
        "added by gateway",
        us(pct(&via, 0.5)) - us(pct(&direct, 0.5)),
        us(pct(&via, 0.99)) - us(pct(&direct, 0.99)),
        us(pct(&via, 0.5)) / us(pct(&direct, 0.5)),
        us(pct(&via, 0.99)) / us(pct(&direct, 0.99))
    );

    // 2. Time to first stream event.
    let m = n / 4;
    let (mut d_first, mut v_first) = (Vec::new(), Vec::new());
    for _ in 0..m {
        d_first.push(t.first_event(true, prompt).await);
        v_first.push(t.first_event(false, prompt).await);
    }
    d_first.sort();
    v_first.sort();
    println!("\n== time to first stream event, {m} sequential streams each");
    println!(
        "{:<22}{:>12.0}{:>12.0}",
        "mock directly",
        us(pct(&d_first, 0.5)),
        us(pct(&d_first, 0.99))
    );
    println!(
        "{:<22}{:>12.0}{:>12.0}",
        "through gateway",
        us(pct(&v_first, 0.5)),
        us(pct(&v_first, 0.99))
    );
    println!(
        "{:<22}{:>12.0}{:>12.0}",
        "added by gateway",
        us(pct(&v_first, 0.5)) - us(pct(&d_first, 0.5)),
        us(pct(&v_first, 0.99)) - us(pct(&d_first, 0.99))
    );

    // 3. Requests per CPU-second, 32 concurrent clients.
    let total = n * 5;
    let run = |direct: bool| {
        let t = t.clone();
        async move {
            let started = Instant::now();
            futures::stream::iter(0..total)
                .for_each_concurrent(32, |_| {
                    let t = t.clone();
                    async move {
                        if direct {
                            t.direct(prompt).await
                        } else {
                            t.via(prompt).await
                        }
                    }
                })
                .await;
            started.elapsed()
        }
    };
    let mock_cpu0 = cpu(mock_pid);
    let wall_direct = run(true).await;
    let mock_cpu_direct = cpu(mock_pid) - mock_cpu0;
    let (gw_cpu0, mock_cpu1) = (cpu(gw_pid), cpu(mock_pid));
    let wall_via = run(false).await;
    let (gw_cpu, mock_cpu_via) = (cpu(gw_pid) - gw_cpu0, cpu(mock_pid) - mock_cpu1);
    let per_cpu = |d: Duration| total as f64 / d.as_secs_f64().max(0.001);
    println!("\n== throughput, {total} requests, 32 concurrent");
    println!(
        "mock directly:   {:>8.0} req/s wall, mock {:>8.0} req per CPU-second",
        total as f64 / wall_direct.as_secs_f64(),
        per_cpu(mock_cpu_direct)
    );
    println!(
        "through gateway: {:>8.0} req/s wall, gateway {:>8.0} req per CPU-second (mock {:.0}); gateway CPU per request = {:.2}x the mock's",
        total as f64 / wall_via.as_secs_f64(),
        per_cpu(gw_cpu),
        per_cpu(mock_cpu_via),
        gw_cpu.as_secs_f64() / mock_cpu_direct.as_secs_f64().max(0.001)
    );

    // 4. Memory with 1,000 concurrent open streams (each key answers slowly to keep them open).
    let streams = 1000;
    for k in KEYS {
        t.http
            .post(format!("{}/mock/keys/{k}", t.mock))
            .json(&json!({"mode": "slow", "delay_ms": 400}))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (gw_idle, mock_idle) = (rss_kib(gw_pid), rss_kib(mock_pid));
    let long_prompt = (0..15).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut handles = Vec::new();
    for _ in 0..streams {
        let (t, opened, release, body) = (
            t.clone(),
            opened.clone(),
            release.clone(),
            openai_body(&long_prompt, true),
        );
        handles.push(tokio::spawn(async move {
            let resp = t
                .http
                .post(format!("{}/v1/chat/completions", t.gateway))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let mut s = resp.bytes_stream();
            s.next().await;
            opened.add_permits(1);
            release.notified().await;
        }));
    }
    let all_open = tokio::time::timeout(Duration::from_secs(60), opened.acquire_many(streams as u32)).await;
    assert!(all_open.is_ok(), "not all streams opened in time");
    let (gw_peak, mock_peak) = (rss_kib(gw_pid), rss_kib(mock_pid));
    release.notify_waiters();
    for h in handles {
        let _ = h.await;
    }
    println!("\n== memory, {streams} concurrent open streams");
    println!(
        "gateway: idle {gw_idle} KiB, with streams {gw_peak} KiB -> {:.1} KiB per stream",
        (gw_peak.saturating_sub(gw_idle)) as f64 / streams as f64
    );
    println!(
        "mock:    idle {mock_idle} KiB, with streams {mock_peak} KiB -> {:.1} KiB per stream (baseline)",
        (mock_peak.saturating_sub(mock_idle)) as f64 / streams as f64
    );
    drop(gateway);
    drop(mock);
    std::fs::remove_dir_all(&dir).ok();
}
