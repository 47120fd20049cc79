//! The SQLite writer copies the WAL into the database file once writes
//! pause (`IdleCheckpoint`), rather than leaving it to the commit that
//! fills `wal_autocheckpoint` pages, which the writes queued behind it
//! would wait for.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::Server;

/// Whether the database file alone, without its WAL, holds resource `id`:
/// read from a copy of the file, as SQLite would after losing the WAL.
fn main_file_holds(db: &std::path::Path, id: &str) -> bool {
    let copy = tempfile::tempdir().unwrap();
    let path = copy.path().join("copy.sqlite3");
    // A copy taken while a checkpoint writes may be torn: "not yet".
    if std::fs::copy(db, &path).is_err() {
        return false;
    }
    let Ok(conn) = rusqlite::Connection::open(&path) else {
        return false;
    };
    conn.query_row("SELECT count(*) FROM resources WHERE id = ?1", [id], |r| {
        r.get::<_, i64>(0)
    })
    .is_ok_and(|n| n == 1)
}

#[tokio::test]
async fn a_pause_in_writes_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "quiet"})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let id = u["id"].as_str().unwrap();
    // A few pages of WAL: far below the 4,000 of `wal_autocheckpoint`, so
    // only the idle checkpoint puts the user in the database file.
    let db = dir.path().join("scimd.sqlite3");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !main_file_holds(&db, id) {
        assert!(
            Instant::now() < deadline,
            "20 s after the last write, the database file still lacks what the WAL holds"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
