//! One SCIM operation of the document: its parameters, request body and
//! every answer the server can give it, by the kind of route it is.

use std::sync::Arc;

use axum::http::Method;
use scimd_core::schema::ResourceTypeDef;
use serde_json::{Map, Value, json};

/// What a route does, from its template: it decides the parameters, body
/// and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`.
    Discovery,
    /// `/ResourceTypes/{id}`, `/Schemas/{id}`.
    DiscoveryOne,
    /// `GET /{endpoint}`, `GET /` (the root query).
    List,
    /// `POST /{endpoint}/.search`, `POST /.search`.
    Search,
    Bulk,
    Create,
    Get,
    Replace,
    Patch,
    Delete,
}

fn kind(method: &Method, template: &str) -> Kind {
    let discovery = ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"];
    match method.as_str() {
        _ if discovery.contains(&template) => Kind::Discovery,
        _ if template.starts_with("/ResourceTypes/") || template.starts_with("/Schemas/") => {
            Kind::DiscoveryOne
        }
        _ if template.ends_with(".search") => Kind::Search,
        _ if template == "/Bulk" => Kind::Bulk,
        "GET" if template == "/" || template == "/{endpoint}" => Kind::List,
        "GET" => Kind::Get,
        "POST" => Kind::Create,
        "PUT" => Kind::Replace,
        "PATCH" => Kind::Patch,
        _ => Kind::Delete,
    }
}

/// The operation `method` on `path` (made from `template`), of resource
/// type `rt` when it names one.
pub(super) fn operation(
    method: &Method,
    template: &str,
    path: &str,
    rt: Option<&Arc<ResourceTypeDef>>,
    security: Value,
) -> Value {
    let kind = kind(method, template);
    let me = template == "/Me";
    let mut op = Map::new();
    op.insert(
        "summary".into(),
        json!(summary(kind, rt.map(|r| r.name()), me)),
    );
    op.insert("security".into(), security);
    let mut parameters = path_parameters(path);
    parameters.extend(query_parameters(kind));
    parameters.extend(header_parameters(kind));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(body) = request_body(kind, rt) {
        op.insert("requestBody".into(), body);
    }
    op.insert("responses".into(), responses(kind, rt, me));
    if let Some(rt) = rt {
        op.insert("x-scim-resource-type".into(), json!(rt.name()));
    }
    Value::Object(op)
}

fn summary(kind: Kind, rt: Option<&str>, me: bool) -> String {
    let what = if me {
        "the token's User".to_string()
    } else {
        rt.unwrap_or("").to_string()
    };
    match kind {
        Kind::Discovery => "Discovery document".into(),
        Kind::DiscoveryOne => "One discovery document".into(),
        Kind::List => format!("List {what}").trim().to_string(),
        Kind::Search => format!("Search {what}").trim().to_string(),
        Kind::Bulk => "Bulk operations".into(),
        Kind::Create => format!("Create {what}"),
        Kind::Get => format!("Read {what}"),
        Kind::Replace => format!("Replace {what}"),
        Kind::Patch => format!("Modify {what}"),
        Kind::Delete => format!("Delete {what}"),
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

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description })
}

/// The query parameters of RFC 7644 section 3.4.2 (and RFC 9865's cursor).
fn query_parameters(kind: Kind) -> Vec<Value> {
    let projection = || {
        vec![
            query(
                "attributes",
                json!({ "type": "string" }),
                "Attribute paths to return, comma-separated (RFC 7644 section 3.9)",
            ),
            query(
                "excludedAttributes",
                json!({ "type": "string" }),
                "Attribute paths not to return, comma-separated",
            ),
        ]
    };
    match kind {
        Kind::List => {
            let mut all = vec![
                query(
                    "filter",
                    json!({ "type": "string" }),
                    "A filter (RFC 7644 section 3.4.2.2)",
                ),
                query(
                    "sortBy",
                    json!({ "type": "string" }),
                    "The attribute path to sort by",
                ),
                query(
                    "sortOrder",
                    json!({ "type": "string", "enum": ["ascending", "descending"] }),
                    "ascending (the default) or descending; case-insensitive",
                ),
                query(
                    "startIndex",
                    json!({ "type": "integer" }),
                    "1-based index of the first result (values below 1 are 1)",
                ),
                query(
                    "count",
                    json!({ "type": "integer" }),
                    "Results per page (negative values are 0; above the maximum, the maximum)",
                ),
                query(
                    "cursor",
                    json!({ "type": "string" }),
                    "Cursor paging (RFC 9865): empty for the first page, then nextCursor",
                ),
            ];
            all.extend(projection());
            all
        }
        Kind::Create | Kind::Get | Kind::Replace | Kind::Patch => projection(),
        _ => Vec::new(),
    }
}

fn header_parameters(kind: Kind) -> Vec<Value> {
    let header = |name: &str, description: &str| {
        json!({ "name": name, "in": "header", "required": false,
                "schema": { "type": "string" }, "description": description })
    };
    match kind {
        Kind::Get => vec![header(
            "If-None-Match",
            "Entity tags: 304 when the resource still has one of them",
        )],
        Kind::Replace | Kind::Patch | Kind::Delete => vec![header(
            "If-Match",
            "Entity tags: 412 unless the resource still has one of them",
        )],
        _ => Vec::new(),
    }
}

fn content(schema: Value) -> Value {
    json!({
        "application/scim+json": { "schema": schema },
        "application/json": { "schema": schema },
    })
}

fn component(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn request_body(kind: Kind, rt: Option<&Arc<ResourceTypeDef>>) -> Option<Value> {
    let schema = match (kind, rt) {
        (Kind::Create | Kind::Replace, Some(rt)) => component(rt.name()),
        (Kind::Patch, _) => component("PatchOp"),
        (Kind::Search, _) => component("SearchRequest"),
        (Kind::Bulk, _) => component("BulkRequest"),
        _ => return None,
    };
    // A search may be sent without a body (all defaults).
    let required = kind != Kind::Search;
    Some(json!({ "required": required, "content": content(schema) }))
}

/// Every answer of the operation: its success, then the errors it can give
/// (the shared error responses of [`error_responses`]).
fn responses(kind: Kind, rt: Option<&Arc<ResourceTypeDef>>, me: bool) -> Value {
    let resource = rt.map_or_else(
        || json!({ "type": "object" }),
        |rt| component(&format!("{}Resource", rt.name())),
    );
    let mut out = Map::new();
    let ok = |description: &str, schema: Value| json!({ "description": description, "content": content(schema) });
    match kind {
        Kind::Discovery | Kind::DiscoveryOne => {
            out.insert(
                "200".into(),
                ok("The document", json!({ "type": "object" })),
            );
        }
        Kind::List | Kind::Search => {
            out.insert(
                "200".into(),
                ok("A page of results", component("ListResponse")),
            );
        }
        Kind::Bulk => {
            out.insert(
                "200".into(),
                ok("Each operation's outcome", component("BulkResponse")),
            );
        }
        Kind::Create => {
            out.insert("201".into(), ok("Created", resource.clone()));
        }
        Kind::Get => {
            out.insert("200".into(), ok("The resource", resource.clone()));
            out.insert(
                "304".into(),
                json!({ "description": "Not modified (If-None-Match)" }),
            );
        }
        Kind::Replace => {
            out.insert("200".into(), ok("Replaced", resource.clone()));
        }
        Kind::Patch => {
            out.insert("200".into(), ok("Modified", resource.clone()));
            out.insert(
                "204".into(),
                json!({ "description": "Modified; no body (membership changes, Prefer: return=minimal)" }),
            );
        }
        Kind::Delete => {
            out.insert("204".into(), json!({ "description": "Deleted" }));
        }
    }
    // 414 and 431 come from the listener, for any request (`server/rejections.rs`).
    let mut errors = vec!["401", "403", "414", "429", "431", "503"];
    match kind {
        Kind::Discovery => errors.push("400"),
        Kind::DiscoveryOne => errors.extend(["400", "404"]),
        Kind::List => errors.push("400"),
        Kind::Search | Kind::Bulk => errors.extend(["400", "408", "413", "415"]),
        Kind::Create => errors.extend(["400", "408", "409", "413", "415", "507"]),
        Kind::Get => errors.extend(["400", "404"]),
        Kind::Replace | Kind::Patch => {
            errors.extend(["400", "404", "408", "409", "412", "413", "415", "507"]);
        }
        Kind::Delete => errors.extend(["404", "412", "507"]),
    }
    if me {
        errors.extend(["404", "501"]);
        if kind == Kind::Create {
            errors.push("409");
        }
    }
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        out.insert(
            status.into(),
            json!({ "$ref": format!("#/components/responses/{}", error_name(status)) }),
        );
    }
    Value::Object(out)
}

/// The SCIM error answers, by status: a SCIM Error message each.
const ERRORS: [(&str, &str, &str); 16] = [
    (
        "400",
        "BadRequest",
        "The request is not valid (scimType says how)",
    ),
    (
        "401",
        "Unauthorized",
        "No valid bearer token (RFC 6750; WWW-Authenticate says why)",
    ),
    (
        "403",
        "Forbidden",
        "The token lacks the scope, or the request is refused",
    ),
    ("404", "NotFound", "No such resource"),
    (
        "408",
        "RequestTimeout",
        "The request body did not arrive within body_timeout_secs",
    ),
    (
        "409",
        "Conflict",
        "A unique value is taken (scimType uniqueness)",
    ),
    (
        "412",
        "PreconditionFailed",
        "If-Match names no current version",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body, or its operations, exceed the limits",
    ),
    (
        "414",
        "UriTooLong",
        "The request target is over 65,534 bytes: send a long filter by POST .search",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body was sent as a form or plain text, not JSON",
    ),
    (
        "429",
        "TooManyRequests",
        "The client is over its request rate (Retry-After)",
    ),
    (
        "431",
        "HeaderTooLarge",
        "The request header is larger than the server reads",
    ),
    (
        "500",
        "InternalError",
        "An internal error (never expected; logged)",
    ),
    (
        "501",
        "NotImplemented",
        "Not available for this token or resource",
    ),
    (
        "503",
        "Unavailable",
        "The store cannot be reached, or a write collided: retry",
    ),
    (
        "507",
        "InsufficientStorage",
        "The store's disk is full: nothing was written",
    ),
];

fn error_name(status: &str) -> &'static str {
    ERRORS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map_or("BadRequest", |(_, name, _)| name)
}

/// `components.responses`: one SCIM error answer per status.
pub(super) fn error_responses() -> Value {
    let mut out = Map::new();
    for (status, name, description) in ERRORS {
        out.insert(
            name.into(),
            json!({
                "description": format!("{status}: {description}"),
                "content": content(component("Error")),
            }),
        );
    }
    Value::Object(out)
}
