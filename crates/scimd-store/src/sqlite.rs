//! SQLite store: WAL, `synchronous=FULL`, one writer thread that commits
//! concurrent writes together (group commit), and a pool of reader
//! connections used from blocking threads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params, params_from_iter};
use scimd_core::query::{Cond, Query};
use scimd_core::store::{
    GroupMembership, IndexEntry, Member, MemberChange, MembershipStore, Modification, Modified,
    ModifyError, Page, Record, RecordStore, ResourceStore, ResourceWrite, RestoreStore,
    RestoredResource, Store, StoreError, StoredResource, StoredRow, UniqueValue,
};

use crate::rules::{member_type_ok, missed, unique_scope};
use crate::translate::{COLUMNS, Dialect, Param, delete_matching, page_queries, total_from_page};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations.sql"),
    include_str!("migrations_002_records.sql"),
    include_str!("migrations_003_meta_columns.sql"),
    include_str!("migrations_004_values_by_resource.sql"),
];
/// Reader connections kept open. Above the number of requests in flight a
/// read would open (and configure, and re-prepare statements on) a fresh
/// connection each time: that cost 10x on filtered lists at 32 clients.
const MAX_READERS: usize = 128;
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// A write waiting for the writer thread. It may run twice: first in a
/// batch without savepoints and, if another write of that batch failed,
/// again in a savepoint of its own ([`run_batch`]); so a write is a closure
/// that can be called again, not consumed.
trait Job: Send {
    /// Runs the write, keeping its outcome; true if it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: the kept outcome if the batch committed.
    fn answer(self: Box<Self>, commit: Result<(), StoreError>);
}

struct PendingWrite<T, F> {
    write: F,
    outcome: Option<Result<T, StoreError>>,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for PendingWrite<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        // Writes run the core's code (a PATCH is computed inside its write):
        // a panic there must fail that write, not end the writer thread and
        // with it every later write.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.write)(conn)))
            .unwrap_or_else(|_| Err(StoreError::Backend("the write panicked".into())));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, commit: Result<(), StoreError>) {
        let PendingWrite {
            write,
            outcome,
            reply,
        } = *self;
        // Before replying: the closure may share what the caller takes back
        // (`write_with`).
        drop(write);
        let answer = match (commit, outcome) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(outcome)) => outcome,
            (Ok(()), None) => Err(StoreError::Backend("the write did not run".into())),
        };
        let _ = reply.send(answer);
    }
}

/// The embedded default store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Box<dyn Job>>>,
    /// Batches that had a failing write and ran again ([`run_batch`]).
    reruns: Arc<AtomicU64>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(match self {
            Param::Text(t) => return Ok(ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes()))),
            Param::Real(r) => SqlValue::Real(*r),
            Param::Int(i) => SqlValue::Integer(*i),
        }))
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(backend)?;
    // Query planner stability: without it SQLite re-plans a cached
    // statement whenever a bound value changes and could affect the plan
    // (here: proving `attr_values_n`'s partial-index condition), which made
    // every filtered list re-parse its SQL. Our plans never depend on values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut conn = open(path)?;
        migrate(&mut conn)?;
        // A batch that runs again gives each write a savepoint (`run_batch`);
        // SQLite keeps the savepoint's undo pages in a sub-journal, by default
        // a temporary file: a quarter of the writer's time went to writing it.
        // In memory it is bounded by one batch's pages. Readers keep the
        // default so that a large sort can still spill to disk.
        //
        // Checkpoints run on this connection after a commit once the WAL
        // holds `wal_autocheckpoint` pages. Each one copies the distinct
        // pages to the database file and syncs both files: every 4,000
        // pages (16 MiB of WAL) instead of SQLite's 1,000, a page changed
        // by many commits is copied once and the syncs are shared by more
        // writes (single-attribute PATCH +11 %, paired runs).
        conn.execute_batch(
            "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=4000;",
        )
        .map_err(backend)?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let reruns = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&reruns);
        std::thread::Builder::new()
            .name("scimd-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, &counter))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(tx),
            reruns,
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// How many write batches had a failing write and ran again with a
    /// savepoint per write (see `run_batch`); for tests and diagnostics.
    pub fn batches_rerun(&self) -> u64 {
        self.reruns.load(Ordering::Relaxed)
    }

    /// Runs `f` inside the next group-committed write transaction; resolves
    /// after the commit. `f` may run twice ([`Job`]); only one run's effects
    /// are committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(PendingWrite {
            write: f,
            outcome: None,
            reply,
        });
        self.writer
            .lock()
            .map_err(|_| StoreError::Backend("writer lock poisoned".into()))?
            .send(job)
            .map_err(|_| StoreError::Backend("writer thread stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("writer dropped the request".into()))?
    }

    /// [`Self::write`] of a resource, which is handed back with the outcome
    /// (the write only borrows it, since it may run twice).
    async fn write_with<T, F>(
        &self,
        w: ResourceWrite,
        mut f: F,
    ) -> Result<(ResourceWrite, T), StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection, &ResourceWrite) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::new(w);
        let borrowed = Arc::clone(&shared);
        let out = self.write(move |conn| f(conn, &borrowed)).await?;
        // The job (and its reference) is dropped before the answer is sent.
        let w = Arc::try_unwrap(shared).unwrap_or_else(|still| (*still).clone());
        Ok((w, out))
    }

    /// Runs a point read (by primary key, a few index probes) on the calling
    /// async worker with that thread's own connection: in WAL mode readers
    /// never wait for the writer, so this is microseconds of work and saves
    /// the hop to a blocking thread on the hottest path (GET by id).
    fn read_inline<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        thread_local! {
            static CONNECTIONS: std::cell::RefCell<std::collections::HashMap<PathBuf, Connection>> =
                std::cell::RefCell::new(std::collections::HashMap::new());
        }
        CONNECTIONS.with(|cell| {
            let mut map = cell.borrow_mut();
            if !map.contains_key(&self.path) {
                let conn = open(&self.path)?;
                // One per async worker (a handful), serving most reads: a
                // larger page cache than the default 2 MB saves re-reading
                // index pages from the file.
                conn.execute_batch("PRAGMA cache_size=-16384;")
                    .map_err(backend)?;
                map.insert(self.path.clone(), conn);
            }
            match map.get(&self.path) {
                Some(conn) => f(conn),
                None => Err(StoreError::Backend("no reader connection".into())),
            }
        })
    }

    /// Runs a query on this worker thread's own connection, like point
    /// reads: most filtered lists take tens of microseconds in SQLite, less
    /// than the hop to a blocking thread and the pool's mutex. The price: a
    /// long query (an exact count over a broad `sw` filter, a few ms on
    /// 100,000 users) holds this worker meanwhile. `tokio::task::block_in_place`
    /// would hand the worker's other tasks away first but measured slower.
    fn read_here<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_inline(f)
    }

    /// Runs `f` on a reader connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open(&path)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < MAX_READERS
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    let mut applied = false;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if version <= current {
            continue;
        }
        applied = true;
        let tx = conn.transaction().map_err(backend)?;
        if version == 3 {
            drop_meta_index_rows(&tx)?;
        }
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    if applied {
        // A migration over a large store leaves a WAL as large as what it
        // changed (1 GB at a million users); checkpointed here, at start-up,
        // rather than by the first write while serving (seconds of stall).
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(backend)?;
    }
    Ok(())
}

/// Migration 3: the server-managed facts' index rows go (they are columns
/// now). In slices: one `DELETE` of millions of rows would first collect
/// every rowid in memory (~150 MB at a million users).
fn drop_meta_index_rows(tx: &Connection) -> Result<(), StoreError> {
    loop {
        let deleted = tx
            .execute(
                "DELETE FROM attr_values WHERE rowid IN (
                   SELECT rowid FROM attr_values
                    WHERE key IN ('id', 'meta', 'meta.resourcetype', 'meta.created',
                                  'meta.lastmodified', 'meta.version')
                    LIMIT 20000)",
                [],
            )
            .map_err(backend)?;
        if deleted == 0 {
            return Ok(());
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>, reruns: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = run_batch(&conn, &mut batch, reruns);
        if let Err(e) = &commit {
            eprintln!("scimd: a write transaction failed: {e}");
        }
        for job in batch {
            job.answer(match &commit {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            });
        }
    }
}

/// Runs a batch of writes in one transaction (group commit), each either
/// applied whole or not at all. First without savepoints: a savepoint
/// copies every page its write touches (a sixth of `POST` throughput), and
/// writes rarely fail. A write that fails first in line is simply rolled
/// back and left out (the most common case: a lone 404, 409 or 412); one
/// that fails after others makes the batch run again with a savepoint per
/// write, so that it is undone alone. What commits is always one complete
/// run of the writes it answers for.
fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
    reruns: &AtomicU64,
) -> Result<(), StoreError> {
    let mut start = 0;
    loop {
        if start == batch.len() {
            return Ok(());
        }
        run_cached(conn, "BEGIN IMMEDIATE").map_err(backend)?;
        let Some(failed) = batch[start..].iter_mut().position(|job| !job.run(conn)) else {
            return commit(conn);
        };
        // Also fine if SQLite already rolled back (some I/O errors do).
        let _ = run_cached(conn, "ROLLBACK");
        if failed > 0 {
            break;
        }
        // Its outcome stands: it failed on the state the rest start from.
        start += 1;
    }
    reruns.fetch_add(1, Ordering::Relaxed);
    run_cached(conn, "BEGIN IMMEDIATE").map_err(backend)?;
    for job in batch[start..].iter_mut() {
        // Prepared once: parsing these statements for every job showed up
        // in the writer's profile.
        run_cached(conn, "SAVEPOINT job").map_err(|e| abandon(conn, backend(e)))?;
        if !job.run(conn) {
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O
                // error): the writes before this one are gone too, and
                // going on would commit the rest one statement at a time.
                return Err(StoreError::Backend(
                    "the write transaction was rolled back".into(),
                ));
            }
            run_cached(conn, "ROLLBACK TO job").map_err(|e| abandon(conn, backend(e)))?;
        }
        run_cached(conn, "RELEASE job").map_err(|e| abandon(conn, backend(e)))?;
    }
    commit(conn)
}

fn commit(conn: &Connection) -> Result<(), StoreError> {
    run_cached(conn, "COMMIT")
        .map(|_| ())
        .map_err(|e| abandon(conn, backend(e)))
}

/// Rolls the open transaction back after `e`.
fn abandon(conn: &Connection, e: StoreError) -> StoreError {
    let _ = run_cached(conn, "ROLLBACK");
    e
}

fn document_text(w: &ResourceWrite) -> Result<String, StoreError> {
    serde_json::to_string(&w.data).map_err(|e| StoreError::Backend(e.to_string()))
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn row_to_resource(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, String, String, i64, String, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn to_row(row: (i64, String, String, i64, String, String, String)) -> StoredRow {
    let (position, id, resource_type, version, created, modified, text) = row;
    StoredRow {
        position,
        resource_type,
        id,
        version,
        created,
        modified,
        text,
    }
}

fn to_stored(
    row: (i64, String, String, i64, String, String, String),
) -> Result<StoredResource, StoreError> {
    to_row(row).parse()
}

fn load_members(conn: &Connection, group_seq: i64) -> Result<Vec<Member>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT r.id, r.rtype, COALESCE(m.display, json_extract(r.data, '$.displayName'), json_extract(r.data, '$.userName'))
             FROM members m JOIN resources r ON r.seq = m.member_seq WHERE m.group_seq = ? ORDER BY m.member_seq",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([group_seq], |row| {
            Ok(Member {
                value: row.get(0)?,
                typ: Some(row.get(1)?),
                display: row.get(2)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

/// Writes unique values, index entries and (optionally) memberships of `seq`.
fn write_side_tables(conn: &Connection, seq: i64, w: &ResourceWrite) -> Result<(), StoreError> {
    for u in &w.unique {
        insert_unique(conn, seq, &w.resource_type, u)?;
    }
    for (ord, e) in (0_i64..).zip(&w.index) {
        insert_entry(conn, seq, ord, e)?;
    }
    write_members(conn, seq, w)
}

/// Brings the side tables of an existing `seq` to what `w` needs, touching
/// only the rows that differ: a one-attribute change rewrites one index
/// entry, not all of them (each is a B-tree page in three indexes).
fn rewrite_side_tables(conn: &Connection, seq: i64, w: &ResourceWrite) -> Result<(), StoreError> {
    // A resource has a handful of unique values and index entries: sorted
    // lists and linear scans, not hash maps (hashing showed in the writer's
    // profile).
    let mut kept = vec![false; w.unique.len()];
    let old: Vec<(String, String, String)> = conn
        .prepare_cached("SELECT scope, key, value FROM unique_values WHERE seq = ?")
        .and_then(|mut s| {
            s.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(backend)?;
    for (scope, key, value) in old {
        let same = w.unique.iter().position(|u| {
            u.key == key && u.value == value && unique_scope(&w.resource_type, u) == scope
        });
        match same {
            Some(i) => kept[i] = true,
            None => {
                conn.prepare_cached(
                    "DELETE FROM unique_values WHERE scope = ? AND key = ? AND value = ?",
                )
                .and_then(|mut s| s.execute([&scope, &key, &value]))
                .map_err(backend)?;
            }
        }
    }
    for (u, kept) in w.unique.iter().zip(kept) {
        if !kept {
            insert_unique(conn, seq, &w.resource_type, u)?;
        }
    }

    // Index entries: a multiset difference on every column, by merging the
    // two lists sorted.
    let mut new: Vec<&IndexEntry> = w.index.iter().collect();
    new.sort_unstable_by(|a, b| entry_key(a).cmp(&entry_key(b)));
    // One range of the table's key: a resource's rows are stored together.
    let stored: Vec<(i64, IndexEntry)> = conn
        .prepare_cached("SELECT ord, key, elem, prim, s, n FROM attr_values WHERE seq = ?")
        .and_then(|mut s| {
            s.query_map([seq], |r| {
                Ok((
                    r.get(0)?,
                    IndexEntry {
                        key: r.get(1)?,
                        elem: r.get(2)?,
                        primary: r.get(3)?,
                        text: r.get(4)?,
                        number: r.get(5)?,
                    },
                ))
            })?
            .collect()
        })
        .map_err(backend)?;
    let mut next_ord = stored.iter().map(|(ord, _)| ord + 1).max().unwrap_or(0);
    let mut old: Vec<(i64, &IndexEntry)> = stored.iter().map(|(ord, e)| (*ord, e)).collect();
    old.sort_unstable_by(|a, b| entry_key(a.1).cmp(&entry_key(b.1)));
    let (mut gone, mut added) = (Vec::new(), Vec::new());
    let (mut o, mut n) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (Some(&(_, a)), Some(&b)) => match entry_key(a).cmp(&entry_key(b)) {
                std::cmp::Ordering::Equal => {
                    o.next();
                    n.next();
                }
                std::cmp::Ordering::Less => gone.extend(o.next()),
                std::cmp::Ordering::Greater => added.extend(n.next()),
            },
            (Some(_), None) => gone.extend(o.next()),
            (None, Some(_)) => added.extend(n.next()),
            (None, None) => break,
        }
    }
    // A changed value of the same attribute element is updated in place:
    // only the value indexes change, not the row's place.
    for (ord, old_entry) in gone {
        let same_slot = added
            .iter()
            .position(|e| e.key == old_entry.key && e.elem == old_entry.elem);
        match same_slot {
            Some(i) => {
                let e = added.swap_remove(i);
                conn.prepare_cached(
                    "UPDATE attr_values SET prim = ?, s = ?, n = ? WHERE seq = ? AND key = ? AND ord = ?",
                )
                .and_then(|mut s| {
                    s.execute(params![e.primary, e.text, e.number, seq, old_entry.key, ord])
                })
                .map_err(backend)?;
            }
            None => {
                conn.prepare_cached(
                    "DELETE FROM attr_values WHERE seq = ? AND key = ? AND ord = ?",
                )
                .and_then(|mut s| s.execute(params![seq, old_entry.key, ord]))
                .map_err(backend)?;
            }
        }
    }
    for e in added {
        insert_entry(conn, seq, next_ord, e)?;
        next_ord += 1;
    }
    write_members(conn, seq, w)
}

/// Every column of an index entry, the number by its bits.
type EntryKey<'a> = (&'a str, u32, bool, Option<&'a str>, Option<u64>);

fn entry_key(e: &IndexEntry) -> EntryKey<'_> {
    (
        e.key.as_str(),
        e.elem,
        e.primary,
        e.text.as_deref(),
        e.number.map(f64::to_bits),
    )
}

fn insert_unique(
    conn: &Connection,
    seq: i64,
    resource_type: &str,
    u: &UniqueValue,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO unique_values (scope, key, value, seq) VALUES (?, ?, ?, ?)")
        .and_then(|mut s| s.execute(params![unique_scope(resource_type, u), u.key, u.value, seq]))
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Uniqueness {
                    attr: u.key.clone(),
                }
            } else {
                backend(e)
            }
        })?;
    Ok(())
}

/// `ord` tells apart values of one attribute of one resource.
fn insert_entry(conn: &Connection, seq: i64, ord: i64, e: &IndexEntry) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO attr_values (seq, key, ord, elem, prim, s, n) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            seq, e.key, ord, e.elem, e.primary, e.text, e.number
        ])
    })
    .map_err(backend)?;
    Ok(())
}

fn write_members(conn: &Connection, seq: i64, w: &ResourceWrite) -> Result<(), StoreError> {
    if let Some(members) = &w.members {
        conn.execute("DELETE FROM members WHERE group_seq = ?", [seq])
            .map_err(backend)?;
        add_members(conn, seq, members, &w.member_types)?;
    }
    Ok(())
}

fn add_members(
    conn: &Connection,
    group_seq: i64,
    members: &[Member],
    types: &[String],
) -> Result<(), StoreError> {
    let mut find = conn
        .prepare_cached("SELECT seq, rtype FROM resources WHERE id = ?")
        .map_err(backend)?;
    let mut insert = conn
        .prepare_cached("INSERT INTO members (group_seq, member_seq, display) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
        .map_err(backend)?;
    for m in members {
        let found: Option<(i64, String)> = find
            .query_row([&m.value], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)?;
        let Some((member_seq, rtype)) = found else {
            return Err(StoreError::UnknownMember(m.value.clone()));
        };
        if !member_type_ok(types, &rtype, m) {
            return Err(StoreError::UnknownMember(m.value.clone()));
        }
        insert
            .execute(params![group_seq, member_seq, m.display])
            .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }
}

#[async_trait]
impl ResourceStore for SqliteStore {
    async fn create(&self, w: ResourceWrite) -> Result<StoredResource, StoreError> {
        // Serialised here, on the caller's thread: the writer is the bottleneck.
        let data = document_text(&w)?;
        let (w, (seq, members)) = self
            .write_with(w, move |conn, w| {
                conn.prepare_cached(
                    "INSERT INTO resources (id, rtype, version, created, modified, data) VALUES (?, ?, 1, ?, ?, ?)",
                )
                .and_then(|mut s| s.execute(params![w.id, w.resource_type, w.now, w.now, data]))
                .map_err(backend)?;
                let seq = conn.last_insert_rowid();
                write_side_tables(conn, seq, w)?;
                let members = match &w.members {
                    Some(_) => Some(load_members(conn, seq)?),
                    None => None,
                };
                Ok((seq, members))
            })
            .await?;
        Ok(StoredResource::created(w, seq, members))
    }

    async fn get(
        &self,
        rtype: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<StoredResource>, StoreError> {
        if !with_members {
            // A point read; members (possibly 100,000 rows) go to a blocking thread.
            return self.read_here(|conn| get_one(conn, rtype, id));
        }
        let (rtype, id) = (rtype.to_string(), id.to_string());
        self.read(move |conn| {
            let Some(mut stored) = get_one(conn, &rtype, &id)? else {
                return Ok(None);
            };
            if with_members {
                stored.members = Some(load_members(conn, stored.position)?);
            }
            Ok(Some(stored))
        })
        .await
    }

    async fn replace(
        &self,
        w: ResourceWrite,
        expected: Option<i64>,
        with_groups: bool,
    ) -> Result<Modified, StoreError> {
        let data = document_text(&w)?;
        // Groups are read by the writer, whose cache holds the pages: a
        // reader's cache is dropped whenever the database changed since its
        // last read.
        let (w, (replaced, groups)) = self
            .write_with(w, move |conn, w| {
                let row = current_row(conn, &w.resource_type, &w.id, expected)?;
                let replaced = replace_in(conn, w, &data, row)?;
                let groups = match with_groups {
                    true => Some(groups_of_seq(conn, replaced.seq)?),
                    false => None,
                };
                Ok((replaced, groups))
            })
            .await?;
        Ok((replaced.into_stored(w), groups))
    }

    async fn modify(
        &self,
        rtype: &str,
        id: &str,
        with_groups: bool,
        mut change: Modification,
    ) -> Result<Option<Modified>, ModifyError> {
        /// What one run of the write came to. A refusal or a decline wrote
        /// nothing, so it is not a failed write to roll back.
        enum Step {
            Written(Box<(Replaced, ResourceWrite, Option<Vec<GroupMembership>>)>),
            Refused(scimd_core::error::ScimError),
            Declined,
        }
        let (rtype, id) = (rtype.to_string(), id.to_string());
        // In the writer: it reads the resource from its own cache (a
        // reader's is emptied by every commit), and no write comes between
        // the read and the replace, so there is nothing to compare and swap.
        let step = self
            .write(move |conn| {
                let old = get_one(conn, &rtype, &id)?.ok_or(StoreError::NotFound)?;
                let w = match change(&old) {
                    Ok(Some(w)) => w,
                    Ok(None) => return Ok(Step::Declined),
                    Err(e) => return Ok(Step::Refused(e)),
                };
                let data = document_text(&w)?;
                let row = CurrentRow {
                    seq: old.position,
                    version: old.version,
                    created: old.created,
                };
                let replaced = replace_in(conn, &w, &data, row)?;
                let groups = match with_groups {
                    true => Some(groups_of_seq(conn, replaced.seq)?),
                    false => None,
                };
                Ok(Step::Written(Box::new((replaced, w, groups))))
            })
            .await?;
        match step {
            Step::Written(written) => {
                let (replaced, w, groups) = *written;
                Ok(Some((replaced.into_stored(w), groups)))
            }
            Step::Refused(e) => Err(ModifyError::Refused(e)),
            Step::Declined => Ok(None),
        }
    }

    async fn delete(
        &self,
        rtype: &str,
        id: &str,
        expected: Option<i64>,
        dependents: Vec<(String, Cond)>,
    ) -> Result<(), StoreError> {
        let (rtype, id) = (rtype.to_string(), id.to_string());
        self.write(move |conn| {
            let CurrentRow { seq, .. } = current_row(conn, &rtype, &id, expected)?;
            conn.prepare_cached("DELETE FROM resources WHERE seq = ?")
                .and_then(|mut s| s.execute([seq]))
                .map_err(backend)?;
            for (dependent, cond) in &dependents {
                let sql = delete_matching(Dialect::Sqlite, dependent, cond);
                conn.prepare_cached(&sql.text)
                    .and_then(|mut s| s.execute(params_from_iter(sql.params.iter())))
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn query(&self, q: Query) -> Result<Page, StoreError> {
        self.read_here(move |conn| {
            // One read transaction: the total and the page come from one
            // snapshot (a concurrent commit cannot make them disagree), and
            // the WAL read lock is taken once instead of per statement.
            let snapshot = Snapshot::begin(conn)?;
            let page = query_in(conn, &q)?;
            snapshot.commit()?;
            Ok(page)
        })
    }

    async fn query_with_groups(
        &self,
        q: Query,
        groups_for: &[String],
    ) -> Result<(Page, Vec<Option<Vec<GroupMembership>>>), StoreError> {
        self.read_here(move |conn| {
            let snapshot = Snapshot::begin(conn)?;
            let page = query_in(conn, &q)?;
            let groups = page
                .items
                .iter()
                .map(|s| {
                    groups_for
                        .contains(&s.resource_type)
                        .then(|| groups_of_seq(conn, s.position))
                        .transpose()
                })
                .collect::<Result<Vec<_>, _>>()?;
            snapshot.commit()?;
            Ok((page, groups))
        })
    }

    async fn get_with_groups(
        &self,
        rtype: &str,
        id: &str,
    ) -> Result<Option<(StoredRow, Vec<GroupMembership>)>, StoreError> {
        self.read_inline(|conn| {
            // One snapshot: one WAL read lock instead of one per statement.
            let snapshot = Snapshot::begin(conn)?;
            let Some(stored) = get_row(conn, rtype, id)? else {
                return Ok(None);
            };
            let groups = groups_of_seq(conn, stored.position)?;
            snapshot.commit()?;
            Ok(Some((stored, groups)))
        })
    }
}

#[async_trait]
impl MembershipStore for SqliteStore {
    async fn change_members(
        &self,
        rtype: &str,
        id: &str,
        changes: Vec<MemberChange>,
        member_types: Vec<String>,
        expected: Option<i64>,
        now: String,
    ) -> Result<i64, StoreError> {
        let (rtype, id) = (rtype.to_string(), id.to_string());
        self.write(move |conn| {
            let CurrentRow { seq, version, .. } = current_row(conn, &rtype, &id, expected)?;
            let version = version + 1;
            conn.prepare_cached("UPDATE resources SET version = ?, modified = ? WHERE seq = ?")
                .and_then(|mut s| s.execute(params![version, now, seq]))
                .map_err(backend)?;
            for change in &changes {
                match change {
                    MemberChange::Add(members) => add_members(conn, seq, members, &member_types)?,
                    MemberChange::Remove(ids) => {
                        let mut del = conn
                            .prepare_cached(
                                "DELETE FROM members WHERE group_seq = ? AND member_seq = (SELECT seq FROM resources WHERE id = ?)",
                            )
                            .map_err(backend)?;
                        for member in ids {
                            del.execute(params![seq, member]).map_err(backend)?;
                        }
                    }
                    MemberChange::RemoveAll => {
                        conn.execute("DELETE FROM members WHERE group_seq = ?", [seq]).map_err(backend)?;
                    }
                }
            }
            Ok(version)
        })
        .await
    }

    async fn groups_of(
        &self,
        member_ids: &[String],
    ) -> Result<Vec<Vec<GroupMembership>>, StoreError> {
        self.read_here(|conn| {
            let snapshot = Snapshot::begin(conn)?;
            let out = member_ids
                .iter()
                .map(|id| groups_of(conn, id))
                .collect::<Result<Vec<_>, _>>()?;
            snapshot.commit()?;
            Ok(out)
        })
    }
}

#[async_trait]
impl RestoreStore for SqliteStore {
    async fn restore(&self, mut batch: Vec<RestoredResource>) -> Result<(), StoreError> {
        for r in &mut batch {
            r.write.members = None;
        }
        self.write(move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO resources (id, rtype, version, created, modified, data) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .map_err(backend)?;
            for r in &batch {
                let w = &r.write;
                let data = serde_json::Value::Object(w.data.clone()).to_string();
                insert
                    .execute(params![w.id, w.resource_type, r.version, r.created, w.now, data])
                    .map_err(backend)?;
                write_side_tables(conn, conn.last_insert_rowid(), w)?;
            }
            Ok(())
        })
        .await
    }

    async fn restore_members(
        &self,
        rtype: &str,
        id: &str,
        members: Vec<Member>,
        member_types: Vec<String>,
    ) -> Result<(), StoreError> {
        let (rtype, id) = (rtype.to_string(), id.to_string());
        self.write(move |conn| {
            let seq: Option<i64> = conn
                .query_row(
                    "SELECT seq FROM resources WHERE id = ? AND rtype = ?",
                    [&id, &rtype],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let Some(seq) = seq else {
                return Err(StoreError::NotFound);
            };
            conn.execute("DELETE FROM members WHERE group_seq = ?", [seq])
                .map_err(backend)?;
            add_members(conn, seq, &members, &member_types)?;
            conn.execute(
                "UPDATE members SET display = NULL WHERE group_seq = ? AND display = (
                   SELECT COALESCE(json_extract(r.data, '$.displayName'), json_extract(r.data, '$.userName'))
                     FROM resources r WHERE r.seq = members.member_seq)",
                [seq],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl RecordStore for SqliteStore {
    async fn record_get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let (kind, id) = (kind.to_string(), id.to_string());
        self.read(move |conn| {
            let data: Option<String> = conn
                .prepare_cached("SELECT data FROM records WHERE kind = ? AND id = ?")
                .and_then(|mut s| s.query_row([&kind, &id], |r| r.get(0)).optional())
                .map_err(backend)?;
            data.map(|d| {
                Ok(Record {
                    id,
                    data: parse_record(&d)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn record_list(&self, kind: &str) -> Result<Vec<Record>, StoreError> {
        let kind = kind.to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, data FROM records WHERE kind = ? ORDER BY id")
                .map_err(backend)?;
            let rows = stmt
                .query_map([&kind], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, data) = row.map_err(backend)?;
                out.push(Record {
                    id,
                    data: parse_record(&data)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn record_insert(&self, kind: &str, record: Record) -> Result<bool, StoreError> {
        let kind = kind.to_string();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO records (kind, id, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![kind, record.id, record.data.to_string()]))
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn record_put(&self, kind: &str, record: Record) -> Result<(), StoreError> {
        let kind = kind.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO records (kind, id, data) VALUES (?, ?, ?)
                 ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data",
            )
            .and_then(|mut s| s.execute(params![kind, record.id, record.data.to_string()]))
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn record_delete(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let (kind, id) = (kind.to_string(), id.to_string());
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM records WHERE kind = ? AND id = ?")
                .and_then(|mut s| s.execute([&kind, &id]))
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }
}

/// What a replace learnt in the database.
struct Replaced {
    seq: i64,
    version: i64,
    created: String,
    members: Option<Vec<Member>>,
}

impl Replaced {
    fn into_stored(self, w: ResourceWrite) -> StoredResource {
        StoredResource::replaced(w, self.seq, self.version, self.created, self.members)
    }
}

/// The row a write is about to change, as the writer sees it.
struct CurrentRow {
    seq: i64,
    version: i64,
    created: String,
}

/// The row of `id`, if its version is `expected` (any version if `None`).
/// Writes look the row up and then update it by rowid rather than with one
/// `UPDATE … RETURNING`: SQLite runs `RETURNING` as a trigger that fills a
/// temporary table, and a statement with a trigger gets a statement journal
/// (a copy of every page it changes); that cost more than the update itself
/// (41-48 µs against 16-17 µs per update, 20,000 updates of users). Both
/// run in the writer's transaction, so nothing comes between them.
fn current_row(
    conn: &Connection,
    rtype: &str,
    id: &str,
    expected: Option<i64>,
) -> Result<CurrentRow, StoreError> {
    let row = conn
        .prepare_cached("SELECT seq, version, created FROM resources WHERE id = ? AND rtype = ?")
        .and_then(|mut s| {
            s.query_row([id, rtype], |r| {
                Ok(CurrentRow {
                    seq: r.get(0)?,
                    version: r.get(1)?,
                    created: r.get(2)?,
                })
            })
            .optional()
        })
        .map_err(backend)?;
    match row {
        Some(row) if expected.is_none_or(|v| v == row.version) => Ok(row),
        other => Err(missed(other.map(|row| row.version))),
    }
}

/// Replaces the document of `row` with `w` and brings its side tables along.
fn replace_in(
    conn: &Connection,
    w: &ResourceWrite,
    data: &str,
    row: CurrentRow,
) -> Result<Replaced, StoreError> {
    let CurrentRow {
        seq,
        version,
        created,
    } = row;
    let version = version + 1;
    conn.prepare_cached("UPDATE resources SET version = ?, modified = ?, data = ? WHERE seq = ?")
        .and_then(|mut s| s.execute(params![version, w.now, data, seq]))
        .map_err(backend)?;
    rewrite_side_tables(conn, seq, w)?;
    let members = match &w.members {
        Some(_) => Some(load_members(conn, seq)?),
        None => None,
    };
    Ok(Replaced {
        seq,
        version,
        created,
        members,
    })
}

/// A read transaction on one connection, begun and ended with statements
/// prepared once (`Connection::transaction` parses `BEGIN` every time, which
/// showed in lookups' profiles); rolled back if dropped unfinished.
struct Snapshot<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Snapshot<'c> {
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        run_cached(conn, "BEGIN").map_err(backend)?;
        Ok(Snapshot { conn, open: true })
    }

    fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        if let Err(e) = run_cached(self.conn, "COMMIT") {
            let _ = run_cached(self.conn, "ROLLBACK");
            return Err(backend(e));
        }
        Ok(())
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = run_cached(self.conn, "ROLLBACK");
        }
    }
}

/// A list query's page, then its total (from the page when it shows it).
fn query_in(conn: &Connection, q: &Query) -> Result<Page, StoreError> {
    let (count, page) = page_queries(Dialect::Sqlite, q);
    let mut stmt = conn.prepare_cached(&page.text).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(page.params.iter()), row_to_resource)
        .map_err(backend)?;
    let mut items = Vec::new();
    for row in rows {
        let mut stored = to_stored(row.map_err(backend)?)?;
        if q.with_members {
            stored.members = Some(load_members(conn, stored.position)?);
        }
        items.push(stored);
    }
    drop(stmt);
    let total = match total_from_page(&q.paging, items.len()) {
        Some(total) => total,
        None => {
            let total: i64 = conn
                .prepare_cached(&count.text)
                .and_then(|mut s| s.query_row(params_from_iter(count.params.iter()), |r| r.get(0)))
                .map_err(backend)?;
            u64::try_from(total).unwrap_or(0)
        }
    };
    Ok(Page { total, items })
}

fn parse_record(data: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(data).map_err(|e| StoreError::Backend(format!("corrupt record: {e}")))
}

fn get_one(conn: &Connection, rtype: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
    get_row(conn, rtype, id)?.map(|row| row.parse()).transpose()
}

/// A point read: `COLUMNS` written out, so that no string is formatted per read.
const GET_ROW: &str = "SELECT r.seq, r.id, r.rtype, r.version, r.created, r.modified, r.data \
     FROM resources r WHERE r.id = ? AND r.rtype = ?";

fn get_row(conn: &Connection, rtype: &str, id: &str) -> Result<Option<StoredRow>, StoreError> {
    conn.prepare_cached(GET_ROW)
        .and_then(|mut s| s.query_row([id, rtype], row_to_resource).optional())
        .map(|row| row.map(to_row))
        .map_err(backend)
}

fn groups_of(conn: &Connection, member_id: &str) -> Result<Vec<GroupMembership>, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM resources WHERE id = ?")
        .and_then(|mut s| s.query_row([member_id], |r| r.get(0)).optional())
        .map_err(backend)?;
    match seq {
        Some(seq) => groups_of_seq(conn, seq),
        None => Ok(Vec::new()),
    }
}

fn groups_of_seq(conn: &Connection, member_seq: i64) -> Result<Vec<GroupMembership>, StoreError> {
    // Direct groups first, straight from the `(member_seq, group_seq)`
    // index: most resources are in no group or only in groups that are in
    // no group themselves, and then the recursive query below (which builds
    // temporary tables even when it finds nothing) is not needed.
    let direct: Vec<(i64, GroupMembership)> = conn
        .prepare_cached(
            "SELECT m.group_seq, r.id, json_extract(r.data, '$.displayName')
               FROM members m CROSS JOIN resources r ON r.seq = m.group_seq
              WHERE m.member_seq = ? ORDER BY m.group_seq",
        )
        .and_then(|mut s| {
            s.query_map([member_seq], |r| {
                Ok((
                    r.get(0)?,
                    GroupMembership {
                        group_id: r.get(1)?,
                        display: r.get(2)?,
                        direct: true,
                    },
                ))
            })?
            .collect()
        })
        .map_err(backend)?;
    // Is any of those groups itself a member? One probe of the same index.
    let nested: bool = !direct.is_empty()
        && conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM members g CROSS JOIN members m ON m.member_seq = g.group_seq
                                 WHERE g.member_seq = ?)",
            )
            .and_then(|mut s| s.query_row([member_seq], |r| r.get(0)))
            .map_err(backend)?;
    if !nested {
        return Ok(direct.into_iter().map(|(_, g)| g).collect());
    }
    // CROSS JOIN keeps SQLite from scanning every resource to satisfy the
    // ORDER BY; the CTE is tiny.
    let mut stmt = conn
        .prepare_cached(
            "WITH RECURSIVE g(seq, direct) AS (
               SELECT m.group_seq, 1 FROM members m WHERE m.member_seq = ?
               UNION
               SELECT m.group_seq, 0 FROM members m JOIN g ON m.member_seq = g.seq
             )
             SELECT r.id, json_extract(r.data, '$.displayName'), max(g.direct)
               FROM g CROSS JOIN resources r ON r.seq = g.seq GROUP BY g.seq ORDER BY g.seq",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([member_seq], |r| {
            Ok(GroupMembership {
                group_id: r.get(0)?,
                display: r.get(1)?,
                direct: r.get::<_, i64>(2)? == 1,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}
