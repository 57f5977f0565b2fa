//! Embedded persistence (SQLite under `DATA_DIR`): keys added at run time and their operator
//! state, keys pinned to an egress proxy, per-key lifetime counters, which key owns each uploaded
//! file and cached content, and the request log.
//!
//! All writes go through one writer thread. Key changes are written before the caller is told
//! they succeeded (a crash never loses a key); log rows are queued without blocking the request
//! and written in batches (a crash loses at most the last batch).

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::metrics::Attempts;
use crate::api::admin::{HourStats, KeyStats, LogAttempt, LogDetail, LogEntry, LogPage, LogQuery};

/// A key as stored.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub fingerprint: String,
    pub key: String,
    /// Added through the admin API (as opposed to listed in `GEMINI_API_KEYS`).
    pub added_at_runtime: bool,
    pub manual_disabled: bool,
    pub removed: bool,
}

/// Lifetime counters of one key.
#[derive(Debug, Clone, Default)]
pub struct StoredCounters {
    pub fingerprint: String,
    pub requests: u64,
    pub failures: u64,
    pub tokens: u64,
}

/// One row of the request log.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub at: SystemTime,
    pub route: String,
    pub model: String,
    pub key: String,
    pub status: u16,
    pub latency_ms: u64,
    pub tokens: u64,
    pub error_class: String,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// Google's message (keys masked, capped), or the gateway's own error; empty on success.
    pub message: String,
    /// The upstream attempts in order (masked keys).
    pub attempts: Attempts,
}

/// A file or cached content and the key that owns it ([`super::owners`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub name: String,
    /// Fingerprint of the owning key.
    pub key: String,
    pub token: Option<String>,
    pub mime: Option<String>,
    /// Unix seconds.
    pub expires: u64,
    pub created: u64,
}

/// A key pinned by an operator to one egress proxy, named by its `host:port` (indexes shift
/// when `GEMINI_PROXIES` changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPin {
    pub fingerprint: String,
    pub proxy: String,
}

enum Cmd {
    Log(LogRow),
    Resource(StoredResource),
    ForgetResource(String),
    Key(StoredKey, SyncSender<Result<(), String>>),
    /// A pin set (`Some` proxy) or removed (`None`).
    Pin(String, Option<String>, SyncSender<Result<(), String>>),
    Counters(Vec<StoredCounters>),
    Flush(SyncSender<()>),
}

/// Handle to the writer thread.
#[derive(Debug, Clone)]
pub struct Store {
    tx: SyncSender<Cmd>,
    path: std::sync::Arc<std::path::PathBuf>,
}

/// What was stored when the gateway last ran.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub keys: Vec<StoredKey>,
    pub counters: Vec<StoredCounters>,
    /// Owned resources that have not expired.
    pub resources: Vec<StoredResource>,
    pub pins: Vec<StoredPin>,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS keys (
             fingerprint TEXT PRIMARY KEY, key TEXT NOT NULL, added_at_runtime INTEGER NOT NULL,
             manual_disabled INTEGER NOT NULL, removed INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE IF NOT EXISTS proxy_pins (fingerprint TEXT PRIMARY KEY, proxy TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS counters (
             fingerprint TEXT PRIMARY KEY, requests INTEGER NOT NULL, failures INTEGER NOT NULL, tokens INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS request_log (
             at INTEGER NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL, key TEXT NOT NULL, status INTEGER NOT NULL,
             latency_ms INTEGER NOT NULL, tokens INTEGER NOT NULL, error_class TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS resources (
             name TEXT PRIMARY KEY, key TEXT NOT NULL, token TEXT, mime TEXT, expires INTEGER NOT NULL,
             created INTEGER NOT NULL);",
    )?;
    migrate(&conn)?;
    Ok(conn)
}

/// Columns added to the request log after its first version (added to an older database).
const LOG_COLUMNS: &[(&str, &str)] = &[
    ("request_id", "TEXT NOT NULL DEFAULT ''"),
    ("message", "TEXT NOT NULL DEFAULT ''"),
    ("attempts", "TEXT NOT NULL DEFAULT ''"),
];

/// The log's indexes: time, and each filter followed by time, so every filtered page is an
/// index range walked newest first (the row id, implicitly last, breaks ties). Status and
/// error class are filtered to find failures: their indexes hold only failed rows (a
/// successful row, most of the log, costs two index inserts fewer), and a filter on success
/// walks the time index instead. [`page_sql`] repeats each index's condition so SQLite can
/// use it.
const LOG_INDEXES: &[(&str, &str, Option<&str>)] = &[
    ("request_log_at", "at", None),
    ("request_log_key_at", "key, at", None),
    ("request_log_model_at", "model, at", None),
    ("request_log_route_at", "route, at", None),
    ("request_log_failed_status_at", "status, at", Some(FAILED_STATUS)),
    ("request_log_failed_class_at", "error_class, at", Some(FAILED_CLASS)),
];

/// The conditions of the partial indexes, word for word as the queries repeat them.
const FAILED_STATUS: &str = "status <> 200";
const FAILED_CLASS: &str = "error_class <> ''";

/// Indexes of earlier versions, replaced by the partial ones above.
const OLD_LOG_INDEXES: &[&str] = &["request_log_status_at", "request_log_class_at"];

/// Brings a database written by an older version up to date: missing columns and indexes.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let mut have = Vec::new();
    {
        let mut stmt = conn.prepare("PRAGMA table_info(request_log)")?;
        let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
        for name in names {
            have.push(name?);
        }
    }
    for (name, decl) in LOG_COLUMNS {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE request_log ADD COLUMN {name} {decl}"))?;
        }
    }
    for name in OLD_LOG_INDEXES {
        conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
    }
    for (name, columns, only) in LOG_INDEXES {
        let only = only.map(|w| format!(" WHERE {w}")).unwrap_or_default();
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS {name} ON request_log({columns}){only}"
        ))?;
    }
    Ok(())
}

/// A read-only connection for queries: it never takes the writer's lock (WAL readers see the
/// last committed batch).
fn open_reader(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(2)).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// A log cursor: the `at` and row id of the last row of a page, as `at.id`.
fn parse_cursor(cursor: &str) -> Option<(i64, i64)> {
    let (at, id) = cursor.split_once('.')?;
    Some((at.parse().ok()?, id.parse().ok()?))
}

/// Default and maximum rows of a log page.
pub const LOG_PAGE_DEFAULT: u32 = 50;
pub const LOG_PAGE_MAX: u32 = 500;

const ENTRY_COLUMNS: &str =
    "rowid, at, request_id, route, model, key, status, latency_ms, tokens, error_class, json_array_length(CASE attempts WHEN '' THEN '[]' ELSE attempts END)";

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        id: r.get(0)?,
        at: r.get::<_, i64>(1)?.max(0) as u64,
        request_id: r.get(2)?,
        route: r.get(3)?,
        model: r.get(4)?,
        key: r.get(5)?,
        status: r.get::<_, i64>(6)?.clamp(0, i64::from(u16::MAX)) as u16,
        latency_ms: r.get::<_, i64>(7)?.max(0) as u64,
        tokens: r.get::<_, i64>(8)?.max(0) as u64,
        error_class: r.get(9)?,
        attempts: r.get::<_, Option<i64>>(10)?.unwrap_or(0).max(0) as u32,
    })
}

/// The SQL and parameters of one log page (newest first, keyset-paged on `(at, rowid)`).
fn page_sql(q: &LogQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM request_log WHERE 1");
    let mut args: Vec<Value> = Vec::new();
    let mut eq = |sql: &mut String, column: &str, v: Value| {
        args.push(v);
        sql.push_str(&format!(" AND {column} = ?{}", args.len()));
    };
    if let Some(k) = q.key.as_ref().filter(|s| !s.is_empty()) {
        eq(&mut sql, "key", Value::Text(k.clone()));
    }
    if let Some(m) = q.model.as_ref().filter(|s| !s.is_empty()) {
        eq(&mut sql, "model", Value::Text(m.clone()));
    }
    if let Some(r) = q.route.as_ref().filter(|s| !s.is_empty()) {
        eq(&mut sql, "route", Value::Text(r.clone()));
    }
    if let Some(st) = q.status {
        eq(&mut sql, "status", Value::Integer(i64::from(st)));
        if st != 200 {
            sql.push_str(&format!(" AND {FAILED_STATUS}"));
        }
    }
    if let Some(c) = q.error_class.as_ref() {
        // `success` (or nothing) selects the requests without an error class.
        let c = if c == "success" { "" } else { c.as_str() };
        eq(&mut sql, "error_class", Value::Text(c.to_string()));
        if !c.is_empty() {
            sql.push_str(&format!(" AND {FAILED_CLASS}"));
        }
    }
    if let Some(from) = q.from {
        args.push(Value::Integer(from.min(i64::MAX as u64) as i64));
        sql.push_str(&format!(" AND at >= ?{}", args.len()));
    }
    if let Some(to) = q.to {
        args.push(Value::Integer(to.min(i64::MAX as u64) as i64));
        sql.push_str(&format!(" AND at < ?{}", args.len()));
    }
    if let Some((at, id)) = q.before.as_deref().and_then(parse_cursor) {
        args.push(Value::Integer(at));
        args.push(Value::Integer(id));
        sql.push_str(&format!(" AND (at, rowid) < (?{}, ?{})", args.len() - 1, args.len()));
    }
    let limit = q.limit.unwrap_or(LOG_PAGE_DEFAULT).clamp(1, LOG_PAGE_MAX);
    // One row more than asked tells whether there is a next page.
    args.push(Value::Integer(i64::from(limit) + 1));
    sql.push_str(&format!(" ORDER BY at DESC, rowid DESC LIMIT ?{}", args.len()));
    (sql, args)
}

fn query_page(conn: &Connection, q: &LogQuery) -> rusqlite::Result<LogPage> {
    let limit = q.limit.unwrap_or(LOG_PAGE_DEFAULT).clamp(1, LOG_PAGE_MAX) as usize;
    let (sql, args) = page_sql(q);
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt
        .query_map(rusqlite::params_from_iter(args), entry)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| format!("{}.{}", r.at, r.id))
    } else {
        None
    };
    Ok(LogPage { rows, next })
}

fn query_detail(conn: &Connection, id: i64) -> rusqlite::Result<Option<LogDetail>> {
    conn.query_row(
        &format!("SELECT {ENTRY_COLUMNS}, message, attempts FROM request_log WHERE rowid = ?1"),
        [id],
        |r| {
            let attempts: String = r.get(12)?;
            Ok(LogDetail {
                entry: entry(r)?,
                message: r.get(11)?,
                attempts: serde_json::from_str::<Vec<LogAttempt>>(&attempts).unwrap_or_default(),
            })
        },
    )
    .optional()
}

/// A key's last 24 hours in hourly buckets ending with the current hour.
fn query_key_stats(conn: &Connection, masked: &str, now: i64) -> rusqlite::Result<KeyStats> {
    let first_hour = now / 3600 - 23;
    let mut hours: Vec<HourStats> = (0..24)
        .map(|i| HourStats {
            start: ((first_hour + i) * 3600).max(0) as u64,
            requests: 0,
            errors: 0,
        })
        .collect();
    let mut by_class: std::collections::BTreeMap<String, u64> = Default::default();
    let mut stmt = conn.prepare(
        "SELECT at / 3600, error_class, count(*) FROM request_log WHERE key = ?1 AND at >= ?2 GROUP BY 1, 2",
    )?;
    let rows = stmt.query_map(params![masked, first_hour * 3600], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (hour, class, n) = row?;
        let n = n.max(0) as u64;
        let Some(bucket) = usize::try_from(hour - first_hour).ok().and_then(|i| hours.get_mut(i)) else {
            continue;
        };
        bucket.requests += n;
        if !class.is_empty() {
            bucket.errors += n;
            *by_class.entry(class).or_insert(0) += n;
        }
    }
    let mut errors_by_class: Vec<(String, u64)> = by_class.into_iter().collect();
    errors_by_class.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(KeyStats {
        id: String::new(),
        masked: masked.to_string(),
        requests: hours.iter().map(|h| h.requests).sum(),
        errors: hours.iter().map(|h| h.errors).sum(),
        errors_by_class,
        hours,
    })
}

impl Store {
    /// Opens (or creates) the database and starts the writer thread.
    pub fn open(data_dir: &Path, retention: Duration, max_rows: u64) -> Result<(Store, Snapshot), String> {
        std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create DATA_DIR {}: {e}", data_dir.display()))?;
        let path = data_dir.join("gemini-balance.db");
        private_file(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let conn = open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        for side in ["gemini-balance.db-wal", "gemini-balance.db-shm"] {
            let _ = restrict(&data_dir.join(side));
        }
        let snapshot = load(&conn).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (tx, rx) = mpsc::sync_channel(16_384);
        std::thread::Builder::new()
            .name("gb-store".into())
            .spawn(move || writer(conn, rx, retention, max_rows))
            .map_err(|e| format!("cannot start the store writer: {e}"))?;
        Ok((
            Store {
                tx,
                path: std::sync::Arc::new(path),
            },
            snapshot,
        ))
    }

    /// Queues a log row; never blocks (a full queue drops the row and says so in the log).
    pub fn log(&self, row: LogRow) {
        if self.tx.try_send(Cmd::Log(row)).is_err() {
            tracing::warn!("request log queue full; a log row was dropped");
        }
    }

    /// Writes a key change and waits until it is on disk.
    pub async fn save_key(&self, key: StoredKey) -> Result<(), String> {
        self.write(|ack| Cmd::Key(key, ack)).await
    }

    /// Writes a key's proxy pin (`None`: removes it) and waits until it is on disk.
    pub async fn save_pin(&self, fingerprint: String, proxy: Option<String>) -> Result<(), String> {
        self.write(|ack| Cmd::Pin(fingerprint, proxy, ack)).await
    }

    async fn write(
        &self,
        cmd: impl FnOnce(SyncSender<Result<(), String>>) -> Cmd + Send + 'static,
    ) -> Result<(), String> {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let (ack_tx, ack_rx) = mpsc::sync_channel(1);
            tx.send(cmd(ack_tx))
                .map_err(|_| "the store writer stopped".to_string())?;
            ack_rx.recv().map_err(|_| "the store writer stopped".to_string())?
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Queues an owned resource (written with the next batch).
    pub fn save_resource(&self, resource: StoredResource) {
        if self.tx.try_send(Cmd::Resource(resource)).is_err() {
            tracing::warn!("store queue full; a file ownership record was not written");
        }
    }

    pub fn forget_resource(&self, name: String) {
        let _ = self.tx.try_send(Cmd::ForgetResource(name));
    }

    /// Queues a snapshot of the per-key counters.
    pub fn save_counters(&self, counters: Vec<StoredCounters>) {
        let _ = self.tx.try_send(Cmd::Counters(counters));
    }

    /// Waits until everything queued so far is written.
    pub async fn flush(&self) {
        let tx = self.tx.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let (ack_tx, ack_rx) = mpsc::sync_channel(1);
            if tx.send(Cmd::Flush(ack_tx)).is_ok() {
                let _ = ack_rx.recv();
            }
        })
        .await;
    }

    /// Runs a read-only query off the async runtime, on a connection of its own.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open_reader(&path)?;
            f(&conn).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// One page of the request log, newest first.
    pub async fn log_page(&self, q: LogQuery) -> Result<LogPage, String> {
        self.read(move |conn| query_page(conn, &q)).await
    }

    /// One logged request with its message and attempts.
    pub async fn log_detail(&self, id: i64) -> Result<Option<LogDetail>, String> {
        self.read(move |conn| query_detail(conn, id)).await
    }

    /// A key's (by its masked name) requests and errors over the last 24 hours.
    pub async fn key_stats(&self, masked: String) -> Result<KeyStats, String> {
        let now = unix(SystemTime::now());
        self.read(move |conn| query_key_stats(conn, &masked, now)).await
    }

    /// Reads the newest log rows (for tests and the admin view).
    pub fn recent_log(data_dir: &Path, limit: usize) -> Result<Vec<LogRow>, String> {
        let conn = Connection::open(data_dir.join("gemini-balance.db")).map_err(|e| e.to_string())?;
        let mut stmt = conn
            .prepare("SELECT at, route, model, key, status, latency_ms, tokens, error_class, request_id, message FROM request_log ORDER BY rowid DESC LIMIT ?1")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(LogRow {
                    at: UNIX_EPOCH + Duration::from_secs(r.get::<_, i64>(0)?.max(0) as u64),
                    route: r.get(1)?,
                    model: r.get(2)?,
                    key: r.get(3)?,
                    status: r.get::<_, i64>(4)? as u16,
                    latency_ms: r.get::<_, i64>(5)? as u64,
                    tokens: r.get::<_, i64>(6)? as u64,
                    error_class: r.get(7)?,
                    request_id: r.get(8)?,
                    message: r.get(9)?,
                    attempts: Attempts::default(),
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
    }
}

fn load(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let mut keys = Vec::new();
    let mut stmt =
        conn.prepare("SELECT fingerprint, key, added_at_runtime, manual_disabled, removed FROM keys ORDER BY rowid")?;
    for row in stmt.query_map([], |r| {
        Ok(StoredKey {
            fingerprint: r.get(0)?,
            key: r.get(1)?,
            added_at_runtime: r.get::<_, i64>(2)? != 0,
            manual_disabled: r.get::<_, i64>(3)? != 0,
            removed: r.get::<_, i64>(4)? != 0,
        })
    })? {
        keys.push(row?);
    }
    let mut counters = Vec::new();
    let mut stmt = conn.prepare("SELECT fingerprint, requests, failures, tokens FROM counters")?;
    for row in stmt.query_map([], |r| {
        Ok(StoredCounters {
            fingerprint: r.get(0)?,
            requests: r.get::<_, i64>(1)? as u64,
            failures: r.get::<_, i64>(2)? as u64,
            tokens: r.get::<_, i64>(3)? as u64,
        })
    })? {
        counters.push(row?);
    }
    let now = unix(SystemTime::now());
    conn.execute("DELETE FROM resources WHERE expires <= ?1", [now])?;
    let mut resources = Vec::new();
    let mut stmt = conn.prepare("SELECT name, key, token, mime, expires, created FROM resources")?;
    for row in stmt.query_map([], |r| {
        Ok(StoredResource {
            name: r.get(0)?,
            key: r.get(1)?,
            token: r.get(2)?,
            mime: r.get(3)?,
            expires: r.get::<_, i64>(4)?.max(0) as u64,
            created: r.get::<_, i64>(5)?.max(0) as u64,
        })
    })? {
        resources.push(row?);
    }
    let mut pins = Vec::new();
    let mut stmt = conn.prepare("SELECT fingerprint, proxy FROM proxy_pins ORDER BY rowid")?;
    for row in stmt.query_map([], |r| {
        Ok(StoredPin {
            fingerprint: r.get(0)?,
            proxy: r.get(1)?,
        })
    })? {
        pins.push(row?);
    }
    Ok(Snapshot {
        keys,
        counters,
        resources,
        pins,
    })
}

fn write_logs(conn: &mut Connection, rows: &mut Vec<LogRow>) {
    if rows.is_empty() {
        return;
    }
    let result = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO request_log (at, route, model, key, status, latency_ms, tokens, error_class, request_id, message, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for r in rows.iter() {
                let attempts = if r.attempts.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&r.attempts.iter().collect::<Vec<_>>()).unwrap_or_default()
                };
                stmt.execute(params![
                    unix(r.at),
                    r.route,
                    r.model,
                    r.key,
                    r.status,
                    r.latency_ms as i64,
                    r.tokens as i64,
                    r.error_class,
                    r.request_id,
                    r.message,
                    attempts
                ])?;
            }
        }
        tx.commit()
    })();
    if let Err(e) = result {
        tracing::error!(error = %e, rows = rows.len(), "could not write the request log");
    }
    rows.clear();
}

/// Creates the database file readable by its owner only (it holds the keys), or tightens an
/// existing one.
fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
    }
    restrict(path)
}

fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let _ = path;
    Ok(())
}

/// Deletes old log rows in batches (each its own short transaction, so the writer never stalls
/// on one huge delete): rows older than the retention, then the oldest beyond `max_rows`.
fn prune(conn: &Connection, retention: Duration, max_rows: u64) {
    const BATCH: i64 = 5_000;
    let cutoff = unix(SystemTime::now()) - retention.as_secs() as i64;
    let _ = conn.execute("DELETE FROM resources WHERE expires <= ?1", [unix(SystemTime::now())]);
    for _ in 0..1_000 {
        match conn.execute(
            "DELETE FROM request_log WHERE rowid IN (SELECT rowid FROM request_log WHERE at < ?1 ORDER BY rowid LIMIT ?2)",
            params![cutoff, BATCH],
        ) {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => break,
            Err(e) => {
                tracing::error!(error = %e, "could not prune the request log");
                return;
            }
        }
    }
    // Row ids grow by one per row, so their span is the row count without a table scan.
    let span: rusqlite::Result<(Option<i64>, Option<i64>)> =
        conn.query_row("SELECT min(rowid), max(rowid) FROM request_log", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        });
    if let Ok((Some(lo), Some(hi))) = span {
        let excess = (hi - lo + 1) - max_rows as i64;
        let mut left = excess;
        while left > 0 {
            let n = left.min(BATCH);
            match conn.execute(
                "DELETE FROM request_log WHERE rowid IN (SELECT rowid FROM request_log ORDER BY rowid LIMIT ?1)",
                [n],
            ) {
                Ok(0) => break,
                Ok(done) => left -= done as i64,
                Err(e) => {
                    tracing::error!(error = %e, "could not prune the request log");
                    return;
                }
            }
        }
    }
}

/// How long the writer naps after taking log rows before it looks for more.
const LOG_NAP: Duration = Duration::from_millis(20);

fn writer(mut conn: Connection, rx: Receiver<Cmd>, retention: Duration, max_rows: u64) {
    let mut pending: Vec<LogRow> = Vec::new();
    let mut last_flush = Instant::now();
    let mut last_prune = Instant::now()
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or_else(Instant::now);
    let mut logged_since_nap = false;
    loop {
        let cmd = match rx.try_recv() {
            Ok(cmd) => Ok(cmd),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            // Rows came in: nap instead of waiting on the channel. While the writer naps no
            // sender finds it waiting, so a busy gateway pays one thread wake-up per nap rather
            // than one per request; what queued meanwhile is taken without blocking.
            Err(TryRecvError::Empty) if logged_since_nap => {
                logged_since_nap = false;
                std::thread::sleep(LOG_NAP);
                continue;
            }
            Err(TryRecvError::Empty) => rx.recv_timeout(Duration::from_millis(500)),
        };
        match cmd {
            Ok(Cmd::Log(row)) => {
                logged_since_nap = true;
                pending.push(row);
            }
            Ok(Cmd::Key(k, ack)) => {
                write_logs(&mut conn, &mut pending);
                let result = conn
                    .execute(
                        "INSERT INTO keys (fingerprint, key, added_at_runtime, manual_disabled, removed) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(fingerprint) DO UPDATE SET key = excluded.key, added_at_runtime = excluded.added_at_runtime,
                         manual_disabled = excluded.manual_disabled, removed = excluded.removed",
                        params![k.fingerprint, k.key, k.added_at_runtime as i64, k.manual_disabled as i64, k.removed as i64],
                    )
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let _ = ack.send(result);
            }
            Ok(Cmd::Pin(fingerprint, proxy, ack)) => {
                let result = match proxy {
                    Some(proxy) => conn.execute(
                        "INSERT INTO proxy_pins (fingerprint, proxy) VALUES (?1, ?2)
                         ON CONFLICT(fingerprint) DO UPDATE SET proxy = excluded.proxy",
                        params![fingerprint, proxy],
                    ),
                    None => conn.execute("DELETE FROM proxy_pins WHERE fingerprint = ?1", params![fingerprint]),
                };
                let _ = ack.send(result.map(|_| ()).map_err(|e| e.to_string()));
            }
            Ok(Cmd::Counters(list)) => {
                let result = (|| -> rusqlite::Result<()> {
                    let tx = conn.transaction()?;
                    for c in &list {
                        tx.execute(
                            "INSERT INTO counters (fingerprint, requests, failures, tokens) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT(fingerprint) DO UPDATE SET requests = excluded.requests, failures = excluded.failures, tokens = excluded.tokens",
                            params![c.fingerprint, c.requests as i64, c.failures as i64, c.tokens as i64],
                        )?;
                    }
                    tx.commit()
                })();
                if let Err(e) = result {
                    tracing::error!(error = %e, "could not write key counters");
                }
            }
            Ok(Cmd::Resource(r)) => {
                let result = conn.execute(
                    "INSERT INTO resources (name, key, token, mime, expires, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(name) DO UPDATE SET key = excluded.key, token = excluded.token, mime = excluded.mime,
                     expires = excluded.expires",
                    params![r.name, r.key, r.token, r.mime, r.expires as i64, r.created as i64],
                );
                if let Err(e) = result {
                    tracing::error!(error = %e, "could not write a file ownership record");
                }
            }
            Ok(Cmd::ForgetResource(name)) => {
                let _ = conn.execute("DELETE FROM resources WHERE name = ?1", [name]);
            }
            Ok(Cmd::Flush(ack)) => {
                write_logs(&mut conn, &mut pending);
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                write_logs(&mut conn, &mut pending);
                return;
            }
        }
        if pending.len() >= 500 || (!pending.is_empty() && last_flush.elapsed() >= Duration::from_millis(500)) {
            write_logs(&mut conn, &mut pending);
            last_flush = Instant::now();
        }
        if last_prune.elapsed() >= Duration::from_secs(60) {
            prune(&conn, retention, max_rows);
            last_prune = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: SystemTime) -> LogRow {
        LogRow {
            at,
            route: "/v1/chat/completions".into(),
            model: "m".into(),
            key: "AIza…abc".into(),
            status: 200,
            latency_ms: 1,
            tokens: 0,
            error_class: String::new(),
            request_id: String::new(),
            message: String::new(),
            attempts: Attempts::default(),
        }
    }

    #[test]
    fn pruning_keeps_retention_and_row_cap_in_batches() {
        let dir = std::env::temp_dir().join(format!("gb-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gemini-balance.db");
        private_file(&path).unwrap();
        let mut conn = open(&path).unwrap();
        let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
        let mut rows: Vec<LogRow> = (0..7_000).map(|_| row(old)).collect();
        rows.extend((0..12_000).map(|_| row(SystemTime::now())));
        write_logs(&mut conn, &mut rows);
        prune(&conn, Duration::from_secs(86_400), 10_000);
        let (count, oldest): (i64, i64) = conn
            .query_row("SELECT count(*), min(at) FROM request_log", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(count, 10_000);
        assert!(oldest > unix(old));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn temp_db(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("gb-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gemini-balance.db");
        (dir, path)
    }

    /// `n` rows spread over the last `n` seconds (newest last), over 20 keys, 5 models, 4
    /// routes, statuses and error classes.
    fn fill(conn: &mut Connection, n: usize) {
        const CLASSES: &[(u16, &str)] = &[
            (200, ""),
            (200, ""),
            (200, ""),
            (429, "rate_limited"),
            (502, "server_error"),
            (400, "client_error"),
        ];
        const ROUTES: &[&str] = &[
            "/v1/chat/completions",
            "/v1beta/models/{name}",
            "/v1/embeddings",
            "/v1/responses",
        ];
        let now = unix(SystemTime::now());
        let mut rows = Vec::with_capacity(10_000);
        for i in 0..n {
            let (status, class) = CLASSES[i % CLASSES.len()];
            let mut attempts = Attempts::default();
            attempts.push(crate::gateway::metrics::AttemptRecord {
                key: format!("AIza…k{:02}", i % 20),
                outcome: if class.is_empty() { "success" } else { "rate_limited" },
                status,
                latency_ms: 10,
            });
            rows.push(LogRow {
                at: UNIX_EPOCH + Duration::from_secs((now - (n - i) as i64).max(0) as u64),
                route: ROUTES[i % ROUTES.len()].into(),
                model: format!("gemini-{}", i % 5),
                key: format!("AIza…k{:02}", i % 20),
                status,
                latency_ms: (i % 900) as u64,
                tokens: 10,
                error_class: class.into(),
                request_id: format!("req_{i}"),
                message: if class.is_empty() {
                    String::new()
                } else {
                    "quota exceeded".into()
                },
                attempts,
            });
            if rows.len() == 10_000 {
                write_logs(conn, &mut rows);
            }
        }
        write_logs(conn, &mut rows);
    }

    /// The filter queries the admin log view runs, with a cursor a few pages deep.
    fn filter_queries(conn: &Connection) -> Vec<(&'static str, LogQuery)> {
        let (at, id): (i64, i64) = conn
            .query_row(
                "SELECT at, rowid FROM request_log ORDER BY rowid DESC LIMIT 1 OFFSET 5000",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap_or((0, 0));
        let now = unix(SystemTime::now()) as u64;
        let base = LogQuery::default();
        vec![
            ("newest", base.clone()),
            (
                "deep page",
                LogQuery {
                    before: Some(format!("{at}.{id}")),
                    ..base.clone()
                },
            ),
            (
                "time range",
                LogQuery {
                    from: Some(now - 3600),
                    to: Some(now - 1800),
                    ..base.clone()
                },
            ),
            (
                "key",
                LogQuery {
                    key: Some("AIza…k07".into()),
                    ..base.clone()
                },
            ),
            (
                "key, deep",
                LogQuery {
                    key: Some("AIza…k07".into()),
                    before: Some(format!("{at}.{id}")),
                    ..base.clone()
                },
            ),
            (
                "model",
                LogQuery {
                    model: Some("gemini-3".into()),
                    ..base.clone()
                },
            ),
            (
                "route",
                LogQuery {
                    route: Some("/v1/embeddings".into()),
                    ..base.clone()
                },
            ),
            (
                "status",
                LogQuery {
                    status: Some(502),
                    ..base.clone()
                },
            ),
            (
                "error class",
                LogQuery {
                    error_class: Some("rate_limited".into()),
                    ..base.clone()
                },
            ),
            (
                "key + time range",
                LogQuery {
                    key: Some("AIza…k03".into()),
                    from: Some(now - 7200),
                    ..base.clone()
                },
            ),
            (
                "status 200",
                LogQuery {
                    status: Some(200),
                    ..base.clone()
                },
            ),
            (
                "success",
                LogQuery {
                    error_class: Some("success".into()),
                    ..base.clone()
                },
            ),
        ]
    }

    fn plan(conn: &Connection, q: &LogQuery) -> String {
        let (sql, args) = page_sql(q);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap();
        rows.collect::<rusqlite::Result<Vec<_>>>().unwrap().join("; ")
    }

    #[test]
    fn every_log_filter_walks_an_index_in_time_order() {
        let (dir, path) = temp_db("plan");
        let mut conn = open(&path).unwrap();
        fill(&mut conn, 200_000);
        for (name, q) in filter_queries(&conn) {
            let plan = plan(&conn, &q);
            // Failures are found through the indexes that hold only failed rows.
            let partial = match name {
                "status" => Some("request_log_failed_status_at"),
                "error class" => Some("request_log_failed_class_at"),
                _ => None,
            };
            if let Some(index) = partial {
                assert!(plan.contains(index), "{name}: {plan}");
            }
            assert!(
                plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX"),
                "{name}: {plan}"
            );
            assert!(
                !plan.contains("TEMP B-TREE"),
                "{name} sorts instead of walking an index: {plan}"
            );
            assert!(
                !plan.contains("SCAN request_log") || plan.contains("USING INDEX"),
                "{name}: {plan}"
            );
        }
        let stats_plan: String = {
            let mut stmt = conn
                .prepare("EXPLAIN QUERY PLAN SELECT at / 3600, error_class, count(*) FROM request_log WHERE key = ?1 AND at >= ?2 GROUP BY 1, 2")
                .unwrap();
            let rows = stmt
                .query_map(params!["AIza…k01", 0], |r| r.get::<_, String>(3))
                .unwrap();
            rows.collect::<rusqlite::Result<Vec<_>>>().unwrap().join("; ")
        };
        assert!(stats_plan.contains("request_log_key_at"), "{stats_plan}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_pages_are_disjoint_and_filters_narrow() {
        let (dir, path) = temp_db("pages");
        let mut conn = open(&path).unwrap();
        fill(&mut conn, 1_000);
        let mut seen = std::collections::HashSet::new();
        let mut q = LogQuery {
            limit: Some(70),
            ..LogQuery::default()
        };
        loop {
            let page = query_page(&conn, &q).unwrap();
            for r in &page.rows {
                assert!(seen.insert(r.id), "row {} on two pages", r.id);
            }
            match page.next {
                Some(next) => q.before = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 1_000);
        let page = query_page(
            &conn,
            &LogQuery {
                key: Some("AIza…k07".into()),
                limit: Some(500),
                ..LogQuery::default()
            },
        )
        .unwrap();
        assert_eq!(page.rows.len(), 50);
        assert!(page.rows.iter().all(|r| r.key == "AIza…k07" && r.attempts == 1));
        assert!(page.rows.windows(2).all(|w| (w[0].at, w[0].id) > (w[1].at, w[1].id)));
        // Status and class filters, on failures (partial indexes) and on success (time index),
        // find every matching row and no other.
        let filters: [(LogQuery, &str); 4] = [
            (
                LogQuery {
                    status: Some(200),
                    ..LogQuery::default()
                },
                "status = 200",
            ),
            (
                LogQuery {
                    status: Some(502),
                    ..LogQuery::default()
                },
                "status = 502",
            ),
            (
                LogQuery {
                    error_class: Some("success".into()),
                    ..LogQuery::default()
                },
                "error_class = ''",
            ),
            (
                LogQuery {
                    error_class: Some("rate_limited".into()),
                    ..LogQuery::default()
                },
                "error_class = 'rate_limited'",
            ),
        ];
        for (mut q, condition) in filters {
            let want: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM request_log NOT INDEXED WHERE {condition}"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(want > 0, "{condition}");
            q.limit = Some(LOG_PAGE_MAX);
            let mut found = 0;
            loop {
                let page = query_page(&conn, &q).unwrap();
                assert!(page.rows.iter().all(|r| match q.status {
                    Some(st) => r.status == st,
                    None => (r.error_class.is_empty()) == (condition == "error_class = ''"),
                }));
                found += page.rows.len() as i64;
                match page.next {
                    Some(next) => q.before = Some(next),
                    None => break,
                }
            }
            assert_eq!(found, want, "{condition}");
        }
        let stats = query_key_stats(&conn, "AIza…k07", unix(SystemTime::now())).unwrap();
        assert_eq!(stats.requests, 50);
        assert_eq!(stats.hours.len(), 24);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_database_gains_the_new_columns_and_keeps_its_rows() {
        let (dir, path) = temp_db("migrate");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE request_log (
                     at INTEGER NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL, key TEXT NOT NULL, status INTEGER NOT NULL,
                     latency_ms INTEGER NOT NULL, tokens INTEGER NOT NULL, error_class TEXT NOT NULL);
                 CREATE INDEX request_log_at ON request_log(at);
                 CREATE INDEX request_log_status_at ON request_log(status, at);
                 CREATE INDEX request_log_class_at ON request_log(error_class, at);
                 INSERT INTO request_log VALUES (1700000000, '/v1/chat/completions', 'm', 'AIza…old', 200, 5, 7, '');",
            )
            .unwrap();
        }
        let mut conn = open(&path).unwrap();
        drop(open(&path).unwrap());
        let mut rows = vec![row(SystemTime::now())];
        rows[0].message = "boom".into();
        write_logs(&mut conn, &mut rows);
        let page = query_page(&conn, &LogQuery::default()).unwrap();
        assert_eq!(page.rows.len(), 2);
        let old = page.rows.iter().find(|r| r.key == "AIza…old").unwrap();
        assert_eq!((old.request_id.as_str(), old.attempts), ("", 0));
        let detail = query_detail(&conn, old.id).unwrap().unwrap();
        assert!(detail.message.is_empty() && detail.attempts.is_empty());
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'request_log' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut want: Vec<&str> = LOG_INDEXES.iter().map(|(name, ..)| *name).collect();
        want.sort_unstable();
        assert_eq!(indexes, want, "the old full indexes are replaced by the partial ones");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Not a test: `scripts/logbench.sh` runs it to time each filter query on a large log
    /// (`LOGBENCH_ROWS`, default 1,000,000).
    #[test]
    #[ignore]
    fn logbench() {
        let n: usize = std::env::var("LOGBENCH_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let (dir, path) = temp_db("bench");
        let mut conn = open(&path).unwrap();
        let started = Instant::now();
        fill(&mut conn, n);
        println!("filled {n} rows in {:.1} s", started.elapsed().as_secs_f64());
        let reader = open_reader(&path).unwrap();
        for (name, q) in filter_queries(&reader) {
            let _ = query_page(&reader, &q).unwrap();
            let runs = 20;
            let started = Instant::now();
            let mut rows = 0;
            for _ in 0..runs {
                rows = query_page(&reader, &q).unwrap().rows.len();
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
            println!("{name:<18} {ms:>8.2} ms  ({rows} rows)");
        }
        let started = Instant::now();
        let stats = query_key_stats(&reader, "AIza…k07", unix(SystemTime::now())).unwrap();
        println!(
            "{:<18} {:>8.2} ms  ({} requests in 24 h)",
            "key stats 24 h",
            started.elapsed().as_secs_f64() * 1000.0,
            stats.requests
        );
        let started = Instant::now();
        let d = query_detail(&reader, (n / 2) as i64).unwrap();
        println!(
            "{:<18} {:>8.2} ms  (found: {})",
            "detail",
            started.elapsed().as_secs_f64() * 1000.0,
            d.is_some()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database written before proxy pins existed opens, gains the table, and keeps pins.
    #[tokio::test]
    async fn pins_persist_and_old_databases_gain_the_table() {
        let dir = std::env::temp_dir().join(format!("gb-store-pins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        {
            let old = Connection::open(dir.join("gemini-balance.db")).unwrap();
            old.execute_batch(
                "CREATE TABLE keys (fingerprint TEXT PRIMARY KEY, key TEXT NOT NULL, added_at_runtime INTEGER NOT NULL,
                 manual_disabled INTEGER NOT NULL, removed INTEGER NOT NULL DEFAULT 0);",
            )
            .unwrap();
        }
        let (store, snapshot) = Store::open(&dir, Duration::from_secs(86_400), 1000).unwrap();
        assert!(snapshot.pins.is_empty());
        store
            .save_pin("aaa".into(), Some("10.0.0.1:3128".into()))
            .await
            .unwrap();
        store
            .save_pin("bbb".into(), Some("10.0.0.2:3128".into()))
            .await
            .unwrap();
        store
            .save_pin("aaa".into(), Some("10.0.0.3:3128".into()))
            .await
            .unwrap();
        store.save_pin("bbb".into(), None).await.unwrap();
        drop(store);
        let (_, snapshot) = Store::open(&dir, Duration::from_secs(86_400), 1000).unwrap();
        assert_eq!(
            snapshot.pins,
            [StoredPin {
                fingerprint: "aaa".into(),
                proxy: "10.0.0.3:3128".into()
            }]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
