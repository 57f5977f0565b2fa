//! Load benchmark: the release gateway and a bare nginx reverse-proxy hop, both in front of the
//! release mock Gemini, measured against each other and against the mock called directly, in one
//! interleaved run. Run with `scripts/bench.sh` (`scripts/bench.sh hold` for the held-streams
//! mode).
//!
//! Default mode, every figure the median of `BENCH_ROUNDS` (3) interleaved rounds: CPU per 1,000
//! non-streaming requests and throughput at 32 concurrent clients, added latency p50/p99 at one
//! client, CPU per 1,000 streams, stream time-to-first-byte p50 with 500 concurrent streams, and
//! resident memory with 500 open streams. `hold` mode: resident memory per open stream with
//! `BENCH_HOLD_STREAMS` (8,000) streams held through the gateway at once, and the errors.
//! Every loop is bounded in count and time and targets 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::{cpu, free_port, nginx_hop, release_bin, rss_kib, wait_ready, Proc};

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

const KEYS: [&str; 4] = ["bench-key-0001", "bench-key-0002", "bench-key-0003", "bench-key-0004"];
/// Twenty words: the mock streams one event per word of its answer.
const PROMPT: &str = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hop {
    /// The mock, called directly.
    Direct,
    /// nginx in front of the mock, forwarding the same Gemini request.
    Nginx,
    /// The gateway, translating an OpenAI chat request.
    Gateway,
}

const HOPS: [Hop; 3] = [Hop::Direct, Hop::Nginx, Hop::Gateway];

struct Target {
    mock: String,
    nginx: String,
    gateway: String,
    http: reqwest::Client,
    pids: [u32; 3],
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Target {
    /// The process whose CPU and memory a hop is charged with: the mock itself when called
    /// directly, otherwise the proxy.
    fn pid(&self, hop: Hop) -> u32 {
        self.pids[hop as usize]
    }

    fn request(&self, hop: Hop, stream: bool) -> reqwest::RequestBuilder {
        let action = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let base = match hop {
            Hop::Direct => &self.mock,
            Hop::Nginx => &self.nginx,
            Hop::Gateway => {
                return self
                    .http
                    .post(format!("{}/v1/chat/completions", self.gateway))
                    .json(&json!({"model": "gemini-2.5-flash", "stream": stream,
                        "messages": [{"role": "user", "content": PROMPT}]}));
            }
        };
        self.http
            .post(format!("{base}/v1beta/models/gemini-2.5-flash:{action}"))
            .header("x-goog-api-key", KEYS[0])
            .json(&json!({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}))
    }

    async fn call(&self, hop: Hop) {
        let r = self.request(hop, false).send().await.unwrap();
        assert!(r.status().is_success(), "{hop:?}: {}", r.status());
        r.bytes().await.unwrap();
    }

    /// Time until the first `data:` event of a stream; then reads the stream to its end.
    async fn stream(&self, hop: Hop) -> Duration {
        let started = Instant::now();
        let resp = self.request(hop, true).send().await.unwrap();
        assert!(resp.status().is_success(), "{hop:?}: {}", resp.status());
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

    async fn timing(&self, first_event_ms: u64, between_ms: u64) {
        self.http
            .post(format!("{}/mock/timing", self.mock))
            .json(&json!({"first_event_ms": first_event_ms, "between_ms": between_ms}))
            .send()
            .await
            .unwrap();
    }
}

/// Runs `total` calls of `f` with `concurrency` in flight; returns the wall time and the CPU
/// the hop's process spent.
async fn load<F, Fut>(t: &Arc<Target>, hop: Hop, total: usize, concurrency: usize, f: F) -> (Duration, Duration)
where
    F: Fn(Arc<Target>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let pid = t.pid(hop);
    let cpu0 = cpu(pid);
    let started = Instant::now();
    futures::stream::iter(0..total)
        .for_each_concurrent(concurrency, |_| f(t.clone()))
        .await;
    (started.elapsed(), cpu(pid).saturating_sub(cpu0))
}

/// Opens `count` streams through `hop` (at most 256 being opened at once), waits until each has
/// delivered its first event or failed, and returns the hop's resident memory then (KiB), the
/// number of failures and the time it took; the streams are then closed.
async fn hold(t: &Arc<Target>, hop: Hop, count: usize, limit: Duration) -> (u64, u64, Duration) {
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    let opening = Arc::new(tokio::sync::Semaphore::new(256));
    let errors = Arc::new(AtomicU64::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let mut handles = Vec::with_capacity(count);
    for _ in 0..count {
        let (t, opened, opening, errors, release) = (
            t.clone(),
            opened.clone(),
            opening.clone(),
            errors.clone(),
            release.clone(),
        );
        handles.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await;
            let first = async {
                let resp = t.request(hop, true).send().await.ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                let mut body = resp.bytes_stream();
                match body.next().await {
                    Some(Ok(_)) => Some(body),
                    _ => None,
                }
            };
            let body = tokio::time::timeout(limit, first).await.ok().flatten();
            if body.is_none() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
            let notified = release.notified();
            opened.add_permits(1);
            notified.await;
            drop(body);
        }));
    }
    let all = tokio::time::timeout(limit + Duration::from_secs(5), opened.acquire_many(count as u32)).await;
    let took = started.elapsed();
    // Let the last first events settle before reading memory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = rss_kib(t.pid(hop));
    if all.is_err() {
        errors.store(count as u64, Ordering::Relaxed);
    }
    release.notify_waiters();
    for h in handles {
        h.abort();
        let _ = h.await;
    }
    (rss, errors.load(Ordering::Relaxed), took)
}

#[tokio::main]
async fn main() {
    let (mock_port, gw_port, nginx_port) = (free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("gb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mock = Proc(
        Command::new(release_bin("mock-gemini"))
            .arg(format!("127.0.0.1:{mock_port}"))
            .env("MOCK_CHUNK_DELAY_MS", "0")
            .stdout(Stdio::null())
            .spawn()
            .expect("build the release mock first (scripts/bench.sh does)"),
    );
    // `redis` (or BENCH_REDIS=1): the gateway shares its pool through a local redis-server.
    let with_redis = std::env::args().any(|a| a == "redis") || std::env::var("BENCH_REDIS").is_ok_and(|v| v == "1");
    let redis_port = free_port();
    let _redis = with_redis.then(|| {
        Proc(
            Command::new("redis-server")
                .args([
                    "--port",
                    &redis_port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install redis-server)"),
        )
    });
    if with_redis {
        std::thread::sleep(Duration::from_millis(300));
        println!("gateway with REDIS_URL=redis://127.0.0.1:{redis_port}/0");
    }
    let mut command = Command::new(release_bin("gemini-balance"));
    if with_redis {
        command.env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}/0"));
    }
    let gateway = Proc(
        command
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
    let nginx = nginx_hop(&dir, nginx_port, mock_port);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16_384)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let t = Arc::new(Target {
        gateway: format!("http://127.0.0.1:{gw_port}"),
        mock: format!("http://127.0.0.1:{mock_port}"),
        nginx: format!("http://127.0.0.1:{nginx_port}"),
        http,
        pids: [mock.0.id(), nginx.0.id(), gateway.0.id()],
    });
    wait_ready(&t.http, &format!("{}/healthz", t.gateway)).await;
    wait_ready(&t.http, &format!("{}/mock/stats", t.mock)).await;
    wait_ready(&t.http, &format!("{}/mock/stats", t.nginx)).await;

    if std::env::args().any(|a| a == "hold") || std::env::var("BENCH_MODE").is_ok_and(|m| m == "hold") {
        hold_mode(&t).await;
    } else {
        default_mode(&t).await;
    }
    drop(gateway);
    drop(nginx);
    drop(mock);
    std::fs::remove_dir_all(&dir).ok();
}

/// Memory per open stream with thousands of streams held through the gateway at once.
async fn hold_mode(t: &Arc<Target>) {
    let count = env_num("BENCH_HOLD_STREAMS", 8000);
    for _ in 0..100 {
        t.call(Hop::Gateway).await;
        t.stream(Hop::Gateway).await;
    }
    // The first event at once, the next one a minute later: every stream stays open.
    t.timing(0, 60_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (gw_idle, mock_idle) = (rss_kib(t.pid(Hop::Gateway)), rss_kib(t.pid(Hop::Direct)));
    let (gw_peak, errors, took) = hold(t, Hop::Gateway, count, Duration::from_secs(90)).await;
    let mock_peak = rss_kib(t.pid(Hop::Direct));
    t.timing(0, 0).await;
    println!("== {count} streams held open through the gateway at once (opened in {took:.1?})");
    println!(
        "gateway: idle {gw_idle} KiB, with streams {gw_peak} KiB -> {:.1} KiB per stream above idle; errors {errors}",
        gw_peak.saturating_sub(gw_idle) as f64 / count as f64
    );
    println!(
        "mock:    idle {mock_idle} KiB, with streams {mock_peak} KiB -> {:.1} KiB per stream (for scale)",
        mock_peak.saturating_sub(mock_idle) as f64 / count as f64
    );
}

/// One row of the report: a figure for each hop, and the goal for the gateway.
struct Row {
    name: &'static str,
    unit: &'static str,
    values: [f64; 3],
    goal: &'static str,
}

async fn default_mode(t: &Arc<Target>) {
    let n = env_num("BENCH_REQUESTS", 2000);
    let rounds = env_num("BENCH_ROUNDS", 3).max(1);
    for _ in 0..200 {
        for hop in HOPS {
            t.call(hop).await;
        }
    }
    for hop in HOPS {
        t.stream(hop).await;
    }

    let mut lat50: [Vec<f64>; 3] = Default::default();
    let mut lat99: [Vec<f64>; 3] = Default::default();
    let mut cpu_req: [Vec<f64>; 3] = Default::default();
    let mut rps: [Vec<f64>; 3] = Default::default();
    let mut cpu_stream: [Vec<f64>; 3] = Default::default();
    let mut ttfb: [Vec<f64>; 3] = Default::default();
    let (total, streams, burst) = (n * 10, n / 2, 500);
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        // Latency at one client, the hops interleaved so that all see the same noise.
        let mut samples: [Vec<Duration>; 3] = Default::default();
        for _ in 0..n {
            for hop in HOPS {
                let s = Instant::now();
                t.call(hop).await;
                samples[hop as usize].push(s.elapsed());
            }
        }
        for (i, s) in samples.iter_mut().enumerate() {
            s.sort();
            lat50[i].push(pct(s, 0.5).as_secs_f64() * 1e6);
            lat99[i].push(pct(s, 0.99).as_secs_f64() * 1e6);
        }
        // Non-streaming at 32 concurrent clients.
        for hop in HOPS {
            let (wall, cpu) = load(t, hop, total, 32, |t| async move { t.call(hop).await }).await;
            cpu_req[hop as usize].push(cpu.as_secs_f64() * 1000.0 / total as f64);
            rps[hop as usize].push(total as f64 / wall.as_secs_f64());
        }
        // Streams of 20 events at 32 concurrent clients.
        for hop in HOPS {
            let (_, cpu) = load(t, hop, streams, 32, |t| async move {
                t.stream(hop).await;
            })
            .await;
            cpu_stream[hop as usize].push(cpu.as_secs_f64() * 1000.0 / streams as f64);
        }
        // Time to the first event with 500 streams started at once.
        for hop in HOPS {
            let firsts = futures::future::join_all((0..burst).map(|_| {
                let t = t.clone();
                async move { t.stream(hop).await }
            }))
            .await;
            let mut firsts = firsts;
            firsts.sort();
            ttfb[hop as usize].push(pct(&firsts, 0.5).as_secs_f64() * 1e3);
        }
    }
    // Memory with 500 streams held open (first event at once, the next a minute later).
    t.timing(0, 60_000).await;
    let mut rss = [0.0; 3];
    for hop in HOPS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (peak, errors, _) = hold(t, hop, burst, Duration::from_secs(30)).await;
        assert_eq!(errors, 0, "{hop:?}: streams failed to open");
        rss[hop as usize] = peak as f64 / 1024.0;
    }
    t.timing(0, 0).await;

    let m = |v: &[Vec<f64>; 3]| [median(v[0].clone()), median(v[1].clone()), median(v[2].clone())];
    let (l50, l99) = (m(&lat50), m(&lat99));
    let rows = [
        Row {
            name: "CPU per 1,000 non-streaming (c=32)",
            unit: "s",
            values: m(&cpu_req),
            goal: "<= 2x nginx",
        },
        Row {
            name: "throughput, non-streaming (c=32)",
            unit: "req/s",
            values: m(&rps),
            goal: ">= 0.6x nginx",
        },
        Row {
            name: "latency p50 at c=1",
            unit: "µs",
            values: l50,
            goal: "",
        },
        Row {
            name: "latency p99 at c=1",
            unit: "µs",
            values: l99,
            goal: "",
        },
        Row {
            name: "added latency p50 at c=1",
            unit: "µs",
            values: [0.0, l50[1] - l50[0], l50[2] - l50[0]],
            goal: "",
        },
        Row {
            name: "added latency p99 at c=1",
            unit: "µs",
            values: [0.0, l99[1] - l99[0], l99[2] - l99[0]],
            goal: "< 150 µs",
        },
        Row {
            name: "CPU per 1,000 streams (20 events)",
            unit: "s",
            values: m(&cpu_stream),
            goal: "<= 1.3x nginx",
        },
        Row {
            name: "stream TTFB p50, 500 concurrent",
            unit: "ms",
            values: m(&ttfb),
            goal: "<= 1.2x nginx",
        },
        Row {
            name: "RSS with 500 open streams",
            unit: "MiB",
            values: rss,
            goal: "<= nginx + 15 MiB",
        },
    ];
    println!(
        "\n== {rounds} rounds (medians): {n} sequential requests per hop, {total} at c=32, {streams} streams at c=32, {burst} concurrent streams"
    );
    println!(
        "{:<36}{:>6}{:>11}{:>11}{:>11}{:>10}{:>11}  goal",
        "figure", "unit", "direct", "nginx", "gateway", "gw/nginx", "gw/direct"
    );
    for r in rows {
        let [d, x, g] = r.values;
        let ratio = |a: f64, b: f64| {
            if b.abs() > f64::EPSILON {
                format!("{:.2}x", a / b)
            } else {
                "-".into()
            }
        };
        let prec = if r.unit == "s" { 4 } else { 1 };
        println!(
            "{:<36}{:>6}{:>11.prec$}{:>11.prec$}{:>11.prec$}{:>10}{:>11}  {}",
            r.name,
            r.unit,
            d,
            x,
            g,
            ratio(g, x),
            ratio(g, d),
            r.goal
        );
    }
}
