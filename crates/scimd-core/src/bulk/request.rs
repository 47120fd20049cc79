//! A BulkRequest parsed into typed operations: errors that concern the
//! whole request refuse it; an operation wrong on its own keeps its error.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{BULK_REQUEST, BulkMethod, BulkOperation, BulkRequest, Target};
use crate::error::{ScimError, ScimResult};
use crate::service::ResourceService;
use crate::value::check_message_schema;

fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Parses a BulkRequest. Errors here concern the whole request; an
/// operation that is wrong on its own is kept and fails in its turn.
pub fn parse_request(
    service: &ResourceService,
    body: &Value,
    max_operations: usize,
) -> ScimResult<BulkRequest> {
    let Value::Object(map) = body else {
        return Err(ScimError::InvalidSyntax(
            "a BulkRequest must be a JSON object".into(),
        ));
    };
    check_message_schema(map, BULK_REQUEST)?;
    let fail_on_errors = match field(map, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n >= 1)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    ScimError::InvalidValue("failOnErrors must be a positive integer".into())
                })?,
        ),
    };
    let Some(Value::Array(list)) = field(map, "Operations") else {
        return Err(ScimError::InvalidSyntax(
            "a BulkRequest needs an 'Operations' array".into(),
        ));
    };
    if list.len() > max_operations {
        return Err(ScimError::PayloadTooLarge(format!(
            "the bulk request has {} operations; maxOperations is {max_operations}",
            list.len()
        )));
    }
    let mut operations = Vec::with_capacity(list.len());
    let mut bulk_ids = BTreeSet::new();
    for item in list {
        let op = parse_operation(service, item);
        if let Some(id) = &op.bulk_id
            && !bulk_ids.insert(id.clone())
        {
            return Err(ScimError::InvalidValue(format!(
                "bulkId '{id}' is used by more than one operation"
            )));
        }
        operations.push(op);
    }
    Ok(BulkRequest {
        fail_on_errors,
        operations,
    })
}

fn parse_operation(service: &ResourceService, item: &Value) -> BulkOperation {
    let empty = Map::new();
    let map = item.as_object().unwrap_or(&empty);
    let text = |name: &str| field(map, name).and_then(Value::as_str).map(str::to_string);
    let method_text = text("method").unwrap_or_default();
    let bulk_id = text("bulkId");
    let path = text("path").unwrap_or_default();
    let data = field(map, "data").filter(|v| !v.is_null()).cloned();
    // A version that is not a string would otherwise be dropped, and the
    // write made unconditionally.
    let not_text = ["method", "bulkId", "path", "version"]
        .into_iter()
        .find(|name| field(map, name).is_some_and(|v| !v.is_string() && !v.is_null()));
    let target = if item.as_object().is_none() {
        Err(ScimError::InvalidSyntax(
            "an operation must be an object".into(),
        ))
    } else if let Some(name) = not_text {
        Err(ScimError::InvalidValue(format!(
            "'{name}' must be a string"
        )))
    } else if bulk_id.as_deref().is_some_and(|b| b.trim().is_empty()) {
        Err(ScimError::InvalidValue("'bulkId' must not be empty".into()))
    } else {
        target(
            service,
            &method_text,
            bulk_id.as_deref(),
            &path,
            data.as_ref(),
        )
    };
    BulkOperation {
        method_text,
        bulk_id,
        version: text("version"),
        path,
        data,
        target,
    }
}

fn target(
    service: &ResourceService,
    method_text: &str,
    bulk_id: Option<&str>,
    path: &str,
    data: Option<&Value>,
) -> ScimResult<Target> {
    let method = BulkMethod::parse(method_text).ok_or_else(|| {
        ScimError::InvalidSyntax(format!(
            "method must be POST, PUT, PATCH or DELETE, not '{method_text}'"
        ))
    })?;
    let trimmed = path.trim().trim_start_matches('/');
    let (endpoint, id) = match trimmed.split_once('/') {
        Some((e, id)) => (e, Some(id.to_string())),
        None => (trimmed, None),
    };
    let resource_type = service
        .registry()
        .by_endpoint(endpoint)
        .cloned()
        .ok_or_else(|| ScimError::InvalidPath(format!("no resource endpoint in path '{path}'")))?;
    match (method, &id) {
        (BulkMethod::Post, Some(_)) => {
            return Err(ScimError::InvalidPath(format!(
                "a POST path names a resource endpoint, e.g. /{}",
                resource_type.endpoint()
            )));
        }
        (BulkMethod::Post, None) if bulk_id.is_none() => {
            return Err(ScimError::InvalidValue(
                "bulkId is required for POST operations".into(),
            ));
        }
        (BulkMethod::Post, None) => {}
        (_, None) => {
            return Err(ScimError::InvalidPath(format!(
                "path '{path}' must name one resource, e.g. /{}/ID",
                resource_type.endpoint()
            )));
        }
        (_, Some(id)) if id.is_empty() || id.contains('/') => {
            return Err(ScimError::InvalidPath(format!(
                "path '{path}' must name one resource"
            )));
        }
        _ => {}
    }
    if method != BulkMethod::Delete && !data.is_some_and(Value::is_object) {
        return Err(ScimError::InvalidSyntax(format!(
            "a {method_text} operation needs a 'data' object"
        )));
    }
    Ok(Target {
        method,
        resource_type,
        id,
    })
}
