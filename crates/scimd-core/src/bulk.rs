//! Bulk (RFC 7644 section 3.7): a BulkRequest parsed into typed operations,
//! `bulkId` references resolved, and the operations run through the
//! [`ResourceService`] in an order that respects those references.
//!
//! Independent operations run concurrently (bounded), because the stores
//! commit concurrent writes together: that is what makes a bulk load faster
//! than the same requests one by one. Operations that depend on each other
//! are ordered: an operation runs once every `bulkId` it names is created,
//! and operations on the same path run in request order. With
//! `failOnErrors` the operations run one at a time, so that none runs after
//! the error that stops the request.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::{ScimError, ScimResult};
use crate::projection::Projection;
use crate::resource::{tag_opaque, tag_version};
use crate::schema::ResourceTypeDef;
use crate::service::{Precondition, Resource, ResourceService};
use crate::value::check_message_schema;

/// The BulkRequest message URN.
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// The BulkResponse message URN.
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// Operations in flight at once. The SQLite writer folds them into one
/// transaction; PostgreSQL spreads them over the pool.
const CONCURRENCY: usize = 64;

const REF_PREFIX: &str = "bulkId:";

/// The method of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMethod {
    Post,
    Put,
    Patch,
    Delete,
}

impl BulkMethod {
    fn parse(text: &str) -> Option<BulkMethod> {
        match text.to_ascii_uppercase().as_str() {
            "POST" => Some(BulkMethod::Post),
            "PUT" => Some(BulkMethod::Put),
            "PATCH" => Some(BulkMethod::Patch),
            "DELETE" => Some(BulkMethod::Delete),
            _ => None,
        }
    }
}

/// One operation of a BulkRequest, as far as it could be understood. An
/// operation that cannot run keeps its error and is answered with it in
/// its turn, like any failing operation.
#[derive(Debug, Clone)]
pub struct BulkOperation {
    /// The method as sent (echoed in the response).
    pub method_text: String,
    pub bulk_id: Option<String>,
    pub version: Option<String>,
    pub path: String,
    pub data: Option<Value>,
    target: ScimResult<Target>,
}

#[derive(Debug, Clone)]
struct Target {
    method: BulkMethod,
    resource_type: Arc<ResourceTypeDef>,
    /// The resource id (or a `bulkId:` reference) for PUT, PATCH, DELETE.
    id: Option<String>,
}

/// A parsed BulkRequest.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    pub fail_on_errors: Option<usize>,
    pub operations: Vec<BulkOperation>,
}

/// The result of one operation, in request order.
#[derive(Debug, Clone)]
pub struct BulkOutcome {
    pub method_text: String,
    pub bulk_id: Option<String>,
    pub location: Option<String>,
    /// The written resource's `meta.version` (its entity tag).
    pub version: Option<String>,
    /// The HTTP status of the operation, or its error.
    pub result: Result<u16, ScimError>,
}

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

/// Every `bulkId:xyz` reference in a text: the id runs to the end of the
/// text or to a character that cannot be part of it in a path or filter.
fn refs_in_text(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(at) = rest.find(REF_PREFIX) {
        let after = &rest[at + REF_PREFIX.len()..];
        let end = after.find(is_ref_end).unwrap_or(after.len());
        if end > 0 {
            out.insert(after[..end].to_string());
        }
        rest = &after[end..];
    }
}

fn is_ref_end(c: char) -> bool {
    matches!(c, '"' | '\'' | ']' | '[' | ')' | '(' | '/' | ',' | ' ')
}

fn refs_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => refs_in_text(s, out),
        Value::Array(items) => items.iter().for_each(|v| refs_in(v, out)),
        Value::Object(map) => map.values().for_each(|v| refs_in(v, out)),
        _ => {}
    }
}

fn substitute_text(text: &str, resolved: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(REF_PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + REF_PREFIX.len()..];
        let end = after.find(is_ref_end).unwrap_or(after.len());
        match resolved.get(&after[..end]) {
            Some(id) if end > 0 => out.push_str(id),
            _ => {
                out.push_str(REF_PREFIX);
                out.push_str(&after[..end]);
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn substitute(value: &mut Value, resolved: &HashMap<String, String>) {
    match value {
        Value::String(s) if s.contains(REF_PREFIX) => *s = substitute_text(s, resolved),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, resolved)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, resolved)),
        _ => {}
    }
}

/// Takes out of a POST's data every attribute value that names one of
/// `unresolved`: whole attributes, or the elements of multi-valued ones
/// (members). Returns the PATCH "add" operations that put them back once
/// the references are resolved. This is how section 3.7.1 breaks a
/// circular reference: create, then add the references.
fn strip(data: &mut Value, unresolved: &BTreeSet<String>) -> Vec<Value> {
    let names = |v: &Value| {
        let mut found = BTreeSet::new();
        refs_in(v, &mut found);
        !found.is_disjoint(unresolved)
    };
    let mut adds = Vec::new();
    let Value::Object(map) = data else {
        return adds;
    };
    let mut take = |map: &mut Map<String, Value>, prefix: &str| {
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let Some(value) = map.get_mut(&key) else {
                continue;
            };
            if !names(value) || key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            let path = format!("{prefix}{key}");
            if let Value::Array(items) = value {
                let (later, now): (Vec<Value>, Vec<Value>) =
                    std::mem::take(items).into_iter().partition(names);
                *items = now;
                adds.push(json!({"op": "add", "path": path, "value": later}));
            } else if let Some(v) = map.remove(&key) {
                adds.push(json!({"op": "add", "path": path, "value": v}));
            }
        }
    };
    let urns: Vec<String> = map
        .keys()
        .filter(|k| k.to_ascii_lowercase().starts_with("urn:"))
        .cloned()
        .collect();
    for urn in urns {
        if let Some(Value::Object(ext)) = map.get_mut(&urn) {
            take(ext, &format!("{urn}:"));
        }
    }
    take(map, "");
    adds
}

/// `W/"3"`, `"3"` or a tag with a groups digest (`W/"3-9a0c…"`) as a
/// precondition on version 3; anything else matches no version.
fn precondition(version: Option<&str>) -> Precondition {
    match version.map(str::trim) {
        None | Some("*") => Precondition::None,
        Some(tag) => tag_opaque(tag)
            .and_then(tag_version)
            .map_or(Precondition::Unmatchable, Precondition::Version),
    }
}

/// What a finished piece of work reports.
struct Done {
    status: u16,
    id: Option<String>,
    location: Option<String>,
    version: Option<String>,
}

fn done_from(status: u16, r: &Resource) -> Done {
    let meta = r.doc.get("meta");
    Done {
        status,
        id: r.doc.get("id").and_then(Value::as_str).map(str::to_string),
        location: meta
            .and_then(|m| m.get("location"))
            .and_then(Value::as_str)
            .map(str::to_string),
        version: Some(r.tag()),
    }
}

/// One operation's work, with its references already substituted.
async fn execute(
    service: Arc<ResourceService>,
    rt: Arc<ResourceTypeDef>,
    method: BulkMethod,
    id: Option<String>,
    data: Option<Value>,
    precondition: Precondition,
) -> ScimResult<Done> {
    let id = id.unwrap_or_default();
    let data = data.unwrap_or(Value::Null);
    match method {
        BulkMethod::Post => Ok(done_from(201, &service.create(&rt, data).await?)),
        BulkMethod::Put => Ok(done_from(
            200,
            &service.replace(&rt, &id, data, precondition).await?,
        )),
        BulkMethod::Patch => {
            let ops = crate::patch::parse_request(&data)?;
            let minimal = Projection::parse(&rt, Some("id"), None)?;
            Ok(done_from(
                200,
                &service
                    .patch(&rt, &id, &ops, precondition, &minimal)
                    .await?,
            ))
        }
        BulkMethod::Delete => {
            service.delete(&rt, &id, precondition).await?;
            Ok(Done {
                status: 204,
                location: Some(format!(
                    "{}/{}/{id}",
                    service.config().base_url,
                    rt.endpoint()
                )),
                id: Some(id),
                version: None,
            })
        }
    }
}

enum State {
    /// Waits for its references (and for earlier operations on its path).
    Waiting,
    Running,
    /// Created; the references taken out to break a cycle wait to be added.
    FixupWaiting(Vec<Value>),
    FixupRunning,
    Done,
}

struct Slot {
    op: BulkOperation,
    state: State,
    refs: BTreeSet<String>,
    outcome: Option<BulkOutcome>,
    /// The path this operation changes (PUT, PATCH, DELETE), lower-cased.
    lane: Option<String>,
    /// References taken out of a POST to break a cycle, added once resolved.
    fixup: Option<Vec<Value>>,
}

/// Why a reference cannot be resolved, if it cannot.
enum RefState {
    Resolved,
    Pending,
    Broken(String),
}

/// Runs a parsed BulkRequest. `authorize` is asked before each operation
/// runs (its error becomes that operation's answer). The outcomes are in
/// request order; with `failOnErrors`, operations after the stopping error
/// are left out.
pub async fn run(
    service: &Arc<ResourceService>,
    request: BulkRequest,
    authorize: impl Fn(&ResourceTypeDef) -> ScimResult<()>,
) -> Vec<BulkOutcome> {
    let window = if request.fail_on_errors.is_some() {
        1
    } else {
        CONCURRENCY
    };
    let defined: HashMap<String, usize> = request
        .operations
        .iter()
        .enumerate()
        .filter(|(_, op)| matches!(&op.target, Ok(t) if t.method == BulkMethod::Post))
        .filter_map(|(i, op)| op.bulk_id.clone().map(|b| (b, i)))
        .collect();
    let mut lanes: HashMap<String, VecDeque<usize>> = HashMap::new();
    let mut slots: Vec<Slot> = Vec::with_capacity(request.operations.len());
    for (i, op) in request.operations.into_iter().enumerate() {
        let mut refs = BTreeSet::new();
        refs_in_text(&op.path, &mut refs);
        if let Some(data) = &op.data {
            refs_in(data, &mut refs);
        }
        let lane = match &op.target {
            Ok(t) if t.method != BulkMethod::Post => {
                let key = op.path.trim().trim_start_matches('/').to_ascii_lowercase();
                lanes.entry(key.clone()).or_default().push_back(i);
                Some(key)
            }
            _ => None,
        };
        slots.push(Slot {
            op,
            state: State::Waiting,
            refs,
            outcome: None,
            lane,
            fixup: None,
        });
    }
    let mut resolved: HashMap<String, String> = HashMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    // Cycle-broken creates to take back (see the end).
    let mut undo: Vec<usize> = Vec::new();
    let mut errors = 0usize;
    let mut stopped = false;
    let mut running: tokio::task::JoinSet<(usize, ScimResult<Done>)> = tokio::task::JoinSet::new();
    let limit = request.fail_on_errors;

    let ref_state = |refs: &BTreeSet<String>,
                     resolved: &HashMap<String, String>,
                     failed: &BTreeSet<String>|
     -> RefState {
        let mut pending = false;
        for r in refs {
            if resolved.contains_key(r) {
                continue;
            }
            if failed.contains(r) {
                return RefState::Broken(format!("bulkId:{r} refers to an operation that failed"));
            }
            if !defined.contains_key(r) {
                return RefState::Broken(format!(
                    "bulkId:{r} is not the bulkId of a POST operation in this request"
                ));
            }
            pending = true;
        }
        if pending {
            RefState::Pending
        } else {
            RefState::Resolved
        }
    };

    loop {
        // Launch what is ready, in request order.
        let mut i = 0;
        while !stopped && running.len() < window && i < slots.len() {
            let slot = &mut slots[i];
            match &slot.state {
                State::Waiting => {
                    let first_in_lane = slot
                        .lane
                        .as_ref()
                        .is_none_or(|l| lanes.get(l).and_then(|q| q.front()) == Some(&i));
                    let refs = ref_state(&slot.refs, &resolved, &failed);
                    let early_error = match (&slot.op.target, &refs) {
                        (Err(e), _) => Some(e.clone()),
                        (Ok(_), RefState::Broken(why)) => Some(ScimError::Conflict(why.clone())),
                        (Ok(t), _) => authorize(&t.resource_type).err(),
                    };
                    if let Some(e) = early_error {
                        slot.outcome = Some(outcome(&slot.op, Err(e)));
                        finish(slot, i, &mut lanes, &mut failed);
                        errors += 1;
                        stopped = limit.is_some_and(|l| errors >= l);
                    } else if first_in_lane
                        && matches!(refs, RefState::Resolved)
                        && let Ok(t) = &slot.op.target
                    {
                        let mut data = slot.op.data.clone();
                        if let Some(d) = &mut data {
                            substitute(d, &resolved);
                        }
                        let id = t.id.as_deref().map(|id| substitute_text(id, &resolved));
                        let work = execute(
                            service.clone(),
                            t.resource_type.clone(),
                            t.method,
                            id,
                            data,
                            precondition(slot.op.version.as_deref()),
                        );
                        running.spawn(async move { (i, work.await) });
                        slot.state = State::Running;
                    }
                }
                State::FixupWaiting(adds) => match ref_state(&slot.refs, &resolved, &failed) {
                    RefState::Pending => {}
                    RefState::Broken(why) => {
                        if let Some(o) = &mut slot.outcome {
                            o.result = Err(ScimError::Conflict(why));
                        }
                        undo.push(i);
                        finish(slot, i, &mut lanes, &mut failed);
                        errors += 1;
                        stopped = limit.is_some_and(|l| errors >= l);
                    }
                    RefState::Resolved => {
                        let mut body = json!({
                            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": adds,
                        });
                        substitute(&mut body, &resolved);
                        let id = slot
                            .op
                            .bulk_id
                            .as_ref()
                            .and_then(|b| resolved.get(b))
                            .cloned();
                        if let Ok(t) = &slot.op.target {
                            let work = execute(
                                service.clone(),
                                t.resource_type.clone(),
                                BulkMethod::Patch,
                                id,
                                Some(body),
                                Precondition::None,
                            );
                            running.spawn(async move { (i, work.await) });
                        }
                        slot.state = State::FixupRunning;
                    }
                },
                _ => {}
            }
            i += 1;
        }
        if running.is_empty() {
            if stopped || slots.iter().all(|s| matches!(s.state, State::Done)) {
                break;
            }
            // Nothing runs and nothing can start: the waiting POSTs name each
            // other. Create the first without its references.
            let cycle = slots.iter().position(|s| {
                matches!(s.state, State::Waiting)
                    && matches!(&s.op.target, Ok(t) if t.method == BulkMethod::Post)
                    && matches!(ref_state(&s.refs, &resolved, &failed), RefState::Pending)
            });
            let Some(c) = cycle else {
                // Waiting operations whose references can never resolve.
                for (i, slot) in slots.iter_mut().enumerate() {
                    if matches!(slot.state, State::Waiting | State::FixupWaiting(_)) {
                        let e = ScimError::Conflict(
                            "the bulkId references of this operation cannot be resolved".into(),
                        );
                        match &mut slot.outcome {
                            Some(o) => o.result = Err(e),
                            None => slot.outcome = Some(outcome(&slot.op, Err(e))),
                        }
                        finish(slot, i, &mut lanes, &mut failed);
                    }
                }
                break;
            };
            let slot = &mut slots[c];
            let unresolved: BTreeSet<String> = slot
                .refs
                .iter()
                .filter(|r| !resolved.contains_key(*r))
                .cloned()
                .collect();
            let mut adds = Vec::new();
            if let Some(data) = &mut slot.op.data {
                adds = strip(data, &unresolved);
            }
            let mut left = BTreeSet::new();
            if let Some(data) = &slot.op.data {
                refs_in(data, &mut left);
            }
            if adds.is_empty() || !left.is_disjoint(&unresolved) {
                slot.outcome = Some(outcome(
                    &slot.op,
                    Err(ScimError::Conflict(
                        "circular bulkId references that cannot be taken apart".into(),
                    )),
                ));
                finish(slot, c, &mut lanes, &mut failed);
                errors += 1;
                stopped = limit.is_some_and(|l| errors >= l);
                continue;
            }
            slot.refs = left;
            slot.fixup = Some(adds);
            continue;
        }
        let Some(joined) = running.join_next().await else {
            continue;
        };
        let (i, result) = match joined {
            Ok(r) => r,
            Err(_) => {
                // A panicked task has no index: its operation would wait
                // forever, so nothing more starts.
                stopped = true;
                continue;
            }
        };
        let slot = &mut slots[i];
        let was_fixup = matches!(slot.state, State::FixupRunning);
        match (result, was_fixup) {
            (Ok(done), false) => {
                if let (Some(b), Some(id)) = (&slot.op.bulk_id, &done.id)
                    && slot.lane.is_none()
                {
                    resolved.insert(b.clone(), id.clone());
                }
                slot.outcome = Some(BulkOutcome {
                    location: done.location,
                    version: done.version,
                    ..outcome(&slot.op, Ok(done.status))
                });
                match slot.fixup.take() {
                    Some(adds) => {
                        let mut refs = BTreeSet::new();
                        refs_in(&Value::Array(adds.clone()), &mut refs);
                        slot.refs = refs;
                        slot.state = State::FixupWaiting(adds);
                    }
                    None => finish(slot, i, &mut lanes, &mut failed),
                }
            }
            (Ok(done), true) => {
                if let Some(o) = &mut slot.outcome {
                    o.version = done.version;
                }
                finish(slot, i, &mut lanes, &mut failed);
            }
            (Err(e), fixup) => {
                if fixup {
                    if let Some(o) = &mut slot.outcome {
                        o.result = Err(e);
                    }
                    undo.push(i);
                } else {
                    slot.outcome = Some(outcome(&slot.op, Err(e)));
                }
                finish(slot, i, &mut lanes, &mut failed);
                errors += 1;
                stopped = limit.is_some_and(|l| errors >= l);
            }
        }
    }
    // A POST created without its references (to break a cycle) whose
    // references then failed, or were never added because processing
    // stopped, is reported failed: it must not stay behind half made.
    for (i, slot) in slots.iter_mut().enumerate() {
        if matches!(slot.state, State::FixupWaiting(_)) {
            if let Some(o) = &mut slot.outcome {
                o.result = Err(ScimError::Conflict(
                    "processing stopped before this operation's bulkId references were added"
                        .into(),
                ));
            }
            undo.push(i);
        }
    }
    for i in undo {
        let slot = &mut slots[i];
        let created = slot.op.bulk_id.as_ref().and_then(|b| resolved.get(b));
        if let (Ok(t), Some(id)) = (&slot.op.target, created) {
            let removed = execute(
                service.clone(),
                t.resource_type.clone(),
                BulkMethod::Delete,
                Some(id.clone()),
                None,
                Precondition::None,
            )
            .await;
            if let (Err(e), Some(o)) = (removed, &mut slot.outcome) {
                o.result = Err(ScimError::Internal(format!(
                    "the operation failed and the resource it created could not be removed: {e}"
                )));
            }
        }
        if let Some(o) = &mut slot.outcome {
            o.location = None;
            o.version = None;
        }
    }
    slots.into_iter().filter_map(|s| s.outcome).collect()
}

fn outcome(op: &BulkOperation, result: Result<u16, ScimError>) -> BulkOutcome {
    BulkOutcome {
        method_text: op.method_text.clone(),
        bulk_id: op.bulk_id.clone(),
        location: None,
        version: None,
        result,
    }
}

fn finish(
    slot: &mut Slot,
    i: usize,
    lanes: &mut HashMap<String, VecDeque<usize>>,
    failed: &mut BTreeSet<String>,
) {
    slot.state = State::Done;
    if let Some(queue) = slot.lane.as_ref().and_then(|l| lanes.get_mut(l)) {
        queue.retain(|x| *x != i);
    }
    if let (Some(b), Some(o)) = (&slot.op.bulk_id, &slot.outcome)
        && o.result.is_err()
    {
        failed.insert(b.clone());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_in_values_paths_and_filters() {
        let mut found = BTreeSet::new();
        refs_in_text("/Groups/bulkId:ytrewq", &mut found);
        refs_in_text(r#"members[value eq "bulkId:qwerty"]"#, &mut found);
        refs_in(&json!({"members": [{"value": "bulkId:a-1"}]}), &mut found);
        let want: BTreeSet<String> = ["ytrewq", "qwerty", "a-1"].map(String::from).into();
        assert_eq!(found, want);
        let resolved: HashMap<String, String> = [("qwerty".to_string(), "ID".to_string())].into();
        assert_eq!(
            substitute_text(r#"members[value eq "bulkId:qwerty"]"#, &resolved),
            r#"members[value eq "ID"]"#
        );
        assert_eq!(substitute_text("bulkId:other", &resolved), "bulkId:other");
    }

    #[test]
    fn strip_takes_out_only_unresolved_references() {
        let mut data = json!({
            "displayName": "A",
            "members": [{"value": "bulkId:b"}, {"value": "known"}],
            "urn:x:Ext": {"manager": {"value": "bulkId:b"}, "code": "1"}
        });
        let adds = strip(&mut data, &["b".to_string()].into());
        assert_eq!(data["members"], json!([{"value": "known"}]));
        assert_eq!(data["urn:x:Ext"], json!({"code": "1"}));
        assert_eq!(adds.len(), 2);
        assert_eq!(adds[1]["path"], "members");
        assert_eq!(adds[0]["path"], "urn:x:Ext:manager");
    }

    #[test]
    fn versions() {
        assert_eq!(precondition(Some("W/\"3\"")), Precondition::Version(3));
        assert_eq!(precondition(Some("\"3\"")), Precondition::Version(3));
        assert_eq!(
            precondition(Some("W/\"3-0123456789abcdef\"")),
            Precondition::Version(3)
        );
        assert_eq!(precondition(Some("x")), Precondition::Unmatchable);
        assert_eq!(precondition(None), Precondition::None);
    }
}
