//! Command-line interface. Flags are the last configuration layer: they are
//! applied to the loaded [`Config`](crate::config::Config) by the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::LogFormat;

/// fraudlens: fraud detection in one binary — simulate and inspect data, build features, train,
/// evaluate and batch-score models, serve the scoring API and run the Kafka detector.
#[derive(Debug, Parser)]
#[command(name = "fraudlens", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (TOML); also FRAUDLENS_CONFIG. See fraudlens.example.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level or tracing directive (overrides log.level).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format (overrides log.format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate transactions with fraud scenarios (CSV or JSON lines).
    Simulate(SimulateArgs),
    /// Compute the feature matrix of a dataset (event replay or tabular encoding).
    Features(FeaturesArgs),
    /// Show how a file is read: schema roles, or inferred column types for tabular data.
    Inspect(InspectArgs),
    /// Train a gradient-boosted fraud model and write its artifact directory.
    Train(TrainArgs),
    /// Evaluate a model on a time window, or prequentially over several folds.
    Evaluate(EvaluateArgs),
    /// Batch scoring: predictions (probability, decision, reasons) for a file, plus run statistics.
    Score(ScoreArgs),
    /// Turn a LightGBM text or XGBoost JSON model (binary) into a fraudlens model directory.
    Import(ImportArgs),
    /// The quick start: simulate, build features, train, evaluate, score, then serve the model.
    Demo(DemoArgs),
    /// Run the scoring API: durable decisions, review queue, models, probes and metrics.
    Serve(ServeArgs),
    /// Kafka detector: consume transactions as a consumer-group member, score and store them, publish decisions.
    Detect(DetectArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Train a candidate on the stored decisions and their labels, register it and compare it with production.
    Retrain(RetrainArgs),
    /// How far live inputs and scores moved from a model's training: PSI, KS and missing rates per input.
    Drift(DriftArgs),
    /// The model registry: register, list, compare, promote, roll back.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Back up the store, every registered model's files and the entity-state snapshot (consistent while serving).
    Backup(BackupArgs),
    /// Restore a backup into an empty store, checking every file and count.
    Restore(RestoreArgs),
    /// Ethereum addresses: features from chain data (a node or a provider), and scores.
    #[command(subcommand)]
    Eth(EthCommand),
    /// Analyse a stored decision: evidence with ids, similar past cases and their outcomes, a narrative.
    Analyze(AnalyzeArgs),
    /// Print the effective configuration (secrets redacted).
    Config,
}

impl Command {
    /// The `--schema` file of commands that read transactions.
    pub fn schema_file(&self) -> Option<&std::path::Path> {
        match self {
            Self::Features(args) => args.schema.schema.as_deref(),
            Self::Inspect(args) => args.schema.schema.as_deref(),
            Self::Train(args) => args.schema.schema.as_deref(),
            Self::Simulate(_)
            | Self::Demo(_)
            | Self::Config
            | Self::Evaluate(_)
            | Self::Score(_)
            | Self::Import(_)
            | Self::Serve(_)
            | Self::Detect(_)
            | Self::Keys(_)
            | Self::Retrain(_)
            | Self::Drift(_)
            | Self::Backup(_)
            | Self::Restore(_)
            | Self::Eth(_)
            | Self::Analyze(_)
            | Self::Models(_) => None,
        }
    }
}

/// Output format of simulated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimFormat {
    /// Comma-separated values with a header.
    Csv,
    /// One JSON object per line, the native field names.
    #[value(alias = "native")]
    Jsonl,
    /// One Stripe-charge-shaped JSON object per line (map it with `schemas/stripe-charge.toml`).
    Stripe,
}

/// `fraudlens simulate`
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Output file; `-` for standard output.
    #[arg(long, short, default_value = "-", value_name = "FILE")]
    pub out: PathBuf,
    /// Stream the transactions to Kafka instead (`kafka://HOST:PORT/TOPIC`), as JSON keyed by customer.
    #[arg(long, value_name = "URL", conflicts_with = "out")]
    pub to: Option<String>,
    /// With --to: transactions per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rate: u64,
    /// Output format [default: from the file extension, else csv; with --to, jsonl (native fields)].
    #[arg(long, value_enum)]
    pub format: Option<SimFormat>,
    /// Number of customers [default: 5000].
    #[arg(long)]
    pub customers: Option<u32>,
    /// Number of terminals [default: 10000].
    #[arg(long)]
    pub terminals: Option<u32>,
    /// Days to simulate [default: 90].
    #[arg(long)]
    pub days: Option<u32>,
    /// First day, YYYY-MM-DD [default: 2026-01-01].
    #[arg(long, value_name = "DATE")]
    pub start_date: Option<String>,
    /// Random seed [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Per customer per day probability of a stolen card [default: 0.0008].
    #[arg(long, value_name = "P")]
    pub stolen_card_rate: Option<f64>,
    /// Per terminal per day probability of a compromise [default: 0.0002].
    #[arg(long, value_name = "P")]
    pub compromised_terminal_rate: Option<f64>,
    /// Per customer per day probability of an account takeover [default: 0.0003].
    #[arg(long, value_name = "P")]
    pub account_takeover_rate: Option<f64>,
    /// Per customer per day probability of a card-testing burst [default: 0.0003].
    #[arg(long, value_name = "P")]
    pub card_testing_rate: Option<f64>,
}

/// Schema overrides shared by commands that read transactions.
#[derive(Debug, Default, Args)]
pub struct SchemaArgs {
    /// TOML file with schema and/or features tables (replaces those of the config).
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// Field of the transaction id.
    #[arg(long = "id", value_name = "FIELD")]
    pub transaction_id: Option<String>,
    /// Field of the timestamp.
    #[arg(long, value_name = "FIELD")]
    pub timestamp: Option<String>,
    /// How timestamps are written: auto, datetime, unix_s, unix_ms.
    #[arg(long, value_name = "FORMAT")]
    pub timestamp_format: Option<String>,
    /// Field of the amount.
    #[arg(long, value_name = "FIELD")]
    pub amount: Option<String>,
    /// Amounts in major (12.34) or minor (1234) units.
    #[arg(long, value_name = "UNIT")]
    pub amount_unit: Option<String>,
    /// Field of the currency code.
    #[arg(long, value_name = "FIELD")]
    pub currency: Option<String>,
    /// Field (or, in tabular mode, column) of the fraud label.
    #[arg(long, value_name = "FIELD")]
    pub label: Option<String>,
    /// Entity key: NAME=FIELD, e.g. customer=CUSTOMER_ID; NAME= removes one. Repeatable.
    #[arg(long, value_name = "NAME=FIELD")]
    pub entity: Vec<String>,
    /// Entity key holding a card number, hashed at parse time: NAME=FIELD. Repeatable.
    #[arg(long, value_name = "NAME=FIELD")]
    pub card_number: Vec<String>,
    /// Categorical attribute: NAME or NAME=FIELD. Repeatable.
    #[arg(long, value_name = "NAME[=FIELD]")]
    pub categorical: Vec<String>,
    /// Numeric attribute: NAME or NAME=FIELD. Repeatable.
    #[arg(long, value_name = "NAME[=FIELD]")]
    pub numeric: Vec<String>,
}

/// Input handling shared by commands that read files.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Input file: CSV, or JSON lines (.jsonl/.ndjson); `-` for standard input (CSV).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// How to read it [default: event mode if the header fits the schema, else tabular].
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Stop at the first bad row (exit code 65) instead of skipping and reporting it.
    #[arg(long)]
    pub strict: bool,
    /// How many bad rows to show in the report.
    #[arg(long, value_name = "N")]
    pub max_error_examples: Option<usize>,
    /// Tabular mode: a column to leave out. Repeatable.
    #[arg(long, value_name = "COLUMN")]
    pub exclude: Vec<String>,
}

/// How a file is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Event mode if the header fits the schema, else tabular.
    Auto,
    /// Transactions: features come from the entity feature engine.
    Event,
    /// Rows that already are features: types inferred, categoricals encoded.
    Tabular,
}

/// `fraudlens features`
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub schema: SchemaArgs,
    /// Output CSV; `-` for standard output.
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
    /// Event mode: sort the input by timestamp in memory first (for files not in time order).
    #[arg(long)]
    pub sort: bool,
    /// Event mode: write the engine state after the replay (for a warm start of serving).
    #[arg(long, value_name = "FILE")]
    pub snapshot_out: Option<PathBuf>,
    /// Tabular mode: write the fitted encoding (JSON) for use at serving time.
    #[arg(long, value_name = "FILE")]
    pub encoding_out: Option<PathBuf>,
    /// Print the mean of each feature per value of this column (the label or a passthrough field).
    #[arg(long, value_name = "COLUMN")]
    pub summary_by: Option<String>,
    /// Features to show in the summary, comma-separated [default: all].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub summary_features: Vec<String>,
}

/// `fraudlens inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub schema: SchemaArgs,
}

/// `fraudlens demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the generated files.
    #[arg(long, default_value = "fraudlens-data", value_name = "DIR")]
    pub dir: PathBuf,
    /// Customers to simulate.
    #[arg(long, default_value_t = 5000)]
    pub customers: u32,
    /// Terminals to simulate.
    #[arg(long, default_value_t = 10_000)]
    pub terminals: u32,
    /// Days to simulate.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Stop after scoring instead of starting the API server.
    #[arg(long)]
    pub no_serve: bool,
    /// Where the demo server listens [default: serve.listen].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// Training parameters settable from the command line (the rest: `[train]` in the config file).
#[derive(Debug, Default, Args)]
pub struct TrainParamArgs {
    /// Most boosting rounds.
    #[arg(long, value_name = "N")]
    pub trees: Option<usize>,
    /// Learning rate.
    #[arg(long, value_name = "RATE")]
    pub learning_rate: Option<f64>,
    /// Most leaves per tree (leaf-wise growth).
    #[arg(long, value_name = "N")]
    pub num_leaves: Option<usize>,
    /// Deepest a tree may grow (0 = no limit for leaf-wise growth).
    #[arg(long, value_name = "N")]
    pub max_depth: Option<usize>,
    /// Grow depth-wise (XGBoost style) instead of leaf-wise.
    #[arg(long)]
    pub depth_wise: bool,
    /// Weight of fraud rows relative to legitimate ones.
    #[arg(long, value_name = "W")]
    pub scale_pos_weight: Option<f64>,
    /// Worker threads (0 = all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Seed of row and column sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Reviews the analysts can do per day: decline where precision reaches train.decline_precision,
    /// review the band below up to this many a day (train.review_capacity_per_day).
    #[arg(long, value_name = "N")]
    pub review_capacity: Option<f64>,
}

/// `fraudlens train`
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub schema: SchemaArgs,
    /// Model directory to write.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// First transaction time of the training window (inclusive; date or date-time, UTC).
    #[arg(long, value_name = "TIME")]
    pub train_from: Option<String>,
    /// End of the training window (exclusive).
    #[arg(long, value_name = "TIME")]
    pub train_to: Option<String>,
    #[command(flatten)]
    pub params: TrainParamArgs,
    /// Also train an isolation forest: its score becomes a model input and appears in predictions.
    #[arg(long)]
    pub anomaly: bool,
    /// No labels: fit an isolation forest alone; review/decline the most anomalous shares.
    #[arg(long, conflicts_with = "anomaly")]
    pub unsupervised: bool,
    /// Also write an HTML report of the validation rows (curves, thresholds, reliability, importance).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Search the tree parameters first: time-ordered folds of the window, successive halving.
    #[arg(long, conflicts_with = "unsupervised")]
    pub tune: bool,
    /// Time the search may take (with --tune), e.g. 90s, 10m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "10m", requires = "tune")]
    pub budget: fraudlens_core::WindowDuration,
    /// Most parameter sets the search draws (with --tune; the configuration is the first). With an
    /// ample --budget the search is then the same on every machine.
    #[arg(long, value_name = "N", default_value_t = 243, value_parser = clap::value_parser!(u16).range(1..), requires = "tune")]
    pub trials: u16,
}

/// A time window given on the command line.
#[derive(Debug, Default, Args)]
pub struct WindowArgs {
    /// First transaction time to evaluate (inclusive; date or date-time, UTC).
    #[arg(long, value_name = "TIME")]
    pub test_from: Option<String>,
    /// End of the evaluated window (exclusive).
    #[arg(long, value_name = "TIME")]
    pub test_to: Option<String>,
}

/// `fraudlens evaluate`
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model directory.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Transactions (all history: rows before the window build the feature state).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Prequential evaluation: retrain with the model's parameters on N successive folds.
    #[arg(long, value_name = "N", conflicts_with_all = ["test_from", "test_to"])]
    pub prequential: Option<usize>,
    /// Prequential: days of each test fold.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub fold_days: u32,
    /// Prequential: days of training data before each fold's gap.
    #[arg(long, value_name = "DAYS", default_value_t = 21)]
    pub train_days: u32,
    /// Prequential: days between training and test (labels not yet known; default: the label delay).
    #[arg(long, value_name = "DAYS")]
    pub gap_days: Option<u32>,
    /// k of precision@k and card precision@k per day.
    #[arg(long, default_value_t = 100)]
    pub k: usize,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write an HTML report (curves, reliability, histograms, per-day precision, each fold).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Stop at the first bad row instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// `fraudlens score`
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Model directory.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Transactions to score (earlier rows build the feature state).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Predictions CSV; `-` for standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// First transaction time to score (inclusive).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the scored window (exclusive).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Run statistics as JSON.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Reasons per prediction.
    #[arg(long, default_value_t = 3)]
    pub reasons: usize,
    /// Stop at the first bad row instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// `fraudlens import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A LightGBM text model (`booster.save_model("model.txt")`), objective binary.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["xgboost", "onnx"])]
    pub lightgbm: Option<PathBuf>,
    /// An XGBoost JSON model (`booster.save_model("model.json")`), binary:logistic or binary:logitraw.
    #[arg(long, value_name = "FILE", conflicts_with = "onnx")]
    pub xgboost: Option<PathBuf>,
    /// An ONNX model (scikit-learn via skl2onnx, PyTorch via torch.onnx.export)
    /// taking one float tensor [N, features] and giving the fraud probability.
    #[arg(long, value_name = "FILE", requires = "features")]
    pub onnx: Option<PathBuf>,
    /// The ONNX model's input columns, in order: a JSON list of names.
    #[arg(long, value_name = "FILE")]
    pub features: Option<PathBuf>,
    /// The ONNX output that is the fraud probability [default: the one named
    /// like probabilities, else the only one].
    #[arg(long, value_name = "NAME", requires = "onnx")]
    pub onnx_output: Option<String>,
    /// Rows like the training data (CSV with the feature columns): their
    /// medians are what a feature is set to when the reasons are computed.
    /// Without it an ONNX model gives no reasons.
    #[arg(long, value_name = "CSV", requires = "onnx")]
    pub reference: Option<PathBuf>,
    /// Model directory to write.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Probability at or above which a transaction goes to review.
    #[arg(long, default_value_t = 0.5, value_name = "P")]
    pub review_threshold: f64,
    /// Probability at or above which a transaction is declined [default: never].
    #[arg(long, value_name = "P")]
    pub decline_threshold: Option<f64>,
}

/// The store to use (overrides `store.url`).
#[derive(Debug, Args)]
pub struct StoreArg {
    /// `sqlite://PATH` or `postgres://…` [default: store.url, which
    /// `FRAUDLENS_DATABASE_URL` overrides].
    // no clap `env`: the variable is read once, by Config::load, for every
    // command (and clap would print its value, password and all, in --help)
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

/// `fraudlens serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve this model directory: it is registered and promoted to production.
    /// Without it, the registry's production model is served.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Address to listen on [default: serve.listen]; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
}

/// `fraudlens backup`
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where: a new (or empty) directory, or an object store's prefix (`s3://bucket/prefix`, `gs://…`, `az://…`).
    #[arg(long, value_name = "DIR|URL")]
    pub to: String,
    /// The entity-state snapshot to include; it must exist [default: serve.state_file, if it exists].
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Back up models whose files cannot be read without them (their registry entries are kept).
    #[arg(long)]
    pub allow_missing_models: bool,
    /// Encrypt every file to this age recipient (`age1…`; repeat for more) [default: the
    /// recipients in FRAUDLENS_BACKUP_AGE_RECIPIENTS, else no encryption].
    #[arg(long, value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Print the manifest as JSON instead of a summary line.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
}

/// `fraudlens restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup: a directory, or an object store's prefix.
    #[arg(long, value_name = "DIR|URL")]
    pub from: String,
    /// Where models whose registered directory is gone get their files.
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Where the entity-state snapshot goes [default: serve.state_file].
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// An encrypted backup's age identity file (as `age-keygen` writes it) [default: the
    /// identities in FRAUDLENS_BACKUP_AGE_IDENTITY].
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// Print the report as JSON instead of a summary line.
    #[arg(long)]
    pub json: bool,
    /// The store to restore into: a SQLite path that does not exist yet, or a PostgreSQL database without tables.
    #[command(flatten)]
    pub store: StoreArg,
}

/// `fraudlens detect`
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Kafka bootstrap servers [default: detect.brokers].
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: Option<String>,
    /// Topic of transactions [default: detect.topic].
    #[arg(long)]
    pub topic: Option<String>,
    /// Consumer group [default: detect.group].
    #[arg(long)]
    pub group: Option<String>,
    /// Model directory to register and promote; else the registry's production model.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Where /metrics and the probes listen [default: detect.metrics_listen].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
}

/// Where `retrain` takes the candidate's parameters or features from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TakenFrom {
    /// The production model.
    Production,
    /// The configuration.
    Config,
}

/// `fraudlens retrain`
#[derive(Debug, Args)]
pub struct RetrainArgs {
    /// First transaction time to train on (inclusive; date or date-time, UTC) [default: the first stored].
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the transactions used (exclusive) [default: the label maturity before the newest stored event].
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Where to write the candidate [default: models/VERSION].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tree parameters: the production model's, or the configuration's `[train.gbdt]`
    /// (the rest of `[train]` always comes from the configuration).
    #[arg(long, value_enum, default_value_t = TakenFrom::Production)]
    pub params: TakenFrom,
    /// Features: the production model's (the vectors stored with each decision), or the
    /// configuration's `[features]` (the stored transactions replayed through them).
    #[arg(long, value_enum, default_value_t = TakenFrom::Production)]
    pub features: TakenFrom,
    /// Promote the candidate when it beats production on retrain.primary_metric by at least
    /// MARGIN (with the interval of the difference above zero) and loses significantly on no guard metric
    /// (every other but recall at the review threshold).
    #[arg(long, value_name = "MARGIN")]
    pub promote_if_better: Option<f64>,
    /// Print the result as one JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
}

/// `fraudlens drift`
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Model directory [default: the store's production model].
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// A transaction (or tabular) file to check, instead of the store's decisions.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// First transaction time (inclusive; date or date-time, UTC) [default on the store: a week
    /// before the newest stored event].
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the transactions checked (exclusive) [default on the store: after the newest].
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The store (without --data).
    #[command(flatten)]
    pub store: StoreArg,
}

/// `fraudlens models compare`
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The registered version to judge.
    pub candidate: String,
    /// The version to compare it with, or `production`.
    #[arg(long, default_value = "production", value_name = "VERSION")]
    pub against: String,
    /// First transaction time compared on [default: just after the later of the two training windows].
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the transactions compared on (exclusive) [default: the label maturity before the newest stored event].
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Compare even on transactions a model trained on (optimistic for that model).
    #[arg(long)]
    pub allow_overlap: bool,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
}

/// `fraudlens keys`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        /// `service` (score), `analyst` (read and review) or `admin` (everything).
        #[arg(long)]
        role: String,
        /// A name for people (shown in the audit log).
        #[arg(long, default_value = "unnamed")]
        name: String,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
    /// List keys (ids, names, roles; never secrets).
    List {
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
    /// Revoke a key by id (takes effect within 5 seconds on running servers).
    Revoke {
        /// The key id (the part after `fl_`, before the second `_`).
        key_id: String,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
}

/// `fraudlens analyze`
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The decision's transaction id.
    pub id: String,
    /// Print the analysis as JSON.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
}

/// `fraudlens eth`
#[derive(Debug, Subcommand)]
pub enum EthCommand {
    /// Score an address: its history from the node, its features in the public
    /// address dataset's columns, the model's decision and reasons.
    Score(EthScoreArgs),
    /// Write a training CSV (the public address dataset's columns) for a list of addresses.
    Features(EthFeaturesArgs),
}

/// Where chain data comes from (defaults from `[eth]`).
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// The node or provider's JSON-RPC URL [default: eth.rpc_url, FRAUDLENS_ETH_RPC_URL].
    /// A URL with a key is better passed in the environment (a flag shows in `ps`).
    #[arg(long, value_name = "URL")]
    pub rpc: Option<String>,
    /// History source: auto, alchemy, otterscan or scan [default: eth.source].
    #[arg(long, value_name = "SOURCE", value_parser = ["auto", "alchemy", "otterscan", "scan"])]
    pub source: Option<String>,
    /// The block the features are as of [default: the newest].
    #[arg(long, value_name = "N")]
    pub block: Option<u64>,
}

/// `fraudlens eth score`
#[derive(Debug, Args)]
pub struct EthScoreArgs {
    /// The address (0x and 40 hex digits; mixed case must be its EIP-55 checksum).
    pub address: String,
    /// Model directory: a model trained in tabular mode on address features.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Where chain data comes from.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Reasons shown.
    #[arg(long, default_value_t = 5)]
    pub reasons: usize,
    /// Print JSON (the decision, the reasons and every feature).
    #[arg(long)]
    pub json: bool,
}

/// `fraudlens eth features`
#[derive(Debug, Args)]
pub struct EthFeaturesArgs {
    /// The addresses: a CSV with an `Address` column (and a `FLAG` label
    /// column, kept), or one address per line (optionally `,LABEL`).
    #[arg(long, value_name = "FILE")]
    pub addresses: PathBuf,
    /// The CSV written: `Index`, `Address`, `FLAG` and the 47 feature columns.
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
    /// Where chain data comes from.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Addresses fetched at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

/// `fraudlens models`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Verify a model directory and register it as `staging`.
    Register {
        /// Model directory.
        dir: PathBuf,
        /// Upload it to object storage first (`s3://bucket/prefix`, `gs://…`, `az://…`; it lands
        /// in PREFIX/VERSION) and register that URL [default: artifacts.upload_to]
        #[arg(long, value_name = "URL")]
        upload_to: Option<String>,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
    /// List registered models.
    List {
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
    /// Compare a registered model with another (production by default) on the
    /// same stored, labelled transactions that neither trained on.
    Compare(CompareArgs),
    /// Make a registered version the production model (running servers and
    /// detectors on the store swap to it within a second).
    Promote {
        /// Version (model id).
        #[arg(value_name = "VERSION")]
        model_version: String,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
    /// Promote the model that was in production before the current one.
    Rollback {
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
    /// Make a registered version the shadow model: running servers and
    /// detectors score every decision with it too, off the decision path, and
    /// store its scores beside the decisions (`models compare` reads them).
    Shadow {
        /// Version (model id); it must read the production model's inputs.
        #[arg(value_name = "VERSION", required_unless_present = "off", conflicts_with = "off")]
        model_version: Option<String>,
        /// End shadowing.
        #[arg(long)]
        off: bool,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        // clap's own checks (duplicate names, conflicting flags) run on every subcommand
        super::Cli::command().debug_assert();
    }
}
