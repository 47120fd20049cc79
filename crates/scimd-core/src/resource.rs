//! Client documents parsed into what the store keeps, and stored resources
//! rendered back into SCIM documents.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::{ScimError, ScimResult};
use crate::schema::{AttrType, Attribute, Mutability, ResourceTypeDef, Schema};
use crate::store::{GroupMembership, Member, StoredResource};
use crate::value::{coerce, get_ci, names_once, same};

/// A client's resource document, parsed and checked against the schemas.
#[derive(Debug, Clone, Default)]
pub struct ResourceInput {
    /// Attributes with canonical names; extensions nested under their URN.
    /// No `id`, `meta`, `members` or read-only values.
    pub data: Map<String, Value>,
    /// `members`, for types that keep memberships (`None` when absent).
    pub members: Option<Vec<Member>>,
}

/// Parses a POST/PUT body for `rt`: canonical attribute names, types coerced,
/// read-only values dropped, unknown attributes refused.
pub fn parse_input(rt: &ResourceTypeDef, body: Value) -> ScimResult<ResourceInput> {
    let Value::Object(body) = body else {
        return Err(ScimError::InvalidSyntax(
            "the request body must be a JSON object".into(),
        ));
    };
    check_schemas_list(rt, &body)?;
    names_once(&body)?;
    let mut data = Map::new();
    let mut members = None;
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") || rt.ignores_on_write(&key) {
            continue;
        }
        if let Some(attr) = rt.common.attribute(&key) {
            if let Some(v) = coerce(attr, value, &attr.name)? {
                data.insert(attr.name.clone(), v);
            }
        } else if let Some(attr) = rt.core.attribute(&key) {
            let coerced = coerce(attr, value, &attr.name)?;
            if rt.has_members() && attr.name == "members" {
                members = Some(parse_members(coerced)?);
                continue;
            }
            if let Some(v) = coerced {
                data.insert(attr.name.clone(), v);
            }
        } else if let Some(ext) = rt.extension(&key) {
            let inner = parse_extension(ext, value)?;
            if !inner.is_empty() {
                data.insert(ext.id.clone(), Value::Object(inner));
            }
        } else if is_empty_value(&value) {
            // Unknown keys without a value are tolerated (e.g. a foreign
            // schema URN with an empty object, `"roles": []`-style noise).
            continue;
        } else {
            return Err(ScimError::InvalidValue(format!(
                "unknown attribute '{key}' for resource type {}",
                rt.name()
            )));
        }
    }
    Ok(ResourceInput { data, members })
}

fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn check_schemas_list(rt: &ResourceTypeDef, body: &Map<String, Value>) -> ScimResult<()> {
    let Some(schemas) = get_ci(body, "schemas") else {
        return Ok(());
    };
    let Value::Array(list) = schemas else {
        return Err(ScimError::InvalidSyntax(
            "'schemas' must be an array of schema URNs".into(),
        ));
    };
    let mut has_core = false;
    for urn in list {
        let Value::String(urn) = urn else {
            return Err(ScimError::InvalidSyntax(
                "'schemas' must be an array of schema URNs".into(),
            ));
        };
        has_core |= urn.eq_ignore_ascii_case(&rt.core.id);
    }
    if !list.is_empty() && !has_core {
        return Err(ScimError::InvalidValue(format!(
            "'schemas' must include {} for a {}",
            rt.core.id,
            rt.name()
        )));
    }
    Ok(())
}

fn parse_extension(ext: &Schema, value: Value) -> ScimResult<Map<String, Value>> {
    let Value::Object(map) = value else {
        if is_empty_value(&value) {
            return Ok(Map::new());
        }
        return Err(ScimError::InvalidValue(format!(
            "'{}' must be an object",
            ext.id
        )));
    };
    names_once(&map)?;
    let mut out = Map::new();
    for (key, value) in map {
        let Some(attr) = ext.attribute(&key) else {
            if value.is_null() || is_own_schemas(ext, &key, &value)? {
                continue;
            }
            return Err(ScimError::InvalidValue(format!(
                "unknown attribute '{}:{key}'",
                ext.id
            )));
        };
        if attr.mutability == Mutability::ReadOnly {
            continue;
        }
        let where_ = format!("{}:{}", ext.id, attr.name);
        if let Some(v) = coerce(attr, value, &where_)? {
            out.insert(attr.name.clone(), v);
        }
    }
    Ok(out)
}

/// True for a `"schemas"` member inside the object of extension `ext` that
/// names only `ext` itself. An extension has no `schemas` attribute, but
/// clients that serialise the extension as a stand-alone object (scim2-models,
/// for a PATCH whose path is the extension URN) repeat its URN there; it says
/// nothing the enclosing key does not, so it is ignored like the top-level
/// `schemas` (RFC 7644 section 3.5.2: the service provider's `schemas` is
/// assumed). A `schemas` naming any other URN contradicts its place and is
/// refused.
pub(crate) fn is_own_schemas(ext: &Schema, key: &str, value: &Value) -> ScimResult<bool> {
    if !key.eq_ignore_ascii_case("schemas") || ext.attribute(key).is_some() {
        return Ok(false);
    }
    let names_only_ext = match value {
        Value::Array(list) => list
            .iter()
            .all(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(&ext.id))),
        _ => false,
    };
    if names_only_ext {
        Ok(true)
    } else {
        Err(ScimError::InvalidValue(format!(
            "'schemas' inside '{}' may name only that extension",
            ext.id
        )))
    }
}

/// Members from a coerced `members` value. Duplicates collapse to one.
pub fn parse_members(value: Option<Value>) -> ScimResult<Vec<Member>> {
    let Some(Value::Array(items)) = value else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Member> = Vec::with_capacity(items.len());
    // Seen ids: a group may be given 10,000 members at once.
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        let Value::Object(map) = item else {
            return Err(ScimError::InvalidValue(
                "each member must be an object".into(),
            ));
        };
        let Some(Value::String(id)) = map.get("value") else {
            return Err(ScimError::InvalidValue(
                "each member needs a 'value' with the member's id".into(),
            ));
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        let typ = match map.get("type") {
            Some(Value::String(t)) => Some(t.clone()),
            _ => None,
        };
        let display = match map.get("display") {
            Some(Value::String(d)) => Some(d.clone()),
            _ => None,
        };
        out.push(Member {
            value: id.clone(),
            typ,
            display,
        });
    }
    Ok(out)
}

/// RFC 7643 `required`: required attributes (core, and of extensions that are
/// required or present) must have a value. Read-only ones are the server's.
pub fn check_required(rt: &ResourceTypeDef, input: &ResourceInput) -> ScimResult<()> {
    check_required_in(&rt.core, &input.data, "", rt, input)?;
    for (ext, required) in &rt.extensions {
        match input.data.get(&ext.id) {
            Some(Value::Object(inner)) => {
                check_required_in(ext, inner, &format!("{}:", ext.id), rt, input)?
            }
            _ if *required => {
                return Err(ScimError::InvalidValue(format!(
                    "the extension {} is required",
                    ext.id
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_required_in(
    schema: &Schema,
    map: &Map<String, Value>,
    prefix: &str,
    rt: &ResourceTypeDef,
    input: &ResourceInput,
) -> ScimResult<()> {
    for attr in &schema.attributes {
        if attr.mutability == Mutability::ReadOnly {
            continue;
        }
        let value = if prefix.is_empty() && rt.has_members() && attr.name == "members" {
            // members live outside the document; they are checked on parse.
            if attr.required && input.members.as_ref().is_none_or(|m| m.is_empty()) {
                return Err(ScimError::InvalidValue(format!(
                    "'{}' is required",
                    attr.name
                )));
            }
            continue;
        } else {
            map.get(&attr.name)
        };
        // An empty string does not satisfy a required attribute: it would
        // be a userName no filter can find and no one can sign in with.
        let blank = matches!(value, Some(Value::String(s)) if s.trim().is_empty());
        match value {
            None if attr.required => {
                return Err(ScimError::InvalidValue(format!(
                    "'{prefix}{}' is required",
                    attr.name
                )));
            }
            Some(_) if attr.required && blank => {
                return Err(ScimError::InvalidValue(format!(
                    "'{prefix}{}' is required and cannot be empty",
                    attr.name
                )));
            }
            Some(v) if attr.typ == AttrType::Complex => {
                let items: Vec<&Value> = match v {
                    Value::Array(items) => items.iter().collect(),
                    one => vec![one],
                };
                for item in items {
                    if let Value::Object(obj) = item {
                        for sub in &attr.sub_attributes {
                            if sub.required
                                && sub.mutability != Mutability::ReadOnly
                                && !obj.contains_key(&sub.name)
                            {
                                return Err(ScimError::InvalidValue(format!(
                                    "'{prefix}{}.{}' is required",
                                    attr.name, sub.name
                                )));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What an immutable value that is set but missing from the new document
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A PUT left it out: it is kept (RFC 7644 3.5.1).
    Kept,
    /// A PATCH operation removed it, which immutability forbids.
    Removed,
}

/// Immutable and write-only rules for a replacement (RFC 7644 3.5.1):
/// an immutable value already set must be sent unchanged (the same value,
/// compared as [`same`] does); omitted write-only values (passwords) are
/// kept, since clients cannot read them back to resend them.
pub fn carry_over(
    rt: &ResourceTypeDef,
    old: &Map<String, Value>,
    new: &mut Map<String, Value>,
    missing: Missing,
) -> ScimResult<()> {
    carry_over_in(&rt.common.attributes, old, new, "", missing)?;
    carry_over_in(&rt.core.attributes, old, new, "", missing)?;
    for (ext, _) in &rt.extensions {
        let Some(Value::Object(old_inner)) = old.get(&ext.id) else {
            continue;
        };
        let mut inner = match new.remove(&ext.id) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        carry_over_in(
            &ext.attributes,
            old_inner,
            &mut inner,
            &format!("{}:", ext.id),
            missing,
        )?;
        if !inner.is_empty() {
            new.insert(ext.id.clone(), Value::Object(inner));
        }
    }
    Ok(())
}

fn carry_over_in(
    attrs: &[Attribute],
    old: &Map<String, Value>,
    new: &mut Map<String, Value>,
    prefix: &str,
    missing: Missing,
) -> ScimResult<()> {
    for attr in attrs {
        let Some(old_value) = old.get(&attr.name) else {
            continue;
        };
        match attr.mutability {
            Mutability::Immutable => match new.get(&attr.name) {
                None if missing == Missing::Kept => {
                    new.insert(attr.name.clone(), old_value.clone());
                }
                None => {
                    return Err(ScimError::Mutability(format!(
                        "'{prefix}{}' is immutable and cannot be removed",
                        attr.name
                    )));
                }
                Some(v) if !same(attr, v, old_value) => {
                    return Err(ScimError::Mutability(format!(
                        "'{prefix}{}' is immutable and already set",
                        attr.name
                    )));
                }
                // The same value, perhaps spelled otherwise: the stored
                // spelling stays.
                Some(_) => {
                    new.insert(attr.name.clone(), old_value.clone());
                }
            },
            Mutability::WriteOnly if !new.contains_key(&attr.name) => {
                new.insert(attr.name.clone(), old_value.clone());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Replaces write-only string values with their argon2 hashes. Values that
/// are already hashes (carried over) are left alone.
pub fn hash_write_only(rt: &ResourceTypeDef, data: &mut Map<String, Value>) -> ScimResult<()> {
    for attr in hashed_attributes(rt) {
        if let Some(Value::String(secret)) = data.get_mut(&attr.name)
            && !is_hashed(secret)
        {
            *secret = crate::secret::hash(secret)?;
        }
    }
    Ok(())
}

/// Whether [`hash_write_only`] has a secret to hash in `data`.
pub fn needs_hashing(rt: &ResourceTypeDef, data: &Map<String, Value>) -> bool {
    hashed_attributes(rt)
        .any(|attr| matches!(data.get(&attr.name), Some(Value::String(s)) if !is_hashed(s)))
}

/// The write-only single strings (`password`), kept as hashes.
fn hashed_attributes(rt: &ResourceTypeDef) -> impl Iterator<Item = &Attribute> {
    rt.core.attributes.iter().filter(|attr| {
        attr.mutability == Mutability::WriteOnly
            && attr.typ == AttrType::String
            && !attr.multi_valued
    })
}

fn is_hashed(secret: &str) -> bool {
    secret.starts_with("$argon2")
}

/// The `schemas` list of a stored document: the core schema and every
/// extension that has a value.
pub fn schemas_of(rt: &ResourceTypeDef, data: &Map<String, Value>) -> Vec<Value> {
    let mut out = vec![Value::String(rt.core.id.clone())];
    for (ext, _) in &rt.extensions {
        if data.contains_key(&ext.id) {
            out.push(Value::String(ext.id.clone()));
        }
    }
    out
}

/// The `meta.version` / ETag form of a version number.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version of a representation: the resource's own version and, when it
/// shows computed `groups`, a digest of them (`W/"7-3f2a…"`). Memberships are
/// written through the groups, so a user's own version does not move when
/// they change; without the digest a conditional GET would answer 304 over
/// a changed `groups`. Writes compare the number only ([`tag_version`]):
/// `groups` is read-only, so a membership change cannot be lost by one.
pub fn version_tag(version: i64, groups: Option<&[GroupMembership]>) -> String {
    let Some(groups) = groups.filter(|g| !g.is_empty()) else {
        return etag(version);
    };
    let mut entries: Vec<(&str, Option<&str>, bool)> = groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.display.as_deref(), g.direct))
        .collect();
    entries.sort_unstable();
    let mut hasher = Sha256::new();
    for (id, display, direct) in entries {
        hasher.update(id.as_bytes());
        hasher.update([0, u8::from(display.is_some())]);
        hasher.update(display.unwrap_or("").as_bytes());
        hasher.update([0, u8::from(direct)]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("W/\"{version}-{:016x}\"", u64::from_be_bytes(first))
}

/// The opaque part of an entity tag (`W/"7-3f2a"` → `7-3f2a`), if it is
/// one of ours in form.
pub fn tag_opaque(tag: &str) -> Option<&str> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    // Unquoted tags are taken too: some clients send the bare version.
    let opaque = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    tag_version(opaque).map(|_| opaque)
}

/// The resource version an opaque tag names (`7-3f2a` → 7).
pub fn tag_version(opaque: &str) -> Option<i64> {
    opaque.split('-').next()?.parse().ok()
}

/// Renders a stored resource as a full SCIM document (before projection).
pub fn render(
    rt: &ResourceTypeDef,
    stored: &StoredResource,
    base_url: &str,
    groups: Option<&[GroupMembership]>,
) -> Map<String, Value> {
    let location = format!("{base_url}/{}/{}", rt.endpoint(), stored.id);
    let mut doc = stored.data.clone();
    doc.insert("schemas".into(), Value::Array(schemas_of(rt, &stored.data)));
    doc.insert("id".into(), Value::String(stored.id.clone()));
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": rt.name(),
            "created": stored.created,
            "lastModified": stored.modified,
            "location": location,
            "version": version_tag(stored.version, groups),
        }),
    );
    if let Some(members) = &stored.members {
        let list: Vec<Value> = members
            .iter()
            .map(|m| {
                let mut obj = Map::new();
                obj.insert("value".into(), Value::String(m.value.clone()));
                if let Some(typ) = &m.typ {
                    let endpoint = if typ == "Group" { "Groups" } else { "Users" };
                    obj.insert(
                        "$ref".into(),
                        Value::String(format!("{base_url}/{endpoint}/{}", m.value)),
                    );
                    obj.insert("type".into(), Value::String(typ.clone()));
                }
                if let Some(display) = &m.display {
                    obj.insert("display".into(), Value::String(display.clone()));
                }
                Value::Object(obj)
            })
            .collect();
        if !list.is_empty() {
            doc.insert("members".into(), Value::Array(list));
        }
    }
    if let Some(groups) = groups {
        let list: Vec<Value> = groups
            .iter()
            .map(|g| {
                let mut obj = Map::new();
                obj.insert("value".into(), Value::String(g.group_id.clone()));
                obj.insert(
                    "$ref".into(),
                    Value::String(format!("{base_url}/Groups/{}", g.group_id)),
                );
                if let Some(display) = &g.display {
                    obj.insert("display".into(), Value::String(display.clone()));
                }
                obj.insert(
                    "type".into(),
                    Value::String(if g.direct { "direct" } else { "indirect" }.into()),
                );
                Value::Object(obj)
            })
            .collect();
        if !list.is_empty() {
            doc.insert("groups".into(), Value::Array(list));
        }
    }
    doc
}
