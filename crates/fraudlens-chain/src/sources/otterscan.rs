//! Otterscan's `ots_searchTransactionsBefore(address, block, pageSize)`:
//! the transactions that touch the address, newest first, with their
//! receipts (status, created contract, block time). Pages hold whole blocks;
//! the next page starts before the oldest block of the last one.

use serde_json::{Value, json};

use super::{FetchLimits, too_much};
use crate::codec::{text_field, u64_field, u128_of};
use crate::history::ChainTx;
use crate::rpc::Rpc;
use crate::{Address, ChainError, History};

const METHOD: &str = "ots_searchTransactionsBefore";

/// The address's transactions in blocks `from..=to`.
pub async fn fetch(
    rpc: &Rpc,
    address: Address,
    from: u64,
    to: u64,
    limits: FetchLimits,
) -> Result<History, ChainError> {
    let mut history = History::default();
    // "before" is exclusive
    let mut cursor = to.saturating_add(1);
    // every hit counts towards a limit, kept or not (an address touched
    // mostly by internal calls still costs its pages)
    let mut hits = 0usize;
    loop {
        let page = rpc
            .call(METHOD, json!([address.to_string(), cursor, limits.page_size]))
            .await?;
        let txs = page
            .get("txs")
            .and_then(Value::as_array)
            .ok_or_else(|| rpc.malformed(METHOD, "no txs"))?;
        let receipts = page
            .get("receipts")
            .and_then(Value::as_array)
            .ok_or_else(|| rpc.malformed(METHOD, "no receipts"))?;
        if txs.len() != receipts.len() {
            return Err(rpc.malformed(METHOD, "txs and receipts differ in number"));
        }
        hits += txs.len();
        if hits > limits.max_items.saturating_mul(4) {
            return Err(too_much(address, limits));
        }
        let mut oldest = cursor;
        for (tx, receipt) in txs.iter().zip(receipts) {
            let read = read(tx, receipt, address).map_err(|reason| rpc.malformed(METHOD, reason))?;
            let (block, tx) = read;
            oldest = oldest.min(block);
            if let Some(tx) = tx.filter(|tx| (from..=to).contains(&tx.block)) {
                history.transactions.push(tx);
                if history.transactions.len() > limits.max_items {
                    return Err(too_much(address, limits));
                }
            }
        }
        let last = page
            .get("lastPage")
            .and_then(Value::as_bool)
            .ok_or_else(|| rpc.malformed(METHOD, "no lastPage"))?;
        // an empty page, the last one, or one reaching the range's start ends it;
        // a page that did not move back would loop
        if txs.is_empty() || last || oldest <= from || oldest >= cursor {
            break;
        }
        cursor = oldest;
    }
    Ok(history)
}

/// The block of a search result, and the transaction when it was sent by
/// or to the address and succeeded.
fn read(tx: &Value, receipt: &Value, address: Address) -> Result<(u64, Option<ChainTx>), String> {
    let block = u64_field(tx, "blockNumber").map_err(|error| error.to_string())?;
    let from = Address::parse(text_field(tx, "from")?).map_err(|error| error.to_string())?;
    let to = match tx.get("to") {
        Some(Value::String(to)) => Some(Address::parse(to).map_err(|error| error.to_string())?),
        _ => None,
    };
    if receipt.is_null() {
        return Err("a transaction without its receipt".to_owned());
    }
    // receipts before Byzantium (block 4,370,000 on mainnet) carry no status: counted as succeeded
    let succeeded = receipt
        .get("status")
        .and_then(Value::as_str)
        .is_none_or(|status| status == "0x1");
    // a search hit may only touch the address (an internal call): the dataset counts sent and received transactions
    if !succeeded || (from != address && to != Some(address)) {
        return Ok((block, None));
    }
    let created = match receipt.get("contractAddress") {
        Some(Value::String(created)) => Some(Address::parse(created).map_err(|error| error.to_string())?),
        _ => None,
    };
    let timestamp = u64_field(receipt, "timestamp")
        .or_else(|_| u64_field(tx, "blockTimestamp"))
        .map_err(|error| error.to_string())?;
    Ok((
        block,
        Some(ChainTx {
            hash: text_field(tx, "hash")?.to_ascii_lowercase(),
            block,
            index: u64_field(tx, "transactionIndex").unwrap_or(0),
            timestamp,
            from,
            to,
            value_wei: u128_of(text_field(tx, "value")?).map_err(|error| error.to_string())?,
            created,
        }),
    ))
}
