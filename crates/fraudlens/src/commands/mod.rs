//! The subcommands, and what they share: schema overrides from flags, output
//! files, and the per-group feature summary.

pub mod admin;
pub mod dataset;
pub mod demo;
pub mod detect;
pub mod evaluate;
pub mod features;
pub mod import;
pub mod inspect;
pub mod model_report;
pub mod output;
pub mod progress;
pub mod score;
pub mod serve;
pub mod simulate;
pub mod train;

use std::collections::BTreeMap;

use anyhow::Context as _;
use fraudlens_core::{AttributeField, AttributeKind, EntityField, Schema};

use crate::cli::{InputArgs, SchemaArgs};
use crate::config::Config;
use crate::exit::{Classify, CliResult};

/// `fraudlens config`: the effective configuration as TOML, secrets redacted
/// (the card hash key serialises as `***`, the store URL's password too).
pub fn print_config(config: &Config) -> CliResult {
    let mut shown = config.clone();
    shown.store.url = fraudlens_store::redact_url(&config.store.url);
    let text = toml::to_string_pretty(&shown).context("rendering the configuration")?;
    print!("{text}");
    Ok(())
}

/// Applies `--strict` and `--max-error-examples` to the ingest configuration.
pub fn apply_input_flags(config: &mut Config, input: &InputArgs) {
    config.ingest.strict |= input.strict;
    if let Some(max) = input.max_error_examples {
        config.ingest.max_error_examples = max;
    }
}

/// Applies `--schema` and the single-role flags to the configuration, then checks the schema.
pub fn build_schema(config: &mut Config, args: &SchemaArgs) -> CliResult<Schema> {
    // the --schema file itself is a configuration layer, applied by Config::load
    let schema = &mut config.schema;
    let set = |target: &mut String, value: &Option<String>| {
        if let Some(value) = value {
            target.clone_from(value);
        }
    };
    set(&mut schema.transaction_id, &args.transaction_id);
    set(&mut schema.timestamp, &args.timestamp);
    set(&mut schema.amount, &args.amount);
    if let Some(field) = &args.currency {
        schema.currency = Some(field.clone());
    }
    if let Some(field) = &args.label {
        schema.label = Some(field.clone());
    }
    if let Some(format) = &args.timestamp_format {
        schema.timestamp_format = parse_enum(format, "timestamp format").usage()?;
    }
    if let Some(unit) = &args.amount_unit {
        schema.amount_unit = parse_enum(unit, "amount unit").usage()?;
    }
    for (specs, card_number) in [(&args.entity, false), (&args.card_number, true)] {
        for spec in specs {
            let (name, field) = split_assignment(spec, "--entity NAME=FIELD").usage()?;
            match field {
                Some(field) if !field.is_empty() => {
                    schema.entities.insert(
                        name,
                        EntityField {
                            field,
                            card_number,
                            optional: false,
                        },
                    );
                }
                _ => {
                    schema.entities.remove(&name);
                }
            }
        }
    }
    for (specs, kind) in [
        (&args.categorical, AttributeKind::Categorical),
        (&args.numeric, AttributeKind::Numeric),
    ] {
        for spec in specs {
            let (name, field) = split_assignment(spec, "NAME[=FIELD]").usage()?;
            schema.attributes.insert(
                name,
                AttributeField {
                    field,
                    kind,
                    required: true,
                },
            );
        }
    }
    Schema::new(config.schema.clone(), config.security.card_hash_key.as_ref())
        .context("invalid schema")
        .usage()
}

fn split_assignment(spec: &str, expected: &str) -> anyhow::Result<(String, Option<String>)> {
    let (name, field) = match spec.split_once('=') {
        Some((name, field)) => (name.trim(), Some(field.trim().to_owned())),
        None => (spec.trim(), None),
    };
    anyhow::ensure!(!name.is_empty(), "expected {expected}, got {spec:?}");
    Ok((name.to_owned(), field))
}

fn parse_enum<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|error| anyhow::anyhow!("invalid {what} {text:?}: {error}"))
}

/// Per-group means of features, for "are the classes separable?" at a glance.
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
    pub fn new(names: &[String], shown: &[String]) -> anyhow::Result<Self> {
        let shown: Vec<usize> = if shown.is_empty() {
            (0..names.len()).collect()
        } else {
            shown
                .iter()
                .map(|name| {
                    names.iter().position(|n| n == name).ok_or_else(|| {
                        anyhow::anyhow!(
                            "unknown feature {name:?} in --summary-features; features are: {}",
                            names.join(", ")
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?
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
