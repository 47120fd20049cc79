//! `scimd import`: resources inserted as exported (versions and
//! timestamps kept), then each group's members once every resource exists.

use rusqlite::{OptionalExtension, params};
use scimd_core::store::{Member, RestoredResource, StoreError};

use super::change_log::log_change;
use super::side_tables::{add_members, write_side_tables};
use super::{SqliteStore, backend};
use crate::rules::document_text;

impl SqliteStore {
    pub(super) async fn restore_resources(
        &self,
        mut batch: Vec<RestoredResource>,
    ) -> Result<(), StoreError> {
        let log = self.log;
        for r in &mut batch {
            r.write.members = None;
        }
        self.write(move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO resources (id, rtype, version, created, modified, data) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .map_err(backend)?;
            for r in &batch {
                let w = &r.write;
                let data = document_text(w)?;
                insert
                    .execute(params![w.id, w.resource_type, r.version, r.created, w.now, data])
                    .map_err(backend)?;
                write_side_tables(conn, conn.last_insert_rowid(), w)?;
                log_change(log, conn, &w.change, &w.change.body(), None, Some(r.version))?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn restore_group_members(
        &self,
        rtype: &str,
        id: &str,
        members: Vec<Member>,
        member_types: Vec<String>,
    ) -> Result<(), StoreError> {
        let (rtype, id) = (rtype.to_string(), id.to_string());
        self.write(move |conn| {
            let seq: Option<i64> = conn
                .query_row(
                    "SELECT seq FROM resources WHERE id = ? AND rtype = ?",
                    [&id, &rtype],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let Some(seq) = seq else {
                return Err(StoreError::NotFound);
            };
            conn.execute("DELETE FROM members WHERE group_seq = ?", [seq])
                .map_err(backend)?;
            add_members(conn, seq, &members, &member_types)?;
            conn.execute(
                "UPDATE members SET display = NULL WHERE group_seq = ? AND display = (
                   SELECT COALESCE(json_extract(r.data, '$.displayName'), json_extract(r.data, '$.userName'))
                     FROM resources r WHERE r.seq = members.member_seq)",
                [seq],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
