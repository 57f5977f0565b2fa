//! Egress proxies (`GEMINI_PROXIES`) through a real `tinyproxy` (Debian's package, started here
//! on a free loopback port): traffic goes through the key's proxy, a dead proxy or one refusing
//! its credentials is not the key's fault, the key → proxy binding survives restarts, pins are
//! kept, and proxy credentials never show in the admin API or the logs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gemini_balance::gateway::pool::fingerprint;
use gemini_balance::gateway::proxy::bound_index;
use gemini_balance::gateway::secret::Secret;
use gemini_balance::mock::MockGemini;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const USER: &str = "alice";
const PASSWORD: &str = "hunter22secret";

/// A `tinyproxy` child process in the foreground, with its own config and log file; killed
/// when dropped.
struct Tinyproxy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy on a free loopback port, asking for `USER`/`PASSWORD` when `auth`.
    async fn start(auth: bool) -> Tinyproxy {
        let port = free_port();
        let dir = temp_dir();
        let log = dir.join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 64\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
            log.display()
        );
        if auth {
            conf.push_str(&format!("BasicAuth {USER} {PASSWORD}\n"));
        }
        let conf_path = dir.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy must be installed (scripts/setup.sh installs Debian's tinyproxy)");
        let mut proxy = Tinyproxy { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("tinyproxy exited at start ({status}): {}", proxy.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return proxy;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tinyproxy did not start on port {port}: {}", proxy.log());
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its URL with the right credentials.
    fn url(&self) -> String {
        format!("http://{USER}:{PASSWORD}@{}", self.addr())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on (bound once, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` keys where key `i` is bound by its hash to proxy `i % proxies`.
fn keys_bound_in_turn(n: usize, proxies: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut candidates = (0..).map(|i| format!("AIzaProxyTestKey{i:05}ZZZZZZZZZZZZZZZZZZq{i:02}"));
    while out.len() < n {
        let want = out.len() % proxies;
        let key = candidates
            .find(|k| bound_index(&fingerprint(&Secret::new(k.as_str())), proxies) == want)
            .unwrap();
        out.push(key);
    }
    out
}

fn key_view<'a>(keys: &'a [Value], key: &str) -> &'a Value {
    let id = fingerprint(&Secret::new(key));
    keys.iter().find(|k| k["id"] == id.as_str()).unwrap()
}

async fn proxies_view(app: &TestApp) -> Vec<Value> {
    let (status, body) = admin(app, Method::GET, "/admin/api/proxies", None).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

async fn start(mock: &MockGemini, keys: &[String], extra: &[(&str, &str)]) -> TestApp {
    let addr = mock.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    spawn_gateway(mock.clone(), addr, &keys, extra, std::future::pending())
        .await
        .0
}

/// (1) Requests go through the key's proxy: tinyproxy logs them, and once it is stopped the
/// requests fail, without blaming the keys.
#[tokio::test]
async fn requests_reach_gemini_through_the_keys_proxy() {
    let mut proxy = Tinyproxy::start(true).await;
    let api_keys = keys_bound_in_turn(2, 1);
    let mock = MockGemini::new();
    let proxies = proxy.url();
    let app = start(
        &mock,
        &api_keys,
        &[("GEMINI_PROXIES", proxies.as_str()), ("ADMIN_TOKEN", ADMIN)],
    )
    .await;
    let mock_addr = app.mock_base.trim_start_matches("http://").to_string();

    for _ in 0..2 {
        let (status, body) = app.chat_json(&chat_body("hello")).await;
        assert_eq!(status, 200, "{body}");
    }
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "POST http://{mock_addr}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        )),
        "tinyproxy forwarded the requests: {log}"
    );
    let view = keys(&app).await;
    for key in &api_keys {
        assert_eq!(key_view(&view, key)["proxy"], proxy.addr().as_str(), "{view:?}");
        assert_eq!(key_view(&view, key)["proxy_pinned"], false);
    }
    let listed = proxies_view(&app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["host"], proxy.addr().as_str());
    assert_eq!(listed[0]["keys"], 2);
    assert_eq!(listed[0]["successes"], 2);
    assert_eq!(listed[0]["failures"], 0);

    // Without the proxy nothing gets out (nothing goes around it), and no key is blamed.
    proxy.stop();
    let before: u64 = api_keys.iter().map(|k| mock.requests_for(k)).sum();
    let (status, body) = app.chat_json(&chat_body("hello")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.to_string().contains("proxy_error"), "{body}");
    assert_eq!(api_keys.iter().map(|k| mock.requests_for(k)).sum::<u64>(), before);
    let view = keys(&app).await;
    for key in &api_keys {
        let k = key_view(&view, key);
        assert_eq!(k["state"], "active", "{k}");
        assert_eq!(k["consecutive_failures"], 0, "{k}");
    }
    let listed = proxies_view(&app).await;
    assert!(listed[0]["failures"].as_u64().unwrap() >= 1, "{listed:?}");
    assert!(listed[0]["cooling_in_secs"].as_u64().is_some(), "{listed:?}");
}

/// (2) A proxy that refuses connections, and one that refuses its credentials (407), count
/// against the proxy: the request succeeds through another key's working proxy, and the keys
/// behind the broken proxies are neither cooled nor disabled, even with `MAX_FAILURES=1`.
#[tokio::test]
async fn a_broken_proxy_is_not_the_keys_fault() {
    let proxy = Tinyproxy::start(true).await;
    let dead = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", free_port());
    let wrong_password = format!("http://{USER}:not-the-password@{}", proxy.addr());
    let list = format!("{},{dead},{wrong_password}", proxy.url());
    let api_keys = keys_bound_in_turn(3, 3);
    let (good, refused, unauthorized) = (&api_keys[0], &api_keys[1], &api_keys[2]);
    let mock = MockGemini::new();
    let app = start(
        &mock,
        &api_keys,
        &[
            ("GEMINI_PROXIES", list.as_str()),
            ("ADMIN_TOKEN", ADMIN),
            ("MAX_FAILURES", "1"),
        ],
    )
    .await;

    for i in 0..6 {
        let (status, body) = app.chat_json(&chat_body("hello")).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    assert_eq!(mock.requests_for(good), 6);
    assert_eq!(mock.requests_for(refused), 0);
    assert_eq!(mock.requests_for(unauthorized), 0);

    let listed = proxies_view(&app).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0]["failures"], 0, "{listed:?}");
    for broken in &listed[1..] {
        assert!(broken["failures"].as_u64().unwrap() >= 1, "{listed:?}");
        assert_eq!(broken["last_error"]["class"], "proxy_error");
    }
    // tinyproxy answers wrong credentials with a 401 (others send 407): never the key's 401.
    assert!(
        listed[2]["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused its credentials"),
        "{listed:?}"
    );
    let view = keys(&app).await;
    for key in [refused, unauthorized] {
        let k = key_view(&view, key);
        assert_eq!(k["state"], "active", "{k}");
        assert_eq!(k["consecutive_failures"], 0, "{k}");
        assert!(k["reason"].is_null(), "no error is booked on the key: {k}");
        assert!(k["success_rate_hour"].is_null(), "nor in its success rate: {k}");
    }
    let summary = admin(&app, Method::GET, "/admin/api/summary", None).await.1;
    assert!(summary.to_string().contains("proxy_error"), "{summary}");
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dead_host = dead.rsplit_once('@').unwrap().1;
    assert!(
        metrics.contains(&format!(
            "gb_proxy_attempts_total{{proxy=\"{dead_host}\",result=\"proxy_error\"}}"
        )),
        "{metrics}"
    );
    assert!(!metrics.contains(PASSWORD));
}

/// (3) The same key goes through the same proxy after a restart (whatever the order of the keys),
/// and an operator's pin survives a restart while its proxy is still configured.
#[tokio::test]
async fn the_binding_is_stable_and_pins_persist() {
    let list = format!(
        "http://127.0.0.1:{},socks5://u:p4ssw0rd@127.0.0.1:{}",
        free_port(),
        free_port()
    );
    let api_keys = keys_bound_in_turn(6, 2);
    let data = temp_dir();
    let data_dir = data.to_string_lossy().into_owned();
    let extra = [
        ("GEMINI_PROXIES", list.as_str()),
        ("ADMIN_TOKEN", ADMIN),
        ("DATA_DIR", data_dir.as_str()),
    ];
    let binding = |view: &[Value]| -> Vec<(String, String)> {
        api_keys
            .iter()
            .map(|k| {
                let v = key_view(view, k);
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["proxy"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    let mock = MockGemini::new();
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let addr = mock.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let refs: Vec<&str> = api_keys.iter().map(String::as_str).collect();
    let (a, handle_a) = spawn_gateway(mock.clone(), addr, &refs, &extra, async {
        let _ = stopped_a.await;
    })
    .await;
    let first = binding(&keys(&a).await);
    let hosts: std::collections::BTreeSet<&str> = first.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(hosts.len(), 2, "the keys are spread over both proxies: {first:?}");

    // Pins: unknown key, unknown proxy, a body without "proxy", then pin key 0 to proxy 1.
    let pin = |id: &str| format!("/admin/api/keys/{id}/proxy");
    let id0 = first[0].0.clone();
    assert_eq!(
        admin(&a, Method::POST, &pin("nope"), Some(json!({"proxy": 1}))).await.0,
        404
    );
    assert_eq!(
        admin(&a, Method::POST, &pin(&id0), Some(json!({"proxy": 7}))).await.0,
        400
    );
    assert_eq!(
        admin(&a, Method::POST, &pin(&id0), Some(json!({"proxy": "10.9.9.9:1"})))
            .await
            .0,
        400
    );
    assert_eq!(admin(&a, Method::POST, &pin(&id0), Some(json!({}))).await.0, 400);
    let other = if first[0].1 == refs_host(&list, 0) { 1 } else { 0 };
    let (status, view) = admin(&a, Method::POST, &pin(&id0), Some(json!({"proxy": other}))).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["proxy"], refs_host(&list, other).as_str());
    assert_eq!(view["proxy_pinned"], true);
    // Key 1 pinned by host:port, then unpinned.
    let id1 = first[1].0.clone();
    let host = refs_host(&list, other);
    let (status, view) = admin(&a, Method::POST, &pin(&id1), Some(json!({"proxy": host}))).await;
    assert_eq!((status, view["proxy_pinned"].clone()), (200, json!(true)), "{view}");
    let (status, view) = admin(&a, Method::POST, &pin(&id1), Some(json!({"proxy": null}))).await;
    assert_eq!((status, view["proxy"].clone()), (200, json!(first[1].1)), "{view}");
    assert_eq!(view["proxy_pinned"], false);
    let _ = stop_a.send(());
    handle_a.await.unwrap().unwrap();

    // Restart, keys in reverse order, same data: the same binding, and key 0 still pinned.
    let reversed: Vec<&str> = refs.iter().rev().copied().collect();
    let (b, _) = spawn_gateway(mock.clone(), addr, &reversed, &extra, std::future::pending()).await;
    let view = keys(&b).await;
    let second = binding(&view);
    assert_eq!(second[0].1, refs_host(&list, other));
    assert_eq!(key_view(&view, &api_keys[0])["proxy_pinned"], true);
    assert_eq!(first[1..], second[1..], "hash-bound keys keep their proxy");

    // A fresh data directory (another replica): the hash alone gives the same binding.
    let fresh = [("GEMINI_PROXIES", list.as_str()), ("ADMIN_TOKEN", ADMIN)];
    let (c, _) = spawn_gateway(mock.clone(), addr, &reversed, &fresh, std::future::pending()).await;
    let third = binding(&keys(&c).await);
    assert_eq!(first[1..], third[1..]);
    assert_eq!(
        third[0].1, first[0].1,
        "no pin here: key 0 is back on its hash-bound proxy"
    );
}

/// `host:port` of entry `i` of a proxy list.
fn refs_host(list: &str, i: usize) -> String {
    let entry = list.split(',').nth(i).unwrap();
    let rest = entry.split_once("://").unwrap().1;
    rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_string()
}

/// (4) Proxy credentials appear nowhere: not in the binary's logs (at trace level, with requests
/// through a working proxy, a dead one and one refusing the credentials), not in the admin API,
/// not in /metrics.
#[tokio::test]
async fn proxy_credentials_never_appear_in_logs_or_the_admin_api() {
    use std::io::Read;
    let proxy = Tinyproxy::start(true).await;
    let other_password = "s3cond-Passw0rd";
    let list = format!(
        "{},http://bob:{other_password}@127.0.0.1:{},http://{USER}:wrong-{PASSWORD}@{}",
        proxy.url(),
        free_port(),
        proxy.addr()
    );
    let api_keys = keys_bound_in_turn(3, 3);
    let mock = MockGemini::new();
    let addr = mock.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = free_port();
    let dir = temp_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemini-balance"))
        .current_dir(&dir)
        .env("GEMINI_API_KEYS", api_keys.join(","))
        .env("GEMINI_BASE_URL", format!("http://{addr}"))
        .env("GEMINI_PROXIES", &list)
        .env("ADMIN_TOKEN", ADMIN)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut served = 0;
    let mut shown = String::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..6 {
        let stream = i % 2 == 1;
        let body =
            json!({"model": "gemini-2.5-flash", "stream": stream, "messages": [{"role": "user", "content": "x"}]});
        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        served += u32::from(resp.status() == 200);
        shown.push_str(&resp.text().await.unwrap());
    }
    for path in [
        "/admin/api/keys",
        "/admin/api/proxies",
        "/admin/api/summary",
        "/metrics",
    ] {
        let resp = http
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        shown.push_str(&resp.text().await.unwrap());
    }
    child.kill().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(served, 6, "every request got through the working proxy: {out}");
    assert!(out.contains("egress proxy failed"), "proxy failures are logged: {out}");
    assert!(shown.contains(&proxy.addr()), "host:port is shown: {shown}");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for secret in [PASSWORD, other_password, basic.as_str()] {
        assert!(!out.contains(secret), "a proxy credential was logged:\n{out}");
        assert!(!shown.contains(secret), "a proxy credential was shown:\n{shown}");
    }
}
