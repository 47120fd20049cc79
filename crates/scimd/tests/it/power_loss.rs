//! Acknowledged writes survive a crash that loses everything not yet synced
//! to stable storage (issue 21), not only a SIGKILL that leaves the page
//! cache behind: scimd runs on the test-only volatile VFS
//! (`TESTING_SQLITE_VFS=volatile`, `scimd_testvfs`), which keeps unsynced
//! writes in the process's memory, and is killed while writes are in
//! flight. SQLite only: PostgreSQL's durability is its own (`pg_restart`).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::durability::{free_port, ready_client};

fn spawn(dir: &std::path::Path, port: u16, volatile: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scimd"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(dir.join(format!("scimd-{port}.log"))).unwrap())
        .stderr(Stdio::null());
    if volatile {
        cmd.env("TESTING_SQLITE_VFS", "volatile");
    }
    cmd.spawn().unwrap()
}

/// A user whose create was answered 201, and the title of its last PATCH
/// answered 200.
#[derive(Clone)]
struct Acknowledged {
    id: String,
    name: String,
    title: Option<String>,
}

#[tokio::test]
async fn acknowledged_writes_survive_losing_what_was_not_synced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let port = free_port();
    let mut child = spawn(dir.path(), port, true);
    let client = ready_client(dir.path(), port).await;
    let log = std::fs::read_to_string(dir.path().join(format!("scimd-{port}.log"))).unwrap();
    assert!(
        log.contains("test-only VFS"),
        "not on the volatile VFS: {log}"
    );
    let base = format!("http://127.0.0.1:{port}/scim/v2");

    // Sixteen writers create and then PATCH users until the process dies;
    // each keeps what was acknowledged: the user, and the last title that
    // a PATCH answered 200 for.
    let acknowledged: Arc<Mutex<Vec<Acknowledged>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..16 {
        let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let name = format!("w{w}-{n}");
                let Ok(r) = client
                    .post(format!("{base}/Users"))
                    .header("content-type", "application/scim+json")
                    .body(json!({"userName": name}).to_string())
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 201 {
                    return;
                }
                let Ok(user) = r.json::<Value>().await else {
                    return;
                };
                let id = user["id"].as_str().unwrap().to_string();
                let at = acknowledged.lock().unwrap().len();
                acknowledged.lock().unwrap().push(Acknowledged {
                    id: id.clone(),
                    name,
                    title: None,
                });
                let title = format!("title {n}");
                let patch = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "title", "value": title}]
                });
                let Ok(r) = client
                    .patch(format!("{base}/Users/{id}"))
                    .header("content-type", "application/scim+json")
                    .body(patch.to_string())
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 200 {
                    return;
                }
                acknowledged.lock().unwrap()[at].title = Some(title);
            }
        }));
    }
    // Kill during the load, with writes in flight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    child.kill().unwrap(); // SIGKILL: the unsynced writes die with it
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "too little load: {}",
        acknowledged.len()
    );

    // The files as the crash left them are a sound database.
    let db = rusqlite::Connection::open(dir.path().join("scimd.sqlite3")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);

    // A fresh start (the ordinary VFS: what a rebooted machine has) finds
    // every acknowledged user, with its acknowledged title.
    let port = free_port();
    let mut child = spawn(dir.path(), port, false);
    let client = ready_client(dir.path(), port).await;
    let base = format!("http://127.0.0.1:{port}/scim/v2");
    let mut lost = Vec::new();
    for Acknowledged { id, name, title } in &acknowledged {
        let r = client
            .get(format!("{base}/Users/{id}"))
            .send()
            .await
            .unwrap();
        let found = r.status() == 200 && {
            let user: Value = r.json().await.unwrap();
            user["userName"] == *name && title.as_ref().is_none_or(|t| user["title"] == *t)
        };
        if !found {
            lost.push(name.clone());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}
