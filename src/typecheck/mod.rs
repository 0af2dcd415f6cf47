//! Opt-in type-checking of a program against the generated declarations before it runs,
//! by TypeScript's own compiler: the native `tsc` of TypeScript 7 (a Go binary from npm,
//! tens of milliseconds a check), or any `tsc` that takes the same flags.
//!
//! The program goes into a file of its own inside an async function, on the same first
//! line, so `tsc`'s `line:column` is the agent's own after one column shift. The checker
//! sees the tools' declarations (declared return types, `any` where a tool declares none),
//! the sandbox's globals (`globals.d.ts`, plus `fetch.d.ts` where programs have `fetch`)
//! and `lib es2023`: nothing of Node or the DOM, so names the sandbox lacks fail the check.
//!
//! `tsc` runs as a child process with an empty environment (but `PATH`, for a `tsc` that is
//! a Node script), in a fresh directory it may only read, with `--noResolve` so that a
//! program's `/// <reference path>` or `import` cannot make it read the host's files, and
//! under a wall clock.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use tokio::io::AsyncReadExt;

use crate::{config::TypecheckSettings, transpile::Position};

/// The sandbox's globals, as declarations.
const GLOBALS: &str = include_str!("globals.d.ts");
/// `fetch` and its classes, as declarations.
const FETCH: &str = include_str!("fetch.d.ts");

/// What the program is put inside, on its first line: a module (for top-level `await` in
/// the function) and an async function (for `return`).
const OPEN: &str = "export {}; (async (): Promise<unknown> => { ";
const CLOSE: &str = "\n})();\n";
const PROGRAM_FILE: &str = "program.ts";

/// Most type errors one answer lists.
const MOST_ERRORS: usize = 20;
/// Most bytes of `tsc`'s output read.
const MOST_OUTPUT: u64 = 1 << 20;

/// Why a program could not be checked (as opposed to: it was, and has type errors).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No checker was found or configured.
    #[error(
        "this server has no TypeScript checker: install TypeScript 7 (npm install typescript@7) and set codemode.typecheck.tsc to its tsc, or run without typecheck"
    )]
    Missing,
    /// The checker could not be started, or its files written.
    #[error("the type checker ({tsc}) could not run: {source}")]
    Start {
        /// The `tsc` that was run.
        tsc: String,
        /// Why it did not run.
        #[source]
        source: std::io::Error,
    },
    /// The checker ran past its wall clock.
    #[error("the type checker took longer than {0} ms (codemode.typecheck.timeoutMs)")]
    Timeout(u128),
    /// The checker failed without reporting errors in the program.
    #[error("the type checker failed: {0}")]
    Failed(String),
}

/// One error the checker found in the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// Where, in the agent's source.
    pub position: Position,
    /// `TS2322` and the like.
    pub code: String,
    /// The checker's message (its continuation lines joined).
    pub message: String,
}

impl std::fmt::Display for TypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.position, self.message, self.code)
    }
}

/// A `tsc` and how long one check may take.
#[derive(Debug, Clone)]
pub struct Checker {
    tsc: PathBuf,
    timeout: Duration,
    /// Checks running at once: one `tsc` process per core, the rest wait (inside their
    /// wall clock), so a burst of checked runs cannot fill the machine with compilers.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Checker {
    /// The checker the settings name, else `tsc` on `PATH`; `None` when there is none (or
    /// the one named is not a file).
    pub fn locate(settings: &TypecheckSettings) -> Option<Checker> {
        let tsc = match &settings.tsc {
            Some(tsc) => Some(tsc.clone()).filter(|tsc| tsc.is_file()),
            None => std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("tsc"))
                    .find(|candidate| candidate.is_file())
            }),
        }?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Some(Checker {
            tsc,
            timeout: Duration::from_millis(settings.timeout_ms),
            slots: Arc::new(tokio::sync::Semaphore::new(cores)),
        })
    }

    /// The `tsc` this checker runs.
    pub fn tsc(&self) -> &Path {
        &self.tsc
    }

    /// Checks `code` (the agent's program) against `declarations` (of the tools). An empty
    /// list: no type errors.
    pub async fn check(
        &self,
        code: &str,
        declarations: &str,
        fetch: bool,
    ) -> Result<Vec<TypeError>, CheckError> {
        let dir = std::env::temp_dir().join(format!("codemode-typecheck-{}", uuid::Uuid::new_v4()));
        let result = tokio::time::timeout(self.timeout, async {
            let _slot = self.slots.acquire().await;
            self.check_in(&dir, code, declarations, fetch).await
        })
        .await
        .unwrap_or(Err(CheckError::Timeout(self.timeout.as_millis())));
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result
    }

    async fn check_in(
        &self,
        dir: &Path,
        code: &str,
        declarations: &str,
        fetch: bool,
    ) -> Result<Vec<TypeError>, CheckError> {
        let start = |source| CheckError::Start {
            tsc: self.tsc.display().to_string(),
            source,
        };
        tokio::fs::create_dir_all(dir).await.map_err(start)?;
        let code = crate::transpile::blank_markdown_fence(code);
        let mut files = vec![
            (PROGRAM_FILE, format!("{OPEN}{code}{CLOSE}")),
            ("tools.d.ts", declarations.to_string()),
            ("globals.d.ts", GLOBALS.to_string()),
        ];
        if fetch {
            files.push(("fetch.d.ts", FETCH.to_string()));
        }
        for (name, text) in &files {
            tokio::fs::write(dir.join(name), text)
                .await
                .map_err(start)?;
        }
        let mut command = tokio::process::Command::new(&self.tsc);
        command
            .args([
                "--noEmit",
                "--pretty",
                "false",
                "--target",
                "es2023",
                "--lib",
                "es2023",
                "--module",
                "esnext",
                // Strict, implicit `any` included: without it `const out = []` is
                // `never[]` and every `out.push(...)` an error. The implicit-any errors
                // themselves (untyped callbacks and parameters) are dropped in `parse`.
                "--strict",
                // Models write `catch (e) { e.message }`; that is not the mistake this
                // check is for.
                "--useUnknownInCatchVariables",
                "false",
                "--noResolve",
                "--skipLibCheck",
            ])
            .args(files.iter().map(|(name, _)| name))
            .current_dir(dir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let mut child = command.spawn().map_err(start)?;
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        // Both pipes at once: a full one would stall the other.
        let (out, err) = tokio::join!(read_capped(stdout.as_mut()), read_capped(stderr.as_mut()));
        // The wall clock is the caller's (`check`): dropping this future kills `tsc`.
        let status = child.wait().await.map_err(start)?;
        let errors = parse(&out, crate::transpile::line_count(&code));
        // A run whose only errors were dropped (implicit any) worked; one that reported
        // nothing on the program and failed did not.
        let reported: Vec<&str> = out.lines().filter(|l| l.contains("error TS")).collect();
        let checked = !reported.is_empty()
            && reported
                .iter()
                .all(|l| l.starts_with(PROGRAM_FILE) && l.contains("): error TS7"))
            && (out.len() as u64) < MOST_OUTPUT;
        if errors.is_empty() && !status.success() && !checked {
            let text = format!("{out}{err}");
            let text = text.trim();
            return Err(CheckError::Failed(if text.is_empty() {
                format!("it ended with {status} and no message")
            } else {
                text.chars().take(2_000).collect()
            }));
        }
        Ok(errors)
    }
}

/// Up to [`MOST_OUTPUT`] bytes of a child's pipe, as text.
async fn read_capped(pipe: Option<&mut (impl tokio::io::AsyncRead + Unpin)>) -> String {
    let mut text = String::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(MOST_OUTPUT).read_to_string(&mut text).await;
    }
    text
}

/// The program's errors in `tsc --pretty false` output: `program.ts(L,C): error TSn: text`,
/// continuation lines indented. Errors in the declaration files are not the program's.
fn parse(output: &str, program_lines: u32) -> Vec<TypeError> {
    let mut errors: Vec<TypeError> = Vec::new();
    let mut in_program = false;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("  ").or_else(|| line.strip_prefix('\t')) {
            if in_program && let Some(last) = errors.last_mut() {
                last.message.push(' ');
                last.message.push_str(rest.trim());
            }
            continue;
        }
        in_program = false;
        let Some(rest) = line
            .strip_prefix(PROGRAM_FILE)
            .and_then(|r| r.strip_prefix('('))
        else {
            continue;
        };
        let Some((position, rest)) = rest.split_once("): error ") else {
            continue;
        };
        let Some((line_no, column)) = position.split_once(',') else {
            continue;
        };
        let (Ok(line_no), Ok(column)) = (line_no.parse::<u32>(), column.parse::<u32>()) else {
            continue;
        };
        let (code, message) = rest.split_once(": ").unwrap_or(("TS", rest));
        // The implicit-any family (TS7005, TS7006, TS7031, ...): a model's untyped
        // parameter is no mistake here.
        if code.starts_with("TS7") {
            continue;
        }
        let column = if line_no == 1 {
            column.saturating_sub(OPEN.len() as u32).max(1)
        } else {
            column
        };
        errors.push(TypeError {
            position: Position {
                line: line_no.clamp(1, program_lines.max(1)),
                column,
            },
            code: code.to_string(),
            message: sandbox_message(code, message),
        });
        in_program = true;
    }
    errors
}

/// `tsc`'s message, where it suggests what the sandbox cannot have (Node's type
/// definitions for `process`, `require`, `Buffer`), said as what the sandbox does have.
fn sandbox_message(code: &str, message: &str) -> String {
    const NODE_NAMES: &[&str] = &["TS2580", "TS2591", "TS2592"];
    if !NODE_NAMES.contains(&code) {
        return message.to_string();
    }
    let name = message.split('\'').nth(1).unwrap_or("it");
    format!(
        "Cannot find name '{name}': programs run in a sandbox, not Node.js. Besides the standard JavaScript built-ins they have: {}. They have no {}.",
        crate::sandbox::glue::PROGRAM_GLOBALS.join(", "),
        crate::sandbox::glue::NOT_AVAILABLE
    )
}

/// The message a model reads for a program that failed the check: every error (up to a
/// cap) at its `line:column`.
pub fn report(errors: &[TypeError]) -> String {
    let mut text = format!(
        "nothing ran: the type check found {} error{} in the program (fix them and run again, or run without typecheck if the declarations are wrong):",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for error in errors.iter().take(MOST_ERRORS) {
        text.push_str("\n  ");
        text.push_str(&error.to_string());
    }
    if errors.len() > MOST_ERRORS {
        text.push_str(&format!("\n  ... and {} more", errors.len() - MOST_ERRORS));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_any_is_dropped_and_node_hints_say_what_the_sandbox_has() {
        let output = "program.ts(2,16): error TS7006: Parameter 'rows' implicitly has an 'any' type.\nprogram.ts(3,8): error TS2580: Cannot find name 'process'. Do you need to install type definitions for node? Try `npm i --save-dev @types/node`.\n";
        let errors = parse(output, 5);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].code, "TS2580");
        assert!(
            errors[0]
                .message
                .starts_with("Cannot find name 'process': programs run in a sandbox")
                && !errors[0].message.contains("@types/node"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn errors_map_to_the_agents_positions_and_declaration_errors_are_dropped() {
        let output = format!(
            "program.ts(1,{}): error TS2322: Type 'string' is not assignable to type 'number'.\nprogram.ts(3,13): error TS2345: Argument of type '{{ a: string; }}' is not assignable.\n  Types of property 'a' are incompatible.\ntools.d.ts(4,1): error TS1005: ';' expected.\n  ignored continuation\n",
            OPEN.len() + 7
        );
        let errors = parse(&output, 3);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].position, Position { line: 1, column: 7 });
        assert_eq!(errors[0].code, "TS2322");
        assert_eq!(
            errors[1].message,
            "Argument of type '{ a: string; }' is not assignable. Types of property 'a' are incompatible."
        );
        assert_eq!(
            errors[1].to_string(),
            format!("3:13: {} (TS2345)", errors[1].message)
        );
    }

    #[test]
    fn the_wrapper_close_maps_to_the_last_line() {
        let errors = parse("program.ts(5,1): error TS1005: '}' expected.\n", 4);
        assert_eq!(errors[0].position.line, 4);
    }
}
