//! The change log on SQLite: appended by every write closure in the
//! writer's transaction ([`log_change`]), read by position, pruned in small
//! slices through the writer queue. The single writer commits in rowid
//! order, so a row's position is its commit order from the start. The
//! index by resource is written by the writer in bulk ([`Indexer`]), not
//! with each entry.

use std::time::{Duration, Instant};

use rusqlite::{Connection, params, params_from_iter};
use scimd_core::changelog::{AuditQuery, Change, Entry, Retention};
use scimd_core::store::StoreError;

use super::{SqliteStore, backend};
use crate::audit;
use crate::translate::Dialect;

/// Rows one prune transaction removes: a slice the writer gets through in
/// a few milliseconds, between other writes.
const PRUNE_SLICE: i64 = 2_000;

/// Whether this store keeps the change log (`change_log = false` turns it
/// off); copied into each write closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogSwitch(pub(crate) bool);

/// Appends `change` (the resource at `before` → `after`) to the log, inside
/// the caller's transaction; nothing when the log is off. `body` is
/// [`Change::body`], made by the caller before the write reaches the
/// writer thread, which every write shares.
pub(super) fn log_change(
    log: LogSwitch,
    conn: &Connection,
    change: &Change,
    body: &str,
    before: Option<i64>,
    after: Option<i64>,
) -> Result<(), StoreError> {
    if !log.0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO change_log (at, op, rtype, resource_id, version_before, version_after,
                                 client_id, subject, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            change.at,
            change.op.as_str(),
            change.resource_type,
            change.resource_id,
            before,
            after,
            change.actor.client_id,
            change.actor.subject,
            body,
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// How often the writer indexes new entries by resource: a second's worth
/// of entries in one sorted insert dirties each index page once, where an
/// index entry per write dirtied one random page per commit.
const INDEX_EVERY: Duration = Duration::from_secs(1);

/// The writer's bookkeeping of the bulk index by resource
/// (`change_log_by_resource`, complete up to `change_log_indexed.through`).
pub(super) struct Indexer {
    last: Instant,
    /// Whether a batch committed since the last run (entries may wait).
    pending: bool,
}

impl Default for Indexer {
    fn default() -> Self {
        Indexer {
            last: Instant::now(),
            pending: true,
        }
    }
}

impl Indexer {
    /// A batch committed.
    pub(super) fn wrote(&mut self) {
        self.pending = true;
    }

    pub(super) fn due(&self) -> bool {
        self.pending && self.last.elapsed() >= INDEX_EVERY
    }

    /// How long the idle writer may wait for a write before indexing.
    pub(super) fn wait(&self) -> Duration {
        if self.pending {
            INDEX_EVERY.saturating_sub(self.last.elapsed())
        } else {
            Duration::from_secs(3600)
        }
    }

    /// Indexes the entries past `through`, in one transaction; a failure
    /// leaves them for the next run (reads scan them meanwhile).
    pub(super) fn run(&mut self, conn: &Connection) {
        self.last = Instant::now();
        let indexed = conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO change_log_by_resource (resource_id, position)
               SELECT resource_id, position FROM change_log
                WHERE position > (SELECT through FROM change_log_indexed)
                ORDER BY resource_id, position;
             UPDATE change_log_indexed
                SET through = max(through, (SELECT coalesce(max(position), 0) FROM change_log));
             COMMIT;",
        );
        match indexed {
            Ok(()) => self.pending = false,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                tracing::warn!(error = %e, "indexing the change log by resource failed; retrying");
            }
        }
    }
}

impl SqliteStore {
    pub(super) async fn read_changes(&self, query: AuditQuery) -> Result<Vec<Entry>, StoreError> {
        self.read(move |conn| {
            let filter = audit::filter(Dialect::Sqlite, &query);
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT position, at, op, rtype, resource_id, version_before, version_after,
                            client_id, subject, body
                       FROM change_log WHERE {} ORDER BY position LIMIT {}",
                    filter.text, query.limit
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params_from_iter(filter.params.iter()), |r| {
                    Ok(Entry::from_columns(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        (r.get(5)?, r.get(6)?),
                        (r.get(7)?, r.get(8)?),
                        &r.get::<_, String>(9)?,
                    ))
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    pub(super) async fn prune_change_log(
        &self,
        retention: Retention,
        floor: i64,
    ) -> Result<u64, StoreError> {
        let mut pruned = 0;
        loop {
            // One slice per write: the writer runs other writes between them.
            let cutoff = audit::cutoff(retention);
            let keep = i64::try_from(retention.max_entries).unwrap_or(i64::MAX);
            let n = self
                .write(move |conn| {
                    let mut n = 0;
                    if let Some(cutoff) = &cutoff {
                        let slice =
                            "SELECT position FROM change_log WHERE at < ?1 AND position <= ?2
                                        AND position <= (SELECT coalesce(min(through), ?2) FROM streams)
                                      ORDER BY position LIMIT ?3";
                        n += prune_slice(conn, slice, params![cutoff, floor, PRUNE_SLICE])?;
                    }
                    if keep > 0 {
                        let slice = "SELECT position FROM change_log
                                      WHERE position <= (SELECT max(position) FROM change_log) - ?1
                                        AND position <= ?2
                                        AND position <= (SELECT coalesce(min(through), ?2) FROM streams)
                                      ORDER BY position LIMIT ?3";
                        n += prune_slice(conn, slice, params![keep, floor, PRUNE_SLICE])?;
                    }
                    Ok(n as u64)
                })
                .await?;
            pruned += n;
            if n == 0 {
                return Ok(pruned);
            }
        }
    }
}

/// Removes the entries at the positions `slice` selects, and their rows of
/// the index by resource; the number of entries removed.
fn prune_slice(
    conn: &Connection,
    slice: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<usize, StoreError> {
    conn.prepare_cached(&format!(
        "DELETE FROM change_log_by_resource WHERE (resource_id, position) IN (
           SELECT resource_id, position FROM change_log WHERE position IN ({slice}))"
    ))
    .and_then(|mut s| s.execute(params))
    .map_err(backend)?;
    conn.prepare_cached(&format!(
        "DELETE FROM change_log WHERE position IN ({slice})"
    ))
    .and_then(|mut s| s.execute(params))
    .map_err(backend)
}

impl SqliteStore {
    pub(super) async fn read_change_head(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            // The AUTOINCREMENT counter: what was given last, even when
            // pruning by age has removed every entry.
            conn.prepare_cached(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'change_log'), 0)",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(backend)
        })
        .await
    }
}
