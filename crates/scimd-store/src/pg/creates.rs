//! Creates without members or owner, gathered ([`super::gather`]): under load, up
//! to [`Create::MOST`] in one statement ([`INSERT_RESOURCES`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use scimd_core::store::{ResourceWrite, StoreError};
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

use super::PgStore;
use super::change_log::{LogColumns, log_cte};
use super::gather::{Gather, Gathered, Together};
use super::retry::with_client;
use super::writes::{SideRows, insert_row};

/// A create written, handed back to its caller: the write and its document
/// text, and the new resource's `seq` or why it failed.
type Written = (ResourceWrite, String, Result<i64, StoreError>);

/// One caller's create, waiting for a runner.
pub(super) struct Create {
    w: ResourceWrite,
    data: String,
    reply: oneshot::Sender<Written>,
}

impl Gathered for Create {
    const MOST: usize = 64;
    const BATCH_METRIC: &'static str = "scimd_pg_create_batch_size";
    /// The new resource's `seq`.
    type Answer = i64;

    fn resource(&self) -> Option<i64> {
        None
    }

    fn queue(store: &PgStore) -> &Gather<Self> {
        &store.creates
    }

    async fn together(store: &PgStore, batch: &[Self]) -> Together<i64> {
        store.insert_together(batch).await
    }

    async fn alone(&self, store: &PgStore) -> Result<i64, StoreError> {
        with_client!(store, |client| {
            insert_row(&client, &self.w, 1, &self.w.now, &self.data, store.log).await?
        })
    }

    fn reply(self, outcome: Result<i64, StoreError>) {
        // A caller that went away no longer needs the answer.
        let _ = self.reply.send((self.w, self.data, outcome));
    }
}

impl PgStore {
    /// Writes `w` (without members) as a new resource with the document
    /// `data`; hands both back with its `seq`.
    pub(super) async fn create_gathered(
        &self,
        w: ResourceWrite,
        data: String,
    ) -> Result<(ResourceWrite, String, i64), StoreError> {
        let (w, data, seq) = self.gathered(|reply| Create { w, data, reply }).await?;
        Ok((w, data, seq?))
    }

    /// Writes every create of `batch` in one statement.
    async fn insert_together(&self, batch: &[Create]) -> Together<i64> {
        let mut sides = SideRows::default();
        let (mut entry_of, mut unique_of) = (Vec::new(), Vec::new());
        let mut log = LogColumns::default();
        let (mut ids, mut types, mut nows, mut docs) = (vec![], vec![], vec![], vec![]);
        for (i, c) in (1i64..).zip(batch) {
            let w = &c.w;
            sides.append(w, w.index.iter(), w.unique.iter());
            entry_of.extend(std::iter::repeat_n(i, w.index.len()));
            unique_of.extend(std::iter::repeat_n(i, w.unique.len()));
            log.push(&w.change, self.log);
            ids.push(w.id.as_str());
            types.push(w.resource_type.as_str());
            nows.push(w.now.as_str());
            docs.push(c.data.as_str());
        }
        let mut params = sides.params();
        params.extend_from_slice(&[
            &entry_of as &(dyn ToSql + Sync),
            &unique_of,
            &ids,
            &types,
            &nows,
            &docs,
        ]);
        params.extend_from_slice(&log.params());
        let written = with_client!(self, |client| {
            let insert = client.prepare_cached(&INSERT_RESOURCES).await?;
            client.query(&insert, &params).await?
        });
        Together::of(written, |rows| answers(batch, rows))
    }
}

/// Each create's `seq` in `rows` (id, seq), in `batch` order.
fn answers(batch: &[Create], rows: &[tokio_postgres::Row]) -> Vec<Result<i64, StoreError>> {
    let mut seqs = HashMap::with_capacity(rows.len());
    for row in rows {
        match (row.try_get::<_, &str>(0), row.try_get::<_, i64>(1)) {
            (Ok(id), Ok(seq)) => {
                seqs.insert(id, seq);
            }
            (Err(e), _) | (_, Err(e)) => {
                // Written, but not answered as expected: never written again.
                let why = format!("answer of creates written together: {e}");
                return batch
                    .iter()
                    .map(|_| Err(StoreError::Backend(why.clone())))
                    .collect();
            }
        }
    }
    batch
        .iter()
        .map(|c| {
            seqs.get(c.w.id.as_str())
                .copied()
                .ok_or_else(|| StoreError::Backend(format!("create of {} not answered", c.w.id)))
        })
        .collect()
}

/// New resources with their side tables, each at version 1 and created and
/// modified at its own time: `$1`-`$8` the index entries and unique values
/// of all ([`SideRows::params`]), `$9`/`$10` the (1-based) create each entry
/// and each unique value belongs to, `$11`-`$14` ids, types, times and
/// documents, `$15`-`$19` the changes logged ([`LogColumns::params`]).
/// Answers each new resource's id and seq.
static INSERT_RESOURCES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH x AS (SELECT * FROM unnest($11::text[], $12::text[], $13::text[], $14::text[],
                                        $15::text[], $16::text[], $17::text[], $18::text[], $19::text[])
                       WITH ORDINALITY AS x(id, rtype, now, data, at, op, client_id, subject, body, i)),
              r AS (INSERT INTO resources (id, rtype, version, created, modified, data)
                    SELECT id, rtype, 1, now, now, data FROM x ORDER BY i RETURNING seq, id),
              rx AS (SELECT r.seq, x.* FROM r JOIN x ON x.id = r.id),
              ie AS (INSERT INTO attr_values (seq, key, elem, prim, s, n)
                     SELECT rx.seq, e.k, e.el, e.p, e.s, e.n FROM rx JOIN
                       unnest($9::int8[], $1::text[], $2::int8[], $3::bool[], $4::text[], $5::float8[])
                         AS e(i, k, el, p, s, n) ON e.i = rx.i),
              iu AS (INSERT INTO unique_values (scope, key, value, seq)
                     SELECT u.sc, u.k, u.v, rx.seq FROM rx JOIN
                       unnest($10::int8[], $6::text[], $7::text[], $8::text[]) AS u(i, sc, k, v)
                         ON u.i = rx.i),
              {}
         SELECT id, seq FROM r",
        log_cte(
            ["rx.at", "rx.op", "rx.client_id", "rx.subject", "rx.body"].map(String::from),
            "rx.rtype",
            "rx.id",
            "NULL::int8",
            "1::int8",
            "rx"
        )
    )
});
