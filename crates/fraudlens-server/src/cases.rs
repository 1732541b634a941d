//! `GET /api/v1/transactions/{id}/analysis`: the case analysis of a stored
//! decision (fraudlens-cases) — its evidence with ids, the similar past
//! cases with their outcomes, and a narrative citing the evidence. `GET`
//! reads; `POST` writes a narrative (an LLM's when `[llm]` is configured
//! and its answer holds, else the rules') and keeps it with the case.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use crate::AppState;
use crate::error::{ApiError, ErrorBody, Json};

/// The analysis of a stored decision (reads only: its narrative is the
/// latest kept, else the rules' over this evidence, not kept).
#[utoipa::path(get, path = "/api/v1/transactions/{id}/analysis", tag = "review",
    params(("id" = String, Path, description = "The decision's transaction id")),
    responses(
        (status = 200, description = "`evidence` (ids `R…` reasons, `H…` the entity's history, `E…` related entities, `S…` similar cases), `similar_cases` with their review status and label, `similar_search` (`exact`: the newest flagged decisions ranked; `index`: the nearest by reasons from PostgreSQL's pgvector index, ranked), `narrative` {source, assessment, recommendation: probable_false_positive | investigate | escalate, citations}, `narrative_id` of the kept narrative shown (null: none kept yet)", content_type = "application/json"),
        (status = 404, description = "No decision with this id", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn analysis(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let analysis = analyze(&state, &id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no decision {id:?}")))?;
    metrics::histogram!("case_analysis_duration_seconds").record(started.elapsed().as_secs_f64());
    Ok(no_store(Json(analysis).into_response()))
}

/// Writes a new narrative of a stored decision — the LLM's when `[llm]` is
/// configured and its answer holds, else the rules' — keeps it with the
/// evidence it was written from, and answers the analysis that shows it.
#[utoipa::path(post, path = "/api/v1/transactions/{id}/analysis", tag = "review",
    params(("id" = String, Path, description = "The decision's transaction id")),
    responses(
        (status = 200, description = "The analysis, its `narrative` the one just written and kept (`narrative_id`); `narrative.note` says why an LLM's answer was not used", content_type = "application/json"),
        (status = 404, description = "No decision with this id", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn write_narrative(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut analysis = analyze(&state, &id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no decision {id:?}")))?;
    keep(&state, &mut analysis).await?;
    Ok(no_store(Json(analysis).into_response()))
}

/// A response no cache keeps (analyses and searches read cases).
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Writes and keeps a narrative of `analysis` with this server's LLM.
pub(crate) async fn keep(state: &AppState, analysis: &mut fraudlens_cases::Analysis) -> Result<(), ApiError> {
    fraudlens_cases::keep_narrative(state.pipeline.store().as_ref(), analysis, state.config.llm.as_deref())
        .await
        .map_err(case_error)
}

fn case_error(error: fraudlens_cases::CaseError) -> ApiError {
    match error {
        fraudlens_cases::CaseError::Store(error) => ApiError::from(error),
        fraudlens_cases::CaseError::Internal(reason) => {
            tracing::error!(%reason, "case analysis failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the case analysis failed",
            )
        }
    }
}

/// The analysis of case `id` with this server's settings and LLM (`None`:
/// no such decision); its narrative is kept. The API and the console's
/// case page both ask through it.
pub(crate) async fn analyze(state: &AppState, id: &str) -> Result<Option<fraudlens_cases::Analysis>, ApiError> {
    // the entity keys' names (terminal, card…) for the related-entities evidence
    let names: Vec<String> = state
        .pipeline
        .model()
        .events()
        .map(|inputs| inputs.schema.entity_names().to_vec())
        .unwrap_or_default();
    fraudlens_cases::analyze(state.pipeline.store().as_ref(), id, &names, &state.config.cases)
        .await
        .map_err(case_error)
}

/// `GET /api/v1/search` parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct SearchQuery {
    /// Words (1 to 200 characters): case and entity ids starting with them,
    /// notes and narratives holding every word.
    pub q: String,
    /// Hits of each kind, at most (1–100, default 20).
    pub limit: Option<u32>,
}

/// Search hits.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    /// The words searched.
    pub query: String,
    /// Cases, then entities, then notes, then narratives; the best first within each.
    pub hits: Vec<SearchHitView>,
}

/// One search hit.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SearchHitView {
    /// `case`, `entity`, `note` or `narrative`.
    pub kind: fraudlens_store::SearchKind,
    /// The case's transaction id, the entity, or the audit entry's subject.
    pub subject: String,
    /// When (RFC 3339): the decision's event time, the entity's latest, the note's or narrative's.
    pub at: String,
    /// What matched: the note or narrative, or a summary of the case or entity.
    pub text: String,
}

/// Searches cases and entities by id prefix, and review notes and case narratives by their words.
#[utoipa::path(get, path = "/api/v1/search", tag = "review",
    params(SearchQuery),
    responses(
        (status = 200, description = "The hits", body = SearchResponse),
        (status = 400, description = "No `q`, or a `limit` that is not a number", body = ErrorBody),
        (status = 422, description = "No words, more than 200 characters, or a limit outside 1–100", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn search(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(query): axum::extract::Query<SearchQuery>,
) -> Result<Response, ApiError> {
    let words = query.q.trim();
    if words.is_empty() || words.chars().count() > 200 || words.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "q: give 1 to 200 characters of words, without control characters",
        ));
    }
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit: 1 to 100"));
    }
    // Ethereum addresses (and their decisions' ids, `eth:ADDRESS@BLOCK`) are stored in
    // lower case: a checksummed address pasted in finds them
    let address = words.strip_prefix("eth:").unwrap_or(words);
    let hex = address.strip_prefix("0x").or_else(|| address.strip_prefix("0X"));
    let lowered;
    let words = if hex.is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_hexdigit())) {
        lowered = words.to_ascii_lowercase();
        lowered.as_str()
    } else {
        words
    };
    let hits = state.pipeline.store().search(words, limit).await?;
    Ok(no_store(
        Json(SearchResponse {
            query: words.to_owned(),
            hits: hits
                .into_iter()
                .map(|hit| SearchHitView {
                    kind: hit.kind,
                    subject: hit.subject,
                    at: hit.at.to_string(),
                    text: hit.text,
                })
                .collect(),
        })
        .into_response(),
    ))
}
