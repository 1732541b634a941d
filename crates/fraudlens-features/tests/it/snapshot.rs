//! Snapshots: a restarted engine continues exactly where the old one stopped,
//! and damaged or mismatched snapshots are refused with a clear error.

use fraudlens_features::{FeatureEngine, SnapshotError};

use crate::history::{default_spec, same_bits, small_spec, tx};

fn warmed_engine() -> FeatureEngine {
    let mut engine = FeatureEngine::new(small_spec());
    let mut out = Vec::new();
    for idx in 0..200 {
        let t = tx(
            idx,
            1_767_225_600_000 + idx as i64 * 97_000,
            (idx % 5) as u8,
            Some((idx % 3) as u8),
            500 + idx as i64,
            false,
        );
        engine.observe(&t, &mut out);
        if idx % 11 == 0 {
            engine.apply_label(&t, fraudlens_core::Label::Fraud);
        }
    }
    engine
}

#[test]
fn restored_engine_continues_identically() {
    let mut original = warmed_engine();
    let bytes = original.snapshot();
    let mut restored = FeatureEngine::restore(small_spec(), &bytes).unwrap();
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.n_entities(), original.n_entities());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for idx in 200..260 {
        let t = tx(
            idx,
            1_767_225_600_000 + idx as i64 * 97_000,
            (idx % 7) as u8,
            Some((idx % 3) as u8),
            700,
            false,
        );
        original.observe(&t, &mut a);
        restored.observe(&t, &mut b);
        assert!(same_bits(&a, &b), "{a:?} != {b:?}");
    }
}

#[test]
fn damaged_snapshots_are_refused() {
    let bytes = warmed_engine().snapshot();
    let check = |bytes: &[u8], expected: &str| {
        let error = FeatureEngine::restore(small_spec(), bytes).unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
    };
    check(b"hello world, not a snapshot", "not a fraudlens feature snapshot");
    check(&bytes[..bytes.len() / 2], "truncated");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    check(&flipped, "checksum mismatch");
    let mut future = bytes.clone();
    future[8] = 9;
    check(&future, "format version 9 is not supported");
    let error = FeatureEngine::restore(default_spec(), &bytes).unwrap_err();
    assert!(matches!(error, SnapshotError::SpecMismatch { .. }), "{error}");
}

/// A snapshot of each format version is kept as test data; this build must read it.
#[test]
fn reads_the_version_1_sample() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/snapshot-v1.bin");
    if std::env::var_os("FRAUDLENS_WRITE_FIXTURES").is_some() {
        std::fs::write(path, warmed_engine().snapshot()).unwrap();
    }
    let bytes = std::fs::read(path).unwrap();
    let restored = FeatureEngine::restore(small_spec(), &bytes).unwrap();
    assert_eq!(restored.snapshot(), warmed_engine().snapshot());
}

#[test]
fn idle_entities_are_evicted() {
    let mut engine = warmed_engine();
    let before = engine.n_entities();
    assert!(before > 0);
    let mut out = Vec::new();
    // one transaction 40 days later: every other entity has been idle past its horizon
    engine.observe(
        &tx(999, 1_767_225_600_000 + 40 * 86_400_000, 9, Some(9), 100, false),
        &mut out,
    );
    assert_eq!(engine.n_entities(), 2);
    assert!(engine.state_bytes() > 0);
}

#[test]
fn knows_which_transactions_it_has_seen() {
    let mut engine = FeatureEngine::new(small_spec());
    let mut out = Vec::new();
    let first = tx(1, 1_767_225_600_000, 1, Some(1), 100, false);
    let late = tx(2, 1_767_225_500_000, 2, None, 100, false);
    assert!(!engine.has_seen(&first));
    engine.observe(&first, &mut out);
    engine.observe(&late, &mut out);
    assert!(engine.has_seen(&first));
    assert!(
        engine.has_seen(&late),
        "found even though it was clamped to the engine clock"
    );
    assert!(
        !engine.has_seen(&tx(1, 1_767_225_600_001, 1, Some(1), 100, false)),
        "same id, other time"
    );
    assert!(!engine.has_seen(&tx(3, 1_767_225_600_000, 1, Some(1), 100, false)));
}
