//! The schema: `migrations*.sql`, applied in order, each once; the
//! database's `PRAGMA user_version` is the number applied.

use rusqlite::Connection;
use scimd_core::store::StoreError;

use super::backend;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations.sql"),
    include_str!("migrations_002_records.sql"),
    include_str!("migrations_003_meta_columns.sql"),
    include_str!("migrations_004_values_by_resource.sql"),
    include_str!("migrations_005_change_log.sql"),
    include_str!("migrations_006_streams.sql"),
    include_str!("migrations_007_change_log_by_resource.sql"),
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    let mut applied = false;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if version <= current {
            continue;
        }
        applied = true;
        let tx = conn.transaction().map_err(backend)?;
        if version == 3 {
            drop_meta_index_rows(&tx)?;
        }
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    if applied {
        // A migration over a large store leaves a WAL as large as what it
        // changed (1 GB at a million users); checkpointed here, at start-up,
        // rather than by the first write while serving (seconds of stall).
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(backend)?;
    }
    Ok(())
}

/// Migration 3: the server-managed facts' index rows go (they are columns
/// now). In slices: one `DELETE` of millions of rows would first collect
/// every rowid in memory (~150 MB at a million users).
fn drop_meta_index_rows(tx: &Connection) -> Result<(), StoreError> {
    loop {
        let deleted = tx
            .execute(
                "DELETE FROM attr_values WHERE rowid IN (
                   SELECT rowid FROM attr_values
                    WHERE key IN ('id', 'meta', 'meta.resourcetype', 'meta.created',
                                  'meta.lastmodified', 'meta.version')
                    LIMIT 20000)",
                [],
            )
            .map_err(backend)?;
        if deleted == 0 {
            return Ok(());
        }
    }
}
