//! `fraudlens evaluate`: how a model does on a time window, the way fraud
//! teams measure it — AUC, average precision, confusion at the review
//! threshold, precision@k and card precision@k per day, Brier score,
//! reliability — or prequentially: the model's parameters retrained on
//! several successive windows, each tested on the days after a gap for the
//! label delay, reported as mean ± std.

use std::fmt::Write as _;

use anyhow::Context as _;
use fraudlens_core::{Timestamp, TimestampFormat};
use fraudlens_model::artifact::{Artifact, ModelKind, Score};
use fraudlens_model::inputs::InputSpec;
use fraudlens_model::metrics::{EvalInput, Evaluation, MeanStd, mean_std};
use serde::Serialize;

use crate::cli::EvaluateArgs;
use crate::commands::dataset::{ReadOptions, Window, format_time, is_fraud, primary_entity, replay_file};
use crate::commands::output::write_atomically;
use crate::commands::progress;
use crate::commands::score::load_model;
use crate::commands::train::{Table, fit, fit_unsupervised};
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

const DAY_MS: i64 = 86_400_000;

/// One evaluated window.
#[derive(Debug, Serialize)]
pub struct WindowResult {
    /// Training window (prequential folds only).
    pub train: Option<(String, String)>,
    /// Tested window (first and last transaction).
    pub test: (String, String),
    /// The metrics.
    pub metrics: Evaluation,
}

/// What `--json` holds.
#[derive(Debug, Serialize)]
pub struct EvaluateReport {
    /// The model evaluated (its parameters, for prequential folds).
    pub model_id: String,
    /// Each window.
    pub windows: Vec<WindowResult>,
    /// Mean ± std over prequential folds.
    pub summary: Option<FoldSummary>,
}

/// Mean ± std of the main metrics over folds.
#[derive(Debug, Serialize)]
pub struct FoldSummary {
    /// ROC AUC.
    pub roc_auc: MeanStd,
    /// Average precision.
    pub average_precision: MeanStd,
    /// Card precision@k per day.
    pub card_precision_at_k: MeanStd,
    /// Precision@k per day.
    pub precision_at_k: MeanStd,
    /// Brier score.
    pub brier: MeanStd,
}

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
            let seen_until = seen_until(&artifact);
            match (args.window.test_from.is_some(), seen_until) {
                (false, Some(last)) => {
                    window.from = last + 1;
                    eprintln!(
                        "testing on the transactions after the model's training data (after {})",
                        format_time(last)
                    );
                }
                (true, Some(last)) if window.from <= last => eprintln!(
                    "warning: the test window starts before the end of the model's training data ({}): these metrics are partly in-sample",
                    format_time(last)
                ),
                _ => {}
            }
            let rows = rows_in(&table, window);
            if rows.is_empty() {
                return Err(Failure::Data(anyhow::anyhow!(
                    "no labelled transactions in the test window"
                )));
            }
            let test = table.slice(rows);
            let probabilities = ranking_scores(&artifact, &test)?;
            let metrics = evaluate(&test, &probabilities, artifact.manifest.thresholds.review(), args.k);
            EvaluateReport {
                model_id: artifact.manifest.model_id.clone(),
                windows: vec![WindowResult {
                    train: None,
                    test: period(&test),
                    metrics,
                }],
                summary: None,
            }
        }
        Some(n_folds) => prequential(config, &artifact, &table, &args, n_folds)?,
    };
    print!("{}", render_report(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("serialising the report")?;
        write_atomically(path, &json)?;
    }
    Ok(())
}

/// Every labelled row of the file as model inputs, with times, entities and amounts.
fn load_table(config: &Config, artifact: &Artifact, args: &EvaluateArgs) -> CliResult<Table> {
    let inputs = artifact
        .manifest
        .inputs
        .prepare_events(config.security.card_hash_key.as_ref())
        .context("preparing the model's inputs")
        .data()?;
    let mut table = Table {
        n_features: artifact.n_inputs(),
        ..Table::default()
    };
    let bar = progress::spinner("replaying transactions");
    let strict = args.strict || config.ingest.strict;
    let summary = replay_file(
        &inputs.schema,
        inputs.spec.clone(),
        &args.data,
        ReadOptions {
            strict,
            max_examples: config.ingest.max_error_examples,
            sort: false,
            time_policy: config.event_time.policy(),
        },
        |tx, _, features| {
            bar.inc(1);
            if let Some(label) = is_fraud(tx.label) {
                table.values.extend_from_slice(features);
                inputs.push_attributes(tx, &mut table.values);
                table.labels.push(label);
                table.times.push(tx.timestamp.as_millis());
                table.entities.push(primary_entity(tx));
                table.amounts.push(tx.amount.major());
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    eprint!("{}", summary.report());
    // windows are cut by binary search on time
    table.sort_by_time();
    Ok(table)
}

/// Time of the last transaction the model was trained or validated on.
fn seen_until(artifact: &Artifact) -> Option<i64> {
    let training = &artifact.manifest.training;
    let last = training.valid_period.as_ref().or(training.train_period.as_ref())?;
    Timestamp::parse(&last.1, TimestampFormat::Datetime)
        .ok()
        .map(Timestamp::as_millis)
}

/// What ranks the rows: calibrated probabilities, or anomaly scores for an unsupervised model.
fn ranking_scores(artifact: &Artifact, rows: &Table) -> CliResult<Vec<f64>> {
    let scores = artifact.score_batch(&rows.values).context("scoring")?;
    Ok(scores.iter().map(Score::ranking).collect())
}

/// Indices of the rows inside `window` (rows are in time order).
fn rows_in(table: &Table, window: Window) -> std::ops::Range<usize> {
    let start = table.times.partition_point(|&time| time < window.from);
    let end = table.times.partition_point(|&time| time < window.to);
    start..end.max(start)
}

fn evaluate(test: &Table, probabilities: &[f64], threshold: f64, k: usize) -> Evaluation {
    let days: Vec<i64> = test.times.iter().map(|time| time.div_euclid(DAY_MS)).collect();
    Evaluation::compute(&EvalInput {
        probabilities,
        labels: &test.labels,
        days: Some(&days),
        entities: Some(&test.entities),
        threshold,
        k,
        reliability_bins: 10,
    })
}

fn period(table: &Table) -> (String, String) {
    (
        table.times.first().map(|t| format_time(*t)).unwrap_or_default(),
        table.times.last().map(|t| format_time(*t)).unwrap_or_default(),
    )
}

/// Folds back from the last full day: fold `f` tests
/// `[end - (f+1)·fold, end - f·fold)` and trains on `train_days` ending `gap_days` before its test.
fn prequential(
    config: &Config,
    artifact: &Artifact,
    table: &Table,
    args: &EvaluateArgs,
    n_folds: usize,
) -> CliResult<EvaluateReport> {
    let Some(&last) = table.times.last() else {
        return Err(Failure::Data(anyhow::anyhow!("no labelled transactions")));
    };
    if n_folds == 0 {
        return Err(Failure::Usage(anyhow::anyhow!("--prequential needs at least 1 fold")));
    }
    let label_delay_days = match &artifact.manifest.inputs {
        InputSpec::Events { features, .. } => (features.label_delay.as_millis() + DAY_MS - 1) / DAY_MS,
        InputSpec::Tabular { .. } => 0,
    };
    let gap = i64::from(args.gap_days.unwrap_or(label_delay_days as u32)) * DAY_MS;
    let fold = i64::from(args.fold_days) * DAY_MS;
    let train_span = i64::from(args.train_days) * DAY_MS;
    let end = (last.div_euclid(DAY_MS) + 1) * DAY_MS;
    let params = artifact
        .manifest
        .params
        .clone()
        .check()
        .context("the model's parameters")
        .usage()?;
    let mut windows = Vec::new();
    for f in 0..n_folds as i64 {
        let test_window = Window {
            from: end - (f + 1) * fold,
            to: end - f * fold,
        };
        let train_window = Window {
            from: test_window.from - gap - train_span,
            to: test_window.from - gap,
        };
        let (train_rows, test_rows) = (rows_in(table, train_window), rows_in(table, test_window));
        if train_rows.is_empty()
            || test_rows.is_empty()
            || table.times.first().is_none_or(|&first| first > train_window.from)
        {
            return Err(Failure::Data(anyhow::anyhow!(
                "fold {}: the data does not cover training {} .. {} and test {} .. {}; use fewer folds or shorter windows",
                f + 1,
                format_time(train_window.from),
                format_time(train_window.to),
                format_time(test_window.from),
                format_time(test_window.to)
            )));
        }
        eprintln!(
            "fold {}/{}: training on {} .. {}, testing {} .. {}",
            f + 1,
            n_folds,
            format_time(train_window.from),
            format_time(train_window.to),
            format_time(test_window.from),
            format_time(test_window.to)
        );
        let train_table = table.slice(train_rows);
        let source = args.data.display().to_string();
        let inputs = artifact.manifest.inputs.clone();
        let model = match artifact.manifest.kind {
            ModelKind::Gbdt => fit(
                &config.train,
                &params,
                inputs,
                &train_table,
                &source,
                artifact.manifest.anomaly_input,
            )?,
            ModelKind::IsolationForest => fit_unsupervised(&config.train, inputs, &train_table, &source)?,
        };
        let test = table.slice(test_rows);
        let probabilities = ranking_scores(&model, &test)?;
        windows.push(WindowResult {
            train: Some(period(&train_table)),
            test: period(&test),
            metrics: evaluate(&test, &probabilities, model.manifest.thresholds.review(), args.k),
        });
    }
    let collect = |metric: &dyn Fn(&Evaluation) -> Option<f64>| {
        mean_std(&windows.iter().filter_map(|w| metric(&w.metrics)).collect::<Vec<_>>())
    };
    let summary = FoldSummary {
        roc_auc: collect(&|m| m.roc_auc),
        average_precision: collect(&|m| m.average_precision),
        card_precision_at_k: collect(&|m| m.card_precision_at_k.as_ref().map(|p| p.mean)),
        precision_at_k: collect(&|m| m.precision_at_k.as_ref().map(|p| p.mean)),
        brier: collect(&|m| Some(m.brier)),
    };
    Ok(EvaluateReport {
        model_id: artifact.manifest.model_id.clone(),
        windows,
        summary: Some(summary),
    })
}

fn render_report(report: &EvaluateReport) -> String {
    let mut out = String::new();
    for (idx, window) in report.windows.iter().enumerate() {
        let title = if report.summary.is_some() {
            format!("fold {}", idx + 1)
        } else {
            "test".to_owned()
        };
        let _ = writeln!(out, "{title}: transactions {} .. {}", window.test.0, window.test.1);
        if let Some((from, to)) = &window.train {
            let _ = writeln!(out, "  trained on {from} .. {to}");
        }
        out.push_str(&render_evaluation(&title, &window.metrics));
    }
    if let Some(summary) = &report.summary {
        let _ = writeln!(out, "prequential, {} folds (mean ± std):", report.windows.len());
        for (name, value) in [
            ("ROC AUC", &summary.roc_auc),
            ("average precision", &summary.average_precision),
            ("card precision@k", &summary.card_precision_at_k),
            ("precision@k", &summary.precision_at_k),
            ("Brier score", &summary.brier),
        ] {
            let _ = writeln!(out, "  {name:<20} {:.4} ± {:.4}", value.mean, value.std);
        }
    }
    out
}

/// The metrics of one window as a readable table.
pub fn render_evaluation(title: &str, metrics: &Evaluation) -> String {
    let mut out = String::new();
    let number = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let _ = writeln!(
        out,
        "  {title}: {} transactions, {} fraud ({:.3}%)",
        metrics.n,
        metrics.n_fraud,
        metrics.fraud_rate * 100.0
    );
    let _ = writeln!(
        out,
        "    ROC AUC {}   average precision {}   Brier {:.5}",
        number(metrics.roc_auc),
        number(metrics.average_precision),
        metrics.brier
    );
    let c = &metrics.confusion;
    let _ = writeln!(
        out,
        "    at threshold {:.4}: precision {:.3}  recall {:.3}  F1 {:.3}   (TP {}  FP {}  FN {}  TN {})",
        metrics.threshold, metrics.precision, metrics.recall, metrics.f1, c.tp, c.fp, c.fn_, c.tn
    );
    if let (Some(p), Some(cp)) = (&metrics.precision_at_k, &metrics.card_precision_at_k) {
        let _ = writeln!(
            out,
            "    per day, k={}: precision@k {:.4}   card precision@k {:.4}   ({} days)",
            p.k,
            p.mean,
            cp.mean,
            p.per_day.len()
        );
    }
    let bins: Vec<String> = metrics
        .reliability
        .iter()
        .map(|bin| {
            format!(
                "{:.1}-{:.1}: {:.3}/{:.3} (n={})",
                bin.lower, bin.upper, bin.mean_predicted, bin.observed_rate, bin.n
            )
        })
        .collect();
    let _ = writeln!(out, "    reliability (predicted/observed): {}", bins.join("  "));
    out
}
