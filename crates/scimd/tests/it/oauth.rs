//! OAuth 2.0 protection: the scope table, the token endpoint, refused
//! tokens, key rotation, the protection switch and the client commands.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, bootstrap_credentials, cli_client, fetch_token};

const PREFIX: &str = "https://jans.io/scim/";

/// Runs the scimd binary on the store of the servers over `data_dir`.
async fn scim_bin(args: &[&str], data_dir: &std::path::Path) -> Value {
    crate::harness::scimd_cli(data_dir, args).await
}

/// Sends a request with `token` (or none); status, headers, JSON body.
async fn send(
    s: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{path}", s.base)
    };
    let mut req = s.anonymous.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn token_for(s: &Server, scope: &str) -> String {
    fetch_token(
        &s.anonymous,
        &s.root,
        &s.client_id,
        &s.client_secret,
        Some(scope),
    )
    .await
}

fn challenge(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn assert_invalid_token(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "body: {body}");
    let c = challenge(headers);
    assert!(
        c.starts_with(r#"Bearer realm="scimd", error="invalid_token""#),
        "{c}"
    );
    assert_eq!(body["status"], "401", "{body}");
}

/// A fresh resource of `endpoint` to act on.
async fn fixture(s: &Server, endpoint: &str, n: usize) -> String {
    let body = body_for(s, endpoint, &format!("fixture-{endpoint}-{n}")).await;
    let (st, _, v) = s
        .call(Method::POST, &format!("/{endpoint}"), Some(body))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// A valid body for a POST or PUT to `endpoint`; devices get an owner.
async fn body_for(s: &Server, endpoint: &str, name: &str) -> Value {
    match endpoint {
        "Users" => {
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name})
        }
        "FidoDevices" | "Fido2Devices" => {
            let (st, _, u) = s
                .call(
                    Method::POST,
                    "/Users",
                    Some(json!({"userName": format!("owner-{name}")})),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{u}");
            let owner = u["id"].as_str().unwrap();
            if endpoint == "FidoDevices" {
                crate::fido::fido_device(owner, 1)
            } else {
                crate::fido::fido2_device(owner)
            }
        }
        "Bulk" => json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{"method": "POST", "path": "/Users", "bulkId": "b",
                            "data": {"userName": name}}]
        }),
        _ => {
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name})
        }
    }
}

/// Every operation of the OpenAPI document (which is generated from the
/// route table) is tried with no token, with only its scope, and with every
/// scope but its own.
#[tokio::test]
async fn every_route_and_scope_cell() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, _, doc) = send(
        &s,
        Method::GET,
        &format!("{}/openapi.json", s.root),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let all: Vec<String> =
        doc["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["scopes"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    let mut checked = 0;
    let mut n = 0;
    // The SCIM routes (the others have tests of their own).
    let scim = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.starts_with("/scim/v2"));
    for (path, methods) in scim {
        for (method, op) in methods.as_object().unwrap() {
            n += 1;
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let path = path.trim_start_matches("/scim/v2");
            let endpoint = path.trim_start_matches('/').split('/').next().unwrap();
            let security = op["security"].as_array().unwrap();
            let concrete = if path.contains("{id}") {
                let id = if endpoint == "Schemas" {
                    "urn:ietf:params:scim:schemas:core:2.0:User".to_string()
                } else if endpoint == "ResourceTypes" {
                    "User".to_string()
                } else {
                    fixture(&s, endpoint, n).await
                };
                path.replace("{id}", &id)
            } else {
                path.to_string()
            };
            let body = match (method.as_str(), path) {
                (_, p) if p.ends_with(".search") => Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}),
                ),
                // A device's owner is immutable: PUT keeps the fixture's.
                ("PUT", _) if endpoint.starts_with("Fido") => {
                    let (_, _, current) = s.call(Method::GET, &concrete, None).await;
                    let owner = current["userId"].as_str().unwrap();
                    Some(if endpoint == "FidoDevices" {
                        crate::fido::fido_device(owner, 1)
                    } else {
                        crate::fido::fido2_device(owner)
                    })
                }
                ("POST", _) | ("PUT", _) => Some(body_for(&s, endpoint, &format!("cell-{n}")).await),
                ("PATCH", _) => Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "externalId", "value": "x"}]
                })),
                _ => None,
            };
            let (st, headers, v) = send(&s, method.clone(), &concrete, None, body.clone()).await;
            if security.is_empty() {
                assert_eq!(st, StatusCode::OK, "{method} {concrete} is public: {v}");
                continue;
            }
            assert_eq!(
                st,
                StatusCode::UNAUTHORIZED,
                "{method} {concrete} without a token"
            );
            assert_eq!(challenge(&headers), r#"Bearer realm="scimd""#);
            assert_eq!(
                v["schemas"][0],
                "urn:ietf:params:scim:api:messages:2.0:Error"
            );
            let scope = security[0]["oauth2"][0].as_str().unwrap();
            assert!(scope.starts_with(PREFIX), "{scope}");
            let others: Vec<&str> = all
                .iter()
                .map(String::as_str)
                .filter(|x| *x != scope)
                .collect();
            let without = token_for(&s, &others.join(" ")).await;
            let (st, headers, v) =
                send(&s, method.clone(), &concrete, Some(&without), body.clone()).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{method} {concrete}: {v}");
            assert_eq!(
                challenge(&headers),
                format!(r#"Bearer realm="scimd", error="insufficient_scope", scope="{scope}""#)
            );
            assert_eq!(v["status"], "403");
            let only = token_for(&s, scope).await;
            let (st, _, v) = send(&s, method.clone(), &concrete, Some(&only), body).await;
            if concrete == "/Me" {
                // Past the guard; the client's token names no User.
                assert_eq!(st, StatusCode::NOT_IMPLEMENTED, "{method} /Me with {scope}: {v}");
            } else {
                assert!(
                    st.is_success(),
                    "{method} {concrete} with {scope}: {st} {v}"
                );
            }
            checked += 1;
        }
    }
    // 7 protected routes per resource type (Users, Groups, FidoDevices,
    // Fido2Devices), root search (GET at the base URI and POST /.search),
    // Bulk, and GET/POST/PUT/PATCH/DELETE /Me.
    assert_eq!(checked, 36, "protected operations checked");
    s.stop().await;
}

/// The Janssen seed's two requests, as written (host and paths changed).
#[tokio::test]
async fn janssen_seed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    s.call(
        Method::POST,
        "/Users",
        Some(json!({"userName": "admin1", "displayName": "The Admin"})),
    )
    .await;
    s.call(
        Method::POST,
        "/Users",
        Some(json!({"userName": "bob", "displayName": "Bob"})),
    )
    .await;
    // curl -u 'CLIENT_ID:SECRET' -d grant_type=client_credentials -d scope='... users.read ... users.write' .../token
    let resp = s
        .anonymous
        .post(format!("{}/oauth/token", s.root))
        .basic_auth(&s.client_id, Some(&s.client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=https%3A%2F%2Fjans.io%2Fscim%2Fusers.read+https%3A%2F%2Fjans.io%2Fscim%2Fusers.write")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let t: Value = resp.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 300);
    assert_eq!(
        t["scope"],
        "https://jans.io/scim/users.read https://jans.io/scim/users.write"
    );
    let token = t["access_token"].as_str().unwrap();
    // curl -G -H 'Authorization: Bearer ACCESS_TOKEN' --data-urlencode 'filter=displayName co "Admin"' .../Users
    let resp = s
        .anonymous
        .get(format!("{}/Users", s.base))
        .header("Authorization", format!("Bearer {token}"))
        .query(&[("filter", r#"displayName co "Admin""#)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["userName"], "admin1");
    // The token holds users scopes only.
    let (st, _, _) = send(&s, Method::GET, "/Groups", Some(token), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test]
async fn token_endpoint_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let url = format!("{}/oauth/token", s.root);
    let post = |form: Vec<(&'static str, String)>| s.anonymous.post(&url).form(&form);
    // client_secret_post works too.
    let resp = post(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", s.client_id.clone()),
        ("client_secret", s.client_secret.clone()),
        ("scope", format!("{PREFIX}groups.read not-a-scope")),
    ])
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["scope"],
        format!("{PREFIX}groups.read"),
        "granted within what is allowed"
    );

    let expect = |resp: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        let headers = resp.headers().clone();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"], code, "{v}");
        headers
    };
    let r = post(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", s.client_id.clone()),
        ("client_secret", s.client_secret.clone()),
        ("scope", "not-a-scope".into()),
    ])
    .send()
    .await
    .unwrap();
    expect(r, 400, "invalid_scope").await;
    let r = post(vec![
        ("grant_type", "password".into()),
        ("client_id", s.client_id.clone()),
        ("client_secret", s.client_secret.clone()),
    ])
    .send()
    .await
    .unwrap();
    expect(r, 400, "unsupported_grant_type").await;
    let r = post(vec![
        ("client_id", s.client_id.clone()),
        ("client_secret", s.client_secret.clone()),
    ])
    .send()
    .await
    .unwrap();
    expect(r, 400, "invalid_request").await;
    let r = s
        .anonymous
        .post(&url)
        .basic_auth(&s.client_id, Some(&s.client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", s.client_id.as_str()),
            ("client_secret", s.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    expect(r, 400, "invalid_request").await;
    let r = s
        .anonymous
        .post(&url)
        .basic_auth(&s.client_id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let headers = expect(r, 401, "invalid_client").await;
    assert_eq!(headers["www-authenticate"], r#"Basic realm="scimd""#);
    let r = post(vec![("grant_type", "client_credentials".into())])
        .send()
        .await
        .unwrap();
    expect(r, 401, "invalid_client").await;

    // Another client, from the same address as the failures below.
    let (other, _) = cli_client(&s, dir.path(), "neighbour", &[]).await;
    // Brute force: after 10 failures in a minute, even the right secret
    // waits (one failure was spent above).
    for _ in 0..9 {
        let r = s
            .anonymous
            .post(&url)
            .basic_auth(&s.client_id, Some("guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = s
        .anonymous
        .post(&url)
        .basic_auth(&s.client_id, Some(&s.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let headers = expect(r, 429, "slow_down").await;
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Another client from that address (behind the same proxy, or the same
    // identity provider's egress) is not locked out by them.
    let r = s
        .anonymous
        .post(&url)
        .basic_auth(other["client_id"].as_str().unwrap(), other["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // The failures came from one address: the client itself, from another
    // (its identity provider), still gets its token. The client id is no
    // secret, so failures by whoever knows it must not lock the client out.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = elsewhere
        .post(&url)
        .basic_auth(&s.client_id, Some(&s.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // But one address trying secrets across many clients is stopped too,
    // ten times later (ten failures were counted above).
    let mut tries = 0;
    let refused = loop {
        tries += 1;
        let r = s
            .anonymous
            .post(&url)
            .basic_auth(format!("sprayed-{tries}"), Some("guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        if r.status() != StatusCode::UNAUTHORIZED || tries > 200 {
            break r;
        }
    };
    expect(refused, 429, "slow_down").await;
    assert!((85..=95).contains(&tries), "{tries}");
    s.stop().await;
}

/// Replaces the signature of a JWT with that of another token.
fn with_claims(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn refused_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| c.auth.token_lifetime_secs = 2).await;
    let good = token_for(&s, &format!("{PREFIX}users.read")).await;
    let (st, _, _) = send(&s, Method::GET, "/Users", Some(&good), None).await;
    assert_eq!(st, StatusCode::OK);

    // Tampered: a changed claim under the original signature.
    let tampered = with_claims(&good, |c| {
        c["scope"] = json!(format!("{PREFIX}users.write"))
    });
    let (st, h, v) = send(&s, Method::GET, "/Users", Some(&tampered), None).await;
    assert_invalid_token(st, &h, &v);
    // alg none, no signature.
    let parts: Vec<&str> = good.split('.').collect();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let (st, h, v) = send(&s, Method::GET, "/Users", Some(&none), None).await;
    assert_invalid_token(st, &h, &v);
    // Garbage.
    let (st, h, v) = send(&s, Method::GET, "/Users", Some("not.a.jwt"), None).await;
    assert_invalid_token(st, &h, &v);

    // A second scimd on the same store with another public URL shares the
    // keys, so its tokens verify but name another issuer and audience.
    let other = Server::start_with(dir.path(), |c| {
        c.base_url = Some("https://elsewhere.example".into());
    })
    .await;
    let foreign = token_for(&other, &format!("{PREFIX}users.read")).await;
    let (st, h, v) = send(&s, Method::GET, "/Users", Some(&foreign), None).await;
    assert_invalid_token(st, &h, &v);
    assert!(challenge(&h).contains("issuer"), "{}", challenge(&h));
    other.stop().await;
    let same_issuer = Server::start_with(dir.path(), |c| {
        c.base_url = Some("https://elsewhere.example".into());
        c.auth.issuer = Some(s.root.clone());
    })
    .await;
    let wrong_audience = token_for(&same_issuer, &format!("{PREFIX}users.read")).await;
    let (st, h, v) = send(&s, Method::GET, "/Users", Some(&wrong_audience), None).await;
    assert_invalid_token(st, &h, &v);
    assert!(challenge(&h).contains("audience"), "{}", challenge(&h));
    same_issuer.stop().await;

    // Expiry: the same token, after its 2 s lifetime.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (st, h, v) = send(&s, Method::GET, "/Users", Some(&good), None).await;
    assert_invalid_token(st, &h, &v);
    assert!(challenge(&h).contains("expired"), "{}", challenge(&h));
    s.stop().await;
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| {
        c.auth.key_rotation_secs = 2;
        c.auth.refresh_ms = 200;
    })
    .await;
    let first = token_for(&s, &format!("{PREFIX}users.read")).await;
    let started = Instant::now();
    let second = loop {
        let t = token_for(&s, &format!("{PREFIX}users.read")).await;
        if kid(&t) != kid(&first) {
            break t;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no rotation");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, _, jwks) = send(
        &s,
        Method::GET,
        &format!("{}/.well-known/jwks.json", s.root),
        None,
        None,
    )
    .await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&kid(&first).as_str()) && kids.contains(&kid(&second).as_str()),
        "{jwks}"
    );
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    for t in [&first, &second] {
        let (st, _, _) = send(&s, Method::GET, "/Users", Some(t), None).await;
        assert_eq!(
            st,
            StatusCode::OK,
            "tokens of the old key stay valid in the overlap"
        );
    }
    let (_, _, meta) = send(
        &s,
        Method::GET,
        &format!("{}/.well-known/oauth-authorization-server", s.root),
        None,
        None,
    )
    .await;
    assert_eq!(meta["issuer"], s.root);
    assert_eq!(meta["token_endpoint"], format!("{}/oauth/token", s.root));
    s.stop().await;
}

/// Waits until an anonymous `GET /Users` answers `want` on every server;
/// the switch must reach them within 5 seconds.
async fn until_every(servers: &[&Server], want: StatusCode, mode: &str) {
    let switched = Instant::now();
    for s in servers {
        while send(s, Method::GET, "/Users", None, None).await.0 != want {
            assert!(
                switched.elapsed() < Duration::from_secs(5),
                "{mode} not applied in 5 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Two replicas behind one public URL on one store: a token issued by one
/// is accepted by the other, and `scimd protection set` switches both within
/// 5 seconds, and back.
#[tokio::test]
async fn replicas_share_tokens_and_the_protection_switch() {
    let dir = tempfile::tempdir().unwrap();
    let public = |c: &mut scimd::Config| c.base_url = Some("https://scim.example.test".into());
    let a = Server::start_with(dir.path(), public).await;
    let b = Server::start_with(dir.path(), public).await;
    let from_a = token_for(&a, &format!("{PREFIX}users.read")).await;
    let (st, _, v) = send(&b, Method::GET, "/Users", Some(&from_a), None).await;
    assert_eq!(st, StatusCode::OK, "a token of replica a at replica b: {v}");
    for s in [&a, &b] {
        let (st, _, _) = send(s, Method::GET, "/Users", None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let out = scim_bin(&["protection", "set", "bypass"], dir.path()).await;
    assert_eq!(out["protection"], "bypass");
    until_every(&[&a, &b], StatusCode::OK, "bypass").await;
    let (_, _, spc) = send(&a, Method::GET, "/ServiceProviderConfig", None, None).await;
    assert_eq!(spc["authenticationSchemes"][0]["name"], "BYPASS");
    // Not the server's own records: the audit trail and the metrics.
    for path in ["/admin/v1/audit", "/metrics"] {
        let r = a.anonymous.get(format!("{}{path}", a.root)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} in BYPASS");
    }
    scim_bin(&["protection", "set", "oauth"], dir.path()).await;
    until_every(&[&a, &b], StatusCode::UNAUTHORIZED, "oauth").await;
    let (_, _, spc) = send(&a, Method::GET, "/ServiceProviderConfig", None, None).await;
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    a.stop().await;
    b.stop().await;
}

/// Replicas rotating keys every two seconds: a token fresh from one is
/// accepted at once by the other, through every rotation (a new key is
/// published before it signs, so the other replica already knows it).
#[tokio::test]
async fn replicas_accept_each_others_tokens_through_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let fast = |c: &mut scimd::Config| {
        c.base_url = Some("https://scim.example.test".into());
        c.auth.key_rotation_secs = 2;
        c.auth.refresh_ms = 500;
    };
    let a = Server::start_with(dir.path(), fast).await;
    let b = Server::start_with(dir.path(), fast).await;
    let started = Instant::now();
    let mut kids = std::collections::BTreeSet::new();
    let mut checked = 0;
    while started.elapsed() < Duration::from_secs(7) {
        for (issuer, verifier) in [(&a, &b), (&b, &a)] {
            let t = token_for(issuer, &format!("{PREFIX}users.read")).await;
            kids.insert(kid(&t));
            let (st, _, v) = send(verifier, Method::GET, "/Users?count=0", Some(&t), None).await;
            assert_eq!(st, StatusCode::OK, "after {:?}: {v}", started.elapsed());
            checked += 1;
        }
    }
    assert!(kids.len() >= 2, "no rotation in 7 s: {kids:?}");
    assert!(checked > 20, "{checked}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bootstrap_client_and_client_commands() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let file = dir.path().join("bootstrap-client.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let boot: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(boot["client_id"], "scim-client");
    assert_eq!(
        boot["scopes"].as_array().unwrap().len(),
        10,
        "every SCIM scope: {boot}"
    );
    s.stop().await;
    // A restart neither makes a new client nor rewrites the file.
    let before = std::fs::read_to_string(&file).unwrap();
    let s = Server::start(dir.path()).await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    assert_eq!(bootstrap_credentials(dir.path()).1, s.client_secret);

    let created = scim_bin(
        &["client", "create", "reader", "--scopes", "users.read"],
        dir.path(),
    ).await;
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(created["scopes"], json!([format!("{PREFIX}users.read")]));
    let token = fetch_token(&s.anonymous, &s.root, &id, &secret, None).await;
    let (st, _, _) = send(&s, Method::GET, "/Users", Some(&token), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = send(
        &s,
        Method::POST,
        "/Users",
        Some(&token),
        Some(json!({"userName": "x"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let listed = scim_bin(&["client", "list"], dir.path()).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        !listed.to_string().contains("argon2"),
        "no secret hashes listed"
    );

    let rotated = scim_bin(&["client", "rotate-secret", &id], dir.path()).await;
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let status = |secret: String| {
        let s = &s;
        let id = id.clone();
        async move {
            s.anonymous
                .post(format!("{}/oauth/token", s.root))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status(secret.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(new_secret.to_string()).await, StatusCode::OK);
    scim_bin(&["client", "delete", &id], dir.path()).await;
    assert_eq!(
        status(new_secret.to_string()).await,
        StatusCode::UNAUTHORIZED
    );

    // `scimd token` for scripts, with the server's public URL.
    let issued = scim_bin(
        &[
            "token",
            "--client",
            "scim-client",
            "--scopes",
            "groups.read",
            "--base-url",
            &s.root,
        ],
        dir.path(),
    ).await;
    let t = issued["access_token"].as_str().unwrap();
    let (st, _, _) = send(&s, Method::GET, "/Groups", Some(t), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = send(&s, Method::GET, "/Users", Some(t), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

/// A second scimd trusts the first as its external authorization server,
/// once through its JWK Set and once through RFC 7662 introspection.
#[tokio::test]
async fn external_authorization_server() {
    let as_dir = tempfile::tempdir().unwrap();
    let issuer = Server::start(as_dir.path()).await;
    let by_jwks_dir = tempfile::tempdir().unwrap();
    let issuer_root = issuer.root.clone();
    let by_jwks = Server::start_with(by_jwks_dir.path(), |c| {
        c.auth.external = Some(scimd::ExternalOptions {
            issuer: issuer_root.clone(),
            audience: Some(format!("{issuer_root}/scim/v2")),
            jwks_url: Some(format!("{issuer_root}/.well-known/jwks.json")),
            introspection_url: None,
            client_id: None,
            client_secret: None,
        });
    })
    .await;
    let by_introspection_dir = tempfile::tempdir().unwrap();
    let (id, secret) = (issuer.client_id.clone(), issuer.client_secret.clone());
    let by_introspection = Server::start_with(by_introspection_dir.path(), |c| {
        c.auth.external = Some(scimd::ExternalOptions {
            issuer: issuer_root.clone(),
            audience: None,
            jwks_url: None,
            introspection_url: Some(format!("{issuer_root}/oauth/introspect")),
            client_id: Some(id),
            client_secret: Some(secret.into()),
        });
    })
    .await;
    let read = token_for(&issuer, &format!("{PREFIX}users.read")).await;
    let groups = token_for(&issuer, &format!("{PREFIX}groups.read")).await;
    for rs in [&by_jwks, &by_introspection] {
        let (st, _, v) = send(rs, Method::GET, "/Users", Some(&read), None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, _, _) = send(rs, Method::GET, "/Users", Some(&groups), None).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let tampered = with_claims(&read, |c| {
            c["scope"] = json!(format!("{PREFIX}users.write"))
        });
        let (st, h, v) = send(
            rs,
            Method::POST,
            "/Users",
            Some(&tampered),
            Some(json!({"userName": "t"})),
        )
        .await;
        assert_invalid_token(st, &h, &v);
        // Its own tokens still work.
        let (st, _, _) = s_call(rs).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, h, v) = send(
        &by_introspection,
        Method::GET,
        "/Users",
        Some("opaque-garbage"),
        None,
    )
    .await;
    assert_invalid_token(st, &h, &v);
    // Introspection needs client authentication.
    let resp = issuer
        .anonymous
        .post(format!("{}/oauth/introspect", issuer.root))
        .form(&[("token", read.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    by_jwks.stop().await;
    by_introspection.stop().await;
    issuer.stop().await;
}

/// Introspection answers are kept, both ways: the same refused token sent
/// again, or the same accepted one, costs the issuer no second call. (The
/// issuer is a small RFC 7662 endpoint here, counting the calls it gets.)
#[tokio::test]
async fn introspection_answers_are_kept_both_ways() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let (counted, iss) = (calls.clone(), issuer.clone());
    let introspect = axum::routing::post(move |form: String| {
        let (counted, iss) = (counted.clone(), iss.clone());
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let exp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600;
            axum::Json(if form.contains("token=good") {
                json!({"active": true, "iss": iss, "scope": format!("{PREFIX}users.read"),
                       "client_id": "idp-client", "exp": exp})
            } else {
                json!({"active": false})
            })
        }
    });
    let app = axum::Router::new().route("/introspect", introspect);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| {
        c.auth.external = Some(scimd::ExternalOptions {
            issuer: issuer.clone(),
            audience: None,
            jwks_url: None,
            introspection_url: Some(format!("{issuer}/introspect")),
            client_id: Some("scimd".into()),
            client_secret: Some("secret".to_string().into()),
        });
    })
    .await;
    for _ in 0..3 {
        let (st, h, v) = send(&s, Method::GET, "/Users", Some("junk"), None).await;
        assert_invalid_token(st, &h, &v);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a refused token was asked about again");
    for _ in 0..3 {
        let (st, _, v) = send(&s, Method::GET, "/Users", Some("good"), None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "an accepted token was asked about again");
    s.stop().await;
}

async fn s_call(s: &Server) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    s.call(Method::GET, "/Users", None).await
}

/// Commands that read or change a store refuse a data directory without
/// one (a mistyped path) instead of making an empty store; import of a
/// missing file leaves nothing behind. (SQLite: a PostgreSQL URL names a
/// database that exists or fails to connect.)
#[tokio::test]
async fn commands_refuse_a_data_dir_without_a_store() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("typo");
    if crate::harness::database_url(&missing).await.is_some() {
        return;
    }
    for args in [
        vec!["export", "--file", "-"],
        vec!["client", "list"],
        vec!["protection", "show"],
        vec!["import", "--file", "/nonexistent/export.ndjson"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_scimd"))
            .args(&args)
            .arg("--data-dir")
            .arg(&missing)
            .env("RUST_LOG", "warn")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            !missing.join("scimd.sqlite3").exists(),
            "{args:?} made a store"
        );
    }
}

/// `client create` refuses what would make a useless or unusable client;
/// a deleted client's tokens still pass until they expire (they are
/// verified without the store) but introspection reports them inactive.
#[tokio::test]
async fn client_commands_check_their_input_and_introspection_sees_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    for args in [
        vec!["client", "create", "typo", "--scopes", "users.raed"],
        vec!["client", "create", "evil", "--scopes", "https://evil.example/users.read"],
        vec!["client", "create", " "],
        vec!["client", "create", "colon", "--client-id", "a:b"],
    ] {
        let out = crate::harness::scimd_command(dir.path(), &args)
            .await
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
    }
    let created = scim_bin(
        &["client", "create", "leaving", "--scopes", "users.read"],
        dir.path(),
    )
    .await;
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    let token = fetch_token(&s.anonymous, &s.root, &id, &secret, None).await;
    let introspect = |token: String| {
        let s = &s;
        async move {
            s.anonymous
                .post(format!("{}/oauth/introspect", s.root))
                .basic_auth(&s.client_id, Some(&s.client_secret))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(introspect(token.clone()).await["active"], true);
    scim_bin(&["client", "delete", &id], dir.path()).await;
    assert_eq!(introspect(token.clone()).await["active"], false);
    s.stop().await;
}

/// Settings that would make every answer wrong stop the server at start.
#[tokio::test]
async fn the_server_refuses_settings_it_cannot_honour() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--base-url", "not-a-url"),
        ("--base-url", "ftp://scim.example.test"),
        ("--token-lifetime-secs", "0"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scimd"));
        cmd.args(["--listen", "127.0.0.1:0", flag, value])
            .arg("--data-dir")
            .arg(dir.path());
        if let Some(url) = crate::harness::database_url(dir.path()).await {
            cmd.args(["--database-url", &url]);
        }
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::from(cmd).output(),
        )
        .await
        .expect("exits instead of serving")
        .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag.trim_start_matches("--").replace('-', "_").as_str())
            || stderr.contains(flag), "{stderr}");
    }
}
