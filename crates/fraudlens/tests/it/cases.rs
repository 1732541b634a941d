//! Case analysis on simulated traffic: similar past cases share the case's
//! fraud scenario far above chance; the narrative cites only evidence that
//! exists; the API and `fraudlens analyze` agree.

use std::collections::HashMap;

use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::serve::{Server, get, key, post, upload};
use crate::{fraudlens, ok, read_csv};

/// Transactions at the end of the simulated weeks served and analysed.
const SERVED: usize = 12_000;

/// Seven weeks with the four scenarios in comparable numbers (about 1,100
/// compromised-terminal, 470 account-takeover, 440 card-testing and 230
/// stolen-card frauds), and a model trained on the first five.
fn simulated(dir: &std::path::Path) {
    ok(
        dir,
        &[
            "simulate",
            "--customers",
            "800",
            "--terminals",
            "1600",
            "--days",
            "50",
            "--seed",
            "11",
            "--stolen-card-rate",
            "0.0008",
            "--compromised-terminal-rate",
            "0.0015",
            "--account-takeover-rate",
            "0.0015",
            "--card-testing-rate",
            "0.0008",
            "--out",
            "tx.csv",
        ],
    );
    ok(
        dir,
        &[
            "train",
            "--data",
            "tx.csv",
            "--train-to",
            "2026-02-05",
            "--out",
            "model",
        ],
    );
}

/// Candidates the vector index returns per case in the PostgreSQL run: fewer
/// than the flagged decisions stored, so the index, not the ranking, chooses.
const INDEX_CANDIDATES: &str = "40";
/// Flagged decisions the PostgreSQL run's server ranks all of: past as many
/// before a case, the index answers.
const EXACT_UP_TO: &str = "30";

/// On SQLite the exact search; on PostgreSQL the pgvector index
/// (`scripts/pgvector`), used past [`EXACT_UP_TO`] flagged decisions and
/// asked for only [`INDEX_CANDIDATES`] candidates per case, whose similar
/// cases are compared with the exact search's over all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_cases_share_the_scenario_far_above_chance() {
    let dir = tempfile::tempdir().unwrap();
    simulated(dir.path());
    for backend in [Backend::Sqlite, Backend::Postgres] {
        // a working directory of its own: the server's state snapshot is the store's
        let run = dir.path().join(format!("{backend:?}"));
        std::fs::create_dir(&run).unwrap();
        similar_cases_on(dir.path(), &run, backend).await;
    }
}

async fn similar_cases_on(data: &std::path::Path, dir: &std::path::Path, backend: Backend) {
    let db = TestDb::new(backend).await;
    let service = key(dir, &db.url, "service");
    let analyst = key(dir, &db.url, "analyst");
    let env: &[(&str, &str)] = match backend {
        Backend::Sqlite => &[],
        Backend::Postgres => &[
            ("FRAUDLENS_CASES__INDEX_CANDIDATES", INDEX_CANDIDATES),
            ("FRAUDLENS_CASES__MAX_CANDIDATES", EXACT_UP_TO),
        ],
    };
    let server = Server::start_with(dir, &db.url, Some(&data.join("model")), env);
    let client = reqwest::Client::new();
    let text = std::fs::read_to_string(data.join("tx.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let csv = format!("{}\n{}\n", lines[0], lines[lines.len() - SERVED..].join("\n"));
    assert_eq!(upload(&client, &server, &service, csv).await, SERVED as u64);

    // each served transaction's scenario ("none" for a genuine one)
    let (header, rows) = read_csv(&data.join("tx.csv"));
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (id_at, scenario_at) = (column("transaction_id"), column("fraud_scenario"));
    let served = &rows[rows.len() - SERVED..];
    let scenario: HashMap<&str, &str> = served
        .iter()
        .map(|row| (row[id_at].as_str(), row[scenario_at].as_str()))
        .collect();

    // the first half's truth becomes labels: the later cases' neighbours have outcomes
    let labels: Vec<Value> = served[..SERVED / 2]
        .iter()
        .map(|row| json!({"transaction_id": row[id_at], "label": if row[scenario_at] == "none" { "legit" } else { "fraud" }}))
        .collect();
    for chunk in labels.chunks(1_000) {
        let (status, body) = post(
            &client,
            &server.url("/api/v1/labels"),
            &analyst,
            &Value::from(chunk.to_vec()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // chance: how common each scenario is among the flagged decisions
    let mut flagged: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url("/api/v1/anomalies?limit=500");
        if let Some(next) = &cursor {
            url.push_str(&format!("&cursor={next}"));
        }
        let (status, page) = get(&client, &url, &analyst).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().unwrap() {
            flagged.push(item["transaction_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut per_scenario: HashMap<&str, usize> = HashMap::new();
    for id in &flagged {
        *per_scenario.entry(scenario[id.as_str()]).or_default() += 1;
    }

    // the later half's flagged frauds, analysed
    let cases: Vec<&String> = flagged
        .iter()
        .filter(|id| scenario[id.as_str()] != "none")
        .filter(|id| served[SERVED / 2..].iter().any(|row| &row[id_at] == *id))
        .take(40)
        .collect();
    assert!(cases.len() >= 10, "only {} flagged frauds to analyse", cases.len());
    let (mut same, mut total, mut expected) = (0usize, 0usize, 0.0f64);
    let (mut agreed, mut compared) = (0usize, 0usize);
    for id in &cases {
        let (status, analysis) = get(
            &client,
            &server.url(&format!("/api/v1/transactions/{id}/analysis")),
            &analyst,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{analysis}");
        let own = scenario[id.as_str()];
        let similar = analysis["similar_cases"].as_array().unwrap();
        assert!(!similar.is_empty(), "{analysis}");
        if backend == Backend::Postgres {
            // through the index, and like the exact search's (the CLI with the index off)
            assert_eq!(analysis["similar_search"], "index", "{analysis}");
            assert_eq!(
                analysis["candidates_compared"].as_u64().unwrap().to_string(),
                INDEX_CANDIDATES,
                "{analysis}"
            );
            let run = fraudlens(
                dir,
                &["analyze", id.as_str(), "--database", &db.url, "--json"],
                &[("FRAUDLENS_STORE__SIMILAR_INDEX", "off")],
            );
            assert_eq!(run.code, 0, "{}", run.stderr);
            let exact: Value = serde_json::from_str(&run.stdout).unwrap();
            assert_eq!(exact["similar_search"], "exact");
            let exact_ids: Vec<&str> = exact["similar_cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["transaction_id"].as_str().unwrap())
                .collect();
            compared += exact_ids.len();
            agreed += similar
                .iter()
                .filter(|c| exact_ids.contains(&c["transaction_id"].as_str().unwrap()))
                .count();
        } else {
            assert_eq!(analysis["similar_search"], "exact", "{analysis}");
        }
        for case in similar {
            let other = case["transaction_id"].as_str().unwrap();
            assert_ne!(other, id.as_str(), "a case is not its own neighbour");
            total += 1;
            same += usize::from(scenario.get(other).copied() == Some(own));
        }
        // by chance, a flagged decision has this scenario this often
        expected += similar.len() as f64 * per_scenario[own] as f64 / flagged.len() as f64;

        // every citation is evidence; the recommendation is one of three
        let ids: Vec<&str> = analysis["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        let narrative = &analysis["narrative"];
        assert_eq!(narrative["source"], "template");
        let citations = narrative["citations"].as_array().unwrap();
        assert!(!citations.is_empty(), "{narrative}");
        for cited in citations {
            assert!(
                ids.contains(&cited.as_str().unwrap()),
                "{cited} is not evidence: {analysis}"
            );
        }
        assert!(
            ["probable_false_positive", "investigate", "escalate"]
                .contains(&narrative["recommendation"].as_str().unwrap())
        );
    }
    let share = same as f64 / total as f64;
    let chance = expected / total as f64;
    eprintln!(
        "similar cases on {backend:?}: {same} of {total} share the case's scenario ({share:.2}); by chance {chance:.2}; {} cases, {} flagged decisions",
        cases.len(),
        flagged.len()
    );
    assert!(share >= 2.0 * chance, "share {share:.2}, chance {chance:.2}");
    if backend == Backend::Postgres {
        let agreement = agreed as f64 / compared as f64;
        eprintln!(
            "the vector index ({INDEX_CANDIDATES} candidates of {} flagged) found {agreed} of the exact search's {compared} similar cases ({agreement:.2})",
            flagged.len()
        );
        assert!(agreement >= 0.8, "agreement {agreement:.2}");
        return;
    }

    // not found, and the service role may not read cases
    let (status, body) = get(
        &client,
        &server.url("/api/v1/transactions/no-such-id/analysis"),
        &analyst,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = get(
        &client,
        &server.url(&format!("/api/v1/transactions/{}/analysis", cases[0])),
        &service,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // GET reads (no narrative kept yet); POST writes and keeps one, which GET then shows
    let path = server.url(&format!("/api/v1/transactions/{}/analysis", cases[0]));
    let (_, read) = get(&client, &path, &analyst).await;
    assert!(read["narrative_id"].is_null(), "{read}");
    let response = client.post(&path).header("x-api-key", &analyst).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let written: Value = response.json().await.unwrap();
    assert!(written["narrative_id"].is_i64(), "{written}");
    let (_, again) = get(&client, &path, &analyst).await;
    assert_eq!(again["narrative_id"], written["narrative_id"]);
    assert_eq!(again["narrative"], written["narrative"]);

    // the CLI gives the same analysis
    let (_, from_api) = get(
        &client,
        &server.url(&format!("/api/v1/transactions/{}/analysis", cases[0])),
        &analyst,
    )
    .await;
    let run = fraudlens(dir, &["analyze", cases[0], "--database", &db.url, "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let from_cli: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(from_cli["similar_cases"], from_api["similar_cases"]);
    assert_eq!(from_cli["narrative"], from_api["narrative"]);
    let run = fraudlens(dir, &["analyze", cases[0], "--database", &db.url], &[]);
    assert!(
        run.stdout.contains("[S1]") && run.stdout.contains("recommendation"),
        "{}",
        run.stdout
    );
    let run = fraudlens(dir, &["analyze", "no-such-id", "--database", &db.url], &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
}
