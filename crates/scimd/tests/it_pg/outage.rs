//! PostgreSQL out of reach under a running scimd: retry-able 503s, never
//! 500s, and service again once it is back. The database is reached
//! through a TCP relay in this test that can cut every connection.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Server, assert_scim_error};

#[tokio::test]
async fn a_database_out_of_reach_is_503_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::harness::database_url(dir.path()).await.unwrap();
    let (relay, relayed) = crate::relay::relayed(&url).await;
    let s = Server::start_with(dir.path(), |c| c.database_url = Some(relayed.into())).await;
    let (st, _, _) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "before"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);

    relay.cut();
    for (method, path, body) in [
        (
            Method::GET,
            "/Users?filter=userName%20eq%20%22before%22",
            None,
        ),
        (Method::POST, "/Users", Some(json!({"userName": "during"}))),
    ] {
        let (st, _, e) = s.call(method, path, body).await;
        assert_scim_error(st, &e, 503, None);
    }
    // The token endpoint never answers 500 for it either.
    let resp = s
        .anonymous
        .post(format!("{}/oauth/token", s.root))
        .basic_auth(&s.client_id, Some(&s.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);

    relay.restore();
    let started = Instant::now();
    loop {
        let (st, _, out) = s
            .call(Method::POST, "/Users", Some(json!({"userName": "after"})))
            .await;
        if st == StatusCode::CREATED {
            break;
        }
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{out}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no recovery: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, _, list) = s.call(Method::GET, "/Users", None).await;
    let names: Vec<&str> = list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"before") && names.contains(&"after"),
        "{names:?}"
    );
    assert!(!names.contains(&"during"), "{names:?}");
    s.stop().await;
}
