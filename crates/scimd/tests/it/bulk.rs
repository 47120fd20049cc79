//! Bulk (RFC 7644 section 3.7) over HTTP: bulkId references (forward,
//! circular, in PATCH paths and values), failOnErrors, versions, limits and
//! the per-operation scope check.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, assert_scim_error, client_with_token, fetch_token};

const PREFIX: &str = "https://jans.io/scim/";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn bulk(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
}

async fn members(s: &Server, location: &str) -> Vec<String> {
    let id = location.rsplit('/').next().unwrap();
    let (st, _, g) = s.call(Method::GET, &format!("/Groups/{id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{g}");
    let mut out: Vec<String> = g["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The status of each operation of a BulkResponse, in order.
fn statuses(response: &Value) -> Vec<&str> {
    response["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect()
}

fn id_of(op: &Value) -> String {
    op["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// Section 3.7.1's example: two groups that are members of each other, and
/// a group that names a user created later in the request.
#[tokio::test]
async fn circular_and_forward_references() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(bulk(json!([
                {"method": "POST", "path": "/Groups", "bulkId": "qwerty", "data": {
                    "schemas": [GROUP], "displayName": "Group A",
                    "members": [{"type": "Group", "value": "bulkId:ytrewq"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "ytrewq", "data": {
                    "schemas": [GROUP], "displayName": "Group B",
                    "members": [{"type": "Group", "value": "bulkId:qwerty"},
                                {"type": "User", "value": "bulkId:alice"}]}},
                {"method": "POST", "path": "/Users", "bulkId": "alice", "data": {
                    "schemas": [USER], "userName": "alice"}}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
    );
    let ops = v["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 3, "{v}");
    for (op, bulk_id) in ops.iter().zip(["qwerty", "ytrewq", "alice"]) {
        assert_eq!(op["status"], "201", "{v}");
        assert_eq!(op["method"], "POST");
        assert_eq!(op["bulkId"], bulk_id);
        assert!(op["version"].as_str().unwrap().starts_with("W/"), "{op}");
    }
    let (a, b, alice) = (id_of(&ops[0]), id_of(&ops[1]), id_of(&ops[2]));
    assert_eq!(members(&s, ops[0]["location"].as_str().unwrap()).await, vec![b.clone()]);
    let mut want = vec![a.clone(), alice.clone()];
    want.sort();
    assert_eq!(members(&s, ops[1]["location"].as_str().unwrap()).await, want);
    // The version reported is the one after the members were added.
    let (_, headers, _) = s.call(Method::GET, &format!("/Groups/{a}"), None).await;
    assert_eq!(headers["etag"].to_str().unwrap(), ops[0]["version"]);

    // bulkId in a PATCH path, a PATCH value and a filter of a PATCH path.
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(bulk(json!([
                {"method": "PATCH", "path": "/Groups/bulkId:g", "data": {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members",
                                    "value": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}]}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {
                    "schemas": [GROUP], "displayName": "G"}},
                {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"userName": "u1"}},
                {"method": "POST", "path": "/Users", "bulkId": "u2", "data": {"userName": "u2"}},
                {"method": "PATCH", "path": "/Groups/bulkId:g", "data": {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "remove", "path": "members[value eq \"bulkId:u1\"]"}]}},
                {"method": "DELETE", "path": "/Users/bulkId:nobody"}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ops = v["Operations"].as_array().unwrap();
    assert_eq!(statuses(&v), ["200", "201", "201", "201", "200", "409"], "{v}");
    assert_eq!(ops[5]["response"]["status"], "409");
    assert!(
        ops[5]["response"]["detail"].as_str().unwrap().contains("nobody"),
        "{v}"
    );
    let u2 = id_of(&ops[3]);
    assert_eq!(members(&s, ops[1]["location"].as_str().unwrap()).await, vec![u2]);
    s.stop().await;
}

/// A cycle taken apart does not change what the request means: an operation
/// on a resource created in a cycle waits until its references were added,
/// and values the server ignores (read-only `groups` of a user) make no cycle.
#[tokio::test]
async fn cycles_keep_request_order_and_ignore_read_only_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(bulk(json!([
                {"method": "POST", "path": "/Groups", "bulkId": "a", "data": {
                    "displayName": "A", "members": [{"type": "Group", "value": "bulkId:b"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "b", "data": {
                    "displayName": "B", "members": [{"type": "Group", "value": "bulkId:a"}]}},
                {"method": "PUT", "path": "/Groups/bulkId:a", "data": {
                    "displayName": "A2", "members": []}}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ops = v["Operations"].as_array().unwrap();
    assert_eq!(statuses(&v), ["201", "201", "200"], "{v}");
    assert_eq!(
        members(&s, ops[0]["location"].as_str().unwrap()).await,
        Vec::<String>::new(),
        "the PUT, last in the request, is last applied: {v}"
    );

    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(bulk(json!([
                {"method": "POST", "path": "/Users", "bulkId": "u", "data": {
                    "userName": "reader", "groups": [{"value": "bulkId:g"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {
                    "displayName": "Readers", "members": [{"value": "bulkId:u"}]}}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ops = v["Operations"].as_array().unwrap();
    assert_eq!(statuses(&v), ["201", "201"], "{v}");
    assert_eq!(
        members(&s, ops[1]["location"].as_str().unwrap()).await,
        vec![id_of(&ops[0])]
    );

    // A cycle that cannot be completed: its create is taken back, and an
    // operation on it is answered as one on a failed bulkId.
    let (st, _, _) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "taken"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(bulk(json!([
                {"method": "POST", "path": "/Users", "bulkId": "x", "data": {
                    "userName": "x", ENTERPRISE: {"manager": {"value": "bulkId:y"}}}},
                {"method": "POST", "path": "/Users", "bulkId": "y", "data": {
                    "userName": "taken", ENTERPRISE: {"manager": {"value": "bulkId:x"}}}},
                {"method": "DELETE", "path": "/Users/bulkId:x"}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(statuses(&v), ["409", "409", "409"], "{v}");
    let (_, _, list) = s
        .call(Method::GET, "/Users?filter=userName%20eq%20%22x%22", None)
        .await;
    assert_eq!(list["totalResults"], 0, "{list}");
    s.stop().await;
}

#[tokio::test]
async fn fail_on_errors_stops_after_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let mut req = bulk(json!([
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": "dup"}},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"userName": "dup"}},
        {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"userName": "never"}}
    ]));
    req["failOnErrors"] = json!(1);
    let (st, _, v) = s.call(Method::POST, "/Bulk", Some(req)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ops = v["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 2, "the third operation is not run: {v}");
    assert_eq!(ops[0]["status"], "201");
    assert_eq!(ops[1]["status"], "409");
    assert_eq!(ops[1]["response"]["scimType"], "uniqueness");
    let (_, _, list) = s
        .call(Method::GET, "/Users?filter=userName%20eq%20%22never%22", None)
        .await;
    assert_eq!(list["totalResults"], 0);

    // Without failOnErrors every operation runs; errors stay per operation.
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(bulk(json!([
                {"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": "dup"}},
                {"method": "POST", "path": "/Users", "bulkId": "y", "data": {"userName": "ok"}},
                {"method": "FETCH", "path": "/Users"},
                {"method": "POST", "path": "/Nowhere", "bulkId": "z", "data": {}},
                {"method": "PUT", "path": "/Users", "data": {"userName": "p"}}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(statuses(&v), ["409", "201", "400", "400", "400"], "{v}");
    s.stop().await;
}

#[tokio::test]
async fn versions_locations_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, h, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "v"})))
        .await;
    let id = u["id"].as_str().unwrap();
    let etag = h["etag"].to_str().unwrap().to_string();
    // A member of a group: its ETag carries the computed groups' digest.
    let (st, _, g) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "vg", "members": [{"value": id}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "replace", "path": "displayName", "value": "V"}]});
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(bulk(json!([
                {"method": "PUT", "path": format!("/Users/{id}"), "version": "W/\"99\"",
                 "data": {"userName": "v2"}},
                {"method": "PATCH", "path": format!("/Users/{id}"), "version": etag, "data": patch},
                {"method": "DELETE", "path": format!("/Users/{id}"), "version": etag}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ops = v["Operations"].as_array().unwrap();
    assert_eq!(ops[0]["status"], "412", "{v}");
    assert_eq!(ops[0]["response"]["status"], "412");
    assert_eq!(ops[1]["status"], "200", "{v}");
    assert_ne!(ops[1]["version"], etag);
    assert!(ops[1]["location"].as_str().unwrap().ends_with(&format!("/Users/{id}")));
    // The DELETE ran after the PATCH (same path, request order): its
    // version no longer matches.
    assert_eq!(ops[2]["status"], "412", "{v}");
    // The PATCH's version is the user's ETag, groups' digest included.
    let (_, h, _) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(ops[1]["version"], h["etag"].to_str().unwrap(), "{v}");
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(bulk(json!([
                {"method": "DELETE", "path": format!("/Users/{id}"), "version": ops[1]["version"]}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["Operations"][0]["status"], "204", "{v}");
    assert!(v["Operations"][0]["location"].as_str().unwrap().ends_with(id));
    let (st, _, _) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn limits_are_advertised_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| {
        c.bulk_max_operations = 5;
        c.bulk_max_payload = 2000;
    })
    .await;
    let (_, _, spc) = s.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(spc["bulk"], json!({"supported": true, "maxOperations": 5, "maxPayloadSize": 2000}));
    let six: Vec<Value> = (0..6)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")}))
        .collect();
    let (st, _, v) = s.call(Method::POST, "/Bulk", Some(bulk(json!(six)))).await;
    assert_scim_error(st, &v, 413, None);
    assert!(v["detail"].as_str().unwrap().contains("maxOperations"), "{v}");
    let big = json!([{"method": "POST", "path": "/Users", "bulkId": "b",
                      "data": {"userName": "x".repeat(3000)}}]);
    let (st, _, v) = s.call(Method::POST, "/Bulk", Some(bulk(big))).await;
    assert_scim_error(st, &v, 413, None);
    assert!(v["detail"].as_str().unwrap().contains("maxPayloadSize"), "{v}");
    let (st, v) = s.raw(Method::POST, "/Bulk", "{not json").await;
    assert_scim_error(st, &v, 400, Some("invalidSyntax"));
    s.stop().await;
}

/// `bulk` lets the request in; each operation still needs its own scope.
#[tokio::test]
async fn each_operation_needs_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let token = fetch_token(
        &s.anonymous,
        &s.root,
        &s.client_id,
        &s.client_secret,
        Some(&format!("{PREFIX}bulk {PREFIX}users.write")),
    )
    .await;
    let client = client_with_token(&token);
    let body = bulk(json!([
        {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "scoped"}},
        {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"displayName": "nope"}}
    ]));
    let resp = client
        .post(format!("{}/Bulk", s.base))
        .header("content-type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["Operations"][0]["status"], "201", "{v}");
    assert_eq!(v["Operations"][1]["status"], "403", "{v}");
    assert!(
        v["Operations"][1]["response"]["detail"]
            .as_str()
            .unwrap()
            .contains("groups.write"),
        "{v}"
    );
    let (_, _, groups) = s.call(Method::GET, "/Groups", None).await;
    assert_eq!(groups["totalResults"], 0);
    // Without `bulk`, the whole request is refused.
    let token = fetch_token(
        &s.anonymous,
        &s.root,
        &s.client_id,
        &s.client_secret,
        Some(&format!("{PREFIX}users.write")),
    )
    .await;
    let resp = client_with_token(&token)
        .post(format!("{}/Bulk", s.base))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    s.stop().await;
}
