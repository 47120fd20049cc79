//! `scimd-filter`: the SCIM 2.0 filter and path parser (RFC 7644 sections 3.4.2.2, 3.5.2
//! and 3.10).
//!
//! One hand-written lexer serves four entry points:
//!
//! * [`parse_filter`] / [`parse_filter_with`]: the `filter` query parameter (and the
//!   `filter` member of a `.search` body) into a [`Filter`];
//! * [`parse_patch_path`] / [`parse_patch_path_with`]: the `path` of a PATCH operation
//!   into a [`PatchPath`];
//! * [`parse_attr_path`]: `sortBy`, or one entry of `attributes` / `excludedAttributes`;
//! * [`parse_attr_list`]: a whole comma-separated `attributes` list.
//!
//! Operators and keywords (`eq`, `and`, `not`, `true`, ...) are case-insensitive;
//! attribute names keep the client's case (the schema layer matches them). Every parsed
//! value has a canonical [`Display`](std::fmt::Display) text that parses back to an equal
//! value.
//!
//! ```
//! use scimd_filter::{parse_filter, parse_patch_path, Filter};
//!
//! let filter = parse_filter(r#"userName Eq "bjensen" AND emails[type eq "work"]"#)?;
//! assert!(matches!(filter, Filter::And(..)));
//! assert_eq!(filter.to_string(), r#"userName eq "bjensen" and emails[type eq "work"]"#);
//!
//! let path = parse_patch_path(r#"emails[type eq "work"].value"#)?;
//! assert_eq!(path.sub.as_deref(), Some("value"));
//!
//! let err = parse_filter("userName foo \"x\"").unwrap_err();
//! assert_eq!(err.to_string(), r#"expected comparison operator, found "foo" at position 9"#);
//! # Ok::<(), scimd_filter::ParseError>(())
//! ```
//!
//! # Invariants
//!
//! * **No panic.** Any `&str` input yields `Ok` or `Err`; the crate uses no `unwrap`,
//!   `expect`, `panic!` or panicking slice indexing.
//! * **Budgets** ([`Limits`], default 8192 bytes, depth 64, 1024 terms):
//!   an input longer than `max_len` fails at position `max_len` before it is looked at;
//!   each `(`, `not (` and `[` opens one nesting level and level `max_depth + 1` fails at
//!   its opening token; term `max_terms + 1` (comparison or `pr`; for attribute lists,
//!   entry) fails at its start. Recursion only happens per nesting level, so the stack
//!   depth is bounded by `max_depth` whatever the input (100,000 `(` fail cleanly).
//!   The resulting tree is at most `max_depth + max_terms` deep (an `a and b and ...`
//!   chain nests to the left); `Display`, `Drop` and `PartialEq` recurse over it, so keep
//!   `max_terms` in the thousands, as the default does.
//! * **Linear time.** One lexing pass, then the parser looks at each token a bounded
//!   number of times; error messages quote at most 32 characters of input.
//! * **Positions.** [`ParseError::position`] is a byte offset into the input as given
//!   (never past its end, except the `max_len` error), pointing at the first offending
//!   token or character; the message says what was expected and what was found, e.g.
//!   `expected comparison operator, found "foo" at position 9`.
//!
//! # Grammar notes
//!
//! * Precedence `not` > `and` > `or`, both binary operators left-associative. `not` must
//!   be followed by a parenthesised filter (`not (a pr)` or `not(a pr)`); a word `not`
//!   followed by an operator or `[` is an attribute named `not`.
//! * A path starting with `urn:` is URN-qualified: the URN is everything before the last
//!   `:` (URNs contain dots, as in `2.0`), then `name` and an optional `.sub`.
//! * Values are JSON strings (all escapes), JSON numbers (integers stay integers, others
//!   are `f64`), and `true` / `false` / `null`.
//! * Value paths (`emails[type eq "work"]`) hold relative paths only: no URN and no nested
//!   `[`. The non-RFC filter form `emails[type eq "work"].value eq "x"` is rejected; it is
//!   only valid as a PATCH path (`emails[type eq "work"].value`).

mod ast;
mod display;
mod lexer;
mod literal;
mod parser;
mod path;

#[cfg(test)]
mod tests;

pub use ast::{AttrPath, CompareOp, Filter, Limits, ParseError, PatchPath};

use parser::Parser;

/// Parses a SCIM filter with the default [`Limits`].
pub fn parse_filter(input: &str) -> Result<Filter, ParseError> {
    parse_filter_with(input, Limits::default())
}

/// Parses a SCIM filter with the given [`Limits`].
pub fn parse_filter_with(input: &str, limits: Limits) -> Result<Filter, ParseError> {
    Parser::new(input, limits)?.filter()
}

/// Parses one attribute path (`sortBy`, one entry of `attributes`) with the default
/// [`Limits`]. Surrounding whitespace is allowed.
pub fn parse_attr_path(input: &str) -> Result<AttrPath, ParseError> {
    Parser::new(input, Limits::default())?.attr_path()
}

/// Parses a comma-separated attribute list (`userName, emails.value,urn:...:User:department`)
/// with the default [`Limits`]. Whitespace around commas is allowed; an empty (or blank)
/// input gives an empty list.
pub fn parse_attr_list(input: &str) -> Result<Vec<AttrPath>, ParseError> {
    Parser::new(input, Limits::default())?.attr_list()
}

/// Parses a PATCH operation path (RFC 7644 section 3.5.2) with the default [`Limits`].
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ParseError> {
    parse_patch_path_with(input, Limits::default())
}

/// Parses a PATCH operation path with the given [`Limits`].
pub fn parse_patch_path_with(input: &str, limits: Limits) -> Result<PatchPath, ParseError> {
    Parser::new(input, limits)?.patch_path()
}
