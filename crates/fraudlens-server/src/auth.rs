//! API keys: `fl_<id>_<secret>`. The store keeps the id, the role and a
//! SHA-256 of the secret; a presented key is looked up by id and its hash
//! compared in constant time. Lookups are cached for a few seconds (so a
//! revocation takes effect within [`CACHE_TTL`]), unknown ids too, so a flood
//! of bad keys does not reach the database. Each key has a token bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
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
pub fn new_key(name: &str, role: Role, now_ms: i64) -> Result<(String, ApiKeyEntry), getrandom::Error> {
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
        created_at: now_ms,
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
}

impl Auth {
    /// Checks keys against `store`.
    pub fn new(store: Arc<dyn Store>, rate_per_second: u32) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            rate_per_second: f64::from(rate_per_second),
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

    /// The caller a key belongs to; 401 for a missing, malformed, unknown or revoked key.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Caller, ApiError> {
        let unauthorized = |message: &str| ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", message);
        let presented = presented.ok_or_else(|| unauthorized("missing X-API-Key header"))?;
        let (key_id, secret) = parse(presented).ok_or_else(|| unauthorized("invalid API key"))?;
        let entry = self
            .lookup(key_id)
            .await?
            .ok_or_else(|| unauthorized("invalid API key"))?;
        let matches: bool = hash(secret).as_bytes().ct_eq(entry.secret_sha256.as_bytes()).into();
        if !matches || entry.revoked_at.is_some() {
            return Err(unauthorized("invalid API key"));
        }
        Ok(Caller {
            key_id: entry.key_id,
            name: entry.name,
            role: entry.role,
        })
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
/// rate limit, and passes the [`Caller`] on as a request extension.
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
    let caller = auth.authenticate(presented.as_deref()).await?;
    if !allowed.0.contains(&caller.role) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {} role may not do this", caller.role),
        ));
    }
    auth.admit(&caller)?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_hash() {
        let (text, entry) = new_key("checkout", Role::Service, 1).unwrap();
        let (id, secret) = parse(&text).unwrap();
        assert_eq!(id, entry.key_id);
        assert_eq!(hash(secret), entry.secret_sha256);
        assert!(!entry.secret_sha256.contains(secret));
        assert!(parse("fl_short_x").is_none());
        assert!(parse("nope").is_none());
    }
}
