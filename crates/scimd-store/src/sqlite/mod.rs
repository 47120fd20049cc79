//! SQLite store: WAL, `synchronous=FULL`, one writer thread that commits
//! concurrent writes together (group commit), and a pool of reader
//! connections used from blocking threads.
//!
//! - [`writer`]: the writer thread, its batches and group commit ([`writer::Job`]);
//! - [`writes`]: creates, replaces, PATCHes, deletes, membership changes;
//! - [`side_tables`]: the index rows, unique values and member rows written with a resource;
//! - [`reads`]: point reads, list queries, members, computed groups;
//! - [`restore`]: `scimd import`'s bulk inserts;
//! - [`snapshot`]: `scimd export`'s reads, in one read transaction;
//! - [`records`]: operational records;
//! - [`change_log`]: the change log's reads and pruning (appended by every write);
//! - [`migrations`]: the schema, versioned by `PRAGMA user_version`.
//!
//! The store traits are implemented here, each method handing over to the
//! module that does the work.

mod change_log;
mod migrations;
mod reads;
mod records;
mod restore;
mod side_tables;
mod snapshot;
mod streams;
mod wal_index;
mod writer;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use scimd_core::changelog::{AuditQuery, Change, Entry, Retention};
use scimd_core::query::{Cond, Query};
use scimd_core::store::{
    ChangeLogStore, ExportStore, GroupMembership, Member, MemberChange, MembershipStore,
    Modification, Modified, ModifyError, Page, Record, RecordStore, ResourceStore, ResourceWrite,
    RestoreStore, RestoredResource, Snapshot, Store, StoreError, StoredResource, StoredRow,
    StreamProgress, StreamStore,
};

use crate::translate::Param;
use migrations::migrate;
use writer::{Job, supervise};

/// Reader connections kept open. Above the number of requests in flight a
/// read would open (and configure, and re-prepare statements on) a fresh
/// connection each time: that cost 10x on filtered lists at 32 clients.
const MAX_READERS: usize = 128;

/// The embedded default store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Box<dyn Job>>>,
    /// Batches that had a failing write and ran again (`writer::run_batch`).
    reruns: Arc<AtomicU64>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Whether writes append to the change log.
    log: change_log::LogSwitch,
    /// Moves whenever a reader connection of this process sees that the
    /// database changed (`commit_epoch`); shared by the stores of this
    /// process on the same path, as the readers are.
    epoch: Arc<AtomicU64>,
    /// When an empty write last went through the writer for `ping`: held
    /// while one is under way, so that pings (unauthenticated `/readyz`)
    /// queue here, not in the writer.
    write_checked: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// How long a write that went through answers `ping` for others.
const WRITE_CHECK_KEPT: std::time::Duration = std::time::Duration::from_secs(1);

/// A worker thread's own connection to a database file, with what it
/// last saw of the database's commits: the wal-index header, or the
/// `PRAGMA data_version` when the header could not be read.
struct Reader {
    conn: Connection,
    /// Opened once `conn` has read the database (so the `-shm` file is
    /// the one SQLite uses, and stays while `conn` is open).
    index: std::cell::OnceCell<Option<wal_index::WalIndex>>,
    seen_header: std::cell::Cell<Option<wal_index::Header>>,
    seen: std::cell::Cell<Option<i64>>,
}

impl Reader {
    /// The database's wal-index header, if its `-shm` file is open and the
    /// read valid.
    fn header(&self) -> Option<wal_index::Header> {
        self.index.get()?.as_ref()?.header()
    }
}

/// The commit epoch of the database at `path`, one per path in the process
/// (the key of the worker threads' reader connections).
fn epoch_of(path: &Path) -> Arc<AtomicU64> {
    static EPOCHS: std::sync::OnceLock<Mutex<std::collections::HashMap<PathBuf, Arc<AtomicU64>>>> =
        std::sync::OnceLock::new();
    let epochs = EPOCHS.get_or_init(Default::default);
    let mut epochs = epochs.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(epochs.entry(path.to_path_buf()).or_default())
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

/// A SQLite failure as a store error: a full disk is `Full` (nothing was
/// written, a retry after space is freed succeeds), the rest `Backend`.
fn backend(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            StoreError::Full(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match test_vfs() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }
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

/// In builds for tests only (the `testing` feature), the fault tests' VFS
/// when `TESTING_SQLITE_VFS=volatile`: unsynced writes stay in memory and
/// die with the process (`scimd_testvfs`).
#[cfg(feature = "testing")]
fn test_vfs() -> Option<&'static str> {
    (std::env::var("TESTING_SQLITE_VFS").as_deref() == Ok("volatile")).then(scimd_testvfs::register)
}

#[cfg(not(feature = "testing"))]
fn test_vfs() -> Option<&'static str> {
    None
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut conn = open(path)?;
        if let Some(vfs) = test_vfs() {
            tracing::warn!(
                vfs,
                "SQLite through a test-only VFS: unsynced writes die with the process"
            );
        }
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
            .spawn(move || supervise(conn, rx, &counter))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(tx),
            reruns,
            readers: Arc::new(Mutex::new(Vec::new())),
            log: change_log::LogSwitch(true),
            epoch: epoch_of(path),
            write_checked: tokio::sync::Mutex::new(None),
        })
    }

    /// Makes the writer thread panic outside any write (feature `testing`);
    /// returns once it is about to.
    #[cfg(feature = "testing")]
    pub async fn inject_writer_panic(&self) -> Result<(), StoreError> {
        let (said, about_to) = tokio::sync::oneshot::channel();
        self.writer
            .lock()
            .map_err(|_| StoreError::Backend("writer lock poisoned".into()))?
            .send(Box::new(writer::PanicsWhenAnswered(said)))
            .map_err(|_| StoreError::Backend("writer thread stopped".into()))?;
        about_to
            .await
            .map_err(|_| StoreError::Backend("the fault did not run".into()))
    }

    /// With `on = false`, writes no longer append to the change log (the
    /// audit trail and event streams then see nothing new).
    pub fn with_change_log(mut self, on: bool) -> SqliteStore {
        self.log = change_log::LogSwitch(on);
        self
    }

    /// How many write batches had a failing write and ran again with a
    /// savepoint per write (see `run_batch`); for tests and diagnostics.
    pub fn batches_rerun(&self) -> u64 {
        self.reruns.load(Ordering::Relaxed)
    }

    /// Runs a point read (by primary key, a few index probes) on the calling
    /// async worker with that thread's own connection: in WAL mode readers
    /// never wait for the writer, so this is microseconds of work and saves
    /// the hop to a blocking thread on the hottest path (GET by id).
    fn read_inline<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_reader(|reader| f(&reader.conn))
    }

    /// This worker thread's [`Reader`] of the database, opened on first use.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        thread_local! {
            static READERS: std::cell::RefCell<std::collections::HashMap<PathBuf, Reader>> =
                std::cell::RefCell::new(std::collections::HashMap::new());
        }
        READERS.with(|cell| {
            let mut map = cell.borrow_mut();
            if !map.contains_key(&self.path) {
                let conn = open(&self.path)?;
                // One per async worker (a handful), serving most reads: a
                // larger page cache than the default 2 MB saves re-reading
                // index pages from the file.
                conn.execute_batch("PRAGMA cache_size=-16384;")
                    .map_err(backend)?;
                let reader = Reader {
                    conn,
                    index: std::cell::OnceCell::new(),
                    seen_header: std::cell::Cell::new(None),
                    seen: std::cell::Cell::new(None),
                };
                map.insert(self.path.clone(), reader);
            }
            match map.get(&self.path) {
                Some(reader) => f(reader),
                None => Err(StoreError::Backend("no reader connection".into())),
            }
        })
    }

    /// The commit epoch: it moves whenever this thread's reader sees that
    /// the database changed since it last looked, so a thread that has seen
    /// a commit (of this process's writer or another process's) has moved
    /// the epoch after it, and two equal epochs mean that no commit happened
    /// in between. It looks at the wal-index header (one `pread`, see
    /// [`wal_index`]), or, when that read is not valid, at `PRAGMA
    /// data_version` (a read transaction's start). Each is compared with
    /// what the same way saw last, which is no later than the thread's
    /// last look: a commit since then moves the epoch whichever way sees it.
    fn commit_epoch(&self) -> Result<u64, StoreError> {
        self.with_reader(|reader| {
            let header = reader.header();
            let changed = match header {
                Some(h) => reader.seen_header.replace(Some(h)) != Some(h),
                None => {
                    let version: i64 = reader
                        .conn
                        .prepare_cached("PRAGMA data_version")
                        .and_then(|mut s| s.query_row([], |r| r.get(0)))
                        .map_err(backend)?;
                    // Read now, so the index opened is the one in use.
                    reader
                        .index
                        .get_or_init(|| wal_index::WalIndex::open(&self.path));
                    reader.seen.replace(Some(version)) != Some(version)
                }
            };
            if changed {
                self.epoch.fetch_add(1, Ordering::SeqCst);
            }
            Ok(self.epoch.load(Ordering::SeqCst))
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

#[async_trait]
impl Store for SqliteStore {
    /// A read, then an empty write through the writer thread: ready means
    /// that both paths answer (a writer stuck behind another process's
    /// write lock is not ready).
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await?;
        let mut checked = self.write_checked.lock().await;
        if checked.is_some_and(|at| at.elapsed() < WRITE_CHECK_KEPT) {
            return Ok(());
        }
        self.write(|_| Ok(())).await?;
        *checked = Some(std::time::Instant::now());
        Ok(())
    }
}

#[async_trait]
impl ResourceStore for SqliteStore {
    async fn create(&self, w: ResourceWrite) -> Result<StoredResource, StoreError> {
        self.create_resource(w).await
    }

    async fn get(
        &self,
        rtype: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<StoredResource>, StoreError> {
        self.get_resource(rtype, id, with_members).await
    }

    async fn replace(
        &self,
        w: ResourceWrite,
        expected: Option<i64>,
        with_groups: bool,
    ) -> Result<Modified, StoreError> {
        self.replace_resource(w, expected, with_groups).await
    }

    async fn modify(
        &self,
        rtype: &str,
        id: &str,
        with_groups: bool,
        change: Modification,
    ) -> Result<Option<Modified>, ModifyError> {
        self.modify_resource(rtype, id, with_groups, change).await
    }

    async fn delete(
        &self,
        rtype: &str,
        id: &str,
        expected: Option<i64>,
        dependents: Vec<(String, Cond)>,
        change: Change,
    ) -> Result<(), StoreError> {
        self.delete_resource(rtype, id, expected, dependents, change)
            .await
    }

    async fn query(&self, q: Query) -> Result<Page, StoreError> {
        self.query_resources(q).await
    }

    async fn query_with_groups(
        &self,
        q: Query,
        groups_for: &[String],
    ) -> Result<(Page, Vec<Option<Vec<GroupMembership>>>), StoreError> {
        self.query_resources_with_groups(q, groups_for).await
    }

    async fn get_with_groups(
        &self,
        rtype: &str,
        id: &str,
    ) -> Result<Option<(StoredRow, Vec<GroupMembership>)>, StoreError> {
        self.get_resource_with_groups(rtype, id).await
    }

    fn commit_stamp(&self) -> Result<Option<u64>, StoreError> {
        self.commit_epoch().map(Some)
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
        change: Change,
    ) -> Result<i64, StoreError> {
        self.change_group_members(rtype, id, changes, member_types, expected, change)
            .await
    }

    async fn groups_of(
        &self,
        member_ids: &[String],
    ) -> Result<Vec<Vec<GroupMembership>>, StoreError> {
        self.groups_of_members(member_ids).await
    }
}

#[async_trait]
impl ExportStore for SqliteStore {
    async fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        self.take_snapshot().await
    }
}

#[async_trait]
impl RestoreStore for SqliteStore {
    async fn restore(&self, batch: Vec<RestoredResource>) -> Result<(), StoreError> {
        self.restore_resources(batch).await
    }

    async fn restore_members(
        &self,
        rtype: &str,
        id: &str,
        members: Vec<Member>,
        member_types: Vec<String>,
    ) -> Result<(), StoreError> {
        self.restore_group_members(rtype, id, members, member_types)
            .await
    }
}

#[async_trait]
impl RecordStore for SqliteStore {
    async fn record_get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.get_record(kind, id).await
    }

    async fn record_list(&self, kind: &str) -> Result<Vec<Record>, StoreError> {
        self.list_records(kind).await
    }

    async fn record_insert(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<bool, StoreError> {
        self.insert_record(kind, record, change).await
    }

    async fn record_put(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<(), StoreError> {
        self.put_record(kind, record, change).await
    }

    async fn record_delete(
        &self,
        kind: &str,
        id: &str,
        change: Change,
    ) -> Result<bool, StoreError> {
        self.delete_record(kind, id, change).await
    }
}

#[async_trait]
impl ChangeLogStore for SqliteStore {
    async fn changes(&self, query: AuditQuery) -> Result<Vec<Entry>, StoreError> {
        self.read_changes(query).await
    }

    async fn follow(&self, after: i64, limit: u32) -> Result<Vec<Entry>, StoreError> {
        // Positioned at commit: what follows is all there is.
        self.read_changes(AuditQuery::following(after, limit)).await
    }

    async fn prune_changes(&self, retention: Retention, floor: i64) -> Result<u64, StoreError> {
        self.prune_change_log(retention, floor).await
    }

    async fn change_head(&self) -> Result<i64, StoreError> {
        self.read_change_head().await
    }
}

#[async_trait]
impl StreamStore for SqliteStore {
    async fn stream_progress(&self, stream: &str) -> Result<Option<StreamProgress>, StoreError> {
        self.read_stream_progress(stream).await
    }

    async fn stream_start(&self, stream: &str, through: i64) -> Result<(), StoreError> {
        self.start_stream(stream, through).await
    }

    async fn stream_save(
        &self,
        stream: &str,
        progress: &StreamProgress,
    ) -> Result<bool, StoreError> {
        self.save_stream(stream, progress).await
    }

    async fn stream_forget(&self, stream: &str) -> Result<(), StoreError> {
        self.forget_stream(stream).await
    }

    async fn stream_lease(
        &self,
        stream: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.lease_stream(stream, owner, now_ms, until_ms).await
    }
}
