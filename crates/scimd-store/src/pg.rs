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

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use scimd_core::query::{Cond, Paging, Query};
use scimd_core::store::{
    GroupMembership, Member, MemberChange, MembershipStore, Modification, Modified, ModifyError,
    Page, Record, RecordStore, ResourceStore, ResourceWrite, RestoreStore, RestoredResource, Store,
    StoreError, StoredResource, StoredRow,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, NoTls, Row};

use crate::rules::{member_type_ok, missed, unique_scope};
use crate::translate::{Dialect, Param, Sql, delete_matching, page_queries, total_from_page};

/// Schema versions, applied in order, each once (table `scimd_migrations`).
const MIGRATIONS: &[&str] = &[
    include_str!("pg_migrations_001.sql"),
    include_str!("pg_migrations_002_meta_columns.sql"),
    include_str!("pg_migrations_003_side_tables_unchecked.sql"),
];
/// How often a transaction aborted by a serialization failure or a deadlock
/// is re-run before the caller gets [`StoreError::Conflict`].
const MAX_RETRIES: u32 = 12;

/// A store on PostgreSQL (or a compatible engine) that several scimd
/// processes may share.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Membership changes waiting, per group (see [`PgStore::change_members`]).
    member_queues: Arc<Mutex<HashMap<GroupKey, Vec<PendingChange>>>>,
}

/// A group by resource type and id.
type GroupKey = (String, String);

/// How long a connection serves before it is replaced. Each connection
/// plans a statement once (generic plans, see [`planner_options`]) from the
/// statistics of that moment; a plan made while tables were small can read
/// a whole index once they are large, so plans are made again this often.
const PLAN_LIFETIME: Duration = Duration::from_secs(300);

/// Most membership changes applied in one transaction.
const MAX_MEMBER_BATCH: usize = 256;

/// One caller's membership change, waiting for the group's applier.
struct PendingChange {
    changes: Vec<MemberChange>,
    member_types: Vec<String>,
    expected: Option<i64>,
    now: String,
    reply: tokio::sync::oneshot::Sender<Result<i64, StoreError>>,
}

/// A failure inside a transaction: a decided outcome, or a database error
/// that may be worth a retry.
#[derive(Debug)]
enum Fail {
    Store(StoreError),
    Db(tokio_postgres::Error),
    /// The transaction saw a concurrent change that a re-run resolves.
    Retry,
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

impl Fail {
    fn retryable(&self) -> bool {
        match self {
            Fail::Retry => true,
            Fail::Db(e) => code(e).is_some_and(|c| {
                *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
            }),
            Fail::Store(_) => false,
        }
    }

    fn into_store(self) -> StoreError {
        if self.retryable() {
            return StoreError::Conflict;
        }
        match self {
            Fail::Store(e) => e,
            Fail::Db(e) if unreachable(&e) => cannot_reach(describe(&e)),
            Fail::Db(e) => StoreError::Backend(describe(&e)),
            Fail::Retry => StoreError::Conflict,
        }
    }
}

/// Whether a database error means the server cannot be reached for now
/// (connection lost or refused, server shutting down or starting), which a
/// client may retry, rather than a failure of the request itself.
fn unreachable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// The store is out of reach: logged here with its cause, answered 503.
fn cannot_reach(detail: String) -> StoreError {
    tracing::warn!(%detail, "PostgreSQL cannot be reached");
    StoreError::Unavailable(detail)
}

/// An error and its causes, `outer: inner: …` (a failed TLS handshake says
/// why only in its source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The server's message and SQLSTATE when there is one (the plain `Display`
/// of a server error is only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{db} (SQLSTATE {})", db.code().code()),
        None => e.to_string(),
    }
}

fn is_code(e: &tokio_postgres::Error, want: &SqlState) -> bool {
    code(e) == Some(want)
}

/// Waits before attempt `attempt` (1-based): exponential from 2 ms, capped
/// at 200 ms, with jitter so that colliding writers do not collide again.
async fn backoff(attempt: u32) {
    let base = 2u64 << attempt.min(7);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) % base.max(1))
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis((base + jitter).min(200))).await;
}

/// Runs `$body` in a transaction on a pooled connection and commits; `$body`
/// may use `?` with anything convertible into [`Fail`]. The whole
/// transaction is re-run on a serialization failure or a deadlock, so the
/// body must not have effects outside the database.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut attempt: u32 = 0;
        loop {
            let result: Result<_, Fail> = async {
                let mut client = $store.client().await?;
                let $tx = client.transaction().await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(e) if e.retryable() && attempt < MAX_RETRIES => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                other => break other.map_err(Fail::into_store),
            }
        }
    }};
}

/// Runs `$body` with a pooled connection (no explicit transaction), with the
/// same retries as [`in_transaction`].
macro_rules! with_client {
    ($store:expr, |$client:ident| $body:block) => {{
        let mut attempt: u32 = 0;
        loop {
            let result: Result<_, Fail> = async {
                let $client = $store.client().await?;
                Ok($body)
            }
            .await;
            match result {
                Err(e) if e.retryable() && attempt < MAX_RETRIES => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                other => break other.map_err(Fail::into_store),
            }
        }
    }};
}

/// The session settings every connection starts with, after the URL's own
/// `options`. Every statement scimd sends is written to be answered from
/// indexes (a point lookup, a range of the `(key, s, seq)` index, a probe
/// per row); PostgreSQL chooses a plan from statistics, and a statement
/// prepared while a table was small (a new database) kept a sequential scan
/// of it on that connection for good (a create cost 14 ms once
/// `attr_values` held 320,000 rows). So sequential scans are ruled out
/// wherever an index serves, and each statement is planned once per
/// connection (its generic plan): no re-planning per execution, and no plan
/// that flips with the data's shape.
fn planner_options(given: Option<&str>) -> String {
    let ours = "-c enable_seqscan=off -c plan_cache_mode=force_generic_plan";
    match given {
        Some(given) if !given.trim().is_empty() => format!("{given} {ours}"),
        _ => ours.to_string(),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://` or `postgresql://`) with a pool of
    /// at most `pool_size` connections and brings the schema up to date.
    pub async fn connect(url: &str, pool_size: usize) -> Result<PgStore, StoreError> {
        PgStore::connect_with(url, pool_size, None).await
    }

    /// [`PgStore::connect`], with TLS when the URL says `sslmode=require`:
    /// the server's certificate is verified against the system's roots and
    /// the PEM certificates of `ca_file` (a private CA, as managed databases
    /// use). Without `sslmode=require` the connection is plain TCP.
    pub async fn connect_with(
        url: &str,
        pool_size: usize,
        ca_file: Option<&std::path::Path>,
    ) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid database URL: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("scimd");
        }
        config.options(planner_options(config.get_options()));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Require => {
                Manager::from_config(config, tls_connector(ca_file)?, manager_config)
            }
            _ => Manager::from_config(config, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(Duration::from_secs(30)),
                create: Some(Duration::from_secs(10)),
                recycle: Some(Duration::from_secs(5)),
            })
            .build()
            .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))?;
        let store = PgStore {
            pool,
            member_queues: Arc::new(Mutex::new(HashMap::new())),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A pooled connection younger than [`PLAN_LIFETIME`]: an older one is
    /// closed and another taken (or made), so that no connection keeps for
    /// long the plans it made from old statistics.
    async fn client(&self) -> Result<deadpool_postgres::Object, Fail> {
        loop {
            let client = self.pool.get().await.map_err(|e| {
                Fail::Store(cannot_reach(format!("database connection: {}", chain(&e))))
            })?;
            if deadpool_postgres::Object::metrics(&client).age() < PLAN_LIFETIME {
                return Ok(client);
            }
            drop(deadpool_postgres::Object::take(client));
        }
    }

    /// Applies the missing migrations. Several servers may start at once:
    /// each migration is claimed by inserting its row into
    /// `scimd_migrations` in the transaction that applies it, so a second
    /// server waits on that row and then finds it applied.
    async fn migrate(&self) -> Result<(), StoreError> {
        // Two sessions creating the table at once can collide in the
        // catalog; the loser tries again and finds the table.
        let mut attempt = 0;
        loop {
            let created = async {
                self.client()
                    .await?
                    .batch_execute(
                        "CREATE TABLE IF NOT EXISTS scimd_migrations (version BIGINT PRIMARY KEY, applied TEXT NOT NULL)",
                    )
                    .await
                    .map_err(Fail::Db)
            }
            .await;
            match created {
                Err(Fail::Db(e))
                    if attempt < MAX_RETRIES
                        && (is_code(&e, &SqlState::UNIQUE_VIOLATION)
                            || is_code(&e, &SqlState::DUPLICATE_TABLE)
                            || is_code(&e, &SqlState::DUPLICATE_OBJECT)) =>
                {
                    attempt += 1;
                    backoff(attempt).await;
                }
                other => break other.map_err(Fail::into_store)?,
            }
        }
        let latest = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
            in_transaction!(self, |tx| {
                let claimed = tx
                    .execute(
                        "INSERT INTO scimd_migrations (version, applied) VALUES ($1, now()::text) ON CONFLICT DO NOTHING",
                        &[&version],
                    )
                    .await?;
                if claimed == 1 {
                    tx.batch_execute(sql).await?;
                }
            })?;
        }
        let newest: Option<i64> = with_client!(self, |client| {
            client
                .query_one("SELECT max(version) FROM scimd_migrations", &[])
                .await?
                .try_get(0)?
        })?;
        if newest.is_some_and(|v| v > latest) {
            return Err(StoreError::Backend(format!(
                "the database schema is at version {} but this scimd knows only {latest}: run a newer scimd",
                newest.unwrap_or(0)
            )));
        }
        Ok(())
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

fn to_row(row: &Row) -> Result<StoredRow, Fail> {
    Ok(StoredRow {
        position: row.try_get(0)?,
        id: row.try_get(1)?,
        resource_type: row.try_get(2)?,
        version: row.try_get(3)?,
        created: row.try_get(4)?,
        modified: row.try_get(5)?,
        text: row.try_get(6)?,
    })
}

fn to_stored(row: &Row) -> Result<StoredResource, Fail> {
    Ok(to_row(row)?.parse()?)
}

/// Members of several groups at once: `(group_seq, member)` in member order.
const MEMBERS_OF: &str = "SELECT m.group_seq, r.id, r.rtype,
        COALESCE(m.display, r.data::json ->> 'displayName', r.data::json ->> 'userName')
   FROM members m JOIN resources r ON r.seq = m.member_seq
  WHERE m.group_seq = ANY($1::int8[]) ORDER BY m.group_seq, m.member_seq";

fn row_to_member(row: &Row) -> Result<(i64, Member), Fail> {
    Ok((
        row.try_get(0)?,
        Member {
            value: row.try_get(1)?,
            typ: Some(row.try_get(2)?),
            display: row.try_get(3)?,
        },
    ))
}

/// Gives each of `items` its members from `rows` of [`MEMBERS_OF`].
fn attach_members(items: &mut [StoredResource], rows: &[Row]) -> Result<(), Fail> {
    let mut by_group: HashMap<i64, Vec<Member>> = HashMap::new();
    for row in rows {
        let (group, member) = row_to_member(row)?;
        by_group.entry(group).or_default().push(member);
    }
    for item in items {
        item.members = Some(by_group.remove(&item.position).unwrap_or_default());
    }
    Ok(())
}

async fn load_members(c: &impl GenericClient, group_seq: i64) -> Result<Vec<Member>, Fail> {
    let rows = c.query(MEMBERS_OF, &[&vec![group_seq]]).await?;
    rows.iter()
        .map(|r| row_to_member(r).map(|(_, m)| m))
        .collect()
}

/// The computed groups of several members in one statement, direct and
/// inherited, as rows `(member, group id, group displayName, direct)` ordered
/// by member and group. `members` is the first step of the recursion: rows
/// `(member, group_seq, TRUE)`. Every step is a lookup by key that the
/// planner cannot turn into a scan, whatever its statistics say: the
/// `LATERAL (… OFFSET 0)` subqueries cannot be flattened into joins, so each
/// runs as an index probe per row (a hash join chosen from a bad estimate
/// once scanned and sorted all of `resources` for every `GET /Users/{id}`).
fn groups_statement(members: &str) -> String {
    format!(
        "WITH RECURSIVE g(member, seq, direct) AS (
           {members}
           UNION
           SELECT g.member, p.group_seq, FALSE FROM g CROSS JOIN LATERAL
             (SELECT x.group_seq FROM members x WHERE x.member_seq = g.seq OFFSET 0) p
         )
         SELECT a.member, r.id, r.data::json ->> 'displayName', a.direct
           FROM (SELECT member, seq, bool_or(direct) AS direct FROM g GROUP BY member, seq) a
           CROSS JOIN LATERAL (SELECT x.id, x.data FROM resources x WHERE x.seq = a.seq OFFSET 0) r
          ORDER BY a.member, a.seq"
    )
}

/// [`groups_statement`] of members given by id (`$1`, a text array).
static GROUPS_BY_ID: LazyLock<String> = LazyLock::new(|| {
    groups_statement(
        "SELECT s.id, p.group_seq, TRUE FROM resources s CROSS JOIN LATERAL
           (SELECT x.group_seq FROM members x WHERE x.member_seq = s.seq OFFSET 0) p
          WHERE s.id = ANY($1::text[])",
    )
});

/// [`groups_statement`] of members given by position (`$1`, an int8 array),
/// each probed on its own: `member_seq = ANY($1)`, planned on an empty
/// database, read all of `members`' primary key (group first) on every call
/// once a group was large (2 ms a call, mixed traffic at 63/s).
static GROUPS_BY_SEQ: LazyLock<String> = LazyLock::new(|| {
    groups_statement(
        "SELECT s.seq, p.group_seq, TRUE FROM unnest($1::int8[]) AS s(seq) CROSS JOIN LATERAL
           (SELECT x.group_seq FROM members x WHERE x.member_seq = s.seq OFFSET 0) p",
    )
});

/// Rows of a [`groups_statement`] by member, in the order of `members`.
fn groups_by_member<K>(rows: &[Row], members: &[K]) -> Result<Vec<Vec<GroupMembership>>, Fail>
where
    K: std::hash::Hash + Eq + for<'a> tokio_postgres::types::FromSql<'a>,
{
    let mut by_member: HashMap<K, Vec<GroupMembership>> = HashMap::new();
    for row in rows {
        by_member
            .entry(row.try_get::<_, K>(0)?)
            .or_default()
            .push(row_to_group(row)?);
    }
    Ok(members
        .iter()
        .map(|m| by_member.remove(m).unwrap_or_default())
        .collect())
}

fn row_to_group(row: &Row) -> Result<GroupMembership, Fail> {
    Ok(GroupMembership {
        group_id: row.try_get(1)?,
        display: row.try_get(2)?,
        direct: row.try_get(3)?,
    })
}

/// The groups of the resource `id` ([`GROUPS_BY_ID`]).
async fn groups_of_id(
    c: &impl deadpool_postgres::GenericClient,
    id: &str,
) -> Result<Vec<GroupMembership>, Fail> {
    let groups = c.prepare_cached(&GROUPS_BY_ID).await?;
    let ids = [id];
    let rows = c.query(&groups, &[&&ids[..]]).await?;
    rows.iter().map(row_to_group).collect()
}

/// The side tables of the resource `r` (a CTE of the statement: its `seq`)
/// brought to the index rows `$1`-`$5` and the unique values `$6`-`$8`, in
/// the same statement as the resource's row: rows that did not change stay,
/// the others are deleted or inserted (every CTE sees the tables as they
/// were before the statement). A PATCH of one attribute writes the index
/// row it changes, not the ~32 of a user.
const SIDE_TABLES: &str = "
  e(k, el, p, s, n) AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::bool[], $4::text[], $5::float8[])),
  u(sc, k, v) AS (SELECT * FROM unnest($6::text[], $7::text[], $8::text[])),
  de AS (DELETE FROM attr_values a USING r WHERE a.seq = r.seq AND NOT EXISTS (
           SELECT 1 FROM e WHERE e.k = a.key AND e.el = a.elem AND e.p = a.prim
              AND e.s IS NOT DISTINCT FROM a.s AND e.n IS NOT DISTINCT FROM a.n)),
  ie AS (INSERT INTO attr_values (seq, key, elem, prim, s, n)
           SELECT r.seq, e.k, e.el, e.p, e.s, e.n FROM r, e WHERE NOT EXISTS (
             SELECT 1 FROM attr_values a WHERE a.seq = r.seq AND a.key = e.k AND a.elem = e.el
                AND a.prim = e.p AND a.s IS NOT DISTINCT FROM e.s AND a.n IS NOT DISTINCT FROM e.n)),
  du AS (DELETE FROM unique_values x USING r WHERE x.seq = r.seq AND NOT EXISTS (
           SELECT 1 FROM u WHERE u.sc = x.scope AND u.k = x.key AND u.v = x.value)),
  iu AS (INSERT INTO unique_values (scope, key, value, seq)
           SELECT u.sc, u.k, u.v, r.seq FROM r, u WHERE NOT EXISTS (
             SELECT 1 FROM unique_values x WHERE x.seq = r.seq AND x.scope = u.sc AND x.key = u.k
                AND x.value = u.v))";

/// A new resource and its side tables: version `$11`, created `$12`,
/// modified `$13`, document `$14`.
/// A new resource has no side rows to compare with: its index rows and
/// unique values are inserted as they are.
const INSERT_RESOURCE: &str = "
  WITH r AS (INSERT INTO resources (id, rtype, version, created, modified, data)
             VALUES ($9, $10, $11, $12, $13, $14) RETURNING seq),
       ie AS (INSERT INTO attr_values (seq, key, elem, prim, s, n)
              SELECT r.seq, e.k, e.el, e.p, e.s, e.n FROM r,
                unnest($1::text[], $2::int8[], $3::bool[], $4::text[], $5::float8[]) AS e(k, el, p, s, n)),
       iu AS (INSERT INTO unique_values (scope, key, value, seq)
              SELECT u.sc, u.k, u.v, r.seq FROM r, unnest($6::text[], $7::text[], $8::text[]) AS u(sc, k, v))
  SELECT seq FROM r";

/// A resource's new document and side tables, if its version is `$13`
/// (any when NULL).
static UPDATE_RESOURCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH r AS (UPDATE resources SET version = version + 1, modified = $9, data = $10
                     WHERE id = $11 AND rtype = $12 AND ($13::int8 IS NULL OR version = $13)
                     RETURNING seq, version, created),
         {SIDE_TABLES}
         SELECT seq, version, created FROM r"
    )
});

/// The index entries and unique values of a write as the arrays that
/// [`SIDE_TABLES`] and [`INSERT_RESOURCE`] unnest.
struct SideRows<'w> {
    keys: Vec<&'w str>,
    elems: Vec<i64>,
    prims: Vec<bool>,
    texts: Vec<Option<&'w str>>,
    numbers: Vec<Option<f64>>,
    scopes: Vec<&'w str>,
    unique_keys: Vec<&'w str>,
    unique_values: Vec<&'w str>,
}

impl<'w> SideRows<'w> {
    fn of(w: &'w ResourceWrite) -> Self {
        SideRows {
            keys: w.index.iter().map(|e| e.key.as_str()).collect(),
            elems: w.index.iter().map(|e| i64::from(e.elem)).collect(),
            prims: w.index.iter().map(|e| e.primary).collect(),
            texts: w.index.iter().map(|e| e.text.as_deref()).collect(),
            numbers: w.index.iter().map(|e| e.number).collect(),
            scopes: w
                .unique
                .iter()
                .map(|u| unique_scope(&w.resource_type, u))
                .collect(),
            unique_keys: w.unique.iter().map(|u| u.key.as_str()).collect(),
            unique_values: w.unique.iter().map(|u| u.value.as_str()).collect(),
        }
    }

    /// `$1`-`$8` of [`SIDE_TABLES`] and [`INSERT_RESOURCE`].
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.keys,
            &self.elems,
            &self.prims,
            &self.texts,
            &self.numbers,
            &self.scopes,
            &self.unique_keys,
            &self.unique_values,
        ]
    }
}

/// A failed write statement: a unique value already taken names its
/// attribute (from the key the server reports, in the first column order of
/// `unique_values`' primary key: scope, key, value).
fn write_failure(e: tokio_postgres::Error, w: &ResourceWrite) -> Fail {
    let Some(db) = e.as_db_error() else {
        return Fail::Db(e);
    };
    if *db.code() != SqlState::UNIQUE_VIOLATION || db.constraint() != Some("unique_values_pkey") {
        return Fail::Db(e);
    }
    let reported = db
        .detail()
        .and_then(|d| d.split_once(")=("))
        .and_then(|(_, values)| values.split(", ").nth(1));
    let attr = w
        .unique
        .iter()
        .find(|u| Some(u.key.as_str()) == reported)
        .or(w.unique.first())
        .map(|u| u.key.clone())
        .unwrap_or_default();
    Fail::Store(StoreError::Uniqueness { attr })
}

/// Inserts `w` as a new resource with its side tables; returns its `seq`.
async fn insert_resource(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &ResourceWrite,
    version: i64,
    created: &str,
    data: &str,
) -> Result<i64, Fail> {
    let insert = tx.prepare_cached(INSERT_RESOURCE).await?;
    let sides = SideRows::of(w);
    let mut params = sides.params();
    params.extend_from_slice(&[
        &w.id as &(dyn ToSql + Sync),
        &w.resource_type,
        &version,
        &created,
        &w.now,
        &data,
    ]);
    let row = tx
        .query_one(&insert, &params)
        .await
        .map_err(|e| write_failure(e, w))?;
    let seq = row.try_get(0)?;
    write_members(tx, seq, w).await?;
    Ok(seq)
}

/// Replaces the memberships of the group `seq` when the write sets them.
async fn write_members(
    tx: &deadpool_postgres::Transaction<'_>,
    seq: i64,
    w: &ResourceWrite,
) -> Result<(), Fail> {
    if let Some(members) = &w.members {
        tx.execute("DELETE FROM members WHERE group_seq = $1", &[&seq])
            .await?;
        add_members(tx, seq, members, &w.member_types).await?;
    }
    Ok(())
}

/// Adds members in two statements whatever their number; the first unknown
/// (or wrongly typed) member in request order is the one reported, as in
/// the SQLite store.
async fn add_members(
    tx: &deadpool_postgres::Transaction<'_>,
    group_seq: i64,
    members: &[Member],
    types: &[String],
) -> Result<(), Fail> {
    if members.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = members.iter().map(|m| m.value.as_str()).collect();
    let found = find_resources(tx, &ids).await?;
    let (seqs, displays) = member_rows(&found, members, types)?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO members (group_seq, member_seq, display)
             SELECT $1::int8, u.m, u.d FROM unnest($2::int8[], $3::text[]) AS u(m, d)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&insert, &[&group_seq, &seqs, &displays])
        .await
        .map_err(member_insert_failure)?;
    Ok(())
}

/// The resources among `ids`, by id: (`seq`, type).
async fn find_resources(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[&str],
) -> Result<HashMap<String, (i64, String)>, Fail> {
    let find = tx
        .prepare_cached("SELECT id, seq, rtype FROM resources WHERE id = ANY($1::text[])")
        .await?;
    let mut found = HashMap::new();
    for row in tx.query(&find, &[&ids]).await? {
        found.insert(
            row.try_get::<_, String>(0)?,
            (row.try_get::<_, i64>(1)?, row.try_get::<_, String>(2)?),
        );
    }
    Ok(found)
}

/// A member deleted between the lookup and the insert (a foreign key
/// violation): the re-run finds it gone and names it, as if the delete had
/// come first.
fn member_insert_failure(e: tokio_postgres::Error) -> Fail {
    if is_code(&e, &SqlState::FOREIGN_KEY_VIOLATION) {
        Fail::Retry
    } else {
        Fail::Db(e)
    }
}

/// The rows to insert for `members`, given the resources `found` by id
/// (`seq`, type): the first unknown or wrongly typed member in request order
/// is the one reported, as in the SQLite store; the first mention of a
/// member wins, as with row-by-row inserts.
fn member_rows<'m>(
    found: &HashMap<String, (i64, String)>,
    members: &'m [Member],
    types: &[String],
) -> Result<(Vec<i64>, Vec<Option<&'m str>>), Fail> {
    let mut seen = std::collections::HashSet::new();
    let mut seqs = Vec::with_capacity(members.len());
    let mut displays = Vec::with_capacity(members.len());
    for m in members {
        let Some((seq, rtype)) = found.get(&m.value) else {
            return Err(StoreError::UnknownMember(m.value.clone()).into());
        };
        if !member_type_ok(types, rtype, m) {
            return Err(StoreError::UnknownMember(m.value.clone()).into());
        }
        if seen.insert(*seq) {
            seqs.push(*seq);
            displays.push(m.display.as_deref());
        }
    }
    Ok((seqs, displays))
}

/// What a replace returns: seq, new version, created, and the members when
/// the write set them.
type Replaced = (i64, i64, String, Option<Vec<Member>>);

/// Replaces a resource's document and side tables inside `tx`
/// (compare-and-swap on `expected` when given): one statement, plus the
/// memberships when the write sets them.
async fn replace_in(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &ResourceWrite,
    expected: Option<i64>,
) -> Result<Replaced, Fail> {
    let data = serde_json::Value::Object(w.data.clone()).to_string();
    let update = tx.prepare_cached(&UPDATE_RESOURCE).await?;
    let sides = SideRows::of(w);
    let mut params = sides.params();
    params.extend_from_slice(&[
        &w.now as &(dyn ToSql + Sync),
        &data,
        &w.id,
        &w.resource_type,
        &expected,
    ]);
    let Some(row) = tx
        .query_opt(&update, &params)
        .await
        .map_err(|e| write_failure(e, w))?
    else {
        return Err(explain_miss(&**tx, &w.resource_type, &w.id).await);
    };
    let seq: i64 = row.try_get(0)?;
    let version: i64 = row.try_get(1)?;
    let created: String = row.try_get(2)?;
    write_members(tx, seq, w).await?;
    let members = match &w.members {
        Some(_) => Some(load_members(&**tx, seq).await?),
        None => None,
    };
    Ok((seq, version, created, members))
}

/// [`replace_in`], and the resource's groups afterwards when `with_groups`,
/// sent together (one round trip for both).
async fn replace_with_groups_in(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &ResourceWrite,
    expected: Option<i64>,
    with_groups: bool,
) -> Result<(Replaced, Option<Vec<GroupMembership>>), Fail> {
    if !with_groups {
        return Ok((replace_in(tx, w, expected).await?, None));
    }
    // Polled in this order: the write is sent first, so the read sees it.
    let (replaced, groups) =
        tokio::try_join!(replace_in(tx, w, expected), groups_of_id(tx, &w.id))?;
    Ok((replaced, Some(groups)))
}

/// After a conditional statement touched no row: not found, or a version
/// mismatch.
async fn explain_miss(c: &impl GenericClient, rtype: &str, id: &str) -> Fail {
    match c
        .query_opt(
            "SELECT version FROM resources WHERE id = $1 AND rtype = $2",
            &[&id, &rtype],
        )
        .await
    {
        Ok(Some(row)) => match row.try_get(0) {
            Ok(current) => Fail::Store(missed(Some(current))),
            Err(e) => Fail::Db(e),
        },
        Ok(None) => Fail::Store(missed(None)),
        Err(e) => Fail::Db(e),
    }
}

const GET_ONE: &str = "SELECT r.seq, r.id, r.rtype, r.version, r.created, r.modified, r.data
   FROM resources r WHERE r.id = $1 AND r.rtype = $2";

/// TLS for `sslmode=require`, with ring (no process-wide provider needed).
fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let tls_error = |what: String| StoreError::Backend(format!("database TLS: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is not ours to refuse.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_error(format!("reading {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(tls_error(format!(
                "{} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(tls_error(
            "no trusted certificate authority: give --database-ca-file".into(),
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PgStore {
    /// Applies the changes queued for `key` until none are left.
    async fn apply_member_queue(&self, key: GroupKey) {
        // If this task ends any other way (the runtime shutting down), the
        // queue goes with it: its callers hear an error instead of waiting
        // for an applier that no longer exists.
        struct Abandon<'a> {
            store: &'a PgStore,
            key: &'a GroupKey,
            armed: bool,
        }
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if self.armed
                    && let Ok(mut queues) = self.store.member_queues.lock()
                {
                    queues.remove(self.key);
                }
            }
        }
        let mut abandon = Abandon {
            store: self,
            key: &key,
            armed: true,
        };
        loop {
            let batch: Vec<PendingChange> = {
                let Ok(mut queues) = self.member_queues.lock() else {
                    return;
                };
                match queues.get_mut(&key) {
                    Some(pending) if !pending.is_empty() => {
                        let n = pending.len().min(MAX_MEMBER_BATCH);
                        pending.drain(..n).collect()
                    }
                    _ => {
                        // Under the lock: a caller arriving after this
                        // starts a new applier.
                        queues.remove(&key);
                        abandon.armed = false;
                        return;
                    }
                }
            };
            self.apply_member_batch(&key, batch).await;
        }
    }

    async fn apply_member_batch(&self, (rtype, id): &GroupKey, batch: Vec<PendingChange>) {
        if batch.len() > 1 {
            let together = in_transaction!(self, |tx| {
                if let Some(results) = pipelined_member_changes(&tx, rtype, id, &batch).await? {
                    results
                } else {
                    let mut results = Vec::with_capacity(batch.len());
                    for p in &batch {
                        match apply_member_change(&tx, rtype, id, p).await {
                            // Decided before anything was written for it.
                            Err(Fail::Store(
                                e @ (StoreError::NotFound | StoreError::VersionMismatch { .. }),
                            )) => results.push(Err(e)),
                            other => results.push(Ok(other?)),
                        }
                    }
                    results
                }
            });
            if let Ok(results) = together {
                for (p, result) in batch.into_iter().zip(results) {
                    let _ = p.reply.send(result);
                }
                return;
            }
            // One change failed in a way that spoils the transaction (an
            // unknown member, a database error): nothing was committed; each
            // goes again alone and gets its own answer.
        }
        for p in batch {
            let result = in_transaction!(self, |tx| {
                apply_member_change(&tx, rtype, id, &p).await?
            });
            let _ = p.reply.send(result);
        }
    }
}

/// A batch in which every change is one add or one remove: each becomes a
/// single statement (bump the version, then change the rows, in one
/// data-modifying CTE) and all are sent at once, in order, without waiting
/// for each answer (the protocol's pipelining): a few round trips for the
/// whole batch instead of three per change. `None` when the batch has
/// another shape; an unknown member fails the batch (the caller re-runs
/// its changes one by one to answer each).
async fn pipelined_member_changes(
    tx: &deadpool_postgres::Transaction<'_>,
    rtype: &str,
    id: &str,
    batch: &[PendingChange],
) -> Result<Option<Vec<Result<i64, StoreError>>>, Fail> {
    let simple = batch.iter().all(|p| {
        matches!(
            p.changes.as_slice(),
            [MemberChange::Add(_)] | [MemberChange::Remove(_)]
        )
    });
    if !simple {
        return Ok(None);
    }
    let mentioned: Vec<&str> = batch
        .iter()
        .flat_map(|p| match p.changes.as_slice() {
            [MemberChange::Add(members)] => members.iter().map(|m| m.value.as_str()).collect(),
            _ => Vec::new(),
        })
        .collect();
    let found = find_resources(tx, &mentioned).await?;
    let add = tx
        .prepare_cached(
            "WITH g AS (
               UPDATE resources SET version = version + 1, modified = $1
                WHERE id = $2 AND rtype = $3 AND ($4::int8 IS NULL OR version = $4)
                RETURNING seq, version),
             added AS (
               INSERT INTO members (group_seq, member_seq, display)
               SELECT g.seq, u.m, u.d FROM g, unnest($5::int8[], $6::text[]) AS u(m, d)
               ON CONFLICT DO NOTHING)
             SELECT version FROM g",
        )
        .await?;
    let remove = tx
        .prepare_cached(
            "WITH g AS (
               UPDATE resources SET version = version + 1, modified = $1
                WHERE id = $2 AND rtype = $3 AND ($4::int8 IS NULL OR version = $4)
                RETURNING seq, version),
             removed AS (
               DELETE FROM members m USING g
                WHERE m.group_seq = g.seq
                  AND m.member_seq = ANY(ARRAY(SELECT seq FROM resources WHERE id = ANY($5::text[]))))
             SELECT version FROM g",
        )
        .await?;
    // Every statement's parameters first (they must outlive the queries).
    let mut adds: Vec<(Vec<i64>, Vec<Option<&str>>)> = Vec::new();
    for p in batch {
        if let [MemberChange::Add(members)] = p.changes.as_slice() {
            adds.push(member_rows(&found, members, &p.member_types)?);
        }
    }
    let removes: Vec<Vec<&str>> = batch
        .iter()
        .filter_map(|p| match p.changes.as_slice() {
            [MemberChange::Remove(ids)] => Some(ids.iter().map(String::as_str).collect()),
            _ => None,
        })
        .collect();
    let (mut next_add, mut next_remove) = (adds.iter(), removes.iter());
    let mut statements: Vec<(bool, Vec<&(dyn ToSql + Sync)>)> = Vec::with_capacity(batch.len());
    for p in batch {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&p.now, &id, &rtype, &p.expected];
        let is_add = matches!(p.changes.as_slice(), [MemberChange::Add(_)]);
        if is_add {
            let Some((seqs, displays)) = next_add.next() else {
                return Ok(None);
            };
            params.push(seqs);
            params.push(displays);
        } else {
            let Some(ids) = next_remove.next() else {
                return Ok(None);
            };
            params.push(ids);
        }
        statements.push((is_add, params));
    }
    let queries = statements
        .iter()
        .map(|(is_add, params)| tx.query_opt(if *is_add { &add } else { &remove }, params));
    // Polled together: sent back to back, executed in this order.
    let rows = futures_util::future::try_join_all(queries)
        .await
        .map_err(member_insert_failure)?;
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        results.push(match row {
            Some(row) => Ok(row.try_get::<_, i64>(0)?),
            None => match explain_miss(&**tx, rtype, id).await {
                Fail::Store(e) => Err(e),
                other => return Err(other),
            },
        });
    }
    Ok(Some(results))
}

/// Prepared statements a connection keeps for list queries: one per filter
/// shape (values are parameters). Kept, a lookup is one round trip and no
/// parsing or planning; beyond this many shapes on one connection, further
/// ones are prepared for the one use so a client cannot grow the cache.
const MAX_CACHED_LIST_STATEMENTS: usize = 200;

async fn list_statement(
    client: &deadpool_postgres::Object,
    text: &str,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    if client.statement_cache.size() < MAX_CACHED_LIST_STATEMENTS {
        client.prepare_cached(text).await
    } else {
        client.prepare(text).await
    }
}

/// One membership change: bumps the group's version (which takes its row
/// lock), then adds or removes the rows.
async fn apply_member_change(
    tx: &deadpool_postgres::Transaction<'_>,
    rtype: &str,
    id: &str,
    p: &PendingChange,
) -> Result<i64, Fail> {
    let update = tx
        .prepare_cached(
            "UPDATE resources SET version = version + 1, modified = $1
             WHERE id = $2 AND rtype = $3 AND ($4::int8 IS NULL OR version = $4)
             RETURNING seq, version",
        )
        .await?;
    let Some(row) = tx
        .query_opt(&update, &[&p.now, &id, &rtype, &p.expected])
        .await?
    else {
        return Err(explain_miss(&**tx, rtype, id).await);
    };
    let seq: i64 = row.try_get(0)?;
    let version: i64 = row.try_get(1)?;
    for change in &p.changes {
        match change {
            MemberChange::Add(members) => add_members(tx, seq, members, &p.member_types).await?,
            MemberChange::Remove(ids) => {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let remove = tx
                    .prepare_cached(
                        "DELETE FROM members WHERE group_seq = $1
                           AND member_seq = ANY(ARRAY(SELECT seq FROM resources WHERE id = ANY($2::text[])))",
                    )
                    .await?;
                tx.execute(&remove, &[&seq, &ids]).await?;
            }
            MemberChange::RemoveAll => {
                tx.execute("DELETE FROM members WHERE group_seq = $1", &[&seq])
                    .await?;
            }
        }
    }
    Ok(version)
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
        let data = serde_json::Value::Object(w.data.clone()).to_string();
        let (seq, members) = in_transaction!(self, |tx| {
            let seq = insert_resource(&tx, &w, 1, &w.now, &data).await?;
            let members = match &w.members {
                Some(_) => Some(load_members(&*tx, seq).await?),
                None => None,
            };
            (seq, members)
        })?;
        Ok(StoredResource::created(w, seq, members))
    }

    async fn get(
        &self,
        rtype: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<StoredResource>, StoreError> {
        with_client!(self, |client| {
            let get = client.prepare_cached(GET_ONE).await?;
            match client.query_opt(&get, &[&id, &rtype]).await? {
                None => None,
                Some(row) => {
                    let mut stored = to_stored(&row)?;
                    if with_members {
                        stored.members = Some(load_members(&**client, stored.position).await?);
                    }
                    Some(stored)
                }
            }
        })
    }

    async fn get_with_groups(
        &self,
        rtype: &str,
        id: &str,
    ) -> Result<Option<(StoredRow, Vec<GroupMembership>)>, StoreError> {
        with_client!(self, |client| {
            let get = client.prepare_cached(GET_ONE).await?;
            // One round trip for both.
            let (row, groups) = tokio::try_join!(
                async { Ok::<_, Fail>(client.query_opt(&get, &[&id, &rtype]).await?) },
                groups_of_id(&client, id),
            )?;
            match row {
                None => None,
                Some(row) => Some((to_row(&row)?, groups)),
            }
        })
    }

    async fn replace(
        &self,
        w: ResourceWrite,
        expected: Option<i64>,
        with_groups: bool,
    ) -> Result<Modified, StoreError> {
        let ((seq, version, created, members), groups) = in_transaction!(self, |tx| {
            replace_with_groups_in(&tx, &w, expected, with_groups).await?
        })?;
        Ok((
            StoredResource::replaced(w, seq, version, created, members),
            groups,
        ))
    }

    /// The resource's row is locked (`FOR UPDATE`) from the read to the
    /// commit: concurrent modifications of one resource, through this
    /// process or another, queue on the lock instead of retrying. Four
    /// round trips: BEGIN, the locking read, the write (with the groups
    /// read after it), COMMIT.
    async fn modify(
        &self,
        rtype: &str,
        id: &str,
        with_groups: bool,
        mut change: Modification,
    ) -> Result<Option<Modified>, ModifyError> {
        enum Step {
            Written(Box<(ResourceWrite, Replaced, Option<Vec<GroupMembership>>)>),
            Refused(scimd_core::error::ScimError),
            Declined,
        }
        let step = in_transaction!(self, |tx| {
            let get = tx.prepare_cached(&format!("{GET_ONE} FOR UPDATE")).await?;
            let Some(row) = tx.query_opt(&get, &[&id, &rtype]).await? else {
                return Err(Fail::Store(StoreError::NotFound));
            };
            let old = to_stored(&row)?;
            match change(&old) {
                Ok(Some(w)) => {
                    let (replaced, groups) =
                        replace_with_groups_in(&tx, &w, None, with_groups).await?;
                    Step::Written(Box::new((w, replaced, groups)))
                }
                Ok(None) => Step::Declined,
                Err(e) => Step::Refused(e),
            }
        })?;
        let (w, (seq, version, created, members), groups) = match step {
            Step::Written(written) => *written,
            Step::Refused(e) => return Err(ModifyError::Refused(e)),
            Step::Declined => return Ok(None),
        };
        let stored = StoredResource::replaced(w, seq, version, created, members);
        Ok(Some((stored, groups)))
    }

    /// The resource's side tables go with it in the same statement (they
    /// have no foreign key to cascade), then its dependents with theirs.
    async fn delete(
        &self,
        rtype: &str,
        id: &str,
        expected: Option<i64>,
        dependents: Vec<(String, Cond)>,
    ) -> Result<(), StoreError> {
        let sweeps: Vec<Sql> = dependents
            .iter()
            .map(|(dependent, cond)| delete_matching(Dialect::Postgres, dependent, cond))
            .collect();
        in_transaction!(self, |tx| {
            let delete = tx
                .prepare_cached(&with_side_tables(
                    "DELETE FROM resources WHERE id = $1 AND rtype = $2 AND ($3::int8 IS NULL OR version = $3)",
                ))
                .await?;
            if tx
                .query_one(&delete, &[&id, &rtype, &expected])
                .await?
                .try_get::<_, i64>(0)?
                == 0
            {
                return Err(explain_miss(&*tx, rtype, id).await);
            }
            for sweep in &sweeps {
                tx.query_one(with_side_tables(&sweep.text).as_str(), &bind(&sweep.params))
                    .await?;
            }
        })
    }

    /// The page of [`ResourceStore::query_with_groups`] (one snapshot for the
    /// page, its total and its members).
    async fn query(&self, q: Query) -> Result<Page, StoreError> {
        Ok(self.query_with_groups(q, &[]).await?.0)
    }

    /// Two round trips at most, in one snapshot (a read-only REPEATABLE
    /// READ transaction): BEGIN with the page (and the count when the page
    /// cannot tell it), then the groups of the page's items, in one
    /// statement whatever their number, with the COMMIT.
    async fn query_with_groups(
        &self,
        q: Query,
        groups_for: &[String],
    ) -> Result<(Page, Vec<Option<Vec<GroupMembership>>>), StoreError> {
        let (count, page): (Sql, Sql) = page_queries(Dialect::Postgres, &q);
        with_client!(self, |client| {
            let snapshot = ReadSnapshot::begin(client);
            let c = snapshot.client()?;
            let groups_stmt = c.prepare_cached(&GROUPS_BY_SEQ).await?;
            let (count_stmt, page_stmt) = tokio::try_join!(
                list_statement(c, &count.text),
                list_statement(c, &page.text),
            )?;
            let (count_params, page_params) = (bind(&count.params), bind(&page.params));
            let ((), rows) = tokio::try_join!(
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
                c.query(&page_stmt, &page_params),
            )?;
            let known = match q.paging {
                Paging::Cursor { after: Some(_), .. } => None,
                _ => total_from_page(&q.paging, rows.len()),
            };
            let mut items = rows.iter().map(to_stored).collect::<Result<Vec<_>, _>>()?;
            let wanted: Vec<i64> = items
                .iter()
                .filter(|s| groups_for.contains(&s.resource_type))
                .map(|s| s.position)
                .collect();
            let listed: Vec<i64> = match q.with_members {
                true => items.iter().map(|s| s.position).collect(),
                false => Vec::new(),
            };
            let (total, group_rows, member_rows, ()) = tokio::try_join!(
                async {
                    match known {
                        Some(total) => Ok(i64::try_from(total).unwrap_or(i64::MAX)),
                        None => c
                            .query_one(&count_stmt, &count_params)
                            .await?
                            .try_get::<_, i64>(0),
                    }
                },
                async {
                    match wanted.is_empty() {
                        true => Ok(Vec::new()),
                        false => c.query(&groups_stmt, &[&wanted]).await,
                    }
                },
                async {
                    match listed.is_empty() {
                        true => Ok(Vec::new()),
                        false => c.query(MEMBERS_OF, &[&listed]).await,
                    }
                },
                c.batch_execute("COMMIT"),
            )?;
            snapshot.finish();
            if q.with_members {
                attach_members(&mut items, &member_rows)?;
            }
            let mut found = groups_by_member(&group_rows, &wanted)?.into_iter();
            let groups = items
                .iter()
                .map(|s| match groups_for.contains(&s.resource_type) {
                    true => found.next(),
                    false => None,
                })
                .collect();
            (
                Page {
                    total: u64::try_from(total).unwrap_or(0),
                    items,
                },
                groups,
            )
        })
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
        now: String,
    ) -> Result<i64, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let key = (rtype.to_string(), id.to_string());
        let lead = {
            let mut queues = self
                .member_queues
                .lock()
                .map_err(|_| StoreError::Backend("membership queue poisoned".into()))?;
            let first = !queues.contains_key(&key);
            queues.entry(key.clone()).or_default().push(PendingChange {
                changes,
                member_types,
                expected,
                now,
                reply,
            });
            first
        };
        if lead {
            // A task of its own: it must finish the queue even if this
            // caller's request is dropped.
            let store = self.clone();
            tokio::spawn(async move { store.apply_member_queue(key).await });
        }
        answer
            .await
            .map_err(|_| StoreError::Backend("membership change dropped".into()))?
    }

    async fn groups_of(
        &self,
        member_ids: &[String],
    ) -> Result<Vec<Vec<GroupMembership>>, StoreError> {
        with_client!(self, |client| {
            let groups = client.prepare_cached(&GROUPS_BY_ID).await?;
            let rows = client.query(&groups, &[&member_ids]).await?;
            groups_by_member(&rows, member_ids)?
        })
    }
}

#[async_trait]
impl RestoreStore for PgStore {
    async fn restore(&self, mut batch: Vec<RestoredResource>) -> Result<(), StoreError> {
        let mut docs = Vec::with_capacity(batch.len());
        for r in &mut batch {
            r.write.members = None;
            docs.push(serde_json::Value::Object(r.write.data.clone()).to_string());
        }
        in_transaction!(self, |tx| {
            // Pipelined: every insert of the batch is sent before their
            // answers are awaited (one connection sends them in this order,
            // so insertion order is kept). One round trip per statement made
            // a million-user import take 40 minutes.
            let inserts = batch
                .iter()
                .zip(&docs)
                .map(|(r, data)| insert_resource(&tx, &r.write, r.version, &r.created, data));
            futures_util::future::try_join_all(inserts).await?;
        })
    }

    async fn restore_members(
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

#[async_trait]
impl RecordStore for PgStore {
    async fn record_get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        with_client!(self, |client| {
            let row = client
                .query_opt(
                    "SELECT data FROM records WHERE kind = $1 AND id = $2",
                    &[&kind, &id],
                )
                .await?;
            match row {
                None => None,
                Some(row) => Some(Record {
                    id: id.to_string(),
                    data: parse_record(&row.try_get::<_, String>(0)?)?,
                }),
            }
        })
    }

    async fn record_list(&self, kind: &str) -> Result<Vec<Record>, StoreError> {
        with_client!(self, |client| {
            let rows = client
                .query(
                    "SELECT id, data FROM records WHERE kind = $1 ORDER BY id COLLATE \"C\"",
                    &[&kind],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(Record {
                    id: row.try_get(0)?,
                    data: parse_record(&row.try_get::<_, String>(1)?)?,
                });
            }
            out
        })
    }

    async fn record_insert(&self, kind: &str, record: Record) -> Result<bool, StoreError> {
        let data = record.data.to_string();
        in_transaction!(self, |tx| {
            tx.execute(
                "INSERT INTO records (kind, id, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&kind, &record.id, &data],
            )
            .await?
                == 1
        })
    }

    async fn record_put(&self, kind: &str, record: Record) -> Result<(), StoreError> {
        let data = record.data.to_string();
        in_transaction!(self, |tx| {
            tx.execute(
                "INSERT INTO records (kind, id, data) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data",
                &[&kind, &record.id, &data],
            )
            .await?;
        })
    }

    async fn record_delete(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| {
            tx.execute(
                "DELETE FROM records WHERE kind = $1 AND id = $2",
                &[&kind, &id],
            )
            .await?
                == 1
        })
    }
}

#[cfg(feature = "testing")]
impl PgStore {
    /// For tests: runs `ANALYZE`, then shows the plans a pooled connection
    /// holds (its generic plans, with the session settings scimd gives
    /// every connection) for a point read of the resource `id` (of type
    /// `rtype`, at position `seq`), its computed groups by id and by
    /// position, and a replace of it: `(statement, EXPLAIN text)`.
    pub async fn explain_plans(
        &self,
        rtype: &str,
        id: &str,
        seq: i64,
    ) -> Result<Vec<(&'static str, String)>, StoreError> {
        let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
        let (id, rtype) = (quote(id), quote(rtype));
        let statements: [(&'static str, String, String); 4] = [
            ("point read", GET_ONE.to_string(), format!("{id}, {rtype}")),
            (
                "groups by id",
                GROUPS_BY_ID.to_string(),
                format!("ARRAY[{id}]"),
            ),
            (
                "groups by position",
                GROUPS_BY_SEQ.to_string(),
                format!("ARRAY[{seq}]::int8[]"),
            ),
            (
                "replace",
                UPDATE_RESOURCE.to_string(),
                format!(
                    "'{{k}}', '{{0}}', '{{f}}', '{{v}}', '{{NULL}}', '{{{}}}', '{{username}}', '{{v}}', 'now', '{{}}', {id}, {rtype}, NULL",
                    rtype.trim_matches('\'')
                ),
            ),
        ];
        let mut plans = Vec::new();
        with_client!(self, |client| {
            client.batch_execute("ANALYZE").await?;
            for (name, sql, args) in &statements {
                client
                    .batch_execute(&format!("PREPARE explained AS {sql}"))
                    .await?;
                let mut text = String::new();
                for message in client
                    .simple_query(&format!("EXPLAIN EXECUTE explained({args})"))
                    .await?
                {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                        text.push_str(row.get(0).unwrap_or_default());
                        text.push('\n');
                    }
                }
                client.batch_execute("DEALLOCATE explained").await?;
                plans.push((*name, text));
            }
        })?;
        Ok(plans)
    }
}

/// `delete`, a statement that deletes resources, with their side tables
/// (in the same statement); answers how many resources it deleted.
fn with_side_tables(delete: &str) -> String {
    format!(
        "WITH d AS ({delete} RETURNING seq),
              da AS (DELETE FROM attr_values a USING d WHERE a.seq = d.seq),
              du AS (DELETE FROM unique_values u USING d WHERE u.seq = d.seq)
         SELECT count(*) FROM d"
    )
}

/// A pooled connection inside a read transaction begun by hand, so that
/// `BEGIN` travels with the first query instead of costing a round trip of
/// its own. Dropped before [`ReadSnapshot::finish`] (an error, a cancelled
/// request), the connection is taken out of the pool and closed rather
/// than handed to the next caller with a transaction open.
struct ReadSnapshot {
    client: Option<deadpool_postgres::Object>,
}

impl ReadSnapshot {
    fn begin(client: deadpool_postgres::Object) -> Self {
        ReadSnapshot {
            client: Some(client),
        }
    }

    fn client(&self) -> Result<&deadpool_postgres::Object, Fail> {
        self.client
            .as_ref()
            .ok_or_else(|| Fail::Store(StoreError::Backend("read snapshot already ended".into())))
    }

    /// The transaction ended (COMMIT answered): back to the pool.
    fn finish(mut self) {
        self.client.take();
    }
}

impl Drop for ReadSnapshot {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

fn parse_record(data: &str) -> Result<serde_json::Value, Fail> {
    serde_json::from_str(data)
        .map_err(|e| Fail::Store(StoreError::Backend(format!("corrupt record: {e}"))))
}
