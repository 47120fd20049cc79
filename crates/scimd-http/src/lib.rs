//! The thin HTTP layer: axum routes that parse requests into typed values,
//! call one [`ResourceService`] method and render the result.
//!
//! Architecture invariants:
//! - No SQL and no SCIM rules here; handlers only translate HTTP to core calls.
//! - Every error leaves through [`error::ApiError`], the one place that
//!   renders SCIM error bodies.

mod audit;
mod auth;
mod bulk;
pub mod deadline;
mod discovery;
mod error;
mod events;
mod extract;
mod me;
pub mod openapi;
mod resources;
pub mod telemetry;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, get};
use scimd_auth::{Auth, Need};
use scimd_core::service::ResourceService;

pub use error::{ApiError, error_body};

/// The SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";

/// Shared state of every handler; cloned per request and per layer, so one
/// reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    pub service: Arc<ResourceService>,
    pub auth: Arc<Auth>,
    /// Public base URL (scheme://host:port) of this server.
    pub public_base: String,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// The Prometheus exposition behind `GET /metrics` (none: 404).
    pub metrics: Option<telemetry::Render>,
    /// SCIM Events: the poll endpoints of event streams.
    pub events: Arc<scimd_events::Events>,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// One SCIM route as declared: what OpenAPI describes and what the
/// every-route-has-a-scope test checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub path: &'static str,
    pub method: Method,
    pub need: Need,
}

/// Every SCIM route with the scope it needs: the one place a route is
/// declared, so the router, OpenAPI and the tests cannot disagree.
fn scim_table() -> Vec<(
    Method,
    &'static str,
    Need,
    &'static str,
    MethodRouter<AppState>,
)> {
    use Need::*;
    use axum::routing::{delete, patch, post, put};
    use discovery as d;
    use resources as r;
    vec![
        (
            Method::GET,
            "/ServiceProviderConfig",
            Discovery,
            "discovery",
            read_only(get(d::service_provider_config)),
        ),
        (
            Method::GET,
            "/ResourceTypes",
            Discovery,
            "discovery",
            read_only(get(d::resource_types)),
        ),
        (
            Method::GET,
            "/ResourceTypes/{id}",
            Discovery,
            "discovery",
            read_only(get(d::resource_type)),
        ),
        (
            Method::GET,
            "/Schemas",
            Discovery,
            "discovery",
            read_only(get(d::schemas)),
        ),
        (
            Method::GET,
            "/Schemas/{id}",
            Discovery,
            "discovery",
            read_only(get(d::schema)),
        ),
        (Method::GET, "/", SearchAll, "search", get(r::list_root)),
        (
            Method::POST,
            "/.search",
            SearchAll,
            "search",
            post(r::search_root),
        ),
        (Method::POST, "/Bulk", Bulk, "bulk", post(bulk::bulk)),
        (Method::GET, "/Me", MeRead, "me_get", get(me::get)),
        (Method::POST, "/Me", MeWrite, "me_create", post(me::create)),
        (Method::PUT, "/Me", MeWrite, "me_replace", put(me::replace)),
        (Method::PATCH, "/Me", MeWrite, "me_patch", patch(me::patch)),
        (
            Method::DELETE,
            "/Me",
            MeWrite,
            "me_delete",
            delete(me::delete),
        ),
        (Method::GET, "/{endpoint}", Read, "list", get(r::list)),
        (
            Method::POST,
            "/{endpoint}",
            Write,
            "create",
            post(r::create),
        ),
        (
            Method::POST,
            "/{endpoint}/.search",
            Read,
            "search",
            post(r::search),
        ),
        (
            Method::GET,
            "/{endpoint}/{id}",
            Read,
            "get",
            get(r::get_one),
        ),
        (
            Method::PUT,
            "/{endpoint}/{id}",
            Write,
            "replace",
            put(r::replace),
        ),
        (
            Method::PATCH,
            "/{endpoint}/{id}",
            Write,
            "patch",
            patch(r::patch),
        ),
        (
            Method::DELETE,
            "/{endpoint}/{id}",
            Write,
            "delete",
            delete(r::delete),
        ),
    ]
}

/// Discovery documents are read-only: other methods get a SCIM 405, not
/// axum's empty one. They are not filtered: a `filter` gets 403 (RFC 7644
/// section 4), so that no client takes the full document for matches.
fn read_only(handler: MethodRouter<AppState>) -> MethodRouter<AppState> {
    handler
        .fallback(discovery::read_only)
        .route_layer(axum::middleware::from_fn(discovery::refuse_filter))
}

/// Every SCIM route with the scope it needs.
pub fn declared_routes() -> Vec<Declared> {
    scim_table()
        .into_iter()
        .map(|(method, path, need, _, _)| Declared { path, method, need })
        .collect()
}

/// The SCIM routes under `/scim/v2`, each with its full path (no nested
/// router: nesting rewrites every request's URI). The root is served with
/// and without its trailing slash (RFC 7644 writes root queries `GET
/// /?filter=...`).
fn scim_router(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for (_, path, need, operation, handler) in scim_table() {
        let template = format!("/scim/v2{path}");
        let route = metered(state, template.clone(), operation);
        if path == "/" {
            let bare = guarded(state, handler.clone(), need, route.clone());
            router = router.route("/scim/v2", bare);
        }
        router = router.route(&template, guarded(state, handler, need, route));
    }
    router
}

/// The route's name for metrics, when they are on (`metrics = false`: no
/// metrics layer runs at all).
fn metered(
    state: &AppState,
    template: String,
    operation: &'static str,
) -> Option<telemetry::Route> {
    state
        .metrics
        .is_some()
        .then(|| telemetry::Route::new(template, operation))
}

/// `handler` behind the bearer guard for `need` (which also records the
/// route's metrics).
fn guarded(
    state: &AppState,
    handler: MethodRouter<AppState>,
    need: Need,
    route: Option<telemetry::Route>,
) -> MethodRouter<AppState> {
    handler.route_layer(from_fn_with_state(
        (state.clone(), need, route),
        auth::guard,
    ))
}

/// An unguarded `handler` with its metrics layer.
fn measured(
    state: &AppState,
    handler: MethodRouter<AppState>,
    template: &str,
    operation: &'static str,
) -> MethodRouter<AppState> {
    match metered(state, template.to_string(), operation) {
        Some(route) => {
            handler.route_layer(from_fn_with_state((state.clone(), route), telemetry::track))
        }
        None => handler,
    }
}

/// The whole application: SCIM under `/scim/v2`, OAuth at `/oauth/token`
/// and `/.well-known`, health probes at the root.
pub fn app(state: AppState) -> Router {
    let scim = scim_router(&state);
    let metrics_route = guarded(
        &state,
        get(telemetry::serve),
        Need::MetricsRead,
        metered(&state, "/metrics".into(), "metrics"),
    );
    let audit_route = guarded(
        &state,
        get(audit::list),
        Need::AuditRead,
        metered(&state, "/admin/v1/audit".into(), "audit"),
    );
    let poll_route = guarded(
        &state,
        axum::routing::post(events::poll),
        Need::AnyToken,
        metered(&state, "/events/v1/streams/{id}".into(), "events_poll"),
    );
    let unguarded: [(&str, &'static str, MethodRouter<AppState>); 6] = [
        ("/oauth/token", "token", axum::routing::post(auth::token)),
        (
            "/oauth/introspect",
            "introspect",
            axum::routing::post(auth::introspect),
        ),
        ("/.well-known/jwks.json", "discovery", get(auth::jwks)),
        (
            "/.well-known/oauth-authorization-server",
            "discovery",
            get(auth::metadata),
        ),
        ("/openapi.json", "discovery", get(openapi::serve)),
        ("/readyz", "health", get(discovery::ready)),
    ];
    let mut router = scim
        .route("/metrics", metrics_route)
        .route("/admin/v1/audit", audit_route)
        .route("/events/v1/streams/{id}", poll_route)
        .route("/healthz", get(|| async { "ok" }));
    for (path, operation, handler) in unguarded {
        router = router.route(path, measured(&state, handler, path, operation));
    }
    // A SCIM error for a path or method nothing serves, rather than axum's
    // empty answers (the `Allow` header stays).
    router
        .fallback(resources::no_route)
        .method_not_allowed_fallback(resources::method_not_allowed)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    /// The endpoints the registry refuses to resource types are exactly the
    /// fixed first segments of the route table.
    #[test]
    fn reserved_endpoints_are_the_fixed_routes() {
        let mut fixed: Vec<String> = super::declared_routes()
            .iter()
            .filter_map(|d| d.path.trim_start_matches('/').split('/').next())
            .filter(|segment| !segment.is_empty() && !segment.starts_with('{'))
            .map(str::to_string)
            .collect();
        fixed.sort();
        fixed.dedup();
        let mut reserved: Vec<String> = scimd_core::schema::RESERVED_ENDPOINTS
            .iter()
            .map(|r| r.to_string())
            .collect();
        reserved.sort();
        assert_eq!(fixed, reserved);
    }
}
