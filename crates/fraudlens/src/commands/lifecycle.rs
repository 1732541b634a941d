//! `fraudlens retrain` and `fraudlens models compare`: the model lifecycle on
//! the store. Retrain trains a candidate on the stored decisions and their
//! labels (`fraudlens_pipeline::retrain`), registers it, compares it with
//! production on the latest matured span it did not train on, records the
//! comparison, and promotes only when asked and the promotion rule says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use fraudlens_core::Timestamp;
use fraudlens_features::FeatureSpec;
use fraudlens_model::artifact::{Manifest, ModelKind};
use fraudlens_model::compare::{Metric, MetricComparison, Resampled, Verdict};
use fraudlens_model::fit::{self, EventTable, FitError, FitParams, Provenance};
use fraudlens_model::inputs::InputSpec;
use fraudlens_pipeline::registry;
use fraudlens_pipeline::retrain::{self, CompareReport, RetrainError, RowCounts, ShadowTraffic, Window};
use fraudlens_pipeline::{Reads, ServingModel, now};
use fraudlens_store::{NewComparison, Store};
use serde::Serialize;

use crate::cli::{CompareArgs, RetrainArgs, TakenFrom};
use crate::commands::admin::{block_on, close_store, load_model, open_store, redact_url, registry_failure, store_url};
use crate::commands::dataset::Window as Bounds;
use crate::commands::{progress, tracking};
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// What `retrain --json` prints.
#[derive(Serialize)]
struct RetrainOutput {
    candidate: String,
    path: PathBuf,
    production: String,
    train_window: Window,
    train_rows: RowCounts,
    comparison: Option<CompareReport>,
    not_compared: Option<String>,
    verdict: Option<Verdict>,
    promoted: bool,
}

/// `fraudlens retrain`
pub fn retrain(config: &Config, args: RetrainArgs) -> CliResult {
    let settings = config.retrain.compare_settings().map_err(anyhow::Error::msg).usage()?;
    if let Some(margin) = args.promote_if_better
        && !(margin.is_finite() && margin >= 0.0)
    {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--promote-if-better takes a margin of 0 or more, not {margin}"
        )));
    }
    let bounds = Bounds::parse(args.from.as_deref(), args.to.as_deref(), ("from", "to"))?;
    let url = store_url(config, &args.store);
    let tracking = tracking::client(config)?;
    let started_ms = fraudlens_pipeline::now_ms();
    block_on(async move {
        let store = open_store(config, &url).await?;
        let result = retrain_on(config, store.as_ref(), &url, &args, bounds, &settings).await;
        let tracked = match (&result, &tracking) {
            (Ok(output), Some(client)) => track_retrain(client, store.as_ref(), output, started_ms).await,
            _ => Ok(()),
        };
        close_store(store.as_ref()).await;
        let output = result?;
        if args.json {
            println!("{}", serde_json::to_string(&output).context("rendering JSON")?);
        } else {
            println!("{}", summary_line(&output, config.retrain.primary_metric));
        }
        // the summary is printed first: what was done stays said
        tracked
    })
}

/// Logs a retrain's run to MLflow and updates the aliases.
async fn track_retrain(
    client: &fraudlens_mlflow::Client,
    store: &dyn Store,
    output: &RetrainOutput,
    started_ms: i64,
) -> CliResult {
    let done = format!(
        "{} was trained, registered{}",
        output.candidate,
        if output.promoted { " and promoted" } else { "" }
    );
    let manifest = Manifest::peek(&output.path).ok_or_else(|| {
        Failure::Runtime(anyhow::anyhow!(
            "{done}, but its manifest cannot be read back for MLflow"
        ))
    })?;
    let comparison = output.comparison.as_ref().zip(output.verdict.as_ref());
    let run = tracking::retrain_run(&manifest, &output.path, comparison, output.promoted, started_ms);
    tracking::log(client, &run, &done).await?;
    tracking::sync_aliases(client, store, &done).await
}

async fn retrain_on(
    config: &Config,
    store: &dyn Store,
    url: &str,
    args: &RetrainArgs,
    bounds: Bounds,
    settings: &fraudlens_model::compare::CompareSettings,
) -> CliResult<RetrainOutput> {
    let key = config.security.card_hash_key.as_ref();
    let production = registry::production(store, key)
        .await
        .map_err(|error| registry_failure(error, "reading the production model"))?;
    let manifest = &production.artifact.manifest;
    if manifest.kind != ModelKind::Gbdt {
        return Err(Failure::Usage(anyhow::anyhow!(
            "the production model {} is a {} model: retrain trains gradient-boosted trees on labels, and \
             needs a production model of that kind to take its inputs from",
            production.version(),
            production.kind()
        )));
    }
    let matured = matured_before(config, store).await?;
    let end = bounds.to.min(matured.as_millis());
    let holdout_from = end - config.retrain.holdout.as_millis();
    let start = bounds.from.max(0);
    if holdout_from <= start {
        return Err(Failure::Data(anyhow::anyhow!(
            "the matured transactions from {} to {} span less than retrain.holdout ({}) plus something to train on; \
             labels mature {} after the newest stored event ({})",
            Timestamp::from_millis(start),
            Timestamp::from_millis(end),
            config.retrain.holdout,
            config.retrain.label_maturity,
            Timestamp::from_millis(matured.as_millis() + config.retrain.label_maturity.as_millis()),
        )));
    }
    let mut train_window =
        Window::new(Timestamp::from_millis(start), Timestamp::from_millis(holdout_from)).map_err(lifecycle_failure)?;
    let mut params = config.train.clone();
    if args.params == TakenFrom::Production {
        params = FitParams {
            gbdt: manifest.params.clone(),
            ..params
        };
    }
    let params = params.check().context("invalid training parameters").usage()?;
    let (inputs, table, counts) = match args.features {
        TakenFrom::Production => {
            let rows = retrain::rows_for(store, &production, train_window, matured)
                .await
                .map_err(lifecycle_failure)?;
            (manifest.inputs.clone(), rows.table, rows.counts)
        }
        TakenFrom::Config => {
            let Reads::Transactions(events) = &production.reads else {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "the production model reads feature rows: there are no transactions to replay through other \
                     features (retrain with --features production)"
                )));
            };
            let spec = FeatureSpec::new(config.features.clone(), &events.schema)
                .context("invalid feature spec")
                .usage()?;
            let spinner = progress::spinner("replaying the stored transactions");
            let replayed = retrain::replayed_candidate_rows(
                store,
                &events.schema,
                &Arc::new(spec),
                &params,
                train_window,
                matured,
            )
            .await;
            spinner.finish_and_clear();
            let (EventTable { inputs, table, .. }, counts) = replayed.map_err(lifecycle_failure)?;
            (inputs, table, counts)
        }
    };
    if args.from.is_none()
        && let Some((first, _)) = table.period()
    {
        // from the first stored row, not from the epoch
        train_window.from = first;
    }
    eprint!("{}", render_counts("training", train_window, &counts));
    let provenance = Provenance {
        data_source: format!(
            "store {} ({} .. {})",
            redact_url(url),
            train_window.from,
            train_window.to
        ),
        created_at: now(),
    };
    let bar = progress::bar(params.gbdt().get().n_trees as u64, "training");
    let fitted = fit::gbdt(
        &params,
        inputs,
        &table,
        manifest.anomaly_input,
        &provenance,
        &mut |round| bar.set_position(round.round as u64),
    );
    bar.finish_and_clear();
    let fitted = fitted.map_err(|error| match error {
        FitError::NoFraudInSplit { .. } => Failure::Data(anyhow::anyhow!(
            "{error}: the stored window {} .. {} holds {} fraud labels",
            train_window.from,
            train_window.to,
            counts.fraud
        )),
        error => error.into(),
    })?;
    let version = fitted.manifest.model_id.clone();
    let out = args.out.clone().unwrap_or_else(|| Path::new("models").join(&version));
    refuse_other_model(&out, &version)?;
    let lightgbm = fitted
        .forest
        .as_ref()
        .map(|forest| fraudlens_model::interop::export_lightgbm_text(forest, &fitted.manifest.feature_names));
    fitted
        .save(&out, lightgbm.as_deref())
        .with_context(|| format!("writing the model to {}", out.display()))?;
    eprintln!("candidate {version} written to {}", out.display());
    let candidate = load_model(config, &out)?;
    registry::register(store, &candidate)
        .await
        .map_err(|error| registry_failure(error, "registering the candidate"))?;

    let holdout = Window::new(train_window.to, Timestamp::from_millis(end)).map_err(lifecycle_failure)?;
    let compared = retrain::compare(store, &candidate, &production, holdout, matured, false, settings).await;
    let (comparison, not_compared) = match compared {
        Ok(report) => (Some(report), None),
        // no comparison (a class missing, a model trained on the holdout): never promoted
        Err(error @ (RetrainError::OneClass { .. } | RetrainError::Overlap { .. })) => (None, Some(error.to_string())),
        Err(error) => return Err(lifecycle_failure(error)),
    };
    let verdict = match &comparison {
        Some(report) => {
            eprint!("{}", render_comparison(report));
            let verdict = report.verdict(config.retrain.primary_metric, args.promote_if_better.unwrap_or(0.0));
            record(store, report, &verdict, "retrain").await?;
            Some(verdict)
        }
        None => {
            eprintln!(
                "not compared with production: {}",
                not_compared.as_deref().unwrap_or_default()
            );
            None
        }
    };
    let promoted = args.promote_if_better.is_some() && verdict.as_ref().is_some_and(|verdict| verdict.promote);
    if promoted {
        // the comparison was with the production model read at the start: refuse if it changed since
        let now_production = store
            .models()
            .await
            .context("reading the registry")?
            .into_iter()
            .find(|model| model.stage == fraudlens_store::ModelStage::Production);
        if now_production.as_ref().map(|model| model.version.as_str()) != Some(production.version()) {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "the production model changed from {} to {} while retraining: {version} is registered but not \
                 promoted (compare it with `fraudlens models compare {version}`)",
                production.version(),
                now_production.map_or_else(|| "(none)".to_owned(), |model| model.version)
            )));
        }
        registry::promote(store, &version, key, "retrain")
            .await
            .map_err(|error| registry_failure(error, "promoting the candidate"))?;
        let spec = |inputs: &InputSpec| match inputs {
            InputSpec::Events { features, .. } => Some(features.clone()),
            InputSpec::Tabular { .. } => None,
        };
        if spec(&candidate.artifact.manifest.inputs) == spec(&manifest.inputs) {
            eprintln!("promoted {version} to production (running servers and detectors pick it up within a second)");
        } else {
            eprintln!(
                "promoted {version} to production; it computes other features than {}, so running servers and \
                 detectors keep serving {} until they restart (a live swap keeps the feature spec)",
                production.version(),
                production.version()
            );
        }
    } else if args.promote_if_better.is_some() {
        eprintln!("not promoted: {} stays in production", production.version());
    }
    Ok(RetrainOutput {
        candidate: version,
        path: std::path::absolute(&out).unwrap_or(out),
        production: production.version().to_owned(),
        train_window,
        train_rows: counts,
        comparison,
        not_compared,
        verdict,
        promoted,
    })
}

/// The label maturity's cutoff on this store.
async fn matured_before(config: &Config, store: &dyn Store) -> CliResult<Timestamp> {
    let maturity = config.retrain.label_maturity.as_millis();
    retrain::maturity_cutoff(
        store,
        maturity,
        &config.event_time.policy(),
        fraudlens_pipeline::now_ms(),
    )
    .await
    .map_err(lifecycle_failure)
}

/// Refuses to write over a directory that holds another model.
fn refuse_other_model(out: &Path, version: &str) -> CliResult {
    if !out.join("model.json").exists() {
        return Ok(());
    }
    match Manifest::peek(out).map(|manifest| manifest.model_id) {
        Some(found) if found == version => Ok(()),
        found => Err(Failure::Usage(anyhow::anyhow!(
            "{} holds model {}: choose another --out",
            out.display(),
            found.as_deref().unwrap_or("(unreadable)")
        ))),
    }
}

/// `fraudlens models compare` (on the runtime of `fraudlens models`).
pub async fn compare(config: &Config, args: CompareArgs) -> CliResult {
    let settings = config.retrain.compare_settings().map_err(anyhow::Error::msg).usage()?;
    let bounds = Bounds::parse(args.from.as_deref(), args.to.as_deref(), ("from", "to"))?;
    let tracking = tracking::client(config)?;
    let started_ms = fraudlens_pipeline::now_ms();
    let store = open_store(config, &store_url(config, &args.store)).await?;
    let result = compare_on(config, store.as_ref(), &args, bounds, &settings).await;
    let tracked = match (&result, &tracking) {
        (Ok((report, verdict)), Some(client)) => {
            let done = format!(
                "the comparison of {} with {} was recorded",
                report.candidate, report.against
            );
            let run = tracking::comparison_run(report, verdict, started_ms);
            match tracking::log(client, &run, &done).await {
                Ok(_) => tracking::sync_aliases(client, store.as_ref(), &done).await,
                Err(error) => Err(error),
            }
        }
        _ => Ok(()),
    };
    close_store(store.as_ref()).await;
    let (report, verdict) = result?;
    if args.json {
        let output = serde_json::json!({ "comparison": report, "verdict": verdict });
        println!("{output}");
    } else {
        print!("{}", render_comparison(&report));
        println!("{}", render_verdict(&verdict));
    }
    tracked
}

async fn compare_on(
    config: &Config,
    store: &dyn Store,
    args: &CompareArgs,
    bounds: Bounds,
    settings: &fraudlens_model::compare::CompareSettings,
) -> CliResult<(CompareReport, Verdict)> {
    let key = config.security.card_hash_key.as_ref();
    let load = |version: String| async move {
        let loaded: Result<ServingModel, _> = if version == "production" {
            registry::production(store, key).await
        } else {
            match registry::entry(store, &version).await {
                Ok(entry) => registry::load(&entry, key).await,
                Err(error) => Err(error),
            }
        };
        loaded.map_err(|error| registry_failure(error, "loading a model"))
    };
    let candidate = load(args.candidate.clone()).await?;
    let against = load(args.against.clone()).await?;
    if candidate.version() == against.version() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{} is the model it would be compared with: name another with --against",
            candidate.version()
        )));
    }
    let matured = matured_before(config, store).await?;
    let from = if args.from.is_some() {
        bounds.from
    } else {
        // just after the later of the two training windows
        let mut after = 0;
        for model in [&candidate, &against] {
            match model.artifact.seen_until() {
                Some(until) => after = after.max(until.as_millis() + 1),
                None if !args.allow_overlap => {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "{} does not say what it trained on (an imported model): name the first day it did not \
                         see with --from",
                        model.version()
                    )));
                }
                None => {}
            }
        }
        after
    };
    let window = Window::new(
        Timestamp::from_millis(from),
        Timestamp::from_millis(bounds.to.min(matured.as_millis())),
    )
    .map_err(lifecycle_failure)?;
    let report = retrain::compare(
        store,
        &candidate,
        &against,
        window,
        matured,
        args.allow_overlap,
        settings,
    )
    .await
    .map_err(lifecycle_failure)?;
    let verdict = report.verdict(config.retrain.primary_metric, 0.0);
    record(store, &report, &verdict, "cli").await?;
    Ok((report, verdict))
}

/// Stores a comparison with its verdict.
async fn record(store: &dyn Store, report: &CompareReport, verdict: &Verdict, actor: &str) -> CliResult {
    let text = serde_json::json!({ "comparison": report, "verdict": verdict }).to_string();
    store
        .put_comparison(&NewComparison {
            candidate: report.candidate.clone(),
            against: report.against.clone(),
            at: now(),
            actor: actor.to_owned(),
            report: text,
        })
        .await
        .context("recording the comparison")?;
    Ok(())
}

/// The exit class of a lifecycle failure.
fn lifecycle_failure(error: RetrainError) -> Failure {
    match error {
        RetrainError::Store(error) => Failure::Runtime(anyhow::Error::from(error).context("reading the store")),
        RetrainError::Scoring { .. } => Failure::Runtime(error.into()),
        RetrainError::Unreadable { .. } => Failure::Data(error.into()),
        RetrainError::DifferentInputs { .. } | RetrainError::Overlap { .. } | RetrainError::EmptyWindow { .. } => {
            Failure::Usage(error.into())
        }
        RetrainError::Empty | RetrainError::OneClass { .. } => Failure::Data(error.into()),
    }
}

/// How the stored decisions of a window became rows.
pub fn render_counts(what: &str, window: Window, counts: &RowCounts) -> String {
    let mut out = format!(
        "{what} rows from the store, {} .. {}: {} transactions; {} kept ({} labelled fraud, {} labelled legitimate, \
         {} unlabelled and matured, counted legitimate); {} too recent for their labels to be complete\n",
        window.from,
        window.to,
        counts.in_window,
        counts.rows(),
        counts.fraud,
        counts.legit,
        counts.matured,
        counts.immature
    );
    if counts.replayed {
        out.push_str("  features computed by replaying the stored transactions (not the vectors stored with them)\n");
    }
    for (version, n) in &counts.other_inputs {
        out.push_str(&format!(
            "  {n} decided by {version}, which reads other inputs (or is no longer registered): left out\n"
        ));
    }
    out
}

/// The comparison as a table.
pub fn render_comparison(report: &CompareReport) -> String {
    let comparison = &report.comparison;
    let mut out = format!(
        "compared {} (candidate) with {} on {} .. {}: {} transactions, {} fraud{}; intervals: {} resamples of \
         {}s, {:.0} %\n",
        report.candidate,
        report.against,
        report.window.from,
        report.window.to,
        comparison.rows,
        comparison.frauds,
        comparison
            .days
            .map(|days| format!(", {days} day{}", if days == 1 { "" } else { "s" }))
            .unwrap_or_default(),
        comparison.resamples,
        match comparison.resampled {
            Resampled::Day => "day",
            Resampled::Row => "row",
        },
        comparison.confidence * 100.0
    );
    out.push_str(&format!(
        "  {:<22} {:>11} {:>11} {:>11}   interval of the difference\n",
        "metric", "candidate", "against", "difference"
    ));
    for metric in &comparison.metrics {
        let name = match metric.metric {
            Metric::CardPrecisionAtK => format!("card_precision_at_{}", comparison.k),
            Metric::ExpectedCost if comparison.days.is_some() => "expected_cost_per_day".to_owned(),
            Metric::ExpectedCost => "expected_cost_per_1000".to_owned(),
            other => other.name().to_owned(),
        };
        out.push_str(&format!(
            "  {name:<22} {:>11.4} {:>11.4} {:>+11.4}   {}{}\n",
            metric.candidate,
            metric.against,
            metric.difference,
            metric.interval(),
            if metric.significantly_better() {
                "  better"
            } else if metric.significantly_worse() {
                "  worse"
            } else {
                ""
            }
        ));
    }
    if let Some(traffic) = &report.shadow {
        out.push_str(&render_shadow(&report.candidate, traffic));
    }
    out
}

/// The candidate as a shadow model on the live decisions of the window.
fn render_shadow(candidate: &str, traffic: &ShadowTraffic) -> String {
    let ratio = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |value| format!("{value:.4}"));
    let mut out = format!(
        "as shadow: {candidate} scored {} of the {} live decisions of {} here{}; same decision on {:.1} %; \
         flagged: served {}, shadow {}, both {} (overlap {})\n",
        traffic.scored,
        traffic.decisions,
        traffic.served_by,
        if traffic.other_served > 0 {
            format!(" ({} decisions of other models left out)", traffic.other_served)
        } else {
            String::new()
        },
        traffic.agreement * 100.0,
        traffic.flagged_served,
        traffic.flagged_shadow,
        traffic.flagged_both,
        traffic
            .flagged_overlap
            .map_or_else(|| "-".to_owned(), |overlap| format!("{:.1} %", overlap * 100.0)),
    );
    out.push_str(&format!(
        "  on the {} of them with matured labels ({} fraud):\n  {:<22} {:>11} {:>11}\n",
        traffic.counts.rows(),
        traffic.counts.fraud,
        "metric",
        "served",
        "shadow"
    ));
    let rows: [(&str, Option<f64>, Option<f64>); 4] = [
        (
            "average_precision",
            traffic.served.average_precision,
            traffic.shadow.average_precision,
        ),
        ("roc_auc", traffic.served.roc_auc, traffic.shadow.roc_auc),
        ("recall_flagged", traffic.served.recall, traffic.shadow.recall),
        ("precision_flagged", traffic.served.precision, traffic.shadow.precision),
    ];
    for (name, served, shadow) in rows {
        out.push_str(&format!("  {name:<22} {:>11} {:>11}\n", ratio(served), ratio(shadow)));
    }
    out
}

/// The verdict in words.
fn render_verdict(verdict: &Verdict) -> String {
    format!(
        "verdict: {} ({})",
        if verdict.promote {
            "the candidate is better"
        } else {
            "the candidate is not better"
        },
        verdict.reasons.join("; ")
    )
}

/// A recorded comparison in a few words (`models list`): the primary
/// metric's difference and interval, and the verdict.
pub fn comparison_brief(entry: &fraudlens_store::ComparisonEntry, primary: Metric) -> String {
    let report: serde_json::Value = serde_json::from_str(&entry.comparison.report).unwrap_or_default();
    let metric = report["comparison"]["comparison"]["metrics"]
        .as_array()
        .and_then(|metrics| metrics.iter().find(|metric| metric["metric"] == primary.name()));
    let verdict = match (
        report["verdict"]["promote"] == true,
        report["comparison"]["overlap"] == true,
    ) {
        (_, true) => "not better (on days a model trained on)",
        (true, false) => "better",
        (false, false) => "not better",
    };
    let metric = metric.and_then(|metric| serde_json::from_value::<MetricComparison>(metric.clone()).ok());
    match metric {
        Some(metric) => format!(
            "vs {}: {} {:+.4} {}, {verdict}",
            entry.comparison.against,
            primary.name(),
            metric.difference,
            metric.interval()
        ),
        None => format!("vs {}: {verdict}", entry.comparison.against),
    }
}

/// `retrain`'s one line (stdout), for cron mail and logs.
fn summary_line(output: &RetrainOutput, primary: Metric) -> String {
    let rows = &output.train_rows;
    let compared = match (&output.comparison, &output.not_compared) {
        (Some(report), _) => match report.comparison.metric(primary) {
            Some(metric) => format!(
                "{} {:+.4} {} against {}",
                primary.name(),
                metric.difference,
                metric.interval(),
                output.production
            ),
            None => format!("{} not computed", primary.name()),
        },
        (None, Some(why)) => format!("not compared ({why})"),
        (None, None) => "not compared".to_owned(),
    };
    format!(
        "retrained {} on {} rows ({} fraud) {} .. {}; {compared}; {}",
        output.candidate,
        rows.rows(),
        rows.fraud,
        output.train_window.from,
        output.train_window.to,
        if output.promoted { "promoted" } else { "not promoted" }
    )
}
