//! The generated transaction: [`SimRecord`], with its native column names and
//! its in-memory [`Transaction`] form (no round trip through text).

use fraudlens_core::{
    Amount as Money, AttributeValue, Currency, EntityKey, Label, Timestamp, Transaction, TransactionId,
};

use crate::Scenario;

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
}
