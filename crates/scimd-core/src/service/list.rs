//! GET list and POST .search over one or more resource types: index or
//! cursor paging (RFC 9865), the page rendered with its members and
//! computed groups, and the cursor key shared through the store.

use std::sync::Arc;

use serde_json::Value;

use super::root_search::{resolve_for_all, sort_for_all};
use super::{ListRequest, Resource, ResourcePage, ResourceService};
use crate::cursor::CursorCodec;
use crate::error::{ScimError, ScimResult};
use crate::projection::Projection;
use crate::query::{Paging, Query};
use crate::resource::render;
use crate::schema::ResourceTypeDef;
use crate::store::{GroupMembership, StoredResource};

impl ResourceService {
    /// The cursor key of this store: made by whichever server needs it
    /// first, then shared by all through the store.
    async fn cursor_codec(&self) -> ScimResult<crate::cursor::CursorCodec> {
        let key = self
            .cursor_key
            .get_or_try_init(|| async {
                use base64::Engine;
                use rand::RngCore;
                let engine = base64::engine::general_purpose::STANDARD;
                let mut fresh = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut fresh);
                self.store
                    .record_insert(
                        "setting",
                        crate::store::Record {
                            id: "cursor_key".into(),
                            data: serde_json::json!({ "key": engine.encode(fresh) }),
                        },
                        crate::changelog::Change::operational(
                            crate::changelog::Op::Setting,
                            "setting",
                            "cursor_key",
                        ),
                    )
                    .await?;
                let stored = self
                    .store
                    .record_get("setting", "cursor_key")
                    .await?
                    .and_then(|r| {
                        r.data
                            .get("key")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .ok_or_else(|| ScimError::Internal("cursor key missing".into()))?;
                engine
                    .decode(stored)
                    .map_err(|e| ScimError::Internal(format!("cursor key: {e}")))
            })
            .await?;
        Ok(crate::cursor::CursorCodec::new(
            key.clone(),
            self.config.cursor_timeout,
        ))
    }

    /// GET list / POST .search over one or more resource types.
    pub async fn list(
        &self,
        types: &[Arc<ResourceTypeDef>],
        request: &ListRequest,
        projection_for: impl Fn(&ResourceTypeDef) -> ScimResult<Projection>,
    ) -> ScimResult<(ResourcePage, Vec<Projection>)> {
        let filter = match &request.filter {
            None => None,
            Some(f) => Some(resolve_for_all(types, f)?),
        };
        let sort = match &request.sort_by {
            None => None,
            Some(s) => Some(sort_for_all(types, s, request.descending)?),
        };
        let count = request
            .count
            .unwrap_or(self.config.default_count)
            .min(self.config.max_count);
        let start = request.start_index.unwrap_or(1).max(1);
        let walk = walk_of(types, request);
        let codec = self.codec_for(request).await?;
        let now = crate::value::unix_now();
        let paging = paging(request, codec.as_ref(), &walk, now, start, count)?;
        let projections: Vec<Projection> = types
            .iter()
            .map(|rt| projection_for(rt))
            .collect::<ScimResult<_>>()?;
        let with_members = types
            .iter()
            .zip(&projections)
            .any(|(rt, p)| rt.has_members() && p.shows_core(rt, "members"));
        let query = Query {
            resource_types: types.iter().map(|rt| rt.name().to_string()).collect(),
            filter,
            sort,
            paging,
            with_members,
        };
        // Computed `groups` of the whole page in the same store call.
        let groups_for: Vec<String> = types
            .iter()
            .zip(&projections)
            .filter(|(rt, p)| rt.has_computed_groups() && p.shows_core(rt, "groups"))
            .map(|(rt, _)| rt.name().to_string())
            .collect();
        let (mut page, mut groups) = self.store.query_with_groups(query, &groups_for).await?;
        let mut next_cursor = None;
        if let Some(codec) = &codec
            && page.items.len() as u64 > count
        {
            let keep = usize::try_from(count).unwrap_or(usize::MAX);
            page.items.truncate(keep);
            groups.truncate(keep);
            if let Some(last) = page.items.last() {
                next_cursor = Some(codec.seal(last.position, &walk, now)?);
            }
        }
        groups.resize(page.items.len(), None);
        let resources = self.render_page(types, page.items, groups)?;
        Ok((
            ResourcePage {
                total: page.total,
                start_index: codec.is_none().then_some(start),
                next_cursor,
                resources,
            },
            projections,
        ))
    }

    /// The cursor codec when the request pages by cursor (`None` for index
    /// paging); a cursor combined with `sortBy` or `startIndex` is refused.
    async fn codec_for(&self, request: &ListRequest) -> ScimResult<Option<CursorCodec>> {
        Ok(match &request.cursor {
            None => None,
            Some(_) if request.sort_by.is_some() => {
                return Err(ScimError::InvalidValue(
                    "sortBy cannot be combined with cursor paging: cursors walk the store order"
                        .into(),
                ));
            }
            Some(_) if request.start_index.is_some() => {
                return Err(ScimError::InvalidValue(
                    "startIndex and cursor cannot be combined".into(),
                ));
            }
            Some(_) => Some(self.cursor_codec().await?),
        })
    }

    /// A page of stored resources (with their computed groups, one entry
    /// per resource) rendered, each by its own type.
    fn render_page(
        &self,
        types: &[Arc<ResourceTypeDef>],
        items: Vec<StoredResource>,
        groups: Vec<Option<Vec<GroupMembership>>>,
    ) -> ScimResult<Vec<Resource>> {
        let mut resources = Vec::with_capacity(items.len());
        for (stored, own) in items.into_iter().zip(groups) {
            let rt = types
                .iter()
                .find(|rt| rt.name() == stored.resource_type)
                .ok_or_else(|| ScimError::Internal("store returned an unexpected type".into()))?;
            let doc = render(rt, &stored, &self.config.base_url, own.as_deref());
            resources.push(Resource {
                resource_type: rt.clone(),
                version: stored.version,
                doc,
            });
        }
        Ok(resources)
    }
}

/// What a cursor walks: the types and the filter. The cursor is bound to
/// what it walks; a different filter or set of types must not continue it.
fn walk_of(types: &[Arc<ResourceTypeDef>], request: &ListRequest) -> String {
    crate::cursor::fingerprint(&[
        &types
            .iter()
            .map(|rt| rt.name())
            .collect::<Vec<_>>()
            .join(","),
        &request
            .filter
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    ])
}

/// The paging of the store query: after the position `request.cursor`
/// opens to (with `codec`), or from `start` by index.
fn paging(
    request: &ListRequest,
    codec: Option<&CursorCodec>,
    walk: &str,
    now: u64,
    start: u64,
    count: u64,
) -> ScimResult<Paging> {
    Ok(match (&request.cursor, codec) {
        (Some(cursor), Some(codec)) => {
            let after = match cursor.trim() {
                "" => None,
                c => Some(codec.open(c, walk, now)?),
            };
            // One more than asked tells whether a next page exists.
            Paging::Cursor {
                after,
                count: if count == 0 { 0 } else { count + 1 },
            }
        }
        _ => Paging::Index { start, count },
    })
}
