//! Bad and unsupported models give errors that say what and where, never panics.

use fraudlens_model::interop::{InteropError, import_lightgbm_text, import_xgboost_json};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/interop/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn lightgbm_error(text: &str) -> String {
    let error = import_lightgbm_text(text).expect_err("the model should be refused");
    error.to_string()
}

fn xgboost_error(json: &str) -> String {
    let error = import_xgboost_json(json).expect_err("the model should be refused");
    error.to_string()
}

/// `check(input, expected)`: the message contains `expected`.
fn check(message: String, expected: &str) {
    assert!(message.contains(expected), "{message:?} does not contain {expected:?}");
    assert!(message.starts_with(|first: char| first.is_lowercase()), "{message:?}");
}

/// Replaces the first line starting with `prefix`.
fn replace_line(text: &str, prefix: &str, line: &str) -> String {
    let start = text.find(&format!("\n{prefix}")).unwrap() + 1;
    let end = start + text[start..].find('\n').unwrap();
    format!("{}{line}{}", &text[..start], &text[end..])
}

#[test]
fn lightgbm_refuses_malformed_models() {
    let model = fixture("lightgbm.txt");
    check(
        lightgbm_error(""),
        "lightgbm model is malformed: first line: expected `tree`",
    );
    check(lightgbm_error("{\"learner\": {}}"), "expected `tree`");
    let truncated = &model[..model.len() / 2];
    check(lightgbm_error(truncated), "the file is truncated");
    let cut_after_header = &model[..model.find("Tree=0").unwrap()];
    check(lightgbm_error(cut_after_header), "no `end of trees` line after 0 trees");
    check(
        lightgbm_error(&replace_line(&model, "threshold=", "threshold=1 2 3")),
        "tree 0, field `threshold`: expected",
    );
    check(
        lightgbm_error(&replace_line(&model, "left_child=", "left_child=")),
        "tree 0, field `left_child`: expected",
    );
    check(
        lightgbm_error(&replace_line(&model, "leaf_value=", "leaf_value=x")),
        "tree 0, field `leaf_value`: cannot read `x`",
    );
    check(
        lightgbm_error(&replace_line(&model, "max_feature_idx=", "max_feature_idx=2")),
        "feature_names: 6 names for 3 features",
    );
    check(
        lightgbm_error(&replace_line(&model, "tree_sizes=", "tree_sizes=1 2")),
        "tree_sizes: lists 2 trees",
    );
    check(
        lightgbm_error(&model.replace("\nsplit_feature=", "\nsplit_feature_renamed=")),
        "field `split_feature`: missing",
    );
    // a cycle: the root's left child is the root
    let first_left = model[model.find("\nleft_child=").unwrap() + 12..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let cycle = model.replacen(&format!("\nleft_child={first_left}"), "\nleft_child=0", 1);
    check(lightgbm_error(&cycle), "reached twice");
    // a feature beyond max_feature_idx
    let split_feature = model[model.find("\nsplit_feature=").unwrap() + 15..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let wide = model.replacen(&format!("\nsplit_feature={split_feature}"), "\nsplit_feature=9", 1);
    check(
        lightgbm_error(&wide),
        "lightgbm model has invalid trees: invalid model: tree 0: node 0: feature 9 out of range",
    );
}

#[test]
fn lightgbm_refuses_unsupported_models() {
    let model = fixture("lightgbm.txt");
    let multiclass = replace_line(&model, "num_class=", "num_class=3");
    check(
        lightgbm_error(&multiclass),
        "lightgbm model is not supported: num_class=3",
    );
    let regression = replace_line(&model, "objective=", "objective=regression");
    check(
        lightgbm_error(&regression),
        "objective `regression`: only `binary` is supported",
    );
    let custom = model.replace("\nobjective=binary sigmoid:1\n", "\n");
    check(lightgbm_error(&custom), "no objective");
    let linear = model.replacen("is_linear=0", "is_linear=1", 1);
    check(lightgbm_error(&linear), "tree 0: linear trees");
}

#[test]
fn xgboost_refuses_malformed_models() {
    let model = fixture("xgboost.json");
    check(xgboost_error(""), "xgboost model is not valid json");
    check(
        xgboost_error(&model[..model.len() / 2]),
        "xgboost model is not valid json: EOF while parsing",
    );
    check(xgboost_error("{\"learner\": {}}"), "missing field");
    let mut value: serde_json::Value = serde_json::from_str(&model).unwrap();
    let tree = &mut value["learner"]["gradient_booster"]["model"]["trees"][1];
    tree["split_conditions"].as_array_mut().unwrap().pop();
    check(
        xgboost_error(&value.to_string()),
        "tree 1, field `split_conditions`: expected",
    );
    let mut value: serde_json::Value = serde_json::from_str(&model).unwrap();
    value["learner"]["gradient_booster"]["model"]["trees"][2]["left_children"][0] = 0.into();
    check(
        xgboost_error(&value.to_string()),
        "tree 2, field `left_children/right_children`: node 0 is reached twice",
    );
    let mut value: serde_json::Value = serde_json::from_str(&model).unwrap();
    value["learner"]["gradient_booster"]["model"]["trees"][0]
        .as_object_mut()
        .unwrap()
        .remove("sum_hessian");
    check(xgboost_error(&value.to_string()), "tree 0: missing field `sum_hessian`");
    let mut value: serde_json::Value = serde_json::from_str(&model).unwrap();
    value["learner"]["learner_model_param"]["base_score"] = "[1.5E0]".into();
    check(
        xgboost_error(&value.to_string()),
        "base_score: 1.5 is not a probability",
    );
    let mut value: serde_json::Value = serde_json::from_str(&model).unwrap();
    value["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"] = "3".into();
    check(xgboost_error(&value.to_string()), "num_trees: says 3 trees");
}

#[test]
fn xgboost_refuses_unsupported_models() {
    let model = fixture("xgboost.json");
    let edit = |path: &[&str], new: serde_json::Value| {
        let mut value: serde_json::Value = serde_json::from_str(&model).unwrap();
        let mut slot = &mut value;
        for key in path {
            slot = &mut slot[*key];
        }
        *slot = new;
        xgboost_error(&value.to_string())
    };
    check(
        edit(&["learner", "objective", "name"], "multi:softprob".into()),
        "xgboost model is not supported: objective `multi:softprob`",
    );
    check(
        edit(&["learner", "learner_model_param", "num_class"], "3".into()),
        "num_class=3",
    );
    check(
        edit(&["learner", "gradient_booster", "name"], "dart".into()),
        "booster `dart`: only gbtree",
    );
    check(
        edit(&["learner", "learner_model_param", "base_score"], "[5E-1,5E-1]".into()),
        "has several values",
    );
    let mut value: serde_json::Value = serde_json::from_str(&model).unwrap();
    value["learner"]["gradient_booster"]["model"]["tree_info"][1] = 1.into();
    check(xgboost_error(&value.to_string()), "tree 1 belongs to output group 1");
}

/// Both XGBoost spellings of the base score read the same.
#[test]
fn xgboost_base_score_in_both_spellings() {
    let model = fixture("xgboost.json");
    let mut value: serde_json::Value = serde_json::from_str(&model).unwrap();
    let bracketed = value["learner"]["learner_model_param"]["base_score"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(bracketed.starts_with('['), "{bracketed}");
    let plain = bracketed.trim_matches(['[', ']']).to_owned();
    value["learner"]["learner_model_param"]["base_score"] = plain.into();
    let from_plain = import_xgboost_json(&value.to_string()).unwrap();
    let from_bracketed = import_xgboost_json(&model).unwrap();
    assert_eq!(from_plain.forest, from_bracketed.forest);
    assert!(
        from_bracketed.source.starts_with("xgboost json (3."),
        "{}",
        from_bracketed.source
    );
}

#[test]
fn errors_are_typed() {
    assert!(matches!(
        import_lightgbm_text("tree\nnum_class=2\n"),
        Err(InteropError::Malformed { .. })
    ));
}
