//! Generated filters run through the SQL translation and through the
//! in-memory evaluator over the same resources must select the same ids, on
//! SQLite and on PostgreSQL (when one can be had: see `testing.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../src/testing.rs"]
#[allow(dead_code)]
mod testing;

use std::collections::BTreeSet;

use scimd_core::index::{MetaFacts, eval, meta_entries};
use scimd_core::query::{Paging, Query, resolve_filter};
use scimd_core::schema::Registry;
use scimd_core::store::{ResourceStore, ResourceWrite, StoreError};
use scimd_filter::{AttrPath, CompareOp, Filter};
use scimd_store::{PgStore, SqliteStore};
use serde_json::{Map, Value, json};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &["ab", "Ab", "abc", "b", "", "ba", "ABC", "c", "ab\"c"];

fn user(rng: &mut Rng, i: usize) -> Map<String, Value> {
    let mut u = Map::new();
    u.insert("userName".into(), json!(format!("{}{i}", rng.pick(WORDS))));
    if !rng.next().is_multiple_of(3) {
        u.insert("active".into(), json!(rng.next().is_multiple_of(2)));
    }
    if !rng.next().is_multiple_of(4) {
        u.insert(
            "name".into(),
            json!({"familyName": rng.pick(WORDS), "givenName": rng.pick(WORDS)}),
        );
    }
    let n = rng.next() % 3;
    if n > 0 {
        let emails: Vec<Value> = (0..n)
            .map(|_| json!({"value": rng.pick(WORDS), "type": rng.pick(&["work", "home"]), "primary": rng.next().is_multiple_of(5)}))
            .collect();
        u.insert("emails".into(), Value::Array(emails));
    }
    if rng.next().is_multiple_of(2) {
        u.insert("externalId".into(), json!(rng.pick(WORDS)));
    }
    if rng.next().is_multiple_of(3) {
        u.insert(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
            json!({"department": rng.pick(WORDS)}),
        );
    }
    u
}

fn path(name: &str, sub: Option<&str>) -> AttrPath {
    AttrPath {
        urn: None,
        name: name.into(),
        sub: sub.map(str::to_string),
    }
}

fn term(rng: &mut Rng, in_element: bool) -> Filter {
    let ops = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Le,
    ];
    if in_element {
        let name = *rng.pick(&["value", "type"]);
        if rng.next().is_multiple_of(6) {
            return Filter::Present {
                path: path(name, None),
            };
        }
        return Filter::Compare {
            path: path(name, None),
            op: *rng.pick(&ops),
            value: json!(rng.pick(WORDS)),
        };
    }
    match rng.next() % 12 {
        // Server-managed facts: columns of the resource row, not entries.
        9 => Filter::Compare {
            path: path("id", None),
            op: *rng.pick(&ops),
            value: json!(format!(
                "{}{}",
                rng.pick(&["id-", "id-0", "d-1", "", "ID-"]),
                rng.next() % 130
            )),
        },
        10 => Filter::Compare {
            path: path("meta", Some(*rng.pick(&["created", "lastModified"]))),
            op: *rng.pick(&[
                CompareOp::Eq,
                CompareOp::Ne,
                CompareOp::Gt,
                CompareOp::Ge,
                CompareOp::Lt,
                CompareOp::Le,
            ]),
            value: json!(format!(
                "2026-01-01T{}:00:{:02}{}",
                rng.pick(&["00", "01"]),
                rng.next() % 14,
                rng.pick(&[
                    "Z",
                    ".250Z",
                    ".5Z",
                    ".2501Z",
                    ".750000001Z",
                    "+01:00",
                    ".25+01:00"
                ])
            )),
        },
        11 => match rng.next() % 4 {
            0 => Filter::Present {
                path: path("meta", *rng.pick(&[None, Some("created"), Some("version")])),
            },
            1 => Filter::Compare {
                path: path("meta", Some("version")),
                op: *rng.pick(&ops),
                value: json!(*rng.pick(&["W/\"1\"", "W/\"2\"", "W/", "1"])),
            },
            _ => Filter::Compare {
                path: path("meta", Some("resourceType")),
                op: *rng.pick(&ops),
                value: json!(*rng.pick(&["User", "user", "Group", "Us"])),
            },
        },
        0 => Filter::Compare {
            path: path("active", None),
            op: *rng.pick(&[CompareOp::Eq, CompareOp::Ne]),
            value: json!(rng.next().is_multiple_of(2)),
        },
        1 => Filter::Present {
            path: path(
                rng.pick::<&str>(&["name", "emails", "externalId", "active"]),
                None,
            ),
        },
        2 => Filter::ValuePath {
            path: path("emails", None),
            filter: Box::new(tree(rng, 2, true)),
        },
        3 => Filter::Compare {
            path: AttrPath {
                urn: Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into()),
                name: "department".into(),
                sub: None,
            },
            op: *rng.pick(&ops),
            value: json!(rng.pick(WORDS)),
        },
        _ => {
            let (n, s) = *rng.pick(&[
                ("userName", None),
                ("name", Some("familyName")),
                ("emails", Some("value")),
                ("externalId", None),
                ("emails", None),
            ]);
            Filter::Compare {
                path: path(n, s),
                op: *rng.pick(&ops),
                value: json!(rng.pick(WORDS)),
            }
        }
    }
}

fn tree(rng: &mut Rng, depth: u32, in_element: bool) -> Filter {
    if depth == 0 || rng.next().is_multiple_of(3) {
        return term(rng, in_element);
    }
    match rng.next() % 3 {
        0 => Filter::And(
            Box::new(tree(rng, depth - 1, in_element)),
            Box::new(tree(rng, depth - 1, in_element)),
        ),
        1 => Filter::Or(
            Box::new(tree(rng, depth - 1, in_element)),
            Box::new(tree(rng, depth - 1, in_element)),
        ),
        _ => Filter::Not(Box::new(tree(rng, depth - 1, in_element))),
    }
}

/// A fresh PostgreSQL database, or `None` when the PostgreSQL tests are
/// skipped.
async fn postgres() -> Option<PgStore> {
    let server = match testing::shared(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))) {
        Ok(server) => server,
        Err(why) => {
            testing::unavailable(&why).unwrap();
            return None;
        }
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let key = format!(
        "sql_matches_memory {} {:?} {}",
        std::process::id(),
        std::time::SystemTime::now(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let url = server
        .database(&testing::database_name(&key))
        .await
        .unwrap();
    Some(PgStore::connect(&url, 4).await.unwrap())
}

#[tokio::test]
async fn generated_filters_agree_between_sqlite_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap();
    generated_filters_agree(&store).await;
}

#[tokio::test]
async fn generated_filters_agree_between_postgres_and_memory() {
    if let Some(store) = postgres().await {
        generated_filters_agree(&store).await;
    }
}

#[tokio::test]
async fn long_values_are_indexed_and_found_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap();
    long_values_are_indexed_and_found(&store).await;
}

#[tokio::test]
async fn long_values_are_indexed_and_found_on_postgres() {
    if let Some(store) = postgres().await {
        long_values_are_indexed_and_found(&store).await;
    }
}

fn write(
    rt: &scimd_core::schema::ResourceTypeDef,
    id: &str,
    data: Map<String, Value>,
) -> ResourceWrite {
    ResourceWrite::derived(
        rt,
        scimd_core::changelog::Op::Create,
        id,
        data,
        "2026-01-01T00:00:00Z",
    )
}

/// Values far longer than an index entry may be (PostgreSQL's B-tree holds
/// about 2.7 kB): stored, and found by every operator.
async fn long_values_are_indexed_and_found(store: &dyn ResourceStore) {
    let registry = Registry::builtin().unwrap();
    let rt = registry.by_name("User").unwrap().clone();
    let long = |c: char| format!("{}{c}", "x".repeat(20_000));
    for (i, c) in ['a', 'b', 'c'].into_iter().enumerate() {
        let mut data = Map::new();
        data.insert("userName".into(), json!(long(c)));
        data.insert("displayName".into(), json!(long(c)));
        store
            .create(write(&rt, &format!("long-{i}"), data))
            .await
            .unwrap();
    }
    let mut data = Map::new();
    data.insert("userName".into(), json!(long('a')));
    let taken = store
        .create(write(&rt, "long-dup", data))
        .await
        .unwrap_err();
    assert!(
        matches!(taken, scimd_core::store::StoreError::Uniqueness { .. }),
        "{taken:?}"
    );
    for (op, value, want) in [
        (CompareOp::Eq, long('b'), vec!["long-1"]),
        (CompareOp::Gt, long('a'), vec!["long-1", "long-2"]),
        (CompareOp::Ge, long('b'), vec!["long-1", "long-2"]),
        (CompareOp::Lt, long('b'), vec!["long-0"]),
        (CompareOp::Le, long('b'), vec!["long-0", "long-1"]),
        (
            CompareOp::Sw,
            "x".repeat(300),
            vec!["long-0", "long-1", "long-2"],
        ),
        (
            CompareOp::Ew,
            format!("{}c", "x".repeat(300)),
            vec!["long-2"],
        ),
        (
            CompareOp::Co,
            format!("{}b", "x".repeat(300)),
            vec!["long-1"],
        ),
    ] {
        for attr in ["userName", "displayName"] {
            let filter = Filter::Compare {
                path: path(attr, None),
                op,
                value: json!(value),
            };
            let cond = resolve_filter(&rt, &filter).unwrap();
            let page = store
                .query(Query {
                    resource_types: vec!["User".into()],
                    filter: Some(cond),
                    sort: None,
                    paging: Paging::Index {
                        start: 1,
                        count: 10,
                    },
                    with_members: false,
                })
                .await
                .unwrap();
            let ids: Vec<String> = page.items.into_iter().map(|r| r.id).collect();
            assert_eq!(ids, want, "{attr} {op:?}");
        }
    }
}

async fn generated_filters_agree(store: &dyn ResourceStore) {
    let registry = Registry::builtin().unwrap();
    let rt = registry.by_name("User").unwrap().clone();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut docs = Vec::new();
    for i in 0..120 {
        let data = user(&mut rng, i);
        let id = format!("id-{i:03}");
        // As the server writes them: UTC, milliseconds.
        let now = format!("2026-01-01T00:00:{:02}.{:03}Z", i / 10, (i % 4) * 250);
        let facts = MetaFacts {
            id: &id,
            created: &now,
            modified: &now,
            version: 1,
        };
        let write = ResourceWrite::derived(&rt, scimd_core::changelog::Op::Create, &id, data, &now);
        let mut filterable = meta_entries(&rt, &facts);
        filterable.extend(write.index.iter().cloned());
        store.create(write).await.unwrap();
        docs.push((id, filterable));
    }
    check_filters(store, &rt, &mut rng, &docs, 1500).await;

    // Replace half of them with new documents: a replace rewrites only the
    // index rows that differ (and updates changed values in place), so the
    // same filters must still agree with a fresh evaluation.
    for i in (0..docs.len()).step_by(2) {
        let data = user(&mut rng, 1000 + i);
        let id = docs[i].0.clone();
        let now = format!("2026-01-01T00:01:{:02}.{:03}Z", i / 10, (i % 4) * 250);
        let write = ResourceWrite::derived(&rt, scimd_core::changelog::Op::Create, &id, data, &now);
        let index = write.index.clone();
        let (stored, _) = store.replace(write, Some(1), false).await.unwrap();
        let facts = MetaFacts {
            id: &id,
            created: &stored.created,
            modified: &now,
            version: 2,
        };
        let mut filterable = meta_entries(&rt, &facts);
        filterable.extend(index);
        docs[i].1 = filterable;
    }
    check_filters(store, &rt, &mut rng, &docs, 800).await;

    // Modify the other half through `modify` (read, then a
    // compare-and-swap write: on PostgreSQL with only the side rows that
    // differ from those read): every other one to a new document (a new
    // userName too), the others with their emails in reverse order (the
    // same values at other positions) and a displayName.
    let probed = store.get("User", "id-001", false).await.unwrap().unwrap();
    for i in (1..docs.len()).step_by(2) {
        let id = docs[i].0.clone();
        let now = format!("2026-01-01T00:02:{:02}.{:03}Z", i / 10, (i % 4) * 250);
        let fresh = user(&mut rng, 2000 + i);
        let (def, at) = (rt.clone(), now.clone());
        let change: scimd_core::store::Modification = Box::new(move |old| {
            let data = match i % 4 {
                1 => fresh.clone(),
                _ => {
                    let mut data = old.data.clone();
                    if let Some(Value::Array(emails)) = data.get_mut("emails") {
                        emails.reverse();
                    }
                    data.insert("displayName".into(), json!(format!("shown {i}")));
                    data
                }
            };
            let op = scimd_core::changelog::Op::Patch;
            Ok(Some(ResourceWrite::derived(&def, op, &old.id, data, &at)))
        });
        let (stored, _) = store
            .modify("User", &id, false, change)
            .await
            .unwrap()
            .unwrap();
        let facts = MetaFacts {
            id: &id,
            created: &stored.created,
            modified: &now,
            version: stored.version,
        };
        let mut filterable = meta_entries(&rt, &facts);
        filterable.extend(index_of(&rt, &id, stored.data));
        docs[i].1 = filterable;
    }
    check_filters(store, &rt, &mut rng, &docs, 800).await;

    // The unique values followed: the new userName is taken, the old one
    // free.
    let before = probed.data;
    let after = store.get("User", "id-001", false).await.unwrap().unwrap();
    assert_ne!(before["userName"], after.data["userName"]);
    let now = "2026-01-01T00:03:00.000Z";
    for (name, taken) in [
        (&after.data["userName"], true),
        (&before["userName"], false),
    ] {
        let data = json!({"userName": name}).as_object().unwrap().clone();
        let op = scimd_core::changelog::Op::Create;
        let created = store
            .create(ResourceWrite::derived(&rt, op, "probe", data, now))
            .await;
        match created {
            Err(StoreError::Uniqueness { .. }) if taken => {}
            Ok(_) if !taken => {
                let change = scimd_core::changelog::Change::new(op, "User", "probe", now);
                store
                    .delete("User", "probe", None, Vec::new(), change)
                    .await
                    .unwrap();
            }
            other => panic!("userName {name} (taken: {taken}): {other:?}"),
        }
    }
}

/// The index entries of `data` as the server derives them.
fn index_of(
    rt: &scimd_core::schema::ResourceTypeDef,
    id: &str,
    data: Map<String, Value>,
) -> Vec<scimd_core::store::IndexEntry> {
    let op = scimd_core::changelog::Op::Patch;
    ResourceWrite::derived(rt, op, id, data, "").index
}

async fn check_filters(
    store: &dyn ResourceStore,
    rt: &scimd_core::schema::ResourceTypeDef,
    rng: &mut Rng,
    docs: &[(String, Vec<scimd_core::store::IndexEntry>)],
    rounds: usize,
) {
    let mut checked = 0;
    let mut nonempty = 0;
    for _ in 0..rounds {
        let filter = tree(rng, 4, false);
        let Ok(cond) = resolve_filter(rt, &filter) else {
            continue;
        };
        let page = store
            .query(Query {
                resource_types: vec!["User".into()],
                filter: Some(cond.clone()),
                sort: None,
                paging: Paging::Index {
                    start: 1,
                    count: 1000,
                },
                with_members: false,
            })
            .await
            .unwrap();
        let sql: BTreeSet<String> = page.items.into_iter().map(|r| r.id).collect();
        let memory: BTreeSet<String> = docs
            .iter()
            .filter(|(_, e)| eval(&cond, e))
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(sql, memory, "filter {filter}");
        assert_eq!(page.total as usize, memory.len(), "filter {filter}");
        checked += 1;
        if !memory.is_empty() && memory.len() < docs.len() {
            nonempty += 1;
        }
    }
    assert!(checked > rounds * 2 / 3, "only {checked} filters resolved");
    assert!(
        nonempty > checked / 4,
        "generator too trivial: {nonempty} of {checked} split the set"
    );
}
