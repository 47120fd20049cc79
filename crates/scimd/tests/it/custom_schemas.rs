//! Schemas as configuration: the Curity Devices extension on User from
//! `examples/schemas/curity-devices`, a whole new resource type, and invalid
//! files that stop startup naming the file.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::Server;

const DEVICES: &str = "urn:se:curity:scim:2.0:Devices";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/schemas/curity-devices")
}

fn user(name: &str, devices: Value) -> Value {
    json!({"schemas": [USER, DEVICES], "userName": name, DEVICES: {"devices": devices}})
}

fn q(text: &str) -> String {
    text.replace('%', "%25")
        .replace(' ', "%20")
        .replace('"', "%22")
        .replace(':', "%3A")
}

async fn names(s: &Server, query: &str) -> Vec<String> {
    let (st, _, list) = s.call(Method::GET, &format!("/Users?{query}"), None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn curity_devices_extension_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| c.schemas_dir = Some(example_dir())).await;

    // Discovery lists the schema and the extension of User.
    let (st, _, schema) = s.call(Method::GET, &format!("/Schemas/{DEVICES}"), None).await;
    assert_eq!(st, StatusCode::OK, "{schema}");
    assert_eq!(schema["attributes"][0]["name"], "devices");
    let (_, _, schemas) = s.call(Method::GET, "/Schemas", None).await;
    assert!(schemas.to_string().contains(DEVICES));
    let (_, _, rt) = s.call(Method::GET, "/ResourceTypes/User", None).await;
    let exts: Vec<&str> = rt["schemaExtensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["schema"].as_str().unwrap())
        .collect();
    assert_eq!(
        exts,
        ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", DEVICES]
    );

    // Create and read.
    let (st, _, alice) = s
        .call(
            Method::POST,
            "/Users",
            Some(user(
                "alice",
                json!([{"deviceId": "d1", "deviceType": "webauthn", "alias": "YubiKey"},
                       {"deviceId": "d2", "deviceType": "totp"}]),
            )),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{alice}");
    let alice_id = alice["id"].as_str().unwrap().to_string();
    assert_eq!(alice[DEVICES]["devices"][0]["alias"], "YubiKey");
    assert!(alice["schemas"].to_string().contains(DEVICES));
    let (_, _, read) = s.call(Method::GET, &format!("/Users/{alice_id}"), None).await;
    assert_eq!(read[DEVICES]["devices"].as_array().unwrap().len(), 2, "{read}");
    let (st, _, bob) = s
        .call(
            Method::POST,
            "/Users",
            Some(user("bob", json!([{"deviceId": "d3", "deviceType": "sms"}]))),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bob}");
    let bob_id = bob["id"].as_str().unwrap().to_string();
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Users",
            Some(user("carol", json!([{"deviceId": "d4", "colour": "red"}]))),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "unknown sub-attribute: {v}");

    // Filter and sort on the extension.
    let by_type = |t: &str| format!("filter={}", q(&format!("{DEVICES}:devices.deviceType eq \"{t}\"")));
    assert_eq!(names(&s, &by_type("totp")).await, ["alice"]);
    assert_eq!(names(&s, &by_type("sms")).await, ["bob"]);
    assert_eq!(
        names(&s, &format!("filter={}", q(&format!("{DEVICES}:devices[alias co \"yubi\"]")))).await,
        ["alice"]
    );
    assert_eq!(
        names(&s, &format!("sortBy={}&sortOrder=descending", q(&format!("{DEVICES}:devices.deviceId")))).await,
        ["bob", "alice"]
    );

    // PATCH: add a device to bob, then filter finds him by it.
    let (st, _, v) = s
        .call(
            Method::PATCH,
            &format!("/Users/{bob_id}"),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "add", "path": format!("{DEVICES}:devices"),
                                        "value": [{"deviceId": "d5", "deviceType": "webauthn"}]}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v[DEVICES]["devices"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(names(&s, &by_type("webauthn")).await, ["alice", "bob"]);
    let (st, _, v) = s
        .call(
            Method::PATCH,
            &format!("/Users/{bob_id}"),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "remove",
                                        "path": format!("{DEVICES}:devices[deviceType eq \"sms\"]")}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(names(&s, &by_type("sms")).await.is_empty());

    // PUT replaces the devices (omitted: cleared).
    let (st, _, v) = s
        .call(
            Method::PUT,
            &format!("/Users/{alice_id}"),
            Some(user("alice", json!([{"deviceId": "d9", "deviceType": "passkey"}]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(names(&s, &by_type("passkey")).await, ["alice"]);
    assert!(names(&s, &by_type("totp")).await.is_empty());
    let (st, _, v) = s
        .call(
            Method::PUT,
            &format!("/Users/{alice_id}"),
            Some(json!({"schemas": [USER], "userName": "alice"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.get(DEVICES).is_none(), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn a_whole_new_resource_type() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = tempfile::tempdir().unwrap();
    std::fs::write(
        schemas.path().join("printer.json"),
        json!([{
            "id": "urn:example:scim:schemas:Printer", "name": "Printer",
            "attributes": [
                {"name": "name", "type": "string", "required": true, "uniqueness": "server"},
                {"name": "pagesPerMinute", "type": "integer"},
                {"name": "pin", "type": "string", "mutability": "writeOnly"}
            ]
        }])
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        schemas.path().join("printer_type.json"),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
               "id": "Printer", "name": "Printer", "endpoint": "/Printers",
               "schema": "urn:example:scim:schemas:Printer"})
        .to_string(),
    )
    .unwrap();
    let path = schemas.path().to_path_buf();
    let s = Server::start_with(dir.path(), |c| c.schemas_dir = Some(path)).await;
    let (st, _, p) = s
        .call(
            Method::POST,
            "/Printers",
            Some(json!({"name": "hall", "pagesPerMinute": 30, "pin": "1234"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!(p["pagesPerMinute"], 30);
    // Write-only, though its schema leaves `returned` out: never served.
    assert!(p.get("pin").is_none(), "{p}");
    let (_, _, read) = s
        .call(Method::GET, &format!("/Printers/{}", p["id"].as_str().unwrap()), None)
        .await;
    assert!(read.get("pin").is_none(), "{read}");
    let (st, _, _) = s
        .call(Method::POST, "/Printers", Some(json!({"name": "HALL"})))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, _, list) = s
        .call(Method::GET, "/Printers?filter=pagesPerMinute%20gt%2010", None)
        .await;
    assert_eq!(list["totalResults"], 1, "{list}");

    // An export without the type's definition would leave the printer out.
    let mut config = scimd::Config {
        data_dir: dir.path().to_path_buf(),
        database_url: crate::harness::database_url(dir.path())
            .await
            .map(Into::into),
        ..scimd::Config::default()
    };
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, "last night's export").unwrap();
    let refused = scimd::export_to(&config, &file, false).await.unwrap_err();
    assert!(
        refused.to_string().contains("1 of type Printer"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "last night's export",
        "a refused export leaves the file it would replace"
    );
    assert!(!dir.path().join("export.ndjson.partial").exists());
    config.schemas_dir = Some(schemas.path().to_path_buf());
    assert_eq!(scimd::export_to(&config, &file, false).await.unwrap(), 1);
    s.stop().await;
}

async fn start_error(files: &[(&str, Value)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let schemas = tempfile::tempdir().unwrap();
    for (name, doc) in files {
        std::fs::write(schemas.path().join(name), doc.to_string()).unwrap();
    }
    let config = scimd::Config {
        data_dir: dir.path().to_path_buf(),
        database_url: crate::harness::database_url(dir.path()).await.map(Into::into),
        schemas_dir: Some(schemas.path().to_path_buf()),
        ..scimd::Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = scimd::serve(config, listener, async {})
        .await
        .expect_err("an invalid schema file must stop startup");
    format!("{err:#}")
}

#[tokio::test]
async fn invalid_schema_files_stop_startup_naming_the_file() {
    let msg = start_error(&[(
        "broken.json",
        json!({"id": "urn:x:Broken", "attributes": [{"name": "a", "type": "strng"}]}),
    )])
    .await;
    assert!(msg.contains("broken.json"), "{msg}");
    assert!(msg.contains("strng"), "{msg}");

    let msg = start_error(&[(
        "ext.json",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
               "id": "User", "name": "User", "endpoint": "/Users",
               "schema": "urn:ietf:params:scim:schemas:core:2.0:User",
               "schemaExtensions": [{"schema": "urn:x:Missing", "required": false}]}),
    )])
    .await;
    assert!(msg.contains("ext.json") && msg.contains("urn:x:Missing"), "{msg}");

    // An endpoint whose scopes would be another's, or an operational one.
    let printer = json!([{"id": "urn:x:Printer", "name": "Printer",
                          "attributes": [{"name": "name", "type": "string"}]}]);
    let at = |endpoint: &str| {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
               "id": "Printer", "name": "Printer", "endpoint": endpoint, "schema": "urn:x:Printer"})
    };
    let msg = start_error(&[("p.json", printer.clone()), ("t.json", at("/Audit"))]).await;
    assert!(msg.contains("/Audit") && msg.contains("audit.read"), "{msg}");
    let msg = start_error(&[("p.json", printer.clone()), ("t.json", at("/Fido"))]).await;
    assert!(msg.contains("/Fido") && msg.contains("fido.read"), "{msg}");
    // An endpoint a fixed route would hide.
    let msg = start_error(&[("p.json", printer.clone()), ("t.json", at("/Bulk"))]).await;
    assert!(msg.contains("/Bulk") && msg.contains("keeps"), "{msg}");
    // A name another type has: the store keys rows by it.
    let named_user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Printer", "name": "User", "endpoint": "/Printers", "schema": "urn:x:Printer"});
    let msg = start_error(&[("p.json", printer), ("t.json", named_user)]).await;
    assert!(msg.contains("'User'") && msg.contains("twice"), "{msg}");
    // Schema rules that would fail later, or leak.
    for (attributes, says) in [
        (
            json!([{"name": "tags", "type": "string", "multiValued": true, "uniqueness": "server"}]),
            "uniqueness",
        ),
        (
            json!([{"name": "seats", "type": "integer", "uniqueness": "server"}]),
            "uniqueness",
        ),
        (
            json!([{"name": "c", "type": "complex", "subAttributes": [
                {"name": "value", "type": "string"}, {"name": "Value", "type": "string"}]}]),
            "twice",
        ),
    ] {
        let msg = start_error(&[(
            "s.json",
            json!({"id": "urn:x:Rules", "attributes": attributes}),
        )])
        .await;
        assert!(msg.contains("s.json") && msg.contains(says), "{msg}");
    }
    // A copy of the built-in Users type loads: its extension counts once.
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    std::fs::write(
        copy.path().join("users.json"),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
               "id": "User", "name": "User", "endpoint": "/Users",
               "schema": "urn:ietf:params:scim:schemas:core:2.0:User",
               "schemaExtensions": [{"schema":
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "required": false}]})
        .to_string(),
    )
    .unwrap();
    let path = copy.path().to_path_buf();
    let s = Server::start_with(dir.path(), |c| c.schemas_dir = Some(path)).await;
    let (st, _, u) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "copied",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    assert_eq!(u["schemas"].as_array().unwrap().len(), 2, "{u}");
    s.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let schemas = tempfile::tempdir().unwrap();
    std::fs::write(schemas.path().join("garbage.json"), "{ not json").unwrap();
    let config = scimd::Config {
        data_dir: dir.path().to_path_buf(),
        schemas_dir: Some(schemas.path().to_path_buf()),
        database_url: crate::harness::database_url(dir.path()).await.map(Into::into),
        ..scimd::Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let msg = format!("{:#}", scimd::serve(config, listener, async {}).await.unwrap_err());
    assert!(msg.contains("garbage.json") && msg.contains("not JSON"), "{msg}");
}

/// An operator's owned type may spell its owner type in any case: writes
/// find the owner, and the owner's delete takes what it owns.
#[tokio::test]
async fn an_owner_type_named_in_another_case() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = tempfile::tempdir().unwrap();
    std::fs::write(
        schemas.path().join("badge.json"),
        json!([{"id": "urn:example:scim:schemas:Badge", "name": "Badge",
                "attributes": [{"name": "userId", "type": "string", "required": true,
                                "mutability": "immutable"}]}])
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        schemas.path().join("badge_type.json"),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
               "id": "Badge", "name": "Badge", "endpoint": "/Badges",
               "schema": "urn:example:scim:schemas:Badge",
               "x-scimd-owner": {"attribute": "userId", "resourceType": "user"}})
        .to_string(),
    )
    .unwrap();
    let path = schemas.path().to_path_buf();
    let s = Server::start_with(dir.path(), |c| c.schemas_dir = Some(path)).await;
    let (st, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "holder"})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let user = u["id"].as_str().unwrap();
    let (st, _, b) = s
        .call(Method::POST, "/Badges", Some(json!({"userId": user})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, _, _) = s.call(Method::DELETE, &format!("/Users/{user}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = s
        .call(Method::GET, &format!("/Badges/{}", b["id"].as_str().unwrap()), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "deleted with its owner");
    s.stop().await;
}
