//! Upgrading an existing SQLite database written by schema version 2:
//! migration 3 moves the server-managed facts out of the index (they are
//! columns now) and indexes the timestamps; migration 4 rebuilds the index
//! values table clustered by resource.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use scimd_core::query::{Paging, Query, resolve_filter};
use scimd_core::schema::Registry;
use scimd_core::store::{ResourceStore, ResourceWrite};
use scimd_filter::{AttrPath, CompareOp, Filter};
use scimd_store::SqliteStore;
use serde_json::json;

#[tokio::test]
async fn version_2_databases_lose_their_meta_index_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    drop(SqliteStore::open(&path).unwrap());
    // Make it look like schema version 2 with 50,000 resources indexed the
    // old way (six meta rows each, plus a userName row).
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX resources_created; DROP INDEX resources_modified; PRAGMA user_version = 2;
             DROP TABLE change_log; DROP TABLE streams;
             DROP TABLE change_log_by_resource; DROP TABLE change_log_indexed;
             DROP TABLE attr_values;
             CREATE TABLE attr_values (
               seq INTEGER NOT NULL REFERENCES resources(seq) ON DELETE CASCADE,
               key TEXT NOT NULL, elem INTEGER NOT NULL, prim INTEGER NOT NULL, s TEXT, n REAL);
             CREATE INDEX attr_values_s ON attr_values(key, s, seq);
             CREATE INDEX attr_values_n ON attr_values(key, n, seq) WHERE n IS NOT NULL;
             CREATE INDEX attr_values_res ON attr_values(seq, key);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
             INSERT INTO resources (id, rtype, version, created, modified, data)
               SELECT 'id-' || i, 'User', 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z',
                      json_object('userName', 'user' || i) FROM n;
             INSERT INTO attr_values (seq, key, elem, prim, s, n)
               SELECT seq, k.key, 0, 0, 'x', NULL FROM resources,
                 (SELECT 'id' AS key UNION ALL SELECT 'meta' UNION ALL SELECT 'meta.resourcetype'
                  UNION ALL SELECT 'meta.created' UNION ALL SELECT 'meta.lastmodified'
                  UNION ALL SELECT 'meta.version') k;
             INSERT INTO attr_values (seq, key, elem, prim, s, n)
               SELECT seq, 'username', 0, 0, json_extract(data, '$.userName'), NULL FROM resources;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    // Checkpointed at start-up, not left for the first write to pay.
    let wal = std::fs::metadata(dir.path().join("old.sqlite3-wal")).map_or(0, |m| m.len());
    assert!(
        wal < 64 * 1024,
        "WAL left at {wal} bytes after the migration"
    );
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert!(version >= 4);
        let table: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'attr_values'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(table.contains("WITHOUT ROWID"), "{table}");
        let value_indexes: Vec<String> = conn
            .prepare("SELECT name FROM pragma_index_list('attr_values') WHERE origin = 'c' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(value_indexes, ["attr_values_n", "attr_values_s"]);
        let (meta, rest): (i64, i64) = conn
            .query_row(
                "SELECT sum(key = 'id' OR key LIKE 'meta%'), sum(key = 'username') FROM attr_values",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((meta, rest), (0, 50_000), "meta rows gone, others kept");
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_index_list('resources')
                  WHERE name IN ('resources_created', 'resources_modified')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 2);
    }
    // And the facts are still found, from the columns.
    let registry = Registry::builtin().unwrap();
    let rt = registry.by_name("User").unwrap();
    for (name, sub, value, want) in [
        ("id", None, "id-77", 1),
        ("meta", Some("created"), "2026-01-01T00:00:00Z", 50_000),
        ("userName", None, "user77", 1),
    ] {
        let filter = Filter::Compare {
            path: AttrPath {
                urn: None,
                name: name.into(),
                sub: sub.map(str::to_string),
            },
            op: CompareOp::Eq,
            value: json!(value),
        };
        let page = store
            .query(Query {
                resource_types: vec!["User".into()],
                filter: Some(resolve_filter(rt, &filter).unwrap()),
                sort: None,
                paging: Paging::Index { start: 1, count: 1 },
                with_members: false,
            })
            .await
            .unwrap();
        assert_eq!(page.total, want, "{name} {sub:?} eq {value}");
    }

    // The migrated rows are rewritten and deleted like new ones.
    let user_name = |value: &str| Filter::Compare {
        path: AttrPath {
            urn: None,
            name: "userName".into(),
            sub: None,
        },
        op: CompareOp::Eq,
        value: json!(value),
    };
    let count = |filter: Filter| {
        let store = &store;
        let cond = resolve_filter(rt, &filter).unwrap();
        async move {
            store
                .query(Query {
                    resource_types: vec!["User".into()],
                    filter: Some(cond),
                    sort: None,
                    paging: Paging::Index { start: 1, count: 1 },
                    with_members: false,
                })
                .await
                .unwrap()
                .total
        }
    };
    let data = json!({"userName": "renamed77", "displayName": "Seventy-seven"});
    let data = data.as_object().unwrap().clone();
    store
        .replace(
            ResourceWrite::derived(
                rt,
                scimd_core::changelog::Op::Create,
                "id-77",
                data,
                "2026-01-02T00:00:00Z",
            ),
            Some(1),
            false,
        )
        .await
        .unwrap();
    assert_eq!(count(user_name("user77")).await, 0);
    assert_eq!(count(user_name("renamed77")).await, 1);
    store
        .delete(
            "User",
            "id-78",
            None,
            Vec::new(),
            scimd_core::changelog::Change::new(
                scimd_core::changelog::Op::Delete,
                "User",
                "id-78",
                "2026-01-02T00:00:00Z",
            ),
        )
        .await
        .unwrap();
    assert_eq!(count(user_name("user78")).await, 0);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM attr_values WHERE seq NOT IN (SELECT seq FROM resources)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0, "a deleted resource's values go with it");
}
