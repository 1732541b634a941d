//! Drift: the serving model's inputs by population stability index (PSI)
//! between its training reference and the latest decisions of this process
//! (the same report as `GET /api/v1/models/production/drift`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fraudlens_model::drift::{Drift, DriftStatus};
use maud::{Markup, html};

use super::format;
use super::layout::{PageError, Section, page, respond, scroll_box};
use super::session::Session;
use crate::AppState;

fn status_word(status: DriftStatus) -> &'static str {
    match status {
        DriftStatus::Stable => "stable",
        DriftStatus::Watch => "watch",
        DriftStatus::Act => "act",
    }
}

fn psi_bar(psi: f64, largest: f64) -> Markup {
    let width = if largest > 0.0 {
        (psi.max(0.0) / largest * 120.0).round()
    } else {
        0.0
    };
    html! {
        svg width="120" height="8" viewBox="0 0 120 8" aria-hidden="true" focusable="false" {
            rect width="120" height="8" class="track" {}
            rect width=(width) height="8" class="fill" {}
        }
    }
}

fn row(drift: &Drift, largest: f64) -> Markup {
    let status = status_word(drift.status);
    html! {
        tr {
            th scope="row" { (drift.name) }
            td.num { (format!("{:.3}", drift.psi)) }
            td.psi { (psi_bar(drift.psi, largest)) }
            td.num { (format::number(drift.ks)) }
            td.num { (format::percent(Some(drift.missing_reference))) }
            td.num { (format::percent(Some(drift.missing_live))) }
            td { span class={ "badge drift-" (status) } { (status) } }
        }
    }
}

/// `GET /ui/drift`.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
) -> Result<Response, PageError> {
    let version = state.pipeline.model().version().to_owned();
    let body = match state.pipeline.live_drift() {
        None => html! {
            h1 { "Drift" }
            p.notice role="status" { "Model " code { (version) } " keeps no reference distributions (imported, or trained before drift monitoring): retrain it to watch its inputs." }
        },
        Some((version, report)) => {
            let largest = report
                .features
                .iter()
                .chain(&report.score)
                .map(|d| d.psi)
                .fold(0.0, f64::max);
            let acting = report.features.iter().filter(|d| d.status == DriftStatus::Act).count();
            let watching = report
                .features
                .iter()
                .filter(|d| d.status == DriftStatus::Watch)
                .count();
            html! {
                h1 { "Drift of " span.id { (version) } }
                p.muted { "Each input's distribution in the " (report.rows) " latest decisions of this process (at most "
                    (fraudlens_pipeline::drift::WINDOW) ") against the model's training reference. PSI at or above "
                    (report.settings.watch) ": watch; at or above " (report.settings.act) ": act (retrain, or find what changed upstream)." }
                @if report.rows < 500 { p.notice role="status" { "Only " (report.rows) " decisions so far: PSI is noisy below 500." } }
                dl.tiles {
                    div { dt { "Inputs to act on" } dd { (acting) } }
                    div { dt { "Inputs to watch" } dd { (watching) } }
                    div { dt { "Score PSI" } dd { (report.score.as_ref().map_or_else(|| "–".to_owned(), |s| format!("{:.3}", s.psi))) } }
                    div { dt { "Decisions compared" } dd { (report.rows) } }
                }
                (scroll_box("Inputs by PSI", html! {
                    table.compact.drift {
                        caption.visually-hidden { "Inputs by population stability index, largest first" }
                        thead {
                            tr {
                                th scope="col" { "Input" } th scope="col" { "PSI" } th scope="col" { span.visually-hidden { "PSI as a bar" } }
                                th scope="col" { "KS" } th scope="col" { "Missing (reference)" } th scope="col" { "Missing (now)" } th scope="col" { "Status" }
                            }
                        }
                        tbody {
                            @if let Some(score) = &report.score { (row(score, largest)) }
                            @for drift in &report.features { (row(drift, largest)) }
                        }
                    }
                }))
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        page("Drift", Some(&session), Section::Drift, body),
    ))
}
