//! The writer thread: writes queue as [`Job`]s, and the thread commits
//! whatever has queued in one transaction (group commit, one fsync for the
//! batch), re-running a batch with a savepoint per write when one of them
//! failed after others ([`run_batch`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use scimd_core::store::{ResourceWrite, StoreError};

use super::change_log::Indexer;
use super::{SqliteStore, backend};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// A write waiting for the writer thread. It may run twice: first in a
/// batch without savepoints and, if another write of that batch failed,
/// again in a savepoint of its own ([`run_batch`]); so a write is a closure
/// that can be called again, not consumed.
pub(super) trait Job: Send {
    /// Runs the write, keeping its outcome; true if it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the kept outcome is a full disk.
    fn disk_full(&self) -> Option<String>;
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
        // Writes run the core's code (a PATCH that raced another is computed inside its write):
        // a panic there must fail that write, not end the writer thread and
        // with it every later write.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.write)(conn)))
            .unwrap_or_else(|_| Err(StoreError::Backend("the write panicked".into())));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn disk_full(&self) -> Option<String> {
        match &self.outcome {
            Some(Err(StoreError::Full(why))) => Some(why.clone()),
            _ => None,
        }
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

impl SqliteStore {
    /// Runs `f` inside the next group-committed write transaction; resolves
    /// after the commit. `f` may run twice ([`Job`]); only one run's effects
    /// are committed.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
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
    pub(super) async fn write_with<T, F>(
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
}

/// The writer thread: [`writer_loop`], run again if it panics outside a
/// write (a write's own panic fails only that write, [`Job::run`]). The
/// writes of the batch in flight then hear that the writer dropped them
/// (their outcome is unknown: the panic may have followed the commit), and
/// the writes queued behind it are committed as usual. Ends when the store
/// is dropped.
pub(super) fn supervise(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>, reruns: &AtomicU64) {
    loop {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            writer_loop(&conn, &rx, reruns);
        }));
        if ran.is_ok() {
            return;
        }
        metrics::counter!("scimd_sqlite_writer_restarts_total").increment(1);
        tracing::error!(
            "the SQLite writer panicked outside a write; it goes on with the next writes"
        );
        if !conn.is_autocommit() {
            let _ = run_cached(&conn, "ROLLBACK");
        }
    }
}

fn writer_loop(conn: &Connection, rx: &mpsc::Receiver<Box<dyn Job>>, reruns: &AtomicU64) {
    let mut indexer = Indexer::default();
    let mut idle = IdleCheckpoint::default();
    loop {
        let first = match rx.recv_timeout(indexer.wait().min(idle.wait())) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if indexer.due() {
                    indexer.run(conn);
                    // Its pages too are copied once the writer idles again.
                    idle.wrote();
                }
                idle.run_if_due(conn);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let (left_out, commit) = run_batch(conn, &mut batch, reruns);
        metrics::histogram!("scimd_sqlite_writer_batch_size").record(batch.len() as f64);
        metrics::histogram!("scimd_sqlite_commit_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &commit {
            eprintln!("scimd: a write transaction failed: {e}");
        }
        for (i, job) in batch.into_iter().enumerate() {
            job.answer(match &commit {
                // Left out before the transaction that failed: its own outcome stands.
                _ if i < left_out => Ok(()),
                Ok(()) => Ok(()),
                Err(StoreError::Full(e)) => Err(StoreError::Full(e.clone())),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            });
        }
        indexer.wrote();
        idle.wrote();
        if indexer.due() {
            indexer.run(conn);
        }
    }
}

/// How long the writer must have had nothing to write before it
/// checkpoints the WAL.
const IDLE_BEFORE_CHECKPOINT: Duration = Duration::from_millis(200);

/// The checkpoint of an idle writer. SQLite checkpoints on the writer's
/// connection after the commit that fills `wal_autocheckpoint` pages, and
/// the writes queued behind that commit wait for the copy and its syncs
/// (tens of milliseconds). Copying the WAL once writes pause (a `PASSIVE`
/// checkpoint: it waits for no reader) lets the next burst, an identity
/// provider's sync after a quiet spell, start on an empty WAL, which the
/// first write then rewinds to its beginning.
#[derive(Default)]
struct IdleCheckpoint {
    /// When the last batch committed, if none was checkpointed since.
    since: Option<Instant>,
}

impl IdleCheckpoint {
    fn wrote(&mut self) {
        self.since = Some(Instant::now());
    }

    /// How long the idle writer may wait for a write before checkpointing.
    fn wait(&self) -> Duration {
        match self.since {
            Some(at) => IDLE_BEFORE_CHECKPOINT.saturating_sub(at.elapsed()),
            None => Duration::from_secs(3600),
        }
    }

    fn run_if_due(&mut self, conn: &Connection) {
        if self
            .since
            .is_none_or(|at| at.elapsed() < IDLE_BEFORE_CHECKPOINT)
        {
            return;
        }
        self.since = None;
        let started = Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => metrics::histogram!("scimd_sqlite_idle_checkpoint_seconds")
                .record(started.elapsed().as_secs_f64()),
            // Nothing is lost: the next checkpoint copies these pages too.
            Err(e) => tracing::warn!(error = %e, "checkpointing the idle WAL failed"),
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
///
/// Returns how many writes, first in line, were left out (each failed and
/// was rolled back alone: their outcomes stand whatever happens to the
/// rest), and how the transaction of the rest ended.
fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
    reruns: &AtomicU64,
) -> (usize, Result<(), StoreError>) {
    let mut start = 0;
    loop {
        if start == batch.len() {
            return (start, Ok(()));
        }
        if let Err(e) = run_cached(conn, "BEGIN IMMEDIATE") {
            return (start, Err(backend(e)));
        }
        let Some(failed) = batch[start..].iter_mut().position(|job| !job.run(conn)) else {
            return (start, commit(conn));
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
    (start, rerun(conn, &mut batch[start..]))
}

/// The writes of `batch` again, each in a savepoint of its own, in one
/// transaction.
fn rerun(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    run_cached(conn, "BEGIN IMMEDIATE").map_err(backend)?;
    for job in batch.iter_mut() {
        // Prepared once: parsing these statements for every job showed up
        // in the writer's profile.
        run_cached(conn, "SAVEPOINT job").map_err(|e| abandon(conn, backend(e)))?;
        if !job.run(conn) {
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O
                // error): the writes before this one are gone too, and
                // going on would commit the rest one statement at a time.
                // Every write of the batch hears why (507 for a full disk).
                return Err(match job.disk_full() {
                    Some(why) => StoreError::Full(why),
                    None => StoreError::Backend("the write transaction was rolled back".into()),
                });
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

pub(super) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// A write whose answer panics: a fault outside any write, for the tests of
/// [`supervise`]. It says when it is about to panic (the batch it came in
/// was collected by then).
#[cfg(feature = "testing")]
pub(super) struct PanicsWhenAnswered(pub(super) tokio::sync::oneshot::Sender<()>);

#[cfg(feature = "testing")]
impl Job for PanicsWhenAnswered {
    fn run(&mut self, _: &Connection) -> bool {
        true
    }

    fn disk_full(&self) -> Option<String> {
        None
    }

    #[allow(clippy::panic)]
    fn answer(self: Box<Self>, _: Result<(), StoreError>) {
        let _ = self.0.send(());
        panic!("a fault injected into the SQLite writer by a test");
    }
}
