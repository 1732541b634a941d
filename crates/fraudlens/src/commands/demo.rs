//! `fraudlens demo`: the quick start. Simulates a dataset, replays it through
//! the feature engine and shows how the fraud scenarios separate on a few of
//! the default features. Later stages (train, serve) will extend it.

use std::sync::Arc;

use anyhow::Context as _;
use fraudlens_core::Schema;
use fraudlens_features::FeatureSpec;
use fraudlens_sim::SimConfig;

use crate::cli::{DemoArgs, SimFormat};
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
    let sim = SimConfig {
        customers: args.customers,
        terminals: args.terminals,
        days: args.days,
        ..config.simulate.clone()
    };
    let transactions = args.dir.join("transactions.csv");
    eprintln!(
        "1/2 simulating {} customers x {} days into {}",
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
        "2/2 replaying them through the feature engine into {}",
        features.display()
    );
    let job = EventJob {
        data: transactions,
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
         compromised terminals on the terminal's label-delayed risk."
    );
    Ok(())
}
