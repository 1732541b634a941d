//! The entity state shared with other processes ([`fraudlens_state`], Redis).
//!
//! The feature engine stays in process and stays one implementation. For each
//! batch, the entities its transactions touch are fetched (one round trip)
//! and loaded into the held engine — a scratch engine that keeps only this
//! process's clock between batches — then admitted and observed exactly as
//! with the in-process state; the entities the new transactions changed are
//! written back with a compare-and-set on their versions (one round trip).
//! An entity another process wrote in between is a conflict: its block is
//! redone for this batch's transactions on the fresh state
//! ([`FeatureEngine::observe_block`]) and written again. So no update is
//! lost, each entity's updates have one order (its versions), and every
//! entity's features are computed from all of its events, whichever process
//! handled them. Labels go the same way (fetch, apply, compare-and-set).
//!
//! The scratch engine keeps the entities between batches ([`Cache`], at most
//! `state.cache_entities`), each with the version its state equals: a batch
//! asks Redis only for the versions of those (a small reply, no decoding) and
//! fetches whole only the entities that are new to it or that another process
//! moved on. An entity a batch changed counts as no version until its write
//! is stored; a rebuilt state (another build token) empties the cache.
//!
//! The same id sent to two processes at once is applied to each entity once:
//! a redo skips an entity whose fresh state holds the transaction already,
//! and the store keeps one of the two decisions. A transaction the state
//! holds but the store does not (its observer stopped in between) is
//! decided after a wait without being observed again.

use std::collections::BTreeMap;
use std::time::Duration;

use fraudlens_core::{Label, Transaction};
use fraudlens_features::{EntityRef, FeatureEngine};
use fraudlens_state::{Fetched, SharedState, StateError, Write, Written};
use rustc_hash::FxHashMap;

use crate::admission::{Admission, Admissions, Observed, Prepared};
use crate::{Pipeline, ScoreError, ServingModel, lock};

/// Most compare-and-set rounds of one batch before it is given up.
const MAX_ROUNDS: u32 = 32;

/// Most transactions admitted together by the admission task.
const MAX_GROUP: usize = 5_000;

/// Batches waiting for the admission task, at most.
const QUEUE: usize = 1_024;

/// The scoring and write of an admitted batch, under way, and the ids it holds in flight.
pub(crate) type Admitted = (
    tokio::task::JoinHandle<Vec<Result<crate::Scored, ScoreError>>>,
    Vec<(String, std::sync::Arc<crate::admission::Slot>)>,
);

/// A batch for the admission task, prepared by its caller.
pub(crate) struct Job {
    /// The model it was parsed for.
    pub(crate) model: std::sync::Arc<ServingModel>,
    pub(crate) prepared: Vec<Prepared>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<Admitted, ScoreError>>,
}

/// An admission that failed, with its batch when nothing of it was observed
/// (so it can be admitted again, in parts).
type Failed = (ScoreError, Option<Vec<Prepared>>);

/// Starts the process's one admission task on the shared state: it takes
/// every batch queued (up to [`MAX_GROUP`] transactions, parsed for the same
/// model) and admits them together — one fetch and one compare-and-set
/// round trip for all, and no two of these batches racing for the same
/// entity (which would only conflict and redo; labels and orphans still go
/// their own way, under the compare-and-set like any other process). It
/// ends with the pipeline.
pub(crate) fn start_admitter(
    pipeline: &std::sync::Arc<Pipeline>,
    shared: SharedState,
) -> tokio::sync::mpsc::Sender<Job> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Job>(QUEUE);
    let pipeline = std::sync::Arc::downgrade(pipeline);
    tokio::spawn(async move {
        let mut next: Option<Job> = None;
        loop {
            let first = match next.take() {
                Some(job) => job,
                None => match receiver.recv().await {
                    Some(job) => job,
                    None => break,
                },
            };
            let mut total = first.prepared.len();
            let mut group = vec![first];
            while total < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(job) if std::sync::Arc::ptr_eq(&job.model, &group[0].model) => {
                        total += job.prepared.len();
                        group.push(job);
                    }
                    Ok(job) => {
                        next = Some(job);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let Some(pipeline) = pipeline.upgrade() else { break };
            let (this, shared) = (pipeline.clone(), shared.clone());
            // in a task of its own: a panic fails this group (its callers see the
            // task stop), not the admission of later ones
            let admitted = tokio::spawn(async move { this.admit_group(&shared, group).await }).await;
            if let Err(error) = admitted {
                tracing::error!(%error, "a shared-state admission failed");
                // it may have stopped between observing and marking what it changed
                let _ = pipeline.with_scratch(|engine, cache| {
                    cache.clear(engine);
                    Ok(())
                });
            }
        }
    });
    sender
}

/// The entities the scratch engine keeps between batches, and for each the
/// version of the shared state its held state equals.
#[derive(Default)]
pub(crate) struct Cache {
    /// The build of the shared state the versions belong to.
    build: Option<String>,
    entries: FxHashMap<EntityRef, Entry>,
    /// Number of the last load.
    loads: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    /// The version the engine's state of the entity equals; `None` while a
    /// batch changed it and has not stored it.
    version: Option<u64>,
    /// The load that last put it in the engine or changed it.
    load: u64,
}

impl Cache {
    /// Which of `refs` to ask only the version of: those held as of a
    /// version. Empties the cache first if `refs` would take it past `capacity`.
    fn probes(&mut self, engine: &mut FeatureEngine, refs: &[EntityRef], capacity: usize) -> Vec<bool> {
        if self.entries.len() + refs.len() > capacity {
            self.clear(engine);
        }
        refs.iter()
            .map(|at| self.version(*at).is_some_and(|version| version > 0) && engine.has_entity(*at))
            .collect()
    }

    fn version(&self, at: EntityRef) -> Option<u64> {
        self.entries.get(&at).and_then(|entry| entry.version)
    }

    fn clear(&mut self, engine: &mut FeatureEngine) {
        engine.clear_entities();
        self.entries.clear();
    }

    /// The engine's state of `at` was changed by load `load` and is not stored.
    fn changed(&mut self, at: EntityRef, load: u64) {
        self.entries.insert(at, Entry { version: None, load });
    }

    /// Records the versions that the writes of load `load` stored, for the
    /// entities no later load has put or changed in the engine since.
    pub(crate) fn stored(&mut self, writes: &[Write], written: &[Written], load: u64) {
        for (write, written) in writes.iter().zip(written) {
            if let (Written::Stored(version), Some(entry)) = (written, self.entries.get_mut(&write.at))
                && entry.load == load
                && entry.version.is_none()
            {
                entry.version = Some(*version);
            }
        }
    }
}

/// What a load into the scratch engine came to.
pub(crate) enum Load {
    /// Every entity is in the engine, as load number `.0`.
    Loaded(u64),
    /// These entities were asked by version and the engine does not hold
    /// that version (another process or batch moved them): fetch them whole.
    Stale(Vec<EntityRef>),
}

/// The entities of a batch as fetched, sorted by entity.
pub(crate) struct Loaded {
    refs: Vec<EntityRef>,
    fetched: Vec<Fetched>,
    /// Which were asked by version only.
    probed: Vec<bool>,
    /// The build of the shared state they belong to.
    build: String,
    /// Whether writes record the ids they apply.
    pub(crate) record_order: bool,
}

impl Loaded {
    /// Puts the fetched entities into the scratch engine (the probed ones
    /// are there already, unless they are stale).
    pub(crate) fn load_into(
        &self,
        engine: &mut FeatureEngine,
        cache: &mut Cache,
        capacity: usize,
    ) -> Result<Load, ScoreError> {
        if capacity == 0 {
            cache.clear(engine);
        }
        if cache.build.as_deref() != Some(self.build.as_str()) {
            // another build (Redis lost its data and was rebuilt): no version held is comparable
            cache.clear(engine);
            cache.build = Some(self.build.clone());
        }
        let stale: Vec<EntityRef> = self
            .refs
            .iter()
            .zip(&self.fetched)
            .zip(&self.probed)
            .filter(|((at, fetched), probed)| {
                **probed && !(cache.version(**at) == Some(fetched.version) && engine.has_entity(**at))
            })
            .map(|((at, _), _)| *at)
            .collect();
        if !stale.is_empty() {
            return Ok(Load::Stale(stale));
        }
        cache.loads += 1;
        let load = cache.loads;
        for ((at, fetched), probed) in self.refs.iter().zip(&self.fetched).zip(&self.probed) {
            if !probed {
                engine.import_entity(*at, fetched.bytes.as_deref()).map_err(|error| {
                    cache.entries.remove(at);
                    tracing::error!(%error, block = at.block, "a shared entity state does not fit the feature spec");
                    ScoreError::Unavailable(format!("shared entity state unreadable: {error}"))
                })?;
            }
            cache.entries.insert(
                *at,
                Entry {
                    version: Some(fetched.version),
                    load,
                },
            );
        }
        let hits = self.probed.iter().filter(|probed| **probed).count() as u64;
        metrics::counter!("fraudlens_state_cache_hits_total").increment(hits);
        Ok(Load::Loaded(load))
    }

    /// [`Self::load_into`] for entities fetched whole (never stale): the load number.
    fn load_whole(&self, engine: &mut FeatureEngine, cache: &mut Cache, capacity: usize) -> Result<u64, ScoreError> {
        match self.load_into(engine, cache, capacity)? {
            Load::Loaded(load) => Ok(load),
            Load::Stale(_) => Err(ScoreError::Unavailable(
                "shared entity state: entities fetched whole came back stale".to_owned(),
            )),
        }
    }

    /// Replaces the entities `refs` (stale ones) with their whole fetch.
    fn fill(&mut self, refs: &[EntityRef], fetch: fraudlens_state::Fetch) {
        if fetch.build != self.build {
            // rebuilt in between: nothing fetched before belongs to this build. All
            // count as probed (at no version): the next load empties the cache, finds
            // every one stale, and they are fetched whole again
            self.build = fetch.build;
            self.probed.fill(true);
            self.fetched.fill(Fetched::default());
            return;
        }
        for (at, fetched) in refs.iter().zip(fetch.entities) {
            if let Ok(idx) = self.refs.binary_search(at) {
                self.fetched[idx] = fetched;
                self.probed[idx] = false;
            }
        }
    }

    fn version(&self, at: EntityRef) -> Option<u64> {
        self.refs.binary_search(&at).ok().map(|idx| self.fetched[idx].version)
    }

    /// One write per loaded entity that `applied` changed: its new form, the
    /// version it was read at, and what was applied to it, in order. Each
    /// counts as changed by load `load` until its write is stored.
    pub(crate) fn writes(
        &self,
        engine: &FeatureEngine,
        cache: &mut Cache,
        load: u64,
        applied: BTreeMap<EntityRef, Vec<String>>,
    ) -> Vec<Write> {
        applied
            .into_iter()
            .filter_map(|(at, applied)| {
                cache.changed(at, load);
                Some(Write {
                    at,
                    read: self.version(at)?,
                    bytes: engine.export_entity(at)?,
                    applied,
                })
            })
            .collect()
    }
}

/// The entities the fresh transactions change, each with the ids applied
/// to it in batch order when the order is recorded (else none).
pub(crate) fn applied_by<'a>(
    engine: &FeatureEngine,
    txs: impl Iterator<Item = &'a Transaction>,
    record: bool,
) -> BTreeMap<EntityRef, Vec<String>> {
    let mut applied: BTreeMap<EntityRef, Vec<String>> = BTreeMap::new();
    for tx in txs {
        for at in engine.entity_refs(tx) {
            let ids = applied.entry(at).or_default();
            if record {
                ids.push(tx.id.as_str().to_owned());
            }
        }
    }
    applied
}

fn unavailable(error: StateError) -> ScoreError {
    if matches!(error, StateError::NotBuilt) {
        return ScoreError::Unavailable("the shared entity state is being rebuilt from the store; retry".to_owned());
    }
    tracing::warn!(%error, "shared entity state unavailable");
    metrics::counter!("fraudlens_state_errors_total").increment(1);
    ScoreError::Unavailable(error.to_string())
}

/// How long a rebuild may hold the rebuild lock (a rebuilder that dies frees it then).
const REBUILD_LEASE: Duration = Duration::from_secs(600);
/// How long a transaction the shared state holds may wait for its
/// observer's decision before it is decided here.
const ORPHAN_WAIT: Duration = Duration::from_secs(5);
/// A rebuilder waits this long before reading the store, so that batches
/// that fetched before the state was lost have stored their decisions.
const REBUILD_GRACE: Duration = Duration::from_secs(1);

fn conflicts(writes: &[Write], written: &[Written]) -> Vec<EntityRef> {
    writes
        .iter()
        .zip(written)
        .filter(|(_, written)| matches!(written, Written::Conflict(_)))
        .map(|(write, _)| write.at)
        .collect()
}

/// A short, growing, jittered pause before a redo round.
async fn back_off(round: u32) {
    let jitter = u64::from(std::process::id() % 7 + round);
    tokio::time::sleep(Duration::from_micros(50 * u64::from(round.min(20)) + jitter * 10)).await;
}

impl Pipeline {
    /// The scratch engine of the shared state (the whole-store shard) and its cache.
    fn with_scratch<T>(
        &self,
        f: impl FnOnce(&mut FeatureEngine, &mut Cache) -> Result<T, ScoreError>,
    ) -> Result<T, ScoreError> {
        let mut states = lock(&self.states);
        let crate::shards::States { held, cache, .. } = &mut *states;
        let held = held
            .get_mut(&None)
            .ok_or_else(|| ScoreError::Unavailable("no entity state".to_owned()))?;
        f(held.state.engine_mut(), cache)
    }

    /// Fetches the entities of `txs` (one round trip): with `probe`, only
    /// the versions of those the scratch engine keeps.
    async fn fetch_for(&self, shared: &SharedState, txs: &[&Transaction], probe: bool) -> Result<Loaded, ScoreError> {
        let model = self.model.load();
        let spec = model.events()?.spec.clone();
        let mut refs: Vec<EntityRef> = txs.iter().flat_map(|tx| spec.entity_refs(tx)).collect();
        refs.sort_unstable();
        refs.dedup();
        let probed = if probe && shared.cache_entities() > 0 {
            self.with_scratch(|engine, cache| Ok(cache.probes(engine, &refs, shared.cache_entities())))?
        } else {
            vec![false; refs.len()]
        };
        let fetch = shared
            .fetch_probing(&refs, &probed)
            .await
            .map_err(|error| self.fetch_failed(error))?;
        Ok(Loaded {
            refs,
            fetched: fetch.entities,
            probed,
            build: fetch.build,
            record_order: shared.records_order(),
        })
    }

    /// Loads `loaded` into the scratch engine (fetching whole what turns out
    /// stale) and admits the batch under the same lock.
    /// On failure, the batch comes back with the error if nothing of it was observed.
    async fn load_and_admit(
        &self,
        shared: &SharedState,
        model: &ServingModel,
        prepared: Vec<Prepared>,
        mut loaded: Loaded,
    ) -> Result<(Admissions, Vec<Write>, u64), Failed> {
        let capacity = shared.cache_entities();
        loop {
            let stale = {
                let mut states = lock(&self.states);
                let crate::shards::States { held, cache, .. } = &mut *states;
                let Some(held) = held.get_mut(&None) else {
                    return Err((ScoreError::Unavailable("no entity state".to_owned()), Some(prepared)));
                };
                match loaded.load_into(held.state.engine_mut(), cache, capacity) {
                    Ok(Load::Loaded(load)) => {
                        return self
                            .admit_prepared(model, prepared, &mut states, Some((&loaded, load)))
                            .map(|(admissions, writes)| (admissions, writes, load))
                            .map_err(|error| (error, None));
                    }
                    Ok(Load::Stale(stale)) => stale,
                    Err(error) => return Err((error, Some(prepared))),
                }
            };
            metrics::counter!("fraudlens_state_cache_stale_total").increment(stale.len() as u64);
            match shared.fetch_probing(&stale, &vec![false; stale.len()]).await {
                Ok(fetch) => loaded.fill(&stale, fetch),
                Err(error) => return Err((self.fetch_failed(error), Some(prepared))),
            }
        }
    }

    /// A failed fetch: a state found not built is to be rebuilt.
    fn fetch_failed(&self, error: StateError) -> ScoreError {
        if matches!(error, StateError::NotBuilt) {
            self.shared_lost.store(true, std::sync::atomic::Ordering::Release);
        }
        unavailable(error)
    }

    /// Starts a rebuild of the shared state in the background if a batch
    /// found it not built (a Redis that lost its data).
    pub(crate) fn rebuild_if_lost(self: &std::sync::Arc<Self>) {
        let Some(shared) = self.config.shared_state.clone() else {
            return;
        };
        if self.shared_lost.swap(false, std::sync::atomic::Ordering::AcqRel) {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(error) = this.ensure_shared_built(&shared).await {
                    tracing::error!(%error, "the shared entity state could not be rebuilt; the next batch tries again");
                }
            });
        }
    }

    /// Builds the shared state from the store unless it is built (a new
    /// Redis, or one that lost its data): one process rebuilds — only the
    /// stored rows inside the features' horizon — while the others wait for
    /// it. Returns how many stored rows this process replayed.
    pub(crate) async fn ensure_shared_built(&self, shared: &SharedState) -> Result<usize, crate::PipelineError> {
        let _one_at_a_time = self.acquiring.lock().await;
        let token = format!("{}-{}", std::process::id(), crate::now_ms());
        let waiting = std::time::Instant::now();
        loop {
            if shared.is_built().await? {
                return Ok(0);
            }
            if shared.lock_rebuild(&token, REBUILD_LEASE).await? {
                break;
            }
            if waiting.elapsed() > REBUILD_LEASE {
                return Err(crate::PipelineError::SharedState(StateError::NotBuilt));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rebuilt = self.rebuild_shared(shared).await;
        if let Err(error) = shared.unlock_rebuild(&token).await {
            tracing::warn!(%error, "the rebuild lock was not released (it expires)");
        }
        rebuilt
    }

    async fn rebuild_shared(&self, shared: &SharedState) -> Result<usize, crate::PipelineError> {
        tracing::warn!("the shared entity state is not built (a new or emptied Redis): rebuilding it from the store");
        tokio::time::sleep(REBUILD_GRACE).await;
        let started = std::time::Instant::now();
        let spec = self
            .model
            .load()
            .events()
            .map_err(|error| crate::PipelineError::Model(error.to_string()))?
            .spec
            .clone();
        let mut engine = FeatureEngine::new(spec);
        engine.set_time_policy(self.config.time_policy);
        let mut held = crate::shards::Held {
            state: Box::new(engine),
            seq: 0,
        };
        let caught_up = crate::state::catch_up(self.store.as_ref(), None, &mut held, "redis").await?;
        let engine = held.state.engine_mut();
        let entities: Vec<(EntityRef, Vec<u8>)> = engine
            .entities()
            .into_iter()
            .filter_map(|at| Some((at, engine.export_entity(at)?)))
            .collect();
        shared.overwrite(&entities).await?;
        shared.mark_built().await?;
        tracing::warn!(
            replayed = caught_up.observed,
            refused = caught_up.refused,
            entities = entities.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "the shared entity state is rebuilt"
        );
        Ok(caught_up.observed)
    }

    /// Admits the batches of `group` together and hands each its own
    /// scoring-and-write task.
    async fn admit_group(self: &std::sync::Arc<Self>, shared: &SharedState, group: Vec<Job>) {
        let model = group[0].model.clone();
        let mut lens = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        let mut prepared = Vec::new();
        for job in group {
            lens.push(job.prepared.len());
            prepared.extend(job.prepared);
            replies.push(job.reply);
        }
        metrics::histogram!("fraudlens_state_admission_batches").record(lens.len() as f64);
        let admissions = match self.admit_shared(shared, &model, prepared).await {
            Ok(admissions) => admissions,
            // failed before anything was observed (Redis, an unreadable entity):
            // each batch is admitted alone, so one batch's entity fails no other
            Err((_, Some(prepared))) if lens.len() > 1 => {
                let mut prepared = prepared.into_iter();
                for (len, reply) in lens.into_iter().zip(replies) {
                    let job = Job {
                        model: model.clone(),
                        prepared: prepared.by_ref().take(len).collect(),
                        reply,
                    };
                    Box::pin(self.admit_group(shared, vec![job])).await;
                }
                return;
            }
            Err((error, _)) => {
                self.rebuild_if_lost();
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
        };
        self.rebuild_if_lost();
        let mut admissions = admissions.into_iter();
        for (len, reply) in lens.into_iter().zip(replies) {
            let part: Admissions = admissions.by_ref().take(len).collect();
            let claimed = crate::scoring::claimed_by(&part);
            let (this, model) = (self.clone(), model.clone());
            let task = tokio::spawn(async move { this.complete(&model, part).await });
            // a caller gone meanwhile: the task still scores and writes
            let _ = reply.send(Ok((task, claimed)));
        }
    }

    /// Admission on the shared state: fetch, admit and observe as in
    /// process, write back, redo conflicts. On failure nothing of the batch
    /// is answered as scored: its ids leave the in-flight table with the error.
    async fn admit_shared(
        &self,
        shared: &SharedState,
        model: &ServingModel,
        prepared: Vec<Prepared>,
    ) -> Result<Admissions, Failed> {
        let txs: Vec<&Transaction> = prepared
            .iter()
            .filter_map(|prepared| prepared.as_ref().ok().map(|(_, _, tx)| tx))
            .collect();
        if txs.is_empty() {
            // nothing to observe (every record refused by the schema): no round trip
            let mut states = lock(&self.states);
            return self
                .admit_prepared(model, prepared, &mut states, None)
                .map(|(admissions, _)| admissions)
                .map_err(|error| (error, None));
        }
        let loaded = match self.fetch_for(shared, &txs, true).await {
            Ok(loaded) => loaded,
            Err(error) => return Err((error, Some(prepared))),
        };
        let (mut admissions, writes, load) = self.load_and_admit(shared, model, prepared, loaded).await?;
        let mut fresh: Vec<&mut Observed> = admissions
            .iter_mut()
            .filter_map(|admission| match admission {
                Ok(Admission::Fresh(observed)) => Some(observed),
                _ => None,
            })
            .collect();
        if let Err(error) = self.commit_shared(shared, writes, load, &mut fresh).await {
            let mut in_flight = lock(&self.in_flight);
            for admission in &mut admissions {
                if let Ok(Admission::Fresh(observed)) = admission {
                    in_flight.remove(observed.tx.id.as_str());
                    observed.slot.publish(Err(error.clone()));
                    *admission = Err(error.clone());
                }
            }
        }
        Ok(admissions)
    }

    /// Writes the batch's entities; an entity another process wrote since the
    /// fetch is fetched again and its block redone for the batch's
    /// transactions, in order, until every write is stored.
    async fn commit_shared(
        &self,
        shared: &SharedState,
        mut writes: Vec<Write>,
        mut load: u64,
        fresh: &mut [&mut Observed],
    ) -> Result<(), ScoreError> {
        for round in 0..MAX_ROUNDS {
            if writes.is_empty() {
                return Ok(());
            }
            let written = shared.write(&writes).await.map_err(unavailable)?;
            self.with_scratch(|_, cache| {
                cache.stored(&writes, &written, load);
                Ok(())
            })?;
            let stale = conflicts(&writes, &written);
            if stale.is_empty() {
                return Ok(());
            }
            back_off(round).await;
            let fetch = shared
                .fetch_probing(&stale, &vec![false; stale.len()])
                .await
                .map_err(|error| self.fetch_failed(error))?;
            let loaded = Loaded {
                probed: vec![false; stale.len()],
                refs: stale,
                fetched: fetch.entities,
                build: fetch.build,
                record_order: shared.records_order(),
            };
            (writes, load) = self.with_scratch(|engine, cache| {
                let load = loaded.load_whole(engine, cache, shared.cache_entities())?;
                let mut applied: BTreeMap<EntityRef, Vec<String>> = BTreeMap::new();
                for observed in fresh.iter_mut() {
                    for at in engine.entity_refs(&observed.tx) {
                        if loaded.version(at).is_some() {
                            // the same id sent to two processes at once: the other one
                            // applied it to this entity first, so it is not applied twice
                            // (the store keeps one of the two decisions)
                            if engine.entity_holds(at, &observed.tx) {
                                metrics::counter!("fraudlens_state_applied_elsewhere_total").increment(1);
                                continue;
                            }
                            engine.observe_block(&observed.tx, at.block, &mut observed.row);
                            applied.entry(at).or_default().push(observed.tx.id.as_str().to_owned());
                        }
                    }
                }
                Ok((loaded.writes(engine, cache, load, applied), load))
            })?;
            metrics::counter!("fraudlens_state_redone_total").increment(writes.len() as u64);
        }
        Err(ScoreError::Unavailable(format!(
            "shared entity state: still contended after {MAX_ROUNDS} rounds"
        )))
    }

    /// A transaction the shared state holds but the store does not: another
    /// process observed it and is storing its decision (or died between the
    /// two). Waits for that decision; if none comes, decides on the state as
    /// it is, without observing the transaction again (the state counts it
    /// once already) — so a redelivered record never stalls its partition.
    pub(crate) async fn resolve_unstored(
        &self,
        tx: Transaction,
        shard: crate::ShardKey,
        fingerprint: String,
    ) -> Result<crate::Scored, ScoreError> {
        let Some(shared) = &self.config.shared_state else {
            return Err(ScoreError::Unavailable("no shared entity state".to_owned()));
        };
        let id = tx.id.as_str().to_owned();
        let started = std::time::Instant::now();
        while started.elapsed() < ORPHAN_WAIT {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let stored = self
                .store
                .transaction(&id)
                .await
                .map_err(|error| ScoreError::Unavailable(error.to_string()))?;
            if let Some(stored) = stored {
                return crate::admission::compare(&stored, &fingerprint);
            }
        }
        metrics::counter!("fraudlens_state_orphans_decided_total").increment(1);
        tracing::warn!(
            id,
            "orphan: a transaction in the shared entity state has no stored decision (its observer stopped): decided now, \
             not observed again where it is held"
        );
        let model = self.model.load_full();
        let loaded = self.fetch_for(shared, &[&tx], false).await?;
        // the entities that hold it keep it once; those that do not (its observer
        // stopped between two entities' writes) get it now
        let (mut row, writes, load) = self.with_scratch(|engine, cache| {
            let load = loaded.load_whole(engine, cache, shared.cache_entities())?;
            let missing: BTreeMap<EntityRef, Vec<String>> = engine
                .entity_refs(&tx)
                .into_iter()
                .filter(|at| !engine.entity_holds(*at, &tx))
                .map(|at| (at, vec![tx.id.as_str().to_owned()]))
                .collect();
            let mut row = Vec::new();
            engine.observe(&tx, &mut row);
            // observed again in the engine where it was held: not as stored
            for at in engine.entity_refs(&tx) {
                cache.changed(at, load);
            }
            let writes = loaded.writes(engine, cache, load, missing);
            Ok((row, writes, load))
        })?;
        model.events()?.push_attributes(&tx, &mut row);
        let (body, fingerprint) = crate::admission::stored_form(&tx)?;
        let slot = std::sync::Arc::new(crate::admission::Slot::default());
        let racing = {
            let mut in_flight = lock(&self.in_flight);
            match in_flight.get(&id) {
                Some(racing) => Some(racing.join()),
                None => {
                    in_flight.insert(id, slot.clone());
                    None
                }
            }
        };
        if let Some(racing) = racing {
            return racing
                .wait()
                .await
                .and_then(|scored| crate::admission::compare_record(scored.record, &fingerprint));
        }
        let mut observed = Observed {
            tx,
            shard,
            body,
            fingerprint,
            row,
            started: std::time::Instant::now(),
            received_at: crate::now(),
            slot,
            decided: None,
        };
        if let Err(error) = self.commit_shared(shared, writes, load, &mut [&mut observed]).await {
            lock(&self.in_flight).remove(observed.tx.id.as_str());
            observed.slot.publish(Err(error.clone()));
            return Err(error);
        }
        self.finish(&model, vec![observed])
            .await
            .pop()
            .unwrap_or_else(|| Err(ScoreError::Unavailable("no result".to_owned())))
    }

    /// Feeds a label to the shared state of its transaction's entities;
    /// whether any held the transaction.
    pub(crate) async fn apply_label_shared(&self, shared: &SharedState, tx: &Transaction, label: Label) -> bool {
        let applied = format!("label {} {}", tx.id.as_str(), label.as_str());
        for round in 0..MAX_ROUNDS {
            let attempt = async {
                let loaded = self.fetch_for(shared, &[tx], false).await?;
                let writes = self.with_scratch(|engine, cache| {
                    let load = loaded.load_whole(engine, cache, shared.cache_entities())?;
                    let refs = engine.entity_refs(tx);
                    let before: Vec<Option<Vec<u8>>> = refs.iter().map(|at| engine.export_entity(*at)).collect();
                    if engine.apply_label(tx, label).found == 0 {
                        return Ok(None);
                    }
                    for at in &refs {
                        cache.changed(*at, load);
                    }
                    // only the entities the label changed are written (labels are rare:
                    // comparing the stored forms is cheaper than a needless conflict)
                    let changed = refs
                        .into_iter()
                        .zip(before)
                        .filter(|(at, before)| engine.export_entity(*at) != *before)
                        .map(|(at, _)| (at, vec![applied.clone()]));
                    Ok(Some((loaded.writes(engine, cache, load, changed.collect()), load)))
                })?;
                let Some((writes, load)) = writes else {
                    return Ok(Some(false));
                };
                let written = shared.write(&writes).await.map_err(unavailable)?;
                self.with_scratch(|_, cache| {
                    cache.stored(&writes, &written, load);
                    Ok(())
                })?;
                Ok::<_, ScoreError>(conflicts(&writes, &written).is_empty().then_some(true))
            };
            match attempt.await {
                Ok(Some(found)) => return found,
                Ok(None) => back_off(round).await,
                Err(error) => {
                    tracing::warn!(%error, id = tx.id.as_str(), "label not applied to the shared entity state");
                    return false;
                }
            }
        }
        false
    }
}
