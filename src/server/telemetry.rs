//! Logging set-up: `RUST_LOG` filter (default `info`), text or JSON lines.
//!
//! Text lines off a terminal (files, pipes, journald) are written by [`PlainLine`] and
//! [`PlainFields`]: the same layout as `tracing-subscriber`'s default format, at a fraction of
//! its cost per line (one line per upstream attempt adds up), with control characters in
//! values escaped so a message from Google cannot forge or colour a line. A terminal keeps the
//! default, coloured format.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let builder = builder.with_writer(unlocked_stdout());
    let _ = if json {
        builder.json().try_init()
    } else if ansi {
        builder.try_init()
    } else {
        builder.event_format(PlainLine).fmt_fields(PlainFields).try_init()
    };
}

/// Standard output without the lock of `std::io::stdout` (a copy of its descriptor). Each line
/// is handed over whole in one `write` (a pipe takes up to 4 KiB in one piece, and lines are
/// shorter), so the lock only made the serving threads wait for each other: a futex and a
/// context switch whenever two logged at once.
/// (`std::io::stdout` itself if the descriptor cannot be copied.)
fn unlocked_stdout() -> BoxMakeWriter {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => BoxMakeWriter::new(std::sync::Arc::new(std::fs::File::from(fd))),
        Err(_) => BoxMakeWriter::new(std::io::stdout),
    }
}

/// A log line: `2026-01-02T03:04:05.678901Z  INFO span{fields}: message key=value …`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainLine;

impl<S, N> FormatEvent<S, N> for PlainLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write_now(&mut writer)?;
        writer.write_str(level_label(*event.metadata().level()))?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        writer.write_char('{')?;
                        writer.write_str(fields)?;
                        writer.write_char('}')?;
                    }
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

fn level_label(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE ",
        Level::DEBUG => "DEBUG ",
        Level::INFO => " INFO ",
        Level::WARN => " WARN ",
        Level::ERROR => "ERROR ",
    }
}

/// Fields as `message key=value key="text"`, separated by spaces.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        // A span's fields go to a string of their own, new for each span: they are put together
        // in a reused buffer and handed over in one piece, so that string is allocated once
        // rather than grown field by field. (A value whose formatting logs finds the buffer
        // taken and writes directly.)
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                let result = record(Writer::new(&mut *text), fields);
                let written = writer.write_str(&text);
                if text.capacity() > MAX_SCRATCH {
                    *text = String::new();
                }
                result.and(written)
            }
            Err(_) => record(writer, fields),
        })
    }
}

fn record<R: RecordFields>(writer: Writer<'_>, fields: R) -> fmt::Result {
    let mut visitor = PlainVisitor {
        writer,
        first: true,
        result: Ok(()),
    };
    fields.record(&mut visitor);
    visitor.result
}

/// Beyond this, the scratch buffer is let go after use (a rare huge line does not stay).
const MAX_SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Writes the separator and, but for the message, `name=`.
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        let name = field.name();
        if name != "message" {
            // Raw identifiers (`r#type`) are logged by their plain name.
            self.writer.write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }

    fn record(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| value(&mut self.writer));
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let quoted = field.name() != "message";
        self.record(field, |w| {
            if quoted {
                write_quoted(w, value)
            } else {
                Escaping(w).write_str(value)
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |w| write!(Escaping(w), "{value:?}"));
    }
}

/// A string as Rust's `Debug` quotes it: in double quotes, with `"`, `\` and control
/// characters escaped.
fn write_quoted(w: &mut Writer<'_>, value: &str) -> fmt::Result {
    w.write_char('"')?;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() => "",
            _ => continue,
        };
        w.write_str(&value[start..i])?;
        if escape.is_empty() {
            write!(w, "\\u{{{:x}}}", u32::from(c))?;
        } else {
            w.write_str(escape)?;
        }
        start = i + c.len_utf8();
    }
    w.write_str(&value[start..])?;
    w.write_char('"')
}

/// Writes through, with control characters other than tab escaped (`\n`, `\x1b`,
/// `\u{85}`): a value cannot end the line or send a terminal escape sequence.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < bytes.len() {
            let b = bytes[i];
            // C1 controls are U+0080..U+009F: 0xC2 followed by 0x80..0x9F in UTF-8.
            let width = match b {
                b'\t' => 0,
                0..=0x1f | 0x7f => 1,
                0xc2 if bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) => 2,
                _ => 0,
            };
            if width == 0 {
                i += 1;
                continue;
            }
            self.0.write_str(&s[start..i])?;
            match b {
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                0xc2 => write!(self.0, "\\u{{{:x}}}", bytes[i + 1])?,
                _ => write!(self.0, "\\x{b:02x}")?,
            }
            i += width;
            start = i;
        }
        self.0.write_str(&s[start..])
    }
}

thread_local! {
    /// The second last written, and its text up to the fraction (`2026-01-02T03:04:05.`).
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

/// The current UTC time as RFC 3339 with microseconds, then a space; the date and time of day
/// are worked out once per second per thread.
fn write_now(w: &mut Writer<'_>) -> fmt::Result {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let micros = now.subsec_micros();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            *second = secs;
            *text = second_text(secs);
        }
        // Only ASCII digits and separators are ever stored.
        w.write_str(std::str::from_utf8(text.as_slice()).unwrap_or("????-??-??T??:??:??."))
    })?;
    let mut digits = *b"000000Z ";
    let mut rest = micros;
    for d in digits[..6].iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    w.write_str(std::str::from_utf8(&digits).unwrap_or("000000Z "))
}

/// `YYYY-MM-DDTHH:MM:SS.` for a count of seconds since 1970 (UTC, proleptic Gregorian).
fn second_text(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    let (year, month, day) = crate::gateway::clock::civil_date(days);
    let mut out = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, u64::from(month));
    put(8, 2, u64::from(day));
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the plain format and the library's default (without colours) write for `emit`.
    fn both(emit: impl Fn()) -> (String, String) {
        let plain = Buffer::default();
        let default = Buffer::default();
        let sink = plain.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_target(false)
            .with_ansi(false)
            .with_max_level(Level::TRACE)
            .with_writer(move || sink.clone())
            .event_format(PlainLine)
            .fmt_fields(PlainFields)
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        let sink = default.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_target(false)
            .with_ansi(false)
            .with_max_level(Level::TRACE)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        let text = |b: Buffer| String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        (text(plain), text(default))
    }

    /// A line without its timestamp.
    fn after_time(line: &str) -> &str {
        line.split_once(' ').unwrap().1
    }

    #[test]
    fn plain_lines_are_laid_out_as_the_default_format_lays_them_out() {
        let (plain, default) = both(|| {
            let span = tracing::info_span!("request", id = %"req_1", method = %"POST", path = %"/v1/chat/completions");
            let _in = span.enter();
            tracing::info!(key = %"AIza…x7Q", model = %"gemini-2.5-flash", attempt = 1u32, outcome = "success",
                latency_ms = 12u64, ok = true, delta = -3i64, "upstream attempt");
            tracing::warn!(reason = ?Some("x"), "a warning");
            tracing::error!("an error");
            let inner = tracing::debug_span!("inner");
            let _inner = inner.enter();
            tracing::trace!(n = 1u64, "nested");
        });
        let plain: Vec<&str> = plain.lines().map(after_time).collect();
        let default: Vec<&str> = default.lines().map(after_time).collect();
        assert_eq!(plain.len(), 4, "{plain:?}");
        assert_eq!(plain, default);
        assert_eq!(
            plain[0],
            " INFO request{id=req_1 method=POST path=/v1/chat/completions}: upstream attempt key=AIza…x7Q \
             model=gemini-2.5-flash attempt=1 outcome=\"success\" latency_ms=12 ok=true delta=-3"
        );
    }

    #[test]
    fn a_value_cannot_break_the_line_or_reach_the_terminal() {
        let (plain, _) = both(|| {
            tracing::info!(quoted = "a\"b\\c\nd\u{1b}[31m", shown = %"bell\u{7} esc\u{1b}[2J c1\u{85} tab\t é",
                "{}", "from Google:\n2026-01-01T00:00:00Z  INFO forged");
        });
        assert_eq!(plain.lines().count(), 1, "{plain}");
        assert!(!plain.contains('\u{1b}') && !plain.contains('\u{7}') && !plain.contains('\u{85}'));
        let line = after_time(plain.trim_end());
        assert_eq!(
            line,
            " INFO from Google:\\n2026-01-01T00:00:00Z  INFO forged quoted=\"a\\\"b\\\\c\\nd\\u{1b}[31m\" \
             shown=bell\\x07 esc\\x1b[2J c1\\u{85} tab\t é"
        );
    }

    #[test]
    fn a_value_that_logs_while_it_is_formatted_is_written_whole() {
        struct Noisy;
        impl fmt::Debug for Noisy {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::info!(inner = 1u64, "from inside");
                f.write_str("noisy")
            }
        }
        let (plain, _) = both(|| {
            let span = tracing::info_span!("outer", value = ?Noisy);
            let _in = span.enter();
            tracing::info!(value = ?Noisy, "outside");
        });
        let lines: Vec<&str> = plain.lines().map(after_time).collect();
        // (tracing drops an event sent from inside the subscriber; the point is that nothing
        // breaks and the outer line is whole.)
        assert!(
            lines.contains(&" INFO outer{value=noisy}: outside value=noisy"),
            "{lines:?}"
        );
    }

    #[test]
    fn the_timestamp_is_rfc3339_in_utc_with_microseconds() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00."),
            (951_782_400, "2000-02-29T00:00:00."),
            (1_796_321_159, "2026-12-03T18:05:59."),
            (4_107_542_399, "2100-02-28T23:59:59."),
            (253_402_300_799, "9999-12-31T23:59:59."),
        ] {
            assert_eq!(std::str::from_utf8(&second_text(secs)).unwrap(), text, "{secs}");
        }
        let (plain, _) = both(|| tracing::info!("now"));
        let stamp = plain.split_once(' ').unwrap().0;
        let parsed = chrono_free_parse(stamp);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(parsed) <= 2, "{stamp} is not now");
    }

    /// Seconds since 1970 of `YYYY-MM-DDTHH:MM:SS.ffffffZ`, found by search over
    /// [`second_text`] (which the table above checks against known dates).
    fn chrono_free_parse(stamp: &str) -> u64 {
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(stamp.ends_with('Z') && stamp[20..26].bytes().all(|b| b.is_ascii_digit()));
        let (mut lo, mut hi) = (0u64, 253_402_300_799);
        let want = &stamp.as_bytes()[..20];
        while lo < hi {
            let mid = (lo + hi) / 2;
            if second_text(mid).as_slice() < want {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        assert_eq!(second_text(lo).as_slice(), want, "{stamp}");
        lo
    }
}
