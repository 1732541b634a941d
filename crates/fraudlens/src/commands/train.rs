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
use fraudlens_core::tabular::{TabularEncoding, find_label_column};
use fraudlens_features::FeatureSpec;
use fraudlens_ingest::{profile_csv, tabular_table, training_rows};
use fraudlens_model::fit::{self, CheckedFitParams, EventTable, FitError, FitParams, Provenance, Table};
use fraudlens_model::inputs::InputSpec;
use fraudlens_model::report as html;
use fraudlens_model::train::Growth;

use crate::cli::{Mode, TrainArgs, TrainParamArgs};
use crate::commands::dataset::{Window, read_options, resolve_mode};
use crate::commands::model_report::{render_training, render_tuning};
use crate::commands::output::{same_file, write_atomically};
use crate::commands::{apply_input_flags, build_schema, progress, render};
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
    if let Some(report) = &args.report {
        check_report_path(report, &args.input.data, &args.out)?;
    }
    let window = Window::parse(
        args.train_from.as_deref(),
        args.train_to.as_deref(),
        ("train-from", "train-to"),
    )?;
    let tracking = super::tracking::client(&config)?;
    let started_ms = fraudlens_pipeline::now_ms();
    let started = Instant::now();
    let (inputs, table) = match resolve_mode(&args.input, &schema)? {
        Mode::Tabular => {
            if window != Window::ALL {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "--train-from/--train-to need transactions with timestamps (event mode)"
                )));
            }
            if params.get().review_capacity_per_day.is_some() {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "train.review_capacity_per_day (--review-capacity) needs transactions with timestamps (event \
                     mode) to count reviews per day; tabular rows have none (use train.threshold_objective)"
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
    let (params, tuning) = if args.tune {
        let tuning = search(&params, &inputs, &table, &args)?;
        let chosen = FitParams {
            gbdt: tuning.chosen().params.apply(params.gbdt().get()),
            ..params.get().clone()
        }
        .check()
        .context("the chosen parameters")
        .data()?;
        (chosen, Some(tuning))
    } else {
        (params, None)
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
    let mut fitted = fitted;
    fitted.manifest.tuning = tuning;
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
    if let Some(path) = &args.report {
        write_atomically(path, html_report(&fitted.manifest).as_bytes(), &[&args.input.data])?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(client) = tracking {
        let run = super::tracking::training_run("train", &fitted.manifest, &args.out, started_ms);
        let done = format!("the model was written to {}", args.out.display());
        super::admin::block_on(async move { super::tracking::log(&client, &run, &done).await.map(|_| ()) })?;
    }
    Ok(())
}

/// Refuses, before any training, a report path over the data or among the
/// model's files (whose checksums it would break).
fn check_report_path(report: &Path, data: &Path, out: &Path) -> CliResult {
    let parent = report
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // the model directory may not exist yet: compare the absolute paths as written too
    let absolute = |path: &Path| std::path::absolute(path).ok();
    if absolute(parent) == absolute(out) || same_file(parent, out) || same_file(report, data) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--report {} would replace the data or land among the model's files in {}: choose another path",
            report.display(),
            out.display()
        )));
    }
    Ok(())
}

/// `train --tune`: the search with a progress bar over the budget and a
/// line per trial scored, then the table.
fn search(params: &CheckedFitParams, inputs: &InputSpec, table: &Table, args: &TrainArgs) -> CliResult<fit::Tuning> {
    let budget = std::time::Duration::from_millis(args.budget.as_millis().max(0) as u64);
    eprintln!(
        "tuning for up to {} ({} parameter sets at most) on {} prequential folds of the window (each validates on \
         {:.0} % of the rows, after a gap of as many)",
        args.budget,
        args.trials,
        fit::TUNE_FOLDS,
        fit::FOLD_SHARE * 100.0
    );
    let bar = progress::bar(budget.as_secs().max(1), "tuning");
    let started = Instant::now();
    let tuning = fit::tune(
        params,
        inputs,
        table,
        args.anomaly,
        fit::Budget {
            time: budget,
            max_trials: usize::from(args.trials),
        },
        &mut |event| {
            bar.set_position(started.elapsed().as_secs());
            match event {
                fit::TuneEvent::Scored(trial) => {
                    bar.set_message(format!("trial {} AP {:.4}", trial.id, trial.mean_ap));
                }
                fit::TuneEvent::RungDone { rung, promoted } => {
                    bar.println(format!(
                        "rung {rung} done: {promoted} trials go on to fold {}",
                        rung + 2
                    ));
                }
            }
        },
    )?;
    bar.finish_and_clear();
    eprint!("{}", render_tuning(&tuning));
    Ok(tuning)
}

/// The training as one HTML page: the loss per round, the threshold choice
/// and the validation rows' curves.
fn html_report(manifest: &fraudlens_model::artifact::Manifest) -> String {
    let training = &manifest.training;
    let windows = manifest
        .validation
        .iter()
        .map(|metrics| html::Window {
            title: "validation".to_owned(),
            period: training
                .valid_period
                .map(|(from, to)| format!("the latest rows of the window, {from} .. {to} (they chose the round, calibration and thresholds: optimistic; tuning never saw them)")),
            metrics,
            decline: manifest.thresholds.decline(),
        })
        .collect();
    html::render(&html::Report {
        title: "fraudlens train".to_owned(),
        manifest,
        windows,
        summary: None,
        training: true,
        generated_at: fraudlens_pipeline::now().to_string(),
    })
}

fn apply_param_flags(train: &mut FitParams, flags: &TrainParamArgs) {
    if flags.review_capacity.is_some() {
        train.review_capacity_per_day = flags.review_capacity;
    }
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
    let bar = progress::spinner("replaying transactions");
    let options = read_options(config, config.ingest.strict, false);
    let now_ms = fraudlens_pipeline::now_ms();
    let read = training_rows(
        schema,
        spec,
        data,
        options,
        now_ms,
        window.range(),
        keep_unlabeled,
        || {
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    eprint!("{}", read.summary.report());
    if read.unlabeled > 0 {
        eprintln!(
            "{} rows in the window have no label and were left out of training",
            read.unlabeled
        );
    }
    let EventTable { inputs, table, sorted } = read.rows.finish(schema, spec, params);
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
    let (encoding, _) = TabularEncoding::fit(&profile.columns, label_idx, exclude);
    let read = tabular_table(data, &encoding, strict, max_examples, keep_unlabeled)?;
    if read.bad_rows.count() > 0 {
        eprint!("{}", render::score_bad_rows(data, &read.bad_rows));
    }
    if read.unlabeled > 0 {
        eprintln!("{} rows have no label and were left out of training", read.unlabeled);
    }
    Ok((InputSpec::Tabular { encoding }, read.table))
}
