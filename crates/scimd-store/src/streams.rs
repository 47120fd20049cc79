//! What both stores share about event streams' progress: its columns.

use scimd_core::store::{StoreError, StreamProgress};

/// A progress from the `streams` row's columns.
pub(crate) fn progress(
    through: i64,
    acked: &str,
    push: &str,
    version: i64,
) -> Result<StreamProgress, StoreError> {
    let corrupt =
        |e: serde_json::Error| StoreError::Backend(format!("corrupt stream progress: {e}"));
    Ok(StreamProgress {
        through,
        acked: serde_json::from_str(acked).map_err(corrupt)?,
        push: serde_json::from_str(push).map_err(corrupt)?,
        version,
    })
}

/// The `acked` and `push` columns of `progress`.
pub(crate) fn columns(progress: &StreamProgress) -> (String, String) {
    (
        serde_json::Value::from(progress.acked.clone()).to_string(),
        progress.push.to_string(),
    )
}
