//! Splitting and validating one attribute-path word (`urn:...:name.sub`).

use crate::ast::{AttrPath, ParseError};

/// Splits the word token `text` (found at byte offset `start`) into an [`AttrPath`].
///
/// A word starting with `urn:` (any case) is URN-qualified: the URN is everything before
/// the last `:`, so the dots inside URNs (`2.0`) never split a sub-attribute.
pub(crate) fn split_path(text: &str, start: usize) -> Result<AttrPath, ParseError> {
    let is_urn = text
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    let (urn, rest, rest_start) = if is_urn {
        // `rfind` cannot miss: the word starts with "urn:".
        let colon = text.rfind(':').unwrap_or(3);
        let urn = text.get(..colon).unwrap_or_default();
        validate_urn(urn, start)?;
        let rest = text.get(colon + 1..).unwrap_or_default();
        (Some(urn.to_owned()), rest, start + colon + 1)
    } else {
        if let Some(i) = text.find(':') {
            return Err(ParseError::new(
                start + i,
                "unexpected \":\" in attribute path (a schema URN must start with \"urn:\")",
            ));
        }
        (None, text, start)
    };
    let (name, sub) = match rest.split_once('.') {
        None => (rest, None),
        Some((name, sub)) => {
            let sub_start = rest_start + name.len() + 1;
            if let Some(i) = sub.find('.') {
                return Err(ParseError::new(
                    sub_start + i,
                    "unexpected \".\" in attribute path (at most one sub-attribute)",
                ));
            }
            validate_name(sub, sub_start)?;
            (name, Some(sub.to_owned()))
        }
    };
    validate_name(name, rest_start)?;
    Ok(AttrPath {
        urn,
        name: name.to_owned(),
        sub,
    })
}

/// Checks `ATTRNAME = ALPHA *(nameChar)` (or the special name `$ref`) for `name` found at
/// byte offset `start`.
pub(crate) fn validate_name(name: &str, start: usize) -> Result<(), ParseError> {
    if name.eq_ignore_ascii_case("$ref") {
        return Ok(());
    }
    let mut chars = name.char_indices();
    match chars.next() {
        None => return Err(ParseError::new(start, "expected attribute name")),
        Some((_, c)) if c.is_ascii_alphabetic() => {}
        Some((_, c)) => {
            return Err(ParseError::new(
                start,
                format!("attribute name must start with a letter, found {c:?}"),
            ));
        }
    }
    for (i, c) in chars {
        if !(c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ParseError::new(
                start + i,
                format!("invalid character {c:?} in attribute name"),
            ));
        }
    }
    Ok(())
}

/// Checks a schema URN prefix: `urn:` then one or more non-empty `:`-separated segments
/// of `[A-Za-z0-9._-]`.
fn validate_urn(urn: &str, start: usize) -> Result<(), ParseError> {
    let body = urn.get(4..).unwrap_or_default();
    if body.is_empty() {
        return Err(ParseError::new(
            start,
            "expected schema URN before attribute name",
        ));
    }
    let mut seg_len = 0;
    for (i, c) in body.char_indices() {
        let at = start + 4 + i;
        if c == ':' {
            if seg_len == 0 {
                return Err(ParseError::new(at, "empty segment in schema URN"));
            }
            seg_len = 0;
        } else if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
            seg_len += 1;
        } else {
            return Err(ParseError::new(
                at,
                format!("invalid character {c:?} in schema URN"),
            ));
        }
    }
    if seg_len == 0 {
        return Err(ParseError::new(
            start + urn.len(),
            "empty segment in schema URN",
        ));
    }
    Ok(())
}
