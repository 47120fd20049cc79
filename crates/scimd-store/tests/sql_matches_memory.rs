//! Generated filters run through the SQL translation and through the
//! in-memory evaluator over the same resources must select the same ids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use scimd_core::index::{MetaFacts, eval, index_entries, unique_values};
use scimd_core::query::{Paging, Query, resolve_filter};
use scimd_core::schema::Registry;
use scimd_core::store::{ResourceWrite, Store};
use scimd_filter::{AttrPath, CompareOp, Filter};
use scimd_store::SqliteStore;
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
    if rng.next() % 3 != 0 {
        u.insert("active".into(), json!(rng.next() % 2 == 0));
    }
    if rng.next() % 4 != 0 {
        u.insert(
            "name".into(),
            json!({"familyName": rng.pick(WORDS), "givenName": rng.pick(WORDS)}),
        );
    }
    let n = rng.next() % 3;
    if n > 0 {
        let emails: Vec<Value> = (0..n)
            .map(|_| json!({"value": rng.pick(WORDS), "type": rng.pick(&["work", "home"]), "primary": rng.next() % 5 == 0}))
            .collect();
        u.insert("emails".into(), Value::Array(emails));
    }
    if rng.next() % 2 == 0 {
        u.insert("externalId".into(), json!(rng.pick(WORDS)));
    }
    if rng.next() % 3 == 0 {
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
        if rng.next() % 6 == 0 {
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
    match rng.next() % 9 {
        0 => Filter::Compare {
            path: path("active", None),
            op: *rng.pick(&[CompareOp::Eq, CompareOp::Ne]),
            value: json!(rng.next() % 2 == 0),
        },
        1 => Filter::Present {
            path: path(*rng.pick(&["name", "emails", "externalId", "active"]), None),
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
    if depth == 0 || rng.next() % 3 == 0 {
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

#[tokio::test]
async fn generated_filters_agree_between_sql_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.sqlite3")).unwrap();
    let registry = Registry::builtin().unwrap();
    let rt = registry.by_name("User").unwrap().clone();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut docs = Vec::new();
    for i in 0..120 {
        let data = user(&mut rng, i);
        let id = format!("id-{i:03}");
        let facts = MetaFacts {
            id: &id,
            created: "2026-01-01T00:00:00Z",
            modified: "2026-01-01T00:00:00Z",
            version: 1,
        };
        let index = index_entries(&rt, &data, &facts);
        store
            .create(ResourceWrite {
                resource_type: "User".into(),
                id: id.clone(),
                unique: unique_values(&rt, &data),
                index: index.clone(),
                data,
                members: None,
                member_types: vec![],
                now: "2026-01-01T00:00:00Z".into(),
            })
            .await
            .unwrap();
        docs.push((id, index));
    }
    let mut checked = 0;
    let mut nonempty = 0;
    for _ in 0..1500 {
        let filter = tree(&mut rng, 4, false);
        let Ok(cond) = resolve_filter(&rt, &filter) else {
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
    assert!(checked > 1000, "only {checked} filters resolved");
    assert!(
        nonempty > checked / 4,
        "generator too trivial: {nonempty} of {checked} split the set"
    );
}
