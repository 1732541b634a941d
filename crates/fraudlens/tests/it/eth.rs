//! Ethereum addresses end to end, on a real node (anvil): a model trained in
//! tabular mode on a labelled address CSV in the public dataset's columns,
//! then live addresses scored through the API (stored, queued, reviewed) and
//! the CLI; `eth features` writing a training file from a list of addresses;
//! and what a caller gets for a bad address or a provider that is down.

use std::path::Path;
use std::sync::OnceLock;

use fraudlens_chain::COLUMNS;
use fraudlens_testkit::anvil::{Anvil, Generated};
use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::serve::{Server, get, is_error_body, key, post};
use crate::{fraudlens, ok, read_csv};

/// A labelled address CSV with the dataset's header: fraud where the
/// address lived a short while, received and sent almost nothing back
/// (the dataset's known pattern), legitimate where it lived long and sent a lot.
fn write_training_csv(path: &Path) {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut csv = csv::Writer::from_path(path).unwrap();
    let mut header = vec!["Index".to_owned(), "Address".to_owned(), "FLAG".to_owned()];
    header.extend(COLUMNS.iter().map(|c| (*c).to_owned()));
    csv.write_record(&header).unwrap();
    for index in 0..1_500u64 {
        let fraud = uniform() < 0.3;
        let mut row = vec![
            index.to_string(),
            format!("0x{:040x}", index * 7919 + 1),
            u8::from(fraud).to_string(),
        ];
        for column in COLUMNS {
            let value = match column.trim() {
                "Time Diff between first and last (Mins)" if fraud => format!("{:.2}", 60.0 * uniform()),
                "Time Diff between first and last (Mins)" => format!("{:.2}", 60.0 + 200_000.0 * uniform()),
                "Sent tnx" if fraud => format!("{}", (2.0 * uniform()) as u32),
                "Sent tnx" => format!("{}", 2 + (60.0 * uniform()) as u32),
                "Received Tnx" if fraud => format!("{}", 1 + (3.0 * uniform()) as u32),
                "Received Tnx" => format!("{}", 1 + (80.0 * uniform()) as u32),
                "ERC20 most sent token type" | "ERC20_most_rec_token_type" => {
                    ["Gold", "Silver", "Tether USD", ""][(4.0 * uniform()) as usize].to_owned()
                }
                _ => format!("{:.3}", 10.0 * uniform()),
            };
            row.push(value);
        }
        csv.write_record(&row).unwrap();
    }
    csv.flush().unwrap();
}

/// The model, trained once for the module's tests.
fn address_model() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_training_csv(&dir.path().join("addresses.csv"));
        let run = ok(dir.path(), &["train", "--data", "addresses.csv", "--out", "model"]);
        assert!(run.stderr.contains("tabular"), "{}", run.stderr);
        dir
    })
    .path()
}

fn eth_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FRAUDLENS_ETH_RPC_URL", url.to_owned()),
        ("FRAUDLENS_ETH__CONFIRMATIONS", "0".to_owned()),
        ("FRAUDLENS_ETH__RPC__REQUESTS_PER_SECOND", "0".to_owned()),
        ("FRAUDLENS_ETH__RPC__MAX_RETRIES", "1".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_addresses_are_scored_stored_and_reviewed_through_the_api() {
    let anvil = Anvil::start();
    let generated = Generated::write(&anvil).await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let env = eth_env(&anvil.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let server = Server::start_with(dir.path(), &db.url, Some(&address_model().join("model")), &env);
    let client = reqwest::Client::new();
    let score = |address: &str| server.url(&format!("/api/v1/eth/addresses/{address}/score"));

    // account 2 lived five minutes, sent once and received once: the fraud pattern
    let suspect = generated.accounts[2];
    let (status, body) = post(&client, &score(&suspect.checksummed()), &service, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["transaction_id"],
        format!("eth:{suspect}@{}", body["chain"]["block"])
    );
    assert_ne!(body["decision"], "approve", "{body}");
    assert_eq!(body["review_status"], "pending_review", "{body}");
    assert_eq!(body["chain"]["source"], "otterscan");
    assert_eq!(body["chain"]["address"], suspect.checksummed());
    assert_eq!(body["chain"]["features"]["Sent tnx"], 1.0);
    assert_eq!(
        body["chain"]["features"]["Time Diff between first and last (Mins)"],
        5.0
    );
    assert_eq!(body["chain"]["features"][" ERC20 total Ether received"], 35.0);
    // the reasons name the dataset's columns
    let reasons = body["reasons"].as_array().expect("reasons");
    assert!(!reasons.is_empty(), "{body}");
    let columns: Vec<&str> = COLUMNS.iter().map(|c| c.trim()).collect();
    for reason in reasons {
        let feature = reason["feature"].as_str().unwrap();
        assert!(columns.contains(&feature), "{feature} is not a dataset column");
    }
    assert!(
        reasons
            .iter()
            .any(|r| ["Time Diff between first and last (Mins)", "Sent tnx"].contains(&r["feature"].as_str().unwrap())),
        "{reasons:?}"
    );

    // the same address at the same block: the stored decision
    let response = client
        .post(score(&suspect.to_string()))
        .header("x-api-key", &service)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let replay: Value = response.json().await.unwrap();
    assert_eq!(replay["transaction_id"], body["transaction_id"]);

    // account 1 lived 90 minutes and sent six times: approved
    let (status, other) = post(
        &client,
        &score(&generated.accounts[1].to_string()),
        &service,
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_eq!(other["decision"], "approve", "{other}");

    // the queue, filtered by the address as entity; a review labels it
    let (status, queue) = get(
        &client,
        &server.url(&format!("/api/v1/anomalies?entity={suspect}")),
        &analyst,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let items = queue["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{queue}");
    assert_eq!(items[0]["transaction_id"], body["transaction_id"]);
    let id = body["transaction_id"].as_str().unwrap();
    let response = client
        .put(server.url(&format!("/api/v1/anomalies/{id}")))
        .header("x-api-key", &analyst)
        .json(&json!({"status": "confirmed_fraud", "note": "drainer pattern"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());

    // the address and its decision are found by search, checksummed or not
    for (query, want) in [
        (suspect.checksummed()[..12].to_owned(), suspect.to_string()),
        (
            format!("eth:{}", &suspect.checksummed()[..12]),
            body["transaction_id"].as_str().unwrap().to_owned(),
        ),
    ] {
        let (status, found) = get(&client, &server.url(&format!("/api/v1/search?q={query}")), &analyst).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        let subjects: Vec<&str> = found["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["subject"].as_str().unwrap())
            .collect();
        assert!(subjects.contains(&want.as_str()), "{query}: {found}");
    }

    // an analyst key may not score; bad addresses are 422 with a clear code
    let (status, _) = post(&client, &score(&suspect.to_string()), &analyst, &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in ["0x1234", "0xZZ9fd6e51aad88f6f4ce6ab8827279cfffb92266", "not-an-address"] {
        let (status, body) = post(&client, &score(bad), &service, &json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_address", "{body}");
    }
    // a mixed-case address whose case is not its checksum: the message gives the right one
    let mut typo: Vec<char> = suspect.checksummed().chars().collect();
    let flip = typo.iter().rposition(|c| c.is_ascii_alphabetic() && *c != 'x').unwrap();
    typo[flip] = if typo[flip].is_ascii_uppercase() {
        typo[flip].to_ascii_lowercase()
    } else {
        typo[flip].to_ascii_uppercase()
    };
    let typo: String = typo.into_iter().collect();
    let (status, body) = post(&client, &score(&typo), &service, &json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["message"].as_str().unwrap().contains(&suspect.checksummed()),
        "{body}"
    );

    // the node goes away: 503 with Retry-After, nothing stored, and the URL's key never shown
    drop(anvil);
    let response = client
        .post(score(&generated.accounts[3].to_string()))
        .header("x-api-key", &service)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert!(
        is_error_body(&body) && body["code"] == "eth_provider_unavailable",
        "{body}"
    );
    let (status, queue) = get(&client, &server.url("/api/v1/anomalies"), &analyst).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(
        queue["items"].as_array().unwrap().len(),
        1,
        "only account 2 was flagged: {queue}"
    );
    assert!(
        !queue.to_string().contains(&generated.accounts[3].to_string()),
        "{queue}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_scores_an_address_and_writes_a_training_file() {
    let anvil = Anvil::start();
    let generated = Generated::write(&anvil).await;
    let dir = tempfile::tempdir().unwrap();
    let model = address_model().join("model");
    let env = eth_env(&anvil.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();

    let suspect = generated.accounts[2].to_string();
    let run = fraudlens(
        dir.path(),
        &["eth", "score", &suspect, "--model", model.to_str().unwrap()],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&generated.accounts[2].checksummed()),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("via otterscan") || run.stdout.contains("from otterscan"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("reasons"), "{}", run.stdout);
    let json_run = fraudlens(
        dir.path(),
        &["eth", "score", &suspect, "--model", model.to_str().unwrap(), "--json"],
        &env,
    );
    assert_eq!(json_run.code, 0, "{}", json_run.stderr);
    let scored: Value = serde_json::from_str(&json_run.stdout).unwrap();
    assert_ne!(scored["decision"], "approve", "{scored}");
    assert_eq!(scored["features"]["Received Tnx"], 1.0);

    // a bad address is a usage error; a model of transactions is refused
    let run = fraudlens(
        dir.path(),
        &["eth", "score", "0x12", "--model", model.to_str().unwrap()],
        &env,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("0x and 40 hex digits"), "{}", run.stderr);

    // a list with a header, a label and a bad line
    let list = dir.path().join("list.csv");
    std::fs::write(
        &list,
        format!(
            "\u{feff}Address,FLAG\r\n{},0\r\n0xnot-an-address,1\r\n{},1\r\n\"{}\",\"0\"\r\n",
            generated.accounts[0], generated.accounts[2], generated.vault
        ),
    )
    .unwrap();
    let run = fraudlens(
        dir.path(),
        &["eth", "features", "--addresses", "list.csv", "--out", "features.csv"],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("line 3"), "{}", run.stderr);
    let (header, rows) = read_csv(&dir.path().join("features.csv"));
    let mut expected = vec!["Index".to_owned(), "Address".to_owned(), "FLAG".to_owned()];
    expected.extend(COLUMNS.iter().map(|c| (*c).to_owned()));
    assert_eq!(header, expected, "the dataset's header, spaces included");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][1], suspect);
    assert_eq!(rows[1][2], "1");
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows[1][column("Sent tnx")], "1");
    assert_eq!(rows[0][column("Number of Created Contracts")], "3");
    assert_eq!(rows[2][column("Received Tnx")], "1");
    // a file written by `eth features` trains a model as it is
    let run = ok(dir.path(), &["inspect", "--data", "features.csv"]);
    assert!(run.stdout.contains("Sent tnx"), "{}", run.stdout);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("features") && name != "features.csv")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
