//! Backup and restore (operations issue, item 6). A server on a store with an
//! entity-state snapshot of an earlier run takes transactions one after the
//! other while `fraudlens backup` runs; the backup is restored into an empty
//! store elsewhere (the model's directory gone meanwhile, so its files come
//! from the backup) and a server started on it:
//! - answers every id the original acknowledged before the backup began
//!   with the decision, score and model the original stored;
//! - holds a prefix of the acknowledged ids, in order (one consistent view);
//! - fed the transactions it lacks, in the original's order, computes the
//!   same features for each as the original did.
//!
//! On SQLite and on PostgreSQL (`pg_dump`/`pg_restore`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::fraudlens;
use crate::model::trained;
use crate::serve::{Server, get, key, post, transactions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_acknowledged_decision_on_sqlite() {
    round_trip(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_acknowledged_decision_on_postgres() {
    round_trip(Backend::Postgres).await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

async fn round_trip(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend).await;
    let model = dir.path().join("model-v1");
    copy_dir(&trained().model(), &model);
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let client = reqwest::Client::new();
    let all = transactions(900);
    let (earlier, rest) = all.split_at(150);

    // an earlier run: its shutdown leaves the entity-state snapshot
    let server = Server::start(dir.path(), &db.url, Some(&model));
    for tx in earlier {
        let (status, body) = post(&client, &server.url("/api/v1/transactions"), &service, tx).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(server.terminate(), 0);
    let state_file = dir.path().join("fraudlens-data/entity-state.bin");
    assert!(state_file.is_file());

    // load: one transaction after the other, each acknowledgement recorded in order
    let server = Server::start(dir.path(), &db.url, None);
    // and labels, which the restore must keep too
    let labelled: Vec<&str> = earlier[..5]
        .iter()
        .map(|tx| tx["transaction_id"].as_str().unwrap())
        .collect();
    let labels: Vec<Value> = labelled
        .iter()
        .map(|id| serde_json::json!({"transaction_id": id, "label": "fraud"}))
        .collect();
    let (status, body) = post(&client, &server.url("/api/v1/labels"), &analyst, &Value::from(labels)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let acked: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acked, stop, client, service) = (acked.clone(), stop.clone(), client.clone(), service.clone());
        let url = server.url("/api/v1/transactions");
        let rest = rest.to_vec();
        tokio::spawn(async move {
            for tx in rest {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let (status, body) = post(&client, &url, &service, &tx).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                acked
                    .lock()
                    .await
                    .push((tx["transaction_id"].as_str().unwrap().to_owned(), body));
            }
        })
    };
    while acked.lock().await.len() < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let acked_before_backup = acked.lock().await.len();
    let backup_dir = dir.path().join("backup");
    let args = [
        "backup",
        "--to",
        backup_dir.to_str().unwrap(),
        "--database",
        &db.url,
        "--state-file",
        state_file.to_str().unwrap(),
    ];
    let run = {
        let (cwd, args) = (dir.path().to_owned(), args.map(str::to_owned));
        tokio::task::spawn_blocking(move || fraudlens(&cwd, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]))
            .await
            .unwrap()
    };
    assert_eq!(run.code, 0, "{}", run.stderr);
    println!("{}", run.stdout.trim());
    let acked_after_backup = acked.lock().await.len();
    // a little more load after it, then stop
    while acked.lock().await.len() < acked_after_backup + 50 && !load.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    load.await.unwrap();
    let acked = acked.lock().await.clone();
    assert!(
        acked_after_backup > acked_before_backup,
        "the load did not go on during the backup"
    );

    // what the original stored for each acknowledged id
    let mut original = Vec::with_capacity(acked.len());
    for (id, _) in &acked {
        let (status, detail) = get(&client, &server.url(&format!("/api/v1/transactions/{id}")), &analyst).await;
        assert_eq!(status, StatusCode::OK, "{detail}");
        original.push(detail);
    }
    assert_eq!(server.terminate(), 0);
    // the model's registered directory is gone: restore takes its files from the backup
    std::fs::remove_dir_all(&model).unwrap();

    let manifest: Value = serde_json::from_slice(&std::fs::read(backup_dir.join("MANIFEST.json")).unwrap()).unwrap();
    assert!(manifest["entity_state"]["seq"].as_i64().unwrap() >= 150, "{manifest}");
    let elsewhere = tempfile::tempdir().unwrap();
    let target = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestDb::new(Backend::Postgres).await),
    };
    let target_url = match &target {
        Some(target) => target.url.clone(),
        None => format!("sqlite://{}", elsewhere.path().join("restored/fraudlens.db").display()),
    };
    let restore = [
        "restore",
        "--from",
        backup_dir.to_str().unwrap(),
        "--database",
        &target_url,
        "--json",
    ];
    let run = fraudlens(elsewhere.path(), &restore, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    println!(
        "restore: counts {} relocated {} entity state {}",
        report["counts"], report["relocated"], report["entity_state"]
    );
    assert_eq!(report["counts"], manifest["counts"], "{report}");
    assert_eq!(report["relocated"].as_object().unwrap().len(), 1, "{report}");
    assert!(elsewhere.path().join("fraudlens-data/entity-state.bin").is_file());
    // a second restore into the now non-empty store is refused
    let again = fraudlens(elsewhere.path(), &restore, &[]);
    assert_eq!(again.code, 65, "{}", again.stderr);

    assert_eq!(report["counts"]["labels"], 5, "{report}");
    let psql = |sql: &str| {
        let output = std::process::Command::new("psql")
            .args(["-qtAX", &target_url, "-c", sql])
            .output()
            .expect("psql (postgresql-client)");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    if backend == Backend::Postgres {
        // the dump holds the similar-case index (the original's serve made
        // it); the restore left it out, extension and all
        let dumped = std::process::Command::new("pg_restore")
            .args(["--list", backup_dir.join("store.pgdump").to_str().unwrap()])
            .output()
            .unwrap();
        let contents = String::from_utf8_lossy(&dumped.stdout);
        assert!(contents.contains("TABLE public case_vectors"), "{contents}");
        assert_eq!(psql("SELECT to_regclass('case_vectors') IS NULL"), "t");
        assert_eq!(psql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"), "0");
    }
    let restored = Server::start(elsewhere.path(), &target_url, None);
    for id in &labelled {
        let (status, detail) = get(&client, &restored.url(&format!("/api/v1/transactions/{id}")), &analyst).await;
        assert_eq!(status, StatusCode::OK, "{detail}");
        assert_eq!(detail["label"], "fraud", "{id}");
    }
    let mut present = 0;
    for (index, ((id, _), before)) in acked.iter().zip(&original).enumerate() {
        let (status, detail) = get(&client, &restored.url(&format!("/api/v1/transactions/{id}")), &analyst).await;
        match status {
            StatusCode::OK => {
                assert_eq!(present, index, "acknowledged ids missing before {id}");
                for field in ["decision", "score", "model_version", "features", "review_status"] {
                    assert_eq!(detail[field], before[field], "{id} {field}");
                }
                present += 1;
            }
            StatusCode::NOT_FOUND => {}
            other => panic!("{id}: {other} {detail}"),
        }
    }
    assert!(
        present >= acked_before_backup,
        "{present} restored, {acked_before_backup} acknowledged before the backup began"
    );
    assert_eq!(
        present as u64 + 150,
        report["counts"]["transactions"].as_u64().unwrap(),
        "the restored store holds only acknowledged transactions"
    );
    if backend == Backend::Postgres {
        // the restored store's serve makes the index again, with its flagged decisions
        let valid = "SELECT COALESCE((SELECT indisvalid FROM pg_index \
                     WHERE indexrelid = to_regclass('case_vectors_embedding')), false)";
        for _ in 0..150 {
            if psql(valid) == "t" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(psql(valid), "t", "the restored store's vector index");
        assert_eq!(
            psql("SELECT count(*) FROM case_vectors"),
            psql("SELECT count(*) FROM transactions WHERE review_status IS NOT NULL AND reasons <> '[]'"),
        );
    }
    println!(
        "{} acknowledged ({acked_before_backup} before the backup began), {present} restored, {} replayed",
        acked.len(),
        acked.len() - present
    );

    // the transactions it lacks, in the original's order: the same features
    let by_id: std::collections::HashMap<&str, &Value> = rest
        .iter()
        .map(|tx| (tx["transaction_id"].as_str().unwrap(), tx))
        .collect();
    for ((id, answered), before) in acked.iter().zip(&original).skip(present) {
        let (status, body) = post(
            &client,
            &restored.url("/api/v1/transactions"),
            &service,
            by_id[id.as_str()],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decision"], answered["decision"], "{id}");
        let (_, detail) = get(&client, &restored.url(&format!("/api/v1/transactions/{id}")), &analyst).await;
        assert_eq!(
            detail["features"], before["features"],
            "{id}: other features after the restore"
        );
    }
    assert_eq!(restored.terminate(), 0);
}

/// `--encrypt-to` (an age recipient): no file of the backup holds plaintext,
/// the checksums still verify, restore refuses without the identity and with
/// another one (writing nothing), and restores with it from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_backup_restores_only_with_its_key() {
    use age::secrecy::ExposeSecret as _;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let service = key(dir.path(), &db.url, "service");
    let client = reqwest::Client::new();
    for tx in transactions(30) {
        let (status, body) = post(&client, &server.url("/api/v1/transactions"), &service, &tx).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(server.terminate(), 0);
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = identity.to_string().expose_secret().to_owned();
    let other = age::x25519::Identity::generate().to_string().expose_secret().to_owned();

    // a secret key given as the recipient by mistake: refused, never echoed, nothing written
    let mistaken = dir.path().join("mistaken");
    let run = fraudlens(
        dir.path(),
        &[
            "backup",
            "--to",
            mistaken.to_str().unwrap(),
            "--database",
            &db.url,
            "--encrypt-to",
            &secret,
        ],
        &[],
    );
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("recipient 1 is not an age recipient"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&secret), "{}", run.stderr);
    assert!(!mistaken.exists());

    let backup = dir.path().join("encrypted");
    let run = fraudlens(
        dir.path(),
        &[
            "backup",
            "--to",
            backup.to_str().unwrap(),
            "--database",
            &db.url,
            "--encrypt-to",
            &recipient,
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("encrypted (age)"), "{}", run.stdout);
    let manifest: Value = serde_json::from_slice(&std::fs::read(backup.join("MANIFEST.json")).unwrap()).unwrap();
    assert_eq!(manifest["encryption"], "age");
    for file in manifest["files"].as_array().unwrap() {
        let path = file["path"].as_str().unwrap();
        if path == "SHA256SUMS" {
            continue;
        }
        assert!(path.ends_with(".age"), "{path} is not encrypted");
        let bytes = std::fs::read(backup.join(path)).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{path}");
        assert!(
            !bytes.windows(15).any(|w| w == b"SQLite format 3"),
            "{path} holds plaintext"
        );
    }
    assert!(!backup.join("store.sqlite").exists());

    let target = dir.path().join("restored/fraudlens.db");
    let url = format!("sqlite://{}", target.display());
    let restore = ["restore", "--from", backup.to_str().unwrap(), "--database", &url];
    let run = fraudlens(dir.path(), &restore, &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("FRAUDLENS_BACKUP_AGE_IDENTITY"), "{}", run.stderr);
    let run = fraudlens(dir.path(), &restore, &[("FRAUDLENS_BACKUP_AGE_IDENTITY", &other)]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("not encrypted to any of the identities given"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&other) && !run.stderr.contains(&secret));
    assert!(!target.exists());
    let run = fraudlens(dir.path(), &restore, &[("FRAUDLENS_BACKUP_AGE_IDENTITY", &secret)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("30 transactions"), "{}", run.stdout);
}
