//! The thin HTTP layer: axum routes that parse requests into typed values,
//! call one [`ResourceService`] method and render the result.
//!
//! Architecture invariants:
//! - No SQL and no SCIM rules here; handlers only translate HTTP to core calls.
//! - Every error leaves through [`error::ApiError`], the one place that
//!   renders SCIM error bodies.

mod discovery;
mod error;
mod extract;
mod resources;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use scimd_core::service::ResourceService;

pub use error::ApiError;

/// The SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<ResourceService>,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
}

/// The whole application: SCIM under `/scim/v2`, health probes at the root.
pub fn app(state: AppState) -> Router {
    let scim = Router::new()
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config).fallback(discovery::read_only),
        )
        .route(
            "/ResourceTypes",
            get(discovery::resource_types).fallback(discovery::read_only),
        )
        .route(
            "/ResourceTypes/{id}",
            get(discovery::resource_type).fallback(discovery::read_only),
        )
        .route(
            "/Schemas",
            get(discovery::schemas).fallback(discovery::read_only),
        )
        .route(
            "/Schemas/{id}",
            get(discovery::schema).fallback(discovery::read_only),
        )
        .route("/.search", axum::routing::post(resources::search_root))
        .route("/{endpoint}", get(resources::list).post(resources::create))
        .route(
            "/{endpoint}/.search",
            axum::routing::post(resources::search),
        )
        .route(
            "/{endpoint}/{id}",
            get(resources::get_one)
                .put(resources::replace)
                .delete(resources::delete)
                .patch(resources::patch),
        )
        .fallback(resources::no_route);
    Router::new()
        .nest("/scim/v2", scim)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(discovery::ready))
        .with_state(state)
}
