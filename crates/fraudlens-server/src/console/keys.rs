//! API keys, for admins: every key (id, name, role, when created, when
//! revoked) and revocation behind a confirmation. Keys are created with
//! `fraudlens keys create`, which prints the secret once: the console never
//! shows a secret.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::format::{self, query};
use super::layout::{PageError, Section, page, respond, scroll_box};
use super::session::{Session, read_form};
use crate::AppState;

fn admin_only(session: &Session) -> Result<(), PageError> {
    if session.is_admin() {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Only an admin may see and revoke API keys.",
        ))
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    revoked: Option<String>,
}

/// `GET /ui/keys`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    admin_only(&session)?;
    let mut keys = state.pipeline.store().keys().await?;
    keys.sort_by(|a, b| {
        a.revoked_at
            .is_some()
            .cmp(&b.revoked_at.is_some())
            .then(b.created_at.cmp(&a.created_at))
    });
    let body = html! {
        h1 { "API keys" }
        @if let Some(id) = &query.revoked { p.notice role="status" { "Key " code { (id) } " is revoked: its requests and console sessions are refused within 5 seconds." } }
        p.muted { "Create keys with " code { "fraudlens keys create --role service|analyst|admin --name NAME" } ": the secret is printed once and only its hash is stored." }
        (scroll_box("API keys", html! {
            table.compact.keys {
                caption.visually-hidden { "API keys" }
                thead {
                    tr {
                        th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "Role" }
                        th scope="col" { "Created (UTC)" } th scope="col" { "Revoked (UTC)" } th scope="col" { "Action" }
                    }
                }
                tbody {
                    @for key in &keys {
                        tr {
                            td.id { (key.key_id) }
                            td { (key.name) }
                            td { (key.role) }
                            td { (format::time(key.created_at)) }
                            td { (key.revoked_at.map_or_else(|| "–".to_owned(), format::time)) }
                            td {
                                @if key.revoked_at.is_none() {
                                    @if key.key_id == session.caller.key_id { span.muted { "your key" } }
                                    @else { a href={ "/ui/keys/" (format::segment(&key.key_id)) "/revoke" } { "Revoke" span.visually-hidden { " " (key.name) } } }
                                }
                            }
                        }
                    }
                }
            }
        }))
    };
    Ok(respond(
        StatusCode::OK,
        page("API keys", Some(&session), Section::Keys, body),
    ))
}

/// `GET /ui/keys/{id}/revoke`: the confirmation.
pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(key_id): Path<String>,
) -> Result<Response, PageError> {
    admin_only(&session)?;
    let key = state
        .pipeline
        .store()
        .key(&key_id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("No API key {key_id:?}.")))?;
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/ui/keys" { "API keys" } " › " span { (key.key_id) } }
        h1 { "Revoke " (key.name) "?" }
        p { "Key " code { (key.key_id) } " (" (key.role) ") stops working within 5 seconds on every server sharing this store: its requests get 401 and its console sessions end. This cannot be undone; create a new key instead." }
        form method="post" action={ "/ui/keys/" (format::segment(&key.key_id)) "/revoke" } {
            input type="hidden" name="csrf" value=(session.csrf);
            button.danger type="submit" { "Revoke " (key.name) }
            " " a href="/ui/keys" { "Cancel" }
        }
    };
    Ok(respond(
        StatusCode::OK,
        page("Revoke a key", Some(&session), Section::Keys, body),
    ))
}

/// `POST /ui/keys/{id}/revoke`.
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    read_form(&session, &headers, &body)?;
    admin_only(&session)?;
    if key_id == session.caller.key_id {
        return Err(PageError::invalid(
            "You cannot revoke the key you are signed in with here; use another admin key or the CLI.",
        ));
    }
    state
        .pipeline
        .store()
        .revoke_key(&key_id, crate::now(), &session.caller.actor())
        .await
        .map_err(|error| match error {
            fraudlens_store::StoreError::NotFound(_) => PageError::not_found(format!("No API key {key_id:?}.")),
            other => other.into(),
        })?;
    tracing::info!(key_id = %key_id, by = %session.caller.key_id, "key revoked in the console");
    Ok(Redirect::to(&format!("/ui/keys?{}", query([("revoked", key_id.as_str())]))).into_response())
}
