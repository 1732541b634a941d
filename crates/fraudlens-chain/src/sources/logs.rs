//! ERC-20 transfers from `Transfer(address,address,uint256)` logs: two
//! `eth_getLogs` filters (the address as sender, as recipient) over the
//! range. A node that refuses a range as too large gets it in halves. ERC-721
//! transfers share the event's signature but index a fourth topic: they are
//! left out. Block times come from the logs (`blockTimestamp`) or, for nodes
//! that do not add it, from the blocks' headers.

use rustc_hash::FxHashMap;
use serde_json::{Value, json};

use super::{FetchLimits, too_much};
use crate::codec::{bytes_of, f64_of, str_field, u64_field, word_of};
use crate::history::TokenTransfer;
use crate::rpc::Rpc;
use crate::{Address, ChainError, address::keccak256};

const METHOD: &str = "eth_getLogs";
/// Halvings of a refused range before giving up.
const MAX_SPLITS: u32 = 20;

/// The `Transfer` event's topic.
pub fn transfer_topic() -> String {
    format!("0x{}", hex::encode(keccak256(b"Transfer(address,address,uint256)")))
}

/// The ERC-20 transfers sent or received by `address` in blocks `from..=to`.
pub async fn transfers(
    rpc: &Rpc,
    address: Address,
    from: u64,
    to: u64,
    limits: FetchLimits,
) -> Result<Vec<TokenTransfer>, ChainError> {
    let topic = transfer_topic();
    let mut logs = Vec::new();
    for filter in [
        json!([topic, address.topic()]),
        json!([topic, Value::Null, address.topic()]),
    ] {
        let mut ranges = vec![(from, to, 0u32)];
        while let Some((start, end, depth)) = ranges.pop() {
            let params =
                json!([{"fromBlock": format!("{start:#x}"), "toBlock": format!("{end:#x}"), "topics": filter}]);
            match rpc.call(METHOD, params).await {
                Ok(Value::Array(found)) => {
                    logs.extend(found);
                    if logs.len() > limits.max_items {
                        return Err(too_much(address, limits));
                    }
                }
                Ok(_) => return Err(rpc.malformed(METHOD, "not an array of logs")),
                Err(error) if start < end && depth < MAX_SPLITS && range_refused(&error) => {
                    let middle = start + (end - start) / 2;
                    ranges.push((middle + 1, end, depth + 1));
                    ranges.push((start, middle, depth + 1));
                }
                Err(error) => return Err(error),
            }
        }
    }
    let mut read = Vec::with_capacity(logs.len());
    let mut missing_times = Vec::new();
    for log in &logs {
        if let Some((transfer, has_time)) = read_log(log).map_err(|reason| rpc.malformed(METHOD, reason))? {
            if !has_time {
                missing_times.push(transfer.block);
            }
            read.push(transfer);
        }
    }
    if !missing_times.is_empty() {
        let times = block_times(rpc, missing_times).await?;
        for transfer in &mut read {
            if transfer.timestamp == 0 {
                transfer.timestamp = times.get(&transfer.block).copied().unwrap_or(0);
            }
        }
    }
    Ok(read)
}

/// Whether a node refused a log query for its range or result size.
fn range_refused(error: &ChainError) -> bool {
    match error {
        ChainError::Rpc { code, message, .. } => {
            let message = message.to_ascii_lowercase();
            *code == -32005
                || ["range", "too many", "limit", "exceed", "10000 results", "too large"]
                    .iter()
                    .any(|needle| message.contains(needle))
        }
        _ => false,
    }
}

/// An ERC-20 `Transfer` log (`None` for an ERC-721 one or a removed log), and whether it carried its block time.
fn read_log(log: &Value) -> Result<Option<(TokenTransfer, bool)>, String> {
    if log.get("removed").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let topics = log
        .get("topics")
        .and_then(Value::as_array)
        .ok_or("a log without topics")?;
    let data =
        bytes_of(str_field(log, "data").map_err(|error| error.to_string())?).map_err(|error| error.to_string())?;
    if topics.len() != 3 || data.len() != 32 {
        return Ok(None);
    }
    let word = |idx: usize| -> Result<[u8; 32], String> {
        word_of(topics[idx].as_str().ok_or("a topic that is not a string")?).map_err(|error| error.to_string())
    };
    let timestamp = u64_field(log, "blockTimestamp").ok();
    let transfer = TokenTransfer {
        hash: str_field(log, "transactionHash")
            .map_err(|error| error.to_string())?
            .to_ascii_lowercase(),
        block: u64_field(log, "blockNumber").map_err(|error| error.to_string())?,
        log_index: u64_field(log, "logIndex").map_err(|error| error.to_string())?,
        timestamp: timestamp.unwrap_or(0),
        token: Address::parse(str_field(log, "address").map_err(|error| error.to_string())?)
            .map_err(|error| error.to_string())?,
        from: Address::from_word(&word(1)?),
        to: Address::from_word(&word(2)?),
        raw_amount: f64_of(&format!("0x{}", hex::encode(&data))).map_err(|error| error.to_string())?,
        decimals: None,
    };
    Ok(Some((transfer, timestamp.is_some())))
}

/// The times of blocks, from their headers.
async fn block_times(rpc: &Rpc, mut blocks: Vec<u64>) -> Result<FxHashMap<u64, u64>, ChainError> {
    blocks.sort_unstable();
    blocks.dedup();
    let calls: Vec<(&str, Value)> = blocks
        .iter()
        .map(|n| ("eth_getBlockByNumber", json!([format!("{n:#x}"), false])))
        .collect();
    let mut times = FxHashMap::default();
    for (block, answer) in blocks.iter().zip(rpc.batch("eth_getBlockByNumber", &calls).await?) {
        let header = answer.map_err(|failure| rpc.failure("eth_getBlockByNumber", failure))?;
        let time = u64_field(&header, "timestamp").map_err(|error| rpc.malformed("eth_getBlockByNumber", error))?;
        times.insert(*block, time);
    }
    Ok(times)
}
