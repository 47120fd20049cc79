//! The change log on PostgreSQL: appended by each write's own statement (a
//! data-modifying CTE, [`log_cte`]: no extra round trip), numbered in
//! commit order by the sequencer, read by position, pruned in slices.
//!
//! Why a sequencer: `change_log.id` comes from a sequence, and sequence
//! values are not commit order: a transaction may take id 7, commit after
//! the one that took id 8, and a reader that had already read "everything
//! after 6" would skip it for good. So readers never read by `id`. The
//! sequencer gives committed rows a `position` in one short transaction at
//! a time, serialised on the `change_head` row (a row lock: no advisory
//! locks, as CockroachDB and YugabyteDB run it): each run numbers the rows
//! committed since the last run, after every number already given. A row
//! that commits late is numbered late, never below a position a reader has
//! passed. Two changes of one resource keep their order: the second waits
//! for the first's row lock, so it commits, and is numbered, after it.

use std::sync::Weak;
use std::time::Duration;

use deadpool_postgres::Pool;
use scimd_core::changelog::{AuditQuery, Change, Entry, Retention};
use scimd_core::store::StoreError;
use tokio_postgres::types::ToSql;

use super::retry::{Fail, in_transaction, with_client};
use super::{PgStore, bind};
use crate::audit;
use crate::translate::Dialect;

/// How often the sequencer looks for committed, unnumbered rows (a read
/// of an empty partial index when there are none). Readers of the log
/// also run it before they read, so an audit query sees its own writes.
const SEQUENCER_INTERVAL: Duration = Duration::from_millis(50);

/// Most rows numbered in one sequencer transaction.
const SEQUENCER_SLICE: i64 = 10_000;

/// Rows one prune statement removes.
const PRUNE_SLICE: i64 = 2_000;

/// A data-modifying CTE named `log` that appends one change-log row per row
/// of `from`, with the resource type `rtype`, id `id` and versions
/// `before`/`after` (SQL expressions over `from`), and the change's own
/// fields as SQL expressions (at, op, client id, subject, body): bound
/// parameters ([`bound`]) for one change, or columns of `from` for several.
pub(super) fn log_cte(
    [at, op, client_id, subject, body]: [String; 5],
    rtype: &str,
    id: &str,
    before: &str,
    after: &str,
    from: &str,
) -> String {
    // A NULL op (the log turned off) appends nothing.
    format!(
        "log AS (INSERT INTO change_log (at, op, rtype, resource_id, version_before, version_after,
                                         client_id, subject, body)
                 SELECT {at}, {op}, {rtype}, {id}, {before}, {after}, {client_id}, {subject}, {body}
                   FROM {from} WHERE {op} IS NOT NULL)"
    )
}

/// A change's fields bound at `$first`..`$first+4` ([`LogParams::params`]),
/// for [`log_cte`].
pub(super) fn bound(first: usize) -> [String; 5] {
    std::array::from_fn(|i| format!("${}::text", first + i))
}

/// Whether this store keeps the change log (`change_log = false` turns it
/// off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogSwitch(pub(crate) bool);

/// A change's fields in the order [`log_cte`] takes them: at, op, client id, subject, body. One
/// change's ([`LogParams`]) or several changes' as arrays ([`LogColumns`]).
#[derive(Default)]
pub(super) struct LogFields<T, O, C, B> {
    at: T,
    /// `None` when the log is off: the CTE then appends nothing.
    op: O,
    client_id: C,
    subject: C,
    body: B,
}

/// One change's fields, bound as [`bound`] says.
pub(super) type LogParams<'c> = LogFields<&'c str, Option<&'static str>, Option<&'c str>, String>;

/// Several changes' fields as arrays, one element per change, that
/// [`log_cte`] reads from the rows they are unnested into.
pub(super) type LogColumns<'c> =
    LogFields<Vec<&'c str>, Vec<Option<&'static str>>, Vec<Option<&'c str>>, Vec<String>>;

impl<T, O, C, B> LogFields<T, O, C, B>
where
    T: ToSql + Sync,
    O: ToSql + Sync,
    C: ToSql + Sync,
    B: ToSql + Sync,
{
    /// The five fields, in order.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.at,
            &self.op,
            &self.client_id,
            &self.subject,
            &self.body,
        ]
    }
}

impl<'c> LogParams<'c> {
    pub(super) fn of(change: &'c Change, log: LogSwitch) -> Self {
        LogFields {
            at: &change.at,
            op: log.0.then(|| change.op.as_str()),
            client_id: change.actor.client_id.as_deref(),
            subject: change.actor.subject.as_deref(),
            body: change.body(),
        }
    }
}

impl<'c> LogColumns<'c> {
    pub(super) fn push(&mut self, change: &'c Change, log: LogSwitch) {
        let one = LogParams::of(change, log);
        self.at.push(one.at);
        self.op.push(one.op);
        self.client_id.push(one.client_id);
        self.subject.push(one.subject);
        self.body.push(one.body);
    }
}

/// Appends `change` of a record (no versions) inside `tx`.
pub(super) async fn log_record_change(
    tx: &deadpool_postgres::Transaction<'_>,
    change: &Change,
    switch: LogSwitch,
) -> Result<(), Fail> {
    let log = LogParams::of(change, switch);
    let mut params: Vec<&(dyn ToSql + Sync)> = log.params().to_vec();
    params.push(&change.resource_type);
    params.push(&change.resource_id);
    let sql = format!(
        "WITH {} SELECT 1",
        log_cte(
            bound(1),
            "$6::text",
            "$7::text",
            "NULL::int8",
            "NULL::int8",
            "(SELECT 1) AS one"
        )
    );
    tx.execute(sql.as_str(), &params).await?;
    Ok(())
}

impl PgStore {
    /// The entries `query` asks for; with `sequence_first`, what committed
    /// before this read gets its position first, so that an audit query
    /// sees the writes acknowledged before it (a follower's read does not
    /// ask: that was a numbering transaction per read of a push worker).
    pub(super) async fn read_changes(
        &self,
        query: AuditQuery,
        sequence_first: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        // Should numbering fail (a lock wait over a second, the database in
        // trouble), the read is still right, only a moment behind.
        if sequence_first && let Err(e) = number_committed(&self.pool).await {
            tracing::debug!(error = %e.into_store(), "numbering before an audit read failed");
        }
        let filter = audit::filter(Dialect::Postgres, &query);
        let sql = format!(
            "SELECT position, at, op, rtype, resource_id, version_before, version_after,
                    client_id, subject, body
               FROM change_log WHERE {} ORDER BY position LIMIT {}",
            filter.text, query.limit
        );
        // READ COMMITTED too: numbered entries never change, and a
        // SERIALIZABLE follower polling the log would take predicate locks
        // that turn concurrent writers into serialization failures.
        with_client!(self, |client| {
            let mut client = client;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
                .read_only(true)
                .start()
                .await?;
            let rows = tx.query(sql.as_str(), &bind(&filter.params)).await?;
            tx.commit().await?;
            let mut entries = Vec::with_capacity(rows.len());
            for r in rows {
                entries.push(Entry::from_columns(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    (r.try_get(5)?, r.try_get(6)?),
                    (r.try_get(7)?, r.try_get(8)?),
                    &r.try_get::<_, String>(9)?,
                ));
            }
            entries
        })
    }

    pub(super) async fn read_change_head(&self) -> Result<i64, StoreError> {
        if let Err(e) = number_committed(&self.pool).await {
            tracing::debug!(error = %e.into_store(), "numbering before reading the head failed");
        }
        with_client!(self, |client| {
            client
                .query_one("SELECT position FROM change_head WHERE one = 1", &[])
                .await?
                .try_get::<_, i64>(0)?
        })
    }

    pub(super) async fn prune_change_log(
        &self,
        retention: Retention,
        floor: i64,
    ) -> Result<u64, StoreError> {
        let cutoff = audit::cutoff(retention);
        let keep = i64::try_from(retention.max_entries).unwrap_or(i64::MAX);
        let mut pruned = 0;
        loop {
            let n: u64 = in_transaction!(self, |tx| {
                let mut n = 0;
                if let Some(cutoff) = &cutoff {
                    n += tx
                        .execute(
                            "DELETE FROM change_log WHERE position IS NOT NULL AND position IN (
                               SELECT position FROM change_log WHERE position <= $3 AND at < $1
                                  AND position <= (SELECT coalesce(min(through), $3) FROM streams)
                                ORDER BY position LIMIT $2)",
                            &[cutoff, &PRUNE_SLICE, &floor],
                        )
                        .await?;
                }
                if keep > 0 {
                    n += tx
                        .execute(
                            "DELETE FROM change_log WHERE position IS NOT NULL AND position IN (
                               SELECT position FROM change_log
                                WHERE position <= (SELECT position FROM change_head) - $1
                                  AND position <= $3
                                  AND position <= (SELECT coalesce(min(through), $3) FROM streams)
                                ORDER BY position LIMIT $2)",
                            &[&keep, &PRUNE_SLICE, &floor],
                        )
                        .await?;
                }
                n
            })?;
            pruned += n;
            if n == 0 {
                return Ok(pruned);
            }
        }
    }
}

/// Numbers the committed rows that have no position yet, after the last
/// position given; returns how many. Cheap when there are none (one read
/// of an empty partial index, no lock taken).
pub(super) async fn number_committed(pool: &Pool) -> Result<u64, Fail> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| Fail::Store(StoreError::Unavailable(format!("database connection: {e}"))))?;
    // READ COMMITTED whatever the database's default: the order comes from
    // the row lock, and a SERIALIZABLE sequencer's predicate read of every
    // unnumbered row would make each concurrent writer a candidate for a
    // serialization failure.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let waiting = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM change_log WHERE position IS NULL)",
            &[],
        )
        .await?
        .try_get::<_, bool>(0)?;
    if !waiting {
        tx.commit().await?;
        return Ok(0);
    }
    tx.batch_execute(SEQUENCER_SETTINGS).await?;
    // First the lock, alone: the next statement then reads with a
    // snapshot taken after any other sequencer's commit.
    // Readers run this too, before they read (so that they see what was
    // acknowledged before them): they wait for a run in progress, which
    // takes milliseconds, and for a second at most.
    let head: i64 = tx
        .query_one(
            "SELECT position FROM change_head WHERE one = 1 FOR UPDATE",
            &[],
        )
        .await?
        .try_get(0)?;
    let numbered = tx
        .execute(NUMBER_COMMITTED, &[&head, &SEQUENCER_SLICE])
        .await?;
    let moved = head + i64::try_from(numbered).unwrap_or(0);
    tx.execute(
        "UPDATE change_head SET position = $1 WHERE one = 1",
        &[&moved],
    )
    .await?;
    tx.commit().await?;
    Ok(numbered)
}

/// The sequencer's transaction settings. A sequencer that holds the lock
/// and stalls (its process paused) must not stall every other one: it gives
/// up after a second and tries later. And no nested loop: once autovacuum
/// had analysed `change_log` while few rows waited, PostgreSQL joined
/// [`NUMBER_COMMITTED`]'s rows to its window subquery by a nested loop that
/// ran the subquery again for every waiting row, quadratic in the backlog
/// (0.3-2.9 s a run with a few thousand waiting, 267 ms on average over a
/// benchmark's rounds). A hash or merge join is linear whatever the
/// statistics say.
pub(super) const SEQUENCER_SETTINGS: &str =
    "SET LOCAL lock_timeout = '1s'; SET LOCAL enable_nestloop = off";

/// Numbers the first `$2` committed rows without a position, in `id`
/// order, from `$1` + 1.
pub(super) const NUMBER_COMMITTED: &str = "UPDATE change_log c SET position = $1 + t.n
   FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
           FROM change_log WHERE position IS NULL ORDER BY id LIMIT $2) t
  WHERE c.id = t.id AND c.position IS NULL";

/// Runs the sequencer every [`SEQUENCER_INTERVAL`] while the store lives.
/// A failed run (the database restarting) is logged and tried again.
pub(super) fn sequence(pool: Pool, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(SEQUENCER_INTERVAL).await;
            if alive.upgrade().is_none() {
                return;
            }
            match number_committed(&pool).await {
                Ok(_) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    let e = e.into_store();
                    tracing::warn!(error = %e, "change log sequencer failed; retrying");
                }
                Err(_) => {}
            }
        }
    });
}
