//! The document's component schemas. Each resource type twice, from its
//! SCIM schema: `<Type>` as a request sends it (required attributes, what
//! the server also accepts: `null` for "no value", "True"/"False" strings
//! for booleans, a lone value for a multi-valued attribute, a bare id for a
//! reference such as `manager`), and `<Type>Resource` as answers show it
//! (nothing required: `attributes` may leave anything out). Then the
//! protocol messages of RFC 7644.

use scimd_core::schema::{AttrType, Attribute, Mutability, Registry, ResourceTypeDef};
use serde_json::{Map, Value, json};

/// Which side of the exchange a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

pub(super) fn components(registry: &Registry) -> Value {
    let mut schemas = Map::new();
    for rt in registry.resource_types() {
        schemas.insert(rt.name().to_string(), resource(rt, Side::Request));
        schemas.insert(
            format!("{}Resource", rt.name()),
            resource(rt, Side::Response),
        );
    }
    let resources: Vec<Value> = registry
        .resource_types()
        .iter()
        .map(|rt| json!({ "$ref": format!("#/components/schemas/{}Resource", rt.name()) }))
        .collect();
    for (name, schema) in messages(resources) {
        schemas.insert(name.into(), schema);
    }
    Value::Object(schemas)
}

fn resource(rt: &ResourceTypeDef, side: Side) -> Value {
    let mut properties = Map::new();
    properties.insert(
        "schemas".into(),
        json!({ "type": "array", "items": { "type": "string" } }),
    );
    let mut required = Vec::new();
    for attr in rt.common.attributes.iter().chain(&rt.core.attributes) {
        if side == Side::Response || attr.mutability != Mutability::ReadOnly {
            properties.insert(attr.name.clone(), attribute(attr, side));
        }
        if side == Side::Request && attr.required && attr.mutability != Mutability::ReadOnly {
            required.push(attr.name.clone());
        }
    }
    for (ext, _) in &rt.extensions {
        let mut inner = Map::new();
        for attr in &ext.attributes {
            inner.insert(attr.name.clone(), attribute(attr, side));
        }
        let mut schema = json!({ "type": "object", "properties": inner, "description": ext.name });
        if side == Side::Request {
            schema = nullable(schema);
        }
        properties.insert(ext.id.clone(), schema);
    }
    let mut out = json!({
        "type": "object",
        "description": rt.core.description,
        "properties": properties,
    });
    if !required.is_empty() {
        out["required"] = json!(required);
    }
    out
}

/// A SCIM attribute as JSON Schema.
fn attribute(attr: &Attribute, side: Side) -> Value {
    let mut one = match attr.typ {
        AttrType::String | AttrType::Reference | AttrType::Binary => json!({ "type": "string" }),
        AttrType::Boolean if side == Side::Request => json!({ "anyOf": [
            { "type": "boolean" },
            { "type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$" },
        ]}),
        AttrType::Boolean => json!({ "type": "boolean" }),
        AttrType::Integer => json!({ "type": "integer" }),
        AttrType::Decimal => json!({ "type": "number" }),
        AttrType::DateTime => json!({ "type": "string", "format": "date-time" }),
        AttrType::Complex => {
            let mut props = Map::new();
            for sub in &attr.sub_attributes {
                if side == Side::Response || sub.mutability != Mutability::ReadOnly {
                    props.insert(sub.name.clone(), attribute(sub, side));
                }
            }
            let object = json!({ "type": "object", "properties": props });
            if side == Side::Request && attr.takes_bare_value() {
                json!({ "anyOf": [object, { "type": "string", "description": "The value alone" }] })
            } else {
                object
            }
        }
    };
    if let Some(obj) = one.as_object_mut() {
        if let Some(d) = &attr.description {
            obj.insert("description".into(), json!(d));
        }
        match attr.mutability {
            Mutability::ReadOnly => {
                obj.insert("readOnly".into(), json!(true));
            }
            Mutability::WriteOnly => {
                obj.insert("writeOnly".into(), json!(true));
            }
            _ => {}
        }
        if let Some(values) = attr.canonical_values.as_ref().filter(|v| !v.is_empty()) {
            // Suggestions (RFC 7643 section 7), not limits: examples.
            obj.insert("examples".into(), json!(values));
        }
    }
    let shaped = if attr.multi_valued {
        match side {
            // A null element is no element.
            Side::Request => json!({ "anyOf": [
                { "type": "array", "items": nullable(one.clone()) }, one,
            ]}),
            Side::Response => json!({ "type": "array", "items": one }),
        }
    } else {
        one
    };
    match side {
        Side::Request => nullable(shaped),
        Side::Response => shaped,
    }
}

/// `schema` or `null` (a request's way to say "no value").
fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The messages of RFC 7644: `ListResponse` (3.4.2), `SearchRequest`
/// (3.4.3), `PatchOp` (3.5.2), `BulkRequest`/`BulkResponse` (3.7), `Error`
/// (3.12, with the `scimType` values scimd sends).
fn messages(resources: Vec<Value>) -> Vec<(&'static str, Value)> {
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    vec![
        (
            "ListResponse",
            json!({
                "type": "object",
                "required": ["schemas", "totalResults"],
                "properties": {
                    "schemas": { "type": "array", "items": { "const": LIST_RESPONSE } },
                    "totalResults": { "type": "integer", "minimum": 0 },
                    "startIndex": { "type": "integer", "minimum": 1 },
                    "itemsPerPage": { "type": "integer", "minimum": 0 },
                    "nextCursor": { "type": "string" },
                    "Resources": { "type": "array", "items": { "anyOf": resources } },
                },
            }),
        ),
        (
            "SearchRequest",
            json!({
                "type": "object",
                // `null` is "not given", as everywhere in SCIM.
                "properties": {
                    "schemas": nullable(strings.clone()),
                    "attributes": nullable(json!({ "anyOf": [strings, { "type": "string" }] })),
                    "excludedAttributes": nullable(json!({ "anyOf": [strings, { "type": "string" }] })),
                    "filter": nullable(json!({ "type": "string" })),
                    "sortBy": nullable(json!({ "type": "string" })),
                    "sortOrder": nullable(json!({ "type": "string", "enum": ["ascending", "descending"] })),
                    "startIndex": nullable(json!({ "type": "integer" })),
                    "count": nullable(json!({ "type": "integer" })),
                    "cursor": nullable(json!({ "type": "string" })),
                },
            }),
        ),
        (
            "PatchOp",
            json!({
                "type": "object",
                "required": ["Operations"],
                "properties": {
                    "schemas": nullable(strings.clone()),
                    "Operations": { "type": "array", "minItems": 1, "items": {
                        "type": "object",
                        "required": ["op"],
                        "properties": {
                            "op": { "type": "string", "description": "add, remove or replace (any case)" },
                            "path": { "type": "string" },
                            "value": {},
                        },
                    }},
                },
            }),
        ),
        (
            "BulkRequest",
            json!({
                "type": "object",
                "required": ["Operations"],
                "properties": {
                    "schemas": nullable(strings.clone()),
                    "failOnErrors": nullable(json!({ "type": "integer" })),
                    // Each operation is checked on its own and fails on its
                    // own (RFC 7644 section 3.7.3): the request is accepted
                    // whatever its operations hold, and the BulkResponse
                    // gives each one's status.
                    "Operations": { "type": "array", "items": {
                        "description": "An operation: method (POST, PUT, PATCH, DELETE), path, bulkId, version, data",
                    }},
                },
            }),
        ),
        (
            "BulkResponse",
            json!({
                "type": "object",
                "required": ["schemas", "Operations"],
                "properties": {
                    "schemas": strings,
                    "Operations": { "type": "array", "items": {
                        "type": "object",
                        "required": ["method", "status"],
                        "properties": {
                            "method": { "type": "string" },
                            "bulkId": { "type": "string" },
                            "version": { "type": "string" },
                            "location": { "type": "string" },
                            "status": { "type": "string" },
                            "response": {},
                        },
                    }},
                },
            }),
        ),
        (
            "Error",
            json!({
                "type": "object",
                "required": ["schemas", "status"],
                "properties": {
                    "schemas": { "type": "array", "items": {
                        "const": "urn:ietf:params:scim:api:messages:2.0:Error" } },
                    "status": { "type": "string", "description": "The HTTP status, as a string" },
                    "scimType": { "type": "string", "enum": scimd_core::error::SCIM_TYPES },
                    "detail": { "type": "string" },
                },
            }),
        ),
    ]
}
