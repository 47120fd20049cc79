use std::path::Path;

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running scimd; stops (gracefully) when dropped or on `stop`.
pub struct Server {
    /// `http://127.0.0.1:PORT/scim/v2`
    pub base: String,
    /// `http://127.0.0.1:PORT`
    pub root: String,
    /// Sends the bundled client's token (every SCIM scope) on each request.
    pub client: Client,
    /// Sends no token.
    pub anonymous: Client,
    /// The bundled client's credentials.
    pub client_id: String,
    pub client_secret: String,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, |_| {}).await
    }

    pub async fn start_with(data_dir: &Path, tweak: impl FnOnce(&mut scimd::Config)) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = scimd::Config {
            data_dir: data_dir.to_path_buf(),
            database_url: database_url(data_dir).await.map(Into::into),
            ..scimd::Config::default()
        };
        tweak(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let mut handle = tokio::spawn(scimd::serve(config, listener, async {
            let _ = rx.await;
        }));
        let root = format!("http://{addr}");
        let anonymous = http_client();
        tokio::select! {
            () = wait_ready(&anonymous, &root) => {}
            ended = &mut handle => panic!("scimd stopped before it was ready: {ended:?}"),
        }
        let (client_id, client_secret) = bootstrap_credentials(data_dir);
        let token = fetch_token(&anonymous, &root, &client_id, &client_secret, None).await;
        Server {
            base: format!("{root}/scim/v2"),
            root,
            client: client_with_token(&token),
            anonymous,
            client_id,
            client_secret,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }

    /// Sends a request; returns status, headers and the JSON body (Null if empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, json)
    }

    pub async fn raw(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// reqwest's rustls (used by scimd for external JWKS and introspection)
/// needs a process-wide crypto provider before any client is built.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client without a token.
pub fn http_client() -> Client {
    install_crypto();
    Client::new()
}

/// Polls `/readyz` until the server answers.
pub async fn wait_ready(client: &Client, root: &str) {
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("{root}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("scimd at {root} did not become ready");
}

/// The bundled client's id and secret from `<data-dir>/bootstrap-client.json`.
pub fn bootstrap_credentials(data_dir: &Path) -> (String, String) {
    let text = std::fs::read_to_string(data_dir.join("bootstrap-client.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    (
        v["client_id"].as_str().unwrap().to_string(),
        v["client_secret"].as_str().unwrap().to_string(),
    )
}

/// A client_credentials token (HTTP Basic), for `scope` or everything.
pub async fn fetch_token(
    client: &Client,
    root: &str,
    id: &str,
    secret: &str,
    scope: Option<&str>,
) -> String {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let resp = client
        .post(format!("{root}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// A client that sends `Authorization: Bearer <token>` on every request.
pub fn client_with_token(token: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    install_crypto();
    Client::builder().default_headers(headers).build().unwrap()
}

/// The database of a server over `data_dir`, as the test binary's backend
/// decides: `None` (SQLite in the directory) or a PostgreSQL database of its
/// own, the same for the same directory.
pub async fn database_url(data_dir: &Path) -> Option<String> {
    crate::backend::database_url(data_dir).await
}

/// Asserts a SCIM error body with the given status and scimType.
pub fn assert_scim_error(status: StatusCode, body: &Value, want: u16, scim_type: Option<&str>) {
    assert_eq!(status.as_u16(), want, "body: {body}");
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "body: {body}"
    );
    assert_eq!(body["status"], want.to_string(), "body: {body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "body: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "body: {body}"
    );
}

/// Runs the `scimd` command with `args` on the store of `data_dir` (its
/// PostgreSQL database too, in the PostgreSQL binary); its JSON output.
pub async fn scimd_cli(data_dir: &Path, args: &[&str]) -> Value {
    let out = scimd_command(data_dir, args).await.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `scimd` command with `args` on the store of `data_dir`, to run.
/// Asynchronous: a test's server runs on the test's runtime, and a command
/// waited for by blocking that runtime could wait on the server (a row the
/// server's PostgreSQL connection holds locked) forever.
pub async fn scimd_command(data_dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimd"));
    cmd.args(args).arg("--data-dir").arg(data_dir);
    if let Some(url) = database_url(data_dir).await {
        cmd.args(["--database-url", &url]);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// A client made by `scimd client create NAME ARGS...` on the server's
/// store, and a token of it.
pub async fn cli_client(s: &Server, data_dir: &Path, name: &str, args: &[&str]) -> (Value, String) {
    let mut all = vec!["client", "create", name];
    all.extend_from_slice(args);
    let created = scimd_cli(data_dir, &all).await;
    let token = fetch_token(
        &s.anonymous,
        &s.root,
        created["client_id"].as_str().unwrap(),
        created["client_secret"].as_str().unwrap(),
        None,
    )
    .await;
    (created, token)
}
