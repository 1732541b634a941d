//! One case: the decision and why (reasons as a chart, each top feature
//! against the entity's own usual range), the entity's recent transactions,
//! the transaction itself, its review (status change with a note), audit
//! trail and labels.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fraudlens_core::{Reason, ReviewStatus, Timestamp};
use fraudlens_store::{ReviewRequest, StoredDecision, StoredNarrative};
use maud::{Markup, html};
use serde::Deserialize;

use super::format::{self, case_url, query};
use super::layout::{PageError, Section, decision_badge, label_badge, page, respond, scroll_box, status_badge};
use super::queue::{review_fields, score_bar};
use super::session::{Session, read_form};
use crate::{AppState, now};

const DAY_MILLIS: i64 = 24 * 3_600_000;
/// How far back the entity's usual range and timeline look.
const HISTORY_DAYS: i64 = 30;
/// Most of the entity's transactions read for one case.
const HISTORY_ROWS: u32 = 500;
/// How far back related entities are looked for.
const RELATED_DAYS: i64 = 3;
/// Most related entities listed per key.
const RELATED_ROWS: u32 = 10;
/// Most reasons drawn.
const MAX_REASONS: usize = 10;

#[derive(Deserialize)]
pub(crate) struct CaseQuery {
    done: Option<String>,
}

/// `GET /ui/cases/{id}`.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(query): Query<CaseQuery>,
) -> Result<Response, PageError> {
    let store = state.pipeline.store();
    let stored = store
        .transaction(&id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("No transaction {id:?} is stored.")))?;
    let audit = store.audit(&id).await?;
    let labels = store.labels(&id).await?;
    let d = &stored.decision;
    let names = crate::api::feature_names(&state, &d.model_version).await?;
    let history = match &d.entity {
        Some(entity) => {
            let from = Timestamp::from_millis(d.event_time.as_millis().saturating_sub(HISTORY_DAYS * DAY_MILLIS));
            let to = Timestamp::from_millis(d.event_time.as_millis().saturating_add(DAY_MILLIS));
            store.entity_history(entity, from, to, HISTORY_ROWS).await?
        }
        None => Vec::new(),
    };
    let transaction = crate::api::transaction_view(&d.transaction_id, &d.body, &state.pipeline.model());
    let related = related(&state, &stored).await?;
    let reasons = fraudlens_pipeline::DecisionView::from(d).reasons;
    let narrative = store.narratives(&id, 1).await?.into_iter().next();
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/ui/queue" { "Review queue" } " › " span { (id) } }
        h1 { "Case " span.id { (id) } }
        @if query.done.as_deref() == Some("assessment") { p.notice role="status" { "A new assessment was written." } }
        @else if query.done.is_some() { p.notice role="status" { "Status changed to " (format::words(d.review_status.map_or("–", |s| s.as_str()))) "." } }
        div.case-grid {
            section.summary aria-labelledby="h-decision" {
                h2 #h-decision { "Decision" }
                (summary(&stored))
            }
            section.review aria-labelledby="h-review" {
                h2 #h-review { "Review" }
                (review_form(&session, &stored))
            }
        }
        section aria-labelledby="h-assessment" {
            h2 #h-assessment { "Assessment" }
            (assessment(&session, &stored, narrative.as_ref()))
        }
        section aria-labelledby="h-reasons" {
            h2 #h-reasons { "Why: the strongest reasons" }
            (reasons_chart(&reasons))
        }
        section aria-labelledby="h-usual" {
            h2 #h-usual { "Against the entity's usual range" }
            (usual_ranges(&stored, &reasons, &names, &history))
        }
        section aria-labelledby="h-timeline" {
            h2 #h-timeline { "The entity's recent transactions" }
            (timeline(&stored, &history))
        }
        section aria-labelledby="h-related" {
            h2 #h-related { "Related entities" }
            (related_section(&stored, &related))
        }
        section aria-labelledby="h-tx" {
            h2 #h-tx { "Transaction" }
            (transaction_table(&transaction))
            details {
                summary { "All " (d.features.len()) " model inputs" }
                table.compact {
                    caption.visually-hidden { "Model inputs" }
                    thead { tr { th scope="col" { "Input" } th scope="col" { "Value" } } }
                    tbody {
                        @for (idx, value) in d.features.iter().enumerate() {
                            tr {
                                td { (names.get(idx).cloned().unwrap_or_else(|| format!("input_{idx}"))) }
                                td.num { (format::number(Some(*value))) }
                            }
                        }
                    }
                }
            }
        }
        div.case-grid {
            section aria-labelledby="h-audit" {
                h2 #h-audit { "Audit trail" }
                @if audit.is_empty() { p.muted { "No changes yet." } }
                @else {
                    ol.audit {
                        @for entry in &audit {
                            li {
                                time datetime=(entry.at.to_string()) { (format::time(entry.at)) }
                                " " strong { (entry.actor) } " " (format::words(&entry.action))
                                @if let (Some(before), Some(after)) = (&entry.before, &entry.after) {
                                    ": " (format::words(before)) " → " (format::words(after))
                                } @else if let Some(after) = &entry.after {
                                    ": " (format::words(after))
                                }
                                @if let Some(note) = &entry.note { blockquote { (note) } }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="h-labels" {
                h2 #h-labels { "Labels" }
                @if labels.is_empty() { p.muted { "No label yet." } }
                @else {
                    table.compact {
                        caption.visually-hidden { "Labels received" }
                        thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Label" } th scope="col" { "Source" } th scope="col" { "By" } } }
                        tbody {
                            @for label in &labels {
                                tr {
                                    td { (format::time(label.at)) }
                                    td { (label_badge(Some(label.label))) }
                                    td { (label.source) }
                                    td { (label.actor) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        page(&format!("Case {id}"), Some(&session), Section::Queue, body),
    ))
}

fn summary(stored: &StoredDecision) -> Markup {
    let d = &stored.decision;
    html! {
        dl.facts {
            dt { "Decision" } dd { (decision_badge(d.decision)) }
            dt { "Fraud probability" } dd { (format::percent(d.probability)) span.muted { " (calibrated)" } }
            dt { "Score" } dd { (score_bar(d.score)) }
            @if let Some(anomaly) = d.anomaly_score { dt { "Anomaly score" } dd { (format::number(Some(anomaly))) } }
            dt { "Model" } dd { code { (d.model_version) } }
            dt { "Amount" } dd { (format::amount(d.amount_minor, &d.currency)) }
            dt { "Entity" } dd {
                @if let Some(entity) = &d.entity {
                    a href={ "/ui/queue?" (query([("status", "all"), ("entity", entity.as_str())])) } { (entity) }
                } @else { "–" }
            }
            dt { "Event time (UTC)" } dd { time datetime=(d.event_time.to_string()) { (format::time(d.event_time)) } }
            dt { "Received (UTC)" } dd { (format::time(d.received_at)) }
            dt { "Status" } dd { (status_badge(d.review_status)) }
            dt { "Label" } dd { (label_badge(stored.label)) }
            dt { "Decided in" } dd { (d.latency_us) " µs" }
        }
    }
}

fn review_form(session: &Session, stored: &StoredDecision) -> Markup {
    let id = &stored.decision.transaction_id;
    let current = stored.decision.review_status;
    html! {
        form.review-form method="post" action={ (case_url(id)) "/review" } {
            input type="hidden" name="csrf" value=(session.csrf);
            fieldset {
                legend { "Set the status" }
                @for status in ReviewStatus::ALL {
                    div.choice {
                        input type="radio" name="status" id={ "s-" (status.as_str()) } value=(status.as_str())
                            checked[current == Some(*status)] required;
                        label for={ "s-" (status.as_str()) } {
                            (format::words(status.as_str()))
                            @if let Some(label) = status.label() { span.muted { " (labels it " (label.as_str()) ")" } }
                        }
                    }
                }
            }
            label for="note" { "Note for the audit trail" }
            textarea #note name="note" rows="3" maxlength="4000" {}
            button type="submit" { "Save review" }
        }
    }
}

/// The case's latest narrative (evidence ids as written: the analysis
/// lists them), and a button that writes a new one.
fn assessment(session: &Session, stored: &StoredDecision, narrative: Option<&StoredNarrative>) -> Markup {
    let id = &stored.decision.transaction_id;
    html! {
        @match narrative {
            None => p.muted { "No assessment yet. One weighs the reasons, the entity's history, related entities and similar past cases, and cites them." },
            Some(kept) => {
                @let n = &kept.narrative;
                p {
                    strong { "Recommendation: " (format::words(&n.recommendation)) }
                    span.muted {
                        " — by " @if let Some(model) = &n.model { "an LLM (" (model) ")" } @else { "the rules" }
                        ", " (format::time(n.created_at))
                    }
                }
                p.assessment { (n.assessment) }
                @if !n.citations.is_empty() { p.muted { "Cites " (n.citations.join(", ")) " (listed in the case's analysis)." } }
                @if let Some(note) = &n.note { p.muted { "The LLM's narrative was not used: " (note) } }
            }
        }
        form method="post" action={ (case_url(id)) "/assessment" } {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { @if narrative.is_some() { "Write a new assessment" } @else { "Write an assessment" } }
        }
    }
}

/// `POST /ui/cases/{id}/assessment`: analyses the case (its narrative is kept) and shows it.
pub(crate) async fn assess(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    read_form(&session, &headers, &body)?;
    let Some(mut analysis) = crate::cases::analyze(&state, &id).await? else {
        return Err(PageError::not_found(format!("No transaction {id:?} is stored.")));
    };
    crate::cases::keep(&state, &mut analysis).await?;
    Ok(Redirect::to(&format!("{}?done=assessment#h-assessment", case_url(&id))).into_response())
}

/// Contributions to the log-odds as horizontal bars: right (red) towards
/// fraud, left (blue) away from it; with the same numbers as a table.
fn reasons_chart(reasons: &[Reason]) -> Markup {
    if reasons.is_empty() {
        return html! { p.muted { "No reasons were recorded for this decision (approvals are not explained unless the server is set to)." } };
    }
    let shown = &reasons[..reasons.len().min(MAX_REASONS)];
    let largest = shown.iter().map(|r| r.contribution.abs()).fold(1e-9, f64::max);
    let row_height = 26.0;
    let height = row_height * shown.len() as f64 + 24.0;
    let (label_width, half) = (230.0, 170.0);
    let axis = label_width + half;
    let description = shown
        .iter()
        .map(|r| format!("{} {:+.3}", r.feature, r.contribution))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        figure.chart {
            svg.reasons viewBox={ "0 0 " (axis + half + 60.0) " " (height) } width="100%" role="img"
                aria-label={ "Contributions to the log-odds: " (description) } {
                line x1=(axis) x2=(axis) y1="0" y2=(height - 18.0) class="axis" {}
                @for (idx, reason) in shown.iter().enumerate() {
                    @let y = idx as f64 * row_height + 4.0;
                    @let length = reason.contribution.abs() / largest * half;
                    @let x = if reason.contribution >= 0.0 { axis } else { axis - length };
                    text x=(label_width - 8.0) y=(y + 15.0) text-anchor="end" class="label" {
                        (truncate(&reason.feature, 30))
                    }
                    rect x=(x) y=(y + 2.0) width=(length.max(1.0)) height=(row_height - 8.0)
                        class=(if reason.contribution >= 0.0 { "towards" } else { "away" }) {}
                    text x=(if reason.contribution >= 0.0 { x + length + 4.0 } else { x - 4.0 }) y=(y + 15.0)
                        text-anchor=(if reason.contribution >= 0.0 { "start" } else { "end" }) class="value" {
                        (format!("{:+.2}", reason.contribution))
                    }
                }
                text x=(axis + 4.0) y=(height - 4.0) class="note" { "→ towards fraud" }
                text x=(axis - 4.0) y=(height - 4.0) text-anchor="end" class="note" { "away from fraud ←" }
            }
            figcaption { "Each input's contribution to this decision's log-odds (TreeSHAP)." }
        }
        table.compact {
            caption.visually-hidden { "Reasons" }
            thead { tr { th scope="col" { "Input" } th scope="col" { "Value" } th scope="col" { "Contribution" } } }
            tbody {
                @for reason in shown {
                    tr {
                        td { (reason.feature) }
                        td.num { @if let Some(category) = &reason.category { (category) } @else { (format::number(reason.value)) } }
                        td.num { (format!("{:+.4}", reason.contribution)) }
                    }
                }
            }
        }
    }
}

fn truncate(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(n - 1).collect::<String>())
    }
}

/// The spread of an entity's earlier values of one input.
#[derive(Debug, PartialEq)]
pub(super) struct Spread {
    n: usize,
    min: f64,
    p10: f64,
    median: f64,
    p90: f64,
    max: f64,
}

impl Spread {
    pub(super) fn of(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let pos = q * (values.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
        };
        Some(Self {
            n: values.len(),
            min: values[0],
            p10: at(0.1),
            median: at(0.5),
            p90: at(0.9),
            max: values[values.len() - 1],
        })
    }

    /// Where a value sits: below, within or above the 10th–90th percentiles.
    pub(super) fn verdict(&self, value: f64) -> &'static str {
        if value > self.p90 {
            "above usual"
        } else if value < self.p10 {
            "below usual"
        } else {
            "usual"
        }
    }
}

/// A range as a small drawing: the 10th–90th percentile band, the median,
/// and this value.
fn range_drawing(spread: &Spread, value: f64) -> Markup {
    let lo = spread.min.min(value);
    let hi = spread.max.max(value);
    let scale = |v: f64| {
        if hi > lo {
            4.0 + (v - lo) / (hi - lo) * 152.0
        } else {
            80.0
        }
    };
    html! {
        svg width="160" height="18" viewBox="0 0 160 18" aria-hidden="true" focusable="false" {
            line x1="4" x2="156" y1="9" y2="9" class="axis" {}
            rect x=(scale(spread.p10)) y="4" width=((scale(spread.p90) - scale(spread.p10)).max(1.0)) height="10" class="band" {}
            line x1=(scale(spread.median)) x2=(scale(spread.median)) y1="3" y2="15" class="median" {}
            circle cx=(scale(value)) cy="9" r="4" class="this" {}
        }
    }
}

fn usual_ranges(stored: &StoredDecision, reasons: &[Reason], names: &[String], history: &[StoredDecision]) -> Markup {
    let d = &stored.decision;
    let Some(entity) = &d.entity else {
        return html! { p.muted { "This transaction has no entity key." } };
    };
    let earlier: Vec<&StoredDecision> = history
        .iter()
        .filter(|h| h.decision.event_time < d.event_time && h.decision.transaction_id != d.transaction_id)
        .collect();
    let mut rows: Vec<(String, f64, Option<Spread>)> = Vec::new();
    let exponent = fraudlens_core::Currency::parse(&d.currency).map_or(0, |c| c.exponent());
    let major = |minor: i64| minor as f64 / 10f64.powi(exponent as i32);
    rows.push((
        format!("amount ({})", d.currency),
        major(d.amount_minor),
        Spread::of(
            earlier
                .iter()
                .filter(|h| h.decision.currency == d.currency)
                .map(|h| major(h.decision.amount_minor))
                .collect(),
        ),
    ));
    for reason in reasons.iter().take(MAX_REASONS).filter(|r| r.feature != "amount") {
        let Some(idx) = names.iter().position(|name| *name == reason.feature) else {
            continue;
        };
        let Some(value) = d.features.get(idx).copied().filter(|v| v.is_finite()) else {
            continue;
        };
        let values = earlier
            .iter()
            .filter(|h| h.decision.model_version == d.model_version)
            .filter_map(|h| h.decision.features.get(idx).copied())
            .collect();
        rows.push((reason.feature.clone(), value, Spread::of(values)));
    }
    html! {
        p.muted { "This case's values next to " (entity) "'s own transactions of the " (HISTORY_DAYS) " days before it (band: 10th–90th percentile; line: median; dot: this case)." }
        (scroll_box("Values against the entity's usual range", html! {
            table.compact.usual {
                caption.visually-hidden { "Values against the entity's usual range" }
                thead {
                    tr {
                        th scope="col" { "Input" } th scope="col" { "This case" } th scope="col" { "Usual (p10–p90)" }
                        th scope="col" { "Median" } th scope="col" { "Earlier" } th scope="col" { "Range" } th scope="col" { "Verdict" }
                    }
                }
                tbody {
                    @for (name, value, spread) in &rows {
                        tr {
                            td { (name) }
                            td.num { (format::number(Some(*value))) }
                            @if let Some(spread) = spread {
                                td.num { (format::number(Some(spread.p10))) " – " (format::number(Some(spread.p90))) }
                                td.num { (format::number(Some(spread.median))) }
                                td.num { (spread.n) }
                                td { (range_drawing(spread, *value)) }
                                td { span class={ "verdict " (spread.verdict(*value).replace(' ', "-")) } { (spread.verdict(*value)) } }
                            } @else {
                                td colspan="5" { span.muted { "no earlier transactions to compare with" } }
                            }
                        }
                    }
                }
            }
        }))
    }
}

fn timeline(stored: &StoredDecision, history: &[StoredDecision]) -> Markup {
    let d = &stored.decision;
    if history.is_empty() {
        return html! { p.muted { "No other transactions of this entity are stored." } };
    }
    let first = history
        .iter()
        .map(|h| h.decision.event_time.as_millis())
        .min()
        .unwrap_or(0);
    let last = history
        .iter()
        .map(|h| h.decision.event_time.as_millis())
        .max()
        .unwrap_or(0);
    let span = (last - first).max(1) as f64;
    let (width, height) = (720.0, 140.0);
    let x = |t: i64| 30.0 + (t - first) as f64 / span * (width - 50.0);
    let y = |score: f64| 10.0 + (1.0 - score.clamp(0.0, 1.0)) * (height - 40.0);
    html! {
        figure.chart {
            svg.timeline viewBox={ "0 0 " (width) " " (height) } width="100%" role="img"
                aria-label={ (history.len()) " transactions of this entity from " (format::time(Timestamp::from_millis(first))) " to " (format::time(Timestamp::from_millis(last))) ", by score" } {
                line x1="30" x2=(width - 20.0) y1=(y(0.0)) y2=(y(0.0)) class="axis" {}
                line x1="30" x2="30" y1=(y(1.0)) y2=(y(0.0)) class="axis" {}
                text x="26" y=(y(1.0) + 4.0) text-anchor="end" class="note" { "1" }
                text x="26" y=(y(0.0)) text-anchor="end" class="note" { "0" }
                text x="30" y=(height - 8.0) class="note" { (format::time(Timestamp::from_millis(first))) }
                text x=(width - 20.0) y=(height - 8.0) text-anchor="end" class="note" { (format::time(Timestamp::from_millis(last))) }
                @for h in history.iter().rev() {
                    @let is_this = h.decision.transaction_id == d.transaction_id;
                    circle cx=(x(h.decision.event_time.as_millis())) cy=(y(h.decision.score))
                        r=(if is_this { 7 } else { 4 })
                        class={ "dot decision-" (h.decision.decision.as_str())
                            @if h.label == Some(fraudlens_core::Label::Fraud) { " fraud" }
                            @if is_this { " this" } } {
                        title { (h.decision.transaction_id) ": " (h.decision.decision.as_str()) ", score " (format!("{:.3}", h.decision.score)) }
                    }
                }
            }
            figcaption { "Score over time; the large dot is this case, a ring marks a fraud label." }
        }
        (scroll_box("The entity's transactions", html! {
            table.compact {
                caption.visually-hidden { "The entity's transactions" }
                thead {
                    tr {
                        th scope="col" { "Event time (UTC)" } th scope="col" { "Transaction" } th scope="col" { "Amount" }
                        th scope="col" { "Score" } th scope="col" { "Decision" } th scope="col" { "Status" } th scope="col" { "Label" }
                    }
                }
                tbody {
                    @for h in history.iter().take(50) {
                        @let is_this = h.decision.transaction_id == d.transaction_id;
                        tr.this[is_this] {
                            td { (format::time(h.decision.event_time)) }
                            td.id {
                                @if is_this { strong { (h.decision.transaction_id) " (this case)" } }
                                @else { a href=(case_url(&h.decision.transaction_id)) { (h.decision.transaction_id) } }
                            }
                            td.num { (format::amount(h.decision.amount_minor, &h.decision.currency)) }
                            td.num { (format!("{:.3}", h.decision.score)) }
                            td { (decision_badge(h.decision.decision)) }
                            td { (status_badge(h.decision.review_status)) }
                            td { (label_badge(h.label)) }
                        }
                    }
                }
            }
        }))
        @if history.len() > 50 { p.muted { "The 50 latest of " (history.len()) " are listed." } }
    }
}

/// One secondary key of the case (its terminal, card, …) and the primary
/// entities seen with it in the days before.
struct Related {
    name: String,
    key: String,
    entities: Vec<fraudlens_store::RelatedEntity>,
}

async fn related(state: &AppState, stored: &StoredDecision) -> Result<Vec<Related>, PageError> {
    let d = &stored.decision;
    let Ok(tx) = serde_json::from_str::<fraudlens_core::Transaction>(&d.body) else {
        return Ok(Vec::new());
    };
    let model = state.pipeline.model();
    let Ok(inputs) = model.events() else {
        return Ok(Vec::new());
    };
    let names = inputs.schema.entity_names();
    let from = Timestamp::from_millis(d.event_time.as_millis().saturating_sub(RELATED_DAYS * DAY_MILLIS));
    let to = Timestamp::from_millis(d.event_time.as_millis().saturating_add(1));
    let mut out = Vec::new();
    for (position, key) in tx.entities.iter().enumerate().skip(1) {
        let Some(key) = key else { continue };
        let entities = state
            .pipeline
            .store()
            .related_entities(position, key.as_str(), from, to, RELATED_ROWS)
            .await?;
        out.push(Related {
            name: names
                .get(position)
                .cloned()
                .unwrap_or_else(|| format!("entity {position}")),
            key: key.as_str().to_owned(),
            entities,
        });
    }
    Ok(out)
}

fn related_section(stored: &StoredDecision, related: &[Related]) -> Markup {
    let own = stored.decision.entity.as_deref();
    html! {
        @if related.is_empty() { p.muted { "This transaction has no second entity key (terminal, card, device…)." } }
        @for group in related {
            h3 { "On " (group.name) " " span.id { (group.key) } ", the " (RELATED_DAYS) " days before" }
            @let others = group.entities.iter().filter(|e| Some(e.entity.as_str()) != own).count();
            p.muted { (others) " other " @if others == 1 { "entity" } @else { "entities" } " used it"
                @if group.entities.len() as u32 == RELATED_ROWS { " (the " (RELATED_ROWS) " busiest are listed)" } "." }
            @if !group.entities.is_empty() {
                (scroll_box(&format!("Entities seen with {} {}", group.name, group.key), html! {
                    table.compact {
                        caption.visually-hidden { "Entities seen with " (group.name) " " (group.key) }
                        thead {
                            tr {
                                th scope="col" { "Entity" } th scope="col" { "Transactions" } th scope="col" { "Flagged" }
                                th scope="col" { "Labelled fraud" } th scope="col" { "Last seen (UTC)" }
                            }
                        }
                        tbody {
                            @for entity in &group.entities {
                                tr.this[Some(entity.entity.as_str()) == own] {
                                    td {
                                        a href={ "/ui/queue?" (query([("status", "all"), ("entity", entity.entity.as_str())])) } { (entity.entity) }
                                        @if Some(entity.entity.as_str()) == own { " (this case's)" }
                                    }
                                    td.num { (entity.transactions) }
                                    td.num { (entity.flagged) }
                                    td.num { @if entity.fraud > 0 { strong.fraud { (entity.fraud) } } @else { "0" } }
                                    td { (format::time(entity.last_seen)) }
                                }
                            }
                        }
                    }
                }))
            }
        }
    }
}

fn transaction_table(view: &serde_json::Value) -> Markup {
    let mut rows: Vec<(String, String)> = Vec::new();
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => "–".to_owned(),
        other => other.to_string(),
    };
    for group in ["entities", "attributes", "row"] {
        if let Some(serde_json::Value::Object(map)) = view.get(group) {
            for (name, value) in map {
                rows.push((name.clone(), text(value)));
            }
        }
    }
    html! {
        @if rows.is_empty() { p.muted { "The stored transaction cannot be shown with the serving model's schema." } }
        @else {
            table.compact {
                caption.visually-hidden { "Entities and attributes" }
                thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } } }
                tbody { @for (name, value) in &rows { tr { td { (name) } td { (value) } } } }
            }
        }
    }
}

/// `POST /ui/cases/{id}/review`.
pub(crate) async fn review(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let fields = read_form(&session, &headers, &body)?;
    let (status, note) = review_fields(&fields)?;
    let outcome = state
        .pipeline
        .store()
        .review(&ReviewRequest {
            transaction_id: id.clone(),
            status,
            actor: session.caller.actor(),
            note: note.map(str::to_owned),
            at: now(),
        })
        .await
        .map_err(|error| match error {
            fraudlens_store::StoreError::NotFound(_) => {
                PageError::not_found(format!("No transaction {id:?} is stored."))
            }
            other => other.into(),
        })?;
    if let Some(label) = outcome.label {
        state.pipeline.apply_review_label(&outcome.transaction, label).await;
    }
    Ok(Redirect::to(&format!("{}?done=review", case_url(&id))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_interpolate_percentiles_and_skip_missing_values() {
        let spread = Spread::of(vec![5.0, 1.0, f64::NAN, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((spread.n, spread.min, spread.median, spread.max), (5, 1.0, 3.0, 5.0));
        assert!((spread.p10 - 1.4).abs() < 1e-12 && (spread.p90 - 4.6).abs() < 1e-12);
        assert_eq!(spread.verdict(9.0), "above usual");
        assert_eq!(spread.verdict(3.0), "usual");
        assert_eq!(spread.verdict(1.0), "below usual");
        assert_eq!(Spread::of(vec![f64::NAN]), None);
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("short", 30), "short");
        assert_eq!(truncate(&"x".repeat(40), 10).chars().count(), 10);
    }
}
