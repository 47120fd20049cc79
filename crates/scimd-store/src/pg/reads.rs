//! Reads: point reads, list pages with their totals, members and
//! computed groups in one snapshot ([`ReadSnapshot`]), the groups of
//! resources by id or position (statements in [`crate::nesting`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use scimd_core::query::{Paging, Query};
use scimd_core::store::{
    GroupMembership, IndexEntry, Member, Page, StoreError, StoredResource, StoredRow,
};
use tokio_postgres::{GenericClient, Row};

use super::retry::{Fail, with_client};
use super::{PgStore, bind};
use crate::nesting::{GROUPS_BY_ID, GROUPS_BY_SEQ, GROUPS_OF_ONE, groups_json};
use crate::rules::StoredUnique;
use crate::translate::{Dialect, Sql, page_queries, total_from_page};

impl PgStore {
    pub(super) async fn get_resource(
        &self,
        rtype: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<StoredResource>, StoreError> {
        with_client!(self, |client| {
            let get = client.prepare_cached(GET_ONE).await?;
            match client.query_opt(&get, &[&id, &rtype]).await? {
                None => None,
                Some(row) => {
                    let mut stored = to_stored(&row)?;
                    if with_members {
                        stored.members = Some(load_members(&**client, stored.position).await?);
                    }
                    Some(stored)
                }
            }
        })
    }

    pub(super) async fn get_resource_with_groups(
        &self,
        rtype: &str,
        id: &str,
    ) -> Result<Option<(StoredRow, Vec<GroupMembership>)>, StoreError> {
        with_client!(self, |client| {
            let get = client.prepare_cached(&GET_WITH_GROUPS).await?;
            match client.query_opt(&get, &[&id, &rtype]).await? {
                None => None,
                Some(row) => Some((to_row(&row)?, groups_from_json(&row, 7)?)),
            }
        })
    }

    /// Two round trips at most, in one snapshot (a read-only REPEATABLE
    /// READ transaction): BEGIN with the page (and the count when the page
    /// cannot tell it), then the groups of the page's items, in one
    /// statement whatever their number, with the COMMIT.
    pub(super) async fn query_resources_with_groups(
        &self,
        q: Query,
        groups_for: &[String],
    ) -> Result<(Page, Vec<Option<Vec<GroupMembership>>>), StoreError> {
        let (count, page): (Sql, Sql) = page_queries(Dialect::Postgres, &q);
        with_client!(self, |client| {
            let snapshot = ReadSnapshot::begin(client);
            let c = snapshot.client()?;
            let groups_stmt = c.prepare_cached(&GROUPS_BY_SEQ).await?;
            let (count_stmt, page_stmt) = tokio::try_join!(
                list_statement(c, &count.text),
                list_statement(c, &page.text),
            )?;
            let (count_params, page_params) = (bind(&count.params), bind(&page.params));
            let ((), rows) = tokio::try_join!(
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
                c.query(&page_stmt, &page_params),
            )?;
            let known = match q.paging {
                Paging::Cursor { after: Some(_), .. } => None,
                _ => total_from_page(&q.paging, rows.len()),
            };
            let mut items = rows.iter().map(to_stored).collect::<Result<Vec<_>, _>>()?;
            let wanted: Vec<i64> = items
                .iter()
                .filter(|s| groups_for.contains(&s.resource_type))
                .map(|s| s.position)
                .collect();
            let listed: Vec<i64> = match q.with_members {
                true => items.iter().map(|s| s.position).collect(),
                false => Vec::new(),
            };
            let (total, group_rows, member_rows, ()) = tokio::try_join!(
                async {
                    match known {
                        Some(total) => Ok(i64::try_from(total).unwrap_or(i64::MAX)),
                        None => c
                            .query_one(&count_stmt, &count_params)
                            .await?
                            .try_get::<_, i64>(0),
                    }
                },
                async {
                    match wanted.is_empty() {
                        true => Ok(Vec::new()),
                        false => c.query(&groups_stmt, &[&wanted]).await,
                    }
                },
                async {
                    match listed.is_empty() {
                        true => Ok(Vec::new()),
                        false => c.query(MEMBERS_OF, &[&listed]).await,
                    }
                },
                c.batch_execute("COMMIT"),
            )?;
            snapshot.finish();
            if q.with_members {
                attach_members(&mut items, &member_rows)?;
            }
            let mut found = groups_by_member(&group_rows, &wanted)?.into_iter();
            let groups = items
                .iter()
                .map(|s| match groups_for.contains(&s.resource_type) {
                    true => found.next(),
                    false => None,
                })
                .collect();
            (
                Page {
                    total: u64::try_from(total).unwrap_or(0),
                    items,
                },
                groups,
            )
        })
    }

    pub(super) async fn groups_of_members(
        &self,
        member_ids: &[String],
    ) -> Result<Vec<Vec<GroupMembership>>, StoreError> {
        with_client!(self, |client| {
            let groups = client.prepare_cached(&GROUPS_BY_ID).await?;
            let rows = client.query(&groups, &[&member_ids]).await?;
            groups_by_member(&rows, member_ids)?
        })
    }
}

fn to_row(row: &Row) -> Result<StoredRow, Fail> {
    Ok(StoredRow {
        position: row.try_get(0)?,
        id: row.try_get(1)?,
        resource_type: row.try_get(2)?,
        version: row.try_get(3)?,
        created: row.try_get(4)?,
        modified: row.try_get(5)?,
        text: row.try_get(6)?,
    })
}

pub(super) fn to_stored(row: &Row) -> Result<StoredResource, Fail> {
    Ok(to_row(row)?.parse()?)
}

/// Members of several groups at once: `(group_seq, member)` in member order.
pub(super) const MEMBERS_OF: &str = "SELECT m.group_seq, r.id, r.rtype,
        COALESCE(m.display, r.data::json ->> 'displayName', r.data::json ->> 'userName')
   FROM members m JOIN resources r ON r.seq = m.member_seq
  WHERE m.group_seq = ANY($1::int8[]) ORDER BY m.group_seq, m.member_seq";

fn row_to_member(row: &Row) -> Result<(i64, Member), Fail> {
    Ok((
        row.try_get(0)?,
        Member {
            value: row.try_get(1)?,
            typ: Some(row.try_get(2)?),
            display: row.try_get(3)?,
        },
    ))
}

/// Gives each of `items` its members from `rows` of [`MEMBERS_OF`].
pub(super) fn attach_members(items: &mut [StoredResource], rows: &[Row]) -> Result<(), Fail> {
    let mut by_group: HashMap<i64, Vec<Member>> = HashMap::new();
    for row in rows {
        let (group, member) = row_to_member(row)?;
        by_group.entry(group).or_default().push(member);
    }
    for item in items {
        item.members = Some(by_group.remove(&item.position).unwrap_or_default());
    }
    Ok(())
}

pub(super) async fn load_members(
    c: &impl GenericClient,
    group_seq: i64,
) -> Result<Vec<Member>, Fail> {
    let rows = c.query(MEMBERS_OF, &[&vec![group_seq]]).await?;
    rows.iter()
        .map(|r| row_to_member(r).map(|(_, m)| m))
        .collect()
}

/// Rows of [`GROUPS_BY_ID`] or [`GROUPS_BY_SEQ`] by member, in the order of
/// `members`.
fn groups_by_member<K>(rows: &[Row], members: &[K]) -> Result<Vec<Vec<GroupMembership>>, Fail>
where
    K: std::hash::Hash + Eq + for<'a> tokio_postgres::types::FromSql<'a>,
{
    let mut by_member: HashMap<K, Vec<GroupMembership>> = HashMap::new();
    for row in rows {
        by_member
            .entry(row.try_get::<_, K>(0)?)
            .or_default()
            .push(row_to_group(row)?);
    }
    Ok(members
        .iter()
        .map(|m| by_member.remove(m).unwrap_or_default())
        .collect())
}

fn row_to_group(row: &Row) -> Result<GroupMembership, Fail> {
    Ok(GroupMembership {
        group_id: row.try_get(1)?,
        display: row.try_get(2)?,
        direct: row.try_get(3)?,
    })
}

/// The groups of the resource `id` ([`GROUPS_OF_ONE`]).
pub(super) async fn groups_of_id(
    c: &impl deadpool_postgres::GenericClient,
    id: &str,
) -> Result<Vec<GroupMembership>, Fail> {
    let groups = c.prepare_cached(&GROUPS_OF_ONE).await?;
    let rows = c.query(&groups, &[&id]).await?;
    rows.iter().map(row_to_group).collect()
}

/// The groups of a row of [`GET_WITH_GROUPS`] (or of a write that answers
/// them alike), from its JSON column `column` ([`groups_json`]).
pub(super) fn groups_from_json(row: &Row, column: usize) -> Result<Vec<GroupMembership>, Fail> {
    let Some(text) = row.try_get::<_, Option<&str>>(column)? else {
        return Ok(Vec::new());
    };
    let groups: Vec<(String, Option<String>, bool)> = serde_json::from_str(text)
        .map_err(|e| StoreError::Backend(format!("computed groups: {e}")))?;
    Ok(groups
        .into_iter()
        .map(|(group_id, display, direct)| GroupMembership {
            group_id,
            display,
            direct,
        })
        .collect())
}

/// [`GET_ONE`] with the resource's computed groups ([`groups_json`]), in
/// one statement.
pub(super) static GET_WITH_GROUPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT r.seq, r.id, r.rtype, r.version, r.created, r.modified, r.data, gr.groups
           FROM resources r CROSS JOIN LATERAL ({}) gr
          WHERE r.id = $1 AND r.rtype = $2",
        groups_json("r.seq")
    )
});

/// [`GET_ONE`] with the resource's side rows (index entries, unique
/// values) from the same snapshot: what a compare-and-swap write at the
/// version read changes them from ([`stored_side`]).
pub(super) const GET_FOR_CHANGE: &str =
    "SELECT r.seq, r.id, r.rtype, r.version, r.created, r.modified, r.data,
            a.keys, a.elems, a.prims, a.texts, a.numbers, u.scopes, u.ukeys, u.uvalues
       FROM resources r
      CROSS JOIN LATERAL (SELECT array_agg(key) AS keys, array_agg(elem) AS elems,
                                 array_agg(prim) AS prims, array_agg(s) AS texts,
                                 array_agg(n) AS numbers
                            FROM attr_values WHERE seq = r.seq) a
      CROSS JOIN LATERAL (SELECT array_agg(scope) AS scopes, array_agg(key) AS ukeys,
                                 array_agg(value) AS uvalues
                            FROM unique_values WHERE seq = r.seq) u
      WHERE r.id = $1 AND r.rtype = $2";

/// A resource's side rows as [`GET_FOR_CHANGE`] read them.
pub(super) struct StoredSide {
    pub(super) entries: Vec<IndexEntry>,
    pub(super) unique: Vec<StoredUnique>,
}

/// Columns 7 on of a [`GET_FOR_CHANGE`] row.
pub(super) fn stored_side(row: &Row) -> Result<StoredSide, Fail> {
    fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
        row: &'r Row,
        i: usize,
    ) -> Result<Vec<T>, Fail> {
        // No rows: the aggregate is NULL.
        Ok(row.try_get::<_, Option<Vec<T>>>(i)?.unwrap_or_default())
    }
    let keys: Vec<String> = column(row, 7)?;
    let elems: Vec<i64> = column(row, 8)?;
    let prims: Vec<bool> = column(row, 9)?;
    let texts: Vec<Option<String>> = column(row, 10)?;
    let numbers: Vec<Option<f64>> = column(row, 11)?;
    let entries = keys
        .into_iter()
        .zip(elems)
        .zip(prims)
        .zip(texts)
        .zip(numbers)
        .map(|((((key, elem), primary), text), number)| {
            let elem = u32::try_from(elem)
                .map_err(|_| StoreError::Backend(format!("index row element {elem}")))?;
            Ok(IndexEntry {
                key,
                elem,
                primary,
                text,
                number,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let scopes: Vec<String> = column(row, 12)?;
    let ukeys: Vec<String> = column(row, 13)?;
    let uvalues: Vec<String> = column(row, 14)?;
    let unique = scopes
        .into_iter()
        .zip(ukeys)
        .zip(uvalues)
        .map(|((scope, key), value)| (scope, key, value))
        .collect();
    Ok(StoredSide { entries, unique })
}

pub(super) const GET_ONE: &str =
    "SELECT r.seq, r.id, r.rtype, r.version, r.created, r.modified, r.data
   FROM resources r WHERE r.id = $1 AND r.rtype = $2";

/// Prepared statements a connection keeps for list queries: one per filter
/// shape (values are parameters). Kept, a lookup is one round trip and no
/// parsing or planning; beyond this many shapes on one connection, further
/// ones are prepared for the one use so a client cannot grow the cache.
const MAX_CACHED_LIST_STATEMENTS: usize = 200;

async fn list_statement(
    client: &deadpool_postgres::Object,
    text: &str,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    if client.statement_cache.size() < MAX_CACHED_LIST_STATEMENTS {
        client.prepare_cached(text).await
    } else {
        client.prepare(text).await
    }
}

/// A pooled connection inside a read transaction begun by hand, so that
/// `BEGIN` travels with the first query instead of costing a round trip of
/// its own. Dropped before [`ReadSnapshot::finish`] (an error, a cancelled
/// request), the connection is taken out of the pool and closed rather
/// than handed to the next caller with a transaction open.
struct ReadSnapshot {
    client: Option<deadpool_postgres::Object>,
}

impl ReadSnapshot {
    fn begin(client: deadpool_postgres::Object) -> Self {
        ReadSnapshot {
            client: Some(client),
        }
    }

    fn client(&self) -> Result<&deadpool_postgres::Object, Fail> {
        self.client
            .as_ref()
            .ok_or_else(|| Fail::Store(StoreError::Backend("read snapshot already ended".into())))
    }

    /// The transaction ended (COMMIT answered): back to the pool.
    fn finish(mut self) {
        self.client.take();
    }
}

impl Drop for ReadSnapshot {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
