//! `sortBy` / `attributes` paths and lists.

use super::*;
use crate::{parse_attr_list, parse_attr_path};

#[test]
fn attr_paths() {
    let table: Vec<(&str, AttrPath)> = vec![
        ("userName", p("userName")),
        ("  userName\t", p("userName")),
        ("meta.lastModified", ps("meta", "lastModified")),
        ("members.$ref", ps("members", "$ref")),
        ("$ref", p("$ref")),
        ("EMAILS.VALUE", ps("EMAILS", "VALUE")),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            pu(ENTERPRISE, "department", None),
        ),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            pu(ENTERPRISE, "manager", Some("value")),
        ),
        (
            "urn:se:curity:scim:2.0:Devices:deviceId",
            pu("urn:se:curity:scim:2.0:Devices", "deviceId", None),
        ),
        // A bare schema URN: the schema layer recognises it.
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            pu(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0",
                "User",
                None,
            ),
        ),
    ];
    for (input, expected) in &table {
        assert_eq!(
            parse_attr_path(input).as_ref(),
            Ok(expected),
            "input {input:?}"
        );
        let text = expected.to_string();
        assert_eq!(
            parse_attr_path(&text).as_ref(),
            Ok(expected),
            "display {text:?}"
        );
    }
    let errors: &[(&str, usize, &str)] = &[
        ("", 0, "empty attribute path"),
        (
            "emails[type eq \"work\"]",
            6,
            "expected end of input, found \"[\"",
        ),
        ("a,b", 1, "expected end of input, found \",\""),
        ("a b", 2, "expected end of input, found \"b\""),
        ("a.b.c", 3, "unexpected \".\""),
        ("\"a\"", 0, "expected attribute path, found string"),
        ("9a", 0, "expected attribute path, found \"9a\""),
        ("urn:a:", 6, "expected attribute name"),
    ];
    for (input, position, message) in errors {
        check_err(input, parse_attr_path(input), *position, message);
    }
}

#[test]
fn attr_lists() {
    let table: Vec<(&str, Vec<AttrPath>)> = vec![
        ("", vec![]),
        ("   ", vec![]),
        ("userName", vec![p("userName")]),
        (
            "userName, emails.value,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            vec![
                p("userName"),
                ps("emails", "value"),
                pu(ENTERPRISE, "department", None),
            ],
        ),
        (" a ,b\t,  c ", vec![p("a"), p("b"), p("c")]),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User,id",
            vec![
                pu(
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0",
                    "User",
                    None,
                ),
                p("id"),
            ],
        ),
    ];
    for (input, expected) in &table {
        assert_eq!(
            parse_attr_list(input).as_ref(),
            Ok(expected),
            "input {input:?}"
        );
    }
    let errors: &[(&str, usize, &str)] = &[
        ("a,", 2, "expected attribute path, found end of input"),
        (",a", 0, "expected attribute path, found \",\""),
        ("a,,b", 2, "expected attribute path, found \",\""),
        ("a b", 2, "expected \",\" or end of input, found \"b\""),
        ("a[b pr]", 1, "expected \",\" or end of input, found \"[\""),
        ("a, b.c.d", 6, "unexpected \".\""),
        ("a;b", 1, "unexpected character ';'"),
    ];
    for (input, position, message) in errors {
        check_err(input, parse_attr_list(input), *position, message);
    }
    let many = vec!["a"; 1025].join(",");
    check_err(
        "1025 entries",
        parse_attr_list(&many),
        2048,
        "too many terms",
    );
    assert_eq!(
        parse_attr_list(&vec!["a"; 1024].join(",")).map(|v| v.len()),
        Ok(1024)
    );
}
