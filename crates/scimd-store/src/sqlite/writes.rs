//! Writes of resources and memberships, each a closure run by the writer
//! thread ([`super::writer`]) in its group-committed transaction.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use scimd_core::changelog::Change;
use scimd_core::query::Cond;
use scimd_core::store::{
    GroupMembership, Member, MemberChange, Modification, Modified, ModifyError, ResourceWrite,
    StoreError, StoredResource,
};

use super::change_log::{LogSwitch, log_change};
use super::reads::{get_one, groups_of_seq, load_members};
use super::side_tables::{
    add_members, is_unique_violation, rewrite_side_tables, write_side_tables,
};
use super::{SqliteStore, backend};
use crate::rules::{document_text, missed};
use crate::translate::{Dialect, delete_matching};

impl SqliteStore {
    pub(super) async fn create_resource(
        &self,
        w: ResourceWrite,
    ) -> Result<StoredResource, StoreError> {
        let log = self.log;
        let body = w.change.body();
        // Serialised here, on the caller's thread: the writer is the bottleneck.
        let data = document_text(&w)?;
        let (w, (seq, members)) = self
            .write_with(w, move |conn, w| {
                owner_exists(conn, w)?;
                conn.prepare_cached(
                    "INSERT INTO resources (id, rtype, version, created, modified, data) VALUES (?, ?, 1, ?, ?, ?)",
                )
                .and_then(|mut s| s.execute(params![w.id, w.resource_type, w.now, w.now, data]))
                .map_err(|e| match is_unique_violation(&e) {
                    // An id chosen by the caller (`POST /Me`) that exists.
                    true => StoreError::Uniqueness { attr: "id".into() },
                    false => backend(e),
                })?;
                let seq = conn.last_insert_rowid();
                write_side_tables(conn, seq, w)?;
                log_change(log, conn, &w.change, &body, None, Some(1))?;
                let members = match &w.members {
                    Some(_) => Some(load_members(conn, seq)?),
                    None => None,
                };
                Ok((seq, members))
            })
            .await?;
        Ok(StoredResource::created(w, seq, members))
    }

    pub(super) async fn replace_resource(
        &self,
        w: ResourceWrite,
        expected: Option<i64>,
        with_groups: bool,
    ) -> Result<Modified, StoreError> {
        let log = self.log;
        let body = w.change.body();
        let data = document_text(&w)?;
        // Groups are read by the writer, whose cache holds the pages: a
        // reader's cache is dropped whenever the database changed since its
        // last read.
        let (w, (replaced, groups)) = self
            .write_with(w, move |conn, w| {
                let row = current_row(conn, &w.resource_type, &w.id, expected)?;
                let replaced = replace_in(log, conn, w, &body, &data, row)?;
                let groups = match with_groups {
                    true => Some(groups_of_seq(conn, replaced.seq)?),
                    false => None,
                };
                Ok((replaced, groups))
            })
            .await?;
        Ok((replaced.into_stored(w), groups))
    }

    pub(super) async fn modify_resource(
        &self,
        rtype: &str,
        id: &str,
        with_groups: bool,
        mut change: Modification,
    ) -> Result<Option<Modified>, ModifyError> {
        let log = self.log;
        /// What one run of the write came to. A refusal or a decline wrote
        /// nothing, so it is not a failed write to roll back.
        enum Step {
            Written(Box<(Replaced, ResourceWrite, Option<Vec<GroupMembership>>)>),
            Refused(scimd_core::error::ScimError),
            Declined,
        }
        // First on the caller's thread: the writer is the one thread every
        // write shares, so the change (parse, patch, validate, index) runs
        // outside it and the writer only compares the version and writes.
        let old = self
            .read_here(|conn| get_one(conn, rtype, id))?
            .ok_or(StoreError::NotFound)?;
        // The core's code: a panic fails this write alone, as in the writer.
        let changed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change(&old)))
            .map_err(|_| StoreError::Backend("the write panicked".into()))?;
        let w = match changed {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(None),
            Err(e) => return Err(ModifyError::Refused(e)),
        };
        let data = document_text(&w)?;
        let body = w.change.body();
        let version = old.version;
        let optimistic = self
            .write_with(w, move |conn, w| {
                let row = current_row(conn, &w.resource_type, &w.id, Some(version))?;
                let replaced = replace_in(log, conn, w, &body, &data, row)?;
                let groups = match with_groups {
                    true => Some(groups_of_seq(conn, replaced.seq)?),
                    false => None,
                };
                Ok((replaced, groups))
            })
            .await;
        match optimistic {
            Ok((w, (replaced, groups))) => return Ok(Some((replaced.into_stored(w), groups))),
            // Another write came between the read and this one (two changes
            // of one resource at once): the change runs again below, where
            // nothing can come between.
            Err(StoreError::VersionMismatch { .. }) => {}
            Err(e) => return Err(e.into()),
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
                let replaced = replace_in(log, conn, &w, &w.change.body(), &data, row)?;
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

    pub(super) async fn delete_resource(
        &self,
        rtype: &str,
        id: &str,
        expected: Option<i64>,
        dependents: Vec<(String, Cond)>,
        change: Change,
    ) -> Result<(), StoreError> {
        let log = self.log;
        let body = change.body();
        let (rtype, id) = (rtype.to_string(), id.to_string());
        self.write(move |conn| {
            let CurrentRow { seq, version, .. } = current_row(conn, &rtype, &id, expected)?;
            leave_groups(log, conn, seq, &change)?;
            conn.prepare_cached("DELETE FROM resources WHERE seq = ?")
                .and_then(|mut s| s.execute([seq]))
                .map_err(backend)?;
            log_change(log, conn, &change, &body, Some(version), None)?;
            for (dependent, cond) in &dependents {
                let sql = delete_matching(Dialect::Sqlite, dependent, cond);
                let deleted: Vec<(String, String, i64)> = conn
                    .prepare_cached(&format!("{} RETURNING rtype, id, version", sql.text))
                    .and_then(|mut s| {
                        s.query_map(params_from_iter(sql.params.iter()), |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?
                        .collect()
                    })
                    .map_err(backend)?;
                for (dtype, did, dversion) in deleted {
                    let owned = change.owned_by(&dtype, &did);
                    log_change(log, conn, &owned, &owned.body(), Some(dversion), None)?;
                }
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn change_group_members(
        &self,
        rtype: &str,
        id: &str,
        changes: Vec<MemberChange>,
        member_types: Vec<String>,
        expected: Option<i64>,
        change: Change,
    ) -> Result<i64, StoreError> {
        let log = self.log;
        let body = change.body();
        let (rtype, id) = (rtype.to_string(), id.to_string());
        self.write(move |conn| {
            let CurrentRow { seq, version, .. } = current_row(conn, &rtype, &id, expected)?;
            let version = version + 1;
            conn.prepare_cached("UPDATE resources SET version = ?, modified = ? WHERE seq = ?")
                .and_then(|mut s| s.execute(params![version, change.at, seq]))
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
                        conn.execute("DELETE FROM members WHERE group_seq = ?", [seq])
                            .map_err(backend)?;
                    }
                }
            }
            log_change(log, conn, &change, &body, Some(version - 1), Some(version))?;
            Ok(version)
        })
        .await
    }
}

/// Before the resource `seq` is deleted (its member rows go with it): each
/// group it is a member of gets a new version, so that no ETag of the old
/// member list stays valid, and its entry in the log.
fn leave_groups(
    log: LogSwitch,
    conn: &Connection,
    seq: i64,
    change: &Change,
) -> Result<(), StoreError> {
    let groups: Vec<(i64, String, String, i64)> = conn
        .prepare_cached(
            "SELECT g.seq, g.rtype, g.id, g.version FROM members m
               JOIN resources g ON g.seq = m.group_seq WHERE m.member_seq = ?",
        )
        .and_then(|mut s| {
            s.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .map_err(backend)?;
    for (group, gtype, gid, version) in groups {
        conn.prepare_cached("UPDATE resources SET version = ?, modified = ? WHERE seq = ?")
            .and_then(|mut s| s.execute(params![version + 1, change.at, group]))
            .map_err(backend)?;
        let left = change.member_left(&gtype, &gid);
        log_change(
            log,
            conn,
            &left,
            &left.body(),
            Some(version),
            Some(version + 1),
        )?;
    }
    Ok(())
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

/// The owner `w` names exists, in the writer's transaction: a delete of
/// the owner, which takes what it owns with it, is committed either before
/// (and this write refused) or after (and this resource deleted with it).
fn owner_exists(conn: &Connection, w: &ResourceWrite) -> Result<(), StoreError> {
    let Some((rtype, id)) = &w.owner else {
        return Ok(());
    };
    conn.prepare_cached("SELECT 1 FROM resources WHERE id = ? AND rtype = ?")
        .and_then(|mut s| s.exists([id, rtype]))
        .map_err(backend)?
        .then_some(())
        .ok_or_else(|| StoreError::UnknownOwner(id.clone()))
}

/// Replaces the document of `row` with `w` and brings its side tables along.
fn replace_in(
    log: LogSwitch,
    conn: &Connection,
    w: &ResourceWrite,
    body: &str,
    data: &str,
    row: CurrentRow,
) -> Result<Replaced, StoreError> {
    owner_exists(conn, w)?;
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
    log_change(log, conn, &w.change, body, Some(version - 1), Some(version))?;
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
