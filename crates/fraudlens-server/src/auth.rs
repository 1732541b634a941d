//! API keys: `fl_<id>_<secret>`. The store keeps the id, the role and a
//! SHA-256 of the secret; a presented key is looked up by id and its hash
//! compared in constant time. Lookups are cached for a few seconds (so a
//! revocation takes effect within [`CACHE_TTL`]), unknown ids too, so a flood
//! of bad keys does not reach the database. Each key has a token bucket.
//!
//! Every refusal (401, 403) is an [`AuthFailure`]: counted by reason in
//! `fraudlens_auth_failures_total` and logged at WARN with the key id, the
//! route and the client address, never the key itself; the log lines are
//! rate-limited ([`LogBudget`]) so a flood of bad keys cannot flood the log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use fraudlens_core::Timestamp;
use fraudlens_store::{ApiKeyEntry, Role, Store};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// How long a key lookup is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 100_000;
const PREFIX: &str = "fl_";

/// The caller of a request, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Key id.
    pub key_id: String,
    /// Key name.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Caller {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.key_id)
    }
}

/// A new key: the text to hand out once, and what the store keeps.
pub fn new_key(name: &str, role: Role, now: Timestamp) -> Result<(String, ApiKeyEntry), getrandom::Error> {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 24];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let key_id = hex::encode(id);
    let secret = hex::encode(secret);
    let entry = ApiKeyEntry {
        key_id: key_id.clone(),
        name: name.to_owned(),
        role,
        secret_sha256: hash(&secret),
        created_at: now,
        revoked_at: None,
    };
    Ok((format!("{PREFIX}{key_id}_{secret}"), entry))
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits `fl_<id>_<secret>`.
fn parse(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && !secret.is_empty() && secret.len() <= 128).then_some((id, secret))
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Key checks with a short-lived cache, and per-key rate limits.
pub struct Auth {
    store: Arc<dyn Store>,
    cache: Mutex<HashMap<String, (Option<ApiKeyEntry>, Instant)>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Requests per second per key (0: unlimited); the burst is one second's worth.
    rate_per_second: f64,
    /// Limits the WARN lines about refused keys.
    failure_log: LogBudget,
}

impl Auth {
    /// Checks keys against `store`.
    pub fn new(store: Arc<dyn Store>, rate_per_second: u32) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            rate_per_second: f64::from(rate_per_second),
            failure_log: LogBudget::new(AUTH_FAILURE_LOG_LINES_PER_SECOND),
        }
    }

    async fn lookup(&self, key_id: &str) -> Result<Option<ApiKeyEntry>, ApiError> {
        {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((entry, at)) = cache.get(key_id)
                && at.elapsed() < CACHE_TTL
            {
                return Ok(entry.clone());
            }
        }
        let entry = self.store.key(key_id).await?;
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key_id.to_owned(), (entry.clone(), Instant::now()));
        Ok(entry)
    }

    /// The caller a key belongs to, or why not: a missing, malformed, unknown
    /// or revoked key (all one 401, so a caller learns nothing about which ids
    /// exist), or a store that cannot be asked (503).
    async fn check(&self, presented: Option<&str>) -> Result<Caller, Refusal> {
        let presented = presented.ok_or(Refusal::Denied(AuthFailureReason::MissingKey))?;
        let (key_id, secret) = parse(presented).ok_or(Refusal::Denied(AuthFailureReason::MalformedKey))?;
        let entry = self
            .lookup(key_id)
            .await
            .map_err(Refusal::Unavailable)?
            .ok_or(Refusal::Denied(AuthFailureReason::UnknownKey))?;
        let matches: bool = hash(secret).as_bytes().ct_eq(entry.secret_sha256.as_bytes()).into();
        if !matches {
            return Err(Refusal::Denied(AuthFailureReason::WrongSecret));
        }
        if entry.revoked_at.is_some() {
            return Err(Refusal::Denied(AuthFailureReason::RevokedKey));
        }
        Ok(Caller {
            key_id: entry.key_id,
            name: entry.name,
            role: entry.role,
        })
    }

    /// The stored entry of a key id, through the same short-lived cache (so a
    /// revocation reaches the console's sessions within [`CACHE_TTL`]).
    pub(crate) async fn key_entry(&self, key_id: &str) -> Result<Option<ApiKeyEntry>, ApiError> {
        self.lookup(key_id).await
    }

    /// The caller of a presented key if its role is `allowed`: the same 401
    /// for every bad key and 403 for a wrong role, each refusal counted and
    /// logged for `route` (never the key). [`require`] runs it for the API's
    /// `X-API-Key`, the console for the key typed into its sign-in form.
    pub(crate) async fn authorize(
        &self,
        presented: Option<&str>,
        allowed: Allowed,
        route: &str,
        client: Option<SocketAddr>,
    ) -> Result<Caller, ApiError> {
        let failure = |reason| AuthFailure {
            reason,
            key_id: presented.and_then(parse).map(|(key_id, _)| key_id),
            route,
            client,
        };
        let caller = match self.check(presented).await {
            Ok(caller) => caller,
            Err(Refusal::Denied(reason)) => {
                failure(reason).emit(&self.failure_log);
                return Err(Refusal::Denied(reason).into_error());
            }
            Err(refusal @ Refusal::Unavailable(_)) => return Err(refusal.into_error()),
        };
        if !allowed.0.contains(&caller.role) {
            failure(AuthFailureReason::WrongRole).emit(&self.failure_log);
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!("the {} role may not do this", caller.role),
            ));
        }
        Ok(caller)
    }

    /// Takes one token from the caller's bucket; 429 with `Retry-After` when empty.
    pub fn admit(&self, caller: &Caller) -> Result<(), ApiError> {
        if self.rate_per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let bucket = buckets.entry(caller.key_id.clone()).or_insert(Bucket {
            tokens: self.rate_per_second,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.rate_per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.rate_per_second);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / self.rate_per_second).ceil().max(1.0);
            Err(ApiError {
                retry_after: Some(wait as u64),
                ..ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "rate limit exceeded for this API key",
                )
            })
        }
    }
}

/// Which roles may call a group of routes.
#[derive(Clone, Copy, Debug)]
pub struct Allowed(pub &'static [Role]);

/// Scoring: `service` and `admin`.
pub const SCORE: Allowed = Allowed(&[Role::Service, Role::Admin]);
/// Reading and reviewing: `analyst` and `admin`.
pub const REVIEW: Allowed = Allowed(&[Role::Analyst, Role::Admin]);
/// Managing models: `admin`.
pub const ADMIN: Allowed = Allowed(&[Role::Admin]);
/// Any valid key.
pub const ANY: Allowed = Allowed(&[Role::Service, Role::Analyst, Role::Admin]);

/// Middleware: authenticates, checks the role (403 when wrong), applies the
/// rate limit, and passes the [`Caller`] on as a request extension. Refusals
/// are reported as [`AuthFailure`]s.
pub async fn require(
    State((auth, allowed)): State<(Arc<Auth>, Allowed)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // owned, not borrowed from the request: a borrow of its body (not Sync)
    // held across the key lookup would make this future not Send
    let route = request.extensions().get::<MatchedPath>().cloned();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| *address);
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let caller = auth.authorize(presented.as_deref(), allowed, route, client).await?;
    auth.admit(&caller)?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Why the key check refused a request.
enum Refusal {
    /// The key is not good enough: 401.
    Denied(AuthFailureReason),
    /// The store could not be asked: its error (503), not an authentication failure.
    Unavailable(ApiError),
}

impl Refusal {
    fn into_error(self) -> ApiError {
        match self {
            Self::Denied(AuthFailureReason::MissingKey) => unauthorized("missing X-API-Key header"),
            Self::Denied(_) => unauthorized("invalid API key"),
            Self::Unavailable(error) => error,
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Why a request failed the key check: the `reason` label of
/// `fraudlens_auth_failures_total` and the `reason` field of its log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailureReason {
    /// No `X-API-Key` header (401).
    MissingKey,
    /// Not of the form `fl_<id>_<secret>` (401).
    MalformedKey,
    /// No key with that id (401).
    UnknownKey,
    /// The id exists but the secret does not match (401).
    WrongSecret,
    /// The key was revoked (401).
    RevokedKey,
    /// A valid key whose role may not call the route (403).
    WrongRole,
}

impl AuthFailureReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingKey => "missing_key",
            Self::MalformedKey => "malformed_key",
            Self::UnknownKey => "unknown_key",
            Self::WrongSecret => "wrong_secret",
            Self::RevokedKey => "revoked_key",
            Self::WrongRole => "wrong_role",
        }
    }
}

/// Most WARN lines about refused keys per second; the rest are counted and
/// the count goes on the next line written.
pub const AUTH_FAILURE_LOG_LINES_PER_SECOND: u32 = 10;

/// A request refused at the key check: counts it by reason and logs it
/// (within the log budget). Holds no part of the key beyond its public id.
#[derive(Debug)]
pub struct AuthFailure<'a> {
    /// Why.
    pub reason: AuthFailureReason,
    /// The id part of a well-formed key (public: `keys list` shows it); `None` otherwise.
    pub key_id: Option<&'a str>,
    /// The matched route template.
    pub route: &'a str,
    /// The peer address, when the server records it.
    pub client: Option<SocketAddr>,
}

impl AuthFailure<'_> {
    /// Counts the failure, and logs it if the budget allows.
    pub fn emit(&self, budget: &LogBudget) {
        metrics::counter!("fraudlens_auth_failures_total", "reason" => self.reason.as_str()).increment(1);
        match budget.admit(Instant::now()) {
            Some(suppressed) => tracing::warn!(
                reason = self.reason.as_str(),
                key_id = self.key_id.unwrap_or("-"),
                route = self.route,
                client = %self.client.map_or_else(|| "-".to_owned(), |address| address.to_string()),
                suppressed,
                "authentication failed"
            ),
            None => {
                metrics::counter!("fraudlens_log_lines_suppressed_total", "event" => "auth_failure").increment(1);
            }
        }
    }
}

/// A rate limit on log lines: at most `lines_per_second` in any one-second
/// window. Lines over it are not written but counted, and the next line
/// written carries that count (`suppressed`), so nothing goes unnoticed.
#[derive(Debug)]
pub struct LogBudget {
    lines_per_second: u32,
    window: Mutex<LogWindow>,
}

#[derive(Debug)]
struct LogWindow {
    /// When the current one-second window began.
    started: Option<Instant>,
    /// Lines written in it.
    n_written: u32,
    /// Lines dropped since the last line written.
    n_suppressed: u64,
}

impl LogBudget {
    /// A budget of `lines_per_second`.
    pub fn new(lines_per_second: u32) -> Self {
        Self {
            lines_per_second,
            window: Mutex::new(LogWindow {
                started: None,
                n_written: 0,
                n_suppressed: 0,
            }),
        }
    }

    /// `Some(lines suppressed since the last one written)` when a line may be
    /// written at `now`; `None` (and the line is counted) when over budget.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired = window
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= Duration::from_secs(1));
        if expired {
            window.started = Some(now);
            window.n_written = 0;
        }
        if window.n_written < self.lines_per_second {
            window.n_written += 1;
            Some(std::mem::take(&mut window.n_suppressed))
        } else {
            window.n_suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_hash() {
        let (text, entry) = new_key("checkout", Role::Service, Timestamp::from_millis(1)).unwrap();
        let (id, secret) = parse(&text).unwrap();
        assert_eq!(id, entry.key_id);
        assert_eq!(hash(secret), entry.secret_sha256);
        assert!(!entry.secret_sha256.contains(secret));
        assert!(parse("fl_short_x").is_none());
        assert!(parse("nope").is_none());
    }

    #[test]
    fn the_log_budget_writes_n_lines_per_second_and_reports_the_rest() {
        let budget = LogBudget::new(3);
        let start = Instant::now();
        let admitted: Vec<Option<u64>> = (0..5).map(|_| budget.admit(start)).collect();
        assert_eq!(admitted, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(budget.admit(start + Duration::from_millis(999)), None);
        // a new window: the first line carries the count of the dropped ones
        let later = start + Duration::from_secs(1);
        assert_eq!(budget.admit(later), Some(3));
        assert_eq!(budget.admit(later), Some(0));
    }
}
