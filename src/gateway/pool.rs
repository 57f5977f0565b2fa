//! The key pool: round-robin selection over healthy keys and the per-key health state machine.
//!
//! Nothing here does I/O. Callers [`KeyPool::acquire`] a [`Lease`], make the upstream call, and
//! [`Lease::report`] an [`Outcome`]. Each key has its own small mutex, held only for a few
//! instructions and never across an `.await`; the rotation cursor is an atomic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::clock::Clock;
use super::config::PoolSettings;
use super::secret::Secret;

/// What one upstream call said about the key that made it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx: the key works.
    Success,
    /// The key itself is bad (`API_KEY_INVALID`, 401): out of rotation until a probe succeeds.
    InvalidKey { message: String },
    /// 403 naming the key or its project (suspended, API disabled, unregistered caller): out
    /// until a probe succeeds. A 403 about the request (someone else's file) is a `ClientError`.
    PermissionDenied { message: String },
    /// 429 with a quota limit of 0: the model is not available to this key's tier or region and
    /// waiting never helps. The key is out for that model until it is re-validated.
    ModelUnavailable { message: String },
    /// 429: wait out `retry_after` on this key, for one model or for the whole key.
    RateLimited {
        retry_after: RetryAfter,
        per_model: bool,
        message: String,
    },
    /// 5xx, timeout, connection error: counts towards `max_failures`.
    Transient { class: FailureClass, message: String },
    /// The request itself was at fault (bad request, unknown model): no blame on the key.
    ClientError,
    /// The caller went away before an answer: no information about the key.
    Cancelled,
    /// Google accepted the request (headers received) but did not finish in time: slow is not
    /// dead, so no blame, and no retry on another key (it would repeat the same slow work).
    Stalled { message: String },
    /// The key's egress proxy could not be reached or refused the request (connection refused,
    /// handshake or authentication failure): the proxy's fault, not the key's. No blame on the
    /// key; the request moves on to another key.
    ProxyFailed { message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// A delay, from `google.rpc.RetryInfo`.
    Delay(Duration),
    /// A per-day quota: until Google's daily reset (midnight Pacific time).
    DailyReset,
    /// No delay given: the pool's default.
    Unspecified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    ServerError,
    Timeout,
    Connection,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::ServerError => "server_error",
            FailureClass::Timeout => "timeout",
            FailureClass::Connection => "connection_error",
        }
    }
}

impl Outcome {
    /// Short machine-readable class for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::InvalidKey { .. } => "invalid_key",
            Outcome::PermissionDenied { .. } => "permission_denied",
            Outcome::ModelUnavailable { .. } => "model_unavailable",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Transient { class, .. } => class.as_str(),
            Outcome::ClientError => "client_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Stalled { .. } => "stalled",
            Outcome::ProxyFailed { .. } => "proxy_error",
        }
    }

    /// Whether the same request may succeed on another key.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Outcome::InvalidKey { .. }
                | Outcome::PermissionDenied { .. }
                | Outcome::ModelUnavailable { .. }
                | Outcome::RateLimited { .. }
                | Outcome::Transient { .. }
                | Outcome::ProxyFailed { .. }
        )
    }

    /// Whether the outcome is a failure of the key itself (or of Google's service behind it),
    /// counted in its success rate: not a success, a stall on an accepted request, a request
    /// Google refused for its content, or a cancellation.
    pub fn counts_against_key(&self) -> bool {
        self.is_retryable() && !matches!(self, Outcome::ProxyFailed { .. })
    }

    /// The message that came with a failure ("" for success and no-information outcomes).
    pub fn message(&self) -> &str {
        match self {
            Outcome::Transient { message, .. }
            | Outcome::InvalidKey { message }
            | Outcome::PermissionDenied { message }
            | Outcome::ModelUnavailable { message }
            | Outcome::Stalled { message }
            | Outcome::ProxyFailed { message }
            | Outcome::RateLimited { message, .. } => message,
            Outcome::Success | Outcome::ClientError | Outcome::Cancelled => "",
        }
    }

    /// Replaces the message (after redaction).
    pub fn set_message(&mut self, text: String) {
        match self {
            Outcome::Transient { message, .. }
            | Outcome::InvalidKey { message }
            | Outcome::PermissionDenied { message }
            | Outcome::ModelUnavailable { message }
            | Outcome::Stalled { message }
            | Outcome::ProxyFailed { message }
            | Outcome::RateLimited { message, .. } => *message = text,
            Outcome::Success | Outcome::ClientError | Outcome::Cancelled => {}
        }
    }
}

/// What a validation or probe of a key found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The key can generate.
    Works,
    /// Google rejected the key itself (400 `API_KEY_*`, 401, a key-scoped 403).
    Rejected(String),
    /// Nothing learned (429, 5xx, timeout, connection error): the key's state stays as it is.
    Inconclusive(String),
}

/// A decision about a key that other replicas should know (see `redis_sync`). Deadlines are
/// wall-clock milliseconds since the Unix epoch, so they mean the same on every machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Added {
        secret: Secret,
    },
    Removed {
        fingerprint: String,
    },
    /// Taken out (`true`) or put back (`false`) by an operator.
    Manual {
        fingerprint: String,
        on: bool,
    },
    Reset {
        fingerprint: String,
    },
    /// Found invalid or forbidden: out until re-validated.
    Invalid {
        fingerprint: String,
        message: String,
    },
    /// Validated or probed as working: trusted again, zero-quota models retried.
    Works {
        fingerprint: String,
    },
    ModelUnavailable {
        fingerprint: String,
        model: String,
    },
    /// A 429: for one model, or the whole key (`model: None`), until then.
    RateLimited {
        fingerprint: String,
        model: Option<String>,
        until_ms: u64,
    },
    /// The circuit opened after repeated failures, until then; `strikes` drives the doubling.
    Cooldown {
        fingerprint: String,
        until_ms: u64,
        strikes: u32,
    },
}

/// Where the pool sends its [`Fact`]s; must not block (a channel's `try_send`).
pub type FactSink = Arc<dyn Fn(Fact) + Send + Sync>;

/// What the pool knows about one key, to share in full (after an outage, at start).
#[derive(Debug, Clone)]
pub struct KeyFacts {
    pub secret: Secret,
    pub fingerprint: String,
    pub manual: bool,
    pub invalid: Option<String>,
    pub unavailable_models: Vec<String>,
    pub key_rate_limit_ms: Option<u64>,
    pub model_rate_limits_ms: Vec<(String, u64)>,
    pub cooldown_ms: Option<(u64, u32)>,
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why no key could be handed out.
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    /// When the earliest key should be usable again (`None`: no key will come back by itself soon).
    pub retry_after: Option<Duration>,
    /// Every key that exists is waiting out a 429 for this model.
    pub all_rate_limited: bool,
    /// Every key that exists has a quota of 0 for this model: it is not available to the pool.
    pub model_unavailable: bool,
    /// How many keys the pool holds.
    pub total_keys: usize,
}

/// A key's place in the health state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyState {
    Active,
    /// Out of rotation after `max_failures` consecutive failures, until `until`.
    CoolingDown {
        until: Instant,
    },
    /// Cooldown over: one trial request at a time decides whether the key is trusted again.
    HalfOpen {
        trial_in_flight: bool,
    },
    /// Invalid or forbidden: out until a probe succeeds.
    Disabled {
        next_probe: Instant,
        backoff: Duration,
        probing: bool,
    },
    /// Taken out by an operator: out until enabled again, never probed.
    Manual,
}

#[derive(Debug, Clone)]
pub struct LastError {
    pub class: &'static str,
    pub message: String,
    pub at: SystemTime,
}

#[derive(Debug)]
struct Health {
    state: KeyState,
    consecutive_failures: u32,
    /// How many times the circuit opened in a row: the cooldown doubles with each.
    strikes: u32,
    key_rate_limit: Option<Instant>,
    model_rate_limits: HashMap<String, Instant>,
    /// Models with a quota of 0 for this key: out until the key is re-validated.
    unavailable_models: Vec<String>,
    last_error: Option<LastError>,
    last_used: Option<SystemTime>,
    /// Bumped on every state change; outcomes of leases taken before it are not applied.
    generation: u64,
}

impl Health {
    fn set_state(&mut self, state: KeyState) {
        self.state = state;
        self.generation = self.generation.wrapping_add(1);
    }

    /// Back to a trusted, active key (failures and strikes forgotten).
    fn trust(&mut self) {
        self.set_state(KeyState::Active);
        self.consecutive_failures = 0;
        self.strikes = 0;
    }
}

/// One key and its health.
#[derive(Debug)]
pub struct KeyEntry {
    id: u64,
    fingerprint: String,
    secret: Secret,
    masked: String,
    health: Mutex<Health>,
    requests: AtomicU64,
    failures: AtomicU64,
    tokens: AtomicU64,
    window: Mutex<Window>,
}

/// Per-minute counters over the last day, for success rates and charts.
#[derive(Debug, Default)]
struct Window {
    buckets: std::collections::VecDeque<Bucket>,
}

/// What one attempt says about its key, for the key's success rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// Google answered the request through the key.
    Served,
    /// The attempt failed through a fault of the key (or its project).
    KeyFault,
    /// The attempt failed, but not through the key (the request, a stall on an accepted
    /// request, the egress proxy): counted as a request, left out of the success rate.
    NotTheKeys,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Bucket {
    pub minute: u64,
    /// Attempts through the key, whatever their outcome.
    pub requests: u32,
    pub successes: u32,
    /// Attempts that failed through the key's own fault.
    pub failures: u32,
    pub latency_ms: u64,
    pub tokens: u64,
}

impl Window {
    fn bucket(&mut self, minute: u64) -> &mut Bucket {
        while self.buckets.front().is_some_and(|b| b.minute + 1440 <= minute) {
            self.buckets.pop_front();
        }
        if self.buckets.back().is_none_or(|b| b.minute != minute) {
            self.buckets.push_back(Bucket {
                minute,
                ..Default::default()
            });
        }
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }

    fn sum(&self, since_minute: u64) -> Bucket {
        self.buckets
            .iter()
            .filter(|b| b.minute >= since_minute)
            .fold(Bucket::default(), |mut acc, b| {
                acc.requests += b.requests;
                acc.successes += b.successes;
                acc.failures += b.failures;
                acc.latency_ms += b.latency_ms;
                acc.tokens += b.tokens;
                acc
            })
    }
}

/// A stable, non-secret id for a key: the first 12 hex digits of its SHA-256.
pub fn fingerprint(secret: &Secret) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.expose().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl KeyEntry {
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
    pub fn masked(&self) -> &str {
        &self.masked
    }
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_attempt(&self, wall: SystemTime, attribution: Attribution, latency: Duration) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let b = w.bucket(minute_of(wall));
        b.requests = b.requests.saturating_add(1);
        match attribution {
            Attribution::Served => b.successes = b.successes.saturating_add(1),
            Attribution::KeyFault => b.failures = b.failures.saturating_add(1),
            Attribution::NotTheKeys => {}
        }
        b.latency_ms = b.latency_ms.saturating_add(latency.as_millis() as u64);
    }
}

/// A read-only picture of one key, safe to show (masked key only).
#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub id: u64,
    /// Stable id for admin actions and persistence (not secret).
    pub fingerprint: String,
    pub masked: String,
    pub state: &'static str,
    /// Seconds until the key is expected back in rotation, when it is waiting.
    pub available_in: Option<Duration>,
    pub consecutive_failures: u32,
    pub rate_limited_models: Vec<String>,
    pub unavailable_models: Vec<String>,
    pub requests: u64,
    pub failures: u64,
    pub last_error: Option<LastError>,
    pub last_used: Option<SystemTime>,
    pub tokens: u64,
    pub last_hour: Bucket,
    pub last_day: Bucket,
}

pub struct KeyPool {
    keys: RwLock<Arc<[Arc<KeyEntry>]>>,
    cursor: AtomicUsize,
    next_id: AtomicU64,
    settings: PoolSettings,
    clock: Arc<dyn Clock>,
    /// (when, total, usable) of the last [`KeyPool::availability`] count.
    availability: Mutex<Option<(Instant, usize, usize)>>,
    /// Where decisions go to be shared with other replicas, when they are.
    sink: std::sync::OnceLock<FactSink>,
}

impl std::fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPool").field("keys", &self.len()).finish()
    }
}

impl KeyPool {
    pub fn new(keys: Vec<Secret>, settings: PoolSettings, clock: Arc<dyn Clock>) -> Self {
        let pool = Self {
            keys: RwLock::new(Arc::from(Vec::new())),
            cursor: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            settings,
            clock,
            availability: Mutex::new(None),
            sink: std::sync::OnceLock::new(),
        };
        pool.insert_keys(keys);
        pool
    }

    /// Sends every later decision to `sink` as a [`Fact`] (once; later calls are ignored).
    pub fn share_with(&self, sink: FactSink) {
        let _ = self.sink.set(sink);
    }

    fn emit(&self, fact: Fact) {
        if let Some(sink) = self.sink.get() {
            sink(fact);
        }
    }

    /// Adds keys not already present (an operator's decision, shared); returns how many were new.
    pub fn add_keys(&self, keys: Vec<Secret>) -> usize {
        let added = self.insert_keys(keys);
        for secret in &added {
            self.emit(Fact::Added { secret: secret.clone() });
        }
        added.len()
    }

    /// Adds keys not already present; returns the new ones.
    fn insert_keys(&self, keys: Vec<Secret>) -> Vec<Secret> {
        let mut added = Vec::new();
        let mut guard = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Arc<KeyEntry>> = guard.iter().cloned().collect();
        let before = list.len();
        for secret in keys {
            if list.iter().any(|e| e.secret == secret) {
                continue;
            }
            added.push(secret.clone());
            list.push(Arc::new(KeyEntry {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                fingerprint: fingerprint(&secret),
                masked: secret.masked(),
                secret,
                tokens: AtomicU64::new(0),
                window: Mutex::new(Window::default()),
                health: Mutex::new(Health {
                    state: KeyState::Active,
                    consecutive_failures: 0,
                    strikes: 0,
                    key_rate_limit: None,
                    model_rate_limits: HashMap::new(),
                    unavailable_models: Vec::new(),
                    last_error: None,
                    last_used: None,
                    generation: 0,
                }),
                requests: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }));
        }
        debug_assert_eq!(list.len() - before, added.len());
        *guard = Arc::from(list);
        added
    }

    fn snapshot(&self) -> Arc<[Arc<KeyEntry>]> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands out the next usable key for `model` in rotation, skipping the keys in `exclude`
    /// (those this request already tried).
    ///
    /// Each request takes a ticket. When the key the ticket points at is usable it gets the
    /// request; when it is blocked, the ticket is mapped onto the usable keys alone: the
    /// tickets landing on blocked keys, numbered in order, are dealt round the usable keys. A
    /// run of blocked keys thus spreads its share evenly instead of sending it to the key after
    /// the run, however many requests race: with 10 keys and 5 in a row cooling, each of the
    /// other 5 gets a fifth of the requests. No allocation, at most three passes over the keys.
    pub fn acquire(&self, model: &str, exclude: &[u64]) -> Result<Lease, Unavailable> {
        self.acquire_where(model, exclude, |_| true)
    }

    /// Like [`KeyPool::acquire`], considering only the keys `eligible` accepts (keys behind an
    /// egress proxy that is cooling down are passed over while others can serve).
    pub fn acquire_where(
        &self,
        model: &str,
        exclude: &[u64],
        eligible: impl Fn(&KeyEntry) -> bool,
    ) -> Result<Lease, Unavailable> {
        let keys = self.snapshot();
        let n = keys.len();
        let now = self.clock.now();
        let mut blocked = BlockedSummary::new(n);
        let skip = |e: &KeyEntry| exclude.contains(&e.id) || !eligible(e);
        if n > 0 {
            let ticket = self.cursor.fetch_add(1, Ordering::Relaxed);
            let first = ticket % n;
            // The common case: the ticket's own key is usable.
            if let Some(lease) = self.take(&keys[first], model, &skip, now, &mut blocked) {
                return Ok(lease);
            }
            // Count the usable keys without changing anything, and the blocked ones before the
            // ticket's key: the tickets that land on blocked keys, numbered in order, are dealt
            // round the usable keys.
            let mut usable = 0;
            let mut rank = 0;
            for (i, e) in keys.iter().enumerate() {
                if !skip(e) && check(&e.health(), model, now).is_ok() {
                    usable += 1;
                } else if i < first {
                    rank += 1;
                }
            }
            if usable > 0 {
                let blocked_per_round = n - usable;
                let pick = (ticket / n).wrapping_mul(blocked_per_round).wrapping_add(rank) % usable;
                let start = keys
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !skip(e) && check(&e.health(), model, now).is_ok())
                    .nth(pick)
                    .map_or(first, |(i, _)| i);
                // Take it, or (when another request changed it meanwhile) the next one that
                // can be taken.
                blocked = BlockedSummary::new(n);
                for i in 0..n {
                    if let Some(lease) = self.take(&keys[(start + i) % n], model, &skip, now, &mut blocked) {
                        return Ok(lease);
                    }
                }
            } else {
                blocked = BlockedSummary::new(n);
                for entry in keys.iter() {
                    if !skip(entry) {
                        if let Err(b) = check(&entry.health(), model, now) {
                            blocked.add(&b);
                        }
                    }
                }
            }
        }
        Err(blocked.into_unavailable(now, n))
    }

    /// Takes `entry` for one request unless `skip` says not to or it may not serve `model`
    /// now; notes why not otherwise.
    fn take(
        &self,
        entry: &Arc<KeyEntry>,
        model: &str,
        skip: &dyn Fn(&KeyEntry) -> bool,
        now: Instant,
        blocked: &mut BlockedSummary,
    ) -> Option<Lease> {
        if skip(entry) {
            return None;
        }
        let taken = try_take(&mut entry.health(), model, now);
        match taken {
            Ok((trial, generation)) => {
                entry.requests.fetch_add(1, Ordering::Relaxed);
                Some(Lease {
                    entry: entry.clone(),
                    clock: self.clock.clone(),
                    settings: self.settings.clone(),
                    model: model.to_string(),
                    trial,
                    generation,
                    reported: false,
                    sink: self.sink.get().cloned(),
                })
            }
            Err(b) => {
                blocked.add(&b);
                None
            }
        }
    }

    /// A lease on one particular key (the owner of a file or cached content), or why it cannot
    /// be had now. `None` when no key has this fingerprint.
    pub fn acquire_key(&self, fingerprint: &str, model: &str) -> Option<Result<Lease, Unavailable>> {
        let entry = self.find(fingerprint)?;
        let now = self.clock.now();
        let mut blocked = BlockedSummary::new(1);
        Some(match self.take(&entry, model, &|_| false, now, &mut blocked) {
            Some(lease) => Ok(lease),
            None => Err(blocked.into_unavailable(now, 1)),
        })
    }

    /// Fingerprints of the keys in the pool, in a stable order (for listings that walk every key).
    pub fn fingerprints(&self) -> Vec<String> {
        let mut all: Vec<String> = self.snapshot().iter().map(|e| e.fingerprint().to_string()).collect();
        all.sort();
        all
    }

    /// Disabled keys whose probe is due, marked as being probed, each with the generation the
    /// probe result must match. The caller probes each and calls [`KeyPool::probe_result`].
    pub fn due_for_probe(&self) -> Vec<(Arc<KeyEntry>, u64)> {
        let now = self.clock.now();
        let mut due = Vec::new();
        for entry in self.snapshot().iter() {
            let mut h = entry.health();
            if let KeyState::Disabled {
                next_probe,
                backoff,
                probing: false,
            } = h.state
            {
                if now >= next_probe {
                    h.set_state(KeyState::Disabled {
                        next_probe,
                        backoff,
                        probing: true,
                    });
                    due.push((entry.clone(), h.generation));
                }
            }
        }
        due
    }

    /// Applies a probe's verdict: works → active again; rejected → wait twice as long;
    /// inconclusive → probe again after the same wait. Ignored when the key changed meanwhile
    /// (an operator enabled, disabled or reset it).
    pub fn probe_result(&self, entry: &KeyEntry, generation: u64, verdict: &Verdict) {
        let now = self.clock.now();
        let mut h = entry.health();
        if h.generation != generation {
            return;
        }
        if let KeyState::Disabled { backoff, .. } = h.state {
            match verdict {
                Verdict::Works => {
                    h.trust();
                    h.unavailable_models.clear();
                    drop(h);
                    self.emit(Fact::Works {
                        fingerprint: entry.fingerprint.clone(),
                    });
                }
                Verdict::Rejected(_) | Verdict::Inconclusive(_) => {
                    let backoff = if matches!(verdict, Verdict::Rejected(_)) {
                        (backoff * 2).min(self.settings.revalidate_max)
                    } else {
                        backoff
                    };
                    h.set_state(KeyState::Disabled {
                        next_probe: now + backoff,
                        backoff,
                        probing: false,
                    });
                }
            }
        }
    }

    /// How many keys exist and how many could take a request now, recounted at most once a
    /// second: a health check costs O(1) however often it is polled.
    pub fn availability(&self) -> (usize, usize) {
        let now = self.clock.now();
        let mut cache = self.availability.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, total, usable)) = *cache {
            if now.saturating_duration_since(at) < Duration::from_secs(1) {
                return (total, usable);
            }
        }
        let keys = self.snapshot();
        let usable = keys
            .iter()
            .filter(|e| {
                let h = e.health();
                matches!(h.state, KeyState::Active | KeyState::HalfOpen { .. })
                    && h.key_rate_limit.is_none_or(|t| t <= now)
            })
            .count();
        *cache = Some((now, keys.len(), usable));
        (keys.len(), usable)
    }

    /// Masked picture of every key.
    pub fn status(&self) -> Vec<KeyStatus> {
        let now = self.clock.now();
        self.snapshot()
            .iter()
            .map(|entry| {
                let h = entry.health();
                let (state, mut available_in) = match &h.state {
                    KeyState::Active => ("active", None),
                    KeyState::CoolingDown { until } => ("cooling_down", Some(until.saturating_duration_since(now))),
                    KeyState::HalfOpen { .. } => ("half_open", None),
                    KeyState::Disabled {
                        next_probe, probing, ..
                    } => (
                        if *probing { "probing" } else { "disabled" },
                        Some(next_probe.saturating_duration_since(now)),
                    ),
                    KeyState::Manual => ("manual_disabled", None),
                };
                let key_limited = h.key_rate_limit.filter(|t| *t > now);
                let state = if state == "active" && key_limited.is_some() {
                    available_in = key_limited.map(|t| t.saturating_duration_since(now));
                    "rate_limited"
                } else {
                    state
                };
                let mut rate_limited_models: Vec<String> = h
                    .model_rate_limits
                    .iter()
                    .filter(|(_, t)| **t > now)
                    .map(|(m, _)| m.clone())
                    .collect();
                rate_limited_models.sort();
                let unavailable_models = h.unavailable_models.clone();
                let minute = minute_of(self.clock.wall());
                let window = entry.window.lock().unwrap_or_else(|e| e.into_inner());
                let (last_hour, last_day) = (
                    window.sum(minute.saturating_sub(59)),
                    window.sum(minute.saturating_sub(1439)),
                );
                drop(window);
                KeyStatus {
                    id: entry.id,
                    fingerprint: entry.fingerprint.clone(),
                    masked: entry.masked.clone(),
                    state,
                    available_in,
                    consecutive_failures: h.consecutive_failures,
                    rate_limited_models,
                    unavailable_models,
                    requests: entry.requests.load(Ordering::Relaxed),
                    failures: entry.failures.load(Ordering::Relaxed),
                    last_error: h.last_error.clone(),
                    last_used: h.last_used,
                    tokens: entry.tokens.load(Ordering::Relaxed),
                    last_hour,
                    last_day,
                }
            })
            .collect()
    }

    /// The key with this fingerprint.
    pub fn find(&self, fingerprint: &str) -> Option<Arc<KeyEntry>> {
        self.snapshot().iter().find(|e| e.fingerprint == fingerprint).cloned()
    }

    /// Every key's secret, in pool order (for persistence).
    pub fn secrets(&self) -> Vec<(String, Secret)> {
        self.snapshot()
            .iter()
            .map(|e| (e.fingerprint.clone(), e.secret.clone()))
            .collect()
    }

    /// Removes a key; in-flight requests on it finish normally.
    pub fn remove(&self, fingerprint: &str) -> bool {
        let removed = self.remove_quietly(fingerprint);
        if removed {
            self.emit(Fact::Removed {
                fingerprint: fingerprint.to_string(),
            });
        }
        removed
    }

    fn remove_quietly(&self, fingerprint: &str) -> bool {
        let mut guard = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let before = guard.len();
        let list: Vec<Arc<KeyEntry>> = guard.iter().filter(|e| e.fingerprint != fingerprint).cloned().collect();
        let removed = list.len() != before;
        *guard = Arc::from(list);
        removed
    }

    /// Applies another replica's decision; nothing is shared back. Deadlines already past
    /// change nothing, and a later local deadline is kept.
    pub fn apply_fact(&self, fact: &Fact) {
        let now = self.clock.now();
        let wall = epoch_ms(self.clock.wall());
        let instant =
            |until_ms: u64| (until_ms > wall).then(|| now + Duration::from_millis(until_ms - wall).min(MAX_WAIT));
        let entry = match fact {
            Fact::Added { secret } => {
                self.insert_keys(vec![secret.clone()]);
                return;
            }
            Fact::Removed { fingerprint } => {
                self.remove_quietly(fingerprint);
                return;
            }
            Fact::Manual { fingerprint, .. }
            | Fact::Reset { fingerprint }
            | Fact::Invalid { fingerprint, .. }
            | Fact::Works { fingerprint }
            | Fact::ModelUnavailable { fingerprint, .. }
            | Fact::RateLimited { fingerprint, .. }
            | Fact::Cooldown { fingerprint, .. } => match self.find(fingerprint) {
                Some(e) => e,
                None => return,
            },
        };
        let mut h = entry.health();
        match fact {
            Fact::Added { .. } | Fact::Removed { .. } => {}
            Fact::Manual { on, .. } => set_manual(&mut h, *on),
            Fact::Reset { .. } => reset(&mut h),
            Fact::Invalid { message, .. } => {
                if !matches!(h.state, KeyState::Disabled { .. } | KeyState::Manual) {
                    self.invalidate(&mut h, message, now);
                }
            }
            Fact::Works { .. } => {
                if matches!(h.state, KeyState::Disabled { .. }) {
                    h.trust();
                }
                h.unavailable_models.clear();
            }
            Fact::ModelUnavailable { model, .. } => {
                if !h.unavailable_models.contains(model) && h.unavailable_models.len() < 256 {
                    h.unavailable_models.push(model.clone());
                }
            }
            Fact::RateLimited { model, until_ms, .. } => {
                if let Some(until) = instant(*until_ms) {
                    limit(&mut h, model.as_deref(), until, now);
                }
            }
            Fact::Cooldown { until_ms, strikes, .. } => {
                let Some(until) = instant(*until_ms) else { return };
                h.strikes = h.strikes.max(*strikes);
                let until = match h.state {
                    KeyState::CoolingDown { until: mine } => mine.max(until),
                    KeyState::Active | KeyState::HalfOpen { .. } => until,
                    KeyState::Disabled { .. } | KeyState::Manual => return,
                };
                h.set_state(KeyState::CoolingDown { until });
            }
        }
    }

    /// Out of rotation as invalid until a probe finds the key working.
    fn invalidate(&self, h: &mut Health, message: &str, now: Instant) {
        h.last_error = Some(LastError {
            class: "invalid_key",
            message: message.to_string(),
            at: self.clock.wall(),
        });
        h.set_state(KeyState::Disabled {
            next_probe: now + self.settings.revalidate,
            backoff: self.settings.revalidate,
            probing: false,
        });
    }

    /// Everything shareable about every key, with deadlines as wall-clock milliseconds.
    pub fn facts(&self) -> Vec<KeyFacts> {
        let now = self.clock.now();
        let wall = epoch_ms(self.clock.wall());
        let ms =
            |t: Instant| (t > now).then(|| wall.saturating_add(t.saturating_duration_since(now).as_millis() as u64));
        self.snapshot()
            .iter()
            .map(|e| {
                let h = e.health();
                KeyFacts {
                    secret: e.secret.clone(),
                    fingerprint: e.fingerprint.clone(),
                    manual: matches!(h.state, KeyState::Manual),
                    invalid: matches!(h.state, KeyState::Disabled { .. })
                        .then(|| h.last_error.as_ref().map(|l| l.message.clone()).unwrap_or_default()),
                    unavailable_models: h.unavailable_models.clone(),
                    key_rate_limit_ms: h.key_rate_limit.and_then(ms),
                    model_rate_limits_ms: h
                        .model_rate_limits
                        .iter()
                        .filter_map(|(m, t)| ms(*t).map(|t| (m.clone(), t)))
                        .collect(),
                    cooldown_ms: match h.state {
                        KeyState::CoolingDown { until } => ms(until).map(|t| (t, h.strikes)),
                        _ => None,
                    },
                }
            })
            .collect()
    }

    /// Takes a key out of rotation by hand (`true`) or puts it back (`false`).
    pub fn set_manual(&self, fingerprint: &str, disabled: bool) -> bool {
        let Some(entry) = self.find(fingerprint) else {
            return false;
        };
        set_manual(&mut entry.health(), disabled);
        self.emit(Fact::Manual {
            fingerprint: fingerprint.to_string(),
            on: disabled,
        });
        true
    }

    /// Forgets a key's failures, cooldowns and rate limits (a manual disable stays).
    pub fn reset(&self, fingerprint: &str) -> bool {
        let Some(entry) = self.find(fingerprint) else {
            return false;
        };
        reset(&mut entry.health());
        self.emit(Fact::Reset {
            fingerprint: fingerprint.to_string(),
        });
        true
    }

    /// Applies a validation run by an operator: a working key is trusted again (and its
    /// zero-quota models are tried again); a rejected one is disabled until the periodic probe
    /// finds it working; an inconclusive one keeps its state. A manual disable always stays.
    pub fn validated(&self, entry: &KeyEntry, verdict: &Verdict) {
        let now = self.clock.now();
        let mut h = entry.health();
        if matches!(h.state, KeyState::Manual) {
            return;
        }
        let fingerprint = entry.fingerprint.clone();
        match verdict {
            Verdict::Works => {
                h.trust();
                h.unavailable_models.clear();
                drop(h);
                self.emit(Fact::Works { fingerprint });
            }
            Verdict::Rejected(message) => {
                self.invalidate(&mut h, message, now);
                drop(h);
                self.emit(Fact::Invalid {
                    fingerprint,
                    message: message.clone(),
                });
            }
            Verdict::Inconclusive(_) => {}
        }
    }

    /// Counts one upstream attempt on a key, held directly (no lookup).
    pub fn record(&self, entry: &KeyEntry, attribution: Attribution, latency: Duration) {
        entry.record_attempt(self.clock.wall(), attribution, latency);
    }

    /// Counts tokens used through a key.
    pub fn record_tokens(&self, key_id: u64, tokens: u64) {
        if let Some(entry) = self.snapshot().iter().find(|e| e.id == key_id) {
            entry.tokens.fetch_add(tokens, Ordering::Relaxed);
            let minute = minute_of(self.clock.wall());
            entry
                .window
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .bucket(minute)
                .tokens += tokens;
        }
    }

    /// Restores lifetime counters (from persistence).
    pub fn restore_counters(&self, fingerprint: &str, requests: u64, failures: u64, tokens: u64) {
        if let Some(e) = self.find(fingerprint) {
            e.requests.store(requests, Ordering::Relaxed);
            e.failures.store(failures, Ordering::Relaxed);
            e.tokens.store(tokens, Ordering::Relaxed);
        }
    }

    /// Pool-wide per-minute totals of the last `minutes` minutes, oldest first.
    pub fn timeline(&self, minutes: u64) -> Vec<Bucket> {
        let now = minute_of(self.clock.wall());
        let start = now.saturating_sub(minutes.saturating_sub(1));
        let mut out: Vec<Bucket> = (start..=now)
            .map(|minute| Bucket {
                minute,
                ..Default::default()
            })
            .collect();
        for entry in self.snapshot().iter() {
            let w = entry.window.lock().unwrap_or_else(|e| e.into_inner());
            for b in w.buckets.iter().filter(|b| b.minute >= start) {
                if let Some(slot) = out.get_mut((b.minute - start) as usize) {
                    slot.requests += b.requests;
                    slot.successes += b.successes;
                    slot.failures += b.failures;
                    slot.tokens += b.tokens;
                    slot.latency_ms += b.latency_ms;
                }
            }
        }
        out
    }

    /// Replaces every pool key appearing in `text` by its masked form (for upstream messages).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for entry in self.snapshot().iter() {
            let raw = entry.secret.expose();
            if raw.len() >= 4 && out.contains(raw) {
                out = out.replace(raw, &entry.masked);
            }
        }
        out
    }
}

struct Blocked {
    until: Option<Instant>,
    rate_limited: bool,
    model_unavailable: bool,
}

impl Blocked {
    fn until(until: Option<Instant>) -> Self {
        Blocked {
            until,
            rate_limited: false,
            model_unavailable: false,
        }
    }
}

/// Why the keys looked at could not take a request, summed up for [`Unavailable`].
struct BlockedSummary {
    earliest: Option<Instant>,
    all_rate_limited: bool,
    model_unavailable: bool,
}

impl BlockedSummary {
    fn new(n: usize) -> Self {
        BlockedSummary {
            earliest: None,
            all_rate_limited: n > 0,
            model_unavailable: n > 0,
        }
    }

    fn add(&mut self, b: &Blocked) {
        if !b.rate_limited {
            self.all_rate_limited = false;
        }
        if !b.model_unavailable {
            self.model_unavailable = false;
        }
        if let Some(until) = b.until {
            self.earliest = Some(self.earliest.map_or(until, |e| e.min(until)));
        }
    }

    fn into_unavailable(self, now: Instant, total_keys: usize) -> Unavailable {
        Unavailable {
            retry_after: self.earliest.map(|t| t.saturating_duration_since(now)),
            all_rate_limited: self.all_rate_limited && !self.model_unavailable,
            model_unavailable: self.model_unavailable,
            total_keys,
        }
    }
}

/// Whether a key may serve a request for `model` now, without changing it: `Ok(true)` when
/// the request would be the half-open trial.
fn check(h: &Health, model: &str, now: Instant) -> Result<bool, Blocked> {
    if matches!(h.state, KeyState::Manual) {
        return Err(Blocked::until(None));
    }
    if let KeyState::Disabled { next_probe, .. } = h.state {
        // Not expected back by itself; the probe decides. Report the probe time as a hint.
        return Err(Blocked::until(Some(next_probe.max(now + Duration::from_secs(1)))));
    }
    if !model.is_empty() && h.unavailable_models.iter().any(|m| m == model) {
        return Err(Blocked {
            until: None,
            rate_limited: false,
            model_unavailable: true,
        });
    }
    let limit = [h.key_rate_limit, h.model_rate_limits.get(model).copied()]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .max();
    if let Some(until) = limit {
        return Err(Blocked {
            until: Some(until),
            rate_limited: true,
            model_unavailable: false,
        });
    }
    match h.state {
        KeyState::Active => Ok(false),
        KeyState::CoolingDown { until } if now < until => Err(Blocked::until(Some(until))),
        KeyState::CoolingDown { .. } | KeyState::HalfOpen { trial_in_flight: false } => Ok(true),
        KeyState::HalfOpen { trial_in_flight: true } => Err(Blocked::until(Some(now + Duration::from_secs(1)))),
        KeyState::Disabled { .. } | KeyState::Manual => Err(Blocked::until(None)),
    }
}

/// Decides under the key's lock whether it may serve a request for `model` now, and takes it.
/// `Ok` carries whether the request is the half-open trial, and the generation its outcome
/// must match.
fn try_take(h: &mut Health, model: &str, now: Instant) -> Result<(bool, u64), Blocked> {
    let trial = check(h, model, now)?;
    if trial {
        h.set_state(KeyState::HalfOpen { trial_in_flight: true });
    }
    Ok((trial, h.generation))
}

/// The right to use one key for one upstream call. Report what happened with [`Lease::report`];
/// a lease dropped unreported counts as [`Outcome::Cancelled`].
pub struct Lease {
    entry: Arc<KeyEntry>,
    clock: Arc<dyn Clock>,
    settings: PoolSettings,
    model: String,
    trial: bool,
    /// The key's generation when the lease was taken.
    generation: u64,
    reported: bool,
    sink: Option<FactSink>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.entry.masked)
            .field("model", &self.model)
            .field("trial", &self.trial)
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub fn key(&self) -> &Secret {
        &self.entry.secret
    }
    pub fn key_id(&self) -> u64 {
        self.entry.id
    }
    pub fn masked(&self) -> &str {
        &self.entry.masked
    }
    pub fn fingerprint(&self) -> &str {
        &self.entry.fingerprint
    }
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// Records an outcome. May be called more than once (a stream reports success at its first
    /// event and may fail later); only the first report ends a half-open trial.
    pub fn report(&mut self, outcome: &Outcome) {
        let trial = std::mem::take(&mut self.trial);
        self.reported = true;
        self.apply(trial, outcome);
    }

    fn apply(&self, trial: bool, outcome: &Outcome) {
        apply(
            &self.entry,
            &self.settings,
            self.clock.as_ref(),
            &self.model,
            trial,
            self.generation,
            outcome,
            self.sink.as_ref(),
        );
    }

    /// The key this lease is for (for statistics booked after the lease is gone).
    pub fn entry(&self) -> Arc<KeyEntry> {
        self.entry.clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.reported || self.trial {
            let trial = std::mem::take(&mut self.trial);
            self.apply(trial, &Outcome::Cancelled);
        }
    }
}

fn set_manual(h: &mut Health, disabled: bool) {
    if disabled {
        h.set_state(KeyState::Manual);
    } else if matches!(h.state, KeyState::Manual) {
        h.trust();
    }
}

fn reset(h: &mut Health) {
    if matches!(h.state, KeyState::Manual) {
        // Still bump the generation: outcomes of earlier leases must not undo the reset.
        h.set_state(KeyState::Manual);
        h.consecutive_failures = 0;
        h.strikes = 0;
    } else {
        h.trust();
    }
    h.key_rate_limit = None;
    h.model_rate_limits.clear();
    h.unavailable_models.clear();
    h.last_error = None;
}

#[expect(clippy::too_many_arguments, reason = "one call site, the lease's fields")]
fn apply(
    entry: &KeyEntry,
    s: &PoolSettings,
    clock: &dyn Clock,
    model: &str,
    trial: bool,
    generation: u64,
    outcome: &Outcome,
    sink: Option<&FactSink>,
) {
    let fact = apply_locally(entry, s, clock, model, trial, generation, outcome);
    if let (Some(fact), Some(sink)) = (fact, sink) {
        sink(fact);
    }
}

/// Applies an outcome to the key's health; the decision to share, if it made one.
fn apply_locally(
    entry: &KeyEntry,
    s: &PoolSettings,
    clock: &dyn Clock,
    model: &str,
    trial: bool,
    generation: u64,
    outcome: &Outcome,
) -> Option<Fact> {
    let now = clock.now();
    let wall_ms =
        |until: Instant| epoch_ms(clock.wall()).saturating_add(until.saturating_duration_since(now).as_millis() as u64);
    let fingerprint = || entry.fingerprint.clone();
    let mut h = entry.health();
    h.last_used = Some(clock.wall());
    if outcome.counts_against_key() {
        entry.failures.fetch_add(1, Ordering::Relaxed);
    }
    if h.generation != generation {
        // The key changed state after this lease was taken (an operator acted, a cooldown
        // started or ended): what this lease saw must not override that.
        return None;
    }
    let record = |h: &mut Health, message: &str| {
        h.last_error = Some(LastError {
            class: outcome.class(),
            message: message.to_string(),
            at: clock.wall(),
        });
    };
    let disable = |h: &mut Health| {
        if !matches!(h.state, KeyState::Disabled { .. } | KeyState::Manual) {
            h.set_state(KeyState::Disabled {
                next_probe: now + s.revalidate,
                backoff: s.revalidate,
                probing: false,
            });
        }
    };
    let end_trial = |h: &mut Health| {
        if trial && matches!(h.state, KeyState::HalfOpen { .. }) {
            h.set_state(KeyState::HalfOpen { trial_in_flight: false });
        }
    };
    match outcome {
        Outcome::Success => {
            h.consecutive_failures = 0;
            if matches!(h.state, KeyState::HalfOpen { .. } | KeyState::CoolingDown { .. }) {
                h.trust();
            }
            None
        }
        Outcome::InvalidKey { message } | Outcome::PermissionDenied { message } => {
            record(&mut h, message);
            let was_out = matches!(h.state, KeyState::Disabled { .. } | KeyState::Manual);
            disable(&mut h);
            (!was_out).then(|| Fact::Invalid {
                fingerprint: fingerprint(),
                message: message.clone(),
            })
        }
        Outcome::ModelUnavailable { message } => {
            record(&mut h, message);
            let mut fact = None;
            if !model.is_empty() && !h.unavailable_models.iter().any(|m| m == model) && h.unavailable_models.len() < 256
            {
                h.unavailable_models.push(model.to_string());
                fact = Some(Fact::ModelUnavailable {
                    fingerprint: fingerprint(),
                    model: model.to_string(),
                });
            }
            end_trial(&mut h);
            fact
        }
        Outcome::RateLimited {
            retry_after,
            per_model,
            message,
        } => {
            record(&mut h, message);
            let delay = match retry_after {
                RetryAfter::Delay(d) => *d,
                RetryAfter::DailyReset => until_daily_reset(clock.wall()),
                RetryAfter::Unspecified => s.default_rate_limit,
            };
            let until = now + delay.min(MAX_WAIT);
            limit(&mut h, per_model.then_some(model), until, now);
            end_trial(&mut h);
            Some(Fact::RateLimited {
                fingerprint: fingerprint(),
                model: per_model.then(|| model.to_string()),
                until_ms: wall_ms(until),
            })
        }
        Outcome::Transient { message, .. } => {
            record(&mut h, message);
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            let trip = (trial && matches!(h.state, KeyState::HalfOpen { .. }))
                || (matches!(h.state, KeyState::Active) && h.consecutive_failures >= s.max_failures);
            if !trip {
                return None;
            }
            h.strikes = h.strikes.saturating_add(1);
            let factor = 2u32.saturating_pow(h.strikes.saturating_sub(1).min(31));
            let cooldown = s.cooldown.saturating_mul(factor).min(s.cooldown_max).min(MAX_WAIT);
            h.set_state(KeyState::CoolingDown { until: now + cooldown });
            Some(Fact::Cooldown {
                fingerprint: fingerprint(),
                until_ms: wall_ms(now + cooldown),
                strikes: h.strikes,
            })
        }
        Outcome::ClientError | Outcome::Cancelled | Outcome::Stalled { .. } | Outcome::ProxyFailed { .. } => {
            end_trial(&mut h);
            None
        }
    }
}

/// A rate limit on one model (`Some`) or the whole key, until `until`: the later deadline wins.
fn limit(h: &mut Health, model: Option<&str>, until: Instant, now: Instant) {
    match model {
        Some(model) => {
            h.model_rate_limits.retain(|_, t| *t > now);
            if h.model_rate_limits.len() < 256 || h.model_rate_limits.contains_key(model) {
                let slot = h.model_rate_limits.entry(model.to_string()).or_insert(until);
                *slot = (*slot).max(until);
            }
        }
        None => h.key_rate_limit = Some(h.key_rate_limit.map_or(until, |t| t.max(until))),
    }
}

/// The longest a key is ever kept waiting by a single decision (guards `Instant` arithmetic).
pub const MAX_WAIT: Duration = Duration::from_secs(7 * 86_400);

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 60).unwrap_or(0)
}

/// Time until Google's daily quota reset, midnight Pacific time. Computed as the next 08:00 UTC
/// (midnight PST), which is at or after the real reset in both PST and PDT.
pub fn until_daily_reset(now: SystemTime) -> Duration {
    const DAY: u64 = 86_400;
    const RESET_UTC: u64 = 8 * 3600;
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let today_reset = secs - secs % DAY + RESET_UTC;
    let next = if secs < today_reset {
        today_reset
    } else {
        today_reset + DAY
    };
    Duration::from_secs(next - secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::clock::ManualClock;

    fn settings() -> PoolSettings {
        PoolSettings {
            max_failures: 3,
            cooldown: Duration::from_secs(10),
            cooldown_max: Duration::from_secs(35),
            revalidate: Duration::from_secs(60),
            revalidate_max: Duration::from_secs(200),
            default_rate_limit: Duration::from_secs(30),
        }
    }

    fn pool(n: usize) -> (KeyPool, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        let keys = (0..n)
            .map(|i| Secret::new(format!("AIzaTestKey{i:04}abcdef")))
            .collect();
        (KeyPool::new(keys, settings(), clock.clone()), clock)
    }

    fn transient() -> Outcome {
        Outcome::Transient {
            class: FailureClass::ServerError,
            message: "503".into(),
        }
    }

    fn state_of(p: &KeyPool, id: u64) -> &'static str {
        p.status().into_iter().find(|s| s.id == id).map(|s| s.state).unwrap()
    }

    #[test]
    fn proxy_failures_never_count_against_the_key() {
        let (p, _) = pool(1);
        for _ in 0..10 {
            let outcome = Outcome::ProxyFailed {
                message: "connection refused".into(),
            };
            assert!(outcome.is_retryable());
            p.acquire("m", &[]).unwrap().report(&outcome);
        }
        let s = &p.status()[0];
        assert_eq!(s.state, "active");
        assert_eq!((s.consecutive_failures, s.failures), (0, 0));
        assert!(s.last_error.is_none());
    }

    #[test]
    fn acquire_where_passes_over_ineligible_keys() {
        let (p, _) = pool(3);
        let first = p.status()[0].fingerprint.clone();
        for _ in 0..6 {
            let lease = p.acquire_where("m", &[], |e| e.fingerprint() == first).unwrap();
            assert_eq!(lease.fingerprint(), first);
        }
        assert!(p.acquire_where("m", &[], |_| false).is_err());
    }

    /// Two replicas' pools: decisions taken by one, sent as facts, block the same key in the
    /// other, with deadlines carried as wall-clock time.
    #[test]
    fn facts_carry_decisions_between_pools() {
        let (a, clock_a) = pool(2);
        let (b, clock_b) = pool(2);
        let sent: Arc<Mutex<Vec<Fact>>> = Arc::default();
        let log = sent.clone();
        a.share_with(Arc::new(move |f| log.lock().unwrap().push(f)));

        let mut lease = a.acquire("m", &[]).unwrap();
        let key = lease.entry().fingerprint().to_string();
        lease.report(&Outcome::RateLimited {
            retry_after: RetryAfter::Delay(Duration::from_secs(40)),
            per_model: true,
            message: "429".into(),
        });
        drop(lease);
        let facts = sent.lock().unwrap().clone();
        assert_eq!(facts.len(), 1, "{facts:?}");
        let Fact::RateLimited {
            until_ms, ref model, ..
        } = facts[0]
        else {
            panic!("{facts:?}")
        };
        assert_eq!(model.as_deref(), Some("m"));
        assert_eq!(until_ms, epoch_ms(clock_a.wall()) + 40_000);
        b.apply_fact(&facts[0]);
        for _ in 0..4 {
            let l = b.acquire("m", &[]).unwrap();
            assert_ne!(l.entry().fingerprint(), key, "the other replica skips the limited key");
        }
        assert!(b.acquire("other", &[]).is_ok());
        clock_b.advance(Duration::from_secs(41));
        let seen: Vec<String> = (0..4)
            .map(|_| b.acquire("m", &[]).unwrap().entry().fingerprint().to_string())
            .collect();
        assert!(seen.contains(&key), "back after the deadline");

        // A deadline already past changes nothing; a cooldown keeps the later deadline.
        let past = Fact::Cooldown {
            fingerprint: key.clone(),
            until_ms: epoch_ms(clock_b.wall()) - 1,
            strikes: 1,
        };
        b.apply_fact(&past);
        assert_eq!(
            b.find(&key).map(|e| matches!(e.health().state, KeyState::Active)),
            Some(true)
        );
        let soon = epoch_ms(clock_b.wall()) + 5_000;
        let later = soon + 20_000;
        b.apply_fact(&Fact::Cooldown {
            fingerprint: key.clone(),
            until_ms: later,
            strikes: 2,
        });
        b.apply_fact(&Fact::Cooldown {
            fingerprint: key.clone(),
            until_ms: soon,
            strikes: 1,
        });
        let f = b.facts().into_iter().find(|f| f.fingerprint == key).unwrap();
        assert_eq!(f.cooldown_ms, Some((later, 2)));

        // Operator decisions and invalid keys travel too, and nothing is sent back.
        b.apply_fact(&Fact::Invalid {
            fingerprint: key.clone(),
            message: "API key not valid".into(),
        });
        assert_eq!(
            b.facts()
                .into_iter()
                .find(|f| f.fingerprint == key)
                .unwrap()
                .invalid
                .as_deref(),
            Some("API key not valid")
        );
        b.apply_fact(&Fact::Works {
            fingerprint: key.clone(),
        });
        b.apply_fact(&Fact::Manual {
            fingerprint: key.clone(),
            on: true,
        });
        assert!(b.facts().into_iter().find(|f| f.fingerprint == key).unwrap().manual);
        let extra = Secret::new("AIzaAddedElsewhere0000001");
        b.apply_fact(&Fact::Added { secret: extra.clone() });
        assert_eq!(b.len(), 3);
        b.apply_fact(&Fact::Removed {
            fingerprint: fingerprint(&extra),
        });
        assert_eq!(b.len(), 2);
        assert_eq!(sent.lock().unwrap().len(), 1, "applying facts shares nothing");
        assert!(a.add_keys(vec![extra]) == 1);
        assert!(matches!(sent.lock().unwrap().last(), Some(Fact::Added { .. })));
    }

    #[test]
    fn round_robin_spreads_evenly() {
        let (p, _) = pool(3);
        let mut counts = HashMap::new();
        for _ in 0..300 {
            let mut l = p.acquire("m", &[]).unwrap();
            *counts.entry(l.key_id()).or_insert(0) += 1;
            l.report(&Outcome::Success);
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|c| *c == 100), "{counts:?}");
    }

    #[test]
    fn exclude_skips_tried_keys_and_reports_exhaustion() {
        let (p, _) = pool(2);
        let a = p.acquire("m", &[]).unwrap().key_id();
        let b = p.acquire("m", &[a]).unwrap().key_id();
        assert_ne!(a, b);
        let err = p.acquire("m", &[a, b]).unwrap_err();
        assert_eq!(err.total_keys, 2);
    }

    #[test]
    fn consecutive_failures_open_the_circuit_and_success_resets_the_count() {
        let (p, clock) = pool(1);
        for _ in 0..2 {
            p.acquire("m", &[]).unwrap().report(&transient());
        }
        p.acquire("m", &[]).unwrap().report(&Outcome::Success);
        assert_eq!(p.status()[0].consecutive_failures, 0);
        for _ in 0..3 {
            p.acquire("m", &[]).unwrap().report(&transient());
        }
        let id = p.status()[0].id;
        assert_eq!(state_of(&p, id), "cooling_down");
        let err = p.acquire("m", &[]).unwrap_err();
        assert_eq!(err.retry_after, Some(Duration::from_secs(10)));
        assert!(!err.all_rate_limited);

        // Cooldown over: exactly one trial at a time.
        clock.advance(Duration::from_secs(10));
        let mut trial = p.acquire("m", &[]).unwrap();
        assert!(trial.is_trial());
        assert!(p.acquire("m", &[]).is_err());
        // The trial fails: cooldown doubles.
        trial.report(&transient());
        assert_eq!(
            p.acquire("m", &[]).unwrap_err().retry_after,
            Some(Duration::from_secs(20))
        );
        clock.advance(Duration::from_secs(20));
        p.acquire("m", &[]).unwrap().report(&transient());
        // Capped at cooldown_max.
        assert_eq!(
            p.acquire("m", &[]).unwrap_err().retry_after,
            Some(Duration::from_secs(35))
        );
        clock.advance(Duration::from_secs(35));
        // The trial succeeds: trusted again, strikes reset.
        p.acquire("m", &[]).unwrap().report(&Outcome::Success);
        assert_eq!(state_of(&p, id), "active");
        for _ in 0..3 {
            p.acquire("m", &[]).unwrap().report(&transient());
        }
        assert_eq!(
            p.acquire("m", &[]).unwrap_err().retry_after,
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn abandoned_trial_frees_the_half_open_slot() {
        let (p, clock) = pool(1);
        for _ in 0..3 {
            p.acquire("m", &[]).unwrap().report(&transient());
        }
        clock.advance(Duration::from_secs(10));
        let trial = p.acquire("m", &[]).unwrap();
        drop(trial);
        assert!(p.acquire("m", &[]).unwrap().is_trial());
    }

    #[test]
    fn client_errors_never_count_against_a_key() {
        let (p, _) = pool(1);
        for _ in 0..10 {
            p.acquire("m", &[]).unwrap().report(&Outcome::ClientError);
        }
        let s = &p.status()[0];
        assert_eq!(s.state, "active");
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn invalid_key_is_disabled_until_a_probe_succeeds_with_backoff() {
        let (p, clock) = pool(2);
        let mut l = p.acquire("m", &[]).unwrap();
        let bad = l.key_id();
        l.report(&Outcome::InvalidKey {
            message: "API key not valid".into(),
        });
        assert_eq!(state_of(&p, bad), "disabled");
        for _ in 0..5 {
            assert_ne!(p.acquire("m", &[]).unwrap().key_id(), bad);
        }
        assert!(p.due_for_probe().is_empty());
        clock.advance(Duration::from_secs(60));
        let due = p.due_for_probe();
        assert_eq!(due.len(), 1);
        assert_eq!(state_of(&p, bad), "probing");
        assert!(p.due_for_probe().is_empty(), "a key is probed once at a time");
        p.probe_result(&due[0].0, due[0].1, &Verdict::Rejected("no".into()));
        clock.advance(Duration::from_secs(60));
        assert!(p.due_for_probe().is_empty(), "backoff doubled to 120 s");
        clock.advance(Duration::from_secs(60));
        let due = p.due_for_probe();
        p.probe_result(&due[0].0, due[0].1, &Verdict::Works);
        assert_eq!(state_of(&p, bad), "active");
        assert_eq!(
            p.status()
                .iter()
                .find(|s| s.id == bad)
                .unwrap()
                .last_error
                .as_ref()
                .unwrap()
                .class,
            "invalid_key"
        );
    }

    #[test]
    fn rate_limit_waits_out_the_retry_delay_per_model() {
        let (p, clock) = pool(1);
        p.acquire("flash", &[]).unwrap().report(&Outcome::RateLimited {
            retry_after: RetryAfter::Delay(Duration::from_secs(17)),
            per_model: true,
            message: "quota".into(),
        });
        let err = p.acquire("flash", &[]).unwrap_err();
        assert!(err.all_rate_limited);
        assert_eq!(err.retry_after, Some(Duration::from_secs(17)));
        // Other models still served by the same key.
        p.acquire("pro", &[]).unwrap().report(&Outcome::Success);
        assert_eq!(p.status()[0].consecutive_failures, 0, "429 is not a failure");
        clock.advance(Duration::from_secs(17));
        assert!(p.acquire("flash", &[]).is_ok());
    }

    #[test]
    fn key_wide_rate_limit_blocks_all_models() {
        let (p, _) = pool(1);
        p.acquire("a", &[]).unwrap().report(&Outcome::RateLimited {
            retry_after: RetryAfter::Unspecified,
            per_model: false,
            message: "quota".into(),
        });
        let err = p.acquire("b", &[]).unwrap_err();
        assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(p.status()[0].state, "rate_limited");
    }

    #[test]
    fn daily_reset_is_next_0800_utc() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(until_daily_reset(at(0)), Duration::from_secs(8 * 3600));
        assert_eq!(until_daily_reset(at(8 * 3600)), Duration::from_secs(86_400));
        assert_eq!(until_daily_reset(at(9 * 3600)), Duration::from_secs(23 * 3600));
    }

    #[test]
    fn operators_can_disable_enable_reset_and_remove() {
        let (p, clock) = pool(2);
        let fp = p.status()[0].fingerprint.clone();
        assert_eq!(fp.len(), 12);
        assert!(p.set_manual(&fp, true));
        for _ in 0..4 {
            assert_ne!(p.acquire("m", &[]).unwrap().key_id(), p.status()[0].id);
        }
        assert_eq!(p.status()[0].state, "manual_disabled");
        clock.advance(Duration::from_secs(3600));
        assert!(p.due_for_probe().is_empty(), "manual keys are never probed");
        p.set_manual(&fp, false);
        assert_eq!(p.status()[0].state, "active");
        let mut l = p.acquire("m", &[]).unwrap();
        l.report(&Outcome::RateLimited {
            retry_after: RetryAfter::Unspecified,
            per_model: false,
            message: "q".into(),
        });
        let limited = p.status().into_iter().find(|s| s.id == l.key_id()).unwrap().fingerprint;
        assert!(p.reset(&limited));
        assert_eq!(
            p.status().iter().find(|s| s.fingerprint == limited).unwrap().state,
            "active"
        );
        assert!(p.remove(&fp));
        assert!(!p.remove(&fp));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn windows_count_the_last_hour_and_day() {
        let (p, clock) = pool(1);
        let id = p.status()[0].id;
        let entry = p.snapshot()[0].clone();
        p.record(&entry, Attribution::Served, Duration::from_millis(100));
        p.record(&entry, Attribution::KeyFault, Duration::from_millis(300));
        p.record_tokens(id, 42);
        clock.advance(Duration::from_secs(2 * 3600));
        p.record(&entry, Attribution::Served, Duration::from_millis(50));
        let s = &p.status()[0];
        assert_eq!((s.last_hour.requests, s.last_hour.successes), (1, 1));
        assert_eq!(
            (s.last_day.requests, s.last_day.successes, s.last_day.tokens),
            (3, 2, 42)
        );
        assert_eq!(s.tokens, 42);
        let t = p.timeline(60);
        assert_eq!(t.len(), 60);
        assert_eq!(t.iter().map(|b| b.requests).sum::<u32>(), 1);
    }

    #[test]
    fn adding_keys_ignores_duplicates() {
        let (p, _) = pool(2);
        assert_eq!(
            p.add_keys(vec![
                Secret::new("AIzaTestKey0000abcdef"),
                Secret::new("new-key-xyz-1234")
            ]),
            1
        );
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn redact_masks_pool_keys_in_text() {
        let (p, _) = pool(1);
        let out = p.redact("bad key AIzaTestKey0000abcdef here");
        assert_eq!(out, "bad key AIza…def here");
    }

    #[test]
    fn concurrent_acquire_is_safe_and_fair() {
        let (p, _) = pool(4);
        let p = Arc::new(p);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        p.acquire("m", &[]).unwrap().report(&Outcome::Success);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let reqs: Vec<u64> = p.status().iter().map(|s| s.requests).collect();
        assert_eq!(reqs.iter().sum::<u64>(), 8000);
        assert!(reqs.iter().all(|r| *r == 2000), "{reqs:?}");
    }

    #[test]
    fn round_robin_stays_fair_around_a_blocked_run() {
        let (p, _) = pool(10);
        let ids: Vec<u64> = p.status().iter().map(|s| s.id).collect();
        // Keys 0..5 in a row are cooling down.
        for fp in p.status().iter().take(5).map(|s| s.fingerprint.clone()) {
            p.set_manual(&fp, true);
        }
        let mut counts: HashMap<u64, u32> = HashMap::new();
        for _ in 0..1000 {
            let mut l = p.acquire("m", &[]).unwrap();
            *counts.entry(l.key_id()).or_insert(0) += 1;
            l.report(&Outcome::Success);
        }
        for id in &ids[5..] {
            let c = counts.get(id).copied().unwrap_or(0);
            assert!((180..=220).contains(&c), "key {id}: {c} of 1000 ({counts:?})");
        }
    }

    /// Many threads at once: tickets that land in a blocked run are spread over the usable
    /// keys, not handed to the first usable key after the run.
    #[test]
    fn round_robin_stays_fair_around_a_blocked_run_under_contention() {
        let (p, clock) = pool(10);
        let ids: Vec<u64> = p.status().iter().map(|s| s.id).collect();
        // Keys 0..5 in a row are cooling down (three failures each).
        for id in &ids[..5] {
            for _ in 0..3 {
                let mut l = p
                    .acquire("m", &ids.iter().filter(|i| *i != id).copied().collect::<Vec<_>>())
                    .unwrap();
                assert_eq!(l.key_id(), *id);
                l.report(&transient());
            }
        }
        clock.advance(Duration::from_secs(1));
        let before: HashMap<u64, u64> = p.status().iter().map(|s| (s.id, s.requests)).collect();
        let p = Arc::new(p);
        const THREADS: u64 = 8;
        const EACH: u64 = 4000;
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..EACH {
                        p.acquire("m", &[]).unwrap().report(&Outcome::Success);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let status = p.status();
        let total = (THREADS * EACH) as f64;
        for s in &status {
            let share = (s.requests - before[&s.id]) as f64 / total;
            if ids[..5].contains(&s.id) {
                assert_eq!(s.state, "cooling_down");
                assert_eq!(share, 0.0, "a cooling key got requests");
            } else {
                assert!(
                    (0.17..=0.23).contains(&share),
                    "key {}: {:.1}% of the requests",
                    s.id,
                    share * 100.0
                );
            }
        }
    }

    /// The usable key a ticket landing on a blocked key is mapped to is the same whatever the
    /// interleaving: every ticket decides by itself.
    #[test]
    fn excluded_and_blocked_keys_are_skipped_in_order() {
        let (p, _) = pool(4);
        let ids: Vec<u64> = p.status().iter().map(|s| s.id).collect();
        p.set_manual(&p.status()[1].fingerprint, true);
        // Every key but the blocked one and the excluded one: only key 2 or 3 can be chosen.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..12 {
            let mut l = p.acquire("m", &[ids[0]]).unwrap();
            seen.insert(l.key_id());
            l.report(&Outcome::Success);
        }
        assert_eq!(seen, [ids[2], ids[3]].into_iter().collect());
        // Nothing usable: the wait of the earliest key, and the count of keys.
        let err = p.acquire("m", &[ids[0], ids[2], ids[3]]).unwrap_err();
        assert_eq!(err.total_keys, 4);
        assert!(!err.all_rate_limited);
    }

    #[test]
    fn stale_lease_outcomes_never_undo_an_operator_action() {
        let (p, clock) = pool(1);
        let fp = p.status()[0].fingerprint.clone();
        // A lease is in flight when the operator disables the key.
        let mut stale = p.acquire("m", &[]).unwrap();
        p.set_manual(&fp, true);
        stale.report(&Outcome::Success);
        assert_eq!(p.status()[0].state, "manual_disabled");

        // A half-open trial in flight when the operator disables the key: its failure must not
        // turn the manual disable into a cooldown.
        p.set_manual(&fp, false);
        for _ in 0..3 {
            p.acquire("m", &[]).unwrap().report(&transient());
        }
        clock.advance(Duration::from_secs(10));
        let mut trial = p.acquire("m", &[]).unwrap();
        assert!(trial.is_trial());
        p.set_manual(&fp, true);
        trial.report(&transient());
        assert_eq!(p.status()[0].state, "manual_disabled");

        // A reset is not undone by a 429 or an invalid-key answer that was already on its way.
        p.set_manual(&fp, false);
        let mut a = p.acquire("m", &[]).unwrap();
        let mut b = p.acquire("m", &[]).unwrap();
        p.reset(&fp);
        a.report(&Outcome::InvalidKey { message: "x".into() });
        b.report(&Outcome::RateLimited {
            retry_after: RetryAfter::Unspecified,
            per_model: false,
            message: "q".into(),
        });
        assert_eq!(p.status()[0].state, "active");
        assert!(p.acquire("m", &[]).is_ok());
    }

    #[test]
    fn outcomes_from_before_a_cooldown_do_not_end_it() {
        let (p, _) = pool(1);
        let mut early = p.acquire("m", &[]).unwrap();
        for _ in 0..3 {
            p.acquire("m", &[]).unwrap().report(&transient());
        }
        assert_eq!(p.status()[0].state, "cooling_down");
        early.report(&Outcome::Success);
        assert_eq!(p.status()[0].state, "cooling_down");
    }

    #[test]
    fn zero_quota_takes_the_key_out_for_that_model_until_validated() {
        let (p, clock) = pool(2);
        let mut l = p.acquire("pro", &[]).unwrap();
        let first = l.key_id();
        l.report(&Outcome::ModelUnavailable {
            message: "limit: 0".into(),
        });
        clock.advance(Duration::from_secs(86_400));
        for _ in 0..4 {
            let mut l = p.acquire("pro", &[]).unwrap();
            assert_ne!(l.key_id(), first, "never again for this model");
            l.report(&Outcome::Success);
        }
        // Other models still use the key.
        let seen: Vec<u64> = (0..2).map(|_| p.acquire("flash", &[]).unwrap().key_id()).collect();
        assert!(seen.contains(&first));
        let entry = p.snapshot().iter().find(|e| e.id == first).cloned().unwrap();
        assert_eq!(
            p.status().iter().find(|s| s.id == first).unwrap().unavailable_models,
            ["pro"]
        );
        // Every key without quota: the model is unavailable, not rate limited.
        p.acquire("pro", &[])
            .unwrap()
            .report(&Outcome::ModelUnavailable { message: "0".into() });
        let err = p.acquire("pro", &[]).unwrap_err();
        assert!(err.model_unavailable && !err.all_rate_limited);
        p.validated(&entry, &Verdict::Works);
        assert_eq!(p.acquire("pro", &[]).unwrap().key_id(), first);
    }

    #[test]
    fn inconclusive_validation_changes_nothing() {
        let (p, _) = pool(1);
        let entry = p.snapshot()[0].clone();
        p.validated(&entry, &Verdict::Inconclusive("503".into()));
        assert_eq!(p.status()[0].state, "active");
        p.validated(&entry, &Verdict::Rejected("bad".into()));
        assert_eq!(p.status()[0].state, "disabled");
        p.validated(&entry, &Verdict::Inconclusive("timeout".into()));
        assert_eq!(p.status()[0].state, "disabled");
        p.validated(&entry, &Verdict::Works);
        assert_eq!(p.status()[0].state, "active");
    }

    #[test]
    fn huge_delays_are_clamped() {
        let (p, _) = pool(1);
        p.acquire("m", &[]).unwrap().report(&Outcome::RateLimited {
            retry_after: RetryAfter::Delay(Duration::MAX),
            per_model: true,
            message: "q".into(),
        });
        assert!(p.acquire("m", &[]).unwrap_err().retry_after.unwrap() <= MAX_WAIT);
    }
}
