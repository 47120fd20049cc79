use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Server, assert_scim_error};

#[tokio::test]
async fn bad_input_gets_scim_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| c.max_body = 4096).await;
    let (st, e) = s.raw(Method::POST, "/Users", "{\"userName\": ").await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    let (st, e) = s.raw(Method::POST, "/Users", "[1,2]").await;
    assert_scim_error(st, &e, 400, Some("invalidSyntax"));
    let (st, _, e) = s
        .call(Method::POST, "/Users", Some(json!({"userName": 5})))
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "x", "active": "maybe"})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "x", "emails": [{"value": 3}]})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    let big = json!({"userName": "x".repeat(8000)});
    let (st, _, e) = s.call(Method::POST, "/Users", Some(big)).await;
    assert_scim_error(st, &e, 413, None);
    let (st, _, e) = s
        .call(Method::GET, "/Users?filter=userName%20zz%20%22x%22", None)
        .await;
    assert_scim_error(st, &e, 400, Some("invalidFilter"));
    let (st, _, e) = s
        .call(Method::GET, "/Users?filter=shoeSize%20eq%201", None)
        .await;
    assert_scim_error(st, &e, 400, Some("invalidFilter"));
    let (st, _, e) = s
        .call(Method::GET, "/Users?filter=active%20gt%20true", None)
        .await;
    assert_scim_error(st, &e, 400, Some("invalidFilter"));
    let (st, _, e) = s.call(Method::GET, "/Users?count=abc", None).await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    let (st, _, e) = s.call(Method::GET, "/Users/does-not-exist", None).await;
    assert_scim_error(st, &e, 404, None);
    let (st, _, e) = s.call(Method::GET, "/Widgets", None).await;
    assert_scim_error(st, &e, 404, None);
    let (st, _, e) = s
        .call(
            Method::PUT,
            "/Users/does-not-exist",
            Some(json!({"userName": "q"})),
        )
        .await;
    assert_scim_error(st, &e, 404, None);
    let (_, _, list) = s.call(Method::GET, "/Users", None).await;
    assert_eq!(list["totalResults"], 0, "no bad request wrote anything");
    assert_eq!(StatusCode::OK, s.call(Method::GET, "/Users", None).await.0);
    s.stop().await;
}

/// U+0000 cannot be kept in PostgreSQL text: it is refused the same way on
/// every store, wherever it comes in (body, path, filter), and nothing is
/// written.
#[tokio::test]
async fn nul_characters_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    for body in [
        json!({"userName": "a\u{0}b"}),
        json!({"userName": "ok", "displayName": "x\u{0}"}),
        json!({"userName": "ok", "emails": [{"value": "a@b", "type": "w\u{0}rk"}]}),
        json!({"userName": "ok", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "\u{0}"}}),
    ] {
        let (st, _, e) = s.call(Method::POST, "/Users", Some(body)).await;
        assert_scim_error(st, &e, 400, Some("invalidValue"));
    }
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "g", "members": [{"value": "x\u{0}"}]})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    let (st, _, e) = s.call(Method::GET, "/Users/a%00b", None).await;
    assert_scim_error(st, &e, 404, None);
    let (st, _, e) = s.call(Method::DELETE, "/Users/a%00b", None).await;
    assert_scim_error(st, &e, 404, None);
    let (st, _, e) = s
        .call(Method::GET, "/Users?filter=userName%20eq%20%22a%5Cu0000b%22", None)
        .await;
    assert_scim_error(st, &e, 400, Some("invalidFilter"));
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Users/.search",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": "displayName co \"\u{0}\""})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    let (st, _, e) = s
        .call(
            Method::POST,
            "/Bulk",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "n",
                                        "data": {"userName": "a\u{0}b"}}]})),
        )
        .await;
    assert_scim_error(st, &e, 400, Some("invalidValue"));
    let (st, _, list) = s.call(Method::GET, "/Users", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["totalResults"], 0, "nothing was written: {list}");
}

/// A query parameter given twice, in any case, is refused: which one was
/// meant cannot be told (the answer depended on a hash map's order).
#[tokio::test]
async fn a_query_parameter_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    for query in [
        "/Users?filter=userName%20eq%20%22a%22&Filter=userName%20eq%20%22b%22",
        "/Users?count=1&count=2",
        "/Users?attributes=userName&ATTRIBUTES=emails",
    ] {
        let (st, _, e) = s.call(Method::GET, query, None).await;
        assert_scim_error(st, &e, 400, Some("invalidValue"));
        assert!(
            e["detail"].as_str().unwrap().contains("more than once"),
            "{e}"
        );
    }
    let (st, _, _) = s
        .call(Method::GET, "/Users?Filter=userName%20pr&COUNT=1", None)
        .await;
    assert_eq!(st, StatusCode::OK, "names in any case, once each");
    s.stop().await;
}

/// A body sent as a form or plain text (what a web page may send to
/// another site without asking), or by a web page of another site, is
/// refused; JSON under any of the names clients use, or with no type at
/// all, is read.
#[tokio::test]
async fn bodies_sent_as_forms_or_text_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let send = |path: &str, content_type: Option<&str>, body: serde_json::Value| {
        let mut request = s.client.post(format!("{}{path}", s.base)).body(body.to_string());
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        request.send()
    };
    for refused in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = send("/Users", Some(refused), json!({"userName": "formed"}))
            .await
            .unwrap();
        let st = r.status();
        let e: serde_json::Value = r.json().await.unwrap();
        assert_scim_error(st, &e, 415, None);
        let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{"method": "POST", "path": "/Users", "bulkId": "f",
                            "data": {"userName": "formed"}}]});
        let r = send("/Bulk", Some(refused), bulk).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
    }
    for (i, accepted) in [
        Some("application/scim+json"),
        Some("application/json; charset=utf-8"),
        Some("text/json"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let r = send("/Users", accepted, json!({"userName": format!("json{i}")}))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{accepted:?}");
    }
    // Sent by a web page of another site (its browser says so).
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        for path in ["/Users", "/Bulk"] {
            let r = s
                .client
                .post(format!("{}{path}", s.base))
                .header(header, value)
                .body(json!({"userName": "paged"}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {header}: {value}");
        }
    }
    let r = s
        .client
        .post(format!("{}/Users", s.base))
        .header("origin", s.root.as_str())
        .header("sec-fetch-site", "same-origin")
        .body(json!({"userName": "same-origin"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "the server's own origin");
    let (_, _, list) = s.call(Method::GET, "/Users", None).await;
    assert_eq!(list["totalResults"], 5, "{list}");
    s.stop().await;
}
