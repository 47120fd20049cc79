//! Writes of resources: each one statement that writes the resource's row
//! with its index rows and unique values (data-modifying CTEs over
//! `unnest(...)` arrays). A write that is that one statement (no members to
//! write) runs on its own, committed by PostgreSQL as it ends: one round
//! trip, no `BEGIN`/`COMMIT` (creates without members or owner go through
//! [`super::creates`], and PATCHes and PUTs without members through
//! [`super::changes`], which write them together under load). A write with
//! members, or naming an owner ([`lock_owner`]), runs in a transaction.
//! Both are re-run on a serialization failure or a deadlock. A PATCH reads
//! the side rows with the resource and writes only those that differ; it
//! skips the read when this process wrote the resource last
//! ([`super::recent`]).

use std::sync::{Arc, LazyLock};

use deadpool_postgres::GenericClient;
use scimd_core::changelog::Change;
use scimd_core::query::Cond;
use scimd_core::store::{
    GroupMembership, IndexEntry, Member, Modification, Modified, ModifyError, ResourceWrite,
    StoreError, StoredResource, UniqueValue,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::change_log::{LogParams, LogSwitch, bound, log_cte};
use super::changes::Side;
use super::members::write_members;
use super::reads::{
    GET_FOR_CHANGE, GET_ONE, StoredSide, groups_from_json, groups_of_id, load_members, stored_side,
    to_stored,
};
use super::recent::Known;
use super::retry::{Fail, in_transaction, with_client};
use super::{PgStore, bind};
use crate::nesting::groups_json;
use crate::rules::{document_text, entry_delta, missed, unique_delta, unique_scope};
use crate::translate::{Dialect, Sql, delete_matching, lock_matching};

impl PgStore {
    pub(super) async fn create_resource(
        &self,
        w: ResourceWrite,
    ) -> Result<StoredResource, StoreError> {
        let data = document_text(&w)?;
        let (w, data, seq, members) = match (&w.members, &w.owner) {
            (None, None) => {
                let (w, data, seq) = self.create_gathered(w, data).await?;
                (w, data, seq, None)
            }
            _ => {
                let (seq, members) = in_transaction!(self, |tx| {
                    lock_owner(&tx, &w).await?;
                    let seq = insert_resource(&tx, &w, 1, &w.now, &data, self.log).await?;
                    let members = match &w.members {
                        Some(_) => Some(load_members(&*tx, seq).await?),
                        None => None,
                    };
                    (seq, members)
                })?;
                (w, data, seq, members)
            }
        };
        let side = Known::side_of(&w);
        let stored = StoredResource::created(w, seq, members);
        self.recent.wrote(&stored, side, data);
        Ok(stored)
    }

    pub(super) async fn replace_resource(
        &self,
        w: ResourceWrite,
        expected: Option<i64>,
        with_groups: bool,
    ) -> Result<Modified, StoreError> {
        let ((seq, version, created, members), groups) = match (&w.members, &w.owner) {
            (None, None) => with_client!(self, |client| {
                replace_alone(&client, &w, expected, with_groups, self.log).await?
            })?,
            (None, Some(_)) => in_transaction!(self, |tx| {
                lock_owner(&tx, &w).await?;
                replace_alone(&tx, &w, expected, with_groups, self.log).await?
            })?,
            (Some(_), _) => in_transaction!(self, |tx| {
                lock_owner(&tx, &w).await?;
                replace_with_groups_in(&tx, &w, expected, with_groups, self.log).await?
            })?,
        };
        // A replace that is not a `modify` (a type with members or an
        // owner): whatever was remembered of the resource goes.
        self.recent.forget(&w.id);
        Ok((
            StoredResource::replaced(w, seq, version, created, members),
            groups,
        ))
    }

    /// From what this process last wrote of the resource when it has it
    /// ([`Self::modify_known`]: the write alone). Otherwise, or when that
    /// was stale, first without a lock: the read (with the side rows), then the write
    /// as a compare-and-swap on the version read, committed on its own (two
    /// round trips), writing only the side rows that differ from those read
    /// ([`UPDATE_CHANGED`]): they are the stored ones as long as the version
    /// is, since side rows are written only in the statement that updates
    /// (and bumps the version of) their resource's row. When
    /// another write came in between, or the write sets members, again with
    /// the resource's row locked (`FOR UPDATE`) from the read to the commit
    /// (four round trips: BEGIN, the locking read, the write with the
    /// groups read after it, COMMIT): concurrent modifications of one
    /// resource, through this process or another, then queue on the lock
    /// instead of retrying.
    pub(super) async fn modify_resource(
        &self,
        rtype: &str,
        id: &str,
        with_groups: bool,
        mut change: Modification,
    ) -> Result<Option<Modified>, ModifyError> {
        let known = self.recent.get(rtype, id);
        let mut step = match &known {
            Some(known) => self.modify_known(known, with_groups, &mut change).await?,
            None => None,
        };
        if step.is_none() {
            let (old, side) = with_client!(self, |client| {
                let get = client.prepare_cached(GET_FOR_CHANGE).await?;
                let Some(row) = client.query_opt(&get, &[&id, &rtype]).await? else {
                    return Err(Fail::Store(StoreError::NotFound));
                };
                (to_stored(&row)?, stored_side(&row)?)
            })?;
            if known.is_none() {
                self.recent.read(rtype, id, old.position, old.version);
            }
            step = match change(&old) {
                Ok(Some(w)) if w.members.is_none() => {
                    let read = (old.position, old.version);
                    self.change_known(w, read, Side::Read(side), with_groups)
                        .await?
                }
                Ok(Some(_)) => None,
                Ok(None) => Some(Step::Declined),
                Err(e) => Some(Step::Refused(e)),
            };
        }
        // None: another write came in between, or the write sets members.
        let step = match step {
            Some(step) => step,
            None => self.modify_locked(rtype, id, with_groups, change).await?,
        };
        let (w, data, (seq, version, created, members), groups) = match step {
            Step::Written(written) => *written,
            Step::Refused(e) => return Err(ModifyError::Refused(e)),
            Step::Declined => return Ok(None),
        };
        let side = Known::side_of(&w);
        let stored = StoredResource::replaced(w, seq, version, created, members);
        self.recent.wrote(&stored, side, data);
        Ok(Some((stored, groups)))
    }

    /// The change made from what this process last wrote of the resource
    /// ([`Recent`](super::recent::Recent)), without reading it: one round
    /// trip, the write. `None` when the resource is no longer at that
    /// version, or when the change is refused, declined or sets members
    /// (each decided again on what is stored).
    async fn modify_known(
        &self,
        known: &Arc<Known>,
        with_groups: bool,
        change: &mut Modification,
    ) -> Result<Option<Step>, StoreError> {
        let old = known.row.parse()?;
        let w = match change(&old) {
            Ok(Some(w)) if w.members.is_none() => w,
            _ => return Ok(None),
        };
        let read = (old.position, old.version);
        let side = Side::Known(Arc::clone(known));
        let step = self.change_known(w, read, side, with_groups).await?;
        self.recent.used(step.is_some());
        if step.is_none() {
            self.recent.forget(&old.id);
        }
        Ok(step)
    }

    /// Writes `w`, made from the resource at position and version `read`
    /// whose side rows are `side`, gathered with others ([`super::changes`]):
    /// `None` when the resource is no longer at that version.
    async fn change_known(
        &self,
        w: ResourceWrite,
        read: (i64, i64),
        side: Side,
        with_groups: bool,
    ) -> Result<Option<Step>, StoreError> {
        let data = document_text(&w)?;
        let (w, data, outcome) = self
            .change_gathered(w, data, read, side, with_groups)
            .await?;
        Ok(outcome.map(|(replaced, groups)| Step::Written(Box::new((w, data, replaced, groups)))))
    }

    /// [`Self::modify_resource`] with the row locked from the read to the
    /// commit.
    async fn modify_locked(
        &self,
        rtype: &str,
        id: &str,
        with_groups: bool,
        mut change: Modification,
    ) -> Result<Step, StoreError> {
        in_transaction!(self, |tx| {
            let get = tx.prepare_cached(&format!("{GET_ONE} FOR UPDATE")).await?;
            let Some(row) = tx.query_opt(&get, &[&id, &rtype]).await? else {
                return Err(Fail::Store(StoreError::NotFound));
            };
            let old = to_stored(&row)?;
            match change(&old) {
                Ok(Some(w)) => {
                    let (replaced, groups) =
                        replace_with_groups_in(&tx, &w, None, with_groups, self.log).await?;
                    // Serialised again (the statement did too): this path
                    // is taken only when another write came in between.
                    let data = document_text(&w)?;
                    Step::Written(Box::new((w, data, replaced, groups)))
                }
                Ok(None) => Step::Declined,
                Err(e) => Step::Refused(e),
            }
        })
    }

    /// The resource's side tables go with it in the same statement (they
    /// have no foreign key to cascade), then its dependents with theirs.
    pub(super) async fn delete_resource(
        &self,
        rtype: &str,
        id: &str,
        expected: Option<i64>,
        dependents: Vec<(String, Cond)>,
        change: Change,
    ) -> Result<(), StoreError> {
        // Not needed for correctness (a write from it would find the row
        // gone), only to free it.
        self.recent.forget(id);
        let sweeps: Vec<Sql> = dependents
            .iter()
            .map(|(dependent, cond)| delete_matching(Dialect::Postgres, dependent, cond))
            .collect();
        let locks: Vec<Sql> = dependents
            .iter()
            .map(|(dependent, cond)| lock_matching(dependent, cond))
            .collect();
        let log = LogParams::of(&change, self.log);
        // A dependent's entry names its owner ([`Change::owned_by`]); its
        // type and id come from the deleted row.
        let owned = change.owned_by("", "");
        let owned_log = LogParams::of(&owned, self.log);
        // Each group the resource is a member of (its member rows go with it
        // by cascade) gets a new version, so that no ETag of the old member
        // list stays valid, and its entry; type and id from the group's row.
        let left = change.member_left("", "");
        let left_log = LogParams::of(&left, self.log);
        in_transaction!(self, |tx| {
            // The resource and its dependents are locked first, each by a
            // statement of its own. A statement that waits for a row's lock
            // still reads other tables as they were when it began: a delete
            // that waited for a write in flight (a rename) would miss the
            // index rows and unique values that write committed, and leave
            // them behind for good. The statements after the lock begin
            // after any such write committed, and no new one can start.
            let lock = tx
                .prepare_cached("SELECT 1 FROM resources WHERE id = $1 AND rtype = $2 FOR UPDATE")
                .await?;
            if tx.query_opt(&lock, &[&id, &rtype]).await?.is_none() {
                return Err(Fail::Store(StoreError::NotFound));
            }
            for lock in &locks {
                tx.query(lock.text.as_str(), &bind(&lock.params)).await?;
            }
            let leave = tx
                .prepare_cached(&format!(
                    "WITH g AS (UPDATE resources r SET version = r.version + 1, modified = $3
                                  FROM members m JOIN resources x ON x.seq = m.member_seq
                                 WHERE x.id = $1 AND x.rtype = $2 AND r.seq = m.group_seq
                                RETURNING r.rtype, r.id, r.version),
                          {}
                     SELECT count(*) FROM g",
                    log_cte(
                        bound(4),
                        "g.rtype",
                        "g.id",
                        "g.version - 1",
                        "g.version",
                        "g"
                    )
                ))
                .await?;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &rtype, &change.at];
            params.extend_from_slice(&left_log.params());
            tx.query_one(&leave, &params).await?;
            let delete = tx
                .prepare_cached(&with_side_tables(
                    "DELETE FROM resources WHERE id = $1 AND rtype = $2 AND ($3::int8 IS NULL OR version = $3)",
                    4,
                ))
                .await?;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &rtype, &expected];
            params.extend_from_slice(&log.params());
            if tx.query_one(&delete, &params).await?.try_get::<_, i64>(0)? == 0 {
                return Err(explain_miss(&tx, rtype, id).await);
            }
            for sweep in &sweeps {
                let mut params = bind(&sweep.params);
                params.extend_from_slice(&owned_log.params());
                let sql = with_side_tables(&sweep.text, sweep.params.len() + 1);
                tx.query_one(sql.as_str(), &params).await?;
            }
        })
    }
}

/// Where a modification stands.
enum Step {
    /// The write, its document as stored, and what the statement answered.
    Written(
        Box<(
            ResourceWrite,
            String,
            Replaced,
            Option<Vec<GroupMembership>>,
        )>,
    ),
    Refused(scimd_core::error::ScimError),
    Declined,
}

/// The side tables of the resource `r` (a CTE of the statement: its `seq`)
/// brought to the index rows `$1`-`$5` and the unique values `$6`-`$8`, in
/// the same statement as the resource's row: rows that did not change stay,
/// the others are deleted or inserted (every CTE sees the tables as they
/// were before the statement). A PATCH of one attribute writes the index
/// row it changes, not the ~32 of a user. The rows to insert are found
/// against one read of the resource's current rows (`cur`), not by an
/// index probe per new row (~130 buffer reads for a user, 0.1 ms).
const SIDE_TABLES: &str = "
  e(k, el, p, s, n) AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::bool[], $4::text[], $5::float8[])),
  u(sc, k, v) AS (SELECT * FROM unnest($6::text[], $7::text[], $8::text[])),
  de AS (DELETE FROM attr_values a USING r WHERE a.seq = r.seq AND NOT EXISTS (
           SELECT 1 FROM e WHERE e.k = a.key AND e.el = a.elem AND e.p = a.prim
              AND e.s IS NOT DISTINCT FROM a.s AND e.n IS NOT DISTINCT FROM a.n)),
  cur AS MATERIALIZED (SELECT a.key, a.elem, a.prim, a.s, a.n FROM attr_values a, r WHERE a.seq = r.seq),
  ie AS (INSERT INTO attr_values (seq, key, elem, prim, s, n)
           SELECT r.seq, e.k, e.el, e.p, e.s, e.n FROM r, e WHERE NOT EXISTS (
             SELECT 1 FROM cur a WHERE a.key = e.k AND a.elem = e.el
                AND a.prim = e.p AND a.s IS NOT DISTINCT FROM e.s AND a.n IS NOT DISTINCT FROM e.n)),
  du AS (DELETE FROM unique_values x USING r WHERE x.seq = r.seq AND NOT EXISTS (
           SELECT 1 FROM u WHERE u.sc = x.scope AND u.k = x.key AND u.v = x.value)),
  iu AS (INSERT INTO unique_values (scope, key, value, seq)
           SELECT u.sc, u.k, u.v, r.seq FROM r, u WHERE NOT EXISTS (
             SELECT 1 FROM unique_values x WHERE x.seq = r.seq AND x.scope = u.sc AND x.key = u.k
                AND x.value = u.v))";

/// A new resource and its side tables: version `$11`, created `$12`,
/// modified `$13`, document `$14`, logged with `$15`-`$19`.
/// A new resource has no side rows to compare with: its index rows and
/// unique values are inserted as they are.
static INSERT_RESOURCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH r AS (INSERT INTO resources (id, rtype, version, created, modified, data)
                    VALUES ($9, $10, $11, $12, $13, $14) RETURNING seq),
              ie AS (INSERT INTO attr_values (seq, key, elem, prim, s, n)
                     SELECT r.seq, e.k, e.el, e.p, e.s, e.n FROM r,
                       unnest($1::text[], $2::int8[], $3::bool[], $4::text[], $5::float8[]) AS e(k, el, p, s, n)),
              iu AS (INSERT INTO unique_values (scope, key, value, seq)
                     SELECT u.sc, u.k, u.v, r.seq FROM r, unnest($6::text[], $7::text[], $8::text[]) AS u(sc, k, v)),
              {}
         SELECT seq FROM r",
        log_cte(bound(15), "$10", "$9", "NULL::int8", "$11", "r")
    )
});

/// What a replace answers: the resource's seq, new version and created.
const ANSWER: &str = "SELECT seq, version, created FROM r";

/// [`ANSWER`] and the resource's computed groups (as
/// [`GET_WITH_GROUPS`](super::reads::GET_WITH_GROUPS) reads them). Sent
/// only for a write without members: memberships are then as the statement
/// found them, so its snapshot holds the groups the resource has after it.
static ANSWER_WITH_GROUPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT r.seq, r.version, r.created, gr.groups FROM r CROSS JOIN LATERAL ({}) gr",
        groups_json("r.seq")
    )
});

/// A resource's new document and side tables, if its version is `$13`
/// (any when NULL).
/// Logged with `$14`-`$18`.
pub(super) static UPDATE_RESOURCE: LazyLock<String> = LazyLock::new(|| update_resource(ANSWER));

/// [`UPDATE_RESOURCE`], answering also the resource's computed groups.
pub(super) static UPDATE_RESOURCE_WITH_GROUPS: LazyLock<String> =
    LazyLock::new(|| update_resource(&ANSWER_WITH_GROUPS));

/// A resource's new document (modified `$1`, document `$2`) if it is still
/// the one at position `$3` and version `$4` whose side rows were read
/// ([`GET_FOR_CHANGE`]), with only the side rows that differ from those
/// read: the index rows of the attribute elements `$5`/`$6` (key, elem)
/// replaced by `$7`-`$11`, the unique values `$12`-`$14` added and
/// `$15`-`$17` removed ([`Changed`]). Logged with `$18`-`$22`. No
/// comparison with the stored rows in the statement: a PATCH of one
/// attribute deletes one index row and inserts one.
pub(super) static UPDATE_CHANGED: LazyLock<String> = LazyLock::new(|| update_changed(ANSWER));

/// [`UPDATE_CHANGED`], answering also the resource's computed groups.
pub(super) static UPDATE_CHANGED_WITH_GROUPS: LazyLock<String> =
    LazyLock::new(|| update_changed(&ANSWER_WITH_GROUPS));

fn update_changed(answer: &str) -> String {
    format!(
        "WITH r AS (UPDATE resources SET version = version + 1, modified = $1, data = $2
                     WHERE seq = $3 AND version = $4
                     RETURNING seq, id, rtype, version, created),
              de AS (DELETE FROM attr_values a USING r, unnest($5::text[], $6::int8[]) AS d(k, el)
                      WHERE a.seq = r.seq AND a.key = d.k AND a.elem = d.el),
              ie AS (INSERT INTO attr_values (seq, key, elem, prim, s, n)
                     SELECT r.seq, e.k, e.el, e.p, e.s, e.n FROM r,
                       unnest($7::text[], $8::int8[], $9::bool[], $10::text[], $11::float8[]) AS e(k, el, p, s, n)),
              iu AS (INSERT INTO unique_values (scope, key, value, seq)
                     SELECT u.sc, u.k, u.v, r.seq FROM r, unnest($12::text[], $13::text[], $14::text[]) AS u(sc, k, v)),
              du AS (DELETE FROM unique_values x USING r, unnest($15::text[], $16::text[], $17::text[]) AS u(sc, k, v)
                      WHERE x.scope = u.sc AND x.key = u.k AND x.value = u.v AND x.seq = r.seq),
              {}
         {answer}",
        log_cte(bound(18), "r.rtype", "r.id", "r.version - 1", "r.version", "r")
    )
}

fn update_resource(answer: &str) -> String {
    format!(
        "WITH r AS (UPDATE resources SET version = version + 1, modified = $9, data = $10
                     WHERE id = $11 AND rtype = $12 AND ($13::int8 IS NULL OR version = $13)
                     RETURNING seq, version, created),
         {SIDE_TABLES},
         {}
         {answer}",
        log_cte(bound(14), "$12", "$11", "r.version - 1", "r.version", "r")
    )
}

/// The index entries and unique values of a write as the arrays that
/// [`SIDE_TABLES`] and [`INSERT_RESOURCE`] unnest (those of several writes,
/// one after the other, for [`super::creates`]).
#[derive(Default)]
pub(super) struct SideRows<'w> {
    keys: Vec<&'w str>,
    elems: Vec<i64>,
    prims: Vec<bool>,
    texts: Vec<Option<&'w str>>,
    numbers: Vec<Option<f64>>,
    scopes: Vec<&'w str>,
    unique_keys: Vec<&'w str>,
    unique_values: Vec<&'w str>,
}

impl<'w> SideRows<'w> {
    fn of(w: &'w ResourceWrite) -> Self {
        SideRows::with(w, w.index.iter(), w.unique.iter())
    }

    /// The index entries `index` and unique values `unique` of `w`.
    fn with(
        w: &'w ResourceWrite,
        index: impl Iterator<Item = &'w IndexEntry>,
        unique: impl Iterator<Item = &'w UniqueValue>,
    ) -> Self {
        let mut rows = SideRows::default();
        rows.append(w, index, unique);
        rows
    }

    /// Adds the index entries `index` and unique values `unique` of `w`.
    pub(super) fn append(
        &mut self,
        w: &'w ResourceWrite,
        index: impl Iterator<Item = &'w IndexEntry>,
        unique: impl Iterator<Item = &'w UniqueValue>,
    ) {
        for e in index {
            self.keys.push(&e.key);
            self.elems.push(i64::from(e.elem));
            self.prims.push(e.primary);
            self.texts.push(e.text.as_deref());
            self.numbers.push(e.number);
        }
        for u in unique {
            self.scopes.push(unique_scope(&w.resource_type, u));
            self.unique_keys.push(&u.key);
            self.unique_values.push(&u.value);
        }
    }

    /// How many index entries and unique values these are.
    pub(super) fn len(&self) -> (usize, usize) {
        (self.keys.len(), self.scopes.len())
    }

    /// Adds `other`'s rows after these.
    pub(super) fn extend(&mut self, other: SideRows<'w>) {
        self.keys.extend(other.keys);
        self.elems.extend(other.elems);
        self.prims.extend(other.prims);
        self.texts.extend(other.texts);
        self.numbers.extend(other.numbers);
        self.scopes.extend(other.scopes);
        self.unique_keys.extend(other.unique_keys);
        self.unique_values.extend(other.unique_values);
    }

    /// `$1`-`$8` of [`SIDE_TABLES`] and [`INSERT_RESOURCE`] (the index
    /// entries' five arrays, then the unique values' three).
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.keys,
            &self.elems,
            &self.prims,
            &self.texts,
            &self.numbers,
            &self.scopes,
            &self.unique_keys,
            &self.unique_values,
        ]
    }
}

/// What [`UPDATE_CHANGED`] binds of a write besides its document: the
/// attribute elements (key, elem) whose index rows differ from those
/// stored, their new rows, and the unique values added and removed.
pub(super) struct Changed<'w> {
    pub(super) slot_keys: Vec<&'w str>,
    pub(super) slot_elems: Vec<i64>,
    /// The new index rows of those elements and the unique values added.
    pub(super) rows: SideRows<'w>,
    pub(super) gone_scopes: Vec<&'w str>,
    pub(super) gone_keys: Vec<&'w str>,
    pub(super) gone_values: Vec<&'w str>,
}

impl<'w> Changed<'w> {
    /// Every row of an element that changed is rewritten, so that rows
    /// that are equal (a multiset) never need telling apart in the table.
    pub(super) fn of(w: &'w ResourceWrite, side: &'w StoredSide) -> Self {
        let old = side.entries.iter().map(|e| ((), e)).collect();
        let (gone, added) = entry_delta(old, &w.index);
        let mut slots: Vec<(&str, u32)> = gone
            .iter()
            .map(|(_, e)| *e)
            .chain(added)
            .map(|e| (e.key.as_str(), e.elem))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        let (gone_unique, added_unique) = unique_delta(&side.unique, w);
        let in_slot = |e: &&IndexEntry| slots.binary_search(&(e.key.as_str(), e.elem)).is_ok();
        let rows = SideRows::with(
            w,
            w.index.iter().filter(in_slot),
            added_unique.iter().copied(),
        );
        Changed {
            slot_keys: slots.iter().map(|(k, _)| *k).collect(),
            slot_elems: slots.iter().map(|(_, el)| i64::from(*el)).collect(),
            rows,
            gone_scopes: gone_unique.iter().map(|u| u.0.as_str()).collect(),
            gone_keys: gone_unique.iter().map(|u| u.1.as_str()).collect(),
            gone_values: gone_unique.iter().map(|u| u.2.as_str()).collect(),
        }
    }

    /// `$5`-`$17` of [`UPDATE_CHANGED`].
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.slot_keys, &self.slot_elems];
        params.extend(self.rows.params());
        params.extend_from_slice(&[
            &self.gone_scopes as &(dyn ToSql + Sync),
            &self.gone_keys,
            &self.gone_values,
        ]);
        params
    }
}

/// A failed write statement: a unique value already taken names its
/// attribute (from the key the server reports, in the first column order of
/// `unique_values`' primary key: scope, key, value).
fn write_failure(e: tokio_postgres::Error, w: &ResourceWrite) -> Fail {
    let Some(db) = e.as_db_error() else {
        return Fail::Db(e);
    };
    if *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("resources_id_key") {
        // An id chosen by the caller (`POST /Me`) that exists.
        return Fail::Store(StoreError::Uniqueness { attr: "id".into() });
    }
    if *db.code() != SqlState::UNIQUE_VIOLATION || db.constraint() != Some("unique_values_pkey") {
        return Fail::Db(e);
    }
    let reported = db
        .detail()
        .and_then(|d| d.split_once(")=("))
        .and_then(|(_, values)| values.split(", ").nth(1));
    let attr = w
        .unique
        .iter()
        .find(|u| Some(u.key.as_str()) == reported)
        .or(w.unique.first())
        .map(|u| u.key.clone())
        .unwrap_or_default();
    Fail::Store(StoreError::Uniqueness { attr })
}

/// Inserts `w` as a new resource with its side tables and members, inside
/// `tx`; returns its `seq`.
pub(super) async fn insert_resource(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &ResourceWrite,
    version: i64,
    created: &str,
    data: &str,
    switch: LogSwitch,
) -> Result<i64, Fail> {
    let seq = insert_row(tx, w, version, created, data, switch).await?;
    write_members(tx, seq, w).await?;
    Ok(seq)
}

/// The one statement that inserts `w` as a new resource with its side
/// tables; returns its `seq`.
pub(super) async fn insert_row(
    c: &impl GenericClient,
    w: &ResourceWrite,
    version: i64,
    created: &str,
    data: &str,
    switch: LogSwitch,
) -> Result<i64, Fail> {
    let insert = c.prepare_cached(&INSERT_RESOURCE).await?;
    let sides = SideRows::of(w);
    let log = LogParams::of(&w.change, switch);
    let mut params = sides.params();
    params.extend_from_slice(&[
        &w.id as &(dyn ToSql + Sync),
        &w.resource_type,
        &version,
        &created,
        &w.now,
        &data,
    ]);
    params.extend_from_slice(&log.params());
    let row = c
        .query_one(&insert, &params)
        .await
        .map_err(|e| write_failure(e, w))?;
    Ok(row.try_get(0)?)
}

/// What a replace returns: seq, new version, created, and the members when
/// the write set them.
pub(super) type Replaced = (i64, i64, String, Option<Vec<Member>>);

/// Replaces a resource's document and side tables inside `tx`
/// (compare-and-swap on `expected` when given): one statement, plus the
/// memberships when the write sets them.
async fn replace_in(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &ResourceWrite,
    expected: Option<i64>,
    switch: LogSwitch,
) -> Result<Replaced, Fail> {
    let (seq, version, created, _) = replace_row(tx, w, expected, false, switch).await?;
    write_members(tx, seq, w).await?;
    let members = match &w.members {
        Some(_) => Some(load_members(&**tx, seq).await?),
        None => None,
    };
    Ok((seq, version, created, members))
}

/// The one statement that replaces a resource's document and side tables
/// (compare-and-swap on `expected` when given): its seq, new version and
/// created, and with `with_groups` its computed groups (for a write without
/// members only: [`UPDATE_RESOURCE_WITH_GROUPS`]).
async fn replace_row(
    c: &impl GenericClient,
    w: &ResourceWrite,
    expected: Option<i64>,
    with_groups: bool,
    switch: LogSwitch,
) -> Result<Answer, Fail> {
    let data = document_text(w)?;
    let sides = SideRows::of(w);
    let log = LogParams::of(&w.change, switch);
    let mut params = sides.params();
    params.extend_from_slice(&[
        &w.now as &(dyn ToSql + Sync),
        &data,
        &w.id,
        &w.resource_type,
        &expected,
    ]);
    params.extend_from_slice(&log.params());
    let statements = (
        UPDATE_RESOURCE.as_str(),
        UPDATE_RESOURCE_WITH_GROUPS.as_str(),
    );
    match run_replace(c, w, statements, with_groups, &params).await? {
        Some(answer) => Ok(answer),
        None => Err(explain_miss(c, &w.resource_type, &w.id).await),
    }
}

/// Runs a replace statement of `w`, the first of `statements` or, with
/// `with_groups`, the second (which also answers the computed groups): its
/// answer, or `None` when it wrote nothing.
async fn run_replace(
    c: &impl GenericClient,
    w: &ResourceWrite,
    statements: (&str, &str),
    with_groups: bool,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Answer>, Fail> {
    let text = if with_groups {
        statements.1
    } else {
        statements.0
    };
    let update = c.prepare_cached(text).await?;
    let row = c
        .query_opt(&update, params)
        .await
        .map_err(|e| write_failure(e, w))?;
    row.map(|row| replaced_row(&row, with_groups)).transpose()
}

/// A replace statement's answer: seq, new version, created, and the
/// computed groups when asked.
type Answer = (i64, i64, String, Option<Vec<GroupMembership>>);

/// The answer of [`ANSWER`] or [`ANSWER_WITH_GROUPS`].
fn replaced_row(row: &tokio_postgres::Row, with_groups: bool) -> Result<Answer, Fail> {
    let groups = match with_groups {
        true => Some(groups_from_json(row, 3)?),
        false => None,
    };
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, groups))
}

/// The one statement of a write without members (its document `data`, as
/// [`document_text`] gives it) at the version read with `side` (seq and
/// version `read`), outside a transaction: its side rows changed from
/// `side` ([`UPDATE_CHANGED`]). `None`: the resource is no longer at that
/// version (or is gone).
pub(super) async fn replace_changed(
    c: &impl GenericClient,
    w: &ResourceWrite,
    data: &str,
    read: (i64, i64),
    side: &StoredSide,
    with_groups: bool,
    switch: LogSwitch,
) -> Result<Option<(Replaced, Option<Vec<GroupMembership>>)>, Fail> {
    let changed = Changed::of(w, side);
    let log = LogParams::of(&w.change, switch);
    let (seq, version) = read;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&w.now, &data, &seq, &version];
    params.extend(changed.params());
    params.extend_from_slice(&log.params());
    let statements = (UPDATE_CHANGED.as_str(), UPDATE_CHANGED_WITH_GROUPS.as_str());
    let answer = run_replace(c, w, statements, with_groups, &params).await?;
    Ok(answer.map(|(seq, version, created, groups)| ((seq, version, created, None), groups)))
}

/// [`replace_in`], and the resource's groups afterwards when `with_groups`,
/// sent together (one round trip for both).
async fn replace_with_groups_in(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &ResourceWrite,
    expected: Option<i64>,
    with_groups: bool,
    switch: LogSwitch,
) -> Result<(Replaced, Option<Vec<GroupMembership>>), Fail> {
    if !with_groups {
        return Ok((replace_in(tx, w, expected, switch).await?, None));
    }
    // Polled in this order: the write is sent first, so the read sees it.
    let (replaced, groups) =
        tokio::try_join!(replace_in(tx, w, expected, switch), groups_of_id(tx, &w.id))?;
    Ok((replaced, Some(groups)))
}

/// Locks the row of the owner `w` names (`FOR KEY SHARE`, which only a
/// delete or a key change waits for), or refuses the write if it is gone.
/// A delete of the owner locks it first (`FOR UPDATE`): whichever comes
/// second waits for the other's commit, so the write is either refused or
/// committed before the delete locks, and so deletes, what the owner owns.
async fn lock_owner(c: &impl GenericClient, w: &ResourceWrite) -> Result<(), Fail> {
    let Some((rtype, id)) = &w.owner else {
        return Ok(());
    };
    let lock = c
        .prepare_cached("SELECT 1 FROM resources WHERE id = $1 AND rtype = $2 FOR KEY SHARE")
        .await?;
    match c.query_opt(&lock, &[id, rtype]).await? {
        Some(_) => Ok(()),
        None => Err(Fail::Store(StoreError::UnknownOwner(id.clone()))),
    }
}

/// The one statement of a replace without members, with the resource's
/// groups when `with_groups`: outside a transaction it commits as it ends
/// (one round trip); for an owned type it runs inside the transaction that
/// locked the owner.
async fn replace_alone(
    c: &impl GenericClient,
    w: &ResourceWrite,
    expected: Option<i64>,
    with_groups: bool,
    switch: LogSwitch,
) -> Result<(Replaced, Option<Vec<GroupMembership>>), Fail> {
    let (seq, version, created, groups) = replace_row(c, w, expected, with_groups, switch).await?;
    Ok(((seq, version, created, None), groups))
}

/// After a conditional statement touched no row: not found, or a version
/// mismatch.
pub(super) async fn explain_miss(c: &impl GenericClient, rtype: &str, id: &str) -> Fail {
    match c
        .query_opt(
            "SELECT version FROM resources WHERE id = $1 AND rtype = $2",
            &[&id, &rtype],
        )
        .await
    {
        Ok(Some(row)) => match row.try_get(0) {
            Ok(current) => Fail::Store(missed(Some(current))),
            Err(e) => Fail::Db(e),
        },
        Ok(None) => Fail::Store(missed(None)),
        Err(e) => Fail::Db(e),
    }
}

/// `delete`, a statement that deletes resources, with their side tables
/// (in the same statement) and a change-log entry for each, whose fields
/// are bound from `$log` on ([`log_cte`]); answers how many resources it
/// deleted.
fn with_side_tables(delete: &str, log: usize) -> String {
    format!(
        "WITH d AS ({delete} RETURNING seq, rtype, id, version),
              da AS (DELETE FROM attr_values a USING d WHERE a.seq = d.seq),
              du AS (DELETE FROM unique_values u USING d WHERE u.seq = d.seq),
              {}
         SELECT count(*) FROM d",
        log_cte(
            bound(log),
            "d.rtype",
            "d.id",
            "d.version",
            "NULL::int8",
            "d"
        )
    )
}
