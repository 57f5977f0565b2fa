//! Route handlers, one file per route family. Handlers stay thin: parse, call the gateway, render.

pub mod admin;
pub mod anthropic;
pub mod files;
pub mod gemini;
pub mod health;
pub mod openai;
pub mod responses;

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use crate::gateway::service::Frame;

/// An SSE response of a dialect's frames, unbuffered, with a keep-alive every 15 s (`ping`: an
/// event to send instead of a comment line).
pub fn sse_response(frames: impl Stream<Item = Frame> + Send + 'static, ping: Option<Event>) -> Response {
    let events = frames.map(|frame| {
        let event = Event::default().data(frame.data);
        Ok::<_, Infallible>(match frame.event {
            Some(name) => event.event(name),
            None => event,
        })
    });
    let mut keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    if let Some(ping) = ping {
        keep_alive = keep_alive.event(ping);
    }
    let mut resp = Sse::new(events).keep_alive(keep_alive).into_response();
    // Ask reverse proxies (nginx) not to buffer the stream.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
