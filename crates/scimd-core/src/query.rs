//! Filters resolved against a resource type's schemas into conditions over
//! index keys, and the query a store runs. Resolution is where every schema
//! rule is applied (unknown attribute, operator not valid for the type,
//! caseExact folding), so stores only translate [`Cond`] to SQL.

use scimd_filter::{AttrPath, CompareOp, Filter};
use serde_json::Value;

use crate::error::{ScimError, ScimResult};
use crate::schema::{
    AttrRef, AttrScope, AttrType, Mutability, Resolved, ResourceTypeDef, Returned,
};
use crate::value::{Comparable, datetime_key, fold, parse_datetime};

/// A filter condition over index entries (see [`crate::store::IndexEntry`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Some entry under `key` compares true with `value`.
    Compare {
        key: String,
        op: CompareOp,
        value: Comparable,
    },
    /// Some entry under `key` exists (present and non-empty).
    Present {
        key: String,
    },
    /// One element of the multi-valued attribute `parent` satisfies `cond`;
    /// the keys inside `cond` are full keys (`emails.type`).
    Element {
        parent: String,
        cond: Box<Cond>,
    },
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    /// The resource is a group with the member of this id (any member if
    /// `None`): `members.value eq`, `members[value eq]`, `members pr`.
    /// Memberships are rows of their own, not index entries, so this is
    /// only resolved for list queries, never evaluated in memory.
    HasMember(Option<String>),
    /// The resource belongs to the group of this id, directly or through
    /// nested groups (any group if `None`): `groups.value eq`, `groups pr`.
    MemberOf(Option<String>),
}

impl Cond {
    /// A condition no resource satisfies: every resource has `meta`.
    pub fn never() -> Cond {
        Cond::Not(Box::new(Cond::Present { key: "meta".into() }))
    }
}

/// Sort by the (primary-first) value of `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub key: String,
    /// The values are numbers (integer, decimal, boolean), not text.
    pub numeric: bool,
    pub descending: bool,
}

/// How a page is selected.
#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    /// RFC 7644 index paging: `start` is 1-based.
    Index { start: u64, count: u64 },
    /// RFC 9865 cursor paging in insertion order: resources after `after`.
    Cursor { after: Option<i64>, count: u64 },
}

/// A resolved list/search query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub resource_types: Vec<String>,
    pub filter: Option<Cond>,
    pub sort: Option<SortKey>,
    pub paging: Paging,
    pub with_members: bool,
}

/// How a filter is read.
#[derive(Clone, Copy)]
struct Mode {
    /// A path the type lacks matches nothing instead of being an error.
    lenient: bool,
    /// A list query: `members` and `groups` become membership conditions.
    /// (A PATCH value path on `members` matches the document's elements.)
    list: bool,
}

/// Resolves a parsed filter for `rt`, over its documents' index entries
/// (PATCH value paths, owned resources).
pub fn resolve_filter(rt: &ResourceTypeDef, filter: &Filter) -> ScimResult<Cond> {
    let mode = Mode {
        lenient: false,
        list: false,
    };
    resolve(rt, filter, None, mode)
}

/// Resolves the filter of a list query of `rt`. `lenient`: a path `rt` does
/// not have (another type's attribute, another schema's URN) is a term that
/// matches nothing rather than an error, one type's view of a filter over
/// several types.
pub fn resolve_list_filter(
    rt: &ResourceTypeDef,
    filter: &Filter,
    lenient: bool,
) -> ScimResult<Cond> {
    let mode = Mode {
        lenient,
        list: true,
    };
    resolve(rt, filter, None, mode)
}

/// Whether an attribute's values are never shown (write-only, or
/// `returned: never`, itself or its parent): filtering or sorting on it
/// would tell them one comparison at a time.
fn is_hidden(attr: &AttrRef<'_>) -> bool {
    [Some(attr.attr), attr.sub]
        .into_iter()
        .flatten()
        .any(|a| a.mutability == Mutability::WriteOnly || a.returned == Returned::Never)
}

/// Which membership a top-level path of a list filter names, if any:
/// `members` of a group type, or the computed `groups`.
fn membership(rt: &ResourceTypeDef, path: &AttrPath) -> Option<fn(Option<String>) -> Cond> {
    let Ok(Resolved::Attr(attr)) = rt.resolve(path) else {
        return None;
    };
    if !matches!(attr.scope, AttrScope::Core) {
        return None;
    }
    match attr.attr.name.as_str() {
        "members" if rt.has_members() => Some(Cond::HasMember),
        "groups" if rt.has_computed_groups() => Some(Cond::MemberOf),
        _ => None,
    }
}

/// A membership term: only `value eq "<id>"` and `pr` are translated.
fn membership_term(
    make: fn(Option<String>) -> Cond,
    filter: &Filter,
    path: &AttrPath,
) -> ScimResult<Cond> {
    let is_value = |sub: &str| sub.eq_ignore_ascii_case("value");
    let id = |op: &CompareOp, value: &Value| match (op, value) {
        (CompareOp::Eq, Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    let found = match filter {
        Filter::Present { path } if path.sub.as_deref().is_none_or(is_value) => Some(make(None)),
        Filter::Compare { path, op, value } if path.sub.as_deref().is_some_and(is_value) => {
            id(op, value).map(|i| make(Some(i)))
        }
        Filter::ValuePath { filter, .. } => match filter.as_ref() {
            Filter::Compare { path, op, value }
                if path.urn.is_none()
                    && path.sub.is_none()
                    && path.name.eq_ignore_ascii_case("value") =>
            {
                id(op, value).map(|i| make(Some(i)))
            }
            _ => None,
        },
        _ => None,
    };
    found.ok_or_else(|| {
        ScimError::InvalidFilter(format!(
            "'{}' can be filtered by '{0}.value eq \"<id>\"', '{0}[value eq \"<id>\"]' or '{0} pr' only",
            path.name
        ))
    })
}

/// `path` resolved; `None` for a path `rt` lacks when `lenient`.
fn attr_of<'a>(
    rt: &'a ResourceTypeDef,
    path: &AttrPath,
    parent: Option<&AttrRef<'a>>,
    lenient: bool,
) -> ScimResult<Option<AttrRef<'a>>> {
    match resolve_attr(rt, path, parent) {
        Ok(attr) => Ok(Some(attr)),
        Err(_) if lenient => Ok(None),
        Err(e) => Err(e),
    }
}

fn resolve(
    rt: &ResourceTypeDef,
    filter: &Filter,
    parent: Option<&AttrRef<'_>>,
    mode: Mode,
) -> ScimResult<Cond> {
    let lenient = mode.lenient;
    if mode.list && parent.is_none() {
        let path = match filter {
            Filter::Present { path }
            | Filter::Compare { path, .. }
            | Filter::ValuePath { path, .. } => Some(path),
            _ => None,
        };
        if let Some(path) = path
            && let Some(make) = membership(rt, path)
        {
            return membership_term(make, filter, path);
        }
    }
    Ok(match filter {
        Filter::And(a, b) => Cond::And(
            Box::new(resolve(rt, a, parent, mode)?),
            Box::new(resolve(rt, b, parent, mode)?),
        ),
        Filter::Or(a, b) => Cond::Or(
            Box::new(resolve(rt, a, parent, mode)?),
            Box::new(resolve(rt, b, parent, mode)?),
        ),
        Filter::Not(inner) => Cond::Not(Box::new(resolve(rt, inner, parent, mode)?)),
        Filter::Present { path } => match attr_of(rt, path, parent, lenient)? {
            Some(attr) => Cond::Present { key: attr.key() },
            None => Cond::never(),
        },
        Filter::Compare { path, op, value } => match attr_of(rt, path, parent, lenient)? {
            Some(attr) => compare(&value_target(attr)?, *op, value)?,
            None => Cond::never(),
        },
        Filter::ValuePath { path, filter } => {
            if parent.is_some() {
                return Err(ScimError::InvalidFilter("value filters cannot nest".into()));
            }
            let Some(attr) = attr_of(rt, path, None, lenient)? else {
                return Ok(Cond::never());
            };
            if attr.attr.typ != AttrType::Complex || attr.sub.is_some() {
                return Err(ScimError::InvalidFilter(format!(
                    "'{}' is not a complex attribute and cannot take a [filter]",
                    attr.display()
                )));
            }
            let inner = resolve(rt, filter, Some(&attr), mode)?;
            Cond::Element {
                parent: attr.key(),
                cond: Box::new(inner),
            }
        }
    })
}

/// Resolves a path for filtering; inside a value filter it is relative to the
/// parent attribute.
fn resolve_attr<'a>(
    rt: &'a ResourceTypeDef,
    path: &AttrPath,
    parent: Option<&AttrRef<'a>>,
) -> ScimResult<AttrRef<'a>> {
    let attr = match parent {
        Some(parent) => {
            if path.urn.is_some() || path.sub.is_some() {
                return Err(ScimError::InvalidFilter(format!(
                    "'{path}' inside [ ] must be a sub-attribute name of '{}'",
                    parent.display()
                )));
            }
            let sub = parent.attr.sub(&path.name).ok_or_else(|| {
                ScimError::InvalidFilter(format!(
                    "unknown attribute '{}.{}'",
                    parent.display(),
                    path.name
                ))
            })?;
            AttrRef {
                scope: parent.scope,
                attr: parent.attr,
                sub: Some(sub),
            }
        }
        None => match rt.resolve(path).map_err(ScimError::InvalidFilter)? {
            Resolved::Attr(a) => a,
            Resolved::Extension(s) => {
                return Err(ScimError::InvalidFilter(format!(
                    "'{}' is a schema, not an attribute",
                    s.id
                )));
            }
        },
    };
    if is_hidden(&attr) {
        return Err(ScimError::InvalidFilter(format!(
            "'{}' is never returned and cannot be filtered on",
            attr.display()
        )));
    }
    if matches!(attr.scope, AttrScope::Common) && attr.attr.name == "meta" {
        match attr.sub.map(|s| s.name.as_str()) {
            Some("resourceType" | "created" | "lastModified" | "version") => {}
            _ => {
                return Err(ScimError::InvalidFilter(format!(
                    "'{}' cannot be filtered on",
                    attr.display()
                )));
            }
        }
    }
    Ok(attr)
}

/// A comparison on a complex attribute without a sub-attribute compares its
/// `value` sub-attribute (`emails co "@example.com"`).
fn value_target(attr: AttrRef<'_>) -> ScimResult<AttrRef<'_>> {
    if attr.sub.is_none() && attr.attr.typ == AttrType::Complex {
        return match attr.attr.sub("value") {
            Some(value) if value.typ != AttrType::Complex => Ok(AttrRef {
                sub: Some(value),
                ..attr
            }),
            _ => Err(ScimError::InvalidFilter(format!(
                "'{}' is complex; compare one of its sub-attributes",
                attr.display()
            ))),
        };
    }
    Ok(attr)
}

fn compare(attr: &AttrRef<'_>, op: CompareOp, literal: &Value) -> ScimResult<Cond> {
    let leaf = attr.leaf();
    let key = attr.key();
    let invalid = |why: String| ScimError::InvalidFilter(why);
    if literal.is_null() {
        // `attr eq null` asks for absence, `attr ne null` for presence.
        return match op {
            CompareOp::Eq => Ok(Cond::Not(Box::new(Cond::Present { key }))),
            CompareOp::Ne => Ok(Cond::Present { key }),
            _ => Err(invalid(format!(
                "'{}' cannot be compared to null with {}",
                attr.display(),
                op.as_str()
            ))),
        };
    }
    let ordering = matches!(
        op,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
    );
    let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
    let value = match leaf.typ {
        AttrType::String | AttrType::Reference | AttrType::Binary => match literal {
            Value::String(s) => Comparable::Text(fold(leaf, s)),
            _ => {
                return Err(invalid(format!(
                    "'{}' is a string; compare it to a string",
                    attr.display()
                )));
            }
        },
        AttrType::Boolean => {
            if ordering || substring {
                return Err(invalid(format!(
                    "'{}' is a boolean; only eq, ne and pr apply",
                    attr.display()
                )));
            }
            match literal {
                Value::Bool(b) => Comparable::Number(f64::from(u8::from(*b))),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Comparable::Number(1.0),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Comparable::Number(0.0),
                _ => {
                    return Err(invalid(format!(
                        "'{}' is a boolean; compare it to true or false",
                        attr.display()
                    )));
                }
            }
        }
        AttrType::Integer | AttrType::Decimal => {
            if substring {
                return Err(invalid(format!(
                    "'{}' is a number; {} does not apply",
                    attr.display(),
                    op.as_str()
                )));
            }
            match literal.as_f64() {
                Some(n) if literal.is_number() => Comparable::Number(n),
                _ => {
                    return Err(invalid(format!(
                        "'{}' is a number; compare it to a number",
                        attr.display()
                    )));
                }
            }
        }
        AttrType::DateTime => {
            if substring {
                return Err(invalid(format!(
                    "'{}' is a dateTime; {} does not apply",
                    attr.display(),
                    op.as_str()
                )));
            }
            match literal.as_str().and_then(parse_datetime) {
                Some(t) => Comparable::Text(datetime_key(t)),
                None => {
                    return Err(invalid(format!(
                        "'{}' is a dateTime; compare it to an xsd:dateTime string",
                        attr.display()
                    )));
                }
            }
        }
        AttrType::Complex => {
            return Err(invalid(format!(
                "'{}' is complex; compare one of its sub-attributes",
                attr.display()
            )));
        }
    };
    if op == CompareOp::Ne {
        return Ok(Cond::Not(Box::new(Cond::Compare {
            key,
            op: CompareOp::Eq,
            value,
        })));
    }
    Ok(Cond::Compare { key, op, value })
}

/// Resolves `sortBy` for `rt`. A multi-valued complex attribute sorts by its
/// `value` sub-attribute, taking the primary value first (RFC 7644 3.4.2.3).
pub fn resolve_sort(rt: &ResourceTypeDef, sort_by: &str, descending: bool) -> ScimResult<SortKey> {
    let path = scimd_filter::parse_attr_path(sort_by)
        .map_err(|e| ScimError::InvalidValue(format!("sortBy: {e}")))?;
    let attr = match rt
        .resolve(&path)
        .map_err(|e| ScimError::InvalidValue(format!("sortBy: {e}")))?
    {
        Resolved::Attr(a) => a,
        Resolved::Extension(s) => {
            return Err(ScimError::InvalidValue(format!(
                "sortBy: '{}' is a schema, not an attribute",
                s.id
            )));
        }
    };
    if membership(rt, &path).is_some() {
        return Err(ScimError::InvalidValue(format!(
            "sortBy: '{sort_by}' is a membership; sorting by it is not supported"
        )));
    }
    let attr = value_target(attr).map_err(|e| ScimError::InvalidValue(format!("sortBy: {e}")))?;
    if is_hidden(&attr) {
        return Err(ScimError::InvalidValue(format!(
            "sortBy: '{}' is never returned",
            attr.display()
        )));
    }
    let numeric = matches!(
        attr.leaf().typ,
        AttrType::Integer | AttrType::Decimal | AttrType::Boolean
    );
    Ok(SortKey {
        key: attr.key(),
        numeric,
        descending,
    })
}
