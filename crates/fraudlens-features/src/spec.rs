//! The feature spec: which features to compute for which entity keys.
//!
//! [`FeatureSpecConfig`] is the `[features]` table of a TOML file (every field
//! has a default; an empty table gives the default spec). [`FeatureSpec`] is
//! the checked form, bound to a [`Schema`]'s entity names, with the final list
//! of feature names and a fingerprint that snapshots and model artifacts carry.

use fraudlens_core::{Schema, WindowDuration};
use serde::{Deserialize, Serialize};

/// Aggregates of the amount over a sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Number of transactions in the window, this one included.
    Count,
    /// Sum of amounts (major units).
    Sum,
    /// Mean amount.
    Mean,
    /// Largest amount.
    Max,
    /// Population standard deviation of amounts.
    Std,
    /// This amount divided by the mean of the entity's *earlier* transactions
    /// in the window; missing when there are none.
    AmountRatio,
}

impl Aggregate {
    /// Every aggregate, in output order.
    pub const ALL: [Self; 6] = [
        Self::Count,
        Self::Sum,
        Self::Mean,
        Self::Max,
        Self::Std,
        Self::AmountRatio,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Mean => "mean",
            Self::Max => "max",
            Self::Std => "std",
            Self::AmountRatio => "amount_ratio",
        }
    }
}

/// Distinct count of another entity key seen with this entity (e.g. distinct
/// terminals per customer in a day).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistinctConfig {
    /// The other entity's name.
    pub of: String,
    /// Windows to count over.
    #[serde(default = "one_day")]
    pub windows: Vec<WindowDuration>,
}

/// Features of one entity key (`[[features.entities]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityFeaturesConfig {
    /// Entity name from the schema (`customer`, `terminal`, `card`…).
    pub entity: String,
    /// Sliding windows for the amount aggregates.
    #[serde(default = "default_windows")]
    pub windows: Vec<WindowDuration>,
    /// Which aggregates to compute per window.
    #[serde(default = "all_aggregates")]
    pub aggregates: Vec<Aggregate>,
    /// Seconds since the entity's previous transaction (missing when none within the state horizon).
    #[serde(default = "yes")]
    pub time_since_previous: bool,
    /// Distinct counts of other entity keys.
    #[serde(default)]
    pub distinct: Vec<DistinctConfig>,
    /// Label-delayed risk: fraud rate of the entity's transactions in windows
    /// ending `risk_delay` before now, counting only labels known at that time.
    /// An empty list turns risk features off.
    #[serde(default = "default_windows")]
    pub risk_windows: Vec<WindowDuration>,
    /// How far before now the risk windows end.
    #[serde(default = "seven_days")]
    pub risk_delay: WindowDuration,
}

/// The `[features]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureSpecConfig {
    /// Per-entity feature blocks. Empty means: every entity of the schema with
    /// the default windows, aggregates, risk, and distinct counts of each other entity over 1 day.
    pub entities: Vec<EntityFeaturesConfig>,
    /// Hour of day, day of week, night and weekend flags.
    pub calendar: bool,
    /// First hour (0–23) counted as night.
    pub night_start_hour: u32,
    /// First hour (0–23) no longer counted as night.
    pub night_end_hour: u32,
    /// Offset from UTC of the local time used for calendar features.
    pub utc_offset_minutes: i32,
    /// In offline replay, a historical label becomes known this long after its transaction.
    pub label_delay: WindowDuration,
}

impl Default for FeatureSpecConfig {
    fn default() -> Self {
        Self {
            entities: Vec::new(),
            calendar: true,
            night_start_hour: 22,
            night_end_hour: 6,
            utc_offset_minutes: 0,
            label_delay: WindowDuration::days(7),
        }
    }
}

fn yes() -> bool {
    true
}
fn one_day() -> Vec<WindowDuration> {
    vec![WindowDuration::days(1)]
}
fn seven_days() -> WindowDuration {
    WindowDuration::days(7)
}
fn default_windows() -> Vec<WindowDuration> {
    vec![
        WindowDuration::days(1),
        WindowDuration::days(7),
        WindowDuration::days(30),
    ]
}
fn all_aggregates() -> Vec<Aggregate> {
    Aggregate::ALL.to_vec()
}

impl EntityFeaturesConfig {
    /// The default block for `entity`: windows 1/7/30 days, every aggregate,
    /// time since previous, risk over 1/7/30 days ending 7 days ago, and
    /// distinct counts of each of `others` over 1 day.
    pub fn default_for(entity: &str, others: &[&str]) -> Self {
        Self {
            entity: entity.to_owned(),
            windows: default_windows(),
            aggregates: all_aggregates(),
            time_since_previous: true,
            distinct: others
                .iter()
                .map(|of| DistinctConfig {
                    of: (*of).to_owned(),
                    windows: one_day(),
                })
                .collect(),
            risk_windows: default_windows(),
            risk_delay: seven_days(),
        }
    }
}

/// A spec that does not fit itself or the schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A block names an entity the schema does not have.
    #[error("feature block for {entity:?}: the schema has no such entity (entities: {known})")]
    UnknownEntity {
        /// The name.
        entity: String,
        /// The schema's entities.
        known: String,
    },
    /// Two blocks for one entity would produce the same feature names.
    #[error("two feature blocks for entity {entity:?}")]
    DuplicateEntity {
        /// The name.
        entity: String,
    },
    /// A list holds the same window twice.
    #[error("feature block for {entity:?}: window {window} listed twice")]
    DuplicateWindow {
        /// The entity.
        entity: String,
        /// The window.
        window: WindowDuration,
    },
    /// Distinct count of an entity with itself.
    #[error("feature block for {entity:?}: distinct count of itself")]
    DistinctOfSelf {
        /// The entity.
        entity: String,
    },
    /// Hours must be 0–23.
    #[error("night hours must be 0-23 (got {start}-{end})")]
    InvalidHours {
        /// Start hour.
        start: u32,
        /// End hour.
        end: u32,
    },
    /// An attribute of the schema has the name of a computed feature.
    #[error("attribute {name:?} has the name of a computed feature: rename the attribute")]
    NameClash {
        /// The name.
        name: String,
    },
    /// Offsets must be within ±18 hours.
    #[error("utc_offset_minutes must be within ±1080 (got {0})")]
    InvalidOffset(i32),
}

/// One compiled entity block.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    /// Index of the entity in [`fraudlens_core::Transaction::entities`].
    pub(crate) entity_idx: usize,
    pub(crate) windows: Vec<i64>,
    pub(crate) aggregates: Vec<Aggregate>,
    pub(crate) time_since_previous: bool,
    /// Index of each distinct "of" entity in the transaction.
    pub(crate) distinct_of: Vec<usize>,
    /// (position in `distinct_of`, window ms) per distinct feature.
    pub(crate) distinct: Vec<(usize, i64)>,
    pub(crate) risk_delay: i64,
    pub(crate) risk_windows: Vec<i64>,
    /// Events older than this are of no use to any feature of the block.
    pub(crate) horizon: i64,
    /// Features the block writes per transaction.
    pub(crate) n_features: usize,
    /// Aggregate features need the max-deque only when `Max` is asked for.
    pub(crate) needs_max: bool,
}

/// A checked feature spec bound to a schema.
#[derive(Clone, Debug)]
pub struct FeatureSpec {
    config: FeatureSpecConfig,
    pub(crate) blocks: Vec<Block>,
    names: Vec<String>,
    fingerprint: u64,
}

impl FeatureSpec {
    /// Checks `config` against `schema` and fixes the feature list.
    pub fn new(mut config: FeatureSpecConfig, schema: &Schema) -> Result<Self, SpecError> {
        let entity_names = schema.entity_names();
        if config.entities.is_empty() {
            config.entities = entity_names
                .iter()
                .map(|entity| {
                    let others: Vec<&str> = entity_names
                        .iter()
                        .filter(|other| *other != entity)
                        .map(String::as_str)
                        .collect();
                    EntityFeaturesConfig::default_for(entity, &others)
                })
                .collect();
        }
        if config.night_start_hour > 23 || config.night_end_hour > 23 {
            return Err(SpecError::InvalidHours {
                start: config.night_start_hour,
                end: config.night_end_hour,
            });
        }
        if !(-1080..=1080).contains(&config.utc_offset_minutes) {
            return Err(SpecError::InvalidOffset(config.utc_offset_minutes));
        }
        let entity_index = |name: &str| {
            entity_names
                .iter()
                .position(|known| known == name)
                .ok_or_else(|| SpecError::UnknownEntity {
                    entity: name.to_owned(),
                    known: entity_names.join(", "),
                })
        };
        let mut names = vec!["amount".to_owned()];
        if config.calendar {
            names.extend(["hour", "day_of_week", "is_night", "is_weekend"].map(String::from));
        }
        let mut blocks = Vec::with_capacity(config.entities.len());
        for (block_idx, block) in config.entities.iter().enumerate() {
            let entity = &block.entity;
            let entity_idx = entity_index(entity)?;
            if config.entities[..block_idx]
                .iter()
                .any(|earlier| &earlier.entity == entity)
            {
                return Err(SpecError::DuplicateEntity { entity: entity.clone() });
            }
            let check_unique = |windows: &[WindowDuration]| {
                for (idx, window) in windows.iter().enumerate() {
                    if windows[..idx].contains(window) {
                        return Err(SpecError::DuplicateWindow {
                            entity: entity.clone(),
                            window: *window,
                        });
                    }
                }
                Ok(())
            };
            check_unique(&block.windows)?;
            check_unique(&block.risk_windows)?;
            let mut aggregates: Vec<Aggregate> = Aggregate::ALL
                .into_iter()
                .filter(|agg| block.aggregates.contains(agg))
                .collect();
            if block.windows.is_empty() {
                aggregates.clear();
            }
            let before = names.len();
            for window in &block.windows {
                for aggregate in &aggregates {
                    names.push(format!("{entity}_{}_{window}", aggregate.name()));
                }
            }
            if block.time_since_previous {
                names.push(format!("{entity}_secs_since_prev"));
            }
            let mut distinct_of = Vec::new();
            let mut distinct = Vec::new();
            for spec in &block.distinct {
                if &spec.of == entity {
                    return Err(SpecError::DistinctOfSelf { entity: entity.clone() });
                }
                check_unique(&spec.windows)?;
                let of_idx = entity_index(&spec.of)?;
                let slot = distinct_of.iter().position(|idx| *idx == of_idx).unwrap_or_else(|| {
                    distinct_of.push(of_idx);
                    distinct_of.len() - 1
                });
                for window in &spec.windows {
                    if distinct.contains(&(slot, window.as_millis())) {
                        return Err(SpecError::DuplicateWindow {
                            entity: entity.clone(),
                            window: *window,
                        });
                    }
                    distinct.push((slot, window.as_millis()));
                    names.push(format!("{entity}_distinct_{}_{window}", spec.of));
                }
            }
            for window in &block.risk_windows {
                names.push(format!("{entity}_risk_{window}"));
                names.push(format!("{entity}_risk_count_{window}"));
            }
            let risk_delay = block.risk_delay.as_millis();
            let horizon = block
                .windows
                .iter()
                .map(|w| w.as_millis())
                .chain(distinct.iter().map(|(_, w)| *w))
                .chain(block.risk_windows.iter().map(|w| risk_delay + w.as_millis()))
                .max()
                .unwrap_or(WindowDuration::days(30).as_millis());
            blocks.push(Block {
                entity_idx,
                windows: block.windows.iter().map(|w| w.as_millis()).collect(),
                needs_max: aggregates.contains(&Aggregate::Max),
                aggregates,
                time_since_previous: block.time_since_previous,
                distinct_of,
                distinct,
                risk_delay,
                risk_windows: block.risk_windows.iter().map(|w| w.as_millis()).collect(),
                horizon,
                n_features: names.len() - before,
            });
        }
        if let Some(name) = schema.attribute_names().iter().find(|name| names.contains(name)) {
            return Err(SpecError::NameClash { name: name.clone() });
        }
        let canonical = serde_json::to_string(&(&config, entity_names)).unwrap_or_default();
        let fingerprint = xxhash_rust::xxh3::xxh3_64(canonical.as_bytes());
        Ok(Self {
            config,
            blocks,
            names,
            fingerprint,
        })
    }

    /// The resolved configuration (default blocks filled in).
    pub fn config(&self) -> &FeatureSpecConfig {
        &self.config
    }

    /// Feature names in output order.
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// Identifies the spec and the schema's entity list; state and models built
    /// with one fingerprint must not be used with another.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The entity states observing (or labelling) `tx` reads and writes, in block order.
    pub fn entity_refs(&self, tx: &fraudlens_core::Transaction) -> Vec<crate::EntityRef> {
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(block, spec)| {
                let key = tx.entity(spec.entity_idx)?;
                Some(crate::EntityRef {
                    block,
                    key: crate::engine::key_hash(key.as_str()),
                })
            })
            .collect()
    }

    /// The longest block horizon in milliseconds: older events cannot change any feature.
    pub fn horizon_ms(&self) -> i64 {
        self.blocks.iter().map(|block| block.horizon).max().unwrap_or(0)
    }

    /// The replay label delay in milliseconds.
    pub fn label_delay_ms(&self) -> i64 {
        self.config.label_delay.as_millis()
    }
}
