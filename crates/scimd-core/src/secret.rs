//! Argon2id hashing of write-only values.

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;

use crate::error::{ScimError, ScimResult};

/// Hashes `secret` with argon2id and a fresh salt (PHC string).
pub fn hash(secret: &str) -> ScimResult<String> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ScimError::Internal(format!("argon2: {e}")))
}
