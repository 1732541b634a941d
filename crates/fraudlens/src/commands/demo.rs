//! `fraudlens demo`: the quick start. Simulates a dataset, replays it through
//! the feature engine and shows how the fraud scenarios separate on a few of
//! the default features, then trains a model on the first two thirds of the
//! days, evaluates it on later days (after a gap for the label delay), and
//! batch-scores the last week.

use std::sync::Arc;

use anyhow::Context as _;
use fraudlens_core::Schema;
use fraudlens_features::FeatureSpec;
use fraudlens_sim::SimConfig;

use crate::cli::{DemoArgs, EvaluateArgs, InputArgs, Mode, ScoreArgs, SimFormat, TrainArgs, WindowArgs};
use crate::commands::dataset::format_time;
use crate::commands::features::{EventJob, featurize_events};
use crate::commands::simulate::simulate_to;
use crate::config::Config;
use crate::exit::{Classify, CliResult};

/// Features shown in the per-scenario table.
const SHOWN: [&str; 12] = [
    "amount",
    "is_night",
    "customer_count_1d",
    "customer_amount_ratio_7d",
    "customer_max_1d",
    "customer_secs_since_prev",
    "customer_distinct_terminal_1d",
    "customer_risk_30d",
    "terminal_count_1d",
    "terminal_amount_ratio_30d",
    "terminal_risk_7d",
    "terminal_risk_30d",
];

/// Runs `fraudlens demo`.
pub fn run(config: Config, args: DemoArgs) -> CliResult {
    let start =
        fraudlens_core::Timestamp::parse(&config.simulate.start_date, fraudlens_core::TimestampFormat::Datetime)
            .context("simulate.start_date")
            .usage()?
            .as_millis();
    let day = |n: u32| format_time(start + i64::from(n) * 86_400_000);
    let train_days = args.days * 2 / 3;
    // the gap lets the labels of the training days arrive, as they would in production
    let test_from = train_days + 7;
    let sim = SimConfig {
        customers: args.customers,
        terminals: args.terminals,
        days: args.days,
        ..config.simulate.clone()
    };
    let transactions = args.dir.join("transactions.csv");
    eprintln!(
        "1/5 simulating {} customers x {} days into {}",
        sim.customers,
        sim.days,
        transactions.display()
    );
    let stats = simulate_to(sim, &transactions, SimFormat::Csv)?;
    eprintln!("{}", stats.report(&transactions));

    // the demo reads the simulator's own format, so it uses the built-in schema and spec
    let schema = Schema::new(fraudlens_core::SchemaConfig::default(), None)
        .context("built-in schema")
        .usage()?;
    let spec = Arc::new(
        FeatureSpec::new(Default::default(), &schema)
            .context("built-in feature spec")
            .usage()?,
    );
    let features = args.dir.join("features.csv");
    let snapshot = args.dir.join("engine.snapshot");
    eprintln!(
        "2/5 replaying them through the feature engine into {}",
        features.display()
    );
    let job = EventJob {
        data: transactions.clone(),
        out: features,
        strict: true,
        max_examples: config.ingest.max_error_examples,
        sort: false,
        snapshot_out: Some(snapshot),
        summary_by: Some("fraud_scenario".into()),
        summary_features: SHOWN.iter().map(|name| (*name).to_owned()).collect(),
    };
    let report = featurize_events(&schema, spec, &job)?;
    eprint!("{}", report.text);
    if let Some(summary) = report.summary {
        print!("{summary}");
    }
    println!(
        "\nEach fraud scenario stands apart from `none` on some feature: stolen cards on amount, amount ratio and night \
         time; takeovers on amount ratio; card testing on daily counts and seconds since the previous transaction; \
         compromised terminals on the terminal's label-delayed risk.\n"
    );
    if train_days < 14 || args.days < test_from + 7 {
        println!("(train, evaluate and score need at least 30 simulated days: skipped)");
        return Ok(());
    }

    let model = args.dir.join("model");
    eprintln!("3/5 training on days 1-{train_days} into {}", model.display());
    let path = |p: &std::path::Path| p.display().to_string();
    super::train::run(
        config.clone(),
        TrainArgs {
            input: input_args(&transactions),
            schema: Default::default(),
            out: model.clone(),
            train_from: None,
            train_to: Some(day(train_days)),
            params: Default::default(),
            anomaly: false,
            unsupervised: false,
        },
    )?;
    eprintln!(
        "4/5 evaluating on days {}-{} (after a 7-day gap for the label delay)",
        test_from + 1,
        args.days
    );
    super::evaluate::run(
        &config,
        EvaluateArgs {
            model: model.clone(),
            data: transactions.clone(),
            window: WindowArgs {
                test_from: Some(day(test_from)),
                test_to: None,
            },
            prequential: None,
            fold_days: 7,
            train_days: 21,
            gap_days: None,
            k: config.train.k,
            json: Some(args.dir.join("evaluation.json")),
            strict: false,
        },
    )?;
    let predictions = args.dir.join("predictions.csv");
    let stats = args.dir.join("score_stats.json");
    eprintln!("5/5 batch-scoring the last 7 days into {}", predictions.display());
    super::score::run(
        &config,
        ScoreArgs {
            model: model.clone(),
            input: transactions,
            output: predictions.clone(),
            from: Some(day(args.days - 7)),
            to: None,
            stats: Some(stats.clone()),
            reasons: 3,
            strict: false,
        },
    )?;
    println!(
        "\nModel: {}  Predictions: {}  Run statistics: {}\nNext: `fraudlens evaluate --model {} --data {} --prequential 3`",
        path(&model),
        path(&predictions),
        path(&stats),
        path(&model),
        path(&args.dir.join("transactions.csv"))
    );
    Ok(())
}

fn input_args(data: &std::path::Path) -> InputArgs {
    InputArgs {
        data: data.to_owned(),
        mode: Mode::Event,
        strict: false,
        max_error_examples: None,
        exclude: Vec::new(),
    }
}
