//! Failures that do not stop a decision but must not pass unseen: each is
//! logged and counted here, in one place (`fraudlens_pipeline_faults_total{fault}`).

use serde::de::DeserializeOwned;

/// Counts and logs a fault of one transaction's decision.
fn fault(fault: &'static str, transaction_id: &str, error: &dyn std::fmt::Display) {
    metrics::counter!("fraudlens_pipeline_faults_total", "fault" => fault).increment(1);
    tracing::warn!(fault, transaction_id, %error, "decision fault");
}

/// The reasons of a decision could not be computed: it is stored without them.
pub(crate) fn reasons_not_computed(transaction_id: &str, error: &dyn std::fmt::Display) {
    fault("reasons_not_computed", transaction_id, error);
}

/// The reasons of a decision could not be serialised: it is stored with none.
pub(crate) fn reasons_not_serialised(transaction_id: &str, error: &dyn std::fmt::Display) {
    fault("reasons_not_serialised", transaction_id, error);
}

/// A transaction could not be serialised to its stored form (and fingerprint): it is not scored.
pub(crate) fn transaction_not_serialised(transaction_id: &str, error: &dyn std::fmt::Display) {
    metrics::counter!("fraudlens_pipeline_faults_total", "fault" => "transaction_not_serialised").increment(1);
    tracing::error!(transaction_id, %error, "transaction cannot be serialised for its fingerprint");
}

/// The stored reasons of a decision (JSON), or none when they do not parse
/// (logged and counted: `stored_reasons_unreadable`).
pub(crate) fn parse_reasons<T: DeserializeOwned>(transaction_id: &str, reasons: &str) -> Vec<T> {
    match serde_json::from_str(reasons) {
        Ok(reasons) => reasons,
        Err(error) => {
            fault("stored_reasons_unreadable", transaction_id, &error);
            Vec::new()
        }
    }
}
