//! Incremental parser for server-sent events as Gemini sends them (`data: {...}\r\n\r\n`).
//! Feed it bytes as they arrive; it yields each complete event's data without waiting for more.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event's data, if one is buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        loop {
            let nl = self.buf.iter().position(|b| *b == b'\n')?;
            let mut line = self.buf.split_to(nl + 1);
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(nl - 1);
            }
            if line.is_empty() {
                if self.has_data {
                    self.has_data = false;
                    return Some(Bytes::from(std::mem::take(&mut self.data)));
                }
                continue;
            }
            if line.starts_with(b":") {
                continue;
            }
            let (field, value) = match line.iter().position(|b| *b == b':') {
                Some(i) => {
                    let mut v = &line[i + 1..];
                    if v.first() == Some(&b' ') {
                        v.advance(1);
                    }
                    (&line[..i], v)
                }
                None => (&line[..], &b""[..]),
            };
            if field == b"data" {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        }
    }

    /// Whether bytes of an unfinished event are still buffered.
    pub fn has_partial(&self) -> bool {
        self.has_data || !self.buf.iter().all(|b| b.is_ascii_whitespace())
    }

    /// The last event when the stream ends without the blank line after it.
    pub fn finish(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() || self.has_data {
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
    }

    #[test]
    fn incomplete_event_is_held_back() {
        let mut p = SseParser::new();
        p.push(b"data: {\"a\":");
        assert!(p.next_event().is_none());
        assert!(p.has_partial());
        assert_eq!(p.finish().unwrap(), Bytes::from_static(b"{\"a\":"));
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
