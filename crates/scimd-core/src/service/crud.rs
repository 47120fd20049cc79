//! Create (POST, `POST /Me`), read (GET), replace (PUT) and delete, and the
//! write steps PATCH shares with them: secrets hashed, the write prepared,
//! a replacement written by compare-and-swap and rendered.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{
    MAX_WRITE_ATTEMPTS, Precondition, Resource, ResourceService, check_precondition, not_found,
    now, serialised,
};
use crate::changelog::{Change, Op, changed_paths, created_paths};
use crate::error::{ScimError, ScimResult};
use crate::projection::Projection;
use crate::rendering::Rendered;
use crate::resource::{
    Missing, ResourceInput, carry_over, check_required, hash_write_only, needs_hashing,
    parse_input, render,
};
use crate::schema::ResourceTypeDef;
use crate::store::{Member, Modification, ModifyError, ResourceWrite, StoreError, StoredResource};

impl ResourceService {
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
        let mut paths = created_paths(&input.data);
        if input.members.as_ref().is_some_and(|m| !m.is_empty()) {
            paths.push("members".into());
        }
        let write = self
            .prepare(rt, Op::Create, id, input.data, input.members, &now)
            .with_paths(paths);
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
    /// [`RenderCache`](crate::rendering::RenderCache): without reading the
    /// store while nothing was committed since its rendering was read, and
    /// otherwise when the row and groups read again are those it was made
    /// from.
    pub async fn get_rendered(&self, rt: &Arc<ResourceTypeDef>, id: &str) -> ScimResult<Rendered> {
        let all = Projection::all();
        if !(rt.has_computed_groups() && !rt.has_members() && all.shows_core(rt, "groups")) {
            return Ok(serialised(self.get(rt, id, &all).await?, &all));
        }
        // Taken before the read: a commit after it moves the stamp. Not
        // taken when no rendering is kept (`render_cache = 0`).
        let stamp = match self.renderings.keeps() {
            true => self.store.commit_stamp()?,
            false => None,
        };
        if let Some(kept) = stamp.and_then(|s| self.renderings.current(rt.name(), id, s)) {
            return Ok(kept);
        }
        let (row, groups) = self
            .store
            .get_with_groups(rt.name(), id)
            .await?
            .ok_or_else(|| not_found(rt, id))?;
        if let Some(kept) = self.renderings.get(&row, &groups, stamp) {
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
        self.renderings.put(row, groups, &rendered, stamp);
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
        if !rt.has_members() && rt.doc.owner.is_none() {
            return self.replace_in_store(rt, id, input, precondition).await;
        }
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let old = self
                .store
                .get(rt.name(), id, false)
                .await?
                .ok_or_else(|| not_found(rt, id))?;
            let data = replacement(rt, &input, &old, precondition)?;
            self.check_owner(rt, &data).await?;
            let members = rt
                .has_members()
                .then(|| input.members.clone().unwrap_or_default());
            let now = now();
            let mut paths = changed_paths(&old.data, &data);
            if members.is_some() {
                // Replaced wholesale; whether they differ is not read.
                paths.push("members".into());
            }
            let write = self
                .prepare(rt, Op::Replace, id, data, members, &now)
                .with_paths(paths);
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

    /// PUT as one read-modify-write of the store, as a PATCH
    /// (`patch_in_store`): concurrent replaces of one resource queue instead
    /// of retrying. For types without members to write or an owner to
    /// check (no I/O between the read and the write).
    async fn replace_in_store(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        input: ResourceInput,
        precondition: Precondition,
    ) -> ScimResult<Resource> {
        let def = rt.clone();
        let member_types = self.member_types.clone();
        // Taken here: the closure may run on the store's own thread.
        let actor = crate::changelog::Actor::current();
        let change: Modification = Box::new(move |old: &StoredResource| {
            let data = replacement(&def, &input, old, precondition)?;
            let paths = changed_paths(&old.data, &data);
            let mut write = ResourceWrite {
                member_types: member_types.clone(),
                ..ResourceWrite::derived(&def, Op::Replace, &old.id, data, &now())
            }
            .with_paths(paths);
            write.change.actor = actor.clone();
            Ok(Some(write))
        });
        let resource = self
            .modify_in_store(rt, id, change, &Projection::all())
            .await?;
        resource.ok_or_else(|| ScimError::Internal("a replace declined to write".into()))
    }

    /// Runs `change` as one read-modify-write of the store and renders the
    /// result (with the computed `groups` read with the write when they
    /// will show). `None`: `change` declined.
    pub(super) async fn modify_in_store(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        change: Modification,
        projection: &Projection,
    ) -> ScimResult<Option<Resource>> {
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
        let change = Change::new(Op::Delete, rt.name(), id, &now());
        match self
            .store
            .delete(rt.name(), id, expected, dependents, change)
            .await
        {
            Err(StoreError::NotFound) => Err(not_found(rt, id)),
            other => Ok(other?),
        }
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
    pub(super) async fn replace_stored(
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

    pub(super) fn prepare(
        &self,
        rt: &ResourceTypeDef,
        op: Op,
        id: &str,
        data: Map<String, Value>,
        members: Option<Vec<Member>>,
        modified: &str,
    ) -> ResourceWrite {
        ResourceWrite {
            members,
            member_types: self.member_types.clone(),
            ..ResourceWrite::derived(rt, op, id, data, modified)
        }
    }
}

/// Argon2 is deliberately slow; it runs off the async workers.
pub(super) async fn hash_secrets(
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

/// What a PUT of `input` writes over `old`: the input, with what a replace
/// keeps carried over (read-only and immutable attributes, `Missing::Kept`),
/// once `old` satisfies the precondition.
fn replacement(
    rt: &ResourceTypeDef,
    input: &ResourceInput,
    old: &StoredResource,
    precondition: Precondition,
) -> ScimResult<Map<String, Value>> {
    check_precondition(precondition, old.version)?;
    let mut data = input.data.clone();
    carry_over(rt, &old.data, &mut data, Missing::Kept)?;
    Ok(data)
}
