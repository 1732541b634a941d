//! Models: the registry (versions, stages, who promoted when, comparisons),
//! one version's validation curves and importance, a thresholds what-if
//! from its validation data, and promotion or rollback for admins behind a
//! confirmation.

use std::path::Path as FsPath;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fraudlens_model::artifact::Manifest;
use fraudlens_model::metrics::{Curves, Evaluation};
use fraudlens_pipeline::retrain::CompareReport;
use fraudlens_store::{AuditEntry, ModelEntry, ModelStage, Role};
use maud::{Markup, html};
use serde::Deserialize;

use super::format::{self, query};
use super::layout::{PageError, Section, page, respond, scroll_box};
use super::session::{Session, read_form};
use crate::AppState;

/// The registry with what the serving process knows of each version.
struct Registry {
    models: Vec<ModelEntry>,
    serving: String,
}

async fn registry(state: &AppState) -> Result<Registry, PageError> {
    let mut models = state.pipeline.store().models().await?;
    models.sort_by(|a, b| {
        b.registered_at
            .cmp(&a.registered_at)
            .then_with(|| b.version.cmp(&a.version))
    });
    Ok(Registry {
        models,
        serving: state.pipeline.model().version().to_owned(),
    })
}

fn model_url(version: &str) -> String {
    format!("/ui/models/{}", format::segment(version))
}

fn stage_badge(entry: &ModelEntry, serving: &str) -> Markup {
    html! {
        span class={ "badge stage-" (entry.stage.as_str()) } { (entry.stage.as_str()) }
        @if entry.version == serving { " " span.badge.serving { "serving here" } }
        @if entry.shadow { " " span.badge.shadow { "shadow" } }
    }
}

/// The manifest of a registered version: the serving model's, else read from its directory.
fn manifest_of(state: &AppState, entry: &ModelEntry) -> Option<Manifest> {
    let serving = state.pipeline.model();
    if entry.version == serving.version() {
        return Some(serving.artifact.manifest.clone());
    }
    Manifest::peek(FsPath::new(&entry.path))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    promoted: Option<String>,
}

/// `GET /ui/models`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let registry = registry(&state).await?;
    let store = state.pipeline.store();
    let comparisons = store.comparisons(None, 20).await?;
    let mut promotions: Vec<(String, AuditEntry)> = Vec::new();
    for entry in registry.models.iter().filter(|m| m.promoted_at.is_some()).take(20) {
        for audit in store.audit(&format!("model:{}", entry.version)).await? {
            if audit.action == "promote" {
                promotions.push((entry.version.clone(), audit));
            }
        }
    }
    promotions.sort_by_key(|(_, audit)| std::cmp::Reverse(audit.at));
    let body = html! {
        h1 { "Models" }
        @if let Some(version) = &query.promoted {
            p.notice role="status" { "Version " code { (version) } " is in production." }
        }
        p.muted { "Every registered version, newest first. A promotion verifies the artifact before it is swapped in; the current model keeps serving if it fails." }
        @if session.is_admin() {
            @if let Some(previous) = rollback_target(&promotions, &registry) {
                p { a.button href={ (model_url(&previous)) "/promote" } { "Roll back to " (previous) } }
            }
        }
        (scroll_box("Registered models", html! {
            table.models {
                caption.visually-hidden { "Registered models" }
                thead {
                    tr {
                        th scope="col" { "Version" } th scope="col" { "Stage" } th scope="col" { "Validation AP" }
                        th scope="col" { "Registered (UTC)" } th scope="col" { "Promoted (UTC)" }
                        @if session.is_admin() { th scope="col" { "Action" } }
                    }
                }
                tbody {
                    @for entry in &registry.models {
                        tr {
                            td.id { a href=(model_url(&entry.version)) { (entry.version) } }
                            td { (stage_badge(entry, &registry.serving)) }
                            td.num { (summary_metric(&entry.summary, "average_precision")) }
                            td { (format::time(entry.registered_at)) }
                            td { (entry.promoted_at.map_or_else(|| "–".to_owned(), format::time)) }
                            @if session.is_admin() {
                                td {
                                    @if entry.stage != ModelStage::Production {
                                        a href={ (model_url(&entry.version)) "/promote" } {
                                            @if entry.promoted_at.is_some() { "Roll back to this" } @else { "Promote" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }))
        p { a href="/ui/drift" { "Drift of the serving model's inputs" } }
        h2 { "Promotions" }
        @if promotions.is_empty() { p.muted { "No promotion recorded." } }
        @else {
            ol.audit {
                @for (version, audit) in promotions.iter().take(20) {
                    li {
                        time datetime=(audit.at.to_string()) { (format::time(audit.at)) } " "
                        strong { (audit.actor) } " promoted " a href=(model_url(version)) { (version) }
                        @if let Some(before) = &audit.before { " (replacing " code { (before) } ")" }
                    }
                }
            }
        }
        h2 { "Comparisons" }
        (comparisons_table(&comparisons))
    };
    Ok(respond(
        StatusCode::OK,
        page("Models", Some(&session), Section::Models, body),
    ))
}

/// The version in production before the current one, if it is still registered.
fn rollback_target(promotions: &[(String, AuditEntry)], registry: &Registry) -> Option<String> {
    let production = registry.models.iter().find(|m| m.stage == ModelStage::Production)?;
    let (_, latest) = promotions.iter().find(|(version, _)| *version == production.version)?;
    let before = latest.before.as_ref()?;
    registry
        .models
        .iter()
        .any(|m| m.version == *before && m.stage != ModelStage::Production)
        .then(|| before.clone())
}

/// A number from a registry summary (the JSON `train` records), if any.
fn summary_metric(summary: &str, name: &str) -> String {
    let value: Option<f64> = serde_json::from_str::<serde_json::Value>(summary)
        .ok()
        .and_then(|summary| {
            summary
                .get(name)
                .or_else(|| summary.get("validation").and_then(|v| v.get(name)))
                .and_then(serde_json::Value::as_f64)
        });
    format::number(value.map(|v| (v * 10_000.0).round() / 10_000.0))
}

fn comparisons_table(comparisons: &[fraudlens_store::ComparisonEntry]) -> Markup {
    if comparisons.is_empty() {
        return html! { p.muted { "No comparison recorded (" code { "fraudlens models compare" } " or " code { "fraudlens retrain" } " records them)." } };
    }
    html! {
        (scroll_box("Comparisons", html! {
            table.compact {
                caption.visually-hidden { "Champion/challenger comparisons" }
                thead {
                    tr {
                        th scope="col" { "When (UTC)" } th scope="col" { "Candidate" } th scope="col" { "Against" }
                        th scope="col" { "Metric" } th scope="col" { "Candidate" } th scope="col" { "Against" } th scope="col" { "Difference (interval)" }
                    }
                }
                tbody {
                    @for entry in comparisons {
                        @let c = &entry.comparison;
                        @match serde_json::from_str::<CompareReport>(&c.report) {
                            Ok(report) => {
                                @for (idx, metric) in report.comparison.metrics.iter().enumerate() {
                                    tr {
                                        @if idx == 0 {
                                            td rowspan=(report.comparison.metrics.len()) { (format::time(c.at)) }
                                            td rowspan=(report.comparison.metrics.len()) { a href=(model_url(&c.candidate)) { (c.candidate) } }
                                            td rowspan=(report.comparison.metrics.len()) { (c.against) }
                                        }
                                        td { (format!("{:?}", metric.metric)) }
                                        td.num { (format::number(Some(metric.candidate))) }
                                        td.num { (format::number(Some(metric.against))) }
                                        td.num {
                                            (format!("{:+.4}", metric.difference))
                                            @if let (Some(low), Some(high)) = (metric.low, metric.high) {
                                                " [" (format!("{low:+.4}")) ", " (format!("{high:+.4}")) "]"
                                            }
                                        }
                                    }
                                }
                            }
                            Err(_) => {
                                tr {
                                    td { (format::time(c.at)) } td { (c.candidate) } td { (c.against) }
                                    td colspan="4" { span.muted { "a report this build cannot read" } }
                                }
                            }
                        }
                    }
                }
            }
        }))
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WhatIfQuery {
    review: Option<String>,
    decline: Option<String>,
}

/// What flagging `score >= threshold` did on the validation rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Flagged {
    /// Rows flagged.
    pub flagged: f64,
    /// Frauds among them.
    pub frauds: f64,
}

/// The validation rows at a threshold, from the curve: the point of the
/// lowest recorded threshold at or above `threshold` (the curve keeps a
/// point every 0.4 % of recall or false-positive rate, so this is exact to
/// that step).
pub(super) fn flagged_at(evaluation: &Evaluation, curves: &Curves, threshold: f64) -> Flagged {
    let n_fraud = evaluation.n_fraud as f64;
    let n_legit = evaluation.n.saturating_sub(evaluation.n_fraud) as f64;
    let point = curves
        .points
        .iter()
        .filter(|point| point.threshold >= threshold)
        .min_by(|a, b| a.threshold.total_cmp(&b.threshold));
    match point {
        None => Flagged {
            flagged: 0.0,
            frauds: 0.0,
        },
        Some(point) => {
            let frauds = point.recall * n_fraud;
            Flagged {
                flagged: frauds + point.fpr * n_legit,
                frauds,
            }
        }
    }
}

/// The expected outcome of a pair of thresholds on the validation rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Outcome {
    /// Alerts to review (flagged, not declined), per day when days are known.
    pub review_alerts: f64,
    /// Frauds among them.
    pub review_precision: Option<f64>,
    /// Declined, per day when days are known.
    pub declines: f64,
    /// Frauds among the declined.
    pub decline_precision: Option<f64>,
    /// Share of all frauds flagged (reviewed or declined).
    pub recall: Option<f64>,
    /// Frauds missed, per day when days are known.
    pub missed: f64,
}

pub(super) fn outcome(
    evaluation: &Evaluation,
    curves: &Curves,
    review: f64,
    decline: Option<f64>,
    days: Option<f64>,
) -> Outcome {
    let at_review = flagged_at(evaluation, curves, review);
    let at_decline = decline.map_or(
        Flagged {
            flagged: 0.0,
            frauds: 0.0,
        },
        |decline| flagged_at(evaluation, curves, decline.max(review)),
    );
    let per = days.filter(|d| *d > 0.0).unwrap_or(1.0);
    let band = (at_review.flagged - at_decline.flagged).max(0.0);
    let band_frauds = (at_review.frauds - at_decline.frauds).max(0.0);
    let ratio = |num: f64, den: f64| (den > 0.0).then(|| num / den);
    Outcome {
        review_alerts: band / per,
        review_precision: ratio(band_frauds, band),
        declines: at_decline.flagged / per,
        decline_precision: ratio(at_decline.frauds, at_decline.flagged),
        recall: ratio(at_review.frauds, evaluation.n_fraud as f64),
        missed: (evaluation.n_fraud as f64 - at_review.frauds).max(0.0) / per,
    }
}

fn parse_threshold(text: Option<&str>, default: f64, what: &str) -> Result<f64, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|t| (0.0..=1.0).contains(t))
            .ok_or_else(|| format!("the {what} threshold must be a number from 0 to 1, not {text:?}")),
    }
}

/// `GET /ui/models/{version}`.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(version): Path<String>,
    Query(query): Query<WhatIfQuery>,
) -> Result<Response, PageError> {
    let registry = registry(&state).await?;
    let entry = registry
        .models
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| PageError::not_found(format!("No model version {version:?} is registered.")))?;
    let manifest = manifest_of(&state, entry);
    let comparisons = state.pipeline.store().comparisons(Some(&version), 10).await?;
    let current = manifest.as_ref().map(|m| m.thresholds);
    let (review, decline, error) = match current {
        Some(thresholds) => {
            let review = parse_threshold(query.review.as_deref(), thresholds.review(), "review");
            // an empty decline field: decline nothing
            let decline = match query.decline.as_deref().map(str::trim) {
                None => Ok(thresholds.decline()),
                Some("") => Ok(None),
                Some(text) => parse_threshold(Some(text), 1.0, "decline").map(Some),
            };
            match (review, decline) {
                (Ok(r), Ok(Some(d))) if d < r => (
                    r,
                    Some(d),
                    Some("the decline threshold must be at or above the review threshold".to_owned()),
                ),
                (Ok(r), Ok(d)) => (r, d, None),
                (Err(e), _) | (_, Err(e)) => (thresholds.review(), thresholds.decline(), Some(e)),
            }
        }
        None => (0.0, None, None),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/ui/models" { "Models" } " › " span { (version) } }
        h1 { "Model " span.id { (version) } }
        p { (stage_badge(entry, &registry.serving)) " registered " (format::time(entry.registered_at))
            @if session.is_admin() && entry.stage != ModelStage::Production {
                " · " a href={ (model_url(&entry.version)) "/promote" } {
                    @if entry.promoted_at.is_some() { "Roll back to this version" } @else { "Promote this version" }
                }
            }
        }
        @match &manifest {
            None => {
                p.error role="alert" {
                    "The artifact directory of this version cannot be read on this server"
                    @if session.is_admin() { " (" code { (entry.path) } ")" } "."
                }
            }
            Some(manifest) => {
                (validation_section(manifest))
                section aria-labelledby="h-whatif" {
                    h2 #h-whatif { "Thresholds what-if" }
                    (what_if(manifest, review, decline, error.as_deref()))
                }
                section aria-labelledby="h-gain" {
                    h2 #h-gain { "Gain importance" }
                    (importance_chart(&manifest.gain_importance))
                }
            }
        }
        section aria-labelledby="h-cmp" {
            h2 #h-cmp { "Comparisons of this version" }
            (comparisons_table(&comparisons))
        }
    };
    Ok(respond(
        status,
        page(&format!("Model {version}"), Some(&session), Section::Models, body),
    ))
}

fn validation_section(manifest: &Manifest) -> Markup {
    let Some(evaluation) = &manifest.validation else {
        return html! { p.muted { "This artifact records no validation (an imported model, or trained without a holdout)." } };
    };
    html! {
        section aria-labelledby="h-valid" {
            h2 #h-valid { "Validation" }
            dl.facts.inline {
                dt { "Rows" } dd { (evaluation.n) }
                dt { "Frauds" } dd { (evaluation.n_fraud) " (" (format::percent(Some(evaluation.fraud_rate))) ")" }
                dt { "Average precision" } dd { (format::number(evaluation.average_precision)) }
                dt { "ROC AUC" } dd { (format::number(evaluation.roc_auc)) }
                dt { "Brier score" } dd { (format::number(Some(evaluation.brier))) }
                dt { "Thresholds" } dd {
                    "review ≥ " (format::number(Some(manifest.thresholds.review())))
                    @match manifest.thresholds.decline() {
                        Some(decline) => { ", decline ≥ " (format::number(Some(decline))) }
                        None => { ", no declines" }
                    }
                }
            }
            div.charts {
                @if let Some(curves) = &evaluation.curves {
                    (pr_curve(curves, manifest.thresholds.review(), manifest.thresholds.decline()))
                }
                (reliability_chart(&evaluation.reliability))
            }
        }
    }
}

const CHART: f64 = 260.0;
const PAD: f64 = 40.0;

fn axes(x_label: &str, y_label: &str) -> Markup {
    let end = PAD + CHART;
    html! {
        line x1=(PAD) x2=(end) y1=(end) y2=(end) class="axis" {}
        line x1=(PAD) x2=(PAD) y1=(PAD / 2.0) y2=(end) class="axis" {}
        @for tick in [0.0, 0.5, 1.0] {
            text x=(PAD + tick * CHART) y=(end + 14.0) text-anchor="middle" class="note" { (tick) }
            text x=(PAD - 6.0) y=(end - tick * CHART + 4.0) text-anchor="end" class="note" { (tick) }
        }
        text x=(PAD + CHART / 2.0) y=(end + 30.0) text-anchor="middle" class="label" { (x_label) }
        text x="12" y=(PAD / 2.0 + CHART / 2.0) text-anchor="middle" class="label"
            transform={ "rotate(-90 12 " (PAD / 2.0 + CHART / 2.0) ")" } { (y_label) }
    }
}

fn pr_curve(curves: &Curves, review: f64, decline: Option<f64>) -> Markup {
    let x = |recall: f64| PAD + recall.clamp(0.0, 1.0) * CHART;
    let y = |precision: f64| PAD + (1.0 - precision.clamp(0.0, 1.0)) * CHART;
    let points: String = curves
        .points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.recall), y(p.precision)))
        .collect::<Vec<_>>()
        .join(" ");
    let marker = |threshold: f64| {
        curves
            .points
            .iter()
            .filter(|p| p.threshold >= threshold)
            .min_by(|a, b| a.threshold.total_cmp(&b.threshold))
    };
    html! {
        figure.chart.small {
            svg viewBox={ "0 0 " (CHART + PAD + 20.0) " " (CHART + PAD + 40.0) } width="100%" role="img"
                aria-label="Validation precision-recall curve, with the review and decline thresholds marked" {
                (axes("recall", "precision"))
                polyline points=(points) class="curve" {}
                @if let Some(p) = marker(review) { circle cx=(x(p.recall)) cy=(y(p.precision)) r="5" class="mark-review" { title { "review threshold" } } }
                @if let Some(p) = decline.and_then(marker) { circle cx=(x(p.recall)) cy=(y(p.precision)) r="5" class="mark-decline" { title { "decline threshold" } } }
            }
            figcaption { "Precision–recall on the validation rows; dots: review (amber) and decline (red) thresholds." }
        }
    }
}

fn reliability_chart(bins: &[fraudlens_model::metrics::ReliabilityBin]) -> Markup {
    if bins.is_empty() {
        return html! {};
    }
    let x = |v: f64| PAD + v.clamp(0.0, 1.0) * CHART;
    let y = |v: f64| PAD + (1.0 - v.clamp(0.0, 1.0)) * CHART;
    let largest = bins.iter().map(|b| b.n).max().unwrap_or(1).max(1) as f64;
    html! {
        figure.chart.small {
            svg viewBox={ "0 0 " (CHART + PAD + 20.0) " " (CHART + PAD + 40.0) } width="100%" role="img"
                aria-label="Reliability diagram: predicted probability against the observed fraud rate per bin" {
                (axes("predicted probability", "observed fraud rate"))
                line x1=(x(0.0)) y1=(y(0.0)) x2=(x(1.0)) y2=(y(1.0)) class="diagonal" {}
                @for bin in bins.iter().filter(|b| b.n > 0) {
                    circle cx=(x(bin.mean_predicted)) cy=(y(bin.observed_rate))
                        r=(format!("{:.1}", 2.5 + 5.0 * (bin.n as f64 / largest).sqrt())) class="bin" {
                        title { (bin.n) " rows: predicted " (format::number(Some(bin.mean_predicted))) ", observed " (format::number(Some(bin.observed_rate))) }
                    }
                }
            }
            figcaption { "Reliability: on the diagonal, predicted probabilities match observed fraud rates; dot size: rows in the bin." }
        }
    }
}

fn importance_chart(gains: &[(String, f64)]) -> Markup {
    let shown: Vec<&(String, f64)> = gains.iter().take(15).collect();
    if shown.is_empty() {
        return html! { p.muted { "No importance recorded." } };
    }
    let largest = shown.iter().map(|(_, g)| *g).fold(1e-12, f64::max);
    let row = 22.0;
    let (label_width, bar) = (230.0, 300.0);
    html! {
        figure.chart {
            svg.importance viewBox={ "0 0 " (label_width + bar + 90.0) " " (row * shown.len() as f64 + 6.0) } width="100%" role="img"
                aria-label={ "Gain importance: " (shown.iter().map(|(n, g)| format!("{n} {g:.0}")).collect::<Vec<_>>().join(", ")) } {
                @for (idx, (name, gain)) in shown.iter().enumerate() {
                    @let y = idx as f64 * row;
                    text x=(label_width - 8.0) y=(y + 15.0) text-anchor="end" class="label" { (name) }
                    rect x=(label_width) y=(y + 4.0) width=((gain / largest * bar).max(1.0)) height=(row - 8.0) class="gain" {}
                    text x=(label_width + (gain / largest * bar).max(1.0) + 4.0) y=(y + 15.0) class="value" { (format!("{gain:.0}")) }
                }
            }
            figcaption { "Total split gain per input (the 15 largest)." }
        }
    }
}

fn what_if(manifest: &Manifest, review: f64, decline: Option<f64>, error: Option<&str>) -> Markup {
    let Some(evaluation) = &manifest.validation else {
        return html! { p.muted { "Without validation data there is nothing to try thresholds on." } };
    };
    let Some(curves) = &evaluation.curves else {
        return html! { p.muted { "This artifact was written before validation curves were recorded." } };
    };
    let days = manifest.threshold_choice.as_ref().and_then(|c| c.valid_days);
    let unit = if days.is_some() {
        "per day"
    } else {
        "on the validation rows"
    };
    let now = outcome(
        evaluation,
        curves,
        manifest.thresholds.review(),
        manifest.thresholds.decline(),
        days,
    );
    let proposed = outcome(evaluation, curves, review, decline, days);
    let count = |v: f64| {
        if v >= 10.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    let rows: Vec<(String, String, String)> = vec![
        (
            format!("Alerts to review, {unit}"),
            count(now.review_alerts),
            count(proposed.review_alerts),
        ),
        (
            "Precision of the review band".to_owned(),
            format::percent(now.review_precision),
            format::percent(proposed.review_precision),
        ),
        (
            format!("Declines, {unit}"),
            count(now.declines),
            count(proposed.declines),
        ),
        (
            "Precision of the declines".to_owned(),
            format::percent(now.decline_precision),
            format::percent(proposed.decline_precision),
        ),
        (
            "Recall (frauds reviewed or declined)".to_owned(),
            format::percent(now.recall),
            format::percent(proposed.recall),
        ),
        (
            format!("Frauds missed, {unit}"),
            count(now.missed),
            count(proposed.missed),
        ),
    ];
    html! {
        p.muted { "Move the thresholds to see what they would have done on this version's validation rows"
            @if let Some(days) = days { " (" (format!("{days:.1}")) " days)" } ". Nothing changes until a model with those thresholds is promoted." }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form.whatif method="get" {
            div {
                label for="w-review" { "Review at or above" }
                input #w-review type="number" name="review" min="0" max="1" step="any" value=(format!("{review}"));
            }
            div {
                label for="w-decline" { "Decline at or above" }
                input #w-decline type="number" name="decline" min="0" max="1" step="any"
                    value=(decline.map(|d| d.to_string()).unwrap_or_default()) aria-describedby="w-decline-help";
                span #w-decline-help.muted { "empty: decline nothing" }
            }
            div.actions { button type="submit" { "Show the outcome" } a href="?" { "Reset" } }
        }
        (scroll_box("Thresholds what-if", html! {
            table.compact.whatif-result {
                caption.visually-hidden { "Expected outcome of the thresholds" }
                thead { tr { th scope="col" { "" } th scope="col" { "Current thresholds" } th scope="col" { "These thresholds" } } }
                tbody {
                    @for (name, a, b) in &rows {
                        tr { th scope="row" { (name) } td.num { (a) } td.num.proposed { (b) } }
                    }
                }
            }
        }))
    }
}

fn admin_only(session: &Session) -> Result<(), PageError> {
    if session.caller.role == Role::Admin {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Only an admin may promote or roll back a model; analysts review cases.",
        ))
    }
}

/// `GET /ui/models/{version}/promote`: the confirmation.
pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(version): Path<String>,
) -> Result<Response, PageError> {
    admin_only(&session)?;
    let registry = registry(&state).await?;
    let entry = registry
        .models
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| PageError::not_found(format!("No model version {version:?} is registered.")))?;
    let rollback = entry.promoted_at.is_some();
    let verb = if rollback { "Roll back to" } else { "Promote" };
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/ui/models" { "Models" } " › " a href=(model_url(&version)) { (version) } " › " span { "confirm" } }
        h1 { (verb) " " span.id { (version) } "?" }
        p { "Every decision from then on — on this server and, within a second, on every process sharing the store — is made by "
            code { (version) } " instead of " code { (registry.serving) } "." }
        p.muted { "The artifact is verified before the swap; if it is corrupt or its files changed since it was registered, it is refused and the current model keeps serving." }
        form method="post" action={ (model_url(&version)) "/promote" } {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { (verb) " " (version) }
            " " a href=(model_url(&version)) { "Cancel" }
        }
    };
    Ok(respond(
        StatusCode::OK,
        page(&format!("{verb} {version}"), Some(&session), Section::Models, body),
    ))
}

/// `POST /ui/models/{version}/promote`.
pub(crate) async fn promote(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    read_form(&session, &headers, &body)?;
    admin_only(&session)?;
    state
        .pipeline
        .promote(&version, state.config.card_hash_key.as_ref(), &session.caller.actor())
        .await
        .map_err(|error| PageError::from(crate::error::ApiError::from(error)))?;
    crate::api::follow_in_mlflow(&state);
    Ok(Redirect::to(&format!("/ui/models?{}", query([("promoted", version.as_str())]))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudlens_model::metrics::CurvePoint;

    fn evaluation() -> (Evaluation, Curves) {
        // 100 frauds, 900 legitimate
        let curves = Curves {
            points: vec![
                CurvePoint {
                    threshold: 0.9,
                    precision: 1.0,
                    recall: 0.5,
                    fpr: 0.0,
                },
                CurvePoint {
                    threshold: 0.5,
                    precision: 0.8,
                    recall: 0.8,
                    fpr: 20.0 / 900.0,
                },
                CurvePoint {
                    threshold: 0.1,
                    precision: 0.5,
                    recall: 1.0,
                    fpr: 100.0 / 900.0,
                },
            ],
            fraud_histogram: Vec::new(),
            legit_histogram: Vec::new(),
        };
        let mut evaluation: Evaluation = serde_json::from_value(serde_json::json!({
            "n": 1000, "n_fraud": 100, "fraud_rate": 0.1, "roc_auc": null, "average_precision": null,
            "brier": 0.0, "threshold": 0.5,
            "confusion": {"tp": 0, "fp": 0, "tn": 0, "fn": 0},
            "precision": 0.0, "recall": 0.0, "f1": 0.0, "precision_at_k": null, "card_precision_at_k": null,
            "reliability": []
        }))
        .unwrap_or_else(|error| panic!("{error}"));
        evaluation.curves = Some(curves.clone());
        (evaluation, curves)
    }

    #[test]
    fn flagged_counts_come_from_the_curve_point_at_or_above_the_threshold() {
        let (evaluation, curves) = evaluation();
        let at = |t| flagged_at(&evaluation, &curves, t);
        assert_eq!(
            at(0.95),
            Flagged {
                flagged: 0.0,
                frauds: 0.0
            },
            "above every point: nothing flagged"
        );
        let high = at(0.9);
        assert!((high.flagged - 50.0).abs() < 1e-9 && (high.frauds - 50.0).abs() < 1e-9);
        let mid = at(0.6);
        assert!(
            (mid.flagged - 50.0).abs() < 1e-9,
            "0.6 counts as the point at 0.9: {mid:?}"
        );
        let low = at(0.5);
        assert!((low.flagged - 100.0).abs() < 1e-9 && (low.frauds - 80.0).abs() < 1e-9);
    }

    #[test]
    fn the_outcome_splits_review_band_and_declines_per_day() {
        let (evaluation, curves) = evaluation();
        let o = outcome(&evaluation, &curves, 0.5, Some(0.9), Some(10.0));
        assert!((o.review_alerts - 5.0).abs() < 1e-9, "{o:?}");
        assert!((o.review_precision.unwrap() - 0.6).abs() < 1e-9);
        assert!((o.declines - 5.0).abs() < 1e-9);
        assert!((o.decline_precision.unwrap() - 1.0).abs() < 1e-9);
        assert!((o.recall.unwrap() - 0.8).abs() < 1e-9);
        assert!((o.missed - 2.0).abs() < 1e-9);
        let none = outcome(&evaluation, &curves, 0.95, Some(0.99), None);
        assert_eq!(
            (none.review_alerts, none.review_precision, none.missed),
            (0.0, None, 100.0)
        );
        let no_declines = outcome(&evaluation, &curves, 0.5, None, Some(10.0));
        assert!((no_declines.review_alerts - 10.0).abs() < 1e-9 && no_declines.declines == 0.0);
    }

    #[test]
    fn thresholds_are_numbers_from_0_to_1() {
        assert_eq!(parse_threshold(None, 0.4, "review"), Ok(0.4));
        assert_eq!(parse_threshold(Some(" 0.7 "), 0.4, "review"), Ok(0.7));
        assert!(parse_threshold(Some("1.5"), 0.4, "review").is_err());
        assert!(parse_threshold(Some("NaN"), 0.4, "review").is_err());
    }
}
