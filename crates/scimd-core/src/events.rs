//! SCIM Events (RFC 9967): what a change-log [`Entry`] becomes in an event
//! stream. Pure: the streams' settings ([`StreamSpec`]), which entries a
//! stream carries, and the claims of the Security Event Token (RFC 8417)
//! each one becomes. Signing, delivery and storage are elsewhere.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::changelog::{Entry, Op};

/// The event URIs of RFC 9967 section 2.4 that scimd emits.
pub const CREATE_NOTICE: &str = "urn:ietf:params:scim:event:prov:create:notice";
pub const CREATE_FULL: &str = "urn:ietf:params:scim:event:prov:create:full";
pub const PUT_NOTICE: &str = "urn:ietf:params:scim:event:prov:put:notice";
pub const PUT_FULL: &str = "urn:ietf:params:scim:event:prov:put:full";
pub const PATCH_NOTICE: &str = "urn:ietf:params:scim:event:prov:patch:notice";
pub const PATCH_FULL: &str = "urn:ietf:params:scim:event:prov:patch:full";
pub const DELETE: &str = "urn:ietf:params:scim:event:prov:delete";

/// Every event URI scimd can emit, as the ServiceProviderConfig lists them.
pub const EVENT_URIS: [&str; 7] = [
    CREATE_NOTICE,
    CREATE_FULL,
    PUT_NOTICE,
    PUT_FULL,
    PATCH_NOTICE,
    PATCH_FULL,
    DELETE,
];

/// How a stream's events reach its receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "camelCase")]
pub enum Delivery {
    /// The receiver polls (RFC 8936).
    Poll,
    /// scimd posts each SET to `url` (RFC 8935).
    Push { url: String },
}

/// An event stream's settings, kept as an operational record (kind
/// [`STREAM_KIND`]) so that every replica serves the same streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    pub id: String,
    pub name: String,
    pub delivery: Delivery,
    /// Only these resource types (empty: every one).
    #[serde(default)]
    pub resource_types: Vec<String>,
    /// Only these kinds of change: `create`, `put`, `patch`, `delete`
    /// (empty: every one).
    #[serde(default)]
    pub events: Vec<String>,
    /// Full events (`data`: the resource) rather than notices (the paths).
    #[serde(default)]
    pub full: bool,
    /// Paused by an operator: nothing is delivered (polls answer nothing,
    /// pushes wait); events keep accumulating.
    #[serde(default)]
    pub paused: bool,
    pub created: String,
}

/// The record kind of stream settings.
pub const STREAM_KIND: &str = "stream";

/// The kinds of change a stream may select (`--events`).
pub const EVENT_KINDS: [&str; 4] = ["create", "put", "patch", "delete"];

/// The kind of change an entry is, for events: `None` for what is not a
/// provisioning change (OAuth clients, keys, settings, imports).
fn kind(entry: &Entry) -> Option<&'static str> {
    match Op::parse(&entry.op)? {
        Op::Create => Some("create"),
        Op::Replace => Some("put"),
        Op::Patch => Some("patch"),
        Op::Delete => Some("delete"),
        _ => None,
    }
}

impl StreamSpec {
    /// Whether this stream carries `entry`.
    pub fn carries(&self, entry: &Entry) -> bool {
        let Some(kind) = kind(entry) else {
            return false;
        };
        (self.resource_types.is_empty()
            || self
                .resource_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&entry.resource_type)))
            && (self.events.is_empty() || self.events.iter().any(|e| e == kind))
    }

    /// The event URIs this stream can carry.
    pub fn event_uris(&self) -> Vec<&'static str> {
        EVENT_KINDS
            .iter()
            .filter(|k| self.events.is_empty() || self.events.iter().any(|e| e == *k))
            .map(|k| uri(k, self.full))
            .collect()
    }

    /// The jti of the SET of the entry at `position` in this stream: the
    /// same for every delivery of it, so a receiver can drop duplicates.
    pub fn jti(&self, position: i64) -> String {
        format!("{}.{position}", self.id)
    }

    /// The position a jti of this stream names; `None` for another's or
    /// anything else.
    pub fn position_of(&self, jti: &str) -> Option<i64> {
        let (stream, position) = jti.rsplit_once('.')?;
        (stream == self.id).then(|| position.parse().ok())?
    }
}

fn uri(kind: &str, full: bool) -> &'static str {
    match (kind, full) {
        ("create", false) => CREATE_NOTICE,
        ("create", true) => CREATE_FULL,
        ("put", false) => PUT_NOTICE,
        ("put", true) => PUT_FULL,
        ("patch", false) => PATCH_NOTICE,
        ("patch", true) => PATCH_FULL,
        _ => DELETE,
    }
}

/// Where a SET is issued from and to.
#[derive(Debug, Clone)]
pub struct SetContext<'a> {
    /// `iss`: the server's issuer.
    pub issuer: &'a str,
    /// `aud`: the stream's URL (its poll endpoint, or the push receiver).
    pub audience: &'a str,
    /// The resource type's endpoint (`/Users`), for `sub_id.uri`.
    pub endpoint: &'a str,
    /// Unix seconds now (`iat`).
    pub now: u64,
}

/// The claims of the SET that `entry` becomes in `stream` (RFC 9967
/// section 2, RFC 8417 section 2.2): `sub_id` in the SCIM format (the
/// resource's URI relative to the base, its id), `txn` the change's
/// position (the same in every stream), `toe` its time, one event. `data`:
/// the resource as it stands, for a full event (a full event of a resource
/// that no longer exists falls back to the notice: there is nothing to
/// show). `None` when the stream does not carry the entry.
pub fn set_claims<'a>(
    stream: &StreamSpec,
    entry: &'a Entry,
    context: &SetContext<'a>,
    data: Option<&'a Map<String, Value>>,
) -> Option<SetClaims<'a>> {
    if !stream.carries(entry) {
        return None;
    }
    let kind = kind(entry)?;
    let full = stream.full && data.is_some() && kind != "delete";
    let mut payload = Payload::default();
    match (kind, full, data) {
        ("delete", _, _) => {}
        (_, true, Some(doc)) => payload.data = Some(doc),
        _ => payload.attributes = Some(&entry.paths),
    }
    if kind != "delete" {
        // The version of what `data` shows, or of the change itself.
        payload.version = data
            .and_then(|d| d.get("meta"))
            .and_then(|m| m.get("version"))
            .and_then(Value::as_str)
            .filter(|_| full)
            .map(str::to_string)
            .or_else(|| entry.version_after.map(|v| format!("W/\"{v}\"")));
    }
    // A NumericDate may have a fraction (RFC 7519 section 2): the change's
    // time to the millisecond, so receivers can measure delivery latency.
    let toe = crate::value::parse_datetime(&entry.at)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0);
    Some(SetClaims {
        iss: context.issuer,
        iat: context.now,
        jti: stream.jti(entry.position),
        aud: context.audience,
        txn: entry.position.to_string(),
        toe,
        sub_id: SubId {
            format: "scim",
            uri: format!(
                "/{}/{}",
                context.endpoint.trim_matches('/'),
                entry.resource_id
            ),
            id: &entry.resource_id,
        },
        events: OneEvent {
            uri: uri(kind, full),
            payload,
        },
    })
}

/// The claims of a SET, serialised as they are signed (no intermediate
/// JSON tree: a push stream makes one per change).
#[derive(Debug, Serialize)]
pub struct SetClaims<'a> {
    pub iss: &'a str,
    pub iat: u64,
    pub jti: String,
    pub aud: &'a str,
    pub txn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toe: Option<f64>,
    pub sub_id: SubId<'a>,
    pub events: OneEvent<'a>,
}

/// `sub_id` in the SCIM format (RFC 9967 section 2.2).
#[derive(Debug, Serialize)]
pub struct SubId<'a> {
    pub format: &'static str,
    pub uri: String,
    pub id: &'a str,
}

/// The `events` claim: one event URI and its payload.
#[derive(Debug)]
pub struct OneEvent<'a> {
    pub uri: &'static str,
    pub payload: Payload<'a>,
}

impl Serialize for OneEvent<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.uri, &self.payload)?;
        map.end()
    }
}

/// An event's payload: the changed paths (notice) or the resource (full),
/// and the version.
#[derive(Debug, Default, Serialize)]
pub struct Payload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::changelog::Actor;
    use serde_json::json;

    fn as_json(claims: Option<SetClaims<'_>>) -> Value {
        serde_json::to_value(claims.unwrap()).unwrap()
    }

    fn entry(op: &str, rtype: &str) -> Entry {
        Entry {
            position: 42,
            at: "2026-12-06T10:00:00.000Z".into(),
            op: op.into(),
            resource_type: rtype.into(),
            resource_id: "u1".into(),
            version_before: Some(1),
            version_after: Some(2),
            actor: Actor::default(),
            paths: vec!["active".into()],
            detail: None,
        }
    }

    fn stream(full: bool) -> StreamSpec {
        StreamSpec {
            id: "s1".into(),
            name: "hr".into(),
            delivery: Delivery::Poll,
            resource_types: vec!["User".into()],
            events: Vec::new(),
            full,
            paused: false,
            created: "2026-12-06T00:00:00Z".into(),
        }
    }

    fn context() -> SetContext<'static> {
        SetContext {
            issuer: "https://scimd.example",
            audience: "https://scimd.example/events/v1/streams/s1",
            endpoint: "/Users",
            now: 1,
        }
    }

    #[test]
    fn a_patch_is_a_patch_notice_with_its_paths_and_version() {
        let entry = entry("patch", "User");
        let claims = as_json(set_claims(&stream(false), &entry, &context(), None));
        assert_eq!(claims["jti"], "s1.42");
        assert_eq!(claims["txn"], "42");
        assert_eq!(claims["sub_id"]["uri"], "/Users/u1");
        assert_eq!(
            claims["events"][PATCH_NOTICE],
            json!({"attributes": ["active"], "version": "W/\"2\""})
        );
        assert_eq!(stream(false).position_of("s1.42"), Some(42));
        assert_eq!(stream(false).position_of("s2.42"), None);
        assert_eq!(stream(false).position_of("s1.x"), None);
    }

    #[test]
    fn streams_carry_what_they_select_and_no_operational_change() {
        assert!(set_claims(&stream(false), &entry("patch", "Group"), &context(), None).is_none());
        assert!(
            set_claims(
                &stream(false),
                &entry("client.create", "User"),
                &context(),
                None
            )
            .is_none()
        );
        let delete = entry("delete", "User");
        let claims = as_json(set_claims(&stream(true), &delete, &context(), None));
        assert_eq!(claims["events"][DELETE], json!({}));
        let doc = json!({"id": "u1", "meta": {"version": "W/\"3\""}});
        let create = entry("create", "User");
        let claims = as_json(set_claims(
            &stream(true),
            &create,
            &context(),
            doc.as_object(),
        ));
        assert_eq!(claims["events"][CREATE_FULL]["data"], doc);
        assert_eq!(claims["events"][CREATE_FULL]["version"], "W/\"3\"");
    }
}
