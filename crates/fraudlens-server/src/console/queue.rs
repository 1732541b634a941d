//! The review queue: flagged transactions worst first, with the API's
//! filters and sorting, cursor paging, counts per status, bulk review and
//! a live count of new cases.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fraudlens_core::ReviewStatus;
use fraudlens_store::{AnomalyQuery, QueueCounts, QueueOrder, ReviewRequest, StoredDecision};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::format::{self, case_url, query, query_with};
use super::layout::{PageError, Section, decision_badge, label_badge, page, respond, scroll_box, status_badge};
use super::session::{Session, field, read_form};
use crate::{AppState, now};

/// Rows per page.
const PAGE_SIZE: u32 = 50;
/// Most cases one bulk review changes.
const MAX_BULK: usize = 500;
/// Longest review note, in characters (as the API).
const MAX_NOTE_CHARS: usize = 4000;

/// The queue's filters as the page's query string carries them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    status: Option<String>,
    min_score: Option<String>,
    from: Option<String>,
    to: Option<String>,
    entity: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

impl Filters {
    /// The filter pairs (not the cursor), to rebuild links.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("status", &self.status),
            ("min_score", &self.min_score),
            ("from", &self.from),
            ("to", &self.to),
            ("entity", &self.entity),
            ("sort", &self.sort),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|value| (name, value)))
        .collect()
    }

    /// The store query, or what is wrong with a filter.
    fn to_query(&self) -> Result<AnomalyQuery, String> {
        let status = match self.status.as_deref().unwrap_or("pending_review") {
            "" | "all" => None,
            text => Some(
                text.parse::<ReviewStatus>()
                    .map_err(|_| format!("unknown status {text:?}"))?,
            ),
        };
        let min_score = match self.min_score.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(text) => Some(
                text.parse::<f64>()
                    .ok()
                    .filter(|score| score.is_finite())
                    .ok_or_else(|| format!("minimum score {text:?} is not a number"))?,
            ),
        };
        let time = |text: &Option<String>, what: &str| -> Result<_, String> {
            match text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(text) => format::parse_time(text)
                    .map(Some)
                    .ok_or_else(|| format!("{what} {text:?} is not a date and time")),
            }
        };
        let order = match self.sort.as_deref().unwrap_or("score_desc") {
            "" | "score_desc" => QueueOrder::ScoreDesc,
            "time_desc" => QueueOrder::TimeDesc,
            "time_asc" => QueueOrder::TimeAsc,
            text => return Err(format!("unknown sort {text:?}")),
        };
        Ok(AnomalyQuery {
            status,
            min_score,
            from: time(&self.from, "from")?,
            to: time(&self.to, "to")?,
            entity: self
                .entity
                .as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
            order,
            cursor: self.cursor.clone().filter(|c| !c.is_empty()),
            limit: PAGE_SIZE,
        })
    }
}

/// `GET /ui/queue`.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Query(filters): Query<Filters>,
) -> Result<Response, PageError> {
    let store = state.pipeline.store();
    let counts = store.queue_counts(0).await?;
    let (status, rows, next_cursor, error) = match filters.to_query() {
        Ok(query) => match store.anomalies(&query).await {
            Ok(page) => (StatusCode::OK, page.items, page.next_cursor, None),
            Err(fraudlens_store::StoreError::Invalid(message)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Vec::new(), None, Some(message))
            }
            Err(error) => return Err(error.into()),
        },
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, Vec::new(), None, Some(message)),
    };
    let body = render(
        &session,
        &filters,
        &counts,
        &rows,
        next_cursor.as_deref(),
        error.as_deref(),
    );
    Ok(respond(
        status,
        page("Review queue", Some(&session), Section::Queue, body),
    ))
}

fn status_tabs(filters: &Filters, counts: &QueueCounts) -> Markup {
    let current = filters.status.as_deref().unwrap_or("pending_review");
    let mut tabs: Vec<(String, String, u64)> = ReviewStatus::ALL
        .iter()
        .map(|status| {
            (
                status.as_str().to_owned(),
                format::words(status.as_str()),
                counts.get(*status),
            )
        })
        .collect();
    tabs.push(("all".to_owned(), "all".to_owned(), counts.total()));
    let others: Vec<(&str, &str)> = filters
        .pairs()
        .into_iter()
        .filter(|(name, _)| *name != "status")
        .collect();
    html! {
        nav.tabs aria-label="Review status" {
            ul {
                @for (value, words, n) in &tabs {
                    li {
                        a href={ "/ui/queue?" (query_with(&others, "status", value)) }
                            aria-current=[(current == value || (current.is_empty() && value == "all")).then_some("page")] {
                            (words) " " span.count { (n) }
                        }
                    }
                }
            }
        }
    }
}

fn filter_form(filters: &Filters) -> Markup {
    let status = filters.status.as_deref().unwrap_or("pending_review");
    let sort = filters.sort.as_deref().unwrap_or("score_desc");
    let statuses = ReviewStatus::ALL
        .iter()
        .map(|s| (s.as_str(), format::words(s.as_str())));
    html! {
        details #filters.filters-box open {
        summary { "Filters" }
        form.filters method="get" action="/ui/queue" aria-label="Filters" {
            div {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    @for (value, words) in statuses {
                        option value=(value) selected[status == value] { (words) }
                    }
                    option value="all" selected[status == "all" || status.is_empty()] { "all" }
                }
            }
            div {
                label for="f-score" { "Min. score" }
                input #f-score type="number" name="min_score" min="0" max="1" step="0.01" inputmode="decimal"
                    value=(filters.min_score.as_deref().unwrap_or(""));
            }
            div {
                label for="f-from" { "From (UTC)" }
                input #f-from type="datetime-local" name="from" value=(filters.from.as_deref().unwrap_or(""));
            }
            div {
                label for="f-to" { "To (UTC)" }
                input #f-to type="datetime-local" name="to" value=(filters.to.as_deref().unwrap_or(""));
            }
            div {
                label for="f-entity" { "Entity" }
                input #f-entity type="text" name="entity" maxlength="256" value=(filters.entity.as_deref().unwrap_or(""));
            }
            div {
                label for="f-sort" { "Sort" }
                select #f-sort name="sort" {
                    option value="score_desc" selected[sort == "score_desc"] { "worst first" }
                    option value="time_desc" selected[sort == "time_desc"] { "newest first" }
                    option value="time_asc" selected[sort == "time_asc"] { "oldest first" }
                }
            }
            div.actions {
                button type="submit" { "Apply" }
                a href="/ui/queue" { "Reset" }
            }
        }
        }
    }
}

/// A score as a bar (drawn, no inline style) and a number.
pub(super) fn score_bar(score: f64) -> Markup {
    let width = (score.clamp(0.0, 1.0) * 60.0).round();
    html! {
        span.score {
            svg width="60" height="8" viewBox="0 0 60 8" aria-hidden="true" focusable="false" {
                rect width="60" height="8" class="track" {}
                rect width=(width) height="8" class="fill" {}
            }
            " " (format!("{score:.3}"))
        }
    }
}

fn row(stored: &StoredDecision) -> Markup {
    let d = &stored.decision;
    let id = d.transaction_id.as_str();
    html! {
        tr data-href=(case_url(id)) {
            td.select {
                input type="checkbox" name="ids" value=(id) form="bulk" aria-label={ "Select " (id) };
            }
            td { (score_bar(d.score)) }
            td.id { a href=(case_url(id)) { (id) } }
            td {
                @if let Some(entity) = &d.entity {
                    a href={ "/ui/queue?" (query([("status", "all"), ("entity", entity.as_str())])) } { (entity) }
                } @else { span.muted { "–" } }
            }
            td.num { (format::amount(d.amount_minor, &d.currency)) }
            td { time datetime=(d.event_time.to_string()) { (format::time(d.event_time)) } }
            td { (decision_badge(d.decision)) }
            td { (status_badge(d.review_status)) }
            td { (label_badge(stored.label)) }
        }
    }
}

fn render(
    session: &Session,
    filters: &Filters,
    counts: &QueueCounts,
    rows: &[StoredDecision],
    next_cursor: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let pairs = filters.pairs();
    let back = query(pairs.clone());
    let done = filters.done.as_deref().and_then(|n| n.parse::<usize>().ok());
    html! {
        div.heading {
            h1 { "Review queue" }
            p #live.live role="status" aria-live="polite" data-after=(counts.last_seq) {}
        }
        (status_tabs(filters, counts))
        (filter_form(filters))
        @if let Some(error) = error { p.error role="alert" { (error) } }
        @if let Some(n) = done { p.notice role="status" { "Updated " (n) " case" @if n != 1 { "s" } "." } }
        form #bulk.bulk method="post" action="/ui/queue/review" aria-label="Review the selected cases" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="back" value=(back);
            label for="bulk-status" { "Mark selected as" }
            select #bulk-status name="status" {
                @for status in ReviewStatus::ALL {
                    option value=(status.as_str()) { (format::words(status.as_str())) }
                }
            }
            label for="bulk-note" { "Note" }
            input #bulk-note type="text" name="note" maxlength="4000";
            button type="submit" { "Apply to selected" }
        }
        (scroll_box("Flagged transactions", html! {
            table.queue {
                caption.visually-hidden { "Flagged transactions" }
                thead {
                    tr {
                        th scope="col" { input #select-all type="checkbox" aria-label="Select all on this page"; }
                        th scope="col" { "Score" }
                        th scope="col" { "Transaction" }
                        th scope="col" { "Entity" }
                        th scope="col" { "Amount" }
                        th scope="col" { "Event time (UTC)" }
                        th scope="col" { "Decision" }
                        th scope="col" { "Status" }
                        th scope="col" { "Label" }
                    }
                }
                tbody {
                    @for stored in rows { (row(stored)) }
                }
            }
        }))
        @if rows.is_empty() && error.is_none() { p.empty { "No cases match these filters." } }
        nav.paging aria-label="Pages" {
            @if filters.cursor.as_deref().is_some_and(|c| !c.is_empty()) {
                a href={ "/ui/queue?" (back) } { "First page" }
            }
            @if let Some(cursor) = next_cursor {
                a rel="next" href={ "/ui/queue?" (query_with(&pairs, "cursor", cursor)) } { "Next page" }
            }
        }
        details.keys {
            summary { "Keyboard shortcuts" }
            dl {
                dt { kbd { "j" } " / " kbd { "k" } } dd { "next / previous case" }
                dt { kbd { "o" } " or " kbd { "Enter" } } dd { "open the case" }
                dt { kbd { "x" } } dd { "mark the case for a bulk change" }
                dt { kbd { "/" } } dd { "go to the filters" }
            }
        }
    }
}

/// The status and note of a review form (the case page's or the queue's bulk one).
pub(super) fn review_fields(fields: &[(String, String)]) -> Result<(ReviewStatus, Option<&str>), PageError> {
    let status: ReviewStatus = field(fields, "status")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| PageError::invalid("choose a status"))?;
    let note = field(fields, "note").map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(PageError::invalid(format!(
            "a note has at most {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok((status, note))
}

/// `POST /ui/queue/review`: one status (and note) for every selected case.
pub(crate) async fn review_many(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let fields = read_form(&session, &headers, &body)?;
    let (status, note) = review_fields(&fields)?;
    // each case once, in the order selected
    let mut ids: Vec<&str> = Vec::new();
    for (_, id) in fields.iter().filter(|(k, _)| k == "ids") {
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
        if ids.len() > MAX_BULK {
            return Err(PageError::invalid(format!("at most {MAX_BULK} cases at once")));
        }
    }
    if ids.is_empty() {
        return Err(PageError::invalid("select at least one case"));
    }
    // every case must exist before any changes: all or nothing
    let store = state.pipeline.store();
    let mut missing = Vec::new();
    for id in &ids {
        if store.transaction(id).await?.is_none() {
            missing.push(*id);
        }
    }
    if !missing.is_empty() {
        return Err(PageError::not_found(format!(
            "Nothing was changed: {} of the selected cases {} not stored ({}).",
            missing.len(),
            if missing.len() == 1 { "is" } else { "are" },
            missing
                .iter()
                .take(5)
                .map(|id| format!("{id:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let at = now();
    for id in &ids {
        let outcome = state
            .pipeline
            .store()
            .review(&ReviewRequest {
                transaction_id: (*id).to_owned(),
                status,
                actor: session.caller.actor(),
                note: note.map(str::to_owned),
                at,
            })
            .await?;
        if let Some(label) = outcome.label {
            state.pipeline.apply_review_label(&outcome.transaction, label).await;
        }
    }
    // back to the same filters: only the known ones, re-encoded
    let back: Vec<(String, String)> = form_urlencoded::parse(field(&fields, "back").unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(name, _)| ["status", "min_score", "from", "to", "entity", "sort"].contains(&name.as_str()))
        .collect();
    let n = ids.len().to_string();
    let mut pairs: Vec<(&str, &str)> = back.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("done", &n));
    Ok(Redirect::to(&format!("/ui/queue?{}", query(pairs))).into_response())
}

#[derive(Deserialize)]
pub(crate) struct UpdatesQuery {
    after: Option<i64>,
}

/// What changed in the queue since the page was drawn.
#[derive(Serialize)]
pub(crate) struct Updates {
    /// Cases flagged since (still pending).
    new_pending: u64,
    /// Pass as `after` next time.
    last_seq: i64,
}

/// `GET /ui/queue/updates?after=SEQ`: the live-refresh poll.
pub(crate) async fn updates(
    State(state): State<Arc<AppState>>,
    Query(query): Query<UpdatesQuery>,
) -> Result<Json<Updates>, crate::error::ApiError> {
    let after = query.after.unwrap_or(0).max(0);
    let counts = state.pipeline.store().queue_counts(after).await?;
    Ok(Json(Updates {
        new_pending: counts.pending_review,
        last_seq: counts.last_seq,
    }))
}
