//! PATCH and its three strategies: membership changes alone touch only
//! membership rows (`apply_member_changes`, [`ResourceService::change_members`]);
//! other changes are one read-modify-write in the store (`patch_in_store`),
//! or, for groups, owned types and PATCHes of many operations, a read then
//! a compare-and-swap (`patch_by_swap`, the general path).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::crud::hash_secrets;
use super::{
    MAX_WRITE_ATTEMPTS, Precondition, Resource, ResourceService, check_precondition, not_found, now,
};
use crate::changelog::{Change, Op, changed_paths, membership_detail};
use crate::error::{ScimError, ScimResult};
use crate::projection::Projection;
use crate::resource::{
    Missing, ResourceInput, carry_over, check_required, needs_hashing, parse_input,
};
use crate::schema::ResourceTypeDef;
use crate::store::{Member, MemberChange, Modification, ResourceWrite, StoreError, StoredResource};

/// What a PATCH changes, told once from its operations
/// ([`ResourceService::plan_patch`]).
#[derive(Debug)]
pub enum PatchPlan {
    /// Members added or removed and nothing else: membership rows only.
    Members(Vec<MemberChange>),
    /// Anything else: the document.
    Document,
}

impl ResourceService {
    /// What `ops` change; refuses a PATCH over the size limit, and members
    /// that are not valid.
    pub fn plan_patch(
        &self,
        rt: &ResourceTypeDef,
        ops: &[crate::patch::PatchOp],
    ) -> ScimResult<PatchPlan> {
        self.check_patch_size(ops)?;
        if rt.has_members()
            && let Some(changes) = crate::patch::member_changes(rt, ops)?
        {
            return Ok(PatchPlan::Members(changes));
        }
        Ok(PatchPlan::Document)
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
        let plan = self.plan_patch(rt, ops)?;
        self.patch_as_planned(rt, id, ops, plan, precondition, projection)
            .await
    }

    /// [`Self::patch`] of operations whose `plan` is already known.
    pub async fn patch_as_planned(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        ops: &[crate::patch::PatchOp],
        plan: PatchPlan,
        precondition: Precondition,
        projection: &Projection,
    ) -> ScimResult<Resource> {
        if let PatchPlan::Members(changes) = plan {
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
        self.patch_by_swap(rt, id, ops, precondition, projection, heavy)
            .await
    }

    /// The general path of PATCH: a read, the operations applied (off the
    /// async workers when `heavy`), then a compare-and-swap, retried when
    /// the version moved and no `If-Match` was given.
    async fn patch_by_swap(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        ops: &[crate::patch::PatchOp],
        precondition: Precondition,
        projection: &Projection,
        heavy: bool,
    ) -> ScimResult<Resource> {
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
            let mut paths = changed_paths(&old.data, &input.data);
            if members_changed(old.members.as_deref(), members.as_deref()) {
                paths.push("members".into());
            }
            let write = self
                .prepare(rt, Op::Patch, id, input.data, members, &now)
                .with_paths(paths);
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

    /// PATCH as one read-modify-write of the store
    /// ([`ResourceStore::modify`](crate::store::ResourceStore::modify)):
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
        // Taken here: the closure may run on the store's own thread (SQLite's
        // writer), where no request's actor is set.
        let actor = crate::changelog::Actor::current();
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
            let paths = changed_paths(&old.data, &input.data);
            let mut write = ResourceWrite {
                member_types: member_types.clone(),
                ..ResourceWrite::derived(&def, Op::Patch, &old.id, input.data, &now())
            }
            .with_paths(paths);
            write.change.actor = actor.clone();
            Ok(Some(write))
        });
        self.modify_in_store(rt, id, change, projection).await
    }

    /// PATCH when the answer shows nothing (204): the new version only.
    /// A membership change then costs its write and nothing more.
    pub async fn patch_for_version(
        &self,
        rt: &Arc<ResourceTypeDef>,
        id: &str,
        ops: &[crate::patch::PatchOp],
        plan: PatchPlan,
        precondition: Precondition,
    ) -> ScimResult<i64> {
        if let PatchPlan::Members(changes) = plan {
            return self
                .apply_member_changes(rt, id, changes, precondition)
                .await;
        }
        let id_only = Projection::parse(rt, Some("id"), None)?;
        Ok(self
            .patch_as_planned(rt, id, ops, PatchPlan::Document, precondition, &id_only)
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
        let change = Change::new(Op::Patch, rt.name(), id, &now())
            .with_paths(vec!["members".into()])
            .with_detail(membership_detail(&changes));
        Ok(self
            .store
            .change_members(rt.name(), id, changes, types, expected_version, change)
            .await?)
    }
}

/// Whether a PATCH's members (`new`, `None`: not a type with members)
/// differ from the stored ones, by member id.
fn members_changed(old: Option<&[Member]>, new: Option<&[Member]>) -> bool {
    let ids = |m: Option<&[Member]>| -> Vec<String> {
        let mut ids: Vec<String> = m
            .unwrap_or_default()
            .iter()
            .map(|m| m.value.clone())
            .collect();
        ids.sort_unstable();
        ids
    };
    new.is_some() && ids(old) != ids(new)
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
