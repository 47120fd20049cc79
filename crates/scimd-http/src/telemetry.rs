//! Prometheus metrics recorded by the HTTP layer: every request's duration
//! by route template (never the raw path), SCIM operations by resource type,
//! operation and outcome, and the token endpoint's grants and refusals by
//! reason. Label values come from the route table, the schema registry and
//! fixed lists only, never from what a client sent. The exporter (the
//! `metrics` recorder) is installed by the binary; without one, recording
//! costs nothing.

use std::sync::Arc;

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Renders the metrics in the Prometheus text format (the exporter's).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// `GET /metrics`: the text exposition format.
pub async fn serve(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(render) => text(render()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The exposition of `render` as a response (also for `--metrics-listen`).
pub fn text(body: String) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Every matched route: `http_server_request_duration_seconds`.
pub async fn track_request(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().as_str().to_owned();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "http_request_method" => method,
        "http_route" => route,
        "http_response_status_code" => response.status().as_str().to_owned(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// Each SCIM route (its operation named in the route table):
/// `scimd_scim_operations_total`.
pub async fn track_operation(
    State((state, operation)): State<(AppState, &'static str)>,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = params
        .iter()
        .find(|(name, _)| *name == "endpoint")
        .map(|(_, value)| value.to_owned());
    // The resource type's name from the registry; an endpoint that names
    // none is not a label value.
    let resource_type = match (&endpoint, operation) {
        (Some(e), _) => state
            .service
            .registry()
            .by_endpoint(e)
            .map_or("none", |rt| rt.name())
            .to_owned(),
        (None, op) if op.starts_with("me_") => "User".to_owned(),
        (None, _) => "none".to_owned(),
    };
    let response = next.run(request).await;
    metrics::counter!(
        "scimd_scim_operations_total",
        "resource_type" => resource_type,
        "operation" => operation,
        "outcome" => outcome(response.status()),
    )
    .increment(1);
    response
}

/// `success`, `client_error` or `server_error`.
pub fn outcome(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "server_error"
    } else if status.is_client_error() {
        "client_error"
    } else {
        "success"
    }
}

/// A token endpoint answer: `scimd_token_requests_total` by outcome
/// (`issued`, or the RFC 6749 error code).
pub fn token_outcome(outcome: &'static str) {
    metrics::counter!("scimd_token_requests_total", "outcome" => outcome).increment(1);
}
