//! The server's limits against the running binary: overload shedding.
//! No assertion depends on the machine's speed.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overload_of_batches_is_shed_with_503_and_the_accepted_ones_all_succeed() {
    const BATCH: usize = 250;
    const N_REQUESTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start_with(
        dir.path(),
        &db.url,
        Some(&trained().model()),
        &[("FRAUDLENS_SERVE__MAX_TRANSACTIONS_IN_FLIGHT", "500")],
    );
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    let batches: Vec<Value> = transactions(BATCH * N_REQUESTS)
        .chunks(BATCH)
        .map(|batch| Value::Array(batch.to_vec()))
        .collect();
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/transactions/batch");
    let send = |batch: Value| {
        let request = client.post(&url).header("x-api-key", &service).json(&batch);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let retry_after = response.headers().get("retry-after").cloned();
            (status, retry_after, response.json::<Value>().await.unwrap())
        }
    };
    let answers = futures_util::future::join_all(batches.iter().cloned().map(send)).await;
    let mut shed = Vec::new();
    for (batch, (status, retry_after, body)) in batches.iter().zip(answers) {
        match status {
            StatusCode::OK => assert_eq!((body["scored"].as_u64(), body["failed"].as_u64()), (Some(250), Some(0))),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["code"], "overloaded", "{body}");
                assert!(is_error_body(&body), "{body}");
                assert!(retry_after.is_some_and(|seconds| seconds.to_str().unwrap().parse::<u64>().unwrap() >= 1));
                shed.push(batch.clone());
            }
            other => panic!("{other}: {body}"),
        }
    }
    let n_shed = shed.len();
    assert!(
        n_shed > 0,
        "{N_REQUESTS} batches of {BATCH} at once against 500 in flight: none shed"
    );
    assert!(n_shed < N_REQUESTS, "some are accepted");
    assert_eq!(
        store.count_transactions().await.unwrap() as usize,
        (N_REQUESTS - n_shed) * BATCH,
        "a shed batch stores nothing"
    );
    // retried one at a time, the shed batches all go through
    for batch in shed {
        let (status, _, body) = send(batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(store.count_transactions().await.unwrap() as usize, N_REQUESTS * BATCH);
    eprintln!("overload: {n_shed} of {N_REQUESTS} batches of {BATCH} shed with 503 at 500 transactions in flight");
}
