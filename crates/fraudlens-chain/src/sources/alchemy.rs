//! `alchemy_getAssetTransfers`: the address's external, ERC-20 and internal
//! transfers, asked once as sender and once as recipient, 1,000 per page,
//! following `pageKey` to the end. Amounts come from `rawContract.value`
//! (exact hex), block times from `metadata.blockTimestamp`.

use serde_json::{Value, json};

use super::{FetchLimits, too_much};
use crate::codec::{f64_of, str_field, u64_of, u128_of};
use crate::history::{ChainTx, InternalTransfer, TokenTransfer, parse_utc};
use crate::rpc::Rpc;
use crate::{Address, ChainError, History};

const METHOD: &str = "alchemy_getAssetTransfers";
/// Transfers per page (Alchemy's maximum).
const PAGE: &str = "0x3e8";

/// The address's history in blocks `from..=to`.
pub async fn fetch(
    rpc: &Rpc,
    address: Address,
    from: u64,
    to: u64,
    limits: FetchLimits,
) -> Result<History, ChainError> {
    let mut history = History::default();
    let mut items = 0usize;
    for side in ["fromAddress", "toAddress"] {
        let mut page_key: Option<String> = None;
        let mut seen_keys = rustc_hash::FxHashSet::default();
        loop {
            let mut params = json!({
                "fromBlock": format!("{from:#x}"),
                "toBlock": format!("{to:#x}"),
                side: address.to_string(),
                "category": ["external", "internal", "erc20"],
                "withMetadata": true,
                "excludeZeroValue": false,
                "maxCount": PAGE,
                "order": "asc",
            });
            if let Some(key) = &page_key {
                params["pageKey"] = Value::String(key.clone());
            }
            let result = rpc.call(METHOD, json!([params])).await?;
            let transfers = result
                .get("transfers")
                .and_then(Value::as_array)
                .ok_or_else(|| rpc.malformed(METHOD, "no transfers array"))?;
            items += transfers.len();
            if items > limits.max_items {
                return Err(too_much(address, limits));
            }
            for transfer in transfers {
                read_transfer(transfer, &mut history).map_err(|reason| rpc.malformed(METHOD, reason))?;
            }
            page_key = result
                .get("pageKey")
                .and_then(Value::as_str)
                .filter(|key| !key.is_empty())
                .map(str::to_owned);
            let Some(key) = &page_key else { break };
            // every page but the last is full, and no key comes twice: a provider
            // that pages forever is refused, not followed
            if transfers.is_empty() || !seen_keys.insert(key.clone()) {
                return Err(rpc.malformed(METHOD, "a page key that does not move on"));
            }
        }
    }
    Ok(history)
}

/// One transfer of the answer into the history.
fn read_transfer(transfer: &Value, history: &mut History) -> Result<(), String> {
    let field = |name: &str| str_field(transfer, name).map_err(|error| error.to_string());
    let address = |value: Option<&Value>| -> Result<Option<Address>, String> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Address::parse(text).map(Some).map_err(|error| error.to_string()),
            Some(_) => Err("an address that is not a string".to_owned()),
        }
    };
    let block = u64_of(field("blockNum")?).map_err(|error| error.to_string())?;
    let timestamp = transfer
        .pointer("/metadata/blockTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_utc)
        .ok_or("metadata.blockTimestamp missing (withMetadata)")?;
    let hash = field("hash")?.to_ascii_lowercase();
    let from = address(transfer.get("from"))?.ok_or("a transfer without a sender")?;
    let to = address(transfer.get("to"))?;
    let raw = transfer
        .pointer("/rawContract/value")
        .and_then(Value::as_str)
        .unwrap_or("0x0");
    match field("category")? {
        "external" => history.transactions.push(ChainTx {
            index: 0,
            hash,
            block,
            timestamp,
            from,
            to,
            value_wei: u128_of(raw).map_err(|error| error.to_string())?,
            created: None,
        }),
        "internal" => history.internal.push(InternalTransfer {
            hash,
            block,
            timestamp,
            from,
            to: to.ok_or("an internal transfer without a recipient")?,
            value_wei: u128_of(raw).map_err(|error| error.to_string())?,
        }),
        "erc20" => {
            let token =
                address(transfer.pointer("/rawContract/address"))?.ok_or("an ERC-20 transfer without its token")?;
            let decimals = transfer
                .pointer("/rawContract/decimal")
                .and_then(Value::as_str)
                .and_then(|text| u64_of(text).ok())
                .and_then(|n| u8::try_from(n).ok());
            // uniqueId is `hash:log:index` for a log
            let log_index = transfer
                .get("uniqueId")
                .and_then(Value::as_str)
                .and_then(|id| id.rsplit(':').next())
                .and_then(|index| u64_of(index).ok().or_else(|| index.parse().ok()))
                .unwrap_or(0);
            history.transfers.push(TokenTransfer {
                hash,
                block,
                log_index,
                timestamp,
                token,
                from,
                to: to.unwrap_or(Address::ZERO),
                raw_amount: f64_of(raw).map_err(|error| error.to_string())?,
                decimals,
            });
        }
        // NFTs and specials are not in the dataset's columns
        _ => {}
    }
    Ok(())
}
