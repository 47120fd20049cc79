//! The resource service: every SCIM operation on resources, expressed over the
//! [`Store`] trait. HTTP handlers parse requests into typed values and call one
//! method here.

use std::sync::Arc;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::{ScimError, ScimResult};
use crate::projection::Projection;
use crate::query::{Cond, Paging, Query};
use crate::rendering::{RenderCache, Rendered};
use crate::resource::{
    Missing, ResourceInput, carry_over, check_required, hash_write_only, needs_hashing,
    parse_input, render,
};
use crate::schema::{Registry, ResourceTypeDef};
use crate::store::{
    Member, MemberChange, Modification, ModifyError, ResourceWrite, Store, StoreError,
    StoredResource,
};
use crate::value::format_timestamp;

/// How many times a write without `If-Match` is retried when a concurrent
/// write moved the version underneath it.
const MAX_WRITE_ATTEMPTS: usize = 16;

/// A resource's document after `projection`, as the JSON a response carries.
pub fn serialised(resource: Resource, projection: &Projection) -> Rendered {
    let tag = resource.tag();
    let doc = projection.apply(&resource.resource_type, resource.doc);
    let body = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
    Rendered {
        tag,
        body: body.into(),
    }
}

/// Settings the service needs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Public base URL of the SCIM API, without trailing slash
    /// (e.g. `http://127.0.0.1:8080/scim/v2`); used in `meta.location`.
    pub base_url: String,
    /// Page size when the client gives no `count`.
    pub default_count: u64,
    /// Largest page served; larger `count` values are lowered to it.
    pub max_count: u64,
    /// Lifetime of a paging cursor, in seconds.
    pub cursor_timeout: u64,
    /// Most operations in one Bulk request.
    pub bulk_max_operations: usize,
    /// Largest Bulk request body, in bytes.
    pub bulk_max_payload: usize,
    /// Whole-document renderings kept for reuse ([`RenderCache`]); 0: none.
    pub render_cache: usize,
}

/// A version precondition from `If-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`, or `*`.
    None,
    /// `If-Match: W/"n"`.
    Version(i64),
    /// An `If-Match` that cannot match any version of ours.
    Unmatchable,
}

/// A resource rendered as a full SCIM document (before projection).
#[derive(Debug, Clone)]
pub struct Resource {
    pub resource_type: Arc<ResourceTypeDef>,
    pub version: i64,
    pub doc: Map<String, Value>,
}

impl Resource {
    /// Its entity tag: the rendered `meta.version` (which carries the
    /// computed groups' digest when they show), as ETag and Bulk's
    /// `version` must equal it.
    pub fn tag(&self) -> String {
        self.doc
            .get("meta")
            .and_then(|m| m.get("version"))
            .and_then(Value::as_str)
            .map_or_else(|| crate::resource::etag(self.version), str::to_string)
    }
}

/// A page of rendered resources.
#[derive(Debug, Clone)]
pub struct ResourcePage {
    pub total: u64,
    /// `None` when the page was asked for by cursor.
    pub start_index: Option<u64>,
    /// The cursor of the next page, when there is one (cursor paging).
    pub next_cursor: Option<String>,
    pub resources: Vec<Resource>,
}

/// The SearchRequest message URN (`POST .search`).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// A list or search request, parsed at the edge.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub filter: Option<scimd_filter::Filter>,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub start_index: Option<u64>,
    pub count: Option<u64>,
    /// Cursor paging (RFC 9865): `Some("")` asks for the first page,
    /// `Some(cursor)` continues; `None` is index paging.
    pub cursor: Option<String>,
}

/// Every SCIM resource operation.
pub struct ResourceService {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    config: ServiceConfig,
    cursor_key: tokio::sync::OnceCell<Vec<u8>>,
    renderings: RenderCache,
    /// What a group member may be ([`Registry::member_types`]), fixed with the registry.
    member_types: Vec<String>,
}

impl ResourceService {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>, registry: Arc<Registry>, config: ServiceConfig) -> Self {
        ResourceService {
            member_types: registry.member_types(),
            renderings: RenderCache::new(config.render_cache),
            store,
            registry,
            config,
            cursor_key: tokio::sync::OnceCell::new(),
        }
    }

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

    /// The schema registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// POST: creates a resource.
    pub async fn create(&self, rt: &Arc<ResourceTypeDef>, body: Value) -> ScimResult<Resource> {
        self.create_with_id(rt, &uuid::Uuid::now_v7().to_string(), body)
            .await
    }

    /// POST with the id chosen by the server's caller, not the client
    /// (`POST /Me`: the token's subject). An id already taken is 409
    /// `uniqueness`.
    pub async fn create_as(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        body: Value,
    ) -> ScimResult<Resource> {
        if self.store.get(rt.name(), id, false).await?.is_some() {
            return Err(ScimError::Uniqueness(format!(
                "a {} with id '{id}' exists already",
                rt.name()
            )));
        }
        self.create_with_id(rt, id, body).await
    }

    async fn create_with_id(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        body: Value,
    ) -> ScimResult<Resource> {
        let mut input = parse_input(rt, body)?;
        check_required(rt, &input)?;
        self.check_owner(rt, &input.data).await?;
        input = hash_secrets(rt, input).await?;
        let now = now();
        let write = self.prepare(rt, id, input.data, input.members, &now);
        let stored = self.store.create(write).await?;
        // A resource that did not exist a moment ago belongs to no group:
        // no need to ask the store.
        let groups = rt.has_computed_groups().then(Vec::new);
        let doc = render(rt, &stored, &self.config.base_url, groups.as_deref());
        Ok(Resource {
            resource_type: rt.clone(),
            version: stored.version,
            doc,
        })
    }

    /// GET: one resource, loading members and groups only if they will show.
    pub async fn get(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        projection: &Projection,
    ) -> ScimResult<Resource> {
        if rt.has_computed_groups() && projection.shows_core(rt, "groups") {
            let (row, groups) = self
                .store
                .get_with_groups(rt.name(), id)
                .await?
                .ok_or_else(|| not_found(rt, id))?;
            let stored = row.parse()?;
            let doc = render(rt, &stored, &self.config.base_url, Some(&groups));
            return Ok(Resource {
                resource_type: rt.clone(),
                version: stored.version,
                doc,
            });
        }
        let with_members = rt.has_members() && projection.shows_core(rt, "members");
        let stored = self
            .store
            .get(rt.name(), id, with_members)
            .await?
            .ok_or_else(|| not_found(rt, id))?;
        self.finish(rt, stored, projection).await
    }

    /// GET without a projection: the whole document, serialised. A resource
    /// whose computed groups show and that has no members (whose rendering
    /// therefore depends only on its own row and groups) is served from the
    /// [`RenderCache`] when the row and groups just read are those its kept
    /// rendering was made from.
    pub async fn get_rendered(&self, rt: &Arc<ResourceTypeDef>, id: &str) -> ScimResult<Rendered> {
        let all = Projection::all();
        if !(rt.has_computed_groups() && !rt.has_members() && all.shows_core(rt, "groups")) {
            return Ok(serialised(self.get(rt, id, &all).await?, &all));
        }
        let (row, groups) = self
            .store
            .get_with_groups(rt.name(), id)
            .await?
            .ok_or_else(|| not_found(rt, id))?;
        if let Some(kept) = self.renderings.get(&row, &groups) {
            return Ok(kept);
        }
        let stored = row.parse()?;
        let doc = render(rt, &stored, &self.config.base_url, Some(&groups));
        let resource = Resource {
            resource_type: rt.clone(),
            version: stored.version,
            doc,
        };
        let rendered = serialised(resource, &all);
        self.renderings.put(row, groups, &rendered);
        Ok(rendered)
    }

    /// PUT: replaces a resource (RFC 7644 section 3.5.1).
    pub async fn replace(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        body: Value,
        precondition: Precondition,
    ) -> ScimResult<Resource> {
        let input = parse_input(rt, body)?;
        check_required(rt, &input)?;
        let input = hash_secrets(rt, input).await?;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let old = self
                .store
                .get(rt.name(), id, false)
                .await?
                .ok_or_else(|| not_found(rt, id))?;
            check_precondition(precondition, old.version)?;
            let mut data = input.data.clone();
            carry_over(rt, &old.data, &mut data, Missing::Kept)?;
            self.check_owner(rt, &data).await?;
            let members = rt
                .has_members()
                .then(|| input.members.clone().unwrap_or_default());
            let now = now();
            let write = self.prepare(rt, id, data, members, &now);
            match self
                .replace_stored(rt, write, old.version, &Projection::all())
                .await
            {
                Ok(resource) => return Ok(resource),
                Err(StoreError::VersionMismatch { .. }) if precondition == Precondition::None => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ScimError::Unavailable(
            "the resource is being changed concurrently; retry".into(),
        ))
    }

    /// Whether `ops` only add or remove members of a group: such a PATCH
    /// touches membership rows only.
    pub fn is_member_patch(&self, rt: &ResourceTypeDef, ops: &[crate::patch::PatchOp]) -> bool {
        rt.has_members() && matches!(crate::patch::member_changes(rt, ops), Ok(Some(_)))
    }

    /// PATCH: applies the operations to the stored resource and writes the
    /// result with the same rules as PUT: membership changes alone touch
    /// only membership rows; other changes are one read-modify-write of the
    /// store, or for groups and owned types (members to load, an owner to
    /// check) a read, then a compare-and-swap.
    pub async fn patch(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        ops: &[crate::patch::PatchOp],
        precondition: Precondition,
        projection: &Projection,
    ) -> ScimResult<Resource> {
        self.check_patch_size(ops)?;
        if rt.has_members()
            && let Some(changes) = crate::patch::member_changes(rt, ops)?
        {
            self.apply_member_changes(rt, id, changes, precondition)
                .await?;
            return self.get(rt, id, projection).await;
        }
        let heavy = ops.len() > IN_STORE_PATCH_MAX_OPS;
        if !rt.has_members()
            && rt.doc.owner.is_none()
            && !heavy
            && let Some(resource) = self
                .patch_in_store(rt, id, ops, precondition, projection)
                .await?
        {
            return Ok(resource);
        }
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let old = self
                .store
                .get(rt.name(), id, rt.has_members())
                .await?
                .ok_or_else(|| not_found(rt, id))?;
            check_precondition(precondition, old.version)?;
            let mut doc = old.data.clone();
            if let Some(members) = &old.members {
                let list: Vec<Value> = members
                    .iter()
                    .map(|m| {
                        let mut o = Map::new();
                        o.insert("value".into(), Value::String(m.value.clone()));
                        if let Some(t) = &m.typ {
                            o.insert("type".into(), Value::String(t.clone()));
                        }
                        if let Some(d) = &m.display {
                            o.insert("display".into(), Value::String(d.clone()));
                        }
                        Value::Object(o)
                    })
                    .collect();
                doc.insert("members".into(), Value::Array(list));
            }
            let input = if heavy {
                // Off the async workers: hundreds of value-path operations
                // over long multi-valued attributes take a while.
                let (def, id, stored, ops) =
                    (rt.clone(), id.to_string(), old.data.clone(), ops.to_vec());
                tokio::task::spawn_blocking(move || {
                    let target = crate::patch::Target { rt: &def, id: &id };
                    patched_input(target, &stored, doc, &ops)
                })
                .await
                .map_err(|e| ScimError::Internal(format!("PATCH task: {e}")))??
            } else {
                patched_input(crate::patch::Target { rt, id }, &old.data, doc, ops)?
            };
            self.check_owner(rt, &input.data).await?;
            let input = hash_secrets(rt, input).await?;
            let members = rt
                .has_members()
                .then(|| input.members.clone().unwrap_or_default());
            let now = now();
            let write = self.prepare(rt, id, input.data, members, &now);
            match self
                .replace_stored(rt, write, old.version, projection)
                .await
            {
                Ok(resource) => return Ok(resource),
                Err(StoreError::VersionMismatch { .. }) if precondition == Precondition::None => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ScimError::Unavailable(
            "the resource is being changed concurrently; retry".into(),
        ))
    }

    /// A PATCH carries at most `bulk.maxOperations` operations, the figure
    /// ServiceProviderConfig advertises (authentik sizes its PATCHes by it).
    fn check_patch_size(&self, ops: &[crate::patch::PatchOp]) -> ScimResult<()> {
        let max = self.config.bulk_max_operations;
        if ops.len() > max {
            return Err(ScimError::PayloadTooLarge(format!(
                "the PATCH request has {} operations; at most {max} are accepted (bulk.maxOperations)",
                ops.len()
            )));
        }
        Ok(())
    }

    /// PATCH as one read-modify-write of the store ([`Store::modify`]):
    /// concurrent PATCHes of one resource queue instead of retrying.
    /// `None` when the result needs I/O of its own first (a new password to
    /// hash): the caller takes the general path. Types with members or an
    /// owner always do (loading members, checking the owner).
    async fn patch_in_store(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        ops: &[crate::patch::PatchOp],
        precondition: Precondition,
        projection: &Projection,
    ) -> ScimResult<Option<Resource>> {
        let (def, ops) = (rt.clone(), ops.to_vec());
        let member_types = self.member_types.clone();
        let change: Modification = Box::new(move |old: &StoredResource| {
            check_precondition(precondition, old.version)?;
            let target = crate::patch::Target {
                rt: &def,
                id: &old.id,
            };
            let input = patched_input(target, &old.data, old.data.clone(), &ops)?;
            if needs_hashing(&def, &input.data) {
                return Ok(None);
            }
            Ok(Some(ResourceWrite {
                member_types: member_types.clone(),
                ..ResourceWrite::derived(&def, &old.id, input.data, &now())
            }))
        });
        let with_groups = rt.has_computed_groups() && projection.shows_core(rt, "groups");
        match self.store.modify(rt.name(), id, with_groups, change).await {
            Ok(Some((stored, groups))) => {
                let doc = render(rt, &stored, &self.config.base_url, groups.as_deref());
                Ok(Some(Resource {
                    resource_type: rt.clone(),
                    version: stored.version,
                    doc,
                }))
            }
            Ok(None) => Ok(None),
            Err(ModifyError::Refused(e)) => Err(e),
            Err(ModifyError::Store(StoreError::NotFound)) => Err(not_found(rt, id)),
            Err(ModifyError::Store(e)) => Err(e.into()),
        }
    }

    /// PATCH when the answer shows nothing (204): the new version only.
    /// A membership change then costs its write and nothing more.
    pub async fn patch_for_version(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        ops: &[crate::patch::PatchOp],
        precondition: Precondition,
    ) -> ScimResult<i64> {
        self.check_patch_size(ops)?;
        if rt.has_members()
            && let Some(changes) = crate::patch::member_changes(rt, ops)?
        {
            return self
                .apply_member_changes(rt, id, changes, precondition)
                .await;
        }
        let id_only = Projection::parse(rt, Some("id"), None)?;
        Ok(self
            .patch(rt, id, ops, precondition, &id_only)
            .await?
            .version)
    }

    async fn apply_member_changes(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        changes: Vec<MemberChange>,
        precondition: Precondition,
    ) -> ScimResult<i64> {
        let expected = match precondition {
            Precondition::None => None,
            Precondition::Version(v) => Some(v),
            Precondition::Unmatchable => Some(-1),
        };
        match self.change_members(rt, id, changes, expected).await {
            Err(ScimError::NotFound(_)) => Err(not_found(rt, id)),
            other => other,
        }
    }

    /// Membership changes without rewriting the group.
    pub async fn change_members(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        changes: Vec<MemberChange>,
        expected_version: Option<i64>,
    ) -> ScimResult<i64> {
        let types = self.member_types.clone();
        Ok(self
            .store
            .change_members(rt.name(), id, changes, types, expected_version, now())
            .await?)
    }

    /// DELETE: removes a resource and its memberships.
    pub async fn delete(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        precondition: Precondition,
    ) -> ScimResult<()> {
        let expected = match precondition {
            Precondition::None => None,
            Precondition::Version(v) => Some(v),
            Precondition::Unmatchable => Some(-1),
        };
        let dependents = self.owned_by(rt, id)?;
        match self.store.delete(rt.name(), id, expected, dependents).await {
            Err(StoreError::NotFound) => Err(not_found(rt, id)),
            other => Ok(other?),
        }
    }

    /// When `rt` has an owner attribute, it must name an existing resource
    /// of the owner type.
    async fn check_owner(&self, rt: &ResourceTypeDef, data: &Map<String, Value>) -> ScimResult<()> {
        let Some(owner) = &rt.doc.owner else {
            return Ok(());
        };
        let Some(owner_rt) = self.registry.by_name(&owner.resource_type) else {
            return Err(ScimError::Internal(format!(
                "owner type {} of {} is not loaded",
                owner.resource_type,
                rt.name()
            )));
        };
        let value = data
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&owner.attribute))
            .map(|(_, v)| v);
        match value {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(id)) => {
                if self.store.get(owner_rt.name(), id, false).await?.is_some() {
                    Ok(())
                } else {
                    Err(ScimError::InvalidValue(format!(
                        "{} '{id}' does not name an existing {}",
                        owner.attribute,
                        owner_rt.name()
                    )))
                }
            }
            Some(_) => Err(ScimError::InvalidValue(format!(
                "{} must be a string",
                owner.attribute
            ))),
        }
    }

    /// What a resource of `rt` named `id` owns: for each resource type whose
    /// owner attribute points at `rt`, the condition selecting `id`'s. Deleted
    /// with it, in the same transaction.
    fn owned_by(&self, rt: &ResourceTypeDef, id: &str) -> ScimResult<Vec<(String, Cond)>> {
        let mut out = Vec::new();
        for dependent in self.registry.resource_types() {
            let Some(owner) = &dependent.doc.owner else {
                continue;
            };
            if !owner.resource_type.eq_ignore_ascii_case(rt.name()) {
                continue;
            }
            // Built, not parsed: the id comes from the request's URL and
            // may be anything (a filter's length budget is not its business).
            let filter = scimd_filter::Filter::Compare {
                path: scimd_filter::parse_attr_path(&owner.attribute)
                    .map_err(|e| ScimError::Internal(format!("owner attribute: {e}")))?,
                op: scimd_filter::CompareOp::Eq,
                value: Value::String(id.to_string()),
            };
            let cond = crate::query::resolve_filter(dependent, &filter)?;
            out.push((dependent.name().to_string(), cond));
        }
        Ok(out)
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
        // The cursor is bound to what it walks; a different filter or set of
        // types must not continue it.
        let walk = crate::cursor::fingerprint(&[
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
        ]);
        let codec = match &request.cursor {
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
        };
        let now = crate::value::unix_now();
        let paging = match (&request.cursor, &codec) {
            (Some(cursor), Some(codec)) => {
                let after = match cursor.trim() {
                    "" => None,
                    c => Some(codec.open(c, &walk, now)?),
                };
                // One more than asked tells whether a next page exists.
                Paging::Cursor {
                    after,
                    count: if count == 0 { 0 } else { count + 1 },
                }
            }
            _ => Paging::Index { start, count },
        };
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
        let mut resources = Vec::with_capacity(page.items.len());
        for (stored, own) in page.items.into_iter().zip(groups) {
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

    /// Reads the stored form of a resource (for PATCH).
    pub async fn load(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        with_members: bool,
    ) -> ScimResult<StoredResource> {
        self.store
            .get(rt.name(), id, with_members)
            .await?
            .ok_or_else(|| not_found(rt, id))
    }

    /// Writes a replacement (compare-and-swap on `expected`) and renders the
    /// result, with the computed `groups` read in the same store call when
    /// they will show.
    async fn replace_stored(
        &self,
        rt: &Arc<ResourceTypeDef>,
        write: ResourceWrite,
        expected: i64,
        projection: &Projection,
    ) -> Result<Resource, StoreError> {
        let with_groups = rt.has_computed_groups() && projection.shows_core(rt, "groups");
        let (stored, groups) = self
            .store
            .replace(write, Some(expected), with_groups)
            .await?;
        let doc = render(rt, &stored, &self.config.base_url, groups.as_deref());
        Ok(Resource {
            resource_type: rt.clone(),
            version: stored.version,
            doc,
        })
    }

    /// Renders a stored resource, computing `groups` when it will show.
    pub async fn finish(
        &self,
        rt: &Arc<ResourceTypeDef>,
        stored: StoredResource,
        projection: &Projection,
    ) -> ScimResult<Resource> {
        let groups = if rt.has_computed_groups() && projection.shows_core(rt, "groups") {
            let ids = [stored.id.clone()];
            Some(self.store.groups_of(&ids).await?.pop().unwrap_or_default())
        } else {
            None
        };
        let doc = render(rt, &stored, &self.config.base_url, groups.as_deref());
        Ok(Resource {
            resource_type: rt.clone(),
            version: stored.version,
            doc,
        })
    }

    fn prepare(
        &self,
        rt: &ResourceTypeDef,
        id: &str,
        data: Map<String, Value>,
        members: Option<Vec<Member>>,
        modified: &str,
    ) -> ResourceWrite {
        ResourceWrite {
            members,
            member_types: self.member_types.clone(),
            ..ResourceWrite::derived(rt, id, data, modified)
        }
    }
}

/// PATCHes with more operations than this are computed outside the
/// store's write (on SQLite, one thread runs every write in turn) and off
/// the async workers: 1,000 value-path operations that each scan a growing
/// `emails` took most of a second, and would have held every other write.
const IN_STORE_PATCH_MAX_OPS: usize = 64;

/// What a PATCH makes of `doc` (the stored document `stored`, with its
/// members when the type has them): the operations applied, then the rules
/// of a PUT (read-only values kept, required ones present).
fn patched_input(
    target: crate::patch::Target<'_>,
    stored: &Map<String, Value>,
    mut doc: Map<String, Value>,
    ops: &[crate::patch::PatchOp],
) -> ScimResult<ResourceInput> {
    let rt = target.rt;
    crate::patch::apply(target, &mut doc, ops)?;
    let mut input = parse_input(rt, Value::Object(doc))?;
    carry_over(rt, stored, &mut input.data, Missing::Removed)?;
    check_required(rt, &input)?;
    Ok(input)
}

/// `sortBy` of a search over several types. Every type that has the
/// attribute must accept it (one that hides it, or holds it as a membership,
/// refuses the whole search); the first such type's key is used. Core keys
/// are unqualified, so a URN-qualified core path (`...:Group:displayName`)
/// also sorts the other types by their own attribute of that name.
fn sort_for_all(
    types: &[Arc<ResourceTypeDef>],
    sort_by: &str,
    descending: bool,
) -> ScimResult<crate::query::SortKey> {
    let path = scimd_filter::parse_attr_path(sort_by)
        .map_err(|e| ScimError::InvalidValue(format!("sortBy: {e}")))?;
    let mut key = None;
    let mut first_error = None;
    for rt in types {
        match crate::query::resolve_sort(rt, sort_by, descending) {
            Ok(k) => {
                key.get_or_insert(k);
            }
            Err(e) if rt.resolve(&path).is_ok() => return Err(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    key.ok_or_else(|| first_error.unwrap_or_else(|| ScimError::Internal("no resource type".into())))
}

/// For root searches a filter must make sense for at least one type
/// searched; a path one type does not have matches nothing there. When the
/// types read the filter differently (a URN-qualified path names one type's
/// schema), each type's condition is bound to that type.
fn resolve_for_all(
    types: &[Arc<ResourceTypeDef>],
    filter: &scimd_filter::Filter,
) -> ScimResult<Cond> {
    let mut first_error = None;
    let mut strictly = false;
    let mut per_type: Vec<(&Arc<ResourceTypeDef>, Cond)> = Vec::new();
    for rt in types {
        match crate::query::resolve_list_filter(rt, filter, false) {
            Ok(cond) => {
                strictly = true;
                per_type.push((rt, cond));
                continue;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        // Type errors (`meta.created gt 5`) stay errors; unknown paths do not.
        match crate::query::resolve_list_filter(rt, filter, true) {
            Ok(cond) => per_type.push((rt, cond)),
            Err(e) => return Err(e),
        }
    }
    if !strictly {
        return Err(first_error.unwrap_or_else(|| ScimError::Internal("no resource type".into())));
    }
    let Some((_, first)) = per_type.first() else {
        return Err(ScimError::Internal("no resource type".into()));
    };
    if per_type.iter().all(|(_, c)| c == first) {
        return Ok(first.clone());
    }
    let mut any: Option<Cond> = None;
    // A type that has none of the filter's paths adds nothing.
    let never = Cond::never();
    for (rt, cond) in per_type.into_iter().filter(|(_, c)| *c != never) {
        let of_type = crate::query::resolve_filter(
            rt,
            &scimd_filter::Filter::Compare {
                path: scimd_filter::AttrPath {
                    urn: None,
                    name: "meta".into(),
                    sub: Some("resourceType".into()),
                },
                op: scimd_filter::CompareOp::Eq,
                value: Value::String(rt.name().to_string()),
            },
        )?;
        let bound = Cond::And(Box::new(of_type), Box::new(cond));
        any = Some(match any {
            None => bound,
            Some(prev) => Cond::Or(Box::new(prev), Box::new(bound)),
        });
    }
    Ok(any.unwrap_or(never))
}

fn check_precondition(precondition: Precondition, current: i64) -> ScimResult<()> {
    match precondition {
        Precondition::None => Ok(()),
        Precondition::Version(v) if v == current => Ok(()),
        _ => Err(ScimError::PreconditionFailed(format!(
            "If-Match does not match the current version W/\"{current}\""
        ))),
    }
}

fn not_found(rt: &ResourceTypeDef, id: &str) -> ScimError {
    // The id is the client's, from the URL: quoted in part, not echoed whole.
    let shown: String = id.chars().take(64).collect();
    let more = if shown.len() < id.len() { "…" } else { "" };
    ScimError::NotFound(format!("{} {shown}{more} not found", rt.name()))
}

fn now() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

/// Argon2 is deliberately slow; it runs off the async workers.
async fn hash_secrets(
    rt: &Arc<ResourceTypeDef>,
    mut input: ResourceInput,
) -> ScimResult<ResourceInput> {
    if !needs_hashing(rt, &input.data) {
        return Ok(input);
    }
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || {
        hash_write_only(&rt, &mut input.data)?;
        Ok(input)
    })
    .await
    .map_err(|e| ScimError::Internal(format!("hashing task failed: {e}")))?
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Uniqueness { attr } => {
                ScimError::Uniqueness(format!("another resource already has this {attr}"))
            }
            StoreError::NotFound => ScimError::NotFound("resource not found".into()),
            StoreError::VersionMismatch { current } => ScimError::PreconditionFailed(format!(
                "If-Match does not match the current version W/\"{current}\""
            )),
            StoreError::UnknownMember(id) => {
                ScimError::InvalidValue(format!("member '{id}' does not exist"))
            }
            StoreError::Conflict => ScimError::Unavailable("write conflict; retry".into()),
            // The cause was logged by the store; clients learn to retry.
            StoreError::Unavailable(_) => {
                ScimError::Unavailable("the store cannot be reached for now; retry".into())
            }
            StoreError::Backend(detail) => ScimError::Internal(detail),
        }
    }
}
