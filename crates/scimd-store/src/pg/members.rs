//! Membership changes: queued per group in the process and applied
//! together, each with its own version bump and `If-Match` check, in one
//! transaction (pipelined when every change is one add or one remove).

use std::collections::HashMap;

use scimd_core::changelog::Change;
use scimd_core::store::{Member, MemberChange, ResourceWrite, StoreError};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::PgStore;
use super::change_log::{LogParams, LogSwitch, bound, log_cte};
use super::retry::{Fail, in_transaction, is_code};
use super::writes::explain_miss;
use crate::rules::member_type_ok;

/// A group by resource type and id.
pub(super) type GroupKey = (String, String);

/// Most membership changes applied in one transaction.
const MAX_MEMBER_BATCH: usize = 256;

/// One caller's membership change, waiting for the group's applier.
pub(super) struct PendingChange {
    changes: Vec<MemberChange>,
    member_types: Vec<String>,
    expected: Option<i64>,
    change: Change,
    reply: tokio::sync::oneshot::Sender<Result<i64, StoreError>>,
}

impl PgStore {
    pub(super) async fn change_group_members(
        &self,
        rtype: &str,
        id: &str,
        changes: Vec<MemberChange>,
        member_types: Vec<String>,
        expected: Option<i64>,
        change: Change,
    ) -> Result<i64, StoreError> {
        // The group's version changes: an entry of it would be stale.
        self.recent.forget(id);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let key = (rtype.to_string(), id.to_string());
        let lead = {
            let mut queues = self
                .member_queues
                .lock()
                .map_err(|_| StoreError::Backend("membership queue poisoned".into()))?;
            let first = !queues.contains_key(&key);
            queues.entry(key.clone()).or_default().push(PendingChange {
                changes,
                member_types,
                expected,
                change,
                reply,
            });
            first
        };
        if lead {
            // A task of its own: it must finish the queue even if this
            // caller's request is dropped.
            let store = self.clone();
            tokio::spawn(async move { store.apply_member_queue(key).await });
        }
        answer
            .await
            .map_err(|_| StoreError::Backend("membership change dropped".into()))?
    }
}

/// Replaces the memberships of the group `seq` when the write sets them.
pub(super) async fn write_members(
    tx: &deadpool_postgres::Transaction<'_>,
    seq: i64,
    w: &ResourceWrite,
) -> Result<(), Fail> {
    if let Some(members) = &w.members {
        tx.execute("DELETE FROM members WHERE group_seq = $1", &[&seq])
            .await?;
        add_members(tx, seq, members, &w.member_types).await?;
    }
    Ok(())
}

/// Adds members in two statements whatever their number; the first unknown
/// (or wrongly typed) member in request order is the one reported, as in
/// the SQLite store.
pub(super) async fn add_members(
    tx: &deadpool_postgres::Transaction<'_>,
    group_seq: i64,
    members: &[Member],
    types: &[String],
) -> Result<(), Fail> {
    if members.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = members.iter().map(|m| m.value.as_str()).collect();
    let found = find_resources(tx, &ids).await?;
    let (seqs, displays) = member_rows(&found, members, types)?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO members (group_seq, member_seq, display)
             SELECT $1::int8, u.m, u.d FROM unnest($2::int8[], $3::text[]) AS u(m, d)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&insert, &[&group_seq, &seqs, &displays])
        .await
        .map_err(member_insert_failure)?;
    Ok(())
}

/// The resources among `ids`, by id: (`seq`, type).
async fn find_resources(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[&str],
) -> Result<HashMap<String, (i64, String)>, Fail> {
    let find = tx
        .prepare_cached("SELECT id, seq, rtype FROM resources WHERE id = ANY($1::text[])")
        .await?;
    let mut found = HashMap::new();
    for row in tx.query(&find, &[&ids]).await? {
        found.insert(
            row.try_get::<_, String>(0)?,
            (row.try_get::<_, i64>(1)?, row.try_get::<_, String>(2)?),
        );
    }
    Ok(found)
}

/// A member deleted between the lookup and the insert (a foreign key
/// violation): the re-run finds it gone and names it, as if the delete had
/// come first.
fn member_insert_failure(e: tokio_postgres::Error) -> Fail {
    if is_code(&e, &SqlState::FOREIGN_KEY_VIOLATION) {
        Fail::Retry
    } else {
        Fail::Db(e)
    }
}

/// The rows to insert for `members`, given the resources `found` by id
/// (`seq`, type): the first unknown or wrongly typed member in request order
/// is the one reported, as in the SQLite store; the first mention of a
/// member wins, as with row-by-row inserts.
fn member_rows<'m>(
    found: &HashMap<String, (i64, String)>,
    members: &'m [Member],
    types: &[String],
) -> Result<(Vec<i64>, Vec<Option<&'m str>>), Fail> {
    let mut seen = std::collections::HashSet::new();
    let mut seqs = Vec::with_capacity(members.len());
    let mut displays = Vec::with_capacity(members.len());
    for m in members {
        let Some((seq, rtype)) = found.get(&m.value) else {
            return Err(StoreError::UnknownMember(m.value.clone()).into());
        };
        if !member_type_ok(types, rtype, m) {
            return Err(StoreError::UnknownMember(m.value.clone()).into());
        }
        if seen.insert(*seq) {
            seqs.push(*seq);
            displays.push(m.display.as_deref());
        }
    }
    Ok((seqs, displays))
}

impl PgStore {
    /// Applies the changes queued for `key` until none are left.
    async fn apply_member_queue(&self, key: GroupKey) {
        // If this task ends any other way (the runtime shutting down), the
        // queue goes with it: its callers hear an error instead of waiting
        // for an applier that no longer exists.
        struct Abandon<'a> {
            store: &'a PgStore,
            key: &'a GroupKey,
            armed: bool,
        }
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if self.armed
                    && let Ok(mut queues) = self.store.member_queues.lock()
                {
                    queues.remove(self.key);
                }
            }
        }
        let mut abandon = Abandon {
            store: self,
            key: &key,
            armed: true,
        };
        loop {
            let batch: Vec<PendingChange> = {
                let Ok(mut queues) = self.member_queues.lock() else {
                    return;
                };
                match queues.get_mut(&key) {
                    Some(pending) if !pending.is_empty() => {
                        let n = pending.len().min(MAX_MEMBER_BATCH);
                        pending.drain(..n).collect()
                    }
                    _ => {
                        // Under the lock: a caller arriving after this
                        // starts a new applier.
                        queues.remove(&key);
                        abandon.armed = false;
                        return;
                    }
                }
            };
            self.apply_member_batch(&key, batch).await;
        }
    }

    async fn apply_member_batch(&self, (rtype, id): &GroupKey, batch: Vec<PendingChange>) {
        if batch.len() > 1 {
            let together = in_transaction!(self, |tx| {
                if let Some(results) =
                    pipelined_member_changes(&tx, rtype, id, &batch, self.log).await?
                {
                    results
                } else {
                    let mut results = Vec::with_capacity(batch.len());
                    for p in &batch {
                        match apply_member_change(&tx, rtype, id, p, self.log).await {
                            // Decided before anything was written for it.
                            Err(Fail::Store(
                                e @ (StoreError::NotFound | StoreError::VersionMismatch { .. }),
                            )) => results.push(Err(e)),
                            other => results.push(Ok(other?)),
                        }
                    }
                    results
                }
            });
            if let Ok(results) = together {
                for (p, result) in batch.into_iter().zip(results) {
                    let _ = p.reply.send(result);
                }
                return;
            }
            // One change failed in a way that spoils the transaction (an
            // unknown member, a database error): nothing was committed; each
            // goes again alone and gets its own answer.
        }
        for p in batch {
            let result = in_transaction!(self, |tx| {
                apply_member_change(&tx, rtype, id, &p, self.log).await?
            });
            let _ = p.reply.send(result);
        }
    }
}

/// A batch in which every change is one add or one remove: each becomes a
/// single statement (bump the version, then change the rows, in one
/// data-modifying CTE) and all are sent at once, in order, without waiting
/// for each answer (the protocol's pipelining): a few round trips for the
/// whole batch instead of three per change. `None` when the batch has
/// another shape; an unknown member fails the batch (the caller re-runs
/// its changes one by one to answer each).
async fn pipelined_member_changes(
    tx: &deadpool_postgres::Transaction<'_>,
    rtype: &str,
    id: &str,
    batch: &[PendingChange],
    switch: LogSwitch,
) -> Result<Option<Vec<Result<i64, StoreError>>>, Fail> {
    let simple = batch.iter().all(|p| {
        matches!(
            p.changes.as_slice(),
            [MemberChange::Add(_)] | [MemberChange::Remove(_)]
        )
    });
    if !simple {
        return Ok(None);
    }
    let mentioned: Vec<&str> = batch
        .iter()
        .flat_map(|p| match p.changes.as_slice() {
            [MemberChange::Add(members)] => members.iter().map(|m| m.value.as_str()).collect(),
            _ => Vec::new(),
        })
        .collect();
    let found = find_resources(tx, &mentioned).await?;
    let add = tx
        .prepare_cached(&format!(
            "WITH g AS (
               UPDATE resources SET version = version + 1, modified = $1
                WHERE id = $2 AND rtype = $3 AND ($4::int8 IS NULL OR version = $4)
                RETURNING seq, version),
             added AS (
               INSERT INTO members (group_seq, member_seq, display)
               SELECT g.seq, u.m, u.d FROM g, unnest($5::int8[], $6::text[]) AS u(m, d)
               ON CONFLICT DO NOTHING),
             {}
             SELECT version FROM g",
            group_log(7)
        ))
        .await?;
    let remove = tx
        .prepare_cached(&format!(
            "WITH g AS (
               UPDATE resources SET version = version + 1, modified = $1
                WHERE id = $2 AND rtype = $3 AND ($4::int8 IS NULL OR version = $4)
                RETURNING seq, version),
             removed AS (
               DELETE FROM members m USING g
                WHERE m.group_seq = g.seq
                  AND m.member_seq = ANY(ARRAY(SELECT seq FROM resources WHERE id = ANY($5::text[])))),
             {}
             SELECT version FROM g",
            group_log(6)
        ))
        .await?;
    // Every statement's parameters first (they must outlive the queries).
    let mut adds: Vec<(Vec<i64>, Vec<Option<&str>>)> = Vec::new();
    for p in batch {
        if let [MemberChange::Add(members)] = p.changes.as_slice() {
            adds.push(member_rows(&found, members, &p.member_types)?);
        }
    }
    let removes: Vec<Vec<&str>> = batch
        .iter()
        .filter_map(|p| match p.changes.as_slice() {
            [MemberChange::Remove(ids)] => Some(ids.iter().map(String::as_str).collect()),
            _ => None,
        })
        .collect();
    let logs: Vec<LogParams> = batch
        .iter()
        .map(|p| LogParams::of(&p.change, switch))
        .collect();
    let (mut next_add, mut next_remove) = (adds.iter(), removes.iter());
    let mut statements: Vec<(bool, Vec<&(dyn ToSql + Sync)>)> = Vec::with_capacity(batch.len());
    for (p, log) in batch.iter().zip(&logs) {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&p.change.at, &id, &rtype, &p.expected];
        let is_add = matches!(p.changes.as_slice(), [MemberChange::Add(_)]);
        if is_add {
            let Some((seqs, displays)) = next_add.next() else {
                return Ok(None);
            };
            params.push(seqs);
            params.push(displays);
        } else {
            let Some(ids) = next_remove.next() else {
                return Ok(None);
            };
            params.push(ids);
        }
        params.extend_from_slice(&log.params());
        statements.push((is_add, params));
    }
    let queries = statements
        .iter()
        .map(|(is_add, params)| tx.query_opt(if *is_add { &add } else { &remove }, params));
    // Polled together: sent back to back, executed in this order.
    let rows = futures_util::future::try_join_all(queries)
        .await
        .map_err(member_insert_failure)?;
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        results.push(match row {
            Some(row) => Ok(row.try_get::<_, i64>(0)?),
            None => match explain_miss(tx, rtype, id).await {
                Fail::Store(e) => Err(e),
                other => return Err(other),
            },
        });
    }
    Ok(Some(results))
}

/// The change-log CTE of a membership change: the group `g` (`$2`, `$3`)
/// from its version before to after, the change's fields from `$first`.
fn group_log(first: usize) -> String {
    log_cte(bound(first), "$3", "$2", "g.version - 1", "g.version", "g")
}

/// One membership change: bumps the group's version (which takes its row
/// lock), then adds or removes the rows.
async fn apply_member_change(
    tx: &deadpool_postgres::Transaction<'_>,
    rtype: &str,
    id: &str,
    p: &PendingChange,
    switch: LogSwitch,
) -> Result<i64, Fail> {
    let update = tx
        .prepare_cached(&format!(
            "WITH g AS (
               UPDATE resources SET version = version + 1, modified = $1
                WHERE id = $2 AND rtype = $3 AND ($4::int8 IS NULL OR version = $4)
                RETURNING seq, version),
             {}
             SELECT seq, version FROM g",
            group_log(5)
        ))
        .await?;
    let log = LogParams::of(&p.change, switch);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&p.change.at, &id, &rtype, &p.expected];
    params.extend_from_slice(&log.params());
    let Some(row) = tx.query_opt(&update, &params).await? else {
        return Err(explain_miss(tx, rtype, id).await);
    };
    let seq: i64 = row.try_get(0)?;
    let version: i64 = row.try_get(1)?;
    for change in &p.changes {
        match change {
            MemberChange::Add(members) => add_members(tx, seq, members, &p.member_types).await?,
            MemberChange::Remove(ids) => {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let remove = tx
                    .prepare_cached(
                        "DELETE FROM members WHERE group_seq = $1
                           AND member_seq = ANY(ARRAY(SELECT seq FROM resources WHERE id = ANY($2::text[])))",
                    )
                    .await?;
                tx.execute(&remove, &[&seq, &ids]).await?;
            }
            MemberChange::RemoveAll => {
                tx.execute("DELETE FROM members WHERE group_seq = $1", &[&seq])
                    .await?;
            }
        }
    }
    Ok(version)
}
