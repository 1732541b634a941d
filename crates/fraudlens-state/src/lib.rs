//! The entity state shared by every detector and API replica, on Redis.
//!
//! Each entity of each feature block is one Redis string: its version (8
//! bytes, big-endian) followed by its state in the engine's stored form
//! ([`fraudlens_features::FeatureEngine::export_entity`]), under a key whose
//! hash tag is the whole entity (`<namespace>:e2:{<spec>:<block>:<entity>}`;
//! `e2` is the layout: a Redis holding another layout's keys is simply not
//! built for this one, and is rebuilt from the store):
//! no command ever names two entities, so the keys are ready for a Redis
//! Cluster to spread over its slots — the client today is a single-node
//! connection (a Cluster client, and a build marker per slot, are not yet
//! here). The feature logic stays in the Rust engine: a process loads the
//! entities of a batch into a scratch engine ([`SharedState::fetch`], one
//! pipelined round trip), observes there, and writes back what changed
//! ([`SharedState::write`], one pipelined round trip of a server-side
//! compare-and-set per entity). A write whose entity moved on since the fetch
//! (another process wrote it) is refused as a [`Written::Conflict`]; the
//! caller redoes that one block on the fresh state
//! ([`fraudlens_features::FeatureEngine::observe_block`]) and writes again.
//! So no update is lost, and each entity's updates have one order: its
//! versions. With `record_order`, each write also appends what it applied to
//! the entity's order list (`…:order`, same slot), for tests and audits
//! that reconstruct what every process saw.
//!
//! Idle entities expire `ttl` after their last write (the features' horizon
//! plus the accepted lateness: no feature can see them any more).
//!
//! A process may keep the entities it loaded and ask only for their
//! versions ([`SharedState::fetch_probing`]: `GETRANGE 0 7` instead of the
//! whole state), reloading only those another process moved on. So a
//! version must never come back with other content: an entity created
//! anew (its key expired, or was never there) starts at a version drawn
//! from the clock ([`fresh_version`]: milliseconds × 1,024, far above what
//! the writes of an earlier life could count to), not at 1; and versions
//! are compared within one build of the state: the build marker holds a
//! token drawn at each (re)build ([`Fetch::build`]), so a cache from before
//! a Redis lost its data is never taken for the rebuilt entities.

use std::time::Duration;

use fraudlens_features::EntityRef;
use redis::aio::ConnectionManager;
use redis::{ErrorKind, ServerErrorKind};

/// The compare-and-set of one entity: `KEYS[1]` the entity, `KEYS[2]` its
/// order list; `ARGV[1]` the version read (8 bytes, empty for none),
/// `ARGV[2]` the new value (the next version's 8 bytes, then the state),
/// `ARGV[3]` the time to live (ms), `ARGV[4]` the new version as text and
/// `ARGV[5..]` what this write applied (both only when the order is
/// recorded). Returns 0 when stored, else the entity's current version (8
/// bytes, empty for none). Two commands on a plain string: no hash to
/// convert, one expiry with the value.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GETRANGE', KEYS[1], 0, 7)
if current ~= ARGV[1] then
  return current
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if #ARGV > 4 then
  for i = 5, #ARGV do
    redis.call('RPUSH', KEYS[2], ARGV[4] .. ' ' .. ARGV[i])
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 0
";

/// Sets an entity whatever its version (a rebuild): `KEYS[1]` the entity,
/// `ARGV[1]` the state, `ARGV[2]` the time to live (ms), `ARGV[3]` the
/// version of an entity created anew. The version moves on from the current one.
const OVERWRITE: &str = r"
local current = redis.call('GETRANGE', KEYS[1], 0, 7)
local version = tonumber(ARGV[3])
if #current == 8 then
  version = struct.unpack('>I8', current) + 1
end
redis.call('SET', KEYS[1], struct.pack('>I8', version) .. ARGV[1], 'PX', ARGV[2])
return version
";

/// Bytes of the version before an entity's state.
const VERSION_BYTES: usize = 8;

/// The first version of an entity created anew: the wall clock in
/// milliseconds × 1,024. An entity that expired and is created again never
/// comes back at a version it had (that would take 1,024 writes per
/// millisecond of its earlier life), so a process that kept it cannot take
/// the new one for the one it kept. Below 2⁵³ (exact in Redis's Lua) until
/// the year 2248.
pub fn fresh_version() -> u64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    u64::try_from(millis)
        .unwrap_or(u64::MAX / 1_024)
        .saturating_mul(1_024)
        .max(1)
}

/// The version a write read at `read` stores.
fn next_version(read: u64, fresh: u64) -> u64 {
    if read == 0 { fresh } else { read + 1 }
}

/// A version as stored: 8 bytes big-endian; none (0) is empty.
fn version_bytes(version: u64) -> Vec<u8> {
    if version == 0 {
        Vec::new()
    } else {
        version.to_be_bytes().to_vec()
    }
}

/// A stored version back (empty: none).
fn parse_version(bytes: &[u8]) -> Result<u64, StateError> {
    match bytes.len() {
        0 => Ok(0),
        VERSION_BYTES => {
            let mut array = [0; VERSION_BYTES];
            array.copy_from_slice(bytes);
            Ok(u64::from_be_bytes(array))
        }
        n => Err(StateError::Corrupt(format!("a version of {n} bytes"))),
    }
}

/// Releases the rebuild lock if this process still holds it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Entities written per round trip by a rebuild.
const OVERWRITE_CHUNK: usize = 1_000;

/// Why the shared state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state is not built: Redis is new, or lost its data (a restart
    /// without persistence, a flush). It must be rebuilt from the store
    /// before anything is scored with it.
    #[error("the shared entity state is not built (new or emptied Redis): it is rebuilt from the store")]
    NotBuilt,
    /// The URL is not a Redis URL.
    #[error("state.backend {0:?} is not a redis:// URL")]
    Url(String),
    /// Redis did not answer, or answered with an error.
    #[error("shared entity state (redis): {0}")]
    Redis(#[from] redis::RedisError),
    /// The namespace would change how keys hash (braces) or is not a plain word.
    #[error(
        "state.namespace {0:?}: use 1 to 64 letters, digits, '-', '_', '.' or ':' (braces would put every key in one hash slot)"
    )]
    Namespace(String),
    /// A stored entity is not in the expected shape.
    #[error("shared entity state: {0}")]
    Corrupt(String),
}

/// How the shared state is reached and kept.
#[derive(Clone, Debug)]
pub struct StateOptions {
    /// The first part of every key: deployments (or tests) sharing one Redis
    /// keep apart by using different namespaces.
    pub namespace: String,
    /// How long an entity is kept after its last write.
    pub ttl: Duration,
    /// Append what each write applied to the entity's order list.
    pub record_order: bool,
    /// Longest wait for one round trip.
    pub timeout: Duration,
    /// Most entities a process keeps between batches, checked by version
    /// instead of fetched again (0: none kept).
    pub cache_entities: usize,
}

/// One entity as fetched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Its version (0: no state).
    pub version: u64,
    /// Its stored form, if it has state.
    pub bytes: Option<Vec<u8>>,
}

/// The entities of one fetch, and the build of the state they belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetch {
    /// The token of the build the entities belong to (drawn at each rebuild).
    pub build: String,
    /// Each entity asked for, in order. A probed entity comes with its
    /// version only (`bytes` is `None` whatever its state).
    pub entities: Vec<Fetched>,
}

/// One entity to write.
#[derive(Clone, Debug)]
pub struct Write {
    /// The entity.
    pub at: EntityRef,
    /// The version it had when read.
    pub read: u64,
    /// Its new stored form.
    pub bytes: Vec<u8>,
    /// What this write applied, in order (recorded with `record_order`).
    pub applied: Vec<String>,
}

/// What became of one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Stored as this version.
    Stored(u64),
    /// The entity moved on (to this version) since it was read: nothing written.
    Conflict(u64),
}

/// The shared entity state of one feature spec.
#[derive(Clone)]
pub struct SharedState {
    connection: ConnectionManager,
    script: redis::Script,
    /// `<namespace>:{<spec fingerprint>` — every key of this spec starts with it.
    prefix: String,
    options: StateOptions,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the URL: it may hold a password
        f.debug_struct("SharedState")
            .field("prefix", &self.prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Connects to `url` (`redis://…` or `rediss://…`) for the entities of the
    /// feature spec with this fingerprint (another spec's entities are other keys).
    pub async fn connect(url: &str, spec_fingerprint: u64, options: StateOptions) -> Result<Self, StateError> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://")) {
            return Err(StateError::Url(redact(url)));
        }
        check_namespace(&options.namespace)?;
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        let state = Self {
            connection,
            script: redis::Script::new(COMPARE_AND_SET),
            prefix: format!("{}:e2:{{{spec_fingerprint:016x}", options.namespace),
            options,
        };
        state.load_script().await?;
        Ok(state)
    }

    async fn load_script(&self) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        self.script.prepare_invoke().load_async(&mut connection).await?;
        Ok(())
    }

    /// The key of one entity.
    pub fn key(&self, at: EntityRef) -> String {
        format!("{}:{}:{:016x}}}", self.prefix, at.block, at.key)
    }

    fn order_key(&self, at: EntityRef) -> String {
        format!("{}:order", self.key(at))
    }

    /// Whether Redis answers (readiness).
    pub async fn ping(&self) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }

    /// The key whose presence says the state is built (its own slot).
    fn built_key(&self) -> String {
        format!("{}}}:built", self.prefix)
    }

    fn lock_key(&self) -> String {
        format!("{}}}:rebuilding", self.prefix)
    }

    /// Whether the state is built (see [`StateError::NotBuilt`]).
    pub async fn is_built(&self) -> Result<bool, StateError> {
        let mut connection = self.connection.clone();
        let exists: bool = redis::cmd("EXISTS")
            .arg(self.built_key())
            .query_async(&mut connection)
            .await?;
        Ok(exists)
    }

    /// Marks the state built (after a rebuild wrote every entity), with a
    /// token of this build: entities cached from another build are not
    /// compared by version with this one's.
    pub async fn mark_built(&self) -> Result<(), StateError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let token = format!("{:x}-{nanos:x}", std::process::id());
        let mut connection = self.connection.clone();
        let _: () = redis::cmd("SET")
            .arg(self.built_key())
            .arg(token)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    /// Whether writes record what they applied ([`StateOptions::record_order`]).
    pub fn records_order(&self) -> bool {
        self.options.record_order
    }

    /// How many entities a process may keep between batches ([`StateOptions::cache_entities`]).
    pub fn cache_entities(&self) -> usize {
        self.options.cache_entities
    }

    /// Takes the rebuild lock for `lease` (one process rebuilds); `false`
    /// when another process holds it.
    pub async fn lock_rebuild(&self, token: &str, lease: Duration) -> Result<bool, StateError> {
        let mut connection = self.connection.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.lock_key())
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut connection)
            .await?;
        Ok(taken.is_some())
    }

    /// Releases the rebuild lock taken with `token`.
    pub async fn unlock_rebuild(&self, token: &str) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::Script::new(UNLOCK)
            .key(self.lock_key())
            .arg(token)
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }

    /// Writes rebuilt entities whatever their versions, a thousand per round trip.
    pub async fn overwrite(&self, entities: &[(EntityRef, Vec<u8>)]) -> Result<(), StateError> {
        let ttl = i64::try_from(self.options.ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let script = redis::Script::new(OVERWRITE);
        let mut connection = self.connection.clone();
        script.prepare_invoke().load_async(&mut connection).await?;
        for chunk in entities.chunks(OVERWRITE_CHUNK) {
            let mut pipe = redis::pipe();
            for (at, bytes) in chunk {
                pipe.cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(1)
                    .arg(self.key(*at))
                    .arg(bytes)
                    .arg(ttl)
                    .arg(fresh_version())
                    .ignore();
            }
            let _: () = pipe.query_async(&mut connection).await?;
        }
        Ok(())
    }

    /// The entities `at`, in one round trip; [`StateError::NotBuilt`] when
    /// the state is not built (checked in the same round trip).
    pub async fn fetch(&self, at: &[EntityRef]) -> Result<Vec<Fetched>, StateError> {
        Ok(self.fetch_probing(at, &vec![false; at.len()]).await?.entities)
    }

    /// The entities `at` in one round trip, each whole or, where `probe` is
    /// set, its version alone (a process that holds that entity as of some
    /// version reloads it only if the version moved); with the token of the
    /// state's build. [`StateError::NotBuilt`] when the state is not built
    /// (checked in the same round trip).
    pub async fn fetch_probing(&self, at: &[EntityRef], probe: &[bool]) -> Result<Fetch, StateError> {
        debug_assert_eq!(at.len(), probe.len());
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.built_key());
        for (entity, probe) in at.iter().zip(probe) {
            if *probe {
                pipe.cmd("GETRANGE")
                    .arg(self.key(*entity))
                    .arg(0)
                    .arg(VERSION_BYTES - 1);
            } else {
                pipe.cmd("GET").arg(self.key(*entity));
            }
        }
        let mut connection = self.connection.clone();
        let mut values: Vec<redis::Value> = pipe.query_async(&mut connection).await?;
        if values.len() != at.len() + 1 {
            return Err(StateError::Corrupt(format!(
                "{} replies to {} commands",
                values.len(),
                at.len() + 1
            )));
        }
        let corrupt = |error: redis::ParsingError| StateError::Corrupt(error.to_string());
        let build: Option<String> = redis::from_redis_value(values.remove(0)).map_err(corrupt)?;
        let Some(build) = build else {
            return Err(StateError::NotBuilt);
        };
        metrics::counter!("fraudlens_state_round_trips_total", "op" => "fetch").increment(1);
        let probed = probe.iter().filter(|probe| **probe).count() as u64;
        metrics::counter!("fraudlens_state_entities_total", "op" => "fetch").increment(at.len() as u64 - probed);
        metrics::counter!("fraudlens_state_entities_total", "op" => "probe").increment(probed);
        let entities = values
            .into_iter()
            .zip(probe)
            .map(|(value, probe)| {
                let value: Option<Vec<u8>> = redis::from_redis_value(value).map_err(corrupt)?;
                let value = value.unwrap_or_default();
                if *probe {
                    return Ok(Fetched {
                        version: parse_version(&value)?,
                        bytes: None,
                    });
                }
                if value.is_empty() {
                    return Ok(Fetched::default());
                }
                if value.len() <= VERSION_BYTES {
                    return Err(StateError::Corrupt("an entity with a version but no state".to_owned()));
                }
                let version = parse_version(&value[..VERSION_BYTES])?;
                Ok(Fetched {
                    version,
                    bytes: Some(value[VERSION_BYTES..].to_vec()),
                })
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        Ok(Fetch { build, entities })
    }

    /// Writes each entity if it is still at the version read, in one round
    /// trip; the outcome of each, in order.
    pub async fn write(&self, writes: &[Write]) -> Result<Vec<Written>, StateError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let ttl = i64::try_from(self.options.ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut pipe = redis::pipe();
        let mut value = Vec::new();
        let fresh = fresh_version();
        for write in writes {
            let next = next_version(write.read, fresh);
            value.clear();
            value.extend_from_slice(&next.to_be_bytes());
            value.extend_from_slice(&write.bytes);
            let command = pipe.cmd("EVALSHA").arg(self.script.get_hash());
            if self.options.record_order && !write.applied.is_empty() {
                command
                    .arg(2)
                    .arg(self.key(write.at))
                    .arg(self.order_key(write.at))
                    .arg(version_bytes(write.read))
                    .arg(&value)
                    .arg(ttl)
                    .arg(next);
                for applied in &write.applied {
                    command.arg(applied);
                }
            } else {
                // the order list is named only when written (same hash slot either way)
                command
                    .arg(1)
                    .arg(self.key(write.at))
                    .arg(version_bytes(write.read))
                    .arg(&value)
                    .arg(ttl);
            }
        }
        let mut connection = self.connection.clone();
        let replies: Vec<redis::Value> = match pipe.query_async(&mut connection).await {
            // Redis restarted and lost its script cache: nothing was written
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load_script().await?;
                pipe.query_async(&mut connection).await?
            }
            other => other?,
        };
        metrics::counter!("fraudlens_state_round_trips_total", "op" => "write").increment(1);
        metrics::counter!("fraudlens_state_entities_total", "op" => "write").increment(writes.len() as u64);
        let written: Vec<Written> = replies
            .into_iter()
            .zip(writes)
            .map(|(reply, write)| match reply {
                redis::Value::Int(0) => Ok(Written::Stored(next_version(write.read, fresh))),
                redis::Value::BulkString(current) => Ok(Written::Conflict(parse_version(&current)?)),
                other => Err(StateError::Corrupt(format!("compare-and-set answered {other:?}"))),
            })
            .collect::<Result<_, _>>()?;
        let conflicts = written.iter().filter(|w| matches!(w, Written::Conflict(_))).count();
        if conflicts > 0 {
            metrics::counter!("fraudlens_state_conflicts_total").increment(conflicts as u64);
        }
        Ok(written)
    }

    /// What was applied to an entity, in order (`record_order`): `version what` lines.
    pub async fn applied_order(&self, at: EntityRef) -> Result<Vec<String>, StateError> {
        let mut connection = self.connection.clone();
        Ok(redis::cmd("LRANGE")
            .arg(self.order_key(at))
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await?)
    }
}

/// A namespace is a plain word: `{…}` in it would become the keys' hash tag.
fn check_namespace(namespace: &str) -> Result<(), StateError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    if namespace.is_empty() || namespace.len() > 64 || !namespace.chars().all(plain) {
        return Err(StateError::Namespace(namespace.chars().take(80).collect()));
    }
    Ok(())
}

/// A Redis URL without its password, for messages: `redis://user:***@host`
/// (as the store shows database URLs).
pub fn redact(url: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let mut shown = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            let user = base[scheme + 3..at].split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &base[..scheme], &base[at + 1..])
        }
        // no scheme: anything before an `@` may be a password
        (None, Some(at)) => format!("***@{}", &base[at + 1..]),
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().contains("pass") => format!("{name}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        shown = format!("{shown}?{}", parameters.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(super::redact("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(super::redact("rediss://app:p@ss@h:6380"), "rediss://app:***@h:6380");
        assert_eq!(super::redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(super::redact("memory"), "memory");
        assert_eq!(
            super::redact("redis+unix:///run/redis.sock?db=1&pass=pw"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(super::redact("user:pw@h:6379"), "***@h:6379");
    }

    #[test]
    fn a_namespace_that_would_change_the_hash_tag_is_refused() {
        assert!(super::check_namespace("fraudlens").is_ok());
        assert!(super::check_namespace("team-a:prod_1.eu").is_ok());
        for bad in ["", "a{b}", "a b", "ns\n", "é", &"x".repeat(65)] {
            assert!(super::check_namespace(bad).is_err(), "{bad:?}");
        }
    }
}

/// `[state]`: where the entity state lives.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// `memory` (in this process: snapshot file and rebuild from the store), or
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]` (shared by every `serve` and
    /// `detect` process of the store). `FRAUDLENS_STATE__BACKEND` overrides it.
    pub backend: String,
    /// The first part of every Redis key (deployments sharing one Redis use different ones).
    pub namespace: String,
    /// Append what each write applied to the entity's order list in Redis (tests, audits).
    pub record_order: bool,
    /// Milliseconds to wait for one Redis round trip.
    pub timeout_ms: u64,
    /// Most entities each process keeps between batches, checked against
    /// Redis by version (one small reply) instead of fetched and decoded
    /// again; 0 keeps none.
    pub cache_entities: usize,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            backend: "memory".to_owned(),
            namespace: "fraudlens".to_owned(),
            record_order: false,
            timeout_ms: 2_000,
            cache_entities: 200_000,
        }
    }
}

impl std::fmt::Debug for StateSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSettings")
            .field("backend", &redact(&self.backend))
            .field("namespace", &self.namespace)
            .field("record_order", &self.record_order)
            .field("timeout_ms", &self.timeout_ms)
            .field("cache_entities", &self.cache_entities)
            .finish()
    }
}

impl StateSettings {
    /// Whether the state is held in each process.
    pub fn is_memory(&self) -> bool {
        self.backend == "memory"
    }

    /// The backend as shown (`fraudlens config`, logs): a password is hidden.
    pub fn shown(&self) -> Self {
        Self {
            backend: redact(&self.backend),
            ..self.clone()
        }
    }

    /// Connects to the shared state for a spec (`None` for `memory`);
    /// entities expire `ttl` after their last write.
    pub async fn connect(&self, spec_fingerprint: u64, ttl: Duration) -> Result<Option<SharedState>, StateError> {
        if self.is_memory() {
            return Ok(None);
        }
        let options = StateOptions {
            namespace: self.namespace.clone(),
            ttl,
            record_order: self.record_order,
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            cache_entities: self.cache_entities,
        };
        SharedState::connect(&self.backend, spec_fingerprint, options)
            .await
            .map(Some)
    }
}
