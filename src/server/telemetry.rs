//! Logging set-up: `RUST_LOG` filter (default `info`), text or JSON lines. Lines go to stdout in
//! batches from a background thread, so a request never waits on a write of its own.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Log lines not yet written.
#[derive(Default)]
struct Pending {
    buf: Mutex<Vec<u8>>,
    ready: Condvar,
}

/// Beyond this many buffered bytes the thread that logs writes them itself: the writer thread is
/// behind, and memory stays bounded.
const MAX_PENDING: usize = 1 << 20;
/// How long the writer thread lets lines gather after the first one.
const GATHER: Duration = Duration::from_millis(5);

static PENDING: OnceLock<Arc<Pending>> = OnceLock::new();

impl Pending {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn write_out(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// The fmt layer's writer: appends each formatted line to the shared buffer.
struct Batched(Arc<Pending>);

struct Line<'a>(&'a Pending);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.0.lock();
        let was_empty = buf.is_empty();
        buf.extend_from_slice(bytes);
        if buf.len() > MAX_PENDING {
            let full = std::mem::take(&mut *buf);
            drop(buf);
            write_out(&full);
        } else if was_empty {
            drop(buf);
            self.0.ready.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(&self.0)
    }
}

fn writer_thread(pending: Arc<Pending>) {
    let mut spare = Vec::new();
    loop {
        {
            let mut buf = pending.lock();
            while buf.is_empty() {
                buf = pending.ready.wait(buf).unwrap_or_else(|e| e.into_inner());
            }
        }
        std::thread::sleep(GATHER);
        let mut batch = std::mem::replace(&mut *pending.lock(), std::mem::take(&mut spare));
        write_out(&batch);
        batch.clear();
        batch.shrink_to(64 * 1024);
        spare = batch;
    }
}

/// Writes the lines still buffered (call before the process exits).
pub fn flush() {
    if let Some(pending) = PENDING.get() {
        let rest = std::mem::take(&mut *pending.lock());
        write_out(&rest);
    }
}

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let pending = PENDING.get_or_init(Arc::default).clone();
    let spawned = std::thread::Builder::new().name("gb-log".into()).spawn({
        let pending = pending.clone();
        move || writer_thread(pending)
    });
    let writer = match spawned {
        Ok(_) => BoxMakeWriter::new(Batched(pending)),
        // No thread to write batches: every line is written at once.
        Err(_) => BoxMakeWriter::new(std::io::stdout),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
