//! The change log: what every committed write appends to a log, in the
//! write's own transaction, so that nothing committed is missing from it and
//! nothing rolled back appears in it.
//!
//! The core says what changed ([`Change`]: the operation, the resource, the
//! attribute paths, who asked); the store adds what only the transaction
//! knows (the position, the versions before and after) and writes both
//! together. Values never enter the log, only attribute paths: a new
//! password is the path `password`, never its value.
//!
//! Who asked ([`Actor`]) travels with the request as a task-local value,
//! set once where a request is authenticated (or where the CLI runs a
//! command) and read where a [`Change`] is made; it is not a parameter of
//! every service method.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who made a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// How the change came: `http` (a request), `cli` (a `scimd` command),
    /// `server` (scimd itself: the first start, a key rotation).
    pub via: String,
    /// The OAuth client of the request's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The token's subject when it is not the client (a user, for `/Me`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The request's `X-Request-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The client's address (IP and port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Who a request acts for, made into an [`Actor`] only when a change is
/// recorded: a read records none, so it builds no strings (the HTTP layer
/// implements it over the request's token, request id and address).
pub trait ActorSource: Send + Sync {
    /// The actor; the same one each time it is asked.
    fn actor(&self) -> Arc<Actor>;
}

impl ActorSource for Arc<Actor> {
    fn actor(&self) -> Arc<Actor> {
        self.clone()
    }
}

tokio::task_local! {
    static ACTOR: Arc<dyn ActorSource>;
}

impl Actor {
    /// A `scimd` command run by an operator.
    pub fn cli() -> Actor {
        Actor {
            via: "cli".into(),
            ..Actor::default()
        }
    }

    /// scimd itself, outside any request or command.
    pub fn server() -> Actor {
        Actor {
            via: "server".into(),
            ..Actor::default()
        }
    }

    /// Runs `work` with `self` as the actor of every change it makes.
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        Actor::scope_of(Arc::new(Arc::new(self)), work).await
    }

    /// Runs `work` with the actor `source` gives as the actor of every
    /// change it makes.
    pub async fn scope_of<F: std::future::Future>(
        source: Arc<dyn ActorSource>,
        work: F,
    ) -> F::Output {
        ACTOR.scope(source, work).await
    }

    /// Runs `work` with the current actor (tasks a request spawns, such as
    /// the operations of a Bulk request, act for it).
    pub fn carried<F: std::future::Future>(
        work: F,
    ) -> impl std::future::Future<Output = F::Output> {
        let source = ACTOR
            .try_with(Arc::clone)
            .unwrap_or_else(|_| Arc::new(Arc::new(Actor::server())));
        ACTOR.scope(source, work)
    }

    /// The actor of the running request or command; [`Actor::server`]
    /// outside any.
    pub fn current() -> Arc<Actor> {
        ACTOR
            .try_with(|source| source.actor())
            .unwrap_or_else(|_| Arc::new(Actor::server()))
    }
}

/// What kind of change an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// POST (and `POST /Me`, a Bulk POST).
    Create,
    /// PUT.
    Replace,
    /// PATCH, membership changes included.
    Patch,
    /// DELETE, and each resource a delete removes with its owner.
    Delete,
    /// An OAuth client registered.
    ClientCreate,
    /// An OAuth client's settings changed (scopes, rate, name).
    ClientUpdate,
    /// An OAuth client's secret rotated.
    ClientRotate,
    /// An OAuth client removed.
    ClientDelete,
    /// The protection mode switched.
    Protection,
    /// A signing key added (first start, rotation).
    KeyCreate,
    /// A retired signing key removed.
    KeyDelete,
    /// A setting created (the cursor key).
    Setting,
    /// A resource or record restored by `scimd import`.
    Import,
    /// An event stream created.
    StreamCreate,
    /// An event stream paused.
    StreamPause,
    /// An event stream resumed.
    StreamResume,
    /// An event stream deleted.
    StreamDelete,
}

impl Op {
    /// Every operation, for parsing and help texts.
    pub const ALL: [Op; 17] = [
        Op::Create,
        Op::Replace,
        Op::Patch,
        Op::Delete,
        Op::ClientCreate,
        Op::ClientUpdate,
        Op::ClientRotate,
        Op::ClientDelete,
        Op::Protection,
        Op::KeyCreate,
        Op::KeyDelete,
        Op::Setting,
        Op::Import,
        Op::StreamCreate,
        Op::StreamPause,
        Op::StreamResume,
        Op::StreamDelete,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Replace => "replace",
            Op::Patch => "patch",
            Op::Delete => "delete",
            Op::ClientCreate => "client.create",
            Op::ClientUpdate => "client.update",
            Op::ClientRotate => "client.rotate",
            Op::ClientDelete => "client.delete",
            Op::Protection => "protection.set",
            Op::KeyCreate => "key.create",
            Op::KeyDelete => "key.delete",
            Op::Setting => "setting.create",
            Op::Import => "import",
            Op::StreamCreate => "stream.create",
            Op::StreamPause => "stream.pause",
            Op::StreamResume => "stream.resume",
            Op::StreamDelete => "stream.delete",
        }
    }

    /// The operation named `name`, if any.
    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// A change as the core describes it, before the store adds its position
/// and versions. Written in the same transaction as the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub op: Op,
    /// The resource type (`User`), or the kind of record (`client`).
    pub resource_type: String,
    pub resource_id: String,
    /// RFC 3339 time of the change.
    pub at: String,
    pub actor: Arc<Actor>,
    /// The attribute paths that changed (RFC 7644 `path` syntax; extension
    /// attributes with their schema URN). Never a value.
    pub paths: Vec<String>,
    /// What else is worth knowing: the members a membership change added or
    /// removed, the owner whose delete removed this resource.
    pub detail: Option<Value>,
}

impl Change {
    /// A change of `op` on `resource_type`/`resource_id` by the current
    /// [`Actor`], now.
    pub fn new(op: Op, resource_type: &str, resource_id: &str, at: &str) -> Change {
        Change {
            op,
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            at: at.to_string(),
            actor: Actor::current(),
            paths: Vec::new(),
            detail: None,
        }
    }

    /// An operational change (OAuth client, key, setting) by the current
    /// actor, now.
    pub fn operational(op: Op, kind: &str, id: &str) -> Change {
        Change::new(op, kind, id, &crate::value::now_timestamp())
    }

    /// The delete of `resource_type`/`resource_id`, a resource that the
    /// one this change deletes owned: the same actor and time, the owner
    /// as its detail.
    pub fn owned_by(&self, resource_type: &str, resource_id: &str) -> Change {
        Change {
            op: Op::Delete,
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            at: self.at.clone(),
            actor: self.actor.clone(),
            paths: Vec::new(),
            detail: Some(serde_json::json!({
                "owner": { "type": self.resource_type, "id": self.resource_id }
            })),
        }
    }

    /// The change of a group that the resource this change deletes was a
    /// member of: its `members` lost it (the same actor and time).
    pub fn member_left(&self, group_type: &str, group_id: &str) -> Change {
        Change {
            op: Op::Patch,
            resource_type: group_type.to_string(),
            resource_id: group_id.to_string(),
            at: self.at.clone(),
            actor: self.actor.clone(),
            paths: vec!["members".into()],
            detail: Some(serde_json::json!({ "removed": [self.resource_id] })),
        }
    }

    pub fn with_paths(mut self, paths: Vec<String>) -> Change {
        self.paths = paths;
        self
    }

    pub fn with_detail(mut self, detail: Value) -> Change {
        self.detail = Some(detail);
        self
    }

    /// What the log keeps besides its indexed columns, as JSON text:
    /// the actor's request id, address and channel, the paths, the detail.
    pub fn body(&self) -> String {
        let mut body = Map::new();
        body.insert("via".into(), Value::String(self.actor.via.clone()));
        for (key, value) in [
            ("requestId", &self.actor.request_id),
            ("address", &self.actor.address),
        ] {
            if let Some(v) = value {
                body.insert(key.into(), Value::String(v.clone()));
            }
        }
        body.insert(
            "paths".into(),
            Value::Array(self.paths.iter().cloned().map(Value::String).collect()),
        );
        if let Some(detail) = &self.detail {
            body.insert("detail".into(), detail.clone());
        }
        Value::Object(body).to_string()
    }
}

/// A change as the log holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Its place in the log: commit order, increasing, never reused.
    pub position: i64,
    pub at: String,
    pub op: String,
    pub resource_type: String,
    pub resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_after: Option<i64>,
    pub actor: Actor,
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl Entry {
    /// An entry from the log's columns and its [`Change::body`] text.
    #[allow(clippy::too_many_arguments)]
    pub fn from_columns(
        position: i64,
        at: String,
        op: String,
        resource_type: String,
        resource_id: String,
        versions: (Option<i64>, Option<i64>),
        who: (Option<String>, Option<String>),
        body: &str,
    ) -> Entry {
        let body: Map<String, Value> = serde_json::from_str(body).unwrap_or_default();
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        Entry {
            position,
            at,
            op,
            resource_type,
            resource_id,
            version_before: versions.0,
            version_after: versions.1,
            actor: Actor {
                via: text("via").unwrap_or_default(),
                client_id: who.0,
                subject: who.1,
                request_id: text("requestId"),
                address: text("address"),
            },
            paths: body
                .get("paths")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            detail: body.get("detail").cloned(),
        }
    }
}

/// Which entries an audit query asks for: the filters, checked (a known
/// op; times in the log's form), and the page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub filters: AuditFilters,
    /// Only entries after this position (cursor paging, `--follow`).
    pub after: Option<i64>,
    /// At most this many entries, oldest first.
    pub limit: u32,
}

impl AuditQuery {
    /// Every entry after `after`, at most `limit`: a follower's query.
    pub fn following(after: i64, limit: u32) -> AuditQuery {
        AuditQuery {
            after: Some(after),
            limit,
            ..AuditQuery::default()
        }
    }
}

/// An audit query's filters as a person or a tool writes them (the CLI's
/// flags, the HTTP query parameters), checked by [`AuditFilters::query`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditFilters {
    pub resource_id: Option<String>,
    pub resource_type: Option<String>,
    /// A client id or a token subject.
    pub actor: Option<String>,
    pub op: Option<String>,
    /// RFC 3339; entries at or after it.
    pub since: Option<String>,
    /// RFC 3339; entries before it.
    pub until: Option<String>,
}

/// Most entries one audit query returns.
pub const MAX_AUDIT_PAGE: u32 = 1_000;

impl AuditFilters {
    /// The store query: an unknown operation or a time that is not RFC 3339
    /// is refused, naming it; times are brought to the log's form.
    pub fn query(&self, after: Option<i64>, limit: u32) -> Result<AuditQuery, String> {
        if let Some(op) = &self.op
            && Op::parse(op).is_none()
        {
            let known: Vec<&str> = Op::ALL.iter().map(|o| o.as_str()).collect();
            return Err(format!(
                "unknown op '{op}'; the ops are: {}",
                known.join(", ")
            ));
        }
        let time = |name: &str, text: &Option<String>| -> Result<Option<String>, String> {
            text.as_deref()
                .map(|t| {
                    crate::value::parse_datetime(t)
                        .map(crate::value::format_timestamp)
                        .ok_or_else(|| {
                            format!("{name} '{t}' is not an RFC 3339 time (2026-12-06T10:00:00Z)")
                        })
                })
                .transpose()
        };
        Ok(AuditQuery {
            filters: AuditFilters {
                since: time("since", &self.since)?,
                until: time("until", &self.until)?,
                ..self.clone()
            },
            after,
            limit: limit.clamp(1, MAX_AUDIT_PAGE),
        })
    }
}

/// How long the log keeps its entries; pruned in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Entries older than this many days go (0: kept whatever their age).
    pub max_age_days: u32,
    /// At most this many entries are kept, the newest (0: no limit).
    pub max_entries: u64,
}

/// The attribute paths whose values differ between `old` and `new`, in key
/// order, then those `new` no longer has: top-level attributes by name, an extension's
/// attributes as `urn:...:name`. `id`, `meta` and the like are not paths a
/// client changes.
pub fn changed_paths(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let mut paths = Vec::new();
    let keys = new
        .keys()
        .chain(old.keys().filter(|k| !new.contains_key(*k)));
    for key in keys {
        if matches!(key.as_str(), "id" | "meta" | "schemas") {
            continue;
        }
        match (old.get(key), new.get(key)) {
            (a, b) if a == b => {}
            (a, b) if key.starts_with("urn:") => {
                let empty = Map::new();
                let inner = |v: Option<&Value>| v.and_then(Value::as_object).cloned();
                let (a, b) = (inner(a), inner(b));
                for sub in changed_paths(a.as_ref().unwrap_or(&empty), b.as_ref().unwrap_or(&empty))
                {
                    paths.push(format!("{key}:{sub}"));
                }
            }
            _ => paths.push(key.clone()),
        }
    }
    paths
}

/// The paths a new resource sets: every attribute it has.
pub fn created_paths(data: &Map<String, Value>) -> Vec<String> {
    changed_paths(&Map::new(), data)
}

/// The member ids a membership change names, as the entry's detail:
/// `{"added": [...], "removed": [...]}` (`"removed": "all"` when every
/// member went).
pub fn membership_detail(changes: &[crate::store::MemberChange]) -> Value {
    use crate::store::MemberChange;
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut all = false;
    for change in changes {
        match change {
            MemberChange::Add(members) => {
                added.extend(members.iter().map(|m| Value::String(m.value.clone())))
            }
            MemberChange::Remove(ids) => removed.extend(ids.iter().cloned().map(Value::String)),
            MemberChange::RemoveAll => all = true,
        }
    }
    let mut detail = Map::new();
    if !added.is_empty() {
        detail.insert("added".into(), Value::Array(added));
    }
    if all {
        detail.insert("removed".into(), Value::String("all".into()));
    } else if !removed.is_empty() {
        detail.insert("removed".into(), Value::Array(removed));
    }
    Value::Object(detail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn changed_paths_name_attributes_and_extension_attributes_never_values() {
        let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let old = map(json!({"userName": "a", "active": true, "title": "x",
            ext: {"department": "d", "manager": {"value": "m"}}}));
        let new = map(
            json!({"userName": "b", "active": true, "password": "$argon2...",
            ext: {"department": "d"}}),
        );
        // In the documents' key order (sorted), then the attributes removed.
        assert_eq!(
            changed_paths(&old, &new),
            vec![
                "password".to_string(),
                format!("{ext}:manager"),
                "userName".into(),
                "title".into()
            ]
        );
        assert_eq!(
            created_paths(&map(json!({"userName": "a", "id": "x"}))),
            vec!["userName"]
        );
    }

    #[test]
    fn ops_round_trip_by_name() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Some(op));
        }
        assert_eq!(Op::parse("nope"), None);
    }
}
