//! The narrative of a case: a short assessment citing evidence ids in
//! brackets (`[R1]`, `[S3]`) and a recommendation. Composed here by rules
//! from the evidence alone, so it is deterministic and never cites what
//! does not exist.
//!
//! The recommendation weighs the outcomes of the similar past cases that
//! were decided (labelled, or confirmed / dismissed by an analyst): with at
//! least three decided, 70 % or more fraud → `escalate`, 30 % or less →
//! `probable_false_positive`. A decline, or fraud in the entity's own recent
//! history, escalates too; anything else is `investigate`.

use fraudlens_core::{Decision, Label, ReviewStatus};
use serde::{Deserialize, Serialize};

use crate::{Analysis, EvidenceKind, SimilarCase};

/// What the narrative advises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recommendation {
    /// Most cases like it were not fraud.
    ProbableFalsePositive,
    /// Look closer.
    #[default]
    Investigate,
    /// Most cases like it were fraud: act.
    Escalate,
}

impl Recommendation {
    /// The name used in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProbableFalsePositive => "probable_false_positive",
            Self::Investigate => "investigate",
            Self::Escalate => "escalate",
        }
    }
}

/// An assessment citing evidence, and a recommendation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Narrative {
    /// Who wrote it: `template` (rules over the evidence) or `llm`.
    pub source: String,
    /// The LLM's model, for `llm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The assessment, citing evidence ids in brackets.
    pub assessment: String,
    /// The recommendation.
    pub recommendation: Recommendation,
    /// The evidence ids the assessment cites, in order of first citation.
    pub citations: Vec<String>,
    /// Why an LLM's narrative was not used (this one is the rules').
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The ids cited in `text`: letters and digits in square brackets (`[S12]`).
pub fn citations(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in text.split('[').skip(1) {
        let Some((id, _)) = piece.split_once(']') else { continue };
        let id = id.trim();
        let valid = !id.is_empty()
            && id.len() <= 8
            && id.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && id.chars().all(|c| c.is_ascii_alphanumeric());
        if valid && !out.iter().any(|seen| seen == id) {
            out.push(id.to_owned());
        }
    }
    out
}

/// Whether a past case turned out fraud (`Some(true)`), legitimate
/// (`Some(false)`) or is undecided.
fn decided(case: &SimilarCase) -> Option<bool> {
    match (case.label, case.review_status) {
        (Some(Label::Fraud), _) | (None, Some(ReviewStatus::ConfirmedFraud)) => Some(true),
        (Some(Label::Legit), _) | (None, Some(ReviewStatus::FalsePositive)) => Some(false),
        _ => None,
    }
}

fn cite(ids: &[&str]) -> String {
    ids.iter().map(|id| format!("[{id}]")).collect::<Vec<_>>().join("")
}

/// The narrative of an analysis, by rules over its evidence.
pub fn compose(analysis: &Analysis) -> Narrative {
    let mut text = String::new();
    let reasons: Vec<&crate::Evidence> = analysis
        .evidence
        .iter()
        .filter(|e| e.kind == EvidenceKind::Reason)
        .take(2)
        .collect();
    text.push_str(&format!(
        "Scored {:.3} and decided {}",
        analysis.score,
        analysis.decision.as_str()
    ));
    if reasons.is_empty() {
        text.push_str(" (no reasons were recorded for this decision). ");
    } else {
        let parts: Vec<String> = reasons.iter().map(|r| format!("{} [{}]", r.summary, r.id)).collect();
        text.push_str(&format!(": {}. ", parts.join("; ")));
    }

    let fraud: Vec<&str> = analysis
        .similar_cases
        .iter()
        .filter(|c| decided(c) == Some(true))
        .map(|c| c.evidence_id.as_str())
        .collect();
    let legit: Vec<&str> = analysis
        .similar_cases
        .iter()
        .filter(|c| decided(c) == Some(false))
        .map(|c| c.evidence_id.as_str())
        .collect();
    let open = analysis.similar_cases.len() - fraud.len() - legit.len();
    if analysis.similar_cases.is_empty() {
        text.push_str("No similar past case was found. ");
    } else {
        text.push_str(&format!(
            "Of the {} most similar past cases, {} turned out fraud{}, {} legitimate{}, and {open} {} undecided. ",
            analysis.similar_cases.len(),
            fraud.len(),
            if fraud.is_empty() {
                String::new()
            } else {
                format!(" {}", cite(&fraud))
            },
            legit.len(),
            if legit.is_empty() {
                String::new()
            } else {
                format!(" {}", cite(&legit))
            },
            if open == 1 { "is" } else { "are" }
        ));
    }
    let history_fraud = analysis
        .evidence
        .iter()
        .find(|e| e.id == "H1")
        .filter(|e| !e.summary.ends_with(" 0 labelled fraud"));
    if let Some(history) = history_fraud {
        text.push_str(&format!("The entity's own history shows fraud [{}]. ", history.id));
    }

    let n_decided = fraud.len() + legit.len();
    let fraud_share = (n_decided >= 3).then(|| fraud.len() as f64 / n_decided as f64);
    let recommendation = if analysis.decision == Decision::Decline
        || history_fraud.is_some()
        || fraud_share.is_some_and(|share| share >= 0.7)
    {
        Recommendation::Escalate
    } else if fraud_share.is_some_and(|share| share <= 0.3) {
        Recommendation::ProbableFalsePositive
    } else {
        Recommendation::Investigate
    };
    text.push_str(match recommendation {
        Recommendation::Escalate => "Recommendation: escalate.",
        Recommendation::ProbableFalsePositive => {
            "Recommendation: probably a false positive; confirm with the customer before closing."
        }
        Recommendation::Investigate => "Recommendation: investigate; the evidence does not settle it.",
    });
    Narrative {
        source: "template".to_owned(),
        model: None,
        citations: citations(&text),
        assessment: text,
        recommendation,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_bracketed_ids_once_each() {
        assert_eq!(
            citations("as [R1] and [S2][S10] show, not [s1] nor [] nor [R 1] nor [TOOLONGID1]; again [R1]"),
            ["R1", "S2", "S10"]
        );
        assert!(citations("no citation").is_empty());
    }
}
