//! `scimd export` of a store in use: the file is the store at one moment,
//! whatever is written while it is read, so that it always imports. And a
//! store an import did not finish, which neither serves nor exports.

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{self, Server};

/// An export's output that, once the first resource line is written, has
/// the server make changes (a new user added to the group, the first user
/// renamed) before the export reads on.
struct WritesMeanwhile {
    bytes: Vec<u8>,
    meanwhile: Option<Box<dyn FnOnce() + Send>>,
}

impl Write for WritesMeanwhile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        let lines = self.bytes.iter().filter(|b| **b == b'\n').count();
        if lines >= 2
            && let Some(meanwhile) = self.meanwhile.take()
        {
            meanwhile();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn created_id(status: StatusCode, body: &Value) -> String {
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_taken_during_writes_is_one_moment() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, body) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "first", "displayName": "First"})),
        )
        .await;
    let first = created_id(st, &body);
    let (st, _, body) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Staff", "members": [{"value": first}]})),
        )
        .await;
    let group = created_id(st, &body);

    let config = scimd::Config {
        data_dir: dir.path().to_path_buf(),
        database_url: harness::database_url(dir.path()).await.map(Into::into),
        ..scimd::Config::default()
    };
    let (store, _) = scimd::open_existing_store(&config).await.unwrap();
    let registry = scimd::load_registry(&config).unwrap();
    let (client, base) = (s.client.clone(), s.base.clone());
    let (group_in, first_in) = (group.clone(), first.clone());
    let mut out = WritesMeanwhile {
        bytes: Vec::new(),
        meanwhile: Some(Box::new(move || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    let later = client
                        .post(format!("{base}/Users"))
                        .json(&json!({"userName": "later"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(later.status(), StatusCode::CREATED);
                    let later: Value = later.json().await.unwrap();
                    let added = client
                        .patch(format!("{base}/Groups/{group_in}"))
                        .json(&json!({
                            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{"op": "add", "path": "members",
                                            "value": [{"value": later["id"]}]}]}))
                        .send()
                        .await
                        .unwrap();
                    assert!(added.status().is_success(), "{}", added.status());
                    let renamed = client
                        .patch(format!("{base}/Users/{first_in}"))
                        .json(&json!({
                            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{"op": "replace", "path": "displayName",
                                            "value": "Renamed"}]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(renamed.status(), StatusCode::OK);
                });
            });
        })),
    };
    let exported = scimd::transfer::export(&*store, &registry, &mut out, false)
        .await
        .unwrap();
    assert!(out.meanwhile.is_none(), "the writes ran during the export");
    assert_eq!(exported, 2, "the resources of the moment the export began");

    let text = String::from_utf8(out.bytes).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let members: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l.get("members"))
        .flat_map(|m| m["members"].as_array().unwrap())
        .collect();
    assert_eq!(
        members.iter().map(|m| &m["value"]).collect::<Vec<_>>(),
        [&json!(first)],
        "the group's members as they were when the export began"
    );
    assert!(
        !text.contains("Renamed") && !text.contains("later"),
        "no write made after the export began is in it"
    );

    // And it imports.
    let file = dir.path().join("moment.ndjson");
    std::fs::write(&file, &text).unwrap();
    let target = tempfile::tempdir().unwrap();
    let target = scimd::Config {
        data_dir: target.path().to_path_buf(),
        ..scimd::Config::default()
    };
    assert_eq!(scimd::import_from(&target, &file, false).await.unwrap(), 2);
    s.stop().await;
}

fn config_for(dir: &std::path::Path, url: Option<String>) -> scimd::Config {
    scimd::Config {
        data_dir: dir.to_path_buf(),
        database_url: url.map(Into::into),
        ..scimd::Config::default()
    }
}

#[tokio::test]
async fn a_half_finished_import_is_neither_served_nor_exported() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    for name in ["one", "two"] {
        let (st, _, body) = s
            .call(Method::POST, "/Users", Some(json!({"userName": name})))
            .await;
        created_id(st, &body);
    }
    s.stop().await;
    let source = config_for(dir.path(), harness::database_url(dir.path()).await);
    let whole = dir.path().join("whole.ndjson");
    assert_eq!(scimd::export_to(&source, &whole, false).await.unwrap(), 2);
    // The resources and records (written as they come), then a line the
    // import cannot read instead of the end line.
    let text = std::fs::read_to_string(&whole).unwrap();
    let mut cut: Vec<&str> = text.lines().collect();
    assert!(cut.pop().unwrap().starts_with("{\"end\""));
    assert!(cut.last().unwrap().starts_with("{\"record\""));
    cut.push("{\"resource\": 42}");
    let broken = dir.path().join("broken.ndjson");
    std::fs::write(&broken, cut.join("\n")).unwrap();

    let target_dir = tempfile::tempdir().unwrap();
    let target = config_for(
        target_dir.path(),
        harness::database_url(target_dir.path()).await,
    );
    let failed = scimd::import_from(&target, &broken, false)
        .await
        .unwrap_err();
    assert!(format!("{failed:#}").contains("half-way"), "{failed:#}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        scimd::serve(target.clone(), listener, std::future::pending()),
    )
    .await
    .expect("serve must refuse the store, not run")
    .unwrap_err();
    assert!(format!("{served:#}").contains("has not finished"), "{served:#}");
    let exported = scimd::export_to(&target, &dir.path().join("again.ndjson"), false)
        .await
        .unwrap_err();
    assert!(
        format!("{exported:#}").contains("has not finished"),
        "{exported:#}"
    );
    let again = scimd::import_from(&target, &whole, false)
        .await
        .unwrap_err();
    assert!(format!("{again:#}").contains("empty"), "{again:#}");

    // A store the import finished is no longer marked.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = config_for(
        fresh_dir.path(),
        harness::database_url(fresh_dir.path()).await,
    );
    assert_eq!(scimd::import_from(&fresh, &whole, false).await.unwrap(), 2);
    let copy = fresh_dir.path().join("copy.ndjson");
    assert_eq!(scimd::export_to(&fresh, &copy, false).await.unwrap(), 2);
}
