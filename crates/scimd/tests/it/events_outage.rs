//! A push receiver down for a minute (issue 18): changes made meanwhile
//! reach it, all and in log order, once it is back. SQLite only: the
//! delivery path does not depend on the store, and the minute is long.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::events::{Receiver, arrivals, user};
use crate::harness::{Server, scimd_cli};

#[tokio::test]
async fn a_receiver_down_for_a_minute_gets_the_backlog_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Backoff at most 5 s, so the backlog starts within seconds of the
    // receiver's return (the default, 300 s, would make the test wait).
    let s = Server::start_with(dir.path(), |c| c.events_push_max_backoff_secs = 5).await;
    let receiver = Receiver::start().await;
    scimd_cli(
        dir.path(),
        &["stream", "create", "outage", "--push", &receiver.url],
    )
    .await;
    receiver.answer.store(503, Ordering::SeqCst);
    let mut ids = Vec::new();
    let started = std::time::Instant::now();
    let mut n = 0;
    // A minute of changes while the receiver is down.
    while started.elapsed() < Duration::from_secs(60) {
        let (st, _, u) = s
            .call(Method::POST, "/Users", Some(user(&format!("o{n}"))))
            .await;
        assert_eq!(st, StatusCode::CREATED);
        ids.push(u["id"].as_str().unwrap().to_string());
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(receiver.count(), 0);
    let shown = scimd_cli(dir.path(), &["stream", "show", "outage"]).await;
    assert!(shown["push"]["attempts"].as_u64().unwrap() >= 5, "{shown}");
    assert_eq!(
        shown["state"], "active",
        "a minute is not the dead-letter time"
    );
    receiver.answer.store(202, Ordering::SeqCst);
    receiver.wait_for(ids.len(), Duration::from_secs(30)).await;
    let sets = receiver.got.lock().unwrap().clone();
    let got: Vec<String> = arrivals(&s.root, &sets)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(got, ids, "the backlog, all of it, in log order");
    s.stop().await;
}
