//! HTTPS with a self-signed certificate, driven by curl exactly as the
//! Janssen seed writes its two commands (host and paths changed).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl").arg("-s").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn janssen_seed_over_https_with_curl_k() {
    if Command::new("curl").arg("--version").output().is_err() {
        // CI installs curl (.ci/run): there the test must run, not skip.
        assert!(std::env::var("CI").is_err(), "curl is not installed, and CI is set");
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-self-signed",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root = format!("https://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if curl(&["-k", "-f", &format!("{root}/readyz")]).0 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "scimd did not answer over HTTPS");
    // Certificate verification is on without -k, and it is self-signed.
    assert!(!curl(&["-f", &format!("{root}/readyz")]).0);
    let boot: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("bootstrap-client.json")).unwrap(),
    )
    .unwrap();
    let credentials = format!(
        "{}:{}",
        boot["client_id"].as_str().unwrap(),
        boot["client_secret"].as_str().unwrap()
    );
    let (ok, text) = curl(&[
        "-k",
        "-u",
        &credentials,
        "-k",
        "-d",
        "grant_type=client_credentials",
        "-d",
        "scope=https://jans.io/scim/users.read https://jans.io/scim/users.write",
        &format!("{root}/oauth/token"),
    ]);
    assert!(ok, "{text}");
    let token: Value = serde_json::from_str(&text).unwrap();
    let access = token["access_token"].as_str().unwrap();
    let (ok, text) = curl(&[
        "-k",
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {access}"),
        "-H",
        "Content-Type: application/scim+json",
        "-d",
        r#"{"userName":"admin1","displayName":"Site Admin"}"#,
        &format!("{root}/scim/v2/Users"),
    ]);
    assert!(ok, "{text}");
    let (ok, text) = curl(&[
        "-k",
        "-G",
        "-H",
        &format!("Authorization: Bearer {access}"),
        "--data-urlencode",
        r#"filter=displayName co "Admin""#,
        &format!("{root}/scim/v2/Users"),
    ]);
    assert!(ok, "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["totalResults"], 1, "{list}");
    assert!(
        list["Resources"][0]["meta"]["location"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    // `scimd token` beside the server, given the same options and no
    // `--base-url`: its token names the HTTPS issuer the server checks.
    let out = Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args([
            "token",
            "--client",
            boot["client_id"].as_str().unwrap(),
            "--scopes",
            "users.read",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-self-signed",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (ok, text) = curl(&[
        "-k",
        "-f",
        "-H",
        &format!("Authorization: Bearer {}", issued["access_token"].as_str().unwrap()),
        &format!("{root}/scim/v2/Users"),
    ]);
    assert!(ok, "the command's token was refused: {text}");
    // hyper's own refusal of a request target over its limit carries a
    // SCIM body over TLS too (the rewriting sits after the handshake).
    let long = format!("{root}/scim/v2/Users?filter={}", "a".repeat(70_000));
    let (_, text) = curl(&["-k", "--http1.1", &long]);
    let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text:?}"));
    assert_eq!(error["status"], "414", "{error}");
    child.kill().unwrap();
    child.wait().unwrap();
}
