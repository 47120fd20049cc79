use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{
    bootstrap_credentials, client_with_token, database_url, fetch_token, wait_ready,
};

/// Starts the real `scimd` binary and waits until it answers.
pub fn spawn(dir: &std::path::Path, url: Option<&str>, port: u16) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scimd"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir);
    if let Some(url) = url {
        cmd.args(["--database-url", url]);
    }
    cmd.env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the binary on `port` answers and returns a client carrying a
/// token of the bundled client.
pub async fn ready_client(dir: &std::path::Path, port: u16) -> reqwest::Client {
    let root = format!("http://127.0.0.1:{port}");
    let anonymous = crate::harness::http_client();
    wait_ready(&anonymous, &root).await;
    let (id, secret) = bootstrap_credentials(dir);
    client_with_token(&fetch_token(&anonymous, &root, &id, &secret, None).await)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path()).await;
    let port = free_port();
    let mut child = spawn(dir.path(), url.as_deref(), port);
    let client = ready_client(dir.path(), port).await;
    let base = format!("http://127.0.0.1:{port}/scim/v2");
    // Concurrent creates so that group commit batches them.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(format!("{base}/Users"))
                .header("content-type", "application/scim+json")
                .body(json!({"userName": format!("durable{i}")}).to_string())
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut acknowledged = 0;
    for t in tasks {
        if t.await.unwrap() == 201 {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, 200);
    child.kill().unwrap(); // SIGKILL: no graceful shutdown
    child.wait().unwrap();
    let port = free_port();
    let mut child = spawn(dir.path(), url.as_deref(), port);
    let client = ready_client(dir.path(), port).await;
    let list: Value = client
        .get(format!("http://127.0.0.1:{port}/scim/v2/Users?count=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(list["totalResults"], 200);
}
