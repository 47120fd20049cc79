//! Data-driven tests of the public API, plus property tests.

mod attrs;
mod errors;
mod filters;
mod patch;
mod props;

use serde_json::Value;

use crate::{AttrPath, CompareOp, Filter, parse_filter};

pub(super) const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(super) const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

pub(super) fn p(name: &str) -> AttrPath {
    AttrPath::new(name)
}

pub(super) fn ps(name: &str, sub: &str) -> AttrPath {
    AttrPath::with_sub(name, sub)
}

pub(super) fn pu(urn: &str, name: &str, sub: Option<&str>) -> AttrPath {
    AttrPath {
        urn: Some(urn.to_owned()),
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    }
}

pub(super) fn cmp(path: AttrPath, op: CompareOp, value: impl Into<Value>) -> Filter {
    Filter::Compare {
        path,
        op,
        value: value.into(),
    }
}

pub(super) fn eq(name: &str, value: impl Into<Value>) -> Filter {
    cmp(p(name), CompareOp::Eq, value)
}

pub(super) fn pr(path: AttrPath) -> Filter {
    Filter::Present { path }
}

pub(super) fn and(a: Filter, b: Filter) -> Filter {
    Filter::And(Box::new(a), Box::new(b))
}

pub(super) fn or(a: Filter, b: Filter) -> Filter {
    Filter::Or(Box::new(a), Box::new(b))
}

pub(super) fn not(a: Filter) -> Filter {
    Filter::Not(Box::new(a))
}

pub(super) fn vp(path: AttrPath, filter: Filter) -> Filter {
    Filter::ValuePath {
        path,
        filter: Box::new(filter),
    }
}

/// Parses `input`, expects `expected`, and checks the canonical text round-trips.
pub(super) fn check(input: &str, expected: &Filter) {
    assert_eq!(
        parse_filter(input).as_ref(),
        Ok(expected),
        "input {input:?}"
    );
    let text = expected.to_string();
    assert_eq!(
        parse_filter(&text).as_ref(),
        Ok(expected),
        "display {text:?}"
    );
}

/// Expects `result` to be an error at `position` whose message contains `message`.
pub(super) fn check_err<T: std::fmt::Debug>(
    input: &str,
    result: Result<T, crate::ParseError>,
    position: usize,
    message: &str,
) {
    assert!(
        result.is_err(),
        "input {input:?}: expected an error, got {result:?}"
    );
    if let Err(e) = result {
        assert_eq!(e.position, position, "input {input:?}: {e}");
        assert!(
            e.message.contains(message),
            "input {input:?}: message {:?} lacks {message:?}",
            e.message
        );
    }
}
