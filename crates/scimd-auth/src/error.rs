//! Errors of the auth layer. The HTTP layer maps them to RFC 6749 (token
//! endpoint) and RFC 6750 (protected resources) answers.

use scimd_core::store::StoreError;

/// Why a bearer token was refused. Each one is `error="invalid_token"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token expired")]
    Expired,
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    #[error("the access token signature does not verify")]
    BadSignature,
    #[error("the access token was signed by an unknown key")]
    UnknownKey,
    #[error("the access token was issued by another issuer")]
    WrongIssuer,
    #[error("the access token is meant for another audience")]
    WrongAudience,
    #[error("the access token is not active")]
    Inactive,
}

/// Failures of the token endpoint, named as RFC 6749 section 5.2 names them.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("client authentication failed")]
    InvalidClient,
    /// A form over the endpoint's size limit (bytes).
    #[error("the request body exceeds {0} bytes")]
    RequestTooLarge(usize),
    #[error("only the client_credentials grant is supported")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidScope(String),
    /// Too many failed attempts for this client or address.
    #[error("too many failed attempts; retry in {retry_after} s")]
    SlowDown { retry_after: u64 },
    #[error(transparent)]
    Internal(#[from] AuthError),
}

impl GrantError {
    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::InvalidRequest(_) | GrantError::RequestTooLarge(_) => "invalid_request",
            GrantError::InvalidClient => "invalid_client",
            GrantError::UnsupportedGrantType => "unsupported_grant_type",
            GrantError::InvalidScope(_) => "invalid_scope",
            GrantError::SlowDown { .. } => "slow_down",
            GrantError::Internal(AuthError::Store(StoreError::Unavailable(_))) => {
                "temporarily_unavailable"
            }
            GrantError::Internal(_) => "server_error",
        }
    }
}

/// Failures of the auth machinery itself (store, keys, hashing).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(String),
    #[error("password hashing: {0}")]
    Hashing(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no client '{0}'")]
    NoSuchClient(String),
}
