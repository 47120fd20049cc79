//! What the store indexes for each resource, and the in-memory evaluation of
//! conditions over the same entries. Because SQL filters and the in-memory
//! evaluator both work on entries produced here, they agree by construction.

use scimd_filter::CompareOp;
use serde_json::{Map, Value};

use crate::query::Cond;
use crate::schema::{AttrType, Attribute, Mutability, ResourceTypeDef, Schema, Uniqueness};
use crate::store::{IndexEntry, UniqueValue};
use crate::value::{Comparable, comparable, datetime_key, fold, parse_datetime};

/// The server-managed facts of a resource that are filterable.
#[derive(Debug, Clone)]
pub struct MetaFacts<'a> {
    pub id: &'a str,
    pub created: &'a str,
    pub modified: &'a str,
    pub version: i64,
}

/// Server-managed facts every store keeps as columns of the resource row
/// (`id`, `rtype`, `created`, `modified`, `version`) instead of index
/// entries: they would be six of a typical user's fifteen entries, written
/// on every create and rewritten on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaColumn {
    Id,
    ResourceType,
    Created,
    LastModified,
    Version,
    /// `meta` itself: every resource has it.
    Meta,
}

impl MetaColumn {
    /// The column behind an index key, if the key is one of them.
    pub fn of(key: &str) -> Option<MetaColumn> {
        Some(match key {
            "id" => MetaColumn::Id,
            "meta.resourcetype" => MetaColumn::ResourceType,
            "meta.created" => MetaColumn::Created,
            "meta.lastmodified" => MetaColumn::LastModified,
            "meta.version" => MetaColumn::Version,
            "meta" => MetaColumn::Meta,
            _ => return None,
        })
    }
}

/// The entries the server-managed facts would have, for in-memory
/// evaluation with the same semantics as the stores' column conditions.
pub fn meta_entries(rt: &ResourceTypeDef, meta: &MetaFacts<'_>) -> Vec<IndexEntry> {
    let mut out = Vec::with_capacity(6);
    let text = |key: &str, t: String| IndexEntry {
        key: key.to_string(),
        elem: 0,
        primary: false,
        text: Some(t),
        number: None,
    };
    out.push(text("id", meta.id.to_string()));
    out.push(text("meta.resourcetype", rt.name().to_string()));
    out.push(IndexEntry {
        key: "meta".into(),
        elem: 0,
        primary: false,
        text: None,
        number: None,
    });
    for (key, at) in [
        ("meta.created", meta.created),
        ("meta.lastmodified", meta.modified),
    ] {
        if let Some(t) = parse_datetime(at) {
            out.push(text(key, datetime_key(t)));
        }
    }
    out.push(text("meta.version", format!("W/\"{}\"", meta.version)));
    out
}

/// Index entries of a resource document (`data` as stored, without
/// members). The server-managed facts are not among them ([`MetaColumn`]).
pub fn index_entries(rt: &ResourceTypeDef, data: &Map<String, Value>) -> Vec<IndexEntry> {
    let mut out = Vec::with_capacity(16);
    for (name, value) in data {
        if let Some(attr) = rt.common.attribute(name) {
            walk(&mut out, "", attr, value);
        } else if let Some(attr) = rt.core.attribute(name) {
            walk(&mut out, "", attr, value);
        } else if let (Some(ext), Value::Object(inner)) = (rt.extension(name), value) {
            let prefix = format!("{}:", ext.id.to_ascii_lowercase());
            for (sub_name, sub_value) in inner {
                if let Some(attr) = ext.attribute(sub_name) {
                    walk(&mut out, &prefix, attr, sub_value);
                }
            }
        }
    }
    out
}

fn walk(out: &mut Vec<IndexEntry>, prefix: &str, attr: &Attribute, value: &Value) {
    if attr.mutability == Mutability::WriteOnly {
        return;
    }
    let key = format!("{prefix}{}", attr.name.to_ascii_lowercase());
    match value {
        Value::Array(items) if attr.multi_valued => {
            for (i, item) in items.iter().enumerate() {
                let elem = u32::try_from(i).unwrap_or(u32::MAX);
                walk_one(out, &key, attr, item, elem);
            }
        }
        other => walk_one(out, &key, attr, other, 0),
    }
}

fn walk_one(out: &mut Vec<IndexEntry>, key: &str, attr: &Attribute, value: &Value, elem: u32) {
    if attr.typ == AttrType::Complex {
        let Value::Object(map) = value else { return };
        let primary = map.get("primary") == Some(&Value::Bool(true));
        out.push(IndexEntry {
            key: key.to_string(),
            elem,
            primary,
            text: None,
            number: None,
        });
        for (name, v) in map {
            let Some(sub) = attr.sub(name) else { continue };
            if sub.mutability == Mutability::WriteOnly {
                continue;
            }
            let sub_key = format!("{key}.{}", sub.name.to_ascii_lowercase());
            let values: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            for one in values {
                if let Some(c) = comparable(sub, one) {
                    out.push(entry(&sub_key, elem, primary, c));
                }
            }
        }
    } else if let Some(c) = comparable(attr, value) {
        out.push(entry(key, elem, false, c));
    }
}

fn entry(key: &str, elem: u32, primary: bool, c: Comparable) -> IndexEntry {
    let (text, number) = match c {
        Comparable::Text(t) => (Some(t), None),
        Comparable::Number(n) => (None, Some(n)),
    };
    IndexEntry {
        key: key.to_string(),
        elem,
        primary,
        text,
        number,
    }
}

/// The values of `data` that must be unique: singular top-level attributes
/// (core or extension) whose uniqueness is `server` or `global`.
pub fn unique_values(rt: &ResourceTypeDef, data: &Map<String, Value>) -> Vec<UniqueValue> {
    let mut out = Vec::new();
    let mut check = |prefix: &str, schema: &Schema, map: &Map<String, Value>| {
        for attr in &schema.attributes {
            if attr.uniqueness == Uniqueness::None
                || attr.multi_valued
                || attr.typ == AttrType::Complex
            {
                continue;
            }
            if let Some(Value::String(s)) = map.get(&attr.name) {
                out.push(UniqueValue {
                    key: format!("{prefix}{}", attr.name.to_ascii_lowercase()),
                    value: fold(attr, s),
                    global: attr.uniqueness == Uniqueness::Global,
                });
            }
        }
    };
    check("", &rt.core, data);
    for (ext, _) in &rt.extensions {
        if let Some(Value::Object(inner)) = data.get(&ext.id) {
            check(&format!("{}:", ext.id.to_ascii_lowercase()), ext, inner);
        }
    }
    out
}

/// Evaluates `cond` over a resource's index entries, with the same semantics
/// as the SQL translation.
pub fn eval(cond: &Cond, entries: &[IndexEntry]) -> bool {
    match cond {
        Cond::And(a, b) => eval(a, entries) && eval(b, entries),
        Cond::Or(a, b) => eval(a, entries) || eval(b, entries),
        Cond::Not(inner) => !eval(inner, entries),
        Cond::Present { key } => entries.iter().any(|e| &e.key == key),
        Cond::Compare { key, op, value } => entries
            .iter()
            .any(|e| &e.key == key && compare(e, *op, value)),
        // Memberships are not index entries; resolution only makes these
        // for list queries, which stores run.
        Cond::HasMember(_) | Cond::MemberOf(_) => false,
        Cond::Element { parent, cond } => {
            let prefix = format!("{parent}.");
            entries.iter().filter(|e| &e.key == parent).any(|element| {
                let scoped: Vec<IndexEntry> = entries
                    .iter()
                    .filter(|e| {
                        e.elem == element.elem && (e.key.starts_with(&prefix) || &e.key == parent)
                    })
                    .cloned()
                    .collect();
                eval(cond, &scoped)
            })
        }
    }
}

fn compare(entry: &IndexEntry, op: CompareOp, value: &Comparable) -> bool {
    match (value, &entry.text, entry.number) {
        (Comparable::Text(want), Some(have), _) => {
            let (have, want) = (have.as_str(), want.as_str());
            match op {
                CompareOp::Eq => have == want,
                CompareOp::Ne => have != want,
                CompareOp::Co => have.contains(want),
                CompareOp::Sw => have.starts_with(want),
                CompareOp::Ew => have.ends_with(want),
                CompareOp::Gt => have > want,
                CompareOp::Ge => have >= want,
                CompareOp::Lt => have < want,
                CompareOp::Le => have <= want,
            }
        }
        (Comparable::Number(want), _, Some(have)) => match op {
            CompareOp::Eq => have == *want,
            CompareOp::Ne => have != *want,
            CompareOp::Gt => have > *want,
            CompareOp::Ge => have >= *want,
            CompareOp::Lt => have < *want,
            CompareOp::Le => have <= *want,
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
        },
        _ => false,
    }
}
