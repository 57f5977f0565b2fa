//! Several replicas sharing one key pool through a real `redis-server` (Debian's package,
//! started here on a free loopback port): 429 cooldowns, invalid keys, operator decisions and
//! new keys travel between replicas; a replica started later, a Redis outage during traffic,
//! Redis absent at start, and two replicas writing the same key's deadline.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gemini_balance::mock::{Behavior, MockGemini};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const A: &str = "AIzaReplicaKeyAAAAAAAAAAAAAAAAAAAAAAAAA1";
const B: &str = "AIzaReplicaKeyBBBBBBBBBBBBBBBBBBBBBBBBB2";
const C: &str = "AIzaReplicaKeyCCCCCCCCCCCCCCCCCCCCCCCCC3";

/// A `redis-server` child process, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/setup.sh installs Debian's redis-server)");
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis.command("PING").await.as_deref() == Some("+PONG") {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One inline command; the first line of the answer.
    async fn command(&self, cmd: &str) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        String::from_utf8_lossy(&buf[..n]).lines().next().map(str::to_string)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn mock() -> (MockGemini, SocketAddr) {
    let mock = MockGemini::new();
    let addr = mock.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (mock, addr)
}

async fn replica(mock: &(MockGemini, SocketAddr), keys: &[&str], redis_url: &str, name: &str) -> TestApp {
    spawn_gateway(
        mock.0.clone(),
        mock.1,
        keys,
        &[
            ("ADMIN_TOKEN", ADMIN),
            ("REDIS_URL", redis_url),
            ("REDIS_PREFIX", "test:"),
            ("REPLICA_NAME", name),
        ],
        std::future::pending(),
    )
    .await
    .0
}

/// The admin view of the key ending in `tail`, if the replica has it.
async fn key(app: &TestApp, tail: &str) -> Option<Value> {
    keys(app)
        .await
        .into_iter()
        .find(|k| k["masked"].as_str().unwrap().ends_with(tail))
}

/// Waits up to 3 s for `check` to hold on the key ending in `tail`.
async fn until_key(app: &TestApp, tail: &str, check: impl Fn(Option<&Value>) -> bool) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let k = key(app, tail).await;
        if check(k.as_ref()) || Instant::now() > deadline {
            return k;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn limited(k: Option<&Value>) -> bool {
    k.is_some_and(|k| k["state"] != "active" || !k["rate_limited_models"].as_array().unwrap().is_empty())
}

async fn metric(app: &TestApp, name: &str) -> Option<String> {
    let text = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
}

/// Waits up to 10 s for the replica's `gb_redis_up` to read `value`.
async fn redis_up_becomes(app: &TestApp, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(app, "gb_redis_up").await.as_deref() != Some(value) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_429_on_one_replica_is_honoured_by_the_other() {
    let redis = Redis::start(free_port()).await;
    let m = mock().await;
    let one = replica(&m, &[A, B], &redis.url(), "one").await;
    let two = replica(&m, &[A, B], &redis.url(), "two").await;
    m.0.set(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 40.0,
            per_day: false,
        },
    );
    for i in 0..4 {
        let (status, body) = one.chat_json(&chat_body(&format!("hi {i}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    let seen = until_key(&two, "AA1", limited).await;
    assert!(limited(seen.as_ref()), "replica two knows A is waiting: {seen:?}");
    let available_in = seen.unwrap()["available_in_secs"].as_u64();
    assert!(
        available_in.is_none_or(|s| s > 30),
        "Google's delay, not a default: {available_in:?}"
    );

    // A answers again, but replica two still waits out the delay: it never sends to A.
    m.0.set(A, Behavior::Ok);
    let before = m.0.requests_for(A);
    for i in 0..6 {
        let (status, _) = two.chat_json(&chat_body(&format!("two {i}"))).await;
        assert_eq!(status, 200);
    }
    assert_eq!(m.0.requests_for(A), before, "no request went to the limited key");
    assert_eq!(metric(&two, "gb_redis_up").await.as_deref(), Some("1"));
    let (_, summary) = admin(&two, Method::GET, "/admin/api/summary", None).await;
    assert_eq!(
        summary["replica"],
        json!({"name": "two", "redis_up": true}),
        "the page names its replica"
    );
}

#[tokio::test]
async fn invalid_keys_operator_decisions_and_new_keys_are_shared() {
    let redis = Redis::start(free_port()).await;
    let m = mock().await;
    let one = replica(&m, &[A, B], &redis.url(), "one").await;
    let two = replica(&m, &[A, B], &redis.url(), "two").await;

    m.0.set(A, Behavior::Invalid);
    for i in 0..4 {
        assert_eq!(one.chat_json(&chat_body(&format!("x{i}"))).await.0, 200);
    }
    assert!(m.0.requests_for(A) > 0, "replica one tried A");
    let k = until_key(&two, "AA1", |k| k.is_some_and(|k| k["state"] == "disabled")).await;
    assert_eq!(k.as_ref().map(|k| k["state"].clone()), Some(json!("disabled")), "{k:?}");

    // A key added on one replica's admin API is used by the other.
    let (status, _) = admin(&one, Method::POST, "/admin/api/keys", Some(json!({"keys": C}))).await;
    assert_eq!(status, 200);
    assert!(
        until_key(&two, "CC3", |k| k.is_some()).await.is_some(),
        "the new key reached replica two"
    );

    // Disabled by hand on replica two: replica one stops using it.
    let ids = keys(&two).await;
    let (status, _) = admin(
        &two,
        Method::POST,
        &format!("/admin/api/keys/{}/disable", id_of(&ids, "BB2")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let k = until_key(&one, "BB2", |k| k.is_some_and(|k| k["state"] == "manual_disabled")).await;
    assert_eq!(k.unwrap()["state"], "manual_disabled");
    let before = m.0.requests_for(B);
    for i in 0..4 {
        assert_eq!(one.chat_json(&chat_body(&format!("y{i}"))).await.0, 200);
    }
    assert_eq!(m.0.requests_for(B), before);

    // A replica started now picks all of it up before it serves.
    let three = replica(&m, &[A, B], &redis.url(), "three").await;
    let now = keys(&three).await;
    let state = |tail: &str| {
        now.iter()
            .find(|k| k["masked"].as_str().unwrap().ends_with(tail))
            .map(|k| k["state"].clone())
    };
    assert_eq!(state("AA1"), Some(json!("disabled")));
    assert_eq!(state("BB2"), Some(json!("manual_disabled")));
    assert_eq!(state("CC3"), Some(json!("active")));

    // Removed on one replica, gone everywhere.
    let ids = keys(&one).await;
    let (status, _) = admin(
        &one,
        Method::DELETE,
        &format!("/admin/api/keys/{}", id_of(&ids, "CC3")),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(until_key(&three, "CC3", |k| k.is_none()).await.is_none());
    // Keys never appear in clear anywhere but Redis itself.
    let page = admin(&three, Method::GET, "/admin/api/keys", None).await.1.to_string();
    assert!(!page.contains(A) && !page.contains(B));
}

#[tokio::test]
async fn a_redis_outage_changes_nothing_for_clients_and_is_reconciled() {
    let port = free_port();
    let mut redis = Redis::start(port).await;
    let m = mock().await;
    let one = replica(&m, &[A, B], &redis.url(), "one").await;
    redis.stop();
    // Traffic goes on while Redis is gone; decisions stay local.
    m.0.set(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 60.0,
            per_day: false,
        },
    );
    for i in 0..10 {
        let (status, body) = one.chat_json(&chat_body(&format!("o{i}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    redis_up_becomes(&one, "0").await;
    assert_eq!(metric(&one, "gb_redis_up").await.as_deref(), Some("0"));

    // Redis comes back empty: the replica pushes what it decided meanwhile.
    let redis = Redis::start(port).await;
    redis_up_becomes(&one, "1").await;
    assert_eq!(metric(&one, "gb_redis_up").await.as_deref(), Some("1"));
    let two = replica(&m, &[A, B], &redis.url(), "two").await;
    let k = key(&two, "AA1").await;
    assert!(
        limited(k.as_ref()),
        "the 429 decided during the outage reached Redis: {k:?}"
    );
}

#[tokio::test]
async fn redis_absent_at_start_then_joined() {
    let port = free_port();
    let m = mock().await;
    let url = format!("redis://127.0.0.1:{port}/0");
    let started = Instant::now();
    let one = replica(&m, &[A, B], &url, "one").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "start-up does not hang on Redis"
    );
    assert_eq!(one.chat_json(&chat_body("still serving")).await.0, 200);
    assert_eq!(metric(&one, "gb_redis_up").await.as_deref(), Some("0"));
    let _redis = Redis::start(port).await;
    redis_up_becomes(&one, "1").await;
    assert_eq!(
        metric(&one, "gb_redis_up").await.as_deref(),
        Some("1"),
        "joined when Redis appeared"
    );
    let two = replica(&m, &[A, B], &url, "two").await;
    let ids = keys(&one).await;
    let (status, _) = admin(
        &one,
        Method::POST,
        &format!("/admin/api/keys/{}/disable", id_of(&ids, "AA1")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let k = until_key(&two, "AA1", |k| k.is_some_and(|k| k["state"] == "manual_disabled")).await;
    assert_eq!(k.unwrap()["state"], "manual_disabled");
}

#[tokio::test]
async fn two_replicas_racing_on_one_deadline_keep_the_later_one() {
    let redis = Redis::start(free_port()).await;
    let m = mock().await;
    let one = replica(&m, &[A, B], &redis.url(), "one").await;
    let two = replica(&m, &[A, B], &redis.url(), "two").await;
    // The long delay is decided first, the short one after: the long one must stand.
    m.0.set(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 300.0,
            per_day: false,
        },
    );
    assert_eq!(one.chat_json(&chat_body("long")).await.0, 200);
    m.0.set(
        A,
        Behavior::RateLimited {
            retry_delay_secs: 20.0,
            per_day: false,
        },
    );
    // Replica two may already know A is limited and skip it; force attempts at once on both.
    let (short, short_too) = (chat_body("short"), chat_body("short too"));
    let (r1, r2) = tokio::join!(two.chat_json(&short), one.chat_json(&short_too));
    assert_eq!((r1.0, r2.0), (200, 200));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for app in [&one, &two] {
        let k = key(app, "AA1").await.unwrap();
        assert!(limited(Some(&k)), "{k}");
        let wait = k["available_in_secs"].as_u64();
        assert!(wait.is_none_or(|s| s > 250), "the later deadline stands: {k}");
    }
    // Redis keeps the deadline as long as it lasts, and no longer.
    let fp = gemini_balance::gateway::pool::fingerprint(&gemini_balance::gateway::secret::Secret::new(A));
    let ttl = redis.command(&format!("PTTL test:dl:{fp}")).await.unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!((250_000..=300_000).contains(&ttl), "TTL {ttl} ms");
}
