//! [`EventRows`]: training rows built from transactions — the engine's
//! features, then the schema's attributes. Categorical attribute values are
//! kept as dense ids while the rows are read; once they are all in (and in
//! time order), each attribute's [`CategoryEncoder`] is fitted on the
//! training share only — the validation rows must not shape the model — and
//! the ids become the encoder's codes.

use fraudlens_core::tabular::CategoryEncoder;
use fraudlens_core::{AttributeKind, AttributeValue, Schema, Transaction};
use fraudlens_features::FeatureSpec;
use rustc_hash::FxHashMap;

use super::{CheckedFitParams, Table};
use crate::inputs::{AttributeEncoding, InputSpec, MAX_CATEGORIES};

/// Training rows of transactions, before their attribute encoders are fitted.
pub struct EventRows {
    table: Table,
    n_engine: usize,
    interners: Vec<Interner>,
}

/// What [`EventRows::finish`] gives.
pub struct EventTable {
    /// How a transaction becomes a model input row (schema, feature spec, fitted encoders).
    pub inputs: InputSpec,
    /// The rows, in time order, attributes encoded.
    pub table: Table,
    /// Whether the rows had to be sorted (they were not read in time order).
    pub sorted: bool,
}

impl EventRows {
    /// No rows yet, for `n_engine_features` engine features and the schema's attributes.
    pub fn new(n_engine_features: usize, schema: &Schema) -> Self {
        let n_attributes = schema.attribute_names().len();
        Self {
            table: Table::new(n_engine_features + n_attributes),
            n_engine: n_engine_features,
            interners: (0..n_attributes).map(|_| Interner::default()).collect(),
        }
    }

    /// Adds a transaction's row: its engine `features`, its attributes, its
    /// `label` and primary `entity` hash.
    pub fn push(&mut self, tx: &Transaction, features: &[f64], label: bool, entity: u64) {
        let table = &mut self.table;
        table.values.extend_from_slice(features);
        for (interner, value) in self.interners.iter_mut().zip(&tx.attributes) {
            table.values.push(match value {
                AttributeValue::Numeric(value) => *value,
                AttributeValue::Categorical(Some(value)) => f64::from(interner.id(value)),
                AttributeValue::Categorical(None) => f64::NAN,
            });
        }
        table.push_meta(label, Some(tx.timestamp.as_millis()), Some(entity), tx.amount.major());
    }

    /// Sorts the rows by time (the split and every window assume time
    /// order), fits the attribute encoders on the rows before the time split
    /// of `params`, and encodes every row with them.
    pub fn finish(self, schema: &Schema, spec: &FeatureSpec, params: &CheckedFitParams) -> EventTable {
        let Self {
            mut table,
            n_engine,
            interners,
        } = self;
        let sorted = table.sort_by_time();
        let n_train = params.n_train(table.len());
        let n = table.n_features;
        let mut attributes = Vec::with_capacity(interners.len());
        for (idx, (name, interner)) in schema.attribute_names().iter().zip(&interners).enumerate() {
            let kind = schema.config().attributes.get(name).map(|field| field.kind);
            if kind != Some(AttributeKind::Categorical) {
                attributes.push(AttributeEncoding::Numeric { name: name.clone() });
                continue;
            }
            let column = n_engine + idx;
            let mut counts = vec![0u64; interner.names.len()];
            for row in table.values.chunks(n).take(n_train) {
                if !row[column].is_nan() {
                    counts[row[column] as usize] += 1;
                }
            }
            let counts: FxHashMap<String, u64> = interner
                .names
                .iter()
                .cloned()
                .zip(counts)
                .filter(|(_, count)| *count > 0)
                .collect();
            let encoder = CategoryEncoder::fit(&counts, MAX_CATEGORIES);
            let codes: Vec<f64> = interner.names.iter().map(|name| encoder.encode(Some(name))).collect();
            for value in table.values.iter_mut().skip(column).step_by(n) {
                if !value.is_nan() {
                    *value = codes[*value as usize];
                }
            }
            attributes.push(AttributeEncoding::Categorical {
                name: name.clone(),
                encoder,
            });
        }
        let inputs = InputSpec::Events {
            schema: schema.config().clone(),
            features: spec.config().clone(),
            attributes,
        };
        EventTable { inputs, table, sorted }
    }
}

/// Categorical attribute values seen, as dense ids.
#[derive(Default)]
struct Interner {
    ids: FxHashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, value: &str) -> u32 {
        if let Some(id) = self.ids.get(value) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(value.to_owned(), id);
        self.names.push(value.to_owned());
        id
    }
}
