//! A TCP relay to the test database that can cut every connection: an
//! outage of PostgreSQL under a running scimd, without stopping the server
//! other tests share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Relays connections to `target` while open; `cut` drops every relayed
/// connection and refuses new ones until `restore`.
pub struct Relay {
    pub addr: String,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    pub async fn start(target: String) -> Relay {
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

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// `url` with its host and port replaced by a relay's: the relay, and the
/// URL to give scimd.
pub async fn relayed(url: &str) -> (Relay, String) {
    // postgres://user:password@host:port/database?...
    let authority = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let relay = Relay::start(authority.to_string()).await;
    let relayed = url.replace(authority, &relay.addr);
    (relay, relayed)
}
