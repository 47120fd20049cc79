//! Event streams' progress (`streams` table).

use scimd_core::store::{StoreError, StreamProgress};

use super::PgStore;
use super::retry::{in_transaction, with_client};

impl PgStore {
    pub(super) async fn read_stream_progress(
        &self,
        stream: &str,
    ) -> Result<Option<StreamProgress>, StoreError> {
        with_client!(self, |client| {
            match client
                .query_opt(
                    "SELECT through, acked, push, version FROM streams WHERE id = $1",
                    &[&stream],
                )
                .await?
            {
                None => None,
                Some(r) => Some(crate::streams::progress(
                    r.try_get(0)?,
                    &r.try_get::<_, String>(1)?,
                    &r.try_get::<_, String>(2)?,
                    r.try_get(3)?,
                )?),
            }
        })
    }

    pub(super) async fn start_stream(&self, stream: &str, through: i64) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            tx.execute(
                "INSERT INTO streams (id, through, acked, push, version) VALUES ($1, $2, '[]', '{}', 1)
                 ON CONFLICT DO NOTHING",
                &[&stream, &through],
            )
            .await?;
        })
    }

    pub(super) async fn save_stream(
        &self,
        stream: &str,
        progress: &StreamProgress,
    ) -> Result<bool, StoreError> {
        let (acked, push) = crate::streams::columns(progress);
        in_transaction!(self, |tx| {
            tx.execute(
                "UPDATE streams SET through = $1, acked = $2, push = $3, version = version + 1
                  WHERE id = $4 AND version = $5",
                &[&progress.through, &acked, &push, &stream, &progress.version],
            )
            .await?
                == 1
        })
    }

    pub(super) async fn forget_stream(&self, stream: &str) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            tx.execute("DELETE FROM streams WHERE id = $1", &[&stream])
                .await?;
        })
    }

    pub(super) async fn lease_stream(
        &self,
        stream: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| {
            tx.execute(
                "UPDATE streams SET lease_owner = $1, lease_until = $2
                  WHERE id = $3 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $4)",
                &[&owner, &until_ms, &stream, &now_ms],
            )
            .await?
                == 1
        })
    }
}
