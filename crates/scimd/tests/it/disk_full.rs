//! The data directory on a small filesystem that fills up (SQLite only; a
//! tmpfs mounted by the test, so it runs where mounting is allowed: as root,
//! as `.ci/run` is): writes are refused with 507 and a SCIM error, never a
//! 500; reads keep working; nothing is half-written (`PRAGMA
//! integrity_check`, every acknowledged create present); writes succeed
//! again by themselves once space is freed. Elsewhere it says SKIPPED,
//! unless `SCIMD_REQUIRE_FAULT_TESTS` is set (as `.ci/run` does).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Server, assert_scim_error};

/// A tmpfs of `size` mounted at `at`, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path, size: &str) -> Option<Mounted> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mounted(at.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` with one file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0u8; 512]).is_ok() {}
    let _ = f.flush();
    path
}

fn big_user(name: &str) -> serde_json::Value {
    json!({"userName": name, "displayName": "x".repeat(100_000)})
}

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mounted::tmpfs(&dir.path().join("small"), "16M") else {
        // `.ci/run` sets it: there the test must run, not skip.
        assert!(
            std::env::var("SCIMD_REQUIRE_FAULT_TESTS").is_err(),
            "cannot mount a tmpfs, and SCIMD_REQUIRE_FAULT_TESTS is set"
        );
        eprintln!("\n*** cannot mount a tmpfs here (not root?): the disk-full test was SKIPPED\n");
        return;
    };
    let data = mount.0.join("data");
    let s = Server::start(&data).await;
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let (st, _, u) = s
            .call(
                Method::POST,
                "/Users",
                Some(big_user(&format!("before{i}"))),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{u}");
        acknowledged.push(u["id"].as_str().unwrap().to_string());
    }
    let filler = fill(&mount.0);

    let mut refused = 0;
    for i in 0..20 {
        let (st, _, body) = s
            .call(Method::POST, "/Users", Some(big_user(&format!("full{i}"))))
            .await;
        match st {
            StatusCode::CREATED => acknowledged.push(body["id"].as_str().unwrap().to_string()),
            _ => {
                assert_scim_error(st, &body, 507, None);
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no write was refused on a full disk");
    // Creates committed together, more than the writer's page cache holds
    // (their pages spill into the WAL before the commit): each is refused
    // with 507 too, never 500, whichever write the disk filled up in.
    let mut together = Vec::new();
    for i in 0..24 {
        let (client, base) = (s.client.clone(), s.base.clone());
        together.push(tokio::spawn(async move {
            let user =
                json!({"userName": format!("together{i}"), "displayName": "y".repeat(900_000)});
            let r = client
                .post(format!("{base}/Users"))
                .header("content-type", "application/scim+json")
                .body(user.to_string())
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    for t in together {
        let (st, body) = t.await.unwrap();
        match st {
            StatusCode::CREATED => acknowledged.push(body["id"].as_str().unwrap().to_string()),
            _ => assert_scim_error(st, &body, 507, None),
        }
    }
    // Reads go on.
    for id in &acknowledged {
        let (st, _, _) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, _, _) = s.call(Method::GET, "/Users?count=2", None).await;
    assert_eq!(st, StatusCode::OK);

    // Space freed: writes resume by themselves.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    loop {
        let (st, _, u) = s
            .call(Method::POST, "/Users", Some(big_user("after")))
            .await;
        if st == StatusCode::CREATED {
            acknowledged.push(u["id"].as_str().unwrap().to_string());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "writes did not resume: {st} {u}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &acknowledged {
        let (st, _, _) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(st, StatusCode::OK, "acknowledged {id} missing");
    }
    s.stop().await;
    let db = rusqlite::Connection::open(data.join("scimd.sqlite3")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);
    drop(mount);
}
