use reqwest::{Method, StatusCode};

use crate::harness::{Server, assert_scim_error};

#[tokio::test]
async fn discovery_is_complete_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, spc) = s.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(spc["filter"]["supported"], true);
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], true);
    assert_eq!(spc["bulk"]["maxOperations"], 1000);
    assert_eq!(spc["bulk"]["maxPayloadSize"], 4 * 1024 * 1024);
    let (_, _, types) = s.call(Method::GET, "/ResourceTypes", None).await;
    // User, Group, FidoDevice, Fido2Device.
    assert_eq!(types["totalResults"], 4);
    let (st, _, user) = s.call(Method::GET, "/ResourceTypes/User", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(user["endpoint"], "/Users");
    let (_, _, schemas) = s.call(Method::GET, "/Schemas", None).await;
    assert!(schemas["totalResults"].as_u64().unwrap() >= 3);
    let (st, _, schema) = s
        .call(
            Method::GET,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let attrs = schema["attributes"].as_array().unwrap();
    assert!(
        attrs
            .iter()
            .any(|a| a["name"] == "userName" && a["uniqueness"] == "server")
    );
    let (st, _, e) = s
        .call(Method::POST, "/Schemas", Some(serde_json::json!({})))
        .await;
    assert_scim_error(st, &e, 405, None);
    let resp = reqwest::get(s.base.replace("/scim/v2", "/readyz"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    s.stop().await;
}

/// The OpenAPI document declares every path parameter, and the status of
/// each operation's success as the server answers it.
#[tokio::test]
async fn openapi_declares_path_parameters_and_success_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let s = crate::harness::Server::start(dir.path()).await;
    let doc: serde_json::Value = s
        .anonymous
        .get(format!("{}/openapi.json", s.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        let wanted: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(declared, wanted, "{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            // What the server answers: 201 for a create (not a search or
            // Bulk), 204 for a delete.
            let creates = method == "post"
                && path.starts_with("/scim/v2")
                && !path.ends_with(".search")
                && !path.ends_with("/Bulk");
            let success = match method.as_str() {
                _ if creates => "201",
                "delete" => "204",
                _ => "200",
            };
            assert!(responses.contains_key(success), "{method} {path}: {responses:?}");
        }
    }
    assert!(paths["/scim/v2/Users/{id}"]["get"]["parameters"][0]["name"] == "id");
    // And the server answers so.
    let body = serde_json::json!({"userName": "doc"});
    let (st, _, user) = s.call(reqwest::Method::POST, "/Users", Some(body)).await;
    assert_eq!(st, reqwest::StatusCode::CREATED);
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    let (st, _, _) = s.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(st, reqwest::StatusCode::NO_CONTENT);
    s.stop().await;
}
