//! The listener: HTTP/1.1 and HTTP/2 (and HTTPS) through axum-server, with
//! the limits that keep a misbehaving client or a hostile network from
//! holding the server: a deadline for the first request and for each
//! request's header (a client trickling header bytes is cut off), one for
//! the TLS handshake, a cap on open connections (one over it is closed at
//! once), HTTP/2 stream limits, and a deadline for a request's whole body
//! (around the router, `body_timeout`, `scimd_http::deadline`). hyper's own answers to requests
//! it cannot parse (400, 414, 431) get a SCIM error body ([`rejections`]).

mod rejections;
pub mod spans;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use rejections::Rejecting;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connection limits (settings `header_timeout_secs`,
/// `body_timeout_secs`, `max_connections`, `http2_max_streams`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's header (and the first request of a connection, and a TLS
    /// handshake) must arrive within this.
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this of its header, however
    /// it trickles (408 otherwise).
    pub body_timeout: Duration,
    /// Open connections; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Concurrent streams of one HTTP/2 connection.
    pub http2_max_streams: u32,
}

/// Serves `app` on `listener` (with TLS when `tls` is given) until
/// `shutdown` resolves; requests in flight then have `grace` to finish.
pub async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    tls: Option<RustlsConfig>,
    app: S,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()>
where
    S: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(grace));
    });
    let make_service = axum::ServiceExt::<axum::http::Request<hyper::body::Incoming>>::into_make_service_with_connect_info::<SocketAddr>(app);
    let capped = Capped {
        permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
    };
    let listener = listener.into_std()?;
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(Rejecting(capped))
                .first_request_timeout(limits.header_timeout)
                .handle(handle);
            configure(server.http_builder(), limits);
            server.serve(make_service).await?;
        }
        Some(config) => {
            let acceptor = RustlsAcceptor::new(config)
                .handshake_timeout(limits.header_timeout)
                .acceptor(capped);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(Rejecting(acceptor))
                .first_request_timeout(limits.header_timeout)
                .handle(handle);
            configure(server.http_builder(), limits);
            server.serve(make_service).await?;
        }
    }
    Ok(())
}

fn configure(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: Limits,
) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout)
        .max_header_list_size(64 * 1024);
}

/// Accepts a connection only while fewer than `max_connections` are open;
/// the permit lives as long as the connection's service.
#[derive(Clone)]
struct Capped {
    permits: Arc<Semaphore>,
}

impl<I, S> Accept<I, S> for Capped {
    type Stream = I;
    type Service = Held<S>;
    type Future = std::future::Ready<io::Result<(I, Held<S>)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                stream,
                Held {
                    inner: service,
                    _permit: Arc::new(permit),
                },
            )),
            Err(_) => {
                metrics::counter!("scimd_connections_refused_total").increment(1);
                Err(io::Error::other("connection limit reached"))
            }
        })
    }
}

/// A connection's service, holding its connection slot.
#[derive(Clone)]
struct Held<S> {
    inner: S,
    _permit: Arc<OwnedSemaphorePermit>,
}

impl<S, R> tower::Service<R> for Held<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.inner.call(request)
    }
}
