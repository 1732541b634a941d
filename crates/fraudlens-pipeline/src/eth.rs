//! An Ethereum address as a feature row: its features (computed by
//! `fraudlens-chain` in the public address dataset's columns) given to a
//! model trained in tabular mode on such columns. Its decision is stored
//! like any row's, with the address as the entity, so the review queue,
//! labels and audit work unchanged.

use fraudlens_chain::AddressReport;
use serde_json::{Map, Value};

use crate::rows::{FeatureRow, RowInputs};

/// The decision id of an address scored as of a block: scoring it again at
/// the same block returns the stored decision.
pub fn address_decision_id(report: &AddressReport) -> String {
    format!("eth:{}@{}", report.address, report.block)
}

/// The model's input row for an address. Every feature the model reads must
/// be one of the address columns (spelled as the dataset does, or trimmed as
/// tabular training trims headers); the columns it does not read are left out.
pub fn address_row(inputs: &RowInputs, report: &AddressReport) -> Result<FeatureRow, String> {
    let mut object = Map::new();
    let mut not_given = Vec::new();
    for name in inputs.feature_names() {
        match report.features.get(name) {
            Some(value) => {
                object.insert(name.to_owned(), value.json());
            }
            None => not_given.push(name),
        }
    }
    if !not_given.is_empty() {
        let shown: Vec<String> = not_given.iter().take(8).map(|name| format!("{name:?}")).collect();
        return Err(format!(
            "the model reads {} that chain data does not give ({}{}): it was not trained on the address dataset's columns",
            if not_given.len() == 1 { "a feature" } else { "features" },
            shown.join(", "),
            if not_given.len() > shown.len() { ", …" } else { "" }
        ));
    }
    let id = address_decision_id(report);
    let mut row = inputs.parse_json(&Value::Object(object), || id.clone())?;
    row.id = id;
    row.entity = Some(report.address.to_string());
    Ok(row)
}
