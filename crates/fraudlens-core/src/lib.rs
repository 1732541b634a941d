//! Domain types of fraudlens and the schema that maps a user's records onto them.
//!
//! Everything downstream (feature engine, model, store, API) works on checked
//! values built here: a raw CSV row or JSON object goes through
//! [`Schema::parse_row`] / [`Schema::parse_json`] and comes out as a
//! [`Transaction`] — or as a [`RecordError`] that says which field was wrong.
//! This crate does no IO, reads no clock and has no async code, so the same
//! parsing runs in training, in the API and in the stream consumer.
//!
//! ```
//! use fraudlens_core::{Schema, SchemaConfig};
//!
//! let schema = Schema::new(SchemaConfig::default(), None).unwrap();
//! let header = ["transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "currency", "is_fraud"];
//! let binding = schema.bind_columns(&header).unwrap();
//! let row = ["t1", "2026-01-01T10:00:00Z", "c7", "term3", "12.50", "EUR", "0"];
//! let tx = schema.parse_row(&binding, |idx| row.get(idx).copied()).unwrap();
//! assert_eq!(tx.amount.minor(), 1250);
//! assert_eq!(tx.entity(0).unwrap().as_str(), "c7");
//! ```

mod card;
mod duration;
pub mod json;
mod money;
pub mod rng;
mod schema;
pub mod tabular;
mod time;
mod transaction;
mod vocabulary;

pub use card::{CardHasher, Secret, looks_like_card_number, redact_card_numbers};
pub use duration::{DurationError, WindowDuration};
pub use money::{Amount, AmountError, Currency};
pub use schema::{
    AmountUnit, AttributeField, AttributeKind, ColumnBinding, EntityField, RecordError, Schema, SchemaConfig,
    SchemaError,
};
pub use time::{CivilTime, Timestamp, TimestampError, TimestampFormat};
pub use transaction::{AttributeValue, EntityKey, IdError, Label, LabelError, Transaction, TransactionId};
pub use vocabulary::{Decision, Reason, ReviewStatus};
