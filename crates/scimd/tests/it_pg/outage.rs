//! PostgreSQL out of reach under a running scimd: retry-able 503s, never
//! 500s, and service again once it is back. The database is reached
//! through a TCP relay in this test that can cut every connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::{Server, assert_scim_error};

/// Relays connections to `target` while open; `cut` drops every relayed
/// connection and refuses new ones until `restore`.
struct Relay {
    addr: String,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (flag, list) = (open.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(relay);
            }
        });
        Relay {
            addr,
            open,
            connections,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_database_out_of_reach_is_503_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::harness::database_url(dir.path()).await.unwrap();
    // postgres://user:password@host:port/database?...
    let authority = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let relay = Relay::start(authority.to_string()).await;
    let relayed = url.replace(authority, &relay.addr);
    let s = Server::start_with(dir.path(), |c| c.database_url = Some(relayed)).await;
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
