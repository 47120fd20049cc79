//! The storage boundary. The core decides everything about SCIM semantics and
//! hands the store fully prepared writes (document, unique values, index
//! entries, memberships) and resolved queries; a store only persists and
//! queries them, atomically. Implementations live in `scimd-store`.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::changelog::{AuditQuery, Change, Entry, Op, Retention};
use crate::index::{index_entries, unique_values};
use crate::query::Query;
use crate::schema::ResourceTypeDef;

/// Failures a store reports. Converted into SCIM errors in one place
/// ([`From<StoreError> for ScimError`](crate::error::ScimError)).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value is already taken; names the attribute key.
    #[error("{attr} is already taken")]
    Uniqueness { attr: String },
    /// No resource with that type and id.
    #[error("resource not found")]
    NotFound,
    /// The resource exists but its version is not the expected one.
    #[error("version mismatch: the resource is at version {current}")]
    VersionMismatch { current: i64 },
    /// A member reference names no resource (or one of the wrong type).
    #[error("member '{0}' does not exist")]
    UnknownMember(String),
    /// The owner a write names ([`ResourceWrite::owner`]) does not exist
    /// (any more).
    #[error("owner '{0}' does not exist")]
    UnknownOwner(String),
    /// A write collided with a concurrent one and may be retried.
    #[error("write conflict, retry")]
    Conflict,
    /// The backend cannot be reached for now (connection refused or lost,
    /// server shutting down); a retry may succeed. The text is for logs.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store's disk is full: nothing was written; writes succeed again
    /// once space is freed. The text is for logs.
    #[error("storage full: {0}")]
    Full(String),
    /// The backend failed; the text is for logs, not clients.
    #[error("storage failure: {0}")]
    Backend(String),
}

/// One membership row: `member` belongs to the group that owns the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub value: String,
    /// `User` or `Group` as sent or as found in the store.
    pub typ: Option<String>,
    pub display: Option<String>,
}

/// A value kept in the index for filtering and sorting.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// Lower-case attribute key, see [`crate::schema::AttrRef::key`].
    pub key: String,
    /// Position of the element in a multi-valued attribute (0 otherwise);
    /// entries of one element share it so value filters can correlate them.
    pub elem: u32,
    /// The element has `primary: true`; sorting prefers it.
    pub primary: bool,
    pub text: Option<String>,
    pub number: Option<f64>,
}

/// A value that must be unique (per resource type, or server-wide when
/// `global`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueValue {
    pub key: String,
    pub value: String,
    pub global: bool,
}

/// Everything a create or replace persists, prepared by the core.
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    pub resource_type: String,
    pub id: String,
    pub data: Map<String, Value>,
    pub unique: Vec<UniqueValue>,
    pub index: Vec<IndexEntry>,
    /// `None` leaves memberships as they are; `Some` replaces them.
    pub members: Option<Vec<Member>>,
    /// Resource types a member may be, by name (`User`, `Group`).
    pub member_types: Vec<String>,
    /// RFC 3339 timestamp of the write.
    pub now: String,
    /// What the change log records of it, in the same transaction (the
    /// store adds the position and the versions).
    pub change: Change,
    /// The resource that owns this one (`x-scimd-owner`), as `(type, id)`:
    /// a create or replace writes only if it exists, checked in the write's
    /// transaction, so that a delete of the owner (which takes what it owns
    /// with it) and the write cannot both succeed and leave an orphan.
    pub owner: Option<(String, String)>,
}

/// The owner `data` names, when `rt` has one (`x-scimd-owner`): its type
/// and the attribute's value, if a string.
fn owner_of(rt: &ResourceTypeDef, data: &Map<String, Value>) -> Option<(String, String)> {
    let owner = rt.doc.owner.as_ref()?;
    data.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&owner.attribute))
        .and_then(|(_, v)| v.as_str())
        .map(|id| (owner.resource_type.clone(), id.to_string()))
}

impl ResourceWrite {
    /// A write of `data` as resource `id` of `rt` at time `now`, with the
    /// index entries and unique values derived from `data`; memberships left
    /// as they are (`members: None`, no member types); logged as `op` by the
    /// current actor, with no paths yet.
    pub fn derived(
        rt: &ResourceTypeDef,
        op: Op,
        id: &str,
        data: Map<String, Value>,
        now: &str,
    ) -> Self {
        ResourceWrite {
            resource_type: rt.name().to_string(),
            id: id.to_string(),
            owner: owner_of(rt, &data),
            index: index_entries(rt, &data),
            unique: unique_values(rt, &data),
            data,
            members: None,
            member_types: Vec::new(),
            change: Change::new(op, rt.name(), id, now),
            now: now.to_string(),
        }
    }

    /// The write, logged with the attribute paths it changes.
    pub fn with_paths(mut self, paths: Vec<String>) -> Self {
        self.change.paths = paths;
        self
    }
}

/// A membership change that does not rewrite the group document.
#[derive(Debug, Clone)]
pub enum MemberChange {
    Add(Vec<Member>),
    Remove(Vec<String>),
    RemoveAll,
}

/// A resource's row as its store holds it, its document still unparsed
/// text: what a point read returns, so that a rendering made from an equal
/// row can be served again without parsing (see `rendering`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub position: i64,
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub created: String,
    pub modified: String,
    /// The document as JSON text.
    pub text: String,
}

impl StoredRow {
    /// Parses the document; a stored document that is not a JSON object is
    /// a backend error (the store is damaged, the request is not at fault).
    pub fn parse(&self) -> Result<StoredResource, StoreError> {
        let data = match serde_json::from_str(&self.text) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(StoreError::Backend(format!(
                    "resource {} has a corrupt document",
                    self.id
                )));
            }
        };
        Ok(StoredResource {
            position: self.position,
            resource_type: self.resource_type.clone(),
            id: self.id.clone(),
            version: self.version,
            created: self.created.clone(),
            modified: self.modified.clone(),
            data,
            members: None,
        })
    }
}

/// A resource as stored.
#[derive(Debug, Clone)]
pub struct StoredResource {
    /// Insertion-order position; stable, used for default order and cursors.
    pub position: i64,
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub created: String,
    pub modified: String,
    pub data: Map<String, Value>,
    /// Loaded only when asked for.
    pub members: Option<Vec<Member>>,
}

impl StoredResource {
    /// What a store holds right after `write` was created at `position`.
    pub fn created(write: ResourceWrite, position: i64, members: Option<Vec<Member>>) -> Self {
        let created = write.now.clone();
        StoredResource::replaced(write, position, 1, created, members)
    }

    /// What a store holds right after `write` replaced the resource at
    /// `position`, now at `version` (its creation time unchanged).
    pub fn replaced(
        write: ResourceWrite,
        position: i64,
        version: i64,
        created: String,
        members: Option<Vec<Member>>,
    ) -> Self {
        StoredResource {
            position,
            resource_type: write.resource_type,
            id: write.id,
            version,
            created,
            modified: write.now,
            data: write.data,
            members,
        }
    }
}

/// A group a resource belongs to, directly or through nested groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembership {
    pub group_id: String,
    pub display: Option<String>,
    pub direct: bool,
}

/// A page of query results.
#[derive(Debug, Clone)]
pub struct Page {
    pub total: u64,
    pub items: Vec<StoredResource>,
}

/// An operational record kept beside the SCIM resources: an OAuth client, a
/// signing key, a setting such as the protection mode. Stored in the same
/// database so that every scimd on it sees the same ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub data: Value,
}

/// A resource as another store had it, for `scimd import`.
#[derive(Debug, Clone)]
pub struct RestoredResource {
    /// `now` is the last modification; `members` is ignored (memberships
    /// are restored after every resource, see [`RestoreStore::restore_members`]).
    pub write: ResourceWrite,
    pub version: i64,
    pub created: String,
}

/// One step of a read-modify-write ([`ResourceStore::modify`]): from the resource as
/// stored, its replacement; `Ok(None)` when the replacement cannot be
/// computed inside the store (it needs other I/O first): nothing is written.
/// May be called more than once; only the last call's write is kept.
pub type Modification = Box<
    dyn FnMut(&StoredResource) -> Result<Option<ResourceWrite>, crate::error::ScimError> + Send,
>;

/// What a [`ResourceStore::modify`] or [`ResourceStore::replace`] wrote: the resource, and its groups when asked.
pub type Modified = (StoredResource, Option<Vec<GroupMembership>>);

/// Why a [`ResourceStore::modify`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ModifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The modification refused the change (invalid operation, stale
    /// `If-Match`, ...); handed back as it was.
    #[error("{0}")]
    Refused(crate::error::ScimError),
}

/// Persistence of SCIM resources, by role: each caller takes the narrowest
/// trait that serves it (the SCIM service [`ResourceStore`] and
/// [`MembershipStore`], authentication [`RecordStore`], `scimd import`
/// [`RestoreStore`], `scimd export` [`ExportStore`]). No method has a default: every store answers each one
/// itself, in as few round trips as its engine allows (a page of users and
/// their groups is never one query per user). Every method is atomic; writes
/// are durable when they return `Ok`.
#[async_trait]
pub trait Store:
    ResourceStore
    + MembershipStore
    + RecordStore
    + RestoreStore
    + ExportStore
    + ChangeLogStore
    + StreamStore
    + 'static
{
    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// SCIM resources: writes, point reads and queries.
#[async_trait]
pub trait ResourceStore: Send + Sync {
    /// Inserts a new resource at version 1.
    async fn create(&self, write: ResourceWrite) -> Result<StoredResource, StoreError>;

    /// Reads one resource; `with_members` also loads its memberships.
    async fn get(
        &self,
        resource_type: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<StoredResource>, StoreError>;

    /// One resource's row, unparsed, and the groups it belongs to, read
    /// together from one snapshot (the common `GET /Users/{id}`).
    async fn get_with_groups(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(StoredRow, Vec<GroupMembership>)>, StoreError>;

    /// A stamp of what is committed, where the store can tell without a
    /// read: two equal stamps mean that nothing was committed in between,
    /// by this process or any other on the same database. `None` where it
    /// cannot (then every answer comes from a read).
    fn commit_stamp(&self) -> Result<Option<u64>, StoreError>;

    /// Replaces a resource's document (compare-and-swap on `expected_version`
    /// when given) and bumps its version; `with_groups` also returns the
    /// groups the resource belongs to afterwards (for an answer that shows
    /// computed `groups`), read with the write: those it has once the write
    /// is committed.
    async fn replace(
        &self,
        write: ResourceWrite,
        expected_version: Option<i64>,
        with_groups: bool,
    ) -> Result<Modified, StoreError>;

    /// Replaces a resource with what `change` makes of it, atomically: no
    /// other write comes between the read and the write, so concurrent
    /// modifications of one resource queue rather than fail. `change` may
    /// run more than once: a store may first try without holding the
    /// resource and, when another write came in between, redo it holding
    /// it. `Ok(None)`: `change` declined and nothing was written.
    /// `with_groups` also returns the groups the resource belongs to
    /// afterwards.
    async fn modify(
        &self,
        resource_type: &str,
        id: &str,
        with_groups: bool,
        change: Modification,
    ) -> Result<Option<Modified>, ModifyError>;

    /// Deletes a resource, every membership that names it and, in the same
    /// transaction, every resource of type `t` that matches `c`, for each
    /// `(t, c)` of `dependents` (the resources it owns, such as a user's FIDO
    /// devices). Logs `change`, and a delete of each dependent
    /// ([`Change::owned_by`]).
    async fn delete(
        &self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
        dependents: Vec<(String, crate::query::Cond)>,
        change: Change,
    ) -> Result<(), StoreError>;

    /// Runs a resolved query: filter, sort and page in the database.
    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    /// A query, and the computed groups of those items whose type is in
    /// `groups_for` (`None` for the others), aligned with the items, read
    /// from one snapshot in a bounded number of round trips.
    async fn query_with_groups(
        &self,
        query: Query,
        groups_for: &[String],
    ) -> Result<(Page, Vec<Option<Vec<GroupMembership>>>), StoreError>;
}

/// Group memberships: changes that do not rewrite the group document, and
/// the computed `groups` of members.
#[async_trait]
pub trait MembershipStore: Send + Sync {
    /// Changes memberships of a group without reading or rewriting the others
    /// and bumps its version; returns the new version. Logs `change`.
    async fn change_members(
        &self,
        resource_type: &str,
        id: &str,
        changes: Vec<MemberChange>,
        member_types: Vec<String>,
        expected_version: Option<i64>,
        change: Change,
    ) -> Result<i64, StoreError>;

    /// The groups each of `member_ids` belongs to, direct and inherited, in
    /// order, in one round trip whatever their number.
    async fn groups_of(
        &self,
        member_ids: &[String],
    ) -> Result<Vec<Vec<GroupMembership>>, StoreError>;
}

/// Operational records (OAuth clients, signing keys, settings).
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// One operational record of `kind` (`client`, `signing_key`, `setting`).
    async fn record_get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError>;

    /// Every record of `kind`, ordered by id.
    async fn record_list(&self, kind: &str) -> Result<Vec<Record>, StoreError>;

    /// Inserts a record; `false` (and no change, nothing logged) when one
    /// with that id exists, so that several servers starting at once create
    /// only one. Logs `change` otherwise.
    async fn record_insert(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<bool, StoreError>;

    /// Inserts or overwrites a record; logs `change`.
    async fn record_put(
        &self,
        kind: &str,
        record: Record,
        change: Change,
    ) -> Result<(), StoreError>;

    /// Deletes a record; `false` when there was none (nothing logged).
    /// Logs `change` otherwise.
    async fn record_delete(&self, kind: &str, id: &str, change: Change)
    -> Result<bool, StoreError>;
}

/// The change log (see [`crate::changelog`]): read by the audit trail and
/// the event streams, pruned by retention. Every write method of the other
/// traits appends to it in its own transaction.
#[async_trait]
pub trait ChangeLogStore: Send + Sync {
    /// The entries `query` asks for, by position, oldest first. Only
    /// positioned entries: on PostgreSQL a committed entry gets its
    /// position a moment after its commit, so that positions are commit
    /// order and a reader after position N never skips one.
    async fn changes(&self, query: AuditQuery) -> Result<Vec<Entry>, StoreError>;

    /// The entries after position `after`, at most `limit`, oldest first,
    /// as far as they are positioned now: a follower's read (an event
    /// stream's), which does not ask for the entries committed a moment
    /// ago to be positioned first, as [`changes`](Self::changes) does on
    /// PostgreSQL (its sequencer positions them within 50 ms anyway).
    async fn follow(&self, after: i64, limit: u32) -> Result<Vec<Entry>, StoreError>;

    /// Removes what `retention` no longer keeps, oldest first, in slices
    /// that do not hold up writes, but nothing after position `floor`, nor
    /// after the progress of any started event stream (what it has not
    /// delivered yet), read again by each slice: a stream started while
    /// pruning runs holds the log back too. Returns how many went.
    async fn prune_changes(&self, retention: Retention, floor: i64) -> Result<u64, StoreError>;

    /// The position of the newest positioned entry (0 when there is none).
    async fn change_head(&self) -> Result<i64, StoreError>;
}

/// How far an event stream has come through the change log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamProgress {
    /// Every entry the stream carries up to this position is delivered
    /// (accepted by the push receiver, or acknowledged by a poller).
    pub through: i64,
    /// Positions after `through` acknowledged out of order (a poller acks
    /// by jti, in any order).
    pub acked: Vec<i64>,
    /// The push delivery's state (attempts, last error, dead-letter), as
    /// the event publisher writes it.
    pub push: Value,
    /// Bumped by every save: saves are compare-and-swap on it.
    pub version: i64,
}

/// Event streams' progress (their settings are records, kind `stream`):
/// written often, so not in the change log, and saved by compare-and-swap
/// so that replicas serving one stream never move it backwards.
#[async_trait]
pub trait StreamStore: Send + Sync {
    /// The progress of `stream`, if it was started.
    async fn stream_progress(&self, stream: &str) -> Result<Option<StreamProgress>, StoreError>;

    /// Starts `stream` at `through` (what came before is not its to
    /// deliver); nothing changes when it was started already.
    async fn stream_start(&self, stream: &str, through: i64) -> Result<(), StoreError>;

    /// Saves `progress` if the stored version is still `progress.version`
    /// (then one more); `false` and no change otherwise.
    async fn stream_save(
        &self,
        stream: &str,
        progress: &StreamProgress,
    ) -> Result<bool, StoreError>;

    /// Forgets `stream`'s progress (the stream was deleted).
    async fn stream_forget(&self, stream: &str) -> Result<(), StoreError>;

    /// Takes or keeps the push delivery of `stream` for `owner` until
    /// `until_ms` (Unix milliseconds) when no other owner holds it past
    /// `now_ms`: one replica pushes each stream at a time.
    async fn stream_lease(
        &self,
        stream: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError>;
}

/// Reads of `scimd export`: the store at one moment.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// The store as it is now, kept until the snapshot is dropped: its
    /// reads agree with each other whatever commits meanwhile (a group's
    /// members are among its resources, so that the export imports).
    async fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError>;
}

/// A read-only view of a store at one moment (an open read transaction).
#[async_trait]
pub trait Snapshot: Send {
    /// How many resources of each type the store holds, by type name.
    async fn type_counts(&mut self) -> Result<Vec<(String, u64)>, StoreError>;

    /// The resources a query matches, without their total (a cursor walk
    /// never needs it).
    async fn page(&mut self, query: &Query) -> Result<Vec<StoredResource>, StoreError>;

    /// Every record of `kind`, ordered by id.
    async fn records(&mut self, kind: &str) -> Result<Vec<Record>, StoreError>;
}

/// Writes of `scimd import`, which keep what another store had.
#[async_trait]
pub trait RestoreStore: Send + Sync {
    /// Inserts resources exactly as exported from a store (version and
    /// timestamps kept), in order, all or none.
    async fn restore(&self, batch: Vec<RestoredResource>) -> Result<(), StoreError>;

    /// Sets a restored group's memberships, without changing its version. A
    /// member's `display` equal to the one the store would show anyway is
    /// not stored, so that it keeps following the member's name.
    async fn restore_members(
        &self,
        resource_type: &str,
        id: &str,
        members: Vec<Member>,
        member_types: Vec<String>,
    ) -> Result<(), StoreError>;
}
