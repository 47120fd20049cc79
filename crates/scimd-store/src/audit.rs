//! What both stores share about reading and pruning the change log: the
//! `WHERE` clause of an audit query and the retention cutoff. The SQL of
//! appending differs (a statement of the writer's on SQLite, a CTE of the
//! write's own statement on PostgreSQL) and lives with each store.

use scimd_core::changelog::{AuditQuery, Retention};

use crate::translate::{Dialect, Param, Sql};

/// The `WHERE` clause of `query`'s filters (positioned entries only).
pub(crate) fn filter(dialect: Dialect, query: &AuditQuery) -> Sql {
    let mut sql = Sql::new(dialect);
    let filters = &query.filters;
    sql.text.push_str("position IS NOT NULL");
    let text = |sql: &mut Sql, clause: &str, value: &Option<String>| {
        if let Some(v) = value {
            sql.text.push_str(" AND ");
            sql.text.push_str(clause);
            sql.param(Param::Text(v.clone()));
        }
    };
    if let Some(id) = &filters.resource_id {
        match dialect {
            Dialect::Postgres => text(&mut sql, "resource_id = ", &filters.resource_id),
            // SQLite indexes the log by resource in bulk: the index, and
            // the entries it does not have yet (`sqlite/change_log.rs`).
            Dialect::Sqlite => {
                sql.text.push_str(
                    " AND position IN (SELECT position FROM change_log_by_resource
                                        WHERE resource_id = ",
                );
                sql.param(Param::Text(id.clone()));
                sql.text.push_str(
                    " UNION ALL SELECT position FROM change_log
                       WHERE position > (SELECT through FROM change_log_indexed)
                         AND resource_id = ",
                );
                sql.param(Param::Text(id.clone()));
                sql.text.push(')');
            }
        }
    }
    text(&mut sql, "rtype = ", &filters.resource_type);
    text(&mut sql, "op = ", &filters.op);
    text(&mut sql, "at >= ", &filters.since);
    text(&mut sql, "at < ", &filters.until);
    if let Some(actor) = &filters.actor {
        sql.text.push_str(" AND (client_id = ");
        sql.param(Param::Text(actor.clone()));
        sql.text.push_str(" OR subject = ");
        sql.param(Param::Text(actor.clone()));
        sql.text.push(')');
    }
    if let Some(after) = query.after {
        sql.text.push_str(" AND position > ");
        sql.param(Param::Int(after));
    }
    sql
}

/// The time before which entries are too old to keep, as the log writes
/// times (RFC 3339, UTC, so that text order is time order); `None` when
/// age does not count.
pub(crate) fn cutoff(retention: Retention) -> Option<String> {
    if retention.max_age_days == 0 {
        return None;
    }
    let then =
        time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(retention.max_age_days));
    Some(scimd_core::value::format_timestamp(then))
}
