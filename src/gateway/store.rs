//! Embedded persistence (SQLite under `DATA_DIR`): keys added at run time and their operator
//! state, keys pinned to an egress proxy, per-key lifetime counters, and the request log.
//!
//! All writes go through one writer thread. Key changes are written before the caller is told
//! they succeeded (a crash never loses a key); log rows are queued without blocking the request
//! and written in batches (a crash loses at most the last batch).

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

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
}

/// What was stored when the gateway last ran.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub keys: Vec<StoredKey>,
    pub counters: Vec<StoredCounters>,
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
         CREATE INDEX IF NOT EXISTS request_log_at ON request_log(at);",
    )?;
    Ok(conn)
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
        Ok((Store { tx }, snapshot))
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

    /// Reads the newest log rows (for tests and the admin view).
    pub fn recent_log(data_dir: &Path, limit: usize) -> Result<Vec<LogRow>, String> {
        let conn = Connection::open(data_dir.join("gemini-balance.db")).map_err(|e| e.to_string())?;
        let mut stmt = conn
            .prepare("SELECT at, route, model, key, status, latency_ms, tokens, error_class FROM request_log ORDER BY rowid DESC LIMIT ?1")
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
    Ok(Snapshot { keys, counters, pins })
}

fn write_logs(conn: &mut Connection, rows: &mut Vec<LogRow>) {
    if rows.is_empty() {
        return;
    }
    let result = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO request_log (at, route, model, key, status, latency_ms, tokens, error_class) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in rows.iter() {
                stmt.execute(params![
                    unix(r.at),
                    r.route,
                    r.model,
                    r.key,
                    r.status,
                    r.latency_ms as i64,
                    r.tokens as i64,
                    r.error_class
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

fn writer(mut conn: Connection, rx: Receiver<Cmd>, retention: Duration, max_rows: u64) {
    let mut pending: Vec<LogRow> = Vec::new();
    let mut last_flush = Instant::now();
    let mut last_prune = Instant::now()
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or_else(Instant::now);
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Cmd::Log(row)) => pending.push(row),
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
