//! PATCHes and PUTs without members whose resource's side rows are known
//! (remembered, [`super::recent`], or just read), gathered
//! ([`super::gather`]): under load, up to [`KnownChange::MOST`] of them,
//! each of another resource, in one statement ([`UPDATE_CHANGES`]). Each
//! is a compare-and-swap of its own: a resource no longer at the version
//! its change was made from is left as it is, with its side rows, and its
//! caller makes the change again from what is stored, as when written
//! alone.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use scimd_core::store::{GroupMembership, ResourceWrite, StoreError};
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

use super::PgStore;
use super::change_log::{LogColumns, log_cte};
use super::gather::{Gather, Gathered, Together};
use super::reads::{StoredSide, groups_from_json};
use super::recent::Known;
use super::retry::with_client;
use super::writes::{Changed, Replaced, SideRows, replace_changed};
use crate::nesting::groups_json;

/// A change's outcome: what it replaced and the resource's groups (when
/// asked), or `None` when the resource was no longer at the version read.
pub(super) type Outcome = Option<(Replaced, Option<Vec<GroupMembership>>)>;

/// A change handed back to its caller: the write, its document text, and
/// its outcome.
type Written = (ResourceWrite, String, Result<Outcome, StoreError>);

/// The side rows a change was made from.
pub(super) enum Side {
    /// Those this process last wrote.
    Known(Arc<Known>),
    /// Those just read with the resource.
    Read(StoredSide),
}

impl Side {
    fn rows(&self) -> &StoredSide {
        match self {
            Side::Known(known) => &known.side,
            Side::Read(side) => side,
        }
    }
}

/// One caller's change, waiting for a runner.
pub(super) struct KnownChange {
    w: ResourceWrite,
    data: String,
    /// The resource's position and the version the change was made from.
    read: (i64, i64),
    side: Side,
    with_groups: bool,
    reply: oneshot::Sender<Written>,
}

impl Gathered for KnownChange {
    const MOST: usize = 64;
    const BATCH_METRIC: &'static str = "scimd_pg_change_batch_size";
    type Answer = Outcome;

    fn resource(&self) -> Option<i64> {
        Some(self.read.0)
    }

    fn queue(store: &PgStore) -> &Gather<Self> {
        &store.changes
    }

    async fn together(store: &PgStore, batch: &[Self]) -> Together<Outcome> {
        store.update_together(batch).await
    }

    async fn alone(&self, store: &PgStore) -> Result<Outcome, StoreError> {
        with_client!(store, |client| {
            let (w, side) = (&self.w, self.side.rows());
            replace_changed(
                &client,
                w,
                &self.data,
                self.read,
                side,
                self.with_groups,
                store.log,
            )
            .await?
        })
    }

    fn reply(self, outcome: Result<Outcome, StoreError>) {
        // A caller that went away no longer needs the answer.
        let _ = self.reply.send((self.w, self.data, outcome));
    }
}

impl PgStore {
    /// Writes `w` (without members; its document text `data`) if the
    /// resource is still at the position and version `read`, whose side
    /// rows are `side`; hands both back with the outcome.
    pub(super) async fn change_gathered(
        &self,
        w: ResourceWrite,
        data: String,
        read: (i64, i64),
        side: Side,
        with_groups: bool,
    ) -> Result<(ResourceWrite, String, Outcome), StoreError> {
        let (w, data, outcome) = self
            .gathered(|reply| KnownChange {
                w,
                data,
                read,
                side,
                with_groups,
                reply,
            })
            .await?;
        Ok((w, data, outcome?))
    }

    /// Writes every change of `batch` in one statement, in position order
    /// (in which its resources' rows are locked when the plan reads them in
    /// that order, as it does at these sizes). Two batches can still wait on
    /// each other through the unique values they insert (x then y against
    /// y then x): PostgreSQL then ends one with a deadlock (40P01), and it
    /// is run again.
    async fn update_together(&self, batch: &[KnownChange]) -> Together<Outcome> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_unstable_by_key(|&k| batch[k].read.0);
        let mut columns = Columns::default();
        for (i, &k) in (1i64..).zip(&order) {
            columns.push(i, &batch[k], self.log);
        }
        let params = columns.params();
        let written = with_client!(self, |client| {
            let update = client.prepare_cached(&UPDATE_CHANGES).await?;
            client.query(&update, &params).await?
        });
        Together::of(written, |rows| answers(batch, &order, rows))
    }
}

/// The parameters of [`UPDATE_CHANGES`]: each change's own fields, and its
/// side rows tagged with the (1-based) change they belong to.
#[derive(Default)]
struct Columns<'w> {
    seqs: Vec<i64>,
    versions: Vec<i64>,
    nows: Vec<&'w str>,
    docs: Vec<&'w str>,
    with_groups: Vec<bool>,
    log: LogColumns<'w>,
    slot_of: Vec<i64>,
    slot_keys: Vec<&'w str>,
    slot_elems: Vec<i64>,
    rows: SideRows<'w>,
    entry_of: Vec<i64>,
    added_of: Vec<i64>,
    gone_of: Vec<i64>,
    gone_scopes: Vec<&'w str>,
    gone_keys: Vec<&'w str>,
    gone_values: Vec<&'w str>,
}

impl<'w> Columns<'w> {
    fn push(&mut self, i: i64, c: &'w KnownChange, log: super::change_log::LogSwitch) {
        let w = &c.w;
        self.seqs.push(c.read.0);
        self.versions.push(c.read.1);
        self.nows.push(&w.now);
        self.docs.push(&c.data);
        self.with_groups.push(c.with_groups);
        self.log.push(&w.change, log);
        let changed = Changed::of(w, c.side.rows());
        self.slot_of
            .extend(std::iter::repeat_n(i, changed.slot_keys.len()));
        self.slot_keys.extend(changed.slot_keys);
        self.slot_elems.extend(changed.slot_elems);
        let (entries, added) = changed.rows.len();
        self.entry_of.extend(std::iter::repeat_n(i, entries));
        self.added_of.extend(std::iter::repeat_n(i, added));
        self.rows.extend(changed.rows);
        self.gone_of
            .extend(std::iter::repeat_n(i, changed.gone_scopes.len()));
        self.gone_scopes.extend(changed.gone_scopes);
        self.gone_keys.extend(changed.gone_keys);
        self.gone_values.extend(changed.gone_values);
    }

    /// `$1`-`$27` of [`UPDATE_CHANGES`].
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &self.seqs,
            &self.versions,
            &self.nows,
            &self.docs,
            &self.with_groups,
        ];
        params.extend_from_slice(&self.log.params());
        params.extend_from_slice(&[
            &self.slot_of as &(dyn ToSql + Sync),
            &self.slot_keys,
            &self.slot_elems,
        ]);
        params.extend(self.rows.params());
        params.extend_from_slice(&[
            &self.entry_of as &(dyn ToSql + Sync),
            &self.added_of,
            &self.gone_of,
            &self.gone_scopes,
            &self.gone_keys,
            &self.gone_values,
        ]);
        params
    }
}

/// Each change's outcome from `rows` (the statement's answer: ordinal,
/// seq, version, created, groups), in `batch` order (`order` the batch's
/// indexes in the statement's order); a change without a row found its
/// resource at another version.
fn answers(
    batch: &[KnownChange],
    order: &[usize],
    rows: &[tokio_postgres::Row],
) -> Vec<Result<Outcome, StoreError>> {
    let mut written = HashMap::with_capacity(rows.len());
    for row in rows {
        match answer(row) {
            Ok((i, replaced, groups)) => {
                written.insert(i, (replaced, groups));
            }
            Err(e) => {
                // Written, but not answered as expected: never written again.
                let why = format!("answer of changes written together: {e}");
                return batch
                    .iter()
                    .map(|_| Err(StoreError::Backend(why.clone())))
                    .collect();
            }
        }
    }
    let mut outcomes: Vec<Result<Outcome, StoreError>> = batch.iter().map(|_| Ok(None)).collect();
    for (i, &k) in (1i64..).zip(order) {
        let with_groups = batch[k].with_groups;
        outcomes[k] = Ok(written
            .remove(&i)
            .map(|(replaced, groups)| (replaced, groups.filter(|_| with_groups))));
    }
    outcomes
}

/// One row of [`UPDATE_CHANGES`]' answer.
fn answer(
    row: &tokio_postgres::Row,
) -> Result<(i64, Replaced, Option<Vec<GroupMembership>>), String> {
    let e = |e: tokio_postgres::Error| e.to_string();
    let groups = groups_from_json(row, 4).map_err(|e| format!("{e:?}"))?;
    Ok((
        row.try_get(0).map_err(e)?,
        (
            row.try_get(1).map_err(e)?,
            row.try_get(2).map_err(e)?,
            row.try_get(3).map_err(e)?,
            None,
        ),
        Some(groups),
    ))
}

/// Changes of several resources, each written only if its resource is
/// still at the position and version it was made from: `$1`/`$2` those,
/// `$3`/`$4` each one's time and document, `$5` whether its groups are
/// answered, `$6`-`$10` the changes logged ([`LogColumns::params`]);
/// `$11`-`$13` the attribute elements whose index rows are replaced,
/// `$14`-`$21` the new index rows and the unique values added
/// ([`SideRows::params`]), `$22`/`$23` the change each of those belongs to,
/// `$24`-`$27` the unique values removed. Answers each change written: its
/// ordinal, seq, new version, created and groups. The resources are
/// reached by `seq = ANY($1)` (an index probe each, whatever the planner
/// guesses of the arrays' length).
pub(super) static UPDATE_CHANGES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH b AS (SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::bool[],
                                        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
                       WITH ORDINALITY AS b(seq, version, now, data, wg, at, op, client_id, subject, body, i)),
              r AS (UPDATE resources t SET version = t.version + 1, modified = b.now, data = b.data
                      FROM b WHERE t.seq = ANY($1::int8[]) AND t.seq = b.seq AND t.version = b.version
                    RETURNING b.i, t.seq, t.id, t.rtype, t.version, t.created, b.wg,
                              b.at, b.op, b.client_id, b.subject, b.body),
              de AS (DELETE FROM attr_values a USING r, unnest($11::int8[], $12::text[], $13::int8[]) AS d(i, k, el)
                      WHERE d.i = r.i AND a.seq = r.seq AND a.key = d.k AND a.elem = d.el),
              ie AS (INSERT INTO attr_values (seq, key, elem, prim, s, n)
                     SELECT r.seq, e.k, e.el, e.p, e.s, e.n FROM r JOIN
                       unnest($22::int8[], $14::text[], $15::int8[], $16::bool[], $17::text[], $18::float8[])
                         AS e(i, k, el, p, s, n) ON e.i = r.i),
              iu AS (INSERT INTO unique_values (scope, key, value, seq)
                     SELECT u.sc, u.k, u.v, r.seq FROM r JOIN
                       unnest($23::int8[], $19::text[], $20::text[], $21::text[]) AS u(i, sc, k, v) ON u.i = r.i),
              du AS (DELETE FROM unique_values x USING r,
                       unnest($24::int8[], $25::text[], $26::text[], $27::text[]) AS u(i, sc, k, v)
                      WHERE u.i = r.i AND x.scope = u.sc AND x.key = u.k AND x.value = u.v AND x.seq = r.seq),
              {}
         SELECT r.i, r.seq, r.version, r.created, gr.groups FROM r CROSS JOIN LATERAL ({}) gr",
        log_cte(
            ["r.at", "r.op", "r.client_id", "r.subject", "r.body"].map(String::from),
            "r.rtype",
            "r.id",
            "r.version - 1",
            "r.version",
            "r"
        ),
        groups_json("CASE WHEN r.wg THEN r.seq END")
    )
});
