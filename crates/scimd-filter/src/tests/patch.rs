//! PATCH paths (RFC 7644 section 3.5.2).

use super::*;
use crate::{Limits, PatchPath, parse_patch_path, parse_patch_path_with};

fn pp(attr: AttrPath, filter: Option<Filter>, sub: Option<&str>) -> PatchPath {
    PatchPath {
        attr,
        filter,
        sub: sub.map(str::to_owned),
    }
}

#[test]
fn patch_path_forms() {
    let table: Vec<(&str, PatchPath)> = vec![
        ("userName", pp(p("userName"), None, None)),
        ("  userName ", pp(p("userName"), None, None)),
        ("name.familyName", pp(ps("name", "familyName"), None, None)),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            pp(pu(ENTERPRISE, "employeeNumber", None), None, None),
        ),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            pp(pu(ENTERPRISE, "manager", Some("value")), None, None),
        ),
        (
            "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]",
            pp(
                p("members"),
                Some(eq("value", "2819c223-7f76-453a-919d-413861904646")),
                None,
            ),
        ),
        (
            "emails[type eq \"work\"].value",
            pp(p("emails"), Some(eq("type", "work")), Some("value")),
        ),
        (
            "addresses[type eq \"work\"].locality",
            pp(p("addresses"), Some(eq("type", "work")), Some("locality")),
        ),
        (
            "members[value eq \"a\" or value eq \"b\"]",
            pp(
                p("members"),
                Some(or(eq("value", "a"), eq("value", "b"))),
                None,
            ),
        ),
        (
            "emails[type eq \"work\" and not (primary eq false)].display",
            pp(
                p("emails"),
                Some(and(eq("type", "work"), not(eq("primary", false)))),
                Some("display"),
            ),
        ),
        (
            "urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq \"work\"].value",
            pp(
                pu(CORE_USER, "emails", None),
                Some(eq("type", "work")),
                Some("value"),
            ),
        ),
        (
            "emails [ TYPE EQ \"work\" ] .$ref",
            pp(p("emails"), Some(eq("TYPE", "work")), Some("$ref")),
        ),
        (
            "x[name.givenName pr]",
            pp(p("x"), Some(pr(ps("name", "givenName"))), None),
        ),
    ];
    for (input, expected) in &table {
        assert_eq!(
            parse_patch_path(input).as_ref(),
            Ok(expected),
            "input {input:?}"
        );
        let text = expected.to_string();
        assert_eq!(
            parse_patch_path(&text).as_ref(),
            Ok(expected),
            "display {text:?}"
        );
    }
    assert_eq!(
        parse_patch_path("emails[TYPE Eq \"work\"]  .value").map(|p| p.to_string()),
        Ok("emails[TYPE eq \"work\"].value".to_owned())
    );
}

#[test]
fn patch_path_errors() {
    let table: &[(&str, usize, &str)] = &[
        ("", 0, "empty path"),
        (" ", 1, "empty path"),
        ("(emails)", 0, "expected attribute path, found \"(\""),
        (
            "emails eq \"x\"",
            7,
            "expected \"[\" or end of input, found \"eq\"",
        ),
        ("a.b.c", 3, "unexpected \".\" in attribute path"),
        ("emails[]", 7, "expected value filter, found \"]\""),
        (
            "emails[type eq \"work\"",
            21,
            "expected \"and\", \"or\" or \"]\", found end of input",
        ),
        (
            "emails[type eq \"work\"].",
            23,
            "expected sub-attribute name, found end of input",
        ),
        (
            "emails[type eq \"work\"]value",
            22,
            "expected \".\" or end of input, found \"value\"",
        ),
        (
            "emails[type eq \"work\"][value pr]",
            22,
            "expected \".\" or end of input, found \"[\"",
        ),
        (
            "emails[type eq \"work\"].value.x",
            28,
            "invalid character '.' in attribute name",
        ),
        (
            "emails[type eq \"work\"].urn:x:y",
            26,
            "invalid character ':' in attribute name",
        ),
        (
            "emails[type eq \"work\"].value[x pr]",
            28,
            "expected end of input, found \"[\"",
        ),
        (
            "emails[type eq \"work\"].value eq 1",
            29,
            "expected end of input, found \"eq\"",
        ),
        (
            "name.familyName[value pr]",
            15,
            "value filter not allowed on a sub-attribute",
        ),
        ("emails[type[value pr]]", 11, "nested value filter"),
        (
            "emails[urn:ietf:params:scim:schemas:core:2.0:User:type pr]",
            7,
            "schema URN not allowed inside a value filter",
        ),
        ("emails[type eq]", 14, "expected comparison value"),
        (
            "emails[type eq \"x\"]]",
            19,
            "expected \".\" or end of input, found \"]\"",
        ),
    ];
    for (input, position, message) in table {
        check_err(input, parse_patch_path(input), *position, message);
    }
    let limits = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(parse_patch_path_with("a[(b pr)]", limits).is_ok());
    check_err(
        "a[((b pr))]",
        parse_patch_path_with("a[((b pr))]", limits),
        3,
        "nested too deeply",
    );
    let limits = Limits {
        max_terms: 1,
        ..Limits::default()
    };
    check_err(
        "a[b pr or c pr]",
        parse_patch_path_with("a[b pr or c pr]", limits),
        10,
        "too many terms",
    );
}
