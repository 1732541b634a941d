//! `fraudlens train`: transactions (or a tabular file) → a model artifact.
//!
//! Event mode replays the whole file through the feature engine and keeps
//! the labelled rows of the training window; tabular mode reads the file
//! with inferred types. [`fraudlens_model::fit`] then fits the model on
//! those rows (the last share of them *in time* validates), and the
//! artifact is written with its report.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use fraudlens_core::tabular::find_label_column;
use fraudlens_features::FeatureSpec;
use fraudlens_ingest::{TabularReader, profile_csv};
use fraudlens_model::fit::{self, CheckedFitParams, EventRows, EventTable, FitError, FitParams, Provenance, Table};
use fraudlens_model::inputs::InputSpec;
use fraudlens_model::train::Growth;

use crate::cli::{Mode, TrainArgs, TrainParamArgs};
use crate::commands::dataset::{ReadOptions, Window, is_fraud, primary_entity, replay_file};
use crate::commands::features::resolve_mode;
use crate::commands::model_report::render_training;
use crate::commands::{apply_input_flags, build_schema, progress};
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// Runs `fraudlens train`.
pub fn run(mut config: Config, args: TrainArgs) -> CliResult {
    let schema = build_schema(&mut config, &args.schema)?;
    apply_input_flags(&mut config, &args.input);
    apply_param_flags(&mut config.train, &args.params);
    let params = config
        .train
        .clone()
        .check()
        .context("invalid training parameters")
        .usage()?;
    let window = Window::parse(
        args.train_from.as_deref(),
        args.train_to.as_deref(),
        ("train-from", "train-to"),
    )?;
    let started = Instant::now();
    let (inputs, table) = match resolve_mode(&args.input, &schema)? {
        Mode::Tabular => {
            if window != Window::ALL {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "--train-from/--train-to need transactions with timestamps (event mode)"
                )));
            }
            load_tabular(
                &args.input.data,
                args.schema.label.as_deref(),
                &config,
                &args.input.exclude,
                args.unsupervised,
            )?
        }
        _ => {
            let spec = Arc::new(
                FeatureSpec::new(config.features.clone(), &schema)
                    .context("invalid feature spec")
                    .usage()?,
            );
            load_events(
                &schema,
                &spec,
                &config,
                &params,
                &args.input.data,
                window,
                args.unsupervised,
            )?
        }
    };
    eprintln!(
        "read {} {}rows ({} fraud) with {} features in {:.1}s",
        table.len(),
        if args.unsupervised { "" } else { "labelled " },
        table.frauds(),
        table.n_features,
        started.elapsed().as_secs_f64()
    );
    let provenance = Provenance {
        data_source: args.input.data.display().to_string(),
        created_at: fraudlens_pipeline::now(),
    };
    let fitted = if args.unsupervised {
        fit::isolation_forest(&params, inputs, &table, &provenance)?
    } else {
        let bar = progress::bar(params.gbdt().get().n_trees as u64, "training");
        let fitted = fit::gbdt(&params, inputs, &table, args.anomaly, &provenance, &mut |round| {
            bar.set_position(round.round as u64);
            if let Some(loss) = round.valid_logloss {
                bar.set_message(format!("valid logloss {loss:.5}"));
            }
        });
        bar.finish_and_clear();
        fitted.map_err(|error| match error {
            FitError::NoFraudInSplit { .. } => {
                Failure::Data(anyhow::anyhow!("{error} (without labels: --unsupervised)"))
            }
            error => error.into(),
        })?
    };
    // the trees as a LightGBM text model too, to inspect them in Python
    let lightgbm = fitted
        .forest
        .as_ref()
        .map(|forest| fraudlens_model::interop::export_lightgbm_text(forest, &fitted.manifest.feature_names));
    fitted
        .save(&args.out, lightgbm.as_deref())
        .with_context(|| format!("writing the model to {}", args.out.display()))?;
    eprint!("{}", render_training(&fitted.manifest));
    eprintln!("model written to {}", args.out.display());
    Ok(())
}

fn apply_param_flags(train: &mut FitParams, flags: &TrainParamArgs) {
    let params = &mut train.gbdt;
    let set = |target: &mut usize, value: Option<usize>| {
        if let Some(value) = value {
            *target = value;
        }
    };
    set(&mut params.n_trees, flags.trees);
    set(&mut params.num_leaves, flags.num_leaves);
    set(&mut params.max_depth, flags.max_depth);
    set(&mut params.threads, flags.threads);
    if let Some(rate) = flags.learning_rate {
        params.learning_rate = rate;
    }
    if let Some(weight) = flags.scale_pos_weight {
        params.scale_pos_weight = weight;
    }
    if let Some(seed) = flags.seed {
        params.seed = seed;
    }
    if flags.depth_wise {
        params.growth = Growth::DepthWise;
    }
}

/// Replays the file and keeps the labelled rows of `window`.
fn load_events(
    schema: &fraudlens_core::Schema,
    spec: &Arc<FeatureSpec>,
    config: &Config,
    params: &CheckedFitParams,
    data: &Path,
    window: Window,
    keep_unlabeled: bool,
) -> CliResult<(InputSpec, Table)> {
    let mut rows = EventRows::new(spec.feature_names().len(), schema);
    let mut unlabeled = 0u64;
    let bar = progress::spinner("replaying transactions");
    let summary = replay_file(
        schema,
        spec.clone(),
        data,
        ReadOptions {
            strict: config.ingest.strict,
            max_examples: config.ingest.max_error_examples,
            sort: false,
            time_policy: config.event_time.policy(),
        },
        |tx, _, features| {
            bar.inc(1);
            if !window.contains(tx.timestamp.as_millis()) {
                return Ok(());
            }
            let label = match is_fraud(tx.label) {
                Some(label) => label,
                None if keep_unlabeled => false,
                None => {
                    unlabeled += 1;
                    return Ok(());
                }
            };
            rows.push(tx, features, label, primary_entity(tx));
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    eprint!("{}", summary.report());
    if unlabeled > 0 {
        eprintln!("{unlabeled} rows in the window have no label and were left out of training");
    }
    let EventTable { inputs, table, sorted } = rows.finish(schema, spec, params);
    if sorted {
        eprintln!("rows sorted by time (the file is not in time order)");
    }
    Ok((inputs, table))
}

/// Reads a tabular file: types inferred, categoricals encoded; file order is time order.
fn load_tabular(
    data: &Path,
    label: Option<&str>,
    config: &Config,
    exclude: &[String],
    keep_unlabeled: bool,
) -> CliResult<(InputSpec, Table)> {
    let (strict, max_examples) = (config.ingest.strict, config.ingest.max_error_examples);
    let profile = profile_csv(data, strict, max_examples)?;
    let label_idx = find_label_column(&profile.header, label);
    if label_idx.is_none() && !keep_unlabeled {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{}: no label column found; name it with --label, or train without labels with --unsupervised",
            data.display()
        )));
    }
    let (encoding, _) = fraudlens_core::tabular::TabularEncoding::fit(&profile.columns, label_idx, exclude);
    let mut reader = TabularReader::open(data, &encoding, strict, max_examples)?;
    let mut table = Table::new(encoding.features.len());
    let mut row = Vec::new();
    let mut unlabeled = 0u64;
    while let Some(label) = reader.next_row(&mut row)? {
        match label {
            Some(label) => {
                table.values.extend_from_slice(&row);
                table.push_meta(label == fraudlens_core::Label::Fraud, None, None, 1.0);
            }
            None if keep_unlabeled => {
                table.values.extend_from_slice(&row);
                table.push_meta(false, None, None, 1.0);
            }
            None => unlabeled += 1,
        }
    }
    if reader.bad_rows().count() > 0 {
        eprintln!("{}: {} bad rows skipped", data.display(), reader.bad_rows().count());
        for issue in reader.bad_rows().examples() {
            eprintln!("  line {}: {}", issue.line, issue.reason);
        }
    }
    if unlabeled > 0 {
        eprintln!("{unlabeled} rows have no label and were left out of training");
    }
    Ok((InputSpec::Tabular { encoding }, table))
}
