//! The direct route to Google: a small HTTP/1.1 client (plain or TLS) with its own keep-alive pool.
//!
//! The task that waits for an answer reads the connection itself: there is no connection task
//! and no channel between the socket and the reader, so a stream's events go from the socket to
//! the translator without a hand-off between tasks, and an open stream holds its socket and one
//! small read buffer. Proxies and HTTP/2 go through reqwest instead ([`super::transport`]).
//!
//! Idle connections are kept per thread (a socket belongs to the runtime that opened it, and
//! each serving thread runs its own), the newest used first, for [`IDLE_FOR`] at most.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

use super::transport::{ErrorKind, TransportError};

/// Room made in a connection's read buffer before each read.
const READ_SIZE: usize = 4096;
/// The most a response's status line and headers may take.
const MAX_HEAD: usize = 64 * 1024;
/// The most a chunk-size or trailer line may take.
const MAX_LINE: usize = 4096;
/// Idle connections kept per serving thread.
const MAX_IDLE: usize = 1024;
/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(90);
/// Response headers read at most.
const MAX_HEADERS: usize = 96;

/// Where the client connects: scheme, host and port of the base URL.
#[derive(Clone)]
struct Origin {
    host: String,
    port: u16,
    /// The `Host` header's value.
    authority: String,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
}

/// A client for one origin.
pub struct Client {
    origin: Origin,
    connect_timeout: Duration,
    user_agent: &'static str,
    idle: Arc<IdlePool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("http1::Client")
            .field("host", &self.origin.host)
            .field("port", &self.origin.port)
            .field("tls", &self.origin.tls.is_some())
            .finish()
    }
}

/// One request: everything but the host, which is the client's.
pub struct Request<'a> {
    pub method: &'a Method,
    /// Path and query, as sent on the request line.
    pub target: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a Bytes>,
}

/// A response whose body is still to be read.
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Client {
    /// A client for `base_url` (`http://` or `https://`; its path is ignored: requests carry
    /// their own). HTTPS trusts the Web PKI roots and speaks HTTP/1.1 only.
    pub fn new(base_url: &str, connect_timeout: Duration, user_agent: &'static str) -> Result<Self, String> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::trusting(base_url, connect_timeout, user_agent, roots)
    }

    fn trusting(
        base_url: &str,
        connect_timeout: Duration,
        user_agent: &'static str,
        roots: rustls::RootCertStore,
    ) -> Result<Self, String> {
        let url = url::Url::parse(base_url).map_err(|e| format!("invalid upstream URL: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| "the upstream URL has no host".to_string())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| "the upstream URL has no port".to_string())?;
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let tls = match url.scheme() {
            "http" => None,
            "https" => Some(tls_connector(&host, roots)?),
            other => return Err(format!("unsupported upstream scheme {other}")),
        };
        Ok(Self {
            origin: Origin {
                host,
                port,
                authority,
                tls,
            },
            connect_timeout,
            user_agent,
            idle: Arc::new(IdlePool::default()),
        })
    }

    /// Sends a request and reads the response's head. A kept-alive connection found closed
    /// before anything was answered is replaced by a new one, once.
    pub async fn send(&self, req: &Request<'_>) -> Result<Response, TransportError> {
        let mut head = self.head(req)?;
        // Small requests go out in one write.
        let rest = match req.body {
            Some(body) if body.len() <= 16 * 1024 => {
                head.extend_from_slice(body);
                None
            }
            other => other,
        };
        let is_head = req.method == Method::HEAD;
        if let Some(conn) = self.idle.take() {
            match exchange(conn, true, &head, rest, is_head, &self.idle).await {
                Err(e) if e.kind == ErrorKind::Stale => {}
                done => return done,
            }
        }
        // Boxed: a new connection (with its TLS handshake) is rare, and its future is large; it
        // would otherwise make every request's future larger.
        let conn = Box::pin(self.connect()).await?;
        exchange(conn, false, &head, rest, is_head, &self.idle).await
    }

    /// The request line and headers.
    fn head(&self, req: &Request<'_>) -> Result<Vec<u8>, TransportError> {
        let invalid = |what: &str| TransportError::new(ErrorKind::Invalid, format!("invalid request {what}"));
        if req.target.bytes().any(|b| b <= b' ' || b == 0x7f) || !req.target.starts_with('/') {
            return Err(invalid("path"));
        }
        let mut head = Vec::with_capacity(256 + req.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>());
        head.extend_from_slice(req.method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(req.target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(self.origin.authority.as_bytes());
        head.extend_from_slice(b"\r\nuser-agent: ");
        head.extend_from_slice(self.user_agent.as_bytes());
        head.extend_from_slice(b"\r\n");
        for (name, value) in req.headers {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid("header name"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(invalid("header value"));
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        match req.body {
            Some(body) => {
                head.extend_from_slice(b"content-length: ");
                head.extend_from_slice(body.len().to_string().as_bytes());
                head.extend_from_slice(b"\r\n\r\n");
            }
            None if req.method == Method::POST || req.method == Method::PUT || req.method == Method::PATCH => {
                head.extend_from_slice(b"content-length: 0\r\n\r\n");
            }
            None => head.extend_from_slice(b"\r\n"),
        }
        Ok(head)
    }

    /// A TCP connection to the first of the host's addresses that answers. Each address gets an
    /// equal share of what is left of the connect timeout, so one that drops packets (an IPv6
    /// route that goes nowhere) leaves time for the next.
    async fn open_tcp(&self) -> Result<TcpStream, TransportError> {
        let fail = |what: String| TransportError::new(ErrorKind::Connect, format!("cannot connect to Gemini: {what}"));
        let deadline = Instant::now() + self.connect_timeout;
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((self.origin.host.as_str(), self.origin.port))
            .await
            .map_err(|e| fail(e.to_string()))?
            .collect();
        let mut last = fail("the host name has no address".into());
        for (i, addr) in addrs.iter().enumerate() {
            let share = deadline.saturating_duration_since(Instant::now()) / (addrs.len() - i) as u32;
            match tokio::time::timeout(share, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(e)) => last = fail(e.to_string()),
                Err(_) => last = fail(format!("{addr} did not answer in time")),
            }
        }
        Err(last)
    }

    /// A new connection (and its TLS handshake), within the connect timeout.
    async fn connect(&self) -> Result<Conn, TransportError> {
        let origin = &self.origin;
        let open = async {
            let tcp = self.open_tcp().await?;
            let _ = tcp.set_nodelay(true);
            let io = match &origin.tls {
                None => Io::Plain(tcp),
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await.map_err(|e| {
                        TransportError::new(ErrorKind::Connect, format!("TLS handshake with Gemini failed: {e}"))
                    })?;
                    Io::Tls(Box::new(tls))
                }
            };
            Ok::<_, TransportError>(io)
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(io) => Ok(Conn {
                io: io?,
                buf: BytesMut::new(),
                idle_since: Instant::now(),
            }),
            Err(_) => Err(TransportError::new(
                ErrorKind::Connect,
                "connecting to Gemini timed out",
            )),
        }
    }
}

fn tls_connector(
    host: &str,
    roots: rustls::RootCertStore,
) -> Result<(TlsConnector, rustls::pki_types::ServerName<'static>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("invalid upstream host {host}: {e}"))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// Writes a request on a connection and reads the answer's head.
async fn exchange(
    mut conn: Conn,
    reused: bool,
    head: &[u8],
    rest: Option<&Bytes>,
    is_head: bool,
    idle: &Arc<IdlePool>,
) -> Result<Response, TransportError> {
    let lost = |e: io::Error| {
        let kind = if reused { ErrorKind::Stale } else { ErrorKind::Broken };
        TransportError::new(kind, format!("sending the request failed: {e}"))
    };
    conn.io.write_all(head).await.map_err(lost)?;
    if let Some(body) = rest {
        conn.io.write_all(body).await.map_err(lost)?;
    }
    conn.io.flush().await.map_err(lost)?;
    read_head(conn, reused, is_head, idle.clone()).await
}

/// Reads the status line and headers (skipping `1xx` answers) and sets up the body's framing.
async fn read_head(
    mut conn: Conn,
    reused: bool,
    head_request: bool,
    idle: Arc<IdlePool>,
) -> Result<Response, TransportError> {
    let mut answered = false;
    loop {
        let Some(head) = parse_head(&conn.buf)? else {
            if conn.buf.len() >= MAX_HEAD {
                return Err(TransportError::new(
                    ErrorKind::Broken,
                    "response headers from Gemini too large",
                ));
            }
            let n = conn.fill().await.map_err(|e| {
                let kind = if reused && !answered {
                    ErrorKind::Stale
                } else {
                    ErrorKind::Broken
                };
                TransportError::new(kind, format!("reading the response failed: {e}"))
            })?;
            if n == 0 {
                let kind = if reused && !answered && conn.buf.is_empty() {
                    ErrorKind::Stale
                } else {
                    ErrorKind::Broken
                };
                return Err(TransportError::new(
                    kind,
                    "connection closed before the response was complete",
                ));
            }
            answered = true;
            continue;
        };
        let _ = conn.buf.split_to(head.len);
        let code = head.code;
        if (100..200).contains(&code) && code != 101 {
            continue;
        }
        let mut keep_alive = head.keep_alive;
        let framing = if head_request || code == 204 || code == 304 {
            Framing::Length(0)
        } else if head.chunked {
            Framing::Chunked(Chunk::Size)
        } else if let Some(n) = head.length {
            Framing::Length(n)
        } else {
            keep_alive = false;
            Framing::UntilClose
        };
        let mut body = Body {
            conn: Some(conn),
            framing,
            keep_alive,
            idle,
            deferred: None,
        };
        if matches!(body.framing, Framing::Length(0)) {
            body.finish();
        }
        return Ok(Response {
            status: code,
            headers: head.headers,
            body,
        });
    }
}

/// A response head read from the start of the buffer.
struct Head {
    /// Its length in bytes.
    len: usize,
    code: u16,
    headers: HeaderMap,
    length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
}

/// The head at the start of `buf`; `None` while it is incomplete. Not `async`: its header
/// array (some 3 KiB) lives on the stack for the parse only, never in a request's future.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, TransportError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let status = parsed
        .parse(buf)
        .map_err(|e| TransportError::new(ErrorKind::Broken, format!("invalid response from Gemini: {e}")))?;
    let httparse::Status::Complete(len) = status else {
        return Ok(None);
    };
    let code = parsed.code.unwrap_or(0);
    let mut head = Head {
        len,
        code,
        headers: HeaderMap::new(),
        length: None,
        chunked: false,
        keep_alive: parsed.version == Some(1),
    };
    if (100..200).contains(&code) && code != 101 {
        return Ok(Some(head));
    }
    head.headers.reserve(parsed.headers.len());
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            continue;
        };
        if name == http::header::CONTENT_LENGTH {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            match (n, head.length) {
                (Some(n), None) => head.length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    return Err(TransportError::new(
                        ErrorKind::Broken,
                        "invalid Content-Length from Gemini",
                    ))
                }
            }
        } else if name == http::header::TRANSFER_ENCODING {
            head.chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == http::header::CONNECTION {
            let v = h.value.trim_ascii();
            if v.eq_ignore_ascii_case(b"close") {
                head.keep_alive = false;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                head.keep_alive = true;
            }
        }
        head.headers.append(name, value);
    }
    Ok(Some(head))
}

/// How the body's end is told.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Chunk),
    /// The connection's end ends the body.
    UntilClose,
    Done,
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes to come.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// A response body, read from the connection as it is polled. Read to its end, the connection
/// goes back to the idle pool; dropped before that, the connection is closed.
pub struct Body {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    idle: Arc<IdlePool>,
    /// A framing error met after [`Body::read_into`] had data to give: reported on the next call,
    /// so what came before it is read first.
    deferred: Option<TransportError>,
}

/// What the buffered bytes gave.
enum Step {
    Data(Bytes),
    /// More bytes are needed.
    More,
    End,
}

impl Body {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, TransportError>> {
        if let Some(e) = self.deferred.take() {
            return Some(Err(self.fail(e)));
        }
        loop {
            match self.decode() {
                Ok(Step::Data(data)) => return Some(Ok(data)),
                Ok(Step::End) => {
                    self.finish();
                    return None;
                }
                Ok(Step::More) => {}
                Err(e) => return Some(Err(self.fail(e))),
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Appends all of the body that has arrived to `out`, waiting only while nothing has;
    /// `None` at its end. A stream's reader takes every event that came in one read at once,
    /// rather than one piece of the chunked framing at a time.
    pub async fn read_into(&mut self, out: &mut BytesMut) -> Option<Result<(), TransportError>> {
        if let Some(e) = self.deferred.take() {
            return Some(Err(self.fail(e)));
        }
        let mut got = false;
        loop {
            // Room for everything buffered (its framing included) at once, rather than one
            // piece at a time.
            if let Some(conn) = &self.conn {
                out.reserve(conn.buf.len());
            }
            match self.decode() {
                Ok(Step::Data(data)) => {
                    out.extend_from_slice(&data);
                    got = true;
                    continue;
                }
                Ok(Step::End) => {
                    self.finish();
                    return got.then_some(Ok(()));
                }
                Ok(Step::More) if got => return Some(Ok(())),
                Ok(Step::More) => {}
                Err(e) if got => {
                    self.deferred = Some(e);
                    return Some(Ok(()));
                }
                Err(e) => return Some(Err(self.fail(e))),
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Reads more from the connection: `Ok(false)` when the body ends cleanly there (a body
    /// framed by the connection's close), an error if it breaks off.
    async fn fill(&mut self) -> Result<bool, TransportError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        match conn.fill().await {
            Ok(0) if matches!(self.framing, Framing::UntilClose) => {
                self.framing = Framing::Done;
                self.conn = None;
                Ok(false)
            }
            Ok(0) => {
                let e = TransportError::new(ErrorKind::Broken, "connection closed before the message completed");
                Err(self.fail(e))
            }
            Ok(_) => Ok(true),
            Err(e) => {
                let e = TransportError::new(ErrorKind::Broken, format!("reading the response failed: {e}"));
                Err(self.fail(e))
            }
        }
    }

    fn fail(&mut self, e: TransportError) -> TransportError {
        self.framing = Framing::Done;
        self.conn = None;
        e
    }

    /// Takes the next piece of data already in the buffer.
    fn decode(&mut self) -> Result<Step, TransportError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Step::End);
        };
        let buf = &mut conn.buf;
        let step = match &mut self.framing {
            Framing::Done | Framing::Length(0) => Step::End,
            Framing::UntilClose if buf.is_empty() => Step::More,
            Framing::UntilClose => Step::Data(buf.split().freeze()),
            Framing::Length(_) if buf.is_empty() => Step::More,
            Framing::Length(rest) => {
                let n = (*rest).min(buf.len() as u64) as usize;
                *rest -= n as u64;
                Step::Data(buf.split_to(n).freeze())
            }
            Framing::Chunked(state) => decode_chunked(state, buf)?,
        };
        // The last piece of a sized body hands the connection back at once.
        if matches!(self.framing, Framing::Length(0)) {
            self.finish();
        }
        Ok(step)
    }

    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            // Bytes beyond the body mean the two ends disagree about framing: not reused.
            if self.keep_alive && conn.buf.is_empty() {
                self.idle.put(conn);
            }
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Bytes, TransportError> {
        let mut out = BytesMut::new();
        while let Some(chunk) = self.chunk().await {
            let chunk = chunk?;
            if out.is_empty() && matches!(self.framing, Framing::Done) {
                return Ok(chunk);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }
}

/// Where the CRLF that ends `buf`'s first line starts; `None` while no line feed has come. A
/// bare line feed is an error, as in the rest of the framing.
fn line_end(buf: &[u8]) -> Result<Option<usize>, TransportError> {
    match memchr::memchr(b'\n', buf) {
        None => Ok(None),
        Some(nl) if nl > 0 && buf.get(nl - 1) == Some(&b'\r') => Ok(Some(nl - 1)),
        Some(_) => Err(TransportError::new(
            ErrorKind::Broken,
            "invalid chunked body from Gemini: a line ends without CR",
        )),
    }
}

/// Decodes chunked transfer coding from `buf`.
fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> Result<Step, TransportError> {
    let bad = |what: &str| TransportError::new(ErrorKind::Broken, format!("invalid chunked body from Gemini: {what}"));
    loop {
        match state {
            Chunk::Size => {
                let Some(end) = line_end(buf)? else {
                    return if buf.len() > MAX_LINE {
                        Err(bad("chunk-size line too long"))
                    } else {
                        Ok(Step::More)
                    };
                };
                let line = &buf[..end];
                let digits = line.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
                if digits.is_empty() || digits.len() > 15 {
                    return Err(bad("chunk size"));
                }
                let size = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| bad("chunk size"))?;
                buf.advance(end + 2);
                *state = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
            }
            Chunk::Data(rest) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = (*rest).min(buf.len() as u64) as usize;
                *rest -= n as u64;
                if *rest == 0 {
                    *state = Chunk::DataEnd;
                }
                return Ok(Step::Data(buf.split_to(n).freeze()));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(bad("missing CRLF after a chunk"));
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                let Some(end) = line_end(buf)? else {
                    return if buf.len() > MAX_LINE {
                        Err(bad("trailer line too long"))
                    } else {
                        Ok(Step::More)
                    };
                };
                buf.advance(end + 2);
                if end == 0 {
                    return Ok(Step::End);
                }
            }
        }
    }
}

/// A connection and the bytes read from it but not yet used.
struct Conn {
    io: Io,
    buf: BytesMut,
    idle_since: Instant,
}

impl Conn {
    /// Reads what the socket has into the buffer; `Ok(0)` at its end.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Whether an idle connection may still be used: not too old, and nothing (an end, an
    /// error, or stray bytes) arrived while it sat in the pool.
    fn usable(&self) -> bool {
        if self.idle_since.elapsed() > IDLE_FOR {
            return false;
        }
        let tcp = match &self.io {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0,
        };
        let mut probe = [0u8; 1];
        matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

thread_local! {
    /// This thread's number in the idle pools; 0 until first used.
    static THREAD_TAG: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The calling thread's number in the idle pools. Idle connections are kept per thread: a socket
/// is driven by the runtime that opened it, and each serving thread runs a runtime of its own.
fn thread_tag() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    THREAD_TAG.with(|tag| {
        if tag.get() == 0 {
            tag.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        tag.get()
    })
}

/// Idle connections, per thread tag, newest last.
#[derive(Default)]
struct IdlePool {
    by_thread: Mutex<HashMap<u64, Vec<Conn>>>,
}

impl IdlePool {
    fn take(&self) -> Option<Conn> {
        let tag = thread_tag();
        let mut map = self.by_thread.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.get_mut(&tag)?;
        while let Some(conn) = list.pop() {
            if conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, mut conn: Conn) {
        let tag = thread_tag();
        conn.idle_since = Instant::now();
        // Empty here: an idle connection holds no buffer (a burst can leave hundreds idle).
        conn.buf = BytesMut::new();
        let mut map = self.by_thread.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(tag).or_default();
        // The oldest go first: they are the likeliest to have been closed by the other end.
        if list.first().is_some_and(|c| c.idle_since.elapsed() > IDLE_FOR) {
            list.retain(|c| c.idle_since.elapsed() <= IDLE_FOR);
        }
        if list.len() >= MAX_IDLE {
            list.remove(0);
        }
        list.push(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn drain(chunk: &mut Chunk, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<bool, TransportError> {
        loop {
            match decode_chunked(chunk, buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::More => return Ok(false),
                Step::End => return Ok(true),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_however_the_bytes_are_split() {
        let wire = b"5;ext=1\r\nhello\r\n1a\r\n, and twenty-six bytes mor\r\n0\r\nx-trailer: 1\r\n\r\n";
        let expected = b"hello, and twenty-six bytes mor";
        for step in 1..wire.len() {
            let mut state = Chunk::Size;
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut ended = false;
            for piece in wire.chunks(step) {
                assert!(!ended, "ended early at step {step}");
                buf.extend_from_slice(piece);
                ended = drain(&mut state, &mut buf, &mut out).unwrap();
            }
            assert!(ended, "no end at step {step}");
            assert!(buf.is_empty());
            assert_eq!(out, expected, "step {step}");
        }
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        // A bad size, data not followed by CRLF, an empty size line, and lines ended by a bare
        // LF (size and trailer).
        for wire in [
            &b"zz\r\nab\r\n"[..],
            b"2\r\nabXX",
            b"\r\n",
            b"2\nab\r\n0\r\n\r\n",
            b"2\r\nab\r\n0\r\nx: 1\n\r\n",
        ] {
            let mut state = Chunk::Size;
            let mut buf = BytesMut::from(wire);
            let mut out = Vec::new();
            assert!(drain(&mut state, &mut buf, &mut out).is_err(), "{wire:?}");
        }
    }

    /// A server that answers each request on a connection with the next canned answer, and
    /// records how many connections it accepted and what it read.
    async fn canned(
        answers: Vec<&'static [u8]>,
        per_conn: usize,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>, Arc<Mutex<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (conns.clone(), seen.clone());
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                for _ in 0..per_conn {
                    let mut req = Vec::new();
                    let mut byte = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        let Ok(n) = sock.read(&mut byte).await else { return };
                        if n == 0 {
                            return;
                        }
                        req.extend_from_slice(&byte[..n]);
                    }
                    s.lock().unwrap().extend_from_slice(&req);
                    let Some(answer) = answers.next() else { return };
                    if sock.write_all(answer).await.is_err() {
                        return;
                    }
                }
            }
        });
        (url, conns, seen)
    }

    /// Sends a GET and returns the answer with its body unread.
    async fn open(client: &Client, target: &str, headers: &[(&str, &str)]) -> Result<Response, TransportError> {
        let req = Request {
            method: &Method::GET,
            target,
            headers,
            body: None,
        };
        client.send(&req).await
    }

    async fn fetch(client: &Client, target: &str, headers: &[(&str, &str)]) -> Result<(u16, Bytes), TransportError> {
        let resp = open(client, target, headers).await?;
        Ok((resp.status, resp.body.bytes().await?))
    }

    #[tokio::test]
    async fn kept_alive_connections_are_reused_and_every_framing_reads_whole() {
        let (url, conns, seen) = canned(
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nx-goog-upload-status: final\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end",
            ],
            4,
        )
        .await;
        let client = Client::new(&url, Duration::from_secs(5), "test").unwrap();
        assert_eq!(
            fetch(&client, "/a", &[("x-goog-api-key", "k1")]).await.unwrap(),
            (200, Bytes::from("hello"))
        );
        assert_eq!(
            fetch(&client, "/b?x=1", &[]).await.unwrap(),
            (200, Bytes::from("abcde"))
        );
        let resp = open(&client, "/c", &[]).await.unwrap();
        assert_eq!(resp.status, 404);
        assert_eq!(resp.headers.get("x-goog-upload-status").unwrap(), "final");
        drop(resp);
        assert_eq!(
            fetch(&client, "/d", &[]).await.unwrap(),
            (200, Bytes::from("to the end"))
        );
        assert_eq!(
            conns.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one connection for all four"
        );
        let seen = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        assert!(seen.starts_with("GET /a HTTP/1.1\r\nhost: 127.0.0.1:"), "{seen}");
        assert!(seen.contains("x-goog-api-key: k1\r\n"));
        assert!(seen.contains("GET /b?x=1 HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_its_connection() {
        let (url, conns, _) = canned(
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ],
            1,
        )
        .await;
        let client = Client::new(&url, Duration::from_secs(5), "test").unwrap();
        let mut resp = open(&client, "/a", &[]).await.unwrap();
        assert_eq!(resp.body.chunk().await.unwrap().unwrap(), Bytes::from("hello"));
        drop(resp);
        assert_eq!(fetch(&client, "/b", &[]).await.unwrap(), (200, Bytes::from("ok")));
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_by_the_server_is_replaced_without_an_error() {
        // One answer per connection, then the server closes it although it said keep-alive.
        let (url, conns, _) = canned(
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nyes",
            ],
            1,
        )
        .await;
        let client = Client::new(&url, Duration::from_secs(5), "test").unwrap();
        assert_eq!(fetch(&client, "/a", &[]).await.unwrap(), (200, Bytes::from("ok")));
        assert_eq!(fetch(&client, "/b", &[]).await.unwrap(), (200, Bytes::from("yes")));
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_line_breaks_never_reach_the_wire() {
        let (url, _, seen) = canned(
            vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel"],
            1,
        )
        .await;
        let client = Client::new(&url, Duration::from_secs(5), "test").unwrap();
        let injected = fetch(&client, "/a", &[("x-goog-upload-command", "upload\r\nx-evil: 1")]).await;
        assert_eq!(injected.unwrap_err().kind, ErrorKind::Invalid);
        assert_eq!(fetch(&client, "/a b", &[]).await.unwrap_err().kind, ErrorKind::Invalid);
        assert!(seen.lock().unwrap().is_empty());
        let resp = open(&client, "/a", &[]).await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), resp.body.bytes())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Broken);
    }

    #[tokio::test]
    async fn read_into_takes_every_chunk_that_has_arrived_and_reports_a_break_after_them() {
        let (url, conns, _) = canned(
            vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\nzz\r\n",
            ],
            3,
        )
        .await;
        let client = Client::new(&url, Duration::from_secs(5), "test").unwrap();
        let mut resp = open(&client, "/a", &[]).await.unwrap();
        let mut out = BytesMut::from(&b">"[..]);
        // The three chunks came in one write: one call takes them all, after what was there.
        assert!(matches!(resp.body.read_into(&mut out).await, Some(Ok(()))));
        assert_eq!(&out[..], b">abcdef");
        assert!(resp.body.read_into(&mut out).await.is_none());
        drop(resp);
        // The connection went back to the pool at the body's end.
        assert_eq!(fetch(&client, "/b", &[]).await.unwrap(), (200, Bytes::from("ok")));
        let mut resp = open(&client, "/c", &[]).await.unwrap();
        let mut out = BytesMut::new();
        assert!(matches!(resp.body.read_into(&mut out).await, Some(Ok(()))));
        assert_eq!(&out[..], b"abc", "the chunks before the bad size are read first");
        let err = resp.body.read_into(&mut out).await.unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Broken, "{err:?}");
        assert!(resp.body.read_into(&mut out).await.is_none());
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn https_is_spoken_and_only_a_trusted_certificate_is_accepted() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let mut req = Vec::new();
                    let mut byte = [0u8; 1024];
                    loop {
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            let Ok(n) = tls.read(&mut byte).await else { return };
                            if n == 0 {
                                return;
                            }
                            req.extend_from_slice(&byte[..n]);
                        }
                        req.clear();
                        let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nsecret\r\n0\r\n\r\n";
                        if tls.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let url = format!("https://localhost:{port}");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = Client::trusting(&url, Duration::from_secs(5), "test", roots).unwrap();
        for _ in 0..2 {
            assert_eq!(fetch(&client, "/", &[]).await.unwrap(), (200, Bytes::from("secret")));
        }
        // The Web PKI roots do not include this certificate.
        let stranger = Client::new(&url, Duration::from_secs(5), "test").unwrap();
        let err = fetch(&stranger, "/", &[]).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Connect, "{err}");
    }

    #[tokio::test]
    async fn nobody_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = Client::new(&url, Duration::from_secs(5), "test").unwrap();
        assert_eq!(fetch(&client, "/", &[]).await.unwrap_err().kind, ErrorKind::Connect);
    }
}
