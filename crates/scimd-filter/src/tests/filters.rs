//! Valid filters: every operator, keywords, precedence, value paths, URNs, literals.

use serde_json::{Value, json};

use super::*;
use crate::CompareOp::*;

#[test]
fn every_operator() {
    for op in CompareOp::ALL {
        let kw = op.as_str();
        check(&format!("title {kw} \"x\""), &cmp(p("title"), op, "x"));
        check(
            &format!("title {} \"x\"", kw.to_uppercase()),
            &cmp(p("title"), op, "x"),
        );
        assert_eq!(CompareOp::from_keyword(kw), Some(op));
        assert_eq!(op.to_string(), kw);
    }
    check("title pr", &pr(p("title")));
    check("title PR", &pr(p("title")));
    check("title Pr", &pr(p("title")));
}

#[test]
fn rfc_examples() {
    let table: Vec<(&str, Filter)> = vec![
        (r#"userName eq "bjensen""#, eq("userName", "bjensen")),
        (
            r#"name.familyName co "O'Malley""#,
            cmp(ps("name", "familyName"), Co, "O'Malley"),
        ),
        (r#"userName sw "J""#, cmp(p("userName"), Sw, "J")),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            cmp(pu(CORE_USER, "userName", None), Sw, "J"),
        ),
        ("title pr", pr(p("title"))),
        (
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            cmp(ps("meta", "lastModified"), Gt, "2011-05-13T04:42:34Z"),
        ),
        (
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            cmp(ps("meta", "lastModified"), Ge, "2011-05-13T04:42:34Z"),
        ),
        (
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            cmp(ps("meta", "lastModified"), Lt, "2011-05-13T04:42:34Z"),
        ),
        (
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            cmp(ps("meta", "lastModified"), Le, "2011-05-13T04:42:34Z"),
        ),
        (
            r#"title pr and userType eq "Employee""#,
            and(pr(p("title")), eq("userType", "Employee")),
        ),
        (
            r#"title pr or userType eq "Intern""#,
            or(pr(p("title")), eq("userType", "Intern")),
        ),
        (
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            eq("schemas", ENTERPRISE),
        ),
        (
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            and(
                eq("userType", "Employee"),
                or(
                    cmp(p("emails"), Co, "example.com"),
                    cmp(ps("emails", "value"), Co, "example.org"),
                ),
            ),
        ),
        (
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            and(
                cmp(p("userType"), Ne, "Employee"),
                not(or(
                    cmp(p("emails"), Co, "example.com"),
                    cmp(ps("emails", "value"), Co, "example.org"),
                )),
            ),
        ),
        (
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            and(
                eq("userType", "Employee"),
                cmp(ps("emails", "type"), Eq, "work"),
            ),
        ),
        (
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            and(
                eq("userType", "Employee"),
                vp(
                    p("emails"),
                    and(eq("type", "work"), cmp(p("value"), Co, "@example.com")),
                ),
            ),
        ),
        (
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            or(
                vp(
                    p("emails"),
                    and(eq("type", "work"), cmp(p("value"), Co, "@example.com")),
                ),
                vp(
                    p("ims"),
                    and(eq("type", "xmpp"), cmp(p("value"), Co, "@foo.com")),
                ),
            ),
        ),
    ];
    for (input, expected) in &table {
        check(input, expected);
    }
}

#[test]
fn keywords_are_case_insensitive() {
    let expected = and(
        not(eq("a", 1)),
        or(eq("b", true), cmp(p("c"), Ne, Value::Null)),
    );
    for input in [
        "not (a eq 1) and (b eq true or c ne null)",
        "NOT (a EQ 1) AND (b Eq TRUE OR c NE NULL)",
        "Not(a eQ 1) And(b eq True oR c nE Null)",
    ] {
        check(input, &expected);
    }
    check("a eq FALSE", &eq("a", false));
}

#[test]
fn precedence_and_grouping() {
    let (a, b, c, d) = (eq("a", 1), eq("b", 2), eq("c", 3), eq("d", 4));
    let table: Vec<(&str, Filter)> = vec![
        (
            "a eq 1 or b eq 2 and c eq 3",
            or(a.clone(), and(b.clone(), c.clone())),
        ),
        (
            "a eq 1 and b eq 2 or c eq 3",
            or(and(a.clone(), b.clone()), c.clone()),
        ),
        (
            "(a eq 1 or b eq 2) and c eq 3",
            and(or(a.clone(), b.clone()), c.clone()),
        ),
        (
            "a eq 1 and b eq 2 and c eq 3",
            and(and(a.clone(), b.clone()), c.clone()),
        ),
        (
            "a eq 1 or b eq 2 or c eq 3",
            or(or(a.clone(), b.clone()), c.clone()),
        ),
        (
            "a eq 1 and (b eq 2 and c eq 3)",
            and(a.clone(), and(b.clone(), c.clone())),
        ),
        (
            "a eq 1 or (b eq 2 or c eq 3)",
            or(a.clone(), or(b.clone(), c.clone())),
        ),
        (
            "a eq 1 or b eq 2 and c eq 3 or d eq 4",
            or(or(a.clone(), and(b.clone(), c.clone())), d.clone()),
        ),
        ("not (a eq 1) and b eq 2", and(not(a.clone()), b.clone())),
        ("not (a eq 1 and b eq 2)", not(and(a.clone(), b.clone()))),
        ("not (not (a eq 1))", not(not(a.clone()))),
        ("(((a eq 1)))", a.clone()),
        ("((a eq 1) or (b eq 2))", or(a.clone(), b.clone())),
        (
            "not (a eq 1 or b eq 2) or not (c eq 3) and d eq 4",
            or(
                not(or(a.clone(), b.clone())),
                and(not(c.clone()), d.clone()),
            ),
        ),
    ];
    for (input, expected) in &table {
        check(input, expected);
    }
}

#[test]
fn display_is_canonical() {
    let table: Vec<(&str, &str)> = vec![
        ("a eq 1 or b eq 2 and c eq 3", "a eq 1 or b eq 2 and c eq 3"),
        (
            "(a eq 1 or b eq 2) and c eq 3",
            "(a eq 1 or b eq 2) and c eq 3",
        ),
        (
            "a eq 1 and (b eq 2 and c eq 3)",
            "a eq 1 and (b eq 2 and c eq 3)",
        ),
        ("((a EQ 1))  AND   b PR", "a eq 1 and b pr"),
        ("NOT(a eq 1)", "not (a eq 1)"),
        (r#"emails[TYPE eq "work"]"#, r#"emails[TYPE eq "work"]"#),
        (r#"a eq "\u00e9\/\t""#, r#"a eq "é/\t""#),
        ("a eq 1.50", "a eq 1.5"),
        ("a eq 1E2", "a eq 100.0"),
        ("a eq -0", "a eq 0"),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"x\"",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"x\"",
        ),
    ];
    for (input, canonical) in table {
        let parsed = parse_filter(input);
        assert_eq!(
            parsed.as_ref().map(ToString::to_string).as_deref(),
            Ok(canonical),
            "input {input:?}"
        );
    }
}

#[test]
fn whitespace_tolerance() {
    let expected = and(vp(p("emails"), eq("type", "work")), not(pr(p("title"))));
    for input in [
        r#"emails[type eq "work"] and not (title pr)"#,
        r#"  emails [ type   eq	"work" ]	and not(title pr)  "#,
        r#"emails[type eq"work"]and not(title pr)"#,
        "emails[type eq \"work\"]\r\nand\nnot ( title pr )",
    ] {
        check(input, &expected);
    }
}

#[test]
fn value_paths() {
    let table: Vec<(&str, Filter)> = vec![
        (
            r#"emails[type eq "work"]"#,
            vp(p("emails"), eq("type", "work")),
        ),
        (
            r#"emails[type eq "work" or primary eq true]"#,
            vp(p("emails"), or(eq("type", "work"), eq("primary", true))),
        ),
        (
            r#"emails[not (type eq "work") and (value pr)]"#,
            vp(p("emails"), and(not(eq("type", "work")), pr(p("value")))),
        ),
        (
            r#"addresses[postalCode.x eq "1"]"#,
            vp(p("addresses"), cmp(ps("postalCode", "x"), Eq, "1")),
        ),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"]"#,
            vp(pu(CORE_USER, "emails", None), eq("type", "work")),
        ),
        (
            r#"members[$ref co "/Users/"]"#,
            vp(p("members"), cmp(p("$ref"), Co, "/Users/")),
        ),
        (
            r#"x[a pr] and y[b pr] or z[c pr]"#,
            or(
                and(vp(p("x"), pr(p("a"))), vp(p("y"), pr(p("b")))),
                vp(p("z"), pr(p("c"))),
            ),
        ),
        (
            r#"not (emails[type pr])"#,
            not(vp(p("emails"), pr(p("type")))),
        ),
    ];
    for (input, expected) in &table {
        check(input, expected);
    }
}

#[test]
fn paths_and_names() {
    let table: Vec<(&str, Filter)> = vec![
        ("name.familyName pr", pr(ps("name", "familyName"))),
        ("NAME.FamilyName pr", pr(ps("NAME", "FamilyName"))),
        ("x-y_z9 pr", pr(p("x-y_z9"))),
        ("members.$ref pr", pr(ps("members", "$ref"))),
        ("$ref pr", pr(p("$ref"))),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"Sales\"",
            eq_path(pu(ENTERPRISE, "department", None), "Sales"),
        ),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"26118915\"",
            eq_path(pu(ENTERPRISE, "manager", Some("value")), "26118915"),
        ),
        (
            "urn:se:curity:scim:2.0:Devices:deviceId pr",
            pr(pu("urn:se:curity:scim:2.0:Devices", "deviceId", None)),
        ),
        (
            "URN:IETF:params:scim:schemas:core:2.0:User:name.givenName pr",
            pr(pu(
                "URN:IETF:params:scim:schemas:core:2.0:User",
                "name",
                Some("givenName"),
            )),
        ),
        // Keywords are valid attribute names where a path is expected.
        ("not eq 1", eq("not", 1)),
        ("not pr and and pr", and(pr(p("not")), pr(p("and")))),
        ("NOT[or eq true]", vp(p("NOT"), eq("or", true))),
        ("eq eq \"eq\"", eq("eq", "eq")),
        ("true eq true", eq("true", true)),
        ("pr pr", pr(p("pr"))),
    ];
    for (input, expected) in &table {
        check(input, expected);
    }
}

fn eq_path(path: AttrPath, value: &str) -> Filter {
    cmp(path, Eq, value)
}

#[test]
fn literals() {
    let table: Vec<(&str, Value)> = vec![
        (r#""""#, json!("")),
        (r#""a\"b\\c\u00e9""#, json!("a\"b\\cé")),
        (r#""\b\f\n\r\t\/""#, json!("\u{8}\u{c}\n\r\t/")),
        (r#""\ud83d\ude00 ünï""#, json!("😀 ünï")),
        (
            r#""with ] and ) and \" inside""#,
            json!("with ] and ) and \" inside"),
        ),
        ("0", json!(0)),
        ("42", json!(42)),
        ("-17", json!(-17)),
        ("9223372036854775807", json!(i64::MAX)),
        ("18446744073709551615", json!(u64::MAX)),
        ("-9223372036854775808", json!(i64::MIN)),
        ("3.25", json!(3.25)),
        ("-0.5", json!(-0.5)),
        ("1e3", json!(1000.0)),
        ("2.5E-2", json!(0.025)),
        ("true", json!(true)),
        ("TRUE", json!(true)),
        ("false", json!(false)),
        ("False", json!(false)),
        ("null", Value::Null),
        ("NULL", Value::Null),
    ];
    for (literal, value) in table {
        let input = format!("a eq {literal}");
        check(&input, &cmp(p("a"), Eq, value.clone()));
        let input = format!("x[a gt {literal}]");
        check(&input, &vp(p("x"), cmp(p("a"), Gt, value)));
    }
    // Integers stay integers, decimals are floats.
    assert!(matches!(
        parse_filter("a eq 5"),
        Ok(Filter::Compare { value: Value::Number(n), .. }) if n.is_u64()
    ));
    assert!(matches!(
        parse_filter("a eq -5"),
        Ok(Filter::Compare { value: Value::Number(n), .. }) if n.is_i64()
    ));
    assert!(matches!(
        parse_filter("a eq 5.0"),
        Ok(Filter::Compare { value: Value::Number(n), .. }) if n.is_f64()
    ));
}
