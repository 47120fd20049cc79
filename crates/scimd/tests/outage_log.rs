#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! An outage of PostgreSQL is logged when it starts, once a minute while it
//! lasts, and when it ends: not once or twice per refused request (3,000
//! lines in 13 seconds before). A test binary of its own, because it
//! installs the process's log subscriber to read what scimd logged.

// The suite's harness; this binary uses a part of it.
#[allow(dead_code)]
#[path = "it/harness.rs"]
mod harness;
#[path = "it_pg/relay.rs"]
mod relay;

#[allow(dead_code)]
mod captured_log;

/// This binary's store: PostgreSQL (as `tests/it_pg`).
#[path = "it_pg/backend.rs"]
mod backend;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use captured_log::Captured;
use harness::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_not_per_refused_request() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_env_filter("info")
        .init();
    let dir = tempfile::tempdir().unwrap();
    let url = harness::database_url(dir.path()).await.unwrap();
    let (relay, relayed) = relay::relayed(&url).await;
    let s = Server::start_with(dir.path(), |c| c.database_url = Some(relayed.into())).await;
    let (st, _, _) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "before"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);

    relay.cut();
    for i in 0..60 {
        let (st, _, _) = s
            .call(
                Method::POST,
                "/Users",
                Some(json!({"userName": format!("during{i}")})),
            )
            .await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
        let (st, _, _) = s.call(Method::GET, "/Users?count=1", None).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    }
    relay.restore();
    let started = Instant::now();
    loop {
        let (st, _, _) = s
            .call(Method::POST, "/Users", Some(json!({"userName": "after"})))
            .await;
        if st == StatusCode::CREATED {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
    let text = logs.text();
    assert_eq!(logs.lines_with("cannot be reached"), 1, "{text}");
    assert_eq!(logs.lines_with("reachable again"), 1, "{text}");
    assert!(logs.lines_with("refused=") == 1, "{text}");
    assert_eq!(logs.lines_with("response failed"), 0, "{text}");
    assert_eq!(logs.lines_with("ERROR"), 0, "{text}");
}
