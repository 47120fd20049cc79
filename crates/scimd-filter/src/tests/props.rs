//! Property tests: no panic on arbitrary input, AST round-trips, budgets.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::{Limits, parse_attr_list, parse_attr_path, parse_filter_with, parse_patch_path_with};

/// Pieces that are likely to reach deep into the parser when glued together.
const PIECES: &[&str] = &[
    "eq",
    "NE",
    "co",
    "sw",
    "ew",
    "pr",
    "Gt",
    "ge",
    "lt",
    "le",
    "and",
    "OR",
    "not",
    "(",
    ")",
    "[",
    "]",
    ".",
    ",",
    "\"",
    "\"x\"",
    "\"\\u00e9\"",
    "\"\\",
    "1",
    "-2.5e3",
    "01",
    "true",
    "null",
    "userName",
    "name.familyName",
    "emails",
    "$ref",
    "urn:a:b:2.0:User:x",
    "urn:",
    ":",
    " ",
    "\t",
    "é",
    "+",
    "not(",
    "value",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(PIECES).prop_map(str::to_owned),
            1 => "[a-z]{1,6}",
            1 => any::<char>().prop_map(String::from),
        ],
        0..40,
    )
    .prop_flat_map(|pieces| {
        let n = pieces.len();
        (Just(pieces), prop::collection::vec(any::<bool>(), n))
    })
    .prop_map(|(pieces, spaces)| {
        let mut out = String::new();
        for (piece, space) in pieces.iter().zip(spaces) {
            out.push_str(piece);
            if space {
                out.push(' ');
            }
        }
        out
    })
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), token_soup(), "[ -~]{0,60}"]
}

/// Every entry point on `input` under `limits`: no panic, errors inside the input (or at
/// `max_len` for the length budget), and successful filters round-trip.
fn exercise(input: &str, limits: Limits) -> Result<(), TestCaseError> {
    let too_long = input.len() > limits.max_len;
    let check_pos = |e: &crate::ParseError| {
        if too_long {
            e.position == limits.max_len
        } else {
            e.position <= input.len()
        }
    };
    match parse_filter_with(input, limits) {
        Ok(f) => {
            prop_assert!(!too_long);
            let text = f.to_string();
            let relaxed = Limits {
                max_len: usize::MAX,
                ..limits
            };
            prop_assert_eq!(
                parse_filter_with(&text, relaxed),
                Ok(f),
                "display {:?}",
                text
            );
        }
        Err(e) => prop_assert!(check_pos(&e), "{input:?}: {e}"),
    }
    match parse_patch_path_with(input, limits) {
        Ok(pp) => {
            let text = pp.to_string();
            let relaxed = Limits {
                max_len: usize::MAX,
                ..limits
            };
            prop_assert_eq!(
                parse_patch_path_with(&text, relaxed),
                Ok(pp),
                "display {:?}",
                text
            );
        }
        Err(e) => prop_assert!(check_pos(&e), "{input:?}: {e}"),
    }
    if let Err(e) = parse_attr_path(input) {
        prop_assert!(e.position <= input.len().max(Limits::DEFAULT.max_len));
    }
    if let Err(e) = parse_attr_list(input) {
        prop_assert!(e.position <= input.len().max(Limits::DEFAULT.max_len));
    }
    Ok(())
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z][a-zA-Z0-9_-]{0,7}",
        1 => prop::sample::select(&["$ref", "not", "NOT", "and", "or", "pr", "eq", "true", "null"][..])
            .prop_map(str::to_owned),
    ]
}

fn urn() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => prop::sample::select(
            &[
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                "urn:se:curity:scim:2.0:Devices",
                "URN:x-y:a.b_c",
            ][..]
        )
        .prop_map(|s| Some(s.to_owned())),
    ]
}

/// A path; `relative` paths (inside a value filter) have no URN.
fn attr_path(relative: bool) -> impl Strategy<Value = AttrPath> {
    let urn = if relative {
        Just(None).boxed()
    } else {
        urn().boxed()
    };
    (urn, name(), prop::option::of(name())).prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        "[a-z\"\\\\/ ]{0,8}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(&CompareOp::ALL[..])
}

fn term(relative: bool) -> impl Strategy<Value = Filter> {
    prop_oneof![
        3 => (attr_path(relative), op(), value())
            .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
        1 => attr_path(relative).prop_map(|path| Filter::Present { path }),
    ]
}

fn combine(leaf: BoxedStrategy<Filter>) -> BoxedStrategy<Filter> {
    leaf.prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| or(a, b)),
            inner.prop_map(not),
        ]
    })
    .boxed()
}

fn value_filter() -> BoxedStrategy<Filter> {
    combine(term(true).boxed())
}

fn filter() -> BoxedStrategy<Filter> {
    let value_path = (urn(), name(), value_filter()).prop_map(|(urn, name, f)| {
        vp(
            AttrPath {
                urn,
                name,
                sub: None,
            },
            f,
        )
    });
    combine(prop_oneof![3 => term(false), 1 => value_path].boxed())
}

fn patch_path() -> impl Strategy<Value = crate::PatchPath> {
    prop_oneof![
        attr_path(false).prop_map(|attr| crate::PatchPath {
            attr,
            filter: None,
            sub: None,
        }),
        (urn(), name(), value_filter(), prop::option::of(name())).prop_map(
            |(urn, name, f, sub)| crate::PatchPath {
                attr: AttrPath {
                    urn,
                    name,
                    sub: None,
                },
                filter: Some(f),
                sub,
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_input_never_panics(input in any_input()) {
        exercise(&input, Limits::default())?;
    }

    #[test]
    fn arbitrary_input_small_limits(input in token_soup(), len in 0usize..64, depth in 0usize..4, terms in 0usize..4) {
        exercise(&input, Limits { max_len: len, max_depth: depth, max_terms: terms })?;
    }

    #[test]
    fn filter_round_trips(f in filter()) {
        let text = f.to_string();
        let limits = Limits { max_len: usize::MAX, ..Limits::default() };
        prop_assert_eq!(parse_filter_with(&text, limits), Ok(f), "text {:?}", text);
    }

    #[test]
    fn patch_path_round_trips(pp in patch_path()) {
        let text = pp.to_string();
        let limits = Limits { max_len: usize::MAX, ..Limits::default() };
        prop_assert_eq!(parse_patch_path_with(&text, limits), Ok(pp), "text {:?}", text);
    }

    #[test]
    fn beyond_length_budget_fails(f in filter(), extra in 1usize..8) {
        let text = f.to_string();
        let max_len = text.len().saturating_sub(extra);
        let limits = Limits { max_len, ..Limits::default() };
        let r = parse_filter_with(&text, limits);
        prop_assert_eq!(r.map_err(|e| e.position), Err(max_len));
    }

    #[test]
    fn beyond_depth_budget_fails(n in 65usize..2000, kind in 0usize..3) {
        let open = ["(", "not (", "not("][kind % 3];
        let input = format!("{}a pr{}", open.repeat(n), ")".repeat(n));
        let limits = Limits { max_len: usize::MAX, ..Limits::default() };
        let r = parse_filter_with(&input, limits);
        prop_assert_eq!(r.map_err(|e| e.position), Err(64 * open.len()));
    }

    #[test]
    fn beyond_terms_budget_fails(n in 1usize..40, extra in 1usize..5) {
        let input = vec!["a pr"; n + extra].join(" and ");
        let limits = Limits { max_terms: n, ..Limits::default() };
        let r = parse_filter_with(&input, limits);
        prop_assert_eq!(r.map_err(|e| e.position), Err(n * 9));
    }
}
