//! TypeScript -> JavaScript for the agent's program.
//!
//! Types are erased by `swc_ts_fast_strip` (the stripper behind Node.js's type stripping),
//! which replaces them with whitespace: every `line:column` of the output is the same
//! `line:column` in the agent's source, so no source map is needed for stripped programs.
//! The program is the body of an async function; the wrapper sits on lines of its own, so
//! a position in the wrapped text maps back by subtracting [`WRAPPER_LINES`].

use std::sync::{Arc, Mutex};

use swc_common::{
    GLOBALS, Globals, SourceMap,
    errors::{DiagnosticBuilder, Emitter, Handler},
    sync::Lrc,
};
use swc_ts_fast_strip::{Mode, Options};

/// The name the program's frames carry in stack traces and error positions.
pub const PROGRAM_FILE: &str = "program.ts";

/// Lines the async-function wrapper adds before the agent's first line.
pub const WRAPPER_LINES: u32 = 1;

const WRAPPER_OPEN: &str = "(async () => {\n";
const WRAPPER_CLOSE: &str = "\n})";

/// A position in the agent's own source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// 1-based line in the agent's source.
    pub line: u32,
    /// 1-based column (in characters) in the agent's source.
    pub column: u32,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a program could not be turned into JavaScript.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TranspileError {
    /// What the parser said, in its words.
    pub message: String,
    /// Where in the agent's source, when the parser knew.
    pub position: Option<Position>,
}

/// The program, ready for an isolate: an expression that evaluates to the async function
/// whose body is the agent's code.
#[derive(Debug, Clone)]
pub struct Transpiled {
    /// JavaScript source of the wrapped program.
    pub js: String,
}

/// Maps a 1-based line of the wrapped program back to the agent's source.
/// Lines of the wrapper itself map to the nearest line of the agent's code.
pub fn program_line(wrapped_line: u32, program_lines: u32) -> u32 {
    wrapped_line
        .saturating_sub(WRAPPER_LINES)
        .clamp(1, program_lines.max(1))
}

/// Number of lines in the agent's source (at least 1).
pub fn line_count(code: &str) -> u32 {
    u32::try_from(code.lines().count().max(1)).unwrap_or(u32::MAX)
}

/// Prepares agent-written code: a surrounding markdown fence is blanked (not removed, so
/// line numbers hold), the body is wrapped in an async function, and TypeScript types are
/// stripped.
pub fn transpile(code: &str) -> Result<Transpiled, TranspileError> {
    let code = blank_markdown_fence(code);
    let wrapped = format!("{WRAPPER_OPEN}{code}{WRAPPER_CLOSE}");
    let lines = line_count(&code);

    let diagnostics = Arc::new(Mutex::new(Vec::new()));
    let cm: Lrc<SourceMap> = Default::default();
    let handler = Handler::with_emitter(
        false,
        false,
        Box::new(Collect {
            cm: cm.clone(),
            found: diagnostics.clone(),
        }),
    );
    let options = Options {
        module: Some(false),
        filename: Some(PROGRAM_FILE.to_string()),
        mode: Mode::StripOnly,
        ..Default::default()
    };
    let stripped = GLOBALS.set(&Globals::new(), || {
        swc_ts_fast_strip::operate(&cm, &handler, wrapped, options)
    });
    match stripped {
        Ok(out) => Ok(Transpiled { js: out.code }),
        Err(err) => {
            let found = diagnostics.lock().map(|d| d.clone()).unwrap_or_default();
            Err(match found.into_iter().next() {
                Some((message, pos)) => TranspileError {
                    message: explain(&message),
                    position: pos.map(|(line, column)| Position {
                        line: program_line(line, lines),
                        column,
                    }),
                },
                None => TranspileError {
                    message: err.message,
                    position: None,
                },
            })
        }
    }
}

/// Adds what to do instead to the stripper's messages about TypeScript constructs that
/// need code generation.
fn explain(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("cannot be used outside of module code") {
        format!(
            "{message}: a program is the body of one async function, not a module, and cannot import or export code (nor load it with import() or require). Call the connected tools as tools.<server>.<tool>(args); the other globals are the ones execute_code's description lists."
        )
    } else if lower.contains("enum")
        || lower.contains("namespace")
        || lower.contains("parameter property")
    {
        format!(
            "{message}. Only erasable TypeScript is accepted (type annotations, interfaces, type aliases, generics, `as`, `satisfies`); replace enums and namespaces with plain objects and parameter properties with explicit fields."
        )
    } else {
        message.to_string()
    }
}

/// Models often send code inside a markdown fence; the fence lines become blank lines so
/// that positions in the rest of the code do not move.
pub(crate) fn blank_markdown_fence(code: &str) -> String {
    let trimmed = code.trim();
    if !trimmed.starts_with("```") || !trimmed.ends_with("```") || trimmed.len() < 6 {
        return code.to_string();
    }
    let mut lines: Vec<&str> = code.lines().collect();
    let Some(open) = lines.iter().position(|l| l.trim_start().starts_with("```")) else {
        return code.to_string();
    };
    let Some(close) = lines.iter().rposition(|l| l.trim() == "```") else {
        return code.to_string();
    };
    if close <= open {
        return code.to_string();
    }
    lines[open] = "";
    lines[close] = "";
    lines.join("\n")
}

type Found = Arc<Mutex<Vec<(String, Option<(u32, u32)>)>>>;

/// Collects the parser's diagnostics with their positions instead of printing them.
struct Collect {
    cm: Lrc<SourceMap>,
    found: Found,
}

impl Emitter for Collect {
    fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
        let position = db.span.primary_span().map(|span| {
            let loc = self.cm.lookup_char_pos(span.lo);
            let line = u32::try_from(loc.line).unwrap_or(u32::MAX);
            let column = u32::try_from(loc.col_display + 1).unwrap_or(u32::MAX);
            (line, column)
        });
        if let Ok(mut found) = self.found.lock() {
            found.push((db.message(), position));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_become_whitespace_and_positions_hold() {
        let out = transpile("const x: number = 1;\nreturn x as number;").unwrap();
        assert!(out.js.contains("const x         = 1;"), "{}", out.js);
        assert!(out.js.starts_with(WRAPPER_OPEN));
    }

    #[test]
    fn syntax_error_is_positioned_in_agent_source() {
        let err = transpile("const a = 1;\nconst b = ;\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.line), Some(2), "{err:?}");
    }

    #[test]
    fn enum_is_explained() {
        let err = transpile("enum Color { Red }\nreturn Color.Red").unwrap_err();
        assert!(err.message.contains("plain objects"), "{}", err.message);
        assert_eq!(err.position.map(|p| p.line), Some(1));
    }

    #[test]
    fn an_import_says_what_a_program_has_instead() {
        let err = transpile("import fs from 'fs';\nreturn 1").unwrap_err();
        assert!(
            err.message.contains("not a module") && err.message.contains("tools.<server>.<tool>"),
            "{}",
            err.message
        );
        assert_eq!(err.position.map(|p| p.line), Some(1));
    }

    #[test]
    fn markdown_fence_is_blanked() {
        let out = transpile("```ts\nreturn 1 as number\n```").unwrap();
        assert!(!out.js.contains("```"));
        assert_eq!(out.js.lines().nth(2).map(str::trim), Some("return 1"));
    }
}
