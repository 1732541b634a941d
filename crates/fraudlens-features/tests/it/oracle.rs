//! The engine against the definitions: every feature recomputed from scratch
//! over the whole history seen so far (quadratic, obviously right), for random
//! histories with labels arriving at arbitrary points — including relabels and
//! labels for transactions not seen yet — and with the event-time policy: each
//! entity's own clock, late events refused beyond `max_lateness`.

use fraudlens_core::{Label, Transaction};
use fraudlens_features::{Aggregate, EventTimePolicy, FeatureEngine, FeatureSpec};
use proptest::prelude::*;

use crate::history::{default_spec, history, small_spec};

/// An observed transaction as the definitions see it.
struct Seen {
    idx: usize,
    /// The time each entity (customer, terminal) processed it at: the later of
    /// its own time and that entity's newest event before it.
    times: [i64; 2],
    fraud: bool,
}

/// An entity's clock just before `tx`: the newest time it processed an event at.
fn entity_clock(history: &[Transaction], seen: &[Seen], entity_idx: usize, tx: &Transaction) -> i64 {
    let key = tx.entity(entity_idx);
    seen.iter()
        .filter(|s| key.is_some() && history[s.idx].entity(entity_idx) == key)
        .map(|s| s.times[entity_idx])
        .fold(tx.timestamp.as_millis(), i64::max)
}

fn reference(spec: &FeatureSpec, history: &[Transaction], seen: &[Seen], tx: &Transaction) -> Vec<f64> {
    let config = spec.config();
    let entity_names = ["customer", "terminal"];
    let mut out = vec![tx.amount.major()];
    if config.calendar {
        let civil = tx.timestamp.civil(config.utc_offset_minutes);
        let night = civil.hour >= config.night_start_hour || civil.hour < config.night_end_hour;
        out.extend([
            f64::from(civil.hour),
            f64::from(civil.weekday),
            f64::from(u8::from(night)),
            f64::from(u8::from(civil.weekday >= 5)),
        ]);
    }
    let micros = |s: &Seen| history[s.idx].amount.micros() as f64;
    for block in &config.entities {
        let entity_idx = entity_names.iter().position(|n| *n == block.entity).unwrap();
        let n_features = block.windows.len() * block.aggregates.len()
            + usize::from(block.time_since_previous)
            + block.distinct.iter().map(|d| d.windows.len()).sum::<usize>()
            + 2 * block.risk_windows.len();
        let Some(key) = tx.entity(entity_idx) else {
            out.extend(std::iter::repeat_n(f64::NAN, n_features));
            continue;
        };
        let prior: Vec<&Seen> = seen
            .iter()
            .filter(|s| history[s.idx].entity(entity_idx) == Some(key))
            .collect();
        // this entity's clock: no other entity's events move it
        let now = entity_clock(history, seen, entity_idx, tx);
        let time = |s: &Seen| s.times[entity_idx];
        let horizon = block
            .windows
            .iter()
            .chain(block.distinct.iter().flat_map(|d| &d.windows))
            .map(|w| w.as_millis())
            .chain(
                block
                    .risk_windows
                    .iter()
                    .map(|w| w.as_millis() + block.risk_delay.as_millis()),
            )
            .max()
            .unwrap_or(30 * 86_400_000);
        let amount = tx.amount.micros() as f64;
        for window in &block.windows {
            let in_window: Vec<&&Seen> = prior.iter().filter(|s| time(s) > now - window.as_millis()).collect();
            let mut amounts: Vec<f64> = in_window.iter().map(|s| micros(s)).collect();
            let prior_sum: f64 = amounts.iter().sum();
            let prior_count = amounts.len() as f64;
            amounts.push(amount);
            let n = amounts.len() as f64;
            let sum: f64 = amounts.iter().sum();
            let mean = sum / n;
            let var = amounts.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n;
            for aggregate in Aggregate::ALL.iter().filter(|a| block.aggregates.contains(a)) {
                out.push(match aggregate {
                    Aggregate::Count => n,
                    Aggregate::Sum => sum / 1e6,
                    Aggregate::Mean => mean / 1e6,
                    Aggregate::Max => amounts.iter().copied().fold(f64::MIN, f64::max) / 1e6,
                    Aggregate::Std => var.sqrt() / 1e6,
                    Aggregate::AmountRatio => {
                        if prior_count == 0.0 || prior_sum == 0.0 {
                            f64::NAN
                        } else {
                            amount / (prior_sum / prior_count)
                        }
                    }
                });
            }
        }
        if block.time_since_previous {
            let dt = prior.last().map(|s| now - time(s)).filter(|dt| *dt < horizon);
            out.push(dt.map_or(f64::NAN, |ms| ms as f64 / 1000.0));
        }
        for distinct in &block.distinct {
            let of_idx = entity_names.iter().position(|n| *n == distinct.of).unwrap();
            for window in &distinct.windows {
                let mut keys: Vec<_> = prior
                    .iter()
                    .filter(|s| time(s) > now - window.as_millis())
                    .filter_map(|s| history[s.idx].entity(of_idx))
                    .chain(tx.entity(of_idx))
                    .collect();
                keys.sort();
                keys.dedup();
                out.push(keys.len() as f64);
            }
        }
        for window in &block.risk_windows {
            let end = now - block.risk_delay.as_millis();
            let start = end - window.as_millis();
            let in_window: Vec<&&Seen> = prior.iter().filter(|s| time(s) > start && time(s) <= end).collect();
            let frauds = in_window.iter().filter(|s| s.fraud).count();
            out.push(if in_window.is_empty() {
                f64::NAN
            } else {
                frauds as f64 / in_window.len() as f64
            });
            out.push(in_window.len() as f64);
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[derive(Clone, Debug)]
enum Step {
    Observe(usize),
    Label(usize, Label),
}

fn scenario() -> impl Strategy<Value = (Vec<Transaction>, Vec<Step>)> {
    history().prop_flat_map(|history| {
        let n = history.len();
        let labels = prop::collection::vec((0..=n, 0..n, any::<bool>()), 0..(n / 2 + 2));
        (Just(history), labels).prop_map(|(history, labels)| {
            let mut steps = Vec::new();
            for position in 0..=history.len() {
                for (at, target, fraud) in &labels {
                    if *at == position {
                        steps.push(Step::Label(*target, if *fraud { Label::Fraud } else { Label::Legit }));
                    }
                }
                if position < history.len() {
                    steps.push(Step::Observe(position));
                }
            }
            (history, steps)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_definitions(
        (history, steps) in scenario(),
        use_default in any::<bool>(),
        sweep_every_event in any::<bool>(),
        max_lateness_ms in prop_oneof![Just(None), Just(Some(1i64)), Just(Some(3_600_000i64)), Just(Some(86_400_000i64))],
    ) {
        let spec = if use_default { default_spec() } else { small_spec() };
        let mut engine = FeatureEngine::new(spec.clone());
        engine.set_time_policy(EventTimePolicy { max_future_ms: None, max_lateness_ms });
        if sweep_every_event {
            engine.set_sweep_interval(1);
        }
        let mut seen: Vec<Seen> = Vec::new();
        let mut clock = i64::MIN;
        let mut out = Vec::new();
        for step in steps {
            match step {
                Step::Label(target, label) => {
                    engine.apply_label(&history[target], label);
                    if let Some(s) = seen.iter_mut().find(|s| s.idx == target) {
                        s.fraud = label.is_fraud();
                    }
                }
                Step::Observe(idx) => {
                    let tx = &history[idx];
                    let time = tx.timestamp.as_millis();
                    // the policy's definition: refused when more than max_lateness behind the latest accepted event
                    let too_late = clock != i64::MIN && max_lateness_ms.is_some_and(|lateness| time < clock - lateness);
                    let checked = engine.check_time(tx.timestamp, None);
                    prop_assert_eq!(checked.is_err(), too_late, "tx {} at {}: {:?}", idx, time, checked);
                    if too_late {
                        continue;
                    }
                    clock = clock.max(time);
                    let expected = reference(&spec, &history, &seen, tx);
                    let times = [0, 1].map(|entity_idx| entity_clock(&history, &seen, entity_idx, tx));
                    engine.observe(tx, &mut out);
                    prop_assert_eq!(out.len(), expected.len());
                    for (feature, (got, want)) in out.iter().zip(&expected).enumerate() {
                        prop_assert!(close(*got, *want), "tx {} feature {} ({}): engine {} != definition {}", idx, feature, spec.feature_names()[feature], got, want);
                    }
                    seen.push(Seen { idx, times, fraud: false });
                }
            }
        }
    }
}
