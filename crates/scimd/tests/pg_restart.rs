#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! PostgreSQL restarted under load (fast, then immediate shutdown): while
//! it is down requests get 503 (never a 500), no acknowledged write is lost
//! (creates, and PATCHes, each of a user of its own), and service resumes
//! without restarting scimd. A test binary of its own:
//! it starts a PostgreSQL of its own (`scimd_store::testing::private`) to
//! restart it, whatever server the other tests share.

// The suite's harness; this binary uses a part of it.
#[allow(dead_code)]
#[path = "it/harness.rs"]
mod harness;

/// The harness's default store; the test gives its own database URL.
mod backend {
    pub async fn database_url(_data_dir: &std::path::Path) -> Option<String> {
        None
    }
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Mutex;

use harness::Server;

/// Extra server settings for an experiment (`SCIMD_TEST_RESTART_PG_OPTIONS`,
/// e.g. `-c synchronous_commit=off -c wal_writer_delay=10s`, which must make
/// this test fail: commits acknowledged before they reach the WAL).
fn options() -> String {
    std::env::var("SCIMD_TEST_RESTART_PG_OPTIONS").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load_loses_no_acknowledged_write() {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("restart");
    let pg = match scimd_store::testing::private(&tmp, &options()) {
        Ok(pg) => Arc::new(pg),
        Err(why) => {
            scimd_store::testing::unavailable(&why).unwrap();
            return;
        }
    };
    let url = pg.database("scimd_restart").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        Server::start_with(dir.path(), |c| c.database_url = Some(url.clone().into())).await,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (s, stop, acknowledged, refused) = (
            s.clone(),
            stop.clone(),
            acknowledged.clone(),
            refused.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("w{w}-{i}");
                i += 1;
                let r = s
                    .client
                    .post(format!("{}/Users", s.base))
                    .header("content-type", "application/scim+json")
                    .body(json!({"userName": name}).to_string())
                    .send()
                    .await;
                match r.map(|r| r.status()) {
                    Ok(StatusCode::CREATED) => acknowledged.lock().await.push(name),
                    Ok(StatusCode::SERVICE_UNAVAILABLE) | Err(_) => *refused.lock().await += 1,
                    // A name taken: the write was acknowledged before, in a
                    // run that cannot happen (each name is written once).
                    Ok(other) => panic!("{name}: {other}"),
                }
            }
        }));
    }
    // PATCH writers: each creates a user, then changes its title once.
    let patched = Arc::new(Mutex::new(Vec::<String>::new()));
    for p in 0..4 {
        let (s, stop, patched) = (s.clone(), stop.clone(), patched.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("p{p}-{i}");
                i += 1;
                let (st, _, user) = s
                    .call(
                        reqwest::Method::POST,
                        "/Users",
                        Some(json!({"userName": name})),
                    )
                    .await;
                let Some(id) = user["id"].as_str().filter(|_| st == StatusCode::CREATED) else {
                    continue;
                };
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "title", "value": "patched"}]
                });
                let r = s
                    .client
                    .patch(format!("{}/Users/{id}", s.base))
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await;
                match r.map(|r| r.status()) {
                    Ok(StatusCode::OK) => patched.lock().await.push(name),
                    Ok(StatusCode::SERVICE_UNAVAILABLE) | Err(_) => {}
                    Ok(other) => panic!("PATCH of {name}: {other}"),
                }
            }
        }));
    }
    for mode in ["fast", "immediate"] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || pg.restart(mode))
            .await
            .unwrap()
            .unwrap();
    }
    // Service resumes by itself.
    let started = Instant::now();
    loop {
        let before = acknowledged.lock().await.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if acknowledged.lock().await.len() > before + 10 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no recovery");
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(*refused.lock().await > 0, "the restarts were not noticed");
    // Every acknowledged create is there, read through the running scimd,
    // and every acknowledged PATCH.
    let mut stored = std::collections::HashMap::new();
    let mut start = 1;
    loop {
        let (st, _, page) = s
            .call(
                reqwest::Method::GET,
                &format!("/Users?attributes=userName,title&count=1000&startIndex={start}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let items = page["Resources"].as_array().unwrap();
        for u in items {
            let name = u["userName"].as_str().unwrap().to_string();
            stored.insert(name, u["title"].as_str().map(str::to_string));
        }
        if items.len() < 1000 {
            break;
        }
        start += 1000;
    }
    assert_kept("creates", &acknowledged, |n| stored.contains_key(n));
    let patched = patched.lock().await.clone();
    assert!(!patched.is_empty(), "no PATCH acknowledged");
    assert_kept("PATCHes", &patched, |n| {
        stored.get(n).and_then(|t| t.as_deref()) == Some("patched")
    });
}

/// Every write of `acknowledged` (by userName) is `stored`.
fn assert_kept(what: &str, acknowledged: &[String], stored: impl Fn(&str) -> bool) {
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !stored(n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged {what} lost, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}
