//! Typed handling of attribute values: coercion of client input to the
//! attribute's type, and the comparable forms used by filters, sorting and the
//! index. Both the SQL path and the in-memory evaluator use these functions, so
//! they agree on every case rule.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{ScimError, ScimResult};
use crate::schema::{AttrType, Attribute};

/// A value in the form the index stores and filters compare.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparable {
    /// A string: lower-cased unless the attribute is caseExact; dateTimes in
    /// a fixed-width UTC form so that text order is time order.
    Text(String),
    /// Integers, decimals, and booleans (0 or 1).
    Number(f64),
}

/// Parses an xsd:dateTime / RFC 3339 value.
pub fn parse_datetime(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// The fixed-width UTC text of a dateTime, e.g. `2021-03-03T17:39:59.000000000Z`.
pub fn datetime_key(t: OffsetDateTime) -> String {
    utc_text(t, 9)
}

/// The RFC 3339 text used in `meta.created` / `meta.lastModified` (milliseconds).
/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

pub fn format_timestamp(t: OffsetDateTime) -> String {
    utc_text(t, 3)
}

/// The time now, as [`format_timestamp`] writes it.
pub fn now_timestamp() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

/// `YYYY-MM-DDTHH:MM:SS.fffZ` in UTC with `digits` (3 or 9) fraction digits.
fn utc_text(t: OffsetDateTime, digits: u32) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fraction = t.nanosecond() / 10u32.pow(9 - digits.min(9));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0width$}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        fraction,
        width = digits as usize
    )
}

/// The comparable form of a stored (already coerced) scalar value of `attr`.
/// `None` for values that are not indexed: empty strings, nulls, objects.
pub fn comparable(attr: &Attribute, value: &Value) -> Option<Comparable> {
    match (attr.typ, value) {
        (AttrType::Boolean, Value::Bool(b)) => Some(Comparable::Number(f64::from(u8::from(*b)))),
        (AttrType::Integer | AttrType::Decimal, Value::Number(n)) => {
            n.as_f64().map(Comparable::Number)
        }
        (AttrType::DateTime, Value::String(s)) => {
            parse_datetime(s).map(|t| Comparable::Text(datetime_key(t)))
        }
        (_, Value::String(s)) if s.is_empty() => None,
        (_, Value::String(s)) => Some(Comparable::Text(fold(attr, s))),
        _ => None,
    }
}

/// Whether two stored values of `attr` are the same value: dateTimes as
/// instants, strings under the attribute's case rule, complex values
/// sub-attribute by sub-attribute. Immutability compares this way: a client
/// that sends the same instant with another offset or precision has not
/// changed it.
pub fn same(attr: &Attribute, a: &Value, b: &Value) -> bool {
    match (a, b) {
        // Multi-valued attributes have no order (RFC 7643 section 2.4).
        (Value::Array(x), Value::Array(y)) => {
            let mut unmatched: Vec<&Value> = y.iter().collect();
            x.len() == y.len()
                && x.iter().all(
                    |p| match unmatched.iter().position(|q| same_single(attr, p, q)) {
                        Some(found) => {
                            unmatched.swap_remove(found);
                            true
                        }
                        None => false,
                    },
                )
        }
        _ => same_single(attr, a, b),
    }
}

fn same_single(attr: &Attribute, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let sub = |name: &str| {
                attr.sub_attributes
                    .iter()
                    .find(|s| s.name.eq_ignore_ascii_case(name))
            };
            x.len() == y.len()
                && x.iter().all(|(name, p)| {
                    get_ci(y, name).is_some_and(|q| match sub(name) {
                        Some(def) => same_single(def, p, q),
                        None => p == q,
                    })
                })
        }
        // Integers exactly: their comparable form is an f64, which would
        // take 2^53 + 1 for 2^53.
        (Value::Number(p), Value::Number(q)) if p.is_i64() && q.is_i64() => p == q,
        _ => match (comparable(attr, a), comparable(attr, b)) {
            (Some(p), Some(q)) => p == q,
            _ => a == b,
        },
    }
}

/// Applies the attribute's case rule to a string.
pub fn fold(attr: &Attribute, s: &str) -> String {
    if attr.compares_exactly() {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

/// Coerces one client-supplied value of `attr` to its stored form. Returns
/// `Ok(None)` for null and empty arrays (unassigned, RFC 7643 section 2.5).
/// `where_` names the attribute in error messages.
pub fn coerce(attr: &Attribute, value: Value, where_: &str) -> ScimResult<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi_valued {
        let items = match value {
            Value::Array(items) => items,
            // A lone value for a multi-valued attribute: accepted as one element.
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = coerce_single(attr, item, where_)? {
                out.push(v);
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        check_single_primary(attr, &out, where_)?;
        return Ok(Some(Value::Array(out)));
    }
    if value.is_array() {
        return Err(ScimError::InvalidValue(format!(
            "'{where_}' is single-valued but an array was given"
        )));
    }
    coerce_single(attr, value, where_)
}

/// Coerces a single (non-array) value of `attr`.
pub fn coerce_single(attr: &Attribute, value: Value, where_: &str) -> ScimResult<Option<Value>> {
    let wrong = |expected: &str| ScimError::InvalidValue(format!("'{where_}' must be {expected}"));
    match (attr.typ, value) {
        (_, Value::Null) => Ok(None),
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(s)) => {
            Ok(Some(Value::String(s)))
        }
        (AttrType::String | AttrType::Reference | AttrType::Binary, _) => Err(wrong("a string")),
        (AttrType::Boolean, Value::Bool(b)) => Ok(Some(Value::Bool(b))),
        // Entra ID and others send booleans as "True"/"False".
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Ok(Some(Value::Bool(true)))
        }
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Ok(Some(Value::Bool(false)))
        }
        (AttrType::Boolean, _) => Err(wrong("a boolean")),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(Some(Value::Number(n)))
        }
        (AttrType::Integer, _) => Err(wrong("an integer")),
        (AttrType::Decimal, Value::Number(n)) => Ok(Some(Value::Number(n))),
        (AttrType::Decimal, _) => Err(wrong("a decimal number")),
        (AttrType::DateTime, Value::String(s)) => match parse_datetime(&s) {
            Some(_) => Ok(Some(Value::String(s))),
            None => Err(wrong("an xsd:dateTime such as 2024-05-01T12:00:00Z")),
        },
        (AttrType::DateTime, _) => Err(wrong("an xsd:dateTime string")),
        (AttrType::Complex, Value::Object(map)) => coerce_complex(attr, map, where_),
        // Entra ID: the manager as its bare id; "" removes it.
        (AttrType::Complex, Value::String(s)) if attr.takes_bare_value() => match s.is_empty() {
            true => Ok(None),
            false => coerce_complex(
                attr,
                Map::from_iter([("value".into(), Value::String(s))]),
                where_,
            ),
        },
        (AttrType::Complex, _) => Err(wrong("an object")),
    }
}

/// Coerces a complex value: canonical sub-attribute names, types checked,
/// readOnly sub-attributes dropped, unknown sub-attributes refused.
fn coerce_complex(
    attr: &Attribute,
    map: Map<String, Value>,
    where_: &str,
) -> ScimResult<Option<Value>> {
    names_once(&map)?;
    let mut out = Map::new();
    for (key, value) in map {
        let Some(sub) = attr.sub(&key) else {
            if value.is_null() {
                continue;
            }
            return Err(ScimError::InvalidValue(format!(
                "unknown attribute '{where_}.{key}'"
            )));
        };
        if sub.mutability == crate::schema::Mutability::ReadOnly {
            continue;
        }
        let sub_where = format!("{where_}.{}", sub.name);
        if let Some(v) = coerce(sub, value, &sub_where)? {
            out.insert(sub.name.clone(), v);
        }
    }
    // An empty identifying value (`{"value": ""}`, Entra ID) removes it.
    let unidentified =
        attr.takes_bare_value() && out.get("value").and_then(Value::as_str) == Some("");
    if out.is_empty() || unidentified {
        return Ok(None);
    }
    Ok(Some(Value::Object(out)))
}

/// RFC 7643 section 2.4: the primary attribute is true for at most one value.
fn check_single_primary(attr: &Attribute, items: &[Value], where_: &str) -> ScimResult<()> {
    if attr.typ != AttrType::Complex || attr.sub("primary").is_none() {
        return Ok(());
    }
    let primaries = items
        .iter()
        .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
        .count();
    if primaries > 1 {
        return Err(ScimError::InvalidValue(format!(
            "'{where_}' has {primaries} values with primary true; at most one is allowed"
        )));
    }
    Ok(())
}

/// Refuses an object that names one attribute twice: names are
/// case-insensitive, so `displayName` and `DISPLAYNAME` name one attribute,
/// and which would win is an accident of parsing. (Identical keys are merged
/// by the JSON parser before this sees them, the last one kept.) Objects
/// are small, and this runs inside the store's write for a PATCH: pairs are
/// compared without allocating up to 32 keys, a set is built past that.
pub fn names_once(map: &Map<String, Value>) -> ScimResult<()> {
    let twice = |key: &str| {
        Err(ScimError::InvalidSyntax(format!(
            "'{key}' is given twice (attribute names are case-insensitive)"
        )))
    };
    if map.len() <= 32 {
        for (i, a) in map.keys().enumerate() {
            if map.keys().skip(i + 1).any(|b| a.eq_ignore_ascii_case(b)) {
                return twice(a);
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(map.len());
        for key in map.keys() {
            if !seen.insert(key.to_ascii_lowercase()) {
                return twice(key);
            }
        }
    }
    Ok(())
}

/// Case-insensitive lookup of a key in a JSON object.
pub fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A protocol message (PatchOp, BulkRequest, SearchRequest) names its URN
/// in `schemas`. Without `schemas` (or with an empty list) it is taken as what its endpoint expects
/// (clients leave it out); one that names only other URNs was meant for
/// another endpoint and is refused rather than half understood.
pub fn check_message_schema(map: &Map<String, Value>, urn: &str) -> ScimResult<()> {
    let names = |s: &Value| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn));
    let ok = match get_ci(map, "schemas") {
        None | Some(Value::Null) => true,
        Some(Value::Array(schemas)) => schemas.is_empty() || schemas.iter().any(names),
        Some(single) => names(single),
    };
    if ok {
        Ok(())
    } else {
        Err(ScimError::InvalidSyntax(format!(
            "'schemas' must contain {urn}"
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn object(keys: &[String]) -> Map<String, Value> {
        keys.iter().map(|k| (k.clone(), json!(1))).collect()
    }

    #[test]
    fn a_name_twice_in_small_and_large_objects() {
        for size in [3, 40] {
            let mut keys: Vec<String> = (0..size).map(|i| format!("attr{i}")).collect();
            assert!(names_once(&object(&keys)).is_ok(), "{size}");
            keys.push(format!("ATTR{}", size - 1));
            let err = names_once(&object(&keys)).unwrap_err();
            assert!(
                matches!(err, ScimError::InvalidSyntax(_)),
                "{size}: {err:?}"
            );
        }
    }

    #[test]
    fn the_same_value_whatever_its_spelling() {
        let when: Attribute =
            serde_json::from_value(json!({"name": "when", "type": "dateTime"})).unwrap();
        assert!(same(
            &when,
            &json!("2024-01-02T03:04:05Z"),
            &json!("2024-01-02T04:04:05+01:00")
        ));
        assert!(!same(
            &when,
            &json!("2024-01-02T03:04:05Z"),
            &json!("2024-01-02T03:04:06Z")
        ));
        let count: Attribute =
            serde_json::from_value(json!({"name": "n", "type": "integer"})).unwrap();
        assert!(!same(
            &count,
            &json!(9_007_199_254_740_993_i64),
            &json!(9_007_199_254_740_992_i64)
        ));
        let tags: Attribute =
            serde_json::from_value(json!({"name": "tags", "type": "string", "multiValued": true}))
                .unwrap();
        assert!(same(&tags, &json!(["a", "B"]), &json!(["b", "A"])));
        assert!(!same(&tags, &json!(["a", "a"]), &json!(["a", "b"])));
    }
}
