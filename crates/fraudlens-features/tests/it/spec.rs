//! The feature spec: defaults, names and checks.

use fraudlens_features::{FeatureSpec, FeatureSpecConfig};

use crate::history::{default_spec, schema};

#[test]
fn default_spec_names() {
    let spec = default_spec();
    let names = spec.feature_names();
    assert_eq!(&names[..5], ["amount", "hour", "day_of_week", "is_night", "is_weekend"]);
    for expected in [
        "customer_count_1d",
        "customer_sum_7d",
        "customer_mean_30d",
        "customer_max_1d",
        "customer_std_7d",
        "customer_amount_ratio_30d",
        "customer_secs_since_prev",
        "customer_distinct_terminal_1d",
        "customer_risk_7d",
        "customer_risk_count_30d",
        "terminal_distinct_customer_1d",
        "terminal_risk_1d",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from {names:?}"
        );
    }
    assert_eq!(names.len(), 5 + 2 * (3 * 6 + 1 + 1 + 3 * 2));
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "feature names are unique");
}

#[test]
fn spec_errors() {
    for (text, expected) in [
        (
            "[[entities]]\nentity = \"device\"",
            "the schema has no such entity (entities: customer, terminal)",
        ),
        (
            "[[entities]]\nentity = \"customer\"\nwindows = [\"1d\", \"24h\"]",
            "window 1d listed twice",
        ),
        (
            "[[entities]]\nentity = \"customer\"\n[[entities]]\nentity = \"customer\"",
            "two feature blocks",
        ),
        (
            "[[entities]]\nentity = \"customer\"\ndistinct = [{ of = \"customer\" }]",
            "distinct count of itself",
        ),
        ("night_start_hour = 24", "night hours must be 0-23"),
        ("utc_offset_minutes = -2147483648", "utc_offset_minutes must be within"),
    ] {
        let config: FeatureSpecConfig = toml::from_str(text).unwrap();
        let error = FeatureSpec::new(config, &schema()).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
    for (text, expected) in [
        ("windows = [\"1d\"]", "unknown field `windows`"),
        (
            "[[entities]]\nentity = \"customer\"\naggregates = [\"median\"]",
            "unknown variant `median`",
        ),
        ("label_delay = \"7 days\"", "invalid duration"),
    ] {
        let error = toml::from_str::<FeatureSpecConfig>(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn fingerprint_follows_the_spec() {
    let a = default_spec();
    let b = default_spec();
    assert_eq!(a.fingerprint(), b.fingerprint());
    let config: FeatureSpecConfig = toml::from_str("calendar = false").unwrap();
    let c = FeatureSpec::new(config, &schema()).unwrap();
    assert_ne!(a.fingerprint(), c.fingerprint());
}

#[test]
fn attributes_may_not_shadow_features() {
    let mut config = fraudlens_core::SchemaConfig::default();
    config.attributes.insert(
        "hour".into(),
        fraudlens_core::AttributeField {
            field: None,
            kind: fraudlens_core::AttributeKind::Numeric,
            required: true,
        },
    );
    let schema = fraudlens_core::Schema::new(config, None).unwrap();
    let error = FeatureSpec::new(FeatureSpecConfig::default(), &schema).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("attribute \"hour\" has the name of a computed feature"),
        "{error}"
    );
}
