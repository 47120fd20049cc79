//! Reads: point reads (on the async worker's own connection), list
//! queries in one snapshot, a group's members, and computed `groups`
//! ([`crate::nesting`] has the recursive statement).

use rusqlite::{Connection, OptionalExtension, params_from_iter};
use scimd_core::query::Query;
use scimd_core::store::{GroupMembership, Member, Page, StoreError, StoredResource, StoredRow};

use super::writer::run_cached;
use super::{SqliteStore, backend};
use crate::nesting::SQLITE_GROUPS_OF;
use crate::translate::{Dialect, Sql, page_queries, total_from_page};

impl SqliteStore {
    pub(super) async fn get_resource(
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

    pub(super) async fn query_resources(&self, q: Query) -> Result<Page, StoreError> {
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

    pub(super) async fn query_resources_with_groups(
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

    pub(super) async fn get_resource_with_groups(
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

    pub(super) async fn groups_of_members(
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

pub(super) fn load_members(conn: &Connection, group_seq: i64) -> Result<Vec<Member>, StoreError> {
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
    let items = page_in(conn, q, &page)?;
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

/// The resources of `q`'s `page` statement, with their members if asked.
pub(super) fn page_in(
    conn: &Connection,
    q: &Query,
    page: &Sql,
) -> Result<Vec<StoredResource>, StoreError> {
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
    Ok(items)
}

pub(super) fn get_one(
    conn: &Connection,
    rtype: &str,
    id: &str,
) -> Result<Option<StoredResource>, StoreError> {
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

pub(super) fn groups_of_seq(
    conn: &Connection,
    member_seq: i64,
) -> Result<Vec<GroupMembership>, StoreError> {
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
    let mut stmt = conn.prepare_cached(SQLITE_GROUPS_OF).map_err(backend)?;
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
