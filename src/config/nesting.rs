//! Code-mode servers inside code-mode servers. A desktop config that lists codemode-mcp
//! and is also given to it would start codemode-mcp, which reads the same file and starts
//! itself again, without end. Every started upstream gets its nesting level in
//! [`NESTING_VAR`]; entries that would loop, or could never be reached within
//! `codemode.policy.maxDepth`, are left out at load time with the reason.

use std::path::{Path, PathBuf};

use super::{Transport, UpstreamConfig};

/// How many code-mode servers deep a process was started: absent for one a client
/// started, 1 for an upstream of that one, and so on.
pub const NESTING_VAR: &str = "CODEMODE_NESTING";

/// The most `codemode.policy.maxDepth` may be: with it, configs that list each other start
/// at most (code-mode entries per config) ^ (MAX_DEPTH + 1) servers.
pub const MAX_DEPTH: u32 = 8;

/// The nesting level of this process: what [`NESTING_VAR`] says, or, if more, how many of
/// its ancestors run this same program (a wrapper such as `env -i` or `sudo` clears the
/// variable, but cannot hide its parents). Worked out once, at the first ask (config loads
/// and every upstream (re)start ask): what the process was started as is what counts.
pub fn level() -> u32 {
    static LEVEL: std::sync::LazyLock<u32> = std::sync::LazyLock::new(measured_level);
    *LEVEL
}

fn measured_level() -> u32 {
    let said = std::env::var(NESTING_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    said.max(ancestors_running_this_program())
}

/// Ancestors whose executable is this process's own (by path, or by file name for another
/// install of codemode-mcp), from `/proc`; 0 where there is no `/proc`.
fn ancestors_running_this_program() -> u32 {
    let Ok(own) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let name = own.file_name().map(std::ffi::OsStr::to_os_string);
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The parent is the second field after the parenthesised command name.
        let after = stat.get(stat.rfind(')')? + 2..)?;
        after.split(' ').nth(1)?.parse().ok()
    };
    let mut count = 0;
    let mut pid = std::process::id();
    // A bounded walk: a cycle in what /proc says cannot keep it going.
    for _ in 0..1024 {
        let Some(parent) = parent_of(pid).filter(|p| *p > 1) else {
            break;
        };
        if let Ok(exe) = std::fs::read_link(format!("/proc/{parent}/exe"))
            && (exe == own || exe.file_name().map(std::ffi::OsStr::to_os_string) == name)
        {
            count += 1;
        }
        pid = parent;
    }
    count
}

/// An entry of `mcpServers` that is not started, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedUpstream {
    /// Its key in `mcpServers`.
    pub name: String,
    /// Why, for the log and `check-config`'s table.
    pub reason: String,
}

/// What this process is, to recognise itself in a config.
#[derive(Debug)]
pub struct Own<'a> {
    /// The config file this process read, if it read one.
    pub config: Option<&'a Path>,
    /// Its nesting level.
    pub level: u32,
    /// `codemode.policy.maxDepth`.
    pub max_depth: u32,
}

/// Splits `upstreams` into those to start and those left out.
pub fn screen(
    upstreams: Vec<UpstreamConfig>,
    own: &Own<'_>,
) -> (Vec<UpstreamConfig>, Vec<SkippedUpstream>) {
    let own_exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let own_config = own.config.and_then(|c| c.canonicalize().ok());
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for upstream in upstreams {
        match verdict(&upstream, own, own_exe.as_deref(), own_config.as_deref()) {
            None => kept.push(upstream),
            Some(reason) => skipped.push(SkippedUpstream {
                name: upstream.name,
                reason,
            }),
        }
    }
    (kept, skipped)
}

fn verdict(
    upstream: &UpstreamConfig,
    own: &Own<'_>,
    own_exe: Option<&Path>,
    own_config: Option<&Path>,
) -> Option<String> {
    let Transport::Stdio {
        command,
        args,
        env,
        cwd,
        ..
    } = &upstream.transport
    else {
        return None;
    };
    let name = &upstream.name;
    let Own {
        level, max_depth, ..
    } = *own;
    // Past the limit, no program here can call a nested code-mode server anyway, and a
    // wrapper (a script, `sh -c`) may hide one: starting nothing by command is what bounds
    // the process tree whatever the entries look like.
    if level > max_depth {
        return Some(format!(
            "not started: this codemode-mcp is nested {level} deep inside code-mode servers (the {NESTING_VAR} its parent set), past codemode.policy.maxDepth ({max_depth}), so no server is started by command here; a config lists code-mode servers in a loop: remove the entry that starts codemode-mcp from one of them"
        ));
    }
    let dir = cwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let launch = codemode_launch(command, args, &dir, own_exe)?;
    let config = launch
        .config
        .or_else(|| env.get("CODEMODE_CONFIG").map(|c| dir.join(c)))
        .and_then(|c| c.canonicalize().ok());
    let same_binary = launch.binary.is_some() && launch.binary.as_deref() == own_exe;
    if config.is_some() && config.as_deref() == own_config {
        let what = if same_binary {
            "this very server (the same codemode-mcp binary with the same config file)"
        } else {
            "codemode-mcp with this same config file"
        };
        return Some(format!(
            "skipped: mcpServers.{name} is {what}, which would start itself again without end; remove the entry from the file you give codemode-mcp, or give codemode-mcp a config of its own"
        ));
    }
    if level >= max_depth {
        return Some(format!(
            "skipped: mcpServers.{name} starts codemode-mcp, and this one is already nested {level} deep inside code-mode servers; codemode.policy.maxDepth ({max_depth}) lets no program here call one more"
        ));
    }
    None
}

/// An entry recognised as starting codemode-mcp.
struct Launch {
    /// The binary, when the command is codemode-mcp itself (not through a wrapper).
    binary: Option<PathBuf>,
    /// The config file its arguments name.
    config: Option<PathBuf>,
}

/// Recognises `codemode-mcp ...` (by path or by name) and `uvx`/`npx`/`pipx run`/`bunx`
/// `codemode-mcp ...`.
fn codemode_launch(
    command: &str,
    args: &[String],
    dir: &Path,
    own_exe: Option<&Path>,
) -> Option<Launch> {
    const NAME: &str = "codemode-mcp";
    let binary = find_program(command, dir);
    let file_name = Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let is_ours = binary.is_some() && binary.as_deref() == own_exe;
    let (binary, rest) = if is_ours || file_name == NAME {
        (binary, args)
    } else if matches!(file_name, "uvx" | "npx" | "pipx" | "bunx" | "pnpx") {
        let at = args.iter().position(|a| {
            a == NAME
                || a.strip_prefix(NAME)
                    .is_some_and(|v| v.starts_with('@') || v.starts_with("=="))
        })?;
        (None, &args[at + 1..])
    } else {
        return None;
    };
    let config = rest.iter().enumerate().find_map(|(i, arg)| {
        if arg == "--config" || arg == "-c" {
            rest.get(i + 1).map(|c| dir.join(c))
        } else {
            arg.strip_prefix("--config=").map(|c| dir.join(c))
        }
    });
    Some(Launch { binary, config })
}

/// Where `command` is: a path as given (from `dir`), or the first match on `PATH`.
fn find_program(command: &str, dir: &Path) -> Option<PathBuf> {
    let path = Path::new(command);
    if command.contains('/') {
        return dir.join(path).canonicalize().ok();
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(path))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdio(name: &str, command: &str, args: &[&str]) -> UpstreamConfig {
        UpstreamConfig {
            name: name.into(),
            transport: Transport::Stdio {
                command: command.into(),
                args: args.iter().map(|a| a.to_string()).collect(),
                env: Default::default(),
                cwd: None,
                inherit_env: Vec::new(),
            },
            call_timeout_ms: None,
            auto_approve: Vec::new(),
            disabled_tools: Vec::new(),
        }
    }

    #[test]
    fn itself_is_skipped_and_others_are_kept() {
        let dir = std::env::temp_dir().join(format!("nesting-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let own = dir.join("a.json");
        let other = dir.join("b.json");
        std::fs::write(&own, "{}").unwrap();
        std::fs::write(&other, "{}").unwrap();
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        let (kept, skipped) = screen(
            vec![
                stdio("me", exe, &["serve", "--config", own.to_str().unwrap()]),
                stdio(
                    "uvx",
                    "uvx",
                    &["codemode-mcp", &format!("--config={}", own.display())],
                ),
                stdio("other", exe, &["serve", "-c", other.to_str().unwrap()]),
                stdio(
                    "fs",
                    "npx",
                    &["-y", "@modelcontextprotocol/server-filesystem"],
                ),
            ],
            &Own {
                config: Some(&own),
                level: 0,
                max_depth: 2,
            },
        );
        let names: Vec<_> = kept.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["other", "fs"]);
        assert!(
            skipped[0].reason.contains("this very server"),
            "{skipped:?}"
        );
        assert!(
            skipped[1].reason.contains("same config file"),
            "{skipped:?}"
        );
    }

    #[test]
    fn depth_bounds_nested_code_mode_servers_then_every_command() {
        let own = Path::new("/nonexistent/a.json");
        let entries = || {
            vec![
                stdio("nested", "uvx", &["codemode-mcp", "serve"]),
                stdio(
                    "fs",
                    "npx",
                    &["-y", "@modelcontextprotocol/server-filesystem"],
                ),
            ]
        };
        let at = |level| {
            screen(
                entries(),
                &Own {
                    config: Some(own),
                    level,
                    max_depth: 2,
                },
            )
        };
        assert_eq!(at(1).0.len(), 2);
        let (kept, skipped) = at(2);
        assert_eq!(kept.len(), 1);
        assert!(skipped[0].reason.contains("maxDepth (2)"), "{skipped:?}");
        let (kept, skipped) = at(3);
        assert!(kept.is_empty());
        assert!(skipped[1].reason.contains("in a loop"), "{skipped:?}");
    }
}
