//! `/Me` (RFC 7644 section 3.11): the User named by the token's subject, or
//! a 501 that says why not.


use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, assert_scim_error, client_with_token, fetch_token};

const PREFIX: &str = "https://jans.io/scim/";

/// A client registered under `id` (with the `scimd client` command, on the
/// server's store): its tokens' subject is `id`.
async fn client_named(s: &Server, data_dir: &std::path::Path, id: &str, scopes: &[&str]) -> String {
    let mut args = vec!["--client-id", id, "--scopes"];
    args.extend_from_slice(scopes);
    crate::harness::cli_client(s, data_dir, "me", &args).await.1
}

async fn send(c: &reqwest::Client, method: Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = c.request(method, url);
    if let Some(b) = body {
        req = req.header("content-type", "application/scim+json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let st = resp.status();
    let text = resp.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn me_without_a_user_subject_is_501() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    for method in [Method::GET, Method::DELETE] {
        let (st, _, v) = s.call(method, "/Me", None).await;
        assert_scim_error(st, &v, 501, None);
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains("scim-client") && detail.contains("subject"), "{detail}");
    }
    let (st, _, v) = s
        .call(Method::PUT, "/Me", Some(json!({"userName": "x"})))
        .await;
    assert_scim_error(st, &v, 501, None);
    s.stop().await;
}

#[tokio::test]
async fn me_acts_on_the_tokens_user() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "self"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let id = u["id"].as_str().unwrap().to_string();
    let token = client_named(&s, dir.path(), &id, &["users.read", "users.write"]).await;
    let c = client_with_token(&token);
    let me = format!("{}/Me", s.base);

    let (st, v) = send(&c, Method::GET, me.clone(), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["userName"], "self");
    let (st, v) = send(
        &c,
        Method::PATCH,
        me.clone(),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "displayName", "value": "Me Myself"}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["displayName"], "Me Myself");
    let (st, v) = send(
        &c,
        Method::PUT,
        me.clone(),
        Some(json!({"userName": "self", "nickName": "I"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, _, read) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(read["nickName"], "I");
    assert!(read.get("displayName").is_none(), "PUT replaced: {read}");

    let (st, v) = send(&c, Method::DELETE, me.clone(), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, _, _) = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Its user gone, the token's /Me is 501 again.
    let (st, v) = send(&c, Method::GET, me, None).await;
    assert_scim_error(st, &v, 501, None);
    s.stop().await;
}

#[tokio::test]
async fn me_needs_the_users_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, _, u) = s
        .call(Method::POST, "/Users", Some(json!({"userName": "reader"})))
        .await;
    let id = u["id"].as_str().unwrap().to_string();
    let token = client_named(&s, dir.path(), &id, &["users.read"]).await;
    let c = client_with_token(&token);
    let me = format!("{}/Me", s.base);
    let (st, v) = send(&c, Method::GET, me.clone(), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = send(&c, Method::DELETE, me.clone(), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let token = fetch_token(
        &s.anonymous,
        &s.root,
        &s.client_id,
        &s.client_secret,
        Some(&format!("{PREFIX}groups.read")),
    )
    .await;
    let (st, _) = send(&client_with_token(&token), Method::GET, me, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

/// An authorization server of the test's own that introspects every token
/// as a user's: subject `subject`, client `portal`, the Users scopes.
async fn user_token_issuer(subject: &str) -> String {
    let answer = json!({
        "active": true,
        "sub": subject,
        "client_id": "portal",
        "scope": format!("{PREFIX}users.read {PREFIX}users.write"),
        "exp": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600,
    });
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move || {
            let answer = answer.clone();
            async move { axum::Json(answer) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    root
}

async fn with_user_issuer(dir: &std::path::Path, subject: &str) -> Server {
    let issuer = user_token_issuer(subject).await;
    Server::start_with(dir, |c| {
        c.auth.external = Some(scimd::ExternalOptions {
            issuer: issuer.clone(),
            audience: None,
            jwks_url: None,
            introspection_url: Some(format!("{issuer}/introspect")),
            client_id: Some("scimd".into()),
            client_secret: Some("secret".into()),
        });
    })
    .await
}

/// POST /Me (RFC 7644 section 3.11) creates the User that a user token's
/// subject names; after that the token's /Me is that User.
#[tokio::test]
async fn post_me_creates_the_tokens_user() {
    let dir = tempfile::tempdir().unwrap();
    let subject = "8d3c3a4e-5b7f-4e0b-9a51-0f2b9c1d7e11";
    let s = with_user_issuer(dir.path(), subject).await;
    let c = client_with_token("opaque-user-token");
    let me = format!("{}/Me", s.base);
    let (st, v) = send(&c, Method::GET, me.clone(), None).await;
    assert_scim_error(st, &v, 501, None);

    let (st, v) = send(&c, Method::POST, me.clone(), Some(json!({"userName": "newcomer"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["id"], subject);
    assert_eq!(v["userName"], "newcomer");
    assert_eq!(v["meta"]["location"], format!("{}/Users/{subject}", s.base));
    let (st, v) = send(&c, Method::GET, me.clone(), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["userName"], "newcomer");
    let (_, _, read) = s.call(Method::GET, &format!("/Users/{subject}"), None).await;
    assert_eq!(read["userName"], "newcomer");

    // Twice: the subject is a User already.
    let (st, v) = send(&c, Method::POST, me.clone(), Some(json!({"userName": "again"}))).await;
    assert_scim_error(st, &v, 409, Some("uniqueness"));
    // Bad input is refused as on POST /Users, and creates nothing.
    let (st, _, _) = s.call(Method::DELETE, &format!("/Users/{subject}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = send(&c, Method::POST, me.clone(), Some(json!({"displayName": "no userName"}))).await;
    assert_scim_error(st, &v, 400, Some("invalidValue"));
    let (st, _, _) = s.call(Method::GET, &format!("/Users/{subject}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A subject no URL path can name as it is (a segment clients normalise
/// away, a route's, non-ASCII) makes no User.
#[tokio::test]
async fn post_me_refuses_subjects_a_path_cannot_carry() {
    for subject in ["..", ".search", "jos\u{e9}"] {
        let dir = tempfile::tempdir().unwrap();
        let s = with_user_issuer(dir.path(), subject).await;
        let c = client_with_token("opaque-user-token");
        let me = format!("{}/Me", s.base);
        let (st, v) = send(&c, Method::POST, me, Some(json!({"userName": "someone"}))).await;
        assert_scim_error(st, &v, 501, None);
        assert!(
            v["detail"].as_str().unwrap().contains("cannot be a resource id"),
            "{subject}: {v}"
        );
        let (_, _, list) = s.call(Method::GET, "/Users", None).await;
        assert_eq!(list["totalResults"], 0, "{subject}: {list}");
        s.stop().await;
    }
}

/// A client_credentials token names its client: POST /Me is 501, and
/// creates nothing.
#[tokio::test]
async fn post_me_with_a_client_token_is_501() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, v) = s
        .call(Method::POST, "/Me", Some(json!({"userName": "robot"})))
        .await;
    assert_scim_error(st, &v, 501, None);
    assert!(v["detail"].as_str().unwrap().contains("client"), "{v}");
    let (_, _, list) = s.call(Method::GET, "/Users", None).await;
    assert_eq!(list["totalResults"], 0, "{list}");
    s.stop().await;
}
