use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, assert_scim_error};

fn ops(list: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list})
}

#[tokio::test]
async fn patch_users_as_real_clients_send_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "bob", "emails": [{"value": "bob@example.com", "primary": true}]})))
        .await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    // Curity: path-less add whose value is a one-element array.
    let (st, _, p) = s
        .call(Method::PATCH, &path, Some(ops(json!([{"op": "add", "value": [{"phoneNumbers": [{"value": "5551113333", "primary": true}],
            "name": {"givenName": "bob", "familyName": "builder"}}]}]))))
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["name"]["familyName"], "builder");
    assert_eq!(p["phoneNumbers"][0]["value"], "5551113333");
    assert_eq!(p["meta"]["version"], "W/\"2\"");
    // Entra: capitalised ops, "False", value-path create-on-absent, URN path.
    let (st, _, p) = s
        .call(Method::PATCH, &path, Some(ops(json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "x@test.example"},
            {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "Eqpj"},
            {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Oslo"},
            {"op": "Add", "path": "addresses[type eq \"work\"].region", "value": "Oslo"}
        ]))))
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["active"], false);
    assert_eq!(p["name"]["givenName"], "Gtfd");
    assert_eq!(p["name"]["familyName"], "builder");
    let emails = p["emails"].as_array().unwrap();
    assert!(
        emails
            .iter()
            .any(|e| e["type"] == "work" && e["value"] == "x@test.example"),
        "{p}"
    );
    assert_eq!(
        p["addresses"].as_array().unwrap().len(),
        1,
        "two sub-attribute ops build one element: {p}"
    );
    assert_eq!(
        p["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
        "Eqpj"
    );
    // Entra (aadOptscim062020): path-less replace with dotted and URN keys.
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(
                json!([{"op": "replace", "value": {"displayName": "Bjfe", "name.familyName": "Unua",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq"}}]),
            )),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["displayName"], "Bjfe");
    assert_eq!(p["name"]["familyName"], "Unua");
    assert!(p["name"].get("name.familyName").is_none());
    // Filtered by the new values.
    let (_, _, list) = s
        .call(
            Method::GET,
            "/Users?filter=emails%5Btype%20eq%20%22work%22%5D.value%20eq%20%22x%22",
            None,
        )
        .await;
    assert_eq!(
        list["status"], "400",
        "sub-attribute after ] in a filter is not RFC grammar: {list}"
    );
    let (_, _, list) = s
        .call(
            Method::GET,
            "/Users?filter=emails%5Btype%20eq%20%22work%22%20and%20value%20co%20%22test%22%5D",
            None,
        )
        .await;
    assert_eq!(list["totalResults"], 1, "{list}");
    // All-or-nothing: a bad second op leaves the first unapplied.
    let (st, _, e) = s
        .call(Method::PATCH, &path, Some(ops(json!([{"op": "replace", "path": "displayName", "value": "Nope"},
                                                     {"op": "replace", "path": "shoeSize", "value": 1}]))))
        .await;
    assert_scim_error(st, &e, 400, Some("invalidPath"));
    let (_, _, got) = s.call(Method::GET, &path, None).await;
    assert_eq!(got["displayName"], "Bjfe");
    // Read-only target, bad op, stale If-Match, minimal answer.
    let (st, _, e) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(
                json!([{"op": "replace", "path": "meta.created", "value": "x"}]),
            )),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("mutability"));
    let (st, _, e) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "frobnicate", "path": "x"}]))),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    let (st, _, e) = s
        .call_with(
            Method::PATCH,
            &path,
            Some(ops(
                json!([{"op": "replace", "path": "nickName", "value": "B"}]),
            )),
            &[("If-Match", "W/\"1\"")],
        )
        .await;
    assert_scim_error(st, &e, 412, None);
    let (st, h, body) = s
        .call_with(
            Method::PATCH,
            &path,
            Some(ops(
                json!([{"op": "Add", "path": "nickName", "value": "Babs"}]),
            )),
            &[("Prefer", "return=minimal")],
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert!(body.is_null());
    assert!(h.get("etag").is_some());
    // Okta deactivation.
    let (_, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "replace", "value": {"active": true}}]))),
        )
        .await;
    assert_eq!(p["active"], true);
    assert_eq!(p["nickName"], "Babs");
    s.stop().await;
}

#[tokio::test]
async fn patch_group_members_as_real_clients_send_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, _, u) = s
            .call(
                Method::POST,
                "/Users",
                Some(json!({"userName": format!("m{i}")})),
            )
            .await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let (_, _, g) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Team", "members": []})),
        )
        .await;
    let path = format!("/Groups/{}", g["id"].as_str().unwrap());
    let count = |g: &Value| g["members"].as_array().map_or(0, Vec::len);
    // Entra add with $ref null, repeated (idempotent).
    // A membership-only PATCH answers 204 with the new ETag (the group may
    // be huge); naming attributes gets the 200 with the resource.
    for _ in 0..2 {
        let (st, h, g) = s
            .call(Method::PATCH, &path, Some(ops(json!([{"op": "Add", "path": "members",
                "value": [{"$ref": null, "value": ids[0]}, {"value": ids[1]}, {"value": ids[2]}]}]))))
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{g}");
        assert!(h.get("etag").is_some());
        let (_, _, g) = s.call(Method::GET, &path, None).await;
        assert_eq!(count(&g), 3);
    }
    // Entra/authentik remove with a value array removes only those.
    let (st, _, g) = s
        .call(
            Method::PATCH,
            &format!("{path}?attributes=members"),
            Some(ops(
                json!([{"op": "Remove", "path": "members", "value": [{"value": ids[0]}]}]),
            )),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(count(&g), 2, "{g}");
    // Okta: remove by value filter, rename carrying the read-only id.
    let (_, _, g) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([
            {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[1])},
            {"op": "replace", "value": {"id": g["id"], "displayName": "Team 2"}}]))),
        )
        .await;
    assert_eq!(count(&g), 1, "{g}");
    assert_eq!(g["displayName"], "Team 2");
    // Unknown member: 400 and nothing applied.
    let (st, _, e) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(
                json!([{"op": "add", "path": "members", "value": [{"value": "ghost"}]}]),
            )),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    // Okta "push now" on an empty group clears it.
    let (_, _, g) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(
                json!([{"op": "replace", "path": "members", "value": []}]),
            )),
        )
        .await;
    assert!(g.is_null(), "204: {g}");
    let (_, _, g) = s.call(Method::GET, &path, None).await;
    assert_eq!(count(&g), 0, "{g}");
    s.stop().await;
}

/// A membership-only PATCH changes the group's version without rewriting its
/// document: the version check (If-Match), the new ETag and 404 still hold.
#[tokio::test]
async fn membership_patches_keep_versions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "member"})))
        .await;
    let member = u["id"].as_str().unwrap().to_string();
    let (_, _, g) = s
        .call(Method::POST, "/Groups", Some(json!({"displayName": "Versioned"})))
        .await;
    let path = format!("/Groups/{}", g["id"].as_str().unwrap());
    assert_eq!(g["meta"]["version"], "W/\"1\"");
    let add = ops(json!([{"op": "add", "path": "members", "value": [{"value": member}]}]));
    let (st, _, e) = s
        .call_with(Method::PATCH, &path, Some(add.clone()), &[("If-Match", "W/\"2\"")])
        .await;
    assert_scim_error(st, &e, 412, None);
    let (_, _, g) = s.call(Method::GET, &path, None).await;
    assert!(g["members"].as_array().is_none_or(Vec::is_empty), "412 applied nothing: {g}");
    let (st, h, _) = s
        .call_with(Method::PATCH, &path, Some(add.clone()), &[("If-Match", "W/\"1\"")])
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(h.get("etag").unwrap(), "W/\"2\"");
    let (_, h, g) = s.call(Method::GET, &path, None).await;
    assert_eq!(h.get("etag").unwrap(), "W/\"2\"");
    assert_eq!(g["meta"]["version"], "W/\"2\"");
    assert_eq!(g["members"][0]["value"], member.as_str());
    let (st, _, e) = s
        .call(Method::PATCH, "/Groups/no-such-group", Some(add))
        .await;
    assert_scim_error(st, &e, 404, None);
    s.stop().await;
}

#[tokio::test]
async fn thirty_two_clients_adding_members_to_one_group_lose_none() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(Server::start(dir.path()).await);
    let (_, _, g) = s
        .call(Method::POST, "/Groups", Some(json!({"displayName": "Big"})))
        .await;
    let path = format!("/Groups/{}", g["id"].as_str().unwrap());
    let mut ids = Vec::new();
    for i in 0..32 {
        let (_, _, u) = s
            .call(
                Method::POST,
                "/Users",
                Some(json!({"userName": format!("c{i}")})),
            )
            .await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let mut tasks = Vec::new();
    for id in ids {
        let s = s.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            s.call_with(
                Method::PATCH,
                &path,
                Some(ops(
                    json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
                )),
                &[("Prefer", "return=minimal")],
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::NO_CONTENT);
    }
    let (_, _, g) = s.call(Method::GET, &path, None).await;
    assert_eq!(g["members"].as_array().unwrap().len(), 32);
    assert_eq!(
        g["meta"]["version"], "W/\"33\"",
        "each membership change bumps the version"
    );
    let (_, _, g) = s
        .call(
            Method::GET,
            &format!("{path}?excludedAttributes=members"),
            None,
        )
        .await;
    assert!(g.get("members").is_none());
}

#[tokio::test]
async fn concurrent_patches_of_one_user_lose_none() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(Server::start(dir.path()).await);
    let (_, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "busy"})))
        .await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    // 32 clients each add an email at once: each PATCH reads the user and
    // writes it back, and none may overwrite another's email or be refused
    // (a PATCH that finds the user changed since its read is redone with
    // the resource held from read to write, so PATCHes queue; a
    // compare-and-swap retried at most 16 times could give up).
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (s, path) = (s.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let body = ops(json!([{"op": "add", "path": "emails",
                "value": [{"value": format!("e{i}@example.com"), "type": "work"}]}]));
            s.call(Method::PATCH, &path, Some(body)).await
        }));
    }
    for t in tasks {
        let (st, _, p) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{p}");
    }
    let (_, _, u) = s.call(Method::GET, &path, None).await;
    assert_eq!(u["emails"].as_array().unwrap().len(), 32, "{u}");
    assert_eq!(u["meta"]["version"], "W/\"33\"");
    // A new password is hashed before it is stored (the general path, with
    // the hashing off the async workers): answered like any other PATCH.
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "replace", "path": "password", "value": "n3w-Secret"}]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert!(p.get("password").is_none(), "{p}");
    assert_eq!(p["meta"]["version"], "W/\"34\"");
    // A later PATCH keeps the stored hash and changes what it says.
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "replace", "path": "displayName", "value": "Busy"}]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["displayName"], "Busy");
    assert_eq!(p["emails"].as_array().unwrap().len(), 32, "{p}");
    // Unknown id and stale If-Match, on the PATCH that runs in the store.
    let (st, _, e) = s
        .call(Method::PATCH, "/Users/nobody", Some(ops(json!([{"op": "replace", "path": "displayName", "value": "x"}]))))
        .await;
    assert_scim_error(st, &e, 404, None);
    let (st, _, e) = s
        .call_with(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "replace", "path": "displayName", "value": "x"}]))),
            &[("If-Match", "W/\"3\"")],
        )
        .await;
    assert_scim_error(st, &e, 412, None);
    let (_, _, u) = s.call(Method::GET, &path, None).await;
    assert_eq!(u["displayName"], "Busy");
    assert_eq!(u["meta"]["version"], "W/\"35\"");
}

/// `primary` moves to the element a PATCH names, whether it exists already
/// or a value path creates it, and names in values are case-insensitive.
#[tokio::test]
async fn primaries_move_and_names_in_values_ignore_case() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, u) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "prim", "name": {"givenName": "P"},
                "emails": [{"value": "a@x.example", "type": "home", "primary": true},
                           {"value": "b@x.example", "type": "other"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    let primaries = |p: &Value| -> Vec<String> {
        p["emails"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["primary"] == true)
            .map(|e| e["value"].as_str().unwrap().to_string())
            .collect()
    };
    // An element that is there already, sent again as primary (Okta).
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "add", "path": "emails",
                              "value": [{"value": "b@x.example", "primary": true}]}]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(primaries(&p), ["b@x.example"], "{p}");
    assert_eq!(p["emails"].as_array().unwrap().len(), 2, "{p}");
    // A value path that creates a primary element (Entra).
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([{"op": "replace", "path": "emails[type eq \"work\"]",
                              "value": {"value": "w@x.example", "primary": true}}]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(primaries(&p), ["w@x.example"], "{p}");
    // Sub-attribute names in values, in any case.
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([
                {"op": "add", "path": "name", "value": {"GivenName": "Q"}},
                {"op": "add", "path": "emails[type eq \"work\"]", "value": {"Display": "Work"}},
                {"op": "add", "path": "emails", "value": [{"Value": "c@x.example", "Primary": true}]}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["name"]["givenName"], "Q", "{p}");
    assert_eq!(primaries(&p), ["c@x.example"], "{p}");
    let work = p["emails"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "work")
        .unwrap();
    assert_eq!(work["display"], "Work", "{p}");
    // Elements without `value` (addresses) are matched whole, but for
    // `primary`, which the same PATCH may have just taken from them.
    let home = json!({"type": "home", "locality": "Oslo"});
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([
                {"op": "add", "path": "addresses", "value": [
                    {"type": "home", "locality": "Oslo", "primary": true}]},
                {"op": "add", "path": "addresses", "value": [
                    {"type": "work", "locality": "Bergen", "primary": true},
                    {"type": "home", "locality": "Oslo", "primary": false}]}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let addresses = p["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), 2, "{p}");
    assert_eq!(addresses[0]["locality"], home["locality"]);
    assert_eq!(addresses[1]["primary"], true, "{p}");
    s.stop().await;
}

/// Adding or removing many values of a multi-valued attribute in one PATCH
/// takes time in proportion to their number (it was quadratic: 40,000
/// values took minutes of CPU, most of it on the writer's thread).
#[tokio::test]
async fn many_values_in_one_patch_take_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    // As much as a Bulk request may carry (4 MiB).
    let s = Server::start_with(dir.path(), |c| c.max_body = 4 << 20).await;
    let (st, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "many"})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    let values: Vec<Value> = (0..40_000)
        .map(|i| json!({"value": format!("+1555{i:07}")}))
        .collect();
    let started = std::time::Instant::now();
    let (st, _, p) = s
        .call(
            Method::PATCH,
            &path,
            Some(ops(json!([
                {"op": "add", "path": "phoneNumbers", "value": values.clone()},
                {"op": "remove", "path": "phoneNumbers", "value": values[..20_000].to_vec()}
            ]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(p["phoneNumbers"].as_array().unwrap().len(), 20_000);
    // Quadratic, this was some 10^9 comparisons; linear, a few seconds of a
    // debug build at most.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}
