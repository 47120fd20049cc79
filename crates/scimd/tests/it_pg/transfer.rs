//! `scimd export` / `scimd import`: SQLite to PostgreSQL to SQLite loses
//! nothing (documents, ids, versions, timestamps, order, memberships,
//! records).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, database_url};

fn sqlite(dir: &std::path::Path) -> scimd::Config {
    scimd::Config {
        data_dir: dir.to_path_buf(),
        base_url: Some("http://scim.test".into()),
        ..scimd::Config::default()
    }
}

async fn start_sqlite(dir: &std::path::Path) -> Server {
    Server::start_with(dir, |c| {
        c.database_url = None;
        c.base_url = Some("http://scim.test".into());
    })
    .await
}

/// Every resource as the server renders it, in list order.
async fn everything(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    for endpoint in ["/Users", "/Groups"] {
        let (_, _, page) = s
            .call(Method::GET, &format!("{endpoint}?count=1000"), None)
            .await;
        for r in page["Resources"].as_array().unwrap() {
            let (st, _, full) = s
                .call(
                    Method::GET,
                    &format!("{endpoint}/{}", r["id"].as_str().unwrap()),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK);
            out.push(full);
        }
    }
    out
}

#[tokio::test]
async fn sqlite_to_postgres_to_sqlite_is_lossless() {
    let first = tempfile::tempdir().unwrap();
    let s = start_sqlite(first.path()).await;
    let mut users = Vec::new();
    for i in 0..10 {
        let (st, _, u) = s
            .call(
                Method::POST,
                "/Users",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                    "userName": format!("user{i}"),
                    "displayName": format!("User {i}"),
                    "active": i % 3 != 0,
                    "emails": [{"value": format!("u{i}@example.com"), "type": "work", "primary": true}],
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
                })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{u}");
        if i == 0 {
            // A write-only (hashed) password travels too; one is enough:
            // hashing is slow in debug builds.
            let (st, _, _) = s
                .call(
                    Method::PATCH,
                    &format!("/Users/{}", u["id"].as_str().unwrap()),
                    Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                "Operations": [{"op": "add", "path": "password", "value": "s3cret!pass"}]})),
                )
                .await;
            assert_eq!(st, StatusCode::OK);
        }
        users.push(u["id"].as_str().unwrap().to_string());
    }
    let (_, _, inner) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Inner", "members": [
                {"value": users[0]}, {"value": users[1], "display": "a custom label"}]})),
        )
        .await;
    let inner = inner["id"].as_str().unwrap().to_string();
    let (_, _, outer) = s
        .call(
            Method::POST,
            "/Groups",
            Some(
                json!({"displayName": "Outer", "members": [{"value": inner}, {"value": users[2]}]}),
            ),
        )
        .await;
    let outer = outer["id"].as_str().unwrap().to_string();
    // Versions and lastModified that differ from created.
    let (st, _, _) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{outer}"),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "add", "path": "members", "value": [{"value": users[3]}]}]})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NO_CONTENT,
        "a membership change answers 204"
    );
    let (st, _, _) = s
        .call(
            Method::PUT,
            &format!("/Users/{}", users[4]),
            Some(json!({"userName": "user4", "displayName": "Renamed"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = s
        .call(Method::DELETE, &format!("/Users/{}", users[5]), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let before = everything(&s).await;
    s.stop().await;
    {
        // An operational record travels too.
        let (store, _) = scimd::open_store(&sqlite(first.path())).await.unwrap();
        store
            .record_put(
                "setting",
                scimd_core::store::Record {
                    id: "protection".into(),
                    data: json!({"mode": "open"}),
                },
                scimd_core::changelog::Change::operational(
                    scimd_core::changelog::Op::Protection,
                    "setting",
                    "protection",
                ),
            )
            .await
            .unwrap();
    }

    let files = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        files.path().join("a.ndjson"),
        files.path().join("b.ndjson"),
        files.path().join("c.ndjson"),
    );
    assert_eq!(
        scimd::export_to(&sqlite(first.path()), &a, false)
            .await
            .unwrap(),
        11
    );

    {
        // It holds private signing keys and secret hashes.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the export's mode");
    }

    let pg_dir = tempfile::tempdir().unwrap();
    let pg = scimd::Config {
        database_url: database_url(pg_dir.path()).await.map(Into::into),
        ..sqlite(pg_dir.path())
    };
    assert_eq!(scimd::import_from(&pg, &a, false).await.unwrap(), 11);
    let again = scimd::import_from(&pg, &a, false).await.unwrap_err();
    assert!(again.to_string().contains("empty"), "{again}");
    assert_eq!(scimd::export_to(&pg, &b, false).await.unwrap(), 11);

    let last = tempfile::tempdir().unwrap();
    assert_eq!(
        scimd::import_from(&sqlite(last.path()), &b, false)
            .await
            .unwrap(),
        11
    );
    assert_eq!(
        scimd::export_to(&sqlite(last.path()), &c, false)
            .await
            .unwrap(),
        11
    );

    let (a, b, c) = (
        std::fs::read_to_string(a).unwrap(),
        std::fs::read_to_string(b).unwrap(),
        std::fs::read_to_string(c).unwrap(),
    );
    assert_eq!(
        a.lines().count(),
        1 + 11 + 2 + 4 + 1,
        "header, resources, 2 groups, 4 records (the test's, and the server's bundled client, \
         its bootstrap marker and signing key: OAuth state moves with the data), end"
    );
    // A stream cut short is refused, and says when it left part behind.
    let all: Vec<&str> = a.lines().collect();
    for (keep, partial) in [(all.len() - 1, true), (6, true), (1, false)] {
        let cut_dir = tempfile::tempdir().unwrap();
        let cut = cut_dir.path().join("cut.ndjson");
        std::fs::write(&cut, all[..keep].join("\n") + "\n").unwrap();
        let store = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            scimd::import_from(&sqlite(store.path()), &cut, false)
                .await
                .unwrap_err()
        );
        assert!(err.contains("cut short"), "{keep} lines: {err}");
        assert_eq!(
            err.contains("holds part of it"),
            partial,
            "{keep} lines: {err}"
        );
    }
    assert_eq!(a, b, "SQLite and PostgreSQL export the same stream");
    assert_eq!(b, c, "and so does SQLite after the round trip");

    // Served the same: documents, meta, computed groups, member displays.
    // The bundled client moved with the data, so its original credentials
    // (which the operator keeps) still get tokens.
    std::fs::copy(
        first.path().join("bootstrap-client.json"),
        last.path().join("bootstrap-client.json"),
    )
    .unwrap();
    let s = start_sqlite(last.path()).await;
    let after = everything(&s).await;
    assert_eq!(before.len(), after.len());
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(x, y);
    }
    // A default display still follows the member's name after the trip;
    // the custom one stays.
    let (st, _, _) = s
        .call(
            Method::PATCH,
            &format!("/Users/{}", users[0]),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "displayName", "value": "New Name"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, _, g) = s.call(Method::GET, &format!("/Groups/{inner}"), None).await;
    let displays: Vec<&str> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["display"].as_str().unwrap())
        .collect();
    assert_eq!(displays, ["New Name", "a custom label"]);
    s.stop().await;
}
