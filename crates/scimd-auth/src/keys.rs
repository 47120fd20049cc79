//! Signing keys: Ed25519, generated on first start and kept in the store so
//! that every scimd on one store signs and verifies with the same keys.
//! A new key is made every rotation period; old ones stay published until
//! every token they signed has expired (the overlap). A new key is published
//! before it signs anything (`publish_delay`, longer than two refreshes of
//! the other replicas), so that every replica knows it by the time one of its
//! tokens arrives.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::DecodingKey;
use rand::rngs::OsRng;
use scimd_core::changelog::{Change, Op};
use scimd_core::store::{Record, RecordStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::AuthError;
use crate::unix_now;

const KIND: &str = "signing_key";

/// A key as stored. The private half is in the store because every replica
/// must be able to sign; protect the database as you protect the keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    /// Unix seconds.
    created: u64,
    /// Public key, base64url (the JWK `x`).
    x: String,
    /// PKCS#8 DER of the private key, base64.
    pkcs8: String,
}

/// The key new tokens are signed with.
pub struct ActiveKey {
    pub kid: String,
    /// Parsed once: parsing the PKCS#8 key (as `jsonwebtoken::encode` does
    /// on every call) derives the public key, a second scalar
    /// multiplication that doubled the cost of each signature.
    signing: ed25519_dalek::SigningKey,
}

impl ActiveKey {
    /// `claims` as a compact JWS (RFC 7515) signed with EdDSA (RFC 8037),
    /// with header `typ` and this key's `kid`.
    pub fn sign_jws<T: serde::Serialize>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, AuthError> {
        use ed25519_dalek::Signer;
        #[derive(Serialize)]
        struct Header<'a> {
            typ: &'a str,
            alg: &'a str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header {
            typ,
            alg: "EdDSA",
            kid: &self.kid,
        })
        .map_err(|e| AuthError::Keys(e.to_string()))?;
        let claims = serde_json::to_vec(claims).map_err(|e| AuthError::Keys(e.to_string()))?;
        let mut jws = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 100);
        URL_SAFE_NO_PAD.encode_string(header, &mut jws);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
        let signature = self.signing.sign(jws.as_bytes());
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut jws);
        Ok(jws)
    }
}

struct Ring {
    active: Option<Arc<ActiveKey>>,
    verify: HashMap<String, DecodingKey>,
    jwks: Value,
}

/// The keys of one store, cached and refreshed.
pub struct KeyRing {
    store: Arc<dyn RecordStore>,
    rotation: Duration,
    /// How long a retired key stays valid for verification.
    overlap: Duration,
    /// How long a new key is only published before it signs.
    publish_delay: Duration,
    ring: RwLock<Ring>,
    last_reload: std::sync::Mutex<Option<Instant>>,
}

impl KeyRing {
    pub fn new(
        store: Arc<dyn RecordStore>,
        rotation: Duration,
        overlap: Duration,
        publish_delay: Duration,
    ) -> KeyRing {
        KeyRing {
            store,
            rotation,
            overlap,
            publish_delay,
            ring: RwLock::new(Ring {
                active: None,
                verify: HashMap::new(),
                jwks: json!({ "keys": [] }),
            }),
            last_reload: std::sync::Mutex::new(None),
        }
    }

    /// Makes a new key when there is none or the newest is older than the
    /// rotation period, drops keys past their overlap, and reloads.
    pub async fn rotate_if_due(&self) -> Result<(), AuthError> {
        let now = unix_now();
        let mut keys = self.load().await?;
        let newest = keys.iter().map(|k| k.created).max();
        if newest.is_none_or(|c| c + self.rotation.as_secs() <= now) {
            let key = generate(now)?;
            // Several replicas may rotate at once; each key is valid, and
            // the newest one wins for signing everywhere.
            self.store
                .record_insert(
                    KIND,
                    Record {
                        id: key.kid.clone(),
                        data: serde_json::to_value(&key)
                            .map_err(|e| AuthError::Keys(e.to_string()))?,
                    },
                    Change::operational(Op::KeyCreate, KIND, &key.kid),
                )
                .await?;
            keys.push(key);
        }
        let newest = keys.iter().map(|k| k.created).max().unwrap_or(now);
        // A key signs from publish_delay after its creation until its
        // successor does, and its tokens live the overlap after that.
        let keep_for =
            self.rotation.as_secs() + self.publish_delay.as_secs() + self.overlap.as_secs();
        for key in &keys {
            if key.created < newest && key.created + keep_for < now {
                let change = Change::operational(Op::KeyDelete, KIND, &key.kid);
                self.store.record_delete(KIND, &key.kid, change).await?;
            }
        }
        self.reload().await
    }

    /// Reads the keys from the store into the cache.
    pub async fn reload(&self) -> Result<(), AuthError> {
        let keys = self.load().await?;
        let mut verify = HashMap::new();
        let mut jwks = Vec::new();
        for key in &keys {
            verify.insert(
                key.kid.clone(),
                DecodingKey::from_ed_components(&key.x)
                    .map_err(|e| AuthError::Keys(format!("key {}: {e}", key.kid)))?,
            );
            jwks.push(json!({
                "kty": "OKP", "crv": "Ed25519", "x": key.x, "kid": key.kid,
                "use": "sig", "alg": "EdDSA",
            }));
        }
        // The newest key published long enough ago; else the oldest (on a
        // first start the only one: no other replica has tokens yet).
        let published_before = unix_now().saturating_sub(self.publish_delay.as_secs());
        let by_age = |a: &&StoredKey, b: &&StoredKey| (a.created, &a.kid).cmp(&(b.created, &b.kid));
        let signing = keys
            .iter()
            .filter(|k| k.created <= published_before)
            .max_by(by_age)
            .or_else(|| keys.iter().min_by(by_age));
        let active = match signing {
            Some(key) => {
                let der = STANDARD
                    .decode(&key.pkcs8)
                    .map_err(|e| AuthError::Keys(format!("key {}: {e}", key.kid)))?;
                let signing = ed25519_dalek::SigningKey::from_pkcs8_der(&der)
                    .map_err(|e| AuthError::Keys(format!("key {}: {e}", key.kid)))?;
                Some(Arc::new(ActiveKey {
                    kid: key.kid.clone(),
                    signing,
                }))
            }
            None => None,
        };
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(Instant::now());
        }
        if let Ok(mut ring) = self.ring.write() {
            *ring = Ring {
                active,
                verify,
                jwks: json!({ "keys": jwks }),
            };
        }
        Ok(())
    }

    async fn load(&self) -> Result<Vec<StoredKey>, AuthError> {
        let mut out = Vec::new();
        for record in self.store.record_list(KIND).await? {
            let key: StoredKey = serde_json::from_value(record.data)
                .map_err(|e| AuthError::Keys(format!("key {}: {e}", record.id)))?;
            out.push(key);
        }
        Ok(out)
    }

    pub fn active(&self) -> Option<Arc<ActiveKey>> {
        self.ring.read().ok().and_then(|r| r.active.clone())
    }

    /// The verification key `kid`; an unknown kid reloads the ring (at most
    /// once a second) because another replica may just have rotated.
    pub async fn decoding(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        // Claimed before the reload: a burst of tokens naming unknown kids
        // (or a store that fails) costs one reload a second, not one each.
        let due = self.last_reload.lock().is_ok_and(|mut last| {
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        });
        if due && self.reload().await.is_err() {
            return None;
        }
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.ring
            .read()
            .ok()
            .and_then(|r| r.verify.get(kid).cloned())
    }

    /// `claims` as a Security Event Token (RFC 8417): a JWS signed with the
    /// active key, `typ` `secevent+jwt`, verifiable with the JWKS.
    pub fn sign_set<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        let key = self
            .active()
            .ok_or_else(|| AuthError::Keys("no signing key loaded yet".into()))?;
        key.sign_jws("secevent+jwt", claims)
    }

    /// The public keys as a JWK Set (RFC 7517).
    pub fn jwks(&self) -> Value {
        self.ring
            .read()
            .map(|r| r.jwks.clone())
            .unwrap_or_else(|_| json!({ "keys": [] }))
    }
}

fn generate(now: u64) -> Result<StoredKey, AuthError> {
    let signing = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let der = signing
        .to_pkcs8_der()
        .map_err(|e| AuthError::Keys(e.to_string()))?;
    Ok(StoredKey {
        kid: uuid::Uuid::now_v7().simple().to_string(),
        created: now,
        x: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
        pkcs8: STANDARD.encode(der.as_bytes()),
    })
}
