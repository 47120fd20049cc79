//! `attributes` / `excludedAttributes` (RFC 7644 section 3.4.2.5) with the
//! schema's `returned` rules: `id` and `schemas` always come back, `never`
//! values never do, `request` values only when named.

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimResult};
use crate::schema::{AttrScope, Attribute, Resolved, ResourceTypeDef, Returned};

/// One selected attribute: `(extension URN or None, attribute, sub)`, with
/// canonical names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selection {
    extension: Option<String>,
    attr: Option<String>,
    sub: Option<String>,
}

/// A parsed projection, applied to rendered documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    include: Option<Vec<Selection>>,
    exclude: Vec<Selection>,
}

impl Projection {
    /// Everything returned by default.
    pub fn all() -> Projection {
        Projection::default()
    }

    /// Parses the comma-separated `attributes` and `excludedAttributes` lists.
    /// Names that do not resolve are ignored (clients ask for attributes of
    /// other servers' schemas); an item that is not an attribute path at all
    /// is 400 `invalidValue`; empty items (a stray comma) are skipped.
    pub fn parse(
        rt: &ResourceTypeDef,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> ScimResult<Projection> {
        let include = match attributes {
            Some(list) => selections(rt, list, "attributes")?,
            None => None,
        };
        let exclude = match excluded {
            Some(list) => selections(rt, list, "excludedAttributes")?.unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(Projection { include, exclude })
    }

    /// Would the core attribute `name` (e.g. `members`) appear in the output?
    /// Lets the service skip loading what will not be shown.
    pub fn shows_core(&self, rt: &ResourceTypeDef, name: &str) -> bool {
        let Some(attr) = rt.core.attribute(name) else {
            return false;
        };
        decide(self, None, attr) != Decision::Drop
    }

    /// Applies the projection to a rendered document.
    pub fn apply(&self, rt: &ResourceTypeDef, doc: Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, value) in doc {
            if key == "schemas" || key == "id" {
                out.insert(key, value);
                continue;
            }
            if let Some(ext) = rt.extension(&key) {
                let Value::Object(inner) = value else {
                    continue;
                };
                let mut kept = Map::new();
                for (name, v) in inner {
                    if let Some(attr) = ext.attribute(&name)
                        && let Some(v) = self.project_attr(Some(&ext.id), attr, v)
                    {
                        kept.insert(name, v);
                    }
                }
                if !kept.is_empty() {
                    out.insert(key, Value::Object(kept));
                }
                continue;
            }
            let attr = rt
                .common
                .attribute(&key)
                .or_else(|| rt.core.attribute(&key));
            if let Some(attr) = attr
                && let Some(v) = self.project_attr(None, attr, value)
            {
                out.insert(key, v);
            }
        }
        out
    }

    /// The projected value; `None` when nothing of it is left (an attribute
    /// whose every sub-attribute was excluded is omitted, not `null`).
    fn project_attr(&self, ext: Option<&str>, attr: &Attribute, value: Value) -> Option<Value> {
        let v = match decide(self, ext, attr) {
            Decision::Drop => return None,
            Decision::Whole => filter_subs(attr, value, |_| true, false),
            Decision::Subs(subs) => filter_subs(
                attr,
                value,
                |name| subs.iter().any(|s| s.eq_ignore_ascii_case(name)),
                true,
            ),
            Decision::WithoutSubs(subs) => filter_subs(
                attr,
                value,
                |name| !subs.iter().any(|s| s.eq_ignore_ascii_case(name)),
                false,
            ),
        };
        (!is_empty(&v)).then_some(v)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Drop,
    Whole,
    Subs(Vec<String>),
    WithoutSubs(Vec<String>),
}

fn matches_attr(sel: &Selection, ext: Option<&str>, attr: &Attribute) -> bool {
    let same_scope = match (&sel.extension, ext) {
        (None, None) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    };
    same_scope
        && sel
            .attr
            .as_deref()
            .is_none_or(|a| a.eq_ignore_ascii_case(&attr.name))
}

fn decide(p: &Projection, ext: Option<&str>, attr: &Attribute) -> Decision {
    match attr.returned {
        Returned::Never => return Decision::Drop,
        Returned::Always => return Decision::Whole,
        _ => {}
    }
    let base = match &p.include {
        Some(include) => {
            let hits: Vec<&Selection> = include
                .iter()
                .filter(|s| matches_attr(s, ext, attr))
                .collect();
            if hits.is_empty() {
                return not_selected(attr);
            }
            if hits.iter().any(|s| s.sub.is_none()) {
                Decision::Whole
            } else {
                Decision::Subs(hits.iter().filter_map(|s| s.sub.clone()).collect())
            }
        }
        None if attr.returned == Returned::Request => return Decision::Drop,
        None => Decision::Whole,
    };
    let excluded: Vec<&Selection> = p
        .exclude
        .iter()
        .filter(|s| matches_attr(s, ext, attr))
        .collect();
    if excluded.is_empty() {
        return base;
    }
    if excluded.iter().any(|s| s.sub.is_none()) {
        return not_selected(attr);
    }
    let subs: Vec<String> = excluded.iter().filter_map(|s| s.sub.clone()).collect();
    match base {
        Decision::Subs(keep) => Decision::Subs(
            keep.into_iter()
                .filter(|k| !subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .collect(),
        ),
        _ => Decision::WithoutSubs(subs),
    }
}

/// An attribute left out by the projection: its `returned: always`
/// sub-attributes still show (RFC 7643 section 7), alone.
fn not_selected(attr: &Attribute) -> Decision {
    if attr
        .sub_attributes
        .iter()
        .any(|s| s.returned == Returned::Always)
    {
        Decision::Subs(Vec::new())
    } else {
        Decision::Drop
    }
}

/// Keeps the sub-attributes of a complex value (or of each element) that
/// `keep` accepts, always dropping `returned: never` ones and, unless
/// `requested`, `returned: request` ones.
fn filter_subs(
    attr: &Attribute,
    value: Value,
    keep: impl Fn(&str) -> bool + Copy,
    requested: bool,
) -> Value {
    if attr.sub_attributes.is_empty() {
        return value;
    }
    let one = |v: Value| -> Option<Value> {
        let Value::Object(map) = v else {
            return Some(v);
        };
        let kept: Map<String, Value> = map
            .into_iter()
            .filter(|(name, _)| {
                let returned = attr
                    .sub(name)
                    .map(|s| s.returned)
                    .unwrap_or(Returned::Default);
                match returned {
                    Returned::Never => false,
                    Returned::Always => true,
                    Returned::Request => requested && keep(name),
                    Returned::Default => keep(name),
                }
            })
            .collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match value {
        Value::Array(items) => Value::Array(items.into_iter().filter_map(one).collect()),
        other => one(other).unwrap_or(Value::Null),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The selections of one list; `None` when it names nothing at all (empty,
/// or commas only), which is as if the parameter were absent.
fn selections(
    rt: &ResourceTypeDef,
    list: &str,
    parameter: &str,
) -> ScimResult<Option<Vec<Selection>>> {
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    // Parsed as one list, so that the filter crate's budgets (bytes and
    // entries) bound what every resource of a page is projected through.
    let paths = scimd_filter::parse_attr_list(&items.join(","))
        .map_err(|e| ScimError::InvalidValue(format!("{parameter}: {e}")))?;
    let mut out: Vec<Selection> = Vec::new();
    for path in &paths {
        let selection = match rt.resolve(path) {
            Ok(Resolved::Extension(schema)) => Selection {
                extension: Some(schema.id.clone()),
                attr: None,
                sub: None,
            },
            Ok(Resolved::Attr(a)) => Selection {
                extension: match a.scope {
                    AttrScope::Extension(s) => Some(s.id.clone()),
                    _ => None,
                },
                attr: Some(a.attr.name.clone()),
                sub: a.sub.map(|s| s.name.clone()),
            },
            Err(_) => continue,
        };
        if !out.contains(&selection) {
            out.push(selection);
        }
    }
    Ok(Some(out))
}
