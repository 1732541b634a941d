//! The entity state across restarts: a snapshot file written at shutdown (and
//! on demand), holding the store position it covers; on start, the
//! transactions stored after that position are replayed through the engine
//! (skipping those it has seen). Without a snapshot, or with one that does not
//! fit the model's feature spec, the whole store is replayed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fraudlens_core::{Label, Transaction};
use fraudlens_features::{EventTimePolicy, FeatureEngine, FeatureSpec};
use fraudlens_store::{Store, StoredDecision};

use crate::shards::{CaughtUp, Held, observe_unseen};
use crate::{PipelineError, now_ms};

const MAGIC: &[u8; 8] = b"FLSTATE1";
pub(crate) const REPLAY_PAGE: u32 = 10_000;

/// The snapshot file: `FLSTATE1`, the last store sequence number it covers
/// (little-endian i64), then the engine's own checksummed snapshot.
pub struct StateFile;

impl StateFile {
    /// Writes the file atomically (temporary file, fsync, rename).
    pub fn write(path: &Path, last_seq: i64, engine_snapshot: &[u8]) -> Result<(), PipelineError> {
        let error = |reason: String| PipelineError::State {
            path: path.to_owned(),
            reason,
        };
        let mut bytes = Vec::with_capacity(engine_snapshot.len() + 16);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&last_seq.to_le_bytes());
        bytes.extend_from_slice(engine_snapshot);
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
        }
        let temporary = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary).map_err(|e| error(e.to_string()))?;
            file.write_all(&bytes).map_err(|e| error(e.to_string()))?;
            file.sync_all().map_err(|e| error(e.to_string()))?;
        }
        std::fs::rename(&temporary, path).map_err(|e| error(e.to_string()))?;
        Ok(())
    }

    /// The store position of a snapshot's bytes: the last store row it
    /// covers (0 for a plain engine snapshot, which covers none).
    pub fn position(bytes: &[u8]) -> i64 {
        match bytes.get(..16) {
            Some(head) if &head[..8] == MAGIC => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&head[8..16]);
                i64::from_le_bytes(seq)
            }
            _ => 0,
        }
    }

    /// Reads the file: the store position and the engine it holds. A plain
    /// engine snapshot (`fraudlens features --snapshot-out`: history built
    /// offline) is read too, as covering no stored transaction.
    pub fn read(path: &Path, spec: &Arc<FeatureSpec>) -> Result<(i64, FeatureEngine), String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            let engine = FeatureEngine::restore(spec.clone(), &bytes)
                .map_err(|e| format!("neither an entity-state file nor an engine snapshot: {e}"))?;
            return Ok((0, engine));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[8..16]);
        let engine = FeatureEngine::restore(spec.clone(), &bytes[16..]).map_err(|e| e.to_string())?;
        Ok((i64::from_le_bytes(seq), engine))
    }
}

/// The whole-store state for `spec`: from the snapshot if it fits, then caught up with the store.
///
/// A snapshot whose clock is ahead of the wall clock by more than the
/// policy's `max_future` was written by a process that accepted a
/// future-dated event (before the policy existed): its state is poisoned, so
/// it is not used and the state is rebuilt from the store — where the same
/// rule leaves that event out.
pub(crate) async fn restore(
    store: &dyn Store,
    spec: &Arc<FeatureSpec>,
    state_file: Option<&Path>,
    policy: EventTimePolicy,
) -> Result<Held, PipelineError> {
    let fresh = || {
        let mut engine = FeatureEngine::new(spec.clone());
        engine.set_time_policy(policy);
        engine
    };
    let (mut seq, mut engine) = match state_file.filter(|path| path.exists()) {
        Some(path) => match StateFile::read(path, spec) {
            Ok(restored) => restored,
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "entity-state snapshot not used; rebuilding from the store");
                (0, fresh())
            }
        },
        None => (0, fresh()),
    };
    engine.set_time_policy(policy);
    // the snapshot's own clock under the policy's future rule
    if let Some(clock) = engine.clock()
        && let Err(error) = engine.check_time(fraudlens_core::Timestamp::from_millis(clock), Some(now_ms()))
    {
        tracing::warn!(%error, "entity-state snapshot is dated in the future; rebuilding from the store");
        (seq, engine) = (0, fresh());
    }
    let mut held = Held {
        state: Box::new(engine),
        seq,
    };
    let caught_up = catch_up(store, None, &mut held, "memory").await?;
    if caught_up.observed > 0 || caught_up.refused > 0 {
        tracing::info!(
            replayed = caught_up.observed,
            refused = caught_up.refused,
            entities = held.state.n_entities(),
            "entity state caught up with the store"
        );
    }
    Ok(held)
}

/// Stored transactions of one page, parsed, in store order (feature rows,
/// stored by a tabular model served on the same store, are not transactions:
/// skipped).
pub(crate) fn parse_page(page: &[StoredDecision]) -> Result<Vec<(Transaction, Option<Label>)>, PipelineError> {
    page.iter()
        .filter(|stored| !stored.decision.body.starts_with(crate::rows::ROW_BODY_PREFIX))
        .map(|stored| {
            let tx: Transaction =
                serde_json::from_str(&stored.decision.body).map_err(|error| PipelineError::State {
                    path: PathBuf::from(format!("store row {}", stored.seq)),
                    reason: format!("stored transaction unreadable: {error}"),
                })?;
            Ok((tx, stored.label))
        })
        .collect()
}

/// Brings a state up to date with the store rows after its position (all of
/// them, or those of one shard); how many it observed.
///
/// Stored rows go through the event-time policy like new ones: rows stored
/// before it existed (a transaction dated years ahead) stay in the store but
/// never reach the state.
pub(crate) async fn catch_up(
    store: &dyn Store,
    shard: Option<&str>,
    held: &mut Held,
    backend: &'static str,
) -> Result<CaughtUp, PipelineError> {
    let now = now_ms();
    let started = std::time::Instant::now();
    // an empty state starting from the beginning of the store (a snapshot of
    // history built offline also starts at 0, but holds entities already)
    let rebuild = held.seq == 0 && held.state.n_entities() == 0;
    if rebuild {
        let engine = held.state.engine_mut();
        if let Some((seq, cutoff)) = bounded_start(store, engine.spec(), engine.time_policy(), shard, now).await? {
            tracing::info!(
                shard = shard.unwrap_or("all"),
                %cutoff,
                from_seq = seq + 1,
                "rebuilding the entity state from the stored transactions dated at or after the cutoff (older ones cannot change a feature)"
            );
            held.seq = seq;
        }
    }
    let mut total = CaughtUp::default();
    loop {
        let page = store.transactions_after(held.seq, REPLAY_PAGE, shard).await?;
        let Some(last) = page.last() else { break };
        held.seq = last.seq;
        let done = observe_unseen(held.state.as_mut(), &parse_page(&page)?, now);
        total.observed += done.observed;
        total.refused += done.refused;
    }
    if total.refused > 0 {
        metrics::counter!("fraudlens_event_time_refused_total", "reason" => "stored").increment(total.refused as u64);
    }
    if rebuild {
        metrics::counter!("fraudlens_state_rebuilds_total", "backend" => backend).increment(1);
        metrics::counter!("fraudlens_state_rebuild_rows_total", "backend" => backend).increment(total.observed as u64);
        metrics::gauge!("fraudlens_state_rebuild_seconds", "backend" => backend).set(started.elapsed().as_secs_f64());
    }
    Ok(total)
}

/// Where a rebuild of an empty state starts: just before the first stored
/// transaction (of `shard`) dated at or after a cutoff, and the cutoff.
///
/// Every event the policy still accepts is dated at most `max_lateness`
/// before the latest stored one, and a row observed late was processed at
/// most `max_lateness` after its own time; its features look back at most
/// the spec's horizon. So rows dated before `latest − horizon − 2 ×
/// max_lateness` cannot change any feature any more. `latest` is bounded by
/// the wall clock (`max_future`): a far-future row stored before the policy
/// existed does not move the cutoff. `None`: replay everything (no lateness
/// bound, or an empty store).
pub(crate) async fn bounded_start(
    store: &dyn Store,
    spec: &FeatureSpec,
    policy: EventTimePolicy,
    shard: Option<&str>,
    now_ms: i64,
) -> Result<Option<(i64, fraudlens_core::Timestamp)>, PipelineError> {
    let Some(lateness) = policy.max_lateness_ms else {
        return Ok(None);
    };
    let Some(latest) = store.latest_event_time().await? else {
        return Ok(None);
    };
    let latest = match policy.max_future_ms {
        Some(max_future) => latest.as_millis().min(now_ms.saturating_add(max_future)),
        None => latest.as_millis(),
    };
    let cutoff = fraudlens_core::Timestamp::from_millis(
        latest
            .saturating_sub(spec.horizon_ms())
            .saturating_sub(lateness.saturating_mul(2)),
    );
    Ok(match store.first_seq_since(cutoff, shard).await? {
        Some(first) => Some((first - 1, cutoff)),
        // nothing recent: nothing to replay
        None => Some((store.last_seq().await?, cutoff)),
    })
}
