//! Cursor paging (RFC 9865): opaque, tamper-proof, bound to its query,
//! expiring, stable while resources come and go, shared by replicas.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, assert_scim_error};

async fn page(s: &Server, query: &str) -> (StatusCode, Value) {
    let (st, _, v) = s.call(Method::GET, &format!("/Users?{query}"), None).await;
    (st, v)
}

fn enc(c: &str) -> String {
    c.replace('+', "%2B").replace('=', "%3D")
}

#[tokio::test]
async fn cursor_walk_is_complete_stable_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let (_, _, v) = s
            .call(
                Method::POST,
                "/Users",
                Some(json!({"userName": format!("walker{i:02}")})),
            )
            .await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    s.call(
        Method::POST,
        "/Groups",
        Some(json!({"displayName": "not a user"})),
    )
    .await;
    let (_, _, spc) = s.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(spc["pagination"]["cursor"], true);
    assert_eq!(spc["pagination"]["index"], true);

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (st, v) = page(&s, &format!("count=10&cursor={}", enc(&cursor))).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert!(v["totalResults"].as_u64().unwrap() >= 24);
        assert!(
            v.get("startIndex").is_none(),
            "no startIndex in cursor mode: {v}"
        );
        for r in v["Resources"].as_array().unwrap() {
            seen.push(r["id"].as_str().unwrap().to_string());
        }
        pages += 1;
        if pages == 1 {
            // While walking: delete one not yet seen, create one.
            s.call(Method::DELETE, &format!("/Users/{}", ids[20]), None)
                .await;
            let (_, _, v) = s
                .call(
                    Method::POST,
                    "/Users",
                    Some(json!({"userName": "late-comer"})),
                )
                .await;
            ids.push(v["id"].as_str().unwrap().to_string());
        }
        match v["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
        assert!(pages < 10);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no resource twice");
    let expected: HashSet<&String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 20)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        unique, expected,
        "every resource that existed throughout, once; the new one too"
    );
    assert_eq!(pages, 3);

    // Tampered, foreign-query and combined-with-sort cursors.
    let (st, v) = page(&s, "count=10&cursor=").await;
    assert_eq!(st, StatusCode::OK);
    let next = v["nextCursor"].as_str().unwrap().to_string();
    let mut forged = next.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    let (st, v) = page(
        &s,
        &format!(
            "count=10&cursor={}",
            enc(&String::from_utf8(forged).unwrap())
        ),
    )
    .await;
    assert_scim_error(st, &v, 400, Some("invalidCursor"));
    let (st, v) = page(
        &s,
        &format!(
            "count=10&filter=userName%20sw%20%22w%22&cursor={}",
            enc(&next)
        ),
    )
    .await;
    assert_scim_error(st, &v, 400, Some("invalidCursor"));
    let (st, v) = page(
        &s,
        &format!("count=10&sortBy=userName&cursor={}", enc(&next)),
    )
    .await;
    assert_scim_error(st, &v, 400, Some("invalidValue"));
    // .search takes a cursor too.
    let (st, _, v) = s
        .call(
            Method::POST,
            "/Users/.search",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 10, "cursor": next})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["Resources"].as_array().unwrap().len(), 10);

    // A replica on the same store continues the walk.
    let replica = Server::start(dir.path()).await;
    let (st, _, v) = replica
        .call(
            Method::GET,
            &format!("/Users?count=10&cursor={}", enc(&next)),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    replica.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn cursors_expire() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| c.cursor_timeout_secs = 1).await;
    for i in 0..3 {
        s.call(
            Method::POST,
            "/Users",
            Some(json!({"userName": format!("e{i}")})),
        )
        .await;
    }
    let (_, v) = page(&s, "count=1&cursor=").await;
    let next = v["nextCursor"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (st, v) = page(&s, &format!("count=1&cursor={}", enc(&next))).await;
    assert_scim_error(st, &v, 400, Some("expiredCursor"));
    s.stop().await;
}
