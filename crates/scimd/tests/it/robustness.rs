//! Inputs found by a black-box sweep of the API (malformed ids, odd PATCH
//! values, unsupported filters, Bulk cycles that fail): each gets a SCIM
//! error and leaves nothing behind.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Server, assert_scim_error, fetch_token};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn patch(ops: Value) -> Option<Value> {
    Some(json!({"schemas": [PATCH_OP], "Operations": ops}))
}

/// Writes what `request` makes of the server's address over a raw socket and
/// returns the start of the answer (for requests an HTTP client will not send).
async fn raw_exchange(s: &Server, request: impl FnOnce(&str) -> String) -> String {
    let addr = s.root.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket.write_all(request(&addr).as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), socket.read(&mut answer))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// PATCHes `displayName` of the resource at `path` under `If-Match: tags`.
async fn rename_if_match(s: &Server, path: &str, name: &str, tags: &str) -> (StatusCode, Value) {
    let rename = patch(json!([{"op": "replace", "path": "displayName", "value": name}]));
    let (st, _, out) = s
        .call_with(Method::PATCH, path, rename, &[("if-match", tags)])
        .await;
    (st, out)
}

async fn user(s: &Server, body: Value) -> (String, Value) {
    let (st, _, u) = s.call(Method::POST, "/Users", Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    (u["id"].as_str().unwrap().to_string(), u)
}

#[tokio::test]
async fn odd_ids_and_paths_get_scim_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    // Deleting a user also deletes its FIDO devices, found by a filter on
    // the id: an id past the filter's length budget was a 500.
    for id in ["a".repeat(9000), "%22".repeat(4100), "%5C".repeat(4100)] {
        let (st, _, e) = s.call(Method::DELETE, &format!("/Users/{id}"), None).await;
        assert_scim_error(st, &e, 404, None);
        assert!(e["detail"].as_str().unwrap().len() < 200, "the id is not echoed whole");
    }
    let (st, _, e) = s.call(Method::GET, "/Users/%FF%FE", None).await;
    assert_scim_error(st, &e, 404, None);
    let (st, _, e) = s.call(Method::DELETE, "/Groups/%C3%28", None).await;
    assert_scim_error(st, &e, 404, None);
    // The base URI with its slash is the root query (RFC 7644 3.4.2), and
    // takes GET only.
    let (st, _, all) = s.call(Method::GET, "/?count=0", None).await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert_eq!(all["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:ListResponse");
    let (st, _, e) = s.call(Method::DELETE, "/", None).await;
    assert_scim_error(st, &e, 405, None);
    // Methods a route does not take: a SCIM 405 with its Allow header.
    for (method, path) in [
        (Method::PUT, "/Users"),
        (Method::GET, "/Users/.search"),
        (Method::GET, "/Bulk"),
    ] {
        let (st, headers, e) = s.call(method, path, None).await;
        assert_scim_error(st, &e, 405, None);
        assert!(headers.contains_key("allow"), "{path}");
    }
    // A declared length above the limit is refused before the body is read:
    // the head alone, over a raw socket (an HTTP client would refuse to send
    // a length it does not keep).
    let token = fetch_token(&s.anonymous, &s.root, &s.client_id, &s.client_secret, None).await;
    let answer = raw_exchange(&s, |addr| {
        format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: 419430400\r\n\r\n"
        )
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Discovery documents are not filtered (RFC 7644 section 4).
    let (st, _, e) = s
        .call(Method::GET, "/Schemas?filter=id%20eq%20%22x%22", None)
        .await;
    assert_scim_error(st, &e, 403, None);
    // Bulk with the same ids: per-operation 404s.
    let (st, _, out) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [
                    {"method": "DELETE", "path": format!("/Users/{}", "a".repeat(8200))},
                    {"method": "DELETE", "path": "/Users/a\u{1}b"},
                ]
            })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    for op in out["Operations"].as_array().unwrap() {
        assert_eq!(op["status"], "404", "{op}");
    }
    s.stop().await;
}

#[tokio::test]
async fn patch_refuses_values_it_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (id, created) = user(
        &s,
        json!({"userName": "odd", "emails": [{"value": "w@x.com", "type": "work"}],
               ENTERPRISE: {"employeeNumber": "7"}}),
    )
    .await;
    let path = format!("/Users/{id}");
    let refused = [
        // A matching value path takes an object: this deleted the element.
        (json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": "x"}]), "invalidValue"),
        (json!([{"op": "add", "path": "emails[type eq \"work\"]", "value": 5}]), "invalidValue"),
        // An extension takes an object: these were ignored, the version bumped.
        (json!([{"op": "replace", "path": ENTERPRISE, "value": "x"}]), "invalidValue"),
        (json!([{"op": "add", "value": {ENTERPRISE: 5}}]), "invalidValue"),
        // The id is read-only: only the current value is ignored (Okta).
        (json!([{"op": "replace", "path": "id", "value": "another"}]), "mutability"),
        (json!([{"op": "remove", "path": "id"}]), "mutability"),
        (json!([{"op": "replace", "value": {"id": "another"}}]), "mutability"),
        // A required attribute cannot be emptied.
        (json!([{"op": "replace", "path": "userName", "value": ""}]), "invalidValue"),
    ];
    for (ops, scim_type) in refused {
        let (st, _, e) = s.call(Method::PATCH, &path, patch(ops.clone())).await;
        assert_scim_error(st, &e, 400, Some(scim_type));
        let (_, _, now) = s.call(Method::GET, &path, None).await;
        assert_eq!(now, created, "{ops} changed nothing");
    }
    let same_id = json!([{"op": "replace", "value": {"id": id, "displayName": "Odd"}}]);
    let (st, _, u) = s.call(Method::PATCH, &path, patch(same_id)).await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(u["displayName"], "Odd");
    // Replacing the extension with null unassigns it.
    let (st, _, u) = s
        .call(Method::PATCH, &path, patch(json!([{"op": "replace", "path": ENTERPRISE, "value": null}])))
        .await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert!(u.get(ENTERPRISE).is_none(), "{u}");
    // An empty userName is refused on create as well.
    let (st, _, e) = s
        .call(Method::POST, "/Users", Some(json!({"userName": ""})))
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    s.stop().await;
}

#[tokio::test]
async fn large_patches_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (id, _) = user(&s, json!({"userName": "many"})).await;
    let path = format!("/Users/{id}");
    let creates = |n: usize| {
        (0..n)
            .map(|i| json!({"op": "add", "path": format!("emails[value eq \"m{i}@x.com\"].type"), "value": "work"}))
            .collect::<Vec<_>>()
    };
    // More operations than bulk.maxOperations (1,000 by default): 413.
    let (st, _, e) = s.call(Method::PATCH, &path, patch(json!(creates(1001)))).await;
    assert_scim_error(st, &e, 413, None);
    // Past the in-store threshold (64) the PATCH is computed elsewhere, with
    // the same result: one element per value path, in order.
    let (st, _, u) = s.call(Method::PATCH, &path, patch(json!(creates(300)))).await;
    assert_eq!(st, StatusCode::OK, "{u}");
    let emails = u["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 300);
    assert_eq!(emails[299], json!({"value": "m299@x.com", "type": "work"}));
    assert_eq!(u["meta"]["version"], "W/\"2\"");
    s.stop().await;
}

#[tokio::test]
async fn membership_filters_find_members_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (u1, _) = user(&s, json!({"userName": "u1"})).await;
    let (u2, _) = user(&s, json!({"userName": "u2"})).await;
    user(&s, json!({"userName": "u3"})).await;
    let group = |name: &str, members: Vec<&str>| {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        Some(json!({"displayName": name, "members": members}))
    };
    let (_, _, inner) = s.call(Method::POST, "/Groups", group("inner", vec![&u1])).await;
    let inner = inner["id"].as_str().unwrap().to_string();
    let (_, _, outer) = s
        .call(Method::POST, "/Groups", group("outer", vec![&inner, &u2]))
        .await;
    let outer = outer["id"].as_str().unwrap().to_string();
    s.call(Method::POST, "/Groups", group("empty", vec![])).await;
    let names = |page: &Value| {
        let mut names: Vec<String> = page["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let name = r.get("userName").or_else(|| r.get("displayName"));
                name.unwrap().as_str().unwrap().to_string()
            })
            .collect();
        names.sort();
        names
    };
    let found = [
        ("/Groups", format!("members.value eq \"{u1}\""), vec!["inner"]),
        ("/Groups", format!("members[value eq \"{u2}\"]"), vec!["outer"]),
        ("/Groups", "members pr".to_string(), vec!["inner", "outer"]),
        ("/Groups", "not (members pr)".to_string(), vec!["empty"]),
        (
            "/Groups",
            format!("members.value eq \"{u1}\" or displayName eq \"outer\""),
            vec!["inner", "outer"],
        ),
        // groups holds indirect groups too: u1 is in outer through inner.
        ("/Users", format!("groups.value eq \"{outer}\""), vec!["u1", "u2"]),
        ("/Users", format!("groups[value eq \"{inner}\"]"), vec!["u1"]),
        ("/Users", "not (groups pr)".to_string(), vec!["u3"]),
        ("", format!("groups.value eq \"{outer}\""), vec!["u1", "u2"]),
        ("", format!("members.value eq \"{inner}\""), vec!["outer"]),
    ];
    for (path, filter, want) in found {
        let (st, _, page) = s
            .call(
                Method::POST,
                &format!("{path}/.search"),
                Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                            "filter": filter})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{filter}: {page}");
        assert_eq!(names(&page), want, "{path} {filter}");
        assert_eq!(page["totalResults"], want.len(), "{filter}");
    }
    // Other membership terms are refused, not answered with nothing.
    for (path, filter) in [
        ("/Groups", "members.display eq \"u1\""),
        ("/Groups", "members.value ne \"x\""),
        ("/Users", "groups[type eq \"direct\"]"),
    ] {
        let (st, _, e) = s
            .call(
                Method::POST,
                &format!("{path}/.search"),
                Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                            "filter": filter})),
            )
            .await;
        assert_scim_error(st, &e, 400, Some("invalidFilter"));
    }
    // PATCH value paths on members still match the group's elements.
    let (st, _, _) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{outer}"),
            patch(json!([{"op": "remove", "path": format!("members[value eq \"{u2}\"]")}])),
        )
        .await;
    assert!(st.is_success());
    let (_, _, page) = s
        .call(
            Method::GET,
            &format!("/Users?filter=groups.value%20eq%20%22{outer}%22"),
            None,
        )
        .await;
    assert_eq!(names(&page), vec!["u1"]);
    s.stop().await;
}

#[tokio::test]
async fn a_failed_bulk_cycle_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    // f1 and f2 name each other; f2 is invalid (no displayName). f1 is
    // created without its member to break the cycle, then must go again.
    for fail_on_errors in [None, Some(1)] {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "POST", "path": "/Groups", "bulkId": "f1",
                 "data": {"displayName": "cycle-f1", "members": [{"value": "bulkId:f2"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "f2",
                 "data": {"members": [{"value": "bulkId:f1"}]}},
            ]
        });
        if let Some(n) = fail_on_errors {
            body["failOnErrors"] = json!(n);
        }
        let (st, _, out) = s.call(Method::POST, "/Bulk", Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{out}");
        for op in out["Operations"].as_array().unwrap() {
            assert_ne!(op["status"].as_str().unwrap().chars().next(), Some('2'), "{out}");
            assert!(op.get("location").is_none(), "{out}");
        }
        let (_, _, list) = s
            .call(Method::GET, "/Groups?filter=displayName%20eq%20%22cycle-f1%22", None)
            .await;
        assert_eq!(list["totalResults"], 0, "{fail_on_errors:?}: {out}");
    }
    s.stop().await;
}

#[tokio::test]
async fn root_search_keeps_a_qualified_path_to_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    user(&s, json!({"userName": "both", "displayName": "Same Name"})).await;
    let (st, _, _) = s
        .call(Method::POST, "/Groups", Some(json!({"displayName": "Same Name"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let search = |filter: &str| {
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": filter}))
    };
    let types_found = |page: &Value| {
        let mut types: Vec<String> = page["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["meta"]["resourceType"].as_str().unwrap().to_string())
            .collect();
        types.sort();
        types
    };
    for (filter, want) in [
        ("displayName eq \"Same Name\"", vec!["Group", "User"]),
        ("urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq \"Same Name\"", vec!["Group"]),
        ("urn:ietf:params:scim:schemas:core:2.0:User:displayName eq \"Same Name\"", vec!["User"]),
        ("userName eq \"both\" or displayName eq \"Same Name\"", vec!["Group", "User"]),
    ] {
        let (st, _, page) = s.call(Method::POST, "/.search", search(filter)).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert_eq!(types_found(&page), want, "{filter}");
        assert_eq!(page["totalResults"], want.len(), "{filter}");
    }
    s.stop().await;
}

#[tokio::test]
async fn if_none_match_guards_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (id, created) = user(&s, json!({"userName": "guarded"})).await;
    let path = format!("/Users/{id}");
    let current = "W/\"1\"";
    let rename = patch(json!([{"op": "replace", "path": "displayName", "value": "x"}]));
    for (method, body, tag) in [
        (Method::PATCH, rename.clone(), current),
        (Method::PATCH, rename.clone(), "*"),
        (Method::PUT, Some(json!({"userName": "guarded", "displayName": "x"})), "*"),
        (Method::DELETE, None, current),
        (Method::DELETE, None, "W/\"7\", W/\"1\""),
    ] {
        let (st, _, e) = s
            .call_with(method.clone(), &path, body, &[("if-none-match", tag)])
            .await;
        assert_scim_error(st, &e, 412, None);
        let (st, _, now) = s.call(Method::GET, &path, None).await;
        assert_eq!((st, &now), (StatusCode::OK, &created), "{method} {tag}");
    }
    // Another version named: the write goes ahead; with a stale If-Match it does not.
    let (st, _, e) = s
        .call_with(
            Method::PATCH,
            &path,
            rename.clone(),
            &[("if-none-match", "W/\"7\""), ("if-match", "W/\"3\"")],
        )
        .await;
    assert_scim_error(st, &e, 412, None);
    let (st, headers, u) = s
        .call_with(Method::PATCH, &path, rename, &[("if-none-match", "W/\"7\"")])
        .await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(headers["etag"], "W/\"2\"");
    let (st, _, e) = s
        .call_with(Method::DELETE, "/Users/nobody", None, &[("if-none-match", "*")])
        .await;
    assert_scim_error(st, &e, 404, None);
    s.stop().await;
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let token = fetch_token(&s.anonymous, &s.root, &s.client_id, &s.client_secret, None).await;
    let bearer = format!("Bearer {token}");
    for second in [bearer.as_str(), "Bearer garbage", "Basic eDp5"] {
        let resp = s
            .anonymous
            .get(format!("{}/Users", s.base))
            .header("authorization", &bearer)
            .header("authorization", second)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{second}");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.contains("error=\"invalid_request\""), "{challenge}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "400");
    }
    let resp = s
        .anonymous
        .post(format!("{}/oauth/token", s.root))
        .basic_auth(&s.client_id, Some(&s.client_secret))
        .header("authorization", "Basic eDp5")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_token_form_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let padding = "x".repeat(100 * 1024);
    let form = [("grant_type", "client_credentials"), ("scope", padding.as_str())];
    // Declared length (reqwest sets it).
    let declared = s
        .anonymous
        .post(format!("{}/oauth/token", s.root))
        .basic_auth(&s.client_id, Some(&s.client_secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.headers()["cache-control"], "no-store");
    let body: Value = declared.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    // The same size in chunks (no length declared), over a raw socket.
    let chunk = format!("grant_type=client_credentials&scope={padding}");
    let answer = raw_exchange(&s, |addr| {
        format!(
            "POST /oauth/token HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A form of ordinary size still gets its token.
    fetch_token(&s.anonymous, &s.root, &s.client_id, &s.client_secret, None).await;
    s.stop().await;
}

#[tokio::test]
async fn bulk_fields_of_the_wrong_type_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (id, created) = user(&s, json!({"userName": "bulked"})).await;
    let (st, _, out) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [
                    // A numeric version was dropped and the PUT made unconditionally.
                    {"method": "PUT", "path": format!("/Users/{id}"), "version": 5,
                     "data": {"userName": "bulked", "displayName": "changed"}},
                    {"method": "POST", "path": "/Users", "bulkId": "",
                     "data": {"userName": "empty-bulk-id"}},
                ]
            })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    for op in out["Operations"].as_array().unwrap() {
        assert_eq!(op["status"], "400", "{out}");
    }
    let (_, _, now) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(now, created);
    let (_, _, list) = s
        .call(Method::GET, "/Users?filter=userName%20eq%20%22empty-bulk-id%22", None)
        .await;
    assert_eq!(list["totalResults"], 0);
    s.stop().await;
}

#[tokio::test]
async fn messages_for_another_endpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (id, _) = user(&s, json!({"userName": "messenger"})).await;
    let search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let bulk = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
    let patch_op = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
    let bulk_ops = json!([{"method": "POST", "path": "/Users", "bulkId": "a",
                           "data": {"userName": "bulk-misfiled"}}]);
    // A body whose schemas name another message: 400 invalidSyntax, nothing done.
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(json!({"schemas": [search], "Operations": bulk_ops})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users/.search",
            Some(json!({"schemas": [patch_op], "filter": "userName eq \"messenger\""})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    let (st, _, e) = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [bulk],
                        "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    let (st, _, found) = s
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22bulk-misfiled%22",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(found["totalResults"], 0, "{found}");
    // Without schemas, or with the URN in another case, each is taken as meant.
    let (st, _, out) = s
        .call(
            Method::POST,
            "/Users/.search",
            Some(json!({"filter": "userName eq \"messenger\""})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["totalResults"], 1);
    let (st, _, out) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(json!({"schemas": [bulk.to_uppercase()], "Operations": bulk_ops})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["Operations"][0]["status"], "201", "{out}");
    s.stop().await;
}

#[tokio::test]
async fn conditional_requests_follow_rfc_9110() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (id, created) = user(&s, json!({"userName": "conditional"})).await;
    let path = format!("/Users/{id}");
    let first = created["meta"]["version"].as_str().unwrap().to_string();
    // If-Match is a list: any tag in it will do, in any position.
    let listed = format!("W/\"99\", {first}");
    let (st, out) = rename_if_match(&s, &path, "c", &listed).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let (st, e) = rename_if_match(&s, &path, "d", "W/\"98\", W/\"99\"").await;
    assert_scim_error(st, &e, 412, None);
    // A comma inside a quoted tag does not split it: "x,2,y" is not version 2.
    let (st, _, _) = s
        .call_with(Method::GET, &path, None, &[("if-none-match", "\"x,2,y\"")])
        .await;
    assert_eq!(st, StatusCode::OK);
    // Several header lines are one list.
    let (_, _, now) = s.call(Method::GET, &path, None).await;
    let current = now["meta"]["version"].as_str().unwrap().to_string();
    let (st, _, _) = s
        .call_with(
            Method::GET,
            &path,
            None,
            &[("if-none-match", "W/\"97\""), ("if-none-match", &current)],
        )
        .await;
    assert_eq!(st, StatusCode::NOT_MODIFIED);
    // If-None-Match: * names any current representation.
    let (st, _, _) = s
        .call_with(Method::GET, &path, None, &[("if-none-match", "*")])
        .await;
    assert_eq!(st, StatusCode::NOT_MODIFIED);
    // Joining a group changes the user's representation (its computed
    // groups), so its tag changes although the user itself was not written.
    let (_, headers, before) = s.call(Method::GET, &path, None).await;
    let before_tag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(before["meta"]["version"], before_tag.as_str());
    let (st, _, g) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "joined", "members": [{"value": id}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let (st, headers, after) = s
        .call_with(Method::GET, &path, None, &[("if-none-match", &before_tag)])
        .await;
    assert_eq!(st, StatusCode::OK, "a stale representation was not modified?");
    assert_eq!(after["groups"][0]["value"], g["id"]);
    let after_tag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(after["meta"]["version"], after_tag.as_str());
    assert_ne!(after_tag, before_tag);
    let (st, _, _) = s
        .call_with(Method::GET, &path, None, &[("if-none-match", &after_tag)])
        .await;
    assert_eq!(st, StatusCode::NOT_MODIFIED);
    // Renaming the group changes the groups' display, and so the tag again.
    let (st, _, _) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{}", g["id"].as_str().unwrap()),
            patch(json!([{"op": "replace", "path": "displayName", "value": "renamed"}])),
        )
        .await;
    assert!(st.is_success());
    let (st, headers, _) = s
        .call_with(Method::GET, &path, None, &[("if-none-match", &after_tag)])
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(headers["etag"], after_tag.as_str());
    // Without the groups shown, the tag is the user's own version.
    let (_, headers, own) = s
        .call(Method::GET, &format!("{path}?excludedAttributes=groups"), None)
        .await;
    assert_eq!(headers["etag"], before_tag.as_str());
    assert_eq!(own["meta"]["version"], before_tag.as_str());
    // A Bulk PATCH reports the resource's ETag as its version, the groups'
    // digest included, as a GET then shows it.
    let (st, _, out) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [{"method": "PATCH", "path": path,
                    "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                             "Operations": [{"op": "replace", "path": "nickName", "value": "n"}]}}]
            })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let (_, headers, fresh) = s.call(Method::GET, &path, None).await;
    let shown = fresh["meta"]["version"].as_str().unwrap();
    let reported = out["Operations"][0]["version"].as_str().unwrap();
    assert_eq!(reported, shown);
    assert_eq!(headers["etag"], fresh["meta"]["version"].as_str().unwrap());
    let renamed_tag = headers["etag"].to_str().unwrap().to_string();
    // A write checks the user's own version: the tag with the groups digest
    // names it, since a write cannot change memberships.
    let (st, out) = rename_if_match(&s, &path, "e", &renamed_tag).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    s.stop().await;
}

#[tokio::test]
async fn immutable_values_compare_as_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (owner, _) = user(&s, json!({"userName": "device-owner"})).await;
    let device = crate::fido::fido_device(&owner, 1);
    let (st, _, d) = s.call(Method::POST, "/FidoDevices", Some(device.clone())).await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let path = format!("/FidoDevices/{}", d["id"].as_str().unwrap());
    // The same instant written with fractions or another offset is the same
    // immutable value; another instant is not.
    for same in ["2024-01-02T03:04:05.000Z", "2024-01-02T04:04:05+01:00"] {
        let mut body = device.clone();
        body["creationDate"] = json!(same);
        let (st, _, out) = s.call(Method::PUT, &path, Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{same}: {out}");
    }
    let mut body = device.clone();
    body["creationDate"] = json!("2024-01-02T03:04:06Z");
    let (st, _, e) = s.call(Method::PUT, &path, Some(body)).await;
    assert_scim_error(st, &e, 400, Some("mutability"));
    // A PATCH cannot remove an immutable value (a PUT that omits it keeps it).
    let (_, _, before) = s.call(Method::GET, &path, None).await;
    let (st, _, e) = s
        .call(
            Method::PATCH,
            &path,
            patch(json!([{"op": "remove", "path": "creationDate"}])),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("mutability"));
    let (_, _, now) = s.call(Method::GET, &path, None).await;
    assert_eq!(now["creationDate"], "2024-01-02T03:04:05Z");
    assert_eq!(now["meta"]["version"], before["meta"]["version"]);
    s.stop().await;
}

#[tokio::test]
async fn hidden_values_stay_hidden_and_projections_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = tempfile::tempdir().unwrap();
    std::fs::write(
        schemas.path().join("gadget.json"),
        json!([{
            "id": "urn:example:scim:schemas:Gadget", "name": "Gadget",
            "attributes": [
                {"name": "serial", "type": "string", "required": true},
                {"name": "secret", "type": "string", "returned": "never"},
                {"name": "location", "type": "complex", "subAttributes": [
                    {"name": "tag", "type": "string", "returned": "always"},
                    {"name": "room", "type": "string"}
                ]}
            ]
        }])
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        schemas.path().join("gadget_type.json"),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
               "id": "Gadget", "name": "Gadget", "endpoint": "/Gadgets",
               "schema": "urn:example:scim:schemas:Gadget"})
        .to_string(),
    )
    .unwrap();
    let path = schemas.path().to_path_buf();
    let s = Server::start_with(dir.path(), |c| c.schemas_dir = Some(path)).await;
    let (st, _, g) = s
        .call(
            Method::POST,
            "/Gadgets",
            Some(json!({"serial": "g1", "secret": "s3cret",
                        "location": {"tag": "T1", "room": "R1"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    assert!(g.get("secret").is_none(), "{g}");
    let gid = g["id"].as_str().unwrap();
    // A never-returned value cannot be filtered or sorted on (a `sw` filter
    // would spell it out).
    let (st, _, e) = s
        .call(Method::GET, "/Gadgets?filter=secret%20sw%20%22s%22", None)
        .await;
    assert_scim_error(st, &e, 400, Some("invalidFilter"));
    let (st, _, e) = s.call(Method::GET, "/Gadgets?sortBy=secret", None).await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    // returned: always sub-attributes show when their parent is not selected.
    let (_, _, only) = s
        .call(Method::GET, &format!("/Gadgets/{gid}?attributes=serial"), None)
        .await;
    assert_eq!(only["location"], json!({"tag": "T1"}), "{only}");
    let (_, _, without) = s
        .call(Method::GET, &format!("/Gadgets/{gid}?excludedAttributes=location"), None)
        .await;
    assert_eq!(without["location"], json!({"tag": "T1"}), "{without}");
    // Stray commas are skipped; an item that is no attribute path is 400.
    let (st, _, trailing) = s
        .call(Method::GET, &format!("/Gadgets/{gid}?attributes=serial,,"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(trailing["serial"], "g1", "{trailing}");
    let (st, _, e) = s
        .call(
            Method::GET,
            &format!("/Gadgets/{gid}?excludedAttributes=location[tag%20eq%20%22T1%22]"),
            None,
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    // Commas only are no list; a list past the budget (1,024 entries) is 400.
    let (_, _, whole) = s
        .call(Method::GET, &format!("/Gadgets/{gid}?attributes=,,"), None)
        .await;
    assert_eq!(whole["serial"], "g1", "{whole}");
    assert_eq!(whole["location"]["room"], "R1", "{whole}");
    let many = vec!["serial"; 1100].join(",");
    let (st, _, e) = s
        .call(Method::POST, "/Gadgets/.search", Some(json!({"attributes": many})))
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    // A user whose every name part is excluded has no `name`, not null.
    let (uid, _) = user(
        &s,
        json!({"userName": "parts", "name": {"givenName": "A", "familyName": "B"},
               "emails": [{"value": "a@example.com", "type": "work"}]}),
    )
    .await;
    let (_, _, u) = s
        .call(
            Method::GET,
            &format!(
                "/Users/{uid}?excludedAttributes=name.givenName,name.familyName,emails.value,emails.type"
            ),
            None,
        )
        .await;
    assert!(u.get("name").is_none() && u.get("emails").is_none(), "{u}");
    // Memberships cannot be sorted by: 400, not an unsorted page.
    for (endpoint, key) in [("Groups", "members.value"), ("Users", "groups.display")] {
        let (st, _, e) = s
            .call(Method::GET, &format!("/{endpoint}?sortBy={key}"), None)
            .await;
        assert_scim_error(st, &e, 400, Some("invalidValue"));
    }
    // Root search: a sortBy only Groups have is accepted.
    let (st, _, out) = s
        .call(
            Method::POST,
            "/.search",
            Some(json!({"sortBy": "urn:ietf:params:scim:schemas:core:2.0:Group:displayName"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    // Passwords can be changed, and the configuration says so.
    let (_, _, config) = s.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(config["changePassword"]["supported"], true);
    s.stop().await;
}

#[tokio::test]
async fn a_name_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    // Attribute names are case-insensitive: these name displayName twice.
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "twice", "displayName": "a", "DISPLAYNAME": "b"})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "twice", enterprise: {"department": "a", "Department": "b"}})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "twice", "name": {"givenName": "a", "GIVENNAME": "b"}})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    // A path-less PATCH in another case replaces the one attribute.
    let (id, _) = user(&s, json!({"userName": "once", "displayName": "a"})).await;
    let (st, _, out) = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            patch(json!([{"op": "replace", "value": {"DISPLAYNAME": "b"}}])),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["displayName"], "b");
    s.stop().await;
}

#[tokio::test]
async fn the_base_uri_answers_queries_over_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    user(&s, json!({"userName": "rootq"})).await;
    let (st, _, _) = s
        .call(Method::POST, "/Groups", Some(json!({"displayName": "rootq-g"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let filter = "filter=userName%20eq%20%22rootq%22%20or%20displayName%20eq%20%22rootq-g%22";
    // With and without the slash after the base URI.
    for url in [format!("{}?{filter}", s.base), format!("{}/?{filter}", s.base)] {
        let out: Value = s.client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(out["totalResults"], 2, "{url}: {out}");
        let types: Vec<&str> = out["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["meta"]["resourceType"].as_str().unwrap())
            .collect();
        assert!(types.contains(&"User") && types.contains(&"Group"), "{types:?}");
    }
    // The scope is the root search's, as for POST /.search.
    let narrow = fetch_token(
        &s.anonymous,
        &s.root,
        &s.client_id,
        &s.client_secret,
        Some("https://jans.io/scim/users.read"),
    )
    .await;
    let resp = crate::harness::client_with_token(&narrow)
        .get(format!("{}/?{filter}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    s.stop().await;
}
