//! The SQLite writer commits concurrent writes together, first without a
//! savepoint per write; a batch in which one write fails runs again with
//! savepoints. Whatever the batching, every write must be applied whole or
//! not at all, and each caller must get its own answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use scimd_core::query::{Paging, Query, resolve_filter};
use scimd_core::schema::{Registry, ResourceTypeDef};
use scimd_core::store::{ResourceStore, ResourceWrite, StoreError};
use scimd_filter::parse_filter;
use scimd_store::SqliteStore;
use serde_json::{Map, Value, json};

fn write(rt: &ResourceTypeDef, id: &str, user_name: &str, family: &str) -> ResourceWrite {
    let data: Map<String, Value> = json!({
        "userName": user_name,
        "name": {"familyName": family},
        "emails": [{"value": format!("{id}@example.com"), "type": "work"}],
    })
    .as_object()
    .unwrap()
    .clone();
    ResourceWrite::derived(
        rt,
        scimd_core::changelog::Op::Create,
        id,
        data,
        "2026-01-01T00:00:00Z",
    )
}

/// Ids of the users matching `filter` (all users if empty).
async fn ids_matching(store: &SqliteStore, rt: &ResourceTypeDef, filter: &str) -> Vec<String> {
    let cond =
        (!filter.is_empty()).then(|| resolve_filter(rt, &parse_filter(filter).unwrap()).unwrap());
    let page = store
        .query(Query {
            resource_types: vec!["User".into()],
            filter: cond,
            sort: None,
            paging: Paging::Index {
                start: 1,
                count: 10_000,
            },
            with_members: false,
        })
        .await
        .unwrap();
    page.items.into_iter().map(|r| r.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_writes_in_a_batch_leave_nothing_and_spoil_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap());
    let registry = Registry::builtin().unwrap();
    let rt = Arc::new(registry.by_name("User").unwrap().clone());
    // Created first, then replaced concurrently below with a stale version.
    let anchor = store
        .create(write(&rt, "anchor", "anchor", "Anchor"))
        .await
        .unwrap();
    assert_eq!(anchor.version, 1);
    // A write that fails alone in its batch is rolled back and left out,
    // without running the batch again.
    let taken = store.create(write(&rt, "copy", "anchor", "Copy")).await;
    assert!(
        matches!(taken, Err(StoreError::Uniqueness { .. })),
        "{taken:?}"
    );
    let stale = store
        .replace(
            write(&rt, "anchor", "anchor-changed", "Changed"),
            Some(7),
            false,
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::VersionMismatch { .. })),
        "{stale:?}"
    );
    assert!(store.get("User", "copy", false).await.unwrap().is_none());
    assert_eq!(store.batches_rerun(), 0);

    // id -> userName of every acknowledged create.
    let mut created: BTreeMap<String, String> = BTreeMap::new();
    let mut refused: Vec<String> = Vec::new();
    let mut round = 0;
    while round < 5 || (store.batches_rerun() == 0 && round < 200) {
        let mut tasks = Vec::new();
        for i in 0..48 {
            let (store, rt) = (Arc::clone(&store), Arc::clone(&rt));
            tasks.push(tokio::spawn(async move {
                let id = format!("r{round}-{i}");
                match i % 6 {
                    // A third of them want one name: one wins per round.
                    0 | 3 => {
                        let name = format!("taken-{round}");
                        let r = store.create(write(&rt, &id, &name, "Dup")).await;
                        (id, name, r.map(|_| ()))
                    }
                    // A replace that cannot apply (stale If-Match).
                    5 => {
                        let r = store
                            .replace(
                                write(&rt, "anchor", "anchor-changed", "Changed"),
                                Some(7),
                                false,
                            )
                            .await;
                        (id, String::new(), r.map(|_| ()))
                    }
                    _ => {
                        let name = format!("user-{round}-{i}");
                        let r = store.create(write(&rt, &id, &name, "Solo")).await;
                        (id, name, r.map(|_| ()))
                    }
                }
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let (id, name, outcome) = task.await.unwrap();
            match (outcome, name.as_str()) {
                (Ok(()), "") => panic!("a stale replace was applied"),
                (Err(StoreError::VersionMismatch { .. }), "") => {}
                (Ok(()), name) => {
                    if name.starts_with("taken-") {
                        winners += 1;
                    }
                    created.insert(id, name.to_string());
                }
                (Err(StoreError::Uniqueness { .. }), name) if name.starts_with("taken-") => {
                    refused.push(id);
                }
                (Err(e), name) => panic!("{name}: unexpected {e:?}"),
            }
        }
        assert_eq!(
            winners, 1,
            "round {round}: one create of the shared name wins"
        );
        round += 1;
    }
    assert!(
        store.batches_rerun() > 0,
        "no batch ever held a failing write: the path under test did not run"
    );

    // Exactly the acknowledged creates exist, each whole (document, index
    // rows, unique value), and the failed ones left nothing behind.
    let all = ids_matching(&store, &rt, "").await;
    assert_eq!(
        all.len(),
        created.len() + 1,
        "one resource per acknowledged create, plus the anchor"
    );
    assert_eq!(
        ids_matching(&store, &rt, "userName pr").await.len(),
        all.len()
    );
    for id in &refused {
        assert!(
            store.get("User", id, false).await.unwrap().is_none(),
            "{id} was refused"
        );
    }
    for (id, name) in &created {
        let stored = store
            .get("User", id, false)
            .await
            .unwrap()
            .expect("acknowledged");
        assert_eq!(stored.data["userName"], json!(name));
        assert_eq!(
            ids_matching(&store, &rt, &format!("userName eq \"{name}\"")).await,
            vec![id.clone()]
        );
        assert_eq!(
            ids_matching(
                &store,
                &rt,
                &format!("emails.value eq \"{id}@example.com\"")
            )
            .await,
            vec![id.clone()]
        );
    }
    let losers = ids_matching(&store, &rt, "name.familyName eq \"Dup\"").await;
    assert_eq!(
        losers.len(),
        round,
        "one create per round of the shared name"
    );
    // The refused replaces changed nothing.
    let anchor = store.get("User", "anchor", false).await.unwrap().unwrap();
    assert_eq!(
        (anchor.version, anchor.data["userName"].clone()),
        (1, json!("anchor"))
    );
    assert!(
        ids_matching(&store, &rt, "userName eq \"anchor-changed\"")
            .await
            .is_empty()
    );
    // A unique value left by a failed create would refuse this name.
    for r in 0..round {
        let name = format!("taken-{r}");
        let owner = ids_matching(&store, &rt, &format!("userName eq \"{name}\"")).await;
        assert_eq!(owner.len(), 1);
    }
}

/// `modify` reads and writes in one step of the writer: concurrent
/// read-modify-writes of one resource all apply (none lost, none refused as
/// a conflict), and one that refuses or declines writes nothing, also when
/// it shares a batch with others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_modifications_of_one_resource_all_apply() {
    use scimd_core::error::ScimError;
    use scimd_core::store::{Modification, ModifyError};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap());
    let registry = Registry::builtin().unwrap();
    let rt = Arc::new(registry.by_name("User").unwrap().clone());
    store
        .create(write(&rt, "counter", "counter", "0"))
        .await
        .unwrap();
    // Each task adds one to the number kept in name.familyName; every
    // fourth also has a refusing and a declining modification in flight.
    let increment = |rt: Arc<ResourceTypeDef>| -> Modification {
        Box::new(move |old| {
            let n: u64 = old.data["name"]["familyName"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let mut data = old.data.clone();
            data["name"]["familyName"] = Value::String((n + 1).to_string());
            Ok(Some(ResourceWrite::derived(
                &rt,
                scimd_core::changelog::Op::Create,
                &old.id,
                data,
                "2026-01-02T00:00:00Z",
            )))
        })
    };
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (store, rt) = (Arc::clone(&store), Arc::clone(&rt));
        let change = match i % 4 {
            1 => Box::new(|_: &_| Err(ScimError::InvalidValue("no".into()))) as Modification,
            2 => Box::new(|_: &_| Ok(None)) as Modification,
            _ => increment(Arc::clone(&*rt)),
        };
        tasks.push(tokio::spawn(async move {
            (i % 4, store.modify("User", "counter", false, change).await)
        }));
    }
    let mut applied = 0;
    for task in tasks {
        match task.await.unwrap() {
            (1, Err(ModifyError::Refused(ScimError::InvalidValue(_)))) => {}
            (2, Ok(None)) => {}
            (_, Ok(Some((stored, groups)))) => {
                assert!(groups.is_none());
                applied += 1;
                assert!(stored.version > 1);
            }
            (kind, other) => panic!("modification of kind {kind}: {other:?}"),
        }
    }
    assert_eq!(applied, 32);
    let counter = store.get("User", "counter", false).await.unwrap().unwrap();
    assert_eq!(
        counter.data["name"]["familyName"], "32",
        "an increment was lost"
    );
    assert_eq!(
        counter.version, 33,
        "a refusal or a decline bumped the version"
    );
    // The index follows the document.
    assert_eq!(
        ids_matching(&store, &rt, "name.familyName eq \"32\"").await,
        ["counter"]
    );
    // A modification that panics fails alone; the writer goes on.
    let boom = store
        .modify("User", "counter", false, Box::new(|_: &_| panic!("boom")))
        .await;
    assert!(
        matches!(boom, Err(ModifyError::Store(StoreError::Backend(_)))),
        "{boom:?}"
    );
    let after = store
        .modify("User", "counter", false, increment(Arc::clone(&*rt)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.0.data["name"]["familyName"], "33");
    let missing = store
        .modify("User", "nobody", true, increment(Arc::clone(&*rt)))
        .await;
    assert!(
        matches!(missing, Err(ModifyError::Store(StoreError::NotFound))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn the_writer_goes_on_after_a_panic_outside_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("scimd.sqlite3")).unwrap();
    let registry = Registry::builtin().unwrap();
    let users = registry.by_name("User").unwrap();
    store
        .create(write(users, "before", "before", "B"))
        .await
        .unwrap();
    store.inject_writer_panic().await.unwrap();
    store
        .create(write(users, "after", "after", "A"))
        .await
        .expect("a write after the writer's panic commits");
    scimd_core::store::Store::ping(&store)
        .await
        .expect("and the store is ready");
    assert_eq!(
        ids_matching(&store, users, "userName pr").await,
        ["before", "after"]
    );
}

#[tokio::test]
async fn a_writer_held_up_by_another_writer_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scimd.sqlite3");
    let store = SqliteStore::open(&path).unwrap();
    scimd_core::store::Store::ping(&store).await.unwrap();
    // A write that went through answers pings for a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Another process holds the database's write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let ping = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        scimd_core::store::Store::ping(&store),
    )
    .await;
    assert!(
        !matches!(ping, Ok(Ok(()))),
        "ready while writes cannot commit"
    );
    other.execute_batch("ROLLBACK").unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        scimd_core::store::Store::ping(&store),
    )
    .await
    .expect("ready again once the lock is released")
    .unwrap();
}
