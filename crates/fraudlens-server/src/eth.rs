//! `POST /api/v1/eth/addresses/{address}/score`: an Ethereum address scored
//! from chain data. Its history comes from the configured provider
//! (`[eth]`), its features are the public address dataset's columns, and the
//! serving model — trained in tabular mode on such columns — decides. The
//! decision is stored like any other (id `eth:ADDRESS@BLOCK`, entity the
//! address), so the review queue, labels and audit work unchanged; scoring
//! the address again at the same block returns the stored decision.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fraudlens_chain::{Address, AddressReport, ChainError};
use fraudlens_pipeline::DecisionView;
use fraudlens_pipeline::eth::address_row;
use serde::Serialize;

use crate::AppState;
use crate::api::mark_replay;
use crate::error::{ApiError, ErrorBody, Json};
use crate::predictions::row_model;

/// An address's decision and what it was computed from.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AddressScore {
    /// The stored decision.
    #[serde(flatten)]
    pub decision: DecisionView,
    /// The chain data behind it.
    pub chain: ChainFacts,
}

/// The chain data behind an address's decision.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChainFacts {
    /// The address, EIP-55 checksummed.
    pub address: String,
    /// The block the features are as of.
    pub block: u64,
    /// That block's time (seconds since the epoch).
    pub block_time: u64,
    /// The history source: `alchemy`, `otterscan` or `scan`.
    pub source: String,
    /// Whether the address is a contract.
    pub is_contract: bool,
    /// Its balance in wei (a decimal string).
    pub balance_wei: String,
    /// Transactions in its history.
    pub transactions: usize,
    /// ERC-20 transfers in its history.
    pub token_transfers: usize,
    /// The features, by the dataset's column names (`null`: missing).
    #[schema(value_type = Object)]
    pub features: serde_json::Map<String, serde_json::Value>,
}

impl From<&AddressReport> for ChainFacts {
    fn from(report: &AddressReport) -> Self {
        Self {
            address: report.address.checksummed(),
            block: report.block,
            block_time: report.block_time,
            source: report.source.name().to_owned(),
            is_contract: report.is_contract,
            balance_wei: report.balance_wei.clone(),
            transactions: report.transactions,
            token_transfers: report.token_transfers,
            features: report
                .features
                .iter()
                .map(|(name, value)| (name.to_owned(), value.json()))
                .collect(),
        }
    }
}

/// A chain error as an API error: the provider's failures are 503 (retry), the request's 422.
fn chain_error(error: ChainError) -> ApiError {
    match &error {
        ChainError::Address(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_address", error.to_string()),
        ChainError::TooLarge(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "address_history_too_large",
            error.to_string(),
        ),
        ChainError::Config(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "eth_not_configured", error.to_string())
        }
        ChainError::Busy(_) => ApiError::overloaded(error.to_string()),
        _ => ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "eth_provider_unavailable",
                error.to_string(),
            )
        },
    }
}

/// Scores an Ethereum address from its chain history and stores the decision before answering.
#[utoipa::path(post, path = "/api/v1/eth/addresses/{address}/score", tag = "scoring",
    params(("address" = String, Path, description = "0x and 40 hex digits; a mixed-case address must carry its EIP-55 checksum")),
    responses(
        (status = 200, description = "The decision (stored before this response; `Idempotent-Replayed: true` when the address was scored at this block before) and the chain data behind it", body = AddressScore),
        (status = 422, description = "Not an address (`invalid_address`), an address with more history than `eth.max_history_items`, or a serving model not trained on address features", body = ErrorBody),
        (status = 409, description = "The address was scored at this block before and its features differ now (a reorganisation, or the provider's index caught up)", body = ErrorBody),
        (status = 503, description = "No provider configured, or one this node cannot serve (`eth_not_configured`); too many address lookups at once (`overloaded`); the provider unreachable or failing (`eth_provider_unavailable`); see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn score_address(
    State(state): State<Arc<AppState>>,
    Path(address): Path<String>,
) -> Result<Response, ApiError> {
    let address = Address::parse(&address).map_err(|error| chain_error(error.into()))?;
    let Some(chain) = state.config.chain.clone() else {
        return Err(ApiError {
            retry_after: None,
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "eth_not_configured",
                "this server has no Ethereum provider: set eth.rpc_url (or FRAUDLENS_ETH_RPC_URL)",
            )
        });
    };
    // the model is the one of the moment the request arrived, checked before the provider is asked
    let model = row_model(&state)?;
    let inputs = model
        .rows()
        .ok_or_else(|| ApiError::invalid("the serving model reads transactions"))?;
    let report = chain.report(address, None).await.map_err(chain_error)?;
    let row = address_row(inputs, &report)
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "model_not_for_addresses", message))?;
    let _in_flight = state.in_flight.admit(1).await?;
    let scored = state
        .pipeline
        .score_rows(&model, vec![Ok(row)])
        .await
        .pop()
        .unwrap_or_else(|| Err(fraudlens_pipeline::ScoreError::Unavailable("no result".to_owned())))?;
    let body = AddressScore {
        decision: DecisionView::from(&scored.record),
        chain: ChainFacts::from(&report),
    };
    Ok(mark_replay(&scored, Json(body).into_response()))
}
