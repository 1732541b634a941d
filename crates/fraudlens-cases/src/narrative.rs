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

/// The citations of an LLM's text, checked strictly: every bracketed group
/// must be ids of evidence (`[R1]`, `[S2, S3]`), and every word shaped like
/// an id (`S9`, `r1`) must be one; the ids cited, in order. An error names
/// what is not evidence.
pub fn checked_citations(text: &str, is_evidence: impl Fn(&str) -> bool) -> Result<Vec<String>, String> {
    let mut cited: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            return Err("an unclosed bracket".to_owned());
        };
        let group = &after[..close];
        for part in group
            .split([',', ';', ' '])
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            if !is_evidence(part) {
                let shown: String = part.chars().take(20).collect();
                return Err(format!("cites {shown}, which is not evidence"));
            }
            if !cited.iter().any(|seen| seen == part) {
                cited.push(part.to_owned());
            }
        }
        rest = &after[close + 1..];
    }
    // an id outside brackets, or in another case, still claims evidence
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        let looks_like_id = chars.next().is_some_and(|c| "RHESrhes".contains(c))
            && word.len() >= 2
            && word.len() <= 8
            && chars.all(|c| c.is_ascii_digit());
        if looks_like_id && !is_evidence(word) {
            return Err(format!("cites {word}, which is not evidence"));
        }
    }
    Ok(cited)
}

fn severity(recommendation: Recommendation) -> u8 {
    match recommendation {
        Recommendation::ProbableFalsePositive => 0,
        Recommendation::Investigate => 1,
        Recommendation::Escalate => 2,
    }
}

/// An LLM's narrative, its recommendation never milder than the rules'
/// (an LLM may add words, not clear a case the evidence escalates).
pub fn no_weaker(written: Narrative, rules: &Narrative) -> Narrative {
    if severity(written.recommendation) >= severity(rules.recommendation) {
        return written;
    }
    Narrative {
        note: Some(format!(
            "the LLM recommended {}; the rules' {} stands",
            written.recommendation.as_str(),
            rules.recommendation.as_str()
        )),
        recommendation: rules.recommendation,
        ..written
    }
}

impl From<&fraudlens_store::NewNarrative> for Narrative {
    fn from(kept: &fraudlens_store::NewNarrative) -> Self {
        Self {
            source: kept.source.clone(),
            model: kept.model.clone(),
            assessment: kept.assessment.clone(),
            recommendation: match kept.recommendation.as_str() {
                "probable_false_positive" => Recommendation::ProbableFalsePositive,
                "escalate" => Recommendation::Escalate,
                _ => Recommendation::Investigate,
            },
            citations: kept.citations.clone(),
            note: kept.note.clone(),
        }
    }
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
    // the ids cited, as they are written (not parsed back: a category value may hold brackets)
    let mut cited: Vec<String> = Vec::new();
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
        cited.extend(reasons.iter().map(|r| r.id.clone()));
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
    cited.extend(fraud.iter().chain(&legit).map(|id| (*id).to_owned()));
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
        cited.push(history.id.clone());
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
        citations: cited,
        assessment: text,
        recommendation,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_llm_s_citations_are_checked_strictly() {
        let known = |id: &str| ["R1", "R2", "S1"].contains(&id);
        assert_eq!(
            checked_citations("as [R1] and [S1, R2] show; again [R1]", known),
            Ok(vec!["R1".into(), "S1".into(), "R2".into()])
        );
        for (text, unknown) in [
            ("real [R1] and [S7, S8]", "S7"),
            ("real [R1] and [s1]", "s1"),
            ("real [R1] and S9 alone", "S9"),
            ("real [R1] (see r1)", "r1"),
            ("real [R1] and [S 9]", "S"),
            ("real [R1] and [ID3]", "ID3"),
        ] {
            let error = checked_citations(text, known).expect_err(text);
            assert!(error.contains(unknown), "{text}: {error}");
        }
        assert!(checked_citations("unclosed [R1", known).is_err());
        assert_eq!(checked_citations("no citation", known), Ok(vec![]));
    }

    #[test]
    fn citations_are_bracketed_ids_once_each() {
        assert_eq!(
            citations("as [R1] and [S2][S10] show, not [s1] nor [] nor [R 1] nor [TOOLONGID1]; again [R1]"),
            ["R1", "S2", "S10"]
        );
        assert!(citations("no citation").is_empty());
    }
}
