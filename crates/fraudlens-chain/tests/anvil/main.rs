//! The chain client against a real node: anvil (Foundry's), with a history
//! the test writes itself — Ether among accounts, a contract that takes
//! Ether, two ERC-20 tokens deployed and transferred, a failed transaction —
//! at block times it chooses, so that every feature can be computed by hand.
//!
//! Each test starts its own node (fraudlens-testkit's `anvil`, which finds
//! or installs the binary through scripts/anvil).

use fraudlens_chain::features::Value as FeatureValue;
use fraudlens_chain::rpc::RpcSettings;
use fraudlens_chain::{Address, AddressFeatures, Chain, EthSettings, SourceKind};
use fraudlens_core::Secret;
use fraudlens_testkit::anvil::{Anvil, Generated};

fn settings(url: &str, source: SourceKind) -> EthSettings {
    EthSettings {
        rpc_url: Some(Secret::new(url)),
        source,
        confirmations: 0,
        // a local node: no need to pace calls
        rpc: RpcSettings {
            requests_per_second: 0.0,
            ..RpcSettings::default()
        },
        ..EthSettings::default()
    }
}

/// The features of `address` from `source`.
async fn features(anvil: &Anvil, source: SourceKind, address: Address) -> AddressFeatures {
    let chain = Chain::new(&settings(&anvil.url, source)).expect("chain");
    chain.report(address, None).await.expect("report").features
}

fn number(features: &AddressFeatures, column: &str) -> f64 {
    features
        .get(column)
        .and_then(FeatureValue::as_f64)
        .unwrap_or_else(|| panic!("no number for {column:?}"))
}

fn text(features: &AddressFeatures, column: &str) -> Option<String> {
    match features.get(column) {
        Some(FeatureValue::Text(text)) => text.clone(),
        other => panic!("{column:?} is {other:?}"),
    }
}

/// Asserts each `(column, value)` to a relative 1e-12.
fn assert_columns(features: &AddressFeatures, expected: &[(&str, f64)], who: &str) {
    for (column, want) in expected {
        let got = number(features, column);
        let tolerance = 1e-12 * want.abs().max(1.0);
        assert!(
            (got - want).abs() <= tolerance,
            "{who}: {column:?} is {got}, computed by hand {want}"
        );
    }
}

#[tokio::test]
async fn features_of_a_generated_history_are_the_hand_computed_ones() {
    let anvil = Anvil::start();
    let g = Generated::write(&anvil).await;
    let a1 = features(&anvil, SourceKind::Otterscan, g.accounts[1]).await;
    // account 1: received 1.5 and 0.25 from account 0, 0.1 from account 2 and 0.3 from itself;
    // sent 0.5 to account 2, 0.2 to the vault, three token transfers (0 Ether, to the token
    // contracts) and 0.3 to itself (minutes 25, 40, 70, 80, 90, 100)
    let g1 = g.fees_paid(1);
    assert_columns(
        &a1,
        &[
            ("Avg min between sent tnx", (100.0 - 25.0) / 5.0),
            ("Avg min between received tnx", (100.0 - 10.0) / 3.0),
            ("Time Diff between first and last (Mins)", 90.0),
            ("Sent tnx", 6.0),
            ("Received Tnx", 4.0),
            ("Number of Created Contracts", 0.0),
            ("Unique Received From Addresses", 3.0),
            ("Unique Sent To Addresses", 5.0),
            ("min value received", 0.1),
            ("max value received ", 1.5),
            ("avg val received", (1.5 + 0.25 + 0.1 + 0.3) / 4.0),
            ("min val sent", 0.0),
            ("max val sent", 0.5),
            ("avg val sent", (0.5 + 0.2 + 0.3) / 6.0),
            ("min value sent to contract", 0.0),
            ("max val sent to contract", 0.2),
            ("avg value sent to contract", 0.2 / 4.0),
            ("total transactions (including tnx to create contract", 9.0),
            ("total Ether sent", 1.0),
            ("total ether received", 2.15),
            ("total ether sent contracts", 0.2),
            ("total ether balance", 10_000.0 + 2.15 - 1.0 - g1),
            (" Total ERC20 tnxs", 5.0),
            (" ERC20 total Ether received", 150.0),
            (" ERC20 total ether sent", 55.0),
            (" ERC20 total Ether sent contract", 20.0),
            (" ERC20 uniq sent addr", 2.0),
            (" ERC20 uniq rec addr", 1.0),
            (" ERC20 uniq sent addr.1", 1.0),
            (" ERC20 uniq rec contract addr", 2.0),
            (" ERC20 avg time between sent tnx", (90.0 - 70.0) / 2.0),
            (" ERC20 avg time between rec tnx", 60.0 - 50.0),
            (" ERC20 avg time between rec 2 tnx", 60.0 - 50.0),
            (" ERC20 avg time between contract tnx", 0.0),
            (" ERC20 min val rec", 50.0),
            (" ERC20 max val rec", 100.0),
            (" ERC20 avg val rec", 75.0),
            (" ERC20 min val sent", 5.0),
            (" ERC20 max val sent", 30.0),
            (" ERC20 avg val sent", 55.0 / 3.0),
            (" ERC20 min val sent contract", 20.0),
            (" ERC20 max val sent contract", 20.0),
            (" ERC20 avg val sent contract", 20.0),
            (" ERC20 uniq sent token name", 2.0),
            (" ERC20 uniq rec token name", 2.0),
        ],
        "account 1",
    );
    assert_eq!(text(&a1, " ERC20 most sent token type").as_deref(), Some("Gold"));
    // one Gold and one Silver received: the tie goes to the first name
    assert_eq!(text(&a1, " ERC20_most_rec_token_type").as_deref(), Some("Gold"));

    // account 0 created the three contracts (minutes 1, 2, 3), paid account 1 twice and
    // moved each token once; it received the two mints
    let a0 = features(&anvil, SourceKind::Otterscan, g.accounts[0]).await;
    assert_columns(
        &a0,
        &[
            ("Sent tnx", 4.0),
            ("Received Tnx", 0.0),
            ("Number of Created Contracts", 3.0),
            ("total transactions (including tnx to create contract", 7.0),
            ("Time Diff between first and last (Mins)", 60.0 - 1.0),
            ("Avg min between sent tnx", (60.0 - 10.0) / 3.0),
            ("Unique Sent To Addresses", 3.0),
            ("avg val sent", 1.75 / 4.0),
            ("total ether sent contracts", 0.0),
            ("total ether balance", 10_000.0 - 1.75 - g.fees_paid(0)),
            (" Total ERC20 tnxs", 4.0),
            (" ERC20 total Ether received", 1_000.0 + 1_000_000.0),
            (" ERC20 uniq rec addr", 1.0),
            (" ERC20 total ether sent", 150.0),
        ],
        "account 0",
    );
    assert_eq!(text(&a0, " ERC20_most_rec_token_type").as_deref(), Some("Gold"));

    // account 2: its failed transfer (minute 110) moved nothing and is not counted
    let a2 = features(&anvil, SourceKind::Otterscan, g.accounts[2]).await;
    assert_columns(
        &a2,
        &[
            ("Sent tnx", 1.0),
            ("Received Tnx", 1.0),
            ("total transactions (including tnx to create contract", 2.0),
            ("Time Diff between first and last (Mins)", 5.0),
            (" Total ERC20 tnxs", 2.0),
            (" ERC20 total Ether received", 35.0),
            (" ERC20 avg time between rec tnx", 20.0),
            ("total ether balance", 10_000.0 + 0.5 - 0.1 - g.fees_paid(2)),
        ],
        "account 2",
    );
    assert_eq!(text(&a2, " ERC20 most sent token type"), None);
}

#[tokio::test]
async fn the_otterscan_and_block_scan_sources_agree_and_auto_finds_otterscan() {
    let anvil = Anvil::start();
    let g = Generated::write(&anvil).await;
    let auto = Chain::new(&settings(&anvil.url, SourceKind::Auto)).expect("chain");
    assert_eq!(auto.source().await.expect("source"), SourceKind::Otterscan);
    let mut who = g.accounts.to_vec();
    who.extend([g.gold, g.silver, g.vault]);
    for address in who {
        let otterscan = features(&anvil, SourceKind::Otterscan, address).await;
        let scan = features(&anvil, SourceKind::Scan, address).await;
        assert_eq!(otterscan, scan, "{address}: the sources disagree");
    }
    // a contract: the report says so
    let report = auto.report(g.vault, None).await.expect("report");
    assert!(report.is_contract);
    assert_eq!(number(&report.features, "Received Tnx"), 1.0);
}

#[tokio::test]
async fn paging_caching_and_bounds() {
    let anvil = Anvil::start();
    let g = Generated::write(&anvil).await;
    let whole = features(&anvil, SourceKind::Otterscan, g.accounts[1]).await;

    // one transaction per Otterscan page: many pages, the same features
    let paged = Chain::new(&EthSettings {
        page_size: 1,
        ..settings(&anvil.url, SourceKind::Otterscan)
    })
    .expect("chain");
    assert_eq!(paged.report(g.accounts[1], None).await.expect("report").features, whole);

    // the history is cached: a second report of the same block asks only for what is past it
    let chain = Chain::new(&settings(&anvil.url, SourceKind::Otterscan)).expect("chain");
    let first = chain.report(g.accounts[1], None).await.expect("report");
    let calls = chain.calls();
    let second = chain.report(g.accounts[1], None).await.expect("report");
    assert_eq!(first.features, second.features);
    let again = chain.calls() - calls;
    assert!(again < calls, "the cached report took {again} calls, the first {calls}");

    // new activity after the cached block is seen
    let head = first.block;
    g.pay(&anvil, 2, 1, 700_000_000_000_000_000, 200).await;
    let later = chain.report(g.accounts[1], None).await.expect("report");
    assert_eq!(later.block, head + 1);
    assert_eq!(number(&later.features, "Received Tnx"), 5.0);
    assert_eq!(number(&later.features, "max value received "), 1.5);
    assert_eq!(
        later.features,
        features(&anvil, SourceKind::Otterscan, g.accounts[1]).await
    );
    // and a report as of an earlier block still sees only what was then
    let earlier = chain.report(g.accounts[1], Some(head)).await.expect("report");
    assert_eq!(earlier.features, whole);

    // the scan is bounded
    let bounded = Chain::new(&EthSettings {
        max_scan_blocks: 5,
        ..settings(&anvil.url, SourceKind::Scan)
    })
    .expect("chain");
    let error = bounded.report(g.accounts[1], None).await.expect_err("too many blocks");
    assert!(error.to_string().contains("eth.max_scan_blocks = 5"), "{error}");
    // and so is an address's history
    let small = Chain::new(&EthSettings {
        max_history_items: 3,
        ..settings(&anvil.url, SourceKind::Otterscan)
    })
    .expect("chain");
    let error = small.report(g.accounts[1], None).await.expect_err("too busy");
    assert!(error.to_string().contains("eth.max_history_items"), "{error}");
    // a block past the head is refused
    let error = chain
        .report(g.accounts[1], Some(head + 100))
        .await
        .expect_err("future block");
    assert!(error.to_string().contains("past the head"), "{error}");
}
