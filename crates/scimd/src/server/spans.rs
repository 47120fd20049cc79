//! The request's span: the method, target and request id of a request on
//! every line logged while its handler runs. Only the handler's future is
//! in it, not the answer's body: bodies are built whole before they are
//! sent, so nothing logs while one is written. tower-http's `TraceLayer`
//! also entered the span for every frame of the body, timed the request
//! and classified its answer, none of which scimd logs; with it, the span
//! cost about 7 % of GET by id's throughput (docs/benchmarks.md).

use std::task::{Context, Poll};

use axum::http::Request;
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// [`tower::Layer`] of [`Spanned`].
pub fn layer<S>() -> tower::layer::LayerFn<fn(S) -> Spanned<S>> {
    tower::layer::layer_fn(Spanned)
}

/// A service whose requests each run in a span of their own.
#[derive(Clone)]
pub struct Spanned<S>(S);

impl<S, B> tower::Service<Request<B>> for Spanned<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let span = span_of(&request);
        let handling = {
            let _in = span.enter();
            self.0.call(request)
        };
        handling.instrument(span)
    }
}

fn span_of<B>(request: &Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // The method and target displayed, not debugged (`str`'s `Debug`
    // escapes character by character): hyper has refused any space or
    // control character in them. The request id may be the client's, so it
    // stays quoted.
    let uri = request.uri().path_and_query().map_or("", |p| p.as_str());
    tracing::info_span!(
        "request",
        method = %request.method().as_str(),
        uri = %uri,
        request_id = id
    )
}
