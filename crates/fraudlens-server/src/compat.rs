//! The paths common Python fraud services expose, so clients written for
//! them work unchanged: `POST /predict`, `POST /predict/batch`, `POST /upload`.
//! Same scoring path and durability as `/api/v1`; only the JSON shape differs.
//! `/predict` takes what the serving model reads: a transaction, or a feature
//! row for a tabular or imported model (as `/api/v1/predictions`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use fraudlens_pipeline::Records;

use crate::AppState;
use crate::admission::Admitted;
use crate::api::{TransactionInput, check_batch, mark_replay};
use crate::error::{ApiError, ErrorBody, Json};

/// The answer of `/predict`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Prediction {
    /// The transaction.
    pub transaction_id: String,
    /// Calibrated fraud probability (the anomaly score for an unsupervised model).
    pub fraud_probability: f64,
    /// Flagged (`review` or `decline`).
    pub is_fraud: bool,
    /// `HIGH`, `MEDIUM` or `LOW`.
    pub confidence: &'static str,
}

fn prediction(record: &fraudlens_store::NewDecision) -> Prediction {
    let view = fraudlens_pipeline::DecisionView::from(record);
    Prediction {
        transaction_id: view.transaction_id,
        fraud_probability: view.fraud_probability.unwrap_or(record.score),
        is_fraud: view.is_fraud,
        confidence: view.confidence,
    }
}

/// Scores one transaction (alias of `POST /api/v1/transactions` with the common
/// Python response shape; a replay carries `Idempotent-Replayed: true` too).
#[utoipa::path(post, path = "/predict", tag = "compatibility", request_body = TransactionInput,
    responses((status = 200, description = "The prediction (`Idempotent-Replayed: true` on a replay)", body = Prediction),
        (status = 401, body = ErrorBody),
        (status = 409, description = "The id was scored before with other content", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    Extension(admitted): Extension<Admitted>,
    Json(record): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    if !record.is_object() {
        return Err(ApiError::invalid("expected one JSON object"));
    }
    let _in_flight = state.in_flight.settle(&admitted, 1).await?;
    let scored = state.pipeline.score(&record).await?;
    Ok(mark_replay(&scored, Json(prediction(&scored.record)).into_response()))
}

/// `{"predictions": [...]}` in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Predictions {
    /// One per transaction.
    pub predictions: Vec<Prediction>,
}

/// Scores a batch; any invalid record fails the whole request (422), as the Python services do.
#[utoipa::path(post, path = "/predict/batch", tag = "compatibility", request_body = Vec<TransactionInput>,
    responses((status = 200, body = Predictions), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 409, description = "An id was scored before with other content", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn predict_batch(
    State(state): State<Arc<AppState>>,
    Extension(admitted): Extension<Admitted>,
    Json(records): Json<Vec<serde_json::Value>>,
) -> Result<Json<Predictions>, ApiError> {
    check_batch(&state, &records)?;
    // parsed once and checked first, so that a record that does not parse stores nothing
    let model = state.pipeline.model();
    let parsed = Records::parse(&model, &records);
    if let Some((idx, error)) = parsed.first_error() {
        return Err(ApiError::invalid(format!("record {idx}: {error}")));
    }
    let _in_flight = state.in_flight.settle(&admitted, records.len()).await?;
    let mut predictions = Vec::with_capacity(records.len());
    for result in state.pipeline.score_records(&model, parsed).await {
        predictions.push(prediction(&result?.record));
    }
    Ok(Json(Predictions { predictions }))
}
