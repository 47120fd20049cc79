//! Event streams as operators manage them (`scimd stream ...`): settings in
//! an operational record (logged like every operational change), progress
//! beside it.

use scimd_core::changelog::{Change, Op};
use scimd_core::events::{Delivery, EVENT_KINDS, STREAM_KIND, StreamSpec};
use scimd_core::store::{Record, Store, StoreError, StreamProgress};
use serde_json::{Value, json};

use crate::EventError;

/// The scope a poller of stream `id` needs: `<prefix>events.<id>`.
pub fn scope(prefix: &str, id: &str) -> String {
    format!("{prefix}events.{id}")
}

/// The stream `id` (or named `id`), if there is one.
pub async fn load(store: &dyn Store, id: &str) -> Result<Option<StreamSpec>, StoreError> {
    if let Some(record) = store.record_get(STREAM_KIND, id).await? {
        return Ok(Some(from_record(record)?));
    }
    Ok(list(store).await?.into_iter().find(|s| s.name == id))
}

/// Every stream, by id.
pub async fn list(store: &dyn Store) -> Result<Vec<StreamSpec>, StoreError> {
    store
        .record_list(STREAM_KIND)
        .await?
        .into_iter()
        .map(from_record)
        .collect()
}

fn from_record(record: Record) -> Result<StreamSpec, StoreError> {
    serde_json::from_value(record.data)
        .map_err(|e| StoreError::Backend(format!("corrupt stream record {}: {e}", record.id)))
}

/// What a new stream asks for, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct NewStream {
    pub name: String,
    /// `None`: poll.
    pub push_url: Option<String>,
    pub resource_types: Vec<String>,
    pub events: Vec<String>,
    pub full: bool,
}

/// Creates a stream, checked: a name of letters, digits, `-`, `_`, `.`; a
/// push URL that is http(s) and whose host resolves; known resource types
/// and event kinds. It starts at the log's head: it carries what happens
/// from now on.
pub async fn create(
    store: &dyn Store,
    known_types: &[String],
    new: NewStream,
) -> Result<StreamSpec, EventError> {
    let name = new.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(EventError::Invalid(format!(
            "stream name '{name}': 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    if list(store).await?.iter().any(|s| s.name == name) {
        return Err(EventError::Invalid(format!(
            "a stream named '{name}' exists already"
        )));
    }
    for t in &new.resource_types {
        if !known_types.iter().any(|k| k.eq_ignore_ascii_case(t)) {
            return Err(EventError::Invalid(format!(
                "unknown resource type '{t}'; the types are: {}",
                known_types.join(", ")
            )));
        }
    }
    for e in &new.events {
        if !EVENT_KINDS.contains(&e.as_str()) {
            return Err(EventError::Invalid(format!(
                "unknown event '{e}'; the events are: {}",
                EVENT_KINDS.join(", ")
            )));
        }
    }
    let delivery = match new.push_url {
        None => Delivery::Poll,
        Some(url) => Delivery::Push {
            url: check_push_url(&url).await?,
        },
    };
    let spec = StreamSpec {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_string(),
        delivery,
        resource_types: new.resource_types,
        events: new.events,
        full: new.full,
        paused: false,
        created: scimd_core::value::now_timestamp(),
    };
    let head = store.change_head().await?;
    store.stream_start(&spec.id, head).await?;
    store
        .record_insert(
            STREAM_KIND,
            record(&spec)?,
            Change::operational(Op::StreamCreate, STREAM_KIND, &spec.id),
        )
        .await?;
    Ok(spec)
}

fn record(spec: &StreamSpec) -> Result<Record, EventError> {
    Ok(Record {
        id: spec.id.clone(),
        data: serde_json::to_value(spec)
            .map_err(|e| EventError::Invalid(format!("stream settings: {e}")))?,
    })
}

/// A push URL: http or https, with a host that resolves now.
async fn check_push_url(url: &str) -> Result<String, EventError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| EventError::Invalid(format!("push URL '{url}': {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EventError::Invalid(format!(
            "push URL '{url}': the scheme must be http or https"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| EventError::Invalid(format!("push URL '{url}' has no host")))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let resolved = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map(|mut addrs| addrs.next().is_some())
        .unwrap_or(false);
    if !resolved {
        return Err(EventError::Invalid(format!(
            "push URL '{url}': the host '{host}' does not resolve"
        )));
    }
    Ok(parsed.to_string())
}

/// Deletes the stream `id` (or named `id`); `false` when there is none.
pub async fn delete(store: &dyn Store, id: &str) -> Result<bool, EventError> {
    let Some(spec) = load(store, id).await? else {
        return Ok(false);
    };
    let deleted = store
        .record_delete(
            STREAM_KIND,
            &spec.id,
            Change::operational(Op::StreamDelete, STREAM_KIND, &spec.id),
        )
        .await?;
    store.stream_forget(&spec.id).await?;
    Ok(deleted)
}

/// Pauses or resumes the stream `id` (or named `id`). Resuming also takes
/// a push stream out of the dead-letter state, to try its receiver again.
pub async fn set_paused(
    store: &dyn Store,
    id: &str,
    paused: bool,
) -> Result<StreamSpec, EventError> {
    let mut spec = load(store, id)
        .await?
        .ok_or_else(|| EventError::NoStream(id.to_string()))?;
    spec.paused = paused;
    let op = if paused {
        Op::StreamPause
    } else {
        Op::StreamResume
    };
    store
        .record_put(
            STREAM_KIND,
            record(&spec)?,
            Change::operational(op, STREAM_KIND, &spec.id).with_paths(vec!["paused".into()]),
        )
        .await?;
    if !paused {
        for _ in 0..16 {
            let Some(mut progress) = store.stream_progress(&spec.id).await? else {
                break;
            };
            crate::push::revive(&mut progress);
            if store.stream_save(&spec.id, &progress).await? {
                break;
            }
        }
    }
    Ok(spec)
}

/// A stream as `scimd stream create|show|list` prints it: its id, name,
/// poll endpoint (from the public base URL) or push URL, the scope a
/// poller's token needs, the events it carries, and how far it is.
pub fn describe(
    spec: &StreamSpec,
    progress: Option<&StreamProgress>,
    head: i64,
    base: &str,
    scope_prefix: &str,
) -> Value {
    let mut out = json!({
        "id": spec.id,
        "name": spec.name,
        "delivery": match &spec.delivery {
            Delivery::Poll => "poll",
            Delivery::Push { .. } => "push",
        },
        "resourceTypes": spec.resource_types,
        "events": spec.event_uris(),
        "full": spec.full,
        "state": state(spec, progress),
        "created": spec.created,
    });
    match &spec.delivery {
        Delivery::Poll => {
            out["pollUrl"] = json!(poll_url(base, &spec.id));
            out["scope"] = json!(scope(scope_prefix, &spec.id));
        }
        Delivery::Push { url } => out["pushUrl"] = json!(url),
    }
    if let Some(p) = progress {
        out["deliveredThrough"] = json!(p.through);
        // An upper bound: positions not yet passed, carried or not.
        out["behind"] = json!((head - p.through).max(0));
        if let Delivery::Push { .. } = spec.delivery {
            out["push"] = p.push.clone();
        }
    }
    out
}

/// `active`, `paused` or `dead` (a push receiver that failed too long).
pub fn state(spec: &StreamSpec, progress: Option<&StreamProgress>) -> &'static str {
    if spec.paused {
        "paused"
    } else if progress.is_some_and(crate::push::is_dead) {
        "dead"
    } else {
        "active"
    }
}

/// The poll endpoint of stream `id` under the public base URL.
pub fn poll_url(base: &str, id: &str) -> String {
    format!("{}/events/v1/streams/{id}", base.trim_end_matches('/'))
}
