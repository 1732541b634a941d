//! The analyst console at `/ui`: server-rendered pages over the same store
//! queries as the API, for people signed in with an analyst or admin key.
//!
//! Pages are HTML written with `maud` (checked at compile time, every value
//! escaped unless marked otherwise), charts are SVG drawn here, and one
//! small script of our own adds keyboard navigation and live
//! refresh. Everything is embedded in the binary; nothing is fetched from
//! elsewhere, and the Content-Security-Policy allows only this origin's
//! script and style (no inline code, no `eval`).
//!
//! | path | what |
//! |---|---|
//! | `GET /ui/login`, `POST /ui/login`, `POST /ui/logout` | sign-in with a key, sign-out (`session.rs`) |
//! | `GET /ui/queue`, `POST /ui/queue/review`, `GET /ui/queue/updates` | the review queue, bulk review, live counts (`queue.rs`) |
//! | `GET /ui/cases/{id}`, `POST /ui/cases/{id}/review` | one case and its review (`case.rs`) |
//! | `GET /ui/overview` | volume, decision mix, rates, scores, latency, this process's requests (`overview.rs`) |
//! | `GET /ui/models`, `GET /ui/models/{version}`, `GET`/`POST /ui/models/{version}/promote` | the registry, a version's curves and thresholds what-if, promotion for admins (`models.rs`) |
//! | `GET /ui/drift` | the serving model's inputs by PSI (`drift.rs`) |
//! | `GET /ui/keys`, `GET`/`POST /ui/keys/{id}/revoke` | API keys and their revocation, for admins (`keys.rs`) |
//! | `GET /ui/assets/{file}` | the stylesheet, the script and the icon |

mod assets;
mod case;
mod drift;
mod format;
mod keys;
mod layout;
mod models;
mod overview;
mod queue;
pub(crate) mod session;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::Redirect;
use axum::routing::{get, post};

use crate::AppState;

pub(crate) use layout::PageError;
pub use session::Sessions;

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The console's routes: sign-in and assets open, the rest behind a session.
pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let signed_in = Router::new()
        .route("/ui/queue", get(queue::show))
        .route("/ui/queue/review", post(queue::review_many))
        .route("/ui/queue/updates", get(queue::updates))
        .route("/ui/cases/{id}", get(case::show))
        .route("/ui/cases/{id}/review", post(case::review))
        .route("/ui/cases/{id}/assessment", post(case::assess))
        .route("/ui/overview", get(overview::show))
        .route("/ui/drift", get(drift::show))
        .route("/ui/models", get(models::list))
        .route("/ui/models/{version}", get(models::show))
        .route(
            "/ui/models/{version}/promote",
            get(models::confirm).post(models::promote),
        )
        .route("/ui/keys", get(keys::list))
        .route("/ui/keys/{id}/revoke", get(keys::confirm).post(keys::revoke))
        .route("/ui/logout", post(session::sign_out))
        .route_layer(from_fn_with_state(state, session::require));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/queue") }))
        .route("/ui", get(|| async { Redirect::to("/ui/queue") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/queue") }))
        .route("/ui/login", get(session::sign_in_page).post(session::sign_in))
        .route("/ui/assets/{file}", get(assets::serve))
        .route(
            "/ui/{*rest}",
            get(|| async { PageError::not_found("There is no such page.") }),
        )
        .merge(signed_in)
}
