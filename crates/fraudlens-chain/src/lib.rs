//! Ethereum chain data for fraudlens: a JSON-RPC client ([`rpc`]), three
//! sources of an address's history ([`sources`]: Alchemy's asset transfers,
//! Otterscan's search, a bounded block scan), and the address's features in
//! the public labelled dataset's columns ([`features`]).
//!
//! ```text
//! address ─► Chain::report ─► source (cached up to the confirmed block) ─► History
//!         ─► balance, code of counterparties, token names ─► AddressFeatures (47 columns)
//! ```
//!
//! The result is a tabular row: scoring it is the same as scoring any row of
//! a model trained in tabular mode.

mod address;
mod chain;
pub mod codec;
pub mod features;
mod history;
pub mod rpc;
pub mod sources;

pub use address::{Address, AddressError, keccak256};
pub use chain::{AddressReport, Chain, EthSettings, TokenInfo};
pub use features::{AddressFeatures, COLUMNS};
pub use history::{ChainTx, History, InternalTransfer, TokenTransfer};
pub use sources::SourceKind;

/// Why chain data could not be had.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ChainError {
    /// The settings cannot work.
    #[error("eth: {0}")]
    Config(String),
    /// Not an address.
    #[error("{0}")]
    Address(#[from] AddressError),
    /// The provider did not answer, or kept failing (down, throttling, 5xx).
    #[error("the Ethereum provider {provider} is unreachable: {reason}")]
    Unreachable {
        /// The provider's scheme and host.
        provider: String,
        /// Why.
        reason: String,
    },
    /// The provider answered a call with an error.
    #[error("the Ethereum provider {provider} refused {method}: {message} (code {code})")]
    Rpc {
        /// The provider's scheme and host.
        provider: String,
        /// The method.
        method: String,
        /// The JSON-RPC error code.
        code: i64,
        /// The provider's message.
        message: String,
    },
    /// The provider answered something the method does not return.
    #[error("the Ethereum provider {provider} answered {method} with something unexpected: {reason}")]
    Malformed {
        /// The provider's scheme and host.
        provider: String,
        /// The method.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// More history than the limits allow.
    #[error("{0}")]
    TooLarge(String),
    /// As many reports as `eth.max_concurrent_reports` are running.
    #[error("{0} address reports are running already (eth.max_concurrent_reports): try again shortly")]
    Busy(usize),
}

impl ChainError {
    /// Whether the failure is no fault of the address (the provider
    /// unreachable, failing or answering nonsense, or too many reports at
    /// once), as opposed to the request or the settings: the API answers 503,
    /// and `eth features` stops rather than leave the address out.
    pub fn is_provider(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Rpc { .. } | Self::Malformed { .. } | Self::Busy(_)
        )
    }
}
