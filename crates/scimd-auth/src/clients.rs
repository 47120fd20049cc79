//! OAuth clients allowed to obtain tokens by client_credentials. Secrets are
//! generated here (256 random bits) and stored only as argon2id hashes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use scimd_core::changelog::{Change, Op};
use scimd_core::store::{Record, RecordStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AuthError;

const KIND: &str = "client";

/// A client as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// argon2id PHC string.
    pub secret_hash: String,
    pub scopes: BTreeSet<String>,
    pub created: String,
    /// Requests per second at most (none: not limited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// A client without its secret hash, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    pub client_id: String,
    pub name: String,
    pub scopes: BTreeSet<String>,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// A client's credentials, shown once when created or rotated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
    pub scopes: BTreeSet<String>,
}

/// The clients of one store.
pub struct Clients {
    store: Arc<dyn RecordStore>,
    /// Secrets that verified recently: client id -> (SHA-256 of the secret,
    /// the argon2 hash it verified against). Argon2 is what protects a
    /// stolen database; a secret of 256 random bits cannot be guessed from a
    /// SHA-256 held in memory, so repeated token requests of one client skip
    /// the deliberately slow hash. A rotated secret changes the stored hash
    /// and so invalidates the entry.
    verified: Mutex<HashMap<String, ([u8; 32], String)>>,
}

impl Clients {
    pub fn new(store: Arc<dyn RecordStore>) -> Clients {
        Clients {
            store,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a client. `client_id` defaults to a random one.
    pub async fn create(
        &self,
        name: &str,
        client_id: Option<&str>,
        scopes: BTreeSet<String>,
    ) -> Result<Credentials, AuthError> {
        let client_id = client_id
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let secret = new_secret();
        let client = Client {
            client_id: client_id.clone(),
            name: name.to_string(),
            secret_hash: hash(&secret).await?,
            scopes: scopes.clone(),
            created: crate::now_text(),
            rate: None,
        };
        let change = Change::operational(Op::ClientCreate, KIND, &client_id).with_paths(vec![
            "name".into(),
            "scopes".into(),
            "secret".into(),
        ]);
        let inserted = self
            .store
            .record_insert(KIND, to_record(&client)?, change)
            .await?;
        if !inserted {
            return Err(AuthError::Invalid(format!(
                "a client with id '{client_id}' already exists"
            )));
        }
        Ok(Credentials {
            client_id,
            client_secret: secret,
            scopes,
        })
    }

    pub async fn get(&self, client_id: &str) -> Result<Option<Client>, AuthError> {
        match self.store.record_get(KIND, client_id).await? {
            Some(record) => Ok(Some(from_record(record)?)),
            None => Ok(None),
        }
    }

    pub async fn list(&self) -> Result<Vec<ClientInfo>, AuthError> {
        let mut out = Vec::new();
        for record in self.store.record_list(KIND).await? {
            let c = from_record(record)?;
            out.push(ClientInfo {
                client_id: c.client_id,
                name: c.name,
                scopes: c.scopes,
                created: c.created,
                rate: c.rate,
            });
        }
        Ok(out)
    }

    /// Gives a client a new secret; the old one stops working at once.
    pub async fn rotate_secret(&self, client_id: &str) -> Result<Credentials, AuthError> {
        let mut client = self
            .get(client_id)
            .await?
            .ok_or_else(|| AuthError::NoSuchClient(client_id.to_string()))?;
        let secret = new_secret();
        client.secret_hash = hash(&secret).await?;
        // The path, never the secret.
        let change = Change::operational(Op::ClientRotate, KIND, client_id)
            .with_paths(vec!["secret".into()]);
        self.store
            .record_put(KIND, to_record(&client)?, change)
            .await?;
        Ok(Credentials {
            client_id: client.client_id,
            client_secret: secret,
            scopes: client.scopes,
        })
    }

    /// Sets a client's request rate (requests per second; `None`: no limit).
    pub async fn set_rate(
        &self,
        client_id: &str,
        rate: Option<f64>,
    ) -> Result<ClientInfo, AuthError> {
        if let Some(r) = rate
            && !(r.is_finite() && r > 0.0 && r <= 1_000_000.0)
        {
            return Err(AuthError::Invalid(format!(
                "rate {r}: give requests per second, more than 0 and at most 1000000"
            )));
        }
        let mut client = self
            .get(client_id)
            .await?
            .ok_or_else(|| AuthError::NoSuchClient(client_id.to_string()))?;
        client.rate = rate;
        let change =
            Change::operational(Op::ClientUpdate, KIND, client_id).with_paths(vec!["rate".into()]);
        self.store
            .record_put(KIND, to_record(&client)?, change)
            .await?;
        Ok(ClientInfo {
            client_id: client.client_id,
            name: client.name,
            scopes: client.scopes,
            created: client.created,
            rate: client.rate,
        })
    }

    pub async fn delete(&self, client_id: &str) -> Result<bool, AuthError> {
        let change = Change::operational(Op::ClientDelete, KIND, client_id);
        Ok(self.store.record_delete(KIND, client_id, change).await?)
    }

    /// The client when `secret` is its secret; `None` otherwise (unknown
    /// client or wrong secret look the same to the caller).
    pub async fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<Client>, AuthError> {
        let Some(client) = self.get(client_id).await? else {
            // Spend about the time a real check takes, so that timing does
            // not tell which client ids exist.
            let _ = verify(secret.to_string(), DUMMY_HASH.to_string()).await;
            return Ok(None);
        };
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let remembered = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(client_id).cloned());
        // Only a match skips argon2: a wrong secret for a remembered client
        // takes the full check, as for any other client or an unknown one,
        // so that timing does not tell which clients signed in lately.
        if let Some((known, hash)) = remembered
            && hash == client.secret_hash
            && bool::from(known.ct_eq(&digest))
        {
            return Ok(Some(client));
        }
        if !verify(secret.to_string(), client.secret_hash.clone()).await? {
            return Ok(None);
        }
        if let Ok(mut m) = self.verified.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(client_id.to_string(), (digest, client.secret_hash.clone()));
        }
        Ok(Some(client))
    }
}

/// A valid argon2id hash of a random value, for the unknown-client path.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2NpbWRkdW1teXNhbHQ$q3hPBoAWvzCnK8UuWR9Lq2JqzUG3nGqBIhXa6wBf0Zk";

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Argon2 is deliberately slow; it runs off the async workers.
async fn hash(secret: &str) -> Result<String, AuthError> {
    let secret = secret.to_string();
    argon2(move || {
        Argon2::default()
            .hash_password(secret.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Hashing(e.to_string()))
    })
    .await?
}

async fn verify(secret: String, hash: String) -> Result<bool, AuthError> {
    argon2(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| AuthError::Hashing(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

/// Runs one Argon2 computation on a blocking thread, at most as many at
/// once as the machine has cores. Each takes 19 MiB and tens of
/// milliseconds: a flood of wrong secrets at the token endpoint (each
/// one verified, unknown clients against a dummy hash) then costs waiting
/// time, not memory, and leaves the blocking threads to the store.
async fn argon2<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    static AT_ONCE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = AT_ONCE.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let _turn = permits
        .acquire()
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

fn to_record(client: &Client) -> Result<Record, AuthError> {
    Ok(Record {
        id: client.client_id.clone(),
        data: serde_json::to_value(client).map_err(|e| AuthError::Invalid(e.to_string()))?,
    })
}

fn from_record(record: Record) -> Result<Client, AuthError> {
    serde_json::from_value(record.data)
        .map_err(|e| AuthError::Invalid(format!("client {}: {e}", record.id)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_argon2_hash() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert!(Argon2::default().verify_password(b"x", &parsed).is_err());
    }
}
