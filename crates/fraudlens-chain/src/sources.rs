//! Where an address's history comes from. Three sources, one result:
//!
//! - **Alchemy** (`alchemy_getAssetTransfers`): external, ERC-20 and
//!   internal transfers from and to the address, paged by `pageKey`.
//! - **Otterscan** (`ots_searchTransactionsBefore`, served by Erigon, Reth and
//!   anvil): the address's transactions with their receipts, paged backwards
//!   by block; ERC-20 transfers from `Transfer` logs.
//! - **Block scan**: every block of the range read in batches, for nodes with
//!   neither; bounded by `eth.max_scan_blocks`; ERC-20 transfers from logs.
//!
//! `auto` asks the node which it serves: Otterscan's API level first, then
//! Alchemy's method, else the scan.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::rpc::{METHOD_NOT_FOUND, Rpc};
use crate::{Address, ChainError, History};

pub mod alchemy;
pub mod logs;
pub mod otterscan;
pub mod scan;

/// Which history source to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Ask the node (Otterscan, then Alchemy, else a block scan).
    #[default]
    Auto,
    /// `alchemy_getAssetTransfers`.
    Alchemy,
    /// `ots_searchTransactionsBefore` and `Transfer` logs.
    Otterscan,
    /// Every block of the range, and `Transfer` logs.
    Scan,
}

impl SourceKind {
    /// The name used in config and output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Alchemy => "alchemy",
            Self::Otterscan => "otterscan",
            Self::Scan => "scan",
        }
    }
}

/// The source a node serves (never [`SourceKind::Auto`]).
pub async fn detect(rpc: &Rpc) -> Result<SourceKind, ChainError> {
    match rpc.call("ots_getApiLevel", json!([])).await {
        Ok(_) => return Ok(SourceKind::Otterscan),
        Err(error) if is_unsupported(&error) => {}
        Err(error) => return Err(error),
    }
    let probe = json!([{
        "fromBlock": "0x0", "toBlock": "0x0", "toAddress": Address::ZERO.to_string(),
        "category": ["external"], "maxCount": "0x1", "withMetadata": false,
    }]);
    match rpc.call("alchemy_getAssetTransfers", probe).await {
        Ok(_) => Ok(SourceKind::Alchemy),
        Err(error) if is_unsupported(&error) => Ok(SourceKind::Scan),
        Err(error) => Err(error),
    }
}

/// Whether an error says the node does not serve the method.
pub fn is_unsupported(error: &ChainError) -> bool {
    match error {
        ChainError::Rpc { code, message, .. } => {
            let message = message.to_ascii_lowercase();
            *code == METHOD_NOT_FOUND
                || message.contains("method not found")
                || message.contains("does not exist")
                || message.contains("not supported")
                || message.contains("unsupported method")
        }
        _ => false,
    }
}

/// Limits of a fetch.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    /// Most blocks a scan reads.
    pub max_scan_blocks: u64,
    /// Most transactions and transfers of one address.
    pub max_items: usize,
    /// Page size asked of Otterscan.
    pub page_size: u64,
}

/// The history of `address` in blocks `from..=to` from one source.
pub async fn fetch(
    rpc: &Rpc,
    kind: SourceKind,
    address: Address,
    from: u64,
    to: u64,
    limits: FetchLimits,
) -> Result<History, ChainError> {
    if from > to {
        return Ok(History::default());
    }
    let mut history = match kind {
        SourceKind::Alchemy => alchemy::fetch(rpc, address, from, to, limits).await?,
        SourceKind::Otterscan => {
            let mut history = otterscan::fetch(rpc, address, from, to, limits).await?;
            history.transfers = logs::transfers(rpc, address, from, to, limits).await?;
            history
        }
        SourceKind::Scan => {
            let mut history = scan::fetch(rpc, address, from, to, limits).await?;
            history.transfers = logs::transfers(rpc, address, from, to, limits).await?;
            history
        }
        SourceKind::Auto => {
            return Err(ChainError::Config("fetch needs a detected source".to_owned()));
        }
    };
    history.normalise();
    Ok(history)
}

/// The error for an address with more history than the limit.
pub(crate) fn too_much(address: Address, limits: FetchLimits) -> ChainError {
    ChainError::TooLarge(format!(
        "{address} has more than {} transactions and transfers (eth.max_history_items): too busy an address \
         to score from its whole history",
        limits.max_items
    ))
}
