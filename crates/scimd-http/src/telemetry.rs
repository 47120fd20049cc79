//! Prometheus metrics recorded by the HTTP layer: every request's duration
//! by route template (never the raw path), SCIM operations by resource type,
//! operation and outcome, and the token endpoint's grants and refusals by
//! reason. Label values come from the route table, the schema registry and
//! fixed lists only, never from what a client sent. The exporter (the
//! `metrics` recorder) is installed by the binary; without one, recording
//! costs nothing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};

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

/// A route as its metrics name it: its template and the operation the route
/// table gives it.
#[derive(Clone)]
pub struct Route(Arc<(String, &'static str)>);

impl Route {
    pub fn new(template: String, operation: &'static str) -> Route {
        Route(Arc::new((template, operation)))
    }
}

/// The metrics layer of the routes without a guard (the guard records
/// them itself, `auth::guard`): `http_server_request_duration_seconds`.
pub async fn track(
    State((state, route)): State<(AppState, Route)>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    record(&state, &route, &method, None, &response, started);
    response
}

/// Records one request: `http_server_request_duration_seconds` and, for a
/// SCIM operation, `scimd_scim_operations_total` (the resource type from
/// the registry, `none` where the endpoint names none).
pub fn record(
    state: &AppState,
    route: &Route,
    method: &Method,
    endpoint: Option<&str>,
    response: &Response,
    started: std::time::Instant,
) {
    let (template, operation) = (&route.0.0, route.0.1);
    let resource_type = match endpoint {
        Some(e) => state
            .service
            .registry()
            .by_endpoint(e)
            .map_or("none", |rt| rt.name()),
        None if operation.starts_with("me_") => "User",
        None => "none",
    };
    let (method, status) = (method_label(method), response.status());
    HANDLES.with_borrow_mut(|handles| {
        if let Some((duration, count)) =
            handles.get(template, resource_type, method, status, operation)
        {
            duration.record(started.elapsed().as_secs_f64());
            if let Some(count) = count {
                count.increment(1);
            }
        }
    });
}

/// The method as a label: the standard ones, else `_OTHER` (a client may
/// send any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// Metric handles by label values, one table per worker thread: the
/// recorder's lookup (which hashes every label) and the label strings are
/// paid once per series and thread, and a request takes no lock. The label
/// sets are bounded, so the tables are too.
#[derive(Default)]
struct Handles {
    by_route: Map<String, Map<String, Series>>,
}

/// The tables hash with foldhash (their keys are bounded and come from the
/// route table and the registry, not from clients).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A request's duration histogram and, for a SCIM operation, its counter,
/// by method and status.
type Series = Map<(&'static str, u16), (Histogram, Option<Counter>)>;

thread_local! {
    static HANDLES: std::cell::RefCell<Handles> = std::cell::RefCell::default();
}

/// Operations that are SCIM operations (counted by resource type).
fn is_scim(operation: &str) -> bool {
    !matches!(operation, "token" | "introspect" | "metrics" | "health")
}

impl Handles {
    fn get(
        &mut self,
        template: &str,
        resource_type: &str,
        method: &'static str,
        status: StatusCode,
        operation: &'static str,
    ) -> Option<&(Histogram, Option<Counter>)> {
        let code = status.as_u16();
        // Keys are copied only the first time: lookups borrow.
        let by_type = match self.by_route.contains_key(template) {
            true => self.by_route.get_mut(template)?,
            false => self.by_route.entry(template.to_owned()).or_default(),
        };
        let series = match by_type.contains_key(resource_type) {
            true => by_type.get_mut(resource_type)?,
            false => by_type.entry(resource_type.to_owned()).or_default(),
        };
        Some(series.entry((method, code)).or_insert_with(|| {
            let duration = metrics::histogram!(
                "http_server_request_duration_seconds",
                "http_request_method" => method,
                "http_route" => template.to_owned(),
                "http_response_status_code" => code.to_string(),
            );
            let count = is_scim(operation).then(|| {
                metrics::counter!(
                    "scimd_scim_operations_total",
                    "resource_type" => resource_type.to_owned(),
                    "operation" => operation,
                    "outcome" => outcome(status),
                )
            });
            (duration, count)
        }))
    }
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
