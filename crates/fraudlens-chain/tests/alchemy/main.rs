//! The Alchemy source and the JSON-RPC client's failure handling, against a
//! local stand-in that answers from recorded fixtures (fixtures/README.md):
//! pagination by `pageKey`, the three categories, retries of throttled and
//! failing calls, errors that are not retried, and what an error shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fraudlens_chain::features::Value as FeatureValue;
use fraudlens_chain::rpc::RpcSettings;
use fraudlens_chain::{Address, Chain, ChainError, EthSettings, SourceKind};
use fraudlens_core::Secret;
use fraudlens_testkit::stand::{Answer as StandAnswer, Received};
use serde_json::{Value, json};

const ME: &str = "0xd8da6bf26964af9d7eed9e03e53415d37aa96045";
const CONTRACT: &str = "0xc0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";
const USDC: &str = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";
/// The key in the stand-in's URL, which no message may show.
const KEY: &str = "k3y-s3cr3t";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/alchemy/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

/// An HTTP answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);
type Handler = Arc<dyn Fn(&Value) -> Answer + Send + Sync>;

/// A JSON-RPC stand-in on a free port; its URL carries [`KEY`] in the path, as Alchemy's do.
struct Stand {
    url: String,
    inner: fraudlens_testkit::stand::Stand,
}

impl Stand {
    async fn start(handler: Handler) -> Self {
        let inner = fraudlens_testkit::stand::Stand::start(Arc::new(move |request: &Received| {
            let (status, headers, body) = handler(&request.json());
            headers
                .into_iter()
                .fold(StandAnswer::new(status, body), |answer, (name, value)| {
                    answer.header(name, &value)
                })
        }))
        .await;
        Self {
            url: format!("{}/v2/{KEY}", inner.base),
            inner,
        }
    }

    fn requests(&self) -> usize {
        self.inner.requests()
    }

    fn seen(&self) -> Vec<Value> {
        self.inner.received().iter().map(Received::json).collect()
    }

    fn chain(&self, source: SourceKind, max_retries: u32) -> Chain {
        Chain::new(&EthSettings {
            rpc_url: Some(Secret::new(&self.url)),
            source,
            confirmations: 0,
            rpc: RpcSettings {
                requests_per_second: 0.0,
                max_retries,
                ..RpcSettings::default()
            },
            ..EthSettings::default()
        })
        .expect("chain")
    }
}

/// The answer to one call of a node that serves Alchemy's method (and not Otterscan's).
fn alchemy_node(call: &Value) -> Value {
    let id = call["id"].clone();
    let params = &call["params"];
    let result = match call["method"].as_str().unwrap_or_default() {
        "ots_getApiLevel" => {
            return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "the method ots_getApiLevel does not exist/is not available"}});
        }
        "alchemy_getAssetTransfers" => {
            let query = &params[0];
            if query["toBlock"] == "0x0" {
                // the source's probe
                return json!({"jsonrpc": "2.0", "id": id, "result": {"transfers": []}});
            }
            assert_eq!(query["category"], json!(["external", "internal", "erc20"]));
            assert_eq!(query["withMetadata"], json!(true));
            assert_eq!(query["maxCount"], json!("0x3e8"));
            match (query.get("fromAddress"), query.get("toAddress"), query.get("pageKey")) {
                (Some(from), None, None) if from == ME => fixture("sent-page-1"),
                (Some(from), None, Some(key)) if from == ME && key == "6f1e3a2c-page-2" => fixture("sent-page-2"),
                (None, Some(to), None) if to == ME => fixture("received-page-1"),
                (None, Some(_), None) => json!({"transfers": []}),
                other => panic!("unexpected query {other:?}"),
            }
        }
        "eth_blockNumber" => json!("0x10"),
        // 3.25 Ether
        "eth_getBalance" => json!("0x2d1a51c7e0050000"),
        "eth_getBlockByNumber" => json!({"number": params[0], "timestamp": "0x60ed9d00"}),
        "eth_getCode" if params[0] == CONTRACT || params[0] == USDC => json!("0x6080604052"),
        "eth_getCode" => json!("0x"),
        "eth_call" if params[0]["to"] == USDC => match params[0]["data"].as_str() {
            // name(): "USD Coin"
            Some("0x06fdde03") => json!(format!(
                "0x{:064x}{:064x}{}",
                32,
                8,
                format!("{:0<64}", "55534420436f696e")
            )),
            Some("0x95d89b41") => json!(format!("0x{:064x}{:064x}{}", 32, 4, format!("{:0<64}", "55534443"))),
            Some("0x313ce567") => json!(format!("0x{:064x}", 6)),
            _ => Value::Null,
        },
        other => panic!("unexpected method {other}"),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Answers a request (one call or a batch) as [`alchemy_node`] does.
fn answer(request: &Value) -> Answer {
    let body = match request {
        Value::Array(calls) => Value::Array(calls.iter().map(alchemy_node).collect()),
        call => alchemy_node(call),
    };
    (200, vec![], body.to_string())
}

fn number(value: Option<&FeatureValue>) -> f64 {
    value.and_then(FeatureValue::as_f64).expect("a number")
}

#[tokio::test]
async fn transfers_of_every_category_and_page_become_the_features() {
    let stand = Stand::start(Arc::new(answer)).await;
    let chain = stand.chain(SourceKind::Auto, 0);
    assert_eq!(chain.source().await.expect("source"), SourceKind::Alchemy);
    let report = chain
        .report(Address::parse(ME).expect("address"), None)
        .await
        .expect("report");
    assert_eq!(report.source, SourceKind::Alchemy);
    assert_eq!(
        (
            report.block,
            report.transactions,
            report.token_transfers,
            report.internal_transfers
        ),
        (16, 3, 2, 1)
    );
    let f = &report.features;
    let expected = [
        ("Sent tnx", 2.0),
        ("Received Tnx", 1.0),
        // sent at 13:31 and 13:51, last activity 14:01 (token transfers are not transactions here)
        ("Avg min between sent tnx", 20.0),
        ("Time Diff between first and last (Mins)", 30.0),
        ("Unique Sent To Addresses", 2.0),
        ("total Ether sent", 1.5),
        ("total ether received", 2.0),
        ("total ether sent contracts", 0.5),
        ("max val sent to contract", 0.5),
        ("total ether balance", 3.25),
        (" Total ERC20 tnxs", 2.0),
        (" ERC20 total ether sent", 250.0),
        (" ERC20 total Ether received", 100.0),
        (" ERC20 total Ether sent contract", 250.0),
        (" ERC20 uniq rec contract addr", 1.0),
        (" ERC20 uniq sent token name", 1.0),
    ];
    for (column, want) in expected {
        assert_eq!(number(f.get(column)), want, "{column}");
    }
    assert_eq!(
        f.get(" ERC20 most sent token type"),
        Some(&FeatureValue::Text(Some("USD Coin".into())))
    );
    // the second page was asked for with the first one's key, and the NFT left out
    let seen = stand.seen();
    let pages: Vec<&Value> = seen
        .iter()
        .filter(|request| request["method"] == "alchemy_getAssetTransfers")
        .map(|request| &request["params"][0])
        .collect();
    assert_eq!(pages.len(), 4, "probe, sent ×2, received: {pages:?}");
    assert_eq!(pages[2]["pageKey"], "6f1e3a2c-page-2");
    assert_eq!(pages[1]["toBlock"], "0x10");
}

#[tokio::test]
async fn throttled_and_failing_calls_are_retried_then_reported_without_the_key() {
    // HTTP 429 twice (Retry-After: 0), then answers
    let throttled = Arc::new(AtomicUsize::new(0));
    let count = throttled.clone();
    let stand = Stand::start(Arc::new(move |request: &Value| {
        if count.fetch_add(1, Ordering::SeqCst) < 2 {
            (429, vec![("retry-after", "0".to_owned())], "{}".to_owned())
        } else {
            answer(request)
        }
    }))
    .await;
    let chain = stand.chain(SourceKind::Alchemy, 3);
    assert_eq!(chain.head().await.expect("head after two 429s"), 16);
    assert_eq!(stand.requests(), 3);

    // a JSON-RPC "limit exceeded" in the body is retried as well
    let limited = Arc::new(AtomicUsize::new(0));
    let count = limited.clone();
    let stand = Stand::start(Arc::new(move |request: &Value| {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            let error = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": 429, "message": "Your app has exceeded its compute units per second capacity"}});
            (200, vec![], error.to_string())
        } else {
            answer(request)
        }
    }))
    .await;
    assert_eq!(stand.chain(SourceKind::Alchemy, 1).head().await.expect("head"), 16);

    // 503 every time: unreachable after 1 + max_retries tries; the key is not in the message
    let stand = Stand::start(Arc::new(|_: &Value| (503, vec![], "down".to_owned()))).await;
    let error = stand.chain(SourceKind::Alchemy, 2).head().await.expect_err("down");
    assert!(matches!(error, ChainError::Unreachable { .. }), "{error:?}");
    assert!(error.is_provider());
    let text = error.to_string();
    assert!(text.contains("after 3 tries") && !text.contains(KEY), "{text}");
    assert_eq!(stand.requests(), 3);

    // an error of the request itself is not retried
    let stand = Stand::start(Arc::new(|request: &Value| {
        let error = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32602, "message": "invalid 'fromBlock' param"}});
        (200, vec![], error.to_string())
    }))
    .await;
    let error = stand.chain(SourceKind::Alchemy, 3).head().await.expect_err("refused");
    assert!(matches!(&error, ChainError::Rpc { code: -32602, .. }), "{error:?}");
    assert_eq!(stand.requests(), 1);
    assert!(!format!("{error} {error:?}").contains(KEY));

    // nothing listening: unreachable, and no key shown
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v2/{KEY}", closed.local_addr().expect("addr"));
    drop(closed);
    let chain = Chain::new(&EthSettings {
        rpc_url: Some(Secret::new(url)),
        rpc: RpcSettings {
            max_retries: 0,
            ..RpcSettings::default()
        },
        ..EthSettings::default()
    })
    .expect("chain");
    let error = chain.head().await.expect_err("closed port");
    assert!(
        matches!(error, ChainError::Unreachable { .. }) && !error.to_string().contains(KEY),
        "{error}"
    );
}

#[tokio::test]
async fn a_json_rpc_error_sent_with_http_400_is_an_answer() {
    // Infura answers an unknown method with HTTP 400 and a JSON-RPC error: still "unsupported"
    let stand = Stand::start(Arc::new(|request: &Value| {
        if request["method"] == "ots_getApiLevel" {
            let error = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "The method ots_getApiLevel does not exist/is not available"}});
            (400, vec![], error.to_string())
        } else {
            answer(request)
        }
    }))
    .await;
    assert_eq!(
        stand.chain(SourceKind::Auto, 0).source().await.expect("source"),
        SourceKind::Alchemy
    );
    // an HTTP 4xx without a JSON-RPC body is the provider refusing: unreachable, the key not shown
    let stand = Stand::start(Arc::new(|_: &Value| (403, vec![], format!("Forbidden: /v2/{KEY}")))).await;
    let error = stand.chain(SourceKind::Alchemy, 3).head().await.expect_err("refused");
    assert!(matches!(error, ChainError::Unreachable { .. }), "{error:?}");
    assert!(
        error.to_string().contains("HTTP 403") && !error.to_string().contains(KEY),
        "{error}"
    );
    assert_eq!(stand.requests(), 1, "a 403 is not retried");
}

#[tokio::test]
async fn calls_are_paced_to_the_rate_limit() {
    let stand = Stand::start(Arc::new(answer)).await;
    let chain = Chain::new(&EthSettings {
        rpc_url: Some(Secret::new(&stand.url)),
        rpc: RpcSettings {
            requests_per_second: 20.0,
            ..RpcSettings::default()
        },
        ..EthSettings::default()
    })
    .expect("chain");
    let started = std::time::Instant::now();
    for _ in 0..6 {
        chain.head().await.expect("head");
    }
    // six calls at 20 a second cannot take less than the five intervals between them
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_provider_that_never_finishes_is_cut_off_and_concurrent_reports_are_bounded() {
    // every answer takes 30 s: a report gives up after its own limit, whatever the calls' timeouts
    let inner = fraudlens_testkit::stand::Stand::start(Arc::new(|_: &Received| {
        StandAnswer::new(200, "{}").after(std::time::Duration::from_secs(30))
    }))
    .await;
    let chain = Arc::new(
        Chain::new(&EthSettings {
            rpc_url: Some(Secret::new(format!("{}/v2/{KEY}", inner.base))),
            source: SourceKind::Alchemy,
            max_concurrent_reports: 1,
            report_timeout_seconds: 1,
            rpc: RpcSettings {
                requests_per_second: 0.0,
                max_retries: 0,
                ..RpcSettings::default()
            },
            ..EthSettings::default()
        })
        .expect("chain"),
    );
    let address = Address::parse(ME).expect("address");
    let started = std::time::Instant::now();
    let first = tokio::spawn({
        let chain = chain.clone();
        async move { chain.report(address, None).await }
    });
    // a second report while the first runs: refused at once, not queued
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let busy = chain.report(address, None).await.expect_err("busy");
    assert!(matches!(busy, ChainError::Busy(1)), "{busy:?}");
    assert!(busy.is_provider());
    let slow = first.await.expect("task").expect_err("cut off");
    assert!(matches!(slow, ChainError::Unreachable { .. }), "{slow:?}");
    assert!(
        slow.to_string().contains("took over 1 s") && !slow.to_string().contains(KEY),
        "{slow}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // the slot is free again once the first is over
    let again = chain.report(address, None).await.expect_err("still slow");
    assert!(matches!(again, ChainError::Unreachable { .. }), "{again:?}");
}
