//! The thin HTTP layer: axum routes that parse requests into typed values,
//! call one [`ResourceService`] method and render the result.
//!
//! Architecture invariants:
//! - No SQL and no SCIM rules here; handlers only translate HTTP to core calls.
//! - Every error leaves through [`error::ApiError`], the one place that
//!   renders SCIM error bodies.

mod auth;
mod discovery;
mod error;
mod extract;
mod resources;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, get};
use scimd_auth::{Auth, Need};
use scimd_core::service::ResourceService;

pub use error::ApiError;

/// The SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<ResourceService>,
    pub auth: Arc<Auth>,
    /// Public base URL (scheme://host:port) of this server.
    pub public_base: String,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
}

/// One SCIM route as declared: what OpenAPI describes and what the
/// every-route-has-a-scope test checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub path: &'static str,
    pub method: Method,
    pub need: Need,
}

/// Builds the SCIM router; each route states the scope it needs.
struct Scim {
    state: AppState,
    router: Router<AppState>,
    declared: Vec<Declared>,
}

impl Scim {
    fn route(
        mut self,
        method: Method,
        path: &'static str,
        need: Need,
        handler: MethodRouter<AppState>,
    ) -> Scim {
        let guarded =
            handler.route_layer(from_fn_with_state((self.state.clone(), need), auth::guard));
        self.router = self.router.route(path, guarded);
        self.declared.push(Declared { path, method, need });
        self
    }
}

fn scim_routes(state: &AppState) -> Scim {
    use Need::*;
    use resources as r;
    let scim = Scim {
        state: state.clone(),
        router: Router::new(),
        declared: Vec::new(),
    };
    scim.route(
        Method::GET,
        "/ServiceProviderConfig",
        Discovery,
        read_only(get(discovery::service_provider_config)),
    )
    .route(
        Method::GET,
        "/ResourceTypes",
        Discovery,
        read_only(get(discovery::resource_types)),
    )
    .route(
        Method::GET,
        "/ResourceTypes/{id}",
        Discovery,
        read_only(get(discovery::resource_type)),
    )
    .route(
        Method::GET,
        "/Schemas",
        Discovery,
        read_only(get(discovery::schemas)),
    )
    .route(
        Method::GET,
        "/Schemas/{id}",
        Discovery,
        read_only(get(discovery::schema)),
    )
    .route(
        Method::POST,
        "/.search",
        SearchAll,
        axum::routing::post(r::search_root),
    )
    .route(Method::GET, "/{endpoint}", Read, get(r::list))
    .route(
        Method::POST,
        "/{endpoint}",
        Write,
        axum::routing::post(r::create),
    )
    .route(
        Method::POST,
        "/{endpoint}/.search",
        Read,
        axum::routing::post(r::search),
    )
    .route(Method::GET, "/{endpoint}/{id}", Read, get(r::get_one))
    .route(
        Method::PUT,
        "/{endpoint}/{id}",
        Write,
        axum::routing::put(r::replace),
    )
    .route(
        Method::PATCH,
        "/{endpoint}/{id}",
        Write,
        axum::routing::patch(r::patch),
    )
    .route(
        Method::DELETE,
        "/{endpoint}/{id}",
        Write,
        axum::routing::delete(r::delete),
    )
}

/// Discovery documents are read-only: other methods get a SCIM 405, not
/// axum's empty one.
fn read_only(handler: MethodRouter<AppState>) -> MethodRouter<AppState> {
    handler.fallback(discovery::read_only)
}

/// Every SCIM route with the scope it needs.
pub fn declared_routes(state: &AppState) -> Vec<Declared> {
    scim_routes(state).declared
}

/// The whole application: SCIM under `/scim/v2`, OAuth at `/oauth/token`
/// and `/.well-known`, health probes at the root.
pub fn app(state: AppState) -> Router {
    let scim = scim_routes(&state).router.fallback(resources::no_route);
    Router::new()
        .nest("/scim/v2", scim)
        .route("/oauth/token", axum::routing::post(auth::token))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(auth::metadata),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(discovery::ready))
        .with_state(state)
}
