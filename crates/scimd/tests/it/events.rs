//! SCIM Events (RFC 9967) over real HTTP (issue 18): poll streams (RFC
//! 8936) and push streams (RFC 8935) to a receiver inside the test, SETs
//! verified against the server's JWKS, bad input, a receiver that refuses,
//! goes down, or stays down.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, cli_client, client_with_token, scimd_cli, scimd_command};

pub const CREATE_NOTICE: &str = "urn:ietf:params:scim:event:prov:create:notice";
pub const PATCH_NOTICE: &str = "urn:ietf:params:scim:event:prov:patch:notice";
pub const DELETE: &str = "urn:ietf:params:scim:event:prov:delete";

pub fn user(name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name})
}

pub fn patch_title(title: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
           "Operations": [{"op": "replace", "path": "title", "value": title}]})
}

/// The claims of `set` after checking its signature against the server's
/// JWKS (EdDSA, `typ` `secevent+jwt`).
pub async fn verified(root: &str, set: &str) -> Value {
    let header = jsonwebtoken::decode_header(set).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{root}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = header.kid.unwrap();
    let jwk = jwks.find(&kid).expect("the SET's key is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(set, &key, &validation)
        .unwrap()
        .claims
}

/// `examples/verify-set.sh SET ROOT`, run asynchronously: it asks this
/// test's server for its JWKS.
async fn verify_script(set: &str, root: &str) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/verify-set.sh");
    tokio::process::Command::new(script)
        .args([set, root])
        .output()
        .await
        .unwrap()
}

/// A poll stream made by the CLI and a client allowed to poll it.
async fn poll_stream(s: &Server, dir: &std::path::Path, args: &[&str]) -> (Value, Client) {
    // The CLI announces the poll URL under the server's public base URL.
    let mut all = vec!["stream", "create", "hr", "--poll", "--base-url", &s.root];
    all.extend_from_slice(args);
    let stream = scimd_cli(dir, &all).await;
    let scope = stream["scope"].as_str().unwrap().to_string();
    let (_, token) = cli_client(s, dir, "poller", &["--scopes", &scope]).await;
    (stream, client_with_token(&token))
}

async fn poll(client: &Client, url: &str, body: Value) -> (StatusCode, Value) {
    let r = client.post(url).json(&body).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_poll_stream_delivers_signed_sets_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (stream, poller) = poll_stream(&s, dir.path(), &["--resource-types", "User"]).await;
    let url = stream["pollUrl"].as_str().unwrap().to_string();
    assert_eq!(url, format!("{}/events/v1/streams/{}", s.root, stream["id"].as_str().unwrap()));
    let (_, _, u) = s.call(Method::POST, "/Users", Some(user("evented"))).await;
    let id = u["id"].as_str().unwrap().to_string();
    let (st, _, _) = s
        .call(Method::PATCH, &format!("/Users/{id}"), Some(patch_title("Boss")))
        .await;
    assert_eq!(st, StatusCode::OK);
    // Not carried: another resource type.
    s.call(
        Method::POST,
        "/Groups",
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"})),
    )
    .await;
    let (st, _, _) = s.call(Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    let (st, first) = poll(&poller, &url, json!({"returnImmediately": true})).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let sets = first["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 3, "{first}");
    assert_eq!(first["moreAvailable"], false);
    let mut claims = Vec::new();
    for (jti, set) in sets {
        let c = verified(&s.root, set.as_str().unwrap()).await;
        assert_eq!(c["jti"], jti.as_str());
        claims.push(c);
    }
    claims.sort_by_key(|c| c["txn"].as_str().unwrap().parse::<i64>().unwrap());
    let kinds: Vec<&str> = claims
        .iter()
        .map(|c| c["events"].as_object().unwrap().keys().next().unwrap().as_str())
        .collect();
    assert_eq!(kinds, [CREATE_NOTICE, PATCH_NOTICE, DELETE]);
    for c in &claims {
        assert_eq!(c["sub_id"], json!({"format": "scim", "uri": format!("/Users/{id}"), "id": id}));
        assert_eq!(c["aud"], url.as_str());
        assert!(c["iss"].as_str().unwrap().starts_with("http"), "{c}");
        assert!(c.get("sub").is_none(), "RFC 9967: no sub claim");
    }
    assert_eq!(claims[1]["events"][PATCH_NOTICE], json!({"attributes": ["title"], "version": "W/\"2\""}));
    // The README's way: examples/verify-set.sh (curl and openssl) accepts
    // the SET and refuses it altered.
    let set = sets.values().next().unwrap().as_str().unwrap();
    let out = verify_script(set, &s.root).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["jti"], sets.keys().next().unwrap().as_str());
    let altered = format!("{}AAAA", &set[..set.len() - 4]);
    let out = verify_script(&altered, &s.root).await;
    assert!(!out.status.success(), "an altered SET verified");

    // Not acknowledged: delivered again, with the same jtis.
    let (_, again) = poll(&poller, &url, json!({"returnImmediately": true})).await;
    assert_eq!(
        again["sets"].as_object().unwrap().keys().collect::<Vec<_>>(),
        sets.keys().collect::<Vec<_>>()
    );
    // maxEvents bounds the answer.
    let (_, one) = poll(&poller, &url, json!({"returnImmediately": true, "maxEvents": 1})).await;
    assert_eq!(one["sets"].as_object().unwrap().len(), 1);
    assert_eq!(one["moreAvailable"], true);
    // Acknowledged out of order: the last two first, then the first.
    let jtis: Vec<String> = claims.iter().map(|c| c["jti"].as_str().unwrap().to_string()).collect();
    let (_, rest) = poll(
        &poller,
        &url,
        json!({"ack": [jtis[1], jtis[2]], "returnImmediately": true}),
    )
    .await;
    assert_eq!(rest["sets"].as_object().unwrap().keys().collect::<Vec<_>>(), [&jtis[0]]);
    let (_, none) = poll(&poller, &url, json!({"ack": [jtis[0]], "returnImmediately": true})).await;
    assert_eq!(none["sets"], json!({}));
    // Acknowledging again is harmless.
    let (st, _) = poll(&poller, &url, json!({"ack": [jtis[0]], "returnImmediately": true})).await;
    assert_eq!(st, StatusCode::OK);

    // A long poll waits for the next change and returns with it.
    let waiting = {
        let (poller, url) = (poller.clone(), url.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = poll(&poller, &url, json!({"maxEvents": 10})).await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.call(Method::POST, "/Users", Some(user("late"))).await;
    let ((st, late), waited) = waiting.await.unwrap();
    assert_eq!(st, StatusCode::OK);
    assert_eq!(late["sets"].as_object().unwrap().len(), 1, "{late}");
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(10), "{waited:?}");

    // The stream's own scope: the bundled SCIM client lacks it.
    let (st, _) = poll(&s.client, &url, json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = poll(&s.anonymous, &url, json!({})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // RFC 9967 section 4: the ServiceProviderConfig lists the events.
    let (_, _, spc) = s.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(spc["securityEvents"]["asyncRequest"], "none");
    assert!(
        spc["securityEvents"]["eventUris"]
            .as_array()
            .unwrap()
            .contains(&json!(PATCH_NOTICE))
    );
    s.stop().await;
}

/// A poller that leaves one SET unacknowledged while it acknowledges what
/// follows gets, once `MAX_PENDING_ACKS` of those wait, only the SET it left
/// (what the stream keeps for it stays bounded), and everything after it
/// once it acknowledges it.
#[tokio::test]
async fn a_poller_that_leaves_a_set_behind_gets_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (stream, poller) = poll_stream(&s, dir.path(), &["--resource-types", "User"]).await;
    let url = stream["pollUrl"].as_str().unwrap().to_string();
    let pending = scimd_events::poll::MAX_PENDING_ACKS;
    let users = pending + 1_500;
    for start in (0..users).step_by(1_000) {
        let operations: Vec<Value> = (start..users.min(start + 1_000))
            .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": user(&format!("left{i}"))}))
            .collect();
        let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations});
        let (st, _, answer) = s.call(Method::POST, "/Bulk", Some(bulk)).await;
        assert_eq!(st, StatusCode::OK, "{answer}");
    }
    let position = |jti: &str| jti.rsplit('.').next().unwrap().parse::<i64>().unwrap();
    let mut left: Option<String> = None;
    let mut ack: Vec<String> = Vec::new();
    let mut handed = 0;
    let alone = loop {
        let (st, answer) = poll(
            &poller,
            &url,
            json!({"ack": ack, "returnImmediately": true, "maxEvents": 1000}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{answer}");
        let mut jtis: Vec<String> = answer["sets"].as_object().unwrap().keys().cloned().collect();
        jtis.sort_by_key(|j| position(j));
        let first = left.get_or_insert_with(|| jtis[0].clone()).clone();
        assert_eq!(jtis[0], first, "the SET left behind comes first");
        if jtis.len() == 1 {
            break answer;
        }
        handed += jtis.len() - 1;
        assert!(handed < pending + 1_000, "{handed} handed out past the SET left behind");
        ack = jtis[1..].to_vec();
    };
    assert_eq!(alone["moreAvailable"], false, "{alone}");
    assert!(handed >= pending, "only {handed} handed out past the SET left behind");
    // Acknowledged at last: the rest follows.
    let first = left.unwrap();
    let (_, rest) = poll(
        &poller,
        &url,
        json!({"ack": [first], "returnImmediately": true, "maxEvents": 1000}),
    )
    .await;
    let sets = rest["sets"].as_object().unwrap();
    assert_eq!(sets.len(), (users - 1 - handed).min(1000), "{}", sets.len());
    assert!(!sets.contains_key(&first));
    s.stop().await;
}

#[tokio::test]
async fn bad_poll_requests_and_bad_streams_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (stream, poller) = poll_stream(&s, dir.path(), &[]).await;
    let url = stream["pollUrl"].as_str().unwrap().to_string();
    // Another stream's URL: refused for the scope, before anything says
    // whether that stream exists.
    let other = format!("{}/events/v1/streams/no-such-stream", s.root);
    let (st, _) = poll(&poller, &other, json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A stream deleted after its poller got its scope: 404.
    let gone = scimd_cli(dir.path(), &["stream", "create", "gone", "--poll", "--base-url", &s.root]).await;
    let scope = gone["scope"].as_str().unwrap().to_string();
    let (_, token) = cli_client(&s, dir.path(), "gone-poller", &["--scopes", &scope]).await;
    scimd_cli(dir.path(), &["stream", "delete", "gone"]).await;
    let (st, body) = poll(
        &client_with_token(&token),
        gone["pollUrl"].as_str().unwrap(),
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["err"], "invalid_request");
    // A poll acknowledges SETs: one a page of another site sent is refused.
    let r = poller
        .post(&url)
        .header("origin", "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = poller
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for bad in [
        json!({"ack": "x"}),
        json!({"ack": [1]}),
        json!({"ack": ["someone-else.3"]}),
        json!({"ack": [format!("{}.x", stream["id"].as_str().unwrap())]}),
        json!({"maxEvents": -1}),
        json!({"maxEvents": 100000}),
        json!({"maxEvents": "ten"}),
        json!({"returnImmediately": "yes"}),
        json!({"setErrs": []}),
        json!({"setErrs": {"x": {"description": "no err"}}}),
        json!([]),
    ] {
        let (st, body) = poll(&poller, &url, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["err"], "invalid_request", "{bad}");
        assert!(body["description"].as_str().unwrap().len() > 5, "{bad}: {body}");
    }
    let r = poller.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The CLI refuses what cannot work, saying why.
    for (args, says) in [
        (vec!["stream", "create", "p", "--push", "ftp://127.0.0.1/x"], "http or https"),
        (
            vec!["stream", "create", "p", "--push", "http://no-such-host.invalid/x"],
            "does not resolve",
        ),
        (vec!["stream", "create", "p", "--push", "not a url"], "push URL"),
        (vec!["stream", "create", "p", "--poll", "--resource-types", "Robot"], "unknown resource type"),
        (vec!["stream", "create", "p", "--poll", "--events", "explode"], "unknown event"),
        (vec!["stream", "create", "bad name!", "--poll"], "stream name"),
        (vec!["stream", "create", "hr", "--poll"], "exists already"),
        (vec!["stream", "show", "nope"], "no event stream"),
    ] {
        let out = scimd_command(dir.path(), &args).await.output().await.unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    s.stop().await;
}

/// A SET receiver on a loopback port: keeps every SET it is sent, and
/// answers with the status it is told to (202 by default).
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<String>>>,
    /// The status to answer; 400 answers an RFC 8935 error body.
    pub answer: Arc<AtomicU16>,
    /// Milliseconds to take over each SET.
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let answer = Arc::new(AtomicU16::new(202));
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (g, a, d) = (got.clone(), answer.clone(), delay_ms.clone());
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (g, a, d) = (g.clone(), a.clone(), d.clone());
                async move {
                    let delay = d.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    assert_eq!(
                        headers.get("content-type").unwrap(),
                        "application/secevent+jwt"
                    );
                    let status = a.load(Ordering::SeqCst);
                    let code = axum::http::StatusCode::from_u16(status).unwrap();
                    if status == 202 {
                        g.lock().unwrap().push(body);
                        return (code, String::new());
                    }
                    if status == 400 {
                        g.lock().unwrap().push(body);
                        return (
                            code,
                            json!({"err": "invalid_key", "description": "not today ".repeat(100)})
                                .to_string(),
                        );
                    }
                    (code, String::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            got,
            answer,
            delay_ms,
            _task: task,
        }
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// How many different SETs (by jti) arrived.
    pub fn distinct(&self) -> usize {
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|set| jti_of(set))
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    /// Waits until `n` different SETs arrived (or fails after `within`).
    pub async fn wait_for_distinct(&self, n: usize, within: Duration) {
        let started = Instant::now();
        while self.distinct() < n {
            assert!(
                started.elapsed() < within,
                "{} of {n} different SETs after {within:?}",
                self.distinct()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `n` SETs arrived (or fails after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let started = Instant::now();
        while self.count() < n {
            assert!(
                started.elapsed() < within,
                "{} of {n} SETs after {within:?}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The resource and txn of each SET, in arrival order, each verified.
pub async fn arrivals(root: &str, sets: &[String]) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for set in sets {
        let c = verified(root, set).await;
        out.push((
            c["sub_id"]["id"].as_str().unwrap().to_string(),
            c["txn"].as_str().unwrap().parse().unwrap(),
            c["events"].as_object().unwrap().keys().next().unwrap().clone(),
        ));
    }
    out
}

#[tokio::test]
async fn a_push_stream_delivers_every_change_in_order_and_records_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| c.events_push_max_backoff_secs = 1).await;
    let receiver = Receiver::start().await;
    let stream = scimd_cli(
        dir.path(),
        &["stream", "create", "mirror", "--push", &receiver.url],
    )
    .await;
    assert_eq!(stream["pushUrl"], receiver.url.as_str());
    assert_eq!(stream["state"], "active");

    let mut ids = Vec::new();
    for n in 0..20 {
        let (_, _, u) = s.call(Method::POST, "/Users", Some(user(&format!("p{n}")))).await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    receiver.wait_for(20, Duration::from_secs(20)).await;
    // The receiver goes down: nothing is lost, and the backlog arrives in
    // order once it is back.
    receiver.answer.store(503, Ordering::SeqCst);
    for id in &ids {
        s.call(Method::PATCH, &format!("/Users/{id}"), Some(patch_title("t"))).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = scimd_cli(dir.path(), &["stream", "show", "mirror"]).await;
    assert!(shown["push"]["attempts"].as_u64().unwrap() >= 1, "{shown}");
    assert!(shown["push"]["lastError"].as_str().unwrap().contains("503"), "{shown}");
    assert_eq!(receiver.count(), 20);
    receiver.answer.store(202, Ordering::SeqCst);
    receiver.wait_for(40, Duration::from_secs(20)).await;
    // One refusal (RFC 8935 error) is recorded and not retried.
    receiver.answer.store(400, Ordering::SeqCst);
    s.call(Method::DELETE, &format!("/Users/{}", ids[0]), None).await;
    receiver.wait_for(41, Duration::from_secs(20)).await;
    receiver.answer.store(202, Ordering::SeqCst);
    s.call(Method::DELETE, &format!("/Users/{}", ids[1]), None).await;
    receiver.wait_for(42, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 42, "the refused SET was sent again");
    let shown = scimd_cli(dir.path(), &["stream", "show", "mirror"]).await;
    assert_eq!(shown["push"]["rejected"][0]["err"], "invalid_key", "{shown}");
    // The receiver's text is kept cut short.
    let description = shown["push"]["rejected"][0]["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), 500, "{description}");
    assert!(description.starts_with("not today not today"));
    assert_eq!(shown["push"]["delivered"], 41, "{shown}");

    let sets = receiver.got.lock().unwrap().clone();
    let got = arrivals(&s.root, &sets).await;
    let txns: Vec<i64> = got.iter().map(|(_, t, _)| *t).collect();
    assert!(txns.windows(2).all(|w| w[0] < w[1]), "out of log order: {txns:?}");
    assert_eq!(got[20].0, ids[0]);
    assert_eq!(got[20].2, PATCH_NOTICE);
    assert_eq!(got[40].2, DELETE);
    s.stop().await;
}

#[tokio::test]
async fn a_receiver_down_too_long_makes_a_dead_stream_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), |c| {
        c.events_push_max_backoff_secs = 1;
        c.events_push_dead_after_secs = 2;
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer.store(500, Ordering::SeqCst);
    scimd_cli(dir.path(), &["stream", "create", "dl", "--push", &receiver.url]).await;
    s.call(Method::POST, "/Users", Some(user("dead-letter"))).await;
    let started = Instant::now();
    loop {
        let shown = scimd_cli(dir.path(), &["stream", "show", "dl"]).await;
        if shown["state"] == "dead" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{shown}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    receiver.answer.store(202, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.count(), 0, "a dead stream pushed");
    let resumed = scimd_cli(dir.path(), &["stream", "resume", "dl"]).await;
    assert_eq!(resumed["state"], "active", "{resumed}");
    receiver.wait_for(1, Duration::from_secs(20)).await;
    s.stop().await;
}

/// The claims of a SET, read without verifying it.
pub fn claims_of(set: &str) -> Value {
    use base64::Engine;
    let payload = set.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The jti of a SET, read without verifying it.
pub fn jti_of(set: &str) -> String {
    claims_of(set)["jti"].as_str().unwrap().to_string()
}

/// 1,000 concurrent writes through `servers` (round robin): creates,
/// PATCHes, member adds and deletes (each also a change of the group), and
/// as many creates refused (409).
/// The push receiver gets one SET per committed change, none for the
/// refused ones, never one twice (one replica pushes the stream), every
/// signature verified, each resource's in commit order.
pub async fn every_change_arrives_once(servers: &[Arc<Server>], dir: &std::path::Path) {
    const UNITS: usize = 250;
    let receiver = Receiver::start().await;
    scimd_cli(dir, &["stream", "create", "all", "--push", &receiver.url]).await;
    let (_, _, g) = servers[0]
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "everyone"})),
        )
        .await;
    let gid = g["id"].as_str().unwrap().to_string();
    let committed = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let semaphore = Arc::new(tokio::sync::Semaphore::new(48));
    let mut tasks = Vec::new();
    for n in 0..UNITS {
        let s = servers[n % servers.len()].clone();
        let (committed, semaphore, gid) = (committed.clone(), semaphore.clone(), gid.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = semaphore.acquire().await.unwrap();
            let ok = |st: StatusCode| {
                if st.is_success() {
                    committed.fetch_add(1, Ordering::SeqCst);
                }
                st
            };
            let name = format!("load{n}");
            let (st, _, u) = s.call(Method::POST, "/Users", Some(user(&name))).await;
            assert_eq!(ok(st), StatusCode::CREATED, "{u}");
            let id = u["id"].as_str().unwrap().to_string();
            let (st, _, _) = s.call(Method::POST, "/Users", Some(user(&name))).await;
            assert_eq!(ok(st), StatusCode::CONFLICT);
            let (st, _, _) = s
                .call(Method::PATCH, &format!("/Users/{id}"), Some(patch_title("t")))
                .await;
            assert_eq!(ok(st), StatusCode::OK);
            let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
            let (st, _, _) = s.call(Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await;
            assert!(ok(st).is_success(), "{st}");
            let (st, _, _) = s.call(Method::DELETE, &format!("/Users/{id}"), None).await;
            assert_eq!(ok(st), StatusCode::NO_CONTENT);
            // The delete also changed the group it was a member of.
            committed.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = committed.load(Ordering::SeqCst);
    assert_eq!(expected, 1 + UNITS * 5);
    receiver
        .wait_for_distinct(expected, Duration::from_secs(120))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sets = receiver.got.lock().unwrap().clone();
    assert_eq!(sets.len(), expected, "SETs delivered more than once");
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{}/.well-known/jwks.json", servers[0].root))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    let mut kinds: std::collections::HashMap<String, usize> = Default::default();
    for set in &sets {
        let c = verified_with(&jwks, set);
        let id = c["sub_id"]["id"].as_str().unwrap().to_string();
        let txn: i64 = c["txn"].as_str().unwrap().parse().unwrap();
        if let Some(before) = last.insert(id.clone(), txn) {
            assert!(before < txn, "{id}: {before} then {txn}");
        }
        let kind = c["events"].as_object().unwrap().keys().next().unwrap().clone();
        *kinds.entry(kind).or_default() += 1;
    }
    assert_eq!(kinds[CREATE_NOTICE], 1 + UNITS);
    // The user's PATCH, its addition to the group, its leaving the group.
    assert_eq!(kinds[PATCH_NOTICE], 3 * UNITS);
    assert_eq!(kinds[DELETE], UNITS);
}

/// [`verified`] with a JWKS already fetched.
pub fn verified_with(jwks: &jsonwebtoken::jwk::JwkSet, set: &str) -> Value {
    let header = jsonwebtoken::decode_header(set).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    let jwk = jwks.find(&header.kid.unwrap()).expect("the SET's key is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(set, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn a_thousand_concurrent_writes_arrive_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Server::start(dir.path()).await);
    every_change_arrives_once(std::slice::from_ref(&s), dir.path()).await;
}

/// scimd killed (SIGKILL) while it pushes a backlog, then started again:
/// every acknowledged change reaches the receiver (some twice, with the
/// same jti, which a receiver drops).
#[tokio::test]
async fn nothing_is_lost_when_scimd_is_killed_during_delivery() {
    use crate::durability::{free_port, ready_client, spawn};
    let dir = tempfile::tempdir().unwrap();
    let url = crate::harness::database_url(dir.path()).await;
    let receiver = Receiver::start().await;
    receiver.delay_ms.store(5, Ordering::SeqCst);
    let port = free_port();
    let mut child = spawn(dir.path(), url.as_deref(), port);
    let client = ready_client(dir.path(), port).await;
    scimd_cli(dir.path(), &["stream", "create", "crash", "--push", &receiver.url]).await;
    let base = format!("http://127.0.0.1:{port}/scim/v2");
    let mut ids = Vec::new();
    for n in 0..300 {
        let r = client
            .post(format!("{base}/Users"))
            .header("content-type", "application/scim+json")
            .body(user(&format!("crash{n}")).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let u: Value = r.json().await.unwrap();
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    // Killed mid-way through the backlog.
    receiver.wait_for(20, Duration::from_secs(30)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let before = receiver.distinct();
    assert!(before < 300, "delivered everything before the kill: {before}");
    receiver.delay_ms.store(0, Ordering::SeqCst);
    let port = free_port();
    let mut child = spawn(dir.path(), url.as_deref(), port);
    ready_client(dir.path(), port).await;
    receiver.wait_for_distinct(300, Duration::from_secs(60)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let sets = receiver.got.lock().unwrap().clone();
    // Read, not verified: the server that signed them is gone (its keys
    // are the store's, verified by the other tests).
    let mut created: Vec<String> = sets
        .iter()
        .map(|set| claims_of(set)["sub_id"]["id"].as_str().unwrap().to_string())
        .collect();
    created.sort();
    created.dedup();
    ids.sort();
    assert_eq!(created, ids);
}

/// Retention keeps what a stream has not delivered: a server that keeps
/// one entry still has every change a poll stream was not yet polled for.
#[tokio::test]
async fn retention_keeps_what_a_stream_has_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (stream, _) = poll_stream(&s, dir.path(), &["--resource-types", "User"]).await;
    for n in 0..5 {
        let (st, _, _) = s.call(Method::POST, "/Users", Some(user(&format!("kept{n}")))).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    s.stop().await;
    let s = Server::start_with(dir.path(), |c| c.change_log_max_entries = 1).await;
    // A token of the restarted server (its issuer is its new address).
    let scope = stream["scope"].as_str().unwrap();
    let (_, token) = cli_client(&s, dir.path(), "poller-again", &["--scopes", scope]).await;
    let poller = client_with_token(&token);
    // The pruning at start has run once the trail shrank to what it keeps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = stream["pollUrl"].as_str().unwrap().replace(
        &url_root(stream["pollUrl"].as_str().unwrap()),
        &s.root,
    );
    let (st, answer) = poll(&poller, &url, json!({"returnImmediately": true})).await;
    assert_eq!(st, StatusCode::OK, "{answer}");
    assert_eq!(answer["sets"].as_object().unwrap().len(), 5, "{answer}");
    s.stop().await;
}

/// `http://host:port` of a URL.
fn url_root(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    format!("http://{}", rest.split('/').next().unwrap())
}

/// Push delivery runs on threads of its own, `events_push_nice` (10 by
/// default) below the rest of the process: on a busy machine, signing and
/// posting a SET per change would otherwise take CPU from the writes.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn push_delivery_runs_below_the_priority_of_requests() {
    use crate::durability::{free_port, ready_client, spawn};
    let dir = tempfile::tempdir().unwrap();
    let url = crate::harness::database_url(dir.path()).await;
    let port = free_port();
    let mut child = spawn(dir.path(), url.as_deref(), port);
    ready_client(dir.path(), port).await;
    let pid = child.id();
    let threads = threads_of(pid);
    child.kill().unwrap();
    child.wait().unwrap();
    let process = threads.iter().find(|t| t.0 == pid).unwrap().2;
    let push: Vec<_> = threads.iter().filter(|t| t.1 == "scimd-push").collect();
    assert!(!push.is_empty(), "no push threads: {threads:?}");
    let expected = (process + 10).min(19);
    assert!(push.iter().all(|t| t.2 == expected), "{threads:?}");
    let workers: Vec<_> = threads.iter().filter(|t| t.1 == "tokio-rt-worker").collect();
    assert!(!workers.is_empty(), "{threads:?}");
    assert!(workers.iter().all(|t| t.2 == process), "{threads:?}");
}

/// `(thread id, name, nice)` of each thread of process `pid`.
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> Vec<(u32, String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let tid = task.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        // Fields after the name start at the third (state); nice is the 19th.
        let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        out.push((tid, name, nice));
    }
    out
}
