//! The settings of what a run may use beyond its program: skills, the type check, tasks,
//! the `state.*` store and learned result types (`codemode.skills`, `.typecheck`,
//! `.tasks`, `.state`, `.learnedTypes`).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// The `codemode.skills` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SkillSettings {
    /// The directory skills are kept in, as plain files (one folder per skill, one `.ts`
    /// and one `.json` per version). Without it there are no skills.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    /// Whether each skill is also an MCP tool of this server (`skill_<name>`).
    #[serde(default)]
    pub as_tools: bool,
    /// Skills kept at once; saving a new one past it is refused.
    #[serde(default = "SkillSettings::default_max_skills")]
    pub max_skills: usize,
}

impl SkillSettings {
    fn default_max_skills() -> usize {
        200
    }
}

impl Default for SkillSettings {
    fn default() -> Self {
        Self {
            path: None,
            as_tools: false,
            max_skills: Self::default_max_skills(),
        }
    }
}

/// The `codemode.typecheck` section: `execute_code { typecheck: true }` checks the program
/// against the tools' declarations with TypeScript's compiler before anything runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TypecheckSettings {
    /// Whether programs are checked when a call does not say (`typecheck` omitted).
    #[serde(default, rename = "default")]
    pub by_default: bool,
    /// The `tsc` to run (TypeScript 7's native one is fastest); default: `tsc` on `PATH`.
    #[serde(default)]
    pub tsc: Option<std::path::PathBuf>,
    /// Wall clock of one check, in milliseconds.
    #[serde(default = "TypecheckSettings::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl TypecheckSettings {
    fn default_timeout_ms() -> u64 {
        10_000
    }
}

impl Default for TypecheckSettings {
    fn default() -> Self {
        Self {
            by_default: false,
            tsc: None,
            timeout_ms: Self::default_timeout_ms(),
        }
    }
}

/// The `codemode.tasks` section. A client that declares the tasks extension gets a task
/// handle from `execute_code` at once and polls for the result; such a run has its own
/// wall clock, in minutes rather than seconds. Clients without the extension are unaffected.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskSettings {
    /// Whether `execute_code` runs as a task for clients that can take one.
    #[serde(default = "TaskSettings::default_enabled")]
    pub enabled: bool,
    /// Wall clock of a program run as a task, in milliseconds (instead of
    /// `codemode.limits.timeoutMs`; a call's `timeoutMs` may lower it).
    #[serde(default = "TaskSettings::default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long a finished task's result stays readable, in milliseconds.
    #[serde(default = "TaskSettings::default_keep_ms")]
    pub keep_ms: u64,
    /// Tasks one session may have running at once; past it, `busy`.
    #[serde(default = "TaskSettings::default_max_running")]
    pub max_running: usize,
}

impl TaskSettings {
    fn default_enabled() -> bool {
        true
    }

    fn default_timeout_ms() -> u64 {
        600_000
    }

    fn default_keep_ms() -> u64 {
        600_000
    }

    fn default_max_running() -> usize {
        8
    }

    /// The wall clock of a task's program.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub(super) fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        for (key, value, least, most) in [
            ("timeoutMs", self.timeout_ms, 10, 86_400_000),
            ("keepMs", self.keep_ms, 1_000, 86_400_000),
            ("maxRunning", self.max_running as u64, 1, 4_096),
        ] {
            if !(least..=most).contains(&value) {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    path: format!("codemode.tasks.{key}"),
                    message: format!("{value} is out of range: allowed {least} to {most}"),
                });
            }
        }
        Ok(())
    }
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            enabled: Self::default_enabled(),
            timeout_ms: Self::default_timeout_ms(),
            keep_ms: Self::default_keep_ms(),
            max_running: Self::default_max_running(),
        }
    }
}

/// The `codemode.state` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StateSettings {
    /// Whether programs get `tools.state.get/set/delete/list`.
    #[serde(default)]
    pub enabled: bool,
    /// Keys one session may hold.
    #[serde(default = "StateSettings::default_max_keys")]
    pub max_keys: usize,
    /// Bytes of one value, as JSON text.
    #[serde(default = "StateSettings::default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// Bytes of all one session's values, as JSON text.
    #[serde(default = "StateSettings::default_max_total_bytes")]
    pub max_total_bytes: usize,
    /// An SQLite database the state is kept in, so that it outlives the server process
    /// (a stdio server's one session, and each HTTP session id); without it, memory only.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
}

impl StateSettings {
    fn default_max_keys() -> usize {
        1_000
    }

    fn default_max_value_bytes() -> usize {
        64 << 10
    }

    fn default_max_total_bytes() -> usize {
        1 << 20
    }
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            max_keys: Self::default_max_keys(),
            max_value_bytes: Self::default_max_value_bytes(),
            max_total_bytes: Self::default_max_total_bytes(),
            path: None,
        }
    }
}

/// The `codemode.learnedTypes` section. Return types are always learned in memory; with a
/// `path` they are kept across restarts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LearnedTypesSettings {
    /// The JSON file they are kept in.
    pub path: Option<std::path::PathBuf>,
}
