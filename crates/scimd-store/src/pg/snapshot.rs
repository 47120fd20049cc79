//! `scimd export`'s view of the store: one pooled connection holding a
//! read-only REPEATABLE READ transaction, whose snapshot every page comes
//! from. The connection is closed when the snapshot is dropped, never
//! handed back to the pool with its transaction open.

use async_trait::async_trait;
use scimd_core::query::Query;
use scimd_core::store::{Record, Snapshot, StoreError, StoredResource};

use super::reads::{MEMBERS_OF, attach_members, to_stored};
use super::records::records_in;
use super::retry::Fail;
use super::{PgStore, bind};
use crate::translate::{Dialect, page_queries};

pub(super) struct PgSnapshot {
    client: Option<deadpool_postgres::Object>,
}

impl PgStore {
    pub(super) async fn take_snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        let client = self.client().await.map_err(Fail::into_store)?;
        let snapshot = PgSnapshot {
            client: Some(client),
        };
        // The snapshot is taken by the first statement after BEGIN.
        snapshot
            .client()?
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT 1")
            .await
            .map_err(|e| Fail::Db(e).into_store())?;
        Ok(Box::new(snapshot))
    }
}

impl PgSnapshot {
    fn client(&self) -> Result<&deadpool_postgres::Object, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Backend("the snapshot was closed".into()))
    }

    async fn try_page(&self, query: &Query) -> Result<Vec<StoredResource>, Fail> {
        let c = self.client()?;
        let (_, page) = page_queries(Dialect::Postgres, query);
        let rows = c.query(&page.text, &bind(&page.params)).await?;
        let mut items = rows.iter().map(to_stored).collect::<Result<Vec<_>, _>>()?;
        if query.with_members && !items.is_empty() {
            let groups: Vec<i64> = items.iter().map(|s| s.position).collect();
            let members = c.query(MEMBERS_OF, &[&groups]).await?;
            attach_members(&mut items, &members)?;
        }
        Ok(items)
    }

    async fn try_type_counts(&self) -> Result<Vec<(String, u64)>, Fail> {
        let rows = self
            .client()?
            .query(
                "SELECT rtype, count(*) FROM resources GROUP BY rtype ORDER BY rtype",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get(1)?;
                Ok((row.try_get(0)?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }
}

#[async_trait]
impl Snapshot for PgSnapshot {
    async fn type_counts(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        self.try_type_counts().await.map_err(Fail::into_store)
    }

    async fn page(&mut self, query: &Query) -> Result<Vec<StoredResource>, StoreError> {
        self.try_page(query).await.map_err(Fail::into_store)
    }

    async fn records(&mut self, kind: &str) -> Result<Vec<Record>, StoreError> {
        let client = self.client()?;
        records_in(&***client, kind).await.map_err(Fail::into_store)
    }
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
