//! `fraudlens demo`: the quick start. Simulates a dataset, replays it through
//! the feature engine and shows how the fraud scenarios separate on a few of
//! the default features, then trains a model on the first two thirds of the
//! days, evaluates it on later days (after a gap for the label delay), and
//! batch-scores the last week.

use std::sync::Arc;

use anyhow::Context as _;
use fraudlens_core::{Schema, Timestamp, TimestampFormat};
use fraudlens_features::FeatureSpec;
use fraudlens_sim::SimConfig;

use crate::cli::{
    DemoArgs, EvaluateArgs, InputArgs, Mode, ScoreArgs, ServeArgs, SimFormat, StoreArg, TrainArgs, WindowArgs,
};
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
    let start = Timestamp::parse(&config.simulate.start_date, TimestampFormat::Datetime)
        .context("simulate.start_date")
        .usage()?;
    let after_days = |n: u32| Timestamp::from_millis(start.as_millis() + i64::from(n) * 86_400_000);
    let day = |n: u32| after_days(n).to_string();
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
        "1/6 simulating {} customers x {} days into {}",
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
        "2/6 replaying them through the feature engine into {}",
        features.display()
    );
    let job = EventJob {
        data: transactions.clone(),
        out: features,
        strict: true,
        max_examples: config.ingest.max_error_examples,
        sort: false,
        time_policy: config.event_time.policy(),
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
    eprintln!("3/6 training on days 1-{train_days} into {}", model.display());
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
            report: None,
            tune: false,
            budget: fraudlens_core::WindowDuration::days(1),
            trials: 1,
        },
    )?;
    eprintln!(
        "4/6 evaluating on days {}-{} (after a 7-day gap for the label delay)",
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
            report: Some(args.dir.join("evaluation.html")),
            strict: false,
        },
    )?;
    let predictions = args.dir.join("predictions.csv");
    let stats = args.dir.join("score_stats.json");
    eprintln!("5/6 batch-scoring the last 7 days into {}", predictions.display());
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
        "\nModel: {}  Predictions: {}  Run statistics: {}\nAlso try: `fraudlens evaluate --model {} --data {} --prequential 3`",
        path(&model),
        path(&predictions),
        path(&stats),
        path(&model),
        path(&args.dir.join("transactions.csv"))
    );
    if args.no_serve {
        return Ok(());
    }
    serve_demo(config, &args, model, after_days(args.days))
}

/// Step 6: serves the model on a SQLite store in the demo directory, with the
/// entity state of the whole simulated history, and prints a curl session.
fn serve_demo(mut config: Config, args: &DemoArgs, model: std::path::PathBuf, end: Timestamp) -> CliResult {
    let state_file = args.dir.join("entity-state.bin");
    if !state_file.exists() {
        // the replay of step 2 saw every simulated transaction: start from its state
        std::fs::copy(args.dir.join("engine.snapshot"), &state_file).context("seeding the entity state")?;
    }
    config.serve.state_file = state_file;
    let database = format!("sqlite://{}", args.dir.join("fraudlens.db").display());
    eprintln!("6/6 serving the model (store {database}); stop with Ctrl-C");
    let serve_args = ServeArgs {
        model: Some(model),
        listen: args.listen.clone(),
        store: StoreArg {
            database: Some(database),
        },
    };
    let when = Timestamp::from_millis(end.as_millis() + 9 * 3_600_000);
    super::admin::block_on(super::serve::serve(&config, serve_args, async |address, store| {
        let (key, entry) = match fraudlens_server::new_key("demo", fraudlens_store::Role::Admin, super::admin::now()) {
            Ok(key) => key,
            Err(error) => return eprintln!("no demo key: {error}"),
        };
        if let Err(error) = store.create_key(&entry).await {
            return eprintln!("no demo key: {error}");
        }
        let base = format!("http://{address}");
        println!(
            "\nAn admin key for this demo (stored hashed; create others with `fraudlens keys create --role service|analyst|admin`):\n\
             \n  export FRAUDLENS_KEY={key}\n\
             \nScore a transaction (a customer of the simulation, an unusual amount):\n\
             \n  curl -s -X POST {base}/api/v1/transactions -H \"X-API-Key: $FRAUDLENS_KEY\" -H 'content-type: application/json' \\\n    \
             -d '{{\"transaction_id\":\"demo-1\",\"timestamp\":\"{when}\",\"customer_id\":\"cust_000188\",\"terminal_id\":\"term_002676\",\"amount\":\"1890.00\",\"currency\":\"EUR\",\"mcc\":\"5411\",\"channel\":\"online\",\"country\":\"SE\"}}'\n\
             \nThe review queue, worst first:\n\
             \n  curl -s '{base}/api/v1/anomalies?limit=5' -H \"X-API-Key: $FRAUDLENS_KEY\"\n\
             \nReview it, then see the audit entry in its history:\n\
             \n  curl -s -X PUT {base}/api/v1/anomalies/demo-1 -H \"X-API-Key: $FRAUDLENS_KEY\" -H 'content-type: application/json' \\\n    \
             -d '{{\"status\":\"confirmed_fraud\",\"note\":\"customer confirmed\"}}'\n  \
             curl -s {base}/api/v1/transactions/demo-1 -H \"X-API-Key: $FRAUDLENS_KEY\"\n\
             \nAPI docs: {base}/docs   metrics: {base}/metrics\n"
        );
    }))
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
