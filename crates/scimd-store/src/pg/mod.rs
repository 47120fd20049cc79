//! PostgreSQL store: the SQLite table design and the same SQL translation
//! ([`crate::translate`], PostgreSQL dialect), over a connection pool.
//!
//! Written for PostgreSQL and for engines that speak its protocol and most
//! of its SQL (CockroachDB, YugabyteDB): no advisory locks, no
//! LISTEN/NOTIFY, no stored procedures. Correctness under concurrency rests
//! on row locks and constraints only: uniqueness is a primary key
//! (`unique_values`), conditional writes are `UPDATE … WHERE version = $n`,
//! and a membership change starts by bumping the group's version, which
//! locks the group row and so serialises changes to one group across every
//! scimd that shares the database. Transactions that the engine aborts as a
//! serialization failure or a deadlock (SQLSTATE 40001, 40P01; routine on
//! serializable engines) are re-run from the start, a bounded number of times.
//!
//! - [`connect`]: the pool, TLS, the planner settings of every connection,
//!   connections' lifetime ([`connect::PLAN_LIFETIME`]);
//! - [`statistics`]: tables analysed as they grow, and connections whose
//!   plans predate the statistics replaced;
//! - [`retry`]: [`retry::Fail`], which failures are re-run, and the
//!   `in_transaction!` / `with_client!` macros every statement runs in;
//! - [`writes`]: creates, replaces, PATCHes, deletes, each one statement with
//!   the resource's side tables;
//! - [`gather`]: writes gathered under load into one statement: at most an
//!   eighth of the pool writes at once, the rest queue;
//! - [`creates`]: creates without members or owner, gathered;
//! - [`changes`]: PATCHes and PUTs without members of resources whose side
//!   rows are known, gathered (compare-and-swap per resource);
//! - [`recent`]: what this process last wrote of each resource, so that its
//!   next PATCH or PUT skips the read (a compare-and-swap write decides);
//! - [`members`]: membership changes, queued and applied per group;
//! - [`reads`]: point reads, list pages in one snapshot (`ReadSnapshot`),
//!   members, computed groups ([`crate::nesting`] has the recursive statement);
//! - [`restore`]: `scimd import`'s pipelined inserts;
//! - [`snapshot`]: `scimd export`'s reads, in one REPEATABLE READ transaction;
//! - [`records`]: operational records;
//! - [`change_log`]: the change log's append CTE, its reads and pruning, and
//!   the sequencer that numbers committed entries in commit order;
//! - [`migrations`]: the schema, versioned in `scimd_migrations`.
//!
//! The store traits are implemented here, each method handing over to the
//! module that does the work.

mod change_log;
mod changes;
mod connect;
mod creates;
#[cfg(feature = "testing")]
mod explain;
mod gather;
mod members;
mod migrations;
mod reads;
mod recent;
mod records;
mod restore;
mod retry;
mod snapshot;
mod statistics;
mod streams;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use scimd_core::changelog::{AuditQuery, Change, Entry, Retention};
use scimd_core::query::{Cond, Query};
use scimd_core::store::{
    ChangeLogStore, ExportStore, GroupMembership, Member, MemberChange, MembershipStore,
    Modification, Modified, ModifyError, Page, Record, RecordStore, ResourceStore, ResourceWrite,
    RestoreStore, RestoredResource, Snapshot, Store, StoreError, StoredResource, StoredRow,
    StreamProgress, StreamStore,
};
use tokio_postgres::types::ToSql;

use crate::translate::Param;
use members::{GroupKey, PendingChange};
use retry::with_client;

/// Resources whose last write a store remembers unless told otherwise
/// ([`PgStore::with_recent_writes`]).
pub const DEFAULT_RECENT_WRITES: usize = 8_192;

/// A store on PostgreSQL (or a compatible engine) that several scimd
/// processes may share.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Connections opened before hold outdated plans ([`statistics`]).
    plans_valid_since: statistics::PlansValidSince,
    /// Dropped with the store: ends the statistics task.
    _alive: Arc<()>,
    /// Membership changes waiting, per group (see [`PgStore::change_members`]).
    member_queues: Arc<Mutex<HashMap<GroupKey, Vec<PendingChange>>>>,
    /// Whether writes append to the change log.
    log: change_log::LogSwitch,
    /// What this process last wrote of each resource, for its next change.
    recent: Arc<recent::Recent>,
    /// Creates waiting to be written together ([`creates`]).
    creates: Arc<gather::Gather<creates::Create>>,
    /// Changes of known resources waiting to be written together
    /// ([`changes`]).
    changes: Arc<gather::Gather<changes::KnownChange>>,
}

impl PgStore {
    /// With `on = false`, writes no longer append to the change log (the
    /// audit trail and event streams then see nothing new).
    pub fn with_change_log(mut self, on: bool) -> PgStore {
        self.log = change_log::LogSwitch(on);
        self
    }

    /// Remembers what this process last wrote of at most `capacity`
    /// resources, so that their next PATCH or PUT skips its read
    /// ([`recent`]; 0: never).
    pub fn with_recent_writes(mut self, capacity: usize) -> PgStore {
        self.recent = Arc::new(recent::Recent::new(capacity));
        self
    }
}

fn bind(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Text(t) => t as &(dyn ToSql + Sync),
            Param::Real(r) => r as &(dyn ToSql + Sync),
            Param::Int(i) => i as &(dyn ToSql + Sync),
        })
        .collect()
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        with_client!(self, |client| {
            client.simple_query("SELECT 1").await?;
        })
    }
}

#[async_trait]
impl ResourceStore for PgStore {
    async fn create(&self, w: ResourceWrite) -> Result<StoredResource, StoreError> {
        self.create_resource(w).await
    }

    async fn get(
        &self,
        rtype: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<StoredResource>, StoreError> {
        self.get_resource(rtype, id, with_members).await
    }

    async fn get_with_groups(
        &self,
        rtype: &str,
        id: &str,
    ) -> Result<Option<(StoredRow, Vec<GroupMembership>)>, StoreError> {
        self.get_resource_with_groups(rtype, id).await
    }

    /// None: other replicas commit on the server, and only a round trip
    /// would tell.
    fn commit_stamp(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    async fn replace(
        &self,
        w: ResourceWrite,
        expected: Option<i64>,
        with_groups: bool,
    ) -> Result<Modified, StoreError> {
        self.replace_resource(w, expected, with_groups).await
    }

    async fn modify(
        &self,
        rtype: &str,
        id: &str,
        with_groups: bool,
        change: Modification,
    ) -> Result<Option<Modified>, ModifyError> {
        self.modify_resource(rtype, id, with_groups, change).await
    }

    async fn delete(
        &self,
        rtype: &str,
        id: &str,
        expected: Option<i64>,
        dependents: Vec<(String, Cond)>,
        change: Change,
    ) -> Result<(), StoreError> {
        self.delete_resource(rtype, id, expected, dependents, change)
            .await
    }

    /// The page of [`ResourceStore::query_with_groups`] (one snapshot for the
    /// page, its total and its members).
    async fn query(&self, q: Query) -> Result<Page, StoreError> {
        Ok(self.query_with_groups(q, &[]).await?.0)
    }

    async fn query_with_groups(
        &self,
        q: Query,
        groups_for: &[String],
    ) -> Result<(Page, Vec<Option<Vec<GroupMembership>>>), StoreError> {
        self.query_resources_with_groups(q, groups_for).await
    }
}

#[async_trait]
impl MembershipStore for PgStore {
    async fn change_members(
        &self,
        rtype: &str,
        id: &str,
        changes: Vec<MemberChange>,
        member_types: Vec<String>,
        expected: Option<i64>,
        change: Change,
    ) -> Result<i64, StoreError> {
        self.change_group_members(rtype, id, changes, member_types, expected, change)
            .await
    }

    async fn groups_of(
        &self,
        member_ids: &[String],
    ) -> Result<Vec<Vec<GroupMembership>>, StoreError> {
        self.groups_of_members(member_ids).await
    }
}

#[async_trait]
impl ExportStore for PgStore {
    async fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        self.take_snapshot().await
    }
}

#[async_trait]
impl RestoreStore for PgStore {
    async fn restore(&self, batch: Vec<RestoredResource>) -> Result<(), StoreError> {
        self.restore_resources(batch).await
    }

    async fn restore_members(
        &self,
        rtype: &str,
        id: &str,
        members: Vec<Member>,
        member_types: Vec<String>,
    ) -> Result<(), StoreError> {
        self.restore_group_members(rtype, id, members, member_types)
            .await
    }
}

#[async_trait]
impl RecordStore for PgStore {
    async fn record_get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.get_record(kind, id).await
    }

    async fn record_list(&self, kind: &str) -> Result<Vec<Record>, StoreError> {
        self.list_records(kind).await
    }

    async fn record_insert(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<bool, StoreError> {
        self.insert_record(kind, record, change).await
    }

    async fn record_put(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<(), StoreError> {
        self.put_record(kind, record, change).await
    }

    async fn record_delete(
        &self,
        kind: &str,
        id: &str,
        change: Change,
    ) -> Result<bool, StoreError> {
        self.delete_record(kind, id, change).await
    }
}

#[async_trait]
impl ChangeLogStore for PgStore {
    async fn changes(&self, query: AuditQuery) -> Result<Vec<Entry>, StoreError> {
        self.read_changes(query, true).await
    }

    async fn follow(&self, after: i64, limit: u32) -> Result<Vec<Entry>, StoreError> {
        self.read_changes(AuditQuery::following(after, limit), false)
            .await
    }

    async fn prune_changes(&self, retention: Retention, floor: i64) -> Result<u64, StoreError> {
        self.prune_change_log(retention, floor).await
    }

    async fn change_head(&self) -> Result<i64, StoreError> {
        self.read_change_head().await
    }
}

#[async_trait]
impl StreamStore for PgStore {
    async fn stream_progress(&self, stream: &str) -> Result<Option<StreamProgress>, StoreError> {
        self.read_stream_progress(stream).await
    }

    async fn stream_start(&self, stream: &str, through: i64) -> Result<(), StoreError> {
        self.start_stream(stream, through).await
    }

    async fn stream_save(
        &self,
        stream: &str,
        progress: &StreamProgress,
    ) -> Result<bool, StoreError> {
        self.save_stream(stream, progress).await
    }

    async fn stream_forget(&self, stream: &str) -> Result<(), StoreError> {
        self.forget_stream(stream).await
    }

    async fn stream_lease(
        &self,
        stream: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.lease_stream(stream, owner, now_ms, until_ms).await
    }
}
