//! FIDO and FIDO2 devices: Janssen's schemas, owned by a user (`userId`),
//! found by owner, deleted with the owner, guarded by the fido scopes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, assert_scim_error, client_with_token, fetch_token};

const PREFIX: &str = "https://jans.io/scim/";

pub fn fido_device(user: &str, n: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:FidoDevice"],
        "userId": user,
        "creationDate": "2024-01-02T03:04:05Z",
        "application": "https://app.example.com",
        "counter": n,
        "deviceHashCode": 1000 + n,
        "deviceKeyHandle": format!("kh-{n}"),
        "deviceRegistrationConf": "{}",
        "status": "active",
        "displayName": format!("key {n}"),
    })
}

pub fn fido2_device(user: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Fido2Device"],
        "userId": user,
        "creationDate": "2024-01-02T03:04:05Z",
        "counter": 1,
        "status": "registered",
        "deviceData": {"platform": "ios", "name": "phone"},
    })
}

async fn user(s: &Server, name: &str) -> String {
    let (st, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": name})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    u["id"].as_str().unwrap().to_string()
}

fn filter(attr_eq: &str) -> String {
    attr_eq.replace(' ', "%20").replace('"', "%22")
}

#[tokio::test]
async fn devices_belong_to_users_and_go_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, _, types) = s.call(Method::GET, "/ResourceTypes", None).await;
    let names: Vec<&str> = types["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"FidoDevice") && names.contains(&"Fido2Device"), "{names:?}");
    assert!(
        !types.to_string().contains("x-scimd-owner"),
        "scimd's own key is not served"
    );

    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let mut alice_devices = Vec::new();
    for n in 0..2 {
        let (st, _, d) = s
            .call(Method::POST, "/FidoDevices", Some(fido_device(&alice, n)))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{d}");
        alice_devices.push(format!("/FidoDevices/{}", d["id"].as_str().unwrap()));
    }
    let (st, _, d) = s
        .call(Method::POST, "/Fido2Devices", Some(fido2_device(&alice)))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    alice_devices.push(format!("/Fido2Devices/{}", d["id"].as_str().unwrap()));
    let (st, _, d) = s
        .call(Method::POST, "/FidoDevices", Some(fido_device(&bob, 9)))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let bobs = format!("/FidoDevices/{}", d["id"].as_str().unwrap());

    // The owner must exist.
    let (st, _, v) = s
        .call(Method::POST, "/FidoDevices", Some(fido_device("no-such-user", 3)))
        .await;
    assert_scim_error(st, &v, 400, Some("invalidValue"));
    assert!(v["detail"].as_str().unwrap().contains("no-such-user"), "{v}");
    let (st, _, v) = s
        .call(Method::POST, "/Fido2Devices", Some(fido2_device("no-such-user")))
        .await;
    assert_scim_error(st, &v, 400, Some("invalidValue"));

    // Found by owner.
    let (st, _, list) = s
        .call(
            Method::GET,
            &format!("/FidoDevices?filter={}", filter(&format!("userId eq \"{alice}\""))),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["totalResults"], 2, "{list}");
    let (_, _, list) = s
        .call(
            Method::GET,
            &format!("/Fido2Devices?filter={}", filter("deviceData.platform eq \"ios\"")),
            None,
        )
        .await;
    assert_eq!(list["totalResults"], 1, "{list}");

    // The owner cannot be changed (userId is immutable).
    let mut moved = fido_device(&bob, 0);
    moved["displayName"] = json!("renamed");
    let (st, _, v) = s.call(Method::PUT, &alice_devices[0], Some(moved)).await;
    assert_scim_error(st, &v, 400, Some("mutability"));
    let (st, _, v) = s
        .call(
            Method::PATCH,
            &alice_devices[0],
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "nickname", "value": "yubi"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["nickname"], "yubi");

    // A refused delete (stale If-Match) leaves the user and its devices: the
    // user and what it owns go in one transaction or not at all.
    let (st, _, _) = s
        .call_with(
            Method::DELETE,
            &format!("/Users/{alice}"),
            None,
            &[("If-Match", "W/\"999\"")],
        )
        .await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED);
    for path in &alice_devices {
        let (st, _, v) = s.call(Method::GET, path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
    }
    // Deleting the user deletes its devices, and only its devices.
    let (st, _, _) = s.call(Method::DELETE, &format!("/Users/{alice}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for path in &alice_devices {
        let (st, _, v) = s.call(Method::GET, path, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    let (st, _, _) = s.call(Method::GET, &bobs, None).await;
    assert_eq!(st, StatusCode::OK);
    // Also through Bulk.
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                        "Operations": [{"method": "DELETE", "path": format!("/Users/{bob}")}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["Operations"][0]["status"], "204", "{v}");
    let (st, _, _) = s.call(Method::GET, &bobs, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn fido_scopes_guard_the_device_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let alice = user(&s, "alice").await;
    let users_only = fetch_token(
        &s.anonymous,
        &s.root,
        &s.client_id,
        &s.client_secret,
        Some(&format!("{PREFIX}users.read {PREFIX}users.write")),
    )
    .await;
    let c = client_with_token(&users_only);
    for path in ["/FidoDevices", "/Fido2Devices"] {
        let resp = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
        let family = if path == "/FidoDevices" { "fido" } else { "fido2" };
        assert!(
            challenge.contains(&format!("scope=\"{PREFIX}{family}.read\"")),
            "{challenge}"
        );
    }
    let fido = fetch_token(
        &s.anonymous,
        &s.root,
        &s.client_id,
        &s.client_secret,
        Some(&format!("{PREFIX}fido.read {PREFIX}fido.write")),
    )
    .await;
    let c = client_with_token(&fido);
    let resp = c
        .post(format!("{}/FidoDevices", s.base))
        .header("content-type", "application/scim+json")
        .body(fido_device(&alice, 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = c.get(format!("{}/Fido2Devices", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    s.stop().await;
}
