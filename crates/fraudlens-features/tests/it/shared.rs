//! The primitives of a shared entity state: several processes, each with a
//! scratch engine, load the entities a transaction touches from one shared
//! map, observe there, and write back what changed — and compute exactly what
//! one engine computes over the whole history. A process that observed on a
//! stale copy of an entity (another process wrote it first) redoes that one
//! block on the fresh copy and gets the same result.

use std::collections::HashMap;

use fraudlens_core::Label;
use fraudlens_features::{EntityRef, FeatureEngine};
use proptest::prelude::*;

use crate::history::{default_spec, history, same_bits, small_spec};

/// The shared map: entity → stored form.
type Shared = HashMap<EntityRef, Vec<u8>>;

fn load(engine: &mut FeatureEngine, shared: &Shared, refs: &[EntityRef]) {
    engine.clear_entities();
    for at in refs {
        engine.import_entity(*at, shared.get(at).map(Vec::as_slice)).unwrap();
    }
}

fn save(engine: &FeatureEngine, shared: &mut Shared, refs: &[EntityRef]) {
    for at in refs {
        match engine.export_entity(*at) {
            Some(bytes) => shared.insert(*at, bytes),
            None => shared.remove(at),
        };
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Transactions dealt to three processes in turn, labels applied by
    /// whichever process: every vector equals the single engine's.
    #[test]
    fn processes_sharing_entities_compute_what_one_engine_computes(
        history in history(),
        dealer in prop::collection::vec(0usize..3, 80),
        use_default in any::<bool>(),
    ) {
        let spec = if use_default { default_spec() } else { small_spec() };
        let mut single = FeatureEngine::new(spec.clone());
        let mut processes: Vec<FeatureEngine> = (0..3).map(|_| FeatureEngine::new(spec.clone())).collect();
        let mut shared = Shared::new();
        let (mut expected, mut got) = (Vec::new(), Vec::new());
        for (idx, tx) in history.iter().enumerate() {
            single.observe(tx, &mut expected);
            let process = &mut processes[dealer[idx % dealer.len()]];
            let refs = process.entity_refs(tx);
            load(process, &shared, &refs);
            process.observe(tx, &mut got);
            save(process, &mut shared, &refs);
            prop_assert!(same_bits(&expected, &got), "transaction {idx}: {expected:?} != {got:?}");
            if tx.label == Some(Label::Fraud) {
                single.apply_label(tx, Label::Fraud);
                let labeller = &mut processes[(idx + 1) % 3];
                let refs = labeller.entity_refs(tx);
                load(labeller, &shared, &refs);
                labeller.apply_label(tx, Label::Fraud);
                save(labeller, &mut shared, &refs);
            }
        }
    }

    /// Two processes observe on the same copy; the second to write redoes
    /// each conflicting block on the first one's result.
    #[test]
    fn a_block_redone_on_the_fresh_state_equals_observing_in_order(history in history()) {
        let spec = small_spec();
        let mut single = FeatureEngine::new(spec.clone());
        let (mut a, mut b) = (FeatureEngine::new(spec.clone()), FeatureEngine::new(spec.clone()));
        let mut shared = Shared::new();
        let (mut expected, mut row_a, mut row_b) = (Vec::new(), Vec::new(), Vec::new());
        for pair in history.chunks(2) {
            let [first, second] = pair else { continue };
            // both read the same versions
            let (refs_a, refs_b) = (a.entity_refs(first), b.entity_refs(second));
            load(&mut a, &shared, &refs_a);
            load(&mut b, &shared, &refs_b);
            a.observe(first, &mut row_a);
            b.observe(second, &mut row_b);
            // a writes first; b's entities that a also wrote are stale: redo them
            save(&a, &mut shared, &refs_a);
            for at in &refs_b {
                if refs_a.contains(at) {
                    b.import_entity(*at, shared.get(at).map(Vec::as_slice)).unwrap();
                    b.observe_block(second, at.block, &mut row_b);
                }
            }
            save(&b, &mut shared, &refs_b);
            single.observe(first, &mut expected);
            prop_assert!(same_bits(&expected, &row_a));
            single.observe(second, &mut expected);
            prop_assert!(same_bits(&expected, &row_b), "{expected:?} != {row_b:?}");
        }
    }
}

#[test]
fn a_stored_form_that_does_not_fit_is_refused() {
    let spec = small_spec();
    let mut engine = FeatureEngine::new(spec.clone());
    let tx = crate::history::tx(1, 1_767_225_600_000, 0, Some(1), 1000, false);
    let mut row = Vec::new();
    engine.observe(&tx, &mut row);
    let refs = engine.entity_refs(&tx);
    let bytes = engine.export_entity(refs[0]).unwrap();
    let mut other = FeatureEngine::new(spec);
    assert!(other.import_entity(refs[0], Some(&bytes[..bytes.len() / 2])).is_err());
    assert!(other.import_entity(refs[0], Some(&[9, 1, 2])).is_err());
    assert!(other.export_entity(refs[0]).is_none(), "nothing imported");
    other.import_entity(refs[0], Some(&bytes)).unwrap();
    assert_eq!(other.export_entity(refs[0]), Some(bytes));
}

/// Three transactions of one customer at one terminal, the second labelled fraud.
fn labelled_engine() -> (FeatureEngine, Vec<EntityRef>) {
    let mut engine = FeatureEngine::new(small_spec());
    let mut row = Vec::new();
    for (idx, ms, cents, fraud) in [
        (1, 1_767_225_600_000, 1000, false),
        (2, 1_767_225_660_000, 2500, true),
        (3, 1_767_229_200_000, 700, false),
    ] {
        let tx = crate::history::tx(idx, ms, 0, Some(1), cents, fraud);
        engine.observe(&tx, &mut row);
        if fraud {
            engine.apply_label(&tx, Label::Fraud);
        }
    }
    let refs = engine.entity_refs(&crate::history::tx(3, 1_767_229_200_000, 0, Some(1), 700, false));
    (engine, refs)
}

/// The forms of [`labelled_engine`]'s entities as kept in
/// `tests/fixtures`: the serde varint form (format 1) that builds before
/// this one wrote, still read to the same state, and the form written now
/// (format 2) — a change of the written bytes is a change of format, which
/// processes of the previous build on the same Redis would refuse.
#[test]
fn the_stored_forms_are_pinned_and_the_earlier_one_is_still_read() {
    let (engine, refs) = labelled_engine();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    assert_eq!(refs.len(), 2);
    let mut other = FeatureEngine::new(small_spec());
    for (block, at) in refs.iter().enumerate() {
        let before = std::fs::read(format!("{fixtures}/entity-v1-block{block}.bin")).unwrap();
        let now = std::fs::read(format!("{fixtures}/entity-v2-block{block}.bin")).unwrap();
        assert_eq!(engine.export_entity(*at).as_ref(), Some(&now), "block {block}");
        other.import_entity(*at, Some(&before)).unwrap();
        assert_eq!(other.export_entity(*at), Some(now), "block {block}");
    }
}

/// Every truncation of the stored form, a byte too many, counts larger than
/// the bytes that follow and overlong varints are refused, and leave no state.
#[test]
fn a_damaged_stored_form_is_refused() {
    let (engine, refs) = labelled_engine();
    for at in &refs {
        let bytes = engine.export_entity(*at).unwrap();
        let mut other = FeatureEngine::new(small_spec());
        for cut in 0..bytes.len() {
            assert!(other.import_entity(*at, Some(&bytes[..cut])).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(other.import_entity(*at, Some(&longer)).is_err());
        // four billion events announced, none following
        assert!(
            other
                .import_entity(*at, Some(&[2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]))
                .is_err()
        );
        // a varint longer than its type
        let mut overlong = vec![2];
        overlong.extend([0xff; 10]);
        overlong.push(0x7f);
        assert!(other.import_entity(*at, Some(&overlong)).is_err());
        assert!(other.export_entity(*at).is_none(), "nothing imported");
        other.import_entity(*at, Some(&bytes)).unwrap();
        assert_eq!(other.export_entity(*at), Some(bytes));
    }
}
