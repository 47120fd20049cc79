//! Invalid filters: each error case with its byte position and message.

use super::*;
use crate::{Limits, parse_filter_with};

#[test]
fn filter_errors() {
    let table: &[(&str, usize, &str)] = &[
        // empty
        ("", 0, "empty filter"),
        ("   ", 3, "empty filter"),
        (
            "()",
            1,
            "expected attribute path, \"(\" or \"not\", found \")\"",
        ),
        // operators and values
        (
            "userName foo \"x\"",
            9,
            "expected comparison operator, found \"foo\"",
        ),
        (
            "userName",
            8,
            "expected comparison operator, found end of input",
        ),
        (
            "userName \"x\"",
            9,
            "expected comparison operator, found string literal",
        ),
        (
            "userName eq",
            11,
            "expected comparison value (string, number, true, false or null), found end of input",
        ),
        ("userName eq bjensen", 12, "expected comparison value"),
        ("userName eq )", 12, "expected comparison value"),
        ("a eq (1)", 5, "expected comparison value"),
        (
            "title pr \"x\"",
            9,
            "expected \"and\", \"or\" or end of input, found string",
        ),
        (
            "a eq 1 b eq 2",
            7,
            "expected \"and\", \"or\" or end of input, found \"b\"",
        ),
        (
            "a eq 1 and",
            10,
            "expected attribute path, \"(\" or \"not\", found end of input",
        ),
        ("a eq 1 or or", 12, "expected comparison operator"),
        ("a eq 1 xor b eq 2", 7, "found \"xor\""),
        // numbers
        ("a eq +1", 5, "unexpected character '+'"),
        ("a eq 01", 6, "invalid number \"01\""),
        ("a eq 1.", 7, "invalid number"),
        ("a eq .5", 5, "expected comparison value"),
        ("a eq 1abc", 6, "invalid number \"1abc\""),
        ("a eq NaN", 5, "expected comparison value"),
        ("a eq -", 6, "invalid number"),
        ("a eq 1e999", 5, "number out of range"),
        // strings
        ("a eq \"abc", 5, "unterminated string literal"),
        ("a eq \"abc\\\"", 5, "unterminated string literal"),
        ("a eq \"\\x\"", 7, "invalid string literal"),
        ("a eq 'x'", 5, "unexpected character '\\''"),
        ("a eq \"\\ud800\"", 12, "invalid string literal"),
        // not
        ("not a eq 1", 4, "expected \"(\" after \"not\", found \"a\""),
        ("not", 3, "expected \"(\" after \"not\", found end of input"),
        (
            "not (a eq 1",
            11,
            "expected \"and\", \"or\" or \")\", found end of input",
        ),
        ("not ()", 5, "expected attribute path"),
        // parentheses
        (
            "(a eq 1",
            7,
            "expected \"and\", \"or\" or \")\", found end of input",
        ),
        (
            "a eq 1)",
            6,
            "expected \"and\", \"or\" or end of input, found \")\"",
        ),
        ("((a eq 1)", 9, "found end of input"),
        ("(a eq 1))", 8, "found \")\""),
        (
            "(a eq 1]",
            7,
            "expected \"and\", \"or\" or \")\", found \"]\"",
        ),
        // value paths
        (
            "emails[type eq \"work\"",
            21,
            "expected \"and\", \"or\" or \"]\", found end of input",
        ),
        ("emails[]", 7, "expected value filter, found \"]\""),
        (
            "emails[type eq \"work\")",
            21,
            "expected \"and\", \"or\" or \"]\", found \")\"",
        ),
        ("emails]", 6, "expected comparison operator, found \"]\""),
        ("emails[type[value pr]]", 11, "nested value filter"),
        ("a[b pr] and x[y[z pr]]", 15, "nested value filter"),
        (
            "name.givenName[value pr]",
            14,
            "value filter not allowed on a sub-attribute",
        ),
        (
            "emails[urn:ietf:params:scim:schemas:core:2.0:User:type eq \"work\"]",
            7,
            "schema URN not allowed inside a value filter",
        ),
        (
            "emails[type eq \"work\"].value eq \"x\"",
            22,
            "sub-attribute after \"]\" is not allowed in a filter (write \"emails.value ...\"",
        ),
        (
            "emails[type eq \"work\"] pr",
            23,
            "expected \"and\", \"or\" or end of input",
        ),
        (
            "emails[type eq \"work\"] eq 1",
            23,
            "expected \"and\", \"or\" or end of input",
        ),
        // paths
        ("a.b.c pr", 3, "unexpected \".\" in attribute path"),
        ("a. pr", 2, "expected attribute name"),
        ("foo:bar pr", 3, "unexpected \":\" in attribute path"),
        (
            "1abc pr",
            0,
            "expected attribute path, \"(\" or \"not\", found \"1abc\"",
        ),
        ("_a pr", 0, "unexpected character '_'"),
        ("a$b pr", 1, "invalid character '$' in attribute name"),
        ("a.9 pr", 2, "attribute name must start with a letter"),
        ("urn:x pr", 0, "expected schema URN before attribute name"),
        ("urn:a::b:x pr", 6, "empty segment in schema URN"),
        ("urn:a:b: pr", 8, "expected attribute name"),
        ("urn:a$:b:x pr", 5, "invalid character '$' in schema URN"),
        ("é eq 1", 0, "unexpected character 'é'"),
        ("a eq 1 and é", 11, "unexpected character 'é'"),
        ("a eq \"é\" or ß", 13, "unexpected character 'ß'"),
        ("a eq 1 , b pr", 7, "found \",\""),
    ];
    for (input, position, message) in table {
        check_err(input, parse_filter(input), *position, message);
    }
}

#[test]
fn error_display() {
    let e = parse_filter("userName foo \"x\"");
    assert_eq!(
        e.map_err(|e| e.to_string()),
        Err("expected comparison operator, found \"foo\" at position 9".to_owned())
    );
    let err: Box<dyn std::error::Error> = Box::new(crate::ParseError {
        position: 1,
        message: "m".into(),
    });
    assert_eq!(err.to_string(), "m at position 1");
}

#[test]
fn long_tokens_are_cut_in_messages() {
    let long = "x".repeat(5000);
    let input = format!("a {long} 1");
    let r = parse_filter(&input);
    assert!(
        r.as_ref()
            .is_err_and(|e| e.position == 2 && e.message.len() < 120),
        "{r:?}"
    );
}

#[test]
fn length_budget() {
    let limits = Limits {
        max_len: 10,
        ..Limits::default()
    };
    assert_eq!(parse_filter_with("abcdef pr", limits), Ok(pr(p("abcdef"))));
    assert_eq!(
        parse_filter_with("abcdefg pr", limits),
        Ok(pr(p("abcdefg")))
    );
    check_err(
        "abcdefgh pr",
        parse_filter_with("abcdefgh pr", limits),
        10,
        "input exceeds the maximum length of 10 bytes",
    );
    let big = format!("a eq \"{}\"", "x".repeat(9000));
    check_err(
        &big,
        parse_filter(&big),
        8192,
        "maximum length of 8192 bytes",
    );
    check_err(&big, crate::parse_patch_path(&big), 8192, "maximum length");
    check_err(&big, crate::parse_attr_path(&big), 8192, "maximum length");
    check_err(&big, crate::parse_attr_list(&big), 8192, "maximum length");
}

#[test]
fn depth_budget() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let ok = "(((a pr)))";
    assert_eq!(parse_filter_with(ok, limits), Ok(pr(p("a"))));
    let ok = "not (x[not (a pr)])";
    assert!(parse_filter_with(ok, limits).is_ok());
    let table: &[(&str, usize)] = &[
        ("((((a pr))))", 3),
        ("not (not (not (not (a pr))))", 15),
        ("not ((x[not (a pr)]))", 8),
        ("(b pr) and (((x[a pr])))", 15),
    ];
    for (input, position) in table {
        check_err(
            input,
            parse_filter_with(input, limits),
            *position,
            "nested too deeply (maximum depth 3)",
        );
    }
    // Depth is released when a group closes.
    let wide = "((a pr)) and ((b pr)) and ((((c pr))) or (d pr))";
    let limits = Limits {
        max_depth: 4,
        ..Limits::default()
    };
    assert!(parse_filter_with(wide, limits).is_ok());
    // Default: 64 levels pass, 65 fail.
    let nested = |n: usize| format!("{}a pr{}", "(".repeat(n), ")".repeat(n));
    assert_eq!(parse_filter(&nested(64)), Ok(pr(p("a"))));
    check_err("65", parse_filter(&nested(65)), 64, "nested too deeply");
}

#[test]
fn huge_nesting_does_not_overflow() {
    let input = "(".repeat(100_000);
    let limits = Limits {
        max_len: usize::MAX,
        ..Limits::default()
    };
    check_err(
        "(*100000",
        parse_filter_with(&input, limits),
        64,
        "nested too deeply",
    );
    let input = format!("{}a pr{}", "not (".repeat(20_000), ")".repeat(20_000));
    check_err(
        "not*20000",
        parse_filter_with(&input, limits),
        64 * 5,
        "nested too deeply",
    );
    let input = format!("{}a pr", "x[".repeat(50_000));
    check_err(
        "x[*50000",
        parse_filter_with(&input, limits),
        3,
        "nested value filter",
    );
    // Within the default length budget.
    let input = "(".repeat(8192);
    check_err("(*8192", parse_filter(&input), 64, "nested too deeply");
}

#[test]
fn terms_budget() {
    let limits = Limits {
        max_terms: 3,
        ..Limits::default()
    };
    assert!(parse_filter_with("a pr and b eq 1 or c[d pr]", limits).is_ok());
    check_err(
        "4 terms",
        parse_filter_with("a pr and b eq 1 or c[d pr and e pr]", limits),
        30,
        "too many terms (maximum 3)",
    );
    let many = |n: usize| vec!["a pr"; n].join(" or ");
    let limits = Limits {
        max_len: usize::MAX,
        ..Limits::default()
    };
    assert!(parse_filter_with(&many(1024), limits).is_ok());
    check_err(
        "1025",
        parse_filter_with(&many(1025), limits),
        1024 * 8,
        "too many terms (maximum 1024)",
    );
}
