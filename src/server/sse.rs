//! Streamed response bodies for the client: each dialect's SSE frames (and the native route's
//! passthrough bytes) written as they arrive, with a keep-alive while a stream is quiet.
//!
//! Nothing waits for more data. Upstream events reach this body one at a time (the HTTP client
//! hands over one chunk per turn of its connection task), so a body that wrote whatever it had
//! each time it was polled would make one write per event even when twenty events came in one
//! network read. Instead, after taking what is ready, the body lets the tasks that are ready run
//! and looks again; it writes as soon as a look finds nothing new. The first write goes out at
//! once; later ones wait at most a few turns of the scheduler, never for the network.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use tokio::time::{Instant, Sleep};

use crate::gateway::service::Frame;

/// How long a stream may stay quiet before a keep-alive is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// At most this many bytes go into one write.
const MAX_BATCH: usize = 64 * 1024;

/// At most this many turns are taken to gather one write while items keep coming.
const MAX_TURNS: u32 = 32;

/// A write goes out after this many turns in a row brought nothing new. One is not enough: the
/// task handing over the next item may be running on another thread at that moment.
const EMPTY_TURNS: u32 = 2;

/// An SSE response of a dialect's frames. `ping`: the frame to send as keep-alive instead of a
/// comment line (Anthropic's `ping` event).
pub fn response(frames: impl Stream<Item = Frame> + Send + 'static, ping: Option<Frame>) -> Response {
    let keep_alive = match ping {
        Some(frame) => {
            let mut buf = BytesMut::new();
            write_frame(&mut buf, &frame);
            buf.freeze()
        }
        None => Bytes::from_static(b": \n\n"),
    };
    let body =
        Coalesced::new(frames, |buf: &mut BytesMut, frame: Frame| write_frame(buf, &frame)).keep_alive(keep_alive);
    let mut resp = Response::new(Body::from_stream(body));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Ask reverse proxies (nginx) not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// A body of byte chunks, written as [`Coalesced`] does (no keep-alive).
pub fn bytes_body(chunks: impl Stream<Item = Bytes> + Send + 'static) -> Body {
    Body::from_stream(Coalesced::new(chunks, |buf: &mut BytesMut, chunk: Bytes| {
        buf.put_slice(&chunk)
    }))
}

/// Appends one frame in SSE syntax: `event:` when named, one `data:` line per line of data.
fn write_frame(buf: &mut BytesMut, frame: &Frame) {
    if let Some(name) = frame.event {
        buf.put_slice(b"event: ");
        buf.put_slice(name.as_bytes());
        buf.put_u8(b'\n');
    }
    // Lines found with `memchr`: a char searcher costs more than the copy for one-line JSON.
    let data = frame.data.as_bytes();
    buf.reserve(data.len() + 9);
    let mut rest = Some(data);
    while let Some(text) = rest {
        let line = match memchr::memchr(b'\n', text) {
            Some(end) => {
                rest = text.get(end + 1..);
                text.get(..end).unwrap_or_default()
            }
            None => {
                rest = None;
                text
            }
        };
        buf.put_slice(b"data: ");
        buf.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
}

/// The items of a stream, encoded into as few writes as the scheduler allows (see the module
/// documentation), with an optional keep-alive chunk after [`KEEP_ALIVE`] of quiet.
struct Coalesced<S, F> {
    items: Pin<Box<S>>,
    encode: F,
    buf: BytesMut,
    /// Turns taken so far to gather `buf`, and how many of the last ones brought nothing.
    turns: u32,
    empty_turns: u32,
    /// Whether the first write went out: it is never held back for a turn, so the time to the
    /// first byte is the upstream's.
    started: bool,
    keep_alive: Option<(Bytes, Pin<Box<Sleep>>)>,
    done: bool,
}

impl<S, F> Coalesced<S, F> {
    fn new(items: S, encode: F) -> Self {
        Coalesced {
            items: Box::pin(items),
            encode,
            buf: BytesMut::new(),
            turns: 0,
            empty_turns: 0,
            started: false,
            keep_alive: None,
            done: false,
        }
    }

    fn keep_alive(mut self, chunk: Bytes) -> Self {
        self.keep_alive = Some((chunk, Box::pin(tokio::time::sleep(KEEP_ALIVE))));
        self
    }
}

impl<T, S: Stream<Item = T>, F: FnMut(&mut BytesMut, T) + Unpin> Stream for Coalesced<S, F> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let before = this.buf.len();
        while !this.done && this.buf.len() < MAX_BATCH {
            match this.items.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => (this.encode)(&mut this.buf, item),
                Poll::Ready(None) => this.done = true,
                Poll::Pending => break,
            }
        }
        if !this.buf.is_empty() {
            let progressed = this.buf.len() > before;
            this.empty_turns = if progressed { 0 } else { this.empty_turns + 1 };
            let gather = this.started && !this.done && this.buf.len() < MAX_BATCH;
            if gather && this.turns < MAX_TURNS && this.empty_turns < EMPTY_TURNS {
                // More may be a turn away: look again once the tasks that are ready have run
                // (tokio's `yield_now` hands the waker to the scheduler for then).
                this.turns += 1;
                let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
                return Poll::Pending;
            }
            this.turns = 0;
            this.empty_turns = 0;
            this.started = true;
            if let Some((_, quiet)) = &mut this.keep_alive {
                quiet.as_mut().reset(Instant::now() + KEEP_ALIVE);
            }
            return Poll::Ready(Some(Ok(this.buf.split().freeze())));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if let Some((chunk, quiet)) = &mut this.keep_alive {
            if quiet.as_mut().poll(cx).is_ready() {
                quiet.as_mut().reset(Instant::now() + KEEP_ALIVE);
                return Poll::Ready(Some(Ok(chunk.clone())));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn writes_of(body: Body) -> Vec<Bytes> {
        let mut stream = body.into_data_stream();
        let mut writes = Vec::new();
        while let Some(chunk) = stream.next().await {
            writes.push(chunk.unwrap());
        }
        writes
    }

    #[tokio::test]
    async fn frames_are_framed_and_waiting_frames_share_a_write() {
        let frames = futures::stream::iter([
            Frame::data("{\"a\":1}"),
            Frame {
                event: Some("message_stop"),
                data: "x\ny".into(),
            },
        ]);
        let resp = response(frames, None);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        let writes = writes_of(resp.into_body()).await;
        assert_eq!(writes.len(), 1);
        assert_eq!(
            &writes[0][..],
            b"data: {\"a\":1}\n\nevent: message_stop\ndata: x\ndata: y\n\n"
        );
    }

    fn framed(event: Option<&'static str>, data: &str) -> String {
        let mut buf = BytesMut::new();
        write_frame(
            &mut buf,
            &Frame {
                event,
                data: data.into(),
            },
        );
        String::from_utf8(buf.to_vec()).unwrap_or_default()
    }

    #[test]
    fn each_line_of_data_is_a_data_line() {
        assert_eq!(framed(None, r#"{"a":1}"#), "data: {\"a\":1}\n\n");
        assert_eq!(framed(Some("ping"), ""), "event: ping\ndata: \n\n");
        assert_eq!(framed(None, "one\r\ntwo\n"), "data: one\ndata: two\ndata: \n\n");
        assert_eq!(framed(None, "\n\n"), "data: \ndata: \ndata: \n\n");
    }

    #[tokio::test]
    async fn items_handed_over_one_per_turn_still_share_a_write() {
        let writes = handed_over_one_per_turn().await;
        // The first item goes out at once; the others are gathered.
        assert!(writes <= 2, "{writes} writes for 20 ready items");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_several_threads_nothing_is_lost_or_reordered() {
        // How many writes depends on how the threads run; what is written does not.
        for _ in 0..20 {
            handed_over_one_per_turn().await;
        }
    }

    /// Like the HTTP client's body: one chunk at a time, the next one a task switch away. Checks
    /// what arrives and returns the number of writes.
    async fn handed_over_one_per_turn() -> usize {
        let (tx, rx) = futures::channel::mpsc::channel::<Bytes>(0);
        let producer = tokio::spawn(async move {
            let mut tx = tx;
            for i in 0..20 {
                futures::SinkExt::send(&mut tx, Bytes::from(format!("{i};")))
                    .await
                    .unwrap();
            }
        });
        // Read by a task of its own, as hyper's connection task reads a response body.
        let writes = tokio::spawn(writes_of(bytes_body(rx))).await.unwrap();
        producer.await.unwrap();
        let all: Vec<u8> = writes.iter().flat_map(|w| w.to_vec()).collect();
        assert_eq!(all, (0..20).map(|i| format!("{i};")).collect::<String>().into_bytes());
        writes.len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_gets_keep_alives_and_frames_are_not_held_back() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Frame>();
        let ping = Frame {
            event: Some("ping"),
            data: "{\"type\":\"ping\"}".into(),
        };
        let mut body = response(rx, Some(ping)).into_body().into_data_stream();
        tx.unbounded_send(Frame::data("1")).unwrap();
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"data: 1\n\n");
        // Nothing for 15 s: a ping.
        let started = Instant::now();
        assert_eq!(
            &body.next().await.unwrap().unwrap()[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        assert_eq!(started.elapsed(), KEEP_ALIVE);
        tx.unbounded_send(Frame::data("2")).unwrap();
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"data: 2\n\n");
        assert_eq!(started.elapsed(), KEEP_ALIVE);
        drop(tx);
        assert!(body.next().await.is_none());
    }
}
