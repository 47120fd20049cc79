//! The scheduler: which operation of a BulkRequest runs when. Independent
//! operations run together on a `JoinSet` (at most [`CONCURRENCY`], one
//! under `failOnErrors`); an operation starts once the bulkIds it names
//! are created and no earlier operation on its path is unfinished (a path
//! naming a bulkId also waits until that POST is done, its references
//! added; read-only top-level values of a POST or PUT are dropped before
//! references are collected); a cycle
//! of POSTs is broken by creating one without its references and adding
//! them by PATCH later, and that create is taken back if they fail or are
//! never added.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use super::execute::{Done, execute, precondition};
use super::refs::{BulkIds, RefState, refs_in, refs_in_text, strip, substitute, substitute_text};
use super::{BulkMethod, BulkOperation, BulkOutcome, BulkRequest};
use crate::changelog::Actor;
use crate::error::{ScimError, ScimResult};
use crate::schema::ResourceTypeDef;
use crate::service::{Precondition, ResourceService};

/// Operations in flight at once. The SQLite writer folds them into one
/// transaction; PostgreSQL spreads them over the pool.
const CONCURRENCY: usize = 64;

enum State {
    /// Waits for its references (and for earlier operations on its path).
    Waiting,
    Running,
    /// Created; the references taken out to break a cycle wait to be added.
    FixupWaiting(Vec<Value>),
    FixupRunning,
    Done,
}

struct Slot {
    op: BulkOperation,
    state: State,
    refs: BTreeSet<String>,
    outcome: Option<BulkOutcome>,
    /// The path this operation changes (PUT, PATCH, DELETE), lower-cased.
    lane: Option<String>,
    /// References taken out of a POST to break a cycle, added once resolved.
    fixup: Option<Vec<Value>>,
}

/// Runs a parsed BulkRequest. `authorize` is asked before each operation
/// runs (its error becomes that operation's answer). The outcomes are in
/// request order; with `failOnErrors`, operations after the stopping error
/// are left out.
pub async fn run(
    service: &Arc<ResourceService>,
    request: BulkRequest,
    authorize: impl Fn(&ResourceTypeDef) -> ScimResult<()> + Send + Sync + 'static,
) -> Vec<BulkOutcome> {
    // A task of its own, acting for the request: a caller that goes away
    // (a client that gave up waiting) does not stop it half-way, before
    // the creates a cycle left without their references are completed or
    // undone.
    let service = Arc::clone(service);
    let work = Actor::carried(async move {
        let mut scheduler = Scheduler::new(&service, request, authorize);
        scheduler.run_operations().await;
        scheduler.fail_unfinished_fixups();
        scheduler.undo_creates().await;
        scheduler.outcomes()
    });
    match tokio::spawn(work).await {
        Ok(outcomes) => outcomes,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down.
        Err(_) => Vec::new(),
    }
}

/// One run of a BulkRequest: its operations, what their bulkIds stand for,
/// the work in flight and the errors so far.
struct Scheduler<'a, A> {
    service: &'a Arc<ResourceService>,
    /// Asked before each operation runs.
    authorize: A,
    /// Operations in flight at most: 1 under `failOnErrors`.
    window: usize,
    /// `failOnErrors`: how many errors stop the request.
    limit: Option<usize>,
    /// The operations, in request order.
    slots: Vec<Slot>,
    /// Per path (PUT, PATCH, DELETE), its unfinished operations in request order.
    lanes: HashMap<String, VecDeque<usize>>,
    bulk_ids: BulkIds,
    /// Cycle-broken creates to take back (see `undo_creates`).
    undo: Vec<usize>,
    errors: usize,
    stopped: bool,
    running: tokio::task::JoinSet<(usize, ScimResult<Done>)>,
}

impl<'a, A: Fn(&ResourceTypeDef) -> ScimResult<()>> Scheduler<'a, A> {
    fn new(service: &'a Arc<ResourceService>, request: BulkRequest, authorize: A) -> Self {
        let window = if request.fail_on_errors.is_some() {
            1
        } else {
            CONCURRENCY
        };
        let limit = request.fail_on_errors;
        let bulk_ids = BulkIds::new(&request.operations);
        let mut lanes: HashMap<String, VecDeque<usize>> = HashMap::new();
        let mut slots: Vec<Slot> = Vec::with_capacity(request.operations.len());
        for (i, mut op) in request.operations.into_iter().enumerate() {
            drop_ignored_values(&mut op);
            let mut refs = BTreeSet::new();
            refs_in_text(&op.path, &mut refs);
            if let Some(data) = &op.data {
                refs_in(data, &mut refs);
            }
            let lane = match &op.target {
                Ok(t) if t.method != BulkMethod::Post => {
                    let key = op.path.trim().trim_start_matches('/').to_ascii_lowercase();
                    lanes.entry(key.clone()).or_default().push_back(i);
                    Some(key)
                }
                _ => None,
            };
            slots.push(Slot {
                op,
                state: State::Waiting,
                refs,
                outcome: None,
                lane,
                fixup: None,
            });
        }
        Scheduler {
            service,
            authorize,
            window,
            limit,
            slots,
            lanes,
            bulk_ids,
            undo: Vec::new(),
            errors: 0,
            stopped: false,
            running: tokio::task::JoinSet::new(),
        }
    }

    /// Launches what is ready and takes in what finishes, until every
    /// operation is done or processing stopped and nothing runs any more.
    async fn run_operations(&mut self) {
        loop {
            self.launch_ready();
            if self.running.is_empty() {
                if self.stopped || self.slots.iter().all(|s| matches!(s.state, State::Done)) {
                    break;
                }
                // Nothing runs and nothing can start: the waiting POSTs name each
                // other. Create the first without its references.
                let Some(c) = self.cycle_start() else {
                    // Waiting operations whose references can never resolve.
                    self.fail_unresolvable();
                    break;
                };
                self.break_cycle(c);
                continue;
            }
            let Some(joined) = self.running.join_next().await else {
                continue;
            };
            let (i, result) = match joined {
                Ok(r) => r,
                Err(_) => {
                    // A panicked task has no index: its operation would wait
                    // forever, so nothing more starts.
                    self.stopped = true;
                    continue;
                }
            };
            self.complete(i, result);
        }
    }

    /// Launches what is ready, in request order.
    fn launch_ready(&mut self) {
        let mut i = 0;
        while !self.stopped && self.running.len() < self.window && i < self.slots.len() {
            match self.slots[i].state {
                State::Waiting => self.launch(i),
                State::FixupWaiting(_) => self.launch_fixup(i),
                _ => {}
            }
            i += 1;
        }
    }

    /// A waiting operation: answered with its error when it cannot run (not
    /// understood, a broken reference, refused by `authorize`); started when
    /// its references are resolved and it is first on its path.
    fn launch(&mut self, i: usize) {
        let creator_unfinished = self.creator_unfinished(i);
        let slot = &mut self.slots[i];
        let first_in_lane = !creator_unfinished
            && slot
                .lane
                .as_ref()
                .is_none_or(|l| self.lanes.get(l).and_then(|q| q.front()) == Some(&i));
        let refs = self.bulk_ids.state(&slot.refs);
        let early_error = match (&slot.op.target, &refs) {
            (Err(e), _) => Some(e.clone()),
            (Ok(_), RefState::Broken(why)) => Some(ScimError::Conflict(why.clone())),
            (Ok(t), _) => (self.authorize)(&t.resource_type).err(),
        };
        if let Some(e) = early_error {
            slot.outcome = Some(outcome(&slot.op, Err(e)));
            self.finish(i);
            self.count_error();
        } else if first_in_lane
            && matches!(refs, RefState::Resolved)
            && let Ok(t) = &slot.op.target
        {
            let resolved = &self.bulk_ids.resolved;
            let mut data = slot.op.data.clone();
            if let Some(d) = &mut data {
                substitute(d, resolved);
            }
            let id = t.id.as_deref().map(|id| substitute_text(id, resolved));
            let work = execute(
                self.service.clone(),
                t.resource_type.clone(),
                t.method,
                id,
                data,
                precondition(slot.op.version.as_deref()),
            );
            // Each operation acts for the Bulk request's actor.
            self.running
                .spawn(Actor::carried(async move { (i, work.await) }));
            slot.state = State::Running;
        }
    }

    /// Whether operation `i`'s path names a resource of this request whose
    /// POST is not done: created in a cycle, its references taken out are
    /// not added yet (that PATCH is on the resource's path too, and comes
    /// first in request order).
    fn creator_unfinished(&self, i: usize) -> bool {
        if self.slots[i].lane.is_none() {
            return false;
        }
        let mut named = BTreeSet::new();
        refs_in_text(&self.slots[i].op.path, &mut named);
        named.iter().any(|r| {
            self.bulk_ids
                .creator(r)
                .is_some_and(|c| !matches!(self.slots[c].state, State::Done))
        })
    }

    /// A POST created without the references that made a cycle: once they
    /// resolve, the PATCH that adds them starts; when one is broken, the
    /// POST fails and what it created is taken back.
    fn launch_fixup(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let State::FixupWaiting(adds) = &slot.state else {
            return;
        };
        match self.bulk_ids.state(&slot.refs) {
            RefState::Pending => {}
            RefState::Broken(why) => {
                if let Some(o) = &mut slot.outcome {
                    o.result = Err(ScimError::Conflict(why));
                }
                self.undo.push(i);
                self.finish(i);
                self.count_error();
            }
            RefState::Resolved => {
                let resolved = &self.bulk_ids.resolved;
                let mut body = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": adds,
                });
                substitute(&mut body, resolved);
                let id = slot
                    .op
                    .bulk_id
                    .as_ref()
                    .and_then(|b| resolved.get(b))
                    .cloned();
                if let Ok(t) = &slot.op.target {
                    let work = execute(
                        self.service.clone(),
                        t.resource_type.clone(),
                        BulkMethod::Patch,
                        id,
                        Some(body),
                        Precondition::None,
                    );
                    // Each operation acts for the Bulk request's actor.
                    self.running
                        .spawn(Actor::carried(async move { (i, work.await) }));
                }
                slot.state = State::FixupRunning;
            }
        }
    }

    /// The first waiting POST whose references are pending: when nothing
    /// runs and nothing can start, it is part of a cycle.
    fn cycle_start(&self) -> Option<usize> {
        self.slots.iter().position(|s| {
            matches!(s.state, State::Waiting)
                && matches!(&s.op.target, Ok(t) if t.method == BulkMethod::Post)
                && matches!(self.bulk_ids.state(&s.refs), RefState::Pending)
        })
    }

    /// Fails the waiting operations: their references can never resolve.
    fn fail_unresolvable(&mut self) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if matches!(slot.state, State::Waiting | State::FixupWaiting(_)) {
                let e = ScimError::Conflict(
                    "the bulkId references of this operation cannot be resolved".into(),
                );
                match &mut slot.outcome {
                    Some(o) => o.result = Err(e),
                    None => slot.outcome = Some(outcome(&slot.op, Err(e))),
                }
                self.finish(i);
            }
        }
    }

    /// Breaks a cycle at POST `c`: the values naming unresolved bulkIds are
    /// taken out of its data, to be added by PATCH once it is created and
    /// they resolve. A POST whose references cannot be taken out fails.
    fn break_cycle(&mut self, c: usize) {
        let slot = &mut self.slots[c];
        let unresolved: BTreeSet<String> = slot
            .refs
            .iter()
            .filter(|r| !self.bulk_ids.resolved.contains_key(*r))
            .cloned()
            .collect();
        let mut adds = Vec::new();
        if let Some(data) = &mut slot.op.data {
            adds = strip(data, &unresolved);
        }
        let mut left = BTreeSet::new();
        if let Some(data) = &slot.op.data {
            refs_in(data, &mut left);
        }
        if adds.is_empty() || !left.is_disjoint(&unresolved) {
            slot.outcome = Some(outcome(
                &slot.op,
                Err(ScimError::Conflict(
                    "circular bulkId references that cannot be taken apart".into(),
                )),
            ));
            self.finish(c);
            self.count_error();
            return;
        }
        slot.refs = left;
        slot.fixup = Some(adds);
    }

    /// Takes in the result of operation `i`'s work: its outcome, the id its
    /// bulkId stands for, and the references still to add after a cycle.
    fn complete(&mut self, i: usize, result: ScimResult<Done>) {
        let slot = &mut self.slots[i];
        let was_fixup = matches!(slot.state, State::FixupRunning);
        match (result, was_fixup) {
            (Ok(done), false) => {
                if let (Some(b), Some(id)) = (&slot.op.bulk_id, &done.id)
                    && slot.lane.is_none()
                {
                    self.bulk_ids.resolved.insert(b.clone(), id.clone());
                }
                slot.outcome = Some(BulkOutcome {
                    location: done.location,
                    version: done.version,
                    ..outcome(&slot.op, Ok(done.status))
                });
                match slot.fixup.take() {
                    Some(adds) => {
                        let mut refs = BTreeSet::new();
                        refs_in(&Value::Array(adds.clone()), &mut refs);
                        slot.refs = refs;
                        slot.state = State::FixupWaiting(adds);
                    }
                    None => self.finish(i),
                }
            }
            (Ok(done), true) => {
                if let Some(o) = &mut slot.outcome {
                    o.version = done.version;
                }
                self.finish(i);
            }
            (Err(e), fixup) => {
                if fixup {
                    if let Some(o) = &mut slot.outcome {
                        o.result = Err(e);
                    }
                    self.undo.push(i);
                } else {
                    slot.outcome = Some(outcome(&slot.op, Err(e)));
                }
                self.finish(i);
                self.count_error();
            }
        }
    }

    /// One more failed operation; under `failOnErrors` the limit reached
    /// stops the request.
    fn count_error(&mut self) {
        self.errors += 1;
        self.stopped = self.limit.is_some_and(|l| self.errors >= l);
    }

    /// Operation `i` is done: it leaves its path's lane, and its bulkId
    /// fails with it.
    fn finish(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.state = State::Done;
        if let Some(queue) = slot.lane.as_ref().and_then(|l| self.lanes.get_mut(l)) {
            queue.retain(|x| *x != i);
        }
        if let (Some(b), Some(o)) = (&slot.op.bulk_id, &slot.outcome)
            && o.result.is_err()
        {
            self.bulk_ids.failed.insert(b.clone());
        }
    }

    /// A POST created without its references (to break a cycle) whose
    /// references then failed, or were never added because processing
    /// stopped, is reported failed: it must not stay behind half made.
    fn fail_unfinished_fixups(&mut self) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if matches!(slot.state, State::FixupWaiting(_)) {
                if let Some(o) = &mut slot.outcome {
                    o.result = Err(ScimError::Conflict(
                        "processing stopped before this operation's bulkId references were added"
                            .into(),
                    ));
                }
                self.undo.push(i);
            }
        }
    }

    /// Deletes what the failed cycle-broken creates made; their outcomes
    /// keep no location or version.
    async fn undo_creates(&mut self) {
        for i in std::mem::take(&mut self.undo) {
            let slot = &mut self.slots[i];
            let created = slot
                .op
                .bulk_id
                .as_ref()
                .and_then(|b| self.bulk_ids.resolved.get(b));
            if let (Ok(t), Some(id)) = (&slot.op.target, created) {
                let removed = execute(
                    self.service.clone(),
                    t.resource_type.clone(),
                    BulkMethod::Delete,
                    Some(id.clone()),
                    None,
                    Precondition::None,
                )
                .await;
                if let (Err(e), Some(o)) = (removed, &mut slot.outcome) {
                    o.result = Err(ScimError::Internal(format!(
                        "the operation failed and the resource it created could not be removed: {e}"
                    )));
                }
            }
            if let Some(o) = &mut slot.outcome {
                o.location = None;
                o.version = None;
            }
        }
    }

    /// The outcomes, in request order.
    fn outcomes(self) -> Vec<BulkOutcome> {
        self.slots.into_iter().filter_map(|s| s.outcome).collect()
    }
}

/// Takes out of a POST's or PUT's data the attributes the server ignores
/// there (read-only: a user's `groups`, `id`, `meta`), so that a reference
/// in them makes no dependency, let alone a cycle to take apart (whose
/// PATCH would then be refused for naming a read-only attribute).
fn drop_ignored_values(op: &mut BulkOperation) {
    let (Ok(t), Some(Value::Object(data))) = (&op.target, &mut op.data) else {
        return;
    };
    if matches!(t.method, BulkMethod::Post | BulkMethod::Put) {
        data.retain(|key, _| !t.resource_type.ignores_on_write(key));
    }
}

fn outcome(op: &BulkOperation, result: Result<u16, ScimError>) -> BulkOutcome {
    BulkOutcome {
        method_text: op.method_text.clone(),
        bulk_id: op.bulk_id.clone(),
        location: None,
        version: None,
        result,
    }
}
