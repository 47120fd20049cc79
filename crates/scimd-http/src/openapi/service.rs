//! The routes beside SCIM in the document: OAuth (RFC 6749, 7662, 8414),
//! the JWKS, health probes, metrics, the audit trail and event polling
//! (RFC 8936). Their errors are in their own RFCs' shapes where those
//! define one.

use scimd_auth::Scopes;
use serde_json::{Map, Value, json};

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn oauth_error(description: &str) -> Value {
    json!({
        "description": description,
        "content": json_content(json!({
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": { "type": "string" },
                "error_description": { "type": "string" },
            },
        })),
    })
}

fn set_error(description: &str) -> Value {
    json!({
        "description": description,
        "content": json_content(json!({
            "type": "object",
            "required": ["err", "description"],
            "properties": { "err": { "type": "string" }, "description": { "type": "string" } },
        })),
    })
}

fn scim_error(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

fn text(description: &str) -> Value {
    json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } })
}

pub(super) fn add_paths(paths: &mut Map<String, Value>, scopes: &Scopes) {
    let client_auth = json!([{ "clientBasic": [] }, {}]);
    paths.insert(
        "/oauth/token".into(),
        json!({ "post": {
            "summary": "OAuth 2.0 token endpoint (client_credentials; RFC 6749 section 4.4)",
            "security": client_auth,
            "requestBody": { "required": true, "content": { "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": { "type": "string", "enum": ["client_credentials"] },
                        "scope": { "type": "string", "description": "Space-separated scopes" },
                        "client_id": { "type": "string" },
                        "client_secret": { "type": "string" },
                        "client_assertion_type": { "type": "string" },
                        "client_assertion": { "type": "string" },
                    },
                },
            }}},
            "responses": {
                "200": { "description": "A bearer token", "content": json_content(json!({
                    "type": "object",
                    "required": ["access_token", "token_type", "expires_in"],
                    "properties": {
                        "access_token": { "type": "string" },
                        "token_type": { "type": "string" },
                        "expires_in": { "type": "integer" },
                        "scope": { "type": "string" },
                    },
                }))},
                "400": oauth_error("An invalid request, grant type or scope (RFC 6749 section 5.2)"),
                "401": oauth_error("Client authentication failed (invalid_client)"),
                "413": oauth_error("The form is too large"),
                "429": oauth_error("Too many failed authentications from this address (slow_down)"),
                "503": oauth_error("The store cannot be reached"),
            },
        }}),
    );
    paths.insert(
        "/oauth/introspect".into(),
        json!({ "post": {
            "summary": "Token introspection (RFC 7662)",
            "security": client_auth,
            "requestBody": { "required": true, "content": { "application/x-www-form-urlencoded": {
                "schema": { "type": "object", "required": ["token"],
                            "properties": { "token": { "type": "string" } } },
            }}},
            "responses": {
                "200": { "description": "Whether the token is active, and its claims",
                         "content": json_content(json!({ "type": "object", "required": ["active"],
                             "properties": { "active": { "type": "boolean" } } })) },
                "400": oauth_error("An invalid request"),
                "401": oauth_error("Client authentication failed"),
                "413": oauth_error("The form is too large"),
                "429": oauth_error("Too many failed authentications"),
                "503": oauth_error("The store cannot be reached"),
            },
        }}),
    );
    for (path, summary) in [
        (
            "/.well-known/jwks.json",
            "The public keys of tokens and SETs (RFC 7517)",
        ),
        (
            "/.well-known/oauth-authorization-server",
            "Authorization server metadata (RFC 8414)",
        ),
        ("/openapi.json", "This document"),
    ] {
        paths.insert(
            path.into(),
            json!({ "get": { "summary": summary, "security": [], "responses": {
                "200": { "description": summary, "content": json_content(json!({ "type": "object" })) },
            }}}),
        );
    }
    paths.insert(
        "/healthz".into(),
        json!({ "get": { "summary": "Liveness: the process answers", "security": [],
                         "responses": { "200": text("ok") } } }),
    );
    paths.insert(
        "/readyz".into(),
        json!({ "get": { "summary": "Readiness: the store answers", "security": [],
                         "responses": { "200": text("ready"), "503": text("not ready") } } }),
    );
    paths.insert(
        "/metrics".into(),
        json!({ "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "security": [{ "oauth2": [scopes.metrics_read()] }],
            "responses": {
                "200": text("The metrics"),
                "401": scim_error("Unauthorized"),
                "403": scim_error("Forbidden"),
                "404": { "description": "Metrics are off (metrics = false)" },
                "429": scim_error("TooManyRequests"),
            },
        }}),
    );
    let query = |name: &str, schema: Value, description: &str| {
        json!({ "name": name, "in": "query", "required": false, "schema": schema,
                "description": description })
    };
    paths.insert(
        "/admin/v1/audit".into(),
        json!({ "get": {
            "summary": "The audit trail: committed changes, oldest first, by cursor",
            "security": [{ "oauth2": [scopes.audit_read()] }],
            "parameters": [
                query("resourceId", json!({ "type": "string" }), "Only changes of this resource or record"),
                query("resourceType", json!({ "type": "string" }), "Only this resource type or record kind"),
                query("actor", json!({ "type": "string" }), "Only changes by this client id or token subject"),
                query("op", json!({ "type": "string" }), "Only this operation (create, replace, patch, delete, client.create, ...)"),
                query("since", json!({ "type": "string", "format": "date-time" }), "At or after this time"),
                query("until", json!({ "type": "string", "format": "date-time" }), "Before this time"),
                query("cursor", json!({ "type": "string" }), "The nextCursor of the previous page"),
                query("count", json!({ "type": "integer", "minimum": 1, "maximum": 1000 }), "Entries per page (default 100)"),
            ],
            "responses": {
                "200": { "description": "A page of entries", "content": json_content(json!({
                    "type": "object",
                    "required": ["entries"],
                    "properties": {
                        "entries": { "type": "array", "items": {
                            "type": "object",
                            "required": ["position", "at", "op", "resourceType", "resourceId", "actor", "paths"],
                            "properties": {
                                "position": { "type": "integer" },
                                "at": { "type": "string", "format": "date-time" },
                                "op": { "type": "string" },
                                "resourceType": { "type": "string" },
                                "resourceId": { "type": "string" },
                                "versionBefore": { "type": "integer" },
                                "versionAfter": { "type": "integer" },
                                "actor": { "type": "object" },
                                "paths": { "type": "array", "items": { "type": "string" } },
                                "detail": {},
                            },
                        }},
                        "nextCursor": { "type": "string" },
                    },
                }))},
                "400": scim_error("BadRequest"),
                "401": scim_error("Unauthorized"),
                "403": scim_error("Forbidden"),
                "429": scim_error("TooManyRequests"),
                "500": scim_error("InternalError"),
                "503": scim_error("Unavailable"),
            },
        }}),
    );
    paths.insert(
        "/events/v1/streams/{id}".into(),
        json!({ "post": {
            "summary": "Poll an event stream (RFC 8936); the token needs the stream's own scope, events.<stream id>",
            "security": [{ "oauth2": [] }],
            "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "required": false, "content": json_content(json!({
                "type": "object",
                "properties": {
                    "ack": { "type": "array", "items": { "type": "string" } },
                    "setErrs": { "type": "object", "additionalProperties": {
                        "type": "object", "required": ["err"],
                        "properties": { "err": { "type": "string" }, "description": { "type": "string" } },
                    }},
                    "maxEvents": { "type": "integer", "minimum": 0, "maximum": 1000 },
                    "returnImmediately": { "type": "boolean" },
                },
            }))},
            "responses": {
                "200": { "description": "SETs by jti", "content": json_content(json!({
                    "type": "object",
                    "required": ["sets"],
                    "properties": {
                        "sets": { "type": "object", "additionalProperties": { "type": "string" } },
                        "moreAvailable": { "type": "boolean" },
                    },
                }))},
                "400": set_error("An invalid poll request"),
                "401": scim_error("Unauthorized"),
                "403": scim_error("Forbidden"),
                "404": set_error("No such stream"),
                "408": set_error("The poll request did not arrive within body_timeout_secs"),
                "413": set_error("The poll request is too large"),
                "415": scim_error("UnsupportedMediaType"),
                "429": scim_error("TooManyRequests"),
                "500": set_error("The poll failed (logged)"),
                "503": set_error("The store cannot answer for now, or concurrent polls: poll again"),
            },
        }}),
    );
}
