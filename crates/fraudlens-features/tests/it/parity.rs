//! Train/serve parity: replaying a history offline gives bit-identical feature
//! vectors to feeding it record by record online — with labels arriving through
//! the feedback path, the process restarting from snapshots at random points,
//! and idle entities evicted on a different schedule.

use std::collections::BTreeMap;

use fraudlens_core::Label;
use fraudlens_features::{FeatureEngine, FeatureSpec, Replay};
use proptest::prelude::*;

use crate::history::{default_spec, history, same_bits, small_spec};

fn offline(spec: &std::sync::Arc<FeatureSpec>, history: &[fraudlens_core::Transaction]) -> Vec<Vec<f64>> {
    let mut engine = FeatureEngine::new(spec.clone());
    engine.set_sweep_interval(i64::MAX / 4); // never evicts
    let mut replay = Replay::new(engine);
    let mut out = Vec::new();
    history
        .iter()
        .map(|tx| {
            replay.push(tx, &mut out);
            out.clone()
        })
        .collect()
}

/// An online process: transactions arrive one by one; a fraud report for a
/// transaction arrives `label_delay` after it through `apply_label`; the
/// process restarts from a snapshot before the transactions in `restarts`.
fn online(
    spec: &std::sync::Arc<FeatureSpec>,
    history: &[fraudlens_core::Transaction],
    restarts: &[usize],
) -> Vec<Vec<f64>> {
    let mut engine = FeatureEngine::new(spec.clone());
    engine.set_sweep_interval(1); // evicts at every event
    let mut reports: BTreeMap<(i64, usize), usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut vectors = Vec::new();
    for (idx, tx) in history.iter().enumerate() {
        if restarts.contains(&idx) {
            let bytes = engine.snapshot();
            engine = FeatureEngine::restore(spec.clone(), &bytes).unwrap();
            engine.set_sweep_interval(1);
        }
        let now = engine
            .clock()
            .map_or(tx.timestamp.as_millis(), |clock| clock.max(tx.timestamp.as_millis()));
        while let Some(entry) = reports.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let reported = entry.remove();
            engine.apply_label(&history[reported], Label::Fraud);
        }
        engine.observe(tx, &mut out);
        vectors.push(out.clone());
        if tx.label == Some(Label::Fraud) {
            reports.insert((tx.timestamp.as_millis() + spec.label_delay_ms(), idx), idx);
        }
    }
    vectors
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_online(history in history(), restarts in prop::collection::vec(0usize..80, 0..4), use_default in any::<bool>()) {
        let spec = if use_default { default_spec() } else { small_spec() };
        let batch = offline(&spec, &history);
        let live = online(&spec, &history, &restarts);
        for (idx, (a, b)) in batch.iter().zip(&live).enumerate() {
            prop_assert!(same_bits(a, b), "transaction {idx}: offline {a:?} != online {b:?}");
        }
    }
}

#[test]
fn replay_hands_over_the_state_it_built() {
    let spec = small_spec();
    let history: Vec<_> = (0..50)
        .map(|idx| {
            crate::history::tx(
                idx,
                1_767_225_600_000 + idx as i64 * 600_000,
                (idx % 3) as u8,
                Some((idx % 2) as u8),
                1000,
                idx % 7 == 0,
            )
        })
        .collect();
    let mut replay = Replay::new(FeatureEngine::new(spec.clone()));
    let mut out = Vec::new();
    for tx in &history[..40] {
        replay.push(tx, &mut out);
    }
    let mut handed_over = replay.finish(None);
    let mut replay_all = Replay::new(FeatureEngine::new(spec.clone()));
    for tx in &history[..40] {
        replay_all.push(tx, &mut out);
    }
    let mut expected_engine = replay_all.finish(None);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for tx in &history[40..] {
        handed_over.observe(tx, &mut a);
        expected_engine.observe(tx, &mut b);
        assert!(same_bits(&a, &b));
    }
    assert_eq!(
        handed_over.snapshot(),
        expected_engine.snapshot(),
        "equal states give equal snapshot bytes"
    );
}
