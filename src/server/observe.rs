//! Per-request bookkeeping for the API routes: metrics (requests by route, model, status and
//! error class; the gateway's own overhead) and the persisted request log.

use std::time::{Instant, SystemTime};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::gateway::metrics::RequestTrace;
use crate::gateway::store::LogRow;

/// The model a request asked for, set by handlers on their response.
#[derive(Debug, Clone)]
pub struct ModelLabel(pub String);

pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    let (resp, trace) = RequestTrace::scope(next.run(req)).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let model = resp
        .extensions()
        .get::<ModelLabel>()
        .map(|m| m.0.clone())
        .unwrap_or_default();
    let class = trace
        .error_class
        .unwrap_or(if status >= 400 { "http_error" } else { "" });
    state.metrics.request(&route, &model, status, class);
    if !trace.upstream.is_zero() {
        state.metrics.overhead(elapsed.saturating_sub(trace.upstream));
    }
    state.admin.store().log(LogRow {
        at: SystemTime::now(),
        route,
        model,
        key: trace.key.unwrap_or_default(),
        status,
        latency_ms: elapsed.as_millis() as u64,
        tokens: trace.tokens,
        error_class: class.to_string(),
    });
    resp
}
