//! PATCH (RFC 7644 section 3.5.2) on a resource document, including the
//! request shapes real clients send (capitalised ops, path-less values with
//! dotted keys, member removal by value, create-on-absent value paths).
//! Operations apply to a copy; the result is validated like a PUT body, so a
//! request is all-or-nothing.

use std::collections::{HashMap, HashSet};

use scimd_filter::{AttrPath, Filter, PatchPath};
use serde_json::{Map, Value};

use crate::error::{ScimError, ScimResult};
use crate::index::{eval, index_entries};
use crate::query::resolve_filter;
use crate::resource::is_own_schemas;
use crate::schema::{AttrScope, AttrType, Attribute, Mutability, Resolved, ResourceTypeDef};
use crate::value::{check_message_schema, get_ci, names_once};

/// The PatchOp message URN.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// add, remove or replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One parsed operation.
#[derive(Debug, Clone)]
pub struct PatchOp {
    pub kind: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Parses a PatchOp request body.
pub fn parse_request(body: &Value) -> ScimResult<Vec<PatchOp>> {
    let Value::Object(map) = body else {
        return Err(ScimError::InvalidSyntax(
            "a PatchOp request must be a JSON object".into(),
        ));
    };
    check_message_schema(map, PATCH_OP)?;
    let Some(Value::Array(ops)) = get_ci(map, "Operations") else {
        return Err(ScimError::InvalidSyntax(
            "'Operations' must be an array".into(),
        ));
    };
    if ops.is_empty() {
        return Err(ScimError::InvalidSyntax("'Operations' is empty".into()));
    }
    ops.iter().map(parse_op).collect()
}

fn parse_op(op: &Value) -> ScimResult<PatchOp> {
    let Value::Object(map) = op else {
        return Err(ScimError::InvalidSyntax(
            "each operation must be an object".into(),
        ));
    };
    let kind = match get_ci(map, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => OpKind::Add,
        Some("remove") => OpKind::Remove,
        Some("replace") => OpKind::Replace,
        _ => {
            return Err(ScimError::InvalidSyntax(
                "'op' must be add, remove or replace".into(),
            ));
        }
    };
    let path = match get_ci(map, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(
            scimd_filter::parse_patch_path(p)
                .map_err(|e| ScimError::InvalidPath(format!("invalid path: {e}")))?,
        ),
        Some(_) => return Err(ScimError::InvalidPath("'path' must be a string".into())),
    };
    let value = get_ci(map, "value").cloned();
    if kind == OpKind::Remove && path.is_none() {
        return Err(ScimError::NoTarget("remove needs a path".into()));
    }
    if kind != OpKind::Remove && value.is_none() {
        return Err(ScimError::InvalidValue(
            "add and replace need a value".into(),
        ));
    }
    Ok(PatchOp { kind, path, value })
}

/// The resource a PATCH changes: its type and its (read-only) id.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub rt: &'a ResourceTypeDef,
    pub id: &'a str,
}

/// Applies `ops` to `doc` (the stored attributes plus `members` as an array,
/// in input shape).
pub fn apply(target: Target<'_>, doc: &mut Map<String, Value>, ops: &[PatchOp]) -> ScimResult<()> {
    for op in ops {
        match &op.path {
            Some(path) => apply_path(target, doc, op.kind, path, op.value.clone())?,
            None => apply_pathless(
                target,
                doc,
                op.kind,
                op.value.clone().unwrap_or(Value::Null),
            )?,
        }
    }
    Ok(())
}

/// A path-less add/replace: the value's keys are attributes, extension URNs
/// or (Entra) dotted / URN-qualified paths. A one-element array holding the
/// object is accepted too (Curity).
fn apply_pathless(
    target: Target<'_>,
    doc: &mut Map<String, Value>,
    kind: OpKind,
    value: Value,
) -> ScimResult<()> {
    let rt = target.rt;
    let value = match value {
        Value::Array(mut items) if items.len() == 1 => items.remove(0),
        other => other,
    };
    let Value::Object(map) = value else {
        return Err(ScimError::InvalidValue(
            "a path-less add or replace needs an object value".into(),
        ));
    };
    names_once(&map)?;
    for (key, v) in map {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = rt.extension(&key) {
            let inner = match v {
                Value::Object(inner) => inner,
                // Replacing an extension with null unassigns it.
                Value::Null if kind == OpKind::Replace => {
                    doc.remove(&ext.id);
                    continue;
                }
                _ => {
                    return Err(ScimError::InvalidValue(format!(
                        "'{}' needs an object value",
                        ext.id
                    )));
                }
            };
            for (name, iv) in inner {
                if is_own_schemas(ext, &name, &iv)? {
                    continue;
                }
                let path = PatchPath {
                    attr: AttrPath {
                        urn: Some(ext.id.clone()),
                        name,
                        sub: None,
                    },
                    filter: None,
                    sub: None,
                };
                apply_path(target, doc, kind, &path, Some(iv))?;
            }
            continue;
        }
        let path = scimd_filter::parse_patch_path(&key)
            .map_err(|e| ScimError::InvalidPath(format!("invalid attribute '{key}': {e}")))?;
        apply_path(target, doc, kind, &path, Some(v))?;
    }
    Ok(())
}

fn apply_path(
    target: Target<'_>,
    doc: &mut Map<String, Value>,
    kind: OpKind,
    path: &PatchPath,
    value: Option<Value>,
) -> ScimResult<()> {
    let rt = target.rt;
    let attr_ref = match rt.resolve(&path.attr).map_err(ScimError::InvalidPath)? {
        Resolved::Attr(a) => a,
        Resolved::Extension(ext) => {
            if kind == OpKind::Remove {
                doc.remove(&ext.id);
                return Ok(());
            }
            let path_less = Map::from_iter([(ext.id.clone(), value.unwrap_or(Value::Null))]);
            return apply_pathless(target, doc, kind, Value::Object(path_less));
        }
    };
    let attr = attr_ref.attr;
    if attr.mutability == Mutability::ReadOnly
        || attr_ref
            .sub
            .is_some_and(|s| s.mutability == Mutability::ReadOnly)
    {
        // Okta sends the read-only id inside replace values; equal values are ignored.
        if matches!(attr_ref.scope, AttrScope::Common)
            && attr.name == "id"
            && kind != OpKind::Remove
            && value.as_ref().and_then(Value::as_str) == Some(target.id)
        {
            return Ok(());
        }
        return Err(ScimError::Mutability(format!(
            "'{}' is read-only",
            attr_ref.display()
        )));
    }
    // RFC 7644 section 3.5.2.2: removing a required attribute (or a required
    // sub-attribute) is a "mutability" error. Removing some elements of a
    // multi-valued one by filter is not; the required check after the
    // operations catches one left empty.
    if kind == OpKind::Remove {
        let removed = match attr_ref.sub {
            Some(sub) => Some(sub),
            None => path.sub.as_ref().and_then(|s| attr.sub(s)),
        };
        let required = match removed {
            Some(sub) => sub.required,
            None => path.filter.is_none() && attr.required,
        };
        if required {
            let shown = match (removed, attr_ref.sub) {
                (Some(sub), None) => format!("{}.{}", attr_ref.display(), sub.name),
                _ => attr_ref.display(),
            };
            return Err(ScimError::Mutability(format!(
                "'{shown}' is required: it cannot be removed"
            )));
        }
    }
    // Filters of an extension's attribute resolve (and index) under its URN.
    let urn = match attr_ref.scope {
        AttrScope::Extension(ext) => Some(ext.id.clone()),
        _ => None,
    };
    let container: &mut Map<String, Value> = match attr_ref.scope {
        AttrScope::Extension(ext) => {
            let entry = doc
                .entry(ext.id.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            match entry {
                Value::Object(m) => m,
                _ => return Err(ScimError::Internal("extension is not an object".into())),
            }
        }
        _ => doc,
    };
    let name = attr.name.clone();
    let sub_name = attr_ref.sub.map(|s| s.name.clone()).or_else(|| {
        path.sub
            .as_ref()
            .and_then(|s| attr.sub(s))
            .map(|s| s.name.clone())
    });
    if path.sub.is_some() && sub_name.is_none() {
        return Err(ScimError::InvalidPath(format!(
            "unknown sub-attribute in '{}'",
            path.attr
        )));
    }
    match &path.filter {
        None => apply_plain(container, attr, &name, sub_name.as_deref(), kind, value),
        Some(filter) => {
            if !attr.multi_valued || attr.typ != AttrType::Complex {
                return Err(ScimError::InvalidPath(format!(
                    "'{name}' is not multi-valued and complex"
                )));
            }
            let target = Filtered {
                attr,
                urn: urn.as_deref(),
                name: &name,
                filter,
                sub: sub_name.as_deref(),
            };
            apply_filtered(rt, container, &target, kind, value)
        }
    }
}

fn as_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// What identifies a multi-valued element when values are added or removed:
/// its `value` when it has one, else the whole element but for `primary`
/// (a flag the PATCH itself may change as it goes). Two elements match
/// when their keys are equal, so that adding or removing n values among m
/// takes n + m steps, not n × m (a 1 MiB PATCH holds 100,000 values).
fn element_key(element: &Value) -> String {
    let mut key = String::new();
    match element.get("value") {
        Some(v) => {
            key.push('v');
            canonical_text(v, &mut key);
        }
        None => {
            key.push('e');
            match element {
                Value::Object(m) => {
                    let identity: Map<String, Value> = m
                        .iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case("primary"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    canonical_text(&Value::Object(identity), &mut key);
                }
                other => canonical_text(other, &mut key),
            }
        }
    }
    key
}

/// `v` as JSON with object keys in order, so that equal values give equal
/// text whatever order their keys came in.
fn canonical_text(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(inner) = m.get(k) {
                    canonical_text(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_text(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `key` as the schema spells the sub-attribute of `attr` it names (names
/// are case-insensitive), or as given when it names none.
fn canonical_key(attr: &Attribute, key: &str) -> String {
    attr.sub(key)
        .map_or_else(|| key.to_string(), |sub| sub.name.clone())
}

/// An element's keys as the schema spells them.
fn canonical_keys(attr: &Attribute, element: Value) -> Value {
    match element {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (canonical_key(attr, &k), v))
                .collect(),
        ),
        other => other,
    }
}

fn apply_plain(
    container: &mut Map<String, Value>,
    attr: &Attribute,
    name: &str,
    sub: Option<&str>,
    kind: OpKind,
    value: Option<Value>,
) -> ScimResult<()> {
    match (sub, kind) {
        (Some(sub), OpKind::Remove) => {
            match container.get_mut(name) {
                Some(Value::Object(m)) => {
                    m.remove(sub);
                }
                Some(Value::Array(items)) => {
                    for item in items.iter_mut() {
                        if let Value::Object(m) = item {
                            m.remove(sub);
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        }
        (Some(sub), _) => {
            let v = value.unwrap_or(Value::Null);
            match container
                .entry(name.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
            {
                Value::Object(m) => {
                    m.insert(sub.to_string(), v);
                }
                Value::Array(items) => {
                    for item in items.iter_mut() {
                        if let Value::Object(m) = item {
                            m.insert(sub.to_string(), v.clone());
                        }
                    }
                }
                other => *other = Value::Object(Map::from_iter([(sub.to_string(), v)])),
            }
            Ok(())
        }
        (None, OpKind::Remove) => {
            match (value, attr.multi_valued) {
                // Remove only the listed values (Entra, authentik).
                (Some(v), true) if !v.is_null() => {
                    let targets: HashSet<String> = as_items(v)
                        .into_iter()
                        .map(|t| element_key(&canonical_keys(attr, t)))
                        .collect();
                    if let Some(Value::Array(items)) = container.get_mut(name) {
                        items.retain(|item| !targets.contains(&element_key(item)));
                    }
                }
                _ => {
                    container.remove(name);
                }
            }
            Ok(())
        }
        (None, OpKind::Add) if attr.multi_valued => {
            let new_items = as_items(value.unwrap_or(Value::Null));
            let entry = container
                .entry(name.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(Vec::new());
            }
            if let Value::Array(items) = entry {
                add_elements(
                    items,
                    new_items.into_iter().map(|i| canonical_keys(attr, i)),
                );
            }
            Ok(())
        }
        (None, OpKind::Add | OpKind::Replace)
            if attr.typ == AttrType::Complex && !attr.multi_valued =>
        {
            // Sub-attributes are merged into the complex value.
            match (container.get_mut(name), value.unwrap_or(Value::Null)) {
                (Some(Value::Object(existing)), Value::Object(new)) => {
                    for (k, v) in new {
                        existing.insert(canonical_key(attr, &k), v);
                    }
                }
                (_, v) => {
                    container.insert(name.to_string(), v);
                }
            }
            Ok(())
        }
        (None, _) => {
            container.insert(name.to_string(), value.unwrap_or(Value::Null));
            Ok(())
        }
    }
}

/// Adds `new` elements to `items`: an element whose value is there already
/// is not added again, but when it comes as `primary` it becomes the
/// primary one; a new primary takes `primary` from the others.
fn add_elements(items: &mut Vec<Value>, new: impl Iterator<Item = Value>) {
    let mut present: HashMap<String, usize> = HashMap::new();
    for (at, item) in items.iter().enumerate() {
        present.entry(element_key(item)).or_insert(at);
    }
    for item in new {
        let primary = is_primary(&item);
        if primary {
            clear_primary(items);
        }
        let key = element_key(&item);
        match present.get(&key) {
            Some(&at) => {
                if primary && let Some(Value::Object(m)) = items.get_mut(at) {
                    m.insert("primary".into(), Value::Bool(true));
                }
            }
            None => {
                present.insert(key, items.len());
                items.push(item);
            }
        }
    }
}

fn is_primary(v: &Value) -> bool {
    let primary = v
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("primary")))
        .map(|(_, p)| p);
    matches!(primary, Some(Value::Bool(true)))
        || primary
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

fn clear_primary(items: &mut [Value]) {
    for item in items {
        if let Value::Object(m) = item
            && m.contains_key("primary")
        {
            m.insert("primary".into(), Value::Bool(false));
        }
    }
}

/// The target of a filtered path, `name[filter]` or `name[filter].sub`, of a
/// multi-valued complex attribute (in its extension's object when `urn` is
/// set).
struct Filtered<'a> {
    attr: &'a Attribute,
    urn: Option<&'a str>,
    name: &'a str,
    filter: &'a Filter,
    sub: Option<&'a str>,
}

impl Filtered<'_> {
    /// For each element, whether the filter selects it.
    fn matches(&self, rt: &ResourceTypeDef, items: &[Value]) -> ScimResult<Vec<bool>> {
        let path = AttrPath {
            urn: self.urn.map(str::to_string),
            name: self.name.to_string(),
            sub: None,
        };
        let cond = resolve_filter(
            rt,
            &Filter::ValuePath {
                path,
                filter: Box::new(self.filter.clone()),
            },
        )
        .map_err(|e| ScimError::InvalidPath(e.to_string()))?;
        Ok(items
            .iter()
            .map(|item| eval(&cond, &index_entries(rt, &self.alone(item))))
            .collect())
    }

    /// A document holding only `item` (coerced first, e.g. "True" strings),
    /// for the filter to be evaluated on its index entries.
    fn alone(&self, item: &Value) -> Map<String, Value> {
        let coerced = crate::value::coerce_single(self.attr, item.clone(), self.name)
            .ok()
            .flatten()
            .unwrap_or(Value::Null);
        let one = Map::from_iter([(self.name.to_string(), Value::Array(vec![coerced]))]);
        match self.urn {
            Some(urn) => Map::from_iter([(urn.to_string(), Value::Object(one))]),
            None => one,
        }
    }

    /// `remove`: the selected elements go, or only their `sub`.
    fn remove(&self, items: &mut Vec<Value>, matches: &[bool]) {
        let mut hits = matches.iter().copied();
        items.retain(|item| {
            let hit = hits.next().unwrap_or(false);
            !hit || (self.sub.is_some() && item.is_object())
        });
        if let Some(sub) = self.sub {
            for (item, hit) in items.iter_mut().zip(matches) {
                if *hit && let Value::Object(m) = item {
                    m.remove(sub);
                }
            }
        }
    }

    /// `add` or `replace` that selected nothing creates the element (Entra):
    /// the filter's equality terms plus the value.
    fn created(&self, value: Value) -> ScimResult<Value> {
        let mut element = Map::new();
        collect_equalities(self.filter, &mut element);
        match (self.sub, value) {
            (Some(sub), v) => {
                element.insert(sub.to_string(), v);
            }
            (None, Value::Object(m)) => element.extend(m),
            (None, _) => return Err(self.needs_object()),
        }
        Ok(canonical_keys(self.attr, Value::Object(element)))
    }

    /// `add` or `replace` of the selected elements (or of their `sub`); a new
    /// primary takes `primary` from every other element.
    fn set(
        &self,
        items: &mut [Value],
        matches: &[bool],
        kind: OpKind,
        value: Value,
    ) -> ScimResult<()> {
        if self.sub.is_none() && !value.is_object() {
            return Err(self.needs_object());
        }
        let sets_primary = match self.sub {
            Some(sub) => {
                sub.eq_ignore_ascii_case("primary")
                    && (value == Value::Bool(true)
                        || value
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case("true")))
            }
            None => is_primary(&value),
        };
        if sets_primary {
            clear_primary(items);
        }
        let value = match self.sub {
            Some(_) => value,
            None => canonical_keys(self.attr, value),
        };
        for (item, _) in items.iter_mut().zip(matches).filter(|(_, hit)| **hit) {
            match (self.sub, item) {
                (Some(sub), Value::Object(m)) => {
                    m.insert(canonical_key(self.attr, sub), value.clone());
                }
                (None, Value::Object(m)) => {
                    if kind == OpKind::Replace {
                        m.clear();
                    }
                    if let Value::Object(new) = &value {
                        m.extend(new.clone());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn needs_object(&self) -> ScimError {
        ScimError::InvalidValue(format!("'{}[…]' needs an object value", self.name))
    }
}

fn apply_filtered(
    rt: &ResourceTypeDef,
    container: &mut Map<String, Value>,
    target: &Filtered<'_>,
    kind: OpKind,
    value: Option<Value>,
) -> ScimResult<()> {
    // Taken out and put back: a failed operation fails the whole PATCH, so
    // nothing is lost on the error paths.
    let mut items = match container.remove(target.name) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let matches = target.matches(rt, &items)?;
    let value = value.unwrap_or(Value::Null);
    match kind {
        OpKind::Remove => target.remove(&mut items, &matches),
        _ if !matches.contains(&true) => {
            let created = target.created(value)?;
            if is_primary(&created) {
                clear_primary(&mut items);
            }
            items.push(created);
        }
        _ => target.set(&mut items, &matches, kind, value)?,
    }
    if !items.is_empty() {
        container.insert(target.name.to_string(), Value::Array(items));
    }
    Ok(())
}

fn collect_equalities(filter: &Filter, out: &mut Map<String, Value>) {
    match filter {
        Filter::Compare {
            path,
            op: scimd_filter::CompareOp::Eq,
            value,
        } if path.sub.is_none() => {
            out.insert(path.name.clone(), value.clone());
        }
        Filter::And(a, b) => {
            collect_equalities(a, out);
            collect_equalities(b, out);
        }
        _ => {}
    }
}

/// When every operation only adds or removes group members, the changes as
/// membership rows, so the group is neither read nor rewritten (large groups).
/// `None` when some operation needs the general path.
pub fn member_changes(
    rt: &ResourceTypeDef,
    ops: &[PatchOp],
) -> ScimResult<Option<Vec<crate::store::MemberChange>>> {
    use crate::store::MemberChange;
    let Some(members_attr) = rt.core.attribute("members") else {
        return Ok(None);
    };
    let mut changes = Vec::with_capacity(ops.len());
    for op in ops {
        let Some(path) = &op.path else {
            return Ok(None);
        };
        if path.attr.urn.is_some()
            || path.attr.sub.is_some()
            || path.sub.is_some()
            || !path.attr.name.eq_ignore_ascii_case("members")
        {
            return Ok(None);
        }
        let listed = |value: &Option<Value>| -> ScimResult<Vec<crate::store::Member>> {
            let coerced = crate::value::coerce(
                members_attr,
                value.clone().unwrap_or(Value::Null),
                "members",
            )?;
            crate::resource::parse_members(coerced)
        };
        match (&path.filter, op.kind) {
            (None, OpKind::Add) => changes.push(MemberChange::Add(listed(&op.value)?)),
            (None, OpKind::Replace) => {
                changes.push(MemberChange::RemoveAll);
                changes.push(MemberChange::Add(listed(&op.value)?));
            }
            (None, OpKind::Remove) => match &op.value {
                None | Some(Value::Null) => changes.push(MemberChange::RemoveAll),
                Some(_) => changes.push(MemberChange::Remove(
                    listed(&op.value)?.into_iter().map(|m| m.value).collect(),
                )),
            },
            (
                Some(Filter::Compare {
                    path: p,
                    op: scimd_filter::CompareOp::Eq,
                    value: Value::String(id),
                }),
                OpKind::Remove,
            ) if p.urn.is_none() && p.sub.is_none() && p.name.eq_ignore_ascii_case("value") => {
                changes.push(MemberChange::Remove(vec![id.clone()]));
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(changes))
}
