//! The LLM narrative against a local OpenAI-compatible stand-in (part of
//! the test): what is sent holds no card number or email, and each kind of
//! answer is handled — a good one is verified and kept; an uncited one, one
//! citing evidence that does not exist, a malformed, a failing and a slow
//! one each leave the rules' narrative, with a note saying why.

// a failed unwrap in a test is a failed test with a backtrace
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use fraudlens_cases::{Analysis, CaseSettings, Llm, LlmSettings, analyze, keep_narrative};
use fraudlens_core::{Decision, Reason, ReviewStatus, Timestamp};
use fraudlens_store::{NewDecision, Store, StoreOptions};
use fraudlens_testkit::stand::{Answer, Received, Stand};
use fraudlens_testkit::{Backend, TestDb};
use serde_json::{Value, json};

const CARD: &str = "4111111111111111";
const EMAIL: &str = "alice@example.com";

fn decision(id: &str, entity: &str, at: i64, reasons: &[(&str, f64)], status: Option<ReviewStatus>) -> NewDecision {
    let reasons: Vec<Reason> = reasons
        .iter()
        .map(|(feature, contribution)| Reason {
            feature: (*feature).to_owned(),
            value: Some(1.0),
            category: None,
            contribution: *contribution,
        })
        .collect();
    NewDecision {
        transaction_id: id.to_owned(),
        fingerprint: id.to_owned(),
        event_time: Timestamp::from_millis(at),
        received_at: Timestamp::from_millis(at),
        entity: Some(entity.to_owned()),
        amount_minor: 100,
        currency: "EUR".to_owned(),
        body: "{}".to_owned(),
        score: 0.9,
        probability: Some(0.9),
        raw_score: None,
        anomaly_score: None,
        decision: Decision::Review,
        reasons: serde_json::to_string(&reasons).unwrap(),
        features: vec![1.0, 2.0],
        model_version: "m1".to_owned(),
        latency_us: 10,
        review_status: status.or(Some(ReviewStatus::PendingReview)),
        shard: None,
    }
}

/// A store with the case `case` (its entity a card number) and three past cases, one an email's.
async fn store() -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = fraudlens_store::connect(&db.url, &StoreOptions::default())
        .await
        .unwrap();
    store
        .put_decisions(&[
            decision(
                "past-1",
                EMAIL,
                1_000,
                &[("amount", 2.0), ("terminal_risk", 1.0)],
                Some(ReviewStatus::ConfirmedFraud),
            ),
            decision(
                "past-2",
                "bob",
                2_000,
                &[("amount", 1.5)],
                Some(ReviewStatus::FalsePositive),
            ),
            decision("past-3", "carol", 3_000, &[("velocity", 3.0)], None),
            decision("case", CARD, 4_000, &[("amount", 2.5), ("terminal_risk", 0.8)], None),
        ])
        .await
        .unwrap();
    (db, store)
}

/// A chat-completions stand-in: answers each request with `reply(request)`
/// (HTTP status, message content) after `delay`; keeps what it was sent.
async fn stand(reply: fn(&Value) -> (u16, String), delay: Duration) -> (String, Stand) {
    let stand = Stand::start(Arc::new(move |request: &Received| {
        assert!(
            request.head.contains("authorization: Bearer sk-test"),
            "the key is sent as a bearer token"
        );
        let (status, content) = reply(&request.json());
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]});
        Answer::new(status, body.to_string()).after(delay)
    }))
    .await;
    (format!("{}/v1", stand.base), stand)
}

/// The case analysed and a narrative kept by `llm`.
async fn kept(store: &dyn Store, llm: &Llm) -> Analysis {
    let mut analysis = analyze(store, "case", &[], &CaseSettings::default())
        .await
        .unwrap()
        .unwrap();
    keep_narrative(store, &mut analysis, Some(llm)).await.unwrap();
    analysis
}

fn llm(base: &str, timeout_seconds: u64) -> Llm {
    let settings = LlmSettings {
        base_url: Some(base.to_owned()),
        model: "test-model".to_owned(),
        timeout_seconds,
        max_tokens: 200,
    };
    Llm::new(base, &settings, Some(fraudlens_core::Secret::new("sk-test"))).unwrap()
}

#[tokio::test]
async fn a_good_answer_is_verified_kept_and_nothing_personal_was_sent() {
    let (_db, store) = store().await;
    let (base, seen) = stand(
        |_| {
            (
                200,
                "```json\n{\"assessment\": \"Flagged for the amount [R1], like a confirmed fraud [S1].\", \"recommendation\": \"escalate\"}\n```".to_owned(),
            )
        },
        Duration::ZERO,
    )
    .await;
    let llm = llm(&base, 5);
    // an analysis alone reads: the rules' narrative, nothing kept, the LLM not asked
    let read = analyze(store.as_ref(), "case", &[], &CaseSettings::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.narrative.source.as_str(), read.narrative_id), ("template", None));
    assert!(store.narratives("case", 5).await.unwrap().is_empty());
    assert!(seen.received().is_empty());
    let analysis = kept(store.as_ref(), &llm).await;
    let narrative = &analysis.narrative;
    assert_eq!(narrative.source, "llm");
    assert_eq!(narrative.model.as_deref(), Some("test-model"));
    assert_eq!(narrative.citations, ["R1", "S1"]);
    assert_eq!(narrative.recommendation.as_str(), "escalate");
    assert!(narrative.note.is_none());
    // kept with the case
    let kept = store.narratives("case", 5).await.unwrap();
    assert_eq!(Some(kept[0].id), analysis.narrative_id);
    assert_eq!(kept[0].narrative.source, "llm");
    assert_eq!(kept[0].narrative.citations, ["R1", "S1"]);
    // with the evidence its citations meant
    let evidence: Value = serde_json::from_str(&kept[0].narrative.evidence).unwrap();
    assert!(
        evidence
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "S1" && e["transaction_id"] == "past-1"),
        "{evidence}"
    );
    // and a later analysis shows it
    let again = analyze(store.as_ref(), "case", &[], &CaseSettings::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.narrative.source.as_str(), again.narrative_id),
        ("llm", analysis.narrative_id)
    );

    // what was sent: the evidence, pseudonymised
    let sent: Vec<Value> = seen.received().iter().map(Received::json).collect();
    assert_eq!(sent.len(), 1);
    let prompt = sent[0].to_string();
    assert!(!prompt.contains(CARD), "a card number was sent: {prompt}");
    assert!(!prompt.contains("4111"), "part of a card number was sent: {prompt}");
    assert!(
        !prompt.contains(EMAIL) && !prompt.contains("@example"),
        "an email was sent: {prompt}"
    );
    assert!(!prompt.contains("past-1"), "a transaction id was sent: {prompt}");
    assert!(
        prompt.contains("[R1]") && prompt.contains("[S1]") && prompt.contains("entity had"),
        "{prompt}"
    );
    assert_eq!(sent[0]["model"], "test-model");
    assert_eq!(sent[0]["max_tokens"], 200);
}

async fn rejected(reply: fn(&Value) -> (u16, String), delay: Duration, timeout: u64) -> String {
    let (_db, store) = store().await;
    let (base, _) = stand(reply, delay).await;
    let llm = llm(&base, timeout);
    let analysis = kept(store.as_ref(), &llm).await;
    let narrative = &analysis.narrative;
    assert_eq!(narrative.source, "template", "{narrative:?}");
    assert!(!narrative.citations.is_empty());
    for cited in &narrative.citations {
        assert!(analysis.has_evidence(cited));
    }
    let kept = store.narratives("case", 1).await.unwrap();
    assert_eq!(kept[0].narrative.source, "template");
    assert_eq!(kept[0].narrative.note, narrative.note);
    narrative.note.clone().expect("a note says why")
}

#[tokio::test]
async fn an_uncited_answer_is_rejected() {
    let note = rejected(
        |_| {
            (
                200,
                r#"{"assessment": "Looks like fraud to me.", "recommendation": "escalate"}"#.to_owned(),
            )
        },
        Duration::ZERO,
        5,
    )
    .await;
    assert!(note.contains("cites no evidence"), "{note}");
}

#[tokio::test]
async fn an_answer_citing_evidence_that_does_not_exist_is_rejected() {
    let note = rejected(
        |_| {
            (
                200,
                r#"{"assessment": "Like [S1] and [S99].", "recommendation": "escalate"}"#.to_owned(),
            )
        },
        Duration::ZERO,
        5,
    )
    .await;
    assert!(note.contains("S99"), "{note}");
}

#[tokio::test]
async fn malformed_and_failing_answers_fall_back() {
    let note = rejected(
        |_| (200, "Sure! Here is my assessment: fraud [R1].".to_owned()),
        Duration::ZERO,
        5,
    )
    .await;
    assert!(note.contains("not the JSON object"), "{note}");
    let note = rejected(
        |_| {
            (
                200,
                r#"{"assessment": "As [R1] shows.", "recommendation": "block the card"}"#.to_owned(),
            )
        },
        Duration::ZERO,
        5,
    )
    .await;
    assert!(note.contains("recommendation"), "{note}");
    let note = rejected(|_| (500, String::new()), Duration::ZERO, 5).await;
    assert!(note.contains("HTTP 500"), "{note}");
}

#[tokio::test]
async fn a_slow_answer_times_out_and_falls_back() {
    let started = std::time::Instant::now();
    let note = rejected(
        |_| {
            (
                200,
                r#"{"assessment": "As [R1] shows.", "recommendation": "investigate"}"#.to_owned(),
            )
        },
        Duration::from_secs(5),
        1,
    )
    .await;
    assert!(note.contains("in time"), "{note}");
    assert!(started.elapsed() < Duration::from_secs(5), "the answer was waited for");
}

#[tokio::test]
async fn an_llm_may_not_clear_what_the_rules_would_investigate_and_smuggled_citations_are_refused() {
    let (_db, store) = store().await;
    let (base, _) = stand(
        |_| {
            (
                200,
                r#"{"assessment": "Only the amount [R1]; nothing else.", "recommendation": "probable_false_positive"}"#
                    .to_owned(),
            )
        },
        Duration::ZERO,
    )
    .await;
    let analysis = kept(store.as_ref(), &llm(&base, 5)).await;
    assert_eq!(analysis.narrative.source, "llm");
    assert_eq!(analysis.narrative.recommendation.as_str(), "investigate");
    assert!(
        analysis
            .narrative
            .note
            .as_deref()
            .unwrap()
            .contains("probable_false_positive")
    );

    let note = rejected(
        |_| {
            (
                200,
                r#"{"assessment": "As [R1] and [S7, S8] show.", "recommendation": "escalate"}"#.to_owned(),
            )
        },
        Duration::ZERO,
        5,
    )
    .await;
    assert!(note.contains("S7"), "{note}");
}
