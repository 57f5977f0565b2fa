//! Egress proxies (`GEMINI_PROXIES`): which proxy each key leaves through, one HTTP client per
//! proxy, and each proxy's health. Key health stays in `pool`; a proxy that cannot be reached
//! is booked here and never against the key.
//!
//! A key is bound to a proxy by a stable hash (FNV-1a) of its fingerprint, so every replica
//! and every restart sends it through the same proxy, unless an operator pinned it elsewhere.
//! Proxy URLs may carry credentials: they live in a [`Secret`] and only `host:port` is shown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::secret::Secret;

/// The first cooldown of a proxy that failed; it doubles with each failure in a row.
const COOLDOWN: Duration = Duration::from_secs(5);
/// The longest cooldown of a proxy that keeps failing.
const COOLDOWN_MAX: Duration = Duration::from_secs(60);

/// One configured proxy: its URL (secret: it may hold credentials) and `host:port` to show.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySpec {
    url: Secret,
    label: String,
}

impl std::fmt::Debug for ProxySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxySpec({})", self.label)
    }
}

impl ProxySpec {
    /// Parses one `http://`, `https://`, `socks5://` or `socks5h://` URL. Errors never quote
    /// the URL (it may hold a password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
        let default_port = match url.scheme() {
            "http" => 80,
            "https" => 443,
            "socks5" | "socks5h" => 1080,
            _ => return Err("the scheme must be http://, https://, socks5:// or socks5h://".into()),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "no host".to_string())?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{host}: a proxy URL has no path, query or fragment"));
        }
        let port = url.port().unwrap_or(default_port);
        Ok(ProxySpec {
            url: Secret::new(raw.trim()),
            label: format!("{host}:{port}"),
        })
    }

    /// `host:port`, safe to show.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The whole URL with its credentials, for the HTTP client only.
    pub fn url(&self) -> &Secret {
        &self.url
    }

    /// Removes the URL and its credentials from a message (errors of the HTTP client).
    pub fn scrub(&self, text: &str) -> String {
        let raw = self.url.expose();
        let mut out = text.replace(raw, &self.label);
        if let Ok(url) = url::Url::parse(raw) {
            out = out.replace(url.as_str(), &self.label);
            let password = url.password().unwrap_or("");
            let userinfo = match (url.username(), password) {
                ("", "") => String::new(),
                (user, "") => format!("{user}@"),
                (user, pass) => format!("{user}:{pass}@"),
            };
            if !userinfo.is_empty() {
                out = out.replace(&userinfo, "");
            }
            if password.len() >= 4 {
                out = out.replace(password, "…");
            }
        }
        out
    }
}

/// `GEMINI_PROXIES`: comma-separated proxy URLs; empty entries are skipped. An error names the
/// entry by position (and host when known), never its text.
pub fn parse_list(raw: Option<&str>) -> Result<Vec<ProxySpec>, String> {
    raw.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, item)| ProxySpec::parse(item).map_err(|e| format!("entry {}: {e}", i + 1)))
        .collect()
}

/// FNV-1a, 64 bits: the same on every machine and every run (unlike std's hasher).
fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The proxy a key goes through when nobody pinned it: its fingerprint's hash modulo `n`.
pub fn bound_index(fingerprint: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (fnv1a(fingerprint) % n as u64) as usize
}

/// The last failure of a proxy.
#[derive(Debug, Clone)]
pub struct ProxyFailure {
    pub message: String,
    pub at: SystemTime,
}

#[derive(Debug, Default)]
struct Health {
    consecutive: u32,
    cooling_until: Option<Instant>,
    last_error: Option<ProxyFailure>,
}

struct Egress {
    spec: ProxySpec,
    client: reqwest::Client,
    failures: AtomicU64,
    successes: AtomicU64,
    health: Mutex<Health>,
}

/// Only `host:port`: the client's own `Debug` would print the proxy URL.
impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("proxy", &self.spec.label)
            .finish_non_exhaustive()
    }
}

/// A read-only picture of one proxy, safe to show.
#[derive(Debug, Clone)]
pub struct ProxyStatus {
    pub index: usize,
    pub label: String,
    pub failures: u64,
    pub successes: u64,
    pub consecutive_failures: u32,
    pub cooling_in: Option<Duration>,
    pub last_error: Option<ProxyFailure>,
}

/// Why a pin was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinError {
    NoProxies,
    UnknownProxy(String),
}

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinError::NoProxies => f.write_str("no proxies are configured (GEMINI_PROXIES)"),
            PinError::UnknownProxy(p) => write!(f, "no proxy {p:?}: give its index or its host:port"),
        }
    }
}

/// The configured proxies with their clients, health and operator pins. Empty: every request
/// goes out directly, and nothing here is consulted.
#[derive(Debug, Default)]
pub struct Proxies {
    egress: Vec<Egress>,
    /// fingerprint → proxy index, set by an operator.
    pins: RwLock<HashMap<String, usize>>,
}

impl Proxies {
    /// One client per proxy, each built by `build` from a configured `reqwest::ClientBuilder`.
    pub fn new(specs: &[ProxySpec], mut builder: impl FnMut() -> reqwest::ClientBuilder) -> Result<Self, String> {
        let mut egress = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let fail = |what: &str, e: reqwest::Error| {
                format!(
                    "GEMINI_PROXIES entry {} ({}): {what}: {}",
                    i + 1,
                    spec.label,
                    spec.scrub(&e.to_string())
                )
            };
            // No `NO_PROXY` exceptions: a key's traffic always leaves through its proxy.
            let proxy = reqwest::Proxy::all(spec.url.expose())
                .map_err(|e| fail("not a usable proxy", e))?
                .no_proxy(None);
            let client = builder()
                .proxy(proxy)
                .build()
                .map_err(|e| fail("cannot build its HTTP client", e))?;
            egress.push(Egress {
                spec: spec.clone(),
                client,
                failures: AtomicU64::new(0),
                successes: AtomicU64::new(0),
                health: Mutex::new(Health::default()),
            });
        }
        Ok(Proxies {
            egress,
            pins: RwLock::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.egress.is_empty()
    }

    pub fn len(&self) -> usize {
        self.egress.len()
    }

    /// The proxy a key goes through (`None`: no proxies, direct).
    pub fn route(&self, fingerprint: &str) -> Option<usize> {
        if self.egress.is_empty() {
            return None;
        }
        let pinned = self
            .pins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(fingerprint)
            .copied();
        Some(pinned.unwrap_or_else(|| bound_index(fingerprint, self.egress.len())))
    }

    /// Whether the key is pinned by an operator (rather than bound by its hash).
    pub fn is_pinned(&self, fingerprint: &str) -> bool {
        self.pins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(fingerprint)
    }

    /// The client of proxy `index`.
    pub fn client(&self, index: usize) -> Option<&reqwest::Client> {
        self.egress.get(index).map(|e| &e.client)
    }

    pub fn label(&self, index: usize) -> Option<&str> {
        self.egress.get(index).map(|e| e.spec.label())
    }

    /// Finds a proxy by index (`"0"`, or a JSON number given as text) or by `host:port` (or host
    /// alone, when only one proxy has that host).
    pub fn find(&self, wanted: &str) -> Result<usize, PinError> {
        if self.egress.is_empty() {
            return Err(PinError::NoProxies);
        }
        let wanted = wanted.trim();
        if let Ok(i) = wanted.parse::<usize>() {
            if i < self.egress.len() {
                return Ok(i);
            }
        }
        if let Some(i) = self.egress.iter().position(|e| e.spec.label() == wanted) {
            return Ok(i);
        }
        let by_host: Vec<usize> = (0..self.egress.len())
            .filter(|&i| {
                self.egress[i]
                    .spec
                    .label()
                    .rsplit_once(':')
                    .is_some_and(|(host, _)| host == wanted)
            })
            .collect();
        match by_host.as_slice() {
            [i] => Ok(*i),
            _ => Err(PinError::UnknownProxy(wanted.to_string())),
        }
    }

    /// Pins a key to a proxy, or (`None`) returns it to its hash-bound proxy.
    pub fn pin(&self, fingerprint: &str, index: Option<usize>) -> Result<(), PinError> {
        if self.egress.is_empty() {
            return Err(PinError::NoProxies);
        }
        let mut pins = self.pins.write().unwrap_or_else(|e| e.into_inner());
        match index {
            Some(i) if i < self.egress.len() => {
                pins.insert(fingerprint.to_string(), i);
            }
            Some(i) => return Err(PinError::UnknownProxy(i.to_string())),
            None => {
                pins.remove(fingerprint);
            }
        }
        Ok(())
    }

    /// Whether the key's proxy is cooling down after failures (keys behind it wait, while
    /// keys behind other proxies can serve).
    pub fn is_cooling(&self, fingerprint: &str, now: Instant) -> bool {
        self.route(fingerprint)
            .and_then(|i| self.egress.get(i))
            .is_some_and(|e| health(e).cooling_until.is_some_and(|t| t > now))
    }

    /// Whether any proxy is cooling down now (cheap check before filtering keys).
    pub fn any_cooling(&self, now: Instant) -> bool {
        self.egress
            .iter()
            .any(|e| health(e).cooling_until.is_some_and(|t| t > now))
    }

    /// Books a request that went through proxy `index` (whatever Google answered).
    pub fn succeeded(&self, index: usize) {
        if let Some(e) = self.egress.get(index) {
            e.successes.fetch_add(1, Ordering::Relaxed);
            let mut h = health(e);
            h.consecutive = 0;
            h.cooling_until = None;
        }
    }

    /// Books a failure to reach or use proxy `index`; it cools down for a while.
    pub fn failed(&self, index: usize, message: &str, now: Instant) {
        if let Some(e) = self.egress.get(index) {
            e.failures.fetch_add(1, Ordering::Relaxed);
            let mut h = health(e);
            h.consecutive = h.consecutive.saturating_add(1);
            let factor = 2u32.saturating_pow(h.consecutive.saturating_sub(1).min(16));
            h.cooling_until = Some(now + COOLDOWN.saturating_mul(factor).min(COOLDOWN_MAX));
            h.last_error = Some(ProxyFailure {
                message: e.spec.scrub(message),
                at: SystemTime::now(),
            });
        }
    }

    /// Removes proxy `index`'s URL and credentials from a message.
    pub fn scrub(&self, index: usize, text: &str) -> String {
        match self.egress.get(index) {
            Some(e) => e.spec.scrub(text),
            None => text.to_string(),
        }
    }

    pub fn status(&self, now: Instant) -> Vec<ProxyStatus> {
        self.egress
            .iter()
            .enumerate()
            .map(|(index, e)| {
                let h = health(e);
                ProxyStatus {
                    index,
                    label: e.spec.label().to_string(),
                    failures: e.failures.load(Ordering::Relaxed),
                    successes: e.successes.load(Ordering::Relaxed),
                    consecutive_failures: h.consecutive,
                    cooling_in: h.cooling_until.filter(|t| *t > now).map(|t| t - now),
                    last_error: h.last_error.clone(),
                }
            })
            .collect()
    }
}

fn health(e: &Egress) -> std::sync::MutexGuard<'_, Health> {
    e.health.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_and_shows_only_host_and_port() {
        let p = ProxySpec::parse("http://user:s3cretpw@proxy.example:3128").unwrap();
        assert_eq!(p.label(), "proxy.example:3128");
        assert!(!format!("{p:?}").contains("s3cret"));
        assert_eq!(ProxySpec::parse("https://p.example").unwrap().label(), "p.example:443");
        assert_eq!(ProxySpec::parse("socks5://10.0.0.1").unwrap().label(), "10.0.0.1:1080");
        assert_eq!(ProxySpec::parse("socks5h://[::1]:9050/").unwrap().label(), "[::1]:9050");
    }

    #[test]
    fn bad_entries_are_named_by_position_without_their_text() {
        let e = parse_list(Some("http://ok:1, ftp://user:hunter22@x:1")).unwrap_err();
        assert!(e.starts_with("entry 2:"), "{e}");
        assert!(!e.contains("hunter22"), "{e}");
        let e = parse_list(Some("not a url with pass hunter22")).unwrap_err();
        assert!(e.starts_with("entry 1:") && !e.contains("hunter22"), "{e}");
        let e = parse_list(Some("http://u:hunter22@x:1/path")).unwrap_err();
        assert!(!e.contains("hunter22"), "{e}");
        assert!(parse_list(None).unwrap().is_empty());
        assert_eq!(parse_list(Some(" , http://a:1 ,")).unwrap().len(), 1);
    }

    #[test]
    fn the_binding_is_a_fixed_hash_of_the_fingerprint() {
        // FNV-1a of known inputs: the binding must never change between builds or machines.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(bound_index("a", 3), (0xaf63_dc4c_8601_ec8c_u64 % 3) as usize);
        // Spread: 300 fingerprints over 3 proxies, each gets a fair share.
        let mut counts = [0; 3];
        for i in 0..300 {
            counts[bound_index(&format!("{i:012x}"), 3)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
    }

    #[test]
    fn scrub_removes_credentials() {
        let p = ProxySpec::parse("http://alice:hunter22@127.0.0.1:8080").unwrap();
        let text = "error via http://alice:hunter22@127.0.0.1:8080/ (alice:hunter22@) hunter22";
        let out = p.scrub(text);
        assert!(!out.contains("hunter22"), "{out}");
    }

    #[test]
    fn pins_override_the_hash_and_failures_cool_the_proxy() {
        let specs = parse_list(Some("http://127.0.0.1:1,http://127.0.0.1:2")).unwrap();
        let proxies = Proxies::new(&specs, reqwest::Client::builder).unwrap();
        let fp = "0123456789ab";
        let bound = bound_index(fp, 2);
        assert_eq!(proxies.route(fp), Some(bound));
        proxies.pin(fp, Some(1 - bound)).unwrap();
        assert_eq!(proxies.route(fp), Some(1 - bound));
        assert!(proxies.is_pinned(fp));
        proxies.pin(fp, None).unwrap();
        assert_eq!(proxies.route(fp), Some(bound));
        assert_eq!(proxies.find("127.0.0.1:2"), Ok(1));
        assert_eq!(proxies.find("1"), Ok(1));
        assert!(proxies.find("127.0.0.1").is_err(), "ambiguous host");
        assert!(proxies.pin(fp, Some(5)).is_err());
        let specs = parse_list(Some("http://alice:hunter22@127.0.0.1:1")).unwrap();
        let shown = format!("{:?}", Proxies::new(&specs, reqwest::Client::builder).unwrap());
        assert!(!shown.contains("hunter22"), "{shown}");

        let now = Instant::now();
        assert!(!proxies.any_cooling(now));
        proxies.failed(bound, "connection refused", now);
        assert!(proxies.is_cooling(fp, now));
        assert!(!proxies.is_cooling(fp, now + COOLDOWN));
        proxies.failed(bound, "connection refused", now);
        assert!(proxies.is_cooling(fp, now + COOLDOWN), "the cooldown doubles");
        proxies.succeeded(bound);
        assert!(!proxies.any_cooling(now));
        let status = proxies.status(now);
        assert_eq!(status[bound].failures, 2);
        assert_eq!(status[bound].successes, 1);
    }

    #[test]
    fn no_proxies_means_direct() {
        let proxies = Proxies::default();
        assert_eq!(proxies.route("abc"), None);
        assert_eq!(proxies.pin("abc", Some(0)), Err(PinError::NoProxies));
    }
}
