//! The fraudlens transaction simulator.
//!
//! Customers live at a home location with a spending profile (mean and spread
//! of amounts, transactions per day, preferred hour); terminals sit on the same
//! map with a merchant category, and some are online merchants. Each day every
//! customer makes a Poisson number of purchases, mostly at nearby terminals,
//! during their usual hours. On top of that run four fraud scenarios a real
//! system must catch:
//!
//! - **stolen card**: for 1–3 days a fraudster makes large purchases at
//!   high-risk merchants anywhere, often at night;
//! - **compromised terminal**: for 7–28 days a share (50–100 %) of a
//!   terminal's transactions are fraudulent, with ordinary amounts;
//! - **account takeover**: for 7–14 days a third of a customer's purchases move
//!   online with five times the usual amount;
//! - **card testing**: a burst of 5–20 tiny online payments within minutes at
//!   unfamiliar merchants, sometimes followed by one large purchase.
//!
//! The output is deterministic for a seed — the same bytes on every platform —
//! because randomness comes from [`rng::Rng`], which uses only IEEE basic
//! arithmetic. Generation is day by day, so memory does not grow with the
//! number of days.

pub use fraudlens_core::rng;

use std::fmt::Write as _;

use fraudlens_core::{
    Amount as Money, AttributeValue, Currency, EntityKey, Label, Timestamp, TimestampFormat, Transaction, TransactionId,
};
use serde::{Deserialize, Serialize};

use rng::Rng;

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
        }
    }
}

/// One simulated transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRecord {
    /// Running number, from 1; the transaction id is derived from it.
    pub number: u64,
    /// Event time.
    pub timestamp: Timestamp,
    /// Customer index.
    pub customer: u32,
    /// Terminal index.
    pub terminal: u32,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// `chip`, `contactless`, `swipe` or `online`.
    pub channel: &'static str,
    /// Merchant category code of the terminal.
    pub mcc: &'static str,
    /// Country of the terminal.
    pub country: &'static str,
    /// Why it is fraud, if it is.
    pub scenario: Scenario,
}

/// Column names of the native format, in order.
pub const NATIVE_COLUMNS: [&str; 11] = [
    "transaction_id",
    "timestamp",
    "customer_id",
    "terminal_id",
    "amount",
    "currency",
    "mcc",
    "channel",
    "country",
    "is_fraud",
    "fraud_scenario",
];

impl SimRecord {
    /// `true` unless the scenario is `none`.
    pub fn is_fraud(&self) -> bool {
        self.scenario != Scenario::None
    }

    /// The record as the default schema parses it: entities `[customer,
    /// terminal]`, attributes `[channel, country, mcc]`, the label from the
    /// scenario. Lets benchmarks and tests build large histories in memory
    /// without a round trip through text.
    pub fn to_transaction(&self, currency: Currency) -> Transaction {
        let key = |text: String| EntityKey::parse(&text).ok();
        let category = |text: &str| AttributeValue::Categorical(Some(text.to_owned()));
        Transaction {
            // invariant: ids built from a number are valid
            id: TransactionId::parse(&format!("tx_{:010}", self.number)).unwrap_or_else(|_| unreachable!()),
            timestamp: self.timestamp,
            amount: Money::from_minor(self.amount_minor, currency).unwrap_or_else(|_| unreachable!()),
            entities: vec![
                key(format!("cust_{:06}", self.customer)),
                key(format!("term_{:06}", self.terminal)),
            ],
            attributes: vec![category(self.channel), category(self.country), category(self.mcc)],
            label: Some(if self.is_fraud() { Label::Fraud } else { Label::Legit }),
        }
    }

    /// Appends the record as one CSV line of the native format.
    pub fn write_csv(&self, currency: Currency, out: &mut String) {
        for (idx, (_, value)) in self.native_fields(currency).iter().enumerate() {
            let separator = if idx == 0 { "" } else { "," };
            let _ = write!(out, "{separator}{value}");
        }
        out.push('\n');
    }

    /// Appends the record as one JSON line shaped like a Stripe charge
    /// (`id`, `amount` in minor units, lowercase `currency`, `created` in unix
    /// seconds, `customer`, `payment_method_details.card.{fingerprint,country,brand}`,
    /// `billing_details.address.country`, `metadata`). Each customer has one
    /// card; the terminal, merchant category, channel and the simulation's label
    /// travel in `metadata`. `schemas/stripe-charge.toml` maps it.
    pub fn write_stripe_json(&self, currency: Currency, out: &mut String) {
        const BRANDS: [&str; 3] = ["visa", "mastercard", "amex"];
        let _ = write!(
            out,
            "{{\"id\":\"ch_{:010}\",\"object\":\"charge\",\"amount\":{},\"currency\":\"{}\",\"created\":{},\
             \"customer\":\"cust_{:06}\",\"payment_method_details\":{{\"type\":\"card\",\"card\":{{\
             \"fingerprint\":\"fp_{:06}\",\"country\":\"{}\",\"brand\":\"{}\"}}}},\
             \"billing_details\":{{\"address\":{{\"country\":\"{}\"}}}},\"metadata\":{{\"terminal_id\":\"term_{:06}\",\
             \"mcc\":\"{}\",\"channel\":\"{}\",\"is_fraud\":\"{}\"}}}}",
            self.number,
            self.amount_minor,
            currency.as_str().to_ascii_lowercase(),
            self.timestamp.as_millis().div_euclid(1000),
            self.customer,
            self.customer,
            self.country,
            BRANDS[self.customer as usize % BRANDS.len()],
            self.country,
            self.terminal,
            self.mcc,
            self.channel,
            u8::from(self.is_fraud()),
        );
        out.push('\n');
    }

    /// Appends the record as one JSON line with the native field names.
    pub fn write_json(&self, currency: Currency, out: &mut String) {
        for (idx, (name, value)) in self.native_fields(currency).iter().enumerate() {
            let separator = if idx == 0 { "{" } else { "," };
            // every text value is an id or a code: nothing to escape
            let quote = if matches!(*name, "amount" | "is_fraud") {
                ""
            } else {
                "\""
            };
            let _ = write!(out, "{separator}\"{name}\":{quote}{value}{quote}");
        }
        out.push_str("}\n");
    }

    /// The values of [`NATIVE_COLUMNS`], in order: one list for both formats.
    fn native_fields(&self, currency: Currency) -> [(&'static str, Field); 11] {
        let values = [
            Field::Id("tx_", 10, self.number),
            Field::Time(self.timestamp),
            Field::Id("cust_", 6, u64::from(self.customer)),
            Field::Id("term_", 6, u64::from(self.terminal)),
            Field::Amount(self.amount_minor, currency.exponent()),
            Field::Currency(currency),
            Field::Text(self.mcc),
            Field::Text(self.channel),
            Field::Text(self.country),
            Field::Text(if self.is_fraud() { "1" } else { "0" }),
            Field::Text(self.scenario.as_str()),
        ];
        let mut idx = 0;
        values.map(|value| {
            idx += 1;
            (NATIVE_COLUMNS[idx - 1], value)
        })
    }
}

/// One value of a native record, formatted on write.
enum Field {
    /// A prefix and a zero-padded number (`tx_0000000001`).
    Id(&'static str, usize, u64),
    Time(Timestamp),
    /// Minor units and the currency exponent.
    Amount(i64, u32),
    Currency(Currency),
    Text(&'static str),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(prefix, width, number) => write!(f, "{prefix}{number:0width$}"),
            Self::Time(timestamp) => write!(f, "{timestamp}"),
            Self::Amount(minor, 0) => write!(f, "{minor}"),
            Self::Amount(minor, exponent) => {
                let scale = 10i64.pow(*exponent);
                write!(
                    f,
                    "{}.{:0width$}",
                    minor / scale,
                    minor % scale,
                    width = *exponent as usize
                )
            }
            Self::Currency(currency) => write!(f, "{currency}"),
            Self::Text(text) => f.write_str(text),
        }
    }
}

/// The header line of the native CSV format.
pub fn csv_header() -> String {
    let mut header = NATIVE_COLUMNS.join(",");
    header.push('\n');
    header
}

const COUNTRIES: [&str; 16] = [
    "DE", "FR", "NL", "BE", "AT", "CH", "IT", "ES", "PL", "CZ", "DK", "SE", "PT", "IE", "LU", "GB",
];

/// Merchant categories of physical terminals, with weights.
const PHYSICAL_MCC: [(&str, u32); 12] = [
    ("5411", 25), // grocery
    ("5812", 15), // restaurants
    ("5541", 10), // fuel
    ("5311", 8),  // department stores
    ("5912", 8),  // pharmacies
    ("5999", 8),  // miscellaneous retail
    ("4111", 6),  // transit
    ("5651", 6),  // clothing
    ("5814", 4),  // fast food
    ("7011", 4),  // hotels
    ("5732", 4),  // electronics
    ("5944", 2),  // jewellery
];

/// Merchant categories of online merchants, with weights.
const ONLINE_MCC: [(&str, u32); 8] = [
    ("5311", 20), // department stores
    ("5999", 20), // miscellaneous retail
    ("5732", 15), // electronics
    ("4722", 13), // travel
    ("5967", 10), // direct marketing
    ("4829", 8),  // money transfer
    ("7995", 8),  // gambling
    ("6051", 6),  // quasi-cash, crypto
];

/// Categories where stolen cards are cashed out.
const HIGH_RISK_MCC: [&str; 5] = ["5732", "5944", "6051", "4829", "7995"];

struct Customer {
    mean_amount: f64,
    std_amount: f64,
    tx_per_day: f64,
    /// Centre of the customer's day, in seconds after midnight.
    usual_time: f64,
    contactless_share: f64,
    nearby: Vec<u32>,
    favourite_online: [u32; 3],
    stolen_until: Option<u32>,
    takeover_until: Option<u32>,
}

struct Terminal {
    mcc: &'static str,
    country: &'static str,
    online: bool,
}

/// Generates transactions day by day; iterate to get each day's records in time order.
pub struct Simulator {
    config: SimConfig,
    start: Timestamp,
    customers: Vec<Customer>,
    customer_rngs: Vec<Rng>,
    terminals: Vec<Terminal>,
    online_terminals: Vec<u32>,
    high_risk_terminals: Vec<u32>,
    /// Per terminal: (last compromised day, fraud share) while compromised.
    compromised: Vec<Option<(u32, f64)>>,
    terminal_rng: Rng,
    day: u32,
    next_number: u64,
}

impl Simulator {
    /// Checks `config` and lays out customers and terminals.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
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
        let start = Timestamp::parse(&config.start_date, TimestampFormat::Datetime)
            .ok()
            .filter(|ts| config.start_date.trim().len() == 10 && ts.as_millis() >= 0)
            .ok_or_else(|| SimError::StartDate(config.start_date.clone()))?;

        let mut layout_rng = Rng::new(config.seed, u64::MAX);
        let mut terminals = Vec::with_capacity(config.terminals as usize);
        let mut positions = Vec::with_capacity(config.terminals as usize);
        for _ in 0..config.terminals {
            let (x, y) = (layout_rng.range(0.0, 100.0), layout_rng.range(0.0, 100.0));
            let online = layout_rng.chance(0.15);
            let mcc = weighted(
                &mut layout_rng,
                if online { &ONLINE_MCC[..] } else { &PHYSICAL_MCC[..] },
            );
            terminals.push(Terminal {
                mcc,
                country: country_at(x, y),
                online,
            });
            positions.push((x, y));
        }
        let online_terminals: Vec<u32> = (0..config.terminals)
            .filter(|t| terminals[*t as usize].online)
            .collect();
        let high_risk_terminals: Vec<u32> = (0..config.terminals)
            .filter(|t| HIGH_RISK_MCC.contains(&terminals[*t as usize].mcc))
            .collect();
        let grid = Grid::new(&positions, &terminals, config.radius);

        let mut customers = Vec::with_capacity(config.customers as usize);
        let mut customer_rngs = Vec::with_capacity(config.customers as usize);
        for idx in 0..config.customers {
            let mut rng = Rng::new(config.seed, u64::from(idx));
            let (x, y) = (rng.range(0.0, 100.0), rng.range(0.0, 100.0));
            let mean_amount = rng.range(5.0, 100.0);
            let nearby = grid.nearby(x, y, config.radius, &positions);
            let mut favourite_online = [0; 3];
            for slot in &mut favourite_online {
                *slot = pick(&mut rng, &online_terminals).unwrap_or(0);
            }
            customers.push(Customer {
                mean_amount,
                std_amount: mean_amount / 2.0,
                tx_per_day: rng.range(0.0, 4.0),
                usual_time: rng.range(9.0, 17.0) * 3600.0,
                contactless_share: rng.range(0.2, 0.8),
                nearby,
                favourite_online,
                stolen_until: None,
                takeover_until: None,
            });
            customer_rngs.push(rng);
        }
        let n_terminals = terminals.len();
        Ok(Self {
            start,
            customers,
            customer_rngs,
            terminals,
            online_terminals,
            high_risk_terminals,
            compromised: vec![None; n_terminals],
            terminal_rng: Rng::new(config.seed, u64::MAX - 1),
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
        for state in &mut self.compromised {
            if state.is_some_and(|(until, _)| until < day) {
                *state = None;
            }
            if state.is_none() && self.terminal_rng.chance(self.config.compromised_terminal_rate) {
                let until = day + self.terminal_rng.between(6, 27) as u32;
                let share = self.terminal_rng.range(0.5, 1.0);
                *state = Some((until, share));
            }
        }
        // (seconds into the day, customer, order of generation) keeps the sort total and deterministic
        let mut drafts: Vec<(i64, u32, u32, Draft)> = Vec::new();
        for customer_idx in 0..self.customers.len() {
            let rng = &mut self.customer_rngs[customer_idx];
            let customer = &mut self.customers[customer_idx];
            let config = &self.config;
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
            let card_testing = rng.chance(config.card_testing_rate);
            let mut order = 0u32;
            let mut emit = |drafts: &mut Vec<_>, second: i64, draft: Draft| {
                drafts.push((second, customer_idx as u32, order, draft));
                order += 1;
            };

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
                    terminal = pick(rng, &self.online_terminals).unwrap_or(terminal);
                    amount *= 5.0;
                    scenario = Scenario::AccountTakeover;
                }
                if let Some((_, share)) = self.compromised[terminal as usize]
                    && rng.chance(share)
                    && scenario == Scenario::None
                {
                    scenario = Scenario::CompromisedTerminal;
                }
                let channel = if self.terminals[terminal as usize].online {
                    "online"
                } else if rng.chance(customer.contactless_share) {
                    "contactless"
                } else if rng.chance(0.95) {
                    "chip"
                } else {
                    "swipe"
                };
                emit(
                    &mut drafts,
                    second,
                    Draft {
                        terminal,
                        amount,
                        channel,
                        scenario,
                    },
                );
            }

            if customer.stolen_until.is_some() {
                for _ in 0..1 + rng.poisson(2.0) {
                    let second = if rng.chance(0.5) {
                        rng.range(0.0, 6.0 * 3600.0) as i64
                    } else {
                        rng.range(0.0, 86_400.0) as i64
                    };
                    let terminal = if rng.chance(0.7) {
                        pick(rng, &self.high_risk_terminals)
                    } else {
                        Some(rng.below(self.terminals.len() as u64) as u32)
                    }
                    .unwrap_or(0);
                    let channel = if self.terminals[terminal as usize].online {
                        "online"
                    } else if rng.chance(0.5) {
                        "swipe"
                    } else {
                        "contactless"
                    };
                    let amount = rng.range(200.0, 2000.0);
                    emit(
                        &mut drafts,
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

            if card_testing && !self.online_terminals.is_empty() {
                let probes = rng.between(5, 20);
                let merchants: Vec<u32> = (0..rng.between(1, 3))
                    .filter_map(|_| pick(rng, &self.online_terminals))
                    .collect();
                let mut second = rng.range(0.0, 18.0 * 3600.0) as i64;
                for _ in 0..probes {
                    let terminal = merchants[rng.below(merchants.len() as u64) as usize];
                    let amount = rng.range(0.5, 3.0);
                    emit(
                        &mut drafts,
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
                    let terminal = pick(rng, &self.high_risk_terminals).unwrap_or(merchants[0]);
                    let channel = if self.terminals[terminal as usize].online {
                        "online"
                    } else {
                        "swipe"
                    };
                    let amount = rng.range(300.0, 1500.0);
                    emit(
                        &mut drafts,
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
        }
        drafts.sort_unstable_by_key(|(second, customer, order, _)| (*second, *customer, *order));
        let scale = 10f64.powi(self.config.currency.exponent() as i32);
        drafts
            .into_iter()
            .map(|(second, customer, _, draft)| {
                let terminal = &self.terminals[draft.terminal as usize];
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

struct Draft {
    terminal: u32,
    amount: f64,
    channel: &'static str,
    scenario: Scenario,
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

fn pick(rng: &mut Rng, items: &[u32]) -> Option<u32> {
    (!items.is_empty()).then(|| items[rng.below(items.len() as u64) as usize])
}

fn weighted(rng: &mut Rng, table: &[(&'static str, u32)]) -> &'static str {
    let total: u32 = table.iter().map(|(_, weight)| weight).sum();
    let mut ticket = rng.below(u64::from(total)) as u32;
    for (value, weight) in table {
        if ticket < *weight {
            return value;
        }
        ticket -= weight;
    }
    table[table.len() - 1].0
}

fn country_at(x: f64, y: f64) -> &'static str {
    let col = ((x / 25.0) as usize).min(3);
    let row = ((y / 25.0) as usize).min(3);
    COUNTRIES[row * 4 + col]
}

/// Physical terminals bucketed by map cell, for radius queries.
struct Grid {
    cell: f64,
    n_cells: usize,
    cells: Vec<Vec<u32>>,
}

impl Grid {
    fn new(positions: &[(f64, f64)], terminals: &[Terminal], radius: f64) -> Self {
        let n_cells = ((100.0 / radius).ceil() as usize).clamp(1, 1000);
        let cell = 100.0 / n_cells as f64;
        let mut cells = vec![Vec::new(); n_cells * n_cells];
        for (idx, ((x, y), terminal)) in positions.iter().zip(terminals).enumerate() {
            if !terminal.online {
                let (cx, cy) = (
                    ((x / cell) as usize).min(n_cells - 1),
                    ((y / cell) as usize).min(n_cells - 1),
                );
                cells[cy * n_cells + cx].push(idx as u32);
            }
        }
        Self { cell, n_cells, cells }
    }

    fn nearby(&self, x: f64, y: f64, radius: f64, positions: &[(f64, f64)]) -> Vec<u32> {
        let reach = (radius / self.cell).ceil() as i64;
        let (cx, cy) = ((x / self.cell) as i64, (y / self.cell) as i64);
        let mut found = Vec::new();
        for gy in (cy - reach).max(0)..=(cy + reach).min(self.n_cells as i64 - 1) {
            for gx in (cx - reach).max(0)..=(cx + reach).min(self.n_cells as i64 - 1) {
                for terminal in &self.cells[gy as usize * self.n_cells + gx as usize] {
                    let (tx, ty) = positions[*terminal as usize];
                    if (tx - x) * (tx - x) + (ty - y) * (ty - y) <= radius * radius {
                        found.push(*terminal);
                    }
                }
            }
        }
        found.sort_unstable();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimConfig {
        SimConfig {
            customers: 300,
            terminals: 600,
            days: 20,
            ..SimConfig::default()
        }
    }

    fn run(config: SimConfig) -> Vec<SimRecord> {
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

    #[test]
    fn to_transaction_equals_parsing_the_csv_line() {
        let schema = fraudlens_core::Schema::new(fraudlens_core::SchemaConfig::default(), None).unwrap();
        let binding = schema.bind_columns(&NATIVE_COLUMNS).unwrap();
        let eur = Currency::parse("EUR").unwrap();
        for record in run(small()).iter().filter(|r| r.number % 97 == 0 || r.is_fraud()) {
            let mut line = String::new();
            record.write_csv(eur, &mut line);
            let cells: Vec<&str> = line.trim_end().split(',').collect();
            let parsed = schema.parse_row(&binding, |idx| cells.get(idx).copied()).unwrap();
            assert_eq!(parsed, record.to_transaction(eur));
        }
    }

    #[test]
    fn csv_and_json_lines() {
        let record = &run(small())[0];
        let (mut csv, mut json) = (String::new(), String::new());
        let eur = Currency::parse("EUR").unwrap();
        record.write_csv(eur, &mut csv);
        record.write_json(eur, &mut json);
        assert_eq!(csv.trim_end().split(',').count(), NATIVE_COLUMNS.len());
        assert!(csv.starts_with("tx_0000000001,2026-01-01T"), "{csv}");
        assert!(
            json.starts_with(r#"{"transaction_id":"tx_0000000001","timestamp":"2026-01-01T"#),
            "{json}"
        );
        assert_eq!(Field::Amount(1205, 2).to_string(), "12.05");
        assert_eq!(Field::Amount(1205, 0).to_string(), "1205");
        assert_eq!(Field::Amount(5, 3).to_string(), "0.005");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["amount"].as_f64().unwrap() * 100.0, record.amount_minor as f64);
        assert_eq!(parsed.as_object().unwrap().len(), NATIVE_COLUMNS.len());
    }
}
