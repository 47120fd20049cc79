//! Comparison values: JSON strings, numbers, `true`, `false`, `null`.

use serde_json::{Number, Value};

use crate::ast::ParseError;

/// Decodes a string token (quotes included) found at byte offset `start`, with all JSON
/// escapes.
pub(crate) fn decode_string(text: &str, start: usize) -> Result<Value, ParseError> {
    serde_json::from_str::<String>(text)
        .map_err(|e| {
            // serde_json reports a 1-based column on the single line of `text` (the lexer
            // treats a raw newline inside a string like any other byte).
            let column = if e.line() <= 1 { e.column() } else { 0 };
            let at = start + column.saturating_sub(1).min(text.len());
            ParseError::new(at, format!("invalid string literal: {}", classify(&e)))
        })
        .and_then(|decoded| {
            // No stored value holds it (requests refuse it), and PostgreSQL
            // could not even compare with it.
            if decoded.contains('\0') {
                Err(ParseError::new(start, "U+0000 is not allowed in a string"))
            } else {
                Ok(Value::String(decoded))
            }
        })
}

fn classify(e: &serde_json::Error) -> String {
    // serde_json's message already says what is wrong; drop its own position suffix.
    let full = e.to_string();
    match full.find(" at line ") {
        Some(i) => full.get(..i).unwrap_or(&full).to_owned(),
        None => full,
    }
}

/// Parses a number token found at byte offset `start` with the JSON number grammar
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
///
/// Integers that fit `i64`/`u64` stay integers; everything else becomes a correctly
/// rounded `f64`. Values that overflow `f64` are rejected.
pub(crate) fn parse_number(text: &str, start: usize) -> Result<Value, ParseError> {
    let integral = check_json_number(text).map_err(|i| {
        ParseError::new(
            start + i,
            format!("invalid number {}", crate::parser::quote(text)),
        )
    })?;
    if integral {
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Value::Number(n.into()));
        }
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::Number(n.into()));
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| {
            ParseError::new(
                start,
                format!("number out of range {}", crate::parser::quote(text)),
            )
        })
}

/// Checks the JSON number grammar. `Ok(true)` for an integer (no fraction, no exponent);
/// `Err(i)` with the byte offset of the first offending character.
fn check_json_number(text: &str) -> Result<bool, usize> {
    let b = text.as_bytes();
    let mut i = 0;
    let at = |i: usize| b.get(i).copied();
    let digits = |mut i: usize| {
        while at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        i
    };
    if at(i) == Some(b'-') {
        i += 1;
    }
    match at(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => i = digits(i),
        _ => return Err(i),
    }
    let mut integral = true;
    if at(i) == Some(b'.') {
        integral = false;
        let after = digits(i + 1);
        if after == i + 1 {
            return Err(after);
        }
        i = after;
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        integral = false;
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let after = digits(i);
        if after == i {
            return Err(after);
        }
        i = after;
    }
    if i == b.len() { Ok(integral) } else { Err(i) }
}

/// `true`, `false` or `null`, case-insensitively.
pub(crate) fn keyword_literal(word: &str) -> Option<Value> {
    if word.eq_ignore_ascii_case("true") {
        Some(Value::Bool(true))
    } else if word.eq_ignore_ascii_case("false") {
        Some(Value::Bool(false))
    } else if word.eq_ignore_ascii_case("null") {
        Some(Value::Null)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers() {
        let ok: &[(&str, Value)] = &[
            ("0", json!(0)),
            ("-0", json!(0)),
            ("42", json!(42)),
            ("-42", json!(-42)),
            ("18446744073709551615", json!(u64::MAX)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("18446744073709551616", json!(18446744073709551616.0)),
            ("1.5", json!(1.5)),
            ("-0.25", json!(-0.25)),
            ("1e3", json!(1000.0)),
            ("1E+3", json!(1000.0)),
            ("2.5e-3", json!(0.0025)),
            ("10.0", json!(10.0)),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_number(text, 0).as_ref(), Ok(expected), "{text}");
        }
        let bad: &[(&str, usize)] = &[
            ("-", 1),
            ("01", 1),
            ("1.", 2),
            (".5", 0),
            ("1e", 2),
            ("1e+", 3),
            ("1abc", 1),
            ("1.5.3", 3),
            ("--1", 1),
            ("1-2", 1),
            ("-Infinity", 1),
        ];
        for (text, pos) in bad {
            let got = parse_number(text, 10).map_err(|e| e.position);
            assert_eq!(got, Err(10 + pos), "{text}");
        }
        assert!(parse_number("1e400", 0).is_err());
        assert!(parse_number("-1e400", 0).is_err());
        assert_eq!(parse_number("1e-400", 0), Ok(json!(0.0)));
    }

    #[test]
    fn strings() {
        assert_eq!(
            decode_string(r#""a\"b\\c\u00e9\n\/""#, 0),
            Ok(json!("a\"b\\cé\n/"))
        );
        assert_eq!(decode_string(r#""😀\ud83d\ude00""#, 0), Ok(json!("😀😀")));
        for bad in [
            r#""\x""#,
            r#""\ud800""#,
            "\"a\u{1}\"",
            r#""\u12""#,
            r#""a\u0000b""#,
        ] {
            let r = decode_string(bad, 5);
            assert!(
                r.as_ref()
                    .is_err_and(|e| e.position >= 5 && e.position <= 5 + bad.len()),
                "{bad:?}: {r:?}"
            );
        }
    }

    #[test]
    fn keywords() {
        assert_eq!(keyword_literal("TRUE"), Some(json!(true)));
        assert_eq!(keyword_literal("False"), Some(json!(false)));
        assert_eq!(keyword_literal("nUll"), Some(Value::Null));
        assert_eq!(keyword_literal("nil"), None);
    }
}
