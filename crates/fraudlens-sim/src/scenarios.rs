//! The four fraud scenarios and the everyday purchases they hide in: each
//! day, who starts a scenario ([`compromise_terminals`],
//! [`start_customer_day`]), then the purchases of one customer as drafts
//! (terminal, amount, channel, scenario), timed within the day
//! ([`everyday_purchases`], which also carries account takeovers and
//! compromised terminals; [`stolen_card`]; [`card_testing`]).
//!
//! Every draw comes from the customer's own stream, in a fixed order: moving
//! or adding a draw changes every later record of that customer.

use serde::{Deserialize, Serialize};

use crate::SimConfig;
use crate::rng::Rng;
use crate::world::{Customer, Terminals, pick};

/// The fraud scenario behind a transaction (`none` for genuine ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Genuine.
    None,
    /// Purchases by a thief with the card.
    StolenCard,
    /// A purchase at a compromised terminal during its compromise.
    CompromisedTerminal,
    /// A purchase by someone who took over the account.
    AccountTakeover,
    /// A card-testing probe or the cash-out after it.
    CardTesting,
    /// A fraud ring's night-time online purchases of everyday amounts (the
    /// pattern that appears mid-run: `night_ring_rate`).
    NightRing,
}

impl Scenario {
    /// Name as written in the `fraud_scenario` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StolenCard => "stolen_card",
            Self::CompromisedTerminal => "compromised_terminal",
            Self::AccountTakeover => "account_takeover",
            Self::CardTesting => "card_testing",
            Self::NightRing => "night_ring",
        }
    }
}

/// A purchase before it has a number and a timestamp.
pub(crate) struct Draft {
    pub(crate) terminal: u32,
    pub(crate) amount: f64,
    pub(crate) channel: &'static str,
    pub(crate) scenario: Scenario,
}

/// Ends the compromises that are over and starts new ones: per terminal,
/// (last compromised day, fraud share) while compromised.
pub(crate) fn compromise_terminals(compromised: &mut [Option<(u32, f64)>], rng: &mut Rng, rate: f64, day: u32) {
    for state in compromised {
        if state.is_some_and(|(until, _)| until < day) {
            *state = None;
        }
        if state.is_none() && rng.chance(rate) {
            let until = day + rng.between(6, 27) as u32;
            let share = rng.range(0.5, 1.0);
            *state = Some((until, share));
        }
    }
}

/// Ends the customer's scenarios that are over and starts new ones; `true`
/// when a card-testing burst runs today.
pub(crate) fn start_customer_day(customer: &mut Customer, rng: &mut Rng, config: &SimConfig, day: u32) -> bool {
    if customer.stolen_until.is_some_and(|until| until < day) {
        customer.stolen_until = None;
    }
    if customer.takeover_until.is_some_and(|until| until < day) {
        customer.takeover_until = None;
    }
    if customer.stolen_until.is_none() && rng.chance(config.stolen_card_rate) {
        customer.stolen_until = Some(day + rng.between(0, 2) as u32);
    }
    if customer.takeover_until.is_none() && rng.chance(config.account_takeover_rate) {
        customer.takeover_until = Some(day + rng.between(6, 13) as u32);
    }
    rng.chance(config.card_testing_rate)
}

/// The customer's own purchases (a Poisson number, near home and around their
/// usual time), some of them by an account taker or at a compromised terminal.
pub(crate) fn everyday_purchases(
    customer: &Customer,
    rng: &mut Rng,
    terminals: &Terminals,
    compromised: &[Option<(u32, f64)>],
    emit: &mut impl FnMut(i64, Draft),
) {
    for _ in 0..rng.poisson(customer.tx_per_day) {
        let second = time_of_day(rng, customer.usual_time, 3.5 * 3600.0);
        let mut amount = rng.normal() * customer.std_amount + customer.mean_amount;
        if amount < 0.5 {
            amount = rng.range(0.5, customer.mean_amount.max(1.0));
        }
        let online_purchase = customer.nearby.is_empty() || rng.chance(0.1);
        let mut terminal = if online_purchase {
            customer.favourite_online[rng.below(3) as usize]
        } else {
            pick(rng, &customer.nearby).unwrap_or(0)
        };
        let mut scenario = Scenario::None;
        if customer.takeover_until.is_some() && rng.chance(1.0 / 3.0) {
            terminal = pick(rng, &terminals.online).unwrap_or(terminal);
            amount *= 5.0;
            scenario = Scenario::AccountTakeover;
        }
        if let Some((_, share)) = compromised[terminal as usize]
            && rng.chance(share)
            && scenario == Scenario::None
        {
            scenario = Scenario::CompromisedTerminal;
        }
        let channel = if terminals.all[terminal as usize].online {
            "online"
        } else if rng.chance(customer.contactless_share) {
            "contactless"
        } else if rng.chance(0.95) {
            "chip"
        } else {
            "swipe"
        };
        emit(
            second,
            Draft {
                terminal,
                amount,
                channel,
                scenario,
            },
        );
    }
}

/// A thief's purchases with the card: large, at high-risk merchants anywhere, often at night.
pub(crate) fn stolen_card(rng: &mut Rng, terminals: &Terminals, emit: &mut impl FnMut(i64, Draft)) {
    for _ in 0..1 + rng.poisson(2.0) {
        let second = if rng.chance(0.5) {
            rng.range(0.0, 6.0 * 3600.0) as i64
        } else {
            rng.range(0.0, 86_400.0) as i64
        };
        let terminal = if rng.chance(0.7) {
            pick(rng, &terminals.high_risk)
        } else {
            Some(rng.below(terminals.all.len() as u64) as u32)
        }
        .unwrap_or(0);
        let channel = if terminals.all[terminal as usize].online {
            "online"
        } else if rng.chance(0.5) {
            "swipe"
        } else {
            "contactless"
        };
        let amount = rng.range(200.0, 2000.0);
        emit(
            second,
            Draft {
                terminal,
                amount,
                channel,
                scenario: Scenario::StolenCard,
            },
        );
    }
}

/// A burst of tiny online probes at one to three merchants, sometimes
/// followed by one large purchase. Needs at least one online terminal.
pub(crate) fn card_testing(rng: &mut Rng, terminals: &Terminals, emit: &mut impl FnMut(i64, Draft)) {
    let probes = rng.between(5, 20);
    let merchants: Vec<u32> = (0..rng.between(1, 3))
        .filter_map(|_| pick(rng, &terminals.online))
        .collect();
    let mut second = rng.range(0.0, 18.0 * 3600.0) as i64;
    for _ in 0..probes {
        let terminal = merchants[rng.below(merchants.len() as u64) as usize];
        let amount = rng.range(0.5, 3.0);
        emit(
            second,
            Draft {
                terminal,
                amount,
                channel: "online",
                scenario: Scenario::CardTesting,
            },
        );
        second += rng.between(10, 120) as i64;
    }
    if rng.chance(0.5) {
        second += rng.between(600, 3600) as i64;
        let terminal = pick(rng, &terminals.high_risk).unwrap_or(merchants[0]);
        let channel = if terminals.all[terminal as usize].online {
            "online"
        } else {
            "swipe"
        };
        let amount = rng.range(300.0, 1500.0);
        emit(
            second,
            Draft {
                terminal,
                amount,
                channel,
                scenario: Scenario::CardTesting,
            },
        );
    }
}

/// A fraud ring's use of a card: two to four online purchases of everyday
/// amounts between 01:00 and 05:00 — nothing a model that learned the older
/// scenarios (large night purchases, tiny probes, known bad terminals)
/// looks for. Needs at least one online terminal.
pub(crate) fn night_ring(rng: &mut Rng, terminals: &Terminals, emit: &mut impl FnMut(i64, Draft)) {
    for _ in 0..rng.between(2, 4) {
        let Some(terminal) = pick(rng, &terminals.online) else {
            return;
        };
        emit(
            rng.range(3600.0, 5.0 * 3600.0) as i64,
            Draft {
                terminal,
                amount: rng.range(20.0, 120.0),
                channel: "online",
                scenario: Scenario::NightRing,
            },
        );
    }
}

/// Seconds after midnight, normally distributed around `centre`, within the day.
fn time_of_day(rng: &mut Rng, centre: f64, spread: f64) -> i64 {
    for _ in 0..10 {
        let second = centre + rng.normal() * spread;
        if (0.0..86_400.0).contains(&second) {
            return second as i64;
        }
    }
    rng.range(0.0, 86_400.0) as i64
}
