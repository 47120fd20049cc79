//! One operation's work through the [`ResourceService`], with its
//! references already substituted, and the precondition its `version` sets.

use std::sync::Arc;

use serde_json::Value;

use super::BulkMethod;
use crate::error::ScimResult;
use crate::projection::Projection;
use crate::resource::{tag_opaque, tag_version};
use crate::schema::ResourceTypeDef;
use crate::service::{Precondition, Resource, ResourceService};

/// `W/"3"`, `"3"` or a tag with a groups digest (`W/"3-9a0c…"`) as a
/// precondition on version 3; anything else matches no version.
pub(super) fn precondition(version: Option<&str>) -> Precondition {
    match version.map(str::trim) {
        None | Some("*") => Precondition::None,
        Some(tag) => tag_opaque(tag)
            .and_then(tag_version)
            .map_or(Precondition::Unmatchable, Precondition::Version),
    }
}

/// What a finished piece of work reports.
pub(super) struct Done {
    pub(super) status: u16,
    pub(super) id: Option<String>,
    pub(super) location: Option<String>,
    pub(super) version: Option<String>,
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
pub(super) async fn execute(
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
            // Enough of the resource for its ETag: `meta` and, where they
            // join the tag, the computed groups.
            let shown = if rt.has_computed_groups() {
                Projection::parse(&rt, Some("meta,groups"), None)?
            } else {
                Projection::parse(&rt, Some("meta"), None)?
            };
            Ok(done_from(
                200,
                &service.patch(&rt, &id, &ops, precondition, &shown).await?,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
