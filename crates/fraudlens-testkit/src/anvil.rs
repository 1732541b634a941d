//! An anvil node (Foundry's local Ethereum node) for one test, and a
//! history the tests write on it at block times they choose, so that every
//! address feature can be computed by hand. `FRAUDLENS_ANVIL_BIN` names the
//! binary; unset, scripts/anvil installs it from npm and names it.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use fraudlens_chain::rpc::{Rpc, RpcSettings};
use fraudlens_chain::{Address, keccak256};
use fraudlens_core::Secret;
use serde_json::{Value, json};

/// Genesis time of every test node (2020-09-13).
pub const GENESIS: u64 = 1_600_000_000;
/// Wei per Ether.
const ETHER: u128 = 1_000_000_000_000_000_000;

/// The anvil binary: `FRAUDLENS_ANVIL_BIN`, else what scripts/anvil installs.
fn binary() -> String {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("FRAUDLENS_ANVIL_BIN") {
            return bin;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/anvil");
        let out = Command::new(script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|error| panic!("running {script}: {error}"));
        assert!(out.status.success(), "{script} could not install anvil");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
    .clone()
}

/// A running anvil, stopped when dropped.
pub struct Anvil {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Anvil {
    /// Starts anvil on a free port, with five accounts of 10,000 Ether.
    pub fn start() -> Self {
        let bin = binary();
        let mut child = Command::new(&bin)
            .args(["--port", "0", "--accounts", "5", "--balance", "10000"])
            .args(["--timestamp", &GENESIS.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {bin}: {error}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("anvil stopped before listening")
                .expect("anvil's output");
            if let Some(address) = line.trim().strip_prefix("Listening on ") {
                break format!("http://{}", address.trim());
            }
        };
        // anvil logs every call: keep reading, so that it never blocks on a full pipe
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }

    /// A client of this node.
    pub fn rpc(&self) -> Rpc {
        Rpc::new(
            &Secret::new(&self.url),
            &RpcSettings {
                requests_per_second: 0.0,
                ..RpcSettings::default()
            },
        )
        .expect("rpc")
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The history written by [`Generated::write`].
pub struct Generated {
    /// anvil's first five accounts.
    pub accounts: [Address; 5],
    /// The token "Gold" (18 decimals).
    pub gold: Address,
    /// The token "Silver" (6 decimals).
    pub silver: Address,
    /// The contract that takes Ether.
    pub vault: Address,
    /// Every receipt, in order.
    receipts: Vec<Value>,
}

/// A contract's creation code (compiled from contracts/Contracts.sol by contracts/compile.mjs).
fn bytecode(name: &str) -> &'static str {
    match name {
        "Token" => include_str!("../contracts/Token.bin").trim(),
        _ => include_str!("../contracts/Vault.bin").trim(),
    }
}

fn word(n: u128) -> String {
    format!("{n:064x}")
}

/// ABI encoding of a `string` argument's tail: its length and its bytes padded to words.
fn string_tail(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(text.len().div_ceil(32) * 32, 0);
    format!(
        "{}{}",
        word(text.len() as u128),
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// `Token(name, symbol, decimals, supply)`'s creation code.
fn token_code(name: &str, symbol: &str, decimals: u8, supply: u128) -> String {
    let name_tail = string_tail(name);
    let head = 4 * 32;
    let symbol_offset = head + name_tail.len() / 2;
    format!(
        "0x{}{}{}{}{}{}{}",
        bytecode("Token"),
        word(head as u128),
        word(symbol_offset as u128),
        word(u128::from(decimals)),
        word(supply),
        name_tail,
        string_tail(symbol)
    )
}

/// `transfer(to, amount)`'s call data.
fn transfer_call(to: Address, amount: u128) -> String {
    let selector: String = keccak256(b"transfer(address,uint256)")[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("0x{selector}{}{}", &to.topic()[2..], word(amount))
}

impl Generated {
    /// Sends one transaction in a block of its own at `GENESIS + minute·60`; its receipt.
    async fn send(
        rpc: &Rpc,
        minute: u64,
        from: Address,
        to: Option<Address>,
        value: u128,
        data: Option<String>,
        gas: Option<u64>,
    ) -> Value {
        rpc.call("evm_setNextBlockTimestamp", json!([GENESIS + minute * 60]))
            .await
            .expect("block time");
        let mut tx = json!({"from": from.to_string(), "value": format!("{value:#x}")});
        if let Some(to) = to {
            tx["to"] = json!(to.to_string());
        }
        if let Some(data) = data {
            tx["data"] = json!(data);
        }
        if let Some(gas) = gas {
            tx["gas"] = json!(format!("{gas:#x}"));
        }
        let hash = rpc.call("eth_sendTransaction", json!([tx])).await.expect("send");
        // anvil mines each transaction at once, but answers before the block is written
        for _ in 0..500 {
            let receipt = rpc
                .call("eth_getTransactionReceipt", json!([hash]))
                .await
                .expect("receipt");
            if !receipt.is_null() {
                return receipt;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("transaction {hash} was not mined")
    }

    /// Writes the history the tests compute by hand (block times in minutes after genesis):
    ///
    /// | minute | transaction |
    /// |---|---|
    /// | 1, 2, 3 | account 0 deploys Gold (1,000 minted to it), Silver (1,000,000, 6 decimals), the vault |
    /// | 10, 20 | account 0 pays account 1 1.5 and 0.25 Ether |
    /// | 25 | account 1 pays account 2 0.5 |
    /// | 30 | account 2 pays account 1 0.1 |
    /// | 40 | account 1 pays the vault 0.2 |
    /// | 50, 60 | account 0 sends account 1 100 Gold, 50 Silver |
    /// | 70, 80, 90 | account 1 sends 30 Gold to account 2, 20 Gold to the vault, 5 Silver to account 2 |
    /// | 100 | account 1 pays itself 0.3 |
    /// | 110 | account 2 tries to send more Gold than it has: the transaction fails |
    pub async fn write(anvil: &Anvil) -> Self {
        let rpc = anvil.rpc();
        let listed = rpc.call("eth_accounts", json!([])).await.expect("accounts");
        let accounts: Vec<Address> = listed
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| Address::parse(a.as_str().expect("address")).expect("address"))
            .collect();
        let a: [Address; 5] = accounts[..5].try_into().expect("five accounts");
        let mut receipts = Vec::new();
        let created = |receipt: &Value| {
            Address::parse(receipt["contractAddress"].as_str().expect("a created contract")).expect("address")
        };
        let r = Self::send(
            &rpc,
            1,
            a[0],
            None,
            0,
            Some(token_code("Gold", "GLD", 18, 1_000 * ETHER)),
            None,
        )
        .await;
        let gold = created(&r);
        receipts.push(r);
        let r = Self::send(
            &rpc,
            2,
            a[0],
            None,
            0,
            Some(token_code("Silver", "SLV", 6, 1_000_000_000_000)),
            None,
        )
        .await;
        let silver = created(&r);
        receipts.push(r);
        let r = Self::send(&rpc, 3, a[0], None, 0, Some(format!("0x{}", bytecode("Vault"))), None).await;
        let vault = created(&r);
        receipts.push(r);
        let payments = [
            (10, a[0], a[1], 1_500),
            (20, a[0], a[1], 250),
            (25, a[1], a[2], 500),
            (30, a[2], a[1], 100),
            (40, a[1], vault, 200),
        ];
        for (minute, from, to, milli) in payments {
            receipts.push(Self::send(&rpc, minute, from, Some(to), milli * ETHER / 1_000, None, None).await);
        }
        let token_transfers = [
            (50, a[0], gold, a[1], 100 * ETHER),
            (60, a[0], silver, a[1], 50_000_000),
            (70, a[1], gold, a[2], 30 * ETHER),
            (80, a[1], gold, vault, 20 * ETHER),
            (90, a[1], silver, a[2], 5_000_000),
        ];
        for (minute, from, token, to, amount) in token_transfers {
            let data = Some(transfer_call(to, amount));
            receipts.push(Self::send(&rpc, minute, from, Some(token), 0, data, None).await);
        }
        receipts.push(Self::send(&rpc, 100, a[1], Some(a[1]), 300 * ETHER / 1_000, None, None).await);
        let failed = Self::send(
            &rpc,
            110,
            a[2],
            Some(gold),
            0,
            Some(transfer_call(a[1], u128::MAX)),
            Some(100_000),
        )
        .await;
        assert_eq!(failed["status"], "0x0", "the over-spend must fail");
        receipts.push(failed);
        for receipt in &receipts {
            assert!(receipt["blockNumber"].is_string());
        }
        Self {
            accounts: a,
            gold,
            silver,
            vault,
            receipts,
        }
    }

    /// Account `from` pays account `to` `wei` at minute `minute`.
    pub async fn pay(&self, anvil: &Anvil, from: usize, to: usize, wei: u128, minute: u64) {
        let receipt = Self::send(
            &anvil.rpc(),
            minute,
            self.accounts[from],
            Some(self.accounts[to]),
            wei,
            None,
            None,
        )
        .await;
        assert_eq!(receipt["status"], "0x1");
    }

    /// Ether account `n` paid in fees (gas used × its price, failed transactions included).
    pub fn fees_paid(&self, n: usize) -> f64 {
        let from = self.accounts[n];
        let wei: u128 = self
            .receipts
            .iter()
            .filter(|r| Address::parse(r["from"].as_str().expect("from")).expect("address") == from)
            .map(|r| {
                let hex = |name: &str| u128::from_str_radix(&r[name].as_str().expect(name)[2..], 16).expect(name);
                hex("gasUsed") * hex("effectiveGasPrice")
            })
            .sum();
        wei as f64 / ETHER as f64
    }
}
