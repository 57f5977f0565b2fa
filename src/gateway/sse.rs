//! Incremental parser for server-sent events as Gemini sends them (`data: {...}\r\n\r\n`).
//! Feed it bytes as they arrive; it yields each complete event's data without waiting for more.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
    /// How far into `buf` is known to hold no line feed: small chunks of a long line are not
    /// scanned again from the line's start.
    scanned: usize,
    /// The data of the event being read. One `data:` line (the usual case) is kept as the slice
    /// of the received bytes it is, without a copy; further lines are appended.
    data: Option<BytesMut>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Where received bytes go: appending here is [`SseParser::push`] without a copy between.
    pub fn input(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next complete event's data, if one is buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        loop {
            let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) else {
                self.scanned = self.buf.len();
                return None;
            };
            let nl = self.scanned + i;
            self.scanned = 0;
            let line = &self.buf[..nl];
            let len = if line.last() == Some(&b'\r') { nl - 1 } else { nl };
            let line = &line[..len];
            // Blank lines, comments and fields other than `data` are stepped over in place: only
            // a data line is split off the buffer (a view of it, not a copy).
            if line.is_empty() {
                self.buf.advance(nl + 1);
                if let Some(data) = self.data.take() {
                    return Some(data.freeze());
                }
                continue;
            }
            // `data`, `data:value` or `data: value`; anything else is another field or a comment.
            let value_start = match line.strip_prefix(b"data") {
                Some([]) => Some(4),
                Some([b':', b' ', ..]) => Some(6),
                Some([b':', ..]) => Some(5),
                _ => None,
            };
            let Some(value_start) = value_start else {
                self.buf.advance(nl + 1);
                continue;
            };
            let mut value = self.buf.split_to(nl + 1);
            value.truncate(len);
            value.advance(value_start);
            match &mut self.data {
                Some(data) => {
                    data.extend_from_slice(b"\n");
                    data.extend_from_slice(&value);
                }
                None => self.data = Some(value),
            }
        }
    }

    /// Whether bytes of an unfinished event are still buffered.
    pub fn has_partial(&self) -> bool {
        self.data.is_some() || !self.buf.iter().all(|b| b.is_ascii_whitespace())
    }

    /// The last event when the stream ends without the blank line after it.
    pub fn finish(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() || self.data.is_some() {
            self.buf.extend_from_slice(b"\n\n");
        }
        self.next_event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<String> {
        std::iter::from_fn(|| p.next_event())
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn parses_crlf_framed_events_split_anywhere() {
        let input = b"data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\r\n\r\n";
        for split in 0..input.len() {
            let mut p = SseParser::new();
            p.push(&input[..split]);
            let mut got = all(&mut p);
            p.push(&input[split..]);
            got.extend(all(&mut p));
            assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}"], "split at {split}");
        }
    }

    #[test]
    fn joins_multiline_data_and_skips_comments() {
        let mut p = SseParser::new();
        p.push(b": keep-alive\n\ndata: line1\ndata:line2\nevent: x\n\n");
        assert_eq!(all(&mut p), vec!["line1\nline2"]);
        assert!(!p.has_partial());
        // A bare `data` line adds an empty line; a field that only starts with `data` is not data.
        p.push(b"data\ndatax: no\ndata: last\n\n");
        assert_eq!(all(&mut p), vec!["\nlast"]);
    }

    #[test]
    fn incomplete_event_is_held_back() {
        let mut p = SseParser::new();
        p.push(b"data: {\"a\":");
        assert!(p.next_event().is_none());
        assert!(p.has_partial());
        assert_eq!(p.finish().unwrap(), Bytes::from_static(b"{\"a\":"));
    }

    /// A long event arriving a few bytes at a time is scanned once, not once per chunk.
    #[test]
    fn many_small_chunks_of_one_long_event() {
        let payload = "x".repeat(100_000);
        let input = format!("data: {payload}\r\n\r\n");
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for chunk in input.as_bytes().chunks(7) {
            p.push(chunk);
            got.extend(all(&mut p));
        }
        assert_eq!(got, vec![payload]);
        assert!(!p.has_partial());
    }

    /// Found by tests/fuzz.rs: a last event whose line had its LF but no blank line was lost.
    #[test]
    fn last_event_without_blank_line_is_not_lost() {
        for input in [&b"data: {\"a\":1}\n"[..], b"data: {\"a\":1}\r\n", b"data: x\ndata: y\n"] {
            let mut p = SseParser::new();
            p.push(input);
            assert!(p.next_event().is_none());
            assert!(p.has_partial());
            let want = if input.starts_with(b"data: x") {
                "x\ny"
            } else {
                "{\"a\":1}"
            };
            assert_eq!(p.finish().unwrap(), Bytes::from(want));
        }
    }
}
