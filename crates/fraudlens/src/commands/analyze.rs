//! `fraudlens analyze ID`: the case analysis of a stored decision, as the
//! API gives it — evidence with ids, similar past cases and their outcomes,
//! a narrative citing the evidence.

use std::io::Write as _;

use anyhow::Context as _;
use fraudlens_core::Schema;

use super::admin::{block_on, close_store, open_store, store_url};
use crate::cli::AnalyzeArgs;
use crate::config::Config;
use crate::exit::{Classify as _, CliResult};

/// Runs `fraudlens analyze`.
pub fn run(config: &Config, args: AnalyzeArgs) -> CliResult {
    // the entity keys' names (terminal, card…) for the related-entities evidence
    let names: Vec<String> = Schema::new(config.schema.clone(), config.security.card_hash_key.as_ref())
        .map(|schema| schema.entity_names().to_vec())
        .unwrap_or_default();
    let llm = fraudlens_cases::Llm::from_settings(&config.llm)
        .map_err(anyhow::Error::msg)
        .usage()?;
    let url = store_url(config, &args.store);
    let analysis = block_on(async {
        let store = open_store(config, &url).await?;
        let mut analysis = fraudlens_cases::analyze(store.as_ref(), &args.id, &names, &config.cases).await;
        if let Ok(Some(analysis)) = &mut analysis {
            // the command writes a narrative, as the API's POST does
            let kept = fraudlens_cases::keep_narrative(store.as_ref(), analysis, llm.as_ref()).await;
            close_store(store.as_ref()).await;
            kept.context("keeping the narrative")?;
            return Ok(Some(analysis.clone()));
        }
        close_store(store.as_ref()).await;
        Ok(analysis.context("analysing the case")?)
    })?;
    let Some(analysis) = analysis else {
        return Err(anyhow::anyhow!("no decision {:?} in the store", args.id)).data();
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&analysis).context("writing JSON")?;
        writeln!(out, "{text}").context("writing")?;
        return Ok(());
    }
    writeln!(
        out,
        "{}  {}  score {:.3}  model {}{}",
        analysis.transaction_id,
        analysis.decision.as_str(),
        analysis.score,
        analysis.model_version,
        analysis
            .entity
            .as_deref()
            .map(|entity| format!("  entity {entity}"))
            .unwrap_or_default()
    )
    .context("writing")?;
    writeln!(out, "\nevidence:").context("writing")?;
    for evidence in &analysis.evidence {
        writeln!(out, "  [{}] {}", evidence.id, evidence.summary).context("writing")?;
    }
    let narrative = &analysis.narrative;
    let by = narrative.model.as_deref().map_or_else(
        || narrative.source.clone(),
        |model| format!("{} {model}", narrative.source),
    );
    writeln!(
        out,
        "\n{} flagged decisions compared ({}); narrative by {by}, recommendation: {}",
        analysis.candidates_compared,
        match analysis.similar_search {
            fraudlens_cases::SimilarSearch::Exact => "the newest, exact search",
            fraudlens_cases::SimilarSearch::Index => "the nearest by reasons from the vector index",
        },
        narrative.recommendation.as_str()
    )
    .context("writing")?;
    writeln!(out, "  {}", narrative.assessment).context("writing")?;
    if let Some(note) = &narrative.note {
        writeln!(out, "  (the LLM's narrative was not used: {note})").context("writing")?;
    }
    Ok(())
}
