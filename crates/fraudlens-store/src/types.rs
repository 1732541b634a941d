//! The rows the store reads and writes: decisions, the review queue and
//! review changes, labels, audit entries, models, API keys and dead letters.

use fraudlens_core::{Label, Timestamp};
use serde::{Deserialize, Serialize};

use fraudlens_core::{Decision, ReviewStatus};

use crate::{ModelStage, Role};

/// A decision to store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewDecision {
    /// The transaction id (unique).
    pub transaction_id: String,
    /// A hash of the request body, to tell a replay from a conflicting reuse of the id.
    pub fingerprint: String,
    /// Event time of the transaction.
    pub event_time: Timestamp,
    /// When the server received it.
    pub received_at: Timestamp,
    /// The primary entity key (customer or card token), for the queue's entity filter.
    pub entity: Option<String>,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The parsed transaction as JSON (card numbers already tokenised).
    pub body: String,
    /// The ranking score (calibrated probability, or the anomaly score of an unsupervised model).
    pub score: f64,
    /// Calibrated fraud probability.
    pub probability: Option<f64>,
    /// Raw model score (log-odds).
    pub raw_score: Option<f64>,
    /// Isolation-forest score, when the model has one.
    pub anomaly_score: Option<f64>,
    /// The decision.
    pub decision: Decision,
    /// Top reasons, JSON.
    pub reasons: String,
    /// The model inputs, in the model's order (names: [`ModelEntry::feature_names`]); NaN when missing.
    pub features: Vec<f64>,
    /// Model version that decided.
    pub model_version: String,
    /// Scoring latency in microseconds (parse to decision, before the write).
    pub latency_us: i64,
    /// Initial review status (`pending_review` for review and decline).
    pub review_status: Option<ReviewStatus>,
    /// The entity-state shard that observed it (`TOPIC/PARTITION` for a
    /// detector; none for the API, whose one state covers the whole store).
    #[serde(default)]
    pub shard: Option<String>,
}

/// A stored transaction with its decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredDecision {
    /// Insertion order.
    pub seq: i64,
    /// What was written.
    pub decision: NewDecision,
    /// When the review status last changed.
    pub review_updated_at: Option<Timestamp>,
    /// The latest label.
    pub label: Option<Label>,
}

/// What happened to one decision of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum PutOutcome {
    /// Written now.
    Inserted,
    /// The id was already stored (this is that row).
    Existing(Box<StoredDecision>),
}

/// How the review queue is sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum QueueOrder {
    /// Highest score first (the default: worst first).
    #[default]
    ScoreDesc,
    /// Newest event first.
    TimeDesc,
    /// Oldest event first.
    TimeAsc,
}

/// Filters and paging of the review queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnomalyQuery {
    /// Only this status (any review status when `None`).
    pub status: Option<ReviewStatus>,
    /// Only scores at or above.
    pub min_score: Option<f64>,
    /// Event time at or after.
    pub from: Option<Timestamp>,
    /// Event time before.
    pub to: Option<Timestamp>,
    /// Only this primary entity.
    pub entity: Option<String>,
    /// Sort order.
    pub order: QueueOrder,
    /// Continue after this cursor (from a previous [`Page`]).
    pub cursor: Option<String>,
    /// Page size (at least 1).
    pub limit: u32,
}

/// One page of the review queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The rows.
    pub items: Vec<StoredDecision>,
    /// Pass this as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A review status change.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewRequest {
    /// The transaction.
    pub transaction_id: String,
    /// The new status.
    pub status: ReviewStatus,
    /// Who (an API key's name and id).
    pub actor: String,
    /// Why.
    pub note: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// What a review changed.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewOutcome {
    /// The status before.
    pub before: Option<ReviewStatus>,
    /// The transaction after the change.
    pub transaction: StoredDecision,
    /// The label written, if the status implies one.
    pub label: Option<Label>,
}

/// A label to record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewLabel {
    /// The transaction it is about (may not be stored yet).
    pub transaction_id: String,
    /// Fraud or legit.
    pub label: Label,
    /// Where it came from (`review`, `chargeback`, `api`, `kafka`…).
    pub source: String,
    /// Who sent it.
    pub actor: String,
    /// When it was recorded.
    pub at: Timestamp,
}

/// A recorded label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelEntry {
    /// Fraud or legit.
    pub label: Label,
    /// Where it came from.
    pub source: String,
    /// Who sent it.
    pub actor: String,
    /// When.
    pub at: Timestamp,
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// What (`review`, `label`, `promote`, `key_create`, `key_revoke`…).
    pub action: String,
    /// About what (a transaction id, `model:V`, `key:ID`).
    pub subject: String,
    /// The value before.
    pub before: Option<String>,
    /// The value after.
    pub after: Option<String>,
    /// A free-text note.
    pub note: Option<String>,
}

/// A model version to register.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewModel {
    /// Version (unique).
    pub version: String,
    /// The artifact directory.
    pub path: String,
    /// A JSON summary (kind, metrics, training period).
    pub summary: String,
    /// Names of the model inputs, in order (how stored feature vectors are read).
    pub feature_names: Vec<String>,
    /// When.
    pub registered_at: Timestamp,
    /// The artifact's content digest (SHA-256 of its `SHA256SUMS`, which
    /// covers every file): a promotion or a start that loads other content
    /// from `path` is refused.
    pub digest: String,
}

/// A registered model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Version.
    pub version: String,
    /// The artifact directory.
    pub path: String,
    /// Stage.
    pub stage: ModelStage,
    /// JSON summary.
    pub summary: String,
    /// Names of the model inputs, in order.
    pub feature_names: Vec<String>,
    /// When registered.
    pub registered_at: Timestamp,
    /// When it last became the production model.
    pub promoted_at: Option<Timestamp>,
    /// The content digest taken at registration (`None`: registered before
    /// digests were kept; the next registration of the same path supplies it).
    pub digest: Option<String>,
    /// Whether it is the shadow model (it scores every live decision beside
    /// production: [`crate::Store::set_shadow`]).
    #[serde(default)]
    pub shadow: bool,
    /// When it was last set as the shadow model (a second setting of the
    /// same version is a new one: processes that switched it off retry it).
    #[serde(default)]
    pub shadow_since: Option<Timestamp>,
}

impl ModelEntry {
    /// Whether an artifact of content `digest`, loaded from [`Self::path`],
    /// is what was registered. An entry without a digest cannot tell, and
    /// accepts any.
    pub fn content_matches(&self, digest: &str) -> bool {
        self.digest.as_deref().is_none_or(|registered| registered == digest)
    }
}

/// What a search hit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SearchKind {
    /// A decision whose transaction id starts with the query.
    Case,
    /// An entity whose id starts with the query.
    Entity,
    /// A note of the audit trail (a review's).
    Note,
    /// A case's narrative.
    Narrative,
}

/// One search hit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// What it is.
    pub kind: SearchKind,
    /// The case's transaction id, the entity, or the audit entry's subject.
    pub subject: String,
    /// When (the decision's event time, the entity's latest, the note's or narrative's).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub at: Timestamp,
    /// What matched: the note or narrative, or a summary of the case or entity.
    pub text: String,
}

/// A case's narrative to keep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewNarrative {
    /// The case (a decision's transaction id).
    pub transaction_id: String,
    /// When it was written.
    pub created_at: Timestamp,
    /// Who wrote it: `template` (rules) or `llm`.
    pub source: String,
    /// The LLM's model, for `llm`.
    pub model: Option<String>,
    /// `probable_false_positive`, `investigate` or `escalate`.
    pub recommendation: String,
    /// The text, citing evidence ids in brackets.
    pub assessment: String,
    /// The evidence ids cited.
    pub citations: Vec<String>,
    /// Why an LLM's answer was not used (the narrative is then the rules').
    pub note: Option<String>,
    /// The evidence it was written from, as JSON (`[{id, summary…}]`): what
    /// its citations meant when it was written.
    pub evidence: String,
}

/// A kept narrative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredNarrative {
    /// Its id.
    pub id: i64,
    /// What was kept.
    #[serde(flatten)]
    pub narrative: NewNarrative,
}

/// A champion/challenger comparison to record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewComparison {
    /// The model compared.
    pub candidate: String,
    /// The model it was compared with (the production model, usually).
    pub against: String,
    /// When.
    pub at: Timestamp,
    /// Who (`cli`, `retrain`, an API key's name and id).
    pub actor: String,
    /// The whole report (window, metrics, intervals, verdict) as JSON.
    pub report: String,
}

/// The labels of the flagged (review, decline) decisions among the latest stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlaggedOutcomes {
    /// Flagged decisions.
    pub flagged: u64,
    /// Of them, labelled fraud (confirmed by a review, or a chargeback).
    pub fraud: u64,
    /// Of them, labelled legitimate (a false positive).
    pub legit: u64,
}

impl FlaggedOutcomes {
    /// The share of the labelled flagged decisions that were fraud (`None`: none labelled).
    pub fn precision(&self) -> Option<f64> {
        let labelled = self.fraud + self.legit;
        (labelled > 0).then(|| self.fraud as f64 / labelled as f64)
    }
}

/// A shadow model's verdict on one stored decision (its feature vector, as
/// the production model read it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowScore {
    /// The shadow model.
    pub model_version: String,
    /// The decision scored.
    pub transaction_id: String,
    /// The transaction's event time.
    pub event_time: Timestamp,
    /// The ranking score.
    pub score: f64,
    /// The calibrated probability, when the model has one.
    pub probability: Option<f64>,
    /// What the shadow model would have decided.
    pub decision: Decision,
    /// When it was scored.
    pub scored_at: Timestamp,
    /// How long the scoring took.
    pub latency_us: i64,
}

/// A recorded comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComparisonEntry {
    /// Insertion order.
    pub id: i64,
    /// What was recorded.
    pub comparison: NewComparison,
}

/// An API key (the secret itself is never stored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyEntry {
    /// Public id (the key's prefix).
    pub key_id: String,
    /// A name for people.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret part, hex.
    pub secret_sha256: String,
    /// When created.
    pub created_at: Timestamp,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
}

/// A record that could not be processed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// When.
    pub at: Timestamp,
    /// Where from (`api`, `upload`, `kafka:TOPIC`…).
    pub source: String,
    /// Where in the source (`line 12`, `partition 3 offset 1207`).
    pub location: String,
    /// Why it was refused.
    pub error: String,
    /// The raw record (lossy UTF-8; card numbers are redacted on write).
    pub payload: String,
}

/// A stored dead letter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredDeadLetter {
    /// Row id.
    pub id: i64,
    /// The letter.
    pub letter: DeadLetter,
}

/// A console session: a browser signed in with an API key. Only a SHA-256 of
/// the session's token is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionEntry {
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    /// The API key that signed in.
    pub key_id: String,
    /// When signed in.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// When it was ended (sign-out).
    pub ended_at: Option<Timestamp>,
}

impl SessionEntry {
    /// Whether the session may still be used at `now` (its key aside).
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// How many transactions of the review queue are in each status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting for an analyst.
    pub pending_review: u64,
    /// Confirmed fraud.
    pub confirmed_fraud: u64,
    /// Cleared.
    pub false_positive: u64,
    /// Escalated.
    pub escalated: u64,
    /// The largest sequence number counted (the `after_seq` asked when none).
    pub last_seq: i64,
}

impl QueueCounts {
    /// The count of one status.
    pub fn get(&self, status: ReviewStatus) -> u64 {
        use ReviewStatus::*;
        match status {
            PendingReview => self.pending_review,
            ConfirmedFraud => self.confirmed_fraud,
            FalsePositive => self.false_positive,
            Escalated => self.escalated,
        }
    }

    /// All statuses together.
    pub fn total(&self) -> u64 {
        self.pending_review + self.confirmed_fraud + self.false_positive + self.escalated
    }
}

/// Decisions of one time bucket (by event time), for the console's overview.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionBucket {
    /// Where the bucket starts.
    pub start: Timestamp,
    /// Approved.
    pub approve: u64,
    /// Sent to review.
    pub review: u64,
    /// Declined.
    pub decline: u64,
    /// Labelled fraud (so far).
    pub fraud: u64,
    /// Labelled legitimate (so far).
    pub legit: u64,
    /// Sum of the decision times, in microseconds.
    pub latency_sum_us: i64,
    /// The largest decision time, in microseconds.
    pub latency_max_us: i64,
}

impl Default for DecisionBucket {
    /// An empty bucket at the epoch.
    fn default() -> Self {
        Self {
            start: Timestamp::from_millis(0),
            approve: 0,
            review: 0,
            decline: 0,
            fraud: 0,
            legit: 0,
            latency_sum_us: 0,
            latency_max_us: 0,
        }
    }
}

/// Decisions of a time range: per bucket, and per score bin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecisionStats {
    /// The buckets that hold decisions, oldest first.
    pub buckets: Vec<DecisionBucket>,
    /// Decisions per score bin ([`SCORE_BINS`] equal bins on [0, 1]).
    pub score_bins: Vec<u64>,
}

/// Score bins of [`DecisionStats`].
pub const SCORE_BINS: usize = 20;

/// A primary entity seen with a given secondary key (for the console's case page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelatedEntity {
    /// The primary entity (the customer).
    pub entity: String,
    /// Its transactions with the key in the window.
    pub transactions: u64,
    /// Of them, flagged (review or decline).
    pub flagged: u64,
    /// Of them, labelled fraud.
    pub fraud: u64,
    /// The latest of them.
    pub last_seen: Timestamp,
}
