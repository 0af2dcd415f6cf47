//! Saved skills (opt-in, `codemode.skills.path`): programs an agent promoted to tools.
//!
//! `save_skill` stores a program with its name, description and input schema; later
//! programs call it as `tools.skills.<name>(args)` (or the global `skills.<name>(args)`),
//! and with `asTools` each skill is also an MCP tool of its own. A call runs the skill's
//! program as an execution of its own (a fresh isolate, the same policy and limits, its own
//! audit record, one level deeper than its caller) with the arguments as `args`.
//!
//! Kept as plain files a person can read and review: `<path>/<name>/v<N>.ts` (the program),
//! `v<N>.json` (name, description, input schema, when it was saved, the program's SHA-256)
//! and `v<N>.d.ts` (the skill's own declaration and those of the tools its program names,
//! as they were when it was saved). Saving again adds a version; the highest is the one called; deleting a version
//! brings back the one before.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use rmcp::model::{JsonObject, Tool};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    audit::Origin,
    catalog::{BuiltinHandler, BuiltinTool, Caller, ToolSource},
    config::SkillSettings,
    executor::{Executor, RunOptions},
};

/// The namespace programs reach skills under.
pub const NAMESPACE: &str = "skills";

/// Bytes of one skill's program.
const MAX_CODE_BYTES: usize = 256 << 10;
/// Characters of a description.
const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// Characters of a name.
const MAX_NAME_CHARS: usize = 48;

/// What a skill's program is prefixed with, on its first line, to receive its arguments.
fn args_prefix(arguments: &Value) -> String {
    format!("const args = {arguments}; ")
}

/// Why a skill could not be saved, found or deleted.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    /// The name is not a valid skill name.
    #[error(
        "invalid skill name {0:?}: use 1 to 48 lowercase letters, digits and underscores, starting with a letter (programs call it as skills.<name>)"
    )]
    Name(String),
    /// A field of `save_skill` is not valid.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// `description`, `code` or `inputSchema`.
        field: &'static str,
        /// What is wrong, and what is allowed.
        message: String,
    },
    /// No skill has this name.
    #[error("there is no skill named {0:?}; list_skills shows the saved ones")]
    Unknown(String),
    /// The skill has no such version.
    #[error("skill {name:?} has no version {version}; it has {have}")]
    UnknownVersion {
        /// The skill.
        name: String,
        /// The version asked for.
        version: u32,
        /// The versions it has.
        have: String,
    },
    /// As many skills are saved as may be.
    #[error(
        "{0} skills are saved, as many as codemode.skills.maxSkills allows; delete one (delete_skill) first"
    )]
    Full(usize),
    /// The skill's files could not be read or written.
    #[error("could not write {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One saved version of a skill: its `v<N>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillVersion {
    /// `skills.<name>` in programs.
    pub name: String,
    /// 1, 2, ...: saving again adds one.
    pub version: u32,
    /// What it does, for the model that calls it.
    pub description: String,
    /// The arguments it takes (an object schema).
    pub input_schema: JsonObject,
    /// When it was saved (RFC 3339).
    pub saved_at: String,
    /// SHA-256 of the program (`v<N>.ts`), hex.
    pub code_sha256: String,
}

/// A skill as listed: its current version and the versions kept.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillListing {
    /// The current (highest) version.
    #[serde(flatten)]
    pub current: SkillVersion,
    /// Every version kept, oldest first.
    pub versions: Vec<u32>,
}

/// The current version of one skill, with its program.
#[derive(Debug, Clone)]
struct Skill {
    current: SkillVersion,
    code: String,
    versions: Vec<u32>,
}

/// The saved skills: on disk, and as the tools of the `skills` namespace.
#[derive(Debug)]
pub struct SkillStore {
    dir: PathBuf,
    settings: SkillSettings,
    skills: RwLock<BTreeMap<String, Skill>>,
    tools: RwLock<Arc<Vec<BuiltinTool>>>,
    generation: AtomicU64,
    changes: tokio::sync::watch::Sender<u64>,
    /// Runs the skills' programs; set once the executor exists.
    executor: RwLock<Weak<Executor>>,
    me: Weak<SkillStore>,
}

impl SkillStore {
    /// The skills kept in `settings.path` (created if missing); `None` without a path.
    pub fn open(settings: &SkillSettings) -> Result<Option<Arc<SkillStore>>, SkillError> {
        let Some(dir) = settings.path.clone() else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).map_err(|source| SkillError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let store = Arc::new_cyclic(|me| SkillStore {
            dir,
            settings: settings.clone(),
            skills: RwLock::new(BTreeMap::new()),
            tools: RwLock::new(Arc::new(Vec::new())),
            generation: AtomicU64::new(0),
            changes: tokio::sync::watch::channel(0).0,
            executor: RwLock::new(Weak::new()),
            me: me.clone(),
        });
        store.reload();
        Ok(Some(store))
    }

    /// Where the skills are kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether each skill is also an MCP tool.
    pub fn as_tools(&self) -> bool {
        self.settings.as_tools
    }

    /// Runs skills' programs on `executor` from now on.
    pub fn run_on(&self, executor: &Arc<Executor>) {
        *self.executor.write().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(executor);
    }

    /// Changes whenever a skill is saved or deleted.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every skill, by name.
    pub fn list(&self) -> Vec<SkillListing> {
        self.read()
            .values()
            .map(|skill| SkillListing {
                current: skill.current.clone(),
                versions: skill.versions.clone(),
            })
            .collect()
    }

    /// The current version of `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<SkillVersion> {
        self.read().get(name).map(|skill| skill.current.clone())
    }

    /// Saves `code` as the next version of skill `name`.
    pub fn save(
        &self,
        name: &str,
        description: &str,
        code: &str,
        input_schema: Option<JsonObject>,
        declarations: &str,
    ) -> Result<SkillVersion, SkillError> {
        check_name(name)?;
        let description = description.trim();
        if description.is_empty() || description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(SkillError::Invalid {
                field: "description",
                message: format!(
                    "say what the skill does and what it returns, in 1 to {MAX_DESCRIPTION_CHARS} characters"
                ),
            });
        }
        let code = crate::transpile::blank_markdown_fence(code);
        let code = code.trim_matches('\n');
        if code.trim().is_empty() || code.len() > MAX_CODE_BYTES {
            return Err(SkillError::Invalid {
                field: "code",
                message: format!("the program must be 1 byte to {} KiB", MAX_CODE_BYTES >> 10),
            });
        }
        if let Err(error) = crate::transpile::transpile(code) {
            let at = error
                .position
                .map(|p| format!(" at {p}"))
                .unwrap_or_default();
            return Err(SkillError::Invalid {
                field: "code",
                message: format!("it does not parse{at}: {}", error.message),
            });
        }
        let input_schema = check_input_schema(input_schema)?;
        let mut skills = self.skills.write().unwrap_or_else(|e| e.into_inner());
        if !skills.contains_key(name) && skills.len() >= self.settings.max_skills {
            return Err(SkillError::Full(skills.len()));
        }
        let version = skills
            .get(name)
            .and_then(|s| s.versions.last().copied())
            .unwrap_or(0)
            + 1;
        let saved = SkillVersion {
            name: name.to_string(),
            version,
            description: description.to_string(),
            input_schema,
            saved_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            code_sha256: crate::digest::sha256_hex(code.as_bytes()),
        };
        let folder = self.dir.join(name);
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SkillError::Io { path, source }
        };
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let program = folder.join(format!("v{version}.ts"));
        write_whole(&program, format!("{code}\n").as_bytes()).map_err(io(&program))?;
        let declared = folder.join(format!("v{version}.d.ts"));
        let header = format!(
            "// skills.{name} version {version}: its declaration, then those of the tools its program\n// calls, as they were when it was saved.\n\n"
        );
        write_whole(&declared, format!("{header}{declarations}").as_bytes())
            .map_err(io(&declared))?;
        let meta = folder.join(format!("v{version}.json"));
        let text = serde_json::to_string_pretty(&saved).unwrap_or_default() + "\n";
        write_whole(&meta, text.as_bytes()).map_err(io(&meta))?;
        let mut versions = skills
            .get(name)
            .map(|s| s.versions.clone())
            .unwrap_or_default();
        versions.push(version);
        skills.insert(
            name.to_string(),
            Skill {
                current: saved.clone(),
                code: code.to_string(),
                versions,
            },
        );
        drop(skills);
        self.changed();
        Ok(saved)
    }

    /// Deletes one version of `name` (the one before becomes current), or all of it.
    pub fn delete(&self, name: &str, version: Option<u32>) -> Result<Vec<u32>, SkillError> {
        check_name(name)?;
        let skills = self.read();
        let skill = skills
            .get(name)
            .ok_or_else(|| SkillError::Unknown(name.to_string()))?;
        let doomed = match version {
            None => skill.versions.clone(),
            Some(version) if skill.versions.contains(&version) => vec![version],
            Some(version) => {
                return Err(SkillError::UnknownVersion {
                    name: name.to_string(),
                    version,
                    have: versions_text(&skill.versions),
                });
            }
        };
        drop(skills);
        let folder = self.dir.join(name);
        for version in &doomed {
            for ext in ["ts", "d.ts", "json"] {
                let file = folder.join(format!("v{version}.{ext}"));
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(SkillError::Io {
                            path: file.display().to_string(),
                            source,
                        });
                    }
                }
            }
        }
        // Only an empty folder goes; anything a person put there stays.
        let _ = std::fs::remove_dir(&folder);
        self.reload();
        Ok(doomed)
    }

    /// Reads every skill from disk again (at start, and after a deletion).
    fn reload(&self) {
        let mut found = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), "the skills directory cannot be read: {err}");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            if let Some(skill) = load_skill(&entry.path(), &name) {
                found.insert(name, skill);
            }
        }
        *self.skills.write().unwrap_or_else(|e| e.into_inner()) = found;
        self.changed();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Skill>> {
        self.skills.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds the tools from the skills, and tells whoever listens.
    fn changed(&self) {
        let tools: Vec<BuiltinTool> = self
            .read()
            .values()
            .map(|skill| self.tool(&skill.current))
            .collect();
        *self.tools.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tools);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.changes.send_replace(generation);
    }

    /// `tools.skills.<name>`: its declaration says what it is and where it is kept.
    fn tool(&self, skill: &SkillVersion) -> BuiltinTool {
        let description = format!(
            "{}\n\nSaved skill, version {} (saved {}): its program is {}/{}/v{}.ts.",
            skill.description,
            skill.version,
            skill.saved_at,
            self.dir.display(),
            skill.name,
            skill.version
        );
        let tool = Tool::new(
            skill.name.clone(),
            description,
            Arc::new(skill.input_schema.clone()),
        );
        let (store, name) = (self.me.clone(), skill.name.clone());
        let handler: BuiltinHandler = Arc::new(move |arguments| {
            let (store, name) = (store.clone(), name.clone());
            Box::pin(async move {
                match store.upgrade() {
                    Some(store) => store.run(&name, arguments).await,
                    None => Err("the server is shutting down".to_string()),
                }
            })
        });
        BuiltinTool::from_schema(tool, handler)
    }

    /// Runs skill `name` with `arguments` (already validated against its schema) as an
    /// execution of its own: the caller's session, one level deeper.
    async fn run(&self, name: &str, arguments: JsonObject) -> Result<Value, String> {
        let Some((version, code)) = self
            .read()
            .get(name)
            .map(|s| (s.current.version, s.code.clone()))
        else {
            return Err(format!("the skill {name} was deleted"));
        };
        let executor = self
            .executor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
            .ok_or("the server is shutting down")?;
        let caller = Caller::current();
        let prefix = args_prefix(&Value::Object(arguments));
        let options = RunOptions {
            origin: Some(Origin {
                client: Some(format!("skills.{name} v{version}")),
                session: caller.as_ref().map(|c| c.session.clone()),
                transport: "skill".into(),
                principal: caller.as_ref().and_then(|c| c.principal.clone()),
            }),
            depth: caller.as_ref().map_or(1, |c| c.depth.saturating_add(1)),
            within_caller: true,
            state_used: caller.as_ref().map(|c| c.state_used.clone()),
            tenancy: caller.as_ref().map(|c| c.tenancy.clone()),
            quota_key: caller.as_ref().and_then(|c| c.quota_key.clone()),
            meter: caller.as_ref().and_then(|c| c.meter.clone()),
            taint: caller.map(|c| c.taint),
            ..RunOptions::default()
        };
        let execution = executor
            .execute_with(&format!("{prefix}{code}"), options)
            .await;
        match execution.outcome.result {
            Ok(value) => serde_json::from_str(&value.json)
                .map_err(|err| format!("the skill's result is not JSON: {err}")),
            Err(error) => {
                let at = error
                    .position
                    .map(|mut p| {
                        if p.line == 1 {
                            p.column = p
                                .column
                                .saturating_sub(u32::try_from(prefix.chars().count()).unwrap_or(0))
                                .max(1);
                        }
                        format!(" at {p} of skills/{name}/v{version}.ts")
                    })
                    .unwrap_or_default();
                Err(format!(
                    "its program failed ({}){at}: {}",
                    error.kind.as_str(),
                    error.message
                ))
            }
        }
    }
}

impl ToolSource for SkillStore {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn tools(&self) -> Arc<Vec<BuiltinTool>> {
        self.tools.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn check_name(name: &str) -> Result<(), SkillError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= MAX_NAME_CHARS;
    if valid {
        Ok(())
    } else {
        Err(SkillError::Name(name.to_string()))
    }
}

/// An object schema that compiles; `{"type": "object"}` when none is given.
fn check_input_schema(schema: Option<JsonObject>) -> Result<JsonObject, SkillError> {
    let schema = schema.unwrap_or_else(|| {
        let mut schema = JsonObject::new();
        schema.insert("type".into(), Value::from("object"));
        schema
    });
    let invalid = |message: String| SkillError::Invalid {
        field: "inputSchema",
        message,
    };
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(invalid(
            "it must describe one object of arguments: {\"type\": \"object\", \"properties\": {...}, \"required\": [...]}".into(),
        ));
    }
    jsonschema::validator_for(&Value::Object(schema.clone()))
        .map_err(|err| invalid(format!("it is not a valid JSON Schema: {err}")))?;
    Ok(schema)
}

/// The skill in `folder`: its highest version whose `.json` and `.ts` both read.
fn load_skill(folder: &Path, name: &str) -> Option<Skill> {
    let mut versions: Vec<u32> = std::fs::read_dir(folder)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            file.strip_prefix('v')?.strip_suffix(".json")?.parse().ok()
        })
        .filter(|version| folder.join(format!("v{version}.ts")).is_file())
        .collect();
    versions.sort_unstable();
    let &latest = versions.last()?;
    let meta = std::fs::read_to_string(folder.join(format!("v{latest}.json"))).ok()?;
    let code = std::fs::read_to_string(folder.join(format!("v{latest}.ts"))).ok()?;
    match serde_json::from_str::<SkillVersion>(&meta) {
        Ok(mut current) => {
            // The folder and file names are what count; a hand-edited field does not move it.
            current.name = name.to_string();
            current.version = latest;
            Some(Skill {
                current,
                code: code.trim_end_matches('\n').to_string(),
                versions,
            })
        }
        Err(err) => {
            tracing::warn!(
                skill = name,
                version = latest,
                "skipping a skill whose v{latest}.json cannot be read: {err}"
            );
            None
        }
    }
}

/// Writes `bytes` to `path` through a temporary file, so a reader never sees half of it.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

fn versions_text(versions: &[u32]) -> String {
    versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers_a_program_can_write() {
        for good in ["a", "sum_rows", "v2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "A", "2a", "a-b", "a.b", "../x", &"a".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn input_schemas_must_be_object_schemas_that_compile() {
        assert!(check_input_schema(None).is_ok());
        let array = serde_json::json!({ "type": "array" });
        assert!(check_input_schema(array.as_object().cloned()).is_err());
        let broken = serde_json::json!({ "type": "object", "properties": { "n": { "type": 5 } } });
        let err = check_input_schema(broken.as_object().cloned()).unwrap_err();
        assert!(err.to_string().contains("inputSchema"), "{err}");
    }
}
