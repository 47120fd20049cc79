//! Operational records (OAuth clients, signing keys, settings): JSON
//! documents by kind and id, in the `records` table.

use rusqlite::{Connection, OptionalExtension, params};
use scimd_core::changelog::Change;
use scimd_core::store::{Record, StoreError};

use super::change_log::log_change;
use super::{SqliteStore, backend};

impl SqliteStore {
    pub(super) async fn get_record(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<Record>, StoreError> {
        let (kind, id) = (kind.to_string(), id.to_string());
        self.read(move |conn| {
            let data: Option<String> = conn
                .prepare_cached("SELECT data FROM records WHERE kind = ? AND id = ?")
                .and_then(|mut s| s.query_row([&kind, &id], |r| r.get(0)).optional())
                .map_err(backend)?;
            data.map(|d| {
                Ok(Record {
                    id,
                    data: parse_record(&d)?,
                })
            })
            .transpose()
        })
        .await
    }

    pub(super) async fn list_records(&self, kind: &str) -> Result<Vec<Record>, StoreError> {
        let kind = kind.to_string();
        self.read(move |conn| records_in(conn, &kind)).await
    }

    pub(super) async fn insert_record(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<bool, StoreError> {
        let log = self.log;
        let body = change.body();
        let kind = kind.to_string();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO records (kind, id, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![kind, record.id, record.data.to_string()]))
                .map_err(backend)?;
            if n == 1 {
                log_change(log, conn, &change, &body, None, None)?;
            }
            Ok(n == 1)
        })
        .await
    }

    pub(super) async fn put_record(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<(), StoreError> {
        let log = self.log;
        let body = change.body();
        let kind = kind.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO records (kind, id, data) VALUES (?, ?, ?)
                 ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data",
            )
            .and_then(|mut s| s.execute(params![kind, record.id, record.data.to_string()]))
            .map_err(backend)?;
            log_change(log, conn, &change, &body, None, None)
        })
        .await
    }

    pub(super) async fn delete_record(
        &self,
        kind: &str,
        id: &str,
        change: Change,
    ) -> Result<bool, StoreError> {
        let log = self.log;
        let body = change.body();
        let (kind, id) = (kind.to_string(), id.to_string());
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM records WHERE kind = ? AND id = ?")
                .and_then(|mut s| s.execute([&kind, &id]))
                .map_err(backend)?;
            if n == 1 {
                log_change(log, conn, &change, &body, None, None)?;
            }
            Ok(n == 1)
        })
        .await
    }
}

fn parse_record(data: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(data).map_err(|e| StoreError::Backend(format!("corrupt record: {e}")))
}

/// Every record of `kind`, ordered by id.
pub(super) fn records_in(conn: &Connection, kind: &str) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, data FROM records WHERE kind = ? ORDER BY id")
        .map_err(backend)?;
    let rows = stmt
        .query_map([kind], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, data) = row.map_err(backend)?;
        out.push(Record {
            id,
            data: parse_record(&data)?,
        });
    }
    Ok(out)
}
