//! A JSON-RPC 2.0 client over HTTP for Ethereum nodes and hosted providers.
//!
//! Every call has a timeout; a call the provider throttled or failed on its
//! side (HTTP 429 or 5xx, JSON-RPC "limit exceeded", a dropped connection)
//! is retried with exponential backoff, honouring `Retry-After`; calls are
//! spaced to the configured rate. The provider URL often carries the key
//! (Alchemy puts it in the path): it is held as a secret and messages name
//! only its scheme and host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fraudlens_core::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::ChainError;

/// Bytes of one answer read at most (a page of history is well under this).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// How the client talks to a provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcSettings {
    /// Longest wait for one HTTP request, in seconds.
    pub timeout_seconds: u64,
    /// Retries of a throttled or failed call before giving up.
    pub max_retries: u32,
    /// Calls per second at most (a batch counts each call); 0: no limit.
    pub requests_per_second: f64,
    /// Calls sent in one HTTP request at most (block scans, token metadata).
    pub batch_size: usize,
}

impl Default for RpcSettings {
    fn default() -> Self {
        Self {
            timeout_seconds: 20,
            max_retries: 4,
            requests_per_second: 25.0,
            batch_size: 50,
        }
    }
}

/// One failed call of a batch, or of [`Rpc::call`]: the JSON-RPC error.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcFailure {
    /// The JSON-RPC error code (-32601: no such method).
    pub code: i64,
    /// The provider's message.
    pub message: String,
}

/// The JSON-RPC code of "the method does not exist".
pub const METHOD_NOT_FOUND: i64 = -32601;

/// A client of one provider.
pub struct Rpc {
    http: reqwest::Client,
    url: Secret,
    provider: String,
    settings: RpcSettings,
    next_id: AtomicU64,
    /// When the next call may start (the rate limit).
    next_slot: Mutex<Instant>,
    calls: AtomicU64,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// The scheme and host of a URL: what a message may show of it.
pub fn provider_name(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

/// What an attempt at a request came to.
enum Attempt {
    Done(Value),
    /// Worth another try, after at least this long.
    Retry(String, Option<Duration>),
    Fail(ChainError),
}

impl Rpc {
    /// A client of the provider at `url` (`http://` or `https://`).
    pub fn new(url: &Secret, settings: &RpcSettings) -> Result<Self, ChainError> {
        let text = url.expose().trim();
        let provider = provider_name(text);
        if !(text.starts_with("http://") || text.starts_with("https://")) || provider.ends_with("://") {
            return Err(ChainError::Config(format!(
                "the RPC URL must be http:// or https:// with a host (got {provider:?})"
            )));
        }
        if settings.timeout_seconds == 0 || settings.batch_size == 0 {
            return Err(ChainError::Config(
                "eth.rpc.timeout_seconds and eth.rpc.batch_size must be at least 1".to_owned(),
            ));
        }
        let rate = settings.requests_per_second;
        if !rate.is_finite() || rate < 0.0 || (rate > 0.0 && rate < 0.01) {
            return Err(ChainError::Config(
                "eth.rpc.requests_per_second must be 0 (no limit) or at least 0.01".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_seconds))
            .connect_timeout(Duration::from_secs(settings.timeout_seconds.min(10)))
            // a redirect could carry the key elsewhere
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| ChainError::Config(error.without_url().to_string()))?;
        Ok(Self {
            http,
            url: Secret::new(text),
            provider,
            settings: settings.clone(),
            next_id: AtomicU64::new(1),
            next_slot: Mutex::new(Instant::now()),
            calls: AtomicU64::new(0),
        })
    }

    /// The provider's scheme and host.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The settings.
    pub fn settings(&self) -> &RpcSettings {
        &self.settings
    }

    /// Calls sent so far (each call of a batch counts).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// One call; a JSON-RPC error is [`ChainError::Rpc`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let mut results = self.batch(method, &[(method, params)]).await?;
        match results.pop() {
            Some(Ok(value)) => Ok(value),
            Some(Err(failure)) => Err(self.failure(method, failure)),
            None => Err(self.malformed(method, "no answer")),
        }
    }

    /// The error for a failed call.
    pub fn failure(&self, method: &str, failure: RpcFailure) -> ChainError {
        let message: String = failure.message.chars().take(300).collect();
        ChainError::Rpc {
            provider: self.provider.clone(),
            method: method.to_owned(),
            code: failure.code,
            message: self.scrub(&message),
        }
    }

    /// Provider text with the URL's secret parts (path, query, user info:
    /// where keys go) replaced, in case the provider echoes them.
    pub fn scrub(&self, text: &str) -> String {
        let url = self.url.expose();
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let mut secrets: Vec<&str> = tail
            .split(['/', '?', '&', '=', '#'])
            .chain(
                authority
                    .rsplit_once('@')
                    .map(|(user, _)| user)
                    .into_iter()
                    .flat_map(|user| user.split(':')),
            )
            .filter(|part| part.len() >= 6)
            .collect();
        // the longest first, so that a part inside another is not left half replaced
        secrets.sort_by_key(|part| std::cmp::Reverse(part.len()));
        let mut out = text.to_owned();
        for secret in secrets {
            out = out.replace(secret, "[redacted]");
        }
        out
    }

    /// The error for an answer that is not what the method returns.
    pub fn malformed(&self, method: &str, reason: impl std::fmt::Display) -> ChainError {
        ChainError::Malformed {
            provider: self.provider.clone(),
            method: method.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Several calls in one HTTP request (chunked by `batch_size`), each
    /// answered on its own; `label` names them in errors.
    pub async fn batch(
        &self,
        label: &str,
        calls: &[(&str, Value)],
    ) -> Result<Vec<Result<Value, RpcFailure>>, ChainError> {
        let mut out = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(self.settings.batch_size) {
            out.extend(self.send_chunk(label, chunk).await?);
        }
        Ok(out)
    }

    async fn send_chunk(
        &self,
        label: &str,
        calls: &[(&str, Value)],
    ) -> Result<Vec<Result<Value, RpcFailure>>, ChainError> {
        let first_id = self.next_id.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let requests: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(idx, (method, params))| {
                json!({"jsonrpc": "2.0", "id": first_id + idx as u64, "method": method, "params": params})
            })
            .collect();
        // one call goes alone (some providers answer batches only on paid plans)
        let body = if requests.len() == 1 {
            requests[0].clone()
        } else {
            Value::Array(requests)
        };
        let answer = self.send(label, &body, calls.len()).await?;
        let answers: Vec<Value> = match answer {
            Value::Array(items) => items,
            single @ Value::Object(_) => vec![single],
            _ => return Err(self.malformed(label, "the answer is neither an object nor an array")),
        };
        // answers may come in any order: match them by id
        let mut results: Vec<Option<Result<Value, RpcFailure>>> = vec![None; calls.len()];
        for item in answers {
            let slot = item
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| id.checked_sub(first_id))
                .and_then(|idx| usize::try_from(idx).ok())
                .filter(|idx| *idx < calls.len());
            let Some(idx) = slot else {
                if let Some(error) = item.get("error") {
                    // an error for the whole request (no id)
                    return Err(self.failure(label, rpc_failure(error)));
                }
                continue;
            };
            results[idx] = Some(match item.get("error") {
                Some(error) if !error.is_null() => Err(rpc_failure(error)),
                _ => Ok(item.get("result").cloned().unwrap_or(Value::Null)),
            });
        }
        results
            .into_iter()
            .map(|result| result.ok_or_else(|| self.malformed(label, "a call of the batch got no answer")))
            .collect()
    }

    /// Waits for the rate limit's slot for `n` calls.
    async fn pace(&self, n: usize) {
        if self.settings.requests_per_second <= 0.0 {
            return;
        }
        let interval = Duration::from_secs_f64(n as f64 / self.settings.requests_per_second);
        let start = {
            let mut next = self.next_slot.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + interval;
            start
        };
        tokio::time::sleep_until(start).await;
    }

    /// Posts a request body, retrying what is worth retrying.
    async fn send(&self, label: &str, body: &Value, n: usize) -> Result<Value, ChainError> {
        let mut attempt = 0u32;
        loop {
            self.pace(n).await;
            self.calls.fetch_add(n as u64, Ordering::Relaxed);
            metrics::counter!("eth_rpc_calls_total").increment(n as u64);
            match self.attempt(label, body).await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry(reason, wait) => {
                    if attempt >= self.settings.max_retries {
                        return Err(ChainError::Unreachable {
                            provider: self.provider.clone(),
                            reason: self.scrub(&format!("{label}: {reason} (after {} tries)", attempt + 1)),
                        });
                    }
                    let backoff = backoff(attempt);
                    let wait = wait.map_or(backoff, |wait| wait.clamp(backoff, Duration::from_secs(30)));
                    metrics::counter!("eth_rpc_retries_total").increment(1);
                    tracing::debug!(provider = %self.provider, %label, %reason, ?wait, "retrying a JSON-RPC call");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, label: &str, body: &Value) -> Attempt {
        let response = match self.http.post(self.url.expose()).json(body).send().await {
            Ok(response) => response,
            Err(error) => return Attempt::Retry(error.without_url().to_string(), None),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.as_u16() == 429 || status.is_server_error() {
            return Attempt::Retry(format!("HTTP {status}"), retry_after);
        }
        let bytes = match read_capped(response).await {
            Ok(bytes) => bytes,
            Err(Capped::TooLarge) => {
                // the same answer again would be as large: no retry
                return Attempt::Fail(self.malformed(label, format!("an answer over {} MiB", MAX_ANSWER_BYTES >> 20)));
            }
            Err(Capped::Broken(reason)) => return Attempt::Retry(reason, None),
        };
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            // a JSON-RPC error sent with a 4xx status (Infura answers an unknown method so) is an answer
            if let Some(value) = parsed.filter(|value| value.is_array() || value.get("error").is_some()) {
                return Attempt::Done(value);
            }
            let text: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            return Attempt::Fail(ChainError::Unreachable {
                provider: self.provider.clone(),
                reason: self.scrub(&format!("{label}: HTTP {status}: {text}")),
            });
        }
        let Some(value) = parsed else {
            return Attempt::Fail(self.malformed(label, "the answer is not JSON"));
        };
        // a provider that throttles with a JSON-RPC error instead of HTTP 429; -32005
        // alone is not enough: Infura also answers a log query over 10,000 results with it
        let throttled = |item: &Value| {
            item.get("error").is_some_and(|error| {
                let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                code == 429
                    || [
                        "rate limit",
                        "too many requests",
                        "compute units per second",
                        "capacity",
                    ]
                    .iter()
                    .any(|needle| message.contains(needle))
            })
        };
        let any_throttled = match &value {
            Value::Array(items) => items.iter().any(throttled),
            item => throttled(item),
        };
        if any_throttled {
            return Attempt::Retry("throttled by the provider".to_owned(), retry_after);
        }
        Attempt::Done(value)
    }
}

/// Why an answer could not be read.
enum Capped {
    /// Over [`MAX_ANSWER_BYTES`].
    TooLarge,
    /// The connection broke.
    Broken(String),
}

/// Reads an answer of at most [`MAX_ANSWER_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Capped> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| Capped::Broken(error.without_url().to_string()))?
    {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Capped::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// 250 ms doubling per attempt up to 8 s, with up to a quarter more at random.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1 << attempt.min(5))
        .min(Duration::from_secs(8));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

fn rpc_failure(error: &Value) -> RpcFailure {
    RpcFailure {
        code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_show_no_key() {
        assert_eq!(
            provider_name("https://eth-mainnet.g.alchemy.com/v2/SECRETKEY"),
            "https://eth-mainnet.g.alchemy.com"
        );
        assert_eq!(provider_name("http://user:pw@node:8545/?key=x"), "http://node:8545");
        assert_eq!(provider_name("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
    }

    #[test]
    fn bad_urls_are_refused_without_showing_them() {
        for url in ["ftp://node/KEY", "node:8545", "https://", "http:///v2/KEY"] {
            let error = Rpc::new(&Secret::new(url), &RpcSettings::default()).expect_err(url);
            assert!(!error.to_string().contains("KEY"), "{error}");
        }
    }

    #[test]
    fn provider_text_echoing_the_url_is_scrubbed() {
        let rpc = Rpc::new(
            &Secret::new("https://user:hunter22@eth.example/v2/k3y-s3cr3t?apikey=abcdef123"),
            &RpcSettings::default(),
        )
        .expect("rpc");
        let echoed = rpc.scrub("Cannot POST /v2/k3y-s3cr3t?apikey=abcdef123 for hunter22");
        assert!(
            !echoed.contains("k3y-s3cr3t") && !echoed.contains("abcdef123") && !echoed.contains("hunter22"),
            "{echoed}"
        );
        assert!(echoed.starts_with("Cannot POST /v2/[redacted]"), "{echoed}");
        // short parts (`v2`) are left: they are no secret and would mangle every message
        assert_eq!(rpc.scrub("method v2 not found"), "method v2 not found");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) >= Duration::from_millis(250) && backoff(0) < Duration::from_millis(320));
        assert!(backoff(3) >= Duration::from_secs(2));
        assert!(backoff(30) <= Duration::from_secs(10));
    }
}
