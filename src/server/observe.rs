//! Per-request bookkeeping for the API routes: metrics (requests by route, model, status and
//! error class; the gateway's own overhead) and the persisted request log.
//!
//! A stream is booked when it ends, with its real outcome, tokens and duration. Requests turned
//! away for a bad token (401) are counted in the metrics but not written to the log, so a flood
//! of them cannot grow the database.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use hyper::body::Frame;

use super::AppState;
use crate::gateway::metrics::{Attempts, RequestTrace, Scoped, StreamEnd};
use crate::gateway::store::LogRow;

/// The model a request asked for, set by handlers on their response.
#[derive(Debug, Clone)]
pub struct ModelLabel(pub String);

/// Books every request of the routes it wraps (apply with `route_layer`, so the matched route
/// is known). A plain tower layer: nothing is cloned or boxed per request.
#[derive(Clone)]
pub struct ObserveLayer {
    state: AppState,
}

impl ObserveLayer {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
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
        Observed {
            inner: RequestTrace::scope(self.inner.call(req)),
            pending: Some(Pending {
                state: self.state.clone(),
                route,
                request_id,
                started: Instant::now(),
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response, booked when it is ready.
    pub struct Observed<F> {
        #[pin]
        inner: Scoped<F>,
        pending: Option<Pending>,
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Ok(resp) = std::task::ready!(this.inner.as_mut().poll(cx));
        let trace = RequestTrace::take(this.inner);
        Poll::Ready(Ok(match this.pending.take() {
            Some(pending) => pending.book(resp, trace),
            // Polled again after it was ready: nothing left to book.
            None => resp,
        }))
    }
}

/// What is known of a request before its handler runs.
struct Pending {
    state: AppState,
    route: String,
    request_id: String,
    started: Instant,
}

impl Pending {
    /// Books a finished request, or wraps a stream's body to book it when the stream ends.
    fn book(self, resp: Response, mut trace: RequestTrace) -> Response {
        let Pending {
            state,
            route,
            request_id,
            started,
        } = self;
        let elapsed = started.elapsed();
        let status = resp.status().as_u16();
        let model = resp
            .extensions()
            .get::<ModelLabel>()
            .map(|m| m.0.as_str())
            .unwrap_or_default();
        let class = trace
            .error_class
            .unwrap_or(if status >= 400 { "http_error" } else { "" });
        if !trace.upstream.is_zero() {
            state.metrics.overhead(elapsed.saturating_sub(trace.upstream));
        }
        let model = state.metrics.label(model).into_owned();
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
}

impl StreamBooking {
    /// Books the request now (once), `finished` telling a stream that ran to its end from one
    /// the client left.
    fn book(&mut self, finished: bool) {
        if let Some(mut booking) = self.booking.take() {
            booking.class = match self.end.error_class() {
                Some(class) => class,
                None if !finished => "client_closed",
                None => booking.class,
            };
            let elapsed = booking.started.elapsed();
            booking.book(elapsed, Some(self.end.tokens()));
        }
    }
}

impl Drop for StreamBooking {
    fn drop(&mut self) {
        self.book(false);
    }
}

pin_project_lite::pin_project! {
    /// A stream's body, passed through frame by frame, that books the request at its end.
    struct BookedBody {
        #[pin]
        inner: Body,
        booking: StreamBooking,
    }
}

impl HttpBody for BookedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.booking.book(true);
        }
        polled
    }

    // `is_end_stream` stays `false`: the end is learnt by polling, which books the request.
}

fn booked_stream(body: Body, booking: Booking, end: std::sync::Arc<StreamEnd>) -> Body {
    Body::new(BookedBody {
        inner: body,
        booking: StreamBooking {
            booking: Some(booking),
            end,
        },
    })
}
