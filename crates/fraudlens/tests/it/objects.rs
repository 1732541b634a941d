//! Models on object storage through the real binary, against a real
//! S3-compatible server (`FRAUDLENS_TEST_S3`, moto, started by `scripts/s3`):
//! `models register --upload-to s3://…` uploads the directory and registers
//! its URL; `serve` downloads it, verifies it and serves it; a promotion to
//! a model whose objects were tampered with or removed is refused, and the
//! current model keeps serving.

use std::path::Path;

use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::Value;

use crate::model::{train_shared, version_of};
use crate::serve::{Server, get, key, post, transactions};
use crate::{fraudlens, ok};

fn endpoint() -> String {
    std::env::var("FRAUDLENS_TEST_S3")
        .expect("FRAUDLENS_TEST_S3: run through scripts/test, or `source scripts/s3` first")
}

/// The environment that points the binary's S3 client at the test server.
fn s3_env(endpoint: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("AWS_ENDPOINT", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
}

/// A new bucket on the test server (moto takes unsigned requests).
async fn bucket() -> String {
    let name = format!("models-{}", std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos());
    let response = reqwest::Client::new()
        .put(format!("{}/{name}", endpoint()))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    name
}

/// Writes `bytes` over an object (or, `None`, deletes it), as the owner of
/// the bucket (moto checks who, not the signature).
async fn tamper(bucket: &str, key: &str, bytes: Option<&'static [u8]>) {
    let url = format!("{}/{bucket}/{key}", endpoint());
    let client = reqwest::Client::new();
    let request = match bytes {
        Some(bytes) => client.put(url).body(bytes),
        None => client.delete(url),
    };
    let response = request
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

fn train(dir: &Path, out: &str, trees: &str) -> String {
    let run = train_shared(dir, out, &["--trees", trees], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    version_of(&dir.join(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_on_s3_are_uploaded_downloaded_verified_and_refused_when_tampered_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = TestDb::new(Backend::Sqlite).await;
    let bucket = bucket().await;
    let cache = path.join("cache");
    let endpoint = endpoint();
    let mut env = s3_env(&endpoint);
    env.push(("FRAUDLENS_ARTIFACTS__CACHE_DIR", cache.to_str().unwrap()));
    let first = train(path, "first", "5");
    let second = train(path, "second", "8");
    let third = train(path, "third", "3");
    let base = format!("s3://{bucket}/fraudlens");
    for dir in ["first", "second", "third"] {
        let run = fraudlens(
            path,
            &["models", "register", dir, "--upload-to", &base, "--database", &db.url],
            &env,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("uploaded {dir} to {base}/")),
            "{}",
            run.stderr
        );
    }
    let listed = ok(path, &["models", "list", "--database", &db.url]).stdout;
    assert!(listed.contains(&format!("{base}/{first}")), "{listed}");
    // the local directories go: what serves comes from the bucket
    for dir in ["first", "second", "third"] {
        std::fs::remove_dir_all(path.join(dir)).unwrap();
    }
    let run = fraudlens(path, &["models", "promote", &first, "--database", &db.url], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let server = Server::start_with(path, &db.url, None, &env);
    let (service, admin) = (key(path, &db.url, "service"), key(path, &db.url, "admin"));
    let client = reqwest::Client::new();
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    assert_eq!(info["version"], first.as_str());
    let tx = &transactions(1)[0];
    let (status, decision) = post(&client, &server.url("/api/v1/transactions"), &service, tx).await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["model_version"], first.as_str());

    // an object changed in the bucket: its checksum fails, the promotion is refused
    tamper(
        &bucket,
        &format!("fraudlens/{second}/trees.json"),
        Some(b"{\"tampered\": true}"),
    )
    .await;
    let promote = |version: String| {
        let (client, admin, url) = (
            client.clone(),
            admin.clone(),
            server.url(&format!("/api/v1/models/{version}/promote")),
        );
        async move { post(&client, &url, &admin, &Value::Null).await }
    };
    let (status, body) = promote(second.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("checksum"), "{body}");
    // an object missing: refused too, naming it
    tamper(&bucket, &format!("fraudlens/{third}/model.json"), None).await;
    let (status, body) = promote(third.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("model.json"), "{body}");
    let run = fraudlens(path, &["models", "promote", &third, "--database", &db.url], &env);
    assert_eq!(run.code, 65, "{}", run.stderr);
    // the current model kept serving throughout
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    assert_eq!(info["version"], first.as_str());
    let tx = &transactions(2)[0];
    let (status, decision) = post(&client, &server.url("/api/v1/transactions"), &service, tx).await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["model_version"], first.as_str());
    // no credentials: a clear error, and nothing uploaded
    let run = fraudlens(
        path,
        &[
            "models",
            "register",
            "nowhere",
            "--upload-to",
            "ftp://x/y",
            "--database",
            &db.url,
        ],
        &env,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(server.terminate(), 0);
}

/// `fraudlens backup --to s3://…` and `restore --from s3://…` against the real
/// S3-compatible server; a second backup into the same prefix, a tampered
/// object and (locally) a flipped byte or a missing manifest are refused, and
/// nothing is written into the target then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_on_s3_round_trip_and_corrupt_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = TestDb::new(Backend::Sqlite).await;
    let bucket = bucket().await;
    let endpoint = endpoint();
    let env = s3_env(&endpoint);
    let server = Server::start(path, &db.url, Some(&crate::model::trained().model()));
    let service = key(path, &db.url, "service");
    let client = reqwest::Client::new();
    for tx in transactions(40) {
        let (status, body) = post(&client, &server.url("/api/v1/transactions"), &service, &tx).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(server.terminate(), 0);

    let to = format!("s3://{bucket}/backups/first");
    let run = fraudlens(path, &["backup", "--to", &to, "--database", &db.url], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("40 transactions"), "{}", run.stdout);
    let again = fraudlens(path, &["backup", "--to", &to, "--database", &db.url], &env);
    assert_eq!(again.code, 65, "{}", again.stderr);
    assert!(again.stderr.contains("holds a backup already"), "{}", again.stderr);

    let restored = path.join("restored/fraudlens.db");
    let target = format!("sqlite://{}", restored.display());
    let run = fraudlens(path, &["restore", "--from", &to, "--database", &target, "--json"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["counts"]["transactions"], 40, "{report}");
    assert_eq!(report["counts"], report["manifest"]["counts"], "{report}");

    // a tampered object: refused before anything is written
    tamper(&bucket, "backups/first/store.sqlite", Some(b"not the store")).await;
    let elsewhere = path.join("elsewhere/fraudlens.db");
    let target = format!("sqlite://{}", elsewhere.display());
    let run = fraudlens(path, &["restore", "--from", &to, "--database", &target], &env);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("store.sqlite is corrupt"), "{}", run.stderr);
    assert!(!elsewhere.exists());

    // locally: a flipped byte, then no manifest (a backup that did not finish)
    let local = path.join("local-backup");
    let run = fraudlens(
        path,
        &["backup", "--to", local.to_str().unwrap(), "--database", &db.url],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let copy = local.join("store.sqlite");
    let mut bytes = std::fs::read(&copy).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&copy, &bytes).unwrap();
    let from = local.to_str().unwrap();
    let run = fraudlens(path, &["restore", "--from", from, "--database", &target], &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("store.sqlite is corrupt"), "{}", run.stderr);
    std::fs::remove_file(local.join("MANIFEST.json")).unwrap();
    let run = fraudlens(path, &["restore", "--from", from, "--database", &target], &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("has no MANIFEST.json"), "{}", run.stderr);
    assert!(!elsewhere.exists());
}
