//! Regressions found by the scim2-tester conformance suite (`.ci/conformance`,
//! docs/conformance.md): each test sends the request shape the suite sent.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, assert_scim_error};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn ops(list: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list})
}

/// scim2-tester `check_add_attribute` / `check_replace_attribute` [User]: the
/// path is the extension URN and the value repeats the extension's own URN
/// in a `schemas` member.
#[tokio::test]
async fn extension_object_may_repeat_its_own_schema_urn() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "ext"})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let path = format!("/Users/{}", u["id"].as_str().unwrap());

    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "add", "path": ENTERPRISE,
                "value": {"schemas": [ENTERPRISE], "employeeNumber": "42", "manager": {"value": "m-1"}}}]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p[ENTERPRISE]["employeeNumber"], "42", "{p}");
    assert_eq!(p[ENTERPRISE]["manager"]["value"], "m-1", "{p}");
    assert!(p[ENTERPRISE].get("schemas").is_none(), "{p}");
    assert!(
        p["schemas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == ENTERPRISE),
        "{p}"
    );

    // replace keeps the sub-attributes it does not name (RFC 7644 3.5.2.3)
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "replace", "path": ENTERPRISE,
                "value": {"schemas": [ENTERPRISE], "department": "R&D"}}]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p[ENTERPRISE]["department"], "R&D", "{p}");
    assert_eq!(p[ENTERPRISE]["employeeNumber"], "42", "{p}");

    // the same in a path-less value and in a POST body
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "replace",
                "value": {ENTERPRISE: {"schemas": [ENTERPRISE], "division": "D"}}}]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p[ENTERPRISE]["division"], "D", "{p}");
    let (st, _, c) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "ext2",
                ENTERPRISE: {"schemas": [ENTERPRISE], "costCenter": "C"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c[ENTERPRISE]["costCenter"], "C", "{c}");
    assert!(c[ENTERPRISE].get("schemas").is_none(), "{c}");

    // a `schemas` naming another schema contradicts its place: nothing applied
    let (st, _, e) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "add", "path": ENTERPRISE,
                "value": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "employeeNumber": "43"}}]))),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    let (_, _, g) = s.call(Method::GET, &path, None).await;
    assert_eq!(g[ENTERPRISE]["employeeNumber"], "42", "{g}");
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users",
            Some(
                json!({"userName": "ext3", ENTERPRISE: {"schemas": ["urn:x"], "costCenter": "C"}}),
            ),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    s.stop().await;
}

/// What scim2-tester `core_schemas_validation` means to check, checked by
/// the schemas' ids: /Schemas lists the Schema, ResourceType and
/// ServiceProviderConfig schemas, with their RFC 7643 section 8.7.2 names
/// (docs/conformance.md explains why the check, which looks for the name
/// "ServiceProviderConfig", is excluded).
#[tokio::test]
async fn schemas_endpoint_lists_the_discovery_schemas_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, list) = s.call(Method::GET, "/Schemas", None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let resources = list["Resources"].as_array().unwrap();
    for (id, name) in [
        ("urn:ietf:params:scim:schemas:core:2.0:Schema", "Schema"),
        (
            "urn:ietf:params:scim:schemas:core:2.0:ResourceType",
            "ResourceType",
        ),
        (
            "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig",
            "Service Provider Configuration",
        ),
    ] {
        let found = resources.iter().find(|r| r["id"] == id);
        assert_eq!(found.map(|r| &r["name"]), Some(&json!(name)), "{id}");
    }
    s.stop().await;
}
