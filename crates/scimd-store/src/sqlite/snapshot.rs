//! `scimd export`'s view of the store: a connection of its own holding one
//! read transaction, so that every page comes from the moment the snapshot
//! was taken (WAL readers see the database as of their first read).
//! While it is open, checkpoints cannot copy past that moment: the WAL grows
//! with what is written during the export and is copied back after.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::Connection;
use scimd_core::query::Query;
use scimd_core::store::{Record, Snapshot, StoreError, StoredResource};

use super::reads::page_in;
use super::records::records_in;
use super::writer::run_cached;
use super::{SqliteStore, backend, open};
use crate::translate::{Dialect, page_queries};

pub(super) struct SqliteSnapshot {
    /// Shared with the blocking thread of the read in progress.
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    pub(super) async fn take_snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        let path = self.path.clone();
        let conn = tokio::task::spawn_blocking(move || {
            let conn = open(&path)?;
            run_cached(&conn, "BEGIN").map_err(backend)?;
            // A deferred transaction reads from the moment of its first read.
            conn.query_row("SELECT count(*) FROM resources", [], |_| Ok(()))
                .map_err(backend)?;
            Ok::<_, StoreError>(conn)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        Ok(Box::new(SqliteSnapshot {
            conn: Arc::new(Mutex::new(conn)),
        }))
    }
}

impl SqliteSnapshot {
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| StoreError::Backend("snapshot lock poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

#[async_trait]
impl Snapshot for SqliteSnapshot {
    async fn type_counts(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT rtype, count(*) FROM resources GROUP BY rtype ORDER BY rtype")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(backend)?;
            rows.map(|row| {
                let (rtype, n) = row.map_err(backend)?;
                Ok((rtype, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
        })
        .await
    }

    async fn page(&mut self, query: &Query) -> Result<Vec<StoredResource>, StoreError> {
        let query = query.clone();
        self.read(move |conn| {
            let (_, page) = page_queries(Dialect::Sqlite, &query);
            page_in(conn, &query, &page)
        })
        .await
    }

    async fn records(&mut self, kind: &str) -> Result<Vec<Record>, StoreError> {
        let kind = kind.to_string();
        self.read(move |conn| records_in(conn, &kind)).await
    }
}
