//! `bulkId` references: found in paths and data, substituted once the
//! operations that define them have run, taken out of a POST to break a
//! cycle (section 3.7.1), and what the request's bulkIds stand for so far.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::{BulkMethod, BulkOperation};

const REF_PREFIX: &str = "bulkId:";

/// Every `bulkId:xyz` reference in a text: the id runs to the end of the
/// text or to a character that cannot be part of it in a path or filter.
pub(super) fn refs_in_text(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(at) = rest.find(REF_PREFIX) {
        let after = &rest[at + REF_PREFIX.len()..];
        let end = after.find(is_ref_end).unwrap_or(after.len());
        if end > 0 {
            out.insert(after[..end].to_string());
        }
        rest = &after[end..];
    }
}

fn is_ref_end(c: char) -> bool {
    matches!(c, '"' | '\'' | ']' | '[' | ')' | '(' | '/' | ',' | ' ')
}

pub(super) fn refs_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => refs_in_text(s, out),
        Value::Array(items) => items.iter().for_each(|v| refs_in(v, out)),
        Value::Object(map) => map.values().for_each(|v| refs_in(v, out)),
        _ => {}
    }
}

pub(super) fn substitute_text(text: &str, resolved: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(REF_PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + REF_PREFIX.len()..];
        let end = after.find(is_ref_end).unwrap_or(after.len());
        match resolved.get(&after[..end]) {
            Some(id) if end > 0 => out.push_str(id),
            _ => {
                out.push_str(REF_PREFIX);
                out.push_str(&after[..end]);
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

pub(super) fn substitute(value: &mut Value, resolved: &HashMap<String, String>) {
    match value {
        Value::String(s) if s.contains(REF_PREFIX) => *s = substitute_text(s, resolved),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, resolved)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, resolved)),
        _ => {}
    }
}

/// Takes out of a POST's data every attribute value that names one of
/// `unresolved`: whole attributes, or the elements of multi-valued ones
/// (members). Returns the PATCH "add" operations that put them back once
/// the references are resolved. This is how section 3.7.1 breaks a
/// circular reference: create, then add the references.
pub(super) fn strip(data: &mut Value, unresolved: &BTreeSet<String>) -> Vec<Value> {
    let names = |v: &Value| {
        let mut found = BTreeSet::new();
        refs_in(v, &mut found);
        !found.is_disjoint(unresolved)
    };
    let mut adds = Vec::new();
    let Value::Object(map) = data else {
        return adds;
    };
    let mut take = |map: &mut Map<String, Value>, prefix: &str| {
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let Some(value) = map.get_mut(&key) else {
                continue;
            };
            if !names(value) || key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            let path = format!("{prefix}{key}");
            if let Value::Array(items) = value {
                let (later, now): (Vec<Value>, Vec<Value>) =
                    std::mem::take(items).into_iter().partition(names);
                *items = now;
                adds.push(json!({"op": "add", "path": path, "value": later}));
            } else if let Some(v) = map.remove(&key) {
                adds.push(json!({"op": "add", "path": path, "value": v}));
            }
        }
    };
    let urns: Vec<String> = map
        .keys()
        .filter(|k| k.to_ascii_lowercase().starts_with("urn:"))
        .cloned()
        .collect();
    for urn in urns {
        if let Some(Value::Object(ext)) = map.get_mut(&urn) {
            take(ext, &format!("{urn}:"));
        }
    }
    take(map, "");
    adds
}

/// Why a reference cannot be resolved, if it cannot.
pub(super) enum RefState {
    Resolved,
    Pending,
    Broken(String),
}

/// What the request's bulkIds stand for so far: those the POSTs define,
/// those created (with their ids), those whose operation failed.
pub(super) struct BulkIds {
    /// The bulkIds of the request's POST operations, with their index.
    defined: HashMap<String, usize>,
    pub(super) resolved: HashMap<String, String>,
    pub(super) failed: BTreeSet<String>,
}

impl BulkIds {
    /// The bulkIds the POSTs of `operations` define; none created yet.
    pub(super) fn new(operations: &[BulkOperation]) -> BulkIds {
        let defined: HashMap<String, usize> = operations
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(&op.target, Ok(t) if t.method == BulkMethod::Post))
            .filter_map(|(i, op)| op.bulk_id.clone().map(|b| (b, i)))
            .collect();
        BulkIds {
            defined,
            resolved: HashMap::new(),
            failed: BTreeSet::new(),
        }
    }

    /// The operation (its index) whose POST defines `bulk_id`.
    pub(super) fn creator(&self, bulk_id: &str) -> Option<usize> {
        self.defined.get(bulk_id).copied()
    }

    /// Whether every one of `refs` is resolved, some are still pending, or
    /// one never can be.
    pub(super) fn state(&self, refs: &BTreeSet<String>) -> RefState {
        let mut pending = false;
        for r in refs {
            // Before `resolved`: a create whose cycle could not be
            // completed has an id, but fails and is deleted again.
            if self.failed.contains(r) {
                return RefState::Broken(format!("bulkId:{r} refers to an operation that failed"));
            }
            if self.resolved.contains_key(r) {
                continue;
            }
            if !self.defined.contains_key(r) {
                return RefState::Broken(format!(
                    "bulkId:{r} is not the bulkId of a POST operation in this request"
                ));
            }
            pending = true;
        }
        if pending {
            RefState::Pending
        } else {
            RefState::Resolved
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_in_values_paths_and_filters() {
        let mut found = BTreeSet::new();
        refs_in_text("/Groups/bulkId:ytrewq", &mut found);
        refs_in_text(r#"members[value eq "bulkId:qwerty"]"#, &mut found);
        refs_in(&json!({"members": [{"value": "bulkId:a-1"}]}), &mut found);
        let want: BTreeSet<String> = ["ytrewq", "qwerty", "a-1"].map(String::from).into();
        assert_eq!(found, want);
        let resolved: HashMap<String, String> = [("qwerty".to_string(), "ID".to_string())].into();
        assert_eq!(
            substitute_text(r#"members[value eq "bulkId:qwerty"]"#, &resolved),
            r#"members[value eq "ID"]"#
        );
        assert_eq!(substitute_text("bulkId:other", &resolved), "bulkId:other");
    }

    #[test]
    fn strip_takes_out_only_unresolved_references() {
        let mut data = json!({
            "displayName": "A",
            "members": [{"value": "bulkId:b"}, {"value": "known"}],
            "urn:x:Ext": {"manager": {"value": "bulkId:b"}, "code": "1"}
        });
        let adds = strip(&mut data, &["b".to_string()].into());
        assert_eq!(data["members"], json!([{"value": "known"}]));
        assert_eq!(data["urn:x:Ext"], json!({"code": "1"}));
        assert_eq!(adds.len(), 2);
        assert_eq!(adds[1]["path"], "members");
        assert_eq!(adds[0]["path"], "urn:x:Ext:manager");
    }
}
