//! Owner rules (`x-scimd-owner`): the owner a write names must exist, and a
//! delete removes what its resource owns.

use serde_json::{Map, Value};

use super::ResourceService;
use crate::error::{ScimError, ScimResult};
use crate::query::Cond;
use crate::schema::ResourceTypeDef;

impl ResourceService {
    /// When `rt` has an owner attribute, it must name an existing resource
    /// of the owner type.
    pub(super) async fn check_owner(
        &self,
        rt: &ResourceTypeDef,
        data: &Map<String, Value>,
    ) -> ScimResult<()> {
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
    pub(super) fn owned_by(
        &self,
        rt: &ResourceTypeDef,
        id: &str,
    ) -> ScimResult<Vec<(String, Cond)>> {
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
}
