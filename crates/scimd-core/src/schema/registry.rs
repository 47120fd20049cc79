use std::sync::Arc;

use scimd_filter::AttrPath;

use super::{AttrType, Attribute, Mutability, ResourceType, Returned, Schema, Uniqueness};

const COMMON_JSON: &str = include_str!("../../schemas/common.json");

/// The built-in schema documents, in the order `/Schemas` lists them.
const BUILTIN_SCHEMAS: &[(&str, &str)] = &[
    ("user.json", include_str!("../../schemas/user.json")),
    (
        "enterprise_user.json",
        include_str!("../../schemas/enterprise_user.json"),
    ),
    ("group.json", include_str!("../../schemas/group.json")),
    (
        "service_provider_config_schema.json",
        include_str!("../../schemas/service_provider_config_schema.json"),
    ),
    (
        "resource_type_schema.json",
        include_str!("../../schemas/resource_type_schema.json"),
    ),
    (
        "schema_schema.json",
        include_str!("../../schemas/schema_schema.json"),
    ),
    (
        "fido_device.json",
        include_str!("../../schemas/fido_device.json"),
    ),
    (
        "fido2_device.json",
        include_str!("../../schemas/fido2_device.json"),
    ),
];
const BUILTIN_RESOURCE_TYPES: &[(&str, &str)] = &[
    (
        "resource_types.json",
        include_str!("../../schemas/resource_types.json"),
    ),
    (
        "resource_types_fido.json",
        include_str!("../../schemas/resource_types_fido.json"),
    ),
];

/// What a configuration document is, from its `schemas` (or its shape).
fn is_resource_type_document(value: &serde_json::Value) -> bool {
    const RT: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
    let one = |v: &serde_json::Value| {
        v.get("schemas")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|s| {
                s.iter()
                    .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(RT)))
            })
            || (v.get("endpoint").is_some() && v.get("attributes").is_none())
    };
    match value {
        serde_json::Value::Array(items) => items.first().is_some_and(one),
        other => one(other),
    }
}

/// A schema or resource type document could not be loaded. Names the source.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {problem}")]
pub struct SchemaLoadError {
    pub source_name: String,
    pub problem: String,
}

fn load_error(source_name: &str, problem: impl Into<String>) -> SchemaLoadError {
    SchemaLoadError {
        source_name: source_name.to_string(),
        problem: problem.into(),
    }
}

/// Where an attribute lives in a resource document.
#[derive(Debug, Clone, Copy)]
pub enum AttrScope<'a> {
    /// `id`, `externalId`, `meta` (RFC 7643 section 3.1).
    Common,
    /// The resource type's core schema: a top-level key.
    Core,
    /// An extension: nested under the extension's URN key.
    Extension(&'a Schema),
}

/// An attribute path resolved against a resource type's schemas.
#[derive(Debug, Clone, Copy)]
pub struct AttrRef<'a> {
    pub scope: AttrScope<'a>,
    pub attr: &'a Attribute,
    pub sub: Option<&'a Attribute>,
}

impl<'a> AttrRef<'a> {
    /// The attribute the path ends at.
    pub fn leaf(&self) -> &'a Attribute {
        self.sub.unwrap_or(self.attr)
    }

    /// The key under which values of this attribute are indexed:
    /// lower-case `name[.sub]`, prefixed by the lower-case extension URN and `:`.
    pub fn key(&self) -> String {
        let mut key = String::new();
        if let AttrScope::Extension(schema) = self.scope {
            key.push_str(&schema.id.to_ascii_lowercase());
            key.push(':');
        }
        key.push_str(&self.attr.name.to_ascii_lowercase());
        if let Some(sub) = self.sub {
            key.push('.');
            key.push_str(&sub.name.to_ascii_lowercase());
        }
        key
    }

    /// True when some value along the path is multi-valued.
    pub fn is_multi_valued(&self) -> bool {
        self.attr.multi_valued || self.sub.is_some_and(|s| s.multi_valued)
    }

    /// Canonical display form, e.g. `name.familyName`.
    pub fn display(&self) -> String {
        let mut out = String::new();
        if let AttrScope::Extension(schema) = self.scope {
            out.push_str(&schema.id);
            out.push(':');
        }
        out.push_str(&self.attr.name);
        if let Some(sub) = self.sub {
            out.push('.');
            out.push_str(&sub.name);
        }
        out
    }
}

/// What an attribute path names: an attribute, or a whole extension.
#[derive(Debug, Clone, Copy)]
pub enum Resolved<'a> {
    Attr(AttrRef<'a>),
    Extension(&'a Schema),
}

/// A resource type with its schemas resolved: what every request on an
/// endpoint works with.
#[derive(Debug)]
pub struct ResourceTypeDef {
    pub doc: ResourceType,
    pub core: Arc<Schema>,
    pub extensions: Vec<(Arc<Schema>, bool)>,
    pub common: Arc<Schema>,
}

impl ResourceTypeDef {
    /// The resource type name, e.g. `User`.
    pub fn name(&self) -> &str {
        &self.doc.name
    }

    /// The endpoint without its leading slash, e.g. `Users`.
    pub fn endpoint(&self) -> &str {
        self.doc.endpoint.trim_start_matches('/')
    }

    /// The extension schema whose URN is `urn` (case-insensitive).
    pub fn extension(&self, urn: &str) -> Option<&Schema> {
        self.extensions
            .iter()
            .map(|(s, _)| s.as_ref())
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// True when this type keeps members in the membership table (it has a
    /// multi-valued complex `members` attribute with a `value`).
    pub fn has_members(&self) -> bool {
        self.core.attribute("members").is_some_and(|a| {
            a.multi_valued && a.typ == AttrType::Complex && a.sub("value").is_some()
        })
    }

    /// True when a POST or PUT body's top-level `key` is ignored: a
    /// read-only attribute (`id`, `meta`, a user's `groups`), which the
    /// server sets (RFC 7643 section 7: "SHALL be ignored").
    pub fn ignores_on_write(&self, key: &str) -> bool {
        self.common
            .attribute(key)
            .or_else(|| self.core.attribute(key))
            .is_some_and(|a| a.mutability == Mutability::ReadOnly)
    }

    /// True when this type shows the groups it belongs to (a read-only
    /// multi-valued `groups` attribute computed from memberships).
    pub fn has_computed_groups(&self) -> bool {
        self.core.attribute("groups").is_some_and(|a| {
            a.multi_valued && a.mutability == Mutability::ReadOnly && a.typ == AttrType::Complex
        })
    }

    /// Resolves `path` against the common attributes, the core schema and the
    /// extensions. Names are case-insensitive.
    pub fn resolve(&self, path: &AttrPath) -> Result<Resolved<'_>, String> {
        let (scope, schema) = match &path.urn {
            None => {
                if let Some(attr) = self.common.attribute(&path.name) {
                    return finish(AttrScope::Common, attr, path);
                }
                (AttrScope::Core, self.core.as_ref())
            }
            Some(urn) if urn.eq_ignore_ascii_case(&self.core.id) => {
                if let Some(attr) = self.common.attribute(&path.name) {
                    return finish(AttrScope::Common, attr, path);
                }
                (AttrScope::Core, self.core.as_ref())
            }
            Some(urn) => match self.extension(urn) {
                Some(ext) => (AttrScope::Extension(ext), ext),
                None => {
                    let whole = format!("{urn}:{}", path.name);
                    if path.sub.is_none() {
                        if let Some(ext) = self.extension(&whole) {
                            return Ok(Resolved::Extension(ext));
                        }
                        if whole.eq_ignore_ascii_case(&self.core.id) {
                            return Err(format!(
                                "'{whole}' names the core schema, not an attribute"
                            ));
                        }
                    }
                    return Err(format!(
                        "unknown schema '{urn}' for resource type {}",
                        self.name()
                    ));
                }
            },
        };
        let attr = schema
            .attribute(&path.name)
            .ok_or_else(|| format!("unknown attribute '{}' in {}", path.name, schema.id))?;
        finish(scope, attr, path)
    }
}

fn finish<'a>(
    scope: AttrScope<'a>,
    attr: &'a Attribute,
    path: &AttrPath,
) -> Result<Resolved<'a>, String> {
    let sub = match &path.sub {
        None => None,
        Some(sub_name) => {
            if attr.typ != AttrType::Complex {
                return Err(format!("'{}' has no sub-attributes", attr.name));
            }
            Some(
                attr.sub(sub_name)
                    .ok_or_else(|| format!("unknown attribute '{}.{sub_name}'", attr.name))?,
            )
        }
    };
    Ok(Resolved::Attr(AttrRef { scope, attr, sub }))
}

/// Every schema and resource type the server knows.
#[derive(Debug)]
pub struct Registry {
    schemas: Vec<Arc<Schema>>,
    resource_types: Vec<Arc<ResourceTypeDef>>,
    /// Each resource type's endpoint, lower-cased, without its `/`, in the
    /// order of `resource_types`: every request looks one up, and a scan of
    /// a handful of short names costs less than hashing a lower-cased copy.
    endpoints: Vec<String>,
}

impl Registry {
    /// The RFC 7643 User, EnterpriseUser and Group schemas with their resource
    /// types, plus the discovery meta-schemas.
    pub fn builtin() -> Result<Registry, SchemaLoadError> {
        Registry::from_documents(BUILTIN_SCHEMAS, BUILTIN_RESOURCE_TYPES)
    }

    /// The built-in documents plus an operator's: `documents` are named JSON
    /// texts, each a schema, an array of schemas, a resource type or an array
    /// of resource types (told apart by their `schemas` URN). A resource type
    /// with the endpoint of a built-in one extends it with its
    /// `schemaExtensions` (its core schema must be the same); others are new
    /// resource types.
    pub fn with_custom(documents: &[(String, String)]) -> Result<Registry, SchemaLoadError> {
        let mut schemas: Vec<(String, String)> = BUILTIN_SCHEMAS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let mut types: Vec<(String, String)> = BUILTIN_RESOURCE_TYPES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let mut custom_types = Vec::new();
        for (name, text) in documents {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| load_error(name, format!("not JSON: {e}")))?;
            if is_resource_type_document(&value) {
                custom_types.push((name.clone(), value));
                continue;
            }
            match value {
                serde_json::Value::Array(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        schemas.push((format!("{name} [{i}]"), item.to_string()));
                    }
                }
                other => schemas.push((name.clone(), other.to_string())),
            }
        }
        // Built-in types that a custom document extends get its extensions.
        let mut builtin: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
        for (name, text) in &types {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| load_error(name, e.to_string()))?;
            let list = match value {
                serde_json::Value::Array(items) => items,
                other => vec![other],
            };
            builtin.push((name.clone(), list));
        }
        let known: Vec<String> = schemas
            .iter()
            .filter_map(|(_, t)| serde_json::from_str::<serde_json::Value>(t).ok())
            .filter_map(|v| {
                v.get("id")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        let mut extra = Vec::new();
        for (name, value) in custom_types {
            let list = match value {
                serde_json::Value::Array(items) => items,
                other => vec![other],
            };
            for doc in list {
                let parsed: ResourceType = serde_json::from_value(doc.clone())
                    .map_err(|e| load_error(&name, format!("not a resource type: {e}")))?;
                let endpoint = parsed.endpoint.trim_start_matches('/');
                let existing = builtin
                    .iter_mut()
                    .flat_map(|(_, l)| l.iter_mut())
                    .find(|b| {
                        b.get("endpoint")
                            .and_then(serde_json::Value::as_str)
                            .is_some_and(|e| {
                                e.trim_start_matches('/').eq_ignore_ascii_case(endpoint)
                            })
                    });
                // Checked here so that the error names this file, not the
                // built-in document the extension is merged into.
                for ext in &parsed.schema_extensions {
                    if !known.iter().any(|k| k.eq_ignore_ascii_case(&ext.schema)) {
                        return Err(load_error(
                            &name,
                            format!(
                                "resource type {} uses unknown extension '{}'",
                                parsed.name, ext.schema
                            ),
                        ));
                    }
                }
                match existing {
                    Some(base) => {
                        let same_core = base
                            .get("schema")
                            .and_then(serde_json::Value::as_str)
                            .is_some_and(|s| s.eq_ignore_ascii_case(&parsed.schema));
                        if !same_core {
                            return Err(load_error(
                                &name,
                                format!(
                                    "resource type {} extends the built-in endpoint {} but names \
                                     another core schema '{}'",
                                    parsed.name, parsed.endpoint, parsed.schema
                                ),
                            ));
                        }
                        let list = base.as_object_mut().map(|o| {
                            o.entry("schemaExtensions")
                                .or_insert_with(|| serde_json::json!([]))
                        });
                        if let Some(serde_json::Value::Array(exts)) = list {
                            for ext in &parsed.schema_extensions {
                                // A copy of the built-in type names its
                                // extensions again: once is enough.
                                let present = exts.iter().any(|e| {
                                    e.get("schema")
                                        .and_then(serde_json::Value::as_str)
                                        .is_some_and(|s| s.eq_ignore_ascii_case(&ext.schema))
                                });
                                if present {
                                    continue;
                                }
                                exts.push(
                                    serde_json::to_value(ext)
                                        .map_err(|e| load_error(&name, e.to_string()))?,
                                );
                            }
                        }
                    }
                    None => extra.push((name.clone(), doc)),
                }
            }
        }
        types = builtin
            .into_iter()
            .map(|(n, l)| (n, serde_json::Value::Array(l).to_string()))
            .collect();
        types.extend(extra.into_iter().map(|(n, d)| (n, d.to_string())));
        let schema_refs: Vec<(&str, &str)> = schemas
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let type_refs: Vec<(&str, &str)> = types
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        Registry::from_documents(&schema_refs, &type_refs)
    }

    /// Builds a registry from named JSON documents: schema documents, and
    /// resource type documents (one object or an array of them). The name is
    /// used in error messages.
    pub fn from_documents(
        schemas: &[(&str, &str)],
        resource_types: &[(&str, &str)],
    ) -> Result<Registry, SchemaLoadError> {
        let common: Schema = serde_json::from_str(COMMON_JSON)
            .map_err(|e| load_error("common.json", e.to_string()))?;
        let common = Arc::new(common);
        let mut loaded: Vec<Arc<Schema>> = Vec::new();
        for (name, text) in schemas {
            let mut schema: Schema =
                serde_json::from_str(text).map_err(|e| load_error(name, e.to_string()))?;
            never_return_write_only(&mut schema.attributes);
            check_schema(&schema).map_err(|p| load_error(name, p))?;
            if loaded.iter().any(|s| s.id.eq_ignore_ascii_case(&schema.id)) {
                return Err(load_error(
                    name,
                    format!("schema '{}' defined twice", schema.id),
                ));
            }
            loaded.push(Arc::new(schema));
        }
        let find = |id: &str| {
            loaded
                .iter()
                .find(|s| s.id.eq_ignore_ascii_case(id))
                .cloned()
        };
        let mut types = Vec::new();
        let mut endpoints: Vec<String> = Vec::new();
        for (name, text) in resource_types {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| load_error(name, e.to_string()))?;
            let docs: Vec<ResourceType> = match value {
                serde_json::Value::Array(_) => serde_json::from_value(value),
                _ => serde_json::from_value(value).map(|one| vec![one]),
            }
            .map_err(|e| load_error(name, e.to_string()))?;
            for doc in docs {
                let core = find(&doc.schema).ok_or_else(|| {
                    load_error(
                        name,
                        format!(
                            "resource type {} uses unknown schema '{}'",
                            doc.name, doc.schema
                        ),
                    )
                })?;
                let mut extensions: Vec<(Arc<Schema>, bool)> = Vec::new();
                for ext in &doc.schema_extensions {
                    let named_twice = extensions
                        .iter()
                        .any(|(s, _)| s.id.eq_ignore_ascii_case(&ext.schema));
                    if named_twice || core.id.eq_ignore_ascii_case(&ext.schema) {
                        return Err(load_error(
                            name,
                            format!(
                                "resource type {} names '{}' twice (as its schema or an extension)",
                                doc.name, ext.schema
                            ),
                        ));
                    }
                    let schema = find(&ext.schema).ok_or_else(|| {
                        load_error(
                            name,
                            format!(
                                "resource type {} uses unknown extension '{}'",
                                doc.name, ext.schema
                            ),
                        )
                    })?;
                    extensions.push((schema, ext.required));
                }
                let endpoint = doc.endpoint.trim_start_matches('/').to_ascii_lowercase();
                if endpoint.is_empty() || endpoint.contains('/') {
                    return Err(load_error(
                        name,
                        format!(
                            "resource type {} has an invalid endpoint '{}'",
                            doc.name, doc.endpoint
                        ),
                    ));
                }
                if RESERVED_ENDPOINTS
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&endpoint))
                {
                    return Err(load_error(
                        name,
                        format!(
                            "resource type {} takes the endpoint '{}', which the server keeps \
                             for itself",
                            doc.name, doc.endpoint
                        ),
                    ));
                }
                let taken = types.iter().any(|t: &Arc<ResourceTypeDef>| {
                    t.name().eq_ignore_ascii_case(&doc.name)
                        || t.doc.id.eq_ignore_ascii_case(&doc.id)
                });
                if taken {
                    return Err(load_error(
                        name,
                        format!(
                            "a resource type named '{}' (or with id '{}') is defined twice",
                            doc.name, doc.id
                        ),
                    ));
                }
                if endpoints.contains(&endpoint) {
                    return Err(load_error(
                        name,
                        format!("endpoint '{}' defined twice", doc.endpoint),
                    ));
                }
                endpoints.push(endpoint);
                types.push(Arc::new(ResourceTypeDef {
                    doc,
                    core,
                    extensions,
                    common: common.clone(),
                }));
            }
        }
        // The owner type as it is named (the store compares names exactly).
        let names: Vec<String> = types.iter().map(|t| t.name().to_string()).collect();
        for rt in &mut types {
            let real = rt.doc.owner.as_ref().and_then(|owner| {
                names
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(&owner.resource_type))
            });
            if let (Some(real), Some(def)) = (real, Arc::get_mut(rt))
                && let Some(owner) = def.doc.owner.as_mut()
            {
                owner.resource_type.clone_from(real);
            }
        }
        for rt in &types {
            let Some(owner) = &rt.doc.owner else {
                continue;
            };
            let problem = match rt.core.attribute(&owner.attribute) {
                Some(a) if a.typ == AttrType::String && !a.multi_valued => None,
                Some(_) => Some(format!(
                    "owner attribute '{}' must be a single string",
                    owner.attribute
                )),
                None => Some(format!(
                    "owner attribute '{}' is not in {}",
                    owner.attribute, rt.core.id
                )),
            }
            .or_else(|| {
                (!types
                    .iter()
                    .any(|t| t.name().eq_ignore_ascii_case(&owner.resource_type)))
                .then(|| {
                    format!(
                        "owner resource type '{}' does not exist",
                        owner.resource_type
                    )
                })
            });
            if let Some(problem) = problem {
                return Err(load_error(&format!("resource type {}", rt.name()), problem));
            }
        }
        Ok(Registry {
            schemas: loaded,
            resource_types: types,
            endpoints,
        })
    }

    /// Every loaded schema document.
    pub fn schemas(&self) -> &[Arc<Schema>] {
        &self.schemas
    }

    /// The schema with URN `id` (case-insensitive).
    pub fn schema(&self, id: &str) -> Option<&Arc<Schema>> {
        self.schemas.iter().find(|s| s.id.eq_ignore_ascii_case(id))
    }

    /// Every resource type.
    pub fn resource_types(&self) -> &[Arc<ResourceTypeDef>] {
        &self.resource_types
    }

    /// Resource types a group member may be, by name: those that show
    /// computed `groups`, and those that have members themselves (nested
    /// groups).
    pub fn member_types(&self) -> Vec<String> {
        self.resource_types
            .iter()
            .filter(|rt| rt.has_computed_groups() || rt.has_members())
            .map(|rt| rt.name().to_string())
            .collect()
    }

    /// The resource type served at `/{endpoint}` (case-insensitive).
    pub fn by_endpoint(&self, endpoint: &str) -> Option<&Arc<ResourceTypeDef>> {
        let i = self
            .endpoints
            .iter()
            .position(|e| e.eq_ignore_ascii_case(endpoint))?;
        self.resource_types.get(i)
    }

    /// The resource type named `name` (`User`).
    pub fn by_name(&self, name: &str) -> Option<&Arc<ResourceTypeDef>> {
        self.resource_types
            .iter()
            .find(|rt| rt.name().eq_ignore_ascii_case(name))
    }
}

/// The first path segments under `/scim/v2` that the server serves itself
/// (discovery, root search, Bulk, `/Me`): no resource type may take one as
/// its endpoint, which the fixed route would hide (`scimd-http` checks its
/// route table against this list).
pub const RESERVED_ENDPOINTS: [&str; 6] = [
    "ServiceProviderConfig",
    "ResourceTypes",
    "Schemas",
    ".search",
    "Bulk",
    "Me",
];

/// A write-only value is never returned (RFC 7643 section 7), whatever its
/// `returned` says: a schema that leaves `returned` out (it defaults to
/// `default`) must not serve the secret it takes.
fn never_return_write_only(attributes: &mut [Attribute]) {
    for attr in attributes {
        if attr.mutability == Mutability::WriteOnly {
            attr.returned = Returned::Never;
        }
        never_return_write_only(&mut attr.sub_attributes);
    }
}

/// Structural rules RFC 7643 puts on schema documents.
fn check_schema(schema: &Schema) -> Result<(), String> {
    if !schema.id.to_ascii_lowercase().starts_with("urn:") {
        return Err(format!("schema id '{}' is not a URN", schema.id));
    }
    let mut seen = Vec::new();
    for attr in &schema.attributes {
        check_attribute(attr, false)?;
        let lower = attr.name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(format!("attribute '{}' defined twice", attr.name));
        }
        seen.push(lower);
    }
    Ok(())
}

fn check_attribute(attr: &Attribute, nested: bool) -> Result<(), String> {
    let valid_name = attr.name == "$ref"
        || (attr
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && attr
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if !valid_name {
        return Err(format!("invalid attribute name '{}'", attr.name));
    }
    let enforced = !nested
        && !attr.multi_valued
        && matches!(
            attr.typ,
            AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime
        );
    if attr.uniqueness != Uniqueness::None && !enforced {
        return Err(format!(
            "attribute '{}' asks for uniqueness, which scimd enforces on single-valued \
             top-level string, reference, binary and dateTime attributes only",
            attr.name
        ));
    }
    let mut seen = Vec::new();
    for sub in &attr.sub_attributes {
        let lower = sub.name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(format!(
                "sub-attribute '{}.{}' defined twice",
                attr.name, sub.name
            ));
        }
        seen.push(lower);
    }
    match attr.typ {
        AttrType::Complex if nested => Err(format!(
            "complex attribute '{}' cannot nest inside another",
            attr.name
        )),
        AttrType::Complex if attr.sub_attributes.is_empty() => Err(format!(
            "complex attribute '{}' has no subAttributes",
            attr.name
        )),
        AttrType::Complex => attr
            .sub_attributes
            .iter()
            .try_for_each(|s| check_attribute(s, true)),
        _ if !attr.sub_attributes.is_empty() => Err(format!(
            "attribute '{}' is not complex but has subAttributes",
            attr.name
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Registry;

    #[test]
    fn endpoints_are_found_in_any_case() {
        let registry = Registry::builtin().unwrap();
        for (endpoint, name) in [("Users", "User"), ("users", "User"), ("GROUPS", "Group")] {
            let found = registry.by_endpoint(endpoint).map(|rt| rt.name());
            assert_eq!(found, Some(name), "{endpoint}");
        }
        for endpoint in ["User", "Users2", "", "Me"] {
            assert!(registry.by_endpoint(endpoint).is_none(), "{endpoint}");
        }
    }

    #[test]
    fn an_endpoint_is_taken_once_in_any_case() {
        let widget = |id: &str, endpoint: &str| {
            format!(
                r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id":"{id}","name":"{id}","endpoint":"{endpoint}",
                "schema":"urn:ietf:params:scim:schemas:core:2.0:Group"}}"#
            )
        };
        let one = Registry::with_custom(&[("a".into(), widget("A", "/Widgets"))]).unwrap();
        assert_eq!(one.by_endpoint("widgets").map(|rt| rt.name()), Some("A"));
        let two = Registry::with_custom(&[
            ("a".into(), widget("A", "/Widgets")),
            ("b".into(), widget("B", "/WIDGETS")),
        ]);
        let error = two.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("endpoint '/WIDGETS' defined twice"),
            "{error}"
        );
    }
}
