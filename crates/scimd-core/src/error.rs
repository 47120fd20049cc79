//! The one error type of the SCIM core, and the single table that maps each
//! failure to its HTTP status and RFC 7644 `scimType`.

use thiserror::Error;

/// A failure that a SCIM client can be told about. Every variant carries a
/// human-readable detail; the status and scimType come from [`ScimError::status`]
/// and [`ScimError::scim_type`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScimError {
    /// A malformed request that no scimType describes (two credentials).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidSyntax(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    InvalidFilter(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    Mutability(String),
    #[error("{0}")]
    Uniqueness(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    InvalidCursor(String),
    #[error("{0}")]
    ExpiredCursor(String),
    #[error("{0}")]
    InvalidVersion(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PreconditionFailed(String),
    /// A conflict without a scimType: a Bulk operation whose `bulkId`
    /// reference cannot be resolved (RFC 7644 section 3.7.2).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A request body that did not arrive within its deadline (HTTP 408).
    #[error("{0}")]
    RequestTimeout(String),
    /// A request target longer than the listener parses (HTTP 414).
    #[error("{0}")]
    UriTooLong(String),
    /// A request header larger than the listener reads (HTTP 431).
    #[error("{0}")]
    HeaderTooLarge(String),
    /// No valid credentials (RFC 7644 section 3.12, RFC 6750 section 3).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the needed scope.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed attempts.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// The store has no space left for a write (HTTP 507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// Never shown to clients in detail: the HTTP layer logs it and answers a
    /// generic message.
    #[error("{0}")]
    Internal(String),
}

/// Every `scimType` scimd sends (the second column of [`ScimError`]'s
/// table; a unit test checks that they agree).
pub const SCIM_TYPES: [&str; 11] = [
    "invalidSyntax",
    "invalidValue",
    "invalidFilter",
    "invalidPath",
    "noTarget",
    "mutability",
    "uniqueness",
    "tooMany",
    "invalidCursor",
    "expiredCursor",
    "invalidVers",
];

impl ScimError {
    /// The HTTP status code (RFC 7644 section 3.12).
    pub fn status(&self) -> u16 {
        self.row().0
    }

    /// The RFC 7644 `scimType`, where the RFC (or RFC 9865) defines one.
    pub fn scim_type(&self) -> Option<&'static str> {
        self.row().1
    }

    /// The detail text.
    pub fn detail(&self) -> String {
        self.to_string()
    }

    fn row(&self) -> (u16, Option<&'static str>) {
        use ScimError::*;
        match self {
            BadRequest(_) => (400, None),
            InvalidSyntax(_) => (400, Some("invalidSyntax")),
            InvalidValue(_) => (400, Some("invalidValue")),
            InvalidFilter(_) => (400, Some("invalidFilter")),
            InvalidPath(_) => (400, Some("invalidPath")),
            NoTarget(_) => (400, Some("noTarget")),
            Mutability(_) => (400, Some("mutability")),
            Uniqueness(_) => (409, Some("uniqueness")),
            TooMany(_) => (400, Some("tooMany")),
            InvalidCursor(_) => (400, Some("invalidCursor")),
            ExpiredCursor(_) => (400, Some("expiredCursor")),
            InvalidVersion(_) => (400, Some("invalidVers")),
            NotFound(_) => (404, None),
            PreconditionFailed(_) => (412, None),
            Conflict(_) => (409, None),
            MethodNotAllowed(_) => (405, None),
            PayloadTooLarge(_) => (413, None),
            UnsupportedMediaType(_) => (415, None),
            RequestTimeout(_) => (408, None),
            UriTooLong(_) => (414, None),
            HeaderTooLarge(_) => (431, None),
            Unauthorized(_) => (401, None),
            Forbidden(_) => (403, None),
            TooManyRequests(_) => (429, None),
            NotImplemented(_) => (501, None),
            Unavailable(_) => (503, None),
            InsufficientStorage(_) => (507, None),
            Internal(_) => (500, None),
        }
    }
}

/// Result alias of the core.
pub type ScimResult<T> = Result<T, ScimError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scim_types_lists_every_scim_type_of_the_table() {
        let all: Vec<fn(String) -> ScimError> = vec![
            ScimError::BadRequest,
            ScimError::InvalidSyntax,
            ScimError::InvalidValue,
            ScimError::InvalidFilter,
            ScimError::InvalidPath,
            ScimError::NoTarget,
            ScimError::Mutability,
            ScimError::Uniqueness,
            ScimError::TooMany,
            ScimError::InvalidCursor,
            ScimError::ExpiredCursor,
            ScimError::InvalidVersion,
            ScimError::NotFound,
            ScimError::PreconditionFailed,
            ScimError::Conflict,
            ScimError::MethodNotAllowed,
            ScimError::PayloadTooLarge,
            ScimError::UnsupportedMediaType,
            ScimError::Unauthorized,
            ScimError::Forbidden,
            ScimError::TooManyRequests,
            ScimError::NotImplemented,
            ScimError::Unavailable,
            ScimError::InsufficientStorage,
            ScimError::Internal,
        ];
        let sent: std::collections::BTreeSet<&str> = all
            .iter()
            .filter_map(|e| e(String::new()).scim_type())
            .collect();
        let listed: std::collections::BTreeSet<&str> = SCIM_TYPES.into_iter().collect();
        assert_eq!(sent, listed);
    }
}
