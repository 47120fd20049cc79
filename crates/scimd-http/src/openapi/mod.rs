//! `/openapi.json`: an OpenAPI 3.1 document of every route, generated from
//! the route table (`scim_table`, the service routes in `service.rs`) and
//! the live schema registry, so it cannot drift from what the server does:
//! - `operations.rs`: each SCIM operation's parameters, request body and
//!   every answer it can give;
//! - `schemas.rs`: the component schemas: each resource type from its SCIM
//!   schema, the protocol messages (`ListResponse`, `PatchOp`,
//!   `SearchRequest`, `BulkRequest`/`BulkResponse`, `Error`);
//! - `service.rs`: the routes beside SCIM (OAuth, discovery of keys,
//!   health, metrics, the audit trail, event polling).

mod operations;
mod schemas;
mod service;

use axum::Json;
use axum::extract::State;
use scimd_auth::{Need, Scopes};
use scimd_core::schema::Registry;
use serde_json::{Map, Value, json};

use crate::{AppState, Declared, declared_routes};

pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    Json(document(
        &declared_routes(),
        state.service.registry(),
        state.auth.scopes(),
        state.auth.config().public_discovery,
        &state.public_base,
    ))
}

/// The OpenAPI 3.1 document.
pub fn document(
    routes: &[Declared],
    registry: &Registry,
    scopes: &Scopes,
    public_discovery: bool,
    base: &str,
) -> Value {
    let endpoints: Vec<String> = registry
        .resource_types()
        .iter()
        .map(|rt| rt.endpoint().to_string())
        .collect();
    let mut paths = Map::new();
    let mut all_scopes = Map::new();
    for route in routes {
        let concrete: Vec<(String, Option<String>)> = if route.path.contains("{endpoint}") {
            endpoints
                .iter()
                .map(|e| {
                    let name = e.trim_start_matches('/');
                    (route.path.replace("{endpoint}", name), Some(e.clone()))
                })
                .collect()
        } else {
            vec![(route.path.to_string(), None)]
        };
        for (path, endpoint) in concrete {
            let scope = scopes.required(route.need, endpoint.as_deref());
            let security = match (&scope, route.need) {
                (Some(scope), _) => {
                    all_scopes.insert(scope.clone(), json!(describe(route.need)));
                    json!([{ "oauth2": [scope] }])
                }
                (None, Need::Discovery) if public_discovery => json!([]),
                (None, _) => json!([{ "oauth2": [] }]),
            };
            let rt = endpoint.as_deref().and_then(|e| registry.by_endpoint(e));
            let rt = rt.or_else(|| path.starts_with("/Me").then(|| registry.by_name("User"))?);
            let operation = operations::operation(&route.method, route.path, &path, rt, security);
            let entry = paths
                .entry(format!("/scim/v2{path}"))
                .or_insert_with(|| json!({}));
            if let Some(obj) = entry.as_object_mut() {
                obj.insert(route.method.as_str().to_ascii_lowercase(), operation);
            }
        }
    }
    for need in [Need::MetricsRead, Need::AuditRead] {
        if let Some(scope) = scopes.required(need, None) {
            all_scopes.insert(scope, json!(describe(need)));
        }
    }
    service::add_paths(&mut paths, scopes);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "scimd SCIM 2.0 API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "SCIM 2.0 (RFC 7643, RFC 7644) protected by OAuth 2.0 bearer tokens; \
                            each operation lists the scope it requires. Errors are SCIM Error \
                            messages (RFC 7644 section 3.12), except on the OAuth and event \
                            polling routes, which answer in their own RFCs' shapes.",
        },
        "servers": [{ "url": base }],
        "paths": paths,
        "components": {
            "schemas": schemas::components(registry),
            "responses": operations::error_responses(),
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "description": "Bearer tokens (RFC 6750) from the token endpoint",
                    "flows": { "clientCredentials": {
                        "tokenUrl": format!("{base}/oauth/token"),
                        "scopes": all_scopes,
                    }},
                },
                "clientBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "An OAuth client's id and secret, at the token and introspection endpoints",
                },
            },
        },
    })
}

fn describe(need: Need) -> &'static str {
    match need {
        Need::Read => "Query and search resources of one type",
        Need::Write => "Create, replace, modify and delete resources of one type",
        Need::Bulk => "Send requests to the bulk endpoint",
        Need::SearchAll => "Search across every resource type",
        Need::MeRead => "Query and search resources of one type (/Me reads the token's user)",
        Need::MeWrite => {
            "Create, replace, modify and delete resources of one type (/Me changes the token's user)"
        }
        Need::MetricsRead => "Read the Prometheus metrics",
        Need::AuditRead => "Read the audit trail of every change",
        Need::Discovery | Need::AnyToken => "Any valid token",
    }
}
