//! A change-log entry as the signed SET a stream delivers.

use scimd_core::changelog::Entry;
use scimd_core::error::ScimError;
use scimd_core::events::{SetContext, StreamSpec, set_claims};
use scimd_core::projection::Projection;
use scimd_core::store::StoreError;

use crate::{EventError, Events};

/// The most entries read from the log at a time while looking for a
/// stream's next events.
pub(crate) const LOG_PAGE: u32 = 500;

impl Events {
    /// The signed SET of `entry` in `stream`, addressed to `audience`;
    /// `None` when the stream does not carry it.
    pub(crate) async fn sign(
        &self,
        stream: &StreamSpec,
        entry: &Entry,
        audience: &str,
    ) -> Result<Option<String>, EventError> {
        if !stream.carries(entry) {
            return Ok(None);
        }
        let rt = self.registry().by_name(&entry.resource_type);
        let endpoint = rt.map_or("/", |rt| rt.endpoint());
        let data = match (rt, stream.full && entry.op != "delete") {
            (Some(rt), true) => match self
                .service
                .get(rt, &entry.resource_id, &Projection::all())
                .await
            {
                Ok(r) => Some(r.doc),
                // Deleted since: the event goes as a notice.
                Err(ScimError::NotFound(_)) => None,
                // Not a notice in place of the data: tried again later.
                Err(e) => return Err(EventError::Store(StoreError::Unavailable(e.to_string()))),
            },
            _ => None,
        };
        let context = SetContext {
            issuer: &self.auth.config().issuer,
            audience,
            endpoint,
            now: scimd_core::value::unix_now(),
        };
        let Some(claims) = set_claims(stream, entry, &context, data.as_ref()) else {
            return Ok(None);
        };
        self.auth
            .keys()
            .sign_set(&claims)
            .map(Some)
            .map_err(|e| EventError::Signing(e.to_string()))
    }

    /// The next entries after `after` that `stream` carries, at most
    /// `limit`, skipping the positions in `skip` (sorted). Reads the log a
    /// page at a time, whatever it holds between.
    pub(crate) async fn carried_after(
        &self,
        stream: &StreamSpec,
        after: i64,
        skip: &[i64],
        limit: usize,
    ) -> Result<Carried, EventError> {
        let mut found = Vec::new();
        let mut cursor = after;
        let mut scanned = after;
        // The first page is what the caller can take (and one more, to
        // tell whether more follow): a stream that carries everything reads
        // no entry it does not use. Pages double from there, up to
        // LOG_PAGE, while entries the stream does not carry are passed.
        let mut size = u32::try_from(limit.saturating_add(1)).map_or(LOG_PAGE, |n| n.min(LOG_PAGE));
        loop {
            let page = self.store.follow(cursor, size).await?;
            let full = page.len() == size as usize;
            size = size.saturating_mul(2).min(LOG_PAGE);
            for entry in page {
                cursor = entry.position;
                if stream.carries(&entry) && skip.binary_search(&entry.position).is_err() {
                    if found.len() == limit {
                        return Ok(Carried {
                            entries: found,
                            more: true,
                            scanned,
                        });
                    }
                    found.push(entry);
                }
                scanned = cursor;
            }
            if !full {
                return Ok(Carried {
                    entries: found,
                    more: false,
                    scanned,
                });
            }
            if found.len() == limit {
                return Ok(Carried {
                    entries: found,
                    more: true,
                    scanned,
                });
            }
        }
    }
}

/// What [`Events::carried_after`] found.
pub(crate) struct Carried {
    /// The entries the stream carries, in log order.
    pub entries: Vec<Entry>,
    /// More may follow.
    pub more: bool,
    /// Every carried entry up to this position is in `entries` (or was
    /// skipped): a stream that delivered them all may move its progress
    /// here, past the entries it does not carry, instead of reading them
    /// again next time.
    pub scanned: i64,
}
