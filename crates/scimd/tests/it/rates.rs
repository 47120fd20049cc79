//! Per-client request rates (`scimd client create|update --rate`): a client
//! over its rate gets 429 with `Retry-After` and a SCIM error; other clients
//! are not affected; the limit can be lifted.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{
    Server, assert_scim_error, cli_client, client_with_token, scimd_cli, scimd_command,
};

/// Statuses of `n` back-to-back reads by `client`.
async fn burst(s: &Server, client: &reqwest::Client, n: usize) -> Vec<(StatusCode, Option<String>, Value)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = client.get(format!("{}/Users?count=1", s.base)).send().await.unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let st = r.status();
        out.push((st, retry, r.json().await.unwrap_or(Value::Null)));
    }
    out
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| c.auth.refresh_ms = 100).await;
    let args = ["--scopes", "users.read", "--rate", "2"];
    let (created, token) = cli_client(&s, dir.path(), "slow", &args).await;
    assert_eq!(created["rate"], 2.0);
    let id = created["client_id"].as_str().unwrap().to_string();
    let slow = client_with_token(&token);
    // The running server re-reads the rates (here every 100 ms).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let answers = burst(&s, &slow, 20).await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(st, _, _)| *st == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(refused.len() >= 15, "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::OK);
    let (st, retry, body) = refused[0];
    assert_scim_error(*st, body, 429, None);
    let retry: u64 = retry.as_deref().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");

    // Another client, meanwhile: never refused.
    let others = burst(&s, &s.client, 20).await;
    assert!(others.iter().all(|(st, _, _)| *st == StatusCode::OK), "{others:?}");

    // Lifted: back to normal once the server has re-read it.
    scimd_cli(dir.path(), &["client", "update", &id, "--rate", "0"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let lifted = burst(&s, &slow, 20).await;
    assert!(lifted.iter().all(|(st, _, _)| *st == StatusCode::OK), "{lifted:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_rate_out_of_range_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    for rate in ["-1", "NaN", "2000000"] {
        let flag = format!("--rate={rate}");
        let args = ["client", "update", s.client_id.as_str(), flag.as_str()];
        let out = scimd_command(dir.path(), &args).await.output().await.unwrap();
        assert!(!out.status.success(), "--rate {rate} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("rate"), "{rate}");
    }
    s.stop().await;
}
