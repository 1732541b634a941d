//! The [`Simulator`]: the world and the scenarios' state, advanced one day
//! per iteration; each day's drafts become numbered, timestamped records in
//! time order.

use fraudlens_core::Timestamp;

use crate::rng::Rng;
use crate::scenarios::{self, Draft};
use crate::world::World;
use crate::{SimConfig, SimError, SimRecord};

/// Generates transactions day by day; iterate to get each day's records in time order.
pub struct Simulator {
    config: SimConfig,
    start: Timestamp,
    world: World,
    /// Per terminal: (last compromised day, fraud share) while compromised.
    compromised: Vec<Option<(u32, f64)>>,
    terminal_rng: Rng,
    /// The night ring's own stream (the other records do not depend on it).
    ring_rng: Rng,
    day: u32,
    next_number: u64,
}

impl Simulator {
    /// Checks `config` and lays out customers and terminals.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        let start = crate::config::check(&config)?;
        let world = World::lay_out(&config);
        let n_terminals = world.terminals.all.len();
        Ok(Self {
            start,
            world,
            compromised: vec![None; n_terminals],
            terminal_rng: Rng::new(config.seed, u64::MAX - 1),
            ring_rng: Rng::new(config.seed, u64::MAX - 2),
            day: 0,
            next_number: 1,
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn simulate_day(&mut self) -> Vec<SimRecord> {
        let day = self.day;
        let day_start_ms = self.start.as_millis() + i64::from(day) * 86_400_000;
        scenarios::compromise_terminals(
            &mut self.compromised,
            &mut self.terminal_rng,
            self.config.compromised_terminal_rate,
            day,
        );
        // (seconds into the day, customer, order of generation) keeps the sort total and deterministic
        let mut drafts: Vec<(i64, u32, u32, Draft)> = Vec::new();
        let terminals = &self.world.terminals;
        for customer_idx in 0..self.world.customers.len() {
            let rng = &mut self.world.customer_rngs[customer_idx];
            let customer = &mut self.world.customers[customer_idx];
            let card_testing = scenarios::start_customer_day(customer, rng, &self.config, day);
            let mut order = 0u32;
            let mut emit = |second: i64, draft: Draft| {
                drafts.push((second, customer_idx as u32, order, draft));
                order += 1;
            };
            scenarios::everyday_purchases(customer, rng, terminals, &self.compromised, &mut emit);
            if customer.stolen_until.is_some() {
                scenarios::stolen_card(rng, terminals, &mut emit);
            }
            if card_testing && !terminals.online.is_empty() {
                scenarios::card_testing(rng, terminals, &mut emit);
            }
            if self.config.night_ring_rate > 0.0
                && day >= self.config.night_ring_from_day
                && self.ring_rng.chance(self.config.night_ring_rate)
            {
                scenarios::night_ring(&mut self.ring_rng, terminals, &mut emit);
            }
        }
        drafts.sort_unstable_by_key(|(second, customer, order, _)| (*second, *customer, *order));
        let scale = 10f64.powi(self.config.currency.exponent() as i32);
        drafts
            .into_iter()
            .map(|(second, customer, _, draft)| {
                let terminal = &self.world.terminals.all[draft.terminal as usize];
                let number = self.next_number;
                self.next_number += 1;
                SimRecord {
                    number,
                    timestamp: Timestamp::from_millis(day_start_ms + second * 1000),
                    customer,
                    terminal: draft.terminal,
                    amount_minor: ((draft.amount * scale).round() as i64).max(1),
                    channel: draft.channel,
                    mcc: terminal.mcc,
                    country: terminal.country,
                    scenario: draft.scenario,
                }
            })
            .collect()
    }
}

impl Iterator for Simulator {
    type Item = Vec<SimRecord>;

    /// The next day's transactions in time order; `None` after the last day.
    fn next(&mut self) -> Option<Self::Item> {
        if self.day >= self.config.days {
            return None;
        }
        let records = self.simulate_day();
        self.day += 1;
        Some(records)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Scenario;

    pub(crate) fn small() -> SimConfig {
        SimConfig {
            customers: 300,
            terminals: 600,
            days: 20,
            ..SimConfig::default()
        }
    }

    pub(crate) fn run(config: SimConfig) -> Vec<SimRecord> {
        Simulator::new(config).unwrap().flatten().collect()
    }

    #[test]
    fn same_seed_same_output_other_seed_other_output() {
        let a = run(small());
        assert_eq!(a, run(small()));
        assert_ne!(a, run(SimConfig { seed: 7, ..small() }));
    }

    #[test]
    fn records_are_in_time_order_with_running_numbers() {
        let records = run(small());
        assert!(records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(records.iter().enumerate().all(|(idx, r)| r.number == idx as u64 + 1));
        assert!(records.iter().all(|r| r.amount_minor > 0));
    }

    #[test]
    fn every_scenario_appears_at_a_plausible_rate() {
        let config = SimConfig {
            customers: 2000,
            terminals: 4000,
            days: 40,
            stolen_card_rate: 0.002,
            compromised_terminal_rate: 0.0005,
            account_takeover_rate: 0.001,
            card_testing_rate: 0.001,
            ..SimConfig::default()
        };
        let records = run(config);
        let n = records.len() as f64;
        // about 2 purchases per customer per day
        assert!((n / (2000.0 * 40.0) - 2.0).abs() < 0.2, "{n}");
        for scenario in [
            Scenario::StolenCard,
            Scenario::CompromisedTerminal,
            Scenario::AccountTakeover,
            Scenario::CardTesting,
        ] {
            let count = records.iter().filter(|r| r.scenario == scenario).count();
            assert!(count > 50, "{scenario:?}: {count}");
        }
        let fraud_rate = records.iter().filter(|r| r.is_fraud()).count() as f64 / n;
        assert!(fraud_rate > 0.005 && fraud_rate < 0.1, "{fraud_rate}");
        let mean = |scenario: Scenario| {
            let amounts: Vec<f64> = records
                .iter()
                .filter(|r| r.scenario == scenario)
                .map(|r| r.amount_minor as f64 / 100.0)
                .collect();
            amounts.iter().sum::<f64>() / amounts.len() as f64
        };
        assert!(mean(Scenario::StolenCard) > 5.0 * mean(Scenario::None));
        assert!(mean(Scenario::CardTesting) < mean(Scenario::None));
    }

    #[test]
    fn zero_rates_give_no_fraud() {
        let config = SimConfig {
            stolen_card_rate: 0.0,
            compromised_terminal_rate: 0.0,
            account_takeover_rate: 0.0,
            card_testing_rate: 0.0,
            ..small()
        };
        assert!(run(config).iter().all(|r| !r.is_fraud()));
    }

    #[test]
    fn invalid_configs_are_refused() {
        let check = |config: SimConfig, expected: &str| {
            let error = Simulator::new(config).err().unwrap().to_string();
            assert!(error.contains(expected), "{error}");
        };
        check(
            SimConfig {
                customers: 0,
                ..small()
            },
            "customers must be between 1",
        );
        check(
            SimConfig {
                card_testing_rate: 1.5,
                ..small()
            },
            "card_testing_rate must be a probability",
        );
        check(
            SimConfig {
                start_date: "2026-13-01".into(),
                ..small()
            },
            "start_date must be a date",
        );
        check(
            SimConfig {
                start_date: "2026-01-01T10:00:00Z".into(),
                ..small()
            },
            "start_date must be a date",
        );
    }
}
