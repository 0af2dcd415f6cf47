//! Session state (opt-in, `codemode.state`): a small key-value store per MCP session that
//! outlives the executions of that session. Isolates stay fresh; only this data persists.
//!
//! Programs reach it as built-in tools, `tools.state.get/set/delete/list`, so it takes the
//! path of every tool call: argument validation, the call record, the audit log (each write
//! is a `state.set` or `state.delete` call in its execution's record). Which session a call
//! belongs to is known only to the host: the executor runs each built-in call inside
//! [`crate::catalog::Caller`].
//!
//! With `codemode.state.path` every write also goes to an SQLite database (before the
//! memory copy changes, so what a program was told is stored is on disk), and the store is
//! read back from it at start.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{catalog::BuiltinTool, config::StateSettings, sandbox::human_bytes};

/// The namespace programs reach the store under.
pub const NAMESPACE: &str = "state";

/// Sessions kept at once; the least recently used one is dropped past it.
const MAX_SESSIONS: usize = 4_096;
/// Characters in a key.
const MAX_KEY_CHARS: usize = 256;

/// One session's entries: values as JSON text.
#[derive(Default)]
struct Entries {
    values: BTreeMap<String, String>,
    bytes: usize,
    last_used: u64,
}

/// Why the on-disk store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("the session state database {path} (codemode.state.path) could not be opened: {source}")]
pub struct StateError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

/// The stores of every session.
#[derive(Debug)]
pub struct SessionState {
    sessions: Mutex<Sessions>,
    settings: StateSettings,
    signing_key: [u8; 32],
}

#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Entries>,
    clock: u64,
    disk: Disk,
}

/// Where writes also go: an SQLite database, or nowhere.
#[derive(Default)]
struct Disk(Option<rusqlite::Connection>);

impl Disk {
    fn open(path: &std::path::Path) -> Result<(Disk, HashMap<String, Entries>), rusqlite::Error> {
        let connection = rusqlite::Connection::open(path)?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS state (
                 session TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value TEXT NOT NULL,
                 PRIMARY KEY (session, key)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS secrets (
                 name TEXT PRIMARY KEY,
                 value BLOB NOT NULL
             ) WITHOUT ROWID;",
        )?;
        let mut by_id: HashMap<String, Entries> = HashMap::new();
        {
            let mut rows = connection.prepare("SELECT session, key, value FROM state")?;
            let rows = rows.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (session, key, value) = row?;
                let entries = by_id.entry(session).or_default();
                entries.bytes += value.len();
                entries.values.insert(key, value);
            }
        }
        Ok((Disk(Some(connection)), by_id))
    }

    /// The key handles to these stores are signed with: the database's own, made on its
    /// first open, so that a handle outlives a restart (and every process sharing the
    /// database accepts the others' handles).
    fn signing_key(&self) -> Result<Option<[u8; 32]>, rusqlite::Error> {
        let Some(connection) = &self.0 else {
            return Ok(None);
        };
        let fresh: [u8; 32] = crate::digest::random_bytes();
        // Only the first process to get here stores its key; every one reads the stored key.
        connection.execute(
            "INSERT OR IGNORE INTO secrets (name, value) VALUES ('handle-signing-key', ?1)",
            [&fresh[..]],
        )?;
        let stored: Vec<u8> = connection.query_row(
            "SELECT value FROM secrets WHERE name = 'handle-signing-key'",
            [],
            |row| row.get(0),
        )?;
        // A key of another length is not ours to guess at: replacing it would quietly void
        // every handle, and make processes sharing the database disagree.
        <[u8; 32]>::try_from(stored.as_slice())
            .map(Some)
            .map_err(|_| {
                rusqlite::Error::InvalidColumnType(
                    0,
                    "handle-signing-key (not 32 bytes)".into(),
                    rusqlite::types::Type::Blob,
                )
            })
    }

    fn put(&self, session: &str, key: &str, value: &str) -> Result<(), String> {
        self.write(
            "INSERT OR REPLACE INTO state (session, key, value) VALUES (?1, ?2, ?3)",
            &[session, key, value],
        )
    }

    fn remove(&self, session: &str, key: &str) -> Result<(), String> {
        self.write(
            "DELETE FROM state WHERE session = ?1 AND key = ?2",
            &[session, key],
        )
    }

    fn forget(&self, session: &str) -> Result<(), String> {
        self.write("DELETE FROM state WHERE session = ?1", &[session])
    }

    fn write(&self, sql: &str, params: &[&str]) -> Result<(), String> {
        let Some(connection) = &self.0 else {
            return Ok(());
        };
        connection
            .execute(sql, rusqlite::params_from_iter(params))
            .map(drop)
            .map_err(|err| {
                tracing::error!("session state not written to its database: {err}");
                format!("the state could not be written to disk ({err}); nothing changed")
            })
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("count", &self.by_id.len())
            .finish()
    }
}

/// `tools.state.get`
#[derive(Deserialize, JsonSchema)]
struct Get {
    /// The key.
    key: String,
}

/// `tools.state.set`
#[derive(Deserialize, JsonSchema)]
struct Set {
    /// The key (at most 256 characters).
    key: String,
    /// Any JSON value; it replaces what the key held.
    value: Value,
}

/// `tools.state.delete`
#[derive(Deserialize, JsonSchema)]
struct Delete {
    /// The key.
    key: String,
}

/// `tools.state.list`
#[derive(Deserialize, JsonSchema)]
struct List {
    /// Only keys that start with this.
    prefix: Option<String>,
}

/// What this session's store holds after a write.
#[derive(Debug, Serialize, JsonSchema)]
struct Usage {
    /// Keys held.
    keys: usize,
    /// Bytes of their values, as JSON text.
    bytes: usize,
}

impl SessionState {
    /// An empty store with these caps, in memory.
    pub fn new(settings: StateSettings) -> Arc<Self> {
        Arc::new(Self {
            sessions: Mutex::new(Sessions::default()),
            settings,
            signing_key: crate::digest::random_bytes(),
        })
    }

    /// The key that signs handles to these stores: random for stores in memory (they end
    /// with the process, and so do their handles), the database's own for stores on disk.
    pub fn signing_key(&self) -> [u8; 32] {
        self.signing_key
    }

    /// The store as `settings` say: in memory, or read from and written to the SQLite
    /// database at `settings.path`.
    pub fn open(settings: StateSettings) -> Result<Arc<Self>, StateError> {
        let Some(path) = &settings.path else {
            return Ok(Self::new(settings));
        };
        let failed = |source| StateError {
            path: path.display().to_string(),
            source,
        };
        let (disk, by_id) = Disk::open(path).map_err(failed)?;
        let signing_key = disk
            .signing_key()
            .map_err(failed)?
            .unwrap_or_else(crate::digest::random_bytes);
        Ok(Arc::new(Self {
            sessions: Mutex::new(Sessions {
                by_id,
                clock: 0,
                disk,
            }),
            settings,
            signing_key,
        }))
    }

    /// The built-in tools of namespace [`NAMESPACE`].
    pub fn tools(self: &Arc<Self>) -> Vec<BuiltinTool> {
        let (get, set, delete, list) = (self.clone(), self.clone(), self.clone(), self.clone());
        vec![
            BuiltinTool::new(
                "get",
                "The value this session stored under `key` in an earlier (or this) execution, or null.",
                move |args: Get| {
                    let value = get.get(&session(), &args.key);
                    async move { Ok::<Value, String>(value) }
                },
            ),
            BuiltinTool::new(
                "set",
                "Stores `value` under `key` for the later executions of this session (not other sessions).",
                move |args: Set| {
                    let stored = set.set(&session(), args.key, &args.value);
                    async move { stored }
                },
            ),
            BuiltinTool::new(
                "delete",
                "Removes `key` from this session's state; true if it was there.",
                move |args: Delete| {
                    let removed = delete.delete(&session(), &args.key);
                    async move { removed }
                },
            ),
            BuiltinTool::new(
                "list",
                "The keys this session has stored, sorted, optionally only those starting with `prefix`.",
                move |args: List| {
                    let keys = list.list(&session(), args.prefix.as_deref().unwrap_or(""));
                    async move { Ok::<Vec<String>, String>(keys) }
                },
            ),
        ]
    }

    fn with<T>(&self, session: &str, f: impl FnOnce(&mut Entries, &Disk) -> T) -> T {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Sessions { by_id, clock, disk } = &mut *sessions;
        *clock += 1;
        let now = *clock;
        if !by_id.contains_key(session) && by_id.len() >= MAX_SESSIONS {
            let oldest = oldest_of_heaviest_owner(
                by_id
                    .iter()
                    .map(|(id, entries)| (id, owner_of(id).unwrap_or(id), entries.last_used)),
            );
            if let Some(oldest) = oldest
                && disk.forget(&oldest).is_ok()
            {
                by_id.remove(&oldest);
            }
        }
        let entries = by_id.entry(session.to_string()).or_default();
        entries.last_used = now;
        f(entries, disk)
    }

    fn get(&self, session: &str, key: &str) -> Value {
        self.with(session, |entries, _| {
            entries
                .values
                .get(key)
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or(Value::Null)
        })
    }

    fn set(&self, session: &str, key: String, value: &Value) -> Result<Usage, String> {
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(format!("the key must be 1 to {MAX_KEY_CHARS} characters"));
        }
        let text = value.to_string();
        let settings = &self.settings;
        if text.len() > settings.max_value_bytes {
            return Err(format!(
                "the value of \"{key}\" is {} as JSON, more than one value may be ({}, codemode.state.maxValueBytes); store less, or split it over keys",
                human_bytes(text.len()),
                human_bytes(settings.max_value_bytes)
            ));
        }
        self.with(session, |entries, disk| {
            let replaced = entries.values.get(&key).map_or(0, String::len);
            let bytes = entries.bytes - replaced + text.len();
            if !entries.values.contains_key(&key) && entries.values.len() >= settings.max_keys {
                return Err(format!(
                    "this session holds {} keys, the most it may (codemode.state.maxKeys); delete some first",
                    settings.max_keys
                ));
            }
            if bytes > settings.max_total_bytes {
                return Err(format!(
                    "storing \"{key}\" would make this session's state {}, more than it may hold ({}, codemode.state.maxTotalBytes); delete some first",
                    human_bytes(bytes),
                    human_bytes(settings.max_total_bytes)
                ));
            }
            disk.put(session, &key, &text)?;
            entries.values.insert(key, text);
            entries.bytes = bytes;
            Ok(Usage {
                keys: entries.values.len(),
                bytes,
            })
        })
    }

    fn delete(&self, session: &str, key: &str) -> Result<bool, String> {
        self.with(session, |entries, disk| {
            if !entries.values.contains_key(key) {
                return Ok(false);
            }
            disk.remove(session, key)?;
            if let Some(text) = entries.values.remove(key) {
                entries.bytes -= text.len();
            }
            Ok(true)
        })
    }

    fn list(&self, session: &str, prefix: &str) -> Vec<String> {
        self.with(session, |entries, _| {
            entries
                .values
                .keys()
                .filter(|key| key.starts_with(prefix))
                .cloned()
                .collect()
        })
    }
}

/// Who a store belongs to, for stores named by a handle or a session under its owner
/// (`handle:OWNER/HASH`, `session:OWNER/ID`, OWNER a tag of the owner, see
/// `server::state_scope`); another store (stdio's) is its own owner.
fn owner_of(store: &str) -> Option<&str> {
    store
        .strip_prefix("handle:")
        .or_else(|| store.strip_prefix("session:"))
        .and_then(|rest| rest.split_once('/'))
        .map(|(owner, _)| owner)
}

/// What a full table of per-owner entries, `(key, owner, age)`, drops: the oldest entry
/// of the owner holding the most, so one client minting entries without end pushes out
/// its own, not others'. Stores use it, and so do waiting approvals.
pub(crate) fn oldest_of_heaviest_owner<'a, A: Ord>(
    entries: impl Iterator<Item = (&'a String, &'a str, A)>,
) -> Option<String> {
    let entries: Vec<_> = entries.collect();
    let mut held: HashMap<&str, usize> = HashMap::new();
    for (_, owner, _) in &entries {
        *held.entry(owner).or_default() += 1;
    }
    let heaviest = held.into_iter().max_by_key(|(_, count)| *count)?.0;
    entries
        .into_iter()
        .filter(|(_, owner, _)| *owner == heaviest)
        .min_by(|a, b| a.2.cmp(&b.2))
        .map(|(key, _, _)| key.clone())
}

/// The session of the call being answered (its [`crate::catalog::Caller`]); calls made outside one
/// share the store of no session.
fn session() -> String {
    crate::catalog::Caller::current().map_or_else(
        || "-".to_string(),
        |caller| {
            caller
                .state_used
                .store(true, std::sync::atomic::Ordering::Relaxed);
            caller.session
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> Arc<SessionState> {
        SessionState::new(StateSettings {
            enabled: true,
            max_keys: 2,
            max_value_bytes: 20,
            max_total_bytes: 20,
            path: None,
        })
    }

    #[test]
    fn sessions_do_not_see_each_other_and_caps_are_named() {
        let state = store();
        state.set("a", "k".into(), &json!([1, 2])).unwrap();
        assert_eq!(state.get("a", "k"), json!([1, 2]));
        assert_eq!(state.get("b", "k"), Value::Null);
        let too_big = state.set("a", "x".into(), &json!("x".repeat(30)));
        assert!(too_big.unwrap_err().contains("maxValueBytes"));
        state.set("a", "j".into(), &json!("0123456789")).unwrap();
        let third = state.set("a", "l".into(), &json!(1));
        assert!(third.unwrap_err().contains("maxKeys"));
        let total = state.set("a", "j".into(), &json!("0123456789012345"));
        assert!(total.unwrap_err().contains("maxTotalBytes"));
        assert_eq!(state.list("a", ""), ["j", "k"]);
        assert_eq!(state.delete("a", "j"), Ok(true));
        assert_eq!(state.delete("a", "j"), Ok(false));
        assert_eq!(state.list("a", "k"), ["k"]);
    }

    #[test]
    fn one_owner_minting_stores_drops_only_its_own() {
        let state = store();
        state
            .set("handle:bearer:b/1", "k".into(), &json!(1))
            .unwrap();
        for n in 0..MAX_SESSIONS + 10 {
            state
                .set(&format!("handle:bearer:a/{n}"), "k".into(), &json!(n))
                .unwrap();
        }
        assert_eq!(
            state.get("handle:bearer:b/1", "k"),
            json!(1),
            "another owner's store stays"
        );
        assert_eq!(
            state.get("handle:bearer:a/0", "k"),
            Value::Null,
            "the owner's oldest went"
        );
        let last = MAX_SESSIONS + 9;
        assert_eq!(
            state.get(&format!("handle:bearer:a/{last}"), "k"),
            json!(last)
        );
    }
}
