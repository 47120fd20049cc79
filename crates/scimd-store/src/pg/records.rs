//! Operational records (OAuth clients, signing keys, settings): JSON
//! documents by kind and id, in the `records` table.

use scimd_core::changelog::Change;
use scimd_core::store::{Record, StoreError};

use super::PgStore;
use super::change_log::log_record_change;
use super::retry::{Fail, in_transaction, with_client};

impl PgStore {
    pub(super) async fn get_record(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<Record>, StoreError> {
        with_client!(self, |client| {
            let row = client
                .query_opt(
                    "SELECT data FROM records WHERE kind = $1 AND id = $2",
                    &[&kind, &id],
                )
                .await?;
            match row {
                None => None,
                Some(row) => Some(Record {
                    id: id.to_string(),
                    data: parse_record(&row.try_get::<_, String>(0)?)?,
                }),
            }
        })
    }

    pub(super) async fn list_records(&self, kind: &str) -> Result<Vec<Record>, StoreError> {
        with_client!(self, |client| { records_in(&**client, kind).await? })
    }

    pub(super) async fn insert_record(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<bool, StoreError> {
        let data = record.data.to_string();
        in_transaction!(self, |tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO records (kind, id, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&kind, &record.id, &data],
                )
                .await?
                == 1;
            if inserted {
                log_record_change(&tx, &change, self.log).await?;
            }
            inserted
        })
    }

    pub(super) async fn put_record(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<(), StoreError> {
        let data = record.data.to_string();
        in_transaction!(self, |tx| {
            tx.execute(
                "INSERT INTO records (kind, id, data) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data",
                &[&kind, &record.id, &data],
            )
            .await?;
            log_record_change(&tx, &change, self.log).await?;
        })
    }

    pub(super) async fn delete_record(
        &self,
        kind: &str,
        id: &str,
        change: Change,
    ) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM records WHERE kind = $1 AND id = $2",
                    &[&kind, &id],
                )
                .await?
                == 1;
            if deleted {
                log_record_change(&tx, &change, self.log).await?;
            }
            deleted
        })
    }
}

/// Every record of `kind`, ordered by id (bytewise, as SQLite does).
pub(super) async fn records_in(
    client: &impl tokio_postgres::GenericClient,
    kind: &str,
) -> Result<Vec<Record>, Fail> {
    let rows = client
        .query(
            "SELECT id, data FROM records WHERE kind = $1 ORDER BY id COLLATE \"C\"",
            &[&kind],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(Record {
            id: row.try_get(0)?,
            data: parse_record(&row.try_get::<_, String>(1)?)?,
        });
    }
    Ok(out)
}

fn parse_record(data: &str) -> Result<serde_json::Value, Fail> {
    serde_json::from_str(data)
        .map_err(|e| Fail::Store(StoreError::Backend(format!("corrupt record: {e}"))))
}
