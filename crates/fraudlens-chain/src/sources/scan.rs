//! The fallback for nodes without a history index: every block of the range
//! (`eth_getBlockByNumber` with full transactions, in batches), keeping the
//! transactions sent by or to the address, and their receipts for the status
//! and the created contract. Bounded by `eth.max_scan_blocks`.

use serde_json::{Value, json};

use super::{FetchLimits, too_much};
use crate::codec::{text_field, u64_field, u128_of};
use crate::history::ChainTx;
use crate::rpc::Rpc;
use crate::{Address, ChainError, History};

/// The address's transactions in blocks `from..=to`.
pub async fn fetch(
    rpc: &Rpc,
    address: Address,
    from: u64,
    to: u64,
    limits: FetchLimits,
) -> Result<History, ChainError> {
    let blocks = (to - from).saturating_add(1);
    if blocks > limits.max_scan_blocks {
        // the server's setup, not the address: every address of this node would hit it
        return Err(ChainError::Config(format!(
            "the node serves neither Otterscan's nor Alchemy's history methods, and a scan of blocks {from}..={to} \
             ({blocks} blocks) is over eth.max_scan_blocks = {}: use such a node, or set eth.from_block",
            limits.max_scan_blocks
        )));
    }
    let mut found: Vec<(Value, u64)> = Vec::new();
    let step = rpc.settings().batch_size as u64;
    let mut start = from;
    while start <= to {
        let end = to.min(start.saturating_add(step - 1));
        let calls: Vec<(&str, Value)> = (start..=end)
            .map(|n| ("eth_getBlockByNumber", json!([format!("{n:#x}"), true])))
            .collect();
        for (offset, answer) in rpc.batch("eth_getBlockByNumber", &calls).await?.into_iter().enumerate() {
            let block = answer.map_err(|failure| rpc.failure("eth_getBlockByNumber", failure))?;
            if block.is_null() {
                return Err(rpc.malformed(
                    "eth_getBlockByNumber",
                    format!("block {} not found", start + offset as u64),
                ));
            }
            let timestamp =
                u64_field(&block, "timestamp").map_err(|error| rpc.malformed("eth_getBlockByNumber", error))?;
            for tx in block
                .get("transactions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let touches = |field: &str| {
                    tx.get(field)
                        .and_then(Value::as_str)
                        .and_then(|text| Address::parse(text).ok())
                        == Some(address)
                };
                if touches("from") || touches("to") {
                    found.push((tx.clone(), timestamp));
                    if found.len() > limits.max_items {
                        return Err(too_much(address, limits));
                    }
                }
            }
        }
        if end == u64::MAX {
            break;
        }
        start = end + 1;
    }
    let calls: Vec<(&str, Value)> = found
        .iter()
        .map(|(tx, _)| {
            (
                "eth_getTransactionReceipt",
                json!([tx.get("hash").cloned().unwrap_or(Value::Null)]),
            )
        })
        .collect();
    let receipts = rpc.batch("eth_getTransactionReceipt", &calls).await?;
    let mut history = History::default();
    for ((tx, timestamp), receipt) in found.iter().zip(receipts) {
        let receipt = receipt.map_err(|failure| rpc.failure("eth_getTransactionReceipt", failure))?;
        if let Some(tx) =
            read(tx, &receipt, *timestamp).map_err(|reason| rpc.malformed("eth_getBlockByNumber", reason))?
        {
            history.transactions.push(tx);
        }
    }
    Ok(history)
}

fn read(tx: &Value, receipt: &Value, timestamp: u64) -> Result<Option<ChainTx>, String> {
    if receipt.is_null() {
        // geth keeps receipts of recent blocks only by default (--history.transactions)
        return Err("a transaction without its receipt (is the node's transaction index complete?)".to_owned());
    }
    // receipts before Byzantium carry no status: counted as succeeded
    if receipt
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(|status| status != "0x1")
    {
        return Ok(None);
    }
    let to = match tx.get("to") {
        Some(Value::String(to)) => Some(Address::parse(to).map_err(|error| error.to_string())?),
        _ => None,
    };
    let created = match receipt.get("contractAddress") {
        Some(Value::String(created)) => Some(Address::parse(created).map_err(|error| error.to_string())?),
        _ => None,
    };
    Ok(Some(ChainTx {
        hash: text_field(tx, "hash")?.to_ascii_lowercase(),
        block: u64_field(tx, "blockNumber").map_err(|error| error.to_string())?,
        index: u64_field(tx, "transactionIndex").map_err(|error| error.to_string())?,
        timestamp,
        from: Address::parse(text_field(tx, "from")?).map_err(|error| error.to_string())?,
        to,
        value_wei: u128_of(text_field(tx, "value")?).map_err(|error| error.to_string())?,
        created,
    }))
}
