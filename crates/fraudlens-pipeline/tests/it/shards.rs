//! Sharded entity state: acquired (rebuilt from the store), released, retained.

use fraudlens_pipeline::ScoreError;
use fraudlens_store::Store as _;

use crate::{Fixture, model, record};

fn parse(tx: &serde_json::Value) -> fraudlens_core::Transaction {
    model().events().unwrap().schema.parse_json(tx).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_not_held_is_not_scored_here() {
    let fixture = Fixture::new(true).await;
    let pipeline = &fixture.pipeline;
    let model = pipeline.model();
    let tx = parse(&record("s-1", "cust-1", 3.0, 0));
    let results = pipeline
        .score_sharded(&model, vec![(Some("tx/0".to_owned()), Ok(tx.clone()))])
        .await;
    assert_eq!(results[0], Err(ScoreError::NotOwned("tx/0".to_owned())));
    assert_eq!(fixture.store.count_transactions().await.unwrap(), 0);

    assert_eq!(
        pipeline.acquire_shard("tx/0").await.unwrap(),
        0,
        "nothing stored to rebuild from"
    );
    assert!(pipeline.holds("tx/0"));
    let results = pipeline
        .score_sharded(&model, vec![(Some("tx/0".to_owned()), Ok(tx))])
        .await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let stored = fixture.store.transaction("s-1").await.unwrap().unwrap();
    assert_eq!(stored.decision.shard.as_deref(), Some("tx/0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_moves_with_its_state_and_comes_back() {
    let fixture = Fixture::new(true).await;
    let first = &fixture.pipeline;
    let model = first.model();
    first.acquire_shard("tx/1").await.unwrap();
    let parsed: Vec<_> = (0..5)
        .map(|idx| {
            (
                Some("tx/1".to_owned()),
                Ok(parse(&record(&format!("m-{idx}"), "cust-9", 7.0, idx))),
            )
        })
        .collect();
    assert!(first.score_sharded(&model, parsed).await.iter().all(Result::is_ok));

    // the partition moves: the first releases it, another pipeline rebuilds it from the store
    first.release_shards(&["tx/1".to_owned()]);
    assert!(!first.holds("tx/1"));
    let second = Fixture::start(&fixture.store, true).await;
    assert_eq!(
        second.acquire_shard("tx/1").await.unwrap(),
        5,
        "rebuilt from the 5 stored rows"
    );
    assert_eq!(second.n_entities(), first.n_entities() + 2, "a customer and a terminal");
    // a redelivered record is a replay there, not a second observation
    let again = second
        .score_sharded(
            &model,
            vec![(Some("tx/1".to_owned()), Ok(parse(&record("m-0", "cust-9", 7.0, 0))))],
        )
        .await;
    assert!(again[0].as_ref().unwrap().replayed);

    // it comes back to the first: the released state is reused and caught up
    assert_eq!(
        first.acquire_shard("tx/1").await.unwrap(),
        0,
        "nothing new since the release"
    );
    assert!(first.holds("tx/1"));
    // a new assignment without it drops it
    first.retain_shards(&[]);
    assert!(!first.holds("tx/1"));
    assert_eq!(first.n_entities(), 0);
}

/// A rebuild replays only the stored rows inside the features' horizon (plus
/// twice the lateness bound), and gives the same features as the state that
/// saw every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_replays_only_the_rows_that_can_still_change_a_feature() {
    let fixture = Fixture::new(true).await;
    let full = &fixture.pipeline;
    let model = full.model();
    let shard = || Some("tx/0".to_owned());
    full.acquire_shard("tx/0").await.unwrap();
    // 200 days of history, two customers a day, in time order
    let days = 200;
    let mut sent = 0;
    for day in 0..days {
        let parsed: Vec<_> = ["cust-a", "cust-b"]
            .iter()
            .enumerate()
            .map(|(idx, customer)| {
                let offset = -((days - day) * 86_400) + idx as i64 * 60;
                let id = format!("h-{day}-{idx}");
                (shard(), Ok(parse(&record(&id, customer, 10.0 + day as f64, offset))))
            })
            .collect();
        sent += parsed.len();
        assert!(full.score_sharded(&model, parsed).await.iter().all(Result::is_ok));
    }
    let horizon_days = model.spec().unwrap().horizon_ms() / 86_400_000;
    let lateness_days = fraudlens_features::EventTimePolicy::default().max_lateness_ms.unwrap() / 86_400_000;
    let kept_days = (horizon_days + 2 * lateness_days + 1) as usize;
    assert!(kept_days < days as usize, "the history must reach beyond the horizon");

    // another detector takes the partition: it rebuilds from the recent rows only
    let rebuilt = Fixture::start(&fixture.store, true).await;
    let observed = rebuilt.acquire_shard("tx/0").await.unwrap();
    println!(
        "rebuild: {observed} of {sent} stored rows replayed (horizon {horizon_days} d, lateness {lateness_days} d)"
    );
    assert!(
        observed > 0 && observed <= 2 * kept_days,
        "{observed} rows replayed of {sent}: at most the {kept_days} latest days of two customers"
    );

    // both score the next transaction of each customer alike
    for (idx, customer) in ["cust-a", "cust-b"].iter().enumerate() {
        let score = |pipeline: std::sync::Arc<fraudlens_pipeline::Pipeline>, id: String| async move {
            let model = pipeline.model();
            let tx = parse(&record(&id, customer, 99.0, idx as i64 * 60));
            pipeline
                .score_sharded(&model, vec![(Some("tx/0".to_owned()), Ok(tx))])
                .await
                .remove(0)
                .unwrap()
        };
        let a = score(full.clone(), format!("next-full-{idx}")).await;
        let b = score(rebuilt.clone(), format!("next-rebuilt-{idx}")).await;
        let same = a
            .record
            .features
            .iter()
            .zip(&b.record.features)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{customer}: {:?} != {:?}", a.record.features, b.record.features);
    }
}
