//! [`Chain`]: one provider, the source it serves, and the caches that keep
//! a busy address from being fetched whole again — its history up to the
//! confirmed block, token names and decimals, and which addresses are
//! contracts.

use std::sync::Arc;

use fraudlens_core::Secret;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Mutex, OnceCell};

use crate::codec::{abi_string, bytes_of, u64_of, u128_of, word_usize};
use crate::features::{AddressFeatures, Facts};
use crate::rpc::{Rpc, RpcSettings};
use crate::sources::{self, FetchLimits, SourceKind};
use crate::{Address, ChainError, History};

/// `[eth]`: where chain data comes from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EthSettings {
    /// The node or provider (`http(s)://…`; Alchemy's URL carries the key).
    /// A secret: never logged or printed. Prefer `FRAUDLENS_ETH_RPC_URL`.
    pub rpc_url: Option<Secret>,
    /// Where history comes from: `auto`, `alchemy`, `otterscan` or `scan`.
    pub source: SourceKind,
    /// The first block of history read (0: all of it).
    pub from_block: u64,
    /// Most blocks the block-scan source reads for one address.
    pub max_scan_blocks: u64,
    /// Most transactions and token transfers of one address.
    pub max_history_items: usize,
    /// Transactions per page asked of Otterscan.
    pub page_size: u64,
    /// Blocks below the head that may still change (a reorganisation):
    /// history is cached only up to the head minus this many.
    pub confirmations: u64,
    /// Addresses whose history is cached (least recently fetched go first).
    pub cache_addresses: usize,
    /// Transactions and transfers cached in all, at most (the memory bound).
    pub cache_items: usize,
    /// Addresses fetched at once; more get "busy" at once (the API answers 503).
    pub max_concurrent_reports: usize,
    /// Longest time for one address's report, in seconds.
    pub report_timeout_seconds: u64,
    /// The JSON-RPC client.
    pub rpc: RpcSettings,
}

impl Default for EthSettings {
    fn default() -> Self {
        Self {
            rpc_url: None,
            source: SourceKind::Auto,
            from_block: 0,
            max_scan_blocks: 10_000,
            max_history_items: 100_000,
            page_size: 100,
            confirmations: 12,
            cache_addresses: 10_000,
            cache_items: 2_000_000,
            max_concurrent_reports: 16,
            report_timeout_seconds: 120,
            rpc: RpcSettings::default(),
        }
    }
}

/// A token's name and decimals, as its contract answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// `name()`, else `symbol()`, else the contract's address.
    pub name: String,
    /// `decimals()`, else 18.
    pub decimals: u8,
}

/// An address's features and what they were computed from.
#[derive(Clone, Debug, Serialize)]
pub struct AddressReport {
    /// The address.
    pub address: Address,
    /// The block the features are as of.
    pub block: u64,
    /// That block's time (seconds since the epoch).
    pub block_time: u64,
    /// The history source used.
    pub source: SourceKind,
    /// Whether the address is a contract.
    pub is_contract: bool,
    /// Its balance in wei, as a decimal string.
    pub balance_wei: String,
    /// Transactions in its history.
    pub transactions: usize,
    /// ERC-20 transfers in its history.
    pub token_transfers: usize,
    /// Internal transfers in its history (Alchemy only).
    pub internal_transfers: usize,
    /// The features.
    pub features: AddressFeatures,
}

/// Cached history of one address.
struct Cached {
    /// Complete up to and including this block.
    block: u64,
    history: Arc<History>,
    /// When it was last used (a counter).
    used: u64,
}

/// Chain data from one provider.
pub struct Chain {
    rpc: Rpc,
    settings: EthSettings,
    source: OnceCell<SourceKind>,
    histories: Mutex<Histories>,
    /// Reports running; a permit each.
    reports: Arc<tokio::sync::Semaphore>,
    tokens: Mutex<FxHashMap<Address, TokenInfo>>,
    contracts: Mutex<FxHashMap<Address, bool>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("provider", &self.rpc.provider())
            .finish_non_exhaustive()
    }
}

/// The cached histories: by address, with a use clock and their total size.
#[derive(Default)]
struct Histories {
    map: FxHashMap<Address, Cached>,
    clock: u64,
    items: usize,
}

fn size(history: &History) -> usize {
    history.transactions.len() + history.transfers.len() + history.internal.len()
}

/// Most entries of the token and contract caches before they are emptied.
const FACT_CACHE: usize = 100_000;

impl Chain {
    /// A client of the provider in `settings` (`rpc_url` must be set).
    pub fn new(settings: &EthSettings) -> Result<Self, ChainError> {
        let url = settings
            .rpc_url
            .as_ref()
            .filter(|url| !url.expose().trim().is_empty())
            .ok_or_else(|| {
                ChainError::Config("no Ethereum provider: set eth.rpc_url, FRAUDLENS_ETH_RPC_URL or --rpc".to_owned())
            })?;
        if settings.page_size == 0
            || settings.max_history_items == 0
            || settings.max_concurrent_reports == 0
            || settings.report_timeout_seconds == 0
        {
            return Err(ChainError::Config(
                "eth.page_size, eth.max_history_items, eth.max_concurrent_reports and eth.report_timeout_seconds \
                 must be at least 1"
                    .to_owned(),
            ));
        }
        Ok(Self {
            rpc: Rpc::new(url, &settings.rpc)?,
            settings: settings.clone(),
            source: OnceCell::new(),
            histories: Mutex::new(Histories::default()),
            reports: Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent_reports)),
            tokens: Mutex::new(FxHashMap::default()),
            contracts: Mutex::new(FxHashMap::default()),
        })
    }

    /// The provider's scheme and host.
    pub fn provider(&self) -> &str {
        self.rpc.provider()
    }

    /// JSON-RPC calls sent so far.
    pub fn calls(&self) -> u64 {
        self.rpc.calls()
    }

    /// The history source (asked of the node once, for `auto`).
    pub async fn source(&self) -> Result<SourceKind, ChainError> {
        let kind = self
            .source
            .get_or_try_init(|| async {
                match self.settings.source {
                    SourceKind::Auto => {
                        let kind = sources::detect(&self.rpc).await?;
                        tracing::info!(provider = %self.rpc.provider(), source = kind.name(), "Ethereum history source");
                        Ok::<_, ChainError>(kind)
                    }
                    kind => Ok(kind),
                }
            })
            .await?;
        Ok(*kind)
    }

    /// The newest block.
    pub async fn head(&self) -> Result<u64, ChainError> {
        let value = self.rpc.call("eth_blockNumber", json!([])).await?;
        let text = value
            .as_str()
            .ok_or_else(|| self.rpc.malformed("eth_blockNumber", "not a string"))?;
        u64_of(text).map_err(|error| self.rpc.malformed("eth_blockNumber", error))
    }

    fn limits(&self) -> FetchLimits {
        FetchLimits {
            max_scan_blocks: self.settings.max_scan_blocks,
            max_items: self.settings.max_history_items,
            page_size: self.settings.page_size,
        }
    }

    /// The history of `address` up to and including block `to`: the cached
    /// part, and the blocks after it fetched.
    pub async fn history(&self, address: Address, to: u64) -> Result<Arc<History>, ChainError> {
        let kind = self.source().await?;
        let from = self.settings.from_block;
        let cached = {
            let mut guard = self.histories.lock().await;
            let cache = &mut *guard;
            cache.clock += 1;
            let now = cache.clock;
            cache
                .map
                .get_mut(&address)
                .filter(|cached| cached.block <= to)
                .map(|cached| {
                    cached.used = now;
                    (cached.block, cached.history.clone())
                })
        };
        let (mut history, start) = match cached {
            Some((block, history)) => ((*history).clone(), block + 1),
            None => (History::default(), from),
        };
        let fresh = sources::fetch(&self.rpc, kind, address, start.max(from), to, self.limits()).await?;
        history.extend(fresh);
        if history.transactions.len() + history.transfers.len() > self.settings.max_history_items {
            return Err(sources::too_much(address, self.limits()));
        }
        let confirmed = to.saturating_sub(self.settings.confirmations);
        let keep = history.up_to(confirmed);
        let keep_size = size(&keep);
        if self.settings.cache_addresses > 0 && confirmed >= from && keep_size <= self.settings.cache_items {
            let mut guard = self.histories.lock().await;
            let cache = &mut *guard;
            if cache.map.get(&address).is_some_and(|cached| cached.block >= confirmed) {
                // a report of an earlier block: what is cached goes further
                return Ok(Arc::new(history));
            }
            if let Some(old) = cache.map.remove(&address) {
                cache.items -= size(&old.history);
            }
            // the least recently used go, until the new one fits both bounds
            while !cache.map.is_empty()
                && (cache.map.len() >= self.settings.cache_addresses
                    || cache.items + keep_size > self.settings.cache_items)
            {
                let Some(oldest) = cache
                    .map
                    .iter()
                    .min_by_key(|(_, cached)| cached.used)
                    .map(|(key, _)| *key)
                else {
                    break;
                };
                if let Some(evicted) = cache.map.remove(&oldest) {
                    cache.items -= size(&evicted.history);
                }
            }
            cache.items += keep_size;
            let used = cache.clock;
            cache.map.insert(
                address,
                Cached {
                    block: confirmed,
                    history: Arc::new(keep),
                    used,
                },
            );
        }
        Ok(Arc::new(history))
    }

    /// Which of `addresses` are contracts (have code) at block `at`.
    async fn contracts(&self, addresses: &FxHashSet<Address>, at: u64) -> Result<FxHashMap<Address, bool>, ChainError> {
        let mut known = FxHashMap::default();
        let mut ask = Vec::new();
        {
            let cache = self.contracts.lock().await;
            for address in addresses {
                match cache.get(address) {
                    Some(is) => {
                        known.insert(*address, *is);
                    }
                    None => ask.push(*address),
                }
            }
        }
        if ask.is_empty() {
            return Ok(known);
        }
        let calls: Vec<(&str, Value)> = ask
            .iter()
            .map(|address| ("eth_getCode", json!([address.to_string(), format!("{at:#x}")])))
            .collect();
        let answers = self.rpc.batch("eth_getCode", &calls).await?;
        let mut cache = self.contracts.lock().await;
        if cache.len() > FACT_CACHE {
            cache.clear();
        }
        for (address, answer) in ask.into_iter().zip(answers) {
            let code = answer.map_err(|failure| self.rpc.failure("eth_getCode", failure))?;
            let code = code.as_str().unwrap_or("0x");
            // an EIP-7702 delegation (0xef0100 + an address) is an account, not a contract
            let is = code.len() > 2 && !code.starts_with("0xef0100");
            // only "a contract" is cached: an account may get code later
            // (a counterfactual wallet), and a report at an earlier block must ask again
            if is {
                cache.insert(address, is);
            }
            known.insert(address, is);
        }
        Ok(known)
    }

    /// Names and decimals of tokens, from their contracts.
    async fn tokens(&self, tokens: &FxHashSet<Address>, at: u64) -> Result<FxHashMap<Address, TokenInfo>, ChainError> {
        let mut known = FxHashMap::default();
        let mut ask = Vec::new();
        {
            let cache = self.tokens.lock().await;
            for token in tokens {
                match cache.get(token) {
                    Some(info) => {
                        known.insert(*token, info.clone());
                    }
                    None => ask.push(*token),
                }
            }
        }
        if ask.is_empty() {
            return Ok(known);
        }
        // name(), symbol(), decimals()
        const SELECTORS: [&str; 3] = ["0x06fdde03", "0x95d89b41", "0x313ce567"];
        let calls: Vec<(&str, Value)> = ask
            .iter()
            .flat_map(|token| {
                SELECTORS.iter().map(move |selector| {
                    (
                        "eth_call",
                        json!([{"to": token.to_string(), "data": selector}, format!("{at:#x}")]),
                    )
                })
            })
            .collect();
        let answers = self.rpc.batch("eth_call", &calls).await?;
        // a token without the function reverts: that is an answer; any other
        // failure (a lagging backend, a timeout) fails the report and caches nothing
        for answer in &answers {
            if let Err(failure) = answer {
                let message = failure.message.to_ascii_lowercase();
                if failure.code != 3 && !message.contains("revert") {
                    return Err(self.rpc.failure("eth_call", failure.clone()));
                }
            }
        }
        let data = |answer: &Result<Value, crate::rpc::RpcFailure>| -> Vec<u8> {
            answer
                .as_ref()
                .ok()
                .and_then(Value::as_str)
                .and_then(|text| bytes_of(text).ok())
                .unwrap_or_default()
        };
        let mut cache = self.tokens.lock().await;
        if cache.len() > FACT_CACHE {
            cache.clear();
        }
        for (token, answers) in ask.into_iter().zip(answers.chunks(3)) {
            let name = abi_string(&data(&answers[0]))
                .or_else(|| abi_string(&data(&answers[1])))
                .unwrap_or_else(|| token.to_string());
            let decimals = word_usize(&data(&answers[2]))
                .and_then(|n| u8::try_from(n).ok())
                .filter(|n| *n <= 77)
                .unwrap_or(18);
            let info = TokenInfo { name, decimals };
            cache.insert(token, info.clone());
            known.insert(token, info);
        }
        Ok(known)
    }

    /// The features of `address` as of block `at` (default: the head), in
    /// at most `eth.report_timeout_seconds`; [`ChainError::Busy`] at once when
    /// `eth.max_concurrent_reports` are running.
    pub async fn report(&self, address: Address, at: Option<u64>) -> Result<AddressReport, ChainError> {
        let Ok(_permit) = self.reports.clone().try_acquire_owned() else {
            return Err(ChainError::Busy(self.settings.max_concurrent_reports));
        };
        let limit = std::time::Duration::from_secs(self.settings.report_timeout_seconds);
        match tokio::time::timeout(limit, self.report_now(address, at)).await {
            Ok(report) => report,
            Err(_) => Err(ChainError::Unreachable {
                provider: self.rpc.provider().to_owned(),
                reason: format!("the report of {address} took over {} s", limit.as_secs()),
            }),
        }
    }

    async fn report_now(&self, address: Address, at: Option<u64>) -> Result<AddressReport, ChainError> {
        let head = self.head().await?;
        let block = match at {
            Some(block) if block > head => {
                return Err(ChainError::Config(format!("block {block} is past the head ({head})")));
            }
            Some(block) => block,
            None => head,
        };
        let tag = format!("{block:#x}");
        let facts = self
            .rpc
            .batch(
                "eth_getBalance",
                &[
                    ("eth_getBalance", json!([address.to_string(), tag])),
                    ("eth_getBlockByNumber", json!([tag, false])),
                ],
            )
            .await?;
        let mut facts = facts.into_iter();
        let balance = facts
            .next()
            .ok_or_else(|| self.rpc.malformed("eth_getBalance", "no answer"))?
            .map_err(|failure| self.rpc.failure("eth_getBalance", failure))?;
        let balance_wei = balance
            .as_str()
            .ok_or_else(|| self.rpc.malformed("eth_getBalance", "not a string"))
            .and_then(|text| u128_of(text).map_err(|error| self.rpc.malformed("eth_getBalance", error)))?;
        let header = facts
            .next()
            .ok_or_else(|| self.rpc.malformed("eth_getBlockByNumber", "no answer"))?
            .map_err(|failure| self.rpc.failure("eth_getBlockByNumber", failure))?;
        let block_time = header
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|text| u64_of(text).ok())
            .ok_or_else(|| self.rpc.malformed("eth_getBlockByNumber", "no timestamp"))?;

        let history = self.history(address, block).await?;
        let mut counterparties: FxHashSet<Address> = history
            .transactions
            .iter()
            .filter(|tx| tx.from == address)
            .filter_map(|tx| tx.to)
            .chain(history.transfers.iter().filter(|t| t.from == address).map(|t| t.to))
            .collect();
        counterparties.insert(address);
        let contracts = self.contracts(&counterparties, block).await?;
        let token_set: FxHashSet<Address> = history.transfers.iter().map(|t| t.token).collect();
        let tokens = self.tokens(&token_set, block).await?;
        let is_contract = |a: Address| contracts.get(&a).copied().unwrap_or(false);
        let token_name = |token: Address| {
            tokens
                .get(&token)
                .map_or_else(|| token.to_string(), |info| info.name.clone())
        };
        let token_decimals = |token: Address| tokens.get(&token).map_or(18, |info| info.decimals);
        let features = AddressFeatures::compute(
            &history,
            &Facts {
                address,
                balance_wei,
                is_contract: &is_contract,
                token_name: &token_name,
                token_decimals: &token_decimals,
            },
        );
        metrics::counter!("eth_addresses_reported_total").increment(1);
        Ok(AddressReport {
            address,
            block,
            block_time,
            source: self.source().await?,
            is_contract: is_contract(address),
            balance_wei: balance_wei.to_string(),
            transactions: history.transactions.len(),
            token_transfers: history.transfers.len(),
            internal_transfers: history.internal.len(),
            features,
        })
    }
}
