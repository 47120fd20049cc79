//! What is written with a resource besides its row: its unique values
//! (`unique_values`, whose primary key is SCIM uniqueness), its index rows
//! (`attr_values`, which filters and sorting read) and, for a group, its
//! member rows (`members`).

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use scimd_core::store::{IndexEntry, Member, ResourceWrite, StoreError, UniqueValue};

use super::backend;
use crate::rules::{StoredUnique, entry_delta, member_type_ok, unique_delta, unique_scope};

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

/// Writes unique values, index entries and (optionally) memberships of `seq`.
pub(super) fn write_side_tables(
    conn: &Connection,
    seq: i64,
    w: &ResourceWrite,
) -> Result<(), StoreError> {
    for u in &w.unique {
        insert_unique(conn, seq, &w.resource_type, u)?;
    }
    for (ord, e) in (0_i64..).zip(&w.index) {
        insert_entry(conn, seq, ord, e)?;
    }
    write_members(conn, seq, w)
}

/// Brings the side tables of an existing `seq` to what `w` needs, touching
/// only the rows that differ: a one-attribute change rewrites one index
/// entry, not all of them (each is a B-tree page in three indexes).
pub(super) fn rewrite_side_tables(
    conn: &Connection,
    seq: i64,
    w: &ResourceWrite,
) -> Result<(), StoreError> {
    let old: Vec<StoredUnique> = conn
        .prepare_cached("SELECT scope, key, value FROM unique_values WHERE seq = ?")
        .and_then(|mut s| {
            s.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(backend)?;
    let (gone, added) = unique_delta(&old, w);
    for (scope, key, value) in gone {
        conn.prepare_cached("DELETE FROM unique_values WHERE scope = ? AND key = ? AND value = ?")
            .and_then(|mut s| s.execute([scope, key, value]))
            .map_err(backend)?;
    }
    for u in added {
        insert_unique(conn, seq, &w.resource_type, u)?;
    }

    // Index entries: a multiset difference on every column.
    // One range of the table's key: a resource's rows are stored together.
    let stored: Vec<(i64, IndexEntry)> = conn
        .prepare_cached("SELECT ord, key, elem, prim, s, n FROM attr_values WHERE seq = ?")
        .and_then(|mut s| {
            s.query_map([seq], |r| {
                Ok((
                    r.get(0)?,
                    IndexEntry {
                        key: r.get(1)?,
                        elem: r.get(2)?,
                        primary: r.get(3)?,
                        text: r.get(4)?,
                        number: r.get(5)?,
                    },
                ))
            })?
            .collect()
        })
        .map_err(backend)?;
    let mut next_ord = stored.iter().map(|(ord, _)| ord + 1).max().unwrap_or(0);
    let old: Vec<(i64, &IndexEntry)> = stored.iter().map(|(ord, e)| (*ord, e)).collect();
    let (gone, mut added) = entry_delta(old, &w.index);
    // A changed value of the same attribute element is updated in place:
    // only the value indexes change, not the row's place.
    for (ord, old_entry) in gone {
        let same_slot = added
            .iter()
            .position(|e| e.key == old_entry.key && e.elem == old_entry.elem);
        match same_slot {
            Some(i) => {
                let e = added.swap_remove(i);
                conn.prepare_cached(
                    "UPDATE attr_values SET prim = ?, s = ?, n = ? WHERE seq = ? AND key = ? AND ord = ?",
                )
                .and_then(|mut s| {
                    s.execute(params![e.primary, e.text, e.number, seq, old_entry.key, ord])
                })
                .map_err(backend)?;
            }
            None => {
                conn.prepare_cached(
                    "DELETE FROM attr_values WHERE seq = ? AND key = ? AND ord = ?",
                )
                .and_then(|mut s| s.execute(params![seq, old_entry.key, ord]))
                .map_err(backend)?;
            }
        }
    }
    for e in added {
        insert_entry(conn, seq, next_ord, e)?;
        next_ord += 1;
    }
    write_members(conn, seq, w)
}

fn insert_unique(
    conn: &Connection,
    seq: i64,
    resource_type: &str,
    u: &UniqueValue,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO unique_values (scope, key, value, seq) VALUES (?, ?, ?, ?)")
        .and_then(|mut s| s.execute(params![unique_scope(resource_type, u), u.key, u.value, seq]))
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Uniqueness {
                    attr: u.key.clone(),
                }
            } else {
                backend(e)
            }
        })?;
    Ok(())
}

/// `ord` tells apart values of one attribute of one resource.
fn insert_entry(conn: &Connection, seq: i64, ord: i64, e: &IndexEntry) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO attr_values (seq, key, ord, elem, prim, s, n) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            seq, e.key, ord, e.elem, e.primary, e.text, e.number
        ])
    })
    .map_err(backend)?;
    Ok(())
}

fn write_members(conn: &Connection, seq: i64, w: &ResourceWrite) -> Result<(), StoreError> {
    if let Some(members) = &w.members {
        conn.execute("DELETE FROM members WHERE group_seq = ?", [seq])
            .map_err(backend)?;
        add_members(conn, seq, members, &w.member_types)?;
    }
    Ok(())
}

pub(super) fn add_members(
    conn: &Connection,
    group_seq: i64,
    members: &[Member],
    types: &[String],
) -> Result<(), StoreError> {
    let mut find = conn
        .prepare_cached("SELECT seq, rtype FROM resources WHERE id = ?")
        .map_err(backend)?;
    let mut insert = conn
        .prepare_cached("INSERT INTO members (group_seq, member_seq, display) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
        .map_err(backend)?;
    for m in members {
        let found: Option<(i64, String)> = find
            .query_row([&m.value], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)?;
        let Some((member_seq, rtype)) = found else {
            return Err(StoreError::UnknownMember(m.value.clone()));
        };
        if !member_type_ok(types, &rtype, m) {
            return Err(StoreError::UnknownMember(m.value.clone()));
        }
        insert
            .execute(params![group_seq, member_seq, m.display])
            .map_err(backend)?;
    }
    Ok(())
}
