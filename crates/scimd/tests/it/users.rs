use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Server, assert_scim_error};

fn bob() -> serde_json::Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob",
           "emails": [{"value": "bob@example.com", "primary": true}]})
}

#[tokio::test]
async fn curity_seed_crud_walkthrough() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    // Create
    let (st, h, user) = s.call(Method::POST, "/Users", Some(bob())).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(h["content-type"], "application/scim+json");
    let id = user["id"].as_str().unwrap().to_string();
    assert_eq!(
        h["location"].to_str().unwrap(),
        user["meta"]["location"].as_str().unwrap()
    );
    assert_eq!(
        h["etag"].to_str().unwrap(),
        user["meta"]["version"].as_str().unwrap()
    );
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_eq!(user["emails"][0]["value"], "bob@example.com");
    // Read
    let (st, _, got) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["userName"], "bob");
    // List
    let (st, _, list) = s.call(Method::GET, "/Users", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["Resources"][0]["id"], id.as_str());
    // Filter
    let (_, _, list) = s
        .call(Method::GET, "/Users?filter=userName%20eq%20%22BOB%22", None)
        .await;
    assert_eq!(list["totalResults"], 1, "userName is caseExact=false");
    let (_, _, list) = s
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22alice%22",
            None,
        )
        .await;
    assert_eq!(list["totalResults"], 0);
    assert_eq!(list["Resources"], json!([]));
    // .search with projection
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": "userName eq \"bob\"", "attributes": ["userName", "emails.value"]});
    let (st, _, found) = s.call(Method::POST, "/Users/.search", Some(search)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        found["Resources"][0],
        json!({"id": id, "userName": "bob", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "emails": [{"value": "bob@example.com"}]})
    );
    // PUT replaces: omitted attributes are cleared
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": id, "userName": "bob",
        "emails": [{"value": "bob-new-email@example.com", "primary": true}],
        "phoneNumbers": [{"value": "5551113333", "primary": true}],
        "name": {"givenName": "bob", "familyName": "builder"}});
    let (st, _, replaced) = s
        .call(Method::PUT, &format!("/Users/{id}"), Some(put))
        .await;
    assert_eq!(st, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["name"]["familyName"], "builder");
    assert_eq!(replaced["meta"]["version"], "W/\"2\"");
    let (_, _, replaced) = s
        .call(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(json!({"userName": "bob"})),
        )
        .await;
    assert!(
        replaced.get("name").is_none() && replaced.get("emails").is_none(),
        "{replaced}"
    );
    // Delete
    let (st, _, _) = s.call(Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, body) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_scim_error(st, &body, 404, None);
    s.stop().await;
}

#[tokio::test]
async fn schema_rules_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    // attribute names are case-insensitive; readOnly values are ignored; "True" strings coerce
    let (st, _, u) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"UserName": "carol", "Active": "True", "id": "mine",
              "groups": [{"value": "x"}], "meta": {"resourceType": "User"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    assert_eq!(u["userName"], "carol");
    assert_eq!(u["active"], true);
    assert_ne!(u["id"], "mine");
    assert!(u.get("groups").is_none());
    // password is write-only: stored hashed, never returned
    let (st, _, u) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "dave", "password": "s3cret"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(u.get("password").is_none());
    let (_, _, got) = s
        .call(
            Method::GET,
            &format!("/Users/{}?attributes=password", u["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(got.get("password").is_none());
    let (st, _, e) = s
        .call(
            Method::GET,
            "/Users?filter=password%20eq%20%22s3cret%22",
            None,
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidFilter"));
    // uniqueness, case-insensitive
    let (st, _, e) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "CAROL"})))
        .await;
    assert_scim_error(st, &e, 409, Some("uniqueness"));
    // required
    let (st, _, e) = s
        .call(Method::POST, "/Users", Some(json!({"displayName": "x"})))
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    // unknown attribute with a value, unknown empty URN tolerated
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "e", "shoeSize": 42})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    assert!(e["detail"].as_str().unwrap().contains("shoeSize"));
    let (st, _, _) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "f", "urn:example:unknown": {}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    // enterprise extension round trip and projection
    let (st, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "g",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D", "employeeNumber": "7"}})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    assert!(
        u["schemas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    let (_, _, list) = s
        .call(Method::GET, "/Users?filter=urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department%20eq%20%22r%26d%22&attributes=urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", None)
        .await;
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(
        list["Resources"][0]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        json!({"employeeNumber": "7"})
    );
    assert!(list["Resources"][0].get("userName").is_none());
    s.stop().await;
}

#[tokio::test]
async fn etags_give_412_and_304() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, h, u) = s.call(Method::POST, "/Users", Some(bob())).await;
    let id = u["id"].as_str().unwrap();
    let tag = h["etag"].to_str().unwrap().to_string();
    let (st, _, _) = s
        .call_with(
            Method::GET,
            &format!("/Users/{id}"),
            None,
            &[("If-None-Match", &tag)],
        )
        .await;
    assert_eq!(st, StatusCode::NOT_MODIFIED);
    let (st, _, _) = s
        .call_with(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(bob()),
            &[("If-Match", &tag)],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, e) = s
        .call_with(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(bob()),
            &[("If-Match", &tag)],
        )
        .await;
    assert_scim_error(st, &e, 412, None);
    let (st, _, e) = s
        .call_with(
            Method::DELETE,
            &format!("/Users/{id}"),
            None,
            &[("If-Match", &tag)],
        )
        .await;
    assert_scim_error(st, &e, 412, None);
    let (st, _, _) = s
        .call_with(
            Method::DELETE,
            &format!("/Users/{id}"),
            None,
            &[("If-Match", "W/\"2\"")],
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_creates_of_one_username_give_one_201() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(Server::start(dir.path()).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let name = if i % 2 == 0 { "race" } else { "RACE" };
            s.call(Method::POST, "/Users", Some(json!({"userName": name})))
                .await
                .0
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, conflicts), (1, 19));
}

#[tokio::test]
async fn paging_sorting_and_restart_keep_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    for i in 0..25 {
        let (st, _, _) = s
            .call(Method::POST, "/Users", Some(json!({"userName": format!("user{i:02}"), "name": {"familyName": format!("F{}", 25 - i)}})))
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let (_, _, page) = s
        .call(Method::GET, "/Users?startIndex=11&count=10", None)
        .await;
    assert_eq!(page["totalResults"], 25);
    assert_eq!(page["startIndex"], 11);
    assert_eq!(page["itemsPerPage"], 10);
    assert_eq!(page["Resources"][0]["userName"], "user10");
    let (_, _, page) = s.call(Method::GET, "/Users?count=0", None).await;
    assert_eq!(page["totalResults"], 25);
    assert_eq!(page["Resources"], json!([]));
    let (_, _, page) = s
        .call(
            Method::GET,
            "/Users?sortBy=userName&sortOrder=descending&count=2",
            None,
        )
        .await;
    assert_eq!(page["Resources"][0]["userName"], "user24");
    let (_, _, page) = s
        .call(
            Method::GET,
            "/Users?filter=userName%20sw%20%22user1%22&sortBy=name.familyName",
            None,
        )
        .await;
    assert_eq!(page["totalResults"], 10);
    assert_eq!(
        page["Resources"][0]["userName"], "user15",
        "F10 is first in text order (F10 < F11 .. < F6)"
    );
    assert_eq!(page["Resources"][9]["userName"], "user16", "F9 sorts last");
    s.stop().await;
    let s = Server::start(dir.path()).await;
    let (_, _, page) = s.call(Method::GET, "/Users?count=1", None).await;
    assert_eq!(
        page["totalResults"], 25,
        "every acknowledged create survives a restart"
    );
    s.stop().await;
}

fn query_text(text: &str) -> String {
    text.replace('%', "%25")
        .replace(' ', "%20")
        .replace('"', "%22")
        .replace('+', "%2B")
        .replace('&', "%26")
}

async fn ids_of(s: &Server, query: &str) -> Vec<String> {
    let (st, _, v) = s.call(Method::GET, &format!("/Users?{query}"), None).await;
    assert_eq!(st, StatusCode::OK, "{query}: {v}");
    v["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// `id` and `meta.*` are served from the resource row rather than from
/// index entries: filters, sorting and changes must still see them, and a
/// change that rewrites only some index rows must leave the rest right.
#[tokio::test]
async fn server_managed_attributes_filter_and_sort() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, _, a) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "first", "displayName": "A"})))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, _, b) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "second"})))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (st, _, a) = s
        .call(
            Method::PATCH,
            &format!("/Users/{a_id}"),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "userName", "value": "renamed"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    let f = |text: String| format!("filter={}", query_text(&text));
    let a_modified = a["meta"]["lastModified"].as_str().unwrap();
    let b_modified = b["meta"]["lastModified"].as_str().unwrap();
    let b_created = b["meta"]["created"].as_str().unwrap();
    assert_eq!(ids_of(&s, &f(format!("meta.lastModified gt \"{b_modified}\""))).await, [a_id]);
    assert_eq!(ids_of(&s, &f(format!("meta.lastModified le \"{b_modified}\""))).await, [b_id]);
    assert_eq!(ids_of(&s, &f(format!("meta.created lt \"{b_created}\""))).await, [a_id]);
    assert_eq!(ids_of(&s, &f(format!("meta.lastModified eq \"{a_modified}\""))).await, [a_id]);
    // The same instant written with an offset.
    let offset = a_modified.replace('Z', "+00:00");
    assert_eq!(ids_of(&s, &f(format!("meta.lastModified eq \"{offset}\""))).await, [a_id]);
    assert_eq!(ids_of(&s, &f(format!("id eq \"{b_id}\""))).await, [b_id]);
    assert_eq!(ids_of(&s, &f(format!("not (id eq \"{b_id}\")"))).await, [a_id]);
    assert_eq!(ids_of(&s, &f("meta.version eq \"W/\\\"2\\\"\"".into())).await, [a_id]);
    assert_eq!(
        ids_of(&s, &f("meta.resourceType eq \"User\" and meta.created pr".into())).await.len(),
        2
    );
    assert!(ids_of(&s, &f("meta.resourceType eq \"Group\"".into())).await.is_empty());
    assert_eq!(
        ids_of(&s, "sortBy=meta.lastModified&sortOrder=descending").await,
        [a_id, b_id]
    );
    assert_eq!(ids_of(&s, "sortBy=meta.lastModified").await, [b_id, a_id]);
    assert_eq!(ids_of(&s, "sortBy=meta.created").await, [a_id, b_id]);
    // Only the changed index rows were rewritten: the old name is gone and
    // free, the new one found, the untouched displayName still indexed.
    assert!(ids_of(&s, &f("userName eq \"first\"".into())).await.is_empty());
    assert_eq!(ids_of(&s, &f("userName eq \"renamed\"".into())).await, [a_id]);
    assert_eq!(ids_of(&s, &f("displayName eq \"A\"".into())).await, [a_id]);
    let (st, _, _) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "first"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _, _) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "RENAMED"})))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
}

#[tokio::test]
async fn concurrent_replaces_of_one_user_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(Server::start(dir.path()).await);
    let (_, _, u) = s.call(Method::POST, "/Users", Some(bob())).await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    // 32 clients replace the user at once, without If-Match: each PUT reads
    // the user (to keep what a replace keeps) and writes it back, and none
    // may be refused (a PUT that finds the user changed since its read is
    // redone with the resource held from read to write, so PUTs queue; a
    // compare-and-swap retried a bounded number of times could give up).
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (s, path) = (s.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"userName": "bob", "displayName": format!("bob {i}")});
            s.call(Method::PUT, &path, Some(body)).await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        let (st, _, p) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{p}");
        versions.push(p["meta"]["version"].as_str().unwrap().to_string());
    }
    // Each was its own write: 32 versions after the first, none twice.
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 32, "{versions:?}");
    let (_, _, u) = s.call(Method::GET, &path, None).await;
    assert_eq!(u["meta"]["version"], "W/\"33\"");
}
