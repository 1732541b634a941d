//! Snapshot and restore of the whole engine state, so a restarted process does
//! not start cold. The format is versioned and checksummed:
//!
//! ```text
//! "FLFEAT\0\0" | version: u32 LE | payload length: u64 LE | payload (postcard) | xxh3-64 of payload: u64 LE
//! ```
//!
//! The payload carries the spec fingerprint; a snapshot is refused by an engine
//! with a different spec. Entities are written sorted by key, so equal states
//! give equal bytes.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::engine::{DistinctAgg, EntityState, Event, RiskAgg, WindowAgg};
use crate::{FeatureEngine, FeatureSpec};

const MAGIC: &[u8; 8] = b"FLFEAT\0\0";
/// Snapshot format written by this version.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Does not start with the snapshot magic bytes.
    #[error("not a fraudlens feature snapshot")]
    NotASnapshot,
    /// Written by a newer or older format.
    #[error("snapshot format version {found} is not supported (this build reads version {SNAPSHOT_VERSION})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// Shorter than its header says.
    #[error("snapshot is truncated")]
    Truncated,
    /// Bytes changed since writing.
    #[error("snapshot checksum mismatch: the file is corrupt")]
    ChecksumMismatch,
    /// Built with another feature spec or schema.
    #[error("snapshot was built with another feature spec (fingerprint {found:016x}, expected {expected:016x})")]
    SpecMismatch {
        /// Fingerprint in the snapshot.
        found: u64,
        /// Fingerprint of the current spec.
        expected: u64,
    },
    /// Checksum fine but the content does not fit the spec.
    #[error("snapshot content is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Serialize, Deserialize)]
struct Body {
    fingerprint: u64,
    clock: i64,
    blocks: Vec<Vec<(u64, StoredState)>>,
}

/// One entity's state as stored (snapshots; entity form 1), checked by
/// [`StoredState::into_state`] before it becomes state.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredState {
    pub(crate) events: Vec<Event>,
    pub(crate) others: Vec<u64>,
    pub(crate) first_seq: u64,
    pub(crate) windows: Vec<WindowAgg>,
    pub(crate) max: Vec<(u64, i64)>,
    pub(crate) distinct: Vec<(u64, Vec<(u64, u32)>)>,
    pub(crate) risk: Vec<RiskAgg>,
}

/// The distinct-count aggregates, their counts sorted by key (equal states, equal bytes).
pub(crate) fn sorted_distinct(state: &EntityState) -> Vec<(u64, Vec<(u64, u32)>)> {
    state
        .distinct
        .iter()
        .map(|agg| {
            let mut counts: Vec<(u64, u32)> = agg.counts.iter().map(|(k, v)| (*k, *v)).collect();
            counts.sort_unstable();
            (agg.start, counts)
        })
        .collect()
}

impl FeatureEngine {
    /// Serialises the whole state.
    pub fn snapshot(&self) -> Vec<u8> {
        let blocks = self
            .states
            .iter()
            .map(|states| {
                let mut entries: Vec<(u64, StoredState)> = states
                    .iter()
                    .map(|(key, state)| (*key, StoredState::from(state)))
                    .collect();
                entries.sort_unstable_by_key(|(key, _)| *key);
                entries
            })
            .collect();
        let body = Body {
            fingerprint: self.spec.fingerprint(),
            clock: self.clock,
            blocks,
        };
        // invariant: serialising plain integers and vectors into memory cannot fail
        let payload = postcard::to_stdvec(&body).unwrap_or_default();
        let mut bytes = Vec::with_capacity(payload.len() + 28);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        bytes
    }

    /// Rebuilds an engine from [`Self::snapshot`] bytes, checking format,
    /// checksum, spec fingerprint and structure.
    pub fn restore(spec: Arc<FeatureSpec>, bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| SnapshotError::Truncated)?);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        let len_bytes = bytes.get(12..20).ok_or(SnapshotError::Truncated)?;
        let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| SnapshotError::Truncated)?) as usize;
        let payload = bytes
            .get(20..20usize.saturating_add(len))
            .ok_or(SnapshotError::Truncated)?;
        let checksum = bytes.get(20 + len..28 + len).ok_or(SnapshotError::Truncated)?;
        if bytes.len() != 28 + len {
            return Err(SnapshotError::Inconsistent("trailing bytes after the checksum".into()));
        }
        if xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes() != checksum {
            return Err(SnapshotError::ChecksumMismatch);
        }
        let body: Body = postcard::from_bytes(payload).map_err(|e| SnapshotError::Inconsistent(e.to_string()))?;
        if body.fingerprint != spec.fingerprint() {
            return Err(SnapshotError::SpecMismatch {
                found: body.fingerprint,
                expected: spec.fingerprint(),
            });
        }
        if body.blocks.len() != spec.blocks.len() {
            return Err(SnapshotError::Inconsistent("block count differs from the spec".into()));
        }
        let mut engine = FeatureEngine::new(spec.clone());
        // the sweep schedule is not state: eviction never changes a feature, so the
        // restored engine simply sweeps at its next event
        engine.clock = body.clock;
        for ((block, stored), states) in spec.blocks.iter().zip(body.blocks).zip(&mut engine.states) {
            for (key, state) in stored {
                states.insert(key, state.into_state(block)?);
            }
        }
        Ok(engine)
    }
}

impl From<&EntityState> for StoredState {
    fn from(state: &EntityState) -> Self {
        Self {
            events: state.events.iter().copied().collect(),
            others: state.others.iter().copied().collect(),
            first_seq: state.first_seq,
            windows: state.windows.clone(),
            max: state.max.iter().copied().collect(),
            distinct: sorted_distinct(state),
            risk: state.risk.clone(),
        }
    }
}

impl StoredState {
    pub(crate) fn into_state(self, block: &crate::spec::Block) -> Result<EntityState, SnapshotError> {
        let bad = |what: &str| SnapshotError::Inconsistent(what.to_owned());
        let first = self.first_seq;
        let next = first
            .checked_add(self.events.len() as u64)
            .ok_or_else(|| bad("event sequence numbers overflow"))?;
        let in_range = |seq: u64| (first..=next).contains(&seq);
        if self.windows.len() != block.windows.len()
            || self.distinct.len() != block.distinct.len()
            || self.risk.len() != block.risk_windows.len()
        {
            return Err(bad("entity state does not match the spec's windows"));
        }
        if self.others.len() != self.events.len() * block.distinct_of.len() {
            return Err(bad("distinct-count keys do not match the events"));
        }
        if self.windows.iter().any(|w| !in_range(w.start))
            || self.distinct.iter().any(|(start, _)| !in_range(*start))
            || self
                .risk
                .iter()
                .any(|r| !in_range(r.start) || !in_range(r.end) || r.start > r.end)
        {
            return Err(bad("window position outside the stored events"));
        }
        let decreasing = self
            .max
            .windows(2)
            .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 > pair[1].1);
        if !decreasing || self.max.iter().any(|(seq, _)| !(first..next).contains(seq)) {
            return Err(bad("window maximum out of order"));
        }
        Ok(EntityState {
            events: VecDeque::from(self.events),
            others: VecDeque::from(self.others),
            first_seq: first,
            windows: self.windows,
            max: VecDeque::from(self.max),
            distinct: self
                .distinct
                .into_iter()
                .map(|(start, counts)| DistinctAgg {
                    start,
                    counts: counts.into_iter().collect::<FxHashMap<_, _>>(),
                })
                .collect(),
            risk: self.risk,
        })
    }
}

/// Format byte of one entity's stored form in the snapshot's varint
/// encoding (read; [`crate::entity_form`] writes format 2).
const ENTITY_FORMAT_VARINT: u8 = 1;

/// One entity's state outside the engine: a block of the spec and the hash of
/// the entity's key. A shared state backend keeps each under a key of its own,
/// so that one entity's updates are independent of every other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityRef {
    /// Index of the block in the spec.
    pub block: usize,
    /// Hash of the entity's key (never 0).
    pub key: u64,
}

/// Moving single entities in and out of an engine: the primitives of a shared
/// state (`fraudlens-state`), which loads the entities a batch touches into a
/// scratch engine, observes there with the one engine code, and writes back
/// what changed.
impl FeatureEngine {
    /// The entity states observing (or labelling) `tx` reads and writes, in block order.
    pub fn entity_refs(&self, tx: &fraudlens_core::Transaction) -> Vec<EntityRef> {
        self.spec.entity_refs(tx)
    }

    /// The stored form of one entity's state; `None` when the engine holds none.
    pub fn export_entity(&self, at: EntityRef) -> Option<Vec<u8>> {
        let state = self.states.get(at.block)?.get(&at.key)?;
        Some(crate::entity_form::encode(state))
    }

    /// Sets one entity's state from its stored form, or removes it (`None`).
    /// A form that does not fit the block is refused and nothing changes.
    pub fn import_entity(&mut self, at: EntityRef, bytes: Option<&[u8]>) -> Result<(), SnapshotError> {
        let block = self
            .spec
            .blocks
            .get(at.block)
            .ok_or_else(|| SnapshotError::Inconsistent(format!("no block {}", at.block)))?;
        let Some(bytes) = bytes else {
            self.states[at.block].remove(&at.key);
            return Ok(());
        };
        match bytes.split_first() {
            Some((&crate::entity_form::FORMAT, payload)) => {
                let state = crate::entity_form::decode(payload)?.into_state(block)?;
                self.states[at.block].insert(at.key, state);
                Ok(())
            }
            Some((&ENTITY_FORMAT_VARINT, payload)) => {
                let stored: StoredState =
                    postcard::from_bytes(payload).map_err(|e| SnapshotError::Inconsistent(e.to_string()))?;
                let state = stored.into_state(block)?;
                self.states[at.block].insert(at.key, state);
                Ok(())
            }
            Some((found, _)) => Err(SnapshotError::UnsupportedVersion {
                found: u32::from(*found),
            }),
            None => Err(SnapshotError::Truncated),
        }
    }

    /// Whether the engine holds state for one entity.
    pub fn has_entity(&self, at: EntityRef) -> bool {
        self.states
            .get(at.block)
            .is_some_and(|states| states.contains_key(&at.key))
    }

    /// Every entity the engine holds state for.
    pub fn entities(&self) -> Vec<EntityRef> {
        self.states
            .iter()
            .enumerate()
            .flat_map(|(block, states)| states.keys().map(move |key| EntityRef { block, key: *key }))
            .collect()
    }

    /// Drops every entity's state, keeping the clock (a scratch engine between batches).
    pub fn clear_entities(&mut self) {
        for states in &mut self.states {
            states.clear();
        }
    }
}
