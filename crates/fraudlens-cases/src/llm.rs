//! A narrative written by an LLM through an OpenAI-compatible chat
//! completions API (`[llm]`: base URL, model, timeout, a cap on tokens; the
//! key from `FRAUDLENS_LLM_API_KEY`).
//!
//! What is sent is each piece of evidence in its shareable form, built from
//! its parts: feature names, numbers, counts, outcomes and times — never an
//! entity, key or transaction id, a category value or free text (a note);
//! card numbers are redacted in what is left. The answer must be one JSON
//! object `{"assessment", "recommendation"}`; its citations are checked
//! strictly against the evidence ids, and an answer that cites none, cites
//! anything that is not evidence, is malformed, fails or is late is not
//! used: the rules' narrative stands, with a note saying why. Nor may its
//! recommendation be milder than the rules'.

use std::time::Duration;

use fraudlens_core::{Secret, redact_card_numbers};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Analysis;
use crate::narrative::{Narrative, Recommendation, checked_citations};

/// Longest assessment accepted, in characters.
const MAX_ASSESSMENT: usize = 2_000;

/// `[llm]`: the chat-completions API narratives are asked of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    /// The API's base URL (`https://api.openai.com/v1`, a local server's
    /// `http://127.0.0.1:8000/v1`…); unset: the rules write every narrative.
    pub base_url: Option<String>,
    /// The model asked.
    pub model: String,
    /// Longest wait for an answer, in seconds (then the rules' narrative).
    pub timeout_seconds: u64,
    /// Most tokens of an answer.
    pub max_tokens: u32,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            model: "gpt-4o-mini".to_owned(),
            timeout_seconds: 20,
            max_tokens: 400,
        }
    }
}

/// The environment variable holding the API key (`OPENAI_API_KEY` is read when it is unset).
pub const KEY_ENV: &str = "FRAUDLENS_LLM_API_KEY";

/// A client of one chat-completions API.
pub struct Llm {
    http: reqwest::Client,
    endpoint: String,
    model: String,
    max_tokens: u32,
    key: Option<Secret>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Llm {
    /// The client of `settings` (`None` without a base URL), with the key of the environment.
    pub fn from_settings(settings: &LlmSettings) -> Result<Option<Self>, String> {
        let Some(base) = settings
            .base_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
        else {
            return Ok(None);
        };
        let key = [KEY_ENV, "OPENAI_API_KEY"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|key| !key.trim().is_empty()))
            .map(Secret::new);
        Self::new(base, settings, key).map(Some)
    }

    /// A client of the API at `base` (`…/v1`).
    pub fn new(base: &str, settings: &LlmSettings, key: Option<Secret>) -> Result<Self, String> {
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('@') {
            return Err("llm.base_url must be an http:// or https:// URL without credentials".to_owned());
        }
        if settings.timeout_seconds == 0 || settings.max_tokens == 0 || settings.model.trim().is_empty() {
            return Err("llm.timeout_seconds and llm.max_tokens must be at least 1, and llm.model set".to_owned());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_seconds))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| error.without_url().to_string())?;
        Ok(Self {
            http,
            endpoint: format!("{}/chat/completions", base.trim_end_matches('/')),
            model: settings.model.clone(),
            max_tokens: settings.max_tokens,
            key,
        })
    }

    /// The model asked.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Asks for a narrative of `analysis`; the reason it cannot be used otherwise.
    pub async fn narrate(&self, analysis: &Analysis) -> Result<Narrative, String> {
        let (system, user) = prompt(analysis);
        tracing::debug!(model = %self.model, prompt = %user, "asking the LLM for a narrative");
        let body = json!({
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
        });
        let mut request = self.http.post(&self.endpoint).json(&body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                "the LLM did not answer in time".to_owned()
            } else {
                format!("the LLM could not be reached: {}", error.without_url())
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the LLM answered HTTP {status}"));
        }
        let answer: Value = response.json().await.map_err(|error| {
            if error.is_timeout() {
                "the LLM did not answer in time".to_owned()
            } else {
                format!("the LLM's answer is not JSON: {}", error.without_url())
            }
        })?;
        let content = answer
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or("the LLM's answer has no message")?;
        verify(analysis, content, &self.model)
    }
}

/// The system and user messages for `analysis`, pseudonymised.
pub fn prompt(analysis: &Analysis) -> (String, String) {
    let system = "You assist fraud analysts. Use only the evidence given, invent nothing, and cite the \
                  evidence ids you rely on in square brackets, like [R1] or [S2]."
        .to_owned();
    let mut user = format!(
        "A case was decided {} with score {:.3}.\nEvidence:\n",
        analysis.decision.as_str(),
        analysis.score
    );
    for evidence in &analysis.evidence {
        // the evidence's shareable form: no identifier, category value or free text; card
        // numbers redacted in what is left (feature names are the model's own)
        user.push_str(&format!(
            "[{}] {}\n",
            evidence.id,
            redact_card_numbers(&evidence.shared)
        ));
    }
    user.push_str(
        "Write a short assessment (at most 120 words) of whether this case is fraud, citing evidence ids in \
         square brackets, and recommend one of probable_false_positive, investigate or escalate. Answer \
         with one JSON object and nothing else: {\"assessment\": \"…\", \"recommendation\": \"…\"}",
    );
    (system, user)
}

/// The narrative an LLM's message holds, checked against the evidence.
pub fn verify(analysis: &Analysis, content: &str, model: &str) -> Result<Narrative, String> {
    let text = content.trim();
    // some models wrap JSON in a code fence
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .map_or(text, |inner| inner.trim_end().trim_end_matches("```"))
        .trim();
    let object: Value =
        serde_json::from_str(text).map_err(|_| "the LLM's answer is not the JSON object asked for".to_owned())?;
    let assessment = object
        .get("assessment")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .ok_or("the LLM's answer has no assessment")?;
    if assessment.chars().count() > MAX_ASSESSMENT {
        return Err(format!(
            "the LLM's assessment is longer than {MAX_ASSESSMENT} characters"
        ));
    }
    let recommendation = match object.get("recommendation").and_then(Value::as_str).map(str::trim) {
        Some("probable_false_positive") => Recommendation::ProbableFalsePositive,
        Some("investigate") => Recommendation::Investigate,
        Some("escalate") => Recommendation::Escalate,
        _ => return Err("the LLM's recommendation is not one of the three".to_owned()),
    };
    let cited = checked_citations(assessment, |id| analysis.has_evidence(id))
        .map_err(|reason| format!("the LLM's assessment {reason}"))?;
    if cited.is_empty() {
        return Err("the LLM's assessment cites no evidence".to_owned());
    }
    Ok(Narrative {
        source: "llm".to_owned(),
        model: Some(model.to_owned()),
        assessment: assessment.to_owned(),
        recommendation,
        citations: cited,
        note: None,
    })
}
