//! Two scimd on one PostgreSQL database, as replicas behind a load balancer:
//! requests alternate between them and every guarantee of one server holds
//! across both.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::Server;

/// Two servers over the same directory, hence the same database.
async fn replicas(dir: &std::path::Path) -> [Arc<Server>; 2] {
    let a = Server::start(dir).await;
    let b = Server::start(dir).await;
    [Arc::new(a), Arc::new(b)]
}

#[tokio::test]
async fn concurrent_creates_of_one_username_through_two_replicas_give_one_201() {
    let dir = tempfile::tempdir().unwrap();
    let servers = replicas(dir.path()).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = servers[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let name = if i % 4 < 2 { "twin" } else { "TWIN" };
            s.call(Method::POST, "/Users", Some(json!({"userName": name})))
                .await
                .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 19), "{statuses:?}");
    for s in &servers {
        let (_, _, page) = s
            .call(
                Method::GET,
                "/Users?filter=userName%20eq%20%22twin%22",
                None,
            )
            .await;
        assert_eq!(page["totalResults"], 1);
    }
}

#[tokio::test]
async fn member_adds_through_two_replicas_lose_none() {
    let dir = tempfile::tempdir().unwrap();
    let servers = replicas(dir.path()).await;
    let (_, _, g) = servers[0]
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Shared"})),
        )
        .await;
    let path = format!("/Groups/{}", g["id"].as_str().unwrap());
    let mut ids = Vec::new();
    for i in 0..32 {
        let (st, _, u) = servers[i % 2]
            .call(
                Method::POST,
                "/Users",
                Some(json!({"userName": format!("m{i}")})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().cloned().enumerate() {
        let s = servers[i % 2].clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            s.call_with(
                Method::PATCH,
                &path,
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]
                })),
                &[("Prefer", "return=minimal")],
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::NO_CONTENT);
    }
    for s in &servers {
        let (_, _, g) = s.call(Method::GET, &path, None).await;
        let mut members: Vec<String> = g["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_string())
            .collect();
        members.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(members, want);
        assert_eq!(g["meta"]["version"], "W/\"33\"");
    }
}

#[tokio::test]
async fn if_match_races_through_two_replicas_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let servers = replicas(dir.path()).await;
    let (_, h, u) = servers[0]
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "contested"})),
        )
        .await;
    let id = u["id"].as_str().unwrap().to_string();
    let tag = h["etag"].to_str().unwrap().to_string();
    // Replace, PATCH and DELETE all race on the same version.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = servers[i % 2].clone();
        let (id, tag) = (id.clone(), tag.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/Users/{id}");
            let (method, body) = match i % 3 {
                0 => (
                    Method::PUT,
                    Some(json!({"userName": "contested", "displayName": format!("put {i}")})),
                ),
                1 => (
                    Method::PATCH,
                    Some(json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "displayName", "value": format!("patch {i}")}]
                    })),
                ),
                _ => (Method::DELETE, None),
            };
            s.call_with(method, &path, body, &[("If-Match", &tag)])
                .await
                .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let won = statuses.iter().filter(|s| s.is_success()).count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED || **s == StatusCode::NOT_FOUND)
        .count();
    assert_eq!((won, lost), (1, 23), "{statuses:?}");
    // When the winner was not a delete, the version moved by exactly one.
    let (st, h, _) = servers[1]
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    if st == StatusCode::OK {
        assert_eq!(h["etag"].to_str().unwrap(), "W/\"2\"");
    } else {
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn patches_of_one_user_through_two_replicas_lose_none() {
    let dir = tempfile::tempdir().unwrap();
    let servers = replicas(dir.path()).await;
    let (_, _, u) = servers[0]
        .call(Method::POST, "/Users", Some(json!({"userName": "shared"})))
        .await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (s, path) = (servers[i % 2].clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "emails", "value": [{"value": format!("r{i}@example.com")}]}]});
            s.call(Method::PATCH, &path, Some(body)).await
        }));
    }
    for t in tasks {
        let (st, _, p) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{p}");
    }
    for s in &servers {
        let (_, _, u) = s.call(Method::GET, &path, None).await;
        assert_eq!(u["emails"].as_array().unwrap().len(), 32, "{u}");
        assert_eq!(u["meta"]["version"], "W/\"33\"");
    }
}

/// 1,000 concurrent writes through two replicas: one push stream, every
/// change delivered once (not once per replica), none refused delivered.
#[tokio::test]
async fn events_of_two_replicas_arrive_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let servers = replicas(dir.path()).await;
    crate::events::every_change_arrives_once(&servers, dir.path()).await;
}
