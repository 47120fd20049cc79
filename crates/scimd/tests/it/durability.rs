use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::database_url;

/// Starts the real `scimd` binary and waits until it answers.
fn spawn(dir: &std::path::Path, url: Option<&str>, port: u16) -> std::process::Child {
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

async fn wait_ready(client: &reqwest::Client, port: u16) {
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("scimd did not become ready");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let url = database_url(dir.path()).await;
    let port = free_port();
    let mut child = spawn(dir.path(), url.as_deref(), port);
    wait_ready(&client, port).await;
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
    wait_ready(&client, port).await;
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
