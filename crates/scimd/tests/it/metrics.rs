//! `GET /metrics` (Prometheus text format): behind the `metrics.read` scope
//! on the main listener, without authentication on `--metrics-listen`;
//! labelled by route template and registry names, never by raw paths.


use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, assert_scim_error, client_with_token};

/// A token of a new client allowed only `metrics.read`.
async fn scraper_token(s: &Server, data_dir: &std::path::Path) -> String {
    let args = ["--scopes", "metrics.read"];
    crate::harness::cli_client(s, data_dir, "prometheus", &args).await.1
}

/// The value of the series whose line starts with `prefix` (0 if absent).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_need_their_scope_and_move_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let url = format!("{}/metrics", s.root);
    let r = s.anonymous.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The bundled SCIM client has every SCIM scope, not this one.
    let r = s.client.get(&url).send().await.unwrap();
    let st = r.status();
    let body: Value = r.json().await.unwrap();
    assert_scim_error(st, &body, 403, None);

    let scraper = client_with_token(&scraper_token(&s, dir.path()).await);
    let scrape = || async {
        let r = scraper.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        r.text().await.unwrap()
    };
    let (_, _, user) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "metered"})))
        .await;
    let id = user["id"].as_str().unwrap().to_string();
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "metered"}]
    });
    let (st, _, _) = s.call(Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    assert_eq!(st, StatusCode::OK);
    let before = scrape().await;
    let get = [("resource_type", "User"), ("operation", "get"), ("outcome", "success")];
    for _ in 0..3 {
        let (st, _, _) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, _, _) = s.call(Method::GET, "/Nonsense/x", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A token request refused before its client is looked at counts too.
    let r = s
        .anonymous
        .post(format!("{}/oauth/token", s.root))
        .header("content-type", "application/json")
        .body(r#"{"grant_type": "client_credentials"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let after = scrape().await;
    let refused = [("outcome", "invalid_request")];
    assert!(
        value(&after, "scimd_token_requests_total", &refused)
            >= value(&before, "scimd_token_requests_total", &refused) + 1.0,
        "{after}"
    );
    assert!(
        value(&after, "scimd_scim_operations_total", &get)
            >= value(&before, "scimd_scim_operations_total", &get) + 3.0,
        "{after}"
    );
    let route = [("http_route", "/scim/v2/{endpoint}/{id}"), ("http_request_method", "GET")];
    assert!(
        value(&after, "http_server_request_duration_seconds_count", &route)
            >= value(&before, "http_server_request_duration_seconds_count", &route) + 4.0,
        "{after}"
    );
    assert!(value(&after, "scimd_scim_operations_total", &[("resource_type", "none")]) >= 1.0);
    assert!(value(&after, "scimd_token_requests_total", &[("outcome", "issued")]) >= 2.0);
    assert!(after.contains("scimd_build_info{"), "{after}");
    // The store's writes committed together: the SQLite writer's
    // transactions, or PostgreSQL's statements of creates and of changes.
    let together: &[&str] = match crate::harness::database_url(dir.path()).await {
        Some(_) => &["scimd_pg_create_batch_size_count ", "scimd_pg_change_batch_size_count "],
        None => &["scimd_sqlite_writer_batch_size_count "],
    };
    for series in together {
        assert!(after.lines().any(|l| l.starts_with(series)), "{series}: {after}");
    }
    // Bounded labels: no id, no client-chosen endpoint name.
    assert!(!after.contains(&id) && !after.contains("Nonsense"), "{after}");
    s.stop().await;
}

#[tokio::test]
async fn a_separate_metrics_listener_needs_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let s = Server::start_with(dir.path(), |c| c.metrics_listen = Some(addr)).await;
    let r = s
        .anonymous
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("scimd_build_info"));
    s.stop().await;
}

#[tokio::test]
async fn metrics_turned_off_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| c.metrics = false).await;
    let scraper = client_with_token(&scraper_token(&s, dir.path()).await);
    let r = scraper.get(format!("{}/metrics", s.root)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}
