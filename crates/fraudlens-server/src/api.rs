//! `/api/v1`: scoring, the review queue, labels and models.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fraudlens_core::{Label, ReviewStatus};
use fraudlens_pipeline::{DecisionView, Scored, ServingModel};
use fraudlens_store::{
    AnomalyQuery, AuditEntry, LabelEntry, ModelEntry, NewLabel, QueueOrder, ReviewRequest, StoredDecision,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admission::Admitted;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody, Json, Query};
use crate::{AppState, now};

/// A transaction in the default schema (a deployment's own schema maps other
/// field names; see `fraudlens config`). Unknown fields are ignored.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct TransactionInput {
    /// Unique id (≤ 128 characters, no control characters); re-sending it returns the stored decision.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
    )]
    pub transaction_id: String,
    /// Event time: RFC 3339 (also accepted: `YYYY-MM-DD HH:MM:SS`, unix seconds or milliseconds).
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// Customer id.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
    )]
    pub customer_id: String,
    /// Terminal or merchant id.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
    )]
    pub terminal_id: String,
    /// Amount in major units (`12.50`; a string of digits is accepted too).
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub amount: f64,
    /// ISO 4217 code (default EUR).
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// Merchant category code.
    pub mcc: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Country.
    pub country: Option<String>,
}

/// A decision response: 200, with `Idempotent-Replayed: true` when the id was scored before.
pub(crate) fn decision_response(scored: &Scored) -> Response {
    mark_replay(scored, Json(DecisionView::from(&scored.record)).into_response())
}

/// Adds `Idempotent-Replayed: true` to the response of a replayed decision.
/// Every single-transaction route answers through it, so a client can tell a
/// retry from a first scoring whichever path it calls.
pub(crate) fn mark_replay(scored: &Scored, mut response: Response) -> Response {
    if scored.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Scores one transaction and stores the decision before answering.
#[utoipa::path(post, path = "/api/v1/transactions", tag = "scoring",
    request_body = TransactionInput,
    responses(
        (status = 200, description = "The decision (stored before this response)", body = DecisionView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The id was scored before with other content", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "The transaction does not fit the schema", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn score_one(
    State(state): State<Arc<AppState>>,
    Extension(admitted): Extension<Admitted>,
    Json(record): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    transaction_model(&state)?;
    if !record.is_object() {
        return Err(ApiError::invalid("expected one JSON object"));
    }
    let _in_flight = state.in_flight.settle(&admitted, 1).await?;
    let scored = state.pipeline.score(&record).await?;
    Ok(decision_response(&scored))
}

/// 422 for a transaction sent to a model of feature rows.
pub(crate) fn model_reads_rows(model: &ServingModel) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "model_reads_rows",
        format!(
            "the serving model {} reads feature rows, not transactions: send them to /api/v1/predictions",
            model.version()
        ),
    )
}

fn transaction_model(state: &AppState) -> Result<(), ApiError> {
    let model = state.pipeline.model();
    match model.rows() {
        Some(_) => Err(model_reads_rows(&model)),
        None => Ok(()),
    }
}

/// One result of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// Position in the request.
    pub index: usize,
    /// HTTP status this record alone would have had.
    pub status: u16,
    /// The decision, when scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionView>,
    /// The error, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Results of a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Records scored (new or replayed).
    pub scored: usize,
    /// Records refused.
    pub failed: usize,
    /// One entry per record.
    pub results: Vec<BatchItem>,
}

pub(crate) fn check_batch(state: &AppState, records: &[serde_json::Value]) -> Result<(), ApiError> {
    if records.is_empty() {
        return Err(ApiError::invalid("empty batch"));
    }
    if records.len() > state.config.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("at most {} transactions per batch", state.config.max_batch),
        ));
    }
    Ok(())
}

/// Scores a batch (one commit for all); each record succeeds or fails on its own.
#[utoipa::path(post, path = "/api/v1/transactions/batch", tag = "scoring",
    request_body = Vec<TransactionInput>,
    responses(
        (status = 200, description = "Per-record results (stored before this response)", body = BatchResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn score_batch(
    State(state): State<Arc<AppState>>,
    Extension(admitted): Extension<Admitted>,
    Json(records): Json<Vec<serde_json::Value>>,
) -> Result<Json<BatchResponse>, ApiError> {
    transaction_model(&state)?;
    check_batch(&state, &records)?;
    let _in_flight = state.in_flight.settle(&admitted, records.len()).await?;
    Ok(Json(batch_response(state.pipeline.score_many(&records).await)))
}

/// The per-record answer of a batch.
pub(crate) fn batch_response(results: Vec<Result<Scored, fraudlens_pipeline::ScoreError>>) -> BatchResponse {
    let mut response = BatchResponse {
        scored: 0,
        failed: 0,
        results: Vec::with_capacity(results.len()),
    };
    for (index, result) in results.into_iter().enumerate() {
        response.results.push(match result {
            Ok(scored) => {
                response.scored += 1;
                BatchItem {
                    index,
                    status: 200,
                    decision: Some(DecisionView::from(&scored.record)),
                    error: None,
                }
            }
            Err(error) => {
                response.failed += 1;
                let error = ApiError::from(error);
                BatchItem {
                    index,
                    status: error.status.as_u16(),
                    decision: None,
                    error: Some(error.body),
                }
            }
        });
    }
    response
}

/// Filters of the review queue.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QueueParams {
    /// Only this status.
    pub status: Option<ReviewStatus>,
    /// Only scores at or above.
    #[param(minimum = 0, maximum = 1)]
    pub min_score: Option<f64>,
    /// Event time at or after (RFC 3339 or unix ms).
    pub from: Option<String>,
    /// Event time before.
    pub to: Option<String>,
    /// Only this primary entity (customer).
    pub entity: Option<String>,
    /// `score_desc` (default), `time_desc` or `time_asc`.
    pub sort: Option<QueueOrder>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A queued transaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueItem {
    /// The decision.
    #[serde(flatten)]
    pub decision: DecisionView,
    /// Ranking score (probability or anomaly score).
    pub score: f64,
    /// Event time (RFC 3339).
    pub event_time: String,
    /// Primary entity.
    pub entity: Option<String>,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Latest label (`fraud` or `legit`).
    #[schema(value_type = Option<String>)]
    pub label: Option<Label>,
}

/// One page of the review queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuePage {
    /// The rows.
    pub items: Vec<QueueItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn parse_time(text: &str, field: &str) -> Result<fraudlens_core::Timestamp, ApiError> {
    fraudlens_core::Timestamp::parse(text, fraudlens_core::TimestampFormat::Auto)
        .map_err(|error| ApiError::invalid(format!("{field}: {error}")))
}

/// A time written by someone else (a model manifest's `created_at`) as strict
/// RFC 3339, or `None` when it cannot be read. Artifacts written before the
/// fix carry `…631ZZ` (the suffix doubled): the extra `Z` is dropped, so
/// those still show their time.
pub(crate) fn rfc3339(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text
        .strip_suffix('Z')
        .filter(|rest| rest.ends_with('Z'))
        .unwrap_or(text);
    fraudlens_core::Timestamp::parse(text, fraudlens_core::TimestampFormat::Datetime)
        .ok()
        .map(|time| time.to_string())
}

fn queue_item(stored: &StoredDecision) -> QueueItem {
    let d = &stored.decision;
    QueueItem {
        decision: DecisionView::from(d),
        score: d.score,
        event_time: d.event_time.to_string(),
        entity: d.entity.clone(),
        amount_minor: d.amount_minor,
        currency: d.currency.clone(),
        label: stored.label,
    }
}

/// The review queue: flagged transactions, filtered, sorted and paged by cursor.
#[utoipa::path(get, path = "/api/v1/anomalies", tag = "review", params(QueueParams),
    responses((status = 200, body = QueuePage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn anomalies(
    State(state): State<Arc<AppState>>,
    Query(params): Query<QueueParams>,
) -> Result<Json<QueuePage>, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 500"));
    }
    if params.min_score.is_some_and(|score| !score.is_finite()) {
        return Err(ApiError::invalid("min_score must be a finite number"));
    }
    let query = AnomalyQuery {
        status: params.status,
        min_score: params.min_score,
        from: params.from.as_deref().map(|t| parse_time(t, "from")).transpose()?,
        to: params.to.as_deref().map(|t| parse_time(t, "to")).transpose()?,
        entity: params.entity,
        order: params.sort.unwrap_or_default(),
        cursor: params.cursor,
        limit,
    };
    let page = state.pipeline.store().anomalies(&query).await?;
    Ok(Json(QueuePage {
        items: page.items.iter().map(queue_item).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A transaction with everything known about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionDetail {
    /// The decision and queue fields.
    #[serde(flatten)]
    pub item: QueueItem,
    /// The model inputs it was scored on.
    #[schema(value_type = Object)]
    pub features: BTreeMap<String, Option<f64>>,
    /// The transaction as parsed (card numbers tokenised).
    #[schema(value_type = Object)]
    pub transaction: serde_json::Value,
    /// When the server received it (RFC 3339).
    pub received_at: String,
    /// Review status changes and other audit entries, oldest first.
    pub history: Vec<AuditView>,
    /// Labels received, oldest first.
    pub labels: Vec<LabelView>,
}

/// An audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Before.
    pub before: Option<String>,
    /// After.
    pub after: Option<String>,
    /// Note.
    pub note: Option<String>,
}

impl From<AuditEntry> for AuditView {
    fn from(entry: AuditEntry) -> Self {
        Self {
            at: entry.at.to_string(),
            actor: entry.actor,
            action: entry.action,
            before: entry.before,
            after: entry.after,
            note: entry.note,
        }
    }
}

/// A received label.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelView {
    /// `fraud` or `legit`.
    #[schema(value_type = String)]
    pub label: Label,
    /// Where it came from.
    pub source: String,
    /// Who sent it.
    pub actor: String,
    /// When (RFC 3339).
    pub at: String,
}

impl From<LabelEntry> for LabelView {
    fn from(entry: LabelEntry) -> Self {
        Self {
            label: entry.label,
            source: entry.source,
            actor: entry.actor,
            at: entry.at.to_string(),
        }
    }
}

/// One transaction: decision, features, reasons, review history, labels.
#[utoipa::path(get, path = "/api/v1/transactions/{id}", tag = "review",
    params(("id" = String, Path, description = "Transaction id")),
    responses((status = 200, body = TransactionDetail), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn transaction(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<TransactionDetail>, ApiError> {
    let store = state.pipeline.store();
    let stored = store
        .transaction(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("transaction {id:?} not found")))?;
    let history = store.audit(&id).await?.into_iter().map(AuditView::from).collect();
    let labels = store.labels(&id).await?.into_iter().map(LabelView::from).collect();
    let names = feature_names(&state, &stored.decision.model_version).await?;
    let features = stored
        .decision
        .features
        .iter()
        .enumerate()
        .map(|(idx, value)| {
            let name = names.get(idx).cloned().unwrap_or_else(|| format!("input_{idx}"));
            (name, value.is_finite().then_some(*value))
        })
        .collect();
    Ok(Json(TransactionDetail {
        features,
        transaction: transaction_view(
            &stored.decision.transaction_id,
            &stored.decision.body,
            &state.pipeline.model(),
        ),
        received_at: stored.decision.received_at.to_string(),
        item: queue_item(&stored),
        history,
        labels,
    }))
}

/// The input names of a model version: the serving model's, else the registry's (none when unknown).
pub(crate) async fn feature_names(state: &AppState, version: &str) -> Result<Vec<String>, ApiError> {
    let serving = state.pipeline.model();
    if version == serving.version() {
        return Ok(serving.artifact.manifest.feature_names.clone());
    }
    let models = state.pipeline.store().models().await?;
    let entry = models.into_iter().find(|m| m.version == version);
    Ok(entry.map(|m| m.feature_names).unwrap_or_default())
}

/// The stored transaction with the schema's names for its entities and attributes.
pub(crate) fn transaction_view(id: &str, body: &str, model: &ServingModel) -> serde_json::Value {
    if let Ok(serde_json::Value::Object(mut stored)) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(row) = stored.remove("row")
    {
        // a feature row, as stored: the model's features by name
        return serde_json::json!({"id": id, "row": row});
    }
    let Ok(tx) = serde_json::from_str::<fraudlens_core::Transaction>(body) else {
        return serde_json::Value::Null;
    };
    let Ok(inputs) = model.events() else {
        return serde_json::Value::Null;
    };
    let schema = &inputs.schema;
    let entities: serde_json::Map<String, serde_json::Value> = schema
        .entity_names()
        .iter()
        .zip(&tx.entities)
        .map(|(name, key)| (name.clone(), key.as_ref().map(|key| key.as_str()).into()))
        .collect();
    let attributes: serde_json::Map<String, serde_json::Value> = schema
        .attribute_names()
        .iter()
        .zip(&tx.attributes)
        .map(|(name, value)| {
            let value = match value {
                fraudlens_core::AttributeValue::Numeric(number) => number
                    .is_finite()
                    .then_some(*number)
                    .map_or(serde_json::Value::Null, Into::into),
                fraudlens_core::AttributeValue::Categorical(category) => category.clone().into(),
            };
            (name.clone(), value)
        })
        .collect();
    serde_json::json!({
        "id": tx.id.as_str(),
        "timestamp": tx.timestamp.to_string(),
        "amount": tx.amount.major(),
        "currency": tx.amount.currency().as_str(),
        "entities": entities,
        "attributes": attributes,
        "label": tx.label,
    })
}

/// A review decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    /// The new status.
    pub status: ReviewStatus,
    /// Why (kept in the audit log).
    #[schema(max_length = 4000)]
    pub note: Option<String>,
}

/// What a review changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewResult {
    /// The transaction.
    pub transaction_id: String,
    /// Status before.
    pub before: Option<ReviewStatus>,
    /// Status now.
    pub status: ReviewStatus,
    /// The label written (`confirmed_fraud` → fraud, `false_positive` → legit).
    #[schema(value_type = Option<String>)]
    pub label: Option<Label>,
    /// Whether the label reached the live entity state (the label-delayed risk features).
    pub label_applied: bool,
}

/// Sets a review status: audit-logged, and turned into a label.
#[utoipa::path(put, path = "/api/v1/anomalies/{id}", tag = "review",
    params(("id" = String, Path, description = "Transaction id")),
    request_body = ReviewInput,
    responses((status = 200, body = ReviewResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn review(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(input): Json<ReviewInput>,
) -> Result<Json<ReviewResult>, ApiError> {
    if input.note.as_ref().is_some_and(|note| note.chars().count() > 4000) {
        return Err(ApiError::invalid("note: at most 4000 characters"));
    }
    let outcome = state
        .pipeline
        .store()
        .review(&ReviewRequest {
            transaction_id: id.clone(),
            status: input.status,
            actor: caller.actor(),
            note: input.note,
            at: now(),
        })
        .await?;
    let label_applied = match outcome.label {
        Some(label) => state.pipeline.apply_review_label(&outcome.transaction, label).await,
        None => false,
    };
    Ok(Json(ReviewResult {
        transaction_id: id,
        before: outcome.before,
        status: input.status,
        label: outcome.label,
        label_applied,
    }))
}

/// A label (chargeback, confirmed fraud, or cleared).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelInput {
    /// The transaction.
    pub transaction_id: String,
    /// `fraud` or `legit` (also `1`/`0`, `true`/`false`).
    pub label: String,
    /// Where it came from (default `api`).
    pub source: Option<String>,
}

/// What happened to posted labels.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelsResult {
    /// Labels recorded.
    pub recorded: usize,
    /// Labels whose transaction is stored and reached the live entity state.
    pub applied: usize,
    /// Labels whose transaction is not stored: recorded, but they can never
    /// change a decision or a feature (a wrong id, or one from another system).
    pub unmatched: usize,
    /// The first unmatched transaction ids (at most 100).
    pub unmatched_ids: Vec<String>,
}

const MAX_LABELS: usize = 100_000;

/// Records labels: a JSON list, or CSV (`text/csv`) with `transaction_id,label[,source]`.
#[utoipa::path(post, path = "/api/v1/labels", tag = "review",
    request_body(content = Vec<LabelInput>, description = "JSON list, or text/csv with a header row"),
    responses((status = 200, body = LabelsResult), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn labels(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LabelsResult>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let inputs: Vec<LabelInput> = if content_type.starts_with("application/json") {
        serde_json::from_slice(&body).map_err(|error| ApiError::invalid(format!("labels: {error}")))?
    } else if content_type.starts_with("text/csv") {
        parse_label_csv(&body)?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or text/csv",
        ));
    };
    if inputs.is_empty() || inputs.len() > MAX_LABELS {
        return Err(ApiError::invalid(format!(
            "between 1 and {MAX_LABELS} labels per request"
        )));
    }
    let at = now();
    let labels = inputs
        .into_iter()
        .enumerate()
        .map(|(idx, input)| {
            let label =
                Label::parse(&input.label).map_err(|error| ApiError::invalid(format!("label {idx}: {error}")))?;
            let id = fraudlens_core::TransactionId::parse(&input.transaction_id)
                .map_err(|error| ApiError::invalid(format!("label {idx}: transaction_id: {error}")))?;
            Ok(NewLabel {
                transaction_id: id.as_str().to_owned(),
                label,
                source: input
                    .source
                    .unwrap_or_else(|| "api".to_owned())
                    .chars()
                    .take(64)
                    .collect(),
                actor: caller.actor(),
                at,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let outcome = state.pipeline.apply_labels(&labels).await?;
    Ok(Json(LabelsResult {
        recorded: labels.len(),
        applied: outcome.applied,
        unmatched: outcome.unmatched.len(),
        unmatched_ids: outcome
            .unmatched
            .iter()
            .take(100)
            .map(|idx| labels[*idx].transaction_id.clone())
            .collect(),
    }))
}

fn parse_label_csv(body: &[u8]) -> Result<Vec<LabelInput>, ApiError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(body);
    let header = reader
        .headers()
        .map_err(|error| ApiError::invalid(format!("labels CSV: {error}")))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let id_col = column("transaction_id").ok_or_else(|| ApiError::invalid("labels CSV: no transaction_id column"))?;
    let label_col = column("label").ok_or_else(|| ApiError::invalid("labels CSV: no label column"))?;
    let source_col = column("source");
    reader
        .records()
        .enumerate()
        .map(|(idx, record)| {
            let record = record.map_err(|error| ApiError::invalid(format!("labels CSV line {}: {error}", idx + 2)))?;
            Ok(LabelInput {
                transaction_id: record.get(id_col).unwrap_or("").to_owned(),
                label: record.get(label_col).unwrap_or("").to_owned(),
                source: source_col.and_then(|col| record.get(col)).map(str::to_owned),
            })
        })
        .collect()
}

/// A registered model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    /// Version.
    pub version: String,
    /// `staging`, `production` or `archived`.
    pub stage: String,
    /// Artifact directory.
    pub path: String,
    /// When registered (RFC 3339).
    pub registered_at: String,
    /// When last promoted (RFC 3339).
    pub promoted_at: Option<String>,
    /// Kind, metrics and training period.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// Whether this process is serving it now.
    pub serving: bool,
    /// Whether it is the shadow model (it scores every decision beside production).
    pub shadow: bool,
}

fn model_view(entry: ModelEntry, serving: &str) -> ModelView {
    ModelView {
        serving: entry.version == serving,
        shadow: entry.shadow,
        version: entry.version,
        stage: entry.stage.to_string(),
        path: entry.path,
        registered_at: entry.registered_at.to_string(),
        promoted_at: entry.promoted_at.map(|at| at.to_string()),
        summary: summary_view(&entry.summary),
    }
}

/// The registry's JSON summary, its `created_at` as strict RFC 3339 (`null`
/// when unreadable; entries registered before the fix hold the manifest's text).
fn summary_view(summary: &str) -> serde_json::Value {
    let mut summary: serde_json::Value = serde_json::from_str(summary).unwrap_or_else(|error| {
        tracing::warn!(%error, "a registry entry's summary is unreadable");
        serde_json::Value::Null
    });
    if let Some(created_at) = summary.get_mut("created_at") {
        *created_at = created_at.as_str().and_then(rfc3339).into();
    }
    summary
}

/// Every registered model, newest first.
#[utoipa::path(get, path = "/api/v1/models", tag = "models",
    responses((status = 200, body = Vec<ModelView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn models(State(state): State<Arc<AppState>>) -> Result<Json<Vec<ModelView>>, ApiError> {
    let serving = state.pipeline.model();
    let models = state.pipeline.store().models().await?;
    Ok(Json(
        models.into_iter().map(|m| model_view(m, serving.version())).collect(),
    ))
}

/// The model serving now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    /// Version.
    pub version: String,
    /// `gbdt` or `isolation_forest`.
    pub kind: &'static str,
    /// Artifact directory.
    pub path: String,
    /// When trained (RFC 3339); `null` when the artifact's manifest holds no readable time.
    pub created_at: Option<String>,
    /// Model inputs, in order.
    pub features: Vec<String>,
    /// Review threshold.
    pub review_threshold: f64,
    /// Decline threshold (none: never declined automatically).
    pub decline_threshold: Option<f64>,
    /// Validation metrics stored at training time.
    #[schema(value_type = Object)]
    pub validation: serde_json::Value,
    /// The shadow model this process scores beside it (`null`: none).
    pub shadow: Option<String>,
}

pub(crate) fn model_info(model: &ServingModel, shadow: Option<&ServingModel>) -> ModelInfo {
    let manifest = &model.artifact.manifest;
    ModelInfo {
        version: model.version().to_owned(),
        kind: model.kind(),
        path: model.path.display().to_string(),
        created_at: rfc3339(&manifest.created_at),
        features: manifest.feature_names.clone(),
        review_threshold: manifest.thresholds.review(),
        decline_threshold: manifest.thresholds.decline(),
        validation: serde_json::to_value(&manifest.validation).unwrap_or_default(),
        shadow: shadow.map(|shadow| shadow.version().to_owned()),
    }
}

/// The model this process is serving.
#[utoipa::path(get, path = "/api/v1/models/production", tag = "models",
    responses((status = 200, body = ModelInfo), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn production(State(state): State<Arc<AppState>>) -> Json<ModelInfo> {
    Json(model_info(
        &state.pipeline.model(),
        state.pipeline.shadow_model().as_deref(),
    ))
}

/// The live drift of the serving model.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveDriftInfo {
    /// The serving model's version.
    pub version: String,
    /// Most decisions the window holds (the latest ones stored by this process).
    pub window: usize,
    /// Decisions in the window now; PSI is published as a metric from 500 on.
    pub rows: usize,
    /// Per input (the largest PSI first) and for the score: `psi`, `ks`,
    /// `missing_reference`, `missing_live` and `status` (`stable`, `watch`, `act`).
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

/// The drift of the inputs and scores of the last decisions this process
/// stored, against the distributions the serving model was trained on
/// (409 for a model that keeps none: imported, or trained before drift
/// monitoring).
#[utoipa::path(get, path = "/api/v1/models/production/drift", tag = "models",
    responses((status = 200, body = LiveDriftInfo), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn production_drift(State(state): State<Arc<AppState>>) -> Result<Json<LiveDriftInfo>, ApiError> {
    let Some((version, report)) = state.pipeline.live_drift() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_reference",
            format!(
                "model {} keeps no reference distributions (imported, or trained before drift monitoring): retrain it",
                state.pipeline.model().version()
            ),
        ));
    };
    Ok(Json(LiveDriftInfo {
        version,
        window: fraudlens_pipeline::drift::WINDOW,
        rows: report.rows,
        report: serde_json::to_value(&report).unwrap_or_default(),
    }))
}

/// Makes a registered version the production model and starts serving it.
/// The artifact is loaded and verified first: a corrupt or mismatched one is
/// refused (422), one whose files changed since registration too (409), and
/// the current model keeps serving.
#[utoipa::path(post, path = "/api/v1/models/{version}/promote", tag = "models",
    params(("version" = String, Path, description = "Registered model version")),
    responses((status = 200, body = ModelInfo), (status = 404, body = ErrorBody),
        (status = 409, description = "The files changed since the version was registered", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn promote(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(version): Path<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    let model = state
        .pipeline
        .promote(&version, state.config.card_hash_key.as_ref(), &caller.actor())
        .await
        .map_err(ApiError::from)?;
    follow_in_mlflow(&state);
    Ok(Json(model_info(&model, state.pipeline.shadow_model().as_deref())))
}

/// With an MLflow server configured, points its aliases at the registry's
/// roles, in the background (a failure is logged and counted:
/// `fraudlens_mlflow_sync_failures_total`; the registry changed all the same).
pub(crate) fn follow_in_mlflow(state: &Arc<AppState>) {
    let Some(client) = state.config.mlflow.clone() else {
        return;
    };
    let store = state.pipeline.store().clone();
    tokio::spawn(async move {
        let synced = match fraudlens_pipeline::registry::roles(store.as_ref()).await {
            Ok(roles) => client
                .follow_roles(
                    roles.production.as_deref(),
                    roles.challenger.as_deref(),
                    roles.shadow.as_deref(),
                )
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = synced {
            metrics::counter!("fraudlens_mlflow_sync_failures_total").increment(1);
            tracing::error!(%error, "the MLflow aliases do not follow the registry's change");
        }
    });
}

/// The shadow model after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowInfo {
    /// The shadow model now (`null`: none).
    pub version: Option<String>,
    /// The shadow model before.
    pub before: Option<String>,
}

/// Makes a registered version the shadow model: every server and detector
/// on the store scores each decision with it too, off the decision path, and
/// stores its scores beside the decisions. It must load, be what was
/// registered (409 otherwise) and read the production model's inputs (422).
#[utoipa::path(post, path = "/api/v1/models/{version}/shadow", tag = "models",
    params(("version" = String, Path, description = "Registered model version")),
    responses((status = 200, body = ShadowInfo), (status = 404, body = ErrorBody),
        (status = 409, description = "The files changed since the version was registered", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn shadow(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(version): Path<String>,
) -> Result<Json<ShadowInfo>, ApiError> {
    let before = state
        .pipeline
        .shadow(Some(&version), state.config.card_hash_key.as_ref(), &caller.actor())
        .await
        .map_err(ApiError::from)?;
    follow_in_mlflow(&state);
    Ok(Json(ShadowInfo {
        version: Some(version),
        before,
    }))
}

/// Ends shadowing.
#[utoipa::path(delete, path = "/api/v1/models/shadow", tag = "models",
    responses((status = 200, body = ShadowInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn end_shadow(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ShadowInfo>, ApiError> {
    let before = state
        .pipeline
        .shadow(None, state.config.card_hash_key.as_ref(), &caller.actor())
        .await
        .map_err(ApiError::from)?;
    follow_in_mlflow(&state);
    Ok(Json(ShadowInfo { version: None, before }))
}
