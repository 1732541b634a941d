//! `fraudlens evaluate`: how a model does on a time window, the way fraud
//! teams measure it — AUC, average precision, confusion at the review
//! threshold, precision@k and card precision@k per day, Brier score,
//! reliability — or prequentially: the model's parameters retrained on
//! several successive windows, each tested on the days after a gap for the
//! label delay, reported as mean ± std ([`fraudlens_model::fit::prequential`]).

use std::num::NonZeroUsize;

use anyhow::Context as _;
use fraudlens_ingest::labelled_table;
use fraudlens_model::artifact::Artifact;
use fraudlens_model::fit::{self, FitParams, Folds, Provenance, Table};
use fraudlens_model::inputs::InputSpec;
use fraudlens_model::report as html;

use crate::cli::EvaluateArgs;
use crate::commands::dataset::{Window, event_inputs, read_options};
use crate::commands::model_report::{EvaluateReport, render_evaluate_report};
use crate::commands::output::write_atomically;
use crate::commands::progress;
use crate::commands::score::load_model;
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// Runs `fraudlens evaluate`.
pub fn run(config: &Config, args: EvaluateArgs) -> CliResult {
    let artifact = load_model(&args.model)?;
    if !matches!(artifact.manifest.inputs, InputSpec::Events { .. }) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "evaluate needs a model trained on transactions (time windows); for tabular models use `score --stats`"
        )));
    }
    let table = load_table(config, &artifact, &args)?;
    let report = match args.prequential {
        None => {
            let mut window = Window::parse(
                args.window.test_from.as_deref(),
                args.window.test_to.as_deref(),
                ("test-from", "test-to"),
            )?;
            // the model's own rows say nothing about how it does on new data
            let seen_until = artifact.seen_until();
            match (args.window.test_from.is_some(), seen_until) {
                (false, Some(last)) => {
                    window.from = last.as_millis() + 1;
                    eprintln!("testing on the transactions after the model's training data (after {last})");
                }
                (true, Some(last)) if window.from <= last.as_millis() => eprintln!(
                    "warning: the test window starts before the end of the model's training data ({last}): these metrics are partly in-sample"
                ),
                _ => {}
            }
            let tested = fit::test_window(&artifact, &table, window.from, window.to, args.k).context("scoring")?;
            let Some(tested) = tested else {
                return Err(Failure::Data(anyhow::anyhow!(
                    "no labelled transactions in the test window"
                )));
            };
            EvaluateReport {
                model_id: artifact.manifest.model_id.clone(),
                windows: vec![tested],
                summary: None,
            }
        }
        Some(n_folds) => prequential(config, &artifact, &table, &args, n_folds)?,
    };
    print!("{}", render_evaluate_report(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("serialising the report")?;
        write_atomically(path, &json, &[&args.data])?;
    }
    if let Some(path) = &args.report {
        write_atomically(path, html_report(&artifact, &report).as_bytes(), &[&args.data])?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// The evaluation as one HTML page: each window (or fold) with its curves.
fn html_report(artifact: &Artifact, report: &EvaluateReport) -> String {
    let folds = report.summary.is_some();
    let windows = report
        .windows
        .iter()
        .enumerate()
        .map(|(idx, window)| {
            let mut period = format!("transactions {} .. {}", window.test.0, window.test.1);
            if let Some((from, to)) = &window.train {
                period.push_str(&format!("; trained on {from} .. {to}"));
            }
            html::Window {
                title: if folds {
                    format!("fold {}", idx + 1)
                } else {
                    "test".to_owned()
                },
                period: Some(period),
                metrics: &window.metrics,
                // a fold's model has its own thresholds: only its review threshold is known here
                decline: if folds {
                    None
                } else {
                    artifact.manifest.thresholds.decline()
                },
            }
        })
        .collect();
    html::render(&html::Report {
        title: if folds {
            format!("fraudlens evaluate: {} folds, prequential", report.windows.len())
        } else {
            "fraudlens evaluate".to_owned()
        },
        manifest: &artifact.manifest,
        windows,
        summary: report.summary.as_ref(),
        training: false,
        generated_at: fraudlens_pipeline::now().to_string(),
    })
}

/// Every labelled row of the file as model inputs, with times, entities and amounts.
fn load_table(config: &Config, artifact: &Artifact, args: &EvaluateArgs) -> CliResult<Table> {
    let inputs = event_inputs(config, artifact)?;
    let bar = progress::spinner("replaying transactions");
    let options = read_options(config, args.strict || config.ingest.strict, false);
    let now_ms = fraudlens_pipeline::now_ms();
    let (table, summary) = labelled_table(&inputs, artifact.n_inputs(), &args.data, options, now_ms, || {
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    eprint!("{}", summary.report());
    Ok(table)
}

/// Retrains with the model's parameters on each fold (see [`fit::prequential`]).
fn prequential(
    config: &Config,
    artifact: &Artifact,
    table: &Table,
    args: &EvaluateArgs,
    n_folds: usize,
) -> CliResult<EvaluateReport> {
    let n_folds = NonZeroUsize::new(n_folds)
        .ok_or_else(|| Failure::Usage(anyhow::anyhow!("--prequential needs at least 1 fold")))?;
    // the model's tree parameters with this configuration's split, calibration and thresholds
    let params = FitParams {
        gbdt: artifact.manifest.params.clone(),
        ..config.train.clone()
    }
    .check()
    .context("the model's parameters")
    .usage()?;
    let folds = Folds {
        n_folds,
        fold_days: args.fold_days,
        train_days: args.train_days,
        gap_days: args.gap_days,
        k: args.k,
    };
    let provenance = Provenance {
        data_source: args.data.display().to_string(),
        created_at: fraudlens_pipeline::now(),
    };
    let bar = progress::bar(params.gbdt().get().n_trees as u64, "training");
    let fold_bar = bar.clone();
    let result = fit::prequential(
        artifact,
        table,
        &params,
        &folds,
        &provenance,
        &mut |fold| {
            fold_bar.suspend(|| {
                eprintln!(
                    "fold {}/{}: training on {} .. {}, testing {} .. {}",
                    fold.fold, n_folds, fold.train_from, fold.train_to, fold.test_from, fold.test_to
                );
            });
            fold_bar.reset();
        },
        &mut |round| {
            bar.set_position(round.round as u64);
            if let Some(loss) = round.valid_logloss {
                bar.set_message(format!("valid logloss {loss:.5}"));
            }
        },
    );
    bar.finish_and_clear();
    let result = result?;
    Ok(EvaluateReport {
        model_id: artifact.manifest.model_id.clone(),
        windows: result.windows,
        summary: Some(result.summary),
    })
}
