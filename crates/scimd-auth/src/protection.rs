//! The protection mode: `oauth` (every SCIM request needs a token) or
//! `bypass` (none does). Kept in the store so that an operator switches
//! every scimd on it at once, without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use scimd_core::changelog::{Change, Op};
use scimd_core::store::{Record, RecordStore};
use serde_json::json;

use crate::error::AuthError;

const KIND: &str = "setting";
const ID: &str = "protection_mode";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    OAuth,
    Bypass,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::OAuth => "oauth",
            Mode::Bypass => "bypass",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text.to_ascii_lowercase().as_str() {
            "oauth" => Some(Mode::OAuth),
            "bypass" => Some(Mode::Bypass),
            _ => None,
        }
    }
}

/// The mode the store holds (`oauth` when never set).
pub async fn read(store: &dyn RecordStore) -> Result<Mode, AuthError> {
    let record = store.record_get(KIND, ID).await?;
    Ok(record
        .and_then(|r| {
            r.data
                .get("mode")
                .and_then(|m| m.as_str())
                .and_then(Mode::parse)
        })
        .unwrap_or(Mode::OAuth))
}

pub async fn write(store: &dyn RecordStore, mode: Mode) -> Result<(), AuthError> {
    store
        .record_put(
            KIND,
            Record {
                id: ID.into(),
                data: json!({ "mode": mode.as_str(), "changed": crate::now_text() }),
            },
            Change::operational(Op::Protection, KIND, ID).with_paths(vec!["mode".into()]),
        )
        .await?;
    Ok(())
}

/// The mode this server applies, refreshed from the store.
pub struct Protection {
    bypass: AtomicBool,
    /// BYPASS on an address other than loopback needs the operator's
    /// explicit consent; without it the server stays in `oauth`.
    bypass_allowed: bool,
}

impl Protection {
    pub fn new(bypass_allowed: bool) -> Protection {
        Protection {
            bypass: AtomicBool::new(false),
            bypass_allowed,
        }
    }

    pub fn bypass(&self) -> bool {
        self.bypass.load(Ordering::Relaxed)
    }

    /// Applies the stored mode; returns whether it changed.
    pub fn apply(&self, mode: Mode) -> bool {
        let want = mode == Mode::Bypass;
        if want && !self.bypass_allowed {
            if !self.bypass() {
                tracing::error!(
                    "protection mode BYPASS requested in the store but refused: this server \
                     listens on a non-loopback address and allow_bypass is not set; staying in \
                     oauth mode"
                );
            }
            return self.bypass.swap(false, Ordering::Relaxed);
        }
        let before = self.bypass.swap(want, Ordering::Relaxed);
        if before != want {
            if want {
                warn_bypass();
            } else {
                tracing::info!("protection mode is oauth: every SCIM request needs a bearer token");
            }
        }
        before != want
    }
}

pub fn warn_bypass() {
    tracing::warn!(
        "!!! PROTECTION MODE IS BYPASS: SCIM endpoints accept requests WITHOUT any token. \
         Anyone who can reach this server can read and change every identity. \
         Switch back with `scimd protection set oauth`. !!!"
    );
}

/// Keeps `protection` in step with the store until `protection` is dropped.
pub fn watch(
    store: Arc<dyn RecordStore>,
    protection: &Arc<Protection>,
    every: std::time::Duration,
) {
    let weak = Arc::downgrade(protection);
    tokio::spawn(async move {
        let mut last_warning = std::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let Some(protection) = weak.upgrade() else {
                return;
            };
            match read(store.as_ref()).await {
                Ok(mode) => {
                    if protection.apply(mode) {
                        last_warning = std::time::Instant::now();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the protection mode"),
            }
            if protection.bypass() && last_warning.elapsed() >= std::time::Duration::from_secs(60) {
                warn_bypass();
                last_warning = std::time::Instant::now();
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bypass_is_refused_beyond_loopback_unless_allowed() {
        let refused = Protection::new(false);
        refused.apply(Mode::Bypass);
        assert!(!refused.bypass());
        let allowed = Protection::new(true);
        assert!(allowed.apply(Mode::Bypass));
        assert!(allowed.bypass());
        assert!(allowed.apply(Mode::OAuth));
        assert!(!allowed.bypass());
    }
}
