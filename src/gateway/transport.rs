//! What comes back from Google, whichever client carried the request: the lean HTTP/1.1 client
//! on the direct route ([`super::http1`]), or reqwest through an egress proxy or over HTTP/2.
//! One reply type and one error type for both, so the upstream logic is written once.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::http1;

/// What kind of failure a transport error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection (refused, unreachable, TLS handshake, connect timeout).
    Connect,
    /// The client's own timeout.
    Timeout,
    /// A kept-alive connection was closed by the other end before anything was answered: the
    /// request was not processed and may be sent again.
    Stale,
    /// The connection broke, or the answer was not valid HTTP.
    Broken,
    /// The request could not be written (a header value with a line break).
    Invalid,
}

/// A failure to exchange a request and its answer with Google. The message never holds a key:
/// requests carry it in a header, and URLs are not quoted.
#[derive(Debug, Clone)]
pub struct TransportError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TransportError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A reqwest error, with its chain of causes and without its URL.
    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_connect() {
            ErrorKind::Connect
        } else if incomplete_message(e) {
            ErrorKind::Stale
        } else {
            ErrorKind::Broken
        };
        let mut text = e.to_string();
        if let Some(url) = e.url() {
            text = text.replace(url.as_str(), "Gemini");
        }
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Self::new(kind, text)
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whether hyper saw the connection close before any response: an idle pooled connection the
/// server or a proxy had already given up on.
fn incomplete_message(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        source = err.source();
    }
    false
}

/// An answer's status and headers, with its body still to read.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: ReplyBody,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl From<http1::Response> for Reply {
    fn from(resp: http1::Response) -> Self {
        Reply {
            status: resp.status,
            headers: resp.headers,
            body: ReplyBody(Inner::Direct(resp.body)),
        }
    }
}

impl From<reqwest::Response> for Reply {
    fn from(resp: reqwest::Response) -> Self {
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: ReplyBody(Inner::Reqwest(resp)),
        }
    }
}

/// A body read piece by piece as it arrives.
pub struct ReplyBody(Inner);

enum Inner {
    Direct(http1::Body),
    Reqwest(reqwest::Response),
}

impl ReplyBody {
    /// The next piece; `None` at the end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, TransportError>> {
        match &mut self.0 {
            Inner::Direct(body) => body.chunk().await,
            Inner::Reqwest(resp) => resp
                .chunk()
                .await
                .map_err(|e| TransportError::from_reqwest(&e))
                .transpose(),
        }
    }

    /// Appends all of the body that has arrived to `out`, waiting only while nothing has; `None`
    /// at the end (see [`http1::Body::read_into`]).
    pub async fn read_into(&mut self, out: &mut BytesMut) -> Option<Result<(), TransportError>> {
        match &mut self.0 {
            Inner::Direct(body) => body.read_into(out).await,
            Inner::Reqwest(resp) => match resp.chunk().await {
                Ok(Some(bytes)) => {
                    out.extend_from_slice(&bytes);
                    Some(Ok(()))
                }
                Ok(None) => None,
                Err(e) => Some(Err(TransportError::from_reqwest(&e))),
            },
        }
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, TransportError> {
        match self.0 {
            Inner::Direct(body) => body.bytes().await,
            Inner::Reqwest(resp) => resp.bytes().await.map_err(|e| TransportError::from_reqwest(&e)),
        }
    }

    /// At most `cap` bytes of the body (the rest is not read); `None` if it broke off.
    pub async fn capped(mut self, cap: usize) -> Option<Bytes> {
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await {
            let chunk = chunk.ok()?;
            let room = cap.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= cap {
                break;
            }
        }
        Some(Bytes::from(out))
    }
}
