//! `POST /api/v1/eth/addresses/{address}/score` at the router: what is
//! refused before any provider is asked (a bad address, no provider
//! configured, a serving model of transactions). Scoring live addresses on a
//! node is tested on the binary (`crates/fraudlens/tests/it/eth.rs`).

use std::sync::Arc;

use axum::http::StatusCode;
use fraudlens_chain::rpc::RpcSettings;
use fraudlens_chain::{Chain, EthSettings};
use fraudlens_core::Secret;
use fraudlens_server::ServerConfig;
use serde_json::json;

use crate::Api;

const ADDRESS: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";

#[tokio::test]
async fn without_a_provider_an_address_is_503_and_a_bad_one_422() {
    let api = Api::new().await;
    let path = format!("/api/v1/eth/addresses/{ADDRESS}/score");
    let (status, headers, body) = api.send(api.post(&path, &json!({}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "eth_not_configured");
    assert!(
        !headers.contains_key("retry-after"),
        "retrying does not configure a provider"
    );
    for (bad, says) in [
        ("0x1234", "0x and 40 hex digits"),
        ("0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96046", "EIP-55 checksum"),
        ("0xD8dA6BF26964aF9D7eEd9e03E53415D37aA96045", ADDRESS),
        (
            "0x%F0%9F%92%A5d8da6bf26964af9d7eed9e03e53415d37aa9604",
            "0x and 40 hex digits",
        ),
    ] {
        let (status, _, body) = api
            .send(api.post(&format!("/api/v1/eth/addresses/{bad}/score"), &json!({})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_address", "{body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{bad}: {body}");
    }
    // scoring is the service role's
    let analyst = api.key(fraudlens_store::Role::Analyst, "analyst").await;
    let request = axum::http::Request::post(&path)
        .header("x-api-key", analyst)
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, _, _) = api.send(request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_model_of_transactions_cannot_score_an_address_and_the_provider_is_not_asked() {
    // a provider that would fail if asked: nothing listens there
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v2/secret-key", closed.local_addr().unwrap());
    drop(closed);
    let chain = Chain::new(&EthSettings {
        rpc_url: Some(Secret::new(url)),
        rpc: RpcSettings {
            max_retries: 0,
            ..RpcSettings::default()
        },
        ..EthSettings::default()
    })
    .unwrap();
    let chain = Arc::new(chain);
    let api = Api::with(ServerConfig {
        chain: Some(chain.clone()),
        ..ServerConfig::default()
    })
    .await;
    let (status, _, body) = api
        .send(api.post(&format!("/api/v1/eth/addresses/{ADDRESS}/score"), &json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "model_reads_transactions");
    assert_eq!(chain.calls(), 0);
}
