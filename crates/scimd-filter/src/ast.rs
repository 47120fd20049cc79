//! The parsed forms: attribute paths, filters, PATCH paths, errors and limits.

use std::fmt;

/// An attribute path: optional schema URN, attribute name, optional sub-attribute.
///
/// * `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value` ->
///   `urn = Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")`,
///   `name = "manager"`, `sub = Some("value")`
/// * `name.familyName` -> `urn = None`, `name = "name"`, `sub = Some("familyName")`
///
/// Names keep the case the client sent; matching is the schema layer's job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URN prefix, without the trailing `:`.
    pub urn: Option<String>,
    /// The attribute name (`ALPHA *(ALPHA / DIGIT / "-" / "_")` or `$ref`).
    pub name: String,
    /// The sub-attribute name, if any.
    pub sub: Option<String>,
}

impl AttrPath {
    /// A path with just a name: no URN, no sub-attribute.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: None,
        }
    }

    /// A path `name.sub`.
    pub fn with_sub(name: impl Into<String>, sub: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: Some(sub.into()),
        }
    }
}

/// A comparison operator of an attribute expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `eq`: equal
    Eq,
    /// `ne`: not equal
    Ne,
    /// `co`: contains
    Co,
    /// `sw`: starts with
    Sw,
    /// `ew`: ends with
    Ew,
    /// `gt`: greater than
    Gt,
    /// `ge`: greater than or equal
    Ge,
    /// `lt`: less than
    Lt,
    /// `le`: less than or equal
    Le,
}

impl CompareOp {
    /// All operators, in RFC order.
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The canonical (lower-case) keyword.
    pub fn as_str(&self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator for a keyword, compared case-insensitively (`pr` is not a comparison).
    pub fn from_keyword(word: &str) -> Option<CompareOp> {
        CompareOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

/// A parsed SCIM filter (RFC 7644 section 3.4.2.2).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attr op value`; value is a JSON string, number, bool or null
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: serde_json::Value,
    },
    /// `attr pr`
    Present { path: AttrPath },
    /// `left and right`
    And(Box<Filter>, Box<Filter>),
    /// `left or right`
    Or(Box<Filter>, Box<Filter>),
    /// `not (inner)`
    Not(Box<Filter>),
    /// `emails[type eq "work" and value co "@x"]`: `path` has no sub-attribute; the inner
    /// filter's paths are relative to the element (plain names or `name.sub`, no URN), and
    /// a value path never nests inside another.
    ValuePath { path: AttrPath, filter: Box<Filter> },
}

/// A PATCH path (RFC 7644 section 3.5.2): `attr`, `attr.sub`, `urn:...:attr[.sub]`,
/// `attr[filter]`, `attr[filter].sub`.
///
/// When `filter` is `Some`, `attr.sub` is `None` and the `.sub` after `]` is in
/// [`PatchPath::sub`]. When `filter` is `None`, a sub-attribute stays in `attr.sub` and
/// [`PatchPath::sub`] is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The targeted attribute.
    pub attr: AttrPath,
    /// The value filter between `[` and `]`, if any.
    pub filter: Option<Filter>,
    /// The sub-attribute after `]`, if any.
    pub sub: Option<String>,
}

/// A parse error: where (byte offset into the input) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the input at which the problem was found.
    pub position: usize,
    /// A short description, usually `expected X, found Y`.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

impl std::error::Error for ParseError {}

/// Budgets enforced while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum input length in bytes.
    pub max_len: usize,
    /// Maximum nesting depth; each `(`, `not (` and `[` opens one level.
    pub max_depth: usize,
    /// Maximum number of attribute expressions (comparisons and `pr`), or of entries in
    /// an attribute list.
    pub max_terms: usize,
}

impl Limits {
    /// The default budgets: 8192 bytes, depth 64, 1024 terms.
    pub const DEFAULT: Limits = Limits {
        max_len: 8192,
        max_depth: 64,
        max_terms: 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
