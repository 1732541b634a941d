//! Sign-in with an API key, sessions, and CSRF checks.
//!
//! Signing in with an analyst or admin key starts a session: a random token
//! in a cookie (`HttpOnly`, `SameSite=Strict`, path `/ui`, `Secure` under
//! TLS or behind a proxy that says `X-Forwarded-Proto: https`) that expires
//! after [`SESSION_TTL`]. The store keeps only the token's SHA-256, so
//! every replica on one store knows every session. Each request checks the
//! session and its key: sign-out ends it at once on this process (within
//! [`CACHE_TTL`] on the others), and a revoked key ends all its sessions
//! within [`crate::auth::CACHE_TTL`].
//!
//! Every change a page makes is a form POST carrying the session's CSRF
//! token (a hash of the session token, so it needs no storage); a POST
//! without it, or sent by another site (`Sec-Fetch-Site`), is refused with
//! 403. The sign-in form itself carries a one-time nonce matched against a
//! cookie (login CSRF).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use fraudlens_core::Timestamp;
use fraudlens_store::{Role, SessionEntry};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::layout::{PageError, Section, page, respond};
use crate::auth::{Allowed, Caller};
use crate::error::ApiError;
use crate::{AppState, now};

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a session read from the store is trusted by this process.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;
const SESSION_COOKIE: &str = "fraudlens_session";
const SECURE_SESSION_COOKIE: &str = "__Host-fraudlens_session";
const NONCE_COOKIE: &str = "fraudlens_login";
/// Who may sign in.
const CONSOLE: Allowed = Allowed(&[Role::Analyst, Role::Admin]);

/// The sessions this process has read, and how cookies are written.
pub struct Sessions {
    cache: Mutex<HashMap<String, (SessionEntry, Instant)>>,
    /// Cookies carry `Secure` (the server speaks TLS).
    secure: bool,
}

impl Sessions {
    /// Sessions whose cookies carry `Secure` when `secure`.
    pub fn new(secure: bool) -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
            secure,
        }
    }

    fn cached(&self, token_sha256: &str) -> Option<SessionEntry> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(token_sha256)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(entry, _)| entry.clone())
    }

    fn remember(&self, entry: SessionEntry) {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(entry.token_sha256.clone(), (entry, Instant::now()));
    }

    fn forget(&self, token_sha256: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.remove(token_sha256);
    }

    /// Whether this request came over TLS (here, or at a proxy that says so).
    fn is_secure(&self, headers: &HeaderMap) -> bool {
        self.secure
            || headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
    }

    /// The session cookie (its name and path depend on TLS; see [`session_cookie`]).
    fn session_cookie(&self, headers: &HeaderMap, value: &str, max_age: Duration) -> HeaderValue {
        let secure = self.is_secure(headers);
        self.cookie(
            headers,
            session_cookie(secure),
            value,
            if secure { "/" } else { "/ui" },
            max_age,
        )
    }

    fn cookie(&self, headers: &HeaderMap, name: &str, value: &str, path: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.is_secure(headers) { "; Secure" } else { "" };
        let text = format!(
            "{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            max_age.as_secs()
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A signed-in caller, as handlers see it.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// Who.
    pub caller: Caller,
    /// The token every form of this session carries.
    pub csrf: String,
    token_sha256: String,
}

impl Session {
    /// Whether the caller may manage models.
    pub fn is_admin(&self) -> bool {
        self.caller.role == Role::Admin
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn csrf_of(token: &str) -> String {
    sha256_hex(&format!("fraudlens console csrf\u{0}{token}"))
}

fn random_hex(n_bytes: usize) -> Result<String, PageError> {
    let mut bytes = vec![0u8; n_bytes];
    getrandom::fill(&mut bytes)
        .map_err(|_| PageError::new(StatusCode::SERVICE_UNAVAILABLE, "no randomness available"))?;
    Ok(hex::encode(bytes))
}

fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The session a request's cookie names, if it is open and its key still good.
async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let name = session_cookie(state.sessions.is_secure(headers));
    let Some(token) = cookie_value(headers, name).filter(|t| t.len() == 64) else {
        return Ok(None);
    };
    let token_sha256 = sha256_hex(token);
    let entry = match state.sessions.cached(&token_sha256) {
        Some(entry) => Some(entry),
        None => {
            let entry = state.pipeline.store().session(&token_sha256).await?;
            if let Some(entry) = &entry {
                state.sessions.remember(entry.clone());
            }
            entry
        }
    };
    let Some(entry) = entry.filter(|entry| entry.is_open(now())) else {
        return Ok(None);
    };
    let Some(key) = state.auth.key_entry(&entry.key_id).await? else {
        return Ok(None);
    };
    if key.revoked_at.is_some() || !CONSOLE.0.contains(&key.role) {
        return Ok(None);
    }
    Ok(Some(Session {
        caller: Caller {
            key_id: key.key_id,
            name: key.name,
            role: key.role,
        },
        csrf: csrf_of(token),
        token_sha256,
    }))
}

/// The session cookie's name: under TLS `__Host-` bound (the browser keeps
/// it for this host only, `Path=/`, `Secure`: a sibling subdomain cannot
/// plant one).
fn session_cookie(secure: bool) -> &'static str {
    if secure { SECURE_SESSION_COOKIE } else { SESSION_COOKIE }
}

/// Middleware: passes the [`Session`] on, or sends the browser to sign in
/// (the live-refresh call, which is not a page, gets a JSON 401).
pub(crate) async fn require(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    match resolve(&state, request.headers()).await {
        Ok(Some(session)) => {
            // the key's rate limit, as on the API
            if let Err(error) = state.auth.admit(&session.caller) {
                return PageError::from(error).into_response();
            }
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Ok(None) if request.uri().path() == "/ui/queue/updates" => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "sign in again").into_response()
        }
        Ok(None) => {
            let here = request
                .uri()
                .path_and_query()
                .map_or("/ui/queue", |target| target.as_str());
            let back = if request.method() == Method::GET {
                here
            } else {
                "/ui/queue"
            };
            Redirect::to(&format!("/ui/login?{}", super::format::query([("next", back)]))).into_response()
        }
        Err(error) => PageError::from(error).into_response(),
    }
}

/// A form posted by a signed-in page: its fields, once its CSRF token and
/// origin are checked.
pub(crate) fn read_form(
    session: &Session,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, PageError> {
    let site = headers.get("sec-fetch-site").and_then(|value| value.to_str().ok());
    if site.is_some_and(|site| site != "same-origin" && site != "none") {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form was sent from another site",
        ));
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let token = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.as_str());
    if !token.is_some_and(|token| equal(token, &session.csrf)) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form's security token is missing or stale; reload the page and try again",
        ));
    }
    Ok(fields)
}

/// The first value of a form field.
pub(crate) fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Where to go after signing in: a console page of this server, nothing else.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|next| {
        next.starts_with("/ui/")
            && !next.contains("//")
            && !next.contains('\\')
            && !next.chars().any(char::is_control)
            && !next
                .split(['/', '?', '#'])
                .any(|segment| segment == ".." || segment.eq_ignore_ascii_case("%2e%2e"))
    })
    .unwrap_or("/ui/queue")
}

#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

fn sign_in_form(nonce: &str, next: &str, notice: Option<&str>, error: Option<&str>) -> maud::Markup {
    let body = html! {
        div.signin {
            h1 { "Sign in" }
            p { "Use an analyst or admin API key (" code { "fraudlens keys create --role analyst" } ")." }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            @if let Some(error) = error { p.error #signin-error role="alert" { (error) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="nonce" value=(nonce);
                input type="hidden" name="next" value=(next);
                label for="key" { "API key" }
                input #key type="password" name="key" autocomplete="current-password" required
                    aria-describedby=[error.map(|_| "signin-error")] autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    page("Sign in", None, Section::SignIn, body)
}

/// `GET /ui/login`: the form, with a fresh nonce in a cookie.
pub(crate) async fn sign_in_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Result<Response, PageError> {
    if resolve(&state, &headers).await?.is_some() {
        return Ok(Redirect::to(safe_next(query.next.as_deref())).into_response());
    }
    let nonce = random_hex(16)?;
    let notice = query.signed_out.is_some().then_some("You are signed out.");
    let mut response = respond(
        StatusCode::OK,
        sign_in_form(&nonce, safe_next(query.next.as_deref()), notice, None),
    );
    let cookie = state
        .sessions
        .cookie(&headers, NONCE_COOKIE, &nonce, "/ui/login", Duration::from_secs(3600));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /ui/login`: checks the nonce and the key, starts a session.
pub(crate) async fn sign_in(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, PageError> {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| *address);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map_err(|_| PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let next = safe_next(field(&fields, "next")).to_owned();
    let nonce_ok = match (field(&fields, "nonce"), cookie_value(&parts.headers, NONCE_COOKIE)) {
        (Some(sent), Some(expected)) => !expected.is_empty() && equal(sent, expected),
        _ => false,
    };
    let retry = |status: StatusCode, message: &str| -> Result<Response, PageError> {
        let nonce = random_hex(16)?;
        let mut response = respond(status, sign_in_form(&nonce, &next, None, Some(message)));
        let cookie = state.sessions.cookie(
            &parts.headers,
            NONCE_COOKIE,
            &nonce,
            "/ui/login",
            Duration::from_secs(3600),
        );
        response.headers_mut().append(header::SET_COOKIE, cookie);
        Ok(response)
    };
    if !nonce_ok {
        return retry(StatusCode::FORBIDDEN, "The sign-in form expired. Please try again.");
    }
    let key = field(&fields, "key").unwrap_or("").trim();
    let presented = Some(key).filter(|key| !key.is_empty());
    let caller = match state.auth.authorize(presented, CONSOLE, "/ui/login", client).await {
        Ok(caller) => caller,
        Err(error) if error.status == StatusCode::UNAUTHORIZED => {
            return retry(StatusCode::UNAUTHORIZED, "This key was not accepted.");
        }
        Err(error) if error.status == StatusCode::FORBIDDEN => {
            return retry(
                StatusCode::FORBIDDEN,
                "Service keys score transactions; sign in with an analyst or admin key.",
            );
        }
        Err(error) => return Err(error.into()),
    };
    // a browser signing in again leaves its previous session behind: end it
    if let Some(previous) = resolve(&state, &parts.headers).await? {
        state
            .pipeline
            .store()
            .end_session(&previous.token_sha256, now())
            .await?;
        state.sessions.forget(&previous.token_sha256);
    }
    let token = random_hex(32)?;
    let at = now();
    let ttl_millis = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
    let entry = SessionEntry {
        token_sha256: sha256_hex(&token),
        key_id: caller.key_id.clone(),
        created_at: at,
        expires_at: Timestamp::from_millis(at.as_millis().saturating_add(ttl_millis)),
        ended_at: None,
    };
    state.pipeline.store().create_session(&entry).await?;
    state.sessions.remember(entry);
    tracing::info!(key_id = %caller.key_id, role = %caller.role, "console sign-in");
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        state.sessions.session_cookie(&parts.headers, &token, SESSION_TTL),
    );
    headers.append(
        header::SET_COOKIE,
        state
            .sessions
            .cookie(&parts.headers, NONCE_COOKIE, "", "/ui/login", Duration::ZERO),
    );
    Ok(response)
}

/// `POST /ui/logout`: ends the session and clears the cookie.
pub(crate) async fn sign_out(
    State(state): State<Arc<AppState>>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    read_form(&session, &headers, &body)?;
    state.pipeline.store().end_session(&session.token_sha256, now()).await?;
    state.sessions.forget(&session.token_sha256);
    let mut response = Redirect::to("/ui/login?signed_out=1").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.sessions.session_cookie(&headers, "", Duration::ZERO),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/ui/cases/t1?x=1")), "/ui/cases/t1?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil",
            "/api/v1/models",
            "/ui/\\evil",
            "/ui/\nx",
            "/ui/../metrics",
            "/ui/%2E%2e/metrics",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/queue", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/ui/queue");
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; fraudlens_session_x=2; fraudlens_session=3"),
        );
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("3"));
        assert_eq!(cookie_value(&headers, NONCE_COOKIE), None);
    }

    #[test]
    fn the_csrf_token_is_tied_to_the_session_and_reveals_nothing_of_it() {
        let token = "ab".repeat(32);
        assert_eq!(csrf_of(&token), csrf_of(&token));
        assert_ne!(csrf_of(&token), csrf_of(&"cd".repeat(32)));
        assert_ne!(
            csrf_of(&token),
            sha256_hex(&token),
            "not the stored hash of the session token"
        );
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        let plain = Sessions::new(false);
        let headers = HeaderMap::new();
        let cookie = plain.cookie(&headers, SESSION_COOKIE, "v", "/ui", SESSION_TTL);
        assert_eq!(
            cookie.to_str().unwrap(),
            "fraudlens_session=v; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=43200"
        );
        let tls = Sessions::new(true);
        assert_eq!(
            tls.session_cookie(&headers, "v", SESSION_TTL).to_str().unwrap(),
            "__Host-fraudlens_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure"
        );
        let mut proxied = HeaderMap::new();
        proxied.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(
            plain
                .cookie(&proxied, SESSION_COOKIE, "v", "/ui", SESSION_TTL)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
    }
}
