//! Event streams' progress (`streams` table): read on a reader, written
//! through the writer like everything else.

use rusqlite::{OptionalExtension, params};
use scimd_core::store::{StoreError, StreamProgress};

use super::{SqliteStore, backend};

impl SqliteStore {
    pub(super) async fn read_stream_progress(
        &self,
        stream: &str,
    ) -> Result<Option<StreamProgress>, StoreError> {
        let stream = stream.to_string();
        self.read(move |conn| {
            let row: Option<(i64, String, String, i64)> = conn
                .prepare_cached("SELECT through, acked, push, version FROM streams WHERE id = ?")
                .and_then(|mut s| {
                    s.query_row([&stream], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                })
                .map_err(backend)?;
            row.map(|(through, acked, push, version)| {
                crate::streams::progress(through, &acked, &push, version)
            })
            .transpose()
        })
        .await
    }

    pub(super) async fn start_stream(&self, stream: &str, through: i64) -> Result<(), StoreError> {
        let stream = stream.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO streams (id, through, acked, push, version) VALUES (?, ?, '[]', '{}', 1)
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![stream, through]))
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn save_stream(
        &self,
        stream: &str,
        progress: &StreamProgress,
    ) -> Result<bool, StoreError> {
        let stream = stream.to_string();
        let (acked, push) = crate::streams::columns(progress);
        let (through, version) = (progress.through, progress.version);
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE streams SET through = ?, acked = ?, push = ?, version = version + 1
                      WHERE id = ? AND version = ?",
                )
                .and_then(|mut s| s.execute(params![through, acked, push, stream, version]))
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    pub(super) async fn forget_stream(&self, stream: &str) -> Result<(), StoreError> {
        let stream = stream.to_string();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM streams WHERE id = ?")
                .and_then(|mut s| s.execute([&stream]))
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn lease_stream(
        &self,
        stream: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let (stream, owner) = (stream.to_string(), owner.to_string());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE streams SET lease_owner = ?, lease_until = ?
                      WHERE id = ? AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
                )
                .and_then(|mut s| s.execute(params![owner, until_ms, stream, owner, now_ms]))
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }
}
