//! Case analysis for any stored decision (a card transaction, a feature
//! row, an Ethereum address): the evidence an analyst weighs, each piece
//! with an id, and a narrative that cites it.
//!
//! ```text
//! decision ─► reasons (R…) ─► the entity's history (H…) ─► related entities (E…)
//!          ─► similar past cases with their outcomes (S…) ─► narrative citing [R1], [S2]…
//! ```
//!
//! Similar cases are the exact nearest neighbours among the flagged
//! decisions stored before the case ([`similar`]); the narrative is composed
//! from the same evidence by rules ([`narrative`]), so it never says what
//! the evidence does not.

pub mod llm;
pub mod narrative;
pub mod similar;

use fraudlens_core::{Decision, Label, ReviewStatus, Timestamp, Transaction};
use fraudlens_store::{Store, StoredDecision};
use serde::{Deserialize, Serialize};

pub use llm::{Llm, LlmSettings};
pub use narrative::{Narrative, Recommendation};
pub use similar::Neighbour;

const DAY_MILLIS: i64 = 86_400_000;

/// How much evidence an analysis gathers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaseSettings {
    /// Flagged decisions compared with by the exact search, at most (the
    /// newest before the case).
    pub max_candidates: u32,
    /// Flagged decisions a store's vector index returns to be ranked (the
    /// nearest by reasons among all before the case; PostgreSQL with
    /// pgvector), when more than `max_candidates` precede the case. 0: the
    /// exact search only.
    pub index_candidates: u32,
    /// Similar cases listed.
    pub similar_cases: usize,
    /// Days of the entity's history read.
    pub history_days: i64,
    /// The entity's earlier decisions listed, at most.
    pub history_items: u32,
    /// Days before the case in which related entities are looked for.
    pub related_days: i64,
    /// Related entities listed per key, at most.
    pub related_items: u32,
}

impl Default for CaseSettings {
    fn default() -> Self {
        Self {
            max_candidates: 50_000,
            index_candidates: 200,
            similar_cases: 10,
            history_days: 30,
            history_items: 10,
            related_days: 3,
            related_items: 5,
        }
    }
}

/// How the candidates for similar cases were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarSearch {
    /// The newest flagged decisions before the case, at most
    /// `cases.max_candidates`, every one ranked.
    Exact,
    /// The store's vector index, when more than `cases.max_candidates`
    /// precede the case: the nearest by reasons among every flagged decision
    /// before it, at most `cases.index_candidates`, ranked.
    Index,
}

/// What kind of evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// One of the decision's reasons.
    Reason,
    /// The entity's earlier decisions.
    History,
    /// Another entity on the same terminal, card, device…
    Related,
    /// A similar past case.
    Similar,
}

/// One piece of evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    /// Its id (`R1`, `H1`, `E1`, `S1`…), cited by the narrative.
    pub id: String,
    /// Its kind.
    pub kind: EvidenceKind,
    /// What it says, in a sentence.
    pub summary: String,
    /// The transaction it is about, for history and similar cases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The same, as an LLM may be told it: built from the evidence's parts
    /// with no identifier (no entity, key or transaction id), no category
    /// value and no free text.
    #[serde(skip)]
    pub shared: String,
}

/// A similar past case and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct SimilarCase {
    /// Its evidence id.
    pub evidence_id: String,
    /// The past decision.
    pub transaction_id: String,
    /// Its entity.
    pub entity: Option<String>,
    /// Its event time (RFC 3339, as the API writes times).
    #[serde(serialize_with = "rfc3339")]
    pub event_time: Timestamp,
    /// Its decision.
    pub decision: Decision,
    /// Its score.
    pub score: f64,
    /// Where its review stands.
    pub review_status: Option<ReviewStatus>,
    /// Its label, when known.
    pub label: Option<Label>,
    /// How alike, and why.
    #[serde(flatten)]
    pub neighbour: Neighbour,
}

/// The analysis of one decision.
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    /// The decision analysed.
    pub transaction_id: String,
    /// Its entity.
    pub entity: Option<String>,
    /// Its decision.
    pub decision: Decision,
    /// Its score.
    pub score: f64,
    /// The model that decided.
    pub model_version: String,
    /// Where its review stands.
    pub review_status: Option<ReviewStatus>,
    /// Its label, when known.
    pub label: Option<Label>,
    /// Every piece of evidence, by id.
    pub evidence: Vec<Evidence>,
    /// The similar past cases (also evidence `S…`).
    pub similar_cases: Vec<SimilarCase>,
    /// Flagged decisions compared with.
    pub candidates_compared: usize,
    /// How they were found.
    pub similar_search: SimilarSearch,
    /// The narrative: the latest kept with the case ([`keep_narrative`]
    /// writes one), else the rules' over this evidence (not kept).
    pub narrative: Narrative,
    /// The id of the kept narrative shown (`None`: none is kept yet).
    pub narrative_id: Option<i64>,
}

impl Analysis {
    /// Whether `id` is one of the evidence ids.
    pub fn has_evidence(&self, id: &str) -> bool {
        self.evidence.iter().any(|evidence| evidence.id == id)
    }
}

/// Why an analysis failed.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] fraudlens_store::StoreError),
    /// The search task failed (a bug).
    #[error("the similar-case search failed: {0}")]
    Internal(String),
}

fn outcome(review: Option<ReviewStatus>, label: Option<Label>) -> &'static str {
    match (label, review) {
        (Some(Label::Fraud), _) => "labelled fraud",
        (Some(Label::Legit), _) => "labelled legitimate",
        (None, Some(ReviewStatus::ConfirmedFraud)) => "confirmed fraud by an analyst",
        (None, Some(ReviewStatus::FalsePositive)) => "a false positive",
        (None, Some(ReviewStatus::Escalated)) => "escalated",
        (None, Some(ReviewStatus::PendingReview)) => "still pending review",
        (None, None) => "not reviewed",
    }
}

/// Analyses the stored decision `id` (`None`: no such decision); reads
/// only. Its narrative is the latest kept with the case, else the rules'
/// over the evidence ([`keep_narrative`] writes and keeps one).
/// `entity_names` names the transaction's entity keys (customer,
/// terminal…) for the related-entities evidence; empty for models of
/// feature rows.
pub async fn analyze(
    store: &dyn Store,
    id: &str,
    entity_names: &[String],
    settings: &CaseSettings,
) -> Result<Option<Analysis>, CaseError> {
    let Some(case) = store.transaction(id).await? else {
        return Ok(None);
    };
    let d = &case.decision;
    let mut evidence = Vec::new();

    // the reasons
    let reasons: Vec<fraudlens_core::Reason> = serde_json::from_str(&d.reasons).unwrap_or_default();
    for (n, reason) in reasons.iter().enumerate() {
        let value = reason
            .category
            .clone()
            .or_else(|| reason.value.map(|value| format!("{value}")))
            .unwrap_or_else(|| "missing".to_owned());
        let direction = if reason.contribution >= 0.0 {
            "towards fraud"
        } else {
            "away from fraud"
        };
        let shared_value = match (&reason.category, reason.value) {
            (Some(_), _) => "a category".to_owned(),
            (None, Some(value)) => format!("{value}"),
            (None, None) => "missing".to_owned(),
        };
        evidence.push(Evidence {
            id: format!("R{}", n + 1),
            kind: EvidenceKind::Reason,
            summary: format!(
                "{} = {value} moved the score {direction} ({:+.3} log-odds)",
                reason.feature.trim(),
                reason.contribution
            ),
            transaction_id: None,
            shared: format!(
                "{} = {shared_value} moved the score {direction} ({:+.3} log-odds)",
                reason.feature.trim(),
                reason.contribution
            ),
        });
    }

    // the entity's history before the case
    if let Some(entity) = &d.entity {
        let from = Timestamp::from_millis(
            d.event_time
                .as_millis()
                .saturating_sub(settings.history_days * DAY_MILLIS),
        );
        let history = store
            .entity_history(entity, from, d.event_time, settings.history_items.saturating_add(1))
            .await?;
        let earlier: Vec<&StoredDecision> = history
            .iter()
            .filter(|h| h.decision.transaction_id != d.transaction_id)
            .take(settings.history_items as usize)
            .collect();
        let flagged = earlier.iter().filter(|h| h.decision.decision.is_flagged()).count();
        let fraud = earlier.iter().filter(|h| h.label == Some(Label::Fraud)).count();
        let tail = format!(
            "had {} earlier decision{} in the {} days before (the latest {} read): {flagged} flagged, {fraud} labelled fraud",
            earlier.len(),
            if earlier.len() == 1 { "" } else { "s" },
            settings.history_days,
            settings.history_items
        );
        evidence.push(Evidence {
            id: "H1".to_owned(),
            kind: EvidenceKind::History,
            summary: format!("{entity} {tail}"),
            transaction_id: None,
            shared: format!("The entity {tail}"),
        });
        for (n, h) in earlier.iter().take(3).enumerate() {
            let what = format!(
                "scored {:.3}, {}, {}",
                h.decision.score,
                h.decision.decision.as_str(),
                outcome(h.decision.review_status, h.label)
            );
            let days = (d.event_time.as_millis() - h.decision.event_time.as_millis()) as f64 / DAY_MILLIS as f64;
            evidence.push(Evidence {
                id: format!("H{}", n + 2),
                kind: EvidenceKind::History,
                summary: format!(
                    "earlier: {} at {} {what}",
                    h.decision.transaction_id, h.decision.event_time
                ),
                transaction_id: Some(h.decision.transaction_id.clone()),
                shared: format!("an earlier decision of the entity, {days:.1} days before: {what}"),
            });
        }
    }

    // related entities: others on the same terminal, card… (transactions only)
    if let Ok(tx) = serde_json::from_str::<Transaction>(&d.body) {
        let from = Timestamp::from_millis(
            d.event_time
                .as_millis()
                .saturating_sub(settings.related_days * DAY_MILLIS),
        );
        let to = Timestamp::from_millis(d.event_time.as_millis().saturating_add(1));
        let mut n = 0;
        for (position, key) in tx.entities.iter().enumerate().skip(1) {
            let Some(key) = key else { continue };
            let related = store
                .related_entities(
                    position,
                    key.as_str(),
                    from,
                    to,
                    settings.related_items.saturating_add(1),
                )
                .await?;
            let others: Vec<_> = related
                .iter()
                .filter(|r| Some(r.entity.as_str()) != d.entity.as_deref())
                .take(settings.related_items as usize)
                .collect();
            let name = entity_names
                .get(position)
                .cloned()
                .unwrap_or_else(|| format!("entity {position}"));
            let flagged: u64 = others.iter().map(|r| r.flagged).sum();
            let fraud: u64 = others.iter().map(|r| r.fraud).sum();
            n += 1;
            let count = format!(
                "{} other entit{}",
                others.len(),
                if others.len() == 1 { "y" } else { "ies" }
            );
            let tail = format!(
                "in the {} days before: {flagged} of their transactions flagged, {fraud} labelled fraud",
                settings.related_days
            );
            evidence.push(Evidence {
                id: format!("E{n}"),
                kind: EvidenceKind::Related,
                summary: format!("{count} used {name} {} {tail}", key.as_str()),
                transaction_id: None,
                shared: format!("{count} used the case's {name} {tail}"),
            });
        }
    }

    // similar past cases: every flagged decision before the case when there
    // are at most max_candidates of them, else the index's nearest by reasons
    // among all (or, without an index, the newest); ranked exactly either way
    let indexed = if similar::explanation(&case).is_empty() || settings.index_candidates == 0 {
        None
    } else {
        // an index that fails (a reader without its rights or search path,
        // a table dropped by hand) leaves the exact search
        store
            .nearest_flagged(
                d.event_time,
                &d.reasons,
                settings.index_candidates,
                settings.max_candidates,
            )
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "similar cases: the vector index failed; the exact search answers");
                None
            })
    };
    let (similar_search, candidates) = match indexed {
        // fewer than asked: fewer flagged decisions before the case than that
        // (ranking them all is cheap), or the index's scan gave up on an old
        // case whose filter on time passes few of them
        Some(candidates) if candidates.len() >= settings.index_candidates as usize => {
            (SimilarSearch::Index, candidates)
        }
        _ => (
            SimilarSearch::Exact,
            store.flagged_before(d.event_time, settings.max_candidates).await?,
        ),
    };
    // one pass over tens of thousands of candidates: off the async workers
    let k = settings.similar_cases;
    let (case, candidates, neighbours) = tokio::task::spawn_blocking(move || {
        let neighbours = similar::nearest(&case, &candidates, k);
        (case, candidates, neighbours)
    })
    .await
    .map_err(|error| CaseError::Internal(error.to_string()))?;
    let d = &case.decision;
    let mut similar_cases = Vec::with_capacity(neighbours.len());
    for (n, neighbour) in neighbours.into_iter().enumerate() {
        let past = &candidates[neighbour.index];
        let evidence_id = format!("S{}", n + 1);
        let why = if neighbour.shared_reasons.is_empty() {
            "alike in its inputs".to_owned()
        } else {
            format!("flagged for {}", neighbour.shared_reasons.join(", "))
        };
        evidence.push(Evidence {
            id: evidence_id.clone(),
            kind: EvidenceKind::Similar,
            summary: format!(
                "a similar case, {} ({why}; similarity {:.2}), was {}",
                past.decision.transaction_id,
                neighbour.similarity,
                outcome(past.decision.review_status, past.label)
            ),
            transaction_id: Some(past.decision.transaction_id.clone()),
            shared: format!(
                "a similar past case ({why}; similarity {:.2}) was {}",
                neighbour.similarity,
                outcome(past.decision.review_status, past.label)
            ),
        });
        similar_cases.push(SimilarCase {
            evidence_id,
            transaction_id: past.decision.transaction_id.clone(),
            entity: past.decision.entity.clone(),
            event_time: past.decision.event_time,
            decision: past.decision.decision,
            score: past.decision.score,
            review_status: past.decision.review_status,
            label: past.label,
            neighbour,
        });
    }

    let mut analysis = Analysis {
        transaction_id: d.transaction_id.clone(),
        entity: d.entity.clone(),
        decision: d.decision,
        score: d.score,
        model_version: d.model_version.clone(),
        review_status: d.review_status,
        label: case.label,
        evidence,
        similar_cases,
        candidates_compared: candidates.len(),
        similar_search,
        narrative: Narrative::default(),
        narrative_id: None,
    };
    analysis.narrative = narrative::compose(&analysis);
    if let Some(kept) = store.narratives(id, 1).await?.into_iter().next() {
        analysis.narrative_id = Some(kept.id);
        analysis.narrative = Narrative::from(&kept.narrative);
    }
    Ok(Some(analysis))
}

/// Writes and keeps a new narrative of `analysis`: the LLM's when one is
/// given and its answer holds, else the rules' (with a note saying why the
/// LLM's was not used). Kept with the evidence it was written from.
pub async fn keep_narrative(store: &dyn Store, analysis: &mut Analysis, llm: Option<&Llm>) -> Result<(), CaseError> {
    let rules = narrative::compose(analysis);
    analysis.narrative = match llm {
        None => rules,
        Some(llm) => match llm.narrate(analysis).await {
            Ok(written) => narrative::no_weaker(written, &rules),
            Err(reason) => {
                tracing::info!(case = %analysis.transaction_id, %reason, "the LLM's narrative was not used");
                metrics::counter!("case_narratives_rejected_total").increment(1);
                Narrative {
                    note: Some(reason),
                    ..rules
                }
            }
        },
    };
    let narrative = &analysis.narrative;
    let evidence: Vec<serde_json::Value> = analysis
        .evidence
        .iter()
        .map(|e| serde_json::json!({"id": e.id, "kind": e.kind, "summary": e.summary, "transaction_id": e.transaction_id}))
        .collect();
    let id = store
        .put_narrative(&fraudlens_store::NewNarrative {
            transaction_id: analysis.transaction_id.clone(),
            created_at: now(),
            source: narrative.source.clone(),
            model: narrative.model.clone(),
            recommendation: narrative.recommendation.as_str().to_owned(),
            assessment: narrative.assessment.clone(),
            citations: narrative.citations.clone(),
            note: narrative.note.clone(),
            evidence: serde_json::Value::Array(evidence).to_string(),
        })
        .await?;
    analysis.narrative_id = Some(id);
    Ok(())
}

/// A time as the API writes it: RFC 3339 in UTC.
fn rfc3339<S: serde::Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(at)
}

/// The wall clock.
fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX));
    Timestamp::from_millis(millis)
}
