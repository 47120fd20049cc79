//! `/openapi.json`: every SCIM route with the OAuth2 scope it needs as a
//! security requirement, generated from the route table and the live
//! schemas, so it cannot drift from what the server enforces.

use axum::Json;
use axum::extract::State;
use scimd_auth::{Need, Scopes};
use scimd_core::schema::{AttrType, Attribute, Mutability, Registry};
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
            let mut responses = Map::new();
            responses.insert(
                success_status(&route.method, &path).into(),
                json!({ "description": "Success" }),
            );
            responses.insert(
                "401".into(),
                json!({ "description": "No valid bearer token (RFC 6750)" }),
            );
            responses.insert(
                "403".into(),
                json!({ "description": "The token lacks the required scope" }),
            );
            if path.contains('{') {
                responses.insert("404".into(), json!({ "description": "No such resource" }));
            }
            let mut operation = json!({
                "summary": summary(&route.method, route.path, rt.map(|r| r.name())),
                "security": security,
                "responses": responses,
            });
            let parameters = path_parameters(&path);
            if let (false, Some(op)) = (parameters.is_empty(), operation.as_object_mut()) {
                op.insert("parameters".into(), Value::Array(parameters));
            }
            if let (Some(rt), Some(op)) = (rt, operation.as_object_mut()) {
                op.insert("x-scim-resource-type".into(), json!(rt.name()));
                if matches!(route.method.as_str(), "POST" | "PUT") && !path.ends_with(".search") {
                    op.insert(
                        "requestBody".into(),
                        json!({ "content": { "application/scim+json": {
                            "schema": { "$ref": format!("#/components/schemas/{}", rt.name()) }
                        }}}),
                    );
                }
            }
            let entry = paths
                .entry(format!("/scim/v2{path}"))
                .or_insert_with(|| json!({}));
            if let Some(obj) = entry.as_object_mut() {
                obj.insert(route.method.as_str().to_ascii_lowercase(), operation);
            }
        }
    }
    let mut schemas = Map::new();
    for rt in registry.resource_types() {
        let mut properties = Map::new();
        properties.insert(
            "schemas".into(),
            json!({ "type": "array", "items": { "type": "string" } }),
        );
        for attr in &rt.core.attributes {
            properties.insert(attr.name.clone(), attribute_schema(attr));
        }
        for (ext, _) in &rt.extensions {
            let mut ext_props = Map::new();
            for attr in &ext.attributes {
                ext_props.insert(attr.name.clone(), attribute_schema(attr));
            }
            properties.insert(
                ext.id.clone(),
                json!({ "type": "object", "properties": ext_props }),
            );
        }
        schemas.insert(
            rt.name().to_string(),
            json!({ "type": "object", "description": rt.core.description, "properties": properties }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "scimd SCIM 2.0 API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "SCIM 2.0 (RFC 7643, RFC 7644) protected by OAuth 2.0 bearer tokens; \
                            each operation lists the scope it requires.",
        },
        "servers": [{ "url": base }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "flows": { "clientCredentials": {
                        "tokenUrl": format!("{base}/oauth/token"),
                        "scopes": all_scopes,
                    }},
                },
            },
        },
    })
}

/// The status of a successful answer: 201 for a create, 204 for a delete,
/// 200 otherwise (RFC 7644 sections 3.3, 3.6).
fn success_status(method: &axum::http::Method, path: &str) -> &'static str {
    match method.as_str() {
        "POST" if !path.ends_with(".search") && !path.ends_with("/Bulk") => "201",
        "DELETE" => "204",
        _ => "200",
    }
}

/// Every `{name}` of a path as a required path parameter.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": { "type": "string" },
            })
        })
        .collect()
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

fn summary(method: &axum::http::Method, path: &str, rt: Option<&str>) -> String {
    let what = rt.unwrap_or("");
    match (method.as_str(), path) {
        (_, p) if p.ends_with(".search") => format!("Search {what}").trim().to_string(),
        ("GET", p) if p.ends_with("{id}") => format!("Read one {what}"),
        ("GET", _) => format!("List {what}").trim().to_string(),
        ("POST", _) => format!("Create a {what}"),
        ("PUT", _) => format!("Replace a {what}"),
        ("PATCH", _) => format!("Modify a {what}"),
        ("DELETE", _) => format!("Delete a {what}"),
        (m, p) => format!("{m} {p}"),
    }
}

/// A SCIM attribute as JSON Schema.
fn attribute_schema(attr: &Attribute) -> Value {
    let mut one = match attr.typ {
        AttrType::String | AttrType::Reference | AttrType::Binary => json!({ "type": "string" }),
        AttrType::Boolean => json!({ "type": "boolean" }),
        AttrType::Integer => json!({ "type": "integer" }),
        AttrType::Decimal => json!({ "type": "number" }),
        AttrType::DateTime => json!({ "type": "string", "format": "date-time" }),
        AttrType::Complex => {
            let mut props = Map::new();
            for sub in &attr.sub_attributes {
                props.insert(sub.name.clone(), attribute_schema(sub));
            }
            json!({ "type": "object", "properties": props })
        }
    };
    if let Some(obj) = one.as_object_mut() {
        if let Some(d) = &attr.description {
            obj.insert("description".into(), json!(d));
        }
        if attr.mutability == Mutability::ReadOnly {
            obj.insert("readOnly".into(), json!(true));
        }
        if attr.mutability == Mutability::WriteOnly {
            obj.insert("writeOnly".into(), json!(true));
        }
    }
    if attr.multi_valued {
        json!({ "type": "array", "items": one })
    } else {
        one
    }
}
