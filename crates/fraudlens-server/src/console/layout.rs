//! The frame every console page shares, and how errors are shown as pages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use fraudlens_core::{Decision, Label, ReviewStatus};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;
use crate::error::ApiError;

/// Which part of the console a page belongs to (its navigation entry is marked).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Queue,
    Overview,
    Models,
    Drift,
    Keys,
    SignIn,
}

/// A whole page: head, the navigation with who is signed in, and `body` as
/// the main landmark.
pub(super) fn page(title: &str, session: Option<&Session>, section: Section, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fraudlens" }
                link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
                @if let Some(session) = session {
                    meta name="csrf-token" content=(session.csrf);
                }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/queue" { "fraudlens" }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/ui/queue" aria-current=[(section == Section::Queue).then_some("page")] { "Review queue" } }
                                li { a href="/ui/overview" aria-current=[(section == Section::Overview).then_some("page")] { "Overview" } }
                                li { a href="/ui/models" aria-current=[(section == Section::Models).then_some("page")] { "Models" } }
                                li { a href="/ui/drift" aria-current=[(section == Section::Drift).then_some("page")] { "Drift" } }
                                @if session.is_admin() {
                                    li { a href="/ui/keys" aria-current=[(section == Section::Keys).then_some("page")] { "Keys" } }
                                }
                            }
                        }
                        div.who {
                            span { (session.caller.name) " " span.role { "(" (session.caller.role) ")" } }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A rendered page as a response.
pub(super) fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, Html(markup.into_string())).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A wide table in a box that scrolls sideways on small screens; the box
/// can take focus (so keyboard users can scroll it) and is named.
pub(super) fn scroll_box(label: &str, table: Markup) -> Markup {
    html! { div.table-wrap role="region" aria-label=(label) tabindex="0" { (table) } }
}

/// The decision as a coloured word.
pub(super) fn decision_badge(decision: Decision) -> Markup {
    html! { span class={ "badge decision-" (decision.as_str()) } { (decision.as_str()) } }
}

/// The review status as a word.
pub(super) fn status_badge(status: Option<ReviewStatus>) -> Markup {
    match status {
        Some(status) => {
            html! { span class={ "badge status-" (status.as_str()) } { (super::format::words(status.as_str())) } }
        }
        None => html! { span.muted { "not flagged" } },
    }
}

/// The label as a word.
pub(super) fn label_badge(label: Option<Label>) -> Markup {
    match label {
        Some(label) => html! { span class={ "badge label-" (label.as_str()) } { (label.as_str()) } },
        None => html! { span.muted { "–" } },
    }
}

/// An error shown as a page (with the status it stands for).
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self::new(error.status, error.body.message)
    }
}

impl From<fraudlens_store::StoreError> for PageError {
    fn from(error: fraudlens_store::StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let heading = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (heading) }
            p.error role="alert" { (self.message) }
            p { a href="/ui/queue" { "Back to the review queue" } }
        };
        let mut response = respond(self.status, page(heading, None, Section::Queue, body));
        if self.status == StatusCode::SERVICE_UNAVAILABLE || self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
