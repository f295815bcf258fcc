//! [`RedisStore`]: one Redis hash per state, compare-and-set by a Lua script.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use state_core::{
    ConnectorState, Precondition, Result, Revision, StateEntry, StateError, StateId, StateStore,
    Stored, async_trait, format_timestamp,
};

use crate::builder::RedisStoreBuilder;
use crate::error::{BACKEND, Endpoint};
use crate::keys::scan_pattern;
use crate::scripts;

/// Keys asked for per `SCAN` call in `list`.
const SCAN_COUNT: usize = 1000;

/// A [`StateStore`] in Redis (standalone server, any version with Lua, 5.0 or newer).
///
/// Each state is a hash under `key_prefix + id` with the fields `doc` (the
/// JSON document), `rev` (the revision) and `updated` (`last_updated`, RFC 3339);
/// the README shows how to read them with `redis-cli`.
///
/// - Compare-and-set: one Lua script checks `rev` and writes, atomically.
/// - Reconnects by itself after the server restarts or the network drops
///   (a `redis::aio::ConnectionManager`); the operation that saw the drop fails
///   with the retryable [`StateError::Unavailable`].
/// - Durability is the server's: `save` returns once Redis has applied the
///   write; configure `appendonly yes` to keep it across a server crash.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisStore {
    manager: ConnectionManager,
    key_prefix: String,
    endpoint: Endpoint,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.endpoint.redacted)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[user][:password@]host[:port][/db]` or
    /// `rediss://` for TLS) with the default timeouts; states go under
    /// `key_prefix + id`. See [`RedisStoreBuilder::connect`] for the errors.
    pub async fn connect(url: &str, key_prefix: impl Into<String>) -> Result<RedisStore> {
        RedisStoreBuilder::new(url)
            .with_key_prefix(key_prefix)
            .connect()
            .await
    }

    /// A builder for timeouts, retries and a private TLS CA.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(url)
    }

    pub(crate) fn from_parts(
        manager: ConnectionManager,
        key_prefix: String,
        endpoint: Endpoint,
    ) -> Self {
        RedisStore {
            manager,
            key_prefix,
            endpoint,
        }
    }

    /// The prefix of every key of this store.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The Redis key of state `id`: `key_prefix + id`.
    pub fn key(&self, id: &StateId) -> String {
        format!("{}{}", self.key_prefix, id.as_str())
    }

    /// The store's reconnecting connection (a cheap clone), for commands of your
    /// own on the same connection, e.g. benchmarks or inspection.
    pub fn connection(&self) -> ConnectionManager {
        self.manager.clone()
    }

    fn location(&self, key: &str) -> String {
        format!("redis key `{key}` at {}", self.endpoint.redacted)
    }

    async fn describe_page(
        &self,
        page: Vec<(StateId, Vec<u8>)>,
        entries: &mut BTreeMap<StateId, StateEntry>,
    ) -> Result<()> {
        let mut invocation = scripts::DESCRIBE.prepare_invoke();
        for (_, key) in &page {
            invocation.key(key.as_slice());
        }
        let described: Vec<(String, i64)> = invocation
            .invoke_async(&mut self.manager.clone())
            .await
            .map_err(|e| self.endpoint.error(e, "list states", None))?;
        for ((id, key), (updated, size)) in page.into_iter().zip(described) {
            let key = String::from_utf8_lossy(&key);
            if updated.is_empty() {
                if size == -2 {
                    tracing::warn!(key = %key, "skipping a key under the state prefix that is not a state hash");
                }
                continue; // -1: deleted since SCAN saw it.
            }
            let last_updated = DateTime::parse_from_rfc3339(&updated)
                .map_err(|e| StateError::Corrupt {
                    id: id.to_string(),
                    location: self.location(&key),
                    reason: format!(
                        "its `updated` field {updated:?} is not an RFC 3339 timestamp ({e})"
                    ),
                })?
                .with_timezone(&Utc);
            let size = u64::try_from(size).unwrap_or_default();
            entries.insert(id.clone(), StateEntry::new(id, last_updated, size));
        }
        Ok(())
    }
}

#[async_trait]
impl StateStore for RedisStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn load(&self, id: &StateId) -> Result<Stored> {
        let key = self.key(id);
        let (document, revision): (Option<Vec<u8>>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("doc")
            .arg("rev")
            .query_async(&mut self.manager.clone())
            .await
            .map_err(|e| self.endpoint.error(e, "load", Some(&key)))?;
        match (document, revision) {
            (Some(document), Some(revision)) => Ok(Stored {
                // The location is only formatted on the error path: decoding again
                // there gives the same error, naming the key.
                state: ConnectorState::from_slice(&document, id.as_str(), "").or_else(|_| {
                    ConnectorState::from_slice(&document, id.as_str(), &self.location(&key))
                })?,
                revision: Revision::new(revision),
                size_bytes: document.len() as u64,
            }),
            (None, None) => Err(StateError::NotFound {
                id: id.to_string(),
                backend: BACKEND,
            }),
            (document, _) => Err(StateError::Corrupt {
                id: id.to_string(),
                location: self.location(&key),
                reason: format!(
                    "the hash has no `{}` field",
                    if document.is_none() { "doc" } else { "rev" }
                ),
            }),
        }
    }

    async fn save(&self, state: &ConnectorState, expect: &Precondition) -> Result<Revision> {
        let id = StateId::new(state.id.as_str())?;
        let key = self.key(&id);
        let revision = format!("{:016x}", rand::random::<u64>());
        let (mode, expected) = match expect {
            Precondition::Any => ("any", ""),
            Precondition::Absent => ("absent", ""),
            Precondition::Revision(r) => ("rev", r.as_str()),
        };
        let reply: Vec<String> = scripts::SAVE
            .key(&key)
            .arg(mode)
            .arg(expected)
            .arg(&revision)
            .arg(state.to_json())
            .arg(format_timestamp(&state.last_updated))
            .invoke_async(&mut self.manager.clone())
            .await
            .map_err(|e| self.endpoint.error(e, "save", Some(&key)))?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Revision::new(revision)),
            Some("conflict") => {
                let found = reply.get(1).map(String::as_str).unwrap_or_default();
                let reason = match (expect, found) {
                    (Precondition::Revision(want), "") => {
                        format!("expected revision {want}, but the state was deleted")
                    }
                    (Precondition::Revision(want), found) => {
                        format!("expected revision {want}, found revision {found}")
                    }
                    (_, found) => format!("expected no stored state, found revision {found}"),
                };
                Err(StateError::conflict(id.as_str(), reason))
            }
            _ => Err(StateError::backend(
                BACKEND,
                format!(
                    "unexpected reply {reply:?} from the save script for key `{key}` at {}",
                    self.endpoint.redacted
                ),
            )),
        }
    }

    async fn delete(&self, id: &StateId) -> Result<bool> {
        let key = self.key(id);
        let removed: i64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut self.manager.clone())
            .await
            .map_err(|e| self.endpoint.error(e, "delete", Some(&key)))?;
        Ok(removed > 0)
    }

    async fn list(&self) -> Result<Vec<StateEntry>> {
        let pattern = scan_pattern(&self.key_prefix);
        let prefix = self.key_prefix.as_bytes();
        // SCAN may return a key more than once: the map keeps each id once.
        let mut entries = BTreeMap::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut self.manager.clone())
                .await
                .map_err(|e| self.endpoint.error(e, "list states", None))?;
            let page: Vec<(StateId, Vec<u8>)> = keys
                .into_iter()
                .filter_map(|key| {
                    let listed = std::str::from_utf8(key.strip_prefix(prefix)?)
                        .ok()
                        .and_then(|id| StateId::new(id).ok());
                    if listed.is_none() {
                        tracing::warn!(key = %String::from_utf8_lossy(&key), "skipping a key under the state prefix whose name is not a valid state id");
                    }
                    Some((listed?, key))
                })
                .collect();
            if !page.is_empty() {
                self.describe_page(page, &mut entries).await?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(entries.into_values().collect())
    }
}
