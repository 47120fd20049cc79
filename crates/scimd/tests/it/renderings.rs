//! A `GET` without projection may be answered from a kept rendering
//! (`scimd_core::rendering`). After every kind of change that alters a
//! user's document, its whole-document `GET` (read twice, so that the second
//! can come from the cache) must equal a rendering made afresh: the same
//! `GET` with an `excludedAttributes` that removes nothing, which never uses
//! the cache.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::Server;

async fn assert_current(s: &Server, user: &str, step: &str) -> Value {
    let path = format!("/Users/{user}");
    let (st, fresh_headers, fresh) = s
        .call(
            Method::GET,
            &format!("{path}?excludedAttributes=x509Certificates"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{step}: {fresh}");
    for round in 0..2 {
        let (st, headers, whole) = s.call(Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::OK, "{step}: {whole}");
        assert_eq!(whole, fresh, "{step}, read {round}");
        assert_eq!(headers["etag"], fresh_headers["etag"], "{step}, read {round}");
    }
    fresh
}

fn group_names(user: &Value) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = user["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .map(|g| {
                    (
                        g["display"].as_str().unwrap_or_default().to_string(),
                        g["type"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn pair(name: &str, kind: &str) -> (String, String) {
    (name.to_string(), kind.to_string())
}

#[tokio::test]
async fn a_whole_document_get_shows_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, _, user) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "carol"})))
        .await;
    let user = user["id"].as_str().unwrap().to_string();
    assert_current(&s, &user, "created").await;

    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Carol"}]});
    s.call(Method::PATCH, &format!("/Users/{user}"), Some(patch)).await;
    let doc = assert_current(&s, &user, "patched").await;
    assert_eq!(doc["displayName"], "Carol");

    // Membership: the user's row does not change, its groups do.
    let (_, _, team) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Team", "members": [{"value": user}]})),
        )
        .await;
    let team = team["id"].as_str().unwrap().to_string();
    let doc = assert_current(&s, &user, "added to a group").await;
    assert_eq!(group_names(&doc), vec![pair("Team", "direct")]);

    let rename = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Crew"}]});
    s.call(Method::PATCH, &format!("/Groups/{team}"), Some(rename))
        .await;
    let doc = assert_current(&s, &user, "group renamed").await;
    assert_eq!(group_names(&doc), vec![pair("Crew", "direct")]);

    let (_, _, all) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "All", "members": [{"value": team}]})),
        )
        .await;
    let all = all["id"].as_str().unwrap().to_string();
    let doc = assert_current(&s, &user, "group nested").await;
    assert_eq!(
        group_names(&doc),
        vec![pair("All", "indirect"), pair("Crew", "direct")]
    );

    s.call(Method::DELETE, &format!("/Groups/{all}"), None).await;
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": format!("members[value eq \"{user}\"]")}]});
    s.call(Method::PATCH, &format!("/Groups/{team}"), Some(remove))
        .await;
    let doc = assert_current(&s, &user, "removed from its groups").await;
    assert!(doc.get("groups").is_none(), "{doc}");

    s.call(
        Method::PUT,
        &format!("/Users/{user}"),
        Some(json!({"userName": "carol", "title": "Boss"})),
    )
    .await;
    let doc = assert_current(&s, &user, "replaced").await;
    assert_eq!(doc["title"], "Boss");
    assert!(doc.get("displayName").is_none(), "{doc}");

    s.call(Method::DELETE, &format!("/Users/{user}"), None).await;
    let (st, _, _) = s.call(Method::GET, &format!("/Users/{user}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// A rendering served without a read must still be the current document
/// when another server (another writer connection to the same database, as
/// another process would be) committed the change, and must not answer for
/// another resource type under the same id.
#[tokio::test]
async fn a_change_committed_by_another_server_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(dir.path()).await;
    let b = Server::start(dir.path()).await;
    let (_, _, user) = a
        .call(Method::POST, "/Users", Some(json!({"userName": "dave"})))
        .await;
    let user = user["id"].as_str().unwrap().to_string();
    let path = format!("/Users/{user}");
    for _ in 0..3 {
        let (st, _, doc) = a.call(Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::OK, "{doc}");
    }
    let (st, _, doc) = a.call(Method::GET, &format!("/Groups/{user}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a user's rendering as a group: {doc}");

    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Chief"}]});
    let (st, _, _) = b.call(Method::PATCH, &path, Some(patch)).await;
    assert_eq!(st, StatusCode::OK);
    // The other server reading first (on the same worker threads, whose
    // reader connections both servers share) must not hide the change.
    for _ in 0..4 {
        let (_, _, doc) = b.call(Method::GET, &path, None).await;
        assert_eq!(doc["title"], "Chief");
    }
    for round in 0..2 {
        let (_, _, doc) = a.call(Method::GET, &path, None).await;
        assert_eq!(doc["title"], "Chief", "read {round} after the other server's PATCH");
    }

    let (st, _, _) = b
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Ops", "members": [{"value": user}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, _, doc) = a.call(Method::GET, &path, None).await;
    assert_eq!(group_names(&doc), vec![pair("Ops", "direct")], "{doc}");

    let (st, _, _) = b.call(Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, doc) = a.call(Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{doc}");
    b.stop().await;
    a.stop().await;
}
