//! Account-level features of an address, in the columns of the widely used
//! public labelled Ethereum fraud dataset ("Ethereum Fraud Detection
//! Dataset", 9,841 addresses with a `FLAG` column), spelled exactly as its
//! CSV header spells them — leading spaces, the trailing space of
//! `max value received `, and the pandas-renamed `ERC20 uniq sent addr.1`
//! included — so that a model trained in tabular mode on that file, or on
//! one written by `fraudlens eth features`, scores a live address unchanged.
//!
//! The definitions (docs/eth.md has the table): Ether amounts are in Ether
//! (wei / 10¹⁸), token amounts in the token's own units (raw / 10^decimals:
//! the dataset's "ERC20 … Ether" columns sum token amounts, whatever the
//! token), times in minutes. "Sent" transactions are the address's
//! successful transactions to a recipient, "received" those to it; contract
//! creations are counted apart. An aggregate over nothing is 0, and a most
//! frequent token over nothing is missing.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::codec::WEI_PER_ETHER;
use crate::history::{ChainTx, TokenTransfer};
use crate::{Address, History};

/// The columns, in the dataset's order (its `Index`, `Address` and `FLAG` aside).
pub const COLUMNS: [&str; 47] = [
    "Avg min between sent tnx",
    "Avg min between received tnx",
    "Time Diff between first and last (Mins)",
    "Sent tnx",
    "Received Tnx",
    "Number of Created Contracts",
    "Unique Received From Addresses",
    "Unique Sent To Addresses",
    "min value received",
    "max value received ",
    "avg val received",
    "min val sent",
    "max val sent",
    "avg val sent",
    "min value sent to contract",
    "max val sent to contract",
    "avg value sent to contract",
    "total transactions (including tnx to create contract",
    "total Ether sent",
    "total ether received",
    "total ether sent contracts",
    "total ether balance",
    " Total ERC20 tnxs",
    " ERC20 total Ether received",
    " ERC20 total ether sent",
    " ERC20 total Ether sent contract",
    " ERC20 uniq sent addr",
    " ERC20 uniq rec addr",
    " ERC20 uniq sent addr.1",
    " ERC20 uniq rec contract addr",
    " ERC20 avg time between sent tnx",
    " ERC20 avg time between rec tnx",
    " ERC20 avg time between rec 2 tnx",
    " ERC20 avg time between contract tnx",
    " ERC20 min val rec",
    " ERC20 max val rec",
    " ERC20 avg val rec",
    " ERC20 min val sent",
    " ERC20 max val sent",
    " ERC20 avg val sent",
    " ERC20 min val sent contract",
    " ERC20 max val sent contract",
    " ERC20 avg val sent contract",
    " ERC20 uniq sent token name",
    " ERC20 uniq rec token name",
    " ERC20 most sent token type",
    " ERC20_most_rec_token_type",
];

/// The dataset's id and label columns, written first by `fraudlens eth features`.
pub const ID_COLUMNS: [&str; 3] = ["Index", "Address", "FLAG"];

/// One feature's value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A count, an amount or a time.
    Number(f64),
    /// A token name (`None`: the address moved no token that way).
    Text(Option<String>),
}

impl Value {
    /// The number, for a numeric feature.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(x) => Some(*x),
            Self::Text(_) => None,
        }
    }

    /// As a CSV cell (missing: empty).
    pub fn cell(&self) -> String {
        match self {
            Self::Number(x) => x.to_string(),
            Self::Text(text) => text.clone().unwrap_or_default(),
        }
    }

    /// As JSON (missing: `null`).
    pub fn json(&self) -> serde_json::Value {
        match self {
            Self::Number(x) => {
                serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Self::Text(text) => text.clone().map_or(serde_json::Value::Null, serde_json::Value::String),
        }
    }
}

/// What features need besides the history: facts of the chain at the scored block.
pub struct Facts<'a> {
    /// The address.
    pub address: Address,
    /// Its balance in wei.
    pub balance_wei: u128,
    /// Which counterparties are contracts.
    pub is_contract: &'a dyn Fn(Address) -> bool,
    /// A token's name for the "token name" columns.
    pub token_name: &'a dyn Fn(Address) -> String,
    /// A token's decimals (when its transfers do not say).
    pub token_decimals: &'a dyn Fn(Address) -> u8,
}

/// The features of one address, in [`COLUMNS`] order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AddressFeatures {
    values: Vec<Value>,
}

impl AddressFeatures {
    /// The values in [`COLUMNS`] order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// `(column, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        COLUMNS.iter().copied().zip(&self.values)
    }

    /// The value of a column (spelled as in [`COLUMNS`], or trimmed).
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.iter()
            .find(|(name, _)| *name == column || name.trim() == column.trim())
            .map(|(_, value)| value)
    }

    /// Computes the features of `history` (the address's whole history up to the scored block).
    pub fn compute(history: &History, facts: &Facts<'_>) -> Self {
        let me = facts.address;
        let sent: Vec<&ChainTx> = history
            .transactions
            .iter()
            .filter(|tx| tx.from == me && tx.to.is_some())
            .collect();
        let received: Vec<&ChainTx> = history.transactions.iter().filter(|tx| tx.to == Some(me)).collect();
        let created = history
            .transactions
            .iter()
            .filter(|tx| tx.from == me && tx.to.is_none())
            .count();
        let sent_to_contract: Vec<&ChainTx> = sent
            .iter()
            .copied()
            .filter(|tx| tx.to.is_some_and(|to| (facts.is_contract)(to)))
            .collect();
        let ether =
            |txs: &[&ChainTx]| -> Vec<f64> { txs.iter().map(|tx| tx.value_wei as f64 / WEI_PER_ETHER).collect() };
        let (sent_values, received_values, contract_values) =
            (ether(&sent), ether(&received), ether(&sent_to_contract));
        let times = |txs: &[&ChainTx]| -> Vec<u64> { txs.iter().map(|tx| tx.timestamp).collect() };
        let all_times: Vec<u64> = history
            .transactions
            .iter()
            .filter(|tx| tx.from == me || tx.to == Some(me))
            .map(|tx| tx.timestamp)
            .collect();
        let span = match (all_times.iter().min(), all_times.iter().max()) {
            (Some(first), Some(last)) => (last - first) as f64 / 60.0,
            _ => 0.0,
        };
        let total_transactions = history
            .transactions
            .iter()
            .filter(|tx| tx.from == me || tx.to == Some(me))
            .map(|tx| &tx.hash)
            .collect::<FxHashSet<_>>()
            .len();

        let amount = |transfer: &TokenTransfer| {
            let decimals = transfer
                .decimals
                .unwrap_or_else(|| (facts.token_decimals)(transfer.token));
            transfer.raw_amount / 10f64.powi(i32::from(decimals))
        };
        let tokens_sent: Vec<&TokenTransfer> = history.transfers.iter().filter(|t| t.from == me).collect();
        let tokens_received: Vec<&TokenTransfer> = history.transfers.iter().filter(|t| t.to == me).collect();
        let tokens_to_contract: Vec<&TokenTransfer> = tokens_sent
            .iter()
            .copied()
            .filter(|t| (facts.is_contract)(t.to))
            .collect();
        let amounts = |transfers: &[&TokenTransfer]| -> Vec<f64> { transfers.iter().map(|t| amount(t)).collect() };
        let token_times =
            |transfers: &[&TokenTransfer]| -> Vec<u64> { transfers.iter().map(|t| t.timestamp).collect() };
        let distinct = |items: &mut dyn Iterator<Item = Address>| items.collect::<FxHashSet<_>>().len() as f64;
        let names = |transfers: &[&TokenTransfer]| -> Vec<String> {
            transfers.iter().map(|t| (facts.token_name)(t.token)).collect()
        };
        let (sent_names, received_names) = (names(&tokens_sent), names(&tokens_received));
        let total_token_transfers = history
            .transfers
            .iter()
            .filter(|t| t.from == me || t.to == me)
            .map(|t| (&t.hash, t.log_index))
            .collect::<FxHashSet<_>>()
            .len();
        let (ts, tr, tc) = (
            amounts(&tokens_sent),
            amounts(&tokens_received),
            amounts(&tokens_to_contract),
        );
        let received_gap = mean_gap_minutes(&token_times(&tokens_received));

        let n = Value::Number;
        let values = vec![
            n(mean_gap_minutes(&times(&sent))),
            n(mean_gap_minutes(&times(&received))),
            n(span),
            n(sent.len() as f64),
            n(received.len() as f64),
            n(created as f64),
            n(distinct(&mut received.iter().map(|tx| tx.from))),
            n(distinct(&mut sent.iter().filter_map(|tx| tx.to))),
            n(min(&received_values)),
            n(max(&received_values)),
            n(mean(&received_values)),
            n(min(&sent_values)),
            n(max(&sent_values)),
            n(mean(&sent_values)),
            n(min(&contract_values)),
            n(max(&contract_values)),
            n(mean(&contract_values)),
            n(total_transactions as f64),
            n(wei_sum(&sent)),
            n(wei_sum(&received)),
            n(wei_sum(&sent_to_contract)),
            n(facts.balance_wei as f64 / WEI_PER_ETHER),
            n(total_token_transfers as f64),
            n(tr.iter().sum()),
            n(ts.iter().sum()),
            n(tc.iter().sum()),
            n(distinct(&mut tokens_sent.iter().map(|t| t.to))),
            n(distinct(&mut tokens_received.iter().map(|t| t.from))),
            n(distinct(&mut tokens_to_contract.iter().map(|t| t.to))),
            n(distinct(&mut tokens_received.iter().map(|t| t.token))),
            n(mean_gap_minutes(&token_times(&tokens_sent))),
            n(received_gap),
            n(received_gap),
            n(mean_gap_minutes(&token_times(&tokens_to_contract))),
            n(min(&tr)),
            n(max(&tr)),
            n(mean(&tr)),
            n(min(&ts)),
            n(max(&ts)),
            n(mean(&ts)),
            n(min(&tc)),
            n(max(&tc)),
            n(mean(&tc)),
            n(sent_names.iter().collect::<FxHashSet<_>>().len() as f64),
            n(received_names.iter().collect::<FxHashSet<_>>().len() as f64),
            Value::Text(most_frequent(&sent_names)),
            Value::Text(most_frequent(&received_names)),
        ];
        debug_assert_eq!(values.len(), COLUMNS.len());
        Self { values }
    }
}

/// Sum of the transactions' values in Ether, summed exactly in wei first.
fn wei_sum(txs: &[&ChainTx]) -> f64 {
    txs.iter().map(|tx| tx.value_wei).fold(0u128, u128::saturating_add) as f64 / WEI_PER_ETHER
}

/// Mean minutes between consecutive times (0 for fewer than two).
fn mean_gap_minutes(times: &[u64]) -> f64 {
    match (times.iter().min(), times.iter().max()) {
        (Some(first), Some(last)) if times.len() >= 2 => (last - first) as f64 / 60.0 / (times.len() - 1) as f64,
        _ => 0.0,
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().reduce(f64::min).unwrap_or(0.0)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().reduce(f64::max).unwrap_or(0.0)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The most frequent name (ties: the first in alphabetical order).
fn most_frequent(names: &[String]) -> Option<String> {
    let mut counts: FxHashMap<&str, usize> = FxHashMap::default();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a)))
        .map(|(name, _)| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> Address {
        Address::parse(&format!("0x{:040x}", n)).expect("address")
    }

    fn tx(hash: &str, time: u64, from: u8, to: Option<u8>, ether: f64) -> ChainTx {
        ChainTx {
            hash: hash.to_owned(),
            block: time,
            index: 0,
            timestamp: time,
            from: addr(from),
            to: to.map(addr),
            value_wei: (ether * 1e18) as u128,
            created: None,
        }
    }

    #[test]
    fn mean_gaps_are_span_over_gaps() {
        assert_eq!(mean_gap_minutes(&[]), 0.0);
        assert_eq!(mean_gap_minutes(&[600]), 0.0);
        assert_eq!(mean_gap_minutes(&[0, 600, 1800]), 15.0);
        assert_eq!(
            most_frequent(&["B".into(), "A".into(), "B".into(), "A".into()]).as_deref(),
            Some("A")
        );
        assert_eq!(most_frequent(&[]), None);
    }

    #[test]
    fn a_self_transfer_counts_as_sent_and_received_once_in_the_total() {
        let history = History {
            transactions: vec![
                tx("0xa", 0, 1, Some(1), 1.0),
                tx("0xb", 120, 1, Some(2), 2.0),
                tx("0xc", 240, 1, None, 0.0),
            ],
            ..History::default()
        };
        let facts = Facts {
            address: addr(1),
            balance_wei: 5_000_000_000_000_000_000,
            is_contract: &|a| a == addr(2),
            token_name: &|_| String::new(),
            token_decimals: &|_| 18,
        };
        let features = AddressFeatures::compute(&history, &facts);
        let get = |name: &str| features.get(name).and_then(Value::as_f64).expect(name);
        assert_eq!(get("Sent tnx"), 2.0);
        assert_eq!(get("Received Tnx"), 1.0);
        assert_eq!(get("Number of Created Contracts"), 1.0);
        assert_eq!(get("total transactions (including tnx to create contract"), 3.0);
        assert_eq!(get("Time Diff between first and last (Mins)"), 4.0);
        assert_eq!(get("Avg min between sent tnx"), 2.0);
        assert_eq!(get("total ether sent contracts"), 2.0);
        assert_eq!(get("max value received"), 1.0);
        assert_eq!(get("total ether balance"), 5.0);
        assert_eq!(features.get(" ERC20 most sent token type"), Some(&Value::Text(None)));
    }
}
