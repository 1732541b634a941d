//! The subcommands, and what they share: schema overrides from flags, input
//! reading (`dataset`), output files (`output`) and the text reports
//! (`render`).

pub mod admin;
pub mod analyze;
pub mod backup;
pub mod dataset;
pub mod demo;
pub mod detect;
pub mod drift;
pub mod eth;
pub mod evaluate;
pub mod features;
pub mod import;
pub mod inspect;
pub mod lifecycle;
pub mod model_report;
pub mod output;
pub mod progress;
pub mod render;
pub mod score;
pub mod serve;
pub mod simulate;
pub mod tracking;
pub mod train;

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
    shown.state = config.state.shown();
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
