//! [`GroupSummary`]: per-group means of features, for "are the classes
//! separable?" at a glance (`features --summary-by`), and [`GroupBy`], the
//! group of a replayed transaction; [`EventCounts`]: what the valid rows of
//! a transaction file hold (`inspect`).

use std::collections::BTreeMap;

use fraudlens_core::{Label, Schema, Timestamp, Transaction};

use crate::{EventReader, IngestError};

/// What the valid rows of a transaction file hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventCounts {
    /// Valid rows.
    pub rows: u64,
    /// Earliest event time.
    pub first: Timestamp,
    /// Latest event time.
    pub last: Timestamp,
    /// Rows with a label.
    pub labeled: u64,
    /// Rows labeled fraud.
    pub fraud: u64,
}

impl EventCounts {
    /// Reads the rest of `reader`; `None` when it has no valid row.
    pub fn read(reader: &mut EventReader) -> Result<Option<Self>, IngestError> {
        let (mut first, mut last, mut fraud, mut labeled) = (None, None, 0u64, 0u64);
        while let Some(tx) = reader.next_transaction()? {
            first = Some(first.map_or(tx.timestamp, |f: Timestamp| f.min(tx.timestamp)));
            last = Some(last.map_or(tx.timestamp, |l: Timestamp| l.max(tx.timestamp)));
            labeled += u64::from(tx.label.is_some());
            fraud += u64::from(tx.label == Some(Label::Fraud));
        }
        Ok(first.zip(last).map(|(first, last)| Self {
            rows: reader.n_good(),
            first,
            last,
            labeled,
            fraud,
        }))
    }
}

/// What a transaction's group is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// Its label: `1`, `0` or `unlabeled`.
    Label,
    /// One of the schema's passthrough fields (its index).
    Passthrough(usize),
}

impl GroupBy {
    /// The grouping `by` names: the label (the schema's name for it or
    /// `label`) or a passthrough field.
    pub fn resolve(by: &str, schema: &Schema) -> Result<Self, String> {
        let passthrough = &schema.config().passthrough;
        let label_name = schema.config().label.as_deref().unwrap_or("label");
        if by == label_name || by == "label" {
            return Ok(Self::Label);
        }
        match passthrough.iter().position(|name| name == by) {
            Some(idx) => Ok(Self::Passthrough(idx)),
            None => Err(format!(
                "--summary-by {by:?}: use the label ({label_name}) or a passthrough field ({})",
                passthrough.join(", ")
            )),
        }
    }

    /// The group of `tx`, whose passthrough fields are `passthrough`.
    pub fn group<'a>(self, tx: &Transaction, passthrough: &'a [Option<String>]) -> &'a str {
        match self {
            Self::Label => label_group(tx.label),
            Self::Passthrough(idx) => passthrough[idx].as_deref().unwrap_or(""),
        }
    }
}

/// The group of a label: `1` (fraud), `0` (legit) or `unlabeled`.
pub fn label_group(label: Option<Label>) -> &'static str {
    match label {
        Some(Label::Fraud) => "1",
        Some(Label::Legit) => "0",
        None => "unlabeled",
    }
}

/// Per-group means of features.
pub struct GroupSummary {
    names: Vec<String>,
    /// Indices into the feature vector of the features to show.
    shown: Vec<usize>,
    groups: BTreeMap<String, GroupStats>,
}

/// Accumulated values of one group.
struct GroupStats {
    rows: u64,
    /// Per shown feature: sum and number of non-missing values.
    sums: Vec<(f64, u64)>,
}

impl GroupSummary {
    /// Summarises the features named in `shown` (all when empty) of vectors laid out as `names`.
    pub fn new(names: &[String], shown: &[String]) -> Result<Self, String> {
        let shown: Vec<usize> = if shown.is_empty() {
            (0..names.len()).collect()
        } else {
            shown
                .iter()
                .map(|name| {
                    names.iter().position(|n| n == name).ok_or_else(|| {
                        format!(
                            "unknown feature {name:?} in --summary-features; features are: {}",
                            names.join(", ")
                        )
                    })
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            names: names.to_vec(),
            shown,
            groups: BTreeMap::new(),
        })
    }

    /// Adds one row to `group`.
    pub fn add(&mut self, group: &str, values: &[f64]) {
        let entry = self.groups.entry(group.to_owned()).or_insert_with(|| GroupStats {
            rows: 0,
            sums: vec![(0.0, 0); self.shown.len()],
        });
        entry.rows += 1;
        for (slot, idx) in entry.sums.iter_mut().zip(&self.shown) {
            let value = values[*idx];
            if value.is_finite() {
                slot.0 += value;
                slot.1 += 1;
            }
        }
    }

    /// A table: one row per feature, one column per group; `-` where a group has no value.
    pub fn render(&self, by: &str) -> String {
        let groups: Vec<(&String, &GroupStats)> = self.groups.iter().collect();
        let name_width = self
            .shown
            .iter()
            .map(|idx| self.names[*idx].len())
            .max()
            .unwrap_or(7)
            .max(7);
        let width = groups.iter().map(|(name, _)| name.len()).max().unwrap_or(8).max(10);
        let mut out = format!("mean of each feature by {by}\n{:name_width$}", "feature");
        for (name, _) in &groups {
            out.push_str(&format!("  {name:>width$}"));
        }
        out.push_str(&format!("\n{:name_width$}", "rows"));
        for (_, stats) in &groups {
            out.push_str(&format!("  {:>width$}", stats.rows));
        }
        for (position, idx) in self.shown.iter().enumerate() {
            out.push_str(&format!("\n{:name_width$}", self.names[*idx]));
            for (_, stats) in &groups {
                let (sum, n) = stats.sums[position];
                let cell = if n == 0 {
                    "-".to_owned()
                } else {
                    format_mean(sum / n as f64)
                };
                out.push_str(&format!("  {cell:>width$}"));
            }
        }
        out.push('\n');
        out
    }
}

fn format_mean(value: f64) -> String {
    if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Means over the finite values of each group; a group without a value shows `-`.
    #[test]
    fn a_summary_shows_the_mean_of_each_group() {
        let names = ["a".to_owned(), "b".to_owned()];
        let mut summary = GroupSummary::new(&names, &["b".to_owned()]).unwrap();
        summary.add("0", &[1.0, 2.0]);
        summary.add("0", &[1.0, 4.0]);
        summary.add("1", &[1.0, f64::NAN]);
        let text = summary.render("label");
        assert!(text.starts_with("mean of each feature by label\n"), "{text}");
        assert!(text.contains("3.000"), "{text}");
        assert!(text.trim_end().ends_with('-'), "{text}");
        assert!(GroupSummary::new(&names, &["c".to_owned()]).is_err());
    }
}
