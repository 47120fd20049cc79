//! The schema: `pg_migrations_*.sql`, applied in order, each once, claimed
//! in table `scimd_migrations` by the transaction that applies it.

use scimd_core::store::StoreError;
use tokio_postgres::error::SqlState;

use super::PgStore;
use super::retry::{Fail, MAX_RETRIES, backoff, in_transaction, is_code, with_client};

/// Schema versions, applied in order, each once (table `scimd_migrations`).
const MIGRATIONS: &[&str] = &[
    include_str!("pg_migrations_001.sql"),
    include_str!("pg_migrations_002_meta_columns.sql"),
    include_str!("pg_migrations_003_side_tables_unchecked.sql"),
    include_str!("pg_migrations_004_change_log.sql"),
    include_str!("pg_migrations_005_streams.sql"),
    include_str!("pg_migrations_006_change_log_partial_indexes.sql"),
];

impl PgStore {
    /// Applies the missing migrations. Several servers may start at once:
    /// each migration is claimed by inserting its row into
    /// `scimd_migrations` in the transaction that applies it, so a second
    /// server waits on that row and then finds it applied.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        // Two sessions creating the table at once can collide in the
        // catalog; the loser tries again and finds the table.
        let mut attempt = 0;
        loop {
            let created = async {
                self.client()
                    .await?
                    .batch_execute(
                        "CREATE TABLE IF NOT EXISTS scimd_migrations (version BIGINT PRIMARY KEY, applied TEXT NOT NULL)",
                    )
                    .await
                    .map_err(Fail::Db)
            }
            .await;
            match created {
                Err(Fail::Db(e))
                    if attempt < MAX_RETRIES
                        && (is_code(&e, &SqlState::UNIQUE_VIOLATION)
                            || is_code(&e, &SqlState::DUPLICATE_TABLE)
                            || is_code(&e, &SqlState::DUPLICATE_OBJECT)) =>
                {
                    attempt += 1;
                    backoff(attempt).await;
                }
                other => break other.map_err(Fail::into_store)?,
            }
        }
        let latest = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
            in_transaction!(self, |tx| {
                let claimed = tx
                    .execute(
                        "INSERT INTO scimd_migrations (version, applied) VALUES ($1, now()::text) ON CONFLICT DO NOTHING",
                        &[&version],
                    )
                    .await?;
                if claimed == 1 {
                    tx.batch_execute(sql).await?;
                }
            })?;
        }
        let newest: Option<i64> = with_client!(self, |client| {
            client
                .query_one("SELECT max(version) FROM scimd_migrations", &[])
                .await?
                .try_get(0)?
        })?;
        if newest.is_some_and(|v| v > latest) {
            return Err(StoreError::Backend(format!(
                "the database schema is at version {} but this scimd knows only {latest}: run a newer scimd",
                newest.unwrap_or(0)
            )));
        }
        Ok(())
    }
}
