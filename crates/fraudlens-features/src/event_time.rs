//! `[event_time]` settings: the [`EventTimePolicy`] as it is written in a
//! configuration file (`5m`, `7d`, `off`), with the engine's defaults.

use fraudlens_core::WindowDuration;
use serde::{Deserialize, Serialize};

use crate::EventTimePolicy;

/// `[event_time]`: the policy for transactions dated ahead of the clock or
/// far behind the events already seen. The same rules hold for the API, the
/// detector and offline replay (`features`, `train`, `evaluate`, `score`):
/// an event refused online is a bad row offline.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventTimeSettings {
    /// Most an event may be dated ahead of the wall clock (`5m`), or `off`.
    /// Beyond it: 422 `event_time_out_of_range`, a dead letter, or a bad row.
    pub max_future: TimeBound,
    /// Most an event may be dated behind the latest event already accepted
    /// (`7d`), or `off`. Idle entities are kept this much longer than their
    /// feature horizon, so that an accepted late event still finds them.
    pub max_lateness: TimeBound,
}

impl Default for EventTimeSettings {
    fn default() -> Self {
        let policy = EventTimePolicy::default();
        Self {
            max_future: TimeBound::from_millis(policy.max_future_ms),
            max_lateness: TimeBound::from_millis(policy.max_lateness_ms),
        }
    }
}

impl EventTimeSettings {
    /// The engine's policy.
    pub fn policy(&self) -> EventTimePolicy {
        EventTimePolicy {
            max_future_ms: self.max_future.0.map(WindowDuration::as_millis),
            max_lateness_ms: self.max_lateness.0.map(WindowDuration::as_millis),
        }
    }
}

/// A duration (`5m`, `1d`) or `off` (no bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBound(pub Option<WindowDuration>);

impl TimeBound {
    fn from_millis(millis: Option<i64>) -> Self {
        Self(millis.and_then(WindowDuration::from_millis))
    }
}

impl Serialize for TimeBound {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(duration) => duration.serialize(serializer),
            None => serializer.serialize_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for TimeBound {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim() == "off" {
            return Ok(Self(None));
        }
        text.parse()
            .map(|duration| Self(Some(duration)))
            .map_err(serde::de::Error::custom)
    }
}
