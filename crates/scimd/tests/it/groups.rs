use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Server, assert_scim_error};

#[tokio::test]
async fn members_nested_groups_and_computed_user_groups() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, _, alice) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "alice"})))
        .await;
    let alice = alice["id"].as_str().unwrap().to_string();
    let (st, _, inner) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Inner", "members": [{"value": alice, "type": "User"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{inner}");
    assert_eq!(inner["members"][0]["value"], alice.as_str());
    assert_eq!(inner["members"][0]["type"], "User");
    let inner_id = inner["id"].as_str().unwrap().to_string();
    let (st, _, outer) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Outer", "members": [{"value": inner_id, "$ref": null}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{outer}");
    let outer_id = outer["id"].as_str().unwrap().to_string();
    let (_, _, user) = s.call(Method::GET, &format!("/Users/{alice}"), None).await;
    let groups = user["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{user}");
    assert!(
        groups
            .iter()
            .any(|g| g["value"] == inner_id.as_str() && g["type"] == "direct")
    );
    assert!(
        groups
            .iter()
            .any(|g| g["value"] == outer_id.as_str() && g["type"] == "indirect")
    );
    // A list computes the groups of every user on the page (in one store
    // call): the member has both, another user none.
    s.call(Method::POST, "/Users", Some(json!({"userName": "loner"})))
        .await;
    let (_, _, list) = s.call(Method::GET, "/Users?sortBy=userName", None).await;
    let by_name = |name: &str| {
        list["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["userName"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("loner").get("groups"), None, "{list}");
    assert_eq!(
        by_name(user["userName"].as_str().unwrap())["groups"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{list}"
    );
    // excludedAttributes=members
    let (_, _, g) = s
        .call(
            Method::GET,
            &format!("/Groups/{inner_id}?excludedAttributes=members"),
            None,
        )
        .await;
    assert!(g.get("members").is_none());
    assert_eq!(g["displayName"], "Inner");
    // A list of groups shows their members (read with the page).
    let (_, _, groups) = s.call(Method::GET, "/Groups?sortBy=displayName", None).await;
    let listed: Vec<(&str, usize)> = groups["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let members = g["members"].as_array().map_or(0, Vec::len);
            (g["displayName"].as_str().unwrap(), members)
        })
        .collect();
    assert_eq!(listed, [("Inner", 1), ("Outer", 1)], "{groups}");
    // unknown member id
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Bad", "members": [{"value": "nope"}]})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    assert!(e["detail"].as_str().unwrap().contains("nope"));
    let (_, _, list) = s
        .call(
            Method::GET,
            "/Groups?filter=displayName%20eq%20%22Bad%22",
            None,
        )
        .await;
    assert_eq!(list["totalResults"], 0, "no partial write");
    // deleting the user removes its memberships
    let (st, _, _) = s
        .call(Method::DELETE, &format!("/Users/{alice}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, _, g) = s
        .call(Method::GET, &format!("/Groups/{inner_id}"), None)
        .await;
    assert!(g.get("members").is_none(), "{g}");
    s.stop().await;
}

/// The answer to a PUT or a PATCH of a user shows the groups it is in
/// afterwards, direct and through nesting (read with the write: on
/// PostgreSQL in the write's own statement).
#[tokio::test]
async fn writes_of_a_member_answer_its_groups() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, _, bob) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "bob"})))
        .await;
    let bob = bob["id"].as_str().unwrap().to_string();
    let (_, _, inner) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Inner", "members": [{"value": bob}]})),
        )
        .await;
    let inner = inner["id"].as_str().unwrap().to_string();
    let (_, _, outer) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Outer", "members": [{"value": inner}]})),
        )
        .await;
    let outer = outer["id"].as_str().unwrap().to_string();
    let expect = |answer: &serde_json::Value, step: &str| {
        let groups = answer["groups"].as_array().unwrap_or_else(|| panic!("{step}: {answer}"));
        let kind = |id: &str| {
            groups
                .iter()
                .find(|g| g["value"] == id)
                .map(|g| g["type"].clone())
        };
        assert_eq!(groups.len(), 2, "{step}: {answer}");
        assert_eq!(kind(&inner), Some(json!("direct")), "{step}: {answer}");
        assert_eq!(kind(&outer), Some(json!("indirect")), "{step}: {answer}");
    };
    let path = format!("/Users/{bob}");
    let (st, _, patched) = s
        .call(
            Method::PATCH,
            &path,
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": "Bob"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{patched}");
    expect(&patched, "PATCH");
    let (st, _, replaced) = s
        .call(
            Method::PUT,
            &path,
            Some(json!({"userName": "bob", "displayName": "Robert"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{replaced}");
    expect(&replaced, "PUT");
}
