//! The change log on SQLite: appended by every write closure in the
//! writer's transaction ([`log_change`]), read by position, pruned in small
//! slices through the writer queue. The single writer commits in rowid
//! order, so a row's position is its commit order from the start.

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
            let keep = retention.max_entries;
            let n = self
                .write(move |conn| {
                    let mut n = 0;
                    if let Some(cutoff) = &cutoff {
                        n += conn
                            .prepare_cached(
                                "DELETE FROM change_log WHERE position IN (
                                   SELECT position FROM change_log WHERE at < ? AND position <= ?
                                    ORDER BY position LIMIT ?)",
                            )
                            .and_then(|mut s| s.execute(params![cutoff, floor, PRUNE_SLICE]))
                            .map_err(backend)?;
                    }
                    if keep > 0 {
                        n += conn
                            .prepare_cached(
                                "DELETE FROM change_log WHERE position IN (
                                   SELECT position FROM change_log
                                    WHERE position <= (SELECT max(position) FROM change_log) - ?
                                      AND position <= ?
                                    ORDER BY position LIMIT ?)",
                            )
                            .and_then(|mut s| {
                                s.execute(params![
                                    i64::try_from(keep).unwrap_or(i64::MAX),
                                    floor,
                                    PRUNE_SLICE
                                ])
                            })
                            .map_err(backend)?;
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
