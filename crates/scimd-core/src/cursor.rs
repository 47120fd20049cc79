//! RFC 9865 cursors: opaque, tamper-proof, bound to one query, expiring.
//! A cursor is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`;
//! the payload holds the store position to continue after, a fingerprint of
//! the query (resource types, filter) and an expiry. The key is shared by
//! every server on a store, so any replica continues any cursor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ScimError;

type HmacSha256 = Hmac<Sha256>;

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Continue after this store position.
    a: i64,
    /// Query fingerprint.
    q: String,
    /// Expires at (unix seconds).
    e: u64,
}

/// Seals and opens cursors with one key.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
    /// Lifetime of a cursor, in seconds.
    pub timeout: u64,
}

/// A short stable fingerprint of what a cursor walks (stable across
/// processes, unlike `std`'s hasher).
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    URL_SAFE_NO_PAD.encode(&h.finalize()[..12])
}

impl CursorCodec {
    pub fn new(key: Vec<u8>, timeout: u64) -> CursorCodec {
        CursorCodec { key, timeout }
    }

    fn mac(&self) -> Result<HmacSha256, ScimError> {
        HmacSha256::new_from_slice(&self.key)
            .map_err(|e| ScimError::Internal(format!("cursor key: {e}")))
    }

    pub fn seal(&self, after: i64, query: &str, now: u64) -> Result<String, ScimError> {
        let payload = serde_json::to_vec(&Payload {
            a: after,
            q: query.to_string(),
            e: now + self.timeout,
        })
        .map_err(|e| ScimError::Internal(e.to_string()))?;
        let mut mac = self.mac()?;
        mac.update(&payload);
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        ))
    }

    /// The position to continue after; `invalidCursor` when the cursor was
    /// not made by this store or belongs to another query, `expiredCursor`
    /// when it is too old.
    pub fn open(&self, cursor: &str, query: &str, now: u64) -> Result<i64, ScimError> {
        let invalid = || ScimError::InvalidCursor(format!("'{cursor}' is not a valid cursor"));
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let mut mac = self.mac()?;
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| invalid())?;
        let p: Payload = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if p.q != query {
            return Err(ScimError::InvalidCursor(
                "the cursor belongs to another query (resource type or filter changed)".into(),
            ));
        }
        if p.e <= now {
            return Err(ScimError::ExpiredCursor("the cursor has expired".into()));
        }
        Ok(p.a)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let codec = CursorCodec::new(vec![7; 32], 60);
        let q = fingerprint(&["User", "userName sw \"a\""]);
        let c = codec.seal(42, &q, 1000).unwrap();
        assert_eq!(codec.open(&c, &q, 1001).unwrap(), 42);
        assert!(matches!(
            codec.open(&c, &fingerprint(&["Group"]), 1001),
            Err(ScimError::InvalidCursor(_))
        ));
        assert!(matches!(
            codec.open(&c, &q, 1060),
            Err(ScimError::ExpiredCursor(_))
        ));
        // Tampering: another position under the same tag.
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"a":1,"q":"x","e":99999}"#);
        let tag = c.split_once('.').unwrap().1;
        assert!(matches!(
            codec.open(&format!("{forged_payload}.{tag}"), &q, 1001),
            Err(ScimError::InvalidCursor(_))
        ));
        let other_key = CursorCodec::new(vec![8; 32], 60);
        assert!(matches!(
            other_key.open(&c, &q, 1001),
            Err(ScimError::InvalidCursor(_))
        ));
        assert!(matches!(
            codec.open("garbage", &q, 1001),
            Err(ScimError::InvalidCursor(_))
        ));
    }
}
