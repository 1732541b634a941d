//! The decision as callers see it (the API's response, the decisions topic's
//! message): `{transaction_id, fraud_probability, is_fraud, decision,
//! confidence, reasons, model_version, latency_us}`.

use fraudlens_core::{Decision, Reason, ReviewStatus};
use fraudlens_store::NewDecision;
use serde::Serialize;

/// The decision for one transaction.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionView {
    /// The transaction.
    pub transaction_id: String,
    /// Calibrated fraud probability (`null` for an unsupervised model).
    pub fraud_probability: Option<f64>,
    /// Flagged: the decision is `review` or `decline`.
    pub is_fraud: bool,
    /// `approve`, `review` or `decline`.
    pub decision: Decision,
    /// `HIGH` (decline), `MEDIUM` (review) or `LOW` (approve).
    pub confidence: &'static str,
    /// The strongest per-feature contributions (for flagged decisions by default).
    pub reasons: Vec<Reason>,
    /// The model that decided.
    pub model_version: String,
    /// Time from parsing to decision, in microseconds (before the durable write).
    pub latency_us: i64,
    /// Isolation-forest score, when the model has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly_score: Option<f64>,
    /// Review status (`pending_review` for flagged decisions).
    pub review_status: Option<ReviewStatus>,
}

impl From<&NewDecision> for DecisionView {
    fn from(d: &NewDecision) -> Self {
        Self {
            transaction_id: d.transaction_id.clone(),
            fraud_probability: d.probability,
            is_fraud: d.decision.is_flagged(),
            decision: d.decision,
            confidence: d.decision.confidence(),
            reasons: crate::events::parse_reasons(&d.transaction_id, &d.reasons),
            model_version: d.model_version.clone(),
            latency_us: d.latency_us,
            anomaly_score: d.anomaly_score,
            review_status: d.review_status,
        }
    }
}
