//! Nested groups: one rule, and the three statements that apply it.
//!
//! A group's members may be groups. A resource is in group G when it is a
//! member of G, or a member of a group that is in G, to any depth; its
//! computed `groups` are the groups it is directly a member of (`direct`),
//! then the groups those are members of, and so on (a group reached both
//! ways is direct). Every statement here walks `members` with
//! `WITH RECURSIVE … UNION`: `UNION`, not `UNION ALL`, keeps only rows not
//! found before, so a cycle (A in B, B in A) ends the walk instead of
//! looping, and each group comes once.
//!
//! The walk is written three times, side by side here:
//! - [`member_of`], downward: the members of one group, transitively (the
//!   filter `groups.value eq "…"`, `Cond::MemberOf`); one text for both
//!   dialects, inside a list query's `WHERE`, seeded from the group's
//!   `members` rows.
//! - [`SQLITE_GROUPS_OF`], upward: the groups of one resource on SQLite.
//!   The SQLite store reads direct groups first and runs it only when one
//!   of them is itself a member (`sqlite::reads::groups_of_seq`).
//! - [`GROUPS_BY_ID`], [`GROUPS_OF_ONE`] and [`GROUPS_BY_SEQ`], upward: the
//!   groups of one or many resources in one statement on PostgreSQL
//!   ([`groups_statement`]), each row carrying its member; and
//!   [`groups_json`], the same walk as one JSON value, inside a point read.
//!
//! They are not one template because they differ where it matters: the
//! filter walks from groups to members (`members`' primary key,
//! `(group_seq, member_seq)`) and the others from members to groups (the
//! `members_member` index, `(member_seq, group_seq)`); PostgreSQL's
//! walk reaches every table through `LATERAL (… OFFSET 0)` subqueries, so
//! that each step is an index probe per row whatever the statistics say
//! (`pg_concurrency::plans_stay_on_indexes_at_scale` checks those plans),
//! and SQLite has no `LATERAL`: its order comes from `CROSS JOIN` instead.
//! A shared spelling would change the text, and so the plans, of at least
//! one of them. What they share is the rule above: change it in all three.

use std::sync::LazyLock;

use crate::translate::{Param, Sql};

/// Appends `r.seq IN (…)`: the resource is a member of the group
/// `group_id`, directly or through the groups among its members.
pub(crate) fn member_of(sql: &mut Sql, group_id: &str) {
    // The computed `groups` holds indirect groups too: the members
    // of the group and, recursively, of the groups among them.
    sql.text.push_str(
        "r.seq IN (WITH RECURSIVE inside(seq) AS (\
         SELECT m.member_seq FROM members m WHERE m.group_seq = \
         (SELECT x.seq FROM resources x WHERE x.id = ",
    );
    sql.param(Param::Text(group_id.to_string()));
    sql.text.push_str(
        ") UNION SELECT m.member_seq FROM members m JOIN inside i ON m.group_seq = i.seq) \
         SELECT seq FROM inside)",
    );
}

/// SQLite: the groups of one resource (`?`, its `seq`), direct and
/// inherited, as rows `(group id, group displayName, direct)` in group
/// order. CROSS JOIN keeps SQLite from scanning every resource to satisfy
/// the ORDER BY; the CTE is tiny.
pub(crate) const SQLITE_GROUPS_OF: &str = "WITH RECURSIVE g(seq, direct) AS (
               SELECT m.group_seq, 1 FROM members m WHERE m.member_seq = ?
               UNION
               SELECT m.group_seq, 0 FROM members m JOIN g ON m.member_seq = g.seq
             )
             SELECT r.id, json_extract(r.data, '$.displayName'), max(g.direct)
               FROM g CROSS JOIN resources r ON r.seq = g.seq GROUP BY g.seq ORDER BY g.seq";

/// PostgreSQL: the computed groups of several members in one statement, direct and
/// inherited, as rows `(member, group id, group displayName, direct)` ordered
/// by member and group. `members` is the first step of the recursion: rows
/// `(member, group_seq, TRUE)`. Every step is a lookup by key that the
/// planner cannot turn into a scan, whatever its statistics say: the
/// `LATERAL (… OFFSET 0)` subqueries cannot be flattened into joins, so each
/// runs as an index probe per row (a hash join chosen from a bad estimate
/// once scanned and sorted all of `resources` for every `GET /Users/{id}`).
fn groups_statement(members: &str) -> String {
    format!(
        "WITH RECURSIVE g(member, seq, direct) AS (
           {members}
           UNION
           SELECT g.member, p.group_seq, FALSE FROM g CROSS JOIN LATERAL
             (SELECT x.group_seq FROM members x WHERE x.member_seq = g.seq OFFSET 0) p
         )
         SELECT a.member, r.id, r.data::json ->> 'displayName', a.direct
           FROM (SELECT member, seq, bool_or(direct) AS direct FROM g GROUP BY member, seq) a
           CROSS JOIN LATERAL (SELECT x.id, x.data FROM resources x WHERE x.seq = a.seq OFFSET 0) r
          ORDER BY a.member, a.seq"
    )
}

/// [`groups_statement`] of members given by id (`$1`, a text array).
pub(crate) static GROUPS_BY_ID: LazyLock<String> = LazyLock::new(|| {
    groups_statement(
        "SELECT s.id, p.group_seq, TRUE FROM resources s CROSS JOIN LATERAL
           (SELECT x.group_seq FROM members x WHERE x.member_seq = s.seq OFFSET 0) p
          WHERE s.id = ANY($1::text[])",
    )
});

/// [`groups_statement`] of one member given by id (`$1`), for a point read
/// and the answer to a write. Not [`GROUPS_BY_ID`] with one element: the
/// hash tables of the recursion's `UNION` and of the grouping are sized from
/// the planner's estimate of their rows and cleared on every execution, and
/// an array is estimated at ten elements, so each `GET /Users/{id}` cleared
/// tables sized for some 25,000 rows (a third of PostgreSQL's time in a
/// profile of GET by id). One id is one row by the unique index.
pub(crate) static GROUPS_OF_ONE: LazyLock<String> = LazyLock::new(|| {
    groups_statement(
        "SELECT s.id, p.group_seq, TRUE FROM resources s CROSS JOIN LATERAL
           (SELECT x.group_seq FROM members x WHERE x.member_seq = s.seq OFFSET 0) p
          WHERE s.id = $1",
    )
});

/// The computed groups of the resource at position `member` (a column of
/// the enclosing statement) as one JSON text in group order: an array of
/// `[id, displayName, direct]` (NULL when it has none). A point read joins
/// it `LATERAL`, so that the row and its groups are one statement: one
/// execution in PostgreSQL instead of two. One aggregate, not an array per
/// column: each ordered aggregate sorts on its own. The same walk as
/// [`groups_statement`], seeded from one position, written again without
/// the `member` column it needs for many members: wrapped around
/// [`groups_statement`] (ordered or not), the statement measured 3 % slower
/// (`pgbench -M prepared` on the point read, alternating runs).
pub(crate) fn groups_json(member: &str) -> String {
    format!(
        "WITH RECURSIVE g(seq, direct) AS (
           SELECT p.group_seq, TRUE FROM
             (SELECT x.group_seq FROM members x WHERE x.member_seq = {member} OFFSET 0) p
           UNION
           SELECT p.group_seq, FALSE FROM g CROSS JOIN LATERAL
             (SELECT x.group_seq FROM members x WHERE x.member_seq = g.seq OFFSET 0) p
         )
         SELECT json_agg(json_build_array(r.id, r.data::json ->> 'displayName', a.direct)
                         ORDER BY a.seq)::text AS groups
           FROM (SELECT seq, bool_or(direct) AS direct FROM g GROUP BY seq) a
           CROSS JOIN LATERAL (SELECT x.id, x.data FROM resources x WHERE x.seq = a.seq OFFSET 0) r"
    )
}

/// [`groups_statement`] of members given by position (`$1`, an int8 array),
/// each probed on its own: `member_seq = ANY($1)`, planned on an empty
/// database, read all of `members`' primary key (group first) on every call
/// once a group was large (2 ms a call, mixed traffic at 63/s).
pub(crate) static GROUPS_BY_SEQ: LazyLock<String> = LazyLock::new(|| {
    groups_statement(
        "SELECT s.seq, p.group_seq, TRUE FROM unnest($1::int8[]) AS s(seq) CROSS JOIN LATERAL
           (SELECT x.group_seq FROM members x WHERE x.member_seq = s.seq OFFSET 0) p",
    )
});
