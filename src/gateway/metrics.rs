//! In-process metrics rendered in Prometheus's text format, and the per-request trace that
//! handlers and the upstream client fill in (upstream time, key, tokens) for logs and metrics.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use super::pool::KeyPool;

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const OVERHEAD_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }
    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// model → status → error class → count.
type ByModel = BTreeMap<String, BTreeMap<u16, BTreeMap<String, u64>>>;

#[derive(Debug, Default)]
struct Inner {
    /// route → model → status → error class → count: nested so that counting a request that was
    /// seen before allocates nothing.
    requests: BTreeMap<String, ByModel>,
    /// model → outcome → count.
    attempts: BTreeMap<String, BTreeMap<String, u64>>,
    upstream_latency: BTreeMap<String, Histogram>,
    ttft: BTreeMap<String, Histogram>,
    overhead: Option<Histogram>,
}

/// The gateway's counters and histograms. One short lock per observation.
///
/// Labels stay bounded: a model becomes a label only once Google has served it (at most
/// [`MAX_MODEL_LABELS`]); any other name a client sends is counted as `other`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    served: RwLock<HashSet<String>>,
}

pub const MAX_MODEL_LABELS: usize = 200;

/// Runs `f` on the value under `key`, inserting a default first (the only time the key is
/// copied).
fn with_slot<V: Default, R>(map: &mut BTreeMap<String, V>, key: &str, f: impl FnOnce(&mut V) -> R) -> R {
    if let Some(v) = map.get_mut(key) {
        return f(v);
    }
    let mut v = V::default();
    let out = f(&mut v);
    map.insert(key.to_string(), v);
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that Google served `model`: from now on it is a label of its own.
    pub fn served(&self, model: &str) {
        if model.is_empty() {
            return;
        }
        if self.served.read().unwrap_or_else(|e| e.into_inner()).contains(model) {
            return;
        }
        let mut set = self.served.write().unwrap_or_else(|e| e.into_inner());
        if set.len() < MAX_MODEL_LABELS {
            set.insert(model.to_string());
        }
    }

    /// The label for a model name: itself if Google has served it, else `other`.
    pub fn label<'a>(&self, model: &'a str) -> Cow<'a, str> {
        let bare = model.strip_prefix("models/").unwrap_or(model);
        if bare.is_empty() {
            return Cow::Borrowed("");
        }
        if self.served.read().unwrap_or_else(|e| e.into_inner()).contains(bare) {
            Cow::Borrowed(bare)
        } else {
            Cow::Borrowed("other")
        }
    }

    /// One finished request to the gateway.
    pub fn request(&self, route: &str, model: &str, status: u16, error_class: &str) {
        let model = self.label(model);
        with_slot(&mut self.lock().requests, route, |m| {
            with_slot(m, &model, |s| {
                with_slot(s.entry(status).or_default(), error_class, |n| *n += 1);
            });
        });
    }

    /// One upstream attempt and its outcome class.
    pub fn attempt(&self, model: &str, outcome: &str, latency: Duration) {
        let model = self.label(model);
        let mut inner = self.lock();
        with_slot(&mut inner.attempts, &model, |m| with_slot(m, outcome, |n| *n += 1));
        if let Some(h) = inner.upstream_latency.get_mut(model.as_ref()) {
            h.observe(latency.as_secs_f64());
            return;
        }
        let mut h = Histogram::new(LATENCY_BUCKETS);
        h.observe(latency.as_secs_f64());
        inner.upstream_latency.insert(model.into_owned(), h);
    }

    /// Time from sending a streaming request upstream to its first event.
    pub fn first_token(&self, model: &str, latency: Duration) {
        let model = self.label(model);
        let mut inner = self.lock();
        if let Some(h) = inner.ttft.get_mut(model.as_ref()) {
            h.observe(latency.as_secs_f64());
            return;
        }
        let mut h = Histogram::new(LATENCY_BUCKETS);
        h.observe(latency.as_secs_f64());
        inner.ttft.insert(model.into_owned(), h);
    }

    /// Time the gateway itself spent on a request (total minus waiting on Gemini).
    pub fn overhead(&self, d: Duration) {
        self.lock()
            .overhead
            .get_or_insert_with(|| Histogram::new(OVERHEAD_BUCKETS))
            .observe(d.as_secs_f64());
    }

    /// Upstream attempts by outcome class, summed over models.
    pub fn attempts_by_outcome(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for outcomes in self.lock().attempts.values() {
            for (outcome, n) in outcomes {
                *out.entry(outcome.clone()).or_insert(0) += n;
            }
        }
        out
    }

    pub fn render(&self, pool: &KeyPool) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP gb_requests_total Requests answered by the gateway.\n# TYPE gb_requests_total counter\n");
        let requests = inner.requests.iter().flat_map(|(route, models)| {
            models.iter().flat_map(move |(model, statuses)| {
                statuses.iter().flat_map(move |(status, classes)| {
                    classes.iter().map(move |(class, n)| (route, model, status, class, n))
                })
            })
        });
        for (route, model, status, class, n) in requests {
            let _ = writeln!(
                out,
                "gb_requests_total{{route=\"{}\",model=\"{}\",status=\"{status}\",error_class=\"{}\"}} {n}",
                escape(route),
                escape(model),
                escape(class)
            );
        }
        out.push_str("# HELP gb_upstream_attempts_total Upstream attempts by outcome.\n# TYPE gb_upstream_attempts_total counter\n");
        let attempts = inner
            .attempts
            .iter()
            .flat_map(|(model, outcomes)| outcomes.iter().map(move |(outcome, n)| (model, outcome, n)));
        for (model, outcome, n) in attempts {
            let _ = writeln!(
                out,
                "gb_upstream_attempts_total{{model=\"{}\",outcome=\"{}\"}} {n}",
                escape(model),
                escape(outcome)
            );
        }
        out.push_str("# HELP gb_upstream_latency_seconds Duration of upstream attempts.\n# TYPE gb_upstream_latency_seconds histogram\n");
        for (model, h) in &inner.upstream_latency {
            h.render(
                &mut out,
                "gb_upstream_latency_seconds",
                &format!("model=\"{}\"", escape(model)),
            );
        }
        out.push_str("# HELP gb_time_to_first_token_seconds Time to the first upstream stream event.\n# TYPE gb_time_to_first_token_seconds histogram\n");
        for (model, h) in &inner.ttft {
            h.render(
                &mut out,
                "gb_time_to_first_token_seconds",
                &format!("model=\"{}\"", escape(model)),
            );
        }
        out.push_str("# HELP gb_gateway_overhead_seconds Time spent in the gateway itself, not waiting on Gemini.\n# TYPE gb_gateway_overhead_seconds histogram\n");
        if let Some(h) = &inner.overhead {
            h.render(&mut out, "gb_gateway_overhead_seconds", "");
        }
        drop(inner);
        let status = pool.status();
        let mut by_state: BTreeMap<&str, u64> = [
            "active",
            "half_open",
            "cooling_down",
            "rate_limited",
            "disabled",
            "probing",
            "manual_disabled",
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        out.push_str("# HELP gb_key_state Current state of each key (1 for its state), labelled by key id and masked key.\n# TYPE gb_key_state gauge\n");
        for k in &status {
            *by_state.entry(k.state).or_insert(0) += 1;
            let _ = writeln!(
                out,
                "gb_key_state{{key_id=\"{}\",key=\"{}\",state=\"{}\"}} 1",
                k.fingerprint,
                escape(&k.masked),
                k.state
            );
        }
        out.push_str("# HELP gb_keys Keys by state.\n# TYPE gb_keys gauge\n");
        for (state, n) in by_state {
            let _ = writeln!(out, "gb_keys{{state=\"{state}\"}} {n}");
        }
        out
    }
}

/// What one request did upstream, filled in as it runs (task-local, see [`RequestTrace::scope`]).
#[derive(Debug, Default, Clone)]
pub struct RequestTrace {
    pub upstream: Duration,
    pub tokens: u64,
    pub error_class: Option<&'static str>,
    /// Set when the answer is a stream: its real outcome is known only when it ends.
    pub stream: Option<Arc<StreamEnd>>,
    /// The upstream attempts, in order; the last one's key is the key that served.
    pub attempts: Attempts,
    /// Google's (redacted) message of the last failed attempt, or the gateway's own error.
    pub message: Option<String>,
}

/// One upstream attempt of a request, as the request log keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptRecord {
    /// The key, masked.
    pub key: String,
    /// Outcome class (`success`, `rate_limited`, …).
    pub outcome: &'static str,
    /// Google's HTTP status, or the gateway's stand-in when none came (504 for a timeout, 502
    /// for a broken connection).
    pub status: u16,
    pub latency_ms: u64,
}

/// At most this many attempts are kept per request (beyond it the last slot is overwritten, so
/// the attempt that ended the request is always there).
pub const MAX_ATTEMPTS_LOGGED: usize = 16;

/// A request's attempts: the first one inline, so a request served at the first try allocates
/// no list.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attempts {
    first: Option<AttemptRecord>,
    rest: Vec<AttemptRecord>,
}

impl Attempts {
    pub fn push(&mut self, attempt: AttemptRecord) {
        if self.first.is_none() {
            self.first = Some(attempt);
        } else if self.rest.len() + 1 < MAX_ATTEMPTS_LOGGED {
            self.rest.push(attempt);
        } else if let Some(last) = self.rest.last_mut() {
            *last = attempt;
        }
    }
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
    pub fn last(&self) -> Option<&AttemptRecord> {
        self.rest.last().or(self.first.as_ref())
    }
    pub fn iter(&self) -> impl Iterator<Item = &AttemptRecord> {
        self.first.iter().chain(self.rest.iter())
    }
}

/// How a stream ended, filled in by the stream itself after the handler has returned.
#[derive(Debug, Default)]
pub struct StreamEnd {
    tokens: AtomicU64,
    error_class: OnceLock<&'static str>,
}

impl StreamEnd {
    pub fn set_tokens(&self, tokens: u64) {
        self.tokens.store(tokens, Ordering::Relaxed);
    }
    /// The first error class set wins.
    pub fn set_error(&self, class: &'static str) {
        let _ = self.error_class.set(class);
    }
    pub fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }
    pub fn error_class(&self) -> Option<&'static str> {
        self.error_class.get().copied()
    }
}

tokio::task_local! {
    static TRACE: RefCell<RequestTrace>;
}

/// A future run with its request's trace (a named type, so a service can hold it unboxed).
pub type Scoped<F> = tokio::task::futures::TaskLocalFuture<RefCell<RequestTrace>, F>;

impl RequestTrace {
    /// `fut`, run with a fresh trace; [`RequestTrace::take`] gets the trace back once it is done.
    pub fn scope<F: std::future::Future>(fut: F) -> Scoped<F> {
        TRACE.scope(RefCell::new(RequestTrace::default()), fut)
    }

    /// The trace a [`RequestTrace::scope`] filled (empty if taken before).
    pub fn take<F: std::future::Future>(scoped: std::pin::Pin<&mut Scoped<F>>) -> RequestTrace {
        scoped.take_value().map(RefCell::into_inner).unwrap_or_default()
    }

    /// Updates the current request's trace, if there is one.
    pub fn update(f: impl FnOnce(&mut RequestTrace)) {
        let _ = TRACE.try_with(|t| f(&mut t.borrow_mut()));
    }

    /// Marks the current request's answer as a stream and returns the handle the stream fills
    /// in when it ends (a fresh one outside a request).
    pub fn stream_end() -> Arc<StreamEnd> {
        TRACE
            .try_with(|t| t.borrow_mut().stream.get_or_insert_with(Arc::default).clone())
            .unwrap_or_default()
    }
}
