//! The SQLite table and its single writer thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use super::cache::{self, Lookup, RowCache};
use super::hub::{Event, EventType, Hub};
use super::{Row, StoreError, WriteOp};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    rev INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    lease_expires INTEGER,
    value BLOB NOT NULL,
    UNIQUE (key, prev_rev)
);
CREATE INDEX IF NOT EXISTS kv_key_rev ON kv (key, rev);
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease_expires) WHERE lease_expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS rdd_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

const MAX_BATCH: usize = 256;

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `synchronous=FULL` instead of NORMAL: survive power loss, not only process crashes.
    pub sync_full: bool,
    pub ring_capacity: usize,
    pub watcher_queue: usize,
    /// Revisions always kept by compaction, counting back from the newest.
    pub keep_revisions: i64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync_full: false,
            ring_capacity: 10_000,
            watcher_queue: 1000,
            keep_revisions: 1000,
        }
    }
}

type Reply = oneshot::Sender<Result<Arc<Event>, StoreError>>;

enum Request {
    Write(WriteOp, Reply),
    Compact(i64, oneshot::Sender<Result<i64, StoreError>>),
}

pub struct Store {
    path: PathBuf,
    opts: StoreOptions,
    writer: Mutex<mpsc::Sender<Request>>,
    readers: Mutex<Vec<Connection>>,
    current: Arc<AtomicI64>,
    compacted: Arc<AtomicI64>,
    pub hub: Arc<Hub>,
    cache: Arc<RowCache>,
}

/// SQLite's `unix-excl` VFS: the WAL index lives in this process's heap instead of a
/// memory-mapped `-shm` file. With the mapping, a store into a page the kernel refuses to make
/// writable kills the process with SIGBUS instead of failing a call: ext4 does so for a file
/// made immutable (`chattr +i`, the read-only fault test saw the server die of signal 7), and a
/// file system gone read-only or shut down behaves alike. Through the heap index those writes
/// fail as I/O errors (503) and the server lives on. The price: no other process may open the
/// database while the server runs, which `rdd.lock` already ensures.
#[cfg(unix)]
const VFS: Option<&str> = Some("unix-excl");
#[cfg(not(unix))]
const VFS: Option<&str> = None;

fn open_with(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    Ok(match VFS {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs)?,
        None => Connection::open_with_flags(path, flags)?,
    })
}

fn open_rw(path: &Path, sync_full: bool) -> Result<Connection, StoreError> {
    // Connection::open's flags.
    let conn = open_with(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    Ok(conn)
}

fn open_ro(path: &Path) -> Result<Connection, StoreError> {
    // The same VFS as the writer: the readers share its heap WAL index (one per file and
    // process), which a reader on another VFS could not see.
    let conn = open_with(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    Ok(conn)
}

fn decode(blob: &[u8]) -> Result<serde_json::Value, StoreError> {
    serde_json::from_slice(blob).map_err(|e| StoreError::Internal(format!("corrupt row: {e}")))
}

fn encode(v: &serde_json::Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Internal(e.to_string()))
}

/// Exclusive upper bound for a prefix scan: the prefix with its last byte incremented.
fn prefix_end(prefix: &str) -> String {
    // Keys are built from DNS names and '/', so incrementing '/' to '0' suffices.
    let mut s = prefix.to_string();
    if s.ends_with('/') {
        s.pop();
        s.push('0');
    } else {
        s.push('\u{10FFFF}');
    }
    s
}

impl Store {
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let conn = open_rw(path, opts.sync_full)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Internal(format!(
                "database {} failed its integrity check: {check}",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA)?;
        let current: i64 =
            conn.query_row("SELECT COALESCE(MAX(rev), 0) FROM kv", [], |r| r.get(0))?;
        // AUTOINCREMENT keeps the high-water mark in sqlite_sequence even when rows are compacted.
        let seq: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'kv'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let compacted: i64 = conn
            .query_row(
                "SELECT value FROM rdd_meta WHERE name = 'compact_rev'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let hub = Arc::new(Hub::new(opts.ring_capacity, opts.watcher_queue));
        let current = Arc::new(AtomicI64::new(current.max(seq)));
        let compacted = Arc::new(AtomicI64::new(compacted));
        let (tx, rx) = mpsc::channel();
        let cache = Arc::new(RowCache::new(cache::CAPACITY));
        let writer = Writer {
            conn,
            hub: hub.clone(),
            current: current.clone(),
            compacted: compacted.clone(),
            cache: cache.clone(),
        };
        std::thread::Builder::new()
            .name("rdd-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(Store {
            path: path.to_path_buf(),
            opts,
            writer: Mutex::new(tx),
            readers: Mutex::new(Vec::new()),
            current,
            compacted,
            hub,
            cache,
        })
    }

    pub fn current_rev(&self) -> i64 {
        self.current.load(Ordering::SeqCst)
    }

    pub fn compacted_rev(&self) -> i64 {
        self.compacted.load(Ordering::SeqCst)
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    pub async fn write(&self, op: WriteOp) -> Result<Arc<Event>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Write(op, tx))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("storage writer stopped".into()))?
    }

    /// Drop history older than `target` (bounded so the newest `keep_revisions` stay).
    pub async fn compact(&self, target: i64) -> Result<i64, StoreError> {
        let target = target.min(self.current_rev() - self.opts.keep_revisions);
        let (tx, rx) = oneshot::channel();
        self.send(Request::Compact(target, tx))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("storage writer stopped".into()))?
    }

    /// Like [`Store::compact`] but without the retention floor; for tests of 410 handling.
    pub async fn compact_all(&self) -> Result<i64, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Compact(self.current_rev(), tx))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("storage writer stopped".into()))?
    }

    fn send(&self, req: Request) -> Result<(), StoreError> {
        let tx = self
            .writer
            .lock()
            .map_err(|_| StoreError::Internal("writer lock poisoned".into()))?;
        tx.send(req)
            .map_err(|_| StoreError::Unavailable("storage writer stopped".into()))
    }

    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match this.readers.lock().ok().and_then(|mut p| p.pop()) {
                Some(c) => c,
                None => open_ro(&this.path)?,
            };
            let out = f(&conn);
            if let Ok(mut pool) = this.readers.lock()
                && pool.len() < 8
            {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Bytes the database occupies on disk: the main file and its write-ahead log.
    pub fn size_bytes(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        [self.path.clone(), PathBuf::from(wal)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Live objects per key prefix `/<group>/<plural>/`, as `(prefix, count)`.
    pub async fn object_counts(self: &Arc<Self>) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT k.key FROM kv k JOIN (SELECT key, MAX(rev) AS mrev FROM kv GROUP BY key) m
                 ON k.rev = m.mrev WHERE k.deleted = 0",
            )?;
            let mut rows = stmt.query([])?;
            let mut counts = std::collections::BTreeMap::<String, i64>::new();
            while let Some(r) = rows.next()? {
                let key: String = r.get(0)?;
                let mut parts = key.splitn(4, '/');
                let (_, group, plural) = (parts.next(), parts.next(), parts.next());
                if let (Some(g), Some(p)) = (group, plural) {
                    *counts.entry(format!("/{g}/{p}/")).or_default() += 1;
                }
            }
            Ok(counts.into_iter().collect())
        })
        .await
    }

    pub async fn get(self: &Arc<Self>, key: &str) -> Result<Option<Row>, StoreError> {
        match self.cache.get(key) {
            Lookup::Live(row) => return Ok(Some(row)),
            Lookup::Deleted => return Ok(None),
            Lookup::Unknown => {}
        }
        let key = key.to_string();
        self.read(move |c| get_latest(c, &key)).await
    }

    /// Objects under `prefix` as of revision `at` (0 = newest), keys after `start_after`,
    /// at most `limit` (0 = all). Returns the rows and the revision they were read at.
    pub async fn list(
        self: &Arc<Self>,
        prefix: &str,
        at: i64,
        start_after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Row>, i64, bool), StoreError> {
        let compacted = self.compacted_rev();
        let current = self.current_rev();
        if at > 0 && at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        let rev = if at > 0 { at.min(current) } else { current };
        let prefix = prefix.to_string();
        self.read(move |c| {
            let end = prefix_end(&prefix);
            let lower = match &start_after {
                Some(s) if s.as_str() >= prefix.as_str() => s.clone(),
                _ => prefix.clone(),
            };
            let exclusive = start_after.is_some();
            let fetch = if limit == 0 { -1 } else { limit as i64 + 1 };
            let sql = format!(
                "SELECT k.key, k.rev, k.create_rev, k.value FROM kv k JOIN (
                   SELECT key, MAX(rev) AS mrev FROM kv
                   WHERE key {} ?1 AND key < ?2 AND rev <= ?3 GROUP BY key
                 ) m ON k.rev = m.mrev WHERE k.deleted = 0 ORDER BY k.key LIMIT ?4",
                if exclusive { ">" } else { ">=" }
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![lower, end, rev, fetch])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let blob: Vec<u8> = r.get(3)?;
                out.push(Row {
                    key: r.get(0)?,
                    rev: r.get(1)?,
                    create_rev: r.get(2)?,
                    value: Arc::new(decode(&blob)?),
                });
            }
            let more = limit > 0 && out.len() > limit;
            if more {
                out.truncate(limit);
            }
            Ok((out, rev, more))
        })
        .await
    }

    /// Count live objects under `prefix` with keys after `start_after` at revision `rev`.
    pub async fn count_after(
        self: &Arc<Self>,
        prefix: &str,
        rev: i64,
        start_after: String,
    ) -> Result<i64, StoreError> {
        let prefix = prefix.to_string();
        self.read(move |c| {
            let end = prefix_end(&prefix);
            let mut stmt = c.prepare_cached(
                "SELECT COUNT(*) FROM kv k JOIN (
                   SELECT key, MAX(rev) AS mrev FROM kv
                   WHERE key > ?1 AND key >= ?2 AND key < ?3 AND rev <= ?4 GROUP BY key
                 ) m ON k.rev = m.mrev WHERE k.deleted = 0",
            )?;
            Ok(stmt.query_row(params![start_after, prefix, end, rev], |r| r.get(0))?)
        })
        .await
    }

    /// Events after revision `after`, from the ring when it still covers them, else from the
    /// table. `Compacted` when history no longer goes back that far.
    pub async fn events_since(self: &Arc<Self>, after: i64) -> Result<Vec<Arc<Event>>, StoreError> {
        let current = self.current_rev();
        if after >= current {
            return Ok(Vec::new());
        }
        let compacted = self.compacted_rev();
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        if let Some(evs) = self.hub.since(after) {
            return Ok(evs);
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT a.rev, a.key, a.deleted, a.prev_rev, a.value, b.value, b.deleted
                 FROM kv a LEFT JOIN kv b ON b.rev = a.prev_rev
                 WHERE a.rev > ?1 AND a.rev <= ?2 ORDER BY a.rev",
            )?;
            let mut rows = stmt.query(params![after, current])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let deleted: bool = r.get(2)?;
                let blob: Vec<u8> = r.get(4)?;
                let prev_blob: Option<Vec<u8>> = r.get(5)?;
                let prev_deleted: Option<bool> = r.get(6)?;
                let prev = match (prev_blob, prev_deleted) {
                    (Some(b), Some(false)) => Some(Arc::new(decode(&b)?)),
                    _ => None,
                };
                let kind = if deleted {
                    EventType::Deleted
                } else if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                out.push(Arc::new(Event {
                    rev: r.get(0)?,
                    key: r.get(1)?,
                    kind,
                    object: Arc::new(decode(&blob)?),
                    prev,
                    encoded: Default::default(),
                }));
            }
            Ok(out)
        })
        .await
    }

    /// Keys whose lease (Event TTL) expired before `now`.
    pub async fn expired(self: &Arc<Self>, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT k.key, k.rev FROM kv k JOIN (
                   SELECT key, MAX(rev) AS mrev FROM kv WHERE lease_expires IS NOT NULL GROUP BY key
                 ) m ON k.rev = m.mrev
                 WHERE k.deleted = 0 AND k.lease_expires IS NOT NULL AND k.lease_expires < ?1
                 LIMIT 1000",
            )?;
            let rows = stmt.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

fn get_latest(c: &Connection, key: &str) -> Result<Option<Row>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT rev, create_rev, deleted, value FROM kv WHERE key = ?1 ORDER BY rev DESC LIMIT 1",
    )?;
    let row = stmt
        .query_row(params![key], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })
        .optional()?;
    match row {
        Some((rev, create_rev, false, blob)) => Ok(Some(Row {
            key: key.to_string(),
            rev,
            create_rev,
            value: Arc::new(decode(&blob)?),
        })),
        _ => Ok(None),
    }
}

struct Writer {
    conn: Connection,
    hub: Arc<Hub>,
    current: Arc<AtomicI64>,
    compacted: Arc<AtomicI64>,
    cache: Arc<RowCache>,
}

/// What the latest row of a key says, as the writer needs it (its value is read only when the
/// cache does not have it).
struct Latest {
    rev: i64,
    create_rev: i64,
    deleted: bool,
    lease: Option<i64>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut writes = Vec::new();
            let mut pending = Some(first);
            loop {
                match pending.take() {
                    Some(Request::Write(op, reply)) => writes.push((op, reply)),
                    Some(Request::Compact(target, reply)) => {
                        // Compaction runs alone, between batches.
                        self.commit(std::mem::take(&mut writes));
                        let _ = reply.send(self.compact(target));
                    }
                    None => {}
                }
                if writes.len() >= MAX_BATCH {
                    break;
                }
                match rx.try_recv() {
                    Ok(r) => pending = Some(r),
                    Err(_) => break,
                }
            }
            self.commit(writes);
        }
    }

    fn commit(&mut self, mut writes: Vec<(WriteOp, Reply)>) {
        if writes.is_empty() {
            return;
        }
        type Applied = Result<(Arc<Event>, i64), StoreError>;
        let result = (|| -> Result<Vec<Applied>, StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(writes.len());
            for (op, _) in writes.iter_mut() {
                results.push(apply_op(&tx, op, &self.cache));
            }
            tx.commit()?;
            Ok(results)
        })();
        match result {
            Ok(results) => {
                let mut events = Vec::new();
                for (ev, create_rev) in results.iter().flatten() {
                    // Committed: from here on this is the key's latest row (see cache.rs).
                    let value = (ev.kind != EventType::Deleted).then(|| ev.object.clone());
                    self.cache.put(&ev.key, ev.rev, *create_rev, value);
                    events.push(ev.clone());
                }
                let results: Vec<Result<Arc<Event>, StoreError>> =
                    results.into_iter().map(|r| r.map(|(ev, _)| ev)).collect();
                if let Some(last) = events.last() {
                    self.current.store(last.rev, Ordering::SeqCst);
                }
                // Publish before replying so a client that writes and then watches from the
                // returned revision never misses its own event.
                self.hub.publish(events);
                for ((_, reply), r) in writes.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let unavailable = matches!(e, StoreError::Unavailable(_));
                for (_, reply) in writes {
                    let _ = reply.send(Err(if unavailable {
                        StoreError::Unavailable(msg.clone())
                    } else {
                        StoreError::Internal(msg.clone())
                    }));
                }
            }
        }
    }

    fn compact(&mut self, target: i64) -> Result<i64, StoreError> {
        let already = self.compacted.load(Ordering::SeqCst);
        if target <= already {
            return Ok(already);
        }
        // Superseded rows: any row that has a newer row for the same key at or below the target;
        // tombstones at or below the target. Batched to keep each transaction short.
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "DELETE FROM kv WHERE rev IN (
                   SELECT a.rev FROM kv a WHERE a.rev <= ?1 AND (
                     a.deleted = 1 OR EXISTS (SELECT 1 FROM kv b WHERE b.key = a.key AND b.rev > a.rev AND b.rev <= ?1)
                   ) LIMIT 1000)",
                params![target],
            )?;
            tx.commit()?;
            if n < 1000 {
                break;
            }
        }
        self.conn.execute(
            "INSERT INTO rdd_meta (name, value) VALUES ('compact_rev', ?1)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![target],
        )?;
        self.compacted.store(target, Ordering::SeqCst);
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(target)
    }
}

fn latest(tx: &rusqlite::Transaction<'_>, key: &str) -> Result<Option<Latest>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT rev, create_rev, deleted, lease_expires FROM kv WHERE key = ?1 ORDER BY rev DESC LIMIT 1",
    )?;
    Ok(stmt
        .query_row(params![key], |r| {
            Ok(Latest {
                rev: r.get(0)?,
                create_rev: r.get(1)?,
                deleted: r.get(2)?,
                lease: r.get(3)?,
            })
        })
        .optional()?)
}

/// The stored bytes of revision `rev`.
fn blob_at(tx: &rusqlite::Transaction<'_>, rev: i64) -> Result<Vec<u8>, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT value FROM kv WHERE rev = ?1")?;
    Ok(stmt.query_row(params![rev], |r| r.get(0))?)
}

/// The value of `key` at `rev`: the cached one when it is that revision, else read and parsed.
fn value_at(
    tx: &rusqlite::Transaction<'_>,
    cache: &RowCache,
    key: &str,
    rev: i64,
) -> Result<Arc<serde_json::Value>, StoreError> {
    match cache.value_at(key, rev) {
        Some(v) => Ok(v),
        None => Ok(Arc::new(decode(&blob_at(tx, rev)?)?)),
    }
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    deleted: bool,
    create_rev: Option<i64>,
    prev_rev: i64,
    lease: Option<i64>,
    value: &[u8],
) -> Result<i64, StoreError> {
    let mut stmt = tx.prepare_cached(
        // A create is its own create revision: the next AUTOINCREMENT value, read in the same
        // statement so no second statement runs per write.
        "INSERT INTO kv (key, created, deleted, create_rev, prev_rev, lease_expires, value)
         VALUES (?1, ?2, ?3, COALESCE(?4, (SELECT COALESCE(MAX(seq), 0) + 1 FROM sqlite_sequence WHERE name = 'kv')), ?5, ?6, ?7)",
    )?;
    stmt.execute(params![
        key,
        create_rev.is_none(),
        deleted,
        create_rev,
        prev_rev,
        lease,
        value
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Apply one write; the value moves into the event once stored (no copy per write). Returns the
/// event and the key's create revision.
fn apply_op(
    tx: &rusqlite::Transaction<'_>,
    op: &mut WriteOp,
    cache: &RowCache,
) -> Result<(Arc<Event>, i64), StoreError> {
    match op {
        WriteOp::Create {
            key,
            value,
            lease_expires,
        } => {
            let prev = latest(tx, key)?;
            let prev_rev = match &prev {
                Some(l) if !l.deleted => return Err(StoreError::AlreadyExists),
                Some(l) => l.rev,
                None => 0,
            };
            let blob = encode(value)?;
            let rev = insert(tx, key, false, None, prev_rev, *lease_expires, &blob)?;
            let ev = Arc::new(Event {
                rev,
                key: key.clone(),
                kind: EventType::Added,
                object: Arc::new(std::mem::take(value)),
                prev: None,
                encoded: Default::default(),
            });
            Ok((ev, rev))
        }
        WriteOp::Update {
            key,
            expected_rev,
            value,
        } => {
            let l = match latest(tx, key)? {
                Some(l) if !l.deleted => l,
                _ => return Err(StoreError::NotFound),
            };
            if l.rev != *expected_rev {
                return Err(StoreError::Conflict {
                    expected: *expected_rev,
                    found: l.rev,
                });
            }
            let prev = value_at(tx, cache, key, l.rev)?;
            let blob = encode(value)?;
            let rev = insert(tx, key, false, Some(l.create_rev), l.rev, l.lease, &blob)?;
            let ev = Arc::new(Event {
                rev,
                key: key.clone(),
                kind: EventType::Modified,
                object: Arc::new(std::mem::take(value)),
                prev: Some(prev),
                encoded: Default::default(),
            });
            Ok((ev, l.create_rev))
        }
        WriteOp::Delete { key, expected_rev } => {
            let l = match latest(tx, key)? {
                Some(l) if !l.deleted => l,
                _ => return Err(StoreError::NotFound),
            };
            if *expected_rev != 0 && l.rev != *expected_rev {
                return Err(StoreError::Conflict {
                    expected: *expected_rev,
                    found: l.rev,
                });
            }
            // The tombstone keeps the last value so DELETED events and history reads need no join.
            let blob = blob_at(tx, l.rev)?;
            let rev = insert(tx, key, true, Some(l.create_rev), l.rev, None, &blob)?;
            let last = match cache.value_at(key, l.rev) {
                Some(v) => v,
                None => Arc::new(decode(&blob)?),
            };
            let ev = Arc::new(Event {
                rev,
                key: key.clone(),
                kind: EventType::Deleted,
                object: last.clone(),
                prev: Some(last),
                encoded: Default::default(),
            });
            Ok((ev, l.create_rev))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
        (dir, Arc::new(s))
    }

    #[tokio::test]
    async fn create_update_delete_revisions_and_cas() {
        let (_d, s) = store();
        let c = s
            .write(WriteOp::Create {
                key: "/core/configmaps/ns/a".into(),
                value: json!({"a":1}),
                lease_expires: None,
            })
            .await
            .unwrap();
        assert_eq!(c.rev, 1);
        let dup = s
            .write(WriteOp::Create {
                key: "/core/configmaps/ns/a".into(),
                value: json!({}),
                lease_expires: None,
            })
            .await;
        assert!(matches!(dup, Err(StoreError::AlreadyExists)));
        let stale = s
            .write(WriteOp::Update {
                key: "/core/configmaps/ns/a".into(),
                expected_rev: 7,
                value: json!({}),
            })
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict { .. })));
        let u = s
            .write(WriteOp::Update {
                key: "/core/configmaps/ns/a".into(),
                expected_rev: 1,
                value: json!({"a":2}),
            })
            .await
            .unwrap();
        assert_eq!(u.rev, 2, "failed writes consume no revision");
        let row = s.get("/core/configmaps/ns/a").await.unwrap().unwrap();
        assert_eq!((row.rev, row.create_rev), (2, 1));
        let d = s
            .write(WriteOp::Delete {
                key: "/core/configmaps/ns/a".into(),
                expected_rev: 0,
            })
            .await
            .unwrap();
        assert_eq!(d.kind, EventType::Deleted);
        assert!(s.get("/core/configmaps/ns/a").await.unwrap().is_none());
        // Re-create after delete works.
        let again = s
            .write(WriteOp::Create {
                key: "/core/configmaps/ns/a".into(),
                value: json!({"a":3}),
                lease_expires: None,
            })
            .await
            .unwrap();
        assert_eq!(again.rev, 4);
    }

    #[tokio::test]
    async fn list_history_paging_and_compaction() {
        let (_d, s) = store();
        for i in 0..5 {
            s.write(WriteOp::Create {
                key: format!("/core/configmaps/ns/k{i}"),
                value: json!({"i": i}),
                lease_expires: None,
            })
            .await
            .unwrap();
        }
        let (page, rev, more) = s.list("/core/configmaps/ns/", 0, None, 2).await.unwrap();
        assert_eq!(page.len(), 2);
        assert!(more);
        assert_eq!(rev, 5);
        s.write(WriteOp::Delete {
            key: "/core/configmaps/ns/k3".into(),
            expected_rev: 0,
        })
        .await
        .unwrap();
        // The second page at the first page's revision still sees k3.
        let (page2, _, _) = s
            .list("/core/configmaps/ns/", rev, Some(page[1].key.clone()), 10)
            .await
            .unwrap();
        assert_eq!(page2.len(), 3);
        let (now, _, _) = s.list("/core/configmaps/ns/", 0, None, 0).await.unwrap();
        assert_eq!(now.len(), 4);
        let evs = s.events_since(2).await.unwrap();
        assert_eq!(
            evs.iter().map(|e| e.rev).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        s.compact_all().await.unwrap();
        assert!(matches!(
            s.list("/core/configmaps/ns/", 3, None, 0).await,
            Err(StoreError::Compacted { .. })
        ));
    }

    #[tokio::test]
    async fn revisions_survive_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = Arc::new(Store::open(&path, StoreOptions::default()).unwrap());
            for i in 0..3 {
                s.write(WriteOp::Create {
                    key: format!("/x/y//k{i}"),
                    value: json!({}),
                    lease_expires: None,
                })
                .await
                .unwrap();
            }
            s.write(WriteOp::Delete {
                key: "/x/y//k2".into(),
                expected_rev: 0,
            })
            .await
            .unwrap();
            s.compact_all().await.unwrap();
        }
        let s = Arc::new(Store::open(&path, StoreOptions::default()).unwrap());
        assert_eq!(
            s.current_rev(),
            4,
            "revision never goes back, even when the newest row was compacted"
        );
        let e = s
            .write(WriteOp::Create {
                key: "/x/y//k9".into(),
                value: json!({}),
                lease_expires: None,
            })
            .await
            .unwrap();
        assert_eq!(e.rev, 5);
        assert_eq!(s.compacted_rev(), 4);
    }
}
