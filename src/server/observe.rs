//! Per-request bookkeeping for the API routes: metrics (requests by route, model, status and
//! error class; the gateway's own overhead) and the persisted request log.
//!
//! A stream is booked when it ends, with its real outcome, tokens and duration. Requests turned
//! away for a bad token (401) are counted in the metrics but not written to the log, so a flood
//! of them cannot grow the database.

use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use super::AppState;
use crate::gateway::metrics::{Attempts, RequestTrace, StreamEnd};
use crate::gateway::store::LogRow;

/// The model a request asked for, set by handlers on their response.
#[derive(Debug, Clone)]
pub struct ModelLabel(pub String);

pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_default();
    let started = Instant::now();
    let (resp, mut trace) = RequestTrace::scope(next.run(req)).await;
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
    if !trace.upstream.is_zero() {
        state.metrics.overhead(elapsed.saturating_sub(trace.upstream));
    }
    let model = state.metrics.label(&model).into_owned();
    let booking = Booking {
        state,
        at: SystemTime::now(),
        started,
        route,
        model,
        key: trace.attempts.last().map(|a| a.key.clone()).unwrap_or_default(),
        status,
        tokens: trace.tokens,
        class,
        request_id,
        message: trace.message.take().unwrap_or_default(),
        attempts: std::mem::take(&mut trace.attempts),
    };
    match (status, trace.stream) {
        (200, Some(end)) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, booked_stream(body, booking, end))
        }
        _ => {
            booking.book(elapsed, None);
            resp
        }
    }
}

/// What is known of a request when its handler returns.
struct Booking {
    state: AppState,
    at: SystemTime,
    started: Instant,
    route: String,
    model: String,
    key: String,
    status: u16,
    tokens: u64,
    class: &'static str,
    request_id: String,
    message: String,
    attempts: Attempts,
}

impl Booking {
    fn book(self, elapsed: std::time::Duration, tokens: Option<u64>) {
        self.state
            .metrics
            .request(&self.route, &self.model, self.status, self.class);
        if self.status == 401 {
            return;
        }
        self.state.admin.store().log(LogRow {
            at: self.at,
            route: self.route,
            model: self.model,
            key: self.key,
            status: self.status,
            latency_ms: elapsed.as_millis() as u64,
            tokens: tokens.unwrap_or(self.tokens),
            error_class: self.class.to_string(),
            request_id: self.request_id,
            message: self.message,
            attempts: self.attempts,
        });
    }
}

/// Books the request when its stream body ends: finished, failed (the error class the stream
/// set), or abandoned by the client (`client_closed`).
struct StreamBooking {
    booking: Option<Booking>,
    end: std::sync::Arc<StreamEnd>,
    finished: bool,
}

impl Drop for StreamBooking {
    fn drop(&mut self) {
        if let Some(mut booking) = self.booking.take() {
            booking.class = match self.end.error_class() {
                Some(class) => class,
                None if !self.finished => "client_closed",
                None => booking.class,
            };
            let elapsed = booking.started.elapsed();
            booking.book(elapsed, Some(self.end.tokens()));
        }
    }
}

fn booked_stream(body: Body, booking: Booking, end: std::sync::Arc<StreamEnd>) -> Body {
    let guard = StreamBooking {
        booking: Some(booking),
        end,
        finished: false,
    };
    let frames = body.into_data_stream();
    Body::from_stream(futures::stream::unfold(
        (frames, guard),
        |(mut frames, mut guard)| async move {
            match frames.next().await {
                Some(item) => Some((item, (frames, guard))),
                None => {
                    guard.finished = true;
                    drop(guard);
                    None
                }
            }
        },
    ))
}
