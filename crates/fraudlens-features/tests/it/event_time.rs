//! The event-time policy: each entity keeps its own clock, so an event of one
//! entity never expires another's windows; events too far ahead of the wall
//! clock or behind the accepted ones are refused by `check_time`.

use fraudlens_core::Timestamp;
use fraudlens_features::{EventTimeError, EventTimePolicy, FeatureEngine, Refusal};

use crate::history::{default_spec, tx};

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01

fn feature(engine: &FeatureEngine, out: &[f64], name: &str) -> f64 {
    let idx = engine.spec().feature_names().iter().position(|n| n == name).unwrap();
    out[idx]
}

/// Regression (hardening issue, defect 1): one transaction of an unrelated
/// customer and terminal, dated a day ahead, moved the engine clock and so
/// expired the windows of every other entity.
#[test]
fn an_event_moves_only_the_clocks_of_its_own_entities() {
    let mut engine = FeatureEngine::new(default_spec());
    let mut out = Vec::new();
    for idx in 0..6 {
        engine.observe(&tx(idx, T0 + idx as i64 * HOUR, 1, Some(1), 1_000, false), &mut out);
    }
    assert_eq!(feature(&engine, &out, "customer_count_1d"), 6.0);
    // another customer at another terminal, 23 hours after customer 1's last event
    let other = tx(100, T0 + 5 * HOUR + 23 * HOUR, 2, Some(2), 1_000, false);
    assert_eq!(engine.check_time(other.timestamp, None), Ok(()));
    engine.observe(&other, &mut out);
    // customer 1 again, one minute after its last event: its windows are as they were
    engine.observe(&tx(7, T0 + 5 * HOUR + 60_000, 1, Some(1), 1_000, false), &mut out);
    assert_eq!(feature(&engine, &out, "customer_count_1d"), 7.0);
    assert_eq!(feature(&engine, &out, "customer_secs_since_prev"), 60.0);
    assert_eq!(feature(&engine, &out, "terminal_count_1d"), 7.0);
}

#[test]
fn events_ahead_of_the_wall_clock_are_refused() {
    let engine = FeatureEngine::new(default_spec());
    let now = T0;
    let allowed = EventTimePolicy::DEFAULT_MAX_FUTURE_MS;
    assert_eq!(
        engine.check_time(Timestamp::from_millis(now + allowed), Some(now)),
        Ok(())
    );
    let refused = engine.check_time(Timestamp::from_millis(now + allowed + 1), Some(now));
    assert!(matches!(refused, Err(EventTimeError::Future { .. })), "{refused:?}");
    let year_9999 = Timestamp::parse("9999-12-31T00:00:00Z", fraudlens_core::TimestampFormat::Auto).unwrap();
    let message = engine.check_time(year_9999, Some(now)).unwrap_err().to_string();
    assert!(
        message.contains("9999-12-31") && message.contains("5m ahead"),
        "{message}"
    );
    // no wall clock (None): only the lateness rule applies
    assert_eq!(engine.check_time(year_9999, None), Ok(()));
}

#[test]
fn events_too_far_behind_the_accepted_ones_are_refused() {
    let mut engine = FeatureEngine::new(default_spec());
    let mut out = Vec::new();
    // an empty engine accepts any past event
    assert_eq!(engine.check_time(Timestamp::from_millis(0), None), Ok(()));
    engine.observe(&tx(0, T0, 1, Some(1), 1_000, false), &mut out);
    let lateness = EventTimePolicy::DEFAULT_MAX_LATENESS_MS;
    assert_eq!(engine.check_time(Timestamp::from_millis(T0 - lateness), None), Ok(()));
    let refused = engine.check_time(Timestamp::from_millis(T0 - lateness - 1), None);
    assert!(matches!(refused, Err(EventTimeError::TooLate { .. })), "{refused:?}");
    assert_eq!(refused.unwrap_err().reason(), "too_late");
    engine.set_time_policy(EventTimePolicy::UNBOUNDED);
    assert_eq!(engine.check_time(Timestamp::from_millis(0), Some(T0)), Ok(()));
}

/// Idle entities are kept `max_lateness` past their horizon, so a late event
/// the policy accepts still finds the state it would have seen.
#[test]
fn eviction_waits_for_the_lateness_bound() {
    let spec = default_spec();
    let horizon = 30 * 24 * HOUR + 7 * 24 * HOUR; // the default spec's longest risk window + delay
    let mut evicting = FeatureEngine::new(spec.clone());
    evicting.set_sweep_interval(1);
    let mut keeping = FeatureEngine::new(spec);
    keeping.set_sweep_interval(i64::MAX / 4);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let events = [
        tx(0, T0, 1, Some(1), 1_000, false),
        // another entity moves the engine clock past customer 1's horizon, but by less than the lateness bound
        tx(1, T0 + horizon + 12 * HOUR, 2, Some(2), 1_000, false),
        // a late event of customer 1, still accepted
        tx(2, T0 + horizon - HOUR, 1, Some(1), 1_000, false),
    ];
    for event in &events {
        assert_eq!(evicting.check_time(event.timestamp, None), Ok(()));
        evicting.observe(event, &mut a);
        keeping.observe(event, &mut b);
        assert!(crate::history::same_bits(&a, &b), "{a:?} != {b:?}");
    }
}

/// Review finding: with a feature horizon shorter than `max_lateness`, a retry
/// of a transaction older than the horizon was no longer in the state
/// (`has_seen` false) and was observed twice. The lateness bound never
/// reaches the shortest horizon.
#[test]
fn lateness_never_reaches_past_the_feature_horizon() {
    let mut engine = FeatureEngine::new(crate::history::small_spec()); // horizons of about a day
    assert_eq!(engine.time_policy(), EventTimePolicy::default()); // 7 days
    let mut out = Vec::new();
    let old = tx(0, T0, 1, Some(1), 1_000, false);
    engine.observe(&old, &mut out);
    engine.observe(&tx(1, T0 + 30 * HOUR, 1, Some(1), 1_000, false), &mut out);
    assert!(!engine.has_seen(&old), "older than the horizon: gone from the state");
    let refused = engine.check_time(old.timestamp, None);
    assert!(matches!(refused, Err(EventTimeError::TooLate { .. })), "{refused:?}");
    assert_eq!(engine.check_time(Timestamp::from_millis(T0 + 10 * HOUR), None), Ok(()));
}

/// `admit`, the rule of every path that may see a transaction twice: a
/// transaction already in the state is refused as seen (before its time is
/// looked at), a new one by the event-time policy.
#[test]
fn admit_refuses_a_seen_transaction_then_an_out_of_range_time() {
    let mut engine = FeatureEngine::new(default_spec());
    let mut out = Vec::new();
    let first = tx(0, T0, 1, Some(1), 1_000, false);
    assert_eq!(engine.admit(&first, Some(T0)), Ok(()));
    engine.observe(&first, &mut out);
    assert_eq!(engine.admit(&first, Some(T0)), Err(Refusal::Seen));
    // seen is decided first: with a wall clock far behind, the repeat is still "seen"
    assert_eq!(engine.admit(&first, Some(T0 - 30 * 24 * HOUR)), Err(Refusal::Seen));
    let ahead = tx(1, T0 + 24 * HOUR, 1, Some(1), 1_000, false);
    let refused = engine.admit(&ahead, Some(T0));
    assert!(
        matches!(refused, Err(Refusal::EventTime(EventTimeError::Future { .. }))),
        "{refused:?}"
    );
    assert_eq!(engine.admit(&ahead, None), Ok(()));
}
