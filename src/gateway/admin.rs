//! Key-pool administration: listing keys with their statistics, adding, removing, disabling,
//! resetting and validating keys, with every change persisted. Framework-free; the HTTP
//! handlers in `server::routes::admin` call these.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use super::pool::{KeyPool, KeyStatus, Verdict};
use super::proxy::{PinError, Proxies};
use super::secret::Secret;
use super::store::{Snapshot, Store, StoredCounters, StoredKey, StoredPin};
use super::upstream::Upstream;
use crate::api::admin::{AddKeysResult, KeyReason, KeyView, PoolSummary, ProxyRef, ProxyView, ValidationProgress};

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn rate(ok: u32, total: u32) -> Option<f64> {
    (total > 0).then(|| f64::from(ok) / f64::from(total))
}

impl From<KeyStatus> for KeyView {
    fn from(s: KeyStatus) -> Self {
        KeyView {
            id: s.fingerprint,
            masked: s.masked,
            state: s.state.to_string(),
            available_in_secs: s.available_in.map(|d| d.as_secs_f64().ceil() as u64),
            reason: s.last_error.map(|e| KeyReason {
                class: e.class.to_string(),
                message: e.message,
                at: secs(e.at),
            }),
            consecutive_failures: s.consecutive_failures,
            rate_limited_models: s.rate_limited_models,
            unavailable_models: s.unavailable_models,
            requests_hour: s.last_hour.requests,
            success_rate_hour: rate(s.last_hour.successes, s.last_hour.successes + s.last_hour.failures),
            requests_day: s.last_day.requests,
            success_rate_day: rate(s.last_day.successes, s.last_day.successes + s.last_day.failures),
            avg_latency_ms_hour: (s.last_hour.requests > 0)
                .then(|| s.last_hour.latency_ms / u64::from(s.last_hour.requests)),
            tokens_total: s.tokens,
            requests_total: s.requests,
            last_used: s.last_used.map(secs),
            proxy: None,
            proxy_pinned: false,
        }
    }
}

/// Why pinning a key to a proxy failed.
#[derive(Debug)]
pub enum PinFailure {
    /// No such proxy, or none configured: the request's fault.
    Proxy(PinError),
    /// The pin could not be stored.
    Store(String),
}

/// Re-applies stored pins at start-up, for keys and proxies that still exist.
pub fn restore_pins(pool: &KeyPool, proxies: &Proxies, pins: &[StoredPin]) {
    for pin in pins {
        if pool.find(&pin.fingerprint).is_none() {
            continue;
        }
        let applied = proxies
            .find(&pin.proxy)
            .ok()
            .filter(|i| proxies.label(*i) == Some(pin.proxy.as_str()))
            .map(|i| proxies.pin(&pin.fingerprint, Some(i)));
        if !matches!(applied, Some(Ok(()))) {
            tracing::warn!(key = %pin.fingerprint, proxy = %pin.proxy,
                "a key was pinned to a proxy no longer in GEMINI_PROXIES; it uses its hash-bound proxy");
        }
    }
}

/// Administration of the pool, with persistence.
#[derive(Debug, Clone)]
pub struct Admin {
    pool: Arc<KeyPool>,
    upstream: Arc<Upstream>,
    store: Store,
    env_keys: Arc<Vec<String>>,
    progress: Arc<Mutex<ValidationProgress>>,
}

/// The keys to start with: every key in `GEMINI_API_KEYS` (the environment wins over anything
/// stored about it), plus keys added at run time that were not removed, with their operator state.
pub fn startup_keys(env: &[Secret], snapshot: &Snapshot) -> (Vec<Secret>, Vec<String>) {
    let mut keys: Vec<Secret> = env.to_vec();
    let mut manual = Vec::new();
    for k in snapshot.keys.iter().filter(|k| k.added_at_runtime && !k.removed) {
        let secret = Secret::new(k.key.clone());
        if !keys.contains(&secret) {
            keys.push(secret);
            if k.manual_disabled {
                manual.push(k.fingerprint.clone());
            }
        }
    }
    (keys, manual)
}

impl Admin {
    pub fn new(pool: Arc<KeyPool>, upstream: Arc<Upstream>, store: Store, env: &[Secret]) -> Self {
        let env_keys = Arc::new(env.iter().map(super::pool::fingerprint).collect());
        Admin {
            pool,
            upstream,
            store,
            env_keys,
            progress: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn keys(&self) -> Vec<KeyView> {
        let proxies = self.upstream.proxies();
        self.pool
            .status()
            .into_iter()
            .map(|s| {
                let route = proxies.route(&s.fingerprint);
                let pinned = route.is_some() && proxies.is_pinned(&s.fingerprint);
                let mut view = KeyView::from(s);
                view.proxy = route.and_then(|i| proxies.label(i)).map(str::to_string);
                view.proxy_pinned = pinned;
                view
            })
            .collect()
    }

    /// The egress proxies with the number of keys behind each and their health.
    pub fn proxies(&self) -> Vec<ProxyView> {
        let proxies = self.upstream.proxies();
        if proxies.is_empty() {
            return Vec::new();
        }
        let mut keys = vec![0usize; proxies.len()];
        for (fp, _) in self.pool.secrets() {
            if let Some(slot) = proxies.route(&fp).and_then(|i| keys.get_mut(i)) {
                *slot += 1;
            }
        }
        proxies
            .status(std::time::Instant::now())
            .into_iter()
            .map(|p| ProxyView {
                index: p.index,
                keys: keys.get(p.index).copied().unwrap_or(0),
                host: p.label,
                failures: p.failures,
                successes: p.successes,
                consecutive_failures: p.consecutive_failures,
                cooling_in_secs: p.cooling_in.map(|d| d.as_secs_f64().ceil() as u64),
                last_error: p.last_error.map(|e| KeyReason {
                    class: "proxy_error".into(),
                    message: e.message,
                    at: secs(e.at),
                }),
            })
            .collect()
    }

    /// Pins a key to a proxy (`None`: back to its hash-bound proxy), persisted. `Ok(false)`:
    /// no such key.
    pub async fn pin_proxy(&self, fingerprint: &str, proxy: Option<&ProxyRef>) -> Result<bool, PinFailure> {
        if self.pool.find(fingerprint).is_none() {
            return Ok(false);
        }
        let proxies = self.upstream.proxies();
        if proxies.is_empty() {
            return Err(PinFailure::Proxy(PinError::NoProxies));
        }
        let index = match proxy {
            None => None,
            Some(ProxyRef::Index(i)) if *i < proxies.len() => Some(*i),
            Some(ProxyRef::Index(i)) => return Err(PinFailure::Proxy(PinError::UnknownProxy(i.to_string()))),
            Some(ProxyRef::Host(host)) => Some(proxies.find(host).map_err(PinFailure::Proxy)?),
        };
        let label = index.and_then(|i| proxies.label(i)).map(str::to_string);
        self.store
            .save_pin(fingerprint.to_string(), label.clone())
            .await
            .map_err(PinFailure::Store)?;
        proxies.pin(fingerprint, index).map_err(PinFailure::Proxy)?;
        tracing::info!(key = %fingerprint, proxy = label.as_deref().unwrap_or("(hash-bound)"), "key pinned to a proxy by an operator");
        Ok(true)
    }

    pub fn summary(&self) -> PoolSummary {
        let status = self.pool.status();
        let mut by_state: Vec<(String, usize)> = Vec::new();
        for s in &status {
            match by_state.iter_mut().find(|(k, _)| k == s.state) {
                Some((_, n)) => *n += 1,
                None => by_state.push((s.state.to_string(), 1)),
            }
        }
        let timeline = self.pool.timeline(60);
        let hour_requests: u32 = timeline.iter().map(|b| b.requests).sum();
        let hour_ok: u32 = timeline.iter().map(|b| b.successes).sum();
        let hour_judged: u32 = hour_ok + timeline.iter().map(|b| b.failures).sum::<u32>();
        PoolSummary {
            keys_total: status.len(),
            keys_by_state: by_state,
            requests_last_minute: timeline.last().map_or(0, |b| b.requests),
            requests_last_hour: hour_requests,
            success_rate_last_hour: rate(hour_ok, hour_judged),
            attempts_by_outcome: self.upstream.metrics().attempts_by_outcome().into_iter().collect(),
            timeline: timeline.iter().map(|b| b.requests).collect(),
            replica: None,
        }
    }

    async fn persist(&self, fingerprint: &str, removed: bool) -> Result<(), String> {
        let Some((fp, secret)) = self
            .pool
            .secrets()
            .into_iter()
            .find(|(fp, _)| fp == fingerprint)
            .or_else(|| removed.then(|| (fingerprint.to_string(), Secret::new(""))))
        else {
            return Ok(());
        };
        let manual = self
            .pool
            .status()
            .iter()
            .any(|s| s.fingerprint == fp && s.state == "manual_disabled");
        self.store
            .save_key(StoredKey {
                added_at_runtime: !self.env_keys.contains(&fp),
                fingerprint: fp,
                key: secret.expose().to_string(),
                manual_disabled: manual,
                removed,
            })
            .await
    }

    /// Adds keys pasted as text (separated by commas, whitespace or new lines).
    pub async fn add(&self, text: &str) -> Result<AddKeysResult, String> {
        let mut candidates: Vec<Secret> = Vec::new();
        for k in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|k| !k.is_empty())
        {
            let s = Secret::new(k);
            if !candidates.contains(&s) {
                candidates.push(s);
            }
        }
        let total = candidates.len();
        let existing: Vec<String> = self.pool.secrets().into_iter().map(|(fp, _)| fp).collect();
        let new: Vec<Secret> = candidates
            .into_iter()
            .filter(|s| !existing.contains(&super::pool::fingerprint(s)))
            .collect();
        for s in &new {
            let fp = super::pool::fingerprint(s);
            self.store
                .save_key(StoredKey {
                    fingerprint: fp,
                    key: s.expose().to_string(),
                    added_at_runtime: true,
                    manual_disabled: false,
                    removed: false,
                })
                .await?;
        }
        let added = self.pool.add_keys(new);
        tracing::info!(added, "keys added by an operator");
        Ok(AddKeysResult {
            added,
            duplicates: total - added,
        })
    }

    pub async fn remove(&self, fingerprint: &str) -> Result<bool, String> {
        if !self.pool.remove(fingerprint) {
            return Ok(false);
        }
        self.persist(fingerprint, true).await?;
        let proxies = self.upstream.proxies();
        if proxies.is_pinned(fingerprint) {
            let _ = proxies.pin(fingerprint, None);
            self.store.save_pin(fingerprint.to_string(), None).await?;
        }
        Ok(true)
    }

    pub async fn set_disabled(&self, fingerprint: &str, disabled: bool) -> Result<bool, String> {
        if !self.pool.set_manual(fingerprint, disabled) {
            return Ok(false);
        }
        self.persist(fingerprint, false).await?;
        Ok(true)
    }

    pub fn reset(&self, fingerprint: &str) -> bool {
        self.pool.reset(fingerprint)
    }

    /// Probes one key now. Only a rejection by Google disables it; an inconclusive probe
    /// (Google busy or unreachable) changes nothing.
    pub async fn validate(&self, fingerprint: &str) -> Option<Verdict> {
        let entry = self.pool.find(fingerprint)?;
        let verdict = self.upstream.probe(entry.secret()).await;
        tracing::info!(key = %entry.masked(), verdict = ?verdict, "key validated by an operator");
        self.pool.validated(&entry, &verdict);
        Some(verdict)
    }

    /// Starts validating every key (8 at a time) in the background; see [`Admin::progress`].
    pub fn validate_all(&self) -> ValidationProgress {
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if p.running {
            return p.clone();
        }
        let ids: Vec<String> = self.pool.secrets().into_iter().map(|(fp, _)| fp).collect();
        *p = ValidationProgress {
            running: true,
            done: 0,
            total: ids.len(),
            working: 0,
            failing: 0,
            inconclusive: 0,
        };
        let snapshot = p.clone();
        drop(p);
        let admin = self.clone();
        tokio::spawn(async move {
            futures::stream::iter(ids)
                .for_each_concurrent(8, |id| {
                    let admin = admin.clone();
                    async move {
                        let verdict = admin.validate(&id).await;
                        let mut p = admin.progress.lock().unwrap_or_else(|e| e.into_inner());
                        p.done += 1;
                        match verdict {
                            Some(Verdict::Works) => p.working += 1,
                            Some(Verdict::Rejected(_)) => p.failing += 1,
                            Some(Verdict::Inconclusive(_)) => p.inconclusive += 1,
                            None => {}
                        }
                    }
                })
                .await;
            admin.progress.lock().unwrap_or_else(|e| e.into_inner()).running = false;
        });
        snapshot
    }

    pub fn progress(&self) -> ValidationProgress {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Saves every key's lifetime counters (called periodically and at shutdown).
    pub fn save_counters(&self) {
        let counters = self
            .pool
            .status()
            .into_iter()
            .map(|s| StoredCounters {
                fingerprint: s.fingerprint,
                requests: s.requests,
                failures: s.failures,
                tokens: s.tokens,
            })
            .collect();
        self.store.save_counters(counters);
    }
}
