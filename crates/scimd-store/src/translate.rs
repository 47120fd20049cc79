//! Resolved conditions ([`Cond`]) to parameterized SQL over `attr_values`.
//! Each term becomes `r.seq IN (SELECT … FROM attr_values …)`, which the
//! planner drives from the `(key, s, seq)` / `(key, n, seq)` indexes.
//!
//! One translation serves every store: the few places where SQLite and
//! PostgreSQL spell things differently go through [`Dialect`], so both run
//! the same logic and give the same answers.

use scimd_core::index::MetaColumn;
use scimd_core::query::{Cond, Paging, Query, SortKey};
use scimd_core::value::Comparable;
use scimd_filter::CompareOp;

use crate::nesting::member_of;

/// The SQL spelling a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `?` placeholders, `instr`, the BINARY collation.
    Sqlite,
    /// `$n::type` placeholders, `strpos`, text columns in the "C" collation
    /// (byte order, as SQLite's BINARY), and an index on a prefix of the text
    /// (see [`PG_INDEXED_PREFIX`]).
    Postgres,
}

/// Characters of `attr_values.s` that PostgreSQL's index holds. A B-tree
/// entry must fit in about a third of a page (2.7 kB), and SCIM values (an
/// X.509 certificate, a photo data URI) can be longer; the index holds a
/// prefix and the full value is compared on the row. 256 characters are at
/// most 1 kB of UTF-8.
pub const PG_INDEXED_PREFIX: usize = 256;

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Real(f64),
    Int(i64),
}

/// SQL text with its bound parameters.
#[derive(Debug)]
pub struct Sql {
    pub dialect: Dialect,
    pub text: String,
    pub params: Vec<Param>,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Sql {
        Sql {
            dialect,
            text: String::new(),
            params: Vec::new(),
        }
    }

    /// Appends a placeholder for `v`. PostgreSQL placeholders carry their
    /// type: `length($1)` alone would be ambiguous to its planner.
    pub fn param(&mut self, v: Param) {
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                let ty = match v {
                    Param::Text(_) => "text",
                    Param::Real(_) => "float8",
                    Param::Int(_) => "int8",
                };
                self.text
                    .push_str(&format!("${}::{ty}", self.params.len() + 1));
            }
        }
        self.params.push(v);
    }

    fn true_literal(&mut self) {
        self.text.push_str(match self.dialect {
            Dialect::Sqlite => "1",
            Dialect::Postgres => "TRUE",
        });
    }

    fn false_literal(&mut self) {
        self.text.push_str(match self.dialect {
            Dialect::Sqlite => "0",
            Dialect::Postgres => "FALSE",
        });
    }
}

/// Appends the condition as a boolean SQL expression about `r.seq`.
pub fn condition(sql: &mut Sql, cond: &Cond) {
    scoped_condition(sql, cond, Scope::Resource);
}

/// What a term is about: the resource `r`, or (inside a value filter) the
/// element `(p.seq, p.elem)` of the multi-valued attribute.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Resource,
    Element,
}

impl Scope {
    /// The opening of a term selecting index entries of this scope; the
    /// entry alias is `a`.
    fn term_prefix(self) -> &'static str {
        match self {
            Scope::Resource => "r.seq IN (SELECT a.seq FROM attr_values a WHERE a.key = ",
            Scope::Element => {
                "EXISTS (SELECT 1 FROM attr_values a WHERE a.seq = p.seq AND a.elem = p.elem AND a.key = "
            }
        }
    }
}

fn scoped_condition(sql: &mut Sql, cond: &Cond, scope: Scope) {
    match cond {
        Cond::And(a, b) | Cond::Or(a, b) => {
            sql.text.push('(');
            scoped_condition(sql, a, scope);
            sql.text.push_str(if matches!(cond, Cond::And(..)) {
                " AND "
            } else {
                " OR "
            });
            scoped_condition(sql, b, scope);
            sql.text.push(')');
        }
        Cond::Not(inner) => {
            sql.text.push_str("(NOT ");
            scoped_condition(sql, inner, scope);
            sql.text.push(')');
        }
        // Server-managed facts are columns of the resource row, always set.
        Cond::Present { key } if scope == Scope::Resource && MetaColumn::of(key).is_some() => {
            sql.true_literal()
        }
        Cond::Present { key } => {
            sql.text.push_str(scope.term_prefix());
            sql.param(Param::Text(key.clone()));
            sql.text.push(')');
        }
        Cond::Compare { key, op, value } => match (scope, MetaColumn::of(key)) {
            (Scope::Resource, Some(column)) => {
                // Parenthesised: a comparison may be several conjuncts.
                sql.text.push('(');
                meta_comparison(sql, column, *op, value);
                sql.text.push(')');
            }
            _ => {
                sql.text.push_str(scope.term_prefix());
                sql.param(Param::Text(key.clone()));
                sql.text.push_str(" AND ");
                comparison(sql, "a", *op, value);
                sql.text.push(')');
            }
        },
        // Resolution never nests value filters, nor puts memberships in one.
        Cond::Element { .. } | Cond::HasMember(_) | Cond::MemberOf(_)
            if scope == Scope::Element =>
        {
            sql.false_literal()
        }
        Cond::HasMember(None) => sql
            .text
            .push_str("r.seq IN (SELECT m.group_seq FROM members m)"),
        Cond::HasMember(Some(id)) => {
            // From the members_member index: the member's groups.
            sql.text.push_str(
                "r.seq IN (SELECT m.group_seq FROM members m WHERE m.member_seq = \
                 (SELECT x.seq FROM resources x WHERE x.id = ",
            );
            sql.param(Param::Text(id.clone()));
            sql.text.push_str("))");
        }
        Cond::MemberOf(None) => sql
            .text
            .push_str("r.seq IN (SELECT m.member_seq FROM members m)"),
        Cond::MemberOf(Some(id)) => member_of(sql, id),
        Cond::Element { parent, cond } => {
            sql.text
                .push_str("r.seq IN (SELECT p.seq FROM attr_values p WHERE p.key = ");
            sql.param(Param::Text(parent.clone()));
            sql.text.push_str(" AND ");
            scoped_condition(sql, cond, Scope::Element);
            sql.text.push(')');
        }
    }
}

/// The SQL operator of an equality or ordering comparison.
fn symbol(op: CompareOp) -> Option<&'static str> {
    match op {
        CompareOp::Eq => Some("="),
        CompareOp::Ne => Some("<>"),
        CompareOp::Gt => Some(">"),
        CompareOp::Ge => Some(">="),
        CompareOp::Lt => Some("<"),
        CompareOp::Le => Some("<="),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => None,
    }
}

fn comparison(sql: &mut Sql, alias: &str, op: CompareOp, value: &Comparable) {
    let t = match value {
        Comparable::Number(n) => {
            match symbol(op) {
                Some(sym) => {
                    sql.text.push_str(&format!("{alias}.n {sym} "));
                    sql.param(Param::Real(*n));
                }
                // Substring operators apply to text only (resolution refuses them on numbers).
                None => sql.false_literal(),
            }
            return;
        }
        Comparable::Text(t) => t,
    };
    let col = format!("{alias}.s");
    let prefixed = sql.dialect == Dialect::Postgres;
    text_condition(sql, &col, op, t, prefixed);
}

/// `col op 'value'` for text; `prefixed`: the column's index holds only
/// [`PG_INDEXED_PREFIX`] characters (see [`text_compare`]).
fn text_condition(sql: &mut Sql, col: &str, op: CompareOp, t: &str, prefixed: bool) {
    if let Some(sym) = symbol(op) {
        text_compare(sql, col, sym, t, prefixed);
        return;
    }
    match op {
        CompareOp::Co => {
            sql.text.push_str(&match sql.dialect {
                Dialect::Sqlite => format!("instr({col}, "),
                Dialect::Postgres => format!("strpos({col}, "),
            });
            sql.param(Param::Text(t.to_string()));
            sql.text.push_str(") > 0");
        }
        CompareOp::Sw => {
            text_compare(sql, col, ">=", t, prefixed);
            sql.text.push_str(" AND ");
            match prefix_upper_bound(t) {
                Some(upper) => text_compare(sql, col, "<", &upper, prefixed),
                None => {
                    sql.text.push_str(&format!("substr({col}, 1, length("));
                    sql.param(Param::Text(t.to_string()));
                    sql.text.push_str(")) = ");
                    sql.param(Param::Text(t.to_string()));
                }
            }
        }
        _ => {
            sql.text.push_str(&format!("length({col}) >= length("));
            sql.param(Param::Text(t.to_string()));
            sql.text
                .push_str(&format!(") AND substr({col}, length({col}) - length("));
            sql.param(Param::Text(t.to_string()));
            sql.text.push_str(") + 1) = ");
            sql.param(Param::Text(t.to_string()));
        }
    }
}

/// `col sym 'value'` on a text column. On PostgreSQL the index holds only a
/// prefix of `s`, so an indexable condition on the prefix comes first:
/// truncating both sides to the same length keeps their order (weakly), so
/// the prefix condition never excludes a row the full one accepts.
fn text_compare(sql: &mut Sql, col: &str, sym: &str, value: &str, prefixed: bool) {
    if prefixed {
        let weak = match sym {
            "=" => Some("="),
            ">" | ">=" => Some(">="),
            "<" | "<=" => Some("<="),
            _ => None,
        };
        if let Some(weak) = weak {
            sql.text
                .push_str(&format!("left({col}, {PG_INDEXED_PREFIX}) {weak} left("));
            sql.param(Param::Text(value.to_string()));
            sql.text.push_str(&format!(", {PG_INDEXED_PREFIX}) AND "));
        }
    }
    sql.text.push_str(&format!("{col} {sym} "));
    sql.param(Param::Text(value.to_string()));
}

/// The column expression of a server-managed fact, as text in byte order.
/// Timestamps are stored as RFC 3339 UTC with milliseconds
/// (`2026-01-02T03:04:05.678Z`), one fixed width, so text order is time order.
fn meta_column(dialect: Dialect, column: MetaColumn) -> Option<&'static str> {
    Some(match (dialect, column) {
        (_, MetaColumn::Meta) => return None,
        (Dialect::Sqlite, MetaColumn::Id) => "r.id",
        (Dialect::Sqlite, MetaColumn::ResourceType) => "r.rtype",
        (Dialect::Sqlite, MetaColumn::Created) => "r.created",
        (Dialect::Sqlite, MetaColumn::LastModified) => "r.modified",
        (Dialect::Sqlite, MetaColumn::Version) => "('W/\"' || r.version || '\"')",
        (Dialect::Postgres, MetaColumn::Id) => "(r.id COLLATE \"C\")",
        (Dialect::Postgres, MetaColumn::ResourceType) => "(r.rtype COLLATE \"C\")",
        (Dialect::Postgres, MetaColumn::Created) => "(r.created COLLATE \"C\")",
        (Dialect::Postgres, MetaColumn::LastModified) => "(r.modified COLLATE \"C\")",
        (Dialect::Postgres, MetaColumn::Version) => {
            "(('W/\"' || r.version::text || '\"') COLLATE \"C\")"
        }
    })
}

/// A comparison on a server-managed fact, with the semantics of the index
/// entries [`scimd_core::index::meta_entries`] describes.
fn meta_comparison(sql: &mut Sql, column: MetaColumn, op: CompareOp, value: &Comparable) {
    let (Comparable::Text(t), Some(expr)) = (value, meta_column(sql.dialect, column)) else {
        // `meta` itself has no value; facts are never numbers.
        sql.false_literal();
        return;
    };
    // Equality on the id must use the plain column for its unique index
    // (PostgreSQL's is in the database's default collation).
    if column == MetaColumn::Id && op == CompareOp::Eq {
        sql.text.push_str("r.id = ");
        sql.param(Param::Text(t.clone()));
        return;
    }
    if !matches!(column, MetaColumn::Created | MetaColumn::LastModified) {
        text_condition(sql, expr, op, t, false);
        return;
    }
    // Filter values are nanosecond keys (`….fffffffffZ`, see
    // `value::datetime_key`); the columns hold milliseconds.
    let Some((millis, exact)) = millisecond_key(t) else {
        sql.false_literal();
        return;
    };
    match op {
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
            let wide = match sql.dialect {
                Dialect::Sqlite => format!("(substr({expr}, 1, 23) || '000000Z')"),
                Dialect::Postgres => {
                    format!("((substr({expr}, 1, 23) || '000000Z') COLLATE \"C\")")
                }
            };
            text_condition(sql, &wide, op, t, false);
        }
        _ if exact => text_condition(sql, expr, op, &millis, false),
        // A stored time is a whole millisecond, so it never equals a value
        // with a finer fraction and lies strictly on one side of it.
        CompareOp::Eq => sql.false_literal(),
        CompareOp::Ne => sql.true_literal(),
        CompareOp::Gt | CompareOp::Ge => text_condition(sql, expr, CompareOp::Gt, &millis, false),
        CompareOp::Lt | CompareOp::Le => text_condition(sql, expr, CompareOp::Le, &millis, false),
    }
}

/// `2026-01-02T03:04:05.678901234Z` → (`2026-01-02T03:04:05.678Z`, whether
/// nothing finer than milliseconds was cut).
fn millisecond_key(key: &str) -> Option<(String, bool)> {
    if key.len() != 30 || !key.is_ascii() || !key.ends_with('Z') {
        return None;
    }
    let exact = key.get(23..29)? == "000000";
    Some((format!("{}Z", key.get(..23)?), exact))
}

/// The smallest string greater than every string starting with `prefix`:
/// strings with that prefix are exactly `[prefix, upper)` in byte order.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    let last = chars.pop()?;
    let next = match last as u32 {
        0xD7FF => char::from_u32(0xE000)?,
        c => char::from_u32(c + 1)?,
    };
    chars.push(next);
    Some(chars.into_iter().collect())
}

/// `ORDER BY` for a sort key: missing values last ascending, first
/// descending (RFC 7644 3.4.2.3); ties broken by insertion order.
pub fn order_by(sql: &mut Sql, sort: Option<&SortKey>) {
    sql.text.push_str(" ORDER BY ");
    if let Some(sort) = sort
        && let Some(column) = MetaColumn::of(&sort.key)
    {
        let expr = match column {
            MetaColumn::Version => Some("r.version"),
            other => meta_column(sql.dialect, other),
        };
        if let Some(expr) = expr {
            sql.text.push_str(expr);
            sql.text
                .push_str(if sort.descending { " DESC, " } else { " ASC, " });
        }
    } else if let Some(sort) = sort {
        let col = if sort.numeric { "n" } else { "s" };
        sql.text.push_str(&format!(
            "(SELECT a.{col} FROM attr_values a WHERE a.seq = r.seq AND a.key = "
        ));
        sql.param(Param::Text(sort.key.clone()));
        sql.text.push_str(" ORDER BY a.prim DESC, a.elem LIMIT 1)");
        sql.text.push_str(if sort.descending {
            " DESC NULLS FIRST, "
        } else {
            " ASC NULLS LAST, "
        });
    }
    sql.text.push_str("r.seq");
}

/// The two statements of a list query: the total count, and the page
/// (columns `COLUMNS` of `resources r`).
pub fn page_queries(dialect: Dialect, q: &Query) -> (Sql, Sql) {
    let mut filter = Sql::new(dialect);
    filter.text.push_str(" WHERE r.rtype IN (");
    for (i, t) in q.resource_types.iter().enumerate() {
        if i > 0 {
            filter.text.push_str(", ");
        }
        filter.param(Param::Text(t.clone()));
    }
    filter.text.push(')');
    if let Some(cond) = &q.filter {
        filter.text.push_str(" AND ");
        condition(&mut filter, cond);
    }
    let count = Sql {
        dialect,
        text: format!("SELECT count(*) FROM resources r{}", filter.text),
        params: filter.params.clone(),
    };
    let mut page = Sql {
        text: format!("SELECT {COLUMNS} FROM resources r{}", filter.text),
        ..filter
    };
    let (limit, offset) = match q.paging {
        Paging::Index { start, count } => (count, start.saturating_sub(1)),
        Paging::Cursor { after, count } => {
            if let Some(after) = after {
                page.text.push_str(" AND r.seq > ");
                page.param(Param::Int(after));
            }
            (count, 0)
        }
    };
    let sort = match q.paging {
        Paging::Cursor { .. } => None,
        Paging::Index { .. } => q.sort.as_ref(),
    };
    order_by(&mut page, sort);
    page.text.push_str(" LIMIT ");
    page.param(Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    page.text.push_str(" OFFSET ");
    page.param(Param::Int(i64::try_from(offset).unwrap_or(i64::MAX)));
    (count, page)
}

/// Deletes the resources of type `rtype` that match `cond`.
pub fn delete_matching(dialect: Dialect, rtype: &str, cond: &Cond) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.text.push_str("DELETE FROM resources WHERE seq IN (");
    select_matching(&mut sql, rtype, cond);
    sql.text.push(')');
    sql
}

/// Locks the resources of type `rtype` that match `cond` (PostgreSQL's
/// `FOR UPDATE`), so that the statements after it see every write of them
/// that was in flight.
pub fn lock_matching(rtype: &str, cond: &Cond) -> Sql {
    let mut sql = Sql::new(Dialect::Postgres);
    select_matching(&mut sql, rtype, cond);
    sql.text.push_str(" FOR UPDATE OF r");
    sql
}

fn select_matching(sql: &mut Sql, rtype: &str, cond: &Cond) {
    sql.text
        .push_str("SELECT r.seq FROM resources r WHERE r.rtype = ");
    sql.param(Param::Text(rtype.to_string()));
    sql.text.push_str(" AND ");
    condition(sql, cond);
}

/// The total number of matches when a page shows it by itself: a page that
/// is not full holds every match from its start on, so when the matches
/// before it are known (index paging, or a cursor walk's first page) the
/// count query can be skipped. A lookup such as `userName eq` then costs one
/// query instead of two. The page and anything derived from it come from one
/// snapshot, so the figure is exact.
pub fn total_from_page(paging: &Paging, rows: usize) -> Option<u64> {
    let rows = u64::try_from(rows).ok()?;
    match *paging {
        Paging::Index { start, count } => {
            let before = start.saturating_sub(1);
            // An empty page past the start says nothing about the total.
            (count > 0 && rows < count && (rows > 0 || before == 0)).then_some(before + rows)
        }
        Paging::Cursor { after: None, count } => (count > 0 && rows < count).then_some(rows),
        Paging::Cursor { after: Some(_), .. } => None,
    }
}

/// The columns every store reads a resource with, in `row_to_resource` order.
pub const COLUMNS: &str = "r.seq, r.id, r.rtype, r.version, r.created, r.modified, r.data";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_come_from_pages_only_when_they_show_everything() {
        let index = |start, count| Paging::Index { start, count };
        assert_eq!(total_from_page(&index(1, 100), 1), Some(1));
        assert_eq!(total_from_page(&index(1, 100), 0), Some(0));
        assert_eq!(total_from_page(&index(11, 100), 5), Some(15));
        assert_eq!(total_from_page(&index(11, 100), 0), None);
        assert_eq!(total_from_page(&index(1, 100), 100), None);
        assert_eq!(total_from_page(&index(1, 0), 0), None);
        let cursor = |after, count| Paging::Cursor { after, count };
        assert_eq!(total_from_page(&cursor(None, 101), 7), Some(7));
        assert_eq!(total_from_page(&cursor(None, 101), 101), None);
        assert_eq!(total_from_page(&cursor(Some(5), 101), 7), None);
        assert_eq!(total_from_page(&cursor(None, 0), 0), None);
    }
}
