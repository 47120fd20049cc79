//! Argon2id hashing of write-only values and client secrets.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{ScimError, ScimResult};

/// Hashes `secret` with argon2id and a fresh salt (PHC string).
pub fn hash(secret: &str) -> ScimResult<String> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ScimError::Internal(format!("argon2: {e}")))
}

/// Checks `secret` against a PHC hash; false on any mismatch or bad hash.
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}
