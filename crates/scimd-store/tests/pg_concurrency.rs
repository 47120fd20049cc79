//! The PostgreSQL store under concurrency, through the `Store` trait: at
//! PostgreSQL's default isolation (READ COMMITTED) and at SERIALIZABLE,
//! which is what CockroachDB always runs and where the engine aborts
//! colliding transactions (SQLSTATE 40001) for the store to re-run. Also the
//! operational records and concurrent start-ups (migrations), on both stores
//! where it applies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../src/testing.rs"]
#[allow(dead_code)]
mod testing;

use std::sync::Arc;

use scimd_core::schema::Registry;
use scimd_core::store::{
    Member, MemberChange, MembershipStore, ModifyError, Record, ResourceStore, ResourceWrite,
    RestoreStore, RestoredResource, Store, StoreError,
};
use scimd_store::{PgStore, SqliteStore};
use serde_json::{Map, json};

/// The URL of a fresh database, or `None` when the PostgreSQL tests are
/// skipped.
async fn fresh_database(label: &str) -> Option<String> {
    let server = match testing::shared(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))) {
        Ok(server) => server,
        Err(why) => {
            testing::unavailable(&why).unwrap();
            return None;
        }
    };
    let key = format!(
        "pg_concurrency {label} {} {:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    Some(
        server
            .database(&testing::database_name(&key))
            .await
            .unwrap(),
    )
}

/// `url` with every transaction SERIALIZABLE.
fn serializable(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20default_transaction_isolation%3Dserializable")
}

fn write(rtype: &str, id: &str, data: serde_json::Value) -> ResourceWrite {
    let registry = Registry::builtin().unwrap();
    let rt = registry.by_name(rtype).unwrap();
    let data: Map<String, serde_json::Value> = data.as_object().unwrap().clone();
    ResourceWrite {
        members: (rtype == "Group").then(Vec::new),
        member_types: vec!["User".into(), "Group".into()],
        ..ResourceWrite::derived(
            rt,
            scimd_core::changelog::Op::Create,
            id,
            data,
            "2026-01-01T00:00:00Z",
        )
    }
}

async fn races(store: Arc<dyn Store>) {
    // One userName, twenty writers: one wins, the others hear Uniqueness.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create(write(
                    "User",
                    &format!("dup-{i}"),
                    json!({"userName": "same"}),
                ))
                .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Uniqueness { attr }) => assert_eq!(attr, "username"),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(created, 1);

    // One id (chosen by the caller, as POST /Me does), twenty writers: one
    // wins, the others hear Uniqueness of `id`, never a backend error.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create(write(
                    "User",
                    "chosen",
                    json!({"userName": format!("chosen-{i}")}),
                ))
                .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Uniqueness { attr }) => assert_eq!(attr, "id"),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(created, 1);

    // 32 member adds to one group: none lost, one version bump each.
    store
        .create(write("Group", "g", json!({"displayName": "G"})))
        .await
        .unwrap();
    for i in 0..32 {
        store
            .create(write(
                "User",
                &format!("u{i}"),
                json!({"userName": format!("u{i}")}),
            ))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .change_members(
                    "Group",
                    "g",
                    vec![MemberChange::Add(vec![Member {
                        value: format!("u{i}"),
                        typ: None,
                        display: None,
                    }])],
                    vec!["User".into(), "Group".into()],
                    None,
                    test_change("2026-01-02T00:00:00Z"),
                )
                .await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (2..=33).collect::<Vec<i64>>());
    let group = store.get("Group", "g", true).await.unwrap().unwrap();
    assert_eq!(group.members.unwrap().len(), 32);
    assert_eq!(group.version, 33);
    assert_eq!(
        store.groups_of(&["u7".to_string()]).await.unwrap()[0].len(),
        1
    );

    // A mixed crowd (PostgreSQL applies queued changes to one group in one
    // transaction): good adds, unknown members, stale If-Match versions.
    // Each gets its own answer and only the good ones land.
    for i in 0..16 {
        store
            .create(write(
                "User",
                &format!("v{i}"),
                json!({"userName": format!("v{i}")}),
            ))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (value, expected) = if i < 16 {
                (format!("v{i}"), None)
            } else if i % 2 == 0 {
                (format!("nobody{i}"), None)
            } else {
                (format!("v{}", i - 16), Some(1))
            };
            let result = store
                .change_members(
                    "Group",
                    "g",
                    vec![MemberChange::Add(vec![Member {
                        value,
                        typ: None,
                        display: None,
                    }])],
                    vec!["User".into(), "Group".into()],
                    expected,
                    test_change("2026-01-03T00:00:00Z"),
                )
                .await;
            (i, result)
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(v)) if i < 16 => versions.push(v),
            (i, Err(StoreError::UnknownMember(m))) if i >= 16 && i % 2 == 0 => {
                assert_eq!(m, format!("nobody{i}"))
            }
            (i, Err(StoreError::VersionMismatch { .. })) if i >= 16 => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    versions.sort();
    assert_eq!(versions, (34..=49).collect::<Vec<i64>>());
    let group = store.get("Group", "g", true).await.unwrap().unwrap();
    assert_eq!(group.members.unwrap().len(), 48);
    assert_eq!(group.version, 49);

    // Removals, some with a stale If-Match (on PostgreSQL a batch of plain
    // adds and removes is sent pipelined, and a miss is explained after).
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let expected = (i >= 12).then_some(1);
            let result = store
                .change_members(
                    "Group",
                    "g",
                    vec![MemberChange::Remove(vec![format!("v{}", i % 12)])],
                    vec!["User".into(), "Group".into()],
                    expected,
                    test_change("2026-01-04T00:00:00Z"),
                )
                .await;
            (i, result)
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(v)) if i < 12 => versions.push(v),
            (i, Err(StoreError::VersionMismatch { current })) if i >= 12 => {
                assert!(current > 49)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    versions.sort();
    assert_eq!(versions, (50..=61).collect::<Vec<i64>>());
    let group = store.get("Group", "g", true).await.unwrap().unwrap();
    assert_eq!(group.members.unwrap().len(), 36);
    assert_eq!(group.version, 61);
    assert!(store.groups_of(&["v3".to_string()]).await.unwrap()[0].is_empty());

    // Compare-and-swap: twenty replaces expecting version 1, one winner.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .replace(
                    write(
                        "User",
                        "u0",
                        json!({"userName": "u0", "displayName": format!("{i}")}),
                    ),
                    Some(1),
                    false,
                )
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.0.version, 2);
                won += 1;
            }
            Err(StoreError::VersionMismatch { current }) => assert_eq!(current, 2),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won, 1);

    // A member deleted while others are added: the group keeps the rest.
    let deleter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .delete("User", "u1", None, Vec::new(), test_change("u1"))
                .await
        })
    };
    let adder = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .change_members(
                    "Group",
                    "g",
                    vec![MemberChange::RemoveAll],
                    vec!["User".into()],
                    None,
                    test_change("2026-01-03T00:00:00Z"),
                )
                .await
        })
    };
    deleter.await.unwrap().unwrap();
    adder.await.unwrap().unwrap();
    let group = store.get("Group", "g", true).await.unwrap().unwrap();
    assert_eq!(group.members.unwrap().len(), 0);
}

/// Issue 17: the statements of a point read, a write and the computed
/// groups stay index-driven at scale (a group of 10,000 members inside
/// another group, statistics up to date), whatever plan the statistics
/// would favour: no sequential scan, no sort of `resources`.
#[tokio::test]
async fn plans_stay_on_indexes_at_scale() {
    let Some(url) = fresh_database("plans").await else {
        return;
    };
    let store = PgStore::connect(&url, 2).await.unwrap();
    // A connection plans a statement once and keeps that plan. Plans made
    // on an empty database must still avoid sequential scans and bound every
    // index read; which index wins is a tie there (every index costs the
    // same on empty statistics), and such plans do not outlive the tables'
    // growth (`tables_that_grew_are_analysed_and_old_plans_dropped`). (The
    // replace's reads an index whole there.)
    let leading = store.index_leading_columns().await.unwrap();
    assert_eq!(leading["members_member"], "member_seq", "{leading:?}");
    for (statement, plan) in store.explain_plans("User", "none", 1).await.unwrap() {
        match statement {
            s if s.starts_with("replace") => {}
            "sequencer" => assert_linear(statement, &plan),
            _ => assert_index_driven(statement, &plan, None),
        }
    }
    let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    for chunk in users.chunks(1_000) {
        let batch = chunk
            .iter()
            .map(|id| RestoredResource {
                write: write("User", id, json!({"userName": id, "displayName": id})),
                version: 1,
                created: "2026-01-01T00:00:00Z".into(),
            })
            .collect();
        store.restore(batch).await.unwrap();
    }
    for group in ["big", "outer"] {
        store
            .create(write("Group", group, json!({"displayName": group})))
            .await
            .unwrap();
    }
    let member = |value: &str| Member {
        value: value.to_string(),
        typ: None,
        display: None,
    };
    let types = vec!["User".to_string(), "Group".to_string()];
    let everyone = users.iter().map(|u| member(u)).collect();
    store
        .restore_members("Group", "big", everyone, types.clone())
        .await
        .unwrap();
    store
        .restore_members("Group", "outer", vec![member("big")], types)
        .await
        .unwrap();
    let seq = store
        .get("User", "user-5000", false)
        .await
        .unwrap()
        .unwrap()
        .position;
    let groups = store.groups_of(&["user-5000".to_string()]).await.unwrap();
    assert_eq!(groups[0].len(), 2, "{groups:?}");
    // Statistics now say that no row waits for a position, which is when
    // the sequencer's plan had become a nested loop.
    for (statement, plan) in store.explain_plans("User", "user-5000", seq).await.unwrap() {
        match statement {
            "sequencer" => assert_linear(statement, &plan),
            _ => assert_index_driven(statement, &plan, Some(&leading)),
        }
    }
}

/// The change log's sequencer reads every waiting row (its partial index
/// whole, by design) and numbers them: no sequential scan, and no nested
/// loop, which ran its window subquery again for every waiting row.
fn assert_linear(statement: &str, plan: &str) {
    assert!(!plan.contains("Seq Scan"), "{statement}:\n{plan}");
    assert!(!plan.contains("Nested Loop"), "{statement}:\n{plan}");
}

/// No sequential scan, no index read whole (every index scan has an
/// `Index Cond`, and with `leading`, one on the index's first column: a
/// condition on a later column alone is checked entry by entry over the
/// whole index), no sort of `resources`.
fn assert_index_driven(
    statement: &str,
    plan: &str,
    leading: Option<&std::collections::HashMap<String, String>>,
) {
    assert!(!plan.contains("Seq Scan"), "{statement}:\n{plan}");
    let lines: Vec<&str> = plan.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some((_, rest)) = line.split_once(" Scan using ") else {
            continue;
        };
        let index = rest.split_whitespace().next().unwrap_or_default();
        // The scan's own condition: the next `Index Cond` before another node.
        let cond = lines[i + 1..]
            .iter()
            .take_while(|l| !l.contains("->"))
            .find_map(|l| l.trim().strip_prefix("Index Cond: "));
        let Some(cond) = cond else {
            panic!("{statement}: {index} read whole\n{plan}");
        };
        if let Some(column) = leading.and_then(|l| l.get(index)) {
            assert!(
                cond.contains(column.as_str()),
                "{statement}: {index} read whole ({cond} does not bound {column})\n{plan}"
            );
        }
    }
    assert!(
        !plan.contains("Sort Key: r.") && !plan.contains("Sort Key: x."),
        "{statement}:\n{plan}"
    );
}

/// Restores `count` users named `{prefix}0`, `{prefix}1`, ... into `store`.
async fn restore_users(store: &PgStore, prefix: &str, count: usize) {
    let users: Vec<RestoredResource> = (0..count)
        .map(|i| RestoredResource {
            write: write(
                "User",
                &format!("{prefix}{i}"),
                json!({"userName": format!("{prefix}{i}")}),
            ),
            version: 1,
            created: "2026-01-01T00:00:00Z".into(),
        })
        .collect();
    for batch in users.chunks(1_000) {
        store.restore(batch.to_vec()).await.unwrap();
    }
}

/// A plain connection to `url`, for reading and changing what the test
/// checks behind the store's back.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Waits, at most `secs` seconds, until `query` (one int8) is at least
/// `at_least`; else fails, saying `what` did not happen.
async fn wait_for(
    admin: &tokio_postgres::Client,
    query: &str,
    at_least: i64,
    secs: u64,
    what: &str,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while admin.query_one(query, &[]).await.unwrap().get::<_, i64>(0) < at_least {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Issue 17: statistics taken on empty tables tie every index, and a plan
/// made from them (a point read through `resources_type`: the whole type
/// read per GET) lasted as long as its connection. Once a table has grown
/// past what it held when last analysed, scimd analyses it, and connections
/// opened before are replaced, not reused.
#[tokio::test]
async fn tables_that_grew_are_analysed_and_old_plans_dropped() {
    let Some(url) = fresh_database("statistics").await else {
        return;
    };
    let store = PgStore::connect(&url, 2).await.unwrap();
    let admin = admin(&url).await;
    // Analysed while empty, as `vacuumdb --analyze` on a new install would.
    admin.batch_execute("ANALYZE").await.unwrap();
    assert!(store.get("User", "nobody", false).await.unwrap().is_none());
    let before = store.backend_pid().await.unwrap();
    restore_users(&store, "s", 3_000).await;
    wait_for(
        &admin,
        "SELECT reltuples::int8 FROM pg_class WHERE relname = 'resources'",
        3_000,
        30,
        "resources not analysed 30 s after growing from 0 to 3,000 rows",
    )
    .await;
    // The connection that planned on empty statistics is not handed out
    // again. The store marks older plans stale once its ANALYZE returned,
    // a moment after the statistics above became visible: up to 5 s for it
    // (until four connections in a row are others: with a pool of two, the
    // other one may be handed out before that moment too), then it stays out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut others_in_a_row = 0;
    while others_in_a_row < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the connection planned on empty statistics is still handed out"
        );
        if store.backend_pid().await.unwrap() == before {
            others_in_a_row = 0;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        } else {
            others_in_a_row += 1;
        }
    }
    for _ in 0..8 {
        assert_ne!(store.backend_pid().await.unwrap(), before);
    }
}

/// A new database's tables are analysed at once: without statistics, the
/// planner's guess of rows per key sized the hash tables of the groups walk
/// that every point read clears (a GET by id spent a third of PostgreSQL's
/// time on it while `members` was empty and never analysed).
#[tokio::test]
async fn tables_never_analysed_are_analysed_at_start() {
    let Some(url) = fresh_database("statistics-start").await else {
        return;
    };
    let _store = PgStore::connect(&url, 1).await.unwrap();
    let admin = admin(&url).await;
    wait_for(
        &admin,
        "SELECT reltuples::int8 FROM pg_class WHERE relname = 'members'",
        0,
        20,
        "members not analysed 20 s after the store connected",
    )
    .await;
}

/// Changes are not growth: a steady load of PATCHes rewrote every row of
/// `resources` every few seconds, and counting changes (not rows) analysed
/// it and replaced the whole pool each time (every connection forked again,
/// every statement planned again).
#[tokio::test]
async fn tables_that_only_change_keep_their_connections() {
    let Some(url) = fresh_database("statistics-updates").await else {
        return;
    };
    {
        let filler = PgStore::connect(&url, 1).await.unwrap();
        restore_users(&filler, "u", 3_000).await;
    }
    let admin = admin(&url).await;
    // The filler's inserts reach the statistics a moment after it ends; an
    // ANALYZE before that would see them counted again afterwards.
    let counted = |column: &str| {
        format!("SELECT {column} FROM pg_stat_user_tables WHERE relname = 'resources'")
    };
    wait_for(
        &admin,
        &counted("n_live_tup"),
        3_000,
        60,
        "inserts never counted",
    )
    .await;
    admin.batch_execute("ANALYZE").await.unwrap();
    let store = PgStore::connect(&url, 1).await.unwrap();
    let before = store.backend_pid().await.unwrap();
    // Every row changed twice over: as many changes as a table of twice its
    // size would have grown by.
    for _ in 0..2 {
        admin
            .batch_execute("UPDATE resources SET modified = modified")
            .await
            .unwrap();
    }
    // Once the statistics count the changes, two checks of the tables.
    wait_for(
        &admin,
        &counted("n_tup_upd"),
        6_000,
        60,
        "updates never counted",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        store.backend_pid().await.unwrap(),
        before,
        "the pool's connection was replaced although no table grew"
    );
}

#[tokio::test]
async fn races_at_read_committed() {
    let Some(url) = fresh_database("read committed").await else {
        return;
    };
    races(Arc::new(PgStore::connect(&url, 8).await.unwrap())).await;
}

#[tokio::test]
async fn races_at_serializable_are_retried() {
    let Some(url) = fresh_database("serializable").await else {
        return;
    };
    races(Arc::new(
        PgStore::connect(&serializable(&url), 8).await.unwrap(),
    ))
    .await;
}

/// Creates `users` (userName, title) at once through `store`: each create's
/// id (`{userName}-{i}`) and outcome.
async fn create_at_once(
    store: &Arc<PgStore>,
    users: Vec<(String, String)>,
) -> Vec<(String, (String, String), Result<(), StoreError>)> {
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(i, (name, title))| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("{name}-{i}");
                let w = write("User", &id, json!({"userName": name, "title": title}));
                let result = store.create(w).await.map(|_| ());
                (id, (name, title), result)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// How many transactions last wrote the resources `ids` (their rows'
/// `xmin`).
async fn transactions(admin: &tokio_postgres::Client, ids: &[&str]) -> i64 {
    admin
        .query_one(
            "SELECT count(DISTINCT xmin::text) FROM resources WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0)
}

/// Issue 17: creates queued together are written together, in one
/// statement (so one transaction: their rows share `xmin`), and each keeps
/// its own index rows, unique value and change-log entry. A taken userName
/// among them fails only its own create.
#[tokio::test]
async fn creates_written_together_keep_their_own_rows() {
    let Some(url) = fresh_database("together").await else {
        return;
    };
    // A pool of 8: one create runner.
    let store = Arc::new(PgStore::connect(&url, 8).await.unwrap());
    let admin = admin(&url).await;
    let users = |from: usize, to: usize| -> Vec<(String, String)> {
        (from..to)
            .map(|i| (format!("u{i}"), format!("title {}", i * 7 % 40)))
            .collect()
    };
    let mut wave = users(0, 40);
    let first = create_at_once(&store, wave.clone()).await;
    assert!(first.iter().all(|(_, _, r)| r.is_ok()), "{first:?}");
    let ids: Vec<&str> = first.iter().map(|(id, _, _)| id.as_str()).collect();
    let together = transactions(&admin, &ids).await;
    assert!(together < 10, "40 creates in {together} transactions");

    // Three creates of one new userName and one taken, among others.
    wave = users(40, 60);
    wave.extend([("u50", "a"), ("u50", "b"), ("u3", "c")].map(|(n, t)| (n.into(), t.into())));
    let second = create_at_once(&store, wave).await;
    let refused: Vec<_> = second.iter().filter(|(_, _, r)| r.is_err()).collect();
    assert_eq!(refused.len(), 3, "{second:?}");
    for (_, _, r) in &refused {
        assert!(
            matches!(r, Err(StoreError::Uniqueness { attr }) if attr == "username"),
            "{r:?}"
        );
    }

    // Each resource has its own rows: title and userName as it was sent.
    for (id, (name, title), result) in first.iter().chain(&second) {
        if result.is_err() {
            continue;
        }
        own_rows(&admin, id, name, title).await;
        let logged: i64 = admin
            .query_one(
                "SELECT count(*) FROM change_log
                  WHERE resource_id = $1 AND op = 'create' AND version_after = 1",
                &[id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(logged, 1, "{id}");
    }
}

/// Sets `attr` of `rtype` `id` to `value` through `store.modify`, as a
/// PATCH does (a compare-and-swap write made from what the store holds).
async fn set_attribute(
    store: Arc<PgStore>,
    id: String,
    attr: &'static str,
    value: String,
) -> Result<Option<scimd_core::store::Modified>, ModifyError> {
    let change: scimd_core::store::Modification = Box::new(move |old| {
        let mut data = old.data.clone();
        data.insert(attr.into(), json!(value));
        let registry = Registry::builtin().unwrap();
        Ok(Some(ResourceWrite::derived(
            registry.by_name("User").unwrap(),
            scimd_core::changelog::Op::Patch,
            &old.id,
            data,
            "2026-01-01T00:01:00Z",
        )))
    });
    store.modify("User", &id, true, change).await
}

/// `id`'s index rows of title and userName, and its unique userName, are
/// `title` and `name`, and no other's.
async fn own_rows(admin: &tokio_postgres::Client, id: &str, name: &str, title: &str) {
    let rows = admin
        .query(
            "SELECT a.key, a.s FROM attr_values a JOIN resources r USING (seq)
                  WHERE r.id = $1 AND a.key IN ('title', 'username') ORDER BY a.key",
            &[&id],
        )
        .await
        .unwrap();
    let rows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        rows,
        [
            ("title".into(), title.to_string()),
            ("username".into(), name.to_string())
        ],
        "{id}"
    );
    let unique: Vec<String> = admin
        .query(
            "SELECT u.value FROM unique_values u JOIN resources r USING (seq)
                  WHERE r.id = $1 AND u.key = 'username'",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(unique, [name], "{id}");
}

/// Issue 17: PATCHes of different resources queued together are written
/// together, in one statement (their new rows share `xmin`), and each keeps
/// its own index rows, unique values, version, change-log entry and
/// computed groups. A userName taken by another fails only its own change;
/// two changes of one resource are both applied, one after the other.
#[tokio::test]
async fn changes_written_together_keep_their_own_rows() {
    let Some(url) = fresh_database("changes together").await else {
        return;
    };
    // A pool of 8: one runner.
    let store = Arc::new(PgStore::connect(&url, 8).await.unwrap());
    let admin = admin(&url).await;
    for i in 0..40 {
        let w = write(
            "User",
            &format!("u{i}"),
            json!({"userName": format!("u{i}")}),
        );
        store.create(w).await.unwrap();
    }
    let mut group = write("Group", "g", json!({"displayName": "g"}));
    group.members = Some(vec![Member {
        value: "u5".into(),
        typ: None,
        display: None,
    }]);
    store.create(group).await.unwrap();

    let at_once = |changes: Vec<(String, &'static str, String)>| {
        let store = store.clone();
        async move {
            let tasks: Vec<_> = changes
                .into_iter()
                .map(|(id, attr, value)| {
                    tokio::spawn(set_attribute(store.clone(), id, attr, value))
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };
    let first = at_once(
        (0..40)
            .map(|i| (format!("u{i}"), "title", format!("t{i}")))
            .collect(),
    )
    .await;
    for (i, r) in first.iter().enumerate() {
        let (stored, groups) = r.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(stored.version, 2, "u{i}");
        assert_eq!(stored.data["title"], json!(format!("t{i}")));
        let groups: Vec<&str> = groups
            .iter()
            .flatten()
            .map(|g| g.group_id.as_str())
            .collect();
        assert_eq!(groups, if i == 5 { vec!["g"] } else { vec![] }, "u{i}");
    }
    for i in 0..40 {
        own_rows(&admin, &format!("u{i}"), &format!("u{i}"), &format!("t{i}")).await;
    }
    let ids: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let together = transactions(&admin, &ids).await;
    assert!(together < 10, "40 changes in {together} transactions");

    // A rename to a taken userName among others, and two changes of u30.
    let mut wave: Vec<(String, &'static str, String)> = (0..20)
        .map(|i| (format!("u{i}"), "title", format!("s{i}")))
        .collect();
    wave.push(("u20".into(), "userName", "u21".into()));
    wave.push(("u22".into(), "userName", "renamed".into()));
    wave.push(("u30".into(), "nickName", "a".into()));
    wave.push(("u30".into(), "title", "s30".into()));
    let second = at_once(wave).await;
    for (i, r) in second.iter().enumerate() {
        match i {
            20 => assert!(
                matches!(r, Err(ModifyError::Store(StoreError::Uniqueness { attr })) if attr == "username"),
                "{r:?}"
            ),
            _ => assert!(matches!(r, Ok(Some(_))), "{i}: {r:?}"),
        }
    }

    // Renames written together (unique values removed and added by
    // ordinal), among other changes.
    let mut wave: Vec<(String, &'static str, String)> = (31..40)
        .map(|i| (format!("u{i}"), "userName", format!("r{i}")))
        .collect();
    wave.extend((0..10).map(|i| (format!("u{i}"), "title", format!("w{i}"))));
    let third = at_once(wave).await;
    assert!(third.iter().all(|r| matches!(r, Ok(Some(_)))), "{third:?}");

    // Each resource as its changes left it, with only its own rows.
    let expect = |i: usize| -> (String, String, i64) {
        match i {
            0..10 => (format!("u{i}"), format!("w{i}"), 4),
            10..20 => (format!("u{i}"), format!("s{i}"), 3),
            22 => ("renamed".into(), format!("t{i}"), 3),
            30 => (format!("u{i}"), "s30".into(), 4),
            31..40 => (format!("r{i}"), format!("t{i}"), 3),
            _ => (format!("u{i}"), format!("t{i}"), 2),
        }
    };
    for i in 0..40 {
        let id = format!("u{i}");
        let (name, title, version) = expect(i);
        own_rows(&admin, &id, &name, &title).await;
        let row = admin
            .query_one(
                "SELECT version, (SELECT count(*) FROM change_log WHERE resource_id = $1
                                     AND version_after > 1) FROM resources WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        let (stored, logged): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!((stored, logged), (version, version - 1), "{id}");
    }
    let nick = store.get("User", "u30", false).await.unwrap().unwrap();
    assert_eq!(nick.data["nickName"], json!("a"));
}

/// A delete without a version that waited for a write of the same
/// resource in flight removes what that write committed: its new index rows
/// and unique values, so that the userName it took is free again. (A
/// statement that waits for a row's lock still reads the other tables as
/// they were when it began.)
#[tokio::test]
async fn a_delete_that_waited_for_a_write_leaves_nothing_of_it() {
    let Some(url) = fresh_database("delete after a write").await else {
        return;
    };
    let store = Arc::new(PgStore::connect(&url, 8).await.unwrap());
    store
        .create(write("User", "u", json!({"userName": "old"})))
        .await
        .unwrap();
    let mut holder = admin(&url).await;
    let watcher = admin(&url).await;
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    let hold = holder.transaction().await.unwrap();
    hold.execute("SELECT 1 FROM resources WHERE id = 'u' FOR UPDATE", &[])
        .await
        .unwrap();
    let rename = tokio::spawn(set_attribute(
        store.clone(),
        "u".into(),
        "userName",
        "new".into(),
    ));
    wait_for(
        &watcher,
        waiting,
        1,
        10,
        "the rename did not wait for the row",
    )
    .await;
    let delete = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .delete("User", "u", None, Vec::new(), test_change("u"))
                .await
        })
    };
    wait_for(
        &watcher,
        waiting,
        2,
        10,
        "the delete did not wait for the row",
    )
    .await;
    hold.commit().await.unwrap();
    assert!(rename.await.unwrap().unwrap().is_some());
    delete.await.unwrap().unwrap();
    let left: i64 = watcher
        .query_one(
            "SELECT (SELECT count(*) FROM attr_values WHERE seq NOT IN (SELECT seq FROM resources))
                  + (SELECT count(*) FROM unique_values WHERE seq NOT IN (SELECT seq FROM resources))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "side rows of the deleted user were left behind");
    store
        .create(write("User", "v", json!({"userName": "new"})))
        .await
        .expect("the deleted user's new userName is free again");
}

#[tokio::test]
async fn races_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    races(Arc::new(
        SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn servers_starting_at_once_migrate_once() {
    let Some(url) = fresh_database("migrations").await else {
        return;
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { PgStore::connect(&url, 2).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let store = PgStore::connect(&url, 2).await.unwrap();
    store
        .create(write("User", "a", json!({"userName": "a"})))
        .await
        .unwrap();
}

async fn records(store: &dyn Store) {
    let rec = |id: &str, v: i64| Record {
        id: id.into(),
        data: json!({"v": v}),
    };
    assert!(
        store
            .record_insert("client", rec("b", 1), test_change("record"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_insert("client", rec("b", 2), test_change("record"))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_insert("client", rec("B", 1), test_change("record"))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_insert("client", rec("a", 1), test_change("record"))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_insert("setting", rec("a", 9), test_change("record"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.record_get("client", "b").await.unwrap(),
        Some(rec("b", 1))
    );
    store
        .record_put("client", rec("b", 3), test_change("record"))
        .await
        .unwrap();
    store
        .record_put("client", rec("c", 4), test_change("record"))
        .await
        .unwrap();
    let ids: Vec<String> = store
        .record_list("client")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["B", "a", "b", "c"], "byte order, as SQLite");
    assert_eq!(
        store.record_get("client", "b").await.unwrap(),
        Some(rec("b", 3))
    );
    assert!(
        store
            .record_delete("client", "b", test_change("b"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_delete("client", "b", test_change("b"))
            .await
            .unwrap()
    );
    assert_eq!(store.record_get("client", "b").await.unwrap(), None);
    assert_eq!(store.record_list("setting").await.unwrap(), [rec("a", 9)]);
}

#[tokio::test]
async fn records_on_postgres() {
    let Some(url) = fresh_database("records").await else {
        return;
    };
    records(&PgStore::connect(&url, 2).await.unwrap()).await;
}

#[tokio::test]
async fn records_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    records(&SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap()).await;
}

/// Pruning keeps every entry a started stream has not passed, whatever
/// floor its caller worked out before (the server's, from the streams it
/// listed when a pruning run began: a stream started later was not in it).
async fn pruning_spares_what_streams_have_not_passed(store: &dyn Store) {
    let user = |i: usize| {
        write(
            "User",
            &format!("p{i}"),
            json!({"userName": format!("p{i}")}),
        )
    };
    for i in 0..3 {
        store.create(user(i)).await.unwrap();
    }
    let started = store.change_head().await.unwrap();
    store.stream_start("late", started).await.unwrap();
    for i in 3..8 {
        store.create(user(i)).await.unwrap();
    }
    // On PostgreSQL, positions are given by the sequencer, which reading
    // the head runs.
    store.change_head().await.unwrap();
    let keep_one = scimd_core::changelog::Retention {
        max_age_days: 0,
        max_entries: 1,
    };
    store.prune_changes(keep_one, i64::MAX).await.unwrap();
    let left: Vec<i64> = store
        .follow(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    let undelivered: Vec<i64> = (started + 1..=started + 5).collect();
    assert_eq!(left, undelivered, "the stream started at {started}");
    store.stream_forget("late").await.unwrap();
    store.prune_changes(keep_one, i64::MAX).await.unwrap();
    assert_eq!(store.follow(0, 100).await.unwrap().len(), 1);
}

#[tokio::test]
async fn pruning_spares_streams_on_postgres() {
    let Some(url) = fresh_database("pruning").await else {
        return;
    };
    pruning_spares_what_streams_have_not_passed(&PgStore::connect(&url, 2).await.unwrap()).await;
}

#[tokio::test]
async fn pruning_spares_streams_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    pruning_spares_what_streams_have_not_passed(
        &SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap(),
    )
    .await;
}

/// `sslmode=require`: TLS with the server's certificate verified (refused
/// when its CA is not trusted), and the sessions are encrypted.
#[tokio::test]
async fn tls_when_the_url_asks_for_it() {
    let server = match testing::shared(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))) {
        Ok(server) => server,
        Err(why) => {
            testing::unavailable(&why).unwrap();
            return;
        }
    };
    let Some(ca) = server.ca_file() else {
        eprintln!("TLS test skipped: the server of SCIMD_TEST_DATABASE_URL was not started here");
        return;
    };
    let url = fresh_database("tls").await.unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let tls_url = format!("{url}{sep}sslmode=require");
    let untrusted = PgStore::connect_with(&tls_url, 2, None).await;
    let Err(e) = untrusted else {
        panic!("a certificate from an unknown CA was accepted")
    };
    assert!(e.to_string().contains("certificate"), "{e}");
    let store = PgStore::connect_with(&tls_url, 2, Some(ca)).await.unwrap();
    store
        .create(write("User", "tls-user", json!({"userName": "over-tls"})))
        .await
        .unwrap();
    assert!(
        store
            .get("User", "tls-user", false)
            .await
            .unwrap()
            .is_some()
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let encrypted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE s.ssl AND a.datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "no encrypted session");
    let plain: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid() AND NOT s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 1, "a URL without sslmode=require stays plain");
}

/// A change to log with a test's write (its fields do not matter here).
fn test_change(id: &str) -> scimd_core::changelog::Change {
    scimd_core::changelog::Change::new(
        scimd_core::changelog::Op::Patch,
        "Group",
        id,
        "2026-01-02T00:00:00Z",
    )
}

/// A reader that follows the change log ("every entry after the last
/// position I saw") while writers on two stores of one database (two
/// replicas) commit concurrently sees every change exactly once, in
/// increasing positions, and each resource's changes in commit order. A
/// log read by sequence value would skip entries: a transaction that took
/// a smaller value can commit after the reader passed it.
async fn change_log_followed_without_a_skip(replicas: [Arc<dyn Store>; 2], writers: usize) {
    use scimd_core::changelog::AuditQuery;
    const EACH: usize = 40;
    let writer_count = writers;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = replicas[1].clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = store
                    .changes(AuditQuery {
                        filters: scimd_core::changelog::AuditFilters {
                            resource_type: Some("User".into()),
                            ..Default::default()
                        },
                        after,
                        limit: 1000,
                    })
                    .await
                    .unwrap();
                if let Some(last) = page.last() {
                    after = Some(last.position);
                }
                let empty = page.is_empty();
                seen.extend(page);
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..writer_count {
        let store = replicas[w % 2].clone();
        writers.push(tokio::spawn(async move {
            for n in 0..EACH {
                let id = format!("u{w}-{n}");
                store
                    .create(write("User", &id, json!({"userName": id})))
                    .await
                    .unwrap();
                // A second change of the same resource, from the other
                // half of the writers' point of view: it must come after.
                let mut replacement = write("User", &id, json!({"userName": id, "title": "t"}));
                replacement.change.op = scimd_core::changelog::Op::Replace;
                store.replace(replacement, None, false).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let positions: Vec<i64> = seen.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "positions not increasing"
    );
    assert_eq!(
        seen.len(),
        writer_count * EACH * 2,
        "the follower saw {} of {} changes",
        seen.len(),
        writer_count * EACH * 2
    );
    let mut per_resource: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for e in &seen {
        per_resource
            .entry(e.resource_id.as_str())
            .or_default()
            .push(e.op.as_str());
    }
    assert_eq!(per_resource.len(), writer_count * EACH);
    for (id, ops) in per_resource {
        assert_eq!(ops, ["create", "replace"], "{id}");
    }
}

#[tokio::test]
async fn change_log_followed_across_replicas_at_read_committed() {
    let Some(url) = fresh_database("change log rc").await else {
        return;
    };
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&url, 8).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&url, 8).await.unwrap());
    change_log_followed_without_a_skip([a, b], 24).await;
}

/// Fewer writers at SERIALIZABLE: 24 writers of one table on 16
/// connections exhaust the store's retries with or without the log.
#[tokio::test]
async fn change_log_followed_across_replicas_at_serializable() {
    let Some(url) = fresh_database("change log serializable").await else {
        return;
    };
    let url = serializable(&url);
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&url, 8).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&url, 8).await.unwrap());
    change_log_followed_without_a_skip([a, b], 8).await;
}

#[tokio::test]
async fn change_log_followed_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap());
    change_log_followed_without_a_skip([store.clone(), store], 24).await;
}

/// Two scimd processes on one database, each remembering what it last
/// wrote of a user (`pg/recent.rs`) and modifying it in turn: every
/// modification counts one up from the nickName it is given, so one made
/// from a stale memory of the user would lose the other's count.
#[tokio::test]
async fn modifications_through_two_stores_see_each_others_writes() {
    let Some(url) = fresh_database("two stores").await else {
        return;
    };
    let a = PgStore::connect(&url, 2).await.unwrap();
    let b = PgStore::connect(&url, 2).await.unwrap();
    a.create(write(
        "User",
        "shared",
        json!({"userName": "shared", "nickName": "0"}),
    ))
    .await
    .unwrap();
    let rounds: i64 = 24;
    for i in 0..rounds {
        // A A B B A A ...: each store's memory of the user goes stale
        // once in two of its turns.
        let store = if (i / 2) % 2 == 0 { &a } else { &b };
        let change: scimd_core::store::Modification = Box::new(|old| {
            let n: i64 = old.data["nickName"].as_str().unwrap().parse().unwrap();
            let mut data = old.data.clone();
            data.insert("nickName".into(), json!((n + 1).to_string()));
            let def = Registry::builtin().unwrap();
            let rt = def.by_name("User").unwrap();
            Ok(Some(ResourceWrite::derived(
                rt,
                scimd_core::changelog::Op::Patch,
                &old.id,
                data,
                "2026-01-01T00:01:00Z",
            )))
        });
        let (stored, _) = store
            .modify("User", "shared", false, change)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.data["nickName"], json!((i + 1).to_string()));
        assert_eq!(stored.version, i + 2);
    }
    for store in [&a, &b] {
        let now = store.get("User", "shared", false).await.unwrap().unwrap();
        assert_eq!(now.data["nickName"], json!(rounds.to_string()));
    }
}

/// A write naming an owner (`x-scimd-owner`: a FIDO device's `userId`) is
/// refused when the owner is gone, checked in the write's own transaction.
async fn owners_are_checked_in_the_write(store: &dyn Store) {
    store
        .create(write("User", "owner", json!({"userName": "owner"})))
        .await
        .unwrap();
    let device = |id: &str, owner: &str| write("FidoDevice", id, json!({"userId": owner}));
    store.create(device("d1", "owner")).await.unwrap();
    match store.create(device("d2", "nobody")).await {
        Err(StoreError::UnknownOwner(id)) => assert_eq!(id, "nobody"),
        other => panic!("a device of no user: {other:?}"),
    }
    match store.replace(device("d1", "nobody"), None, false).await {
        Err(StoreError::UnknownOwner(id)) => assert_eq!(id, "nobody"),
        other => panic!("a device moved to no user: {other:?}"),
    }
    assert!(
        store
            .get("FidoDevice", "d2", false)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn owners_are_checked_in_the_write_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    owners_are_checked_in_the_write(&SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap())
        .await;
}

#[tokio::test]
async fn owners_are_checked_in_the_write_on_postgres() {
    let Some(url) = fresh_database("owners").await else {
        return;
    };
    let store = PgStore::connect(&url, 4).await.unwrap();
    owners_are_checked_in_the_write(&store).await;

    // A device created while its owner's delete holds the owner's row waits
    // for that delete, then finds the owner gone (without the lock, it
    // would be written beside a delete that no longer sees it).
    store
        .create(write("User", "leaving", json!({"userName": "leaving"})))
        .await
        .unwrap();
    let mut admin = admin(&url).await;
    let tx = admin.transaction().await.unwrap();
    tx.query(
        "SELECT 1 FROM resources WHERE id = 'leaving' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let store = Arc::new(store);
    let creating = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .create(write("FidoDevice", "late", json!({"userId": "leaving"})))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !creating.is_finished(),
        "the create waits for the owner's delete"
    );
    tx.execute("DELETE FROM resources WHERE id = 'leaving'", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    match creating.await.unwrap() {
        Err(StoreError::UnknownOwner(id)) => assert_eq!(id, "leaving"),
        other => panic!("a device of a deleted user: {other:?}"),
    }
}
