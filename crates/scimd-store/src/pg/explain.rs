//! For tests (feature `testing`): the plans a connection holds for the
//! statements whose plan shape matters.

use scimd_core::store::StoreError;

use super::PgStore;
use super::change_log::{NUMBER_COMMITTED, SEQUENCER_SETTINGS};
use super::changes::UPDATE_CHANGES;
use super::reads::{GET_FOR_CHANGE, GET_ONE, GET_WITH_GROUPS};
use super::retry::with_client;
use super::writes::{
    UPDATE_CHANGED, UPDATE_CHANGED_WITH_GROUPS, UPDATE_RESOURCE, UPDATE_RESOURCE_WITH_GROUPS,
};
use crate::nesting::{GROUPS_BY_ID, GROUPS_BY_SEQ, GROUPS_OF_ONE};

impl PgStore {
    /// For tests: runs `ANALYZE`, then shows the plans a pooled connection
    /// holds (its generic plans, with the session settings scimd gives
    /// every connection) for a point read of the resource `id` (of type
    /// `rtype`, at position `seq`) alone and with its groups, its computed
    /// groups by id (alone and in an array) and by position, a replace of
    /// it (alone and answering its groups; with the side rows compared in
    /// the statement, and with the changed ones only after the read for a
    /// change; several changes written together), and the change log's
    /// sequencer: `(statement, EXPLAIN text)`.
    pub async fn explain_plans(
        &self,
        rtype: &str,
        id: &str,
        seq: i64,
    ) -> Result<Vec<(&'static str, String)>, StoreError> {
        let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
        let (id, rtype) = (quote(id), quote(rtype));
        let replace_args = format!(
            "'{{k}}', '{{0}}', '{{f}}', '{{v}}', '{{NULL}}', '{{{}}}', '{{username}}', '{{v}}', 'now', '{{}}', {id}, {rtype}, NULL, 'now', 'replace', NULL, NULL, '{{}}'",
            rtype.trim_matches('\'')
        );
        let changed_args = format!(
            "'now', '{{}}', {seq}, 1, '{{k}}', '{{0}}', '{{k}}', '{{0}}', '{{f}}', '{{v}}', '{{NULL}}', '{{{r}}}', '{{username}}', '{{v}}', '{{{r}}}', '{{username}}', '{{old}}', 'now', 'replace', NULL, NULL, '{{}}'",
            r = rtype.trim_matches('\'')
        );
        let together_args = format!(
            "ARRAY[{seq}]::int8[], '{{1}}', '{{now}}', '{{\"{{}}\"}}', '{{t}}', '{{now}}', '{{replace}}', '{{NULL}}', '{{NULL}}', '{{\"{{}}\"}}', '{{1}}', '{{k}}', '{{0}}', '{{k}}', '{{0}}', '{{f}}', '{{v}}', '{{NULL}}', '{{{r}}}', '{{username}}', '{{v}}', '{{1}}', '{{1}}', '{{1}}', '{{{r}}}', '{{username}}', '{{old}}'",
            r = rtype.trim_matches('\'')
        );
        let statements: [(&'static str, String, String); 12] = [
            ("point read", GET_ONE.to_string(), format!("{id}, {rtype}")),
            (
                "point read for a change",
                GET_FOR_CHANGE.to_string(),
                format!("{id}, {rtype}"),
            ),
            (
                "point read with groups",
                GET_WITH_GROUPS.to_string(),
                format!("{id}, {rtype}"),
            ),
            ("groups of one", GROUPS_OF_ONE.to_string(), id.clone()),
            (
                "groups by id",
                GROUPS_BY_ID.to_string(),
                format!("ARRAY[{id}]"),
            ),
            (
                "groups by position",
                GROUPS_BY_SEQ.to_string(),
                format!("ARRAY[{seq}]::int8[]"),
            ),
            (
                "sequencer",
                NUMBER_COMMITTED.to_string(),
                "0, 10000".to_string(),
            ),
            ("replace", UPDATE_RESOURCE.to_string(), replace_args.clone()),
            (
                "replace with groups",
                UPDATE_RESOURCE_WITH_GROUPS.to_string(),
                replace_args,
            ),
            (
                "replace changed rows",
                UPDATE_CHANGED.to_string(),
                changed_args.clone(),
            ),
            (
                "replace changed rows with groups",
                UPDATE_CHANGED_WITH_GROUPS.to_string(),
                changed_args,
            ),
            (
                "changes written together",
                UPDATE_CHANGES.to_string(),
                together_args,
            ),
        ];
        let mut plans = Vec::new();
        with_client!(self, |client| {
            client.batch_execute("ANALYZE").await?;
            for (name, sql, args) in &statements {
                // Each with the settings it runs with.
                let settings = match *name {
                    "sequencer" => SEQUENCER_SETTINGS,
                    _ => "",
                };
                client
                    .batch_execute(&format!("BEGIN; {settings}; PREPARE explained AS {sql}"))
                    .await?;
                let mut text = String::new();
                for message in client
                    .simple_query(&format!("EXPLAIN EXECUTE explained({args})"))
                    .await?
                {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                        text.push_str(row.get(0).unwrap_or_default());
                        text.push('\n');
                    }
                }
                client
                    .batch_execute("DEALLOCATE explained; ROLLBACK")
                    .await?;
                plans.push((*name, text));
            }
        })?;
        Ok(plans)
    }

    /// For tests: the first column of each index on a plain column, by
    /// index name: an index scan whose condition does not name it reads the
    /// whole index.
    pub async fn index_leading_columns(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut columns = std::collections::HashMap::new();
        with_client!(self, |client| {
            let rows = client
                .query(
                    "SELECT c.relname::text, a.attname::text FROM pg_index i
                       JOIN pg_class c ON c.oid = i.indexrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                      WHERE n.nspname = current_schema()",
                    &[],
                )
                .await?;
            for row in rows {
                columns.insert(row.get(0), row.get(1));
            }
        })?;
        Ok(columns)
    }

    /// For tests: the server process of the connection the pool hands out
    /// next (a connection whose plans are outdated is replaced first).
    pub async fn backend_pid(&self) -> Result<i32, StoreError> {
        with_client!(self, |client| {
            client
                .query_one("SELECT pg_backend_pid()", &[])
                .await?
                .get(0)
        })
    }
}
