#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! A line logged while a request is handled names the request: its method,
//! target and `x-request-id` (the client's, or the one scimd gave it). A
//! test binary of its own, because it installs the process's log
//! subscriber to read what scimd logged.

// The suite's harness; this binary uses a part of it.
#[allow(dead_code)]
#[path = "it/harness.rs"]
mod harness;

#[allow(dead_code)]
mod captured_log;

/// This binary's store: SQLite in the test's temporary directory.
mod backend {
    pub async fn database_url(_data_dir: &std::path::Path) -> Option<String> {
        None
    }
}

use captured_log::Captured;
use harness::Server;

#[tokio::test]
async fn a_line_logged_in_a_request_names_the_request() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let client = harness::http_client();
    // Bad client credentials are logged (a warning) inside the token request.
    let token = format!("{}/oauth/token", s.root);
    let refused = client
        .post(&token)
        .header("x-request-id", "log-test-1")
        .basic_auth("nobody", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["x-request-id"], "log-test-1");
    let line = captured.line_with("bad client credentials");
    assert!(line.contains("method=POST"), "{line}");
    assert!(line.contains("uri=/oauth/token"), "{line}");
    assert!(line.contains(r#"request_id="log-test-1""#), "{line}");
    // Without the client's id, the one scimd gave it, as sent back.
    let refused = client
        .post(&token)
        .basic_auth("somebody", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let given = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let line = captured.line_with("client_id=somebody");
    assert!(line.contains(&format!("request_id=\"{given}\"")), "{line}");
    s.stop().await;
}
