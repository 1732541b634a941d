//! The simulation parameters ([`SimConfig`]) and the checks they pass before
//! a run ([`SimError`] names what is wrong).

use fraudlens_core::{Currency, Timestamp, TimestampFormat};
use serde::{Deserialize, Serialize};

/// Simulation parameters (`[simulate]` in the config file, or flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Number of customers (cards).
    pub customers: u32,
    /// Number of terminals (merchants).
    pub terminals: u32,
    /// Days to simulate.
    pub days: u32,
    /// First day, `YYYY-MM-DD` (UTC).
    pub start_date: String,
    /// Seed: equal seeds and parameters give equal output.
    pub seed: u64,
    /// Currency of every amount.
    pub currency: Currency,
    /// Radius (on a 100×100 map) within which customers use physical terminals.
    pub radius: f64,
    /// Probability per customer per day that the card is stolen.
    pub stolen_card_rate: f64,
    /// Probability per terminal per day that it is compromised.
    pub compromised_terminal_rate: f64,
    /// Probability per customer per day that the account is taken over.
    pub account_takeover_rate: f64,
    /// Probability per customer per day of a card-testing burst.
    pub card_testing_rate: f64,
    /// Probability per customer per day, from day [`Self::night_ring_from_day`]
    /// on, that a fraud ring uses the card: a new pattern that appears mid-run
    /// (0: never). Drawn from a stream of its own, so every other record is
    /// the same with or without it.
    pub night_ring_rate: f64,
    /// The first day (0-based) of the night ring.
    pub night_ring_from_day: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            customers: 5000,
            terminals: 10_000,
            days: 90,
            start_date: "2026-01-01".into(),
            seed: 42,
            currency: Currency::parse("EUR").unwrap_or_else(|_| unreachable!("valid literal")),
            radius: 5.0,
            stolen_card_rate: 0.0008,
            compromised_terminal_rate: 0.0002,
            account_takeover_rate: 0.0003,
            card_testing_rate: 0.0003,
            night_ring_rate: 0.0,
            night_ring_from_day: 0,
        }
    }
}

/// Invalid simulation parameters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A count outside its range.
    #[error("{name} must be between 1 and {max} (got {value})")]
    Count {
        /// Parameter.
        name: &'static str,
        /// Given value.
        value: u64,
        /// Upper bound.
        max: u64,
    },
    /// A probability outside [0, 1].
    #[error("{name} must be a probability between 0 and 1 (got {value})")]
    Rate {
        /// Parameter.
        name: &'static str,
        /// Given value.
        value: String,
    },
    /// Radius must be positive.
    #[error("radius must be positive (got {0})")]
    Radius(String),
    /// Not a date.
    #[error("start_date must be a date such as 2026-01-01 (got {0:?})")]
    StartDate(String),
}

/// Checks every parameter of `config`; returns the start of its first day.
pub(crate) fn check(config: &SimConfig) -> Result<Timestamp, SimError> {
    for (name, value, max) in [
        ("customers", config.customers, 10_000_000),
        ("terminals", config.terminals, 10_000_000),
        ("days", config.days, 3650),
    ] {
        if value == 0 || value > max {
            return Err(SimError::Count {
                name,
                value: u64::from(value),
                max: u64::from(max),
            });
        }
    }
    for (name, value) in [
        ("stolen_card_rate", config.stolen_card_rate),
        ("compromised_terminal_rate", config.compromised_terminal_rate),
        ("account_takeover_rate", config.account_takeover_rate),
        ("card_testing_rate", config.card_testing_rate),
        ("night_ring_rate", config.night_ring_rate),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(SimError::Rate {
                name,
                value: value.to_string(),
            });
        }
    }
    if !(config.radius > 0.0 && config.radius.is_finite()) {
        return Err(SimError::Radius(config.radius.to_string()));
    }
    Timestamp::parse(&config.start_date, TimestampFormat::Datetime)
        .ok()
        .filter(|ts| config.start_date.trim().len() == 10 && ts.as_millis() >= 0)
        .ok_or_else(|| SimError::StartDate(config.start_date.clone()))
}
