//! One address's history as the sources return it: its transactions, the
//! ERC-20 transfers it sent or received, and (Alchemy only) the internal
//! transfers of Ether to or from it.

use serde::Serialize;

use crate::Address;

/// A successful transaction sent by the address, sent to it, or creating a
/// contract from it. Failed transactions moved nothing and are left out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainTx {
    /// Transaction hash.
    pub hash: String,
    /// Block number.
    pub block: u64,
    /// Position in the block (orders transactions of one block).
    pub index: u64,
    /// Block time, seconds since the epoch.
    pub timestamp: u64,
    /// Sender.
    pub from: Address,
    /// Recipient; `None` for a contract creation.
    pub to: Option<Address>,
    /// Ether sent, in wei.
    pub value_wei: u128,
    /// The contract it created, when the source tells.
    pub created: Option<Address>,
}

/// An ERC-20 `Transfer` event with the address as sender or recipient.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenTransfer {
    /// Hash of the transaction that emitted it.
    pub hash: String,
    /// Block number.
    pub block: u64,
    /// The log's index in its block.
    pub log_index: u64,
    /// Block time, seconds since the epoch.
    pub timestamp: u64,
    /// The token contract.
    pub token: Address,
    /// Sender (the zero address for a mint).
    pub from: Address,
    /// Recipient (the zero address for a burn).
    pub to: Address,
    /// Amount in the token's smallest unit.
    pub raw_amount: f64,
    /// The token's decimals, when the source tells (Alchemy does).
    pub decimals: Option<u8>,
}

/// An internal transfer of Ether (a contract paying the address, or the
/// address paying through a contract), as Alchemy reports them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InternalTransfer {
    /// Hash of the transaction it happened in.
    pub hash: String,
    /// Block number.
    pub block: u64,
    /// Block time, seconds since the epoch.
    pub timestamp: u64,
    /// Sender.
    pub from: Address,
    /// Recipient.
    pub to: Address,
    /// Ether, in wei.
    pub value_wei: u128,
}

/// The history of one address over a range of blocks.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct History {
    /// Transactions in chain order.
    pub transactions: Vec<ChainTx>,
    /// ERC-20 transfers in chain order.
    pub transfers: Vec<TokenTransfer>,
    /// Internal transfers in chain order (empty for sources that cannot see them).
    pub internal: Vec<InternalTransfer>,
}

impl History {
    /// Sorts into chain order and drops repeats (a page boundary, a
    /// self-transfer found both as sent and as received).
    pub fn normalise(&mut self) {
        self.transactions
            .sort_by(|a, b| (a.block, a.index, &a.hash).cmp(&(b.block, b.index, &b.hash)));
        self.transactions.dedup_by(|a, b| a.hash == b.hash);
        self.transfers
            .sort_by(|a, b| (a.block, a.log_index, &a.hash).cmp(&(b.block, b.log_index, &b.hash)));
        self.transfers
            .dedup_by(|a, b| a.hash == b.hash && a.log_index == b.log_index);
        self.internal
            .sort_by(|a, b| (a.block, &a.hash).cmp(&(b.block, &b.hash)));
        self.internal.dedup();
    }

    /// This history followed by a later one.
    pub fn extend(&mut self, later: History) {
        self.transactions.extend(later.transactions);
        self.transfers.extend(later.transfers);
        self.internal.extend(later.internal);
        self.normalise();
    }

    /// The part up to and including `block`.
    pub fn up_to(&self, block: u64) -> History {
        History {
            transactions: self
                .transactions
                .iter()
                .filter(|tx| tx.block <= block)
                .cloned()
                .collect(),
            transfers: self.transfers.iter().filter(|t| t.block <= block).cloned().collect(),
            internal: self.internal.iter().filter(|t| t.block <= block).cloned().collect(),
        }
    }

    /// Whether nothing is in it.
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty() && self.transfers.is_empty() && self.internal.is_empty()
    }
}

/// Seconds since the epoch of an ISO 8601 time (`2021-07-13T13:31:23.000Z`),
/// as Alchemy writes block times; read by the project's one date parser.
pub fn parse_utc(text: &str) -> Option<u64> {
    let at = fraudlens_core::Timestamp::parse(text, fraudlens_core::TimestampFormat::Datetime).ok()?;
    u64::try_from(at.as_millis() / 1000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(parse_utc("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_utc("2021-07-13T13:31:23.000Z"), Some(1_626_183_083));
        assert_eq!(parse_utc("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_utc("2021-13-13T13:31:23.000Z"), None);
        // the project's parser also reads the space form, as UTC
        assert_eq!(parse_utc("2021-07-13 13:31:23"), Some(1_626_183_083));
        assert_eq!(parse_utc("2021-07-13T15:31:23+02:00"), Some(1_626_183_083));
        assert_eq!(parse_utc("yesterday"), None);
        // before the epoch there is no block
        assert_eq!(parse_utc("1969-12-31T23:59:59Z"), None);
    }
}
