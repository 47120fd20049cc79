//! `scimd import`: resources inserted as exported (versions and
//! timestamps kept), pipelined, then each group's members once every
//! resource exists.

use scimd_core::store::{Member, RestoredResource, StoreError};

use super::PgStore;
use super::members::add_members;
use super::retry::{Fail, in_transaction};
use super::writes::insert_resource;
use crate::rules::document_text;

impl PgStore {
    pub(super) async fn restore_resources(
        &self,
        mut batch: Vec<RestoredResource>,
    ) -> Result<(), StoreError> {
        let mut docs = Vec::with_capacity(batch.len());
        for r in &mut batch {
            r.write.members = None;
            docs.push(document_text(&r.write)?);
        }
        in_transaction!(self, |tx| {
            // Pipelined: every insert of the batch is sent before their
            // answers are awaited (one connection sends them in this order,
            // so insertion order is kept). One round trip per statement made
            // a million-user import take 40 minutes.
            let inserts = batch.iter().zip(&docs).map(|(r, data)| {
                insert_resource(&tx, &r.write, r.version, &r.created, data, self.log)
            });
            futures_util::future::try_join_all(inserts).await?;
        })
    }

    pub(super) async fn restore_group_members(
        &self,
        rtype: &str,
        id: &str,
        members: Vec<Member>,
        member_types: Vec<String>,
    ) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            let Some(row) = tx
                .query_opt(
                    "SELECT seq FROM resources WHERE id = $1 AND rtype = $2",
                    &[&id, &rtype],
                )
                .await?
            else {
                return Err(Fail::Store(StoreError::NotFound));
            };
            let seq: i64 = row.try_get(0)?;
            tx.execute("DELETE FROM members WHERE group_seq = $1", &[&seq])
                .await?;
            add_members(&tx, seq, &members, &member_types).await?;
            tx.execute(
                "UPDATE members m SET display = NULL FROM resources r
                  WHERE m.group_seq = $1 AND r.seq = m.member_seq
                    AND m.display = COALESCE(r.data::json ->> 'displayName', r.data::json ->> 'userName')",
                &[&seq],
            )
            .await?;
        })
    }
}
