use std::path::Path;

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running scimd; stops (gracefully) when dropped or on `stop`.
pub struct Server {
    pub base: String,
    pub client: Client,
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
            database_url: database_url(data_dir).await,
            ..scimd::Config::default()
        };
        tweak(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(scimd::serve(config, listener, async {
            let _ = rx.await;
        }));
        Server {
            base: format!("http://{addr}/scim/v2"),
            client: Client::new(),
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
